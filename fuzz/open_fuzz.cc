// fuzz/open_fuzz.cc — mutated headers and metadata fed to open and verify.
//
// Input: byte 0 holds flags; the rest is XORed over the data file's first
// four pages (header, heap metadata, roots, first run) of a freshly made store,
// and, past that, over the lock file's first page. Flag bit 0 recomputes the
// header checksum after mutation, so mutations reach past the checksum into
// layout checks, heap metadata and the run chain. Flag bit 1 keeps the
// mutated lock file; otherwise it is removed (rebuilt on open). Then: open,
// verify, and a few allocations. Any outcome is fine except a crash, a hang
// or a sanitizer report.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <xxhash.h>

#include "region/layout.h"
#include "stoa/store.h"
#include "store_impl.h"

namespace {

constexpr size_t kDataSpan = stoa::region::kHeapStart + stoa::region::kPageSize;

struct Template {
  std::string dir;
  std::vector<char> data;
  std::vector<char> lock;
};

std::vector<char> read_all(const std::string& p) {
  std::vector<char> v;
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return v;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) v.insert(v.end(), buf, buf + n);
  ::close(fd);
  return v;
}

void write_all(const std::string& p, const std::vector<char>& v) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t off = 0;
  while (off < v.size()) {
    ssize_t n = ::write(fd, v.data() + off, v.size() - off);
    if (n <= 0) break;
    off += size_t(n);
  }
  ::close(fd);
}

stoa::Options fuzz_options() {
  stoa::Options o;
  o.max_size = 1 << 20;
  o.initial_size = 128 << 10;
  o.grow_chunk = 64 << 10;
  o.max_sessions = 4;
  o.watchdog_interval = std::chrono::milliseconds(0);
  return o;
}

const Template& get_template() {
  static Template t = [] {
    Template t;
    t.dir =
        std::filesystem::temp_directory_path().string() + "/stoa-fuzz-" + std::to_string(getpid());
    std::filesystem::remove_all(t.dir);
    {
      auto s = stoa::Store::open(t.dir, fuzz_options());
      if (s.ok()) {
        auto sess = (*s)->session();
        if (sess.ok()) {
          // Some live data so the walk has slabs and a large run to read.
          for (int i = 0; i < 8; i++) {
            auto a = sess->core()->alloc(i % 2 ? 100 : 9000);
            if (a.ok()) (void)sess->core()->publish(*a);
          }
        }
      }
    }
    t.data = read_all(t.dir + "/stoa.data");
    t.lock = read_all(t.dir + "/stoa.lock");
    std::atexit([] {
      std::string d = std::filesystem::temp_directory_path().string() + "/stoa-fuzz-" +
                      std::to_string(getpid());
      std::filesystem::remove_all(d);
      std::filesystem::remove_all(d + "-case");
    });
    return t;
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* in, size_t size) {
  const Template& t = get_template();
  if (t.data.size() < kDataSpan || size == 0) return 0;
  std::vector<char> data = t.data, lock = t.lock;
  const uint8_t flags = in[0];
  in++;
  size--;
  for (size_t i = 0; i < size && i < kDataSpan; i++) data[i] = char(data[i] ^ in[i]);
  for (size_t i = kDataSpan; i < size && i - kDataSpan < lock.size() && i - kDataSpan < 4096; i++) {
    lock[i - kDataSpan] = char(lock[i - kDataSpan] ^ in[i]);
  }
  if (flags & 1) {
    auto* h = reinterpret_cast<stoa::region::FileHeader*>(data.data());
    h->checksum = XXH3_64bits(h, offsetof(stoa::region::FileHeader, checksum));
  }
  const std::string dir = t.dir + "-case";
  std::filesystem::create_directories(dir);
  write_all(dir + "/stoa.data", data);
  if (flags & 2)
    write_all(dir + "/stoa.lock", lock);
  else
    ::unlink((dir + "/stoa.lock").c_str());

  stoa::Options o = fuzz_options();
  o.create_if_missing = false;
  auto s = stoa::Store::open(dir, o);
  static const bool verbose = std::getenv("STOA_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "open: %s\n", s.ok() ? "ok" : s.error().to_string().c_str());
  if (s.ok()) {
    auto v = (*s)->verify();
    if (verbose && v.ok()) {
      std::fprintf(stderr, "verify: %zu problems%s%s\n", v->problems.size(), v->sound() ? "" : ": ",
                   v->sound() ? "" : v->problems[0].c_str());
    }
    auto st = (*s)->stats();
    (void)st;
    auto sess = (*s)->session();
    if (sess.ok()) {
      for (int i = 0; i < 16; i++) {
        auto a = sess->core()->alloc(size_t(1) << (i % 15));
        if (a.ok()) (void)sess->core()->free(*a);
      }
    }
  }
  return 0;
}
