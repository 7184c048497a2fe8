//! Every example in examples/ run as a user runs it, against a real
//! Mosquitto and `uiot-sim`, each to exit 0, with what it printed and what
//! the simulated cloud saw checked.
//!
//! Owns: these runs. Must not touch: the examples' code (they are built by
//! `cargo test --all-targets`; when only this test is built, it builds
//! them with cargo first).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use support::cli::{dynamic_device, static_device, write_config};
use support::sim::{on_register_command, Sim};
use support::{Broker, BrokerConfig, Device, DynamicDevice, TempDir};

const WAIT: Duration = Duration::from_secs(30);

/// The example's binary, built with cargo if `cargo test` did not build it.
fn example(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap();
    // target/debug/deps/examples-HASH -> target/debug/examples/NAME
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example {name}");
    }
    path
}

/// A running example: its stdout lines arrive on `lines`.
struct Run {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Run {
    fn start(name: &str, args: &[&str]) -> Run {
        let mut child = Command::new(example(name))
            .args(args)
            .env("RUST_LOG", "warn")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Run {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line starting with `prefix`.
    fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line starting with {prefix:?}; printed: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for the exit; asserts 0; returns everything printed.
    fn finish(mut self) -> Vec<String> {
        let status = self.child.wait().unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        assert_eq!(status.code(), Some(0), "printed: {:#?}", self.seen);
        self.seen
    }
}

fn run(name: &str, args: &[&str]) -> Vec<String> {
    Run::start(name, args).finish()
}

fn static_config(dir: &Path, broker: &Broker, d: &Device) -> String {
    let path = write_config(dir, broker.port(), &static_device(d), "");
    path.to_str().unwrap().into()
}

fn has(lines: &[String], text: &str) -> bool {
    lines.iter().any(|l| l.contains(text))
}

#[test]
fn mqtt_publishes_and_receives_its_echo() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dir = TempDir::new("ex-mqtt");
    let cfg = static_config(dir.path(), &broker, &broker.device(0));
    let out = run("mqtt", &[&cfg, "--echo", "--wait", "20"]);
    assert!(
        has(&out, "published qos 1") && has(&out, "done"),
        "{out:#?}"
    );
    assert_eq!(
        out.iter().filter(|l| l.starts_with("received")).count(),
        2,
        "{out:#?}"
    );
}

#[test]
fn dynamic_auth_registers_once_then_reads_the_saved_secret() {
    let d = DynamicDevice::new("harnessprod00001", "exdyndevice01", "harnessprodsec01");
    let Some(broker) = support::broker_with(BrokerConfig::new().dynamic(d.clone())) else {
        return;
    };
    let hook = on_register_command(&broker);
    let _sim = Sim::start(
        &broker,
        &["--allow-register", &d.device_sn, "--on-register", &hook],
    );
    let dir = TempDir::new("ex-dyn");
    let cfg = write_config(dir.path(), broker.port(), &dynamic_device(&d), "");
    let cfg = cfg.to_str().unwrap();
    let out = run("dynamic_auth", &[cfg]);
    assert!(
        has(&out, "registered now") && has(&out, "published qos 1") && has(&out, "done"),
        "{out:#?}"
    );
    let out = run("dynamic_auth", &[cfg]);
    assert!(
        has(&out, "registered before") && has(&out, "done"),
        "{out:#?}"
    );
}

#[test]
fn shadow_runs_the_sdk_steps() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start(&broker, &[]);
    let dir = TempDir::new("ex-shadow");
    let d = broker.device(0);
    let cfg = static_config(dir.path(), &broker, &d);
    let out = run("shadow", &[&cfg]);
    let expect = [
        "get: version 0,",
        "update data1..data6: version 1",
        "update data1 data4: version 2",
        "delete data1 data2: version 3",
        "delete all: version 4",
        "update and reset version: version 0",
        "done",
    ];
    for e in expect {
        assert!(has(&out, e), "no {e:?} in {out:#?}");
    }
    sim.send(&format!("state {} {}", d.product_sn, d.device_sn));
    let st = sim.expect("state", |l| l["sim"] == "state");
    let reported = &st["state"]["Shadow"]["State"]["Reported"];
    assert_eq!(
        reported,
        &json!({"data1": 18, "data4": "data", "data5": false, "data6": {"b": 2}})
    );
}

#[test]
fn thing_model_posts_raises_the_event_and_takes_the_correction() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start(&broker, &[]);
    let dir = TempDir::new("ex-thing");
    let d = broker.device(0);
    let cfg = static_config(dir.path(), &broker, &d);
    let mut ex = Run::start(
        "thing_model",
        &[&cfg, "--count", "40", "--interval", "50", "--wait", "20"],
    );
    ex.wait_for("ready:");
    sim.send(&format!(
        "command {} {} set_temp_correction {{\"temp_correction\": 3}}",
        d.product_sn, d.device_sn
    ));
    let out = ex.finish();
    assert!(
        has(&out, "correction now 3, result 0") && has(&out, "done"),
        "{out:#?}"
    );
    let r = sim.expect("the command reply", |l| {
        l["sim"] == "reply" && l["to"] == "command"
    });
    assert_eq!(
        r["Output"],
        json!({"effect_temp_correction": 3, "correction_result": 0})
    );
    assert_eq!(r["matched"], true);
    sim.expect("the high_temp event", |l| {
        l["sim"] == "event" && l["Identifier"] == "high_temp"
    });
    let corrected = |l: &Value| {
        l["sim"] == "property"
            && l["Property"]["humidity"]["Value"]
                .as_i64()
                .is_some_and(|h| h % 5 == 3)
    };
    sim.expect("a corrected humidity", corrected);
}

