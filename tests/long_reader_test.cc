// Long readers are bounded (issue 10; txn/expiry.cc, guarantee 2.8).
//
// A reader process holds a read-only transaction while this process (the
// writer) rewrites the same kKeys keys round after round (each round one
// commit of kKeys values of kValueSize bytes):
//  - AgeBoundStopsGrowth: with max_snapshot_age, once the reader is past the
//    bound the data file stops growing under 100 more rounds (10 MB written;
//    at most 2 MB of growth allowed) and the reader's next call is kTimeout;
//  - DefaultKeepsSnapshot: with no bound the same churn grows the file by at
//    least 5 MB (the reader holds every version) and the reader still reads
//    its snapshot, its early Views intact, with no timeout;
//  - UnderBoundUnaffected: a reader under its bound reads its snapshot;
//  - LagInCommits: max_snapshot_lag = 50: 40 commits later the reader reads,
//    20 more and its next call is kTimeout;
//  - StatReportsAgeLagExpired: stats() and `stoa stat` report the oldest
//    snapshot's age and lag, then the expiry count;
//  - KilledReadersAreReaped: readers SIGKILLed under and past the bound are
//    reclaimed as before, and the file then stays flat.
// The reader runs in a forked child that opens the store itself.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <thread>

#include "cli_util.h"
#include "stoa/store.h"
#include "test_util.h"

namespace stoa {
namespace {

using namespace stoa::test;

constexpr int kKeys = 100;
constexpr size_t kValueSize = 1000;
constexpr uint64_t kMiB = uint64_t{1} << 20;

std::string key(int i) { return fmt::format("lr/{:03d}", i); }
std::string value_for(const std::string& token, int i) {
  std::string v = fmt::format("{}|{}|", token, i);
  v.resize(kValueSize, char('a' + i % 26));
  return v;
}

Options base_options() {
  Options o;
  o.watchdog_interval = milliseconds(0);  // children fork from this process
  o.log_threads = false;
  o.durability = Durability::kNone;
  o.initial_size = 4 * kMiB;
  o.grow_chunk = 1 * kMiB;
  o.max_size = uint64_t{1} << 30;
  return o;
}

// Reader's control words. result[k]: 0 pending, 1 ok (value is the initial
// one), 2 ok but a wrong value, 3 + code otherwise.
struct Ctl {
  std::atomic<int32_t> ready;
  std::atomic<int32_t> go;    // steps asked for
  std::atomic<int32_t> done;  // steps done
  std::atomic<int32_t> result[4];
  std::atomic<int32_t> views_intact;  // 1: the first Views still read "init" at the end
};

int32_t code_result(Code c) { return 3 + int32_t(c); }

// Opens the store, reads every key in one read-only txn, then for each step
// asked for reads key(0) again.
int reader_main(const std::string& path, const Options& o, Ctl* ctl) {
  auto opened = Store::open(path, o);
  CHILD_CHECK(opened.ok(), "open: {}", err(opened));
  auto sr = (*opened)->session();
  CHILD_CHECK(sr.ok(), "session: {}", err(sr));
  TxnOptions to;
  to.read_only = true;
  auto t = sr->begin(to);
  CHILD_CHECK(t.ok(), "begin: {}", err(t));
  std::vector<View> views;
  for (int i = 0; i < kKeys; i++) {
    auto v = t->get(key(i));
    CHILD_CHECK(v.ok() && v->str() == value_for("init", i), "first read {}: {}", i, err(v));
    views.push_back(*v);
  }
  ctl->ready.store(1);
  for (int step = 0; step < 4; step++) {
    while (ctl->go.load() <= step) std::this_thread::sleep_for(milliseconds(1));
    if (ctl->go.load() > 100) break;  // told to finish
    auto v = t->get(key(0));
    int32_t r = !v.ok() ? code_result(v.error().code()) : v->str() == value_for("init", 0) ? 1 : 2;
    if (r == 1) {
      bool intact = true;
      for (int i = 0; i < kKeys; i++) intact = intact && views[i].str() == value_for("init", i);
      ctl->views_intact.store(intact ? 1 : 0);
    }
    ctl->result[step].store(r);
    ctl->done.store(step + 1);
  }
  t->abort();
  return 0;
}

class LongReader : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.sub("store");
    ctl_ = std::make_unique<Shared<Ctl>>();
    auto opened = Store::open(path_, base_options());
    ASSERT_TRUE(opened.ok()) << err(opened);
    opened.value().reset();  // created; reopened once the readers are forked
  }
  void TearDown() override {
    if (store_) store_.reset();
  }
  Ctl& ctl() { return *ctl_->get(); }
  pid_t spawn_reader(const Options& o) {
    const std::string p = path_;
    Ctl* c = &ctl();
    return kids_.spawn([p, o, c] { return reader_main(p, o, c); });
  }
  void open_writer() {
    auto opened = Store::open(path_, base_options());
    ASSERT_TRUE(opened.ok()) << err(opened);
    store_ = std::move(opened).value();
  }
  void round(const std::string& token) {
    auto s = store_->session();
    ASSERT_TRUE(s.ok()) << err(s);
    auto r = s->transact([&](Txn& t) -> Status {
      for (int i = 0; i < kKeys; i++) STOA_TRY(t.put(key(i), value_for(token, i)));
      return {};
    });
    ASSERT_TRUE(r.ok()) << err(r);
  }
  void churn(int n) {
    for (int i = 0; i < n; i++) {
      round(fmt::format("r{}", rounds_++));
      if (HasFatalFailure()) return;
    }
  }
  StoreStats stats() {
    auto st = store_->stats();
    EXPECT_TRUE(st.ok()) << err(st);
    return st.ok() ? *st : StoreStats{};
  }
  // Asks the reader for one more step and returns its result.
  int32_t step() {
    int32_t k = ctl().go.fetch_add(1);
    EXPECT_TRUE(wait_until([&] { return ctl().done.load() > k; }, milliseconds(10000)));
    return ctl().result[k].load();
  }
  void finish(pid_t pid) {
    ctl().go.store(1000);
    int status = kids_.wait(pid, milliseconds(10000));
    EXPECT_TRUE(exited_ok(status)) << describe_status(status);
  }
  // Populates the keys, starts a reader with `o`, opens the writer.
  pid_t start(const Options& o) {
    open_writer();
    round("init");
    store_.reset();
    pid_t pid = spawn_reader(o);
    EXPECT_TRUE(wait_until([&] { return ctl().ready.load() == 1; }, milliseconds(10000)));
    open_writer();
    return pid;
  }

