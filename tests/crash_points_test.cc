// Named crash points (src/crash/crash_point.h): for every point of every
// protocol whose crash the code claims to survive, worker processes are
// killed exactly there, the store is recovered, and the full invariants are
// checked. A point that no workload reaches fails the test, and so does a
// recovery branch (rolled forward, undone, log range settled, frozen node
// replaced, heap list repaired, heap rebuilt) that no kill made recovery
// take.
//
// One round for point P: three workers, each armed to SIGKILL itself at the
// n-th hit of P (n small and random), and one victim worker that the parent
// SIGKILLs at a random moment (so there are dead sessions to reclaim), run
// a workload that passes every protocol step: bank transfers between 8
// accounts (conflicts, validation failures, padding records), a per-worker
// counter and a fresh key per commit (index splits and freezes), values
// that are sometimes 20-60 KiB (large runs split and merged), a window of
// kKeep live keys per worker (deletes, trimming, frees), session reopened
// every 8 commits (claims, reclaims of dead slots), explicit and automatic
// checkpoints, 64 KiB log segments, a small data file that grows, and the
// modes sync and group (flusher live) or none. Recovery is either by a
// survivor (the parent holds the store open and reaps the dead) or by a
// lone open after every worker is gone, alternating.
//
// After each round: every worker's counter holds at least its last
// acknowledged commit and at most its last attempted one; exactly the keys
// of the kKeep commits up to that counter exist, each with its exact value
// (no partial commit: the counter and the key are written by one
// transaction); the accounts sum to their total (no lost update: the
// history is serializable); verify is sound and exclusive; the store takes
// new commits; and a lone reopen finds the same state.
//
// Each group of points (txn., log., ckpt., index., heap., session.) is one
// test, printing `crash points: N named, N killed at, N recovered`.
// STOA_TEST_SEED replays a run; STOA_CRASH_ROUNDS (default 2: one
// survivor and one lone-open recovery) sets the rounds per point; STOA_CRASH_ONLY=<name> runs one
// point.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "crash/crash_point.h"
#include "stoa/store.h"
#include "test_util.h"

