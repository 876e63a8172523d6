// fuzz/fuzz_util.h — what the fuzz targets share: scratch directories (one
// fresh directory per input), whole-directory snapshots of a template store,
// the patch format that turns an input into XOR edits of chosen regions,
// the checksums of the on-disk formats (so a mutation can be made to pass
// them and reach the checks behind), and the outcome of the last input, which
// the smoke runner (smoke_main.cc) checks for the unmutated seeds.
//
// Patch format (open_fuzz, log_fuzz): after the target's flag byte, a
// sequence of edits, each [region u8][offset u16 LE][n u8][n bytes]: the
// bytes are XORed into region (region % regions) at offset (offset % its
// length); n is 1 + (n % 32). A truncated last edit uses what is there.
#ifndef STOA_FUZZ_FUZZ_UTIL_H_
#define STOA_FUZZ_FUZZ_UTIL_H_

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "api/access.h"
#include "log/layout.h"
#include "session/session_core.h"
#include "stoa/options.h"
#include "stoa/store.h"
#include "store/store_impl.h"
#include "util/hash.h"

namespace stoa::fuzz {

// What the last input did, for the smoke runner's baseline checks.
struct Outcome {
  bool opened = false;   // open returned a store
  bool rebuilt = false;  // ... rebuilt from checkpoint and log
  bool sound = false;    // verify found no problem
  bool intact = false;   // every template key read back with its value
  uint64_t records = 0;  // log records replayed
  bool decoded = false;  // record_fuzz: the input decoded as a record
  std::string error;     // the first error met, if any
};
inline Outcome& last_outcome() {
  static Outcome o;
  return o;
}
// Starts the outcome of a new input.
inline Outcome& new_outcome() { return last_outcome() = Outcome{}; }

// One seed input; `baseline` seeds are unmutated templates whose outcome
// the smoke runner checks (smoke_main.cc --expect).
struct Seed {
  std::string bytes;
  bool baseline = false;
};
// Defined by each target.
std::vector<Seed> fuzz_seeds();

// A seed of the patch format: flags, then one edit XORing `byte` into
// `region` at `off`.
inline Seed edit_seed(uint8_t flags, uint8_t region, uint8_t off, uint8_t byte) {
  const char b[] = {char(flags), char(region), char(off), 0, 0, char(byte)};
  return {std::string(b, sizeof(b)), false};
}

inline bool verbose() {
  static const bool v = std::getenv("STOA_FUZZ_VERBOSE") != nullptr;
  return v;
}

// Where stores are made: $STOA_FUZZ_TMPDIR, else /dev/shm (no disk syncs),
// else the system temp directory.
inline std::string scratch_root() {
  static const std::string root = [] {
    const char* e = std::getenv("STOA_FUZZ_TMPDIR");
    if (e != nullptr && *e != '\0') return std::string(e);
    struct stat st;
    if (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0) {
      return std::string("/dev/shm");
    }
    return std::filesystem::temp_directory_path().string();
  }();
  return root;
}

// A directory that exists for one input (or one template) and is removed
// with everything in it when this goes away.
class ScratchDir {
 public:
  explicit ScratchDir(const char* what) {
    static uint64_t counter = 0;
    if (counter == 0) remove_orphans();
    path_ = scratch_root() + "/stoa-fuzz-" + what + "-" + std::to_string(::getpid()) + "-" +
            std::to_string(counter++);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  // Directories of fuzz processes that died (a crashing input keeps its
  // directory until the next run starts).
  static void remove_orphans() {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(scratch_root(), ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("stoa-fuzz-", 0) != 0) continue;
      const size_t dash = name.rfind('-');
      const size_t pid_at = name.rfind('-', dash - 1);
      if (pid_at == std::string::npos || pid_at < 9) continue;
      const long pid = std::atol(name.c_str() + pid_at + 1);
      if (pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH) {
        std::filesystem::remove_all(e.path(), ec);
      }
    }
  }
  std::string path_;
};

inline std::string read_file(const std::string& p) {
  std::string v;
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return v;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) v.append(buf, size_t(n));
  ::close(fd);
  return v;
}

inline void write_file(const std::string& p, const std::string& v) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", p.c_str());
    std::abort();
  }
  size_t off = 0;
  while (off < v.size()) {
    ssize_t n = ::write(fd, v.data() + off, v.size() - off);
    if (n <= 0) break;
    off += size_t(n);
  }
  ::close(fd);
}

// A store directory's files by relative path ("stoa.data", "log/x.log").
using DirFiles = std::map<std::string, std::string>;

inline DirFiles snapshot_dir(const std::string& dir) {
  DirFiles files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    files[std::filesystem::relative(e.path(), dir).string()] = read_file(e.path().string());
  }
  return files;
}

