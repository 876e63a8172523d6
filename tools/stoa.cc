// tools/stoa.cc — the `stoa` command-line tool: argument parsing, dispatch,
// the small commands (init, stat, verify, recorder), the key commands (put,
// get, del, scan, load, dump) and the durability commands (checkpoint,
// backup, compact, recover). The demo lives in tools/demo.cc.
//
// stat, verify and recorder open no session (they only look), so running
// them never adds a slot or a flight-recorder entry. The key commands open
// one session for their transactions and close it before they exit. Every
// command opens the store with the watchdog off: a one-shot tool should not
// reclaim other processes' sessions behind their back (a transaction that
// meets a key locked by a dead committer still recovers it, as any session
// does). Opening a store that nobody else has open still runs the open
// protocol, which repairs what crashed processes left behind; see
// src/store_impl.cc.
//
// get, scan and dump read in one read-only transaction: one consistent
// snapshot, never aborted, never blocking writers. put and del run in
// Session::transact (retried on conflict); load commits in batches (or in
// one transaction with --atomic). put, del and load take --durability
// (sync: each commit is on disk before the command goes on; group, the
// default: a flusher syncs within Options::group_window; none: OS
// write-back only).
//
// The durability commands:
//  - checkpoint DIR: Store::checkpoint, online; the log before it is dropped.
//  - backup DIR DEST: Store::backup, online (like mdb_copy): one snapshot
//    written as a checkpoint into the new directory DEST, which opens as a
//    store (the first open loads it). Others may go on reading and writing.
//  - compact DIR: Store::compact, offline (kBusy while any other process
//    has the store open): the data file is rebuilt from a fresh checkpoint,
//    so it holds live data only; prints its size before and after.
//  - recover DIR [--rebuild]: Store::recover, offline; prints what the open
//    found and did (every RecoveryReport field). With --rebuild the data
//    file is rebuilt from the checkpoint and the log. When the data file
//    was trusted nothing read the log, so recover then checks the last
//    checkpoint and the log after it (what verify checks of them) and exits
//    2 naming the damaged file. --rebuild makes that check first and
//    refuses on damage, leaving the store exactly as it was: a rebuild
//    that meets the damage has already put the data file aside and used up
//    its clean-shutdown checksums (--force skips the check).
//    Exit 2 on damage (kCorrupt), 1 on other failures (kBusy included).
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "log/checkpoint.h"
#include "stoa/options.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "util/clock.h"

namespace stoa::cli {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

int report(const Error& error, int exit_code) {
  std::fflush(stdout);
  fmt::print(stderr, "stoa: {}: {}\n", code_name(error.code()), error.message());
  return exit_code;
}

int report(Code code, const std::string& message, int exit_code) {
  return report(Error(code, message), exit_code);
}

std::string human_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

void escape_append(std::string& out, std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : bytes) {
    const auto u = uint8_t(c);
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          out += "\\x";
          out += kHex[u >> 4];
          out += kHex[u & 15];
        } else {
          out += c;
        }
    }
  }
}

std::string escape_field(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  escape_append(out, bytes);
  return out;
}

Result<std::string> unescape_field(std::string_view text, size_t first_column) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] != '\\') {
      out += text[i];
      continue;
    }
    if (i + 1 == text.size()) {
      return Error(Code::kInvalidArgument,
                   fmt::format("column {}: a lone backslash at the end of a field (write \\\\)",
                               first_column + i));
    }
    switch (text[i + 1]) {
      case '\\':
        out += '\\';
        break;
      case 't':
        out += '\t';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 'x': {
        int hi = i + 2 < text.size() ? hex(text[i + 2]) : -1;
        int lo = i + 3 < text.size() ? hex(text[i + 3]) : -1;
        if (hi < 0 || lo < 0) {
          return Error(Code::kInvalidArgument,
                       fmt::format("column {}: \\x needs two hex digits", first_column + i));
        }
        out += char(hi << 4 | lo);
        i += 2;
        break;
      }
      default:
        return Error(
            Code::kInvalidArgument,
            fmt::format("column {}: unknown escape \"\\{}\" (known: \\\\ \\t \\n \\r \\xHH)",
                        first_column + i, escape_field(text.substr(i + 1, 1))));
    }
    i++;
  }
  return out;
}

namespace {

// Opens an existing store to look at it: no creation, no watchdog. Commits
// of its sessions promise `durability`.
Result<std::unique_ptr<Store>> open_existing(const std::string& dir,
                                             Durability durability = Durability::kGroup) {
  Options o;
  o.create_if_missing = false;
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.durability = durability;
  return Store::open(dir, o);
}

// recover: damage (kCorrupt) is exit 2, any other failure exit 1.
int report_damage(const Error& error) {
  return report(error, error.code() == Code::kCorrupt ? kExitProblems : kExitError);
}

// "1.5 MiB (1572864 bytes)".
std::string sized(uint64_t b) { return fmt::format("{} ({} bytes)", human_bytes(b), b); }

// CLOCK_REALTIME nanoseconds as "2024-05-01T12:34:56.789Z".
std::string iso_time(uint64_t ns) {
  time_t secs = time_t(ns / 1000000000);
  struct tm tm {};
  if (ns == 0 || gmtime_r(&secs, &tm) == nullptr) return "-";
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (ns / 1000000) % 1000);
}

// --- init ------------------------------------------------------------------

int cmd_init(const std::string& dir, std::optional<uint64_t> max_size,
             std::optional<uint32_t> sessions) {
  Options o;
  o.error_if_exists = true;
  o.watchdog_interval = std::chrono::milliseconds(0);
  if (max_size) o.max_size = *max_size;
  if (sessions) o.max_sessions = *sessions;
  if (o.initial_size > o.max_size) o.initial_size = o.max_size;
  auto store = Store::open(dir, o);
  if (!store.ok()) return report(store.error());
  auto st = (*store)->stats();
  if (!st.ok()) return report(st.error());
  fmt::print("created store {}: file {} ({} bytes), max size {} ({} bytes), {} session slots\n",
             dir, human_bytes(st->file_size), st->file_size, human_bytes(st->max_size),
             st->max_size, st->max_sessions);
  return kExitOk;
}

// --- stat ------------------------------------------------------------------

Json session_json(const SessionInfo& s) {
  return Json{{"slot", s.slot},
              {"generation", s.generation},
              {"pid", s.pid},
              {"tid", s.tid},
              {"state", s.state},
              {"pinned_cycle", s.pinned_cycle},
              {"pin_age_seconds", s.pin_age_seconds},
              {"stalled", s.stalled},
              {"purgatory_bytes", s.purgatory_bytes},
              {"private_bytes", s.allocated_bytes},
              {"snapshot", s.snapshot}};
}

