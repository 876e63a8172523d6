// txn/expiry.h — bounds on how old a transaction's snapshot may grow
// (Options::max_snapshot_age, max_snapshot_lag, max_snapshot_lag_bytes):
// the owner's gate around each call and the expirer's check (expiry.cc has
// the protocol).
//
// Thread safety: the owner functions (arm, enter, leave, over) belong to the
// transaction's thread; try_expire and holds_back are safe from any thread
// of any process.
#ifndef STOA_TXN_EXPIRY_H_
#define STOA_TXN_EXPIRY_H_

#include <atomic>
#include <cstdint>

#include "cycle/layout.h"
#include "session/layout.h"
#include "txn/layout.h"

namespace stoa::internal::expiry {

// A process's bounds, from its Options; 0 is no bound.
struct Bounds {
  uint64_t age_ns = 0;
  uint64_t lag_commits = 0;
  uint64_t lag_bytes = 0;
  bool any() const { return age_ns != 0 || lag_commits != 0 || lag_bytes != 0; }
};

// Where a snapshot stands: now, the commit counter, the visibility watermark.
struct Clock {
  uint64_t now_ns = 0;
  uint64_t commits = 0;
  uint64_t visible_ts = 0;
};

// Records the bounds of the transaction that just took `snapshot` in the
// slot, tags its pin word (pinned by this transaction, not yet expirable)
// and returns the word. Its first call is open: leave() ends it.
uint64_t arm(session::SessionSlot& sl, const Bounds& b, const Clock& c);
// Records the snapshot's time and commit count only (an unbounded
// transaction: for stats).
void note(session::SessionSlot& sl, const Clock& c);

// Opens a call: clears kPinExpirable by CAS. False when an expirer got there
// first (kPinExpired): the call must read no shared memory.
bool enter(cycle::PinWord& w);
// Ends a call: the word becomes expirable (release: after every read the
// call made).
void leave(cycle::PinWord& w);

// True when the snapshot recorded in `t` is past one of its bounds.
bool over(const txn::TxnSlot& t, uint64_t snapshot, const Clock& c);

// The expirer's step on one slot whose snapshot word it read (not 0): true
// when that snapshot is to be ignored, because the pin is expired or this
// call expires it (counted in `expired_count`).
bool try_expire(session::SessionSlot& sl, const Clock& c, std::atomic<uint64_t>* expired_count);

// True when the slot's pin word is expired (its snapshot holds nothing).
bool is_expired(const session::SessionSlot& sl);

}  // namespace stoa::internal::expiry

#endif  // STOA_TXN_EXPIRY_H_
