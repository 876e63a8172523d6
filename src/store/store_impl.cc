// store_impl.cc — opening, claiming, reclaiming and closing.
//
// Open (session_table.cc explains the OFD locks). Under the open lock:
//  1. If no other process is attached ("alone"), the opener owns everything
//     shared. It creates the data file if asked (written under a temporary
//     name, synced, renamed), validates or rebuilds the lock file, and
//     repairs the heap: if the last closer did not leave it clean (a crash,
//     or a process killed while others were gone), rebuild_all() frees every
//     block that is not kLive — whatever dead sessions cached, allocated
//     privately or retired — rebuilds free lists and bins and reinitialises
//     the robust mutexes (their holders may be from before a reboot). Every
//     slot is reset to kFree, keeping its generation and flight recorder.
//     Then it marks the heap not-clean (a crash from now on forces the next
//     lone opener to rebuild) and downgrades to a shared attach.
//  2. Otherwise it checks the lock file belongs to this data file and layout.
//
// Claim: take a slot's OFD byte. If the slot was not kFree its owner died:
// mark it kRecovering, bump the generation, and reclaim the dead session's
// memory into the new session (heap.cc: cached and private blocks are freed,
// retired ones join the new session's purgatory), then mark it kLive. A
// crash during reclamation leaves the slot kRecovering with the byte
// released; the next claimer does it again (reclamation is idempotent: it
// acts on tags, and the generation in the tags is the dead owner's).
//
// Reaping: the watchdog (and any collect that finds a slot blocking the
// cycle) probes slots held by other processes; a slot whose byte it can take
// is claimed as above, then closed at once.
//
// Close of a session: flush its cache, free its private blocks (a scan, only
// when it has any), drain its purgatory; if blocks in it may still be seen by
// a pinned reader, the session is parked — its slot stays held by this
// process until the watchdog drains it. At process exit the parked slots
// look dead to the others, who reclaim them like any dead session.
//
// Last close: under the open lock, upgrade the attach lock. If that works,
// no one else is attached: drain every parked purgatory completely (no
// reader exists), free the slots, and mark the heap clean.
#include "store/store_impl.h"

#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "crash/crash_point.h"
#include "store/lifecycle.h"
#include "store/store_snapshot.h"
#include "util/clock.h"

namespace stoa::internal {

namespace {

// Open stores of this process, for the fork handlers.
std::mutex& registry_mu() {
  static std::mutex mu;
  return mu;
}
std::set<StoreImpl*>& registry() {
  static std::set<StoreImpl*> s;
  return s;
}
// Each store's reclamation pauses across fork(): its watchdog finishes the
// iteration it is in and waits; no lock it holds is copied into the child.
// The log's threads likewise: each holds its pause mutex while awake, so a
// fork finds them asleep, never inside malloc. Lock order: pause, reclaim.
void fork_prepare() NO_THREAD_SAFETY_ANALYSIS {
  registry_mu().lock();
  for (StoreImpl* s : registry()) {
    if (s->has_log()) s->log().pause_mutex().lock();
    s->reclaim_mutex().lock();
  }
}
void fork_parent() NO_THREAD_SAFETY_ANALYSIS {
  for (StoreImpl* s : registry()) {
    s->reclaim_mutex().unlock();
    if (s->has_log()) s->log().pause_mutex().unlock();
  }
  registry_mu().unlock();
}
void fork_child() NO_THREAD_SAFETY_ANALYSIS {
  for (StoreImpl* s : registry()) {
    s->reclaim_mutex().unlock();
    if (s->has_log()) s->log().pause_mutex().unlock();
    s->forget_after_fork();
  }
  registry_mu().unlock();
}
void install_fork_handlers() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(fork_prepare, fork_parent, fork_child); });
}

bool path_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

thread_local const StoreImpl* StoreImpl::reclaiming_ = nullptr;

