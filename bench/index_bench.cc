// bench/index_bench.cc — the ordered index and transactions side by side with
// LMDB (Debian liblmdb-dev), same keys, same values, same run.
//
// Workloads (see bench/README.md):
//   index-bulk-load        1M keys in sorted order, batches of 10,000 puts
//                          per transaction on both sides (LMDB also in one
//                          write transaction, as a second anchor)
//   index-point-read-1t    random point reads, one thread, one read-only txn
//   index-point-read-2p    the same from 2 processes at once, each opening
//                          the store/env itself; rates summed
//   index-range-scan-1000  forward scans of 1000 keys from a random start key
//   index-put-txn-1p       one-put transactions, one process
//   index-put-txn-2p       one-put transactions from 2 processes on disjoint
//                          keys; commits/s summed
//
// Sweeps (`stoa-bench --sweep readers|writers --max N`): the point-read and
// one-put-transaction workloads of the -Np forms at 1..N processes, each
// step measured like those (measure_multi).
//
// The data set: key i (of kKeys) is the 16 lower-case hex digits of
// splitmix64(i), so the keys are unique, 16 B, and lexicographic order is
// the numeric order of the hashes; the value is 100 B: the key itself
// followed by 84 filler bytes. Every read checks that the value starts with
// its key (a 16 B memcmp, on both sides), and a miss or mismatch is an ERROR.
//
// Durability is off on both sides: Stoa has no log yet (Durability::kNone is
// asked for anyway) and LMDB runs with MDB_NOSYNC (commits write their pages
// and meta page with pwrite, no fsync).
//
// The loaded stores (one Stoa store, one LMDB environment) are shared by the
// workloads of a run: the bulk load's last trial leaves them, or the first
// workload that needs them loads them (untimed). The put workloads overwrite
// existing keys with values of the same shape, so the data set stays valid
// for any workload after them.
//
// Two-process workloads run helper processes (`stoa-bench --child
// index-worker ...`, a fresh exec each trial) that open the store or the
// environment themselves, print "ready", wait for a go-file, run for the
// trial's length and print "ops seconds bad". The parent sums ops/seconds.
#include <lmdb.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
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

constexpr uint64_t kKeys = 1'000'000;
constexpr size_t kKeySize = 16;
constexpr size_t kValueSize = 100;
constexpr uint64_t kBatch = 10'000;  // puts per bulk-load transaction, both sides
constexpr uint64_t kScanLen = 1000;
constexpr uint64_t kMaxSize = uint64_t{8} << 30;  // Stoa max_size and LMDB map size

inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// A uniform index in [0, n).
inline uint64_t pick(uint64_t& s, uint64_t n) {
  return uint64_t((unsigned __int128)splitmix64(s) * n >> 64);
}

// The keys as one contiguous array of 16 B keys, sorted unless asked not
// to be (helper processes pick keys at random and skip the sort).
struct Keys {
  Keys(uint64_t n, bool sorted) : n(n), bytes(n * kKeySize) {
    std::vector<uint64_t> h(n);
    for (uint64_t i = 0; i < n; i++) {
      uint64_t s = i;
      h[i] = splitmix64(s);  // a bijection of i: unique
    }
    if (sorted) std::sort(h.begin(), h.end());  // fixed-width hex: numeric order = byte order
    static const char kHex[] = "0123456789abcdef";
    for (uint64_t i = 0; i < n; i++)
      for (size_t d = 0; d < kKeySize; d++)
        bytes[i * kKeySize + d] = kHex[(h[i] >> (60 - 4 * d)) & 15];
  }
  const char* ptr(uint64_t i) const { return bytes.data() + i * kKeySize; }
  std::string_view key(uint64_t i) const { return {ptr(i), kKeySize}; }
  uint64_t n;
  std::vector<char> bytes;
};

// The process's key set; the first call decides whether it is sorted (the
// bench: sorted; an index-worker: not).
const Keys& keys(bool sorted = true) {
  static const Keys k(kKeys, sorted);
  return k;
}

// The value of key i: the key, then filler that depends on i and `salt`
// (the put workloads write a different salt than the load did).
inline void make_value(const Keys& k, uint64_t i, uint64_t salt, char* out) {
  std::memcpy(out, k.ptr(i), kKeySize);
  uint64_t s = i * 31 + salt;
  for (size_t j = kKeySize; j < kValueSize; j++) out[j] = char('a' + (s + j) % 26);
}
inline bool value_ok(const char* key, const void* data, size_t size) {
  return size == kValueSize && std::memcmp(data, key, kKeySize) == 0;
}

