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
#include <new>
#include <type_traits>

#include "session/layout.h"

namespace stoa::cycle {

inline constexpr uint32_t kCycleRing = 64;
inline constexpr uint32_t kBags = 3;

struct PinWord {
  // The cycle this session is pinned to, 0 when unpinned. Stored by the owner
  // (relaxed plus a process-wide barrier issued by the manager through
  // membarrier, or seq_cst where membarrier is unavailable); loaded by the
  // manager with acquire, pairing with the owner's release on unpin.
  //
  // Bits (txn/expiry.cc has the protocol): [0, 46) the cycle; [46, 62) a tag
  // naming one bounded transaction (0 for any other pin); bit 62 kPinExpirable
  // (set by the owner, release, between the calls of a bounded transaction;
  // cleared by its CAS at each call's entry); bit 63 kPinExpired (set by an
  // expirer's CAS, only on an expirable word). An expired pin holds nothing
  // back: try_advance and the trimmers ignore it, and the owner's next call
  // finds the bit and reads no shared memory.
  std::atomic<uint64_t> cycle;
};
inline constexpr uint32_t kPinTagShift = 46;
inline constexpr uint64_t kPinCycleMask = (uint64_t{1} << kPinTagShift) - 1;
inline constexpr uint64_t kPinTagMask = uint64_t{0xffff} << kPinTagShift;
inline constexpr uint64_t kPinExpirable = uint64_t{1} << 62;
inline constexpr uint64_t kPinExpired = uint64_t{1} << 63;
// The cycle a pin word holds back: 0 when unpinned or expired.
inline uint64_t pinned_cycle(uint64_t word) {
  return (word & kPinExpired) != 0 ? 0 : word & kPinCycleMask;
}

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

static_assert(sizeof(PinWord) == session::kPinAreaBytes && alignof(PinWord) <= 8 &&
              std::is_standard_layout_v<PinWord>);
static_assert(sizeof(Purgatory) == session::kPurgatoryAreaBytes && alignof(Purgatory) <= 8 &&
              std::is_standard_layout_v<Purgatory>);
static_assert(sizeof(CycleGlobal) == session::kCycleGlobalAreaBytes && alignof(CycleGlobal) <= 64 &&
              std::is_standard_layout_v<CycleGlobal>);

// The cycle layer's areas of the lock file (session/layout.h's table). Zero
// cost: the lock file is mapped, zero-filled, and these structs are only ever
// used in place.
inline PinWord& pin_of(session::SessionSlot& s) {
  return *std::launder(reinterpret_cast<PinWord*>(s.pin_area));
}
inline const PinWord& pin_of(const session::SessionSlot& s) {
  return *std::launder(reinterpret_cast<const PinWord*>(s.pin_area));
}
inline Purgatory& purgatory_of(session::SessionSlot& s) {
  return *std::launder(reinterpret_cast<Purgatory*>(s.purgatory_area));
}
inline const Purgatory& purgatory_of(const session::SessionSlot& s) {
  return *std::launder(reinterpret_cast<const Purgatory*>(s.purgatory_area));
}
inline CycleGlobal& global_of(session::LockHeader& h) {
  return *std::launder(reinterpret_cast<CycleGlobal*>(h.cycle_area));
}
inline const CycleGlobal& global_of(const session::LockHeader& h) {
  return *std::launder(reinterpret_cast<const CycleGlobal*>(h.cycle_area));
}

// Makes a freshly zeroed lock file's cycle area valid: cycle 1 begins now.
// The lone opener only, before anyone pins.
void init_global(CycleGlobal& g);

}  // namespace stoa::cycle

#endif  // STOA_CYCLE_LAYOUT_H_
