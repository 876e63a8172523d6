// No use-after-free between threads of one process: the in-process twin of
// reclaim_test's cross-process test, so that ThreadSanitizer (make
// test-tsan) and ASan can watch the same protocol. Writer threads replace
// entries of a published slot array and retire the old ones; each slot holds
// a slot word (test_util.h: the entry's offset and its sequence number's low
// bits; sequence numbers are unique across writers). Reader threads pin,
// load, validate against the word (header naming its own offset and that
// sequence number, no poison byte, checksum), hold a little, validate again,
// unpin. poison_freed is on, so a premature free is seen as poison or a bad
// checksum, and a free plus reuse at the same offset as another sequence
// number (reclaim_test's controls show both checks going red).
#include <gtest/gtest.h>

#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "api/access.h"
#include "session/session_core.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "test_util.h"

namespace stoa {
namespace {

using internal::SessionCore;
using namespace stoa::test;

constexpr int kSlots = 64;
constexpr int kWriters = 2;

struct Failures {
  std::atomic<uint64_t> count{0};
  std::mutex mu;
  std::string first;
  void add(std::string what) {
    if (count.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> g(mu);
      first = std::move(what);
    }
  }
};

// The slot word of a new entry; 0 when the allocation or publish failed
// (recorded in `f`).
uint64_t make_entry(SessionCore* c, std::mt19937_64& rng, uint64_t seq, Failures& f) {
  uint64_t r = rng() % 100;
  size_t len = r < 70 ? 8 + rng() % 1000 : r < 96 ? 1000 + rng() % 3000 : 4096 + rng() % 28000;
  auto a = c->alloc(sizeof(EntryHdr) + len);
  if (!a.ok()) {
    f.add("alloc: " + a.error().to_string());
    return 0;
  }
  fill_entry(c->write_ptr(*a), *a, seq, len);
  Status st = c->publish(*a);
  if (!st.ok()) {
    f.add("publish: " + st.error().to_string());
    return 0;
  }
  return slot_word(*a, seq);
}

TEST(ReclaimThreads, NoUseAfterFreeBetweenThreads) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  TempDir dir("reclaim-threads");
  Options o;
  o.poison_freed = true;
  auto opened = Store::open(dir.sub("store"), o);
  ASSERT_TRUE(opened.ok()) << opened.error().to_string();
  std::unique_ptr<Store> store = std::move(opened).value();
  Failures fail;

