// msg/layout.h — the messaging layer's shared structs, byte by byte
// (docs/format.md says the same in prose).
//
//   MsgRoot      in the roots page (store/layout.h), zero in a fresh store
//   Directory    one heap block, made by the first session that needs it:
//                kMaxMailboxes Mailbox entries, then kMaxNames NameEntry
//   MsgHeader    the first 64 bytes of each message block, payload after
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

struct Directory {
  uint64_t magic;  // kDirMagic
  uint64_t pad[7];
  Mailbox boxes[kMaxMailboxes];
  NameEntry names[kMaxNames];
};
static_assert(offsetof(Directory, boxes) == 64);
static_assert(sizeof(Directory) == 64 + 256 * kMaxMailboxes + 64 * kMaxNames);
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
