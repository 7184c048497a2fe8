//! `uiot check [-c FILE]`: validate the configuration and print the
//! effective settings.
//!
//! Owns: the `check` subcommand: load the file, build the options from it
//! and check them as a start would (secret file, durations, the TLS set-up
//! with its `ca_file`), then print the settings and any warnings.
//! Must not touch: validation rules (the library's `config` module and
//! `Options::check` own them); never prints secrets (the library masks them).

use std::io::Write as _;
use std::path::PathBuf;

use lexopt::prelude::*;

use crate::cli::{self, Failure};

/// Whether this build speaks TLS (the package's `tls` feature).
const TLS_BUILT: bool = cfg!(feature = "tls");

/// Usage of `uiot check`.
pub const USAGE: &str = "\
usage: uiot check [-c FILE]

Reads the configuration file, reports every problem in it (exit 78), or
prints every setting with the defaults filled in and secrets hidden (exit 0).
Warnings (e.g. a secret in a file other users may read) go to stderr.

options:
  -c, --config FILE  the configuration file
                     (default: $UIOT_CONFIG if set, else /etc/uiot/uiot.ini)
  -h, --help         print this help";

/// Parses `-c FILE`/`--config FILE`/`-h` and returns the file to use.
fn parse_args(args: &mut lexopt::Parser) -> Result<Option<PathBuf>, Failure> {
    let mut path = None;
    while let Some(arg) = args.next()? {
        match arg {
            Short('c') | Long("config") => path = Some(PathBuf::from(args.value()?)),
            Short('h') | Long("help") => return Err(Failure::Help),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(path)
}

/// Runs `uiot check`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let flag = parse_args(args)?;
    cli::init_logging(false);
    let mut config = cli::load_config(flag)?;
    if config.connection.tls && !TLS_BUILT {
        return Err(Failure::Uiot(uiot::Error::Config(
            uiot::config::ConfigError {
                problems: vec![format!(
                    "{}: [connection] tls = true: this uiot was built without TLS (cargo feature \
                 `tls`); set tls = false (port 1883), or install a build with TLS",
                    config.path.display()
                )],
            },
        )));
    }
    // Warnings are shown here, on stderr, whatever RUST_LOG says; taken out
    // so that `from_config` does not log them a second time.
    let warnings = config.take_warnings();
    let mut stderr = std::io::stderr().lock();
    for w in &warnings {
        let _ = writeln!(stderr, "uiot: warning: {w}");
    }
    drop(stderr);
    // What a start would do before connecting: read the secret file, check
    // every option and build the TLS set-up (a bad ca_file is found here).
    // A device with only product_secret and no secret_file yet is checked
    // with its registration login: its first start registers it.
    let unregistered = match &config.device.secret {
        uiot::config::SecretSource::ProductSecret { secret_file, .. }
            if std::fs::symlink_metadata(secret_file).is_err() =>
        {
            Some(secret_file.clone())
        }
        _ => None,
    };
    match &unregistered {
        Some(_) => uiot::Options::for_registration(&config)?.check()?,
        None => uiot::Options::from_config(&config)?.check()?,
    }
    let registration = match &unregistered {
        Some(file) => format!(
            "# not registered yet: the first start (or `uiot register`) obtains the device \
             secret and saves it in {}\n",
            file.display()
        ),
        None => String::new(),
    };
    let build = if TLS_BUILT {
        "with TLS"
    } else {
        "without TLS (plain MQTT only)"
    };
    let warned = match warnings.len() {
        0 => String::new(),
        n => format!("# {n} warning(s) on stderr: fix them\n"),
    };
    cli::print(&format!(
        "# {}: OK\n{warned}{registration}# this uiot {} was built {build}\n{}",
        config.path.display(),
        env!("CARGO_PKG_VERSION"),
        config.effective()
    ))
}
