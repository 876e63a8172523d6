// env/env.h — the seam between Stoa and the operating system's files.
//
// Like LevelDB's Env: every file operation whose failure or timing matters
// (create, extend, write, sync) goes through an Env, so tests can substitute
// one that fails (ENOSPC, EIO, short writes) or simulates power loss. Memory
// mapping stays direct: it is the data path, not a fault point of interest.
//
// Thread safety: the default Env is stateless and thread-safe; test Envs
// document their own.
#ifndef STOA_ENV_ENV_H_
#define STOA_ENV_ENV_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "stoa/result.h"

namespace stoa {

// An Error for a failed syscall: the code follows errno (ENOENT -> kNotFound,
// EACCES/EPERM -> kPermission, ENOSPC/EDQUOT -> kFull, else kIo) and the
// message names what was attempted, on which path.
Error errno_error(int err, const std::string& what, const std::string& path);

class Env {
 public:
  virtual ~Env() = default;
  // The process-wide POSIX Env.
  static Env* posix();

  virtual Result<int> open(const std::string& path, int flags, mode_t mode);
  virtual void close(int fd);
  // Makes [offset, offset+len) of the file backed by disk blocks, extending
  // the file if needed; never shrinks it. ENOSPC is kFull.
  virtual Status allocate(int fd, uint64_t offset, uint64_t len, const std::string& path);
  virtual Status pwrite_all(int fd, const void* data, size_t len, uint64_t offset,
                            const std::string& path);
  virtual Status pread_all(int fd, void* data, size_t len, uint64_t offset,
                           const std::string& path);
  virtual Status sync(int fd, const std::string& path);
  virtual Result<uint64_t> file_size(int fd, const std::string& path);
  // Creates a directory; an existing one is fine.
  virtual Status make_dir(const std::string& path);
  virtual Status sync_dir(const std::string& path);
};

}  // namespace stoa

#endif  // STOA_ENV_ENV_H_
