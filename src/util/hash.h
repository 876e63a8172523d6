// util/hash.h — checksums and keyed guard hashes (xxHash, XXH3).
//
// Thread safety: pure functions.
#ifndef STOA_UTIL_HASH_H_
#define STOA_UTIL_HASH_H_

#include <cstddef>
#include <cstdint>

// Every read hashes its key and an inline value (index/layout.h), each a
// short XXH3: compiled into this library (XXH_INLINE_ALL) rather than
// called through libxxhash's PLT. Long inputs go to the library's
// dispatch (checksum64_long). util/hash_test.cc checks both paths against
// the reference.
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

namespace stoa::util {

// XXH3-64 of a byte range past XXH3's short inputs (240 bytes): the
// library's run-time dispatch, which takes AVX2 or AVX-512 where the CPU
// has them (log records, node sums, data-file sums). The same function of
// the bytes as the inline path.
uint64_t checksum64_long(const void* data, size_t len, uint64_t seed);

// XXH3-64 of a byte range.
inline uint64_t checksum64(const void* data, size_t len, uint64_t seed = 0) {
  if (len > 240) return checksum64_long(data, len, seed);
  return XXH3_64bits_withSeed(data, len, seed);
}

// A cheap keyed mix of two words (not cryptographic): guards in headers,
// so a stray copy of a header to another place, or a flipped bit, fails.
inline uint64_t mix64(uint64_t a, uint64_t b, uint64_t seed) {
  uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) ^ seed;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 32;
  return x;
}

}  // namespace stoa::util

#endif  // STOA_UTIL_HASH_H_
