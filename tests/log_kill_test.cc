// Every acknowledged commit survives committers SIGKILLed anywhere, in the
// store and in a rebuild from its log (guarantees 3 and 4, docs/guarantees.md).
//
// Three worker processes, one per durability mode (group, none, sync),
// commit multi-key transactions (puts and deletes; automatic checkpoints
// every few KiB, small log segments) and are SIGKILLed at random moments:
// inside a reservation, between the commit point and the record write, in
// a checkpoint. A process kill is not a power cut: the page cache survives,
// so in EVERY mode each commit that returned ok must be there afterwards.
//
// The oracle. Worker w owns keys o<w>/<j> that nobody else writes; its
// transactions are numbered 1, 2, ... across its respawns (a counter in
// shared memory, taken before the transaction starts), and what transaction
// s writes to them (which keys, put or delete, the value bytes) is a
// function of (test seed, w, s) that the parent recomputes. After
// transact() returns ok the worker appends {s, commit timestamp} to its
// ledger in anonymous shared memory (Shared<Ledger>, made before fork), so
// the record survives the SIGKILL. Each transaction also writes a few keys
// that all workers share, for contention (conflicts, padding records).
//
// Then:
//  1. the store is opened alone: dead committers are settled (record
//     rewritten from the commit list, or padding), verify is sound; its
//     state A is read;
//  2. the data file is thrown away and rebuilt from the checkpoint and the
//     log (Store::recover with rebuild): the state must be A exactly, at
//     the same last timestamp;
//  3. against the ledgers, in A and in the rebuild: every acknowledged
//     commit's timestamp is at or below the last one kept and the
//     timestamps rise with the sequence numbers; every owned key holds the
//     exact value of a put that was attempted, from a transaction at or
//     after the last acknowledged one that wrote the key (or is absent
//     after such a delete); and every transaction whose value is visible
//     is there whole (its other keys hold it or something later).
// Every child must end by the parent's SIGKILL; any other end fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "stoa/store.h"
#include "test_util.h"

