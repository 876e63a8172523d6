// tools/demo.h — `stoa demo`, split by section: demo.cc runs the sections
// in order and holds what they share (child processes, shared boards, the
// final verify); demo_alloc.cc is the allocator phase (raw blocks shared
// and retired between processes, one worker SIGKILLed and reclaimed);
// demo_bank.cc is the bank phase (transfers between processes, every
// snapshot audited, one transfer worker SIGKILLed); demo_msg.cc the mailbox
// phase (jobs leased from a queue, one worker SIGKILLed holding a lease). Written against the
// public API only (stoa/store.h, stoa/admin.h).
//
// Thread safety: single-threaded; the demo forks child processes, each of
// which opens the store anew (a Store must never be used across fork()).
// Children leave with _exit(): they never run the parent's atexit handlers
// or destructors.
#ifndef STOA_TOOLS_DEMO_H_
#define STOA_TOOLS_DEMO_H_

#include <sys/mman.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cli_util.h"
#include "stoa/store.h"

namespace stoa::cli {

struct DemoArgs {
  std::string dir;  // empty: a fresh temporary directory, removed at the end
  int workers = 4;
  double seconds = 3;
  // The bank phase (transactions): accounts, transfer workers, duration.
  int accounts = 100;
  int bank_workers = 4;
  double bank_seconds = 2;
};
int run_demo(const DemoArgs& args);

namespace demo {

inline constexpr uint64_t kDemoMaxSize = uint64_t{1} << 30;
// Children must be done this long after their deadline.
inline constexpr uint64_t kGraceNs = 15'000'000'000;

uint64_t mix64(uint64_t x);
void sleep_ns(uint64_t ns);
double ms_since(uint64_t t0);

struct Child {
  pid_t pid = -1;
  bool reaped = false;
  int status = 0;
};
// "exit 0", "killed by signal 9 (Killed)".
std::string describe_status(int status);
// Reaps child c if it exited; waits when `block`.
bool reap(Child& c, bool block);

// What every child process reports to the parent, at the start of its board
// (a MAP_SHARED anonymous mapping made before fork).
struct ChildBoard {
  std::atomic<uint32_t> ready{0};
  std::atomic<uint32_t> slot{0};
  std::atomic<uint32_t> generation{0};
  std::atomic<uint32_t> noted{0};
  char note[512] = {};
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);
// Keeps the first note only.
void note(ChildBoard* b, const std::string& what);

// Runs in a child after fork(): opens the store in `dir` (watchdog on, at
// its default interval: it reclaims dead sessions), opens a session, marks
// the board ready and runs `body`, then closes the session. Returns the
// child's exit status: 1 when the open failed, body's status otherwise (2
// when closing failed after a body that passed). `who` starts each note.
int child_main(const std::string& dir, const std::string& who, ChildBoard* board,
               const std::function<int(Session&)>& body);

// Boards shared with the children: mapped before fork, unmapped on scope
// exit.
class BoardMap {
 public:
  BoardMap() = default;
  ~BoardMap();
  BoardMap(const BoardMap&) = delete;
  BoardMap& operator=(const BoardMap&) = delete;
  // `n` value-initialised boards of type T. Errors: kIo naming `what`.
  template <typename T>
  Result<T*> map(size_t n, const char* what) {
    STOA_TRY(map_bytes(sizeof(T) * n, what));
    T* boards = static_cast<T*>(p_);
    for (size_t i = 0; i < n; i++) new (&boards[i]) T();
    return boards;
  }

 private:
  Status map_bytes(size_t bytes, const char* what);
  void* p_ = MAP_FAILED;
  size_t bytes_ = 0;
};

// Removes a directory tree on scope exit (the demo's own temp directory).
struct TreeRemover {
  std::string path;
  ~TreeRemover();
};

struct WorkerBoard;
struct BankBoard;

class Demo {
 public:
  explicit Demo(const DemoArgs& a)
      : args_(a), children_(size_t(a.workers)), bank_children_(size_t(a.bank_workers) + 1) {}
  ~Demo() { kill_all(); }

  int run();

 private:
  void kill_all();
  int fail(const std::string& why);
  // Waits until every child marked its board ready; fails when one exits
  // first or 10 s pass. `name(i)` names child i in messages.
  int wait_started(std::vector<Child>& children, const std::function<ChildBoard&(size_t)>& board,
                   const std::function<std::string(size_t)>& name, const char* what);
  // Reaps every child, killing those still running kGraceNs past
  // `deadline_ns`; each one killed adds a failure.
  void reap_all(std::vector<Child>& children, uint64_t deadline_ns,
                const std::function<std::string(size_t)>& name, std::vector<std::string>& failures);
  // Verifies the store; a problem goes to `failures`, an error is returned.
  int verify_store(std::vector<std::string>& failures);
  // The failures, if any, as the demo's failure.
  int passed(const std::vector<std::string>& failures);

  // The allocator phase (demo_alloc.cc).
  int alloc_phase();
  int spawn(uint64_t bulletin);
  int kill_and_watch(size_t victim);
  int finish(size_t victim);
  // The bank phase, then the final verify (demo_bank.cc).
  int bank();
  int bank_spawn(uint64_t deadline_ns);
  int bank_finish(size_t victim, uint64_t bank_start_ns, uint64_t deadline_ns);
  // The mailbox phase (demo_msg.cc).
  int mail();

  DemoArgs args_;
  std::string dir_;
  TreeRemover remove_temp_;  // declared before store_: removed after it closes
  BoardMap boards_map_;
  std::unique_ptr<Store> store_;
  std::vector<Child> children_;
  std::vector<Child> bank_children_;  // transfer workers, then the auditor
  WorkerBoard* boards_ = nullptr;
  BoardMap bank_map_;
  BankBoard* bank_boards_ = nullptr;
  std::vector<Child> mail_children_;  // mailbox workers
  BoardMap mail_map_;
  uint64_t start_ns_ = 0;
  uint64_t deadline_ns_ = 0;
};

}  // namespace demo
}  // namespace stoa::cli

#endif  // STOA_TOOLS_DEMO_H_
