// msg/msg_recovery.cc — what a dead lock holder, a dead session or a crash
// leaves in the mailboxes, and who repairs it.
//
// A mailbox lock found owner-dead (repair): the dead holder was at most one
// step into one of the protocols of mailbox.cc or directory.cc, each of
// which changes a message's heap tag at most once and links or unlinks it
// with single 8-byte stores. The repair
//   1. walks both lists and drops every message that is not kLive (retired
//      by a take, an ack or a drain that did not get to unlink it), cutting
//      a list where a link leaves the file;
//   2. finishes the in-flight record: a kLive op_msg on no list was being
//      sent (appended now: the publish was the commit point) or moved
//      between lists by a lease or a requeue (put back at the front of the
//      ready list, lease cleared: it is delivered again);
//   3. recomputes the tail and the figures from the lists, clears the
//      record and wakes every sleeper.
// Each part reads only the lists and tags, so a repairer that dies too
// leaves work the next one does the same way (idempotent). It must run
// before the heap frees a dead session's blocks — a dropped retired message
// is freed by the heap; an unpublished one never was linked — which holds
// because recovering a dead slot locks every mailbox first (the msg layer
// comes before the heap in store/lifecycle.cc) and a lone opener repairs
// every mailbox before it rebuilds the heap.
//
// A dead session (recover_dead): its mailboxes close, its names go, and the
// messages it held on lease go back to the front of their mailboxes with
// their delivery counts. The closed mailboxes' messages are freed through
// the session that reclaims the slot (drain_closed in adopt_dead).
#include <fmt/format.h>

#include <cstring>
#include "msg/mailboxes.h"

#include "crash/crash_point.h"

