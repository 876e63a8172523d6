// fuzz/open_fuzz.cc — a mutated data file that open TRUSTS, then used.
//
// Template (made once per process): a store of kKeys keys (a B-tree of three
// levels, version chains, tombstones, values in their own blocks), a
// checkpoint and log after it, closed cleanly. Its log header names this
// boot, so with no `stoa.sum` a lone open trusts the data file
// (store_durable.cc): the mutated bytes are what open, verify and the
// transactions read, not a rebuilt copy.
//
// Input: byte 0 holds flags, the rest is edits in the patch format of
// fuzz_util.h over regions of the template: the file header, heap metadata,
// index and log headers, every inner node and a sample of leaves, key
// records, versions and run headers, 64 KiB windows of the whole file, and
// the lock file's header and slots.
//   bit 0: recompute the file header's checksum after the edits (reach the
//          layout checks behind it);
//   bit 1: keep the (edited) lock file; otherwise it is removed (rebuilt);
//   bit 2: vouch for the edited file with a matching `stoa.sum` (the
//          clean-shutdown path: check_sum) instead of the boot id;
//   bit 3: checkpoint after use (walks the edited index into a file).
// Each input runs in a fresh directory. Then: open, verify, a scan of every
// key, gets, puts and a commit, allocations, close (which writes the sum).
// Any outcome is fine except a crash, a hang or a sanitizer report.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "index/layout.h"
#include "region/heap.h"
#include "region/layout.h"
#include "store/layout.h"
#include "store/store_impl.h"

