#include "util/shm_mutex.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace stoa::util {

void shm_mutex_init(region::ShmMutex* m) {
  std::memset(m, 0, sizeof(*m));
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&m->m, &attr);
  pthread_mutexattr_destroy(&attr);
}

LockResult shm_mutex_lock(region::ShmMutex* m) {
  int rc = pthread_mutex_lock(&m->m);
  if (rc == 0) return LockResult::kAcquired;
  if (rc == EOWNERDEAD) return LockResult::kOwnerDied;
  // ENOTRECOVERABLE: a repairer died before marking it consistent; EINVAL:
  // the mutex bytes are damaged. Neither can be handled without risking two
  // holders, so stop here loudly.
  std::fprintf(stderr, "stoa: shared mutex unusable: %s\n", std::strerror(rc));
  std::abort();
}

void shm_mutex_consistent(region::ShmMutex* m) { pthread_mutex_consistent(&m->m); }

bool shm_mutex_try_lock(region::ShmMutex* m) {
  int rc = pthread_mutex_trylock(&m->m);
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&m->m);
    return true;
  }
  return rc == 0;
}

void shm_mutex_unlock(region::ShmMutex* m) { pthread_mutex_unlock(&m->m); }

}  // namespace stoa::util
