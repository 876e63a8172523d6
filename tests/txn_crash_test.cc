// Processes SIGKILLed at random points of their commits (issue 3: "A
// process SIGKILLed at any point of a commit: the others never see half of
// its writes, are not blocked past the dead-session timeout, and its
// transaction is wholly there or wholly absent").
//
// Two worker processes commit, in a loop, transactions that write the same
// token to all 8 keys of a group (g/0 .. g/7), so a half-applied commit
// shows as mixed tokens. Values are self-describing (token, length, then
// filler derived from the token) and a fifth of them are stored out of line
// (over 2 KiB), so a torn or freed value shows too. Some transactions first
// write an intermediate value (token ending in 'X') and then the final one,
// directly or through a savepoint that is rolled back: no reader may ever
// see an 'X' token. A checker process reads the group continuously — get
// by get and by prefix scan, in read-only and read-write transactions —
// and asserts all 8 keys hold one well-formed final value.
//
// The parent SIGKILLs a random worker after a random delay (200 kills,
// x STOA_STRESS_SCALE), respawning it; every 10th kill it times a fresh
// transaction on the group, which must commit within kProbeBoundMs (250
// ms, median 10 ms): the dead session's record locks are taken over after the waiter's
// 1 ms probe, but the respawned worker is live and may hold the group's
// locks while it is preempted, so a probe can also wait out the 20 ms
// live-holder bound and retry. At the end it kills both workers at once
// and times a transaction in a new session again. Then: survivors have
// reclaimed every dead session, the checker exits cleanly, and reopened
// alone the store verifies sound and exclusive, the group is consistent,
// and no session is left. Every worker must end by the parent's SIGKILL
// and the checker by exiting 0: a child that exits or dies any other way
// fails the test.
//
// The figures the docs state, each measured across real processes and
// printed as a "claim:" line:
//  - DeadLockHolderIsTakenOverAfterTheProbe: a process SIGKILLed holding
//    the record locks of a commit (before its commit point, and after
//    installing) blocks a survivor's transaction on those keys for about
//    the 1 ms lock probe (txn_manager.cc), with no watchdog anywhere;
//  - LiveLockHolderConflictsAtTheBound: a key held by a live committer
//    makes commit() return kConflict after the 20 ms bound of
//    include/stoa/txn.h — never sooner, and not much later.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

#include "api/access.h"
#include "crash/crash_point.h"
#include "session/session_core.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "test_util.h"

