// tests/msg_test_util.h — what the messaging suites (msg_test.cc,
// channel_test.cc) share: a store without background threads, because their
// cross-process tests fork from the test process (TSan cannot follow a fork
// of a process that has threads), opened or failed in one line.
#ifndef STOA_TESTS_MSG_TEST_UTIL_H_
#define STOA_TESTS_MSG_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "stoa/store.h"
#include "test_util.h"

namespace stoa::test {

inline Options msg_opts() {
  Options o;
  o.create_if_missing = true;
  o.durability = Durability::kNone;
  o.watchdog_interval = std::chrono::milliseconds(0);  // children fork from this process (TSan)
  o.log_threads = false;
  return o;
}

inline std::unique_ptr<Store> open_msg_store(const std::string& path) {
  auto s = Store::open(path, msg_opts());
  EXPECT_TRUE(s.ok()) << err(s);
  return s.ok() ? std::move(*s) : nullptr;
}

}  // namespace stoa::test

#endif  // STOA_TESTS_MSG_TEST_UTIL_H_
