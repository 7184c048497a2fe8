//! The shared prelude of the subcommands: [`Failure`], the [`Command`] row
//! type, writing to stdout, logging, how the configuration file is chosen
//! (`-c`, then `$UIOT_CONFIG`, then `/etc/uiot/uiot.ini`) and the parsers of
//! option values every subcommand shares (QoS, counts, seconds, topics).
//!
//! Owns: everything above. It imports no subcommand, so every subcommand can
//! import it without a cycle (the table of subcommands is in `commands`).
//! Must not touch: the library's behaviour, exit-code numbers (see `exit`).

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use uiot::config::{self, Config, ConfigError};

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

/// Why a command did not finish normally. The exit code follows from the
/// variant (and, for library errors, from the error's variant), never from
/// the wording of a message.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong (exit 64); the text says what.
    Usage(String),
    /// `--help` was given: print the command's usage and exit 0.
    Help,
    /// Input data (not an argument: e.g. a line read from standard input)
    /// is wrong (exit 65); the text says what.
    Data(String),
    /// The library reported an error; `exit::code` picks the exit code.
    Uiot(uiot::Error),
    /// Line `line` of `pub -l` input failed with `error` after `sent`
    /// earlier lines were published; the exit code is the error's.
    Line {
        /// The line number, from 1.
        line: u64,
        /// How many messages were published before it.
        sent: u64,
        /// What went wrong with it.
        error: uiot::Error,
    },
}

impl std::fmt::Display for Failure {
    /// The message (what `main` prints after `uiot: `), for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Data(m) => f.write_str(m),
            Failure::Help => f.write_str("help requested"),
            Failure::Uiot(e) => write!(f, "{e}"),
            Failure::Line { line, sent, error } => {
                write!(f, "line {line} ({sent} sent before it): {error}")
            }
        }
    }
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
        // Decided by the file system, not by the text of the error.
        if std::fs::symlink_metadata(&path).is_err() {
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

/// How a command reaches the broker: through a running `uiot run` of the
/// same device (its local socket) or on its own connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Route {
    /// The daemon if one answers for this device, else a connection of
    /// its own.
    #[default]
    Auto,
    /// `--direct`: a connection of its own (it logs a running daemon out).
    Direct,
    /// `--via-daemon`: the daemon, or exit 69 if none answers.
    Daemon,
}

impl Route {
    /// `--direct` / `--via-daemon`, if `arg` is one of them.
    pub fn flag(arg: &lexopt::Arg<'_>) -> Option<Route> {
        match arg {
            lexopt::Arg::Long("direct") => Some(Route::Direct),
            lexopt::Arg::Long("via-daemon") => Some(Route::Daemon),
            _ => None,
        }
    }
}

/// The client options of the configured device and the daemon's socket
/// (so inputs can be checked against the limits before connecting). A
/// device with only `product_secret` is registered here on first use.
pub struct Target {
    /// Options of a connection of its own.
    pub options: uiot::Options,
    /// `[daemon] socket`.
    pub socket: PathBuf,
}

/// Loads the configuration into a [`Target`].
pub fn load_options(config_flag: Option<PathBuf>) -> Result<Target, Failure> {
    let config = load_config(config_flag)?;
    Ok(Target {
        options: uiot::platform::dynreg::device_options(&config)?,
        socket: config.daemon.socket.clone(),
    })
}

