// msg/layout.h — the messaging layer's shared structs, byte by byte
// (docs/format.md says the same in prose).
//
//   MsgRoot      in the roots page (store/layout.h), zero in a fresh store
//   Directory    one heap block, made by the first session that needs it:
//                kMaxMailboxes Mailbox entries, then kMaxNames NameEntry,
//                then kMaxChannels ChannelEntry
//   MsgHeader    the first 64 bytes of each message block, payload after
//   ChannelRing  one heap block per channel: its positions, then its slots
//
// Every offset is a block body in the data file (region/layout.h); 0 is
// "none". Lists are singly linked through MsgHeader::next.
//
// Locks and their order: MsgRoot::dir_lock (the directory pointer, entry
// states, owners, names), then Mailbox::lock (one mailbox's lists, counts
// and in-flight record). Both are robust ShmMutexes: a dead holder's
// half-done step is repaired by the next locker (mailbox.cc says how).
#ifndef STOA_MSG_LAYOUT_H_
#define STOA_MSG_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "region/layout.h"
#include "util/shm_mutex.h"

namespace stoa::msg {

using region::Offset;
using util::ShmMutex;

inline constexpr uint32_t kMaxMailboxes = 1024;
inline constexpr uint32_t kMaxNames = 1024;
inline constexpr uint32_t kMaxNameBytes = 47;  // a name is 1..47 bytes, any bytes but NUL
inline constexpr uint32_t kMaxChannels = 256;
inline constexpr uint64_t kDirMagic = 0x3152'4944'4753'4d53ull;  // "SMSGDIR1"

// The in-flight step of a mailbox's lock holder (Mailbox::op_kind): what a
// repairer must finish or undo when the holder died holding the lock.
enum class Op : uint32_t {
  kNone = 0,
  kSend = 1,     // publishing op_msg and appending it to the ready list
  kTake = 2,     // retiring op_msg and unlinking it (plain receive)
  kLease = 3,    // moving op_msg from the ready list to the leased list
  kAck = 4,      // retiring op_msg and unlinking it from the leased list
  kRequeue = 5,  // moving op_msg from the leased list to the front of ready
  kDrain = 6,    // retiring every message of a closed mailbox
};

enum class BoxState : uint32_t {
  kFree = 0,    // unused; the generation names its next id
  kOpen = 1,    // takes sends
  kClosed = 2,  // its owner died or closed it: senders get kClosed; messages
                // are being freed by whoever drains it (then kFree)
};

// One mailbox. Guarded by `lock` unless said otherwise. Entries are 256
// bytes so that two mailboxes share at most one cache line; the struct asks
// for no more than 8-byte alignment because heap block bodies are only
// 16-byte aligned (alignas(64) here was undefined behaviour in the mapping).
struct Mailbox {
  ShmMutex lock;
  // Set under dir_lock (with `lock` held too when the entry is in use);
  // read by anyone with acquire to check an id before locking.
  std::atomic<uint32_t> state;  // BoxState
  uint32_t gen;                 // dir_lock: bumped when the entry is freed
  // Futex words, bumped (release) after every change a waiter waits for,
  // read (acquire) by waiters before they sleep: `avail` on a send, a
  // requeue or a close (receivers), `space` on a take, an ack or a close
  // (senders of a full mailbox).
  std::atomic<uint32_t> avail;
  std::atomic<uint32_t> space;
  std::atomic<uint32_t> waiters;  // sleepers on either word (relaxed hint)
  uint32_t pad0;
  uint64_t owner;  // dir_lock: 0 store-owned, else owner_word(slot, gen)
  // The lists and their figures. count/bytes are atomics only so that stats
  // read them without the lock (relaxed); they change under `lock`.
  Offset head;  // ready list, oldest first
  Offset tail;
  Offset leased;                  // leased list (unordered)
  std::atomic<uint64_t> count;    // ready messages
  std::atomic<uint64_t> bytes;    // ready payload bytes
  std::atomic<uint64_t> nleased;  // leased messages
  uint64_t max_messages;          // set at creation (dir_lock)
  uint64_t max_bytes;
  uint64_t next_seq;  // the seq of the next message sent
  uint32_t op_kind;   // Op: written before the step, cleared after it
  uint32_t pad1;
  Offset op_msg;
  uint64_t created_ns;  // CLOCK_REALTIME (dir_lock)
  uint64_t sends;       // lifetime figures (stats)
  uint64_t receives;
  uint64_t redeliveries;
  char name[kMaxNameBytes + 1];  // dir_lock: its queue name, "" when none
  uint64_t reserved[2];          // zero; pads the entry to 256 bytes
};
static_assert(sizeof(Mailbox) == 256);
static_assert(offsetof(Mailbox, state) == 40 && offsetof(Mailbox, owner) == 64 &&
              offsetof(Mailbox, head) == 72 && offsetof(Mailbox, op_kind) == 144 &&
              offsetof(Mailbox, name) == 192);
static_assert(std::is_standard_layout_v<Mailbox>);
static_assert(alignof(Mailbox) <= 16, "heap block bodies are 16-byte aligned");

// A registered name. Written under dir_lock: the fields first, `id` last
// (0: free), so a holder that dies half-way leaves a free entry.
struct NameEntry {
  uint64_t id;     // the mailbox it names; 0 when free
  uint64_t owner;  // owner_word of the session that registered it; 0 store
  char name[kMaxNameBytes + 1];
};
static_assert(sizeof(NameEntry) == 64);
static_assert(std::is_standard_layout_v<NameEntry>);

// A channel (channel.cc): a named, store-owned ring. The entry never moves
// (the futex words live here, so that a sleeper needs no pin); the ring
// block is retired when the channel is removed.
struct ChannelEntry {
  char name[kMaxNameBytes + 1];  // dir_lock
  // dir_lock: BoxState. Stored with release after `ring` (open) and read
  // with acquire by push/pop, which then read `ring`.
  std::atomic<uint32_t> state;
  uint32_t gen;  // dir_lock: bumped when the entry is freed (ids)
  Offset ring;   // dir_lock: the ChannelRing block; 0 when free
  // Futex words, as Mailbox's: `avail` bumped after a push (poppers wait
  // on it), `space` after a pop (pushers of a full ring), both on a
  // removal or a repair.
  std::atomic<uint32_t> avail;
  std::atomic<uint32_t> space;
  std::atomic<uint32_t> waiters;
  uint32_t pad0;
  uint64_t created_ns;  // dir_lock: CLOCK_REALTIME
  uint64_t reserved[5];
};
static_assert(sizeof(ChannelEntry) == 128);
static_assert(offsetof(ChannelEntry, state) == 48 && offsetof(ChannelEntry, ring) == 56 &&
              offsetof(ChannelEntry, avail) == 64 && offsetof(ChannelEntry, created_ns) == 80);
static_assert(std::is_standard_layout_v<ChannelEntry>);

struct Directory {
  uint64_t magic;  // kDirMagic
  uint64_t pad[7];
  Mailbox boxes[kMaxMailboxes];
  NameEntry names[kMaxNames];
  ChannelEntry chans[kMaxChannels];
};
static_assert(offsetof(Directory, boxes) == 64);
static_assert(sizeof(Directory) == 64 + 256 * kMaxMailboxes + 64 * kMaxNames + 128 * kMaxChannels);
static_assert(alignof(Directory) <= 16, "heap block bodies are 16-byte aligned");

// The messaging root in the roots page.
struct MsgRoot {
  ShmMutex dir_lock;
  uint32_t pad0;
  uint32_t pad1;
  // The directory block, set once under dir_lock after it was published;
  // read with acquire by anyone (it never changes afterwards).
  std::atomic<uint64_t> dir;
  // The directory block being made (dir_lock): a holder that died between
  // publishing it and setting `dir` is finished by the repairer.
  Offset dir_pending;
  uint64_t reserved[2];
};
static_assert(sizeof(MsgRoot) == 80);
static_assert(offsetof(MsgRoot, dir) == 48);
static_assert(std::is_standard_layout_v<MsgRoot>);

// The head of every message block; the payload follows it.
struct MsgHeader {
  Offset next;          // the list that holds it (its mailbox's lock)
  uint64_t seq;         // the mailbox's next_seq when it was sent
  uint64_t sender;      // a mailbox id to reply to; 0 when none
  uint64_t tag;         // the sender's
  uint64_t sent_ns;     // CLOCK_REALTIME
  uint64_t lessee;      // owner_word of the lease holder; 0 when not leased
  uint32_t len;         // payload bytes
  uint32_t deliveries;  // times leased (the mailbox's lock)
  uint32_t sum;         // checksum of the payload, seeded by sender, len, tag, sent_ns
  uint32_t magic;       // kMsgMagic
};
inline constexpr uint32_t kMsgMagic = 0x4753'4d53;  // "SMSG"
static_assert(sizeof(MsgHeader) == 64);
static_assert(std::is_standard_layout_v<MsgHeader>);
static_assert(alignof(MsgHeader) <= 16, "heap block bodies are 16-byte aligned");

// --- channels -------------------------------------------------------------
//
// A ring of `capacity` (a power of two) slots of one stride. Position p
// (enq counts pushes claimed, deq pops claimed; both only grow) lives in
// slot p % capacity. Every slot's `word` packs the position it holds or
// waits for (mod 2^44), its state and the session that claimed it:
//
//   bits 63..20  position mod 2^44
//   bits 19..16  SlotState
//   bits 15..0   claimant's slot + 1 (kWriting, kReading), else 0
inline constexpr uint64_t kRingMagic = 0x314e'4148'4347'534dull;  // "MSGCHAN1"
inline constexpr uint64_t kPosMask = (uint64_t{1} << 44) - 1;
enum class SlotState : uint32_t {
  kFree = 0,     // waits for a push at its position
  kWriting = 1,  // a pusher claimed it and is copying the payload in
  kReady = 2,    // holds the message at its position
  kReading = 3,  // a popper claimed it and is copying the payload out
  kDead = 4,     // its pusher died writing: poppers skip it
};
inline uint64_t slot_word(uint64_t pos, SlotState st, uint32_t claimant) {
  return (pos & kPosMask) << 20 | uint64_t(st) << 16 | claimant;
}
inline uint64_t word_pos(uint64_t w) { return w >> 20; }
inline SlotState word_state(uint64_t w) { return SlotState((w >> 16) & 0xf); }
inline uint32_t word_claimant(uint64_t w) { return uint32_t(w & 0xffff); }
static_assert(region::kMaxSlots + 1 <= 0xffff, "a claimant is slot + 1 in 16 bits");

struct ChannelSlot {
  // acq_rel CAS claims it (pairs with the release store that freed or
  // filled it); the release store of kReady or kFree pairs with the
  // acquire load of the next claimant.
  std::atomic<uint64_t> word;
  uint64_t tag;      // written by the claiming pusher
  uint64_t sent_ns;  // CLOCK_REALTIME
  uint32_t len;      // payload bytes (<= max_message)
  uint32_t pad;
  // payload[max_message] follows, up to the stride
};
static_assert(sizeof(ChannelSlot) == 32);
static_assert(std::is_standard_layout_v<ChannelSlot>);

struct ChannelRing {
  uint64_t magic;        // kRingMagic; the fields to `enq` are fixed at creation
  uint32_t capacity;     // slots, a power of two
  uint32_t max_message;  // payload bytes a slot holds
  uint32_t stride;       // bytes a slot takes: 32 + max_message rounded up to 64
  uint32_t pad0;
  uint64_t reserved[5];
  // Claimed positions. Advanced by CAS from p to p + 1 by the claimant or by
  // anyone who finds slot p claimed (helping), so a claimant that died
  // before advancing stalls nobody. 64 bytes apart: pushers and poppers
  // do not share a line.
  std::atomic<uint64_t> enq;
  uint64_t pad1[7];
  std::atomic<uint64_t> deq;
  uint64_t pad2[7];
  // capacity slots of `stride` bytes follow
};
static_assert(sizeof(ChannelRing) == 192);
static_assert(offsetof(ChannelRing, enq) == 64 && offsetof(ChannelRing, deq) == 128);
static_assert(std::is_standard_layout_v<ChannelRing>);
static_assert(alignof(ChannelRing) <= 16 && alignof(ChannelSlot) <= 16,
              "heap block bodies are 16-byte aligned");

// A session as the directory names it: slot + 1 in the high word (so 0 is
// never a session), generation in the low.
inline uint64_t owner_word(uint32_t slot, uint32_t gen) { return (uint64_t{slot} + 1) << 32 | gen; }
inline uint32_t owner_slot(uint64_t w) { return uint32_t(w >> 32) - 1; }

// A mailbox id: the entry's generation above its index + 1 (never 0).
inline uint64_t mailbox_id(uint32_t index, uint32_t gen) {
  return uint64_t{gen} << 16 | (index + 1);
}
inline uint32_t id_index(uint64_t id) { return uint32_t(id & 0xffff) - 1; }
inline uint32_t id_gen(uint64_t id) { return uint32_t(id >> 16); }
static_assert(kMaxMailboxes < 0xffff);

static_assert(std::atomic<uint32_t>::is_always_lock_free &&
              std::atomic<uint64_t>::is_always_lock_free);

}  // namespace stoa::msg

#endif  // STOA_MSG_LAYOUT_H_