// Writes `files` into the (empty) directory `dir`.
inline void restore_dir(const std::string& dir, const DirFiles& files) {
  for (const auto& [name, bytes] : files) {
    const std::string p = dir + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    write_file(p, bytes);
  }
}

// Small stores: a few MiB of data file, 64 KiB log segments, no background
// threads, explicit checkpoints only.
inline Options fuzz_options() {
  Options o;
  o.max_size = 8 << 20;
  o.initial_size = 256 << 10;
  o.grow_chunk = 256 << 10;
  o.max_sessions = 4;
  o.log_segment_size = 64 << 10;
  o.checkpoint_log_bytes = 0;
  o.durability = Durability::kNone;
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  return o;
}

// The template's keys and values: deterministic, some values large enough
// to live in their own block.
inline std::string template_key(int i) {
  char b[32];
  std::snprintf(b, sizeof(b), "key-%06d", i);
  return b;
}
inline std::string template_value(int i, int round) {
  const size_t len = i % 97 == 0 ? 5000 + size_t(i) : 8 + size_t(i * 7 + round) % 120;
  std::string v(len, char('a' + (i + round) % 26));
  v.replace(0, std::min(len, size_t(8)), std::to_string(i).substr(0, 8));
  return v;
}

// A byte range of some file that edits may hit.
struct Region {
  uint64_t at = 0;
  uint64_t len = 0;
};

// Calls fn(region index, offset, bytes, n) for each edit of the patch
// format (see the top of this file).
template <typename Fn>
void for_each_edit(const uint8_t* in, size_t size, size_t regions, Fn fn) {
  if (regions == 0) return;
  size_t i = 0;
  while (i + 4 < size) {
    const size_t region = in[i] % regions;
    const uint32_t off = uint32_t(in[i + 1]) | uint32_t(in[i + 2]) << 8;
    const size_t n = std::min<size_t>(1 + in[i + 3] % 32, size - i - 4);
    fn(region, off, in + i + 4, n);
    i += 4 + n;
  }
}

// XORs one edit's bytes into `file` at region `g`, offset `off` (wrapping
// within the region, never past the file).
inline void xor_into(std::string* file, const Region& g, uint32_t off, const uint8_t* b, size_t n) {
  if (g.len == 0) return;
  for (size_t k = 0; k < n; k++) {
    const uint64_t at = g.at + (off + k) % g.len;
    if (at < file->size()) (*file)[size_t(at)] = char((*file)[size_t(at)] ^ b[k]);
  }
}

// --- the formats' checksums (copies of src/: if these drift, the baseline
// seeds stop decoding and the smoke tests fail) ------------------------------

// log/record.cc record_sum: the header with its checksum field skipped, then
// the body.
inline void fix_record_checksum(char* rec, uint64_t len) {
  constexpr size_t kAt = offsetof(log::RecordHeader, checksum);
  uint64_t c = util::checksum64(rec, kAt, 0x4c4f4752);
  c = util::checksum64(rec + sizeof(log::RecordHeader), size_t(len - sizeof(log::RecordHeader)), c);
  std::memcpy(rec + kAt, &c, sizeof(c));
}

// The checksum of a struct that ends in its own checksum field
// (CheckpointHeader, CheckpointFooter, region::FileHeader).
template <typename T>
void fix_struct_checksum(T* h) {
  h->checksum = util::checksum64(h, offsetof(T, checksum));
}

// log/checkpoint.cc block_sum.
inline uint64_t checkpoint_block_sum(const char* body, uint64_t len, uint64_t index) {
  return util::checksum64(body, size_t(len), 0x434b5054 ^ index);
}

// A `stoa.sum` that vouches for `data` (store_durable.cc write_sum).
inline std::string sum_file_for(const std::string& data, uint64_t end_ts) {
  log::SumHeader h{};
  std::memcpy(h.magic, log::kSumMagic, 8);
  h.file_size = data.size();
  h.chunks = (data.size() + log::kSumChunk - 1) / log::kSumChunk;
  h.end_ts = end_ts;
  std::vector<uint64_t> sums(size_t(h.chunks));
  for (uint64_t i = 0; i < h.chunks; i++) {
    const uint64_t at = i * log::kSumChunk, n = std::min(log::kSumChunk, data.size() - at);
    sums[i] = util::checksum64(data.data() + at, size_t(n), 0x53554d00 ^ i);
  }
  h.checksum = util::checksum64(&h, offsetof(log::SumHeader, checksum));
  h.checksum = util::checksum64(sums.data(), sums.size() * 8, h.checksum);
  std::string out(reinterpret_cast<const char*>(&h), sizeof(h));
  out.append(reinterpret_cast<const char*>(sums.data()), sums.size() * 8);
  return out;
}

