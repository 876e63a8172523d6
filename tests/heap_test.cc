// Unit tests of the allocator within one process: states, errors, growth,
// full store, verify.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "api/access.h"
#include "stoa/store.h"
#include "store/store_impl.h"

namespace stoa {
namespace {

std::string temp_store(const char* name) {
  std::string p =
      std::string(STOA_TEST_TMPDIR) + "/stoa-unit-" + name + "-" + std::to_string(getpid());
  std::filesystem::remove_all(p);
  return p;
}

struct Fixture : ::testing::Test {
  std::string dir;
  std::unique_ptr<Store> store;
  void open(Options o = {}) {
    o.watchdog_interval = std::chrono::milliseconds(0);
    o.log_threads = false;
    auto s = Store::open(dir, o);
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    store = std::move(s).value();
  }
  void SetUp() override {
    dir = temp_store(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override {
    store.reset();
    std::filesystem::remove_all(dir);
  }
};

TEST_F(Fixture, AllocWriteReadFree) {
  open();
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto* c = stoa::internal::core_of(*s);
  std::set<uint64_t> seen;
  std::vector<std::pair<uint64_t, size_t>> blocks;
  std::mt19937 rng(1);
  for (int i = 0; i < 5000; i++) {
    size_t n = 1 + rng() % (i % 10 == 0 ? 20000 : 500);
    auto r = c->alloc(n);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    ASSERT_TRUE(seen.insert(*r).second);
    ASSERT_GE(*c->usable_size(*r), n);
    std::memset(c->write_ptr(*r), i & 0xff, n);
    blocks.emplace_back(*r, n);
  }
  for (size_t i = 0; i < blocks.size(); i++) {
    auto [off, n] = blocks[i];
    const char* p = c->view(off);
    for (size_t k = 0; k < n; k += 97) ASSERT_EQ(uint8_t(p[k]), uint8_t(i & 0xff));
    ASSERT_TRUE(c->free(off).ok());
  }
  auto v = store->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << v->problems[0];
  EXPECT_TRUE(v->exclusive);
}

TEST_F(Fixture, ErrorsAreValues) {
  open();
  auto s = store->session();
  auto* c = stoa::internal::core_of(*s);
  EXPECT_EQ(c->alloc(0).code(), Code::kInvalidArgument);
  auto a = c->alloc(100);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(c->free(*a).ok());
  EXPECT_EQ(c->free(*a).code(), Code::kInvalidArgument);  // double free
  EXPECT_EQ(c->free(12345).code(), Code::kInvalidArgument);
  EXPECT_EQ(c->publish(uint64_t(1) << 40).code(), Code::kInvalidArgument);
  ASSERT_TRUE(s->close().ok());
  EXPECT_EQ(s->close().code(), Code::kClosed);
}

TEST_F(Fixture, FullThenFreeMakesRoom) {
  Options o;
  o.max_size = 8 << 20;
  o.initial_size = 1 << 20;
  o.grow_chunk = 1 << 20;
  open(o);
  auto s = store->session();
  auto* c = stoa::internal::core_of(*s);
  std::vector<uint64_t> big;
  for (;;) {
    auto r = c->alloc(512 << 10);
    if (!r.ok()) {
      EXPECT_EQ(r.code(), Code::kFull) << r.error().to_string();
      break;
    }
    big.push_back(*r);
  }
  EXPECT_GE(big.size(), 10u);
  EXPECT_EQ(store->stats()->file_size, uint64_t(8) << 20);
  ASSERT_TRUE(c->free(big.back()).ok());
  big.pop_back();
  auto again = c->alloc(512 << 10);
  EXPECT_TRUE(again.ok());
  auto v = store->verify();
  EXPECT_TRUE(v->sound()) << v->problems[0];
}

TEST_F(Fixture, RetireGoesThroughCycles) {
  open();
  auto s = store->session();
  auto s2 = store->session();
  auto* c = stoa::internal::core_of(*s);
  auto* r = stoa::internal::core_of(*s2);
  auto a = c->alloc(64);
  ASSERT_TRUE(c->publish(*a).ok());
  r->pin();  // a reader that might see it
  ASSERT_TRUE(c->retire(*a).ok());
  for (int i = 0; i < 4; i++) ASSERT_TRUE(c->collect().ok());
  EXPECT_EQ(store->stats()->purgatory_objects, 1u);  // held back by the pin
  r->unpin();
  uint64_t freed = 0;
  for (int i = 0; i < 4; i++) freed += *c->collect();
  EXPECT_EQ(freed, 1u);
  EXPECT_EQ(store->stats()->purgatory_objects, 0u);
}

TEST_F(Fixture, ReopenKeepsLiveBlocks) {
  open();
  uint64_t off;
  {
    auto s = store->session();
    auto a = stoa::internal::core_of(*s)->alloc(1000);
    off = *a;
    std::memcpy(stoa::internal::core_of(*s)->write_ptr(off), "hello", 6);
    ASSERT_TRUE(stoa::internal::core_of(*s)->publish(off).ok());
    auto b = stoa::internal::core_of(*s)->alloc(1000);  // private: reclaimed at close
    ASSERT_TRUE(b.ok());
  }
  store.reset();
  open();
  auto s = store->session();
  auto p = stoa::internal::core_of(*s)->read(off, 6);
  ASSERT_TRUE(p.ok());
  EXPECT_STREQ(*p, "hello");
  auto v = store->verify();
  EXPECT_TRUE(v->sound()) << v->problems[0];
  EXPECT_EQ(v->blocks_live, 1u);
}

}  // namespace
}  // namespace stoa
