// bench/msg_bench.cc — passing a copy between processes: Stoa mailboxes side
// by side with a Unix socketpair, Boost.Interprocess message_queue and
// ZeroMQ ipc:// in the same run.
//
// Workloads (see bench/README.md):
//   msg-pingpong
//       one round trip between two processes (the parent sends, a child
//       echoes it back), payloads of 64 B and 1 MiB, each receiver blocking
//       (sleeps in the kernel when nothing is there) or polling (spins on a
//       non-blocking receive). Sections pingpong-<size>-<block|poll>, each
//       with the median round trip (the median over the trials of each
//       trial's median) and its p99, and a compare line against each anchor.
//       Stoa: two store-owned mailboxes (queues), send() and receive()
//       (ReceiveOptions::poll for polling); the payload is copied into the
//       store by send and out of it by receive (there are no loans yet).
//       Socketpair: AF_UNIX SOCK_STREAM, a 4-byte length then the payload.
//       Boost: two message_queues of 4 messages, max size = the payload.
//       ZeroMQ: a PAIR socket pair over ipc://, zmq_msg_recv.
//   msg-throughput
//       one-way 64 B messages per second from 1 and 4 producer processes to
//       one consumer (the parent), every send blocking when the queue is
//       full. Sections throughput-64B-<1|4>p. Stoa: one queue of 4096
//       messages; Boost: one message_queue of 4096; ZeroMQ: PUSH/PULL over
//       ipc:// (default high-water marks). The socketpair has no many-to-one
//       form and is left out. The clock runs from the start signal (a pipe
//       closed) to the last message received.
//
// Every child is `stoa-bench --child msg-echo|msg-produce ...`, a fresh
// exec, that prints "ready" once its endpoint is open.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench.h"
#include "stoa/msg.h"
#include "stoa/store.h"

namespace stoa_bench {
namespace {

namespace bip = boost::interprocess;

constexpr uint64_t kStoaMaxSize = uint64_t{1} << 30;
constexpr const char* kPing = "bench-ping";
constexpr const char* kPong = "bench-pong";
constexpr uint64_t kQueueDepth = 4096;

enum class Sys { kStoa, kStoaChannel, kSocketpair, kBoost, kZmq };
const char* sys_name(Sys s) {
  switch (s) {
    case Sys::kStoa:
      return "stoa";
    case Sys::kStoaChannel:
      return "stoa-channel";
    case Sys::kSocketpair:
      return "socketpair";
    case Sys::kBoost:
      return "boost-message_queue";
    case Sys::kZmq:
      return "zeromq-ipc";
  }
  return "?";
}
bool parse_sys(const std::string& s, Sys* out) {
  for (Sys c : {Sys::kStoa, Sys::kStoaChannel, Sys::kSocketpair, Sys::kBoost, Sys::kZmq})
    if (s == sys_name(c)) return *out = c, true;
  return false;
}

// One side of a two-way link (or, for throughput, one end of a one-way
// one). send() blocks until the message is queued; recv() returns the next
// message's payload into `out`, spinning when `poll`, sleeping otherwise.
class Link {
 public:
  virtual ~Link() = default;
  virtual void send(const char* p, size_t n) = 0;
  virtual void recv(std::string* out) = 0;
};

std::string zmq_err() { return zmq_strerror(zmq_errno()); }

// A receive that waits this long has lost its peer: the bench dies with a
// message instead of hanging.
constexpr auto kStall = std::chrono::seconds(20);
// Counts a polling loop's empty tries; stalled() reads the clock every 4096.
struct Spin {
  bool stalled() {
    if (++n % 4096 != 0) return false;
    if (n == 4096) t0 = Clock::now();
    return Clock::now() - t0 > kStall;
  }
  uint64_t n = 0;
  Clock::time_point t0;
};

// --- Stoa ----------------------------------------------------------------------

class StoaLink : public Link {
 public:
  // `out`/`in`: the queue names this side sends to / receives from ("" for
  // none).
  StoaLink(const std::string& dir, const char* out, const char* in, bool poll, bool channel = false)
      : channel_(channel) {
    stoa::Options o;
    o.create_if_missing = true;
    o.max_size = kStoaMaxSize;
    o.huge_pages = g_huge_pages;
    o.durability = stoa::Durability::kNone;
    auto st = stoa::Store::open(dir, o);
    if (!st.ok()) die("Store::open " + dir + ": " + st.error().to_string());
    store_ = std::move(st).value();
    auto se = store_->session();
    if (!se.ok()) die("Store::session: " + se.error().to_string());
    session_.emplace(std::move(se).value());
    stoa::MailboxOptions mo;
    mo.max_messages = kQueueDepth;
    mo.max_bytes = uint64_t{256} << 20;
    if (channel) {
      if (*out) cout_ = chan(out);
      if (*in) cin_ = chan(in);
    } else {
      if (*out) out_ = queue(out, mo);
      if (*in) in_ = queue(in, mo);
    }
    ropts_.timeout = kStall;
    ropts_.poll = poll;
    sopts_.timeout = std::chrono::nanoseconds(-1);
    pop_.timeout = kStall;
    pop_.poll = poll;
    push_.timeout = std::chrono::nanoseconds(-1);
    push_.poll = poll;
  }
  ~StoaLink() override {
    session_.reset();
    store_.reset();
  }
  void send(const char* p, size_t n) override {
    if (channel_) {
      stoa::Status s = session_->push(cout_, std::string_view(p, n), push_);
      if (!s.ok()) die("Session::push: " + s.error().to_string());
      return;
    }
    stoa::Status s = session_->send(out_, std::string_view(p, n), sopts_);
    if (!s.ok()) die("Session::send: " + s.error().to_string());
  }
  void recv(std::string* out) override {
    if (channel_) {
      auto r = session_->pop(cin_, out, pop_);
      if (!r.ok()) die("Session::pop: " + r.error().to_string());
      return;
    }
    auto m = session_->receive(in_, ropts_);
    if (!m.ok()) die("Session::receive: " + m.error().to_string());
    *out = std::move(m.value().payload);
  }

