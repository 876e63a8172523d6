// Bad input gets a clear error value naming the path and the reason, never a
// crash (guarantees 5 and 8, docs/guarantees.md): directories that are not stores,
// regular files, truncated and foreign data files, failed checksums, other
// format versions and layouts, missing permissions, garbage lock files, a
// damaged run header, and API misuse (double free, stray offsets, closed
// sessions, a full session table).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include "api/access.h"
#include "region/layout.h"
#include "session/session_core.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "test_util.h"

namespace stoa {
namespace {

using internal::SessionCore;
using namespace stoa::test;

Options quiet() {
  Options o;
  o.watchdog_interval = milliseconds(0);
  o.log_threads = false;
  return o;
}

std::string problems_text(const VerifyReport& r) {
  std::string out;
  for (const auto& p : r.problems) out += "  " + p + "\n";
  return out;
}

bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

class BadInput : public ::testing::Test {
 protected:
  TempDir dir{"bad-input"};
  std::string path = dir.sub("store");
  std::string data = path + "/stoa.data";
  std::string lock = path + "/stoa.lock";

  // Creates a store holding one published, patterned block; returns it.
  uint64_t make_store(size_t size = 300, Options o = quiet()) {
    auto s = Store::open(path, o);
    EXPECT_TRUE(s.ok()) << err(s);
    if (!s.ok()) return 0;
    auto sess = (*s)->session();
    EXPECT_TRUE(sess.ok());
    auto a = stoa::internal::core_of(*sess)->alloc(size);
    EXPECT_TRUE(a.ok());
    fill_pattern(stoa::internal::core_of(*sess)->write_ptr(*a), size, *a);
    EXPECT_TRUE(stoa::internal::core_of(*sess)->publish(*a).ok());
    return *a;
  }