namespace stoa {
namespace {

using test::Children;
using test::splitmix;
using test::TempDir;
using namespace std::chrono;

constexpr int kWorkers = 3;
constexpr int kOwnKeys = 24;
constexpr int kSharedKeys = 200;
constexpr uint64_t kMaxAcks = uint64_t{1} << 20;  // per worker (16 MiB, touched as used)

constexpr Durability kModes[] = {Durability::kGroup, Durability::kNone, Durability::kSync};
constexpr const char* kModeNames[] = {"group", "none", "sync"};
Durability worker_durability(int w) { return kModes[w % 3]; }

Options worker_options(int w) {
  Options o;
  o.initial_size = 1 << 20;
  o.grow_chunk = 1 << 20;
  o.max_size = 256 << 20;
  o.log_segment_size = 64 << 10;
  o.checkpoint_log_bytes = 48 << 10;
  o.durability = worker_durability(w);
  o.group_window = microseconds(300);
  return o;
}

// One acknowledged commit: its transaction number and timestamp.
struct Ack {
  uint64_t seq;
  uint64_t ts;
};

// What worker w attempted and what was acknowledged to it, across respawns.
// Only one process of a worker runs at a time (the parent reaps it before
// it respawns), so each field has one writer.
struct WorkerLedger {
  std::atomic<uint64_t> attempted;  // transactions 1..attempted were (maybe) tried
  std::atomic<uint64_t> acks;       // acked[0..acks) are complete
  Ack acked[kMaxAcks];
};
struct Ledger {
  WorkerLedger w[kWorkers];
};

std::string own_key(int w, int j) { return fmt::format("o{}/{:02}", w, j); }

// The exact value transaction `seq` of worker w puts into its key j.
std::string own_value(int w, int j, uint64_t seq) {
  std::string v = fmt::format("w{}/{}@{}|", w, j, seq);
  uint64_t h = splitmix(seq * 131 + uint64_t(j) * 7 + uint64_t(w));
  for (size_t n = size_t(h % 300); n > 0; n--) {
    v += char('a' + h % 26);
    h = splitmix(h);
  }
  return v;
}

// The transaction number in a value of o<w>/<j>, or 0 if it is not one
// own_value() makes.
uint64_t parse_own_value(int w, int j, const std::string& v) {
  const std::string prefix = fmt::format("w{}/{}@", w, j);
  if (v.compare(0, prefix.size(), prefix) != 0) return 0;
  uint64_t seq = 0;
  size_t i = prefix.size();
  for (; i < v.size() && v[i] >= '0' && v[i] <= '9'; i++) seq = seq * 10 + uint64_t(v[i] - '0');
  return seq != 0 && own_value(w, j, seq) == v ? seq : 0;
}

struct OwnOp {
  int key;
  bool del;
};

// What transaction `seq` of worker w does to its own keys (1 to 3 distinct
// keys, a fifth of them deleted): a function of the test seed, w and seq.
std::vector<OwnOp> own_ops(uint64_t seed, int w, uint64_t seq) {
  std::mt19937_64 r(splitmix(seed ^ splitmix(uint64_t(w) << 40 ^ seq)));
  std::vector<OwnOp> ops;
  const int n = 1 + int(r() % 3);
  while (int(ops.size()) < n) {
    const int key = int(r() % kOwnKeys);
    bool dup = false;
    for (const OwnOp& o : ops) dup |= o.key == key;
    if (!dup) ops.push_back({key, r() % 5 == 0});
  }
  return ops;
}

// Runs until killed. `spawn_seed` (distinct per process) drives the shared
// keys; `seed` (the test's) the owned ones.
int worker_main(const std::string& path, int w, uint64_t seed, uint64_t spawn_seed,
                WorkerLedger* led) {
  auto store = Store::open(path, worker_options(w));
  CHILD_CHECK(store.ok(), "worker {} open: {}", w, test::err(store));
  auto s = (*store)->session();
  CHILD_CHECK(s.ok(), "worker {} session: {}", w, test::err(s));
  std::mt19937_64 r(spawn_seed);
  struct SharedOp {
    std::string key, value;  // value "" = delete
  };
  for (;;) {
    const uint64_t seq = led->attempted.load() + 1;
    led->attempted.store(seq);  // before the transaction can reach the log
    const std::vector<OwnOp> own = own_ops(seed, w, seq);
    std::vector<SharedOp> shared(size_t(r() % 4));
    for (SharedOp& op : shared) {
      op.key = fmt::format("k{:03}", r() % kSharedKeys);
      if (r() % 5 != 0) {
        op.value = fmt::format("w{}.{}.{}", w, spawn_seed % 1000, seq);
        op.value.append(size_t(r() % 200), char('a' + r() % 26));
      }
    }
    // The same writes on every attempt (transact reruns this on conflict).
    auto res = s->transact([&](Txn& t) -> Status {
      for (const OwnOp& op : own) {
        STOA_TRY(op.del ? t.del(own_key(w, op.key))
                        : t.put(own_key(w, op.key), own_value(w, op.key, seq)));
      }
      for (const SharedOp& op : shared)
        STOA_TRY(op.value.empty() ? t.del(op.key) : t.put(op.key, op.value));
      return {};
    });
    if (res.ok()) {
      const uint64_t n = led->acks.load();
      CHILD_CHECK(n < kMaxAcks, "worker {}: ledger full ({} acks)", w, n);
      led->acked[n] = Ack{seq, *res};
      led->acks.store(n + 1, std::memory_order_release);  // acknowledged: recorded
    } else {
      CHILD_CHECK(res.code() == Code::kConflict, "worker {} commit: {}", w, test::err(res));
    }
  }
}

std::map<std::string, std::string> read_all(Store& store) {
  auto r = test::read_all(store);
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  return r.ok() ? std::move(r).value() : std::map<std::string, std::string>{};
}

// Checks `state` (whose last commit is `end_ts`) against the ledgers; returns
// the problems found (empty when every acknowledged commit is there).
std::vector<std::string> check_ledger(const std::map<std::string, std::string>& state,
                                      uint64_t end_ts, const Ledger& ledger, uint64_t seed) {
  std::vector<std::string> bad;
  for (const auto& [key, value] : state) {
    if (key[0] == 'k') continue;  // shared
    bool known = false;
    for (int w = 0; w < kWorkers; w++) {
      for (int j = 0; j < kOwnKeys; j++) known |= key == own_key(w, j);
    }
    if (!known) bad.push_back(fmt::format("unexpected key {:?}", key));
  }
  for (int w = 0; w < kWorkers; w++) {
    const WorkerLedger& led = ledger.w[w];
    const uint64_t attempted = led.attempted.load();
    // Per own key: the transactions that deleted it, and the last
    // acknowledged one that wrote it.
    std::vector<std::vector<uint64_t>> dels(kOwnKeys);
    std::vector<std::vector<OwnOp>> ops(attempted + 1);
    for (uint64_t s = 1; s <= attempted; s++) {
      ops[s] = own_ops(seed, w, s);
      for (const OwnOp& op : ops[s]) {
        if (op.del) dels[size_t(op.key)].push_back(s);
      }
    }
    std::vector<uint64_t> last_acked(kOwnKeys, 0);
    const uint64_t acks = led.acks.load(std::memory_order_acquire);
    for (uint64_t i = 0; i < acks; i++) {
      const Ack a = led.acked[i];
      if (a.seq == 0 || a.seq > attempted) {
        bad.push_back(
            fmt::format("worker {} ack {}: transaction {} was never attempted", w, i, a.seq));
        continue;
      }
      if (a.ts > end_ts) {
        bad.push_back(fmt::format(
            "worker {}: acknowledged transaction {} at timestamp {} is lost: the last commit "
            "kept is {}",
            w, a.seq, a.ts, end_ts));
      }
      if (i > 0 && (a.seq <= led.acked[i - 1].seq || a.ts <= led.acked[i - 1].ts)) {
        bad.push_back(
            fmt::format("worker {}: ack {} (transaction {}, ts {}) is not after ack {} "
                        "(transaction {}, ts {})",
                        w, i, a.seq, a.ts, i - 1, led.acked[i - 1].seq, led.acked[i - 1].ts));
      }
      for (const OwnOp& op : ops[a.seq]) last_acked[size_t(op.key)] = a.seq;
    }
    // The transaction whose write each key holds (0: absent).
    std::vector<uint64_t> holds(kOwnKeys, 0);
    for (int j = 0; j < kOwnKeys; j++) {
      auto it = state.find(own_key(w, j));
      if (it == state.end()) continue;
      const uint64_t v = parse_own_value(w, j, it->second);
      bool put = false;
      if (v != 0 && v <= attempted) {
        for (const OwnOp& op : ops[v]) put |= op.key == j && !op.del;
      }
      if (!put) {
        bad.push_back(fmt::format("{} holds {:?}: not a value any attempted transaction put",
                                  own_key(w, j), it->second.substr(0, 40)));
        holds[size_t(j)] = ~uint64_t{0};
        continue;
      }
      holds[size_t(j)] = v;
    }
    // Absent after transaction `from`: a delete at or after it was attempted.
    auto deleted_since = [&](int j, uint64_t from) {
      for (uint64_t d : dels[size_t(j)]) {
        if (d >= from) return true;
      }
      return false;
    };
    for (int j = 0; j < kOwnKeys; j++) {
      const uint64_t h = holds[size_t(j)];
      if (h == ~uint64_t{0}) continue;
      const uint64_t a = last_acked[size_t(j)];
      if (h != 0 && h < a) {
        bad.push_back(fmt::format("{} holds transaction {}'s value, older than acknowledged {}",
                                  own_key(w, j), h, a));
      }
      if (h == 0 && a != 0 && !deleted_since(j, a)) {
        bad.push_back(fmt::format(
            "{} is missing: acknowledged transaction {} wrote it and no later one deletes it",
            own_key(w, j), a));
      }
      if (h == 0) continue;
      // Transaction h is visible: all of its writes must be (or later ones).
      for (const OwnOp& op : ops[h]) {
        const uint64_t other = holds[size_t(op.key)];
        if (other == ~uint64_t{0} || op.key == j) continue;
        const bool ok = other != 0 ? other >= h : deleted_since(op.key, h);
        if (!ok) {
          bad.push_back(fmt::format(
              "half of transaction {} of worker {}: {} holds it but {} {}", h, w, own_key(w, j),
              own_key(w, op.key),
              other != 0 ? fmt::format("holds older {}", other) : std::string("is absent")));
        }
      }
    }
  }
  return bad;
}

std::string first_problems(const std::vector<std::string>& bad) {
  std::string out;
  for (size_t i = 0; i < bad.size() && i < 10; i++) out += "  " + bad[i] + "\n";
  if (bad.size() > 10) out += fmt::format("  ... {} in all\n", bad.size());
  return out;
}

// The oracle's own control: from a sound state, takes away the newest
// acknowledged write of some owned key (erases it, rolls it back to an
// older put) and cuts the end below the newest acknowledged timestamp;
// check_ledger must report each.
void expect_ledger_check_can_fail(const std::map<std::string, std::string>& state, uint64_t end_ts,
                                  const Ledger& ledger, uint64_t seed) {
  for (int w = 0; w < kWorkers; w++) {
    const WorkerLedger& led = ledger.w[w];
    const uint64_t acks = led.acks.load(), attempted = led.attempted.load();
    if (acks == 0) continue;
    // Per own key, in order: the transactions that put it, that deleted it.
    std::vector<std::vector<uint64_t>> puts(kOwnKeys), dels(kOwnKeys);
    for (uint64_t s = 1; s <= attempted; s++) {
      for (const OwnOp& o : own_ops(seed, w, s)) (o.del ? dels : puts)[size_t(o.key)].push_back(s);
    }
    for (uint64_t i = acks; i-- > 0;) {
      const uint64_t seq = led.acked[i].seq;
      for (const OwnOp& op : own_ops(seed, w, seq)) {
        const std::string key = own_key(w, op.key);
        auto it = state.find(key);
        if (op.del || it == state.end() || parse_own_value(w, op.key, it->second) != seq) continue;
        const auto& d = dels[size_t(op.key)];
        const auto& p = puts[size_t(op.key)];
        if ((!d.empty() && d.back() > seq) || p.front() >= seq) continue;
        const uint64_t older = *std::prev(std::lower_bound(p.begin(), p.end(), seq));
        auto doctored = state;
        doctored.erase(key);
        EXPECT_FALSE(check_ledger(doctored, end_ts, ledger, seed).empty())
            << "erasing " << key << " (acknowledged) went unnoticed";
        doctored[key] = own_value(w, op.key, older);
        EXPECT_FALSE(check_ledger(doctored, end_ts, ledger, seed).empty())
            << "rolling " << key << " back to transaction " << older << " went unnoticed";
        EXPECT_FALSE(check_ledger(state, led.acked[acks - 1].ts - 1, ledger, seed).empty())
            << "a log cut below the last acknowledged commit went unnoticed";
        return;
      }
    }
  }
  ADD_FAILURE() << "no acknowledged write to take away: the oracle's control cannot run";
}

TEST(LogKill, AcknowledgedCommitsSurviveKilledCommittersAndARebuild) {
  const uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  TempDir dir("logkill");
  const std::string path = dir.sub("store");
  {
    auto s = Store::open(path, worker_options(0));
    ASSERT_TRUE(s.ok()) << s.error().to_string();
  }
  test::Shared<Ledger> ledger;
  Children kids;
  pid_t pids[kWorkers];
  uint64_t spawned = 0;
  auto spawn = [&](int w) {
    // Counted here, in the parent: every process gets its own seed.
    const uint64_t sp = splitmix(seed ^ splitmix(++spawned));
    pids[w] = kids.spawn([&, w, sp] { return worker_main(path, w, seed, sp, &ledger->w[w]); });
  };
  for (int w = 0; w < kWorkers; w++) spawn(w);
  const int kills = 60;
  for (int k = 0; k < kills; k++) {
    std::this_thread::sleep_for(microseconds(2000 + rng() % 20000));
    const int w = int(rng() % kWorkers);
    const int status = kids.kill_one(pids[w]);
    ASSERT_TRUE(test::killed_by_sigkill(status))
        << "worker " << w << " (kill " << k << ") " << test::describe_status(status);
    spawn(w);
  }
  std::this_thread::sleep_for(milliseconds(50));
  for (int w = 0; w < kWorkers; w++) {
    const int status = kids.kill_one(pids[w]);
    ASSERT_TRUE(test::killed_by_sigkill(status))
        << "worker " << w << " (last kill) " << test::describe_status(status);
  }
  uint64_t acks = 0;
  for (int w = 0; w < kWorkers; w++) {
    std::printf("worker %d (%s): %llu transactions attempted, %llu acknowledged\n", w,
                kModeNames[w % 3], (unsigned long long)ledger->w[w].attempted.load(),
                (unsigned long long)ledger->w[w].acks.load());
    EXPECT_GT(ledger->w[w].acks.load(), 20u) << "worker " << w << " hardly committed";
    acks += ledger->w[w].acks.load();
  }

  std::map<std::string, std::string> a;
  uint64_t a_ts = 0, ckpt_ts = 0;
  {
    Options o = worker_options(0);
    auto s = Store::open(path, o);
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    EXPECT_FALSE((*s)->recovery().rebuilt) << (*s)->recovery().reason;
    auto rep = (*s)->verify();
    ASSERT_TRUE(rep.ok());
    ASSERT_TRUE(rep->sound()) << rep->problems.front();
    EXPECT_TRUE(rep->log_checked);
    a = read_all(**s);
    auto st = (*s)->stats();
    ASSERT_TRUE(st.ok());
    a_ts = st->last_commit_ts;
    ckpt_ts = st->checkpoint_ts;
    std::printf(
        "%d kills; %zu keys at timestamp %llu; checkpoint at %llu, %llu log bytes after it\n",
        kills, a.size(), (unsigned long long)a_ts, (unsigned long long)ckpt_ts,
        (unsigned long long)st->log_bytes);
    ASSERT_GT(a_ts, 0u);
  }
  const std::vector<std::string> bad_a = check_ledger(a, a_ts, *ledger, seed);
  EXPECT_TRUE(bad_a.empty()) << "after the kills, against " << acks << " acknowledged commits:\n"
                             << first_problems(bad_a);
  if (bad_a.empty()) expect_ledger_check_can_fail(a, a_ts, *ledger, seed);

  auto rec = Store::recover(path, RecoverMode::kRebuild);
  ASSERT_TRUE(rec.ok()) << rec.error().to_string();
  EXPECT_TRUE(rec->rebuilt);
  EXPECT_EQ(rec->end_ts, a_ts);
  std::printf("rebuilt: checkpoint %llu (%llu keys), %llu records / %llu bytes replayed\n",
              (unsigned long long)rec->checkpoint_ts, (unsigned long long)rec->checkpoint_keys,
              (unsigned long long)rec->log_records, (unsigned long long)rec->log_bytes);
  auto s = Store::open(path, worker_options(0));
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  auto st = (*s)->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->last_commit_ts, a_ts);
  const std::map<std::string, std::string> b = read_all(**s);
  EXPECT_EQ(b, a) << "the log does not hold what the store held";
  const std::vector<std::string> bad_b = check_ledger(b, rec->end_ts, *ledger, seed);
  EXPECT_TRUE(bad_b.empty()) << "after the rebuild, against " << acks << " acknowledged commits:\n"
                             << first_problems(bad_b);
  auto rep = (*s)->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound());
}

}  // namespace
}  // namespace stoa
