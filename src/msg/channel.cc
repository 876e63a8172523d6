// msg/channel.cc — channels: named rings of fixed-size slots in the store,
// many pushers and many poppers in any processes, no lock and no
// allocation per message.
//
// The ring (layout.h: ChannelRing, ChannelSlot) is a bounded MPMC queue in
// the manner of Vyukov's, with one change that makes it survive a process
// killed at any instruction: a position is claimed by a CAS on the *slot's*
// word (which then names the claimant), not on the shared position, and the
// shared position is advanced afterwards by whoever sees the slot claimed.
//
// Push at position p (slot p % capacity):
//   1. the slot's word is (p, kFree): CAS it to (p, kWriting, me)  [claim]
//   2. CAS enq p -> p + 1 (fails harmlessly if someone helped)
//   3. write tag, time, length, payload
//   4. store (p, kReady) with release; bump `avail`, wake poppers
//   A word (p - capacity, any) means the previous lap's message is still
//   there: the ring is full. A word (p, not free) means p was claimed:
//   help advance enq and retry.
// Pop at position p:
//   1. the word is (p, kReady): CAS it to (p, kReading, me)         [claim]
//   2. CAS deq p -> p + 1
//   3. copy the payload out
//   4. store (p + capacity, kFree) with release; bump `space`
//   (p, kDead): CAS it to (p + capacity, kFree), advance deq, go on.
//   (p, kReading) or (p + capacity, any): p was taken; help advance deq.
//   (p, kFree) or (p, kWriting): nothing ready yet; wait on `avail`.
//
// Invariants: deq <= enq <= deq + capacity (positions claimed); a slot's
// word always holds a position congruent to its index; only a claimant
// writes a claimed slot, and only the claimant or the repair ends a claim.
//
// A crash between two steps. Before a claim: nothing happened. After a
// push's claim (chan.push.claimed, chan.push.written): the slot
// stays kWriting, owned by the dead session, and poppers wait at it; the
// repair (repair_ring, run by the survivor that reclaims the dead session,
// or by a lone opener) makes it kDead, poppers skip it, and the push was
// never reported sent. After a pop's claim (chan.pop.claimed): the
// repair frees the slot; the message was being received by the process
// that died and is gone with it, as a mailbox's plain receive. A dead
// claimant that did not advance a position stalls nobody: the next pusher
// or popper helps. Positions are 64-bit and slot words hold them mod 2^44,
// so neither wraps in practice and equality tests stay exact for any
// capacity up to 2^20.
//
// The ring block lives until the channel is removed: remove marks the
// entry closed under dir_lock (pushers and poppers see kClosed, sleepers are
// woken), retires the ring through the remover's session, then frees the
// entry (gen++). Pushers and poppers pin the session's cycle for each try,
// so a ring retired under them stays mapped until they unpin; they sleep
// unpinned, on futex words in the entry, which never moves. A remover that
// dies after marking leaves a closed entry with a live ring, finished by the
// next drain_closed (adopt_dead); one that dies after the retire leaves a
// closed entry whose ring is not live, freed by the directory repair.
// Creation under dir_lock: ring allocated, formatted, its offset and the
// name written in a free entry, ring published, state open (release). A
// holder that dies before the publish leaves a kOwned ring (freed with its
// session; the repair clears the entry), one that dies after it a complete
// ring in a free entry, which the repair opens.
#include <fmt/format.h>

#include <cstring>

#include "crash/crash_point.h"
#include "msg/mailboxes.h"
#include "util/clock.h"

