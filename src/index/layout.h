// index/layout.h — the ordered key index and version chains, byte by byte.
//
// The index header lives at a fixed place (the roots page), so an empty
// store needs no allocation. Nodes, key records and versions are heap blocks.
#ifndef STOA_INDEX_LAYOUT_H_
#define STOA_INDEX_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "region/layout.h"

namespace stoa::index {

using region::Offset;

inline constexpr uint32_t kFan = 64;    // entries per node
inline constexpr uint64_t kFrozen = 1;  // low bit of an inner node's child word
inline constexpr uint32_t kMaxDepth = 16;
inline constexpr uint64_t kIndexMagic = 0x3158444e49414f54ull;  // "TOAINDX1"

struct IndexHeader {  // the index's root (store/layout.h places it)
  uint64_t magic;     // kIndexMagic once initialised (zero page = empty index)
  // Root node, 0 when the tree is empty. Replaced by CAS (acq_rel); loaded
  // with acquire by readers, pairing with the release of the CAS.
  std::atomic<uint64_t> root;
  // Last commit timestamp handed out (fetch_add, seq_cst: see txn.cc).
  std::atomic<uint64_t> next_ts;
  // Every commit at or below it is fully installed: the snapshot readers
  // take (acquire), advanced by CAS-max (release) after installs.
  std::atomic<uint64_t> visible_ts;
  // No new snapshot may be older than this (versions below it may be
  // trimmed); raised by trimmers (seq_cst, Dekker with snapshot announcements).
  std::atomic<uint64_t> low_water;
  // Bumped by every commit and woken when waiters > 0 (Txn::retry sleeps
  // on it: a futex in the shared mapping).
  std::atomic<uint32_t> commit_futex;
  std::atomic<uint32_t> waiters;
  std::atomic<uint64_t> records;  // key records created (relaxed: stats)
  // Commits installed since the data file was made or rebuilt (relaxed
  // increments after install; on the line committers already write): the
  // clock of Options::max_snapshot_lag (txn/expiry.cc) and of stats.
  std::atomic<uint64_t> commits;
  uint64_t reserved[7];
};
static_assert(std::is_standard_layout_v<IndexHeader>);
static_assert(sizeof(IndexHeader) <= 1024 && offsetof(IndexHeader, commits) == 56);

enum class NodeKind : uint16_t { kLeaf = 1, kInner = 2 };

// A node never changes once linked into the tree, except the child words of
// an inner node, which writers swap by CAS (or freeze before replacing the
// node). Leaves hold key records; inner nodes hold children and, for i >= 1,
// the record whose key is the lowest key of child i.
struct Node {
  uint16_t kind;
  uint16_t count;
  uint32_t level;  // 0 for leaves
  uint64_t reserved;
  uint64_t prefix[kFan];            // first 8 key bytes, big-endian, zero padded
  std::atomic<uint64_t> ptr[kFan];  // leaf: record; inner: child | kFrozen
  uint64_t sep[kFan];               // inner only: separator records (sep[0] unused)
};
inline constexpr size_t kLeafBytes = offsetof(Node, sep);
inline constexpr size_t kInnerBytes = sizeof(Node);
static_assert(std::is_standard_layout_v<Node>);

// One key. Never removed from the index in this version (a delete installs
// a tombstone version), so inner separators may refer to it.
struct KeyRecord {
  // Newest version, 0 when none. Stored (release) by the lock holder at
  // install; loaded (acquire) by readers.
  std::atomic<uint64_t> head;
  // 0, or the committing session: ((slot + 1) << 32) | generation. CAS by
  // the committer (acquire) and cleared (release) after install.
  std::atomic<uint64_t> lock;
  uint32_t key_len;
  uint32_t flags;
  // key_len key bytes follow.
};
static_assert(sizeof(KeyRecord) == 24);

inline constexpr uint64_t kTombstone = uint64_t{1} << 63;
// One committed value of a key. Immutable once linked, except `next`, which
// the lock holder cuts when it trims versions no snapshot can read.
struct Version {
  uint64_t ts;                 // commit timestamp
  std::atomic<uint64_t> next;  // older version, 0 when none
  uint64_t len;                // value length, | kTombstone for a delete
  uint64_t blob;               // 0: value follows; else offset of the value's own block
  // len value bytes follow when blob == 0.
};
static_assert(sizeof(Version) == 32);
inline constexpr size_t kInlineValueMax = 2048;  // larger values live in their own block

}  // namespace stoa::index

#endif  // STOA_INDEX_LAYOUT_H_
