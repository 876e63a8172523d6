// store_durable.cc — the store's side of durability: deciding at a lone
// open whether the data file can be trusted, rebuilding or repairing it,
// the clean-shutdown checksums, checkpoints, backup, compaction, and the
// flight-recorder dump on corruption.
//
// Trust (log/log.cc argues why). A lone opener trusts the data file when
//  - `stoa.sum` exists, checks out, and every 1 MiB chunk of the data file
//    hashes as it says (the last closer synced log and data file first); the
//    sum is then removed and the directory synced before anything changes,
//    so a stale sum can never vouch for a changed file; or
//  - there is no sum and the data file's LogHeader names this boot: the
//    store was open when its processes died, but the page cache holding it
//    did not (dead sessions are then recovered as usual).
// Otherwise (a reboot after an unclean shutdown, a sum that does not match,
// a missing or damaged data file) it moves a fresh, empty data file into
// place and, before releasing the open lock, loads the newest checkpoint
// and replays the log into it (log/recovery.cc). The boot id is written
// last, so a crash during the rebuild makes the next open rebuild again.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "log/apply.h"
#include "log/checkpoint.h"
#include "store/store_impl.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/scope_exit.h"

namespace stoa::internal {

namespace {

// Replays puts and deletes (a rebuild's, log/recovery.cc) through the txn
// layer, each commit as one, at its own timestamp.
class KvApplier final : public log::OpApplier {
 public:
  KvApplier(TxnManager* txns, SessionCore* s) : txns_(txns), s_(s) {}
  Status apply(uint64_t ts, const std::vector<log::Op>& ops) override {
    return txns_->apply(*s_, ts, ops);
  }

