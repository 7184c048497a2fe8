//! Publisher benchmark through the library API (used by scripts/bench.sh).
//!
//! Owns: the library-API rows of the benchmark table (docs/bench.md).
//! Must not touch: the library itself; it measures, it does not tune.
//!
//! `bench_pub PORT QOS COUNT SIZE [rtt|raw-rtt|connect|reconnect]` talks to
//! the broker on PORT (127.0.0.1, or `BENCH_HOST`) as an anonymous client
//! with the limits off:
//! - without a mode: pipelines COUNT messages of SIZE bytes, waits until all
//!   are written (QoS 0) or acknowledged (QoS 1), and prints
//!   `msgs_per_s N seconds S` (connecting is not timed); with an on-disk
//!   queue (`BENCH_QUEUE_DIR`) also `stored N bytes_written B
//!   bytes_per_msg X` from `Client::queue_stats` after `disconnect` (which
//!   writes the acknowledgements still buffered);
//! - `rtt`: COUNT blocking QoS 1 publishes one after another, prints
//!   `rtt_median_us M rtt_p99_us P`;
//! - `raw-rtt`: the same round trips over a bare blocking `TcpStream` with
//!   hand-made packets and no client library, i.e. the floor set by the
//!   broker and loopback TCP, printed the same way (plain TCP only);
//! - `connect`: COUNT times `Client::connect` then `disconnect`, timing only
//!   `Client::connect` (thread start, TCP connect, TLS handshake if any,
//!   CONNECT until CONNACK); prints `connect_median_us M connect_p99_us P`.
//!   QOS and SIZE are ignored.
//! - `reconnect`: connects with reconnect back-off 100 ms to 1 s (and
//!   `stable_after` 1 s, so every outage starts the back-off afresh, as for
//!   a client that has been up for a while), prints `connected`, then COUNT
//!   times: waits for `Event::Disconnected` (someone restarts the broker),
//!   polls PORT with a bare `TcpStream::connect` every 10 ms, stamps when
//!   it answers, waits for `Event::Connected` and prints `reconnected I
//!   after_up_ms A down_ms D connected_epoch_s T` (A: port answering until
//!   `Connected`; D: `Disconnected` until the port answered; T: the wall
//!   clock at `Connected`, seconds since 1970). At the end it prints
//!   `reconnect_median_us M reconnect_p99_us P` over the A values. A
//!   `Connected` seen before the poll found the port counts as 0 (below the
//!   10 ms poll step). Caveat: right after a `kill -9` the dying broker's
//!   listener can still accept for a moment after the client's connection
//!   closed, so a first probe may succeed too early (D near 0, A too long);
//!   scripts/bench.sh therefore times from its own poll and T. QOS and SIZE
//!   are ignored; plain TCP or TLS.
//!
//! Environment: `BENCH_TOPIC` (default `bench/lib`), `BENCH_USER` and
//! `BENCH_PASS` (optional login), `BENCH_CA` (a PEM CA file: connect over
//! TLS, trusting only that CA, with the host name checked), `BENCH_HOST`
//! (default `localhost` with `BENCH_CA`, else `127.0.0.1`; the certificate
//! must name it), `BENCH_QUEUE_DIR` (QoS 1 messages go through the on-disk
//! queue in this directory, which must be empty or absent), `BENCH_FSYNC`
//! (with `BENCH_QUEUE_DIR`: `always`, the default, or a number of
//! milliseconds for `fsync = interval_ms N`), `BENCH_STABLE_AFTER_MS`
//! (`reconnect` mode: `reconnect.stable_after`, default 1000; other events
//! than `Connected`/`Disconnected` go to stderr).

