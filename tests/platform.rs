//! The platform services against a real Mosquitto, with a minimal cloud in
//! the test (a superuser client answering the system topics): dynamic
//! registration through `uiot register`, shadow get/report/conflict/desired,
//! thing model post/set/command, replies matched only to their request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::broker::{CLOUD_PASSWORD, CLOUD_USER};
use support::{Broker, BrokerConfig, Device, DynamicDevice, TempDir};
use uiot::platform::shadow::Shadow;
use uiot::platform::thing::{EventKind, Thing, ThingEvent};
use uiot::{Client, Error, Identity, Limits, Options, QoS};

const SECRET: &str = "issuedsecret0001";

/// A superuser client: the cloud side of the test.
fn cloud(broker: &Broker, filters: &[&str]) -> Client {
    let mut o = Options::new("127.0.0.1", broker.port(), "test-cloud");
    o.username = Some(CLOUD_USER.into());
    o.password = Some(CLOUD_PASSWORD.into());
    o.limits = Limits::unlimited();
    let c = Client::connect(o).unwrap();
    let f: Vec<(&str, QoS)> = filters.iter().map(|f| (*f, QoS::AtLeastOnce)).collect();
    c.subscribe(&f).unwrap();
    c
}

fn device(broker: &Broker, dev: &Device) -> Client {
    let id = Identity::new(&dev.product_sn, &dev.device_sn);
    Client::connect(Options::device("127.0.0.1", broker.port(), id, &dev.secret)).unwrap()
}

fn json_of(m: &uiot::Message) -> Value {
    serde_json::from_slice(&m.payload).unwrap()
}

/// Answers registration requests with `code` (and SECRET when 0).
fn registrar(c: Client, code: i64) {
    std::thread::spawn(move || {
        for m in c.messages().iter() {
            let req = json_of(&m);
            let reply = m.topic.replace("/password", "/password_reply");
            let mut body = json!({"RetCode": code.to_string(), "RequestID": req["RequestID"]});
            if code == 0 {
                body["Password"] = SECRET.into();
            }
            c.enqueue(&reply, body.to_string().into_bytes(), QoS::AtLeastOnce)
                .unwrap();
        }
    });
}

