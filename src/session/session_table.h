// session/session_table.h — the lock file: attach protocol, session slots,
// death detection by OFD locks, flight-recorder rings.
//
// Thread safety: all methods are thread-safe. Slot claiming and releasing
// within one process are serialised by a process-local mutex (OFD locks do
// not exclude threads sharing one open file description).
#ifndef STOA_SESSION_SESSION_TABLE_H_
#define STOA_SESSION_SESSION_TABLE_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "session/layout.h"
#include "stoa/env.h"
#include "stoa/result.h"
#include "util/mutex.h"

namespace stoa::session {

class SessionTable {
 public:
  // Opens (creating if needed) the lock file and takes the open lock (byte
  // kOpenByte), which serialises attach and last-close across processes.
  static Result<std::unique_ptr<SessionTable>> open_locked(Env* env, const std::string& path);
  ~SessionTable();

  // --- attach protocol (open lock held) ---------------------------------
  // Tries to become the only attached process (exclusive lock on
  // kAttachByte). True: nobody else has the store open.
  bool try_attach_exclusive();
  // Shares kAttachByte (downgrading an exclusive hold).
  Status attach_shared();
  void unlock_open();
  Status lock_open();
  // Alone only: validates the lock file for this data file; rebuilds it when
  // missing, foreign or of another layout. Sets *recreated when it did.
  Status init_alone(uint32_t slot_count, uint64_t data_seed, bool* recreated);
  // A recreated file's areas owned by higher layers are left zero (the
  // caller initialises them: cycle::init_global).
  // Not alone: the lock file must already be valid for this data file.
  Status check_attached(uint32_t slot_count, uint64_t data_seed);

  LockHeader* header() const { return reinterpret_cast<LockHeader*>(base_); }
  SessionSlot* slot(uint32_t i) const {
    return reinterpret_cast<SessionSlot*>(base_ + kSlotsOffset + uint64_t(i) * kSlotStride);
  }
  RecorderRing* ring(uint32_t i) const {
    return reinterpret_cast<RecorderRing*>(base_ + kSlotsOffset +
                                           uint64_t(slot_count_) * kSlotStride +
                                           uint64_t(i) * sizeof(RecorderRing));
  }
  uint32_t slot_count() const { return slot_count_; }
  const std::string& path() const { return path_; }

  // --- slots ----------------------------------------------------------
  // Takes the OFD lock of slot i if no live process holds it. On success the
  // caller owns the slot byte: the slot is free, or its owner is dead.
  bool try_take(uint32_t i);
  // Marks slot i owned by this process (after try_take).
  void mark_owned(uint32_t i, bool owned) REQUIRES(claim_mu_);
  bool owned_here(uint32_t i) const REQUIRES(claim_mu_);
  // Unlocks slot i's byte (after marking the slot kFree).
  void untake(uint32_t i);
  // True when another process has the store open (probes kAttachByte).
  bool others_attached() const;
  // True when some process holds slot i's byte (without taking it).
  bool held_by_other(uint32_t i) const;
  util::Mutex& claim_mutex() const RETURN_CAPABILITY(claim_mu_) { return claim_mu_; }

  // After fork, in the child: drop the inherited descriptor without touching
  // the locks (they belong to the parent's open file description).
  void forget_after_fork();

 private:
  SessionTable() = default;
  Status map(uint32_t slot_count);

  Env* env_ = nullptr;
  std::string path_;
  int fd_ = -1;
  char* base_ = nullptr;
  uint64_t mapped_bytes_ = 0;
  uint32_t slot_count_ = 0;
  mutable util::Mutex claim_mu_;
  std::vector<bool> owned_ GUARDED_BY(claim_mu_);
};

}  // namespace stoa::session

#endif  // STOA_SESSION_SESSION_TABLE_H_
