// Allocator stress across processes: 4 processes x 2 threads allocate and
// free blocks of random sizes (16 B .. 64 KiB, a few up to 1 MiB) for a few
// seconds, then the store is verified: no overlap, no leak beyond the
// per-session caches, every guard intact.
//
// Overlap detection: every thread fills each block it owns, over its whole
// usable size, with a pattern unique to (process, thread, sequence number)
// and checks the whole pattern before it lets the block go (and in periodic
// sweeps). If the allocator ever handed out overlapping blocks, or let a
// block be reused while still owned or pinned, some pattern is clobbered.
// Blocks leave a thread in four ways: free(), publish()+free(), retire() of
// an owned block, and publish()+retire() while pinned (the pattern must
// survive until unpin, since the cycle cannot advance past a pinned reader).
//
// STOA_STRESS_SCALE scales the duration (default 3 s per run).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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

constexpr int kProcs = 4;
constexpr int kThreads = 2;
constexpr int kKeep = 5;                           // blocks each thread leaves published
constexpr size_t kMaxLiveBlocks = 96;              // per thread
constexpr size_t kMaxLiveBytes = size_t{6} << 20;  // per thread

struct Ctl {
  std::atomic<uint64_t> ops[kProcs][kThreads];
  std::atomic<uint64_t> allocs;
  std::atomic<uint64_t> large_allocs;
  std::atomic<uint64_t> frees;
  std::atomic<uint64_t> retires;
  std::atomic<uint64_t> double_frees_refused;
  std::atomic<uint64_t> kept_off[kProcs][kThreads][kKeep];
  std::atomic<uint64_t> kept_len[kProcs][kThreads][kKeep];
  std::atomic<uint64_t> kept_key[kProcs][kThreads][kKeep];
};

struct Block {
  uint64_t off;
  size_t len;  // usable size, all of it patterned
  uint64_t key;
  bool small;
};

size_t pick_size(std::mt19937_64& rng) {
  if (rng() % 100 < 3) return 65537 + rng() % ((size_t{1} << 20) - 65536);  // large, to 1 MiB
  // Log-uniform over 16 B .. 64 KiB: every small class and many page counts.
  std::uniform_real_distribution<double> d(std::log(16.0), std::log(65536.0));
  return std::max<size_t>(16, size_t(std::exp(d(rng))));
}

uint64_t stress_ms() {
  const char* s = std::getenv("STOA_ALLOC_STRESS_MS");
  uint64_t base = (s != nullptr && *s != '\0') ? std::strtoull(s, nullptr, 10) : 3000;
  return scaled(base);
}