// --- Stoa ------------------------------------------------------------------

stoa::Options stoa_options() {
  stoa::Options o;
  o.create_if_missing = true;
  o.max_size = kMaxSize;
  o.huge_pages = g_huge_pages;
  o.durability = stoa::Durability::kNone;  // not enforced yet: there is no log
  return o;
}

struct StoaHandle {
  explicit StoaHandle(const std::string& dir) {
    auto r = stoa::Store::open(dir, stoa_options());
    if (!r.ok()) die("Store::open " + dir + ": " + r.error().to_string());
    store = std::move(r).value();
    auto s = store->session();
    if (!s.ok()) die("Store::session: " + s.error().to_string());
    session = std::move(s).value();
  }
  ~StoaHandle() {
    (void)session.close();
    store.reset();
  }
  std::unique_ptr<stoa::Store> store;
  stoa::Session session;
};

stoa::Txn stoa_begin(stoa::Session& s, bool read_only) {
  auto t = s.begin(stoa::TxnOptions{.read_only = read_only});
  if (!t.ok()) die("Session::begin: " + t.error().to_string());
  return std::move(t).value();
}

// --- LMDB ------------------------------------------------------------------

void lmdb_check(int rc, const char* what) {
  if (rc != MDB_SUCCESS) die(std::string(what) + ": " + mdb_strerror(rc));
}

struct LmdbHandle {
  explicit LmdbHandle(const std::string& dir) {
    std::filesystem::create_directories(dir);
    lmdb_check(mdb_env_create(&env), "mdb_env_create");
    lmdb_check(mdb_env_set_mapsize(env, kMaxSize), "mdb_env_set_mapsize");
    lmdb_check(mdb_env_open(env, dir.c_str(), MDB_NOSYNC, 0644), "mdb_env_open");
    MDB_txn* t;
    lmdb_check(mdb_txn_begin(env, nullptr, 0, &t), "mdb_txn_begin");
    lmdb_check(mdb_dbi_open(t, nullptr, 0, &dbi), "mdb_dbi_open");
    lmdb_check(mdb_txn_commit(t), "mdb_txn_commit");
  }
  ~LmdbHandle() { mdb_env_close(env); }
  MDB_txn* begin(bool read_only) {
    MDB_txn* t;
    lmdb_check(mdb_txn_begin(env, nullptr, read_only ? MDB_RDONLY : 0, &t), "mdb_txn_begin");
    return t;
  }
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
};

inline MDB_val mval(const void* p, size_t n) { return MDB_val{n, const_cast<void*>(p)}; }

// --- the timed loops (the same shape on both sides) ---------------------------

struct Run {
  uint64_t ops = 0;
  double seconds = 0;
  uint64_t bad = 0;  // misses, wrong values, failed commits: must be 0
  double rate() const { return seconds > 0 ? double(ops) / seconds : 0; }
};

// Runs body(batch) until `seconds` have passed, checking the clock after
// each batch of `every` operations.
template <typename Body>
Run timed(double seconds, uint64_t every, Body&& body) {
  Run r;
  auto t0 = Clock::now();
  auto deadline =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (;;) {
    for (uint64_t k = 0; k < every; k++) r.bad += body();
    r.ops += every;
    if (Clock::now() >= deadline) break;
  }
  r.seconds = seconds_since(t0);
  return r;
}

constexpr uint64_t kGetsPerCheck = 64;

Run stoa_gets(stoa::Session& s, const Keys& k, double seconds, uint64_t seed) {
  stoa::Txn t = stoa_begin(s, /*read_only=*/true);
  Run r = timed(seconds, kGetsPerCheck, [&]() -> uint64_t {
    uint64_t i = pick(seed, k.n);
    auto v = t.get(k.key(i));
    return !v.ok() || !value_ok(k.ptr(i), v->data(), v->size());
  });
  t.abort();
  return r;
}

