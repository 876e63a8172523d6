// tests/cli_util.h — running the `stoa` binary from tests: arguments, stdin,
// captured stdout/stderr and exit code. Scratch files live in a TempDir
// (test_util.h), removed even when a test fails.
#ifndef STOA_TESTS_CLI_UTIL_H_
#define STOA_TESTS_CLI_UTIL_H_

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace stoa::test {

struct CliResult {
  int exit_code = -1;  // -1: did not exit normally
  std::string out;
  std::string err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void spit(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), std::streamsize(data.size()));
}

// Runs the CLI with `args`; stdin is `input` (or /dev/null), stdout and
// stderr go to files in `scratch`.
inline CliResult run_cli(const TempDir& scratch, const std::vector<std::string>& args,
                         const std::optional<std::string>& input = std::nullopt) {
  const std::string in = scratch.sub("cli.in"), out = scratch.sub("cli.out"),
                    err = scratch.sub("cli.err");
  if (input) spit(in, *input);
  std::vector<std::string> argv_s{STOA_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int i = ::open(input ? in.c_str() : "/dev/null", O_RDONLY);
    int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (i < 0 || o < 0 || e < 0) ::_exit(126);
    ::dup2(i, 0);
    ::dup2(o, 1);
    ::dup2(e, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  CliResult r;
  if (pid < 0) return r;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

inline bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

#define EXPECT_CONTAINS(s, what) \
  EXPECT_TRUE(contains(s, what)) << "missing \"" << (what) << "\" in:\n" << (s)

}  // namespace stoa::test

#endif  // STOA_TESTS_CLI_UTIL_H_