namespace stoa::msg {

using internal::SessionCore;

bool Mailboxes::live(Offset m) const {
  auto t = c_.heap->tag_of(m);
  return t.ok() && t->state == region::BlockState::kLive && hdr(m) != nullptr &&
         hdr(m)->magic == kMsgMagic;
}

// Drops non-live messages from the list at *head; returns its last entry.
Offset Mailboxes::prune(Offset* head) const {
  Offset* at = head;
  Offset last = 0;
  for (uint64_t n = 0; *at != 0; n++) {
    if (n > kMaxListWalk || hdr(*at) == nullptr) {
      *at = 0;  // a link out of the file, or a cycle: cut here
      break;
    }
    if (!live(*at)) {
      *at = hdr(*at)->next;
      continue;
    }
    last = *at;
    at = &hdr(*at)->next;
  }
  return last;
}

void Mailboxes::repair(Mailbox& b) const {
  b.tail = prune(&b.head);
  prune(&b.leased);
  const Op op = Op(b.op_kind);
  const Offset m = b.op_msg;
  if ((op == Op::kSend || op == Op::kLease || op == Op::kRequeue) && m != 0 && live(m) &&
      !linked(b.head, m) && !linked(b.leased, m)) {
    MsgHeader* h = hdr(m);
    h->lessee = 0;
    if (op == Op::kSend) {
      append(b, m);
      b.sends++;
    } else {
      push_front(b, m);
    }
  }
  recount(b);
  b.op_kind = uint32_t(Op::kNone);
  b.op_msg = 0;
  wake(b, true, true);
}

void Mailboxes::recount(Mailbox& b) const {
  uint64_t n = 0, bytes = 0, leased = 0;
  Offset last = 0;
  for (Offset m = b.head; m != 0 && n <= kMaxListWalk; m = hdr(m)->next) {
    n++;
    bytes += hdr(m)->len;
    last = m;
  }
  for (Offset m = b.leased; m != 0 && leased <= kMaxListWalk; m = hdr(m)->next) leased++;
  b.tail = last;
  b.count.store(n, std::memory_order_relaxed);
  b.bytes.store(bytes, std::memory_order_relaxed);
  b.nleased.store(leased, std::memory_order_relaxed);
}

void Mailboxes::repair_dir() const {
  const Offset p = c_.root->dir_pending;
  if (p != 0 && c_.root->dir.load(std::memory_order_relaxed) == 0) {
    auto t = c_.heap->tag_of(p);
    if (t.ok() && t->state == region::BlockState::kLive) {
      c_.root->dir.store(p, std::memory_order_release);  // pairs with dir()
    }
  }
  c_.root->dir_pending = 0;
  if (Directory* d = dir(); d != nullptr) repair_chans(*d);
}

void Mailboxes::requeue_leases(Mailbox& b, int64_t slot) const {
  Offset* at = &b.leased;
  bool moved = false;
  for (uint64_t n = 0; *at != 0 && n <= kMaxListWalk; n++) {
    MsgHeader* h = hdr(*at);
    if (slot >= 0 && (h->lessee == 0 || owner_slot(h->lessee) != uint64_t(slot))) {
      at = &h->next;
      continue;
    }
    const Offset m = *at;
    b.op_kind = uint32_t(Op::kRequeue);
    b.op_msg = m;
    *at = h->next;
    h->lessee = 0;
    push_front(b, m);
    b.count.store(b.count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    b.bytes.store(b.bytes.load(std::memory_order_relaxed) + h->len, std::memory_order_relaxed);
    b.nleased.store(b.nleased.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    b.redeliveries++;
    b.op_kind = uint32_t(Op::kNone);
    b.op_msg = 0;
    moved = true;
  }
  if (moved) wake(b, true, false);
}

// Holding dir_lock and b's lock; b is closed. Frees its messages through s
// and the entry with them.
Status Mailboxes::drain_box(SessionCore& s, Mailbox& b) const {
  b.op_kind = uint32_t(Op::kDrain);
  for (Offset* list : {&b.head, &b.leased}) {
    while (*list != 0) {
      const Offset m = *list;
      MsgHeader* h = hdr(m);
      if (h == nullptr) {
        *list = 0;
        break;
      }
      if (live(m)) {
        Status st = s.retire_deferred(m);
        if (!st.ok()) {
          recount(b);
          b.op_kind = uint32_t(Op::kNone);
          return st;
        }
        STOA_CRASH_POINT(kMsgDrainRetired);
      }
      *list = h->next;
    }
  }
  recount(b);
  b.op_kind = uint32_t(Op::kNone);
  b.owner = 0;
  std::memset(b.name, 0, sizeof(b.name));
  b.gen = b.gen + 1 == 0 ? 1 : b.gen + 1;  // old ids now name nothing
  b.state.store(uint32_t(BoxState::kFree), std::memory_order_release);
  return {};
}

Status Mailboxes::drain_closed_locked(SessionCore& s) {
  Directory* d = dir();
  if (d == nullptr) return {};
  for (Mailbox& b : d->boxes) {
    if (b.state.load(std::memory_order_relaxed) != uint32_t(BoxState::kClosed)) continue;
    BoxLock lock(*this, b);
    STOA_TRY(drain_box(s, b));
  }
  for (ChannelEntry& e : d->chans) {
    if (e.state.load(std::memory_order_relaxed) != uint32_t(BoxState::kClosed)) continue;
    STOA_TRY(finish_remove_locked(s, e));  // a remover died before the retire
  }
  return {};
}

Status Mailboxes::drain_closed(SessionCore& s) {
  if (dir() == nullptr) return {};
  DirLock lock(*this);
  return drain_closed_locked(s);
}

void Mailboxes::session_closing(SessionCore& s) {
  if (dir() == nullptr || s.closed()) return;
  const uint64_t me = owner_word(s.slot(), s.generation());
  {
    DirLock lock(*this);
    Directory* d = dir();
    for (NameEntry& e : d->names) {
      if (e.id != 0 && e.owner == me) {
        e.id = 0;
        e.owner = 0;
      }
    }
    for (uint32_t i = 0; i < kMaxMailboxes; i++) {
      Mailbox& b = d->boxes[i];
      if (b.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kFree)) continue;
      BoxLock box(*this, b);
      if (b.owner == me) {
        if (b.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kOpen)) {
          close_locked(*d, b, i);
        }
        (void)drain_box(s, b);  // a failure leaves it closed, drained later
        continue;
      }
      if (b.nleased.load(std::memory_order_relaxed) != 0) {
        requeue_leases(b, s.slot());
      }
    }
  }
  s.collect_if_due();
}

void Mailboxes::recover_dead(uint32_t slot) {
  if (dir() == nullptr) return;
  DirLock lock(*this);
  Directory* d = dir();
  for (NameEntry& e : d->names) {
    if (e.id != 0 && e.owner != 0 && owner_slot(e.owner) == slot) {
      e.id = 0;
      e.owner = 0;
    }
  }
  for (uint32_t i = 0; i < kMaxMailboxes; i++) {
    Mailbox& b = d->boxes[i];
    if (b.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kFree)) continue;
    BoxLock box(*this, b);  // repairs what a dead holder left (see top)
    if (b.owner != 0 && owner_slot(b.owner) == slot &&
        b.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kOpen)) {
      close_locked(*d, b, i);
    }
    requeue_leases(b, slot);
  }
  for (ChannelEntry& e : d->chans) {
    if (e.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kOpen)) repair_ring(e, slot);
  }
}

