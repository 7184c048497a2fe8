//! `uiot-sim` against a real Mosquitto, with uiot (library and CLI) as the
//! device: registration once (the hook lets the device log in, a second
//! attempt and an unknown DeviceSN are refused, a failing hook is a retry
//! later), the shadow (desired pushed, applied and cleared; conflict;
//! reset), the thing model (every request answered with its RequestID;
//! property set and command replies reaching the sim with theirs), the
//! state file, and bad input on its stdin and command line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::cli::{dynamic_device, static_device, stderr, stdout, uiot, write_config};
use support::sim::{on_register_command, Sim};
use support::{Broker, BrokerConfig, Device, DynamicDevice, TempDir};
use uiot::platform::shadow::Shadow;
use uiot::platform::thing::{EventKind, Thing, ThingEvent};
use uiot::{Client, Error, Identity, Options, QoS};

const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &Path, port: u16, device: &str) -> PathBuf {
    write_config(dir, port, device, "")
}

fn dyn_config(dir: &Path, port: u16, d: &DynamicDevice) -> PathBuf {
    config(dir, port, &dynamic_device(d))
}

fn static_config(dir: &Path, port: u16, d: &Device) -> PathBuf {
    config(dir, port, &static_device(d))
}

fn device(broker: &Broker, d: &Device) -> Client {
    let id = Identity::new(&d.product_sn, &d.device_sn);
    Client::connect(Options::device("127.0.0.1", broker.port(), id, &d.secret)).unwrap()
}

