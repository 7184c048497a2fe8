//! `uiot check [-c FILE]`: validate the configuration and print the
//! effective settings.
//!
//! Owns: the `check` subcommand.
//! Must not touch: validation rules (the library's `config` module owns them);
//! never prints secrets (the library masks them).

use std::path::PathBuf;

use lexopt::prelude::*;

use crate::cli::{self, Failure};

/// Usage of `uiot check`.
pub const USAGE: &str = "\
usage: uiot check [-c FILE]

Reads the configuration file, reports every problem in it (exit 78), or
prints every setting with the defaults filled in and secrets hidden (exit 0).

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
    let config = cli::load_config(flag)?;
    if config.connection.tls && !uiot::transport::TLS_AVAILABLE {
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
    let build = if uiot::transport::TLS_AVAILABLE {
        "with TLS"
    } else {
        "without TLS (plain MQTT only)"
    };
    cli::print(&format!(
        "# {}: OK\n# this uiot {} was built {build}\n{}",
        config.path.display(),
        env!("CARGO_PKG_VERSION"),
        config.effective()
    ))
}
