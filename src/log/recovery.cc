// log/recovery.cc — rebuilding a store from its checkpoint and log.
//
// Runs alone, during open, on a fresh data file, when the old one cannot be
// trusted (log.cc says when). Steps, each safe to repeat:
//  1. Load the newest checkpoint C (every block checked; a damaged one is
//     kCorrupt naming file and offset: there is no older one to fall back
//     to, since older ones are removed only after a newer one is complete).
//  2. Replay the log from C record by record (log::LogReader), each with
//     its original timestamp and each op through the applier registered
//     for its kind (log/apply.h), until the first record that does not
//     check out, at E.
//  3. Decide whether E is a torn tail or damage. Everything below the
//     largest durable mark we know (C, the clean-shutdown mark, the `synced`
//     field of every record read) was on disk, so E below it is damage:
//     refuse (the reader reports it). So is a valid record further on whose
//     own mark passes E.
//     Otherwise E is where the last power cut stopped the writes.
//  4. Cut the log at E (zero the rest of its segment, remove later ones,
//     sync), so bytes of the old incarnation can never be read as records
//     of the new one, and set the tail, watermarks and durable mark to E.
// The data file is marked trusted (boot id) only after all of this, by the
// store folder, so a crash anywhere in between makes the next open start over.
#include <algorithm>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "log/checkpoint.h"
#include "log/log.h"
#include "log/reader.h"
#include "util/shm_mutex.h"

namespace stoa::internal {

namespace {

// Looks past `end` for a record that checks out and says it was written
// after `end` was on disk. Returns how far record-like bytes reach.
Result<uint64_t> look_past(log::LogFiles& files, uint64_t end, bool* damage) {
  const uint64_t limit = log::segments_end(files);
  const uint64_t seg = files.segment_size();
  std::string chunk, rec;
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
        if (!files.read(at, rec.data(), h.len).ok() || !log::commit_sum_ok(rec.data(), h.len))
          continue;
      }
      if (h.synced > end) *damage = true;
    }
    base += n;
  }
  return reach - end;
}

}  // namespace

// The checkpoint's entries are puts: they go through the registry too.
Status LogManager::rebuild(const log::ApplyRegistry& apply, log::RebuildReport* rep) {
  const auto t0 = std::chrono::steady_clock::now();
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
      STOA_TRY(apply.apply(ckpt_ts, entries));
    }
    rep->checkpoint_keys = reader->keys();
  }
  rep->checkpoint_ts = ckpt_ts;
  log::LogReader rd(&files_, ckpt_ts);
  rd.set_known_synced(std::max(ckpt_ts, known_synced_));
  while (rd.next()) STOA_TRY(apply.apply(rd.ts(), rd.ops()));
  STOA_TRY(rd.status());
  const uint64_t end = rd.position();
  bool damage = false;
  STOA_ASSIGN(uint64_t reach, look_past(files_, end, &damage));
  if (damage) return log::damaged_log(files_, end, end + 1);
  STOA_TRY(files_.cut_after(end));

  ctx_.next_ts->store(end, std::memory_order_relaxed);
  ctx_.visible_ts->store(end, std::memory_order_relaxed);
  ctx_.low_water->store(end, std::memory_order_relaxed);
  hdr_->synced.store(end, std::memory_order_relaxed);
  hdr_->failed_at.store(0);
  hdr_->checkpoint_ts.store(ckpt_ts, std::memory_order_relaxed);
  hdr_->checkpoint_bytes.store(ckpt_bytes, std::memory_order_relaxed);
  const uint64_t seg = files_.segment_size();
  hdr_->allocated_end.store(end / seg * seg, std::memory_order_relaxed);

  rep->log_records = rd.records();
  rep->log_bytes = end - ckpt_ts;
  rep->end_ts = end;
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
  uint64_t upto = ctx_.visible_ts->load(std::memory_order_acquire);
  if (const uint64_t f = hdr_->failed_at.load(); f != 0) upto = std::min(upto, f);
  log::LogReader rd(&files_, ckpt_ts);
  rd.set_known_synced(upto);
  while (rd.next()) {
  }
  *records = rd.records();
  if (!rd.status().ok()) problems->push_back(rd.status().error().message());
}

}  // namespace stoa::internal
