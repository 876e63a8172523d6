// msg/mailbox.cc — sending, receiving, leasing and acking.
//
// Invariants, under a mailbox's lock: every message on its ready list
// (oldest first) or its leased list is a kLive block whose header passes
// its magic; count/bytes/nleased describe the lists; op_kind is kNone.
// A message is on at most one list, of one mailbox.
//
// Each step that changes the lists runs under the lock and starts by
// writing (op_kind, op_msg), which it clears at its end. A holder that dies
// leaves the lock owner-dead with the record set; the next locker repairs
// (msg_recovery.cc) by the message's heap tag, which every step changes at
// most once and first or last:
//
//   send     the block is written, kOwned by the sender, outside the lock.
//            Locked: record, publish (kOwned -> kLive: the commit point),
//            append, figures, clear. A crash before the publish leaves a
//            kOwned block the heap frees with the dead session; after it,
//            a kLive block that the repair appends if it is on no list.
//   take     (plain receive) record, copy out, retire (kLive -> kRetired in
//            the receiver's purgatory: the commit point), unlink, figures.
//            The repair unlinks a retired message wherever it is.
//   lease    record, unlink from ready, set lessee, push on leased. Tag
//            unchanged (kLive); the repair puts a live message that is on
//            no list back at the front of ready.
//   ack      record, retire (the commit point), unlink from leased.
//   requeue  record, unlink from leased, clear lessee, push front of ready.
//
// Every list edit is one 8-byte store that links or unlinks, so a crash
// between two leaves each list a chain the repair walks; it recomputes the
// tail and the figures from the walk.
//
// The repair must see a dead holder's tags before the heap reclaims its
// blocks (a retired message would be freed while still linked): recovery of
// a dead slot locks every mailbox first (lifecycle order: msg above heap),
// and a lone opener repairs every mailbox before rebuilding the heap.
//
// Waiting: senders bump `avail` after a change a receiver waits for, and
// `space` after one a full sender waits for (seq_cst), then wake sleepers
// when `waiters` says there are any. A waiter reads the word, checks under
// the lock, counts itself in `waiters` (seq_cst) and sleeps on the value it
// read, so a change made after its check either shows in the word or is
// followed by a wake it gets.
#include <fmt/format.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "crash/crash_point.h"
#include "msg/mailboxes.h"
#include "util/clock.h"
#include "util/futex.h"
#include "util/hash.h"

