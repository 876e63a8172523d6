#include "stoa/result.h"

namespace stoa {

std::string_view code_name(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kNotFound:
      return "not_found";
    case Code::kConflict:
      return "conflict";
    case Code::kTimeout:
      return "timeout";
    case Code::kDeadlock:
      return "deadlock";
    case Code::kLockOrder:
      return "lock_order";
    case Code::kFull:
      return "full";
    case Code::kCorrupt:
      return "corrupt";
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kIo:
      return "io";
    case Code::kVersionMismatch:
      return "version_mismatch";
    case Code::kClosed:
      return "closed";
    case Code::kBusy:
      return "busy";
    case Code::kExists:
      return "exists";
    case Code::kPermission:
      return "permission";
  }
  return "unknown";
}

std::string Error::to_string() const {
  std::string s(code_name(code_));
  s += ": ";
  s += message_;
  return s;
}

}  // namespace stoa
