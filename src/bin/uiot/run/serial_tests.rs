//! Tests of the serial bridge (`serial.rs`) over pseudo-terminal pairs: the
//! bridge opens the slave as its port, the test plays the device on the
//! master. No hardware.
//!
//! Owns: the pty helpers, the log capture, the bridge tests.
//! Must not touch: the framing rules (their own tests are in `framing.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::panic
)]

use super::*;
use crate::run::framing::Framing;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Once, OnceLock};

/// The master of a pty pair (non-blocking) and the slave's path.
struct Pty {
    master: File,
    slave: PathBuf,
}

fn pty() -> Pty {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let fd = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&fd).unwrap();
    unlockpt(&fd).unwrap();
    let name = ptsname(&fd, Vec::new()).unwrap();
    let flags = rustix::fs::fcntl_getfl(&fd).unwrap();
    rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK).unwrap();
    Pty {
        master: File::from(fd),
        slave: PathBuf::from(name.into_string().unwrap()),
    }
}

impl Pty {
    fn write_all(&mut self, mut bytes: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !bytes.is_empty() {
            match self.master.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "pty master write stuck");
                    thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("pty master write: {e}"),
            }
        }
    }

    /// Reads until `n` bytes came or `within` passed.
    fn read(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < n && Instant::now() < deadline {
            match self.master.read(&mut buf) {
                Ok(k) if k > 0 => got.extend_from_slice(&buf[..k]),
                // Nothing yet; EIO while the slave is not open.
                _ => thread::sleep(Duration::from_millis(1)),
            }
        }
        got
    }
}

/// Log lines of this test binary, kept so tests can count them.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    static INSTALL: Once = Once::new();
    let capture = CAPTURE.get_or_init(|| Capture(Mutex::new(Vec::new())));
    INSTALL.call_once(|| {
        log::set_logger(capture).expect("no other logger in the uiot unit tests");
        log::set_max_level(log::LevelFilter::Info);
    });
    capture
}

/// The captured lines that name `device` (each test has its own).
fn log_lines(device: &Path) -> Vec<String> {
    let needle = device.display().to_string();
    let lines = capture().0.lock().unwrap();
    lines
        .iter()
        .filter(|l| l.contains(&needle))
        .cloned()
        .collect()
}

fn count(lines: &[String], level_and_text: (&str, &str)) -> usize {
    let (level, text) = level_and_text;
    lines
        .iter()
        .filter(|l| l.starts_with(level) && l.contains(text))
        .count()
}

fn settings(device: &Path, framing: Framing, max_frame: usize) -> SerialSettings {
    let mut s = SerialSettings::new("test", device);
    s.framing = framing;
    s.max_frame = max_frame;
    s.reopen_every = Duration::from_millis(100);
    s
}

/// Starts a bridge whose frames come out of the receiver.
fn start(s: SerialSettings) -> (Bridge, Receiver<Vec<u8>>) {
    capture();
    let (tx, rx) = mpsc::channel();
    let uplink = Box::new(move |frame| {
        let _ = tx.send(frame);
    });
    (Bridge::start(s, uplink).unwrap(), rx)
}

/// Starts a bridge and waits until its port is open.
fn started(s: SerialSettings) -> (Bridge, Receiver<Vec<u8>>) {
    let (bridge, rx) = start(s);
    wait_for("port open", Duration::from_secs(3), || bridge.stats().open);
    (bridge, rx)
}

fn wait_for(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

fn frames(rx: &Receiver<Vec<u8>>, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(Duration::from_secs(3))
                .unwrap_or_else(|_| panic!("frame {i} of {n} did not come"))
        })
        .collect()
}

fn v(items: &[&[u8]]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.to_vec()).collect()
}

