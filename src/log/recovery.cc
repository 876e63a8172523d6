// log/recovery.cc — rebuilding a store from its checkpoint and log.
//
// Runs alone, during open, on a fresh data file, when the old one cannot be
// trusted (log.cc says when). Steps, each safe to repeat:
//  1. Load the newest checkpoint C (every block checked; a damaged one is
//     kCorrupt naming file and offset: there is no older one to fall back
//     to, since older ones are removed only after a newer one is complete).
//  2. Replay the log from C record by record, each with its original
//     timestamp, until the first record that does not check out, at E.
//  3. Decide whether E is a torn tail or damage. Everything below the
//     largest durable mark we know (C, the clean-shutdown mark, the `synced`
//     field of every record read) was on disk, so E below it is damage:
//     refuse. So is a valid record further on whose own mark passes E.
//     Otherwise E is where the last power cut stopped the writes.
//  4. Cut the log at E (zero the rest of its segment, remove later ones,
//     sync), so bytes of the old incarnation can never be read as records
//     of the new one, and set the tail, watermarks and durable mark to E.
// The data file is marked trusted (boot id) only after all of this, by
// StoreImpl, so a crash anywhere in between makes the next open start over.
#include <algorithm>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "log/checkpoint.h"
#include "log/log.h"
#include "store/store_impl.h"
#include "util/shm_mutex.h"

