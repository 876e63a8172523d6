// tools/demo_msg.cc — the mailbox phase of `stoa demo`: the parent puts jobs
// (some of them 256 KiB) on a store-owned queue, each carrying the parent's
// own mailbox as its return address; worker processes take jobs on lease,
// answer each with a checksum of its payload, then ack. One worker is
// SIGKILLed while it works; the job it held comes back to the queue when a
// survivor reclaims its session, and another worker answers it. The phase
// passes when every job was answered with the right checksum (a job may be
// answered twice: leases deliver at least once), the queue is empty and the
// store verifies sound. Workers also push each finished job's number to the
// channel 'demo.done' (a ring, no allocation per message); the parent pops
// them at the end and finds every job there.
#include <signal.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli_util.h"
#include "demo.h"

namespace stoa::cli {
namespace demo {
namespace {

constexpr int kMailWorkers = 3;
constexpr uint64_t kJobs = 400;
constexpr uint64_t kStopTag = 1;

std::string job_payload(uint64_t n) {
  std::string p = fmt::format("job {}:", n);
  p.resize(n % 20 == 0 ? 256 * 1024 : 64 + n % 512, char('a' + n % 26));
  return p;
}

uint64_t payload_sum(const std::string& p) {
  uint64_t h = p.size();
  for (unsigned char c : p) h = mix64(h ^ c);
  return h;
}

constexpr uint32_t kDoneSlots = 1024;  // more than kJobs plus the redelivered ones

int mail_worker(Session& s, ChildBoard* board) {
  auto jobs = s.queue("demo.jobs");
  if (!jobs.ok()) return note(board, "queue: " + jobs.error().to_string()), 1;
  auto done = s.channel("demo.done", {.capacity = kDoneSlots, .max_message = 32});
  if (!done.ok()) return note(board, "channel: " + done.error().to_string()), 1;
  ReceiveOptions ro;
  ro.timeout = std::chrono::milliseconds(200);
  ro.lease = true;
  for (;;) {
    auto m = s.receive(*jobs, ro);
    if (m.code() == Code::kTimeout) continue;
    if (!m.ok()) return note(board, "receive: " + m.error().to_string()), 1;
    if (m->tag == kStopTag) return s.ack(*m).ok() ? 0 : 1;
    uint64_t n = 0;
    if (std::sscanf(m->payload.c_str(), "job %llu:", reinterpret_cast<unsigned long long*>(&n)) !=
        1) {
      return note(board, "a job without a number"), 1;
    }
    sleep_ns(200'000);  // the work
    Status st = s.send(m->sender, fmt::format("{}:{}", n, payload_sum(m->payload)),
                       {.timeout = std::chrono::seconds(5)});
    if (!st.ok()) return note(board, "reply: " + st.error().to_string()), 1;
    st = s.push(*done, std::to_string(n), {.timeout = std::chrono::seconds(5)});
    if (!st.ok()) return note(board, "push: " + st.error().to_string()), 1;
    if (Status a = s.ack(*m); !a.ok()) return note(board, "ack: " + a.error().to_string()), 1;
  }
}

}  // namespace

int Demo::mail() {
  fmt::print(
      "\nmailboxes: {} jobs (one in 20 of 256 KiB) on the queue 'demo.jobs', each with the "
      "parent's\nmailbox as return address; {} worker processes lease a job, answer with its "
      "checksum,\nthen ack; one worker is SIGKILLed while it works\n\n",
      kJobs, kMailWorkers);
  auto s = store_->session();
  if (!s.ok()) return report(s.error());
  auto jobs = s->queue("demo.jobs");
  if (!jobs.ok()) return report(jobs.error());
  auto replies = s->create_mailbox({.max_messages = kJobs * 2});
  if (!replies.ok()) return report(replies.error());
  auto done = s->channel("demo.done", {.capacity = kDoneSlots, .max_message = 32});
  if (!done.ok()) return report(done.error());

  auto boards = mail_map_.map<ChildBoard>(kMailWorkers, "mailbox boards");
  if (!boards.ok()) return report(boards.error());
  mail_children_.assign(kMailWorkers, Child{});
  std::fflush(stdout);
  for (int i = 0; i < kMailWorkers; i++) {
    ChildBoard* b = &(*boards)[i];
    pid_t pid = ::fork();
    if (pid < 0) return fail(fmt::format("fork: {}", std::strerror(errno)));
    if (pid == 0) {
      ::_exit(child_main(dir_, fmt::format("mail worker {}", i + 1), b,
                         [b](Session& ws) { return mail_worker(ws, b); }));
    }
    mail_children_[size_t(i)].pid = pid;
  }
  auto name = [](size_t i) { return fmt::format("mail worker {}", i + 1); };
  if (int rc = wait_started(
          mail_children_, [&](size_t i) -> ChildBoard& { return (*boards)[i]; }, name,
          "mail workers");
      rc != kExitOk) {
    return rc;
  }
  for (uint64_t n = 0; n < kJobs; n++) {
    Status st =
        s->send(*jobs, job_payload(n), {.reply_to = *replies, .timeout = std::chrono::seconds(10)});
    if (!st.ok()) return report(st.error());
  }
  std::vector<std::string> failures;
  std::vector<uint32_t> answered(kJobs, 0);
  uint64_t distinct = 0, duplicates = 0;
  const size_t victim = 0;
  bool killed = false;
  const uint64_t start = mono_ns();
  ReceiveOptions ro;
  ro.timeout = std::chrono::seconds(10);
  while (distinct < kJobs) {
    if (!killed && distinct >= kJobs / 4) {
      fmt::print("after {} answers: SIGKILL to mail worker {} (pid {})\n", distinct, victim + 1,
                 mail_children_[victim].pid);
      ::kill(mail_children_[victim].pid, SIGKILL);
      reap(mail_children_[victim], true);
      killed = true;
    }
    auto r = s->receive(*replies, ro);
    if (!r.ok()) {
      failures.push_back(fmt::format("waiting for answers ({} of {}): {}", distinct, kJobs,
                                     r.error().to_string()));
      break;
    }
    unsigned long long n = 0, sum = 0;
    if (std::sscanf(r->payload.c_str(), "%llu:%llu", &n, &sum) != 2 || n >= kJobs) {
      failures.push_back("a malformed answer: " + r->payload);
      break;
    }
    if (sum != payload_sum(job_payload(n))) {
      failures.push_back(fmt::format("job {} answered with a wrong checksum", n));
    }
    if (answered[n]++ == 0) {
      distinct++;
    } else {
      duplicates++;
    }
  }
  const double secs = double(mono_ns() - start) / 1e9;
  for (int i = 0; i < kMailWorkers; i++) {
    if (size_t(i) != victim) (void)s->send(*jobs, "stop", {.tag = kStopTag});
  }
  reap_all(mail_children_, mono_ns() + 5'000'000'000ull, name, failures);
  for (size_t i = 0; i < mail_children_.size(); i++) {
    const Child& c = mail_children_[i];
    if (i != victim && !(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0)) {
      failures.push_back(fmt::format("{}: {} ({})", name(i), describe_status(c.status),
                                     (*boards)[i].noted.load() ? (*boards)[i].note : ""));
    }
  }
  auto info = s->mailbox_info(*jobs);
  if (!info.ok()) return report(info.error());
  fmt::print(
      "{} of {} jobs answered in {:.2f} s, checksums right; {} answered twice (a lease given back "
      "by the\nkilled worker); the queue redelivered {} and now holds {}\n",
      distinct, kJobs, secs, duplicates, info->redeliveries, info->messages);
  if (info->messages != 0 || info->leased != 0) {
    failures.push_back(
        fmt::format("the queue still holds {} messages, {} leased", info->messages, info->leased));
  }
  std::vector<uint32_t> pushed(kJobs, 0);
  uint64_t pops = 0, in_ring = 0;
  std::string item;
  while (s->pop(*done, &item, {.timeout = std::chrono::nanoseconds(0)}).ok()) {
    pops++;
    const uint64_t n = std::strtoull(item.c_str(), nullptr, 10);
    if (n < kJobs && pushed[n]++ == 0) in_ring++;
  }
  fmt::print("channel 'demo.done': {} pushes popped, {} distinct jobs\n", pops, in_ring);
  if (in_ring != kJobs) {
    failures.push_back(fmt::format("the channel named {} of {} jobs", in_ring, kJobs));
  }
  if (Status st = s->remove_channel(*done); !st.ok()) return report(st.error());
  if (Status st = s->remove_mailbox(*jobs); !st.ok()) return report(st.error());
  if (Status st = s->close(); !st.ok()) return report(st.error());
  if (int rc = verify_store(failures); rc != kExitOk) return rc;
  return passed(failures);
}

}  // namespace demo
}  // namespace stoa::cli