  // The shared structure: a published array of slots, each naming an entry.
  uint64_t array = 0;
  {
    auto sess = store->session();
    ASSERT_TRUE(sess.ok());
    SessionCore* c = stoa::internal::core_of(*sess);
    auto a = c->alloc(kSlots * sizeof(uint64_t));
    ASSERT_TRUE(a.ok());
    array = *a;
    auto* slots = reinterpret_cast<std::atomic<uint64_t>*>(c->write_ptr(array));
    std::mt19937_64 rng(seed);
    for (int k = 0; k < kSlots; k++) slots[k].store(make_entry(c, rng, uint64_t(k) + 1, fail));
    ASSERT_TRUE(c->publish(array).ok());
    ASSERT_TRUE(sess->close().ok());
  }
  ASSERT_EQ(fail.count.load(), 0u) << fail.first;

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> validations{0}, replacements{0}, second_looks{0};
  auto writer = [&](int id) {
    auto sess = store->session();
    if (!sess.ok()) return fail.add("writer session: " + sess.error().to_string());
    SessionCore* c = stoa::internal::core_of(*sess);
    auto* slots = reinterpret_cast<std::atomic<uint64_t>*>(c->write_ptr(array));
    std::mt19937_64 rng(seed ^ splitmix(uint64_t(id) + 1));
    // Sequence numbers: 1..kSlots for the first entries, then unique and
    // dense across writers.
    uint64_t n = 0;
    while (!stop.load(std::memory_order_relaxed) && fail.count.load() == 0) {
      const uint64_t seq = kSlots + 1 + n * kWriters + uint64_t(id);
      uint64_t fresh = make_entry(c, rng, seq, fail);
      if (fresh == 0) break;
      uint64_t old = slots[rng() % kSlots].exchange(fresh, std::memory_order_acq_rel);
      Status st = c->retire(slot_off(old));
      if (!st.ok()) fail.add(fmt::format("retire({}): {}", slot_off(old), st.error().to_string()));
      n++;
    }
    replacements.fetch_add(n);
    Status st = sess->close();
    if (!st.ok()) fail.add("writer close: " + st.error().to_string());
  };
  auto reader = [&](int id) {
    auto sess = store->session();
    if (!sess.ok()) return fail.add("reader session: " + sess.error().to_string());
    SessionCore* c = stoa::internal::core_of(*sess);
    auto* slots = reinterpret_cast<std::atomic<uint64_t>*>(c->write_ptr(array));
    std::mt19937_64 rng(seed ^ splitmix(uint64_t(id) + 101));
    uint64_t n = 0, again = 0, seen[8];
    for (uint64_t round = 0; !stop.load(std::memory_order_relaxed) && fail.count.load() == 0;
         round++) {
      SessionCore::PinGuard pin(*c);
      for (int j = 0; j < 8; j++) {
        seen[j] = slots[rng() % kSlots].load(std::memory_order_acquire);
        std::string bad = validate_entry(c, seen[j]);
        if (!bad.empty()) fail.add(fmt::format("reader {} round {}: {}", id, round, bad));
        n++;
      }
      if (round % 16 == 0) {
        std::this_thread::yield();  // let writers retire what this pin saw
        for (int j = 0; j < 8; j++) {
          std::string bad = validate_entry(c, seen[j]);
          if (!bad.empty())
            fail.add(fmt::format("reader {} round {} (second look): {}", id, round, bad));
          again++;
        }
      }
    }
    validations.fetch_add(n);
    second_looks.fetch_add(again);
    Status st = sess->close();
    if (!st.ok()) fail.add("reader close: " + st.error().to_string());
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; i++) {
    threads.emplace_back(writer, i);
    threads.emplace_back(reader, i);
  }
  const uint64_t ms = scaled(1500);
  std::this_thread::sleep_for(milliseconds(ms));  // the run's length, not synchronisation
  stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(fail.count.load(), 0u) << fail.first;
  std::printf(
      "reclaim threads: %llu replacements, %llu pinned validations (%llu second looks) in "
      "%llu ms\n",
      (unsigned long long)replacements.load(), (unsigned long long)validations.load(),
      (unsigned long long)second_looks.load(), (unsigned long long)ms);
  EXPECT_GE(replacements.load(), 500u);
  EXPECT_GE(validations.load(), 2000u);

  // Retire everything; the store ends empty and sound.
  {
    auto sess = store->session();
    ASSERT_TRUE(sess.ok());
    SessionCore* c = stoa::internal::core_of(*sess);
    auto* slots = reinterpret_cast<std::atomic<uint64_t>*>(c->write_ptr(array));
    for (int k = 0; k < kSlots; k++) {
      uint64_t word = slots[k].exchange(0);
      EXPECT_EQ(validate_entry(c, word), "");
      ASSERT_TRUE(c->retire(slot_off(word)).ok());
    }
    ASSERT_TRUE(c->retire(array).ok());
    ASSERT_TRUE(sess->close().ok());
  }
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = store->stats();
        return s.ok() && s->sessions.empty() && s->purgatory_bytes == 0;
      },
      milliseconds(5000), std::chrono::microseconds(2000)));
  auto rep = store->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound());
  for (const auto& p : rep->problems) ADD_FAILURE() << p;
  EXPECT_EQ(rep->blocks_live, 0u);
  EXPECT_EQ(rep->blocks_retired + rep->blocks_cached, 0u);
}

}  // namespace
}  // namespace stoa
