// Transactions against std::map as the model (issue 3, "Tests": a property
// test with rapidcheck).
//
// A random sequence of put / del / get / scan (bounded or not, forward or
// backward) / prefix / savepoint / rollback_to / commit / abort runs in one
// session's transactions (begun implicitly when the previous one ended); the
// model is a std::map for the committed state plus one for the transaction's
// view, with a copy per savepoint. After each step:
//  - every read of the transaction matches its model (snapshot + own writes);
//  - every View the transaction handed out (from get or a cursor) still
//    holds the bytes it had: Views are valid until the transaction ends
//    (except those taken after a savepoint that was rolled back);
//  - after each commit and abort, a second session's read-only transaction
//    sees exactly the committed model (full scans both ways, a get per key);
//    commit timestamps grow, and a commit with nothing left to write (all
//    rolled back) returns its snapshot;
//  - a third session holds an old read-only snapshot (retaken now and then)
//    that keeps seeing the model as it was then, whatever is committed since.
// At the end verify() is sound. Keys include ones that share their first 8
// bytes (the index compares an 8-byte prefix first), embedded NUL and 0xff
// bytes, and keys of the maximum length; values include empty ones and ones
// stored out of line (over 2 KiB). The store poisons freed memory, so a
// View left pointing at a freed version shows as changed bytes.
//
// Cases: rapidcheck's default 100 (RC_PARAMS="max_success=N" for more); a
// failure prints the shrunk sequence and RC_PARAMS to reproduce it.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <optional>
#include <ostream>
#include <vector>

#include "stoa/store.h"
#include "test_util.h"

namespace stoa {
namespace {

using namespace stoa::test;
using Model = std::map<std::string, std::string>;

const std::vector<std::string>& keys() {
  static const std::vector<std::string> k = {
      "a",
      std::string("a\0", 2),
      "a\x01",
      "ab",
      "abcdefgh",
      std::string("abcdefgh\0", 9),
      "abcdefghi",
      "abcdefgg\xff",
      "b",
      "ba",
      "b\xff",
      "\xff",
      "\xff\xff",
      std::string(kMaxKeySize, 'k'),
      std::string(kMaxKeySize - 1, 'k') + "j",
      std::string(kMaxKeySize - 1, 'k'),
  };
  return k;
}

const std::vector<std::string>& prefixes() {
  static const std::vector<std::string> p = {
      "", "a", "ab", "abcdefgh", std::string("a\0", 2), "abcdefghi", "b", "\xff", "kkkkkkkkk", "z"};
  return p;
}

enum class OpKind : int {
  kPut,
  kDel,
  kGet,
  kScan,
  kPrefix,
  kSavepoint,
  kRollback,
  kCommit,
  kAbort,
  kOldSnapshot
};

struct Op {
  OpKind kind;
  int a;  // key / prefix / savepoint index / from bound
  int b;  // to bound (scan)
  int v;  // value choice
  bool reverse;
};

const char* kind_name(OpKind k) {
  static const char* names[] = {"put",       "del",         "get",    "scan",  "prefix",
                                "savepoint", "rollback_to", "commit", "abort", "old_snapshot"};
  return names[int(k)];
}

std::string printable(std::string_view s) {
  if (s.size() > 24) return fmt::format("<{} bytes: {}...>", s.size(), printable(s.substr(0, 12)));
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f)
      out += char(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, const Op& op) {
  os << kind_name(op.kind) << "(" << op.a << "," << op.b << "," << op.v
     << (op.reverse ? ",rev" : "") << ")";
  return os;
}

rc::Gen<Op> gen_op() {
  // Weights: writes and reads dominate; commits often enough to exercise the
  // committed state; savepoints and rollbacks nest.
  auto kind = rc::gen::weightedElement<OpKind>({{30, OpKind::kPut},
                                                {10, OpKind::kDel},
                                                {14, OpKind::kGet},
                                                {7, OpKind::kScan},
                                                {6, OpKind::kPrefix},
                                                {6, OpKind::kSavepoint},
                                                {5, OpKind::kRollback},
                                                {9, OpKind::kCommit},
                                                {3, OpKind::kAbort},
                                                {3, OpKind::kOldSnapshot}});
  return rc::gen::apply(
      [](OpKind k, int a, int b, int v, bool r) {
        return Op{k, a, b, v, r};
      },
      kind, rc::gen::inRange(0, 64), rc::gen::inRange(0, 64), rc::gen::inRange(0, 100),
      rc::gen::arbitrary<bool>());
}

// A value for choice v: empty, short, or out of line (over 2 KiB), tagged
// with a serial number so that every write is distinct.
std::string make_value(int v, uint64_t serial) {
  if (v < 5) return "";
  if (v < 15) {
    std::string big(2049 + size_t(v) * 97, '\0');
    fill_pattern(big.data(), big.size(), serial);
    return big;
  }
  return fmt::format("v{}", serial);
}

// [from, to) of the model ("" as to: unbounded), in the given direction.
std::vector<std::pair<std::string, std::string>> model_range(const Model& m,
                                                             const std::string& from,
                                                             const std::string& to, bool reverse) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto it = m.lower_bound(from); it != m.end(); ++it) {
    if (!to.empty() && it->first >= to) break;
    out.push_back(*it);
  }
  if (reverse) std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::pair<std::string, std::string>> model_prefix(const Model& m, const std::string& p,
                                                              bool reverse) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto it = m.lower_bound(p); it != m.end() && it->first.compare(0, p.size(), p) == 0; ++it) {
    out.push_back(*it);
  }
  if (reverse) std::reverse(out.begin(), out.end());
  return out;
}

