// stoa/channel.h — channels: named rings in the store that pass small
// messages between any sessions of any processes, the types of the channel
// calls on Session (stoa/store.h).
//
// A channel is a bounded ring of fixed-size slots, owned by the store (it
// outlives every session until Session::remove_channel). Any number of
// sessions push and pop at once (many-to-many; one pusher and one popper is
// the pipe case). A push copies the payload into a slot and a pop copies it
// out: no lock is taken and nothing is allocated per message, which is what
// makes a channel lighter than a mailbox. What a channel does not have that
// a mailbox has: names per entry beyond the channel's own, return
// addresses, selective receive, leases, session ownership.
//
// What "pushed" promises: once push() returns ok, the message is in the
// ring in the shared mapping and is popped exactly once, whatever process
// dies afterwards, except that a popper killed while copying it out takes
// it with it (like a mailbox's plain receive). A pusher killed half-way
// leaves no half message: its slot is skipped once the dead session is
// reclaimed (within Options::watchdog_interval, or at once by the next
// Store::reap_dead_sessions or open); until then poppers wait at it.
// Channels are not logged: an OS crash or power cut, Store::compact and
// Store::recover(kRebuild) start without them.
//
// Order: a channel is FIFO in the order pushes claimed their positions;
// pushes from one session are popped in the order it made them.
//
// Thread safety: see Session (one thread at a time per session). Blocking
// calls spin for a few microseconds, then sleep on a futex in the mapping,
// unless the caller asks to poll.
#ifndef STOA_CHANNEL_H_
#define STOA_CHANNEL_H_

#include <chrono>
#include <cstdint>
#include <string>

namespace stoa {

// A channel's address: stable while it exists, never another channel's (a
// removed channel's id gives kNotFound). 0 is none.
struct ChannelId {
  uint64_t value = 0;
  explicit operator bool() const { return value != 0; }
  friend bool operator==(ChannelId a, ChannelId b) { return a.value == b.value; }
};

struct ChannelOptions {
  uint32_t capacity = 1024;  // slots: a power of two, 2..2^20
  uint32_t max_message =
      224;  // payload bytes a slot holds: 1..65536 (a slot is 32 + this, to 64 B)
};

struct PushOptions {
  uint64_t tag = 0;  // the popper's to interpret
  // A full channel: 0 returns kFull at once; > 0 waits up to this long;
  // < 0 waits without end (until room or removal).
  std::chrono::nanoseconds timeout{0};
  bool poll = false;  // spin while waiting instead of sleeping
};

struct PopOptions {
  // 0: do not wait (kTimeout when empty); > 0: up to this long; < 0:
  // without end (until a message or removal).
  std::chrono::nanoseconds timeout{-1};
  bool poll = false;
};

// What pop() says of the message whose payload it wrote.
struct Popped {
  uint64_t position = 0;  // pushes claimed before it (from 0)
  uint64_t tag = 0;
  uint64_t sent_ns = 0;  // CLOCK_REALTIME when pushed
};

struct ChannelInfo {
  ChannelId id{};
  std::string name;
  bool closed = false;  // being removed
  uint32_t capacity = 0, max_message = 0;
  uint64_t pushed = 0, popped = 0;  // positions claimed so far
  uint64_t created_ns = 0;
};

}  // namespace stoa

#endif  // STOA_CHANNEL_H_