#[test]
fn smart_bracelet_applies_a_desired_count_and_reaches_the_goal() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start(&broker, &[]);
    let dir = TempDir::new("ex-bracelet");
    let d = broker.device(0);
    let cfg = static_config(dir.path(), &broker, &d);
    let mut ex = Run::start("smart_bracelet", &[&cfg, "--interval", "100"]);
    ex.wait_for("ready:");
    sim.send(&format!(
        "desired {} {} {{\"walk_step\": 60}}",
        d.product_sn, d.device_sn
    ));
    let out = ex.finish();
    assert!(
        has(&out, "desired walk_step 60 applied") && has(&out, "today's goal is completed!"),
        "{out:#?}"
    );
    sim.send(&format!("state {} {}", d.product_sn, d.device_sn));
    let st = sim.expect("state", |l| l["sim"] == "state");
    let shadow = &st["state"]["Shadow"];
    assert_eq!(shadow["State"]["Desired"], json!({}), "desired cleared");
    assert!(shadow["State"]["Reported"]["walk_step"].as_u64().unwrap() >= 100);
}

#[test]
fn ota_downloads_through_a_cut_installs_and_reports_success() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start_http(&broker, &[]);
    let dir = TempDir::new("ex-ota");
    let d = broker.device(0);
    let cfg = static_config(dir.path(), &broker, &d);
    let work = dir.path().join("ota");
    let fw = dir.path().join("fw.bin");
    let image: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    std::fs::write(&fw, &image).unwrap();
    let mut ex = Run::start("ota", &[&cfg, work.to_str().unwrap()]);
    ex.wait_for("waiting for an upgrade");
    sim.send(&format!(
        "ota push {} {} default 2.0.0 {} cut",
        d.product_sn,
        d.device_sn,
        fw.display()
    ));
    let out = ex.finish();
    assert!(
        has(&out, "upgrade of default to 2.0.0 (300000 bytes)")
            && has(&out, "downloading 100 %")
            && has(&out, "upgraded to 2.0.0"),
        "{out:#?}"
    );
    assert_eq!(std::fs::read(work.join("installed.bin")).unwrap(), image);
    assert_eq!(
        std::fs::read_to_string(work.join("version")).unwrap(),
        "2.0.0\n"
    );
    let r = sim.expect("the result", |l| l["sim"] == "ota-result");
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(r["version"], "2.0.0", "{r}");
    // The cut was resumed with a Range request, not downloaded again.
    let reqs = sim.lines_where(|l| l["sim"] == "fw-request" && l["version"] == "2.0.0");
    assert!(
        reqs.len() >= 2 && reqs.iter().skip(1).all(|q| !q["range_start"].is_null()),
        "{reqs:#?}"
    );
}

#[test]
fn bench_ota_downloads_one_verified_image() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start_http(&broker, &[]);
    let dir = TempDir::new("ex-bench-ota");
    let d = broker.device(1);
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, vec![0x5a; 100_000]).unwrap();
    sim.send(&format!(
        "ota push {} {} default 9 {}",
        d.product_sn,
        d.device_sn,
        fw.display()
    ));
    let ok = sim.expect("pushed", |l| l["sim"] == "ok" && l["ota"] == "pushed");
    let out = run(
        "bench_ota",
        &[
            ok["url"].as_str().unwrap(),
            "100000",
            ok["md5"].as_str().unwrap(),
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(std::fs::read(&out[0]).unwrap(), vec![0x5a; 100_000]);
}