 private:
  stoa::MailboxId queue(const char* name, const stoa::MailboxOptions& mo) {
    auto q = session_->queue(name, mo);
    if (!q.ok()) die(std::string("Session::queue ") + name + ": " + q.error().to_string());
    return q.value();
  }
  stoa::ChannelId chan(const char* name) {
    auto c = session_->channel(name, {.capacity = uint32_t(kQueueDepth), .max_message = 64});
    if (!c.ok()) die(std::string("Session::channel ") + name + ": " + c.error().to_string());
    return c.value();
  }
  bool channel_;
  std::unique_ptr<stoa::Store> store_;
  std::optional<stoa::Session> session_;
  stoa::MailboxId out_{}, in_{};
  stoa::ChannelId cout_{}, cin_{};
  stoa::ReceiveOptions ropts_;
  stoa::SendOptions sopts_;
  stoa::PopOptions pop_;
  stoa::PushOptions push_;
};

// --- Unix socketpair ------------------------------------------------------------

class SocketLink : public Link {
 public:
  SocketLink(int fd, bool poll) : fd_(fd) {
    if (poll && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
      die("fcntl O_NONBLOCK: " + std::string(std::strerror(errno)));
    timeval tv{std::chrono::duration_cast<std::chrono::seconds>(kStall).count(), 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
      die("SO_RCVTIMEO: " + std::string(std::strerror(errno)));
  }
  ~SocketLink() override { ::close(fd_); }
  void send(const char* p, size_t n) override {
    uint32_t len = uint32_t(n);
    put(reinterpret_cast<const char*>(&len), sizeof len);
    put(p, n);
  }
  void recv(std::string* out) override {
    uint32_t len = 0;
    get(reinterpret_cast<char*>(&len), sizeof len);
    out->resize(len);
    get(out->data(), len);
  }

 private:
  void put(const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (w <= 0) die("socketpair write: " + std::string(std::strerror(errno)));
      p += w, n -= size_t(w);
    }
  }
  void get(char* p, size_t n) {
    Spin spin;
    while (n > 0) {
      ssize_t r = ::read(fd_, p, n);
      if (r < 0 && (errno == EINTR || errno == EAGAIN) && !spin.stalled()) continue;
      if (r <= 0) die("socketpair read: " + std::string(r == 0 ? "EOF" : std::strerror(errno)));
      p += r, n -= size_t(r);
    }
  }
  int fd_;
};

// --- Boost.Interprocess message_queue -------------------------------------------

class BoostLink : public Link {
 public:
  // The parent creates the queues (create = true) and removes them.
  BoostLink(const std::string& out, const std::string& in, size_t max_size, size_t depth,
            bool create, bool poll)
      : out_name_(out), in_name_(in), create_(create), poll_(poll), max_size_(max_size) {
    try {
      if (create) {
        if (!out.empty()) bip::message_queue::remove(out.c_str());
        if (!in.empty()) bip::message_queue::remove(in.c_str());
        if (!out.empty())
          out_ =
              std::make_unique<bip::message_queue>(bip::create_only, out.c_str(), depth, max_size);
        if (!in.empty())
          in_ = std::make_unique<bip::message_queue>(bip::create_only, in.c_str(), depth, max_size);
      } else {
        if (!out.empty()) out_ = std::make_unique<bip::message_queue>(bip::open_only, out.c_str());
        if (!in.empty()) in_ = std::make_unique<bip::message_queue>(bip::open_only, in.c_str());
      }
    } catch (const std::exception& e) {
      die(std::string("boost message_queue: ") + e.what());
    }
  }
  ~BoostLink() override {
    out_.reset();
    in_.reset();
    if (create_) {
      if (!out_name_.empty()) bip::message_queue::remove(out_name_.c_str());
      if (!in_name_.empty()) bip::message_queue::remove(in_name_.c_str());
    }
  }
  void send(const char* p, size_t n) override {
    if (poll_) {
      while (!out_->try_send(p, n, 0)) {
      }
    } else {
      out_->send(p, n, 0);
    }
  }
  void recv(std::string* out) override {
    out->resize(max_size_);
    bip::message_queue::size_type got = 0;
    unsigned prio = 0;
    bool ok = true;
    if (poll_) {
      Spin spin;
      while ((ok = in_->try_receive(out->data(), max_size_, got, prio)) == false &&
             !spin.stalled()) {
      }
    } else {
      const auto deadline = boost::posix_time::microsec_clock::universal_time() +
                            boost::posix_time::seconds(kStall.count());
      ok = in_->timed_receive(out->data(), max_size_, got, prio, deadline);
    }
    if (!ok) die("boost message_queue: no message for 20 s");
    out->resize(got);
  }

