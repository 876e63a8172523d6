// log/log.h — the write-ahead log of one open store, in one process:
// reserving log space for commits, writing their records, group commit,
// checkpoints, and the repair of a dead committer's log range. log.cc holds
// the protocol essay; recovery.cc rebuilds a store from checkpoint and log.
//
// Thread safety: all methods are thread-safe unless marked "alone" (only
// while no other session exists: during open, before the open lock is
// released).
#ifndef STOA_LOG_LOG_H_
#define STOA_LOG_LOG_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <functional>

#include "log/apply.h"
#include "log/checkpoint.h"
#include "log/layout.h"
#include "log/log_file.h"
#include "log/record.h"
#include "region/layout.h"
#include "session/session_core.h"
#include "session/session_table.h"
#include "stoa/env.h"
#include "stoa/options.h"
#include "stoa/result.h"
#include "util/mutex.h"

namespace stoa::log {

// What a rebuild did (the store folder copies it into the public
// RecoveryReport).
struct RebuildReport {
  uint64_t checkpoint_ts = 0;    // checkpoint replayed from (0: none)
  uint64_t checkpoint_keys = 0;  // keys loaded from it
  uint64_t log_records = 0;      // commit records replayed after it
  uint64_t log_bytes = 0;        // log bytes read after it
  uint64_t end_ts = 0;           // the end of the valid log
  uint64_t truncated_bytes = 0;  // torn tail cut
  double seconds = 0;
};

// The log's part of the store's stats (the store folder copies it into
// the public StoreStats).
struct LogStats {
  uint64_t durable_ts = 0;     // every commit at or below it is on disk
  uint64_t checkpoint_ts = 0;  // the last completed checkpoint (0: none)
  std::string failure;         // why the log failed in this run, or empty
};

}  // namespace stoa::log

namespace stoa::internal {

struct CheckpointInfo {
  uint64_t ts = 0;
  uint64_t bytes = 0;
  uint64_t keys = 0;
};

// What the log reads and calls of the rest of the store; the store folder
// fills it. Every pointer outlives the LogManager.
struct LogContext {
  log::LogHeader* header = nullptr;          // in the roots page
  const region::FileHeader* file = nullptr;  // the data file's parameters (checkpoints)
  // The MVCC clock (the commit tail, the visibility watermark, the low
  // water mark; a rebuild sets all three).
  std::atomic<uint64_t>* next_ts = nullptr;
  std::atomic<uint64_t>* visible_ts = nullptr;
  std::atomic<uint64_t>* low_water = nullptr;
  session::SessionTable* table = nullptr;  // reservation repair, counters
  const Options* options = nullptr;        // durability, group window, checkpoint trigger
  // For the checkpointer thread: a snapshot source over a session of its
  // own, which destroying the source closes.
  std::function<Result<std::unique_ptr<SnapshotSource>>()> open_snapshot;
};

class LogManager {
 public:
  LogManager(LogContext ctx, Env* env, const std::string& dir, uint64_t segment_size);
  ~LogManager();

  log::LogHeader* header() const { return hdr_; }
  log::LogFiles& files() { return files_; }
  Env* env() const { return env_; }

  // Alone: makes the header usable after open (fresh store: initialises it;
  // otherwise re-initialises its mutexes, whose holders are gone).
  void init_alone(bool fresh);
  // Starts the background flusher (kGroup) and checkpointer threads.
  void start();
  void stop();
  void forget_after_fork();
  // Held by the flusher and checkpointer while they are awake; fork()
  // handlers take it so that no fork copies them mid-work (store_impl.cc).
  util::Mutex& pause_mutex() RETURN_CAPABILITY(pause_mu_) { return pause_mu_; }

