// index_checksum_test — a byte changed in a live index block is never served
// (guarantee 5, docs/guarantees.md; the checksums of src/index/layout.h).
//
// A template store holds keys of 1..40 bytes (many sharing their first 8
// bytes, so comparisons take the byte path), values of 0..300 bytes and some
// over 2 KiB (blob values), deleted keys (tombstones) and keys with two
// versions (an older one kept by a reader while they were overwritten). It
// is closed cleanly, and its stoa.sum removed, so the data file is trusted as
// it would be after a crash on this boot: only the index's own checks stand
// between a changed byte and a reader.
//
// Each trial (STOA_INDEX_FLIP_TRIALS, default 300; seed STOA_TEST_SEED or
// random, printed) copies the template, XORs one byte chosen at random
// among the bytes of live index blocks of one kind, the kinds drawn evenly
// (a node's header and used entries, a key record with its key, a version
// with its inline value, a blob value),
// opens the store and reads every key: get() of each, a scan forward and
// backward, and scans from 17 keys (a seek), with
// TxnOptions::check_large_values. A get must return the
// right value (or kNotFound for a deleted key) or kCorrupt; a scan must
// return a prefix of the right sequence, then end in kCorrupt or at the
// true end. Never a wrong value, a missing key or a resurrected one. A
// trial whose reads met damage must also have verify() name a problem.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "api/access.h"
#include "index/btree.h"
#include "index/layout.h"
#include "store/store_impl.h"
#include "test_util.h"

