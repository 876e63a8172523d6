// A long reader while writers churn (issue 3, "Tests": memory stays bounded
// after it ends and stats report it while it runs).
//
// Two writer processes overwrite the same 1000 keys again and again, every
// transaction writing all of them with one token ("w<writer>r<round>"
// followed by a pattern of that token). A reader in this process holds a
// read-only transaction for ~1 s (x STOA_STRESS_SCALE):
//  - its snapshot is consistent (all 1000 keys carry one token) and stays
//    the same: reading everything again, by get and by scan, gives the
//    same values, and the zero-copy Views taken at the start still hold the
//    same bytes at the end (the versions they point into were not reclaimed);
//  - while it runs, stats() names its pin as the oldest (oldest_pin's cycle
//    is the reader's; the reader's session is reported stalled, with
//    stall_threshold = 100 ms);
//  - after it ends, memory stays bounded: purgatory drains back to the
//    level it had before the reader (at most 4x the pre-reader peak, or
//    1 MiB), and the data file stops growing: after five more rounds of
//    churn, each committing values worth half the file's size, the file has
//    grown by less than 10% (without reclamation it would grow by 250%).
//
// Also a regression test: committing (validation, and trimming a version
// chain) must map the versions another process wrote past this process's
// mapping before reading them (it crashed the churn writers with SIGSEGV).
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

#include "api/access.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "test_util.h"