  void patch(const std::string& file, uint64_t off, const void* bytes, size_t n) {
    int fd = ::open(file.c_str(), O_RDWR);
    ASSERT_GE(fd, 0) << file;
    ASSERT_EQ(::pwrite(fd, bytes, n, off_t(off)), ssize_t(n));
    ::close(fd);
  }
  // Heap damage is found by guards while the data file is trusted. After a
  // clean close the data file is also covered by stoa.sum, which would
  // catch the damage first and rebuild from checkpoint and log (see
  // durable_corruption_test); without it, on this boot, the file is trusted
  // as after a crash, and the guards must do the work.
  void forget_clean_shutdown() { ::unlink((path + "/stoa.sum").c_str()); }
  void xor_byte(const std::string& file, uint64_t off, uint8_t mask) {
    int fd = ::open(file.c_str(), O_RDWR);
    ASSERT_GE(fd, 0) << file;
    uint8_t b = 0;
    ASSERT_EQ(::pread(fd, &b, 1, off_t(off)), 1);
    b ^= mask;
    ASSERT_EQ(::pwrite(fd, &b, 1, off_t(off)), 1);
    ::close(fd);
  }
  // Recomputes the header checksum (XXH3-64 of the 128 bytes before it).
  void fix_checksum() {
    int fd = ::open(data.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char buf[136];
    ASSERT_EQ(::pread(fd, buf, sizeof(buf), 0), ssize_t(sizeof(buf)));
    static_assert(offsetof(region::FileHeader, checksum) == 128);
    uint64_t sum = XXH3_64bits(buf, 128);
    ASSERT_EQ(::pwrite(fd, &sum, 8, 128), 8);
    ::close(fd);
  }

  // Opens and expects failure with `code`; the message must name the path
  // and contain `reason`.
  void expect_open_error(Code code, const std::string& reason, Options o = quiet(),
                         const std::string& names = "") {
    auto s = Store::open(path, o);
    ASSERT_FALSE(s.ok()) << "opened a bad store";
    EXPECT_EQ(s.code(), code) << s.error().to_string();
    EXPECT_TRUE(contains(s.error().message(), names.empty() ? path : names))
        << "message does not name the path: " << s.error().to_string();
    EXPECT_TRUE(contains(s.error().message(), reason))
        << "message does not say '" << reason << "': " << s.error().to_string();
    std::printf("  -> %s\n", s.error().to_string().c_str());
  }
};

// --- not a store ----------------------------------------------------------------

TEST_F(BadInput, DirectoryThatIsNotAStore) {
  ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);
  Options o = quiet();
  o.create_if_missing = false;
  expect_open_error(Code::kNotFound, "not a Stoa store", o);
  // Nothing was created in it.
  EXPECT_TRUE(std::filesystem::is_empty(path));
}

TEST_F(BadInput, MissingDirectoryWithoutCreate) {
  Options o = quiet();
  o.create_if_missing = false;
  expect_open_error(Code::kNotFound, "no such store", o);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(BadInput, PathIsARegularFile) {
  std::ofstream(path) << "hello";
  expect_open_error(Code::kInvalidArgument, "not a directory");
}

TEST_F(BadInput, ExistingStoreWithErrorIfExists) {
  make_store();
  Options o = quiet();
  o.error_if_exists = true;
  expect_open_error(Code::kExists, "exists", o);
}

// --- damaged data files ------------------------------------------------------------

TEST_F(BadInput, DataFileTruncatedTo100Bytes) {
  make_store();
  ASSERT_EQ(::truncate(data.c_str(), 100), 0);
  expect_open_error(Code::kCorrupt, "truncated", quiet(), data);
}

TEST_F(BadInput, DataFileTruncatedTo6000Bytes) {
  make_store();
  ASSERT_EQ(::truncate(data.c_str(), 6000), 0);
  expect_open_error(Code::kCorrupt, "truncated", quiet(), data);
}

TEST_F(BadInput, DataFileEmpty) {
  make_store();
  ASSERT_EQ(::truncate(data.c_str(), 0), 0);
  expect_open_error(Code::kCorrupt, "truncated", quiet(), data);
}

TEST_F(BadInput, DataFileTruncatedInsideTheHeap) {
  make_store();
  ASSERT_EQ(::truncate(data.c_str(), 20000), 0);  // header intact, heap cut short
  expect_open_error(Code::kCorrupt, "20000", quiet(), data);
}

TEST_F(BadInput, WrongMagic) {
  make_store();
  patch(data, 0, "NOTSTOA!", 8);
  expect_open_error(Code::kCorrupt, "magic", quiet(), data);
}

TEST_F(BadInput, HeaderChecksumFails) {
  make_store();
  xor_byte(data, 24, 0x10);  // max_size, covered by the checksum
  expect_open_error(Code::kCorrupt, "checksum", quiet(), data);
}

TEST_F(BadInput, OtherFormatVersion) {
  make_store();
  uint32_t v = region::kFormatVersion + 1;
  patch(data, 8, &v, 4);
  fix_checksum();
  expect_open_error(Code::kVersionMismatch, "format version", quiet(), data);
}

TEST_F(BadInput, OtherStructLayout) {
  make_store();
  xor_byte(data, 16, 0x08);  // layout word
  fix_checksum();
  expect_open_error(Code::kVersionMismatch, "layout", quiet(), data);
}

TEST_F(BadInput, OtherPageSize) {
  make_store();
  uint32_t ps = 16384;
  patch(data, 12, &ps, 4);
  fix_checksum();
  expect_open_error(Code::kVersionMismatch, "page size", quiet(), data);
}

TEST_F(BadInput, HeapMetadataDamaged) {
  make_store();
  xor_byte(data, region::kHeapMetaOffset, 0xff);  // HeapMeta magic
  expect_open_error(Code::kCorrupt, "heap metadata", quiet(), data);
}

TEST_F(BadInput, FileSizeInMetadataBeyondTheFile) {
  make_store();
  uint64_t fs = uint64_t{1} << 40;
  patch(data, region::kHeapMetaOffset + offsetof(region::HeapMeta, file_size), &fs, 8);
  expect_open_error(Code::kCorrupt, "file_size", quiet(), data);
}

// A garbage lock file while nobody is attached is rebuilt; the data survive.
TEST_F(BadInput, GarbageLockFileIsRebuilt) {
  const uint64_t off = make_store(5000);
  ASSERT_NE(off, 0u);
  for (int variant = 0; variant < 3; variant++) {
    std::vector<char> junk(variant == 0   ? 0
                           : variant == 1 ? 777
                                          : std::filesystem::file_size(lock));
    std::mt19937_64 rng(variant);
    for (auto& ch : junk) ch = char(rng());
    {
      std::ofstream f(lock, std::ios::binary | std::ios::trunc);
      f.write(junk.data(), std::streamsize(junk.size()));
    }
    auto s = Store::open(path, quiet());
    ASSERT_TRUE(s.ok()) << "variant " << variant << ": " << err(s);
    auto rep = (*s)->verify();
    ASSERT_TRUE(rep.ok());
    EXPECT_TRUE(rep->sound()) << problems_text(*rep);
    EXPECT_EQ(rep->blocks_live, 1u);
    auto sess = (*s)->session();
    ASSERT_TRUE(sess.ok()) << err(sess);
    auto r = stoa::internal::core_of(*sess)->read(off, 5000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(check_pattern(*r, 5000, off), -1) << "published data lost with the lock file";
    auto a = stoa::internal::core_of(*sess)->alloc(100);
    EXPECT_TRUE(a.ok()) << err(a);
    EXPECT_TRUE(stoa::internal::core_of(*sess)->free(*a).ok());
  }
}

// A run header inside the heap is damaged: verify names the place; the
// block in that run gives errors, not crashes; allocation goes on or fails
// with an error.
TEST_F(BadInput, DamagedRunHeaderIsNamedAndRefused) {
  // The first allocation, a large block, is the first run (at kHeapStart).
  const uint64_t off = make_store(64 * 1024);
  ASSERT_EQ(off, region::kHeapStart + region::kRunHeaderSize + region::kBlockHeaderSize);
  xor_byte(data, region::kHeapStart, 0x01);  // the run header word's guard bits
  forget_clean_shutdown();

  {
    auto s = Store::open(path, quiet());  // clean last close: opens
    ASSERT_TRUE(s.ok()) << err(s);
    auto rep = (*s)->verify();
    ASSERT_TRUE(rep.ok());
    ASSERT_FALSE(rep->sound()) << "verify did not notice a damaged run header";
    bool named = false;
    for (const auto& p : rep->problems) named |= contains(p, std::to_string(region::kHeapStart));
    EXPECT_TRUE(named) << "no problem names offset " << region::kHeapStart << ":\n"
                       << problems_text(*rep);
    std::printf("  verify: %s\n", rep->problems[0].c_str());

    auto sess = (*s)->session();
    ASSERT_TRUE(sess.ok());
    SessionCore* c = stoa::internal::core_of(*sess);
    auto us = c->usable_size(off);
    EXPECT_FALSE(us.ok());
    EXPECT_EQ(us.code(), Code::kCorrupt) << err(us);
    Status fs = c->free(off);
    EXPECT_FALSE(fs.ok());
    EXPECT_EQ(fs.code(), Code::kCorrupt) << err(fs);
    EXPECT_TRUE(contains(fs.error().message(), std::to_string(region::kHeapStart)))
        << fs.error().message();
    Status rs = c->retire(off);
    EXPECT_FALSE(rs.ok()) << "retired a block whose run header is damaged";
    // Allocation: served elsewhere, or an error; never a crash.
    for (size_t size : {size_t(64), size_t(5000), size_t(64 * 1024), size_t(1 << 20)}) {
      auto a = c->alloc(size);
      if (a.ok()) {
        EXPECT_NE(*a, off);
        fill_pattern(c->write_ptr(*a), size, 1);
        EXPECT_TRUE(c->free(*a).ok());
      } else {
        EXPECT_NE(a.code(), Code::kOk);
        std::printf("  alloc(%zu): %s\n", size, err(a).c_str());
      }
    }
    rep = (*s)->verify();
    ASSERT_TRUE(rep.ok());
    EXPECT_FALSE(rep->sound());
  }

  // After a crash (a process killed while attached) the lone opener must
  // repair the heap: it either opens and verify still names the run, or it
  // refuses with kCorrupt naming it.
  Children kids;
  Shared<std::atomic<int32_t>> ready;
  pid_t pid = kids.spawn([&] {
    auto s = Store::open(path, quiet());
    CHILD_CHECK(s.ok(), "open: {}", err(s));
    ready->store(1);
    for (;;) std::this_thread::sleep_for(milliseconds(100));
    return 0;
  });
  ASSERT_TRUE(wait_until([&] { return ready->load() == 1; }, milliseconds(10000)));
  kids.kill_one(pid);
  auto s = Store::open(path, quiet());
  if (s.ok()) {
    auto rep = (*s)->verify();
    ASSERT_TRUE(rep.ok());
    bool named = false;
    for (const auto& p : rep->problems) named |= contains(p, std::to_string(region::kHeapStart));
    EXPECT_TRUE(named) << problems_text(*rep);
  } else {
    EXPECT_EQ(s.code(), Code::kCorrupt) << err(s);
    EXPECT_TRUE(contains(s.error().message(), std::to_string(region::kHeapStart))) << err(s);
    EXPECT_TRUE(contains(s.error().message(), data)) << err(s);
    std::printf("  open after a crash: %s\n", err(s).c_str());
  }
}

// The only free run is damaged and the store cannot grow: an allocation
// that needs that run fails with an error value.
TEST_F(BadInput, AllocationNeedingADamagedRunFails) {
  Options o = quiet();
  o.initial_size = 1 << 20;
  o.grow_chunk = 1 << 20;
  o.max_size = 1 << 20;  // no growth: every allocation needs the first run
  {
    auto s = Store::open(path, o);
    ASSERT_TRUE(s.ok()) << err(s);
  }
  xor_byte(data, region::kHeapStart + 1, 0x40);
  forget_clean_shutdown();
  auto s = Store::open(path, o);
  ASSERT_TRUE(s.ok()) << err(s);
  auto rep = (*s)->verify();
  ASSERT_TRUE(rep.ok());
  ASSERT_FALSE(rep->problems.empty());
  EXPECT_TRUE(contains(rep->problems[0], std::to_string(region::kHeapStart)))
      << problems_text(*rep);
  auto sess = (*s)->session();
  ASSERT_TRUE(sess.ok());
  for (size_t size : {size_t(100), size_t(3000), size_t(64 * 1024)}) {
    auto a = stoa::internal::core_of(*sess)->alloc(size);
    EXPECT_FALSE(a.ok()) << "allocated " << size << " bytes at " << (a.ok() ? *a : 0)
                         << " from a damaged heap";
    if (!a.ok()) {
      EXPECT_TRUE(a.code() == Code::kFull || a.code() == Code::kCorrupt) << err(a);
      std::printf("  alloc(%zu): %s\n", size, err(a).c_str());
    }
  }
  EXPECT_TRUE((*s)->stats().ok());
}

// --- permissions -------------------------------------------------------------------

struct PermResult {
  std::atomic<int32_t> code;
  char message[1024];
};

// Opens `p` as an unprivileged user (root drops to nobody in a child;
// others open directly) and reports the result.
void open_unprivileged(const std::string& p, Options o, PermResult* out) {
  auto s = Store::open(p, o);
  out->code.store(int32_t(s.code()));
  std::snprintf(out->message, sizeof(out->message), "%s",
                s.ok() ? "ok" : s.error().to_string().c_str());
}

class Permission : public BadInput {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      // Not root: permission bits apply to this process already; chmod must work.
      ASSERT_EQ(::chmod(dir.path().c_str(), 0700), 0);
    }
  }
  // Runs the open as uid/gid 65534 (root) or as ourselves.
  std::pair<Code, std::string> try_open(const std::string& p, Options o) {
    Shared<PermResult> res;
    if (::geteuid() != 0) {
      open_unprivileged(p, o, res.get());
    } else {
      Children kids;
      pid_t pid = kids.spawn([&] {
        CHILD_CHECK(::setgroups(0, nullptr) == 0, "setgroups: {}", std::strerror(errno));
        CHILD_CHECK(::setgid(65534) == 0, "setgid: {}", std::strerror(errno));
        CHILD_CHECK(::setuid(65534) == 0, "setuid: {}", std::strerror(errno));
        open_unprivileged(p, o, res.get());
        return 0;
      });
      int status = kids.wait(pid, milliseconds(30000));
      EXPECT_TRUE(exited_ok(status)) << describe_status(status);
    }
    std::printf("  -> %s\n", res->message);
    return {Code(res->code.load()), std::string(res->message)};
  }
  bool can_drop() {
    if (::geteuid() == 0) return true;
    return ::access(dir.path().c_str(), W_OK) == 0;
  }
};

TEST_F(Permission, StoreDirectoryWithoutPermission) {
  make_store();
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0700), 0);  // the store's own directory, owner-only
  if (::geteuid() != 0) {
    ASSERT_EQ(::chmod(path.c_str(), 0000), 0);
  }
  auto [code, msg] = try_open(path, quiet());
  EXPECT_EQ(code, Code::kPermission) << msg;
  EXPECT_TRUE(contains(msg, path)) << msg;
}

