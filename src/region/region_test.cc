// The data file's region (region/region.cc): create then open round-trips the
// header (max_size rounded to pages, grow_chunk, max_sessions, a nonzero
// seed, the caller's layout word); open refuses another layout word with
// kVersionMismatch naming it and a truncated file with kCorrupt;
// check_header refuses bad magic, a flipped byte and out-of-range fields
// (kCorrupt), another format version with a valid checksum
// (kVersionMismatch) and a short file (kCorrupt "truncated"); create refuses
// max_size and max_sessions out of range (kInvalidArgument); reach() accepts
// only 8-aligned heap offsets inside the file; extend() under the page lock
// grows the mapping, and another mapping of the same file follows once the
// new size is published (ensure, refresh_mapping); grown to max_size, the
// two views neither overlap nor disagree, with or without huge pages, and
// both start on a 2 MiB boundary (so large folios can be mapped whole).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "region/layout.h"
#include "region/region.h"
#include "stoa/env.h"
#include "util/hash.h"
#include "util/scratch_dir.h"
#include "util/shm_mutex.h"

namespace stoa::region {
namespace {

constexpr uint64_t kLayout = 0x5eed1a70u;

// The checksum exactly as region.cc computes it: every byte before `checksum`.
uint64_t checksum_of(const FileHeader& h) {
  return util::checksum64(&h, offsetof(FileHeader, checksum));
}

CreateParams params() {
  CreateParams p{};
  p.max_size = 4 * kMinMaxSize + 100;  // not a page multiple: rounded up
  p.initial_size = 0;                  // the minimum: heap start plus 16 pages
  p.grow_chunk = 5000;                 // rounded up to 2 pages
  p.max_sessions = 17;
  p.durability = 1;
  p.layout_word = kLayout;
  return p;
}

class RegionTest : public ::testing::Test {
 protected:
  std::unique_ptr<Region> create_and_open() {
    Status st = Region::create(env_, path_, params());
    EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().to_string());
    auto r = Region::open(env_, path_, kLayout);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
    return r.ok() ? std::move(r).value() : nullptr;
  }

  // The header image as written to disk.
  FileHeader header_on_disk() {
    FileHeader h{};
    int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    EXPECT_EQ(::pread(fd, &h, sizeof(h), 0), ssize_t(sizeof(h)));
    ::close(fd);
    return h;
  }

  uint64_t bytes_on_disk() {
    struct stat s;
    EXPECT_EQ(::stat(path_.c_str(), &s), 0) << std::strerror(errno);
    return uint64_t(s.st_size);
  }

  Env* env_ = Env::posix();
  util::testing::ScratchDir scratch_{"region"};
  const std::string dir_ = scratch_.path();
  const std::string path_ = dir_ + "/stoa.data";
};

TEST_F(RegionTest, CreateThenOpenRoundTripsTheHeader) {
  auto r = create_and_open();
  ASSERT_NE(r, nullptr);
  const FileHeader& h = r->header();
  EXPECT_EQ(std::memcmp(h.magic, kDataMagic, sizeof(kDataMagic)), 0);
  EXPECT_EQ(h.format_version, kFormatVersion);
  EXPECT_EQ(h.page_size, kPageSize);
  EXPECT_EQ(h.layout_word, kLayout);
  EXPECT_EQ(h.max_size, 4 * kMinMaxSize + kPageSize);
  EXPECT_EQ(h.max_size % kPageSize, 0u);
  EXPECT_EQ(h.grow_chunk, 2u * kPageSize);
  EXPECT_EQ(h.max_sessions, 17u);
  EXPECT_EQ(h.durability, 1u);
  EXPECT_NE(h.seed, 0u);
  EXPECT_NE(h.created_ns, 0u);
  EXPECT_EQ(h.checksum, checksum_of(h));
  // The accessors agree with the header.
  EXPECT_EQ(r->seed(), h.seed);
  EXPECT_EQ(r->max_size(), h.max_size);
  EXPECT_EQ(r->grow_chunk(), h.grow_chunk);
  EXPECT_EQ(r->path(), path_);
  // The minimum initial size, all of it mapped.
  EXPECT_EQ(r->meta()->magic, kHeapMetaMagic);
  EXPECT_EQ(r->file_size(), kHeapStart + 16 * kPageSize);
  EXPECT_EQ(r->mapped(), r->file_size());
  EXPECT_EQ(bytes_on_disk(), r->file_size());
  // No half-made file is left behind.
  EXPECT_FALSE(env_->exists(path_ + ".creating"));
}

TEST_F(RegionTest, TwoStoresGetDifferentSeeds) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  ASSERT_TRUE(Region::create(env_, dir_ + "/other.data", params()).ok());
  auto a = Region::open(env_, path_, kLayout);
  auto b = Region::open(env_, dir_ + "/other.data", kLayout);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)->seed(), (*b)->seed());
}

