// Reads go through a read-only view: a stray write through a pointer from
// SessionCore::view() or read() faults (SIGSEGV) instead of corrupting the
// store, while write_ptr() writes and view() sees the result.
//
// Each faulting write runs in a forked child that opens the store itself.
// The child either restores the default SIGSEGV action (the parent then sees
// it killed by SIGSEGV) or installs a handler that checks the fault is an
// access violation on a mapped page (SEGV_ACCERR, not an unmapped address)
// exactly at the written byte. Afterwards the parent checks the data is
// unchanged: the write did not land.
#include <gtest/gtest.h>

#include <signal.h>

#include <cstring>

#include "api/access.h"
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

// What the fault handler saw, in shared memory.
struct FaultReport {
  std::atomic<int32_t> faulted;
  std::atomic<int32_t> si_code;
  std::atomic<uint64_t> addr;
  std::atomic<uint64_t> expected;
};
FaultReport* g_report = nullptr;

void on_segv(int, siginfo_t* si, void*) {
  g_report->si_code.store(si->si_code);
  g_report->addr.store(reinterpret_cast<uint64_t>(si->si_addr));
  g_report->faulted.store(1);
  ::_exit(42);
}

void default_segv() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, nullptr);
}

void catch_segv(FaultReport* r) {
  g_report = r;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, nullptr);
}

enum class Via { kView, kRead, kHeaderPage };

// Creates a store with one published, patterned block; returns its offset.
uint64_t make_store(const std::string& path, size_t size, uint64_t key, Options o = quiet()) {
  auto s = Store::open(path, o);
  EXPECT_TRUE(s.ok()) << err(s);
  if (!s.ok()) return 0;
  auto sess = (*s)->session();
  EXPECT_TRUE(sess.ok());
  SessionCore* c = stoa::internal::core_of(*sess);
  auto a = c->alloc(size);
  EXPECT_TRUE(a.ok()) << err(a);
  fill_pattern(c->write_ptr(*a), size, key);
  EXPECT_TRUE(c->publish(*a).ok());
  return *a;
}

// In a child: opens the store and writes one byte through a read pointer.
int write_through_read_pointer(const std::string& path, uint64_t off, size_t size, Via via,
                               FaultReport* report) {
  auto s = Store::open(path, quiet());
  CHILD_CHECK(s.ok(), "open: {}", err(s));
  auto sess = (*s)->session();
  CHILD_CHECK(sess.ok(), "session: {}", err(sess));
  SessionCore* c = stoa::internal::core_of(*sess);
  const char* p = nullptr;
  uint64_t target = off + size / 2;
  if (via == Via::kRead) {
    auto r = c->read(off, size);
    CHILD_CHECK(r.ok(), "read: {}", err(r));
    p = *r + size / 2;
  } else if (via == Via::kView) {
    auto r = c->read(off, size);  // maps what another process grew
    CHILD_CHECK(r.ok(), "read: {}", err(r));
    p = c->view(target);
  } else {
    target = 24;  // the file header's max_size field
    p = c->view(target);
  }
  char before = *p;  // reading is fine
  if (report != nullptr) {
    report->expected.store(reinterpret_cast<uint64_t>(p));
    catch_segv(report);
  } else {
    default_segv();
  }
  *const_cast<volatile char*>(p) = char(before ^ 0x5a);  // must fault
  std::fprintf(stderr, "write through a read pointer at offset %llu did not fault\n",
               (unsigned long long)target);
  return 3;
}

void expect_fault(Via via, size_t size, bool with_handler) {
  TempDir dir("readonly");
  const std::string path = dir.sub("store");
  const uint64_t key = 0xfeed;
  uint64_t off = make_store(path, size, key);
  ASSERT_NE(off, 0u);
  Shared<FaultReport> report;
  Children kids;
  pid_t pid = kids.spawn([&] {
    return write_through_read_pointer(path, off, size, via, with_handler ? report.get() : nullptr);
  });
  int status = kids.wait(pid, milliseconds(30000));
  if (with_handler) {
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42)
        << "expected the SIGSEGV handler to run; child " << describe_status(status);
    EXPECT_EQ(report->si_code.load(), SEGV_ACCERR)
        << "the fault should be a permission fault on a mapped page, not an unmapped address";
    EXPECT_EQ(report->addr.load(), report->expected.load())
        << "fault address is not the written byte";
  } else {
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV)
        << "expected death by SIGSEGV; child " << describe_status(status);
  }
  // Nothing landed: the block and the header are intact.
  auto s = Store::open(path, quiet());
  ASSERT_TRUE(s.ok()) << err(s);
  auto sess = (*s)->session();
  ASSERT_TRUE(sess.ok());
  auto r = stoa::internal::core_of(*sess)->read(off, size);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(check_pattern(*r, size, key), -1);
  auto rep = (*s)->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound());
  for (const auto& p : rep->problems) ADD_FAILURE() << p;
}

TEST(ReadOnlyView, WriteThroughViewPointerDiesBySigsegv) { expect_fault(Via::kView, 200, false); }
TEST(ReadOnlyView, WriteThroughReadPointerDiesBySigsegv) { expect_fault(Via::kRead, 200, false); }
TEST(ReadOnlyView, WriteThroughViewIsAPermissionFaultAtThatByte) {
  expect_fault(Via::kView, 3000, true);
}
TEST(ReadOnlyView, WriteThroughReadOfLargeBlockIsAPermissionFault) {
  expect_fault(Via::kRead, 300000, true);
}
TEST(ReadOnlyView, WriteToHeaderPageThroughViewFaults) { expect_fault(Via::kHeaderPage, 64, true); }

