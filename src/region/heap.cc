// region/heap.cc — the allocator: page runs, slabs, central lists, caches.
//
// States and owners. Every block's tag says who may change it: kCached and
// kOwned blocks belong to the session (slot, gen) in the tag; kRetired ones
// too (they sit in its purgatory); kFree blocks belong to the central list of
// their class and change only under that class's lock; kLive blocks belong
// to the shared structure that links them. A session therefore needs no lock
// for its own cache, and a dead session's memory is found by walking the
// heap for its (slot, gen): what it cached or allocated privately is freed,
// what it retired moves to the recoverer's purgatory. The cache list heads
// in its slot are never trusted after death.
//
// Central lists (class lock, a robust mutex). Pop: retag the first k blocks
// kCached(self), then move the head past them. Push: link the chain in front
// of the head, move the head, then retag the chain kFree. A holder that dies
// part-way leaves blocks of its own tag inside the list, never kFree blocks
// outside it; the next locker sees EOWNERDEAD and repairs by walking the
// list and retagging everything in it kFree. Recovery of a dead session
// first takes every class lock once, so that repair happens before its scan
// (otherwise the scan would free a block that is still in a list).
//
// Page heap (page lock, a robust mutex). Runs lie back to back from
// kHeapStart to file_size; each run's header word (kind, class, pages,
// guard) is written by one atomic store, the commit point of every page
// operation: split writes the remainder's header first, then the allocated
// run's word; merge writes the merged word, then the footer. Bins (free-run
// lists) and footers are hints derived from the walk; a holder that dies
// part-way leaves them stale, and the next locker, seeing EOWNERDEAD,
// rebuilds them by walking the runs (merging adjacent free runs). Growth
// writes the new free run's header, then publishes file_size (release).
//
// Slabs are never returned to the page heap in this version: freed small
// blocks are reused by their class only.
#include "region/heap.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "crash/crash_point.h"

