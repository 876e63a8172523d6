// iter_corrupt_test — a damaged index node is an error on every path that
// walks the index, never a shorter answer (LevelDB's iterator contract,
// include/stoa/txn.h; the index iterator in src/index/btree.h).
//
// Each test fills a store with enough keys for a three-level tree, damages
// one node in the mapped data file (an inner node below the root: an
// impossible count; a leaf: a wrong kind), and shows that a cursor scan
// (both ways, and a seek), Store::checkpoint(), the commit of a
// serializable transaction that read a range over the node, and
// Store::verify() each report kCorrupt (a problem, for verify) naming the
// node's offset. The damage is undone before the store closes.
//
// Also here: the cursor's seek() and prev() over the index merged with the
// transaction's own writes, against a std::map.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>

#include <fmt/format.h>

#include "api/access.h"
#include "index/btree.h"
#include "index/layout.h"
#include "store/store_impl.h"
#include "test_util.h"

namespace stoa {
namespace {

namespace fs = std::filesystem;
using test::err;

constexpr int kKeys = 20000;
std::string key_of(int i) { return fmt::format("key{:06d}", i); }

enum class Target { kInner, kLeaf };

std::set<std::string> checkpoint_files(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("ckpt-", 0) == 0 && n.size() > 5 && n.substr(n.size() - 5) == ".stoa") {
      out.insert(e.path().string());
    }
  }
  return out;
}

class IterCorrupt : public ::testing::TestWithParam<Target> {
 protected:
  void SetUp() override {
    Options o;
    o.durability = Durability::kNone;
    o.watchdog_interval = std::chrono::milliseconds(0);
    o.log_threads = false;
    o.checkpoint_log_bytes = 0;
    auto st = Store::open(dir_.path(), o);
    ASSERT_TRUE(st.ok()) << err(st);
    store_ = std::move(*st);
    auto s = store_->session();
    ASSERT_TRUE(s.ok()) << err(s);
    for (int i = 0; i < kKeys;) {
      auto t = s->begin();
      ASSERT_TRUE(t.ok()) << err(t);
      for (int n = 0; n < 500 && i < kKeys; n++, i++) {
        ASSERT_TRUE(t->put(key_of(i), fmt::format("value {}", i)).ok());
      }
      ASSERT_TRUE(t->commit().ok());
    }
  }
  void TearDown() override {
    if (node_ != nullptr) {
      node_->kind = saved_kind_;
      node_->count = saved_count_;
    }
    store_.reset();
  }

  region::Region& region() { return stoa::internal::impl_of(*store_)->region(); }
  index::Node* node_at(uint64_t off) { return reinterpret_cast<index::Node*>(region().rw(off)); }

  // Damages a node away from both ends of the key order and from the path
  // of keys past the last one; returns its offset.
  uint64_t damage(Target target) {
    const uint64_t root = stoa::internal::impl_of(*store_)->txns().header()->root.load();
    index::Node* r = node_at(root);
    EXPECT_GE(r->level, 2u) << "the tree needs three levels";
    EXPECT_GE(r->count, 4u) << "the root needs four children";
    uint64_t off = r->ptr[1].load() & ~index::kFrozen;
    if (target == Target::kLeaf) {
      off = r->ptr[2].load() & ~index::kFrozen;
      while (node_at(off)->level > 0) {
        index::Node* n = node_at(off);
        off = n->ptr[n->count / 2].load() & ~index::kFrozen;
      }
    }
    node_ = node_at(off);
    saved_kind_ = node_->kind;
    saved_count_ = node_->count;
    if (target == Target::kInner) {
      EXPECT_GT(node_->level, 0u);
      node_->count = uint16_t(index::kFan + 7);  // an impossible count
    } else {
      EXPECT_EQ(node_->level, 0u);
      node_->kind = 0x7777;  // neither a leaf nor an inner node
    }
    return off;
  }

  static bool names(const Error& e, uint64_t off) {
    return e.message().find(fmt::format("offset {}", off)) != std::string::npos;
  }

  test::TempDir dir_{"iter-corrupt"};
  std::unique_ptr<Store> store_;
  index::Node* node_ = nullptr;
  uint16_t saved_kind_ = 0;
  uint16_t saved_count_ = 0;
};

INSTANTIATE_TEST_SUITE_P(Nodes, IterCorrupt, ::testing::Values(Target::kInner, Target::kLeaf),
                         [](const auto& info) {
                           return info.param == Target::kInner ? "Inner" : "Leaf";
                         });

// Walks the cursor to its end; returns how many keys it gave.
int drain(Cursor& c, Status* st) {
  int n = 0;
  for (; c.valid(); n++) *st = c.next();
  EXPECT_EQ(st->ok(), c.status().ok());
  return n;
}

