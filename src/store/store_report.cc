// store_report.cc — what `stoa stat`, `stoa verify` and `stoa recorder` show:
// read-only walks over the lock file and the heap. No protocol lives here.
#include <unistd.h>

#include <fmt/format.h>

#include "store/lifecycle.h"
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
  s.max_sessions = table_->slot_count();
  s.sessions_recovered = table_->header()->recoveries.load(std::memory_order_relaxed);
  layer_stats(*this, s);
  // From two layers' figures (heap and index), so here, after both.
  s.used_bytes_per_key = s.keys != 0 ? double(s.used_bytes) / double(s.keys) : 0;
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
    layer_slot_stats(*this, sl, info);
    info.stalled = info.stalled && alive;  // a dead pin is reclaimed, not stalled
    s.purgatory_bytes += info.purgatory_bytes;
    s.purgatory_objects += info.purgatory_objects;
    if (info.pinned_cycle != 0 &&
        (!s.oldest_pin || info.pinned_cycle < s.oldest_pin->pinned_cycle)) {
      s.oldest_pin = info;
    }
    if (info.has_snapshot && (!s.oldest_snapshot || info.snapshot < s.oldest_snapshot->snapshot)) {
      s.oldest_snapshot = info;
    }
    s.sessions.push_back(std::move(info));
  }
  return s;
}

// The layers' checks (lifecycle.cc), bottom-up, while our own watchdog
// cannot move blocks.
Result<VerifyReport> StoreImpl::verify() NO_THREAD_SAFETY_ANALYSIS {
  if (forked_) return Error(Code::kClosed, "store was opened before fork(); open it again");
  VerifyReport rep;
  rep.exclusive = exclusive_now();
  ReclaimLock no_reclaim(this);
  layer_verify(*this, rep);
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
