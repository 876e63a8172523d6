// Processes killed at random points (guarantee 3 of docs/guarantees.md, issue 2's
// "SIGKILLs random processes in a loop, at least 200 kills per suite run").
//
// Workers allocate, fill, publish, retire, free and read each other's
// published blocks under pins, with poison_freed on, while the parent
// SIGKILLs a random worker after a random 0-20 ms, respawns it, and now and
// then kills all of them at once (so the next opener is alone and repairs
// the heap after a crash). Survivors' watchdogs reclaim the dead.
//
// What is asserted at the end, and why it is exact:
//  - no session is "dead" shortly after the killing stops: survivors found
//    and reclaimed every killed session;
//  - sessions_recovered grew by at least the number of kills that hit a
//    worker after it had claimed its slot (each such death leaves a kLive
//    slot that someone must reclaim; a kill before the claim may leave
//    nothing to reclaim, so it is not counted);
//  - after a graceful stop and with only the parent attached (so nothing
//    rebuilds the heap), verify() is sound and exclusive, and no block is
//    cached or retired: every dead session's cache, private blocks and
//    purgatory went back;
//  - live blocks are accounted for exactly: a block becomes kLive only
//    between a worker recording it as pending and registering it, and it
//    leaves the registry only after being recorded as pending again, so at
//    the end every kLive block is in the registry or in a killed worker's
//    pending record. The parent frees the registered ones (checking their
//    contents) and the pending ones that are still live (a kill between
//    publish and register, or register and retire, leaks at most one or two
//    blocks per kill), after which verify() must count no live block at all.
//
// Two figures of docs/design.md, measured across real processes and printed
// as "claim:" lines with their asserted bounds:
//  - DeathDetectionLatency: a survivor's watchdog (interval 20 ms) reclaims
//    a SIGKILLed session within tens of ms, with nobody calling
//    reap_dead_sessions();
//  - ReclaimWalkCost: reclaiming a dead session walks the heap at about
//    150 ms per GiB of 64-byte blocks ("Cost of the walk").
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
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

constexpr int kWorkers = 3;
constexpr int kRegSlots = 24;  // registry slots per worker index
constexpr int kMaxSpawns = 8192;
constexpr uint64_t kMagic = 0x4b494c4c424c4b31ull;  // "KILLBLK1"

struct Spawn {
  std::atomic<int32_t> claimed;       // 1 once session() returned
  std::atomic<uint64_t> pending_new;  // being published / registered
  std::atomic<uint64_t> pending_old;  // being unregistered / retired
  std::atomic<uint64_t> ops;
};

struct Ctl {
  std::atomic<int32_t> stop;
  std::atomic<uint64_t> validations;
  std::atomic<uint64_t> reg[kWorkers][kRegSlots];
  Spawn spawns[kMaxSpawns];
};

// A published block: header, then a pattern keyed by `key`.
struct BlockHdr {
  uint64_t magic;
  uint64_t off;
  uint64_t key;
  uint64_t len;    // payload bytes
  uint64_t check;  // of the four words above
};
uint64_t hdr_check(const BlockHdr& h) {
  return splitmix(h.magic ^ splitmix(h.off ^ splitmix(h.key ^ h.len)));
}

std::string problems_text(const VerifyReport& r) {
  std::string out;
  for (const auto& p : r.problems) out += "  " + p + "\n";
  return out;
}

// Validates a published block in place; returns "" or what is wrong.
std::string validate(SessionCore* c, uint64_t off) {
  auto h = c->read(off, sizeof(BlockHdr));
  if (!h.ok()) return "read header: " + h.error().to_string();
  BlockHdr hdr;
  std::memcpy(&hdr, *h, sizeof(hdr));
  if (hdr.magic != kMagic) return fmt::format("bad magic {:#x}", hdr.magic);
  if (hdr.off != off) return fmt::format("header names offset {}", hdr.off);
  if (hdr.check != hdr_check(hdr)) return "header check word mismatch";
  if (hdr.len > (size_t{2} << 20)) return fmt::format("absurd length {}", hdr.len);
  auto p = c->read(off, sizeof(BlockHdr) + hdr.len);
  if (!p.ok()) return "read payload: " + p.error().to_string();
  int64_t bad = check_pattern(*p + sizeof(BlockHdr), hdr.len, hdr.key);
  if (bad >= 0) {
    return fmt::format("payload (key {:#x}, {} bytes) differs at byte {} (value {:#x})", hdr.key,
                       hdr.len, bad, uint8_t((*p)[sizeof(BlockHdr) + bad]));
  }
  return "";
}