  TempDir dir_{"long_reader"};
  std::string path_;
  std::unique_ptr<Shared<Ctl>> ctl_;
  Children kids_;
  std::unique_ptr<Store> store_;
  int rounds_ = 0;
};

TEST_F(LongReader, AgeBoundStopsGrowth) {
  Options o = base_options();
  o.max_snapshot_age = milliseconds(300);
  pid_t pid = start(o);
  churn(30);  // within the bound: held
  std::this_thread::sleep_for(milliseconds(400));
  churn(20);  // a trimmer now finds it past the bound
  StoreStats st = stats();
  EXPECT_EQ(st.snapshots_expired, 1u);
  EXPECT_FALSE(st.oldest_snapshot.has_value());
  const uint64_t f1 = st.file_size;
  churn(100);
  st = stats();
  std::printf("claim: file %.1f MiB -> %.1f MiB over 100 rounds (10 MB) after expiry\n",
              double(f1) / kMiB, double(st.file_size) / kMiB);
  EXPECT_LE(st.file_size, f1 + 2 * kMiB);
  EXPECT_EQ(step(), code_result(Code::kTimeout));
  EXPECT_EQ(step(), code_result(Code::kTimeout)) << "an expired txn stays expired";
  finish(pid);
}

TEST_F(LongReader, DefaultKeepsSnapshot) {
  pid_t pid = start(base_options());
  churn(50);
  std::this_thread::sleep_for(milliseconds(400));
  const uint64_t f1 = stats().file_size;
  churn(100);
  StoreStats st = stats();
  std::printf("claim: file %.1f MiB -> %.1f MiB over 100 rounds with the reader held\n",
              double(f1) / kMiB, double(st.file_size) / kMiB);
  EXPECT_GE(st.file_size, f1 + 5 * kMiB) << "the held reader keeps every version";
  EXPECT_EQ(st.snapshots_expired, 0u);
  ASSERT_TRUE(st.oldest_snapshot.has_value());
  EXPECT_EQ(st.oldest_snapshot->pid, pid);
  EXPECT_EQ(st.oldest_snapshot->snapshot_lag_commits, 150u);
  EXPECT_EQ(step(), 1);
  EXPECT_EQ(ctl().views_intact.load(), 1);
  finish(pid);
}

TEST_F(LongReader, UnderBoundUnaffected) {
  Options o = base_options();
  o.max_snapshot_age = milliseconds(20000);
  o.max_snapshot_lag = 1000;
  pid_t pid = start(o);
  churn(50);
  std::this_thread::sleep_for(milliseconds(300));
  churn(10);
  EXPECT_EQ(step(), 1);
  EXPECT_EQ(ctl().views_intact.load(), 1);
  EXPECT_EQ(step(), 1);
  EXPECT_EQ(stats().snapshots_expired, 0u);
  finish(pid);
}

