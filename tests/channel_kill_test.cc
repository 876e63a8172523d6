// Channels under SIGKILL: at every named crash point of the ring protocol
// (crash group "chan."), and at random moments of a producer / consumer
// workload (at least 200 kills a run).
//
// Crash points: a child arms itself at the point, runs the one operation
// that reaches it and dies there; the store is recovered by a survivor (the
// parent holds it open and reaps) or by a lone open after the child is gone,
// both for every point. Then the promised outcome is checked: a push cut
// after its claim or its copy was never reported sent and is skipped (the
// slot does not stall the ring), a pop cut after its claim took its message
// with it, a removal cut after the retire leaves no channel; verify is
// sound and the channel (or a new one of the name) works afterwards.
//
// Stress: producers push numbered messages and record each push that
// returned ok; consumers pop, check the bytes and count each message. The
// parent SIGKILLs a random child every few milliseconds and starts another.
// At the end: no message torn or foreign; every message reported pushed was
// popped exactly once, except at most one per consumer kill (popped by the
// process that died) and, counted twice, at most the one a producer was
// pushing when killed (its push landed; the restarted producer pushed it
// again); verify is sound, and a lone reopen finds the ring empty.
// STOA_TEST_SEED replays; STOA_STRESS_SCALE lengthens.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "crash/crash_point.h"
#include "stoa/store.h"
#include "test_util.h"

