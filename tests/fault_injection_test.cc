// Injected I/O faults (SimEnv::inject): EIO and ENOSPC on a log write, a
// short write then ENOSPC, EIO on fdatasync, ENOSPC when a new log segment
// is allocated. A store in kSync mode with small segments commits until the
// fault fires at the n-th call of its kind, for many n. After every fault:
//  - the failing commit returns an error value (kIo or kFull), never a crash,
//    and is all or nothing: installed (kIo naming "commit at <ts>") or not;
//  - the store stays consistent: every acknowledged commit reads back with
//    its exact value, verify is sound;
//  - after a failed write or fdatasync the log stays failed for this run:
//    stats().log_failed says why, no later commit, sync or checkpoint
//    succeeds (a failed fdatasync is never retried into a success);
//  - ENOSPC on a new segment fails only that commit (kFull, nothing
//    reserved); the next one succeeds without reopening;
//  - reopening on the healthy disk repairs the log (a checkpoint) and keeps
//    everything installed; new commits work;
//  - or the power fails after the fault: the reopened store holds a prefix
//    of the commit order containing every acknowledged commit.
// Seed: STOA_TEST_SEED (printed).
#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "api/access.h"
#include "env/sim_env.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "test_util.h"

namespace stoa {
namespace {

using internal::StoreAccess;
using test::TempDir;
using Fault = SimEnv::Fault;
using KV = std::map<std::string, std::string>;

constexpr uint64_t kSeg = 64 << 10;

Options store_options(Durability d = Durability::kSync) {
  Options o;
  o.initial_size = 1 << 20;
  o.grow_chunk = 1 << 20;
  o.max_size = 64 << 20;
  o.max_sessions = 8;
  o.log_segment_size = kSeg;
  o.checkpoint_log_bytes = 0;
  o.durability = d;
  o.group_window = std::chrono::microseconds(100);
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  return o;
}

using test::err;

const char* fault_name(Fault f) {
  switch (f) {
    case Fault::kWriteEio:
      return "EIO on write";
    case Fault::kWriteEnospc:
      return "ENOSPC on write";
    case Fault::kShortWrite:
      return "short write then ENOSPC";
    case Fault::kSyncEio:
      return "EIO on fdatasync";
    case Fault::kAllocateEnospc:
      return "ENOSPC on allocate";
    case Fault::kNone:
      return "none";
  }
  return "?";
}

KV read_all(Store& store) {
  auto r = test::read_all(store);
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  return r.ok() ? std::move(r).value() : KV{};
}

std::string value_for(const std::string& key, uint64_t n, size_t len) {
  std::string v = fmt::format("{}@{}:", key, n);
  while (v.size() < len) v += char('a' + (v.size() * 7 + n) % 26);
  v.resize(len);
  return v;
}

struct Commit {
  uint64_t ts = 0;
  KV puts;
  std::vector<std::string> dels;
  bool acked = false;  // returned ok
};

// What a run did: every commit that was installed (acknowledged or not), in
// commit order.
struct History {
  std::vector<Commit> installed;
  KV state(uint64_t upto = UINT64_MAX) const {
    KV out;
    for (const Commit& c : installed) {
      if (c.ts > upto) break;
      for (const auto& [k, v] : c.puts) out[k] = v;
      for (const auto& k : c.dels) out.erase(k);
    }
    return out;
  }
  uint64_t last_acked() const {
    uint64_t ts = 0;
    for (const Commit& c : installed) {
      if (c.acked) ts = c.ts;
    }
    return ts;
  }
};

// One commit of 1..3 puts (values 100 B .. 12 KiB, unique) and sometimes a
// delete. Records it in `h` if it was installed; returns the commit's result.
Result<uint64_t> commit_one(Session& s, std::mt19937_64& rng, uint64_t n, History* h) {
  Commit c;
  const int nput = 1 + int(rng() % 3);
  for (int k = 0; k < nput; k++) {
    std::string key = fmt::format("k{:02}", rng() % 40);
    c.puts[key] = value_for(key, n, 100 + rng() % 12000);
  }
  if (rng() % 4 == 0) {
    std::string key = fmt::format("k{:02}", rng() % 40);
    if (!c.puts.count(key)) c.dels.push_back(key);
  }
  auto txn = s.begin();
  if (!txn.ok()) return std::move(txn).error();
  // A put may fail too (ENOSPC growing the data file): then so does the commit.
  Status wrote;
  for (const auto& [k, v] : c.puts) {
    if (Status p = txn->put(k, v); !p.ok() && wrote.ok()) wrote = p;
  }
  for (const auto& k : c.dels) {
    if (Status d = txn->del(k); !d.ok() && wrote.ok()) wrote = d;
  }
  if (!wrote.ok()) {
    EXPECT_TRUE(wrote.code() == Code::kFull || wrote.code() == Code::kIo) << err(wrote);
  }
  auto r = txn->commit();
  EXPECT_TRUE(wrote.ok() || !r.ok()) << "committed after a failed put: " << err(wrote);
  if (r.ok()) {
    c.ts = *r;
    c.acked = true;
    h->installed.push_back(std::move(c));
    return r;
  }
  // All or nothing: either every put of it is visible now or none is.
  size_t seen = 0;
  {
    auto rt = s.begin(TxnOptions{.read_only = true});
    EXPECT_TRUE(rt.ok()) << err(rt);
    if (rt.ok()) {
      for (const auto& [k, v] : c.puts) {
        auto g = rt->get(k);
        seen += g.ok() && g->str() == v;
      }
    }
  }
  EXPECT_TRUE(seen == 0 || seen == c.puts.size())
      << "a failed commit is half installed (" << seen << " of " << c.puts.size()
      << " puts visible): " << err(r);
  const std::string& msg = r.error().message();
  const size_t at = msg.find("commit at ");
  if (seen != 0) {
    // Installed, not durable: the error names its timestamp.
    EXPECT_NE(at, std::string::npos)
        << "an installed commit failed without its timestamp: " << err(r);
    EXPECT_EQ(r.code(), Code::kIo) << err(r);
    if (at != std::string::npos) {
      c.ts = std::strtoull(msg.c_str() + at + 10, nullptr, 10);
      h->installed.push_back(std::move(c));
    }
  }
  return r;
}

struct Tally {
  uint64_t runs = 0, fired = 0, io = 0, full = 0, installed_not_durable = 0, repaired = 0,
           power_losses = 0, recommitted = 0, full_segment = 0, full_data = 0;
};

// One run: fresh store on a SimEnv, some commits, the fault armed for the
// n-th call of its kind, commits until a few after it fired, then the
// checks; then either a clean close and reopen, or a power loss.
void run_one(Fault fault, uint64_t n, bool power_loss, uint64_t seed, Tally* tally) {
  TempDir dir("fault");
  const std::string path = dir.sub("store");
  SimEnv env(seed);
  std::mt19937_64 rng(seed);
  History h;
  uint64_t seq = 0;
  Code first_error = Code::kOk;
  uint64_t failed_commits = 0;
  {
    auto opened = StoreAccess::open(path, store_options(), &env);
    ASSERT_TRUE(opened.ok()) << err(opened);
    Store& store = **opened;
    auto s = store.session();
    ASSERT_TRUE(s.ok());
    for (int i = 0; i < 5; i++) ASSERT_TRUE(commit_one(*s, rng, ++seq, &h).ok());
    env.inject(fault, n);
    const uint64_t fired_before = env.faults_fired();
    int after = 0;
    for (int i = 0; i < 120 && after < 4; i++) {
      auto r = commit_one(*s, rng, ++seq, &h);
      if (::testing::Test::HasFatalFailure()) return;
      if (env.faults_fired() > fired_before) after++;
      if (r.ok()) continue;
      failed_commits++;
      ASSERT_TRUE(r.code() == Code::kIo || r.code() == Code::kFull)
          << "a failed commit returned " << err(r);
      ASSERT_GT(env.faults_fired(), fired_before) << "a commit failed with no fault: " << err(r);
      if (first_error == Code::kOk) first_error = r.code();
      if (fault == Fault::kAllocateEnospc) {
        // Nothing was reserved: a clean kFull, and the log is fine. (The
        // allocation may also have been the data file's growth.)
        EXPECT_EQ(r.code(), Code::kFull) << err(r);
        if (r.error().message().find("/log/") != std::string::npos) {
          tally->full_segment++;
        } else {
          tally->full_data++;
        }
      }
    }
    if (env.faults_fired() == fired_before) return;  // n beyond this run's calls
    tally->fired++;
    first_error == Code::kFull ? tally->full++ : first_error == Code::kIo ? tally->io++ : 0;
    for (const Commit& c : h.installed) tally->installed_not_durable += !c.acked;

    auto st = store.stats();
    ASSERT_TRUE(st.ok());
    const bool log_failed = !st->log_failed.empty();
    if (fault == Fault::kAllocateEnospc) {
      // Only the commit that needed the segment failed; the next ones went on.
      EXPECT_FALSE(log_failed) << st->log_failed;
      EXPECT_LE(failed_commits, 1u);
      auto r = commit_one(*s, rng, ++seq, &h);
      EXPECT_TRUE(r.ok()) << "no commit after ENOSPC on a new segment: " << err(r);
      tally->recommitted += r.ok();
    } else if (failed_commits > 0) {
      // A failed write or sync: the log is failed for the rest of this run.
      EXPECT_TRUE(log_failed) << "the log failed but stats().log_failed is empty";
      EXPECT_GE(failed_commits, 1u);
      for (int i = 0; i < 3; i++) {
        auto r = commit_one(*s, rng, ++seq, &h);
        EXPECT_FALSE(r.ok()) << "a commit succeeded after the log failed";
        EXPECT_EQ(r.code(), Code::kIo) << err(r);
      }
      // A commit installed past the failure is not on disk, and no later
      // sync may say it is (the failed fdatasync is not retried). When the
      // failure came before anything was installed (a failed directory
      // sync while creating a segment) there is nothing to make durable.
      const bool undurable = std::any_of(h.installed.begin(), h.installed.end(),
                                         [](const Commit& c) { return !c.acked; });
      Status sy = store.sync();
      auto ck = store.checkpoint();
      if (undurable) {
        EXPECT_FALSE(sy.ok()) << "sync() succeeded after the log failed";
        EXPECT_FALSE(ck.ok()) << "a checkpoint succeeded after the log failed (at "
                              << (ck.ok() ? *ck : 0) << ")";
      }
      EXPECT_GE(st->durable_ts, h.last_acked()) << "an acknowledged commit is not durable";
    }
    // Consistent in memory: every installed commit, nothing else.
    KV got = read_all(store);
    EXPECT_TRUE(got == h.state()) << "the store's state is not its installed commits";
    auto v = store.verify();
    ASSERT_TRUE(v.ok()) << err(v);
    EXPECT_TRUE(v->sound()) << "verify after " << fault_name(fault) << ": " << v->problems[0];
    if (power_loss) env.cut_after(1);  // nothing more becomes durable; close is not clean
  }

  if (power_loss) {
    env.power_loss();
    tally->power_losses++;
    auto opened = StoreAccess::open(path, store_options(), &env);
    ASSERT_TRUE(opened.ok()) << "open after the power loss: " << err(opened);
    Store& store = **opened;
    auto st = store.stats();
    ASSERT_TRUE(st.ok());
    const uint64_t end = st->last_commit_ts;
    EXPECT_GE(end, h.last_acked()) << "an acknowledged sync commit was lost";
    EXPECT_TRUE(read_all(store) == h.state(end)) << "not the commit prefix up to " << end;
    auto v = store.verify();
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->sound()) << v->problems[0];
    auto s = store.session();
    ASSERT_TRUE(s.ok());
    History after;
    EXPECT_TRUE(commit_one(*s, rng, ++seq, &after).ok());
    return;
  }