namespace stoa {
namespace {

using namespace stoa::test;

constexpr int kGroup = 8;
constexpr int kWorkers = 2;
// Stated for a probe: the dead holder's locks are taken over after the 1 ms
// probe; a live, preempted holder adds the 20 ms bound, a backoff and a
// retry. Asserted: 100 ms (20 ms bound + retry + takeover on a loaded
// 2-core VM, under ASan too; measured max 28 ms in Release beside a build,
// 23 ms under ASan).
// Each probe: at most 250 ms (it may wait out the 20 ms live-holder bound
// several times while the respawned worker keeps taking the group's locks;
// measured max 28 ms alone, 111 ms while ctest runs two suites at once on
// the 2-core VM). The median: at most kProbeP50Ms, 10 ms in Release (about
// 5 ms measured alone); 40 ms in a sanitizer build (17 ms measured under ASan
// on the 2-core CI machine while PowerLoss and a fuzz smoke ran beside it).
constexpr double kProbeBoundMs = 250;
constexpr double kProbeP50Ms = kSanitized ? 40 : 10;

std::string gkey(int i) { return fmt::format("g/{}", i); }

// "<token>|<length>|<filler>", `len` bytes in all (at least the header).
std::string make_value(const std::string& token, size_t len) {
  std::string v = fmt::format("{}|{}|", token, len);
  uint64_t h = std::hash<std::string>()(token);
  while (v.size() < len) {
    v += char('A' + h % 26);
    h = splitmix(h);
  }
  return v;
}

// The token of a well-formed value; "" when it is not one.
std::string parse_value(std::string_view v) {
  size_t a = v.find('|');
  if (a == std::string_view::npos) return "";
  size_t b = v.find('|', a + 1);
  if (b == std::string_view::npos) return "";
  std::string token(v.substr(0, a));
  size_t len = 0;
  for (char c : v.substr(a + 1, b - a - 1)) {
    if (c < '0' || c > '9') return "";
    len = len * 10 + size_t(c - '0');
  }
  if (make_value(token, len) != v) return "";
  return token;
}

struct Ctl {
  std::atomic<int32_t> stop;
  std::atomic<uint64_t> commits;
  std::atomic<uint64_t> checks;
  std::atomic<int32_t> ready[kWorkers];   // the current spawn has its session
  std::atomic<int32_t> in_txn[kWorkers];  // inside transact()
};

int worker_main(const std::string& path, int w, uint64_t spawn, uint64_t seed, Ctl* ctl) {
  auto opened = Store::open(path);
  CHILD_CHECK(opened.ok(), "open: {}", err(opened));
  auto sr = (*opened)->session();
  CHILD_CHECK(sr.ok(), "session: {}", err(sr));
  Session& s = *sr;
  ctl->ready[w].store(1);
  std::mt19937_64 rng(seed ^ splitmix(spawn));
  TransactOptions topts;
  topts.max_attempts = 1000;
  for (uint64_t n = 0; ctl->stop.load() == 0; n++) {
    const std::string token = fmt::format("s{}n{}", spawn, n);
    const size_t len = rng() % 5 == 0 ? 2100 + rng() % 4000 : 16 + rng() % 200;
    const std::string value = make_value(token, len);
    const int style = int(rng() % 5);  // 0: intermediate write, 1: rolled-back savepoint
    ctl->in_txn[w].store(1);
    auto r = s.transact(
        [&](Txn& t) -> Status {
          auto cur = t.get(gkey(int(rng() % kGroup)));  // a read: serializable validation
          if (!cur.ok()) return cur.error();
          CHILD_CHECK(!parse_value(cur->str()).empty(), "worker reads a malformed value");
          if (style == 0) {
            for (int i = 0; i < kGroup; i++) {
              if (Status st = t.put(gkey(i), make_value(token + "X", 40)); !st.ok()) return st;
            }
          }
          uint32_t sp = 0;
          if (style == 1) {
            sp = t.savepoint();
            for (int i = 0; i < kGroup; i++) {
              if (Status st = t.put(gkey(i), make_value(token + "X", 3000)); !st.ok()) return st;
            }
            if (Status st = t.rollback_to(sp); !st.ok()) return st;
          }
          for (int i = 0; i < kGroup; i++) {
            if (Status st = t.put(gkey(i), value); !st.ok()) return st;
          }
          return {};
        },
        topts);
    ctl->in_txn[w].store(0);
    CHILD_CHECK(r.ok() || r.code() == Code::kConflict, "commit: {} (seed {})", err(r), seed);
    ctl->commits.fetch_add(r.ok());
  }
  return 0;
}

// Reads the group in `t`; "" when consistent, else what is wrong.
std::string check_group(Txn& t, bool scan, std::string* token_out) {
  std::vector<std::string> values;
  if (scan) {
    auto c = t.prefix("g/");
    if (!c.ok()) return "prefix: " + err(c);
    for (; c->valid(); (void)c->next()) {
      if (values.size() < kGroup && c->key() != gkey(int(values.size()))) {
        return fmt::format("scan entry {} is {}", values.size(), c->key());
      }
      values.push_back(c->value().copy());
    }
  } else {
    for (int i = 0; i < kGroup; i++) {
      auto v = t.get(gkey(i));
      if (!v.ok()) return fmt::format("get {}: {}", gkey(i), err(v));
      values.push_back(v->copy());
    }
  }
  if (values.size() != kGroup) return fmt::format("{} keys in the group", values.size());
  std::vector<std::string> tokens;
  for (const auto& v : values) tokens.push_back(parse_value(v));
  for (int i = 0; i < kGroup; i++) {
    if (tokens[i].empty()) {
      return fmt::format("{} holds a malformed value of {} bytes: {:?}", gkey(i), values[i].size(),
                         values[i].substr(0, 60));
    }
    if (tokens[i].back() == 'X')
      return fmt::format("{} holds an intermediate value {}", gkey(i), tokens[i]);
  }
  for (int i = 1; i < kGroup; i++) {
    if (tokens[i] != tokens[0]) {
      return fmt::format("half a commit: tokens [{}] at snapshot {}", fmt::join(tokens, " "),
                         t.snapshot());
    }
  }
  if (token_out != nullptr) *token_out = tokens[0];
  return "";
}

int checker_main(const std::string& path, uint64_t seed, Ctl* ctl) {
  auto opened = Store::open(path);
  CHILD_CHECK(opened.ok(), "open: {}", err(opened));
  auto sr = (*opened)->session();
  CHILD_CHECK(sr.ok(), "session: {}", err(sr));
  Session& s = *sr;
  for (uint64_t n = 0; ctl->stop.load() == 0; n++) {
    const bool rw = n % 4 == 3;
    auto tr = s.begin(TxnOptions{.read_only = !rw});
    CHILD_CHECK(tr.ok(), "begin: {}", err(tr));
    std::string why = check_group(*tr, n % 2 == 1, nullptr);
    CHILD_CHECK(why.empty(), "{} check {}: {} (seed {})", rw ? "read-write" : "read-only", n, why,
                seed);
    auto c = tr->commit();
    CHILD_CHECK(c.ok(), "commit of a check: {}", err(c));
    ctl->checks.fetch_add(1);
  }
  return 0;
}

// Commits a fresh value to the whole group from `s`; returns its duration
// in ms, or a negative number (and a failure) when it did not commit.
double probe(Session& s, uint64_t k) {
  const auto t0 = Clock::now();
  const std::string value = make_value(fmt::format("parent{}", k), 64);
  auto r = s.transact([&](Txn& t) -> Status {
    for (int i = 0; i < kGroup; i++) {
      if (Status st = t.put(gkey(i), value); !st.ok()) return st;
    }
    return {};
  });
  EXPECT_TRUE(r.ok()) << "probe " << k << ": " << err(r);
  return r.ok() ? ms_since(t0) : -1;
}

TEST(TxnCrash, KilledCommittersAreAllOrNothingAndBlockNobody) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  TempDir dir("crash");
  const std::string path = dir.sub("store");
  // No watchdog thread in this process (the survivors' reclaim the dead):
  // children are forked while this store is open, and a fork while another
  // thread holds an allocator lock (ASan's is not fork-safe) can leave the
  // child deadlocked.
  Options parent_opts;
  parent_opts.watchdog_interval = milliseconds(0);
  parent_opts.log_threads = false;
  auto opened = Store::open(path, parent_opts);
  ASSERT_TRUE(opened.ok()) << err(opened);
  std::unique_ptr<Store> store = std::move(opened).value();
  auto psr = store->session();
  ASSERT_TRUE(psr.ok()) << err(psr);
  Session& ps = *psr;
  ASSERT_GE(probe(ps, 0), 0);

