// index/btree.cc — a lock-free copy-on-write B+-tree across processes.
//
// Invariants
//  - A node linked into the tree never changes, except an inner node's child
//    words. Readers therefore see every node whole.
//  - Every change is one CAS: of a child word of an inner node, or of the
//    root word. Before the CAS the new nodes are complete and published
//    (kLive); after it, the replaced nodes are retired through cycle locking.
//  - To replace an inner node P (its key set changes when a child splits),
//    a writer first freezes P: it sets the low bit of every child word by
//    CAS. A frozen word can no longer be swapped, so no concurrent child
//    update can be lost; the writer copies P's children into P', applies its
//    change, and swaps P' for P in P's parent.
//  - A separator is a record of its own (kSeparator), made when a leaf
//    splits and retired when a merge drops it, so removing a key's record
//    from its leaf (btree_remove.cc) never leaves a separator dangling.
//  - The key range of a node's child i is fixed while that node is linked:
//    a child word is swapped only for a node with the same range, and a
//    change of ranges (split, merge) replaces the parent itself.
//
// Death. A writer killed at any point leaves the tree whole: either its CAS
// happened or not. Nodes it built but did not link are kOwned or kLive
// blocks of its session; recovery frees the kOwned ones and an unlinked
// kLive copy is a bounded leak of one node. A node it froze but did not
// replace is helped by the next writer that meets the frozen child word on
// its way down: that writer replaces the node with an unfrozen copy. Two
// writers racing to replace the same node resolve by the parent CAS; the
// loser frees its copies and retries from the root.
//
// Readers walk with acquire loads and ignore the frozen bit. Inserts are
// visible to a snapshot only through version timestamps (txn.cc), so a
// reader walking older nodes misses only keys its snapshot cannot see.
#include "index/btree.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "crash/crash_point.h"
#include "index/version_chain.h"
#include "stoa/txn_options.h"