 private:
  std::string out_name_, in_name_;
  bool create_, poll_;
  size_t max_size_;
  std::unique_ptr<bip::message_queue> out_, in_;
};

// --- ZeroMQ ipc:// ---------------------------------------------------------------

class ZmqLink : public Link {
 public:
  // type: ZMQ_PAIR (both ends), ZMQ_PUSH (producers, connect) or ZMQ_PULL
  // (the consumer, bind).
  ZmqLink(const std::string& endpoint, int type, bool bind, bool poll)
      : type_(type), flags_(poll ? ZMQ_DONTWAIT : 0) {
    ctx_ = zmq_ctx_new();
    sock_ = ctx_ ? zmq_socket(ctx_, type) : nullptr;
    if (!sock_) die("zmq_socket: " + zmq_err());
    int rc = bind ? zmq_bind(sock_, endpoint.c_str()) : zmq_connect(sock_, endpoint.c_str());
    if (rc != 0) die("zmq bind/connect " + endpoint + ": " + zmq_err());
    const int ms = int(std::chrono::milliseconds(kStall).count());
    zmq_setsockopt(sock_, ZMQ_RCVTIMEO, &ms, sizeof ms);
    zmq_msg_init(&msg_);
  }
  ~ZmqLink() override {
    zmq_msg_close(&msg_);
    // A producer (PUSH) keeps the default linger, so that the messages it
    // queued are delivered before it exits; nobody else has any pending.
    if (type_ != ZMQ_PUSH) {
      int linger = 0;
      zmq_setsockopt(sock_, ZMQ_LINGER, &linger, sizeof linger);
    }
    zmq_close(sock_);
    zmq_ctx_term(ctx_);
  }
  void send(const char* p, size_t n) override {
    while (zmq_send(sock_, p, n, flags_) < 0) {
      if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) die("zmq_send: " + zmq_err());
    }
  }
  void recv(std::string* out) override {
    Spin spin;
    while (zmq_msg_recv(&msg_, sock_, flags_) < 0) {
      if ((zmq_errno() != EAGAIN && zmq_errno() != EINTR) || flags_ == 0 || spin.stalled())
        die("zmq_msg_recv: " + zmq_err());
    }
    out->assign(static_cast<const char*>(zmq_msg_data(&msg_)), zmq_msg_size(&msg_));
  }

