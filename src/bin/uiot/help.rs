//! `uiot help [COMMAND]`: the command list, or one command's usage.
//!
//! Owns: the `help` subcommand and the layout of the command list.
//! Must not touch: the texts themselves (each command owns its usage) and
//! the table (`commands` passes it in, so this module imports only `cli`).

use lexopt::prelude::*;

use crate::cli::{self, Command, Failure};

/// Usage of `uiot help`.
pub const USAGE: &str = "\
usage: uiot help [command]

Without a command, lists the commands. With one, prints its usage and options.";

/// The help of `uiot` itself: `top_usage` and one line per command.
pub fn top_help(top_usage: &str, commands: &[Command]) -> String {
    let width = commands.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut text = format!(
        "uiot {}: connect this device to UCloud UIoT Core over MQTT\n\n{top_usage}\n\ncommands:\n",
        env!("CARGO_PKG_VERSION")
    );
    for c in commands {
        text.push_str(&format!("  {:width$}  {}\n", c.name, c.summary));
    }
    text.push_str(
        "\nRun 'uiot help <command>' for a command's options.\n\
         RUST_LOG=debug (or info, warn, error) sets how much is logged to stderr.\n",
    );
    text
}

/// Prints the command list or the usage of the named command.
pub fn run(
    args: &mut lexopt::Parser,
    top_usage: &str,
    commands: &[Command],
) -> Result<(), Failure> {
    let mut topic: Option<String> = None;
    while let Some(arg) = args.next()? {
        match arg {
            Short('h') | Long("help") => return Err(Failure::Help),
            Value(v) if topic.is_none() => {
                topic = Some(v.string()?);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    match topic {
        None => cli::print(&top_help(top_usage, commands)),
        Some(name) => match commands.iter().find(|c| c.name == name) {
            Some(c) => cli::print(&format!("{}\n", c.usage)),
            None => Err(Failure::Usage(format!(
                "unknown command {}; run 'uiot help' for the list",
                cli::quote(&name)
            ))),
        },
    }
}
