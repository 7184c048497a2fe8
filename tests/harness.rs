//! Tests of the integration-test harness (tests/support) and of the broker
//! profile that mimics UIoT Core, using Mosquitto's own clients as stand-in
//! devices and raw sockets against the fake peer.
//!
//! Owns: nothing but these tests. Must not touch: the library (these tests
//! must pass before the client exists), any address but 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)] // a test: a failed unwrap or assertion is the failure report

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::peer::{self, FakePeer, Step};
use support::{Broker, BrokerConfig, Device, DynamicDevice};

const WAIT: Duration = Duration::from_secs(5);

/// Stand-in device publish that must succeed (login accepted).
fn publish_ok(broker: &Broker, dev: &Device, topic: &str, payload: &str) {
    let out = broker.device_publish(dev, topic, payload, 1);
    assert!(
        out.status.success(),
        "mosquitto_pub as {} to {topic} failed: {}",
        dev.client_id(),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- broker --

#[test]
fn device_upload_reaches_the_cloud_and_login_fields_are_logged() {
    let Some(broker) = support::broker() else {
        return;
    };
    let cloud = broker.observer("#");
    let dev = broker.device(0);
    assert_eq!(dev.client_id(), "harnessprod00001.harnessdevi00001");
    assert_eq!(dev.username(), "harnessprod00001|harnessdevi00001|1");

    publish_ok(&broker, &dev, &dev.topic("upload"), "temperature=21");

    let got = cloud.wait_for(1, WAIT);
    assert_eq!(got.len(), 1, "cloud got {got:?}");
    assert_eq!(got[0].topic, "/harnessprod00001/harnessdevi00001/upload");
    assert_eq!(got[0].payload_str(), "temperature=21");
    assert_eq!(got[0].qos, 1);
    assert!(!got[0].retain);
    let log = broker.log();
    assert!(
        log.contains("as harnessprod00001.harnessdevi00001 (")
            && log.contains("u'harnessprod00001|harnessdevi00001|1'"),
        "client id and user name not in the log:\n{log}"
    );
    assert!(
        !log.contains("harnesssecret001"),
        "the broker log must not contain the secret"
    );
}

#[test]
fn binary_and_empty_payloads_survive_the_observer() {
    let Some(broker) = support::broker() else {
        return;
    };
    let cloud = broker.observer("/harnessprod00001/#");
    let binary: Vec<u8> = vec![0, 1, b'\t', b'\n', 0xFF, 0x80];
    broker.cloud_publish("/harnessprod00001/harnessdevi00001/set", &binary, 1);
    broker.cloud_publish("/harnessprod00001/harnessdevi00001/set", b"", 0);
    let got = cloud.wait_for(2, WAIT);
    assert_eq!(got.len(), 2, "cloud got {got:?}");
    assert_eq!(got[0].payload, binary);
    assert!(got[1].payload.is_empty());
    assert_eq!(got[1].qos, 0);
}

#[test]
fn wrong_password_is_refused_and_logged() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut dev = broker.device(0);
    dev.secret = "wrongsecret00000".into();
    let out = broker.device_publish(&dev, &dev.topic("upload"), "x", 1);
    assert!(
        !out.status.success(),
        "login with a wrong password was accepted"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not authorised"),
        "mosquitto_pub said: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        broker.wait_for_log("disconnected, not authorised", WAIT),
        "{}",
        broker.log()
    );
}

#[test]
fn publish_to_another_devices_topic_is_dropped() {
    let Some(broker) = support::broker() else {
        return;
    };
    let cloud = broker.observer("#");
    let (dev0, dev1) = (broker.device(0), broker.device(1));

    // Mosquitto acknowledges the denied publish (mosquitto_pub succeeds)...
    publish_ok(&broker, &dev0, &dev1.topic("upload"), "not mine");
    // ...then a permitted one on the same path proves delivery is working.
    publish_ok(&broker, &dev0, &dev0.topic("upload"), "mine");

    assert!(cloud.wait_for_topic(&dev0.topic("upload"), WAIT));
    let got = cloud.messages();
    assert_eq!(
        got.len(),
        1,
        "the denied publish reached the cloud: {got:?}"
    );
    assert_eq!(got[0].payload_str(), "mine");
    assert!(
        broker.log().contains(&format!(
            "Denied PUBLISH from {} (d0, q1, r0, m1, '{}'",
            dev0.client_id(),
            dev1.topic("upload")
        )),
        "{}",
        broker.log()
    );
}

#[test]
fn device_gets_downlink_on_its_own_topic_only() {
    let Some(broker) = support::broker() else {
        return;
    };
    let (dev0, dev1) = (broker.device(0), broker.device(1));
    // Mosquitto grants the subscription to dev1's topic but delivers nothing.
    let device = broker.device_subscriber(&dev0, &[&dev1.topic("set"), &dev0.topic("set")]);

    broker.cloud_publish(&dev1.topic("set"), "for dev1", 1);
    broker.cloud_publish(&dev0.topic("set"), "for dev0", 1);

    assert!(device.wait_for_topic(&dev0.topic("set"), WAIT));
    let got = device.messages();
    assert_eq!(
        got.len(),
        1,
        "dev0 received another device's message: {got:?}"
    );
    assert_eq!(got[0].payload_str(), "for dev0");
}

#[test]
fn system_topics_work_for_the_device_and_the_cloud() {
    let Some(broker) = support::broker() else {
        return;
    };
    // The cloud's '#' must match /$system/... (they start with '/', not '$').
    let cloud = broker.observer("#");
    let dev = broker.device(0);
    publish_ok(&broker, &dev, &dev.system_topic("shadow/upstream"), "{}");
    // (Subscribed only now: a second login as the same device would kick it.)
    let device = broker.device_subscriber(&dev, &[&dev.system_topic("shadow/get")]);
    broker.cloud_publish(&dev.system_topic("shadow/get"), "{\"Method\":\"get\"}", 1);

    assert!(cloud.wait_for_topic(
        "/$system/harnessprod00001/harnessdevi00001/shadow/upstream",
        WAIT
    ));
    let got = device.wait_for(1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].topic,
        "/$system/harnessprod00001/harnessdevi00001/shadow/get"
    );
}

