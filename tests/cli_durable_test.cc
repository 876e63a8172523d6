// cli_durable_test.cc — the `stoa` durability commands, run as separate
// processes (fork + exec): backup while another process keeps committing
// (the copy holds a consistent prefix), backup into a non-empty directory,
// compact (smaller data file, live keys exact; busy while open elsewhere),
// recover (report, --rebuild, --json, a killed session reclaimed; a damaged
// log record is exit 2 naming the log file, and --rebuild then keeps the
// data file), checkpoint, --durability, and the log fields of stat and
// verify.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "stoa/store.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;

using stoa::test::Children;
using stoa::test::CliResult;
using stoa::test::contains;
using stoa::test::run_cli;
using stoa::test::Shared;
using TempDir = stoa::test::TempDir;

stoa::Options existing(stoa::Durability d = stoa::Durability::kGroup) {
  stoa::Options o;
  o.create_if_missing = false;
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  o.durability = d;
  return o;
}

// A value that differs per key and per round, `n` bytes long.
std::string value_of(const std::string& key, int round, size_t n) {
  std::string v = fmt::format("{}#{}:", key, round);
  while (v.size() < n) v += char('a' + (v.size() * 7 + size_t(round)) % 26);
  v.resize(n);
  return v;
}

// Every key and value of the store at `dir`, from one snapshot.
std::map<std::string, std::string> read_all(const std::string& dir) {
  std::map<std::string, std::string> out;
  auto store = stoa::Store::open(dir, existing());
  EXPECT_TRUE(store.ok()) << stoa::test::err(store);
  if (!store.ok()) return out;
  auto s = (*store)->session();
  EXPECT_TRUE(s.ok()) << stoa::test::err(s);
  if (!s.ok()) return out;
  auto t = s->begin({.read_only = true});
  EXPECT_TRUE(t.ok()) << stoa::test::err(t);
  if (!t.ok()) return out;
  auto c = t->prefix("");
  EXPECT_TRUE(c.ok()) << stoa::test::err(c);
  if (!c.ok()) return out;
  for (; c->valid(); (void)c->next()) out.emplace(std::string(c->key()), c->value().copy());
  (void)t->commit();
  return out;
}

// The number after `label` in `text` (e.g. "up to ts 1234"), if any.
std::optional<uint64_t> number_after(const std::string& text, const std::string& label) {
  size_t at = text.find(label);
  if (at == std::string::npos) return std::nullopt;
  at += label.size();
  if (at >= text.size() || text[at] < '0' || text[at] > '9') return std::nullopt;
  return std::strtoull(text.c_str() + at, nullptr, 10);
}

uint64_t data_size(const std::string& dir) { return fs::file_size(dir + "/stoa.data"); }

class CliDurableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty()) << "mkdtemp under " << STOA_TEST_TMPDIR;
    store_ = tmp_.sub("store");
  }
  CliResult cli(const std::vector<std::string>& args) { return run_cli(tmp_, args); }
  void init_store(const std::string& max_size = "256M") {
    CliResult r = cli({"init", store_, "--max-size", max_size});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  nlohmann::json json_of(const std::vector<std::string>& args, int want_exit = 0) {
    CliResult r = cli(args);
    EXPECT_EQ(r.exit_code, want_exit) << r.out << r.err;
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }

  // Ten keys k00..k09 committed one by one with durability kSync, then a
  // byte flipped in the body of the sixth commit record (every record was
  // on disk: the damage is not a torn tail). Returns the damaged log file.
  std::string make_damaged_log(std::map<std::string, std::string>* keys) {
    std::vector<uint64_t> ts;
    {
      auto store = stoa::Store::open(store_, existing(stoa::Durability::kSync));
      EXPECT_TRUE(store.ok()) << stoa::test::err(store);
      if (!store.ok()) return "";
      auto s = (*store)->session();
      EXPECT_TRUE(s.ok()) << stoa::test::err(s);
      if (!s.ok()) return "";
      for (int i = 0; i < 10; i++) {
        const std::string k = fmt::format("k{:02}", i), v = value_of(k, 0, 40);
        auto t = s->transact([&](stoa::Txn& txn) { return txn.put(k, v); });
        EXPECT_TRUE(t.ok()) << stoa::test::err(t);
        if (!t.ok()) return "";
        ts.push_back(*t);
        (*keys)[k] = v;
      }
    }
    // A commit's timestamp is the log position just past its record, so
    // the sixth record starts where the fifth ends. Its segment is the
    // file log/<16 hex digits of its first position>.log at or below it.
    const uint64_t start = ts[4];
    std::string file;
    uint64_t base = 0;
    for (const auto& e : fs::directory_iterator(store_ + "/log")) {
      const std::string name = e.path().filename().string();
      if (name.size() != 20 || name.substr(16) != ".log") continue;
      const uint64_t b = std::strtoull(name.substr(0, 16).c_str(), nullptr, 16);
      if (b <= start && (file.empty() || b > base)) {
        file = e.path().string();
        base = b;
      }
    }
    EXPECT_FALSE(file.empty()) << "no log segment holds position " << start;
    if (file.empty()) return "";
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    EXPECT_TRUE(f.good()) << file;
    const std::streamoff at = std::streamoff(start - base + 48 + 4);  // past the 48-byte header
    char c = 0;
    f.seekg(at);
    f.read(&c, 1);
    c = char(c ^ 0x5a);
    f.seekp(at);
    f.write(&c, 1);
    EXPECT_TRUE(f.good()) << file;
    return file;
  }

  // Forks a process that opens the store, writes in a transaction it never
  // commits, and is SIGKILLed while it holds its session.
  void kill_a_session_holder() {
    struct Control {
      std::atomic<bool> ready{false};
    };
    Shared<Control> ctl;
    Children children;
    const std::string dir = store_;
    const pid_t victim = children.spawn([&]() -> int {
      auto store = stoa::Store::open(dir, existing());
      CHILD_CHECK(store.ok(), "{}", stoa::test::err(store));
      auto s = (*store)->session();
      CHILD_CHECK(s.ok(), "{}", stoa::test::err(s));
      auto t = s->begin();
      CHILD_CHECK(t.ok(), "{}", stoa::test::err(t));
      CHILD_CHECK(t->put("never", "committed").ok(), "put");
      ctl->ready.store(true);
      for (;;) ::pause();
    });
    const auto t0 = stoa::test::Clock::now();
    while (!ctl->ready.load() && stoa::test::ms_since(t0) < 30000) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(ctl->ready.load()) << "the child did not open a session";
    const int status = children.kill_one(victim);
    ASSERT_TRUE(WIFSIGNALED(status)) << stoa::test::describe_status(status);
  }

  TempDir tmp_{"cli-durable"};
  std::string store_;
};

