// index/btree.h — the ordered index: a copy-on-write B+-tree in the shared
// mapping, mapping keys to key records.
//
// Readers take no lock and make no syscall: the caller's session is pinned
// to a cycle, nodes are immutable once linked, and replaced nodes are
// retired, so every pointer a reader follows stays valid until it unpins.
// Writers never modify a linked node in place except by one CAS of a child
// word; see btree.cc for the protocol.
//
// Thread safety: all methods may be called concurrently from any number of
// sessions in any number of processes; each call needs its session pinned.
#ifndef STOA_INDEX_BTREE_H_
#define STOA_INDEX_BTREE_H_

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "index/layout.h"
#include "region/heap.h"
#include "region/region.h"
#include "session/session_core.h"
#include "stoa/result.h"
#include "util/hash.h"

namespace stoa::index {

class Btree {
 public:
  // The tree rooted in `root` (the index's header in the roots page of
  // `region`); both outlive it.
  Btree(region::Region& region, IndexHeader* root) : region_(&region), hdr_(root) {}
  // Where to count the frozen nodes that help() replaces (recovery stats).
  void count_unfrozen_in(std::atomic<uint64_t>* counter) { unfrozen_ = counter; }

  IndexHeader* header() const { return hdr_; }

  // The record of `key`, 0 when absent, kDamaged when a node on the way
  // fails its shape check (verify names it). A miss is checked before it
  // is believed (miss_sound), so damage on the way is kDamaged, not 0.
  static constexpr Offset kDamaged = 1;  // never a block offset (blocks are 16-aligned)
  Offset find(std::string_view key) const;
  // The record of `key`, created (empty: no versions) if absent.
  // Errors: kFull, kCorrupt, kInvalidArgument.
  Result<Offset> find_or_insert(internal::SessionCore& s, std::string_view key);
  // The same for many keys, sorted and distinct: keys that land in one leaf
  // are inserted with one copy of that leaf. recs[i] is keys[i]'s record.
  Status find_or_insert_batch(internal::SessionCore& s, const std::vector<std::string_view>& keys,
                              std::vector<Offset>* recs);

  // Unlinks from the leaves the records marked kRemoved (index/layout.h)
  // among `keys` (sorted, distinct), with every other kRemoved record in
  // the leaves they land in. A node left under kMinFill entries merges with
  // a neighbour, and so on up (a root left with one child gives way to it).
  // Each record unlinked is retired with its versions (btree_remove.cc).
  // Returns how many were unlinked. Errors: kFull, kCorrupt.
  Result<uint64_t> unlink_removed(internal::SessionCore& s,
                                  const std::vector<std::string_view>& keys);

  std::string_view key_of(Offset record) const;

  // Damage seen by reads on this thread. node(), record() and key_of() hand
  // out a zeroed stand-in for an offset that cannot name a block (outside
  // the file, below the heap, misaligned) and count it here; a reader
  // compares the count before and after its walk (find, Iter, version_at)
  // and reports kCorrupt instead of following wild offsets.
  static uint64_t damage_seen();
  // The version of record `rec`, whose key is `key` (as the caller read it
  // from the record: Iter::key(), or the key find() matched), that a
  // snapshot at `snapshot` reads: 0 when there is none or it is a
  // tombstone. Checked (index/layout.h): the record's key sum, the head sum
  // of every version walked, the value's sum (for a blob value only when
  // `large`); the value bytes of a returned version are inside the file.
  // kCorrupt naming the key and the offset when a check fails, a link
  // leaves the file or the chain does not end. When `value` is given and a
  // version is returned, *value is its value (checked as above).
  Result<Offset> version_at(Offset rec, std::string_view key, uint64_t snapshot, bool large = false,
                            std::string_view* value = nullptr) const;

  // Walks the whole tree (caller pinned): node shapes and levels, every
  // checksum (node check words and entry sums, key sums, version header and
  // value sums, blob values included), key order within and across nodes,
  // separator bounds and prefix words, every node, record and
  // version a live heap block, version timestamps strictly descending and
  // never past `last_ts`. Appends problems naming offsets; returns records seen.
  uint64_t verify(region::Heap& heap, uint64_t last_ts, std::vector<std::string>* problems) const;
  const KeyRecord* record(Offset r) const;
  KeyRecord* record_rw(Offset r) const;

  // Which way an iterator walks the keys.
  enum class Direction : uint8_t { kForward, kBackward };

