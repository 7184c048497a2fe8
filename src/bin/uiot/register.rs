//! `uiot register [-c FILE]`: dynamic registration, on purpose.
//!
//! Owns: the `register` subcommand (every other command registers on first
//! use through `cli::load_options`).
//! Must not touch: the registration itself (`uiot::platform::dynreg`);
//! never prints the secret.

use std::path::PathBuf;

use lexopt::prelude::*;
use uiot::config::SecretSource;
use uiot::platform::dynreg::{self, Registered};

use crate::cli::{self, Failure};

/// Usage of `uiot register`.
pub const USAGE: &str = "\
usage: uiot register [-c FILE]

Dynamic registration: with product_secret and secret_file in [device], logs
in as PSN|DSN|2, obtains the device secret and saves it in secret_file
(mode 0600, written atomically). Prints {\"registered\":\"now\"|\"before\",
\"secret_file\":...} on one line; \"before\" when secret_file already exists.
Other commands register on first use too. The platform registers a device
only once: keep secret_file; a lost one needs an operator to reset the
device to inactivated in the UIoT Core console.
Exit 77 when the platform refuses (RetCode and its meaning on stderr).

options:
  -c, --config FILE  the configuration file
                     (default: $UIOT_CONFIG if set, else /etc/uiot/uiot.ini)
  -d, --debug        log every packet (never a secret)
  -h, --help         print this help";

/// Runs `uiot register`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let mut path = None;
    let mut debug = false;
    while let Some(arg) = args.next()? {
        match arg {
            Short('c') | Long("config") => path = Some(PathBuf::from(args.value()?)),
            Short('d') | Long("debug") => debug = true,
            Short('h') | Long("help") => return Err(Failure::Help),
            other => return Err(other.unexpected().into()),
        }
    }
    cli::init_logging(debug);
    let config = cli::load_config(path)?;
    let done = dynreg::register_config(&config)?;
    let file = match &config.device.secret {
        SecretSource::ProductSecret { secret_file, .. } => secret_file.display().to_string(),
        SecretSource::DeviceSecret(_) => String::new(),
    };
    let how = match done {
        Registered::Now => "now",
        Registered::Before => "before",
    };
    let line = serde_json::json!({ "registered": how, "secret_file": file });
    cli::print(&format!("{line}\n"))
}
