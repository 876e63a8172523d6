// store/store_snapshot.h — the snapshot a checkpoint is written from
// (log::SnapshotSource), over the txn layer's snapshots and the index.
//
// Thread safety: a TxnSnapshotSource belongs to one thread (it uses one
// session, which is not in a transaction).
#ifndef STOA_STORE_SNAPSHOT_H_
#define STOA_STORE_SNAPSHOT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "log/checkpoint.h"
#include "session/session_core.h"
#include "stoa/result.h"

namespace stoa::internal {

class StoreImpl;

class TxnSnapshotSource final : public SnapshotSource {
 public:
  // Uses session `s`; closes it on destruction when `owned`.
  TxnSnapshotSource(StoreImpl* store, SessionCore* s, bool owned)
      : store_(store), s_(s), owned_(owned) {}
  ~TxnSnapshotSource() override;
  TxnSnapshotSource(const TxnSnapshotSource&) = delete;
  TxnSnapshotSource& operator=(const TxnSnapshotSource&) = delete;

  uint64_t take() override;
  Status scan(const std::function<void(std::string_view key, std::string_view value)>& entry,
              const std::function<Status(bool last)>& chunk_done) override;

 private:
  StoreImpl* store_;
  SessionCore* s_;
  bool owned_;
  bool taken_ = false;
  uint64_t ts_ = 0;
};

}  // namespace stoa::internal

#endif  // STOA_STORE_SNAPSHOT_H_
