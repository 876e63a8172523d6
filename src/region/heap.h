// region/heap.h — the concurrent allocator in the data file.
//
// Small blocks (up to kMaxSmallBody bytes) come from per-session caches,
// refilled in batches from per-class central free lists, which are refilled
// by carving 64 KiB slabs out of the page heap. Large blocks are page runs.
// Every block carries a tag word naming its state and owner, with a keyed
// guard; the tags make the heap walkable and a dead session's memory
// findable without trusting anything it was in the middle of writing.
//
// Thread safety: every method may be called concurrently from any thread of
// any process, each with its own Owner (one session = one Owner). Owner
// state (its cache) is touched only by that session. Central lists and the
// page heap are guarded by robust process-shared mutexes; lock order is
// page lock before class locks.
#ifndef STOA_REGION_HEAP_H_
#define STOA_REGION_HEAP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "region/layout.h"
#include "region/region.h"
#include "stoa/result.h"
#include "stoa/stats.h"
#include "util/hash.h"

namespace stoa::region {

// A session as the allocator sees it.
struct Owner {
  uint32_t slot;
  uint32_t gen;                      // generation (only the low 9 bits are tagged)
  HeapCache* cache;                  // in the session's slot
  std::atomic<uint64_t>* allocated;  // the session's allocated-bytes counter
};

struct Tag {
  BlockState state;
  uint32_t klass;  // size class, or kLargeClass
  uint32_t slot;
  uint32_t gen;
};

// --- encodings (pure; shared with verify, the fuzzer and tests) ---------
inline uint64_t encode_tag(uint64_t seed, Offset block, const Tag& t) {
  uint64_t hi = (uint64_t(t.state) << 29) | (uint64_t(t.klass & 63) << 23) |
                (uint64_t(t.slot & kMaxSlots) << 9) | (t.gen & kGenMask);
  return (hi << 32) | uint32_t(util::mix64(block, hi, seed));
}
// False when the guard does not match (damaged, or not a block at all).
inline bool decode_tag(uint64_t seed, Offset block, uint64_t word, Tag* t) {
  uint64_t hi = word >> 32;
  if (uint32_t(word) != uint32_t(util::mix64(block, hi, seed))) return false;
  t->state = BlockState(hi >> 29);
  t->klass = uint32_t(hi >> 23) & 63;
  t->slot = uint32_t(hi >> 9) & kMaxSlots;
  t->gen = uint32_t(hi) & kGenMask;
  return t->state >= BlockState::kFree && t->state <= BlockState::kRetired;
}

struct RunInfo {
  RunKind kind;
  uint32_t klass;
  uint64_t npages;
};
inline uint64_t encode_run(uint64_t seed, Offset run, const RunInfo& r) {
  uint64_t hi = (uint64_t(r.kind) << 36) | (uint64_t(r.klass & 63) << 30) | (r.npages & 0x3fffffff);
  return (hi << 24) | (util::mix64(run, hi, seed ^ 0x52554e) & 0xffffff);
}
inline bool decode_run(uint64_t seed, Offset run, uint64_t word, RunInfo* r) {
  uint64_t hi = word >> 24;
  if ((word & 0xffffff) != (util::mix64(run, hi, seed ^ 0x52554e) & 0xffffff)) return false;
  r->kind = RunKind(hi >> 36);
  r->klass = uint32_t(hi >> 30) & 63;
  r->npages = hi & 0x3fffffff;
  return r->kind >= RunKind::kFree && r->kind <= RunKind::kLarge && r->npages > 0;
}
inline uint64_t footer_guard(uint64_t seed, Offset start, Offset end) {
  return util::mix64(start, end, seed ^ 0x464f4f54);
}

// Size class for a body of `size` bytes, or kLargeClass.
uint32_t class_for(size_t size);
// Pages of a large run holding a body of `size` bytes.
inline uint64_t large_pages(uint64_t size) {
  return (size + kRunHeaderSize + kBlockHeaderSize + kPageSize - 1) / kPageSize;
}
inline constexpr uint64_t kPoisonByte = 0xDB;

struct HeapStats {
  uint64_t free_page_bytes = 0;
  uint64_t free_block_bytes = 0;
};

class Heap {
 public:
  Heap(Region* region, bool poison_freed);
  // Where to count list repairs after a holder died (a shared statistics
  // word the store points at; relaxed increments). Null: not counted.
  void count_repairs_in(std::atomic<uint64_t>* counter) { repairs_ = counter; }

