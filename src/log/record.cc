#include "log/record.h"

#include <cstring>

#include <fmt/format.h>

#include "util/hash.h"

namespace stoa::log {

namespace {
uint64_t record_sum(const char* rec, uint64_t len) {
  // The checksum field is hashed as zero: hash the parts around it.
  constexpr size_t kAt = offsetof(RecordHeader, checksum);
  uint64_t a = util::checksum64(rec, kAt, 0x4c4f4752);
  return util::checksum64(rec + sizeof(RecordHeader), size_t(len - sizeof(RecordHeader)), a);
}

Error corrupt(uint64_t lsn, std::string_view what) {
  return Error(Code::kCorrupt, fmt::format("log record at {}: {}", lsn, what));
}
}  // namespace

std::string kind_name(OpKind k) {
  switch (k) {
    case OpKind::kPut:
      return "put";
    case OpKind::kDelete:
      return "delete";
  }
  return fmt::format("kind {}", uint32_t(k));
}

uint64_t commit_size(const std::vector<Op>& ops) {
  uint64_t n = sizeof(RecordHeader);
  for (const Op& op : ops)
    n += sizeof(OpHeader) + op.key.size() + (has_value(op.kind) ? op.value.size() : 0);
  return align8(n);
}

namespace {
RecordHeader header(RecordType type, uint64_t lsn, uint64_t len, uint64_t synced) {
  RecordHeader h{};
  h.magic = kRecordMagic;
  h.type = uint16_t(type);
  h.lsn = lsn;
  h.len = len;
  h.synced = synced;
  return h;
}
}  // namespace

void encode_commit(char* out, uint64_t lsn, uint64_t synced, const std::vector<Op>& ops) {
  const uint64_t len = commit_size(ops);
  RecordHeader h = header(RecordType::kCommit, lsn, len, synced);
  h.count = uint32_t(ops.size());
  char* p = out + sizeof(RecordHeader);
  for (const Op& op : ops) {
    const bool value = has_value(op.kind);
    OpHeader o{uint32_t(op.key.size()), uint32_t(op.kind), value ? uint64_t(op.value.size()) : 0};
    std::memcpy(p, &o, sizeof(o));
    p += sizeof(o);
    std::memcpy(p, op.key.data(), op.key.size());
    p += op.key.size();
    if (value && !op.value.empty()) {
      std::memcpy(p, op.value.data(), op.value.size());
      p += op.value.size();
    }
  }
  std::memset(p, 0, size_t(out + len - p));
  std::memcpy(out, &h, sizeof(h));
  h.checksum = record_sum(out, len);
  std::memcpy(out, &h, sizeof(h));
}

RecordHeader padding(uint64_t lsn, uint64_t len, uint64_t synced) {
  RecordHeader h = header(RecordType::kPadding, lsn, len, synced);
  h.checksum = record_sum(reinterpret_cast<const char*>(&h), sizeof(h));
  return h;
}

bool header_ok(const RecordHeader& h, uint64_t lsn, uint64_t max_len) {
  if (h.magic != kRecordMagic || h.lsn != lsn || h.len < sizeof(RecordHeader) || h.len % 8 != 0 ||
      h.len > max_len || h.synced > lsn + h.len) {
    return false;
  }
  if (h.type == uint16_t(RecordType::kPadding)) {
    return record_sum(reinterpret_cast<const char*>(&h), sizeof(h)) == h.checksum;
  }
  return h.type == uint16_t(RecordType::kCommit);
}

bool commit_sum_ok(const char* rec, uint64_t len) {
  RecordHeader h;
  std::memcpy(&h, rec, sizeof(h));
  return h.len == len && record_sum(rec, len) == h.checksum;
}

Status decode_commit(const char* rec, uint64_t len, uint64_t lsn, std::vector<Op>* ops) {
  ops->clear();
  if (len < sizeof(RecordHeader)) return corrupt(lsn, fmt::format("{} bytes is no record", len));
  RecordHeader h;
  std::memcpy(&h, rec, sizeof(h));
  if (!header_ok(h, lsn, len) || h.type != uint16_t(RecordType::kCommit)) {
    return corrupt(lsn, "bad commit record header");
  }
  if (h.len != len) return corrupt(lsn, fmt::format("{} bytes of a {}-byte record", len, h.len));
  if (record_sum(rec, len) != h.checksum) return corrupt(lsn, "checksum mismatch");
  const char* p = rec + sizeof(RecordHeader);
  const char* end = rec + len;
  for (uint32_t i = 0; i < h.count; i++) {
    OpHeader o;
    if (uint64_t(end - p) < sizeof(o)) return corrupt(lsn, fmt::format("op {} overruns", i));
    std::memcpy(&o, p, sizeof(o));
    p += sizeof(o);
    if (o.kind >= kOpKindCount) {
      return corrupt(lsn, fmt::format("op {} has unknown kind {}", i, o.kind));
    }
    const OpKind kind = OpKind(o.kind);
    // Each length alone is bounded by what is left first: their sum cannot wrap.
    const uint64_t left = uint64_t(end - p);
    const uint64_t vlen = has_value(kind) ? o.val_len : 0;
    if (o.key_len == 0 || o.key_len > left || vlen > left - o.key_len) {
      return corrupt(lsn, fmt::format("op {} overruns", i));
    }
    ops->push_back(
        Op{std::string_view(p, o.key_len), std::string_view(p + o.key_len, size_t(vlen)), kind});
    p += o.key_len + vlen;
  }
  if (uint64_t(end - p) >= 8) return corrupt(lsn, "bytes after its last op");
  return {};
}

}  // namespace stoa::log
