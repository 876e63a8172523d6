// tools/stoa.cc — the `stoa` command-line tool: the command table and the
// dispatch. The commands live in one file per group: cmd_admin.cc (init,
// stat, verify, recorder), cmd_data.cc (put, get, del, scan, dump, load),
// cmd_durable.cc (checkpoint, backup, compact, recover), cmd_msg.cc (send,
// recv, mailboxes) and demo.cc (demo);
// commands.h says how a command plugs in. The tool uses the public API only
// (include/stoa/: store.h, and admin.h for what a tool needs beyond it).
//
// Every command opens the store with the watchdog off: a one-shot tool
// should not reclaim other processes' sessions behind their back.
//
// Exit statuses and error lines: cli_util.h. A command line CLI11 rejects
// is `stoa: usage: <why> (see stoa --help)`, exit 64; an unknown command
// is named before CLI11 parses.
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli_util.h"
#include "commands.h"

namespace stoa::cli {
namespace {

constexpr const char* kFooter = R"(Exit status:
  0   success (verify: the store is sound; demo: every check passed)
  1   the command failed: no such store, damaged or foreign file, permission,
      I/O error, get of an absent key, a malformed load line, a backup into a
      directory that is not empty (one line on stderr: "stoa: <code>: <message>")
  2   verify found damage (each problem is printed); recover: the checkpoint
      or the log is damaged (the message names the file); demo: a check failed
  3   recv: no message came within --timeout
  64  bad command line

backup and checkpoint run online, beside other processes; compact and recover
need the store to themselves (exit 1, "stoa: busy: ...", while others have it
open).

Run "stoa <command> --help" for a command's options.)";

constexpr Command kCommands[] = {
    {"init", "Create a store in DIR (an error if one exists there)", setup_init},
    {"stat", "Show size, used and free space, sessions, cycle, purgatory and the oldest pin",
     setup_stat},
    {"verify", "Check header, allocator metadata and guard words (exit 0 sound, 2 damaged)",
     setup_verify},
    {"recorder", "Print the flight recorders of the session slots, dead sessions included",
     setup_recorder},
    {"put", "Set KEY to VALUE (or to the bytes of --file, or of stdin when neither is given)",
     setup_put},
    {"get", "Print the value of KEY, its exact bytes (exit 1 with a message when absent)",
     setup_get},
    {"del", "Delete KEY (deleting an absent key is not an error)", setup_del},
    {"scan", "Print the keys starting with PREFIX, one KEY<TAB>VALUE line each, in key order",
     setup_scan},
    {"dump", "Print every key, one KEY<TAB>VALUE line each, sorted, from one snapshot", setup_dump},
    {"load", "Put the KEY<TAB>VALUE lines read from stdin (the format dump prints)", setup_load},
    {"checkpoint", "Write a checkpoint now (online) and drop the log before it", setup_checkpoint},
    {"backup",
     "Write a consistent copy of the store into DEST while others go on using it (like "
     "mdb_copy)",
     setup_backup},
    {"compact",
     "Shrink the data file to the live data (offline: no other process may have the store open)",
     setup_compact},
    {"recover",
     "Recover the store alone and report what was found and done (exit 2 when the log is "
     "damaged)",
     setup_recover},
    {"send", "Send PAYLOAD (or stdin's bytes) to the queue NAME, made on first use", setup_send},
    {"recv",
     "Receive the oldest message of the queue NAME and print its bytes (exit 3 on --timeout)",
     setup_recv},
    {"mailboxes", "List the mailboxes: name, id, owner, depth, bytes, oldest message's age",
     setup_mailboxes},
    {"demo",
     "Worker processes share data, one is SIGKILLed and reclaimed; then bank transfers "
     "between processes, every snapshot audited",
     setup_demo},
};

int run(int argc, char** argv) {
  CLI::App app{"stoa: a memory-mapped store shared by many processes", "stoa"};
  app.footer(kFooter);
  app.require_subcommand(1);

  struct Added {
    CLI::App* sub;
    Handler handler;
  };
  std::vector<Added> added;
  for (const Command& c : commands()) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    added.push_back(Added{sub, c.setup(*sub)});
  }

  if (argc >= 2 && argv[1][0] != '-') {
    const std::string cmd = argv[1];
    bool known = false;
    for (const Command& c : commands()) known |= cmd == c.name;
    if (!known) {
      fmt::print(stderr, "stoa: usage: unknown command '{}' (see stoa --help)\n", cmd);
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fflush(stdout);
    fmt::print(stderr, "stoa: usage: {} (see stoa --help)\n", e.what());
    return kExitUsage;
  }
  for (const Added& a : added) {
    if (a.sub->parsed()) return a.handler();
  }
  return kExitUsage;
}

}  // namespace

std::span<const Command> commands() { return kCommands; }

}  // namespace stoa::cli

int main(int argc, char** argv) { return stoa::cli::run(argc, argv); }
