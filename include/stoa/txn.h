// stoa/txn.h — transactions over the ordered key index, zero-copy views and
// cursors.
//
// A transaction reads one snapshot: every committed transaction whose commit
// timestamp is at or below the snapshot, and none after. Reads return Views:
// pointers into the store's read-only mapping, valid until the transaction
// ends (the session stays pinned to a reclamation cycle meanwhile), never
// copies. Writes are buffered in the transaction and installed at commit.
//
// Isolation. Serializable by default: commit fails with kConflict when any
// key the transaction read, or any key inside a range it scanned (phantoms
// included), was committed by another transaction after its snapshot, or is
// being committed right now. Snapshot isolation (per transaction, on
// request) only checks the keys it writes (first committer wins), and so
// admits write skew.
//
// Read-only transactions never abort, never block, and are never blocked.
//
// Under a snapshot bound (Options::max_snapshot_age / _lag), a transaction
// past it gets kTimeout from its next call; it is then unusable like this:
//
// After any error other than kNotFound from get(), a transaction is unusable
// except for abort(); commit() then returns the same error.
//
// Thread safety: a Txn belongs to the thread of its session. Many sessions in
// many processes run transactions at once; writers to different keys proceed
// in parallel.
#ifndef STOA_TXN_H_
#define STOA_TXN_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "stoa/result.h"
#include "stoa/txn_options.h"

namespace stoa {

namespace internal {
class TxnImpl;
class CursorImpl;
}  // namespace internal

// A value, in place in the store. Valid until its transaction ends (or,
// under Options::max_snapshot_age / _lag, expires: copy what you keep past
// the bound).
class View {
 public:
  View() = default;
  View(const char* data, size_t size) : data_(data), size_(size) {}
  const char* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view str() const { return {data_, size_}; }
  std::string copy() const { return std::string(data_, size_); }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// Iterates keys of one snapshot (merged with the transaction's own writes)
// in key order, forward or backward. Valid until its transaction ends.
//
// LevelDB's iterator contract. valid() is true while the cursor stands on a
// key; key() and value() may be called only then. Once valid() is false,
// status() says why: ok when the range is exhausted, an error (kCorrupt,
// naming the offset of the damaged index node, record or version) when the
// walk met damage. An error ends the iteration for good: the cursor stays
// invalid, status() keeps the error and seek() does not clear it. A damaged
// store therefore never reads as a shorter range, but only a caller that
// checks status() after its loop learns that:
//
//   for (; c.valid(); c.next()) { ... }
//   if (!c.status().ok()) return c.status();
//
// next(), prev() and seek() return the status() they leave behind; on a
// cursor that is not valid, next() and prev() do nothing.
class Cursor {
 public:
  Cursor();
  ~Cursor();
  Cursor(Cursor&&) noexcept;
  Cursor& operator=(Cursor&&) noexcept;

  bool valid() const;
  std::string_view key() const;
  View value() const;
  // Moves to the next key in the cursor's order (scan() chose it).
  Status next();
  // Moves to the previous key in the cursor's order. The first step against
  // the order re-descends the index from the current key (O(log n)); further
  // steps that way cost what next() costs.
  Status prev();
  // Positions at the first key at or after `key` in the cursor's order,
  // within its range: forward, the smallest key >= `key`; reverse, the
  // largest key <= `key` (an empty `key` is the range's end). kClosed for a
  // cursor that came from no scan.
  Status seek(std::string_view key);
  // Ok, or the error that ended the iteration (kClosed for a cursor that
  // came from no scan).
  Status status() const;

 private:
  friend class Txn;
  explicit Cursor(std::unique_ptr<internal::CursorImpl> impl);
  std::unique_ptr<internal::CursorImpl> impl_;
};

class Txn {
 public:
  Txn();
  ~Txn();  // aborts if neither committed nor aborted
  Txn(Txn&&) noexcept;
  Txn& operator=(Txn&&) noexcept;

  // The value of `key` in this transaction. kNotFound when absent;
  // kInvalidArgument for an empty or oversized key; kClosed after the end;
  // kCorrupt when the index or the key's versions are damaged.
  Result<View> get(std::string_view key);
  // Buffers a write. Errors: kInvalidArgument (key empty or over
  // kMaxKeySize, value over kMaxValueSize, read-only transaction), kClosed.
  Status put(std::string_view key, std::string_view value);
  Status del(std::string_view key);

  // Keys in [from, to) (to empty: no upper bound); ScanOrder::kReverse
  // iterates from the largest. The range counts as read for conflict
  // detection. kCorrupt when the first step meets damage.
  Result<Cursor> scan(std::string_view from, std::string_view to,
                      ScanOrder order = ScanOrder::kForward);
  // Keys starting with `prefix`.
  Result<Cursor> prefix(std::string_view prefix, ScanOrder order = ScanOrder::kForward);

  // Savepoints: rollback_to(sp) undoes the writes made after savepoint(sp)
  // was taken (Views of those values end with them); only each key's final
  // value is installed at commit. An unknown savepoint is kInvalidArgument.
  uint32_t savepoint();
  Status rollback_to(uint32_t savepoint);

  // Installs the writes if serializable (or, under snapshot isolation, if no
  // written key changed). Returns the commit timestamp (a read-only or
  // empty transaction returns its snapshot). Errors: kConflict (also when a
  // written key stays locked by another live committer past a 20 ms bound;
  // a dead holder is reclaimed first), kFull, kCorrupt, kClosed.
  Result<uint64_t> commit();
  void abort();

  // Haskell's `retry`: abandons this attempt and blocks until some key this
  // transaction read is changed by a commit, or the timeout. Returns an
  // error with code kConflict (so transact() runs the function again) or
  // kTimeout; kInvalidArgument in a read-only transaction (it keeps no read
  // set to watch).
  Error retry(std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));

  uint64_t snapshot() const;
  bool active() const;

 private:
  friend class Session;
  explicit Txn(std::unique_ptr<internal::TxnImpl> impl);
  std::unique_ptr<internal::TxnImpl> impl_;
};

}  // namespace stoa

#endif  // STOA_TXN_H_
