// api/access.h — the one way below the public API: from a Store or Session
// to the StoreImpl and SessionCore behind it, and a Store built around an
// opened StoreImpl (tests open with their own Env this way). For the api
// layer's wrappers, tests, benches and fuzz targets; tools use the public
// API only.
//
// Thread safety: as the objects reached (StoreImpl is thread-safe; a
// SessionCore belongs to its session's thread).
#ifndef STOA_API_ACCESS_H_
#define STOA_API_ACCESS_H_

#include <memory>
#include <string>

#include "stoa/store.h"
#include "store/store_impl.h"

namespace stoa::internal {

// Builds a public Store around an opened StoreImpl (tests open with their
// own Env this way).
struct StoreAccess {
  static StoreImpl* impl(Store& s) { return s.impl_.get(); }
  static SessionCore* core(Session& s) { return s.core_; }
  static std::unique_ptr<Store> wrap(std::unique_ptr<StoreImpl> impl) {
    return std::unique_ptr<Store>(new Store(std::move(impl)));
  }
  static Result<std::unique_ptr<Store>> open(const std::string& path, const Options& options,
                                             Env* env) {
    Options o = options;
    o.env = env;
    return Store::open(path, o);
  }
};

// What tests, benches and the api layer reach below the public API with.
inline StoreImpl* impl_of(Store& s) { return StoreAccess::impl(s); }
inline SessionCore* core_of(Session& s) { return StoreAccess::core(s); }
// The store a session belongs to: StoreImpl is the only SessionHost.
inline StoreImpl* store_of(SessionCore* c) { return static_cast<StoreImpl*>(c->host()); }

}  // namespace stoa::internal

#endif  // STOA_API_ACCESS_H_
