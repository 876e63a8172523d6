// txn/cursor.h — a transaction's cursor: the index at the transaction's
// snapshot merged with its own buffered writes, in key order, either way
// (the internals behind stoa::Cursor).
//
// Thread safety: owned by its transaction's thread; valid until the
// transaction ends.
#ifndef STOA_TXN_CURSOR_H_
#define STOA_TXN_CURSOR_H_

#include <map>
#include <string>
#include <string_view>

#include "index/btree.h"
#include "stoa/txn_options.h"
#include "txn/txn.h"

namespace stoa::internal {

// LevelDB's iterator contract (include/stoa/txn.h): once the cursor is
// not valid, status() says whether the range ended (ok) or the walk met
// damage (kCorrupt, sticky). Moving against the cursor's order re-seeks both
// sources from the current key (a re-descent of the index), so a run of
// steps one way costs what a forward scan costs.
class CursorImpl {
 public:
  using Direction = index::Btree::Direction;

  CursorImpl(TxnImpl* t, std::string from, std::string to, ScanOrder order)
      : t_(t),
        it_(&t->tree()),
        from_(std::move(from)),
        to_(std::move(to)),
        from_prefix_(index::Btree::prefix_of(from_)),
        to_prefix_(index::Btree::prefix_of(to_)),
        order_(order == ScanOrder::kReverse ? Direction::kBackward : Direction::kForward) {
    position(order_ == Direction::kForward ? from_ : to_, order_, false);
  }

  bool valid() const { return valid_; }
  // kCorrupt once the index walk met damage (the cursor is then invalid).
  const Status& status() const { return status_; }
  std::string_view key() const { return key_; }
  std::string_view value() const { return value_; }
  // One key on in the cursor's order. Each move is a call of its
  // transaction: kTimeout (sticky, like damage) once it expired.
  void next() {
    TxnImpl::Call call(t_);
    if (gate(call)) step(order_);
  }
  // One key back, against the cursor's order.
  void prev() {
    TxnImpl::Call call(t_);
    if (gate(call))
      step(order_ == Direction::kForward ? Direction::kBackward : Direction::kForward);
  }
  // The first key at or after `key` in the cursor's order, within its range.
  void seek(std::string_view key) {
    TxnImpl::Call call(t_);
    if (gate(call)) position(std::string(key), order_, false);
  }

 private:
  bool gate(const TxnImpl::Call& call) {
    if (call.status().ok()) return true;
    valid_ = false;
    if (status_.ok()) status_ = call.status();
    return false;
  }
  bool forward() const { return dir_ == Direction::kForward; }
  // Whether the index iterator's key is at or past to_ (non-empty), or
  // before from_: by prefix words first (Btree::compare_keys).
  bool past_to() const {
    return index::Btree::compare_keys(it_.key(), it_.key_prefix(), to_, to_prefix_) >= 0;
  }
  bool before_from() const {
    return index::Btree::compare_keys(it_.key(), it_.key_prefix(), from_, from_prefix_) < 0;
  }
  void step(Direction d) {
    if (!valid_) return;
    if (d != dir_) return position(std::string(key_), d, true);
    if (from_index_)
      it_.next();
    else if (forward())
      ++wit_;
    else
      ++rwit_;
    settle();
  }
  // Both sources at `k` walking `d` (past `k` itself when `exclusive`),
  // clamped to the range; an empty `k` backward means from the end.
  void position(std::string k, Direction d, bool exclusive) {
    dir_ = d;
    valid_ = false;
    if (!status_.ok()) return;  // an error ends the iteration for good
    const auto& w = t_->writes();
    if (forward()) {
      if (k < from_) {
        k = from_;
        exclusive = false;
      }
      it_.seek(k, d);
      if (exclusive && it_.valid() && it_.key() == k) it_.next();
      wit_ = exclusive ? w.upper_bound(k) : w.lower_bound(k);
    } else {
      if (!to_.empty() && (k.empty() || k > to_)) {
        k = to_;
        exclusive = false;
      }
      it_.seek(k, d);
      if (exclusive && it_.valid() && it_.key() == k) it_.next();
      rwit_ = k.empty()
                  ? w.rbegin()
                  : std::make_reverse_iterator(exclusive ? w.lower_bound(k) : w.upper_bound(k));
    }
    settle();
  }
  // Moves the index iterator to its next usable record (visible, in range,
  // not shadowed by the write set); false when it has none left.
  //
  // The index walks strictly in order (Iter checks it) from where
  // position() put it: forward from a key at or past from_, so only to_
  // can end it; backward from a key at or before to_, so from_ ends it and
  // to_ itself (the range excludes it) is skipped once.
  bool index_candidate(std::string_view* k, uint64_t* v) {
    for (; it_.valid(); it_.next()) {
      std::string_view key = it_.key();
      if (forward() && !to_.empty() && past_to()) return false;
      if (!forward() && before_from()) return false;
      if (!forward() && !to_.empty() && past_to()) continue;
      if (!t_->writes().empty() && t_->writes().count(key)) continue;
      auto ver = t_->visible(it_.record(), key, &index_value_);
      if (!ver.ok()) {
        if (status_.ok()) status_ = t_->corrupt(std::move(ver).error());
        *v = index::Btree::kDamaged;
        return false;
      }
      if (*ver == 0) continue;
      *k = key;
      *v = *ver;
      return true;
    }
    return false;
  }
  bool write_candidate(std::string_view* k, uint64_t* v) {
    const auto& w = t_->writes();
    if (forward()) {
      for (; wit_ != w.end(); ++wit_) {
        if (!to_.empty() && wit_->first >= to_) return false;
        if (t_->is_tombstone(wit_->second)) continue;
        *k = wit_->first;
        *v = wit_->second;
        return true;
      }
    } else {
      for (; rwit_ != w.rend(); ++rwit_) {
        if (rwit_->first < from_) return false;
        if (!to_.empty() && rwit_->first >= to_) continue;
        if (t_->is_tombstone(rwit_->second)) continue;
        *k = rwit_->first;
        *v = rwit_->second;
        return true;
      }
    }
    return false;
  }
  void settle() {
    std::string_view ik, wk;
    uint64_t iv = 0, wv = 0;
    bool hi = index_candidate(&ik, &iv);
    if (!it_.status().ok() || iv == index::Btree::kDamaged) {
      valid_ = false;
      if (status_.ok()) {
        status_ = it_.status().ok() ? t_->damaged_index() : t_->corrupt(it_.status().error());
      }
      return;
    }
    bool hw = write_candidate(&wk, &wv);
    valid_ = hi || hw;
    if (!valid_) return;
    bool take_index = hi && (!hw || (forward() ? ik < wk : ik > wk));
    from_index_ = take_index;
    key_ = take_index ? ik : wk;
    value_ = take_index ? index_value_ : t_->value_of(wv);
  }

  TxnImpl* t_;
  index::Btree::Iter it_;
  std::map<std::string, uint64_t, std::less<>>::const_iterator wit_;
  std::map<std::string, uint64_t, std::less<>>::const_reverse_iterator rwit_;
  std::string from_, to_;
  uint64_t from_prefix_, to_prefix_;     // Btree::prefix_of(from_), (to_)
  Direction order_;                      // the cursor's own order (next())
  Direction dir_ = Direction::kForward;  // the way both sources walk now
  bool valid_ = false;
  bool from_index_ = false;
  std::string_view key_;
  std::string_view value_;
  std::string_view index_value_;  // the value of index_candidate's version
  Status status_;
};

}  // namespace stoa::internal

#endif  // STOA_TXN_CURSOR_H_
