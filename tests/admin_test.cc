// admin_test.cc — the public admin interface (stoa/admin.h), through the
// public headers only: the files it names exist, the flight recorder shows
// what a session did, raw blocks keep their bytes and their state rules, a
// damaged log is reported by check_log naming the file, opened_alone tells
// a lone open from a shared one, and drain_parked frees a parked session.
#include "stoa/admin.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "stoa/store.h"
#include "test_util.h"

namespace stoa::test {
namespace {

namespace fs = std::filesystem;

std::string key_of(int i) { return "key/" + std::to_string(i); }

Options quiet() {
  Options o;
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  return o;
}

TEST(Admin, PathsNameTheStoreFiles) {
  TempDir dir("admin-paths");
  auto store = Store::open(dir.path(), quiet());
  ASSERT_TRUE(store.ok()) << err(store);
  const StorePaths p = Admin::paths(dir.path());
  EXPECT_EQ(p.data, dir.sub("stoa.data"));
  EXPECT_TRUE(fs::is_regular_file(p.data));
  EXPECT_TRUE(fs::is_regular_file(p.lock));
  EXPECT_TRUE(fs::is_directory(p.log_dir));
  EXPECT_EQ(fs::path(p.sum).parent_path(), fs::path(dir.path()));

  auto s = (*store)->session();
  ASSERT_TRUE(s.ok()) << err(s);
  ASSERT_TRUE(s->transact([](Txn& t) { return t.put("k", "v"); }).ok());
  ASSERT_TRUE(s->close().ok());
  auto ts = (*store)->checkpoint();
  ASSERT_TRUE(ts.ok()) << err(ts);
  const std::string ckpt = Admin::checkpoint_path(dir.path(), *ts);
  EXPECT_EQ(fs::path(ckpt).parent_path(), fs::path(p.log_dir));
  EXPECT_TRUE(fs::is_regular_file(ckpt)) << ckpt;
}

TEST(Admin, RecorderShowsWhatASessionDid) {
  TempDir dir("admin-recorder");
  auto store = Store::open(dir.path(), quiet());
  ASSERT_TRUE(store.ok()) << err(store);
  auto s = (*store)->session();
  ASSERT_TRUE(s.ok()) << err(s);
  Admin::Blocks blocks(*s);
  auto off = blocks.alloc(100);
  ASSERT_TRUE(off.ok()) << err(off);
  ASSERT_TRUE(blocks.publish(*off).ok());
  ASSERT_TRUE(blocks.free(*off).ok());

  auto dumps = Admin::recorder(**store, s->slot());
  ASSERT_TRUE(dumps.ok()) << err(dumps);
  ASSERT_EQ(dumps->size(), 1u);
  const RecorderDump& d = dumps->front();
  EXPECT_EQ(d.slot, s->slot());
  EXPECT_EQ(d.generation, s->generation());
  EXPECT_EQ(d.pid, int64_t(::getpid()));
  EXPECT_EQ(d.state, "live");
  std::vector<std::string> kinds;
  for (const RecorderEntry& e : d.entries) {
    if (e.arg == *off) kinds.push_back(e.kind);
    EXPECT_NE(e.time_ns, 0u);
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"alloc", "publish", "free"}));

  auto all = Admin::recorder(**store);
  ASSERT_TRUE(all.ok()) << err(all);
  EXPECT_TRUE(std::any_of(all->begin(), all->end(),
                          [&](const RecorderDump& x) { return x.slot == s->slot(); }));
  auto bad = Admin::recorder(**store, 1u << 20);
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
}

TEST(Admin, BlocksKeepTheirBytesAndTheirRules) {
  TempDir dir("admin-blocks");
  auto store = Store::open(dir.path(), quiet());
  ASSERT_TRUE(store.ok()) << err(store);
  auto s = (*store)->session();
  ASSERT_TRUE(s.ok()) << err(s);
  Admin::Blocks blocks(*s);
  constexpr size_t kLen = 5000;
  auto off = blocks.alloc(kLen);
  ASSERT_TRUE(off.ok()) << err(off);
  fill_pattern(blocks.write_ptr(*off), kLen, 42);
  ASSERT_TRUE(blocks.publish(*off).ok());
  {
    Admin::Blocks::Pin pin(blocks);
    auto p = blocks.read(*off, kLen);
    ASSERT_TRUE(p.ok()) << err(p);
    EXPECT_EQ(check_pattern(*p, kLen, 42), -1);
    EXPECT_EQ(check_pattern(blocks.view(*off), kLen, 42), -1);
    ASSERT_TRUE(blocks.retire(*off).ok());
    // Retired under a pin: still readable until the pin goes.
    EXPECT_EQ(check_pattern(blocks.view(*off), kLen, 42), -1);
  }
  EXPECT_EQ(blocks.read(uint64_t{1} << 50, 8).code(), Code::kCorrupt);
  auto other = blocks.alloc(64);
  ASSERT_TRUE(other.ok()) << err(other);
  ASSERT_TRUE(blocks.free(*other).ok());
  EXPECT_EQ(blocks.free(*other).code(), Code::kInvalidArgument);  // double free
  EXPECT_EQ(blocks.alloc(0).code(), Code::kInvalidArgument);
  ASSERT_TRUE(s->close().ok());
  EXPECT_EQ(blocks.alloc(64).code(), Code::kClosed);
  EXPECT_EQ(blocks.publish(*off).code(), Code::kClosed);
  auto rep = (*store)->verify();
  ASSERT_TRUE(rep.ok()) << err(rep);
  EXPECT_TRUE(rep->sound()) << rep->problems.front();
}