namespace stoa::msg {

using internal::SessionCore;

namespace {

Error closed_box(uint64_t id) {
  return Error(Code::kClosed, fmt::format("mailbox {:#x} is closed", id));
}

}  // namespace

uint64_t deadline_of(int64_t timeout_ns) {
  if (timeout_ns <= 0) return 0;
  return util::mono_ns() + uint64_t(timeout_ns);
}

uint32_t Mailboxes::payload_sum(const MsgHeader& h, const char* payload) {
  const uint64_t seed = util::mix64(h.sender ^ (uint64_t{h.len} << 32), h.tag, h.sent_ns);
  return uint32_t(util::checksum64(payload, h.len, seed));
}

MsgHeader* Mailboxes::hdr(Offset m) const {
  if (m == 0 || !c_.region->reach(m, sizeof(MsgHeader))) return nullptr;
  return reinterpret_cast<MsgHeader*>(c_.region->rw(m));
}

bool Mailboxes::linked(Offset head, Offset m) const {
  for (uint64_t n = 0; head != 0 && n <= kMaxListWalk; n++) {
    if (head == m) return true;
    const MsgHeader* h = hdr(head);
    if (h == nullptr) return false;
    head = h->next;
  }
  return false;
}

void Mailboxes::unlink(Offset* head, Offset m) const {
  Offset* at = head;
  for (uint64_t n = 0; *at != 0 && n <= kMaxListWalk; n++) {
    MsgHeader* h = hdr(*at);
    if (h == nullptr) return;
    if (*at == m) {
      *at = h->next;  // the one store that unlinks
      return;
    }
    at = &h->next;
  }
}

void Mailboxes::append(Mailbox& b, Offset m) const {
  hdr(m)->next = 0;
  MsgHeader* t = b.tail != 0 ? hdr(b.tail) : nullptr;
  if (t != nullptr) {
    t->next = m;
  } else {
    b.head = m;
  }
  b.tail = m;
}

void Mailboxes::push_front(Mailbox& b, Offset m) const {
  hdr(m)->next = b.head;
  b.head = m;
  if (b.tail == 0) b.tail = m;
}

void Mailboxes::wake(Mailbox& b, bool avail, bool space) const {
  wake_words(avail ? &b.avail : nullptr, space ? &b.space : nullptr, b.waiters);
}

void wake_words(std::atomic<uint32_t>* avail, std::atomic<uint32_t>* space,
                std::atomic<uint32_t>& waiters) {
  // seq_cst: the bump is ordered before the load of waiters, and a sleeper
  // counts itself before the kernel compares the word (see wait_word).
  if (avail) avail->fetch_add(1);
  if (space) space->fetch_add(1);
  if (waiters.load() == 0) return;
  if (avail) util::futex_wake(avail);
  if (space) util::futex_wake(space);
}

void wait_word(std::atomic<uint32_t>& waiters, std::atomic<uint32_t>* word, uint32_t seen,
               uint64_t deadline_ns, bool poll) {
  // A short spin first: a reply often arrives within a few microseconds,
  // and a futex sleep and wake cost more than that.
  const uint64_t spin_until = util::mono_ns() + (poll ? UINT64_MAX / 2 : 4'000);
  while (word->load(std::memory_order_acquire) == seen) {
    const uint64_t now = util::mono_ns();
    if (deadline_ns != 0 && now >= deadline_ns) return;
    if (now < spin_until) {
      for (int i = 0; i < 32; i++) _mm_pause();
      continue;
    }
    waiters.fetch_add(1);
    uint64_t left = deadline_ns == 0 ? 1'000'000'000 : deadline_ns - now;
    util::futex_wait(word, seen, std::min<uint64_t>(left, 1'000'000'000));
    waiters.fetch_sub(1);
    return;
  }
}

Status Mailboxes::send(SessionCore& s, uint64_t to, std::string_view payload, uint64_t tag,
                       uint64_t reply_to, int64_t timeout_ns) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  STOA_ASSIGN(Mailbox * b, find(to));
  if (payload.size() > kMaxPayload) {
    return Error(Code::kInvalidArgument,
                 fmt::format("a {}-byte message is larger than the {}-byte limit", payload.size(),
                             kMaxPayload));
  }
  STOA_ASSIGN(Offset m, s.alloc(sizeof(MsgHeader) + payload.size()));
  MsgHeader* h = reinterpret_cast<MsgHeader*>(s.write_ptr(m));
  *h = MsgHeader{};
  h->sender = reply_to;
  h->tag = tag;
  h->sent_ns = util::real_ns();
  h->len = uint32_t(payload.size());
  h->magic = kMsgMagic;
  char* body = s.write_ptr(m + sizeof(MsgHeader));
  if (!payload.empty()) std::memcpy(body, payload.data(), payload.size());
  h->sum = payload_sum(*h, body);

  const uint64_t deadline = deadline_of(timeout_ns);
  for (;;) {
    const uint32_t seen = b->space.load(std::memory_order_acquire);
    {
      BoxLock lock(*this, *b);
      if (b->gen != id_gen(to) ||
          b->state.load(std::memory_order_relaxed) != uint32_t(BoxState::kOpen)) {
        (void)s.free(m);
        return b->gen != id_gen(to) ? Error(Code::kNotFound, fmt::format("no mailbox {:#x}", to))
                                    : closed_box(to);
      }
      if (payload.size() > b->max_bytes) {
        (void)s.free(m);
        return Error(Code::kInvalidArgument,
                     fmt::format("a {}-byte message is larger than mailbox {:#x} holds ({} bytes)",
                                 payload.size(), to, b->max_bytes));
      }
      const uint64_t n =
          b->count.load(std::memory_order_relaxed) + b->nleased.load(std::memory_order_relaxed);
      const uint64_t bytes = b->bytes.load(std::memory_order_relaxed);
      if (n < b->max_messages && bytes + payload.size() <= b->max_bytes) {
        h->seq = b->next_seq++;
        b->op_msg = m;
        b->op_kind = uint32_t(Op::kSend);
        Status st = s.publish(m);
        if (!st.ok()) {
          b->op_kind = uint32_t(Op::kNone);
          (void)s.free(m);
          return st;
        }
        STOA_CRASH_POINT(kMsgSendPublished);
        append(*b, m);
        b->count.store(b->count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        b->bytes.store(bytes + payload.size(), std::memory_order_relaxed);
        b->sends++;
        b->op_kind = uint32_t(Op::kNone);
        b->op_msg = 0;
        break;
      }
    }
    if (timeout_ns == 0 || (deadline != 0 && util::mono_ns() >= deadline)) {
      (void)s.free(m);
      return Error(Code::kFull, fmt::format("mailbox {:#x} is full ({} messages, {} bytes)", to,
                                            b->max_messages, b->max_bytes));
    }
    wait_word(b->waiters, &b->space, seen, deadline, false);
  }
  wake(*b, true, false);
  return {};
}

// Holding b.lock: takes message m (whose predecessor on the ready list is
// prev, 0 at the head), for good or on lease.
Status Mailboxes::take(SessionCore& s, Mailbox& b, Offset m, Offset prev, bool lease,
                       Delivery* out) const {
  MsgHeader* h = hdr(m);
  if (!c_.region->ensure(m, sizeof(MsgHeader) + uint64_t{h->len}).ok()) {
    return Error(Code::kCorrupt, fmt::format("mailbox message at offset {} runs past the file", m));
  }
  const char* body = c_.region->ro(m + sizeof(MsgHeader));
  if (h->magic != kMsgMagic || payload_sum(*h, body) != h->sum) {
    return Error(Code::kCorrupt, fmt::format("{}: the message at offset {} fails its checksum",
                                             c_.region->path(), m));
  }
  out->payload.assign(body, h->len);
  out->seq = h->seq;
  out->sender = h->sender;
  out->tag = h->tag;
  out->sent_ns = h->sent_ns;
  b.op_msg = m;
  if (lease) {
    b.op_kind = uint32_t(Op::kLease);
    Offset* at = prev == 0 ? &b.head : &hdr(prev)->next;
    *at = h->next;
    if (b.tail == m) b.tail = prev;
    STOA_CRASH_POINT(kMsgLeaseUnlinked);
    h->lessee = owner_word(s.slot(), s.generation());
    h->deliveries++;
    h->next = b.leased;
    b.leased = m;
    b.nleased.store(b.nleased.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    out->msg = m;
    out->deliveries = h->deliveries;
  } else {
    b.op_kind = uint32_t(Op::kTake);
    Status st = s.retire_deferred(m);
    if (!st.ok()) {
      b.op_kind = uint32_t(Op::kNone);
      return st;
    }
    STOA_CRASH_POINT(kMsgTakeRetired);
    Offset* at = prev == 0 ? &b.head : &hdr(prev)->next;
    *at = h->next;
    if (b.tail == m) b.tail = prev;
    b.bytes.store(b.bytes.load(std::memory_order_relaxed) - h->len, std::memory_order_relaxed);
  }
  if (lease)
    b.bytes.store(b.bytes.load(std::memory_order_relaxed) - h->len, std::memory_order_relaxed);
  b.count.store(b.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  b.receives++;
  b.op_kind = uint32_t(Op::kNone);
  b.op_msg = 0;
  return {};
}

Result<Delivery> Mailboxes::receive(SessionCore& s, uint64_t box, const RecvSpec& spec) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  STOA_ASSIGN(Mailbox * b, find(box));
  const uint64_t deadline = deadline_of(spec.timeout_ns);
  Delivery out;
  for (;;) {
    const uint32_t seen = b->avail.load(std::memory_order_acquire);
    bool got = false;
    {
      BoxLock lock(*this, *b);
      if (b->gen != id_gen(box))
        return Error(Code::kNotFound, fmt::format("no mailbox {:#x}", box));
      if (b->state.load(std::memory_order_relaxed) != uint32_t(BoxState::kOpen)) {
        return closed_box(box);
      }
      if (b->owner != 0 && b->owner != owner_word(s.slot(), s.generation())) {
        return Error(Code::kInvalidArgument,
                     fmt::format("mailbox {:#x} belongs to another session: only its owner "
                                 "receives",
                                 box));
      }
      Offset prev = 0;
      for (Offset m = b->head; m != 0;) {
        const MsgHeader* h = hdr(m);
        if (h == nullptr) {
          return Error(Code::kCorrupt,
                       fmt::format("{}: mailbox {:#x} links to offset {} outside the file",
                                   c_.region->path(), box, m));
        }
        if (!spec.match || spec.match(Peek{h->seq, h->sender, h->tag, h->len, h->deliveries})) {
          STOA_TRY(take(s, *b, m, prev, spec.lease, &out));
          got = true;
          break;
        }
        prev = m;
        m = h->next;
      }
    }
    if (got) {
      wake(*b, false, true);
      s.collect_if_due();
      return out;
    }
    if (spec.timeout_ns == 0 || (deadline != 0 && util::mono_ns() >= deadline)) {
      return Error(Code::kTimeout, fmt::format("no message in mailbox {:#x}", box));
    }
    wait_word(b->waiters, &b->avail, seen, deadline, spec.poll);
  }
}

Status Mailboxes::finish_lease(SessionCore& s, uint64_t box, Offset msg, uint64_t seq, bool ack) {
  if (s.closed()) return Error(Code::kClosed, "the session is closed");
  STOA_ASSIGN(Mailbox * b, find(box));
  {
    BoxLock lock(*this, *b);
    if (b->gen != id_gen(box)) return Error(Code::kNotFound, fmt::format("no mailbox {:#x}", box));
    MsgHeader* h = linked(b->leased, msg) ? hdr(msg) : nullptr;
    if (h == nullptr || h->seq != seq || h->lessee != owner_word(s.slot(), s.generation())) {
      return Error(Code::kNotFound,
                   fmt::format("message {} of mailbox {:#x} is not leased by this session "
                               "(acked already, or given back)",
                               seq, box));
    }
    b->op_msg = msg;
    if (ack) {
      b->op_kind = uint32_t(Op::kAck);
      Status st = s.retire_deferred(msg);
      if (!st.ok()) {
        b->op_kind = uint32_t(Op::kNone);
        return st;
      }
      unlink(&b->leased, msg);
    } else {
      b->op_kind = uint32_t(Op::kRequeue);
      unlink(&b->leased, msg);
      STOA_CRASH_POINT(kMsgRequeueUnlinked);
      h->lessee = 0;
      push_front(*b, msg);
      b->count.store(b->count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      b->bytes.store(b->bytes.load(std::memory_order_relaxed) + h->len, std::memory_order_relaxed);
      b->redeliveries++;
    }
    b->nleased.store(b->nleased.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    b->op_kind = uint32_t(Op::kNone);
    b->op_msg = 0;
  }
  wake(*b, !ack, ack);
  s.collect_if_due();
  return {};
}

Status Mailboxes::ack(SessionCore& s, uint64_t box, Offset msg, uint64_t seq) {
  return finish_lease(s, box, msg, seq, true);
}

Status Mailboxes::release(SessionCore& s, uint64_t box, Offset msg, uint64_t seq) {
  return finish_lease(s, box, msg, seq, false);
}

}  // namespace stoa::msg
