#include "util/hash.h"

#if defined(__x86_64__)
// From the shared library (xxh_x86dispatch.h declares it; that header
// cannot be included beside the inline one).
extern "C" XXH64_hash_t XXH3_64bits_withSeed_dispatch(const void* input, size_t len,
                                                      XXH64_hash_t seed);
#endif

namespace stoa::util {

uint64_t checksum64_long(const void* data, size_t len, uint64_t seed) {
#if defined(__x86_64__)
  return XXH3_64bits_withSeed_dispatch(data, len, seed);
#else
  return XXH3_64bits_withSeed(data, len, seed);
#endif
}

}  // namespace stoa::util
