// session/layout.h — the lock file (`stoa.lock`), byte by byte.
//
//   offset 0                 LockHeader (one page)
//   offset 4096              SessionSlot[slot_count], 1 KiB each, cache-line aligned
//   after the slots          RecorderRing[slot_count], 2 KiB each
//
// The lock file holds what only matters while processes have the store open:
// who is attached, the current cycle, each session's pin, caches, purgatory
// and flight recorder. It is rebuilt from the data file when it is missing or
// foreign. Its bytes double as OFD lock targets (never read or written as
// data): byte kAttachByte (shared by every attached process; exclusive by
// the one opener that finds itself alone), byte kOpenByte (serialises opens
// and last closes), and byte kSlotLockBase + i (held exclusively by the
// process owning slot i — the kernel drops it when that process dies, which
// is how survivors know, whatever the pid namespace).
//
// Per-layer areas. The session layer owns the slot's identity fields and the
// heap cache (region is below it); the layers above own raw, aligned byte
// areas that they type through accessors in their own layout header
// (cycle::pin_of, cycle::purgatory_of, cycle::global_of, txn::txn_of), each of
// which static_asserts its struct's size equals the area's size:
//
//   area                          owner    offset  size
//   SessionSlot::pin_area         cycle         0     8   (cycle::PinWord)
//   SessionSlot identity          session      64    64
//   SessionSlot::purgatory_area   cycle       128   112   (cycle::Purgatory)
//   SessionSlot::cache            session     240   464   (region::HeapCache)
//   SessionSlot::txn_area         txn         704   128   (txn::TxnSlot)
//   LockHeader::cycle_area        cycle        64   528   (cycle::CycleGlobal)
#ifndef STOA_SESSION_LAYOUT_H_
#define STOA_SESSION_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "region/layout.h"

namespace stoa::session {

inline constexpr char kLockMagic[8] = {'S', 'T', 'O', 'A', 'L', 'C', 'K', '1'};
inline constexpr uint32_t kLockFormatVersion = 3;  // 3: txn area 128 bytes (snapshot bounds)
inline constexpr uint64_t kSlotsOffset = 4096;
inline constexpr uint32_t kRecorderEntries = 64;

inline constexpr off_t kAttachByte = 0;
inline constexpr off_t kOpenByte = 1;
inline constexpr off_t kSlotLockBase = off_t{1} << 20;

// The sizes of the areas owned by higher layers (see the table above).
inline constexpr size_t kPinAreaBytes = 8;
inline constexpr size_t kPurgatoryAreaBytes = 112;
inline constexpr size_t kTxnAreaBytes = 128;
inline constexpr size_t kCycleGlobalAreaBytes = 528;

enum class SlotState : uint32_t {
  kFree = 0,        // nobody; claimable by whoever holds its OFD byte
  kLive = 1,        // owned by a live session (its process holds the byte)
  kRecovering = 2,  // a survivor holds the byte and is reclaiming it
};

struct alignas(64) SessionSlot {
  // Cache line 0: the pin (cycle area), written by the owner on every operation.
  alignas(8) unsigned char pin_area[kPinAreaBytes];
  char pad0[64 - kPinAreaBytes];

  // Cache line 1: identity. state is written by whoever holds the slot's OFD
  // byte (release), read by anyone (acquire); the rest is written before
  // state becomes kLive and read after seeing it.
  std::atomic<uint32_t> state;
  uint32_t generation;  // bumped each time the slot is claimed (15 bits used)
  int64_t pid;          // in the owner's pid namespace; for people, never for liveness
  uint64_t tid;
  uint64_t started_ns;                    // CLOCK_REALTIME
  uint32_t flags;                         // kSlotParked
  uint32_t recover_from;                  // kRecovering: the dead owner's generation
  std::atomic<uint64_t> allocated_bytes;  // owner adds/subtracts (relaxed: stats only)
  std::atomic<uint64_t> recorder_next;    // owner increments (release); dumpers acquire
  uint64_t pad2;

