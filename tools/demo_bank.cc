// tools/demo_bank.cc — the bank phase of `stoa demo`: transactions between
// processes.
//
// K accounts "acct/NNN" start at 1000 each (decimal text), created in one
// transaction. Transfer workers (processes) run Session::transact: read two
// accounts, refuse when the source is short, write both. An auditor process
// sums every account in one read-only transaction, again and again: every
// snapshot must add up to K * 1000, including while a worker is SIGKILLed in
// the middle of its commits (its transaction is wholly there or wholly
// absent, and the survivors are not blocked past the dead-session timeout).
// Each transfer also writes a receipt "receipt/<worker>/<n>" and deletes
// the one kReceiptsKept transfers older, a key space that churns as a
// queue's does: deleted keys leave the index once no snapshot can read
// them. At the end the parent reclaims what the survivors left, sums the
// books once more, checks that most deleted receipts left the index and
// verifies the store.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "demo.h"
#include "stoa/admin.h"

namespace stoa::cli::demo {

// One bank process's counters (transfer workers first, the auditor last), in
// a MAP_SHARED anonymous mapping made before fork.
struct BankBoard : ChildBoard {
  std::atomic<uint64_t> transfers{0};  // committed transfers that moved money
  std::atomic<uint64_t> declined{0};   // committed, but the source was short
  std::atomic<uint64_t> conflicts{0};  // runs of the function that conflicted and ran again
  std::atomic<uint64_t> gave_up{0};    // transact() still conflicting after max_attempts
  std::atomic<uint64_t> moved{0};      // money moved by the committed transfers
  std::atomic<uint64_t> audits{0};     // auditor: snapshots summed
  std::atomic<uint64_t> bad_audits{0};
  std::atomic<uint64_t> last_snapshot{0};
};

namespace {

constexpr int64_t kOpeningBalance = 1000;
constexpr int64_t kMaxTransfer = 200;
constexpr uint64_t kReceiptsKept = 50;  // per worker

std::string receipt_key(uint32_t worker, uint64_t n) {
  return fmt::format("receipt/{}/{:010}", worker, n);
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
  std::mt19937_64 rng(mix64(p.id) ^ uint64_t(::getpid()) ^ mono_ns());
  uint64_t receipts = 0;
  while (mono_ns() < p.deadline_ns) {
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
      STOA_TRY(t.put(kt, fmt::format("{}", bt + amount)));
      STOA_TRY(t.put(receipt_key(p.id, receipts + 1), fmt::format("{} -> {}: {}", kf, kt, amount)));
      if (receipts >= kReceiptsKept)
        STOA_TRY(t.del(receipt_key(p.id, receipts + 1 - kReceiptsKept)));
      return {};
    });
    if (r.ok()) {
      b->conflicts.fetch_add(runs - 1, std::memory_order_relaxed);
      if (short_of_money) {
        b->declined.fetch_add(1, std::memory_order_relaxed);
      } else {
        b->transfers.fetch_add(1, std::memory_order_relaxed);
        receipts++;
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
  } while (mono_ns() < p.deadline_ns);
  return b->bad_audits.load() == 0 ? 0 : 2;
}

std::string bank_process_name(size_t i) { return fmt::format("bank process {}", i + 1); }

int bank_main(const BankParams& p, bool auditor, BankBoard* b) {
  return child_main(p.dir, fmt::format("bank process {}", p.id), b, [&](Session& s) {
    return auditor ? bank_auditor(p, s, b) : bank_worker(p, s, b);
  });
}

}  // namespace

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
  if (int rc = wait_started(
          bank_children_, [&](size_t i) -> ChildBoard& { return bank_boards_[i]; },
          bank_process_name, "bank processes");
      rc != kExitOk) {
    return rc;
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

  auto boards = bank_map_.map<BankBoard>(bank_children_.size(), "bank boards");
  if (!boards.ok()) return report(boards.error());
  bank_boards_ = *boards;

  const uint64_t start = mono_ns();
  const uint64_t deadline = start + uint64_t(args_.bank_seconds * 1e9);
  if (int rc = bank_spawn(deadline); rc != kExitOk) return rc;

  // SIGKILL one transfer worker mid-run and time how soon the survivors
  // reclaim its session (its locks, its snapshot, a half-done commit).
  const size_t victim = workers / 2;
  const uint64_t kill_at = start + uint64_t(std::min(0.7, args_.bank_seconds / 2) * 1e9);
  if (mono_ns() < kill_at) sleep_ns(kill_at - mono_ns());
  const BankBoard& vb = bank_boards_[victim];
  const uint32_t vslot = vb.slot.load(), vgen = vb.generation.load();
  fmt::print(
      "\nafter {:.1f} s: transfer worker {} (pid {}, slot {}) has committed {} transfers; "
      "sending SIGKILL\n",
      double(mono_ns() - start) / 1e9, victim + 1, bank_children_[victim].pid, vslot,
      vb.transfers.load());
  std::fflush(stdout);
  if (::kill(bank_children_[victim].pid, SIGKILL) != 0) {
    return fail(fmt::format("kill transfer worker {}: {}", victim + 1, std::strerror(errno)));
  }
  const uint64_t t0 = mono_ns();
  std::optional<double> reclaimed_ms;
  while (mono_ns() < deadline) {
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
  reap_all(bank_children_, deadline_ns, bank_process_name, failures);
  const double secs = double(mono_ns() - bank_start_ns) / 1e9;
  uint64_t transfers = 0, declined = 0, conflicts = 0, gave_up = 0, moved = 0;
  uint64_t receipts_deleted = 0;  // each worker deletes all but its last kReceiptsKept
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
    receipts_deleted += b.transfers.load() > kReceiptsKept ? b.transfers.load() - kReceiptsKept : 0;
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
  Admin::drain_parked(*store_);
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
  // Receipts: each worker keeps its last kReceiptsKept; the deleted ones
  // leave the index. Not all: the deletes of a worker's last moments, while
  // another process's snapshot could still read them, are noted only in the
  // worker's memory and stay when it exits or is killed (docs/guarantees.md
  // 7.5). The check: at least half of the deleted receipts are gone.
  auto stats = store_->stats();
  if (!stats.ok()) return report(stats.error());
  const bool removed_ok = stats->keys_removed * 2 >= receipts_deleted;
  fmt::print(
      "receipts: {} written, {} deleted; {} deleted keys removed from the index, {} key records "
      "left ({} accounts, {} receipts kept, the rest deleted receipts whose process ended "
      "before it could remove them) {}\n",
      transfers, receipts_deleted, stats->keys_removed, stats->keys, accounts,
      transfers - receipts_deleted, removed_ok ? "ok" : "FAILED");
  if (!removed_ok) {
    failures.push_back(fmt::format("only {} of {} deleted receipts left the index",
                                   stats->keys_removed, receipts_deleted));
  }
  if (int rc = verify_store(failures); rc != kExitOk) return rc;
  return passed(failures);
}

}  // namespace stoa::cli::demo