  // In-order iteration over records, forward or backward, from a key, with
  // LevelDB's iterator contract: valid() is true while the iterator stands
  // on a record; once it is false, status() says why: ok at the true end of
  // the keys, kCorrupt (naming the offset of the damaged node) when the walk
  // met damage. An error ends the walk for good (status() keeps it, a later
  // seek() does not clear it), so a damaged index never reads as a shorter
  // one; every caller checks status() after its loop.
  //
  // Checked on every node the walk enters: an offset inside the file
  // (Region::reach), a sound kind and count, its check word and entry sum,
  // a level one below its parent's (0 exactly for leaves), at most
  // kMaxDepth levels; on every record it
  // lands on: a readable key whose prefix matches the leaf's entry, and
  // keys strictly in the walk's order across the whole walk (the ranges of
  // a node's children never change, so this holds under concurrent writers).
  class Iter {
   public:
    explicit Iter(const Btree* t) : t_(t) {}
    // Positions at the first record >= key (forward) or the last record <=
    // key (backward; an empty key means "from the end").
    void seek(std::string_view key, Direction dir);
    bool valid() const { return valid_; }
    Offset record() const { return rec_; }
    // The key of record(), checked, in the mapping (valid while pinned).
    std::string_view key() const { return key_; }
    // prefix_of(key()), as the walk computed it.
    uint64_t key_prefix() const { return key_prefix_; }
    // Moves one record on in the direction of the last seek().
    void next() {
      if (valid_) advance();
    }
    const Status& status() const { return status_; }

   private:
    struct Level {
      const Node* node;  // in the mapping, which never moves
      Offset off;
      int idx;
    };
    void advance();
    void descend_edge(Offset node);
    // The node at `off`, one level below the stack top, if it passes the
    // checks above; else nullptr (the walk has failed).
    const Node* checked(Offset off);
    // Takes the record at the top leaf's index, checking it and the order.
    void land();
    // Prefetches the head version of the record a few entries ahead of
    // `idx` in leaf `n`, in the walk's direction.
    void prefetch(const Node* n, int idx) const;
    void fail(Offset node, std::string_view what);
    const Btree* t_;
    std::vector<Level> stack_;
    Direction dir_ = Direction::kForward;
    bool valid_ = false;
    bool have_key_ = false;
    Offset rec_ = 0;
    std::string_view key_;
    uint64_t key_prefix_ = 0;  // prefix_of(key_)
    Status status_;
  };

