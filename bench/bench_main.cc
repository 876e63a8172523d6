// bench/bench_main.cc — stoa-bench: option parsing, the workload registry,
// reporting (text and --json), child processes and scratch directories.
// The workloads themselves live in the other bench/*.cc files.
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench.h"

extern char** environ;

namespace stoa_bench {

bool g_huge_pages = true;
constexpr const char* kNoHugeEnv = "STOA_BENCH_NO_HUGE_PAGES";

std::vector<BenchEntry>& bench_registry() {
  static std::vector<BenchEntry> r;
  return r;
}
std::vector<ChildEntry>& child_registry() {
  static std::vector<ChildEntry> r;
  return r;
}
std::vector<SweepEntry>& sweep_registry() {
  static std::vector<SweepEntry> r;
  return r;
}

Stats summarize(std::vector<double> values) {
  Stats s;
  s.trials = values;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  s.median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  s.min = values.front();
  s.max = values.back();
  return s;
}

namespace {
std::string fmt_num(double v) {
  char buf[64];
  double a = std::fabs(v);
  if (a >= 1e6)
    std::snprintf(buf, sizeof buf, "%.3g", v);
  else if (a >= 100)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else if (a >= 10)
    std::snprintf(buf, sizeof buf, "%.1f", v);
  else
    std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}
}  // namespace

void Reporter::section(const std::string& workload, const std::string& description) {
  sections_.push_back({workload, description});
  std::printf("\n== %s: %s\n", workload.c_str(), description.c_str());
  std::fflush(stdout);
}

void Reporter::figure(const std::string& workload, const std::string& side, const Stats& s,
                      const std::string& unit) {
  figures_.push_back({workload, side, unit, s});
  std::printf("raw: %s %s: %s %s (min %s, max %s, %zu trials)\n", workload.c_str(), side.c_str(),
              fmt_num(s.median).c_str(), unit.c_str(), fmt_num(s.min).c_str(),
              fmt_num(s.max).c_str(), s.trials.size());
  std::fflush(stdout);
}

void Reporter::note(const std::string& workload, const std::string& key, double value,
                    const std::string& unit) {
  notes_.push_back({workload, key, unit, value});
  std::printf("note: %s %s: %s %s\n", workload.c_str(), key.c_str(), fmt_num(value).c_str(),
              unit.c_str());
  std::fflush(stdout);
}

void Reporter::compare(const std::string& workload, const std::string& anchor, double ratio) {
  compares_.push_back({workload, anchor, ratio});
  std::printf("compare: %s vs %s: %.2fx\n", workload.c_str(), anchor.c_str(), ratio);
  std::fflush(stdout);
}

void Reporter::error(const std::string& message) {
  errors_.push_back(message);
  std::printf("ERROR: %s\n", message.c_str());
  std::fflush(stdout);
}

void Reporter::compare_time(const std::string& workload, const Stats& stoa,
                            const std::string& anchor, const Stats& anchor_stats,
                            const std::string& unit) {
  figure(workload, "stoa", stoa, unit);
  figure(workload, anchor, anchor_stats, unit);
  compare(workload, anchor, stoa.median > 0 ? anchor_stats.median / stoa.median : 0);
}

void Reporter::compare_rate(const std::string& workload, const Stats& stoa,
                            const std::string& anchor, const Stats& anchor_stats,
                            const std::string& unit) {
  figure(workload, "stoa", stoa, unit);
  figure(workload, anchor, anchor_stats, unit);
  compare(workload, anchor, anchor_stats.median > 0 ? stoa.median / anchor_stats.median : 0);
}

void Reporter::sweep_begin(const std::string& kind, const std::string& workload,
                           const std::string& description, const std::string& anchor,
                           const std::string& unit) {
  sweep_ = Sweep{kind, workload, description, anchor, unit, {}};
  std::printf("\n== sweep %s (%s): %s\n", kind.c_str(), workload.c_str(), description.c_str());
  std::fflush(stdout);
}

void Reporter::sweep_step(const SweepStep& step) {
  sweep_.steps.push_back(step);
  std::printf(
      "sweep %s n=%d: stoa %.3g Mops/s %s %.3g Mops/s compare: %.2fx"
      " (cpu/op: stoa %s us, %s %s us; %zu trials)\n",
      sweep_.kind.c_str(), step.procs, step.stoa.median / 1e6, sweep_.anchor.c_str(),
      step.anchor.median / 1e6, step.ratio(), fmt_num(step.stoa_cpu_us).c_str(),
      sweep_.anchor.c_str(), fmt_num(step.anchor_cpu_us).c_str(), step.stoa.trials.size());
  std::fflush(stdout);
}

namespace {
nlohmann::json sweep_side_json(const Stats& s, double cpu_us) {
  return {{"median", s.median},
          {"min", s.min},
          {"max", s.max},
          {"trials", s.trials},
          {"cpu_us_per_op", cpu_us}};
}
}  // namespace

bool Reporter::write_json(const std::string& path, const Config& cfg) const {
  using nlohmann::json;
  json j;
  j["quick"] = cfg.quick;
  j["trials"] = cfg.trials;
  j["trial_seconds"] = cfg.trial_seconds;
  j["cpus"] = sysconf(_SC_NPROCESSORS_ONLN);
  json ws = json::array();
  for (const Section& sec : sections_) {
    json w;
    w["workload"] = sec.workload;
    w["description"] = sec.description;
    w["figures"] = json::array();
    for (const Figure& f : figures_) {
      if (f.workload != sec.workload) continue;
      w["figures"].push_back({{"side", f.side},
                              {"unit", f.unit},
                              {"median", f.stats.median},
                              {"min", f.stats.min},
                              {"max", f.stats.max},
                              {"trials", f.stats.trials}});
    }
    w["notes"] = json::array();
    for (const Note& n : notes_) {
      if (n.workload != sec.workload) continue;
      w["notes"].push_back({{"key", n.key}, {"value", n.value}, {"unit", n.unit}});
    }
    w["compares"] = json::array();
    for (const Compare& c : compares_) {
      if (c.workload != sec.workload) continue;
      w["compares"].push_back({{"anchor", c.anchor}, {"ratio", c.ratio}});
    }
    ws.push_back(std::move(w));
  }
  j["workloads"] = std::move(ws);
  if (!sweep_.kind.empty()) {
    json steps = json::array();
    for (const SweepStep& st : sweep_.steps) {
      steps.push_back(
          {{"procs", st.procs},
           {"stoa", sweep_side_json(st.stoa, st.stoa_cpu_us)},
           {sweep_.anchor, sweep_side_json(st.anchor, st.anchor_cpu_us)},
           // Higher is better for Stoa in both: rate ratio, CPU-per-op ratio.
           {"ratio", st.ratio()},
           {"cpu_ratio", st.stoa_cpu_us > 0 ? st.anchor_cpu_us / st.stoa_cpu_us : 0.0}});
    }
    j["sweep"] = {{"kind", sweep_.kind},
                  {"workload", sweep_.workload},
                  {"description", sweep_.description},
                  {"anchor", sweep_.anchor},
                  {"unit", sweep_.unit},
                  {"steps", std::move(steps)}};
  }
  j["errors"] = errors_;
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  return bool(out);
}

uint64_t calibrate(const std::function<double(uint64_t)>& run, double target_s) {
  uint64_t n = 1000;
  for (;;) {
    double t = run(n);
    if (t >= target_s / 8 || n >= (uint64_t{1} << 40)) {
      double scaled = double(n) * target_s / std::max(t, 1e-9);
      return std::max<uint64_t>(1000, uint64_t(scaled));
    }
    n *= 4;
  }
}

namespace {
// Scratch directories alive now, so that die() and a fatal signal can
// remove them too. The signal handler only spawns an `rm -rf` with a
// prebuilt argv (std::filesystem and malloc are not async-signal-safe).
std::vector<std::string>& live_tempdirs() {
  static std::vector<std::string> dirs;
  return dirs;
}
constexpr size_t kMaxRmArgs = 64;
char* g_rm_argv[kMaxRmArgs + 3];  // "rm", "-rf", dirs..., nullptr
std::vector<std::string> g_rm_storage;

void rebuild_rm_argv() {
  g_rm_argv[2] = nullptr;  // a signal arriving meanwhile removes nothing
  g_rm_storage = live_tempdirs();
  size_t n = std::min(g_rm_storage.size(), kMaxRmArgs);
  g_rm_argv[2 + n] = nullptr;
  for (size_t i = 1; i < n; i++) g_rm_argv[2 + i] = g_rm_storage[i].data();
  if (n > 0) g_rm_argv[2] = g_rm_storage[0].data();  // last: the list is complete
}

extern "C" void on_fatal_signal(int sig) {
  if (g_rm_argv[2] != nullptr) {
    // Not fork(): it runs pthread_atfork handlers (libstoa has one), which
    // may deadlock in a signal handler. glibc's posix_spawn uses
    // clone(CLONE_VM | CLONE_VFORK) and runs none.
    pid_t p;
    if (posix_spawn(&p, "/bin/rm", nullptr, nullptr, g_rm_argv, environ) == 0) {
      int st;
      while (waitpid(p, &st, 0) < 0 && errno == EINTR) {
      }
    }
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void install_signal_cleanup() {
  static char rm[] = "rm", rf[] = "-rf";
  g_rm_argv[0] = rm;
  g_rm_argv[1] = rf;
  g_rm_argv[2] = nullptr;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) signal(sig, on_fatal_signal);
}
}  // namespace

void die(const std::string& what) {
  std::fprintf(stderr, "stoa-bench: %s\n", what.c_str());
  for (const std::string& d : live_tempdirs()) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);
  }
  std::exit(2);
}