Run lmdb_gets(LmdbHandle& h, const Keys& k, double seconds, uint64_t seed) {
  MDB_txn* t = h.begin(/*read_only=*/true);
  Run r = timed(seconds, kGetsPerCheck, [&]() -> uint64_t {
    uint64_t i = pick(seed, k.n);
    MDB_val key = mval(k.ptr(i), kKeySize), val;
    int rc = mdb_get(t, h.dbi, &key, &val);
    return rc != MDB_SUCCESS || !value_ok(k.ptr(i), val.mv_data, val.mv_size);
  });
  mdb_txn_abort(t);
  return r;
}

// A scan is bad unless it returns kScanLen keys, starting at the start key,
// each value matching its key.
Run stoa_scans(stoa::Session& s, const Keys& k, double seconds, uint64_t seed) {
  stoa::Txn t = stoa_begin(s, /*read_only=*/true);
  Run r = timed(seconds, 1, [&]() -> uint64_t {
    uint64_t i = pick(seed, k.n - kScanLen + 1);
    auto c = t.scan(k.key(i), "");
    if (!c.ok()) return 1;
    uint64_t n = 0, bad = 0;
    for (; c->valid() && n < kScanLen; n++) {
      std::string_view key = c->key();
      stoa::View v = c->value();
      bad += key.size() != kKeySize || !value_ok(key.data(), v.data(), v.size());
      if (n + 1 < kScanLen && !c->next().ok()) return 1;
    }
    return bad != 0 || n != kScanLen;
  });
  t.abort();
  return r;
}

Run lmdb_scans(LmdbHandle& h, const Keys& k, double seconds, uint64_t seed) {
  MDB_txn* t = h.begin(/*read_only=*/true);
  MDB_cursor* c;
  lmdb_check(mdb_cursor_open(t, h.dbi, &c), "mdb_cursor_open");
  Run r = timed(seconds, 1, [&]() -> uint64_t {
    uint64_t i = pick(seed, k.n - kScanLen + 1);
    MDB_val key = mval(k.ptr(i), kKeySize), val;
    int rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
    uint64_t n = 0, bad = 0;
    for (; rc == MDB_SUCCESS && n < kScanLen; n++) {
      bad += key.mv_size != kKeySize ||
             !value_ok(static_cast<const char*>(key.mv_data), val.mv_data, val.mv_size);
      if (n + 1 < kScanLen) rc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
    }
    return bad != 0 || n != kScanLen;
  });
  mdb_cursor_close(c);
  mdb_txn_abort(t);
  return r;
}

// One-put transactions: worker w of `workers` writes only keys whose index
// is w modulo `workers` (disjoint key sets), chosen at random.
Run stoa_puts(stoa::Session& s, const Keys& k, double seconds, uint64_t seed, uint64_t w,
              uint64_t workers) {
  char val[kValueSize];
  std::string_view key;
  std::function<stoa::Status(stoa::Txn&)> fn = [&](stoa::Txn& t) {
    return t.put(key, std::string_view(val, kValueSize));
  };
  uint64_t salt = seed;
  bool reported = false;
  return timed(seconds, 1, [&]() -> uint64_t {
    uint64_t i = pick(seed, k.n / workers) * workers + w;
    key = k.key(i);
    make_value(k, i, ++salt, val);
    auto r = s.transact(fn);
    if (!r.ok() && !reported) {
      std::fprintf(stderr, "index-worker: transact: %s\n", r.error().to_string().c_str());
      reported = true;
    }
    return !r.ok();
  });
}

Run lmdb_puts(LmdbHandle& h, const Keys& k, double seconds, uint64_t seed, uint64_t w,
              uint64_t workers) {
  char val[kValueSize];
  uint64_t salt = seed;
  bool reported = false;
  return timed(seconds, 1, [&]() -> uint64_t {
    uint64_t i = pick(seed, k.n / workers) * workers + w;
    make_value(k, i, ++salt, val);
    MDB_val key = mval(k.ptr(i), kKeySize), v = mval(val, kValueSize);
    MDB_txn* t;
    int rc = mdb_txn_begin(h.env, nullptr, 0, &t);
    if (rc == MDB_SUCCESS) {
      rc = mdb_put(t, h.dbi, &key, &v, 0);
      if (rc == MDB_SUCCESS)
        rc = mdb_txn_commit(t);
      else
        mdb_txn_abort(t);
    }
    if (rc != MDB_SUCCESS && !reported) {
      std::fprintf(stderr, "index-worker: lmdb put: %s\n", mdb_strerror(rc));
      reported = true;
    }
    return rc != MDB_SUCCESS;
  });
}

