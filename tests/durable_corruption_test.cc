// Corruption is detected, never served (guarantee 5, docs/guarantees.md): bits flipped
// at random places in the data file, a log segment, the checkpoint file or
// the clean-shutdown checksums (`stoa.sum`) are either detected (open
// refuses with kCorrupt naming the file and an offset, or verify names the
// file) or provably harmless (the bytes were unused); a wrong value is never
// returned. A damaged log is truncated only past the last sync (a torn
// tail); below it a rebuild refuses. `stoa verify` checks every log
// checksum. Corruption met by a session writes its flight recorder.
//
// The random loop (STOA_CORRUPTION_TRIALS per file kind, default 200; seed
// from STOA_TEST_SEED or random, printed) copies a cleanly closed template
// store, flips 1-8 bits in one file, opens it and checks every key; for
// log and checkpoint damage it also forces a rebuild (Store::recover), the
// path that reads them.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <thread>

#include "api/access.h"
#include "cli_util.h"
#include "env/sim_env.h"
#include "index/layout.h"
#include "log/layout.h"
#include "log/record.h"
#include "region/layout.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "test_util.h"

namespace stoa {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::slurp;
using test::spit;
using test::TempDir;

constexpr uint64_t kSeg = 64 << 10;

using KV = std::map<std::string, std::string>;

Options store_options() {
  Options o;
  o.initial_size = 1 << 20;
  o.grow_chunk = 1 << 20;
  o.max_size = 64 << 20;
  o.max_sessions = 8;
  o.log_segment_size = kSeg;
  o.checkpoint_log_bytes = 0;  // only the explicit checkpoints below
  o.durability = Durability::kSync;
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  return o;
}

using test::err;

KV read_all(Store& store) {
  auto r = test::read_all(store);
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  return r.ok() ? std::move(r).value() : KV{};
}

// Each key individually too (get, not only scan).
void expect_exact(Store& store, const KV& want, const std::string& what) {
  KV got = read_all(store);
  ASSERT_EQ(got.size(), want.size()) << what << ": wrong number of keys";
  ASSERT_TRUE(got == want) << what << ": a wrong value was served";
  auto s = store.session();
  ASSERT_TRUE(s.ok());
  auto t = s->begin(TxnOptions{.read_only = true});
  ASSERT_TRUE(t.ok());
  for (const auto& [k, v] : want) {
    auto g = t->get(k);
    ASSERT_TRUE(g.ok()) << what << ": get(" << k << "): " << err(g);
    ASSERT_EQ(g->str(), v) << what << ": get(" << k << ") served a wrong value";
  }
}

std::string problems_text(const VerifyReport& r) {
  std::string out;
  for (const auto& p : r.problems) out += "  " + p + "\n";
  return out;
}

bool any_problem_names(const VerifyReport& r, const std::string& what) {
  for (const auto& p : r.problems) {
    if (contains(p, what)) return true;
  }
  return false;
}

std::string segment_path(const std::string& store, uint64_t lsn) {
  return fmt::format("{}/log/{:016x}.log", store, lsn / kSeg * kSeg);
}

// --- the template store ---------------------------------------------------------

struct Template {
  std::string path;
  KV kv;
  uint64_t ckpt_ts = 0;  // 0: no checkpoint, the log from the start
  uint64_t end_ts = 0;   // end of the log (last commit)
  uint64_t file_size = 0;
  std::vector<uint64_t> records;  // start LSN of every record in [ckpt_ts, end_ts)
  struct Commit {
    uint64_t ts = 0;
    KV puts;
    std::vector<std::string> dels;
  };
  std::vector<Commit> commits;  // in timestamp order

