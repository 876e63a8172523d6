// Mailboxes under SIGKILL: at every named crash point of the messaging
// protocols (crash "msg." group), and at random moments of a producer /
// consumer workload with leases (at least 200 kills a run).
//
// Crash points: a child arms itself at the point, runs the one operation
// that reaches it and dies there; the store is recovered by a survivor (the
// parent holds it open and reaps) or by a lone open after the child is gone,
// both for every point. Then the outcome the protocol promises is checked:
// a published send is delivered once, a retired take is gone, a lease or
// requeue cut in the middle gives the message back, a directory published
// but not rooted is rooted, a closed mailbox cut mid-drain is freed; and
// verify is sound, with no mailbox or message left over.
//
// Stress: producers send numbered messages to one queue and record each
// send that returned ok; consumers receive on lease, record, then ack. The
// parent SIGKILLs a random child every few milliseconds and starts another.
// At the end every message reported sent was received (at least once), the
// queue drains, verify is sound, and a lone reopen finds nothing left over.
// STOA_TEST_SEED replays; STOA_STRESS_SCALE lengthens.
#include <gtest/gtest.h>

#include <random>
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

ReceiveOptions now(bool lease = false) {
  ReceiveOptions r;
  r.timeout = nanoseconds(0);
  r.lease = lease;
  return r;
}

void expect_sound(Store& store, bool exclusive) {
  auto v = store.verify();
  ASSERT_TRUE(v.ok()) << err(v);
  EXPECT_TRUE(v->sound()) << v->problems[0];
  if (exclusive) {
    EXPECT_TRUE(v->exclusive);
  }
}

std::vector<std::string> drain(Session& s, MailboxId q) {
  std::vector<std::string> out;
  for (auto m = s.try_receive(q); m.ok(); m = s.try_receive(q)) out.push_back(m->payload);
  return out;
}

// The one operation that reaches point p, from a fresh session of a child.
int crash_child(const std::string& path, crash::Point p) {
  auto st = Store::open(path, opts());
  CHILD_CHECK(st.ok(), "{}", err(st));
  auto s = (*st)->session();
  CHILD_CHECK(s.ok(), "{}", err(s));
  crash::arm(p, 1);
  switch (p) {
    case crash::Point::kMsgDirPublished:
      (void)s->queue("q");
      break;
    case crash::Point::kMsgSendPublished:
      (void)s->send(*s->whereis("q"), "sent");
      break;
    case crash::Point::kMsgTakeRetired:
      (void)s->try_receive(*s->whereis("q"));
      break;
    case crash::Point::kMsgLeaseUnlinked:
      (void)s->receive(*s->whereis("q"), now(true));
      break;
    case crash::Point::kMsgRequeueUnlinked: {
      crash::disarm();
      auto m = s->receive(*s->whereis("q"), now(true));
      CHILD_CHECK(m.ok(), "{}", err(m));
      crash::arm(p, 1);
      (void)s->release(*m);
      break;
    }
    case crash::Point::kMsgDrainRetired: {
      crash::disarm();
      auto b = s->create_mailbox();
      CHILD_CHECK(b.ok(), "{}", err(b));
      for (int i = 0; i < 3; i++) CHILD_CHECK(s->send(*b, "mine").ok(), "send");
      crash::arm(p, 2);  // the second message of the drain
      (void)s->close();
      break;
    }
    default:
      break;
  }
  return 3;  // the point was not reached
}

