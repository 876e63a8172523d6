// index/version_chain.h — the one reader of a key's version chain: the
// versions of a record (index/layout.h), newest first, linked by `next`.
//
// Every offset taken from the file is checked with Region::reach before it
// is followed, and a chain must end within kMaxChain links (timestamps fall
// strictly along a sound chain, so only a damaged, cyclic one is longer):
// a bad link is kCorrupt naming its offset, never a fault or a wild read.
// Callers: reads at a snapshot (Btree::version_at, so the cursor, get() and
// the checkpoint), commit validation and retry (head timestamps), trimming,
// recovery's replay (apply), and verify.
//
// Checksums (layout.h says what each covers): key_hash() seeds all of
// them; head_ok() is one multiply-mix per version, value_sum() one XXH3 pass
// over the value. check_value() is what a read runs on the version it returns.
//
// Thread safety: a reader holds only a Region reference; any number may
// run concurrently. Following `next` needs what every reader needs: the
// session pinned to a cycle (versions are retired, never freed in place),
// or the store held alone. Only the record's lock holder changes a chain.
#ifndef STOA_INDEX_VERSION_CHAIN_H_
#define STOA_INDEX_VERSION_CHAIN_H_

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "index/layout.h"
#include "region/region.h"
#include "stoa/result.h"
#include "util/hash.h"

namespace stoa::index {

class VersionChain {
 public:
  static constexpr uint32_t kMaxChain = 1u << 24;

  explicit VersionChain(region::Region& r) : r_(&r) {}

  // The version at `v` when it lies inside the file, else nullptr.
  const Version* at(Offset v) const {
    if (!r_->reach(v, sizeof(Version))) return nullptr;
    return reinterpret_cast<const Version*>(r_->ro(v));
  }
  // The commit timestamp of the version at `v`; 0 when `v` cannot name one
  // (a damaged head reads as "unchanged"; reads of the key report it).
  uint64_t ts_of(Offset v) const {
    const Version* ver = at(v);
    return ver != nullptr ? ver->ts : 0;
  }
  static bool tombstone(const Version& ver) { return (ver.len & kTombstone) != 0; }

  // The seed of every checksum of a key's record and versions; its low 32
  // bits are KeyRecord::key_sum.
  static uint64_t key_hash(std::string_view key) {
    return util::checksum64(key.data(), key.size(), kKeySeed);
  }
  // head_sum = head_base(...) ^ ts_part(ts): the part known when the version
  // is made, and the part its commit adds when it stamps the timestamp.
  static uint32_t head_base(uint64_t kh, uint64_t len, uint64_t blob) {
    return uint32_t(util::mix64(len, blob, kh));
  }
  static uint32_t ts_part(uint64_t ts) { return uint32_t(util::mix64(ts, kTsSeed, kTsSeed)); }
  static uint32_t value_sum(uint64_t kh, std::string_view value) {
    return uint32_t(util::checksum64(value.data(), value.size(), kh ^ kValueSeed));
  }
  static bool head_ok(const Version& ver, uint64_t kh) {
    return ver.head_sum == (head_base(kh, ver.len, ver.blob) ^ ts_part(ver.ts));
  }

  // What a read checks on the version `ver` at `v` of the key hashing to
  // `kh` (named by `key` in errors), past its head sum (checked as the
  // chain is walked): its value lies inside the file, and the value's sum
  // holds, for inline values always and for blob values when `large` is
  // set. On success *value is the value (empty for a tombstone).
  // kCorrupt naming the key and the offset.
  Status check_value(Offset v, const Version& ver, std::string_view key, uint64_t kh, bool large,
                     std::string_view* value) const {
    if (tombstone(ver)) {
      *value = {};
      return {};
    }
    STOA_ASSIGN(*value, bytes(v, ver));
    if ((ver.blob == 0 || large) && value_sum(kh, *value) != ver.value_sum) {
      return bad_sum(v, key, "value");
    }
    return {};
  }
  // kCorrupt: the version at `v` of `key` fails the checksum of `what`.
  Error bad_sum(Offset v, std::string_view key, std::string_view what) const {
    return Error(Code::kCorrupt,
                 fmt::format("{}: the version at offset {} of key {} fails its {} checksum",
                             r_->path(), v, printable(key), what));
  }
  // A key for a message: printable ASCII as it is, other bytes as \xNN,
  // at most 64 bytes, quoted.
  static std::string printable(std::string_view key) {
    std::string out = "\"";
    for (size_t i = 0; i < key.size() && i < 64; i++) {
      const unsigned char c = static_cast<unsigned char>(key[i]);
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
        out += char(c);
      } else {
        out += fmt::format("\\x{:02x}", c);
      }
    }
    if (key.size() > 64) out += "...";
    return out + "\"";
  }

  // Calls fn(offset, version) for each version from `head` on, newest
  // first, until fn returns false or the chain ends. `next` is read before
  // fn runs, so fn may retire the version it is given. kCorrupt when a link
  // lies outside the file or the chain does not end.
  template <typename Fn>
  Status walk(Offset head, Fn&& fn) const {
    Offset v = head;
    for (uint32_t depth = 0; v != 0; depth++) {
      const Version* ver = depth < kMaxChain ? at(v) : nullptr;
      if (ver == nullptr) return bad_link(v, depth);
      const Offset next = ver->next.load(std::memory_order_acquire);
      if (!fn(v, *ver)) return {};
      v = next;
    }
    return {};
  }

  // The newest version from `head` on with a timestamp at or below `ts`;
  // 0 when there is none.
  Result<Offset> newest_at(Offset head, uint64_t ts) const {
    Offset found = 0;
    STOA_TRY(walk(head, [&](Offset v, const Version& ver) {
      if (ver.ts > ts) return true;
      found = v;
      return false;
    }));
    return found;
  }

  // The value bytes of the version at `v`, checked to lie inside the file
  // (inline after the version, or in its own block).
  Result<std::string_view> value(Offset v) const {
    const Version* ver = at(v);
    if (ver == nullptr) return bad_link(v, 0);
    return bytes(v, *ver);
  }

 private:
  // The value bytes of version `ver` at `v`, if they lie inside the file.
  Result<std::string_view> bytes(Offset v, const Version& ver) const {
    const uint64_t len = ver.len & ~kTombstone;
    const Offset src = ver.blob != 0 ? ver.blob : v + sizeof(Version);
    if (!r_->reach(src, len)) {
      return Error(Code::kCorrupt,
                   fmt::format("{}: the value of the version at offset {} ({} bytes at offset "
                               "{}) lies outside the file",
                               r_->path(), v, len, src));
    }
    return std::string_view(r_->ro(src), size_t(len));
  }
  Error bad_link(Offset v, uint32_t depth) const {
    if (depth >= kMaxChain) {
      return Error(Code::kCorrupt,
                   fmt::format("{}: a version chain does not end (at offset {})", r_->path(), v));
    }
    return Error(Code::kCorrupt, fmt::format("{}: a version link names offset {}, outside the file",
                                             r_->path(), v));
  }

  static constexpr uint64_t kKeySeed = 0x5354'4f41'4b45'5931ull;    // "STOAKEY1"
  static constexpr uint64_t kTsSeed = 0x5354'4f41'5453'3031ull;     // "STOATS01"
  static constexpr uint64_t kValueSeed = 0x5354'4f41'5641'4c31ull;  // "STOAVAL1"

  region::Region* r_;
};

}  // namespace stoa::index

#endif  // STOA_INDEX_VERSION_CHAIN_H_