#[test]
fn registration_once_the_hook_lets_the_device_in_and_refusals_name_the_code() {
    let allowed = DynamicDevice::new("harnessprod00001", "dynsimdevice01", "harnessprodsec01");
    let unknown = DynamicDevice::new("harnessprod00001", "dynsimdevice02", "harnessprodsec01");
    let Some(broker) = support::broker_with(
        BrokerConfig::new()
            .dynamic(allowed.clone())
            .dynamic(unknown.clone()),
    ) else {
        return;
    };
    let state_dir = TempDir::new("sim-state");
    let state = state_dir.path().join("cloud.json");
    let hook = on_register_command(&broker);
    let sim = Sim::start(
        &broker,
        &[
            "--allow-register",
            &allowed.device_sn,
            "--on-register",
            &hook,
            "--state",
            state.to_str().unwrap(),
        ],
    );
    let dir = TempDir::new("sim-reg");
    let cfg = dyn_config(dir.path(), broker.port(), &allowed);
    let cfg = cfg.to_str().unwrap();
    let o = uiot(&["register", "-c", cfg]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("\"registered\":\"now\""), "{out}");
    let secret = std::fs::read_to_string(dir.path().join("device.secret")).unwrap();
    let secret = secret.trim();
    assert_eq!(
        secret.len(),
        16,
        "a 16-character secret like the platform's"
    );
    sim.expect("the registration answered 0", |l| {
        l["request"] == "password" && l["RetCode"] == "0"
    });
    assert!(
        !sim.lines().iter().any(|l| l.to_string().contains(secret)),
        "the secret is never printed"
    );
    // The hook added the PSN|DSN|1 login: the device logs in with its secret.
    let o = uiot(&["pub", "-c", cfg, "-t", "upload", "-m", "hello", "-q", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A second registration (the secret file lost) is refused: 140, the operator.
    std::fs::remove_file(dir.path().join("device.secret")).unwrap();
    let o = uiot(&["register", "-c", cfg]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(77), "{err}");
    assert!(
        err.contains("RetCode 140") && err.contains("operator"),
        "{err}"
    );
    assert!(!dir.path().join("device.secret").exists());
    // A DeviceSN the cloud was not told about: 100008.
    let dir2 = TempDir::new("sim-reg-unknown");
    let cfg2 = dyn_config(dir2.path(), broker.port(), &unknown);
    let o = uiot(&["register", "-c", cfg2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(stderr(&o).contains("100008"), "{}", stderr(&o));
    // The state file keeps the registration (0600): a new sim still refuses.
    assert_eq!(sim.quit().code(), Some(0));
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let _sim = Sim::start(
        &broker,
        &["--allow-register", "*", "--state", state.to_str().unwrap()],
    );
    let o = uiot(&["register", "-c", cfg]);
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
}

#[test]
fn a_failing_hook_is_a_retry_later_and_nothing_is_saved() {
    let d = DynamicDevice::new("harnessprod00001", "dynsimdevice03", "harnessprodsec01");
    let Some(broker) = support::broker_with(BrokerConfig::new().dynamic(d.clone())) else {
        return;
    };
    let sim = Sim::start(
        &broker,
        &["--allow-register", "*", "--on-register", "exit 3"],
    );
    let dir = TempDir::new("sim-hook");
    let cfg = dyn_config(dir.path(), broker.port(), &d);
    let o = uiot(&["register", "-c", cfg.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(75),
        "130 is temporary: {}",
        stderr(&o)
    );
    assert!(!dir.path().join("device.secret").exists());
    sim.expect("the hook's failure", |l| {
        l["sim"] == "error"
            && l["error"]
                .as_str()
                .unwrap_or("")
                .contains("--on-register failed")
    });
}

#[test]
fn shadow_desired_is_pushed_applied_and_cleared_conflicts_and_reset() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start(&broker, &[]);
    let d = broker.device(0);
    let client = device(&broker, &d);
    let shadow = Shadow::new(&client).unwrap();
    let doc = shadow.get().unwrap();
    assert_eq!(doc.version, 0, "every shadow starts at version 0");
    assert_eq!(
        shadow
            .report(&json!({"temperature": 20, "humidity": 40}))
            .unwrap(),
        1
    );
    let doc = shadow.get().unwrap();
    assert_eq!(doc.reported["temperature"], 20);
    assert!(
        doc.metadata["Reported"]["temperature"]["Timestamp"]
            .as_i64()
            .unwrap()
            > 1_500_000_000
    );
    // The cloud sets a desired value; the device gets it, applies it, clears it.
    sim.send(&format!(
        "desired {} {} {{\"temperature\": 25}}",
        d.product_sn, d.device_sn
    ));
    let desired = shadow.desired_timeout(WAIT).expect("desired pushed");
    assert_eq!(
        (desired.state["temperature"].clone(), desired.version),
        (json!(25), 2)
    );
    assert_eq!(shadow.clear_desired(None).unwrap(), 3);
    sim.send(&format!("state {} {}", d.product_sn, d.device_sn));
    let st = sim.expect("the state", |l| l["sim"] == "state");
    let doc = &st["state"]["Shadow"];
    assert_eq!(doc["State"]["Desired"], json!({}), "desired cleared");
    assert_eq!(
        doc["State"]["Reported"]["temperature"], 25,
        "reported took the desired value"
    );
    assert_eq!(doc["Version"], 3);
    // A stale version: the cloud answers with a control 100026.
    let up = format!("/$system/{}/{}/shadow/upstream", d.product_sn, d.device_sn);
    client
        .publish(
            &up,
            br#"{"Method":"update","State":{"Reported":{"x":1}},"Version":0}"#,
            QoS::AtLeastOnce,
        )
        .unwrap();
    sim.expect("a conflict", |l| {
        l["request"] == "shadow/upstream" && l["RetCode"] == 100026
    });
    // The library keeps the version from the control and goes on (a get
    // first: the device has then taken the control too).
    assert_eq!(shadow.get().unwrap().version, 3);
    assert_eq!(shadow.delete(&["humidity"]).unwrap(), 4);
    assert_eq!(shadow.reset(Some(&json!({"temperature": 21}))).unwrap(), 0);
    assert_eq!(shadow.get().unwrap().version, 0);
    // Broken requests get 230 with the version, and the shadow goes on.
    client.publish(&up, b"not json", QoS::AtLeastOnce).unwrap();
    sim.expect("a 230", |l| {
        l["request"] == "shadow/upstream" && l["RetCode"] == 230
    });
    assert_eq!(shadow.get().unwrap().version, 0);
    let v = shadow.report(&json!({"temperature": 22}));
    assert_eq!(v.as_ref().ok(), Some(&1), "{v:?} {:#?}", sim.lines());
}

#[test]
fn thing_model_requests_answered_and_replies_reach_the_sim_with_their_request_id() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start(&broker, &[]);
    let d = broker.device(0);
    let (psn, dsn) = (d.product_sn.clone(), d.device_sn.clone());
    let client = device(&broker, &d);
    let thing = Thing::new(&client).unwrap();
    thing
        .post(&json!({"temperature": 26, "pos": {"x": 1}}))
        .unwrap();
    let p = sim.expect("the property", |l| l["sim"] == "property");
    assert_eq!(
        p["Property"]["pos"]["Value"],
        json!({"x": 1}),
        "structs wrapped in Value"
    );
    assert_eq!(thing.restore().unwrap()["temperature"], 26);
    thing
        .post_event("high_temp", &json!({"temp": 85}), EventKind::Warning)
        .unwrap();
    sim.expect("the event", |l| {
        l["sim"] == "event" && l["Identifier"] == "high_temp"
    });
    // Template: the sim's default, then one set on its stdin; an event the
    // template lacks is refused with 100038.
    assert_eq!(thing.template().unwrap()["Event"], json!([]));
    sim.send(&format!("template {psn} {{\"Property\":[],\"Event\":[{{\"Identifier\":\"high_temp\"}}],\"Command\":[]}}"));
    sim.expect("template ok", |l| l["command"] == "template");
    assert_eq!(
        thing.template().unwrap()["Event"][0]["Identifier"],
        "high_temp"
    );
    match thing.post_event("other", &json!({}), EventKind::Notify) {
        Err(Error::Platform { code: 100038, .. }) => {}
        other => panic!("{other:?}"),
    }
    // Desired values cached by the cloud: get, then delete with the version.
    sim.send(&format!("tdesired {psn} {dsn} {{\"humidity\": 55}}"));
    sim.expect("tdesired ok", |l| l["command"] == "tdesired");
    let got = thing.desired_values(&["humidity"]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].1.value.clone(), got[0].1.version), (json!(55), 1));
    thing.desired_delete(&[("humidity", 1)]).unwrap();
    assert!(thing.desired_values(&["humidity"]).unwrap().is_empty());
    // Property set: the device's reply reaches the sim with the RequestID.
    sim.send(&format!("set {psn} {dsn} {{\"power\": 1}}"));
    let sent = sim.expect("set sent", |l| l["command"] == "set");
    match thing.recv_timeout(WAIT) {
        Some(ThingEvent::PropertySet(s)) => {
            assert_eq!(s.properties["power"], 1);
            assert_eq!(s.request_id, sent["RequestID"].as_str().unwrap());
            s.reply(0).unwrap();
        }
        other => panic!("{other:?}"),
    }
    let r = sim.expect("the set_reply", |l| l["sim"] == "reply" && l["to"] == "set");
    assert_eq!(
        (
            r["RequestID"].clone(),
            r["RetCode"].clone(),
            r["matched"].clone()
        ),
        (sent["RequestID"].clone(), json!(0), json!(true))
    );
    // Command: answered on command_reply/<RequestID> with Output.
    sim.send(&format!(
        "command {psn} {dsn} set_temp_correction {{\"value\": 2}}"
    ));
    let sent = sim.expect("command sent", |l| l["command"] == "command");
    match thing.recv_timeout(WAIT) {
        Some(ThingEvent::Command(c)) => {
            assert_eq!(
                (c.identifier.as_str(), c.input["value"].clone()),
                ("set_temp_correction", json!(2))
            );
            c.reply(0, &json!({"correction": 2})).unwrap();
        }
        other => panic!("{other:?}"),
    }
    let r = sim.expect("the command reply", |l| {
        l["sim"] == "reply" && l["to"] == "command"
    });
    assert_eq!(r["RequestID"], sent["RequestID"]);
    assert_eq!(
        (r["Output"].clone(), r["matched"].clone()),
        (json!({"correction": 2}), json!(true))
    );
    // A RequestID that makes the reply topic longer than 128 bytes: refused
    // before sending.
    let long = "9".repeat(100);
    sim.send(&format!("command-id {psn} {dsn} {long} reboot {{}}"));
    match thing.recv_timeout(WAIT) {
        Some(ThingEvent::Command(c)) => {
            assert!(!c.can_reply());
            assert!(matches!(c.reply(0, &json!({})), Err(Error::Limit(_))));
        }
        other => panic!("{other:?}"),
    }
    // A broadcast reaches a device subscribed to the product's broadcasts.
    client
        .subscribe(&[(format!("/{psn}/$broadcast/#"), QoS::AtLeastOnce)])
        .unwrap();
    sim.send(&format!("broadcast {psn} notice hello all"));
    let m = client.messages().recv_timeout(WAIT).expect("the broadcast");
    assert_eq!(
        (m.topic.as_str(), m.payload.as_slice()),
        (
            format!("/{psn}/$broadcast/notice").as_str(),
            &b"hello all"[..]
        )
    );
    assert!(
        !sim.lines()
            .iter()
            .any(|l| l["sim"] == "reply" && l["RequestID"] == long.as_str()),
        "nothing sent for the long topic"
    );
}

#[test]
fn cli_watch_command_wait_and_desired_against_the_sim() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start(&broker, &[]);
    let d = broker.device(1);
    let dir = TempDir::new("sim-cli");
    let cfg = static_config(dir.path(), broker.port(), &d);
    let cfg = cfg.to_str().unwrap().to_string();
    let (psn, dsn) = (d.product_sn.clone(), d.device_sn.clone());
    // shadow watch prints the pushed desired values and clears them.
    let c = cfg.clone();
    let watch = std::thread::spawn(move || {
        uiot(&[
            "shadow", "watch", "-C", "1", "--clear", "-c", &c, "-W", "10",
        ])
    });
    sim.expect("the watcher's get", |l| l["request"] == "shadow/get");
    sim.send(&format!("desired {psn} {dsn} {{\"led\": \"on\"}}"));
    let o = watch.join().unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{err}");
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["Desired"]["led"], "on");
    sim.expect("desired cleared", |l| {
        l["request"] == "shadow/upstream" && l["Version"] == 2
    });
    // command wait answers with --reply; the sim sees the answer.
    let c = cfg.clone();
    let wait = std::thread::spawn(move || {
        uiot(&[
            "command",
            "wait",
            "-C",
            "1",
            "--reply",
            "{\"done\":1}",
            "-c",
            &c,
            "-W",
            "10",
        ])
    });
    let subscribed = format!("{psn}.{dsn} 1 /$system/{psn}/{dsn}/tmodel/command");
    assert!(
        broker.wait_for_log(&subscribed, WAIT),
        "command wait subscribed"
    );
    sim.send(&format!("command {psn} {dsn} blink {{\"times\": 3}}"));
    let o = wait.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let printed: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (
            printed["Identifier"].clone(),
            printed["Input"]["times"].clone()
        ),
        (json!("blink"), json!(3))
    );
    let r = sim.expect("the command reply", |l| {
        l["sim"] == "reply" && l["to"] == "command"
    });
    assert_eq!(
        (r["Output"].clone(), r["matched"].clone()),
        (json!({"done": 1}), json!(true))
    );
    // Cached desired values through the CLI.
    sim.send(&format!("tdesired {psn} {dsn} {{\"fan\": 2}}"));
    sim.expect("tdesired ok", |l| l["command"] == "tdesired");
    let o = uiot(&["property", "desired", "-c", &cfg]);
    assert_eq!(
        stdout(&o).trim(),
        r#"{"Desired":{"fan":{"Value":2,"Version":1}}}"#,
        "{}",
        stderr(&o)
    );
    let o = uiot(&["shadow", "get", "-c", &cfg]);
    let doc: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (
            doc["State"]["Reported"]["led"].clone(),
            doc["Version"].clone()
        ),
        (json!("on"), json!(2))
    );
}

