// Channels (include/stoa/channel.h) across threads and processes: payload,
// tag and order, a full ring (kFull at once or after a wait, room made by a
// pop in another process), blocking pops woken from another process, many
// producer and consumer processes taking every message exactly once and in
// each producer's order, removal waking sleepers, persistence across a
// reopen, and bad input. Kills and the named crash points are in
// channel_kill_test.cc.
//
// Guarantees cited (docs/guarantees.md): 3.9 (what "pushed" promises), 8.8
// (bad input).
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "msg_test_util.h"
#include "stoa/store.h"
#include "test_util.h"

namespace stoa {
namespace {

using namespace stoa::test;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

Options opts() { return msg_opts(); }
std::unique_ptr<Store> open_store(const std::string& path) { return open_msg_store(path); }

PopOptions within(milliseconds t) {
  PopOptions p;
  p.timeout = t;
  return p;
}

TEST(Channel, PushPopCarriesPayloadTagAndOrder) {
  TempDir dir("chan-basic");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto ch = s->channel("c", {.capacity = 8, .max_message = 100});
  ASSERT_TRUE(ch.ok()) << err(ch);
  auto again = s->channel("c", {.capacity = 64});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->value, ch->value) << "channel() finds the one it made";
  std::string out;
  EXPECT_EQ(s->pop(*ch, &out, within(milliseconds(0))).code(), Code::kTimeout);
  for (int i = 0; i < 20; i++) {  // more than the capacity: the ring wraps
    ASSERT_TRUE(s->push(*ch, std::string(size_t(i * 5), char('a' + i)), {.tag = uint64_t(i)}).ok());
    auto p = s->pop(*ch, &out, within(milliseconds(100)));
    ASSERT_TRUE(p.ok()) << err(p);
    EXPECT_EQ(out, std::string(size_t(i * 5), char('a' + i)));
    EXPECT_EQ(p->tag, uint64_t(i));
    EXPECT_EQ(p->position, uint64_t(i));
    EXPECT_GT(p->sent_ns, 0u);
  }
  for (int i = 0; i < 8; i++) ASSERT_TRUE(s->push(*ch, std::to_string(i)).ok());
  for (int i = 0; i < 8; i++) {
    ASSERT_TRUE(s->pop(*ch, &out, within(milliseconds(0))).ok());
    EXPECT_EQ(out, std::to_string(i)) << "FIFO";
  }
  auto list = s->channels();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "c");
  EXPECT_EQ((*list)[0].capacity, 8u);
  EXPECT_EQ((*list)[0].max_message, 100u);
  EXPECT_EQ((*list)[0].pushed, 28u);
  EXPECT_EQ((*list)[0].popped, 28u);
  auto v = store->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << v->problems[0];
}

