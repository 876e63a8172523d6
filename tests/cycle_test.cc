// Cycle locking within one process, many threads: readers pinned while
// writers swap and retire blocks must never see freed (poisoned) memory, and
// purgatory drains once readers let go. Runs under TSan too.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "api/access.h"
#include "stoa/store.h"
#include "store/store_impl.h"

namespace stoa {
namespace {

struct Node {
  uint64_t magic;
  uint64_t self;
  uint64_t value;
  uint64_t check;
};
constexpr uint64_t kMagic = 0x4e4f44454e4f4445ull;

TEST(Cycle, ThreadsSwapRetireReadNoUseAfterFree) {
  std::string dir = std::string(STOA_TEST_TMPDIR) + "/stoa-unit-cycle-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  {
    Options o;
    o.poison_freed = true;
    o.watchdog_interval = std::chrono::milliseconds(5);
    auto store = Store::open(dir, o);
    ASSERT_TRUE(store.ok()) << store.error().to_string();
    constexpr int kSlots = 16;
    std::vector<std::atomic<uint64_t>> slots(kSlots);
    {
      auto s = (*store)->session();
      for (auto& sl : slots) {
        auto n = stoa::internal::core_of(*s)->alloc(sizeof(Node));
        ASSERT_TRUE(n.ok());
        auto* p = reinterpret_cast<Node*>(stoa::internal::core_of(*s)->write_ptr(*n));
        *p = Node{kMagic, *n, 0, *n ^ kMagic};
        ASSERT_TRUE(stoa::internal::core_of(*s)->publish(*n).ok());
        sl.store(*n, std::memory_order_release);
      }
    }
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> reads{0}, bad{0}, writes{0};
    auto writer = [&](int id) {
      auto s = (*store)->session();
      ASSERT_TRUE(s.ok());
      std::mt19937 rng(id);
      uint64_t v = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        auto n = stoa::internal::core_of(*s)->alloc(sizeof(Node) + rng() % 200);
        ASSERT_TRUE(n.ok()) << n.error().to_string();
        auto* p = reinterpret_cast<Node*>(stoa::internal::core_of(*s)->write_ptr(*n));
        ++v;
        *p = Node{kMagic, *n, v, *n ^ kMagic ^ v};
        ASSERT_TRUE(stoa::internal::core_of(*s)->publish(*n).ok());
        uint64_t old = slots[rng() % kSlots].exchange(*n, std::memory_order_acq_rel);
        ASSERT_TRUE(stoa::internal::core_of(*s)->retire(old).ok());
        writes.fetch_add(1, std::memory_order_relaxed);
      }
    };
    auto reader = [&](int id) {
      auto s = (*store)->session();
      ASSERT_TRUE(s.ok());
      std::mt19937 rng(100 + id);
      while (!stop.load(std::memory_order_relaxed)) {
        stoa::internal::core_of(*s)->pin();
        for (int k = 0; k < 8; k++) {
          uint64_t off = slots[rng() % kSlots].load(std::memory_order_acquire);
          const auto* p = reinterpret_cast<const Node*>(stoa::internal::core_of(*s)->view(off));
          Node n;
          std::memcpy(&n, p, sizeof(n));
          if (n.magic != kMagic || n.self != off || n.check != (off ^ kMagic ^ n.value)) {
            bad.fetch_add(1, std::memory_order_relaxed);
          }
          reads.fetch_add(1, std::memory_order_relaxed);
        }
        stoa::internal::core_of(*s)->unpin();
      }
    };
    std::vector<std::thread> ts;
    for (int i = 0; i < 2; i++) ts.emplace_back(writer, i);
    for (int i = 0; i < 2; i++) ts.emplace_back(reader, i);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    stop = true;
    for (auto& t : ts) t.join();
    EXPECT_EQ(bad.load(), 0u);
    EXPECT_GT(reads.load(), 1000u);
    EXPECT_GT(writes.load(), 1000u);
    // Everything retired is freed once nobody is pinned (parked sessions
    // are drained by the watchdog).
    for (int i = 0; i < 200 && (*store)->stats()->purgatory_objects > 0; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ((*store)->stats()->purgatory_objects, 0u);
    auto v = (*store)->verify();
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->sound()) << v->problems[0];
    EXPECT_EQ(v->blocks_live, uint64_t(kSlots));
  }
  std::filesystem::remove_all(dir);
}

TEST(Cycle, SessionTableFullThenFreesUp) {
  std::string dir = std::string(STOA_TEST_TMPDIR) + "/stoa-unit-full-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  {
    Options o;
    o.max_sessions = 3;
    o.watchdog_interval = std::chrono::milliseconds(0);
    o.log_threads = false;
    auto store = Store::open(dir, o);
    ASSERT_TRUE(store.ok());
    std::vector<Session> ss;
    for (int i = 0; i < 3; i++) ss.push_back(std::move((*store)->session()).value());
    auto extra = (*store)->session();
    ASSERT_FALSE(extra.ok());
    EXPECT_EQ(extra.code(), Code::kFull);
    ASSERT_TRUE(ss[1].close().ok());
    auto again = (*store)->session();
    EXPECT_TRUE(again.ok());
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace stoa