namespace stoa::msg {

using internal::SessionCore;

namespace {

inline ChannelSlot* slot_at(ChannelRing* r, uint64_t pos) {
  char* base = reinterpret_cast<char*>(r) + sizeof(ChannelRing);
  return reinterpret_cast<ChannelSlot*>(base + (pos & (r->capacity - 1)) * uint64_t{r->stride});
}
inline char* payload_of(ChannelSlot* s) { return reinterpret_cast<char*>(s) + sizeof(ChannelSlot); }
inline bool same(uint64_t word_p, uint64_t pos) { return word_p == (pos & kPosMask); }
inline uint32_t stride_for(uint32_t max_message) {
  return (uint32_t(sizeof(ChannelSlot)) + max_message + 63) & ~uint32_t{63};
}
inline uint64_t ring_bytes(uint32_t capacity, uint32_t stride) {
  return sizeof(ChannelRing) + uint64_t{capacity} * stride;
}
// Advances *at from p to p + 1 if it is still p (helping).
inline void advance(std::atomic<uint64_t>& at, uint64_t p) {
  at.compare_exchange_strong(p, p + 1, std::memory_order_acq_rel, std::memory_order_relaxed);
}
uint32_t claimant_of(const SessionCore& s) { return s.slot() + 1; }

// Holding dir_lock: the entry is free, and its old id names nothing.
void free_entry(ChannelEntry& e) {
  e.ring = 0;
  e.gen++;
  std::memset(e.name, 0, sizeof e.name);
  e.state.store(uint32_t(BoxState::kFree), std::memory_order_release);
}

Error no_channel(uint64_t id) {
  return Error(Code::kNotFound, fmt::format("no channel {:#x}", id));
}
Error closed_channel(uint64_t id) {
  return Error(Code::kClosed, fmt::format("channel {:#x} is closed", id));
}

enum class Try { kDone, kFull, kEmpty, kCorrupt };

Try try_push(ChannelRing* r, std::string_view payload, uint64_t tag, uint32_t me) {
  for (;;) {
    const uint64_t pos = r->enq.load(std::memory_order_acquire);
    ChannelSlot* sl = slot_at(r, pos);
    uint64_t w = sl->word.load(std::memory_order_acquire);
    if (same(word_pos(w), pos)) {
      if (word_state(w) != SlotState::kFree) {
        advance(r->enq, pos);  // claimed at pos already
        continue;
      }
      if (!sl->word.compare_exchange_weak(w, slot_word(pos, SlotState::kWriting, me),
                                          std::memory_order_acq_rel, std::memory_order_relaxed))
        continue;
      STOA_CRASH_POINT(kMsgChanPushClaimed);
      advance(r->enq, pos);
      sl->tag = tag;
      sl->sent_ns = util::real_ns();
      sl->len = uint32_t(payload.size());
      if (!payload.empty()) std::memcpy(payload_of(sl), payload.data(), payload.size());
      STOA_CRASH_POINT(kMsgChanPushWritten);
      sl->word.store(slot_word(pos, SlotState::kReady, 0), std::memory_order_release);
      return Try::kDone;
    }
    if (same(word_pos(w), pos - r->capacity)) return Try::kFull;  // last lap's message
    // enq moved on since we read it: read it again.
  }
}

Try try_pop(ChannelRing* r, std::string* out, Popped* info, uint32_t me) {
  for (;;) {
    const uint64_t pos = r->deq.load(std::memory_order_acquire);
    ChannelSlot* sl = slot_at(r, pos);
    uint64_t w = sl->word.load(std::memory_order_acquire);
    if (same(word_pos(w), pos + r->capacity)) {
      advance(r->deq, pos);  // taken, deq not advanced yet
      continue;
    }
    if (!same(word_pos(w), pos)) continue;  // deq moved on
    switch (word_state(w)) {
      case SlotState::kFree:
      case SlotState::kWriting:
        return Try::kEmpty;
      case SlotState::kReading:
        advance(r->deq, pos);
        continue;
      case SlotState::kDead:
        if (sl->word.compare_exchange_strong(w, slot_word(pos + r->capacity, SlotState::kFree, 0),
                                             std::memory_order_acq_rel))
          advance(r->deq, pos);
        continue;
      case SlotState::kReady:
        break;
      default:
        return Try::kCorrupt;
    }
    if (!sl->word.compare_exchange_weak(w, slot_word(pos, SlotState::kReading, me),
                                        std::memory_order_acq_rel, std::memory_order_relaxed))
      continue;
    STOA_CRASH_POINT(kMsgChanPopClaimed);
    advance(r->deq, pos);
    const uint32_t len = sl->len;
    const bool sound = len <= r->max_message;
    if (sound) {
      out->assign(payload_of(sl), len);
      info->pos = pos;
      info->tag = sl->tag;
      info->sent_ns = sl->sent_ns;
    }
    sl->word.store(slot_word(pos + r->capacity, SlotState::kFree, 0), std::memory_order_release);
    return sound ? Try::kDone : Try::kCorrupt;
  }
}

}  // namespace

ChannelRing* Mailboxes::ring_of(const ChannelEntry& e) const {
  const Offset off = e.ring;
  if (off == 0 || !c_.region->reach(off, sizeof(ChannelRing))) return nullptr;
  auto* r = reinterpret_cast<ChannelRing*>(c_.region->rw(off));
  if (r->magic != kRingMagic || r->capacity < 2 || r->capacity > kMaxChannelSlots ||
      (r->capacity & (r->capacity - 1)) != 0 || r->max_message == 0 ||
      r->max_message > kMaxChannelMessage || r->stride != stride_for(r->max_message) ||
      !c_.region->reach(off, ring_bytes(r->capacity, r->stride)))
    return nullptr;
  return r;
}

Result<uint64_t> Mailboxes::channel(SessionCore& s, std::string_view name, const ChanLimits& l) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  STOA_TRY(check_name(name));
  DirLock lock(*this);
  STOA_ASSIGN(Directory * d, dir_or_make(s));
  ChannelEntry* free_e = nullptr;
  for (uint32_t i = 0; i < kMaxChannels; i++) {
    ChannelEntry& e = d->chans[i];
    const auto st = BoxState(e.state.load(std::memory_order_relaxed));
    if (st == BoxState::kOpen && name_is(e.name, name)) return mailbox_id(i, e.gen);
    if (st == BoxState::kFree && free_e == nullptr) free_e = &e;
  }
  if (l.capacity < 2 || l.capacity > kMaxChannelSlots || (l.capacity & (l.capacity - 1)) != 0 ||
      l.max_message == 0 || l.max_message > kMaxChannelMessage) {
    return Error(Code::kInvalidArgument,
                 fmt::format("a channel holds 2..{} slots, a power of two, of 1..{} bytes (got {} "
                             "of {})",
                             kMaxChannelSlots, kMaxChannelMessage, l.capacity, l.max_message));
  }
  if (free_e == nullptr) {
    return Error(Code::kFull, fmt::format("every one of the {} channels is in use", kMaxChannels));
  }
  const uint32_t stride = stride_for(l.max_message);
  STOA_ASSIGN(Offset off, s.alloc(ring_bytes(l.capacity, stride)));
  auto* r = reinterpret_cast<ChannelRing*>(s.write_ptr(off));
  std::memset(static_cast<void*>(r), 0, sizeof(ChannelRing));
  r->magic = kRingMagic;
  r->capacity = l.capacity;
  r->max_message = l.max_message;
  r->stride = stride;
  for (uint64_t p = 0; p < l.capacity; p++) {
    ChannelSlot* sl = slot_at(r, p);
    std::memset(static_cast<void*>(sl), 0, sizeof(ChannelSlot));
    sl->word.store(slot_word(p, SlotState::kFree, 0), std::memory_order_relaxed);
  }
  copy_name(free_e->name, name);
  free_e->created_ns = util::real_ns();
  free_e->ring = off;
  if (Status st = s.publish(off); !st.ok()) {
    free_e->ring = 0;
    (void)s.free(off);
    return std::move(st).error();
  }
  free_e->state.store(uint32_t(BoxState::kOpen), std::memory_order_release);  // pairs with find
  return mailbox_id(uint32_t(free_e - d->chans), free_e->gen);
}