Json stats_json(const StoreStats& s) {
  Json j{{"path", s.path},
         {"file_size", s.file_size},
         {"max_size", s.max_size},
         {"used_bytes", s.used_bytes},
         {"free_page_bytes", s.free_page_bytes},
         {"free_block_bytes", s.free_block_bytes},
         {"max_sessions", s.max_sessions},
         {"current_cycle", s.current_cycle},
         {"purgatory_bytes", s.purgatory_bytes},
         {"purgatory_objects", s.purgatory_objects},
         {"sessions_recovered", s.sessions_recovered},
         {"recovery", Json{{"rolled_forward", s.recovery.rolled_forward},
                           {"undone", s.recovery.undone},
                           {"log_settled", s.recovery.log_settled},
                           {"nodes_unfrozen", s.recovery.nodes_unfrozen},
                           {"heap_repaired", s.recovery.heap_repaired},
                           {"heap_rebuilt", s.recovery.heap_rebuilt}}},
         {"keys", s.keys},
         {"last_commit_ts", s.last_commit_ts},
         {"visible_ts", s.visible_ts},
         {"durable_ts", s.durable_ts},
         {"checkpoint_ts", s.checkpoint_ts},
         {"log_bytes", s.log_bytes},
         {"log_failed", s.log_failed.empty() ? Json(nullptr) : Json(s.log_failed)}};
  if (s.oldest_snapshot) {
    const SessionInfo& o = *s.oldest_snapshot;
    j["oldest_snapshot"] = Json{{"slot", o.slot},
                                {"pid", o.pid},
                                {"snapshot", o.snapshot},
                                {"behind", s.visible_ts - std::min(s.visible_ts, o.snapshot)}};
  } else {
    j["oldest_snapshot"] = nullptr;
  }
  if (s.oldest_pin) {
    const SessionInfo& p = *s.oldest_pin;
    j["oldest_pin"] = Json{{"slot", p.slot},
                           {"pid", p.pid},
                           {"pinned_cycle", p.pinned_cycle},
                           {"age_seconds", p.pin_age_seconds},
                           {"stalled", p.stalled},
                           {"purgatory_bytes", p.purgatory_bytes}};
  } else {
    j["oldest_pin"] = nullptr;
  }
  Json sessions = Json::array();
  for (const SessionInfo& si : s.sessions) sessions.push_back(session_json(si));
  j["sessions"] = std::move(sessions);
  return j;
}

void print_stats(const StoreStats& s) {
  fmt::print("store          {}\n", s.path);
  fmt::print("file size      {}\n", sized(s.file_size));
  fmt::print("max size       {}\n", sized(s.max_size));
  fmt::print("used           {}\n", sized(s.used_bytes));
  fmt::print("free           {} in page runs, {} in block free lists\n", sized(s.free_page_bytes),
             sized(s.free_block_bytes));
  fmt::print("current cycle  {}\n", s.current_cycle);
  fmt::print("purgatory      {} in {} objects\n", sized(s.purgatory_bytes), s.purgatory_objects);
  fmt::print("recovered      {} dead sessions reclaimed since the lock file was made\n",
             s.sessions_recovered);
  const RecoveryCounts& rc = s.recovery;
  fmt::print(
      "  branches     {} rolled forward, {} undone, {} log ranges settled, {} frozen nodes "
      "replaced, {} heap lists repaired, {} heap rebuilds\n",
      rc.rolled_forward, rc.undone, rc.log_settled, rc.nodes_unfrozen, rc.heap_repaired,
      rc.heap_rebuilt);
  fmt::print("keys           {} (last commit ts {}, visible up to ts {})\n", s.keys,
             s.last_commit_ts, s.visible_ts);
  fmt::print("durable        up to ts {}{}\n", s.durable_ts,
             s.durable_ts >= s.last_commit_ts
                 ? " (every commit)"
                 : fmt::format(" ({} log bytes not yet synced)", s.last_commit_ts - s.durable_ts));
  if (s.checkpoint_ts != 0) {
    fmt::print("checkpoint     ts {}, {} of log since\n", s.checkpoint_ts, sized(s.log_bytes));
  } else {
    fmt::print("checkpoint     none yet, {} of log\n", sized(s.log_bytes));
  }
  if (!s.log_failed.empty()) {
    fmt::print("LOG FAILED     {} (no commit is accepted until the next lone open repairs it)\n",
               s.log_failed);
  }
  if (s.oldest_snapshot) {
    const SessionInfo& o = *s.oldest_snapshot;
    fmt::print("oldest snapshot session {} (pid {}) reads ts {}, {} commits behind\n", o.slot,
               o.pid, o.snapshot, s.visible_ts - std::min(s.visible_ts, o.snapshot));
  } else {
    fmt::print("oldest snapshot none\n");
  }
  if (s.oldest_pin) {
    const SessionInfo& p = *s.oldest_pin;
    fmt::print(
        "oldest pin     session {} (pid {}) pinned cycle {} for {:.3f} s{}, its purgatory {}\n",
        p.slot, p.pid, p.pinned_cycle, p.pin_age_seconds, p.stalled ? " (STALLED)" : "",
        human_bytes(p.purgatory_bytes));
  } else {
    fmt::print("oldest pin     none\n");
  }
  fmt::print("sessions       {} of {} slots in use\n", s.sessions.size(), s.max_sessions);
  if (s.sessions.empty()) return;
  fmt::print("  {:>5} {:>5} {:>8} {:<10} {:>8} {:>10} {:>7} {:>12} {:>12}\n", "slot", "gen", "pid",
             "state", "pinned", "pin age", "stalled", "purgatory", "private");
  for (const SessionInfo& si : s.sessions) {
    std::string pinned = si.pinned_cycle != 0 ? fmt::format("{}", si.pinned_cycle) : "-";
    std::string age = si.pinned_cycle != 0 ? fmt::format("{:.3f} s", si.pin_age_seconds) : "-";
    fmt::print("  {:>5} {:>5} {:>8} {:<10} {:>8} {:>10} {:>7} {:>12} {:>12}\n", si.slot,
               si.generation, si.pid, si.state, pinned, age, si.stalled ? "yes" : "no",
               human_bytes(si.purgatory_bytes), human_bytes(si.allocated_bytes));
  }
}

int cmd_stat(const std::string& dir, bool json) {
  auto store = open_existing(dir);
  if (!store.ok()) return report(store.error());
  auto st = (*store)->stats();
  if (!st.ok()) return report(st.error());
  if (json) {
    fmt::print("{}\n", stats_json(*st).dump(2));
  } else {
    print_stats(*st);
  }
  return kExitOk;
}

