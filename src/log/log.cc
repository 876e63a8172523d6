// log/log.cc — the write-ahead log: reservation, records, group commit.
//
// What is durable. The data file is a mapped heap that many processes write
// with plain stores; the kernel writes its pages back in any order and a
// power cut can tear one. So after a power cut its pages are never trusted:
// the durable truth is the newest checkpoint file plus the log after it
// (checkpoint.cc, recovery.cc). The data file is trusted only while the
// page cache that holds it survives (a lone opener finds its own boot id in
// LogHeader) or when the last closer synced it and left checksums of every
// 1 MiB of it (`stoa.sum`) that still match. This is the shadow-copy answer
// to torn pages: nothing that is written in place is ever replayed onto.
//
// Log positions are timestamps. A commit's timestamp is the LSN just past
// its record, so log order is commit order and a prefix of the log is a
// prefix of the commit order, with nothing else to keep in step.
//
// A commit, in order (txn.cc has the rest):
//  1. Announce kReserving (the watermark stops), then under reserve_mu:
//     note the holder's slot, create the segment if the record would run
//     past the allocated end (ENOSPC here fails the commit cleanly: nothing
//     is reserved yet), write [start, start+len) into the session's commit
//     record, then advance the tail (the clock's next_ts). Announce start.
//  2. Validate. A transaction that fails writes a padding record over its
//     range, so the log has no holes.
//  3. Commit point (kInstalling), then write the record with pwrite, then
//     clear the range from the commit record, install, clear the
//     announcement. The visibility watermark cannot pass a record before
//     it is written, so every commit at or below visible_ts is in the OS.
//  4. kSync: fdatasync up to the watermark (one caller at a time under
//     flush_mu; who waits meanwhile finds its commit covered by the next
//     sync: group commit). kGroup: ask a flusher thread (any process), which
//     waits group_window for company, then syncs. kNone: nothing.
//
// Death. A holder of reserve_mu that dies leaves the robust mutex
// owner-died; the next holder repairs: if the dead slot's range starts at
// the tail, the tail never moved and the range is cleared. A committer that
// dies with a range is settled by whoever recovers its session: commit
// point passed -> the record is rebuilt from its commit list (the same
// bytes), else padding. Both happen before its watermark entry is cleared.
//
// Failure. A failed write or fdatasync sets failed_at: from then on no
// commit at or past it is acknowledged and none may start, because after
// a failed fdatasync the kernel may have dropped the dirty pages and a
// retry would report success for data that is gone (never retried). The
// next lone open repairs by writing a checkpoint from the data file, which
// is intact in memory, and starting the log after it.
//
// Torn tails. Every record carries the `synced` mark known when it was
// written. Recovery stops at the first invalid record; that is a torn tail
// only if it lies past every mark seen (and past the checkpoint and the
// clean-shutdown mark) and no valid record further on claims otherwise.
// Otherwise the log was damaged where it had been on disk: open refuses.
#include "log/log.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "crash/crash_point.h"
#include "txn/layout.h"
#include "util/futex.h"

