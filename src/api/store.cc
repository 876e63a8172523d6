// store.cc — the public Store and Session: thin wrappers over StoreImpl.
#include "stoa/store.h"

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
  return c->host()->close_session(c);
}

}  // namespace stoa