#[test]
fn line_frames_up_and_suffixed_frames_down() {
    let mut p = pty();
    let mut s = settings(&p.slave, Framing::Line, 64);
    s.downlink_suffix = b"\r\n".to_vec();
    let (bridge, rx) = started(s);
    p.write_all(b"hello\r\nworld\n\r\n\nno end yet");
    assert_eq!(frames(&rx, 2), v(&[b"hello", b"world"]));
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    bridge.sender().send(b"on".to_vec()).unwrap();
    assert_eq!(p.read(4, Duration::from_secs(3)), b"on\r\n");
    wait_for("frames_down", Duration::from_secs(1), || {
        bridge.stats().frames_down == 1
    });
    let stats = bridge.stats();
    assert_eq!((stats.frames_up, stats.cut, stats.reopens), (2, 0, 0));
    bridge.stop();
}

#[test]
fn length_frames_both_ways_with_a_cut() {
    let mut p = pty();
    let (bridge, rx) = started(settings(&p.slave, Framing::Length, 3));
    p.write_all(b"\x00\x02ab\x00\x05cdefg\x00\x01h");
    assert_eq!(frames(&rx, 3), v(&[b"ab", b"cde", b"h"]));
    assert_eq!(bridge.stats().cut, 1);
    let sender = bridge.sender();
    sender.send(b"xyz".to_vec()).unwrap();
    assert_eq!(p.read(5, Duration::from_secs(3)), b"\x00\x03xyz");
    // Too long for the prefix: dropped and counted, the next one goes.
    sender.send(vec![0u8; 70_000]).unwrap();
    sender.send(b"k".to_vec()).unwrap();
    assert_eq!(p.read(3, Duration::from_secs(3)), b"\x00\x01k");
    let stats = bridge.stats();
    assert_eq!((stats.frames_down, stats.dropped_down), (2, 1));
    bridge.stop();
}

#[test]
fn idle_frames_end_on_silence_and_cut_at_max_frame() {
    let mut p = pty();
    let idle = Duration::from_millis(150);
    let (bridge, rx) = started(settings(&p.slave, Framing::Idle(idle), 8));
    p.write_all(b"ab\n");
    thread::sleep(Duration::from_millis(20));
    p.write_all(b"cd");
    let wrote = Instant::now();
    assert_eq!(frames(&rx, 1), v(&[b"ab\ncd"]));
    assert!(wrote.elapsed() >= Duration::from_millis(140), "too early");
    p.write_all(b"0123456789abcdef");
    assert_eq!(frames(&rx, 1), v(&[b"01234567"]));
    thread::sleep(idle * 2);
    p.write_all(b"next");
    assert_eq!(frames(&rx, 1), v(&[b"next"]));
    assert_eq!(bridge.stats().cut, 1);
    bridge.stop();
}

#[test]
fn raw_streams_in_max_frame_pieces() {
    let mut p = pty();
    let mut s = settings(&p.slave, Framing::Raw(Duration::from_millis(50)), 4);
    s.downlink_suffix = Vec::new();
    let (bridge, rx) = started(s);
    p.write_all(b"abcdefghij");
    assert_eq!(frames(&rx, 3), v(&[b"abcd", b"efgh", b"ij"]));
    bridge.sender().send(b"\x00\xffraw".to_vec()).unwrap();
    assert_eq!(p.read(5, Duration::from_secs(3)), b"\x00\xffraw");
    assert_eq!(bridge.stats().cut, 0);
    bridge.stop();
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn ten_megabytes_through_raw_arrive_whole_in_bounded_memory() {
    const TOTAL: u64 = 10 * 1024 * 1024;
    let mut p = pty();
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let bad = Arc::new(Mutex::new(None::<String>));
    let (r, b) = (Arc::clone(&received), Arc::clone(&bad));
    let mut offset = 0u64;
    let uplink = Box::new(move |frame: Vec<u8>| {
        if frame.len() > 4096 {
            *b.lock().unwrap() = Some(format!("frame of {} bytes", frame.len()));
        }
        for (i, byte) in frame.iter().enumerate() {
            if *byte != ((offset + i as u64) % 251) as u8 {
                *b.lock().unwrap() = Some(format!("wrong byte at {}", offset + i as u64));
                break;
            }
        }
        offset += frame.len() as u64;
        r.store(offset, Ordering::Relaxed);
    });
    capture();
    let s = settings(&p.slave, Framing::Raw(Duration::from_millis(50)), 4096);
    let bridge = Bridge::start(s, uplink).unwrap();
    wait_for("port open", Duration::from_secs(3), || bridge.stats().open);
    let before = rss_kib();
    let started = Instant::now();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < TOTAL {
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte = ((sent + i as u64) % 251) as u8;
        }
        p.write_all(&chunk);
        sent += chunk.len() as u64;
    }
    wait_for("all 10 MB", Duration::from_secs(60), || {
        received.load(Ordering::Relaxed) >= TOTAL
    });
    let after = rss_kib();
    eprintln!(
        "10 MB through raw framing in {:?}; VmRSS {before} kB -> {after} kB; {} frames",
        started.elapsed(),
        bridge.stats().frames_up
    );
    assert_eq!(*bad.lock().unwrap(), None);
    assert_eq!(received.load(Ordering::Relaxed), TOTAL);
    assert!(bridge.stats().frames_up >= TOTAL / 4096);
    assert!(
        after.saturating_sub(before) < 5 * 1024,
        "VmRSS grew from {before} kB to {after} kB"
    );
    bridge.stop();
}