TEST_F(RegionTest, OpenWithAnotherLayoutWordIsVersionMismatch) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  auto r = Region::open(env_, path_, kLayout ^ 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), Code::kVersionMismatch) << r.error().to_string();
  EXPECT_NE(r.error().message().find("layout"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("0x5eed1a70"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find(path_), std::string::npos) << r.error().message();
}

TEST_F(RegionTest, OpenOfATruncatedFileIsCorrupt) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  ASSERT_EQ(::truncate(path_.c_str(), kHeapStart), 0) << std::strerror(errno);
  auto r = Region::open(env_, path_, kLayout);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), Code::kCorrupt) << r.error().to_string();
  EXPECT_NE(r.error().message().find("truncated"), std::string::npos) << r.error().message();

  // Shorter than the header itself.
  ASSERT_EQ(::truncate(path_.c_str(), 10), 0) << std::strerror(errno);
  r = Region::open(env_, path_, kLayout);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), Code::kCorrupt) << r.error().to_string();
}

TEST_F(RegionTest, OpenOfAMissingFileIsNotFound) {
  auto r = Region::open(env_, path_, kLayout);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), Code::kNotFound) << r.error().to_string();
}

TEST_F(RegionTest, CheckHeaderAcceptsTheWrittenHeader) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  const FileHeader h = header_on_disk();
  Status st = Region::check_header(h, bytes_on_disk(), path_, kLayout);
  EXPECT_TRUE(st.ok()) << st.error().to_string();
  // The smallest file a store can have passes too.
  EXPECT_TRUE(Region::check_header(h, kHeapStart + kPageSize, path_, kLayout).ok());
}

TEST_F(RegionTest, CheckHeaderRefusesBadMagic) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  FileHeader h = header_on_disk();
  h.magic[0] = 'X';
  h.checksum = checksum_of(h);  // even with a valid checksum
  Status st = Region::check_header(h, bytes_on_disk(), path_, kLayout);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.error().to_string();
  EXPECT_NE(st.error().message().find("magic"), std::string::npos) << st.error().message();
}

TEST_F(RegionTest, CheckHeaderRefusesAnotherFormatVersion) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  FileHeader h = header_on_disk();
  h.format_version = kFormatVersion + 1;
  h.checksum = checksum_of(h);
  Status st = Region::check_header(h, bytes_on_disk(), path_, kLayout);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kVersionMismatch) << st.error().to_string();
  EXPECT_NE(st.error().message().find("format version"), std::string::npos) << st.error().message();

  // The same change without the checksum fixed is damage, not a version.
  FileHeader damaged = header_on_disk();
  damaged.format_version = kFormatVersion + 1;
  st = Region::check_header(damaged, bytes_on_disk(), path_, kLayout);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.error().to_string();
}

TEST_F(RegionTest, CheckHeaderRefusesAFlippedByte) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  const FileHeader good = header_on_disk();
  // Every byte the checksum covers but the magic (checked first): a changed
  // format_version whose checksum does not match is damage too.
  for (size_t i = offsetof(FileHeader, format_version); i < offsetof(FileHeader, checksum); i++) {
    FileHeader h = good;
    reinterpret_cast<unsigned char*>(&h)[i] ^= 0x10;
    Status st = Region::check_header(h, bytes_on_disk(), path_, kLayout);
    ASSERT_FALSE(st.ok()) << "byte " << i;
    EXPECT_EQ(st.code(), Code::kCorrupt) << "byte " << i << ": " << st.error().to_string();
    EXPECT_NE(st.error().message().find("checksum"), std::string::npos) << st.error().message();
  }
  // And the checksum itself.
  FileHeader h = good;
  h.checksum ^= 1;
  Status st = Region::check_header(h, bytes_on_disk(), path_, kLayout);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.error().to_string();
}

TEST_F(RegionTest, CheckHeaderRefusesOutOfRangeFields) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  const FileHeader good = header_on_disk();
  auto refused = [&](FileHeader h, const char* what) {
    h.checksum = checksum_of(h);  // consistent, but out of range
    Status st = Region::check_header(h, bytes_on_disk(), path_, kLayout);
    ASSERT_FALSE(st.ok()) << what;
    EXPECT_EQ(st.code(), Code::kCorrupt) << what << ": " << st.error().to_string();
    EXPECT_NE(st.error().message().find("out of range"), std::string::npos)
        << what << ": " << st.error().message();
  };
  FileHeader h = good;
  h.max_sessions = 0;
  refused(h, "max_sessions 0");
  h = good;
  h.max_sessions = kMaxSlots + 1;
  refused(h, "max_sessions past kMaxSlots");
  h = good;
  h.max_size = kMinMaxSize - kPageSize;
  refused(h, "max_size too small");
  h = good;
  h.max_size = kMaxMaxSize + kPageSize;
  refused(h, "max_size too large");
  h = good;
  h.max_size += 8;
  refused(h, "max_size not a page multiple");
  h = good;
  h.grow_chunk = 0;
  refused(h, "grow_chunk 0");

  // The largest max_sessions is fine.
  h = good;
  h.max_sessions = kMaxSlots;
  h.checksum = checksum_of(h);
  EXPECT_TRUE(Region::check_header(h, bytes_on_disk(), path_, kLayout).ok());
}

