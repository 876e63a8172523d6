// tools/cmd_data.cc — the key commands: put, get, del, scan, dump, load.
//
// Each opens one session for its transactions and closes it before it
// exits, with the watchdog off (a transaction that meets a key locked by a
// dead committer still recovers it, as any session does). get, scan and
// dump read in one read-only transaction: one consistent snapshot, never
// aborted, never blocking writers. put and del run in Session::transact
// (retried on conflict); load commits in batches (or in one transaction
// with --atomic). put, del and load take --durability (sync: each commit is
// on disk before the command goes on; group, the default: a flusher syncs
// within Options::group_window; none: OS write-back only).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cli_util.h"
#include "commands.h"
#include "stoa/options.h"
#include "stoa/store.h"

namespace stoa::cli {
namespace {

void append_line(std::string& out, std::string_view key, std::string_view value) {
  escape_append(out, key);
  out += '\t';
  escape_append(out, value);
  out += '\n';
}

// --durability NAME: adds the option to `sub`, read into `name`.
void add_durability(CLI::App& sub, std::string& name) {
  sub.add_option("--durability", name,
                 "When a commit returns: sync (on disk), group (a flusher syncs it within "
                 "milliseconds), none (OS write-back only)")
      ->check(CLI::IsMember({"sync", "group", "none"}))
      ->capture_default_str();
}

// The Durability a checked --durability name stands for.
Durability durability_named(const std::string& name) {
  static const std::map<std::string, Durability> kDurabilities{
      {"sync", Durability::kSync}, {"group", Durability::kGroup}, {"none", Durability::kNone}};
  return kDurabilities.at(name);
}

struct PutArgs {
  std::string dir;
  std::string key;
  std::optional<std::string> value;
  std::optional<std::string> file;
  bool verbose = false;
  std::string durability = "group";  // a --durability name
};

int cmd_put(const PutArgs& a) {
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
  auto o = open_session(a.dir, durability_named(a.durability));
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
      : on_(::isatty(2) != 0 && ::isatty(0) == 0), total_(total_bytes), t0_(mono_ns()) {}
  void update(uint64_t lines, uint64_t bytes, bool force = false) {
    if (!on_) return;
    const uint64_t now = mono_ns();
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
  std::string dir;
  bool atomic = false;
  uint64_t batch = 10000;
  std::string durability = "group";  // a --durability name
};

// The bytes left to read on stdin when it is a regular file (0 otherwise:
// unknown).
uint64_t stdin_bytes_left() {
  struct stat st {};
  if (::fstat(0, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  off_t pos = ::lseek(0, 0, SEEK_CUR);
  return uint64_t(st.st_size) - uint64_t(pos > 0 ? pos : 0);
}

int cmd_load(const LoadArgs& a) {
  const uint64_t t0 = mono_ns();
  auto o = open_session(a.dir, durability_named(a.durability));
  if (!o.ok()) return report(o.error());

  Progress progress(stdin_bytes_left());
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
  const double secs = double(mono_ns() - t0) / 1e9;
  fmt::print("loaded {} keys from {} lines in {} transaction{}, {:.2f} s ({:.0f} keys/s)\n", loaded,
             lines, txns, txns == 1 ? "" : "s", secs, secs > 0 ? double(loaded) / secs : 0.0);
  return kExitOk;
}

constexpr const char* kLineFormat =
    R"(Line format (scan, dump, load): one key per line, KEY<TAB>VALUE<LF>. In both
fields a backslash is written \\, a tab \t, a newline \n, a carriage return
\r, and any other byte below 0x20 (or 0x7f) \xHH; every other byte, UTF-8
included, is written as it is. load reads the same escapes (and skips blank
lines), so "stoa dump A | stoa load B" copies a store and dumping B gives the
same output, like mdb_dump and mdb_load.)";

}  // namespace

Handler setup_put(CLI::App& sub) {
  auto a = std::make_shared<PutArgs>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_option("KEY", a->key, "The key (1 to 1024 bytes, as given)")->required();
  auto* value = sub.add_option("VALUE", a->value, "The value, as given");
  sub.add_option("--file", a->file, "Read the value from this file")->excludes(value);
  sub.add_flag("-v,--verbose", a->verbose, "Print the commit timestamp");
  add_durability(sub, a->durability);
  sub.footer("The value is stored byte for byte: no escapes, no newline added.");
  return [a] { return cmd_put(*a); };
}

Handler setup_get(CLI::App& sub) {
  struct Args {
    std::string dir, key;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_option("KEY", a->key, "The key, as given")->required();
  return [a] { return cmd_get(a->dir, a->key); };
}

Handler setup_del(CLI::App& sub) {
  struct Args {
    std::string dir, key;
    bool verbose = false;
    std::string durability = "group";
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_option("KEY", a->key, "The key, as given")->required();
  sub.add_flag("-v,--verbose", a->verbose,
               "Say whether the key was there, and the commit timestamp");
  add_durability(sub, a->durability);
  return [a] { return cmd_del(a->dir, a->key, a->verbose, durability_named(a->durability)); };
}

Handler setup_scan(CLI::App& sub) {
  struct Args {
    std::string dir, prefix;
    bool reverse = false;
    std::optional<uint64_t> limit;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_option("PREFIX", a->prefix, "Key prefix, as given (default: every key)");
  sub.add_flag("--reverse", a->reverse, "Largest key first");
  sub.add_option("--limit", a->limit, "Print at most N keys");
  sub.footer(kLineFormat);
  return [a] { return print_keys(a->dir, a->prefix, a->reverse, a->limit); };
}

Handler setup_dump(CLI::App& sub) {
  auto dir = std::make_shared<std::string>();
  sub.add_option("DIR", *dir, "Store directory")->required();
  sub.footer(kLineFormat);
  return [dir] { return print_keys(*dir, "", false, std::nullopt); };
}

Handler setup_load(CLI::App& sub) {
  auto a = std::make_shared<LoadArgs>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_flag("--atomic", a->atomic,
               "Commit every line in one transaction (default: batches; a malformed line stops "
               "the load after the lines before it)");
  sub.add_option("--batch", a->batch, "Keys per transaction")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30))
      ->capture_default_str();
  add_durability(sub, a->durability);
  sub.footer(std::string(kLineFormat) +
             "\n\nA progress line (lines/s) goes to stderr when it is a terminal; a summary "
             "line\ngoes to stdout at the end.");
  return [a] { return cmd_load(*a); };
}

}  // namespace stoa::cli
