// log/reader.cc — the log reader (reader.h has the contract).
//
// Invariants: pos_ is always a record boundary at or past `from`; a record
// is consumed (pos_ moves past it) only once it checked out whole, so a
// record caught half-written by a tailer is read again, whole, by a later
// next(). Nothing is written: a crash leaves nothing to repair.
#include "log/reader.h"

#include <algorithm>

#include <fmt/format.h>

namespace stoa::log {

uint64_t segments_end(LogFiles& files) {
  auto l = files.list();
  if (!l.ok() || l->empty()) return 0;
  return (l->back() + 1) * files.segment_size();
}

Error damaged_log(const LogFiles& files, uint64_t at, uint64_t mark) {
  const uint64_t seg = files.segment_size();
  return Error(Code::kCorrupt,
               fmt::format("{}: offset {}: the log record at {} fails its checks, but the log was "
                           "on disk up to {}: the log is damaged (not a torn tail)",
                           files.segment_path(at / seg), at % seg, at, mark));
}

LogReader::LogReader(LogFiles* files, uint64_t from) : files_(files), pos_(from) {}

bool LogReader::read_header(RecordHeader* h) {
  for (int tries = 0; tries < 2; tries++) {
    if (tries == 1 || limit_ == 0) {
      const uint64_t l = segments_end(*files_);
      if (tries == 1 && l == limit_) return false;
      limit_ = l;
    }
    if (pos_ + sizeof(RecordHeader) <= limit_ && files_->read(pos_, h, sizeof(*h)).ok() &&
        header_ok(*h, pos_, limit_ - pos_)) {
      return true;
    }
  }
  return false;
}

bool LogReader::at_end() {
  if (pos_ < known_) status_ = damaged_log(*files_, pos_, known_);
  return false;
}

bool LogReader::next(uint64_t upto) {
  if (!status_.ok()) return false;
  for (;;) {
    RecordHeader h;
    if (!read_header(&h)) return at_end();
    if (pos_ + h.len > upto) return false;
    if (h.type == uint16_t(RecordType::kCommit)) {
      buf_.resize(size_t(h.len));
      if (!files_->read(pos_, buf_.data(), h.len).ok() || !commit_sum_ok(buf_.data(), h.len)) {
        return at_end();
      }
      if (Status st = decode_commit(buf_.data(), h.len, pos_, &ops_); !st.ok()) {
        const uint64_t seg = files_->segment_size();
        status_ =
            Error(Code::kCorrupt, fmt::format("{}: offset {}: {}", files_->segment_path(pos_ / seg),
                                              pos_ % seg, st.error().message()));
        return false;
      }
    }
    known_ = std::max(known_, h.synced);
    pos_ += h.len;
    if (h.type == uint16_t(RecordType::kCommit)) {
      records_++;
      ts_ = pos_;
      return true;
    }
  }
}

}  // namespace stoa::log
