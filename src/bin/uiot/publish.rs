//! `uiot pub`: publish one message, or one per line of standard input.
//!
//! Owns: the `pub` subcommand's flags and the order of its work (options,
//! then the payload within their packet limit, then the connection).
//! Must not touch: topic rules and the exact size rule (the library
//! enforces them), how inputs are read (`input`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;
use uiot::QoS;

use crate::cli::{self, Failure};
use crate::input;

/// Usage of `uiot pub`.
pub const USAGE: &str = "\
usage: uiot pub [-c FILE] -t TOPIC [-q 0|1] (-m MSG | -f FILE | -s | -l) [-d]

Connects as the configured device and publishes. With QoS 1 it exits 0 only
once the broker has acknowledged every message. A TOPIC without a leading
'/' is relative to the device's own /PSN/DSN/ (so '-t upload' is
/PSN/DSN/upload).

options:
  -c, --config FILE  the configuration file
                     (default: $UIOT_CONFIG if set, else /etc/uiot/uiot.ini)
  -t, --topic TOPIC  where to publish (not empty)
  -q, --qos 0|1      quality of service (default 0; UIoT Core has no QoS 2)
  -m, --message MSG  the message
  -f, --file FILE    send the whole file as one message (a regular file, a
                     FIFO or a device; never read past the packet limit)
  -s, --stdin-file   send all of standard input as one message
  -l, --stdin-line   send each line of standard input as a message, over one
                     connection; a refused line stops the input, and the
                     error names its line number and how many were sent
  -d, --debug        log every packet sent and received to stderr
      --http         publish over HTTPS ([connection] http_url) instead of MQTT:
                     one request a message, at most 128 KB each, no login;
                     the token is kept for the next run (6 days) in
                     [connection] http_token_file (default: http.token
                     beside the device secret)
      --direct       connect on its own even when `uiot run` is running
                     (that logs the daemon out: one login per device)
      --via-daemon   go through `uiot run`'s local socket or fail (69)
  -h, --help         print this help

Messages larger than the packet limit ([limits] max_packet, 256 KiB on UIoT
Core) are refused before they are read whole. An empty standard input
(-s </dev/null) sends an empty message, which MQTT allows; a closed one
(-s <&-) is refused with exit 66. (A closed standard input is reopened as
/dev/null for reading and writing, so '<>/dev/null' counts as closed too.)

exit codes: 0 ok, 64 usage, 65 bad data (e.g. over the packet limit),
66 no input (missing file, closed stdin), 69 broker unreachable, 75 timeout,
77 refused (secret, topic), 78 config";

enum Source {
    Message(OsString),
    File(PathBuf),
    Stdin,
    Lines,
}

struct Args {
    config: Option<PathBuf>,
    topic: String,
    qos: QoS,
    source: Source,
    debug: bool,
    route: cli::Route,
    http: bool,
}

fn set_source(s: Source, source: &mut Option<Source>) -> Result<(), Failure> {
    if source.is_some() {
        return Err(Failure::Usage(
            "give only one of -m, -f, -s and -l".to_string(),
        ));
    }
    *source = Some(s);
    Ok(())
}

fn parse_args(args: &mut lexopt::Parser) -> Result<Args, Failure> {
    let (mut config, mut topic, mut qos, mut source, mut debug) =
        (None, None, QoS::AtMostOnce, None, false);
    let mut route = cli::Route::Auto;
    let mut http = false;
    while let Some(arg) = args.next()? {
        match arg {
            Short('c') | Long("config") => config = Some(PathBuf::from(args.value()?)),
            Short('t') | Long("topic") => {
                if topic.is_some() {
                    return Err(Failure::Usage(
                        "give -t once: pub publishes to one topic".to_string(),
                    ));
                }
                topic = Some(cli::parse_topic(args.value()?, "topic")?)
            }
            Short('q') | Long("qos") => qos = cli::parse_qos(args.value()?)?,
            Short('m') | Long("message") => {
                set_source(Source::Message(args.value()?), &mut source)?
            }
            Short('f') | Long("file") => {
                set_source(Source::File(PathBuf::from(args.value()?)), &mut source)?
            }
            Short('s') | Long("stdin-file") => set_source(Source::Stdin, &mut source)?,
            Short('l') | Long("stdin-line") => set_source(Source::Lines, &mut source)?,
            Short('d') | Long("debug") => debug = true,
            Long("http") => http = true,
            Short('h') | Long("help") => return Err(Failure::Help),
            other => match cli::Route::flag(&other) {
                Some(r) => route = r,
                None => return Err(other.unexpected().into()),
            },
        }
    }
    let topic = topic.ok_or_else(|| Failure::Usage("missing -t TOPIC".to_string()))?;
    let source =
        source.ok_or_else(|| Failure::Usage("give the message: -m, -f, -s or -l".to_string()))?;
    Ok(Args {
        config,
        topic,
        qos,
        source,
        debug,
        route,
        http,
    })
}

