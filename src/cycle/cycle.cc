// cycle/cycle.cc — cycle locking across processes.
//
// Protocol (epoch-based reclamation, after Starkey's cycle locks):
//  1. A session pins: it reads the current cycle c and stores it in its
//     slot's pin word, then reads shared structures; it unpins with a
//     release store of 0.
//  2. A writer unlinks a block, issues a seq_cst fence, reads the current
//     cycle r and puts the block in its purgatory bag for r.
//  3. The manager reads the current cycle c, issues a full barrier on every
//     CPU running a registered process (membarrier GLOBAL_EXPEDITED; in an
//     unregistered process it relies on the pinners' seq_cst stores), reads
//     every live slot's pin with acquire, and moves the cycle c -> c+1 by
//     CAS only if every pin is 0 or c.
//  4. A bag of cycle r is freed once the current cycle is >= r + 2.
//
// Why it is safe: a reader that could hold a pointer to a block retired at r
// pinned before the unlink became visible to it, so its pin is <= r (a stale
// read of the cycle only makes a pin older). Reaching r+2 requires an advance
// from r+1 that saw every pin at 0 or r+1, which means that reader had
// unpinned — and its release store of 0, read with acquire by the manager,
// orders all its reads before the free. The barrier in step 3 plays the role
// of the fence a reader would otherwise issue after storing its pin (the
// liburcu "memb" flavour, here across processes).
//
// Expiry: a pin word marked kPinExpired (cycle/layout.h) counts as 0 in
// step 3. Only an expirer's CAS sets it, and only on a word its owner marked
// expirable by a release store after its last read; the owner's next read
// of shared memory is preceded by a CAS that finds the mark and stops
// (txn/expiry.cc). So an expired pin, like 0, guards no read.
//
// Death: a dead session's pin is ignored once its slot leaves kLive; until
// then it holds the cycle back and try_advance names it as a blocker, so the
// caller probes it and reclaims it (store_impl.cc). A crash in the middle of
// drain() leaves blocks tagged kRetired or kCached with the dead session's
// tag; recovery finds them by tag, so the bag lists need no repair.
#include "cycle/cycle.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "session/session_table.h"
#include "util/clock.h"