Result<std::unique_ptr<StoreImpl>> StoreImpl::open(const std::string& path, const Options& options,
                                                   bool force_rebuild) {
  if (path.empty()) return Error(Code::kInvalidArgument, "store path is empty");
  if (options.max_size < region::kMinMaxSize || options.max_size > region::kMaxMaxSize) {
    return Error(Code::kInvalidArgument,
                 fmt::format("max_size {} out of range [{}, {}]", options.max_size,
                             region::kMinMaxSize, region::kMaxMaxSize));
  }
  if (options.grow_chunk == 0 || options.grow_chunk > options.max_size) {
    return Error(Code::kInvalidArgument,
                 fmt::format("grow_chunk {} out of range [1, max_size]", options.grow_chunk));
  }
  if (options.max_sessions == 0 || options.max_sessions > region::kMaxSlots) {
    return Error(Code::kInvalidArgument, fmt::format("max_sessions {} out of range [1, {}]",
                                                     options.max_sessions, region::kMaxSlots));
  }
  if (options.log_segment_size < (uint64_t{64} << 10) || options.log_segment_size % 4096 != 0 ||
      options.log_segment_size > (uint64_t{1} << 40)) {
    return Error(Code::kInvalidArgument,
                 fmt::format("log_segment_size {} must be a multiple of 4096 of at least 64 KiB",
                             options.log_segment_size));
  }
  std::unique_ptr<StoreImpl> s(new StoreImpl());
  s->path_ = path;
  s->options_ = options;
  s->env_ = options.env != nullptr ? options.env : Env::posix();
  s->force_rebuild_ = force_rebuild;
  STOA_TRY(s->open_protocol());
  s->cycles_ = std::make_unique<cycle::CycleManager>(&cycle::global_of(*s->table_->header()),
                                                     s->table_.get(),
                                                     cycle::CycleManager::register_membarrier());
  // Still under the open lock: nobody attaches before the data file is
  // rebuilt or repaired.
  Status fin = s->finish_open();
  s->table_->unlock_open();
  STOA_TRY(fin);
  s->log_->start();
  install_fork_handlers();
  {
    std::lock_guard<std::mutex> g(registry_mu());
    registry().insert(s.get());
  }
  if (options.watchdog_interval.count() > 0) {
    s->watchdog_ = std::thread([p = s.get()] { p->watchdog_loop(); });
    // Return once it runs: a fork() right after open must not copy a thread
    // caught starting up (inside malloc; ASan's allocator is not fork-safe).
    while (!s->watchdog_started_.load(std::memory_order_acquire)) std::this_thread::yield();
  }
  return s;
}

