// txn/txn_manager.h — what the transactions of one process share: the index,
// the visibility watermark, version trimming, record locks, and the
// recovery of a dead committer.
//
// Thread safety: all methods are thread-safe.
#ifndef STOA_TXN_TXN_MANAGER_H_
#define STOA_TXN_TXN_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "index/btree.h"
#include "log/record.h"
#include "session/layout.h"
#include "stoa/result.h"
#include "txn/layout.h"
#include "txn/txn_context.h"
#include "util/mutex.h"

namespace stoa::internal {

class SessionCore;

class TxnManager {
 public:
  // The index lives at the roots page of ctx.region.
  explicit TxnManager(TxnContext ctx);
  // The log, made after this manager; set before the first commit.
  void set_log(LogManager* log) { ctx_.log = log; }
  const TxnContext& context() const { return ctx_; }

  index::Btree& tree() { return tree_; }
  index::IndexHeader* header() const { return tree_.header(); }

  // Takes a snapshot for `slot` (announced in its TxnSlot).
  uint64_t take_snapshot(session::SessionSlot* slot);
  static void drop_snapshot(session::SessionSlot* slot);

  // Moves the watermark as far as every finished commit allows.
  void advance_visible();
  // Waits (bounded) until commit `ts` is visible, reclaiming dead blockers.
  void await_visible(uint64_t ts);

  // Locks a record for the session: kConflict when another live session
  // holds it past the wait bound (a dead holder is reclaimed first).
  Status lock(SessionCore& s, index::KeyRecord* rec);
  static uint64_t lock_word(uint32_t slot, uint32_t gen) {
    return (uint64_t(slot) + 1) << 32 | gen;
  }

  // Versions older than this are invisible to every snapshot but the
  // newest one at or below it; trimming keeps that one.
  // Cached for a millisecond unless `fresh`.
  uint64_t trim_threshold(bool fresh = false);
  // Cuts and retires the versions of `rec` below the trim threshold (the
  // caller holds the record's lock).
  void trim(SessionCore& s, index::KeyRecord* rec);

  // Rolls the dead session's commit forward (kInstalling) or back, releases
  // its record locks and clears its watermark entry. Runs before its memory
  // is reclaimed (publishing rolled-forward versions first).
  void recover(uint32_t slot, session::SessionSlot* sl, uint32_t dead_gen);
  // Only when nobody else is attached: every commit is finished or rolled
  // back, so the watermark may reach the last timestamp handed out.
  void reset_alone();

  // Keys a commit of this process deleted at `ts`: their records leave the
  // index once the trim threshold passes ts (remove_deleted).
  void note_deleted(std::vector<std::string> keys, uint64_t ts);
  // Marks kRemoved, and unlinks from the index, the records of noted keys
  // whose tombstone the trim threshold has passed (index/layout.h,
  // index/btree_remove.cc). For a session in no transaction. One caller
  // per process does the work at a time; the others return at once, as
  // does every caller when nothing is due (one relaxed load).
  // `fresh`: with a trim threshold computed now, not the cached one.
  void remove_deleted(SessionCore& s, bool fresh = false);

  // Wakes Txn::retry waiters after a commit.
  void notify_commit();

  // A new version of `key`'s `value` (kOwned by the session; large values
  // in their own block), timestamp 0, not linked, its checksums set but for
  // the timestamp's part. Errors: kFull.
  static Result<uint64_t> make_version(SessionCore& s, std::string_view key, std::string_view value,
                                       bool tombstone);
  // Gives an unlinked version its commit timestamp, completing its head sum.
  static void stamp(index::Version* ver, uint64_t ts);
  // Alone (recovery): installs `ops` as one commit at timestamp `ts`,
  // replacing each key's versions. Errors: kFull, kCorrupt (repeated keys).
  Status apply(SessionCore& s, uint64_t ts, std::vector<log::Op> ops);

 private:
  TxnContext ctx_;
  index::Btree tree_;
  std::atomic<uint64_t> threshold_{0};
  std::atomic<uint64_t> threshold_at_ns_{0};
  struct Deleted {
    std::string key;
    uint64_t ts;
  };
  util::Mutex pending_mu_;                               // held only to push or pop
  std::deque<Deleted> pending_ GUARDED_BY(pending_mu_);  // in roughly commit order
  // pending_.size(), stored under pending_mu_ and read without it (relaxed)
  // so that a commit with nothing due skips both mutexes.
  std::atomic<uint64_t> pending_n_{0};
  util::Mutex remove_mu_;  // held (try_lock) by the one remover
  // remove_deleted's work: marks and unlinks what is due.
  void remove_due(SessionCore& s, bool fresh) REQUIRES(remove_mu_);
};

}  // namespace stoa::internal

#endif  // STOA_TXN_TXN_MANAGER_H_
