// Deleted keys leave the index (guarantee 5.8, docs/guarantees.md): once no
// snapshot can read past a key's tombstone, its record is removed from the
// index and its space reclaimed, small nodes merge and the tree shrinks; a
// key written again gets a fresh record. Removal never changes what any
// snapshot reads.
//
//  - RandomPutsAndDeletesMatchAModel: random puts and deletes over a small
//    key space, checked against a std::map after every commit batch by a
//    full scan, a get of every key and verify; then every key deleted, and
//    the index must end empty (no records) and one leaf deep at most.
//  - AnOpenSnapshotHoldsRemovalBack: a read transaction older than the
//    deletes keeps reading the deleted values and no record is removed
//    until it ends; then they all are.
//  - ChurningAMillionKeysKeepsTheFileFlat: 1M distinct keys (STOA_CHURN_KEYS)
//    go through put then delete, a thousand a commit; the data file, used
//    bytes and key count after the first tenth must not grow after it.
//  - ProcessesChurnSharedLeavesUnderKills: three writer processes put and
//    delete keys that share leaves (so they race to remove, merge and
//    re-insert), one is SIGKILLed and restarted at random moments, and a
//    reader process checks in every snapshot that each writer's keys are
//    exactly those its committed counter implies, value for value.
//
// STOA_TEST_SEED replays a run.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <string>

#include "api/access.h"
#include "index/btree.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "test_util.h"

namespace stoa {
namespace {

using namespace stoa::test;

Options quiet_options() {
  Options o;
  o.watchdog_interval = milliseconds(0);
  o.durability = Durability::kNone;
  return o;
}

StoreStats stats_of(Store& store) {
  auto st = store.stats();
  EXPECT_TRUE(st.ok()) << err(st);
  return st.ok() ? *st : StoreStats{};
}

// Commits until the removals due have run: the trim threshold is cached for
// a millisecond, so a commit a little later sees the deletes' tombstones
// passed. Each commit puts and deletes one scratch key.
void settle(Session& s, int rounds = 4) {
  for (int i = 0; i < rounds; i++) {
    std::this_thread::sleep_for(milliseconds(3));
    ASSERT_TRUE(s.transact([](Txn& t) { return t.put("~scratch", "x"); }).ok());
    std::this_thread::sleep_for(milliseconds(3));
    ASSERT_TRUE(s.transact([](Txn& t) { return t.del("~scratch"); }).ok());
  }
}

// verify is sound; it finds `keys` records when given (the stats' count,
// exact unless a writer was killed between its CAS and its count).
void expect_sound(Store& store, std::optional<uint64_t> keys) {
  auto v = store.verify();
  ASSERT_TRUE(v.ok()) << err(v);
  EXPECT_TRUE(v->sound()) << v->problems[0];
  if (keys) {
    EXPECT_EQ(v->keys, *keys);
  }
}

// Keys longer than the 8-byte prefix word, so lookups compare their tails.
std::string mkey(int k) { return fmt::format("user/key/{:06}", k); }

TEST(KeyRemoval, RandomPutsAndDeletesMatchAModel) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  TempDir dir("removal");
  auto opened = Store::open(dir.sub("s"), quiet_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  Store& store = **opened;
  Session s = std::move(store.session()).value();
  std::map<std::string, std::string> model;
  const int kSpace = 6000;
  for (int round = 0; round < 60; round++) {
    std::map<std::string, std::optional<std::string>> ops;
    // Runs of neighbouring keys, so whole leaves empty out and merge.
    const int from = int(rng() % kSpace), len = 1 + int(rng() % 400);
    const bool del_run = rng() % 2 == 0;
    for (int k = from; k < std::min(kSpace, from + len); k++) {
      const std::string key = mkey(k);
      ops[key] =
          del_run ? std::nullopt : std::optional<std::string>(fmt::format("{}@{}", key, round));
    }
    ASSERT_TRUE(s.transact([&](Txn& t) -> Status {
                   for (const auto& [k, v] : ops) STOA_TRY(v ? t.put(k, *v) : t.del(k));
                   return {};
                 }).ok());
    for (const auto& [k, v] : ops) {
      if (v) {
        model[k] = *v;
      } else {
        model.erase(k);
      }
    }
    if (round % 6 == 5) {
      settle(s);
      auto all = read_all(store);
      ASSERT_TRUE(all.ok()) << err(all);
      ASSERT_EQ(*all, model) << "round " << round << ", " << seed_note(seed);
      // Every key by get too: removed keys are misses next to separators,
      // which a lookup checks before it believes them (btree.cc).
      auto t = s.begin(TxnOptions{.read_only = true});
      ASSERT_TRUE(t.ok());
      for (int k = 0; k < kSpace; k++) {
        auto v = t->get(mkey(k));
        auto it = model.find(mkey(k));
        if (it == model.end()) {
          ASSERT_EQ(v.code(), Code::kNotFound)
              << mkey(k) << ": " << err(v) << ", " << seed_note(seed);
        } else {
          ASSERT_TRUE(v.ok()) << mkey(k) << ": " << err(v) << ", " << seed_note(seed);
          ASSERT_EQ(v->str(), it->second);
        }
      }
      const StoreStats st = stats_of(store);
      // Every deleted key gone but the scratch key's last tombstone, at most.
      EXPECT_LE(st.keys, model.size() + 1) << seed_note(seed);
      expect_sound(store, st.keys);
    }
  }
  // The root as a node: 0 for an empty tree.
  auto root_node = [&]() -> const index::Node* {
    internal::StoreImpl* impl = internal::impl_of(store);
    const uint64_t root = impl->txns().header()->root.load();
    return root == 0 ? nullptr : reinterpret_cast<const index::Node*>(impl->region().ro(root));
  };
  // All but the first key: the tree shrinks to one leaf (inner nodes left
  // with one child give way to it).
  ASSERT_FALSE(model.empty());
  ASSERT_TRUE(s.transact([&](Txn& t) -> Status {
                 for (const auto& kv : model) {
                   if (kv.first != model.begin()->first) STOA_TRY(t.del(kv.first));
                 }
                 return {};
               }).ok());
  settle(s);
  ASSERT_NE(root_node(), nullptr);
  EXPECT_EQ(root_node()->kind, uint16_t(index::NodeKind::kLeaf)) << "level " << root_node()->level;
  EXPECT_LE(root_node()->count, 2u);  // the kept key and the scratch key
  ASSERT_TRUE(s.transact([&](Txn& t) { return t.del(model.begin()->first); }).ok());
  settle(s);
  const StoreStats st = stats_of(store);
  EXPECT_LE(st.keys, 1u) << seed_note(seed);
  EXPECT_GE(st.keys_removed, model.size()) << seed_note(seed);
  expect_sound(store, st.keys);
  auto all = read_all(store);
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());
  // At most the scratch key's leaf is left.
  if (root_node() != nullptr) {
    EXPECT_EQ(root_node()->kind, uint16_t(index::NodeKind::kLeaf));
    EXPECT_LE(root_node()->count, 1u);
  }
  // Keys written again after their records left get fresh ones.
  ASSERT_TRUE(s.transact([&](Txn& t) -> Status {
                 for (int k = 0; k < kSpace; k += 3) STOA_TRY(t.put(mkey(k), "again"));
                 return {};
               }).ok());
  all = read_all(store);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), size_t(kSpace / 3));
  expect_sound(store, stats_of(store).keys);
}