  // Reopen on the same (now healthy) disk: the data file is trusted (same
  // boot), a failed log is repaired by a checkpoint.
  auto opened = StoreAccess::open(path, store_options(), &env);
  ASSERT_TRUE(opened.ok()) << "reopen after " << fault_name(fault) << ": " << err(opened);
  Store& store = **opened;
  const RecoveryReport& rep = store.recovery();
  auto st = store.stats();
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st->log_failed.empty()) << st->log_failed;
  if (fault != Fault::kAllocateEnospc && failed_commits > 0) {
    EXPECT_TRUE(rep.reason.find("repaired by a checkpoint") != std::string::npos) << rep.reason;
    EXPECT_GT(st->checkpoint_ts, 0u);
    tally->repaired++;
  }
  EXPECT_TRUE(read_all(store) == h.state()) << "reopen lost or changed commits";
  auto s = store.session();
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 3; i++) {
    auto r = commit_one(*s, rng, ++seq, &h);
    ASSERT_TRUE(r.ok()) << "commit after the repair: " << err(r);
  }
  EXPECT_TRUE(store.sync().ok());
  auto v = store.verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << v->problems[0];
  // And what is now durable survives a power loss.
  (void)s->close();
  opened->reset();
  env.power_loss();
  auto again = StoreAccess::open(path, store_options(), &env);
  ASSERT_TRUE(again.ok()) << err(again);
  EXPECT_TRUE(read_all(**again) == h.state()) << "the repair did not make the commits durable";
}

