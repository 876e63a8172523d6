// bench/cycle_bench.cc — cycle locking side by side with liburcu (memb flavour).
//
// Workloads (see bench/README.md):
//   pin-unpin-1t         one thread: SessionCore::pin(); unpin(); vs
//                        urcu_memb_read_lock(); urcu_memb_read_unlock();
//   pin-unpin-2t         the same on two threads at once, each its own session
//                        (or its own liburcu registration)
//   reclaim-1w1r         one writer swaps 64 B blocks into a shared slot and
//                        retires the old ones, one reader pins/reads/unpins
//   reclaim-1w1r-xproc   the same, with Stoa's reader in another process;
//                        liburcu's registry is per process, so its anchor is
//                        its same-process figure (measured again, interleaved)
//
// Same work on both sides: the same loop shapes, the same payload written and
// checked, the same slot exchange; allocation is each side's own (Stoa's
// shared-memory heap vs malloc), because that is what each offers.
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "api/access.h"
#include "bench.h"
#include "session/session_core.h"
#include "stoa/store.h"
#include "store/store_impl.h"

// liburcu after Stoa's headers: its map headers define short macros
// (call_rcu, synchronize_rcu, ...). _LGPL_SOURCE inlines the read side.
#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>

namespace stoa_bench {

namespace urcu_call {
double read_lock_unlock(uint64_t n);  // urcu_call.cc: library calls, not inlined
}

namespace {

using stoa::internal::SessionCore;
using Offset = uint64_t;

// --- shared helpers --------------------------------------------------------

std::unique_ptr<stoa::Store> open_store(const std::string& dir) {
  stoa::Options o;
  o.create_if_missing = true;
  o.huge_pages = g_huge_pages;
  auto r = stoa::Store::open(dir, o);
  if (!r.ok()) die("Store::open " + dir + ": " + r.error().to_string());
  return std::move(r).value();
}

stoa::Session open_session(stoa::Store& store) {
  auto r = store.session();
  if (!r.ok()) die("Store::session: " + r.error().to_string());
  return std::move(r).value();
}

void check_ok(const stoa::Status& st, const char* what) {
  if (!st.ok()) die(std::string(what) + ": " + st.error().to_string());
}

// The payload both sides write and readers check: 6 words (48 B), all
// derived from a sequence number, so a reader sees a damaged or reused block.
constexpr int kWords = 6;
constexpr uint64_t kMix = 0x9E3779B97F4A7C15ull;
constexpr size_t kBlockBytes = 64;  // what each side asks its allocator for

inline void fill(uint64_t* w, uint64_t seq) {
  w[0] = seq;
  for (int i = 1; i < kWords; i++) w[i] = seq * kMix + uint64_t(i);
}
inline bool intact(const uint64_t* w) {
  uint64_t s = w[0];
  bool ok = true;
  for (int i = 1; i < kWords; i++) ok &= (w[i] == s * kMix + uint64_t(i));
  return ok;
}

// --- pin/unpin -------------------------------------------------------------

// The three sides of a pin/unpin figure, as one thread runs them. Built and
// destroyed on that thread: a Stoa session, and a liburcu registration that
// both liburcu loops use.
enum PinSide { kStoa = 0, kUrcuInline = 1, kUrcuCall = 2, kPinSides = 3 };
const char* const kPinSideNames[kPinSides] = {"stoa", "liburcu-memb", "liburcu-memb-call"};

struct PinThread {
  explicit PinThread(stoa::Store& store)
      : session(open_session(store)), core(stoa::internal::core_of(session)) {
    urcu_memb_register_thread();
  }
  ~PinThread() {
    urcu_memb_unregister_thread();
    (void)session.close();
  }
  // Seconds for n pin+unpin pairs on one side.
  double run(int side, uint64_t n) {
    auto t0 = Clock::now();
    switch (side) {
      case kStoa:
        for (uint64_t i = 0; i < n; i++) {
          core->pin();
          core->unpin();
        }
        break;
      case kUrcuInline:
        for (uint64_t i = 0; i < n; i++) {
          urcu_memb_read_lock();
          urcu_memb_read_unlock();
        }
        break;
      default:
        return urcu_call::read_lock_unlock(n);
    }
    return seconds_since(t0);
  }
  stoa::Session session;
  SessionCore* core;
};

// Runs `threads` threads. Thread 0 calibrates each side's iteration count;
// then each trial runs the sides one after another (interleaved, so a slow
// spell of a shared machine hits all sides), every side starting on all
// threads together. A trial's figure is the mean over threads of ns per pair.
std::vector<Stats> run_pin(const Config& cfg, int threads, stoa::Store& store) {
  std::barrier sync(threads);
  // per[side][thread][trial]
  std::vector<std::vector<std::vector<double>>> per(kPinSides,
                                                    std::vector<std::vector<double>>(threads));
  uint64_t n[kPinSides] = {};
  auto body = [&](int i) {
    PinThread pt(store);
    if (i == 0) {
      for (int s = 0; s < kPinSides; s++)
        n[s] = calibrate([&](uint64_t k) { return pt.run(s, k); }, cfg.trial_seconds / 4);
    }
    sync.arrive_and_wait();
    for (int t = 0; t < cfg.trials; t++) {
      for (int s = 0; s < kPinSides; s++) {
        sync.arrive_and_wait();
        per[s][i].push_back(pt.run(s, n[s]) * 1e9 / double(n[s]));
      }
    }
    sync.arrive_and_wait();
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; i++) ts.emplace_back(body, i);
  for (auto& t : ts) t.join();
  std::vector<Stats> out;
  for (int s = 0; s < kPinSides; s++) {
    std::vector<double> values;
    for (int t = 0; t < cfg.trials; t++) {
      double sum = 0;
      for (int i = 0; i < threads; i++) sum += per[s][i][t];
      values.push_back(sum / threads);
    }
    out.push_back(summarize(values));
  }
  return out;
}

void print_membarrier_info() {
  static bool done = false;
  if (done) return;
  done = true;
  int mask = int(::syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0));
  // liburcu decides at its first registration; make sure that happened.
  urcu_memb_register_thread();
  int urcu_mb = urcu_memb_has_sys_membarrier;
  urcu_memb_unregister_thread();
  // Idempotent: tells whether Stoa's pins take the membarrier fast path
  // (relaxed store) or the seq_cst fallback in this process.
  bool stoa_mb = stoa::cycle::CycleManager::register_membarrier();
  std::printf(
      "info: membarrier GLOBAL_EXPEDITED %s, PRIVATE_EXPEDITED %s; Stoa pins: %s; "
      "liburcu-memb read locks: %s\n",
      mask > 0 && (mask & MEMBARRIER_CMD_GLOBAL_EXPEDITED) ? "available" : "MISSING",
      mask > 0 && (mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED) ? "available" : "MISSING",
      stoa_mb ? "membarrier fast path" : "seq_cst fallback (no membarrier)",
      urcu_mb ? "membarrier fast path" : "full-fence fallback (no membarrier)");
}

void pin_bench(const Config& cfg, Reporter& rep, int threads) {
  print_membarrier_info();
  std::string name = "pin-unpin-" + std::to_string(threads) + "t";
  rep.section(name, threads == 1 ? "ns per pin+unpin pair, one thread"
                                 : "ns per pin+unpin pair per thread, " + std::to_string(threads) +
                                       " threads at once, each its own session/registration");
  TempDir dir(cfg, "pin");
  auto store = open_store(dir.path() + "/store");
  std::vector<Stats> r = run_pin(cfg, threads, *store);
  // Stoa's pin()/unpin() are calls into libstoa; the first anchor is
  // liburcu's inlined fast path (the strongest), the second its library call.
  rep.compare_time(name, r[kStoa], kPinSideNames[kUrcuInline], r[kUrcuInline]);
  rep.figure(name, kPinSideNames[kUrcuCall], r[kUrcuCall], "ns/op");
  rep.compare(name, kPinSideNames[kUrcuCall],
              r[kStoa].median > 0 ? r[kUrcuCall].median / r[kStoa].median : 0);
}

void pin_1t(const Config& cfg, Reporter& rep) { pin_bench(cfg, rep, 1); }
void pin_2t(const Config& cfg, Reporter& rep) { pin_bench(cfg, rep, 2); }

// --- reclamation -----------------------------------------------------------

// Context for the reclamation figures: what one membarrier(GLOBAL_EXPEDITED)
// (the barrier Stoa's cycle manager issues per advance attempt) costs right
// now, with a peer thread spinning on the other CPU. On virtual machines
// this swings widely with the host's load (an IPI to a descheduled vCPU
// waits for the host), and the Stoa writer pays it inline in retire().
double membarrier_global_us() {
  std::atomic<bool> stop{false};
  std::thread peer([&] {
    while (!stop.load(std::memory_order_relaxed)) {
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  constexpr int kCalls = 2000;
  auto t0 = Clock::now();
  for (int i = 0; i < kCalls; i++)
    (void)::syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
  double us = seconds_since(t0) * 1e6 / kCalls;
  stop.store(true);
  peer.join();
  return us;
}

struct ReclaimTrial {
  uint64_t ops = 0;    // writer swaps (alloc + fill + publish + exchange + retire)
  double loop_s = 0;   // the writer's timed loop
  double drain_s = 0;  // from the loop's end until all it retired is freed
  bool drained = true;
  uint64_t reads = 0;              // reader pin/read/check/unpin rounds
  uint64_t bad = 0;                // reads that saw a damaged block: must be 0
  uint64_t peak_pending = 0;       // retired-not-yet-freed blocks, sampled every 64 ops
  uint64_t end_pending_bytes = 0;  // Stoa: the writer's purgatory bytes at the loop's end
  double ops_per_s() const { return double(ops) / (loop_s + drain_s); }
  double loop_ops_per_s() const { return double(ops) / loop_s; }
};

constexpr int kCheckEvery = 64;  // writer ops between clock checks (both sides)
constexpr double kDrainLimitS = 10;

// The Stoa writer: swaps fresh blocks into *slot for `seconds`, then collects
// until its purgatory is empty.
void stoa_writer(SessionCore* w, uint64_t* slot, double seconds, uint64_t* seq, ReclaimTrial* t) {
  auto& purg = stoa::cycle::purgatory_of(*w->slot_ptr());
  auto t0 = Clock::now();
  auto deadline =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (;;) {
    for (int k = 0; k < kCheckEvery; k++) {
      auto r = w->alloc(kBlockBytes);
      if (!r.ok()) die("alloc: " + r.error().to_string());
      Offset n = *r;
      fill(reinterpret_cast<uint64_t*>(w->write_ptr(n)), ++*seq);
      check_ok(w->publish(n), "publish");
      Offset old = __atomic_exchange_n(slot, n, __ATOMIC_ACQ_REL);
      check_ok(w->retire(old), "retire");  // collects every so often by itself
    }
    t->ops += kCheckEvery;
    t->peak_pending = std::max(t->peak_pending, purg.objects.load(std::memory_order_relaxed));
    if (Clock::now() >= deadline) break;
  }
  auto t1 = Clock::now();
  t->loop_s = std::chrono::duration<double>(t1 - t0).count();
  t->end_pending_bytes = purg.bytes.load(std::memory_order_relaxed);
  while (purg.objects.load(std::memory_order_relaxed) > 0) {
    auto r = w->collect();
    if (!r.ok()) die("collect: " + r.error().to_string());
    if (seconds_since(t1) > kDrainLimitS) {
      t->drained = false;
      break;
    }
    if (*r == 0) std::this_thread::yield();
  }
  t->drain_s = seconds_since(t1);
}

// A published control block holding the shared slot word and the stop flag
// on one cache line of their own (like liburcu's g_uslot below), and the
// first node.
struct StoaShared {
  Offset ctrl = 0;  // the control block (128 B)
  Offset slot = 0;  // the 64 B-aligned line inside it: [0] the slot, [1] stop flag
  Offset first = 0;
};
StoaShared stoa_setup(SessionCore* w, uint64_t* seq) {
  StoaShared s;
  auto c = w->alloc(128);
  if (!c.ok()) die("alloc: " + c.error().to_string());
  auto n = w->alloc(kBlockBytes);
  if (!n.ok()) die("alloc: " + n.error().to_string());
  s.ctrl = *c;
  s.slot = (s.ctrl + 63) & ~Offset{63};  // the mapping is page-aligned
  s.first = *n;
  fill(reinterpret_cast<uint64_t*>(w->write_ptr(s.first)), ++*seq);
  check_ok(w->publish(s.first), "publish");
  uint64_t* line = reinterpret_cast<uint64_t*>(w->write_ptr(s.slot));
  line[1] = 0;
  __atomic_store_n(&line[0], s.first, __ATOMIC_RELEASE);
  check_ok(w->publish(s.ctrl), "publish");
  return s;
}
// After the readers are gone: frees the current node and the control block.
void stoa_teardown(SessionCore* w, const StoaShared& s) {
  uint64_t* line = reinterpret_cast<uint64_t*>(w->write_ptr(s.slot));
  check_ok(w->free(__atomic_load_n(&line[0], __ATOMIC_ACQUIRE)), "free");
  check_ok(w->free(s.ctrl), "free");
}

ReclaimTrial stoa_reclaim_trial(stoa::Store& store, double seconds) {
  ReclaimTrial t;
  stoa::Session ws = open_session(store);
  SessionCore* w = stoa::internal::core_of(ws);
  uint64_t seq = 0;
  StoaShared sh = stoa_setup(w, &seq);
  uint64_t* slot = reinterpret_cast<uint64_t*>(w->write_ptr(sh.slot));

  std::atomic<bool> ready{false}, stop{false};
  uint64_t reads = 0, bad = 0;
  std::thread reader([&] {
    stoa::Session rs = open_session(store);
    SessionCore* r = stoa::internal::core_of(rs);
    const uint64_t* rslot = reinterpret_cast<const uint64_t*>(r->view(sh.slot));
    uint64_t nr = 0, nb = 0;
    ready.store(true, std::memory_order_release);
    while (!stop.load(std::memory_order_relaxed)) {
      r->pin();
      Offset off = __atomic_load_n(rslot, __ATOMIC_ACQUIRE);
      nb += !intact(reinterpret_cast<const uint64_t*>(r->view(off)));
      r->unpin();
      nr++;
    }
    reads = nr;
    bad = nb;
    (void)rs.close();
  });
  while (!ready.load(std::memory_order_acquire)) std::this_thread::yield();
  stoa_writer(w, slot, seconds, &seq, &t);
  stop.store(true, std::memory_order_relaxed);
  reader.join();
  t.reads = reads;
  t.bad = bad;
  stoa_teardown(w, sh);
  (void)ws.close();
  return t;
}

// liburcu: a 64 B malloc block, payload plus the rcu_head call_rcu needs.
struct UNode {
  uint64_t w[kWords];
  struct rcu_head head;
};
static_assert(sizeof(UNode) == kBlockBytes);

// Each on its own cache line: the callback thread bumps g_ufreed per free,
// which must not slow the slot's readers down (Stoa's slot has a line of
// its own, in its control block).
alignas(64) UNode* g_uslot = nullptr;           // the shared slot
alignas(64) std::atomic<uint64_t> g_ufreed{0};  // blocks freed by call_rcu callbacks

void free_unode(struct rcu_head* h) {
  free(caa_container_of(h, UNode, head));
  g_ufreed.fetch_add(1, std::memory_order_relaxed);
}

ReclaimTrial urcu_reclaim_trial(double seconds) {
  ReclaimTrial t;
  urcu_memb_register_thread();  // call_rcu and rcu_barrier need a registered thread
  uint64_t seq = 0;
  UNode* first = static_cast<UNode*>(malloc(sizeof(UNode)));
  if (!first) die("malloc");
  fill(first->w, ++seq);
  rcu_assign_pointer(g_uslot, first);

  std::atomic<bool> ready{false}, stop{false};
  uint64_t reads = 0, bad = 0;
  std::thread reader([&] {
    urcu_memb_register_thread();
    uint64_t nr = 0, nb = 0;
    ready.store(true, std::memory_order_release);
    while (!stop.load(std::memory_order_relaxed)) {
      urcu_memb_read_lock();
      UNode* n = rcu_dereference(g_uslot);
      nb += !intact(n->w);
      urcu_memb_read_unlock();
      nr++;
    }
    reads = nr;
    bad = nb;
    urcu_memb_unregister_thread();
  });
  while (!ready.load(std::memory_order_acquire)) std::this_thread::yield();

  uint64_t freed0 = g_ufreed.load();
  uint64_t retired = 0;
  auto t0 = Clock::now();
  auto deadline =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (;;) {
    for (int k = 0; k < kCheckEvery; k++) {
      UNode* n = static_cast<UNode*>(malloc(sizeof(UNode)));
      if (!n) die("malloc");
      fill(n->w, ++seq);
      UNode* old = rcu_xchg_pointer(&g_uslot, n);
      urcu_memb_call_rcu(&old->head, free_unode);
    }
    retired += kCheckEvery;
    t.ops += kCheckEvery;
    t.peak_pending =
        std::max(t.peak_pending, retired - (g_ufreed.load(std::memory_order_relaxed) - freed0));
    if (Clock::now() >= deadline) break;
  }
  auto t1 = Clock::now();
  t.loop_s = std::chrono::duration<double>(t1 - t0).count();
  urcu_memb_barrier();  // waits for every queued callback: all retired blocks freed
  t.drain_s = seconds_since(t1);
  t.drained = g_ufreed.load() - freed0 == retired;

  stop.store(true, std::memory_order_relaxed);
  reader.join();
  t.reads = reads;
  t.bad = bad;
  urcu_memb_synchronize_rcu();
  free(g_uslot);
  g_uslot = nullptr;
  urcu_memb_unregister_thread();
  return t;
}

// Summaries over trials of one side.
struct ReclaimSummary {
  Stats ops, loop_ops, drain_ms, reads;
  uint64_t bad = 0, peak_pending = 0, end_pending_bytes_max = 0;
  bool drained = true;
};
ReclaimSummary summarize_reclaim(const std::vector<ReclaimTrial>& ts) {
  ReclaimSummary s;
  std::vector<double> ops, loop_ops, drain, reads;
  for (const auto& t : ts) {
    ops.push_back(t.ops_per_s());
    loop_ops.push_back(t.loop_ops_per_s());
    drain.push_back(t.drain_s * 1e3);
    reads.push_back(double(t.reads) / (t.loop_s + t.drain_s));
    s.bad += t.bad;
    s.peak_pending = std::max(s.peak_pending, t.peak_pending);
    s.end_pending_bytes_max = std::max(s.end_pending_bytes_max, t.end_pending_bytes);
    s.drained &= t.drained;
  }
  s.ops = summarize(ops);
  s.loop_ops = summarize(loop_ops);
  s.drain_ms = summarize(drain);
  s.reads = summarize(reads);
  return s;
}

void report_side(Reporter& rep, const std::string& name, const std::string& side,
                 const ReclaimSummary& s) {
  rep.figure(name, side + " writer-loop-only", s.loop_ops, "ops/s");
  rep.figure(name, side + " final-drain", s.drain_ms, "ms");
  rep.figure(name, side + " reader", s.reads, "reads/s");
  rep.note(name, side + " peak-pending-blocks", double(s.peak_pending), "blocks");
  rep.note(name, side + " damaged-reads", double(s.bad), "reads");
  if (s.bad != 0) rep.error(name + ": " + side + " reader saw damaged blocks");
  if (!s.drained) rep.error(name + ": " + side + " did not drain its retired blocks");
}

void report_store_after(Reporter& rep, const std::string& name, stoa::Store& store,
                        const ReclaimSummary& s) {
  rep.note(name, "stoa purgatory-bytes-at-loop-end-max", double(s.end_pending_bytes_max), "B");
  auto st = store.stats();
  if (!st.ok()) die("stats: " + st.error().to_string());
  rep.note(name, "stoa stats.purgatory_bytes-at-end", double(st->purgatory_bytes), "B");
  rep.note(name, "stoa stats.file_size-at-end", double(st->file_size), "B");
}

const char* kReclaimDesc =
    "writer ops/s: alloc 64 B, fill, publish, exchange into a shared slot, retire the old "
    "block; one reader pins/reads/checks/unpins meanwhile; ops counted until all retired "
    "blocks are freed (loop + final drain)";

void reclaim_1w1r(const Config& cfg, Reporter& rep) {
  const std::string name = "reclaim-1w1r";
  print_membarrier_info();
  rep.section(name, kReclaimDesc);
  TempDir dir(cfg, "reclaim");
  auto store = open_store(dir.path() + "/store");
  (void)stoa_reclaim_trial(*store, cfg.trial_seconds / 4);  // warm-up, untimed
  (void)urcu_reclaim_trial(cfg.trial_seconds / 4);
  double mb_before = membarrier_global_us();
  std::vector<ReclaimTrial> st, ut;
  // Interleave the sides so slow drifts of a shared machine hit both.
  for (int i = 0; i < cfg.trials; i++) {
    st.push_back(stoa_reclaim_trial(*store, cfg.trial_seconds));
    ut.push_back(urcu_reclaim_trial(cfg.trial_seconds));
  }
  double mb_after = membarrier_global_us();
  ReclaimSummary ss = summarize_reclaim(st), us = summarize_reclaim(ut);
  rep.note(name, "membarrier-global-cost-before-trials", mb_before, "us/call");
  rep.note(name, "membarrier-global-cost-after-trials", mb_after, "us/call");
  report_side(rep, name, "stoa", ss);
  report_side(rep, name, "liburcu-memb", us);
  report_store_after(rep, name, *store, ss);
  rep.compare_rate(name, ss.ops, "liburcu-memb", us.ops);
}

// --- reclamation, reader in another process ---------------------------------

// `stoa-bench --child cycle-reader DIR SLOT`: opens the store, prints
// "ready", pins/reads/checks/unpins until the stop flag (the word after the
// slot) is set, prints "reads bad".
int cycle_reader_child(const std::vector<std::string>& args) {
  if (args.size() != 2) return 2;
  stoa::Options o;
  o.create_if_missing = false;
  auto sr = stoa::Store::open(args[0], o);
  if (!sr.ok()) {
    std::fprintf(stderr, "child: open: %s\n", sr.error().to_string().c_str());
    return 1;
  }
  auto store = std::move(sr).value();
  stoa::Session s = open_session(*store);
  SessionCore* r = stoa::internal::core_of(s);
  Offset ctrl_off = std::stoull(args[1]);
  auto cr = r->read(ctrl_off, 2 * sizeof(uint64_t));
  if (!cr.ok()) {
    std::fprintf(stderr, "child: read ctrl: %s\n", cr.error().to_string().c_str());
    return 1;
  }
  const uint64_t* ctrl = reinterpret_cast<const uint64_t*>(*cr);
  std::printf("ready\n");
  std::fflush(stdout);
  uint64_t reads = 0, bad = 0;
  while (!__atomic_load_n(&ctrl[1], __ATOMIC_RELAXED)) {
    r->pin();
    Offset off = __atomic_load_n(&ctrl[0], __ATOMIC_ACQUIRE);
    // read() maps what the writer's process grew the file by: the checked
    // path a reader in another process must take.
    auto p = r->read(off, kWords * sizeof(uint64_t));
    bad += !p.ok() || !intact(reinterpret_cast<const uint64_t*>(*p));
    r->unpin();
    reads++;
  }
  std::printf("%llu %llu\n", (unsigned long long)reads, (unsigned long long)bad);
  std::fflush(stdout);
  (void)s.close();
  return 0;
}

ReclaimTrial stoa_xproc_trial(stoa::Store& store, double seconds) {
  ReclaimTrial t;
  stoa::Session ws = open_session(store);
  SessionCore* w = stoa::internal::core_of(ws);
  uint64_t seq = 0;
  StoaShared sh = stoa_setup(w, &seq);
  uint64_t* ctrl = reinterpret_cast<uint64_t*>(w->write_ptr(sh.slot));
  Child child("cycle-reader", {store.path(), std::to_string(sh.slot)});
  std::string line;
  if (!child.read_line(&line) || line != "ready") die("cycle-reader child did not start");
  stoa_writer(w, &ctrl[0], seconds, &seq, &t);
  __atomic_store_n(&ctrl[1], 1, __ATOMIC_RELEASE);
  unsigned long long reads = 0, bad = 0;
  if (!child.read_line(&line) || std::sscanf(line.c_str(), "%llu %llu", &reads, &bad) != 2)
    die("cycle-reader child gave no result");
  if (int rc = child.wait(); rc != 0) die("cycle-reader child exited with " + std::to_string(rc));
  t.reads = reads;
  t.bad = bad;
  stoa_teardown(w, sh);
  (void)ws.close();
  return t;
}

void reclaim_xproc(const Config& cfg, Reporter& rep) {
  const std::string name = "reclaim-1w1r-xproc";
  print_membarrier_info();
  rep.section(name, std::string(kReclaimDesc) +
                        "; Stoa's reader is another process that opened the store itself "
                        "(liburcu cannot do this: its anchor is its same-process figure, "
                        "measured again here)");
  TempDir dir(cfg, "xproc");
  auto store = open_store(dir.path() + "/store");
  (void)stoa_xproc_trial(*store, cfg.trial_seconds / 4);  // warm-up, untimed
  (void)urcu_reclaim_trial(cfg.trial_seconds / 4);
  double mb_before = membarrier_global_us();
  // liburcu's same-process figure, measured again here (interleaved) so
  // both sides see the same spell of the machine.
  std::vector<ReclaimTrial> st, ut;
  for (int i = 0; i < cfg.trials; i++) {
    st.push_back(stoa_xproc_trial(*store, cfg.trial_seconds));
    ut.push_back(urcu_reclaim_trial(cfg.trial_seconds));
  }
  double mb_after = membarrier_global_us();
  ReclaimSummary ss = summarize_reclaim(st), us = summarize_reclaim(ut);
  rep.note(name, "membarrier-global-cost-before-trials", mb_before, "us/call");
  rep.note(name, "membarrier-global-cost-after-trials", mb_after, "us/call");
  report_side(rep, name, "stoa", ss);
  report_side(rep, name, "liburcu-memb-sameproc", us);
  report_store_after(rep, name, *store, ss);
  rep.compare_rate(name, ss.ops, "liburcu-memb-sameproc", us.ops);
}

}  // namespace

STOA_BENCH("pin-unpin-1t", "pin+unpin pair, one thread: Stoa vs liburcu-memb", pin_1t);
STOA_BENCH("pin-unpin-2t", "pin+unpin pair, two threads at once: Stoa vs liburcu-memb", pin_2t);
STOA_BENCH("reclaim-1w1r",
           "retire/reclaim throughput, 1 writer + 1 reader thread: Stoa vs liburcu-memb call_rcu",
           reclaim_1w1r);
STOA_BENCH("reclaim-1w1r-xproc", "the same with the reader in another process (Stoa only)",
           reclaim_xproc);
STOA_BENCH_CHILD("cycle-reader", cycle_reader_child);

}  // namespace stoa_bench