 private:
  int type_;
  int flags_;
  void* ctx_ = nullptr;
  void* sock_ = nullptr;
  zmq_msg_t msg_;
};

// The names a run's endpoints use, unique per parent process.
struct Names {
  explicit Names(const std::string& dir)
      : dir(dir),
        boost_ping("stoa-bench-ping-" + std::to_string(getpid())),
        boost_pong("stoa-bench-pong-" + std::to_string(getpid())),
        zmq("ipc://" + dir + "/zmq.sock") {}
  std::string dir, boost_ping, boost_pong, zmq;
};

std::string size_name(size_t n) {
  return n >= (size_t{1} << 20) ? std::to_string(n >> 20) + "MiB" : std::to_string(n) + "B";
}

// --- ping-pong --------------------------------------------------------------------

// The echo child's link: receives pings, sends pongs.
std::unique_ptr<Link> echo_link(Sys sys, const Names& nm, size_t size, bool poll, int fd) {
  switch (sys) {
    case Sys::kStoa:
      return std::make_unique<StoaLink>(nm.dir, kPong, kPing, poll);
    case Sys::kStoaChannel:
      return std::make_unique<StoaLink>(nm.dir, kPong, kPing, poll, true);
    case Sys::kSocketpair:
      return std::make_unique<SocketLink>(fd, poll);
    case Sys::kBoost:
      return std::make_unique<BoostLink>(nm.boost_pong, nm.boost_ping, size, 4, false, poll);
    case Sys::kZmq:
      return std::make_unique<ZmqLink>(nm.zmq, ZMQ_PAIR, false, poll);
  }
  return nullptr;
}

// `stoa-bench --child msg-echo SYS DIR PARENTPID SIZE POLL FD`: echoes every
// message of SIZE bytes; a message of another size ends it.
int msg_echo(const std::vector<std::string>& a) {
  if (a.size() != 6) return 2;
  Sys sys;
  if (!parse_sys(a[0], &sys)) return 2;
  Names nm(a[1]);
  nm.boost_ping = "stoa-bench-ping-" + a[2];
  nm.boost_pong = "stoa-bench-pong-" + a[2];
  const size_t size = std::stoull(a[3]);
  std::unique_ptr<Link> link = echo_link(sys, nm, size, a[4] == "1", std::stoi(a[5]));
  std::printf("ready\n");
  std::fflush(stdout);
  std::string m;
  for (;;) {
    link->recv(&m);
    if (m.size() != size) break;
    link->send(m.data(), m.size());
  }
  return 0;
}
STOA_BENCH_CHILD("msg-echo", msg_echo);

struct PingResult {
  Stats median_ns;  // per trial: the median round trip
  Stats p99_ns;     // per trial: the 99th percentile
};

PingResult pingpong_side(const Config& cfg, Sys sys, size_t size, bool poll) {
  TempDir tmp(cfg, std::string("msg-") + sys_name(sys));
  Names nm(tmp.path());
  int sv[2] = {-1, -1};
  std::unique_ptr<Link> link;
  // The parent's end first: it creates what the child opens.
  switch (sys) {
    case Sys::kStoa:
      link = std::make_unique<StoaLink>(nm.dir, kPing, kPong, poll);
      break;
    case Sys::kStoaChannel:
      link = std::make_unique<StoaLink>(nm.dir, kPing, kPong, poll, true);
      break;
    case Sys::kSocketpair:
      // sv[1] is inherited by the child (no SOCK_CLOEXEC); sv[0] is ours.
      if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        die("socketpair: " + std::string(std::strerror(errno)));
      if (fcntl(sv[0], F_SETFD, FD_CLOEXEC) != 0) die("fcntl: " + std::string(strerror(errno)));
      link = std::make_unique<SocketLink>(sv[0], poll);
      break;
    case Sys::kBoost:
      link = std::make_unique<BoostLink>(nm.boost_ping, nm.boost_pong, size, 4, true, poll);
      break;
    case Sys::kZmq:
      link = std::make_unique<ZmqLink>(nm.zmq, ZMQ_PAIR, true, poll);
      break;
  }
  PingResult out;
  {
    Child echo("msg-echo", {sys_name(sys), nm.dir, std::to_string(getpid()), std::to_string(size),
                            poll ? "1" : "0", std::to_string(sv[1])});
    if (sv[1] >= 0) ::close(sv[1]);
    std::string line;
    if (!echo.read_line(&line) || line != "ready")
      die(std::string("msg-echo (") + sys_name(sys) + ") did not start");
    std::string payload(size, 'p'), back;
    for (size_t i = 0; i < size; i++) payload[i] = char('a' + i % 26);
    auto run = [&](uint64_t n, std::vector<double>* rtts) {
      const Clock::time_point t0 = Clock::now();
      for (uint64_t i = 0; i < n; i++) {
        const Clock::time_point a = Clock::now();
        link->send(payload.data(), payload.size());
        link->recv(&back);
        if (rtts)
          rtts->push_back(std::chrono::duration<double, std::nano>(Clock::now() - a).count());
      }
      return seconds_since(t0);
    };
    const uint64_t n = calibrate([&](uint64_t k) { return run(k, nullptr); }, cfg.trial_seconds);
    if (back != payload)
      die(std::string("msg-echo (") + sys_name(sys) + ") sent back another payload");
    std::vector<double> med, p99;
    for (int t = 0; t < cfg.trials; t++) {
      std::vector<double> rtts;
      rtts.reserve(n);
      run(n, &rtts);
      std::sort(rtts.begin(), rtts.end());
      med.push_back(rtts[rtts.size() / 2]);
      p99.push_back(rtts[std::min(rtts.size() - 1, rtts.size() * 99 / 100)]);
    }
    link->send("x", 1);
    if (int rc = echo.wait(); rc != 0)
      die(std::string("msg-echo (") + sys_name(sys) + ") exited with " + std::to_string(rc));
    out.median_ns = summarize(med);
    out.p99_ns = summarize(p99);
  }
  link.reset();
  return out;
}

void pingpong(const Config& cfg, Reporter& rep) {
  for (size_t size : {size_t{64}, size_t{1} << 20}) {
    for (bool poll : {false, true}) {
      const std::string w = "pingpong-" + size_name(size) + (poll ? "-poll" : "-block");
      rep.section(w, "round trip of " + size_name(size) + " between two processes, receivers " +
                         (poll ? "polling" : "blocking"));
      PingResult stoa = pingpong_side(cfg, Sys::kStoa, size, poll);
      rep.figure(w, "stoa", stoa.median_ns, "ns/rtt");
      rep.note(w, "stoa p99", stoa.p99_ns.median, "ns/rtt");
      // Channels hold at most 64 KiB a message: the small size only.
      const bool chan = size <= 64;
      PingResult ring;
      if (chan) {
        ring = pingpong_side(cfg, Sys::kStoaChannel, size, poll);
        rep.figure(w, "stoa-channel", ring.median_ns, "ns/rtt");
        rep.note(w, "stoa-channel p99", ring.p99_ns.median, "ns/rtt");
      }
      for (Sys s : {Sys::kSocketpair, Sys::kBoost, Sys::kZmq}) {
        PingResult r = pingpong_side(cfg, s, size, poll);
        rep.figure(w, sys_name(s), r.median_ns, "ns/rtt");
        rep.note(w, std::string(sys_name(s)) + " p99", r.p99_ns.median, "ns/rtt");
        rep.compare(w, sys_name(s),
                    stoa.median_ns.median > 0 ? r.median_ns.median / stoa.median_ns.median : 0);
        if (chan) {
          rep.compare(w + "-channel", sys_name(s),
                      ring.median_ns.median > 0 ? r.median_ns.median / ring.median_ns.median : 0);
        }
      }
    }
  }
}
STOA_BENCH("msg-pingpong",
           "round trips between two processes, 64 B and 1 MiB, blocking and polling: Stoa "
           "mailboxes vs socketpair, Boost message_queue, ZeroMQ ipc",
           pingpong);

// --- throughput --------------------------------------------------------------------

constexpr size_t kSmall = 64;

// `stoa-bench --child msg-produce SYS DIR PARENTPID COUNT GOFD DONEFD`:
// opens its end, prints "ready", waits for the start (GOFD at EOF), sends
// COUNT 64 B messages and waits for DONEFD to reach EOF.
int msg_produce(const std::vector<std::string>& a) {
  if (a.size() != 6) return 2;
  Sys sys;
  if (!parse_sys(a[0], &sys)) return 2;
  Names nm(a[1]);
  nm.boost_ping = "stoa-bench-ping-" + a[2];
  const uint64_t count = std::stoull(a[3]);
  std::unique_ptr<Link> link;
  switch (sys) {
    case Sys::kStoa:
      link = std::make_unique<StoaLink>(nm.dir, kPing, "", false);
      break;
    case Sys::kStoaChannel:
      link = std::make_unique<StoaLink>(nm.dir, kPing, "", false, true);
      break;
    case Sys::kBoost:
      link = std::make_unique<BoostLink>(nm.boost_ping, "", kSmall, kQueueDepth, false, false);
      break;
    case Sys::kZmq:
      link = std::make_unique<ZmqLink>(nm.zmq, ZMQ_PUSH, false, false);
      break;
    case Sys::kSocketpair:
      return 2;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  wait_for_start(std::stoi(a[4]));
  char payload[kSmall];
  std::memset(payload, 'm', sizeof payload);
  for (uint64_t i = 0; i < count; i++) link->send(payload, sizeof payload);
  // Keeps its end open until the consumer has every message: a ZeroMQ PUSH
  // socket closed at once lost the tail of its queue (4 producers).
  wait_for_start(std::stoi(a[5]));
  return 0;
}
STOA_BENCH_CHILD("msg-produce", msg_produce);

// Messages per second received by the parent from `producers` children.
double throughput_trial(const Config& cfg, Sys sys, int producers, uint64_t total) {
  TempDir tmp(cfg, std::string("msgtp-") + sys_name(sys));
  Names nm(tmp.path());
  std::unique_ptr<Link> link;
  switch (sys) {
    case Sys::kStoa:
      link = std::make_unique<StoaLink>(nm.dir, "", kPing, false);
      break;
    case Sys::kStoaChannel:
      link = std::make_unique<StoaLink>(nm.dir, "", kPing, false, true);
      break;
    case Sys::kBoost:
      link = std::make_unique<BoostLink>("", nm.boost_ping, kSmall, kQueueDepth, true, false);
      break;
    case Sys::kZmq:
      link = std::make_unique<ZmqLink>(nm.zmq, ZMQ_PULL, true, false);
      break;
    case Sys::kSocketpair:
      die("no many-to-one socketpair");
  }
  const uint64_t each = total / uint64_t(producers);
  double secs = 0;
  {
    StartPipe go, done;
    std::vector<std::unique_ptr<Child>> kids;
    for (int p = 0; p < producers; p++)
      kids.push_back(std::make_unique<Child>(
          "msg-produce", std::vector<std::string>{sys_name(sys), nm.dir, std::to_string(getpid()),
                                                  std::to_string(each), std::to_string(go.fd[0]),
                                                  std::to_string(done.fd[0])}));
    go.close_read();
    done.close_read();
    std::string line;
    for (auto& c : kids)
      if (!c->read_line(&line) || line != "ready")
        die(std::string("msg-produce (") + sys_name(sys) + ") did not start");
    const Clock::time_point t0 = Clock::now();
    go.start();
    std::string m;
    for (uint64_t i = 0; i < each * uint64_t(producers); i++) {
      link->recv(&m);
      if (m.size() != kSmall) die(std::string(sys_name(sys)) + ": a message of the wrong size");
    }
    secs = seconds_since(t0);
    done.start();
    for (auto& c : kids)
      if (int rc = c->wait(); rc != 0)
        die(std::string("msg-produce (") + sys_name(sys) + ") exited with " + std::to_string(rc));
  }
  link.reset();
  return double(each * uint64_t(producers)) / secs;
}

void throughput(const Config& cfg, Reporter& rep) {
  const uint64_t total = cfg.quick ? 200'000 : 1'000'000;
  for (int producers : {1, 4}) {
    const std::string w = "throughput-64B-" + std::to_string(producers) + "p";
    rep.section(w, std::to_string(producers) + " producer process(es) to one consumer, 64 B, " +
                       std::to_string(total) + " messages a trial");
    auto side = [&](Sys s) {
      std::vector<double> v;
      for (int t = 0; t < cfg.trials; t++) v.push_back(throughput_trial(cfg, s, producers, total));
      return summarize(v);
    };
    Stats stoa = side(Sys::kStoa);
    rep.figure(w, "stoa", stoa, "msgs/s");
    Stats ring = side(Sys::kStoaChannel);
    rep.figure(w, "stoa-channel", ring, "msgs/s");
    for (Sys s : {Sys::kBoost, Sys::kZmq}) {
      Stats r = side(s);
      rep.figure(w, sys_name(s), r, "msgs/s");
      rep.compare(w, sys_name(s), r.median > 0 ? stoa.median / r.median : 0);
      rep.compare(w + "-channel", sys_name(s), r.median > 0 ? ring.median / r.median : 0);
    }
  }
}
STOA_BENCH("msg-throughput",
           "one-way 64 B messages/s, 1 and 4 producer processes to one consumer: Stoa queue vs "
           "Boost message_queue, ZeroMQ PUSH/PULL",
           throughput);

}  // namespace
}  // namespace stoa_bench