// --- bulk load -------------------------------------------------------------

// Seconds to put every key, in sorted order, `batch` puts per transaction,
// into a fresh store in `dir`. Opening and closing are not timed.
// *space, when given: the store's stats after the load (file size, used
// bytes, bytes a key).
double stoa_load(const std::string& dir, const Keys& k, uint64_t batch, stoa::StoreStats* space) {
  StoaHandle h(dir);
  char val[kValueSize];
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < k.n;) {
    stoa::Txn t = stoa_begin(h.session, /*read_only=*/false);
    for (uint64_t end = std::min(k.n, i + batch); i < end; i++) {
      make_value(k, i, 0, val);
      auto st = t.put(k.key(i), std::string_view(val, kValueSize));
      if (!st.ok()) die("Txn::put: " + st.error().to_string());
    }
    auto c = t.commit();
    if (!c.ok()) die("Txn::commit (bulk load): " + c.error().to_string());
  }
  double s = seconds_since(t0);
  if (space) {
    auto st = h.store->stats();
    *space = st.ok() ? *st : stoa::StoreStats{};
  }
  return s;
}

// batch 0: all keys in one write transaction.
double lmdb_load(const std::string& dir, const Keys& k, uint64_t batch, uint64_t* file_size) {
  LmdbHandle h(dir);
  if (batch == 0) batch = k.n;
  char val[kValueSize];
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < k.n;) {
    MDB_txn* t = h.begin(/*read_only=*/false);
    for (uint64_t end = std::min(k.n, i + batch); i < end; i++) {
      make_value(k, i, 0, val);
      MDB_val key = mval(k.ptr(i), kKeySize), v = mval(val, kValueSize);
      lmdb_check(mdb_put(t, h.dbi, &key, &v, 0), "mdb_put");
    }
    lmdb_check(mdb_txn_commit(t), "mdb_txn_commit (bulk load)");
  }
  double s = seconds_since(t0);
  if (file_size) {
    struct stat sb;
    *file_size = ::stat((dir + "/data.mdb").c_str(), &sb) == 0 ? uint64_t(sb.st_size) : 0;
  }
  return s;
}

// The loaded data set shared by this run's workloads. A function-local
// static whose constructor makes the TempDir, so it is destroyed (and the
// directory removed) before the harness's own statics are.
struct Fixture {
  explicit Fixture(const Config& cfg) : dir(cfg, "index") {}
  TempDir dir;
  std::string stoa_dir, lmdb_dir;
  int next_id = 0;
  std::string fresh(const std::string& tag) {
    return dir.path() + "/" + tag + "-" + std::to_string(next_id++);
  }
};
Fixture& fixture(const Config& cfg) {
  static Fixture f(cfg);
  return f;
}

void remove_dir(const std::string& d) {
  std::error_code ec;
  std::filesystem::remove_all(d, ec);
}

// The data set, loaded untimed if no bulk load has left one.
Fixture& loaded(const Config& cfg) {
  Fixture& f = fixture(cfg);
  if (f.stoa_dir.empty()) {
    std::printf("info: loading %llu keys into Stoa and LMDB (untimed)\n",
                (unsigned long long)kKeys);
    std::fflush(stdout);
    f.stoa_dir = f.fresh("stoa");
    f.lmdb_dir = f.fresh("lmdb");
    (void)stoa_load(f.stoa_dir, keys(), kBatch, nullptr);
    (void)lmdb_load(f.lmdb_dir, keys(), kBatch, nullptr);
  }
  return f;
}

void check_bad(Reporter& rep, const std::string& name, const std::string& side, uint64_t bad) {
  if (bad != 0)
    rep.error(name + ": " + side + ": " + std::to_string(bad) +
              " operations failed (missing key, wrong value or failed commit)");
}

