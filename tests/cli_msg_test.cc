// `stoa send`, `stoa recv`, `stoa mailboxes`: a queue made on first use,
// payloads from the command line and from stdin byte for byte, selection by
// tag, exit 3 on a timeout, a message that outlives the commands, the
// listing (text and JSON), and usage errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_util.h"

namespace {

using stoa::test::CliResult;
using stoa::test::run_cli;
using TempDir = stoa::test::TempDir;

class CliMsgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = tmp_.sub("store");
    CliResult r = cli({"init", store_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  CliResult cli(const std::vector<std::string>& args,
                const std::optional<std::string>& input = std::nullopt) {
    return run_cli(tmp_, args, input);
  }
  TempDir tmp_{"cli-msg"};
  std::string store_;
};

TEST_F(CliMsgTest, SendThenRecvInOrderWithTagsAndStdin) {
  CliResult r = cli({"send", store_, "jobs", "first"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string binary("a\0b\nc\xff", 6);
  r = cli({"send", store_, "jobs", "-", "--tag", "9"}, binary);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = cli({"send", store_, "jobs", "third"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  r = cli({"mailboxes", store_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("jobs"), std::string::npos) << r.out;
  r = cli({"mailboxes", store_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["name"], "jobs");
  EXPECT_EQ(j[0]["owner"], "store");
  EXPECT_EQ(j[0]["depth"], 3);
  EXPECT_EQ(j[0]["bytes"], 5 + 6 + 5);
  EXPECT_GE(j[0]["oldest_age_seconds"].get<double>(), 0.0);

  r = cli({"recv", store_, "jobs", "--tag", "9"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, binary) << "the exact bytes, selected by tag";
  r = cli({"recv", store_, "jobs"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "first");
  r = cli({"recv", store_, "jobs", "--timeout", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "third");
  r = cli({"recv", store_, "jobs", "--timeout", "50"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("timeout"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  r = cli({"verify", store_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(CliMsgTest, RecvOnAFreshNameMakesTheQueueAndWaits) {
  CliResult r = cli({"recv", store_, "later", "--timeout", "0"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  r = cli({"mailboxes", store_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["name"], "later");
}

TEST_F(CliMsgTest, BadInput) {
  CliResult r = cli({"send", store_, std::string(60, 'n'), "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("invalid_argument"), std::string::npos) << r.err;
  r = cli({"send", tmp_.sub("nope"), "q", "x"});
  EXPECT_EQ(r.exit_code, 1);
  r = cli({"recv", store_});
  EXPECT_EQ(r.exit_code, 64) << r.err;
  r = cli({"send", store_, "q", "x", "--tag", "minus"});
  EXPECT_EQ(r.exit_code, 64) << r.err;
}

}  // namespace