// A benchmark tool, not library code: short casts of counts and indexing
// into buffers it built itself are fine here (see Cargo.toml's [lints]).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use uiot::{Client, Event, Limits, Options, QoS, TlsOptions};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "usage: bench_pub PORT QOS COUNT SIZE [rtt|raw-rtt|connect|reconnect]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let port: u16 = arg(0, "1883")
        .parse()
        .map_err(|e| format!("PORT: {e}; {USAGE}"))?;
    let qos = QoS::from_u8(arg(1, "0").parse()?).ok_or("QoS must be 0 or 1")?;
    let count: usize = arg(2, "100000")
        .parse()
        .map_err(|e| format!("COUNT: {e}; {USAGE}"))?;
    let size: usize = arg(3, "64")
        .parse()
        .map_err(|e| format!("SIZE: {e}; {USAGE}"))?;
    let mode = arg(4, "");
    if count == 0 {
        return Err(format!("COUNT must be at least 1; {USAGE}").into());
    }
    let topic = std::env::var("BENCH_TOPIC").unwrap_or_else(|_| "bench/lib".into());
    let payload = vec![b'x'; size];
    let client_id = format!("bench-{}", std::process::id());
    let ca_file = std::env::var_os("BENCH_CA").map(std::path::PathBuf::from);
    let default_host = if ca_file.is_some() {
        "localhost"
    } else {
        "127.0.0.1"
    };
    let host = std::env::var("BENCH_HOST").unwrap_or_else(|_| default_host.into());

    if mode == "raw-rtt" {
        if ca_file.is_some() {
            return Err("raw-rtt speaks plain TCP only; unset BENCH_CA".into());
        }
        let times = raw_round_trips(&host, port, &client_id, &topic, &payload, count)?;
        print_quantiles("rtt", times);
        return Ok(());
    }
    if !["", "rtt", "connect", "reconnect"].contains(&mode.as_str()) {
        return Err(format!("unknown mode '{mode}'; {USAGE}").into());
    }

    let mut options = Options::new(host, port, client_id);
    if let (Ok(user), Ok(pass)) = (std::env::var("BENCH_USER"), std::env::var("BENCH_PASS")) {
        options.username = Some(user);
        options.password = Some(pass);
    }
    options.limits = Limits::unlimited();
    options.tls = ca_file.map(|path| TlsOptions {
        ca_file: Some(path),
        verify_hostname: true,
    });
    if let Some(dir) = std::env::var_os("BENCH_QUEUE_DIR") {
        options.queue.dir = Some(dir.into());
        options.queue.fsync_interval = match std::env::var("BENCH_FSYNC").as_deref() {
            Err(_) | Ok("always") => None,
            Ok(ms) => Some(Duration::from_millis(ms.parse().map_err(|e| {
                format!("BENCH_FSYNC must be 'always' or milliseconds, got '{ms}': {e}")
            })?)),
        };
    }

    if mode == "connect" {
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let t = Instant::now();
            let client = Client::connect(options.clone())?;
            times.push(t.elapsed());
            client.disconnect()?;
        }
        print_quantiles("connect", times);
        return Ok(());
    }

    if mode == "reconnect" {
        let times = reconnect_times(options, count)?;
        print_quantiles("reconnect", times);
        return Ok(());
    }

    let client = Client::connect(options)?;
    if mode == "rtt" {
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let t = Instant::now();
            client.publish(&topic, &payload, QoS::AtLeastOnce)?;
            times.push(t.elapsed());
        }
        print_quantiles("rtt", times);
    } else {
        let t = Instant::now();
        for _ in 0..count {
            drop(client.start_publish(&topic, payload.clone(), qos)?);
        }
        client.flush(Duration::from_secs(120))?;
        let secs = t.elapsed().as_secs_f64();
        // Counted after disconnect, which writes the buffered acks too.
        client.disconnect()?;
        let stats = client.queue_stats();
        if client.options().queue.dir.is_some() {
            let per_msg = stats.bytes_written as f64 / stats.stored.max(1) as f64;
            println!(
                "msgs_per_s {:.0} seconds {:.3} stored {} bytes_written {} bytes_per_msg {:.1}",
                count as f64 / secs,
                secs,
                stats.stored,
                stats.bytes_written,
                per_msg
            );
        } else {
            println!("msgs_per_s {:.0} seconds {:.3}", count as f64 / secs, secs);
        }
        return Ok(());
    }
    client.disconnect()?;
    Ok(())
}