namespace {

// The open entry `id` names.
Result<ChannelEntry*> find_chan(Directory* d, uint64_t id) {
  const uint32_t i = id_index(id);
  if (d == nullptr || id == 0 || i >= kMaxChannels) return no_channel(id);
  ChannelEntry& e = d->chans[i];
  const auto st = BoxState(e.state.load(std::memory_order_acquire));  // pairs with channel()
  if (e.gen != id_gen(id) || st == BoxState::kFree) return no_channel(id);
  if (st != BoxState::kOpen) return closed_channel(id);
  return &e;
}

}  // namespace

Status Mailboxes::push(SessionCore& s, uint64_t ch, std::string_view payload, uint64_t tag,
                       int64_t timeout_ns, bool poll) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  const uint64_t deadline = deadline_of(timeout_ns);
  STOA_ASSIGN(ChannelEntry * e, find_chan(dir(), ch));
  for (;;) {
    const uint32_t seen = e->space.load(std::memory_order_acquire);
    {
      SessionCore::PinGuard pin(s);
      if (auto again = find_chan(dir(), ch); !again.ok()) return std::move(again).error();
      ChannelRing* r = ring_of(*e);
      if (r == nullptr) {
        return Error(Code::kCorrupt, fmt::format("channel {:#x}: its ring is damaged", ch));
      }
      if (payload.size() > r->max_message) {
        return Error(Code::kInvalidArgument,
                     fmt::format("a {}-byte message is larger than channel {:#x} holds ({} bytes)",
                                 payload.size(), ch, r->max_message));
      }
      if (try_push(r, payload, tag, claimant_of(s)) == Try::kDone) break;
    }
    if (timeout_ns == 0 || (deadline != 0 && util::mono_ns() >= deadline)) {
      return Error(Code::kFull, fmt::format("channel {:#x} is full", ch));
    }
    wait_word(e->waiters, &e->space, seen, deadline, poll);
  }
  wake_words(&e->avail, nullptr, e->waiters);
  return {};
}

