//! What the platform-service subcommands (`shadow`, `property`, `event`,
//! `command`) share: their common flags (`-c`, `-W`, `-d`, `-h`), JSON
//! arguments, one-line JSON output, and the client they run on.
//!
//! Owns: the parsing of those flags and of JSON given on the command line
//! or on standard input; printing a JSON line.
//! Must not touch: what a service does (the library's `uiot::platform`), the
//! exit codes (a library error keeps its own; bad JSON is a usage error on
//! the command line and a data error (65) on standard input).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lexopt::prelude::*;
use serde_json::Value;

use crate::cli::{self, Failure};

/// One of [`Common`]'s flags.
pub enum Flag {
    /// `-c FILE`
    Config,
    /// `-W SECONDS`
    Timeout,
    /// `-d`
    Debug,
    /// `-h`
    Help,
    /// `--direct` or `--via-daemon`
    Route(cli::Route),
}

/// Flags every service subcommand takes.
pub struct Common {
    /// `-c FILE`.
    pub config: Option<PathBuf>,
    /// `-W SECONDS`: how long to wait for each reply (or, for the waiting
    /// commands, for the next message).
    pub timeout: Option<Duration>,
    /// `-d`.
    pub debug: bool,
    /// `--direct` / `--via-daemon`.
    pub route: cli::Route,
}

/// The end of every service command's usage text: the help lines of
/// [`Common`]'s flags and the exit codes (a macro, so that `concat!` can
/// join it to each command's own text at compile time).
macro_rules! common_help {
    () => {
        "  -c, --config FILE     the configuration file
                        (default: $UIOT_CONFIG if set, else /etc/uiot/uiot.ini)
  -d, --debug           log every packet sent and received to stderr
      --direct          connect on its own even when `uiot run` is running
                        (that logs the daemon out: one login per device)
      --via-daemon      go through `uiot run`'s local socket or fail (69)
  -h, --help            print this help

exit codes: 0 ok, 64 usage, 65 bad data, 69 broker unreachable or connection
lost, 75 no reply in time or a temporary platform error (try again),
77 refused (secret, topic, or the platform's RetCode, printed with its
meaning), 78 config"
    };
}
pub(crate) use common_help;

impl Common {
    /// Empty: the defaults.
    pub fn new() -> Common {
        Common {
            config: None,
            timeout: None,
            debug: false,
            route: cli::Route::Auto,
        }
    }

    /// Which common flag `arg` is, if it is one (owned, so that the parser
    /// is free again to read the flag's value).
    pub fn flag(arg: &lexopt::Arg<'_>) -> Option<Flag> {
        match arg {
            Short('c') | Long("config") => Some(Flag::Config),
            Short('W') | Long("timeout") => Some(Flag::Timeout),
            Short('d') | Long("debug") => Some(Flag::Debug),
            Short('h') | Long("help") => Some(Flag::Help),
            other => cli::Route::flag(other).map(Flag::Route),
        }
    }

    /// Sets `flag`, reading its value from `args` if it takes one.
    pub fn set(&mut self, flag: Flag, args: &mut lexopt::Parser) -> Result<(), Failure> {
        match flag {
            Flag::Config => self.config = Some(PathBuf::from(args.value()?)),
            Flag::Timeout => self.timeout = Some(cli::parse_seconds(args.value()?, "-W")?),
            Flag::Debug => self.debug = true,
            Flag::Help => return Err(Failure::Help),
            Flag::Route(r) => self.route = r,
        }
        Ok(())
    }

    /// Starts logging and connects as the configured device (registering
    /// it first when only `product_secret` is configured).
    pub fn connect(&self) -> Result<uiot::Client, Failure> {
        cli::init_logging(self.debug);
        cli::connect(self.config.clone(), self.route)
    }

    /// When `-W` runs out for the waiting commands (`None` without `-W`).
    pub fn deadline(&self) -> Result<Option<Instant>, Failure> {
        self.timeout
            .map(|t| {
                Instant::now().checked_add(t).ok_or_else(|| {
                    Failure::Usage("-W: too far in the future for this clock".into())
                })
            })
            .transpose()
    }

    /// The reply timeout: `-W`, else the library's default.
    pub fn reply_timeout(&self) -> Duration {
        self.timeout.unwrap_or(uiot::platform::DEFAULT_TIMEOUT)
    }
}

/// Runs `work` on a connected client and disconnects cleanly whatever it
/// returned (so a QoS 1 reply still in flight is delivered).
pub fn with_client(
    common: &Common,
    work: impl FnOnce(&uiot::Client) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let client = common.connect()?;
    let result = work(&client);
    let closed = client.disconnect();
    result?;
    closed?;
    Ok(())
}

/// A JSON argument `what` from the command line.
pub fn json_arg(value: OsString, what: &str) -> Result<Value, Failure> {
    let text = value.to_string_lossy();
    serde_json::from_str(&text).map_err(|e| {
        Failure::Usage(format!(
            "{what} {}: not JSON ({e}); quote it for the shell, e.g. '{{\"temperature\":21}}'",
            cli::quote(&text)
        ))
    })
}

/// A JSON object argument `what` from the command line.
pub fn object_arg(value: OsString, what: &str) -> Result<Value, Failure> {
    let v = json_arg(value, what)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(Failure::Usage(format!(
            "{what} must be a JSON object such as '{{\"temperature\":21}}', not {v}"
        )))
    }
}

/// Prints `value` as one JSON line on stdout.
pub fn print_json(value: &Value) -> Result<(), Failure> {
    cli::print(&format!("{value}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_arguments_must_parse_and_objects_must_be_objects() {
        assert!(json_arg(OsString::from("[1,2]"), "JSON").is_ok());
        assert!(matches!(
            json_arg(OsString::from("{temp:1}"), "JSON"),
            Err(Failure::Usage(_))
        ));
        assert!(object_arg(OsString::from("{\"a\":1}"), "JSON").is_ok());
        assert!(matches!(
            object_arg(OsString::from("3"), "JSON"),
            Err(Failure::Usage(_))
        ));
    }
}