namespace stoa::internal {

namespace {

struct Scan {
  uint64_t end = 0;
  uint64_t records = 0;
  uint64_t bytes = 0;
  uint64_t max_mark = 0;
};

// The end of the last segment present (no record reaches past it).
uint64_t log_limit(log::LogFiles& files) {
  auto l = files.list();
  if (!l.ok() || l->empty()) return 0;
  return (l->back() + 1) * files.segment_size();
}

// Reads records from `from` while they check out; calls fn(ts, ops) for
// each commit record. Stops at the first one that does not.
template <typename Fn>
Status scan_log(log::LogFiles& files, uint64_t from, Scan* sc, Fn fn) {
  const uint64_t limit = log_limit(files);
  std::string buf;
  std::vector<log::Op> ops;
  uint64_t lsn = from;
  while (lsn + sizeof(log::RecordHeader) <= limit) {
    log::RecordHeader h;
    if (!files.read(lsn, &h, sizeof(h)).ok()) break;
    if (!log::header_ok(h, lsn, limit - lsn)) break;
    if (h.type == uint16_t(log::RecordType::kCommit)) {
      buf.resize(size_t(h.len));
      if (!files.read(lsn, buf.data(), h.len).ok()) break;
      if (!log::decode_commit(buf.data(), h.len, &ops)) break;
      STOA_TRY(fn(lsn + h.len, ops));
      sc->records++;
    }
    sc->max_mark = std::max(sc->max_mark, h.synced);
    lsn += h.len;
  }
  sc->end = lsn;
  sc->bytes = lsn - from;
  return {};
}

// Looks past `end` for a record that checks out and says it was written
// after `end` was on disk. Returns how far record-like bytes reach.
Result<uint64_t> look_past(log::LogFiles& files, uint64_t end, bool* damage) {
  const uint64_t limit = log_limit(files);
  const uint64_t seg = files.segment_size();
  std::string chunk, rec;
  std::vector<log::Op> ops;
  uint64_t reach = end;
  for (uint64_t base = end; base < limit;) {
    const uint64_t n = std::min<uint64_t>(limit - base, std::min<uint64_t>(seg, 1 << 20));
    chunk.resize(size_t(n));
    if (!files.read(base, chunk.data(), n).ok()) {
      base = (base / seg + 1) * seg;  // a missing segment: go on with the next
      continue;
    }
    // From `end` itself: a torn record there whose header survived is cut too.
    for (uint64_t off = 0; off + sizeof(log::RecordHeader) <= n; off += 8) {
      if (std::memcmp(chunk.data() + off, &log::kRecordMagic, 4) != 0) continue;
      log::RecordHeader h;
      std::memcpy(&h, chunk.data() + off, sizeof(h));
      const uint64_t at = base + off;
      if (!log::header_ok(h, at, limit - at)) continue;
      reach = std::max(reach, at + h.len);
      if (h.type == uint16_t(log::RecordType::kCommit)) {
        rec.resize(size_t(h.len));
        if (!files.read(at, rec.data(), h.len).ok() || !log::decode_commit(rec.data(), h.len, &ops))
          continue;
      }
      if (h.synced > end) *damage = true;
    }
    base += n;
  }
  return reach - end;
}

Error damaged(log::LogFiles& files, uint64_t at, uint64_t mark) {
  const uint64_t seg = files.segment_size();
  return Error(Code::kCorrupt,
               fmt::format("{}: offset {}: the log record at {} fails its checks, but the log was "
                           "on disk up to {}: the log is damaged (not a torn tail)",
                           files.segment_path(at / seg), at % seg, at, mark));
}

}  // namespace

Status LogManager::rebuild(SessionCore& s, RecoveryReport* rep) {
  const auto t0 = std::chrono::steady_clock::now();
  TxnManager& mgr = store_->txns();
  uint64_t ckpt_ts = 0, ckpt_bytes = 0;
  STOA_ASSIGN(auto ck, newest_checkpoint(env_, files_.dir()));
  if (ck) {
    STOA_ASSIGN(auto reader, CheckpointReader::open(env_, *ck));
    ckpt_ts = reader->header().ts;
    ckpt_bytes = reader->file_bytes();
    std::vector<log::Op> entries;
    for (;;) {
      STOA_ASSIGN(bool more, reader->next(&entries));
      if (!more) break;
      STOA_TRY(mgr.apply(s, ckpt_ts, entries));
    }
    rep->checkpoint_keys = reader->keys();
  }
  rep->checkpoint_ts = ckpt_ts;
  Scan sc;
  STOA_TRY(scan_log(files_, ckpt_ts, &sc, [&](uint64_t ts, const std::vector<log::Op>& ops) {
    return mgr.apply(s, ts, ops);
  }));
  const uint64_t known = std::max({ckpt_ts, sc.max_mark, known_synced_});
  if (sc.end < known) return damaged(files_, sc.end, known);
  bool damage = false;
  STOA_ASSIGN(uint64_t reach, look_past(files_, sc.end, &damage));
  if (damage) return damaged(files_, sc.end, sc.end + 1);
  STOA_TRY(files_.cut_after(sc.end));

  index::IndexHeader* ih = mgr.header();
  ih->next_ts.store(sc.end, std::memory_order_relaxed);
  ih->visible_ts.store(sc.end, std::memory_order_relaxed);
  ih->low_water.store(sc.end, std::memory_order_relaxed);
  hdr_->synced.store(sc.end, std::memory_order_relaxed);
  hdr_->failed_at.store(0);
  hdr_->checkpoint_ts.store(ckpt_ts, std::memory_order_relaxed);
  hdr_->checkpoint_bytes.store(ckpt_bytes, std::memory_order_relaxed);
  const uint64_t seg = files_.segment_size();
  hdr_->allocated_end.store(sc.end / seg * seg, std::memory_order_relaxed);

  rep->rebuilt = true;
  rep->log_records = sc.records;
  rep->log_bytes = sc.bytes;
  rep->end_ts = sc.end;
  rep->truncated_bytes = reach;
  rep->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {};
}

void LogManager::verify(uint64_t* records, uint64_t* ckpt_keys,
                        std::vector<std::string>* problems) {
  // No checkpoint may remove what we read meanwhile.
  util::ShmLock ckpt(hdr_->ckpt_mu);  // a dead checkpointer left only a .tmp file
  const uint64_t ckpt_ts = hdr_->checkpoint_ts.load(std::memory_order_acquire);
  auto ck = newest_checkpoint(env_, files_.dir());
  if (!ck.ok()) {
    problems->push_back(ck.error().message());
  } else if (*ck) {
    auto reader = CheckpointReader::open(env_, **ck);
    std::vector<log::Op> entries;
    while (reader.ok()) {
      auto more = (*reader)->next(&entries);
      if (!more.ok()) {
        problems->push_back(more.error().message());
        break;
      }
      if (!*more) {
        *ckpt_keys = (*reader)->keys();
        break;
      }
    }
    if (!reader.ok()) problems->push_back(reader.error().message());
  }
  // Records up to the watermark are all written, except from where the log
  // failed in this run (that record may be missing or torn; log.cc).
  uint64_t upto = store_->txns().header()->visible_ts.load(std::memory_order_acquire);
  if (const uint64_t f = hdr_->failed_at.load(); f != 0) upto = std::min(upto, f);
  Scan sc;
  (void)scan_log(files_, ckpt_ts, &sc,
                 [](uint64_t, const std::vector<log::Op>&) -> Status { return {}; });
  *records = sc.records;
  if (sc.end < upto) {
    problems->push_back(damaged(files_, sc.end, upto).message());
  }
}

}  // namespace stoa::internal