StartPipe::StartPipe() {
  if (pipe2(fd, O_CLOEXEC) != 0) die("pipe2: " + std::string(std::strerror(errno)));
  if (fcntl(fd[0], F_SETFD, 0) != 0) die("fcntl: " + std::string(std::strerror(errno)));
}
StartPipe::~StartPipe() {
  close_read();
  start();
}
void StartPipe::close_read() {
  if (fd[0] >= 0) ::close(fd[0]);
  fd[0] = -1;
}
void StartPipe::start() {
  if (fd[1] >= 0) ::close(fd[1]);
  fd[1] = -1;
}
void wait_for_start(int fd) {
  char c;
  ssize_t n;
  do n = ::read(fd, &c, 1);
  while (n < 0 && errno == EINTR);
  ::close(fd);
}

Child::Child(const std::string& name, const std::vector<std::string>& args) {
  // Exec /proc/self/exe, not the path it names: the binary may have been
  // relinked (replaced) since this process started.
  const char* exe = "/proc/self/exe";
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) die("pipe: " + std::string(std::strerror(errno)));
  std::vector<std::string> argv_s = {"stoa-bench", "--child", name};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  int rc = posix_spawn(&pid_, exe, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) die("posix_spawn: " + std::string(std::strerror(rc)));
  out_ = fdopen(fds[0], "r");
}

