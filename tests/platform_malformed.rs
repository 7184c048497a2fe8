//! Malformed and unsolicited cloud messages on the device's own system
//! topics, against a real Mosquitto: a superuser "cloud" client sends a
//! table of bad shadow and thing model messages to one connected device;
//! for each row a warn-level log line must name the topic and the reason,
//! and the next valid request on that service must still succeed.
//!
//! Owns: this table, the in-process logger that captures warn records, and
//! the small cloud answering `shadow/get`, `shadow/upstream` and
//! `tmodel/property/post`. Must not touch: tests/support (it only uses it),
//! any address but 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::broker::{CLOUD_PASSWORD, CLOUD_USER};
use support::{Broker, BrokerConfig, Device};
use uiot::platform::shadow::Shadow;
use uiot::platform::thing::Thing;
use uiot::{Client, Identity, Limits, Options, QoS};

/// Warn records (and worse) of the whole test process, as "LEVEL message".
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let line = format!("{} {}", r.level(), r.args());
            LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

fn lines_since(from: usize) -> Vec<String> {
    let l = LINES.lock().unwrap();
    l[from.min(l.len())..].to_vec()
}

fn line_count() -> usize {
    LINES.lock().unwrap().len()
}

/// Waits (at most 3 s) for a WARN line after `from` naming `topic` and
/// containing `why`.
fn wait_warn(from: usize, topic: &str, why: &str) -> Result<String, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let new = lines_since(from);
        if let Some(l) = new
            .iter()
            .find(|l| l.starts_with("WARN ") && l.contains(topic) && l.contains(why))
        {
            return Ok(l.clone());
        }
        if Instant::now() >= deadline {
            return Err(new);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Bigger than the platform's 256 KiB, for the size row (broker and both
/// clients allow it here so that the device's own check is what drops it).
const BIG: usize = 1024 * 1024;

fn big_limits() -> Limits {
    Limits {
        max_packet: BIG,
        ..Limits::unlimited()
    }
}

fn cloud(broker: &Broker, filters: &[&str], id: &str) -> Client {
    let mut o = Options::new("127.0.0.1", broker.port(), id);
    o.username = Some(CLOUD_USER.into());
    o.password = Some(CLOUD_PASSWORD.into());
    o.limits = big_limits();
    let c = Client::connect(o).unwrap();
    let f: Vec<(&str, QoS)> = filters.iter().map(|f| (*f, QoS::AtLeastOnce)).collect();
    if !f.is_empty() {
        c.subscribe(&f).unwrap();
    }
    c
}

/// Answers shadow get/upstream (reply with the request's version + 1, or
/// 0 after a reset) and property posts (RetCode 0, the same RequestID).
fn answering_cloud(c: Client) {
    std::thread::spawn(move || {
        let mut version: i64 = 0;
        for m in c.messages().iter() {
            let Ok(req) = serde_json::from_slice::<Value>(&m.payload) else {
                continue;
            };
            let base = m.topic.rsplit_once('/').unwrap().0.to_string();
            let (topic, body) = if m.topic.ends_with("/shadow/get") {
                let body = json!({"State": {"Reported": {}, "Desired": {}}, "Version": version});
                (format!("{base}/get_reply"), body)
            } else if m.topic.ends_with("/shadow/upstream") {
                let v = req["Version"].as_i64().unwrap_or(0);
                version = if v < 0 { 0 } else { v + 1 };
                let body =
                    json!({"Method": "reply", "Payload": {"RetCode": 0}, "Version": version});
                (format!("{base}/downstream"), body)
            } else {
                let body = json!({"RequestID": req["RequestID"], "RetCode": 0});
                (format!("{}_reply", m.topic), body)
            };
            c.enqueue(&topic, body.to_string().into_bytes(), QoS::AtLeastOnce)
                .unwrap();
        }
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Shadow,
    Thing,
}

struct Row {
    name: &'static str,
    /// Under `/$system/PSN/DSN/`.
    suffix: &'static str,
    payload: Vec<u8>,
    /// What the warning must say besides the topic.
    why: &'static str,
}

fn row(name: &'static str, suffix: &'static str, payload: &[u8], why: &'static str) -> Row {
    Row {
        name,
        suffix,
        payload: payload.to_vec(),
        why,
    }
}

fn rows() -> Vec<Row> {
    const DOWN: &str = "shadow/downstream";
    const GET: &str = "shadow/get_reply";
    const POST: &str = "tmodel/property/post_reply";
    const SET: &str = "tmodel/property/set";
    const CMD: &str = "tmodel/command";
    // 300 KB, JSON-looking: over the 256 KiB parse limit.
    let mut huge = br#"{"RequestID":"1","RetCode":0,"Pad":""#.to_vec();
    huge.resize(300 * 1024, b'x');
    huge.extend_from_slice(br#""}"#);
    // 200 KB of '[': serde_json's recursion limit, not the thread's stack.
    let deep = vec![b'['; 200 * 1024];
    vec![
        row("shadow: not JSON", DOWN, b"not json", "not JSON"),
        row("shadow: JSON array", DOWN, b"[1,2]", "JSON an array where an object was expected"),
        row("shadow: JSON null", DOWN, b"null", "JSON null where an object"),
        row("shadow: no Version", DOWN, br#"{"Method":"reply","Payload":{"RetCode":0}}"#, "no Version"),
        row("shadow: negative Version", DOWN, br#"{"Method":"reply","Payload":{"RetCode":0},"Version":-1}"#, "Version -1 is not a non-negative 32-bit integer"),
        row("shadow: Version over 32 bits", DOWN, br#"{"Method":"reply","Payload":{"RetCode":0},"Version":4294967296}"#, "Version 4294967296 is not"),
        row("shadow: Version a string", DOWN, br#"{"Method":"reply","Payload":{"RetCode":0},"Version":"3"}"#, r#"Version "3" is not"#),
        row("shadow: no Method", DOWN, br#"{"Payload":{"RetCode":0},"Version":1}"#, "no Method"),
        row("shadow: Method a number", DOWN, br#"{"Method":5,"Payload":{"RetCode":0},"Version":1}"#, "Method is a number, not a string"),
        row("shadow: unknown Method", DOWN, br#"{"Method":"explode","Payload":{"RetCode":0},"Version":1}"#, r#"unknown Method "explode""#),
        row("shadow: Payload not an object", DOWN, br#"{"Method":"reply","Payload":"x","Version":1}"#, "Payload is a string, not an object"),
        row("shadow: RetCode a non-numeric string", DOWN, br#"{"Method":"reply","Payload":{"RetCode":"abc"},"Version":1}"#, r#"RetCode "abc" is not an integer"#),
        row("shadow: RetCode a fraction", DOWN, br#"{"Method":"reply","Payload":{"RetCode":1.5},"Version":1}"#, "RetCode 1.5 is not an integer"),
        row("shadow: no RetCode", DOWN, br#"{"Method":"reply","Payload":{},"Version":1}"#, "no RetCode"),
        row("shadow: reply nobody waits for", DOWN, br#"{"Method":"reply","Payload":{"RetCode":0},"Version":9999}"#, "shadow reply (version 9999) belongs to no pending request"),
        row("shadow: refusal nobody waits for", DOWN, br#"{"Method":"reply","Payload":{"RetCode":100025},"Version":9999}"#, "RetCode 100025 belongs to no pending request"),
        row("shadow: control with Desired an array", DOWN, br#"{"Method":"control","Payload":{"RetCode":0,"State":{"Desired":[1]}},"Version":9999}"#, "Payload.State.Desired is an array, not an object"),
        row("shadow: invalid UTF-8", DOWN, b"\xff\xfe\xfd{", "not JSON"),
        row("shadow: get_reply State a string", GET, br#"{"State":"x","Version":1}"#, "State is a string, not an object"),
        row("shadow: get_reply Reported an array", GET, br#"{"State":{"Reported":[1]},"Version":1}"#, "State.Reported is an array, not an object"),
        row("thing: no RequestID", POST, br#"{"RetCode":0}"#, "no RequestID"),
        row("thing: RequestID empty", POST, br#"{"RequestID":"","RetCode":0}"#, "RequestID is empty"),
        row("thing: RequestID a boolean", POST, br#"{"RequestID":true,"RetCode":0}"#, "RequestID is a boolean, not a string"),
        row("thing: foreign RequestID", POST, br#"{"RequestID":"nope","RetCode":0}"#, r#"RequestID "nope" belongs to no pending request"#),
        row("thing: RequestID a foreign number", POST, br#"{"RequestID":12345,"RetCode":0}"#, r#"RequestID "12345" belongs to no pending request"#),
        row("thing: unknown suffix", "tmodel/service/unknown", br#"{"RequestID":"1"}"#, "not a thing model topic uiot handles"),
        row("thing: property/set without Property", SET, br#"{"RequestID":"7"}"#, "no Property"),
        row("thing: property/set Property an array", SET, br#"{"RequestID":"7","Property":[1]}"#, "Property is an array, not an object"),
        row("thing: command without Identifier", CMD, br#"{"RequestID":"8","Input":{}}"#, "no Identifier"),
        row("thing: command Identifier empty", CMD, br#"{"RequestID":"8","Identifier":"","Input":{}}"#, "Identifier is empty"),
        row("thing: command Input an array", CMD, br#"{"RequestID":"8","Identifier":"down","Input":[1]}"#, "Input is an array, not an object"),
        row("thing: command without Input", CMD, br#"{"RequestID":"8","Identifier":"down"}"#, "no Input"),
        row("thing: empty payload", POST, b"", "not JSON"),
        row("thing: invalid UTF-8", POST, b"\xc3\x28\xa0\xa1", "not JSON"),
        Row { name: "thing: 300 KB payload", suffix: POST, payload: huge, why: "307202 bytes, more than 262144" },
        Row { name: "thing: 200 KB of nesting", suffix: CMD, payload: deep, why: "recursion limit exceeded" },
    ]
}

#[test]
fn every_malformed_cloud_message_is_logged_with_its_topic_and_the_service_goes_on() {
    let started = Instant::now();
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    // A short DeviceSN, so that every topic here fits the 64 characters a
    // warning quotes whole.
    let dev = Device::new("harnessprod00001", "dev1", "devonesecret0001");
    let config = BrokerConfig::new()
        .device(dev.clone())
        .extra(&format!("max_packet_size {BIG}"));
    let Some(broker) = support::broker_with(config) else {
        return;
    };
    answering_cloud(cloud(
        &broker,
        &[
            "/$system/+/+/shadow/get",
            "/$system/+/+/shadow/upstream",
            "/$system/+/+/tmodel/property/post",
        ],
        "test-cloud",
    ));
    let sender = cloud(&broker, &[], "test-cloud-rows");
    let id = Identity::new(&dev.product_sn, &dev.device_sn);
    let mut o = Options::device("127.0.0.1", broker.port(), id, &dev.secret);
    o.limits = big_limits();
    let client = Client::connect(o).unwrap();
    let shadow = Shadow::with_timeout(&client, Duration::from_secs(5)).unwrap();
    let thing = Thing::with_timeout(&client, Duration::from_secs(5)).unwrap();
    // The unknown-suffix row needs a subscription that routes it to the
    // thing model's dispatcher (the route takes every tmodel/ topic).
    client
        .subscribe(&[(dev.system_topic("tmodel/service/unknown"), QoS::AtLeastOnce)])
        .unwrap();
    shadow.report(&json!({"start": true})).unwrap();
    thing.post(&json!({"start": true})).unwrap();

    let rows = rows();
    assert!(rows.len() >= 22, "{} rows", rows.len());
    let mut failures = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let topic = dev.system_topic(r.suffix);
        assert!(topic.len() <= uiot::QUOTE_MAX, "{topic} would be cut");
        let from = line_count();
        sender
            .publish(&topic, &r.payload, QoS::AtLeastOnce)
            .unwrap_or_else(|e| panic!("{}: the cloud could not send it: {e}", r.name));
        if let Err(seen) = wait_warn(from, &topic, r.why) {
            failures.push(format!(
                "{}: no WARN naming {topic} with {:?}; saw {seen:?}",
                r.name, r.why
            ));
        }
        let service = if r.suffix.starts_with("shadow/") {
            Service::Shadow
        } else {
            Service::Thing
        };
        let next = match service {
            Service::Shadow => shadow.report(&json!({ "row": i })).map(|_| ()),
            Service::Thing => thing.post(&json!({ "row": i })),
        };
        if let Err(e) = next {
            failures.push(format!(
                "{}: the next {service:?} request failed: {e}",
                r.name
            ));
        }
    }
    // Nothing malformed reached the application.
    assert!(thing.recv_timeout(Duration::from_millis(100)).is_none());
    assert!(shadow.desired_timeout(Duration::from_millis(1)).is_none());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
