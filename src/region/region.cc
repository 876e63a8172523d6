// region/region.cc — creating, validating, mapping and growing the data file.
//
// Invariants
//  - Every process maps the file at offsets [0, mapped) of both views, and
//    mapped <= HeapMeta::file_size <= the file's real length.
//  - file_size only grows, and only under the page lock (heap.cc). The grower
//    first makes the disk blocks exist (posix_fallocate, so a full disk is an
//    error now rather than a SIGBUS later), then maps them itself, then
//    publishes the new size with a release store.
//
// Crash between steps: a grower killed after fallocate but before publishing
// leaves a file longer than file_size; the next grower allocates the same
// range again (fallocate is idempotent). Nothing reads beyond file_size.
//
// Creation writes the header and heap metadata with pwrite, syncs, and only
// then is the file renamed into place, so a crash during creation leaves no
// half-made store under the real name.
#include "region/region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "region/heap.h"
#include "util/clock.h"
#include "util/hash.h"

namespace stoa::region {

namespace {
// Both views start on a 2 MiB boundary and lie 2 MiB-congruent to file
// offsets, so the kernel can map a large page-cache folio of the data file
// with one PMD entry (see the note at Region::map_range).
constexpr uint64_t kHugeAlign = uint64_t{2} << 20;
// madvise advice from Linux 5.14 (older headers lack the names).
constexpr int kPopulateRead = 22;   // MADV_POPULATE_READ
constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

// Address space for both views: each rounded up to the huge-page size, plus
// the slack that lets the first view start on a 2 MiB boundary.
uint64_t reservation_bytes(uint64_t max_size) {
  return 2 * round_up(max_size, kHugeAlign) + kHugeAlign;
}

uint64_t header_checksum(const FileHeader& h) {
  return util::checksum64(&h, offsetof(FileHeader, checksum));
}

}  // namespace

Status Region::check_header(const FileHeader& h, uint64_t file_bytes, const std::string& path,
                            uint64_t layout_word) {
  if (std::memcmp(h.magic, kDataMagic, sizeof(kDataMagic)) != 0) {
    return Error(Code::kCorrupt,
                 fmt::format("{}: not a Stoa data file (bad magic at offset 0)", path));
  }
  if (h.format_version != kFormatVersion && header_checksum(h) == h.checksum) {
    return Error(Code::kVersionMismatch, fmt::format("{}: format version {} (this build reads {})",
                                                     path, h.format_version, kFormatVersion));
  }
  if (header_checksum(h) != h.checksum) {
    return Error(Code::kCorrupt, fmt::format("{}: header checksum mismatch (offset {})", path,
                                             offsetof(FileHeader, checksum)));
  }
  if (h.layout_word != layout_word) {
    return Error(Code::kVersionMismatch,
                 fmt::format("{}: struct layout {:#x} differs from this build's {:#x}", path,
                             h.layout_word, layout_word));
  }
  if (h.page_size != kPageSize) {
    return Error(Code::kVersionMismatch, fmt::format("{}: page size {} (this build uses {})", path,
                                                     h.page_size, kPageSize));
  }
  if (h.max_size < kMinMaxSize || h.max_size > kMaxMaxSize || h.max_size % kPageSize != 0 ||
      h.grow_chunk == 0 || h.grow_chunk % kPageSize != 0 || h.max_sessions == 0 ||
      h.max_sessions > kMaxSlots) {
    return Error(Code::kCorrupt, fmt::format("{}: header fields out of range (max_size {}, "
                                             "grow_chunk {}, max_sessions {})",
                                             path, h.max_size, h.grow_chunk, h.max_sessions));
  }
  if (file_bytes < kHeapStart + kPageSize) {
    return Error(Code::kCorrupt, fmt::format("{}: truncated: {} bytes, a store has at least {}",
                                             path, file_bytes, kHeapStart + kPageSize));
  }
  return {};
}

Status Region::create(Env* env, const std::string& path, const CreateParams& p) {
  if (p.max_size < kMinMaxSize || p.max_size > kMaxMaxSize) {
    return Error(Code::kInvalidArgument, fmt::format("max_size {} out of range [{}, {}]",
                                                     p.max_size, kMinMaxSize, kMaxMaxSize));
  }
  if (p.max_sessions == 0 || p.max_sessions > kMaxSlots) {
    return Error(Code::kInvalidArgument,
                 fmt::format("max_sessions {} out of range [1, {}]", p.max_sessions, kMaxSlots));
  }
  const uint64_t max_size = round_up(p.max_size, kPageSize);
  const uint64_t chunk = round_up(std::max<uint64_t>(p.grow_chunk, kPageSize), kPageSize);
  uint64_t size =
      round_up(std::max<uint64_t>(p.initial_size, kHeapStart + 16 * kPageSize), kPageSize);
  if (size > max_size) size = max_size;

  std::vector<char> page0(kPageSize, 0), page1(kPageSize, 0);
  auto* h = reinterpret_cast<FileHeader*>(page0.data());
  std::memcpy(h->magic, kDataMagic, sizeof(kDataMagic));
  h->format_version = kFormatVersion;
  h->page_size = kPageSize;
  h->layout_word = p.layout_word;
  h->max_size = max_size;
  h->grow_chunk = chunk;
  h->created_ns = util::real_ns();
  std::random_device rd;
  h->seed = (uint64_t(rd()) << 32) ^ rd() ^ h->created_ns;
  h->max_sessions = p.max_sessions;
  h->durability = p.durability;
  h->checksum = header_checksum(*h);

  auto* m = reinterpret_cast<HeapMeta*>(page1.data());
  m->magic = kHeapMetaMagic;
  m->clean = 1;
  m->file_size.store(size, std::memory_order_relaxed);
  m->page_lock.init();
  for (auto& c : m->classes) c.lock.init();
  // The heap starts as one free run, in bin 64 or its exact bin.
  const uint64_t npages = (size - kHeapStart) / kPageSize;
  m->free_pages = npages;
  m->bins[npages <= 64 ? npages - 1 : 64] = kHeapStart;
  std::vector<char> run(kPageSize, 0);
  reinterpret_cast<RunHeader*>(run.data())
      ->word.store(encode_run(h->seed, kHeapStart, RunInfo{RunKind::kFree, 0, npages}),
                   std::memory_order_relaxed);
  RunFooter footer{kHeapStart, footer_guard(h->seed, kHeapStart, size)};

  const std::string tmp = path + ".creating";
  STOA_ASSIGN(int fd, env->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644));
  Status st = env->allocate(fd, 0, size, tmp);
  if (st.ok()) st = env->pwrite_all(fd, page0.data(), kPageSize, 0, tmp);
  if (st.ok()) st = env->pwrite_all(fd, page1.data(), kPageSize, kHeapMetaOffset, tmp);
  if (st.ok()) st = env->pwrite_all(fd, run.data(), kPageSize, kHeapStart, tmp);
  if (st.ok()) st = env->pwrite_all(fd, &footer, sizeof(footer), size - sizeof(footer), tmp);
  if (st.ok()) st = env->sync(fd, tmp);
  env->close(fd);
  if (st.ok()) st = env->rename(tmp, path);
  if (!st.ok()) (void)env->remove(tmp);
  return st;
}

