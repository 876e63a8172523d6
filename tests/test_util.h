// tests/test_util.h — shared helpers for the multi-process test suites.
//
//  - TempDir: a scratch directory under STOA_TEST_TMPDIR, removed in its
//    destructor (also when the test failed, and after permissions were
//    changed inside it).
//  - Children: forks children that run a lambda and _exit() with its status
//    (a child never returns into gtest); its destructor SIGKILLs and reaps
//    every child still running, so a failing test leaves no processes.
//  - Shared<T>: a T in anonymous shared memory, created before fork(), for
//    control words between parent and children (lock-free atomics only).
//  - CHILD_CHECK: in a child, prints the failure (with the seed the test
//    printed) and _exit()s with status 1.
//  - kSanitized: whether this is a sanitizer build (latency bounds widen).
//  - stress_scale(): STOA_STRESS_SCALE (default 1) multiplies iteration
//    counts and durations for longer release runs.
//  - test_seed(): STOA_TEST_SEED, or a fresh random seed; prints
//    "seed N (replay: STOA_TEST_SEED=N)" (seed_note()).
//  - Pipe: a byte pipe for handshakes between processes (send a token,
//    wait for one with a timeout), created before fork().
//  - exited_ok() / killed_by_sigkill(): what a reaped child's status must be.
//  - checksummed entries and slot words: blocks that readers validate in
//    place, named by (offset, sequence number) so a premature free and
//    reuse at the same offset is caught (validate_entry()).
//
// Thread safety: TempDir and Children belong to the test's main thread.
#ifndef STOA_TESTS_TEST_UTIL_H_
#define STOA_TESTS_TEST_UTIL_H_

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <new>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "stoa/store.h"

namespace stoa::test {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// True in an ASan or TSan build, whose instrumented loads and stores make
// latency claims slower by a stated factor (each test says which bound it
// relaxes and by how much; counts and outcomes are never relaxed).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

inline double stress_scale() {
  const char* s = std::getenv("STOA_STRESS_SCALE");
  if (s == nullptr || *s == '\0') return 1.0;
  double v = std::strtod(s, nullptr);
  return v > 0 ? v : 1.0;
}

// Scales a count or a duration (in ms) by STOA_STRESS_SCALE.
inline uint64_t scaled(uint64_t base) {
  double v = double(base) * stress_scale();
  return v < 1 ? 1 : uint64_t(v);
}

// "seed N (replay: STOA_TEST_SEED=N)", for messages and SCOPED_TRACE.
inline std::string seed_note(uint64_t seed) {
  return fmt::format("seed {} (replay: STOA_TEST_SEED={})", seed, seed);
}

// The seed of this run: STOA_TEST_SEED (decimal, or 0x hex) when set, else
// one random seed per process (every call in one process returns the same).
// Prints seed_note() to stdout at each call, so each test's log names it.
inline uint64_t test_seed() {
  static const uint64_t seed = [] {
    const char* s = std::getenv("STOA_TEST_SEED");
    if (s != nullptr && *s != '\0') return uint64_t(std::strtoull(s, nullptr, 0));
    std::random_device rd;
    return (uint64_t(rd()) << 32) ^ rd();
  }();
  std::printf("%s\n", seed_note(seed).c_str());
  std::fflush(stdout);
  return seed;
}

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The median and the largest of `v` (sorted in place; not empty), for the
// "claim:" lines of the latency tests.
inline std::pair<double, double> p50_max(std::vector<double>& v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.back()};
}

// Recursively makes everything under `p` owner-accessible again so that
// remove_all can delete it (tests chmod directories to 0).
inline void unlock_tree(const std::filesystem::path& p) {
  std::error_code ec;
  ::chmod(p.c_str(), 0700);
  if (!std::filesystem::is_directory(p, ec)) return;
  for (auto it = std::filesystem::recursive_directory_iterator(
           p, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec)) ::chmod(it->path().c_str(), 0700);
  }
}