void bulk_load(const Config& cfg, Reporter& rep) {
  const std::string name = "index-bulk-load";
  rep.section(name,
              "1M keys (16 B) with 100 B values, put in sorted order into a fresh store, "
              "10,000 puts per transaction on both sides (LMDB: mdb_put without "
              "MDB_APPEND, MDB_NOSYNC); also LMDB with all puts in one transaction");
  const Keys& k = keys();
  Fixture& f = fixture(cfg);
  std::vector<double> stoa_r, lmdb_r, lmdb1_r;
  stoa::StoreStats stoa_space;
  uint64_t lmdb_size = 0;
  for (int t = 0; t < cfg.trials; t++) {
    // Keep the last trial's stores as the run's data set.
    if (!f.stoa_dir.empty()) remove_dir(f.stoa_dir);
    if (!f.lmdb_dir.empty()) remove_dir(f.lmdb_dir);
    f.stoa_dir = f.fresh("stoa");
    f.lmdb_dir = f.fresh("lmdb");
    // Alternate which side goes first (the other's dirty pages are still
    // being written back meanwhile).
    auto stoa_side = [&] {
      stoa_r.push_back(double(k.n) / stoa_load(f.stoa_dir, k, kBatch, &stoa_space));
    };
    auto lmdb_side = [&] {
      lmdb_r.push_back(double(k.n) / lmdb_load(f.lmdb_dir, k, kBatch, &lmdb_size));
    };
    if (t % 2 == 0) {
      stoa_side();
      lmdb_side();
    } else {
      lmdb_side();
      stoa_side();
    }
    std::string one = f.fresh("lmdb1");
    lmdb1_r.push_back(double(k.n) / lmdb_load(one, k, 0, nullptr));
    remove_dir(one);
  }
  rep.note(name, "stoa file-size-after-load", double(stoa_space.file_size), "B");
  rep.note(name, "stoa used-bytes-per-key", stoa_space.used_bytes_per_key, "B");
  rep.note(name, "lmdb data.mdb-size-after-load", double(lmdb_size), "B");
  // The space goal (file within 1.2x of LMDB's: a ratio of at least 0.83).
  rep.compare("index-space-after-load", "lmdb",
              stoa_space.file_size > 0 ? double(lmdb_size) / double(stoa_space.file_size) : 0);
  Stats s = summarize(stoa_r), l = summarize(lmdb_r), l1 = summarize(lmdb1_r);
  rep.compare_rate(name, s, "lmdb", l, "keys/s");
  rep.figure(name, "lmdb-1txn", l1, "keys/s");
  rep.compare(name, "lmdb-1txn", l1.median > 0 ? s.median / l1.median : 0);
}

void point_read_1t(const Config& cfg, Reporter& rep) {
  const std::string name = "index-point-read-1t";
  rep.section(name,
              "random point reads of the 1M keys, one thread, one read-only transaction "
              "held across the reads (LMDB: mdb_get in one MDB_RDONLY txn); each value "
              "checked");
  Fixture& f = loaded(cfg);
  const Keys& k = keys();
  StoaHandle sh(f.stoa_dir);
  LmdbHandle lh(f.lmdb_dir);
  (void)stoa_gets(sh.session, k, cfg.trial_seconds / 4, 1);  // warm-up, untimed
  (void)lmdb_gets(lh, k, cfg.trial_seconds / 4, 1);
  std::vector<double> sr, lr;
  uint64_t sbad = 0, lbad = 0;
  for (int t = 0; t < cfg.trials; t++) {
    uint64_t seed = 1000 + uint64_t(t);  // the same keys on both sides
    Run a = stoa_gets(sh.session, k, cfg.trial_seconds, seed);
    Run b = lmdb_gets(lh, k, cfg.trial_seconds, seed);
    sr.push_back(a.rate());
    lr.push_back(b.rate());
    sbad += a.bad;
    lbad += b.bad;
  }
  check_bad(rep, name, "stoa", sbad);
  check_bad(rep, name, "lmdb", lbad);
  rep.compare_rate(name, summarize(sr), "lmdb", summarize(lr), "reads/s");
}