size_t pick_size(std::mt19937_64& rng) {
  uint64_t r = rng() % 100;
  if (r < 70) return 1 + rng() % 1000;
  if (r < 95) return 1000 + rng() % 16000;
  return 16384 + rng() % (256 * 1024);
}

// --- the mixed-work worker --------------------------------------------------

int mixed_worker(const std::string& path, int w, int spawn, uint64_t seed, Ctl* ctl) {
  Options o;
  o.poison_freed = true;
  auto opened = Store::open(path, o);
  CHILD_CHECK(opened.ok(), "seed {:#x} worker {} spawn {}: open: {}", seed, w, spawn, err(opened));
  std::unique_ptr<Store> store = std::move(opened).value();
  auto sess = store->session();
  CHILD_CHECK(sess.ok(), "seed {:#x} worker {} spawn {}: session: {}", seed, w, spawn, err(sess));
  SessionCore* c = stoa::internal::core_of(*sess);
  Spawn& me = ctl->spawns[spawn];
  me.claimed.store(1);
  std::mt19937_64 rng(seed ^ splitmix(uint64_t(spawn) + 1));
  struct Priv {
    uint64_t off;
    size_t len;
    uint64_t key;
  };
  std::vector<Priv> priv;
  uint64_t seq = 0;
  auto key = [&] { return (uint64_t(spawn) << 32) | ++seq; };
  auto alloc_private = [&](size_t n) {
    auto r = c->alloc(n);
    CHILD_CHECK(r.ok(), "seed {:#x} spawn {}: alloc({}): {}", seed, spawn, n, err(r));
    Priv p{*r, n, key()};
    fill_pattern(c->write_ptr(p.off), n, p.key);
    return p;
  };
  auto check_private = [&](const Priv& p) {
    int64_t bad = check_pattern(c->view(p.off), p.len, p.key);
    CHILD_CHECK(bad < 0, "seed {:#x} spawn {}: private block {} ({} bytes) clobbered at byte {}",
                seed, spawn, p.off, p.len, bad);
  };

  while (ctl->stop.load(std::memory_order_relaxed) == 0) {
    uint64_t r = rng() % 100;
    if (r < 35) {
      // Replace one of this worker's registered blocks.
      int k = int(rng() % kRegSlots);
      size_t n = pick_size(rng);
      auto a = c->alloc(sizeof(BlockHdr) + n);
      CHILD_CHECK(a.ok(), "seed {:#x} spawn {}: alloc({}): {}", seed, spawn, n, err(a));
      BlockHdr h{kMagic, *a, key(), n, 0};
      h.check = hdr_check(h);
      char* p = c->write_ptr(*a);
      std::memcpy(p, &h, sizeof(h));
      fill_pattern(p + sizeof(h), n, h.key);
      uint64_t old = ctl->reg[w][k].load();
      me.pending_old.store(old);
      me.pending_new.store(*a);
      Status st = c->publish(*a);
      CHILD_CHECK(st.ok(), "seed {:#x} spawn {}: publish({}): {}", seed, spawn, *a, err(st));
      ctl->reg[w][k].store(*a);
      if (old != 0) {
        std::string bad = validate(c, old);
        CHILD_CHECK(bad.empty(), "seed {:#x} spawn {}: own registered block {}: {}", seed, spawn,
                    old, bad);
        st = c->retire(old);
        CHILD_CHECK(st.ok(), "seed {:#x} spawn {}: retire({}): {}", seed, spawn, old, err(st));
      }
      me.pending_old.store(0);
      me.pending_new.store(0);
    } else if (r < 70) {
      // Read other workers' blocks under a pin.
      SessionCore::PinGuard pin(*c);
      for (int i = 0; i < 4; i++) {
        uint64_t off = ctl->reg[rng() % kWorkers][rng() % kRegSlots].load();
        if (off == 0) continue;
        std::string bad = validate(c, off);
        CHILD_CHECK(bad.empty(), "seed {:#x} spawn {}: pinned read of block {}: {}", seed, spawn,
                    off, bad);
        ctl->validations.fetch_add(1, std::memory_order_relaxed);
      }
    } else if (r < 90 || priv.size() > 64) {
      if (!priv.empty() && (rng() % 2 == 0 || priv.size() > 64)) {
        size_t i = rng() % priv.size();
        Priv p = priv[i];
        priv[i] = priv.back();
        priv.pop_back();
        check_private(p);
        Status st = rng() % 3 == 0 ? c->retire(p.off) : c->free(p.off);
        CHILD_CHECK(st.ok(), "seed {:#x} spawn {}: release({}): {}", seed, spawn, p.off, err(st));
      } else {
        priv.push_back(alloc_private(pick_size(rng)));
      }
    } else if (r < 97) {
      // publish + free (a kLive block nobody else can reach)
      Priv p = alloc_private(pick_size(rng));
      me.pending_new.store(p.off);
      Status st = c->publish(p.off);
      CHILD_CHECK(st.ok(), "seed {:#x} spawn {}: publish({}): {}", seed, spawn, p.off, err(st));
      st = c->free(p.off);
      CHILD_CHECK(st.ok(), "seed {:#x} spawn {}: free of live {}: {}", seed, spawn, p.off, err(st));
      me.pending_new.store(0);
    } else {
      (void)c->collect();
    }
    me.ops.fetch_add(1, std::memory_order_relaxed);
  }
  for (const Priv& p : priv) {
    check_private(p);
    Status st = c->free(p.off);
    CHILD_CHECK(st.ok(), "seed {:#x} spawn {}: free({}): {}", seed, spawn, p.off, err(st));
  }
  Status st = sess->close();
  CHILD_CHECK(st.ok(), "seed {:#x} spawn {}: close: {}", seed, spawn, err(st));
  store.reset();
  return 0;
}

