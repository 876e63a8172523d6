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

struct Op {
  std::string_view key;
  std::string_view value;
  bool del = false;
};

// Bytes a commit record of these ops takes (header, ops, padding to 8).
uint64_t commit_size(const std::vector<Op>& ops);
// Writes a commit record of exactly commit_size(ops) bytes into `out`.
void encode_commit(char* out, uint64_t lsn, uint64_t synced, const std::vector<Op>& ops);
// A padding record header for the reservation [lsn, lsn+len).
RecordHeader padding(uint64_t lsn, uint64_t len, uint64_t synced);

// Checks a header read at `lsn`: magic, type, position, length bounds and,
// for padding, the checksum. false when it is not a record that starts here.
bool header_ok(const RecordHeader& h, uint64_t lsn, uint64_t max_len);
// Checks a whole commit record (header already passed header_ok) and
// decodes its ops, which point into `rec`. false on a checksum or shape error.
bool decode_commit(const char* rec, uint64_t len, std::vector<Op>* ops);

}  // namespace stoa::log

#endif  // STOA_LOG_RECORD_H_
