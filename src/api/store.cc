// store.cc — the public Store and Session: thin wrappers over StoreImpl.
#include "stoa/store.h"

#include <fmt/format.h>

#include "store/store_impl.h"

namespace stoa {

Result<std::unique_ptr<Store>> Store::open(const std::string& path, const Options& options) {
  STOA_ASSIGN(auto impl, internal::StoreImpl::open(path, options));
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Store::Store(std::unique_ptr<internal::StoreImpl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<Session> Store::session() {
  STOA_ASSIGN(internal::SessionCore * core, impl_->new_session());
  return Session(core);
}

Result<StoreStats> Store::stats() { return impl_->stats(); }
Result<VerifyReport> Store::verify() { return impl_->verify(); }
Result<uint32_t> Store::reap_dead_sessions() { return impl_->reap_dead_sessions(); }
const std::string& Store::path() const { return impl_->path(); }

Session::~Session() { (void)close(); }

Session::Session(Session&& other) noexcept : core_(other.core_) { other.core_ = nullptr; }

Session& Session::operator=(Session&& other) noexcept {
  if (this != &other) {
    (void)close();
    core_ = other.core_;
    other.core_ = nullptr;
  }
  return *this;
}

uint32_t Session::slot() const { return core_ != nullptr ? core_->slot() : 0; }
uint32_t Session::generation() const { return core_ != nullptr ? core_->generation() : 0; }

Status Session::close() {
  if (core_ == nullptr) return Error(Code::kClosed, "session is closed");
  internal::SessionCore* c = core_;
  core_ = nullptr;
  c->host()->user_closing(c);
  return c->host()->close_session(c);
}

// Durability (store_durable.cc has the protocols).
Result<uint64_t> Store::checkpoint() { return impl_->checkpoint(); }
Status Store::sync() { return impl_->sync(); }
Result<uint64_t> Store::backup(const std::string& dest) { return impl_->backup(dest); }
const RecoveryReport& Store::recovery() const { return impl_->recovery(); }

namespace {
Result<std::unique_ptr<internal::StoreImpl>> open_alone(const std::string& path, bool rebuild,
                                                        const Options& options) {
  Options o = options;
  o.create_if_missing = false;
  o.watchdog_interval = std::chrono::milliseconds(0);
  o.log_threads = false;
  o.checkpoint_log_bytes = 0;
  STOA_ASSIGN(auto impl, internal::StoreImpl::open(path, o, rebuild));
  if (!impl->opened_alone()) {
    return Error(Code::kBusy, fmt::format("{}: other processes have the store open", path));
  }
  return impl;
}
}  // namespace

Result<RecoveryReport> Store::recover(const std::string& path, RecoverMode mode,
                                      const Options& options) {
  STOA_ASSIGN(auto impl, open_alone(path, mode == RecoverMode::kRebuild, options));
  return impl->recovery();
}

Result<RecoveryReport> Store::compact(const std::string& path, const Options& options) {
  {
    STOA_ASSIGN(auto impl, open_alone(path, false, options));
    STOA_TRY(impl->checkpoint());
  }
  STOA_ASSIGN(auto impl, open_alone(path, true, options));
  return impl->recovery();
}

}  // namespace stoa
