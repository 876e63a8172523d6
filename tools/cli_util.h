// tools/cli_util.h — pieces shared by the `stoa` command-line tool's files:
// exit statuses, error reporting, number and time formatting, the escaped
// line format, and opening a store the way every command does.
//
// Every command returns its process exit status. Failures print one line,
// `stoa: <code>: <message>`, to stderr (see report()).
//
// Thread safety: the functions are pure or write to stdout/stderr; the
// tool is single-threaded (the demo forks processes, never threads).
#ifndef STOA_TOOLS_CLI_UTIL_H_
#define STOA_TOOLS_CLI_UTIL_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "stoa/options.h"
#include "stoa/result.h"
#include "stoa/store.h"

namespace stoa::cli {

// Exit statuses, also listed in `stoa --help`.
inline constexpr int kExitOk = 0;        // success
inline constexpr int kExitError = 1;     // the command failed (store missing, damaged, ...)
inline constexpr int kExitProblems = 2;  // verify found damage; demo checks failed
inline constexpr int kExitUsage = 64;    // bad command line

// Prints `stoa: <code>: <message>` to stderr; returns `exit_code`.
int report(const Error& error, int exit_code = kExitError);
int report(Code code, const std::string& message, int exit_code = kExitError);

// "4096 B", "1.5 MiB", "16.0 GiB".
std::string human_bytes(uint64_t bytes);
// "1.5 MiB (1572864 bytes)".
std::string sized(uint64_t bytes);
// CLOCK_MONOTONIC nanoseconds: intervals.
uint64_t mono_ns();

// The line format of `scan`, `dump` and `load`: KEY<TAB>VALUE<LF>, each field
// escaped so that any bytes survive: backslash as \\, tab as \t, newline as
// \n, carriage return as \r, every other byte below 0x20 and 0x7f as \xHH;
// all other bytes (UTF-8 included) as they are.
void escape_append(std::string& out, std::string_view bytes);
std::string escape_field(std::string_view bytes);
// The inverse. Errors: kInvalidArgument naming the bad escape and its
// column, counted from `first_column` (the column of text[0] in its line).
Result<std::string> unescape_field(std::string_view text, size_t first_column = 1);

// Opens an existing store to look at it: no creation, no watchdog. Commits
// of its sessions promise `durability`.
Result<std::unique_ptr<Store>> open_existing(const std::string& dir,
                                             Durability durability = Durability::kGroup);

// An existing store and one session on it. The session closes before the
// store (members are destroyed in reverse order).
struct Opened {
  std::unique_ptr<Store> store;
  Session session;
};
Result<Opened> open_session(const std::string& dir, Durability durability = Durability::kGroup);
// An errno as an Error: kNotFound, kPermission, else kIo.
Error os_error(int err, const std::string& what);
// Everything readable from fd, to its end.
Result<std::string> read_all(int fd, const std::string& what);

// Buffered stdout that reports a failed write (a full disk, a closed pipe
// when SIGPIPE is ignored) instead of losing it.
class Out {
 public:
  ~Out() { (void)flush(); }
  std::string& buf() { return buf_; }
  Status maybe_flush() { return buf_.size() >= (1u << 20) ? flush() : Status{}; }
  Status write(const char* p, size_t n) {
    STOA_TRY(flush());
    return put(p, n);
  }
  Status flush() {
    if (buf_.empty()) return {};
    Status st = put(buf_.data(), buf_.size());
    buf_.clear();
    return st;
  }

 private:
  static Status put(const char* p, size_t n) {
    if (n > 0 && std::fwrite(p, 1, n, stdout) != n) return os_error(errno, "write to stdout");
    if (std::fflush(stdout) != 0) return os_error(errno, "write to stdout");
    return {};
  }
  std::string buf_;
};

}  // namespace stoa::cli

#endif  // STOA_TOOLS_CLI_UTIL_H_
