// No use-after-free across processes (cycle locking, guarantee 7).
//
// A shared structure — a published array of N slots, each holding a slot
// word (test_util.h: an entry's offset and its sequence number's low bits)
// — is walked by reader processes while writer processes replace entries:
// allocate, fill (a header naming the block's own offset and sequence
// number, a payload without the poison byte, a checksum), publish, swap
// into a slot, retire the old entry. Sequence numbers are unique across
// writers. Readers pin, load a slot, validate the entry against the word
// (twice, with a pause, in some rounds), unpin. Every process opens the
// store with poison_freed, so an entry freed while a pinned reader can
// still reach it shows poison or fails its checksum, and one freed and
// reused at the same offset by a new entry shows another sequence number.
//
// The long-pin test holds one reader pinned while writers churn: purgatory
// grows, stats() names the reader as the oldest pin and as stalled, the
// entries it saw when it pinned stay intact however long it holds, and after
// it unpins purgatory drains.
//
// DetectorSeesPrematureFree and DetectorSeesReuseAtTheSameOffset are the
// controls: they show the checks fail when a reachable entry is freed, and
// when it is freed and its block reused at the same offset by a sound new
// entry (which a check of offsets alone passes), so the other tests can fail.
#include <gtest/gtest.h>

#include <algorithm>
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

struct Ctl {
  std::atomic<int32_t> stop;
  std::atomic<int32_t> ready;
  std::atomic<uint64_t> validations;
  std::atomic<uint64_t> double_checks;
  std::atomic<uint64_t> replacements;
  // long-pin test
  std::atomic<int32_t> holder_pinned;
  std::atomic<int32_t> holder_release;
  std::atomic<int32_t> holder_done;
  std::atomic<uint32_t> holder_slot;
  std::atomic<uint64_t> holder_checked;
};

std::string problems_text(const VerifyReport& r) {
  std::string out;
  for (const auto& p : r.problems) out += "  " + p + "\n";
  return out;
}
Options store_options() {
  Options o;
  o.poison_freed = true;
  return o;
}

size_t pick_len(std::mt19937_64& rng) {
  uint64_t r = rng() % 100;
  if (r < 70) return 8 + rng() % 1000;
  if (r < 96) return 1000 + rng() % 3000;
  return 4096 + rng() % 28000;
}

// Allocates, fills and publishes a new entry of `len` payload bytes;
// returns its slot word.
uint64_t make_entry(SessionCore* c, size_t len, uint64_t seq, uint64_t seed) {
  auto a = c->alloc(sizeof(EntryHdr) + len);
  CHILD_CHECK(a.ok(), "seed {}: alloc: {}", seed, err(a));
  fill_entry(c->write_ptr(*a), *a, seq, len);
  Status st = c->publish(*a);
  CHILD_CHECK(st.ok(), "seed {}: publish({}): {}", seed, *a, err(st));
  return slot_word(*a, seq);
}
uint64_t make_entry(SessionCore* c, std::mt19937_64& rng, uint64_t seq, uint64_t seed) {
  return make_entry(c, pick_len(rng), seq, seed);
}

std::atomic<uint64_t>* slots_of(SessionCore* c, uint64_t array) {
  auto r = c->read(array, kSlots * sizeof(uint64_t));
  CHILD_CHECK(r.ok(), "read slot array: {}", err(r));
  return reinterpret_cast<std::atomic<uint64_t>*>(c->write_ptr(array));
}

