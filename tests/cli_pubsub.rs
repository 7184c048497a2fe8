//! `uiot pub` and `uiot sub` as a shell script would use them, against the
//! Mosquitto UIoT profile: round trips, exit codes, logging.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::TempDir;
use support::{Broker, Device};

fn uiot() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_uiot"));
    c.env_remove("UIOT_CONFIG").env_remove("RUST_LOG");
    c
}

/// A config file for `dev` on the test broker (plain TCP, short timeouts).
fn config(dir: &TempDir, name: &str, port: u16, dev: &Device, extra: &str) -> PathBuf {
    let path = dir.path().join(name);
    let text = format!(
        "[device]\nproduct_sn = {}\ndevice_sn = {}\ndevice_secret = {}\n\
         [connection]\nhost = 127.0.0.1\nport = {port}\ntls = false\nconnect_timeout = 3\n{extra}",
        dev.product_sn, dev.device_sn, dev.secret
    );
    std::fs::write(&path, text).unwrap();
    // It holds a secret: 0600, as `uiot check` asks (or it warns).
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn setup() -> Option<(Broker, TempDir)> {
    let broker = support::broker()?;
    Some((broker, TempDir::new("uiot-cli")))
}

#[test]
fn pub_lines_at_qos1_arrive_in_order_and_relative_topics_resolve() {
    let Some((broker, dir)) = setup() else { return };
    let dev = broker.device(0);
    let cloud = broker.observer(&dev.topic("#"));
    let cfg = config(
        &dir,
        "d.ini",
        broker.port(),
        &dev,
        "[limits]\npublish_rate = 0\n",
    );
    let lines: String = (0..500).map(|i| format!("line {i}\n")).collect();
    let out = run(
        uiot()
            .args(["pub", "-c"])
            .arg(&cfg)
            .args(["-t", "upload", "-q", "1", "-l"]),
        lines.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let got = cloud.wait_for(500, Duration::from_secs(10));
    assert_eq!(got.len(), 500);
    assert!(got
        .iter()
        .all(|m| m.topic == dev.topic("upload") && m.qos == 1));
    assert_eq!(got[499].payload_str(), "line 499");
    let seq: Vec<String> = got.iter().map(|m| m.payload_str()).collect();
    assert_eq!(
        seq,
        (0..500).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );

    // -m, -f and -s.
    let file = dir.path().join("payload.bin");
    std::fs::write(&file, [0u8, 1, 2, 255]).unwrap();
    for (args, stdin, want) in [
        (vec!["-m", "hello"], &b""[..], &b"hello"[..]),
        (
            vec!["-f", file.to_str().unwrap()],
            b"",
            &[0u8, 1, 2, 255][..],
        ),
        (vec!["-s"], b"all\nof it\n", b"all\nof it\n"),
    ] {
        let out = run(
            uiot()
                .args(["pub", "-c"])
                .arg(&cfg)
                .args(["-t", "/x/../upload"])
                .args(&args),
            stdin,
        );
        // "/x/../upload" is absolute and foreign: refused, nothing sent.
        assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
        let out = run(
            uiot()
                .args(["pub", "-c"])
                .arg(&cfg)
                .args(["-t", "upload"])
                .args(&args),
            stdin,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cloud.messages().iter().any(|m| m.payload == want) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            cloud.messages().iter().any(|m| m.payload == want),
            "{args:?} did not arrive"
        );
    }
}

#[test]
fn sub_prints_what_the_cloud_sends_and_stops_after_count() {
    let Some((broker, dir)) = setup() else { return };
    let dev = broker.device(0);
    let cfg = config(&dir, "d.ini", broker.port(), &dev, "");
    let child = uiot()
        .args(["sub", "-c"])
        .arg(&cfg)
        .args([
            "-t", "set", "-t", "cmd/#", "-q", "1", "-C", "3", "-v", "-W", "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        broker.wait_for_log(
            &format!("{} 1 {}", dev.client_id(), dev.topic("cmd/#")),
            Duration::from_secs(5)
        ) || broker.wait_for_log("SUBSCRIBE", Duration::from_secs(5))
    );
    std::thread::sleep(Duration::from_millis(200));
    broker.cloud_publish(&dev.topic("set"), "one", 1);
    broker.cloud_publish(&dev.topic("cmd/reboot"), "two", 0);
    broker.cloud_publish(&dev.topic("set"), "three", 1);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{t} one\n{c} two\n{t} three\n",
            t = dev.topic("set"),
            c = dev.topic("cmd/reboot")
        )
    );

    // -N: no newline; -C 1.
    let child = uiot()
        .args(["sub", "-c"])
        .arg(&cfg)
        .args(["-t", "set", "-C", "1", "-N", "-W", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    broker.cloud_publish(&dev.topic("set"), "raw", 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"raw");
}

#[test]
fn exit_codes_tell_scripts_what_happened() {
    let Some((broker, dir)) = setup() else { return };
    let dev = broker.device(0);
    let good = config(&dir, "good.ini", broker.port(), &dev, "");
    let mut wrong = dev.clone();
    wrong.secret = "wrongwrongwrong1".into();
    let bad_secret = config(&dir, "bad.ini", broker.port(), &wrong, "");
    let down = config(&dir, "down.ini", support::broker::free_port(), &dev, "");

    let code = |args: &[&str], cfg: &PathBuf| {
        let out = run(uiot().arg(args[0]).arg("-c").arg(cfg).args(&args[1..]), b"");
        (out.status.code(), stderr(&out))
    };
    // Wrong secret: 77 with advice, the secret not echoed.
    let (c, err) = code(&["pub", "-t", "upload", "-m", "x"], &bad_secret);
    assert_eq!(c, Some(77), "{err}");
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("wrongwrongwrong1"));
    // Broker down: 69 within connect_timeout (3 s).
    let t = Instant::now();
    let (c, err) = code(&["pub", "-t", "upload", "-m", "x"], &down);
    assert_eq!(c, Some(69), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // Another device's topic: 77, before anything is sent.
    let other = broker.device(1);
    let (c, err) = code(&["pub", "-t", &other.topic("upload"), "-m", "x"], &good);
    assert_eq!(c, Some(77), "{err}");
    assert!(err.contains("another product or device"), "{err}");
    let (c, _) = code(&["sub", "-t", "/#", "-C", "1", "-W", "5"], &good);
    assert_eq!(c, Some(77));
    // QoS 2 and bad flags: 64.
    assert_eq!(
        code(&["pub", "-t", "upload", "-m", "x", "-q", "2"], &good).0,
        Some(64)
    );
    assert_eq!(code(&["sub", "-t", "set", "-q", "2"], &good).0, Some(64));
    assert_eq!(code(&["pub", "-t", "upload"], &good).0, Some(64));
    assert_eq!(
        code(&["pub", "-t", "upload", "-m", "x", "-s"], &good).0,
        Some(64)
    );
    assert_eq!(code(&["sub", "-C", "1"], &good).0, Some(64));
    assert_eq!(code(&["sub", "-t", "set", "-C", "zero"], &good).0, Some(64));
    // Over 256 KiB: 65.
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 300 * 1024]).unwrap();
    let (c, err) = code(&["pub", "-t", "upload", "-f", big.to_str().unwrap()], &good);
    assert_eq!(c, Some(65), "{err}");
    // Missing input file: 66.
    assert_eq!(
        code(&["pub", "-t", "upload", "-f", "/nonexistent/file"], &good).0,
        Some(66)
    );
    // -W runs out: 75.
    let t = Instant::now();
    let (c, err) = code(&["sub", "-t", "set", "-C", "1", "-W", "1"], &good);
    assert_eq!(c, Some(75), "{err}");
    assert!(t.elapsed() < Duration::from_secs(4));
    // Bad config: 78.
    let broken = dir.path().join("broken.ini");
    std::fs::write(&broken, "[device]\nproduct_sn = x\n").unwrap();
    assert_eq!(
        code(&["pub", "-t", "upload", "-m", "x"], &broken).0,
        Some(78)
    );
}

