// log/checkpoint.h — checkpoint files: writing one from a snapshot, reading
// one back block by block (layout.h has the bytes, checkpoint.cc the essay).
//
// Thread safety: a CheckpointReader belongs to one thread, and so does a
// SnapshotSource (its implementation may say more); the functions are
// thread-safe.
#ifndef STOA_LOG_CHECKPOINT_H_
#define STOA_LOG_CHECKPOINT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "log/layout.h"
#include "log/record.h"
#include "region/layout.h"
#include "stoa/env.h"
#include "stoa/result.h"

namespace stoa::internal {

std::string checkpoint_name(uint64_t ts);
// The timestamp a checkpoint file name stands for, if it is one.
std::optional<uint64_t> parse_checkpoint_name(const std::string& name);
// The newest complete checkpoint file in `dir` (by name; its contents are
// checked when read), if any.
Result<std::optional<std::string>> newest_checkpoint(Env* env, const std::string& dir);

// What a checkpoint is written from: a snapshot of the store, implemented
// above the log (the store folder, over the txn layer) and passed in.
// Destroying the source drops the snapshot.
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  // Takes the snapshot (held until the source is destroyed): its timestamp.
  virtual uint64_t take() = 0;
  // Calls `entry` for every key visible at the snapshot with its value, in
  // key order (the views are valid during the call), in chunks; after each
  // chunk, with nothing pinned, `chunk_done(last)`. Errors: kCorrupt when
  // the data fails its checks (naming it), or what chunk_done returned.
  virtual Status scan(
      const std::function<void(std::string_view key, std::string_view value)>& entry,
      const std::function<Status(bool last)>& chunk_done) = 0;
};

struct SnapshotFile {
  uint64_t ts = 0;
  uint64_t bytes = 0;
  uint64_t keys = 0;
  std::string path;
};
// Writes every key of the snapshot `src` takes here into
// `dir`/ckpt-<ts>.stoa: under a temporary name, synced, renamed, directory
// synced. `file` and `segment_size` are the parameters of the store it
// comes from (in the header). `before_write`, when set, runs once the
// snapshot is taken (the log syncs up to it there).
Result<SnapshotFile> write_snapshot(SnapshotSource& src, const region::FileHeader& file,
                                    uint64_t segment_size, Env* env, const std::string& dir,
                                    const std::function<Status(uint64_t ts)>& before_write);

class CheckpointReader {
 public:
  // Opens and checks the header. kCorrupt names the file and offset.
  static Result<std::unique_ptr<CheckpointReader>> open(Env* env, const std::string& path);
  ~CheckpointReader();
  const log::CheckpointHeader& header() const { return hdr_; }
  // The next block's entries (views into this reader, valid until the next
  // call); false after the last block, once the footer checked out.
  Result<bool> next(std::vector<log::Op>* entries);
  uint64_t keys() const { return keys_; }
  uint64_t file_bytes() const { return size_; }

 private:
  CheckpointReader() = default;
  Error corrupt(uint64_t at, const std::string& what) const;
  Env* env_ = nullptr;
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t at_ = 0;
  uint64_t blocks_ = 0;
  uint64_t keys_ = 0;
  bool done_ = false;
  log::CheckpointHeader hdr_{};
  std::string buf_;
};

}  // namespace stoa::internal

#endif  // STOA_LOG_CHECKPOINT_H_
