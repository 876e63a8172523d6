// cli_test.cc — the `stoa` tool, run as a separate process (fork + exec):
// exit statuses, the one-line errors, stat's JSON, verify on sound and damaged
// stores, the flight recorder of a killed session, and the demo end to end.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/access.h"
#include "cli_util.h"
#include "stoa/store.h"
#include "store/store_impl.h"

namespace {

namespace fs = std::filesystem;

using stoa::test::CliResult;
using stoa::test::contains;
using stoa::test::run_cli;
using stoa::test::slurp;
using TempDir = stoa::test::TempDir;

// Scratch directory plus a store path inside it.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty()) << "mkdtemp under " << STOA_TEST_TMPDIR;
    store_ = tmp_.sub("store");
  }
  CliResult cli(const std::vector<std::string>& args) { return run_cli(tmp_, args); }
  void init_store(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"init", store_};
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  TempDir tmp_{"cli"};
  std::string store_;
};

TEST_F(CliTest, InitCreatesAStoreAndRefusesAnExistingOne) {
  CliResult r = cli({"init", store_, "--max-size", "64M", "--sessions", "8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, "created store");
  EXPECT_TRUE(fs::exists(store_ + "/stoa.data"));

  r = cli({"init", store_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.err, "stoa: exists:");
  EXPECT_CONTAINS(r.err, store_);
}

TEST_F(CliTest, StatJsonHasTheFields) {
  init_store({"--sessions", "8"});
  for (const char* k : {"a", "b", "c"}) ASSERT_EQ(cli({"put", store_, k, "v"}).exit_code, 0);
  CliResult r = cli({"stat", store_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["path"], store_);
  EXPECT_GT(j["file_size"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["max_sessions"].get<uint32_t>(), 8u);
  for (const char* key :
       {"max_size", "used_bytes", "free_page_bytes", "free_block_bytes", "current_cycle",
        "purgatory_bytes", "purgatory_objects", "sessions_recovered"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  // Space per key, from the two figures it divides.
  ASSERT_EQ(j["keys"].get<uint64_t>(), 3u);
  EXPECT_DOUBLE_EQ(j["used_bytes_per_key"].get<double>(),
                   double(j["used_bytes"].get<uint64_t>()) / 3);
  EXPECT_TRUE(j["oldest_pin"].is_null());
  ASSERT_TRUE(j["sessions"].is_array());
  EXPECT_TRUE(j["sessions"].empty()) << "stat must not open a session";

  r = cli({"stat", store_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, "file size");
  EXPECT_CONTAINS(r.out, "oldest pin");
}

TEST_F(CliTest, VerifyFreshStoreIsSound) {
  init_store();
  CliResult r = cli({"verify", store_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "sound");
  EXPECT_TRUE(r.err.empty()) << r.err;
}

// A key deleted by one `stoa del` process leaves the index when that
// process closes its session (guarantee 7.5): the next process sees it gone.
TEST_F(CliTest, DeletedKeyLeavesTheIndexWhenItsProcessCloses) {
  init_store();
  for (const char* k : {"a", "b", "c"}) ASSERT_EQ(cli({"put", store_, k, "v"}).exit_code, 0);
  ASSERT_EQ(cli({"del", store_, "b"}).exit_code, 0);
  CliResult r = cli({"stat", store_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["keys"].get<uint64_t>(), 2u);
  EXPECT_EQ(j["keys_removed"].get<uint64_t>(), 1u);
  r = cli({"stat", store_});
  EXPECT_CONTAINS(r.out, "1 deleted keys removed");
  r = cli({"verify", store_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(CliTest, VerifyADirectoryThatIsNotAStore) {
  const std::string dir = tmp_.sub("plain");
  ASSERT_TRUE(fs::create_directory(dir));
  CliResult r = cli({"verify", dir});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.err, "stoa: ");
  EXPECT_CONTAINS(r.err, dir);
  EXPECT_FALSE(fs::exists(dir + "/stoa.data")) << "verify must not create a store";

  r = cli({"verify", tmp_.sub("missing")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.err, tmp_.sub("missing"));
}

TEST_F(CliTest, VerifyFlippedHeaderByteIsCorrupt) {
  init_store();
  const std::string data = store_ + "/stoa.data";
  {
    std::fstream f(data, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    f.seekg(20);
    char c = 0;
    f.read(&c, 1);
    c = char(c ^ 0x5a);
    f.seekp(20);
    f.write(&c, 1);
  }
  CliResult r = cli({"verify", store_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "checksum") || contains(r.err, "corrupt")) << r.err;
  EXPECT_CONTAINS(r.err, data);
}

TEST_F(CliTest, StatTruncatedStore) {
  init_store();
  fs::resize_file(store_ + "/stoa.data", 100);
  CliResult r = cli({"stat", store_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_CONTAINS(r.err, "truncated");
  EXPECT_CONTAINS(r.err, store_);
}

TEST_F(CliTest, VerifyNamesADamagedBlockGuard) {
  init_store();
  uint64_t body = 0;
  {
    stoa::Options o;
    o.create_if_missing = false;
    o.watchdog_interval = std::chrono::milliseconds(0);
    o.log_threads = false;
    auto store = stoa::Store::open(store_, o);
    ASSERT_TRUE(store.ok()) << store.error().to_string();
    auto s = (*store)->session();
    ASSERT_TRUE(s.ok());
    auto off = stoa::internal::core_of(*s)->alloc(100);
    ASSERT_TRUE(off.ok());
    ASSERT_TRUE(stoa::internal::core_of(*s)->publish(*off).ok());
    body = *off;
  }
  {
    // The block's tag word sits 16 bytes before its body.
    std::fstream f(store_ + "/stoa.data", std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    f.seekp(std::streamoff(body - 16));
    const char junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    f.write(junk, sizeof(junk));
  }
  // Without the clean-shutdown checksums the file is trusted (as after a
  // crash on this boot) and verify's guards must find the damage.
  std::remove((store_ + "/stoa.sum").c_str());
  CliResult r = cli({"verify", store_});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "problem:");
  EXPECT_CONTAINS(r.err, "stoa: corrupt:");
}

TEST_F(CliTest, RecorderShowsAKilledSession) {
  init_store();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    stoa::Options o;
    o.create_if_missing = false;
    auto store = stoa::Store::open(store_, o);
    if (!store.ok()) ::_exit(1);
    auto s = (*store)->session();
    if (!s.ok()) ::_exit(1);
    for (size_t n : {100, 2000, 70000}) {
      auto off = stoa::internal::core_of(*s)->alloc(n);
      if (!off.ok()) ::_exit(1);
      if (n == 2000 && !stoa::internal::core_of(*s)->publish(*off).ok()) ::_exit(1);
    }
    uint32_t slot = s->slot();
    if (::write(ready[1], &slot, sizeof(slot)) != sizeof(slot)) ::_exit(1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  uint32_t slot = 0;
  ssize_t n = ::read(ready[0], &slot, sizeof(slot));
  ::close(ready[0]);
  // Stay attached (no watchdog, no session) so the dead slot is not reclaimed
  // and the tool sees it dead rather than repairing a store nobody has open.
  stoa::Options o;
  o.create_if_missing = false;
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  auto store = stoa::Store::open(store_, o);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_EQ(n, ssize_t(sizeof(slot)));
  ASSERT_TRUE(store.ok()) << store.error().to_string();

  CliResult r = cli({"recorder", store_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, "slot " + std::to_string(slot));
  EXPECT_CONTAINS(r.out, "state dead");
  EXPECT_CONTAINS(r.out, "alloc");
  EXPECT_CONTAINS(r.out, "publish");

  r = cli({"recorder", store_, "--session", std::to_string(slot), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_array() && j.size() == 1) << r.out;
  EXPECT_EQ(j[0]["slot"], slot);
  EXPECT_EQ(j[0]["state"], "dead");
  EXPECT_EQ(j[0]["pid"], child);
  int allocs = 0;
  for (const auto& e : j[0]["entries"]) allocs += e["kind"] == "alloc" ? 1 : 0;
  EXPECT_EQ(allocs, 3);

  r = cli({"recorder", store_, "--session", "100000"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.err, "stoa: invalid_argument:");
}

TEST_F(CliTest, DemoInAnEmptyDirectoryPasses) {
  const std::string dir = tmp_.sub("demo");
  ASSERT_TRUE(fs::create_directory(dir));
  CliResult r = cli({"demo", "--dir", dir, "--workers", "3", "--seconds", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "killed by SIGKILL, as planned");
  EXPECT_CONTAINS(r.out, "the survivors reclaimed slot");
  EXPECT_CONTAINS(r.out, "verify: sound");
  EXPECT_CONTAINS(r.out, "demo passed");
  EXPECT_TRUE(r.err.empty()) << r.err;

  // The store it leaves behind is sound, and its recorders remember the kill.
  r = cli({"verify", dir});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  r = cli({"recorder", dir});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, "recover");
  r = cli({"stat", dir, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_GE(j["sessions_recovered"].get<uint64_t>(), 1u);
}

TEST_F(CliTest, DemoRefusesAnExistingStore) {
  init_store();
  CliResult r = cli({"demo", "--dir", store_, "--workers", "2", "--seconds", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.err, "stoa: exists:");
}

TEST_F(CliTest, UsageAndHelp) {
  CliResult r = cli({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_CONTAINS(r.out, "Exit status");
  r = cli({"frobnicate"});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_CONTAINS(r.err, "stoa: usage:");
  r = cli({"stat"});
  EXPECT_EQ(r.exit_code, 64);
  r = cli({"demo", "--workers", "1"});
  EXPECT_EQ(r.exit_code, 64);
}

}  // namespace