TEST(Channel, FullRingGivesFullOrWaitsForAPopInAnotherProcess) {
  TempDir dir("chan-full");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto ch = s->channel("f", {.capacity = 4, .max_message = 16});
  ASSERT_TRUE(ch.ok());
  for (int i = 0; i < 4; i++) ASSERT_TRUE(s->push(*ch, "x").ok());
  EXPECT_EQ(s->push(*ch, "y").code(), Code::kFull);
  auto t0 = Clock::now();
  EXPECT_EQ(s->push(*ch, "y", {.timeout = milliseconds(30)}).code(), Code::kFull);
  EXPECT_GE(ms_since(t0), 29.0);
  auto st = store->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->channels, 1u);
  EXPECT_EQ(st->channel_messages, 4u);

  Children kids;
  pid_t pid = kids.spawn([&] {
    auto cst = Store::open(dir.path(), opts());
    CHILD_CHECK(cst.ok(), "{}", err(cst));
    auto cs = (*cst)->session();
    CHILD_CHECK(cs.ok(), "{}", err(cs));
    std::this_thread::sleep_for(milliseconds(50));
    std::string out;
    auto p = cs->pop(*ch, &out, PopOptions{.timeout = milliseconds(0)});
    CHILD_CHECK(p.ok(), "{}", err(p));
    return 0;
  });
  t0 = Clock::now();
  Status r = s->push(*ch, "y", {.timeout = milliseconds(10'000)});
  EXPECT_TRUE(r.ok()) << r.error().message();
  EXPECT_GE(ms_since(t0), 20.0) << "it waited for the pop";
  EXPECT_TRUE(exited_ok(kids.wait(pid, milliseconds(10'000))));
  std::string out;
  std::vector<std::string> left;
  while (s->pop(*ch, &out, within(milliseconds(0))).ok()) left.push_back(out);
  EXPECT_EQ(left, (std::vector<std::string>{"x", "x", "x", "y"}));
}

TEST(Channel, BlockingPopIsWokenFromAnotherProcess) {
  TempDir dir("chan-wake");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto ch = s->channel("w");
  ASSERT_TRUE(ch.ok());
  Children kids;
  pid_t pid = kids.spawn([&] {
    auto cst = Store::open(dir.path(), opts());
    CHILD_CHECK(cst.ok(), "{}", err(cst));
    auto cs = (*cst)->session();
    CHILD_CHECK(cs.ok(), "{}", err(cs));
    std::this_thread::sleep_for(milliseconds(80));  // the parent is asleep by now
    CHILD_CHECK(cs->push(*ch, "wake").ok(), "push");
    return 0;
  });
  std::string out;
  auto t0 = Clock::now();
  auto p = s->pop(*ch, &out, within(milliseconds(10'000)));
  ASSERT_TRUE(p.ok()) << err(p);
  EXPECT_EQ(out, "wake");
  EXPECT_LT(ms_since(t0), 5'000.0);
  EXPECT_TRUE(exited_ok(kids.wait(pid, milliseconds(10'000))));
}

// Producers and consumers in separate processes: every message popped
// exactly once, each producer's in its order.
TEST(Channel, ManyProcessesTakeEveryMessageOnceInProducerOrder) {
  TempDir dir("chan-mpmc");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto ch = s->channel("m", {.capacity = 16, .max_message = 64});
  ASSERT_TRUE(ch.ok());
  constexpr int kProducers = 3, kConsumers = 2;
  const int per = int(scaled(3000));
  struct Seen {
    std::atomic<uint8_t> got[kProducers][1 << 16];
    std::atomic<int> order_errors;
  };
  Shared<Seen> seen;
  ASSERT_LE(per, 1 << 16);
  Children kids;
  std::vector<pid_t> pids;
  for (int w = 0; w < kProducers; w++) {
    pids.push_back(kids.spawn([&, w] {
      auto cst = Store::open(dir.path(), opts());
      CHILD_CHECK(cst.ok(), "{}", err(cst));
      auto cs = (*cst)->session();
      CHILD_CHECK(cs.ok(), "{}", err(cs));
      for (int i = 0; i < per; i++) {
        Status r = cs->push(*ch, fmt::format("{}:{}", w, i),
                            {.tag = uint64_t(w), .timeout = nanoseconds(-1)});
        CHILD_CHECK(r.ok(), "push {}: {}", i, r.error().message());
      }
      return 0;
    }));
  }
  for (int c = 0; c < kConsumers; c++) {
    pids.push_back(kids.spawn([&, c] {
      auto cst = Store::open(dir.path(), opts());
      CHILD_CHECK(cst.ok(), "{}", err(cst));
      auto cs = (*cst)->session();
      CHILD_CHECK(cs.ok(), "{}", err(cs));
      std::vector<int> last(kProducers, -1);
      std::string out;
      // Consumer c takes its share; the totals are checked by the parent.
      const int share =
          kProducers * per / kConsumers + (c == 0 ? kProducers * per % kConsumers : 0);
      for (int n = 0; n < share; n++) {
        auto p = cs->pop(*ch, &out, PopOptions{.timeout = milliseconds(20'000)});
        CHILD_CHECK(p.ok(), "pop after {}: {}", n, err(p));
        int w = 0, i = 0;
        CHILD_CHECK(std::sscanf(out.c_str(), "%d:%d", &w, &i) == 2 && w >= 0 && w < kProducers &&
                        i >= 0 && i < per && uint64_t(w) == p->tag,
                    "a foreign message '{}'", out);
        if (i <= last[size_t(w)]) seen->order_errors++;
        last[size_t(w)] = i;
        seen->got[w][i]++;
      }
      return 0;
    }));
  }
  for (pid_t p : pids) EXPECT_TRUE(exited_ok(kids.wait(p, milliseconds(60'000))));
  EXPECT_EQ(seen->order_errors.load(), 0) << "a consumer saw a producer's messages out of order";
  for (int w = 0; w < kProducers; w++) {
    for (int i = 0; i < per; i++) {
      ASSERT_EQ(seen->got[w][i].load(), 1) << "producer " << w << " message " << i;
    }
  }
  std::string out;
  EXPECT_EQ(s->pop(*ch, &out, within(milliseconds(0))).code(), Code::kTimeout);
  auto v = store->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << v->problems[0];
}

// Threads of one process on one channel (the TSan run checks the ring's
// memory orders and the futex words).
TEST(Channel, ThreadsPushAndPopEveryMessageOnce) {
  TempDir dir("chan-threads");
  auto store = open_store(dir.path());
  ChannelId ch;
  {
    auto s = store->session();
    ASSERT_TRUE(s.ok());
    auto r = s->channel("t", {.capacity = 8, .max_message = 32});
    ASSERT_TRUE(r.ok());
    ch = *r;
  }
  constexpr int kThreads = 3;
  const int per = int(scaled(2000));
  std::vector<std::atomic<int>> seen(size_t(kThreads) * per);
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int w = 0; w < kThreads; w++) {
    ts.emplace_back([&, w] {
      auto s = store->session();
      if (!s.ok()) return void(failures++);
      for (int i = 0; i < per; i++) {
        if (!s->push(ch, std::to_string(w * per + i), {.timeout = nanoseconds(-1)}).ok()) {
          failures++;
        }
      }
    });
    ts.emplace_back([&] {
      auto s = store->session();
      if (!s.ok()) return void(failures++);
      std::string out;
      for (int i = 0; i < per; i++) {
        auto p = s->pop(ch, &out, within(milliseconds(20'000)));
        if (!p.ok()) return void(failures++);
        seen[size_t(std::stoi(out))]++;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (size_t i = 0; i < seen.size(); i++) ASSERT_EQ(seen[i].load(), 1) << "message " << i;
}

TEST(Channel, RemoveWakesSleepersAndTheIdGoes) {
  TempDir dir("chan-remove");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto ch = s->channel("r", {.capacity = 2, .max_message = 8});
  ASSERT_TRUE(ch.ok());
  std::thread popper([&] {
    auto ps = store->session();
    ASSERT_TRUE(ps.ok());
    std::string out;
    auto p = ps->pop(*ch, &out, within(milliseconds(20'000)));
    EXPECT_TRUE(p.code() == Code::kClosed || p.code() == Code::kNotFound) << err(p);
  });
  std::this_thread::sleep_for(milliseconds(50));
  ASSERT_TRUE(s->remove_channel(*ch).ok());
  popper.join();
  EXPECT_EQ(s->push(*ch, "x").code(), Code::kNotFound);
  EXPECT_EQ(s->remove_channel(*ch).code(), Code::kNotFound);
  auto fresh = s->channel("r");
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE(fresh->value, ch->value) << "a new channel, a new id";
  auto st = store->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->channels, 1u);
}

TEST(Channel, MessagesOutliveSessionsAndAReopen) {
  TempDir dir("chan-reopen");
  ChannelId ch;
  {
    auto store = open_store(dir.path());
    auto s = store->session();
    ASSERT_TRUE(s.ok());
    auto r = s->channel("keep");
    ASSERT_TRUE(r.ok());
    ch = *r;
    ASSERT_TRUE(s->push(ch, "one").ok());
    ASSERT_TRUE(s->push(ch, "two").ok());
  }
  auto store = open_store(dir.path());
  auto v = store->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << v->problems[0];
  EXPECT_EQ(v->messages, 2u);
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto r = s->channel("keep");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->value, ch.value);
  std::string out;
  ASSERT_TRUE(s->pop(ch, &out, within(milliseconds(0))).ok());
  EXPECT_EQ(out, "one");
  ASSERT_TRUE(s->pop(ch, &out, within(milliseconds(0))).ok());
  EXPECT_EQ(out, "two");
}

TEST(Channel, BadInputGetsClearErrors) {
  TempDir dir("chan-bad");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->channel("").code(), Code::kInvalidArgument);
  EXPECT_EQ(s->channel(std::string(48, 'n')).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->channel("c", {.capacity = 3}).code(), Code::kInvalidArgument) << "not a power of 2";
  EXPECT_EQ(s->channel("c", {.capacity = 1}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->channel("c", {.max_message = 0}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->channel("c", {.max_message = 65537}).code(), Code::kInvalidArgument);
  auto ch = s->channel("c", {.capacity = 4, .max_message = 10});
  ASSERT_TRUE(ch.ok());
  EXPECT_EQ(s->push(*ch, std::string(11, 'x')).code(), Code::kInvalidArgument);
  std::string out;
  EXPECT_EQ(s->pop(*ch, nullptr).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->push(ChannelId{0}, "x").code(), Code::kNotFound);
  EXPECT_EQ(s->push(ChannelId{ch->value + (uint64_t{1} << 16)}, "x").code(), Code::kNotFound)
      << "a stale generation";
  EXPECT_EQ(s->pop(ChannelId{12345}, &out).code(), Code::kNotFound);
  for (int i = 0; i < 255; i++) ASSERT_TRUE(s->channel(fmt::format("fill{}", i)).ok()) << i;
  EXPECT_EQ(s->channel("one-too-many").code(), Code::kFull);
  ASSERT_TRUE(s->close().ok());
  EXPECT_EQ(s->push(*ch, "x").code(), Code::kClosed);
  EXPECT_EQ(s->pop(*ch, &out).code(), Code::kClosed);
  EXPECT_EQ(s->channel("c").code(), Code::kClosed);
}

}  // namespace
}  // namespace stoa