// --- the lock-path worker: bursts of one class, many large runs -------------

int hot_worker(const std::string& path, int w, int spawn, uint64_t seed, Ctl* ctl) {
  auto opened = Store::open(path);
  CHILD_CHECK(opened.ok(), "seed {:#x} worker {} spawn {}: open: {}", seed, w, spawn, err(opened));
  std::unique_ptr<Store> store = std::move(opened).value();
  Spawn& me = ctl->spawns[spawn];
  auto thread_main = [&](int t) {
    auto sess = store->session();
    CHILD_CHECK(sess.ok(), "seed {:#x} spawn {} t{}: session: {}", seed, spawn, t, err(sess));
    SessionCore* c = stoa::internal::core_of(*sess);
    me.claimed.store(1);
    std::mt19937_64 rng(seed ^ splitmix(uint64_t(spawn) * 2 + uint64_t(t) + 1));
    std::vector<std::pair<uint64_t, uint64_t>> blocks;  // offset, key
    uint64_t seq = 0;
    while (ctl->stop.load(std::memory_order_relaxed) == 0) {
      bool large = rng() % 4 == 0;
      size_t size = large ? 4096 * (1 + rng() % 40) : 1 + rng() % 4080;
      size_t n = large ? 1 + rng() % 8 : 20 + rng() % 300;  // enough to spill the cache
      blocks.clear();
      for (size_t i = 0; i < n; i++) {
        auto r = c->alloc(size);
        CHILD_CHECK(r.ok(), "seed {:#x} spawn {}: alloc({}): {}", seed, spawn, size, err(r));
        uint64_t k = (uint64_t(spawn) << 40) | (uint64_t(t) << 36) | ++seq;
        // Pattern a small block whole, a large one at both ends.
        if (size <= 4096) {
          fill_pattern(c->write_ptr(*r), size, k);
        } else {
          fill_pattern(c->write_ptr(*r), 64, k);
          fill_pattern(c->write_ptr(*r + size - 64), 64, ~k);
        }
        blocks.emplace_back(*r, k);
      }
      for (auto [off, k] : blocks) {
        bool intact = size <= 4096 ? check_pattern(c->view(off), size, k) < 0
                                   : check_pattern(c->view(off), 64, k) < 0 &&
                                         check_pattern(c->view(off + size - 64), 64, ~k) < 0;
        CHILD_CHECK(intact, "seed {:#x} spawn {}: block {} ({} bytes) clobbered", seed, spawn, off,
                    size);
        Status st = rng() % 5 == 0 ? c->retire(off) : c->free(off);
        CHILD_CHECK(st.ok(), "seed {:#x} spawn {}: release({}): {}", seed, spawn, off, err(st));
      }
      me.ops.fetch_add(n, std::memory_order_relaxed);
    }
    Status st = sess->close();
    CHILD_CHECK(st.ok(), "seed {:#x} spawn {}: close: {}", seed, spawn, err(st));
  };
  std::thread other(thread_main, 1);
  thread_main(0);
  other.join();
  store.reset();
  return 0;
}

