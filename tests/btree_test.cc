// The index under verify: a sound tree passes; damage to order, records and
// version chains is named, not missed.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "api/access.h"
#include "index/btree.h"
#include "stoa/store.h"
#include "store/store_impl.h"

namespace stoa {
namespace {

struct BtreeVerify : ::testing::Test {
  std::string dir;
  std::unique_ptr<Store> store;
  void SetUp() override {
    dir = std::string(STOA_TEST_TMPDIR) + "/stoa-btree-" + std::to_string(getpid());
    std::filesystem::remove_all(dir);
    Options o;
    o.watchdog_interval = std::chrono::milliseconds(0);
    o.log_threads = false;
    store = std::move(Store::open(dir, o)).value();
    Session s = std::move(store->session()).value();
    for (int round = 0; round < 4; round++) {
      ASSERT_TRUE(s.transact([&](Txn& t) -> Status {
                     for (int i = 0; i < 3000; i++) {
                       char k[16];
                       std::snprintf(k, sizeof(k), "k%06d", i * 7 % 3000);
                       STOA_TRY(t.put(k, std::to_string(round)));
                     }
                     return {};
                   }).ok());
    }
  }
  void TearDown() override {
    store.reset();
    std::filesystem::remove_all(dir);
  }
  index::Btree& tree() { return stoa::internal::impl_of(*store)->txns().tree(); }
  std::string first_problem() {
    auto v = store->verify();
    EXPECT_TRUE(v.ok());
    return v->problems.empty() ? "" : v->problems[0];
  }
  // The leaf holding the first key.
  index::Node* first_leaf() {
    region::Region& r = stoa::internal::impl_of(*store)->region();
    uint64_t n = tree().header()->root.load();
    for (;;) {
      auto* node = reinterpret_cast<index::Node*>(r.rw(n));
      if (node->kind == uint16_t(index::NodeKind::kLeaf)) return node;
      n = node->ptr[0].load() & ~index::kFrozen;
    }
  }
};

TEST_F(BtreeVerify, SoundTreePasses) {
  auto v = store->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << v->problems[0];
  EXPECT_TRUE(v->index_checked);
  EXPECT_EQ(v->keys, 3000u);
}

TEST_F(BtreeVerify, KeysOutOfOrderAreNamed) {
  index::Node* leaf = first_leaf();
  uint64_t a = leaf->ptr[0].load(), b = leaf->ptr[1].load();
  leaf->ptr[0].store(b);
  leaf->ptr[1].store(a);
  std::swap(leaf->prefix[0], leaf->prefix[1]);
  leaf->sum = index::Btree::node_sum(*leaf);  // only the order is wrong
  EXPECT_NE(first_problem().find("out of order"), std::string::npos);
}

TEST_F(BtreeVerify, ChangedVersionFieldsFailTheirChecksums) {
  region::Region& r = stoa::internal::impl_of(*store)->region();
  index::Node* leaf = first_leaf();
  auto* rec = reinterpret_cast<index::KeyRecord*>(r.rw(leaf->ptr[4].load()));
  auto* ver = reinterpret_cast<index::Version*>(r.rw(rec->head.load()));
  ver->len ^= 1;  // a header field
  EXPECT_NE(first_problem().find("header checksum"), std::string::npos);
  ver->len ^= 1;
  *(r.rw(rec->head.load()) + sizeof(index::Version)) ^= 0x20;  // a value byte
  EXPECT_NE(first_problem().find("value checksum"), std::string::npos);
  *(r.rw(rec->head.load()) + sizeof(index::Version)) ^= 0x20;
  reinterpret_cast<char*>(rec + 1)[1] ^= 0x01;  // a key byte (also its leaf prefix's)
  auto v = store->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(std::any_of(v->problems.begin(), v->problems.end(), [](const std::string& p) {
    return p.find("key record") != std::string::npos &&
           p.find("fails its checksum") != std::string::npos;
  })) << (v->problems.empty() ? "no problem" : v->problems[0]);
  reinterpret_cast<char*>(rec + 1)[1] ^= 0x01;
  EXPECT_EQ(first_problem(), "");
}

TEST_F(BtreeVerify, BrokenVersionChainIsNamed) {
  region::Region& r = stoa::internal::impl_of(*store)->region();
  index::Node* leaf = first_leaf();
  auto* rec = reinterpret_cast<index::KeyRecord*>(r.rw(leaf->ptr[3].load()));
  auto* ver = reinterpret_cast<index::Version*>(r.rw(rec->head.load()));
  ver->ts = tree().header()->next_ts.load() + 5;  // from the future
  EXPECT_NE(first_problem().find("timestamp"), std::string::npos);
}

TEST_F(BtreeVerify, DanglingRecordIsNamed) {
  index::Node* leaf = first_leaf();
  leaf->ptr[2].store(leaf->ptr[2].load() + 16);  // not a block start
  EXPECT_NE(first_problem().find("entry checksum"), std::string::npos);
  leaf->sum = index::Btree::node_sum(*leaf);  // the entry as a writer sealed it
  EXPECT_NE(first_problem().find("key record"), std::string::npos);
}

}  // namespace
}  // namespace stoa
