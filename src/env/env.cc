#include "stoa/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "util/hash.h"

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

Status Env::rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return errno_error(errno, fmt::format("rename to {}", to), from);
  }
  return {};
}

Status Env::remove(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error(errno, "remove", path);
  return {};
}

Status Env::truncate(int fd, uint64_t len, const std::string& path) {
  if (::ftruncate(fd, off_t(len)) != 0) {
    return errno_error(errno, fmt::format("truncate to {} bytes", len), path);
  }
  return {};
}

Result<std::vector<std::string>> Env::list_dir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return errno_error(errno, "list directory", path);
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  ::closedir(d);
  return names;
}

bool Env::exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

uint64_t Env::boot_id() {
  static const uint64_t id = [] {
    char buf[64] = {};
    std::FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "re");
    size_t n = 0;
    if (f != nullptr) {
      n = std::fread(buf, 1, sizeof(buf), f);
      std::fclose(f);
    }
    // Without it every open after an unclean shutdown rebuilds: slower, safe.
    uint64_t h = n > 0 ? util::checksum64(buf, n, 0x626f6f74) : 0;
    return h == 0 ? 1 : h;
  }();
  return id;
}

}  // namespace stoa