namespace stoa::cycle {

void init_global(CycleGlobal& g) {
  g.current.store(1, std::memory_order_relaxed);
  g.started_ns[1].store(util::mono_ns(), std::memory_order_relaxed);
}

namespace {
int membarrier(int cmd) { return int(::syscall(__NR_membarrier, cmd, 0, 0)); }
}  // namespace

bool CycleManager::register_membarrier() {
#if defined(STOA_TSAN)
  return false;  // TSan cannot see the ordering membarrier provides
#else
  int mask = membarrier(MEMBARRIER_CMD_QUERY);
  if (mask < 0 || !(mask & MEMBARRIER_CMD_GLOBAL_EXPEDITED)) return false;
  return membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
#endif
}

CycleManager::CycleManager(CycleGlobal* global, session::SessionTable* table, bool use_membarrier)
    : global_(global), table_(table), membarrier_(use_membarrier) {}

void CycleManager::retire(Purgatory& p, region::Heap& heap, region::Owner& o, region::Offset body,
                          uint64_t bytes) {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // the unlink before the cycle read
  uint64_t c = global_->current.load(std::memory_order_relaxed);
  Purgatory::Bag& bag = p.bags[c % kBags];
  if (bag.count != 0 && bag.cycle != c) {
    // Same slot, older cycle: bag.cycle <= c - 3, so no pin can see it.
    free_bag(p, uint32_t(c % kBags), heap, o);
  }
  push(p, bag, c, heap, body, bytes);
}

void CycleManager::adopt_retired(Purgatory& p, region::Heap& heap, region::Offset body,
                                 uint64_t bytes) {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // as retire
  uint64_t c = global_->current.load(std::memory_order_relaxed);
  Purgatory::Bag& bag = p.bags[c % kBags];
  // An older bag joins this cycle: freed no earlier than it could be.
  push(p, bag, c, heap, body, bytes);
}

void CycleManager::push(Purgatory& p, Purgatory::Bag& bag, uint64_t cycle, region::Heap& heap,
                        region::Offset body, uint64_t bytes) {
  bag.cycle = cycle;
  heap.set_link(body, bag.head);
  bag.head = body;
  bag.count++;
  bag.bytes += bytes;
  p.bytes.fetch_add(bytes, std::memory_order_relaxed);
  p.objects.fetch_add(1, std::memory_order_relaxed);
}

uint64_t CycleManager::free_bag(Purgatory& p, uint32_t i, region::Heap& heap, region::Owner& o) {
  Purgatory::Bag& bag = p.bags[i];
  uint64_t n = 0;
  for (region::Offset b = bag.head; b != 0 && n < bag.count; n++) {
    region::Offset next = heap.link(b);
    (void)heap.free(o, b);  // an error here means damage; verify reports it
    b = next;
  }
  p.bytes.fetch_sub(bag.bytes, std::memory_order_relaxed);
  p.objects.fetch_sub(bag.count, std::memory_order_relaxed);
  bag = Purgatory::Bag{0, 0, 0, 0};
  return n;
}

uint64_t CycleManager::drain(Purgatory& p, region::Heap& heap, region::Owner& o, bool all) {
  std::atomic_thread_fence(std::memory_order_acquire);
  uint64_t c = global_->current.load(std::memory_order_acquire);
  uint64_t freed = 0;
  for (uint32_t i = 0; i < kBags; i++) {
    const Purgatory::Bag& bag = p.bags[i];
    if (bag.count == 0) continue;
    if (all || bag.cycle + 2 <= c) freed += free_bag(p, i, heap, o);
  }
  return freed;
}

void CycleManager::reset(Purgatory& p) {
  for (auto& b : p.bags) b = Purgatory::Bag{0, 0, 0, 0};
  p.bytes.store(0, std::memory_order_relaxed);
  p.objects.store(0, std::memory_order_relaxed);
}

bool CycleManager::needs_advance(const Purgatory& p) const {
  uint64_t c = global_->current.load(std::memory_order_relaxed);
  for (const auto& b : p.bags) {
    if (b.count != 0 && b.cycle + 2 > c) return true;
  }
  return false;
}

namespace {
constexpr uint64_t kAdvanceGapNs = 50'000;  // at most one barrier per 50 us per process
}

CycleManager::Advance CycleManager::try_advance(bool rate_limited) {
  Advance a;
  uint64_t c = global_->current.load(std::memory_order_relaxed);
  const uint64_t now = util::mono_ns();
  uint64_t last = last_attempt_ns_.load(std::memory_order_relaxed);
  if (rate_limited && (now - last < kAdvanceGapNs || !last_attempt_ns_.compare_exchange_strong(
                                                         last, now, std::memory_order_relaxed))) {
    a.cycle = c;  // another thread of this process is advancing, or just did
    return a;
  }
  last_attempt_ns_.store(now, std::memory_order_relaxed);
  // Orders every registered pinner's pin store before its later loads. If
  // the barrier cannot be issued, pins stored relaxed elsewhere might not be
  // visible yet: advancing would be unsafe, so don't.
  if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0) {
    a.cycle = c;
    return a;
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint32_t n = table_->slot_count();
  for (uint32_t i = 0; i < n; i++) {
    session::SessionSlot* s = table_->slot(i);
    if (s->state.load(std::memory_order_acquire) != uint32_t(session::SlotState::kLive)) continue;
    // An expired pin (txn/expiry.cc) holds nothing: its owner reads no
    // shared memory before it unpins.
    uint64_t pin = pinned_cycle(pin_of(*s).cycle.load(std::memory_order_acquire));
    if (pin != 0 && pin != c) a.blockers.push_back(i);
  }
  if (!a.blockers.empty()) {
    a.cycle = c;
    return a;
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  if (global_->current.compare_exchange_strong(c, c + 1, std::memory_order_acq_rel)) {
    global_->started_ns[(c + 1) % kCycleRing].store(util::mono_ns(), std::memory_order_relaxed);
    global_->advances.fetch_add(1, std::memory_order_relaxed);
    a.advanced = true;
    a.cycle = c + 1;
  } else {
    a.cycle = c;  // someone else advanced it: just as good
  }
  return a;
}

}  // namespace stoa::cycle
