// The lock file (session/session_table.cc): open_locked creates it; a lone
// opener gets the attach byte exclusively, a second one does not; init_alone
// builds slot_count slots in a new file, keeps a valid one and rebuilds one
// of another data seed, slot count or with damaged magic; check_attached
// refuses another seed, slot count, magic or layout with a clear error;
// slot bytes: try_take/untake, held_by_other false for our own and for free
// slots, true for another open file description's. Across processes: a
// forked child that takes slot 3 makes it held_by_other and untakeable for
// the parent while it lives, and the kernel drops its lock when it is
// SIGKILLed, so the slot is free again after waitpid.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "session/layout.h"
#include "session/session_table.h"
#include "stoa/env.h"
#include "util/mutex.h"
#include "util/scope_exit.h"
#include "util/scratch_dir.h"

namespace stoa::session {
namespace {

constexpr uint32_t kSlots = 8;
constexpr uint64_t kSeed = 0x5eed0001;

class SessionTableTest : public ::testing::Test {
 protected:
  std::unique_ptr<SessionTable> open_table() {
    auto t = SessionTable::open_locked(env_, path_);
    EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().to_string());
    return t.ok() ? std::move(t).value() : nullptr;
  }

  // The first opener's whole attach: alone, init, share, release the open lock.
  std::unique_ptr<SessionTable> attach_first(uint32_t slots, uint64_t seed,
                                             bool* recreated = nullptr) {
    auto t = open_table();
    if (t == nullptr) return nullptr;
    EXPECT_TRUE(t->try_attach_exclusive());
    bool made = false;
    Status st = t->init_alone(slots, seed, &made);
    EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().to_string());
    if (recreated != nullptr) *recreated = made;
    st = t->attach_shared();
    EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().to_string());
    t->unlock_open();
    return t;
  }

  // A later opener (someone else attached): open lock taken, shared attach.
  std::unique_ptr<SessionTable> open_second() {
    auto t = open_table();
    if (t == nullptr) return nullptr;
    EXPECT_FALSE(t->try_attach_exclusive());  // the first one is attached
    Status st = t->attach_shared();
    EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().to_string());
    return t;
  }

  void write_at(uint64_t offset, const void* data, size_t len) {
    int fd = ::open(path_.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(::pwrite(fd, data, len, off_t(offset)), ssize_t(len));
    ::close(fd);
  }

  uint64_t bytes_on_disk() {
    struct stat s;
    EXPECT_EQ(::stat(path_.c_str(), &s), 0) << std::strerror(errno);
    return uint64_t(s.st_size);
  }

  Env* env_ = Env::posix();
  util::testing::ScratchDir scratch_{"session"};
  const std::string dir_ = scratch_.path();
  const std::string path_ = dir_ + "/stoa.lock";
};

TEST_F(SessionTableTest, OpenLockedCreatesTheLockFile) {
  ASSERT_FALSE(env_->exists(path_));
  auto t = open_table();
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(env_->exists(path_));
  EXPECT_EQ(t->path(), path_);
}

TEST_F(SessionTableTest, OpenLockedInAMissingDirectoryFails) {
  auto t = SessionTable::open_locked(env_, dir_ + "/no/such/dir/stoa.lock");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.code(), Code::kNotFound) << t.error().to_string();
}

TEST_F(SessionTableTest, TryAttachExclusiveSucceedsAlone) {
  auto t = open_table();
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->try_attach_exclusive());
  EXPECT_FALSE(t->others_attached());
}

TEST_F(SessionTableTest, TryAttachExclusiveFailsWhileAnotherIsAttached) {
  auto a = attach_first(kSlots, kSeed);
  ASSERT_NE(a, nullptr);
  auto b = open_second();  // asserts b cannot attach exclusively
  ASSERT_NE(b, nullptr);
  b->unlock_open();
  EXPECT_TRUE(a->others_attached());
  EXPECT_TRUE(b->others_attached());
  // Last close: a cannot upgrade while b is attached, and can once b is gone.
  ASSERT_TRUE(a->lock_open().ok());
  EXPECT_FALSE(a->try_attach_exclusive());
  a->unlock_open();
  b.reset();
  EXPECT_FALSE(a->others_attached());
  ASSERT_TRUE(a->lock_open().ok());
  EXPECT_TRUE(a->try_attach_exclusive());
  a->unlock_open();
}