// --- verify ----------------------------------------------------------------

int cmd_verify(const std::string& dir) {
  auto store = open_existing(dir);
  if (!store.ok()) return report(store.error());
  auto rep = (*store)->verify();
  if (!rep.ok()) return report(rep.error());
  const VerifyReport& r = *rep;
  fmt::print("verify {}: {}\n", dir,
             r.sound() ? "sound" : fmt::format("{} problem(s) found", r.problems.size()));
  fmt::print("  exclusive      {}\n",
             r.exclusive ? "yes (no other process had the store open: full check)"
                         : "no (other processes have the store open: partial check)");
  fmt::print("  page runs      {} ({} slabs, {} large, {} free)\n", r.runs, r.slabs, r.large_runs,
             r.free_runs);
  fmt::print("  blocks         {} checked: {} live, {} free, {} cached, {} retired\n",
             r.blocks_checked, r.blocks_live, r.blocks_free, r.blocks_cached, r.blocks_retired);
  if (r.index_checked) {
    fmt::print("  index          {} keys walked: order, separators, records and versions\n",
               r.keys);
  } else {
    fmt::print("  index          not walked (no free session slot to pin with)\n");
  }
  if (r.log_checked) {
    // Which checkpoint: stats knows (0: none yet, the log from its start).
    auto st = (*store)->stats();
    const uint64_t ckpt_ts = st.ok() ? st->checkpoint_ts : 0;
    if (ckpt_ts != 0) {
      fmt::print("  checkpoint     ts {}: {} keys checked\n", ckpt_ts, r.checkpoint_keys);
    } else {
      fmt::print("  checkpoint     none yet\n");
    }
    fmt::print("  log            {} commit records checked {}\n", r.log_records,
               ckpt_ts != 0 ? "after the checkpoint" : "from the start of the log");
  } else {
    fmt::print("  log            not checked\n");
  }
  for (const std::string& p : r.problems) fmt::print("  problem: {}\n", p);
  if (!r.sound()) {
    return report(Code::kCorrupt,
                  fmt::format("{}: verify found {} problem(s); first: {}", dir, r.problems.size(),
                              r.problems.front()),
                  kExitProblems);
  }
  return kExitOk;
}

// --- recorder --------------------------------------------------------------

int cmd_recorder(const std::string& dir, std::optional<uint32_t> slot, bool json) {
  auto store = open_existing(dir);
  if (!store.ok()) return report(store.error());
  auto dumps = (*store)->impl()->recorder(slot);
  if (!dumps.ok()) return report(dumps.error());
  if (json) {
    Json out = Json::array();
    for (const internal::RecorderDump& d : *dumps) {
      Json entries = Json::array();
      for (const auto& e : d.entries) {
        entries.push_back(Json{{"time_ns", e.time_ns},
                               {"time", iso_time(e.time_ns)},
                               {"kind", e.kind},
                               {"result", e.result},
                               {"generation", e.generation},
                               {"arg", e.arg},
                               {"arg2", e.arg2}});
      }
      out.push_back(Json{{"slot", d.slot},
                         {"generation", d.generation},
                         {"pid", d.pid},
                         {"state", d.state},
                         {"entries", std::move(entries)}});
    }
    fmt::print("{}\n", out.dump(2));
    return kExitOk;
  }
  if (dumps->empty()) {
    fmt::print("{}: no flight-recorder entries (no session has used this store)\n", dir);
    return kExitOk;
  }
  bool first = true;
  for (const internal::RecorderDump& d : *dumps) {
    if (!first) fmt::print("\n");
    first = false;
    fmt::print("slot {}  generation {}  pid {}  state {}  ({} entries, oldest first)\n", d.slot,
               d.generation, d.pid, d.state, d.entries.size());
    for (const auto& e : d.entries) {
      // An entry written by an earlier owner of the slot shows its generation.
      std::string gen = e.generation != d.generation ? fmt::format("  gen {}", e.generation) : "";
      fmt::print("  {}  {:<8} {:<8} arg {:<12} arg2 {}{}\n", iso_time(e.time_ns), e.kind, e.result,
                 e.arg, e.arg2, gen);
    }
  }
  return kExitOk;
}

// --- durability: checkpoint, backup, compact, recover ------------------------

// The size of DIR/stoa.data, if it can be stat'ed.
std::optional<uint64_t> data_file_size(const std::string& dir) {
  struct stat st {};
  const std::string data = dir + "/" + internal::kDataFileName;
  if (::stat(data.c_str(), &st) != 0) return std::nullopt;
  return uint64_t(st.st_size);
}

// Regular files under `dir` and their total size.
std::pair<uint64_t, uint64_t> tree_size(const std::string& dir) {
  uint64_t files = 0, bytes = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code e2;
    if (!it->is_regular_file(e2)) continue;
    const uintmax_t n = it->file_size(e2);
    if (e2) continue;
    files++;
    bytes += uint64_t(n);
  }
  return {files, bytes};
}

int cmd_checkpoint(const std::string& dir) {
  auto store = open_existing(dir);
  if (!store.ok()) return report(store.error());
  auto before = (*store)->stats();
  if (!before.ok()) return report(before.error());
  const uint64_t t0 = util::mono_ns();
  auto ts = (*store)->checkpoint();
  if (!ts.ok()) return report(ts.error());
  const double secs = double(util::mono_ns() - t0) / 1e9;
  if (before->checkpoint_ts != 0 && *ts == before->checkpoint_ts) {
    fmt::print("checkpoint of {}: no commit since the last checkpoint at ts {}; nothing written\n",
               dir, *ts);
    return kExitOk;
  }
  const std::string file = dir + "/" + internal::kLogDirName + "/" + internal::checkpoint_name(*ts);
  std::error_code ec;
  const uintmax_t bytes = fs::file_size(file, ec);
  fmt::print("checkpoint of {} at ts {}: holds every commit up to it\n", dir, *ts);
  fmt::print("  file           {}{}\n", file, ec ? "" : fmt::format(", {}", sized(bytes)));
  fmt::print("  log dropped    {} written before it\n",
             sized(*ts - std::min(*ts, before->checkpoint_ts)));
  fmt::print("  took           {:.3f} s\n", secs);
  return kExitOk;
}