impl Target {
    /// Connects along `route`: with [`Route::Auto`] through the daemon when
    /// its socket exists and it serves this device (a stale socket, or a
    /// daemon of another device, means a connection of its own).
    pub fn connect(self, route: Route) -> Result<uiot::Client, Failure> {
        use uiot::packet::ConnectReturnCode::IdentifierRejected;
        if route == Route::Direct || (route == Route::Auto && !self.socket.exists()) {
            return Ok(uiot::Client::connect(self.options)?);
        }
        let mut local = self.options.clone();
        local.local_socket = Some(self.socket.clone());
        // The daemon owns the on-disk queue ([queue] dir): a QoS 1 message
        // is safe once the daemon acknowledged it.
        local.queue = uiot::client::Queue::default();
        match uiot::Client::connect(local) {
            Ok(c) => {
                log::debug!("connected through the daemon at {}", self.socket.display());
                Ok(c)
            }
            Err(uiot::Error::Unreachable(why)) if route == Route::Auto => {
                log::debug!("{why}; connecting on its own");
                Ok(uiot::Client::connect(self.options)?)
            }
            Err(uiot::Error::Refused(IdentifierRejected)) if route == Route::Auto => {
                log::debug!("the daemon serves another device; connecting on its own");
                Ok(uiot::Client::connect(self.options)?)
            }
            Err(uiot::Error::Refused(IdentifierRejected)) => {
                Err(Failure::Uiot(uiot::Error::Unreachable(format!(
                    "the uiot daemon at {} serves another device (check -c and [daemon] socket)",
                    self.socket.display()
                ))))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Loads the configuration and connects as its device along `route`.
pub fn connect(config_flag: Option<PathBuf>, route: Route) -> Result<uiot::Client, Failure> {
    load_options(config_flag)?.connect(route)
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

/// `value` quoted for a message: cut by the library's rule ([`uiot::cut`]:
/// 64 characters, then "... (N bytes)"), control characters escaped so that
/// they cannot mangle a terminal.
pub fn quote(value: &str) -> String {
    let shown = uiot::cut(value);
    let mut out = String::with_capacity(shown.len() + 2);
    out.push('\'');
    for c in shown.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
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
        _ => Err(Failure::Usage(format!(
            "-q {}: QoS must be 0 or 1",
            quote(&text)
        ))),
    }
}

/// Parses a whole number in `1..=max` given to `flag`.
pub fn parse_count(value: OsString, flag: &str, max: u64) -> Result<u64, Failure> {
    let text = value.to_string_lossy();
    match text.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(Failure::Usage(format!(
            "{flag} {}: give a whole number from 1 to {max}",
            quote(&text)
        ))),
    }
}

/// Longest wait any duration option accepts: ten years (3650 days), far
/// below what the clock can add without overflowing.
pub const MAX_SECONDS: u64 = 3650 * 24 * 3600;

/// Parses a duration option given in whole seconds, `1..=MAX_SECONDS`, so
/// that adding it to the clock can never overflow.
pub fn parse_seconds(value: OsString, flag: &str) -> Result<Duration, Failure> {
    let text = value.to_string_lossy();
    match text.parse::<u64>() {
        Ok(n) if (1..=MAX_SECONDS).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(Failure::Usage(format!(
            "{flag} {}: give whole seconds from 1 to {MAX_SECONDS} (10 years)",
            quote(&text)
        ))),
    }
}

/// Parses a topic or filter given to `-t`: valid UTF-8, not empty (an
/// empty topic would resolve to the device's bare /PSN/DSN/) and without
/// control characters (no broker routes them the way a user expects; the
/// library's MQTT rules apply after this).
pub fn parse_topic(value: OsString, what: &str) -> Result<String, Failure> {
    let topic = value.into_string().map_err(|raw| {
        Failure::Usage(format!(
            "-t {}: the {what} must be valid UTF-8",
            quote(&raw.to_string_lossy())
        ))
    })?;
    if topic.is_empty() {
        return Err(Failure::Usage(format!(
            "-t '': the {what} is empty; give one such as 'upload' (the device's /PSN/DSN/upload)"
        )));
    }
    if let Some(c) = topic.chars().find(|c| c.is_control()) {
        return Err(Failure::Usage(format!(
            "-t {}: the {what} holds the control character {}; remove it",
            quote(&topic),
            c.escape_unicode()
        )));
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_cuts_long_values_and_escapes_control_characters() {
        assert_eq!(quote("upload"), "'upload'");
        assert_eq!(quote("up\u{1}\n"), "'up\\u{1}\\n'");
        let long = quote(&"x".repeat(100_000));
        assert!(long.ends_with("... (100000 bytes)'"), "{long}");
        assert!(long.len() < 100);
    }

    #[test]
    fn durations_are_bounded_so_the_clock_cannot_overflow() {
        let max = parse_seconds(OsString::from(MAX_SECONDS.to_string()), "-W").unwrap();
        assert!(std::time::Instant::now().checked_add(max).is_some());
        for bad in ["0", "-1", "1.5", "", "18446744073709551615", "315360001"] {
            assert!(
                matches!(
                    parse_seconds(OsString::from(bad), "-W"),
                    Err(Failure::Usage(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn topics_must_be_utf8_not_empty_and_free_of_control_characters() {
        use std::os::unix::ffi::OsStringExt;
        assert_eq!(parse_topic(OsString::from("up"), "topic").unwrap(), "up");
        for bad in [
            OsString::from(""),
            OsString::from("up\u{7f}"),
            OsString::from("a\tb"),
            OsString::from_vec(b"up\xff".to_vec()),
        ] {
            assert!(
                matches!(parse_topic(bad.clone(), "topic"), Err(Failure::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
