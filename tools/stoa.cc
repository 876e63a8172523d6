// tools/stoa.cc — the `stoa` command-line tool: argument parsing, dispatch,
// the small commands (init, stat, verify, recorder) and the key commands
// (put, get, del, scan, load, dump). The demo lives in tools/demo.cc.
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
// one transaction with --atomic).
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
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
#include "stoa/options.h"
#include "stoa/store.h"
#include "store_impl.h"
#include "util/clock.h"

namespace stoa::cli {

using Json = nlohmann::ordered_json;

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

// Opens an existing store to look at it: no creation, no watchdog.
Result<std::unique_ptr<Store>> open_existing(const std::string& dir) {
  Options o;
  o.create_if_missing = false;
  o.watchdog_interval = std::chrono::milliseconds(0);
  return Store::open(dir, o);
}

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
         {"keys", s.keys},
         {"last_commit_ts", s.last_commit_ts},
         {"visible_ts", s.visible_ts}};
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
  auto sized = [](uint64_t b) { return fmt::format("{} ({} bytes)", human_bytes(b), b); };
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
  fmt::print("keys           {} (last commit ts {}, visible up to ts {})\n", s.keys,
             s.last_commit_ts, s.visible_ts);
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

// --- key commands: put, get, del, scan, dump, load -------------------------

// An existing store and one session on it. The session closes before the
// store (members are destroyed in reverse order).
struct Opened {
  std::unique_ptr<Store> store;
  Session session;
};

Result<Opened> open_session(const std::string& dir) {
  STOA_ASSIGN(auto store, open_existing(dir));
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
  auto o = open_session(dir);
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

int cmd_del(const std::string& dir, const std::string& key, bool verbose) {
  auto o = open_session(dir);
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
  auto c = t->prefix(prefix, reverse);
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
};

int cmd_load(const std::string& dir, const LoadArgs& a) {
  const uint64_t t0 = util::mono_ns();
  auto o = open_session(dir);
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
      I/O error, get of an absent key, a malformed load line (one line on
      stderr: "stoa: <code>: <message>")
  2   verify found damage (each problem is printed); demo: a check failed
  64  bad command line

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

  PutArgs put_args;
  auto* put = app.add_subcommand(
      "put", "Set KEY to VALUE (or to the bytes of --file, or of stdin when neither is given)");
  put->add_option("DIR", dir, "Store directory")->required();
  put->add_option("KEY", put_args.key, "The key (1 to 1024 bytes, as given)")->required();
  auto* put_value = put->add_option("VALUE", put_args.value, "The value, as given");
  put->add_option("--file", put_args.file, "Read the value from this file")->excludes(put_value);
  put->add_flag("-v,--verbose", put_args.verbose, "Print the commit timestamp");
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
  load->footer(std::string(kLineFormat) +
               "\n\nA progress line (lines/s) goes to stderr when it is a terminal; a summary "
               "line\ngoes to stdout at the end.");

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
  if (put->parsed()) return cmd_put(dir, put_args);
  if (get->parsed()) return cmd_get(dir, key);
  if (del->parsed()) return cmd_del(dir, key, verbose);
  if (scan->parsed()) return print_keys(dir, prefix, reverse, limit);
  if (dump->parsed()) return print_keys(dir, "", false, std::nullopt);
  if (load->parsed()) return cmd_load(dir, load_args);
  if (demo->parsed()) return run_demo(demo_args);
  return kExitUsage;
}

}  // namespace
}  // namespace stoa::cli

int main(int argc, char** argv) { return stoa::cli::run(argc, argv); }
