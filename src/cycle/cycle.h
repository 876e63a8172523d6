// cycle/cycle.h — cycle locking: pins, purgatory, the cycle manager.
//
// pin()/unpin() are wait-free and make no syscall. retire() puts an unlinked
// block in the session's purgatory, tagged with the current cycle. drain()
// frees what no pin can still see. try_advance() is the cycle manager: any
// session (or the watchdog) may call it; it moves the cycle forward when
// every live session is unpinned or pinned to the current cycle, and
// otherwise names the slots holding it back.
//
// Memory ordering (the argument is in cycle.cc): a pin is a relaxed store
// followed, in processes registered for membarrier, by nothing but a
// compiler barrier — the manager issues membarrier(GLOBAL_EXPEDITED) before
// reading pins, which orders every registered thread's pin before its later
// loads; elsewhere the pin is a seq_cst store. Unpin is a release store;
// the manager reads pins with acquire.
//
// Thread safety: a Purgatory and PinWord belong to one session (one thread
// at a time). try_advance and current are safe from any thread.
#ifndef STOA_CYCLE_CYCLE_H_
#define STOA_CYCLE_CYCLE_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "cycle/layout.h"
#include "region/heap.h"
#include "stoa/result.h"

namespace stoa::session {
class SessionTable;
}

namespace stoa::cycle {

class CycleManager {
 public:
  // `global` lives in the lock file. use_membarrier: this process registered
  // for MEMBARRIER_CMD_GLOBAL_EXPEDITED (see register_membarrier()).
  CycleManager(CycleGlobal* global, session::SessionTable* table, bool use_membarrier);

  // Registers the calling process for expedited global membarrier. Returns
  // false where the kernel or a sanitizer does not allow it.
  static bool register_membarrier();

  uint64_t current() const { return global_->current.load(std::memory_order_relaxed); }

  void pin(PinWord* w) const {
    uint64_t c = global_->current.load(std::memory_order_relaxed);
    if (membarrier_) {
      w->cycle.store(c, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      w->cycle.store(c, std::memory_order_seq_cst);
    }
  }
  void unpin(PinWord* w) const { w->cycle.store(0, std::memory_order_release); }

  // Puts `body` (already marked kRetired(owner), `bytes` long) into the
  // purgatory at the current cycle. The caller unlinked it before calling.
  void retire(Purgatory& p, region::Heap& heap, region::Owner& o, region::Offset body,
              uint64_t bytes);
  // The same for a block a reclaimer adopts from a dead session while the
  // heap walk holds the page lock (Heap::recover's callback): never frees
  // (retire may free an older bag, which takes the page lock again). A bag
  // of an older cycle is relabelled to the current one instead: its blocks
  // are freed later than they could be, never earlier.
  void adopt_retired(Purgatory& p, region::Heap& heap, region::Offset body, uint64_t bytes);
  // Frees every bag no pin can see (all = true: every bag; only when no
  // other session can hold a pointer). Returns blocks freed.
  uint64_t drain(Purgatory& p, region::Heap& heap, region::Owner& o, bool all = false);
  // Empties a purgatory without freeing (after recovery took its blocks).
  static void reset(Purgatory& p);

  // True when the oldest non-empty bag of `p` is not yet freeable.
  bool needs_advance(const Purgatory& p) const;

  struct Advance {
    bool advanced = false;
    uint64_t cycle = 0;              // the current cycle afterwards
    std::vector<uint32_t> blockers;  // live slots pinned to an older cycle
  };
  // rate_limited: skip (report no progress) when this process issued a
  // barrier less than 50 us ago — for the automatic collects on the write
  // path, where a barrier per call would cost more than it frees.
  Advance try_advance(bool rate_limited = false);

 private:
  uint64_t free_bag(Purgatory& p, uint32_t i, region::Heap& heap, region::Owner& o);
  // Links body into bag, labels the bag with cycle and counts it.
  static void push(Purgatory& p, Purgatory::Bag& bag, uint64_t cycle, region::Heap& heap,
                   region::Offset body, uint64_t bytes);

  CycleGlobal* global_;
  session::SessionTable* table_;
  bool membarrier_;
  // Last barrier this process issued (monotonic ns): advances closer than
  // kAdvanceGapNs apart reuse it instead of paying another IPI round.
  std::atomic<uint64_t> last_attempt_ns_{0};
};

}  // namespace stoa::cycle

#endif  // STOA_CYCLE_CYCLE_H_
