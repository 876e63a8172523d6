// store_report.cc — what `stoa stat`, `stoa verify` and `stoa recorder` show:
// read-only walks over the lock file and the heap. No protocol lives here.
#include <unistd.h>

#include <fmt/format.h>

#include "store/store_impl.h"
#include "util/clock.h"

namespace stoa::internal {

namespace {

const char* slot_state_name(uint32_t st, bool alive) {
  switch (session::SlotState(st)) {
    case session::SlotState::kFree:
      return "free";
    case session::SlotState::kLive:
      return alive ? "live" : "dead";
    case session::SlotState::kRecovering:
      return alive ? "recovering" : "dead";
  }
  return "invalid";
}

}  // namespace

void copy_rebuild_report(const log::RebuildReport& from, RecoveryReport* to) {
  to->rebuilt = true;
  to->checkpoint_ts = from.checkpoint_ts;
  to->checkpoint_keys = from.checkpoint_keys;
  to->log_records = from.log_records;
  to->log_bytes = from.log_bytes;
  to->end_ts = from.end_ts;
  to->truncated_bytes = from.truncated_bytes;
  to->seconds = from.seconds;
}

Result<StoreStats> StoreImpl::stats() {
  if (forked_) return Error(Code::kClosed, "store was opened before fork(); open it again");
  StoreStats s;
  s.path = path_;
  s.file_size = region_->file_size();
  s.max_size = region_->max_size();
  region::HeapStats hs = heap_->stats();
  s.free_page_bytes = hs.free_page_bytes;
  s.free_block_bytes = hs.free_block_bytes;
  uint64_t meta = region::kHeapStart;
  s.used_bytes =
      s.file_size - std::min(s.file_size, hs.free_page_bytes + hs.free_block_bytes + meta);
  s.max_sessions = table_->slot_count();
  const session::LockHeader* lh = table_->header();
  s.current_cycle = lh->cycle.current.load(std::memory_order_acquire);
  s.sessions_recovered = lh->recoveries.load(std::memory_order_relaxed);
  const session::RecoveryCounters& rc = lh->counters;
  s.recovery.rolled_forward = rc.rolled_forward.load(std::memory_order_relaxed);
  s.recovery.undone = rc.undone.load(std::memory_order_relaxed);
  s.recovery.log_settled = rc.log_settled.load(std::memory_order_relaxed);
  s.recovery.nodes_unfrozen = rc.nodes_unfrozen.load(std::memory_order_relaxed);
  s.recovery.heap_repaired = rc.heap_repaired.load(std::memory_order_relaxed);
  s.recovery.heap_rebuilt = rc.heap_rebuilt.load(std::memory_order_relaxed);
  const index::IndexHeader* ih = txns_->header();
  s.keys = ih->records.load(std::memory_order_relaxed);
  s.last_commit_ts = ih->next_ts.load(std::memory_order_acquire);
  s.visible_ts = ih->visible_ts.load(std::memory_order_acquire);
  log::LogStats ls = log_->stats();
  s.durable_ts = ls.durable_ts;
  s.checkpoint_ts = ls.checkpoint_ts;
  s.log_bytes = s.last_commit_ts - std::min(s.last_commit_ts, s.checkpoint_ts);
  s.log_failed = std::move(ls.failure);
  const uint64_t now = util::mono_ns();
  const double threshold = double(options_.stall_threshold.count()) / 1e3;
  for (uint32_t i = 0; i < table_->slot_count(); i++) {
    const session::SessionSlot* sl = table_->slot(i);
    uint32_t st = sl->state.load(std::memory_order_acquire);
    if (st == uint32_t(session::SlotState::kFree)) continue;
    bool here, parked;
    SessionInfo info;
    info.slot = i;
    {
      // Identity fields change only at claim and close, under this mutex
      // in this process (other processes' changes are published by `state`).
      util::MutexLock g(table_->claim_mutex());
      here = table_->owned_here(i);
      info.generation = sl->generation;
      info.pid = sl->pid;
      info.tid = sl->tid;
      parked = (sl->flags & session::kSlotParked) != 0;
    }
    bool alive = here || table_->held_by_other(i);
    info.state = slot_state_name(st, alive);
    if (alive && parked) info.state = "parked";
    info.pinned_cycle = sl->pin.cycle.load(std::memory_order_acquire);
    if (info.pinned_cycle != 0 && info.pinned_cycle < s.current_cycle &&
        s.current_cycle - info.pinned_cycle < cycle::kCycleRing) {
      // Pinned before the next cycle began: at least this long.
      uint64_t began = lh->cycle.started_ns[(info.pinned_cycle + 1) % cycle::kCycleRing].load(
          std::memory_order_relaxed);
      if (began != 0 && began < now) info.pin_age_seconds = double(now - began) / 1e9;
    } else if (info.pinned_cycle != 0 && info.pinned_cycle + cycle::kCycleRing <= s.current_cycle) {
      info.pin_age_seconds = threshold + 1;  // older than the ring remembers
    }
    info.stalled = alive && info.pin_age_seconds > threshold;
    info.purgatory_bytes = sl->purgatory.bytes.load(std::memory_order_relaxed);
    info.allocated_bytes = sl->allocated_bytes.load(std::memory_order_relaxed);
    uint64_t snap = sl->txn.snapshot.load(std::memory_order_acquire);
    info.snapshot = snap != 0 ? snap - 1 : 0;
    s.purgatory_bytes += info.purgatory_bytes;
    s.purgatory_objects += sl->purgatory.objects.load(std::memory_order_relaxed);
    if (info.pinned_cycle != 0 &&
        (!s.oldest_pin || info.pinned_cycle < s.oldest_pin->pinned_cycle)) {
      s.oldest_pin = info;
    }
    if (snap != 0 && (!s.oldest_snapshot || info.snapshot < s.oldest_snapshot->snapshot)) {
      s.oldest_snapshot = info;
    }
    s.sessions.push_back(std::move(info));
  }
  return s;
}

Result<VerifyReport> StoreImpl::verify() NO_THREAD_SAFETY_ANALYSIS {
  if (forked_) return Error(Code::kClosed, "store was opened before fork(); open it again");
  VerifyReport rep;
  rep.exclusive = exclusive_now();
  std::string hp = region_->path();
  Status hs = region::Region::check_header(region_->header(), region_->file_size(), hp);
  if (!hs.ok()) rep.problems.push_back(hs.error().message());
  // A cached, private or retired block must belong to a session that still
  // holds its slot: a live one, or a dead one not yet reclaimed (its memory
  // comes back when a survivor or the next lone opener reclaims it). A tag
  // naming a free slot, or an older generation, is a leak.
  ReclaimLock no_reclaim(this);  // our own watchdog must not move blocks meanwhile
  heap_->verify(rep, rep.exclusive, [&](uint32_t slot, uint32_t gen) {
    if (slot >= table_->slot_count()) return false;
    const session::SessionSlot* sl = table_->slot(slot);
    uint32_t st = sl->state.load(std::memory_order_acquire);
    if (st == uint32_t(session::SlotState::kRecovering)) return true;
    return st == uint32_t(session::SlotState::kLive) && (sl->generation & region::kGenMask) == gen;
  });
  // Every checksum of the last checkpoint and of the log after it.
  log_->verify(&rep.log_records, &rep.checkpoint_keys, &rep.problems);
  rep.log_checked = true;
  // The index, walked under a pin of a session of our own (so nodes retired
  // by concurrent writers stay readable while we look at them).
  auto core = new_session();
  if (!core.ok()) {
    rep.index_checked = false;  // no free slot: say so rather than guess
    return rep;
  }
  (*core)->pin();
  rep.keys = txns_->tree().verify(*heap_, txns_->header()->next_ts.load(std::memory_order_acquire),
                                  &rep.problems);
  (*core)->unpin();
  rep.index_checked = true;
  (void)close_session(*core);
  return rep;
}

Result<std::vector<RecorderDump>> StoreImpl::recorder(std::optional<uint32_t> only) {
  if (forked_) return Error(Code::kClosed, "store was opened before fork(); open it again");
  if (only && *only >= table_->slot_count()) {
    return Error(Code::kInvalidArgument,
                 fmt::format("no session slot {} (the table has {})", *only, table_->slot_count()));
  }
  std::vector<RecorderDump> out;
  for (uint32_t i = 0; i < table_->slot_count(); i++) {
    if (only && *only != i) continue;
    const session::SessionSlot* sl = table_->slot(i);
    uint64_t next = sl->recorder_next.load(std::memory_order_acquire);
    if (next == 0 && !only) continue;
    RecorderDump d;
    d.slot = i;
    uint32_t st = sl->state.load(std::memory_order_acquire);
    bool here;
    {
      util::MutexLock g(table_->claim_mutex());
      here = table_->owned_here(i);
      d.generation = sl->generation;
      d.pid = sl->pid;
    }
    d.state = slot_state_name(st, here || table_->held_by_other(i));
    uint64_t n = std::min<uint64_t>(next, session::kRecorderEntries);
    const session::RecorderRing* ring = table_->ring(i);
    for (uint64_t k = next - n; k < next; k++) {
      const session::RecorderEntry& e = ring->entries[k % session::kRecorderEntries];
      d.entries.push_back(RecorderDump::Entry{e.time_ns, record_kind_name(RecordKind(e.kind)),
                                              std::string(code_name(Code(e.result))), e.generation,
                                              e.arg, e.arg2});
    }
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace stoa::internal
