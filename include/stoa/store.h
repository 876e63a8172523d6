// stoa/store.h — a store that many threads and processes open at once.
//
// A store is a directory holding a data file (`stoa.data`, the persistent
// heap every process maps), a lock file (`stoa.lock`, the session table,
// cycle state and flight recorders), and `log/`, room for the write-ahead
// log. Any number of processes may open the same directory; each maps the
// files at whatever address it gets and refers to shared data by offset.
//
// Thread safety: `Store` is thread-safe; many threads may call `session()`,
// `stats()` and `verify()` concurrently. A `Session` belongs to one thread at
// a time (hand it over with external synchronisation). A `Store` must outlive
// its sessions, and must not be used in a child after fork(): the child opens
// the store again (the fork handler closes the inherited descriptors so a
// dead parent is still seen as dead).
#ifndef STOA_STORE_H_
#define STOA_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stoa/options.h"
#include "stoa/result.h"
#include "stoa/txn.h"

namespace stoa {

class Session;
namespace internal {
class StoreImpl;
class SessionCore;
struct StoreAccess;
}  // namespace internal

// One row of the session table, as `stats()` reports it.
struct SessionInfo {
  uint32_t slot = 0;
  uint32_t generation = 0;
  int64_t pid = 0;
  uint64_t tid = 0;
  // "live"; "parked" (closed, its retired memory not yet freeable);
  // "dead" (its process is gone, not yet reclaimed); "recovering".
  std::string state;
  uint64_t pinned_cycle = 0;       // 0 when not pinned
  double pin_age_seconds = 0;      // upper bound on how long it has been pinned
  bool stalled = false;            // pinned longer than Options::stall_threshold
  uint64_t purgatory_bytes = 0;    // retired by this session, not yet freed
  uint64_t purgatory_objects = 0;  // blocks among them
  uint64_t allocated_bytes = 0;    // allocated by this session minus freed
  bool has_snapshot = false;       // a transaction of it holds a snapshot
  uint64_t snapshot = 0;           // that snapshot's timestamp, 0 when none
};

// What recovery did, in any process, since the lock file was made: each
// branch of the crash-recovery protocols, counted when taken.
struct RecoveryCounts {
  uint64_t rolled_forward = 0;  // dead commits past their commit point, finished by a survivor
  uint64_t undone = 0;          // dead commits before it: locks released, versions dropped
  uint64_t log_settled = 0;     // dead commits' log ranges rewritten (the record, or padding)
  uint64_t nodes_unfrozen = 0;  // frozen index nodes replaced by a helping writer
  uint64_t heap_repaired = 0;   // allocator lists rebuilt after their lock holder died
  uint64_t heap_rebuilt = 0;    // whole-heap rebuilds by a lone opener after a crash
};

struct StoreStats {
  std::string path;
  uint64_t file_size = 0;
  uint64_t max_size = 0;
  uint64_t free_page_bytes = 0;   // in free page runs
  uint64_t free_block_bytes = 0;  // in central free lists of small blocks
  uint64_t used_bytes = 0;        // file_size minus the two above and metadata
  uint32_t max_sessions = 0;
  uint64_t current_cycle = 0;
  uint64_t purgatory_bytes = 0;
  uint64_t purgatory_objects = 0;
  uint64_t sessions_recovered = 0;  // dead sessions reclaimed since the lock file was made
  RecoveryCounts recovery;          // the recovery branches those reclaims took
  uint64_t keys = 0;                // key records in the index (deleted keys included)
  uint64_t last_commit_ts = 0;      // last commit timestamp handed out
  uint64_t visible_ts = 0;          // every commit up to here is installed: new snapshots
  // The log (src/log/log.cc). Timestamps are log positions: a commit's
  // timestamp is the end of its log record.
  uint64_t durable_ts = 0;     // every commit up to here is on disk
  uint64_t checkpoint_ts = 0;  // the last completed checkpoint holds every commit up to here
  uint64_t log_bytes = 0;      // log written since that checkpoint
  std::string log_failed;      // empty, or why the log stopped accepting commits
  std::optional<SessionInfo> oldest_pin;
  // The session holding the oldest transaction snapshot (versions newer
  // than it cannot be trimmed below it).
  std::optional<SessionInfo> oldest_snapshot;
  std::vector<SessionInfo> sessions;
};

struct VerifyReport {
  bool exclusive = false;  // no other process had the store open: full check
  uint64_t runs = 0;       // page runs walked
  uint64_t slabs = 0;
  uint64_t large_runs = 0;
  uint64_t free_runs = 0;
  uint64_t blocks_checked = 0;  // block guards checked
  uint64_t blocks_live = 0;
  uint64_t blocks_free = 0;
  uint64_t blocks_cached = 0;   // in some session's cache
  uint64_t blocks_private = 0;  // allocated, not yet published
  uint64_t blocks_retired = 0;
  bool index_checked = false;         // the key index was walked (needs a free session slot)
  uint64_t keys = 0;                  // key records found in the index
  bool log_checked = false;           // every log record and checkpoint block checksum read
  uint64_t log_records = 0;           // records checked from the checkpoint to the end
  uint64_t checkpoint_keys = 0;       // entries checked in the last checkpoint
  std::vector<std::string> problems;  // each names the damaged place
  bool sound() const { return problems.empty(); }
};

// What opening a store found and did (Store::recover, `stoa recover`).
struct RecoveryReport {
  // The data file was rebuilt from the last checkpoint and the log: after
  // an unclean shutdown followed by a reboot (its pages may be torn), when
  // its clean-shutdown checksums did not match, when it was missing or
  // damaged, or when asked.
  bool rebuilt = false;
  std::string reason;               // why it was rebuilt, or why not
  uint64_t checkpoint_ts = 0;       // checkpoint replayed from (0: none, log from the start)
  uint64_t checkpoint_keys = 0;     // keys loaded from it
  uint64_t log_records = 0;         // commit records replayed after it
  uint64_t log_bytes = 0;           // log bytes read after it
  uint64_t end_ts = 0;              // the last commit kept (end of the valid log)
  uint64_t truncated_bytes = 0;     // torn tail discarded (written after the last sync)
  uint32_t sessions_recovered = 0;  // dead sessions whose commits were finished or undone
  double seconds = 0;
};

// What Store::recover does with the data file.
enum class RecoverMode : uint8_t {
  kReplay,   // trust it when its checksums and the log allow, as open() does
  kRebuild,  // rebuild it from the checkpoint and the log
};

class Store {
 public:
  // Opens (or creates, per options) the store in directory `path`.
  // Errors: kNotFound (no store and create_if_missing is false), kExists,
  // kPermission, kCorrupt (damaged or foreign file, naming path and reason),
  // kVersionMismatch (another format or struct layout), kIo, kInvalidArgument.
  static Result<std::unique_ptr<Store>> open(const std::string& path, const Options& options = {});

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // A new session (one thread's handle). Errors: kFull when every slot is
  // taken by a live session, kClosed, kIo.
  Result<Session> session();

