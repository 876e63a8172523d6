// Mailboxes (include/stoa/msg.h) across threads and processes: ordering per
// sender, selective receive, full mailboxes, blocking wake-ups across
// processes, leases and redelivery after a receiver is SIGKILLed, session-
// owned mailboxes and names that go with their owner, and bad input. The
// random-kill stress and the named crash points are in msg_kill_test.cc.
//
// Guarantees cited (docs/guarantees.md): 3.8 (what "sent" promises across
// kills), 8.8 (bad input).
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

ReceiveOptions within(milliseconds t) {
  ReceiveOptions r;
  r.timeout = t;
  return r;
}

TEST(Mailbox, SendReceiveCarriesPayloadTagAndSender) {
  TempDir dir("msg-basic");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok()) << err(s);
  auto q = s->queue("jobs");
  ASSERT_TRUE(q.ok()) << err(q);
  auto again = s->queue("jobs");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->value, q->value) << "queue() finds the mailbox it made";
  auto me = s->create_mailbox();
  ASSERT_TRUE(me.ok()) << err(me);

  EXPECT_EQ(s->try_receive(*q).code(), Code::kTimeout);
  std::string big(100'000, 'z');
  ASSERT_TRUE(s->send(*q, "hello", {.tag = 7, .reply_to = *me}).ok());
  ASSERT_TRUE(s->send(*q, "").ok());
  ASSERT_TRUE(s->send(*q, big).ok());
  auto info = s->mailbox_info(*q);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->messages, 3u);
  EXPECT_EQ(info->bytes, 5u + big.size());
  EXPECT_EQ(info->name, "jobs");
  EXPECT_TRUE(info->store_owned);

  auto m = s->receive(*q, within(milliseconds(100)));
  ASSERT_TRUE(m.ok()) << err(m);
  EXPECT_EQ(m->payload, "hello");
  EXPECT_EQ(m->tag, 7u);
  EXPECT_EQ(m->sender, *me);
  EXPECT_EQ(m->seq, 1u);
  EXPECT_FALSE(m->leased());
  m = s->try_receive(*q);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->payload, "");
  m = s->try_receive(*q);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->payload, big);
  EXPECT_EQ(s->try_receive(*q).code(), Code::kTimeout);

  // A timed receive waits about as long as asked, then says so.
  auto t0 = Clock::now();
  EXPECT_EQ(s->receive(*q, within(milliseconds(30))).code(), Code::kTimeout);
  EXPECT_GE(ms_since(t0), 29.0);

  auto v = store->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << v->problems[0];
  auto st = store->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->mailboxes, 2u);
  EXPECT_EQ(st->messages, 0u);
}

TEST(Mailbox, SelectiveReceiveKeepsSkippedMessagesInOrder) {
  TempDir dir("msg-select");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto q = s->queue("sel");
  ASSERT_TRUE(q.ok());
  for (int i = 0; i < 10; i++) {
    ASSERT_TRUE(s->send(*q, std::to_string(i), {.tag = uint64_t(i % 3)}).ok());
  }
  ReceiveOptions only2 = within(milliseconds(0));
  only2.match = [](const MessageInfo& i) { return i.tag == 2; };
  std::vector<std::string> got;
  for (auto m = s->receive(*q, only2); m.ok(); m = s->receive(*q, only2)) got.push_back(m->payload);
  EXPECT_EQ(got, (std::vector<std::string>{"2", "5", "8"}));
  got.clear();
  for (auto m = s->try_receive(*q); m.ok(); m = s->try_receive(*q)) got.push_back(m->payload);
  EXPECT_EQ(got, (std::vector<std::string>{"0", "1", "3", "4", "6", "7", "9"}));
}

