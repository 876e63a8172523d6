// txn/expiry.cc — long readers are bounded (FoundationDB's five-second rule).
//
// A transaction holds two things back while it runs: its MVCC snapshot
// (TxnSlot::snapshot: the trimmer keeps every version newer than the oldest
// snapshot) and its cycle pin (PinWord: nothing retired since it pinned is
// freed). A reader that never ends would make the file grow without bound
// under writers that rewrite keys. With a bound set (Options::
// max_snapshot_age, max_snapshot_lag, max_snapshot_lag_bytes; 0, the
// default, is none), a transaction past it is expired: both of its holds are
// released at once by whoever notices, and its next call returns kTimeout.
//
// The gate. A bounded transaction tags its pin word (cycle/layout.h: 16 bits
// naming this transaction, so a CAS aimed at it cannot land on a later one
// of the same session) and runs each call inside a gate:
//  1. Entry: CAS the word from w to w & ~kPinExpirable (seq_cst). If the word
//     has kPinExpired, the call reads no shared memory: it releases the
//     snapshot and the pin and returns kTimeout, and so does every later call
//     (abort() stays fine). Otherwise the owner checks its own bound (so a
//     reader alone on the store still times out) and goes on.
//  2. Exit: store w | kPinExpirable (release: after every read of the call).
//  Between calls the word is expirable; inside one it is not.
//
// The expirer (a trimmer computing the trim threshold, any process): for a
// slot whose snapshot it sees, it loads the pin word (acquire); if the word
// is expirable and the slot's bounds (TxnSlot, written before the first
// release of the word) say the snapshot is past them, it CASes kPinExpired
// in. From then on trimmers leave that snapshot out of the threshold and
// try_advance counts the pin as 0 (cycle.cc), so versions it kept are cut
// and retired, and retired memory is freed two cycles on.
//
// Why no reader sees freed memory: the owner's entry CAS and the expirer's
// CAS are RMWs of one word, so one of them is first. If the owner's is, the
// expirer's fails (the word lost kPinExpirable) and the pin holds as before.
// If the expirer's is, it read the word from the owner's release store at
// the end of its last call, so every read of that call happens before the
// expiry, before any trimmer or manager that reads kPinExpired, and before
// the free; and the owner's entry CAS sees kPinExpired and reads nothing.
//
// The Views a call returned. They point into the map (zero copy) and are
// read by the user between calls, outside any gate: once the transaction
// expires, the memory under them may be freed and reused. So under a bound a
// View (and a cursor's key and value) is valid until the transaction ends or
// expires, whichever comes first: a caller that keeps one past the bound
// must copy it first. Without a bound (the default) nothing changes: a View
// is valid until the transaction ends. (Keeping the cycle pin past expiry
// and releasing only the snapshot would keep Views valid, but then nothing
// trimmed is ever freed and the file still grows: the bound would not bound.)
//
// Snapshot and pin word together. The trimmer reads the snapshot word first
// and the pin word after (both seq_cst); the owner stores its pin, tags it,
// then stores its snapshot. A snapshot seen is therefore paired with its own
// pin word or a later one; try_expire re-reads the snapshot after the pin
// word so the bound is judged on the snapshot of the transaction it would
// expire. A stale snapshot kept for a slot only lowers the threshold
// (conservative).
//
// Death. Nothing here is repaired: a dead session's pin and snapshot are
// cleared when it is reclaimed, as before (txn_manager.cc recover), whether
// or not they were expired. A crash between an expirer's CAS and its count
// loses one count of snapshots_expired.
#include "txn/expiry.h"