void crash_round(crash::Point p, bool survivor) {
  SCOPED_TRACE(fmt::format("point {}, recovered by {}", crash::name(p),
                           survivor ? "a survivor" : "a lone open"));
  TempDir dir("msg-crash");
  auto store = Store::open(dir.path(), opts());
  ASSERT_TRUE(store.ok());
  if (p != crash::Point::kMsgDirPublished) {
    auto s = (*store)->session();
    ASSERT_TRUE(s.ok());
    auto q = s->queue("q");
    ASSERT_TRUE(q.ok());
    if (p != crash::Point::kMsgSendPublished) {
      ASSERT_TRUE(s->send(*q, "a").ok());
      ASSERT_TRUE(s->send(*q, "b").ok());
    }
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
  auto q = s->queue("q");
  ASSERT_TRUE(q.ok()) << err(q);
  std::vector<std::string> left = drain(*s, *q);
  using V = std::vector<std::string>;
  switch (p) {
    case crash::Point::kMsgDirPublished:
      EXPECT_EQ(left, V{});
      break;
    case crash::Point::kMsgSendPublished:
      EXPECT_EQ(left, V{"sent"}) << "published: delivered, once";
      break;
    case crash::Point::kMsgTakeRetired:
      EXPECT_EQ(left, V{"b"}) << "retired: received, not given again";
      break;
    case crash::Point::kMsgLeaseUnlinked:
    case crash::Point::kMsgRequeueUnlinked:
      EXPECT_EQ(left, (V{"a", "b"})) << "the lease is given back at the front";
      break;
    case crash::Point::kMsgDrainRetired:
      EXPECT_EQ(left, (V{"a", "b"}));
      break;
    default:
      break;
  }
  auto stats = st.stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->mailboxes, 1u) << "only the queue: a dead owner's mailbox is freed";
  EXPECT_EQ(stats->messages, 0u);
  ASSERT_TRUE(s->send(*q, "after").ok());
  expect_sound(st, false);
  ASSERT_TRUE(s->close().ok());
  store->reset();
  auto again = Store::open(dir.path(), opts());
  ASSERT_TRUE(again.ok());
  expect_sound(**again, true);
  auto s2 = (*again)->session();
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(drain(*s2, *q), V{"after"});
}

TEST(MsgCrashPoints, EveryMessagingPointRecovers) {
  int points = 0;
  for (uint32_t i = 0; i < crash::kPointCount; i++) {
    const crash::Point p = crash::Point(i);
    if (!std::string_view(crash::name(p)).starts_with("msg.")) continue;
    if (const char* only = std::getenv("STOA_CRASH_ONLY");
        only != nullptr && only != std::string_view(crash::name(p))) {
      continue;
    }
    points++;
    crash_round(p, true);
    crash_round(p, false);
  }
  std::printf("msg crash points: %d named, %d rounds\n", points, 2 * points);
  EXPECT_GE(points, 1);
}

// --- random kills ----------------------------------------------------------

constexpr int kProducers = 2;
constexpr int kConsumers = 2;
constexpr uint64_t kMaxSeq = 1 << 22;  // more than a run sends

struct Ctl {
  std::atomic<uint64_t> sent[kProducers];  // sends that returned ok, per producer
  std::atomic<uint8_t> seen[kProducers][kMaxSeq];
  std::atomic<uint64_t> received;
};

std::string payload_of(int p, uint64_t i) {
  std::string s = fmt::format("{}:{}:", p, i);
  s.resize(s.size() + splitmix(i * 7 + uint64_t(p)) % 3000, char('a' + i % 26));
  return s;
}

int producer(const std::string& path, MailboxId q, int p, Ctl* c) {
  auto st = Store::open(path, opts());
  CHILD_CHECK(st.ok(), "{}", err(st));
  auto s = (*st)->session();
  CHILD_CHECK(s.ok(), "{}", err(s));
  for (uint64_t i = c->sent[p].load(); i < kMaxSeq; i = c->sent[p].load()) {
    Status r = s->send(q, payload_of(p, i), {.tag = uint64_t(p), .timeout = milliseconds(50)});
    if (r.code() == Code::kFull) continue;
    CHILD_CHECK(r.ok(), "send: {}", r.error().message());
    c->sent[p].store(i + 1);
  }
  return 0;
}