void Mailboxes::recover_alone() {
  c_.root->dir_lock.init();
  repair_dir();
  Directory* d = dir();
  if (d == nullptr) return;
  for (NameEntry& e : d->names) {
    if (e.id != 0 && e.owner != 0) {
      e.id = 0;  // no session survives a lone open
      e.owner = 0;
    }
  }
  for (uint32_t i = 0; i < kMaxMailboxes; i++) {
    Mailbox& b = d->boxes[i];
    b.lock.init();
    if (b.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kFree)) continue;
    repair(b);
    if (b.owner != 0 && b.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kOpen)) {
      close_locked(*d, b, i);
    }
    requeue_leases(b, -1);
  }
  for (ChannelEntry& e : d->chans) {
    if (e.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kOpen)) repair_ring(e, -1);
  }
}

uint64_t Mailboxes::verify(std::vector<std::string>* problems) {
  if (c_.root->dir.load(std::memory_order_acquire) != 0 && dir() == nullptr) {
    problems->push_back(fmt::format("{}: the mailbox directory is damaged (bad offset or magic)",
                                    c_.region->path()));
    return 0;
  }
  Directory* d = dir();
  if (d == nullptr) return 0;
  uint64_t total = 0;
  DirLock lock(*this);
  for (uint32_t i = 0; i < kMaxMailboxes; i++) {
    Mailbox& b = d->boxes[i];
    if (b.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kFree)) continue;
    BoxLock box(*this, b);
    const uint64_t id = mailbox_id(i, b.gen);
    uint64_t n = 0, bytes = 0, leased = 0;
    Offset last = 0;
    for (Offset* list : {&b.head, &b.leased}) {
      for (Offset m = *list; m != 0; m = hdr(m) != nullptr ? hdr(m)->next : 0) {
        if (n + leased > kMaxListWalk) {
          problems->push_back(fmt::format("mailbox {:#x}: a list runs in a cycle", id));
          break;
        }
        const MsgHeader* h = hdr(m);
        if (h == nullptr || !live(m)) {
          problems->push_back(
              fmt::format("mailbox {:#x}: message at offset {} is not a live "
                          "message block",
                          id, m));
          break;
        }
        if (!c_.region->reach(m + sizeof(MsgHeader), h->len) ||
            payload_sum(*h, c_.region->ro(m + sizeof(MsgHeader))) != h->sum) {
          problems->push_back(
              fmt::format("mailbox {:#x}: message {} fails its checksum", id, h->seq));
        }
        if (list == &b.head) {
          n++;
          bytes += h->len;
          last = m;
        } else {
          leased++;
        }
      }
    }
    if (n != b.count.load(std::memory_order_relaxed) ||
        bytes != b.bytes.load(std::memory_order_relaxed) ||
        leased != b.nleased.load(std::memory_order_relaxed) || last != b.tail) {
      problems->push_back(fmt::format(
          "mailbox {:#x}: counts {} messages, {} bytes, {} leased; its lists hold {}, {}, {}", id,
          b.count.load(std::memory_order_relaxed), b.bytes.load(std::memory_order_relaxed),
          b.nleased.load(std::memory_order_relaxed), n, bytes, leased));
    }
    total += n + leased;
  }
  return total + verify_chans(*d, problems);
}

MsgStats Mailboxes::stats() const {
  MsgStats out;
  Directory* d = dir();
  if (d == nullptr) return out;
  for (const Mailbox& b : d->boxes) {
    if (b.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kFree)) continue;
    out.mailboxes++;
    out.messages +=
        b.count.load(std::memory_order_relaxed) + b.nleased.load(std::memory_order_relaxed);
    out.bytes += b.bytes.load(std::memory_order_relaxed);
  }
  for (const ChannelEntry& e : d->chans) {
    if (e.state.load(std::memory_order_relaxed) == uint32_t(BoxState::kFree)) continue;
    out.channels++;
    if (const ChannelRing* r = ring_of(e); r != nullptr) {
      const uint64_t enq = r->enq.load(std::memory_order_relaxed);
      const uint64_t deq = r->deq.load(std::memory_order_relaxed);
      out.channel_messages += enq > deq ? enq - deq : 0;
    }
  }
  return out;
}

}  // namespace stoa::msg
