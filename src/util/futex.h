// util/futex.h — sleeping on and waking a 32-bit word in a shared mapping.
//
// The one place Stoa calls futex(2). The words are plain shared (not
// private) futexes, so a wake in one process reaches sleepers in another.
// wait() returns when the word no longer holds `expected`, when woken, on a
// signal, or after `timeout_ns` (spurious returns are allowed: callers
// re-check their condition in a loop).
//
// Thread safety: any thread of any process mapping the word. Memory
// ordering: none beyond the caller's own loads and stores of the word; a
// waker stores (or fetch_adds) the word before calling wake(), and a waiter
// loads it before calling wait() with the value it saw.
#ifndef STOA_UTIL_FUTEX_H_
#define STOA_UTIL_FUTEX_H_

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>

namespace stoa::util {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
              std::atomic<uint32_t>::is_always_lock_free);

inline void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns) {
  struct timespec ts {
    time_t(timeout_ns / 1'000'000'000), long(timeout_ns % 1'000'000'000)
  };
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

// Wakes up to `n` sleepers (all by default).
inline void futex_wake(std::atomic<uint32_t>* word, int n = INT_MAX) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, n, nullptr, nullptr, 0);
}

}  // namespace stoa::util

#endif  // STOA_UTIL_FUTEX_H_