void run_thread(Store& store, int p, int t, uint64_t seed, Clock::time_point deadline, Ctl* ctl,
                bool keep) {
  auto sess = store.session();
  CHILD_CHECK(sess.ok(), "seed {:#x} p{} t{}: session: {}", seed, p, t,
              sess.ok() ? "" : sess.error().to_string());
  SessionCore* c = stoa::internal::core_of(*sess);
  std::mt19937_64 rng(seed * 1000003 + uint64_t(p) * 131 + uint64_t(t));
  std::vector<Block> live;
  size_t live_bytes = 0;
  uint64_t seq = 0, ops = 0;
  auto check = [&](const Block& b, const char* when) {
    int64_t bad = check_pattern(c->view(b.off), b.len, b.key);
    CHILD_CHECK(bad < 0,
                "seed {:#x} p{} t{}: {}: block at offset {} ({} usable bytes, key {:#x}) "
                "clobbered at byte {} (overlap or reuse while owned)",
                seed, p, t, when, b.off, b.len, b.key, bad);
  };
  auto alloc_one = [&](size_t size) -> Block {
    auto r = c->alloc(size);
    CHILD_CHECK(r.ok(), "seed {:#x} p{} t{}: alloc({}): {}", seed, p, t, size,
                r.ok() ? "" : r.error().to_string());
    CHILD_CHECK(*r % 16 == 0, "seed {:#x}: alloc returned unaligned offset {}", seed, *r);
    auto us = c->usable_size(*r);
    CHILD_CHECK(us.ok() && *us >= size, "seed {:#x} p{} t{}: usable_size({}) = {} for {} bytes",
                seed, p, t, *r, us.ok() ? std::to_string(*us) : us.error().to_string(), size);
    Block b{*r, *us, (uint64_t(p) << 56) | (uint64_t(t) << 48) | ++seq, size <= 4080};
    fill_pattern(c->write_ptr(b.off), b.len, b.key);
    ctl->allocs.fetch_add(1, std::memory_order_relaxed);
    if (!b.small) ctl->large_allocs.fetch_add(1, std::memory_order_relaxed);
    return b;
  };

  while (Clock::now() < deadline) {
    for (int k = 0; k < 32; k++, ops++) {
      bool want_alloc = live.empty() || (live.size() < kMaxLiveBlocks &&
                                         live_bytes < kMaxLiveBytes && rng() % 100 < 55);
      if (want_alloc) {
        Block b = alloc_one(pick_size(rng));
        live_bytes += b.len;
        live.push_back(b);
        continue;
      }
      size_t i = rng() % live.size();
      Block b = live[i];
      live[i] = live.back();
      live.pop_back();
      live_bytes -= b.len;
      check(b, "before release");
      switch (rng() % 8) {
        case 0:
        case 1:
        case 2:
        case 3: {
          Status st = c->free(b.off);
          CHILD_CHECK(st.ok(), "seed {:#x}: free({}): {}", seed, b.off,
                      st.ok() ? "" : st.error().to_string());
          ctl->frees.fetch_add(1, std::memory_order_relaxed);
          if (b.small && rng() % 4 == 0) {
            // The block now sits in this session's cache: a second free must
            // be refused without damage (large runs may already be reused by
            // another process, so only small blocks are tried).
            Status again = c->free(b.off);
            CHILD_CHECK(!again.ok() && again.code() == Code::kInvalidArgument,
                        "seed {:#x}: double free of {} gave {}", seed, b.off,
                        again.ok() ? "ok" : again.error().to_string());
            ctl->double_frees_refused.fetch_add(1, std::memory_order_relaxed);
          }
          break;
        }
        case 4:
        case 5: {
          // Published then retired while pinned: must stay intact until unpin.
          SessionCore::PinGuard pin(*c);
          Status st = c->publish(b.off);
          CHILD_CHECK(st.ok(), "seed {:#x}: publish({}): {}", seed, b.off,
                      st.ok() ? "" : st.error().to_string());
          st = c->retire(b.off);
          CHILD_CHECK(st.ok(), "seed {:#x}: retire({}): {}", seed, b.off,
                      st.ok() ? "" : st.error().to_string());
          check(b, "retired while pinned");
          ctl->retires.fetch_add(1, std::memory_order_relaxed);
          break;
        }
        case 6: {
          Status st = c->publish(b.off);
          CHILD_CHECK(st.ok(), "seed {:#x}: publish({}): {}", seed, b.off,
                      st.ok() ? "" : st.error().to_string());
          st = c->free(b.off);
          CHILD_CHECK(st.ok(), "seed {:#x}: free of live {}: {}", seed, b.off,
                      st.ok() ? "" : st.error().to_string());
          ctl->frees.fetch_add(1, std::memory_order_relaxed);
          break;
        }
        default: {
          Status st = c->retire(b.off);
          CHILD_CHECK(st.ok(), "seed {:#x}: retire of owned {}: {}", seed, b.off,
                      st.ok() ? "" : st.error().to_string());
          ctl->retires.fetch_add(1, std::memory_order_relaxed);
          break;
        }
      }
    }
    if (ops % 2048 < 32) {
      for (const Block& b : live) check(b, "periodic sweep");
    }
    ctl->ops[p][t].store(ops, std::memory_order_relaxed);
  }

  if (keep) {
    for (int k = 0; k < kKeep; k++) {
      Block b = alloc_one(16 + rng() % (k == 0 ? 200000 : 3000));
      Status st = c->publish(b.off);
      CHILD_CHECK(st.ok(), "seed {:#x}: publish({}): {}", seed, b.off,
                  st.ok() ? "" : st.error().to_string());
      ctl->kept_off[p][t][k].store(b.off);
      ctl->kept_len[p][t][k].store(b.len);
      ctl->kept_key[p][t][k].store(b.key);
    }
  }
  for (const Block& b : live) {
    check(b, "final release");
    Status st = c->free(b.off);
    CHILD_CHECK(st.ok(), "seed {:#x}: free({}): {}", seed, b.off,
                st.ok() ? "" : st.error().to_string());
  }
  Status st = sess->close();
  CHILD_CHECK(st.ok(), "seed {:#x} p{} t{}: close: {}", seed, p, t,
              st.ok() ? "" : st.error().to_string());
}

