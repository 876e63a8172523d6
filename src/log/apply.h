// log/apply.h — how replay applies a commit's ops: a table from op kind to
// the applier that the layer owning the kind registered. Put and delete
// come from the store folder (over the txn layer); a later layer adds a
// kind by adding it to log::OpKind and registering one applier here.
//
// Thread safety: fill the registry before it is shared; apply() then only
// reads it (the appliers say what they allow).
#ifndef STOA_LOG_APPLY_H_
#define STOA_LOG_APPLY_H_

#include <array>
#include <cstdint>
#include <vector>

#include "log/layout.h"
#include "log/record.h"
#include "stoa/result.h"

namespace stoa::log {

class OpApplier {
 public:
  virtual ~OpApplier() = default;
  // Applies `ops` (all of kinds registered for this applier, in log order)
  // as part of the commit at timestamp `ts`.
  virtual Status apply(uint64_t ts, const std::vector<Op>& ops) = 0;
};

class ApplyRegistry {
 public:
  // Makes `applier` (not owned; it outlives the registry) apply `kind`.
  void add(OpKind kind, OpApplier* applier);
  OpApplier* find(OpKind kind) const;
  // Applies the commit at `ts`: each applier once, with its ops in log
  // order, appliers in the order of their first op. An op of a kind with no
  // applier is kCorrupt naming the kind and the commit, before any applies.
  Status apply(uint64_t ts, const std::vector<Op>& ops) const;

 private:
  std::array<OpApplier*, kOpKindCount> appliers_{};
};

}  // namespace stoa::log

#endif  // STOA_LOG_APPLY_H_
