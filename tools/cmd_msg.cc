// tools/cmd_msg.cc — the messaging commands: send, recv, mailboxes.
//
// NAME is a store-owned named mailbox (a queue, Session::queue), made on
// first use by send or recv; it outlives the command. A name another
// session registered for its own mailbox works for send; recv from it is
// refused (only its owner receives).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "stoa/store.h"

namespace stoa::cli {
namespace {

using Json = nlohmann::ordered_json;

// Exit status of recv when nothing came in time.
constexpr int kExitTimeout = 3;

int cmd_send(const std::string& dir, const std::string& name,
             const std::optional<std::string>& payload, uint64_t tag, int64_t timeout_ms) {
  std::string bytes;
  if (payload && *payload != "-") {
    bytes = *payload;
  } else {
    auto in = read_all(STDIN_FILENO, "stdin");
    if (!in.ok()) return report(in.error());
    bytes = std::move(*in);
  }
  auto o = open_session(dir);
  if (!o.ok()) return report(o.error());
  auto q = o->session.queue(name);
  if (!q.ok()) return report(q.error());
  SendOptions so;
  so.tag = tag;
  so.timeout =
      timeout_ms < 0 ? std::chrono::nanoseconds(-1) : std::chrono::milliseconds(timeout_ms);
  if (Status st = o->session.send(*q, bytes, so); !st.ok()) return report(st.error());
  if (Status st = o->session.close(); !st.ok()) return report(st.error());
  return kExitOk;
}

int cmd_recv(const std::string& dir, const std::string& name, int64_t timeout_ms,
             const std::optional<uint64_t>& tag) {
  auto o = open_session(dir);
  if (!o.ok()) return report(o.error());
  auto q = o->session.queue(name);
  if (!q.ok()) return report(q.error());
  ReceiveOptions ro;
  ro.timeout =
      timeout_ms < 0 ? std::chrono::nanoseconds(-1) : std::chrono::milliseconds(timeout_ms);
  if (tag) ro.match = [t = *tag](const MessageInfo& i) { return i.tag == t; };
  auto m = o->session.receive(*q, ro);
  if (m.code() == Code::kTimeout) {
    std::fprintf(stderr, "stoa: timeout: no message in '%s' within %lld ms\n", name.c_str(),
                 (long long)timeout_ms);
    return kExitTimeout;
  }
  if (!m.ok()) return report(m.error());
  Out out;
  if (Status st = out.write(m->payload.data(), m->payload.size()); !st.ok()) {
    return report(st.error());
  }
  if (Status st = o->session.close(); !st.ok()) return report(st.error());
  return kExitOk;
}

int cmd_mailboxes(const std::string& dir, bool json) {
  auto o = open_session(dir);
  if (!o.ok()) return report(o.error());
  auto all = o->session.mailboxes();
  if (!all.ok()) return report(all.error());
  const uint64_t now = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
  auto age = [&](const MailboxInfo& i) {
    return i.oldest_sent_ns != 0 && now > i.oldest_sent_ns ? double(now - i.oldest_sent_ns) / 1e9
                                                           : 0.0;
  };
  auto owner = [](const MailboxInfo& i) {
    return i.store_owned ? std::string("store") : fmt::format("session {}", i.owner_slot);
  };
  if (json) {
    Json arr = Json::array();
    for (const MailboxInfo& i : *all) {
      arr.push_back(Json{{"name", i.name},
                         {"id", i.id.value},
                         {"owner", owner(i)},
                         {"closed", i.closed},
                         {"depth", i.messages},
                         {"bytes", i.bytes},
                         {"leased", i.leased},
                         {"max_messages", i.max_messages},
                         {"max_bytes", i.max_bytes},
                         {"oldest_age_seconds", age(i)},
                         {"sends", i.sends},
                         {"receives", i.receives},
                         {"redeliveries", i.redeliveries}});
    }
    std::printf("%s\n", arr.dump(2).c_str());
  } else {
    std::printf("%-24s %-12s %-12s %8s %10s %7s %10s\n", "name", "id", "owner", "depth", "bytes",
                "leased", "oldest(s)");
    for (const MailboxInfo& i : *all) {
      std::printf("%-24s %-12s %-12s %8llu %10llu %7llu %10.3f%s\n",
                  i.name.empty() ? "-" : i.name.c_str(), fmt::format("{:#x}", i.id.value).c_str(),
                  owner(i).c_str(), (unsigned long long)i.messages, (unsigned long long)i.bytes,
                  (unsigned long long)i.leased, age(i), i.closed ? " closed" : "");
    }
  }
  if (Status st = o->session.close(); !st.ok()) return report(st.error());
  return kExitOk;
}

}  // namespace

Handler setup_send(CLI::App& sub) {
  struct Args {
    std::string dir, name;
    std::optional<std::string> payload;
    uint64_t tag = 0;
    int64_t timeout_ms = 0;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_option("NAME", a->name, "Queue name (made on first use)")->required();
  sub.add_option("PAYLOAD", a->payload, "The message, as given; '-' or none: stdin's bytes");
  sub.add_option("--tag", a->tag, "A number the receiver may select on (default 0)");
  sub.add_option("--timeout", a->timeout_ms,
                 "When the queue is full: wait up to MS (default 0: fail at once; -1: no end)");
  return [a] { return cmd_send(a->dir, a->name, a->payload, a->tag, a->timeout_ms); };
}

Handler setup_recv(CLI::App& sub) {
  struct Args {
    std::string dir, name;
    int64_t timeout_ms = -1;
    std::optional<uint64_t> tag;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_option("NAME", a->name, "Queue name (made on first use)")->required();
  sub.add_option("--timeout", a->timeout_ms,
                 "Wait up to MS for a message (default: no end; 0: do not wait); exit 3 when "
                 "none came");
  sub.add_option("--tag", a->tag, "Take the oldest message with this tag (others stay in order)");
  return [a] { return cmd_recv(a->dir, a->name, a->timeout_ms, a->tag); };
}

Handler setup_mailboxes(CLI::App& sub) {
  struct Args {
    std::string dir;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  sub.add_option("DIR", a->dir, "Store directory")->required();
  sub.add_flag("--json", a->json, "One JSON array of objects");
  return [a] { return cmd_mailboxes(a->dir, a->json); };
}

}  // namespace stoa::cli