#[test]
fn debug_logs_every_packet_but_never_the_secret() {
    let Some((broker, dir)) = setup() else { return };
    let dev = broker.device(0);
    let cfg = config(&dir, "d.ini", broker.port(), &dev, "");
    let out = run(
        uiot()
            .args(["pub", "-d", "-c"])
            .arg(&cfg)
            .args(["-t", "upload", "-m", "hi", "-q", "1"]),
        b"",
    );
    assert!(out.status.success());
    let err = stderr(&out);
    for want in [
        "-> CONNECT",
        "<- CONNACK",
        "-> PUBLISH id=1 qos=1",
        "<- PUBACK id=1",
        "-> DISCONNECT",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains(&dev.username()));
    assert!(!err.contains(&dev.secret), "secret logged:\n{err}");
    // Without -d: quiet.
    let out = run(
        uiot()
            .args(["pub", "-c"])
            .arg(&cfg)
            .args(["-t", "upload", "-m", "hi"]),
        b"",
    );
    assert!(out.status.success());
    assert_eq!(stderr(&out), "");
}

/// Runs `uiot sub` with these arguments and returns (exit code, stdout, stderr).
fn sub(cfg: &PathBuf, args: &[&str]) -> (Option<i32>, String, String) {
    let out = run(uiot().args(["sub", "-c"]).arg(cfg).args(args), b"");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}