#[test]
fn absent_port_is_opened_when_it_appears_and_again_after_it_vanishes() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyBRIDGE");
    let (bridge, rx) = start(settings(&link, Framing::Line, 64));
    // Several attempts (every 100 ms), one warn line.
    thread::sleep(Duration::from_millis(450));
    assert!(!bridge.stats().open);
    assert_eq!(count(&log_lines(&link), ("WARN", "cannot open")), 1);

    let mut a = pty();
    symlink(&a.slave, &link).unwrap();
    wait_for("open", Duration::from_secs(3), || bridge.stats().open);
    assert_eq!(bridge.stats().reopens, 1);
    a.write_all(b"one\n");
    assert_eq!(frames(&rx, 1), v(&[b"one"]));

    // The device goes away (like a USB adapter pulled out).
    drop(a);
    wait_for("closed", Duration::from_secs(3), || !bridge.stats().open);
    std::fs::remove_file(&link).unwrap();
    thread::sleep(Duration::from_millis(350));
    let mut b = pty();
    symlink(&b.slave, &link).unwrap();
    wait_for("open again", Duration::from_secs(3), || bridge.stats().open);
    assert_eq!(bridge.stats().reopens, 2);
    b.write_all(b"two\r\n");
    assert_eq!(frames(&rx, 1), v(&[b"two"]));
    bridge.sender().send(b"down".to_vec()).unwrap();
    assert_eq!(p_read(&mut b, 5), b"down\n");

    let lines = log_lines(&link);
    assert_eq!(count(&lines, ("WARN", "lost")), 1, "{lines:#?}");
    assert_eq!(count(&lines, ("INFO", "open again")), 2, "{lines:#?}");
    // Cannot open: once before the first pty; after the loss once per
    // distinct error (the dead slave, then no link), not per attempt.
    assert!(count(&lines, ("WARN", "cannot open")) <= 3, "{lines:#?}");
    bridge.stop();
}

fn p_read(p: &mut Pty, n: usize) -> Vec<u8> {
    p.read(n, Duration::from_secs(3))
}

#[test]
fn downlink_while_closed_is_dropped_counted_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ttyNONE");
    let (bridge, _rx) = start(settings(&missing, Framing::Line, 64));
    let sender = bridge.sender();
    for _ in 0..3 {
        sender.send(b"lost".to_vec()).unwrap();
    }
    wait_for("drops", Duration::from_secs(2), || {
        bridge.stats().dropped_down == 3
    });
    assert_eq!(bridge.stats().frames_down, 0);
    let lines = log_lines(&missing);
    assert_eq!(
        count(&lines, ("WARN", "dropped (port closed)")),
        1,
        "{lines:#?}"
    );
    bridge.stop();
    // After stop the queue refuses and hands the frame back.
    assert_eq!(sender.send(b"late".to_vec()), Err(Full(b"late".to_vec())));
}