// Scans the whole store forward, then backward, in a new read-only
// transaction, and hands each direction's cursor, final status and key
// count to `check`.
void scan_both_ways(Store& store, const std::function<void(Cursor&, const Status&, int)>& check) {
  auto s = store.session();
  ASSERT_TRUE(s.ok());
  auto t = s->begin(TxnOptions{.read_only = true});
  ASSERT_TRUE(t.ok());
  for (bool rev : {false, true}) {
    auto c = t->scan("", "", rev ? ScanOrder::kReverse : ScanOrder::kForward);
    ASSERT_TRUE(c.ok()) << err(c);  // the first key lies before the damage
    Status st;
    const int n = drain(*c, &st);
    check(*c, st, n);
  }
}

TEST_P(IterCorrupt, ScanReportsTheDamagedNode) {
  const uint64_t off = damage(GetParam());
  scan_both_ways(*store_, [&](Cursor& c, const Status& st, int n) {
    EXPECT_GT(n, 0);
    EXPECT_LT(n, kKeys);
    ASSERT_FALSE(st.ok()) << "a scan over a damaged node ended after " << n << " keys, ok";
    EXPECT_EQ(st.code(), Code::kCorrupt) << err(st);
    EXPECT_TRUE(names(st.error(), off)) << err(st);
    EXPECT_FALSE(c.valid());
    EXPECT_EQ(c.status().code(), Code::kCorrupt);
    // The error is sticky: a seek back to the start does not clear it.
    EXPECT_EQ(c.seek("").code(), Code::kCorrupt);
    EXPECT_FALSE(c.valid());
  });
  // A seek from a sound position into the damaged part.
  auto s = store_->session();
  ASSERT_TRUE(s.ok());
  auto t = s->begin(TxnOptions{.read_only = true});
  ASSERT_TRUE(t.ok());
  auto c = t->scan("", "");
  ASSERT_TRUE(c.ok()) << err(c);
  ASSERT_TRUE(c->valid());
  Status st;
  for (int i = 0; i < kKeys && st.ok(); i += 7) st = c->seek(key_of(i));
  EXPECT_EQ(st.code(), Code::kCorrupt) << err(st);
  EXPECT_TRUE(!st.ok() && names(st.error(), off)) << err(st);
}

// Swapped entries, with the node's entry sum recomputed (as a writer that
// built the node wrongly would have sealed it), pass every per-node check
// (shape, level, sums, each entry's prefix matches its key) and break only
// the key order: in a leaf, two
// neighbouring records; in an inner node, two neighbouring children (and
// their prefixes). A scan either way reports kCorrupt ("out of order")
// instead of handing out keys in the wrong order.
TEST_P(IterCorrupt, ScanReportsKeysOutOfOrder) {
  const uint64_t root = stoa::internal::impl_of(*store_)->txns().header()->root.load();
  uint64_t off = node_at(root)->ptr[1].load() & ~index::kFrozen;
  while (GetParam() == Target::kLeaf && node_at(off)->level > 0) {
    index::Node* n = node_at(off);
    off = n->ptr[n->count / 2].load() & ~index::kFrozen;
  }
  index::Node* n = node_at(off);
  ASSERT_GE(n->count, 3u);
  const int i = 1;  // entries 1 and 2
  auto swap = [&] {
    const uint64_t p = n->ptr[i].load();
    n->ptr[i].store(n->ptr[i + 1].load());
    n->ptr[i + 1].store(p);
    std::swap(n->prefix[i], n->prefix[i + 1]);
    n->sum = index::Btree::node_sum(*n);
  };
  swap();
  struct Undo {
    std::function<void()> fn;
    ~Undo() { fn(); }
  } undo{swap};
  scan_both_ways(*store_, [&](Cursor&, const Status& st, int n_keys) {
    EXPECT_LT(n_keys, kKeys);
    ASSERT_FALSE(st.ok()) << "a scan over swapped entries ended after " << n_keys << " keys, ok";
    EXPECT_EQ(st.code(), Code::kCorrupt) << err(st);
    EXPECT_NE(st.error().message().find("out of order"), std::string::npos) << err(st);
  });
}

TEST_P(IterCorrupt, CheckpointFailsAndWritesNoFile) {
  const std::set<std::string> before = checkpoint_files(dir_.path());
  const uint64_t off = damage(GetParam());
  auto c = store_->checkpoint();
  ASSERT_FALSE(c.ok()) << "checkpoint over a damaged node succeeded at ts " << *c;
  EXPECT_EQ(c.code(), Code::kCorrupt) << err(c);
  EXPECT_TRUE(names(c.error(), off)) << err(c);
  EXPECT_EQ(checkpoint_files(dir_.path()), before);
}

