// msg/mailboxes.h — the messaging layer: a directory of mailboxes and
// names in the data file, and the send, receive, lease and ack protocols
// over it (mailbox.cc, directory.cc, msg_recovery.cc hold the essays).
//
// A mailbox lives in the store, not in a process. Any session of any
// process sends to it by id; its owner (a session, for a session-owned
// mailbox) or any session (a store-owned, named queue) receives from it.
// What "sent" promises: once send() returns ok the message is linked in the
// mailbox in the shared mapping. It is then received exactly once by a
// plain receive, or at least once through leases, whatever process dies
// afterwards — the sender, a receiver holding a lease (the message goes back
// to the front), or, for a queue, every process (it is still there at the
// next open). It is lost only with its mailbox: a session-owned mailbox
// closes when its owner closes or dies, and its messages are freed; and
// plain sends are not logged, so an OS crash or power loss before the
// store's next clean close (which the rebuild from checkpoint and log
// follows) loses the mailboxes and their messages.
//
// Thread safety: every method may be called from any thread of any process,
// each with its own SessionCore. Blocking calls sleep on futex words in the
// mapping and hold no lock while asleep.
#ifndef STOA_MSG_MAILBOXES_H_
#define STOA_MSG_MAILBOXES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "msg/layout.h"
#include "region/heap.h"
#include "region/region.h"
#include "session/session_core.h"
#include "stoa/result.h"

namespace stoa {
struct VerifyReport;
}

namespace stoa::msg {

// The largest payload a message may carry (a mailbox's byte capacity bounds
// it further).
inline constexpr uint64_t kMaxPayload = uint64_t{1} << 30;
// A bound on list walks (a damaged link that loops ends a walk here).
inline constexpr uint64_t kMaxListWalk = uint64_t{1} << 32;

// What the layer is given by the store.
struct MsgContext {
  region::Region* region = nullptr;
  region::Heap* heap = nullptr;
  MsgRoot* root = nullptr;
};

struct BoxLimits {
  uint64_t max_messages = 0;
  uint64_t max_bytes = 0;
};

// What a selective receive's predicate sees of a waiting message.
struct Peek {
  uint64_t seq;
  uint64_t sender;
  uint64_t tag;
  uint64_t size;
  uint32_t deliveries;
};

struct RecvSpec {
  int64_t timeout_ns = 0;                  // 0: do not wait; < 0: wait without end
  bool poll = false;                       // spin instead of sleeping while waiting
  bool lease = false;                      // keep the message until ack (or redeliver)
  std::function<bool(const Peek&)> match;  // empty: the oldest message
};

struct Delivery {
  Offset msg = 0;  // the leased message's block (ack/release name it)
  uint64_t seq = 0;
  uint64_t sender = 0;
  uint64_t tag = 0;
  uint64_t sent_ns = 0;
  uint32_t deliveries = 0;  // 0 for a plain receive; leases: 1, 2, ...
  std::string payload;
};

struct MsgStats {
  uint64_t mailboxes = 0;         // open or closed, not yet freed
  uint64_t messages = 0;          // waiting or leased
  uint64_t bytes = 0;             // payload bytes waiting
  uint64_t channels = 0;          // open or being removed
  uint64_t channel_messages = 0;  // positions pushed and not yet popped
};

struct ChanLimits {
  uint32_t capacity = 0;     // slots: a power of two, 2..kMaxChannelSlots
  uint32_t max_message = 0;  // payload bytes: 1..kMaxChannelMessage
};
inline constexpr uint32_t kMaxChannelSlots = uint32_t{1} << 20;
inline constexpr uint32_t kMaxChannelMessage = uint32_t{64} << 10;

struct Popped {
  uint64_t pos = 0;  // the message's position (pushes before it)
  uint64_t tag = 0;
  uint64_t sent_ns = 0;
};

struct ChanInfo {
  uint64_t id = 0;
  std::string name;
  bool closed = false;
  uint32_t capacity = 0, max_message = 0;
  uint64_t pushed = 0;  // positions claimed by pushers (enq)
  uint64_t popped = 0;  // positions claimed by poppers (deq)
  uint64_t created_ns = 0;
};

struct BoxInfo {
  uint64_t id = 0;
  std::string name;
  bool store_owned = true;
  uint32_t owner_slot = 0;
  bool closed = false;
  uint64_t count = 0, bytes = 0, leased = 0;
  uint64_t max_messages = 0, max_bytes = 0;
  uint64_t oldest_sent_ns = 0;  // 0 when empty
  uint64_t sends = 0, receives = 0, redeliveries = 0;
};

// Shared by mailbox.cc, directory.cc and channel.cc.
// A name is 1..kMaxNameBytes bytes without NUL (kInvalidArgument).
Status check_name(std::string_view name);
bool name_is(const char* stored, std::string_view name);
void copy_name(char* to, std::string_view name);
// The mono_ns deadline of a timeout (0: none; <= 0 timeouts have none).
uint64_t deadline_of(int64_t timeout_ns);
// Bumps the futex words given (non-null), then wakes their sleepers when
// `waiters` counts any.
void wake_words(std::atomic<uint32_t>* avail, std::atomic<uint32_t>* space,
                std::atomic<uint32_t>& waiters);
// Waits for *word to leave `seen` until `deadline_ns` (0: no end): spins a
// few microseconds (without end when `poll`), then sleeps on the futex,
// counted in `waiters`. Returns at a change, the deadline, or after at most
// a second asleep (callers recheck).
void wait_word(std::atomic<uint32_t>& waiters, std::atomic<uint32_t>* word, uint32_t seen,
               uint64_t deadline_ns, bool poll);

class Mailboxes {
 public:
  explicit Mailboxes(const MsgContext& c) : c_(c) {}

