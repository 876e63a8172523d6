// api/txn.cc — the public Txn, Cursor and Session transaction entry points:
// thin wrappers over the txn layer's TxnImpl and CursorImpl (values come up
// as string_views and leave as Views); a session's TxnManager is reached
// through the store layer.
#include <unistd.h>

#include <algorithm>
#include <thread>

#include <fmt/format.h>

#include "api/access.h"
#include "stoa/store.h"
#include "stoa/txn.h"
#include "store/store_impl.h"
#include "txn/cursor.h"
#include "util/clock.h"

namespace stoa {

using internal::CursorImpl;
using internal::TxnImpl;

Cursor::Cursor() = default;
Cursor::~Cursor() = default;
Cursor::Cursor(Cursor&&) noexcept = default;
Cursor& Cursor::operator=(Cursor&&) noexcept = default;
Cursor::Cursor(std::unique_ptr<CursorImpl> impl) : impl_(std::move(impl)) {}
bool Cursor::valid() const { return impl_ && impl_->valid(); }
std::string_view Cursor::key() const { return impl_->key(); }
View Cursor::value() const {
  std::string_view v = impl_->value();
  return View(v.data(), v.size());
}
static Error no_cursor() { return Error(Code::kClosed, "empty cursor"); }
Status Cursor::next() {
  if (!impl_) return no_cursor();
  impl_->next();
  return impl_->status();
}
Status Cursor::prev() {
  if (!impl_) return no_cursor();
  impl_->prev();
  return impl_->status();
}
Status Cursor::seek(std::string_view key) {
  if (!impl_) return no_cursor();
  impl_->seek(key);
  return impl_->status();
}
Status Cursor::status() const {
  if (!impl_) return no_cursor();
  return impl_->status();
}

Txn::Txn() = default;
Txn::~Txn() = default;
Txn::Txn(Txn&&) noexcept = default;
Txn& Txn::operator=(Txn&&) noexcept = default;
Txn::Txn(std::unique_ptr<TxnImpl> impl) : impl_(std::move(impl)) {}

static Error no_txn() { return Error(Code::kClosed, "no transaction"); }

Result<View> Txn::get(std::string_view key) {
  if (!impl_) return no_txn();
  STOA_ASSIGN(std::string_view v, impl_->get(key));
  return View(v.data(), v.size());
}
Status Txn::put(std::string_view key, std::string_view value) {
  if (!impl_) return no_txn();
  return impl_->put(key, value, false);
}
Status Txn::del(std::string_view key) {
  if (!impl_) return no_txn();
  return impl_->put(key, {}, true);
}
Result<Cursor> Txn::scan(std::string_view from, std::string_view to, ScanOrder order) {
  if (!impl_) return no_txn();
  STOA_ASSIGN(auto c, impl_->scan(from, to, order));
  return Cursor(std::move(c));
}
Result<Cursor> Txn::prefix(std::string_view p, ScanOrder order) {
  return scan(p, internal::prefix_end(p), order);
}
uint32_t Txn::savepoint() { return impl_ ? impl_->savepoint() : 0; }
Status Txn::rollback_to(uint32_t sp) {
  if (!impl_) return no_txn();
  return impl_->rollback_to(sp);
}
Result<uint64_t> Txn::commit() {
  if (!impl_) return no_txn();
  return impl_->commit();
}
void Txn::abort() {
  if (impl_) impl_->abort();
}
Error Txn::retry(std::chrono::milliseconds timeout) {
  if (!impl_) return no_txn();
  return impl_->retry(timeout);
}
uint64_t Txn::snapshot() const { return impl_ ? impl_->snapshot() : 0; }
bool Txn::active() const { return impl_ && impl_->active(); }

Result<Txn> Session::begin(const TxnOptions& options) {
  if (core_ == nullptr) return Error(Code::kClosed, "session is closed");
  auto impl = std::make_unique<TxnImpl>(&internal::store_of(core_)->txns(), core_, options);
  STOA_TRY(impl->start());
  return Txn(std::move(impl));
}

Result<uint64_t> Session::transact(const std::function<Status(Txn&)>& fn,
                                   const TransactOptions& options) {
  uint64_t rng = 0;  // seeded at the first conflict: most calls never need it
  for (uint32_t attempt = 0; attempt < options.max_attempts; attempt++) {
    STOA_ASSIGN(Txn t, begin(options.txn));
    Status st = fn(t);
    Code code;
    if (st.ok()) {
      auto r = t.commit();
      if (r.ok()) return r;
      code = r.code();
      if (code != Code::kConflict) return std::move(r).error();
    } else {
      code = st.code();
      bool waited = t.impl_->retried();
      t.abort();
      if (code != Code::kConflict) return std::move(st).error();
      if (waited) continue;  // retry() already slept until something changed
    }
    uint64_t cap =
        std::min<uint64_t>(uint64_t(options.backoff_cap.count()),
                           uint64_t(options.backoff_base.count()) << std::min(attempt, 20u));
    if (rng == 0) rng = util::mono_ns() ^ (uint64_t(slot()) << 48) ^ uint64_t(::getpid());
    rng ^= rng << 13;  // xorshift64
    rng ^= rng >> 7;
    rng ^= rng << 17;
    if (cap > 0) std::this_thread::sleep_for(std::chrono::microseconds(rng % cap));
  }
  return Error(Code::kConflict, fmt::format("transaction still conflicting after {} attempts",
                                            options.max_attempts));
}

}  // namespace stoa
