// session/session_table.cc — who is attached, who is alive.
//
// Liveness is never guessed from pids. Every attached process holds a shared
// OFD lock on kAttachByte; a session's process holds an exclusive OFD lock on
// its slot's byte. OFD locks belong to the open file description, so the
// kernel drops them exactly when the last descriptor of that description
// closes — at process death, whatever killed it. The kernel processes a
// dying thread's robust-futex list (marking shared mutexes owner-died) before
// it closes the process's files, so by the time a survivor can take a dead
// slot's byte, every robust mutex the dead process held is already marked.
//
// Open: take kOpenByte exclusively (waits for other opens and last closes),
// try kAttachByte exclusively. Success means no other process is attached:
// the opener validates or rebuilds the lock file and repairs the heap, then
// downgrades to shared. Otherwise it attaches shared and trusts the lock file
// the first opener made. Release kOpenByte. Last close: take kOpenByte, try
// to upgrade kAttachByte; success means no one else is attached.
//
// Slot claim: take the slot byte (non-blocking); a byte nobody holds means
// the slot is free or its owner is dead. A crash between taking the byte and
// marking the slot live leaves a kFree slot whose byte the kernel releases.
#include "session/session_table.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "util/clock.h"

namespace stoa::session {

namespace {

// An OFD lock request of `type` on the one byte `byte`.
struct flock one_byte(short type, off_t byte) {
  struct flock fl;
  std::memset(&fl, 0, sizeof(fl));
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  return fl;
}

int ofd_lock(int fd, short type, off_t byte, bool wait) {
  struct flock fl = one_byte(type, byte);
  int rc;
  do {
    rc = ::fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
  } while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : errno;
}

}  // namespace

Result<std::unique_ptr<SessionTable>> SessionTable::open_locked(Env* env, const std::string& path) {
  std::unique_ptr<SessionTable> t(new SessionTable());
  t->env_ = env;
  t->path_ = path;
  STOA_ASSIGN(t->fd_, env->open(path, O_RDWR | O_CREAT, 0644));
  STOA_TRY(t->lock_open());
  return t;
}

SessionTable::~SessionTable() {
  if (base_ != nullptr) ::munmap(base_, mapped_bytes_);
  if (fd_ >= 0) env_->close(fd_);  // drops every OFD lock this process held here
}

Status SessionTable::lock_open() {
  int err = ofd_lock(fd_, F_WRLCK, kOpenByte, true);
  if (err != 0) return errno_error(err, "lock", path_);
  return {};
}
void SessionTable::unlock_open() { ofd_lock(fd_, F_UNLCK, kOpenByte, false); }
bool SessionTable::try_attach_exclusive() {
  return ofd_lock(fd_, F_WRLCK, kAttachByte, false) == 0;
}
Status SessionTable::attach_shared() {
  int err = ofd_lock(fd_, F_RDLCK, kAttachByte, false);
  if (err != 0) return errno_error(err, "attach (shared lock)", path_);
  return {};
}

Status SessionTable::map(uint32_t slot_count) {
  slot_count_ = slot_count;
  mapped_bytes_ = lock_file_size(slot_count);
  void* p = ::mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) return errno_error(errno, "map", path_);
  base_ = static_cast<char*>(p);
  util::MutexLock g(claim_mu_);
  owned_.assign(slot_count, false);
  return {};
}

Status SessionTable::init_alone(uint32_t slot_count, uint64_t data_seed, bool* recreated) {
  *recreated = false;
  const uint64_t want = lock_file_size(slot_count);
  STOA_ASSIGN(uint64_t have, env_->file_size(fd_, path_));
  LockHeader h{};
  bool valid = false;
  if (have == want) {
    STOA_TRY(env_->pread_all(fd_, &h, sizeof(h), 0, path_));
    valid = std::memcmp(h.magic, kLockMagic, sizeof(kLockMagic)) == 0 &&
            h.format_version == kLockFormatVersion && h.layout_word == kLockLayoutWord &&
            h.slot_count == slot_count && h.data_seed == data_seed;
  }
  if (!valid) {
    // Nobody else is attached, so nothing of value lives here: rebuild it.
    if (::ftruncate(fd_, 0) != 0) return errno_error(errno, "truncate", path_);
    STOA_TRY(env_->allocate(fd_, 0, want, path_));
    *recreated = true;
  }
  STOA_TRY(map(slot_count));
  LockHeader* lh = header();
  if (!valid) {
    std::memset(base_, 0, want);
    std::memcpy(lh->magic, kLockMagic, sizeof(kLockMagic));
    lh->format_version = kLockFormatVersion;
    lh->slot_count = slot_count;
    lh->layout_word = kLockLayoutWord;
    lh->data_seed = data_seed;
    lh->created_ns = util::real_ns();
    // The cycle area stays zero here: its owner fills it (cycle::init_global,
    // called by the store while it is still the lone opener).
  }
  return {};
}

Status SessionTable::check_attached(uint32_t slot_count, uint64_t data_seed) {
  const uint64_t want = lock_file_size(slot_count);
  STOA_ASSIGN(uint64_t have, env_->file_size(fd_, path_));
  LockHeader h{};
  if (have != want) {
    return Error(Code::kCorrupt,
                 fmt::format("{}: lock file is {} bytes, expected {}", path_, have, want));
  }
  STOA_TRY(env_->pread_all(fd_, &h, sizeof(h), 0, path_));
  if (std::memcmp(h.magic, kLockMagic, sizeof(kLockMagic)) != 0) {
    return Error(Code::kCorrupt, fmt::format("{}: not a Stoa lock file (bad magic)", path_));
  }
  if (h.format_version != kLockFormatVersion || h.layout_word != kLockLayoutWord) {
    return Error(
        Code::kVersionMismatch,
        fmt::format("{}: lock file of another build (format {}, layout {:#x}; this build: "
                    "{}, {:#x})",
                    path_, h.format_version, h.layout_word, kLockFormatVersion, kLockLayoutWord));
  }
  if (h.slot_count != slot_count || h.data_seed != data_seed) {
    return Error(Code::kCorrupt, fmt::format("{}: lock file belongs to another data file", path_));
  }
  return map(slot_count);
}

bool SessionTable::try_take(uint32_t i) {
  return ofd_lock(fd_, F_WRLCK, kSlotLockBase + off_t(i), false) == 0;
}
void SessionTable::untake(uint32_t i) { ofd_lock(fd_, F_UNLCK, kSlotLockBase + off_t(i), false); }

void SessionTable::mark_owned(uint32_t i, bool owned) { owned_[i] = owned; }
bool SessionTable::owned_here(uint32_t i) const { return owned_[i]; }

namespace {
// True when a lock of another open file description covers `byte`.
bool probe(int fd, off_t byte) {
  struct flock fl = one_byte(F_WRLCK, byte);
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) return true;  // can't tell: assume held
  return fl.l_type != F_UNLCK;
}
}  // namespace

bool SessionTable::held_by_other(uint32_t i) const { return probe(fd_, kSlotLockBase + off_t(i)); }
bool SessionTable::others_attached() const { return probe(fd_, kAttachByte); }

void SessionTable::forget_after_fork() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace stoa::session
