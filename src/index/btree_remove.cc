// index/btree_remove.cc — deleted keys leave the index; small nodes merge.
//
// A delete installs a tombstone (txn.cc). Once the trim threshold passes
// it, no snapshot can read any older version of the key, and the key reads
// as absent to every snapshot whether its record is in the index or not.
// The transaction layer (TxnManager::remove_deleted) then marks the record
// kRemoved: it locks it as a committer would (listed in its session slot,
// so a survivor unlocks it if the remover dies), checks the head is still
// that tombstone, and stores kRemoved in place of its lock word. kRemoved
// is final: nobody locks the record again and nothing is installed on it.
//
// Unlinking (unlink_removed) copies the leaf without its kRemoved records
// and links the copy by the usual CAS. A copy left under kMinFill entries
// merges with a neighbour instead (shrink): the parent is frozen (so no
// child word of it changes, btree.cc), an inner neighbour too, their
// entries are built into one node (two when they do not fit), and the
// parent is rebuilt around them and shrunk the same way one level up. A
// root left with one child gives way to that child; an empty tree has root
// 0. Each step is published before the CAS that links it, exactly as
// splits are, so a reader walking old nodes sees a whole old tree.
//
// Writers that meet a kRemoved record (find_or_insert_batch, a commit whose
// lock attempt finds the mark) take a fresh record for the key in that
// leaf's copy; whoever's CAS unlinks a kRemoved record retires it with its
// versions (one recorder entry for the lot: SessionCore::retire_all), so
// it is retired exactly once. Separators are records of their own: a merge
// that drops one retires it with the replaced nodes.
//
// Death. Killed after marking and before the CAS (index.remove.marked):
// the marked records stay linked, absent to every reader; the next writer
// of such a key, or the next unlink pass over that leaf, drops them. Killed
// while merging (index.merge, index.freeze): the parent (and an inner
// neighbour) stay frozen; the next writer that meets a frozen word replaces
// the node with an unfrozen copy (help). Built but unlinked copies are the
// same bounded leak as a split's.
#include <algorithm>

#include <fmt/format.h>

#include "crash/crash_point.h"
#include "index/btree.h"
#include "index/version_chain.h"

