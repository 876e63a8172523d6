// txn/txn.cc — optimistic, serializable transactions across processes.
//
// Reads go straight to the shared index and version chains: the session is
// pinned to a cycle for the whole transaction (so every View stays valid)
// and reads the version with the largest timestamp at or below its
// snapshot. Writes allocate their version at once (kOwned, private to the
// session) and keep it in a sorted write set; savepoints keep an undo log.
//
// Commit, in order (Silo/TL2 shape, across processes):
//  1. For each written key in key order (the canonical lock order): find or
//     insert its record, append (record, version) to the commit list in the
//     session's slot, then lock the record. Key order means two committers
//     never wait on each other in a cycle.
//  2. Take a commit timestamp (txn_manager.cc explains the watermark).
//  3. Validate. Serializable: no key read and no key inside a scanned range
//     has a version newer than the snapshot or a lock held by someone else.
//     Snapshot isolation: the same, for written keys only.
//  4. Stamp the versions, set state kInstalling (the commit point), link
//     each version at the head of its record, trim what no snapshot can
//     read, unlock; clear the watermark entry, advance the watermark, wait
//     until it covers this commit (so the session reads its own writes).
//
// Why serializable: a committer holds its write locks from before it takes
// its timestamp until its versions are installed. A transaction validating
// after taking a larger timestamp therefore sees each earlier committer's
// write either installed (newer than its snapshot: conflict, unless it read
// it) or locked (conflict). Every committed transaction read values that
// were current from its snapshot to its validation, so the timestamp order
// is a serial order.
//
// Death at any point: before kInstalling the commit never happened (the
// survivor unlocks; the private versions are reclaimed with the session's
// memory); from kInstalling on, the survivor installs the rest from the list.
// Readers never see half of it, because the watermark stays below its
// timestamp until the last version is linked.
#include "txn/txn.h"

#include <unistd.h>

#include <cstring>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "crash/crash_point.h"
#include "index/version_chain.h"
#include "log/log.h"
#include "txn/cursor.h"
#include "util/clock.h"
#include "util/futex.h"
#include "util/scope_exit.h"