TEST_F(Permission, StoreDirectoryWithoutPermissionNoCreate) {
  make_store();
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0700), 0);
  if (::geteuid() != 0) {
    ASSERT_EQ(::chmod(path.c_str(), 0000), 0);
  }
  Options o = quiet();
  o.create_if_missing = false;
  auto [code, msg] = try_open(path, o);
  EXPECT_EQ(code, Code::kPermission)
      << "an existing store we may not read is not 'not found': " << msg;
  EXPECT_TRUE(contains(msg, path)) << msg;
}

TEST_F(Permission, ParentDirectoryWithoutPermission) {
  make_store();
  ASSERT_EQ(::chmod(dir.path().c_str(), ::geteuid() == 0 ? 0700 : 0000), 0);
  auto [code, msg] = try_open(path, quiet());
  EXPECT_EQ(code, Code::kPermission) << msg;
  EXPECT_TRUE(contains(msg, path)) << msg;
}

TEST_F(Permission, FilesReadOnlyToUs) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make files another user's";
  make_store();
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(data.c_str(), 0644), 0);
  ASSERT_EQ(::chmod(lock.c_str(), 0644), 0);
  auto [code, msg] = try_open(path, quiet());
  EXPECT_EQ(code, Code::kPermission) << msg;
}

// --- API misuse ----------------------------------------------------------------------