#[test]
fn full_queue_hands_the_frame_back() {
    let (tx, _rx) = mpsc::sync_channel(1);
    let sender = DownlinkSender { tx };
    sender.send(b"1".to_vec()).unwrap();
    assert_eq!(sender.send(b"2".to_vec()), Err(Full(b"2".to_vec())));
}

#[test]
fn stop_is_quick_open_or_absent() {
    let p = pty();
    let (open_bridge, _rx1) = started(settings(&p.slave, Framing::Line, 64));
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&dir.path().join("none"), Framing::Line, 64);
    s.reopen_every = Duration::from_secs(2);
    let (absent_bridge, _rx2) = start(s);
    thread::sleep(Duration::from_millis(50));
    for bridge in [open_bridge, absent_bridge] {
        let t = Instant::now();
        bridge.stop();
        let took = t.elapsed();
        eprintln!("stop took {took:?}");
        // The reader of an open, quiet port sees the stop within READ_WAIT (1 s).
        assert!(took < Duration::from_millis(1500), "stop took {took:?}");
    }
}

#[test]
fn other_line_settings_open_on_a_pty() {
    let cases = [
        (8, Parity::None, 1, FlowControl::Hardware),
        (8, Parity::None, 1, FlowControl::Software),
        (7, Parity::Even, 1, FlowControl::None),
        (8, Parity::Odd, 2, FlowControl::None),
    ];
    for (data_bits, parity, stop_bits, flow_control) in cases {
        let mut p = pty();
        let mut s = settings(&p.slave, Framing::Line, 64);
        (s.data_bits, s.parity, s.stop_bits, s.flow_control) =
            (data_bits, parity, stop_bits, flow_control);
        s.baud = 9600;
        let (bridge, rx) = start(s);
        let opened = {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !bridge.stats().open && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            bridge.stats().open
        };
        let case = format!("{data_bits}{parity:?}{stop_bits} {flow_control:?}");
        assert!(opened, "{case}: {:#?}", log_lines(&p.slave));
        p.write_all(b"x\n");
        assert_eq!(frames(&rx, 1), v(&[b"x"]), "{case}");
        bridge.stop();
    }
}

#[test]
fn bad_data_or_stop_bits_fail_to_open_with_a_reason() {
    let p = pty();
    let mut s = settings(&p.slave, Framing::Line, 64);
    s.data_bits = 9;
    let (bridge, _rx) = start(s);
    thread::sleep(Duration::from_millis(250));
    assert!(!bridge.stats().open);
    let lines = log_lines(&p.slave);
    assert_eq!(
        count(&lines, ("WARN", "data_bits 9 is not one of: 5, 6, 7, 8")),
        1
    );
    bridge.stop();
    let mut s = settings(&p.slave, Framing::Line, 64);
    s.stop_bits = 3;
    assert_eq!(
        open(&s).err().unwrap(),
        "stop_bits 3 is not one of: 1, 2".to_string()
    );
}

#[test]
fn parity_and_flow_control_parse_and_name_the_allowed_values() {
    assert_eq!("none".parse(), Ok(Parity::None));
    assert_eq!("Odd".parse(), Ok(Parity::Odd));
    assert_eq!("EVEN".parse(), Ok(Parity::Even));
    let e = "mark".parse::<Parity>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "parity `mark` is not one of: none, odd, even"
    );
    assert_eq!("none".parse(), Ok(FlowControl::None));
    assert_eq!("software".parse(), Ok(FlowControl::Software));
    assert_eq!("Hardware".parse(), Ok(FlowControl::Hardware));
    let e = "rtscts".parse::<FlowControl>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "flow_control `rtscts` is not one of: none, software, hardware"
    );
}
