#include "env/sim_env.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace stoa {

namespace {
constexpr uint64_t kPage = 4096;
constexpr uint64_t kSector = 512;

void write_file(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  size_t at = 0;
  while (at < bytes.size()) {
    ssize_t n = ::pwrite(fd, bytes.data() + at, bytes.size() - at, off_t(at));
    if (n <= 0) break;
    at += size_t(n);
  }
  ::close(fd);
}
}  // namespace

SimEnv::SimEnv(uint64_t seed) : rng_(seed), boot_(0x5157000000000000ull ^ (seed & 0xffffff)) {
  if (boot_ == 0) boot_ = 1;
}

std::string SimEnv::read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string SimEnv::dir_of(const std::string& path) {
  size_t p = path.rfind('/');
  return p == std::string::npos ? std::string(".") : path.substr(0, p);
}

void SimEnv::cut_after(uint64_t n) {
  util::MutexLock g(mu_);
  cut_at_ = ops_ + std::max<uint64_t>(n, 1);
}

bool SimEnv::cut() const {
  util::MutexLock g(mu_);
  return cut_;
}

void SimEnv::inject(Fault f, uint64_t n) {
  util::MutexLock g(mu_);
  fault_ = f;
  fault_in_ = std::max<uint64_t>(n, 1);
}

uint64_t SimEnv::faults_fired() const {
  util::MutexLock g(mu_);
  return fired_;
}

std::thread::id SimEnv::fault_thread() const {
  util::MutexLock g(mu_);
  return fired_on_;
}

std::string SimEnv::fault_path() const {
  util::MutexLock g(mu_);
  return fired_path_;
}

uint64_t SimEnv::ops() const {
  util::MutexLock g(mu_);
  return ops_;
}

bool SimEnv::tick() {
  ops_++;
  if (cut_at_ != 0 && ops_ >= cut_at_) cut_ = true;
  return cut_;
}

bool SimEnv::take_fault(Fault kind, const std::string& path) {
  if (fault_ != kind || fault_in_ == 0) return false;
  if (--fault_in_ != 0) return false;
  fault_ = Fault::kNone;
  fired_++;
  fired_on_ = std::this_thread::get_id();
  fired_path_ = path;
  return true;
}

uint64_t SimEnv::node_of(const std::string& path) {
  auto it = names_.find(path);
  if (it != names_.end()) return it->second;
  const uint64_t id = next_id_++;
  struct stat st;
  const bool existed = ::stat(path.c_str(), &st) == 0;
  nodes_[id].image = existed ? read_file(path) : std::string();
  names_[path] = id;
  auto& dn = durable_names_[dir_of(path)];
  if (existed) dn[path] = id;  // found on "disk": durable as it is
  return id;
}

void SimEnv::snapshot_dir(const std::string& dir) {
  auto& dn = durable_names_[dir];
  dn.clear();
  for (const auto& [p, id] : names_) {
    if (dir_of(p) == dir) dn[p] = id;
  }
}

Result<int> SimEnv::open(const std::string& path, int flags, mode_t mode) {
  util::MutexLock g(mu_);
  struct stat st;
  const bool existed = ::stat(path.c_str(), &st) == 0;
  if ((flags & O_CREAT) && !existed) tick();
  if (!existed && (flags & O_CREAT)) names_.erase(path);
  auto fd = Env::open(path, flags, mode);
  if (!fd.ok()) return fd;
  if (!existed) {
    const uint64_t id = next_id_++;
    nodes_[id].image.clear();
    names_[path] = id;
    durable_names_.try_emplace(dir_of(path));
  } else {
    (void)node_of(path);
  }
  fds_[*fd] = path;
  return fd;
}

void SimEnv::close(int fd) {
  util::MutexLock g(mu_);
  fds_.erase(fd);
  Env::close(fd);
}

Status SimEnv::allocate(int fd, uint64_t offset, uint64_t len, const std::string& path) {
  util::MutexLock g(mu_);
  tick();
  if (take_fault(Fault::kAllocateEnospc, path))
    return errno_error(ENOSPC, "extend (injected)", path);
  return Env::allocate(fd, offset, len, path);
}

Status SimEnv::pwrite_all(int fd, const void* data, size_t len, uint64_t offset,
                          const std::string& path) {
  util::MutexLock g(mu_);
  tick();  // after a cut, writes still reach the page cache (to be lost)
  if (take_fault(Fault::kWriteEio, path)) return errno_error(EIO, "write (injected)", path);
  if (take_fault(Fault::kWriteEnospc, path)) return errno_error(ENOSPC, "write (injected)", path);
  if (take_fault(Fault::kShortWrite, path)) {
    (void)Env::pwrite_all(fd, data, len / 2, offset, path);
    return errno_error(ENOSPC, "write (injected after a short write)", path);
  }
  return Env::pwrite_all(fd, data, len, offset, path);
}

