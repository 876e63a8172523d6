// fuzz/smoke_main.cc — runs a fuzz target without libFuzzer, so the ordinary
// test suite exercises its input handling on every build.
//
//   <target>_smoke [iterations] [--expect=trusted|rebuilt|decoded]
//   <target>_smoke --write-corpus=DIR
//   <target>_smoke FILE...            (runs the given inputs, e.g. crashes)
//
// First the target's seeds (fuzz_seeds()): the baseline ones are unmutated
// templates, and --expect checks what they must do, so a target that stops
// reaching its code fails here:
//   trusted  the store opened from the mutated-in-place file, not rebuilt,
//            verified sound, every key read back (open_fuzz);
//   rebuilt  the store was rebuilt from checkpoint and log, replayed
//            records and read every key back (log_fuzz);
//   decoded  the record decoded (and round-tripped: record_fuzz).
// Then `iterations` deterministic mutations of the seeds (bit flips, byte
// runs, 0xff spans, flag bytes, appended edits). --write-corpus writes the
// seeds as files (fuzz/corpus/<target>/ is made this way) and exits.
// --last-input=FILE writes each input to FILE before running it, so after a
// crash FILE holds the input that crashed; --from=N skips the first N
// mutated inputs (still drawn, so the rest are the same).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using stoa::fuzz::Outcome;

std::string last_input;

int run(const std::string& in) {
  if (!last_input.empty()) stoa::fuzz::write_file(last_input, in);
  return LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(in.data()), in.size());
}

// Empty when the outcome meets the expectation, else what is wrong.
std::string check(const std::string& expect, const Outcome& o) {
  if (expect == "trusted") {
    if (!o.opened) return "did not open: " + o.error;
    if (o.rebuilt) return "was rebuilt: the mutated data file would not be what open reads";
    if (!o.sound) return "verify found problems";
    if (!o.intact) return "did not read back every template key";
  } else if (expect == "rebuilt") {
    if (!o.opened) return "did not open: " + o.error;
    if (!o.rebuilt) return "was not rebuilt: the log would not be replayed";
    if (o.records == 0) return "replayed no log record";
    if (!o.intact) return "did not read back every template key";
  } else if (expect == "decoded") {
    if (!o.decoded) return "did not decode";
  } else if (!expect.empty()) {
    return "unknown expectation " + expect;
  }
  return {};
}

std::string mutate(std::string in, std::mt19937_64& rng) {
  if (in.empty()) in.push_back(0);
  if (rng() % 4 == 0) in[0] = char(rng());
  if (rng() % 2 == 0) {  // a new edit (patch-format targets)
    const size_t n = 4 + rng() % 33;
    for (size_t k = 0; k < n; k++) in.push_back(char(rng()));
  }
  if (in.size() < 2) return in;
  const int edits = 1 + int(rng() % 4);
  for (int e = 0; e < edits; e++) {
    const size_t pos = 1 + rng() % (in.size() - 1);
    switch (rng() % 3) {
      case 0:
        in[pos] = char(in[pos] ^ (1u << (rng() % 8)));
        break;
      case 1:
        for (size_t k = pos; k < in.size() && k < pos + 8; k++) in[k] = char(rng());
        break;
      default:
        for (size_t k = pos; k < in.size() && k < pos + 64; k++) in[k] = char(0xff);
        break;
    }
  }
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 200, from = 0;
  std::string expect, corpus;
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; i++) {
    if (std::strncmp(argv[i], "--expect=", 9) == 0) {
      expect = argv[i] + 9;
    } else if (std::strncmp(argv[i], "--write-corpus=", 15) == 0) {
      corpus = argv[i] + 15;
    } else if (std::strncmp(argv[i], "--last-input=", 13) == 0) {
      last_input = argv[i] + 13;
    } else if (std::strncmp(argv[i], "--from=", 7) == 0) {
      from = std::atoi(argv[i] + 7);
    } else if (argv[i][0] >= '0' && argv[i][0] <= '9') {
      iterations = std::atoi(argv[i]);
    } else {
      inputs.push_back(argv[i]);
    }
  }
  if (!inputs.empty()) {
    for (const std::string& f : inputs) run(stoa::fuzz::read_file(f));
    std::printf("%zu inputs, no crash\n", inputs.size());
    return 0;
  }
  const std::vector<stoa::fuzz::Seed> seeds = stoa::fuzz::fuzz_seeds();
  if (!corpus.empty()) {
    for (size_t i = 0; i < seeds.size(); i++) {
      char name[32];
      std::snprintf(name, sizeof(name), "/seed-%02zu", i);
      stoa::fuzz::write_file(corpus + name, seeds[i].bytes);
    }
    std::printf("%zu seeds written to %s\n", seeds.size(), corpus.c_str());
    return 0;
  }
  for (size_t i = 0; i < seeds.size(); i++) {
    run(seeds[i].bytes);
    if (!seeds[i].baseline) continue;
    const std::string bad = check(expect, stoa::fuzz::last_outcome());
    if (!bad.empty()) {
      std::fprintf(stderr, "FAIL: baseline seed %zu (unmutated) %s\n", i, bad.c_str());
      return 1;
    }
  }
  std::mt19937_64 rng(20261122);
  int opened = 0, rebuilt = 0, decoded = 0;
  for (int it = 0; it < iterations; it++) {
    const std::string in = mutate(seeds[size_t(it) % seeds.size()].bytes, rng);
    if (it < from) continue;
    run(in);
    const Outcome& o = stoa::fuzz::last_outcome();
    opened += o.opened;
    rebuilt += o.rebuilt;
    decoded += o.decoded;
  }
  std::printf(
      "%zu seeds (baseline: %s) and %d mutated inputs, no crash: %d opened, %d rebuilt, "
      "%d decoded\n",
      seeds.size(), expect.empty() ? "unchecked" : expect.c_str(), iterations, opened, rebuilt,
      decoded);
  return 0;
}