namespace stoa::index {

namespace {
// initial-exec: one TLS read, not a __tls_get_addr call, on every node and
// record access of a position-independent build.
__attribute__((tls_model("initial-exec"))) thread_local uint64_t t_damage = 0;
// Stand-ins handed out for offsets that cannot name a block: an empty node
// (count 0 fails every shape check) and an empty record (no key, no
// versions). Writers never reach them: they take offsets they made.
const Node kNoNode{};
const KeyRecord kNoRecord{};
}  // namespace

uint64_t Btree::damage_seen() { return t_damage; }

const Node* Btree::node(Offset n) const {
  if (!region_->reach(n, kLeafBytes)) {
    t_damage++;
    return &kNoNode;
  }
  if (n + kInnerBytes > region_->mapped()) (void)region_->ensure(n, kInnerBytes);
  return reinterpret_cast<const Node*>(region_->ro(n));
}
Node* Btree::node_rw(Offset n) const {
  if (n + kInnerBytes > region_->mapped()) (void)region_->ensure(n, kInnerBytes);
  return reinterpret_cast<Node*>(region_->rw(n));
}
bool Btree::shape_ok(const Node* n, Offset off) const {
  if (n->count == 0 || n->count > kFan) return false;
  if (n->check != node_check(*n, off)) return false;
  if (n->kind == uint16_t(NodeKind::kLeaf)) return true;
  return n->kind == uint16_t(NodeKind::kInner) && region_->reach(off, kInnerBytes);
}
const KeyRecord* Btree::record(Offset r) const {
  if (!region_->reach(r, sizeof(KeyRecord))) {
    t_damage++;
    return &kNoRecord;
  }
  return reinterpret_cast<const KeyRecord*>(region_->ro(r));
}
KeyRecord* Btree::record_rw(Offset r) const {
  (void)record(r);
  return reinterpret_cast<KeyRecord*>(region_->rw(r));
}
std::string_view Btree::key_of(Offset r) const {
  const KeyRecord* k = record(r);
  if (k->key_len > stoa::kMaxKeySize || !region_->reach(r, sizeof(KeyRecord) + k->key_len)) {
    if (k != &kNoRecord) t_damage++;
    return {};
  }
  return {reinterpret_cast<const char*>(k) + sizeof(KeyRecord), k->key_len};
}

Result<Offset> Btree::version_at(Offset rec, std::string_view key, uint64_t snapshot, bool large,
                                 std::string_view* out) const {
  const uint64_t d0 = t_damage;
  const KeyRecord* k = record(rec);
  if (t_damage != d0) {
    return Error(Code::kCorrupt, fmt::format("{}: the key record at offset {} cannot be read",
                                             region_->path(), rec));
  }
  const uint64_t kh = VersionChain::key_hash(key);
  if (uint32_t(kh) != k->key_sum) {
    return Error(Code::kCorrupt,
                 fmt::format("{}: the key record at offset {} (key {}) fails its checksum",
                             region_->path(), rec, VersionChain::printable(key)));
  }
  // Every version walked past is checked too: a changed timestamp would
  // otherwise make the walk skip the version the snapshot should read.
  const VersionChain chain(*region_);
  const Offset head = k->head.load(std::memory_order_acquire);
  prefetch_version(head);  // nearly always the version read
  Offset found = 0, bad = 0;
  const Version* ver = nullptr;
  STOA_TRY(chain.walk(head, [&](Offset v, const Version& vr) {
    if (!VersionChain::head_ok(vr, kh)) {
      bad = v;
      return false;
    }
    if (vr.ts > snapshot) return true;
    found = v;
    ver = &vr;
    return false;
  }));
  if (bad != 0) return chain.bad_sum(bad, key, "header");
  if (found == 0) return Offset{0};
  std::string_view value;
  STOA_TRY(chain.check_value(found, *ver, key, kh, large, &value));
  if (VersionChain::tombstone(*ver)) return Offset{0};
  if (out != nullptr) *out = value;
  return found;
}

int Btree::compare(std::string_view key, uint64_t kp, uint64_t rp, Offset rec) const {
  if (kp != rp) return kp < rp ? -1 : 1;
  return compare_keys(key, kp, key_of(rec), rp);
}

int Btree::child_index(const Node* n, std::string_view key, uint64_t kp) const {
  int lo = 1, hi = n->count;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    // Both possible next probes, so the next miss overlaps this one.
    __builtin_prefetch(&n->prefix[(lo + mid) / 2]);
    __builtin_prefetch(&n->prefix[(mid + 1 + hi) / 2]);
    if (compare(key, kp, n->prefix[mid], n->sep[mid]) >= 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo - 1;
}

int Btree::leaf_lower_bound(const Node* n, std::string_view key, uint64_t kp, bool* found) const {
  int lo = 0, hi = n->count;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    __builtin_prefetch(&n->prefix[(lo + mid) / 2]);
    __builtin_prefetch(&n->prefix[(mid + 1 + hi) / 2]);
    if (compare(key, kp, n->prefix[mid], n->ptr[mid].load(std::memory_order_relaxed)) > 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = lo < n->count &&
           compare(key, kp, n->prefix[lo], n->ptr[lo].load(std::memory_order_relaxed)) == 0;
  return lo;
}

Offset Btree::find(std::string_view key) const {
  const uint64_t d0 = t_damage;
  const uint64_t kp = prefix_of(key);
  Offset cur = hdr_->root.load(std::memory_order_acquire);
  if (cur == 0) return 0;
  Offset lo = 0, hi = 0;  // the tightest separators on the way: lo <= key < hi
  uint32_t parent_level = 0;
  const Node* path[kMaxDepth + 1];
  for (uint32_t depth = 0; depth <= kMaxDepth; depth++) {
    const Node* n = node(cur);
    path[depth] = n;
    const bool leaf = n->kind == uint16_t(NodeKind::kLeaf);
    if (!shape_ok(n, cur) || leaf != (n->level == 0) ||
        (depth > 0 && n->level + 1 != parent_level)) {
      return kDamaged;
    }
    if (leaf) {
      bool found;
      int pos = leaf_lower_bound(n, key, kp, &found);
      if (t_damage != d0) return kDamaged;
      if (found) {
        // compare() took the leaf's prefix word for the record's first 8
        // bytes; the record must agree, or it is another key's.
        const Offset r = n->ptr[pos].load(std::memory_order_relaxed);
        const std::string_view rk = key_of(r);
        return !rk.empty() && prefix_of(rk) == kp && t_damage == d0 ? r : kDamaged;
      }
      for (uint32_t d = 0; d <= depth; d++) {
        if (path[d]->sum != node_sum(*path[d])) return kDamaged;
      }
      return miss_sound(n, pos, key, lo, hi) && t_damage == d0 ? 0 : kDamaged;
    }
    int i = child_index(n, key, kp);
    if (i >= 1) lo = n->sep[i];
    if (i + 1 < n->count) hi = n->sep[i + 1];
    parent_level = n->level;
    cur = n->ptr[i].load(std::memory_order_acquire) & ~kFrozen;
    // The child's header and the middle of its key array: the first two
    // lines any search of it touches, fetched together.
    const char* c = region_->ro(cur);
    __builtin_prefetch(c);
    __builtin_prefetch(c + offsetof(Node, prefix) + 8 * (kFan / 2));
  }
  return kDamaged;  // deeper than any sound tree
}

// A miss is an answer only if every node on the way passes its entry sum
// (checked by find) and this leaf could hold the key: the key lies
// within the separators that led here (by their records' full keys, not
// the prefix words the descent compared), so do the leaf's first and last
// keys, and the entries either side of where the key would stand are sound
// (prefix word equal to the record's, the record's key passing its sum).
// So one changed byte on the way (a prefix word, a separator, a child word,
// a record's key) reads as damage, never as "absent". Costs a few key reads
// on a miss only.
bool Btree::entry_sound(const Node* n, int e) const {
  const Offset r = n->ptr[e].load(std::memory_order_relaxed);
  return key_sound(r) && prefix_of(key_of(r)) == n->prefix[e];
}

bool Btree::bracket_sound(const Node* n, int pos) const {
  return (pos <= 0 || entry_sound(n, pos - 1)) && (pos >= n->count || entry_sound(n, pos));
}

bool Btree::miss_sound(const Node* n, int pos, std::string_view key, Offset lo, Offset hi) const {
  if (!bracket_sound(n, pos)) return false;
  // <0, 0, >0 for a against the key of separator record r; 2 when r's key
  // is unreadable or fails its sum (a changed separator misroutes the
  // descent, and then is the fence on the side it sent the key away from).
  auto cmp = [&](std::string_view a, Offset r) {
    if (!key_sound(r)) return 2;
    const std::string_view b = key_of(r);
    return compare_keys(a, prefix_of(a), b, prefix_of(b));
  };
  const std::string_view first = key_of(n->ptr[0].load(std::memory_order_relaxed));
  const std::string_view last = key_of(n->ptr[n->count - 1].load(std::memory_order_relaxed));
  if (first.empty() || last.empty()) return false;
  if (lo != 0) {
    const int a = cmp(key, lo), b = cmp(first, lo);
    if (a == 2 || a < 0 || b < 0) return false;
  }
  if (hi != 0) {
    const int a = cmp(key, hi), b = cmp(last, hi);
    if (a >= 0 || b >= 0) return false;  // 2 included
  }
  return true;
}

void Btree::prefetch_version(Offset v) const {
  // The header and the two lines after it, which an inline value's sum
  // reads next: asked for together, they cost one miss, not three in a
  // row. Only prefetches (they never fault); the bound keeps the addresses
  // inside the mapping for a damaged offset.
  if (v == 0 || v + 3 * 64 > region_->mapped()) return;
  const char* p = region_->ro(v);
  __builtin_prefetch(p);
  __builtin_prefetch(p + 64);
  __builtin_prefetch(p + 128);
}

bool Btree::key_sound(Offset r) const {
  const std::string_view k = key_of(r);
  return !k.empty() && uint32_t(VersionChain::key_hash(k)) == record(r)->key_sum;
}

Error Btree::damaged_copy(Offset n) const {
  return Error(Code::kCorrupt,
               fmt::format("{}: index node at offset {} fails its entry checksum; not copied "
                           "(stoa verify names the damage)",
                           region_->path(), n));
}

Result<Offset> Btree::new_node(internal::SessionCore& s, NodeKind kind, uint32_t level) {
  size_t bytes = kind == NodeKind::kLeaf ? kLeafBytes : kInnerBytes;
  STOA_ASSIGN(Offset n, s.alloc(bytes));
  Node* p = reinterpret_cast<Node*>(s.write_ptr(n));
  p->kind = uint16_t(kind);
  p->count = 0;
  p->level = level;
  p->check = 0;  // build_nodes() and help() set both once the entries are in
  p->sum = 0;
  return n;
}

Result<Offset> Btree::new_record(internal::SessionCore& s, std::string_view key, uint64_t lock) {
  STOA_ASSIGN(Offset r, s.alloc(sizeof(KeyRecord) + key.size()));
  KeyRecord* k = reinterpret_cast<KeyRecord*>(s.write_ptr(r));
  k->head.store(0, std::memory_order_relaxed);
  k->lock.store(lock, std::memory_order_relaxed);
  k->key_len = uint32_t(key.size());
  k->key_sum = uint32_t(VersionChain::key_hash(key));
  std::memcpy(reinterpret_cast<char*>(k) + sizeof(KeyRecord), key.data(), key.size());
  STOA_TRY(s.publish(r));  // linked by a CAS below; published first (recovery frees kOwned)
  return r;
}

void Btree::freeze(Node* n) const {
  for (uint32_t i = 0; i < n->count; i++) {
    uint64_t v = n->ptr[i].load(std::memory_order_acquire);
    while (!(v & kFrozen) &&
           !n->ptr[i].compare_exchange_weak(v, v | kFrozen, std::memory_order_acq_rel)) {
    }
  }
}

Status Btree::build_nodes(internal::SessionCore& s, NodeKind kind, uint32_t level,
                          const std::vector<uint64_t>& ptrs, const std::vector<uint64_t>& seps,
                          const std::vector<uint64_t>& prefs, std::vector<Offset>* nodes,
                          std::vector<Offset>* node_seps, std::vector<Offset>& created) {
  // One node when everything fits; otherwise chunks three-quarters full, so
  // the next inserts into them do not split at once.
  // (The last chunk holds what is left: more than kFan / 4 entries, since
  // a full chunk is only taken while more than kFan remain.)
  const size_t n = ptrs.size();
  for (size_t from = 0, to = 0; from < n; from = to) {
    to = from + (n - from <= kFan ? n - from : kFan * 3 / 4);
    STOA_ASSIGN(Offset o, new_node(s, kind, level));
    created.push_back(o);
    Node* q = reinterpret_cast<Node*>(s.write_ptr(o));
    q->count = uint16_t(to - from);
    for (size_t i = from; i < to; i++) {
      q->ptr[i - from].store(ptrs[i], std::memory_order_relaxed);
      q->prefix[i - from] = prefs[i];
      if (kind == NodeKind::kInner) q->sep[i - from] = i == from ? 0 : seps[i];
    }
    if (kind == NodeKind::kInner) q->prefix[0] = 0;
    q->check = node_check(*q, o);
    q->sum = node_sum(*q);
    STOA_TRY(s.publish(o));
    nodes->push_back(o);
    if (kind == NodeKind::kInner) {
      node_seps->push_back(seps[from]);
    } else if (from == 0) {
      node_seps->push_back(0);
    } else {
      STOA_ASSIGN(Offset sep, new_record(s, key_of(ptrs[from]), kSeparator));
      created.push_back(sep);
      node_seps->push_back(sep);
    }
  }
  return {};
}

Result<bool> Btree::replace(internal::SessionCore& s, std::vector<Step>& path, size_t depth,
                            Offset old, std::vector<Offset> nodes, std::vector<Offset> seps,
                            std::vector<Offset>& created, std::vector<Offset>& replaced) {
  if (depth == 0) {
    // The root: stack new levels on top until one node remains.
    uint32_t level = node(nodes[0])->level;
    while (nodes.size() > 1) {
      std::vector<uint64_t> ptrs(nodes.begin(), nodes.end()), sp(seps.begin(), seps.end()), prefs;
      for (size_t i = 0; i < sp.size(); i++) prefs.push_back(i == 0 ? 0 : prefix_of(key_of(sp[i])));
      std::vector<Offset> up, up_seps;
      STOA_TRY(build_nodes(s, NodeKind::kInner, ++level, ptrs, sp, prefs, &up, &up_seps, created));
      nodes = std::move(up);
      seps = std::move(up_seps);
    }
    uint64_t expected = old;
    if (!hdr_->root.compare_exchange_strong(expected, nodes[0], std::memory_order_acq_rel)) {
      return false;
    }
    if (old != 0) replaced.push_back(old);
    return true;
  }
  const Offset p_off = path[depth - 1].node;
  const int pi = path[depth - 1].idx;
  Node* p = node_rw(p_off);
  if (nodes.size() > 1 && p->sum != node_sum(*p)) return damaged_copy(p_off);
  if (nodes.size() == 1) {
    uint64_t expected = old;
    if (!p->ptr[pi].compare_exchange_strong(expected, nodes[0], std::memory_order_acq_rel)) {
      return false;
    }
    replaced.push_back(old);
    return true;
  }
  freeze(p);
  STOA_CRASH_POINT(kIndexFreeze);
  if ((p->ptr[pi].load(std::memory_order_acquire) & ~kFrozen) != old) return false;
  // P's entries, with `old` replaced by the new nodes and their separators.
  std::vector<uint64_t> ptrs, sp, prefs;
  for (int i = 0; i < p->count; i++) {
    if (i != pi) {
      ptrs.push_back(p->ptr[i].load(std::memory_order_acquire) & ~kFrozen);
      sp.push_back(p->sep[i]);
      prefs.push_back(p->prefix[i]);
      continue;
    }
    for (size_t k = 0; k < nodes.size(); k++) {
      ptrs.push_back(nodes[k]);
      sp.push_back(k == 0 ? p->sep[i] : seps[k]);
      prefs.push_back(k == 0 ? p->prefix[i] : prefix_of(key_of(seps[k])));
    }
  }
  std::vector<Offset> up, up_seps;
  STOA_TRY(build_nodes(s, NodeKind::kInner, p->level, ptrs, sp, prefs, &up, &up_seps, created));
  Result<bool> linked =
      replace(s, path, depth - 1, p_off, std::move(up), std::move(up_seps), created, replaced);
  if (linked.ok() && *linked) replaced.push_back(old);  // the node that split goes too
  return linked;
}

Status Btree::help(internal::SessionCore& s, std::vector<Step>& path, size_t depth) {
  const Offset x_off = path[depth].node;
  Node* x = node_rw(x_off);
  if (x->sum != node_sum(*x)) return damaged_copy(x_off);
  freeze(x);
  STOA_ASSIGN(Offset c, new_node(s, NodeKind::kInner, x->level));
  Node* q = reinterpret_cast<Node*>(s.write_ptr(c));
  q->count = x->count;
  for (uint32_t i = 0; i < x->count; i++) {
    q->ptr[i].store(x->ptr[i].load(std::memory_order_acquire) & ~kFrozen,
                    std::memory_order_relaxed);
    q->sep[i] = x->sep[i];
    q->prefix[i] = x->prefix[i];
  }
  q->check = node_check(*q, c);
  q->sum = node_sum(*q);
  STOA_TRY(s.publish(c));
  std::vector<Offset> created{c}, replaced;
  auto ok = replace(s, path, depth, x_off, {c}, {0}, created, replaced);
  if (ok.ok() && *ok) {
    if (unfrozen_ != nullptr) unfrozen_->fetch_add(1, std::memory_order_relaxed);
    for (Offset r : replaced) (void)s.retire(r);
  } else {
    for (Offset o : created) (void)s.free(o);
  }
  return ok.ok() ? Status{} : Status(std::move(ok).error());
}

Result<std::optional<Offset>> Btree::descend(internal::SessionCore& s, std::string_view key,
                                             uint64_t kp, std::vector<Step>& path, Offset* hi,
                                             uint64_t* hi_prefix) {
  Offset cur = hdr_->root.load(std::memory_order_acquire);
  while (cur != 0) {
    const Node* nd = node(cur);
    if (nd->count > kFan || path.size() > kMaxDepth ||
        (nd->kind != uint16_t(NodeKind::kLeaf) && nd->kind != uint16_t(NodeKind::kInner))) {
      return Error(Code::kCorrupt,
                   fmt::format("{}: index node at offset {} is damaged", region_->path(), cur));
    }
    if (nd->kind == uint16_t(NodeKind::kLeaf)) break;
    const int c = child_index(nd, key, kp);
    if (c + 1 < nd->count) {
      *hi = nd->sep[c + 1];
      *hi_prefix = nd->prefix[c + 1];
    }
    path.push_back({cur, c});
    const uint64_t w = nd->ptr[c].load(std::memory_order_acquire);
    if (w & kFrozen) {
      STOA_TRY(help(s, path, path.size() - 1));
      return std::optional<Offset>{};
    }
    cur = w;
  }
  return std::optional<Offset>{cur};
}

Result<Offset> Btree::find_or_insert(internal::SessionCore& s, std::string_view key) {
  std::vector<Offset> recs;
  STOA_TRY(find_or_insert_batch(s, {key}, &recs));
  return recs[0];
}

Status Btree::find_or_insert_batch(internal::SessionCore& s,
                                   const std::vector<std::string_view>& keys,
                                   std::vector<Offset>* recs) {
  const size_t n = keys.size();
  recs->assign(n, 0);
  std::vector<Offset> fresh(n, 0);  // records made for absent keys, kept across retries
  std::vector<uint64_t> kps(n);
  for (size_t i = 0; i < n; i++) kps[i] = prefix_of(keys[i]);
  auto cleanup = [&] {
    for (Offset r : fresh) {
      if (r != 0) (void)s.free(r);
    }
  };
  std::vector<Step> path;
  std::vector<Offset> created, replaced;
  size_t i = 0;
  for (int attempt = 0; i < n; attempt++) {
    if (attempt > 1000000) {
      cleanup();
      return Error(Code::kConflict, "index insert did not settle after many attempts");
    }
    path.clear();
    created.clear();
    replaced.clear();
    Offset hi = 0;
    uint64_t hi_prefix = 0;
    auto leaf_at = descend(s, keys[i], kps[i], path, &hi, &hi_prefix);
    if (!leaf_at.ok()) {
      cleanup();
      return std::move(leaf_at).error();
    }
    if (!leaf_at->has_value()) continue;  // helped a frozen node: again from the root
    const Offset cur = **leaf_at;
    // The keys that belong in this leaf, merged with its entries.
    size_t j = i;
    while (j < n && (hi == 0 || compare(keys[j], kps[j], hi_prefix, hi) < 0)) j++;
    std::vector<uint64_t> ptrs, prefs;
    const Node* leaf = cur != 0 ? node(cur) : nullptr;
    if (leaf != nullptr && leaf->sum != node_sum(*leaf)) {
      cleanup();
      return damaged_copy(cur);
    }
    const int count = leaf != nullptr ? leaf->count : 0;
    std::vector<Offset> dead;  // kRemoved records this copy drops
    bool added = false;
    int e = 0;
    for (size_t k = i; k < j; k++) {
      while (e < count && compare(keys[k], kps[k], leaf->prefix[e],
                                  leaf->ptr[e].load(std::memory_order_relaxed)) > 0) {
        ptrs.push_back(leaf->ptr[e].load(std::memory_order_relaxed));
        prefs.push_back(leaf->prefix[e]);
        e++;
      }
      if (e < count && compare(keys[k], kps[k], leaf->prefix[e],
                               leaf->ptr[e].load(std::memory_order_relaxed)) == 0) {
        const Offset r = leaf->ptr[e].load(std::memory_order_relaxed);
        if (record(r)->lock.load(std::memory_order_acquire) != kRemoved) {
          (*recs)[k] = r;
          continue;  // present: stays where it is
        }
        // Leaving the index (btree_remove.cc): the key is absent to every
        // snapshot, so a fresh record takes the entry's place.
        dead.push_back(r);
        e++;
      }
      if (fresh[k] == 0) {
        auto r = new_record(s, keys[k]);
        if (!r.ok()) {
          cleanup();
          return std::move(r).error();
        }
        fresh[k] = *r;
      }
      (*recs)[k] = fresh[k];
      ptrs.push_back(fresh[k]);
      prefs.push_back(kps[k]);
      added = true;
    }
    if (!added) {
      i = j;
      continue;
    }
    for (; e < count; e++) {
      ptrs.push_back(leaf->ptr[e].load(std::memory_order_relaxed));
      prefs.push_back(leaf->prefix[e]);
    }
    std::vector<Offset> nodes, seps;
    Status st = build_nodes(s, NodeKind::kLeaf, 0, ptrs, {}, prefs, &nodes, &seps, created);
    Result<bool> linked = false;
    if (st.ok()) {
      if (nodes.size() > 1) {
        STOA_CRASH_POINT(kIndexSplit);
      } else {
        STOA_CRASH_POINT(kIndexNodeCopy);
      }
      path.push_back({cur, -1});
      linked = replace(s, path, path.size() - 1, cur, nodes, seps, created, replaced);
    } else {
      linked = std::move(st).error();
    }
    if (linked.ok() && *linked) {
      STOA_CRASH_POINT(kIndexCas);
      for (Offset o : replaced) (void)s.retire(o);
      if (!dead.empty()) retire_unlinked(s, dead, {});
      for (size_t k = i; k < j; k++) {
        if (fresh[k] != 0 && (*recs)[k] == fresh[k]) {
          fresh[k] = 0;  // linked now
          hdr_->records.fetch_add(1, std::memory_order_relaxed);
        }
      }
      i = j;
      continue;
    }
    for (Offset o : created) (void)s.free(o);
    if (!linked.ok()) {
      cleanup();
      return std::move(linked).error();
    }
  }
  return {};
}

// ---------------------------------------------------------------------------
// Iteration

void Btree::Iter::fail(Offset node, std::string_view what) {
  valid_ = false;
  stack_.clear();
  if (status_.ok()) {
    status_ = Error(Code::kCorrupt, fmt::format("{}: index node at offset {} is damaged: {}",
                                                t_->region_->path(), node, what));
  }
}

const Node* Btree::Iter::checked(Offset off) {
  if (stack_.size() > kMaxDepth) {
    fail(off, fmt::format("the tree is deeper than {} levels", kMaxDepth));
    return nullptr;
  }
  if (!t_->region_->reach(off, kLeafBytes)) {
    fail(off, "the offset lies outside the file");
    return nullptr;
  }
  const Node* n = t_->node(off);
  const bool leaf = n->kind == uint16_t(NodeKind::kLeaf);
  const bool level_ok =
      leaf == (n->level == 0) && (stack_.empty() || n->level + 1 == stack_.back().node->level);
  if (!t_->shape_ok(n, off) || !level_ok) {
    fail(off, fmt::format("kind {} count {} level {} (parent level {})", n->kind, n->count,
                          n->level, stack_.empty() ? -1 : int64_t(stack_.back().node->level)));
    return nullptr;
  }
  // The entries too, once per node entered (a leaf's sum costs a few
  // nanoseconds per key it yields): a changed entry whose record shares the
  // key's first 8 bytes would pass every check at landing.
  if (n->sum != node_sum(*n)) {
    fail(off, "its entries fail their checksum");
    return nullptr;
  }
  return n;
}

// Scans are bound by a miss per key on its newest version (records of
// neighbouring keys mostly share lines, versions lie where their commits
// put them). Landing on entry i asks the memory system for the head version
// of the record kVersionAhead entries on. Only a prefetch, which never
// faults: a damaged offset costs a wasted line, and the walk's own checks
// still run when it lands there.
void Btree::Iter::prefetch(const Node* n, int idx) const {
  constexpr int kVersionAhead = 6;
  const int v = dir_ == Direction::kBackward ? idx - kVersionAhead : idx + kVersionAhead;
  if (v < 0 || v >= n->count) return;
  const Offset o = n->ptr[v].load(std::memory_order_relaxed);
  if (!t_->region_->reach(o, sizeof(KeyRecord))) return;
  t_->prefetch_version(
      reinterpret_cast<const KeyRecord*>(t_->region_->ro(o))->head.load(std::memory_order_relaxed));
}

void Btree::Iter::land() {
  const Level& top = stack_.back();
  prefetch(top.node, top.idx);
  const Offset r = top.node->ptr[top.idx].load(std::memory_order_relaxed);
  const std::string_view k = t_->key_of(r);  // sound keys are never empty
  if (k.empty()) {
    return fail(top.off, fmt::format("entry {} names a record at offset {} that cannot be read",
                                     top.idx, r));
  }
  const uint64_t kp = prefix_of(k);
  if (kp != top.node->prefix[top.idx]) {
    return fail(top.off, fmt::format("entry {} prefix does not match its key", top.idx));
  }
  if (have_key_) {
    const int c = compare_keys(key_, key_prefix_, k, kp);
    if (dir_ == Direction::kForward ? c >= 0 : c <= 0) {
      return fail(top.off, fmt::format("keys out of order at entry {}", top.idx));
    }
  }
  rec_ = r;
  key_ = k;
  key_prefix_ = kp;
  have_key_ = true;
  valid_ = true;
}

void Btree::Iter::descend_edge(Offset cur) {
  for (;;) {
    const Node* n = checked(cur);
    if (n == nullptr) return;
    const int idx = dir_ == Direction::kBackward ? n->count - 1 : 0;
    stack_.push_back({n, cur, idx});
    if (n->kind == uint16_t(NodeKind::kLeaf)) return land();
    cur = n->ptr[idx].load(std::memory_order_acquire) & ~kFrozen;
  }
}

void Btree::Iter::seek(std::string_view key, Direction dir) {
  stack_.clear();
  dir_ = dir;
  valid_ = false;
  have_key_ = false;
  if (!status_.ok()) return;  // an error ends the walk for good
  Offset cur = t_->hdr_->root.load(std::memory_order_acquire);
  if (cur == 0) return;
  const bool back = dir == Direction::kBackward;
  if (back && key.empty()) return descend_edge(cur);
  const uint64_t kp = prefix_of(key);
  const uint64_t d0 = damage_seen();
  for (;;) {
    const Node* n = checked(cur);
    if (n == nullptr) return;
    if (n->kind == uint16_t(NodeKind::kLeaf)) {
      bool found;
      int pos = t_->leaf_lower_bound(n, key, kp, &found);
      if (damage_seen() != d0) return fail(cur, "a key it holds cannot be read");
      // The binary search compared key bytes the entry sum does not cover:
      // a changed key would send it to the wrong entry. The two entries
      // either side of where it stopped are the ones that decided it; when
      // both are sound the stop is the true lower bound.
      if (!t_->bracket_sound(n, pos)) return fail(cur, "a key it holds fails its checksum");
      if (back && !found) pos--;
      stack_.push_back({n, cur, pos});
      if (pos >= 0 && pos < n->count) return land();
      // Off this leaf's end: step to the neighbour.
      stack_.back().idx = back ? 0 : n->count - 1;
      return advance();
    }
    const int i = t_->child_index(n, key, kp);
    if (damage_seen() != d0) return fail(cur, "a separator key cannot be read");
    // The separators either side of the child taken decided the route (the
    // entry sum covers their offsets and prefix words, not their keys): a
    // changed separator key would start the walk in the wrong child.
    if ((i >= 1 && !t_->key_sound(n->sep[i])) ||
        (i + 1 < n->count && !t_->key_sound(n->sep[i + 1]))) {
      return fail(cur, "a separator key fails its checksum");
    }
    stack_.push_back({n, cur, i});
    cur = n->ptr[i].load(std::memory_order_acquire) & ~kFrozen;
  }
}

void Btree::Iter::advance() {
  valid_ = false;
  const int step = dir_ == Direction::kBackward ? -1 : 1;
  while (!stack_.empty()) {
    Level& top = stack_.back();
    const Node* n = top.node;  // checked when pushed; published nodes never change shape
    top.idx += step;
    if (top.idx >= 0 && top.idx < n->count) {
      if (n->kind == uint16_t(NodeKind::kLeaf)) return land();
      return descend_edge(n->ptr[top.idx].load(std::memory_order_acquire) & ~kFrozen);
    }
    stack_.pop_back();
  }
}

}  // namespace stoa::index