namespace stoa::index {

Btree::Entries Btree::entries_of(const Node* n) const {
  Entries e;
  const bool inner = n->kind == uint16_t(NodeKind::kInner);
  for (int i = 0; i < n->count; i++) {
    e.add(n->ptr[i].load(std::memory_order_acquire) & ~kFrozen, inner ? n->sep[i] : 0,
          n->prefix[i]);
  }
  return e;
}

void Btree::retire_unlinked(internal::SessionCore& s, const std::vector<Offset>& dead,
                            std::vector<Offset> blocks) {
  // kRemoved: nobody else changes their chains. A damaged link leaks the rest.
  const VersionChain chain(*region_);
  for (Offset r : dead) {
    (void)chain.walk(record(r)->head.load(std::memory_order_acquire),
                     [&](Offset v, const Version& ver) {
                       if (ver.blob != 0) blocks.push_back(ver.blob);
                       blocks.push_back(v);
                       return true;
                     });
    blocks.push_back(r);
  }
  (void)s.retire_all(blocks);
  hdr_->records.fetch_sub(dead.size(), std::memory_order_relaxed);
  hdr_->removed.fetch_add(dead.size(), std::memory_order_relaxed);
}

Result<bool> Btree::shrink(internal::SessionCore& s, std::vector<Step>& path, size_t depth,
                           Offset old, NodeKind kind, uint32_t level, Entries e,
                           std::vector<Offset>& created, std::vector<Offset>& replaced) {
  std::vector<Offset> nodes, nseps;
  if (depth == 0) {
    Offset root = 0;  // nothing left: the empty tree
    if (kind == NodeKind::kInner && e.size() == 1) {
      root = e.ptrs[0];  // one child left: it becomes the root
    } else if (e.size() > 0) {
      STOA_TRY(build_nodes(s, kind, level, e.ptrs, e.seps, e.prefs, &nodes, &nseps, created));
      root = nodes[0];  // fewer entries than the old root: one node
    }
    uint64_t expected = old;
    if (!hdr_->root.compare_exchange_strong(expected, root, std::memory_order_acq_rel)) {
      return false;
    }
    replaced.push_back(old);
    return true;
  }
  if (e.size() >= kMinFill) {
    STOA_TRY(build_nodes(s, kind, level, e.ptrs, e.seps, e.prefs, &nodes, &nseps, created));
    return replace(s, path, depth, old, std::move(nodes), std::move(nseps), created, replaced);
  }
  const Offset p_off = path[depth - 1].node;
  const int pi = path[depth - 1].idx;
  Node* p = node_rw(p_off);
  if (!shape_ok(p, p_off) || p->sum != node_sum(*p)) return damaged_copy(p_off);
  freeze(p);
  if ((p->ptr[pi].load(std::memory_order_acquire) & ~kFrozen) != old) return false;
  Entries up;  // the parent's entries after the merge
  if (p->count == 1) {
    // No neighbour: the node stays alone under its parent (or goes).
    if (e.size() > 0) {
      STOA_TRY(build_nodes(s, kind, level, e.ptrs, e.seps, e.prefs, &nodes, &nseps, created));
      up.add(nodes[0], 0, 0);
    }
  } else {
    const int si = pi + 1 < p->count ? pi + 1 : pi - 1;
    const int left = std::min(pi, si), right = std::max(pi, si);
    const Offset s_off = p->ptr[si].load(std::memory_order_acquire) & ~kFrozen;
    Node* sn = node_rw(s_off);
    if (!shape_ok(sn, s_off) || sn->sum != node_sum(*sn) || sn->kind != uint16_t(kind) ||
        sn->level != level) {
      return damaged_copy(s_off);
    }
    if (kind == NodeKind::kInner) freeze(sn);
    Entries es = entries_of(sn);
    const Entries& lo = pi == left ? e : es;
    const Entries& hi = pi == left ? es : e;
    Entries merged = lo;
    for (size_t k = 0; k < hi.size(); k++) {
      // An inner node's separator between the two moves down into the
      // merged node; a leaf's, or one that lands in unused slot 0, goes.
      if (k == 0 && kind == NodeKind::kInner) {
        merged.add(hi.ptrs[0], p->sep[right], p->prefix[right]);
      } else {
        merged.add(hi.ptrs[k], hi.seps[k], hi.prefs[k]);
      }
    }
    if (kind == NodeKind::kLeaf || lo.size() == 0 || hi.size() == 0) {
      replaced.push_back(p->sep[right]);
    }
    STOA_TRY(build_nodes(s, kind, level, merged.ptrs, merged.seps, merged.prefs, &nodes, &nseps,
                         created));
    replaced.push_back(s_off);
    for (int k = 0; k < p->count; k++) {
      if (k == right) continue;
      if (k != left) {
        up.add(p->ptr[k].load(std::memory_order_acquire) & ~kFrozen, p->sep[k], p->prefix[k]);
        continue;
      }
      for (size_t q = 0; q < nodes.size(); q++) {
        up.add(nodes[q], q == 0 ? p->sep[left] : nseps[q],
               q == 0 ? p->prefix[left] : prefix_of(key_of(nseps[q])));
      }
    }
  }
  replaced.push_back(old);
  STOA_CRASH_POINT(kIndexMerge);
  return shrink(s, path, depth - 1, p_off, NodeKind::kInner, p->level, std::move(up), created,
                replaced);
}

Result<uint64_t> Btree::unlink_removed(internal::SessionCore& s,
                                       const std::vector<std::string_view>& keys) {
  const size_t n = keys.size();
  uint64_t unlinked = 0;
  std::vector<Step> path;
  std::vector<Offset> created, replaced;
  size_t i = 0;
  for (int attempt = 0; i < n; attempt++) {
    if (attempt > 1000000) {
      return Error(Code::kConflict, "index removal did not settle after many attempts");
    }
    path.clear();
    created.clear();
    replaced.clear();
    Offset hi = 0;
    uint64_t hi_prefix = 0;
    STOA_ASSIGN(std::optional<Offset> leaf_at,
                descend(s, keys[i], prefix_of(keys[i]), path, &hi, &hi_prefix));
    if (!leaf_at.has_value()) continue;  // helped a frozen node: again from the root
    const Offset cur = *leaf_at;
    if (cur == 0) break;  // empty tree
    size_t j = i + 1;
    while (j < n && (hi == 0 || compare(keys[j], prefix_of(keys[j]), hi_prefix, hi) < 0)) j++;
    const Node* leaf = node(cur);
    if (!shape_ok(leaf, cur) || leaf->sum != node_sum(*leaf)) return damaged_copy(cur);
    Entries keep;
    std::vector<Offset> dead;
    for (int k = 0; k < leaf->count; k++) {
      const Offset r = leaf->ptr[k].load(std::memory_order_relaxed);
      if (record(r)->lock.load(std::memory_order_acquire) == kRemoved) {
        dead.push_back(r);
      } else {
        keep.add(r, 0, leaf->prefix[k]);
      }
    }
    if (dead.empty()) {
      i = j;
      continue;
    }
    path.push_back({cur, -1});
    Result<bool> linked = shrink(s, path, path.size() - 1, cur, NodeKind::kLeaf, 0, std::move(keep),
                                 created, replaced);
    if (linked.ok() && *linked) {
      STOA_CRASH_POINT(kIndexCas);
      retire_unlinked(s, dead, std::move(replaced));
      unlinked += dead.size();
      i = j;
      continue;
    }
    for (Offset o : created) (void)s.free(o);
    if (!linked.ok()) return std::move(linked).error();
  }
  return unlinked;
}

}  // namespace stoa::index