TEST_P(IterCorrupt, CommitOfARangeReaderFailsWithCorrupt) {
  auto s = store_->session();
  ASSERT_TRUE(s.ok());
  auto t = s->begin();  // serializable
  ASSERT_TRUE(t.ok());
  {
    auto c = t->scan("", "");  // read before the damage: every key
    ASSERT_TRUE(c.ok()) << err(c);
    Status st;
    EXPECT_EQ(drain(*c, &st), kKeys);
    ASSERT_TRUE(st.ok()) << err(st);
  }
  const uint64_t off = damage(GetParam());
  ASSERT_TRUE(t->put("zzz-after-every-key", "x").ok());  // not under the damaged node
  auto r = t->commit();
  ASSERT_FALSE(r.ok()) << "a range over a damaged node validated";
  EXPECT_EQ(r.code(), Code::kCorrupt) << err(r);
  EXPECT_TRUE(names(r.error(), off)) << err(r);
}

TEST_P(IterCorrupt, VerifyNamesTheDamagedNode) {
  const uint64_t off = damage(GetParam());
  auto v = store_->verify();
  ASSERT_TRUE(v.ok()) << err(v);
  bool named = false;
  for (const std::string& p : v->problems) {
    named = named || p.find(fmt::format("offset {}", off)) != std::string::npos;
  }
  EXPECT_TRUE(named) << "verify did not name offset " << off << " (" << v->problems.size()
                     << " problems)";
}

// seek() and prev() on a sound store, over the index merged with the
// transaction's own writes (puts and deletes), against a std::map.
TEST(CursorMoves, SeekAndPrevMatchAMap) {
  test::TempDir dir("cursor-moves");
  Options o;
  o.durability = Durability::kNone;
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  auto st = Store::open(dir.path(), o);
  ASSERT_TRUE(st.ok()) << err(st);
  auto s = (*st)->session();
  ASSERT_TRUE(s.ok());
  std::map<std::string, std::string> model;
  {
    auto t = s->begin();
    ASSERT_TRUE(t.ok());
    for (int i = 0; i < 3000; i += 2) {
      ASSERT_TRUE(t->put(key_of(i), "c").ok());
      model[key_of(i)] = "c";
    }
    ASSERT_TRUE(t->commit().ok());
  }
  auto t = s->begin();
  ASSERT_TRUE(t.ok());
  for (int i = 0; i < 3000; i += 7) {
    if (i % 3 == 0) {
      ASSERT_TRUE(t->del(key_of(i)).ok());
      model.erase(key_of(i));
    } else {
      ASSERT_TRUE(t->put(key_of(i), "w").ok());
      model[key_of(i)] = "w";
    }
  }
  const std::string from = key_of(100), to = key_of(2900);
  auto lo = model.lower_bound(from), hi = model.lower_bound(to);
  std::vector<std::pair<std::string, std::string>> want(lo, hi);
  for (bool rev : {false, true}) {
    auto c = t->scan(from, to, rev ? ScanOrder::kReverse : ScanOrder::kForward);
    ASSERT_TRUE(c.ok()) << err(c);
    // Forward one, back one, forward two ... across the whole range.
    size_t at = rev ? want.size() - 1 : 0;
    auto expect_at = [&](size_t i) {
      ASSERT_TRUE(c->valid()) << i;
      EXPECT_EQ(c->key(), want[i].first);
      EXPECT_EQ(c->value().str(), want[i].second);
    };
    expect_at(at);
    for (size_t steps = 0; steps < want.size() - 1; steps++) {
      ASSERT_TRUE(c->next().ok());
      at = rev ? at - 1 : at + 1;
      expect_at(at);
      if (steps % 5 == 0 && steps > 0) {
        ASSERT_TRUE(c->prev().ok());
        expect_at(rev ? at + 1 : at - 1);
        ASSERT_TRUE(c->next().ok());
        expect_at(at);
      }
    }
    ASSERT_TRUE(c->next().ok());
    EXPECT_FALSE(c->valid());
    EXPECT_TRUE(c->status().ok());
    // Seeks, clamped to the range, in the cursor's order.
    for (int i = 0; i < 3100; i += 13) {
      const std::string k = key_of(i);
      ASSERT_TRUE(c->seek(k).ok());
      if (!rev) {
        auto it = std::lower_bound(want.begin(), want.end(), std::make_pair(k, std::string()));
        ASSERT_EQ(c->valid(), it != want.end()) << k;
        if (it != want.end()) {
          EXPECT_EQ(c->key(), it->first) << k;
        }
      } else {
        auto it = std::upper_bound(want.begin(), want.end(), k,
                                   [](const std::string& a, const auto& b) { return a < b.first; });
        ASSERT_EQ(c->valid(), it != want.begin()) << k;
        if (it != want.begin()) {
          EXPECT_EQ(c->key(), std::prev(it)->first) << k;
        }
      }
    }
    // prev() from the first key in the cursor's order ends the cursor, ok.
    ASSERT_TRUE(c->seek(rev ? "" : from).ok());
    ASSERT_TRUE(c->valid());
    EXPECT_EQ(c->key(), rev ? want.back().first : want.front().first);
    ASSERT_TRUE(c->prev().ok());
    EXPECT_FALSE(c->valid());
  }
}

}  // namespace
}  // namespace stoa
