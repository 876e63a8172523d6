// crash/crash_point.cc — arming and firing named crash points.
#include "crash/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace stoa::internal::crash {

std::atomic<uint32_t> g_armed{0};

namespace {

struct Entry {
  std::string_view name;
  std::string_view what;
};
constexpr Entry kEntries[] = {
#define STOA_CRASH_ENTRY(id, name, what) {name, what},
    STOA_CRASH_POINTS_LIST(STOA_CRASH_ENTRY)
#undef STOA_CRASH_ENTRY
};
static_assert(sizeof(kEntries) / sizeof(kEntries[0]) == kPointCount);

std::atomic<uint64_t> g_target{0};  // the hit that kills
std::atomic<uint64_t> g_hits{0};    // hits of the armed point so far

// STOA_CRASH_AT=<name>:<n>, read once when the library loads.
[[maybe_unused]] const bool g_from_env = [] {
#if defined(STOA_CRASH_POINTS)
  const char* e = std::getenv("STOA_CRASH_AT");
  if (e == nullptr) return false;
  std::string_view s(e);
  size_t colon = s.rfind(':');
  auto p = find(s.substr(0, colon));
  if (!p) return false;
  uint64_t n = colon == std::string_view::npos ? 1 : std::strtoull(e + colon + 1, nullptr, 10);
  arm(*p, n == 0 ? 1 : n);
  return true;
#else
  return false;
#endif
}();

}  // namespace

std::string_view name(Point p) { return kEntries[uint32_t(p)].name; }
std::string_view what(Point p) { return kEntries[uint32_t(p)].what; }

std::optional<Point> find(std::string_view n) {
  for (uint32_t i = 0; i < kPointCount; i++)
    if (kEntries[i].name == n) return Point(i);
  return std::nullopt;
}

bool compiled_in() {
#if defined(STOA_CRASH_POINTS)
  return true;
#else
  return false;
#endif
}

void arm(Point p, uint64_t n) {
  g_armed.store(0, std::memory_order_seq_cst);
  g_hits.store(0, std::memory_order_seq_cst);
  g_target.store(n == 0 ? 1 : n, std::memory_order_seq_cst);
  g_armed.store(uint32_t(p) + 1, std::memory_order_seq_cst);
}

void disarm() { g_armed.store(0, std::memory_order_seq_cst); }

uint64_t hits() { return g_hits.load(std::memory_order_seq_cst); }

void hit_slow(Point) {
  if (g_hits.fetch_add(1, std::memory_order_seq_cst) + 1 >= g_target.load()) {
    ::kill(::getpid(), SIGKILL);
    for (;;) ::pause();  // SIGKILL is not deliverable late, but never return
  }
}

}  // namespace stoa::internal::crash