  Shared<Ctl> ctl;
  Children kids;
  std::mt19937_64 rng(seed);
  pid_t checker = kids.spawn([&] { return checker_main(path, seed, ctl.get()); });
  pid_t workers[kWorkers];
  uint64_t spawns = 0;
  auto spawn = [&](int w) {
    ctl->ready[w].store(0);
    ctl->in_txn[w].store(0);
    const uint64_t sp = ++spawns;
    workers[w] = kids.spawn([&, w, sp] { return worker_main(path, w, sp, seed, ctl.get()); });
  };
  for (int w = 0; w < kWorkers; w++) spawn(w);
  auto alive = [&] {
    int status = 0;
    if (kids.try_reap(checker, &status)) {
      ADD_FAILURE() << "checker ended: " << describe_status(status);
      return false;
    }
    for (pid_t p : workers) {
      if (kids.try_reap(p, &status)) {
        ADD_FAILURE() << "worker " << p << " ended: " << describe_status(status);
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(wait_until([&] { return ctl->commits.load() > 20 && ctl->checks.load() > 5; },
                         milliseconds(30000)))
      << "no progress";

  const int want_kills = int(scaled(200));
  int kills = 0, kills_in_txn = 0, probes = 0;
  double probe_max = 0;
  std::vector<double> probe_ms;
  const auto deadline = Clock::now() + milliseconds(scaled(90000));
  while (kills < want_kills && Clock::now() < deadline) {
    const int w = int(rng() % kWorkers);
    if (rng() % 2 == 0) {
      // After it is running: mostly lands inside a commit.
      wait_until([&] { return ctl->ready[w].load() != 0; }, milliseconds(5000));
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 8000));
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 15000));
    }
    ::kill(workers[w], SIGKILL);
    kills_in_txn += ctl->in_txn[w].load() != 0;
    int status = kids.kill_one(workers[w]);
    ASSERT_TRUE(killed_by_sigkill(status))
        << "worker " << w << " (kill " << kills << ") " << describe_status(status);
    kills++;
    spawn(w);
    ASSERT_TRUE(alive()) << "after kill " << kills;
    if (kills % 10 == 0) {
      double ms = probe(ps, kills);
      ASSERT_GE(ms, 0);
      EXPECT_LE(ms, kProbeBoundMs)
          << "a transaction on the group waited " << ms << " ms after kill " << kills;
      probe_max = std::max(probe_max, ms);
      probe_ms.push_back(ms);
      probes++;
    }
  }
  EXPECT_GE(kills, want_kills) << "too slow: only " << kills << " kills";

