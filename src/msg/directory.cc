// msg/directory.cc — making, naming, closing and listing mailboxes.
//
// The directory is one heap block, made by the first session that needs a
// mailbox: allocated (kOwned), formatted, recorded in MsgRoot::dir_pending,
// published (kLive: the commit point), then rooted in MsgRoot::dir. All
// under dir_lock. A holder that dies before the publish leaves a kOwned
// block the heap frees with its session; one that dies after it leaves a
// kLive block that the repair (repair_dir, the next dir_lock holder) roots.
// The repair runs before the heap reclaims the dead session's blocks: dead
// session recovery takes dir_lock first (lifecycle order, msg above heap).
//
// An entry's life, each change under dir_lock and the entry's own lock:
//   kFree -> kOpen     create(): limits, owner, figures, then the state
//                      (release) last;
//   kOpen -> kClosed   remove(), or its owner closes or dies: senders and
//                      receivers get kClosed, sleepers are woken;
//   kClosed -> kFree   drain_box() retires its messages one by one (each is
//                      retired, then unlinked: the repair drops a retired
//                      message wherever it is), then gen++ (old ids now
//                      give kNotFound) and the state.
// A session holding a stale id locks the entry and compares generations, so
// an entry reused under it answers kNotFound, never another's messages.
//
// Names: an entry is written field by field with its id last (0: free), so
// a holder that dies half-way leaves a free entry; unregistering clears the
// id first. A name goes with its mailbox, and with the session that
// registered it (queue names belong to the store).
#include <fmt/format.h>

#include <cstring>

#include "crash/crash_point.h"
#include "msg/mailboxes.h"
#include "util/clock.h"

namespace stoa::msg {

using internal::SessionCore;

Status check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes || name.find('\0') != std::string_view::npos) {
    return Error(Code::kInvalidArgument,
                 fmt::format("a mailbox or channel name is 1 to {} bytes without NUL (got {} "
                             "bytes)",
                             kMaxNameBytes, name.size()));
  }
  return {};
}

bool name_is(const char* stored, std::string_view name) {
  return std::strncmp(stored, name.data(), name.size()) == 0 && stored[name.size()] == '\0';
}

void copy_name(char* to, std::string_view name) {
  std::memset(to, 0, kMaxNameBytes + 1);
  std::memcpy(to, name.data(), name.size());
}

Directory* Mailboxes::dir() const {
  const uint64_t d = c_.root->dir.load(std::memory_order_acquire);  // pairs with dir_or_make
  if (d == 0 || !c_.region->reach(d, sizeof(Directory))) return nullptr;
  auto* p = reinterpret_cast<Directory*>(c_.region->rw(d));
  return p->magic == kDirMagic ? p : nullptr;
}

// Holding dir_lock.
Result<Directory*> Mailboxes::dir_or_make(SessionCore& s) {
  if (Directory* d = dir(); d != nullptr) return d;
  if (c_.root->dir.load(std::memory_order_relaxed) != 0) {
    return Error(Code::kCorrupt,
                 fmt::format("{}: the mailbox directory is damaged", c_.region->path()));
  }
  STOA_ASSIGN(Offset off, s.alloc(sizeof(Directory)));
  auto* d = reinterpret_cast<Directory*>(s.write_ptr(off));
  std::memset(static_cast<void*>(d), 0, sizeof(Directory));
  for (Mailbox& b : d->boxes) {
    b.lock.init();
    b.gen = 1;
  }
  d->magic = kDirMagic;
  c_.root->dir_pending = off;
  Status st = s.publish(off);
  if (!st.ok()) {
    c_.root->dir_pending = 0;
    (void)s.free(off);
    return std::move(st).error();
  }
  STOA_CRASH_POINT(kMsgDirPublished);
  c_.root->dir.store(off, std::memory_order_release);  // pairs with dir()
  c_.root->dir_pending = 0;
  return d;
}

Result<Mailbox*> Mailboxes::find(uint64_t id) const {
  Directory* d = dir();
  const uint32_t i = id_index(id);
  if (d == nullptr || id == 0 || i >= kMaxMailboxes) {
    return Error(Code::kNotFound, fmt::format("no mailbox {:#x}", id));
  }
  Mailbox* b = &d->boxes[i];
  if (b->state.load(std::memory_order_acquire) == uint32_t(BoxState::kFree)) {
    return Error(Code::kNotFound, fmt::format("no mailbox {:#x}", id));
  }
  return b;  // the caller checks the generation under the entry's lock
}

