// util/hash_test.cc — checksum64 is XXH3-64 whichever path it takes.
//
// Every checksum in the file formats (docs/format.md) is checksum64, so the
// inline short path and the library's dispatch for long inputs (AVX2 or
// AVX-512 where the CPU has them) must give the reference XXH3 for every
// length and seed, on both sides of the 240-byte switch.
#include "util/hash.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace stoa::util {
namespace {

TEST(HashTest, KnownVector) {
  // XXH3-64 of the empty input, seed 0 (xxHash's own test vector).
  EXPECT_EQ(checksum64("", 0), 0x2D06800538D394C2ull);
}

TEST(HashTest, BothPathsGiveTheReferenceForEveryLengthAndSeed) {
  std::vector<unsigned char> buf(5000);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (auto& b : buf) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = static_cast<unsigned char>(x);
  }
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{0x5354'4f41'4b45'5931}}) {
    for (size_t len = 0; len <= buf.size(); len += (len < 300 ? 1 : 97)) {
      // The portable implementation compiled here (XXH_INLINE_ALL).
      ASSERT_EQ(checksum64(buf.data(), len, seed), XXH3_64bits_withSeed(buf.data(), len, seed))
          << "len " << len << " seed " << seed;
    }
  }
}

}  // namespace
}  // namespace stoa::util
