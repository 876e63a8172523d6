// fuzz/smoke_main.cc — runs a fuzz target without libFuzzer: deterministic
// random inputs (bit flips, byte runs, zeroed spans), so the ordinary test
// suite exercises the same code on every build. Usage: <binary> [iterations]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 2000;
  std::mt19937_64 rng(20261122);
  for (int it = 0; it < iterations; it++) {
    std::vector<uint8_t> in(1 + 4 * 4096 + (it % 4 == 0 ? 4096 : 0), 0);
    in[0] = uint8_t(rng());
    int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; e++) {
      size_t pos = 1 + rng() % (in.size() - 1);
      switch (rng() % 3) {
        case 0:
          in[pos] ^= uint8_t(1u << (rng() % 8));
          break;  // one bit
        case 1:
          for (size_t k = pos; k < in.size() && k < pos + 8; k++) in[k] = uint8_t(rng());
          break;
        default:
          for (size_t k = pos; k < in.size() && k < pos + 64; k++) in[k] = 0xff;
          break;
      }
    }
    LLVMFuzzerTestOneInput(in.data(), in.size());
  }
  std::printf("%d inputs, no crash\n", iterations);
  return 0;
}