namespace stoa::internal {

namespace {

Error ended() { return Error(Code::kClosed, "transaction has ended"); }

Status check_key(std::string_view key) {
  if (key.empty()) return Error(Code::kInvalidArgument, "empty key");
  if (key.size() > kMaxKeySize) {
    return Error(Code::kInvalidArgument,
                 fmt::format("key of {} bytes (at most {})", key.size(), kMaxKeySize));
  }
  return {};
}

}  // namespace

// The smallest key greater than every key starting with p ("" = none).
std::string prefix_end(std::string_view p) {
  std::string e(p);
  while (!e.empty()) {
    if (uint8_t(e.back()) != 0xff) {
      e.back() = char(uint8_t(e.back()) + 1);
      return e;
    }
    e.pop_back();
  }
  return e;
}

TxnImpl::TxnImpl(TxnManager* mgr, SessionCore* s, const TxnOptions& options)
    : s_(s), mgr_(mgr), ctx_(&mgr->context()), opts_(options) {}

TxnImpl::~TxnImpl() {
  if (active_) abort();
}

Status TxnImpl::start() {
  if (s_->closed()) return Error(Code::kClosed, "session is closed");
  if (s_->in_txn) {
    return Error(Code::kInvalidArgument, "a transaction is already active in this session");
  }
  s_->in_txn = true;
  // A session pinned from outside (Admin::Blocks) keeps that pin: such a
  // transaction is never expirable.
  const bool pinned_outside = s_->pinned();
  s_->pin();
  snapshot_ = mgr_->take_snapshot(s_->slot_ptr());
  active_ = true;
  session::SessionSlot& sl = *s_->slot_ptr();
  if (ctx_->snapshot_bounds.any() && !pinned_outside) {
    bounded_ = true;
    (void)expiry::arm(sl, ctx_->snapshot_bounds, clock());
    expiry::leave(cycle::pin_of(sl));  // the first call (begin) ends here
  } else {
    const index::IndexHeader* h = mgr_->header();
    expiry::note(sl,
                 {util::coarse_mono_ns(), h->commits.load(std::memory_order_relaxed), snapshot_});
  }
  return {};
}

expiry::Clock TxnImpl::clock() const {
  const index::IndexHeader* h = mgr_->header();
  return {util::mono_ns(), h->commits.load(std::memory_order_relaxed),
          h->visible_ts.load(std::memory_order_acquire)};
}

Status TxnImpl::enter() {
  if (!bounded_ || calls_++ > 0) return {};
  session::SessionSlot& sl = *s_->slot_ptr();
  if (!expiry::enter(cycle::pin_of(sl))) {
    calls_ = 0;
    return expire(false);  // counted by its expirer
  }
  if (expiry::over(txn::txn_of(sl), snapshot_, clock())) {
    calls_ = 0;
    return expire(true);
  }
  return {};
}

void TxnImpl::leave() {
  if (!bounded_ || calls_ == 0) return;
  if (--calls_ == 0 && active_ && !released_) expiry::leave(cycle::pin_of(*s_->slot_ptr()));
}

Error TxnImpl::expire(bool counted) {
  if (counted) {
    ctx_->table->header()->counters.snapshots_expired.fetch_add(1, std::memory_order_relaxed);
  }
  // No shared read since the gate: drop both holds now, not at abort().
  release_holds();
  failed_ = Error(Code::kTimeout,
                  fmt::format("transaction expired: its snapshot (ts {}) passed "
                              "max_snapshot_age or max_snapshot_lag; its Views are no longer valid",
                              snapshot_));
  return *failed_;
}

void TxnImpl::release_holds() {
  if (released_) return;
  TxnManager::drop_snapshot(s_->slot_ptr());
  s_->unpin();
  released_ = true;
}

void TxnImpl::end() {
  if (!active_) return;
  // Versions still ours: uncommitted writes (none after a commit), values
  // a savepoint could have restored, and own writes later overwritten.
  for (const auto& [key, v] : writes_) free_version(v);
  writes_.clear();
  for (const Undo& u : undo_) {
    if (u.prev != 0) free_version(u.prev);
  }
  undo_.clear();
  for (uint64_t v : superseded_) free_version(v);
  superseded_.clear();
  release_holds();
  released_ = false;
  bounded_ = false;
  calls_ = 0;
  s_->in_txn = false;
  active_ = false;
}

Status TxnImpl::usable() const {
  if (!active_) return ended();
  if (failed_) return *failed_;
  return {};
}

Result<uint64_t> TxnImpl::visible(uint64_t rec, std::string_view key,
                                  std::string_view* value) const {
  return mgr_->tree().version_at(rec, key, snapshot_, opts_.check_large_values, value);
}

bool TxnImpl::is_tombstone(uint64_t version) const {
  const auto* ver = reinterpret_cast<const index::Version*>(ctx_->region->ro(version));
  return (ver->len & index::kTombstone) != 0;
}

std::string_view TxnImpl::value_of(uint64_t v) const {
  // `v` is our own version or one version_at() checked, value included.
  auto value = index::VersionChain(*ctx_->region).value(v);
  return value.ok() ? *value : std::string_view();
}

Error TxnImpl::damaged_index() const {
  return ctx_->corruption(
      s_, Error(Code::kCorrupt, fmt::format("{}/stoa.data: an index node on the path to a key "
                                            "fails its shape check (stoa verify names it)",
                                            ctx_->path)));
}

Error TxnImpl::corrupt(Error e) const { return ctx_->corruption(s_, std::move(e)); }

Error TxnImpl::fail(Error e) {
  // Damage found by this session: its flight recorder goes to a file first.
  if (e.code() == Code::kCorrupt) e = ctx_->corruption(s_, std::move(e));
  failed_ = e;
  return e;
}

Result<std::string_view> TxnImpl::get(std::string_view key) {
  STOA_TRY(usable());
  Call call(this);
  STOA_TRY(call.status());
  if (Status st = check_key(key); !st.ok()) return fail(st.error());
  auto it = writes_.find(key);
  if (it != writes_.end()) {
    if (is_tombstone(it->second)) return Error(Code::kNotFound, "key not found");
    return value_of(it->second);
  }
  // Kept by every read-write transaction: validated under serializable
  // isolation, and watched by retry() under either.
  if (!opts_.read_only) reads_.emplace_back(key);
  uint64_t rec = mgr_->tree().find(key);
  if (rec == index::Btree::kDamaged) return fail(damaged_index());
  if (rec == 0) return Error(Code::kNotFound, "key not found");
  std::string_view value;
  auto v = visible(rec, key, &value);
  if (!v.ok()) return fail(std::move(v).error());
  if (*v == 0) return Error(Code::kNotFound, "key not found");
  return value;
}

Result<uint64_t> TxnImpl::make_version(std::string_view key, std::string_view value,
                                       bool tombstone) {
  return TxnManager::make_version(*s_, key, value, tombstone);
}

void TxnImpl::free_version(uint64_t v) {
  const auto* ver = reinterpret_cast<const index::Version*>(ctx_->region->ro(v));
  if (ver->blob != 0) (void)s_->free(ver->blob);
  (void)s_->free(v);
}

Status TxnImpl::put(std::string_view key, std::string_view value, bool tombstone) {
  STOA_TRY(usable());
  Call call(this);
  STOA_TRY(call.status());
  if (Status st = check_key(key); !st.ok()) return fail(st.error());
  if (opts_.read_only)
    return fail(Error(Code::kInvalidArgument, "write in a read-only transaction"));
  if (value.size() > kMaxValueSize) {
    return fail(Error(Code::kInvalidArgument,
                      fmt::format("value of {} bytes (at most {})", value.size(), kMaxValueSize)));
  }
  auto v = make_version(key, value, tombstone);
  if (!v.ok()) return fail(std::move(v).error());
  // A load in ascending key order appends: one compare, not a descent.
  auto [it, inserted] =
      !writes_.empty() && writes_.rbegin()->first < key
          ? std::pair{writes_.emplace_hint(writes_.end(), std::string(key), *v), true}
          : writes_.try_emplace(std::string(key), *v);
  uint64_t prev = inserted ? 0 : it->second;
  if (!inserted) it->second = *v;
  if (!savepoints_.empty()) {
    undo_.push_back(Undo{std::string(key), prev});
  } else if (prev != 0) {
    superseded_.push_back(prev);  // a View of it stays valid until the transaction ends
  }
  return {};
}

uint32_t TxnImpl::savepoint() {
  savepoints_.push_back(undo_.size());
  return uint32_t(savepoints_.size() - 1);
}

Status TxnImpl::rollback_to(uint32_t sp) {
  STOA_TRY(usable());
  if (sp >= savepoints_.size()) {
    return fail(Error(Code::kInvalidArgument, fmt::format("no savepoint {}", sp)));
  }
  while (undo_.size() > savepoints_[sp]) {
    Undo u = std::move(undo_.back());
    undo_.pop_back();
    auto it = writes_.find(u.key);
    free_version(it->second);
    if (u.prev == 0)
      writes_.erase(it);
    else
      it->second = u.prev;
  }
  savepoints_.resize(sp + 1);
  return {};
}

bool TxnImpl::changed(uint64_t rec) const {
  const index::KeyRecord* k = mgr_->tree().record(rec);
  uint64_t lock = k->lock.load(std::memory_order_acquire);
  // kRemoved: its tombstone is at or below every snapshot, ours included.
  if (lock == index::kRemoved) return false;
  if (lock != 0 && lock != TxnManager::lock_word(s_->slot(), s_->generation())) return true;
  // A head that cannot name a version reads as unchanged; reads of the key
  // report the damage (Btree::version_at).
  uint64_t head = k->head.load(std::memory_order_acquire);
  return head != 0 && index::VersionChain(*ctx_->region).ts_of(head) > snapshot_;
}

Status TxnImpl::validate() {
  index::Btree& tree = mgr_->tree();
  if (opts_.isolation == Isolation::kSnapshot) {
    for (const auto& [key, v] : writes_) {
      uint64_t rec = tree.find(key);
      if (rec == index::Btree::kDamaged) return damaged_index();
      if (rec != 0 && changed(rec)) {
        return Error(Code::kConflict,
                     fmt::format("write-write conflict on a key of {} bytes", key.size()));
      }
    }
    return {};
  }
  for (const std::string& key : reads_) {
    uint64_t rec = tree.find(key);
    if (rec == index::Btree::kDamaged) return damaged_index();
    if (rec != 0 && changed(rec)) {
      return Error(Code::kConflict, "a key this transaction read was changed since its snapshot");
    }
  }
  for (const Range& r : ranges_) {
    index::Btree::Iter it(&tree);
    for (it.seek(r.from, index::Btree::Direction::kForward); it.valid(); it.next()) {
      if (!r.to.empty() && it.key() >= r.to) break;
      if (changed(it.record())) {
        return Error(Code::kConflict,
                     "a range this transaction scanned was changed since its snapshot");
      }
    }
    // A damaged node in the range is not "unchanged": the commit fails.
    if (!it.status().ok()) return corrupt(it.status().error());
  }
  return {};
}

void TxnImpl::release_commit(uint64_t locked, bool clear_ts) {
  txn::TxnSlot& t = txn::txn_of(*s_->slot_ptr());
  const uint64_t mine = TxnManager::lock_word(s_->slot(), s_->generation());
  if (t.list != 0) {
    const auto* pairs = reinterpret_cast<const txn::CommitPair*>(ctx_->region->ro(t.list));
    for (uint64_t i = 0; i < locked; i++) {
      auto* rec = mgr_->tree().record_rw(pairs[i].record);
      uint64_t expected = mine;
      rec->lock.compare_exchange_strong(expected, 0, std::memory_order_release);
    }
  }
  t.state.store(uint32_t(txn::CommitState::kIdle), std::memory_order_release);
  uint64_t list = t.list;
  t.list = 0;
  t.list_count.store(0, std::memory_order_relaxed);
  if (list != 0) (void)s_->free(list);
  if (clear_ts) {
    t.installing.store(0, std::memory_order_seq_cst);
    mgr_->advance_visible();
  }
}

Result<uint64_t> TxnImpl::commit() {
  if (!active_) return ended();
  if (failed_) {
    Error e = *failed_;
    abort();
    return e;
  }
  Call call(this);
  if (!call.status().ok()) {
    Error e = call.status().error();
    abort();
    return e;
  }
  if (writes_.empty()) {
    uint64_t s = snapshot_;
    end();
    return s;
  }
  txn::TxnSlot& t = txn::txn_of(*s_->slot_ptr());
  index::Btree& tree = mgr_->tree();
  const uint64_t n = writes_.size();
  auto list = s_->alloc(n * sizeof(txn::CommitPair));
  if (!list.ok()) {
    abort();
    return std::move(list).error();
  }
  auto* pairs = reinterpret_cast<txn::CommitPair*>(s_->write_ptr(*list));
  t.list = *list;
  t.list_count.store(0, std::memory_order_relaxed);
  t.state.store(uint32_t(txn::CommitState::kLocking), std::memory_order_release);
  STOA_CRASH_POINT(kCommitList);
  // Records first (keys in order, one copy per leaf they land in), then the
  // list entry and lock of each, in key order.
  std::vector<std::string_view> keys;
  keys.reserve(n);
  for (const auto& kv : writes_) keys.push_back(kv.first);
  std::vector<uint64_t> recs;
  if (Status st = tree.find_or_insert_batch(*s_, keys, &recs); !st.ok()) {
    release_commit(0, false);
    abort();
    return ctx_->corruption(s_, std::move(st).error());
  }
  uint64_t i = 0;
  for (const auto& [key, v] : writes_) {
    pairs[i] = txn::CommitPair{recs[i], v};
    t.list_count.store(i + 1, std::memory_order_release);
    Status st = mgr_->lock(*s_, tree.record_rw(recs[i]));
    for (int again = 0; !st.ok() && st.error().code() == Code::kNotFound && again < 64; again++) {
      // The record left the index after find_or_insert_batch returned it
      // (a deleted key no snapshot reads: txn_manager.cc): take the key's
      // fresh one. Listed before it is locked, as every entry is.
      auto fresh = tree.find_or_insert(*s_, key);
      if (!fresh.ok()) {
        st = std::move(fresh).error();
        break;
      }
      pairs[i].record = *fresh;
      st = mgr_->lock(*s_, tree.record_rw(*fresh));
    }
    if (!st.ok()) {
      release_commit(i, false);
      abort();
      return std::move(st).error();
    }
    i++;
    STOA_CRASH_POINT(kCommitLock);
  }
  // The log record's ops (log.cc): key order, values read from our versions.
  std::vector<log::Op> ops;
  ops.reserve(n);
  std::vector<std::string> deleted;  // noted for removal once installed
  for (const auto& [key, v] : writes_) {
    log::Op op;
    op.key = key;
    op.kind = is_tombstone(v) ? log::OpKind::kDelete : log::OpKind::kPut;
    if (op.kind == log::OpKind::kPut) op.value = value_of(v);
    if (op.kind == log::OpKind::kDelete) deleted.push_back(key);
    ops.push_back(op);
  }
  const uint64_t len = log::commit_size(ops);
  LogManager& lg = *ctx_->log;
  t.installing.store(txn::kReserving, std::memory_order_seq_cst);
  auto start = lg.reserve(*s_, len);
  if (!start.ok()) {
    release_commit(n, true);
    abort();
    return std::move(start).error();
  }
  STOA_CRASH_POINT(kCommitReserved);
  const uint64_t cts = *start + len;
  t.installing.store(*start + 1, std::memory_order_seq_cst);  // +1: 0 means "none"
  t.commit_ts = cts;
  t.state.store(uint32_t(txn::CommitState::kValidating), std::memory_order_release);
  if (Status st = validate(); !st.ok()) {
    STOA_CRASH_POINT(kCommitAbortPadding);
    (void)lg.write_padding(*start, len);
    t.log_len = 0;
    release_commit(n, true);
    abort();
    return std::move(st).error();
  }
  STOA_CRASH_POINT(kCommitValidated);
  region::Region& r = *ctx_->region;
  for (uint64_t k = 0; k < n; k++)
    TxnManager::stamp(reinterpret_cast<index::Version*>(r.rw(pairs[k].version)), cts);
  t.state.store(uint32_t(txn::CommitState::kInstalling),
                std::memory_order_seq_cst);  // commit point
  STOA_CRASH_POINT(kCommitPoint);
  Status logged = lg.write_commit(*start, len, ops);
  t.log_len = 0;
  STOA_CRASH_POINT(kCommitLogged);
  for (uint64_t k = 0; k < n; k++) {
    auto* rec = tree.record_rw(pairs[k].record);
    auto* ver = reinterpret_cast<index::Version*>(r.rw(pairs[k].version));
    ver->next.store(rec->head.load(std::memory_order_relaxed), std::memory_order_relaxed);
    if (ver->blob != 0) (void)s_->publish(ver->blob);
    (void)s_->publish(pairs[k].version);
    rec->head.store(pairs[k].version, std::memory_order_release);
    mgr_->trim(*s_, rec);
    STOA_CRASH_POINT(kCommitInstall);
  }
  STOA_CRASH_POINT(kCommitInstalled);
  release_commit(n, true);
  mgr_->header()->commits.fetch_add(1, std::memory_order_relaxed);
  writes_.clear();  // installed: no longer ours to free
  STOA_CRASH_POINT(kCommitReleased);
  mgr_->notify_commit();
  if (!deleted.empty()) mgr_->note_deleted(std::move(deleted), cts);
  mgr_->await_visible(cts);
  end();
  STOA_CRASH_POINT(kCommitVisible);
  // Deleted keys that no snapshot can read any more leave the index (this
  // commit's, or earlier ones of this process): amortized over commits.
  mgr_->remove_deleted(*s_);
  // Installed and visible; now the promise of the durability mode.
  if (!logged.ok()) return std::move(logged).error();
  STOA_TRY(lg.after_commit(cts, ctx_->durability));
  return cts;
}

void TxnImpl::abort() { end(); }

Error TxnImpl::retry(std::chrono::milliseconds timeout) {
  if (!active_) return ended();
  if (opts_.read_only) {
    return fail(
        Error(Code::kInvalidArgument,
              "retry() needs a read-write transaction (a read-only one keeps no read set)"));
  }
  std::vector<std::string> keys = std::move(reads_);
  std::vector<Range> ranges = std::move(ranges_);
  const uint64_t snap = snapshot_;
  abort();
  retried_ = true;
  index::IndexHeader* h = mgr_->header();
  index::Btree& tree = mgr_->tree();
  const index::VersionChain chain(*ctx_->region);
  const uint64_t deadline = util::mono_ns() + uint64_t(timeout.count()) * 1000000;
  // Announce first, then read the futex word, then check the keys: a
  // committer that installs after the check sees the announcement and
  // bumps the word (TxnManager::notify_commit), so the wait cannot miss it.
  h->waiters.fetch_add(1, std::memory_order_seq_cst);
  auto leave = util::scope_exit([&] { h->waiters.fetch_sub(1, std::memory_order_seq_cst); });
  for (;;) {
    uint32_t f = h->commit_futex.load(std::memory_order_seq_cst);
    bool moved = false;
    s_->pin();
    for (const std::string& k : keys) {
      uint64_t rec = tree.find(k);
      if (rec == 0 || rec == index::Btree::kDamaged) continue;
      uint64_t head = tree.record(rec)->head.load(std::memory_order_acquire);
      if (head != 0 && chain.ts_of(head) > snap) {
        moved = true;
        break;
      }
    }
    Status walked;
    for (const Range& r : ranges) {
      index::Btree::Iter it(&tree);
      for (it.seek(r.from, index::Btree::Direction::kForward); it.valid() && !moved; it.next()) {
        if (!r.to.empty() && it.key() >= r.to) break;
        uint64_t head = tree.record(it.record())->head.load(std::memory_order_acquire);
        moved = head != 0 && chain.ts_of(head) > snap;
      }
      if (walked.ok() && !it.status().ok()) walked = it.status();
    }
    s_->unpin();
    if (!walked.ok()) return corrupt(walked.error());
    if (moved) return Error(Code::kConflict, "retry: a key this transaction read has changed");
    uint64_t now = util::mono_ns();
    if (now >= deadline) return Error(Code::kTimeout, "retry: nothing it read changed in time");
    uint64_t left = deadline - now;
    util::futex_wait(&h->commit_futex, f, left);
  }
}

Result<std::unique_ptr<CursorImpl>> TxnImpl::scan(std::string_view from, std::string_view to,
                                                  ScanOrder order) {
  STOA_TRY(usable());
  Call call(this);
  STOA_TRY(call.status());
  if (from.size() > kMaxKeySize || to.size() > kMaxKeySize) {
    return fail(Error(Code::kInvalidArgument, "scan bound longer than the largest key"));
  }
  if (!opts_.read_only) {
    ranges_.push_back(Range{std::string(from), std::string(to)});
  }
  auto c = std::make_unique<CursorImpl>(this, std::string(from), std::string(to), order);
  if (!c->status().ok()) return c->status().error();
  return c;
}

}  // namespace stoa::internal