TEST(KeyRemoval, AnOpenSnapshotHoldsRemovalBack) {
  TempDir dir("removal-snap");
  auto opened = Store::open(dir.sub("s"), quiet_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  Store& store = **opened;
  Session w = std::move(store.session()).value();
  Session r = std::move(store.session()).value();
  constexpr int kKeys = 2000;
  ASSERT_TRUE(w.transact([&](Txn& t) -> Status {
                 for (int k = 0; k < kKeys; k++) STOA_TRY(t.put(fmt::format("k{:05}", k), "v"));
                 return {};
               }).ok());
  Txn old = std::move(r.begin(TxnOptions{.read_only = true})).value();
  ASSERT_TRUE(w.transact([&](Txn& t) -> Status {
                 for (int k = 0; k < kKeys; k++) STOA_TRY(t.del(fmt::format("k{:05}", k)));
                 return {};
               }).ok());
  settle(w);
  const StoreStats held = stats_of(store);
  EXPECT_GE(held.keys, uint64_t(kKeys));  // every record stays while `old` may read it
  EXPECT_EQ(held.keys_removed, 0u);
  for (int k = 0; k < kKeys; k += 97) {
    auto v = old.get(fmt::format("k{:05}", k));
    ASSERT_TRUE(v.ok()) << err(v);
    EXPECT_EQ(v->str(), "v");
  }
  ASSERT_TRUE(old.commit().ok());
  settle(w);
  const StoreStats freed = stats_of(store);
  EXPECT_LE(freed.keys, 1u);
  EXPECT_GE(freed.keys_removed, uint64_t(kKeys));
  expect_sound(store, freed.keys);
}

TEST(KeyRemoval, ChurningAMillionKeysKeepsTheFileFlat) {
  const char* env = std::getenv("STOA_CHURN_KEYS");
  const uint64_t total = env != nullptr ? std::strtoull(env, nullptr, 0) : 1'000'000;
  constexpr uint64_t kBatch = 1000;
  TempDir dir("removal-churn");
  auto opened = Store::open(dir.sub("s"), quiet_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  Store& store = **opened;
  Session s = std::move(store.session()).value();
  const std::string value(100, 'v');
  const uint64_t batches = total / kBatch;
  StoreStats mid{};
  uint64_t max_keys_after_mid = 0;
  for (uint64_t b = 0; b < batches; b++) {
    // Distinct keys for ever, as a queue's or a mailbox's are.
    ASSERT_TRUE(s.transact([&](Txn& t) -> Status {
                   for (uint64_t i = 0; i < kBatch; i++) {
                     STOA_TRY(t.put(fmt::format("q{:012}", b * kBatch + i), value));
                     if (b > 0) STOA_TRY(t.del(fmt::format("q{:012}", (b - 1) * kBatch + i)));
                   }
                   return {};
                 }).ok())
        << "batch " << b;
    if (b == batches / 10) mid = stats_of(store);
    if (b > batches / 10) {
      const StoreStats now = stats_of(store);
      max_keys_after_mid = std::max(max_keys_after_mid, now.keys);
    }
  }
  settle(s);
  const StoreStats end = stats_of(store);
  std::printf(
      "churn: %llu keys put and deleted; after the first tenth: file %llu B, used %llu B, %llu "
      "keys; at the end: file %llu B, used %llu B, %llu keys (at most %llu between), %llu "
      "removed\n",
      (unsigned long long)(batches * kBatch), (unsigned long long)mid.file_size,
      (unsigned long long)mid.used_bytes, (unsigned long long)mid.keys,
      (unsigned long long)end.file_size, (unsigned long long)end.used_bytes,
      (unsigned long long)end.keys, (unsigned long long)max_keys_after_mid,
      (unsigned long long)end.keys_removed);
  // Live keys: one batch, the one before it until its tombstones pass the
  // threshold, and a few batches whose removal a cached threshold put off.
  EXPECT_LE(max_keys_after_mid, 8 * kBatch);
  EXPECT_LE(end.keys, kBatch + 1);
  EXPECT_GE(end.keys_removed, (batches - 1) * kBatch);
  EXPECT_LE(end.file_size, mid.file_size + (uint64_t{4} << 20));  // at most one growth chunk
  EXPECT_LE(end.used_bytes, mid.used_bytes + mid.used_bytes / 4 + (uint64_t{1} << 20));
  expect_sound(store, end.keys);
}

// --- across processes -------------------------------------------------------

constexpr int kWriters = 3;
constexpr int kSpace = 64;  // keys per writer, interleaved with the others' in the leaves

std::string wkey(int w, int k) { return fmt::format("k{:02}/w{}", k, w); }
std::string wctr(int w) { return fmt::format("ctr/w{}", w); }

// Commit `seq` of writer w touches two keys; a key touched at seq is
// deleted when (seq / kSpace + k) % 3 == 0, else set to "w:k:seq".
std::vector<int> touched(uint64_t seq) {
  const int a = int(seq % kSpace), b = int((seq * 5 + 3) % kSpace);
  return a == b ? std::vector<int>{a} : std::vector<int>{a, b};
}
bool deletes(uint64_t seq, int k) { return (seq / kSpace + uint64_t(k)) % 3 == 0; }
std::string wvalue(int w, int k, uint64_t seq) { return fmt::format("{}:{}:{}", w, k, seq); }

// Writer w's keys after commits 1..n.
std::map<std::string, std::string> model_after(int w, uint64_t n) {
  std::map<std::string, std::string> m;
  for (uint64_t seq = 1; seq <= n; seq++) {
    for (int k : touched(seq)) {
      if (deletes(seq, k)) {
        m.erase(wkey(w, k));
      } else {
        m[wkey(w, k)] = wvalue(w, k, seq);
      }
    }
  }
  return m;
}

// Checks one snapshot: each writer's keys are those of its counter.
std::string check_snapshot(Session& s) {
  auto t = s.begin(TxnOptions{.read_only = true});
  if (!t.ok()) return "begin: " + err(t);
  std::map<std::string, std::string> seen;
  auto c = t->scan("k", "l");
  if (!c.ok()) return "scan: " + err(c);
  for (; c->valid(); (void)c->next()) seen[std::string(c->key())] = c->value().copy();
  if (!c->status().ok()) return "scan: " + c->status().error().to_string();
  for (int w = 0; w < kWriters; w++) {
    auto v = t->get(wctr(w));
    const uint64_t n = v.ok() ? std::stoull(v->copy()) : 0;
    std::map<std::string, std::string> mine;
    for (const auto& [k, val] : seen) {
      if (k.size() > 5 && k.substr(k.size() - 2) == fmt::format("w{}", w)) mine[k] = val;
    }
    if (mine != model_after(w, n)) {
      return fmt::format("writer {} at commit {}: {} keys seen, {} expected", w, n, mine.size(),
                         model_after(w, n).size());
    }
  }
  return "";
}

int writer_main(const std::string& path, int w, Shared<std::atomic<bool>>* stop) {
  auto opened = Store::open(path, quiet_options());
  CHILD_CHECK(opened.ok(), "open: {}", err(opened));
  Session s = std::move((*opened)->session()).value();
  uint64_t seq = 0;
  {
    auto t = s.begin(TxnOptions{.read_only = true});
    CHILD_CHECK(t.ok(), "begin: {}", err(t));
    auto v = t->get(wctr(w));
    if (v.ok()) seq = std::stoull(v->copy());
  }
  TransactOptions topts;
  topts.max_attempts = 1'000'000;
  while (!(*stop)->load()) {
    seq++;
    auto r = s.transact(
        [&](Txn& t) -> Status {
          for (int k : touched(seq)) {
            STOA_TRY(deletes(seq, k) ? t.del(wkey(w, k)) : t.put(wkey(w, k), wvalue(w, k, seq)));
          }
          return t.put(wctr(w), std::to_string(seq));
        },
        topts);
    CHILD_CHECK(r.ok(), "writer {} commit {}: {}", w, seq, err(r));
  }
  return 0;
}

TEST(KeyRemoval, ProcessesChurnSharedLeavesUnderKills) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  TempDir dir("removal-procs");
  const std::string path = dir.sub("s");
  { ASSERT_TRUE(Store::open(path, quiet_options()).ok()); }
  Shared<std::atomic<bool>> stop;
  Shared<std::atomic<uint64_t>> checks;
  Children kids;
  std::vector<pid_t> writers;
  for (int w = 0; w < kWriters; w++) {
    writers.push_back(kids.spawn([&, w] { return writer_main(path, w, &stop); }));
  }
  const pid_t reader = kids.spawn([&] {
    auto opened = Store::open(path, quiet_options());
    CHILD_CHECK(opened.ok(), "open: {}", err(opened));
    Session s = std::move((*opened)->session()).value();
    while (!stop->load()) {
      const std::string bad = check_snapshot(s);
      CHILD_CHECK(bad.empty(), "{} ({})", bad, seed_note(seed));
      checks->fetch_add(1);
    }
    return 0;
  });
  const auto run_for = milliseconds(scaled(3000));
  const auto t0 = Clock::now();
  int kills = 0;
  while (Clock::now() - t0 < run_for) {
    std::this_thread::sleep_for(milliseconds(100 + rng() % 400));
    const int w = int(rng() % kWriters);
    ASSERT_TRUE(killed_by_sigkill(kids.kill_one(writers[w])));
    kills++;
    writers[w] = kids.spawn([&, w] { return writer_main(path, w, &stop); });
  }
  stop->store(true);
  for (pid_t p : writers) EXPECT_TRUE(exited_ok(kids.wait(p, milliseconds(30000))));
  EXPECT_TRUE(exited_ok(kids.wait(reader, milliseconds(30000))));
  EXPECT_GT(checks->load(), 0u);
  auto opened = Store::open(path, quiet_options());
  ASSERT_TRUE(opened.ok()) << err(opened);
  Session s = std::move((*opened)->session()).value();
  settle(s);
  EXPECT_EQ(check_snapshot(s), "") << seed_note(seed);
  const StoreStats st = stats_of(**opened);
  auto v = (*opened)->verify();
  ASSERT_TRUE(v.ok()) << err(v);
  EXPECT_TRUE(v->sound()) << v->problems[0];
  std::printf(
      "removal: %d writers killed, %llu snapshots checked, %llu records in the leaves (stats "
      "count %llu), %llu removed\n",
      kills, (unsigned long long)checks->load(), (unsigned long long)v->keys,
      (unsigned long long)st.keys, (unsigned long long)st.keys_removed);
  EXPECT_GT(st.keys_removed, 0u);
  // Bounded by the key space: records a killed writer marked or left
  // pending stay, one per key at most. (Counted by verify's walk: the stats
  // count drifts by a batch when a writer dies between its CAS and its count.)
  EXPECT_LE(v->keys, uint64_t(kWriters * (kSpace + 1) + 1));
}

}  // namespace
}  // namespace stoa