  // A snapshot of sizes, sessions, cycle and purgatory. Errors: kClosed.
  Result<StoreStats> stats();

  // Checks header, allocator metadata and every guard. When no other process
  // has the store open the check is exhaustive (free lists, leaks, counts);
  // otherwise it checks what can be checked while others run.
  Result<VerifyReport> verify();

  // Looks for dead sessions now and reclaims them; returns how many.
  Result<uint32_t> reap_dead_sessions();

  // Writes a checkpoint now (online: readers and writers go on) and drops
  // the log before it. Returns the timestamp it holds. Errors: kIo, kFull.
  Result<uint64_t> checkpoint();
  // Makes every commit so far durable (an fdatasync of the log).
  Status sync();
  // Writes an online, consistent copy of the store into `dest` (a new
  // directory): a checkpoint of one snapshot, which opening `dest` loads.
  // Returns the timestamp the copy holds. Errors: kExists, kIo, kFull.
  Result<uint64_t> backup(const std::string& dest);
  // What the open of this Store found and did.
  const RecoveryReport& recovery() const;

  // Opens the store alone (no other process may have it open: kBusy),
  // recovers it as open() would (kReplay) — or rebuilds the data file from
  // the checkpoint and log (kRebuild) — closes it, and reports.
  static Result<RecoveryReport> recover(const std::string& path,
                                        RecoverMode mode = RecoverMode::kReplay,
                                        const Options& options = {});
  // Offline shrink: opens the store alone, writes a checkpoint, and
  // rebuilds the data file from it (live data only, no free space, no log).
  // Returns the report of the rebuild. Errors: kBusy, kIo, kFull, kCorrupt.
  static Result<RecoveryReport> compact(const std::string& path, const Options& options = {});

  const std::string& path() const;

 private:
  friend struct internal::StoreAccess;
  explicit Store(std::unique_ptr<internal::StoreImpl> impl);
  std::unique_ptr<internal::StoreImpl> impl_;
};

// One thread's handle on a store: a slot in the session table. Move-only.
// Closing (or destroying) it returns its cached memory and frees its slot.
class Session {
 public:
  Session() = default;
  ~Session();
  Session(Session&& other) noexcept;
  Session& operator=(Session&& other) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  bool is_open() const { return core_ != nullptr; }
  // The slot index in the session table, and its generation.
  uint32_t slot() const;
  uint32_t generation() const;
  // Starts a transaction on this session's snapshot. One transaction at a
  // time per session. Errors: kClosed, kInvalidArgument (one is active).
  Result<Txn> begin(const TxnOptions& options = {});
  // Runs fn in a transaction and commits it; on kConflict (from fn, from
  // commit, or from Txn::retry) runs it again, with backoff, up to
  // options.max_attempts times. Any other error from fn aborts and is
  // returned. Returns the commit timestamp.
  Result<uint64_t> transact(const std::function<Status(Txn&)>& fn,
                            const TransactOptions& options = {});

  // Returns caches, drains what purgatory it can, and frees the slot.
  // Afterwards every call returns kClosed.
  Status close();

 private:
  friend class Store;
  friend struct internal::StoreAccess;
  explicit Session(internal::SessionCore* core) : core_(core) {}
  internal::SessionCore* core_ = nullptr;
};

}  // namespace stoa

#endif  // STOA_STORE_H_
