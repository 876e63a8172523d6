// util/mutex.h — an in-process mutex the Clang thread-safety analysis knows.
//
// Process-local state (a process's mapping length, its owned-slot set, its
// parked sessions) is guarded by these; state shared across processes is
// guarded by robust mutexes in the mapping (util/shm_mutex.h) or by
// protocols described where it lives. Build with clang to check
// (-Wthread-safety is on for clang builds).
//
// Thread safety: as std::mutex; lock() acquires, unlock() releases.
#ifndef STOA_UTIL_MUTEX_H_
#define STOA_UTIL_MUTEX_H_

#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define STOA_TSA(x) __attribute__((x))
#else
#define STOA_TSA(x)
#endif

#define CAPABILITY(x) STOA_TSA(capability(x))
#define SCOPED_CAPABILITY STOA_TSA(scoped_lockable)
#define GUARDED_BY(x) STOA_TSA(guarded_by(x))
#define REQUIRES(...) STOA_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) STOA_TSA(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) STOA_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) STOA_TSA(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) STOA_TSA(try_acquire_capability(__VA_ARGS__))
#define RETURN_CAPABILITY(x) STOA_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS STOA_TSA(no_thread_safety_analysis)

namespace stoa::util {

class CAPABILITY("mutex") Mutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace stoa::util

#endif  // STOA_UTIL_MUTEX_H_
