// index/btree_verify.cc — Btree::verify: the whole tree walked and every
// rule of btree.cc and index/layout.h checked, each problem naming an
// offset. Read-only; the caller is pinned (or alone), so nodes and records
// retired by concurrent writers stay readable during the walk.
#include <string>
#include <vector>

#include <fmt/format.h>

#include "index/btree.h"
#include "index/version_chain.h"
#include "stoa/txn_options.h"

namespace stoa::index {

namespace {

// What verify() collects: problems, at most 100, each naming an offset.
class Verifier {
 public:
  Verifier(region::Heap& heap, const std::string& path, std::vector<std::string>* out)
      : heap_(heap), path_(path), out_(out) {}
  void problem(std::string s) {
    if (out_->size() < 100) out_->push_back(fmt::format("{}: index: {}", path_, s));
  }
  // Whether `off` is a live heap block of at least `need` bytes.
  bool live_block(Offset off, size_t need, const char* what) {
    auto sz = heap_.usable_size(off);
    if (!sz.ok()) {
      problem(fmt::format("{} at offset {}: {}", what, off, sz.error().message()));
      return false;
    }
    if (*sz < need) {
      problem(fmt::format("{} at offset {}: block of {} bytes, needs {}", what, off, *sz, need));
      return false;
    }
    return true;
  }

 private:
  region::Heap& heap_;
  const std::string& path_;
  std::vector<std::string>* out_;
};

// A key record's checksum and every version of its chain: live blocks,
// timestamps strictly descending and never past `last_ts`, both checksums
// (blob values included).
void verify_versions(Verifier& vf, const VersionChain& chain, Offset r, const KeyRecord& k,
                     std::string_view key, uint64_t last_ts) {
  const uint64_t kh = VersionChain::key_hash(key);
  if (uint32_t(kh) != k.key_sum) {
    vf.problem(fmt::format("key record at offset {} (key {}): fails its checksum", r,
                           VersionChain::printable(key)));
    return;
  }
  uint64_t prev_ts = last_ts + 1;
  Status walked =
      chain.walk(k.head.load(std::memory_order_acquire), [&](Offset v, const Version& ver) {
        if (!vf.live_block(v, sizeof(Version), "version")) return false;
        if (ver.ts >= prev_ts || ver.ts == 0) {
          vf.problem(fmt::format("version at offset {}: timestamp {} after {} in its chain", v,
                                 ver.ts, prev_ts));
          return false;
        }
        uint64_t len = ver.len & ~kTombstone;
        if (ver.blob != 0 ? !vf.live_block(ver.blob, len, "value blob")
                          : !vf.live_block(v, sizeof(Version) + len, "version")) {
          return false;
        }
        std::string_view value;
        Status st = VersionChain::head_ok(ver, kh)
                        ? chain.check_value(v, ver, key, kh, true, &value)
                        : Status(chain.bad_sum(v, key, "header"));
        if (!st.ok()) {
          vf.problem(st.error().message());
          return false;
        }
        prev_ts = ver.ts;
        return true;
      });
  if (!walked.ok()) vf.problem(walked.error().message());
}

}  // namespace

uint64_t Btree::verify(region::Heap& heap, uint64_t last_ts,
                       std::vector<std::string>* problems) const {
  Verifier vf(heap, region_->path(), problems);
  const VersionChain chain(*region_);
  uint64_t records = 0;
  std::string prev_key;
  bool have_prev = false;
  struct Frame {
    Offset node;
    int level;
    Offset lo, hi;  // separator records bounding its keys (0: none)
  };
  // Depth-first, children in order, so leaves come left to right and every
  // key must exceed the one before it; each key also lies within the
  // separators above it.
  std::vector<Frame> stack;
  Offset root = hdr_->root.load(std::memory_order_acquire);
  if (root != 0) stack.push_back({root, -1, 0, 0});
  while (!stack.empty()) {
    Frame f = stack.back();
    stack.pop_back();
    if (!vf.live_block(f.node, kLeafBytes, "node")) continue;
    const Node* n = node(f.node);
    const bool leaf = n->kind == uint16_t(NodeKind::kLeaf);
    if ((!leaf && n->kind != uint16_t(NodeKind::kInner)) || n->count == 0 || n->count > kFan ||
        (f.level >= 0 && int(n->level) != f.level) || (leaf != (n->level == 0))) {
      vf.problem(fmt::format("node at offset {}: kind {} count {} level {}", f.node, n->kind,
                             n->count, n->level));
      continue;
    }
    if (n->check != node_check(*n, f.node)) {
      vf.problem(fmt::format("node at offset {}: fails its check word", f.node));
      continue;
    }
    if (n->sum != node_sum(*n)) {
      vf.problem(fmt::format("node at offset {}: fails its entry checksum", f.node));
    }
    if (!leaf) {
      if (!vf.live_block(f.node, kInnerBytes, "inner node")) continue;
      for (int i = n->count - 1; i >= 0; i--) {
        if (i > 0 && (!vf.live_block(n->sep[i], sizeof(KeyRecord), "separator") ||
                      record(n->sep[i])->lock.load(std::memory_order_relaxed) != kSeparator ||
                      record(n->sep[i])->head.load(std::memory_order_relaxed) != 0)) {
          vf.problem(
              fmt::format("inner node at offset {}: separator {} (offset {}) is not a "
                          "separator record",
                          f.node, i, n->sep[i]));
        }
        if (i > 0 && prefix_of(key_of(n->sep[i])) != n->prefix[i]) {
          vf.problem(
              fmt::format("inner node at offset {}: separator {} prefix does not match "
                          "its key",
                          f.node, i));
        }
        Offset c = n->ptr[i].load(std::memory_order_acquire) & ~kFrozen;
        stack.push_back({c, int(n->level) - 1, i > 0 ? n->sep[i] : f.lo,
                         i + 1 < n->count ? n->sep[i + 1] : f.hi});
      }
      continue;
    }
    for (int i = 0; i < n->count; i++) {
      Offset r = n->ptr[i].load(std::memory_order_relaxed);
      if (!vf.live_block(r, sizeof(KeyRecord), "key record")) continue;
      const KeyRecord* k = record(r);
      if (k->key_len == 0 || k->key_len > kMaxKeySize ||
          !vf.live_block(r, sizeof(KeyRecord) + k->key_len, "key record")) {
        vf.problem(fmt::format("key record at offset {}: key length {}", r, k->key_len));
        continue;
      }
      if (k->lock.load(std::memory_order_relaxed) == kSeparator) {
        vf.problem(fmt::format("leaf at offset {}: entry {} names a separator record", f.node, i));
      }
      std::string_view key = key_of(r);
      if (prefix_of(key) != n->prefix[i]) {
        vf.problem(
            fmt::format("leaf at offset {}: entry {} prefix does not match its key", f.node, i));
      }
      if (have_prev && !(std::string_view(prev_key) < key)) {
        vf.problem(fmt::format("leaf at offset {}: keys out of order at entry {}", f.node, i));
      }
      if ((f.lo != 0 && key < key_of(f.lo)) || (f.hi != 0 && !(key < key_of(f.hi)))) {
        vf.problem(
            fmt::format("leaf at offset {}: entry {} lies outside its separators", f.node, i));
      }
      prev_key.assign(key);
      have_prev = true;
      records++;
      verify_versions(vf, chain, r, *k, key, last_ts);
    }
  }
  return records;
}

}  // namespace stoa::index