int cmd_backup(const std::string& dir, const std::string& dest) {
  // Refuse before touching the store: a backup writes a new directory.
  std::error_code ec;
  const bool existed = fs::exists(dest, ec);
  if (existed && (!fs::is_directory(dest, ec) || !fs::is_empty(dest, ec))) {
    return report(Code::kExists,
                  fmt::format("{}: exists and is not an empty directory (backup writes a new "
                              "directory: remove it or name another)",
                              dest));
  }
  auto store = open_existing(dir);
  if (!store.ok()) return report(store.error());
  const uint64_t t0 = util::mono_ns();
  auto ts = (*store)->backup(dest);
  if (!ts.ok()) {
    std::string removed;
    if (ts.code() != Code::kExists) {
      // What a failed backup left is no copy; DEST was absent or empty before.
      if (!existed && fs::exists(dest, ec)) {
        fs::remove_all(dest, ec);
        removed = fmt::format(" ({} was removed)", dest);
      } else if (existed) {
        for (const auto& e : fs::directory_iterator(dest, ec)) fs::remove_all(e.path(), ec);
        removed = fmt::format(" (what it wrote in {} was removed)", dest);
      }
    }
    return report(ts.code(), fmt::format("backup of {} to {} failed: {}{}", dir, dest,
                                         ts.error().message(), removed));
  }
  const double secs = double(util::mono_ns() - t0) / 1e9;
  const auto [files, bytes] = tree_size(dest);
  fmt::print("backup of {} written to {}: a consistent copy of every commit up to ts {}\n", dir,
             dest, *ts);
  fmt::print(
      "  {} in {} file{}, {:.3f} s; open {} as a store to use it (its first open loads the "
      "copy)\n",
      sized(bytes), files, files == 1 ? "" : "s", secs, dest);
  return kExitOk;
}

Json recovery_json(const RecoveryReport& r) {
  return Json{{"rebuilt", r.rebuilt},
              {"reason", r.reason},
              {"checkpoint_ts", r.checkpoint_ts},
              {"checkpoint_keys", r.checkpoint_keys},
              {"log_records", r.log_records},
              {"log_bytes", r.log_bytes},
              {"end_ts", r.end_ts},
              {"truncated_bytes", r.truncated_bytes},
              {"sessions_recovered", r.sessions_recovered},
              {"seconds", r.seconds}};
}

// Every field of a RecoveryReport, in words.
void print_recovery(const RecoveryReport& r) {
  fmt::print("  rebuilt        {}\n",
             r.rebuilt ? "yes: the data file was rebuilt from the checkpoint and the log"
                       : "no: the data file was kept as it was");
  fmt::print("  reason         {}\n", r.reason.empty() ? "-" : r.reason);
  if (!r.rebuilt) {
    fmt::print("  checkpoint     not loaded (the data file was trusted)\n");
    fmt::print("  log replayed   none (the data file was trusted)\n");
  } else {
    if (r.checkpoint_ts != 0) {
      fmt::print("  checkpoint     ts {}, {} keys loaded\n", r.checkpoint_ts, r.checkpoint_keys);
    } else {
      fmt::print("  checkpoint     none: the log was replayed from its start\n");
    }
    fmt::print("  log replayed   {} commit record{}, {}\n", r.log_records,
               r.log_records == 1 ? "" : "s", sized(r.log_bytes));
  }
  fmt::print("  end ts         {} (the last commit kept)\n", r.end_ts);
  if (r.truncated_bytes != 0) {
    fmt::print("  torn tail      {} discarded (written after the last sync)\n",
               sized(r.truncated_bytes));
  } else {
    fmt::print("  torn tail      none\n");
  }
  fmt::print("  sessions       {} dead session{} recovered (their commits finished or undone)\n",
             r.sessions_recovered, r.sessions_recovered == 1 ? "" : "s");
  if (r.rebuilt) {
    fmt::print("  took           {:.3f} s to rebuild\n", r.seconds);
  } else {
    fmt::print("  took           - (nothing rebuilt)\n");
  }
}

std::string busy_message(const std::string& dir, const std::string& what) {
  return fmt::format(
      "{}: other processes have the store open; {} needs it to itself (stop them, "
      "then run it again)",
      dir, what);
}

int cmd_compact(const std::string& dir, bool json) {
  const std::optional<uint64_t> before = data_file_size(dir);
  auto rep = Store::compact(dir);
  if (!rep.ok()) {
    if (rep.code() == Code::kBusy) return report(Code::kBusy, busy_message(dir, "compact"));
    return report_damage(rep.error());
  }
  const std::optional<uint64_t> after = data_file_size(dir);
  if (json) {
    Json j{{"path", dir},
           {"data_bytes_before", before ? Json(*before) : Json(nullptr)},
           {"data_bytes_after", after ? Json(*after) : Json(nullptr)},
           {"report", recovery_json(*rep)}};
    fmt::print("{}\n", j.dump(2));
    return kExitOk;
  }
  auto show = [](const std::optional<uint64_t>& b) { return b ? sized(*b) : std::string("-"); };
  std::string change;
  if (before && after && *after <= *before) {
    change = fmt::format(": {} smaller ({:.0f}%)", human_bytes(*before - *after),
                         *before != 0 ? 100.0 * double(*before - *after) / double(*before) : 0.0);
  } else if (before && after) {
    change = fmt::format(": {} larger", human_bytes(*after - *before));
  }
  fmt::print("compacted {}: data file {} -> {}{}\n", dir, show(before), show(after), change);
  print_recovery(*rep);
  return kExitOk;
}

// What recover found when it read the last checkpoint and the log after it
// (the checks verify makes of them).
struct LogCheck {
  uint64_t checkpoint_ts = 0;  // 0: no checkpoint yet, the log was read from its start
  uint64_t records = 0;
  uint64_t checkpoint_keys = 0;
  std::vector<std::string> problems;
};

// Opens the store alone (kBusy otherwise), then checks its checkpoint and
// log. Also returns what the open itself did.
Result<std::pair<RecoveryReport, LogCheck>> open_and_check_log(const std::string& dir) {
  STOA_ASSIGN(auto store, open_existing(dir));
  if (!store->impl()->opened_alone()) return Error(Code::kBusy, busy_message(dir, "recover"));
  LogCheck c;
  store->impl()->log().verify(&c.records, &c.checkpoint_keys, &c.problems);
  if (auto st = store->stats(); st.ok()) c.checkpoint_ts = st->checkpoint_ts;
  return std::pair<RecoveryReport, LogCheck>{store->recovery(), std::move(c)};
}

