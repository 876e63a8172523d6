// stoa/result.h — errors as values.
//
// Every call a caller can expect to fail returns `stoa::Result<T>` (or
// `stoa::Status`, which is `Result<void>`). No exception crosses the public
// API. An `Error` carries a `Code` that programs branch on and a message that
// people read: it names the path, offset or session involved.
//
// Thread safety: `Error` and `Result` are plain values; a single object is
// not safe to mutate from two threads at once, distinct objects are
// independent.
#ifndef STOA_RESULT_H_
#define STOA_RESULT_H_

#include <cassert>
#include <cstdint>
#include <new>
#include <string>
#include <string_view>
#include <utility>

namespace stoa {

enum class Code : uint8_t {
  kOk = 0,
  kNotFound,         // key, session or file absent
  kConflict,         // a transaction's snapshot is stale (retryable)
  kTimeout,          // a bounded wait ran out
  kDeadlock,         // chosen as the victim of a wait-for cycle
  kLockOrder,        // a lock-level rule was broken
  kFull,             // store, session table or mailbox is full
  kCorrupt,          // a checksum, guard or structural check failed
  kInvalidArgument,  // wrong size, bad option, misuse
  kIo,               // the OS refused a read, write, sync or map
  kVersionMismatch,  // the file was written by an incompatible build
  kClosed,           // the store or session was closed
  kBusy,             // the resource is held by another live session
  kExists,           // create asked for, but the store is already there
  kPermission,       // the OS denied access to a path
};

// Stable lower-case name of a code ("not_found", "corrupt", ...).
std::string_view code_name(Code code);

class [[nodiscard]] Error {
 public:
  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "<code>: <message>"
  std::string to_string() const;

 private:
  Code code_;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : ok_(true) { new (&value_) T(std::move(value)); }           // NOLINT
  Result(Error error) : ok_(false) { new (&error_) Error(std::move(error)); }  // NOLINT
  Result(const Result& o) : ok_(o.ok_) {
    if (ok_)
      new (&value_) T(o.value_);
    else
      new (&error_) Error(o.error_);
  }
  Result(Result&& o) noexcept : ok_(o.ok_) {
    if (ok_)
      new (&value_) T(std::move(o.value_));
    else
      new (&error_) Error(std::move(o.error_));
  }
  Result& operator=(Result o) noexcept {
    destroy();
    ok_ = o.ok_;
    if (ok_)
      new (&value_) T(std::move(o.value_));
    else
      new (&error_) Error(std::move(o.error_));
    return *this;
  }
  ~Result() { destroy(); }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  Code code() const { return ok_ ? Code::kOk : error_.code(); }

  T& value() & {
    assert(ok_);
    return value_;
  }
  const T& value() const& {
    assert(ok_);
    return value_;
  }
  T&& value() && {
    assert(ok_);
    return std::move(value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& {
    assert(!ok_);
    return error_;
  }
  Error&& error() && {
    assert(!ok_);
    return std::move(error_);
  }

 private:
  void destroy() {
    if (ok_)
      value_.~T();
    else
      error_.~Error();
  }
  bool ok_;
  union {
    T value_;
    Error error_;
  };
};

// Success holds no Error (the union below): an ok Status costs a byte to
// make and a branch to drop, on read paths that return one per step.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() : ok_(true) {}
  Result(Error error) : ok_(false) { new (&error_) Error(std::move(error)); }  // NOLINT
  Result(const Result& o) : ok_(o.ok_) {
    if (!ok_) new (&error_) Error(o.error_);
  }
  Result(Result&& o) noexcept : ok_(o.ok_) {
    if (!ok_) new (&error_) Error(std::move(o.error_));
  }
  Result& operator=(Result o) noexcept {
    if (!ok_) error_.~Error();
    ok_ = o.ok_;
    if (!ok_) new (&error_) Error(std::move(o.error_));
    return *this;
  }
  ~Result() {
    if (!ok_) error_.~Error();
  }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  Code code() const { return ok_ ? Code::kOk : error_.code(); }
  const Error& error() const& {
    assert(!ok_);
    return error_;
  }
  Error&& error() && {
    assert(!ok_);
    return std::move(error_);
  }

 private:
  bool ok_;
  union {
    Error error_;
  };
};

using Status = Result<void>;

inline Status ok_status() { return {}; }

}  // namespace stoa

// Propagates an error: `STOA_TRY(expr)` returns the error of a failed
// Status/Result from the enclosing function.
#define STOA_TRY(expr)                                            \
  do {                                                            \
    auto stoa_try_r_ = (expr);                                    \
    if (!stoa_try_r_.ok()) return std::move(stoa_try_r_).error(); \
  } while (0)

#define STOA_CONCAT_INNER_(a, b) a##b
#define STOA_CONCAT_(a, b) STOA_CONCAT_INNER_(a, b)
// `STOA_ASSIGN(auto x, expr)` binds the value of a Result or returns its error.
#define STOA_ASSIGN(lhs, expr) STOA_ASSIGN_IMPL_(STOA_CONCAT_(stoa_r_, __LINE__), lhs, expr)
#define STOA_ASSIGN_IMPL_(tmp, lhs, expr)       \
  auto tmp = (expr);                            \
  if (!tmp.ok()) return std::move(tmp).error(); \
  lhs = std::move(tmp).value()

#endif  // STOA_RESULT_H_