fn dyn_config(dir: &TempDir, port: u16, d: &DynamicDevice) -> std::path::PathBuf {
    let path = dir.path().join("dyn.ini");
    std::fs::write(
        &path,
        format!(
            "[device]\nproduct_sn = {}\ndevice_sn = {}\nproduct_secret = {}\nsecret_file = device.secret\n\
             [connection]\nhost = 127.0.0.1\nport = {port}\ntls = false\nconnect_timeout = 3\n",
            d.product_sn, d.device_sn, d.product_secret
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn uiot(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_uiot"))
        .args(args)
        .env_remove("UIOT_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn dyn_broker() -> Option<(Broker, DynamicDevice)> {
    let d = DynamicDevice::new("harnessprod00001", "dyndevice0001", "harnessprodsec01");
    let config = BrokerConfig::new()
        .device(Device::new(&d.product_sn, &d.device_sn, SECRET))
        .dynamic(d.clone());
    Some((support::broker_with(config)?, d))
}

#[test]
fn register_saves_the_secret_once_0600_then_logs_in_with_it() {
    let Some((broker, d)) = dyn_broker() else {
        return;
    };
    registrar(cloud(&broker, &["/$system/+/+/password"]), 0);
    let dir = TempDir::new("dynreg");
    let cfg = dyn_config(&dir, broker.port(), &d);
    let cfg_s = cfg.to_str().unwrap();
    let o = uiot(&["register", "-c", cfg_s]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"registered\":\"now\""));
    let file = dir.path().join("device.secret");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("{SECRET}\n")
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!String::from_utf8_lossy(&o.stderr).contains(SECRET));
    // Later starts use the saved secret and never register again.
    let o = uiot(&["register", "-c", cfg_s]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"registered\":\"before\""));
    let o = uiot(&["pub", "-c", cfg_s, "-t", "upload", "-m", "hi", "-q", "1"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn first_use_registers_and_a_refusal_exits_77_naming_the_operator() {
    let Some((broker, d)) = dyn_broker() else {
        return;
    };
    registrar(cloud(&broker, &["/$system/+/+/password"]), 140);
    let dir = TempDir::new("dynreg-refused");
    let cfg = dyn_config(&dir, broker.port(), &d);
    let o = uiot(&[
        "pub",
        "-c",
        cfg.to_str().unwrap(),
        "-t",
        "upload",
        "-m",
        "x",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(77), "{err}");
    assert!(
        err.contains("RetCode 140") && err.contains("operator"),
        "{err}"
    );
    assert!(!dir.path().join("device.secret").exists(), "nothing saved");
}

/// Shadow cloud: version kept; the first update after `conflict` is set gets
/// a 100026 control; a stray reply with a wrong version comes first.
fn shadow_cloud(c: Client, conflict: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut version: i64 = 0;
        let mut reported = json!({});
        for m in c.messages().iter() {
            let req = json_of(&m);
            let base = m.topic.rsplit_once('/').unwrap().0.to_string();
            let send = |suffix: &str, v: Value| {
                c.enqueue(
                    &format!("{base}/{suffix}"),
                    v.to_string().into_bytes(),
                    QoS::AtLeastOnce,
                )
                .unwrap();
            };
            if m.topic.ends_with("/get") {
                send(
                    "get_reply",
                    json!({"State": {"Reported": reported, "Desired": {}}, "Metadata": {}, "Version": version}),
                );
                continue;
            }
            // A reply nobody asked for, and malformed ones: ignored.
            send(
                "downstream",
                json!({"Method": "reply", "Payload": {"RetCode": 0}, "Version": 9999}),
            );
            send(
                "downstream",
                json!({"Payload": {"RetCode": 0}, "Version": 1}),
            );
            c.enqueue(
                &format!("{base}/downstream"),
                b"not json".to_vec(),
                QoS::AtLeastOnce,
            )
            .unwrap();
            if conflict.swap(false, Ordering::SeqCst) {
                version += 5;
                send(
                    "downstream",
                    json!({"Method": "control", "Payload": {"RetCode": 100026, "State": {"Reported": reported}}, "Version": version}),
                );
                continue;
            }
            if req["Version"] != json!(version) && req["Version"] != json!(-1) {
                send(
                    "downstream",
                    json!({"Method": "control", "Payload": {"RetCode": 100026}, "Version": version}),
                );
                continue;
            }
            if let Some(r) = req["State"]["Reported"].as_object() {
                for (k, v) in r {
                    reported[k] = v.clone();
                }
            }
            version = if req["Version"] == json!(-1) {
                0
            } else {
                version + 1
            };
            send(
                "downstream",
                json!({"Method": "reply", "Payload": {"RetCode": 0}, "Version": version}),
            );
        }
    });
}

#[test]
fn shadow_report_conflict_reset_and_desired() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let c = cloud(
        &broker,
        &["/$system/+/+/shadow/get", "/$system/+/+/shadow/upstream"],
    );
    let conflict = Arc::new(AtomicBool::new(false));
    shadow_cloud(c.clone(), conflict.clone());
    let client = device(&broker, &dev);
    let shadow = Shadow::with_timeout(&client, Duration::from_secs(5)).unwrap();
    assert_eq!(shadow.get().unwrap().version, 0);
    assert_eq!(shadow.report(&json!({"temperature": 26})).unwrap(), 1);
    conflict.store(true, Ordering::SeqCst);
    // Conflict: adopt version 6, retry once, succeed with 7.
    assert_eq!(shadow.report(&json!({"humidity": 57})).unwrap(), 7);
    assert_eq!(shadow.reset(None).unwrap(), 0);
    assert_eq!(shadow.version(), Some(0));
    let doc = shadow.get().unwrap();
    assert_eq!(doc.reported["humidity"], json!(57));
    // Desired pushed by the cloud reaches the application.
    let control = json!({"Method": "control", "Payload": {"RetCode": 0, "State": {"Desired": {"temperature": 17}}}, "Version": 3});
    c.publish(
        &dev.system_topic("shadow/downstream"),
        control.to_string().as_bytes(),
        QoS::AtLeastOnce,
    )
    .unwrap();
    let d = shadow
        .desired_timeout(Duration::from_secs(5))
        .expect("desired pushed");
    assert_eq!(d.state["temperature"], json!(17));
    assert_eq!(d.version, 3);
    assert!(matches!(
        shadow.report(&json!(5)),
        Err(Error::InvalidArgument(_))
    ));
    // The application's own unsubscribe and a reconnect leave it working.
    client.unsubscribe(&[dev.topic("set")]).unwrap();
    client.disconnect().unwrap();
    let client = device(&broker, &dev);
    let shadow = Shadow::with_timeout(&client, Duration::from_secs(5)).unwrap();
    assert_eq!(
        shadow.get().unwrap().version,
        0,
        "the cloud's version after the reset"
    );
}

#[test]
fn thing_model_requests_sets_and_commands() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let c = cloud(
        &broker,
        &[
            "/$system/+/+/tmodel/property/post",
            "/$system/+/+/tmodel/event/post",
            "/$system/+/+/tmodel/property/set_reply",
            "/$system/+/+/tmodel/command_reply/+",
        ],
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let cc = c.clone();
    std::thread::spawn(move || {
        for m in cc.messages().iter() {
            let req = json_of(&m);
            if m.topic.ends_with("/post") {
                let reply = format!("{}_reply", m.topic);
                // A reply for another request first: must not complete ours.
                let other = json!({"RequestID": "nope", "RetCode": 0});
                cc.enqueue(&reply, other.to_string().into_bytes(), QoS::AtLeastOnce)
                    .unwrap();
                let code = if req.get("Identifier").is_some() {
                    100038
                } else {
                    0
                };
                let body = json!({"RequestID": req["RequestID"], "RetCode": code, "Message": "m"});
                cc.enqueue(&reply, body.to_string().into_bytes(), QoS::AtLeastOnce)
                    .unwrap();
            } else {
                tx.send((m.topic.clone(), req)).unwrap();
            }
        }
    });
    let client = device(&broker, &dev);
    let thing = Thing::with_timeout(&client, Duration::from_secs(5)).unwrap();
    thing
        .post(&json!({"temperature": 26, "pos": {"x": 1}}))
        .unwrap();
    let e = thing
        .post_event("alarm", &json!({"code": 3}), EventKind::Warning)
        .unwrap_err();
    assert!(matches!(e, Error::Platform { code: 100038, .. }), "{e}");
    let set = json!({"RequestID": "77", "Property": {"power": 1}});
    c.publish(
        &dev.system_topic("tmodel/property/set"),
        set.to_string().as_bytes(),
        QoS::AtLeastOnce,
    )
    .unwrap();
    match thing.recv_timeout(Duration::from_secs(5)) {
        Some(ThingEvent::PropertySet(s)) => {
            assert_eq!(s.properties["power"], json!(1));
            s.reply(0).unwrap();
        }
        other => panic!("{other:?}"),
    }
    let (topic, reply) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(topic.ends_with("property/set_reply"));
    assert_eq!(reply, json!({"RequestID": "77", "RetCode": 0}));
    // A command whose reply topic would exceed 128 bytes: refused locally.
    let long = "9".repeat(80);
    let cmd = json!({"RequestID": long, "Identifier": "down", "Input": {"v": 5}});
    c.publish(
        &dev.system_topic("tmodel/command"),
        cmd.to_string().as_bytes(),
        QoS::AtLeastOnce,
    )
    .unwrap();
    match thing.recv_timeout(Duration::from_secs(5)) {
        Some(ThingEvent::Command(cmd)) => {
            assert!(!cmd.can_reply());
            assert!(matches!(cmd.reply(0, &json!({})), Err(Error::Limit(_))));
        }
        other => panic!("{other:?}"),
    }
    // A dropped command is answered with UNANSWERED.
    let cmd = json!({"RequestID": "88", "Identifier": "down", "Input": {}});
    c.publish(
        &dev.system_topic("tmodel/command"),
        cmd.to_string().as_bytes(),
        QoS::AtLeastOnce,
    )
    .unwrap();
    drop(thing.recv_timeout(Duration::from_secs(5)).unwrap());
    let (topic, reply) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(topic.ends_with("command_reply/88"), "{topic}");
    assert_eq!(reply["RetCode"], json!(130));
    // Application messages still reach client.messages().
    client
        .subscribe(&[(dev.topic("set"), QoS::AtLeastOnce)])
        .unwrap();
    c.publish(&dev.topic("set"), b"x", QoS::AtLeastOnce)
        .unwrap();
    let m = client
        .messages()
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    assert_eq!(m.payload, b"x");
}

#[test]
fn cli_property_post_and_event_print_one_json_line_and_check_takes_unregistered() {
    let Some((broker, d)) = dyn_broker() else {
        return;
    };
    // An unregistered product_secret config is valid for `uiot check`.
    let dir = TempDir::new("cli-services");
    let dcfg = dyn_config(&dir, broker.port(), &d);
    let o = uiot(&["check", "-c", dcfg.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("not registered yet"), "{out}");
    // property post / event post against a cloud answering post_reply.
    let c = cloud(
        &broker,
        &[
            "/$system/+/+/tmodel/property/post",
            "/$system/+/+/tmodel/event/post",
        ],
    );
    let cc = c.clone();
    std::thread::spawn(move || {
        for m in cc.messages().iter() {
            let req = json_of(&m);
            let code = if req.get("Identifier").is_some() {
                100038
            } else {
                0
            };
            let body = json!({"RequestID": req["RequestID"], "RetCode": code});
            cc.enqueue(
                &format!("{}_reply", m.topic),
                body.to_string().into_bytes(),
                QoS::AtLeastOnce,
            )
            .unwrap();
        }
    });
    let dev = Device::new(&d.product_sn, &d.device_sn, SECRET);
    let cfg = dir.path().join("static.ini");
    std::fs::write(
        &cfg,
        format!(
            "[device]\nproduct_sn = {}\ndevice_sn = {}\ndevice_secret = {}\n\
             [connection]\nhost = 127.0.0.1\nport = {}\ntls = false\n",
            dev.product_sn,
            dev.device_sn,
            dev.secret,
            broker.port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let o = uiot(&["property", "post", "-c", cfg_s, "{\"temperature\":21}"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "{\"RetCode\":0}\n");
    // A refusal is exit 77 with the code named; bad JSON is a usage error.
    let o = uiot(&["event", "post", "alarm", "{\"code\":3}", "-c", cfg_s]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(77), "{err}");
    assert!(err.contains("100038"), "{err}");
    let o = uiot(&["property", "post", "-c", cfg_s, "{temp:1}"]);
    assert_eq!(o.status.code(), Some(64));
    let o = uiot(&["shadow", "-c", cfg_s]);
    assert_eq!(o.status.code(), Some(64));
}
