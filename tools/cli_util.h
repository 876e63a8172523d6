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

}  // namespace stoa::cli

#endif  // STOA_TOOLS_CLI_UTIL_H_