TEST_F(RegionTest, CheckHeaderRefusesAnotherPageSize) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  FileHeader h = header_on_disk();
  h.page_size = 2 * kPageSize;
  h.checksum = checksum_of(h);
  Status st = Region::check_header(h, bytes_on_disk(), path_, kLayout);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kVersionMismatch) << st.error().to_string();
}

TEST_F(RegionTest, CheckHeaderRefusesATruncatedFile) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  const FileHeader h = header_on_disk();
  Status st = Region::check_header(h, kHeapStart + kPageSize - 1, path_, kLayout);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.error().to_string();
  EXPECT_NE(st.error().message().find("truncated"), std::string::npos) << st.error().message();
}

TEST_F(RegionTest, CreateRefusesOutOfRangeParams) {
  auto refused = [&](CreateParams p, const char* what) {
    Status st = Region::create(env_, path_, p);
    ASSERT_FALSE(st.ok()) << what;
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << what << ": " << st.error().to_string();
    EXPECT_FALSE(env_->exists(path_)) << what;
    EXPECT_FALSE(env_->exists(path_ + ".creating")) << what;
  };
  CreateParams p = params();
  p.max_size = kMinMaxSize - 1;
  refused(p, "max_size below the minimum");
  p = params();
  p.max_size = kMaxMaxSize + 1;
  refused(p, "max_size above the maximum");
  p = params();
  p.max_sessions = 0;
  refused(p, "max_sessions 0");
  p = params();
  p.max_sessions = kMaxSlots + 1;
  refused(p, "max_sessions past kMaxSlots");
}

TEST_F(RegionTest, ReachAcceptsOnlyAlignedHeapOffsetsInsideTheFile) {
  auto r = create_and_open();
  ASSERT_NE(r, nullptr);
  const uint64_t fs = r->file_size();
  EXPECT_TRUE(r->reach(kHeapStart, 16));
  EXPECT_TRUE(r->reach(kHeapStart + 64, 16));
  EXPECT_TRUE(r->reach(fs - 8, 8));  // the last word of the file
  // Below the heap: the header, heap metadata and roots pages.
  EXPECT_FALSE(r->reach(0, 16));
  EXPECT_FALSE(r->reach(kHeapMetaOffset, 16));
  EXPECT_FALSE(r->reach(kHeapStart - 8, 8));
  // Unaligned.
  EXPECT_FALSE(r->reach(kHeapStart + 4, 8));
  EXPECT_FALSE(r->reach(kHeapStart + 1, 1));
  // Past the file, or straddling its end, or overflowing.
  EXPECT_FALSE(r->reach(fs, 8));
  EXPECT_FALSE(r->reach(fs - 8, 16));
  EXPECT_FALSE(r->reach(fs + kPageSize, 8));
  EXPECT_FALSE(r->reach(r->max_size() - 8, 8));
  EXPECT_FALSE(r->reach(UINT64_MAX - 7, 16));
  EXPECT_FALSE(r->reach(kHeapStart, UINT64_MAX));
  // None of that changed the mapping.
  EXPECT_EQ(r->mapped(), fs);
}

TEST_F(RegionTest, EnsureRefusesRangesOutsideTheFile) {
  auto r = create_and_open();
  ASSERT_NE(r, nullptr);
  const uint64_t fs = r->file_size();
  EXPECT_TRUE(r->ensure(kHeapStart, fs - kHeapStart).ok());
  Status st = r->ensure(fs - 8, 16);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.error().to_string();
  st = r->ensure(UINT64_MAX - 7, 16);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.error().to_string();
  EXPECT_TRUE(r->refresh_mapping().ok());
  EXPECT_EQ(r->mapped(), fs);
}