TEST_F(BadInput, DoubleFreeIsRefused) {
  auto s = Store::open(path, quiet());
  ASSERT_TRUE(s.ok());
  auto sess = (*s)->session();
  ASSERT_TRUE(sess.ok());
  SessionCore* c = stoa::internal::core_of(*sess);
  // Small, large, and large freed next to a free run it merges with.
  for (size_t size : {size_t(40), size_t(3000), size_t(20000), size_t(300000)}) {
    auto a = c->alloc(size);
    auto b = c->alloc(size);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_TRUE(c->free(*a).ok());
    ASSERT_TRUE(c->free(*b).ok());
    for (uint64_t off : {*b, *a}) {
      Status st = c->free(off);
      EXPECT_FALSE(st.ok()) << "second free of " << off << " (" << size << " bytes) succeeded";
      EXPECT_EQ(st.code(), Code::kInvalidArgument) << err(st);
      if (!st.ok()) {
        EXPECT_TRUE(contains(st.error().message(), "double free")) << err(st);
        EXPECT_TRUE(contains(st.error().message(), std::to_string(off))) << err(st);
      }
    }
  }
  // Free after publish+free, retire after free.
  auto a = c->alloc(100);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(c->publish(*a).ok());
  ASSERT_TRUE(c->free(*a).ok());
  EXPECT_EQ(c->free(*a).code(), Code::kInvalidArgument);
  EXPECT_EQ(c->retire(*a).code(), Code::kInvalidArgument);
  EXPECT_EQ(c->publish(*a).code(), Code::kInvalidArgument);
  auto rep = (*s)->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);
  // The heap still hands out distinct memory.
  std::vector<uint64_t> offs;
  for (int i = 0; i < 20; i++) {
    auto x = c->alloc(20000);
    ASSERT_TRUE(x.ok());
    fill_pattern(c->write_ptr(*x), 20000, *x);
    offs.push_back(*x);
  }
  for (uint64_t off : offs)
    EXPECT_EQ(check_pattern(c->view(off), 20000, off), -1) << "overlap at " << off;
}