// Holding dir_lock.
Result<uint64_t> Mailboxes::create_locked(SessionCore& s, const BoxLimits& l, bool owned) {
  if (l.max_messages == 0 || l.max_bytes == 0) {
    return Error(Code::kInvalidArgument, "a mailbox holds at least one message and one byte");
  }
  STOA_ASSIGN(Directory * d, dir_or_make(s));
  for (int pass = 0; pass < 2; pass++) {
    for (uint32_t i = 0; i < kMaxMailboxes; i++) {
      Mailbox& b = d->boxes[i];
      if (b.state.load(std::memory_order_relaxed) != uint32_t(BoxState::kFree)) continue;
      BoxLock lock(*this, b);
      b.owner = owned ? owner_word(s.slot(), s.generation()) : 0;
      b.head = b.tail = b.leased = 0;
      b.count.store(0, std::memory_order_relaxed);
      b.bytes.store(0, std::memory_order_relaxed);
      b.nleased.store(0, std::memory_order_relaxed);
      b.max_messages = l.max_messages;
      b.max_bytes = std::min(l.max_bytes, kMaxPayload * 4);
      b.next_seq = 1;
      b.op_kind = uint32_t(Op::kNone);
      b.op_msg = 0;
      b.created_ns = util::real_ns();
      b.sends = b.receives = b.redeliveries = 0;
      std::memset(b.name, 0, sizeof(b.name));
      b.state.store(uint32_t(BoxState::kOpen), std::memory_order_release);  // pairs with find()
      return mailbox_id(i, b.gen);
    }
    // Every entry in use: closed ones not drained yet may be freed now.
    if (pass == 0) STOA_TRY(drain_closed_locked(s));
  }
  return Error(Code::kFull,
               fmt::format("{}: all {} mailboxes are in use", c_.region->path(), kMaxMailboxes));
}

Result<uint64_t> Mailboxes::create(SessionCore& s, const BoxLimits& l, bool owned) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  Result<uint64_t> r = [&] {
    DirLock lock(*this);
    return create_locked(s, l, owned);
  }();
  s.collect_if_due();
  return r;
}

// Holding dir_lock: the entry registered as `name`, or nullptr.
NameEntry* Mailboxes::name_entry(Directory& d, std::string_view name) const {
  for (NameEntry& e : d.names) {
    if (e.id != 0 && name_is(e.name, name)) return &e;
  }
  return nullptr;
}

Result<uint64_t> Mailboxes::queue(SessionCore& s, std::string_view name, const BoxLimits& l) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  STOA_TRY(check_name(name));
  Result<uint64_t> r = [&]() -> Result<uint64_t> {
    DirLock lock(*this);
    STOA_ASSIGN(Directory * d, dir_or_make(s));
    if (NameEntry* e = name_entry(*d, name); e != nullptr) return e->id;
    NameEntry* free_entry = nullptr;
    for (NameEntry& e : d->names) {
      if (e.id == 0) {
        free_entry = &e;
        break;
      }
    }
    if (free_entry == nullptr) {
      return Error(Code::kFull, fmt::format("{}: all {} mailbox names are in use",
                                            c_.region->path(), kMaxNames));
    }
    STOA_ASSIGN(uint64_t id, create_locked(s, l, /*owned=*/false));
    Mailbox& b = d->boxes[id_index(id)];
    {
      BoxLock box(*this, b);
      copy_name(b.name, name);
    }
    copy_name(free_entry->name, name);
    free_entry->owner = 0;
    free_entry->id = id;  // last: the entry exists from here
    return id;
  }();
  s.collect_if_due();
  return r;
}

Status Mailboxes::register_name(SessionCore& s, std::string_view name, uint64_t id) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  STOA_TRY(check_name(name));
  DirLock lock(*this);
  STOA_ASSIGN(Mailbox * b, find(id));
  {
    BoxLock box(*this, *b);
    if (b->gen != id_gen(id)) return Error(Code::kNotFound, fmt::format("no mailbox {:#x}", id));
    if (b->state.load(std::memory_order_relaxed) != uint32_t(BoxState::kOpen)) {
      return Error(Code::kClosed, fmt::format("mailbox {:#x} is closed", id));
    }
  }
  Directory* d = dir();
  if (NameEntry* e = name_entry(*d, name); e != nullptr) {
    return Error(Code::kExists, fmt::format("the name '{}' is taken (mailbox {:#x})", name, e->id));
  }
  for (NameEntry& e : d->names) {
    if (e.id != 0) continue;
    copy_name(e.name, name);
    e.owner = owner_word(s.slot(), s.generation());
    e.id = id;  // last
    return {};
  }
  return Error(Code::kFull,
               fmt::format("{}: all {} mailbox names are in use", c_.region->path(), kMaxNames));
}

