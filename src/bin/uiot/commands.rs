//! The table of subcommands: what `main` dispatches through and what
//! `uiot --help` and `uiot help CMD` list.
//!
//! Owns: [`COMMANDS`] (adding a subcommand = one module plus one row here),
//! the top-level usage and help text.
//! Must not touch: what a subcommand does; shared helpers (in `cli`). Only
//! this module and `main` import the subcommand modules, and the
//! subcommands import only `cli` (and `ota`'s state and version reading,
//! which `run` shares), so no module imports one that imports it.

use crate::cli::{Command, Failure};
use crate::{
    check, command, event, help, ota, property, publish, register, run, shadow, subscribe, upload,
};

/// Every subcommand, in the order `uiot --help` lists them.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "check",
        summary: "check the configuration file and print the effective settings",
        usage: check::USAGE,
        run: check::run,
    },
    Command {
        name: "pub",
        summary: "publish a message (or one per input line) and wait for its PUBACK",
        usage: publish::USAGE,
        run: publish::run,
    },
    Command {
        name: "sub",
        summary: "subscribe and print the messages that arrive",
        usage: subscribe::USAGE,
        run: subscribe::run,
    },
    Command {
        name: "run",
        summary:
            "the board daemon: stay online, serve the local socket, run hooks and serial bridges",
        usage: run::USAGE,
        run: run::run,
    },
    Command {
        name: "upload",
        summary: "upload a file to the platform's file store (HTTPS)",
        usage: upload::USAGE,
        run: upload::run,
    },
    Command {
        name: "ota",
        summary: "firmware upgrades: status of each module, check for an upgrade now",
        usage: ota::USAGE,
        run: ota::run,
    },
    Command {
        name: "register",
        summary: "dynamic registration: obtain the device secret with the product secret, once",
        usage: register::USAGE,
        run: register::run,
    },
    Command {
        name: "shadow",
        summary: "the device shadow: get, report, delete, reset, watch desired values",
        usage: shadow::USAGE,
        run: shadow::run,
    },
    Command {
        name: "property",
        summary: "thing model properties: post, desired values, restore, template",
        usage: property::USAGE,
        run: property::run,
    },
    Command {
        name: "event",
        summary: "thing model: report an event",
        usage: event::USAGE,
        run: event::run,
    },
    Command {
        name: "command",
        summary: "thing model: wait for the cloud's commands and answer them",
        usage: command::USAGE,
        run: command::run,
    },
    Command {
        name: "help",
        summary: "list the commands, or show how to use one",
        usage: help::USAGE,
        run: run_help,
    },
];

/// The usage text of `uiot` itself.
pub const TOP_USAGE: &str = "\
usage: uiot <command> [options]
       uiot help [command]
       uiot --help | --version";

/// Finds a subcommand by name.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The help of `uiot` itself: usage and one line per command.
pub fn top_help() -> String {
    help::top_help(TOP_USAGE, COMMANDS)
}

/// `uiot help [CMD]`, given the table (help.rs does not import this module).
fn run_help(args: &mut lexopt::Parser) -> Result<(), Failure> {
    help::run(args, TOP_USAGE, COMMANDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_listed_once_with_a_usage_line() {
        for c in COMMANDS {
            assert_eq!(COMMANDS.iter().filter(|d| d.name == c.name).count(), 1);
            assert!(
                c.usage.starts_with(&format!("usage: uiot {}", c.name)),
                "{}",
                c.name
            );
            assert!(top_help().contains(c.summary));
            assert!(find(c.name).is_some());
        }
        assert!(find("nope").is_none());
    }
}
