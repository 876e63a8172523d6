#include "env/env.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace stoa {

Error errno_error(int err, const std::string& what, const std::string& path) {
  Code code = Code::kIo;
  switch (err) {
    case ENOENT:
      code = Code::kNotFound;
      break;
    case EACCES:
    case EPERM:
    case EROFS:
      code = Code::kPermission;
      break;
    case ENOSPC:
    case EDQUOT:
      code = Code::kFull;
      break;
    default:
      break;
  }
  return Error(code, fmt::format("{} {}: {}", what, path, std::strerror(err)));
}

Env* Env::posix() {
  static Env env;
  return &env;
}

Result<int> Env::open(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return errno_error(errno, "open", path);
  return fd;
}

void Env::close(int fd) { ::close(fd); }

Status Env::allocate(int fd, uint64_t offset, uint64_t len, const std::string& path) {
  int rc = ::posix_fallocate(fd, off_t(offset), off_t(len));
  if (rc != 0) return errno_error(rc, fmt::format("extend by {} bytes at {}", len, offset), path);
  return {};
}

Status Env::pwrite_all(int fd, const void* data, size_t len, uint64_t offset,
                       const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, off_t(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, fmt::format("write {} bytes at {}", len, offset), path);
    }
    p += n;
    len -= size_t(n);
    offset += uint64_t(n);
  }
  return {};
}

Status Env::pread_all(int fd, void* data, size_t len, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(data);
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, off_t(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, fmt::format("read {} bytes at {}", len, offset), path);
    }
    if (n == 0) {
      return Error(Code::kCorrupt, fmt::format("{}: truncated: wanted {} more bytes at offset {}",
                                               path, len, offset));
    }
    p += n;
    len -= size_t(n);
    offset += uint64_t(n);
  }
  return {};
}

Status Env::sync(int fd, const std::string& path) {
  if (::fdatasync(fd) != 0) return errno_error(errno, "sync", path);
  return {};
}

Result<uint64_t> Env::file_size(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno_error(errno, "stat", path);
  return uint64_t(st.st_size);
}

Status Env::make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return errno_error(errno, "create directory", path);
  }
  return {};
}

Status Env::sync_dir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "open directory", path);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return errno_error(err, "sync directory", path);
  return {};
}

}  // namespace stoa
