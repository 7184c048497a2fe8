//! `uiot run`: the board daemon. It keeps the device online (registering
//! first when needed, reconnecting forever, refusals retried only every
//! `[reconnect] max`), relays every local `uiot` command over its one
//! login through the local socket, and runs the hooks and serial bridges.
//!
//! Owns: the command line of `uiot run`, its logging set-up, the
//! daemon's life (`daemon`), and the modules it is built from.
//! Must not touch: the library's client, the other subcommands.

mod daemon;
pub mod framing;
pub mod hooks;
mod metrics;
mod ota;
pub mod relay;
pub mod serial;
mod services;
mod session;

use std::io::IsTerminal as _;
use std::path::PathBuf;

use lexopt::prelude::*;

use crate::cli::{self, Failure};

/// `uiot run --help`.
pub const USAGE: &str = "\
usage: uiot run [-c FILE] [-d]

The board daemon: connects as the configured device (registering it first
when only product_secret is set), keeps the [subscribe] topics subscribed,
runs the [hooks] and [serial] bridges, reconnects forever, and serves the
local socket ([daemon] socket, default /run/uiot/uiot.sock): while it runs,
every uiot command of this device (pub, sub, shadow, property, event,
command) goes through it and shares its one login.

Logs one line per event on stderr (no timestamps when stderr is not a
terminal: procd and journald add their own).
Signals: SIGTERM/SIGINT stop (flush, DISCONNECT, exit 0); SIGHUP reloads
the configuration (reconnecting only when [device] or [connection]
changed; a bad file is logged and the old one kept).

options:
  -c, --config FILE   the configuration file
                      (default: $UIOT_CONFIG if set, else /etc/uiot/uiot.ini)
  -d, --debug         log every packet sent and received
  -h, --help          print this help

exit codes: 0 after a clean stop, 64 usage, 69 the local socket cannot be
created, 78 a bad configuration at start";

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let mut config: Option<PathBuf> = None;
    let mut debug = false;
    while let Some(arg) = args.next()? {
        match arg {
            Short('c') | Long("config") => config = Some(args.value()?.into()),
            Short('d') | Long("debug") => debug = true,
            Short('h') | Long("help") => return Err(Failure::Help),
            other => return Err(other.unexpected().into()),
        }
    }
    init_logging(debug);
    let loaded = cli::load_config(config.clone())?;
    daemon::run(config, loaded)
}

/// Info and above (RUST_LOG overrides), one line each; timestamps only on
/// a terminal, since procd's logread and journald add their own.
fn init_logging(debug: bool) {
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    b.target(env_logger::Target::Stderr);
    if !std::io::stderr().is_terminal() {
        b.format_timestamp(None);
    }
    if debug {
        b.filter_module("uiot", log::LevelFilter::Debug);
    }
    let _ = b.try_init();
}
