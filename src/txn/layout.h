// txn/layout.h — a session's commit record, in its slot of the lock file.
//
// A committer writes, in this order: the list of (record, version) pairs it
// will install (each entry before it locks that record), its commit
// timestamp, and state kInstalling — the commit point. A survivor that
// finds the session dead rolls a kInstalling commit forward from the list
// and rolls anything earlier back (txn_manager.cc).
#ifndef STOA_TXN_LAYOUT_H_
#define STOA_TXN_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

#include "session/layout.h"

namespace stoa::txn {

enum class CommitState : uint32_t {
  kIdle = 0,
  kLocking = 1,     // building the list and locking records
  kValidating = 2,  // has a timestamp; checking reads
  kInstalling = 3,  // commit point passed: must be rolled forward
  // Locking deleted keys' records to mark them kRemoved (txn_manager.cc,
  // index/btree_remove.cc): nothing to roll forward; a survivor unlocks.
  kRemoving = 4,
};

// A commit timestamp is being taken: the watermark must not pass anything.
inline constexpr uint64_t kReserving = ~uint64_t{0};

struct alignas(64) TxnSlot {
  // Snapshot of the running transaction, 0 when none. Stored seq_cst, then
  // IndexHeader::low_water is re-checked (the trimmer does the converse).
  std::atomic<uint64_t> snapshot;
  // Commit timestamp being installed, kReserving while one is being taken,
  // 0 otherwise. The visibility watermark stays below it (seq_cst).
  std::atomic<uint64_t> installing;
  std::atomic<uint32_t> state;  // CommitState, release by the owner
  uint32_t pad;
  uint64_t commit_ts;                // valid from kValidating on
  uint64_t list;                     // offset of the pair list block (kOwned by the session)
  std::atomic<uint64_t> list_count;  // entries written (release before each lock)
  // The log range this commit reserved, [log_start, log_start + log_len);
  // log_len 0 when none. Written under LogHeader::reserve_mu (log.cc: a
  // holder's death is repaired from them), cleared once the record (or a
  // padding record) is written.
  uint64_t log_start;
  uint64_t log_len;

  // Cache line 1: the running transaction's snapshot bounds (txn/expiry.cc).
  // Written by the owner (relaxed) when it takes its snapshot, before its
  // release store of the pin word that makes it expirable; read (relaxed) by
  // expirers and stats after an acquire load of that word. A torn read by an
  // expirer is harmless: its CAS on the pin word fails if the word changed.
  std::atomic<uint64_t> started_ns;        // CLOCK_MONOTONIC when the snapshot was taken
  std::atomic<uint64_t> snapshot_commits;  // IndexHeader::commits at that moment
  std::atomic<uint64_t> deadline_ns;       // started_ns + max_snapshot_age; 0: no age bound
  std::atomic<uint64_t> max_lag_commits;   // 0: no bound in commits
  std::atomic<uint64_t> max_lag_bytes;     // 0: no bound in log bytes
  uint64_t tag_seq;                        // owner only: the pin tag of its next bounded txn
  uint64_t reserved[2];
};
static_assert(sizeof(TxnSlot) == 128 && offsetof(TxnSlot, started_ns) == 64);
static_assert(sizeof(TxnSlot) == session::kTxnAreaBytes && alignof(TxnSlot) == 64 &&
              std::is_standard_layout_v<TxnSlot>);

// The txn layer's area of a session slot (session/layout.h's table): zero
// cost, the struct is used in place in the mapped lock file.
inline TxnSlot& txn_of(session::SessionSlot& s) {
  return *std::launder(reinterpret_cast<TxnSlot*>(s.txn_area));
}
inline const TxnSlot& txn_of(const session::SessionSlot& s) {
  return *std::launder(reinterpret_cast<const TxnSlot*>(s.txn_area));
}

// Clears a slot's commit record (the slot's byte holder only).
inline void reset(TxnSlot& t) {
  t.snapshot.store(0, std::memory_order_relaxed);
  t.installing.store(0, std::memory_order_relaxed);
  t.state.store(uint32_t(CommitState::kIdle), std::memory_order_relaxed);
  t.commit_ts = 0;
  t.list = 0;
  t.log_start = 0;
  t.log_len = 0;
  t.started_ns.store(0, std::memory_order_relaxed);
  t.snapshot_commits.store(0, std::memory_order_relaxed);
  t.deadline_ns.store(0, std::memory_order_relaxed);
  t.max_lag_commits.store(0, std::memory_order_relaxed);
  t.max_lag_bytes.store(0, std::memory_order_relaxed);
  t.list_count.store(0, std::memory_order_release);
}

struct CommitPair {
  uint64_t record;
  uint64_t version;
};

}  // namespace stoa::txn

#endif  // STOA_TXN_LAYOUT_H_
