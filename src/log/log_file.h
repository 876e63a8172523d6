// log/log_file.h — the log's segment files, as one stream of bytes.
//
// LSN x lives in segment file `<dir>/<hex of x - x % segment_size>.log` at
// offset x % segment_size; reads and writes that cross a segment boundary
// are split. Each process keeps its own descriptors (opened lazily). Every
// operation goes through the Env, so tests can fail or tear it.
//
// Thread safety: all methods are thread-safe (the descriptor table has a
// process-local mutex; the files themselves are shared by LSN ownership:
// a byte range is written only by whoever reserved it).
#ifndef STOA_LOG_LOG_FILE_H_
#define STOA_LOG_LOG_FILE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "stoa/env.h"
#include "stoa/result.h"
#include "util/mutex.h"

namespace stoa::log {

class LogFiles {
 public:
  LogFiles(Env* env, std::string dir, uint64_t segment_size);
  ~LogFiles();
  LogFiles(const LogFiles&) = delete;
  LogFiles& operator=(const LogFiles&) = delete;

  const std::string& dir() const { return dir_; }
  uint64_t segment_size() const { return seg_; }
  std::string segment_path(uint64_t index) const;
  // The segment index a file name stands for, or -1 if it is not one.
  static int64_t parse_segment(const std::string& name, uint64_t segment_size);

  // Creates (allocates, zero-filled) every segment from `from` up to the one
  // holding byte end-1, then syncs the directory. Errors: kFull (ENOSPC), kIo.
  Status create_segments(uint64_t from, uint64_t end);
  Status write(uint64_t lsn, const void* data, uint64_t len);
  // Reads [lsn, lsn+len). kNotFound when a segment is missing, kCorrupt when
  // a segment is shorter than it should be.
  Status read(uint64_t lsn, void* data, uint64_t len);
  // fdatasync of every segment holding a byte of [from, to).
  Status sync(uint64_t from, uint64_t to);
  // Zeroes [lsn, end of its segment), removes every later segment, syncs.
  Status cut_after(uint64_t lsn);
  // Removes every segment that ends at or before `lsn`, syncs the directory.
  Status remove_before(uint64_t lsn);
  // Indices of the segments present, ascending.
  Result<std::vector<uint64_t>> list();
  // Drops every cached descriptor (after fork, or before files change under us).
  void forget();
  void close_all();

 private:
  Result<int> fd(uint64_t index, bool create);
  void drop_fd(uint64_t index);  // before its file is removed
  // Calls fn(fd, offset into the caller's bytes, length, file offset, path)
  // for each segment piece of [lsn, lsn+len).
  template <typename Fn>
  Status each_piece(uint64_t lsn, uint64_t len, Fn fn);

  Env* env_;
  std::string dir_;
  uint64_t seg_;
  util::Mutex mu_;
  std::map<uint64_t, int> fds_ GUARDED_BY(mu_);
};

}  // namespace stoa::log

#endif  // STOA_LOG_LOG_FILE_H_
