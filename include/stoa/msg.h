// stoa/msg.h — passing a copy: mailboxes, names and leased messages, the
// types of the messaging calls on Session (stoa/store.h).
//
// A mailbox lives in the store, not in a process. Any session of any process
// that opened the store sends to it by id (MailboxId, which can itself travel
// in a message as a return address) or by a registered name. A mailbox is
// either owned by the session that made it (Session::create_mailbox: only
// that session receives from it, and it closes when that session closes or
// dies) or by the store (Session::queue: a named work queue that any session
// receives from and that outlives every session).
//
// What "sent" promises. Once send() returns ok, the message is in the
// mailbox in the shared mapping. From then on it is received exactly once by
// a plain receive, or at least once through leases, whatever process dies
// afterwards: the sender; a receiver holding it on lease (the message goes
// back to the front of its mailbox, its delivery count kept, once the dead
// session is reclaimed: within Options::watchdog_interval, or at once by the
// next Store::reap_dead_sessions or open); or, for a queue, every process
// (the message is there at the next open). It is lost only with its
// mailbox — a session-owned mailbox closes when its owner closes or dies and
// its messages are freed — or with the mapping: messages are not written to
// the log, so an OS crash or power cut (which makes the next open rebuild
// the data file from checkpoint and log), Store::compact and
// Store::recover(kRebuild) start with no mailboxes.
//
// Order: messages from one sender to one mailbox are received in the order
// they were sent (FIFO per sender-receiver pair; across senders, the order
// their sends took the mailbox's lock). A selective receive takes the oldest
// message its predicate accepts and leaves the skipped ones in order. A
// message released from its lease, or taken back from a dead lessee, goes to
// the front.
//
// Thread safety: see Session (one thread at a time per session); sessions of
// any thread or process may use the same mailbox at once. Blocking calls
// spin for a few microseconds, then sleep on a futex in the shared mapping
// (no lock is held while asleep), unless the caller asks to poll.
#ifndef STOA_MSG_H_
#define STOA_MSG_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace stoa {

// A mailbox's address: stable while the mailbox exists, never reused for
// another one (a stale id gives kNotFound). 0 is no mailbox.
struct MailboxId {
  uint64_t value = 0;
  explicit operator bool() const { return value != 0; }
  friend bool operator==(MailboxId a, MailboxId b) { return a.value == b.value; }
};

struct MailboxOptions {
  // Capacity: messages waiting or leased, and payload bytes waiting. A
  // message larger than max_bytes can never be sent to it (kInvalidArgument).
  uint64_t max_messages = 4096;
  uint64_t max_bytes = uint64_t{64} << 20;
};

struct SendOptions {
  uint64_t tag = 0;      // the receiver's to interpret (and to select on)
  MailboxId reply_to{};  // the sender's address, carried in the message
  // A full mailbox: 0 returns kFull at once; > 0 waits up to this long for
  // room, then kFull; < 0 waits without end (until room or close).
  std::chrono::nanoseconds timeout{0};
};

// What a selective receive's predicate sees of a waiting message.
struct MessageInfo {
  uint64_t seq = 0;  // the mailbox's sequence number of the message (from 1)
  MailboxId sender{};
  uint64_t tag = 0;
  uint64_t size = 0;        // payload bytes
  uint32_t deliveries = 0;  // times it was leased before
};

struct ReceiveOptions {
  // 0: do not wait (kTimeout when nothing matches); > 0: wait up to this
  // long; < 0: wait without end (until a message or a close).
  std::chrono::nanoseconds timeout{-1};
  bool poll = false;   // spin while waiting instead of sleeping (lowest latency, one core)
  bool lease = false;  // keep it until ack(); redelivered if this session dies first
  // Selective receive: the oldest message for which it returns true. Runs
  // under the mailbox's lock: it must be quick and must not call Stoa.
  std::function<bool(const MessageInfo&)> match;
};

struct Message {
  MailboxId mailbox{};  // where it was received from
  uint64_t seq = 0;
  MailboxId sender{};  // SendOptions::reply_to
  uint64_t tag = 0;
  uint64_t sent_ns = 0;     // CLOCK_REALTIME when sent
  uint32_t deliveries = 0;  // 0 for a plain receive; for a lease, 1 on the first delivery
  std::string payload;
  bool leased() const { return lease_ != 0; }

 private:
  friend class Session;
  uint64_t lease_ = 0;  // the leased message's place in the store
};

struct MailboxInfo {
  MailboxId id{};
  std::string name;          // a registered name, "" when none
  bool store_owned = false;  // a queue (Session::queue) rather than a session's
  uint32_t owner_slot = 0;   // the owning session's slot when not store-owned
  bool closed = false;       // closed, its messages being freed
  uint64_t messages = 0;     // waiting
  uint64_t bytes = 0;        // waiting payload bytes
  uint64_t leased = 0;       // received on lease, not yet acked
  uint64_t max_messages = 0, max_bytes = 0;
  uint64_t oldest_sent_ns = 0;  // CLOCK_REALTIME of the oldest waiting; 0 when none
  uint64_t sends = 0, receives = 0, redeliveries = 0;
};

}  // namespace stoa

#endif  // STOA_MSG_H_