Status StoreImpl::open_protocol() {
  const std::string data = path_ + "/" + kDataFileName;
  struct stat st;
  if (::stat(path_.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return Error(Code::kInvalidArgument, fmt::format("{}: not a directory", path_));
    }
  } else if (errno != ENOENT || !options_.create_if_missing) {
    if (errno == ENOENT) {
      return Error(Code::kNotFound, fmt::format("{}: no such store", path_));
    }
    return errno_error(errno, "stat", path_);
  } else {
    STOA_TRY(env_->make_dir(path_));
  }
  const bool data_exists = path_exists(data);
  if (!data_exists && errno != ENOENT) {
    return errno_error(errno, "stat", data);  // e.g. a directory we may not search: kPermission
  }
  const std::string log_dir = path_ + "/" + kLogDirName;
  if (!data_exists && !options_.create_if_missing && !path_exists(log_dir)) {
    return Error(Code::kNotFound,
                 fmt::format("{}: not a Stoa store (no {})", path_, kDataFileName));
  }
  STOA_ASSIGN(table_, session::SessionTable::open_locked(env_, path_ + "/" + kLockFileName));
  const bool alone = table_->try_attach_exclusive();
  alone_ = alone;
  if (data_exists && options_.error_if_exists) {
    return Error(Code::kExists, fmt::format("{}: store already exists", path_));
  }
  bool created = false;
  if (alone) {
    STOA_TRY(check_data_file(data, &created));
  } else if (!path_exists(data)) {
    return Error(Code::kCorrupt, fmt::format("{}: {} is missing while other processes have the "
                                             "store open",
                                             path_, kDataFileName));
  }
  if (!region_) {
    STOA_ASSIGN(region_, region::Region::open(env_, data, kDataLayoutWord, options_.huge_pages));
  }
  heap_ = std::make_unique<region::Heap>(region_.get(), options_.poison_freed);
  msgs_ = std::make_unique<msg::Mailboxes>(msg::MsgContext{
      region_.get(), heap_.get(), reinterpret_cast<msg::MsgRoot*>(region_->rw(kMsgRootOffset))});
  const uint64_t seg =
      reinterpret_cast<const log::LogHeader*>(region_->ro(kLogRootOffset))->segment_size;
  const uint32_t slots = region_->header().max_sessions;
  if (alone) {
    bool recreated = false;
    STOA_TRY(table_->init_alone(slots, region_->seed(), &recreated));
    if (recreated) cycle::init_global(cycle::global_of(*table_->header()));
    recoveries_before_ = table_->header()->recoveries.load(std::memory_order_relaxed);
    heap_->count_repairs_in(&table_->header()->counters.heap_repaired);
    txns_ = std::make_unique<TxnManager>(txn_context());
    const bool fresh = created || rebuild_pending_;
    const uint64_t seg_size = rebuild_pending_      ? rebuild_segment_size_
                              : created || seg == 0 ? options_.log_segment_size
                                                    : seg;
    log_ = std::make_unique<LogManager>(log_context(), env_, log_dir, seg_size);
    txns_->set_log(log_.get());
    log_->init_alone(fresh);
    // Every mailbox repaired (and its locks made new) while the dead
    // sessions' blocks are still tagged as they left them (msg_recovery.cc).
    msgs_->recover_alone();
    // Finish or undo the commits of sessions that died, before their memory
    // is reclaimed below (rolled-forward versions get published first).
    for (uint32_t i = 0; i < slots && !recreated; i++) {
      session::SessionSlot* sl = table_->slot(i);
      uint32_t st = sl->state.load(std::memory_order_relaxed);
      if (st == uint32_t(session::SlotState::kFree)) continue;
      uint32_t gen =
          st == uint32_t(session::SlotState::kRecovering) ? sl->recover_from : sl->generation;
      recover_dead_slot(*this, DeadSlot{i, sl, gen, sl->generation});
    }
    // Untidy after a crash (heap not closed clean, or a session left in
    // its slot), or because the lock file was made anew.
    bool crashed = !heap_->clean();
    for (uint32_t i = 0; i < slots && !recreated && !crashed; i++) {
      crashed = table_->slot(i)->state.load(std::memory_order_relaxed) !=
                uint32_t(session::SlotState::kFree);
    }
    const bool tidy = !crashed && !recreated;
    if (tidy) {
      heap_->reset_locks();
    } else {
      heap_->set_clean(false);  // a crash during the rebuild must not look tidy next time
      STOA_TRY(heap_->rebuild_all());
      if (crashed) table_->header()->counters.heap_rebuilt.fetch_add(1, std::memory_order_relaxed);
      for (uint32_t i = 0; i < slots; i++) {
        session::SessionSlot* sl = table_->slot(i);
        if (sl->state.load(std::memory_order_relaxed) != uint32_t(session::SlotState::kFree)) {
          table_->header()->recoveries.fetch_add(1, std::memory_order_relaxed);
        }
        reset_slot(*this, sl);  // the rebuilt heap holds none of the slot's blocks
        sl->flags = 0;
        sl->state.store(uint32_t(session::SlotState::kFree), std::memory_order_release);
      }
    }
    txns_->reset_alone();
    heap_->set_clean(false);
    STOA_TRY(table_->attach_shared());
  } else {
    STOA_TRY(table_->check_attached(slots, region_->seed()));
    STOA_TRY(table_->attach_shared());
    heap_->count_repairs_in(&table_->header()->counters.heap_repaired);
    txns_ = std::make_unique<TxnManager>(txn_context());
    if (seg == 0) return Error(Code::kCorrupt, fmt::format("{}: log header not set up", data));
    log_ = std::make_unique<LogManager>(log_context(), env_, log_dir, seg);
    txns_->set_log(log_.get());
  }
  return {};
}