 private:
  TxnManager* txns_;
  SessionCore* s_;
};

uint64_t chunk_sum(const char* p, uint64_t n, uint64_t index) {
  return util::checksum64(p, size_t(n), 0x53554d00 ^ index);
}

}  // namespace

Status StoreImpl::check_data_file(const std::string& data, bool* created) {
  const std::string log_dir = path_ + "/" + kLogDirName;
  const std::string sum = path_ + "/" + kSumFileName;
  std::optional<std::string> ckpt;
  bool segments = false;
  uint64_t seg_size = 0;
  if (env_->exists(log_dir)) {
    STOA_ASSIGN(ckpt, newest_checkpoint(env_, log_dir));
    STOA_ASSIGN(auto names, env_->list_dir(log_dir));
    for (const auto& n : names) {
      if (log::LogFiles::parse_segment(n, 1) < 0) continue;
      segments = true;
      auto fd = env_->open(log_dir + "/" + n, O_RDONLY, 0);
      if (!fd.ok()) continue;
      auto sz = env_->file_size(*fd, n);
      env_->close(*fd);
      if (sz.ok() && *sz > 0) seg_size = std::max(seg_size, *sz);
    }
  }
  const bool durable_copy = ckpt.has_value() || segments;
  std::unique_ptr<log::CheckpointHeader> ck_hdr;
  if (ckpt) {
    auto r = CheckpointReader::open(env_, *ckpt);
    if (r.ok()) {
      ck_hdr = std::make_unique<log::CheckpointHeader>((*r)->header());
      seg_size = ck_hdr->segment_size;
    }
  }

  std::string reason;
  if (!env_->exists(data)) {
    if (!durable_copy) {
      if (!options_.create_if_missing) {
        return Error(Code::kNotFound,
                     fmt::format("{}: not a Stoa store (no {})", path_, kDataFileName));
      }
      region::CreateParams cp{
          options_.max_size,     options_.initial_size,         options_.grow_chunk,
          options_.max_sessions, uint32_t(options_.durability), kDataLayoutWord};
      STOA_TRY(region::Region::create(env_, data, cp));
      STOA_TRY(env_->make_dir(log_dir));
      STOA_TRY(env_->remove(sum));
      STOA_TRY(env_->sync_dir(path_));
      *created = true;
      recovery_.reason = "created";
      return {};
    }
    reason = "the data file is missing";
  } else {
    auto r = region::Region::open(env_, data, kDataLayoutWord, options_.huge_pages);
    if (!r.ok()) {
      if (r.error().code() != Code::kCorrupt || !durable_copy) return std::move(r).error();
      reason = fmt::format("the data file is damaged ({})", r.error().message());
    } else {
      region_ = std::move(*r);
      const auto* lh = reinterpret_cast<const log::LogHeader*>(region_->ro(kLogRootOffset));
      if (env_->exists(sum)) {
        Status st = check_sum(sum);
        if (!st.ok()) reason = st.error().message();
        // A sum vouches once: gone (durably) before the file changes.
        STOA_TRY(env_->remove(sum));
        STOA_TRY(env_->sync_dir(path_));
      } else if (lh->magic != log::kLogMagic || lh->boot_id != env_->boot_id()) {
        reason =
            "it was not shut down cleanly and the machine has restarted since (its pages may be "
            "torn)";
      }
      if (reason.empty() && force_rebuild_) reason = "a rebuild was asked for";
      if (reason.empty()) {
        recovery_.reason = "the data file is intact";
        return {};
      }
    }
  }
  // Rebuild: a fresh data file with the old store's parameters.
  region::CreateParams cp{options_.max_size,     options_.initial_size,         options_.grow_chunk,
                          options_.max_sessions, uint32_t(options_.durability), kDataLayoutWord};
  if (region_) {
    const region::FileHeader& h = region_->header();
    cp.max_size = h.max_size;
    cp.grow_chunk = h.grow_chunk;
    cp.max_sessions = h.max_sessions;
  } else if (ck_hdr) {
    cp.max_size = ck_hdr->max_size;
    cp.grow_chunk = ck_hdr->grow_chunk;
    cp.max_sessions = ck_hdr->max_sessions;
  }
  region_.reset();
  // Kept aside until the rebuild succeeds: if the checkpoint or log turns
  // out damaged, the old file comes back rather than nothing.
  if (env_->exists(data)) STOA_TRY(env_->rename(data, data + ".prev"));
  STOA_TRY(region::Region::create(env_, data, cp));
  STOA_TRY(env_->make_dir(log_dir));
  STOA_TRY(env_->sync_dir(path_));
  rebuild_pending_ = true;
  rebuild_segment_size_ = seg_size != 0 ? seg_size : options_.log_segment_size;
  recovery_.reason = reason;
  return {};
}

Status StoreImpl::check_sum(const std::string& sum) {
  STOA_ASSIGN(int fd, env_->open(sum, O_RDONLY, 0));
  auto closer = util::scope_exit([&] { env_->close(fd); });
  STOA_ASSIGN(uint64_t bytes, env_->file_size(fd, sum));
  log::SumHeader h{};
  if (bytes < sizeof(h)) return Error(Code::kCorrupt, fmt::format("{}: truncated", sum));
  STOA_TRY(env_->pread_all(fd, &h, sizeof(h), 0, sum));
  if (std::memcmp(h.magic, log::kSumMagic, 8) != 0 || h.chunks > (bytes - sizeof(h)) / 8 ||
      bytes != sizeof(h) + h.chunks * 8) {
    return Error(Code::kCorrupt, fmt::format("{}: not a valid checksum file", sum));
  }
  std::vector<uint64_t> sums(size_t(h.chunks));
  STOA_TRY(env_->pread_all(fd, sums.data(), sums.size() * 8, sizeof(h), sum));
  uint64_t c = util::checksum64(&h, offsetof(log::SumHeader, checksum));
  c = util::checksum64(sums.data(), sums.size() * 8, c);
  if (c != h.checksum) return Error(Code::kCorrupt, fmt::format("{}: checksum mismatch", sum));
  known_synced_ = h.end_ts;
  const uint64_t size = region_->file_size();
  if (size != h.file_size || (size + log::kSumChunk - 1) / log::kSumChunk != h.chunks) {
    return Error(Code::kCorrupt, fmt::format("{}/{}: {} bytes, but {} were left at shutdown", path_,
                                             kDataFileName, size, h.file_size));
  }
  STOA_TRY(region_->ensure(0, size));
  for (uint64_t i = 0; i < h.chunks; i++) {
    uint64_t at = i * log::kSumChunk, n = std::min(log::kSumChunk, size - at);
    if (chunk_sum(region_->ro(at), n, i) != sums[i]) {
      return Error(Code::kCorrupt,
                   fmt::format("{}/{}: bytes {}..{} differ from their checksum at clean shutdown",
                               path_, kDataFileName, at, at + n));
    }
  }
  return {};
}

Status StoreImpl::write_sum() {
  STOA_TRY(log_->flush_all());
  STOA_TRY(region_->sync());
  const uint64_t size = region_->file_size();
  STOA_TRY(region_->ensure(0, size));
  log::SumHeader h{};
  std::memcpy(h.magic, log::kSumMagic, 8);
  h.file_size = size;
  h.chunks = (size + log::kSumChunk - 1) / log::kSumChunk;
  h.end_ts = txns_->header()->next_ts.load(std::memory_order_acquire);
  std::vector<uint64_t> sums(size_t(h.chunks));
  for (uint64_t i = 0; i < h.chunks; i++) {
    uint64_t at = i * log::kSumChunk;
    sums[i] = chunk_sum(region_->ro(at), std::min(log::kSumChunk, size - at), i);
  }
  h.checksum = util::checksum64(&h, offsetof(log::SumHeader, checksum));
  h.checksum = util::checksum64(sums.data(), sums.size() * 8, h.checksum);
  const std::string sum = path_ + "/" + kSumFileName;
  const std::string tmp = sum + ".tmp";
  STOA_ASSIGN(int fd, env_->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644));
  Status st = env_->pwrite_all(fd, &h, sizeof(h), 0, tmp);
  if (st.ok()) st = env_->pwrite_all(fd, sums.data(), sums.size() * 8, sizeof(h), tmp);
  if (st.ok()) st = env_->sync(fd, tmp);
  env_->close(fd);
  if (st.ok()) st = env_->rename(tmp, sum);
  if (st.ok()) st = env_->sync_dir(path_);
  if (!st.ok()) (void)env_->remove(tmp);
  return st;
}