// Prints the report (and the log check, when there was one); exit 2 when
// the log check found damage.
int print_recover(const std::string& dir, const RecoveryReport& r, const LogCheck* check,
                  bool json) {
  if (json) {
    Json j = recovery_json(r);
    j["path"] = dir;
    if (check != nullptr) {
      j["log_check"] = Json{{"checkpoint_ts", check->checkpoint_ts},
                            {"checkpoint_keys", check->checkpoint_keys},
                            {"records", check->records},
                            {"problems", check->problems}};
    } else {
      j["log_check"] = nullptr;  // the rebuild read it all
    }
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("recover {}: {}\n", dir,
               r.rebuilt ? "rebuilt the data file from the checkpoint and the log"
                         : "the data file was intact and kept");
    print_recovery(r);
    if (check == nullptr) {
      fmt::print("  log check      read in full by the rebuild\n");
    } else if (check->problems.empty() && check->checkpoint_ts != 0) {
      fmt::print(
          "  log check      the checkpoint at ts {} ({} keys) and {} commit record{} after "
          "it check out\n",
          check->checkpoint_ts, check->checkpoint_keys, check->records,
          check->records == 1 ? "" : "s");
    } else if (check->problems.empty()) {
      fmt::print(
          "  log check      no checkpoint yet; {} commit record{} from the start of the "
          "log check out\n",
          check->records, check->records == 1 ? "" : "s");
    } else {
      for (const std::string& p : check->problems) fmt::print("  problem: {}\n", p);
    }
  }
  if (check == nullptr || check->problems.empty()) return kExitOk;
  return report(Code::kCorrupt,
                fmt::format("{}; the data file is intact and was kept, but a rebuild (after a "
                            "power loss, or --rebuild) would fail here: \"stoa checkpoint {}\" "
                            "writes a fresh checkpoint from the data file, after which the damaged "
                            "part is not needed",
                            check->problems.front(), dir),
                kExitProblems);
}

// A library rebuild sets the data file aside (and drops stoa.sum) before it
// reads the log, so it should not start on a damaged log. Hence: without
// --force, first open the store alone. If that open rebuilt the data file
// (it could not be trusted), that is the rebuild asked for; otherwise a
// damaged checkpoint or log stops the rebuild (exit 2, the store untouched).
int cmd_recover(const std::string& dir, bool rebuild, bool force, bool json) {
  auto failed = [&](const Error& e) {
    if (e.code() == Code::kBusy) return report(Code::kBusy, busy_message(dir, "recover"));
    return report_damage(e);
  };
  uint32_t pre_sessions = 0;  // dead sessions the first open recovered
  if (rebuild && !force) {
    auto pre = open_and_check_log(dir);
    if (!pre.ok()) return failed(pre.error());
    if (pre->first.rebuilt) return print_recover(dir, pre->first, nullptr, json);
    pre_sessions = pre->first.sessions_recovered;
    const LogCheck& c = pre->second;
    if (!c.problems.empty()) {
      if (!json) {
        for (const std::string& p : c.problems) fmt::print("  problem: {}\n", p);
      }
      return report(Code::kCorrupt,
                    fmt::format("{}; not rebuilding: the data file would be replaced by what the "
                                "damaged log holds, so it was left as it is (--force rebuilds "
                                "anyway; \"stoa checkpoint {}\" writes a fresh checkpoint from "
                                "the data file, after which the damaged part is not needed)",
                                c.problems.front(), dir),
                    kExitProblems);
    }
  }
  auto rep = Store::recover(dir, rebuild);
  if (!rep.ok()) return failed(rep.error());
  rep->sessions_recovered += pre_sessions;
  if (rep->rebuilt) return print_recover(dir, *rep, nullptr, json);
  // The data file was trusted, so nothing read the log: check it now.
  auto post = open_and_check_log(dir);
  if (!post.ok()) return failed(post.error());
  return print_recover(dir, *rep, &post->second, json);
}

// --- key commands: put, get, del, scan, dump, load -------------------------

// An existing store and one session on it. The session closes before the
// store (members are destroyed in reverse order).
struct Opened {
  std::unique_ptr<Store> store;
  Session session;
};

Result<Opened> open_session(const std::string& dir, Durability durability = Durability::kGroup) {
  STOA_ASSIGN(auto store, open_existing(dir, durability));
  STOA_ASSIGN(Session session, store->session());
  return Opened{std::move(store), std::move(session)};
}

Error os_error(int err, const std::string& what) {
  Code code = Code::kIo;
  if (err == ENOENT) code = Code::kNotFound;
  if (err == EACCES || err == EPERM) code = Code::kPermission;
  return Error(code, fmt::format("{}: {}", what, std::strerror(err)));
}

// Everything readable from fd, to its end.
Result<std::string> read_all(int fd, const std::string& what) {
  std::string data;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    data.reserve(size_t(st.st_size));
  }
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error(errno, "read " + what);
    if (n == 0) return data;
    data.append(buf, size_t(n));
  }
}

// Buffered stdout that reports a failed write (a full disk, a closed pipe
// when SIGPIPE is ignored) instead of losing it.
class Out {
 public:
  ~Out() { (void)flush(); }
  std::string& buf() { return buf_; }
  Status maybe_flush() { return buf_.size() >= (1u << 20) ? flush() : Status{}; }
  Status write(const char* p, size_t n) {
    STOA_TRY(flush());
    return put(p, n);
  }
  Status flush() {
    if (buf_.empty()) return {};
    Status st = put(buf_.data(), buf_.size());
    buf_.clear();
    return st;
  }

 private:
  static Status put(const char* p, size_t n) {
    if (n > 0 && std::fwrite(p, 1, n, stdout) != n) return os_error(errno, "write to stdout");
    if (std::fflush(stdout) != 0) return os_error(errno, "write to stdout");
    return {};
  }
  std::string buf_;
};

void append_line(std::string& out, std::string_view key, std::string_view value) {
  escape_append(out, key);
  out += '\t';
  escape_append(out, value);
  out += '\n';
}

struct PutArgs {
  std::string key;
  std::optional<std::string> value;
  std::optional<std::string> file;
  bool verbose = false;
  Durability durability = Durability::kGroup;
};

