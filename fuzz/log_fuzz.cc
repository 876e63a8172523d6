// fuzz/log_fuzz.cc — mutated log segments and checkpoint files fed to a
// lone open that rebuilds the data file from them.
//
// Template (made once per process): a store with kKeys keys, a checkpoint,
// then kCommits commits after it in 64 KiB log segments (several segments,
// one record spanning a segment boundary, deletes), closed cleanly.
//
// Input: byte 0 holds flags, the rest is edits in the patch format of
// fuzz_util.h over regions of the template's checkpoint file (header, block
// headers, 4 KiB windows of the entries, footer) and of its log, seen as one
// stream of segments (every record from the checkpoint on, and the zeroed
// tail after the last).
//   bit 0: recompute the checksums of every record and checkpoint part an
//          edit hit, so edits reach the decoders and replay instead of
//          failing a checksum;
//   bit 1: keep the old data file and its `stoa.sum` (the clean-shutdown
//          mark makes a short log damage, not a torn tail);
//   bit 2: zero the log from the first record an edit hit (a torn tail);
//   bit 3: remove the last segment file;
//   bit 4: remove the checkpoint file.
// Each input runs in a fresh directory: StoreImpl::open(force_rebuild)
// loads the checkpoint (checkpoint.cc), scans and replays the log
// (recovery.cc, log_file.cc, record.cc), cuts it; the rebuilt store is then
// verified (which reads log and checkpoint again), scanned, written to and
// checkpointed. Any outcome is fine except a crash, a hang or a sanitizer
// report.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "api/access.h"
#include "fuzz_util.h"
#include "log/checkpoint.h"
#include "log/log_file.h"
#include "log/record.h"
#include "store/store_impl.h"