void range_scan(const Config& cfg, Reporter& rep) {
  const std::string name = "index-range-scan-1000";
  rep.section(name,
              "forward scans of 1000 keys from a random start key, one thread, one "
              "read-only transaction (Stoa: Txn::scan(from, \"\") per scan; LMDB: one "
              "cursor, MDB_SET_RANGE then MDB_NEXT); keys and values checked");
  Fixture& f = loaded(cfg);
  const Keys& k = keys();
  StoaHandle sh(f.stoa_dir);
  LmdbHandle lh(f.lmdb_dir);
  (void)stoa_scans(sh.session, k, cfg.trial_seconds / 4, 1);  // warm-up, untimed
  (void)lmdb_scans(lh, k, cfg.trial_seconds / 4, 1);
  std::vector<double> sr, lr;
  uint64_t sbad = 0, lbad = 0;
  for (int t = 0; t < cfg.trials; t++) {
    uint64_t seed = 2000 + uint64_t(t);
    Run a = stoa_scans(sh.session, k, cfg.trial_seconds, seed);
    Run b = lmdb_scans(lh, k, cfg.trial_seconds, seed);
    sr.push_back(a.rate());
    lr.push_back(b.rate());
    sbad += a.bad;
    lbad += b.bad;
  }
  check_bad(rep, name, "stoa", sbad);
  check_bad(rep, name, "lmdb", lbad);
  Stats s = summarize(sr), l = summarize(lr);
  rep.compare_rate(name, s, "lmdb", l, "scans/s");
  rep.note(name, "stoa keys-per-second", s.median * double(kScanLen), "keys/s");
  rep.note(name, "lmdb keys-per-second", l.median * double(kScanLen), "keys/s");
}

// --- helper processes -----------------------------------------------------