  // The state after every commit up to `ts`.
  KV state_at(uint64_t ts) const {
    KV out;
    for (const Commit& c : commits) {
      if (c.ts > ts) break;
      for (const auto& [k, v] : c.puts) out[k] = v;
      for (const auto& k : c.dels) out.erase(k);
    }
    return out;
  }
};

// A value of `len` bytes that names its key and version.
std::string value_for(const std::string& key, uint64_t n, size_t len) {
  std::string v = fmt::format("{}@{}:", key, n);
  while (v.size() < len) v += char('a' + (v.size() * 7 + n) % 26);
  v.resize(len);
  return v;
}

// Reads the log bytes [from, to) from the segment files.
std::string read_log(const std::string& store, uint64_t from, uint64_t to) {
  std::string out;
  for (uint64_t at = from; at < to;) {
    const uint64_t seg_end = (at / kSeg + 1) * kSeg;
    const uint64_t n = std::min(to, seg_end) - at;
    std::string seg = slurp(segment_path(store, at));
    EXPECT_GE(seg.size(), at % kSeg + n) << segment_path(store, at);
    out.append(seg, size_t(at % kSeg), size_t(n));
    at += n;
  }
  return out;
}

// Builds a store of `commits` sync commits (puts of 1..3 keys, values from
// 1 byte to 12 KiB, deletes, overwrites), with an explicit checkpoint after
// `ckpt_after` commits (0: none), and closes it cleanly.
void build_template(Template* t, uint64_t seed, int commits, int ckpt_after) {
  std::mt19937_64 rng(seed);
  {
    auto opened = Store::open(t->path, store_options());
    ASSERT_TRUE(opened.ok()) << err(opened);
    Store& store = **opened;
    auto s = store.session();
    ASSERT_TRUE(s.ok());
    for (int i = 1; i <= commits; i++) {
      auto txn = s->begin();
      ASSERT_TRUE(txn.ok());
      KV puts;
      std::vector<std::string> dels;
      const int n = 1 + int(rng() % 3);
      for (int k = 0; k < n; k++) {
        std::string key = fmt::format("key{:03}", rng() % 120);
        const uint64_t r = rng() % 100;
        const size_t len = r < 60 ? 1 + rng() % 200 : r < 95 ? 200 + rng() % 2000 : 12000;
        puts[key] = value_for(key, uint64_t(i), len);
      }
      if (rng() % 4 == 0) {
        std::string key = fmt::format("key{:03}", rng() % 120);
        if (!puts.count(key)) dels.push_back(key);
      }
      for (const auto& [k, v] : puts) ASSERT_TRUE(txn->put(k, v).ok());
      for (const auto& k : dels) ASSERT_TRUE(txn->del(k).ok());
      auto c = txn->commit();
      ASSERT_TRUE(c.ok()) << err(c);
      t->commits.push_back(Template::Commit{*c, puts, dels});
      for (const auto& [k, v] : puts) t->kv[k] = v;
      for (const auto& k : dels) t->kv.erase(k);
      if (i == ckpt_after) {
        auto ck = store.checkpoint();
        ASSERT_TRUE(ck.ok()) << err(ck);
        t->ckpt_ts = *ck;
      }
    }
    auto st = store.stats();
    ASSERT_TRUE(st.ok());
    t->end_ts = st->last_commit_ts;
    ASSERT_EQ(st->durable_ts, t->end_ts);
    ASSERT_EQ(st->checkpoint_ts, t->ckpt_ts);
    t->file_size = st->file_size;
  }
  ASSERT_TRUE(fs::exists(t->path + "/stoa.sum")) << "no clean-shutdown checksums written";
  // Record boundaries of the live log (what a rebuild replays).
  std::string log = read_log(t->path, t->ckpt_ts, t->end_ts);
  for (uint64_t at = 0; at < log.size();) {
    log::RecordHeader h;
    ASSERT_LE(at + sizeof(h), log.size());
    std::memcpy(&h, log.data() + at, sizeof(h));
    ASSERT_EQ(h.magic, log::kRecordMagic);
    ASSERT_EQ(h.lsn, t->ckpt_ts + at);
    t->records.push_back(h.lsn);
    at += h.len;
  }
}

// The start of the live record holding `lsn`.
uint64_t record_of(const Template& t, uint64_t lsn) {
  auto it = std::upper_bound(t.records.begin(), t.records.end(), lsn);
  return *(it - 1);
}

void copy_store(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::remove_all(to, ec);
  fs::copy(from, to, fs::copy_options::recursive, ec);
  ASSERT_FALSE(ec) << ec.message();
}

// Flips 1..8 random bits of `file`; returns the offsets whose byte changed.
std::vector<uint64_t> flip_bits(const std::string& file, std::mt19937_64& rng) {
  std::string before = slurp(file);
  std::string after = before;
  EXPECT_FALSE(after.empty()) << file;
  if (after.empty()) return {};
  const int n = 1 + int(rng() % 8);
  for (int i = 0; i < n; i++) {
    const uint64_t off = rng() % after.size();
    after[off] = char(after[off] ^ (1 << (rng() % 8)));
  }
  spit(file, after);
  std::vector<uint64_t> changed;
  for (size_t i = 0; i < after.size(); i++) {
    if (after[i] != before[i]) changed.push_back(i);
  }
  return changed;
}

void xor_byte(const std::string& file, uint64_t off, uint8_t mask) {
  int fd = ::open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << file;
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, off_t(off)), 1);
  b ^= mask;
  ASSERT_EQ(::pwrite(fd, &b, 1, off_t(off)), 1);
  ::close(fd);
}

class DurableCorruption : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("corrupt-tmpl");
    seed_ = test::test_seed();  // prints it
    plain_ = new Template;
    plain_->path = dir_->sub("plain");
    build_template(plain_, seed_, 220, 0);
    ckpt_ = new Template;
    ckpt_->path = dir_->sub("ckpt");
    build_template(ckpt_, seed_ + 1, 320, 160);
    for (Template* t : {plain_, ckpt_}) {
      std::printf(
          "template %s: %zu keys, checkpoint at %llu, log to %llu (%zu live records), "
          "data file %llu bytes\n",
          t->path.c_str(), t->kv.size(), (unsigned long long)t->ckpt_ts,
          (unsigned long long)t->end_ts, t->records.size(), (unsigned long long)t->file_size);
    }
  }
  static void TearDownTestSuite() {
    delete plain_;
    delete ckpt_;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_FALSE(plain_->records.empty()) << "template not built";
    ASSERT_FALSE(ckpt_->records.empty()) << "template not built";
  }

  static TempDir* dir_;
  static uint64_t seed_;
  static Template* plain_;
  static Template* ckpt_;
  TempDir work_{"corrupt"};
  std::string path_ = work_.sub("store");
};
TempDir* DurableCorruption::dir_ = nullptr;
uint64_t DurableCorruption::seed_ = 0;
Template* DurableCorruption::plain_ = nullptr;
Template* DurableCorruption::ckpt_ = nullptr;

uint64_t trials_wanted() {
  const char* e = std::getenv("STOA_CORRUPTION_TRIALS");
  return e != nullptr ? std::strtoull(e, nullptr, 10) : test::scaled(200);
}