  // --- directory (directory.cc) ---------------------------------------
  // A new mailbox, owned by `s` (closed when it closes or dies) or by the
  // store. Errors: kFull (kMaxMailboxes in use), kInvalidArgument.
  Result<uint64_t> create(internal::SessionCore& s, const BoxLimits& l, bool owned);
  // The store-owned mailbox registered as `name`, made (with limits `l`)
  // when there is none. Errors: kInvalidArgument (a bad name, or the name
  // is another session's mailbox), kFull.
  Result<uint64_t> queue(internal::SessionCore& s, std::string_view name, const BoxLimits& l);
  // Closes mailbox `id` (its owner, or anyone for a queue) and frees its
  // messages; senders get kNotFound from then on. Errors: kNotFound,
  // kInvalidArgument (another session's mailbox).
  Status remove(internal::SessionCore& s, uint64_t id);
  // Names: `name` -> mailbox `id`, owned by the mailbox's owner (it
  // vanishes when that session dies). Errors: kExists, kNotFound,
  // kInvalidArgument, kFull.
  Status register_name(internal::SessionCore& s, std::string_view name, uint64_t id);
  Result<uint64_t> whereis(internal::SessionCore& s, std::string_view name);
  Status unregister_name(internal::SessionCore& s, std::string_view name);
  Result<std::vector<BoxInfo>> list(internal::SessionCore& s);
  Result<BoxInfo> info(internal::SessionCore& s, uint64_t id);

  // --- messages (mailbox.cc) ------------------------------------------
  // Errors: kNotFound (no such mailbox), kClosed (closed, or `s` is),
  // kFull (full after the wait; the store full), kInvalidArgument (too
  // large), kTimeout never (a full mailbox after the timeout is kFull).
  Status send(internal::SessionCore& s, uint64_t to, std::string_view payload, uint64_t tag,
              uint64_t reply_to, int64_t timeout_ns);
  // Errors: kTimeout (nothing matched in time), kClosed, kNotFound,
  // kInvalidArgument (another session's mailbox), kCorrupt (a message
  // failed its checksum: it is left where it was).
  Result<Delivery> receive(internal::SessionCore& s, uint64_t box, const RecvSpec& spec);
  // The leased message `msg` (seq `seq`) is done (ack: freed) or goes back
  // to the front of its mailbox (release). Errors: kNotFound (not leased by
  // `s`: acked already, or redelivered after this session was presumed dead).
  Status ack(internal::SessionCore& s, uint64_t box, Offset msg, uint64_t seq);
  Status release(internal::SessionCore& s, uint64_t box, Offset msg, uint64_t seq);

  // --- channels (channel.cc) -------------------------------------------
  // The channel named `name`, made with `l` when there is none. Errors:
  // kInvalidArgument (a bad name or limits), kFull (kMaxChannels in use, or
  // the store).
  Result<uint64_t> channel(internal::SessionCore& s, std::string_view name, const ChanLimits& l);
  // Errors: kNotFound (no such channel), kClosed (removed meanwhile, or
  // `s` closed), kInvalidArgument (larger than max_message), kFull (full
  // after the timeout: 0 is none, < 0 without end).
  Status push(internal::SessionCore& s, uint64_t ch, std::string_view payload, uint64_t tag,
              int64_t timeout_ns, bool poll);
  // The oldest message, into *payload (its capacity reused). Errors:
  // kTimeout, kNotFound, kClosed, kCorrupt (a slot's length past its
  // size: the slot is skipped).
  Result<Popped> pop(internal::SessionCore& s, uint64_t ch, std::string* payload,
                     int64_t timeout_ns, bool poll);
  // Closes the channel: blocked pushers and poppers get kClosed, its ring
  // (and the messages in it) are retired. Errors: kNotFound.
  Status remove_channel(internal::SessionCore& s, uint64_t ch);
  Result<std::vector<ChanInfo>> channels(internal::SessionCore& s);

