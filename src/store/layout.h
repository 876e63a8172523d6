// store/layout.h — the roots table and the layout word of the data file:
// where each layer's root struct lives in the roots page, and one word that
// folds the size and alignment of every struct the data file holds.
//
// The roots page (region::kRootsOffset, one page) holds one root per layer
// that keeps store-wide state in the data file:
//
//   offset  size   owner  struct
//   0       1024   index  index::IndexHeader (tree root, key count; the
//                         MVCC clock next_ts/visible_ts/low_water with it)
//   1024    1024   log    log::LogHeader (segment size, synced and
//                         checkpoint marks)
//   2048    2048   msg    msg::MsgRoot (the mailbox directory's lock and
//                         offset)
//
// A layer receives a pointer to its root from the store (Btree, LogContext),
// never computes the offset itself. Adding a root is one row here and one
// static_assert.
//
// kDataLayoutWord is written into the data file's header at creation and
// compared at every open (region.cc): a build whose structs differ refuses
// the file with kVersionMismatch instead of misreading it (LMDB's
// MDB_DATA_FORMAT). The lock file has its own word (session/layout.h).
//
// Thread safety: constants only.
#ifndef STOA_STORE_LAYOUT_H_
#define STOA_STORE_LAYOUT_H_

#include <cstdint>

#include "index/layout.h"
#include "log/layout.h"
#include "msg/layout.h"
#include "region/layout.h"
#include "txn/layout.h"

namespace stoa::internal {

inline constexpr uint64_t kIndexRootOffset = region::kRootsOffset;
inline constexpr uint64_t kIndexRootBytes = 1024;
inline constexpr uint64_t kLogRootOffset = region::kRootsOffset + 1024;
inline constexpr uint64_t kLogRootBytes = 1024;
inline constexpr uint64_t kMsgRootOffset = region::kRootsOffset + 2048;
inline constexpr uint64_t kMsgRootBytes = region::kRootsOffset + region::kPageSize - kMsgRootOffset;

static_assert(sizeof(index::IndexHeader) <= kIndexRootBytes);
static_assert(kIndexRootOffset + kIndexRootBytes <= kLogRootOffset);
static_assert(sizeof(log::LogHeader) <= kLogRootBytes);
static_assert(kLogRootOffset + kLogRootBytes <= kMsgRootOffset);
static_assert(sizeof(msg::MsgRoot) <= kMsgRootBytes);
static_assert(kMsgRootOffset + kMsgRootBytes <= region::kRootsOffset + region::kPageSize);
static_assert(kIndexRootOffset % alignof(index::IndexHeader) == 0 &&
              kLogRootOffset % alignof(log::LogHeader) == 0 &&
              kMsgRootOffset % alignof(msg::MsgRoot) == 0);

namespace layout_detail {
// Folds a struct's size and alignment into a word, position by position.
constexpr uint64_t fold(uint64_t word, uint64_t size, uint64_t align, int shift) {
  const uint64_t term = (size << 6) ^ align;
  return word ^ (term << (shift % 64)) ^ (term >> ((64 - shift % 64) % 64));
}
}  // namespace layout_detail

inline constexpr uint64_t kDataLayoutWord = [] {
  using layout_detail::fold;
  uint64_t w = region::kRegionLayoutWord;
  w = fold(w, sizeof(index::IndexHeader), alignof(index::IndexHeader), 3);
  w = fold(w, sizeof(index::Node), alignof(index::Node), 11);
  w = fold(w, sizeof(index::KeyRecord), alignof(index::KeyRecord), 19);
  w = fold(w, sizeof(index::Version), alignof(index::Version), 27);
  w = fold(w, index::kFan, index::kMaxDepth, 35);
  w = fold(w, sizeof(log::LogHeader), alignof(log::LogHeader), 43);
  w = fold(w, kLogRootOffset - region::kRootsOffset, kIndexRootBytes, 51);
  w = fold(w, sizeof(txn::CommitPair), alignof(txn::CommitPair), 59);
  w = fold(w, sizeof(msg::MsgRoot), kMsgRootOffset - region::kRootsOffset, 7);
  w = fold(w, sizeof(msg::Mailbox), sizeof(msg::MsgHeader), 15);
  w = fold(w, sizeof(msg::Directory), msg::kMaxMailboxes, 23);
  return w;
}();

}  // namespace stoa::internal

#endif  // STOA_STORE_LAYOUT_H_