Status SimEnv::sync(int fd, const std::string& path) {
  util::MutexLock g(mu_);
  if (tick()) return errno_error(EIO, "sync (power cut)", path);
  if (take_fault(Fault::kSyncEio, path)) return errno_error(EIO, "sync (injected)", path);
  auto it = fds_.find(fd);
  if (it == fds_.end()) return errno_error(EBADF, "sync", path);
  nodes_[node_of(it->second)].image = read_file(it->second);
  return {};
}

Status SimEnv::sync_dir(const std::string& path) {
  util::MutexLock g(mu_);
  if (tick()) return errno_error(EIO, "sync directory (power cut)", path);
  if (take_fault(Fault::kSyncEio, path)) return errno_error(EIO, "sync directory (injected)", path);
  snapshot_dir(path);
  return {};
}

Status SimEnv::rename(const std::string& from, const std::string& to) {
  util::MutexLock g(mu_);
  tick();
  const uint64_t id = node_of(from);
  STOA_TRY(Env::rename(from, to));
  names_.erase(from);
  names_[to] = id;
  return {};
}

Status SimEnv::remove(const std::string& path) {
  util::MutexLock g(mu_);
  tick();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) (void)node_of(path);
  STOA_TRY(Env::remove(path));
  names_.erase(path);
  return {};
}

Status SimEnv::truncate(int fd, uint64_t len, const std::string& path) {
  util::MutexLock g(mu_);
  tick();
  return Env::truncate(fd, len, path);
}

uint64_t SimEnv::boot_id() {
  util::MutexLock g(mu_);
  return boot_;
}

void SimEnv::power_loss() {
  util::MutexLock g(mu_);
  std::set<std::string> dirs;
  for (const auto& [d, m] : durable_names_) dirs.insert(d);
  for (const auto& [p, id] : names_) dirs.insert(dir_of(p));
  std::map<uint64_t, std::string> current;  // node -> bytes now (named nodes)
  for (const auto& [p, id] : names_) current[id] = read_file(p);

  // What each node's bytes become: per page, old, new, torn or garbled.
  auto outcome = [&](uint64_t id) REQUIRES(mu_) {
    const std::string& old = nodes_[id].image;
    auto c = current.find(id);
    if (c == current.end()) return old;  // removed: only its disk image is left
    const std::string& cur = c->second;
    uint64_t size = cur.size();
    if (old.size() != cur.size() && rng_() % 2 == 0) size = old.size();
    std::string out = old;
    out.resize(size_t(size), '\0');
    for (uint64_t p = 0; p < size; p += kPage) {
      const uint64_t n = std::min(kPage, size - p);
      auto byte_of = [](const std::string& s, uint64_t i) { return i < s.size() ? s[i] : '\0'; };
      bool same = true;
      for (uint64_t i = 0; i < n && same; i++) same = byte_of(old, p + i) == byte_of(cur, p + i);
      if (same) continue;
      const uint64_t r = rng_() % 100;
      if (r < 50) continue;   // the write never happened
      uint64_t new_upto = n;  // bytes of this page taken from `cur`
      if (r >= 75 && r < 90) new_upto = std::min(n, kSector * (1 + rng_() % 7));  // torn
      for (uint64_t i = 0; i < new_upto; i++) out[p + i] = byte_of(cur, p + i);
      if (r >= 90) {  // garbled: noise over what one sector's write was changing
        const uint64_t s = (rng_() % ((n + kSector - 1) / kSector)) * kSector;
        for (uint64_t i = s; i < std::min(n, s + kSector); i++) {
          if (byte_of(old, p + i) != byte_of(cur, p + i)) out[p + i] = char(rng_());
        }
      }
    }
    return out;
  };

  std::map<std::string, uint64_t> final_names;
  for (const std::string& d : dirs) {
    const bool keep_now = rng_() % 2 == 0;
    std::map<std::string, uint64_t> now;
    for (const auto& [p, id] : names_) {
      if (dir_of(p) == d) now[p] = id;
    }
    const auto& chosen = keep_now ? now : durable_names_[d];
    for (const auto& [p, id] : now) {
      if (!chosen.count(p)) ::unlink(p.c_str());
    }
    for (const auto& [p, id] : chosen) final_names[p] = id;
  }
  std::map<uint64_t, std::string> result;
  for (const auto& [p, id] : final_names) {
    if (!result.count(id)) result[id] = outcome(id);
    write_file(p, result[id]);
  }
  // The disk is what it is now: images, names and durable names agree.
  names_.clear();
  durable_names_.clear();
  nodes_.clear();
  for (const auto& [p, id] : final_names) {
    names_[p] = id;
    durable_names_[dir_of(p)][p] = id;
    nodes_[id].image = result[id];
  }
  for (const std::string& d : dirs) durable_names_.try_emplace(d);
  boot_ = boot_ * 0x9E3779B97F4A7C15ull + 1;
  cut_ = false;
  cut_at_ = 0;
  fault_ = Fault::kNone;
  fault_in_ = 0;
}

}  // namespace stoa
