//! A TCP proxy on 127.0.0.1 that makes a link flaky on a seeded schedule,
//! for scripts/soak.sh (`uiot run` through it to a local broker).
//!
//! Owns: its listener, the relay threads, the schedule of events.
//! Must not touch: anything but 127.0.0.1 (it listens and connects there only).
//!
//! `flaky_proxy --target PORT --seed S --chaos SECS [--port-file FILE]`
//! listens on a free port of 127.0.0.1 (written to FILE and printed as
//! `listening 127.0.0.1:N`), relays every connection to 127.0.0.1:PORT and,
//! for the first SECS seconds, repeats: pass traffic for 5..30 s, then one
//! event drawn from a PRNG seeded with S (the same seed gives the same
//! schedule):
//! - `cut`: every open connection is closed at once (both ends see it);
//! - `pause D`: nothing is read for D (0.5..8 s) and then everything passes,
//!   late but whole (a congested link; TCP keeps the bytes);
//! - `blackhole D`: for D (2..50 s) connections stay open and new ones are
//!   accepted, but every byte is swallowed both ways, and so is a close (a
//!   FIN from one end does not reach the other); at its end the
//!   connections that lost bytes are closed (a TCP connection that lost data
//!   is dead: real TCP would have given up retransmitting, it never skips
//!   bytes), new ones pass again.
//!
//! After SECS it prints `healed` and passes everything until it is killed.
//! Each line starts with a UTC timestamp and the seconds since start;
//! scripts/soak.sh counts the events by kind from these lines.

// A test tool, not library code: a poisoned lock here is a bug to see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::error::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PASS: u8 = 0;
const PAUSE: u8 = 1;
const BLACKHOLE: u8 = 2;

/// Passing time between two events, ms.
const GAP_MS: (u64, u64) = (5_000, 30_000);
/// Length of a pause, ms.
const PAUSE_MS: (u64, u64) = (500, 8_000);
/// Length of a black hole, ms.
const BLACKHOLE_MS: (u64, u64) = (2_000, 50_000);
/// How often a paused relay looks again.
const POLL: Duration = Duration::from_millis(20);

/// splitmix64: small, seeded, good enough for a schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in lo..=hi.
    fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// One relayed connection: both sockets, and whether it lost bytes.
struct Conn {
    client: TcpStream,
    server: TcpStream,
    tainted: bool,
}

#[derive(Clone)]
struct Shared {
    mode: Arc<AtomicU8>,
    conns: Arc<Mutex<HashMap<u64, Conn>>>,
    next_id: Arc<AtomicU64>,
    start: Instant,
}

impl Shared {
    fn say(&self, what: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let el = self.start.elapsed();
        println!(
            "{} +{}.{:03}s {what}",
            utc(now),
            el.as_secs(),
            el.subsec_millis()
        );
        let _ = std::io::stdout().flush();
    }

    /// Closes the connections `which` selects; returns how many.
    fn close(&self, which: impl Fn(&Conn) -> bool) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let ids: Vec<u64> = conns
            .iter()
            .filter(|(_, c)| which(c))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some(c) = conns.remove(id) {
                let _ = c.client.shutdown(Shutdown::Both);
                let _ = c.server.shutdown(Shutdown::Both);
            }
        }
        ids.len()
    }
}