TEST_F(SessionTableTest, InitAloneBuildsANewFile) {
  bool recreated = false;
  auto t = attach_first(kSlots, kSeed, &recreated);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(recreated);
  EXPECT_EQ(t->slot_count(), kSlots);
  EXPECT_EQ(bytes_on_disk(), lock_file_size(kSlots));
  const LockHeader* h = t->header();
  EXPECT_EQ(std::memcmp(h->magic, kLockMagic, sizeof(kLockMagic)), 0);
  EXPECT_EQ(h->format_version, kLockFormatVersion);
  EXPECT_EQ(h->slot_count, kSlots);
  EXPECT_EQ(h->layout_word, kLockLayoutWord);
  EXPECT_EQ(h->data_seed, kSeed);
  EXPECT_NE(h->created_ns, 0u);
  // The cycle layer's area is its own to set up (cycle::init_global): zero here.
  for (size_t b = 0; b < sizeof(h->cycle_area); b++) EXPECT_EQ(h->cycle_area[b], 0) << b;
  EXPECT_EQ(h->high_slot.load(), 0u);
  for (uint32_t i = 0; i < kSlots; i++) {
    EXPECT_EQ(t->slot(i)->state.load(), uint32_t(SlotState::kFree)) << i;
    EXPECT_EQ(t->slot(i)->generation, 0u) << i;
    EXPECT_EQ(reinterpret_cast<const char*>(t->slot(i)) - reinterpret_cast<const char*>(h),
              int64_t(kSlotsOffset + i * kSlotStride))
        << i;
  }
  // The rings follow the slots and end at the end of the file.
  EXPECT_EQ(reinterpret_cast<char*>(t->ring(kSlots - 1)) + sizeof(RecorderRing) -
                reinterpret_cast<char*>(t->header()),
            int64_t(lock_file_size(kSlots)));
  util::MutexLock g(t->claim_mutex());
  for (uint32_t i = 0; i < kSlots; i++) EXPECT_FALSE(t->owned_here(i)) << i;
  t->mark_owned(3, true);
  EXPECT_TRUE(t->owned_here(3));
  EXPECT_FALSE(t->owned_here(2));
}

TEST_F(SessionTableTest, InitAloneKeepsAValidFile) {
  {
    auto t = attach_first(kSlots, kSeed);
    ASSERT_NE(t, nullptr);
    t->slot(5)->pid = 4242;
  }
  bool recreated = true;
  auto t = attach_first(kSlots, kSeed, &recreated);
  ASSERT_NE(t, nullptr);
  EXPECT_FALSE(recreated);
  EXPECT_EQ(t->slot(5)->pid, 4242);
}

TEST_F(SessionTableTest, InitAloneRebuildsForAnotherDataSeed) {
  {
    auto t = attach_first(kSlots, kSeed);
    ASSERT_NE(t, nullptr);
    t->slot(5)->pid = 4242;
  }
  bool recreated = false;
  auto t = attach_first(kSlots, kSeed + 1, &recreated);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(recreated);
  EXPECT_EQ(t->header()->data_seed, kSeed + 1);
  EXPECT_EQ(t->slot(5)->pid, 0);  // nothing of the old file survives
}

TEST_F(SessionTableTest, InitAloneRebuildsForAnotherSlotCount) {
  { ASSERT_NE(attach_first(kSlots, kSeed), nullptr); }
  bool recreated = false;
  auto t = attach_first(2 * kSlots, kSeed, &recreated);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(recreated);
  EXPECT_EQ(t->header()->slot_count, 2 * kSlots);
  EXPECT_EQ(bytes_on_disk(), lock_file_size(2 * kSlots));
}

TEST_F(SessionTableTest, InitAloneRebuildsADamagedMagic) {
  {
    auto t = attach_first(kSlots, kSeed);
    ASSERT_NE(t, nullptr);
    t->slot(5)->pid = 4242;
  }
  write_at(0, "X", 1);
  bool recreated = false;
  auto t = attach_first(kSlots, kSeed, &recreated);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(recreated);
  EXPECT_EQ(std::memcmp(t->header()->magic, kLockMagic, sizeof(kLockMagic)), 0);
  EXPECT_EQ(t->slot(5)->pid, 0);
}

TEST_F(SessionTableTest, CheckAttachedAcceptsTheFirstOpenersFile) {
  auto a = attach_first(kSlots, kSeed);
  ASSERT_NE(a, nullptr);
  a->slot(2)->pid = 77;
  auto b = open_second();
  ASSERT_NE(b, nullptr);
  Status st = b->check_attached(kSlots, kSeed);
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  b->unlock_open();
  EXPECT_EQ(b->slot_count(), kSlots);
  EXPECT_EQ(b->slot(2)->pid, 77);  // the same shared bytes
  b->slot(6)->pid = 88;
  EXPECT_EQ(a->slot(6)->pid, 88);
}

TEST_F(SessionTableTest, CheckAttachedRefusesAnotherSeedOrSlotCount) {
  auto a = attach_first(kSlots, kSeed);
  ASSERT_NE(a, nullptr);
  auto b = open_second();
  ASSERT_NE(b, nullptr);
  Status st = b->check_attached(kSlots, kSeed + 1);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.error().to_string();
  EXPECT_NE(st.error().message().find("another data file"), std::string::npos)
      << st.error().message();
  EXPECT_NE(st.error().message().find(path_), std::string::npos) << st.error().message();

  st = b->check_attached(kSlots + 1, kSeed);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.error().to_string();
  EXPECT_NE(st.error().message().find("expected"), std::string::npos) << st.error().message();
  b->unlock_open();
}