  // Both at once, then a new session's transaction on the group.
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 5000));
  for (pid_t p : workers) ::kill(p, SIGKILL);
  for (int w = 0; w < kWorkers; w++) {
    const int status = kids.kill_one(workers[w]);
    ASSERT_TRUE(killed_by_sigkill(status))
        << "worker " << w << " (last kill) " << describe_status(status);
  }
  {
    const auto t0 = Clock::now();
    auto fresh = store->session();
    ASSERT_TRUE(fresh.ok()) << err(fresh);
    double ms = probe(*fresh, 1000000);
    ASSERT_GE(ms, 0);
    const double total = ms_since(t0);
    EXPECT_LE(total, kProbeBoundMs)
        << "a fresh transaction on the group took " << total << " ms after its writers were killed";
    probe_max = std::max(probe_max, total);
    probe_ms.push_back(total);
  }
  StoreStats last;
  bool reclaimed = wait_reclaimed(*store, &last, milliseconds(3000));
  EXPECT_TRUE(reclaimed) << "dead sessions left:\n" << sessions_text(last);
  {
    auto t = ps.begin(TxnOptions{.read_only = true});
    ASSERT_TRUE(t.ok());
    std::string token;
    std::string why = check_group(*t, false, &token);
    EXPECT_TRUE(why.empty()) << why;
    EXPECT_EQ(token, "parent1000000");
  }
  ASSERT_TRUE(wait_until([&] { return ctl->checks.load() > 0; }, milliseconds(1000)));
  ctl->stop.store(1);
  int status = kids.wait(checker, milliseconds(20000));
  EXPECT_TRUE(exited_ok(status)) << "checker " << describe_status(status);
  std::printf(
      "%d kills (%d inside a transaction), %llu commits, %llu checks, %d probes, slowest "
      "probe %.1f ms, %llu sessions recovered\n",
      kills, kills_in_txn, (unsigned long long)ctl->commits.load(),
      (unsigned long long)ctl->checks.load(), probes, probe_max,
      (unsigned long long)last.sessions_recovered);
  EXPECT_GT(kills_in_txn, kills / 4);
  {
    auto [p50, max] = p50_max(probe_ms);
    std::printf(
        "claim: a transaction on keys whose writer was just SIGKILLed commits within %.0f ms: "
        "measured p50 %.2f ms, max %.2f ms, asserted p50 <= %.0f ms, each <= %.0f ms\n",
        kProbeBoundMs, p50, max, kProbeP50Ms, kProbeBoundMs);
    EXPECT_LE(p50, kProbeP50Ms) << "median probe after a kill";
  }

  // Alone: a full check.
  psr = Session();
  store.reset();
  Options alone;
  alone.watchdog_interval = milliseconds(0);  // nothing else mutates the heap during verify()
  alone.log_threads = false;
  auto again = Store::open(path, alone);
  ASSERT_TRUE(again.ok()) << err(again);
  auto v = (*again)->verify();
  ASSERT_TRUE(v.ok()) << err(v);
  EXPECT_TRUE(v->exclusive);
  EXPECT_TRUE(v->sound()) << (v->problems.empty() ? "" : v->problems[0]);
  {
    auto s = (*again)->session();
    ASSERT_TRUE(s.ok());
    auto t = s->begin(TxnOptions{.read_only = true});
    ASSERT_TRUE(t.ok());
    std::string why = check_group(*t, true, nullptr);
    EXPECT_TRUE(why.empty()) << why;
  }
  auto st = (*again)->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(count_state(*st, "dead"), 0u) << sessions_text(*st);
  EXPECT_EQ(st->sessions.size(), 0u) << sessions_text(*st);
}