  // --- committers --------------------------------------------------------
  // Reserves [start, start+len) for a commit record and records it in the
  // session's commit record; returns start (the commit timestamp is
  // start+len). Errors: kIo (the log has failed), kFull (no disk for a new
  // segment: nothing was reserved).
  Result<uint64_t> reserve(SessionCore& s, uint64_t len);
  // Writes the commit record of `ops` at `lsn` (exactly its reserved size).
  // On failure the log is marked failed from `lsn` and kIo returned.
  Status write_commit(uint64_t lsn, uint64_t len, const std::vector<log::Op>& ops);
  // Fills an unused reservation with a padding record.
  Status write_padding(uint64_t lsn, uint64_t len);
  // What a commit at `ts` must do before it returns under `mode`: wait for
  // the fdatasync (kSync), ask the flusher for one (kGroup), or nothing.
  // kIo when the log failed before the commit reached the disk.
  Status after_commit(uint64_t ts, Durability mode);
  // Makes every commit up to `target` durable (fdatasync, shared by whoever
  // waits at the same time). Errors: kIo, permanent for this store's run.
  Status flush(uint64_t target);
  // Everything so far.
  Status flush_all();
  // Marks the log failed from `at` (first failure wins) with `why`.
  void fail(uint64_t at, const Error& why);
  std::string failure() const;
  log::LogStats stats() const;

  // --- dead sessions -----------------------------------------------------
  // Settles the dead session's log range (under reserve_mu, so a death
  // inside reserve() is repaired first): writes its commit record (its
  // commit passed the commit point; `ops` from its commit list) or a
  // padding record, and clears the range. `ops_fn` is called only if needed.
  template <typename Fn>
  void settle_dead(uint64_t* log_start, uint64_t* log_len, bool committed, Fn ops_fn);

  // --- checkpoints -------------------------------------------------------
  // Writes a checkpoint of a snapshot `src` takes into this store's log
  // directory, then drops older checkpoints and log segments. kBusy when
  // another one is running (and !wait).
  Result<CheckpointInfo> checkpoint(SnapshotSource& src, bool wait);

  // --- recovery (recovery.cc) ----------------------------------------------
  // Alone, on an empty (fresh) data file: loads the newest checkpoint in
  // the log directory and replays the log after it, each op through the
  // applier `apply` has for its kind. Fills the report.
  Status rebuild(const log::ApplyRegistry& apply, log::RebuildReport* report);
  // A durable mark known from outside the log (the clean-shutdown sidecar):
  // the log below it was on disk, so damage there is not a torn tail.
  void set_known_synced(uint64_t ts) { known_synced_ = ts; }
  // Reads and checks every checksum from the last checkpoint to the log end
  // (verify). Appends problems naming file and offset.
  void verify(uint64_t* records, uint64_t* ckpt_keys, std::vector<std::string>* problems);

 private:
  void repair_reserve_locked();
  Status settle_locked(uint64_t* log_start, uint64_t* log_len, bool committed,
                       const std::vector<log::Op>* ops);
  void flusher_loop();
  void checkpointer_loop();
  void request_checkpoint(uint64_t ts);

  LogContext ctx_;
  Env* env_;
  uint64_t known_synced_ = 0;
  log::LogHeader* hdr_;
  log::LogFiles files_;

  mutable util::Mutex fail_mu_;
  std::string failure_ GUARDED_BY(fail_mu_);

  util::Mutex pause_mu_;  // order: pause_mu_ before StoreImpl's reclaim_mu_
  util::Mutex thread_mu_;
  std::condition_variable_any thread_cv_;
  bool stopping_ GUARDED_BY(thread_mu_) = false;
  std::atomic<bool> stop_flag_{false};
  bool has_flusher_ = false;     // set by start(), before any commit
  std::atomic<int> started_{0};  // threads that reached their loop
  std::thread flusher_;
  std::thread checkpointer_;
};

template <typename Fn>
void LogManager::settle_dead(uint64_t* log_start, uint64_t* log_len, bool committed, Fn ops_fn) {
  std::vector<log::Op> ops;  // views into the shared mapping
  if (*log_len != 0 && committed) ops_fn(&ops);
  (void)settle_locked(log_start, log_len, committed, &ops);
}

}  // namespace stoa::internal

#endif  // STOA_LOG_LOG_H_