Status StoreImpl::finish_open() {
  if (!alone_) return {};
  const uint32_t before = uint32_t(recoveries_before_);
  if (rebuild_pending_) {
    log_->set_known_synced(known_synced_);
    STOA_ASSIGN(SessionCore * c, new_session());
    KvApplier kv(txns_.get(), c);
    log::ApplyRegistry apply;
    apply.add(log::OpKind::kPut, &kv);
    apply.add(log::OpKind::kDelete, &kv);
    log::RebuildReport rep;
    Status st = log_->rebuild(apply, &rep);
    (void)close_session(c);
    if (st.ok()) copy_rebuild_report(rep, &recovery_);
    const std::string data = path_ + "/" + kDataFileName;
    if (!st.ok()) {
      // Put the old data file back (the next open decides again).
      if (env_->exists(data + ".prev")) {
        (void)env_->rename(data + ".prev", data);
        (void)env_->sync_dir(path_);
      }
      return st;
    }
    rebuild_pending_ = false;
    (void)env_->remove(data + ".prev");
  } else if (uint64_t f = log_->header()->failed_at.load(); f != 0) {
    // The log broke in the last run (log.cc): the data file holds every
    // commit; a checkpoint of it makes them durable and restarts the log.
    log_->header()->failed_at.store(0);
    STOA_ASSIGN(auto src, open_snapshot());
    auto r = log_->checkpoint(*src, /*wait=*/true);
    src.reset();  // closes its session
    if (!r.ok()) {
      log_->fail(f, r.error());
      return Error(r.error().code(),
                   fmt::format("{}: the log failed in the last run and the repair checkpoint "
                               "failed: {}",
                               path_, r.error().message()));
    }
    recovery_.reason +=
        fmt::format("; the log had failed at {}: repaired by a checkpoint at {}", f, r->ts);
  }
  // Mailboxes closed with their dead owners (recover_alone) hold messages
  // that only a session can free.
  if (msgs_->stats().mailboxes != 0) {
    STOA_ASSIGN(SessionCore * c, new_session());
    Status st = msgs_->drain_closed(*c);
    (void)close_session(c);
    STOA_TRY(st);
  }
  recovery_.sessions_recovered =
      uint32_t(table_->header()->recoveries.load(std::memory_order_relaxed)) - before;
  recovery_.end_ts = txns_->header()->next_ts.load(std::memory_order_relaxed);
  log_->header()->boot_id = env_->boot_id();
  return {};
}

Result<uint64_t> StoreImpl::checkpoint() {
  STOA_ASSIGN(auto src, open_snapshot());
  auto r = log_->checkpoint(*src, /*wait=*/true);
  src.reset();  // closes its session
  if (!r.ok()) return std::move(r).error();
  return r->ts;
}

Status StoreImpl::sync() { return log_->flush_all(); }

Result<uint64_t> StoreImpl::backup(const std::string& dest) {
  if (env_->exists(dest)) {
    auto names = env_->list_dir(dest);
    if (!names.ok() || !names->empty()) {
      return Error(Code::kExists, fmt::format("{}: exists and is not an empty directory", dest));
    }
  }
  STOA_TRY(env_->make_dir(dest));
  STOA_TRY(env_->make_dir(dest + "/" + kLogDirName));
  STOA_ASSIGN(auto src, open_snapshot());
  auto r = write_snapshot(*src, region_->header(), log_->files().segment_size(), env_,
                          dest + "/" + kLogDirName, nullptr);
  src.reset();  // closes its session
  if (!r.ok()) return std::move(r).error();
  STOA_TRY(env_->sync_dir(dest));
  return r->ts;
}

Result<std::string> StoreImpl::dump_recorder(SessionCore* core) {
  STOA_ASSIGN(auto dumps, recorder());
  const std::string file =
      fmt::format("{}/recorder-{}-{}.txt", path_, ::getpid(), util::real_ns() / 1000);
  std::string text = fmt::format("# flight recorders of {} (corruption detected by session {})\n",
                                 path_, core != nullptr ? int64_t(core->slot()) : -1);
  for (const RecorderDump& d : dumps) {
    text += fmt::format("slot {} generation {} pid {} state {}\n", d.slot, d.generation, d.pid,
                        d.state);
    for (const auto& e : d.entries) {
      text += fmt::format("  {} gen {} {} -> {} arg {:#x} arg2 {:#x}\n", e.time_ns, e.generation,
                          e.kind, e.result, e.arg, e.arg2);
    }
  }
  STOA_ASSIGN(int fd, env_->open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  Status st = env_->pwrite_all(fd, text.data(), text.size(), 0, file);
  env_->close(fd);
  STOA_TRY(st);
  return file;
}

Error StoreImpl::corruption(SessionCore* core, Error e) {
  if (e.code() != Code::kCorrupt) return e;
  auto f = dump_recorder(core);
  if (!f.ok()) return e;
  return Error(Code::kCorrupt, fmt::format("{} (flight recorder written to {})", e.message(), *f));
}

}  // namespace stoa::internal