int writer_main(const std::string& path, int id, uint64_t array, uint64_t seed, Ctl* ctl,
                bool throttle) {
  auto opened = Store::open(path, store_options());
  CHILD_CHECK(opened.ok(), "writer {}: open: {}", id, err(opened));
  auto sess = (*opened)->session();
  CHILD_CHECK(sess.ok(), "writer {}: session: {}", id, err(sess));
  SessionCore* c = stoa::internal::core_of(*sess);
  std::atomic<uint64_t>* slots = slots_of(c, array);
  std::mt19937_64 rng(seed ^ splitmix(uint64_t(id) + 100));
  ctl->ready.fetch_add(1);
  // Sequence numbers: 1..kSlots for the first entries, then unique and
  // dense across writers.
  for (uint64_t n = 0; ctl->stop.load(std::memory_order_relaxed) == 0; n++) {
    int k = int(rng() % kSlots);
    const uint64_t seq = kSlots + 1 + n * kWriters + uint64_t(id);
    uint64_t fresh = make_entry(c, rng, seq, seed);
    uint64_t old = slots[k].exchange(fresh, std::memory_order_acq_rel);  // unlink the old one
    if (old != 0) {
      Status st = c->retire(slot_off(old));
      CHILD_CHECK(st.ok(), "seed {} writer {}: retire({}): {}", seed, id, slot_off(old), err(st));
    }
    ctl->replacements.fetch_add(1, std::memory_order_relaxed);
    if (rng() % 8 == 0) {  // churn that never becomes reachable
      auto a = c->alloc(1 + rng() % 2000);
      CHILD_CHECK(a.ok(), "alloc: {}", err(a));
      CHILD_CHECK(c->free(*a).ok(), "free of private {}", *a);
    }
    if (throttle) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  Status st = sess->close();
  CHILD_CHECK(st.ok(), "writer {}: close: {}", id, err(st));
  return 0;
}

int reader_main(const std::string& path, int id, uint64_t array, uint64_t seed, Ctl* ctl) {
  auto opened = Store::open(path, store_options());
  CHILD_CHECK(opened.ok(), "reader {}: open: {}", id, err(opened));
  auto sess = (*opened)->session();
  CHILD_CHECK(sess.ok(), "reader {}: session: {}", id, err(sess));
  SessionCore* c = stoa::internal::core_of(*sess);
  std::atomic<uint64_t>* slots = slots_of(c, array);
  std::mt19937_64 rng(seed ^ splitmix(uint64_t(id) + 200));
  ctl->ready.fetch_add(1);
  uint64_t n = 0, doubles = 0;
  uint64_t seen[8];
  for (uint64_t round = 0; ctl->stop.load(std::memory_order_relaxed) == 0; round++) {
    SessionCore::PinGuard pin(*c);
    for (int j = 0; j < 8; j++) {
      seen[j] = slots[rng() % kSlots].load(std::memory_order_acquire);
      if (seen[j] == 0) continue;
      std::string bad = validate_entry(c, seen[j]);
      CHILD_CHECK(bad.empty(), "seed {} reader {} round {}: {}", seed, id, round, bad);
      n++;
    }
    if (round % 16 == 0) {
      // Hold the pin a little while writers retire what we saw, then check
      // again: nothing seen under this pin may be freed or reused yet.
      auto until = Clock::now() + std::chrono::microseconds(200);
      while (Clock::now() < until) {
      }
      for (int j = 0; j < 8; j++) {
        if (seen[j] == 0) continue;
        std::string bad = validate_entry(c, seen[j]);
        CHILD_CHECK(bad.empty(), "seed {} reader {} round {} (second look, still pinned): {}", seed,
                    id, round, bad);
        doubles++;
      }
    }
    if (round % 256 == 0) {
      ctl->validations.fetch_add(n, std::memory_order_relaxed);
      ctl->double_checks.fetch_add(doubles, std::memory_order_relaxed);
      n = doubles = 0;
    }
  }
  ctl->validations.fetch_add(n);
  ctl->double_checks.fetch_add(doubles);
  Status st = sess->close();
  CHILD_CHECK(st.ok(), "reader {}: close: {}", id, err(st));
  return 0;
}

// The parent's side: a store with a published slot array full of entries.
struct Fixture {
  TempDir dir{"reclaim"};
  std::string path = dir.sub("store");
  std::unique_ptr<Store> store;
  uint64_t array = 0;

  void open(Options o, uint64_t seed) {
    auto s = Store::open(path, o);
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    store = std::move(s).value();
    auto sess = store->session();
    ASSERT_TRUE(sess.ok()) << sess.error().to_string();
    SessionCore* c = stoa::internal::core_of(*sess);
    auto a = c->alloc(kSlots * sizeof(uint64_t));
    ASSERT_TRUE(a.ok());
    array = *a;
    auto* slots = reinterpret_cast<std::atomic<uint64_t>*>(c->write_ptr(array));
    std::mt19937_64 rng(seed);
    for (int k = 0; k < kSlots; k++) slots[k].store(make_entry(c, rng, uint64_t(k) + 1, seed));
    ASSERT_TRUE(c->publish(array).ok());
    ASSERT_TRUE(sess->close().ok());
  }

  // After the children: every entry intact, then all of it retired and the
  // store left empty and sound.
  void teardown_and_verify() {
    auto empty = wait_until(
        [&] {
          (void)store->reap_dead_sessions();
          auto s = store->stats();
          return s.ok() && s->sessions.empty();
        },
        milliseconds(5000), std::chrono::microseconds(2000));
    ASSERT_TRUE(empty) << sessions_text(*store->stats());
    auto sess = store->session();
    ASSERT_TRUE(sess.ok());
    SessionCore* c = stoa::internal::core_of(*sess);
    auto* slots = reinterpret_cast<std::atomic<uint64_t>*>(c->write_ptr(array));
    for (int k = 0; k < kSlots; k++) {
      uint64_t word = slots[k].exchange(0);
      ASSERT_NE(word, 0u);
      EXPECT_EQ(validate_entry(c, word), "");
      ASSERT_TRUE(c->retire(slot_off(word)).ok());
    }
    ASSERT_TRUE(c->retire(array).ok());
    ASSERT_TRUE(sess->close().ok());
    ASSERT_TRUE(wait_until(
        [&] {
          auto s = store->stats();
          return s.ok() && s->sessions.empty() && s->purgatory_bytes == 0;
        },
        milliseconds(5000), std::chrono::microseconds(2000)))
        << sessions_text(*store->stats());
    auto rep = store->verify();
    ASSERT_TRUE(rep.ok());
    EXPECT_TRUE(rep->exclusive);
    EXPECT_TRUE(rep->sound()) << problems_text(*rep);
    EXPECT_EQ(rep->blocks_live, 0u);
    EXPECT_EQ(rep->blocks_retired + rep->blocks_cached, 0u);
  }
};

TEST(Reclaim, NoUseAfterFreeAcrossProcesses) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  Fixture f;
  ASSERT_NO_FATAL_FAILURE(f.open(store_options(), seed));
  Shared<Ctl> ctl;
  Children kids;
  std::vector<pid_t> pids;
  for (int i = 0; i < kWriters; i++) {
    pids.push_back(
        kids.spawn([&, i] { return writer_main(f.path, i, f.array, seed, ctl.get(), false); }));
    pids.push_back(kids.spawn([&, i] { return reader_main(f.path, i, f.array, seed, ctl.get()); }));
  }
  ASSERT_TRUE(wait_until([&] { return ctl->ready.load() == 4; }, milliseconds(20000)));
  const uint64_t ms = scaled(2000);
  std::this_thread::sleep_for(milliseconds(ms));  // the run's length, not synchronisation
  ctl->stop.store(1);
  for (pid_t p : pids) {
    int status = kids.wait(p, milliseconds(60000));
    EXPECT_TRUE(exited_ok(status))
        << "child " << p << ": " << (status < 0 ? "timed out" : describe_status(status));
  }
  ASSERT_FALSE(::testing::Test::HasFailure());
  std::printf(
      "reclaim: %llu replacements, %llu pinned validations (%llu second looks) in %llu ms, "
      "0 failures\n",
      (unsigned long long)ctl->replacements.load(), (unsigned long long)ctl->validations.load(),
      (unsigned long long)ctl->double_checks.load(), (unsigned long long)ms);
  EXPECT_GE(ctl->replacements.load(), 1000u);
  EXPECT_GE(ctl->validations.load(), 10000u);
  EXPECT_GE(ctl->double_checks.load(), 100u);
  f.teardown_and_verify();
}

