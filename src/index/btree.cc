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
//  - Keys are never removed from the index (deletes are tombstone versions),
//    so a separator's record stays valid and every split boundary is stable.
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

#include "store_impl.h"

namespace stoa::index {

Btree::Btree(internal::StoreImpl* store)
    : store_(store),
      region_(&store->region()),
      hdr_(reinterpret_cast<IndexHeader*>(store->region().rw(region::kRootsOffset))) {}

uint64_t Btree::prefix_of(std::string_view key) {
  uint64_t p = 0;
  std::memcpy(&p, key.data(), std::min<size_t>(8, key.size()));
  return __builtin_bswap64(p);  // big-endian: integer order is byte order
}

const Node* Btree::node(Offset n) const {
  if (n + kInnerBytes > region_->mapped()) (void)region_->ensure(n, kInnerBytes);
  return reinterpret_cast<const Node*>(region_->ro(n));
}
Node* Btree::node_rw(Offset n) const {
  if (n + kInnerBytes > region_->mapped()) (void)region_->ensure(n, kInnerBytes);
  return reinterpret_cast<Node*>(region_->rw(n));
}
const KeyRecord* Btree::record(Offset r) const {
  if (r + sizeof(KeyRecord) > region_->mapped()) (void)region_->ensure(r, sizeof(KeyRecord));
  return reinterpret_cast<const KeyRecord*>(region_->ro(r));
}
KeyRecord* Btree::record_rw(Offset r) const {
  (void)record(r);
  return reinterpret_cast<KeyRecord*>(region_->rw(r));
}
std::string_view Btree::key_of(Offset r) const {
  const KeyRecord* k = record(r);
  const char* p = reinterpret_cast<const char*>(k) + sizeof(KeyRecord);
  if (r + sizeof(KeyRecord) + k->key_len > region_->mapped()) {
    (void)region_->ensure(r, sizeof(KeyRecord) + k->key_len);
  }
  return {p, k->key_len};
}

int Btree::compare(std::string_view key, uint64_t kp, uint64_t rp, Offset rec) const {
  if (kp != rp) return kp < rp ? -1 : 1;
  std::string_view rk = key_of(rec);
  size_t n = std::min(key.size(), rk.size());
  int c = n > 8 ? std::memcmp(key.data() + 8, rk.data() + 8, n - 8) : 0;
  if (c != 0) return c;
  return key.size() < rk.size() ? -1 : (key.size() > rk.size() ? 1 : 0);
}

int Btree::child_index(const Node* n, std::string_view key, uint64_t kp) const {
  int lo = 1, hi = n->count;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    // Both possible next probes, so the next miss overlaps this one.
    __builtin_prefetch(&n->prefix[(lo + mid) / 2]);
    __builtin_prefetch(&n->prefix[(mid + 1 + hi) / 2]);
    if (compare(key, kp, n->prefix[mid], n->sep[mid]) >= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

int Btree::leaf_lower_bound(const Node* n, std::string_view key, uint64_t kp, bool* found) const {
  int lo = 0, hi = n->count;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    __builtin_prefetch(&n->prefix[(lo + mid) / 2]);
    __builtin_prefetch(&n->prefix[(mid + 1 + hi) / 2]);
    if (compare(key, kp, n->prefix[mid], n->ptr[mid].load(std::memory_order_relaxed)) > 0) lo = mid + 1;
    else hi = mid;
  }
  *found = lo < n->count &&
           compare(key, kp, n->prefix[lo], n->ptr[lo].load(std::memory_order_relaxed)) == 0;
  return lo;
}

Offset Btree::find(std::string_view key) const {
  uint64_t kp = prefix_of(key);
  Offset cur = hdr_->root.load(std::memory_order_acquire);
  for (uint32_t depth = 0; cur != 0 && depth <= kMaxDepth; depth++) {
    const Node* n = node(cur);
    if (n->count > kFan) return 0;  // damaged; verify names it
    if (n->kind == uint16_t(NodeKind::kLeaf)) {
      bool found;
      int pos = leaf_lower_bound(n, key, kp, &found);
      return found ? n->ptr[pos].load(std::memory_order_relaxed) : 0;
    }
    int i = child_index(n, key, kp);
    cur = n->ptr[i].load(std::memory_order_acquire) & ~kFrozen;
    // The child's header and the middle of its key array: the first two
    // lines any search of it touches, fetched together.
    const char* c = region_->ro(cur);
    __builtin_prefetch(c);
    __builtin_prefetch(c + offsetof(Node, prefix) + 8 * (kFan / 2));
  }
  return 0;
}

Result<Offset> Btree::new_node(internal::SessionCore& s, NodeKind kind, uint32_t level) {
  size_t bytes = kind == NodeKind::kLeaf ? kLeafBytes : kInnerBytes;
  STOA_ASSIGN(Offset n, s.alloc(bytes));
  Node* p = reinterpret_cast<Node*>(s.write_ptr(n));
  p->kind = uint16_t(kind);
  p->count = 0;
  p->level = level;
  p->reserved = 0;
  return n;
}

Result<Offset> Btree::new_record(internal::SessionCore& s, std::string_view key) {
  STOA_ASSIGN(Offset r, s.alloc(sizeof(KeyRecord) + key.size()));
  KeyRecord* k = reinterpret_cast<KeyRecord*>(s.write_ptr(r));
  k->head.store(0, std::memory_order_relaxed);
  k->lock.store(0, std::memory_order_relaxed);
  k->key_len = uint32_t(key.size());
  k->flags = 0;
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

Result<bool> Btree::replace(internal::SessionCore& s, std::vector<Step>& path, size_t depth,
                            Offset old, Offset left, Offset right, Offset sep,
                            std::vector<Offset>& created, std::vector<Offset>& replaced) {
  if (right == 0) {
    uint64_t expected = old;
    bool ok = depth == 0
                  ? hdr_->root.compare_exchange_strong(expected, left, std::memory_order_acq_rel)
                  : node_rw(path[depth - 1].node)
                        ->ptr[path[depth - 1].idx]
                        .compare_exchange_strong(expected, left, std::memory_order_acq_rel);
    if (ok) replaced.push_back(old);
    return ok;
  }
  const uint64_t sep_prefix = prefix_of(key_of(sep));
  if (depth == 0) {  // the root split: a new root above it
    STOA_ASSIGN(Offset r, new_node(s, NodeKind::kInner, node(left)->level + 1));
    created.push_back(r);
    Node* n = reinterpret_cast<Node*>(s.write_ptr(r));
    n->count = 2;
    n->prefix[0] = 0;
    n->sep[0] = 0;
    n->ptr[0].store(left, std::memory_order_relaxed);
    n->prefix[1] = sep_prefix;
    n->sep[1] = sep;
    n->ptr[1].store(right, std::memory_order_relaxed);
    STOA_TRY(s.publish(r));
    uint64_t expected = old;
    if (!hdr_->root.compare_exchange_strong(expected, r, std::memory_order_acq_rel)) return false;
    replaced.push_back(old);
    return true;
  }
  const Offset p_off = path[depth - 1].node;
  const int pi = path[depth - 1].idx;
  Node* p = node_rw(p_off);
  freeze(p);
  if ((p->ptr[pi].load(std::memory_order_acquire) & ~kFrozen) != old) return false;
  // P's entries with `old` replaced by left, and (sep, right) after it.
  const uint32_t n = p->count + 1u;
  uint64_t ptrs[kFan + 1], seps[kFan + 1], prefs[kFan + 1];
  for (uint32_t i = 0, j = 0; i < p->count; i++, j++) {
    ptrs[j] = p->ptr[i].load(std::memory_order_acquire) & ~kFrozen;
    seps[j] = p->sep[i];
    prefs[j] = p->prefix[i];
    if (int(i) == pi) {
      ptrs[j] = left;
      j++;
      ptrs[j] = right;
      seps[j] = sep;
      prefs[j] = sep_prefix;
    }
  }
  auto build = [&](uint32_t from, uint32_t to) -> Result<Offset> {
    STOA_ASSIGN(Offset o, new_node(s, NodeKind::kInner, p->level));
    created.push_back(o);
    Node* q = reinterpret_cast<Node*>(s.write_ptr(o));
    q->count = uint16_t(to - from);
    for (uint32_t i = from; i < to; i++) {
      q->ptr[i - from].store(ptrs[i], std::memory_order_relaxed);
      q->sep[i - from] = i == from ? 0 : seps[i];
      q->prefix[i - from] = i == from ? 0 : prefs[i];
    }
    STOA_TRY(s.publish(o));
    return o;
  };
  if (n <= kFan) {
    STOA_ASSIGN(Offset np, build(0, n));
    return replace(s, path, depth - 1, p_off, np, 0, 0, created, replaced);
  }
  const uint32_t half = n / 2;
  STOA_ASSIGN(Offset p1, build(0, half));
  STOA_ASSIGN(Offset p2, build(half, n));
  return replace(s, path, depth - 1, p_off, p1, p2, seps[half], created, replaced);
}

Status Btree::help(internal::SessionCore& s, std::vector<Step>& path, size_t depth) {
  const Offset x_off = path[depth].node;
  Node* x = node_rw(x_off);
  freeze(x);
  STOA_ASSIGN(Offset c, new_node(s, NodeKind::kInner, x->level));
  Node* q = reinterpret_cast<Node*>(s.write_ptr(c));
  q->count = x->count;
  for (uint32_t i = 0; i < x->count; i++) {
    q->ptr[i].store(x->ptr[i].load(std::memory_order_acquire) & ~kFrozen, std::memory_order_relaxed);
    q->sep[i] = x->sep[i];
    q->prefix[i] = x->prefix[i];
  }
  STOA_TRY(s.publish(c));
  std::vector<Offset> created{c}, replaced;
  auto ok = replace(s, path, depth, x_off, c, 0, 0, created, replaced);
  if (ok.ok() && *ok) {
    for (Offset r : replaced) (void)s.retire(r);
  } else {
    for (Offset o : created) (void)s.free(o);
  }
  return ok.ok() ? Status{} : Status(std::move(ok).error());
}

Result<Offset> Btree::find_or_insert(internal::SessionCore& s, std::string_view key) {
  const uint64_t kp = prefix_of(key);
  Offset rec = 0;
  std::vector<Step> path;
  std::vector<Offset> created, replaced;
  for (int attempt = 0; attempt < 100000; attempt++) {
    path.clear();
    created.clear();
    replaced.clear();
    Offset cur = hdr_->root.load(std::memory_order_acquire);
    if (cur == 0) {
      if (rec == 0) {
        STOA_ASSIGN(rec, new_record(s, key));
      }
      STOA_ASSIGN(Offset leaf, new_node(s, NodeKind::kLeaf, 0));
      Node* n = reinterpret_cast<Node*>(s.write_ptr(leaf));
      n->count = 1;
      n->prefix[0] = kp;
      n->ptr[0].store(rec, std::memory_order_relaxed);
      STOA_TRY(s.publish(leaf));
      uint64_t expected = 0;
      if (hdr_->root.compare_exchange_strong(expected, leaf, std::memory_order_acq_rel)) {
        hdr_->records.fetch_add(1, std::memory_order_relaxed);
        return rec;
      }
      (void)s.free(leaf);
      continue;
    }
    bool helped = false;
    for (;;) {
      const Node* n = node(cur);
      if (n->count > kFan || path.size() > kMaxDepth ||
          (n->kind != uint16_t(NodeKind::kLeaf) && n->kind != uint16_t(NodeKind::kInner))) {
        return Error(Code::kCorrupt, fmt::format("{}: index node at offset {} is damaged",
                                                 region_->path(), cur));
      }
      if (n->kind == uint16_t(NodeKind::kLeaf)) break;
      int i = child_index(n, key, kp);
      path.push_back({cur, i});
      uint64_t w = n->ptr[i].load(std::memory_order_acquire);
      if (w & kFrozen) {
        STOA_TRY(help(s, path, path.size() - 1));
        helped = true;
        break;
      }
      cur = w;
    }
    if (helped) continue;
    path.push_back({cur, -1});
    const Node* leaf = node(cur);
    bool found;
    const int pos = leaf_lower_bound(leaf, key, kp, &found);
    if (found) {
      if (rec != 0) (void)s.free(rec);
      return leaf->ptr[pos].load(std::memory_order_relaxed);
    }
    if (rec == 0) {
      STOA_ASSIGN(rec, new_record(s, key));
    }
    const uint32_t n = leaf->count + 1u;
    uint64_t recs[kFan + 1], prefs[kFan + 1];
    for (uint32_t i = 0, j = 0; j < n; j++) {
      if (int(j) == pos) {
        recs[j] = rec;
        prefs[j] = kp;
      } else {
        recs[j] = leaf->ptr[i].load(std::memory_order_relaxed);
        prefs[j] = leaf->prefix[i];
        i++;
      }
    }
    auto build = [&](uint32_t from, uint32_t to) -> Result<Offset> {
      STOA_ASSIGN(Offset o, new_node(s, NodeKind::kLeaf, 0));
      created.push_back(o);
      Node* q = reinterpret_cast<Node*>(s.write_ptr(o));
      q->count = uint16_t(to - from);
      for (uint32_t i = from; i < to; i++) {
        q->ptr[i - from].store(recs[i], std::memory_order_relaxed);
        q->prefix[i - from] = prefs[i];
      }
      STOA_TRY(s.publish(o));
      return o;
    };
    Result<bool> linked = false;
    if (n <= kFan) {
      STOA_ASSIGN(Offset nl, build(0, n));
      linked = replace(s, path, path.size() - 1, cur, nl, 0, 0, created, replaced);
    } else {
      const uint32_t half = n / 2;
      STOA_ASSIGN(Offset l, build(0, half));
      STOA_ASSIGN(Offset r, build(half, n));
      linked = replace(s, path, path.size() - 1, cur, l, r, recs[half], created, replaced);
    }
    if (linked.ok() && *linked) {
      for (Offset o : replaced) (void)s.retire(o);
      hdr_->records.fetch_add(1, std::memory_order_relaxed);
      return rec;
    }
    for (Offset o : created) (void)s.free(o);
    if (!linked.ok()) return std::move(linked).error();
  }
  return Error(Code::kConflict, "index insert did not settle after many attempts");
}

// ---------------------------------------------------------------------------
// Iteration

void Btree::Iter::descend_edge(Offset cur, bool reverse) {
  for (uint32_t d = 0; d <= kMaxDepth; d++) {
    const Node* n = t_->node(cur);
    if (n->count == 0 || n->count > kFan) break;
    int idx = reverse ? n->count - 1 : 0;
    stack_.push_back({cur, idx});
    if (n->kind == uint16_t(NodeKind::kLeaf)) {
      valid_ = true;
      rec_ = n->ptr[idx].load(std::memory_order_relaxed);
      return;
    }
    cur = n->ptr[idx].load(std::memory_order_acquire) & ~kFrozen;
  }
  valid_ = false;
}

void Btree::Iter::seek(std::string_view key, bool reverse) {
  stack_.clear();
  reverse_ = reverse;
  valid_ = false;
  Offset cur = t_->hdr_->root.load(std::memory_order_acquire);
  if (cur == 0) return;
  if (reverse && key.empty()) {
    descend_edge(cur, true);
    return;
  }
  const uint64_t kp = prefix_of(key);
  for (uint32_t d = 0; d <= kMaxDepth; d++) {
    const Node* n = t_->node(cur);
    if (n->count > kFan) return;
    if (n->kind == uint16_t(NodeKind::kLeaf)) {
      bool found;
      int pos = t_->leaf_lower_bound(n, key, kp, &found);
      if (reverse && !found) pos--;
      stack_.push_back({cur, pos});
      if (pos >= 0 && pos < n->count) {
        valid_ = true;
        rec_ = n->ptr[pos].load(std::memory_order_relaxed);
      } else {
        // Off this leaf's end: step to the neighbour.
        stack_.back().idx = reverse ? 0 : n->count - 1;
        valid_ = true;
        next();
      }
      return;
    }
    int i = t_->child_index(n, key, kp);
    stack_.push_back({cur, i});
    cur = n->ptr[i].load(std::memory_order_acquire) & ~kFrozen;
  }
}

void Btree::Iter::next() {
  if (!valid_) return;
  valid_ = false;
  while (!stack_.empty()) {
    Level& top = stack_.back();
    const Node* n = t_->node(top.node);
    top.idx += reverse_ ? -1 : 1;
    if (top.idx >= 0 && top.idx < n->count) {
      Offset child = n->ptr[top.idx].load(std::memory_order_acquire) & ~kFrozen;
      if (n->kind == uint16_t(NodeKind::kLeaf)) {
        valid_ = true;
        rec_ = child;
        return;
      }
      descend_edge(child, reverse_);
      return;
    }
    stack_.pop_back();
  }
}

}  // namespace stoa::index