TEST_F(BadInput, StrayOffsetsAreRefused) {
  const uint64_t live = make_store(4000);
  auto s = Store::open(path, quiet());
  ASSERT_TRUE(s.ok());
  auto sess = (*s)->session();
  ASSERT_TRUE(sess.ok());
  SessionCore* c = stoa::internal::core_of(*sess);
  const uint64_t fs = (*s)->stats()->file_size;
  std::mt19937_64 rng(3);
  std::vector<uint64_t> bad = {0,
                               8,
                               4096,
                               8192,
                               12345,
                               live + 16,
                               live + 32,
                               live + 1000 * 16,
                               fs,
                               fs + 4096 * 100,
                               ~uint64_t{0} - 15};
  const size_t fixed = bad.size();
  for (int i = 0; i < 200; i++) bad.push_back((rng() % fs) & ~uint64_t{15});
  int refused = 0;
  for (size_t i = 0; i < bad.size(); i++) {
    const uint64_t off = bad[i];
    if (off == live) continue;
    // usable_size() answers for any real block, free ones too: only ask it
    // about the offsets that are certainly not block bodies.
    for (int op = 0; op < (i < fixed ? 4 : 3); op++) {
      Result<size_t> r = size_t{0};
      Status st;
      switch (op) {
        case 0:
          st = c->free(off);
          break;
        case 1:
          st = c->publish(off);
          break;
        case 2:
          st = c->retire(off);
          break;
        default:
          r = c->usable_size(off);
          st = r.ok() ? Status() : Status(r.error());
          break;
      }
      EXPECT_FALSE(st.ok()) << "op " << op << " accepted stray offset " << off;
      if (!st.ok()) {
        EXPECT_TRUE(st.code() == Code::kInvalidArgument || st.code() == Code::kCorrupt) << err(st);
        EXPECT_TRUE(contains(st.error().message(), std::to_string(off)) ||
                    contains(st.error().message(), std::to_string(off - 16)))
            << "message does not name the offset: " << err(st);
        refused++;
      }
    }
  }
  std::printf("  %d stray operations refused\n", refused);
  auto r = c->read(live, 4000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(check_pattern(*r, 4000, live), -1) << "a stray operation damaged a live block";
  EXPECT_FALSE(c->read(fs, 16).ok()) << "read beyond the file";
  auto rep = (*s)->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);
  EXPECT_EQ(rep->blocks_live, 1u);
}

