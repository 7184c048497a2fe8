//! Serial line -> cloud latency through `uiot run` (used by
//! scripts/bench.sh, against a daemon whose `[serial]` port is one end of
//! a socat pseudo-terminal pair on a local broker).
//!
//! Owns: the serial-latency row of the benchmark table (docs/bench.md).
//! Must not touch: the daemon; it only writes lines and times their arrival.
//!
//! `bench_serial TTY PORT TOPIC COUNT` subscribes on 127.0.0.1:PORT (an
//! anonymous client, limits off) to TOPIC, then COUNT times writes one
//! line (`N\n`) to TTY (the other end of the daemon's port) and waits for
//! the message carrying N, after 20 untimed lines. Prints
//! `serial_median_us M serial_p99_us P` (nearest rank). A pty has no baud
//! rate: what this measures is the daemon's path (read, frame, publish,
//! broker), not the wire time of a real UART (at 115200 baud a 10-byte
//! line adds about 0.9 ms).

// A benchmark tool, not library code: indexing into the sorted times it
// collected itself, and the rank cast of a bounded float, are fine here.
#![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::error::Error;
use std::io::Write;
use std::time::{Duration, Instant};

use uiot::{Client, Limits, Options, QoS};

const WARM_UP: u32 = 20;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tty, port, topic, count] = args.as_slice() else {
        return Err("usage: bench_serial TTY PORT TOPIC COUNT".into());
    };
    let (port, count): (u16, u32) = (port.parse()?, count.parse()?);
    if count == 0 {
        return Err("COUNT must be at least 1".into());
    }
    let mut o = Options::new("127.0.0.1", port, "bench-serial-sub");
    o.limits = Limits::unlimited();
    let client = Client::connect(o)?;
    client.subscribe(&[(topic.as_str(), QoS::AtMostOnce)])?;
    let messages = client.messages();
    let mut tty = std::fs::OpenOptions::new().write(true).open(tty)?;
    let mut times = Vec::with_capacity(count as usize);
    for n in 0..WARM_UP + count {
        let line = format!("{n}\n");
        let t0 = Instant::now();
        tty.write_all(line.as_bytes())?;
        loop {
            let m = messages.recv_timeout(Duration::from_secs(5))?;
            if m.payload == line.trim_end().as_bytes() {
                break;
            }
        }
        if n >= WARM_UP {
            times.push(t0.elapsed());
        }
    }
    times.sort();
    let rank = |q: f64| times[((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "serial_median_us {:.1} serial_p99_us {:.1}",
        rank(0.5).as_secs_f64() * 1e6,
        rank(0.99).as_secs_f64() * 1e6
    );
    client.disconnect()?;
    Ok(())
}