namespace stoa::fuzz {
namespace {

constexpr int kKeys = 3000;
constexpr size_t kMaxLeaves = 48;
constexpr size_t kMaxRecords = 24;
constexpr size_t kMaxRuns = 24;

struct Template {
  DirFiles files;  // without stoa.sum
  uint64_t end_ts = 0;
  KV want;
  std::vector<Region> data_regions;
  std::vector<Region> lock_regions;
};

// Commits the template's history: every key, then updates (version chains)
// and deletes, a checkpoint, then more updates in the log after it.
void fill(Store& store, KV* want) {
  Batch batch(store, want);
  for (int i = 0; i < kKeys; i++) {
    const int k = int((uint64_t(i) * 7919) % kKeys);  // scattered inserts: split everywhere
    batch.add(template_key(k), template_value(k, 0));
    if (batch.size() == 250) batch.commit();
  }
  batch.commit();
  for (int i = 0; i < kKeys; i += 5) batch.add(template_key(i), template_value(i, 1));
  for (int i = 3; i < kKeys; i += 11) batch.add(template_key(i), "");
  batch.commit();
  if (auto c = store.checkpoint(); !c.ok()) die("template checkpoint", c.error());
  for (int i = 0; i < kKeys; i += 7) {
    batch.add(template_key(i), template_value(i, 2));
    if (batch.size() == 100) batch.commit();
  }
  batch.commit();
}

// The regions edits may hit, most telling first (at most 256).
void find_regions(Template* t) {
  const std::string& d = t->files.at(internal::kDataFileName);
  auto at = [&](uint64_t off) { return d.data() + off; };
  auto& r = t->data_regions;
  r.push_back({0, region::kPageSize});
  r.push_back({region::kHeapMetaOffset, region::kPageSize});
  r.push_back({internal::kIndexRootOffset, internal::kIndexRootBytes});
  r.push_back({internal::kLogRootOffset, sizeof(log::LogHeader)});
  // The tree, level by level: every inner node, a sample of leaves, and the
  // records and newest versions of a few keys.
  const auto* ih = reinterpret_cast<const index::IndexHeader*>(at(internal::kIndexRootOffset));
  std::vector<uint64_t> level{ih->root.load()}, leaves;
  uint32_t depth = 0;
  while (!level.empty()) {
    std::vector<uint64_t> next;
    for (uint64_t n : level) {
      const auto* node = reinterpret_cast<const index::Node*>(at(n));
      if (node->level == 0) {
        leaves.push_back(n);
        continue;
      }
      r.push_back({n - region::kBlockHeaderSize, region::kBlockHeaderSize + index::kInnerBytes});
      for (uint32_t i = 0; i < node->count; i++)
        next.push_back(node->ptr[i].load() & ~index::kFrozen);
    }
    level = std::move(next);
    depth++;
  }
  if (depth < 3) {
    std::fprintf(stderr, "fuzz: the template's tree has %u levels, want 3\n", depth);
    std::abort();
  }
  for (size_t i = 0; i < leaves.size() && i < kMaxLeaves; i++) {
    const uint64_t n = leaves[i * leaves.size() / kMaxLeaves % leaves.size()];
    r.push_back({n - region::kBlockHeaderSize, region::kBlockHeaderSize + index::kLeafBytes});
  }
  for (size_t i = 0; i < kMaxRecords; i++) {
    const auto* leaf = reinterpret_cast<const index::Node*>(at(leaves[i * 7 % leaves.size()]));
    const uint64_t rec = leaf->ptr[i % leaf->count].load();
    const auto* kr = reinterpret_cast<const index::KeyRecord*>(at(rec));
    r.push_back({rec - region::kBlockHeaderSize,
                 region::kBlockHeaderSize + sizeof(index::KeyRecord) + kr->key_len});
    if (const uint64_t v = kr->head.load(); v != 0) {
      r.push_back(
          {v - region::kBlockHeaderSize, region::kBlockHeaderSize + sizeof(index::Version) + 16});
    }
  }
  // Run headers with the first block of each run.
  const uint64_t seed = reinterpret_cast<const region::FileHeader*>(at(0))->seed;
  std::vector<Region> runs;
  for (uint64_t off = region::kHeapStart; off + region::kPageSize <= d.size();) {
    region::RunInfo ri;
    const auto* rh = reinterpret_cast<const region::RunHeader*>(at(off));
    if (!region::decode_run(seed, off, rh->word.load(), &ri)) break;
    runs.push_back({off, region::kRunHeaderSize + 64});
    off += ri.npages * region::kPageSize;
  }
  for (size_t i = 0; i < runs.size() && i < kMaxRuns; i++) {
    r.push_back(runs[i * runs.size() / kMaxRuns % runs.size()]);
  }
  for (uint64_t w = 0; w < d.size() && r.size() < 256; w += 64 << 10) {
    r.push_back({w, std::min<uint64_t>(64 << 10, d.size() - w)});
  }
  if (r.size() > 256) r.resize(256);
  // The lock file: its header page, then the slots.
  const uint64_t lock = t->files.at(internal::kLockFileName).size();
  for (uint64_t w = 0; w < lock && t->lock_regions.size() < 16; w += region::kPageSize) {
    t->lock_regions.push_back({w, std::min<uint64_t>(region::kPageSize, lock - w)});
  }
}

const Template& get_template() {
  static const Template t = [] {
    Template t;
    ScratchDir dir("open-template");
    {
      auto s = Store::open(dir.path(), fuzz_options());
      if (!s.ok()) die("template open", s.error());
      fill(**s, &t.want);
    }
    t.files = snapshot_dir(dir.path());
    const std::string sum = t.files[internal::kSumFileName];
    if (sum.size() >= sizeof(log::SumHeader)) {
      t.end_ts = reinterpret_cast<const log::SumHeader*>(sum.data())->end_ts;
    }
    t.files.erase(internal::kSumFileName);
    find_regions(&t);
    if (verbose()) {
      std::fprintf(stderr, "template: %zu files, data %zu bytes, %zu+%zu regions\n", t.files.size(),
                   t.files.at(internal::kDataFileName).size(), t.data_regions.size(),
                   t.lock_regions.size());
    }
    return t;
  }();
  return t;
}

}  // namespace

std::vector<Seed> fuzz_seeds() {
  std::vector<Seed> seeds;
  for (uint8_t flags : {0, 2, 4, 8}) seeds.push_back({std::string(1, char(flags)), true});
  // One small edit in each kind of region: header (checksum fixed), heap
  // metadata, index header, root node, a leaf, a run header.
  for (uint8_t region : {0, 1, 2, 4, 40, 120}) {
    seeds.push_back(edit_seed(region == 0 ? 1 : 0, region, 0x10, 1));
  }
  return seeds;
}

}  // namespace stoa::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* in, size_t size) {
  using namespace stoa;
  using namespace stoa::fuzz;
  const Template& t = get_template();
  Outcome& out = new_outcome();
  if (size == 0) return 0;
  const uint8_t flags = in[0];
  DirFiles files = t.files;
  std::string& data = files[internal::kDataFileName];
  std::string& lock = files[internal::kLockFileName];
  // Region indices: the data file's regions, then the lock file's.
  std::vector<Region> regions = t.data_regions;
  const size_t n_data = regions.size();
  for (const Region& g : t.lock_regions) regions.push_back({g.at, g.len});
  std::vector<std::string*> targets(regions.size(), &data);
  for (size_t i = n_data; i < regions.size(); i++) targets[i] = &lock;
  for_each_edit(in + 1, size - 1, regions.size(),
                [&](size_t r, uint32_t off, const uint8_t* b, size_t n) {
                  xor_into(targets[r], regions[r], off, b, n);
                });
  if (flags & 1) {
    auto* h = reinterpret_cast<region::FileHeader*>(data.data());
    fix_struct_checksum(h);
  }
  if (!(flags & 2)) files.erase(internal::kLockFileName);
  if (flags & 4) files[internal::kSumFileName] = sum_file_for(data, t.end_ts);

  ScratchDir dir("open");
  restore_dir(dir.path(), files);
  Options o = fuzz_options();
  o.create_if_missing = false;
  auto s = Store::open(dir.path(), o);
  if (!s.ok()) {
    note_error(&out, s.error());
    return 0;
  }
  note_open(**s, &out);
  exercise_store(**s, t.want, (flags & 8) != 0, &out);
  return 0;
}
