// bench/durable_bench.cc — durable commits and recovery (the write-ahead
// log), Stoa side by side with LMDB and SQLite in the same run.
//
// Workloads (see bench/README.md):
//   durable-commit-{1,2,8,32}{t,p}
//       one-put transactions per second (16 B key, 100 B value, distinct keys
//       per session, so no conflicts) from N sessions at once, as N threads
//       of one process (t) or N processes (p). Stoa in Durability::kSync and
//       Durability::kGroup; anchors: LMDB with its default sync (flags 0: an
//       fdatasync of the pages, then an O_DSYNC write of the meta page, per
//       commit) and SQLite in WAL mode with synchronous=FULL.
//       Each registered workload reports two sections,
//       durable-commit-sync-<N><t|p> and durable-commit-group-<N><t|p>, each
//       with a compare line against both anchors (the anchors' figures are
//       the same in both).
//   recovery
//       the time Store::recover(dir, RecoverMode::kRebuild) takes to rebuild the
//       data file from 1 GiB of log (with --quick too), no checkpoint.
//
// Same work on all sides of durable-commit: the same keys and values, one
// put per transaction, one handle per session (a Stoa session, an SQLite
// connection; LMDB: one environment per process, one write transaction per
// put), the same warm-up and start signal. A Stoa kGroup commit returns
// before its log record is on disk, so a kGroup worker ends its timed part
// with Store::sync(): every commit counted is on disk when the clock stops.
//
// Process workloads run helper processes (`stoa-bench --child durable-worker
// ...`, a fresh exec each trial) that open the store/env/database themselves,
// warm up, print "ready" and block reading an inherited pipe; the parent
// closes the pipe's write end, which starts them all at once. Each prints
// "ops seconds bad"; the parent sums ops/seconds.
#include <fcntl.h>
#include <lmdb.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench.h"
#include "stoa/store.h"
#include "stoa/txn.h"

namespace stoa_bench {
namespace {

constexpr size_t kKeySize = 16;
constexpr size_t kValueSize = 100;
constexpr uint64_t kStoaMaxSize = uint64_t{4} << 30;
constexpr uint64_t kLmdbMapSize = uint64_t{1} << 30;
constexpr int kSqliteBusyMs = 10'000;
// Keys of trial t start at sequence number t * kTrialSeq, so every put of a
// run inserts a new key.
constexpr uint64_t kTrialSeq = 1'000'000'000;

// --- keys and values ---------------------------------------------------------

// The n lowest decimal digits of v, zero-padded, at out[0..n).
inline void put_digits(uint64_t v, int n, char* out) {
  for (int d = n - 1; d >= 0; d--, v /= 10) out[d] = char('0' + v % 10);
}
// "w<3 digits>-<11 digits>": 16 B, distinct per worker (session) and seq.
inline void make_key(int w, uint64_t seq, char* out) {
  out[0] = 'w';
  put_digits(uint64_t(w), 3, out + 1);
  out[4] = '-';
  put_digits(seq, 11, out + 5);
}
// The key, then 84 filler bytes that depend on seq.
inline void make_value(const char* key, uint64_t seq, char* out) {
  std::memcpy(out, key, kKeySize);
  for (size_t j = kKeySize; j < kValueSize; j++) out[j] = char('a' + (seq + j) % 26);
}

// --- the sides -----------------------------------------------------------------

enum class SideKind { kStoaSync, kStoaGroup, kSqlite, kLmdb };
constexpr SideKind kSides[] = {SideKind::kStoaSync, SideKind::kStoaGroup, SideKind::kSqlite,
                               SideKind::kLmdb};
constexpr int kNumSides = 4;

const char* side_name(SideKind k) {
  switch (k) {
    case SideKind::kStoaSync:
      return "stoa-sync";
    case SideKind::kStoaGroup:
      return "stoa-group";
    case SideKind::kSqlite:
      return "sqlite-wal-full";
    case SideKind::kLmdb:
      return "lmdb-sync";
  }
  return "?";
}
bool parse_side(const std::string& s, SideKind* k) {
  for (SideKind x : kSides)
    if (s == side_name(x)) {
      *k = x;
      return true;
    }
  return false;
}

// One session's handle: a Stoa session, an SQLite connection, or LMDB's
// environment (shared by the process's threads). Used by one thread.
class Writer {
 public:
  virtual ~Writer() = default;
  // One transaction with one put, durable per the side's promise. False on
  // failure (the first error is kept in error()).
  virtual bool put(std::string_view key, std::string_view value) = 0;
  // Inside the timed part, after the last put: makes every acknowledged
  // commit durable where put() did not (Stoa kGroup).
  virtual bool finish() { return true; }
  // The end of the current phase (warm-up, timed part). A put waiting for
  // a lock past it may give up (SQLite's busy wait): put() then returns
  // false with gave_up() set, and the put is neither counted nor an error.
  void set_deadline(Clock::time_point t) {
    deadline_ = t;
    gave_up_ = false;
  }
  bool gave_up() const { return gave_up_; }
  const std::string& error() const { return error_; }

