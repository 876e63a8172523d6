// fuzz/record_fuzz.cc — the log record codec (log/record.cc) on arbitrary
// bytes, with a round-trip oracle.
//
// Input: byte 0 holds flags, the rest is one record as it would lie in a log
// segment.
//   bit 0: make the header plausible first (magic, type, len = the input's
//          length rounded down to 8) and recompute the checksum, so the
//          bytes reach the op decoder instead of failing the checksum;
//   bit 1: with bit 0, make it a padding record instead of a commit.
// header_ok() at the record's own LSN, then decode_commit(). When a commit
// decodes, encode_commit() of its ops must give the same bytes as the input
// once the fields the decoder ignores are made canonical (header flags and
// reserved word, a delete's value length,
// the padding after the last op), and must decode to the same ops; a
// padding header must survive padding(). A mismatch aborts. Reaches
// header_ok, decode_commit, commit_size, encode_commit and padding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "log/layout.h"
#include "log/record.h"

namespace stoa::fuzz {
namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "record_fuzz: round trip failed: %s\n", what);
  std::abort();
}

bool same_ops(const std::vector<log::Op>& a, const std::vector<log::Op>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (a[i].key != b[i].key || a[i].kind != b[i].kind || a[i].value != b[i].value) return false;
  }
  return true;
}

// The record as the encoder would write it: ignored fields zeroed, the
// checksum recomputed.
std::string canonical(std::string rec, const std::vector<log::Op>& ops) {
  log::RecordHeader h;
  std::memcpy(&h, rec.data(), sizeof(h));
  h.flags = 0;
  h.reserved = 0;
  std::memcpy(rec.data(), &h, sizeof(h));
  size_t p = sizeof(log::RecordHeader);
  for (const log::Op& op : ops) {  // op headers are not aligned: copy them
    log::OpHeader o;
    std::memcpy(&o, rec.data() + p, sizeof(o));
    if (!log::has_value(op.kind)) o.val_len = 0;
    std::memcpy(rec.data() + p, &o, sizeof(o));
    p += sizeof(o) + op.key.size() + (log::has_value(op.kind) ? op.value.size() : 0);
  }
  std::memset(rec.data() + p, 0, rec.size() - p);
  fix_record_checksum(rec.data(), rec.size());
  return rec;
}

void round_trip_commit(const std::string& rec, const log::RecordHeader& h,
                       const std::vector<log::Op>& ops) {
  if (log::commit_size(ops) != h.len) fail("commit_size differs from the decoded length");
  std::string out(size_t(h.len), '\0');
  log::encode_commit(out.data(), h.lsn, h.synced, ops);
  if (out != canonical(rec, ops)) fail("re-encoded bytes differ from the input");
  log::RecordHeader h2;
  std::memcpy(&h2, out.data(), sizeof(h2));
  if (!log::header_ok(h2, h.lsn, h.len)) fail("re-encoded header fails header_ok");
  std::vector<log::Op> again;
  if (!log::decode_commit(out.data(), h2.len, h.lsn, &again).ok())
    fail("re-encoded record does not decode");
  if (!same_ops(ops, again)) fail("re-encoded record decodes to other ops");
}

void round_trip_padding(const log::RecordHeader& h) {
  const log::RecordHeader p = log::padding(h.lsn, h.len, h.synced);
  if (!log::header_ok(p, h.lsn, h.len)) fail("padding() header fails header_ok");
  if (p.lsn != h.lsn || p.len != h.len || p.synced != h.synced) fail("padding() fields differ");
}

}  // namespace

std::vector<Seed> fuzz_seeds() {
  static const std::string kLong(300, 'x');  // Ops are views: it must outlive them
  const std::vector<std::vector<log::Op>> sets = {
      {{"k", "v", log::OpKind::kPut}},
      {{"key-000001", "value", log::OpKind::kPut}, {"gone", "", log::OpKind::kDelete}},
      {{"empty", "", log::OpKind::kPut},
       {"x", kLong, log::OpKind::kPut},
       {"d", "", log::OpKind::kDelete}},
      {{"a", "1", log::OpKind::kPut},
       {"b", "22", log::OpKind::kPut},
       {"c", "333", log::OpKind::kPut},
       {"e", "4444", log::OpKind::kPut}},
  };
  std::vector<Seed> seeds;
  uint64_t lsn = 4096;
  for (const auto& ops : sets) {
    std::string rec(size_t(log::commit_size(ops)), '\0');
    log::encode_commit(rec.data(), lsn, lsn / 2, ops);
    seeds.push_back({std::string(1, '\0') + rec, true});
    lsn += rec.size();
  }
  // The header only (bit 0 and 1 make a padding record of it); and junk.
  seeds.push_back({std::string(1, '\3') + seeds[0].bytes.substr(1, 48), false});
  seeds.push_back({std::string(1, '\1') + std::string(64, '\x5a'), false});
  return seeds;
}

}  // namespace stoa::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* in, size_t size) {
  using namespace stoa;
  using namespace stoa::fuzz;
  Outcome& out = new_outcome();
  if (size < 1 + sizeof(log::RecordHeader)) return 0;
  const uint8_t flags = in[0];
  std::string rec(reinterpret_cast<const char*>(in + 1), size - 1);
  log::RecordHeader h;
  if (flags & 1) {
    rec.resize(rec.size() & ~size_t{7});
    std::memcpy(&h, rec.data(), sizeof(h));
    h.magic = log::kRecordMagic;
    h.type = uint16_t((flags & 2) ? log::RecordType::kPadding : log::RecordType::kCommit);
    h.len = (flags & 2) ? sizeof(h) : rec.size();
    if (h.synced > h.lsn + h.len) h.synced = h.lsn;
    std::memcpy(rec.data(), &h, sizeof(h));
    fix_record_checksum(rec.data(), h.len);
  }
  std::memcpy(&h, rec.data(), sizeof(h));
  if (!log::header_ok(h, h.lsn, rec.size())) return 0;
  if (h.type == uint16_t(log::RecordType::kPadding)) {
    round_trip_padding(h);
    return 0;
  }
  rec.resize(size_t(h.len));
  std::vector<log::Op> ops;
  out.decoded = log::decode_commit(rec.data(), h.len, h.lsn, &ops).ok();
  if (out.decoded) round_trip_commit(rec, h, ops);
  return 0;
}