  // --- lifecycle (msg_recovery.cc) ------------------------------------
  // Session `s` closes: its mailboxes close and are freed, its names and
  // leases go (leased messages back to their mailboxes).
  void session_closing(internal::SessionCore& s);
  // Slot `slot`'s owner died: repairs every lock it may have held, closes
  // its mailboxes, drops its names, puts its leased messages back. Runs
  // before the heap reclaims the slot's blocks.
  void recover_dead(uint32_t slot);
  // A lone opener, before the heap is rebuilt: every lock reinitialised and
  // every mailbox repaired; no session survives, so every session-owned
  // mailbox closes and every lease is put back.
  void recover_alone();
  // Frees the messages and entries of closed mailboxes through `s`.
  Status drain_closed(internal::SessionCore& s);
  // Lists, counts, checksums and blocks of every mailbox; returns messages.
  uint64_t verify(std::vector<std::string>* problems);
  MsgStats stats() const;

 private:
  friend class BoxLock;
  friend class DirLock;
  Directory* dir() const;
  Result<Directory*> dir_or_make(internal::SessionCore& s);
  // directory.cc helpers, holding dir_lock (and the box's lock where named).
  Result<uint64_t> create_locked(internal::SessionCore& s, const BoxLimits& l, bool owned);
  NameEntry* name_entry(Directory& d, std::string_view name) const;
  void close_locked(Directory& d, Mailbox& b, uint32_t index) const;
  BoxInfo describe(const Directory& d, const Mailbox& b, uint32_t index) const;
  Status drain_closed_locked(internal::SessionCore& s);
  // The open entry `id` names, or an error (kNotFound, kClosed).
  Result<Mailbox*> find(uint64_t id) const;
  MsgHeader* hdr(Offset m) const;  // nullptr when it is not inside the file
  bool linked(Offset head, Offset m) const;
  void unlink(Offset* head, Offset m) const;
  void append(Mailbox& b, Offset m) const;
  void push_front(Mailbox& b, Offset m) const;
  // The mailbox repair (msg_recovery.cc): finishes or undoes op_kind,
  // recomputes tail and figures. Holding b.lock.
  void repair(Mailbox& b) const;
  // A kLive block with a message header.
  bool live(Offset m) const;
  // Drops non-live messages from a list; returns its last entry.
  Offset prune(Offset* head) const;
  // tail, count, bytes, nleased from the lists.
  void recount(Mailbox& b) const;
  void repair_dir() const;
  // Moves leased messages whose lessee is on `slot` (every one when
  // slot < 0) back to the front. Holding b.lock.
  void requeue_leases(Mailbox& b, int64_t slot) const;
  Status drain_box(internal::SessionCore& s, Mailbox& b) const;
  // channel.cc helpers.
  ChannelRing* ring_of(const ChannelEntry& e) const;  // nullptr: not a sound ring
  // Resolves the slots claimed by `slot` (every claimed slot when
  // slot < 0): a half-written push becomes kDead, a half-read pop kFree.
  void repair_ring(ChannelEntry& e, int64_t slot) const;
  // Holding dir_lock: a closed channel's ring retired through `s`, the
  // entry freed; a half-removed entry (ring no longer live) freed.
  Status finish_remove_locked(internal::SessionCore& s, ChannelEntry& e) const;
  void repair_chans(Directory& d) const;
  uint64_t verify_chans(Directory& d, std::vector<std::string>* problems) const;
  void wake(Mailbox& b, bool avail, bool space) const;
  Status take(internal::SessionCore& s, Mailbox& b, Offset m, Offset prev, bool lease,
              Delivery* out) const;
  Status finish_lease(internal::SessionCore& s, uint64_t box, Offset msg, uint64_t seq, bool ack);
  static uint32_t payload_sum(const MsgHeader& h, const char* payload);

  MsgContext c_;
};

// Holds a mailbox's lock, repairing what a dead holder left.
class SCOPED_CAPABILITY BoxLock {
 public:
  BoxLock(const Mailboxes& m, Mailbox& b) ACQUIRE(b.lock) : b_(b) {
    b.lock.lock([&] { m.repair(b); });
  }
  ~BoxLock() RELEASE() { b_.lock.unlock(); }
  BoxLock(const BoxLock&) = delete;
  BoxLock& operator=(const BoxLock&) = delete;

 private:
  Mailbox& b_;
};

// Holds the directory lock, repairing what a dead holder left.
class SCOPED_CAPABILITY DirLock {
 public:
  explicit DirLock(const Mailboxes& m) ACQUIRE(m.c_.root->dir_lock) : mu_(m.c_.root->dir_lock) {
    mu_.lock([&] { m.repair_dir(); });
  }
  ~DirLock() RELEASE() { mu_.unlock(); }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  ShmMutex& mu_;
};

}  // namespace stoa::msg

#endif  // STOA_MSG_MAILBOXES_H_