// A process SIGKILLed holding the record locks of a commit (before its
// commit point: undone; after installing: rolled forward) blocks a
// survivor's transaction on those keys only until the survivor's lock wait
// probes the holder (each 1 ms, src/txn/txn_manager.cc) and reclaims it.
// Nobody else reclaims: every process here runs without a watchdog, so the
// takeover can only come from the waiter's own probe.
TEST(TxnCrash, DeadLockHolderIsTakenOverAfterTheProbe) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  ASSERT_TRUE(internal::crash::compiled_in()) << "needs a build with crash points";
  TempDir dir("crash-holder");
  const std::string path = dir.sub("store");
  Options o;
  o.watchdog_interval = milliseconds(0);
  o.log_threads = false;
  o.durability = Durability::kNone;  // time the lock takeover, not an fdatasync
  auto opened = Store::open(path, o);
  ASSERT_TRUE(opened.ok()) << err(opened);
  std::unique_ptr<Store> store = std::move(opened).value();
  auto psr = store->session();
  ASSERT_TRUE(psr.ok()) << err(psr);
  ASSERT_GE(probe(*psr, 0), 0);

  Children kids;
  std::vector<double> waits;
  const int rounds = 12;
  uint64_t undone = 0, rolled_forward = 0;
  for (int i = 0; i < rounds; i++) {
    // Dies holding every lock of the group: validated (undo) or installed
    // (roll forward), locks not yet released.
    const auto point = i % 2 == 0 ? internal::crash::Point::kCommitValidated
                                  : internal::crash::Point::kCommitInstalled;
    pid_t pid = kids.spawn([&] {
      auto s = Store::open(path, o);
      CHILD_CHECK(s.ok(), "open: {}", err(s));
      auto sess = (*s)->session();
      CHILD_CHECK(sess.ok(), "session: {}", err(sess));
      internal::crash::arm(point, 1);
      const std::string value = make_value(fmt::format("dead{}", i), 64);
      auto t = sess->begin();
      CHILD_CHECK(t.ok(), "begin: {}", err(t));
      for (int k = 0; k < kGroup; k++) CHILD_CHECK(t->put(gkey(k), value).ok(), "put");
      auto c = t->commit();
      CHILD_CHECK(false, "commit returned ({}) past an armed crash point", err(c));
      return 1;
    });
    const int status = kids.wait(pid, milliseconds(20000));
    ASSERT_TRUE(killed_by_sigkill(status)) << "round " << i << ": " << describe_status(status);
    auto before = store->stats();
    ASSERT_TRUE(before.ok());
    ASSERT_EQ(count_state(*before, "dead"), 1u) << sessions_text(*before);
    double ms = probe(*psr, uint64_t(i) + 1);  // the locks' holder is already dead
    ASSERT_GE(ms, 0);
    waits.push_back(ms);
    auto after = store->stats();
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(count_state(*after, "dead"), 0u) << sessions_text(*after);
    undone += after->recovery.undone - before->recovery.undone;
    rolled_forward += after->recovery.rolled_forward - before->recovery.rolled_forward;
    auto t = psr->begin(TxnOptions{.read_only = true});
    ASSERT_TRUE(t.ok());
    std::string token;
    std::string why = check_group(*t, i % 2 == 1, &token);
    EXPECT_TRUE(why.empty()) << why;
    EXPECT_EQ(token, fmt::format("parent{}", i + 1));
  }
  // Each death was settled by the waiter (half undone, half rolled forward).
  EXPECT_EQ(undone, uint64_t(rounds / 2));
  EXPECT_EQ(rolled_forward, uint64_t(rounds / 2));
  auto [p50, max] = p50_max(waits);
  // Stated: taken over after the dead-session probe, ~1 ms (the waiter
  // probes its lock's holder each 1 ms; the reclaim of a small store adds
  // well under 1 ms). Asserted: p50 <= 10 ms (probe 1 ms + reclaim + the
  // transaction, plus up to two 4 ms scheduler ticks that the waiter's
  // yield() loses on a loaded 2-core VM: measured p50 1.1 ms idle, 3.3 ms
  // beside a build; ASan 1.2 ms), max <= 150 ms (a guard against gross
  // regressions that survives ctest running two suites on two cores).
  std::printf(
      "claim: a dead process's record locks are taken over by a waiting transaction after the "
      "~1 ms probe: measured p50 %.2f ms, max %.2f ms, asserted p50 <= 10 ms, max <= 150 ms\n",
      p50, max);
  EXPECT_LE(p50, 10.0) << "a transaction waited a median " << p50 << " ms for a dead holder";
  EXPECT_LE(max, 150.0) << "a transaction waited " << max << " ms for a dead holder";
}