namespace stoa::internal::expiry {

namespace {
cycle::PinWord& word_of(session::SessionSlot& sl) { return cycle::pin_of(sl); }

// The snapshot's start and its bounds (all 0 for none), in the slot.
void stamp(txn::TxnSlot& t, const Bounds& b, const Clock& c) {
  t.started_ns.store(c.now_ns, std::memory_order_relaxed);
  t.snapshot_commits.store(c.commits, std::memory_order_relaxed);
  t.deadline_ns.store(b.age_ns != 0 ? c.now_ns + b.age_ns : 0, std::memory_order_relaxed);
  t.max_lag_commits.store(b.lag_commits, std::memory_order_relaxed);
  t.max_lag_bytes.store(b.lag_bytes, std::memory_order_relaxed);
}
}  // namespace

void note(session::SessionSlot& sl, const Clock& c) { stamp(txn::txn_of(sl), Bounds{}, c); }

uint64_t arm(session::SessionSlot& sl, const Bounds& b, const Clock& c) {
  txn::TxnSlot& t = txn::txn_of(sl);
  stamp(t, b, c);
  uint64_t tag = ++t.tag_seq & 0xffff;
  if (tag == 0) tag = ++t.tag_seq & 0xffff;  // 0 names untagged pins
  cycle::PinWord& w = word_of(sl);
  // Not yet expirable, so no other writer: a plain store keeps the cycle.
  const uint64_t word =
      (w.cycle.load(std::memory_order_relaxed) & cycle::kPinCycleMask) | tag << cycle::kPinTagShift;
  w.cycle.store(word, std::memory_order_relaxed);
  return word;
}

bool enter(cycle::PinWord& w) {
  uint64_t cur = w.cycle.load(std::memory_order_relaxed);
  for (;;) {
    if ((cur & cycle::kPinExpired) != 0) return false;
    // seq_cst: no read of the call may move above it (pairs with the
    // expirer's CAS on the same word).
    if (w.cycle.compare_exchange_weak(cur, cur & ~cycle::kPinExpirable, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      return true;
    }
  }
}

void leave(cycle::PinWord& w) {
  // Only the owner writes a word that is not expirable. Release: pairs with
  // the expirer's acquire load and CAS.
  uint64_t cur = w.cycle.load(std::memory_order_relaxed);
  w.cycle.store(cur | cycle::kPinExpirable, std::memory_order_release);
}

bool over(const txn::TxnSlot& t, uint64_t snapshot, const Clock& c) {
  const uint64_t deadline = t.deadline_ns.load(std::memory_order_relaxed);
  if (deadline != 0 && c.now_ns > deadline) return true;
  const uint64_t lag_commits = t.max_lag_commits.load(std::memory_order_relaxed);
  const uint64_t at = t.snapshot_commits.load(std::memory_order_relaxed);
  if (lag_commits != 0 && c.commits > at && c.commits - at > lag_commits) return true;
  const uint64_t lag_bytes = t.max_lag_bytes.load(std::memory_order_relaxed);
  return lag_bytes != 0 && c.visible_ts > snapshot && c.visible_ts - snapshot > lag_bytes;
}

bool try_expire(session::SessionSlot& sl, const Clock& c, std::atomic<uint64_t>* expired_count) {
  cycle::PinWord& w = word_of(sl);
  uint64_t word = w.cycle.load(std::memory_order_seq_cst);
  if ((word & cycle::kPinExpired) != 0) return true;
  if ((word & cycle::kPinExpirable) == 0) return false;
  // The snapshot of the transaction that released this word (see above).
  const uint64_t snap = txn::txn_of(sl).snapshot.load(std::memory_order_seq_cst);
  if (snap == 0) return false;  // ending: keep the snapshot read earlier (conservative)
  if (!over(txn::txn_of(sl), snap - 1, c)) return false;
  if (w.cycle.compare_exchange_strong(word, word | cycle::kPinExpired, std::memory_order_seq_cst,
                                      std::memory_order_seq_cst)) {
    expired_count->fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return (word & cycle::kPinExpired) != 0;  // another expirer won
}

bool is_expired(const session::SessionSlot& sl) {
  return (cycle::pin_of(sl).cycle.load(std::memory_order_acquire) & cycle::kPinExpired) != 0;
}

}  // namespace stoa::internal::expiry
