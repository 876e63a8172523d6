// bench/urcu_call.cc — liburcu-memb read-side loops through the library's
// exported functions (no _LGPL_SOURCE, so urcu_memb_read_lock/unlock are
// calls into liburcu-memb.so, not inlined). Stoa's pin()/unpin() are calls
// into libstoa too, so this is the like-for-like "function call" anchor;
// cycle_bench.cc also measures the inlined (_LGPL_SOURCE) fast path.
#include <urcu/urcu-memb.h>

#include <cstdint>

#include "bench.h"

namespace stoa_bench::urcu_call {

// Runs n read_lock/read_unlock pairs on the calling (registered) thread;
// returns the elapsed seconds.
double read_lock_unlock(uint64_t n) {
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; i++) {
    urcu_memb_read_lock();
    urcu_memb_read_unlock();
  }
  return seconds_since(t0);
}

}  // namespace stoa_bench::urcu_call