// A key locked by a live process (here: one that took the record's lock word
// as a committer does and then stopped doing anything) makes a commit that
// writes it fail with kConflict after the 20 ms bound (include/stoa/txn.h,
// kLockSpinNs in src/txn/txn_manager.cc): not sooner, and not much later.
TEST(TxnCrash, LiveLockHolderConflictsAtTheBound) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  TempDir dir("crash-live");
  const std::string path = dir.sub("store");
  Options o;
  o.watchdog_interval = milliseconds(0);
  o.log_threads = false;
  o.durability = Durability::kNone;
  auto opened = Store::open(path, o);
  ASSERT_TRUE(opened.ok()) << err(opened);
  std::unique_ptr<Store> store = std::move(opened).value();
  auto psr = store->session();
  ASSERT_TRUE(psr.ok()) << err(psr);
  ASSERT_GE(probe(*psr, 0), 0);

  struct HoldCtl {
    std::atomic<int32_t> ready;  // 1: locked, 2: failed
  };
  Shared<HoldCtl> ctl;
  Children kids;
  pid_t holder = kids.spawn([&] {
    auto s = Store::open(path, o);
    CHILD_CHECK(s.ok(), "open: {}", err(s));
    auto sess = (*s)->session();
    CHILD_CHECK(sess.ok(), "session: {}", err(sess));
    internal::SessionCore* core = stoa::internal::core_of(*sess);
    auto& txns = stoa::internal::impl_of(**s)->txns();
    core->pin();
    const uint64_t off = txns.tree().find(gkey(0));
    CHILD_CHECK(off > index::Btree::kDamaged, "g/0 not found ({})", off);
    uint64_t expected = 0;
    const bool locked = txns.tree().record_rw(off)->lock.compare_exchange_strong(
        expected, internal::TxnManager::lock_word(core->slot(), core->generation()));
    core->unpin();
    ctl->ready.store(locked ? 1 : 2);
    for (;;) std::this_thread::sleep_for(milliseconds(100));
    return 0;
  });
  ASSERT_TRUE(wait_until([&] { return ctl->ready.load() != 0; }, milliseconds(10000)));
  ASSERT_EQ(ctl->ready.load(), 1) << "the holder could not take g/0's lock";

  std::vector<double> waits;
  for (int i = 0; i < 8; i++) {
    auto t = psr->begin();
    ASSERT_TRUE(t.ok()) << err(t);
    ASSERT_TRUE(t->put(gkey(0), make_value("blocked", 64)).ok());
    const auto t0 = Clock::now();
    auto c = t->commit();
    const double ms = ms_since(t0);
    ASSERT_FALSE(c.ok()) << "committed over a live holder's lock";
    EXPECT_EQ(c.code(), Code::kConflict) << err(c);
    waits.push_back(ms);
  }
  int status = 0;
  EXPECT_FALSE(kids.try_reap(holder, &status)) << "holder ended: " << describe_status(status);
  kids.kill_one(holder);
  auto [p50, max] = p50_max(waits);
  const double min = waits.front();
  // Stated: kConflict past a 20 ms bound. Asserted: never before 20 ms; p50
  // <= 30 ms (the bound plus a 4 ms scheduler tick or two lost in the yield
  // loop on a loaded 2-core VM: measured p50 20.0 ms idle, 24.0 ms beside a
  // build; ASan 20.0 ms) and max <= 150 ms (a gross-regression guard).
  std::printf(
      "claim: a key locked by a live committer gives kConflict after the 20 ms bound: measured "
      "min %.2f ms, p50 %.2f ms, max %.2f ms, asserted 20 <= each, p50 <= 30 ms, max <= 150 ms\n",
      min, p50, max);
  EXPECT_GE(min, 20.0) << "kConflict before the 20 ms bound";
  EXPECT_LE(p50, 30.0);
  EXPECT_LE(max, 150.0);
}

}  // namespace
}  // namespace stoa