namespace stoa::internal {

namespace {

// The encode buffer of this thread (kept between commits, trimmed when big).
std::string& encode_buffer() {
  thread_local std::string buf;
  return buf;
}

}  // namespace

LogManager::LogManager(LogContext ctx, Env* env, const std::string& dir, uint64_t segment_size)
    : ctx_(std::move(ctx)), env_(env), hdr_(ctx_.header), files_(env, dir, segment_size) {}

LogManager::~LogManager() { stop(); }

void LogManager::init_alone(bool fresh) {
  if (fresh || hdr_->magic != log::kLogMagic) {
    std::memset(static_cast<void*>(hdr_), 0, sizeof(*hdr_));
    hdr_->segment_size = files_.segment_size();
    hdr_->magic = log::kLogMagic;
  }
  hdr_->reserve_mu.init();
  hdr_->flush_mu.init();
  hdr_->ckpt_mu.init();
  hdr_->flush_request.store(0, std::memory_order_relaxed);
  hdr_->ckpt_request.store(0, std::memory_order_relaxed);
  // Segments past the tail may be missing (a rebuild cut them): make the
  // next reservation create what it needs.
  uint64_t tail = ctx_.next_ts->load(std::memory_order_relaxed);
  uint64_t seg = files_.segment_size();
  hdr_->allocated_end.store(tail / seg * seg, std::memory_order_relaxed);
  if (hdr_->synced.load(std::memory_order_relaxed) > tail) hdr_->synced.store(tail);
}

void LogManager::start() {
  const Options& o = *ctx_.options;
  // No background threads (options.h): group commits then sync inline, and
  // checkpoints run when asked for.
  if (!o.log_threads) return;
  if (o.durability == Durability::kGroup) {
    has_flusher_ = true;
    flusher_ = std::thread([this] { flusher_loop(); });
  }
  if (o.checkpoint_log_bytes > 0) checkpointer_ = std::thread([this] { checkpointer_loop(); });
  // Return only once both are asleep in their loops: a fork() right after
  // open must not copy a thread caught starting up (inside malloc).
  const int want = int(flusher_.joinable()) + int(checkpointer_.joinable());
  while (started_.load(std::memory_order_acquire) < want) std::this_thread::yield();
}

void LogManager::stop() {
  stop_flag_.store(true);
  {
    util::MutexLock g(thread_mu_);
    stopping_ = true;
  }
  thread_cv_.notify_all();
  // Wake our own threads (others' wake spuriously and go back to sleep).
  util::futex_wake(&hdr_->flush_request);
  util::futex_wake(&hdr_->ckpt_request);
  if (flusher_.joinable()) flusher_.join();
  if (checkpointer_.joinable()) checkpointer_.join();
}

void LogManager::forget_after_fork() {
  if (flusher_.joinable()) flusher_.detach();
  if (checkpointer_.joinable()) checkpointer_.detach();
  files_.forget();
}

// --- reservation -------------------------------------------------------------

void LogManager::repair_reserve_locked() {
  const uint32_t slot = hdr_->reserve_slot;
  session::SessionTable& t = *ctx_.table;
  if (slot >= t.slot_count()) return;
  txn::TxnSlot& ts = txn::txn_of(*t.slot(slot));
  const uint64_t tail = ctx_.next_ts->load(std::memory_order_relaxed);
  if (ts.log_len != 0 && ts.log_start + ts.log_len > tail) ts.log_len = 0;  // never reserved
}

Result<uint64_t> LogManager::reserve(SessionCore& s, uint64_t len) {
  util::ShmLock g(hdr_->reserve_mu, [&]() NO_THREAD_SAFETY_ANALYSIS { repair_reserve_locked(); });
  hdr_->reserve_slot = s.slot();
  STOA_CRASH_POINT(kLogReserveLocked);
  Status st;
  uint64_t start = 0;
  if (uint64_t f = hdr_->failed_at.load(); f != 0) {
    st = Error(Code::kIo, fmt::format("the log failed at {} ({}); reopen the store to repair it", f,
                                      failure()));
  } else {
    start = ctx_.next_ts->load(std::memory_order_relaxed);
    const uint64_t end = start + len;
    uint64_t have = hdr_->allocated_end.load(std::memory_order_relaxed);
    if (end > have) {
      st = files_.create_segments(have, end);
      // ENOSPC reserved nothing and may pass; any other failure (a failed
      // directory sync) is never retried into a success: the log fails.
      if (!st.ok() && st.error().code() != Code::kFull) fail(start, st.error());
      if (st.ok()) {
        const uint64_t seg = files_.segment_size();
        hdr_->allocated_end.store((end - 1) / seg * seg + seg, std::memory_order_relaxed);
      }
    }
    if (st.ok()) {
      txn::TxnSlot& t = txn::txn_of(*s.slot_ptr());
      t.log_start = start;
      t.log_len = len;
      ctx_.next_ts->store(end, std::memory_order_seq_cst);
      STOA_CRASH_POINT(kLogReserveAdvanced);
    }
  }
  if (!st.ok()) return std::move(st).error();
  return start;
}

Status LogManager::write_commit(uint64_t lsn, uint64_t len, const std::vector<log::Op>& ops) {
  std::string& buf = encode_buffer();
  if (log::commit_size(ops) != len) {
    Error e(Code::kCorrupt, fmt::format("log record at {} would take {} bytes, {} reserved", lsn,
                                        log::commit_size(ops), len));
    fail(lsn, e);
    return e;
  }
  buf.resize(size_t(len));
  log::encode_commit(buf.data(), lsn, hdr_->synced.load(std::memory_order_acquire), ops);
  Status st = files_.write(lsn, buf.data(), len);
  if (buf.size() > (size_t{4} << 20)) std::string().swap(buf);
  if (!st.ok()) {
    fail(lsn, st.error());
    return Error(Code::kIo, fmt::format("commit at {} is not durable: its log record was not "
                                        "written: {}",
                                        lsn + len, st.error().message()));
  }
  return {};
}

Status LogManager::write_padding(uint64_t lsn, uint64_t len) {
  log::RecordHeader h = log::padding(lsn, len, hdr_->synced.load(std::memory_order_acquire));
  Status st = files_.write(lsn, &h, sizeof(h));
  if (!st.ok()) fail(lsn, st.error());
  return st;
}

Status LogManager::settle_locked(uint64_t* log_start, uint64_t* log_len, bool committed,
                                 const std::vector<log::Op>* ops) {
  {
    util::ShmLock g(hdr_->reserve_mu, [&]() NO_THREAD_SAFETY_ANALYSIS { repair_reserve_locked(); });
    const uint64_t tail = ctx_.next_ts->load(std::memory_order_relaxed);
    if (*log_len != 0 && *log_start + *log_len > tail) *log_len = 0;  // never reserved
  }
  if (*log_len == 0) return {};
  ctx_.table->header()->counters.log_settled.fetch_add(1, std::memory_order_relaxed);
  Status st = committed && ops != nullptr && !ops->empty()
                  ? write_commit(*log_start, *log_len, *ops)
                  : write_padding(*log_start, *log_len);
  *log_len = 0;
  return st;
}

// --- durability --------------------------------------------------------------

void LogManager::fail(uint64_t at, const Error& why) {
  {
    util::MutexLock g(fail_mu_);
    if (failure_.empty()) failure_ = why.to_string();
  }
  uint64_t expected = 0;
  hdr_->failed_at.compare_exchange_strong(expected, std::max<uint64_t>(at, 1));
}

log::LogStats LogManager::stats() const {
  log::LogStats s;
  s.durable_ts = hdr_->synced.load(std::memory_order_acquire);
  s.checkpoint_ts = hdr_->checkpoint_ts.load(std::memory_order_acquire);
  s.failure = failure();
  return s;
}

std::string LogManager::failure() const {
  util::MutexLock g(fail_mu_);
  if (!failure_.empty()) return failure_;
  uint64_t f = hdr_->failed_at.load();
  return f == 0 ? std::string()
                : fmt::format("a write or sync failed (in another process) at {}", f);
}

Status LogManager::flush(uint64_t target) {
  // One leader syncs; whoever comes meanwhile sleeps until that sync ends
  // and then finds its commit covered (or leads the next one): one
  // fdatasync for everything written before it started.
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (hdr_->synced.load(std::memory_order_acquire) >= target) return {};
    const uint32_t seq = hdr_->sync_seq.load(std::memory_order_acquire);
    if (!hdr_->flush_mu.try_lock()) {
      util::futex_wait(&hdr_->sync_seq, seq, 10'000'000);
      continue;
    }
    Status st;
    bool done = true;
    const uint64_t from = hdr_->synced.load(std::memory_order_relaxed);
    const uint64_t failed = hdr_->failed_at.load();
    if (from >= target) {
      // covered by the sync that just ended
    } else if (failed != 0 && target > failed) {
      st = Error(Code::kIo, fmt::format("commit at {} is not durable: {}", target, failure()));
    } else {
      uint64_t upto = ctx_.visible_ts->load(std::memory_order_seq_cst);
      if (failed != 0) upto = std::min(upto, failed);
      STOA_CRASH_POINT(kLogFlushLocked);
      Status s = files_.sync(from, upto);
      if (s.ok()) {
        STOA_CRASH_POINT(kLogFlushSynced);
        if (upto > from) hdr_->synced.store(upto, std::memory_order_release);
        if (upto < target) done = false;  // an earlier commit is still installing
      } else {
        fail(from, s.error());
        st = Error(Code::kIo,
                   fmt::format("commit at {} is not durable: {}", target, s.error().message()));
      }
    }
    hdr_->flush_mu.unlock();
    hdr_->sync_seq.fetch_add(1, std::memory_order_release);
    util::futex_wake(&hdr_->sync_seq);
    if (!st.ok() || done) return st;
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(10)) {
      return Error(Code::kTimeout, fmt::format("commit at {} is not durable yet: an earlier "
                                               "commit has been installing for 10 s",
                                               target));
    }
    std::this_thread::yield();
  }
}

