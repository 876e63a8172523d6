// stoa/store.h — a store that many threads and processes open at once.
//
// A store is a directory holding a data file (`stoa.data`, the persistent
// heap every process maps), a lock file (`stoa.lock`, the session table,
// cycle state and flight recorders), and `log/`, room for the write-ahead
// log. Any number of processes may open the same directory; each maps the
// files at whatever address it gets and refers to shared data by offset.
//
// Thread safety: `Store` is thread-safe; many threads may call `session()`,
// `stats()` and `verify()` concurrently. A `Session` belongs to one thread at
// a time (hand it over with external synchronisation). A `Store` must outlive
// its sessions, and must not be used in a child after fork(): the child opens
// the store again (the fork handler closes the inherited descriptors so a
// dead parent is still seen as dead).
#ifndef STOA_STORE_H_
#define STOA_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stoa/channel.h"
#include "stoa/msg.h"
#include "stoa/options.h"
#include "stoa/result.h"
#include "stoa/stats.h"
#include "stoa/txn.h"

namespace stoa {

class Session;
namespace internal {
class StoreImpl;
class SessionCore;
struct StoreAccess;
}  // namespace internal

// What Store::recover does with the data file.
enum class RecoverMode : uint8_t {
  kReplay,   // trust it when its checksums and the log allow, as open() does
  kRebuild,  // rebuild it from the checkpoint and the log
};

class Store {
 public:
  // Opens (or creates, per options) the store in directory `path`.
  // Errors: kNotFound (no store and create_if_missing is false), kExists,
  // kPermission, kCorrupt (damaged or foreign file, naming path and reason),
  // kVersionMismatch (another format or struct layout), kIo, kInvalidArgument.
  static Result<std::unique_ptr<Store>> open(const std::string& path, const Options& options = {});

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // A new session (one thread's handle). Errors: kFull when every slot is
  // taken by a live session, kClosed, kIo.
  Result<Session> session();

  // A snapshot of sizes, sessions, cycle and purgatory. Errors: kClosed.
  Result<StoreStats> stats();

  // Checks header, allocator metadata and every guard. When no other process
  // has the store open the check is exhaustive (free lists, leaks, counts);
  // otherwise it checks what can be checked while others run.
  Result<VerifyReport> verify();

  // Looks for dead sessions now and reclaims them; returns how many.
  Result<uint32_t> reap_dead_sessions();

  // Writes a checkpoint now (online: readers and writers go on) and drops
  // the log before it. Returns the timestamp it holds. Errors: kIo, kFull.
  Result<uint64_t> checkpoint();
  // Makes every commit so far durable (an fdatasync of the log).
  Status sync();
  // Writes an online, consistent copy of the store into `dest` (a new
  // directory): a checkpoint of one snapshot, which opening `dest` loads.
  // Returns the timestamp the copy holds. Errors: kExists, kIo, kFull.
  Result<uint64_t> backup(const std::string& dest);
  // What the open of this Store found and did.
  const RecoveryReport& recovery() const;

  // Opens the store alone (no other process may have it open: kBusy),
  // recovers it as open() would (kReplay) — or rebuilds the data file from
  // the checkpoint and log (kRebuild) — closes it, and reports.
  static Result<RecoveryReport> recover(const std::string& path,
                                        RecoverMode mode = RecoverMode::kReplay,
                                        const Options& options = {});
  // Offline shrink: opens the store alone, writes a checkpoint, and
  // rebuilds the data file from it (live data only, no free space, no log).
  // Returns the report of the rebuild. Errors: kBusy, kIo, kFull, kCorrupt.
  static Result<RecoveryReport> compact(const std::string& path, const Options& options = {});

  const std::string& path() const;

 private:
  friend struct internal::StoreAccess;
  explicit Store(std::unique_ptr<internal::StoreImpl> impl);
  std::unique_ptr<internal::StoreImpl> impl_;
};

// One thread's handle on a store: a slot in the session table. Move-only.
// Closing (or destroying) it returns its cached memory and frees its slot.
class Session {
 public:
  Session() = default;
  ~Session();
  Session(Session&& other) noexcept;
  Session& operator=(Session&& other) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  bool is_open() const { return core_ != nullptr; }
  // The slot index in the session table, and its generation.
  uint32_t slot() const;
  uint32_t generation() const;
  // Starts a transaction on this session's snapshot. One transaction at a
  // time per session. Errors: kClosed, kInvalidArgument (one is active).
  Result<Txn> begin(const TxnOptions& options = {});
  // Runs fn in a transaction and commits it; on kConflict (from fn, from
  // commit, or from Txn::retry) runs it again, with backoff, up to
  // options.max_attempts times. Any other error from fn aborts and is
  // returned. Returns the commit timestamp.
  Result<uint64_t> transact(const std::function<Status(Txn&)>& fn,
                            const TransactOptions& options = {});