 protected:
  bool fail(const std::string& what) {
    if (error_.empty()) error_ = what;
    return false;
  }
  std::string error_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool gave_up_ = false;
};

// One process's handle on a side's store. Opened on the main thread (a
// failure dies); writer() is called from the worker threads.
class Side {
 public:
  virtual ~Side() = default;
  virtual std::unique_ptr<Writer> writer() = 0;
};

// --- Stoa --------------------------------------------------------------------

class StoaWriter : public Writer {
 public:
  StoaWriter(stoa::Store& store, bool sync_at_end) : store_(store), sync_at_end_(sync_at_end) {
    auto s = store.session();
    if (s.ok())
      session_ = std::move(s).value();
    else
      fail("Store::session: " + s.error().to_string());
    fn_ = [this](stoa::Txn& t) { return t.put(key_, value_); };
  }
  ~StoaWriter() override {
    if (session_.is_open()) (void)session_.close();
  }
  bool put(std::string_view key, std::string_view value) override {
    if (!session_.is_open()) return false;
    key_ = key;
    value_ = value;
    auto r = session_.transact(fn_);
    return r.ok() || fail("Session::transact: " + r.error().to_string());
  }
  bool finish() override {
    if (!sync_at_end_) return true;
    auto st = store_.sync();
    return st.ok() || fail("Store::sync: " + st.error().to_string());
  }

 private:
  stoa::Store& store_;
  bool sync_at_end_;
  stoa::Session session_;
  std::string_view key_, value_;
  std::function<stoa::Status(stoa::Txn&)> fn_;
};

class StoaSide : public Side {
 public:
  StoaSide(const std::string& dir, stoa::Durability d) : group_(d == stoa::Durability::kGroup) {
    stoa::Options o;
    o.create_if_missing = true;
    o.max_size = kStoaMaxSize;
    o.huge_pages = g_huge_pages;
    o.durability = d;
    auto r = stoa::Store::open(dir, o);
    if (!r.ok()) die("Store::open " + dir + ": " + r.error().to_string());
    store_ = std::move(r).value();
  }
  std::unique_ptr<Writer> writer() override {
    return std::make_unique<StoaWriter>(*store_, group_);
  }

 private:
  bool group_;
  std::unique_ptr<stoa::Store> store_;
};

// --- SQLite ------------------------------------------------------------------

std::string sqlite_file(const std::string& dir) { return dir + "/kv.sqlite"; }

// A connection with synchronous=FULL and the busy timeout set; the database
// is in WAL mode (persistent, set by SqliteSide). Each INSERT OR REPLACE runs
// in its own (autocommit) transaction.
class SqliteWriter : public Writer {
 public:
  explicit SqliteWriter(const std::string& file) {
    if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK) {
      fail("sqlite3_open_v2 " + file + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory"));
      return;
    }
    // SQLite's busy timeout, except that a wait gives up at the end of the
    // phase (see busy()).
    sqlite3_busy_handler(db_, &SqliteWriter::busy, this);
    if (!exec("PRAGMA synchronous=FULL")) return;
    if (sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO kv(k, v) VALUES(?1, ?2)", -1, &insert_,
                           nullptr) != SQLITE_OK)
      fail(std::string("sqlite3_prepare_v2: ") + sqlite3_errmsg(db_));
  }
  ~SqliteWriter() override {
    if (insert_) sqlite3_finalize(insert_);
    if (db_) sqlite3_close(db_);
  }
  bool put(std::string_view key, std::string_view value) override {
    if (!insert_) return false;
    sqlite3_bind_blob(insert_, 1, key.data(), int(key.size()), SQLITE_STATIC);
    sqlite3_bind_blob(insert_, 2, value.data(), int(value.size()), SQLITE_STATIC);
    int rc = sqlite3_step(insert_);
    sqlite3_reset(insert_);
    if (rc == SQLITE_BUSY && gave_up_) return false;
    return rc == SQLITE_DONE || fail(std::string("sqlite3_step: ") + sqlite3_errstr(rc));
  }