class FaultInjection : public ::testing::TestWithParam<Fault> {};

TEST_P(FaultInjection, FailsCleanlyStaysConsistentAndRepairs) {
  const Fault fault = GetParam();
  const uint64_t seed = test::test_seed();
  std::printf("%s: seed %llu (STOA_TEST_SEED)\n", fault_name(fault), (unsigned long long)seed);
  // How many calls of the kind a run makes: a write and a sync or two per
  // commit, a segment allocation every few commits.
  const uint64_t max_n = fault == Fault::kAllocateEnospc ? 12 : 40;
  const uint64_t runs = test::scaled(40);
  std::mt19937_64 rng(seed);
  Tally t;
  const auto t0 = test::Clock::now();
  for (uint64_t i = 0; i < runs; i++) {
    const uint64_t n = i < max_n / 2 ? i + 1 : 1 + rng() % max_n;  // small n all, then random
    const bool power_loss = i % 3 == 2;
    const uint64_t run_seed = rng();
    SCOPED_TRACE(fmt::format("{} at call {}{}, run seed {}", fault_name(fault), n,
                             power_loss ? ", then power loss" : "", run_seed));
    run_one(fault, n, power_loss, run_seed, &t);
    t.runs++;
    if (HasFatalFailure()) return;
  }
  std::printf(
      "%s: %llu runs, %.1f s: fired %llu (%llu kIo, %llu kFull: %llu new segment, %llu "
      "data file), %llu installed but not durable, %llu repaired at reopen, %llu power "
      "losses, %llu commits after kFull\n",
      fault_name(fault), (unsigned long long)t.runs, test::ms_since(t0) / 1000,
      (unsigned long long)t.fired, (unsigned long long)t.io, (unsigned long long)t.full,
      (unsigned long long)t.full_segment, (unsigned long long)t.full_data,
      (unsigned long long)t.installed_not_durable, (unsigned long long)t.repaired,
      (unsigned long long)t.power_losses, (unsigned long long)t.recommitted);
  if (fault == Fault::kAllocateEnospc) {
    EXPECT_GT(t.full_segment, 0u) << "ENOSPC never hit a new log segment";
  }
  EXPECT_GT(t.fired, runs / 2) << "the fault rarely fired: raise the commits per run";
}