#[test]
fn broadcast_reaches_the_devices_of_that_product_only() {
    let Some(broker) = support::broker() else {
        return;
    };
    let (dev0, dev1, other) = (broker.device(0), broker.device(1), broker.device(2));
    assert_ne!(dev0.product_sn, other.product_sn);
    let bc = dev0.broadcast_topic("#");
    let sub0 = broker.device_subscriber(&dev0, &[&bc]);
    let sub1 = broker.device_subscriber(&dev1, &[&bc]);
    // The other product's device tries the same filter, plus its own.
    let sub2 = broker.device_subscriber(&other, &[&bc, &other.broadcast_topic("#")]);

    broker.cloud_publish(&dev0.broadcast_topic("notice"), "to product 1", 1);
    broker.cloud_publish(&other.broadcast_topic("notice"), "to product 2", 1);

    for sub in [&sub0, &sub1] {
        let got = sub.wait_for(1, WAIT);
        assert_eq!(got.len(), 1, "{}: {got:?}", sub.client_id());
        assert_eq!(got[0].topic, "/harnessprod00001/$broadcast/notice");
    }
    assert!(sub2.wait_for_topic(&other.broadcast_topic("notice"), WAIT));
    assert_eq!(sub2.messages().len(), 1, "{:?}", sub2.messages());

    // A device may not publish on a broadcast topic.
    publish_ok(&broker, &dev0, &dev0.broadcast_topic("notice"), "spoof");
    assert!(broker.wait_for_log(
        "Denied PUBLISH from harnessprod00001.harnessdevi00001",
        WAIT
    ));
}

#[test]
fn dynamic_registration_login_is_restricted_to_its_system_topics() {
    let dyn_dev = DynamicDevice::new("harnessprod00001", "aabbccddeeff", "productsecret001");
    let config = BrokerConfig::new().dynamic(dyn_dev.clone());
    let Some(broker) = support::broker_with(config) else {
        return;
    };
    assert_eq!(
        broker.dynamic_device(0).username(),
        "harnessprod00001|aabbccddeeff|2"
    );
    let cloud = broker.observer("#");

    // It may publish its request...
    let pub_as = |topic: &str| {
        broker.mosquitto_pub(
            &dyn_dev.client_id(),
            &dyn_dev.username(),
            &dyn_dev.product_secret,
            topic,
            b"{\"RequestID\":\"1\"}",
            1,
        )
    };
    // ...but not upload data (denied: acked and dropped).
    assert!(pub_as("/harnessprod00001/aabbccddeeff/upload")
        .status
        .success());
    assert!(pub_as(&dyn_dev.request_topic()).status.success());
    assert!(cloud.wait_for_topic(&dyn_dev.request_topic(), WAIT));
    assert_eq!(cloud.messages().len(), 1, "{:?}", cloud.messages());
    assert!(broker
        .log()
        .contains("Denied PUBLISH from harnessprod00001.aabbccddeeff"));

    // The cloud's answer on password_reply reaches it.
    let device = broker.subscriber(
        &dyn_dev.client_id(),
        &dyn_dev.username(),
        &dyn_dev.product_secret,
        &[&dyn_dev.reply_topic()],
    );
    let reply = r#"{"RetCode":"0","RequestID":"1","Password":"zlc3d21u5k8fq0d2"}"#;
    broker.cloud_publish(&dyn_dev.reply_topic(), reply, 1);
    let got = device.wait_for(1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload_str(), reply);
}