TEST_F(LongReader, LagInCommits) {
  Options o = base_options();
  o.max_snapshot_lag = 50;
  pid_t pid = start(o);
  churn(40);
  EXPECT_EQ(step(), 1) << "40 commits behind, bound 50";
  churn(20);
  EXPECT_EQ(step(), code_result(Code::kTimeout)) << "60 commits behind, bound 50";
  EXPECT_EQ(stats().snapshots_expired, 1u);
  finish(pid);
}

TEST_F(LongReader, StatReportsAgeLagExpired) {
  Options o = base_options();
  o.max_snapshot_age = milliseconds(1500);
  pid_t pid = start(o);
  const auto t0 = Clock::now();
  churn(30);
  std::this_thread::sleep_for(milliseconds(300));
  StoreStats st = stats();
  ASSERT_TRUE(st.oldest_snapshot.has_value());
  EXPECT_EQ(st.oldest_snapshot->pid, pid);
  EXPECT_GE(st.oldest_snapshot->snapshot_age_seconds, 0.3);
  EXPECT_LT(st.oldest_snapshot->snapshot_age_seconds, 1.5);
  EXPECT_EQ(st.oldest_snapshot->snapshot_lag_commits, 30u);
  EXPECT_GE(st.oldest_snapshot->snapshot_lag_bytes, 30 * kKeys * kValueSize);
  CliResult r = run_cli(dir_, {"stat", path_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["oldest_snapshot"]["lag_commits"].get<uint64_t>(), 30u);
  EXPECT_GE(j["oldest_snapshot"]["age_seconds"].get<double>(), 0.3);
  EXPECT_EQ(j["snapshots_expired"].get<uint64_t>(), 0u);

  std::this_thread::sleep_until(t0 + milliseconds(1700));
  churn(1);
  st = stats();
  EXPECT_EQ(st.snapshots_expired, 1u);
  EXPECT_FALSE(st.oldest_snapshot.has_value());
  bool seen = false;
  for (const SessionInfo& s : st.sessions) {
    if (s.pid == pid) seen = s.snapshot_expired;
  }
  EXPECT_TRUE(seen) << "the reader's session reports its snapshot expired";
  r = run_cli(dir_, {"stat", path_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, "expired        1 snapshots");
  EXPECT_CONTAINS(r.out, "oldest snapshot none");
  EXPECT_EQ(step(), code_result(Code::kTimeout));
  finish(pid);
}

TEST_F(LongReader, KilledReadersAreReaped) {
  Options o = base_options();
  o.max_snapshot_age = milliseconds(200);
  open_writer();
  round("init");
  store_.reset();
  // Two readers with one control block would race on it: the second gets
  // its own.
  pid_t under = spawn_reader(o);
  ASSERT_TRUE(wait_until([&] { return ctl().ready.load() == 1; }, milliseconds(10000)));
  Shared<Ctl> ctl2;
  const std::string p = path_;
  Ctl* c2 = ctl2.get();
  pid_t past = kids_.spawn([p, o, c2] { return reader_main(p, o, c2); });
  ASSERT_TRUE(wait_until([&] { return c2->ready.load() == 1; }, milliseconds(10000)));
  open_writer();
  const uint64_t recovered0 = stats().sessions_recovered;
  EXPECT_TRUE(killed_by_sigkill(kids_.kill_one(under)));  // under its bound
  std::this_thread::sleep_for(milliseconds(300));
  churn(5);  // expires `past` (alive) and the dead one's snapshot
  EXPECT_TRUE(killed_by_sigkill(kids_.kill_one(past)));  // past its bound
  auto reaped = store_->reap_dead_sessions();
  ASSERT_TRUE(reaped.ok()) << err(reaped);
  // The one killed under its bound may already be reclaimed by the churn
  // (its pin blocked the cycle, as before); both are reclaimed by now.
  StoreStats st = stats();
  EXPECT_EQ(st.sessions_recovered, recovered0 + 2);
  EXPECT_FALSE(st.oldest_snapshot.has_value());
  for (const SessionInfo& s : st.sessions) {
    EXPECT_NE(s.pid, under);
    EXPECT_NE(s.pid, past);
  }
  const uint64_t f1 = st.file_size;
  churn(100);
  EXPECT_LE(stats().file_size, f1 + 2 * kMiB);
}

}  // namespace
}  // namespace stoa