namespace stoa::region {

namespace {

constexpr uint64_t kFooterSize = sizeof(RunFooter);

uint32_t cache_max(uint32_t cls) { return std::max<uint32_t>(8, 32768 / kClassSize[cls]); }
uint32_t batch_size(uint32_t cls) { return std::max<uint32_t>(4, 16384 / kClassSize[cls]); }
uint64_t slab_blocks(uint32_t cls) {
  return (uint64_t{kSlabPages} * kPageSize - kRunHeaderSize) / kClassSize[cls];
}

}  // namespace

uint32_t class_for(size_t size) {
  if (size > kMaxSmallBody) return kLargeClass;
  size_t need = size + kBlockHeaderSize;
  const uint32_t* it = std::lower_bound(kClassSize, kClassSize + kNumClasses, uint32_t(need));
  return uint32_t(it - kClassSize);
}

Heap::Heap(Region* region, bool poison_freed)
    : region_(region), seed_(region->seed()), poison_(poison_freed) {}

// ---------------------------------------------------------------------------
// Block checks

Result<Offset> Heap::check_block(Offset body, Tag* t) const {
  if (body % 16 != 0 || body < kHeapStart + kRunHeaderSize + kBlockHeaderSize) {
    return Error(Code::kInvalidArgument, fmt::format("offset {} is not a block", body));
  }
  Offset block = body - kBlockHeaderSize;
  if (!region_->ensure(block, kBlockHeaderSize).ok()) {
    return Error(
        Code::kInvalidArgument,
        fmt::format("offset {} lies beyond the data file ({} bytes)", body, region_->file_size()));
  }
  uint64_t word =
      reinterpret_cast<const BlockHeader*>(region_->ro(block))->tag.load(std::memory_order_acquire);
  if (!decode_tag(seed_, block, word, t)) {
    return Error(Code::kCorrupt,
                 fmt::format("{}: no valid block header at offset {} (not a block, or its guard "
                             "word is damaged)",
                             region_->path(), block));
  }
  if (t->klass == kLargeClass) {
    if (t->state == BlockState::kFree) {  // see free_run_locked
      return Error(Code::kInvalidArgument,
                   fmt::format("block {}: a large block already freed (double free)", body));
    }
    RunInfo r;
    if (block < kRunHeaderSize || !run_at(block - kRunHeaderSize, &r) ||
        r.kind != RunKind::kLarge) {
      return Error(Code::kCorrupt, fmt::format("{}: large block at offset {} has no valid run "
                                               "header at {}",
                                               region_->path(), block, block - kRunHeaderSize));
    }
  } else if (t->klass >= kNumClasses) {
    return Error(Code::kCorrupt, fmt::format("{}: block at offset {} has size class {}",
                                             region_->path(), block, t->klass));
  }
  return block;
}

static uint64_t block_bytes(const Region* r, uint64_t seed, Offset block, const Tag& t) {
  if (t.klass != kLargeClass) return kClassSize[t.klass];
  RunInfo ri;
  uint64_t w = reinterpret_cast<const RunHeader*>(r->ro(block - kRunHeaderSize))
                   ->word.load(std::memory_order_acquire);
  if (!decode_run(seed, block - kRunHeaderSize, w, &ri)) return 0;
  return ri.npages * kPageSize;
}

static Error wrong_state(const Region* r, Offset body, const Tag& t, const Owner& o,
                         const char* op) {
  if (t.state == BlockState::kFree || t.state == BlockState::kCached) {
    return Error(Code::kInvalidArgument,
                 fmt::format("{} of block {}: already free (double free)", op, body));
  }
  if ((t.state == BlockState::kOwned || t.state == BlockState::kRetired) &&
      (t.slot != o.slot || t.gen != (o.gen & kGenMask))) {
    return Error(
        Code::kInvalidArgument,
        fmt::format("{} of block {}: it belongs to session {} (gen {})", op, body, t.slot, t.gen));
  }
  (void)r;
  return Error(Code::kInvalidArgument,
               fmt::format("{} of block {}: not allowed in state {}", op, body, int(t.state)));
}

static bool owned_by(const Tag& t, const Owner& o) {
  return t.slot == o.slot && t.gen == (o.gen & kGenMask);
}

Result<size_t> Heap::usable_size(Offset body) const {
  Tag t;
  STOA_ASSIGN(Offset block, check_block(body, &t));
  if (t.state == BlockState::kFree || t.state == BlockState::kCached) {
    return Error(Code::kInvalidArgument, fmt::format("block {} is free", body));
  }
  uint64_t bytes = block_bytes(region_, seed_, block, t);
  if (t.klass == kLargeClass) return size_t(bytes - kRunHeaderSize - kBlockHeaderSize);
  return size_t(bytes - kBlockHeaderSize);
}

void Heap::set_link(Offset body, uint64_t next) {
  blk(body - kBlockHeaderSize)->link.store(next, std::memory_order_relaxed);
}
uint64_t Heap::link(Offset body) const {
  return blk(body - kBlockHeaderSize)->link.load(std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// Allocation

Result<Offset> Heap::alloc(Owner& o, size_t size) {
  if (size == 0 || size > region_->max_size()) {
    return Error(Code::kInvalidArgument, fmt::format("allocation of {} bytes (allowed: 1 to {})",
                                                     size, region_->max_size()));
  }
  uint32_t cls = class_for(size);
  if (cls == kLargeClass) return alloc_large(o, size);
  HeapCache::List& list = o.cache->lists[cls];
  if (list.head == 0) STOA_TRY(refill(o, cls));
  Offset block = list.head;
  Tag t;
  uint64_t word = blk(block)->tag.load(std::memory_order_relaxed);
  if (!decode_tag(seed_, block, word, &t) || t.state != BlockState::kCached || !owned_by(t, o)) {
    list.head = 0;
    list.count = 0;
    return Error(Code::kCorrupt, fmt::format("{}: session cache block at offset {} is damaged",
                                             region_->path(), block));
  }
  set_tag(block, Tag{BlockState::kOwned, cls, o.slot, o.gen});
  list.head = blk(block)->link.load(std::memory_order_relaxed);
  list.count--;
  blk(block)->link.store(0, std::memory_order_relaxed);
  o.allocated->fetch_add(kClassSize[cls], std::memory_order_relaxed);
  return block + kBlockHeaderSize;
}

Result<Offset> Heap::alloc_large(Owner& o, size_t size) {
  uint64_t npages = large_pages(size);
  if (npages > 0x3fffffff) {
    return Error(Code::kInvalidArgument, fmt::format("allocation of {} bytes is too large", size));
  }
  lock_pages();
  auto r = alloc_run_locked(npages, RunKind::kLarge, kLargeClass, o);
  unlock_pages();
  if (!r.ok()) return std::move(r).error();
  o.allocated->fetch_add(npages * kPageSize, std::memory_order_relaxed);
  return *r + kRunHeaderSize + kBlockHeaderSize;
}

Status Heap::refill(Owner& o, uint32_t cls) {
  HeapCache::List& list = o.cache->lists[cls];
  ClassMeta& cm = meta()->classes[cls];
  lock_class(cls);
  uint32_t want = batch_size(cls), got = 0;
  Offset first = cm.head, tail = 0, b = first;
  while (b != 0 && got < want) {
    Tag t;
    if (b % 16 != 0 || b < kHeapStart || !region_->ensure(b, kBlockHeaderSize).ok() ||
        !decode_tag(seed_, b, blk(b)->tag.load(std::memory_order_acquire), &t) ||
        t.state != BlockState::kFree || t.klass != cls) {
      // Damaged list: cut it here (verify reports the lost blocks) and say so.
      if (tail != 0)
        blk(tail)->link.store(0, std::memory_order_relaxed);
      else
        first = 0;
      Offset bad = b;
      b = 0;
      cm.count = 0;
      if (got == 0) {
        cm.head = 0;
        unlock_class(cls);
        return Error(Code::kCorrupt,
                     fmt::format("{}: free list of class {} is damaged at offset {}",
                                 region_->path(), cls, bad));
      }
      break;
    }
    set_tag(b, Tag{BlockState::kCached, cls, o.slot, o.gen});
    tail = b;
    b = blk(b)->link.load(std::memory_order_relaxed);
    got++;
  }
  cm.head = b;
  cm.count -= std::min<uint64_t>(cm.count, got);
  unlock_class(cls);
  if (got > 0) {
    blk(tail)->link.store(list.head, std::memory_order_relaxed);
    list.head = first;
    list.count += got;
    return {};
  }
  // Central list empty: carve a new slab straight into this cache.
  lock_pages();
  auto run = alloc_run_locked(kSlabPages, RunKind::kSlab, cls, o);
  unlock_pages();
  if (!run.ok()) return std::move(run).error();
  cm.slabs.fetch_add(1, std::memory_order_relaxed);
  uint64_t n = slab_blocks(cls);
  Offset first_block = *run + kRunHeaderSize;
  Offset last_block = first_block + (n - 1) * kClassSize[cls];
  blk(last_block)->link.store(list.head, std::memory_order_relaxed);
  list.head = first_block;
  list.count += uint32_t(n);
  if (list.count > cache_max(cls)) flush_class(o, cls, cache_max(cls) / 2);
  return {};
}

Status Heap::publish(Owner& o, Offset body) {
  Tag t;
  STOA_ASSIGN(Offset block, check_block(body, &t));
  if (t.state != BlockState::kOwned || !owned_by(t, o))
    return wrong_state(region_, body, t, o, "publish");
  uint64_t expect = encode_tag(seed_, block, t);
  Tag nt = t;
  nt.state = BlockState::kLive;
  nt.slot = 0;
  nt.gen = 0;
  if (!blk(block)->tag.compare_exchange_strong(expect, encode_tag(seed_, block, nt),
                                               std::memory_order_acq_rel)) {
    return Error(Code::kInvalidArgument,
                 fmt::format("publish of block {}: changed concurrently", body));
  }
  o.allocated->fetch_sub(block_bytes(region_, seed_, block, t), std::memory_order_relaxed);
  return {};
}

Status Heap::publish_orphan(Offset body) {
  Tag t;
  STOA_ASSIGN(Offset block, check_block(body, &t));
  if (t.state == BlockState::kLive) return {};
  if (t.state != BlockState::kOwned) {
    return Error(Code::kInvalidArgument,
                 fmt::format("publish of block {}: state {}", body, int(t.state)));
  }
  uint64_t expect = encode_tag(seed_, block, t);
  Tag nt{BlockState::kLive, t.klass, 0, 0};
  if (!blk(block)->tag.compare_exchange_strong(expect, encode_tag(seed_, block, nt),
                                               std::memory_order_acq_rel)) {
    return Error(Code::kInvalidArgument,
                 fmt::format("publish of block {}: changed concurrently", body));
  }
  return {};
}

Result<uint64_t> Heap::mark_retired(Owner& o, Offset body) {
  Tag t;
  STOA_ASSIGN(Offset block, check_block(body, &t));
  bool mine = t.state == BlockState::kOwned && owned_by(t, o);
  if (t.state != BlockState::kLive && !mine) return wrong_state(region_, body, t, o, "retire");
  uint64_t expect = encode_tag(seed_, block, t);
  Tag nt{BlockState::kRetired, t.klass, o.slot, o.gen};
  if (!blk(block)->tag.compare_exchange_strong(expect, encode_tag(seed_, block, nt),
                                               std::memory_order_acq_rel)) {
    return Error(Code::kInvalidArgument,
                 fmt::format("retire of block {}: changed concurrently", body));
  }
  uint64_t bytes = block_bytes(region_, seed_, block, t);
  if (mine) o.allocated->fetch_sub(bytes, std::memory_order_relaxed);
  return bytes;
}

Status Heap::free(Owner& o, Offset body) {
  Tag t;
  STOA_ASSIGN(Offset block, check_block(body, &t));
  bool mine = (t.state == BlockState::kOwned || t.state == BlockState::kRetired) && owned_by(t, o);
  if (t.state != BlockState::kLive && !mine) return wrong_state(region_, body, t, o, "free");
  // Claim it with a CAS so that two sessions freeing one live block cannot
  // both succeed: the loser gets an error, the lists stay sound.
  uint64_t expect = encode_tag(seed_, block, t);
  Tag claimed{t.klass == kLargeClass ? BlockState::kOwned : BlockState::kCached, t.klass, o.slot,
              o.gen};
  if (!blk(block)->tag.compare_exchange_strong(expect, encode_tag(seed_, block, claimed),
                                               std::memory_order_acq_rel)) {
    return Error(Code::kInvalidArgument, fmt::format("free of block {}: freed concurrently", body));
  }
  if (t.state == BlockState::kOwned) {
    o.allocated->fetch_sub(block_bytes(region_, seed_, block, t), std::memory_order_relaxed);
  }
  return free_block(o, block, claimed);
}

Status Heap::free_block(Owner& o, Offset block, const Tag& t) {
  if (t.klass != kLargeClass) {
    if (poison_) {
      std::memset(region_->rw(block + kBlockHeaderSize), int(kPoisonByte),
                  kClassSize[t.klass] - kBlockHeaderSize);
    }
    push_cache(o, t.klass, block);
    return {};
  }
  Offset run = block - kRunHeaderSize;
  if (poison_) {
    RunInfo r;
    if (run_at(run, &r)) {
      std::memset(region_->rw(block + kBlockHeaderSize), int(kPoisonByte),
                  r.npages * kPageSize - kRunHeaderSize - kBlockHeaderSize - kFooterSize);
    }
  }
  lock_pages();
  free_run_locked(run);
  unlock_pages();
  return {};
}

void Heap::push_cache(Owner& o, uint32_t cls, Offset block) {
  HeapCache::List& list = o.cache->lists[cls];
  set_tag(block, Tag{BlockState::kCached, cls, o.slot, o.gen});
  blk(block)->link.store(list.head, std::memory_order_relaxed);
  list.head = block;
  list.count++;
  if (list.count > cache_max(cls)) flush_class(o, cls, cache_max(cls) / 2);
}

void Heap::flush_class(Owner& o, uint32_t cls, uint32_t keep) {
  HeapCache::List& list = o.cache->lists[cls];
  if (list.count <= keep) return;
  uint32_t n = list.count - keep;
  Offset first = list.head, tail = first;
  for (uint32_t i = 1; i < n; i++) tail = blk(tail)->link.load(std::memory_order_relaxed);
  // Detach: a crash from here on leaves the chain tagged kCached(self) in no
  // list, which recovery frees.
  list.head = blk(tail)->link.load(std::memory_order_relaxed);
  list.count = keep;
  ClassMeta& cm = meta()->classes[cls];
  lock_class(cls);
  blk(tail)->link.store(cm.head, std::memory_order_relaxed);
  cm.head = first;
  cm.count += n;
  STOA_CRASH_POINT(kHeapClassLocked);
  for (Offset b = first, i = 0; i < n; i++) {
    Offset next = blk(b)->link.load(std::memory_order_relaxed);
    set_tag(b, Tag{BlockState::kFree, cls, 0, 0});
    b = next;
  }
  unlock_class(cls);
}

void Heap::flush_cache(Owner& o) {
  for (uint32_t cls = 0; cls < kNumClasses; cls++) flush_class(o, cls, 0);
}

// ---------------------------------------------------------------------------
// Central lists

void Heap::lock_class(uint32_t cls) NO_THREAD_SAFETY_ANALYSIS {
  meta()->classes[cls].lock.lock([&] {
    if (repairs_ != nullptr) repairs_->fetch_add(1, std::memory_order_relaxed);
    repair_class(cls);
  });
}
void Heap::unlock_class(uint32_t cls) NO_THREAD_SAFETY_ANALYSIS {
  meta()->classes[cls].lock.unlock();
}

void Heap::repair_class(uint32_t cls) {
  ClassMeta& cm = meta()->classes[cls];
  uint64_t limit = region_->file_size() / kClassSize[0] + 1, n = 0;
  Offset prev = 0, b = cm.head;
  while (b != 0 && n < limit) {
    Tag t;
    bool ok = b % 16 == 0 && b >= kHeapStart && region_->ensure(b, kBlockHeaderSize).ok() &&
              decode_tag(seed_, b, blk(b)->tag.load(std::memory_order_relaxed), &t) &&
              t.klass == cls;
    if (!ok) break;
    set_tag(b, Tag{BlockState::kFree, cls, 0, 0});
    prev = b;
    b = blk(b)->link.load(std::memory_order_relaxed);
    n++;
  }
  if (b != 0) {  // damaged or cyclic tail: cut it off (verify reports the loss)
    if (prev != 0)
      blk(prev)->link.store(0, std::memory_order_relaxed);
    else
      cm.head = 0;
  }
  cm.count = n;
}

// ---------------------------------------------------------------------------
// Page heap

bool Heap::run_at(Offset run, RunInfo* r) const {
  if (run < kHeapStart || run % kPageSize != 0) return false;
  if (run + kPageSize > region_->mapped() && !region_->ensure(run, kPageSize).ok()) return false;
  uint64_t w =
      reinterpret_cast<const RunHeader*>(region_->ro(run))->word.load(std::memory_order_acquire);
  return decode_run(seed_, run, w, r);
}

void Heap::lock_pages() NO_THREAD_SAFETY_ANALYSIS {
  meta()->page_lock.lock([&] {
    if (repairs_ != nullptr) repairs_->fetch_add(1, std::memory_order_relaxed);
    repair_pages();
  });
  (void)region_->ensure(0, region_->file_size());  // bins may name runs another process grew
}
void Heap::unlock_pages() NO_THREAD_SAFETY_ANALYSIS { meta()->page_lock.unlock(); }

void Heap::write_free_run(Offset run, uint64_t npages) {
  RunHeader* h = run_hdr(run);
  h->bin_next = 0;
  h->bin_prev = 0;
  h->word.store(encode_run(seed_, run, RunInfo{RunKind::kFree, 0, npages}),
                std::memory_order_release);
  Offset end = run + npages * kPageSize;
  auto* f = reinterpret_cast<RunFooter*>(region_->rw(end - kFooterSize));
  f->start = run;
  f->guard = footer_guard(seed_, run, end);
}

static uint32_t bin_for(uint64_t npages) { return npages <= 64 ? uint32_t(npages - 1) : 64; }

void Heap::bin_insert(Offset run, uint64_t npages) {
  uint64_t& head = meta()->bins[bin_for(npages)];
  RunHeader* h = run_hdr(run);
  h->bin_prev = 0;
  h->bin_next = head;
  if (head != 0) run_hdr(head)->bin_prev = run;
  head = run;
}

void Heap::bin_remove(Offset run, uint64_t npages) {
  RunHeader* h = run_hdr(run);
  if (h->bin_prev != 0)
    run_hdr(h->bin_prev)->bin_next = h->bin_next;
  else
    meta()->bins[bin_for(npages)] = h->bin_next;
  if (h->bin_next != 0) run_hdr(h->bin_next)->bin_prev = h->bin_prev;
  h->bin_next = h->bin_prev = 0;
}

void Heap::repair_pages() {
  HeapMeta* m = meta();
  for (auto& b : m->bins) b = 0;
  uint64_t free_pages = 0;
  uint64_t end = region_->file_size();
  (void)region_->ensure(0, end);
  Offset off = kHeapStart, free_start = 0;
  uint64_t free_n = 0;
  auto close_free = [&] {
    if (free_start != 0) {
      write_free_run(free_start, free_n);
      bin_insert(free_start, free_n);
      free_pages += free_n;
      free_start = 0;
      free_n = 0;
    }
  };
  while (off < end) {
    RunInfo r;
    if (!run_at(off, &r) || off + r.npages * kPageSize > end) {
      // Damaged chain: the rest of the heap cannot be walked. Leave it out of
      // the bins (nothing is allocated from it); verify names the place.
      break;
    }
    if (r.kind == RunKind::kFree) {
      if (free_start == 0) free_start = off;
      free_n += r.npages;
    } else {
      close_free();
    }
    off += r.npages * kPageSize;
  }
  close_free();
  m->free_pages = free_pages;
}

Status Heap::grow_locked(uint64_t npages) {
  uint64_t fs = region_->file_size();
  uint64_t need = npages * kPageSize;
  uint64_t target = fs + std::max(region_->grow_chunk(), need);
  if (target > region_->max_size()) target = region_->max_size();
  if (target < fs + need) {
    return Error(Code::kFull,
                 fmt::format("{}: store is full: {} more bytes needed, {} of max_size {} in use",
                             region_->path(), need, fs, region_->max_size()));
  }
  STOA_TRY(region_->extend(target));
  uint64_t n = (target - fs) / kPageSize;
  write_free_run(fs, n);
  meta()->file_size.store(target, std::memory_order_release);  // commit: walkers see the run
  STOA_CRASH_POINT(kHeapGrow);
  meta()->free_pages += n;
  // Coalesce with a free run just before the old end.
  Offset start = fs;
  auto* f = reinterpret_cast<const RunFooter*>(region_->ro(fs - kFooterSize));
  RunInfo pr;
  if (fs > kHeapStart && f->guard == footer_guard(seed_, f->start, fs) && run_at(f->start, &pr) &&
      pr.kind == RunKind::kFree && f->start + pr.npages * kPageSize == fs) {
    bin_remove(f->start, pr.npages);
    start = f->start;
    n += pr.npages;
    write_free_run(start, n);
  }
  bin_insert(start, n);
  return {};
}

Result<Offset> Heap::alloc_run_locked(uint64_t npages, RunKind kind, uint32_t cls, Owner& o) {
  HeapMeta* m = meta();
  for (int attempt = 0; attempt < 4; attempt++) {
    Offset run = 0;
    RunInfo r{};
    for (uint32_t i = bin_for(npages); i < 64 && run == 0; i++) run = m->bins[i];
    if (run == 0) {
      for (Offset c = m->bins[64]; c != 0; c = run_hdr(c)->bin_next) {
        if (run_at(c, &r) && r.npages >= npages) {
          run = c;
          break;
        }
      }
    }
    if (run == 0) {
      STOA_TRY(grow_locked(npages));
      continue;
    }
    if (!run_at(run, &r) || r.kind != RunKind::kFree || r.npages < npages) {
      repair_pages();  // a bin pointed at something that is not a fitting free run
      continue;
    }
    bin_remove(run, r.npages);
    if (r.npages > npages) write_free_run(run + npages * kPageSize, r.npages - npages);
    STOA_CRASH_POINT(kHeapRunSplit);
    if (kind == RunKind::kSlab) {
      uint64_t n = slab_blocks(cls);
      Offset b = run + kRunHeaderSize;
      for (uint64_t i = 0; i < n; i++, b += kClassSize[cls]) {
        set_tag(b, Tag{BlockState::kCached, cls, o.slot, o.gen});
        blk(b)->link.store(i + 1 < n ? b + kClassSize[cls] : 0, std::memory_order_relaxed);
      }
    } else {
      Offset b = run + kRunHeaderSize;
      set_tag(b, Tag{BlockState::kOwned, kLargeClass, o.slot, o.gen});
      blk(b)->link.store(0, std::memory_order_relaxed);
    }
    run_hdr(run)->word.store(encode_run(seed_, run, RunInfo{kind, cls, npages}),
                             std::memory_order_release);  // commit
    if (r.npages > npages) bin_insert(run + npages * kPageSize, r.npages - npages);
    m->free_pages -= npages;
    return run;
  }
  return Error(Code::kCorrupt, fmt::format("{}: page heap damaged: no usable free run after repair",
                                           region_->path()));
}

void Heap::free_run_locked(Offset run) {
  RunInfo r;
  if (!run_at(run, &r)) return;
  uint64_t end = region_->file_size();
  uint64_t freed = r.npages;
  Offset start = run;
  uint64_t n = r.npages;
  Offset next = run + n * kPageSize;
  RunInfo nr;
  if (next < end && run_at(next, &nr) && nr.kind == RunKind::kFree) {
    bin_remove(next, nr.npages);
    n += nr.npages;
  }
  if (run > kHeapStart) {
    auto* f = reinterpret_cast<const RunFooter*>(region_->ro(run - kFooterSize));
    RunInfo pr;
    if (f->start >= kHeapStart && f->start < run &&
        f->guard == footer_guard(seed_, f->start, run) && run_at(f->start, &pr) &&
        pr.kind == RunKind::kFree && f->start + pr.npages * kPageSize == run) {
      bin_remove(f->start, pr.npages);
      start = f->start;
      n += pr.npages;
    }
  }
  STOA_CRASH_POINT(kHeapRunMerge);
  write_free_run(start, n);  // commit: the word store inside
  bin_insert(start, n);
  meta()->free_pages += freed;
  // A freed large block's tag would otherwise still say kOwned inside the
  // free run (and the run's old header word survives a merge with the run
  // before it), so a second free() of it would pass the checks and free the
  // pages again. Mark it free: a double free is then refused.
  if (r.kind == RunKind::kLarge)
    set_tag(run + kRunHeaderSize, Tag{BlockState::kFree, kLargeClass, 0, 0});
}

// ---------------------------------------------------------------------------
// Recovery

Status Heap::recover(Owner& to, uint32_t dead_slot, uint32_t dead_gen,
                     const std::function<void(Offset, uint64_t)>& on_retired) {
  // Repairs of lists the dead session was changing must happen first.
  for (uint32_t c = 0; c < kNumClasses; c++) {
    lock_class(c);
    unlock_class(c);
  }
  std::vector<std::vector<Offset>> chains(kNumClasses);
  std::vector<Offset> large_free;
  lock_pages();
  uint64_t end = region_->file_size();
  Status st = region_->ensure(0, end);
  uint32_t g = dead_gen & kGenMask;
  for (Offset off = kHeapStart; st.ok() && off < end;) {
    RunInfo r;
    if (!run_at(off, &r) || off + r.npages * kPageSize > end) {
      st = Error(Code::kCorrupt,
                 fmt::format("{}: run header at offset {} is damaged", region_->path(), off));
      break;
    }
    auto visit = [&](Offset b, uint64_t bytes) {
      Tag t;
      if (!decode_tag(seed_, b, blk(b)->tag.load(std::memory_order_acquire), &t)) return;
      if (t.slot != dead_slot || t.gen != g) return;
      if (t.state == BlockState::kCached || t.state == BlockState::kOwned) {
        if (t.klass == kLargeClass) {
          set_tag(b, Tag{BlockState::kOwned, kLargeClass, to.slot, to.gen});
          large_free.push_back(b - kRunHeaderSize);
        } else {
          set_tag(b, Tag{BlockState::kCached, t.klass, to.slot, to.gen});
          chains[t.klass].push_back(b);
        }
      } else if (t.state == BlockState::kRetired && on_retired) {
        set_tag(b, Tag{BlockState::kRetired, t.klass, to.slot, to.gen});
        on_retired(b + kBlockHeaderSize, bytes);
      }
    };
    if (r.kind == RunKind::kSlab && r.klass < kNumClasses) {
      uint64_t n = slab_blocks(r.klass);
      for (uint64_t i = 0; i < n; i++) {
        visit(off + kRunHeaderSize + i * kClassSize[r.klass], kClassSize[r.klass]);
      }
    } else if (r.kind == RunKind::kLarge) {
      visit(off + kRunHeaderSize, r.npages * kPageSize);
    }
    off += r.npages * kPageSize;
  }
  for (Offset run : large_free) free_run_locked(run);
  unlock_pages();
  // Small blocks go to the central lists as one chain per class.
  for (uint32_t c = 0; c < kNumClasses; c++) {
    auto& v = chains[c];
    if (v.empty()) continue;
    for (size_t i = 0; i < v.size(); i++) {
      blk(v[i])->link.store(i + 1 < v.size() ? v[i + 1] : 0, std::memory_order_relaxed);
    }
    HeapCache::List& list = to.cache->lists[c];
    blk(v.back())->link.store(list.head, std::memory_order_relaxed);
    list.head = v.front();
    list.count += uint32_t(v.size());
    flush_class(to, c, 0);
  }
  return st;
}

void Heap::init_locks() {
  HeapMeta* m = meta();
  m->page_lock.init();
  for (auto& c : m->classes) c.lock.init();
}

void Heap::reset_locks() {
  init_locks();
  repair_pages();
}

void Heap::set_clean(bool clean) { meta()->clean = clean ? 1 : 0; }
bool Heap::clean() const { return meta()->clean == 1; }

Status Heap::rebuild_all() {
  init_locks();  // the bins are rebuilt at the end, after the walk
  HeapMeta* m = meta();
  uint64_t end = region_->file_size();
  STOA_TRY(region_->ensure(0, end));
  std::vector<Offset> heads(kNumClasses, 0), tails(kNumClasses, 0);
  std::vector<uint64_t> counts(kNumClasses, 0);
  std::vector<Offset> large_free;
  Status st;
  for (Offset off = kHeapStart; off < end;) {
    RunInfo r;
    if (!run_at(off, &r) || off + r.npages * kPageSize > end) {
      st = Error(Code::kCorrupt,
                 fmt::format("{}: run header at offset {} is damaged", region_->path(), off));
      break;
    }
    if (r.kind == RunKind::kSlab && r.klass < kNumClasses) {
      uint64_t n = slab_blocks(r.klass);
      for (uint64_t i = 0; i < n; i++) {
        Offset b = off + kRunHeaderSize + i * kClassSize[r.klass];
        Tag t;
        bool valid = decode_tag(seed_, b, blk(b)->tag.load(std::memory_order_relaxed), &t);
        if (valid && t.state == BlockState::kLive) continue;
        if (!valid) continue;  // damaged: left alone for verify to name
        set_tag(b, Tag{BlockState::kFree, r.klass, 0, 0});
        blk(b)->link.store(0, std::memory_order_relaxed);
        if (tails[r.klass] != 0)
          blk(tails[r.klass])->link.store(b, std::memory_order_relaxed);
        else
          heads[r.klass] = b;
        tails[r.klass] = b;
        counts[r.klass]++;
      }
    } else if (r.kind == RunKind::kLarge) {
      Offset b = off + kRunHeaderSize;
      Tag t;
      if (decode_tag(seed_, b, blk(b)->tag.load(std::memory_order_relaxed), &t) &&
          t.state != BlockState::kLive) {
        large_free.push_back(off);
      }
    }
    off += r.npages * kPageSize;
  }
  for (uint32_t c = 0; c < kNumClasses; c++) {
    m->classes[c].head = heads[c];
    m->classes[c].count = counts[c];
  }
  repair_pages();
  for (Offset run : large_free) free_run_locked(run);
  return st;
}

// ---------------------------------------------------------------------------
// Stats and verification

HeapStats Heap::stats() {
  HeapStats s;
  HeapMeta* m = meta();
  s.free_page_bytes = m->free_pages.load(std::memory_order_relaxed) * kPageSize;
  for (uint32_t c = 0; c < kNumClasses; c++) {
    s.free_block_bytes += m->classes[c].count.load(std::memory_order_relaxed) * kClassSize[c];
  }
  return s;
}

void Heap::verify(VerifyReport& rep, bool exclusive,
                  const std::function<bool(uint32_t, uint32_t)>& owner_ok) {
  const std::string& path = region_->path();
  auto problem = [&](std::string s) {
    if (rep.problems.size() < 100) rep.problems.push_back(fmt::format("{}: {}", path, s));
  };
  // Free lists first (each under its lock), so the walk below can compare.
  std::unordered_set<Offset> in_lists;
  uint64_t listed = 0;
  for (uint32_t c = 0; c < kNumClasses; c++) {
    lock_class(c);
    ClassMeta& cm = meta()->classes[c];
    uint64_t n = 0, limit = region_->file_size() / kClassSize[c] + 1;
    for (Offset b = cm.head; b != 0; n++) {
      Tag t;
      if (n > limit) {
        problem(fmt::format("free list of class {} (offset {}) is cyclic", c,
                            kHeapMetaOffset + offsetof(HeapMeta, classes) + c * sizeof(ClassMeta)));
        break;
      }
      if (b % 16 != 0 || b < kHeapStart || !region_->ensure(b, kBlockHeaderSize).ok() ||
          !decode_tag(seed_, b, blk(b)->tag.load(std::memory_order_acquire), &t)) {
        problem(fmt::format("free list of class {}: entry at offset {} has a damaged guard", c, b));
        break;
      }
      if (t.state != BlockState::kFree || t.klass != c) {
        problem(fmt::format("free list of class {}: block at offset {} is in state {} class {}", c,
                            b, int(t.state), t.klass));
      }
      if (exclusive && !in_lists.insert(b).second) {
        problem(fmt::format("block at offset {} is twice in the free lists", b));
        break;
      }
      b = blk(b)->link.load(std::memory_order_relaxed);
    }
    if (n != cm.count) {
      problem(fmt::format("free list of class {}: counted {} blocks, metadata says {}", c, n,
                          cm.count.load()));
    }
    listed += n;
    unlock_class(c);
  }
  lock_pages();
  HeapMeta* m = meta();
  uint64_t end = region_->file_size();
  if (!region_->ensure(0, end).ok()) problem("cannot map the whole file");
  uint64_t free_pages = 0, free_tagged = 0;
  Offset prev_free_end = 0;
  for (Offset off = kHeapStart; off < end;) {
    RunInfo r;
    if (!run_at(off, &r)) {
      problem(fmt::format("run header at offset {} is damaged (guard mismatch)", off));
      break;
    }
    if (off + r.npages * kPageSize > end) {
      problem(fmt::format("run at offset {} claims {} pages, past the end of the file ({})", off,
                          r.npages, end));
      break;
    }
    rep.runs++;
    Offset run_end = off + r.npages * kPageSize;
    auto check_block = [&](Offset b, uint32_t cls) {
      Tag t;
      rep.blocks_checked++;
      if (!decode_tag(seed_, b, blk(b)->tag.load(std::memory_order_acquire), &t)) {
        problem(fmt::format("block at offset {}: guard word damaged", b));
        return;
      }
      if (t.klass != cls) {
        problem(
            fmt::format("block at offset {}: class {} inside a run of class {}", b, t.klass, cls));
      }
      switch (t.state) {
        case BlockState::kFree:
          free_tagged++;
          rep.blocks_free++;
          if (exclusive && !in_lists.count(b)) {
            problem(fmt::format("block at offset {} is free but in no free list (leak)", b));
          }
          break;
        case BlockState::kCached:
          rep.blocks_cached++;
          break;
        case BlockState::kOwned:
          rep.blocks_private++;
          break;
        case BlockState::kLive:
          rep.blocks_live++;
          break;
        case BlockState::kRetired:
          rep.blocks_retired++;
          break;
        default:
          break;
      }
      if (exclusive &&
          (t.state == BlockState::kCached || t.state == BlockState::kOwned ||
           t.state == BlockState::kRetired) &&
          !owner_ok(t.slot, t.gen)) {
        problem(
            fmt::format("block at offset {} belongs to session {} (gen {}), which is gone (leak)",
                        b, t.slot, t.gen));
      }
    };
    switch (r.kind) {
      case RunKind::kFree: {
        rep.free_runs++;
        free_pages += r.npages;
        auto* f = reinterpret_cast<const RunFooter*>(region_->ro(run_end - kFooterSize));
        if (f->start != off || f->guard != footer_guard(seed_, off, run_end)) {
          problem(fmt::format("free run at offset {}: footer at {} damaged", off,
                              run_end - kFooterSize));
        }
        if (exclusive && prev_free_end == off) {
          problem(fmt::format("free runs at offset {} and before it were not merged", off));
        }
        prev_free_end = run_end;
        break;
      }
      case RunKind::kSlab:
        rep.slabs++;
        if (r.klass >= kNumClasses || r.npages != kSlabPages) {
          problem(fmt::format("slab at offset {}: class {} pages {}", off, r.klass, r.npages));
        } else {
          uint64_t n = slab_blocks(r.klass);
          for (uint64_t i = 0; i < n; i++)
            check_block(off + kRunHeaderSize + i * kClassSize[r.klass], r.klass);
        }
        break;
      case RunKind::kLarge:
        rep.large_runs++;
        check_block(off + kRunHeaderSize, kLargeClass);
        break;
      default:
        break;
    }
    off = run_end;
  }
  if (exclusive && free_pages != m->free_pages) {
    problem(fmt::format("free page count: walked {}, metadata says {}", free_pages,
                        m->free_pages.load()));
  }
  if (exclusive && free_tagged != listed) {
    problem(
        fmt::format("{} blocks are tagged free but the free lists hold {}", free_tagged, listed));
  }
  unlock_pages();
}

}  // namespace stoa::region
