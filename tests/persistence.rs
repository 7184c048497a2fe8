//! The on-disk queue through the real binary: a publisher killed with
//! SIGKILL loses nothing it accepted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Proxy, TempDir};

/// `uiot pub -l` with nothing to publish: it only sends what its on-disk
/// queue holds.
fn drain(uiot: &str, ini: &std::path::Path) -> std::process::Output {
    Command::new(uiot)
        .args(["pub", "-c"])
        .arg(ini)
        .args(["-t", "upload", "-q", "1", "-l"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn kill_9_loses_no_accepted_message() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let cloud = broker.observer(&dev.topic("#"));
    let proxy = Proxy::start(broker.port());
    let dir = TempDir::new("uiot-persist");
    let ini = dir.path().join("p.ini");
    std::fs::write(
        &ini,
        format!(
            "[device]\nproduct_sn = {}\ndevice_sn = {}\ndevice_secret = {}\n\
             [connection]\nhost = 127.0.0.1\nport = {}\ntls = false\nconnect_timeout = 3\n\
             [reconnect]\nmin = 1\nmax = 1\n\
             [queue]\ndir = {}\nfsync = always\n",
            dev.product_sn,
            dev.device_sn,
            dev.secret,
            proxy.port(),
            dir.path().join("queue").display()
        ),
    )
    .unwrap();
    let uiot = env!("CARGO_BIN_EXE_uiot");
    let mut first = Command::new(uiot)
        .args(["pub", "-c"])
        .arg(&ini)
        .args(["-t", "upload", "-q", "1", "-l"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = first.stdin.take().unwrap();
    writeln!(input, "m0").unwrap();
    assert_eq!(
        cloud.wait_for(1, Duration::from_secs(5)).len(),
        1,
        "first message"
    );
    // The link goes silent: nothing is acknowledged from now on.
    proxy.blackhole();
    for i in 1..=50 {
        writeln!(input, "m{i}").unwrap();
    }
    input.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    drop(input);
    proxy.pass();

    // A new start with nothing to publish sends what the first one accepted.
    let out = drain(uiot, &ini);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("recovered"),
        "the recovery is not reported"
    );
    let got = cloud.wait_for(51, Duration::from_secs(10));
    let mut payloads: Vec<String> = got.iter().map(|m| m.payload_str()).collect();
    payloads.dedup();
    let want: Vec<String> = (0..=50).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads, want);

    // Once acknowledged, nothing is sent again.
    let again = drain(uiot, &ini);
    assert!(again.status.success());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        cloud.messages().len() <= got.len(),
        "acknowledged messages sent again"
    );
}