Result<uint64_t> Mailboxes::whereis(SessionCore& s, std::string_view name) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  STOA_TRY(check_name(name));
  DirLock lock(*this);
  Directory* d = dir();
  NameEntry* e = d != nullptr ? name_entry(*d, name) : nullptr;
  if (e == nullptr) return Error(Code::kNotFound, fmt::format("no mailbox named '{}'", name));
  return e->id;
}

Status Mailboxes::unregister_name(SessionCore& s, std::string_view name) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  STOA_TRY(check_name(name));
  DirLock lock(*this);
  Directory* d = dir();
  NameEntry* e = d != nullptr ? name_entry(*d, name) : nullptr;
  if (e == nullptr) return Error(Code::kNotFound, fmt::format("no mailbox named '{}'", name));
  e->id = 0;  // first: the entry is free from here
  e->owner = 0;
  return {};
}

// Holding dir_lock and b's lock: open -> closed, names dropped, sleepers woken.
void Mailboxes::close_locked(Directory& d, Mailbox& b, uint32_t index) const {
  b.state.store(uint32_t(BoxState::kClosed), std::memory_order_release);
  const uint64_t id = mailbox_id(index, b.gen);
  for (NameEntry& e : d.names) {
    if (e.id == id) {
      e.id = 0;
      e.owner = 0;
    }
  }
  wake(b, true, true);
}

Status Mailboxes::remove(SessionCore& s, uint64_t id) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  Status st = [&]() -> Status {
    DirLock lock(*this);
    STOA_ASSIGN(Mailbox * b, find(id));
    BoxLock box(*this, *b);
    if (b->gen != id_gen(id)) return Error(Code::kNotFound, fmt::format("no mailbox {:#x}", id));
    if (b->owner != 0 && b->owner != owner_word(s.slot(), s.generation())) {
      return Error(Code::kInvalidArgument,
                   fmt::format("mailbox {:#x} belongs to another session", id));
    }
    if (b->state.load(std::memory_order_relaxed) == uint32_t(BoxState::kOpen)) {
      close_locked(*dir(), *b, id_index(id));
    }
    return drain_box(s, *b);
  }();
  s.collect_if_due();
  return st;
}

BoxInfo Mailboxes::describe(const Directory& d, const Mailbox& b, uint32_t index) const {
  BoxInfo i;
  i.id = mailbox_id(index, b.gen);
  i.name = b.name;
  for (const NameEntry& e : d.names) {
    if (i.name.empty() && e.id == i.id) i.name = e.name;
  }
  i.store_owned = b.owner == 0;
  i.owner_slot = b.owner == 0 ? 0 : owner_slot(b.owner);
  i.closed = b.state.load(std::memory_order_relaxed) != uint32_t(BoxState::kOpen);
  i.count = b.count.load(std::memory_order_relaxed);
  i.bytes = b.bytes.load(std::memory_order_relaxed);
  i.leased = b.nleased.load(std::memory_order_relaxed);
  i.max_messages = b.max_messages;
  i.max_bytes = b.max_bytes;
  const MsgHeader* h = b.head != 0 ? hdr(b.head) : nullptr;
  i.oldest_sent_ns = h != nullptr ? h->sent_ns : 0;
  i.sends = b.sends;
  i.receives = b.receives;
  i.redeliveries = b.redeliveries;
  return i;
}

Result<std::vector<BoxInfo>> Mailboxes::list(SessionCore& s) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  std::vector<BoxInfo> out;
  DirLock lock(*this);
  Directory* d = dir();
  if (d == nullptr) return out;
  for (uint32_t i = 0; i < kMaxMailboxes; i++) {
    Mailbox& b = d->boxes[i];
    if (b.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kFree)) continue;
    BoxLock box(*this, b);
    out.push_back(describe(*d, b, i));
  }
  return out;
}

Result<BoxInfo> Mailboxes::info(SessionCore& s, uint64_t id) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  DirLock lock(*this);
  STOA_ASSIGN(Mailbox * b, find(id));
  BoxLock box(*this, *b);
  if (b->gen != id_gen(id)) return Error(Code::kNotFound, fmt::format("no mailbox {:#x}", id));
  return describe(*dir(), *b, id_index(id));
}

}  // namespace stoa::msg
