// util/shm_mutex.h — a robust, process-shared mutex in the shared mapping.
//
// Wraps a pthread mutex made PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST:
// when its holder dies, the kernel marks it and the next lock() returns
// kOwnerDied; that caller must repair the structure the mutex guards (it
// holds the lock while doing so) and then call mark_consistent(). Waiters
// sleep on a futex in the shared mapping, so a wake-up crosses processes.
//
// Thread safety: lock/unlock from any thread of any process mapping it.
// Acquire/release semantics as for any mutex.
#ifndef STOA_UTIL_SHM_MUTEX_H_
#define STOA_UTIL_SHM_MUTEX_H_

#include "region/layout.h"
#include "stoa/result.h"

namespace stoa::util {

enum class LockResult { kAcquired, kOwnerDied };

// (Re)initialises the mutex. Only when no process can be using it.
void shm_mutex_init(region::ShmMutex* m);
// Blocks until held. kOwnerDied: the previous holder died; repair, then
// shm_mutex_consistent(). Aborts on impossible errors (EINVAL: memory
// corrupted), since continuing would break mutual exclusion.
LockResult shm_mutex_lock(region::ShmMutex* m);
void shm_mutex_consistent(region::ShmMutex* m);
// Takes the mutex if it is free: true when held (a dead previous holder's
// mutex is made consistent first: callers use it only where there is
// nothing to repair).
bool shm_mutex_try_lock(region::ShmMutex* m);
void shm_mutex_unlock(region::ShmMutex* m);

}  // namespace stoa::util

#endif  // STOA_UTIL_SHM_MUTEX_H_