struct Held {
  View view;
  std::string want;
  size_t depth;  // savepoints in force when it was taken
  std::string what;
};

// Drains a cursor; its Views go to `held` when given.
std::vector<std::pair<std::string, std::string>> drain(Cursor& c, std::vector<Held>* held,
                                                       size_t depth) {
  std::vector<std::pair<std::string, std::string>> out;
  for (; c.valid(); (void)c.next()) {
    out.emplace_back(std::string(c.key()), c.value().copy());
    if (held != nullptr)
      held->push_back({c.value(), out.back().second, depth, "cursor " + printable(c.key())});
    RC_ASSERT(out.size() <= 1000u);
  }
  return out;
}

std::string show(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string s = "[";
  for (const auto& [k, v] : kv) s += printable(k) + "=" + printable(v) + " ";
  return s + "]";
}

// The whole store as seen by a fresh read-only transaction of `s` (or by
// `t` when given) equals `m`: both scan directions and a get per key.
void check_state(Txn& t, const Model& m, const char* who) {
  auto fwd = t.scan("", "");
  RC_ASSERT(fwd.ok());
  auto got = drain(*fwd, nullptr, 0);
  auto want = model_range(m, "", "", false);
  if (got != want) RC_FAIL(fmt::format("{}: scan sees {}, model {}", who, show(got), show(want)));
  auto rev = t.scan("", "", ScanOrder::kReverse);
  RC_ASSERT(rev.ok());
  got = drain(*rev, nullptr, 0);
  std::reverse(want.begin(), want.end());
  if (got != want)
    RC_FAIL(fmt::format("{}: reverse scan sees {}, model {}", who, show(got), show(want)));
  for (const auto& k : keys()) {
    auto v = t.get(k);
    auto it = m.find(k);
    if (it == m.end()) {
      if (v.code() != Code::kNotFound) {
        RC_FAIL(fmt::format("{}: get {} = {}, model: absent", who, printable(k),
                            v.ok() ? printable(v->str()) : err(v)));
      }
    } else if (!v.ok() || v->str() != it->second) {
      RC_FAIL(fmt::format("{}: get {} = {}, model {}", who, printable(k),
                          v.ok() ? printable(v->str()) : err(v), printable(it->second)));
    }
  }
}

void check_committed(Session& s, const Model& m, uint64_t last_cts) {
  auto t = s.begin(TxnOptions{.read_only = true});
  RC_ASSERT(t.ok());
  RC_ASSERT(t->snapshot() >= last_cts);
  check_state(*t, m, "second session");
}