Child::~Child() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    wait();
  }
  if (out_) std::fclose(out_);
}

bool Child::read_line(std::string* line) {
  char buf[1024];
  if (!std::fgets(buf, sizeof buf, out_)) return false;
  *line = buf;
  if (!line->empty() && line->back() == '\n') line->pop_back();
  return true;
}

int Child::wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  pid_t r;
  do r = waitpid(pid_, &status, 0);
  while (r < 0 && errno == EINTR);
  pid_ = -1;
  if (r < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TempDir::TempDir(const Config& cfg, const std::string& tag) {
  std::string tmpl = cfg.tmpdir + "/stoa-bench-" + tag + ".XXXXXX";
  if (!mkdtemp(tmpl.data())) die("mkdtemp " + tmpl + ": " + std::strerror(errno));
  path_ = tmpl;
  live_tempdirs().push_back(path_);
  rebuild_rm_argv();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  auto& dirs = live_tempdirs();
  dirs.erase(std::remove(dirs.begin(), dirs.end(), path_), dirs.end());
  rebuild_rm_argv();
}

}  // namespace stoa_bench

int main(int argc, char** argv) {
  using namespace stoa_bench;
  // Helper processes: `stoa-bench --child NAME ARGS...`.
  if (argc >= 3 && std::strcmp(argv[1], "--child") == 0) {
    // A helper must not outlive the bench (it may spin until told to stop).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) return 3;
    g_huge_pages = std::getenv(kNoHugeEnv) == nullptr;  // the parent's --no-huge-pages
    for (const ChildEntry& c : child_registry()) {
      if (c.name == std::string(argv[2]))
        return c.fn(std::vector<std::string>(argv + 3, argv + argc));
    }
    std::fprintf(stderr, "stoa-bench: no child entry point %s\n", argv[2]);
    return 2;
  }

  install_signal_cleanup();
  CLI::App app{"stoa-bench: Stoa side by side with its anchors, in one run"};
  Config cfg;
  std::string json_path, filter, sweep;
  bool list = false;
  int trials = 0;
  int max_procs = int(sysconf(_SC_NPROCESSORS_ONLN));
  double seconds = 0;
  std::vector<std::string> sweep_names;
  for (const SweepEntry& s : sweep_registry()) sweep_names.push_back(s.name);
  app.add_flag("--quick", cfg.quick, "Short trials (the whole run takes seconds)");
  app.add_option("--json", json_path, "Also write the results to this file as JSON");
  app.add_option("--filter", filter, "Run only workloads whose name contains this");
  app.add_option("--trials", trials,
                 "Trials per figure (median reported); default 5, 9 without --quick "
                 "(--sweep: 3 with --quick, 5 without)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--seconds", seconds,
                 "Target seconds per timed trial; default 0.25, 1 without --quick "
                 "(--sweep: 0.25 with --quick, 0.5 without)")
      ->check(CLI::Range(0.001, 600.0));
  bool no_huge = false;
  app.add_flag("--no-huge-pages", no_huge, "Open Stoa stores with Options::huge_pages off");
  app.add_option("--tmpdir", cfg.tmpdir, "Where scratch stores are created (default /tmp)");
  app.add_flag("--list", list, "List the workloads and sweeps and exit");
  auto* sweep_opt =
      app.add_option("--sweep", sweep,
                     "Instead of the workloads, run one at 1..--max processes beside its anchor")
          ->check(CLI::IsMember(sweep_names));
  app.add_option("--max", max_procs, "Most processes a --sweep runs (default: the CPUs online)")
      ->check(CLI::Range(1, 1024))
      ->needs(sweep_opt);
  app.get_option("--filter")->excludes(sweep_opt);
  CLI11_PARSE(app, argc, argv);
  g_huge_pages = !no_huge;
  if (no_huge) setenv(kNoHugeEnv, "1", 1);  // helpers inherit the environment

  if (list) {
    for (const BenchEntry& b : bench_registry()) std::printf("%-28s %s\n", b.name, b.description);
    for (const SweepEntry& s : sweep_registry())
      std::printf("--sweep %-20s %s\n", s.name, s.description);
    return 0;
  }

  if (!sweep.empty()) {
    cfg.trials = trials > 0 ? trials : (cfg.quick ? 3 : 5);
    cfg.trial_seconds = seconds > 0 ? seconds : (cfg.quick ? 0.25 : 0.5);
    std::printf(
        "stoa-bench: sweep %s, n = 1..%d processes, %d trials per step (median), "
        "~%.2g s per trial, %ld CPUs\n",
        sweep.c_str(), max_procs, cfg.trials, cfg.trial_seconds, sysconf(_SC_NPROCESSORS_ONLN));
    Reporter rep;
    for (const SweepEntry& s : sweep_registry())
      if (s.name == sweep) s.fn(cfg, max_procs, rep);
    if (!json_path.empty() && !rep.write_json(json_path, cfg)) {
      std::fprintf(stderr, "stoa-bench: cannot write %s\n", json_path.c_str());
      return 1;
    }
    return rep.failed() ? 1 : 0;
  }

  cfg.trials = trials > 0 ? trials : (cfg.quick ? 5 : 9);
  cfg.trial_seconds = seconds > 0 ? seconds : (cfg.quick ? 0.25 : 1.0);

  std::printf("stoa-bench: %s, %d trials per figure (median), ~%.2g s per trial, %ld CPUs\n",
              cfg.quick ? "quick" : "full", cfg.trials, cfg.trial_seconds,
              sysconf(_SC_NPROCESSORS_ONLN));
  Reporter rep;
  int ran = 0;
  for (const BenchEntry& b : bench_registry()) {
    if (!filter.empty() && std::string(b.name).find(filter) == std::string::npos) continue;
    b.fn(cfg, rep);
    ran++;
  }
  if (ran == 0) {
    std::fprintf(stderr, "stoa-bench: no workload matches --filter %s\n", filter.c_str());
    return 2;
  }
  if (!json_path.empty() && !rep.write_json(json_path, cfg)) {
    std::fprintf(stderr, "stoa-bench: cannot write %s\n", json_path.c_str());
    return 1;
  }
  return rep.failed() ? 1 : 0;
}