class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    std::string tmpl = std::string(STOA_TEST_TMPDIR) + "/stoa-" + tag + "-XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) {
      std::fprintf(stderr, "mkdtemp(%s): %s\n", tmpl.c_str(), std::strerror(errno));
      std::abort();
    }
    path_ = p;
    owner_ = ::getpid();
  }
  ~TempDir() {
    if (::getpid() != owner_) return;  // never in a forked child
    if (std::getenv("STOA_KEEP_TMP") != nullptr) {
      std::fprintf(stderr, "keeping %s (STOA_KEEP_TMP)\n", path_.c_str());
      return;
    }
    std::error_code ec;
    unlock_tree(path_);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
  pid_t owner_ = 0;
};

// One object of type T in anonymous shared memory, visible to children forked
// after construction. T should hold only lock-free atomics and plain data.
template <typename T>
class Shared {
 public:
  explicit Shared(size_t bytes = sizeof(T)) : bytes_(std::max(bytes, sizeof(T))) {
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("mmap shared");
      std::abort();
    }
    ptr_ = new (p) T();
  }
  ~Shared() {
    ptr_->~T();
    ::munmap(ptr_, bytes_);
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  T* operator->() const { return ptr_; }
  T& operator*() const { return *ptr_; }
  T* get() const { return ptr_; }

 private:
  size_t bytes_;
  T* ptr_;
};

// "exited 0", "killed by signal 9 (Killed)", ...
inline std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  }
  return fmt::format("status {:#x}", status);
}

// "ok", or the error of a stoa::Result / stoa::Status, for messages.
template <typename R>
std::string err(const R& r) {
  return r.ok() ? std::string("ok") : r.error().to_string();
}

// Every key and value in the newest snapshot, by one scan. Errors: what
// session(), begin(), scan() or next() returned.
inline Result<std::map<std::string, std::string>> read_all(Store& store) {
  std::map<std::string, std::string> out;
  STOA_ASSIGN(Session s, store.session());
  STOA_ASSIGN(Txn t, s.begin(TxnOptions{.read_only = true}));
  STOA_ASSIGN(Cursor c, t.scan("", ""));
  while (c.valid()) {
    out[std::string(c.key())] = c.value().copy();
    STOA_TRY(c.next());
  }
  return out;
}

// A key or value for a failure message: printable bytes as they are,
// others as \xNN, at most 80 bytes.
inline std::string hex(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 80; i++) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += c >= 0x20 && c < 0x7f ? std::string(1, char(c)) : fmt::format("\\x{:02x}", c);
  }
  return s.size() > 80 ? out + "..." : out;
}

