// tools/cmd_durable.cc — the durability commands: checkpoint, backup,
// compact, recover.
//
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
//    checkpoint and the log after it (Admin::check_log: what verify checks
//    of them) and exits 2 naming the damaged file. --rebuild makes that
//    check first and refuses on damage, leaving the store exactly as it
//    was: a rebuild that meets the damage has already put the data file
//    aside and used up its clean-shutdown checksums (--force skips the
//    check).
//    Exit 2 on damage (kCorrupt), 1 on other failures (kBusy included).
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "stoa/admin.h"
#include "stoa/store.h"

namespace stoa::cli {
namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// Damage (kCorrupt) is exit 2, any other failure exit 1.
int report_damage(const Error& error) {
  return report(error, error.code() == Code::kCorrupt ? kExitProblems : kExitError);
}

// The size of DIR/stoa.data, if it can be stat'ed.
std::optional<uint64_t> data_file_size(const std::string& dir) {
  struct stat st {};
  const std::string data = Admin::paths(dir).data;
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
  const uint64_t t0 = mono_ns();
  auto ts = (*store)->checkpoint();
  if (!ts.ok()) return report(ts.error());
  const double secs = double(mono_ns() - t0) / 1e9;
  if (before->checkpoint_ts != 0 && *ts == before->checkpoint_ts) {
    fmt::print("checkpoint of {}: no commit since the last checkpoint at ts {}; nothing written\n",
               dir, *ts);
    return kExitOk;
  }
  const std::string file = Admin::checkpoint_path(dir, *ts);
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
  const uint64_t t0 = mono_ns();
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
  const double secs = double(mono_ns() - t0) / 1e9;
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

// Opens the store alone (kBusy otherwise), then checks its checkpoint and
// log. Also returns what the open itself did.
Result<std::pair<RecoveryReport, LogCheck>> open_and_check_log(const std::string& dir) {
  STOA_ASSIGN(auto store, open_existing(dir));
  if (!Admin::opened_alone(*store)) return Error(Code::kBusy, busy_message(dir, "recover"));
  STOA_ASSIGN(LogCheck c, Admin::check_log(*store));
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
  auto rep = Store::recover(dir, rebuild ? RecoverMode::kRebuild : RecoverMode::kReplay);
  if (!rep.ok()) return failed(rep.error());
  rep->sessions_recovered += pre_sessions;
  if (rep->rebuilt) return print_recover(dir, *rep, nullptr, json);
  // The data file was trusted, so nothing read the log: check it now.
  auto post = open_and_check_log(dir);
  if (!post.ok()) return failed(post.error());
  return print_recover(dir, *rep, &post->second, json);
}

}  // namespace

Handler setup_checkpoint(CLI::App& sub) {
  auto dir = std::make_shared<std::string>();
  sub.add_option("DIR", *dir, "Store directory")->required();
  return [dir] { return cmd_checkpoint(*dir); };
}

Handler setup_backup(CLI::App& sub) {
  struct Args {
    std::string dir, dest;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_option("DEST", a->dest, "New directory for the copy (missing or empty)")->required();
  sub.footer(
      "The copy is one snapshot, written as a checkpoint file under DEST/log; opening DEST\n"
      "as a store (stoa stat DEST, Store::open) loads it. Prints the timestamp it holds.");
  return [a] { return cmd_backup(a->dir, a->dest); };
}

Handler setup_compact(CLI::App& sub) {
  struct Args {
    std::string dir;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_flag("--json", a->json, "Print one JSON object");
  return [a] { return cmd_compact(a->dir, a->json); };
}

Handler setup_recover(CLI::App& sub) {
  struct Args {
    std::string dir;
    bool rebuild = false, force = false, json = false;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  auto* rebuild_flag =
      sub.add_flag("--rebuild", a->rebuild,
                   "Rebuild the data file from the last checkpoint and the log, even when it "
                   "could be trusted");
  sub.add_flag("--force", a->force,
               "With --rebuild: skip the check of the checkpoint and log that comes first "
               "(the rebuild then meets any damage itself)")
      ->needs(rebuild_flag);
  sub.add_flag("--json", a->json, "Print one JSON object");
  return [a] { return cmd_recover(a->dir, a->rebuild, a->force, a->json); };
}

}  // namespace stoa::cli
