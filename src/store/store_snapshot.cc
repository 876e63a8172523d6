// store/store_snapshot.cc — walking the snapshot a checkpoint is written
// from (log/checkpoint.cc has the checkpoint protocol).
//
// The snapshot C is announced in the session's slot (TxnManager::
// take_snapshot), so trimming keeps, for every key, the version visible at
// C until the source is destroyed. The walk pins a cycle for one chunk of
// keys at a time, so reclamation goes on; between chunks it re-seeks from
// the last key, since nodes may have been replaced. A crash leaves only the
// announcement in a dead slot, which its recovery clears.
#include "store/store_snapshot.h"

#include <fmt/format.h>

#include "index/version_chain.h"
#include "store/store_impl.h"

namespace stoa::internal {

namespace {
constexpr int kChunkKeys = 256;
}  // namespace

TxnSnapshotSource::~TxnSnapshotSource() {
  if (taken_) TxnManager::drop_snapshot(s_->slot_ptr());
  if (owned_) (void)store_->close_session(s_);
}

uint64_t TxnSnapshotSource::take() {
  ts_ = store_->txns().take_snapshot(s_->slot_ptr());
  taken_ = true;
  return ts_;
}

Status TxnSnapshotSource::scan(
    const std::function<void(std::string_view key, std::string_view value)>& entry,
    const std::function<Status(bool last)>& chunk_done) {
  TxnManager& mgr = store_->txns();
  index::Btree& tree = mgr.tree();
  region::Region& r = store_->region();
  SessionCore& s = *s_;
  const uint64_t ts = ts_;
  std::string last;
  bool started = false, done = false, bad = false;
  std::string version_error;
  while (!done) {
    s.pin();
    index::Btree::Iter it(&tree);
    it.seek(last, index::Btree::Direction::kForward);
    if (started && it.valid() && it.key() == last) it.next();
    for (int n = 0; n < kChunkKeys && it.valid(); n++, it.next()) {
      std::string_view key = it.key();
      // Large values too: a checkpoint must not carry damage into the
      // files it replaces.
      auto v = tree.version_at(it.record(), key, ts, true);
      // Damage, or keys out of order (which would make the walk resume
      // behind itself forever): no checkpoint.
      if (!v.ok() || (started && key <= last)) {
        if (!v.ok()) version_error = v.error().message();
        bad = true;
        break;
      }
      last.assign(key);
      started = true;
      if (*v == 0) continue;
      auto value = index::VersionChain(r).value(*v);  // version_at checked it
      if (!value.ok()) {
        bad = true;
        break;
      }
      entry(key, *value);
    }
    // The iterator's error names the damaged node.
    const std::string why = !it.status().ok()        ? " (" + it.status().error().message() + ")"
                            : !version_error.empty() ? " (" + version_error + ")"
                                                     : "";
    const bool damaged = !it.status().ok() || bad;
    done = !it.valid();
    s.unpin();
    if (damaged) {
      return Error(Code::kCorrupt, fmt::format("{}/stoa.data: the index fails its checks after "
                                               "key '{}'{}: no checkpoint written (stoa verify "
                                               "names the damage)",
                                               store_->path(), last, why));
    }
    STOA_TRY(chunk_done(done));
  }
  return {};
}

}  // namespace stoa::internal
