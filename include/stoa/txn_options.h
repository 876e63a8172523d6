// stoa/txn_options.h — how a transaction runs: isolation, read-only, the
// retry policy of Session::transact, the order of a scan, and the key and
// value size limits. Plain vocabulary shared by the public API (stoa/txn.h)
// and the transaction layer below it.
//
// Thread safety: plain value types and constants.
#ifndef STOA_TXN_OPTIONS_H_
#define STOA_TXN_OPTIONS_H_

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace stoa {

enum class Isolation : uint8_t { kSerializable, kSnapshot };

struct TxnOptions {
  Isolation isolation = Isolation::kSerializable;
  // A read-only transaction keeps no read set and cannot write (puts return
  // kInvalidArgument).
  bool read_only = false;
  // Every read checks the checksums of the version it returns (and of each
  // version it walks past), and the value's own sum when the value is
  // inline (at most 2 KiB); a mismatch is kCorrupt naming key and offset.
  // Set this to check the sum of larger values on every read too (one
  // pass over the value); Store::verify() and checkpoints always do.
  bool check_large_values = false;
};

struct TransactOptions {
  TxnOptions txn;
  // How many times transact() runs the function when commit conflicts.
  uint32_t max_attempts = 100;
  // Backoff between attempts: random in [0, base * 2^attempt), capped.
  std::chrono::microseconds backoff_base{20};
  std::chrono::microseconds backoff_cap{20000};
  // Txn::retry() waits at most this long for a read key to change.
  std::chrono::milliseconds retry_timeout{1000};
};

inline constexpr size_t kMaxKeySize = 1024;
inline constexpr uint64_t kMaxValueSize = uint64_t{1} << 32;  // 4 GiB

// The order a cursor walks its range in.
enum class ScanOrder : uint8_t { kForward, kReverse };

}  // namespace stoa

#endif  // STOA_TXN_OPTIONS_H_
