#include "util/shm_mutex.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace stoa::util {

void ShmMutex::init() {
  std::memset(static_cast<void*>(this), 0, sizeof(*this));
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&m_, &attr);
  pthread_mutexattr_destroy(&attr);
}

bool ShmMutex::lock_raw() NO_THREAD_SAFETY_ANALYSIS {
  int rc = pthread_mutex_lock(&m_);
  if (rc == 0) return false;
  if (rc == EOWNERDEAD) return true;
  // ENOTRECOVERABLE: a repairer died before marking it consistent; EINVAL:
  // the mutex bytes are damaged. Neither can be handled without risking two
  // holders, so stop here loudly.
  std::fprintf(stderr, "stoa: shared mutex unusable: %s\n", std::strerror(rc));
  std::abort();
}

void ShmMutex::mark_consistent() { pthread_mutex_consistent(&m_); }

bool ShmMutex::try_lock() NO_THREAD_SAFETY_ANALYSIS {
  int rc = pthread_mutex_trylock(&m_);
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&m_);
    return true;
  }
  return rc == 0;
}

void ShmMutex::unlock() NO_THREAD_SAFETY_ANALYSIS { pthread_mutex_unlock(&m_); }

}  // namespace stoa::util
