// log/checkpoint.cc — checkpoints: the store as of one snapshot, in a file.
//
// A checkpoint bounds recovery time and log size. It runs online: the
// checkpointer syncs the log written so far, takes a snapshot C through a
// SnapshotSource (the store's announces C in its session slot, so trimming
// keeps, for every key, the version visible at C; store/store_snapshot.cc),
// syncs the rest of the log up to C,
// then has the source walk the keys in chunks, pinning a cycle for one
// chunk at a time (so reclamation goes on); blocks are written between
// chunks, with nothing pinned. Writers and readers never wait for it.
//
// The file is written under a temporary name, synced, renamed to
// ckpt-<C>.stoa and the directory synced: a torn or half-written checkpoint
// is never taken for one. Only then are older checkpoints and the log
// segments wholly before C removed, so at every instant the newest complete
// checkpoint plus the log after it hold every durable commit. A crash
// between the rename and the removals leaves extra files that the next
// checkpoint removes.
//
// Each block (about 1 MiB of entries) and the header and footer carry
// XXH3-64 checksums; the footer repeats C and counts blocks and keys, so a
// truncated file or a block from another file is caught.
#include "log/checkpoint.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "crash/crash_point.h"
#include "log/log.h"
#include "util/hash.h"
#include "util/scope_exit.h"

