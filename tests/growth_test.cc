// Growth while mapped, and a full store.
//
// GrowsWhileOthersRead: process A opens a store that starts at 1 MiB and
// grows by 1 MiB; two other processes allocate tens of MiB, so the file
// grows under A while A reads their published blocks — each far beyond A's
// initial mapping — through SessionCore::read(), and allocates too. A must
// see every block with the data its writer put there.
//
// OpensWhileAnotherProcessGrows: a process grows the file in small steps
// while two others open and close the store in a loop; every open succeeds
// (an opener that read the file's length just before a growth must not take
// the newly published heap size for damage).
//
// FullIsAnErrorAndFreesMakeRoom: at max_size, allocation fails with kFull in
// every process, the store stays usable and sound, and frees make room again.
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

#include "api/access.h"
#include "session/session_core.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "test_util.h"

namespace stoa {
namespace {

using internal::SessionCore;
using namespace stoa::test;

constexpr int kGrowers = 2;
constexpr int kMaxEntries = 4096;

struct Entry {
  std::atomic<uint64_t> off;
  std::atomic<uint64_t> len;
  std::atomic<uint64_t> key;
};
struct Table {
  std::atomic<uint32_t> count[kGrowers];  // entries [0, count) are complete (release)
  Entry entries[kGrowers][kMaxEntries];
};

std::string problems_text(const VerifyReport& r) {
  std::string out;
  for (const auto& p : r.problems) out += "  " + p + "\n";
  return out;
}

int grower_main(const std::string& path, int g, uint64_t total, uint64_t seed, Table* t) {
  auto s = Store::open(path);
  CHILD_CHECK(s.ok(), "grower {}: open: {}", g, err(s));
  auto sess = (*s)->session();
  CHILD_CHECK(sess.ok(), "grower {}: session: {}", g, err(sess));
  SessionCore* c = stoa::internal::core_of(*sess);
  std::mt19937_64 rng(seed ^ splitmix(uint64_t(g) + 1));
  uint64_t done = 0;
  uint32_t n = 0;
  while (done < total && n < kMaxEntries) {
    size_t len = rng() % 8 == 0 ? 16 + rng() % 4000 : 4096 + rng() % (512 * 1024);
    auto a = c->alloc(len);
    CHILD_CHECK(a.ok(), "seed {:#x} grower {}: alloc({}) after {} bytes: {}", seed, g, len, done,
                err(a));
    uint64_t key = (uint64_t(g) << 32) | n;
    fill_pattern(c->write_ptr(*a), len, key);
    Status st = c->publish(*a);
    CHILD_CHECK(st.ok(), "publish: {}", err(st));
    Entry& e = t->entries[g][n];
    e.off.store(*a, std::memory_order_relaxed);
    e.len.store(len, std::memory_order_relaxed);
    e.key.store(key, std::memory_order_relaxed);
    t->count[g].store(++n, std::memory_order_release);
    done += len;
  }
  return 0;
}

TEST(Growth, GrowsWhileOthersRead) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  TempDir dir("growth");
  const std::string path = dir.sub("store");
  Options o;
  o.initial_size = 1 << 20;
  o.grow_chunk = 1 << 20;
  o.max_size = uint64_t{512} << 20;
  auto opened = Store::open(path, o);
  ASSERT_TRUE(opened.ok()) << err(opened);
  std::unique_ptr<Store> store = std::move(opened).value();
  ASSERT_EQ(store->stats()->file_size, uint64_t{1} << 20);
  const uint64_t initial_mapped = stoa::internal::impl_of(*store)->region().mapped();
  EXPECT_LE(initial_mapped, uint64_t{1} << 20);
  auto sess = store->session();
  ASSERT_TRUE(sess.ok());
  SessionCore* c = stoa::internal::core_of(*sess);

  Shared<Table> table;
  Children kids;
  const uint64_t per_grower = scaled(24) << 20;
  std::vector<pid_t> pids;
  for (int g = 0; g < kGrowers; g++) {
    pids.push_back(
        kids.spawn([&, g] { return grower_main(path, g, per_grower, seed, table.get()); }));
  }