#[test]
fn profile_refuses_qos2_retain_and_oversized_packets() {
    let Some(broker) = support::broker() else {
        return;
    };
    let cloud = broker.observer("#");
    let dev = broker.device(0);
    let topic = dev.topic("upload");

    let qos2 = broker.device_publish(&dev, &topic, "q2", 2);
    assert!(!qos2.status.success(), "QoS 2 publish was accepted");
    assert!(broker.wait_for_log("Too high QoS in PUBLISH", WAIT));

    let big = vec![b'x'; 300 * 1024];
    let out = broker.device_publish(&dev, &topic, &big, 1);
    assert!(!out.status.success(), "a 300 KB publish was accepted");
    assert!(broker.wait_for_log("disconnected due to oversize packet", WAIT));

    // Retain: sent by hand on a raw socket.
    let mut s = TcpStream::connect(broker.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&connect_bytes(&dev, 60)).unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK");
    let mut retained = peer::publish(&topic, b"kept?", 0, 0);
    retained[0] |= 0x01; // RETAIN flag
    s.write_all(&retained).unwrap();
    let mut rest = [0u8; 1];
    let n = s.read(&mut rest).unwrap_or(0);
    assert_eq!(n, 0, "a retained publish did not close the connection");

    assert_eq!(cloud.messages().len(), 0, "{:?}", cloud.messages());
}

#[test]
fn restart_keeps_the_port_and_clients_can_connect_again() {
    let Some(broker) = support::broker() else {
        return;
    };
    let port = broker.port();
    let dev = broker.device(0);
    publish_ok(&broker, &dev, &dev.topic("upload"), "before");

    broker.stop();
    assert!(!broker.is_running());
    assert!(
        TcpStream::connect(broker.addr()).is_err(),
        "port still accepts after stop"
    );

    broker.restart();
    assert!(broker.is_running());
    assert_eq!(broker.port(), port);
    assert_eq!(
        broker.log_count(" running"),
        2,
        "one start and one restart:\n{}",
        broker.log()
    );
    let cloud = broker.observer("#");
    publish_ok(&broker, &dev, &dev.topic("upload"), "after");
    assert_eq!(cloud.wait_for(1, WAIT).len(), 1);

    // restart() on a running broker works too.
    broker.restart();
    publish_ok(&broker, &dev, &dev.topic("upload"), "again");
}