inline bool exited_ok(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
// The status of a child that ran until the parent's SIGKILL (not one that
// exited, crashed or was killed by anything else first).
inline bool killed_by_sigkill(int status) {
  return status >= 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

// Prints a child's failure and ends the child (all its threads) at once.
[[noreturn]] inline void child_fail(const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "[child pid %d] %s:%d: %s\n", int(::getpid()), file, line, msg.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  ::_exit(1);
}

#define CHILD_CHECK(cond, ...)                                                    \
  do {                                                                            \
    if (!(cond)) {                                                                \
      ::stoa::test::child_fail(                                                   \
          __FILE__, __LINE__,                                                     \
          std::string("check failed: " #cond ": ") + ::fmt::format(__VA_ARGS__)); \
    }                                                                             \
  } while (0)

class Children {
 public:
  Children() : owner_(::getpid()) {}
  ~Children() { kill_all(); }
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;

  // Forks; the child runs fn and _exit()s with its result (99 when it threw).
  pid_t spawn(std::function<int()> fn) {
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("fork");
      std::abort();
    }
    if (pid == 0) {
      int rc = 98;
      try {
        rc = fn();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "[child pid %d] exception: %s\n", int(::getpid()), e.what());
        rc = 99;
      } catch (...) {
        std::fprintf(stderr, "[child pid %d] unknown exception\n", int(::getpid()));
        rc = 99;
      }
      std::fflush(stdout);
      std::fflush(stderr);
      ::_exit(rc);
    }
    live_.insert(pid);
    return pid;
  }

  // Waits for `pid` for at most `timeout`; returns its wait status, or -1 if
  // it did not end in time (it is then killed and reaped).
  int wait(pid_t pid, milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      int status = 0;
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        live_.erase(pid);
        return status;
      }
      if (r < 0 && errno != EINTR) {
        live_.erase(pid);
        return -2;
      }
      if (Clock::now() >= deadline) {
        kill_one(pid);
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }

  // Reaps `pid` if it has ended (without waiting); true then, with its status.
  bool try_reap(pid_t pid, int* status) {
    pid_t r = ::waitpid(pid, status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
      live_.erase(pid);
      return true;
    }
    return false;
  }

  // SIGKILLs `pid` and reaps it; returns its wait status.
  int kill_one(pid_t pid, int sig = SIGKILL) {
    ::kill(pid, sig);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    live_.erase(pid);
    return status;
  }

  void kill_all() {
    if (::getpid() != owner_) return;
    for (pid_t p : std::set<pid_t>(live_)) kill_one(p);
  }

  size_t live_count() const { return live_.size(); }

 private:
  pid_t owner_;
  std::set<pid_t> live_;
};

// Polls `pred` until it is true or `timeout` passes; returns pred's last value.
template <typename Pred>
bool wait_until(Pred pred, milliseconds timeout,
                std::chrono::microseconds step = std::chrono::microseconds(200)) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(step);
  }
}

// A fast pattern generator: splitmix64.
inline uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Fills [p, p+len) with the pattern of `key`: word i is splitmix(key) + i*K;
// trailing bytes take the low bytes of the next word.
inline void fill_pattern(char* p, size_t len, uint64_t key) {
  const uint64_t base = splitmix(key);
  size_t words = len / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w = base + i * 0xD6E8FEB86659FD93ull;
    std::memcpy(p + i * 8, &w, 8);
  }
  uint64_t w = base + words * 0xD6E8FEB86659FD93ull;
  std::memcpy(p + words * 8, &w, len % 8);
}

// Returns the index of the first byte that differs from the pattern, or -1.
inline int64_t check_pattern(const char* p, size_t len, uint64_t key) {
  const uint64_t base = splitmix(key);
  size_t words = len / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w = base + i * 0xD6E8FEB86659FD93ull, got;
    std::memcpy(&got, p + i * 8, 8);
    if (got != w) {
      for (size_t b = 0; b < 8; b++) {
        if (reinterpret_cast<const char*>(&got)[b] != reinterpret_cast<const char*>(&w)[b]) {
          return int64_t(i * 8 + b);
        }
      }
    }
  }
  uint64_t w = base + words * 0xD6E8FEB86659FD93ull;
  for (size_t b = 0; b < len % 8; b++) {
    if (p[words * 8 + b] != reinterpret_cast<const char*>(&w)[b]) return int64_t(words * 8 + b);
  }
  return -1;
}

// A pipe for handshakes across fork(): one side send()s a byte, the other
// recv()s it with a timeout. Both ends stay open in every process (so a dead
// peer shows as a timeout, not EOF); the creating process closes them.
class Pipe {
 public:
  Pipe() : owner_(::getpid()) {
    if (::pipe(fd_) != 0) {
      std::perror("pipe");
      std::abort();
    }
  }
  ~Pipe() {
    if (::getpid() != owner_) return;
    ::close(fd_[0]);
    ::close(fd_[1]);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  bool send(char c = 'x') {
    for (;;) {
      ssize_t n = ::write(fd_[1], &c, 1);
      if (n == 1) return true;
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
  }
  // The next byte, or -1 when none came within `timeout`.
  int recv(milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left < 0) return -1;
      pollfd p{fd_[0], POLLIN, 0};
      int r = ::poll(&p, 1, int(left));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return -1;
      char c;
      ssize_t n = ::read(fd_[0], &c, 1);
      if (n == 1) return uint8_t(c);
      if (n < 0 && errno == EINTR) continue;
      return -1;
    }
  }