TEST_F(BadInput, OtherSessionsBlocksAreRefused) {
  auto s = Store::open(path, quiet());
  ASSERT_TRUE(s.ok());
  auto s1 = (*s)->session();
  auto s2 = (*s)->session();
  ASSERT_TRUE(s1.ok() && s2.ok());
  auto a = stoa::internal::core_of(*s1)->alloc(100);
  ASSERT_TRUE(a.ok());
  for (Status st :
       {stoa::internal::core_of(*s2)->free(*a), stoa::internal::core_of(*s2)->publish(*a),
        stoa::internal::core_of(*s2)->retire(*a)}) {
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << err(st);
    if (!st.ok()) {
      EXPECT_TRUE(contains(st.error().message(), "belongs to session")) << err(st);
    }
  }
  EXPECT_TRUE(stoa::internal::core_of(*s1)->free(*a).ok());
}

TEST_F(BadInput, ClosedSessionAndForkedStore) {
  auto s = Store::open(path, quiet());
  ASSERT_TRUE(s.ok());
  std::unique_ptr<Store> store = std::move(s).value();
  auto sess = store->session();
  ASSERT_TRUE(sess.ok());
  EXPECT_TRUE(sess->is_open());
  EXPECT_TRUE(sess->close().ok());
  EXPECT_FALSE(sess->is_open());
  EXPECT_EQ(stoa::internal::core_of(*sess), nullptr);
  Status again = sess->close();
  EXPECT_EQ(again.code(), Code::kClosed) << err(again);
  Session empty;
  EXPECT_EQ(empty.close().code(), Code::kClosed);
  auto s2 = store->session();
  ASSERT_TRUE(s2.ok());
  Session moved = std::move(*s2);
  EXPECT_EQ(s2->close().code(), Code::kClosed);
  EXPECT_TRUE(moved.close().ok());

  // A store opened before fork() is closed in the child: every call says so.
  Children kids;
  pid_t pid = kids.spawn([&] {
    auto cs = store->session();
    CHILD_CHECK(!cs.ok() && cs.code() == Code::kClosed, "session() in a forked child: {}", err(cs));
    auto st = store->stats();
    CHILD_CHECK(!st.ok() && st.code() == Code::kClosed, "stats() in a forked child: {}", err(st));
    auto v = store->verify();
    CHILD_CHECK(!v.ok() && v.code() == Code::kClosed, "verify() in a forked child: {}", err(v));
    auto rd = store->reap_dead_sessions();
    CHILD_CHECK(!rd.ok() && rd.code() == Code::kClosed, "reap in a forked child: {}", err(rd));
    // Opening it again in the child works.
    auto again = Store::open(path, quiet());
    CHILD_CHECK(again.ok(), "reopen in child: {}", err(again));
    auto cs2 = (*again)->session();
    CHILD_CHECK(cs2.ok(), "session in child: {}", err(cs2));
    return 0;
  });
  EXPECT_TRUE(exited_ok(kids.wait(pid, milliseconds(30000))));
  auto rep = store->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);
}

