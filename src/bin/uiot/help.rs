//! `uiot help [COMMAND]`: the command list, or one command's usage.
//!
//! Owns: the `help` subcommand.
//! Must not touch: the texts themselves (each command owns its usage).

use lexopt::prelude::*;

use crate::cli::{self, Failure};

/// Usage of `uiot help`.
pub const USAGE: &str = "\
usage: uiot help [command]

Without a command, lists the commands. With one, prints its usage and options.";

/// Prints the command list or the usage of the named command.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
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
        None => cli::print(&cli::top_help()),
        Some(name) => match cli::find(&name) {
            Some(c) => cli::print(&format!("{}\n", c.usage)),
            None => Err(Failure::Usage(format!(
                "unknown command '{name}'; run 'uiot help' for the list"
            ))),
        },
    }
}
