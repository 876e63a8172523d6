// The log reader (log/reader.cc) over segment files written the way the
// log writes them: records come back in order with their timestamps and
// ops, padding is skipped, a reader at the end picks up records appended
// later (across segment rollover), a torn tail is a clean end, and damage
// below a durable mark or a record of an unknown kind is kCorrupt.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "log/log_file.h"
#include "log/log_test_util.h"
#include "log/reader.h"
#include "stoa/env.h"

namespace stoa::log {
namespace {

using testing::Appender;
using testing::ScratchDir;

constexpr uint64_t kSeg = 4096;

std::vector<Op> ops_of(int i, std::string* keep) {
  *keep = "key-" + std::to_string(i);
  if (i % 3 == 2) return {Op{*keep, "", OpKind::kDelete}};
  return {
      Op{*keep, std::string_view("value-of-some-length").substr(0, size_t(i % 20)), OpKind::kPut},
      Op{"z", "last", OpKind::kPut}};
}

// Reads one record and checks it is record `i` at `ts`.
void expect_record(LogReader& rd, int i, uint64_t ts) {
  ASSERT_TRUE(rd.next()) << "record " << i << ": " << rd.status().ok();
  EXPECT_EQ(rd.ts(), ts) << i;
  std::string key;
  const std::vector<Op> want = ops_of(i, &key);
  ASSERT_EQ(rd.ops().size(), want.size()) << i;
  for (size_t k = 0; k < want.size(); k++) {
    EXPECT_EQ(rd.ops()[k].key, want[k].key);
    EXPECT_EQ(rd.ops()[k].kind, want[k].kind);
    EXPECT_EQ(rd.ops()[k].value, want[k].value);
  }
}

struct Log {
  explicit Log(const std::string& tag)
      : dir(tag), files(Env::posix(), dir.path(), kSeg), w(&files) {}
  uint64_t commit(int i) {
    std::string key;
    return w.commit(ops_of(i, &key));
  }
  ScratchDir dir;
  LogFiles files;
  Appender w;
};

TEST(LogReader, ReadsBackEveryRecordInOrderSkippingPadding) {
  Log log("reader-order");
  std::vector<uint64_t> ts;
  for (int i = 0; i < 20; i++) {
    ts.push_back(log.commit(i));
    if (i == 7) log.w.padding(64);
  }
  LogReader rd(&log.files, 0);
  for (int i = 0; i < 20; i++) expect_record(rd, i, ts[size_t(i)]);
  EXPECT_FALSE(rd.next());
  EXPECT_TRUE(rd.status().ok());
  EXPECT_EQ(rd.position(), log.w.tail());
  EXPECT_EQ(rd.records(), 20u);
  // From a commit timestamp: the records after it.
  LogReader from(&log.files, ts[9]);
  expect_record(from, 10, ts[10]);
}

TEST(LogReader, TailsRecordsAppendedAcrossSegmentRollover) {
  Log log("reader-tail");
  LogReader rd(&log.files, 0);
  EXPECT_FALSE(rd.next());  // no segment yet: nothing, and no error
  EXPECT_TRUE(rd.status().ok());
  int i = 0;
  uint64_t ts = log.commit(i);
  expect_record(rd, i, ts);
  // Keep appending until the log has rolled over into a fourth segment;
  // the reader sees each record as soon as it is written.
  while (log.w.tail() < 3 * kSeg + 100) {
    EXPECT_FALSE(rd.next());
    ASSERT_TRUE(rd.status().ok());
    ts = log.commit(++i);
    expect_record(rd, i, ts);
  }
  auto segs = log.files.list();
  ASSERT_TRUE(segs.ok());
  EXPECT_EQ(segs->size(), 4u);
  // `upto` holds back a record past it (a tailer bounded by visibility).
  const uint64_t at = rd.position();
  ts = log.commit(++i);
  EXPECT_FALSE(rd.next(ts - 1));
  EXPECT_TRUE(rd.status().ok());
  EXPECT_EQ(rd.position(), at);
  expect_record(rd, i, ts);
}

TEST(LogReader, TornTailIsACleanEnd) {
  Log log("reader-torn");
  uint64_t ts0 = log.commit(0), ts1 = log.commit(1);
  std::string key;
  const std::string rec = testing::encode(log.w.tail(), log.w.tail(), ops_of(4, &key));
  log.w.put(rec.substr(0, rec.size() - 8));  // the last write stopped short
  LogReader rd(&log.files, 0);
  expect_record(rd, 0, ts0);
  expect_record(rd, 1, ts1);
  EXPECT_FALSE(rd.next());
  EXPECT_TRUE(rd.status().ok()) << rd.status().error().message();
  EXPECT_EQ(rd.position(), ts1);
  EXPECT_EQ(rd.records(), 2u);
}

TEST(LogReader, FlippedByteBelowTheDurableMarkIsCorrupt) {
  Log log("reader-flip");
  std::vector<uint64_t> ts;
  for (int i = 0; i < 6; i++) ts.push_back(log.commit(i));
  // Flip one byte inside record 3's body.
  char c;
  ASSERT_TRUE(log.files.read(ts[2] + 60, &c, 1).ok());
  c ^= 0x40;
  ASSERT_TRUE(log.files.write(ts[2] + 60, &c, 1).ok());
  {
    LogReader rd(&log.files, 0);
    rd.set_known_synced(ts[5]);  // e.g. a checkpoint or clean-shutdown mark
    for (int i = 0; i < 3; i++) expect_record(rd, i, ts[size_t(i)]);
    EXPECT_FALSE(rd.next());
    ASSERT_FALSE(rd.status().ok());
    EXPECT_EQ(rd.status().code(), Code::kCorrupt);
    const std::string msg = rd.status().error().message();
    EXPECT_NE(msg.find(log.files.segment_path(0)), std::string::npos) << msg;
    EXPECT_NE(msg.find("offset " + std::to_string(ts[2])), std::string::npos) << msg;
    EXPECT_NE(msg.find("not a torn tail"), std::string::npos) << msg;
    EXPECT_FALSE(rd.next());  // sticky
  }
  // With no mark past it, the same bytes are where the written log ends.
  LogReader rd(&log.files, 0);
  for (int i = 0; i < 3; i++) expect_record(rd, i, ts[size_t(i)]);
  EXPECT_FALSE(rd.next());
  EXPECT_TRUE(rd.status().ok());
  EXPECT_EQ(rd.position(), ts[2]);
}

TEST(LogReader, UnknownKindIsCorruptEvenAtTheTail) {
  Log log("reader-kind");
  const uint64_t ts0 = log.commit(0);
  const uint64_t at = log.w.tail();
  log.w.commit({Op{"k", "v", OpKind(kOpKindCount)}});
  LogReader rd(&log.files, 0);
  expect_record(rd, 0, ts0);
  EXPECT_FALSE(rd.next());
  ASSERT_FALSE(rd.status().ok());
  EXPECT_EQ(rd.status().code(), Code::kCorrupt);
  const std::string msg = rd.status().error().message();
  EXPECT_NE(msg.find(log.files.segment_path(0) + ": offset " + std::to_string(at)),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("log record at " + std::to_string(at)), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown kind"), std::string::npos) << msg;
}

}  // namespace
}  // namespace stoa::log
