// store_impl.h — the open store of one process: ties the region (data file),
// the session table (lock file) and cycle locking together, and runs the
// open, claim, recovery and close protocols described in store_impl.cc.
//
// Thread safety: every public method is thread-safe.
#ifndef STOA_STORE_IMPL_H_
#define STOA_STORE_IMPL_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cycle/cycle.h"
#include "log/log.h"
#include "msg/mailboxes.h"
#include "region/heap.h"
#include "region/region.h"
#include "session/session_core.h"
#include "session/session_table.h"
#include "stoa/env.h"
#include "stoa/options.h"
#include "stoa/stats.h"
#include "store/layout.h"
#include "txn/txn_manager.h"
#include "util/mutex.h"

namespace stoa::internal {

inline constexpr const char* kDataFileName = "stoa.data";
inline constexpr const char* kLockFileName = "stoa.lock";
inline constexpr const char* kLogDirName = "log";
inline constexpr const char* kSumFileName = "stoa.sum";

class StoreImpl final : public SessionHost {
 public:
  // `force_rebuild`: a lone opener rebuilds the data file from checkpoint
  // and log even when it could trust it (Store::recover, Store::compact).
  // Files go through options.env (Env::posix() when null).
  static Result<std::unique_ptr<StoreImpl>> open(const std::string& path, const Options& options,
                                                 bool force_rebuild = false);
  ~StoreImpl();

  // A new session in a free slot (or a dead one, reclaimed first). The
  // caller owns it until it hands it to close_session(). Errors: kFull.
  Result<SessionCore*> new_session();
  // Returns the session's cache and private blocks, frees what purgatory it
  // can, and frees its slot; a session whose retired blocks are still
  // visible to some pin is parked until they are freed (by the watchdog or
  // later collects). Deletes or keeps `core`; the caller must not use it.
  Status close_session(SessionCore* core) override;
  void user_closing(SessionCore* core) override;

  Result<StoreStats> stats();
  Result<VerifyReport> verify();
  // Probes every slot held by another process; reclaims the dead ones.
  Result<uint32_t> reap_dead_sessions();
  // Probes the given slots (blockers of a cycle advance) and reclaims the dead.
  void reap_slots(const std::vector<uint32_t>& slots) override;
  // Frees parked sessions whose purgatory has become safe.
  void drain_parked();
  // Flight recorders of every slot that has entries (or just `slot`).
  Result<std::vector<RecorderDump>> recorder(std::optional<uint32_t> slot = std::nullopt);

  const std::string& path() const { return path_; }
  const Options& options() const { return options_; }
  region::Region& region() { return *region_; }
  region::Heap& heap() { return *heap_; }
  session::SessionTable& table() { return *table_; }
  cycle::CycleManager& cycles() { return *cycles_; }
  TxnManager& txns() { return *txns_; }
  LogManager& log() { return *log_; }
  msg::Mailboxes& msgs() { return *msgs_; }
  bool has_log() const { return log_ != nullptr; }
  Env* env() const { return env_; }
  const RecoveryReport& recovery() const { return recovery_; }
  bool exclusive_now();
  bool opened_alone() const { return alone_; }

  // Store::checkpoint / sync / backup (checkpoint.cc has the protocol).
  Result<uint64_t> checkpoint();
  Status sync();
  Result<uint64_t> backup(const std::string& dest);
  // Writes the flight recorder of `core` (and every session with entries)
  // to a file in the store directory; returns its path.
  Result<std::string> dump_recorder(SessionCore* core);
  // `e` (kCorrupt) with the recorder dumped and its path in the message.
  Error corruption(SessionCore* core, Error e);

  // fork() support: the child drops inherited descriptors.
  void forget_after_fork();
  util::Mutex& reclaim_mutex() RETURN_CAPABILITY(reclaim_mu_) { return reclaim_mu_; }

