// cycle/layout.h — cycle-locking state in the lock file.
//
// The current cycle is one global counter. A session announces the cycle it
// works in by storing it in its slot's PinWord (0 = not pinned). The cycle
// manager (any session) may move the counter from c to c+1 only when every
// live pin is 0 or c. A block retired while the counter reads r is freed once
// the counter reaches r+2: by then every session that could have seen it has
// unpinned. See cycle.cc for the memory-ordering argument.
#ifndef STOA_CYCLE_LAYOUT_H_
#define STOA_CYCLE_LAYOUT_H_

#include <atomic>
#include <cstdint>

namespace stoa::cycle {

inline constexpr uint32_t kCycleRing = 64;
inline constexpr uint32_t kBags = 3;

struct PinWord {
  // The cycle this session is pinned to, 0 when unpinned. Stored by the owner
  // (relaxed plus a process-wide barrier issued by the manager through
  // membarrier, or seq_cst where membarrier is unavailable); loaded by the
  // manager with acquire, pairing with the owner's release on unpin.
  std::atomic<uint64_t> cycle;
};

struct CycleGlobal {
  // The current cycle, >= 1. Advanced by CAS (acq_rel) by any manager;
  // loaded relaxed by pinners (a stale value only pins conservatively).
  std::atomic<uint64_t> current;
  std::atomic<uint64_t> advances;  // relaxed: stats
  // CLOCK_MONOTONIC time each cycle began, by cycle % kCycleRing. Written
  // (relaxed) by the manager that started the cycle; read for reporting.
  std::atomic<uint64_t> started_ns[kCycleRing];
};

// A session's purgatory: blocks it retired, in up to three bags by the cycle
// they were retired in, linked through their block headers. Owner only (a
// recoverer takes over the blocks after the owner died, found by their tags).
struct Purgatory {
  struct Bag {
    uint64_t cycle;  // retire cycle of every block in the bag; 0 when empty
    uint64_t head;   // first block (Offset of its body)
    uint64_t count;
    uint64_t bytes;
  };
  Bag bags[kBags];
  std::atomic<uint64_t> bytes;    // total, for stats (relaxed)
  std::atomic<uint64_t> objects;  // total, for stats (relaxed)
};

}  // namespace stoa::cycle

#endif  // STOA_CYCLE_LAYOUT_H_
