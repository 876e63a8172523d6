// txn/txn_context.h — what the transaction layer is given by the store:
// the lower layers' objects it works on, the options it reads, and
// callbacks for what only the store can do. The store folder fills one
// (src/store/store_impl.cc) and hands it to its TxnManager; the txn layer
// never sees the store itself.
//
// Thread safety: filled once before the TxnManager is made (log: before
// the first commit), then only read; the objects it names are thread-safe,
// and so must the callbacks be.
#ifndef STOA_TXN_TXN_CONTEXT_H_
#define STOA_TXN_TXN_CONTEXT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "index/layout.h"
#include "region/heap.h"
#include "region/region.h"
#include "session/session_table.h"
#include "stoa/options.h"
#include "stoa/result.h"
#include "txn/expiry.h"

namespace stoa::internal {

class LogManager;
class SessionCore;

struct TxnContext {
  region::Region* region = nullptr;
  index::IndexHeader* index_root = nullptr;  // the index's root (store/layout.h)
  region::Heap* heap = nullptr;
  session::SessionTable* table = nullptr;
  // Made after the TxnManager (the log's start reads the clock in the
  // index header): TxnManager::set_log fills it before any commit.
  LogManager* log = nullptr;
  std::string path;                            // the store directory, for messages
  Durability durability = Durability::kGroup;  // what a commit promises (Options)
  // Options::max_snapshot_age / _lag / _lag_bytes: this process's
  // transactions are expired past them (txn/expiry.cc); all 0: never.
  expiry::Bounds snapshot_bounds;

  // Probes every slot held by another process and reclaims the dead.
  std::function<void()> reap_dead_sessions;
  // Probes the given slots (a lock holder) and reclaims the dead ones.
  std::function<void(const std::vector<uint32_t>& slots)> reap_slots;
  // Damage found by session `s` (may be null): dumps the flight recorders
  // to a file and returns `e` naming it (other codes pass unchanged).
  std::function<Error(SessionCore* s, Error e)> corruption;
};

}  // namespace stoa::internal

#endif  // STOA_TXN_TXN_CONTEXT_H_