// --- the parent's kill loop and final checks ---------------------------------

struct LoopResult {
  int kills = 0;
  int kills_after_claim = 0;
  int spawns = 0;
  bool failed = false;
  Clock::time_point last_kill;
};

using WorkerFn = int (*)(const std::string&, int, int, uint64_t, Ctl*);

// Kills random workers until `target` kills; every `mass_every` kills, kills
// them all at once. Returns with the workers still running.
LoopResult kill_loop(Children& kids, std::vector<pid_t>& pids, std::vector<int>& spawn_of,
                     const std::string& path, uint64_t seed, Ctl* ctl, WorkerFn fn, int target,
                     int max_delay_ms, int mass_every) {
  LoopResult res;
  std::mt19937_64 rng(seed);
  auto spawn = [&](int w) {
    int s = res.spawns++;
    spawn_of[w] = s;
    pids[w] = kids.spawn([=] { return fn(path, w, s, seed, ctl); });
  };
  for (int w = 0; w < kWorkers; w++) spawn(w);
  auto kill_worker = [&](int w) {
    int status = kids.kill_one(pids[w]);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
      ADD_FAILURE() << "worker " << w << " (spawn " << spawn_of[w]
                    << ") ended on its own: " << describe_status(status) << "; seed "
                    << fmt::format("{:#x}", seed);
      res.failed = true;
    }
    res.kills++;
    res.last_kill = Clock::now();
    if (ctl->spawns[spawn_of[w]].claimed.load() != 0) res.kills_after_claim++;
  };
  while (res.kills < target && !res.failed && res.spawns + kWorkers < kMaxSpawns) {
    std::this_thread::sleep_for(
        std::chrono::microseconds(rng() % (uint64_t(max_delay_ms) * 1000 + 1)));
    if (mass_every > 0 && res.kills % mass_every == mass_every - 1) {
      for (int w = 0; w < kWorkers; w++) kill_worker(w);
      for (int w = 0; w < kWorkers; w++) spawn(w);
    } else {
      // Mostly a worker that is already at work (has its session), so most
      // kills land mid-operation; sometimes any, which also hits opens,
      // claims and recoveries of dead slots. On a loaded machine every worker
      // may still be starting: wait (up to 500 ms) for one to claim its slot
      // rather than let the kill land before any work.
      int w = int(rng() % kWorkers);
      if (rng() % 4 != 0) {
        (void)wait_until(
            [&] {
              for (int i = 0; i < kWorkers; i++) {
                if (ctl->spawns[spawn_of[i]].claimed.load() != 0) return true;
              }
              return false;
            },
            milliseconds(500), std::chrono::microseconds(200));
        for (int i = 0; i < kWorkers; i++) {
          int cand = (w + i) % kWorkers;
          if (ctl->spawns[spawn_of[cand]].claimed.load() != 0) {
            w = cand;
            break;
          }
        }
      }
      kill_worker(w);
      spawn(w);
    }
  }
  return res;
}

