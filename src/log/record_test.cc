// The log record codec (log/record.cc) and the apply registry (log/apply.cc):
// every kind round-trips; every truncation, a flipped byte anywhere and an
// unknown kind are refused with kCorrupt naming the record; replay reaches
// the applier registered for each kind and refuses a kind with none.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "log/apply.h"
#include "log/log_test_util.h"
#include "log/record.h"

namespace stoa::log {
namespace {

using testing::encode;

constexpr uint64_t kLsn = 8192;

// One op of every kind this build knows (and a put with an empty value).
std::vector<Op> every_kind() {
  static const std::string kLong(1000, 'v');
  std::vector<Op> ops;
  for (uint32_t k = 0; k < kOpKindCount; k++) {
    const OpKind kind = OpKind(k);
    const std::string_view value = has_value(kind) ? std::string_view(kLong) : "";
    ops.push_back(Op{k == 0 ? "key-a" : "key-b", value, kind});
  }
  ops.push_back(Op{"key-empty", "", OpKind::kPut});
  return ops;
}

void expect_same(const std::vector<Op>& a, const std::vector<Op>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); i++) {
    EXPECT_EQ(a[i].key, b[i].key) << i;
    EXPECT_EQ(a[i].kind, b[i].kind) << i;
    EXPECT_EQ(a[i].value, b[i].value) << i;
  }
}

TEST(LogRecord, EveryKindRoundTrips) {
  const std::vector<Op> ops = every_kind();
  const std::string rec = encode(kLsn, kLsn - 64, ops);
  ASSERT_EQ(rec.size(), commit_size(ops));
  ASSERT_EQ(rec.size() % 8, 0u);
  RecordHeader h;
  std::memcpy(&h, rec.data(), sizeof(h));
  EXPECT_TRUE(header_ok(h, kLsn, rec.size()));
  EXPECT_EQ(h.count, ops.size());
  EXPECT_TRUE(commit_sum_ok(rec.data(), rec.size()));
  std::vector<Op> back;
  ASSERT_TRUE(decode_commit(rec.data(), rec.size(), kLsn, &back).ok());
  expect_same(ops, back);
  // Put and delete keep the bytes they had before kinds: kind 0 and 1 in
  // the word that held the delete flag.
  OpHeader o;
  std::memcpy(&o, rec.data() + sizeof(RecordHeader), sizeof(o));
  EXPECT_EQ(o.kind, 0u);
  std::memcpy(&o, rec.data() + sizeof(RecordHeader) + sizeof(o) + 5 + 1000, sizeof(o));
  EXPECT_EQ(o.kind, 1u);
  EXPECT_EQ(o.val_len, 0u);
}

TEST(LogRecord, EveryTruncationIsCorrupt) {
  const std::string rec = encode(kLsn, 0, every_kind());
  std::vector<Op> ops;
  for (size_t n = 0; n < rec.size(); n++) {
    Status st = decode_commit(rec.data(), n, kLsn, &ops);
    ASSERT_FALSE(st.ok()) << n;
    EXPECT_EQ(st.code(), Code::kCorrupt) << n;
    EXPECT_NE(st.error().message().find(std::to_string(kLsn)), std::string::npos) << n;
  }
}

TEST(LogRecord, FlippedByteInAnyFieldIsCorrupt) {
  const std::string rec = encode(kLsn, 0, every_kind());
  std::vector<Op> ops;
  for (size_t i = 0; i < rec.size(); i++) {
    std::string bad = rec;
    bad[i] ^= 0x10;
    Status st = decode_commit(bad.data(), bad.size(), kLsn, &ops);
    ASSERT_FALSE(st.ok()) << "byte " << i;
    EXPECT_EQ(st.code(), Code::kCorrupt) << "byte " << i;
  }
  // At another position it is not this record.
  EXPECT_EQ(decode_commit(rec.data(), rec.size(), kLsn + 8, &ops).code(), Code::kCorrupt);
}