 private:
  // sqlite3_busy_timeout(kSqliteBusyMs)'s own schedule (sqliteDefaultBusyCallback:
  // sleeps of 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, then 100 ms, until the
  // timeout), except that it gives up once the phase's deadline has passed:
  // with 32 writers a waiter can otherwise sleep for seconds past the end of
  // a trial. Before the deadline it is exactly busy_timeout.
  static int busy(void* self_v, int count) {
    auto* self = static_cast<SqliteWriter*>(self_v);
    if (Clock::now() >= self->deadline_) {
      self->gave_up_ = true;
      return 0;
    }
    static const int kDelays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    static const int kTotals[] = {0, 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, 228};
    constexpr int kN = int(sizeof kDelays / sizeof kDelays[0]);
    int delay = count < kN ? kDelays[count] : kDelays[kN - 1];
    int prior = count < kN ? kTotals[count] : kTotals[kN - 1] + delay * (count - (kN - 1));
    if (prior + delay > kSqliteBusyMs) {
      delay = kSqliteBusyMs - prior;
      if (delay <= 0) return 0;
    }
    sqlite3_sleep(delay);
    return 1;
  }

  bool exec(const char* sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) == SQLITE_OK) return true;
    fail(std::string(sql) + ": " + (msg ? msg : "?"));
    sqlite3_free(msg);
    return false;
  }
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
};

class SqliteSide : public Side {
 public:
  // Creates the database (WAL mode, the table) when it is missing.
  explicit SqliteSide(const std::string& dir) : file_(sqlite_file(dir)) {
    std::filesystem::create_directories(dir);
    sqlite3* db = nullptr;
    if (sqlite3_open(file_.c_str(), &db) != SQLITE_OK)
      die("sqlite3_open " + file_ + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_busy_timeout(db, kSqliteBusyMs);
    std::string mode;
    auto cb = [](void* out, int n, char** vals, char**) {
      if (n > 0 && vals[0]) *static_cast<std::string*>(out) = vals[0];
      return 0;
    };
    char* msg = nullptr;
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL", cb, &mode, &msg) != SQLITE_OK || mode != "wal")
      die("SQLite PRAGMA journal_mode=WAL: " + std::string(msg ? msg : mode.c_str()));
    if (sqlite3_exec(db,
                     "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) "
                     "WITHOUT ROWID",
                     nullptr, nullptr, &msg) != SQLITE_OK)
      die("SQLite CREATE TABLE: " + std::string(msg ? msg : "?"));
    sqlite3_close(db);
  }
  std::unique_ptr<Writer> writer() override { return std::make_unique<SqliteWriter>(file_); }

 private:
  std::string file_;
};

// --- LMDB --------------------------------------------------------------------

class LmdbWriter : public Writer {
 public:
  LmdbWriter(MDB_env* env, MDB_dbi dbi) : env_(env), dbi_(dbi) {}
  bool put(std::string_view key, std::string_view value) override {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    MDB_txn* t;
    int rc = mdb_txn_begin(env_, nullptr, 0, &t);
    if (rc == MDB_SUCCESS) {
      rc = mdb_put(t, dbi_, &k, &v, 0);
      if (rc == MDB_SUCCESS)
        rc = mdb_txn_commit(t);
      else
        mdb_txn_abort(t);
    }
    return rc == MDB_SUCCESS || fail(std::string("lmdb put: ") + mdb_strerror(rc));
  }

 private:
  MDB_env* env_;
  MDB_dbi dbi_;
};

// One environment per process, default flags: mdb_txn_commit syncs (an
// fdatasync of data.mdb after the pages, then the meta page written through
// its O_DSYNC descriptor).
class LmdbSide : public Side {
 public:
  explicit LmdbSide(const std::string& dir) {
    std::filesystem::create_directories(dir);
    check(mdb_env_create(&env_), "mdb_env_create");
    check(mdb_env_set_mapsize(env_, kLmdbMapSize), "mdb_env_set_mapsize");
    check(mdb_env_open(env_, dir.c_str(), 0, 0644), "mdb_env_open");
    MDB_txn* t;
    check(mdb_txn_begin(env_, nullptr, 0, &t), "mdb_txn_begin");
    check(mdb_dbi_open(t, nullptr, 0, &dbi_), "mdb_dbi_open");
    check(mdb_txn_commit(t), "mdb_txn_commit");
  }
  ~LmdbSide() override {
    if (env_) mdb_env_close(env_);
  }
  std::unique_ptr<Writer> writer() override { return std::make_unique<LmdbWriter>(env_, dbi_); }

