//! The README's first command, `scripts/demo.sh`, run to the end with this
//! build's binaries (UIOT_BIN_DIR; it builds a release otherwise): the
//! local broker, pub/sub both ways, the platform services against
//! uiot-sim, and the board daemon (a serial sensor on a pseudo-terminal,
//! a script's `uiot pub` through the daemon, a command answered by a hook,
//! a desired value applied by a hook, a clean stop).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::path::Path;
use std::process::Command;

#[test]
fn the_quickstart_runs_to_the_end() {
    // Mosquitto and socat are what it needs; without them outside CI: skip.
    if support::broker().is_none() {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_uiot")).parent().unwrap();
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh"))
        .env("UIOT_BIN_DIR", bin)
        .env_remove("UIOT_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    for needle in [
        "the cloud received: /demoproduct00001/demo-device-0001/upload",
        "the device received: /demoproduct00001/demo-device-0001/set",
        "{\"registered\":\"now\"",
        "/demoproduct00001/demo-device-0001/sensor t=21.5",
        "/demoproduct00001/demo-device-0001/sensor h=40",
        "the daemon was kicked: 0 time(s)",
        "\"Identifier\":\"set_led\",\"Output\":{\"state\":1}",
        "the hook wrote interval = 30",
        "uiot run exit code: 0",
        "demo finished",
    ] {
        assert!(
            stdout.contains(needle),
            "no {needle:?} in the quickstart's output:\n{all}"
        );
    }
}
