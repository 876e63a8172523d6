// util/clock.h — clocks. Thread safety: pure functions.
#ifndef STOA_UTIL_CLOCK_H_
#define STOA_UTIL_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace stoa::util {

inline uint64_t clock_ns(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}
// Monotonic: intervals and ages.
inline uint64_t mono_ns() { return clock_ns(CLOCK_MONOTONIC); }
// The same clock, as coarse (a few ms) and cheap as coarse_real_ns.
inline uint64_t coarse_mono_ns() { return clock_ns(CLOCK_MONOTONIC_COARSE); }
// Wall clock, millisecond-coarse and cheap: flight-recorder stamps.
inline uint64_t coarse_real_ns() { return clock_ns(CLOCK_REALTIME_COARSE); }
inline uint64_t real_ns() { return clock_ns(CLOCK_REALTIME); }

}  // namespace stoa::util

#endif  // STOA_UTIL_CLOCK_H_