TEST(Reclaim, LongPinHoldsPurgatoryAndIsReported) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  Fixture f;
  Options parent = store_options();
  parent.stall_threshold = milliseconds(100);
  parent.watchdog_interval = milliseconds(0);  // the parent only observes
  parent.log_threads = false;
  ASSERT_NO_FATAL_FAILURE(f.open(parent, seed));
  Shared<Ctl> ctl;
  Children kids;
  std::vector<pid_t> writers;
  for (int i = 0; i < kWriters; i++) {
    writers.push_back(
        kids.spawn([&, i] { return writer_main(f.path, i, f.array, seed, ctl.get(), true); }));
  }
  // The holder pins, remembers every entry it can see, holds until told,
  // then checks all of them again before it unpins.
  pid_t holder = kids.spawn([&] {
    auto opened = Store::open(f.path, store_options());
    CHILD_CHECK(opened.ok(), "holder open: {}", err(opened));
    auto sess = (*opened)->session();
    CHILD_CHECK(sess.ok(), "holder session: {}", err(sess));
    SessionCore* c = stoa::internal::core_of(*sess);
    std::atomic<uint64_t>* slots = slots_of(c, f.array);
    c->pin();
    std::vector<uint64_t> seen;
    for (int k = 0; k < kSlots; k++) {
      uint64_t word = slots[k].load(std::memory_order_acquire);
      std::string bad = validate_entry(c, word);
      CHILD_CHECK(bad.empty(), "seed {} holder: {}", seed, bad);
      seen.push_back(word);
    }
    ctl->holder_slot.store(sess->slot());
    ctl->holder_pinned.store(1);
    while (ctl->holder_release.load() == 0) std::this_thread::sleep_for(milliseconds(1));
    for (uint64_t word : seen) {
      std::string bad = validate_entry(c, word);
      CHILD_CHECK(bad.empty(), "seed {} holder, after the long pin: {}", seed, bad);
    }
    ctl->holder_checked.store(seen.size());
    c->unpin();
    ctl->holder_done.store(1);
    while (ctl->stop.load() == 0) std::this_thread::sleep_for(milliseconds(1));
    return 0;
  });
  ASSERT_TRUE(wait_until([&] { return ctl->holder_pinned.load() == 1 && ctl->ready.load() == 2; },
                         milliseconds(20000)));
  auto t_pin = Clock::now();
  const uint32_t slot = ctl->holder_slot.load();
  auto first = f.store->stats();
  ASSERT_TRUE(first.ok());
  const uint64_t p0 = first->purgatory_bytes;

  // Reported as the oldest pin, and as stalled once past the threshold.
  StoreStats st;
  bool stalled = wait_until(
      [&] {
        auto s = f.store->stats();
        if (!s.ok()) return false;
        st = *s;
        return st.oldest_pin && st.oldest_pin->slot == slot && st.oldest_pin->stalled;
      },
      milliseconds(5000), std::chrono::microseconds(2000));
  EXPECT_TRUE(stalled) << "holder (slot " << slot << ") not reported as a stalled oldest pin:\n"
                       << sessions_text(st);
  if (st.oldest_pin) {
    EXPECT_EQ(st.oldest_pin->pid, holder);
    EXPECT_GE(st.oldest_pin->pin_age_seconds, 0.1);
  }
  // Purgatory grows while it holds (at least 300 ms, and at least 4 MiB).
  uint64_t peak = 0;
  bool grew = wait_until(
      [&] {
        auto s = f.store->stats();
        if (!s.ok()) return false;
        peak = std::max(peak, s->purgatory_bytes);
        return ms_since(t_pin) >= 300 && peak >= p0 + (uint64_t{4} << 20);
      },
      milliseconds(10000), std::chrono::microseconds(5000));
  EXPECT_TRUE(grew) << "purgatory did not grow behind the pin: " << p0 << " -> " << peak;
  const double held_ms = ms_since(t_pin);

  ctl->holder_release.store(1);
  ASSERT_TRUE(wait_until([&] { return ctl->holder_done.load() == 1; }, milliseconds(10000)));
  // Writers still churn; once they collect, purgatory falls back.
  uint64_t now_bytes = peak;
  auto t_unpin = Clock::now();
  bool drained = wait_until(
      [&] {
        auto s = f.store->stats();
        if (!s.ok()) return false;
        now_bytes = s->purgatory_bytes;
        // Back to the writers' steady state (about 64 retires each between
        // collects), far below what piled up behind the pin.
        return now_bytes < peak / 4 && !(s->oldest_pin && s->oldest_pin->stalled);
      },
      milliseconds(10000), std::chrono::microseconds(2000));
  EXPECT_TRUE(drained) << "purgatory stayed at " << now_bytes << " bytes after the unpin (peak "
                       << peak << ")";
  std::printf(
      "reclaim: pin held %.0f ms: purgatory %llu -> %llu bytes; %.0f ms after unpin: %llu "
      "bytes; holder re-checked %llu entries it saw when it pinned\n",
      held_ms, (unsigned long long)p0, (unsigned long long)peak, ms_since(t_unpin),
      (unsigned long long)now_bytes, (unsigned long long)ctl->holder_checked.load());
  EXPECT_EQ(ctl->holder_checked.load(), uint64_t(kSlots));

  ctl->stop.store(1);
  for (pid_t p : writers) {
    int status = kids.wait(p, milliseconds(60000));
    EXPECT_TRUE(exited_ok(status)) << "writer " << p << ": " << describe_status(status);
  }
  int status = kids.wait(holder, milliseconds(60000));
  EXPECT_TRUE(exited_ok(status)) << "holder: " << describe_status(status);
  ASSERT_FALSE(::testing::Test::HasFailure());
  f.teardown_and_verify();
}

