// bench/bench.h — the small harness behind stoa-bench.
//
// A workload file (cycle_bench.cc, later index_bench.cc, ...) registers its
// workloads with STOA_BENCH; bench_main.cc runs them in registration order
// (filtered by --filter) and hands each a Config and a Reporter. A workload
// measures Stoa and its anchor(s) in the same run, with the same work on both
// sides, and reports:
//
//   raw: <workload> <side>: <median> <unit> (min .. max, N trials)
//   compare: <workload> vs <anchor>: <ratio>x
//
// where a ratio above 1 means Stoa is better (anchor_time / stoa_time for
// timings, stoa_rate / anchor_rate for throughputs). Figures are the median
// of Config::trials trials.
//
// A workload that needs a helper process registers a child entry point with
// STOA_BENCH_CHILD and starts it with spawn_child(); the child runs
// `stoa-bench --child NAME ARGS...` (a fresh exec, not a bare fork).
//
// Sweep mode (`stoa-bench --sweep KIND`) runs one workload registered with
// STOA_BENCH_SWEEP at 1..N processes instead of the workloads, Stoa beside
// its anchor at every step, and prints one line per step:
//
//   sweep <kind> n=<procs>: stoa <rate> Mops/s <anchor> <rate> Mops/s compare: <ratio>x ...
//
// Thread safety: the Reporter is used from the thread that runs the
// workload only.
#ifndef STOA_BENCH_BENCH_H_
#define STOA_BENCH_BENCH_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace stoa_bench {

// Options::huge_pages for every Stoa store the run opens (--no-huge-pages
// turns it off, to see what the 2 MiB mapping is worth).
extern bool g_huge_pages;

struct Config {
  bool quick = false;
  int trials = 5;               // trials per figure; the median is reported
  double trial_seconds = 0.25;  // target length of one timed trial
  std::string tmpdir = "/tmp";  // where scratch stores go
};

// Median, min and max of a set of trial figures.
struct Stats {
  std::vector<double> trials;
  double median = 0;
  double min = 0;
  double max = 0;
};
Stats summarize(std::vector<double> values);

// One step of a sweep: both sides at `procs` processes. Rates are the
// median (min, max) of the trials; CPU time per op is the median over the
// trials of the workers' user+system time per op in the timed part.
struct SweepStep {
  int procs = 0;
  Stats stoa, anchor;  // ops/s, summed over the processes
  double stoa_cpu_us = 0, anchor_cpu_us = 0;
  // Stoa's median rate over the anchor's (above 1: Stoa is better).
  double ratio() const { return anchor.median > 0 ? stoa.median / anchor.median : 0; }
};

class Reporter {
 public:
  // Starts a workload's block of output.
  void section(const std::string& workload, const std::string& description);
  // One side's figure: "raw: <workload> <side>: ...".
  void figure(const std::string& workload, const std::string& side, const Stats& s,
              const std::string& unit);
  // A supplementary single number (no compare line), e.g. peak purgatory.
  void note(const std::string& workload, const std::string& key, double value,
            const std::string& unit);
  // "compare: <workload> vs <anchor>: <ratio>x".
  void compare(const std::string& workload, const std::string& anchor, double ratio);

  // Shorthands: report both figures, then the compare line.
  // Lower is better (ns/op): ratio = anchor / stoa.
  void compare_time(const std::string& workload, const Stats& stoa, const std::string& anchor,
                    const Stats& anchor_stats, const std::string& unit = "ns/op");
  // Higher is better (ops/s): ratio = stoa / anchor.
  void compare_rate(const std::string& workload, const Stats& stoa, const std::string& anchor,
                    const Stats& anchor_stats, const std::string& unit = "ops/s");

  // Starts a sweep (at most one per run): `kind` is its --sweep name,
  // `workload` what each step runs, `unit` the rates' unit (e.g. reads/s).
  void sweep_begin(const std::string& kind, const std::string& workload,
                   const std::string& description, const std::string& anchor,
                   const std::string& unit);
  // Prints the step's line and records it.
  void sweep_step(const SweepStep& step);

  // A failed correctness check (e.g. a reader saw a freed block): printed as
  // "ERROR: ...", recorded, and stoa-bench exits non-zero at the end.
  void error(const std::string& message);
  bool failed() const { return !errors_.empty(); }

  // Writes everything reported so far as JSON. False on I/O failure.
  bool write_json(const std::string& path, const Config& cfg) const;

