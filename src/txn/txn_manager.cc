// txn/txn_manager.cc — the commit protocol's shared half.
//
// Timestamps and visibility. A committer announces kReserving in its slot,
// takes ts = next_ts + 1 (fetch_add), then announces ts; once its versions
// are installed it clears the announcement and advances the watermark:
// visible_ts = min(next_ts read first, every announced ts - 1), never past a
// kReserving slot. A reader's snapshot is visible_ts, so it sees a commit
// wholly or not at all, whatever the order commits finish in. (A committer
// that read next_ts before the scan announced kReserving before its
// fetch_add, so the scan cannot miss it.)
//
// Snapshots and trimming (a Dekker pair, both sides seq_cst). A reader
// stores its snapshot s, then re-reads low_water and retries if low_water
// passed s. A trimmer raises low_water to the oldest snapshot it saw, then
// re-scans: anything older it now sees is honoured. So every snapshot in use
// is at least the threshold a trimmer cuts below, and each record keeps its
// newest version at or below the threshold.
//
// Expiry (expiry.cc). A snapshot whose pin word is expired is left out of
// the scan: its owner reads nothing more, so the Dekker pair above needs
// only the snapshots that are not. The trimmer expires those past their
// bound as it scans.
//
// Removal of deleted keys (remove_deleted; index/btree_remove.cc has the
// tree's half). Commits note the keys they delete. After a later commit of
// this process, once the trim threshold has passed a noted tombstone, the
// remover lists the key's record in its slot (state kRemoving), locks it
// as a committer would, and if its head is still a tombstone at or below
// the threshold stores kRemoved in place of its lock word; else it
// unlocks. Then the tree unlinks the marked records. A committer whose lock
// attempt meets kRemoved takes the key's fresh record instead (txn.cc).
// Noted keys live in this process's memory: a process that exits before
// its tombstones pass the threshold leaves those records in the index
// (absent to every reader) until a writer of the key replaces them.
//
// Death. A committer's slot holds its commit record (txn/layout.h). Before
// the dead session's memory is reclaimed, recover() reads the record: in
// kInstalling it installs every listed version not yet at its record's head
// (publishing it first, so the heap reclaim will not free it), and in any
// state it releases the locks the session holds and clears its watermark
// entry. A recovery that is itself interrupted runs again in full: every
// step checks before it acts.
#include "txn/txn_manager.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "crash/crash_point.h"
#include "index/version_chain.h"
#include "log/log.h"
#include "session/session_table.h"
#include "stoa/txn_options.h"
#include "util/clock.h"
#include "util/futex.h"
#include "util/scope_exit.h"