namespace stoa {
namespace {

using namespace stoa::test;

constexpr int kKeys = 1000;
constexpr size_t kValueSize = 64;
constexpr int kWriters = 2;

std::string key(int i) { return fmt::format("churn/{:04d}", i); }

// The value a transaction with `token` writes to key i: the token, '|', the
// key index, '|', then filler derived from both (so a torn or reused value
// shows).
std::string value_for(const std::string& token, int i) {
  std::string v = fmt::format("{}|{}|", token, i);
  uint64_t h = splitmix(std::hash<std::string>()(token) + uint64_t(i));
  while (v.size() < kValueSize) {
    v += char('a' + h % 26);
    h = splitmix(h);
  }
  return v;
}

std::string token_of(std::string_view v) { return std::string(v.substr(0, v.find('|'))); }

struct Ctl {
  std::atomic<int32_t> stop;
  std::atomic<uint64_t> rounds;  // committed full overwrites
  std::atomic<uint64_t> bytes;   // value bytes committed
};

int writer_main(const std::string& path, int w, uint64_t seed, Ctl* ctl) {
  auto opened = Store::open(path);
  CHILD_CHECK(opened.ok(), "open: {}", err(opened));
  auto sr = (*opened)->session();
  CHILD_CHECK(sr.ok(), "session: {}", err(sr));
  Session& s = *sr;
  TransactOptions topts;
  topts.max_attempts = 1000;
  for (uint64_t round = 1; ctl->stop.load() == 0; round++) {
    const std::string token = fmt::format("w{}r{}", w, round);
    auto r = s.transact(
        [&](Txn& t) -> Status {
          for (int i = 0; i < kKeys; i++) {
            if (Status st = t.put(key(i), value_for(token, i)); !st.ok()) return st;
          }
          return {};
        },
        topts);
    CHILD_CHECK(r.ok(), "writer {} round {}: {} (seed {})", w, round, err(r), seed);
    ctl->rounds.fetch_add(1);
    ctl->bytes.fetch_add(kKeys * kValueSize);
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  return 0;
}

const SessionInfo* find_slot(const StoreStats& st, uint32_t slot) {
  for (const auto& i : st.sessions) {
    if (i.slot == slot) return &i;
  }
  return nullptr;
}

TEST(TxnReader, LongReaderWhileWritersChurn) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  TempDir dir("reader");
  const std::string path = dir.sub("store");
  // No watchdog thread here: children are forked while this store is open,
  // and a fork while another thread holds an allocator lock (ASan's is not
  // fork-safe) can leave the child deadlocked.
  Options o;
  o.stall_threshold = milliseconds(100);
  o.watchdog_interval = milliseconds(0);
  o.log_threads = false;
  auto opened = Store::open(path, o);
  ASSERT_TRUE(opened.ok()) << err(opened);
  std::unique_ptr<Store> store = std::move(opened).value();
  {
    auto sr = store->session();
    ASSERT_TRUE(sr.ok());
    auto r = sr->transact([](Txn& t) -> Status {
      for (int i = 0; i < kKeys; i++) {
        if (Status st = t.put(key(i), value_for("init", i)); !st.ok()) return st;
      }
      return {};
    });
    ASSERT_TRUE(r.ok()) << err(r);
  }

  Shared<Ctl> ctl;
  Children kids;
  std::vector<pid_t> writers;
  for (int w = 0; w < kWriters; w++) {
    writers.push_back(kids.spawn([&, w] { return writer_main(path, w, seed, ctl.get()); }));
  }
  auto writers_alive = [&] {
    for (pid_t p : writers) {
      int status = 0;
      if (kids.try_reap(p, &status)) {
        ADD_FAILURE() << "writer " << p << " ended: " << describe_status(status);
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(wait_until([&] { return ctl->rounds.load() >= 20; }, milliseconds(30000)))
      << "writers made no progress";

  // Before the reader: purgatory under churn alone.
  uint64_t purgatory_before = 0;
  for (int i = 0; i < 10; i++) {
    auto st = store->stats();
    ASSERT_TRUE(st.ok());
    purgatory_before = std::max(purgatory_before, st->purgatory_bytes);
    std::this_thread::sleep_for(milliseconds(20));
  }
  const uint64_t file_before = store->stats()->file_size;

  // The reader.
  std::atomic<int> phase{0};  // 1: snapshot taken, 2: ended
  std::atomic<uint32_t> reader_slot{0};
  std::string reader_error;
  uint64_t rounds_at_start = 0, rounds_at_end = 0;
  std::string reader_token;
  const auto hold = milliseconds(scaled(1000));
  std::jthread reader([&] {  // joins on every exit path
    auto fail = [&](std::string msg) {
      reader_error = std::move(msg);
      phase.store(2);
    };
    auto sr = store->session();
    if (!sr.ok()) return fail("session: " + err(sr));
    Session& s = *sr;
    reader_slot.store(s.slot());
    auto tr = s.begin(TxnOptions{.read_only = true});
    if (!tr.ok()) return fail("begin: " + err(tr));
    Txn& t = *tr;
    std::vector<View> views;
    std::vector<std::string> copies;
    for (int i = 0; i < kKeys; i++) {
      auto v = t.get(key(i));
      if (!v.ok()) return fail(fmt::format("get {}: {}", key(i), err(v)));
      views.push_back(*v);
      copies.push_back(v->copy());
    }
    reader_token = token_of(copies[0]);
    for (int i = 0; i < kKeys; i++) {
      if (copies[i] != value_for(reader_token, i)) {
        return fail(fmt::format("snapshot {} is not one transaction's: {} = {:?}, {} = {:?}",
                                t.snapshot(), key(0), copies[0], key(i), copies[i]));
      }
    }
    rounds_at_start = ctl->rounds.load();
    phase.store(1);
    const auto t0 = Clock::now();
    for (int pass = 0; Clock::now() - t0 < hold; pass++) {
      std::this_thread::sleep_for(milliseconds(50));
      if (pass % 4 == 3) {
        auto c = t.prefix("churn/");
        if (!c.ok()) return fail("prefix: " + err(c));
        int i = 0;
        for (; c->valid(); (void)c->next(), i++) {
          if (i >= kKeys || c->key() != key(i) || c->value().str() != copies[i]) {
            return fail(fmt::format("pass {}: scan entry {} is {} = {:?}, expected {} = {:?}", pass,
                                    i, c->key(), c->value().str(), key(i), copies[i]));
          }
        }
        if (i != kKeys) return fail(fmt::format("pass {}: scan saw {} keys", pass, i));
      } else {
        for (int i = 0; i < kKeys; i++) {
          auto v = t.get(key(i));
          if (!v.ok() || v->str() != copies[i]) {
            return fail(fmt::format("pass {}: {} now reads {:?}, at the start {:?}", pass, key(i),
                                    v.ok() ? v->copy() : err(v), copies[i]));
          }
        }
      }
    }
    for (int i = 0; i < kKeys; i++) {
      if (views[i].str() != copies[i]) {
        return fail(fmt::format("the View of {} taken at the start now holds {:?}, was {:?}",
                                key(i), views[i].str(), copies[i]));
      }
    }
    rounds_at_end = ctl->rounds.load();
    t.abort();
    phase.store(2);
  });

  // While it runs: it is the oldest pin, and stalled.
  int samples = 0, named = 0;
  uint64_t peak_file = 0;
  StoreStats last;
  std::string pin_error;
  ASSERT_TRUE(wait_until([&] { return phase.load() != 0; }, milliseconds(30000)));
  const auto began = Clock::now();
  while (phase.load() == 1) {
    std::this_thread::sleep_for(milliseconds(40));
    auto st = store->stats();
    ASSERT_TRUE(st.ok());
    last = *st;
    peak_file = std::max(peak_file, st->file_size);
    if (phase.load() != 1 || Clock::now() - began < milliseconds(150)) continue;
    samples++;
    const SessionInfo* me = find_slot(*st, reader_slot.load());
    if (me == nullptr || me->pinned_cycle == 0) {
      pin_error = "the reader's session is not shown pinned:\n" + sessions_text(*st);
      break;
    }
    if (!st->oldest_pin || st->oldest_pin->pinned_cycle != me->pinned_cycle) {
      pin_error = fmt::format("oldest pin is {} while the reader (slot {}) pins cycle {}:\n{}",
                              st->oldest_pin ? fmt::format("slot {} cycle {}", st->oldest_pin->slot,
                                                           st->oldest_pin->pinned_cycle)
                                             : std::string("none"),
                              me->slot, me->pinned_cycle, sessions_text(*st));
      break;
    }
    if (!me->stalled || !st->oldest_pin->stalled || me->pin_age_seconds < 0.1) {
      pin_error = fmt::format("the reader, pinned for {:.3f} s, is not reported stalled:\n{}",
                              ms_since(began) / 1e3, sessions_text(*st));
      break;
    }
    named += st->oldest_pin->slot == me->slot && st->oldest_pin->pid == ::getpid();
  }
  reader.join();
  ASSERT_TRUE(reader_error.empty()) << reader_error;
  ASSERT_TRUE(pin_error.empty()) << pin_error;
  ASSERT_TRUE(writers_alive());
  EXPECT_GE(samples, 5);
  EXPECT_EQ(named, samples) << "oldest_pin named another session with the same cycle";
  const uint64_t rounds_during = rounds_at_end - rounds_at_start;
  EXPECT_GE(rounds_during, 10u) << "the writers barely ran while the reader held its snapshot";

  // After it: no longer pinned, nothing stalled for long.
  {
    auto st = store->stats();
    ASSERT_TRUE(st.ok());
    const SessionInfo* me = find_slot(*st, reader_slot.load());
    EXPECT_TRUE(me == nullptr || me->pinned_cycle == 0) << sessions_text(*st);
  }
  // Purgatory drains back to its level under churn alone. First every key
  // is written again a few times, so that each long version chain has been
  // cut (its versions retired) since the reader ended.
  const uint64_t rounds_after = ctl->rounds.load();
  ASSERT_TRUE(wait_until([&] { return ctl->rounds.load() >= rounds_after + 2 * kWriters; },
                         milliseconds(30000)));
  const uint64_t drained_bound = std::max<uint64_t>(4 * purgatory_before, 1 << 20);
  uint64_t peak_purgatory = 0;
  const auto t_end = Clock::now();
  bool drained = wait_until(
      [&] {
        auto st = store->stats();
        if (!st.ok()) return false;
        last = *st;
        peak_purgatory = std::max(peak_purgatory, st->purgatory_bytes);
        return st->purgatory_bytes <= drained_bound &&
               (st->oldest_pin ? !st->oldest_pin->stalled : true);
      },
      milliseconds(scaled(10000)), std::chrono::microseconds(10000));
  ASSERT_TRUE(drained) << "purgatory still " << last.purgatory_bytes << " bytes (bound "
                       << drained_bound << ") " << ms_since(t_end)
                       << " ms after the reader ended:\n"
                       << sessions_text(last);
  const double drain_ms = ms_since(t_end);

  // The file stops growing: five rounds, each committing half the file.
  const uint64_t f0 = store->stats()->file_size;
  std::vector<uint64_t> sizes{f0};
  const uint64_t round_bytes = f0 / 2;
  for (int round = 0; round < 5; round++) {
    const uint64_t target = ctl->bytes.load() + round_bytes;
    ASSERT_TRUE(wait_until([&] { return ctl->bytes.load() >= target; }, milliseconds(60000)))
        << "writers stalled in round " << round;
    sizes.push_back(store->stats()->file_size);
  }
  ASSERT_TRUE(writers_alive());
  auto final_stats = store->stats();
  ASSERT_TRUE(final_stats.ok());
  std::printf(
      "reader held snapshot of %s for %lld ms over %llu writer rounds; file %llu -> peak %llu; "
      "purgatory before %llu, peak after %llu, drained in %.0f ms; then 5 rounds of %llu bytes: "
      "file %s; purgatory now %llu\n",
      reader_token.c_str(), (long long)hold.count(), (unsigned long long)rounds_during,
      (unsigned long long)file_before, (unsigned long long)peak_file,
      (unsigned long long)purgatory_before, (unsigned long long)peak_purgatory, drain_ms,
      (unsigned long long)round_bytes, fmt::format("{}", fmt::join(sizes, " -> ")).c_str(),
      (unsigned long long)final_stats->purgatory_bytes);
  EXPECT_LT(double(sizes.back()), double(f0) * 1.10)
      << "the data file kept growing after the reader ended: "
      << fmt::format("{}", fmt::join(sizes, " -> "));

  ctl->stop.store(1);
  for (pid_t p : writers) {
    int status = kids.wait(p, milliseconds(30000));
    EXPECT_TRUE(exited_ok(status)) << "writer " << describe_status(status);
  }
  // Alone (and with no watchdog thread, which could be draining parked
  // sessions while verify() walks the heap): a full check.
  store.reset();
  Options alone;
  alone.watchdog_interval = milliseconds(0);
  alone.log_threads = false;
  auto again = Store::open(path, alone);
  ASSERT_TRUE(again.ok()) << err(again);
  auto v = (*again)->verify();
  ASSERT_TRUE(v.ok()) << err(v);
  EXPECT_TRUE(v->exclusive);
  EXPECT_TRUE(v->sound()) << (v->problems.empty() ? "" : v->problems[0]);
}

// Regression: a commit must not touch another process's versions through a
// stale mapping. Another process grows the data file (16 values of 1 MiB)
// and then writes a new version of "k" (in a size class it had not used, so
// from memory past everything this process has mapped); no index node
// changes (every key exists already), so nothing here maps more of the
// file. This process then either (validate) commits a transaction that read
// "k" — validation looks at the version at its head — or (trim) commits
// "k" blindly, which trims the chain through that version. Without the fix
// each dereferenced unmapped memory (SIGSEGV in TxnImpl::changed and in
// TxnManager::trim). The first access maps the whole file, so each case
// gets its own store.
void mapping_case(bool validate) {
  SCOPED_TRACE(validate ? "validate" : "trim");
  TempDir dir("mapping");
  const std::string path = dir.sub("store");
  Options o;
  o.watchdog_interval = milliseconds(0);
  o.log_threads = false;
  auto opened = Store::open(path, o);
  ASSERT_TRUE(opened.ok()) << err(opened);
  auto sr = (*opened)->session();
  ASSERT_TRUE(sr.ok());
  Session& s = *sr;
  auto put = [&](const std::string& k, const std::string& v) {
    auto r = s.transact([&](Txn& t) -> Status { return t.put(k, v); });
    ASSERT_TRUE(r.ok()) << err(r);
  };
  for (int i = 0; i < 16; i++) put(fmt::format("fill{:02d}", i), "small");
  put("k", "a");
  put("other", "x");
  auto reader = s.begin();  // serializable; reads k before the other process writes it
  ASSERT_TRUE(reader.ok());
  ASSERT_EQ(reader->get("k")->str(), "a");
  ASSERT_TRUE(reader->put("other", "y").ok());
  if (!validate) reader->abort();
  region::Region& region = stoa::internal::impl_of(**opened)->region();
  const uint64_t file_before = region.file_size();

  Shared<std::atomic<uint64_t>> k_head;
  Children kids;
  pid_t b = kids.spawn([&] {
    auto st = Store::open(path, o);
    CHILD_CHECK(st.ok(), "open: {}", err(st));
    auto bs = (*st)->session();
    CHILD_CHECK(bs.ok(), "session: {}", err(bs));
    const std::string mib(1u << 20, 'F');
    for (int i = 0; i < 16; i++) {
      auto r =
          bs->transact([&](Txn& t) -> Status { return t.put(fmt::format("fill{:02d}", i), mib); });
      CHILD_CHECK(r.ok(), "fill: {}", err(r));
    }
    auto r = bs->transact([&](Txn& t) -> Status { return t.put("k", std::string(700, 'b')); });
    CHILD_CHECK(r.ok(), "k: {}", err(r));
    auto& tree = stoa::internal::impl_of(**st)->txns().tree();
    k_head->store(tree.record(tree.find("k"))->head.load());
    return 0;
  });
  int status = kids.wait(b, milliseconds(60000));
  ASSERT_TRUE(exited_ok(status)) << describe_status(status);
  // The precondition (no stats() here: it maps the whole file).
  ASSERT_GT(region.file_size(), file_before);
  const uint64_t mapped = region.mapped();
  std::printf("%s: this process maps %llu of %llu bytes; the head version of k is at %llu\n",
              validate ? "validate" : "trim", (unsigned long long)mapped,
              (unsigned long long)region.file_size(), (unsigned long long)k_head->load());
  EXPECT_GE(k_head->load(), mapped) << "the scenario did not place the version past the mapping";

  if (validate) {
    auto c = reader->commit();  // read k, which changed since: a conflict
    EXPECT_EQ(c.code(), Code::kConflict) << err(c);
  } else {
    put("k", "c");  // trims the chain of k through the other process's version
  }
  put("k", "d");
  auto t = s.begin(TxnOptions{.read_only = true});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->get("k")->str(), "d");
  EXPECT_EQ(t->get("fill07")->size(), size_t(1u << 20));
}

TEST(TxnReader, CommitTouchesVersionsPastItsMapping) {
  mapping_case(true);
  mapping_case(false);
}

}  // namespace
}  // namespace stoa