 private:
  static void check(int rc, const char* what) {
    if (rc != MDB_SUCCESS) die(std::string(what) + ": " + mdb_strerror(rc));
  }
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

std::unique_ptr<Side> open_side(SideKind k, const std::string& dir) {
  switch (k) {
    case SideKind::kStoaSync:
      return std::make_unique<StoaSide>(dir, stoa::Durability::kSync);
    case SideKind::kStoaGroup:
      return std::make_unique<StoaSide>(dir, stoa::Durability::kGroup);
    case SideKind::kSqlite:
      return std::make_unique<SqliteSide>(dir);
    case SideKind::kLmdb:
      return std::make_unique<LmdbSide>(dir);
  }
  return nullptr;
}

// --- one session's loop (threads and processes alike) ------------------------

struct Run {
  uint64_t ops = 0;  // commits that succeeded in the timed part
  double seconds = 0;
  uint64_t bad = 0;  // failed commits (warm-up included): must be 0
  std::string error;
};

// Untimed warm-up before the start signal: the first commits of a session
// create files, fault in pages and fill caches, on every side.
double warmup_seconds(double seconds) { return std::clamp(seconds / 4, 0.02, 0.25); }

// Worker w: opens its writer, warms up, calls wait_go(), then commits
// one-put transactions for `seconds`, then finish() (timed).
Run session_loop(Side& side, int w, double seconds, uint64_t trial,
                 const std::function<void()>& wait_go) {
  Run r;
  std::unique_ptr<Writer> wr = side.writer();
  char key[kKeySize], val[kValueSize];
  uint64_t seq = trial * kTrialSeq;
  auto one = [&] {
    make_key(w, seq, key);
    make_value(key, seq, val);
    seq++;
    return wr->put(std::string_view(key, kKeySize), std::string_view(val, kValueSize));
  };
  auto until = [](Clock::time_point t0, double s) {
    return t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  auto warm_end = until(Clock::now(), warmup_seconds(seconds));
  wr->set_deadline(warm_end);
  do {
    if (!one() && !wr->gave_up()) r.bad++;
  } while (Clock::now() < warm_end && wr->error().empty() && !wr->gave_up());
  wait_go();
  auto t0 = Clock::now();
  auto end = until(t0, seconds);
  wr->set_deadline(end);
  // A put that gave up waiting for a lock after the end is not counted.
  do {
    if (one())
      r.ops++;
    else if (!wr->gave_up())
      r.bad++;
  } while (Clock::now() < end && r.bad == 0 && !wr->gave_up());
  r.bad += !wr->finish();
  r.seconds = seconds_since(t0);
  r.error = wr->error();
  return r;
}

struct Trial {
  double rate = 0;  // sum over the sessions of ops / seconds
  uint64_t bad = 0;
  std::string error;  // the first session error
};

void add(Trial& t, const Run& r) {
  t.rate += r.seconds > 0 ? double(r.ops) / r.seconds : 0;
  t.bad += r.bad;
  if (t.error.empty() && !r.error.empty()) t.error = r.error;
}

// N threads of this process, one session each, started together.
Trial thread_trial(SideKind k, const std::string& dir, int n, double seconds, uint64_t trial) {
  std::unique_ptr<Side> side = open_side(k, dir);
  std::barrier go(n);
  std::vector<Run> runs(n);
  std::vector<std::thread> ts;
  for (int w = 0; w < n; w++)
    ts.emplace_back([&, w] {
      runs[w] = session_loop(*side, w, seconds, trial, [&] { go.arrive_and_wait(); });
    });
  for (auto& t : ts) t.join();
  Trial out;
  for (const Run& r : runs) add(out, r);
  return out;
}

// N worker processes, one session each, each opening the store itself.
Trial proc_trial(SideKind k, const std::string& dir, int n, double seconds, uint64_t trial) {
  Trial out;
  std::string failure;
  {
    StartPipe pipe;
    // Destroyed before die() below: ~Child kills and reaps a worker that is
    // still running.
    std::vector<std::unique_ptr<Child>> kids;
    for (int w = 0; w < n; w++)
      kids.push_back(std::make_unique<Child>(
          "durable-worker",
          std::vector<std::string>{side_name(k), dir, std::to_string(w), std::to_string(seconds),
                                   std::to_string(trial), std::to_string(pipe.fd[0])}));
    pipe.close_read();
    std::string line;
    for (auto& c : kids)
      if (failure.empty() && (!c->read_line(&line) || line != "ready"))
        failure = std::string("durable-worker (") + side_name(k) + ") did not start";
    pipe.start();
    for (auto& c : kids) {
      if (!failure.empty()) break;
      unsigned long long ops = 0, nbad = 0;
      double secs = 0;
      if (!c->read_line(&line) ||
          std::sscanf(line.c_str(), "%llu %lf %llu", &ops, &secs, &nbad) != 3) {
        failure = std::string("durable-worker (") + side_name(k) + ") gave no result";
        break;
      }
      if (int rc = c->wait(); rc != 0) {
        failure =
            std::string("durable-worker (") + side_name(k) + ") exited with " + std::to_string(rc);
        break;
      }
      Run r;
      r.ops = ops;
      r.seconds = secs;
      r.bad = nbad;
      if (nbad != 0) r.error = "see the worker's message on stderr";
      add(out, r);
    }
  }
  if (!failure.empty()) die(failure);
  return out;
}

// `stoa-bench --child durable-worker SIDE DIR WORKER SECONDS TRIAL GOFD`:
// opens the side's store in DIR, warms up, prints "ready", blocks until GOFD
// (a pipe) reaches EOF, runs for SECONDS and prints "ops seconds bad".
int durable_worker(const std::vector<std::string>& a) {
  if (a.size() != 6) return 2;
  SideKind k;
  if (!parse_side(a[0], &k)) return 2;
  const std::string& dir = a[1];
  int w = std::stoi(a[2]);
  double seconds = std::stod(a[3]);
  uint64_t trial = std::stoull(a[4]);
  int gofd = std::stoi(a[5]);
  std::unique_ptr<Side> side = open_side(k, dir);
  Run r = session_loop(*side, w, seconds, trial, [&] {
    std::printf("ready\n");
    std::fflush(stdout);
    wait_for_start(gofd);
  });
  if (!r.error.empty())
    std::fprintf(stderr, "durable-worker %s: %s\n", a[0].c_str(), r.error.c_str());
  std::printf("%llu %.9f %llu\n", (unsigned long long)r.ops, r.seconds, (unsigned long long)r.bad);
  std::fflush(stdout);
  return 0;
}

void durable_commit(const Config& cfg, Reporter& rep, int n, bool procs) {
  const std::string suffix = std::to_string(n) + (procs ? "p" : "t");
  // Short trials with --quick: 16 Stoa figures and 16 anchor figures in all.
  // Each trial copies and recovers ~1.3 GB: at most 3 (--quick) or 5.
  const int trials = std::min(cfg.trials, cfg.quick ? 3 : 5);
  const double seconds = cfg.quick ? std::min(cfg.trial_seconds, 0.2) : cfg.trial_seconds;
  const std::string who = std::to_string(n) + (procs ? " processes" : " threads of one process");
  std::printf("info: durable-commit-%s: %d trials of %.2g s per side, sides interleaved\n",
              suffix.c_str(), trials, seconds);
  std::fflush(stdout);

  TempDir tmp(cfg, "durable-" + suffix);
  std::string dirs[kNumSides];
  for (int s = 0; s < kNumSides; s++) {
    dirs[s] = tmp.path() + "/" + side_name(kSides[s]);
    (void)open_side(kSides[s], dirs[s]);  // create it (untimed)
  }
  std::vector<double> rates[kNumSides];
  uint64_t bad[kNumSides] = {};
  std::string errors[kNumSides];
  for (int t = 0; t < trials; t++) {
    // Rotate which side goes first (write-back of the previous side's
    // files goes on meanwhile).
    for (int i = 0; i < kNumSides; i++) {
      int s = (t + i) % kNumSides;
      Trial r = procs ? proc_trial(kSides[s], dirs[s], n, seconds, uint64_t(t))
                      : thread_trial(kSides[s], dirs[s], n, seconds, uint64_t(t));
      rates[s].push_back(r.rate);
      bad[s] += r.bad;
      if (errors[s].empty()) errors[s] = r.error;
    }
  }
  Stats st[kNumSides];
  for (int s = 0; s < kNumSides; s++) st[s] = summarize(rates[s]);
  const Stats& sqlite = st[2];
  const Stats& lmdb = st[3];
  // Each side's failures are reported once (the anchors' in the sync section).
  auto report = [&](int s, const std::string& mode, const std::string& promise,
                    std::initializer_list<int> check) {
    const std::string name = "durable-commit-" + mode + "-" + suffix;
    rep.section(name,
                "one-put transactions (16 B key, 100 B value, distinct keys per session) "
                "from " +
                    who + ", one session/connection each; Stoa " + promise +
                    "; anchors LMDB default sync (one env per process) and SQLite WAL "
                    "synchronous=FULL (INSERT OR REPLACE, autocommit); commits/s summed");
    for (int a : check)
      if (bad[a] != 0)
        rep.error(name + ": " + side_name(kSides[a]) + ": " + std::to_string(bad[a]) +
                  " commits failed (" + errors[a] + ")");
    rep.figure(name, "stoa", st[s], "commits/s");
    rep.figure(name, side_name(SideKind::kSqlite), sqlite, "commits/s");
    rep.figure(name, side_name(SideKind::kLmdb), lmdb, "commits/s");
    rep.compare(name, side_name(SideKind::kSqlite),
                sqlite.median > 0 ? st[s].median / sqlite.median : 0);
    rep.compare(name, side_name(SideKind::kLmdb), lmdb.median > 0 ? st[s].median / lmdb.median : 0);
  };
  report(0, "sync", "Durability::kSync (commit returns after fdatasync)", {0, 2, 3});
  report(1, "group",
         "Durability::kGroup (commit returns once written; fdatasync within group_window; "
         "each session ends its timed part with Store::sync())",
         {1});
}

template <int N, bool Procs>
void durable_commit_n(const Config& cfg, Reporter& rep) {
  durable_commit(cfg, rep, N, Procs);
}

// --- recovery ----------------------------------------------------------------

constexpr uint64_t kRecoveryKeys = 65'536;   // key space: ~64 MiB of live values
constexpr size_t kRecoveryValueSize = 1000;  // + a 16 B key: ~1 KiB per put
constexpr int kRecoveryPutsPerTxn = 100;
// 1 GiB with --quick too: the whole workload (writing the log, 3 copies of
// the store, 3 recoveries, 3 checks) takes ~25 s on a 2-vCPU VM.
constexpr uint64_t kRecoveryBytes = uint64_t{1} << 30;

inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline void recovery_key(uint64_t i, char* out) {
  out[0] = 'r';
  put_digits(i, 15, out + 1);
}
// The value transaction `txn` writes to key i: a 32-byte header naming both,
// then filler that depends on both.
inline void recovery_value(uint64_t i, uint64_t txn, char* out) {
  out[0] = 'k';
  put_digits(i, 15, out + 1);
  out[16] = 't';
  put_digits(txn, 15, out + 17);
  uint64_t s = i * 1'000'003 + txn;
  for (size_t j = 32; j < kRecoveryValueSize; j += 8) {
    uint64_t x = splitmix64(s);
    std::memcpy(out + j, &x, std::min<size_t>(8, kRecoveryValueSize - j));
  }
}

stoa::Options recovery_options() {
  stoa::Options o;
  o.create_if_missing = true;
  o.max_size = uint64_t{8} << 30;
  o.durability = stoa::Durability::kNone;
  o.checkpoint_log_bytes = 0;  // no automatic checkpoints: recovery replays all the log
  return o;
}

uint64_t dir_bytes(const std::string& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
    if (it->is_regular_file(ec)) n += it->file_size(ec);
  return n;
}

// Seconds to read every file under dir (sequential read(2)s of 1 MiB):
// the floor for reading the log, in the page cache like recovery's.
double read_files_seconds(const std::string& dir, uint64_t* bytes) {
  std::vector<char> buf(1 << 20);
  *bytes = 0;
  auto t0 = Clock::now();
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t r;
    while ((r = ::read(fd, buf.data(), buf.size())) > 0) *bytes += uint64_t(r);
    ::close(fd);
  }
  return seconds_since(t0);
}

// Writes transactions of kRecoveryPutsPerTxn random keys into a new store in
// `dir` until its log holds `target` bytes; last[i] is the transaction that
// last wrote key i (0: never). Returns the log bytes.
uint64_t write_log(const std::string& dir, uint64_t target, std::vector<uint64_t>* last,
                   double* seconds, uint64_t* txns) {
  auto r = stoa::Store::open(dir, recovery_options());
  if (!r.ok()) die("Store::open " + dir + ": " + r.error().to_string());
  std::unique_ptr<stoa::Store> store = std::move(r).value();
  auto sr = store->session();
  if (!sr.ok()) die("Store::session: " + sr.error().to_string());
  stoa::Session session = std::move(sr).value();
  last->assign(kRecoveryKeys, 0);
  std::vector<char> val(kRecoveryValueSize);
  char key[kKeySize];
  uint64_t seed = 42, txn = 0, log_bytes = 0;
  auto t0 = Clock::now();
  while (log_bytes < target) {
    txn++;
    auto tr = session.begin();
    if (!tr.ok()) die("Session::begin: " + tr.error().to_string());
    stoa::Txn t = std::move(tr).value();
    for (int p = 0; p < kRecoveryPutsPerTxn; p++) {
      uint64_t i = uint64_t((unsigned __int128)splitmix64(seed) * kRecoveryKeys >> 64);
      recovery_key(i, key);
      recovery_value(i, txn, val.data());
      auto st =
          t.put(std::string_view(key, kKeySize), std::string_view(val.data(), kRecoveryValueSize));
      if (!st.ok()) die("Txn::put: " + st.error().to_string());
      (*last)[i] = txn;
    }
    auto c = t.commit();
    if (!c.ok()) die("Txn::commit: " + c.error().to_string());
    if (txn % 64 == 0) {
      auto s = store->stats();
      if (!s.ok()) die("Store::stats: " + s.error().to_string());
      if (!s->log_failed.empty()) die("the log failed: " + s->log_failed);
      log_bytes = s->log_bytes;
      if (log_bytes == 0 && txn >= 64 * 64)
        die("StoreStats::log_bytes stays 0 after " + std::to_string(txn) + " transactions");
    }
  }
  *seconds = seconds_since(t0);
  *txns = txn;
  (void)session.close();
  store.reset();
  return log_bytes;
}

// Opens the recovered store and checks every key's value against the last
// transaction that wrote it. Returns the number of wrong or missing keys.
uint64_t check_recovered(const std::string& dir, const std::vector<uint64_t>& last,
                         std::string* first) {
  auto r = stoa::Store::open(dir, recovery_options());
  if (!r.ok()) {
    *first = "Store::open after recover: " + r.error().to_string();
    return 1;
  }
  std::unique_ptr<stoa::Store> store = std::move(r).value();
  auto sr = store->session();
  if (!sr.ok()) {
    *first = "Store::session: " + sr.error().to_string();
    return 1;
  }
  stoa::Session session = std::move(sr).value();
  uint64_t bad = 0;
  {
    auto tr = session.begin(stoa::TxnOptions{.read_only = true});
    if (!tr.ok()) {
      *first = "Session::begin: " + tr.error().to_string();
      return 1;
    }
    stoa::Txn t = std::move(tr).value();
    std::vector<char> want(kRecoveryValueSize);
    char key[kKeySize];
    for (uint64_t i = 0; i < kRecoveryKeys; i++) {
      recovery_key(i, key);
      auto v = t.get(std::string_view(key, kKeySize));
      bool ok;
      if (last[i] == 0) {
        ok = !v.ok() && v.code() == stoa::Code::kNotFound;
      } else {
        recovery_value(i, last[i], want.data());
        ok = v.ok() && v->size() == kRecoveryValueSize &&
             std::memcmp(v->data(), want.data(), kRecoveryValueSize) == 0;
      }
      if (!ok && bad++ == 0) *first = "key " + std::string(key, kKeySize) + " wrong after recovery";
    }
    t.abort();
  }
  (void)session.close();
  return bad;
}

void recovery(const Config& cfg, Reporter& rep) {
  const uint64_t target = kRecoveryBytes;
  const std::string scale = target >= (uint64_t{1} << 30) ? std::to_string(target >> 30) + "GiB"
                                                          : std::to_string(target >> 20) + "MiB";
  const std::string name = "recovery-" + scale;
  // Each trial copies and recovers ~1.3 GB: at most 3 (--quick) or 5.
  const int trials = std::min(cfg.trials, cfg.quick ? 3 : 5);
  rep.section(name, "Store::recover(dir, RecoverMode::kRebuild): rebuild the data file from " +
                        scale +
                        " of log and no checkpoint (transactions of 100 puts of 1 KiB over " +
                        std::to_string(kRecoveryKeys) +
                        " keys, durability kNone, checkpoint_log_bytes 0); each trial recovers a "
                        "synced copy of the store (the last the original), its files in the "
                        "page cache");
  TempDir tmp(cfg, "recovery");
  const std::string src = tmp.path() + "/src";
  std::vector<uint64_t> last;
  double write_s = 0;
  uint64_t txns = 0;
  uint64_t log_bytes = write_log(src, target, &last, &write_s, &txns);
  uint64_t src_bytes = dir_bytes(src);
  std::printf("info: %s: wrote %llu transactions, %.3g GiB of log in %.3g s\n", name.c_str(),
              (unsigned long long)txns, double(log_bytes) / double(1 << 30), write_s);
  std::fflush(stdout);

  std::vector<double> secs, gibs, report_secs;
  stoa::RecoveryReport last_report;
  uint64_t bad = 0;
  std::string first_bad;
  // The log files before any recovery: recovery may rewrite the log (a
  // checkpoint, a trimmed tail).
  uint64_t read_bytes = 0;
  double read_s = read_files_seconds(src + "/log", &read_bytes);
  for (int t = 0; t < trials; t++) {
    // Every trial recovers its own copy of the store; the last one the
    // original.
    const bool last_trial = t == trials - 1;
    const std::string dir = last_trial ? src : tmp.path() + "/trial-" + std::to_string(t);
    std::error_code ec;
    if (!last_trial) {
      std::filesystem::copy(src, dir, std::filesystem::copy_options::recursive, ec);
      if (ec) die("copy " + src + " to " + dir + ": " + ec.message());
    }
    ::sync();  // write-back of the copy (or of the log) does not run during the timed part
    auto t0 = Clock::now();
    auto r = stoa::Store::recover(dir, stoa::RecoverMode::kRebuild, recovery_options());
    double s = seconds_since(t0);
    if (!r.ok()) die("Store::recover " + dir + ": " + r.error().to_string());
    last_report = *r;
    secs.push_back(s);
    gibs.push_back(s > 0 ? double(r->log_bytes) / double(1 << 30) / s : 0);
    report_secs.push_back(r->seconds);
    if (!r->rebuilt) rep.error(name + ": recover(rebuild=true) did not rebuild: " + r->reason);
    if (r->log_bytes < log_bytes * 9 / 10)
      rep.error(name + ": recovery read " + std::to_string(r->log_bytes) + " log bytes of " +
                std::to_string(log_bytes));
    bad += check_recovered(dir, last, &first_bad);
    std::filesystem::remove_all(dir, ec);
  }
  if (bad != 0)
    rep.error(name + ": " + std::to_string(bad) + " keys wrong after recovery (" + first_bad + ")");
  rep.figure(name, "stoa", summarize(secs), "s");
  rep.figure(name, "stoa-log-replay", summarize(gibs), "GiB/s");
  rep.note(name, "stoa RecoveryReport::seconds", summarize(report_secs).median, "s");
  rep.note(name, "log-replayed", double(last_report.log_bytes) / double(1 << 20), "MiB");
  rep.note(name, "log-records-replayed", double(last_report.log_records), "records");
  rep.note(name, "store-dir-size-before", double(src_bytes) / double(1 << 20), "MiB");
  if (read_bytes > 0)
    rep.note(name, "read(2)-of-the-log-files (the I/O floor)",
             double(read_bytes) / double(1 << 30) / read_s, "GiB/s");
  rep.note(name, "time-to-write-the-log (durability kNone)", write_s, "s");
}

}  // namespace

STOA_BENCH("durable-commit-1t",
           "durable one-put commits, 1 thread: Stoa sync/group vs SQLite, LMDB",
           (durable_commit_n<1, false>));
STOA_BENCH("durable-commit-2t", "durable one-put commits, 2 threads", (durable_commit_n<2, false>));
STOA_BENCH("durable-commit-8t", "durable one-put commits, 8 threads", (durable_commit_n<8, false>));
STOA_BENCH("durable-commit-32t", "durable one-put commits, 32 threads",
           (durable_commit_n<32, false>));
STOA_BENCH("durable-commit-1p", "durable one-put commits, 1 process", (durable_commit_n<1, true>));
STOA_BENCH("durable-commit-2p", "durable one-put commits, 2 processes",
           (durable_commit_n<2, true>));
STOA_BENCH("durable-commit-8p", "durable one-put commits, 8 processes",
           (durable_commit_n<8, true>));
STOA_BENCH("durable-commit-32p", "durable one-put commits, 32 processes",
           (durable_commit_n<32, true>));
STOA_BENCH("recovery", "Store::recover(kRebuild) from 1 GiB of log, no checkpoint", recovery);
STOA_BENCH_CHILD("durable-worker", durable_worker);

}  // namespace stoa_bench
