// log/reader.h — reading the commit records of the log in log order, from
// any record boundary; recovery replays with it, and any layer can tail a
// live log with it (it reads the segment files, never the shared mapping).
//
// The end of the valid log is where the first record that does not check
// out lies. Below a mark known to have been on disk (set_known_synced, and
// the `synced` field of every record read) that is damage: status() is
// kCorrupt naming file and offset. At or past it, it is the end of what is
// written so far (or a torn tail, which recovery tells apart by looking past
// it): next() returns false with status() ok, and a later next() picks up
// records appended since, across segment rollover. Padding records are
// skipped. A record whose checksum matches but whose ops do not decode (an
// unknown kind) is kCorrupt: it is no torn write.
//
// A checkpoint removes the segments wholly before it (checkpoint.cc): a
// tailer that falls behind the last checkpoint (LogHeader::checkpoint_ts)
// finds its segment gone and sees only "no more yet"; it must compare
// position() with the checkpoint and read the checkpoint instead.
//
// Thread safety: a LogReader belongs to one thread; many may read one log.
#ifndef STOA_LOG_READER_H_
#define STOA_LOG_READER_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "log/log_file.h"
#include "log/record.h"
#include "stoa/result.h"

namespace stoa::log {

class LogReader {
 public:
  // Reads `files` (not owned) from LSN `from`: 0, a checkpoint's or a
  // commit's timestamp.
  LogReader(LogFiles* files, uint64_t from);

  // Everything below `mark` was on disk (a checkpoint, a clean-shutdown
  // mark, a watermark): a record there that fails its checks is damage.
  void set_known_synced(uint64_t mark) { known_ = std::max(known_, mark); }

  // Moves to the next commit record that ends at or below `upto` (a
  // tailer passes the visible timestamp, so it sees only visible commits):
  // true, with ts() and ops() set. false when there is none yet (status()
  // ok) or on an error (status() not ok; every later call returns false).
  bool next(uint64_t upto = std::numeric_limits<uint64_t>::max());
  // The commit timestamp of the current record (the LSN just past it).
  uint64_t ts() const { return ts_; }
  // Its ops: views into this reader, valid until the next call.
  const std::vector<Op>& ops() const { return ops_; }
  const Status& status() const { return status_; }

  // The first LSN not read yet: after a false next() with status() ok, the
  // end of the valid log so far.
  uint64_t position() const { return pos_; }
  uint64_t records() const { return records_; }  // commit records read
  // The largest durable mark known: set_known_synced and every record's.
  uint64_t known_synced() const { return known_; }

 private:
  // Reads the record header at pos_ and checks it, listing the segments
  // again once if it does not check out (one may have been created since).
  bool read_header(RecordHeader* h);
  bool at_end();  // false, and kCorrupt when pos_ lies below known_

  LogFiles* files_;
  uint64_t pos_;
  uint64_t limit_ = 0;  // the end of the last segment present, when last listed
  uint64_t known_ = 0;
  uint64_t records_ = 0;
  uint64_t ts_ = 0;
  std::string buf_;
  std::vector<Op> ops_;
  Status status_;
};

// The end of the last segment present (no record reaches past it); 0 when
// there is none.
uint64_t segments_end(LogFiles& files);

// kCorrupt for the record at `at` that fails its checks while the log is
// known to have been on disk up to `mark` (damage, not a torn tail).
Error damaged_log(const LogFiles& files, uint64_t at, uint64_t mark);

}  // namespace stoa::log

#endif  // STOA_LOG_READER_H_
