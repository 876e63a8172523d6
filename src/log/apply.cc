#include "log/apply.h"

#include <algorithm>

#include <fmt/format.h>

namespace stoa::log {

void ApplyRegistry::add(OpKind kind, OpApplier* applier) {
  if (uint32_t(kind) < kOpKindCount) appliers_[uint32_t(kind)] = applier;
}

OpApplier* ApplyRegistry::find(OpKind kind) const {
  return uint32_t(kind) < kOpKindCount ? appliers_[uint32_t(kind)] : nullptr;
}

Status ApplyRegistry::apply(uint64_t ts, const std::vector<Op>& ops) const {
  std::vector<OpApplier*> order;  // distinct appliers, by first op; empty while only one
  OpApplier* first = nullptr;
  for (const Op& op : ops) {
    OpApplier* a = find(op.kind);
    if (a == nullptr) {
      return Error(Code::kCorrupt, fmt::format("commit {}: op of {} on key '{}': no applier is "
                                               "registered for that kind",
                                               ts, kind_name(op.kind), op.key));
    }
    if (first == nullptr) first = a;
    if (a == first && order.empty()) continue;
    if (order.empty()) order.push_back(first);
    if (std::find(order.begin(), order.end(), a) == order.end()) order.push_back(a);
  }
  if (first == nullptr) return {};
  if (order.empty()) return first->apply(ts, ops);  // the common case: one applier, no copy
  std::vector<Op> mine;
  for (OpApplier* a : order) {
    mine.clear();
    for (const Op& op : ops) {
      if (find(op.kind) == a) mine.push_back(op);
    }
    STOA_TRY(a->apply(ts, mine));
  }
  return {};
}

}  // namespace stoa::log