// A store opened alone (no watchdog) and one session, for the controls.
struct Alone {
  TempDir dir{"reclaim-control"};
  std::unique_ptr<Store> store;
  Session sess;
  SessionCore* c = nullptr;

  void open() {
    Options o = store_options();
    o.watchdog_interval = milliseconds(0);
    o.log_threads = false;
    auto s = Store::open(dir.sub("store"), o);
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    store = std::move(s).value();
    auto r = store->session();
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    sess = std::move(r).value();
    c = stoa::internal::core_of(sess);
  }
  // Frees a reachable entry too early: at once (i even) or by a retire and
  // a collect with no pin anywhere (i odd).
  void free_early(uint64_t word, int i) {
    if (i % 2 == 0) {
      ASSERT_TRUE(c->free(slot_off(word)).ok());
    } else {
      ASSERT_TRUE(c->retire(slot_off(word)).ok());
      ASSERT_TRUE(c->collect().ok());
    }
  }
};

// The control: the checks above do catch a reachable entry that is freed
// (poisoned).
TEST(Reclaim, DetectorSeesPrematureFree) {
  Alone a;
  ASSERT_NO_FATAL_FAILURE(a.open());
  SessionCore* c = a.c;
  std::mt19937_64 rng(7);  // deterministic: a control, not a search
  for (int i = 0; i < 50; i++) {
    uint64_t word = make_entry(c, rng, uint64_t(i) + 1, 0);
    ASSERT_EQ(validate_entry(c, word), "");
    ASSERT_NO_FATAL_FAILURE(a.free_early(word, i));
    EXPECT_NE(validate_entry(c, word), "")
        << "a freed entry still validates: the detector is blind";
  }
  // With a pin held, a retired entry survives a collect.
  uint64_t word = make_entry(c, rng, 999, 0);
  c->pin();
  ASSERT_TRUE(c->retire(slot_off(word)).ok());
  ASSERT_TRUE(c->collect().ok());
  ASSERT_TRUE(c->collect().ok());
  EXPECT_EQ(validate_entry(c, word), "");
  c->unpin();
  ASSERT_TRUE(c->collect().ok());
  EXPECT_NE(validate_entry(c, word), "");
}

