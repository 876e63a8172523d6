// Transactions within one process: reads, writes, snapshots, scans,
// conflicts (write skew, phantoms), savepoints, retry.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "api/access.h"
#include "session/session_core.h"
#include "stoa/store.h"
#include "store/store_impl.h"

namespace stoa {
namespace {

struct TxnTest : ::testing::Test {
  std::string dir;
  std::unique_ptr<Store> store;
  void SetUp() override {
    dir = std::string(STOA_TEST_TMPDIR) + "/stoa-txn-" +
          ::testing::UnitTest::GetInstance()->current_test_info()->name() + "-" +
          std::to_string(getpid());
    std::filesystem::remove_all(dir);
    Options o;
    o.watchdog_interval = std::chrono::milliseconds(0);
    o.log_threads = false;
    store = std::move(Store::open(dir, o)).value();
  }
  void TearDown() override {
    store.reset();
    std::filesystem::remove_all(dir);
  }
  Session session() { return std::move(store->session()).value(); }
};

TEST_F(TxnTest, PutGetCommitAndSnapshots) {
  Session s = session();
  {
    Txn t = std::move(s.begin()).value();
    ASSERT_TRUE(t.put("a", "1").ok());
    ASSERT_TRUE(t.put("b", "2").ok());
    EXPECT_EQ(t.get("a")->str(), "1");  // own writes
    ASSERT_TRUE(t.commit().ok());
  }
  Session s2 = session();
  Txn old = std::move(s2.begin()).value();  // snapshot before the next commit
  {
    Txn t = std::move(s.begin()).value();
    EXPECT_EQ(t.get("a")->str(), "1");
    ASSERT_TRUE(t.put("a", "10").ok());
    ASSERT_TRUE(t.del("b").ok());
    ASSERT_TRUE(t.commit().ok());
  }
  EXPECT_EQ(old.get("a")->str(), "1");
  EXPECT_EQ(old.get("b")->str(), "2");
  old.abort();
  Txn t = std::move(s.begin()).value();
  EXPECT_EQ(t.get("a")->str(), "10");
  EXPECT_EQ(t.get("b").code(), Code::kNotFound);
  EXPECT_EQ(t.get("").code(), Code::kInvalidArgument);
  EXPECT_EQ(t.put(std::string(2000, 'k'), "v").code(), Code::kInvalidArgument);
}

TEST_F(TxnTest, ManyKeysScanBothWays) {
  Session s = session();
  std::map<std::string, std::string> model;
  std::mt19937 rng(7);
  for (int round = 0; round < 20; round++) {
    Txn t = std::move(s.begin()).value();
    for (int i = 0; i < 500; i++) {
      char kb[16];
      std::snprintf(kb, sizeof(kb), "k%u", unsigned(rng() % 5000));
      std::string k = kb;
      std::string v = std::to_string(rng());
      if (rng() % 5 == 0) {
        ASSERT_TRUE(t.del(k).ok());
        model.erase(k);
      } else {
        ASSERT_TRUE(t.put(k, v).ok());
        model[k] = v;
      }
    }
    ASSERT_TRUE(t.commit().ok());
  }
  Txn t = std::move(s.begin(TxnOptions{.read_only = true})).value();
  auto c = std::move(t.scan("", "")).value();
  auto it = model.begin();
  for (; c.valid(); (void)c.next(), ++it) {
    ASSERT_NE(it, model.end());
    ASSERT_EQ(c.key(), it->first);
    ASSERT_EQ(c.value().str(), it->second);
  }
  EXPECT_EQ(it, model.end());
  auto r = std::move(t.scan("k2", "k3", ScanOrder::kReverse)).value();
  auto rit = std::make_reverse_iterator(model.lower_bound("k3"));
  for (; r.valid(); (void)r.next(), ++rit) {
    ASSERT_EQ(r.key(), rit->first);
  }
  EXPECT_TRUE(rit == model.rend() || rit->first < "k2");
  auto v = store->verify();
  EXPECT_TRUE(v->sound()) << v->problems[0];
}

TEST_F(TxnTest, WriteSkewRefusedUnderSerializableAllowedUnderSnapshot) {
  for (Isolation iso : {Isolation::kSerializable, Isolation::kSnapshot}) {
    Session s1 = session(), s2 = session();
    {
      Txn t = std::move(s1.begin()).value();
      ASSERT_TRUE(t.put("doc/x", "on").ok());
      ASSERT_TRUE(t.put("doc/y", "on").ok());
      ASSERT_TRUE(t.commit().ok());
    }
    TxnOptions o{.isolation = iso};
    Txn a = std::move(s1.begin(o)).value();
    Txn b = std::move(s2.begin(o)).value();
    // Each sees both on call, and takes itself off call.
    ASSERT_TRUE(a.get("doc/x").ok() && a.get("doc/y").ok());
    ASSERT_TRUE(b.get("doc/x").ok() && b.get("doc/y").ok());
    ASSERT_TRUE(a.put("doc/x", "off").ok());
    ASSERT_TRUE(b.put("doc/y", "off").ok());
    ASSERT_TRUE(a.commit().ok());
    auto rb = b.commit();
    if (iso == Isolation::kSerializable) {
      EXPECT_EQ(rb.code(), Code::kConflict);
    } else {
      EXPECT_TRUE(rb.ok());  // write skew: both off call
    }
  }
}

TEST_F(TxnTest, PhantomInScannedRangeConflicts) {
  Session s1 = session(), s2 = session();
  Txn a = std::move(s1.begin()).value();
  auto c = std::move(a.prefix("order/")).value();
  int n = 0;
  for (; c.valid(); (void)c.next()) n++;
  EXPECT_EQ(n, 0);
  ASSERT_TRUE(a.put("count", std::to_string(n)).ok());
  ASSERT_TRUE(s2.transact([](Txn& t) { return t.put("order/1", "x"); }).ok());
  EXPECT_EQ(a.commit().code(), Code::kConflict);
}

TEST_F(TxnTest, SavepointsCollapse) {
  Session s = session();
  Txn t = std::move(s.begin()).value();
  ASSERT_TRUE(t.put("a", "1").ok());
  uint32_t sp = t.savepoint();
  ASSERT_TRUE(t.put("a", "2").ok());
  ASSERT_TRUE(t.put("b", "2").ok());
  ASSERT_TRUE(t.rollback_to(sp).ok());
  EXPECT_EQ(t.get("a")->str(), "1");
  EXPECT_EQ(t.get("b").code(), Code::kNotFound);
  ASSERT_TRUE(t.put("a", "3").ok());
  ASSERT_TRUE(t.commit().ok());
  Txn r = std::move(s.begin()).value();
  EXPECT_EQ(r.get("a")->str(), "3");
  r.abort();
  auto v = store->verify();
  EXPECT_TRUE(v->sound()) << v->problems[0];
}

TEST_F(TxnTest, TransactRetriesConflictsAndRetryWaits) {
  Session s = session();
  ASSERT_TRUE(s.transact([](Txn& t) { return t.put("n", "0"); }).ok());
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    Session w = session();
    auto r = w.transact([](Txn& t) -> Status {
      auto v = t.get("n");
      if (!v.ok()) return v.error();
      if (v->str() == "0") return t.retry(std::chrono::milliseconds(5000));
      return t.put("seen", v->copy());
    });
    EXPECT_TRUE(r.ok()) << r.error().to_string();
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done.load());
  ASSERT_TRUE(s.transact([](Txn& t) { return t.put("n", "1"); }).ok());
  waiter.join();
  Txn t = std::move(s.begin()).value();
  EXPECT_EQ(t.get("seen")->str(), "1");
}

TEST_F(TxnTest, LargeValueIsReadInPlace) {
  Session s = session();
  std::string big(size_t(96) << 20, '\0');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = char(i / 4096);
  ASSERT_TRUE(s.transact([&](Txn& t) { return t.put("big", big); }).ok());
  Txn t = std::move(s.begin(TxnOptions{.read_only = true})).value();
  auto v = t.get("big");
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->size(), big.size());
  EXPECT_EQ(std::memcmp(v->data(), big.data(), big.size()), 0);
  // The view points into the store's read-only mapping: the same bytes,
  // read twice, sit at the same address (no copy was made).
  auto again = t.get("big");
  EXPECT_EQ(again->data(), v->data());
  internal::SessionCore* core = stoa::internal::core_of(s);
  const char* base = core->view(0);
  EXPECT_GE(v->data(), base);
  EXPECT_LT(v->data(), base + store->stats()->file_size);
}

TEST_F(TxnTest, ConcurrentIncrementsAreSerializable) {
  {
    Session s = session();
    ASSERT_TRUE(s.transact([](Txn& t) { return t.put("ctr", "0"); }).ok());
  }
  constexpr int kThreads = 4, kIncs = 300;
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; i++) {
    ts.emplace_back([&] {
      Session s = session();
      for (int k = 0; k < kIncs; k++) {
        auto r = s.transact([](Txn& t) -> Status {
          auto v = t.get("ctr");
          if (!v.ok()) return v.error();
          return t.put("ctr", std::to_string(std::stoll(v->copy()) + 1));
        });
        ASSERT_TRUE(r.ok()) << r.error().to_string();
      }
    });
  }
  for (auto& t : ts) t.join();
  Session s = session();
  Txn t = std::move(s.begin()).value();
  EXPECT_EQ(t.get("ctr")->str(), std::to_string(kThreads * kIncs));
}

}  // namespace
}  // namespace stoa