// Issue 9, defect 2: before, every message was acknowledged on arrival and
// the ones after the Nth were lost; a QoS 1 message is now acknowledged only
// when it is taken.
#[test]
fn sub_count_takes_no_message_after_the_last_so_the_broker_keeps_the_rest() {
    let Some((broker, dir)) = setup() else { return };
    let dev = broker.device(0);
    let cfg = config(
        &dir,
        "d.ini",
        broker.port(),
        &dev,
        "clean_session = false\n",
    );
    // First run: makes the persistent session and its subscription.
    let child = uiot()
        .args(["sub", "-c"])
        .arg(&cfg)
        .args(["-t", "set", "-q", "1", "-C", "1", "-W", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(broker.wait_for_log(
        &format!("{} 1 {}", dev.client_id(), dev.topic("set")),
        Duration::from_secs(5)
    ));
    std::thread::sleep(Duration::from_millis(200));
    broker.cloud_publish(&dev.topic("set"), "first", 1);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\n");

    // Five commands while the device is away.
    for i in 1..=5 {
        broker.cloud_publish(&dev.topic("set"), format!("m{i}"), 1);
    }
    // -C 2 takes two; the other three must still be there for the next run.
    let (code, got, err) = sub(&cfg, &["-t", "set", "-q", "1", "-C", "2", "-W", "10"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(got, "m1\nm2\n");
    let (code, got, err) = sub(&cfg, &["-t", "set", "-q", "1", "-C", "3", "-W", "10"]);
    assert_eq!(code, Some(0), "lost after -C 2: {err}");
    assert_eq!(got, "m3\nm4\nm5\n");
}

#[test]
fn pub_stdin_empty_sends_an_empty_message_closed_stdin_sends_nothing() {
    let Some((broker, dir)) = setup() else { return };
    let dev = broker.device(0);
    let cloud = broker.observer(&dev.topic("#"));
    let cfg = config(&dir, "d.ini", broker.port(), &dev, "");
    // Closed stdin: 66, nothing published.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("exec \"$0\" \"$@\" <&-")
        .arg(env!("CARGO_BIN_EXE_uiot"))
        .args(["pub", "-c"])
        .arg(&cfg)
        .args(["-t", "closed", "-s", "-q", "1"])
        .env_remove("UIOT_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    // Empty stdin: one empty message.
    let out = run(
        uiot()
            .args(["pub", "-c"])
            .arg(&cfg)
            .args(["-t", "empty", "-s", "-q", "1"]),
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(cloud.wait_for_topic(&dev.topic("empty"), Duration::from_secs(5)));
    let got = cloud.messages();
    assert!(got.iter().all(|m| m.topic != dev.topic("closed")));
    assert!(got
        .iter()
        .any(|m| m.topic == dev.topic("empty") && m.payload.is_empty()));
}