// A child keeps committing while `stoa backup` copies the store. Each of
// its transactions writes live/<n> and sets `counter` to n, so a
// consistent snapshot with counter = c holds exactly live/0..live/c.
TEST_F(CliDurableTest, BackupWhileAnotherProcessCommits) {
  init_store();
  std::map<std::string, std::string> before;
  {
    auto store = stoa::Store::open(store_, existing());
    ASSERT_TRUE(store.ok()) << stoa::test::err(store);
    auto s = (*store)->session();
    ASSERT_TRUE(s.ok()) << stoa::test::err(s);
    auto t = s->transact([&](stoa::Txn& txn) -> stoa::Status {
      for (int i = 0; i < 300; i++) {
        const std::string k = fmt::format("pre/{:04}", i);
        const std::string v = value_of(k, 1, size_t(10 + (i * 37) % 3000));
        STOA_TRY(txn.put(k, v));
        before[k] = v;
      }
      return {};
    });
    ASSERT_TRUE(t.ok()) << stoa::test::err(t);
  }

  struct Control {
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> committed{0};
  };
  Shared<Control> ctl;
  Children children;
  const std::string dir = store_;
  const pid_t writer = children.spawn([&]() -> int {
    auto store = stoa::Store::open(dir, existing(stoa::Durability::kNone));
    CHILD_CHECK(store.ok(), "{}", stoa::test::err(store));
    auto s = (*store)->session();
    CHILD_CHECK(s.ok(), "{}", stoa::test::err(s));
    const auto deadline = stoa::test::Clock::now() + std::chrono::seconds(60);
    for (uint64_t n = 0; !ctl->stop.load() && stoa::test::Clock::now() < deadline; n++) {
      const std::string k = fmt::format("live/{:08}", n);
      auto t = s->transact([&](stoa::Txn& txn) -> stoa::Status {
        STOA_TRY(txn.put(k, value_of(k, 2, 100 + n % 900)));
        return txn.put("counter", std::to_string(n));
      });
      CHILD_CHECK(t.ok(), "commit {}: {}", n, stoa::test::err(t));
      ctl->committed.store(n + 1);
    }
    return 0;
  });

  // Let the writer get going, then copy.
  const auto t0 = stoa::test::Clock::now();
  while (ctl->committed.load() < 200 && stoa::test::ms_since(t0) < 30000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const uint64_t at_start = ctl->committed.load();
  const std::string dest = tmp_.sub("copy");
  CliResult r = cli({"backup", store_, dest});
  const uint64_t at_end = ctl->committed.load();
  ctl->stop.store(true);
  const int status = children.wait(writer, std::chrono::seconds(30));
  EXPECT_TRUE(stoa::test::exited_ok(status)) << stoa::test::describe_status(status);
  ASSERT_GE(at_start, 200u) << "the writer did not get going";
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, dest);
  const std::optional<uint64_t> ts = number_after(r.out, "every commit up to ts ");
  ASSERT_TRUE(ts.has_value()) << r.out;
  std::printf("writer: %llu commits before the backup, %llu when it ended\n",
              (unsigned long long)at_start, (unsigned long long)at_end);

  // The copy opens as a store: loaded from the checkpoint the backup wrote,
  // at the timestamp it printed.
  {
    auto copy = stoa::Store::open(dest, existing());
    ASSERT_TRUE(copy.ok()) << stoa::test::err(copy);
    const stoa::RecoveryReport& rep = (*copy)->recovery();
    EXPECT_TRUE(rep.rebuilt) << rep.reason;
    EXPECT_EQ(rep.checkpoint_ts, *ts);
    EXPECT_EQ(rep.end_ts, *ts);
  }
  std::map<std::string, std::string> got = read_all(dest);
  // Everything written before the backup started, exactly.
  for (const auto& [k, v] : before) {
    auto it = got.find(k);
    ASSERT_NE(it, got.end()) << k;
    EXPECT_TRUE(it->second == v) << k;
  }
  // A prefix of the writer's commits: live/0..live/c with counter = c, no
  // more and no less, at least those committed before the backup began.
  ASSERT_TRUE(got.count("counter")) << "no writer commit in the copy";
  const uint64_t c = std::stoull(got["counter"]);
  // (A commit returns before the writer counts it: at most one uncounted.)
  EXPECT_GE(c + 1, at_start);
  EXPECT_LE(c, at_end);
  uint64_t live = 0;
  for (const auto& [k, v] : got) {
    if (k.rfind("live/", 0) != 0) continue;
    const uint64_t n = std::stoull(k.substr(5));
    EXPECT_LE(n, c) << k << " is past counter " << c << ": not one snapshot";
    EXPECT_TRUE(v == value_of(k, 2, 100 + n % 900)) << k;
    live++;
  }
  EXPECT_EQ(live, c + 1);
  EXPECT_EQ(got.size(), before.size() + live + 1);

  r = cli({"verify", dest});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // The original goes on, whole.
  std::map<std::string, std::string> orig = read_all(store_);
  EXPECT_GE(std::stoull(orig["counter"]), c);
}