LogContext StoreImpl::log_context() {
  LogContext c;
  c.header = reinterpret_cast<log::LogHeader*>(region_->rw(kLogRootOffset));
  c.file = &region_->header();
  index::IndexHeader* ih = txns_->header();
  c.next_ts = &ih->next_ts;
  c.visible_ts = &ih->visible_ts;
  c.low_water = &ih->low_water;
  c.table = table_.get();
  c.options = &options_;
  c.open_snapshot = [this] { return open_snapshot(); };
  return c;
}

Result<std::unique_ptr<SnapshotSource>> StoreImpl::open_snapshot() {
  STOA_ASSIGN(SessionCore * s, new_session());
  return std::unique_ptr<SnapshotSource>(new TxnSnapshotSource(this, s, /*owned=*/true));
}

// What the transaction layer may use of this store (txn/txn_context.h):
// the log is set once it is made.
TxnContext StoreImpl::txn_context() {
  TxnContext c;
  c.region = region_.get();
  c.index_root = reinterpret_cast<index::IndexHeader*>(region_->rw(kIndexRootOffset));
  c.heap = heap_.get();
  c.table = table_.get();
  c.path = path_;
  c.durability = options_.durability;
  c.snapshot_bounds.age_ns = uint64_t(
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.max_snapshot_age).count());
  c.snapshot_bounds.lag_commits = options_.max_snapshot_lag;
  c.snapshot_bounds.lag_bytes = options_.max_snapshot_lag_bytes;
  c.reap_dead_sessions = [this] { (void)reap_dead_sessions(); };
  c.reap_slots = [this](const std::vector<uint32_t>& slots) { reap_slots(slots); };
  c.corruption = [this](SessionCore* core, Error e) { return corruption(core, std::move(e)); };
  return c;
}

StoreImpl::~StoreImpl() {
  {
    util::MutexLock g(watchdog_mu_);
    stopping_ = true;
  }
  watchdog_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  if (log_ && !forked_) log_->stop();
  {
    std::lock_guard<std::mutex> g(registry_mu());
    registry().erase(this);
  }
  if (!forked_ && table_ && heap_) close_protocol();
}

void StoreImpl::close_protocol() {
  drain_parked();
  if (!table_->lock_open().ok()) return;
  if (table_->try_attach_exclusive()) {
    util::MutexLock g(parked_mu_);
    for (auto& core : parked_) {
      region::Owner o = core->owner();
      cycles_->drain(cycle::purgatory_of(*core->slot_ptr()), *heap_, o, /*all=*/true);
      heap_->flush_cache(o);
      free_slot(core.get());
    }
    parked_.clear();
    bool tidy = true;
    for (uint32_t i = 0; i < table_->slot_count(); i++) {
      tidy &= table_->slot(i)->state.load(std::memory_order_acquire) ==
              uint32_t(session::SlotState::kFree);
    }
    heap_->set_clean(tidy);
    // Leave the data file trusted for any next boot: log and data synced,
    // then checksums of the file (store_durable.cc).
    if (tidy && log_ && !rebuild_pending_) (void)write_sum();
  }
  // Closing the lock file's descriptor (table_ destructor) drops the locks.
}

void StoreImpl::forget_after_fork() {
  forked_ = true;
  if (table_) table_->forget_after_fork();
  if (log_) log_->forget_after_fork();
  // The thread did not survive fork; forget it without joining.
  if (watchdog_.joinable()) watchdog_.detach();
}

// ---------------------------------------------------------------------------
// Sessions