// After the loop: the killed are reclaimed by the (running) survivors; then a
// graceful stop and exact accounting with only the parent attached.
void final_checks(Children& kids, std::vector<pid_t>& pids, const std::string& path, Ctl* ctl,
                  const LoopResult& res, uint64_t recovered_before, bool registry) {
  Options o;
  o.watchdog_interval = milliseconds(0);  // the parent only observes
  o.log_threads = false;
  auto opened = Store::open(path, o);
  ASSERT_TRUE(opened.ok()) << opened.error().to_string();
  std::unique_ptr<Store> store = std::move(opened).value();

  // 1. Every killed session is reclaimed by the survivors' watchdogs.
  StoreStats st;
  bool clean = wait_until(
      [&] {
        auto s = store->stats();
        if (!s.ok()) return false;
        st = *s;
        for (const auto& i : st.sessions) {
          if (i.state == "dead" || i.state == "recovering") return false;
        }
        return true;
      },
      milliseconds(3000), std::chrono::microseconds(1000));
  EXPECT_TRUE(clean) << "dead sessions not reclaimed by the survivors:\n" << sessions_text(st);
  std::printf("kill: survivors had reclaimed every dead session %.1f ms after the last kill\n",
              ms_since(res.last_kill));

  // 2. Graceful stop.
  ctl->stop.store(1);
  for (int w = 0; w < kWorkers; w++) {
    int status = kids.wait(pids[w], milliseconds(60000));
    EXPECT_TRUE(exited_ok(status))
        << "worker " << w << ": " << (status < 0 ? "timed out" : describe_status(status));
  }
  ASSERT_FALSE(::testing::Test::HasFailure());

  // 3. Only the parent is attached. Reclaim the sessions parked at exit.
  bool empty = wait_until(
      [&] {
        (void)store->reap_dead_sessions();
        auto s = store->stats();
        if (!s.ok()) return false;
        st = *s;
        return st.sessions.empty();
      },
      milliseconds(5000), std::chrono::microseconds(2000));
  ASSERT_TRUE(empty) << "sessions left after every worker exited:\n" << sessions_text(st);
  const uint64_t recovered = st.sessions_recovered - recovered_before;
  uint64_t ops = 0;
  for (int s = 0; s < res.spawns; s++) ops += ctl->spawns[s].ops.load();
  std::printf(
      "kill: %d kills (%d after the victim claimed its slot), %d spawns, %llu sessions "
      "recovered, %llu ops, %llu pinned validations\n",
      res.kills, res.kills_after_claim, res.spawns, (unsigned long long)recovered,
      (unsigned long long)ops, (unsigned long long)ctl->validations.load());
  EXPECT_GE(recovered, uint64_t(res.kills_after_claim))
      << "some killed sessions were never reclaimed";
  EXPECT_GE(res.kills_after_claim, res.kills / 4) << "most kills landed before workers got going";

  auto rep = store->verify();
  ASSERT_TRUE(rep.ok()) << rep.error().to_string();
  EXPECT_TRUE(rep->exclusive);
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);
  EXPECT_EQ(rep->blocks_cached, 0u) << "a dead session's cache was not taken back";
  EXPECT_EQ(rep->blocks_retired, 0u) << "a dead session's purgatory was not freed";
  EXPECT_EQ(rep->blocks_checked, rep->blocks_free + rep->blocks_live)
      << "owned blocks of dead sessions leaked";

  // 4. Live blocks: exactly the registry plus what kills left pending.
  auto sess = store->session();
  ASSERT_TRUE(sess.ok()) << sess.error().to_string();
  SessionCore* c = stoa::internal::core_of(*sess);
  std::set<uint64_t> registered;
  if (registry) {
    for (auto& row : ctl->reg) {
      for (auto& slot : row) {
        uint64_t off = slot.load();
        if (off == 0) continue;
        registered.insert(off);
        std::string bad = validate(c, off);
        EXPECT_EQ(bad, "") << "registered block " << off;
      }
    }
  }
  std::set<uint64_t> candidates;
  for (int s = 0; s < res.spawns; s++) {
    for (uint64_t off : {ctl->spawns[s].pending_new.load(), ctl->spawns[s].pending_old.load()}) {
      if (off != 0 && !registered.count(off)) candidates.insert(off);
    }
  }
  uint64_t leaked_live = 0;
  for (uint64_t off : candidates) {
    if (c->free(off).ok()) leaked_live++;  // still live: a kill left it between states
  }
  EXPECT_EQ(rep->blocks_live, registered.size() + leaked_live)
      << "live blocks that no registry or pending record explains";
  EXPECT_LE(leaked_live, uint64_t(2 * res.kills));
  for (uint64_t off : registered) {
    Status fs = c->free(off);
    EXPECT_TRUE(fs.ok()) << fs.error().to_string();
  }
  std::printf(
      "kill: %zu registered blocks intact, %llu live blocks left by kills between publish "
      "and register\n",
      registered.size(), (unsigned long long)leaked_live);
  ASSERT_TRUE(sess->close().ok());
  auto rep2 = store->verify();
  ASSERT_TRUE(rep2.ok());
  EXPECT_TRUE(rep2->sound()) << problems_text(*rep2);
  EXPECT_EQ(rep2->blocks_live, 0u);
  EXPECT_EQ(rep2->blocks_cached + rep2->blocks_retired, 0u);

  // 5. Last close, lone reopen: sound.
  store.reset();
  auto again = Store::open(path, o);
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  auto rep3 = (*again)->verify();
  ASSERT_TRUE(rep3.ok());
  EXPECT_TRUE(rep3->sound()) << problems_text(*rep3);
  EXPECT_EQ(rep3->blocks_live, 0u);
}

