//! The subcommand table, help texts and the small shared pieces of
//! argument handling.
//!
//! Owns: [`COMMANDS`] (adding a subcommand = one module plus one row here),
//! the top-level help, [`Failure`], writing to stdout, and how the
//! configuration file is chosen (`-c`, then `$UIOT_CONFIG`, then
//! `/etc/uiot/uiot.ini`).
//! Must not touch: the library's behaviour, exit-code numbers (see `exit`).

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;

use uiot::config::{self, Config, ConfigError};

use crate::{check, help, publish, subscribe};

/// One subcommand: its name, one-line summary, usage text and entry point.
pub struct Command {
    /// What the user types after `uiot`.
    pub name: &'static str,
    /// One line for the command list of `uiot --help`.
    pub summary: &'static str,
    /// Full usage text; its first line is the `usage:` line shown on errors.
    pub usage: &'static str,
    /// Runs the command with the arguments after its name.
    pub run: fn(&mut lexopt::Parser) -> Result<(), Failure>,
}

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
        name: "help",
        summary: "list the commands, or show how to use one",
        usage: help::USAGE,
        run: help::run,
    },
];

/// The usage text of `uiot` itself.
pub const TOP_USAGE: &str = "\
usage: uiot <command> [options]
       uiot help [command]
       uiot --help | --version";

/// Why a command did not finish normally.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong (exit 64); the text says what.
    Usage(String),
    /// `--help` was given: print the command's usage and exit 0.
    Help,
    /// The library reported an error; `exit::code` picks the exit code.
    Uiot(uiot::Error),
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Self {
        Failure::Usage(e.to_string())
    }
}

impl From<uiot::Error> for Failure {
    fn from(e: uiot::Error) -> Self {
        Failure::Uiot(e)
    }
}

/// Finds a subcommand by name.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The help of `uiot` itself: usage and one line per command.
pub fn top_help() -> String {
    let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut text = format!(
        "uiot {}: connect this device to UCloud UIoT Core over MQTT\n\n{TOP_USAGE}\n\ncommands:\n",
        env!("CARGO_PKG_VERSION")
    );
    for c in COMMANDS {
        text.push_str(&format!("  {:width$}  {}\n", c.name, c.summary));
    }
    text.push_str(
        "\nRun 'uiot help <command>' for a command's options.\n\
         RUST_LOG=debug (or info, warn, error) sets how much is logged to stderr.\n",
    );
    text
}

/// Writes `text` to stdout; a closed or failing stdout becomes an I/O error.
pub fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| {
            Failure::Uiot(uiot::Error::Io {
                context: "writing to standard output".to_string(),
                source,
            })
        })
}

/// Where the configuration file name came from.
enum Origin {
    Flag,
    Env,
    Default,
}

/// Loads the configuration named by `-c`, `$UIOT_CONFIG` or the default;
/// when the file is missing, the error says how to name another one.
pub fn load_config(flag: Option<PathBuf>) -> Result<Config, Failure> {
    let env = std::env::var_os("UIOT_CONFIG").filter(|v: &OsString| !v.is_empty());
    let (path, origin) = match (flag, env) {
        (Some(p), _) => (p, Origin::Flag),
        (None, Some(_)) => (config::default_path(), Origin::Env),
        (None, None) => (config::default_path(), Origin::Default),
    };
    Config::load(&path).map_err(|mut e: ConfigError| {
        if !path.exists() {
            e.problems.push(match origin {
                Origin::Flag => "check the file name given with -c".to_string(),
                Origin::Env => {
                    "the file was named by UIOT_CONFIG; fix or unset it, or pass -c FILE"
                        .to_string()
                }
                Origin::Default => format!(
                    "no configuration file at the default {}: pass -c FILE or set UIOT_CONFIG",
                    config::DEFAULT_PATH
                ),
            });
        }
        Failure::Uiot(uiot::Error::Config(e))
    })
}

/// Starts logging to stderr: `RUST_LOG` if set, else warnings; `debug`
/// (the `-d` flag) adds every packet sent and received (never a secret or
/// a payload). Call once, after the command line is parsed.
pub fn init_logging(debug: bool) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    builder.target(env_logger::Target::Stderr);
    if debug {
        builder.filter_module("uiot", log::LevelFilter::Debug);
    }
    // A second call (there is none) would only keep the first logger.
    let _ = builder.try_init();
}

/// Parses `-q`: 0 or 1; 2 is refused because UIoT Core has no QoS 2.
pub fn parse_qos(value: OsString) -> Result<uiot::QoS, Failure> {
    let text = value.to_string_lossy();
    match text.as_ref() {
        "0" => Ok(uiot::QoS::AtMostOnce),
        "1" => Ok(uiot::QoS::AtLeastOnce),
        "2" => Err(Failure::Usage(
            "-q 2: UIoT Core does not support QoS 2; use 0 or 1".to_string(),
        )),
        _ => Err(Failure::Usage(format!("-q {text}: QoS must be 0 or 1"))),
    }
}

/// Loads the configuration and connects as its device.
pub fn connect(config_flag: Option<PathBuf>) -> Result<uiot::Client, Failure> {
    let config = load_config(config_flag)?;
    let options = uiot::Options::from_config(&config)?;
    Ok(uiot::Client::connect(options)?)
}
