// stoa/env.h — the seam between Stoa and the operating system's files.
//
// Like LevelDB's Env: every file operation whose failure or timing matters
// (create, extend, write, sync) goes through an Env, so tests can substitute
// one that fails (ENOSPC, EIO, short writes) or simulates power loss. Memory
// mapping stays direct: it is the data path, not a fault point of interest.
//
// Thread safety: the default Env is stateless and thread-safe; test Envs
// document their own.
#ifndef STOA_ENV_H_
#define STOA_ENV_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

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
  // Atomically replaces `to` with `from` (rename(2)); durable after
  // sync_dir of the parent.
  virtual Status rename(const std::string& from, const std::string& to);
  // Removes a file; a missing one is fine.
  virtual Status remove(const std::string& path);
  // Sets the file's length (shrinks or extends with zeros).
  virtual Status truncate(int fd, uint64_t len, const std::string& path);
  // Names (not paths) of the entries of a directory, "." and ".." excluded.
  virtual Result<std::vector<std::string>> list_dir(const std::string& path);
  virtual bool exists(const std::string& path);
  // Identifies the current boot of the machine (a hash of
  // /proc/sys/kernel/random/boot_id): page-cache contents survive exactly
  // as long as it stays the same.
  virtual uint64_t boot_id();
};

}  // namespace stoa

#endif  // STOA_ENV_H_
