// log/record.h — encoding and checking log records (layout.h has the bytes).
//
// Thread safety: pure functions over caller-owned buffers.
#ifndef STOA_LOG_RECORD_H_
#define STOA_LOG_RECORD_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "log/layout.h"
#include "stoa/result.h"

namespace stoa::log {

// One op of a commit: its kind says what the key and value mean (a put's
// value, nothing for a delete, a later layer's operand).
struct Op {
  std::string_view key;
  std::string_view value;  // empty for kDelete
  OpKind kind = OpKind::kPut;
};

// Whether ops of this kind carry value bytes (every kind but kDelete).
inline constexpr bool has_value(OpKind k) { return k != OpKind::kDelete; }
// "put", "delete", or "kind N" for one this build does not know.
std::string kind_name(OpKind k);

// Bytes a commit record of these ops takes (header, ops, padding to 8).
uint64_t commit_size(const std::vector<Op>& ops);
// Writes a commit record of exactly commit_size(ops) bytes into `out`.
void encode_commit(char* out, uint64_t lsn, uint64_t synced, const std::vector<Op>& ops);
// A padding record header for the reservation [lsn, lsn+len).
RecordHeader padding(uint64_t lsn, uint64_t len, uint64_t synced);

// Checks a header read at `lsn`: magic, type, position, length bounds and,
// for padding, the checksum. false when it is not a record that starts here.
bool header_ok(const RecordHeader& h, uint64_t lsn, uint64_t max_len);
// Whether the checksum of the whole commit record `rec` of `len` bytes
// (its header passed header_ok) matches. false: torn or damaged bytes.
bool commit_sum_ok(const char* rec, uint64_t len);
// Checks the whole commit record `rec` of `len` bytes read at `lsn`
// (header, length, checksum, each op's shape and kind) and decodes its ops,
// which point into `rec`. kCorrupt naming `lsn` and what fails.
Status decode_commit(const char* rec, uint64_t len, uint64_t lsn, std::vector<Op>* ops);

}  // namespace stoa::log

#endif  // STOA_LOG_RECORD_H_
