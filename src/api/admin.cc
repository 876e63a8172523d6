// admin.cc — the public Admin interface (stoa/admin.h): thin wrappers over
// StoreImpl and SessionCore that copy internal reports into public structs.
// Nothing here keeps state or runs a protocol of its own; each call is the
// StoreImpl (or SessionCore) method it names, with that method's locking.
#include "stoa/admin.h"

#include <utility>

#include "api/access.h"
#include "log/checkpoint.h"
#include "store/store_impl.h"

namespace stoa {
namespace {

Error closed_session() { return Error(Code::kClosed, "session is closed"); }

}  // namespace

Result<std::vector<RecorderDump>> Admin::recorder(Store& store, std::optional<uint32_t> slot) {
  STOA_ASSIGN(auto dumps, internal::impl_of(store)->recorder(slot));
  std::vector<RecorderDump> out;
  out.reserve(dumps.size());
  for (internal::RecorderDump& d : dumps) {
    RecorderDump p{d.slot, d.generation, d.pid, std::move(d.state), {}};
    p.entries.reserve(d.entries.size());
    for (internal::RecorderDump::Entry& e : d.entries) {
      p.entries.push_back(RecorderEntry{e.time_ns, std::move(e.kind), std::move(e.result),
                                        e.generation, e.arg, e.arg2});
    }
    out.push_back(std::move(p));
  }
  return out;
}

Result<LogCheck> Admin::check_log(Store& store) {
  internal::StoreImpl& s = *internal::impl_of(store);
  if (!s.has_log()) return Error(Code::kClosed, s.path() + ": the store has no log");
  LogCheck c;
  s.log().verify(&c.records, &c.checkpoint_keys, &c.problems);
  if (auto st = s.stats(); st.ok()) c.checkpoint_ts = st->checkpoint_ts;
  return c;
}

bool Admin::opened_alone(Store& store) { return internal::impl_of(store)->opened_alone(); }

void Admin::drain_parked(Store& store) { internal::impl_of(store)->drain_parked(); }

StorePaths Admin::paths(const std::string& dir) {
  return StorePaths{dir + "/" + internal::kDataFileName, dir + "/" + internal::kLockFileName,
                    dir + "/" + internal::kLogDirName, dir + "/" + internal::kSumFileName};
}

std::string Admin::checkpoint_path(const std::string& dir, uint64_t ts) {
  return paths(dir).log_dir + "/" + internal::checkpoint_name(ts);
}

Result<uint64_t> Admin::Blocks::alloc(size_t size) {
  internal::SessionCore* c = internal::core_of(*session_);
  if (c == nullptr) return closed_session();
  return c->alloc(size);
}

Status Admin::Blocks::publish(uint64_t block) {
  internal::SessionCore* c = internal::core_of(*session_);
  return c != nullptr ? c->publish(block) : Status(closed_session());
}

Status Admin::Blocks::retire(uint64_t block) {
  internal::SessionCore* c = internal::core_of(*session_);
  return c != nullptr ? c->retire(block) : Status(closed_session());
}

Status Admin::Blocks::free(uint64_t block) {
  internal::SessionCore* c = internal::core_of(*session_);
  return c != nullptr ? c->free(block) : Status(closed_session());
}

Result<const char*> Admin::Blocks::read(uint64_t block, size_t len) {
  internal::SessionCore* c = internal::core_of(*session_);
  if (c == nullptr) return closed_session();
  return c->read(block, len);
}

const char* Admin::Blocks::view(uint64_t block) const {
  return internal::core_of(*session_)->view(block);
}

char* Admin::Blocks::write_ptr(uint64_t block) const {
  return internal::core_of(*session_)->write_ptr(block);
}

void Admin::Blocks::pin() { internal::core_of(*session_)->pin(); }
void Admin::Blocks::unpin() { internal::core_of(*session_)->unpin(); }

}  // namespace stoa
