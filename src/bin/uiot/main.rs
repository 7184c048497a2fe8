//! The `uiot` command: subcommand dispatch, error printing and exit codes.
//!
//! Owns: process start-up, the top-level flags (`--help`,
//! `--version`), turning a [`cli::Failure`] into a message and an exit code.
//! Must not touch: what the subcommands do (one module each, listed in
//! `commands::COMMANDS`), the exit-code table (`exit`).

mod check;
mod cli;
mod command;
mod commands;
mod event;
mod exit;
mod help;
mod input;
mod ota;
mod property;
mod publish;
mod register;
mod run;
mod service;
mod shadow;
mod subscribe;
mod upload;

use std::io::Write as _;
use std::process::ExitCode;

use lexopt::prelude::*;

use cli::{Command, Failure};

fn main() -> ExitCode {
    skip_system_ca_store();
    let mut args = lexopt::Parser::from_env();
    ExitCode::from(run(&mut args))
}

/// uiot trusts only its pinned CA (built in, or `ca_file`), yet OpenSSL
/// (through native-tls) loads the whole default CA bundle, ~140
/// certificates and about 50 ms, whenever a TLS set-up is built, before
/// throwing it away. Pointing `SSL_CERT_FILE` at an empty file makes that
/// load cost nothing and changes no verification, since the default store
/// is never trusted; whatever the variable said before did not matter to
/// uiot either. Set for this process only, before any thread starts. A
/// command that starts other programs must give them the original value.
fn skip_system_ca_store() {
    let _ = ORIGINAL_SSL_CERT_FILE.set(std::env::var("SSL_CERT_FILE").ok());
    std::env::set_var("SSL_CERT_FILE", "/dev/null");
}

/// `SSL_CERT_FILE` as uiot found it, for the programs it starts (hooks).
pub static ORIGINAL_SSL_CERT_FILE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Dispatches the command line and returns the exit code.
fn run(args: &mut lexopt::Parser) -> u8 {
    let command = match pick_command(args) {
        Ok(Some(c)) => c,
        Ok(None) => return exit::OK,
        Err(f) => return report(f, None),
    };
    match (command.run)(args) {
        Ok(()) => exit::OK,
        Err(Failure::Help) => match cli::print(&format!("{}\n", command.usage)) {
            Ok(()) => exit::OK,
            Err(f) => report(f, Some(command)),
        },
        Err(f) => report(f, Some(command)),
    }
}

/// Reads the top-level flags and the command name. `Ok(None)` when the
/// work is done already (`--help`, `--version`).
fn pick_command(args: &mut lexopt::Parser) -> Result<Option<&'static Command>, Failure> {
    let Some(arg) = args.next()? else {
        return Err(Failure::Usage("missing command".to_string()));
    };
    match arg {
        Short('h') | Long("help") => cli::print(&commands::top_help()).map(|()| None),
        Short('V') | Long("version") => {
            cli::print(&format!("uiot {}\n", env!("CARGO_PKG_VERSION"))).map(|()| None)
        }
        Value(name) => {
            let name = name.to_string_lossy();
            commands::find(&name).map(Some).ok_or_else(|| {
                Failure::Usage(format!(
                    "unknown command {}; run 'uiot help' for the list",
                    cli::quote(&name)
                ))
            })
        }
        other => Err(other.unexpected().into()),
    }
}

/// Prints a failure (of `command`, if one was chosen) and returns its exit code.
fn report(failure: Failure, command: Option<&Command>) -> u8 {
    match failure {
        Failure::Usage(problem) => {
            print_error(&problem);
            let (usage, more) = match command {
                Some(c) => (c.usage, format!("uiot {} --help", c.name)),
                None => (commands::TOP_USAGE, "uiot --help".to_string()),
            };
            let line = usage.lines().next().unwrap_or_default();
            let _ = writeln!(std::io::stderr(), "{line}\n(run '{more}' for more)");
            exit::USAGE
        }
        Failure::Help => exit::OK,
        Failure::Data(problem) => {
            print_error(&problem);
            exit::DATAERR
        }
        Failure::Uiot(e) => {
            print_error(&e.to_string());
            exit::code(&e)
        }
        Failure::Line { line, sent, error } => {
            print_error(&format!(
                "line {line}: {error}; {sent} {} sent before it",
                if sent == 1 {
                    "message was"
                } else {
                    "messages were"
                }
            ));
            exit::code(&error)
        }
    }
}

/// Prints every line of `message` to stderr prefixed with `uiot: `.
fn print_error(message: &str) {
    let mut err = std::io::stderr().lock();
    for line in message.lines() {
        let _ = writeln!(err, "uiot: {line}");
    }
}
