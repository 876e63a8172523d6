// util/scratch_dir.h — a scratch directory for the unit tests beside the
// code (src/**/*_test.cc); not used by the library.
//
// Thread safety: one owner; names are unique per process (a counter).
#ifndef STOA_UTIL_SCRATCH_DIR_H_
#define STOA_UTIL_SCRATCH_DIR_H_

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

namespace stoa::util::testing {

// A fresh directory under STOA_TEST_TMPDIR, removed with its contents.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    static std::atomic<int> n{0};
    path_ = std::string(STOA_TEST_TMPDIR) + "/stoa-unit-" + tag + "-" + std::to_string(::getpid()) +
            "-" + std::to_string(n++);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace stoa::util::testing

#endif  // STOA_UTIL_SCRATCH_DIR_H_