TEST_F(BadInput, SessionTableFull) {
  Options o = quiet();
  o.max_sessions = 3;
  auto s = Store::open(path, o);
  ASSERT_TRUE(s.ok());
  std::unique_ptr<Store> store = std::move(s).value();
  std::vector<Session> held;
  for (int i = 0; i < 3; i++) {
    auto x = store->session();
    ASSERT_TRUE(x.ok()) << err(x);
    held.push_back(std::move(*x));
  }
  auto full = store->session();
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.code(), Code::kFull) << err(full);
  EXPECT_TRUE(contains(full.error().message(), path)) << err(full);
  std::printf("  -> %s\n", err(full).c_str());
  ASSERT_TRUE(held[1].close().ok());
  auto again = store->session();
  ASSERT_TRUE(again.ok()) << "after closing one: " << err(again);
  EXPECT_FALSE(store->session().ok());

  // Slots held by a process that dies become claimable (no watchdog here:
  // session() itself takes a dead slot).
  held.clear();
  again->close().ok();
  Children kids;
  Shared<std::atomic<int32_t>> ready;
  pid_t pid = kids.spawn([&] {
    auto cs = Store::open(path, quiet());
    CHILD_CHECK(cs.ok(), "open: {}", err(cs));
    std::vector<Session> mine;
    for (int i = 0; i < 3; i++) {
      auto x = (*cs)->session();
      CHILD_CHECK(x.ok(), "child session {}: {}", i, err(x));
      CHILD_CHECK(stoa::internal::core_of(*x)->alloc(1000).ok(), "alloc");
      mine.push_back(std::move(*x));
    }
    ready->store(1);
    for (;;) std::this_thread::sleep_for(milliseconds(100));
    return 0;
  });
  ASSERT_TRUE(wait_until([&] { return ready->load() == 1; }, milliseconds(10000)));
  EXPECT_EQ(store->session().code(), Code::kFull);
  kids.kill_one(pid);
  for (int i = 0; i < 3; i++) {
    auto x = store->session();
    ASSERT_TRUE(x.ok()) << "dead process's slot " << i << ": " << err(x);
    held.push_back(std::move(*x));
  }
  held.clear();
  auto rep = store->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound()) << problems_text(*rep);
  EXPECT_EQ(rep->blocks_private + rep->blocks_cached, 0u)
      << "the dead sessions' blocks were not reclaimed";
}

TEST_F(BadInput, BadOptions) {
  Options o = quiet();
  o.max_sessions = 0;
  expect_open_error(Code::kInvalidArgument, "max_sessions", o, "max_sessions");
  o = quiet();
  o.max_size = 1000;  // below the minimum
  auto s = Store::open(path, o);
  EXPECT_FALSE(s.ok());
  if (!s.ok()) {
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << err(s);
  }
  auto e = Store::open("", quiet());
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace stoa
