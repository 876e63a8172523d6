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
#include "stoa/txn.h"
#include "txn/txn.h"

namespace stoa::internal {

class CursorImpl {
 public:
  CursorImpl(TxnImpl* t, std::string from, std::string to, bool reverse)
      : t_(t), it_(&t->tree()), from_(std::move(from)), to_(std::move(to)), reverse_(reverse) {
    const auto& w = t_->writes();
    if (!reverse_) {
      it_.seek(from_, false);
      wit_ = w.lower_bound(from_);
    } else {
      it_.seek(to_, true);  // last record <= to (to itself excluded below)
      rwit_ = to_.empty() ? w.rbegin() : std::make_reverse_iterator(w.lower_bound(to_));
    }
    settle();
  }

  bool valid() const { return valid_; }
  // kCorrupt once the index walk met damage (the cursor is then invalid).
  const Status& status() const { return status_; }
  std::string_view key() const { return key_; }
  View value() const { return value_; }
  void next() {
    if (!valid_) return;
    if (from_index_)
      it_.next();
    else if (!reverse_)
      ++wit_;
    else
      ++rwit_;
    settle();
  }

 private:
  bool in_range(std::string_view k) const {
    if (k < from_) return false;
    return to_.empty() || k < to_;
  }
  // Moves the index iterator to its next usable record (visible, in range,
  // not shadowed by the write set); false when it has none left.
  bool index_candidate(std::string_view* k, uint64_t* v) {
    index::Btree& tree = t_->tree();
    for (; it_.valid(); it_.next()) {
      std::string_view key = tree.key_of(it_.record());
      if (!reverse_ && !to_.empty() && key >= to_) return false;
      if (reverse_ && key < from_) return false;
      if (!in_range(key)) continue;
      if (!t_->writes().empty() && t_->writes().count(key)) continue;
      uint64_t ver = t_->visible(it_.record());
      if (it_.damaged() || ver == index::Btree::kDamaged) {
        *v = index::Btree::kDamaged;
        return false;
      }
      if (ver == 0) continue;
      *k = key;
      *v = ver;
      return true;
    }
    return false;
  }
  bool write_candidate(std::string_view* k, uint64_t* v) {
    const auto& w = t_->writes();
    if (!reverse_) {
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
    if (it_.damaged() || iv == index::Btree::kDamaged) {
      valid_ = false;
      if (status_.ok()) status_ = t_->damaged_index();
      return;
    }
    bool hw = write_candidate(&wk, &wv);
    valid_ = hi || hw;
    if (!valid_) return;
    bool take_index = hi && (!hw || (reverse_ ? ik > wk : ik < wk));
    from_index_ = take_index;
    key_ = take_index ? ik : wk;
    value_ = t_->value_of(take_index ? iv : wv);
  }

  TxnImpl* t_;
  index::Btree::Iter it_;
  std::map<std::string, uint64_t, std::less<>>::const_iterator wit_;
  std::map<std::string, uint64_t, std::less<>>::const_reverse_iterator rwit_;
  std::string from_, to_;
  bool reverse_;
  bool valid_ = false;
  bool from_index_ = false;
  std::string_view key_;
  View value_;
  Status status_;
};

}  // namespace stoa::internal

#endif  // STOA_TXN_CURSOR_H_