Result<SessionCore*> StoreImpl::try_claim_locked(uint32_t i) {
  session::SessionTable& t = *table_;
  if (table_->owned_here(i) || !t.try_take(i)) return static_cast<SessionCore*>(nullptr);
  session::SessionSlot* sl = t.slot(i);
  const uint32_t state = sl->state.load(std::memory_order_acquire);
  const uint32_t old_gen = sl->generation;
  const bool dead = state != uint32_t(session::SlotState::kFree);
  // Recoverers that died part-way left blocks under the original owner's
  // generation (recover_from) and their own, up to the current one.
  const bool interrupted = state == uint32_t(session::SlotState::kRecovering);
  const uint32_t first_gen = interrupted ? sl->recover_from : old_gen;
  table_->mark_owned(i, true);
  STOA_CRASH_POINT(kSessionClaim);
  if (dead && !interrupted) {
    sl->recover_from = old_gen;
    sl->state.store(uint32_t(session::SlotState::kRecovering), std::memory_order_release);
  }
  // The dead owner's work first, layer by layer from the top (lifecycle.h):
  // its commit is rolled forward or back, publishing what it committed
  // before the heap reclaim frees its private blocks.
  const DeadSlot d{i, sl, first_gen, old_gen};
  if (dead) {
    STOA_CRASH_POINT(kSessionReclaim);
    recover_dead_slot(*this, d);
  }
  reset_slot(*this, sl);
  for (uint32_t hs = t.header()->high_slot.load(std::memory_order_relaxed);
       hs < i + 1 && !t.header()->high_slot.compare_exchange_weak(hs, i + 1);) {
  }
  sl->generation = (old_gen + 1) & region::kGenMask;
  if (sl->generation == first_gen) sl->generation = (sl->generation + 1) & region::kGenMask;
  sl->pid = ::getpid();
  sl->tid = uint64_t(::syscall(SYS_gettid));
  sl->started_ns = util::real_ns();
  sl->flags = 0;
  auto core = std::make_unique<SessionCore>(
      SessionDeps{region_.get(), heap_.get(), table_.get(), cycles_.get(), this}, i,
      sl->generation);
  if (dead) {
    STOA_CRASH_POINT(kSessionReclaimHeap);
    Status st = adopt_dead_slot(*this, d, *core);
    table_->header()->recoveries.fetch_add(1, std::memory_order_relaxed);
    core->record(RecordKind::kRecover, st.code(), i, old_gen);
    if (!st.ok()) {
      // Leave it kRecovering and held: the scan found damage. verify names it.
      return std::move(st).error();
    }
  }
  sl->state.store(uint32_t(session::SlotState::kLive), std::memory_order_release);
  core->record(RecordKind::kOpen, Code::kOk, uint64_t(sl->pid));
  return core.release();
}

Result<SessionCore*> StoreImpl::new_session() {
  if (forked_) return Error(Code::kClosed, "store was opened before fork(); open it again");
  util::MutexLock g(table_->claim_mutex());
  for (uint32_t i = 0; i < table_->slot_count(); i++) {
    STOA_ASSIGN(SessionCore * core, try_claim_locked(i));
    if (core != nullptr) return core;
  }
  return Error(Code::kFull, fmt::format("{}: session table full: all {} slots are held by live "
                                        "sessions",
                                        path_, table_->slot_count()));
}

void StoreImpl::free_slot(SessionCore* core) {
  session::SessionSlot* sl = core->slot_ptr();
  cycle::pin_of(*sl).cycle.store(0, std::memory_order_release);
  sl->state.store(uint32_t(session::SlotState::kFree), std::memory_order_release);
  util::MutexLock g(table_->claim_mutex());
  table_->mark_owned(core->slot(), false);
  table_->untake(core->slot());
}

void StoreImpl::user_closing(SessionCore* core) {
  // Deleted keys of this process whose tombstones every snapshot has passed
  // leave the index now rather than with a later commit that may not come.
  // In the application's thread only: the store's own sessions (checkpoint,
  // verify) close while other work runs beside them.
  msgs_->session_closing(*core);  // its mailboxes close, its leases go back
  if (!core->closed() && !core->in_txn && !core->pinned()) {
    txns_->remove_deleted(*core, /*fresh=*/true);
  }
}

