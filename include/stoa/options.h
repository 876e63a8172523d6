// stoa/options.h — how a store is opened.
//
// Thread safety: a plain value type.
#ifndef STOA_OPTIONS_H_
#define STOA_OPTIONS_H_

#include <chrono>
#include <cstdint>

namespace stoa {

// What a commit promises once it returns (see DESIGN.md, guarantee 4). The
// substrate records the choice; the log layer enforces it.
enum class Durability : uint8_t {
  kSync,   // commit returns after the log is on disk
  kGroup,  // commits share an fsync within a bounded window (default)
  kNone,   // OS write-back only: survives process crashes, not power loss
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

  Durability durability = Durability::kGroup;

  // A background thread per open store that notices dead sessions and
  // reclaims their slots, caches and pinned cycles. 0 turns it off (then
  // dead sessions are found when a live one needs their slot or their pin).
  std::chrono::milliseconds watchdog_interval{20};
  // A session pinned to one cycle longer than this is reported as stalled.
  std::chrono::milliseconds stall_threshold{1000};
  // Fill freed memory with a poison pattern before reuse (catches
  // use-after-free in tests; costs a memset per free).
  bool poison_freed = false;
};

}  // namespace stoa

#endif  // STOA_OPTIONS_H_
