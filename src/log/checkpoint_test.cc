// Checkpoint files (log/checkpoint.cc): what write_snapshot writes from a
// snapshot source reads back through CheckpointReader, entry for entry and
// block for block; a damaged block, header or footer and a truncated file
// are refused with kCorrupt naming the file and offset; a source's error
// leaves no checkpoint.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "log/checkpoint.h"
#include "log/log_test_util.h"
#include "stoa/env.h"

namespace stoa::internal {
namespace {

using log::testing::ScratchDir;

// A snapshot of fixed pairs, `chunk` of them per chunk.
class FakeSource final : public SnapshotSource {
 public:
  FakeSource(std::vector<std::pair<std::string, std::string>> pairs, size_t chunk)
      : pairs_(std::move(pairs)), chunk_(chunk) {}
  uint64_t take() override { return ts; }
  Status scan(const std::function<void(std::string_view, std::string_view)>& entry,
              const std::function<Status(bool)>& chunk_done) override {
    for (size_t i = 0; i < pairs_.size();) {
      for (size_t n = 0; n < chunk_ && i < pairs_.size(); n++, i++) {
        if (i == fail_at) return Error(Code::kCorrupt, "damaged index");
        entry(pairs_[i].first, pairs_[i].second);
      }
      STOA_TRY(chunk_done(i == pairs_.size()));
    }
    if (pairs_.empty()) STOA_TRY(chunk_done(true));
    return {};
  }
  uint64_t ts = 123456;
  size_t fail_at = size_t(-1);