namespace stoa::internal {

namespace {
constexpr uint64_t kLockSpinNs = 20'000'000;     // 20 ms waiting for a live holder
constexpr uint64_t kProbeEveryNs = 1'000'000;    // probe the holder's liveness each 1 ms
constexpr uint64_t kThresholdTtlNs = 1'000'000;  // recompute the trim threshold each 1 ms
constexpr uint64_t kVisibleWaitNs = 10'000'000'000ull;
}  // namespace

TxnManager::TxnManager(TxnContext ctx)
    : ctx_(std::move(ctx)), tree_(*ctx_.region, ctx_.index_root) {
  tree_.count_unfrozen_in(&ctx_.table->header()->counters.nodes_unfrozen);
}

uint64_t TxnManager::take_snapshot(session::SessionSlot* slot) {
  index::IndexHeader* h = header();
  for (;;) {
    uint64_t s = h->visible_ts.load(std::memory_order_acquire);
    txn::txn_of(*slot).snapshot.store(s + 1, std::memory_order_seq_cst);  // +1: 0 means "none"
    if (h->low_water.load(std::memory_order_seq_cst) <= s) return s;
  }
}

void TxnManager::drop_snapshot(session::SessionSlot* slot) {
  txn::txn_of(*slot).snapshot.store(0, std::memory_order_release);
}

void TxnManager::advance_visible() {
  index::IndexHeader* h = header();
  session::SessionTable& t = *ctx_.table;
  const uint64_t g = h->next_ts.load(std::memory_order_seq_cst);
  uint64_t target = g;
  const uint32_t n =
      std::min(t.slot_count(), t.header()->high_slot.load(std::memory_order_acquire));
  for (uint32_t i = 0; i < n; i++) {
    uint64_t v = txn::txn_of(*t.slot(i)).installing.load(std::memory_order_seq_cst);
    if (v == txn::kReserving) return;
    if (v != 0) target = std::min(target, v - 1);
  }
  uint64_t cur = h->visible_ts.load(std::memory_order_relaxed);
  while (cur < target &&
         !h->visible_ts.compare_exchange_weak(cur, target, std::memory_order_acq_rel)) {
  }
}

void TxnManager::await_visible(uint64_t ts) {
  index::IndexHeader* h = header();
  const uint64_t start = util::mono_ns();
  uint64_t last_probe = start;
  for (uint32_t spin = 0;; spin++) {
    advance_visible();
    if (h->visible_ts.load(std::memory_order_acquire) >= ts) return;
    uint64_t now = util::mono_ns();
    if (now - start > kVisibleWaitNs) return;  // a stopped (not dead) committer: give up waiting
    if (now - last_probe > kProbeEveryNs) {
      last_probe = now;
      ctx_.reap_dead_sessions();
    }
    if (spin > 64) std::this_thread::yield();
  }
}

Status TxnManager::lock(SessionCore& s, index::KeyRecord* rec) {
  const uint64_t mine = lock_word(s.slot(), s.generation());
  uint64_t start = 0, last_probe = 0;
  for (uint32_t spin = 0;; spin++) {
    uint64_t expected = 0;
    if (rec->lock.compare_exchange_strong(expected, mine, std::memory_order_acquire)) return {};
    if (expected == mine) return {};
    if (expected == index::kRemoved) {
      return Error(Code::kNotFound, "the key's record has left the index");
    }
    uint64_t now = util::mono_ns();
    if (start == 0) start = last_probe = now;
    if (now - last_probe > kProbeEveryNs) {
      last_probe = now;
      uint32_t holder = uint32_t(expected >> 32) - 1;
      if (holder < ctx_.table->slot_count() && !ctx_.table->held_by_other(holder)) {
        ctx_.reap_slots({holder});
      }
    }
    if (now - start > kLockSpinNs) {
      return Error(Code::kConflict, fmt::format("key is being committed by session {}",
                                                uint32_t(expected >> 32) - 1));
    }
    if (spin > 32) std::this_thread::yield();
  }
}

uint64_t TxnManager::trim_threshold(bool fresh) {
  const uint64_t now = util::mono_ns();
  if (!fresh && now - threshold_at_ns_.load(std::memory_order_relaxed) < kThresholdTtlNs) {
    return threshold_.load(std::memory_order_relaxed);
  }
  index::IndexHeader* h = header();
  session::SessionTable& t = *ctx_.table;
  const uint32_t n =
      std::min(t.slot_count(), t.header()->high_slot.load(std::memory_order_acquire));
  // Snapshots past their bound are expired here and left out (expiry.cc).
  std::atomic<uint64_t>* expired = &t.header()->counters.snapshots_expired;
  auto oldest = [&] {
    uint64_t m = h->visible_ts.load(std::memory_order_seq_cst);
    const expiry::Clock c{now, h->commits.load(std::memory_order_relaxed), m};
    for (uint32_t i = 0; i < n; i++) {
      uint64_t s = txn::txn_of(*t.slot(i)).snapshot.load(std::memory_order_seq_cst);
      if (s != 0 && !expiry::try_expire(*t.slot(i), c, expired)) m = std::min(m, s - 1);
    }
    return m;
  };
  uint64_t candidate = oldest();
  uint64_t lw = h->low_water.load(std::memory_order_relaxed);
  while (lw < candidate &&
         !h->low_water.compare_exchange_weak(lw, candidate, std::memory_order_seq_cst)) {
  }
  uint64_t threshold = std::min(candidate, oldest());
  threshold_.store(threshold, std::memory_order_relaxed);
  threshold_at_ns_.store(now, std::memory_order_relaxed);
  return threshold;
}

void TxnManager::trim(SessionCore& s, index::KeyRecord* rec) {
  const uint64_t low = trim_threshold();
  region::Region& r = *ctx_.region;
  const index::VersionChain chain(r);
  // The newest version at or below the threshold stays, with every newer
  // one. Versions of other processes may lie past this process's mapping
  // (the chain maps them); a damaged chain is left as it is (reads of the
  // key report it).
  auto keep = chain.newest_at(rec->head.load(std::memory_order_relaxed), low);
  if (!keep.ok() || *keep == 0) return;
  auto* ver = reinterpret_cast<index::Version*>(r.rw(*keep));
  const uint64_t cut = ver->next.exchange(0, std::memory_order_acq_rel);
  // A damaged link in the tail stops the walk: the rest leaks.
  (void)chain.walk(cut, [&](uint64_t old_off, const index::Version& old) {
    // A damaged block cannot be retired: it leaks, and the session's
    // recorder goes to a file (the commit itself is sound).
    Status rs = old.blob != 0 ? s.retire(old.blob) : Status{};
    if (rs.ok()) rs = s.retire(old_off);
    if (!rs.ok()) {
      (void)ctx_.corruption(&s, Error(Code::kCorrupt, fmt::format("trimming a version at {}: {}",
                                                                  old_off, rs.error().message())));
    }
    return true;
  });
}

void TxnManager::note_deleted(std::vector<std::string> keys, uint64_t ts) {
  util::MutexLock l(pending_mu_);
  for (std::string& k : keys) pending_.push_back(Deleted{std::move(k), ts});
  pending_n_.store(pending_.size(), std::memory_order_relaxed);
}

void TxnManager::remove_deleted(SessionCore& s, bool fresh) {
  if (pending_n_.load(std::memory_order_relaxed) == 0) return;
  if (!remove_mu_.try_lock()) return;
  remove_due(s, fresh);
  remove_mu_.unlock();
}

void TxnManager::remove_due(SessionCore& s, bool fresh) {
  const uint64_t horizon = trim_threshold(fresh);
  std::vector<std::string> due;
  {
    util::MutexLock l(pending_mu_);
    while (!pending_.empty() && pending_.front().ts <= horizon) {
      due.push_back(std::move(pending_.front().key));
      pending_.pop_front();
    }
    pending_n_.store(pending_.size(), std::memory_order_relaxed);
  }
  if (due.empty()) return;
  std::sort(due.begin(), due.end());
  due.erase(std::unique(due.begin(), due.end()), due.end());
  s.pin();
  auto unpin = util::scope_exit([&] { s.unpin(); });
  auto list = s.alloc(due.size() * sizeof(txn::CommitPair));
  if (!list.ok()) return note_deleted(std::move(due), horizon);  // full: a later pass retries
  txn::TxnSlot& t = txn::txn_of(*s.slot_ptr());
  auto* pairs = reinterpret_cast<txn::CommitPair*>(s.write_ptr(*list));
  t.list = *list;
  t.list_count.store(0, std::memory_order_relaxed);
  t.state.store(uint32_t(txn::CommitState::kRemoving), std::memory_order_release);
  const uint64_t mine = lock_word(s.slot(), s.generation());
  const index::VersionChain chain(*ctx_.region);
  std::vector<std::string_view> marked;
  std::vector<std::string> again;  // locked by a committer now: it may yet abort
  uint64_t listed = 0;
  for (const std::string& key : due) {
    const uint64_t rec = tree_.find(key);
    if (rec == 0 || rec == index::Btree::kDamaged) continue;
    pairs[listed] = txn::CommitPair{rec, 0};
    t.list_count.store(++listed, std::memory_order_release);  // listed before it is locked
    index::KeyRecord* k = tree_.record_rw(rec);
    uint64_t expected = 0;
    if (!k->lock.compare_exchange_strong(expected, mine, std::memory_order_acquire)) {
      if (expected == index::kRemoved) {
        marked.push_back(key);  // marked by a remover that did not unlink it
      } else {
        again.push_back(key);
      }
      continue;
    }
    const index::Version* head = chain.at(k->head.load(std::memory_order_acquire));
    const bool gone =
        head != nullptr && index::VersionChain::tombstone(*head) && head->ts <= horizon;
    k->lock.store(gone ? index::kRemoved : 0, std::memory_order_release);
    if (gone) marked.push_back(key);
  }
  STOA_CRASH_POINT(kIndexRemoveMarked);
  t.state.store(uint32_t(txn::CommitState::kIdle), std::memory_order_release);
  t.list = 0;
  t.list_count.store(0, std::memory_order_relaxed);
  (void)s.free(*list);
  auto unlinked = tree_.unlink_removed(s, marked);
  if (!unlinked.ok()) {
    if (unlinked.error().code() == Code::kCorrupt) {
      // Damage on the way: the recorder goes to a file; the marked records
      // stay linked (absent to every reader) for a writer of the key.
      (void)ctx_.corruption(&s, std::move(unlinked).error());
    } else {
      for (std::string_view k : marked) again.emplace_back(k);  // kFull: a later pass
    }
  }
  if (!again.empty()) note_deleted(std::move(again), horizon);
}

void TxnManager::recover(uint32_t slot, session::SessionSlot* sl, uint32_t dead_gen) {
  txn::TxnSlot& t = txn::txn_of(*sl);
  const auto state = txn::CommitState(t.state.load(std::memory_order_acquire));
  const uint64_t word = lock_word(slot, dead_gen);
  region::Region& r = *ctx_.region;
  region::Heap& heap = *ctx_.heap;
  const uint64_t count = t.list_count.load(std::memory_order_acquire);
  session::RecoveryCounters& counters = ctx_.table->header()->counters;
  if (state == txn::CommitState::kInstalling) {
    counters.rolled_forward.fetch_add(1, std::memory_order_relaxed);
  } else if (state != txn::CommitState::kIdle && state != txn::CommitState::kRemoving) {
    counters.undone.fetch_add(1, std::memory_order_relaxed);
  }
  // Its log range first (log.cc): the record again from the commit list if
  // it passed the commit point, else padding. Before the watermark moves.
  ctx_.log->settle_dead(
      &t.log_start, &t.log_len, state == txn::CommitState::kInstalling,
      [&](std::vector<log::Op>* ops) {
        if (t.list == 0 || !r.ensure(t.list, count * 16).ok()) return;
        const auto* pairs = reinterpret_cast<const txn::CommitPair*>(r.ro(t.list));
        const index::VersionChain chain(r);
        for (uint64_t i = 0; i < count; i++) {
          const index::Version* ver = chain.at(pairs[i].version);
          if (!r.ensure(pairs[i].record, sizeof(index::KeyRecord)).ok() || ver == nullptr) {
            ops->clear();
            return;
          }
          log::Op op;
          op.key = tree_.key_of(pairs[i].record);
          op.kind = index::VersionChain::tombstone(*ver) ? log::OpKind::kDelete : log::OpKind::kPut;
          if (op.kind == log::OpKind::kPut) {
            auto value = chain.value(pairs[i].version);
            if (!value.ok()) {
              ops->clear();
              return;
            }
            op.value = *value;
          }
          ops->push_back(op);
        }
      });
  if (state != txn::CommitState::kIdle && t.list != 0 && r.ensure(t.list, count * 16).ok()) {
    const auto* pairs = reinterpret_cast<const txn::CommitPair*>(r.ro(t.list));
    for (uint64_t i = 0; i < count; i++) {
      if (!r.ensure(pairs[i].record, sizeof(index::KeyRecord)).ok()) continue;
      auto* rec = reinterpret_cast<index::KeyRecord*>(r.rw(pairs[i].record));
      if (rec->lock.load(std::memory_order_acquire) != word) continue;
      if (state == txn::CommitState::kInstalling && pairs[i].version != 0 &&
          r.ensure(pairs[i].version, sizeof(index::Version)).ok()) {
        uint64_t ver_off = pairs[i].version;
        auto* ver = reinterpret_cast<index::Version*>(r.rw(ver_off));
        uint64_t head = rec->head.load(std::memory_order_acquire);
        if (head != ver_off) {
          ver->next.store(head, std::memory_order_relaxed);
          if (ver->blob != 0) (void)heap.publish_orphan(ver->blob);
          (void)heap.publish_orphan(ver_off);
          rec->head.store(ver_off, std::memory_order_release);
        }
      }
      rec->lock.store(0, std::memory_order_release);
    }
  }
  t.state.store(uint32_t(txn::CommitState::kIdle), std::memory_order_release);
  t.list = 0;
  t.list_count.store(0, std::memory_order_relaxed);
  t.snapshot.store(0, std::memory_order_release);
  t.installing.store(0, std::memory_order_seq_cst);
  advance_visible();
  notify_commit();
}

void TxnManager::reset_alone() {
  index::IndexHeader* h = header();
  if (h->magic != index::kIndexMagic) {
    h->magic = index::kIndexMagic;
  }
  uint64_t g = h->next_ts.load(std::memory_order_relaxed);
  h->visible_ts.store(g, std::memory_order_relaxed);
  if (h->low_water.load(std::memory_order_relaxed) > g)
    h->low_water.store(g, std::memory_order_relaxed);
  h->waiters.store(0, std::memory_order_relaxed);
}

Result<uint64_t> TxnManager::make_version(SessionCore& s, std::string_view key,
                                          std::string_view value, bool tombstone) {
  const bool inline_value = value.size() <= index::kInlineValueMax;
  STOA_ASSIGN(uint64_t v, s.alloc(sizeof(index::Version) + (inline_value ? value.size() : 0)));
  auto* ver = reinterpret_cast<index::Version*>(s.write_ptr(v));
  ver->ts = 0;
  ver->next.store(0, std::memory_order_relaxed);
  ver->len = value.size() | (tombstone ? index::kTombstone : 0);
  ver->blob = 0;
  if (inline_value) {
    if (!value.empty())
      std::memcpy(s.write_ptr(v + sizeof(index::Version)), value.data(), value.size());
  } else {
    auto blob = s.alloc(value.size());
    if (!blob.ok()) {
      (void)s.free(v);
      return std::move(blob).error();
    }
    std::memcpy(s.write_ptr(*blob), value.data(), value.size());
    ver->blob = *blob;
  }
  // The sums of what is known now; the commit adds its timestamp's part
  // (stamp()). Computed here, outside the commit's critical section.
  const uint64_t kh = index::VersionChain::key_hash(key);
  ver->head_sum = index::VersionChain::head_base(kh, ver->len, ver->blob);
  ver->value_sum = index::VersionChain::value_sum(kh, value);
  return v;
}

void TxnManager::stamp(index::Version* ver, uint64_t ts) {
  ver->ts = ts;
  ver->head_sum ^= index::VersionChain::ts_part(ts);
}

Status TxnManager::apply(SessionCore& s, uint64_t ts, std::vector<log::Op> ops) {
  if (ops.empty()) return {};
  std::sort(ops.begin(), ops.end(),
            [](const log::Op& a, const log::Op& b) { return a.key < b.key; });
  std::vector<std::string_view> keys;
  keys.reserve(ops.size());
  for (const log::Op& op : ops) {
    if (!keys.empty() && keys.back() == op.key) {
      return Error(Code::kCorrupt, fmt::format("commit {} writes one key twice", ts));
    }
    if (op.key.empty() || op.key.size() > kMaxKeySize) {
      return Error(Code::kCorrupt,
                   fmt::format("commit {} has a key of {} bytes", ts, op.key.size()));
    }
    keys.push_back(op.key);
  }
  s.pin();
  auto unpin = util::scope_exit([&] { s.unpin(); });
  std::vector<uint64_t> recs;
  STOA_TRY(tree_.find_or_insert_batch(s, keys, &recs));
  std::vector<std::string> deleted;
  for (const log::Op& op : ops) {
    if (op.kind == log::OpKind::kDelete) deleted.emplace_back(op.key);
  }
  if (!deleted.empty()) note_deleted(std::move(deleted), ts);
  const index::VersionChain chain(*ctx_.region);
  for (size_t i = 0; i < ops.size(); i++) {
    STOA_ASSIGN(uint64_t v,
                make_version(s, ops[i].key, ops[i].value, ops[i].kind == log::OpKind::kDelete));
    auto* ver = reinterpret_cast<index::Version*>(s.write_ptr(v));
    stamp(ver, ts);
    if (ver->blob != 0) STOA_TRY(s.publish(ver->blob));
    STOA_TRY(s.publish(v));
    index::KeyRecord* rec = tree_.record_rw(recs[i]);
    uint64_t old = rec->head.load(std::memory_order_relaxed);
    rec->head.store(v, std::memory_order_release);
    // Alone: no snapshot can need them (a damaged link leaks the rest).
    (void)chain.walk(old, [&](uint64_t o, const index::Version& ov) {
      if (ov.blob != 0) (void)s.retire(ov.blob);
      (void)s.retire(o);
      return true;
    });
  }
  return {};
}

void TxnManager::notify_commit() {
  // Only when someone waits (Txn::retry announces itself before it checks
  // its keys, and this load follows the install: a Dekker pair, seq_cst on
  // both sides), so an ordinary commit touches no shared word for it.
  index::IndexHeader* h = header();
  if (h->waiters.load(std::memory_order_seq_cst) == 0) return;
  h->commit_futex.fetch_add(1, std::memory_order_seq_cst);
  util::futex_wake(&h->commit_futex);
}

}  // namespace stoa::internal