/// Connects with a short back-off, then times `count` reconnects after
/// broker restarts done by someone else (see the module comment).
fn reconnect_times(mut options: Options, count: usize) -> Result<Vec<Duration>> {
    options.reconnect.enabled = true;
    options.reconnect.min = Duration::from_millis(100);
    options.reconnect.max = Duration::from_secs(1);
    options.reconnect.stable_after = match std::env::var("BENCH_STABLE_AFTER_MS") {
        Ok(ms) => Duration::from_millis(
            ms.parse()
                .map_err(|e| format!("BENCH_STABLE_AFTER_MS must be milliseconds: {e}"))?,
        ),
        Err(_) => Duration::from_secs(1),
    };
    let addr = (options.host.clone(), options.port);
    let client = Client::connect(options)?;
    let events = client.events();
    println!("connected");
    let wait = Duration::from_secs(60);
    let step = Duration::from_millis(10);
    let mut times = Vec::with_capacity(count);
    for i in 1..=count {
        // Wait for the broker to go away.
        let down_at = loop {
            match events.recv_timeout(wait) {
                Some(Event::Disconnected(_)) => break Instant::now(),
                Some(other) => eprintln!("event {other:?}"),
                None => return Err(format!("restart {i}: no Disconnected within 60 s").into()),
            }
        };
        // Poll the port; whichever comes first, the port or Connected.
        let deadline = down_at + wait;
        let mut connected_early = false;
        let up_at = loop {
            if TcpStream::connect((addr.0.as_str(), addr.1)).is_ok() {
                break Instant::now();
            }
            if Instant::now() > deadline {
                return Err(format!("restart {i}: the port did not answer within 60 s").into());
            }
            match events.recv_timeout(step) {
                Some(Event::Connected { .. }) => {
                    connected_early = true;
                    break Instant::now();
                }
                Some(other) => eprintln!("event {other:?}"),
                None => {}
            }
        };
        let connected_at = if connected_early {
            up_at
        } else {
            loop {
                match events.recv_timeout(wait) {
                    Some(Event::Connected { .. }) => break Instant::now(),
                    Some(other) => eprintln!("event {other:?}"),
                    None => {
                        return Err(format!(
                            "restart {i}: no Connected within 60 s of the port answering"
                        )
                        .into())
                    }
                }
            }
        };
        let after_up = connected_at - up_at;
        // Wall-clock time of `Connected`, for comparing with stamps taken
        // by another process (the bench script).
        let epoch = std::time::SystemTime::now()
            .checked_sub(connected_at.elapsed())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        println!(
            "reconnected {i} after_up_ms {:.1} down_ms {:.1} connected_epoch_s {epoch:.6}",
            after_up.as_secs_f64() * 1e3,
            (up_at - down_at).as_secs_f64() * 1e3
        );
        times.push(after_up);
    }
    client.disconnect()?;
    Ok(times)
}

/// Prints `NAME_median_us M NAME_p99_us P` (nearest rank) of the times.
fn print_quantiles(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let pick = |q: f64| {
        let rank = ((times.len() as f64 * q).ceil() as usize).max(1);
        rank.min(times.len())
            .checked_sub(1)
            .and_then(|i| times.get(i))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{name}_median_us {:.1} {name}_p99_us {:.1}",
        pick(0.5),
        pick(0.99)
    );
}

/// Appends an MQTT remaining-length field.
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

/// Appends an MQTT string (two-byte length, then the bytes).
fn put_str(out: &mut Vec<u8>, s: &[u8]) -> Result<()> {
    let len = u16::try_from(s.len()).map_err(|_| "string over 65535 bytes")?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
    Ok(())
}

/// QoS 1 round trips without the library: CONNECT, then COUNT times
/// PUBLISH and a blocking read of its 4-byte PUBACK, then DISCONNECT.
fn raw_round_trips(
    host: &str,
    port: u16,
    client_id: &str,
    topic: &str,
    payload: &[u8],
    count: usize,
) -> Result<Vec<Duration>> {
    let mut s = TcpStream::connect((host, port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;

    let mut body = Vec::new();
    put_str(&mut body, b"MQTT")?;
    body.extend_from_slice(&[4, 0x02, 0, 60]); // 3.1.1, clean session, keep-alive 60 s
    put_str(&mut body, client_id.as_bytes())?;
    let mut connect = vec![0x10];
    put_len(&mut connect, body.len());
    connect.extend_from_slice(&body);
    s.write_all(&connect)?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack)?;
    if connack != [0x20, 2, 0, 0] {
        return Err(format!("broker refused the raw CONNECT: CONNACK {connack:02x?}").into());
    }

    let mut times = Vec::with_capacity(count);
    let mut packet = Vec::with_capacity(payload.len() + topic.len() + 16);
    let mut ack = [0u8; 4];
    for i in 0..count {
        let id = (i % 65535 + 1) as u16;
        packet.clear();
        packet.push(0x32); // PUBLISH, QoS 1
        put_len(&mut packet, 2 + topic.len() + 2 + payload.len());
        put_str(&mut packet, topic.as_bytes())?;
        packet.extend_from_slice(&id.to_be_bytes());
        packet.extend_from_slice(payload);
        let t = Instant::now();
        s.write_all(&packet)?;
        s.read_exact(&mut ack)?;
        times.push(t.elapsed());
        let [hi, lo] = id.to_be_bytes();
        if ack != [0x40, 2, hi, lo] {
            return Err(format!("expected PUBACK for id {id}, got {ack:02x?}").into());
        }
    }
    s.write_all(&[0xe0, 0])?;
    Ok(times)
}