  Result<Offset> alloc(Owner& o, size_t size);
  Status publish(Owner& o, Offset body);
  // Accepts kOwned(o), kLive, or kRetired(o).
  Status free(Owner& o, Offset body);
  // kOwned(any session) -> kLive: recovery publishing what a dead session
  // committed. Errors as publish.
  Status publish_orphan(Offset body);
  // kLive or kOwned(o) -> kRetired(o). Returns the block's size in bytes.
  Result<uint64_t> mark_retired(Owner& o, Offset body);
  Result<size_t> usable_size(Offset body) const;
  // The tag of the block at `body` (a recoverer asking whether a dead
  // session published it). Errors: kInvalidArgument (not a block, or a
  // freed large one), kCorrupt (guard broken).
  Result<Tag> tag_of(Offset body) const {
    Tag t;
    STOA_TRY(check_block(body, &t));
    return t;
  }
  // The link word of a block the caller owns (purgatory threading).
  void set_link(Offset body, uint64_t next);
  uint64_t link(Offset body) const;
  // Returns every cached block of `o` to the central lists.
  void flush_cache(Owner& o);

  // Reclaims everything tagged with (dead_slot, dead_gen): cached and owned
  // blocks are freed; retired ones are retagged kRetired(to) and passed to
  // on_retired(body, bytes) for `to`'s purgatory (left alone when
  // on_retired is empty). Takes the page lock.
  Status recover(Owner& to, uint32_t dead_slot, uint32_t dead_gen,
                 const std::function<void(Offset, uint64_t)>& on_retired);
  // Only when no other process has the store open: every block that is not
  // kLive becomes free, free lists and bins are rebuilt, locks reinitialised.
  Status rebuild_all();
  // Only when no other process has the store open and the last closer left
  // it clean: reinitialises the locks (their holders' thread ids are stale)
  // and rebuilds the free-run bins from the run chain (cheap: one header
  // per run), so no bin link read from the file is trusted.
  void reset_locks();
  void set_clean(bool clean);
  bool clean() const;

  // Checks runs, guards and free lists. When exclusive (no other process
  // attached), also checks that free blocks are all listed and that every
  // cached, private or retired block belongs to a session owner_ok() accepts
  // (one that still holds its slot).
  void verify(VerifyReport& report, bool exclusive,
              const std::function<bool(uint32_t slot, uint32_t gen)>& owner_ok);
  HeapStats stats();

 private:
  struct Scan;
  Status refill(Owner& o, uint32_t cls);
  void push_cache(Owner& o, uint32_t cls, Offset block);
  void flush_class(Owner& o, uint32_t cls, uint32_t keep);
  Result<Offset> alloc_large(Owner& o, size_t size);
  Status free_block(Owner& o, Offset block, const Tag& t);
  Result<Offset> check_block(Offset body, Tag* t) const;

  // Page heap (page lock held).
  void lock_pages();
  void unlock_pages();
  void repair_pages();
  Result<Offset> alloc_run_locked(uint64_t npages, RunKind kind, uint32_t cls, Owner& o);
  void free_run_locked(Offset run);
  Status grow_locked(uint64_t npages);
  void bin_insert(Offset run, uint64_t npages);
  void bin_remove(Offset run, uint64_t npages);
  void write_free_run(Offset run, uint64_t npages);
  bool run_at(Offset run, RunInfo* r) const;

  void init_locks();

  // Central lists.
  void lock_class(uint32_t cls);
  void unlock_class(uint32_t cls);
  void repair_class(uint32_t cls);

  RunHeader* run_hdr(Offset run) const { return reinterpret_cast<RunHeader*>(region_->rw(run)); }
  BlockHeader* blk(Offset block) const {
    return reinterpret_cast<BlockHeader*>(region_->rw(block));
  }
  void set_tag(Offset block, const Tag& t) {
    blk(block)->tag.store(encode_tag(seed_, block, t), std::memory_order_release);
  }
  HeapMeta* meta() const { return region_->meta(); }

  Region* region_;
  uint64_t seed_;
  bool poison_;
  std::atomic<uint64_t>* repairs_ = nullptr;  // see count_repairs_in
};

}  // namespace stoa::region

#endif  // STOA_REGION_HEAP_H_