  // Compares `key` with the key of a record, given its prefix word.
  int compare(std::string_view key, uint64_t key_prefix, uint64_t rec_prefix, Offset rec) const;
  // The first 8 bytes of `key`, big-endian and zero padded: integer order
  // is byte order, so unequal prefixes order two keys without a memcmp.
  static uint64_t prefix_of(std::string_view key) {
    uint64_t p = 0;
    if (key.empty()) return 0;  // an unreadable record's key: no bytes to copy
    std::memcpy(&p, key.data(), key.size() >= 8 ? 8 : key.size());
    return __builtin_bswap64(p);
  }
  // Node::check of a node at `off`: its kind, count and level, keyed by
  // where it lies.
  static uint32_t node_check(const Node& n, Offset off) {
    const uint64_t shape = uint64_t(n.kind) | uint64_t(n.count) << 16 | uint64_t(n.level) << 32;
    return uint32_t(util::mix64(shape, off, 0x5354'4f41'4e4f'4445ull));  // "STOANODE"
  }
  // Node::sum of a node's used entries.
  static uint32_t node_sum(const Node& n) {
    const size_t c = n.count <= kFan ? n.count : kFan;
    if (n.kind == uint16_t(NodeKind::kLeaf)) {
      const uint64_t h = util::checksum64(n.prefix, 8 * c, 0x5354'4f41'4c45'4146ull);  // "STOALEAF"
      return uint32_t(util::checksum64(n.ptr, 8 * c, h));
    }
    const size_t k = c > 0 ? c - 1 : 0;
    const uint64_t h =
        util::checksum64(n.prefix + 1, 8 * k, 0x5354'4f41'494e'4e52ull);  // "STOAINNR"
    return uint32_t(util::checksum64(n.sep + 1, 8 * k, h));
  }
  // Byte order of two keys given their prefix words (-1, 0, 1 exactly:
  // callers use other values as sentinels): unequal prefixes decide alone;
  // equal ones leave the bytes past the eighth and the lengths (zero
  // padding makes "ab" and "ab\0" share a prefix).
  static int compare_keys(std::string_view a, uint64_t ap, std::string_view b, uint64_t bp) {
    if (ap != bp) return ap < bp ? -1 : 1;
    const size_t n = a.size() < b.size() ? a.size() : b.size();
    const int c = n > 8 ? std::memcmp(a.data() + 8, b.data() + 8, n - 8) : 0;
    if (c != 0) return c < 0 ? -1 : 1;
    return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
  }

 private:
  struct Step {
    Offset node;
    int idx;  // child index taken in this node
  };
  // A node's entries as parallel arrays (seps: inner nodes only; [0] unused).
  struct Entries {
    std::vector<uint64_t> ptrs, seps, prefs;
    size_t size() const { return ptrs.size(); }
    void add(uint64_t ptr, uint64_t sep, uint64_t pref) {
      ptrs.push_back(ptr);
      seps.push_back(sep);
      prefs.push_back(pref);
    }
  };
  const Node* node(Offset n) const;
  Node* node_rw(Offset n) const;
  // Descends from the root to the leaf for `key`, recording the inner steps
  // in `path` and the tightest separator above the key in *hi (0: none).
  // Returns the leaf (0: empty tree), or nullopt when it met a frozen child
  // word and replaced that node (help), so the caller starts again.
  Result<std::optional<Offset>> descend(internal::SessionCore& s, std::string_view key, uint64_t kp,
                                        std::vector<Step>& path, Offset* hi, uint64_t* hi_prefix);
  // The entries of `n` (child words without the frozen bit).
  Entries entries_of(const Node* n) const;
  // Replaces path[depth] (old, of `kind` at `level`) by a node holding
  // `e`, which has fewer entries than old: one CAS when e keeps at least
  // kMinFill entries or old is the root; else old merges with a neighbour
  // under a frozen copy of its parent, which is then shrunk the same way.
  // Returns as replace() does; blocks to retire on success (old nodes and
  // the separators merges drop) go to `replaced`.
  Result<bool> shrink(internal::SessionCore& s, std::vector<Step>& path, size_t depth, Offset old,
                      NodeKind kind, uint32_t level, Entries e, std::vector<Offset>& created,
                      std::vector<Offset>& replaced);
  // After the CAS that unlinked the kRemoved records `dead`: retires them
  // with their versions and blobs, and with `blocks` (other blocks that CAS
  // replaced), in one SessionCore::retire_all; counts them removed.
  void retire_unlinked(internal::SessionCore& s, const std::vector<Offset>& dead,
                       std::vector<Offset> blocks);
  int child_index(const Node* n, std::string_view key, uint64_t kp) const;
  int leaf_lower_bound(const Node* n, std::string_view key, uint64_t kp, bool* found) const;
  // Whether leaf `n`, reached between separator records `lo` and `hi` (0:
  // unbounded), may truly lack `key`, which would stand at `pos`.
  bool miss_sound(const Node* n, int pos, std::string_view key, Offset lo, Offset hi) const;
  // Whether leaf entry `e` names a record whose key passes its sum and
  // agrees with the entry's prefix word.
  bool entry_sound(const Node* n, int e) const;
  // Whether the entries either side of position `pos` of leaf `n` (those
  // that exist) are sound: a binary search that stopped at `pos` then
  // stopped at the true lower bound.
  bool bracket_sound(const Node* n, int pos) const;
  Result<Offset> new_node(internal::SessionCore& s, NodeKind kind, uint32_t level);
  // A key record for `key` (lock word `lock`: 0, or kSeparator for a
  // separator), published, not linked.
  Result<Offset> new_record(internal::SessionCore& s, std::string_view key, uint64_t lock = 0);
  // Replaces path[depth] (old; 0 for an empty tree's missing root) by
  // nodes[0..k), seps[i] (i >= 1) being the record of the lowest key of
  // nodes[i]. Returns true when linked; false when the tree changed under it
  // (the caller retries). Appends nodes it created to `created` and nodes
  // it replaced to `replaced`.
  Result<bool> replace(internal::SessionCore& s, std::vector<Step>& path, size_t depth, Offset old,
                       std::vector<Offset> nodes, std::vector<Offset> seps,
                       std::vector<Offset>& created, std::vector<Offset>& replaced);
  // Builds nodes of `kind` at `level` from parallel arrays, split into
  // chunks of at most kFill entries; returns them and their separators
  // (for leaves: new separator records of each chunk's first key, 0 for
  // the first chunk, which keeps the separator above it).
  Status build_nodes(internal::SessionCore& s, NodeKind kind, uint32_t level,
                     const std::vector<uint64_t>& ptrs, const std::vector<uint64_t>& seps,
                     const std::vector<uint64_t>& prefs, std::vector<Offset>* nodes,
                     std::vector<Offset>* node_seps, std::vector<Offset>& created);
  // Prefetches the version at `v` (0: none) and its inline value's lines.
  void prefetch_version(Offset v) const;
  // Whether record `r`'s key can be read and passes its key sum.
  bool key_sound(Offset r) const;
  // kCorrupt: a writer found node `n` failing its entry sum before a copy.
  Error damaged_copy(Offset n) const;
  // Whether the node at `off` has a sound kind, count, check word and extent.
  bool shape_ok(const Node* n, Offset off) const;
  // Freezes node n and replaces it with an identical unfrozen copy.
  Status help(internal::SessionCore& s, std::vector<Step>& path, size_t depth);
  void freeze(Node* n) const;

  region::Region* region_;
  IndexHeader* hdr_;
  // Frozen nodes this tree's helpers replaced (a shared statistics word the
  // store points at; relaxed increments). Null: not counted.
  std::atomic<uint64_t>* unfrozen_ = nullptr;
};

}  // namespace stoa::index

#endif  // STOA_INDEX_BTREE_H_