Status LogManager::flush_all() {
  uint64_t v = ctx_.visible_ts->load(std::memory_order_seq_cst);
  return flush(v);
}

Status LogManager::after_commit(uint64_t ts, Durability mode) {
  uint64_t failed = hdr_->failed_at.load();
  if (failed != 0 && ts > failed) {
    return Error(Code::kIo, fmt::format("commit at {} is not durable: {}", ts, failure()));
  }
  request_checkpoint(ts);
  switch (mode) {
    case Durability::kSync:
      return flush(ts);
    case Durability::kGroup:
      if (!has_flusher_) return flush(ts);
      if (hdr_->flush_request.load(std::memory_order_seq_cst) == 0 &&
          hdr_->flush_request.exchange(1, std::memory_order_seq_cst) == 0) {
        util::futex_wake(&hdr_->flush_request, 1);
      }
      return {};
    case Durability::kNone:
      return {};
  }
  return {};
}

void LogManager::flusher_loop() {
  const auto window = ctx_.options->group_window;
  started_.fetch_add(1, std::memory_order_release);
  while (!stop_flag_.load()) {
    util::futex_wait(&hdr_->flush_request, 0, 100'000'000);
    if (stop_flag_.load()) break;
    if (hdr_->flush_request.load(std::memory_order_seq_cst) == 0) continue;
    util::MutexLock awake(pause_mu_);
    if (window.count() > 0) {
      util::MutexLock g(thread_mu_);
      thread_cv_.wait_for(thread_mu_, window, [&]() REQUIRES(thread_mu_) { return stopping_; });
    }
    // Clear, then read the watermark (seq_cst both, pairing with the
    // committer's install-then-request): a request we clear is covered.
    hdr_->flush_request.store(0, std::memory_order_seq_cst);
    (void)flush_all();
  }
}

