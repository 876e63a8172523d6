// stoa/stats.h — what a store reports about itself: the session table and
// the layers' figures (Store::stats), the checks of Store::verify, and what
// opening or recovering a store did (Store::recover).
//
// Plain value types: copy them freely; no method touches the store.
#ifndef STOA_STATS_H_
#define STOA_STATS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace stoa {

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
  // Of that snapshot (0 when none): how long ago it was taken (to a few ms
  // for a transaction without a bound), how many commits and how many bytes
  // of log were committed since (the versions they wrote are what it keeps
  // from trimming, at most).
  double snapshot_age_seconds = 0;
  uint64_t snapshot_lag_commits = 0;
  uint64_t snapshot_lag_bytes = 0;
  // Its snapshot passed its bound (Options::max_snapshot_age / _lag) and
  // was released; the transaction's next call returns kTimeout. An expired
  // snapshot holds nothing back and is not counted in has_snapshot.
  bool snapshot_expired = false;
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
  uint64_t keys = 0;                // key records in the index (deleted keys until removed)
  uint64_t keys_removed = 0;        // deleted keys' records removed from the index so far
  double used_bytes_per_key = 0;    // used_bytes / keys (0 with no keys): space per key
  uint64_t commits = 0;             // commits installed since the data file was made or rebuilt
  uint64_t snapshots_expired =
      0;                        // transactions expired by their snapshot bound (lock file's life)
  uint64_t last_commit_ts = 0;  // last commit timestamp handed out
  uint64_t visible_ts = 0;      // every commit up to here is installed: new snapshots
  // The log (src/log/log.cc). Timestamps are log positions: a commit's
  // timestamp is the end of its log record.
  uint64_t durable_ts = 0;     // every commit up to here is on disk
  uint64_t checkpoint_ts = 0;  // the last completed checkpoint holds every commit up to here
  uint64_t log_bytes = 0;      // log written since that checkpoint
  std::string log_failed;      // empty, or why the log stopped accepting commits
  // Messaging (src/msg/): mailboxes in use (closed ones not yet freed too),
  // the messages in them (waiting or leased) and the waiting payload bytes.
  uint64_t mailboxes = 0;
  uint64_t messages = 0;
  uint64_t message_bytes = 0;
  // Channels (stoa/channel.h) and the messages pushed and not yet popped.
  uint64_t channels = 0;
  uint64_t channel_messages = 0;
  std::optional<SessionInfo> oldest_pin;
  // The session holding the oldest live (not expired) transaction snapshot
  // (versions newer than it cannot be trimmed below it), with its age and
  // lag (SessionInfo::snapshot_*).
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
  uint64_t messages = 0;              // mailbox messages checked (lists, counts, checksums)
                                      // and channel messages waiting (ring words)
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

}  // namespace stoa

#endif  // STOA_STATS_H_
