//! Fleet load tool through the library (issue 13; used by scripts/fleet.sh).
//!
//! Owns: N simulated devices in one process, each its own `uiot::Client`
//! with its own login, the in-process checker ("the cloud") that counts what
//! arrives, and the report of a broker outage.
//! Must not touch: the library itself; it measures, it does not tune. Any
//! address but 127.0.0.1.
//!
//! ```text
//! fleet --credentials FILE [--devices N] [--rate R] [--duration S]
//!       [--port P] [--cloud USER:PASS] [--fixed-retry 1s]
//!       [--backoff-min 1s] [--backoff-max 60s]
//! ```
//!
//! - `--credentials FILE`: one device a line, `PSN|DSN|1:SECRET` (the plain
//!   text that `mosquitto_passwd -U` hashes); the first N lines are used.
//!   Each device logs in with ClientID `PSN.DSN`, UserName `PSN|DSN|1` and
//!   its secret, subscribes to `/PSN/DSN/cmd` (QoS 1) and publishes QoS 1 to
//!   `/PSN/DSN/upload`, R messages a second (0: idle devices, for memory).
//! - `--cloud USER:PASS`: the checker, a separate `Client` with that login,
//!   subscribed to `/+/+/upload` with QoS 1; it counts every message per
//!   device and the duplicates. It reconnects every 100 ms, so that after an
//!   outage it is back before the devices.
//! - `--fixed-retry D`: `Reconnect { min: D, max: D }`, a fixed retry like
//!   libmosquitto's default; without it the library's default exponential
//!   back-off with full jitter (min 1 s, max 60 s; `--backoff-min/max`).
//!
//! Once a second it prints `t_s T connected C reconnects_per_s R acked_per_s
//! A checked_per_s K`. When the devices lose the broker it probes the port
//! (a bare TCP connect every 5 ms) until it has been refused and then
//! answers again: that instant is "broker back", and each device's time
//! from there to its `Event::Connected` goes into the histogram printed at
//! the end, with the peak reconnects in one second and in 100 ms. Then the
//! totals: `accepted` (QoS 1 messages PUBACKed by the broker), what the
//! checker received (unique, duplicates), and the accepted messages it never
//! saw, split into those the broker accepted while the checker could not
//! hear them (from 1 s before the checker lost the broker until 100 ms after
//! the first of its own probes, published to itself every 20 ms, came back
//! after its reconnect: in the dead broker's buffers, or routed to no
//! subscriber), those acknowledged after the checker stopped counting
//! (`missing_after_end`: a device still waiting out its back-off when the
//! run ended, whose queue `disconnect` sent) and `missing_unexplained` (accepted while the checker was
//! subscribed and never delivered: a real loss; must be 0). Last, the
//! process's `rss_kib`, `threads` and `fds`.
//!
//! Cost per device: each `Client` runs two threads (the I/O thread with its
//! mio poll loop, and the timer thread on a timerfd) and holds four file
//! descriptors (socket, epoll, waker eventfd, timerfd; measured: 2006 fds
//! for 500 idle clients). The tool adds a fixed few threads (4 publishers,
//! 4 acknowledgement waiters, the monitor, the checker and its prober). So
//! N is bounded by `ulimit -n` (4 N + a few), the threads limit
//! (`ulimit -u`, kernel.threads-max: 2 N + 10) and memory (measured in
//! docs/bench.md); the broker needs one fd per device as well.

// A benchmark tool, not library code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use uiot::{Client, Event, Options, PublishToken, QoS};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "usage: fleet --credentials FILE [--devices N] [--rate R] [--duration S] \
[--port P] [--cloud USER:PASS] [--fixed-retry DUR] [--backoff-min DUR] [--backoff-max DUR]";
/// Publisher threads (and as many acknowledgement waiters).
const PUBLISHERS: usize = 4;
/// How often the monitor looks at every client's events and probes the port.
const MONITOR_STEP: Duration = Duration::from_millis(5);
/// Messages accepted this long before the checker lost the broker may have
/// died in the broker's buffers.
const BEFORE_LOSS: Duration = Duration::from_secs(1);
/// ... and this long after the checker was connected again may have been
/// routed before its subscription was restored.
const AFTER_BACK: Duration = Duration::from_millis(100);
/// The checker publishes to itself here every 20 ms (QoS 0): the first
/// probe back after a reconnect shows its subscription is in place again.
const PROBE_TOPIC: &str = "/fleetchecker/probe/upload";

