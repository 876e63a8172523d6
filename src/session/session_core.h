// session/session_core.h — one session's handle on the substrate: the API the
// index, transaction, log and messaging layers stand on.
//
// A SessionCore owns one slot of the session table. It is used by one thread
// at a time (no internal locking); many SessionCores of one or many
// processes run concurrently. Offsets name block bodies in the data file.
//
// Memory states of a block (region/layout.h):
//   alloc()   -> kOwned by this session: private, reclaimed if the session dies
//   publish() -> kLive: part of a shared structure, survives the session
//   retire()  -> kRetired: unlinked; freed once no pinned reader can see it
//   free()    -> back to the allocator at once (only if no reader can see it)
//
// Reads: view() returns a pointer into the read-only view. Writing through
// it faults (SIGSEGV) by design; writers use write_ptr(). A pointer obtained
// while pinned stays valid until unpin() if the block is retired meanwhile.
#ifndef STOA_SESSION_SESSION_CORE_H_
#define STOA_SESSION_SESSION_CORE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cycle/cycle.h"
#include "region/heap.h"
#include "region/layout.h"
#include "session/layout.h"
#include "stoa/result.h"

namespace stoa::session {
class SessionTable;
}  // namespace stoa::session

namespace stoa::internal {

using region::Offset;
class SessionCore;

// What only the open store can do for a session; implemented by the store
// folder (StoreImpl). Thread safety: both methods are thread-safe.
class SessionHost {
 public:
  // Probes the given slots (the blockers of a cycle advance) and reclaims
  // the dead ones.
  virtual void reap_slots(const std::vector<uint32_t>& slots) = 0;
  // Session::close: returns the session's cache and slot (store_impl.cc).
  virtual Status close_session(SessionCore* core) = 0;
  // The application closes `core` (Session::close, not the store's own
  // sessions): work the store does in the closing thread first (store_impl.cc).
  virtual void user_closing(SessionCore* core) = 0;

 protected:
  ~SessionHost() = default;
};

// The layers a session works through, filled by the store folder; each
// outlives every session of the store.
struct SessionDeps {
  region::Region* region;
  region::Heap* heap;
  session::SessionTable* table;
  cycle::CycleManager* cycles;
  SessionHost* host;
};

// What a flight-recorder entry records.
enum class RecordKind : uint16_t {
  kNone = 0,
  kOpen,  // arg = pid
  kClose,
  kAlloc,    // arg = offset, arg2 = size
  kFree,     // arg = offset
  kPublish,  // arg = offset
  kRetire,   // arg = offset; arg2 = blocks retired together (retire_all), 0 for one
  kPin,      // arg = cycle
  kAdvance,  // arg = new cycle
  kReclaim,  // arg = blocks freed from purgatory
  kRecover,  // arg = dead slot, arg2 = its generation
  kCorrupt,  // arg = offset where corruption was seen
  kUser,     // arg, arg2 = caller's
};
const char* record_kind_name(RecordKind kind);

class SessionCore {
 public:
  // Closing happens through SessionHost::close_session (Session::close).
  SessionCore(const SessionDeps& deps, uint32_t slot, uint32_t generation);
  ~SessionCore();
  SessionCore(const SessionCore&) = delete;
  SessionCore& operator=(const SessionCore&) = delete;

  uint32_t slot() const { return slot_; }
  uint32_t generation() const { return generation_; }
  SessionHost* host() const { return deps_.host; }
  bool closed() const { return closed_; }