// The control for reuse: a reader's entry freed too early and its block
// handed at once to a new, sound entry of the same size at the same offset.
// Header, offset, payload and checksum all pass (a reader that compared
// offsets only would pass); the sequence number in the slot word does not.
TEST(Reclaim, DetectorSeesReuseAtTheSameOffset) {
  Alone a;
  ASSERT_NO_FATAL_FAILURE(a.open());
  SessionCore* c = a.c;
  int reused = 0;
  for (int i = 0; i < 50; i++) {
    const size_t len = 8 + size_t(i) * 613 % 5000;
    const uint64_t seen = make_entry(c, len, 2 * uint64_t(i) + 1, 0);  // what a reader loaded
    ASSERT_EQ(validate_entry(c, seen), "");
    ASSERT_NO_FATAL_FAILURE(a.free_early(seen, i));
    const uint64_t fresh = make_entry(c, len, 2 * uint64_t(i) + 2, 0);
    if (slot_off(fresh) == slot_off(seen)) {
      reused++;
      EXPECT_EQ(validate_entry(c, slot_word(slot_off(seen), 2 * uint64_t(i) + 2)), "")
          << "the new entry itself is sound";
      const std::string bad = validate_entry(c, seen);
      EXPECT_NE(bad.find("reused at the same offset"), std::string::npos)
          << "a reused block passes as the entry the reader saw: " << bad;
    }
    ASSERT_TRUE(c->free(slot_off(fresh)).ok());
  }
  std::printf("reclaim control: %d of 50 early-freed blocks reused at once\n", reused);
  EXPECT_GE(reused, 25) << "the allocator seldom reused a block at once: the control is weak";
}

}  // namespace
}  // namespace stoa
