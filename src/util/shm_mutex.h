// util/shm_mutex.h — a robust, process-shared mutex that lives in a shared
// mapping, with an RAII guard the Clang thread-safety analysis knows.
//
// A ShmMutex wraps a pthread mutex made PTHREAD_PROCESS_SHARED and
// PTHREAD_MUTEX_ROBUST. When its holder dies, the kernel marks it; the next
// locker gets the lock together with the duty to repair what it guards.
// lock(repair) runs `repair` (holding the mutex) in exactly that case and
// then marks the mutex consistent, so no caller can forget the repair or
// the consistent mark. A repairer that dies before finishing leaves the
// mutex owner-died again: the repair must be idempotent (each one is, and
// says why where it is written). Waiters sleep on a futex in the shared
// mapping, so a wake-up crosses processes.
//
// Thread safety: lock/unlock from any thread of any process mapping it.
// Memory ordering: lock() acquires and unlock() releases, as any mutex;
// what the mutex guards may be plain (non-atomic) memory.
#ifndef STOA_UTIL_SHM_MUTEX_H_
#define STOA_UTIL_SHM_MUTEX_H_

#include <pthread.h>

#include <type_traits>
#include <utility>

#include "util/mutex.h"

namespace stoa::util {

class CAPABILITY("shared mutex") ShmMutex {
 public:
  // (Re)initialises the mutex. Only when no process can be using it (a
  // fresh store, or a lone opener whose previous holders are all gone).
  void init();

  // Blocks until held. Aborts on impossible errors (ENOTRECOVERABLE, or
  // EINVAL from damaged bytes), since going on would break mutual exclusion.
  // When the previous holder died, calls repair() first (still holding).
  template <typename Repair>
  void lock(Repair&& repair) ACQUIRE() {
    if (lock_raw()) {
      std::forward<Repair>(repair)();
      mark_consistent();
    }
  }
  // For a mutex whose guarded state never needs repair (a dead holder's
  // leftovers are cleaned by whoever notices them otherwise).
  void lock() ACQUIRE() {
    lock([] {});
  }
  // Takes the mutex if it is free; true when held. A dead previous holder's
  // mutex is made consistent first: used only where there is nothing to
  // repair.
  bool try_lock() TRY_ACQUIRE(true);
  void unlock() RELEASE();

 private:
  bool lock_raw();  // true: owner died
  void mark_consistent();
  pthread_mutex_t m_;
};
static_assert(sizeof(ShmMutex) == 40, "glibc x86-64 pthread_mutex_t");
static_assert(std::is_standard_layout_v<ShmMutex>);

// Holds a ShmMutex for a scope (with an optional owner-died repair).
class SCOPED_CAPABILITY ShmLock {
 public:
  explicit ShmLock(ShmMutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  template <typename Repair>
  ShmLock(ShmMutex& mu, Repair&& repair) ACQUIRE(mu) : mu_(mu) {
    mu_.lock(std::forward<Repair>(repair));
  }
  ~ShmLock() RELEASE() { mu_.unlock(); }
  ShmLock(const ShmLock&) = delete;
  ShmLock& operator=(const ShmLock&) = delete;

 private:
  ShmMutex& mu_;
};

}  // namespace stoa::util

#endif  // STOA_UTIL_SHM_MUTEX_H_