Status StoreImpl::close_session(SessionCore* raw) {
  std::unique_ptr<SessionCore> core(raw);
  if (core->pinned()) {
    core->pin_depth_ = 1;
    core->unpin();
  }
  region::Owner o = core->owner();
  (void)core->collect();  // frees safe purgatory into the cache, flushed next
  heap_->flush_cache(o);
  Status st;
  if (o.allocated->load(std::memory_order_relaxed) > 0) {
    // Private blocks never published or freed: reclaim them now (a scan).
    st = heap_->recover(o, core->slot(), core->generation(), nullptr);
  }
  core->record(RecordKind::kClose, st.code());
  core->closed_ = true;
  if (cycle::purgatory_of(*core->slot_ptr()).objects.load(std::memory_order_relaxed) == 0) {
    free_slot(core.get());
  } else {
    {
      util::MutexLock g(table_->claim_mutex());
      core->slot_ptr()->flags |= session::kSlotParked;
    }
    util::MutexLock g(parked_mu_);
    parked_.push_back(std::move(core));
  }
  return st;
}

void StoreImpl::drain_parked() NO_THREAD_SAFETY_ANALYSIS {
  ReclaimLock r(this);
  drain_parked_locked();
}

void StoreImpl::drain_parked_locked() {
  util::MutexLock g(parked_mu_);
  if (parked_.empty()) return;
  for (int i = 0; i < 2; i++) {
    auto a = cycles_->try_advance();
    if (!a.advanced) break;
  }
  for (auto it = parked_.begin(); it != parked_.end();) {
    region::Owner o = (*it)->owner();
    cycles_->drain(cycle::purgatory_of(*(*it)->slot_ptr()), *heap_, o);
    heap_->flush_cache(o);
    if (cycle::purgatory_of(*(*it)->slot_ptr()).objects.load(std::memory_order_relaxed) == 0) {
      free_slot(it->get());
      it = parked_.erase(it);
    } else {
      ++it;
    }
  }
}

void StoreImpl::reap_slots(const std::vector<uint32_t>& slots) NO_THREAD_SAFETY_ANALYSIS {
  ReclaimLock r(this);
  reap_slots_locked(slots);
}

void StoreImpl::reap_slots_locked(const std::vector<uint32_t>& slots) {
  for (uint32_t i : slots) {
    SessionCore* core = nullptr;
    {
      util::MutexLock g(table_->claim_mutex());
      auto r = try_claim_locked(i);
      if (!r.ok() || *r == nullptr) continue;
      core = *r;
    }
    (void)close_session(core);
  }
}

Result<uint32_t> StoreImpl::reap_dead_sessions() NO_THREAD_SAFETY_ANALYSIS {
  if (forked_) return Error(Code::kClosed, "store was opened before fork(); open it again");
  ReclaimLock r(this);
  return reap_dead_locked();
}

uint32_t StoreImpl::reap_dead_locked() {
  std::vector<uint32_t> suspects;
  for (uint32_t i = 0; i < table_->slot_count(); i++) {
    uint32_t st = table_->slot(i)->state.load(std::memory_order_acquire);
    if (st == uint32_t(session::SlotState::kFree)) continue;
    {
      util::MutexLock g(table_->claim_mutex());
      if (table_->owned_here(i)) continue;
    }
    if (!table_->held_by_other(i)) suspects.push_back(i);
  }
  uint64_t before = table_->header()->recoveries.load(std::memory_order_relaxed);
  reap_slots_locked(suspects);
  return uint32_t(table_->header()->recoveries.load(std::memory_order_relaxed) - before);
}

void StoreImpl::watchdog_loop() NO_THREAD_SAFETY_ANALYSIS {
  watchdog_started_.store(true, std::memory_order_release);
  for (;;) {
    {
      util::MutexLock g(watchdog_mu_);
      watchdog_cv_.wait_for(watchdog_mu_, options_.watchdog_interval,
                            [&]() REQUIRES(watchdog_mu_) { return stopping_; });
      if (stopping_) return;
    }
    ReclaimLock r(this);
    (void)reap_dead_locked();
    auto a = cycles_->try_advance();
    if (!a.blockers.empty()) reap_slots_locked(a.blockers);
    drain_parked_locked();
  }
}

bool StoreImpl::exclusive_now() { return !table_->others_attached(); }

}  // namespace stoa::internal