enum class Kind { kData, kLog, kCheckpoint, kSum };
const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kData:
      return "stoa.data";
    case Kind::kLog:
      return "log segment";
    case Kind::kCheckpoint:
      return "checkpoint";
    case Kind::kSum:
      return "stoa.sum";
  }
  return "?";
}

struct Outcomes {
  uint64_t refused = 0;          // open (or the forced rebuild) refused: kCorrupt naming the file
  uint64_t rebuilt = 0;          // open rebuilt the data file from checkpoint and log
  uint64_t verify_named = 0;     // open trusted the data file; verify named the damage
  uint64_t harmless = 0;         // unused bytes (or the flips cancelled)
  uint64_t rebuild_refused = 0;  // the forced rebuild refused, naming file and offset
};

// One random trial on a fresh copy of `t`.
void trial(const Template& t, Kind kind, const std::string& path, std::mt19937_64& rng,
           Outcomes* out) {
  copy_store(t.path, path);
  std::string file;
  switch (kind) {
    case Kind::kData:
      file = path + "/stoa.data";
      break;
    case Kind::kSum:
      file = path + "/stoa.sum";
      break;
    case Kind::kCheckpoint:
      file = path + "/log/" + fmt::format("ckpt-{:016x}.stoa", t.ckpt_ts);
      break;
    case Kind::kLog: {
      std::vector<std::string> segs;
      for (const auto& e : fs::directory_iterator(path + "/log")) {
        if (e.path().extension() == ".log") segs.push_back(e.path().string());
      }
      std::sort(segs.begin(), segs.end());
      ASSERT_FALSE(segs.empty());
      // A quarter of the time the last segment: its tail past the log end
      // is unused (zeroed) space.
      file = rng() % 4 == 0 ? segs.back() : segs[rng() % segs.size()];
      break;
    }
  }
  ASSERT_TRUE(fs::exists(file)) << file;
  const std::vector<uint64_t> changed = flip_bits(file, rng);
  SCOPED_TRACE(fmt::format("{} flipped at {} offsets, first {}", file, changed.size(),
                           changed.empty() ? 0 : changed[0]));

  // What the damage touches.
  uint64_t first_live = UINT64_MAX;  // log: first changed LSN a rebuild replays
  if (kind == Kind::kLog) {
    const uint64_t base = std::strtoull(fs::path(file).stem().string().c_str(), nullptr, 16);
    for (uint64_t off : changed) {
      const uint64_t lsn = base + off;
      if (lsn >= t.ckpt_ts && lsn < t.end_ts) first_live = std::min(first_live, lsn);
    }
  }
  bool unused = changed.empty();
  if (kind == Kind::kData) {
    unused = std::all_of(changed.begin(), changed.end(),
                         [&](uint64_t off) { return off >= t.file_size; });
  } else if (kind == Kind::kLog) {
    unused = first_live == UINT64_MAX;
  }

  {
    auto opened = Store::open(path, store_options());
    if (!opened.ok()) {
      // Refusing is right only for damage that the durable copy cannot
      // make up for: the data file and stoa.sum can always be rebuilt
      // from an intact checkpoint and log.
      ASSERT_TRUE(kind == Kind::kLog || kind == Kind::kCheckpoint)
          << "open refused although checkpoint and log are intact: " << err(opened);
      ASSERT_EQ(opened.code(), Code::kCorrupt) << err(opened);
      EXPECT_TRUE(contains(opened.error().message(), file)) << err(opened);
      EXPECT_TRUE(contains(opened.error().message(), "offset")) << err(opened);
      out->refused++;
      return;
    }
    Store& store = **opened;
    const RecoveryReport& rep = store.recovery();
    expect_exact(store, t.kv, "after open");
    if (::testing::Test::HasFatalFailure()) return;
    auto v = store.verify();
    ASSERT_TRUE(v.ok()) << err(v);
    EXPECT_TRUE(v->log_checked);
    switch (kind) {
      case Kind::kData:
      case Kind::kSum:
        if (unused) {
          EXPECT_TRUE(v->sound()) << problems_text(*v);
          out->harmless++;
          break;
        }
        ASSERT_TRUE(rep.rebuilt) << "damaged " << file << " was trusted: " << rep.reason;
        EXPECT_TRUE(contains(rep.reason, kind == Kind::kData ? "stoa.data" : "stoa.sum"))
            << rep.reason;
        if (kind == Kind::kData) {
          EXPECT_TRUE(contains(rep.reason, "offset") || contains(rep.reason, "bytes "))
              << rep.reason;
        }
        EXPECT_EQ(rep.end_ts, t.end_ts);
        EXPECT_TRUE(v->sound()) << problems_text(*v);
        out->rebuilt++;
        break;
      case Kind::kLog:
        EXPECT_FALSE(rep.rebuilt) << rep.reason;
        if (unused) {
          EXPECT_TRUE(v->sound()) << problems_text(*v);
        } else {
          const uint64_t rec = record_of(t, first_live);
          EXPECT_TRUE(any_problem_names(
              *v, fmt::format("{}: offset {}", segment_path(path, rec), rec % kSeg)))
              << "verify does not name the damaged record at " << rec << ":\n"
              << problems_text(*v);
          out->verify_named++;
        }
        break;
      case Kind::kCheckpoint:
        EXPECT_FALSE(rep.rebuilt) << rep.reason;
        if (unused) {
          EXPECT_TRUE(v->sound()) << problems_text(*v);
        } else {
          EXPECT_TRUE(any_problem_names(*v, file)) << problems_text(*v);
          out->verify_named++;
        }
        break;
    }
  }
  if (kind == Kind::kData || kind == Kind::kSum) return;

  // The damage is in what a rebuild reads: force one.
  auto rec = Store::recover(path, RecoverMode::kRebuild, store_options());
  if (unused) {
    ASSERT_TRUE(rec.ok()) << "harmless damage made the rebuild fail: " << err(rec);
    EXPECT_TRUE(rec->rebuilt);
    EXPECT_EQ(rec->end_ts, t.end_ts);
    auto opened = Store::open(path, store_options());
    ASSERT_TRUE(opened.ok()) << err(opened);
    expect_exact(**opened, t.kv, "after a rebuild past harmless damage");
    out->harmless++;
    return;
  }
  ASSERT_FALSE(rec.ok()) << "rebuilt from a damaged " << kind_name(kind) << " below the last sync";
  ASSERT_EQ(rec.code(), Code::kCorrupt) << err(rec);
  if (kind == Kind::kLog) {
    const uint64_t r = record_of(t, first_live);
    EXPECT_TRUE(contains(rec.error().message(),
                         fmt::format("{}: offset {}", segment_path(path, r), r % kSeg)))
        << "the error does not name the damaged record at " << r << ": " << err(rec);
  } else {
    EXPECT_TRUE(contains(rec.error().message(), file)) << err(rec);
    EXPECT_TRUE(contains(rec.error().message(), "offset")) << err(rec);
  }
  out->rebuild_refused++;
}