void run_kill_test(const char* tag, WorkerFn fn, int target, int max_delay_ms, int mass_every,
                   bool registry) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  std::printf("kill: seed %#llx, %d workers, %d kills\n", (unsigned long long)seed, kWorkers,
              target);
  TempDir dir(tag);
  const std::string path = dir.sub("store");
  uint64_t recovered_before = 0;
  {
    auto s = Store::open(path);
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    recovered_before = (*s)->stats()->sessions_recovered;
  }
  Shared<Ctl> ctl;
  Children kids;
  std::vector<pid_t> pids(kWorkers);
  std::vector<int> spawn_of(kWorkers);
  auto t0 = Clock::now();
  LoopResult res =
      kill_loop(kids, pids, spawn_of, path, seed, ctl.get(), fn, target, max_delay_ms, mass_every);
  std::printf("kill: loop took %.0f ms\n", ms_since(t0));
  ASSERT_FALSE(res.failed);
  ASSERT_GE(res.kills, target);
  final_checks(kids, pids, path, ctl.get(), res, recovered_before, registry);
}

TEST(Kill, RandomKillsDuringMixedWork) {
  run_kill_test("kill-mixed", mixed_worker, int(scaled(200)), 20, 50, true);
}

// Bursts of one size class (cache refills and spills: class locks) and
// multi-page runs (page lock), two threads per process, killed at random.
TEST(Kill, RandomKillsOnAllocatorLockPaths) {
  run_kill_test("kill-hot", hot_worker, int(scaled(100)), 10, 40, false);
}

// A killed session's slot is reclaimed by a surviving process's watchdog
// within tens of milliseconds of the death (docs/design.md: "the watchdog
// interval, default 20 ms"), and its pin stops holding the cycle back. The
// parent only observes (stats() probes, never reclaims); nobody calls
// reap_dead_sessions().
//
// Docs: within tens of ms, the watchdog interval (20 ms). Asserted: p50 <=
// 40 ms (interval 20 ms + the survivor's claim and reclaim + a scheduler
// tick or two on a loaded 2-core VM, ASan included), each kill <= 250 ms
// (a gross-regression guard: with ctest running two suites at once on two
// cores a survivor can lose the CPU for tens of ms). Measured: Release p50
// 19 ms, max 23 ms.
constexpr double kDeathP50Ms = 40;
constexpr double kDeathMaxMs = 250;