int consumer(const std::string& path, MailboxId q, Ctl* c) {
  auto st = Store::open(path, opts());
  CHILD_CHECK(st.ok(), "{}", err(st));
  auto s = (*st)->session();
  CHILD_CHECK(s.ok(), "{}", err(s));
  ReceiveOptions ro;
  ro.timeout = milliseconds(20);
  ro.lease = true;
  for (;;) {
    auto m = s->receive(q, ro);
    if (m.code() == Code::kTimeout) continue;
    CHILD_CHECK(m.ok(), "receive: {}", err(m));
    int p = 0;
    unsigned long long i = 0;
    CHILD_CHECK(std::sscanf(m->payload.c_str(), "%d:%llu:", &p, &i) == 2 && p >= 0 &&
                    p < kProducers && i < kMaxSeq && m->payload == payload_of(p, i),
                "a torn or foreign message ({} bytes)", m->payload.size());
    c->seen[p][i].store(1);
    c->received.fetch_add(1);
    Status a = s->ack(*m);
    CHILD_CHECK(a.ok() || a.code() == Code::kNotFound, "ack: {}", a.error().message());
  }
}

TEST(MsgKill, RandomKillsLoseNoSentMessage) {
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  TempDir dir("msg-kill");
  auto store = Store::open(dir.path(), opts());
  ASSERT_TRUE(store.ok());
  Shared<Ctl> ctl;
  MailboxId q;
  {
    auto s = (*store)->session();
    ASSERT_TRUE(s.ok());
    auto r = s->queue("work", {.max_messages = 32});
    ASSERT_TRUE(r.ok());
    q = *r;
  }
  Children kids;
  std::vector<pid_t> pids(kProducers + kConsumers);
  auto start = [&](int k) {
    pids[size_t(k)] = kids.spawn([&, k] {
      return k < kProducers ? producer(dir.path(), q, k, ctl.get())
                            : consumer(dir.path(), q, ctl.get());
    });
  };
  for (int k = 0; k < kProducers + kConsumers; k++) start(k);
  const uint64_t target = scaled(200);
  uint64_t kills = 0;
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
    if (kills % 50 == 0) {
      ASSERT_TRUE((*store)->reap_dead_sessions().ok());
    }
    start(k);
  }
  kids.kill_all();
  ASSERT_TRUE((*store)->reap_dead_sessions().ok());
  auto s = (*store)->session();
  ASSERT_TRUE(s.ok());
  uint64_t drained = 0;
  for (auto m = s->try_receive(q); m.ok(); m = s->try_receive(q)) {
    int p = 0;
    unsigned long long i = 0;
    ASSERT_EQ(std::sscanf(m->payload.c_str(), "%d:%llu:", &p, &i), 2);
    ASSERT_EQ(m->payload, payload_of(p, i));
    ctl->seen[p][i].store(1);
    drained++;
  }
  uint64_t sent = 0;
  for (int p = 0; p < kProducers; p++) {
    const uint64_t n = ctl->sent[p].load();
    sent += n;
    for (uint64_t i = 0; i < n; i++) {
      ASSERT_EQ(ctl->seen[p][i].load(), 1)
          << "producer " << p << " message " << i << " was reported sent and never received "
          << seed_note(seed);
    }
  }
  std::printf("msg kill: %llu kills, %llu sent, %llu received, %llu drained at the end\n",
              (unsigned long long)kills, (unsigned long long)sent,
              (unsigned long long)ctl->received.load(), (unsigned long long)drained);
  EXPECT_GT(sent, kills) << "the workload made progress between kills";
  expect_sound(**store, false);
  ASSERT_TRUE(s->close().ok());
  store->reset();
  auto again = Store::open(dir.path(), opts());
  ASSERT_TRUE(again.ok());
  expect_sound(**again, true);
  auto st = (*again)->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->mailboxes, 1u);
  EXPECT_EQ(st->messages, 0u);
}

}  // namespace
}  // namespace stoa