TEST_F(DurableCorruption, RandomBitFlipsAreDetectedOrHarmless) {
  const uint64_t trials = trials_wanted();
  const uint64_t seed = seed_;  // templates and trials from one seed
  std::printf("seed %llu, %llu trials per file kind (STOA_TEST_SEED, STOA_CORRUPTION_TRIALS)\n",
              (unsigned long long)seed, (unsigned long long)trials);
  std::mt19937_64 rng(seed ^ 0x7269616c73ull);
  for (Kind kind : {Kind::kData, Kind::kLog, Kind::kCheckpoint, Kind::kSum}) {
    Outcomes o;
    const auto t0 = test::Clock::now();
    for (uint64_t i = 0; i < trials; i++) {
      const Template& t = kind == Kind::kCheckpoint || rng() % 2 == 0 ? *ckpt_ : *plain_;
      SCOPED_TRACE(
          fmt::format("{} trial {} (seed {}, template {})", kind_name(kind), i, seed, t.path));
      trial(t, kind, path_, rng, &o);
      if (HasFatalFailure()) return;
    }
    std::printf(
        "%-12s %llu trials, %.1f s: %llu refused at open, %llu rebuilt, %llu named by "
        "verify, %llu forced rebuilds refused, %llu harmless\n",
        kind_name(kind), (unsigned long long)trials, test::ms_since(t0) / 1000,
        (unsigned long long)o.refused, (unsigned long long)o.rebuilt,
        (unsigned long long)o.verify_named, (unsigned long long)o.rebuild_refused,
        (unsigned long long)o.harmless);
  }
}

// --- targeted cases ---------------------------------------------------------------

// Where a byte inside the body of the live record `index` lies (LSN), and
// that record's start.
uint64_t inside_record(const Template& t, size_t index, uint64_t* start) {
  *start = t.records.at(index);
  return *start + sizeof(log::RecordHeader) + 3;  // the first op's header
}

uint64_t flip_lsn(const std::string& store, uint64_t lsn, uint8_t mask = 0x10) {
  xor_byte(segment_path(store, lsn), lsn % kSeg, mask);
  return lsn;
}

std::string named(const std::string& store, uint64_t rec) {
  return fmt::format("{}: offset {}", segment_path(store, rec), rec % kSeg);
}

// (i) A record in the middle of the synced log is damaged. Open trusts the
// data file (clean shutdown) and serves the right values; verify names the
// record; a rebuild, which would need that record, refuses with kCorrupt
// naming segment and offset: with the clean-shutdown mark, and without it
// (later records say the log was synced past the damage).
TEST_F(DurableCorruption, DamagedMiddleOfTheSyncedLogRefusesTheRebuild) {
  for (const Template* t : {plain_, ckpt_}) {
    SCOPED_TRACE(t->path);
    for (bool keep_sum : {true, false}) {
      SCOPED_TRACE(keep_sum ? "stoa.sum kept" : "stoa.sum removed");
      copy_store(t->path, path_);
      uint64_t rec = 0;
      flip_lsn(path_, inside_record(*t, t->records.size() / 2, &rec));
      if (keep_sum) {
        auto opened = Store::open(path_, store_options());
        ASSERT_TRUE(opened.ok()) << err(opened);
        EXPECT_FALSE((*opened)->recovery().rebuilt);
        expect_exact(**opened, t->kv, "trusted data file, damaged log");
        auto v = (*opened)->verify();
        ASSERT_TRUE(v.ok());
        EXPECT_TRUE(any_problem_names(*v, named(path_, rec))) << problems_text(*v);
      } else {
        ASSERT_EQ(::unlink((path_ + "/stoa.sum").c_str()), 0);
      }
      auto r = Store::recover(path_, RecoverMode::kRebuild, store_options());
      ASSERT_FALSE(r.ok()) << "rebuilt past a damaged synced record";
      EXPECT_EQ(r.code(), Code::kCorrupt) << err(r);
      EXPECT_TRUE(contains(r.error().message(), named(path_, rec))) << err(r);
      std::printf("  %s\n", err(r).c_str());
      // The refusal sticks: a later open never serves a partial store.
      auto again = Store::open(path_, store_options());
      if (again.ok()) {
        expect_exact(**again, t->kv, "open after a refused rebuild");
      } else {
        EXPECT_EQ(again.code(), Code::kCorrupt) << err(again);
      }
    }
  }
}