Result<std::unique_ptr<Region>> Region::open(Env* env, const std::string& path,
                                             uint64_t layout_word, bool huge_pages) {
  std::unique_ptr<Region> r(new Region());
  r->huge_pages_ = huge_pages;
  r->env_ = env;
  r->path_ = path;
  STOA_ASSIGN(r->fd_, env->open(path, O_RDWR, 0));
  STOA_ASSIGN(uint64_t bytes, env->file_size(r->fd_, path));
  FileHeader h{};
  if (bytes < sizeof(FileHeader)) {
    return Error(Code::kCorrupt, fmt::format("{}: truncated: {} bytes, a store has at least {}",
                                             path, bytes, kHeapStart + kPageSize));
  }
  STOA_TRY(env->pread_all(r->fd_, &h, sizeof(h), 0, path));
  STOA_TRY(check_header(h, bytes, path, layout_word));
  r->max_size_ = h.max_size;
  r->grow_chunk_ = h.grow_chunk;
  r->seed_ = h.seed;

  const uint64_t reserve = reservation_bytes(h.max_size);
  void* res =
      ::mmap(nullptr, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (res == MAP_FAILED) {
    return errno_error(errno, fmt::format("reserve {} bytes of address space for", reserve), path);
  }
  r->reservation_ = static_cast<char*>(res);
  r->ro_base_ = r->reservation_ + (round_up(reinterpret_cast<uintptr_t>(res), kHugeAlign) -
                                   reinterpret_cast<uintptr_t>(res));
  r->rw_base_ = r->ro_base_ + round_up(h.max_size, kHugeAlign);
  // Map the two metadata pages first to read the published size.
  STOA_TRY(r->map_range(0, kHeapStart));
  r->mapped_.store(kHeapStart, std::memory_order_release);
  const HeapMeta* m = r->meta();
  if (m->magic != kHeapMetaMagic) {
    return Error(Code::kCorrupt, fmt::format("{}: heap metadata damaged (bad magic at offset {})",
                                             path, kHeapMetaOffset));
  }
  uint64_t fs = m->file_size.load(std::memory_order_acquire);
  // Another process may have grown the file since it was measured above: a
  // grower extends the file before it publishes file_size (release, read
  // here with acquire), so a second look at the length covers fs.
  if (fs > bytes) {
    STOA_ASSIGN(uint64_t now, env->file_size(r->fd_, path));
    bytes = now;
  }
  if (fs < kHeapStart + kPageSize || fs % kPageSize != 0 || fs > bytes || fs > h.max_size) {
    return Error(Code::kCorrupt,
                 fmt::format("{}: heap metadata damaged: file_size {} but the file has {} bytes "
                             "(offset {})",
                             path, fs, bytes, kHeapMetaOffset + offsetof(HeapMeta, file_size)));
  }
  STOA_TRY(r->refresh_mapping());
  return r;
}

Region::~Region() {
  if (reservation_ != nullptr) ::munmap(reservation_, reservation_bytes(max_size_));
  if (fd_ >= 0) env_->close(fd_);
}

// Huge pages. A commit writes a few records, versions and index pages spread
// over the heap; with 4 KiB mappings each first write to a clean page of a
// MAP_SHARED file mapping is a write-protect fault into the file system
// (page_mkwrite), two or so per commit, and each read of a cold page is a
// fault and a TLB entry. MADV_HUGEPAGE lets a kernel whose file system keeps
// large folios (ext4, xfs, tmpfs on recent Linux) map a 2 MiB folio with one
// PMD entry: one fault and one TLB entry per 2 MiB. The cost: the kernel's
// background write-back of the data file works per folio, so a dirty byte
// can rewrite up to 2 MiB. The data file is never synced by a commit
// (durability is the log and the checkpoint files), so this is write-back
// the kernel does in its own time, not commit latency. Where the kernel
// offers no huge pages the advice is ignored and 4 KiB pages are used.
Status Region::map_range(uint64_t from, uint64_t to) {
  if (to <= from) return {};
  void* a = ::mmap(ro_base_ + from, to - from, PROT_READ, MAP_SHARED | MAP_FIXED, fd_, off_t(from));
  if (a == MAP_FAILED) return errno_error(errno, fmt::format("map [{}, {}) of", from, to), path_);
  void* b = ::mmap(rw_base_ + from, to - from, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd_,
                   off_t(from));
  if (b == MAP_FAILED) return errno_error(errno, fmt::format("map [{}, {}) of", from, to), path_);
  if (huge_pages_) {
    (void)::madvise(a, to - from, MADV_HUGEPAGE);
    (void)::madvise(b, to - from, MADV_HUGEPAGE);
  }
  return {};
}

Status Region::refresh_mapping() {
  util::MutexLock g(map_mu_);
  uint64_t have = mapped_.load(std::memory_order_relaxed);
  uint64_t want = meta()->file_size.load(std::memory_order_acquire);
  if (want > max_size_) {
    return Error(Code::kCorrupt,
                 fmt::format("{}: file_size {} beyond max_size {}", path_, want, max_size_));
  }
  if (want <= have) return {};
  STOA_TRY(map_range(have, want));
  mapped_.store(want, std::memory_order_release);
  return {};
}

Status Region::ensure(Offset off, uint64_t len) {
  uint64_t end = off + len;
  if (end < off) return Error(Code::kCorrupt, fmt::format("{}: range at {} overflows", path_, off));
  if (end <= mapped()) return {};
  STOA_TRY(refresh_mapping());
  if (end > mapped()) {
    return Error(Code::kCorrupt, fmt::format("{}: offset {} (+{}) lies beyond the file's {} bytes",
                                             path_, off, len, file_size()));
  }
  return {};
}

Status Region::extend(uint64_t new_size) {
  uint64_t old = file_size();
  if (new_size <= old) return {};
  if (new_size > max_size_) {
    return Error(Code::kFull, fmt::format("{}: store is full: growing to {} bytes would pass "
                                          "max_size {}",
                                          path_, new_size, max_size_));
  }
  STOA_TRY(env_->allocate(fd_, old, new_size - old, path_));
  {
    util::MutexLock g(map_mu_);
    uint64_t have = mapped_.load(std::memory_order_relaxed);
    if (new_size > have) {
      STOA_TRY(map_range(have, new_size));
      mapped_.store(new_size, std::memory_order_release);
    }
  }
  prefault(old, new_size);
  return {};
}

void Region::prefault(uint64_t from, uint64_t to) {
  // The grower is about to carve these pages into runs and write them: fill
  // its page tables for both views now, in one call each, rather than one
  // fault per page later (a fault costs several microseconds in a VM). The
  // pages are freshly allocated and about to be dirtied anyway, so
  // populating for write wastes no write-back. Only a hint: a kernel
  // without MADV_POPULATE_* (before 5.14) says EINVAL and pages fault in as
  // they are touched.
  if (to <= from) return;
  (void)::madvise(rw_base_ + from, to - from, kPopulateWrite);
  (void)::madvise(const_cast<char*>(ro_base_) + from, to - from, kPopulateRead);
}

}  // namespace stoa::region
