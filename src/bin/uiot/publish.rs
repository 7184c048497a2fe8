//! `uiot pub`: publish one message, or one per line of standard input.
//!
//! Owns: the `pub` subcommand's flags and where its payloads come from.
//! Must not touch: topic rules and limits (the library enforces them).

use std::ffi::OsString;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;
use uiot::{Error, QoS};

use crate::cli::{self, Failure};

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
  -t, --topic TOPIC  where to publish
  -q, --qos 0|1      quality of service (default 0; UIoT Core has no QoS 2)
  -m, --message MSG  the message
  -f, --file FILE    send the whole file as one message
  -s, --stdin-file   send all of standard input as one message
  -l, --stdin-line   send each line of standard input as a message, over one
                     connection
  -d, --debug        log every packet sent and received to stderr
  -h, --help         print this help

exit codes: 0 ok, 64 usage, 65 bad data (e.g. over 256 KiB), 66 no input file,
69 broker unreachable, 75 timeout, 77 refused (secret, topic), 78 config";

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
}

fn parse_args(args: &mut lexopt::Parser) -> Result<Args, Failure> {
    let (mut config, mut topic, mut qos, mut source, mut debug) =
        (None, None, QoS::AtMostOnce, None, false);
    let set_source = |s: Source, source: &mut Option<Source>| {
        if source.is_some() {
            return Err(Failure::Usage(
                "give only one of -m, -f, -s and -l".to_string(),
            ));
        }
        *source = Some(s);
        Ok(())
    };
    while let Some(arg) = args.next()? {
        match arg {
            Short('c') | Long("config") => config = Some(PathBuf::from(args.value()?)),
            Short('t') | Long("topic") => {
                topic = Some(
                    args.value()?
                        .string()
                        .map_err(|_| Failure::Usage("the topic must be valid UTF-8".to_string()))?,
                )
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
            Short('h') | Long("help") => return Err(Failure::Help),
            other => return Err(other.unexpected().into()),
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
    })
}

fn read_err(what: &str, source: std::io::Error) -> Failure {
    Failure::Uiot(Error::Input {
        context: format!("reading {what}"),
        source,
    })
}

/// Runs `uiot pub`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let a = parse_args(args)?;
    cli::init_logging(a.debug);
    // Read a single payload before connecting, so a missing file costs no
    // connection.
    let single = match &a.source {
        Source::Message(m) => Some(m.as_encoded_bytes().to_vec()),
        Source::File(p) => {
            Some(std::fs::read(p).map_err(|e| read_err(&p.display().to_string(), e))?)
        }
        Source::Stdin => {
            let mut buf = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(|e| read_err("standard input", e))?;
            Some(buf)
        }
        Source::Lines => None,
    };
    let client = cli::connect(a.config)?;
    let topic = client.topic(&a.topic);
    let result = match single {
        Some(payload) => client.publish(&topic, &payload, a.qos),
        None => publish_lines(&client, &topic, a.qos),
    };
    let closed = client.disconnect();
    result?;
    closed?;
    Ok(())
}

/// One message per line of standard input (without its line ending),
/// pipelined; returns once every QoS 1 message is acknowledged.
fn publish_lines(client: &uiot::Client, topic: &str, qos: QoS) -> Result<(), Error> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|source| Error::Input {
                context: "reading standard input".to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        drop(client.start_publish(topic, line.clone(), qos)?);
    }
    let wait = client.options().ack_timeout.max(Duration::from_secs(30));
    client.flush(wait)
}
