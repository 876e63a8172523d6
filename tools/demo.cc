// tools/demo.cc — `stoa demo`: worker processes share data through one store,
// one of them is killed with SIGKILL mid-work, the survivors reclaim it, and
// the store verifies sound; then a bank runs transfers between processes
// while an auditor checks that every snapshot balances, one transfer worker
// is killed, and the books and the store are checked at the end.
//
// Allocator phase:
//
// The parent creates the store, allocates and publishes a "bulletin" (64
// atomic offsets in one block: this phase works below the index, on the
// allocator and cycle locking), closes its
// session and forks the workers. Each child opens the store anew (a Store
// must never be used across fork()) and loops until its deadline:
//   - alloc a block of 16 B .. 64 KiB and fill it with a pattern derived from
//     (worker, sequence); the first 16 bytes say length, worker and sequence;
//   - publish one of its blocks and swap it into a random bulletin slot with
//     an atomic exchange; the block it replaced is now unreachable, so it is
//     retired (freed once no pinned reader can still see it);
//   - free one of its private blocks (checking its pattern first);
//   - pin, read a random bulletin entry through SessionCore::read(), check
//     the whole pattern, unpin.
// The parent keeps its own store open with the watchdog off, so the dead
// worker is reclaimed by the survivors (their watchdogs, or a collect that
// finds the dead pin blocking the cycle); it polls stats() every millisecond
// to time it. Children leave with _exit(): they never run the parent's
// atexit handlers or destructors.
//
// Bank phase (transactions): see the comment above BankBoard.
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "util/clock.h"

namespace stoa::cli {
namespace {

using internal::SessionCore;
using region::Offset;

constexpr uint32_t kBulletinSlots = 64;
constexpr uint64_t kBulletinBytes = kBulletinSlots * sizeof(uint64_t);
constexpr uint32_t kMinBlock = 16;
constexpr uint32_t kMaxBlock = 64 << 10;
constexpr size_t kMaxPrivate = 32;  // private blocks a worker keeps at most
constexpr uint64_t kDemoMaxSize = uint64_t{1} << 30;
constexpr double kReclaimTimeoutMs = 5000;     // the demo fails past this
constexpr uint64_t kGraceNs = 15'000'000'000;  // workers must be done this long after deadline

// First 16 bytes of every demo block.
struct PatternHeader {
  uint32_t len;
  uint32_t worker;
  uint64_t seq;
};
static_assert(sizeof(PatternHeader) == kMinBlock);

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The pattern word at byte position i (a multiple of 8) of block (worker, seq).
uint64_t pattern_word(uint64_t key, uint32_t i) {
  return key ^ (uint64_t(i) * 0xD6E8FEB86659FD93ull);
}
uint64_t pattern_key(uint32_t worker, uint64_t seq) {
  return mix64((uint64_t(worker) << 48) ^ seq);
}

void fill_pattern(char* p, uint32_t len, uint32_t worker, uint64_t seq) {
  PatternHeader h{len, worker, seq};
  std::memcpy(p, &h, sizeof(h));
  const uint64_t key = pattern_key(worker, seq);
  uint32_t i = sizeof(h);
  for (; i + 8 <= len; i += 8) {
    uint64_t w = pattern_word(key, i);
    std::memcpy(p + i, &w, 8);
  }
  const uint64_t last = pattern_word(key, i);
  for (uint32_t k = 0; i + k < len; k++) p[i + k] = char(last >> (8 * k));
}

// The first byte position where p differs from its pattern, if any.
std::optional<uint32_t> check_pattern(const char* p, uint32_t len, uint32_t worker, uint64_t seq) {
  PatternHeader h;
  std::memcpy(&h, p, sizeof(h));
  if (h.len != len || h.worker != worker || h.seq != seq) return 0;
  const uint64_t key = pattern_key(worker, seq);
  uint32_t i = sizeof(h);
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w != pattern_word(key, i)) return i;
  }
  const uint64_t last = pattern_word(key, i);
  for (uint32_t k = 0; i + k < len; k++) {
    if (p[i + k] != char(last >> (8 * k))) return i + k;
  }
  return std::nullopt;
}