Result<Popped> Mailboxes::pop(SessionCore& s, uint64_t ch, std::string* payload, int64_t timeout_ns,
                              bool poll) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  const uint64_t deadline = deadline_of(timeout_ns);
  STOA_ASSIGN(ChannelEntry * e, find_chan(dir(), ch));
  Popped out;
  for (;;) {
    const uint32_t seen = e->avail.load(std::memory_order_acquire);
    Try t;
    {
      SessionCore::PinGuard pin(s);
      if (auto again = find_chan(dir(), ch); !again.ok()) return std::move(again).error();
      ChannelRing* r = ring_of(*e);
      if (r == nullptr) {
        return Error(Code::kCorrupt, fmt::format("channel {:#x}: its ring is damaged", ch));
      }
      t = try_pop(r, payload, &out, claimant_of(s));
    }
    if (t == Try::kDone || t == Try::kCorrupt) {
      wake_words(nullptr, &e->space, e->waiters);
      if (t == Try::kDone) return out;
      return Error(Code::kCorrupt,
                   fmt::format("channel {:#x}: a slot's length is past its size (skipped)", ch));
    }
    if (timeout_ns == 0 || (deadline != 0 && util::mono_ns() >= deadline)) {
      return Error(Code::kTimeout, fmt::format("nothing in channel {:#x}", ch));
    }
    wait_word(e->waiters, &e->avail, seen, deadline, poll);
  }
}

Status Mailboxes::remove_channel(SessionCore& s, uint64_t ch) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  DirLock lock(*this);
  STOA_ASSIGN(ChannelEntry * e, find_chan(dir(), ch));
  e->state.store(uint32_t(BoxState::kClosed), std::memory_order_release);
  wake_words(&e->avail, &e->space, e->waiters);
  return finish_remove_locked(s, *e);
}

Status Mailboxes::finish_remove_locked(SessionCore& s, ChannelEntry& e) const {
  if (e.ring != 0) {
    auto t = c_.heap->tag_of(e.ring);
    if (t.ok() && t->state == region::BlockState::kLive) STOA_TRY(s.retire_deferred(e.ring));
  }
  STOA_CRASH_POINT(kMsgChanRemoveRetired);
  free_entry(e);
  return {};
}

Result<std::vector<ChanInfo>> Mailboxes::channels(SessionCore& s) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  std::vector<ChanInfo> out;
  DirLock lock(*this);
  Directory* d = dir();
  if (d == nullptr) return out;
  for (uint32_t i = 0; i < kMaxChannels; i++) {
    ChannelEntry& e = d->chans[i];
    const auto st = BoxState(e.state.load(std::memory_order_relaxed));
    if (st == BoxState::kFree) continue;
    ChanInfo c;
    c.id = mailbox_id(i, e.gen);
    c.name.assign(e.name, strnlen(e.name, sizeof e.name));
    c.closed = st != BoxState::kOpen;
    c.created_ns = e.created_ns;
    if (ChannelRing* r = ring_of(e); r != nullptr) {
      c.capacity = r->capacity;
      c.max_message = r->max_message;
      c.pushed = r->enq.load(std::memory_order_acquire);
      c.popped = r->deq.load(std::memory_order_acquire);
    }
    out.push_back(std::move(c));
  }
  return out;
}