// The first log segment's bytes, with the offset of `marker` in them.
std::string segment_with(const std::string& log_dir, const std::string& marker, size_t* at) {
  for (const auto& e : fs::directory_iterator(log_dir)) {
    if (e.path().extension() != ".log") continue;
    std::ifstream f(e.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    *at = bytes.find(marker);
    if (*at != std::string::npos) return e.path().string();
  }
  return "";
}

TEST(Admin, CheckLogReportsADamagedRecord) {
  TempDir dir("admin-log");
  const std::string marker = "admin-test-marker-value";
  {
    auto store = Store::open(dir.path(), quiet());
    ASSERT_TRUE(store.ok()) << err(store);
    auto s = (*store)->session();
    ASSERT_TRUE(s.ok()) << err(s);
    for (int i = 0; i < 10; i++) {
      auto ts = s->transact([&](Txn& t) { return t.put(key_of(i), marker); });
      ASSERT_TRUE(ts.ok()) << err(ts);
    }
    ASSERT_TRUE(s->close().ok());
    ASSERT_TRUE((*store)->sync().ok());
    auto c = Admin::check_log(**store);
    ASSERT_TRUE(c.ok()) << err(c);
    EXPECT_TRUE(c->sound()) << c->problems.front();
    EXPECT_EQ(c->records, 10u);
    EXPECT_EQ(c->checkpoint_ts, 0u);
    EXPECT_TRUE(Admin::opened_alone(**store));
  }
  size_t at = 0;
  const std::string seg = segment_with(Admin::paths(dir.path()).log_dir, marker, &at);
  ASSERT_FALSE(seg.empty()) << "no log segment holds the marker";
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(at + 3));
    f.put('#');
  }
  auto store = Store::open(dir.path(), quiet());  // the data file is trusted: the log is not read
  ASSERT_TRUE(store.ok()) << err(store);
  auto c = Admin::check_log(**store);
  ASSERT_TRUE(c.ok()) << err(c);
  ASSERT_FALSE(c->sound());
  EXPECT_NE(c->problems.front().find(fs::path(seg).filename().string()), std::string::npos)
      << c->problems.front();
}

TEST(Admin, OpenedAloneOnlyWhenNoOtherProcessHasTheStore) {
  TempDir dir("admin-alone");
  { ASSERT_TRUE(Store::open(dir.path(), quiet()).ok()); }
  Pipe opened, done;
  Children children;
  pid_t child = children.spawn([&] {
    auto s = Store::open(dir.path(), quiet());
    if (!s.ok()) return 1;
    opened.send();
    return done.recv(std::chrono::seconds(30)) < 0 ? 2 : 0;
  });
  ASSERT_GE(opened.recv(std::chrono::seconds(30)), 0);
  {
    auto store = Store::open(dir.path(), quiet());
    ASSERT_TRUE(store.ok()) << err(store);
    EXPECT_FALSE(Admin::opened_alone(**store));
  }
  done.send();
  EXPECT_TRUE(exited_ok(children.wait(child, std::chrono::seconds(30))));
  auto store = Store::open(dir.path(), quiet());
  ASSERT_TRUE(store.ok()) << err(store);
  EXPECT_TRUE(Admin::opened_alone(**store));
}

TEST(Admin, DrainParkedFreesASessionOnceNoPinSeesItsRetiredBlocks) {
  TempDir dir("admin-parked");
  auto store = Store::open(dir.path(), quiet());
  ASSERT_TRUE(store.ok()) << err(store);
  auto reader = (*store)->session();
  ASSERT_TRUE(reader.ok()) << err(reader);
  Admin::Blocks pins(*reader);
  pins.pin();
  uint32_t slot = 0;
  {
    auto writer = (*store)->session();
    ASSERT_TRUE(writer.ok()) << err(writer);
    slot = writer->slot();
    Admin::Blocks blocks(*writer);
    auto off = blocks.alloc(256);
    ASSERT_TRUE(off.ok()) << err(off);
    ASSERT_TRUE(blocks.publish(*off).ok());
    ASSERT_TRUE(blocks.retire(*off).ok());
    ASSERT_TRUE(writer->close().ok());
  }
  auto state_of = [&]() -> std::string {
    auto st = (*store)->stats();
    if (!st.ok()) return "error";
    for (const SessionInfo& si : st->sessions) {
      if (si.slot == slot) return si.state;
    }
    return "gone";
  };
  EXPECT_EQ(state_of(), "parked");  // the reader's pin may still see the retired block
  pins.unpin();
  Admin::drain_parked(**store);
  EXPECT_EQ(state_of(), "gone");
  ASSERT_TRUE(reader->close().ok());
}

}  // namespace
}  // namespace stoa::test