TEST_F(SessionTableTest, CheckAttachedRefusesDamagedMagicAndAnotherLayout) {
  auto a = attach_first(kSlots, kSeed);
  ASSERT_NE(a, nullptr);
  auto b = open_second();
  ASSERT_NE(b, nullptr);
  const uint64_t other_layout = kLockLayoutWord ^ 1;
  write_at(offsetof(LockHeader, layout_word), &other_layout, sizeof(other_layout));
  Status st = b->check_attached(kSlots, kSeed);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kVersionMismatch) << st.error().to_string();
  EXPECT_NE(st.error().message().find("another build"), std::string::npos) << st.error().message();

  write_at(0, "X", 1);
  st = b->check_attached(kSlots, kSeed);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.error().to_string();
  EXPECT_NE(st.error().message().find("magic"), std::string::npos) << st.error().message();
  b->unlock_open();
}

TEST_F(SessionTableTest, TakeAndUntakeSlots) {
  auto a = attach_first(kSlots, kSeed);
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(a->held_by_other(1));  // free
  ASSERT_TRUE(a->try_take(1));
  EXPECT_FALSE(a->held_by_other(1));  // ours
  EXPECT_FALSE(a->held_by_other(2));  // still free

  // Another open file description (as another process has) sees it held.
  auto b = open_second();
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(b->check_attached(kSlots, kSeed).ok());
  b->unlock_open();
  EXPECT_TRUE(b->held_by_other(1));
  EXPECT_FALSE(b->try_take(1));
  ASSERT_TRUE(b->try_take(2));
  EXPECT_TRUE(a->held_by_other(2));
  EXPECT_FALSE(a->try_take(2));

  // Untaking frees the byte for the other.
  a->untake(1);
  EXPECT_FALSE(b->held_by_other(1));
  EXPECT_TRUE(b->try_take(1));
  EXPECT_TRUE(a->held_by_other(1));

  // Closing the table drops every byte it held.
  b.reset();
  EXPECT_FALSE(a->held_by_other(1));
  EXPECT_FALSE(a->held_by_other(2));
  EXPECT_TRUE(a->try_take(1));
  EXPECT_TRUE(a->try_take(2));
}

// The child's side of the cross-process test. Never returns: reports one
// byte through `fd` ('k' when it holds slot 3 and saw the parent's slot 2
// held, a letter naming the failed step otherwise) and waits to be killed.
[[noreturn]] void child_take_slot_3(SessionTable* inherited, const std::string& path, int fd) {
  ::alarm(60);  // in case the parent never kills it
  inherited->forget_after_fork();
  char c = 'k';
  auto t = SessionTable::open_locked(Env::posix(), path);
  if (!t.ok()) {
    c = 'o';
  } else if ((*t)->try_attach_exclusive()) {
    c = 'x';  // the parent is attached: exclusive must fail
  } else if (!(*t)->attach_shared().ok()) {
    c = 'a';
  } else if (!(*t)->check_attached(kSlots, kSeed).ok()) {
    c = 'c';
  } else {
    (*t)->unlock_open();
    if (!(*t)->held_by_other(2)) {
      c = 'p';  // the parent's slot, still held after forget_after_fork
    } else if (!(*t)->try_take(3)) {
      c = 't';
    }
  }
  if (::write(fd, &c, 1) != 1 || c != 'k') ::_exit(1);
  for (;;) ::pause();
}

TEST_F(SessionTableTest, AChildsSlotIsFreedByTheKernelWhenItDies) {
  auto a = attach_first(kSlots, kSeed);
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->try_take(2));

  int fds[2];
  ASSERT_EQ(::pipe(fds), 0) << std::strerror(errno);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    ::close(fds[0]);
    child_take_slot_3(a.get(), path_, fds[1]);
  }
  auto reap = util::scope_exit([&] {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  });
  ::close(fds[1]);
  auto close_read = util::scope_exit([&] { ::close(fds[0]); });

  struct pollfd p = {fds[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1) << "the child did not report";
  char c = 0;
  ASSERT_EQ(::read(fds[0], &c, 1), 1) << "the child died before reporting";
  ASSERT_EQ(c, 'k') << "the child failed at step '" << c << "'";

  // While the child lives, its slot is held by another, and not ours to take.
  EXPECT_TRUE(a->held_by_other(3));
  EXPECT_FALSE(a->try_take(3));
  EXPECT_TRUE(a->others_attached());
  EXPECT_FALSE(a->held_by_other(2));  // ours
  EXPECT_FALSE(a->held_by_other(4));  // nobody's

  ASSERT_EQ(::kill(pid, SIGKILL), 0) << std::strerror(errno);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid) << std::strerror(errno);
  pid = -1;
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  // The kernel dropped the dead child's locks: slot 3 is free again, and
  // nobody else is attached.
  EXPECT_FALSE(a->held_by_other(3));
  EXPECT_TRUE(a->try_take(3));
  EXPECT_FALSE(a->others_attached());
  ASSERT_TRUE(a->lock_open().ok());
  EXPECT_TRUE(a->try_attach_exclusive());
  a->unlock_open();
}

}  // namespace
}  // namespace stoa::session