// User + system CPU time of this process so far (all its threads).
double cpu_seconds() {
  struct rusage ru;
  if (::getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// Page faults this process has taken so far (minor and major): a first
// touch of a page by a process costs one, whatever else the machine does.
uint64_t page_faults() {
  struct rusage ru;
  if (::getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return uint64_t(ru.ru_minflt) + uint64_t(ru.ru_majflt);
}

// `stoa-bench --child index-worker SIDE MODE DIR WORKER WORKERS SECONDS GOFILE SEED`
// SIDE: stoa | lmdb; MODE: get | put. Opens DIR itself, warms up (the same
// operations, untimed), prints "ready", waits for GOFILE to exist, runs for
// SECONDS, prints "ops seconds bad cpu-seconds faults".
int index_worker(const std::vector<std::string>& a) {
  if (a.size() != 8) return 2;
  const std::string &side = a[0], &mode = a[1], &dir = a[2], &gofile = a[6];
  uint64_t w = std::stoull(a[3]), workers = std::stoull(a[4]);
  double seconds = std::stod(a[5]);
  uint64_t seed = std::stoull(a[7]);
  const Keys& k = keys(/*sorted=*/false);
  std::unique_ptr<StoaHandle> sh;
  std::unique_ptr<LmdbHandle> lh;
  if (side == "stoa")
    sh = std::make_unique<StoaHandle>(dir);
  else
    lh = std::make_unique<LmdbHandle>(dir);
  auto run = [&](double secs, uint64_t sd) {
    if (mode == "get")
      return sh ? stoa_gets(sh->session, k, secs, sd) : lmdb_gets(*lh, k, secs, sd);
    return sh ? stoa_puts(sh->session, k, secs, sd, w, workers)
              : lmdb_puts(*lh, k, secs, sd, w, workers);
  };
  // Warm-up, untimed: a process that has just mapped the file runs at a
  // fraction of its speed for its first ~100 ms (page-table fills, caches),
  // on both sides; the timed part measures the steady state.
  Run warm = run(std::clamp(seconds / 2, 0.05, 0.25), seed ^ 0x5555);
  std::printf("ready\n");
  std::fflush(stdout);
  while (::access(gofile.c_str(), F_OK) != 0)
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  double cpu0 = cpu_seconds();
  uint64_t faults0 = page_faults();
  Run r = run(seconds, seed);
  double cpu = cpu_seconds() - cpu0;
  uint64_t faults = page_faults() - faults0;
  std::printf("%llu %.9f %llu %.9f %llu\n", (unsigned long long)r.ops, r.seconds,
              (unsigned long long)(r.bad + warm.bad), cpu, (unsigned long long)faults);
  std::fflush(stdout);
  return 0;
}

struct MultiTrial {
  double rate = 0;    // sum over the workers of ops / seconds
  double cpu_us = 0;  // CPU time the workers spent per op (timed part)
  double faults = 0;  // page faults the workers took per op (timed part)
  uint64_t bad = 0;
};

// One trial with `procs` worker processes on one side.
MultiTrial multi_trial(Fixture& f, const std::string& side, const std::string& mode, int procs,
                       double seconds, uint64_t seed) {
  const std::string& dir = side == "stoa" ? f.stoa_dir : f.lmdb_dir;
  std::string go = f.fresh("go");
  std::vector<std::unique_ptr<Child>> kids;
  for (int p = 0; p < procs; p++) {
    kids.push_back(std::make_unique<Child>(
        "index-worker", std::vector<std::string>{side, mode, dir, std::to_string(p),
                                                 std::to_string(procs), std::to_string(seconds), go,
                                                 std::to_string(seed + 7919 * uint64_t(p))}));
  }
  std::string line;
  for (auto& c : kids)
    if (!c->read_line(&line) || line != "ready") die("index-worker did not start");
  if (FILE* g = std::fopen(go.c_str(), "w"))
    std::fclose(g);
  else
    die("cannot create " + go);
  MultiTrial m;
  double cpu = 0, all_ops = 0, all_faults = 0;
  for (auto& c : kids) {
    unsigned long long ops = 0, nbad = 0, nfaults = 0;
    double secs = 0, cs = 0;
    if (!c->read_line(&line) ||
        std::sscanf(line.c_str(), "%llu %lf %llu %lf %llu", &ops, &secs, &nbad, &cs, &nfaults) != 5)
      die("index-worker gave no result");
    if (int rc = c->wait(); rc != 0) die("index-worker exited with " + std::to_string(rc));
    m.rate += secs > 0 ? double(ops) / secs : 0;
    m.bad += nbad;
    cpu += cs;
    all_faults += double(nfaults);
    all_ops += double(ops);
  }
  m.cpu_us = all_ops > 0 ? cpu * 1e6 / all_ops : 0;
  m.faults = all_ops > 0 ? all_faults / all_ops : 0;
  ::unlink(go.c_str());
  return m;
}

// Both sides at `procs` worker processes, cfg.trials trials each.
struct MultiResult {
  Stats stoa, lmdb;                         // rates, summed over the workers
  double stoa_cpu_us = 0, lmdb_cpu_us = 0;  // median CPU time per op
  double stoa_faults = 0, lmdb_faults = 0;  // median page faults per op
  uint64_t stoa_bad = 0, lmdb_bad = 0;
};

MultiResult measure_multi(const Config& cfg, Fixture& f, const std::string& mode, int procs) {
  MultiResult m;
  // No warm-up trial here: every worker warms up before it says "ready".
  // The sides alternate trial by trial, so a slow spell hits both.
  std::vector<double> sr, lr, scpu, lcpu, sflt, lflt;
  for (int t = 0; t < cfg.trials; t++) {
    uint64_t seed = 3000 + 100 * uint64_t(t);
    MultiTrial a = multi_trial(f, "stoa", mode, procs, cfg.trial_seconds, seed);
    MultiTrial b = multi_trial(f, "lmdb", mode, procs, cfg.trial_seconds, seed);
    sr.push_back(a.rate);
    lr.push_back(b.rate);
    scpu.push_back(a.cpu_us);
    lcpu.push_back(b.cpu_us);
    sflt.push_back(a.faults);
    lflt.push_back(b.faults);
    m.stoa_bad += a.bad;
    m.lmdb_bad += b.bad;
  }
  m.stoa = summarize(sr);
  m.lmdb = summarize(lr);
  m.stoa_cpu_us = summarize(scpu).median;
  m.lmdb_cpu_us = summarize(lcpu).median;
  m.stoa_faults = summarize(sflt).median;
  m.lmdb_faults = summarize(lflt).median;
  return m;
}

void multi_bench(const Config& cfg, Reporter& rep, const std::string& name, const std::string& desc,
                 const std::string& mode, int procs, const std::string& unit) {
  rep.section(name, desc);
  Fixture& f = loaded(cfg);
  MultiResult m = measure_multi(cfg, f, mode, procs);
  check_bad(rep, name, "stoa", m.stoa_bad);
  check_bad(rep, name, "lmdb", m.lmdb_bad);
  // CPU time per op (getrusage of the workers over the timed part): less
  // sensitive than the rates to other load on a shared machine.
  rep.note(name, "stoa cpu-per-op", m.stoa_cpu_us, "us");
  rep.note(name, "lmdb cpu-per-op", m.lmdb_cpu_us, "us");
  // Page faults per op: what a process pays for pages it had not touched yet
  // (several microseconds each in a VM); explains most of a cold gap.
  rep.note(name, "stoa faults-per-op", m.stoa_faults, "faults");
  rep.note(name, "lmdb faults-per-op", m.lmdb_faults, "faults");
  rep.compare_rate(name, m.stoa, "lmdb", m.lmdb, unit);
}

void point_read_2p(const Config& cfg, Reporter& rep) {
  multi_bench(cfg, rep, "index-point-read-2p",
              "random point reads of the 1M keys from 2 processes at once, each opening the "
              "store/env itself and holding one read-only txn; reads/s summed",
              "get", 2, "reads/s");
}

void put_txn_1p(const Config& cfg, Reporter& rep) {
  multi_bench(cfg, rep, "index-put-txn-1p",
              "one-put transactions (overwrite of a random existing key, 100 B value), one "
              "process; Stoa Session::transact, LMDB begin/put/commit with MDB_NOSYNC; "
              "durability off on both sides",
              "put", 1, "commits/s");
}

void put_txn_2p(const Config& cfg, Reporter& rep) {
  multi_bench(cfg, rep, "index-put-txn-2p",
              "one-put transactions from 2 processes at once on disjoint keys (even / odd "
              "indices), each opening the store/env itself; commits/s summed; LMDB admits one "
              "writer at a time",
              "put", 2, "commits/s");
}

// --- sweeps (`stoa-bench --sweep readers|writers`) ----------------------------

// The multi-process workload at 1..max_procs processes, each step measured
// exactly as index-point-read-2p / index-put-txn-Np measure theirs.
void sweep(const Config& cfg, Reporter& rep, const std::string& kind, const std::string& workload,
           const std::string& desc, const std::string& mode, int max_procs,
           const std::string& unit) {
  Fixture& f = loaded(cfg);
  rep.sweep_begin(kind, workload, desc, "lmdb", unit);
  for (int n = 1; n <= max_procs; n++) {
    MultiResult m = measure_multi(cfg, f, mode, n);
    const std::string step = "sweep-" + kind + "-" + std::to_string(n) + "p";
    check_bad(rep, step, "stoa", m.stoa_bad);
    check_bad(rep, step, "lmdb", m.lmdb_bad);
    rep.sweep_step({n, m.stoa, m.lmdb, m.stoa_cpu_us, m.lmdb_cpu_us});
  }
}

void sweep_readers(const Config& cfg, int max_procs, Reporter& rep) {
  sweep(cfg, rep, "readers", "index-point-read-Np",
        "random point reads of the 1M keys from N processes at once, each opening the "
        "store/env itself and holding one read-only txn; reads/s summed",
        "get", max_procs, "reads/s");
}

void sweep_writers(const Config& cfg, int max_procs, Reporter& rep) {
  sweep(cfg, rep, "writers", "index-put-txn-Np",
        "one-put transactions from N processes at once on disjoint keys (index modulo N), "
        "each opening the store/env itself; Stoa Durability::kNone, LMDB MDB_NOSYNC; "
        "commits/s summed",
        "put", max_procs, "commits/s");
}

}  // namespace

STOA_BENCH("index-bulk-load", "sorted bulk load of 1M keys, 10k puts per txn: Stoa vs LMDB",
           bulk_load);
STOA_BENCH("index-point-read-1t", "random point reads, 1 thread: Stoa vs LMDB", point_read_1t);
STOA_BENCH("index-point-read-2p", "random point reads, 2 processes: Stoa vs LMDB", point_read_2p);
STOA_BENCH("index-range-scan-1000", "1000-key forward range scans: Stoa vs LMDB", range_scan);
STOA_BENCH("index-put-txn-1p", "one-put transactions, 1 process: Stoa vs LMDB MDB_NOSYNC",
           put_txn_1p);
STOA_BENCH("index-put-txn-2p",
           "one-put transactions, 2 processes, disjoint keys: Stoa vs LMDB MDB_NOSYNC", put_txn_2p);
STOA_BENCH_CHILD("index-worker", index_worker);
STOA_BENCH_SWEEP("readers", "random point reads from 1..N processes: Stoa vs LMDB", sweep_readers);
STOA_BENCH_SWEEP("writers",
                 "one-put transactions from 1..N processes, disjoint keys: Stoa vs LMDB "
                 "MDB_NOSYNC",
                 sweep_writers);

}  // namespace stoa_bench
