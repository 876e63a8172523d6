// stoa-read-probe: a fixed read workload for counting instructions.
//
// The reference machines are shared VMs whose timings move by +-15% from run
// to run, which hides read-path changes of a few percent. This program does
// the same work every run (no clock, no random seed): it loads N keys of
// 16 B with 100 B values (10k puts a transaction, Durability::kNone), then
// runs `do_scans` (100 forward scans of 1000 keys) and `do_gets` (100k point
// reads), each in a function of its own so that callgrind can count them
// apart. bench/probe/count_instructions.sh runs it under callgrind and
// prints instructions per scanned key and per get.
//
// Usage: stoa-read-probe DIR [N]   (DIR is created and must not exist; N
// defaults to 200000, at least 10000).
#include <stoa/store.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

constexpr int kScans = 100;
constexpr int kScanLen = 1000;
constexpr int kGets = 100000;

// Key i: 16 hex digits of i times an odd constant, so prefixes differ as
// they do for random keys.
std::string hex_key(uint64_t x) {
  char k[17];
  std::snprintf(k, sizeof k, "%016llx", static_cast<unsigned long long>(x));
  return std::string(k, 16);
}
std::string key_of(uint64_t i) { return hex_key(i * 0x9E3779B97F4A7C15ull); }

__attribute__((noinline)) long do_scans(stoa::Txn& r) {
  long bytes = 0;
  for (int s = 0; s < kScans; s++) {
    // Starts spread over the lower half of the key space, so that each
    // scan has far more than kScanLen keys after it.
    auto c = r.scan(hex_key(uint64_t(s) * ((uint64_t{1} << 63) / kScans)), "");
    if (!c.ok()) return -1;
    for (int j = 0; j < kScanLen && c->valid(); j++) {
      bytes += long(c->value().size());
      if (!c->next().ok()) return -1;
    }
  }
  return bytes;
}

__attribute__((noinline)) long do_gets(stoa::Txn& r, uint64_t n) {
  long bytes = 0;
  for (int g = 0; g < kGets; g++) {
    auto v = r.get(key_of((uint64_t(g) * 7919) % n));
    if (!v.ok()) return -1;
    bytes += long(v->size());
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [N]\n", argv[0]);
    return 2;
  }
  const uint64_t n = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 200000;
  if (n < uint64_t(kScanLen) * 10) {
    std::fprintf(stderr, "N must be at least %d\n", 10 * kScanLen);
    return 2;
  }
  stoa::Options o;
  o.durability = stoa::Durability::kNone;
  auto store = stoa::Store::open(argv[1], o);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.error().to_string().c_str());
    return 1;
  }
  auto s = (*store)->session();
  if (!s.ok()) return 1;
  const std::string value(100, 'v');
  for (uint64_t b = 0; b < n; b += 10000) {
    auto t = s->begin({});
    if (!t.ok()) return 1;
    for (uint64_t i = b; i < b + 10000 && i < n; i++) {
      if (!t->put(key_of(i), value).ok()) return 1;
    }
    if (!t->commit().ok()) return 1;
  }
  auto r = s->begin({.read_only = true});
  if (!r.ok()) return 1;
  const long scanned = do_scans(*r), got = do_gets(*r, n);
  if (scanned != long(kScans) * kScanLen * 100 || got != long(kGets) * 100) {
    std::fprintf(stderr, "wrong results: %ld scanned bytes, %ld read bytes\n", scanned, got);
    return 1;
  }
  std::printf("scanned %d keys, read %d keys\n", kScans * kScanLen, kGets);
  return 0;
}
