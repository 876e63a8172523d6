#include "log/record.h"

#include <cstring>

#include "util/hash.h"

namespace stoa::log {

namespace {
uint64_t record_sum(const char* rec, uint64_t len) {
  // The checksum field is hashed as zero: hash the parts around it.
  constexpr size_t kAt = offsetof(RecordHeader, checksum);
  uint64_t a = util::checksum64(rec, kAt, 0x4c4f4752);
  return util::checksum64(rec + sizeof(RecordHeader), size_t(len - sizeof(RecordHeader)), a);
}
}  // namespace

uint64_t commit_size(const std::vector<Op>& ops) {
  uint64_t n = sizeof(RecordHeader);
  for (const Op& op : ops) n += sizeof(OpHeader) + op.key.size() + (op.del ? 0 : op.value.size());
  return align8(n);
}

void encode_commit(char* out, uint64_t lsn, uint64_t synced, const std::vector<Op>& ops) {
  const uint64_t len = commit_size(ops);
  RecordHeader h{};
  h.magic = kRecordMagic;
  h.type = uint16_t(RecordType::kCommit);
  h.lsn = lsn;
  h.len = len;
  h.synced = synced;
  h.count = uint32_t(ops.size());
  char* p = out + sizeof(RecordHeader);
  for (const Op& op : ops) {
    OpHeader o{uint32_t(op.key.size()), op.del ? kOpDelete : 0u,
               op.del ? 0 : uint64_t(op.value.size())};
    std::memcpy(p, &o, sizeof(o));
    p += sizeof(o);
    std::memcpy(p, op.key.data(), op.key.size());
    p += op.key.size();
    if (!op.del && !op.value.empty()) {
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
  RecordHeader h{};
  h.magic = kRecordMagic;
  h.type = uint16_t(RecordType::kPadding);
  h.lsn = lsn;
  h.len = len;
  h.synced = synced;
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

bool decode_commit(const char* rec, uint64_t len, std::vector<Op>* ops) {
  RecordHeader h;
  std::memcpy(&h, rec, sizeof(h));
  if (h.len != len || record_sum(rec, len) != h.checksum) return false;
  ops->clear();
  const char* p = rec + sizeof(RecordHeader);
  const char* end = rec + len;
  for (uint32_t i = 0; i < h.count; i++) {
    OpHeader o;
    if (uint64_t(end - p) < sizeof(o)) return false;
    std::memcpy(&o, p, sizeof(o));
    p += sizeof(o);
    // Each length alone is bounded by what is left first: their sum cannot wrap.
    const uint64_t left = uint64_t(end - p);
    const uint64_t vlen = (o.flags & kOpDelete) ? 0 : o.val_len;
    if (o.key_len == 0 || o.key_len > left || vlen > left - o.key_len) return false;
    const uint64_t need = o.key_len + vlen;
    Op op;
    op.key = std::string_view(p, o.key_len);
    op.del = (o.flags & kOpDelete) != 0;
    if (!op.del) op.value = std::string_view(p + o.key_len, size_t(o.val_len));
    ops->push_back(op);
    p += need;
  }
  return uint64_t(end - p) < 8;
}

}  // namespace stoa::log