TEST_F(RegionTest, ExtendGrowsTheMappingAndOthersFollowOncePublished) {
  auto a = create_and_open();
  ASSERT_NE(a, nullptr);
  auto opened = Region::open(env_, path_, kLayout);  // a second mapping, as another process has
  ASSERT_TRUE(opened.ok()) << opened.error().to_string();
  std::unique_ptr<Region> b = std::move(opened).value();

  const uint64_t old_size = a->file_size();
  const uint64_t new_size = old_size + 3 * a->grow_chunk();
  {
    util::ShmLock g(a->meta()->page_lock);  // extend's caller holds the page lock
    Status st = a->extend(new_size);
    ASSERT_TRUE(st.ok()) << st.error().to_string();
    // Mapped here, and the file has the blocks, but not yet published.
    EXPECT_EQ(a->mapped(), new_size);
    EXPECT_GE(bytes_on_disk(), new_size);
    EXPECT_EQ(a->file_size(), old_size);
    // The new space is writable through the rw view and visible through ro.
    *a->rw(new_size - 8) = 'z';
    *a->rw(old_size) = 'y';
    EXPECT_EQ(*a->ro(new_size - 8), 'z');
    // The other mapping cannot reach it before the size is published.
    EXPECT_FALSE(b->reach(old_size, 8));
    EXPECT_EQ(b->mapped(), old_size);
    a->meta()->file_size.store(new_size, std::memory_order_release);
  }
  // Now it maps the new part the first time it meets an offset there.
  EXPECT_EQ(b->file_size(), new_size);
  EXPECT_EQ(b->mapped(), old_size);
  EXPECT_TRUE(b->reach(old_size, 8));
  EXPECT_EQ(b->mapped(), new_size);
  EXPECT_EQ(*b->ro(old_size), 'y');
  EXPECT_EQ(*b->ro(new_size - 8), 'z');
  EXPECT_FALSE(b->reach(new_size, 8));

  // Shrinking is a no-op; growing past max_size is kFull.
  util::ShmLock g(a->meta()->page_lock);
  EXPECT_TRUE(a->extend(old_size).ok());
  EXPECT_EQ(a->mapped(), new_size);
  Status st = a->extend(a->max_size() + kPageSize);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kFull) << st.error().to_string();
  EXPECT_EQ(a->file_size(), new_size);
}

TEST_F(RegionTest, RefreshMappingFollowsThePublishedSize) {
  auto a = create_and_open();
  ASSERT_NE(a, nullptr);
  auto opened = Region::open(env_, path_, kLayout);
  ASSERT_TRUE(opened.ok()) << opened.error().to_string();
  std::unique_ptr<Region> b = std::move(opened).value();
  const uint64_t new_size = a->file_size() + a->grow_chunk();
  {
    util::ShmLock g(a->meta()->page_lock);
    ASSERT_TRUE(a->extend(new_size).ok());
    a->meta()->file_size.store(new_size, std::memory_order_release);
  }
  ASSERT_TRUE(b->refresh_mapping().ok());
  EXPECT_EQ(b->mapped(), new_size);
  EXPECT_TRUE(b->ensure(new_size - 8, 8).ok());
  // A reopened region maps the grown file whole.
  b.reset();
  auto c = Region::open(env_, path_, kLayout);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ((*c)->mapped(), new_size);
}

TEST_F(RegionTest, AtMaxSizeTheViewsAreApartHugeAlignedAndAgree) {
  ASSERT_TRUE(Region::create(env_, path_, params()).ok());
  for (bool huge : {true, false}) {
    SCOPED_TRACE(huge ? "huge_pages" : "no huge_pages");
    auto opened = Region::open(env_, path_, kLayout, huge);
    ASSERT_TRUE(opened.ok()) << opened.error().to_string();
    std::unique_ptr<Region> r = std::move(opened).value();
    const uint64_t max = r->max_size();
    ASSERT_NE(max % (uint64_t{2} << 20), 0u);  // the case where rounding matters
    {
      util::ShmLock g(r->meta()->page_lock);
      ASSERT_TRUE(r->extend(max).ok());
      r->meta()->file_size.store(max, std::memory_order_release);
    }
    const auto ro0 = reinterpret_cast<uintptr_t>(r->ro(0));
    const auto rw0 = reinterpret_cast<uintptr_t>(r->rw(0));
    EXPECT_EQ(ro0 % (uint64_t{2} << 20), 0u);
    EXPECT_EQ(rw0 % (uint64_t{2} << 20), 0u);
    EXPECT_GE(rw0 - ro0, max);  // the read-only view ends before the writable one
    // Each heap page carries its own offset, written through rw, read through ro.
    for (uint64_t off = kHeapStart; off < max; off += kPageSize) {
      std::memcpy(r->rw(off), &off, sizeof(off));
    }
    for (uint64_t off = kHeapStart; off < max; off += kPageSize) {
      uint64_t seen = 0;
      std::memcpy(&seen, r->ro(off), sizeof(seen));
      ASSERT_EQ(seen, off);
    }
    EXPECT_EQ(std::memcmp(r->header().magic, kDataMagic, sizeof(kDataMagic)), 0);
  }
}

}  // namespace
}  // namespace stoa::region