// A refused rebuild must not cost the store its intact data file: the user
// asked for a rebuild (or `stoa recover --rebuild`), the log turned out to
// be damaged, and the data file that held every commit was still good.
TEST_F(DurableCorruption, RefusedForcedRebuildKeepsTheIntactDataFile) {
  copy_store(ckpt_->path, path_);
  uint64_t rec = 0;
  flip_lsn(path_, inside_record(*ckpt_, ckpt_->records.size() / 2, &rec));
  auto r = Store::recover(path_, RecoverMode::kRebuild, store_options());
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.code(), Code::kCorrupt) << err(r);
  auto again = Store::open(path_, store_options());
  ASSERT_TRUE(again.ok()) << "the store cannot be opened any more after a refused rebuild "
                             "(its intact data file was replaced): "
                          << err(again);
  expect_exact(**again, ckpt_->kv, "open after a refused rebuild");
}

// The last record of the synced log is damaged: with the clean-shutdown
// mark it lies below the last sync, so the rebuild refuses.
TEST_F(DurableCorruption, DamagedLastSyncedRecordWithCleanShutdownMarkRefuses) {
  copy_store(plain_->path, path_);
  uint64_t rec = 0;
  flip_lsn(path_, inside_record(*plain_, plain_->records.size() - 1, &rec));
  auto r = Store::recover(path_, RecoverMode::kRebuild, store_options());
  ASSERT_FALSE(r.ok()) << "the last synced (acknowledged) commit was dropped as a torn tail";
  EXPECT_EQ(r.code(), Code::kCorrupt) << err(r);
  EXPECT_TRUE(contains(r.error().message(), named(path_, rec))) << err(r);
}

// Without the mark nothing durable says the last record was synced, so a
// damaged last record looks like a torn tail and is cut. The report must
// say so: it dropped bytes (truncated_bytes) and ended before them.
TEST_F(DurableCorruption, DamagedLastRecordWithoutMarkIsReportedAsTruncated) {
  copy_store(plain_->path, path_);
  uint64_t rec = 0;
  flip_lsn(path_, inside_record(*plain_, plain_->records.size() - 1, &rec));
  ASSERT_EQ(::unlink((path_ + "/stoa.sum").c_str()), 0);
  auto r = Store::recover(path_, RecoverMode::kRebuild, store_options());
  if (!r.ok()) {
    EXPECT_EQ(r.code(), Code::kCorrupt) << err(r);
    return;
  }
  EXPECT_EQ(r->end_ts, rec);
  EXPECT_EQ(r->truncated_bytes, plain_->end_ts - rec)
      << "the damaged last record (" << plain_->end_ts - rec
      << " bytes) was cut, but the report says " << r->truncated_bytes << " bytes";
  // The state is the commit prefix before it: the last commit is gone,
  // nothing else changed, no wrong value.
  auto opened = Store::open(path_, store_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  EXPECT_EQ((*opened)->stats()->last_commit_ts, rec);
  expect_exact(**opened, plain_->state_at(rec), "after cutting the damaged last record");
}

// Writes a commit record of one put at `lsn` into the segment files (the
// record must fit in its segment); returns its length. `corrupt_body`
// flips a byte of the value after the checksum was computed (a torn write).
// `kind`: of the op (a put unless said).
uint64_t write_record(const std::string& store, uint64_t lsn, uint64_t synced,
                      const std::string& key, const std::string& value, bool corrupt_body,
                      log::OpKind kind = log::OpKind::kPut) {
  std::vector<log::Op> ops{log::Op{key, value, kind}};
  const uint64_t len = log::commit_size(ops);
  std::string buf(size_t(len), '\0');
  log::encode_commit(buf.data(), lsn, synced, ops);
  if (corrupt_body) buf[sizeof(log::RecordHeader) + sizeof(log::OpHeader) + key.size()] ^= 0x55;
  EXPECT_EQ(lsn / kSeg, (lsn + len - 1) / kSeg) << "test record crosses a segment";
  int fd = ::open(segment_path(store, lsn).c_str(), O_RDWR);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pwrite(fd, buf.data(), buf.size(), off_t(lsn % kSeg)), ssize_t(buf.size()));
  ::close(fd);
  return len;
}