namespace stoa::internal {

namespace {
constexpr uint64_t kBlockTarget = uint64_t{1} << 20;

uint64_t block_sum(const char* body, uint64_t len, uint64_t index) {
  return util::checksum64(body, size_t(len), 0x434b5054 ^ index);
}
}  // namespace

std::string checkpoint_name(uint64_t ts) { return fmt::format("ckpt-{:016x}.stoa", ts); }

std::optional<uint64_t> parse_checkpoint_name(const std::string& name) {
  if (name.size() != 26 || name.compare(0, 5, "ckpt-") != 0 || name.compare(21, 5, ".stoa") != 0) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (size_t i = 5; i < 21; i++) {
    char c = name[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | uint64_t(d);
  }
  return v;
}

Result<std::optional<std::string>> newest_checkpoint(Env* env, const std::string& dir) {
  if (!env->exists(dir)) return std::optional<std::string>();
  STOA_ASSIGN(auto names, env->list_dir(dir));
  std::optional<uint64_t> best;
  for (const auto& n : names) {
    auto ts = parse_checkpoint_name(n);
    if (ts && (!best || *ts > *best)) best = ts;
  }
  if (!best) return std::optional<std::string>();
  return std::optional<std::string>(dir + "/" + checkpoint_name(*best));
}

Result<SnapshotFile> write_snapshot(SnapshotSource& src, const region::FileHeader& fh,
                                    uint64_t segment_size, Env* env, const std::string& dir,
                                    const std::function<Status(uint64_t)>& before_write) {
  const uint64_t ts = src.take();
  if (before_write) STOA_TRY(before_write(ts));

  SnapshotFile out;
  out.ts = ts;
  out.path = dir + "/" + checkpoint_name(ts);
  const std::string tmp = fmt::format("{}/ckpt-{:016x}.tmp", dir, ts);
  STOA_ASSIGN(int fd, env->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644));
  auto closer = util::scope_exit([&] { env->close(fd); });

  log::CheckpointHeader h{};
  std::memcpy(h.magic, log::kCheckpointMagic, sizeof(h.magic));
  h.format_version = log::kCheckpointFormat;
  h.ts = ts;
  h.seed = fh.seed;
  h.max_size = fh.max_size;
  h.grow_chunk = fh.grow_chunk;
  h.max_sessions = fh.max_sessions;
  h.segment_size = segment_size;
  h.checksum = util::checksum64(&h, offsetof(log::CheckpointHeader, checksum));
  uint64_t at = 0;
  auto put = [&](const void* p, uint64_t n) -> Status {
    STOA_TRY(env->pwrite_all(fd, p, size_t(n), at, tmp));
    at += n;
    return {};
  };
  STOA_TRY(put(&h, sizeof(h)));

  std::string body;
  uint32_t count = 0;
  uint64_t blocks = 0;
  auto emit = [&]() -> Status {
    if (count == 0) return {};
    log::CheckpointBlock b{log::kBlockMagic, count, body.size(), 0, blocks};
    b.checksum = block_sum(body.data(), body.size(), blocks);
    STOA_TRY(put(&b, sizeof(b)));
    STOA_TRY(put(body.data(), body.size()));
    blocks++;
    count = 0;
    body.clear();
    return {};
  };

  auto entry = [&](std::string_view key, std::string_view value) {
    const uint32_t kl = uint32_t(key.size()), pad = 0;
    const uint64_t len = value.size();
    body.append(reinterpret_cast<const char*>(&kl), 4);
    body.append(reinterpret_cast<const char*>(&pad), 4);
    body.append(reinterpret_cast<const char*>(&len), 8);
    body.append(key);
    body.append(value);
    body.resize(size_t(log::align8(body.size())), '\0');
    count++;
    out.keys++;
  };
  STOA_TRY(src.scan(entry, [&](bool last) -> Status {
    if (body.size() >= kBlockTarget || last) STOA_TRY(emit());
    return {};
  }));
  log::CheckpointFooter f{log::kFooterMagic, 0, blocks, out.keys, ts, 0};
  f.checksum = util::checksum64(&f, offsetof(log::CheckpointFooter, checksum));
  STOA_TRY(put(&f, sizeof(f)));
  STOA_TRY(env->sync(fd, tmp));
  STOA_CRASH_POINT(kCkptWritten);
  STOA_TRY(env->rename(tmp, out.path));
  STOA_CRASH_POINT(kCkptRenamed);
  STOA_TRY(env->sync_dir(dir));
  out.bytes = at;
  return out;
}

// The lock is taken on one of two paths (wait or try); the scope_exit releases it.
Result<CheckpointInfo> LogManager::checkpoint(SnapshotSource& src,
                                              bool wait) NO_THREAD_SAFETY_ANALYSIS {
  // A dead checkpointer needs no repair here: its temporary file is
  // removed below.
  if (wait) {
    hdr_->ckpt_mu.lock();
  } else if (!hdr_->ckpt_mu.try_lock()) {
    return Error(Code::kBusy, "a checkpoint is running");
  }
  auto unlock = util::scope_exit([&]() NO_THREAD_SAFETY_ANALYSIS { hdr_->ckpt_mu.unlock(); });
  const std::string& dir = files_.dir();
  // Leftovers of checkpointers that died.
  if (auto names = env_->list_dir(dir); names.ok()) {
    for (const auto& n : *names) {
      if (n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0)
        (void)env_->remove(dir + "/" + n);
    }
  }
  const uint64_t prev = hdr_->checkpoint_ts.load(std::memory_order_relaxed);
  // Most of the log is synced before the snapshot is taken: a snapshot
  // holds trimming and the removal of deleted keys back while it lives, and
  // a sync of everything since the last checkpoint can take seconds. (An
  // error here is met again, and returned, by the flush below.)
  (void)flush_all();
  auto f =
      write_snapshot(src, *ctx_.file, files_.segment_size(), env_, dir, [&](uint64_t ts) -> Status {
        if (ts == prev && prev != 0)
          return Error(Code::kExists, "no commit since the last checkpoint");
        return flush(ts);
      });
  if (!f.ok()) {
    if (f.error().code() == Code::kExists) {
      return CheckpointInfo{prev, hdr_->checkpoint_bytes.load(), 0};
    }
    return std::move(f).error();
  }
  hdr_->checkpoint_bytes.store(f->bytes, std::memory_order_relaxed);
  hdr_->checkpoint_ts.store(f->ts, std::memory_order_release);
  STOA_CRASH_POINT(kCkptCleanup);
  // Older checkpoints and the log they replace.
  if (auto names = env_->list_dir(dir); names.ok()) {
    for (const auto& n : *names) {
      auto t = parse_checkpoint_name(n);
      if (t && *t < f->ts) (void)env_->remove(dir + "/" + n);
    }
  }
  (void)files_.remove_before(f->ts);
  (void)env_->sync_dir(dir);
  return CheckpointInfo{f->ts, f->bytes, f->keys};
}

// --- reading -------------------------------------------------------------------

CheckpointReader::~CheckpointReader() {
  if (fd_ >= 0) env_->close(fd_);
}

Error CheckpointReader::corrupt(uint64_t at, const std::string& what) const {
  return Error(Code::kCorrupt, fmt::format("{}: offset {}: {}", path_, at, what));
}

Result<std::unique_ptr<CheckpointReader>> CheckpointReader::open(Env* env,
                                                                 const std::string& path) {
  std::unique_ptr<CheckpointReader> r(new CheckpointReader());
  r->env_ = env;
  r->path_ = path;
  STOA_ASSIGN(r->fd_, env->open(path, O_RDONLY, 0));
  STOA_ASSIGN(r->size_, env->file_size(r->fd_, path));
  if (r->size_ < sizeof(log::CheckpointHeader) + sizeof(log::CheckpointFooter)) {
    return r->corrupt(0, fmt::format("checkpoint of {} bytes is truncated", r->size_));
  }
  STOA_TRY(env->pread_all(r->fd_, &r->hdr_, sizeof(r->hdr_), 0, path));
  const auto& h = r->hdr_;
  if (std::memcmp(h.magic, log::kCheckpointMagic, sizeof(h.magic)) != 0) {
    return r->corrupt(0, "not a Stoa checkpoint (bad magic)");
  }
  if (h.checksum != util::checksum64(&h, offsetof(log::CheckpointHeader, checksum))) {
    return r->corrupt(offsetof(log::CheckpointHeader, checksum), "header checksum mismatch");
  }
  if (h.format_version != log::kCheckpointFormat) {
    return Error(Code::kVersionMismatch,
                 fmt::format("{}: checkpoint format {} (this build reads {})", path,
                             h.format_version, log::kCheckpointFormat));
  }
  r->at_ = sizeof(log::CheckpointHeader);
  return r;
}

Result<bool> CheckpointReader::next(std::vector<log::Op>* entries) {
  entries->clear();
  if (done_) return false;
  if (at_ + sizeof(log::CheckpointFooter) > size_)
    return corrupt(at_, "truncated before its footer");
  uint32_t magic = 0;
  STOA_TRY(env_->pread_all(fd_, &magic, 4, at_, path_));
  if (magic == log::kFooterMagic) {
    log::CheckpointFooter f;
    STOA_TRY(env_->pread_all(fd_, &f, sizeof(f), at_, path_));
    if (f.checksum != util::checksum64(&f, offsetof(log::CheckpointFooter, checksum)) ||
        f.blocks != blocks_ || f.keys != keys_ || f.ts != hdr_.ts || at_ + sizeof(f) != size_) {
      return corrupt(at_, "footer does not match the blocks read");
    }
    done_ = true;
    return false;
  }
  log::CheckpointBlock b;
  if (at_ + sizeof(b) > size_) return corrupt(at_, "truncated block header");
  STOA_TRY(env_->pread_all(fd_, &b, sizeof(b), at_, path_));
  if (b.magic != log::kBlockMagic || b.index != blocks_ || b.bytes > size_ - at_ - sizeof(b)) {
    return corrupt(at_, "bad block header");
  }
  buf_.resize(size_t(b.bytes));
  STOA_TRY(env_->pread_all(fd_, buf_.data(), buf_.size(), at_ + sizeof(b), path_));
  if (block_sum(buf_.data(), b.bytes, b.index) != b.checksum) {
    return corrupt(at_, fmt::format("block {} checksum mismatch", b.index));
  }
  const char* p = buf_.data();
  const char* end = p + buf_.size();
  for (uint32_t i = 0; i < b.count; i++) {
    uint32_t kl;
    uint64_t vl;
    if (end - p < 16) return corrupt(at_, "block entry overruns");
    std::memcpy(&kl, p, 4);
    std::memcpy(&vl, p + 8, 8);
    p += 16;
    const uint64_t left = uint64_t(end - p);
    if (kl == 0 || kl > left || vl > left - kl) return corrupt(at_, "block entry overruns");
    entries->push_back(
        log::Op{std::string_view(p, kl), std::string_view(p + kl, size_t(vl)), log::OpKind::kPut});
    p += log::align8(kl + vl);
  }
  at_ += sizeof(b) + b.bytes;
  blocks_++;
  keys_ += b.count;
  return true;
}

}  // namespace stoa::internal