  // --- allocation (region layer) -------------------------------------
  // A block of at least `size` bytes (1 B .. max store size), kOwned by this
  // session. Errors: kInvalidArgument (0 or absurd size), kFull (the store
  // reached max_size; frees make room again), kIo, kClosed.
  Result<Offset> alloc(size_t size);
  // kOwned(this) -> kLive. Errors: kInvalidArgument (not a block, or not
  // owned by this session), kCorrupt (guard broken), kClosed.
  Status publish(Offset body);
  // Frees at once. The block must be kOwned by this session or kLive, and no
  // other session may be able to reach it. Errors as publish; a second free
  // of the same block is kInvalidArgument ("double free"), never a crash.
  Status free(Offset body);
  // kLive or kOwned(this) -> kRetired, into this session's purgatory; freed
  // when every session pinned at the time has unpinned. Errors as publish.
  Status retire(Offset body);
  // retire() without the automatic collect, for a caller holding a lock
  // that the collect's reaping of dead sessions may take (a mailbox's);
  // it calls collect_if_due() once it holds none.
  Status retire_deferred(Offset body);
  void collect_if_due();
  // retire() of each block, with one recorder entry for them all (arg: the
  // first, arg2: how many), so a bulk unlink does not flush the ring of
  // what came before it. Returns the first error; the others are retired.
  Status retire_all(const std::vector<Offset>& bodies);
  // Usable bytes of a block. Errors as publish.
  Result<size_t> usable_size(Offset body) const;

  // Read pointer to [body, body+len) in the read-only view, mapping newly
  // grown parts of the file first. Errors: kCorrupt when the range is not
  // inside the file.
  Result<const char*> read(Offset body, size_t len);
  // Unchecked translations for hot paths; the range must be mapped (any
  // offset this process allocated, or obtained after read()).
  const char* view(Offset off) const;
  char* write_ptr(Offset off) const;

  // --- cycle locking -------------------------------------------------
  // Pins the current cycle (nestable; only the outermost pin announces).
  // Wait-free: no syscall, no lock.
  void pin() {
    if (pin_depth_++ == 0) cycles_->pin(&cycle::pin_of(*slot_ptr_));
  }
  void unpin() {
    if (--pin_depth_ == 0) cycles_->unpin(&cycle::pin_of(*slot_ptr_));
  }
  bool pinned() const { return pin_depth_ > 0; }
  class PinGuard {
   public:
    explicit PinGuard(SessionCore& s) : s_(s) { s_.pin(); }
    ~PinGuard() { s_.unpin(); }
    PinGuard(const PinGuard&) = delete;
    PinGuard& operator=(const PinGuard&) = delete;

   private:
    SessionCore& s_;
  };
  // Tries to advance the cycle and frees this session's purgatory that no
  // pin can still see. Returns the number of blocks freed. (`automatic`:
  // called from the write path; its barriers are rate-limited.)
  Result<uint64_t> collect(bool automatic = false);

  // --- flight recorder -----------------------------------------------
  void record(RecordKind kind, Code result, uint64_t arg = 0, uint64_t arg2 = 0);

  // Layer internals.
  session::SessionSlot* slot_ptr() const { return slot_ptr_; }
  bool in_txn = false;  // one transaction at a time (txn/txn.cc)
  region::Owner owner() const {
    return region::Owner{slot_, generation_, &slot_ptr_->cache, &slot_ptr_->allocated_bytes};
  }

 private:
  friend class StoreImpl;
  Status retire_one(Offset body, bool recorded, bool may_collect);
  SessionDeps deps_;
  const cycle::CycleManager* cycles_;  // cached: pin() is the hot path
  session::SessionSlot* slot_ptr_;
  uint32_t slot_;
  uint32_t generation_;
  uint32_t pin_depth_ = 0;
  uint32_t ops_since_collect_ = 0;
  bool closed_ = false;
};

// One dumped flight-recorder ring.
struct RecorderDump {
  uint32_t slot = 0;
  uint32_t generation = 0;
  int64_t pid = 0;
  std::string state;  // "free", "live", "dead", "recovering"
  struct Entry {
    uint64_t time_ns;
    std::string kind;
    std::string result;
    uint32_t generation;
    uint64_t arg;
    uint64_t arg2;
  };
  std::vector<Entry> entries;  // oldest first
};

}  // namespace stoa::internal

#endif  // STOA_SESSION_SESSION_CORE_H_