TEST_F(CliDurableTest, BackupIntoANonEmptyDirectoryFails) {
  init_store();
  ASSERT_EQ(cli({"put", store_, "k", "v"}).exit_code, 0);
  const std::string dest = tmp_.sub("full");
  ASSERT_TRUE(fs::create_directory(dest));
  stoa::test::spit(dest + "/precious.txt", "keep me");
  CliResult r = cli({"backup", store_, dest});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_CONTAINS(r.err, "stoa: exists:");
  EXPECT_CONTAINS(r.err, dest);
  EXPECT_CONTAINS(r.err, "not an empty directory");
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(stoa::test::slurp(dest + "/precious.txt"), "keep me");
  EXPECT_FALSE(fs::exists(dest + "/log"));

  // A file in the way is refused the same way; an empty directory is fine.
  stoa::test::spit(tmp_.sub("file"), "x");
  r = cli({"backup", store_, tmp_.sub("file")});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_CONTAINS(r.err, "stoa: exists:");
  const std::string empty = tmp_.sub("empty");
  ASSERT_TRUE(fs::create_directory(empty));
  r = cli({"backup", store_, empty});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  r = cli({"get", empty, "k"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "v");
  r = cli({"backup"});
  EXPECT_EQ(r.exit_code, 64);
}

TEST_F(CliDurableTest, CompactShrinksAfterDeletesAndOverwrites) {
  init_store("1G");
  std::map<std::string, std::string> want;
  {
    auto store = stoa::Store::open(store_, existing(stoa::Durability::kNone));
    ASSERT_TRUE(store.ok()) << stoa::test::err(store);
    auto s = (*store)->session();
    ASSERT_TRUE(s.ok()) << stoa::test::err(s);
    constexpr size_t kValue = 256 << 10;
    for (int round = 0; round < 3; round++) {
      for (int i = 0; i < 64; i++) {
        const std::string k = fmt::format("big/{:02}", i);
        const std::string v = value_of(k, round, kValue + size_t(i));
        auto t = s->transact([&](stoa::Txn& txn) { return txn.put(k, v); });
        ASSERT_TRUE(t.ok()) << stoa::test::err(t);
        want[k] = v;
      }
    }
    for (int i = 0; i < 64; i++) {
      if (i % 8 == 3) continue;  // 8 survive
      const std::string k = fmt::format("big/{:02}", i);
      auto t = s->transact([&](stoa::Txn& txn) { return txn.del(k); });
      ASSERT_TRUE(t.ok()) << stoa::test::err(t);
      want.erase(k);
    }
    auto t = s->transact([&](stoa::Txn& txn) { return txn.put("small", "s"); });
    ASSERT_TRUE(t.ok()) << stoa::test::err(t);
    want["small"] = "s";
  }
  ASSERT_EQ(want.size(), 9u);
  const uint64_t before = data_size(store_);
  EXPECT_GE(before, uint64_t{16} << 20) << "the data file never grew";

  CliResult r = cli({"compact", store_});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const uint64_t after = data_size(store_);
  std::printf("data file %llu -> %llu bytes\n", (unsigned long long)before,
              (unsigned long long)after);
  EXPECT_LT(after, before);
  EXPECT_LE(after, before / 2);
  EXPECT_CONTAINS(r.out, fmt::format("compacted {}: data file", store_));
  EXPECT_CONTAINS(r.out, fmt::format("({} bytes) -> ", before));
  EXPECT_CONTAINS(r.out, fmt::format("({} bytes)", after));
  EXPECT_CONTAINS(r.out, "smaller");
  EXPECT_CONTAINS(r.out, "rebuilt        yes");
  EXPECT_CONTAINS(r.out, "9 keys loaded");

  std::map<std::string, std::string> got = read_all(store_);
  EXPECT_EQ(got.size(), want.size());
  for (const auto& [k, v] : want) {
    auto it = got.find(k);
    ASSERT_NE(it, got.end()) << k;
    EXPECT_TRUE(it->second == v) << k << ": " << it->second.size() << " bytes";
  }
  r = cli({"verify", store_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;

  // Again, as JSON: nothing left to shrink.
  nlohmann::json j = json_of({"compact", store_, "--json"});
  EXPECT_EQ(j["data_bytes_before"].get<uint64_t>(), after);
  EXPECT_LE(j["data_bytes_after"].get<uint64_t>(), after);
  EXPECT_EQ(j["report"]["rebuilt"], true);
  EXPECT_EQ(j["report"]["checkpoint_keys"].get<uint64_t>(), 9u);
}

TEST_F(CliDurableTest, CompactAndRecoverRefuseAStoreOpenElsewhere) {
  init_store();
  ASSERT_EQ(cli({"put", store_, "k", "v"}).exit_code, 0);
  {
    // This process holds it open; the tool is another process.
    auto store = stoa::Store::open(store_, existing());
    ASSERT_TRUE(store.ok()) << stoa::test::err(store);
    const uint64_t size = data_size(store_);
    CliResult r = cli({"compact", store_});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_CONTAINS(r.err, "stoa: busy:");
    EXPECT_CONTAINS(r.err, "other processes have the store open");
    EXPECT_CONTAINS(r.err, store_);
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_EQ(data_size(store_), size);

    r = cli({"recover", store_});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_CONTAINS(r.err, "stoa: busy:");
    r = cli({"recover", store_, "--rebuild"});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_CONTAINS(r.err, "stoa: busy:");

    // Backup and checkpoint run beside it.
    r = cli({"checkpoint", store_});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    r = cli({"backup", store_, tmp_.sub("copy")});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  CliResult r = cli({"compact", store_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(cli({"get", store_, "k"}).out, "v");
  EXPECT_EQ(cli({"get", tmp_.sub("copy"), "k"}).out, "v");
}

TEST_F(CliDurableTest, RecoverReportsAndRebuilds) {
  init_store();
  std::map<std::string, std::string> want;
  for (int i = 0; i < 20; i++) {
    const std::string k = fmt::format("key{:02}", i), v = value_of(k, 0, size_t(1 + i * 500));
    stoa::test::spit(tmp_.sub("v"), v);
    CliResult r = cli({"put", store_, k, "--file", tmp_.sub("v")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    want[k] = v;
    if (i == 9) {
      ASSERT_EQ(cli({"checkpoint", store_}).exit_code, 0);
    }
  }

  CliResult r = cli({"recover", store_});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, fmt::format("recover {}: the data file was intact and kept", store_));
  for (const char* field :
       {"rebuilt        no", "reason         the data file is intact", "checkpoint", "log replayed",
        "end ts", "torn tail      none", "sessions       0 dead sessions recovered", "took",
        "log check      the checkpoint at ts "}) {
    EXPECT_CONTAINS(r.out, field);
  }
  EXPECT_CONTAINS(r.out, "(10 keys) and 10 commit records after it check out");
  EXPECT_TRUE(r.err.empty()) << r.err;

  r = cli({"recover", store_, "--rebuild"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "rebuilt the data file");
  EXPECT_CONTAINS(r.out, "rebuilt        yes");
  EXPECT_CONTAINS(r.out, "reason         a rebuild was asked for");
  EXPECT_CONTAINS(r.out, "10 keys loaded");
  EXPECT_CONTAINS(r.out, "log replayed   10 commit records");
  EXPECT_TRUE(read_all(store_) == want);

  nlohmann::json j = json_of({"recover", store_, "--rebuild", "--json"});
  EXPECT_EQ(j["path"], store_);
  EXPECT_EQ(j["rebuilt"], true);
  EXPECT_EQ(j["reason"], "a rebuild was asked for");
  EXPECT_GT(j["checkpoint_ts"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["checkpoint_keys"].get<uint64_t>(), 10u);
  EXPECT_EQ(j["log_records"].get<uint64_t>(), 10u);
  EXPECT_GT(j["log_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["end_ts"].get<uint64_t>(),
            j["checkpoint_ts"].get<uint64_t>() + j["log_bytes"].get<uint64_t>());
  EXPECT_EQ(j["truncated_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["sessions_recovered"].get<uint64_t>(), 0u);
  EXPECT_GE(j["seconds"].get<double>(), 0.0);
  EXPECT_TRUE(j["log_check"].is_null());
  EXPECT_TRUE(read_all(store_) == want);

  j = json_of({"recover", store_, "--json"});
  EXPECT_EQ(j["rebuilt"], false);
  EXPECT_TRUE(j["log_check"]["problems"].empty()) << j.dump();
  // stat agrees with the end of the log.
  nlohmann::json st = json_of({"stat", store_, "--json"});
  EXPECT_EQ(st["last_commit_ts"], j["end_ts"]);

  r = cli({"verify", store_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  r = cli({"recover", tmp_.sub("missing")});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_CONTAINS(r.err, tmp_.sub("missing"));
  r = cli({"recover", store_, "--force"});
  EXPECT_EQ(r.exit_code, 64) << "--force needs --rebuild";
}

// A process killed while it held a session (and a written, uncommitted
// transaction): recover undoes its work and reclaims its slot.
TEST_F(CliDurableTest, RecoverReclaimsADeadSession) {
  init_store();
  ASSERT_EQ(cli({"put", store_, "kept", "1"}).exit_code, 0);
  ASSERT_NO_FATAL_FAILURE(kill_a_session_holder());

  nlohmann::json j = json_of({"recover", store_, "--json"});
  EXPECT_EQ(j["rebuilt"], false);
  // stat's count of dead sessions reclaimed since the lock file was made.
  nlohmann::json st = json_of({"stat", store_, "--json"});
  EXPECT_EQ(st["sessions_recovered"].get<uint64_t>(), 1u) << st.dump();
  CliResult r = cli({"recover", store_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "sessions       0 dead sessions recovered");
  EXPECT_EQ(cli({"get", store_, "kept"}).out, "1");
  EXPECT_EQ(cli({"get", store_, "never"}).exit_code, 1);
  EXPECT_EQ(cli({"verify", store_}).exit_code, 0);
}

// Disabled: a library bug. StoreImpl::finish_open (src/store_durable.cc)
// takes its "before" count of recoveries after open_protocol
// (src/store_impl.cc) has already reclaimed the dead sessions a lone opener
// finds, so RecoveryReport::sessions_recovered reads 0 here although stat's
// counter rose by 1 (see RecoverReclaimsADeadSession).
TEST_F(CliDurableTest, RecoverReportCountsADeadSession) {
  init_store();
  ASSERT_NO_FATAL_FAILURE(kill_a_session_holder());
  nlohmann::json j = json_of({"recover", store_, "--json"});
  EXPECT_EQ(j["sessions_recovered"].get<uint64_t>(), 1u) << j.dump();
}

TEST_F(CliDurableTest, RecoverNamesADamagedLogRecordAndKeepsTheDataFile) {
  init_store();
  std::map<std::string, std::string> want;
  const std::string log_file = make_damaged_log(&want);
  ASSERT_FALSE(log_file.empty());

  // The data file is intact and kept, but the log would not rebuild it.
  CliResult r = cli({"recover", store_});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_CONTAINS(r.err, "stoa: corrupt:");
  EXPECT_CONTAINS(r.err, log_file);
  EXPECT_CONTAINS(r.out, "rebuilt        no");
  EXPECT_CONTAINS(r.out, "problem: " + log_file);
  nlohmann::json j = json_of({"recover", store_, "--json"}, 2);
  ASSERT_EQ(j["log_check"]["problems"].size(), 1u) << j.dump();
  EXPECT_CONTAINS(j["log_check"]["problems"][0].get<std::string>(), log_file);

  // verify says so too.
  r = cli({"verify", store_});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "problem: " + log_file);

  // --rebuild refuses before the data file is replaced: every key stays.
  r = cli({"recover", store_, "--rebuild"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_CONTAINS(r.err, log_file);
  EXPECT_CONTAINS(r.err, "not rebuilding");
  EXPECT_TRUE(read_all(store_) == want);

  // A checkpoint from the intact data file makes the damaged part unneeded.
  r = cli({"checkpoint", store_});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = cli({"recover", store_, "--rebuild"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "10 keys loaded");
  EXPECT_TRUE(read_all(store_) == want);
  r = cli({"verify", store_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(CliDurableTest, ForcedRebuildOverADamagedLogExits2NamingTheFile) {
  init_store();
  std::map<std::string, std::string> want;
  const std::string log_file = make_damaged_log(&want);
  ASSERT_FALSE(log_file.empty());
  // The library's own refusal, found while replaying the log.
  CliResult r = cli({"recover", store_, "--rebuild", "--force"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_CONTAINS(r.err, "stoa: corrupt:");
  EXPECT_CONTAINS(r.err, log_file);
  EXPECT_CONTAINS(r.err, "damaged");
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(CliDurableTest, StatVerifyCheckpointAndDurability) {
  init_store();
  CliResult r = cli({"put", store_, "a", "1", "--durability", "sync", "-v"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::optional<uint64_t> ts = number_after(r.out, "committed at ts ");
  ASSERT_TRUE(ts.has_value()) << r.out;
  for (const char* d : {"group", "none"}) {
    r = cli({"put", store_, std::string("b-") + d, d, "--durability", d});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  r = cli({"del", store_, "b-none", "--durability", "sync"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = cli({"load", store_, "--durability", "sync"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = cli({"put", store_, "x", "y", "--durability", "fast"});
  EXPECT_EQ(r.exit_code, 64) << r.err;

  nlohmann::json j = json_of({"stat", store_, "--json"});
  for (const char* key : {"durable_ts", "checkpoint_ts", "log_bytes", "log_failed"}) {
    EXPECT_TRUE(j.contains(key)) << key << " in " << j.dump();
  }
  const uint64_t last = j["last_commit_ts"].get<uint64_t>();
  EXPECT_GT(last, *ts);
  // The last closer synced the log: every commit is durable.
  EXPECT_EQ(j["durable_ts"].get<uint64_t>(), last);
  EXPECT_EQ(j["checkpoint_ts"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["log_bytes"].get<uint64_t>(), last);
  EXPECT_TRUE(j["log_failed"].is_null());

  r = cli({"checkpoint", store_});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, fmt::format("checkpoint of {} at ts {}", store_, last));
  EXPECT_CONTAINS(r.out, "ckpt-");
  r = cli({"checkpoint", store_});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "no commit since the last checkpoint");

  j = json_of({"stat", store_, "--json"});
  EXPECT_EQ(j["checkpoint_ts"].get<uint64_t>(), last);
  EXPECT_EQ(j["log_bytes"].get<uint64_t>(), 0u);
  r = cli({"stat", store_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, fmt::format("durable        up to ts {}", last));
  EXPECT_CONTAINS(r.out, fmt::format("checkpoint     ts {}", last));
  EXPECT_FALSE(contains(r.out, "LOG FAILED")) << r.out;

  ASSERT_EQ(cli({"put", store_, "c", "3"}).exit_code, 0);
  r = cli({"verify", store_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, fmt::format("checkpoint     ts {}: 2 keys checked", last));
  EXPECT_CONTAINS(r.out, "log            1 commit records checked after the checkpoint");
}

TEST_F(CliDurableTest, HelpListsTheDurabilityCommands) {
  CliResult r = cli({"--help"});
  ASSERT_EQ(r.exit_code, 0);
  for (const char* cmd : {"checkpoint", "backup", "compact", "recover"}) {
    EXPECT_CONTAINS(r.out, std::string("  ") + cmd + " ");
  }
  r = cli({"put", "--help"});
  EXPECT_CONTAINS(r.out, "--durability");
  r = cli({"recover", "--help"});
  EXPECT_CONTAINS(r.out, "--rebuild");
  EXPECT_CONTAINS(r.out, "--json");
  r = cli({"compact"});
  EXPECT_EQ(r.exit_code, 64);
}

}  // namespace