// --- checkpoint triggering -----------------------------------------------------

void LogManager::request_checkpoint(uint64_t ts) {
  const uint64_t every = ctx_.options->checkpoint_log_bytes;
  if (every == 0) return;
  const uint64_t since = ts - std::min(ts, hdr_->checkpoint_ts.load(std::memory_order_relaxed));
  if (since < std::max(every, hdr_->checkpoint_bytes.load(std::memory_order_relaxed))) return;
  if (hdr_->ckpt_request.load(std::memory_order_relaxed) == 0 &&
      hdr_->ckpt_request.exchange(1) == 0) {
    util::futex_wake(&hdr_->ckpt_request, 1);
  }
}

void LogManager::checkpointer_loop() {
  started_.fetch_add(1, std::memory_order_release);
  while (!stop_flag_.load()) {
    util::futex_wait(&hdr_->ckpt_request, 0, 200'000'000);
    if (stop_flag_.load()) break;
    if (hdr_->ckpt_request.load() == 0) continue;
    util::MutexLock awake(pause_mu_);
    auto src = ctx_.open_snapshot();
    if (!src.ok()) continue;
    auto r = checkpoint(**src, /*wait=*/false);
    if (r.ok() || r.error().code() != Code::kBusy) hdr_->ckpt_request.store(0);
    src->reset();  // closes its session
    if (!r.ok() && r.error().code() == Code::kBusy) {
      util::MutexLock g(thread_mu_);
      thread_cv_.wait_for(thread_mu_, std::chrono::milliseconds(10),
                          [&]() REQUIRES(thread_mu_) { return stopping_; });
    }
  }
}

}  // namespace stoa::internal