/// Runs `uiot pub`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let a = parse_args(args)?;
    cli::init_logging(a.debug);
    match a.source {
        Source::Stdin if input::stdin_closed() => return Err(input::closed_stdin("-s").into()),
        Source::Lines if input::stdin_closed() => return Err(input::closed_stdin("-l").into()),
        _ => {}
    }
    if a.http {
        #[cfg(feature = "http")]
        return publish_http(a);
        #[cfg(not(feature = "http"))]
        return Err(Failure::Usage(
            "--http: this uiot was built without HTTP (cargo feature `http`); publish over MQTT, or use a build with it".into(),
        ));
    }
    let target = cli::load_options(a.config)?;
    let options = &target.options;
    // No payload can be larger than the packet limit; the library applies
    // the exact rule (headers and topic included) to every message.
    let limit = options.limits.max_packet;
    // Read a single payload before connecting, so a missing or oversized
    // input costs no connection.
    let single = match &a.source {
        Source::Message(m) => Some(m.as_encoded_bytes().to_vec()),
        Source::File(p) => Some(input::read_file(p, limit)?),
        Source::Stdin => Some(input::read_stdin(limit)?),
        Source::Lines => None,
    };
    let client = target.connect(a.route)?;
    let topic = client.topic(&a.topic);
    let result = match single {
        Some(payload) => client
            .publish(&topic, &payload, a.qos)
            .map_err(Failure::from),
        None => publish_lines(&client, &topic, a.qos, limit),
    };
    let closed = client.disconnect();
    match (result, closed) {
        (Err(f), Err(also)) => {
            log::warn!("while disconnecting: {also}");
            Err(f)
        }
        (r, c) => r.and(c.map_err(Failure::from)),
    }
}

#[cfg(feature = "http")]
/// `--http`: over HTTPS (`[connection] http_url`), one POST a message,
/// no MQTT connection (the daemon's login is not touched either); the
/// token comes from and goes to `[connection] http_token_file`.
fn publish_http(a: Args) -> Result<(), Failure> {
    let config = cli::load_config(a.config)?;
    let up = uiot::platform::http::HttpUplink::from_config(&config)?;
    let limit = uiot::platform::http::MAX_HTTP_PAYLOAD;
    if a.qos == QoS::AtLeastOnce {
        log::info!("--http: -q does not apply (the platform answers every HTTP publish)");
    }
    let single = match &a.source {
        Source::Message(m) => Some(m.as_encoded_bytes().to_vec()),
        Source::File(p) => Some(input::read_file(p, limit)?),
        Source::Stdin => Some(input::read_stdin(limit)?),
        Source::Lines => None,
    };
    if let Some(payload) = single {
        let id = up.publish(&a.topic, &payload)?;
        log::debug!("HTTP publish: MessageID {id}");
        return Ok(());
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::with_capacity(256);
    let mut sent: u64 = 0;
    loop {
        let at = |error| Failure::Line {
            line: sent.saturating_add(1),
            sent,
            error,
        };
        if !input::read_line(&mut input, limit, &mut line).map_err(at)? {
            return Ok(());
        }
        let id = up.publish(&a.topic, &line).map_err(at)?;
        log::debug!(
            "HTTP publish of line {}: MessageID {id}",
            sent.saturating_add(1)
        );
        sent = sent.saturating_add(1);
    }
}

/// One message per line of standard input (without its line ending),
/// pipelined; returns once every message is written (QoS 0) or
/// acknowledged (QoS 1), however long that takes while the broker keeps
/// making progress. A line
/// that cannot be published stops the input: the failure names it.
fn publish_lines(
    client: &uiot::Client,
    topic: &str,
    qos: QoS,
    limit: usize,
) -> Result<(), Failure> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::with_capacity(256);
    let mut sent: u64 = 0;
    loop {
        let at = |error| Failure::Line {
            line: sent.saturating_add(1),
            sent,
            error,
        };
        if !input::read_line(&mut input, limit, &mut line).map_err(at)? {
            break;
        }
        client.enqueue(topic, line.clone(), qos).map_err(at)?;
        sent = sent.saturating_add(1);
    }
    let stall = client.options().ack_timeout.max(Duration::from_secs(30));
    Ok(client.drain(stall)?)
}