 private:
  StoreImpl() = default;
  Status open_protocol();
  // Alone: decides whether the data file can be trusted (log.cc), replacing
  // it with an empty one to rebuild when not. Sets rebuild_pending_.
  Status check_data_file(const std::string& data, bool* created);
  Status finish_open();
  // What the log layer reads and calls of this store (log/log.h).
  LogContext log_context();
  // A snapshot source for a checkpoint over a new session of its own.
  Result<std::unique_ptr<SnapshotSource>> open_snapshot();
  Status write_sum();
  // Checks stoa.sum against the mapped data file (store_durable.cc).
  Status check_sum(const std::string& sum);
  // Takes reclaim_mu_ unless this thread already holds it (reclaiming a
  // slot closes a session, whose collect may ask to reclaim again).
  class ReclaimLock {
   public:
    explicit ReclaimLock(StoreImpl* s) NO_THREAD_SAFETY_ANALYSIS : s_(s), took_(reclaiming_ != s) {
      if (!took_) return;
      s_->reclaim_mu_.lock();
      reclaiming_ = s_;
    }
    ~ReclaimLock() NO_THREAD_SAFETY_ANALYSIS {
      if (!took_) return;
      reclaiming_ = nullptr;
      s_->reclaim_mu_.unlock();
    }
    ReclaimLock(const ReclaimLock&) = delete;
    ReclaimLock& operator=(const ReclaimLock&) = delete;

   private:
    StoreImpl* s_;
    bool took_;
  };
  static thread_local const StoreImpl*
      reclaiming_;  // the store whose reclaim_mu_ this thread holds
  // The transaction layer's view of this store.
  TxnContext txn_context();
  uint32_t reap_dead_locked() REQUIRES(reclaim_mu_);
  void reap_slots_locked(const std::vector<uint32_t>& slots) REQUIRES(reclaim_mu_);
  void drain_parked_locked() REQUIRES(reclaim_mu_);
  // Takes slot i if its byte is free; reclaims a dead owner's leftovers into
  // the new session. claim_mu held. nullptr when the slot is held.
  Result<SessionCore*> try_claim_locked(uint32_t i) REQUIRES(table_->claim_mutex());
  void free_slot(SessionCore* core);
  void watchdog_loop();
  void close_protocol();

  std::string path_;
  Options options_;
  Env* env_ = nullptr;
  std::unique_ptr<region::Region> region_;
  std::unique_ptr<region::Heap> heap_;
  std::unique_ptr<session::SessionTable> table_;
  std::unique_ptr<cycle::CycleManager> cycles_;
  std::unique_ptr<TxnManager> txns_;
  std::unique_ptr<LogManager> log_;
  std::unique_ptr<msg::Mailboxes> msgs_;
  bool forked_ = false;
  bool alone_ = false;            // this process opened the store alone
  bool rebuild_pending_ = false;  // the data file is new: load checkpoint and log
  RecoveryReport recovery_;
  bool force_rebuild_ = false;
  uint64_t recoveries_before_ = 0;  // the lock file's count when this lone open began
  uint64_t rebuild_segment_size_ = 0;
  uint64_t known_synced_ = 0;  // the clean-shutdown mark, when a sum was read

  // Serialises this process's reclamation work (reaping dead sessions,
  // draining parked ones: the watchdog's whole iteration) with verify() and
  // with fork() (the prepare handler takes it, so a child never inherits a
  // watchdog caught inside malloc). Lock order: reclaim_mu_, claim mutex,
  // parked_mu_.
  util::Mutex reclaim_mu_;
  util::Mutex parked_mu_;
  std::vector<std::unique_ptr<SessionCore>> parked_ GUARDED_BY(parked_mu_);

  util::Mutex watchdog_mu_;
  std::condition_variable_any watchdog_cv_;
  bool stopping_ GUARDED_BY(watchdog_mu_) = false;
  std::thread watchdog_;
  std::atomic<bool> watchdog_started_{false};
};

// Copies the log's rebuild report into the public one (store_report.cc).
void copy_rebuild_report(const log::RebuildReport& from, RecoveryReport* to);

}  // namespace stoa::internal

#endif  // STOA_STORE_IMPL_H_