namespace stoa {
namespace {

namespace fs = std::filesystem;
using test::err;
using test::TempDir;

// The expected contents: a value, or nullopt for a deleted key.
using Expect = std::map<std::string, std::optional<std::string>>;

Options store_options() {
  Options o;
  o.durability = Durability::kNone;
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  o.checkpoint_log_bytes = 0;
  o.initial_size = 4 << 20;
  o.grow_chunk = 1 << 20;
  return o;
}

std::string make_key(std::mt19937_64& rng, int i) {
  switch (i % 4) {
    case 0:
      return fmt::format("user/{:05d}", i);  // a shared 8-byte prefix
    case 1:
      return fmt::format("user/profile/{:05d}/settings/{}", i, rng() % 1000);
    case 2:
      return std::string(1, char('a' + i % 26)) + std::to_string(i);
    default: {
      std::string k(1 + rng() % 12, '\0');
      for (char& c : k) c = char(rng());
      k[0] = char('0' + i % 10);  // never empty, never a duplicate of the others' prefixes
      return k + fmt::format("#{}", i);
    }
  }
}

std::string make_value(std::mt19937_64& rng, int i) {
  const size_t n = i % 37 == 0 ? 2100 + rng() % 6000 : rng() % 300;
  std::string v(n, '\0');
  for (char& c : v) c = char('A' + rng() % 50);
  return v;
}

// [offset, length) of a live byte range in the data file.
enum Block { kNode, kRecord, kVersion, kBlob, kBlocks };
const char* const kBlockName[kBlocks] = {"node", "key record", "version", "blob value"};
struct Range {
  uint64_t off;
  uint64_t len;
  Block block;
};

// Every byte range of a live index block, by a walk from the root.
std::vector<Range> live_ranges(Store& store) {
  auto* impl = internal::impl_of(store);
  region::Region& r = impl->region();
  index::Btree& tree = impl->txns().tree();
  std::vector<Range> out;
  std::vector<uint64_t> stack{tree.header()->root.load()};
  while (!stack.empty()) {
    const uint64_t n = stack.back();
    stack.pop_back();
    const auto* node = reinterpret_cast<const index::Node*>(r.ro(n));
    const uint64_t c = node->count;
    const bool leaf = node->kind == uint16_t(index::NodeKind::kLeaf);
    out.push_back({n, offsetof(index::Node, prefix), kNode});  // kind, count, level, check, sum
    out.push_back(
        {n + offsetof(index::Node, prefix) + (leaf ? 0 : 8), 8 * (leaf ? c : c - 1), kNode});
    out.push_back({n + offsetof(index::Node, ptr), 8 * c, kNode});
    if (!leaf) {
      out.push_back({n + offsetof(index::Node, sep) + 8, 8 * (c - 1), kNode});
      for (uint64_t i = 0; i < c; i++) stack.push_back(node->ptr[i].load() & ~index::kFrozen);
      continue;
    }
    for (uint64_t i = 0; i < c; i++) {
      const uint64_t rec = node->ptr[i].load();
      const auto* k = reinterpret_cast<const index::KeyRecord*>(r.ro(rec));
      out.push_back({rec, sizeof(index::KeyRecord) + k->key_len, kRecord});
      for (uint64_t v = k->head.load(); v != 0;) {
        const auto* ver = reinterpret_cast<const index::Version*>(r.ro(v));
        const uint64_t len = ver->len & ~index::kTombstone;
        out.push_back({v, sizeof(index::Version) + (ver->blob == 0 ? len : 0), kVersion});
        if (ver->blob != 0) out.push_back({ver->blob, len, kBlob});
        v = ver->next.load();
      }
    }
  }
  return out;
}

class IndexChecksum : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    seed_ = test::test_seed();
    dir_ = new TempDir("idxsum-tmpl");
    expect_ = new Expect;
    ranges_ = new std::vector<Range>;
    std::mt19937_64 rng(seed_);
    auto opened = Store::open(dir_->sub("store"), store_options());
    ASSERT_TRUE(opened.ok()) << err(opened);
    Store& store = **opened;
    auto s = store.session();
    ASSERT_TRUE(s.ok()) << err(s);
    std::vector<std::string> keys;
    for (int i = 0; i < 4000; i++) keys.push_back(make_key(rng, i));
    for (size_t i = 0; i < keys.size(); i += 400) {
      ASSERT_TRUE(s->transact([&](Txn& t) -> Status {
                     for (size_t j = i; j < i + 400 && j < keys.size(); j++) {
                       std::string v = make_value(rng, int(j));
                       STOA_TRY(t.put(keys[j], v));
                       (*expect_)[keys[j]] = v;
                     }
                     return {};
                   }).ok());
    }
    // Overwrites while a reader holds the old versions (two-version chains),
    // then deletes.
    auto reader_session = store.session();
    ASSERT_TRUE(reader_session.ok()) << err(reader_session);
    auto reader = reader_session->begin(TxnOptions{.read_only = true});
    ASSERT_TRUE(reader.ok()) << err(reader);
    ASSERT_TRUE(reader->get(keys[0]).ok());
    ASSERT_TRUE(s->transact([&](Txn& t) -> Status {
                   for (size_t j = 0; j < keys.size(); j += 7) {
                     std::string v = make_value(rng, int(j) + 1);
                     STOA_TRY(t.put(keys[j], v));
                     (*expect_)[keys[j]] = v;
                   }
                   for (size_t j = 3; j < keys.size(); j += 11) {
                     STOA_TRY(t.del(keys[j]));
                     (*expect_)[keys[j]] = std::nullopt;
                   }
                   return {};
                 }).ok());
    *ranges_ = live_ranges(store);
    for (const Range& g : *ranges_) total_[g.block] += g.len;
    auto v = store.verify();
    ASSERT_TRUE(v.ok() && v->sound()) << "the template store is not sound";
  }
  static void TearDownTestSuite() {
    delete ranges_;
    delete expect_;
    delete dir_;
  }

  // A live byte of a block of kind `b`, at random: the kinds are drawn
  // evenly, so the few node bytes get their share of trials.
  // *range: the start of the range it lies in.
  static uint64_t random_live_byte(Block b, std::mt19937_64& rng, uint64_t* range) {
    uint64_t i = rng() % total_[b];
    for (const Range& g : *ranges_) {
      if (g.block != b) continue;
      *range = g.off;
      if (i < g.len) return g.off + i;
      i -= g.len;
    }
    return UINT64_MAX;
  }

