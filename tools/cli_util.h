// tools/cli.h — pieces shared by the `stoa` command-line tool's files.
//
// Every command returns its process exit status. Failures print one line,
// `stoa: <code>: <message>`, to stderr (see report()).
#ifndef STOA_TOOLS_CLI_H_
#define STOA_TOOLS_CLI_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "stoa/result.h"

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

// The line format of `scan`, `dump` and `load`: KEY<TAB>VALUE<LF>, each field
// escaped so that any bytes survive: backslash as \\, tab as \t, newline as
// \n, carriage return as \r, every other byte below 0x20 and 0x7f as \xHH;
// all other bytes (UTF-8 included) as they are.
void escape_append(std::string& out, std::string_view bytes);
std::string escape_field(std::string_view bytes);
// The inverse. Errors: kInvalidArgument naming the bad escape and its
// column, counted from `first_column` (the column of text[0] in its line).
Result<std::string> unescape_field(std::string_view text, size_t first_column = 1);

struct DemoArgs {
  std::string dir;  // empty: a fresh temporary directory, removed at the end
  int workers = 4;
  double seconds = 3;
  // The bank phase (transactions): accounts, transfer workers, duration.
  int accounts = 100;
  int bank_workers = 4;
  double bank_seconds = 2;
};
// `stoa demo` (tools/demo.cc).
int run_demo(const DemoArgs& args);

}  // namespace stoa::cli

#endif  // STOA_TOOLS_CLI_H_