#[test]
fn dropping_the_broker_kills_it_and_removes_its_files() {
    let Some(broker) = support::broker() else {
        return;
    };
    let addr = broker.addr();
    let dir = broker.dir().to_path_buf();
    assert!(TcpStream::connect(&addr).is_ok());
    assert!(dir.join("mosquitto.conf").is_file());
    drop(broker);
    let err = TcpStream::connect(&addr).expect_err("the port still accepts after drop");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn fixed_port_and_extra_config_lines_are_used() {
    let port = support::broker::free_port();
    let config = BrokerConfig::new()
        .port(port)
        .extra("# marker-line-from-test")
        .device(Device::new(
            "extraproduct0001",
            "extra-device-01",
            "extrasecret00001",
        ));
    let Some(broker) = support::broker_with(config) else {
        return;
    };
    assert_eq!(broker.port(), port);
    let conf = std::fs::read_to_string(broker.dir().join("mosquitto.conf")).unwrap();
    assert!(conf.contains("# marker-line-from-test"));
    assert!(
        conf.starts_with("# Generated") && conf.contains(&format!("listener {port} 127.0.0.1"))
    );
    let added = broker.device(3);
    assert_eq!(added.client_id(), "extraproduct0001.extra-device-01");
    publish_ok(&broker, &added, &added.topic("upload"), "hi");
}

#[test]
fn missing_mosquitto_skips_locally_and_fails_in_ci() {
    const NAME: &str = "missing_mosquitto_skips_locally_and_fails_in_ci";
    if std::env::var_os("UIOT_TEST_PRETEND_NO_MOSQUITTO").is_some() {
        // Child run: behave like any broker test.
        let Some(_broker) = support::broker() else {
            return;
        };
        panic!("a broker started although Mosquitto is 'missing'");
    }
    let run = |ci: &str| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env("UIOT_TEST_PRETEND_NO_MOSQUITTO", "1")
            .env("CI", ci)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (passed, text) = run("");
    assert!(passed, "without CI the test must skip, not fail:\n{text}");
    assert!(
        text.contains("SKIP") && text.contains("apt-get install -y mosquitto"),
        "{text}"
    );

    let (passed, text) = run("true");
    assert!(
        !passed,
        "with CI=true a missing Mosquitto must fail the test:\n{text}"
    );
    assert!(text.contains("apt-get install -y mosquitto"), "{text}");
}

// ------------------------------------------------------- dev broker script --

/// `key = value` from an INI file, without a parser dependency.
fn ini_value(text: &str, key: &str) -> String {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in the ini file"))
}

#[test]
fn dev_broker_script_serves_the_demo_device_from_uiot_demo_ini() {
    // Needs Mosquitto like the rest; try_start applies the skip policy.
    let Some(helper) = support::broker() else {
        return;
    };
    drop(helper);
    let root = env!("CARGO_MANIFEST_DIR");
    let ini = std::fs::read_to_string(format!("{root}/etc/broker/uiot-demo.ini")).unwrap();
    let demo = Device::new(
        &ini_value(&ini, "product_sn"),
        &ini_value(&ini, "device_sn"),
        &ini_value(&ini, "device_secret"),
    );
    assert_eq!(demo.username(), "demoproduct00001|demo-device-0001|1");
    assert_eq!(ini_value(&ini, "host"), "127.0.0.1");
    assert_eq!(ini_value(&ini, "port"), "1883");

    let run_dir = std::env::temp_dir().join(format!("uiot-dev-broker-test-{}", std::process::id()));
    let port = support::broker::free_port().to_string();
    let script = |args: &[&str]| {
        std::process::Command::new("bash")
            .arg(format!("{root}/scripts/dev-broker.sh"))
            .args(args)
            .env("UIOT_BROKER_DIR", &run_dir)
            .output()
            .unwrap()
    };
    /// Stops the background broker even when an assertion fails.
    struct StopOnDrop<F: Fn()>(F);
    impl<F: Fn()> Drop for StopOnDrop<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let started = script(&["--daemon", &port]);
    let _guard = StopOnDrop(|| {
        script(&["stop"]);
        let _ = std::fs::remove_dir_all(&run_dir);
    });
    let stdout = String::from_utf8_lossy(&started.stdout).to_string();
    assert!(
        started.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&started.stderr)
    );
    assert!(
        stdout.contains("pid") && stdout.contains("mosquitto.log"),
        "{stdout}"
    );

    let publish = |dev: &Device, topic: &str| {
        std::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv311", "-q", "1"])
            .args([
                "-i",
                &dev.client_id(),
                "-u",
                &dev.username(),
                "-P",
                &dev.secret,
            ])
            .args(["-t", topic, "-m", "hello"])
            .output()
            .unwrap()
    };
    let ok = publish(&demo, &demo.topic("upload"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let mut wrong = demo.clone();
    wrong.secret = "not-the-secret00".into();
    assert!(
        !publish(&wrong, &demo.topic("upload")).status.success(),
        "a wrong secret was accepted"
    );
    // Acknowledged by Mosquitto, then dropped and logged.
    assert!(publish(&demo, "/demoproduct00001/someone-else/upload")
        .status
        .success());
    let log = std::fs::read_to_string(run_dir.join("mosquitto.log")).unwrap_or_default();
    assert!(
        log.contains("Denied PUBLISH from demoproduct00001.demo-device-0001"),
        "{log}"
    );

    let stopped = script(&["stop"]);
    assert!(stopped.status.success());
    assert!(String::from_utf8_lossy(&stopped.stdout).contains("stopped"));
    assert!(
        TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "the broker still listens after stop"
    );
}

// ------------------------------------------------------------- fake peer --

/// CONNECT for `dev`, built by hand (3.1.1, clean session, user + password).
fn connect_bytes(dev: &Device, keep_alive: u16) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    for field in [dev.client_id(), dev.username(), dev.secret.clone()] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    peer::frame(0x10, &body)
}

fn test_device() -> Device {
    Device::new("70ly1tvowt696r15", "aruidyl0rt9tuvod", "hly3dk1u5y8fq0b9")
}

fn connect_to(peer: &FakePeer) -> TcpStream {
    let s = TcpStream::connect(peer.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

#[test]
fn peer_answers_connect_with_connack() {
    let peer = FakePeer::start(vec![
        Step::Expect(peer::CONNECT),
        Step::Send(peer::connack(0, false)),
    ]);
    let mut s = connect_to(&peer);
    let connect = connect_bytes(&test_device(), 300);
    // The protocol reference's test vector: 102 bytes, remaining length 100.
    assert_eq!(connect.len(), 102);
    assert_eq!(&connect[..4], &[0x10, 0x64, 0x00, 0x04]);
    // Split the frame across two writes: the reader must reassemble it.
    s.write_all(&connect[..7]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(&connect[7..]).unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    peer.wait_done(WAIT).unwrap();

    let frames = peer.received();
    assert_eq!(frames.len(), 1);
    let info = frames[0].connect().unwrap();
    assert_eq!(info.client_id, "70ly1tvowt696r15.aruidyl0rt9tuvod");
    assert_eq!(
        info.username.as_deref(),
        Some("70ly1tvowt696r15|aruidyl0rt9tuvod|1")
    );
    assert_eq!(info.password.as_deref(), Some(&b"hly3dk1u5y8fq0b9"[..]));
    assert_eq!((info.protocol_level, info.keep_alive), (4, 300));
    assert!(info.clean_session());
    assert!(
        !format!("{info:?}").contains("hly3dk1u5y8fq0b9"),
        "Debug shows the password"
    );
}

#[test]
fn peer_replies_with_the_packet_ids_it_was_sent() {
    let peer = FakePeer::start(vec![
        Step::ConnAckNext(0),
        Step::SubAckNext(vec![0x01, 0x80]),
        Step::AckNextPublish,
        Step::UnsubAckNext,
        Step::PingRespNext,
        Step::Expect(peer::DISCONNECT),
        Step::Close,
    ]);
    let mut s = connect_to(&peer);
    s.write_all(&connect_bytes(&test_device(), 60)).unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(buf, [0x20, 2, 0, 0]);

    // SUBSCRIBE id 0x1234, two filters.
    let mut body = vec![0x12, 0x34];
    for f in ["/a/b/set", "/c/d/set"] {
        body.extend_from_slice(&(f.len() as u16).to_be_bytes());
        body.extend_from_slice(f.as_bytes());
        body.push(1);
    }
    s.write_all(&peer::frame(0x82, &body)).unwrap();
    let mut suback = [0u8; 6];
    s.read_exact(&mut suback).unwrap();
    assert_eq!(suback, [0x90, 4, 0x12, 0x34, 0x01, 0x80]);

    s.write_all(&peer::publish("/a/b/upload", b"hi", 1, 7))
        .unwrap();
    s.read_exact(&mut buf).unwrap();
    assert_eq!(buf, [0x40, 2, 0, 7]);

    s.write_all(&peer::frame(0xA2, &[0, 9, 0, 3, b'/', b'x', b'y']))
        .unwrap();
    s.read_exact(&mut buf).unwrap();
    assert_eq!(buf, [0xB0, 2, 0, 9]);

    s.write_all(&[0xC0, 0]).unwrap();
    s.read_exact(&mut buf[..2]).unwrap();
    assert_eq!(buf[..2], [0xD0, 0]);

    s.write_all(&[0xE0, 0]).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert_eq!(n, 0, "peer did not close");
    peer.wait_done(WAIT).unwrap();

    let subs = peer.received_of(peer::SUBSCRIBE);
    assert_eq!(
        subs[0].subscribe_filters().unwrap(),
        vec![("/a/b/set".to_string(), 1), ("/c/d/set".to_string(), 1)]
    );
    let pubs = peer.received_of(peer::PUBLISH);
    assert_eq!(pubs[0].publish_topic().as_deref(), Some("/a/b/upload"));
    assert_eq!(pubs[0].publish_payload().as_deref(), Some(&b"hi"[..]));
    assert_eq!((pubs[0].qos(), pubs[0].packet_id()), (1, Some(7)));
}

#[test]
fn silent_peer_never_answers_and_drops_quickly() {
    let peer = FakePeer::start(vec![Step::ConnAckNext(0), Step::Silent]);
    let mut s = connect_to(&peer);
    s.write_all(&connect_bytes(&test_device(), 60)).unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    peer.wait_done(WAIT).unwrap();

    s.write_all(&[0xC0, 0]).unwrap(); // PINGREQ
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = s.read(&mut buf).expect_err("a silent peer answered");
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    // The PINGREQ was recorded, with its arrival time.
    let frames = peer.wait_for_frames(2, WAIT);
    assert_eq!(frames[1].packet_type, peer::PINGREQ);

    let started = Instant::now();
    drop(peer);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        started.elapsed()
    );
    // The connection ends with the peer.
    s.set_read_timeout(Some(WAIT)).unwrap();
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
}

#[test]
fn peer_reports_the_failing_step_instead_of_hanging() {
    // Nobody connects.
    let peer = FakePeer::start_with_timeout(
        vec![vec![Step::Expect(peer::CONNECT)]],
        Duration::from_millis(200),
    );
    let err = peer.wait_done(WAIT).unwrap_err();
    assert!(err.reason.contains("no client connected"), "{err}");

    // Connects but sends nothing.
    let peer = FakePeer::start_with_timeout(
        vec![vec![Step::Expect(peer::CONNECT)]],
        Duration::from_millis(200),
    );
    let _s = connect_to(&peer);
    let err = peer.wait_done(WAIT).unwrap_err();
    assert_eq!((err.session, err.step), (0, 0));
    assert!(err.reason.contains("nothing arrived"), "{err}");

    // Sends the wrong packet.
    let peer = FakePeer::start(vec![Step::Expect(peer::CONNECT)]);
    let mut s = connect_to(&peer);
    s.write_all(&[0xC0, 0]).unwrap();
    let err = peer.wait_done(WAIT).unwrap_err();
    assert!(
        err.to_string().contains("expected CONNECT, got PINGREQ"),
        "{err}"
    );

    // Malformed remaining length.
    let peer = FakePeer::start(vec![Step::Expect(peer::CONNECT)]);
    let mut s = connect_to(&peer);
    s.write_all(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).unwrap();
    let err = peer.wait_done(WAIT).unwrap_err();
    assert!(err.reason.contains("malformed remaining length"), "{err}");

    // A script still waiting is reported as such by wait_done.
    let peer = FakePeer::start(vec![Step::Expect(peer::CONNECT)]);
    let _s = connect_to(&peer);
    let err = peer.wait_done(Duration::from_millis(100)).unwrap_err();
    assert!(err.reason.contains("still running"), "{err}");
}

#[test]
fn peer_runs_one_script_per_connection_and_sees_closes() {
    let peer = FakePeer::start_sessions(vec![
        vec![
            Step::ConnAckNext(0),
            Step::Sleep(Duration::from_millis(50)),
            Step::Close,
        ],
        vec![Step::ConnAckNext(5), Step::ExpectClosed(WAIT)],
    ]);
    let mut first = connect_to(&peer);
    first.write_all(&connect_bytes(&test_device(), 60)).unwrap();
    let mut buf = [0u8; 8];
    first.read_exact(&mut buf[..4]).unwrap();
    assert_eq!(
        first.read(&mut buf).unwrap(),
        0,
        "peer did not close the first connection"
    );

    let mut second = connect_to(&peer);
    second
        .write_all(&connect_bytes(&test_device(), 60))
        .unwrap();
    second.read_exact(&mut buf[..4]).unwrap();
    assert_eq!(buf[..4], [0x20, 2, 0, 5]);
    drop(second);
    peer.wait_done(WAIT).unwrap();
    assert_eq!(peer.connections(), 2);
    assert!(peer.closed_at(1).is_some());
    assert_eq!(peer.received().iter().filter(|f| f.conn == 1).count(), 1);
}

#[test]
fn frame_splitter_handles_lengths_and_rejects_garbage() {
    use support::peer::{remaining_length, split_frame};
    assert_eq!(remaining_length(0), [0]);
    assert_eq!(remaining_length(127), [0x7F]);
    assert_eq!(remaining_length(128), [0x80, 0x01]);
    assert_eq!(remaining_length(268_435_455), [0xFF, 0xFF, 0xFF, 0x7F]);
    let big = peer::frame(0x30, &[0u8; 200]);
    assert_eq!(split_frame(&big), Ok(Some((0x30, 3, 203))));
    assert_eq!(split_frame(&big[..100]), Ok(None));
    assert_eq!(split_frame(&[0x30]), Ok(None));
    assert_eq!(split_frame(&[]), Ok(None));
    assert!(split_frame(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x00]).is_err());
}