  // The purgatory (cycle area): owner only; a recoverer after the owner died.
  alignas(8) unsigned char purgatory_area[kPurgatoryAreaBytes];
  region::HeapCache cache;  // owner only; a recoverer after the owner died
  // The commit record (txn area, txn/layout.h).
  alignas(64) unsigned char txn_area[kTxnAreaBytes];
};
inline constexpr uint32_t kSlotParked = 1;  // closed, purgatory not yet drained
static_assert(sizeof(SessionSlot) % 64 == 0);
static_assert(sizeof(SessionSlot) <= 1024);
static_assert(offsetof(SessionSlot, state) == 64 && offsetof(SessionSlot, pin_area) == 0 &&
              offsetof(SessionSlot, purgatory_area) == 128 && offsetof(SessionSlot, cache) == 240 &&
              offsetof(SessionSlot, txn_area) == 704);
static_assert(sizeof(SessionSlot) == 832);
static_assert(std::is_standard_layout_v<SessionSlot>);
inline constexpr uint64_t kSlotStride = 1024;

// Flight recorder: each session's last operations, newest at
// (recorder_next - 1) % kRecorderEntries. Written by the owner only.
struct RecorderEntry {
  uint64_t time_ns;  // CLOCK_REALTIME, coarse
  uint16_t kind;     // RecordKind
  uint16_t result;   // stoa::Code
  uint32_t generation;
  uint64_t arg;  // key hash, offset or size, per kind
  uint64_t arg2;
};
static_assert(sizeof(RecorderEntry) == 32);
struct RecorderRing {
  RecorderEntry entries[kRecorderEntries];
};
static_assert(sizeof(RecorderRing) == 2048);

// What recovery did since the lock file was made, in any process (relaxed
// increments: statistics, read by stats(); the kill suites assert that each
// branch is taken).
struct RecoveryCounters {
  std::atomic<uint64_t> rolled_forward;  // dead commits past the commit point, finished
  std::atomic<uint64_t> undone;          // dead commits before it, unlocked and dropped
  std::atomic<uint64_t> log_settled;     // dead log ranges rewritten (record or padding)
  std::atomic<uint64_t> nodes_unfrozen;  // frozen index nodes replaced by a helper
  std::atomic<uint64_t> heap_repaired;   // heap lists rebuilt after a holder died
  std::atomic<uint64_t> heap_rebuilt;    // whole-heap rebuilds by a lone opener
  // Not recovery, but counted the same way (txn/expiry.cc):
  std::atomic<uint64_t> snapshots_expired;  // transactions ended by their snapshot bound
  std::atomic<uint64_t> reserved;
};
static_assert(sizeof(RecoveryCounters) == 64);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

struct LockHeader {
  char magic[8];            // kLockMagic
  uint32_t format_version;  // kLockFormatVersion
  uint32_t slot_count;
  uint64_t layout_word;  // kLockLayoutWord
  uint64_t data_seed;    // the data file's seed: pairs this file with it
  uint64_t created_ns;
  uint64_t reserved[3];
  alignas(64) unsigned char cycle_area[kCycleGlobalAreaBytes];  // cycle::CycleGlobal
  alignas(64) std::atomic<uint64_t> recoveries;  // dead sessions reclaimed (relaxed: stats)
  // One past the highest slot ever claimed since the lock file was made:
  // scans of per-slot state stop here. Raised by CAS-max when claiming.
  std::atomic<uint32_t> high_slot;
  alignas(64) RecoveryCounters counters;
};
static_assert(sizeof(LockHeader) <= 4096);
static_assert(offsetof(LockHeader, cycle_area) == 64 && offsetof(LockHeader, recoveries) == 640 &&
              offsetof(LockHeader, high_slot) == 648 && offsetof(LockHeader, counters) == 704);
static_assert(std::is_standard_layout_v<LockHeader>);

inline constexpr uint64_t kLockLayoutWord =
    region::kRegionLayoutWord ^ (uint64_t{sizeof(SessionSlot)} << 3) ^
    (uint64_t{sizeof(LockHeader)} << 17) ^ (uint64_t{sizeof(RecorderEntry)} << 29) ^
    (uint64_t{kRecorderEntries} << 37) ^ (uint64_t{kPurgatoryAreaBytes} << 43) ^
    (uint64_t{kTxnAreaBytes} << 51) ^ (uint64_t{sizeof(RecoveryCounters)} << 57);

inline uint64_t lock_file_size(uint32_t slot_count) {
  return kSlotsOffset + uint64_t{slot_count} * kSlotStride +
         uint64_t{slot_count} * sizeof(RecorderRing);
}

}  // namespace stoa::session

#endif  // STOA_SESSION_LAYOUT_H_
