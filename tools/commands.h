// tools/commands.h — the command table of the `stoa` tool.
//
// A command is a name, a one-line help and a setup function. run()
// (tools/stoa.cc) adds one CLI11 subcommand per table entry, in table order
// (the order `stoa --help` lists them), and calls its setup, which adds the
// command's arguments and options, bound to state it owns, and returns the
// handler; after parsing, the handler of the parsed subcommand runs and its
// result is the exit status. A group of commands is one file (cmd_*.cc);
// adding a group is that file, its setups declared here and its entries in
// kCommands.
//
// Thread safety: setup and handlers run on the main thread only.
#ifndef STOA_TOOLS_COMMANDS_H_
#define STOA_TOOLS_COMMANDS_H_

#include <functional>
#include <span>

#include <CLI/CLI.hpp>

namespace stoa::cli {

// Runs the parsed command; returns the exit status.
using Handler = std::function<int()>;
// Adds a command's arguments and options to its subcommand.
using Setup = Handler (*)(CLI::App& sub);

struct Command {
  const char* name;
  const char* help;  // one line, shown by `stoa --help`
  Setup setup;
};

// tools/cmd_admin.cc: looking at a store.
Handler setup_init(CLI::App& sub);
Handler setup_stat(CLI::App& sub);
Handler setup_verify(CLI::App& sub);
Handler setup_recorder(CLI::App& sub);
// tools/cmd_data.cc: keys and values.
Handler setup_put(CLI::App& sub);
Handler setup_get(CLI::App& sub);
Handler setup_del(CLI::App& sub);
Handler setup_scan(CLI::App& sub);
Handler setup_dump(CLI::App& sub);
Handler setup_load(CLI::App& sub);
// tools/cmd_durable.cc: checkpoints, copies, recovery.
Handler setup_checkpoint(CLI::App& sub);
Handler setup_backup(CLI::App& sub);
Handler setup_compact(CLI::App& sub);
Handler setup_recover(CLI::App& sub);
// tools/cmd_msg.cc: mailboxes.
Handler setup_send(CLI::App& sub);
Handler setup_recv(CLI::App& sub);
Handler setup_mailboxes(CLI::App& sub);
// tools/demo.cc: the demonstration.
Handler setup_demo(CLI::App& sub);

// Every command, in `stoa --help` order (tools/stoa.cc).
std::span<const Command> commands();

}  // namespace stoa::cli

#endif  // STOA_TOOLS_COMMANDS_H_