int cmd_put(const std::string& dir, const PutArgs& a) {
  std::string value;
  if (a.value) {
    value = *a.value;
  } else if (a.file) {
    int fd = ::open(a.file->c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return report(os_error(errno, "open " + *a.file));
    auto data = read_all(fd, *a.file);
    ::close(fd);
    if (!data.ok()) return report(data.error());
    value = std::move(*data);
  } else {
    if (::isatty(0))
      fmt::print(stderr, "stoa: reading the value from the terminal; end it with Ctrl-D\n");
    auto data = read_all(0, "stdin");
    if (!data.ok()) return report(data.error());
    value = std::move(*data);
  }
  auto o = open_session(dir, a.durability);
  if (!o.ok()) return report(o.error());
  auto ts = o->session.transact([&](Txn& t) { return t.put(a.key, value); });
  if (!ts.ok()) return report(ts.error());
  if (Status st = o->session.close(); !st.ok()) return report(st.error());
  if (a.verbose) fmt::print("committed at ts {}\n", *ts);
  return kExitOk;
}

int cmd_get(const std::string& dir, const std::string& key) {
  auto o = open_session(dir);
  if (!o.ok()) return report(o.error());
  auto t = o->session.begin(TxnOptions{.read_only = true});
  if (!t.ok()) return report(t.error());
  auto v = t->get(key);
  if (!v.ok()) {
    if (v.code() == Code::kNotFound) {
      return report(Code::kNotFound, fmt::format("{} (no such key in {})", escape_field(key), dir));
    }
    return report(v.error());
  }
  // The bytes straight from the mapping: the View stays valid until commit.
  Out out;
  if (Status st = out.write(v->data(), v->size()); !st.ok()) return report(st.error());
  (void)t->commit();
  if (Status st = o->session.close(); !st.ok()) return report(st.error());
  return kExitOk;
}

int cmd_del(const std::string& dir, const std::string& key, bool verbose, Durability durability) {
  auto o = open_session(dir, durability);
  if (!o.ok()) return report(o.error());
  bool existed = false;
  // Deleting an absent key writes nothing (no tombstone for a key that
  // never was); the read makes the answer part of the serializable history.
  auto ts = o->session.transact([&](Txn& t) -> Status {
    auto v = t.get(key);
    existed = v.ok();
    if (!v.ok()) return v.code() == Code::kNotFound ? Status{} : Status(std::move(v).error());
    return t.del(key);
  });
  if (!ts.ok()) return report(ts.error());
  if (Status st = o->session.close(); !st.ok()) return report(st.error());
  if (verbose) {
    if (existed) {
      fmt::print("deleted at ts {}\n", *ts);
    } else {
      fmt::print("{} was absent: nothing to delete\n", escape_field(key));
    }
  }
  return kExitOk;
}

// Prints the keys starting with `prefix` from one read-only snapshot.
int print_keys(const std::string& dir, const std::string& prefix, bool reverse,
               std::optional<uint64_t> limit) {
  auto o = open_session(dir);
  if (!o.ok()) return report(o.error());
  auto t = o->session.begin(TxnOptions{.read_only = true});
  if (!t.ok()) return report(t.error());
  auto c = t->prefix(prefix, reverse ? ScanOrder::kReverse : ScanOrder::kForward);
  if (!c.ok()) return report(c.error());
  Out out;
  for (uint64_t n = 0; c->valid() && (!limit || n < *limit); n++) {
    append_line(out.buf(), c->key(), c->value().str());
    if (Status st = out.maybe_flush(); !st.ok()) return report(st.error());
    if (Status st = c->next(); !st.ok()) return report(st.error());
  }
  if (Status st = out.flush(); !st.ok()) return report(st.error());
  (void)t->commit();
  if (Status st = o->session.close(); !st.ok()) return report(st.error());
  return kExitOk;
}

// Lines of a file descriptor, split on '\n' (a last line without one counts).
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  // False at the end of input; an error from read(2) as an Error.
  Result<bool> next(std::string_view* line) {
    for (;;) {
      size_t nl = buf_.find('\n', scan_from_);
      if (nl != std::string::npos) {
        *line = std::string_view(buf_).substr(start_, nl - start_);
        consumed_ += nl + 1 - start_;
        start_ = scan_from_ = nl + 1;
        return true;
      }
      if (eof_) {
        if (start_ == buf_.size()) return false;
        *line = std::string_view(buf_).substr(start_);
        consumed_ += buf_.size() - start_;
        start_ = scan_from_ = buf_.size();
        return true;
      }
      buf_.erase(0, start_);
      scan_from_ = buf_.size();
      start_ = 0;
      const size_t old = buf_.size();
      buf_.resize(old + (1 << 20));
      ssize_t n;
      do {
        n = ::read(fd_, buf_.data() + old, 1 << 20);
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        int e = errno;
        buf_.resize(old);
        return os_error(e, "read stdin");
      }
      buf_.resize(old + size_t(n));
      eof_ = n == 0;
    }
  }
  uint64_t consumed() const { return consumed_; }

 private:
  int fd_;
  std::string buf_;
  size_t start_ = 0, scan_from_ = 0;
  bool eof_ = false;
  uint64_t consumed_ = 0;
};

// `load`'s progress line on stderr, only when stderr is a terminal (and
// stdin is not: someone typing lines would have them overwritten).
class Progress {
 public:
  explicit Progress(uint64_t total_bytes)
      : on_(::isatty(2) != 0 && ::isatty(0) == 0), total_(total_bytes), t0_(util::mono_ns()) {}
  void update(uint64_t lines, uint64_t bytes, bool force = false) {
    if (!on_) return;
    const uint64_t now = util::mono_ns();
    if (!force && now - last_ < 100'000'000) return;
    last_ = now;
    const double secs = double(now - t0_) / 1e9;
    const double rate = secs > 0 ? double(lines) / secs : 0;
    std::string line;
    if (total_ > 0) {
      constexpr int kWidth = 30;
      const double frac = std::min(1.0, double(bytes) / double(total_));
      const int done = int(frac * kWidth);
      line = fmt::format("loading [{}{}] {:3.0f}%  ", std::string(size_t(done), '#'),
                         std::string(size_t(kWidth - done), '.'), frac * 100);
    } else {
      line = fmt::format("loading  {} read  ", human_bytes(bytes));
    }
    line += fmt::format("{} lines  {:.0f} lines/s", lines, rate);
    fmt::print(stderr, "\r{}\x1b[K", line);
    std::fflush(stderr);
    shown_ = true;
  }
  void done() {
    if (on_ && shown_) {
      fmt::print(stderr, "\r\x1b[K");
      std::fflush(stderr);
    }
  }

 private:
  bool on_;
  bool shown_ = false;
  uint64_t total_;
  uint64_t t0_;
  uint64_t last_ = 0;
};

struct LoadArgs {
  bool atomic = false;
  uint64_t batch = 10000;
  Durability durability = Durability::kGroup;
};