  // --- messaging (stoa/msg.h has the promises) ---------------------------
  // A new mailbox owned by this session: only it receives; it closes (its
  // messages freed) when this session closes or dies. Errors: kFull (every
  // mailbox of the store in use), kInvalidArgument (zero capacity), kClosed.
  Result<MailboxId> create_mailbox(const MailboxOptions& options = {});
  // The mailbox registered as `name`; when there is none, a new store-owned
  // one (a queue: any session receives, it outlives them all) with
  // `options`. Errors: kInvalidArgument (a name is 1..47 bytes, no NUL),
  // kFull, kClosed.
  Result<MailboxId> queue(std::string_view name, const MailboxOptions& options = {});
  // Closes `id` and frees its messages (its owner, or anyone for a queue);
  // its names go with it. Errors: kNotFound, kInvalidArgument (another
  // session's mailbox), kClosed.
  Status remove_mailbox(MailboxId id);
  // Errors: kNotFound (no such mailbox, or a removed one), kClosed (the
  // mailbox or this session is closed), kFull (the mailbox after the
  // timeout, or the store), kInvalidArgument (larger than the mailbox's
  // max_bytes, or 1 GiB).
  Status send(MailboxId to, std::string_view payload, const SendOptions& options = {});
  // The oldest message (that options.match accepts). Errors: kTimeout,
  // kClosed, kNotFound, kInvalidArgument (another session's mailbox),
  // kCorrupt (a damaged message: it stays where it was).
  Result<Message> receive(MailboxId from, const ReceiveOptions& options = {});
  // receive() without waiting: kTimeout when nothing is there.
  Result<Message> try_receive(MailboxId from);
  // A leased message is done (freed), or goes back to the front of its
  // mailbox. Errors: kNotFound (not leased by this session: acked already,
  // or taken back after this session was presumed dead), kInvalidArgument
  // (not a leased message), kClosed.
  Status ack(const Message& m);
  Status release(const Message& m);
  // Names: `name` -> `id` until unregistered, until the mailbox goes, or
  // until this session (which owns the name) closes or dies. Errors:
  // kExists, kNotFound, kInvalidArgument, kFull, kClosed.
  Status register_name(std::string_view name, MailboxId id);
  Result<MailboxId> whereis(std::string_view name);
  Status unregister_name(std::string_view name);
  // Every mailbox of the store, and one.
  Result<std::vector<MailboxInfo>> mailboxes();
  Result<MailboxInfo> mailbox_info(MailboxId id);

  // --- channels (stoa/channel.h has the promises) --------------------------
  // The channel named `name`; when there is none, a new one with `options`
  // (ignored for an existing one). Errors: kInvalidArgument (a name is
  // 1..47 bytes without NUL; bad options), kFull (256 channels in use, or
  // the store), kClosed.
  Result<ChannelId> channel(std::string_view name, const ChannelOptions& options = {});
  // Errors: kNotFound (no such channel), kClosed (removed, or this session
  // closed), kInvalidArgument (larger than max_message), kFull (after the
  // timeout).
  Status push(ChannelId to, std::string_view payload, const PushOptions& options = {});
  // The oldest message into *payload (its capacity reused: no allocation
  // once it is large enough). Errors: kTimeout, kNotFound, kClosed,
  // kCorrupt (a damaged slot, skipped).
  Result<Popped> pop(ChannelId from, std::string* payload, const PopOptions& options = {});
  // Removes it: pushers and poppers get kClosed, waiting ones are woken,
  // its messages go. Errors: kNotFound, kClosed.
  Status remove_channel(ChannelId id);
  Result<std::vector<ChannelInfo>> channels();

  // Returns caches, drains what purgatory it can, and frees the slot.
  // Closes this session's mailboxes, drops its names, and gives back the
  // messages it holds on lease. Afterwards every call returns kClosed.
  Status close();

 private:
  friend class Store;
  friend struct internal::StoreAccess;
  explicit Session(internal::SessionCore* core) : core_(core) {}
  internal::SessionCore* core_ = nullptr;
};

}  // namespace stoa

#endif  // STOA_STORE_H_