namespace stoa {
namespace {

using namespace stoa::test;
namespace crash = internal::crash;
using std::chrono::nanoseconds;

Options opts() {
  Options o;
  o.create_if_missing = true;
  o.durability = Durability::kNone;
  return o;
}

PopOptions now() {
  PopOptions p;
  p.timeout = nanoseconds(0);
  return p;
}

std::vector<std::string> drain(Session& s, ChannelId ch) {
  std::vector<std::string> out;
  std::string m;
  while (s.pop(ch, &m, now()).ok()) out.push_back(m);
  return out;
}

void expect_sound(Store& store) {
  auto v = store.verify();
  ASSERT_TRUE(v.ok()) << err(v);
  EXPECT_TRUE(v->sound()) << v->problems[0];
}

int crash_child(const std::string& path, crash::Point p) {
  auto st = Store::open(path, opts());
  CHILD_CHECK(st.ok(), "{}", err(st));
  auto s = (*st)->session();
  CHILD_CHECK(s.ok(), "{}", err(s));
  auto ch = s->channel("c");
  CHILD_CHECK(ch.ok(), "{}", err(ch));
  std::string m;
  crash::arm(p, 1);
  switch (p) {
    case crash::Point::kMsgChanPushClaimed:
    case crash::Point::kMsgChanPushWritten:
      (void)s->push(*ch, "new");
      break;
    case crash::Point::kMsgChanPopClaimed:
      (void)s->pop(*ch, &m, now());
      break;
    case crash::Point::kMsgChanRemoveRetired:
      (void)s->remove_channel(*ch);
      break;
    default:
      break;
  }
  return 3;  // the point was not reached
}

void crash_round(crash::Point p, bool survivor) {
  SCOPED_TRACE(fmt::format("point {}, recovered by {}", crash::name(p),
                           survivor ? "a survivor" : "a lone open"));
  TempDir dir("chan-crash");
  auto store = Store::open(dir.path(), opts());
  ASSERT_TRUE(store.ok());
  {
    auto s = (*store)->session();
    ASSERT_TRUE(s.ok());
    auto ch = s->channel("c", {.capacity = 4, .max_message = 16});
    ASSERT_TRUE(ch.ok());
    ASSERT_TRUE(s->push(*ch, "a").ok());
    ASSERT_TRUE(s->push(*ch, "b").ok());
  }
  if (!survivor) store->reset();
  Children kids;
  pid_t pid = kids.spawn([&] { return crash_child(dir.path(), p); });
  const int status = kids.wait(pid, milliseconds(20'000));
  ASSERT_TRUE(killed_by_sigkill(status)) << describe_status(status);
  if (!survivor) {
    store = Store::open(dir.path(), opts());
    ASSERT_TRUE(store.ok()) << err(store);
  }
  Store& st = **store;
  ASSERT_TRUE(st.reap_dead_sessions().ok());
  auto s = st.session();
  ASSERT_TRUE(s.ok());
  auto ch = s->channel("c", {.capacity = 4, .max_message = 16});
  ASSERT_TRUE(ch.ok()) << err(ch);
  using V = std::vector<std::string>;
  V left = drain(*s, *ch);
  switch (p) {
    case crash::Point::kMsgChanPushClaimed:
    case crash::Point::kMsgChanPushWritten:
      EXPECT_EQ(left, (V{"a", "b"})) << "the cut push is skipped, never half-delivered";
      break;
    case crash::Point::kMsgChanPopClaimed:
      EXPECT_EQ(left, V{"b"}) << "the cut pop took its message";
      break;
    case crash::Point::kMsgChanRemoveRetired:
      EXPECT_EQ(left, V{}) << "the channel was removed; this is a new one";
      break;
    default:
      break;
  }
  // The ring goes on: a full lap through every slot, the cut one included.
  for (int i = 0; i < 9; i++) {
    ASSERT_TRUE(s->push(*ch, fmt::format("after{}", i)).ok()) << i;
    std::string m;
    auto r = s->pop(*ch, &m, now());
    ASSERT_TRUE(r.ok()) << err(r) << " at " << i;
    EXPECT_EQ(m, fmt::format("after{}", i));
  }
  auto stats = st.stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->channels, 1u);
  expect_sound(st);
  ASSERT_TRUE(s->push(*ch, "kept").ok());
  ASSERT_TRUE(s->close().ok());
  store->reset();
  auto again = Store::open(dir.path(), opts());
  ASSERT_TRUE(again.ok());
  expect_sound(**again);
  auto s2 = (*again)->session();
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(drain(*s2, *ch), V{"kept"});
}

TEST(ChanCrashPoints, EveryChannelPointRecovers) {
  int points = 0;
  for (uint32_t i = 0; i < crash::kPointCount; i++) {
    const crash::Point p = crash::Point(i);
    if (!std::string_view(crash::name(p)).starts_with("chan.")) continue;
    if (const char* only = std::getenv("STOA_CRASH_ONLY");
        only != nullptr && only != std::string_view(crash::name(p))) {
      continue;
    }
    points++;
    crash_round(p, true);
    crash_round(p, false);
  }
  std::printf("chan crash points: %d named, %d rounds\n", points, 2 * points);
  EXPECT_GE(points, 4);
}

// --- random kills ----------------------------------------------------------

constexpr int kProducers = 2;
constexpr int kConsumers = 2;
constexpr uint64_t kMaxSeq = 1 << 22;  // more than a run pushes

struct Ctl {
  std::atomic<uint64_t> sent[kProducers];  // pushes that returned ok, per producer
  std::atomic<uint8_t> seen[kProducers][kMaxSeq];
  std::atomic<uint64_t> popped;
  std::atomic<uint64_t> torn;
};

std::string payload_of(int p, uint64_t i) {
  std::string s = fmt::format("{}:{}:", p, i);
  s.resize(s.size() + splitmix(i * 7 + uint64_t(p)) % 180, char('a' + i % 26));
  return s;
}

int producer(const std::string& path, ChannelId ch, int p, Ctl* c) {
  auto st = Store::open(path, opts());
  CHILD_CHECK(st.ok(), "{}", err(st));
  auto s = (*st)->session();
  CHILD_CHECK(s.ok(), "{}", err(s));
  for (uint64_t i = c->sent[p].load(); i < kMaxSeq; i = c->sent[p].load()) {
    Status r = s->push(ch, payload_of(p, i), {.tag = uint64_t(p), .timeout = milliseconds(50)});
    if (r.code() == Code::kFull) continue;
    CHILD_CHECK(r.ok(), "push: {}", r.error().message());
    c->sent[p].store(i + 1);
  }
  for (;;) pause();  // every index used (a very long run): wait to be killed
}

void count(Ctl* c, const std::string& m, uint64_t tag) {
  int p = 0;
  unsigned long long i = 0;
  if (std::sscanf(m.c_str(), "%d:%llu:", &p, &i) != 2 || p < 0 || p >= kProducers || i >= kMaxSeq ||
      uint64_t(p) != tag || m != payload_of(p, i)) {
    c->torn.fetch_add(1);
    return;
  }
  c->seen[p][i].fetch_add(1);
  c->popped.fetch_add(1);
}

int consumer(const std::string& path, ChannelId ch, Ctl* c) {
  auto st = Store::open(path, opts());
  CHILD_CHECK(st.ok(), "{}", err(st));
  auto s = (*st)->session();
  CHILD_CHECK(s.ok(), "{}", err(s));
  std::string m;
  for (;;) {
    auto r = s->pop(ch, &m, PopOptions{.timeout = milliseconds(20)});
    if (r.code() == Code::kTimeout) continue;
    CHILD_CHECK(r.ok(), "pop: {}", err(r));
    count(c, m, r->tag);
  }
}

TEST(ChanKill, RandomKillsTearNothingAndLoseOnlyWhatADeadPopperHeld) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  TempDir dir("chan-kill");
  auto store = Store::open(dir.path(), opts());
  ASSERT_TRUE(store.ok());
  Shared<Ctl> ctl;
  ChannelId ch;
  {
    auto s = (*store)->session();
    ASSERT_TRUE(s.ok());
    auto r = s->channel("work", {.capacity = 16, .max_message = 200});
    ASSERT_TRUE(r.ok());
    ch = *r;
  }
  Children kids;
  std::vector<pid_t> pids(kProducers + kConsumers);
  auto start = [&](int k) {
    pids[size_t(k)] = kids.spawn([&, k] {
      return k < kProducers ? producer(dir.path(), ch, k, ctl.get())
                            : consumer(dir.path(), ch, ctl.get());
    });
  };
  for (int k = 0; k < kProducers + kConsumers; k++) start(k);
  const uint64_t target = scaled(200);
  uint64_t kills = 0, consumer_kills = 0;
  std::set<uint64_t> in_flight[kProducers];  // the index each killed producer was pushing
  while (kills < target) {
    std::this_thread::sleep_for(std::chrono::microseconds(2000 + rng() % 15000));
    const int k = int(rng() % pids.size());
    int status = 0;
    if (kids.try_reap(pids[size_t(k)], &status)) {
      FAIL() << "child " << k << " ended by itself: " << describe_status(status) << " "
             << seed_note(seed);
    }
    kids.kill_one(pids[size_t(k)]);
    kills++;
    if (k < kProducers) {
      in_flight[k].insert(ctl->sent[k].load());
    } else {
      consumer_kills++;
    }
    if (kills % 50 == 0) {
      ASSERT_TRUE((*store)->reap_dead_sessions().ok());
    }
    start(k);
  }
  kids.kill_all();
  consumer_kills += kConsumers;  // kill_all
  for (int p = 0; p < kProducers; p++) in_flight[p].insert(ctl->sent[p].load());
  ASSERT_TRUE((*store)->reap_dead_sessions().ok());
  auto s = (*store)->session();
  ASSERT_TRUE(s.ok());
  std::string m;
  uint64_t drained = 0;
  for (auto r = s->pop(ch, &m, now()); r.ok(); r = s->pop(ch, &m, now())) {
    count(ctl.get(), m, r->tag);
    drained++;
  }
  EXPECT_EQ(ctl->torn.load(), 0u) << "torn or foreign messages " << seed_note(seed);
  uint64_t sent = 0, lost = 0;
  for (int p = 0; p < kProducers; p++) {
    const uint64_t n = ctl->sent[p].load();
    sent += n;
    for (uint64_t i = 0; i <= n && i < kMaxSeq; i++) {
      const int got = ctl->seen[p][i].load();
      const bool was_in_flight = in_flight[p].count(i) != 0;
      if (i == n) {
        // Never reported pushed: its producer was killed pushing it.
        EXPECT_LE(got, 1) << "producer " << p << " message " << i << " " << seed_note(seed);
        continue;
      }
      if (got == 0) lost++;
      ASSERT_LE(got, was_in_flight ? 2 : 1) << "producer " << p << " message " << i << " popped "
                                            << got << " times " << seed_note(seed);
    }
  }
  std::printf(
      "chan kill: %llu kills (%llu of consumers), %llu pushed, %llu popped, %llu "
      "drained at the end, %llu lost with a killed popper\n",
      (unsigned long long)kills, (unsigned long long)consumer_kills, (unsigned long long)sent,
      (unsigned long long)ctl->popped.load(), (unsigned long long)drained,
      (unsigned long long)lost);
  EXPECT_LE(lost, consumer_kills) << "more messages lost than poppers killed " << seed_note(seed);
  EXPECT_GT(sent, kills) << "the workload made progress between kills";
  expect_sound(**store);
  ASSERT_TRUE(s->close().ok());
  store->reset();
  auto again = Store::open(dir.path(), opts());
  ASSERT_TRUE(again.ok());
  expect_sound(**again);
  auto st = (*again)->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->channels, 1u);
  EXPECT_EQ(st->channel_messages, 0u);
}

}  // namespace
}  // namespace stoa
