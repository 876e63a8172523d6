// stoa/admin.h — what administration tools need beyond Store and Session:
// the flight recorders, a check of the checkpoint and log, whether this
// process opened the store alone, the names of a store's files, draining
// parked sessions, and raw blocks of the shared heap below the key index.
// The `stoa` tool (tools/) is written against this header and store.h only.
//
// Thread safety: Admin's functions may be called from any thread, like the
// Store methods they stand beside (they take the same locks). An
// Admin::Blocks belongs to one thread at a time, like the Session it works
// through, and must not outlive it.
#ifndef STOA_ADMIN_H_
#define STOA_ADMIN_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "stoa/result.h"
#include "stoa/store.h"

namespace stoa {

// One entry of a session slot's flight recorder (a ring in the lock file).
struct RecorderEntry {
  uint64_t time_ns = 0;     // CLOCK_REALTIME
  std::string kind;         // "open", "alloc", "publish", "recover", ...
  std::string result;       // the code name of the operation's result
  uint32_t generation = 0;  // the slot's generation when it was written
  uint64_t arg = 0;
  uint64_t arg2 = 0;
};

// The flight recorder of one session slot, dead sessions included.
struct RecorderDump {
  uint32_t slot = 0;
  uint32_t generation = 0;
  int64_t pid = 0;
  std::string state;                   // "free", "live", "dead", "recovering"
  std::vector<RecorderEntry> entries;  // oldest first
};

// What a read of the last checkpoint and the log after it found (the
// checks verify makes of them).
struct LogCheck {
  uint64_t checkpoint_ts = 0;         // 0: no checkpoint yet, the log was read from its start
  uint64_t checkpoint_keys = 0;       // entries checked in that checkpoint
  uint64_t records = 0;               // commit records checked after it
  std::vector<std::string> problems;  // each names the damaged file and offset
  bool sound() const { return problems.empty(); }
};

// The files of a store directory.
struct StorePaths {
  std::string data;     // the data file every process maps
  std::string lock;     // the lock file: session table, cycle state, flight recorders
  std::string log_dir;  // the write-ahead log and its checkpoints
  std::string sum;      // the clean-shutdown checksums
};

class Admin {
 public:
  // Flight recorders of every slot that has entries (or of `slot` alone,
  // even when empty). Errors: kInvalidArgument (no such slot), kClosed.
  static Result<std::vector<RecorderDump>> recorder(Store& store,
                                                    std::optional<uint32_t> slot = std::nullopt);
  // Reads and checks every checksum of the last checkpoint and of the log
  // after it. Errors: kClosed (the store has no log).
  static Result<LogCheck> check_log(Store& store);
  // Whether no other process had the store open when this one opened it
  // (so the open ran the lone-open repairs).
  static bool opened_alone(Store& store);
  // Frees this process's parked sessions whose purgatory has become safe
  // (the watchdog does it when it runs; a process without one calls this).
  static void drain_parked(Store& store);

  // The files of the store in directory `dir`; the checkpoint file that
  // holds every commit up to `ts`.
  static StorePaths paths(const std::string& dir);
  static std::string checkpoint_path(const std::string& dir, uint64_t ts);

  // Raw blocks of the shared heap, below the key index (what `stoa demo`
  // exercises). A block is named by its offset in the data file:
  //   alloc()   a new block, private to the session (reclaimed if it dies);
  //   publish() part of a shared structure, outlives the session;
  //   retire()  unlinked; freed once no pinned reader can still see it;
  //   free()    freed at once (no other session may be able to reach it).
  // Reads go through view() or read() (read-only: writing through them
  // faults); writes through write_ptr(). A pointer obtained while pinned
  // stays valid until unpin() even if the block is retired meanwhile.
  // Misuse (writing a block others read, freeing a reachable one) corrupts
  // what the store holds; verify() reports broken guards.
  class Blocks {
   public:
    explicit Blocks(Session& session) : session_(&session) {}

    // Errors: kInvalidArgument (0 or absurd size), kFull (max_size
    // reached; frees make room again), kIo, kClosed.
    Result<uint64_t> alloc(size_t size);
    // Errors: kInvalidArgument (not a block, or not this session's),
    // kCorrupt (guard broken), kClosed.
    Status publish(uint64_t block);
    Status retire(uint64_t block);
    Status free(uint64_t block);
    // [block, block+len) in the read-only view, mapping newly grown parts
    // of the file first. Errors: kCorrupt (not inside the file).
    Result<const char*> read(uint64_t block, size_t len);
    // Unchecked: the session must be open and the range mapped (a block
    // this process allocated, or one read() returned).
    const char* view(uint64_t block) const;
    char* write_ptr(uint64_t block) const;
    // Pins the current cycle (nestable; wait-free). The session must be
    // open, and every pin() is matched by an unpin() before it closes.
    void pin();
    void unpin();
    class Pin {
     public:
      explicit Pin(Blocks& blocks) : blocks_(blocks) { blocks_.pin(); }
      ~Pin() { blocks_.unpin(); }
      Pin(const Pin&) = delete;
      Pin& operator=(const Pin&) = delete;

     private:
      Blocks& blocks_;
    };

   private:
    Session* session_;
  };
};

}  // namespace stoa

#endif  // STOA_ADMIN_H_
