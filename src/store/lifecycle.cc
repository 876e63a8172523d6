// store/lifecycle.cc — the table of layers and their hooks (lifecycle.h has
// the phases and why the order is txn, log, cycle, heap).
//
// Recovery phases run top-down (the table's order): a dead commit is rolled
// forward before the heap frees the private blocks its versions live in.
// Verify runs bottom-up: a layer's checks read through the layers below, so
// those are checked (and their problems listed) first.
#include "store/lifecycle.h"

#include <algorithm>
#include <array>

#include "store/store_impl.h"
#include "util/clock.h"

namespace stoa::internal {

namespace {

// --- msg: mailboxes and channels ---------------------------------------------

// Every mailbox lock is taken (repairing what the dead owner left mid-step)
// before the heap below reclaims its blocks; its mailboxes close, its names
// and leases go, the channel slots it held claimed are resolved
// (msg_recovery.cc, channel.cc).
void msg_recover_dead(StoreImpl& s, const DeadSlot& d) { s.msgs().recover_dead(d.slot); }
// The closed mailboxes' messages, and half-removed channels' rings, are
// freed through the heir.
Status msg_adopt_dead(StoreImpl& s, const DeadSlot&, SessionCore& heir) {
  return s.msgs().drain_closed(heir);
}
void msg_stats(StoreImpl& s, StoreStats& out) {
  msg::MsgStats m = s.msgs().stats();
  out.mailboxes = m.mailboxes;
  out.messages = m.messages;
  out.message_bytes = m.bytes;
  out.channels = m.channels;
  out.channel_messages = m.channel_messages;
}
void msg_verify(StoreImpl& s, VerifyReport& rep) { rep.messages = s.msgs().verify(&rep.problems); }

// --- txn: commit records, snapshots, the index -----------------------------

void txn_recover_dead(StoreImpl& s, const DeadSlot& d) {
  s.txns().recover(d.slot, d.sl, d.first_gen);
}
void txn_reset_slot(StoreImpl&, session::SessionSlot* sl) { txn::reset(txn::txn_of(*sl)); }
void txn_stats(StoreImpl& s, StoreStats& out) {
  const index::IndexHeader* ih = s.txns().header();
  out.keys = ih->records.load(std::memory_order_relaxed);
  out.keys_removed = ih->removed.load(std::memory_order_relaxed);
  out.last_commit_ts = ih->next_ts.load(std::memory_order_acquire);
  out.visible_ts = ih->visible_ts.load(std::memory_order_acquire);
  const session::RecoveryCounters& rc = s.table().header()->counters;
  out.recovery.rolled_forward = rc.rolled_forward.load(std::memory_order_relaxed);
  out.recovery.undone = rc.undone.load(std::memory_order_relaxed);
  out.recovery.nodes_unfrozen = rc.nodes_unfrozen.load(std::memory_order_relaxed);
  out.commits = ih->commits.load(std::memory_order_relaxed);
  out.snapshots_expired = rc.snapshots_expired.load(std::memory_order_relaxed);
}
void txn_slot_stats(StoreImpl& s, const session::SessionSlot* sl, SessionInfo& info) {
  const txn::TxnSlot& t = txn::txn_of(*sl);
  uint64_t snap = t.snapshot.load(std::memory_order_acquire);
  info.snapshot = snap != 0 ? snap - 1 : 0;
  info.snapshot_expired = snap != 0 && expiry::is_expired(*sl);
  info.has_snapshot = snap != 0 && !info.snapshot_expired;
  if (snap == 0) return;
  const index::IndexHeader* ih = s.txns().header();
  const uint64_t now = util::mono_ns(), started = t.started_ns.load(std::memory_order_relaxed);
  const uint64_t commits = ih->commits.load(std::memory_order_relaxed);
  const uint64_t at = t.snapshot_commits.load(std::memory_order_relaxed);
  const uint64_t visible = ih->visible_ts.load(std::memory_order_acquire);
  info.snapshot_age_seconds = started != 0 && now > started ? double(now - started) / 1e9 : 0;
  info.snapshot_lag_commits = commits > at ? commits - at : 0;
  info.snapshot_lag_bytes = visible > info.snapshot ? visible - info.snapshot : 0;
}
// The index, walked under a pin of a session of our own (so nodes retired by
// concurrent writers stay readable while we look at them).
void txn_verify(StoreImpl& s, VerifyReport& rep) {
  auto core = s.new_session();
  if (!core.ok()) {
    rep.index_checked = false;  // no free slot: say so rather than guess
    return;
  }
  (*core)->pin();
  rep.keys = s.txns().tree().verify(
      s.heap(), s.txns().header()->next_ts.load(std::memory_order_acquire), &rep.problems);
  (*core)->unpin();
  rep.index_checked = true;
  (void)s.close_session(*core);
}

// --- log: durability and checkpoints --------------------------------------

void log_stats(StoreImpl& s, StoreStats& out) {
  log::LogStats ls = s.log().stats();
  out.durable_ts = ls.durable_ts;
  out.checkpoint_ts = ls.checkpoint_ts;
  const uint64_t tail = s.txns().header()->next_ts.load(std::memory_order_acquire);
  out.log_bytes = tail - std::min(tail, out.checkpoint_ts);
  out.log_failed = std::move(ls.failure);
  out.recovery.log_settled =
      s.table().header()->counters.log_settled.load(std::memory_order_relaxed);
}
// Every checksum of the last checkpoint and of the log after it.
void log_verify(StoreImpl& s, VerifyReport& rep) {
  s.log().verify(&rep.log_records, &rep.checkpoint_keys, &rep.problems);
  rep.log_checked = true;
}

// --- cycle: pins and purgatories ------------------------------------------

void cycle_reset_slot(StoreImpl&, session::SessionSlot* sl) {
  cycle::pin_of(*sl).cycle.store(0, std::memory_order_release);
  cycle::CycleManager::reset(cycle::purgatory_of(*sl));
}
void cycle_stats(StoreImpl& s, StoreStats& out) {
  out.current_cycle = cycle::global_of(*s.table().header()).current.load(std::memory_order_acquire);
}
void cycle_slot_stats(StoreImpl& s, const session::SessionSlot* sl, SessionInfo& info) {
  const session::LockHeader* lh = s.table().header();
  const uint64_t current = cycle::global_of(*lh).current.load(std::memory_order_acquire);
  const double threshold = double(s.options().stall_threshold.count()) / 1e3;
  info.pinned_cycle = cycle::pinned_cycle(cycle::pin_of(*sl).cycle.load(std::memory_order_acquire));
  if (info.pinned_cycle != 0 && info.pinned_cycle < current &&
      current - info.pinned_cycle < cycle::kCycleRing) {
    // Pinned before the next cycle began: at least this long.
    uint64_t began =
        cycle::global_of(*lh).started_ns[(info.pinned_cycle + 1) % cycle::kCycleRing].load(
            std::memory_order_relaxed);
    const uint64_t now = util::mono_ns();
    if (began != 0 && began < now) info.pin_age_seconds = double(now - began) / 1e9;
  } else if (info.pinned_cycle != 0 && info.pinned_cycle + cycle::kCycleRing <= current) {
    info.pin_age_seconds = threshold + 1;  // older than the ring remembers
  }
  info.stalled = info.pin_age_seconds > threshold;  // the store clears it for a dead owner
  info.purgatory_bytes = cycle::purgatory_of(*sl).bytes.load(std::memory_order_relaxed);
  info.purgatory_objects = cycle::purgatory_of(*sl).objects.load(std::memory_order_relaxed);
}

// --- heap: blocks -----------------------------------------------------------

void heap_reset_slot(StoreImpl&, session::SessionSlot* sl) {
  sl->cache = region::HeapCache{};
  sl->allocated_bytes.store(0, std::memory_order_relaxed);
}
// A chain of recoverers that each died part-way left blocks under every
// generation from the original owner's (first_gen) to the last recoverer's
// (last_gen): each claim bumps the generation by one. Cached and private
// blocks are freed; retired ones join the heir's purgatory.
Status heap_adopt_dead(StoreImpl& s, const DeadSlot& d, SessionCore& heir) {
  region::Owner o = heir.owner();
  session::SessionSlot* sl = heir.slot_ptr();
  // Heap::recover calls this with the page lock held: adopt, never free.
  auto to_purgatory = [&](region::Offset body, uint64_t bytes) {
    s.cycles().adopt_retired(cycle::purgatory_of(*sl), s.heap(), body, bytes);
  };
  Status st;
  for (uint32_t g = d.first_gen;; g = (g + 1) & region::kGenMask) {
    st = s.heap().recover(o, d.slot, g, to_purgatory);
    if (!st.ok() || g == d.last_gen) break;
  }
  return st;
}
void heap_stats(StoreImpl& s, StoreStats& out) {
  out.file_size = s.region().file_size();
  out.max_size = s.region().max_size();
  region::HeapStats hs = s.heap().stats();
  out.free_page_bytes = hs.free_page_bytes;
  out.free_block_bytes = hs.free_block_bytes;
  const uint64_t meta = region::kHeapStart;
  out.used_bytes =
      out.file_size - std::min(out.file_size, hs.free_page_bytes + hs.free_block_bytes + meta);
  const session::RecoveryCounters& rc = s.table().header()->counters;
  out.recovery.heap_repaired = rc.heap_repaired.load(std::memory_order_relaxed);
  out.recovery.heap_rebuilt = rc.heap_rebuilt.load(std::memory_order_relaxed);
}
void heap_slot_stats(StoreImpl&, const session::SessionSlot* sl, SessionInfo& info) {
  info.allocated_bytes = sl->allocated_bytes.load(std::memory_order_relaxed);
}
// A cached, private or retired block must belong to a session that still
// holds its slot: a live one, or a dead one not yet reclaimed (its memory
// comes back when a survivor or the next lone opener reclaims it). A tag
// naming a free slot, or an older generation, is a leak.
void heap_verify(StoreImpl& s, VerifyReport& rep) {
  region::Region& r = s.region();
  Status hs = region::Region::check_header(r.header(), r.file_size(), r.path(), kDataLayoutWord);
  if (!hs.ok()) rep.problems.push_back(hs.error().message());
  session::SessionTable& t = s.table();
  s.heap().verify(rep, rep.exclusive, [&](uint32_t slot, uint32_t gen) {
    if (slot >= t.slot_count()) return false;
    const session::SessionSlot* sl = t.slot(slot);
    uint32_t st = sl->state.load(std::memory_order_acquire);
    if (st == uint32_t(session::SlotState::kRecovering)) return true;
    return st == uint32_t(session::SlotState::kLive) && (sl->generation & region::kGenMask) == gen;
  });
}

constexpr std::array<LayerHooks, 5> kLayers = {{
    {"msg", msg_recover_dead, nullptr, msg_adopt_dead, msg_stats, nullptr, msg_verify},
    {"txn", txn_recover_dead, txn_reset_slot, nullptr, txn_stats, txn_slot_stats, txn_verify},
    {"log", nullptr, nullptr, nullptr, log_stats, nullptr, log_verify},
    {"cycle", nullptr, cycle_reset_slot, nullptr, cycle_stats, cycle_slot_stats, nullptr},
    {"heap", nullptr, heap_reset_slot, heap_adopt_dead, heap_stats, heap_slot_stats, heap_verify},
}};

}  // namespace

std::span<const LayerHooks> layers() { return kLayers; }

void recover_dead_slot(StoreImpl& s, const DeadSlot& d) {
  for (const LayerHooks& l : kLayers) {
    if (l.recover_dead != nullptr) l.recover_dead(s, d);
  }
}

void reset_slot(StoreImpl& s, session::SessionSlot* sl) {
  for (const LayerHooks& l : kLayers) {
    if (l.reset_slot != nullptr) l.reset_slot(s, sl);
  }
}

Status adopt_dead_slot(StoreImpl& s, const DeadSlot& d, SessionCore& heir) {
  for (const LayerHooks& l : kLayers) {
    if (l.adopt_dead != nullptr) STOA_TRY(l.adopt_dead(s, d, heir));
  }
  return {};
}

void layer_stats(StoreImpl& s, StoreStats& out) {
  for (const LayerHooks& l : kLayers) {
    if (l.stats != nullptr) l.stats(s, out);
  }
}

void layer_slot_stats(StoreImpl& s, const session::SessionSlot* sl, SessionInfo& out) {
  for (const LayerHooks& l : kLayers) {
    if (l.slot_stats != nullptr) l.slot_stats(s, sl, out);
  }
}

void layer_verify(StoreImpl& s, VerifyReport& out) {
  for (auto it = kLayers.rbegin(); it != kLayers.rend(); ++it) {
    if (it->verify != nullptr) it->verify(s, out);
  }
}

}  // namespace stoa::internal
