// tools/demo_alloc.cc — the allocator phase of `stoa demo`, below the index,
// on raw blocks (Admin::Blocks) and cycle locking.
//
// The parent allocates and publishes a "bulletin" (64 atomic offsets in one
// block), closes its session and forks the workers. Each child opens the
// store anew (a Store must never be used across fork()) and loops until its
// deadline:
//   - alloc a block of 16 B .. 64 KiB and fill it with a pattern derived from
//     (worker, sequence); the first 16 bytes say length, worker and sequence;
//   - publish one of its blocks and swap it into a random bulletin slot with
//     an atomic exchange; the block it replaced is now unreachable, so it is
//     retired (freed once no pinned reader can still see it);
//   - free one of its private blocks (checking its pattern first);
//   - pin, read a random bulletin entry through Blocks::read(), check the
//     whole pattern, unpin.
// The parent keeps its own store open with the watchdog off, so the dead
// worker is reclaimed by the survivors (their watchdogs, or a collect that
// finds the dead pin blocking the cycle); it polls stats() every millisecond
// to time it, and reads the reclaimer's flight recorder to name it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "demo.h"
#include "stoa/admin.h"

namespace stoa::cli::demo {
namespace {

using Offset = uint64_t;

constexpr uint32_t kBulletinSlots = 64;
constexpr uint64_t kBulletinBytes = kBulletinSlots * sizeof(uint64_t);
constexpr uint32_t kMinBlock = 16;
constexpr uint32_t kMaxBlock = 64 << 10;
constexpr size_t kMaxPrivate = 32;          // private blocks a worker keeps at most
constexpr double kReclaimTimeoutMs = 5000;  // the demo fails past this

// First 16 bytes of every demo block.
struct PatternHeader {
  uint32_t len;
  uint32_t worker;
  uint64_t seq;
};
static_assert(sizeof(PatternHeader) == kMinBlock);

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

}  // namespace

// One worker's counters, in a MAP_SHARED anonymous mapping made before fork.
struct WorkerBoard : ChildBoard {
  std::atomic<uint64_t> ops{0};
  std::atomic<uint64_t> allocs{0};
  std::atomic<uint64_t> frees{0};
  std::atomic<uint64_t> publishes{0};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> bytes_checked{0};
  std::atomic<uint64_t> full{0};
  std::atomic<uint64_t> mismatches{0};
  std::atomic<uint64_t> errors{0};
};

namespace {

struct WorkerParams {
  uint32_t id;  // 1-based
  uint32_t workers;
  std::string dir;
  Offset bulletin;
  uint64_t deadline_ns;  // CLOCK_MONOTONIC
};

class Worker {
 public:
  Worker(const WorkerParams& p, Admin::Blocks* blocks, WorkerBoard* board)
      : p_(p), blocks_(blocks), board_(board), rng_(mix64(p.id) ^ uint64_t(::getpid())) {}

