// txn/txn.h — one transaction (the internals behind stoa::Txn).
//
// Thread safety: owned by its session's thread.
#ifndef STOA_TXN_TXN_H_
#define STOA_TXN_TXN_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "index/btree.h"
#include "session/session_core.h"
#include "stoa/txn_options.h"
#include "txn/txn_context.h"
#include "txn/txn_manager.h"

namespace stoa::internal {

class CursorImpl;

// The smallest key greater than every key starting with p ("" = none).
std::string prefix_end(std::string_view p);

class TxnImpl {
 public:
  TxnImpl(TxnManager* mgr, SessionCore* s, const TxnOptions& options);
  ~TxnImpl();

  Status start();
  // Values are in place in the mapping, valid until the transaction ends.
  Result<std::string_view> get(std::string_view key);
  Status put(std::string_view key, std::string_view value, bool tombstone);
  Result<std::unique_ptr<CursorImpl>> scan(std::string_view from, std::string_view to,
                                           ScanOrder order);
  uint32_t savepoint();
  Status rollback_to(uint32_t sp);
  Result<uint64_t> commit();
  void abort();
  Error retry(std::chrono::milliseconds timeout);

  uint64_t snapshot() const { return snapshot_; }
  bool active() const { return active_; }
  bool retried() const { return retried_; }

  // For cursors.
  index::Btree& tree() { return mgr_->tree(); }
  // The version of `rec` (whose key is `key`) visible to this snapshot (0:
  // none or tombstone), checked (Btree::version_at), with its value in
  // *value; kCorrupt naming key and offset.
  Result<uint64_t> visible(uint64_t rec, std::string_view key, std::string_view* value) const;
  // kCorrupt for a damaged index node or version met on a read (recorder dumped).
  Error damaged_index() const;
  // A kCorrupt error met by a walk, with this session's recorder dumped.
  Error corrupt(Error e) const;
  std::string_view value_of(uint64_t version) const;
  bool is_tombstone(uint64_t version) const;
  const std::map<std::string, uint64_t, std::less<>>& writes() const { return writes_; }

  // The gate of a bounded transaction around each call (txn/expiry.cc):
  // enter() is kTimeout once the snapshot expired (the transaction is then
  // unusable, its holds released), else opens the call; leave() closes it.
  // Nestable; no-ops for an unbounded transaction.
  Status enter();
  void leave();
  class Call {
   public:
    // Inline: an unbounded transaction (the default) pays one branch.
    explicit Call(TxnImpl* t) : t_(t), status_(t->bounded_ ? t->enter() : Status()) {}
    ~Call() {
      if (t_->bounded_ && status_.ok()) t_->leave();
    }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;
    const Status& status() const { return status_; }

   private:
    TxnImpl* t_;
    Status status_;
  };

 private:
  Status usable() const;
  Error fail(Error e);  // records e: the transaction is unusable but for abort
  Result<uint64_t> make_version(std::string_view key, std::string_view value, bool tombstone);
  void free_version(uint64_t v);
  bool changed(uint64_t rec) const;
  Status validate();
  void release_commit(uint64_t locked, bool clear_ts);
  // Frees the versions still ours, drops the snapshot, unpins.
  void end();
  // Drops the snapshot and the pin of an expired transaction, at once.
  Error expire(bool counted);
  // Drops the snapshot and unpins, once per transaction (expiry or end).
  void release_holds();
  expiry::Clock clock() const;

  SessionCore* s_;
  TxnManager* mgr_;
  const TxnContext* ctx_;  // the manager's
  TxnOptions opts_;
  uint64_t snapshot_ = 0;
  bool active_ = false;
  bool retried_ = false;
  bool bounded_ = false;         // expirable between calls (txn/expiry.cc)
  bool released_ = false;        // expired: snapshot and pin already dropped
  uint32_t calls_ = 0;           // depth of open calls (bounded only)
  std::optional<Error> failed_;  // sticky: only abort() after it
  std::map<std::string, uint64_t, std::less<>> writes_;  // key -> kOwned version
  struct Undo {
    std::string key;
    uint64_t prev;  // version before the write; 0 when the key was not written
  };
  std::vector<Undo> undo_;            // kept only while a savepoint exists
  std::vector<size_t> savepoints_;    // undo_ size at each savepoint
  std::vector<uint64_t> superseded_;  // replaced versions, freed at the end
  std::vector<std::string> reads_;
  struct Range {
    std::string from, to;  // [from, to); to empty = unbounded
  };
  std::vector<Range> ranges_;
};

}  // namespace stoa::internal

#endif  // STOA_TXN_TXN_H_