TEST(LogRecord, UnknownKindIsCorruptNamingTheRecord) {
  for (uint32_t k : {kOpKindCount, kOpKindCount + 1, 0xffffffffu}) {
    // A well-formed record (its checksum matches) of a kind no one knows.
    const std::string rec = encode(kLsn, 0, {Op{"a", "1", OpKind::kPut}, Op{"b", "2", OpKind(k)}});
    EXPECT_TRUE(commit_sum_ok(rec.data(), rec.size()));
    std::vector<Op> ops;
    Status st = decode_commit(rec.data(), rec.size(), kLsn, &ops);
    ASSERT_FALSE(st.ok()) << k;
    EXPECT_EQ(st.code(), Code::kCorrupt);
    EXPECT_NE(st.error().message().find("log record at 8192"), std::string::npos)
        << st.error().message();
    EXPECT_NE(st.error().message().find("unknown kind " + std::to_string(k)), std::string::npos)
        << st.error().message();
  }
}

TEST(LogRecord, PaddingChecksOut) {
  RecordHeader h = padding(kLsn, 4096, kLsn);
  EXPECT_TRUE(header_ok(h, kLsn, 4096));
  EXPECT_FALSE(header_ok(h, kLsn + 8, 4096));
  EXPECT_FALSE(header_ok(h, kLsn, 4095));  // longer than what is left
  h.synced ^= 1;
  EXPECT_FALSE(header_ok(h, kLsn, 4096));  // checksum
  std::vector<Op> ops;
  const RecordHeader p = padding(kLsn, sizeof(RecordHeader), 0);
  EXPECT_EQ(decode_commit(reinterpret_cast<const char*>(&p), sizeof(p), kLsn, &ops).code(),
            Code::kCorrupt);  // not a commit
}

// Records what it was given.
class Recorder final : public OpApplier {
 public:
  Status apply(uint64_t ts, const std::vector<Op>& ops) override {
    for (const Op& op : ops) seen.push_back(std::to_string(ts) + ":" + std::string(op.key));
    calls++;
    return {};
  }
  std::vector<std::string> seen;
  int calls = 0;
};

TEST(ApplyRegistry, EachKindReachesItsApplierOncePerCommit) {
  Recorder kv, other;
  ApplyRegistry reg;
  reg.add(OpKind::kPut, &kv);
  reg.add(OpKind::kDelete, &kv);
  const std::vector<Op> ops{{"a", "1", OpKind::kPut}, {"b", "", OpKind::kDelete}};
  ASSERT_TRUE(reg.apply(7, ops).ok());
  EXPECT_EQ(kv.calls, 1);
  EXPECT_EQ(kv.seen, (std::vector<std::string>{"7:a", "7:b"}));
  // Another layer takes over deletes: each applier once, ops in log order.
  reg.add(OpKind::kDelete, &other);
  const std::vector<Op> mixed{
      {"c", "", OpKind::kDelete}, {"d", "4", OpKind::kPut}, {"e", "", OpKind::kDelete}};
  ASSERT_TRUE(reg.apply(9, mixed).ok());
  EXPECT_EQ(other.seen, (std::vector<std::string>{"9:c", "9:e"}));
  EXPECT_EQ(kv.seen.back(), "9:d");
  EXPECT_EQ(kv.calls, 2);
  EXPECT_EQ(other.calls, 1);
}

TEST(ApplyRegistry, UnregisteredKindIsCorruptAndNothingIsApplied) {
  Recorder kv;
  ApplyRegistry reg;
  reg.add(OpKind::kPut, &kv);
  Status st = reg.apply(11, {{"a", "1", OpKind::kPut}, {"b", "", OpKind::kDelete}});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.error().message().find("delete"), std::string::npos) << st.error().message();
  EXPECT_NE(st.error().message().find("commit 11"), std::string::npos) << st.error().message();
  EXPECT_EQ(kv.calls, 0);
  st = reg.apply(12, {{"x", "", OpKind(kOpKindCount + 3)}});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("kind " + std::to_string(kOpKindCount + 3)),
            std::string::npos);
}

}  // namespace
}  // namespace stoa::log