struct Args {
    devices: usize,
    rate: f64,
    duration: Duration,
    host: String,
    port: u16,
    credentials: String,
    cloud: Option<(String, String)>,
    min: Duration,
    max: Duration,
    fixed: bool,
}

fn duration(s: &str) -> Result<Duration> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|e| format!("duration {s:?}: {e}"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("duration {s:?}: unit must be ms, s or m").into()),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        devices: 100,
        rate: 1.0,
        duration: Duration::from_secs(30),
        host: "127.0.0.1".into(),
        port: 1883,
        credentials: String::new(),
        cloud: None,
        min: Duration::from_secs(1),
        max: Duration::from_secs(60),
        fixed: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--devices" => a.devices = val()?.parse()?,
            "--rate" => a.rate = val()?.parse()?,
            "--duration" => a.duration = duration(&val()?)?,
            "--host" => a.host = val()?,
            "--port" => a.port = val()?.parse()?,
            "--credentials" => a.credentials = val()?,
            "--cloud" => {
                let v = val()?;
                let (u, p) = v.split_once(':').ok_or("--cloud wants USER:PASS")?;
                a.cloud = Some((u.into(), p.into()));
            }
            "--fixed-retry" => {
                let d = duration(&val()?)?;
                a.min = d;
                a.max = d;
                a.fixed = true;
            }
            "--backoff-min" => a.min = duration(&val()?)?,
            "--backoff-max" => a.max = duration(&val()?)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {flag:?}; {USAGE}").into()),
        }
    }
    if a.host != "127.0.0.1" && a.host != "localhost" {
        return Err("the fleet only talks to 127.0.0.1".into());
    }
    if a.credentials.is_empty() && a.devices > 0 {
        return Err(format!("--credentials is required; {USAGE}").into());
    }
    Ok(a)
}

/// A device's login from a `PSN|DSN|1:SECRET` line.
struct Login {
    psn: String,
    dsn: String,
    secret: String,
}

fn read_credentials(path: &str, n: usize) -> Result<Vec<Login>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::with_capacity(n);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, secret) = line.split_once(':').ok_or(format!("{path}: {line:?}"))?;
        let mut parts = user.split('|');
        let (Some(psn), Some(dsn), Some("1")) = (parts.next(), parts.next(), parts.next()) else {
            continue; // the cloud's or a dynamic-registration login
        };
        out.push(Login {
            psn: psn.into(),
            dsn: dsn.into(),
            secret: secret.into(),
        });
        if out.len() == n {
            return Ok(out);
        }
    }
    Err(format!("{path} holds {} device logins, {n} wanted", out.len()).into())
}

/// What the monitor saw of one client's connection.
#[derive(Default)]
struct Conn {
    connected: bool,
    /// `Connected` events after the first connect.
    reconnects: Vec<Instant>,
    disconnects: Vec<Instant>,
}

#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    checked: AtomicU64,
    connected: AtomicUsize,
    reconnects: AtomicU64,
}

