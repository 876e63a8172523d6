// tools/demo.cc — `stoa demo`: worker processes share data through one store,
// one of them is killed with SIGKILL mid-work, the survivors reclaim it, and
// the store verifies sound (the allocator phase, demo_alloc.cc); then a bank
// runs transfers between processes while an auditor checks that every
// snapshot balances, one transfer worker is killed, and the books and the
// store are checked at the end (the bank phase, demo_bank.cc).
//
// This file runs the phases in order and holds what they share: the store
// directory (a fresh temporary one unless --dir names one), the parent's
// own Store (opened with the watchdog off: this process only watches, the
// survivors must do the reclaiming), starting, reaping and killing child
// processes, the boards they report on, and the verify each phase ends
// with. Any failed check fails the demo (exit 2) after every child is
// killed and reaped.
#include "demo.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "commands.h"
#include "stoa/options.h"

namespace stoa::cli {
namespace demo {

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void sleep_ns(uint64_t ns) {
  timespec ts{time_t(ns / 1000000000), long(ns % 1000000000)};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

double ms_since(uint64_t t0) { return double(mono_ns() - t0) / 1e6; }

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exit {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  }
  return fmt::format("status {:#x}", status);
}

bool reap(Child& c, bool block) {
  if (c.reaped || c.pid <= 0) return true;
  pid_t r;
  do {
    r = ::waitpid(c.pid, &c.status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == c.pid) c.reaped = true;
  return c.reaped;
}

void note(ChildBoard* b, const std::string& what) {
  if (b->noted.exchange(1) != 0) return;
  std::snprintf(b->note, sizeof(b->note), "%s", what.c_str());
}

int child_main(const std::string& dir, const std::string& who, ChildBoard* board,
               const std::function<int(Session&)>& body) {
  Options o;
  o.create_if_missing = false;  // watchdog on (default interval): it reclaims dead sessions
  auto store = Store::open(dir, o);
  if (!store.ok()) {
    note(board, fmt::format("{}: open: {}", who, store.error().to_string()));
    return 1;
  }
  int rc;
  {
    auto session = (*store)->session();
    if (!session.ok()) {
      note(board, fmt::format("{}: session: {}", who, session.error().to_string()));
      return 1;
    }
    board->slot.store(session->slot());
    board->generation.store(session->generation());
    board->ready.store(1, std::memory_order_release);
    rc = body(*session);
    Status st = session->close();
    if (!st.ok() && rc == 0) {
      note(board, fmt::format("{}: close: {}", who, st.error().to_string()));
      rc = 2;
    }
  }
  store->reset();
  return rc;
}

BoardMap::~BoardMap() {
  if (p_ != MAP_FAILED) ::munmap(p_, bytes_);
}

Status BoardMap::map_bytes(size_t bytes, const char* what) {
  p_ = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p_ == MAP_FAILED) {
    return Error(Code::kIo, fmt::format("mmap {}: {}", what, std::strerror(errno)));
  }
  bytes_ = bytes;
  return {};
}

TreeRemover::~TreeRemover() {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

void Demo::kill_all() {
  for (auto* v : {&children_, &bank_children_, &mail_children_}) {
    for (Child& c : *v) {
      if (c.pid > 0 && !c.reaped) {
        ::kill(c.pid, SIGKILL);
        reap(c, true);
      }
    }
  }
}

int Demo::fail(const std::string& why) {
  kill_all();
  return report(Code::kCorrupt, "demo failed: " + why, kExitProblems);
}

int Demo::wait_started(std::vector<Child>& children,
                       const std::function<ChildBoard&(size_t)>& board,
                       const std::function<std::string(size_t)>& name, const char* what) {
  const uint64_t t0 = mono_ns();
  for (;;) {
    size_t ready = 0;
    for (size_t i = 0; i < children.size(); i++) {
      ChildBoard& b = board(i);
      if (b.ready.load(std::memory_order_acquire) != 0) {
        ready++;
      } else if (reap(children[i], false)) {
        return fail(fmt::format("{} ({}) before starting: {}", name(i),
                                describe_status(children[i].status),
                                b.noted.load() ? b.note : "no message"));
      }
    }
    if (ready == children.size()) return kExitOk;
    if (ms_since(t0) > 10000) return fail(fmt::format("{} did not start within 10 s", what));
    sleep_ns(1000000);
  }
}

void Demo::reap_all(std::vector<Child>& children, uint64_t deadline_ns,
                    const std::function<std::string(size_t)>& name,
                    std::vector<std::string>& failures) {
  const uint64_t give_up = deadline_ns + kGraceNs;
  for (size_t i = 0; i < children.size(); i++) {
    while (!reap(children[i], false)) {
      if (mono_ns() > give_up) {
        ::kill(children[i].pid, SIGKILL);
        reap(children[i], true);
        failures.push_back(fmt::format("{} did not finish in time (killed)", name(i)));
        break;
      }
      sleep_ns(5000000);
    }
  }
}

int Demo::verify_store(std::vector<std::string>& failures) {
  auto rep = store_->verify();
  if (!rep.ok()) return report(rep.error());
  if (rep->sound()) {
    fmt::print(
        "verify: sound ({} check: {} page runs, {} blocks checked: {} live, {} free, "
        "{} cached, {} retired)\n",
        rep->exclusive ? "full" : "partial", rep->runs, rep->blocks_checked, rep->blocks_live,
        rep->blocks_free, rep->blocks_cached, rep->blocks_retired);
  } else {
    fmt::print("verify: {} problem(s)\n", rep->problems.size());
    for (const std::string& p : rep->problems) fmt::print("  problem: {}\n", p);
    failures.push_back(fmt::format("verify found {} problem(s)", rep->problems.size()));
  }
  return kExitOk;
}

int Demo::passed(const std::vector<std::string>& failures) {
  if (failures.empty()) return kExitOk;
  for (const std::string& f : failures) fmt::print("FAILED: {}\n", f);
  return fail(fmt::format("{} check(s) failed; first: {}", failures.size(), failures.front()));
}

int Demo::run() {
  if (args_.dir.empty()) {
    const char* t = std::getenv("TMPDIR");
    std::string tmpl = std::string(t != nullptr && *t != '\0' ? t : "/tmp") + "/stoa-demo.XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return report(Code::kIo, fmt::format("mkdtemp {}: {}", tmpl, std::strerror(errno)));
    }
    dir_ = tmpl;
    remove_temp_.path = dir_;
  } else {
    dir_ = args_.dir;
  }

  Options o;
  o.error_if_exists = true;
  o.max_size = kDemoMaxSize;
  // This process only watches: the survivors must do the reclaiming.
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  auto store = Store::open(dir_, o);
  if (!store.ok()) return report(store.error());
  store_ = std::move(*store);

  int rc = alloc_phase();
  if (rc == kExitOk) rc = bank();
  if (rc == kExitOk) rc = mail();
  if (rc == kExitOk) {
    fmt::print(
        "demo passed: the store is sound, every surviving worker saw intact data, every "
        "bank snapshot balanced, and every job was answered\n");
  }
  kill_all();
  store_.reset();
  return rc;
}

}  // namespace demo

int run_demo(const DemoArgs& args) { return demo::Demo(args).run(); }

Handler setup_demo(CLI::App& sub) {
  auto a = std::make_shared<DemoArgs>();
  sub.add_option("--dir", a->dir,
                 "Create the store here (a missing or empty directory; default: a temporary "
                 "directory, removed afterwards)");
  sub.add_option("--workers", a->workers, "Allocator worker processes")
      ->check(CLI::Range(2, 64))
      ->capture_default_str();
  sub.add_option("--seconds", a->seconds, "How long the allocator workers run")
      ->check(CLI::Range(0.5, 600.0))
      ->capture_default_str();
  sub.add_option("--accounts", a->accounts, "Bank accounts (1000 each to start)")
      ->check(CLI::Range(2, 100000))
      ->capture_default_str();
  sub.add_option("--bank-workers", a->bank_workers,
                 "Transfer worker processes (one of them is killed)")
      ->check(CLI::Range(2, 64))
      ->capture_default_str();
  sub.add_option("--bank-seconds", a->bank_seconds, "How long the transfers run")
      ->check(CLI::Range(0.5, 600.0))
      ->capture_default_str();
  return [a] { return run_demo(*a); };
}

}  // namespace stoa::cli