 private:
  int fd_[2];
  pid_t owner_;
};

// --- checksummed entries ------------------------------------------------------
// A published block that readers validate in place: a header naming its own
// offset and its writer's sequence number, then a payload that never
// contains the poison byte (0xDB), so a premature free (poisoned with 0xDB)
// or a rewrite is seen as a bad magic, offset, checksum or poison.
//
// A block freed too early and then reused AT THE SAME OFFSET by a new,
// well-formed entry passes all of those; only its sequence number differs.
// So the structure readers walk holds slot words, not bare offsets: the
// offset in the low kSlotOffBits bits and the low bits of the entry's
// sequence number above them, written together in one atomic word. A reader
// checks the header's sequence against the word it loaded (validate_entry),
// which catches that reuse too. Exact while writers' sequence numbers are
// dense and unique (a false pass needs a reuse at the same offset by an
// entry 2^24 sequence numbers later).
inline constexpr uint64_t kEntryMagic = 0x5354414e44454e54ull;  // "STANDENT"
inline constexpr uint8_t kPoison = 0xDB;
inline constexpr int kSlotOffBits = 40;
inline constexpr uint64_t kSlotOffMask = (uint64_t{1} << kSlotOffBits) - 1;

struct EntryHdr {
  uint64_t magic;
  uint64_t off;  // the block's own offset
  uint64_t seq;  // writer's sequence number (keys the payload)
  uint64_t len;  // payload bytes after the header
  uint64_t sum;  // of the words above and the payload
};

// The slot word naming the entry at `off` with sequence number `seq`.
inline uint64_t slot_word(uint64_t off, uint64_t seq) {
  if (off == 0 || (off & ~kSlotOffMask) != 0) {
    std::fprintf(stderr, "slot_word: offset %llu does not fit\n", (unsigned long long)off);
    std::abort();
  }
  return (seq << kSlotOffBits) | off;
}
inline uint64_t slot_off(uint64_t word) { return word & kSlotOffMask; }
inline uint64_t slot_seq_tag(uint64_t word) { return word >> kSlotOffBits; }
inline uint64_t seq_tag(uint64_t seq) { return seq & (~uint64_t{0} >> kSlotOffBits); }

inline uint8_t entry_byte(uint64_t seq, uint64_t i) {
  uint8_t v = uint8_t(splitmix(seq * 0x100000001B3ull + (i >> 3)) >> ((i & 7) * 8));
  return v == kPoison ? uint8_t(v - 1) : v;
}

inline uint64_t entry_sum(const EntryHdr& h, const char* payload) {
  uint64_t s = splitmix(h.magic ^ splitmix(h.off ^ splitmix(h.seq ^ splitmix(h.len))));
  uint64_t acc = 0;
  for (uint64_t i = 0; i < h.len; i++) acc = acc * 31 + uint8_t(payload[i]);
  return s ^ splitmix(acc);
}

// Writes an entry of `len` payload bytes at p (the block at `off`).
inline void fill_entry(char* p, uint64_t off, uint64_t seq, uint64_t len) {
  EntryHdr h{kEntryMagic, off, seq, len, 0};
  char* payload = p + sizeof(EntryHdr);
  for (uint64_t i = 0; i < len; i++) payload[i] = char(entry_byte(seq, i));
  h.sum = entry_sum(h, payload);
  std::memcpy(p, &h, sizeof(h));
}