fn proc_status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let logins = read_credentials(&args.credentials, args.devices)?;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    println!(
        "fleet devices {} rate {} duration_s {} backoff {} min_ms {} max_ms {}",
        args.devices,
        args.rate,
        args.duration.as_secs_f64(),
        if args.fixed { "fixed" } else { "jitter" },
        args.min.as_millis(),
        args.max.as_millis()
    );

    // The checker first, so that it hears the first messages.
    let mut checker_client = None;
    let seen: Arc<Mutex<HashMap<(u32, u64), u32>>> = Arc::default();
    // When the checker's own probes came back: it hears from then on.
    let probes: Arc<Mutex<Vec<Instant>>> = Arc::default();
    if let Some((user, pass)) = &args.cloud {
        let mut o = Options::new(
            &args.host,
            args.port,
            format!("fleet-checker-{}", std::process::id()),
        );
        o.username = Some(user.clone());
        o.password = Some(pass.clone());
        o.reconnect.min = Duration::from_millis(100);
        o.reconnect.max = Duration::from_millis(100);
        o.message_capacity = 100_000;
        let c = Client::connect(o)?;
        c.subscribe(&[("/+/+/upload", QoS::AtLeastOnce)])?;
        checker_client = Some(Arc::new(c));
    }
    let checker_thread = checker_client.as_ref().map(|c| {
        let messages = c.messages();
        let seen = Arc::clone(&seen);
        let probes = Arc::clone(&probes);
        let counters = Arc::clone(&counters);
        thread::spawn(move || {
            while let Ok(m) = messages.recv() {
                if m.topic == PROBE_TOPIC {
                    probes.lock().unwrap().push(Instant::now());
                    continue;
                }
                let text = String::from_utf8_lossy(&m.payload);
                let mut it = text.split(' ');
                let (Some(Ok(dev)), Some(Ok(seq))) = (
                    it.next().map(str::parse::<u32>),
                    it.next().map(str::parse::<u64>),
                ) else {
                    continue;
                };
                *seen.lock().unwrap().entry((dev, seq)).or_insert(0) += 1;
                counters.checked.fetch_add(1, Ordering::Relaxed);
            }
        })
    });

    // The devices, connected one after another.
    let mut clients = Vec::with_capacity(logins.len());
    for l in &logins {
        let mut o = Options::new(&args.host, args.port, format!("{}.{}", l.psn, l.dsn));
        o.username = Some(format!("{}|{}|1", l.psn, l.dsn));
        o.password = Some(l.secret.clone());
        o.reconnect.min = args.min;
        o.reconnect.max = args.max;
        let c = Client::connect(o).map_err(|e| format!("device {}.{}: {e}", l.psn, l.dsn))?;
        c.subscribe(&[(format!("/{}/{}/cmd", l.psn, l.dsn), QoS::AtLeastOnce)])?;
        clients.push(c);
    }
    let clients = Arc::new(clients);
    counters.connected.store(clients.len(), Ordering::Relaxed);
    println!(
        "connected {} in {:.2} s rss_kib {} threads {} fds {}",
        clients.len(),
        t0.elapsed().as_secs_f64(),
        proc_status("VmRSS:"),
        proc_status("Threads:"),
        fds()
    );
    let start = Instant::now();

    // The monitor: every client's events, and the port probe.
    let checker_events = checker_client.as_ref().map(|c| c.events());
    let prober = checker_client.as_ref().map(|c| {
        let c = Arc::clone(c);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = c.enqueue(PROBE_TOPIC, b"probe".to_vec(), QoS::AtMostOnce);
                thread::sleep(Duration::from_millis(20));
            }
        })
    });
    let monitor = {
        let clients = Arc::clone(&clients);
        let counters = Arc::clone(&counters);
        let stop = Arc::clone(&stop);
        let addr = (args.host.clone(), args.port);
        thread::spawn(move || {
            let events: Vec<_> = clients.iter().map(Client::events).collect();
            let mut conns: Vec<Conn> = (0..clients.len())
                .map(|_| Conn {
                    connected: true,
                    ..Conn::default()
                })
                .collect();
            let mut checker = Conn {
                connected: true,
                ..Conn::default()
            };
            // None: no outage; Some((refused_seen, back_at)).
            let mut probe: Option<(bool, Option<Instant>)> = None;
            let mut backs = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                for (e, c) in events.iter().zip(conns.iter_mut()) {
                    while let Some(ev) = e.try_recv() {
                        match ev {
                            // The first connect's own event comes while
                            // already counted as connected.
                            Event::Connected { .. } if !c.connected => {
                                c.connected = true;
                                c.reconnects.push(now);
                                counters.connected.fetch_add(1, Ordering::Relaxed);
                                counters.reconnects.fetch_add(1, Ordering::Relaxed);
                            }
                            Event::Disconnected(_) => {
                                if c.connected {
                                    counters.connected.fetch_sub(1, Ordering::Relaxed);
                                }
                                c.connected = false;
                                c.disconnects.push(now);
                                if probe.is_none() {
                                    probe = Some((false, None));
                                }
                            }
                            _ => {}
                        }
                    }
                }
                if let Some(e) = &checker_events {
                    while let Some(ev) = e.try_recv() {
                        match ev {
                            Event::Connected { .. } if !checker.connected => {
                                checker.connected = true;
                                checker.reconnects.push(now);
                            }
                            Event::Disconnected(_) => {
                                checker.connected = false;
                                checker.disconnects.push(now);
                            }
                            _ => {}
                        }
                    }
                }
                if let Some((refused, None)) = probe {
                    let up = TcpStream::connect((addr.0.as_str(), addr.1)).is_ok();
                    if !up {
                        probe = Some((true, None));
                    } else if refused {
                        backs.push(Instant::now());
                        probe = Some((true, Some(Instant::now())));
                    }
                }
                // The outage is over once every device is back.
                if let Some((_, Some(_))) = probe {
                    if conns.iter().all(|c| c.connected) {
                        probe = None;
                    }
                }
                thread::sleep(MONITOR_STEP);
            }
            (conns, checker, backs)
        })
    };

    // Publishers and their acknowledgement waiters.
    let n = clients.len();
    let mut publishers = Vec::new();
    let mut waiters = Vec::new();
    if args.rate > 0.0 && n > 0 {
        let period = Duration::from_secs_f64(1.0 / args.rate);
        let per = n.div_ceil(PUBLISHERS);
        for p in 0..PUBLISHERS {
            let range = (p * per).min(n)..((p + 1) * per).min(n);
            if range.is_empty() {
                continue;
            }
            let (tx, rx) = mpsc::channel::<(u32, u64, Instant, PublishToken)>();
            let counters_w = Arc::clone(&counters);
            waiters.push(thread::spawn(move || {
                // The publish time, not the ack's: tokens are waited for in
                // order, so a slow device delays the stamps of the others.
                let mut acks: Vec<(u32, u64, Instant)> = Vec::new();
                for (dev, seq, published, token) in rx {
                    match token.wait() {
                        Ok(()) => {
                            acks.push((dev, seq, published));
                            counters_w.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            counters_w.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                acks
            }));
            let clients = Arc::clone(&clients);
            let counters = Arc::clone(&counters);
            let topics: Vec<String> = logins[range.clone()]
                .iter()
                .map(|l| format!("/{}/{}/upload", l.psn, l.dsn))
                .collect();
            let end = start + args.duration;
            publishers.push(thread::spawn(move || {
                let len = range.len() as f64;
                for k in 0u64.. {
                    for (j, dev) in range.clone().enumerate() {
                        let due = start + period.mul_f64(k as f64 + j as f64 / len);
                        if due >= end {
                            return;
                        }
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                        let payload = format!("{dev} {k}").into_bytes();
                        let published = Instant::now();
                        match clients[dev].start_publish(&topics[j], payload, QoS::AtLeastOnce) {
                            Ok(token) => {
                                let _ = tx.send((dev as u32, k, published, token));
                            }
                            Err(_) => {
                                counters.refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }));
        }
    }

    // Once a second: the line.
    let mut last = (0u64, 0u64, 0u64);
    let end = start + args.duration;
    let mut tick = 1u64;
    while Instant::now() < end {
        let next = start + Duration::from_secs(tick);
        if let Some(w) = next.checked_duration_since(Instant::now()) {
            thread::sleep(w.min(end.saturating_duration_since(Instant::now())));
        }
        let now = (
            counters.reconnects.load(Ordering::Relaxed),
            counters.acked.load(Ordering::Relaxed),
            counters.checked.load(Ordering::Relaxed),
        );
        println!(
            "t_s {tick} connected {} reconnects_per_s {} acked_per_s {} checked_per_s {}",
            counters.connected.load(Ordering::Relaxed),
            now.0 - last.0,
            now.1 - last.1,
            now.2 - last.2
        );
        last = now;
        tick += 1;
    }
    for p in publishers {
        let _ = p.join();
    }
    // Everything published gets its PUBACK (or fails) before the counts.
    // (10 s in all: a device still in its back-off is not waited for.)
    let flush_end = Instant::now() + Duration::from_secs(10);
    for c in clients.iter() {
        let _ = c.flush(flush_end.saturating_duration_since(Instant::now()));
    }
    let rss = proc_status("VmRSS:");
    let threads = proc_status("Threads:");
    let fd_count = fds();
    // Let the checker catch up with the last messages.
    let mut quiet = 0;
    let mut prev = counters.checked.load(Ordering::Relaxed);
    while quiet < 5 {
        thread::sleep(Duration::from_millis(100));
        let now = counters.checked.load(Ordering::Relaxed);
        quiet = if now == prev { quiet + 1 } else { 0 };
        prev = now;
    }
    // Acknowledged after this (a device still in its back-off at the end,
    // its messages sent by `disconnect`): the checker no longer counts.
    let checker_stopped = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let (conns, checker, backs) = monitor.join().map_err(|_| "monitor panicked")?;
    for c in clients.iter() {
        let _ = c.disconnect();
    }
    let mut acks = Vec::new();
    for w in waiters {
        acks.extend(w.join().map_err(|_| "waiter panicked")?);
    }
    if let Some(p) = prober {
        let _ = p.join();
    }
    if let Some(c) = &checker_client {
        let _ = c.disconnect();
    }
    drop(checker_client);
    if let Some(t) = checker_thread {
        let _ = t.join();
    }

    report_reconnects(&conns, &backs);

    // Totals.
    let seen = seen.lock().unwrap();
    let unique = seen.len();
    let dups: u64 = seen.values().map(|&c| u64::from(c.saturating_sub(1))).sum();
    // When the checker could not hear: [lost - 1 s, back + 100 ms].
    let mut deaf: Vec<(Instant, Instant)> = Vec::new();
    let probes = probes.lock().unwrap();
    for lost in &checker.disconnects {
        let back = checker
            .reconnects
            .iter()
            .find(|b| *b > lost)
            .and_then(|b| probes.iter().find(|p| *p > b))
            .map_or(Instant::now() + Duration::from_secs(3600), |b| {
                *b + AFTER_BACK
            });
        deaf.push((lost.checked_sub(BEFORE_LOSS).unwrap_or(*lost), back));
    }
    let (mut away, mut late, mut unexplained) = (0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    for (dev, seq, published) in &acks {
        if seen.contains_key(&(*dev, *seq)) {
            continue;
        }
        // When it went to the broker: at once, or (published while the
        // device was offline) when the device was connected again.
        let c = &conns[*dev as usize];
        let down = c.disconnects.iter().rev().find(|d| *d <= published);
        let at = match down {
            Some(d) if !c.reconnects.iter().any(|r| r > d && r <= published) => {
                // Not back before the monitor stopped: sent after the end.
                c.reconnects
                    .iter()
                    .find(|r| *r > published)
                    .copied()
                    .unwrap_or_else(Instant::now)
            }
            _ => *published,
        };
        if deaf.iter().any(|(a, b)| at >= *a && at <= *b) {
            away += 1;
        } else if at >= checker_stopped {
            late += 1;
        } else {
            unexplained += 1;
            if examples.len() < 5 {
                examples.push(format!("{dev}/{seq}"));
            }
        }
    }
    let accepted = acks.len() as u64;
    println!(
        "accepted {accepted} failed {} refused {} checker_unique {unique} duplicates {dups} \
         missing {} missing_checker_away {away} missing_after_end {late} \
         missing_unexplained {unexplained}{}",
        counters.failed.load(Ordering::Relaxed),
        counters.refused.load(Ordering::Relaxed),
        away + late + unexplained,
        if examples.is_empty() {
            String::new()
        } else {
            format!(" (e.g. {})", examples.join(" "))
        }
    );
    println!("rss_kib {rss} threads {threads} fds {fd_count} devices {n}");
    Ok(())
}

/// The histogram of reconnect times after each outage, and the peaks.
fn report_reconnects(conns: &[Conn], backs: &[Instant]) {
    let total: usize = conns.iter().map(|c| c.reconnects.len()).sum();
    println!("outages {} reconnects {total}", backs.len());
    for (o, back) in backs.iter().enumerate() {
        let until = backs.get(o + 1).copied();
        // Each device's first Connected after the broker was back.
        let mut times: Vec<Duration> = conns
            .iter()
            .filter_map(|c| {
                c.reconnects
                    .iter()
                    .find(|t| *t >= back && until.is_none_or(|u| **t < u))
                    .map(|t| *t - *back)
            })
            .collect();
        times.sort();
        if times.is_empty() {
            println!("outage {} no reconnects", o + 1);
            continue;
        }
        let q = |p: f64| {
            let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
            times[i].as_secs_f64() * 1e3
        };
        let peak = |window: Duration| {
            let mut best = 0;
            let mut lo = 0;
            for hi in 0..times.len() {
                while times[hi] - times[lo] >= window {
                    lo += 1;
                }
                best = best.max(hi - lo + 1);
            }
            best
        };
        println!(
            "outage {} devices_back {} of {} first_ms {:.0} p50_ms {:.0} p90_ms {:.0} p99_ms {:.0} \
             last_ms {:.0} peak_per_1s {} peak_per_100ms {}",
            o + 1,
            times.len(),
            conns.len(),
            q(0.0),
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0),
            peak(Duration::from_secs(1)),
            peak(Duration::from_millis(100))
        );
        // Histogram in 500 ms buckets up to the last one.
        let bucket = Duration::from_millis(500);
        let buckets = (times[times.len() - 1].as_millis() / bucket.as_millis()) as usize + 1;
        let mut counts = vec![0usize; buckets];
        for t in &times {
            counts[(t.as_millis() / bucket.as_millis()) as usize] += 1;
        }
        let widest = counts.iter().copied().max().unwrap_or(1).max(1);
        for (b, c) in counts.iter().enumerate() {
            if *c == 0 {
                continue;
            }
            println!(
                "  {:>6}-{:<6} ms {:>6} {}",
                b * 500,
                (b + 1) * 500,
                c,
                "#".repeat((c * 50).div_ceil(widest))
            );
        }
    }
}