TEST(Mailbox, FullMailboxReturnsFullOrWaitsForRoom) {
  TempDir dir("msg-full");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto q = s->queue("small", {.max_messages = 2, .max_bytes = 100});
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(s->send(*q, "a").ok());
  ASSERT_TRUE(s->send(*q, "b").ok());
  EXPECT_EQ(s->send(*q, "c").code(), Code::kFull);
  auto t0 = Clock::now();
  EXPECT_EQ(s->send(*q, "c", {.timeout = milliseconds(20)}).code(), Code::kFull);
  EXPECT_GE(ms_since(t0), 19.0);
  // Bytes bound too, and a message that can never fit is refused as such.
  EXPECT_EQ(s->send(*q, std::string(101, 'x')).code(), Code::kInvalidArgument);

  // A sender waiting without end is let in by a receive in another process.
  Children kids;
  pid_t p = kids.spawn([&] {
    auto st = Store::open(dir.path(), opts());
    CHILD_CHECK(st.ok(), "{}", err(st));
    auto cs = (*st)->session();
    CHILD_CHECK(cs.ok(), "{}", err(cs));
    std::this_thread::sleep_for(milliseconds(30));
    auto m = cs->receive(*q, within(milliseconds(5000)));
    CHILD_CHECK(m.ok() && m->payload == "a", "{}", err(m));
    return 0;
  });
  t0 = Clock::now();
  Status sent = s->send(*q, "c", {.timeout = nanoseconds(-1)});
  EXPECT_TRUE(sent.ok()) << sent.error().message();
  EXPECT_GE(ms_since(t0), 20.0);
  EXPECT_TRUE(exited_ok(kids.wait(p, milliseconds(10'000))));
  std::vector<std::string> got;
  for (auto m = s->try_receive(*q); m.ok(); m = s->try_receive(*q)) got.push_back(m->payload);
  EXPECT_EQ(got, (std::vector<std::string>{"b", "c"}));
}

// Three processes send 2000 numbered messages each to one queue while the
// parent receives: each sender's messages arrive in order, none lost or
// twice. The parent blocks (futex) whenever the queue runs dry.
TEST(Mailbox, FifoPerSenderAcrossProcesses) {
  TempDir dir("msg-fifo");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto q = s->queue("fifo", {.max_messages = 64});
  ASSERT_TRUE(q.ok());
  constexpr int kSenders = 3;
  const int per = int(scaled(2000));
  Children kids;
  std::vector<pid_t> pids;
  for (int w = 0; w < kSenders; w++) {
    pids.push_back(kids.spawn([&, w] {
      auto st = Store::open(dir.path(), opts());
      CHILD_CHECK(st.ok(), "{}", err(st));
      auto cs = (*st)->session();
      CHILD_CHECK(cs.ok(), "{}", err(cs));
      for (int i = 0; i < per; i++) {
        Status r = cs->send(*q, fmt::format("{}:{}", w, i),
                            {.tag = uint64_t(w), .timeout = nanoseconds(-1)});
        CHILD_CHECK(r.ok(), "send {}: {}", i, r.error().message());
      }
      return 0;
    }));
  }
  std::vector<int> next(kSenders, 0);
  for (int n = 0; n < kSenders * per; n++) {
    auto m = s->receive(*q, within(milliseconds(20'000)));
    ASSERT_TRUE(m.ok()) << err(m) << " after " << n;
    int w = 0, i = 0;
    ASSERT_EQ(std::sscanf(m->payload.c_str(), "%d:%d", &w, &i), 2);
    ASSERT_EQ(uint64_t(w), m->tag);
    ASSERT_EQ(i, next[w]) << "sender " << w << " out of order";
    next[w]++;
  }
  for (pid_t p : pids) EXPECT_TRUE(exited_ok(kids.wait(p, milliseconds(10'000))));
  EXPECT_EQ(s->try_receive(*q).code(), Code::kTimeout);
  auto v = store->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << v->problems[0];
}

// Many threads of one process on one mailbox (the TSan run checks the
// locking and the futex words).
TEST(Mailbox, ThreadsSendAndReceiveEveryMessageOnce) {
  TempDir dir("msg-threads");
  auto store = open_store(dir.path());
  MailboxId q;
  {
    auto s = store->session();
    ASSERT_TRUE(s.ok());
    auto r = s->queue("t", {.max_messages = 16});
    ASSERT_TRUE(r.ok());
    q = *r;
  }
  constexpr int kThreads = 3;
  const int per = int(scaled(1000));
  std::vector<std::atomic<int>> seen(size_t(kThreads) * per);
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int w = 0; w < kThreads; w++) {
    ts.emplace_back([&, w] {
      auto s = store->session();
      if (!s.ok()) return void(failures++);
      for (int i = 0; i < per; i++) {
        if (!s->send(q, std::to_string(w * per + i), {.timeout = nanoseconds(-1)}).ok()) {
          failures++;
        }
      }
    });
    ts.emplace_back([&] {
      auto s = store->session();
      if (!s.ok()) return void(failures++);
      ReceiveOptions ro = within(milliseconds(20'000));
      ro.lease = true;
      for (int i = 0; i < per; i++) {
        auto m = s->receive(q, ro);
        if (!m.ok()) return void(failures++);
        seen[size_t(std::stoi(m->payload))]++;
        if (!s->ack(*m).ok()) failures++;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (size_t i = 0; i < seen.size(); i++) ASSERT_EQ(seen[i].load(), 1) << "message " << i;
}

TEST(Mailbox, LeaseAckReleaseAndRedeliveryAfterReceiverIsKilled) {
  TempDir dir("msg-lease");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto q = s->queue("work");
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(s->send(*q, "one").ok());
  ASSERT_TRUE(s->send(*q, "two").ok());
  ReceiveOptions lease = within(milliseconds(0));
  lease.lease = true;

  // Release puts it back at the front; ack frees it; a second ack is refused.
  auto m = s->receive(*q, lease);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->payload, "one");
  EXPECT_EQ(m->deliveries, 1u);
  ASSERT_TRUE(s->release(*m).ok());
  EXPECT_EQ(s->ack(*m).code(), Code::kNotFound);
  m = s->receive(*q, lease);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->payload, "one");
  EXPECT_EQ(m->deliveries, 2u);
  ASSERT_TRUE(s->ack(*m).ok());
  EXPECT_EQ(s->ack(*m).code(), Code::kNotFound);
  auto plain = s->try_receive(*q);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(s->ack(*plain).code(), Code::kInvalidArgument);

  // A child leases a message and is SIGKILLed before it acks: the message
  // comes back, with its delivery count, once the dead session is reaped
  // (here by an explicit reap: the watchdog is off in a process that forks;
  // the watchdog's own detection latency is tests/kill_test.cc's).
  ASSERT_TRUE(s->send(*q, "three").ok());
  Pipe ready;
  Children kids;
  pid_t p = kids.spawn([&] {
    auto st = Store::open(dir.path(), opts());
    CHILD_CHECK(st.ok(), "{}", err(st));
    auto cs = (*st)->session();
    CHILD_CHECK(cs.ok(), "{}", err(cs));
    auto cm = cs->receive(*q, lease);
    CHILD_CHECK(cm.ok() && cm->payload == "three", "{}", err(cm));
    ready.send('x');
    ::pause();
    return 0;
  });
  ASSERT_EQ(ready.recv(milliseconds(10'000)), int('x'));
  EXPECT_EQ(s->try_receive(*q).code(), Code::kTimeout) << "leased: not given twice";
  EXPECT_TRUE(killed_by_sigkill(kids.kill_one(p)));
  auto reaped = store->reap_dead_sessions();
  ASSERT_TRUE(reaped.ok());
  EXPECT_EQ(*reaped, 1u);
  auto back = s->receive(*q, [&] {
    ReceiveOptions r = within(milliseconds(5000));
    r.lease = true;
    return r;
  }());
  ASSERT_TRUE(back.ok()) << err(back);
  EXPECT_EQ(back->payload, "three");
  EXPECT_EQ(back->deliveries, 2u);
  auto info = s->mailbox_info(*q);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->redeliveries, 2u);
  EXPECT_EQ(info->leased, 1u);
  ASSERT_TRUE(s->ack(*back).ok());

  // A session that closes gives back what it held on lease.
  ASSERT_TRUE(s->send(*q, "four").ok());
  {
    auto other = store->session();
    ASSERT_TRUE(other.ok());
    auto held = other->receive(*q, lease);
    ASSERT_TRUE(held.ok());
  }
  m = s->try_receive(*q);
  ASSERT_TRUE(m.ok()) << err(m);
  EXPECT_EQ(m->payload, "four");
}

TEST(Mailbox, SessionMailboxAndNamesGoWithTheirOwner) {
  TempDir dir("msg-owner");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());

  // In-process: another session may send but not receive; closing the
  // owner closes the mailbox and frees its messages.
  MailboxId mine;
  {
    auto owner = store->session();
    ASSERT_TRUE(owner.ok());
    auto r = owner->create_mailbox();
    ASSERT_TRUE(r.ok());
    mine = *r;
    ASSERT_TRUE(owner->register_name("svc", mine).ok());
    EXPECT_EQ(owner->register_name("svc", mine).code(), Code::kExists);
    auto w = s->whereis("svc");
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(*w, mine);
    ASSERT_TRUE(s->send(mine, "for the owner").ok());
    EXPECT_EQ(s->try_receive(mine).code(), Code::kInvalidArgument);
    EXPECT_EQ(s->remove_mailbox(mine).code(), Code::kInvalidArgument);
    auto m = owner->try_receive(mine);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->payload, "for the owner");
    ASSERT_TRUE(s->send(mine, "left behind").ok());
  }
  EXPECT_EQ(s->send(mine, "late").code(), Code::kNotFound);
  EXPECT_EQ(s->whereis("svc").code(), Code::kNotFound);
  auto st = store->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->mailboxes, 0u);
  EXPECT_EQ(st->messages, 0u);

  // Across processes: a child that owns a mailbox, a name for it and a name
  // for a queue is SIGKILLed; after the reap all three are gone (the queue
  // itself stays), and so are its messages.
  auto q = s->queue("keep");
  ASSERT_TRUE(q.ok());
  Pipe ready;
  Shared<std::atomic<uint64_t>> child_box;
  Children kids;
  pid_t p = kids.spawn([&] {
    auto cst = Store::open(dir.path(), opts());
    CHILD_CHECK(cst.ok(), "{}", err(cst));
    auto cs = (*cst)->session();
    CHILD_CHECK(cs.ok(), "{}", err(cs));
    auto b = cs->create_mailbox();
    CHILD_CHECK(b.ok(), "{}", err(b));
    CHILD_CHECK(cs->register_name("worker", *b).ok(), "register");
    CHILD_CHECK(cs->register_name("keep-alias", *q).ok(), "register alias");
    CHILD_CHECK(cs->send(*b, "pending").ok(), "send");
    child_box->store(b->value);
    ready.send('x');
    ::pause();
    return 0;
  });
  ASSERT_EQ(ready.recv(milliseconds(10'000)), int('x'));
  MailboxId cb{child_box->load()};
  auto w = s->whereis("worker");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, cb);
  ASSERT_TRUE(s->send(cb, "to the child").ok());
  EXPECT_TRUE(killed_by_sigkill(kids.kill_one(p)));
  auto reaped = store->reap_dead_sessions();
  ASSERT_TRUE(reaped.ok());
  ASSERT_TRUE(wait_until([&] { return s->whereis("worker").code() == Code::kNotFound; },
                         milliseconds(5000)));
  EXPECT_EQ(s->send(cb, "after death").code(), Code::kNotFound);
  EXPECT_EQ(s->whereis("keep-alias").code(), Code::kNotFound);
  auto kept = s->whereis("keep");
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, *q);
  st = store->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->mailboxes, 1u);
  EXPECT_EQ(st->messages, 0u);
  auto v = store->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << v->problems[0];
}

TEST(Mailbox, QueueOutlivesEverySessionAndReopens) {
  TempDir dir("msg-reopen");
  MailboxId q;
  {
    auto store = open_store(dir.path());
    auto s = store->session();
    ASSERT_TRUE(s.ok());
    auto r = s->queue("durable-ish");
    ASSERT_TRUE(r.ok());
    q = *r;
    for (int i = 0; i < 5; i++) ASSERT_TRUE(s->send(q, std::to_string(i)).ok());
  }
  // A sender SIGKILLed mid-run (no close at all): what it sent stays.
  Children kids;
  pid_t p = kids.spawn([&] {
    auto st = Store::open(dir.path(), opts());
    CHILD_CHECK(st.ok(), "{}", err(st));
    auto cs = (*st)->session();
    CHILD_CHECK(cs.ok(), "{}", err(cs));
    CHILD_CHECK(cs->send(q, "5").ok(), "send");
    ::raise(SIGKILL);
    return 0;
  });
  EXPECT_TRUE(killed_by_sigkill(kids.wait(p, milliseconds(10'000))));
  auto store = open_store(dir.path());  // alone: recovers the dead child
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  auto r = s->whereis("durable-ish");
  ASSERT_TRUE(r.ok()) << err(r);
  EXPECT_EQ(*r, q);
  for (int i = 0; i < 6; i++) {
    auto m = s->try_receive(q);
    ASSERT_TRUE(m.ok()) << err(m);
    EXPECT_EQ(m->payload, std::to_string(i));
  }
  EXPECT_EQ(s->try_receive(q).code(), Code::kTimeout);
}

TEST(Mailbox, BadInputGetsClearErrors) {
  TempDir dir("msg-bad");
  auto store = open_store(dir.path());
  auto s = store->session();
  ASSERT_TRUE(s.ok());
  // Before any mailbox exists.
  EXPECT_EQ(s->send(MailboxId{12345}, "x").code(), Code::kNotFound);
  EXPECT_EQ(s->whereis("nobody").code(), Code::kNotFound);
  auto q = s->queue("q");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(s->send(MailboxId{0}, "x").code(), Code::kNotFound);
  EXPECT_EQ(s->send(MailboxId{q->value + (uint64_t{1} << 16)}, "x").code(), Code::kNotFound)
      << "another generation of the same entry";
  EXPECT_EQ(s->send(MailboxId{~uint64_t{0}}, "x").code(), Code::kNotFound);
  EXPECT_EQ(s->queue("").code(), Code::kInvalidArgument);
  EXPECT_EQ(s->queue(std::string(48, 'n')).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->queue(std::string("a\0b", 3)).code(), Code::kInvalidArgument);
  EXPECT_TRUE(s->queue(std::string(47, 'n')).ok());
  EXPECT_EQ(s->create_mailbox({.max_messages = 0}).code(), Code::kInvalidArgument);
  EXPECT_EQ(s->register_name("q", *q).code(), Code::kExists);
  EXPECT_EQ(s->unregister_name("zz").code(), Code::kNotFound);
  EXPECT_EQ(s->send(*q, std::string((64 << 20) + 1, 'x')).code(), Code::kInvalidArgument);
  // A removed mailbox: its id and names give kNotFound, its messages are freed.
  ASSERT_TRUE(s->send(*q, "x").ok());
  ASSERT_TRUE(s->remove_mailbox(*q).ok());
  EXPECT_EQ(s->send(*q, "x").code(), Code::kNotFound);
  EXPECT_EQ(s->try_receive(*q).code(), Code::kNotFound);
  EXPECT_EQ(s->whereis("q").code(), Code::kNotFound);
  EXPECT_EQ(s->remove_mailbox(*q).code(), Code::kNotFound);
  // A closed session.
  ASSERT_TRUE(s->close().ok());
  EXPECT_EQ(s->send(*q, "x").code(), Code::kClosed);
  EXPECT_EQ(s->queue("q").code(), Code::kClosed);
  EXPECT_EQ(s->try_receive(*q).code(), Code::kClosed);
  // Every mailbox entry in use: kFull, and freeing one makes room.
  auto s2 = store->session();
  ASSERT_TRUE(s2.ok());
  std::vector<MailboxId> all;
  for (;;) {
    auto r = s2->create_mailbox({.max_messages = 1, .max_bytes = 1});
    if (!r.ok()) {
      EXPECT_EQ(r.code(), Code::kFull);
      break;
    }
    all.push_back(*r);
  }
  EXPECT_GE(all.size(), 1000u);
  ASSERT_TRUE(s2->remove_mailbox(all.back()).ok());
  EXPECT_TRUE(s2->create_mailbox().ok());
  auto v = store->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->sound()) << v->problems[0];
}

}  // namespace
}  // namespace stoa