  static uint64_t seed_;
  static TempDir* dir_;
  static Expect* expect_;
  static std::vector<Range>* ranges_;
  static uint64_t total_[kBlocks];
  TempDir work_{"idxsum"};
};
uint64_t IndexChecksum::seed_ = 0;
TempDir* IndexChecksum::dir_ = nullptr;
Expect* IndexChecksum::expect_ = nullptr;
std::vector<Range>* IndexChecksum::ranges_ = nullptr;
uint64_t IndexChecksum::total_[kBlocks] = {};

struct Tally {
  uint64_t trials = 0, clean = 0, detected = 0, open_refused = 0;
  uint64_t clean_in[kBlocks] = {}, detected_in[kBlocks] = {};
};

// Reads every key of `store` by get() and by scans both ways; false (with
// a test failure naming it) on a wrong answer. *met_damage: a read said
// kCorrupt.
void read_everything(Store& store, const Expect& expect, bool* met_damage) {
  auto s = store.session();
  ASSERT_TRUE(s.ok()) << err(s);
  TxnOptions o{.read_only = true};
  o.check_large_values = true;
  for (const auto& [key, value] : expect) {
    auto t = s->begin(o);
    ASSERT_TRUE(t.ok()) << err(t);
    auto got = t->get(key);
    if (!got.ok() && got.code() == Code::kCorrupt) {
      // Damage met by a session writes its flight recorder (guarantee 5.6).
      ASSERT_NE(got.error().message().find("flight recorder written to"), std::string::npos)
          << err(got);
      *met_damage = true;
      continue;
    }
    if (!value) {
      ASSERT_EQ(got.code(), Code::kNotFound)
          << "deleted key " << test::hex(key) << " reads as " << (got.ok() ? "present" : err(got));
      continue;
    }
    ASSERT_TRUE(got.ok()) << "key " << test::hex(key) << ": " << err(got);
    const std::string v = got->copy();
    ASSERT_TRUE(v == *value) << "key " << test::hex(key) << " read a wrong value: " << test::hex(v)
                             << " (" << v.size() << " bytes) instead of " << test::hex(*value)
                             << " (" << value->size() << " bytes)";
  }
  std::vector<std::pair<std::string, std::string>> want;
  for (const auto& [key, value] : expect) {
    if (value) want.emplace_back(key, *value);
  }
  // Scans that seek (their descent compares separators): each starts at
  // its key or reports the damage.
  for (size_t i = 0; i < want.size(); i += want.size() / 16 + 1) {
    auto t = s->begin(o);
    ASSERT_TRUE(t.ok()) << err(t);
    auto c = t->scan(want[i].first, "");
    if (!c.ok() || !c->status().ok()) {
      const Code code = c.ok() ? c->status().code() : c.code();
      ASSERT_EQ(code, Code::kCorrupt);
      *met_damage = true;
      continue;
    }
    ASSERT_TRUE(c->valid()) << "a scan from " << test::hex(want[i].first) << " found nothing";
    ASSERT_EQ(test::hex(c->key()), test::hex(want[i].first)) << "a scan started elsewhere";
    ASSERT_TRUE(c->value().copy() == want[i].second) << "a scan read a wrong value";
  }
  for (ScanOrder order : {ScanOrder::kForward, ScanOrder::kReverse}) {
    auto t = s->begin(o);
    ASSERT_TRUE(t.ok()) << err(t);
    auto c = t->scan("", "", order);
    if (!c.ok()) {
      ASSERT_EQ(c.code(), Code::kCorrupt) << err(c);
      *met_damage = true;
      continue;
    }
    size_t n = 0;
    for (; c->valid(); (void)c->next(), n++) {
      ASSERT_LT(n, want.size()) << "the scan returned more keys than there are";
      const auto& [key, value] = order == ScanOrder::kForward ? want[n] : want[want.size() - 1 - n];
      ASSERT_EQ(test::hex(c->key()), test::hex(key)) << "scan " << int(order) << " at " << n;
      ASSERT_TRUE(c->value().copy() == value)
          << "scan of key " << test::hex(key) << " read a wrong value";
    }
    if (c->status().ok()) {
      ASSERT_EQ(n, want.size()) << "the scan ended early without an error";
    } else {
      ASSERT_EQ(c->status().code(), Code::kCorrupt) << c->status().error().to_string();
      *met_damage = true;
    }
  }
}