/// `2026-12-07T12:00:00.000Z` from time since the epoch (civil from days,
/// H. Hinnant's algorithm).
fn utc(t: Duration) -> String {
    let secs = t.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        t.subsec_millis()
    )
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut target = None;
    let mut seed = None;
    let mut chaos = None;
    let mut port_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--target" => target = Some(val()?.parse::<u16>()?),
            "--seed" => seed = Some(val()?.parse::<u64>()?),
            "--chaos" => chaos = Some(val()?.parse::<u64>()?),
            "--port-file" => port_file = Some(val()?),
            _ => return Err(format!("unknown argument {a}; usage: flaky_proxy --target PORT --seed S --chaos SECS [--port-file FILE]").into()),
        }
    }
    let (Some(target), Some(seed), Some(chaos)) = (target, seed, chaos) else {
        return Err(
            "usage: flaky_proxy --target PORT --seed S --chaos SECS [--port-file FILE]".into(),
        );
    };

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let sh = Shared {
        mode: Arc::new(AtomicU8::new(PASS)),
        conns: Arc::default(),
        next_id: Arc::default(),
        start: Instant::now(),
    };
    if let Some(f) = port_file {
        std::fs::write(&f, format!("{port}\n"))?;
    }
    sh.say(&format!(
        "listening 127.0.0.1:{port} -> 127.0.0.1:{target}, seed {seed}, chaos {chaos} s"
    ));

    let acc = sh.clone();
    std::thread::spawn(move || accept_loop(&listener, target, &acc));

    let mut rng = Rng(seed);
    let end = sh.start + Duration::from_secs(chaos);
    loop {
        let gap = Duration::from_millis(rng.range(GAP_MS));
        let kind = rng.next() % 3;
        let len = match kind {
            1 => rng.range(PAUSE_MS),
            2 => rng.range(BLACKHOLE_MS),
            _ => 0,
        };
        let len = Duration::from_millis(len);
        if Instant::now() + gap + len >= end {
            break;
        }
        std::thread::sleep(gap);
        match kind {
            1 => {
                sh.mode.store(PAUSE, Ordering::SeqCst);
                sh.say(&format!("pause {:.1} s", len.as_secs_f64()));
                std::thread::sleep(len);
                sh.mode.store(PASS, Ordering::SeqCst);
                sh.say("pause end");
            }
            2 => {
                sh.mode.store(BLACKHOLE, Ordering::SeqCst);
                sh.say(&format!("blackhole {:.1} s", len.as_secs_f64()));
                std::thread::sleep(len);
                sh.mode.store(PASS, Ordering::SeqCst);
                let n = sh.close(|c| c.tainted);
                sh.say(&format!(
                    "blackhole end, closed {n} connections that lost bytes"
                ));
            }
            _ => {
                let n = sh.close(|_| true);
                sh.say(&format!("cut {n} connections"));
            }
        }
    }
    if let Some(rest) = end.checked_duration_since(Instant::now()) {
        std::thread::sleep(rest);
    }
    sh.mode.store(PASS, Ordering::SeqCst);
    sh.say("healed");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn accept_loop(listener: &TcpListener, target: u16, sh: &Shared) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let server = match TcpStream::connect(("127.0.0.1", target)) {
            Ok(s) => s,
            Err(e) => {
                sh.say(&format!("cannot reach 127.0.0.1:{target}: {e}"));
                continue;
            }
        };
        let id = sh.next_id.fetch_add(1, Ordering::SeqCst);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        sh.conns.lock().unwrap().insert(
            id,
            Conn {
                client,
                server,
                tainted: false,
            },
        );
        sh.say(&format!("accept #{id}"));
        let (a, b) = (sh.clone(), sh.clone());
        std::thread::spawn(move || relay(id, c2, s2, &a));
        std::thread::spawn(move || relay(id, s3, c3, &b));
    }
}

/// Copies `from` to `to` under the current mode until either end closes.
fn relay(id: u64, mut from: TcpStream, mut to: TcpStream, sh: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        while sh.mode.load(Ordering::SeqCst) == PAUSE {
            std::thread::sleep(POLL);
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A pause that began while this read waited holds the bytes too.
        while sh.mode.load(Ordering::SeqCst) == PAUSE {
            std::thread::sleep(POLL);
        }
        if sh.mode.load(Ordering::SeqCst) == BLACKHOLE {
            if let Some(c) = sh.conns.lock().unwrap().get_mut(&id) {
                c.tainted = true;
            }
            continue;
        }
        let Some(chunk) = buf.get(..n) else { break };
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    if sh.mode.load(Ordering::SeqCst) == BLACKHOLE {
        // A black hole passes no FIN either: the other end stays open and
        // must find out by itself; the black hole's end closes it.
        if let Some(c) = sh.conns.lock().unwrap().get_mut(&id) {
            c.tainted = true;
        }
        return;
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
    if sh.conns.lock().unwrap().remove(&id).is_some() {
        sh.say(&format!("closed #{id}"));
    }
}