int cmd_load(const std::string& dir, const LoadArgs& a) {
  const uint64_t t0 = util::mono_ns();
  auto o = open_session(dir, a.durability);
  if (!o.ok()) return report(o.error());

  uint64_t total_bytes = 0;
  struct stat st {};
  if (::fstat(0, &st) == 0 && S_ISREG(st.st_mode)) {
    off_t pos = ::lseek(0, 0, SEEK_CUR);
    total_bytes = uint64_t(st.st_size) - uint64_t(pos > 0 ? pos : 0);
  }
  Progress progress(total_bytes);
  LineReader reader(0);
  std::vector<std::pair<std::string, std::string>> pending;
  uint64_t lines = 0, loaded = 0, txns = 0;

  auto commit_pending = [&]() -> Status {
    if (pending.empty()) return {};
    auto ts = o->session.transact([&](Txn& t) -> Status {
      for (const auto& [k, v] : pending) STOA_TRY(t.put(k, v));
      return {};
    });
    if (!ts.ok()) {
      return Error(ts.code(), fmt::format("committing keys {}..{}: {}", loaded + 1,
                                          loaded + pending.size(), ts.error().message()));
    }
    loaded += pending.size();
    txns++;
    pending.clear();
    return {};
  };
  // Lines before a bad one stay loaded, unless --atomic: nothing is.
  auto stop = [&](uint64_t line_no, const std::string& why) {
    progress.done();
    std::string kept;
    if (a.atomic) {
      kept = "nothing was loaded (--atomic)";
    } else if (Status s = commit_pending(); !s.ok()) {
      kept = fmt::format("and then {}", s.error().message());
    } else {
      kept = fmt::format("the {} key(s) before it were loaded", loaded);
    }
    return report(Code::kInvalidArgument, fmt::format("line {}: {}; {}", line_no, why, kept));
  };

  for (;;) {
    std::string_view line;
    auto more = reader.next(&line);
    if (!more.ok()) {
      progress.done();
      return report(more.error());
    }
    if (!*more) break;
    lines++;
    if (line.empty()) continue;  // blank lines carry no key
    const size_t tab = line.find('\t');
    if (tab == std::string_view::npos) return stop(lines, "no tab between key and value");
    auto key = unescape_field(line.substr(0, tab), 1);
    if (!key.ok()) return stop(lines, key.error().message());
    auto value = unescape_field(line.substr(tab + 1), tab + 2);
    if (!value.ok()) return stop(lines, value.error().message());
    if (key->empty()) return stop(lines, "empty key");
    if (key->size() > kMaxKeySize) {
      return stop(lines, fmt::format("key of {} bytes (at most {})", key->size(), kMaxKeySize));
    }
    pending.emplace_back(std::move(*key), std::move(*value));
    if (!a.atomic && pending.size() >= a.batch) {
      if (Status s = commit_pending(); !s.ok()) {
        progress.done();
        return report(s.error());
      }
    }
    if ((lines & 1023) == 0) progress.update(lines, reader.consumed());
  }
  progress.update(lines, reader.consumed(), true);
  Status s = commit_pending();
  progress.done();
  if (!s.ok()) return report(s.error());
  if (Status c = o->session.close(); !c.ok()) return report(c.error());
  const double secs = double(util::mono_ns() - t0) / 1e9;
  fmt::print("loaded {} keys from {} lines in {} transaction{}, {:.2f} s ({:.0f} keys/s)\n", loaded,
             lines, txns, txns == 1 ? "" : "s", secs, secs > 0 ? double(loaded) / secs : 0.0);
  return kExitOk;
}

constexpr const char* kFooter = R"(Exit status:
  0   success (verify: the store is sound; demo: every check passed)
  1   the command failed: no such store, damaged or foreign file, permission,
      I/O error, get of an absent key, a malformed load line, a backup into a
      directory that is not empty (one line on stderr: "stoa: <code>: <message>")
  2   verify found damage (each problem is printed); recover: the checkpoint
      or the log is damaged (the message names the file); demo: a check failed
  64  bad command line

backup and checkpoint run online, beside other processes; compact and recover
need the store to themselves (exit 1, "stoa: busy: ...", while others have it
open).

Run "stoa <command> --help" for a command's options.)";

constexpr const char* kLineFormat =
    R"(Line format (scan, dump, load): one key per line, KEY<TAB>VALUE<LF>. In both
fields a backslash is written \\, a tab \t, a newline \n, a carriage return
\r, and any other byte below 0x20 (or 0x7f) \xHH; every other byte, UTF-8
included, is written as it is. load reads the same escapes (and skips blank
lines), so "stoa dump A | stoa load B" copies a store and dumping B gives the
same output, like mdb_dump and mdb_load.)";