TEST(Kill, DeathDetectionLatency) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  TempDir dir("kill-latency");
  const std::string path = dir.sub("store");
  Options observer;
  observer.watchdog_interval = milliseconds(0);  // the survivor does the reclaiming
  observer.log_threads = false;
  auto opened = Store::open(path, observer);
  ASSERT_TRUE(opened.ok()) << opened.error().to_string();
  std::unique_ptr<Store> store = std::move(opened).value();

  struct LatCtl {
    std::atomic<int32_t> stop;
    std::atomic<int32_t> survivor_ready;
    std::atomic<int32_t> victim_ready;
    std::atomic<uint32_t> victim_slot;
    std::atomic<uint64_t> victim_pin;
  };
  Shared<LatCtl> ctl;
  Children kids;
  pid_t survivor = kids.spawn([&] {
    auto s = Store::open(path);  // default watchdog: 20 ms
    CHILD_CHECK(s.ok(), "survivor open: {}", err(s));
    auto sess = (*s)->session();
    CHILD_CHECK(sess.ok(), "survivor session: {}", err(sess));
    ctl->survivor_ready.store(1);
    while (ctl->stop.load() == 0) std::this_thread::sleep_for(milliseconds(1));
    return 0;
  });
  ASSERT_TRUE(wait_until([&] { return ctl->survivor_ready.load() == 1; }, milliseconds(10000)));

  const int rounds = int(scaled(10));
  std::vector<double> lat;
  for (int i = 0; i < rounds; i++) {
    ctl->victim_ready.store(0);
    pid_t victim = kids.spawn([&] {
      auto s = Store::open(path);
      CHILD_CHECK(s.ok(), "victim open: {}", err(s));
      auto sess = (*s)->session();
      CHILD_CHECK(sess.ok(), "victim session: {}", err(sess));
      stoa::internal::core_of(*sess)->pin();
      ctl->victim_slot.store(sess->slot());
      ctl->victim_pin.store(
          stoa::cycle::pin_of(*stoa::internal::core_of(*sess)->slot_ptr()).cycle.load());
      ctl->victim_ready.store(1);
      for (;;) std::this_thread::sleep_for(milliseconds(100));
      return 0;
    });
    ASSERT_TRUE(wait_until([&] { return ctl->victim_ready.load() == 1; }, milliseconds(10000)));
    const uint32_t slot = ctl->victim_slot.load();
    const uint64_t pinned = ctl->victim_pin.load();
    {
      auto s = store->stats();
      ASSERT_TRUE(s.ok());
      bool listed = false;
      for (const auto& si : s->sessions)
        listed |= si.slot == slot && si.pid == victim && si.state == "live";
      ASSERT_TRUE(listed) << "victim's session not listed as live";
    }
    auto t0 = Clock::now();
    kids.kill_one(victim);
    bool gone = wait_until(
        [&] {
          auto s = store->stats();
          if (!s.ok()) return false;
          for (const auto& si : s->sessions) {
            if (si.slot == slot && si.pid == victim) return false;
          }
          return true;
        },
        milliseconds(5000), std::chrono::microseconds(100));
    double ms = ms_since(t0);
    ASSERT_TRUE(gone) << "dead session in slot " << slot << " not reclaimed after 5 s";
    lat.push_back(ms);
    EXPECT_LE(ms, kDeathMaxMs) << "dead session reclaimed only after " << ms << " ms";
    // The dead pin no longer holds the cycle back.
    EXPECT_TRUE(
        wait_until([&] { return store->stats()->current_cycle >= pinned + 2; }, milliseconds(1000)))
        << "cycle stuck at " << store->stats()->current_cycle << " behind a dead pin at " << pinned;
  }
  ctl->stop.store(1);
  int status = kids.wait(survivor, milliseconds(30000));
  EXPECT_TRUE(exited_ok(status)) << describe_status(status);
  const auto [p50, lat_max] = p50_max(lat);
  std::printf(
      "claim: a survivor's watchdog (interval 20 ms) reclaims a SIGKILLed session within tens "
      "of ms: measured p50 %.1f ms, max %.1f ms over %zu kills, asserted p50 <= %.0f ms, max <= "
      "%.0f ms\n",
      p50, lat_max, lat.size(), kDeathP50Ms, kDeathMaxMs);
  EXPECT_LE(p50, kDeathP50Ms) << "median death-to-reclaim latency " << p50 << " ms";
  auto rep = store->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);
}