  // The loop; false after a mismatch or an unexpected error (noted on the board).
  bool run() {
    auto r = blocks_->read(p_.bulletin, kBulletinBytes);
    if (!r.ok()) return fail("read bulletin", r.error());
    slots_ = reinterpret_cast<std::atomic<uint64_t>*>(blocks_->write_ptr(p_.bulletin));
    bool ok = true;
    while (ok && mono_ns() < p_.deadline_ns) {
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
    auto r = blocks_->alloc(len);
    if (!r.ok()) {
      if (r.code() != Code::kFull) return fail(fmt::format("alloc {}", len), r.error());
      board_->full.fetch_add(1, std::memory_order_relaxed);  // frees make room again
      while (mine_.size() > kMaxPrivate / 2) {
        if (!free_one()) return false;
      }
      return true;
    }
    uint64_t seq = ++seq_;
    fill_pattern(blocks_->write_ptr(*r), len, p_.id, seq);
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
    Status st = blocks_->publish(b.off);
    if (!st.ok()) return fail(fmt::format("publish {}", b.off), st.error());
    uint64_t old = slots_[rng_() % kBulletinSlots].exchange(b.off, std::memory_order_acq_rel);
    board_->publishes.fetch_add(1, std::memory_order_relaxed);
    if (old != 0) {
      // Unlinked by the exchange: readers pinned now may still hold it.
      st = blocks_->retire(old);
      if (!st.ok()) return fail(fmt::format("retire {}", old), st.error());
    }
    return true;
  }

  bool free_one() {
    if (mine_.empty()) return true;
    Block b = take_random();
    auto bad = check_pattern(blocks_->view(b.off), b.len, p_.id, b.seq);
    if (bad) {
      return mismatch(
          fmt::format("own private block at offset {} (len {}, seq {}) differs at "
                      "byte {}",
                      b.off, b.len, b.seq, *bad));
    }
    Status st = blocks_->free(b.off);
    if (!st.ok()) return fail(fmt::format("free {}", b.off), st.error());
    board_->frees.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  bool read_some() {
    Admin::Blocks::Pin pin(*blocks_);
    int n = 1 + int(rng_() % 4);
    for (int k = 0; k < n; k++) {
      uint32_t i = uint32_t(rng_() % kBulletinSlots);
      Offset off = slots_[i].load(std::memory_order_acquire);
      if (off == 0) continue;
      auto hp = blocks_->read(off, sizeof(PatternHeader));
      if (!hp.ok()) return fail(fmt::format("read bulletin[{}] = {}", i, off), hp.error());
      PatternHeader h;
      std::memcpy(&h, *hp, sizeof(h));
      if (h.len < kMinBlock || h.len > kMaxBlock || h.worker == 0 || h.worker > p_.workers) {
        return mismatch(
            fmt::format("bulletin[{}] = offset {}: bad header (len {}, worker {}, "
                        "seq {})",
                        i, off, h.len, h.worker, h.seq));
      }
      auto bp = blocks_->read(off, h.len);
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
  Admin::Blocks* blocks_;
  WorkerBoard* board_;
  std::mt19937_64 rng_;
  std::atomic<uint64_t>* slots_ = nullptr;
  std::vector<Block> mine_;
  uint64_t seq_ = 0;
};

// Runs in the child after fork(); returns its exit status.
int worker_main(const WorkerParams& p, WorkerBoard* board) {
  return child_main(p.dir, fmt::format("worker {}", p.id), board, [&](Session& s) {
    Admin::Blocks blocks(s);
    return Worker(p, &blocks, board).run() ? 0 : 2;
  });
}

}  // namespace

int Demo::alloc_phase() {
  // The bulletin: 64 atomic offsets in one published block.
  Offset bulletin = 0;
  {
    auto s = store_->session();
    if (!s.ok()) return report(s.error());
    Admin::Blocks blocks(*s);
    auto off = blocks.alloc(kBulletinBytes);
    if (!off.ok()) return report(off.error());
    std::memset(blocks.write_ptr(*off), 0, kBulletinBytes);
    Status st = blocks.publish(*off);
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

  auto boards = boards_map_.map<WorkerBoard>(children_.size(), "worker boards");
  if (!boards.ok()) return report(boards.error());
  boards_ = *boards;

  start_ns_ = mono_ns();
  deadline_ns_ = start_ns_ + uint64_t(args_.seconds * 1e9);
  int rc = spawn(bulletin);
  if (rc == kExitOk) {
    rc = wait_started(
        children_, [&](size_t i) -> ChildBoard& { return boards_[i]; },
        [](size_t i) { return fmt::format("worker {}", i + 1); }, "workers");
  }
  if (rc == kExitOk) {
    fmt::print("started {} workers, each in its own process with its own Store::open:\n",
               children_.size());
    for (size_t i = 0; i < children_.size(); i++) {
      fmt::print("  worker {}: pid {}, session slot {} (generation {})\n", i + 1, children_[i].pid,
                 boards_[i].slot.load(), boards_[i].generation.load());
    }
  }
  const size_t victim = children_.size() / 2;
  if (rc == kExitOk) rc = kill_and_watch(victim);
  if (rc == kExitOk) rc = finish(victim);
  return rc;
}

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

int Demo::kill_and_watch(size_t victim) {
  const double kill_after_s = std::min(1.0, args_.seconds / 2);
  const uint64_t kill_at = start_ns_ + uint64_t(kill_after_s * 1e9);
  if (mono_ns() < kill_at) sleep_ns(kill_at - mono_ns());
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
  const uint64_t t0 = mono_ns();
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
  reap(children_[victim], true);
  if (!reclaimed_ms) {
    return fail(fmt::format("slot {} of the killed worker was not reclaimed within {:.0f} ms",
                            vslot, kReclaimTimeoutMs));
  }
  // The reclaimer claims the dead slot and records kRecover in its ring.
  std::string by;
  auto dumps = Admin::recorder(*store_, vslot);
  if (dumps.ok() && !dumps->empty()) {
    const RecorderDump& d = dumps->front();
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
  reap_all(
      children_, deadline_ns_, [](size_t i) { return fmt::format("worker {}", i + 1); }, failures);
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
  Admin::drain_parked(*store_);  // this process runs no watchdog to do it
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
  if (int rc = passed(failures); rc != kExitOk) return rc;
  fmt::print("allocator phase passed: every surviving worker saw intact data\n");
  return kExitOk;
}

}  // namespace stoa::cli::demo