  // Read what they publish while they grow the file; allocate as well.
  std::mt19937_64 rng(seed);
  uint32_t seen[kGrowers] = {0, 0};
  uint64_t validated = 0, beyond = 0, lazily_mapped = 0, max_end = 0;
  std::vector<uint64_t> mine;
  auto drain = [&] {
    for (int g = 0; g < kGrowers; g++) {
      uint32_t n = table->count[g].load(std::memory_order_acquire);
      for (; seen[g] < n; seen[g]++) {
        Entry& e = table->entries[g][seen[g]];
        uint64_t off = e.off.load(), len = e.len.load();
        bool unmapped = off + len > stoa::internal::impl_of(*store)->region().mapped();
        auto r = c->read(off, len);
        ASSERT_TRUE(r.ok()) << "read(" << off << ", " << len << "): " << err(r);
        ASSERT_EQ(check_pattern(*r, len, e.key.load()), -1)
            << "block " << off << " (" << len << " bytes) of grower " << g << " reads wrong";
        ASSERT_EQ(check_pattern(c->view(off), len, e.key.load()), -1);
        validated++;
        if (off + len > initial_mapped) beyond++;
        if (unmapped) lazily_mapped++;
        max_end = std::max(max_end, off + len);
      }
    }
  };
  int running = kGrowers;
  std::vector<bool> done(kGrowers, false);
  auto deadline = Clock::now() + milliseconds(120000);
  while (running > 0 && Clock::now() < deadline) {
    ASSERT_NO_FATAL_FAILURE(drain());
    // Bounded (at most ~130 MiB of the 512): on a loaded machine the growers
    // are slow and this loop runs long.
    if (rng() % 4 == 0 && mine.size() < 400) {
      auto a = c->alloc(64 * 1024 + rng() % (256 * 1024));
      ASSERT_TRUE(a.ok()) << err(a);
      fill_pattern(c->write_ptr(*a), 4096, *a);
      mine.push_back(*a);
    }
    for (int g = 0; g < kGrowers; g++) {
      if (done[g]) continue;
      int status = 0;
      if (kids.try_reap(pids[g], &status)) {
        done[g] = true;
        running--;
        EXPECT_TRUE(exited_ok(status)) << "grower " << g << ": " << describe_status(status);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  ASSERT_EQ(running, 0) << "growers did not finish in time";
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_NO_FATAL_FAILURE(drain());

  auto st = store->stats();
  ASSERT_TRUE(st.ok());
  std::printf(
      "growth: read %llu blocks of other processes (%llu beyond the initial 1 MiB, %llu "
      "needing a new mapping first); file grew 1 MiB -> %llu MiB\n",
      (unsigned long long)validated, (unsigned long long)beyond, (unsigned long long)lazily_mapped,
      (unsigned long long)(st->file_size >> 20));
  EXPECT_EQ(validated, uint64_t(table->count[0].load() + table->count[1].load()));
  EXPECT_GT(beyond, validated / 2);
  EXPECT_GT(lazily_mapped, 0u) << "never read past this process's mapping";
  EXPECT_GE(st->file_size, 2 * per_grower);
  EXPECT_LE(max_end, st->file_size);
  for (uint64_t off : mine) {
    EXPECT_EQ(check_pattern(c->view(off), 4096, off), -1) << "own block " << off;
  }

  auto rep = store->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);
  EXPECT_EQ(rep->blocks_live, validated);
  for (int g = 0; g < kGrowers; g++) {
    for (uint32_t i = 0; i < table->count[g].load(); i++) {
      Status fs = c->free(table->entries[g][i].off.load());
      ASSERT_TRUE(fs.ok()) << err(fs);
    }
  }
  for (uint64_t off : mine) ASSERT_TRUE(c->free(off).ok());
  ASSERT_TRUE(sess->close().ok());
  rep = store->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);
  EXPECT_EQ(rep->blocks_live, 0u);
}

TEST(Growth, OpensWhileAnotherProcessGrows) {
  TempDir dir("growth-open");
  const std::string path = dir.sub("store");
  Options o;
  o.initial_size = 1 << 20;
  o.grow_chunk = 64 << 10;
  o.max_size = 1ull << 30;
  {
    auto s = Store::open(path, o);
    ASSERT_TRUE(s.ok()) << err(s);
  }
  Shared<std::atomic<int>> stop;
  Children kids;
  const pid_t grower = kids.spawn([&] {
    auto s = Store::open(path);
    CHILD_CHECK(s.ok(), "open: {}", err(s));
    auto sess = (*s)->session();
    CHILD_CHECK(sess.ok(), "session: {}", err(sess));
    SessionCore* c = stoa::internal::core_of(*sess);
    // 192 KiB allocations: each one grows the file by at least a step.
    for (int i = 0; i < 4000 && stop->load() == 0; i++) {
      auto b = c->alloc(192 << 10);
      CHILD_CHECK(b.ok(), "alloc {}: {}", i, err(b));
    }
    return 0;
  });
  std::vector<pid_t> openers;
  for (int k = 0; k < 2; k++) {
    openers.push_back(kids.spawn([&] {
      int opens = 0;
      for (; stop->load() == 0; opens++) {
        auto s = Store::open(path);
        CHILD_CHECK(s.ok(), "open {} while the file grows: {}", opens, err(s));
      }
      return 0;
    }));
  }
  const int gs = kids.wait(grower, milliseconds(60'000));
  stop->store(1);
  EXPECT_TRUE(exited_ok(gs)) << "grower " << describe_status(gs);
  for (pid_t p : openers) {
    const int st = kids.wait(p, milliseconds(30'000));
    EXPECT_TRUE(exited_ok(st)) << "opener " << describe_status(st);
  }
}

TEST(Growth, FullIsAnErrorAndFreesMakeRoom) {
  TempDir dir("growth-full");
  const std::string path = dir.sub("store");
  Options o;
  o.initial_size = 1 << 20;
  o.grow_chunk = 1 << 20;
  o.max_size = 4 << 20;
  o.watchdog_interval = milliseconds(0);
  o.log_threads = false;
  auto opened = Store::open(path, o);
  ASSERT_TRUE(opened.ok()) << err(opened);
  std::unique_ptr<Store> store = std::move(opened).value();
  auto sess = store->session();
  ASSERT_TRUE(sess.ok());
  SessionCore* c = stoa::internal::core_of(*sess);

  std::vector<uint64_t> blocks;
  Result<uint64_t> r = uint64_t{0};
  for (int i = 0; i < 1000; i++) {
    r = c->alloc(64 * 1024);
    if (!r.ok()) break;
    fill_pattern(c->write_ptr(*r), 64 * 1024, *r);
    blocks.push_back(*r);
  }
  ASSERT_FALSE(r.ok()) << "a 4 MiB store never filled up";
  EXPECT_EQ(r.code(), Code::kFull) << err(r);
  EXPECT_NE(r.error().message().find("full"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find(path), std::string::npos)
      << "error should name the store: " << r.error().message();
  EXPECT_GE(blocks.size() * 68 * 1024, uint64_t{3} << 20) << "full long before max_size";
  auto st = store->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->file_size, st->max_size);
  std::printf("growth: full after %zu blocks of 64 KiB: %s\n", blocks.size(), err(r).c_str());

  // Misuse is not "full".
  EXPECT_EQ(c->alloc(0).code(), Code::kInvalidArgument);
  EXPECT_EQ(c->alloc(size_t{8} << 20).code(), Code::kInvalidArgument);
  // Small allocations either fit in what is left or are full too.
  auto small = c->alloc(100);
  EXPECT_TRUE(small.ok() || small.code() == Code::kFull) << err(small);
  if (small.ok()) {
    ASSERT_TRUE(c->free(*small).ok());
  }

  auto rep = store->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);

  // Another process sees the same full store, and it is usable there too.
  Children kids;
  pid_t pid = kids.spawn([&] {
    auto s = Store::open(path);
    CHILD_CHECK(s.ok(), "open: {}", err(s));
    auto se = (*s)->session();
    CHILD_CHECK(se.ok(), "session: {}", err(se));
    auto a = stoa::internal::core_of(*se)->alloc(1 << 20);
    CHILD_CHECK(!a.ok() && a.code() == Code::kFull, "alloc of 1 MiB in a full store: {}", err(a));
    auto stats = (*s)->stats();
    CHILD_CHECK(stats.ok() && stats->file_size == stats->max_size, "stats: {}", err(stats));
    return 0;
  });
  EXPECT_TRUE(exited_ok(kids.wait(pid, milliseconds(30000))));

  // Every block is intact; frees make room again (freed runs merge).
  for (uint64_t off : blocks) {
    ASSERT_EQ(check_pattern(c->view(off), 64 * 1024, off), -1) << "block " << off;
    ASSERT_TRUE(c->free(off).ok());
  }
  auto big = c->alloc(1 << 20);
  ASSERT_TRUE(big.ok()) << "after freeing everything: " << err(big);
  ASSERT_TRUE(c->free(*big).ok());
  pid = kids.spawn([&] {
    auto s = Store::open(path);
    CHILD_CHECK(s.ok(), "open: {}", err(s));
    auto se = (*s)->session();
    CHILD_CHECK(se.ok(), "session: {}", err(se));
    auto a = stoa::internal::core_of(*se)->alloc(2 << 20);
    CHILD_CHECK(a.ok(), "alloc of 2 MiB after frees: {}", err(a));
    CHILD_CHECK(stoa::internal::core_of(*se)->free(*a).ok(), "free");
    return 0;
  });
  EXPECT_TRUE(exited_ok(kids.wait(pid, milliseconds(30000))));
  ASSERT_TRUE(sess->close().ok());
  rep = store->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);
  EXPECT_EQ(rep->blocks_live, 0u);
}

}  // namespace
}  // namespace stoa