// The cost of reclaiming one dead session grows with the heap (a walk of
// every run header and block tag, docs/design.md "Cost of the walk"): a
// heap of 64-byte blocks is filled to each size, a session-holding child is
// SIGKILLed, and the survivor's reap_dead_sessions() is timed.
TEST(Kill, ReclaimWalkCost) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  TempDir dir("kill-walk");
  const std::string path = dir.sub("store");
  Options o;
  o.watchdog_interval = milliseconds(0);  // only the timed call reclaims
  o.log_threads = false;
  o.durability = Durability::kNone;
  auto opened = Store::open(path, o);
  ASSERT_TRUE(opened.ok()) << err(opened);
  std::unique_ptr<Store> store = std::move(opened).value();
  auto sr = store->session();
  ASSERT_TRUE(sr.ok()) << err(sr);
  SessionCore* core = stoa::internal::core_of(*sr);
  struct WalkCtl {
    std::atomic<int32_t> ready;
  };
  Shared<WalkCtl> ctl;
  Children kids;
  const uint64_t sizes[] = {uint64_t{16} << 20, uint64_t{64} << 20, uint64_t{256} << 20};
  double per_gib = 0;  // at the largest heap, where the walk dominates
  for (uint64_t target : sizes) {
    for (;;) {
      auto st = store->stats();
      ASSERT_TRUE(st.ok());
      if (st->file_size >= target) break;
      for (int i = 0; i < 65536; i++) {
        auto b = core->alloc(48);
        ASSERT_TRUE(b.ok()) << err(b);
        ASSERT_TRUE(core->publish(*b).ok());
      }
    }
    std::vector<double> ms;
    for (int k = 0; k < 3; k++) {
      ctl->ready.store(0);
      pid_t victim = kids.spawn([&] {
        auto s = Store::open(path, o);
        CHILD_CHECK(s.ok(), "victim open: {}", err(s));
        auto sess = (*s)->session();
        CHILD_CHECK(sess.ok(), "victim session: {}", err(sess));
        for (int i = 0; i < 100; i++)
          CHILD_CHECK(stoa::internal::core_of(*sess)->alloc(48).ok(), "alloc");
        ctl->ready.store(1);
        for (;;) std::this_thread::sleep_for(milliseconds(100));
        return 0;
      });
      ASSERT_TRUE(wait_until([&] { return ctl->ready.load() == 1; }, milliseconds(10000)));
      kids.kill_one(victim);
      const auto t0 = Clock::now();
      auto n = store->reap_dead_sessions();
      ms.push_back(ms_since(t0));
      ASSERT_TRUE(n.ok()) << err(n);
      EXPECT_EQ(*n, 1u);
    }
    std::sort(ms.begin(), ms.end());
    auto st = store->stats();
    ASSERT_TRUE(st.ok());
    const double gib = double(st->file_size) / double(uint64_t{1} << 30);
    std::printf(
        "walk: heap %.0f MiB (used %.0f MiB): reclaim p50 %.2f ms, max %.2f ms, %.0f ms/GiB\n",
        gib * 1024, double(st->used_bytes) / (1 << 20), ms[1], ms.back(), ms[1] / gib);
    // The fastest of three: the cost of the walk itself, not of the other
    // tests that ctest runs beside this one on two cores.
    per_gib = ms[0] / gib;
  }
  // Docs (design.md, "Cost of the walk"): about 150 ms per GiB of 64-byte
  // blocks on the 2-core reference VM (Release, idle: 155-167 ms/GiB; 295
  // beside a build; about 440 under ASan). Asserted: 500 ms/GiB (3x, for a
  // loaded 2-core VM), 1500 under a sanitizer's instrumented loads.
  const double bound = kSanitized ? 1500 : 500;
  std::printf(
      "claim: reclaiming a dead session walks the heap at about 150 ms per GiB of 64-byte "
      "blocks: measured %.0f ms/GiB at 256 MiB (fastest of 3), asserted <= %.0f ms/GiB\n",
      per_gib, bound);
  EXPECT_LE(per_gib, bound);
}

}  // namespace
}  // namespace stoa