// (ii) A torn tail past the last sync: a record whose write was torn, then
// a complete one that does not claim the torn one was on disk. Recovery
// cuts both (they were never acknowledged as durable), reports the bytes,
// and zeroes the rest of the segment so they cannot come back.
TEST_F(DurableCorruption, TornTailPastTheLastSyncIsTruncated) {
  copy_store(plain_->path, path_);
  const uint64_t end = plain_->end_ts;
  const uint64_t l1 = write_record(path_, end, end, "torn", "never acknowledged 1", true);
  const uint64_t l2 = write_record(path_, end + l1, end, "tail", "never acknowledged 2", false);
  auto r = Store::recover(path_, RecoverMode::kRebuild, store_options());
  ASSERT_TRUE(r.ok()) << err(r);
  EXPECT_TRUE(r->rebuilt);
  EXPECT_EQ(r->end_ts, end);
  EXPECT_EQ(r->truncated_bytes, l1 + l2);
  EXPECT_EQ(r->log_records, plain_->records.size());
  std::string rest = slurp(segment_path(path_, end)).substr(size_t(end % kSeg));
  EXPECT_EQ(rest, std::string(rest.size(), '\0')) << "the cut tail was not zeroed";
  auto opened = Store::open(path_, store_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  expect_exact(**opened, plain_->kv, "after cutting a torn tail");
  auto v = (*opened)->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << problems_text(*v);
  // New commits go on from the cut.
  auto s = (*opened)->session();
  ASSERT_TRUE(s.ok());
  auto txn = s->begin();
  ASSERT_TRUE(txn.ok());
  ASSERT_TRUE(txn->put("after", "cut").ok());
  auto c = txn->commit();
  ASSERT_TRUE(c.ok()) << err(c);
  EXPECT_GT(*c, end);
}

// The same, but the complete record after the torn one says the log was on
// disk past the torn one: that is damage below a sync, not a torn tail.
TEST_F(DurableCorruption, RecordPastTheTearClaimingItWasSyncedRefuses) {
  copy_store(plain_->path, path_);
  const uint64_t end = plain_->end_ts;
  const uint64_t l1 = write_record(path_, end, end, "torn", "acknowledged", true);
  write_record(path_, end + l1, end + l1, "tail", "after the sync", false);
  auto r = Store::recover(path_, RecoverMode::kRebuild, store_options());
  ASSERT_FALSE(r.ok()) << "cut a record that a later record says was synced";
  EXPECT_EQ(r.code(), Code::kCorrupt) << err(r);
  EXPECT_TRUE(contains(r.error().message(), named(path_, end))) << err(r);
}

// A well-formed record (its checksum matches) of an op kind this build does
// not know, past the last sync: no torn write, so a rebuild refuses it,
// naming the record, instead of cutting it as a torn tail.
TEST_F(DurableCorruption, RecordOfUnknownKindRefuses) {
  copy_store(plain_->path, path_);
  const uint64_t end = plain_->end_ts;
  write_record(path_, end, end, "later", "layer's operand", false, log::OpKind(log::kOpKindCount));
  auto r = Store::recover(path_, RecoverMode::kRebuild, store_options());
  ASSERT_FALSE(r.ok()) << "replayed or cut a record of an unknown kind";
  EXPECT_EQ(r.code(), Code::kCorrupt) << err(r);
  EXPECT_TRUE(contains(r.error().message(), fmt::format("log record at {}", end))) << err(r);
  EXPECT_TRUE(contains(r.error().message(), "unknown kind")) << err(r);
}

// Garbage in the zeroed, preallocated part of the last segment (past the
// end of the log) is not a record: a rebuild ignores it and zeroes it.
TEST_F(DurableCorruption, GarbagePastTheLogEndIsHarmless) {
  copy_store(plain_->path, path_);
  const uint64_t end = plain_->end_ts;
  std::string junk(size_t(std::min<uint64_t>(kSeg - end % kSeg, 3000)), '\0');
  std::mt19937_64 rng(7);
  for (char& c : junk) c = char(rng());
  int fd = ::open(segment_path(path_, end).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, junk.data(), junk.size(), off_t(end % kSeg)), ssize_t(junk.size()));
  ::close(fd);
  auto r = Store::recover(path_, RecoverMode::kRebuild, store_options());
  ASSERT_TRUE(r.ok()) << err(r);
  EXPECT_EQ(r->end_ts, end);
  auto opened = Store::open(path_, store_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  expect_exact(**opened, plain_->kv, "after garbage past the end");
}

// (ii) On the simulated disk: sync commits, then unsynced (kNone) commits,
// then the power fails before any sync. The rebuild keeps every sync
// commit, a prefix of the rest, and cuts the torn remainder.
TEST_F(DurableCorruption, PowerLossTearsOnlyTheUnsyncedTail) {
  const uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  uint64_t truncated = 0, kept_unsynced = 0;
  for (int round = 0; round < 12; round++) {
    SCOPED_TRACE(fmt::format("round {} seed {}", round, seed));
    TempDir d("corrupt-power");
    const std::string path = d.sub("store");
    SimEnv env(seed + uint64_t(round));
    std::mt19937_64 rng(seed + uint64_t(round));
    KV synced_kv;
    std::vector<std::pair<uint64_t, KV>> unsynced;  // ts, state after it
    {
      auto opened = internal::StoreAccess::open(path, store_options(), &env);
      ASSERT_TRUE(opened.ok()) << err(opened);
      auto s = (*opened)->session();
      ASSERT_TRUE(s.ok());
      for (int i = 0; i < 30; i++) {
        auto txn = s->begin();
        ASSERT_TRUE(txn.ok());
        std::string k = fmt::format("k{}", rng() % 20), v = value_for(k, i, 50 + rng() % 900);
        ASSERT_TRUE(txn->put(k, v).ok());
        ASSERT_TRUE(txn->commit().ok());
        synced_kv[k] = v;
      }
    }  // clean close: stoa.sum
    {
      Options o = store_options();
      o.durability = Durability::kNone;
      auto opened = internal::StoreAccess::open(path, o, &env);
      ASSERT_TRUE(opened.ok()) << err(opened);
      auto s = (*opened)->session();
      ASSERT_TRUE(s.ok());
      KV cur = synced_kv;
      for (int i = 0; i < 40; i++) {
        auto txn = s->begin();
        ASSERT_TRUE(txn.ok());
        std::string k = fmt::format("k{}", rng() % 20), v = value_for(k, 100 + i, 50 + rng() % 900);
        ASSERT_TRUE(txn->put(k, v).ok());
        auto c = txn->commit();
        ASSERT_TRUE(c.ok()) << err(c);
        cur[k] = v;
        unsynced.emplace_back(*c, cur);
      }
      env.cut_after(1);  // the power fails now: the close cannot sync anything
    }
    env.power_loss();
    auto opened = internal::StoreAccess::open(path, store_options(), &env);
    ASSERT_TRUE(opened.ok()) << err(opened);
    const RecoveryReport& rep = (*opened)->recovery();
    ASSERT_TRUE(rep.rebuilt) << rep.reason;
    truncated += rep.truncated_bytes > 0;
    KV got = read_all(**opened);
    KV want = synced_kv;
    for (const auto& [ts, state] : unsynced) {
      if (ts <= rep.end_ts) {
        want = state;
        kept_unsynced++;
      }
    }
    ASSERT_TRUE(got == want) << "not the commit prefix up to " << rep.end_ts;
    auto v = (*opened)->verify();
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->sound()) << problems_text(*v);
  }
  std::printf("12 power losses: %llu cut a torn tail, %llu unsynced commits survived\n",
              (unsigned long long)truncated, (unsigned long long)kept_unsynced);
}

