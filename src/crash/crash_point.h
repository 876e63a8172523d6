// crash/crash_point.h — named crash points: the steps whose crash the code
// claims to survive, each a place a test can make the process die.
//
// Every protocol step that a crash may interrupt (commit, log, checkpoint,
// index, allocator, sessions) carries STOA_CRASH_POINT(kName). In a build
// with crash points (CMake option STOA_CRASH_POINTS, on when the tests are
// built; off for a packaged library, where the macro compiles to nothing)
// a process can be armed to SIGKILL itself at the n-th hit of one point:
//  - from the environment, read once when the library loads:
//      STOA_CRASH_AT=<name>:<n>     e.g. STOA_CRASH_AT=txn.commit.point:3
//  - or by a test (a forked child arms itself): crash::arm(kName, n).
// The registry below is the one list of points; tests walk it and fail when
// a point is never reached (tests/crash_points_test.cc).
//
// Thread safety: arm/disarm/hits are thread-safe (atomics); a disarmed
// point costs one relaxed load. The kill is SIGKILL: no destructor, no
// flush, no unlock runs, exactly like a crash of the whole process.
#ifndef STOA_CRASH_CRASH_POINT_H_
#define STOA_CRASH_CRASH_POINT_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

// X(id, name, what it interrupts)
#define STOA_CRASH_POINTS_LIST(X)                                                              \
  X(kCommitList, "txn.commit.list", "commit list allocated, nothing locked")                   \
  X(kCommitLock, "txn.commit.lock", "between two record locks of a commit")                    \
  X(kCommitReserved, "txn.commit.reserved", "log range reserved, not yet announced")           \
  X(kCommitValidated, "txn.commit.validated", "validated, before the commit point")            \
  X(kCommitPoint, "txn.commit.point", "just past the commit point, record not written")        \
  X(kCommitLogged, "txn.commit.logged", "record written, versions not installed")              \
  X(kCommitInstall, "txn.commit.install", "between two version installs")                      \
  X(kCommitInstalled, "txn.commit.installed", "installed, locks still held")                   \
  X(kCommitReleased, "txn.commit.released", "locks released, watermark entry cleared")         \
  X(kCommitVisible, "txn.commit.visible", "visible, before the durability wait")               \
  X(kCommitAbortPadding, "txn.commit.padding", "validation failed, before the padding record") \
  X(kLogReserveLocked, "log.reserve.locked", "holding reserve_mu, holder noted")               \
  X(kLogReserveAdvanced, "log.reserve.advanced", "holding reserve_mu, tail advanced")          \
  X(kLogSegmentCreated, "log.segment.created", "segment file allocated, dir not synced")       \
  X(kLogFlushLocked, "log.flush.locked", "holding flush_mu, before the fdatasync")             \
  X(kLogFlushSynced, "log.flush.synced", "synced, before the durable mark moves")              \
  X(kCkptWritten, "ckpt.written", "checkpoint file written and synced, not renamed")           \
  X(kCkptRenamed, "ckpt.renamed", "checkpoint renamed, directory not synced")                  \
  X(kCkptCleanup, "ckpt.cleanup", "new checkpoint in place, old files not removed")            \
  X(kIndexNodeCopy, "index.node.copy", "new nodes built, not linked")                          \
  X(kIndexCas, "index.cas", "new node linked by CAS, old one not retired")                     \
  X(kIndexFreeze, "index.freeze", "parent frozen, its copy not linked")                        \
  X(kIndexSplit, "index.split", "a node split in two, parent not updated")                     \
  X(kIndexRemoveMarked, "index.remove.marked", "deleted keys marked removed, leaf not copied") \
  X(kIndexMerge, "index.merge", "a small node merged with a neighbour, parent not linked")     \
  X(kHeapRunSplit, "heap.run.split", "holding the page lock, free run being split")            \
  X(kHeapRunMerge, "heap.run.merge", "holding the page lock, freed run being merged")          \
  X(kHeapGrow, "heap.grow", "data file extended, new run not in a bin")                        \
  X(kHeapClassLocked, "heap.class.locked", "holding a class lock, list half updated")          \
  X(kSessionClaim, "session.claim", "slot byte taken, slot not yet initialised")               \
  X(kSessionReclaim, "session.reclaim", "reclaiming a dead slot, before its commit")           \
  X(kSessionReclaimHeap, "session.reclaim.heap", "dead commit settled, memory not reclaimed")  \
  X(kMsgSendPublished, "msg.send.published", "message published, not yet linked")              \
  X(kMsgTakeRetired, "msg.take.retired", "received message retired, still linked")             \
  X(kMsgLeaseUnlinked, "msg.lease.unlinked", "leased message off the ready list, on no list")  \
  X(kMsgRequeueUnlinked, "msg.requeue.unlinked", "released lease unlinked, not yet requeued")  \
  X(kMsgDirPublished, "msg.dir.published", "mailbox directory published, not yet rooted")      \
  X(kMsgDrainRetired, "msg.drain.retired", "closed mailbox's message retired, still linked")   \
  X(kMsgChanPushClaimed, "chan.push.claimed", "channel slot claimed, position not advanced")   \
  X(kMsgChanPushWritten, "chan.push.written", "channel payload written, slot not ready")       \
  X(kMsgChanPopClaimed, "chan.pop.claimed", "channel slot claimed by a popper, not read")      \
  X(kMsgChanRemoveRetired, "chan.remove.retired", "removed channel's ring retired, entry held")

namespace stoa::internal::crash {

enum class Point : uint32_t {
#define STOA_CRASH_ENUM(id, name, what) id,
  STOA_CRASH_POINTS_LIST(STOA_CRASH_ENUM)
#undef STOA_CRASH_ENUM
      kCount
};
inline constexpr uint32_t kPointCount = uint32_t(Point::kCount);

// The point's name ("txn.commit.point") and what a crash there interrupts.
std::string_view name(Point p);
std::string_view what(Point p);
std::optional<Point> find(std::string_view name);

// True when this library was built with crash points.
bool compiled_in();
// SIGKILL this process at the n-th (>= 1) hit of p from now on; one point
// at a time (a new arm replaces the old one).
void arm(Point p, uint64_t n);
void disarm();
// Hits of the armed point so far.
uint64_t hits();

// The armed point + 1, or 0 (relaxed: a test arms before the workload, in
// the same thread or before starting the threads that hit it).
extern std::atomic<uint32_t> g_armed;
void hit_slow(Point p);

inline void hit(Point p) {
  if (g_armed.load(std::memory_order_relaxed) == uint32_t(p) + 1) hit_slow(p);
}

}  // namespace stoa::internal::crash

#if defined(STOA_CRASH_POINTS)
#define STOA_CRASH_POINT(id) ::stoa::internal::crash::hit(::stoa::internal::crash::Point::id)
#else
#define STOA_CRASH_POINT(id) ((void)0)
#endif

#endif  // STOA_CRASH_CRASH_POINT_H_
