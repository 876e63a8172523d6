// log/layout.h — the write-ahead log and checkpoints, byte by byte
// (docs/format.md says the same in prose), and the log's shared state in the
// data file's roots page.
//
// Log positions (LSNs) are byte offsets in one endless stream, stored in
// segment files `log/<16 hex digits of the first LSN>.log` of a fixed size
// (LogHeader::segment_size), so LSN x lives in segment x / size at offset
// x % size. A record may span segments. A commit's timestamp is the LSN just
// past its record, so log order is commit order.
//
// Checkpoints are files `log/ckpt-<16 hex digits of C>.stoa`: every live key
// with its value as of timestamp C, in key order, in checksummed blocks. The
// newest complete one plus the log from C on is the whole store.
#ifndef STOA_LOG_LAYOUT_H_
#define STOA_LOG_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "region/layout.h"

namespace stoa::log {

// ---------------------------------------------------------------------------
// On disk: a log record. 8-byte aligned; `len` covers header, body and
// padding. `checksum` is XXH3-64 (seeded with the store's seed) of the
// header with checksum = 0, then of the body (commit records only).
inline constexpr uint32_t kRecordMagic = 0x524c5453;  // "STLR"
enum class RecordType : uint16_t {
  kCommit = 1,   // body: `count` ops
  kPadding = 2,  // a reservation that did not commit; body unused
};
struct RecordHeader {
  uint32_t magic;
  uint16_t type;
  uint16_t flags;
  uint64_t lsn;     // where the record starts; must equal its position
  uint64_t len;     // total bytes, a multiple of 8, >= sizeof(RecordHeader)
  uint64_t synced;  // every LSN below this was on disk before this was written
  uint32_t count;   // ops in the body
  uint32_t reserved;
  uint64_t checksum;
};
static_assert(sizeof(RecordHeader) == 48);
static_assert(std::is_standard_layout_v<RecordHeader>);

// The kind of an op: what replay does with it (log/apply.h maps each kind
// to the applier of the layer that owns it). Stored in OpHeader::kind, the
// word that held the delete flag (bit 0) before kinds: put and delete keep
// their bytes. A later layer adds a kind here, raises kOpKindCount and
// registers an applier; a kind this build does not know is kCorrupt.
enum class OpKind : uint32_t {
  kPut = 0,     // value: the key's new value
  kDelete = 1,  // no value bytes (val_len written 0, ignored when read)
};
inline constexpr uint32_t kOpKindCount = 2;  // kinds this build decodes: [0, kOpKindCount)

// One op in a commit record's body, followed by key_len key bytes and
// val_len value bytes (none for a delete).
struct OpHeader {
  uint32_t key_len;
  uint32_t kind;  // an OpKind
  uint64_t val_len;
};
static_assert(sizeof(OpHeader) == 16);

inline constexpr uint64_t align8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

// ---------------------------------------------------------------------------
// On disk: a checkpoint file. Header, then blocks, then a footer.
inline constexpr char kCheckpointMagic[8] = {'S', 'T', 'O', 'A', 'C', 'K', 'P', '1'};
struct CheckpointHeader {
  char magic[8];
  uint32_t format_version;  // kCheckpointFormat
  uint32_t reserved0;
  uint64_t ts;        // every commit at or below it, none above
  uint64_t seed;      // the store's seed (keys the checksums)
  uint64_t max_size;  // data-file parameters of the store it came from
  uint64_t grow_chunk;
  uint32_t max_sessions;
  uint32_t reserved1;
  uint64_t segment_size;  // of the log that continues it
  uint64_t checksum;      // XXH3-64 of the bytes before this field
};
static_assert(sizeof(CheckpointHeader) == 72);
inline constexpr uint32_t kCheckpointFormat = 1;

// A block: this header, then `count` entries (u32 key_len, u32 pad, u64
// val_len, key, value; each entry 8-byte aligned), `bytes` in all.
inline constexpr uint32_t kBlockMagic = 0x4b4c4243;  // "CBLK"
struct CheckpointBlock {
  uint32_t magic;
  uint32_t count;
  uint64_t bytes;     // body bytes after this header
  uint64_t checksum;  // XXH3-64 of the body, seeded with seed ^ block index
  uint64_t index;     // 0, 1, 2, ...
};
static_assert(sizeof(CheckpointBlock) == 32);

inline constexpr uint32_t kFooterMagic = 0x444e4543;  // "CEND"
struct CheckpointFooter {
  uint32_t magic;
  uint32_t reserved;
  uint64_t blocks;
  uint64_t keys;
  uint64_t ts;        // repeats the header's
  uint64_t checksum;  // XXH3-64 of the bytes before this field
};
static_assert(sizeof(CheckpointFooter) == 40);

// ---------------------------------------------------------------------------
// In the shared mapping: the log's state, the log's root in the roots page
// (store/layout.h places it). Commit timestamps (the reservation tail) are
// index::IndexHeader::next_ts.
inline constexpr uint64_t kLogMagic = 0x31474f4c414f5453ull;  // "STOALOG1"

struct LogHeader {
  uint64_t magic;         // kLogMagic once initialised
  uint64_t segment_size;  // fixed at creation
  // Boot of the machine whose page cache holds this file's current contents
  // (hash of /proc/sys/kernel/random/boot_id): a lone opener that finds
  // another boot knows the pages may be torn and rebuilds (recovery.cc).
  uint64_t boot_id;
  uint64_t reserved0;
  // Segments exist (created, allocated, directory synced) up to here.
  // Raised under reserve_mu; read under it.
  std::atomic<uint64_t> allocated_end;
  // Every commit at or below it is on disk (fdatasync done). Raised under
  // flush_mu (release); read with acquire by waiters and stats.
  std::atomic<uint64_t> synced;
  // 0, or the LSN from which the log cannot be trusted in this run (a
  // failed write or fdatasync): no commit at or past it is acknowledged and
  // none may start; the next lone open repairs with a checkpoint. seq_cst.
  std::atomic<uint64_t> failed_at;
  // The last completed checkpoint (ckpt_mu; relaxed readers: triggers, stats).
  std::atomic<uint64_t> checkpoint_ts;
  std::atomic<uint64_t> checkpoint_bytes;  // its file size (ckpt_mu)
  // Group commit: set by a committer that wants a flush (exchange), cleared
  // by the flusher before it flushes; a futex word flushers sleep on.
  std::atomic<uint32_t> flush_request;
  std::atomic<uint32_t> ckpt_request;  // the same for checkpointers
  // The slot holding reserve_mu, written under it (repair after its death).
  uint32_t reserve_slot;
  // Bumped (release) after every sync attempt; committers waiting for the
  // running fdatasync sleep on it (a futex) instead of queueing on flush_mu.
  std::atomic<uint32_t> sync_seq;
  uint64_t reserved[4];
  alignas(64) util::ShmMutex reserve_mu;  // LSN reservation, segment creation
  alignas(64) util::ShmMutex flush_mu;    // one fdatasync at a time; `synced`
  alignas(64) util::ShmMutex ckpt_mu;     // one checkpoint at a time
};
static_assert(std::is_standard_layout_v<LogHeader>);
static_assert(offsetof(LogHeader, allocated_end) == 32 && offsetof(LogHeader, sync_seq) == 84 &&
              offsetof(LogHeader, reserve_mu) == 128 && offsetof(LogHeader, flush_mu) == 192 &&
              offsetof(LogHeader, ckpt_mu) == 256);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// Clean-shutdown sidecar `stoa.sum`: written by the last closer after the
// data file was synced; XXH3-64 of each 1 MiB chunk of the data file. A lone
// opener that finds it valid and matching trusts the data file whatever the
// boot; it is removed (durably) before the data file changes again.
inline constexpr char kSumMagic[8] = {'S', 'T', 'O', 'A', 'S', 'U', 'M', '1'};
inline constexpr uint64_t kSumChunk = uint64_t{1} << 20;
struct SumHeader {
  char magic[8];
  uint64_t file_size;  // of the data file
  uint64_t chunks;     // u64 hashes that follow
  uint64_t end_ts;     // last commit (the log is synced to here)
  uint64_t checksum;   // XXH3-64 of the header before this field and the hashes
};
static_assert(sizeof(SumHeader) == 40);

}  // namespace stoa::log

#endif  // STOA_LOG_LAYOUT_H_