int child_main(const std::string& path, int p, uint64_t seed, uint64_t ms, Ctl* ctl, bool keep) {
  auto opened = Store::open(path);
  CHILD_CHECK(opened.ok(), "seed {:#x} p{}: open: {}", seed, p,
              opened.ok() ? "" : opened.error().to_string());
  std::unique_ptr<Store> store = std::move(opened).value();
  auto deadline = Clock::now() + milliseconds(ms);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] { run_thread(*store, p, t, seed, deadline, ctl, keep); });
  }
  for (auto& th : threads) th.join();
  store.reset();  // last close of this process
  return 0;
}

std::string problems_text(const VerifyReport& r) {
  std::string out;
  for (const auto& p : r.problems) out += "  " + p + "\n";
  return out;
}

void run_stress(bool keep) {
  const uint64_t seed = test_seed();
  const uint64_t ms = keep ? std::max<uint64_t>(1, stress_ms() / 2) : stress_ms();
  SCOPED_TRACE(seed_note(seed));
  std::printf("alloc stress: seed %#llx, %d processes x %d threads, %llu ms\n",
              (unsigned long long)seed, kProcs, kThreads, (unsigned long long)ms);
  TempDir dir("alloc-stress");
  const std::string path = dir.sub("store");

  // The parent stays attached throughout (watchdog on), so the final verify
  // sees the heap exactly as the children left it: nothing rebuilds it.
  auto opened = Store::open(path);
  ASSERT_TRUE(opened.ok()) << opened.error().to_string();
  std::unique_ptr<Store> store = std::move(opened).value();

  Shared<Ctl> ctl;
  Children kids;
  std::vector<pid_t> pids;
  auto t0 = Clock::now();
  for (int p = 0; p < kProcs; p++) {
    pids.push_back(kids.spawn([&, p] { return child_main(path, p, seed, ms, ctl.get(), keep); }));
  }
  bool all_ok = true;
  for (pid_t pid : pids) {
    int status = kids.wait(pid, milliseconds(ms + 120000));
    EXPECT_TRUE(exited_ok(status))
        << "child " << pid << " " << (status < 0 ? "timed out" : describe_status(status));
    all_ok &= exited_ok(status);
  }
  ASSERT_TRUE(all_ok);
  const double secs = ms_since(t0) / 1e3;

  uint64_t ops = 0;
  for (auto& a : ctl->ops)
    for (auto& b : a) ops += b.load();
  std::printf(
      "alloc stress: %llu ops (%llu allocs, %llu over 4 KiB, %llu frees, %llu retires, %llu double "
      "frees refused) in %.2f s\n",
      (unsigned long long)ops, (unsigned long long)ctl->allocs.load(),
      (unsigned long long)ctl->large_allocs.load(), (unsigned long long)ctl->frees.load(),
      (unsigned long long)ctl->retires.load(), (unsigned long long)ctl->double_frees_refused.load(),
      secs);
  EXPECT_GT(ctl->allocs.load(), 1000u);
  EXPECT_GT(ctl->large_allocs.load(), 0u);
  EXPECT_GT(ctl->retires.load(), 0u);

  // Sessions parked at a child's exit (purgatory still visible to a pin at
  // close) look dead now: reclaim them and wait for the table to empty.
  ASSERT_TRUE(store->reap_dead_sessions().ok());
  StoreStats st;
  bool empty = wait_until(
      [&] {
        (void)store->reap_dead_sessions();
        auto s = store->stats();
        if (!s.ok()) return false;
        st = *s;
        return st.sessions.empty();
      },
      milliseconds(5000), std::chrono::microseconds(2000));
  ASSERT_TRUE(empty) << "sessions left after every child exited:\n" << sessions_text(st);
  EXPECT_EQ(st.purgatory_bytes, 0u);

  auto rep = store->verify();
  ASSERT_TRUE(rep.ok()) << rep.error().to_string();
  EXPECT_TRUE(rep->exclusive);
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);
  const uint64_t want_live = keep ? uint64_t(kProcs) * kThreads * kKeep : 0;
  EXPECT_EQ(rep->blocks_cached, 0u) << "cached blocks left behind by closed sessions";
  EXPECT_EQ(rep->blocks_retired, 0u) << "retired blocks never freed";
  EXPECT_EQ(rep->blocks_live, want_live);
  EXPECT_GT(rep->blocks_checked, 0u);
  EXPECT_EQ(rep->blocks_checked, rep->blocks_free + rep->blocks_live)
      << "some blocks are neither free nor live (owned blocks leaked)";
  std::printf(
      "alloc stress: verify: %llu runs, %llu slabs, %llu large, %llu free runs, %llu blocks "
      "checked; file %llu bytes\n",
      (unsigned long long)rep->runs, (unsigned long long)rep->slabs,
      (unsigned long long)rep->large_runs, (unsigned long long)rep->free_runs,
      (unsigned long long)rep->blocks_checked, (unsigned long long)st.file_size);

  if (keep) {
    // Every block a child left published is intact, and can be freed.
    auto sess = store->session();
    ASSERT_TRUE(sess.ok()) << sess.error().to_string();
    SessionCore* c = stoa::internal::core_of(*sess);
    for (int p = 0; p < kProcs; p++) {
      for (int t = 0; t < kThreads; t++) {
        for (int k = 0; k < kKeep; k++) {
          uint64_t off = ctl->kept_off[p][t][k].load(), len = ctl->kept_len[p][t][k].load();
          auto r = c->read(off, len);
          ASSERT_TRUE(r.ok()) << r.error().to_string();
          EXPECT_EQ(check_pattern(*r, len, ctl->kept_key[p][t][k].load()), -1)
              << "kept block p" << p << " t" << t << " #" << k << " at " << off << " damaged";
          Status fs = c->free(off);
          EXPECT_TRUE(fs.ok()) << fs.error().to_string();
        }
      }
    }
    ASSERT_TRUE(sess->close().ok());
    auto rep2 = store->verify();
    ASSERT_TRUE(rep2.ok());
    EXPECT_TRUE(rep2->sound()) << problems_text(*rep2);
    EXPECT_EQ(rep2->blocks_live, 0u);
    EXPECT_EQ(rep2->blocks_cached, 0u);
  }

  // A clean last close, then a lone reopen: still sound, nothing owned.
  store.reset();
  auto again = Store::open(path);
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  auto rep3 = (*again)->verify();
  ASSERT_TRUE(rep3.ok());
  EXPECT_TRUE(rep3->sound()) << problems_text(*rep3);
  EXPECT_EQ(rep3->blocks_live, 0u);
  EXPECT_EQ(rep3->blocks_cached + rep3->blocks_retired, 0u);
}

TEST(AllocStress, FourProcessesTwoThreadsRandomSizes) { run_stress(false); }

TEST(AllocStress, ChildrenLeavePublishedBlocks) { run_stress(true); }

}  // namespace
}  // namespace stoa