 private:
  std::vector<std::pair<std::string, std::string>> pairs_;
  size_t chunk_;
};

std::vector<std::pair<std::string, std::string>> pairs(int n, size_t value_bytes) {
  std::vector<std::pair<std::string, std::string>> v;
  for (int i = 0; i < n; i++) {
    char key[16];
    std::snprintf(key, sizeof(key), "key-%06d", i);
    v.emplace_back(key, std::string(value_bytes + size_t(i % 7), char('a' + i % 26)));
  }
  return v;
}

region::FileHeader file_header() {
  region::FileHeader fh{};
  fh.seed = 0x5eed;
  fh.max_size = uint64_t{1} << 30;
  fh.grow_chunk = uint64_t{4} << 20;
  fh.max_sessions = 64;
  return fh;
}

struct Written {
  SnapshotFile file;
  std::vector<std::pair<std::string, std::string>> pairs;
};

Written write(const std::string& dir, int n, size_t value_bytes) {
  Written w;
  w.pairs = pairs(n, value_bytes);
  FakeSource src(w.pairs, 100);
  uint64_t before = 0;
  auto f = write_snapshot(src, file_header(), 1 << 16, Env::posix(), dir, [&](uint64_t ts) {
    before = ts;
    return Status{};
  });
  EXPECT_TRUE(f.ok()) << (f.ok() ? "" : f.error().message());
  EXPECT_EQ(before, src.ts);
  if (f.ok()) w.file = *f;
  return w;
}

// Reads the whole checkpoint; the first error, if any.
Status read_all(const std::string& path, std::vector<std::pair<std::string, std::string>>* out,
                uint64_t* blocks) {
  STOA_ASSIGN(auto r, CheckpointReader::open(Env::posix(), path));
  std::vector<log::Op> entries;
  for (;;) {
    STOA_ASSIGN(bool more, r->next(&entries));
    if (!more) break;
    (*blocks)++;
    for (const log::Op& e : entries) {
      EXPECT_EQ(e.kind, log::OpKind::kPut);
      out->emplace_back(std::string(e.key), std::string(e.value));
    }
  }
  EXPECT_EQ(r->keys(), out->size());
  return {};
}

void flip(const std::string& path, uint64_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(std::streamoff(at));
  char c = 0;
  f.read(&c, 1);
  c ^= 0x20;
  f.seekp(std::streamoff(at));
  f.write(&c, 1);
}

TEST(Checkpoint, WrittenFromASnapshotReadsBack) {
  ScratchDir dir("ckpt-read");
  // Values of ~9 KiB: about 110 keys to a 1 MiB block, so several blocks.
  Written w = write(dir.path(), 600, 9000);
  EXPECT_EQ(w.file.ts, 123456u);
  EXPECT_EQ(w.file.keys, 600u);
  EXPECT_EQ(w.file.path, dir.path() + "/" + checkpoint_name(123456));
  auto newest = newest_checkpoint(Env::posix(), dir.path());
  ASSERT_TRUE(newest.ok() && newest->has_value());
  EXPECT_EQ(**newest, w.file.path);

  auto r = CheckpointReader::open(Env::posix(), w.file.path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->header().ts, 123456u);
  EXPECT_EQ((*r)->header().seed, 0x5eedu);
  EXPECT_EQ((*r)->header().max_sessions, 64u);
  EXPECT_EQ((*r)->header().segment_size, uint64_t{1} << 16);
  EXPECT_EQ((*r)->file_bytes(), w.file.bytes);

  std::vector<std::pair<std::string, std::string>> back;
  uint64_t blocks = 0;
  ASSERT_TRUE(read_all(w.file.path, &back, &blocks).ok());
  EXPECT_EQ(back, w.pairs);
  EXPECT_GE(blocks, 3u);
}

TEST(Checkpoint, EmptySnapshotReadsBackEmpty) {
  ScratchDir dir("ckpt-empty");
  Written w = write(dir.path(), 0, 0);
  std::vector<std::pair<std::string, std::string>> back;
  uint64_t blocks = 0;
  ASSERT_TRUE(read_all(w.file.path, &back, &blocks).ok());
  EXPECT_TRUE(back.empty());
  EXPECT_EQ(blocks, 0u);
}

TEST(Checkpoint, DamagedBlockHeaderOrFooterIsCorrupt) {
  ScratchDir dir("ckpt-damage");
  Written w = write(dir.path(), 300, 9000);
  const std::string good = w.file.path + ".good";
  std::filesystem::copy_file(w.file.path, good);
  const uint64_t first_block = sizeof(log::CheckpointHeader);
  struct Case {
    const char* what;
    uint64_t at;
    uint64_t named;  // the offset the error must name
  };
  const uint64_t footer = w.file.bytes - sizeof(log::CheckpointFooter);
  const Case cases[] = {
      {"header", 20, offsetof(log::CheckpointHeader, checksum)},
      {"block header", first_block + 4, first_block},
      {"block body", first_block + sizeof(log::CheckpointBlock) + 5000, first_block},
      {"footer", footer + 12, footer},
  };
  for (const Case& c : cases) {
    std::filesystem::copy_file(good, w.file.path,
                               std::filesystem::copy_options::overwrite_existing);
    flip(w.file.path, c.at);
    std::vector<std::pair<std::string, std::string>> back;
    uint64_t blocks = 0;
    Status st = read_all(w.file.path, &back, &blocks);
    ASSERT_FALSE(st.ok()) << c.what;
    EXPECT_EQ(st.code(), Code::kCorrupt) << c.what;
    const std::string want = w.file.path + ": offset " + std::to_string(c.named);
    EXPECT_NE(st.error().message().find(want), std::string::npos)
        << c.what << ": " << st.error().message();
  }
  // Truncated: at every block boundary and inside the footer.
  for (uint64_t size : {footer, footer + 8, first_block + 100}) {
    std::filesystem::copy_file(good, w.file.path,
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(w.file.path, size);
    std::vector<std::pair<std::string, std::string>> back;
    uint64_t blocks = 0;
    Status st = read_all(w.file.path, &back, &blocks);
    ASSERT_FALSE(st.ok()) << size;
    EXPECT_EQ(st.code(), Code::kCorrupt) << size;
  }
}

TEST(Checkpoint, SourceErrorWritesNoCheckpoint) {
  ScratchDir dir("ckpt-fail");
  FakeSource src(pairs(500, 10), 100);
  src.fail_at = 250;
  auto f = write_snapshot(src, file_header(), 1 << 16, Env::posix(), dir.path(), nullptr);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code(), Code::kCorrupt);
  auto newest = newest_checkpoint(Env::posix(), dir.path());
  ASSERT_TRUE(newest.ok());
  EXPECT_FALSE(newest->has_value());
}

}  // namespace
}  // namespace stoa::internal