TEST_F(IndexChecksum, FlippedLiveIndexBytesAreNeverServed) {
  for (int b = 0; b < kBlocks; b++) ASSERT_GT(total_[b], 0u) << "template not built";
  const char* e = std::getenv("STOA_INDEX_FLIP_TRIALS");
  const uint64_t trials = e != nullptr ? std::strtoull(e, nullptr, 10) : test::scaled(300);
  std::printf(
      "%zu keys, %zu live ranges (bytes: %llu in nodes, %llu in key records, %llu in "
      "versions, %llu in blob values); %llu trials (STOA_INDEX_FLIP_TRIALS)\n",
      expect_->size(), ranges_->size(), (unsigned long long)total_[kNode],
      (unsigned long long)total_[kRecord], (unsigned long long)total_[kVersion],
      (unsigned long long)total_[kBlob], (unsigned long long)trials);
  std::mt19937_64 rng(seed_ ^ 0x666c6970ull);
  Tally tally;
  const std::string path = work_.sub("store");
  for (uint64_t i = 0; i < trials; i++) {
    const Block block = Block(rng() % kBlocks);
    uint64_t range = 0;
    const uint64_t off = random_live_byte(block, rng, &range);
    const uint8_t mask = uint8_t(1u << (rng() % 8)) | (rng() % 4 == 0 ? uint8_t(rng()) : 0);
    SCOPED_TRACE(
        fmt::format("trial {}: byte at offset {} ({}: {} bytes into a range at {}) "
                    "^= {:#04x} ({})",
                    i, off, kBlockName[block], off - range, range, mask, test::seed_note(seed_)));
    std::error_code ec;
    fs::remove_all(path, ec);
    fs::copy(dir_->sub("store"), path, fs::copy_options::recursive, ec);
    ASSERT_FALSE(ec) << ec.message();
    fs::remove(path + "/stoa.sum", ec);
    {
      const int fd = ::open((path + "/stoa.data").c_str(), O_RDWR);
      ASSERT_GE(fd, 0);
      uint8_t b = 0;
      ASSERT_EQ(::pread(fd, &b, 1, off_t(off)), 1);
      b ^= mask;
      ASSERT_EQ(::pwrite(fd, &b, 1, off_t(off)), 1);
      ::close(fd);
    }
    tally.trials++;
    auto opened = Store::open(path, store_options());
    if (!opened.ok()) {
      ASSERT_EQ(opened.code(), Code::kCorrupt) << err(opened);
      tally.open_refused++;
      continue;
    }
    bool met = false;
    read_everything(**opened, *expect_, &met);
    if (HasFatalFailure()) return;
    if (!met) {
      tally.clean++;
      tally.clean_in[block]++;
      continue;
    }
    tally.detected++;
    tally.detected_in[block]++;
    auto v = (*opened)->verify();
    ASSERT_TRUE(v.ok()) << err(v);
    EXPECT_FALSE(v->sound()) << "reads met damage that verify does not name";
  }
  std::printf(
      "%llu trials: %llu detected by reads, %llu refused at open, %llu read clean "
      "(the byte is not read by a lookup: a lock word, an older version's link)\n",
      (unsigned long long)tally.trials, (unsigned long long)tally.detected,
      (unsigned long long)tally.open_refused, (unsigned long long)tally.clean);
  for (int b = 0; b < kBlocks; b++) {
    std::printf("  %-10s %llu detected, %llu read clean\n", kBlockName[b],
                (unsigned long long)tally.detected_in[b], (unsigned long long)tally.clean_in[b]);
  }
  // A run where reads met little or no damage would mean the checks are
  // off. About half the flipped bytes are never read by a lookup (node
  // slack, lock words, older links: see the tally), so the bound is a
  // third: detection runs at 49-57% of 300 trials (sd ~9 trials), and
  // trials / 2 failed one run in ~30 (148 of 300, seed 17278470168003883288).
  EXPECT_GT(tally.detected, tally.trials / 3);
}

}  // namespace
}  // namespace stoa
