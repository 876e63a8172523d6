// log/log_test_util.h — scratch directories and record writing for the log
// layer's unit tests (record_test, reader_test, checkpoint_test).
//
// Thread safety: for one test thread.
#ifndef STOA_LOG_LOG_TEST_UTIL_H_
#define STOA_LOG_LOG_TEST_UTIL_H_

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "log/log_file.h"
#include "log/record.h"
#include "util/scratch_dir.h"

namespace stoa::log::testing {

using util::testing::ScratchDir;

// The bytes of a commit record of `ops` at `lsn`.
inline std::string encode(uint64_t lsn, uint64_t synced, const std::vector<Op>& ops) {
  std::string rec(size_t(commit_size(ops)), '\0');
  encode_commit(rec.data(), lsn, synced, ops);
  return rec;
}

// Appends records to a log the way LogManager does (segments created
// before a record is written into them); tracks the tail.
class Appender {
 public:
  explicit Appender(LogFiles* files) : files_(files) {}
  // Writes the commit record of `ops`; returns its commit timestamp.
  uint64_t commit(const std::vector<Op>& ops) { return put(encode(tail_, tail_, ops)); }
  uint64_t padding(uint64_t len) {
    RecordHeader h = log::padding(tail_, len, tail_);
    std::string rec(size_t(len), '\0');
    std::memcpy(rec.data(), &h, sizeof(h));
    return put(rec);
  }
  // Writes `bytes` at the tail (a whole record, or part of one).
  uint64_t put(const std::string& bytes) {
    const uint64_t end = tail_ + bytes.size();
    if (end > allocated_) {
      if (!files_->create_segments(allocated_, end).ok()) std::abort();
      const uint64_t seg = files_->segment_size();
      allocated_ = (end - 1) / seg * seg + seg;
    }
    if (!files_->write(tail_, bytes.data(), bytes.size()).ok()) std::abort();
    tail_ = end;
    return tail_;
  }
  uint64_t tail() const { return tail_; }

 private:
  LogFiles* files_;
  uint64_t tail_ = 0;
  uint64_t allocated_ = 0;
};

}  // namespace stoa::log::testing

#endif  // STOA_LOG_LOG_TEST_UTIL_H_
