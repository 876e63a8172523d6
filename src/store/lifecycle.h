// store/lifecycle.h — each layer's part in the life of a session slot, in
// one ordered table (store/lifecycle.cc).
//
// A layer that keeps state in a session slot (or reports on the shared
// roots) adds one entry to kLayers; the store never calls a layer's
// recovery, reset, verify or stats by hand. The table's order is the
// recovery order, top layer first:
//
//   txn    a dead owner's commit is rolled forward or undone (its log range
//          settled on the way), before anything below frees memory that a
//          rolled-forward version still needs;
//   log    nothing of its own in the slot (the txn hook settles a dead
//          commit's log range in its place in that protocol); its figures
//          and checks;
//   cycle  the dead owner's pin and purgatory;
//   heap   the dead owner's cached, private and retired blocks, adopted by
//          the session that reclaims the slot (retired ones wait in its
//          purgatory).
//
// Phases, each run over the table in order:
//   recover_dead  before the slot is reset: finish or undo the dead owner's
//                 work (reads the slot as the owner left it);
//   reset_slot    the layer's part of the slot back to empty;
//   adopt_dead    after the reset, into the heir (the new owner of the slot):
//                 what the dead owner still held;
//   stats/verify  what `stoa stat` and `stoa verify` show of the layer.
// Each hook is idempotent: a recoverer that dies part-way leaves the slot
// kRecovering and the next claimer runs every phase again.
//
// Thread safety: the hooks run under the caller's claim of the slot (its
// OFD byte held); stats and verify only read.
#ifndef STOA_STORE_LIFECYCLE_H_
#define STOA_STORE_LIFECYCLE_H_

#include <cstdint>
#include <span>

#include "session/layout.h"
#include "stoa/result.h"

namespace stoa {
struct StoreStats;
struct SessionInfo;
struct VerifyReport;
}  // namespace stoa

namespace stoa::internal {

class StoreImpl;
class SessionCore;

// A slot whose owner died (or whose recoverer died part-way).
struct DeadSlot {
  uint32_t slot;
  session::SessionSlot* sl;
  uint32_t first_gen;  // the original owner's generation
  uint32_t last_gen;   // the last (dead) claimer's: first_gen when no recoverer died
};

struct LayerHooks {
  const char* name;
  void (*recover_dead)(StoreImpl& s, const DeadSlot& d);
  void (*reset_slot)(StoreImpl& s, session::SessionSlot* sl);
  Status (*adopt_dead)(StoreImpl& s, const DeadSlot& d, SessionCore& heir);
  // The store-wide figures of the layer.
  void (*stats)(StoreImpl& s, StoreStats& out);
  // What the layer shows of one occupied slot.
  void (*slot_stats)(StoreImpl& s, const session::SessionSlot* sl, SessionInfo& out);
  // The layer's checks; problems are appended to out.problems.
  void (*verify)(StoreImpl& s, VerifyReport& out);
};

// The layers, in recovery order (top first).
std::span<const LayerHooks> layers();

// Runs one phase over every layer, in order. adopt_dead stops at the first
// error (the slot stays kRecovering; verify names the damage).
void recover_dead_slot(StoreImpl& s, const DeadSlot& d);
void reset_slot(StoreImpl& s, session::SessionSlot* sl);
Status adopt_dead_slot(StoreImpl& s, const DeadSlot& d, SessionCore& heir);
void layer_stats(StoreImpl& s, StoreStats& out);
void layer_slot_stats(StoreImpl& s, const session::SessionSlot* sl, SessionInfo& out);
void layer_verify(StoreImpl& s, VerifyReport& out);

}  // namespace stoa::internal

#endif  // STOA_STORE_LIFECYCLE_H_
