// api/msg.cc — Session's messaging calls over the store's mailboxes and
// channels (src/msg/ holds the protocols).
#include <chrono>

#include "api/access.h"
#include "stoa/store.h"

namespace stoa {

namespace {

Error session_closed() { return Error(Code::kClosed, "session is closed"); }

msg::Mailboxes& boxes(internal::SessionCore* c) { return internal::store_of(c)->msgs(); }

msg::BoxLimits limits_of(const MailboxOptions& o) { return {o.max_messages, o.max_bytes}; }

int64_t ns_of(std::chrono::nanoseconds d) { return d.count(); }

MailboxInfo info_of(const msg::BoxInfo& b) {
  MailboxInfo i;
  i.id = MailboxId{b.id};
  i.name = b.name;
  i.store_owned = b.store_owned;
  i.owner_slot = b.owner_slot;
  i.closed = b.closed;
  i.messages = b.count;
  i.bytes = b.bytes;
  i.leased = b.leased;
  i.max_messages = b.max_messages;
  i.max_bytes = b.max_bytes;
  i.oldest_sent_ns = b.oldest_sent_ns;
  i.sends = b.sends;
  i.receives = b.receives;
  i.redeliveries = b.redeliveries;
  return i;
}

}  // namespace

Result<MailboxId> Session::create_mailbox(const MailboxOptions& options) {
  if (core_ == nullptr) return session_closed();
  STOA_ASSIGN(uint64_t id, boxes(core_).create(*core_, limits_of(options), /*owned=*/true));
  return MailboxId{id};
}

Result<MailboxId> Session::queue(std::string_view name, const MailboxOptions& options) {
  if (core_ == nullptr) return session_closed();
  STOA_ASSIGN(uint64_t id, boxes(core_).queue(*core_, name, limits_of(options)));
  return MailboxId{id};
}

Status Session::remove_mailbox(MailboxId id) {
  if (core_ == nullptr) return session_closed();
  return boxes(core_).remove(*core_, id.value);
}

Status Session::send(MailboxId to, std::string_view payload, const SendOptions& options) {
  if (core_ == nullptr) return session_closed();
  return boxes(core_).send(*core_, to.value, payload, options.tag, options.reply_to.value,
                           ns_of(options.timeout));
}

Result<Message> Session::receive(MailboxId from, const ReceiveOptions& options) {
  if (core_ == nullptr) return session_closed();
  msg::RecvSpec spec;
  spec.timeout_ns = ns_of(options.timeout);
  spec.poll = options.poll;
  spec.lease = options.lease;
  if (options.match) {
    spec.match = [&options](const msg::Peek& p) {
      return options.match(MessageInfo{p.seq, MailboxId{p.sender}, p.tag, p.size, p.deliveries});
    };
  }
  STOA_ASSIGN(msg::Delivery d, boxes(core_).receive(*core_, from.value, spec));
  Message m;
  m.mailbox = from;
  m.seq = d.seq;
  m.sender = MailboxId{d.sender};
  m.tag = d.tag;
  m.sent_ns = d.sent_ns;
  m.deliveries = d.deliveries;
  m.payload = std::move(d.payload);
  m.lease_ = d.msg;
  return m;
}

Result<Message> Session::try_receive(MailboxId from) {
  ReceiveOptions o;
  o.timeout = std::chrono::nanoseconds(0);
  return receive(from, o);
}

Status Session::ack(const Message& m) {
  if (core_ == nullptr) return session_closed();
  if (m.lease_ == 0) return Error(Code::kInvalidArgument, "the message was not received on lease");
  return boxes(core_).ack(*core_, m.mailbox.value, m.lease_, m.seq);
}

Status Session::release(const Message& m) {
  if (core_ == nullptr) return session_closed();
  if (m.lease_ == 0) return Error(Code::kInvalidArgument, "the message was not received on lease");
  return boxes(core_).release(*core_, m.mailbox.value, m.lease_, m.seq);
}

Status Session::register_name(std::string_view name, MailboxId id) {
  if (core_ == nullptr) return session_closed();
  return boxes(core_).register_name(*core_, name, id.value);
}

Result<MailboxId> Session::whereis(std::string_view name) {
  if (core_ == nullptr) return session_closed();
  STOA_ASSIGN(uint64_t id, boxes(core_).whereis(*core_, name));
  return MailboxId{id};
}

Status Session::unregister_name(std::string_view name) {
  if (core_ == nullptr) return session_closed();
  return boxes(core_).unregister_name(*core_, name);
}

Result<std::vector<MailboxInfo>> Session::mailboxes() {
  if (core_ == nullptr) return session_closed();
  STOA_ASSIGN(std::vector<msg::BoxInfo> all, boxes(core_).list(*core_));
  std::vector<MailboxInfo> out;
  out.reserve(all.size());
  for (const msg::BoxInfo& b : all) out.push_back(info_of(b));
  return out;
}

Result<MailboxInfo> Session::mailbox_info(MailboxId id) {
  if (core_ == nullptr) return session_closed();
  STOA_ASSIGN(msg::BoxInfo b, boxes(core_).info(*core_, id.value));
  return info_of(b);
}

// --- channels --------------------------------------------------------------

Result<ChannelId> Session::channel(std::string_view name, const ChannelOptions& options) {
  if (core_ == nullptr) return session_closed();
  STOA_ASSIGN(uint64_t id,
              boxes(core_).channel(*core_, name, {options.capacity, options.max_message}));
  return ChannelId{id};
}

Status Session::push(ChannelId to, std::string_view payload, const PushOptions& options) {
  if (core_ == nullptr) return session_closed();
  return boxes(core_).push(*core_, to.value, payload, options.tag, ns_of(options.timeout),
                           options.poll);
}

Result<Popped> Session::pop(ChannelId from, std::string* payload, const PopOptions& options) {
  if (core_ == nullptr) return session_closed();
  if (payload == nullptr) return Error(Code::kInvalidArgument, "pop needs a payload string");
  STOA_ASSIGN(msg::Popped p,
              boxes(core_).pop(*core_, from.value, payload, ns_of(options.timeout), options.poll));
  return Popped{p.pos, p.tag, p.sent_ns};
}

Status Session::remove_channel(ChannelId id) {
  if (core_ == nullptr) return session_closed();
  return boxes(core_).remove_channel(*core_, id.value);
}

Result<std::vector<ChannelInfo>> Session::channels() {
  if (core_ == nullptr) return session_closed();
  STOA_ASSIGN(std::vector<msg::ChanInfo> all, boxes(core_).channels(*core_));
  std::vector<ChannelInfo> out;
  out.reserve(all.size());
  for (const msg::ChanInfo& c : all) {
    out.push_back(ChannelInfo{ChannelId{c.id}, c.name, c.closed, c.capacity, c.max_message,
                              c.pushed, c.popped, c.created_ns});
  }
  return out;
}

}  // namespace stoa