// One worker's counters, in a MAP_SHARED anonymous mapping made before fork.
struct WorkerBoard {
  std::atomic<uint32_t> ready{0};
  std::atomic<uint32_t> slot{0};
  std::atomic<uint32_t> generation{0};
  std::atomic<uint64_t> ops{0};
  std::atomic<uint64_t> allocs{0};
  std::atomic<uint64_t> frees{0};
  std::atomic<uint64_t> publishes{0};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> bytes_checked{0};
  std::atomic<uint64_t> full{0};
  std::atomic<uint64_t> mismatches{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint32_t> noted{0};
  char note[512] = {};
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

void note(WorkerBoard* b, const std::string& what) {
  if (b->noted.exchange(1) != 0) return;
  std::snprintf(b->note, sizeof(b->note), "%s", what.c_str());
}

struct WorkerParams {
  uint32_t id;  // 1-based
  uint32_t workers;
  std::string dir;
  Offset bulletin;
  uint64_t deadline_ns;  // CLOCK_MONOTONIC
};

class Worker {
 public:
  Worker(const WorkerParams& p, SessionCore* core, WorkerBoard* board)
      : p_(p), core_(core), board_(board), rng_(mix64(p.id) ^ uint64_t(::getpid())) {}

  // The loop; false after a mismatch or an unexpected error (noted on the board).
  bool run() {
    auto r = core_->read(p_.bulletin, kBulletinBytes);
    if (!r.ok()) return fail("read bulletin", r.error());
    slots_ = reinterpret_cast<std::atomic<uint64_t>*>(core_->write_ptr(p_.bulletin));
    bool ok = true;
    while (ok && util::mono_ns() < p_.deadline_ns) {
      for (int k = 0; ok && k < 16; k++) {
        uint32_t op = uint32_t(rng_() % 100);
        if (op < 35) {
          ok = alloc_one();
        } else if (op < 55) {
          ok = publish_one();
        } else if (op < 65) {
          ok = free_one();
        } else {
          ok = read_some();
        }
        board_->ops.fetch_add(1, std::memory_order_relaxed);
      }
    }
    while (ok && !mine_.empty()) ok = free_one();
    return ok;
  }

 private:
  struct Block {
    Offset off;
    uint32_t len;
    uint64_t seq;
  };

  bool fail(const std::string& what, const Error& e) {
    board_->errors.fetch_add(1, std::memory_order_relaxed);
    note(board_, fmt::format("worker {}: {}: {}", p_.id, what, e.to_string()));
    return false;
  }
  bool mismatch(const std::string& what) {
    board_->mismatches.fetch_add(1, std::memory_order_relaxed);
    note(board_, fmt::format("worker {}: pattern mismatch: {}", p_.id, what));
    return false;
  }

  uint32_t random_size() {
    // Log-uniform-ish: mostly small blocks, some up to 64 KiB.
    uint32_t cap = 1u << (5 + rng_() % 12);  // 32 .. 64 Ki
    return std::clamp<uint32_t>(uint32_t(rng_() % cap) + 1, kMinBlock, kMaxBlock);
  }

  bool alloc_one() {
    if (mine_.size() >= kMaxPrivate && !free_one()) return false;
    uint32_t len = random_size();
    auto r = core_->alloc(len);
    if (!r.ok()) {
      if (r.code() != Code::kFull) return fail(fmt::format("alloc {}", len), r.error());
      board_->full.fetch_add(1, std::memory_order_relaxed);  // frees make room again
      while (mine_.size() > kMaxPrivate / 2) {
        if (!free_one()) return false;
      }
      return true;
    }
    uint64_t seq = ++seq_;
    fill_pattern(core_->write_ptr(*r), len, p_.id, seq);
    mine_.push_back(Block{*r, len, seq});
    board_->allocs.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  Block take_random() {
    size_t i = rng_() % mine_.size();
    Block b = mine_[i];
    mine_[i] = mine_.back();
    mine_.pop_back();
    return b;
  }

  bool publish_one() {
    if (mine_.empty()) return alloc_one();
    Block b = take_random();
    // Publish before linking: a block linked while still private would be
    // freed by the survivors if this worker died, under the readers' feet.
    Status st = core_->publish(b.off);
    if (!st.ok()) return fail(fmt::format("publish {}", b.off), st.error());
    uint64_t old = slots_[rng_() % kBulletinSlots].exchange(b.off, std::memory_order_acq_rel);
    board_->publishes.fetch_add(1, std::memory_order_relaxed);
    if (old != 0) {
      // Unlinked by the exchange: readers pinned now may still hold it.
      st = core_->retire(old);
      if (!st.ok()) return fail(fmt::format("retire {}", old), st.error());
    }
    return true;
  }

  bool free_one() {
    if (mine_.empty()) return true;
    Block b = take_random();
    auto bad = check_pattern(core_->view(b.off), b.len, p_.id, b.seq);
    if (bad) {
      return mismatch(
          fmt::format("own private block at offset {} (len {}, seq {}) differs at "
                      "byte {}",
                      b.off, b.len, b.seq, *bad));
    }
    Status st = core_->free(b.off);
    if (!st.ok()) return fail(fmt::format("free {}", b.off), st.error());
    board_->frees.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  bool read_some() {
    SessionCore::PinGuard pin(*core_);
    int n = 1 + int(rng_() % 4);
    for (int k = 0; k < n; k++) {
      uint32_t i = uint32_t(rng_() % kBulletinSlots);
      Offset off = slots_[i].load(std::memory_order_acquire);
      if (off == 0) continue;
      auto hp = core_->read(off, sizeof(PatternHeader));
      if (!hp.ok()) return fail(fmt::format("read bulletin[{}] = {}", i, off), hp.error());
      PatternHeader h;
      std::memcpy(&h, *hp, sizeof(h));
      if (h.len < kMinBlock || h.len > kMaxBlock || h.worker == 0 || h.worker > p_.workers) {
        return mismatch(
            fmt::format("bulletin[{}] = offset {}: bad header (len {}, worker {}, "
                        "seq {})",
                        i, off, h.len, h.worker, h.seq));
      }
      auto bp = core_->read(off, h.len);
      if (!bp.ok()) return fail(fmt::format("read {} bytes at {}", h.len, off), bp.error());
      auto bad = check_pattern(*bp, h.len, h.worker, h.seq);
      if (bad) {
        return mismatch(
            fmt::format("bulletin[{}] = offset {} (worker {}, seq {}, len {}) differs "
                        "at byte {}",
                        i, off, h.worker, h.seq, h.len, *bad));
      }
      board_->reads.fetch_add(1, std::memory_order_relaxed);
      board_->bytes_checked.fetch_add(h.len, std::memory_order_relaxed);
    }
    return true;
  }

  const WorkerParams& p_;
  SessionCore* core_;
  WorkerBoard* board_;
  std::mt19937_64 rng_;
  std::atomic<uint64_t>* slots_ = nullptr;
  std::vector<Block> mine_;
  uint64_t seq_ = 0;
};

// Runs in the child after fork(); returns its exit status.
int worker_main(const WorkerParams& p, WorkerBoard* board) {
  Options o;
  o.create_if_missing = false;  // watchdog on (default interval): it reclaims dead sessions
  auto store = Store::open(p.dir, o);
  if (!store.ok()) {
    note(board, fmt::format("worker {}: open: {}", p.id, store.error().to_string()));
    return 1;
  }
  bool ok;
  {
    auto session = (*store)->session();
    if (!session.ok()) {
      note(board, fmt::format("worker {}: session: {}", p.id, session.error().to_string()));
      return 1;
    }
    board->slot.store(session->slot());
    board->generation.store(session->generation());
    board->ready.store(1, std::memory_order_release);
    ok = Worker(p, session->core(), board).run();
    Status st = session->close();
    if (!st.ok() && ok) {
      note(board, fmt::format("worker {}: close: {}", p.id, st.error().to_string()));
      ok = false;
    }
  }
  store->reset();
  return ok ? 0 : 2;
}

// --- bank phase: transactions between processes ----------------------------
//
// K accounts "acct/NNN" start at 1000 each (decimal text), created in one
// transaction. Transfer workers (processes) run Session::transact: read two
// accounts, refuse when the source is short, write both. An auditor process
// sums every account in one read-only transaction, again and again: every
// snapshot must add up to K * 1000, including while a worker is SIGKILLed in
// the middle of its commits (its transaction is wholly there or wholly
// absent, and the survivors are not blocked past the dead-session timeout).

constexpr int64_t kOpeningBalance = 1000;
constexpr int64_t kMaxTransfer = 200;

// One bank process's counters (transfer workers first, the auditor last), in
// a MAP_SHARED anonymous mapping made before fork.
struct BankBoard {
  std::atomic<uint32_t> ready{0};
  std::atomic<uint32_t> slot{0};
  std::atomic<uint32_t> generation{0};
  std::atomic<uint64_t> transfers{0};  // committed transfers that moved money
  std::atomic<uint64_t> declined{0};   // committed, but the source was short
  std::atomic<uint64_t> conflicts{0};  // runs of the function that conflicted and ran again
  std::atomic<uint64_t> gave_up{0};    // transact() still conflicting after max_attempts
  std::atomic<uint64_t> moved{0};      // money moved by the committed transfers
  std::atomic<uint64_t> audits{0};     // auditor: snapshots summed
  std::atomic<uint64_t> bad_audits{0};
  std::atomic<uint64_t> last_snapshot{0};
  std::atomic<uint32_t> noted{0};
  char note[512] = {};
};

void note(BankBoard* b, const std::string& what) {
  if (b->noted.exchange(1) != 0) return;
  std::snprintf(b->note, sizeof(b->note), "%s", what.c_str());
}

std::string account_key(uint32_t i, uint32_t accounts) {
  const int width = std::max(3, int(fmt::format("{}", accounts - 1).size()));
  return fmt::format("acct/{:0{}}", i, width);
}

// A balance as stored: decimal digits, no sign.
Result<int64_t> parse_balance(std::string_view key, std::string_view text) {
  int64_t v = -1;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || text.empty() || v < 0) {
    return Error(Code::kCorrupt, fmt::format("{} holds \"{}\", not a balance", key,
                                             escape_field(text.substr(0, 40))));
  }
  return v;
}

struct BankParams {
  uint32_t id;  // 1-based; the auditor is workers + 1
  uint32_t accounts;
  std::string dir;
  uint64_t deadline_ns;  // CLOCK_MONOTONIC
};

// Runs in a child after fork(): transfers until the deadline.
int bank_worker(const BankParams& p, Session& s, BankBoard* b) {
  std::mt19937_64 rng(mix64(p.id) ^ uint64_t(::getpid()) ^ util::mono_ns());
  while (util::mono_ns() < p.deadline_ns) {
    const uint32_t from = uint32_t(rng() % p.accounts);
    uint32_t to = uint32_t(rng() % (p.accounts - 1));
    if (to >= from) to++;
    const int64_t amount = 1 + int64_t(rng() % kMaxTransfer);
    const std::string kf = account_key(from, p.accounts), kt = account_key(to, p.accounts);
    bool short_of_money = false;
    uint64_t runs = 0;
    auto r = s.transact([&](Txn& t) -> Status {
      runs++;
      STOA_ASSIGN(View vf, t.get(kf));
      STOA_ASSIGN(int64_t bf, parse_balance(kf, vf.str()));
      STOA_ASSIGN(View vt, t.get(kt));
      STOA_ASSIGN(int64_t bt, parse_balance(kt, vt.str()));
      short_of_money = bf < amount;
      if (short_of_money) return {};  // commits nothing: a read-only transaction
      STOA_TRY(t.put(kf, fmt::format("{}", bf - amount)));
      return t.put(kt, fmt::format("{}", bt + amount));
    });
    if (r.ok()) {
      b->conflicts.fetch_add(runs - 1, std::memory_order_relaxed);
      if (short_of_money) {
        b->declined.fetch_add(1, std::memory_order_relaxed);
      } else {
        b->transfers.fetch_add(1, std::memory_order_relaxed);
        b->moved.fetch_add(uint64_t(amount), std::memory_order_relaxed);
      }
    } else if (r.code() == Code::kConflict) {
      b->conflicts.fetch_add(runs, std::memory_order_relaxed);
      b->gave_up.fetch_add(1, std::memory_order_relaxed);
    } else {
      note(b, fmt::format("worker {}: transfer {} -> {}: {}", p.id, kf, kt, r.error().to_string()));
      return 2;
    }
  }
  return 0;
}

// Sums every account in one read-only snapshot; the count and the total.
Result<std::pair<uint32_t, int64_t>> sum_accounts(Session& s, uint64_t* snapshot = nullptr) {
  STOA_ASSIGN(Txn t, s.begin(TxnOptions{.read_only = true}));
  if (snapshot != nullptr) *snapshot = t.snapshot();
  STOA_ASSIGN(Cursor c, t.prefix("acct/"));
  uint32_t n = 0;
  int64_t total = 0;
  for (; c.valid(); n++) {
    STOA_ASSIGN(int64_t v, parse_balance(c.key(), c.value().str()));
    total += v;
    STOA_TRY(c.next());
  }
  STOA_TRY(t.commit());
  return std::make_pair(n, total);
}

// Runs in the auditor child: audits until the deadline.
int bank_auditor(const BankParams& p, Session& s, BankBoard* b) {
  const int64_t want = int64_t(p.accounts) * kOpeningBalance;
  do {
    uint64_t snap = 0;
    auto r = sum_accounts(s, &snap);
    if (!r.ok()) {
      note(b, fmt::format("auditor: {}", r.error().to_string()));
      return 2;
    }
    b->audits.fetch_add(1, std::memory_order_relaxed);
    b->last_snapshot.store(snap, std::memory_order_relaxed);
    if (r->first != p.accounts || r->second != want) {
      b->bad_audits.fetch_add(1, std::memory_order_relaxed);
      note(b,
           fmt::format("auditor: snapshot {} has {} accounts totalling {} (want {} totalling {})",
                       snap, r->first, r->second, p.accounts, want));
    }
  } while (util::mono_ns() < p.deadline_ns);
  return b->bad_audits.load() == 0 ? 0 : 2;
}

int bank_main(const BankParams& p, bool auditor, BankBoard* b) {
  Options o;
  o.create_if_missing = false;  // watchdog on (default interval): it reclaims dead sessions
  auto store = Store::open(p.dir, o);
  if (!store.ok()) {
    note(b, fmt::format("bank process {}: open: {}", p.id, store.error().to_string()));
    return 1;
  }
  int rc;
  {
    auto session = (*store)->session();
    if (!session.ok()) {
      note(b, fmt::format("bank process {}: session: {}", p.id, session.error().to_string()));
      return 1;
    }
    b->slot.store(session->slot());
    b->generation.store(session->generation());
    b->ready.store(1, std::memory_order_release);
    rc = auditor ? bank_auditor(p, *session, b) : bank_worker(p, *session, b);
    Status st = session->close();
    if (!st.ok() && rc == 0) {
      note(b, fmt::format("bank process {}: close: {}", p.id, st.error().to_string()));
      rc = 2;
    }
  }
  store->reset();
  return rc;
}

void sleep_ns(uint64_t ns) {
  timespec ts{time_t(ns / 1000000000), long(ns % 1000000000)};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

double ms_since(uint64_t t0) { return double(util::mono_ns() - t0) / 1e6; }

struct Child {
  pid_t pid = -1;
  bool reaped = false;
  int status = 0;
};

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exit {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  }
  return fmt::format("status {:#x}", status);
}

// Removes a directory tree on scope exit (the demo's own temp directory).
struct TreeRemover {
  std::string path;
  ~TreeRemover() {
    if (path.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Unmaps the shared worker boards on scope exit.
struct BoardMap {
  void* p = MAP_FAILED;
  size_t bytes = 0;
  ~BoardMap() {
    if (p != MAP_FAILED) ::munmap(p, bytes);
  }
};

// Reaps child c if it exited; waits when `block`.
bool reap(Child& c, bool block) {
  if (c.reaped || c.pid <= 0) return true;
  pid_t r;
  do {
    r = ::waitpid(c.pid, &c.status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == c.pid) c.reaped = true;
  return c.reaped;
}

class Demo {
 public:
  explicit Demo(const DemoArgs& a)
      : args_(a), children_(size_t(a.workers)), bank_children_(size_t(a.bank_workers) + 1) {}
  ~Demo() { kill_all(); }

  int run();

 private:
  void kill_all() {
    for (auto* v : {&children_, &bank_children_}) {
      for (Child& c : *v) {
        if (c.pid > 0 && !c.reaped) {
          ::kill(c.pid, SIGKILL);
          reap(c, true);
        }
      }
    }
  }
  // Reaps allocator worker i if it exited; waits when `block`.
  bool try_reap(size_t i, bool block) { return reap(children_[i], block); }
  int fail(const std::string& why) {
    kill_all();
    return report(Code::kCorrupt, "demo failed: " + why, kExitProblems);
  }
  int spawn(Offset bulletin);
  int wait_ready();
  int kill_and_watch(size_t victim);
  int finish(size_t victim);
  // The bank phase, then the final verify.
  int bank();
  int bank_spawn(uint64_t deadline_ns);
  int bank_finish(size_t victim, uint64_t bank_start_ns, uint64_t deadline_ns);
  int verify_store(std::vector<std::string>& failures);

  DemoArgs args_;
  std::string dir_;
  TreeRemover remove_temp_;  // declared before store_: removed after it closes
  BoardMap boards_map_;
  std::unique_ptr<Store> store_;
  std::vector<Child> children_;
  std::vector<Child> bank_children_;  // transfer workers, then the auditor
  WorkerBoard* boards_ = nullptr;
  BoardMap bank_map_;
  BankBoard* bank_boards_ = nullptr;
  uint64_t start_ns_ = 0;
  uint64_t deadline_ns_ = 0;
};

int Demo::spawn(Offset bulletin) {
  std::fflush(stdout);
  std::fflush(stderr);
  for (size_t i = 0; i < children_.size(); i++) {
    WorkerParams p{uint32_t(i + 1), uint32_t(children_.size()), dir_, bulletin, deadline_ns_};
    pid_t pid = ::fork();
    if (pid < 0) {
      int e = errno;
      kill_all();
      return report(Code::kIo, fmt::format("fork worker {}: {}", i + 1, std::strerror(e)));
    }
    if (pid == 0) ::_exit(worker_main(p, &boards_[i]));
    children_[i].pid = pid;
  }
  return kExitOk;
}

int Demo::wait_ready() {
  const uint64_t t0 = util::mono_ns();
  for (;;) {
    size_t ready = 0;
    for (size_t i = 0; i < children_.size(); i++) {
      if (boards_[i].ready.load(std::memory_order_acquire) != 0) {
        ready++;
      } else if (try_reap(i, false)) {
        return fail(fmt::format("worker {} ({}) before starting: {}", i + 1,
                                describe_status(children_[i].status),
                                boards_[i].noted.load() ? boards_[i].note : "no message"));
      }
    }
    if (ready == children_.size()) break;
    if (ms_since(t0) > 10000) return fail("workers did not start within 10 s");
    sleep_ns(1000000);
  }
  fmt::print("started {} workers, each in its own process with its own Store::open:\n",
             children_.size());
  for (size_t i = 0; i < children_.size(); i++) {
    fmt::print("  worker {}: pid {}, session slot {} (generation {})\n", i + 1, children_[i].pid,
               boards_[i].slot.load(), boards_[i].generation.load());
  }
  return kExitOk;
}

int Demo::kill_and_watch(size_t victim) {
  const double kill_after_s = std::min(1.0, args_.seconds / 2);
  const uint64_t kill_at = start_ns_ + uint64_t(kill_after_s * 1e9);
  if (util::mono_ns() < kill_at) sleep_ns(kill_at - util::mono_ns());
  WorkerBoard& vb = boards_[victim];
  const uint32_t vslot = vb.slot.load();
  const uint32_t vgen = vb.generation.load();
  auto before = store_->stats();
  if (!before.ok()) return report(before.error());
  const uint64_t recovered_before = before->sessions_recovered;
  fmt::print(
      "\nafter {:.1f} s: worker {} (pid {}, slot {}) is mid-work ({} operations so far); "
      "sending SIGKILL\n",
      ms_since(start_ns_) / 1e3, victim + 1, children_[victim].pid, vslot, vb.ops.load());
  std::fflush(stdout);
  if (::kill(children_[victim].pid, SIGKILL) != 0) {
    return fail(fmt::format("kill worker {}: {}", victim + 1, std::strerror(errno)));
  }
  const uint64_t t0 = util::mono_ns();
  std::optional<double> seen_dead_ms, reclaimed_ms;
  uint64_t polls = 0;
  for (;;) {
    auto st = store_->stats();
    if (!st.ok()) return report(st.error());
    polls++;
    const double ms = ms_since(t0);
    const SessionInfo* row = nullptr;
    for (const SessionInfo& s : st->sessions) {
      if (s.slot == vslot && s.generation == vgen) row = &s;
    }
    if (row != nullptr && row->state == "dead" && !seen_dead_ms) seen_dead_ms = ms;
    if (row == nullptr && st->sessions_recovered > recovered_before) {
      reclaimed_ms = ms;
      break;
    }
    if (ms > kReclaimTimeoutMs) break;
    sleep_ns(1000000);
  }
  try_reap(victim, true);
  if (!reclaimed_ms) {
    return fail(fmt::format("slot {} of the killed worker was not reclaimed within {:.0f} ms",
                            vslot, kReclaimTimeoutMs));
  }
  // The reclaimer claims the dead slot and records kRecover in its ring.
  std::string by;
  auto dumps = store_->impl()->recorder(vslot);
  if (dumps.ok() && !dumps->empty()) {
    const internal::RecorderDump& d = dumps->front();
    for (const auto& e : d.entries) {
      if (e.kind == "recover" && e.arg == vslot && e.arg2 == vgen) {
        by = fmt::format(", done by pid {}", d.pid);
        for (size_t i = 0; i < children_.size(); i++) {
          if (children_[i].pid == d.pid) by = fmt::format(", done by worker {}", i + 1);
        }
      }
    }
  }
  if (seen_dead_ms) {
    fmt::print(
        "  {:7.1f} ms after the kill: stat sees slot {} dead (the kernel dropped its lock)\n",
        *seen_dead_ms, vslot);
  }
  fmt::print(
      "  {:7.1f} ms after the kill: the survivors reclaimed slot {} (its cached and private "
      "blocks, its pin, its purgatory{}); stats() polled {} times\n",
      *reclaimed_ms, vslot, by, polls);
  return kExitOk;
}

int Demo::finish(size_t victim) {
  fmt::print("\nwaiting for the survivors to finish ({:.1f} s in all)...\n", args_.seconds);
  std::vector<std::string> failures;
  const uint64_t give_up = deadline_ns_ + kGraceNs;
  for (size_t i = 0; i < children_.size(); i++) {
    while (!try_reap(i, false)) {
      if (util::mono_ns() > give_up) {
        ::kill(children_[i].pid, SIGKILL);
        try_reap(i, true);
        failures.push_back(fmt::format("worker {} did not finish in time (killed)", i + 1));
        break;
      }
      sleep_ns(5000000);
    }
  }
  uint64_t total_reads = 0, total_bytes = 0;
  for (size_t i = 0; i < children_.size(); i++) {
    const WorkerBoard& b = boards_[i];
    const Child& c = children_[i];
    std::string how;
    if (i == victim) {
      how = WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGKILL
                ? "killed by SIGKILL, as planned"
                : describe_status(c.status) + " (expected SIGKILL)";
      if (!(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGKILL)) {
        failures.push_back(fmt::format("worker {}: {}", i + 1, how));
      }
    } else {
      how = describe_status(c.status);
      if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
        failures.push_back(fmt::format("worker {}: {}{}{}", i + 1, how, b.noted.load() ? ": " : "",
                                       b.noted.load() ? b.note : ""));
      }
      total_reads += b.reads.load();
      total_bytes += b.bytes_checked.load();
    }
    fmt::print(
        "  worker {}: {} ops: {} allocs, {} publishes, {} frees, {} reads checked ({}), "
        "{} mismatches; {}\n",
        i + 1, b.ops.load(), b.allocs.load(), b.publishes.load(), b.frees.load(), b.reads.load(),
        human_bytes(b.bytes_checked.load()), b.mismatches.load(), how);
    if (b.full.load() > 0) {
      fmt::print("            ({} allocations met a full store and freed instead)\n",
                 b.full.load());
    }
  }

  // Sessions that exiting workers left parked (purgatory still pinned by a
  // reader then) look dead once their process is gone: reclaim them now.
  auto reaped = store_->reap_dead_sessions();
  if (!reaped.ok()) return report(reaped.error());
  if (*reaped > 0) {
    fmt::print("  reclaimed {} session(s) that exited workers left parked\n", *reaped);
  }
  store_->impl()->drain_parked();  // this process runs no watchdog to do it
  auto st = store_->stats();
  if (!st.ok()) return report(st.error());
  fmt::print(
      "\nstore after the run: file {}, used {}, {} in purgatory, {} dead session(s) "
      "recovered, cycle {}\n",
      human_bytes(st->file_size), human_bytes(st->used_bytes), human_bytes(st->purgatory_bytes),
      st->sessions_recovered, st->current_cycle);
  fmt::print(
      "survivors read and checked {} published blocks ({}) while others replaced and "
      "retired them\n",
      total_reads, human_bytes(total_bytes));

  if (int rc = verify_store(failures); rc != kExitOk) return rc;
  if (!failures.empty()) {
    for (const std::string& f : failures) fmt::print("FAILED: {}\n", f);
    return fail(fmt::format("{} check(s) failed; first: {}", failures.size(), failures.front()));
  }
  fmt::print("allocator phase passed: every surviving worker saw intact data\n");
  return kExitOk;
}

// Verifies the store; a problem goes to `failures`, an error is returned.
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

int Demo::bank_spawn(uint64_t deadline_ns) {
  std::fflush(stdout);
  std::fflush(stderr);
  const size_t workers = bank_children_.size() - 1;
  for (size_t i = 0; i < bank_children_.size(); i++) {
    BankParams p{uint32_t(i + 1), uint32_t(args_.accounts), dir_, deadline_ns};
    pid_t pid = ::fork();
    if (pid < 0) {
      int e = errno;
      kill_all();
      return report(Code::kIo, fmt::format("fork bank process {}: {}", i + 1, std::strerror(e)));
    }
    if (pid == 0) ::_exit(bank_main(p, i == workers, &bank_boards_[i]));
    bank_children_[i].pid = pid;
  }
  const uint64_t t0 = util::mono_ns();
  for (;;) {
    size_t ready = 0;
    for (size_t i = 0; i < bank_children_.size(); i++) {
      if (bank_boards_[i].ready.load(std::memory_order_acquire) != 0) {
        ready++;
      } else if (reap(bank_children_[i], false)) {
        return fail(
            fmt::format("bank process {} ({}) before starting: {}", i + 1,
                        describe_status(bank_children_[i].status),
                        bank_boards_[i].noted.load() ? bank_boards_[i].note : "no message"));
      }
    }
    if (ready == bank_children_.size()) break;
    if (ms_since(t0) > 10000) return fail("bank processes did not start within 10 s");
    sleep_ns(1000000);
  }
  fmt::print("started {} transfer workers and an auditor, each in its own process:\n", workers);
  for (size_t i = 0; i < bank_children_.size(); i++) {
    fmt::print("  {}: pid {}, session slot {} (generation {})\n",
               i == workers ? "auditor " : fmt::format("worker {}", i + 1), bank_children_[i].pid,
               bank_boards_[i].slot.load(), bank_boards_[i].generation.load());
  }
  return kExitOk;
}

int Demo::bank() {
  const uint32_t accounts = uint32_t(args_.accounts);
  const size_t workers = bank_children_.size() - 1;
  fmt::print(
      "\nbank: {} accounts {}..{} of {} each, created in one transaction; for {:.1f} s {} "
      "transfer\nworkers run Session::transact (read two accounts, refuse when the source is "
      "short, write both)\nwhile an auditor sums every account in read-only snapshots; one "
      "worker is SIGKILLed mid-run\n\n",
      accounts, account_key(0, accounts), account_key(accounts - 1, accounts), kOpeningBalance,
      args_.bank_seconds, workers);
  {
    auto s = store_->session();
    if (!s.ok()) return report(s.error());
    auto ts = s->transact([&](Txn& t) -> Status {
      for (uint32_t i = 0; i < accounts; i++) {
        STOA_TRY(t.put(account_key(i, accounts), fmt::format("{}", kOpeningBalance)));
      }
      return {};
    });
    if (!ts.ok()) return report(ts.error());
    Status st = s->close();
    if (!st.ok()) return report(st.error());
  }

  BoardMap& map = bank_map_;
  map.bytes = sizeof(BankBoard) * bank_children_.size();
  map.p = ::mmap(nullptr, map.bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (map.p == MAP_FAILED) {
    return report(Code::kIo, fmt::format("mmap bank boards: {}", std::strerror(errno)));
  }
  bank_boards_ = static_cast<BankBoard*>(map.p);
  for (size_t i = 0; i < bank_children_.size(); i++) new (&bank_boards_[i]) BankBoard();

  const uint64_t start = util::mono_ns();
  const uint64_t deadline = start + uint64_t(args_.bank_seconds * 1e9);
  if (int rc = bank_spawn(deadline); rc != kExitOk) return rc;

  // SIGKILL one transfer worker mid-run and time how soon the survivors
  // reclaim its session (its locks, its snapshot, a half-done commit).
  const size_t victim = workers / 2;
  const uint64_t kill_at = start + uint64_t(std::min(0.7, args_.bank_seconds / 2) * 1e9);
  if (util::mono_ns() < kill_at) sleep_ns(kill_at - util::mono_ns());
  const BankBoard& vb = bank_boards_[victim];
  const uint32_t vslot = vb.slot.load(), vgen = vb.generation.load();
  fmt::print(
      "\nafter {:.1f} s: transfer worker {} (pid {}, slot {}) has committed {} transfers; "
      "sending SIGKILL\n",
      double(util::mono_ns() - start) / 1e9, victim + 1, bank_children_[victim].pid, vslot,
      vb.transfers.load());
  std::fflush(stdout);
  if (::kill(bank_children_[victim].pid, SIGKILL) != 0) {
    return fail(fmt::format("kill transfer worker {}: {}", victim + 1, std::strerror(errno)));
  }
  const uint64_t t0 = util::mono_ns();
  std::optional<double> reclaimed_ms;
  while (util::mono_ns() < deadline) {
    auto st = store_->stats();
    if (!st.ok()) return report(st.error());
    bool there = false;
    for (const SessionInfo& si : st->sessions) there |= si.slot == vslot && si.generation == vgen;
    if (!there) {
      reclaimed_ms = ms_since(t0);
      break;
    }
    sleep_ns(2000000);
  }
  reap(bank_children_[victim], true);
  if (reclaimed_ms) {
    fmt::print(
        "  {:7.1f} ms after the kill: the survivors reclaimed its session (slot {}: its locks, "
        "snapshot and any half-done commit)\n",
        *reclaimed_ms, vslot);
  } else {
    fmt::print("  its session (slot {}) was not reclaimed while the transfers ran\n", vslot);
  }
  fmt::print("\nwaiting for the transfers to end ({:.1f} s in all)...\n", args_.bank_seconds);
  return bank_finish(victim, start, deadline);
}

int Demo::bank_finish(size_t victim, uint64_t bank_start_ns, uint64_t deadline_ns) {
  const uint32_t accounts = uint32_t(args_.accounts);
  const size_t workers = bank_children_.size() - 1;
  const int64_t want = int64_t(accounts) * kOpeningBalance;
  std::vector<std::string> failures;
  const uint64_t give_up = deadline_ns + kGraceNs;
  for (size_t i = 0; i < bank_children_.size(); i++) {
    while (!reap(bank_children_[i], false)) {
      if (util::mono_ns() > give_up) {
        ::kill(bank_children_[i].pid, SIGKILL);
        reap(bank_children_[i], true);
        failures.push_back(fmt::format("bank process {} did not finish in time (killed)", i + 1));
        break;
      }
      sleep_ns(5000000);
    }
  }
  const double secs = double(util::mono_ns() - bank_start_ns) / 1e9;
  uint64_t transfers = 0, declined = 0, conflicts = 0, gave_up = 0, moved = 0;
  for (size_t i = 0; i < bank_children_.size(); i++) {
    const BankBoard& b = bank_boards_[i];
    const Child& c = bank_children_[i];
    const bool killed = WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGKILL;
    std::string how = describe_status(c.status);
    if (i == victim) {
      how = killed ? "killed by SIGKILL, as planned" : how + " (expected SIGKILL)";
      if (!killed) failures.push_back(fmt::format("transfer worker {}: {}", i + 1, how));
    } else if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
      failures.push_back(fmt::format("{} {}: {}{}{}", i == workers ? "auditor" : "transfer worker",
                                     i + 1, how, b.noted.load() ? ": " : "",
                                     b.noted.load() ? b.note : ""));
    }
    if (i == workers) {
      fmt::print("  auditor: {} audits, {} of them wrong (last snapshot ts {}); {}\n",
                 b.audits.load(), b.bad_audits.load(), b.last_snapshot.load(), how);
      if (b.bad_audits.load() > 0 && b.noted.load()) fmt::print("           {}\n", b.note);
      continue;
    }
    transfers += b.transfers.load();
    declined += b.declined.load();
    conflicts += b.conflicts.load();
    gave_up += b.gave_up.load();
    moved += b.moved.load();
    fmt::print(
        "  worker {}: {} transfers committed ({} refused: source short), {} conflicts "
        "retried{}; {}\n",
        i + 1, b.transfers.load(), b.declined.load(), b.conflicts.load(),
        b.gave_up.load() > 0 ? fmt::format(", {} given up", b.gave_up.load()) : "", how);
  }
  const BankBoard& auditor = bank_boards_[workers];
  if (auditor.audits.load() == 0) failures.push_back("the auditor completed no audit");
  if (auditor.bad_audits.load() > 0) {
    failures.push_back(fmt::format("{} audit(s) saw a wrong total; first: {}",
                                   auditor.bad_audits.load(), auditor.note));
  }

  // Whatever the survivors left (parked or dead sessions), then the books.
  auto reaped = store_->reap_dead_sessions();
  if (!reaped.ok()) return report(reaped.error());
  store_->impl()->drain_parked();
  auto s = store_->session();
  if (!s.ok()) return report(s.error());
  auto sum = sum_accounts(*s);
  if (!sum.ok()) return report(sum.error());
  Status st = s->close();
  if (!st.ok()) return report(st.error());

  fmt::print(
      "\ntransfers: {} committed in {:.1f} s ({:.0f}/s), {} moved, {} refused, {} conflicts "
      "retried{}\naudits: {} ({:.0f}/s), every one {}\n",
      transfers, secs, double(transfers) / secs, moved, declined, conflicts,
      gave_up > 0 ? fmt::format(" ({} transfers given up)", gave_up) : "", auditor.audits.load(),
      double(auditor.audits.load()) / secs,
      auditor.bad_audits.load() == 0 ? fmt::format("totalled {}", want) : "NOT balanced");
  const bool books_ok = sum->first == accounts && sum->second == want;
  fmt::print(
      "bank total: {} {} {} {}{}\n", sum->second, sum->second == want ? "==" : "!=", want,
      books_ok ? "ok" : "FAILED",
      sum->first == accounts ? "" : fmt::format(" ({} accounts, want {})", sum->first, accounts));
  if (!books_ok) {
    failures.push_back(
        fmt::format("the final books hold {} accounts totalling {} (want {} totalling {})",
                    sum->first, sum->second, accounts, want));
  }
  if (int rc = verify_store(failures); rc != kExitOk) return rc;
  if (!failures.empty()) {
    for (const std::string& f : failures) fmt::print("FAILED: {}\n", f);
    return fail(fmt::format("{} check(s) failed; first: {}", failures.size(), failures.front()));
  }
  return kExitOk;
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
  auto store = Store::open(dir_, o);
  if (!store.ok()) return report(store.error());
  store_ = std::move(*store);

  // The bulletin: 64 atomic offsets in one published block.
  Offset bulletin = 0;
  {
    auto s = store_->session();
    if (!s.ok()) return report(s.error());
    SessionCore* core = s->core();
    auto off = core->alloc(kBulletinBytes);
    if (!off.ok()) return report(off.error());
    std::memset(core->write_ptr(*off), 0, kBulletinBytes);
    Status st = core->publish(*off);
    if (!st.ok()) return report(st.error());
    bulletin = *off;
    st = s->close();
    if (!st.ok()) return report(st.error());
  }
  fmt::print("stoa demo: store {} (max {}), {} worker processes for {:.1f} s\n", dir_,
             human_bytes(kDemoMaxSize), args_.workers, args_.seconds);
  fmt::print(
      "each worker allocates blocks of 16 B..64 KiB filled with a pattern, publishes some "
      "into a {}-slot shared bulletin\n(block at offset {}), retires the blocks it "
      "replaces, frees others, and checks every block it reads under a pin\n\n",
      kBulletinSlots, bulletin);

  BoardMap& map = boards_map_;
  map.bytes = sizeof(WorkerBoard) * children_.size();
  map.p = ::mmap(nullptr, map.bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (map.p == MAP_FAILED) {
    return report(Code::kIo, fmt::format("mmap worker boards: {}", std::strerror(errno)));
  }
  boards_ = static_cast<WorkerBoard*>(map.p);
  for (size_t i = 0; i < children_.size(); i++) new (&boards_[i]) WorkerBoard();

  start_ns_ = util::mono_ns();
  deadline_ns_ = start_ns_ + uint64_t(args_.seconds * 1e9);
  int rc = spawn(bulletin);
  if (rc == kExitOk) rc = wait_ready();
  const size_t victim = children_.size() / 2;
  if (rc == kExitOk) rc = kill_and_watch(victim);
  if (rc == kExitOk) rc = finish(victim);
  if (rc == kExitOk) rc = bank();
  if (rc == kExitOk) {
    fmt::print(
        "demo passed: the store is sound, every surviving worker saw intact data, and every "
        "bank snapshot balanced\n");
  }
  kill_all();
  store_.reset();
  return rc;
}

}  // namespace

int run_demo(const DemoArgs& args) { return Demo(args).run(); }

}  // namespace stoa::cli
