// The log stays in step with the data file when committers die anywhere
// (DESIGN.md guarantees 3 and 4). Worker processes commit multi-key
// transactions (puts and deletes, group and none modes, automatic
// checkpoints every few KiB, small log segments) and are SIGKILLed at
// random moments: inside a reservation, between the commit point and the
// record write, in a checkpoint. Then:
//  1. the store is opened alone: dead committers are settled (record
//     rewritten from the commit list, or padding), verify is sound; its
//     state A is read;
//  2. the data file is thrown away and rebuilt from the checkpoint and the
//     log (Store::recover with rebuild): the state must be A exactly, at
//     the same last timestamp. A hole, a missing or extra record would show.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>

#include <fmt/format.h>

#include "stoa/store.h"
#include "test_util.h"

namespace stoa {
namespace {

using test::Children;
using test::TempDir;
using namespace std::chrono;

Options worker_options(int w) {
  Options o;
  o.initial_size = 1 << 20;
  o.grow_chunk = 1 << 20;
  o.max_size = 256 << 20;
  o.log_segment_size = 64 << 10;
  o.checkpoint_log_bytes = 48 << 10;
  o.durability = w % 2 == 0 ? Durability::kGroup : Durability::kNone;
  o.group_window = microseconds(300);
  return o;
}

int worker_main(const std::string& path, int w, uint64_t seed) {
  auto store = Store::open(path, worker_options(w));
  if (!store.ok()) {
    std::fprintf(stderr, "worker open: %s\n", store.error().to_string().c_str());
    return 2;
  }
  auto s = (*store)->session();
  if (!s.ok()) return 3;
  std::mt19937_64 r(seed);
  for (uint64_t n = 0;; n++) {
    auto res = s->transact([&](Txn& t) -> Status {
      const int k = 1 + int(r() % 4);
      for (int i = 0; i < k; i++) {
        std::string key = fmt::format("k{:03}", r() % 200);
        if (r() % 5 == 0) {
          STOA_TRY(t.del(key));
        } else {
          std::string v = fmt::format("w{}.{}.{}", w, seed % 1000, n);
          v.append(size_t(r() % 200), char('a' + r() % 26));
          STOA_TRY(t.put(key, v));
        }
      }
      return {};
    });
    if (!res.ok() && res.code() != Code::kConflict) {
      std::fprintf(stderr, "worker commit: %s\n", res.error().to_string().c_str());
      return 4;
    }
  }
}

std::map<std::string, std::string> read_all(Store& store) {
  auto r = test::read_all(store);
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  return r.ok() ? std::move(r).value() : std::map<std::string, std::string>{};
}

TEST(LogKill, RebuildFromLogMatchesTheStoreAfterKilledCommitters) {
  const uint64_t seed = std::random_device{}();
  std::printf("seed %llu\n", (unsigned long long)seed);
  std::mt19937_64 rng(seed);
  TempDir dir("logkill");
  const std::string path = dir.sub("store");
  {
    auto s = Store::open(path, worker_options(0));
    ASSERT_TRUE(s.ok()) << s.error().to_string();
  }
  constexpr int kWorkers = 3;
  Children kids;
  pid_t pids[kWorkers];
  uint64_t spawned = 0;
  for (int w = 0; w < kWorkers; w++)
    pids[w] = kids.spawn([&, w] { return worker_main(path, w, seed + ++spawned); });
  const int kills = 60;
  for (int k = 0; k < kills; k++) {
    std::this_thread::sleep_for(microseconds(2000 + rng() % 20000));
    const int w = int(rng() % kWorkers);
    int status = 0;
    ASSERT_FALSE(kids.try_reap(pids[w], &status)) << "worker ended: " << status;
    kids.kill_one(pids[w]);
    const uint64_t sp = seed + 1000 + k;
    pids[w] = kids.spawn([&, w, sp] { return worker_main(path, w, sp); });
  }
  std::this_thread::sleep_for(milliseconds(50));
  for (int w = 0; w < kWorkers; w++) kids.kill_one(pids[w]);

  std::map<std::string, std::string> a;
  uint64_t a_ts = 0, ckpt_ts = 0;
  {
    Options o = worker_options(0);
    auto s = Store::open(path, o);
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    EXPECT_FALSE((*s)->recovery().rebuilt) << (*s)->recovery().reason;
    auto rep = (*s)->verify();
    ASSERT_TRUE(rep.ok());
    ASSERT_TRUE(rep->sound()) << rep->problems.front();
    EXPECT_TRUE(rep->log_checked);
    a = read_all(**s);
    auto st = (*s)->stats();
    ASSERT_TRUE(st.ok());
    a_ts = st->last_commit_ts;
    ckpt_ts = st->checkpoint_ts;
    std::printf(
        "%d kills; %zu keys at timestamp %llu; checkpoint at %llu, %llu log bytes after it\n",
        kills, a.size(), (unsigned long long)a_ts, (unsigned long long)ckpt_ts,
        (unsigned long long)st->log_bytes);
    ASSERT_GT(a_ts, 0u);
  }
  auto rec = Store::recover(path, /*rebuild=*/true);
  ASSERT_TRUE(rec.ok()) << rec.error().to_string();
  EXPECT_TRUE(rec->rebuilt);
  EXPECT_EQ(rec->end_ts, a_ts);
  std::printf("rebuilt: checkpoint %llu (%llu keys), %llu records / %llu bytes replayed\n",
              (unsigned long long)rec->checkpoint_ts, (unsigned long long)rec->checkpoint_keys,
              (unsigned long long)rec->log_records, (unsigned long long)rec->log_bytes);
  auto s = Store::open(path, worker_options(0));
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  auto st = (*s)->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->last_commit_ts, a_ts);
  EXPECT_EQ(read_all(**s), a) << "the log does not hold what the store held";
  auto rep = (*s)->verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->sound());
}

}  // namespace
}  // namespace stoa