int run(int argc, char** argv) {
  CLI::App app{"stoa: a memory-mapped store shared by many processes", "stoa"};
  app.footer(kFooter);
  app.require_subcommand(1);

  std::string dir;
  bool json = false;

  auto* init = app.add_subcommand("init", "Create a store in DIR (an error if one exists there)");
  init->add_option("DIR", dir, "Store directory (created when missing)")->required();
  std::optional<uint64_t> max_size;
  std::optional<uint32_t> sessions;
  init->add_option("--max-size", max_size,
                   "The data file never grows past this many bytes (suffixes K, M, G: KiB, ...)")
      ->transform(CLI::AsSizeValue(false));
  init->add_option("--sessions", sessions, "Session-table slots")->check(CLI::Range(1, 1 << 14));

  auto* stat = app.add_subcommand(
      "stat", "Show size, used and free space, sessions, cycle, purgatory and the oldest pin");
  stat->add_option("DIR", dir, "Store directory")->required();
  stat->add_flag("--json", json, "Print one JSON object");

  auto* verify = app.add_subcommand(
      "verify", "Check header, allocator metadata and guard words (exit 0 sound, 2 damaged)");
  verify->add_option("DIR", dir, "Store directory")->required();

  auto* recorder = app.add_subcommand(
      "recorder", "Print the flight recorders of the session slots, dead sessions included");
  recorder->add_option("DIR", dir, "Store directory")->required();
  std::optional<uint32_t> slot;
  recorder->add_option("--session", slot, "Only this session slot");
  recorder->add_flag("--json", json, "Print JSON");

  // --durability NAME, read into a string and checked against these.
  const std::map<std::string, Durability> durabilities{
      {"sync", Durability::kSync}, {"group", Durability::kGroup}, {"none", Durability::kNone}};
  std::string durability = "group";
  auto add_durability = [&](CLI::App* sub) {
    sub->add_option("--durability", durability,
                    "When a commit returns: sync (on disk), group (a flusher syncs it within "
                    "milliseconds), none (OS write-back only)")
        ->check(CLI::IsMember({"sync", "group", "none"}))
        ->capture_default_str();
  };

  PutArgs put_args;
  auto* put = app.add_subcommand(
      "put", "Set KEY to VALUE (or to the bytes of --file, or of stdin when neither is given)");
  put->add_option("DIR", dir, "Store directory")->required();
  put->add_option("KEY", put_args.key, "The key (1 to 1024 bytes, as given)")->required();
  auto* put_value = put->add_option("VALUE", put_args.value, "The value, as given");
  put->add_option("--file", put_args.file, "Read the value from this file")->excludes(put_value);
  put->add_flag("-v,--verbose", put_args.verbose, "Print the commit timestamp");
  add_durability(put);
  put->footer("The value is stored byte for byte: no escapes, no newline added.");

  std::string key;
  auto* get = app.add_subcommand(
      "get", "Print the value of KEY, its exact bytes (exit 1 with a message when absent)");
  get->add_option("DIR", dir, "Store directory")->required();
  get->add_option("KEY", key, "The key, as given")->required();

  bool verbose = false;
  auto* del = app.add_subcommand("del", "Delete KEY (deleting an absent key is not an error)");
  del->add_option("DIR", dir, "Store directory")->required();
  del->add_option("KEY", key, "The key, as given")->required();
  del->add_flag("-v,--verbose", verbose, "Say whether the key was there, and the commit timestamp");
  add_durability(del);

  std::string prefix;
  bool reverse = false;
  std::optional<uint64_t> limit;
  auto* scan = app.add_subcommand(
      "scan", "Print the keys starting with PREFIX, one KEY<TAB>VALUE line each, in key order");
  scan->add_option("DIR", dir, "Store directory")->required();
  scan->add_option("PREFIX", prefix, "Key prefix, as given (default: every key)");
  scan->add_flag("--reverse", reverse, "Largest key first");
  scan->add_option("--limit", limit, "Print at most N keys");
  scan->footer(kLineFormat);

  auto* dump = app.add_subcommand(
      "dump", "Print every key, one KEY<TAB>VALUE line each, sorted, from one snapshot");
  dump->add_option("DIR", dir, "Store directory")->required();
  dump->footer(kLineFormat);

  LoadArgs load_args;
  auto* load = app.add_subcommand(
      "load", "Put the KEY<TAB>VALUE lines read from stdin (the format dump prints)");
  load->add_option("DIR", dir, "Store directory")->required();
  load->add_flag("--atomic", load_args.atomic,
                 "Commit every line in one transaction (default: batches; a malformed line stops "
                 "the load after the lines before it)");
  load->add_option("--batch", load_args.batch, "Keys per transaction")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30))
      ->capture_default_str();
  add_durability(load);
  load->footer(std::string(kLineFormat) +
               "\n\nA progress line (lines/s) goes to stderr when it is a terminal; a summary "
               "line\ngoes to stdout at the end.");

  auto* checkpoint = app.add_subcommand(
      "checkpoint", "Write a checkpoint now (online) and drop the log before it");
  checkpoint->add_option("DIR", dir, "Store directory")->required();

  std::string dest;
  auto* backup = app.add_subcommand(
      "backup",
      "Write a consistent copy of the store into DEST while others go on using it (like "
      "mdb_copy)");
  backup->add_option("DIR", dir, "Store directory")->required();
  backup->add_option("DEST", dest, "New directory for the copy (missing or empty)")->required();
  backup->footer(
      "The copy is one snapshot, written as a checkpoint file under DEST/log; opening DEST\n"
      "as a store (stoa stat DEST, Store::open) loads it. Prints the timestamp it holds.");

  auto* compact = app.add_subcommand(
      "compact",
      "Shrink the data file to the live data (offline: no other process may have the store open)");
  compact->add_option("DIR", dir, "Store directory")->required();
  compact->add_flag("--json", json, "Print one JSON object");

  bool rebuild = false, force = false;
  auto* recover = app.add_subcommand(
      "recover",
      "Recover the store alone and report what was found and done (exit 2 when the log is "
      "damaged)");
  recover->add_option("DIR", dir, "Store directory")->required();
  auto* rebuild_flag =
      recover->add_flag("--rebuild", rebuild,
                        "Rebuild the data file from the last checkpoint and the log, even when it "
                        "could be trusted");
  recover
      ->add_flag("--force", force,
                 "With --rebuild: skip the check of the checkpoint and log that comes first "
                 "(the rebuild then meets any damage itself)")
      ->needs(rebuild_flag);
  recover->add_flag("--json", json, "Print one JSON object");

  DemoArgs demo_args;
  auto* demo = app.add_subcommand(
      "demo",
      "Worker processes share data, one is SIGKILLed and reclaimed; then bank transfers "
      "between processes, every snapshot audited");
  demo->add_option("--dir", demo_args.dir,
                   "Create the store here (a missing or empty directory; default: a temporary "
                   "directory, removed afterwards)");
  demo->add_option("--workers", demo_args.workers, "Allocator worker processes")
      ->check(CLI::Range(2, 64))
      ->capture_default_str();
  demo->add_option("--seconds", demo_args.seconds, "How long the allocator workers run")
      ->check(CLI::Range(0.5, 600.0))
      ->capture_default_str();
  demo->add_option("--accounts", demo_args.accounts, "Bank accounts (1000 each to start)")
      ->check(CLI::Range(2, 100000))
      ->capture_default_str();
  demo->add_option("--bank-workers", demo_args.bank_workers,
                   "Transfer worker processes (one of them is killed)")
      ->check(CLI::Range(2, 64))
      ->capture_default_str();
  demo->add_option("--bank-seconds", demo_args.bank_seconds, "How long the transfers run")
      ->check(CLI::Range(0.5, 600.0))
      ->capture_default_str();

  if (argc >= 2 && argv[1][0] != '-') {
    const std::string cmd = argv[1];
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) known |= sub->get_name() == cmd;
    if (!known) {
      fmt::print(stderr, "stoa: usage: unknown command '{}' (see stoa --help)\n", cmd);
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fflush(stdout);
    fmt::print(stderr, "stoa: usage: {} (see stoa --help)\n", e.what());
    return kExitUsage;
  }

  if (init->parsed()) return cmd_init(dir, max_size, sessions);
  if (stat->parsed()) return cmd_stat(dir, json);
  if (verify->parsed()) return cmd_verify(dir);
  if (recorder->parsed()) return cmd_recorder(dir, slot, json);
  const Durability d = durabilities.at(durability);
  put_args.durability = d;
  load_args.durability = d;
  if (put->parsed()) return cmd_put(dir, put_args);
  if (get->parsed()) return cmd_get(dir, key);
  if (del->parsed()) return cmd_del(dir, key, verbose, d);
  if (scan->parsed()) return print_keys(dir, prefix, reverse, limit);
  if (dump->parsed()) return print_keys(dir, "", false, std::nullopt);
  if (load->parsed()) return cmd_load(dir, load_args);
  if (checkpoint->parsed()) return cmd_checkpoint(dir);
  if (backup->parsed()) return cmd_backup(dir, dest);
  if (compact->parsed()) return cmd_compact(dir, json);
  if (recover->parsed()) return cmd_recover(dir, rebuild, force, json);
  if (demo->parsed()) return run_demo(demo_args);
  return kExitUsage;
}

}  // namespace
}  // namespace stoa::cli

int main(int argc, char** argv) { return stoa::cli::run(argc, argv); }
