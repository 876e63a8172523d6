// cli_txn_test.cc — the `stoa` key commands, run as separate processes (fork +
// exec): put (argument, stdin, --file), get (exact bytes; absent keys), del,
// scan (prefix, order, --reverse, --limit), dump and load (escaping, batches,
// --atomic, malformed lines, the dump -> load -> dump round trip), and the
// demo's bank phase.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli_util.h"
#include "stoa/store.h"

namespace {

namespace fs = std::filesystem;

using stoa::test::CliResult;
using stoa::test::contains;
using stoa::test::run_cli;
using stoa::test::slurp;
using stoa::test::spit;
using TempDir = stoa::test::TempDir;

// The documented escaping, written independently of tools/stoa.cc.
std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string dump_of(const std::map<std::string, std::string>& m) {
  std::string out;
  for (const auto& [k, v] : m) out += escape(k) + "\t" + escape(v) + "\n";
  return out;
}

class CliTxnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty()) << "mkdtemp under " << STOA_TEST_TMPDIR;
    store_ = tmp_.sub("store");
  }
  CliResult cli(const std::vector<std::string>& args,
                const std::optional<std::string>& input = std::nullopt) {
    return run_cli(tmp_, args, input);
  }
  void init_store(const std::string& dir) {
    CliResult r = cli({"init", dir, "--max-size", "256M"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  void put(const std::string& key, const std::string& value) {
    CliResult r = cli({"put", store_, key, value});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }

  TempDir tmp_{"cli"};
  std::string store_;
};

TEST_F(CliTxnTest, PutGetRoundTrip) {
  init_store(store_);
  put("greeting", "hello");
  CliResult r = cli({"get", store_, "greeting"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hello");  // the bytes, no newline added
  EXPECT_TRUE(r.err.empty()) << r.err;

  // -v prints the commit timestamp; a later commit has a later one.
  r = cli({"put", store_, "greeting", "hi again", "-v"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, "committed at ts ");
  EXPECT_EQ(cli({"get", store_, "greeting"}).out, "hi again");

  // The value from stdin: all of it, newlines included.
  const std::string from_stdin = "line one\nline\ttwo\n\n";
  r = cli({"put", store_, "stdin-key"}, from_stdin);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(cli({"get", store_, "stdin-key"}).out, from_stdin);

  // Empty stdin: an empty value, present.
  r = cli({"put", store_, "empty"}, std::string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = cli({"get", store_, "empty"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");

  // A binary value from --file: NULs, tabs, newlines, high bytes, backslashes.
  std::string binary;
  for (int i = 0; i < 256; i++) binary += char(i);
  binary += "\t\n\\\\n\r\n";
  binary += std::string(70000, 'x');  // large enough to live out of line
  spit(tmp_.sub("value.bin"), binary);
  r = cli({"put", store_, "bin", "--file", tmp_.sub("value.bin")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = cli({"get", store_, "bin"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out == binary) << "got " << r.out.size() << " bytes, want " << binary.size();

  // A key with a tab and a newline, as given on the command line.
  put("tab\tkey\n", "v");
  EXPECT_EQ(cli({"get", store_, "tab\tkey\n"}).out, "v");
}

TEST_F(CliTxnTest, PutUsageAndErrors) {
  init_store(store_);
  CliResult r = cli({"put", store_, "k", "v", "--file", tmp_.sub("x")});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_CONTAINS(r.err, "stoa: usage:");
  r = cli({"put", store_});
  EXPECT_EQ(r.exit_code, 64);
  r = cli({"put", store_, "k", "--file", tmp_.sub("no-such-file")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.err, "stoa: not_found:");
  EXPECT_CONTAINS(r.err, tmp_.sub("no-such-file"));
  r = cli({"put", store_, std::string(2000, 'k'), "v"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.err, "stoa: invalid_argument:");

  // Every key command refuses a missing store and does not create one.
  const std::string missing = tmp_.sub("missing");
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"put", missing, "k", "v"},
                                             {"get", missing, "k"},
                                             {"del", missing, "k"},
                                             {"scan", missing, "k"},
                                             {"dump", missing},
                                             {"load", missing}}) {
    r = cli(args, std::string("k\tv\n"));
    EXPECT_EQ(r.exit_code, 1) << args[0];
    EXPECT_CONTAINS(r.err, "stoa: not_found:");
    EXPECT_CONTAINS(r.err, missing);
    EXPECT_FALSE(fs::exists(missing)) << args[0];
  }
}

TEST_F(CliTxnTest, GetAbsentKeyFailsWithAMessage) {
  init_store(store_);
  put("present", "1");
  CliResult r = cli({"get", store_, "absent"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(r.err.rfind("stoa: not_found: absent", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
}

TEST_F(CliTxnTest, DelRemovesAKeyAndAbsentIsFine) {
  init_store(store_);
  put("a", "1");
  put("b", "2");
  CliResult r = cli({"del", store_, "a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(cli({"get", store_, "a"}).exit_code, 1);
  EXPECT_EQ(cli({"get", store_, "b"}).out, "2");

  r = cli({"del", store_, "a", "-v"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, "absent");
  r = cli({"del", store_, "never-was"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = cli({"del", store_, "b", "-v"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, "deleted at ts ");
  EXPECT_EQ(cli({"dump", store_}).out, "");

  // A deleted key can be put again.
  put("a", "3");
  EXPECT_EQ(cli({"get", store_, "a"}).out, "3");
}

TEST_F(CliTxnTest, ScanPrefixInOrderAndReverse) {
  init_store(store_);
  for (const char* k : {"user/2", "order/1", "user/10", "user/1", "users", "user", "zeta"}) {
    put(k, std::string("v-") + k);
  }
  put("user/3", "tab\there");
  CliResult r = cli({"scan", store_, "user/"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "user/1\tv-user/1\n"
            "user/10\tv-user/10\n"
            "user/2\tv-user/2\n"
            "user/3\ttab\\there\n");

  r = cli({"scan", store_, "user/", "--reverse"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "user/3\ttab\\there\n"
            "user/2\tv-user/2\n"
            "user/10\tv-user/10\n"
            "user/1\tv-user/1\n");

  r = cli({"scan", store_, "user/", "--limit", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "user/1\tv-user/1\nuser/10\tv-user/10\n");
  r = cli({"scan", store_, "user", "--reverse", "--limit", "1"});
  EXPECT_EQ(r.out, "users\tv-users\n");

  r = cli({"scan", store_, "nothing/"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");

  // No prefix: every key, the same as dump.
  r = cli({"scan", store_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, cli({"dump", store_}).out);
  EXPECT_EQ(r.out.rfind("order/1\t", 0), 0u) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 8);
}

TEST_F(CliTxnTest, DumpLoadDumpRoundTrip) {
  init_store(store_);
  // A few hundred keys with every awkward byte, written through the library.
  std::map<std::string, std::string> model;
  std::mt19937_64 rng(42);
  const std::string awkward =
      std::string("\t\n\r\\\x7f\x01 \xff\xc3\xa9x", 11) + std::string(1, '\0');
  auto random_bytes = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; i++) {
      s += rng() % 3 == 0 ? awkward[rng() % awkward.size()] : char('a' + rng() % 26);
    }
    return s;
  };
  for (int i = 0; i < 300; i++) {
    std::string key = "k";
    key += char('0' + i % 7);
    key += '/';
    key += random_bytes(1 + rng() % 20);
    model[key] = i % 50 == 0 ? std::string() : random_bytes(rng() % 200);
  }
  model["big"] = random_bytes(100000);
  model["\\x41"] = "not an escape";  // a literal backslash, x, 4, 1
  {
    stoa::Options o;
    o.create_if_missing = false;
    o.watchdog_interval = std::chrono::milliseconds(0);
    o.log_threads = false;
    auto store = stoa::Store::open(store_, o);
    ASSERT_TRUE(store.ok()) << store.error().to_string();
    auto s = (*store)->session();
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    auto ts = s->transact([&](stoa::Txn& t) -> stoa::Status {
      for (const auto& [k, v] : model) STOA_TRY(t.put(k, v));
      return {};
    });
    ASSERT_TRUE(ts.ok()) << ts.error().to_string();
  }

  CliResult d1 = cli({"dump", store_});
  ASSERT_EQ(d1.exit_code, 0) << d1.err;
  EXPECT_TRUE(d1.out == dump_of(model)) << "dump differs from the documented format";
  EXPECT_EQ(size_t(std::count(d1.out.begin(), d1.out.end(), '\n')), model.size());

  // Into a fresh store, in small batches, then dump it again.
  const std::string copy = tmp_.sub("copy");
  init_store(copy);
  CliResult l = cli({"load", copy, "--batch", "100"}, d1.out);
  ASSERT_EQ(l.exit_code, 0) << l.err;
  EXPECT_CONTAINS(l.out, "loaded " + std::to_string(model.size()) + " keys");
  EXPECT_CONTAINS(l.out, "in " + std::to_string((model.size() + 99) / 100) + " transactions");
  EXPECT_TRUE(l.err.empty()) << "no progress bar when stderr is not a terminal: " << l.err;
  CliResult d2 = cli({"dump", copy});
  ASSERT_EQ(d2.exit_code, 0) << d2.err;
  EXPECT_TRUE(d1.out == d2.out) << "dump -> load -> dump changed the output";

  // The loaded values are the original bytes.
  CliResult g = cli({"get", copy, "big"});
  EXPECT_TRUE(g.out == model["big"]);
  g = cli({"get", copy, "\\x41"});
  EXPECT_EQ(g.out, "not an escape");

  // Loading the same dump again (--atomic) changes nothing.
  l = cli({"load", copy, "--atomic"}, d1.out);
  ASSERT_EQ(l.exit_code, 0) << l.err;
  EXPECT_CONTAINS(l.out, "in 1 transaction,");
  EXPECT_TRUE(cli({"dump", copy}).out == d1.out);
}

TEST_F(CliTxnTest, LoadAcceptsEscapesAndBlankLines) {
  init_store(store_);
  CliResult r = cli({"load", store_}, "a\\tb\tx\\ny\\\\z\\x00\\x7F\n\nempty\t\nlast\tno newline");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_CONTAINS(r.out, "loaded 3 keys from 4 lines");
  EXPECT_EQ(cli({"get", store_, "a\tb"}).out, std::string("x\ny\\z\0\x7f", 7));
  CliResult g = cli({"get", store_, "empty"});
  EXPECT_EQ(g.exit_code, 0);
  EXPECT_EQ(g.out, "");
  EXPECT_EQ(cli({"get", store_, "last"}).out, "no newline");
}

TEST_F(CliTxnTest, LoadMalformedLineNamesTheLine) {
  init_store(store_);
  // Batches: the lines before the bad one are loaded, nothing after it.
  CliResult r = cli({"load", store_}, "a\t1\nb\t2\nno tab here\nd\t4\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("stoa: invalid_argument: line 3:", 0), 0u) << r.err;
  EXPECT_CONTAINS(r.err, "no tab");
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  EXPECT_EQ(cli({"get", store_, "b"}).out, "2");
  EXPECT_EQ(cli({"get", store_, "d"}).exit_code, 1);

  // A bad escape names the line and the column.
  r = cli({"load", store_}, "e\t5\nf\tbad \\q escape\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.err, "line 2: column 7:");
  EXPECT_CONTAINS(r.err, "\\q");
  r = cli({"load", store_}, "g\\x4\t1\n");
  EXPECT_CONTAINS(r.err, "line 1: column 2:");
  r = cli({"load", store_}, "h\t1\n\tempty key\n");
  EXPECT_CONTAINS(r.err, "line 2: empty key");

  // --atomic: nothing at all is loaded.
  r = cli({"load", store_, "--atomic"}, "x\t1\ny\t2\nz\\\\\t3\nw\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.err, "line 4:");
  EXPECT_CONTAINS(r.err, "nothing was loaded");
  EXPECT_EQ(cli({"get", store_, "x"}).exit_code, 1);
  EXPECT_EQ(cli({"scan", store_, "z"}).out, "");
}

TEST_F(CliTxnTest, HelpDocumentsCommandsAndEscaping) {
  CliResult r = cli({"--help"});
  ASSERT_EQ(r.exit_code, 0);
  for (const char* cmd : {"put", "get", "del", "scan", "dump", "load", "demo"}) {
    EXPECT_CONTAINS(r.out, cmd);
  }
  for (const char* cmd : {"scan", "dump", "load"}) {
    r = cli({cmd, "--help"});
    ASSERT_EQ(r.exit_code, 0) << cmd;
    EXPECT_CONTAINS(r.out, "KEY<TAB>VALUE");
    EXPECT_CONTAINS(r.out, "\\t");
    EXPECT_CONTAINS(r.out, "\\\\");
  }
  r = cli({"get", store_});
  EXPECT_EQ(r.exit_code, 64);
  r = cli({"scan", store_, "p", "--limit", "lots"});
  EXPECT_EQ(r.exit_code, 64);
}

TEST_F(CliTxnTest, DemoBankBalances) {
  const std::string dir = tmp_.sub("demo");
  CliResult r = cli({"demo", "--dir", dir, "--workers", "2", "--seconds", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "bank total: 100000 == 100000 ok");
  EXPECT_CONTAINS(r.out, "killed by SIGKILL, as planned");
  EXPECT_CONTAINS(r.out, "0 of them wrong");
  EXPECT_CONTAINS(r.out, "demo passed");
  EXPECT_TRUE(r.err.empty()) << r.err;

  // The books it leaves behind, read back through the CLI.
  r = cli({"scan", dir, "acct/"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  long total = 0, n = 0;
  while (std::getline(lines, line)) {
    size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    total += std::stol(line.substr(tab + 1));
    n++;
  }
  EXPECT_EQ(n, 100);
  EXPECT_EQ(total, 100000);
  r = cli({"verify", dir});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

}  // namespace