// --- repair ------------------------------------------------------------------

void Mailboxes::repair_ring(ChannelEntry& e, int64_t slot) const {
  ChannelRing* r = ring_of(e);
  if (r == nullptr) return;
  bool changed = false;
  for (uint64_t i = 0; i < r->capacity; i++) {
    ChannelSlot* sl = slot_at(r, i);
    uint64_t w = sl->word.load(std::memory_order_acquire);
    const uint32_t who = word_claimant(w);
    const SlotState st = word_state(w);
    if ((st != SlotState::kWriting && st != SlotState::kReading) ||
        (slot >= 0 && who != uint32_t(slot) + 1))
      continue;
    const uint64_t p = word_pos(w);
    const uint64_t next = st == SlotState::kWriting
                              ? slot_word(p, SlotState::kDead, 0)
                              : slot_word(p + r->capacity, SlotState::kFree, 0);
    // Only the claimant changes a claimed word, and it is dead: the CAS
    // guards against a damaged word only.
    changed |= sl->word.compare_exchange_strong(w, next, std::memory_order_acq_rel);
    // Help the position the claimant may not have advanced.
    std::atomic<uint64_t>& at = st == SlotState::kWriting ? r->enq : r->deq;
    const uint64_t cur = at.load(std::memory_order_acquire);
    if (same(p, cur)) advance(at, cur);
  }
  if (changed || slot < 0) wake_words(&e.avail, &e.space, e.waiters);
}

void Mailboxes::repair_chans(Directory& d) const {
  for (ChannelEntry& e : d.chans) {
    const auto st = BoxState(e.state.load(std::memory_order_relaxed));
    if (e.ring == 0) continue;
    auto t = c_.heap->tag_of(e.ring);
    const bool live = t.ok() && t->state == region::BlockState::kLive && ring_of(e) != nullptr;
    if (st == BoxState::kFree) {
      // A creator died: after the publish the ring is whole (open it),
      // before it the block is its session's (the heap frees it).
      if (live) {
        e.state.store(uint32_t(BoxState::kOpen), std::memory_order_release);
      } else {
        e.ring = 0;
      }
    } else if (st == BoxState::kClosed && !live) {
      free_entry(e);  // a remover died after the retire
    }
  }
}

uint64_t Mailboxes::verify_chans(Directory& d, std::vector<std::string>* problems) const {
  uint64_t items = 0;
  for (uint32_t i = 0; i < kMaxChannels; i++) {
    ChannelEntry& e = d.chans[i];
    if (BoxState(e.state.load(std::memory_order_acquire)) != BoxState::kOpen) continue;
    ChannelRing* r = ring_of(e);
    if (r == nullptr) {
      problems->push_back(fmt::format("channel {} ('{}'): its ring at offset {} is damaged", i,
                                      std::string(e.name, strnlen(e.name, sizeof e.name)), e.ring));
      continue;
    }
    const uint64_t enq = r->enq.load(std::memory_order_acquire);
    const uint64_t deq = r->deq.load(std::memory_order_acquire);
    // A position may trail by a claim not yet advanced (helped later).
    if (deq > enq + 1 || enq > deq + r->capacity + 1) {
      problems->push_back(
          fmt::format("channel {}: positions out of order (pushed {}, popped {}, "
                      "capacity {})",
                      i, enq, deq, r->capacity));
    }
    for (uint64_t k = 0; k < r->capacity; k++) {
      const uint64_t w = slot_at(r, k)->word.load(std::memory_order_acquire);
      if ((word_pos(w) & (r->capacity - 1)) != k || word_state(w) > SlotState::kDead) {
        problems->push_back(fmt::format("channel {}: slot {} holds word {:#x}", i, k, w));
        break;
      }
      if (word_state(w) == SlotState::kReady) items++;
    }
  }
  return items;
}

}  // namespace stoa::msg
