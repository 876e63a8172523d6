// env/sim_env.h — a simulated disk for power-loss and fault-injection tests.
//
// Files live on the real file system (so mapping works), but SimEnv keeps,
// for every file it has seen, the image that is on "disk": the contents as
// of the file's last successful sync, and for every directory the names as
// of its last successful sync_dir. power_loss() then does what a power cut
// does (the model of SQLite's test6.c): every write since the last sync is
// dropped, or kept, or torn at a 512-byte sector, or garbled, page by page
// and at random; a directory's unsynced creates, renames and removes are
// all kept or all lost. Writes through a mapping are caught too, because the
// comparison is between the image and the file's current bytes. After it,
// boot_id() changes, as after a reboot. Like SQLite's default (powersafe
// overwrite), a torn or garbled write damages only bytes it was changing:
// bytes already on disk that a later write left as they were survive.
//
// Faults: cut_after(n) makes the power fail at the n-th mutating call from
// now: that call and every later sync or sync_dir fail with EIO, so nothing
// more becomes durable (writes still reach the page cache, to be dropped or
// torn by power_loss()). inject() makes one chosen call fail: EIO or ENOSPC
// on write, a short write then ENOSPC, EIO on sync, ENOSPC on allocate. A
// failed sync leaves the image as it was: a retry cannot make lost data
// durable, which is how Linux behaves after a failed fsync.
//
// Thread safety: all methods are thread-safe (one mutex).
#ifndef STOA_ENV_SIM_ENV_H_
#define STOA_ENV_SIM_ENV_H_

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "stoa/env.h"
#include "util/mutex.h"

namespace stoa {

class SimEnv : public Env {
 public:
  enum class Fault { kNone, kWriteEio, kWriteEnospc, kShortWrite, kSyncEio, kAllocateEnospc };

  explicit SimEnv(uint64_t seed);

  // The power fails at the n-th mutating call from now (n >= 1).
  void cut_after(uint64_t n);
  bool cut() const;
  // The n-th (>= 1) call of the fault's kind from now fails.
  void inject(Fault f, uint64_t n);
  // How many injected faults have fired; the thread that made the call the
  // last one failed, and the path it named (a test tells the group
  // flusher's fdatasync from a committer's directory sync).
  uint64_t faults_fired() const;
  std::thread::id fault_thread() const;
  std::string fault_path() const;
  // Applies the power-loss model to every file seen, then "reboots":
  // boot_id changes, cut and faults clear, the images become the files.
  void power_loss();
  // Mutating calls so far.
  uint64_t ops() const;

  Result<int> open(const std::string& path, int flags, mode_t mode) override;
  void close(int fd) override;
  Status allocate(int fd, uint64_t offset, uint64_t len, const std::string& path) override;
  Status pwrite_all(int fd, const void* data, size_t len, uint64_t offset,
                    const std::string& path) override;
  Status sync(int fd, const std::string& path) override;
  Status sync_dir(const std::string& path) override;
  Status rename(const std::string& from, const std::string& to) override;
  Status remove(const std::string& path) override;
  Status truncate(int fd, uint64_t len, const std::string& path) override;
  uint64_t boot_id() override;

 private:
  struct Node {
    std::string image;  // bytes on disk
  };
  // Counts a mutating call; true when it must fail because the power is out.
  bool tick() REQUIRES(mu_);
  bool take_fault(Fault kind, const std::string& path) REQUIRES(mu_);
  uint64_t node_of(const std::string& path) REQUIRES(mu_);
  static std::string read_file(const std::string& path);
  static std::string dir_of(const std::string& path);
  void snapshot_dir(const std::string& dir) REQUIRES(mu_);

  mutable util::Mutex mu_;
  std::mt19937_64 rng_ GUARDED_BY(mu_);
  uint64_t boot_ GUARDED_BY(mu_);
  uint64_t ops_ GUARDED_BY(mu_) = 0;
  uint64_t cut_at_ GUARDED_BY(mu_) = 0;  // 0: no cut armed
  bool cut_ GUARDED_BY(mu_) = false;
  Fault fault_ GUARDED_BY(mu_) = Fault::kNone;
  uint64_t fault_in_ GUARDED_BY(mu_) = 0;
  uint64_t fired_ GUARDED_BY(mu_) = 0;
  std::thread::id fired_on_ GUARDED_BY(mu_);
  std::string fired_path_ GUARDED_BY(mu_);
  uint64_t next_id_ GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Node> nodes_ GUARDED_BY(mu_);
  std::map<std::string, uint64_t> names_ GUARDED_BY(mu_);  // path -> node, now
  // dir -> (path -> node) as of the dir's last sync (or first sight).
  std::map<std::string, std::map<std::string, uint64_t>> durable_names_ GUARDED_BY(mu_);
  std::map<int, std::string> fds_ GUARDED_BY(mu_);
};

}  // namespace stoa

#endif  // STOA_ENV_SIM_ENV_H_