// Growth maps new parts of the file read-only too: a block far beyond the
// initial mapping, allocated by another process, faults the same way.
TEST(ReadOnlyView, GrownPartIsReadOnlyToo) {
  TempDir dir("readonly-grown");
  const std::string path = dir.sub("store");
  Options o = quiet();
  o.initial_size = 1 << 20;
  o.grow_chunk = 1 << 20;
  {
    auto s = Store::open(path, o);  // create small
    ASSERT_TRUE(s.ok());
  }
  Shared<FaultReport> report;
  Shared<std::atomic<uint64_t>> where;
  Children kids;
  // The grower: a 3 MiB block, beyond the 1 MiB the store started with.
  pid_t grower = kids.spawn([&] {
    auto s = Store::open(path, quiet());
    CHILD_CHECK(s.ok(), "open: {}", err(s));
    auto sess = (*s)->session();
    CHILD_CHECK(sess.ok(), "session: {}", err(sess));
    auto a = stoa::internal::core_of(*sess)->alloc(3 << 20);
    CHILD_CHECK(a.ok(), "alloc: {}", err(a));
    fill_pattern(stoa::internal::core_of(*sess)->write_ptr(*a), 3 << 20, 77);
    CHILD_CHECK(stoa::internal::core_of(*sess)->publish(*a).ok(), "publish");
    where->store(*a);
    return 0;
  });
  ASSERT_TRUE(exited_ok(kids.wait(grower, milliseconds(30000))));
  const uint64_t off = where->load();
  ASSERT_GT(off + (3 << 20), uint64_t(1) << 20);
  pid_t pid = kids.spawn(
      [&] { return write_through_read_pointer(path, off, 3 << 20, Via::kView, report.get()); });
  int status = kids.wait(pid, milliseconds(30000));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42) << describe_status(status);
  EXPECT_EQ(report->si_code.load(), SEGV_ACCERR);
  EXPECT_EQ(report->addr.load(), report->expected.load());
}

// The same property as a gtest death test ("fast" style: the statement runs
// in a fork of this single-threaded process and opens its own store).
TEST(ReadOnlyView, DeathTestWriteThroughView) {
  TempDir dir("readonly-death");
  const std::string path = dir.sub("store");
  uint64_t off = make_store(path, 100, 5);
  ASSERT_NE(off, 0u);
  EXPECT_EXIT(
      {
        auto s = Store::open(path, quiet());
        if (!s.ok()) ::_exit(2);
        auto sess = (*s)->session();
        if (!sess.ok()) ::_exit(3);
        auto r = stoa::internal::core_of(*sess)->read(off, 100);
        if (!r.ok()) ::_exit(4);
        default_segv();
        *const_cast<volatile char*>(*r) = 1;
        ::_exit(5);
      },
      ::testing::KilledBySignal(SIGSEGV), "");
}

// The writer path writes, and every read path sees it, in this process and
// in another one.
TEST(ReadOnlyView, WritePtrWritesAndViewSeesIt) {
  TempDir dir("readonly-write");
  const std::string path = dir.sub("store");
  auto s = Store::open(path, quiet());
  ASSERT_TRUE(s.ok()) << err(s);
  auto sess = (*s)->session();
  ASSERT_TRUE(sess.ok());
  SessionCore* c = stoa::internal::core_of(*sess);
  for (size_t size : {size_t(16), size_t(1000), size_t(4080), size_t(100000)}) {
    auto a = c->alloc(size);
    ASSERT_TRUE(a.ok()) << err(a);
    char* w = c->write_ptr(*a);
    const char* v = c->view(*a);
    EXPECT_NE(static_cast<const void*>(w), static_cast<const void*>(v))
        << "writer and reader pointers should be different mappings";
    fill_pattern(w, size, size);
    EXPECT_EQ(check_pattern(v, size, size), -1);
    auto r = c->read(*a, size);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, v);
    w[size - 1] = 'x';  // later writes show at once
    EXPECT_EQ(v[size - 1], 'x');
    w[size - 1] = char(size);
    ASSERT_TRUE(c->publish(*a).ok());
    Children kids;
    pid_t pid = kids.spawn([&] {
      auto s2 = Store::open(path, quiet());
      CHILD_CHECK(s2.ok(), "open: {}", err(s2));
      auto sess2 = (*s2)->session();
      CHILD_CHECK(sess2.ok(), "session: {}", err(sess2));
      auto r2 = stoa::internal::core_of(*sess2)->read(*a, size);
      CHILD_CHECK(r2.ok(), "read: {}", err(r2));
      std::vector<char> want(size);
      fill_pattern(want.data(), size, size);
      want[size - 1] = char(size);
      CHILD_CHECK(std::memcmp(*r2, want.data(), size) == 0,
                  "another process sees other bytes at {}", *a);
      return 0;
    });
    EXPECT_TRUE(exited_ok(kids.wait(pid, milliseconds(30000))));
  }
}

}  // namespace
}  // namespace stoa
