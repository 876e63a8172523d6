// tools/cmd_admin.cc — the commands that create a store or look at one:
// init, stat, verify, recorder.
//
// stat, verify and recorder open no session (they only look), so running
// them never adds a slot or a flight-recorder entry. Like every command
// they open the store with the watchdog off: a one-shot tool should not
// reclaim other processes' sessions behind their back. Opening a store that
// nobody else has open still runs the open protocol, which repairs what
// crashed processes left behind (src/store/store_impl.cc).
#include <time.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "stoa/admin.h"
#include "stoa/options.h"
#include "stoa/store.h"

namespace stoa::cli {
namespace {

using Json = nlohmann::ordered_json;

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
  o.log_threads = false;
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
              {"snapshot", s.snapshot},
              {"snapshot_age_seconds", s.snapshot_age_seconds},
              {"snapshot_lag_commits", s.snapshot_lag_commits},
              {"snapshot_expired", s.snapshot_expired}};
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
         {"keys_removed", s.keys_removed},
         {"used_bytes_per_key", s.used_bytes_per_key},
         {"commits", s.commits},
         {"snapshots_expired", s.snapshots_expired},
         {"last_commit_ts", s.last_commit_ts},
         {"visible_ts", s.visible_ts},
         {"durable_ts", s.durable_ts},
         {"checkpoint_ts", s.checkpoint_ts},
         {"log_bytes", s.log_bytes},
         {"mailboxes", s.mailboxes},
         {"messages", s.messages},
         {"message_bytes", s.message_bytes},
         {"channels", s.channels},
         {"channel_messages", s.channel_messages},
         {"log_failed", s.log_failed.empty() ? Json(nullptr) : Json(s.log_failed)}};
  if (s.oldest_snapshot) {
    const SessionInfo& o = *s.oldest_snapshot;
    j["oldest_snapshot"] = Json{{"slot", o.slot},
                                {"pid", o.pid},
                                {"snapshot", o.snapshot},
                                {"behind", s.visible_ts - std::min(s.visible_ts, o.snapshot)},
                                {"age_seconds", o.snapshot_age_seconds},
                                {"lag_commits", o.snapshot_lag_commits},
                                {"lag_bytes", o.snapshot_lag_bytes}};
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
  fmt::print(
      "keys           {} (last commit ts {}, visible up to ts {}); {:.1f} used bytes a key; "
      "{} deleted keys removed\n",
      s.keys, s.last_commit_ts, s.visible_ts, s.used_bytes_per_key, s.keys_removed);
  fmt::print("durable        up to ts {}{}\n", s.durable_ts,
             s.durable_ts >= s.last_commit_ts
                 ? " (every commit)"
                 : fmt::format(" ({} log bytes not yet synced)", s.last_commit_ts - s.durable_ts));
  if (s.checkpoint_ts != 0) {
    fmt::print("checkpoint     ts {}, {} of log since\n", s.checkpoint_ts, sized(s.log_bytes));
  } else {
    fmt::print("checkpoint     none yet, {} of log\n", sized(s.log_bytes));
  }
  fmt::print("mailboxes      {}, {} messages ({} waiting)\n", s.mailboxes, s.messages,
             sized(s.message_bytes));
  fmt::print("channels       {}, {} messages waiting\n", s.channels, s.channel_messages);
  if (!s.log_failed.empty()) {
    fmt::print("LOG FAILED     {} (no commit is accepted until the next lone open repairs it)\n",
               s.log_failed);
  }
  if (s.oldest_snapshot) {
    const SessionInfo& o = *s.oldest_snapshot;
    fmt::print(
        "oldest snapshot session {} (pid {}) reads ts {}: {:.3f} s old, {} commits and {} of log "
        "behind (what those commits wrote it may hold back from trimming)\n",
        o.slot, o.pid, o.snapshot, o.snapshot_age_seconds, o.snapshot_lag_commits,
        human_bytes(o.snapshot_lag_bytes));
  } else {
    fmt::print("oldest snapshot none\n");
  }
  fmt::print("expired        {} snapshots past max_snapshot_age / max_snapshot_lag\n",
             s.snapshots_expired);
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
  fmt::print("  messages       {} checked: mailbox lists, counts, checksums; channel rings\n",
             r.messages);
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
  auto dumps = Admin::recorder(**store, slot);
  if (!dumps.ok()) return report(dumps.error());
  if (json) {
    Json out = Json::array();
    for (const RecorderDump& d : *dumps) {
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
  for (const RecorderDump& d : *dumps) {
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

}  // namespace

Handler setup_init(CLI::App& sub) {
  struct Args {
    std::string dir;
    std::optional<uint64_t> max_size;
    std::optional<uint32_t> sessions;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory (created when missing)")->required();
  sub.add_option("--max-size", a->max_size,
                 "The data file never grows past this many bytes (suffixes K, M, G: KiB, ...)")
      ->transform(CLI::AsSizeValue(false));
  sub.add_option("--sessions", a->sessions, "Session-table slots")->check(CLI::Range(1, 1 << 14));
  return [a] { return cmd_init(a->dir, a->max_size, a->sessions); };
}

Handler setup_stat(CLI::App& sub) {
  struct Args {
    std::string dir;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_flag("--json", a->json, "Print one JSON object");
  return [a] { return cmd_stat(a->dir, a->json); };
}

Handler setup_verify(CLI::App& sub) {
  auto dir = std::make_shared<std::string>();
  sub.add_option("DIR", *dir, "Store directory")->required();
  return [dir] { return cmd_verify(*dir); };
}

Handler setup_recorder(CLI::App& sub) {
  struct Args {
    std::string dir;
    std::optional<uint32_t> slot;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_option("--session", a->slot, "Only this session slot");
  sub.add_flag("--json", a->json, "Print JSON");
  return [a] { return cmd_recorder(a->dir, a->slot, a->json); };
}

}  // namespace stoa::cli
