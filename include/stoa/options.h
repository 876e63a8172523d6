// stoa/options.h — how a store is opened.
//
// Thread safety: a plain value type.
#ifndef STOA_OPTIONS_H_
#define STOA_OPTIONS_H_

#include <chrono>
#include <cstdint>

namespace stoa {

class Env;  // stoa/env.h

// What a commit promises once it returns (see guarantee 4 in docs/guarantees.md and
// src/log/log.cc). Every mode writes the commit's log record before commit()
// returns; the modes differ in when it reaches the disk.
enum class Durability : uint8_t {
  // commit() returns after the log is on disk (fdatasync), so the commit
  // survives power loss. Concurrent sync commits share one fdatasync.
  kSync,
  // commit() returns once the record is written to the OS; a background
  // flusher makes it durable within `group_window` plus the fdatasync in
  // progress and its own (power_loss_test asserts group_window + 100 ms on
  // the 2-core reference machine; measured worst about 11 ms). With
  // log_threads off there is no flusher and the commit syncs inline.
  // After power loss the store holds a prefix of the commit order that
  // contains every commit acknowledged before the last completed flush.
  kGroup,
  // OS write-back only: survives process crashes, not power loss.
  kNone,
};

struct Options {
  // Create the store directory and its files when they are missing.
  bool create_if_missing = true;
  // Refuse to open a store that already exists (with kExists).
  bool error_if_exists = false;

  // Fixed when the store is created; ignored when opening an existing one.
  uint64_t max_size = uint64_t{16} << 30;     // the data file never grows past this
  uint64_t initial_size = uint64_t{4} << 20;  // first size of the data file
  uint64_t grow_chunk = uint64_t{4} << 20;    // the file grows by at least this much
  uint32_t max_sessions = 126;                // session-table slots

  // Per process: sessions of this Store commit with this promise.
  Durability durability = Durability::kGroup;
  // kGroup: the longest a commit waits before its group's fdatasync starts.
  std::chrono::microseconds group_window{2000};
  // The log is a series of files of this size (fixed when the store is
  // created; at least 64 KiB, a multiple of 4 KiB).
  uint64_t log_segment_size = uint64_t{64} << 20;
  // A checkpoint starts when the log since the last one exceeds this many
  // bytes and also the size of the last checkpoint (so rewriting the data
  // costs at most about as much again as logging it). 0: only explicit
  // checkpoints (Store::checkpoint, close after a crash repair).
  uint64_t checkpoint_log_bytes = uint64_t{256} << 20;

  // A background thread per open store that notices dead sessions and
  // reclaims their slots, caches and pinned cycles. 0 turns it off (then
  // dead sessions are found when a live one needs their slot or their pin).
  std::chrono::milliseconds watchdog_interval{20};
  // The log's background threads: the group-commit flusher and the
  // checkpointer. Off: kGroup commits sync inline (as kSync) and
  // checkpoints run only when asked for or from other processes. (A process
  // that forks while it holds a store open wants no threads: it turns off
  // both this and the watchdog.)
  bool log_threads = true;
  // A session pinned to one cycle longer than this is reported as stalled.
  std::chrono::milliseconds stall_threshold{1000};
  // Long readers are bounded (guarantee 2.8 in docs/guarantees.md). A
  // transaction of this process whose snapshot is older than
  // max_snapshot_age, or more than max_snapshot_lag commits or
  // max_snapshot_lag_bytes bytes of log behind the newest one, is expired:
  // its next call (get, put, del, scan, a cursor step, commit) returns
  // kTimeout, and the versions and memory it held are released at once, so
  // a forgotten reader cannot make the file grow without bound. Under a
  // bound, a View or cursor key stays valid until its transaction ends or
  // expires, whichever comes first (copy what you keep longer). 0 (the
  // default): no bound; Views stay valid until the transaction ends.
  std::chrono::milliseconds max_snapshot_age{0};
  uint64_t max_snapshot_lag = 0;        // in commits
  uint64_t max_snapshot_lag_bytes = 0;  // in log bytes committed since the snapshot
  // Per process: ask the kernel to map the data file with 2 MiB pages
  // (madvise MADV_HUGEPAGE) where its file system keeps large folios (ext4,
  // xfs, tmpfs on recent Linux). Fewer page faults and TLB misses on the
  // commit and read paths; the kernel's background write-back of the data
  // file then works in 2 MiB units. Ignored where the kernel has none.
  bool huge_pages = true;
  // Fill freed memory with a poison pattern before reuse (catches
  // use-after-free in tests; costs a memset per free).
  bool poison_freed = false;

  // Every file operation of this store goes through it (stoa/env.h); not
  // owned, and it must outlive the store. nullptr: Env::posix().
  Env* env = nullptr;
};

}  // namespace stoa

#endif  // STOA_OPTIONS_H_