#[test]
fn bad_stdin_lines_bad_arguments_and_a_broken_state_file() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start(&broker, &[]);
    let d = broker.device(0);
    for bad in [
        "frobnicate",
        "desired only-psn",
        "set p d [1]",
        "raw a/# x",
        "command p d id {",
    ] {
        sim.send(bad);
    }
    let errors = || sim.lines().iter().filter(|l| l["sim"] == "error").count();
    let deadline = std::time::Instant::now() + WAIT;
    while errors() < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(errors(), 5, "{:#?}", sim.lines());
    // Still answering.
    let client = device(&broker, &d);
    assert_eq!(Shadow::new(&client).unwrap().get().unwrap().version, 0);
    // Usage errors exit 64, an unreadable state 78, no broker 69.
    let mut s = Sim::spawn(&["--port", "0"]);
    assert_eq!(s.wait_exit(WAIT).code(), Some(64));
    let mut s = Sim::spawn(&["-p", "1883"]);
    assert_eq!(s.wait_exit(WAIT).code(), Some(64), "no --username");
    let dir = TempDir::new("sim-bad-state");
    let state = dir.path().join("cloud.json");
    std::fs::write(&state, "{broken").unwrap();
    let mut s = Sim::spawn(&["-u", "x", "--state", state.to_str().unwrap()]);
    assert_eq!(s.wait_exit(WAIT).code(), Some(78));
    let closed = support::broker::free_port().to_string();
    let mut s = Sim::spawn(&["-p", &closed, "-u", "x"]);
    assert_eq!(s.wait_exit(Duration::from_secs(30)).code(), Some(69));
}
