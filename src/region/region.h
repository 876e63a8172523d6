// region/region.h — the data file, mapped into this process.
//
// Each process reserves 2 x max_size of address space once (PROT_NONE,
// MAP_NORESERVE) and maps the data file into the front of both halves: the
// first half read-only (every read pointer handed out points here, so a stray
// write faults instead of corrupting), the second read-write (the writer
// path). When another process extends the file, this one maps the new part
// into the reserved range the first time it meets an offset beyond its
// mapping: nothing is ever moved, so pointers stay valid, and no process
// needs to stop.
//
// Thread safety: all methods are thread-safe. ro()/rw() are wait-free
// translations; refresh_mapping() takes a process-local mutex.
#ifndef STOA_REGION_REGION_H_
#define STOA_REGION_REGION_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "region/layout.h"
#include "stoa/env.h"
#include "stoa/result.h"
#include "util/mutex.h"

namespace stoa::region {

struct CreateParams {
  uint64_t max_size;
  uint64_t initial_size;
  uint64_t grow_chunk;
  uint32_t max_sessions;
  uint32_t durability;
  uint64_t layout_word;  // the store's kDataLayoutWord (store/layout.h)
};

class Region {
 public:
  // Writes a new data file at `path` (which must not exist) and syncs it.
  static Status create(Env* env, const std::string& path, const CreateParams& params);
  // Validates the header and maps the file. Errors: kCorrupt (truncated,
  // foreign, checksum), kVersionMismatch (format, layout, page size), kIo.
  // `layout_word` is the one the file must carry (the store's
  // kDataLayoutWord, which folds this layer's and the layers above's structs).
  // `huge_pages`: advise the kernel to map the file with 2 MiB pages where it
  // can (Options::huge_pages).
  static Result<std::unique_ptr<Region>> open(Env* env, const std::string& path,
                                              uint64_t layout_word, bool huge_pages = true);
  // Checks a header image without mapping anything (also used by the fuzzer).
  static Status check_header(const FileHeader& h, uint64_t file_bytes, const std::string& path,
                             uint64_t layout_word);

  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  const FileHeader& header() const { return *reinterpret_cast<const FileHeader*>(ro_base_); }
  HeapMeta* meta() const { return reinterpret_cast<HeapMeta*>(rw_base_ + kHeapMetaOffset); }
  uint64_t seed() const { return seed_; }
  uint64_t max_size() const { return max_size_; }
  uint64_t grow_chunk() const { return grow_chunk_; }
  const std::string& path() const { return path_; }

  const char* ro(Offset off) const { return ro_base_ + off; }
  char* rw(Offset off) const { return rw_base_ + off; }
  // Bytes of the file this process has mapped (acquire: pairs with the
  // release in refresh_mapping, so the mapping is visible to this thread).
  uint64_t mapped() const { return mapped_.load(std::memory_order_acquire); }
  // The file size all processes agree on (acquire: pairs with extend()).
  uint64_t file_size() const { return meta()->file_size.load(std::memory_order_acquire); }

  // Whether [off, off+len) could be a block body of the heap (8-aligned, at
  // or past the heap's start, inside the file), made addressable (mapping
  // what another process grew first). Readers check every offset they take
  // from the file this way before they follow it: a damaged but trusted
  // file must give kCorrupt, never a fault. The fast path reads only this
  // process's mapping length, which never exceeds the file: no syscall.
  bool reach(Offset off, uint64_t len) {
    if (off < kHeapStart || off % 8 != 0) return false;
    const uint64_t m = mapped();
    if (len <= m && off <= m - len) return true;
    const uint64_t fs = file_size();
    return len <= fs && off <= fs - len && ensure(off, len).ok();
  }
  // Makes [off, off+len) addressable, mapping newly grown parts first.
  // Errors: kCorrupt when the range lies outside the file.
  Status ensure(Offset off, uint64_t len);
  // Maps up to the published file size.
  Status refresh_mapping();
  // Caller holds the page lock. Makes the file new_size bytes long and maps
  // it here; the caller publishes HeapMeta::file_size once the new space is
  // formatted. Errors: kFull (max_size or disk), kIo.
  Status extend(uint64_t new_size);
  // Fills this process's page tables for [from, to) of both views (a hint;
  // see region.cc). extend() does it for the space it adds.
  void prefault(uint64_t from, uint64_t to);
  // Writes the file's dirty pages (through the mapping too) to disk.
  Status sync() { return env_->sync(fd_, path_); }

 private:
  Region() = default;
  Status map_range(uint64_t from, uint64_t to);

  Env* env_ = nullptr;
  std::string path_;
  int fd_ = -1;
  char* reservation_ = nullptr;
  char* ro_base_ = nullptr;
  char* rw_base_ = nullptr;
  uint64_t max_size_ = 0;
  uint64_t grow_chunk_ = 0;
  uint64_t seed_ = 0;
  bool huge_pages_ = true;
  util::Mutex map_mu_;  // serialises extending this process's mapping (mapped_ is atomic)
  std::atomic<uint64_t> mapped_{0};
};

}  // namespace stoa::region

#endif  // STOA_REGION_REGION_H_