namespace stoa {
namespace {

using namespace stoa::test;
namespace crash = internal::crash;

constexpr int kArmed = 3;             // workers armed at the point
constexpr int kWorkers = kArmed + 1;  // the last one is the parent's victim
constexpr int kAccounts = 8;
constexpr int64_t kBalance = 1000;
constexpr uint64_t kKeep = 12;  // live fresh keys per worker

struct Ctl {
  std::atomic<uint64_t> acked[kWorkers];      // last commit that returned ok
  std::atomic<uint64_t> attempted[kWorkers];  // last commit started
  std::atomic<uint64_t> commits;
};

std::string acct(int i) { return fmt::format("acct/{}", i); }
std::string ctr(int w) { return fmt::format("ctr/{}", w); }
std::string fresh_key(int w, uint64_t seq) { return fmt::format("n/{}/{:08}", w, seq); }

// The value of worker w's key for commit seq: its length and bytes follow
// from (w, seq), so a checker recomputes it; one in ten is 20-60 KiB.
std::string fresh_value(int w, uint64_t seq) {
  uint64_t h = splitmix(uint64_t(w) * 1'000'003 + seq);
  size_t len = h % 10 == 0 ? 20'000 + h % 40'000 : 20 + h % 400;
  std::string v = fmt::format("{}:{}:", w, seq);
  v.resize(len, char('a' + h % 26));
  return v;
}

Options store_options(Durability mode) {
  Options o;
  o.initial_size = 256 << 10;
  o.grow_chunk = 128 << 10;
  o.max_size = 512 << 20;
  o.max_sessions = 64;  // workers park closed sessions while a dead pin blocks the cycle
  o.log_segment_size = 64 << 10;
  o.checkpoint_log_bytes = 96 << 10;
  o.group_window = std::chrono::microseconds(300);
  o.durability = mode;
  return o;
}

// One commit of worker w: a transfer, its counter, a fresh key, and the
// delete of the key that leaves its window.
Status work(Txn& t, int w, uint64_t seq, std::mt19937_64& rng) {
  const int a = int(rng() % kAccounts), b = int((a + 1 + rng() % (kAccounts - 1)) % kAccounts);
  auto va = t.get(acct(a));
  if (!va.ok()) return va.error();
  auto vb = t.get(acct(b));
  if (!vb.ok()) return vb.error();
  const int64_t amount = int64_t(rng() % 50);
  STOA_TRY(t.put(acct(a), std::to_string(std::stoll(va->copy()) - amount)));
  STOA_TRY(t.put(acct(b), std::to_string(std::stoll(vb->copy()) + amount)));
  STOA_TRY(t.put(ctr(w), std::to_string(seq)));
  STOA_TRY(t.put(fresh_key(w, seq), fresh_value(w, seq)));
  if (seq > kKeep) STOA_TRY(t.del(fresh_key(w, seq - kKeep)));
  return {};
}

int worker_main(const std::string& path, const Options& o, int w, uint64_t seed, Ctl* ctl,
                std::optional<crash::Point> point, uint64_t nth, milliseconds run_for) {
  if (point) crash::arm(*point, nth);  // before open: claims and recovery count too
  auto opened = Store::open(path, o);
  CHILD_CHECK(opened.ok(), "open: {}", err(opened));
  Store& store = **opened;
  std::mt19937_64 rng(seed);
  const auto deadline = Clock::now() + run_for;
  Session s;
  TransactOptions topts;
  topts.max_attempts = 1'000'000;
  for (uint64_t seq = 1; Clock::now() < deadline; seq++) {
    if (seq % 8 == 1 || !s.is_open()) {
      if (s.is_open()) CHILD_CHECK(s.close().ok(), "close");
      auto sr = store.session();
      CHILD_CHECK(sr.ok(), "session: {}", err(sr));
      s = std::move(*sr);
    }
    ctl->attempted[w].store(seq);
    auto r = s.transact([&](Txn& t) { return work(t, w, seq, rng); }, topts);
    CHILD_CHECK(r.ok(), "commit {} of worker {}: {}", seq, w, err(r));
    ctl->acked[w].store(seq);
    ctl->commits.fetch_add(1);
    if (seq % 20 == 0) {
      auto c = store.checkpoint();
      CHILD_CHECK(c.ok() || c.code() == Code::kBusy, "checkpoint: {}", err(c));
    }
  }
  return 0;
}

// Seeds the accounts (a fresh store).
void seed_store(Store& store) {
  auto s = store.session();
  ASSERT_TRUE(s.ok()) << err(s);
  auto r = s->transact([](Txn& t) -> Status {
    for (int i = 0; i < kAccounts; i++) STOA_TRY(t.put(acct(i), std::to_string(kBalance)));
    return {};
  });
  ASSERT_TRUE(r.ok()) << err(r);
}

// Every invariant of a recovered store (see the top of the file).
void check_state(Store& store, const Ctl& ctl, const std::string& when) {
  SCOPED_TRACE(when);
  auto all = read_all(store);
  ASSERT_TRUE(all.ok()) << err(all);
  int64_t sum = 0;
  for (int i = 0; i < kAccounts; i++) {
    ASSERT_TRUE(all->count(acct(i))) << acct(i) << " is missing";
    sum += std::stoll(all->at(acct(i)));
  }
  EXPECT_EQ(sum, kAccounts * kBalance) << "the accounts lost or gained money";
  size_t expected_keys = kAccounts;
  for (int w = 0; w < kWorkers; w++) {
    const uint64_t acked = ctl.acked[w].load(), attempted = ctl.attempted[w].load();
    uint64_t v = 0;
    if (all->count(ctr(w))) v = std::stoull(all->at(ctr(w)));
    ASSERT_GE(v, acked) << "worker " << w << ": an acknowledged commit is missing";
    ASSERT_LE(v, attempted) << "worker " << w << ": a commit that was never made is present";
    if (v > 0) expected_keys++;
    for (uint64_t seq = v > kKeep ? v - kKeep + 1 : 1; seq <= v; seq++) {
      auto it = all->find(fresh_key(w, seq));
      ASSERT_TRUE(it != all->end()) << fresh_key(w, seq) << " is missing (counter " << v << ")";
      ASSERT_EQ(it->second, fresh_value(w, seq)) << fresh_key(w, seq) << " has a wrong value";
      expected_keys++;
    }
  }
  EXPECT_EQ(all->size(), expected_keys) << "keys outside every worker's window are present";
  auto rep = store.verify();
  ASSERT_TRUE(rep.ok()) << err(rep);
  EXPECT_TRUE(rep->exclusive);
  EXPECT_TRUE(rep->sound()) << rep->problems.front();
}

// After recovery the store takes commits (the writes also descend through
// every part of the index, so a frozen node left by a kill gets replaced).
void write_after(Store& store) {
  auto s = store.session();
  ASSERT_TRUE(s.ok()) << err(s);
  for (int k = 0; k < 64; k++) {
    auto r = s->transact([&](Txn& t) -> Status {
      for (int w = 0; w < kWorkers; w++)
        STOA_TRY(t.put(fmt::format("n/{}/{:08}x", w, uint64_t(k) * 37 % 400), "x"));
      if (k % 8 == 0) STOA_TRY(t.put("big", std::string(30'000, 'b')));
      return {};
    });
    ASSERT_TRUE(r.ok()) << err(r);
  }
  auto r = s->transact([](Txn& t) -> Status {
    auto it = t.prefix("n/");
    if (!it.ok()) return it.error();
    std::vector<std::string> extra;
    while (it->valid()) {
      if (it->key().back() == 'x') extra.emplace_back(it->key());
      STOA_TRY(it->next());
    }
    for (const auto& k : extra) STOA_TRY(t.del(k));
    return t.del("big");
  });
  ASSERT_TRUE(r.ok()) << err(r);
}

RecoveryCounts counts(Store& store) {
  auto st = store.stats();
  EXPECT_TRUE(st.ok()) << err(st);
  return st.ok() ? st->recovery : RecoveryCounts{};
}

RecoveryCounts operator-(const RecoveryCounts& a, const RecoveryCounts& b) {
  return {a.rolled_forward - b.rolled_forward, a.undone - b.undone,
          a.log_settled - b.log_settled,       a.nodes_unfrozen - b.nodes_unfrozen,
          a.heap_repaired - b.heap_repaired,   a.heap_rebuilt - b.heap_rebuilt};
}
void operator+=(RecoveryCounts& a, const RecoveryCounts& b) {
  a.rolled_forward += b.rolled_forward;
  a.undone += b.undone;
  a.log_settled += b.log_settled;
  a.nodes_unfrozen += b.nodes_unfrozen;
  a.heap_repaired += b.heap_repaired;
  a.heap_rebuilt += b.heap_rebuilt;
}

// What one round saw.
struct Round {
  int fired = 0;  // armed workers that died at the point
  RecoveryCounts branches;
  bool ok = false;
};

// The branches recovery must have taken for `fired` workers killed at the
// point: each dead commit at kInstalling is rolled forward, each one
// between its commit list and the commit point is undone, and each with a
// reserved log range not yet written gets that range settled. A dead holder
// of the page lock is repaired by the next locker (write_after allocates a
// large value: it takes the page lock), and a lone open after every armed
// worker was killed rebuilds the heap.
void expect_branches(std::string_view name, bool survivor, int fired, const RecoveryCounts& b) {
  if (fired == 0) return;
  const uint64_t n = uint64_t(fired);
  auto any = [&](std::initializer_list<std::string_view> names) {
    for (auto x : names)
      if (x == name) return true;
    return false;
  };
  if (any({"txn.commit.point", "txn.commit.logged", "txn.commit.install",
           "txn.commit.installed"})) {
    EXPECT_GE(b.rolled_forward, n) << "dead commits past the commit point were not rolled forward";
  }
  if (any({"txn.commit.list", "txn.commit.lock", "txn.commit.reserved", "txn.commit.validated",
           "txn.commit.padding", "log.reserve.locked", "log.reserve.advanced"})) {
    EXPECT_GE(b.undone, n) << "dead commits before the commit point were not undone";
  }
  if (any({"txn.commit.reserved", "txn.commit.validated", "txn.commit.padding", "txn.commit.point",
           "log.reserve.advanced"})) {
    EXPECT_GE(b.log_settled, n) << "dead commits' log ranges were not settled";
  }
  if (survivor && any({"heap.run.split", "heap.run.merge", "heap.grow"})) {
    EXPECT_GE(b.heap_repaired, 1u) << "the page lock of a dead holder was not repaired";
  }
  if (!survivor && fired == kArmed) {  // the last to die was reclaimed by nobody
    EXPECT_GE(b.heap_rebuilt, 1u) << "the lone open after a kill did not rebuild";
  }
}

// How many hits before the kill: small, so rare steps are reached too.
uint64_t pick_nth(crash::Point p, std::mt19937_64& rng) {
  std::string_view n = crash::name(p);
  if (n.starts_with("ckpt.") || n.starts_with("session.reclaim") || n == "heap.grow" ||
      n == "log.segment.created")
    return 1;
  return 1 + rng() % 3;
}

void run_round(crash::Point p, bool survivor, uint64_t seed, Round* out) {
  std::mt19937_64 rng(seed);
  const std::string_view name = crash::name(p);
  const bool flushes = name.starts_with("log.flush");
  const Durability modes[] = {Durability::kSync, Durability::kGroup, Durability::kNone};
  const Durability mode = modes[rng() % (flushes ? 2 : 3)];
  // Reclaim points need the workers to do the reclaiming.
  if (name.starts_with("session.reclaim")) survivor = false;
  SCOPED_TRACE(fmt::format("point {} mode {} {} (round seed {}; replay with the test's seed)", name,
                           int(mode), survivor ? "survivor" : "lone open", seed));
  TempDir dir("crashpt");
  const std::string path = dir.sub("store");
  const Options o = store_options(mode);
  Shared<Ctl> ctl;
  RecoveryCounts before;
  std::unique_ptr<Store> held;
  {
    auto opened = Store::open(path, o);
    ASSERT_TRUE(opened.ok()) << err(opened);
    seed_store(**opened);
    before = counts(**opened);
    if (survivor) held = std::move(*opened);
  }
  Children kids;
  std::vector<pid_t> pids;
  const milliseconds run_for(scaled(900));
  for (int w = 0; w < kWorkers; w++) {
    const uint64_t wseed = splitmix(seed + uint64_t(w) + 1);
    std::optional<crash::Point> armed;
    if (w < kArmed) armed = p;
    const uint64_t nth = pick_nth(p, rng);
    pids.push_back(kids.spawn([&, w, wseed, armed, nth] {
      return worker_main(path, o, w, wseed, ctl.get(), armed, nth, run_for);
    }));
  }
  std::this_thread::sleep_for(milliseconds(20 + rng() % 200));
  kids.kill_one(pids[kArmed]);  // the victim, at a random moment
  for (int w = 0; w < kArmed; w++) {
    const int status = kids.wait(pids[w], run_for + milliseconds(20'000));
    if (killed_by_sigkill(status)) {
      out->fired++;
    } else {
      ASSERT_TRUE(exited_ok(status)) << "worker " << w << " " << describe_status(status);
    }
  }
  std::unique_ptr<Store> store;
  if (survivor) {
    store = std::move(held);
    // The survivor reclaims every dead worker.
    ASSERT_TRUE(wait_until(
        [&] {
          (void)store->reap_dead_sessions();
          auto st = store->stats();
          return st.ok() && st->sessions.empty();
        },
        milliseconds(5000)))
        << "dead sessions were not reclaimed";
  } else {
    auto opened = Store::open(path, o);
    ASSERT_TRUE(opened.ok()) << err(opened);
    store = std::move(*opened);
  }
  check_state(*store, *ctl, "after recovery");
  write_after(*store);
  out->branches = counts(*store) - before;
  expect_branches(name, survivor, out->fired, out->branches);
  check_state(*store, *ctl, "after new commits");
  store.reset();
  auto again = Store::open(path, o);
  ASSERT_TRUE(again.ok()) << err(again);
  check_state(**again, *ctl, "after a lone reopen");
  out->ok = true;
}

uint64_t rounds_wanted() {
  const char* e = std::getenv("STOA_CRASH_ROUNDS");
  return e != nullptr ? std::max<uint64_t>(1, std::strtoull(e, nullptr, 10)) : 2;
}

void run_group(const std::string& prefix, const RecoveryCounts& need) {
  ASSERT_TRUE(crash::compiled_in())
      << "this build has no crash points: configure with -DSTOA_CRASH_POINTS=ON";
  const uint64_t seed = test_seed();
  const char* only = std::getenv("STOA_CRASH_ONLY");
  uint64_t named = 0, killed = 0, recovered = 0;
  RecoveryCounts total;
  std::vector<std::string> never;
  for (uint32_t i = 0; i < crash::kPointCount; i++) {
    const auto p = crash::Point(i);
    const std::string name(crash::name(p));
    if (!name.starts_with(prefix) || (only != nullptr && name != only)) continue;
    named++;
    int fired = 0;
    bool all_ok = true;
    // Round r alternates survivor and lone-open recovery; a point not
    // reached in its rounds gets two more, then counts as never hit.
    const uint64_t rounds = rounds_wanted();
    for (uint64_t r = 0; r < rounds + 2 && (r < rounds || fired == 0); r++) {
      Round round;
      run_round(p, (r + i) % 2 == 0, splitmix(seed ^ (uint64_t(i) << 32) ^ r), &round);
      if (!round.ok) return;  // an assertion failed inside
      fired += round.fired;
      total += round.branches;
      all_ok = all_ok && round.ok;
    }
    std::printf("  %-22s killed %d workers (%s)\n", name.c_str(), fired,
                std::string(crash::what(p)).c_str());
    if (fired > 0) killed++;
    if (fired > 0 && all_ok) recovered++;
    if (fired == 0) never.push_back(name);
  }
  std::printf("crash points: %llu named, %llu killed at, %llu recovered\n",
              (unsigned long long)named, (unsigned long long)killed, (unsigned long long)recovered);
  std::printf(
      "recovery branches: %llu rolled forward, %llu undone, %llu log ranges settled, %llu "
      "frozen nodes replaced, %llu heap lists repaired, %llu heap rebuilds\n",
      (unsigned long long)total.rolled_forward, (unsigned long long)total.undone,
      (unsigned long long)total.log_settled, (unsigned long long)total.nodes_unfrozen,
      (unsigned long long)total.heap_repaired, (unsigned long long)total.heap_rebuilt);
  ASSERT_GT(named, 0u) << "no crash point named " << prefix << "*";
  for (const auto& n : never) ADD_FAILURE() << "crash point " << n << " was never hit";
  if (only != nullptr) return;  // one point: the group's branches need not all be taken
  EXPECT_GE(total.rolled_forward, need.rolled_forward) << "no dead commit was rolled forward";
  EXPECT_GE(total.undone, need.undone) << "no dead commit was undone";
  EXPECT_GE(total.log_settled, need.log_settled) << "no dead log range was settled";
  EXPECT_GE(total.nodes_unfrozen, need.nodes_unfrozen) << "no frozen node was replaced";
  EXPECT_GE(total.heap_repaired, need.heap_repaired) << "no heap list was repaired";
  EXPECT_GE(total.heap_rebuilt, need.heap_rebuilt) << "no heap was rebuilt";
}

// "msg." is run by tests/msg_kill_test.cc (mailbox workloads, not the bank).
const char* const kGroups[] = {"txn.",  "log.",     "ckpt.", "index.",
                               "heap.", "session.", "msg.",  "chan."};

TEST(CrashPoints, EveryPointBelongsToATestedGroup) {
  for (uint32_t i = 0; i < crash::kPointCount; i++) {
    std::string_view n = crash::name(crash::Point(i));
    bool found = false;
    for (const char* g : kGroups) found = found || n.starts_with(g);
    EXPECT_TRUE(found) << "crash point " << n << " is in no group this suite runs";
    EXPECT_EQ(crash::find(n), crash::Point(i));
  }
}

TEST(CrashPoints, Commit) {
  run_group("txn.", {.rolled_forward = 1, .undone = 1, .log_settled = 1, .heap_rebuilt = 1});
}
TEST(CrashPoints, Log) { run_group("log.", {.undone = 1, .log_settled = 1}); }
TEST(CrashPoints, Checkpoint) { run_group("ckpt.", {}); }
TEST(CrashPoints, Index) { run_group("index.", {.nodes_unfrozen = 1}); }
TEST(CrashPoints, Heap) { run_group("heap.", {.heap_repaired = 1, .heap_rebuilt = 1}); }
TEST(CrashPoints, Sessions) { run_group("session.", {.undone = 0, .heap_rebuilt = 1}); }

}  // namespace
}  // namespace stoa
