#include "log/log_file.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "crash/crash_point.h"

namespace stoa::log {

LogFiles::LogFiles(Env* env, std::string dir, uint64_t segment_size)
    : env_(env), dir_(std::move(dir)), seg_(segment_size) {}

LogFiles::~LogFiles() { close_all(); }

std::string LogFiles::segment_path(uint64_t index) const {
  return fmt::format("{}/{:016x}.log", dir_, index * seg_);
}

int64_t LogFiles::parse_segment(const std::string& name, uint64_t segment_size) {
  if (name.size() != 20 || name.compare(16, 4, ".log") != 0) return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < 16; i++) {
    char c = name[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return -1;
    v = v << 4 | uint64_t(d);
  }
  if (v % segment_size != 0) return -1;
  return int64_t(v / segment_size);
}

Result<int> LogFiles::fd(uint64_t index, bool create) {
  util::MutexLock g(mu_);
  auto it = fds_.find(index);
  if (it != fds_.end()) return it->second;
  const std::string p = segment_path(index);
  auto fd = env_->open(p, O_RDWR | (create ? O_CREAT : 0), 0644);
  if (!fd.ok()) return std::move(fd).error();
  fds_.emplace(index, *fd);
  return *fd;
}

void LogFiles::drop_fd(uint64_t index) {
  util::MutexLock g(mu_);
  auto it = fds_.find(index);
  if (it == fds_.end()) return;
  env_->close(it->second);
  fds_.erase(it);
}

Status LogFiles::create_segments(uint64_t from, uint64_t end) {
  if (end <= from) return {};
  for (uint64_t i = from / seg_; i <= (end - 1) / seg_; i++) {
    STOA_ASSIGN(int f, fd(i, true));
    STOA_ASSIGN(uint64_t have, env_->file_size(f, segment_path(i)));
    if (have < seg_) STOA_TRY(env_->allocate(f, 0, seg_, segment_path(i)));
  }
  STOA_CRASH_POINT(kLogSegmentCreated);
  return env_->sync_dir(dir_);
}

template <typename Fn>
Status LogFiles::each_piece(uint64_t lsn, uint64_t len, Fn fn) {
  for (uint64_t done = 0; done < len;) {
    const uint64_t at = lsn + done, i = at / seg_, off = at % seg_;
    const uint64_t n = std::min(len - done, seg_ - off);
    STOA_ASSIGN(int f, fd(i, false));
    STOA_TRY(fn(f, done, n, off, segment_path(i)));
    done += n;
  }
  return {};
}

Status LogFiles::write(uint64_t lsn, const void* data, uint64_t len) {
  const char* p = static_cast<const char*>(data);
  return each_piece(lsn, len,
                    [&](int f, uint64_t done, uint64_t n, uint64_t off, const std::string& path) {
                      return env_->pwrite_all(f, p + done, size_t(n), off, path);
                    });
}

Status LogFiles::read(uint64_t lsn, void* data, uint64_t len) {
  char* p = static_cast<char*>(data);
  return each_piece(lsn, len,
                    [&](int f, uint64_t done, uint64_t n, uint64_t off, const std::string& path) {
                      return env_->pread_all(f, p + done, size_t(n), off, path);
                    });
}

Status LogFiles::sync(uint64_t from, uint64_t to) {
  if (to <= from) return {};
  for (uint64_t i = from / seg_; i <= (to - 1) / seg_; i++) {
    STOA_ASSIGN(int f, fd(i, false));
    STOA_TRY(env_->sync(f, segment_path(i)));
  }
  return {};
}

Status LogFiles::cut_after(uint64_t lsn) {
  const uint64_t keep = lsn / seg_;
  STOA_ASSIGN(auto present, list());
  for (uint64_t i : present) {
    if (i <= keep) continue;
    drop_fd(i);
    STOA_TRY(env_->remove(segment_path(i)));
  }
  if (std::find(present.begin(), present.end(), keep) != present.end()) {
    const uint64_t off = lsn % seg_;
    STOA_ASSIGN(int f, fd(keep, false));
    std::vector<char> zeros(std::min<uint64_t>(seg_ - off, uint64_t{1} << 20), 0);
    for (uint64_t at = off; at < seg_;) {
      uint64_t n = std::min<uint64_t>(zeros.size(), seg_ - at);
      STOA_TRY(env_->pwrite_all(f, zeros.data(), size_t(n), at, segment_path(keep)));
      at += n;
    }
    STOA_TRY(env_->sync(f, segment_path(keep)));
  }
  return env_->sync_dir(dir_);
}

Status LogFiles::remove_before(uint64_t lsn) {
  STOA_ASSIGN(auto present, list());
  bool removed = false;
  for (uint64_t i : present) {
    if ((i + 1) * seg_ > lsn) continue;
    drop_fd(i);
    STOA_TRY(env_->remove(segment_path(i)));
    removed = true;
  }
  return removed ? env_->sync_dir(dir_) : Status{};
}

Result<std::vector<uint64_t>> LogFiles::list() {
  STOA_ASSIGN(auto names, env_->list_dir(dir_));
  std::vector<uint64_t> out;
  for (const auto& n : names) {
    int64_t i = parse_segment(n, seg_);
    if (i >= 0) out.push_back(uint64_t(i));
  }
  std::sort(out.begin(), out.end());
  return out;
}

void LogFiles::forget() {
  util::MutexLock g(mu_);
  fds_.clear();
}

void LogFiles::close_all() {
  util::MutexLock g(mu_);
  for (auto& [i, f] : fds_) env_->close(f);
  fds_.clear();
}

}  // namespace stoa::log