// Checks the header of the entry at p (block `off`); "" when sound,
// otherwise what is wrong.
inline std::string check_entry_header(const char* p, uint64_t off, EntryHdr* out) {
  EntryHdr h;
  std::memcpy(&h, p, sizeof(h));
  if (out != nullptr) *out = h;
  const auto* raw = reinterpret_cast<const uint8_t*>(p);
  size_t poison = 0;
  for (size_t i = 0; i < sizeof(h); i++) poison += raw[i] == kPoison;
  if (poison == sizeof(h)) return fmt::format("entry {}: header is all poison (0xDB): freed", off);
  if (h.magic != kEntryMagic) return fmt::format("entry {}: bad magic {:#x}", off, h.magic);
  if (h.off != off) return fmt::format("entry {}: header names offset {} (reused)", off, h.off);
  if (h.len > (uint64_t{1} << 24)) return fmt::format("entry {}: absurd length {}", off, h.len);
  return "";
}
inline std::string check_entry_payload(const char* p, uint64_t off, const EntryHdr& h) {
  const char* payload = p + sizeof(EntryHdr);
  for (uint64_t i = 0; i < h.len; i++) {
    if (uint8_t(payload[i]) == kPoison) {
      return fmt::format(
          "entry {} (seq {}, {} bytes): poison byte 0xDB at payload byte {}: freed "
          "while reachable",
          off, h.seq, h.len, i);
    }
  }
  if (entry_sum(h, payload) != h.sum) {
    return fmt::format("entry {} (seq {}, {} bytes): checksum mismatch (rewritten while reachable)",
                       off, h.seq, h.len);
  }
  return "";
}

// Validates the entry that slot word `word` names, read through
// core->read(offset, len) (a SessionCore; a template so this header needs no
// internal one): header, sequence number against the word, payload. ""
// when sound; *out gets the header.
template <typename Core>
std::string validate_entry(Core* core, uint64_t word, EntryHdr* out = nullptr) {
  const uint64_t off = slot_off(word);
  auto h = core->read(off, sizeof(EntryHdr));
  if (!h.ok()) return fmt::format("entry {}: read header: {}", off, h.error().to_string());
  EntryHdr hdr;
  std::string bad = check_entry_header(*h, off, &hdr);
  if (!bad.empty()) return bad;
  if (out != nullptr) *out = hdr;
  if (seq_tag(hdr.seq) != slot_seq_tag(word)) {
    return fmt::format(
        "entry {}: holds seq {} (tag {}) but the slot named tag {}: freed and reused at the "
        "same offset while reachable",
        off, hdr.seq, seq_tag(hdr.seq), slot_seq_tag(word));
  }
  auto p = core->read(off, sizeof(EntryHdr) + hdr.len);
  if (!p.ok()) return fmt::format("entry {}: read payload: {}", off, p.error().to_string());
  return check_entry_payload(*p, off, hdr);
}

// The session table, one line per session, for failure messages.
inline std::string sessions_text(const StoreStats& s) {
  std::string out;
  for (const auto& i : s.sessions) {
    out += fmt::format("  slot {} gen {} pid {} state {} pin {} age {:.3f}s{} purgatory {}\n",
                       i.slot, i.generation, i.pid, i.state, i.pinned_cycle, i.pin_age_seconds,
                       i.stalled ? " STALLED" : "", i.purgatory_bytes);
  }
  return out;
}

inline size_t count_state(const StoreStats& s, const std::string& state) {
  size_t n = 0;
  for (const auto& i : s.sessions) n += i.state == state;
  return n;
}

// Waits until no session is dead or being recovered (survivors reclaimed
// them); *last is the final stats seen, for the failure message.
inline bool wait_reclaimed(Store& store, StoreStats* last, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        auto st = store.stats();
        if (!st.ok()) return false;
        *last = *st;
        return count_state(*last, "dead") == 0 && count_state(*last, "recovering") == 0;
      },
      timeout, std::chrono::microseconds(5000));
}

}  // namespace stoa::test

#endif  // STOA_TESTS_TEST_UTIL_H_