// (iii) `stoa verify` reads every log checksum: a flipped bit in a log
// record gives exit status 2 and names the segment file.
TEST_F(DurableCorruption, CliVerifyNamesTheDamagedLogFile) {
  copy_store(ckpt_->path, path_);
  test::CliResult ok = test::run_cli(work_, {"verify", path_});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  uint64_t rec = 0;
  flip_lsn(path_, inside_record(*ckpt_, ckpt_->records.size() / 3, &rec), 0x01);
  test::CliResult r = test::run_cli(work_, {"verify", path_});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.out + r.err, segment_path(path_, rec))) << r.out << r.err;
  EXPECT_TRUE(contains(r.out + r.err, named(path_, rec))) << r.out << r.err;
  // And a damaged checkpoint.
  copy_store(ckpt_->path, path_);
  const std::string ck = path_ + "/log/" + fmt::format("ckpt-{:016x}.stoa", ckpt_->ckpt_ts);
  xor_byte(ck, fs::file_size(ck) / 2, 0x04);
  r = test::run_cli(work_, {"verify", path_});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.out + r.err, ck)) << r.out << r.err;
}

// A bit flipped in the data file's format version is damage (the header
// checksum fails), not another format: with an intact checkpoint and log
// the store is rebuilt, as for any other damaged byte of the data file.
TEST_F(DurableCorruption, FlipInTheDataFileVersionFieldIsRebuilt) {
  copy_store(plain_->path, path_);
  xor_byte(path_ + "/stoa.data", offsetof(region::FileHeader, format_version), 0x02);
  auto opened = Store::open(path_, store_options());
  ASSERT_TRUE(opened.ok()) << "one flipped bit in the data file header made the store "
                              "unopenable although checkpoint and log are intact: "
                           << err(opened);
  EXPECT_TRUE((*opened)->recovery().rebuilt);
  expect_exact(**opened, plain_->kv, "after a flip in the version field");
}