INSTANTIATE_TEST_SUITE_P(Faults, FaultInjection,
                         ::testing::Values(Fault::kWriteEio, Fault::kWriteEnospc,
                                           Fault::kShortWrite, Fault::kSyncEio,
                                           Fault::kAllocateEnospc),
                         [](const ::testing::TestParamInfo<Fault>& i) {
                           switch (i.param) {
                             case Fault::kWriteEio:
                               return std::string("WriteEio");
                             case Fault::kWriteEnospc:
                               return std::string("WriteEnospc");
                             case Fault::kShortWrite:
                               return std::string("ShortWrite");
                             case Fault::kSyncEio:
                               return std::string("SyncEio");
                             case Fault::kAllocateEnospc:
                               return std::string("AllocateEnospc");
                             case Fault::kNone:
                               break;
                           }
                           return std::string("None");
                         });

// Leaves a store whose log failed (an fdatasync EIO on a commit), closed
// without repair; returns its history.
History failed_store(const std::string& path, SimEnv& env, std::mt19937_64& rng) {
  History h;
  auto opened = StoreAccess::open(path, store_options(), &env);
  EXPECT_TRUE(opened.ok()) << err(opened);
  if (!opened.ok()) return h;
  auto s = (*opened)->session();
  EXPECT_TRUE(s.ok());
  for (uint64_t i = 1; i <= 8; i++) EXPECT_TRUE(commit_one(*s, rng, i, &h).ok());
  // The next fdatasync of a commit: a commit that needs no new segment.
  env.inject(Fault::kSyncEio, 1);
  uint64_t i = 9;
  for (; env.faults_fired() == 0 && i < 40; i++) (void)commit_one(*s, rng, i, &h);
  EXPECT_EQ(env.faults_fired(), 1u);
  auto st = (*opened)->stats();
  EXPECT_TRUE(st.ok() && !st->log_failed.empty());
  return h;
}