// --- stores --------------------------------------------------------------------

using KV = std::map<std::string, std::string>;

// A template that cannot be made: the target would test nothing.
[[noreturn]] inline void die(const char* what, const Error& e) {
  std::fprintf(stderr, "fuzz: %s failed: %s\n", what, e.to_string().c_str());
  std::abort();
}

inline void note_error(Outcome* out, const Error& e) {
  if (out->error.empty()) out->error = e.to_string();
  if (verbose()) std::fprintf(stderr, "  error: %s\n", e.to_string().c_str());
}

// Builds a template's history: add() puts (an empty value deletes), commit()
// commits what was added in one transaction and keeps `want` in step.
class Batch {
 public:
  Batch(Store& store, KV* want) : store_(store), want_(want) {}
  void add(std::string key, std::string value) {
    kv_.emplace_back(std::move(key), std::move(value));
  }
  size_t size() const { return kv_.size(); }
  void commit() {
    auto s = store_.session();
    if (!s.ok()) die("template session", s.error());
    auto ts = s->transact([&](Txn& t) -> Status {
      for (const auto& [k, v] : kv_) STOA_TRY(v.empty() ? t.del(k) : t.put(k, v));
      return {};
    });
    if (!ts.ok()) die("template commit", ts.error());
    for (const auto& [k, v] : kv_) {
      if (v.empty()) {
        want_->erase(k);
      } else {
        (*want_)[k] = v;
      }
    }
    kv_.clear();
  }

 private:
  Store& store_;
  KV* want_;
  std::vector<std::pair<std::string, std::string>> kv_;
};

// Scans every key of `store` (a loop that never ends is a bug: abort) and
// compares with `want`; true when they are equal.
inline bool scan_matches(Txn& t, const KV& want, Outcome* out) {
  auto c = t.scan("", "");
  if (!c.ok()) {
    note_error(out, c.error());
    return false;
  }
  bool same = true;
  auto w = want.begin();
  uint64_t n = 0;
  for (; c->valid(); n++) {
    if (n > 16 * want.size() + 1000) {
      std::fprintf(stderr, "fuzz: a scan of %zu keys did not end\n", want.size());
      std::abort();
    }
    if (w == want.end() || c->key() != w->first || c->value().str() != w->second) same = false;
    if (w != want.end()) ++w;
    if (Status st = c->next(); !st.ok()) {
      note_error(out, st.error());
      return false;
    }
  }
  return same && w == want.end();
}

// Notes what open did.
inline void note_open(Store& store, Outcome* out) {
  out->opened = true;
  out->rebuilt = store.recovery().rebuilt;
  out->records = store.recovery().log_records;
  if (verbose()) std::fprintf(stderr, "  open: %s\n", store.recovery().reason.c_str());
}

// What every target does with a store it opened: verify, scan all keys,
// get a few, put and delete a few and commit, allocate and free blocks of
// every size class, and (when asked) checkpoint. Errors are noted, never
// fatal.
inline void exercise_store(Store& store, const KV& want, bool checkpoint, Outcome* out) {
  auto v = store.verify();
  if (!v.ok()) note_error(out, v.error());
  out->sound = v.ok() && v->sound();
  if (verbose() && v.ok() && !v->sound()) {
    std::fprintf(stderr, "  verify: %zu problems: %s\n", v->problems.size(),
                 v->problems[0].c_str());
  }
  (void)store.stats();
  auto s = store.session();
  if (!s.ok()) return note_error(out, s.error());
  {
    auto t = s->begin();
    if (!t.ok()) return note_error(out, t.error());
    out->intact = scan_matches(*t, want, out);
    for (const char* k : {"key-000000", "key-001500", "key-999999", "key-000097"}) {
      auto g = t->get(k);
      if (!g.ok() && g.error().code() != Code::kNotFound) note_error(out, g.error());
    }
    for (int i = 0; i < 4; i++)
      (void)t->put("fuzz-" + std::to_string(i), std::string(i * 900, 'f'));
    (void)t->del("key-000001");
    auto c = t->commit();
    if (!c.ok()) note_error(out, c.error());
  }
  for (int i = 0; i < 24; i++) {
    auto a = stoa::internal::core_of(*s)->alloc(size_t(1) << (i % 16));
    if (a.ok()) (void)stoa::internal::core_of(*s)->free(*a);
  }
  (void)s->close();
  if (checkpoint) {
    auto c = store.checkpoint();
    if (!c.ok()) note_error(out, c.error());
  }
}

}  // namespace stoa::fuzz

#endif  // STOA_FUZZ_FUZZ_UTIL_H_