// (iv) The flight recorder. StoreImpl::corruption() dumps the recorders
// into the store directory and names the file in the error.
TEST_F(DurableCorruption, CorruptionWritesTheFlightRecorder) {
  copy_store(plain_->path, path_);
  auto opened = Store::open(path_, store_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  auto s = (*opened)->session();
  ASSERT_TRUE(s.ok());
  {
    auto txn = s->begin();  // give the recorder some entries
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(txn->put("rec", "x").ok());
    ASSERT_TRUE(txn->commit().ok());
  }
  internal::StoreImpl* impl = stoa::internal::impl_of(**opened);
  Error e = impl->corruption(stoa::internal::core_of(*s),
                             Error(Code::kCorrupt, "test damage at offset 42"));
  EXPECT_EQ(e.code(), Code::kCorrupt);
  EXPECT_TRUE(contains(e.message(), "test damage at offset 42")) << e.message();
  const std::string marker = "flight recorder written to ";
  ASSERT_TRUE(contains(e.message(), marker)) << e.message();
  std::string file = e.message().substr(e.message().find(marker) + marker.size());
  if (!file.empty() && file.back() == ')') file.pop_back();
  EXPECT_EQ(fs::path(file).parent_path().string(), path_);
  EXPECT_TRUE(contains(fs::path(file).filename().string(), "recorder-")) << file;
  ASSERT_TRUE(fs::exists(file)) << file;
  std::string text = slurp(file);
  EXPECT_TRUE(contains(text, "# flight recorders of " + path_)) << text;
  EXPECT_TRUE(contains(text, fmt::format("session {}", s->slot()))) << text;
  EXPECT_TRUE(contains(text, "slot ")) << text;
  // Other codes pass through untouched, with no file.
  Error io = impl->corruption(stoa::internal::core_of(*s), Error(Code::kIo, "disk"));
  EXPECT_EQ(io.code(), Code::kIo);
  EXPECT_EQ(io.message(), "disk");
}

bool recorder_written(const std::string& store) {
  for (const auto& e : fs::directory_iterator(store)) {
    if (contains(e.path().filename().string(), "recorder-")) return true;
  }
  return false;
}

// Damages the root index node of a live store in place (the heap is
// trusted while it is open); returns the node's offset.
uint64_t damage_root(Store& store, uint16_t* saved) {
  internal::StoreImpl* impl = stoa::internal::impl_of(store);
  const uint64_t root = impl->txns().header()->root.load();
  EXPECT_NE(root, 0u);
  auto* node = reinterpret_cast<index::Node*>(impl->region().rw(root));
  *saved = node->count;
  node->count = uint16_t(index::kFan + 7);
  return root;
}
void undamage_root(Store& store, uint16_t saved) {
  internal::StoreImpl* impl = stoa::internal::impl_of(store);
  auto* node =
      reinterpret_cast<index::Node*>(impl->region().rw(impl->txns().header()->root.load()));
  node->count = saved;
}

// Damage met by a session through the public API: a commit that needs a
// damaged index node fails with kCorrupt naming the node, and the flight
// recorder is written and named in the error.
TEST_F(DurableCorruption, CommitThroughDamagedIndexNodeWritesTheRecorder) {
  copy_store(plain_->path, path_);
  auto opened = Store::open(path_, store_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  uint16_t saved = 0;
  const uint64_t root = damage_root(**opened, &saved);
  auto s = (*opened)->session();
  ASSERT_TRUE(s.ok());
  auto txn = s->begin();
  ASSERT_TRUE(txn.ok());
  ASSERT_TRUE(txn->put("key000-new", "v").ok());
  auto c = txn->commit();
  ASSERT_FALSE(c.ok()) << "committed through a damaged index node";
  EXPECT_EQ(c.code(), Code::kCorrupt) << err(c);
  EXPECT_TRUE(contains(c.error().message(), std::to_string(root))) << err(c);
  EXPECT_TRUE(contains(c.error().message(), "flight recorder written to " + path_ + "/recorder-"))
      << err(c);
  EXPECT_TRUE(recorder_written(path_)) << "no recorder-*.txt in " << path_;
  std::printf("  commit: %s\n", err(c).c_str());
  undamage_root(**opened, saved);
}

// Reads that meet a damaged index node must not answer as if the store
// held fewer keys: get() of a present key is kCorrupt (not kNotFound), a
// scan ends with kCorrupt (not a silent short list). Both should dump the
// flight recorder like the commit path.
TEST_F(DurableCorruption, ReadsThroughDamagedIndexNodeReportCorruption) {
  copy_store(plain_->path, path_);
  auto opened = Store::open(path_, store_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  uint16_t saved = 0;
  damage_root(**opened, &saved);
  auto s = (*opened)->session();
  ASSERT_TRUE(s.ok());
  {
    auto txn = s->begin(TxnOptions{.read_only = true});
    ASSERT_TRUE(txn.ok());
    const auto& [key, value] = *plain_->kv.begin();
    auto g = txn->get(key);
    EXPECT_FALSE(g.ok() && g->str() != value) << "wrong value served";
    EXPECT_EQ(g.code(), Code::kCorrupt)
        << "get(" << key << ") of a present key through a damaged index node: " << err(g);
    auto c = txn->scan("", "");
    size_t n = 0;
    Status st = c.ok() ? Status() : Status(c.error());
    while (c.ok() && c->valid() && st.ok()) {
      n++;
      st = c->next();
    }
    EXPECT_TRUE(!st.ok() || n == plain_->kv.size())
        << "a scan through a damaged index node returned " << n << " of " << plain_->kv.size()
        << " keys and no error";
  }
  EXPECT_TRUE(recorder_written(path_)) << "reads met damage and wrote no flight recorder";
  undamage_root(**opened, saved);
}

// A damaged block guard met during a commit: overwriting a key retires its
// old version, whose guard is damaged. The commit may go on, but the
// damage must be reported (kCorrupt, or at least the flight recorder
// written), not dropped; verify names it.
TEST_F(DurableCorruption, DamagedBlockGuardMetByACommitIsReported) {
  copy_store(plain_->path, path_);
  auto opened = Store::open(path_, store_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  internal::StoreImpl* impl = stoa::internal::impl_of(**opened);
  const auto& [key, value] = *plain_->kv.begin();
  const uint64_t rec = impl->txns().tree().find(key);
  ASSERT_NE(rec, 0u);
  const uint64_t ver = impl->txns().tree().record(rec)->head.load();
  const uint64_t block = ver - region::kBlockHeaderSize;
  auto* bh = reinterpret_cast<region::BlockHeader*>(impl->region().rw(block));
  bh->tag.store(bh->tag.load() ^ 0x100);  // the guard of the key's current version
  auto s = (*opened)->session();
  ASSERT_TRUE(s.ok());
  Result<uint64_t> last = uint64_t{0};
  for (int i = 0; i < 3; i++) {  // the old version is retired (trimmed) by one of these
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // the trim threshold moves
    auto txn = s->begin();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(txn->put(key, fmt::format("overwrite {}", i)).ok());
    last = txn->commit();
    if (!last.ok()) break;
  }
  if (!last.ok()) {
    EXPECT_EQ(last.code(), Code::kCorrupt) << err(last);
  }
  auto v = (*opened)->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(any_problem_names(*v, fmt::format("offset {}", block))) << problems_text(*v);
  EXPECT_TRUE(!last.ok() || recorder_written(path_))
      << "a commit met a damaged block guard (offset " << block
      << ") and neither failed nor wrote the flight recorder; verify says:\n"
      << problems_text(*v);
}

}  // namespace
}  // namespace stoa
