// util/scope_exit.h — runs a function when the scope ends, however it ends.
//
//   auto done = util::scope_exit([&] { close(fd); });
//   ... done.release();  // when ownership moved on
//
// The one helper for "undo this on every return path" (Abseil's Cleanup).
// Thread safety: a local value; not shared.
#ifndef STOA_UTIL_SCOPE_EXIT_H_
#define STOA_UTIL_SCOPE_EXIT_H_

#include <utility>

namespace stoa::util {

template <typename Fn>
class [[nodiscard]] ScopeExit {
 public:
  explicit ScopeExit(Fn fn) : fn_(std::move(fn)) {}
  ~ScopeExit() {
    if (armed_) fn_();
  }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;
  // Cancels the call.
  void release() { armed_ = false; }

 private:
  Fn fn_;
  bool armed_ = true;
};

template <typename Fn>
ScopeExit<Fn> scope_exit(Fn fn) {
  return ScopeExit<Fn>(std::move(fn));
}

}  // namespace stoa::util

#endif  // STOA_UTIL_SCOPE_EXIT_H_