// The repair at reopen (a checkpoint) meets an fdatasync EIO of its own:
// the open fails with an error value and leaves the store for the next
// open, which repairs it; nothing installed is lost.
TEST(FaultInjectionRepair, FailedRepairCheckpointIsRetriedByTheNextOpen) {
  const uint64_t seed = test::test_seed();
  std::printf("seed %llu\n", (unsigned long long)seed);
  uint64_t refused = 0, opened_anyway = 0;
  for (uint64_t n = 1; n <= 6; n++) {
    SCOPED_TRACE(fmt::format("sync {} of the reopen fails, seed {}", n, seed));
    TempDir dir("fault-repair");
    const std::string path = dir.sub("store");
    SimEnv env(seed + n);
    std::mt19937_64 rng(seed + n);
    History h = failed_store(path, env, rng);
    if (HasFatalFailure()) return;
    env.inject(Fault::kSyncEio, n);
    {
      auto opened = StoreAccess::open(path, store_options(), &env);
      if (!opened.ok()) {
        refused++;
        EXPECT_TRUE(opened.code() == Code::kIo || opened.code() == Code::kFull) << err(opened);
        std::printf("  n=%llu: %s\n", (unsigned long long)n, err(opened).c_str());
      } else {
        opened_anyway++;
        // The repair got through (the failed sync was elsewhere) or the
        // log is still failed; either way the state is whole.
        EXPECT_TRUE(read_all(**opened) == h.state());
        auto st = (*opened)->stats();
        ASSERT_TRUE(st.ok());
        if (!st->log_failed.empty()) {
          auto s = (*opened)->session();
          ASSERT_TRUE(s.ok());
          History more;
          EXPECT_FALSE(commit_one(*s, rng, 1000, &more).ok())
              << "committed on a log whose repair failed";
        }
      }
    }
    auto opened = StoreAccess::open(path, store_options(), &env);
    ASSERT_TRUE(opened.ok()) << "healthy open after a failed repair: " << err(opened);
    auto st = (*opened)->stats();
    ASSERT_TRUE(st.ok());
    EXPECT_TRUE(st->log_failed.empty()) << st->log_failed;
    EXPECT_TRUE(read_all(**opened) == h.state()) << "lost installed commits";
    auto s = (*opened)->session();
    ASSERT_TRUE(s.ok());
    EXPECT_TRUE(commit_one(*s, rng, 2000, &h).ok());
    (void)s->close();
    opened->reset();
    env.power_loss();
    auto again = StoreAccess::open(path, store_options(), &env);
    ASSERT_TRUE(again.ok()) << err(again);
    EXPECT_TRUE(read_all(**again) == h.state()) << "the repair was not durable";
  }
  std::printf("6 reopens with a failing sync: %llu refused, %llu opened\n",
              (unsigned long long)refused, (unsigned long long)opened_anyway);
}

