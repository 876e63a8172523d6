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
  // Key records in the leaves: created minus removed (relaxed: stats; a
  // writer killed between its CAS and the count leaves it off by its batch).
  std::atomic<uint64_t> records;
  // Commits installed since the data file was made or rebuilt (relaxed
  // increments after install; on the line committers already write): the
  // clock of Options::max_snapshot_lag (txn/expiry.cc) and of stats.
  std::atomic<uint64_t> commits;
  // Records removed from the index (deleted keys no snapshot can read;
  // relaxed increments after the unlinking CAS: stats).
  std::atomic<uint64_t> removed;
  uint64_t reserved[6];
};
static_assert(std::is_standard_layout_v<IndexHeader>);
static_assert(sizeof(IndexHeader) <= 1024 && offsetof(IndexHeader, commits) == 56);

enum class NodeKind : uint16_t { kLeaf = 1, kInner = 2 };

// A node never changes once linked into the tree, except the child words of
// an inner node, which writers swap by CAS (or freeze before replacing the
// node). Leaves hold key records; inner nodes hold children and, for i >= 1,
// a separator: a record of its own (lock kSeparator, no versions) holding a
// key k with every key of child i-1 < k <= every key of child i. Separators
// are copies, never a leaf's record, so a key's record can leave the index
// while its key still routes lookups.
struct Node {
  uint16_t kind;
  uint16_t count;
  uint32_t level;  // 0 for leaves
  // Both set before the node is published (Btree::node_check, node_sum).
  // check covers kind, count, level and the node's own offset, and every
  // walk checks it (Btree::shape_ok): a changed header byte, or a node
  // image at another offset, is damage, not a shorter node. sum covers the
  // used entries (leaf: prefix and ptr; inner: prefix and sep from 1, not
  // the child words, which change by CAS): checked when a lookup misses,
  // before a writer copies the node, and by verify.
  uint32_t check;
  uint32_t sum;
  uint64_t prefix[kFan];            // first 8 key bytes, big-endian, zero padded
  std::atomic<uint64_t> ptr[kFan];  // leaf: record; inner: child | kFrozen
  uint64_t sep[kFan];               // inner only: separator records (sep[0] unused)
};
inline constexpr size_t kLeafBytes = offsetof(Node, sep);
inline constexpr size_t kInnerBytes = sizeof(Node);
static_assert(std::is_standard_layout_v<Node>);
static_assert(offsetof(Node, prefix) == 16 && kLeafBytes == 16 + 2 * 8 * kFan);

// One key. A delete installs a tombstone version; once no snapshot can
// read anything older (the tombstone is at or below the trim threshold),
// the record is marked kRemoved and unlinked from its leaf (btree.cc).
struct KeyRecord {
  // Newest version, 0 when none. Stored (release) by the lock holder at
  // install; loaded (acquire) by readers.
  std::atomic<uint64_t> head;
  // 0; or the committing (or removing) session: ((slot + 1) << 32) |
  // generation, CAS by it (acquire) and cleared (release) after install;
  // or kRemoved, stored (release) by the holder in place of its own word
  // and never changed again; or kSeparator from creation.
  std::atomic<uint64_t> lock;
  uint32_t key_len;
  // The low 32 bits of key_hash(key): set at creation, checked by every read
  // of one of the key's versions (Btree::version_at) and by verify.
  uint32_t key_sum;
  // key_len key bytes follow.
};
static_assert(sizeof(KeyRecord) == 24);
// The record is leaving the index: its newest version is a tombstone no
// snapshot can read past. Writers that meet it take a fresh record.
inline constexpr uint64_t kRemoved = ~uint64_t{0};
// An inner node's separator, not a key's record.
inline constexpr uint64_t kSeparator = ~uint64_t{0} - 1;
// Leaves and inner nodes left under this many entries merge with a neighbour.
inline constexpr uint32_t kMinFill = kFan / 4;

inline constexpr uint64_t kTombstone = uint64_t{1} << 63;
// One committed value of a key. Immutable once linked, except `next`, which
// the lock holder cuts when it trims versions no snapshot can read.
//
// Checksums (index/version_chain.h computes them; all are seeded with the
// key's hash, so a version linked under another key fails too):
//  - head_sum covers ts, len and blob: head_base() at make_version, xor
//    ts_part(ts) when the commit stamps its timestamp. Checked on every
//    version a read walks past or returns.
//  - value_sum covers the value bytes (inline, or the blob's). Checked on
//    every read of an inline value, by verify for all, and on read of a blob
//    value when TxnOptions::check_large_values asks.
// `next` is not covered (trimming cuts it); a bad link fails the head_sum
// of whatever it names.
struct Version {
  uint64_t ts;                 // commit timestamp
  std::atomic<uint64_t> next;  // older version, 0 when none
  uint64_t len;                // value length, | kTombstone for a delete
  uint64_t blob;               // 0: value follows; else offset of the value's own block
  uint32_t head_sum;
  uint32_t value_sum;
  // len value bytes follow when blob == 0.
};
static_assert(sizeof(Version) == 40 && alignof(Version) == 8);
static_assert(std::atomic<uint64_t>::is_always_lock_free);
inline constexpr size_t kInlineValueMax = 2048;  // larger values live in their own block

}  // namespace stoa::index

#endif  // STOA_INDEX_LAYOUT_H_