namespace stoa::fuzz {
namespace {

constexpr int kKeys = 600;
constexpr int kCommits = 24;

struct Template {
  DirFiles files;  // stoa.data, stoa.sum, stoa.lock, log/...
  KV want;
  std::string checkpoint;             // its name under log/
  std::vector<std::string> segments;  // names under log/, in LSN order
  uint64_t seg = 0;                   // segment size
  std::string stream;                 // the segments, concatenated
  // Region indices: the checkpoint's first, then the stream's.
  std::vector<Region> regions;
  size_t n_checkpoint = 0;
  std::vector<bool> is_record;  // stream regions that start a record
  std::vector<int> ckpt_kind;   // 0 header, 1 block header, 2 entries, 3 footer
};

void fill(Store& store, KV* want) {
  Batch batch(store, want);
  for (int i = 0; i < kKeys; i++) {
    batch.add(template_key(i), template_value(i, 0));
    if (batch.size() == 200) batch.commit();
  }
  batch.commit();
  if (auto c = store.checkpoint(); !c.ok()) die("template checkpoint", c.error());
  for (int c = 1; c <= kCommits; c++) {
    for (int i = c; i < kKeys; i += 13) batch.add(template_key(i), template_value(i, c));
    if (c % 5 == 0) batch.add(template_key(c * 3), "");        // a delete
    if (c == 9) batch.add("big", std::string(70 << 10, 'B'));  // spans a segment end
    batch.commit();
  }
}

// Cuts the checkpoint file and the log stream into regions.
void find_regions(Template* t) {
  const std::string& ck = t->files.at("log/" + t->checkpoint);
  auto add_ckpt = [&](uint64_t at, uint64_t len, int kind) {
    t->regions.push_back({at, len});
    t->ckpt_kind.push_back(kind);
  };
  add_ckpt(0, sizeof(log::CheckpointHeader), 0);
  uint64_t at = sizeof(log::CheckpointHeader);
  while (at + sizeof(log::CheckpointBlock) <= ck.size()) {
    log::CheckpointBlock b;
    std::memcpy(&b, ck.data() + at, sizeof(b));
    if (b.magic != log::kBlockMagic) break;
    add_ckpt(at, sizeof(b), 1);
    for (uint64_t w = 0; w < b.bytes && t->regions.size() < 64; w += 4096) {
      add_ckpt(at + sizeof(b) + w, std::min<uint64_t>(4096, b.bytes - w), 2);
    }
    at += sizeof(b) + b.bytes;
  }
  add_ckpt(at, sizeof(log::CheckpointFooter), 3);
  t->n_checkpoint = t->regions.size();
  t->is_record.assign(t->n_checkpoint, false);
  // Records from the checkpoint's timestamp on (the stream starts at the
  // first segment present).
  log::CheckpointHeader ch;
  std::memcpy(&ch, ck.data(), sizeof(ch));
  const uint64_t base = log::LogFiles::parse_segment(t->segments[0], t->seg) * t->seg;
  uint64_t lsn = ch.ts;
  while (lsn + sizeof(log::RecordHeader) <= base + t->stream.size() && t->regions.size() < 255) {
    log::RecordHeader h;
    std::memcpy(&h, t->stream.data() + (lsn - base), sizeof(h));
    if (!log::header_ok(h, lsn, base + t->stream.size() - lsn)) break;
    t->regions.push_back({lsn - base, h.len});
    t->is_record.push_back(true);
    lsn += h.len;
  }
  t->regions.push_back({lsn - base, 4096});
  t->is_record.push_back(false);
}

const Template& get_template() {
  static const Template t = [] {
    Template t;
    ScratchDir dir("log-template");
    {
      auto s = Store::open(dir.path(), fuzz_options());
      if (!s.ok()) die("template open", s.error());
      fill(**s, &t.want);
    }
    t.files = snapshot_dir(dir.path());
    t.seg = fuzz_options().log_segment_size;
    for (const auto& [name, bytes] : t.files) {
      if (name.rfind("log/", 0) != 0) continue;
      const std::string base = name.substr(4);
      if (internal::parse_checkpoint_name(base)) t.checkpoint = base;
      if (log::LogFiles::parse_segment(base, t.seg) >= 0) t.segments.push_back(base);
    }
    if (t.checkpoint.empty() || t.segments.size() < 3) {
      std::fprintf(stderr, "fuzz: the log template has %zu segments\n", t.segments.size());
      std::abort();
    }
    for (size_t i = 0; i < t.segments.size(); i++) {
      const int64_t want = log::LogFiles::parse_segment(t.segments[0], t.seg) + int64_t(i);
      if (log::LogFiles::parse_segment(t.segments[i], t.seg) != want) std::abort();
      t.stream += t.files.at("log/" + t.segments[i]);
    }
    find_regions(&t);
    if (verbose()) {
      std::fprintf(stderr, "template: %zu segments, checkpoint %zu bytes, %zu regions\n",
                   t.segments.size(), t.files.at("log/" + t.checkpoint).size(), t.regions.size());
    }
    return t;
  }();
  return t;
}

// Makes the checkpoint part that region r covers check out again.
void fix_checkpoint(const Template& t, size_t r, std::string* ck) {
  const Region& g = t.regions[r];
  if (t.ckpt_kind[r] == 0 || t.ckpt_kind[r] == 3) {
    if (t.ckpt_kind[r] == 0) {
      log::CheckpointHeader h;
      std::memcpy(&h, ck->data(), sizeof(h));
      fix_struct_checksum(&h);
      std::memcpy(ck->data(), &h, sizeof(h));
    } else if (g.at + sizeof(log::CheckpointFooter) <= ck->size()) {
      log::CheckpointFooter f;
      std::memcpy(&f, ck->data() + g.at, sizeof(f));
      fix_struct_checksum(&f);
      std::memcpy(ck->data() + g.at, &f, sizeof(f));
    }
    return;
  }
  // A block's header or entries: find the block holding them.
  size_t b = r;
  while (b > 0 && t.ckpt_kind[b] != 1) b--;
  const uint64_t at = t.regions[b].at;
  log::CheckpointBlock h;
  std::memcpy(&h, ck->data() + at, sizeof(h));
  if (h.bytes > ck->size() - at - sizeof(h)) return;
  h.checksum = checkpoint_block_sum(ck->data() + at + sizeof(h), h.bytes, h.index);
  std::memcpy(ck->data() + at, &h, sizeof(h));
}

// Makes the record that region r starts check out again.
void fix_record(const Region& g, std::string* stream) {
  log::RecordHeader h;
  if (g.at + sizeof(h) > stream->size()) return;
  std::memcpy(&h, stream->data() + g.at, sizeof(h));
  const uint64_t len = h.type == uint16_t(log::RecordType::kPadding) ? sizeof(h) : h.len;
  if (len < sizeof(h) || len > stream->size() - g.at) return;
  fix_record_checksum(stream->data() + g.at, len);
}

}  // namespace

std::vector<Seed> fuzz_seeds() {
  std::vector<Seed> seeds;
  for (uint8_t flags : {0, 1, 2}) seeds.push_back({std::string(1, char(flags)), true});
  // Small edits: the checkpoint header, block, footer; early, middle and
  // late records (checksums fixed or not); a torn tail; a lost segment.
  const uint8_t kinds[][2] = {{1, 0},  {1, 1},  {1, 2}, {0, 40}, {1, 40},
                              {1, 60}, {5, 55}, {8, 0}, {16, 0}, {3, 58}};
  for (const auto& k : kinds) seeds.push_back(edit_seed(k[0], k[1], 0x30, 4));
  return seeds;
}

}  // namespace stoa::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* in, size_t size) {
  using namespace stoa;
  using namespace stoa::fuzz;
  const Template& t = get_template();
  Outcome& out = new_outcome();
  if (size == 0) return 0;
  const uint8_t flags = in[0];
  DirFiles files = t.files;
  std::string& ck = files["log/" + t.checkpoint];
  std::string stream = t.stream;
  std::vector<size_t> hit;
  for_each_edit(in + 1, size - 1, t.regions.size(),
                [&](size_t r, uint32_t off, const uint8_t* b, size_t n) {
                  xor_into(r < t.n_checkpoint ? &ck : &stream, t.regions[r], off, b, n);
                  hit.push_back(r);
                });
  size_t first_record = SIZE_MAX;
  for (size_t r : hit) {
    if (r >= t.n_checkpoint && t.is_record[r]) first_record = std::min(first_record, r);
    if (!(flags & 1)) continue;
    if (r < t.n_checkpoint) fix_checkpoint(t, r, &ck);
    if (r >= t.n_checkpoint && t.is_record[r]) fix_record(t.regions[r], &stream);
  }
  if ((flags & 4) && first_record != SIZE_MAX) {
    const uint64_t at = t.regions[first_record].at;
    std::fill(stream.begin() + int64_t(at), stream.end(), '\0');
  }
  for (size_t i = 0; i < t.segments.size(); i++) {
    files["log/" + t.segments[i]] = stream.substr(i * t.seg, t.seg);
  }
  if (flags & 8) files.erase("log/" + t.segments.back());
  if (flags & 16) files.erase("log/" + t.checkpoint);
  files.erase(internal::kLockFileName);
  if (!(flags & 2)) {
    files.erase(internal::kDataFileName);
    files.erase(internal::kSumFileName);
  }

  ScratchDir dir("log");
  restore_dir(dir.path(), files);
  Options o = fuzz_options();
  o.create_if_missing = false;
  auto impl = internal::StoreImpl::open(dir.path(), o, /*force_rebuild=*/true);
  if (!impl.ok()) {
    note_error(&out, impl.error());
    return 0;
  }
  std::unique_ptr<Store> s = internal::StoreAccess::wrap(std::move(*impl));
  note_open(*s, &out);
  exercise_store(*s, t.want, /*checkpoint=*/true, &out);
  return 0;
}