// kGroup: commits are acknowledged before their fdatasync, which the
// flusher thread does. When it fails, the log is failed: later commits
// fail with kIo, durable_ts stops before the failure, and after a power
// loss the store holds a prefix containing everything durable.
// kGroup with the log's threads on: the flusher thread does the fdatasync
// (SimEnv names the thread whose call failed), and its failure fails every
// later commit. With them off (log_threads false), the committer syncs
// inline and its own commit reports the failure.
class FaultInjectionGroup : public ::testing::TestWithParam<bool> {};

TEST_P(FaultInjectionGroup, FailedGroupFlushFailsLaterCommits) {
  const bool flusher = GetParam();
  const uint64_t seed = test::test_seed();
  Options opts = store_options(Durability::kGroup);
  if (flusher) {
    opts.watchdog_interval = std::chrono::milliseconds(20);
    opts.log_threads = true;
  }
  int flusher_failures = 0;
  for (uint64_t n = 1; n <= 8; n++) {
    SCOPED_TRACE(fmt::format("group flush sync {} fails, {}, seed {}", n,
                             flusher ? "flusher thread" : "inline", seed));
    TempDir dir("fault-group");
    const std::string path = dir.sub("store");
    SimEnv env(seed + n);
    std::mt19937_64 rng(seed + n);
    History h;
    uint64_t durable = 0;
    {
      auto opened = StoreAccess::open(path, opts, &env);
      ASSERT_TRUE(opened.ok()) << err(opened);
      Store& store = **opened;
      auto s = store.session();
      ASSERT_TRUE(s.ok());
      env.inject(Fault::kSyncEio, n);
      bool failed = false;
      for (uint64_t i = 1; i <= 300 && !failed; i++) {
        auto r = commit_one(*s, rng, i, &h);
        if (!r.ok()) {
          EXPECT_EQ(r.code(), Code::kIo) << err(r);
          failed = true;
        }
        if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      ASSERT_TRUE(failed) << "no commit failed after the flusher's fdatasync failed";
      ASSERT_EQ(env.faults_fired(), 1u);
      if (flusher && env.fault_path().ends_with("/log")) {
        // The committer's directory sync after creating a segment.
        EXPECT_EQ(env.fault_thread(), std::this_thread::get_id());
      } else if (flusher) {
        EXPECT_NE(env.fault_thread(), std::this_thread::get_id())
            << "the committer, not the flusher, made the failed fdatasync of " << env.fault_path();
        flusher_failures++;
      } else {
        EXPECT_EQ(env.fault_thread(), std::this_thread::get_id());
      }
      auto st = store.stats();
      ASSERT_TRUE(st.ok());
      EXPECT_FALSE(st->log_failed.empty());
      durable = st->durable_ts;
      for (int i = 0; i < 3; i++) {
        History more;
        EXPECT_FALSE(commit_one(*s, rng, 500 + i, &more).ok());
      }
      // A commit installed past the failed fdatasync is not on disk: no
      // sync may say it is now. (A failed directory sync while creating a
      // segment fails the log before anything past it was installed; the
      // commits below it are in older segments and may be synced.)
      if (std::any_of(h.installed.begin(), h.installed.end(),
                      [](const Commit& c) { return !c.acked; })) {
        EXPECT_FALSE(store.sync().ok()) << "sync() succeeded after the flusher's fdatasync failed";
      }
      env.cut_after(1);
    }
    env.power_loss();
    auto opened = StoreAccess::open(path, store_options(), &env);
    ASSERT_TRUE(opened.ok()) << err(opened);
    auto st = (*opened)->stats();
    ASSERT_TRUE(st.ok());
    EXPECT_GE(st->last_commit_ts, durable) << "lost commits below the durable mark";
    EXPECT_TRUE(read_all(**opened) == h.state(st->last_commit_ts))
        << "not the commit prefix up to " << st->last_commit_ts;
  }
  if (flusher) {
    EXPECT_GT(flusher_failures, 0) << "no fault hit the flusher's fdatasync";
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, FaultInjectionGroup, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Flusher" : "Inline"; });

}  // namespace
}  // namespace stoa
