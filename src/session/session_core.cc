// session/session_core.cc — one session's operations: allocation, cycle pins,
// retirement, collection, flight recording. No protocol of its own lives
// here: each call delegates to the heap (region/heap.cc) or the cycle
// manager (cycle/cycle.cc) and records what happened.
#include "session/session_core.h"

#include "region/region.h"
#include "session/session_table.h"
#include "util/clock.h"

namespace stoa::internal {

namespace {
constexpr uint32_t kCollectEvery = 256;                // retires between collects
constexpr uint64_t kCollectBytes = uint64_t{4} << 20;  // or this much in purgatory
Error closed_error() { return Error(Code::kClosed, "session is closed"); }
}  // namespace

const char* record_kind_name(RecordKind kind) {
  switch (kind) {
    case RecordKind::kNone:
      return "none";
    case RecordKind::kOpen:
      return "open";
    case RecordKind::kClose:
      return "close";
    case RecordKind::kAlloc:
      return "alloc";
    case RecordKind::kFree:
      return "free";
    case RecordKind::kPublish:
      return "publish";
    case RecordKind::kRetire:
      return "retire";
    case RecordKind::kPin:
      return "pin";
    case RecordKind::kAdvance:
      return "advance";
    case RecordKind::kReclaim:
      return "reclaim";
    case RecordKind::kRecover:
      return "recover";
    case RecordKind::kCorrupt:
      return "corrupt";
    case RecordKind::kUser:
      return "user";
  }
  return "unknown";
}

SessionCore::SessionCore(const SessionDeps& deps, uint32_t slot, uint32_t generation)
    : deps_(deps),
      cycles_(deps.cycles),
      slot_ptr_(deps.table->slot(slot)),
      slot_(slot),
      generation_(generation) {}

SessionCore::~SessionCore() = default;

void SessionCore::record(RecordKind kind, Code result, uint64_t arg, uint64_t arg2) {
  session::SessionSlot* s = slot_ptr_;
  uint64_t i = s->recorder_next.load(std::memory_order_relaxed);
  session::RecorderEntry& e = deps_.table->ring(slot_)->entries[i % session::kRecorderEntries];
  e.time_ns = util::coarse_real_ns();
  e.kind = uint16_t(kind);
  e.result = uint16_t(result);
  e.generation = generation_;
  e.arg = arg;
  e.arg2 = arg2;
  s->recorder_next.store(i + 1, std::memory_order_release);  // pairs with the dumper's acquire
}

Result<Offset> SessionCore::alloc(size_t size) {
  if (closed_) return closed_error();
  region::Owner o = owner();
  auto r = deps_.heap->alloc(o, size);
  record(RecordKind::kAlloc, r.code(), r.ok() ? *r : 0, size);
  return r;
}

Status SessionCore::publish(Offset body) {
  if (closed_) return closed_error();
  region::Owner o = owner();
  Status st = deps_.heap->publish(o, body);
  record(RecordKind::kPublish, st.code(), body);
  return st;
}

Status SessionCore::free(Offset body) {
  if (closed_) return closed_error();
  region::Owner o = owner();
  Status st = deps_.heap->free(o, body);
  record(RecordKind::kFree, st.code(), body);
  return st;
}

Status SessionCore::retire(Offset body) { return retire_one(body, true, true); }

Status SessionCore::retire_deferred(Offset body) { return retire_one(body, true, false); }

void SessionCore::collect_if_due() {
  if (closed_ || pin_depth_ > 0) return;
  if (ops_since_collect_ >= kCollectEvery ||
      cycle::purgatory_of(*slot_ptr_).bytes.load(std::memory_order_relaxed) >= kCollectBytes) {
    ops_since_collect_ = 0;
    (void)collect(/*automatic=*/true);
  }
}

Status SessionCore::retire_all(const std::vector<Offset>& bodies) {
  if (closed_) return closed_error();
  Status first;
  for (Offset b : bodies) {
    Status st = retire_one(b, false, true);
    if (!st.ok() && first.ok()) first = std::move(st);
  }
  if (!bodies.empty()) record(RecordKind::kRetire, first.code(), bodies[0], bodies.size());
  return first;
}

Status SessionCore::retire_one(Offset body, bool recorded, bool may_collect) {
  if (closed_) return closed_error();
  region::Owner o = owner();
  auto bytes = deps_.heap->mark_retired(o, body);
  if (recorded) record(RecordKind::kRetire, bytes.code(), body);
  if (!bytes.ok()) return std::move(bytes).error();
  deps_.cycles->retire(cycle::purgatory_of(*slot_ptr_), *deps_.heap, o, body, *bytes);
  ++ops_since_collect_;
  if (!may_collect) return {};
  if (ops_since_collect_ >= kCollectEvery ||
      cycle::purgatory_of(*slot_ptr_).bytes.load(std::memory_order_relaxed) >= kCollectBytes) {
    ops_since_collect_ = 0;
    (void)collect(/*automatic=*/true);
  }
  return {};
}

Result<size_t> SessionCore::usable_size(Offset body) const {
  if (closed_) return closed_error();
  return deps_.heap->usable_size(body);
}

Result<const char*> SessionCore::read(Offset body, size_t len) {
  if (closed_) return closed_error();
  STOA_TRY(deps_.region->ensure(body, len));
  return deps_.region->ro(body);
}

const char* SessionCore::view(Offset off) const { return deps_.region->ro(off); }
char* SessionCore::write_ptr(Offset off) const { return deps_.region->rw(off); }

Result<uint64_t> SessionCore::collect(bool automatic) {
  if (closed_) return closed_error();
  cycle::CycleManager& cm = *deps_.cycles;
  // Advance only as far as this purgatory needs (its oldest bag becomes
  // freeable two cycles after it was filled); the manager rate-limits the
  // barrier it costs. Dead blockers are reclaimed on the way.
  for (int i = 0; i < 2 && cm.needs_advance(cycle::purgatory_of(*slot_ptr_)); i++) {
    auto a = cm.try_advance(automatic);
    if (!a.blockers.empty()) deps_.host->reap_slots(a.blockers);
    if (!a.advanced) break;
    record(RecordKind::kAdvance, Code::kOk, a.cycle);
  }
  region::Owner o = owner();
  uint64_t freed = cm.drain(cycle::purgatory_of(*slot_ptr_), *deps_.heap, o);
  if (freed > 0) record(RecordKind::kReclaim, Code::kOk, freed);
  return freed;
}

}  // namespace stoa::internal