RC_GTEST_PROP(TxnProp, MatchesStdMap, ()) {
  const auto ops = *rc::gen::container<std::vector<Op>>(gen_op());
  TempDir dir("prop");
  Options o;
  o.watchdog_interval = milliseconds(0);
  o.log_threads = false;
  o.poison_freed = true;
  auto opened = Store::open(dir.sub("store"), o);
  RC_ASSERT(opened.ok());
  std::unique_ptr<Store> store = std::move(opened).value();
  {
    Session writer = std::move(store->session()).value();
    Session checker = std::move(store->session()).value();
    Session old_session = std::move(store->session()).value();

    Model committed;
    Model view;  // the transaction's: committed + own writes
    std::map<std::string, std::optional<std::string>> pending;  // own writes
    struct Sp {
      Model view;
      std::map<std::string, std::optional<std::string>> pending;
      size_t held;
    };
    std::vector<Sp> sps;
    std::vector<Held> held;
    std::optional<Txn> txn;
    std::optional<Txn> old_txn;
    Model old_model;
    uint64_t last_cts = 0, serial = 0;

    auto ensure_txn = [&] {
      if (txn) return;
      auto t = writer.begin();
      RC_ASSERT(t.ok());
      RC_ASSERT(t->snapshot() >= last_cts);
      txn.emplace(std::move(t).value());
      view = committed;
      pending.clear();
      sps.clear();
      held.clear();
    };
    auto check_held = [&](const Op& op) {
      for (const Held& h : held) {
        if (h.view.str() != h.want) {
          RC_FAIL(
              fmt::format("after {}: the View from {} changed from {} to {} before its "
                          "transaction ended",
                          kind_name(op.kind), h.what, printable(h.want), printable(h.view.str())));
        }
      }
    };
    auto check_old = [&] {
      if (old_txn) check_state(*old_txn, old_model, "old snapshot");
    };

    for (const Op& op : ops) {
      switch (op.kind) {
        case OpKind::kPut:
        case OpKind::kDel: {
          ensure_txn();
          const std::string& k = keys()[op.a % keys().size()];
          if (op.kind == OpKind::kPut) {
            std::string v = make_value(op.v, ++serial);
            RC_ASSERT(txn->put(k, v).ok());
            view[k] = v;
            pending[k] = v;
          } else {
            RC_ASSERT(txn->del(k).ok());
            view.erase(k);
            pending[k] = std::nullopt;
          }
          break;
        }
        case OpKind::kGet: {
          ensure_txn();
          const std::string& k = keys()[op.a % keys().size()];
          auto v = txn->get(k);
          auto it = view.find(k);
          if (it == view.end()) {
            if (v.code() != Code::kNotFound) {
              RC_FAIL(fmt::format("get {} = {}, model: absent", printable(k),
                                  v.ok() ? printable(v->str()) : err(v)));
            }
          } else {
            if (!v.ok() || v->str() != it->second) {
              RC_FAIL(fmt::format("get {} = {}, model {}", printable(k),
                                  v.ok() ? printable(v->str()) : err(v), printable(it->second)));
            }
            held.push_back({*v, it->second, sps.size(), "get " + printable(k)});
          }
          break;
        }
        case OpKind::kScan: {
          ensure_txn();
          // Bounds: a key, or "" (unbounded) for one in eight choices.
          std::string from = op.a % 8 == 0 ? "" : keys()[op.a % keys().size()];
          std::string to = op.b % 8 == 0 ? "" : keys()[op.b % keys().size()];
          auto c = txn->scan(from, to, op.reverse ? ScanOrder::kReverse : ScanOrder::kForward);
          RC_ASSERT(c.ok());
          auto got = drain(*c, &held, sps.size());
          auto want = model_range(view, from, to, op.reverse);
          if (got != want) {
            RC_FAIL(fmt::format("scan [{}, {}){}: sees {}, model {}", printable(from),
                                printable(to), op.reverse ? " reverse" : "", show(got),
                                show(want)));
          }
          break;
        }
        case OpKind::kPrefix: {
          ensure_txn();
          const std::string& p = prefixes()[op.a % prefixes().size()];
          auto c = txn->prefix(p, op.reverse ? ScanOrder::kReverse : ScanOrder::kForward);
          RC_ASSERT(c.ok());
          auto got = drain(*c, &held, sps.size());
          auto want = model_prefix(view, p, op.reverse);
          if (got != want) {
            RC_FAIL(fmt::format("prefix {}{}: sees {}, model {}", printable(p),
                                op.reverse ? " reverse" : "", show(got), show(want)));
          }
          break;
        }
        case OpKind::kSavepoint: {
          ensure_txn();
          uint32_t sp = txn->savepoint();
          RC_ASSERT(sp == sps.size());
          sps.push_back({view, pending, held.size()});
          break;
        }
        case OpKind::kRollback: {
          if (!txn || sps.empty()) break;
          const size_t sp = size_t(op.a) % sps.size();
          RC_ASSERT(txn->rollback_to(uint32_t(sp)).ok());
          view = sps[sp].view;
          pending = sps[sp].pending;
          // Views taken since savepoint sp may point at rolled-back writes.
          std::vector<Held> keep;
          for (Held& h : held) {
            if (h.depth <= sp) keep.push_back(std::move(h));
          }
          held = std::move(keep);
          sps.resize(sp + 1);
          sps[sp].held = held.size();
          break;
        }
        case OpKind::kCommit: {
          if (!txn) break;
          check_held(op);
          const uint64_t snap = txn->snapshot();
          // Only keys whose final write differs from nothing count: a put
          // then a rollback leaves nothing to install.
          const bool writes = !pending.empty();
          auto r = txn->commit();
          if (!r.ok()) RC_FAIL("commit: " + err(r));
          if (writes) {
            RC_ASSERT(*r > last_cts);
            RC_ASSERT(*r > snap);
            last_cts = *r;
          } else {
            RC_ASSERT(*r == snap);
          }
          txn.reset();
          held.clear();
          committed = view;
          check_committed(checker, committed, last_cts);
          check_old();
          break;
        }
        case OpKind::kAbort: {
          if (!txn) break;
          check_held(op);
          txn->abort();
          RC_ASSERT(!txn->active());
          txn.reset();
          held.clear();
          check_committed(checker, committed, last_cts);
          break;
        }
        case OpKind::kOldSnapshot: {
          old_txn.reset();
          auto t = old_session.begin(TxnOptions{.read_only = true});
          RC_ASSERT(t.ok());
          old_txn.emplace(std::move(t).value());
          old_model = committed;
          check_old();
          break;
        }
      }
      check_held(op);
    }
    if (txn) {
      auto r = txn->commit();
      RC_ASSERT(r.ok());
      txn.reset();
      committed = view;
      check_committed(checker, committed, r.ok() ? *r : 0);
      check_old();
    }
    old_txn.reset();
  }
  auto v = store->verify();
  RC_ASSERT(v.ok());
  if (!v->sound()) RC_FAIL("verify: " + v->problems[0]);
}

}  // namespace
}  // namespace stoa
