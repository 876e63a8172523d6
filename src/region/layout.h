// region/layout.h — the data file, byte by byte (docs/format.md says the same
// in prose). Everything here lives in the shared mapping: standard layout,
// offsets instead of pointers, sizes and lock-freedom asserted at compile time.
//
//   offset 0        FileHeader      static after creation, checksummed
//   offset 4096     HeapMeta        allocator roots, guarded by its locks
//   offset 8192     roots page      fixed roots of the upper layers (index/layout.h)
//   offset 12288... heap            page runs, back to back, to file_size
//
// A page run starts with a RunHeader whose first word is the run's commit
// point: kind, size class, page count and a keyed guard in one 64-bit store.
// Walking the heap means hopping from run to run by page count. A free run
// also carries a footer in its last 16 bytes so that a run freed after it can
// find it and coalesce. A slab run holds blocks of one size class; a large
// run holds one block. Every block starts with a 16-byte BlockHeader: a tag
// word (state, owning session slot and generation, keyed guard) and a link
// word (next block in whichever list holds it). User data starts 16 bytes in.
#ifndef STOA_REGION_LAYOUT_H_
#define STOA_REGION_LAYOUT_H_

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "util/shm_mutex.h"

namespace stoa::region {

using util::ShmMutex;  // robust, process-shared; the holder of a dead one repairs

using Offset = uint64_t;  // byte offset in the data file; 0 means "none"

inline constexpr uint32_t kPageSize = 4096;
// 2: log header in the roots page; 3: the layout word folds every data-file
// struct (store/layout.h); 4: checksummed index blocks (index/layout.h);
// 5: separators are records of their own, deleted keys leave the index;
// 6: the messaging root in the roots page (store/layout.h).
inline constexpr uint32_t kFormatVersion = 6;
inline constexpr char kDataMagic[8] = {'S', 'T', 'O', 'A', 'D', 'A', 'T', '1'};
inline constexpr uint64_t kHeapMetaOffset = kPageSize;
// One page of fixed roots for the layers above the heap (the index header,
// later the log and messaging roots): zero at creation, no allocation needed.
inline constexpr uint64_t kRootsOffset = 2 * kPageSize;
inline constexpr uint64_t kHeapStart = 3 * kPageSize;
inline constexpr uint64_t kMinMaxSize = uint64_t{1} << 20;
inline constexpr uint64_t kMaxMaxSize = uint64_t{1} << 44;  // 16 TiB of address space

// ---------------------------------------------------------------------------
// Size classes. A block's size includes its 16-byte header.
inline constexpr uint32_t kBlockHeaderSize = 16;
inline constexpr uint32_t kNumClasses = 27;
inline constexpr uint32_t kClassSize[kNumClasses] = {
    32,  48,  64,  80,  96,   112,  128,  160,  192,  224,  256,  320,  384, 448,
    512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096};
inline constexpr uint32_t kMaxSmallBody = 4096 - kBlockHeaderSize;
inline constexpr uint32_t kSlabPages = 16;      // 64 KiB slabs
inline constexpr uint32_t kRunHeaderSize = 64;  // blocks start 64 bytes into a run
inline constexpr uint32_t kLargeClass = 63;     // "class" of a large run
inline constexpr uint32_t kNumBins = 65;        // free runs of 1..64 pages, then >64

// ---------------------------------------------------------------------------
// Run header word: [kind:4][class:6][npages:30][guard:24]. Written with one
// atomic store, so a crash leaves either the old run or the new one.
enum class RunKind : uint8_t { kInvalid = 0, kFree = 1, kSlab = 2, kLarge = 3 };

struct RunHeader {
  std::atomic<uint64_t> word;  // commit point; page lock
  uint64_t bin_next;           // free runs: next in bin (page lock; rebuilt on repair)
  uint64_t bin_prev;           // free runs: prev in bin (page lock; rebuilt on repair)
  uint64_t reserved[5];
};
static_assert(sizeof(RunHeader) == kRunHeaderSize);
static_assert(std::is_standard_layout_v<RunHeader>);

// Last 16 bytes of a free run: where it starts, guarded.
struct RunFooter {
  uint64_t start;
  uint64_t guard;  // keyed hash of (start, footer position)
};
static_assert(sizeof(RunFooter) == 16);

// ---------------------------------------------------------------------------
// Block tag word: [state:3][class:6][slot:14][gen:9][guard:32]. All
// transitions are single atomic stores or CASes by the block's owner, or by
// the holder of the lock of the list that holds it (see heap.cc). The guard
// is a keyed hash of the block's offset and the upper 32 bits.
enum class BlockState : uint8_t {
  kInvalid = 0,
  kFree = 1,     // in a central free list (class lock)
  kCached = 2,   // in session (slot, gen)'s cache
  kOwned = 3,    // allocated by session (slot, gen), not yet published
  kLive = 4,     // published into a shared structure; no owner
  kRetired = 5,  // unlinked; in session (slot, gen)'s purgatory
};
inline constexpr uint32_t kMaxSlots = (1u << 14) - 1;
inline constexpr uint32_t kGenMask = (1u << 9) - 1;

struct BlockHeader {
  std::atomic<uint64_t> tag;   // see above; the owner, or the lock of the list holding it
  std::atomic<uint64_t> link;  // next block in the list that holds it (same guard as tag)
};
static_assert(sizeof(BlockHeader) == kBlockHeaderSize);
static_assert(std::is_standard_layout_v<BlockHeader>);

// Per-session allocator cache, one list per size class. Lives in the
// session's slot of the lock file; written by the owning session only (a
// recoverer after the owner died finds its blocks by their tags instead).
struct HeapCache {
  struct List {
    uint64_t head;   // first CACHED block (offset of its header)
    uint32_t count;  // blocks in the list
    uint32_t pad;
  };
  List lists[kNumClasses];
};

struct alignas(64) ClassMeta {
  ShmMutex lock;  // guards head and count
  uint64_t head;  // first FREE block of this class
  // Blocks in the list. Changed under `lock`; atomic only so that stats
  // may read it without the lock (relaxed, approximate).
  std::atomic<uint64_t> count;
  std::atomic<uint64_t> slabs;  // slabs carved for this class (relaxed: stats only)
};
static_assert(sizeof(ClassMeta) == 64);

struct HeapMeta {
  uint64_t magic;  // kHeapMetaMagic
  uint64_t clean;  // 1 when the last closer left everything tidy
  // Bytes the data file has, published after the file was extended. Written
  // under the page lock with release; read with acquire by any process before
  // mapping up to it.
  std::atomic<uint64_t> file_size;
  std::atomic<uint64_t> free_pages;  // page lock (atomic for lock-free stats reads)
  uint64_t reserved[4];
  alignas(64) ShmMutex page_lock;  // guards runs, bins, free_pages, growth
  uint64_t bins[kNumBins];         // heads of free-run lists (page lock)
  ClassMeta classes[kNumClasses];
};
inline constexpr uint64_t kHeapMetaMagic = 0x4154454d50414548ull;  // "HEAPMETA"
static_assert(sizeof(HeapMeta) <= kPageSize);
static_assert(offsetof(HeapMeta, file_size) == 16 && offsetof(HeapMeta, page_lock) == 64 &&
              offsetof(HeapMeta, bins) == 104 && offsetof(HeapMeta, classes) == 640);
static_assert(std::is_standard_layout_v<HeapMeta>);

// ---------------------------------------------------------------------------
// The first page. Static after creation and covered by `checksum`.
struct FileHeader {
  char magic[8];            // kDataMagic
  uint32_t format_version;  // kFormatVersion
  uint32_t page_size;       // kPageSize
  uint64_t layout_word;     // kLayoutWord of the build that made it
  uint64_t max_size;        // the file never grows past this
  uint64_t grow_chunk;      // growth granule
  uint64_t created_ns;      // CLOCK_REALTIME at creation
  uint64_t seed;            // keys the guard hashes of this store
  uint32_t max_sessions;    // session-table slots
  uint32_t durability;      // Durability chosen at creation
  uint64_t reserved[8];
  uint64_t checksum;  // XXH3-64 of every byte before this field
};
static_assert(sizeof(FileHeader) == 136);
static_assert(offsetof(FileHeader, layout_word) == 16 && offsetof(FileHeader, max_size) == 24 &&
              offsetof(FileHeader, seed) == 48 && offsetof(FileHeader, checksum) == 128);
static_assert(std::is_standard_layout_v<FileHeader>);

static_assert(std::atomic<uint64_t>::is_always_lock_free);

// Encodes the sizes and alignments of the region's shared structs. The store
// folds the layers above in (kDataLayoutWord, store/layout.h), writes that
// word at creation and checks it at open, so that a build with another
// layout refuses the file (kVersionMismatch) instead of misreading it. The
// lock-file structs have their own word (session/layout.h).
inline constexpr uint64_t kRegionLayoutWord =
    (uint64_t{sizeof(FileHeader)} << 0) ^ (uint64_t{sizeof(HeapMeta)} << 12) ^
    (uint64_t{sizeof(RunHeader)} << 24) ^ (uint64_t{sizeof(BlockHeader)} << 32) ^
    (uint64_t{alignof(HeapMeta)} << 40) ^ (uint64_t{sizeof(pthread_mutex_t)} << 46) ^
    (uint64_t{kNumClasses} << 54) ^ (uint64_t{kPageSize >> 10} << 60);

}  // namespace stoa::region

#endif  // STOA_REGION_LAYOUT_H_