 private:
  struct Figure {
    std::string workload, side, unit;
    Stats stats;
  };
  struct Note {
    std::string workload, key, unit;
    double value;
  };
  struct Compare {
    std::string workload, anchor;
    double ratio;
  };
  struct Section {
    std::string workload, description;
  };
  struct Sweep {
    std::string kind, workload, description, anchor, unit;
    std::vector<SweepStep> steps;
  };
  std::vector<Section> sections_;
  Sweep sweep_;  // kind is empty unless sweep_begin was called
  std::vector<Figure> figures_;
  std::vector<Note> notes_;
  std::vector<Compare> compares_;
  std::vector<std::string> errors_;
};

using BenchFn = void (*)(const Config&, Reporter&);
using ChildFn = int (*)(const std::vector<std::string>& args);
// A sweep: steps at 1..max_procs processes, each reported with sweep_step.
using SweepFn = void (*)(const Config&, int max_procs, Reporter&);

struct BenchEntry {
  const char* name;
  const char* description;
  BenchFn fn;
};
struct ChildEntry {
  const char* name;
  ChildFn fn;
};
struct SweepEntry {
  const char* name;
  const char* description;
  SweepFn fn;
};
std::vector<BenchEntry>& bench_registry();
std::vector<ChildEntry>& child_registry();
std::vector<SweepEntry>& sweep_registry();

struct BenchRegistration {
  BenchRegistration(const char* name, const char* description, BenchFn fn) {
    bench_registry().push_back({name, description, fn});
  }
};
struct ChildRegistration {
  ChildRegistration(const char* name, ChildFn fn) { child_registry().push_back({name, fn}); }
};
struct SweepRegistration {
  SweepRegistration(const char* name, const char* description, SweepFn fn) {
    sweep_registry().push_back({name, description, fn});
  }
};

#define STOA_BENCH_CONCAT_INNER_(a, b) a##b
#define STOA_BENCH_CONCAT_(a, b) STOA_BENCH_CONCAT_INNER_(a, b)
// STOA_BENCH("name", "what it measures", fn): registers a workload.
#define STOA_BENCH(name, description, fn)                                               \
  static ::stoa_bench::BenchRegistration STOA_BENCH_CONCAT_(stoa_bench_reg_, __LINE__)( \
      name, description, fn)
// STOA_BENCH_CHILD("name", fn): an entry point for `stoa-bench --child name ...`.
#define STOA_BENCH_CHILD(name, fn) \
  static ::stoa_bench::ChildRegistration STOA_BENCH_CONCAT_(stoa_bench_child_, __LINE__)(name, fn)
// STOA_BENCH_SWEEP("name", "what it sweeps", fn): `stoa-bench --sweep name`.
#define STOA_BENCH_SWEEP(name, description, fn)                                           \
  static ::stoa_bench::SweepRegistration STOA_BENCH_CONCAT_(stoa_bench_sweep_, __LINE__)( \
      name, description, fn)

// --- timing helpers --------------------------------------------------------
using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Picks an iteration count so that run(n) (which returns elapsed seconds)
// takes about `target_s`. Runs run() a few times while calibrating (that
// doubles as warm-up).
uint64_t calibrate(const std::function<double(uint64_t)>& run, double target_s);

// Prints to stderr and exits(2): for setup failures that make a figure
// meaningless.
[[noreturn]] void die(const std::string& what);

// A child process running `stoa-bench --child NAME ARGS...` whose stdout is
// a pipe to us. Lines are read with read_line(). wait() reaps it and returns
// its exit status (or -1).
class Child {
 public:
  Child(const std::string& name, const std::vector<std::string>& args);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // The next line of the child's stdout without '\n'; false at EOF.
  bool read_line(std::string* line);
  int wait();

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

// The start signal of worker processes: the read end (fd[0]) is inherited
// by children spawned while it is open (no O_CLOEXEC), the write end is
// not; start() closes the write end, and every worker blocked in
// wait_for_start(fd) sees EOF at once. The destructor closes both ends.
struct StartPipe {
  StartPipe();
  ~StartPipe();
  StartPipe(const StartPipe&) = delete;
  StartPipe& operator=(const StartPipe&) = delete;
  void close_read();  // after the workers are spawned
  void start();
  int fd[2] = {-1, -1};
};
// In a worker: blocks until the start pipe's read end `fd` reaches EOF, then
// closes it.
void wait_for_start(int fd);

// A scratch directory, removed (recursively) when destroyed.
class TempDir {
 public:
  explicit TempDir(const Config& cfg, const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace stoa_bench

#endif  // STOA_BENCH_BENCH_H_
