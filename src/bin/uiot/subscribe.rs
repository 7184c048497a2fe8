//! `uiot sub`: subscribe and print what arrives.
//!
//! Owns: the `sub` subcommand's flags, its output format, and taking no
//! message after the `-C`th.
//! Must not touch: topic rules (the library enforces them).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lexopt::prelude::*;
use uiot::{Error, QoS};

use crate::cli::{self, Failure};

/// Usage of `uiot sub`.
pub const USAGE: &str = "\
usage: uiot sub [-c FILE] -t FILTER [-t FILTER ...] [-q 0|1] [-C COUNT] [-W SECONDS] [-v] [-N] [-d]

Connects as the configured device, subscribes, and prints one message per
line. A FILTER without a leading '/' is relative to the device's own
/PSN/DSN/ (so '-t set' is /PSN/DSN/set).

options:
  -c, --config FILE     the configuration file
                        (default: $UIOT_CONFIG if set, else /etc/uiot/uiot.ini)
  -t, --topic FILTER    what to subscribe to (repeatable; + and # allowed)
  -q, --qos 0|1         requested quality of service (default 0)
  -C, --count COUNT     exit 0 after COUNT messages (1 to 4294967295); no
                        message after the COUNTth is taken or acknowledged,
                        so with clean_session = false the broker keeps the
                        rest for the next run
  -W, --timeout SECONDS exit 75 when SECONDS pass before COUNT messages
                        (without -C: when SECONDS pass); 1 to 315360000
  -v, --verbose         print 'topic payload' instead of the payload alone
  -N, --no-newline      do not print a newline after each message
  -d, --debug           log every packet sent and received to stderr
      --direct          connect on its own even when `uiot run` is running
                        (that logs the daemon out: one login per device)
      --via-daemon      go through `uiot run`'s local socket or fail (69)
  -h, --help            print this help

exit codes: 0 ok, 64 usage, 69 broker unreachable or connection lost,
75 timeout (-W), 77 refused (secret, topic, subscription), 78 config";

struct Args {
    config: Option<PathBuf>,
    filters: Vec<String>,
    qos: QoS,
    count: Option<u64>,
    timeout: Option<Duration>,
    verbose: bool,
    newline: bool,
    debug: bool,
    route: cli::Route,
}

/// Largest `-C`: more than any session will see.
const MAX_COUNT: u64 = u32::MAX as u64;

fn parse_args(args: &mut lexopt::Parser) -> Result<Args, Failure> {
    let mut a = Args {
        config: None,
        filters: Vec::new(),
        qos: QoS::AtMostOnce,
        count: None,
        timeout: None,
        verbose: false,
        newline: true,
        debug: false,
        route: cli::Route::Auto,
    };
    while let Some(arg) = args.next()? {
        match arg {
            Short('c') | Long("config") => a.config = Some(PathBuf::from(args.value()?)),
            Short('t') | Long("topic") => a
                .filters
                .push(cli::parse_topic(args.value()?, "topic filter")?),
            Short('q') | Long("qos") => a.qos = cli::parse_qos(args.value()?)?,
            Short('C') | Long("count") => {
                a.count = Some(cli::parse_count(args.value()?, "-C", MAX_COUNT)?)
            }
            Short('W') | Long("timeout") => {
                a.timeout = Some(cli::parse_seconds(args.value()?, "-W")?)
            }
            Short('v') | Long("verbose") => a.verbose = true,
            Short('N') | Long("no-newline") => a.newline = false,
            Short('d') | Long("debug") => a.debug = true,
            Short('h') | Long("help") => return Err(Failure::Help),
            ref other if cli::Route::flag(other).is_some() => {
                a.route = cli::Route::flag(other).unwrap_or_default();
            }
            other => return Err(other.unexpected().into()),
        }
    }
    if a.filters.is_empty() {
        return Err(Failure::Usage("missing -t FILTER".to_string()));
    }
    Ok(a)
}

/// Runs `uiot sub`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let a = parse_args(args)?;
    cli::init_logging(a.debug);
    let client = cli::connect(a.config.clone(), a.route)?;
    let result = receive(&client, &a);
    let closed = client.disconnect();
    result?;
    closed?;
    Ok(())
}

fn receive(client: &uiot::Client, a: &Args) -> Result<(), Failure> {
    let filters: Vec<(String, QoS)> = a.filters.iter().map(|f| (client.topic(f), a.qos)).collect();
    client.subscribe(&filters)?;
    // parse_seconds keeps -W far below what the clock can add; checked anyway.
    let deadline = match a.timeout {
        None => None,
        Some(t) => Some(Instant::now().checked_add(t).ok_or_else(|| {
            Failure::Usage(format!(
                "-W {}: too far in the future for this system's clock",
                t.as_secs()
            ))
        })?),
    };
    let messages = client.messages();
    let stdout = std::io::stdout();
    let mut received = 0u64;
    // With -C N, no message is taken after the Nth: the library acknowledges
    // a QoS 1 message only when it is taken, so the broker keeps the rest
    // for the next session (clean_session = false).
    while a.count.is_none_or(|c| received < c) {
        let msg = match deadline {
            None => messages.recv()?,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                match messages.recv_timeout(left) {
                    Ok(m) => m,
                    Err(Error::Timeout(_)) => {
                        return Err(Failure::Uiot(Error::Timeout(format!(
                            "-W {}: {received} message(s) arrived{}",
                            a.timeout.map_or(0, |t| t.as_secs()),
                            a.count
                                .map_or(String::new(), |c| format!(" of the {c} expected"))
                        ))))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        received = received.saturating_add(1);
        let mut out = stdout.lock();
        let written = (|| {
            if a.verbose {
                out.write_all(msg.topic.as_bytes())?;
                out.write_all(b" ")?;
            }
            out.write_all(&msg.payload)?;
            if a.newline {
                out.write_all(b"\n")?;
            }
            out.flush()
        })();
        written.map_err(|source| Error::Io {
            context: "writing to standard output".to_string(),
            source,
        })?;
    }
    Ok(())
}
