//! The blocking client against a real Mosquitto with the UIoT Core profile,
//! and against a scripted fake peer for what Mosquitto will not do.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)] // a test: a failed unwrap or assertion is the failure report

mod support;

use std::time::{Duration, Instant};

use support::peer::{self, Step};
use support::{Broker, Device, FakePeer};
use uiot::packet::ConnectReturnCode;
use uiot::{Client, Error, Event, Identity, Limits, Options, QoS};

fn options(broker: &Broker, dev: &Device) -> Options {
    let id = Identity::new(&dev.product_sn, &dev.device_sn);
    let mut o = Options::device("127.0.0.1", broker.port(), id, &dev.secret);
    o.connect_timeout = Duration::from_secs(5);
    o.ack_timeout = Duration::from_secs(5);
    o
}

fn peer_options(peer: &FakePeer) -> Options {
    let id = Identity::new("prodprodprod0001", "devicedevice0001");
    let mut o = Options::device("127.0.0.1", peer.port(), id, "secretsecret0001");
    o.connect_timeout = Duration::from_secs(3);
    o.ack_timeout = Duration::from_secs(3);
    o
}

fn wait_disconnected(client: &Client, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(Event::Disconnected(why)) =
            client.events().recv_timeout(Duration::from_millis(50))
        {
            return Some(why);
        }
    }
    None
}

#[test]
fn login_uses_the_uiot_fields_and_round_trips_at_qos_0_and_1() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let cloud = broker.observer("#");
    let client = Client::connect(options(&broker, &dev)).unwrap();
    assert!(broker.wait_for_log(&dev.client_id(), Duration::from_secs(5)));
    let log = broker.log();
    assert!(
        log.contains(&format!("u'{}'", dev.username())),
        "the broker saw no login as {}:\n{log}",
        dev.username()
    );
    assert!(log.contains("k300"), "keep-alive 300 expected in: {log}");

    // Uplink, both QoS.
    client
        .publish(&client.topic("upload"), b"q0", QoS::AtMostOnce)
        .unwrap();
    client
        .publish(&client.topic("upload"), b"q1", QoS::AtLeastOnce)
        .unwrap();
    let got = cloud.wait_for(2, Duration::from_secs(5));
    let payloads: Vec<String> = got.iter().map(|m| m.payload_str()).collect();
    assert_eq!(payloads, ["q0", "q1"]);
    assert_eq!(got[0].topic, dev.topic("upload"));
    assert_eq!(got[1].qos, 1);

    // Downlink, both QoS.
    let granted = client
        .subscribe(&[(client.topic("set"), QoS::AtLeastOnce)])
        .unwrap();
    assert_eq!(granted, [QoS::AtLeastOnce]);
    broker.cloud_publish(&dev.topic("set"), "d0", 0);
    broker.cloud_publish(&dev.topic("set"), "d1", 1);
    let m0 = client
        .messages()
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    let m1 = client
        .messages()
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        (m0.payload.as_slice(), m0.qos),
        (&b"d0"[..], QoS::AtMostOnce)
    );
    assert_eq!(
        (m1.payload.as_slice(), m1.qos),
        (&b"d1"[..], QoS::AtLeastOnce)
    );
    assert_eq!(m1.topic, dev.topic("set"));
    client.unsubscribe(&[client.topic("set")]).unwrap();
    client.disconnect().unwrap();
    assert!(broker.wait_for_log(
        &format!("Received DISCONNECT from {}", dev.client_id()),
        Duration::from_secs(5)
    ));
}

#[test]
fn pipelined_qos1_arrives_complete_and_in_order() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let cloud = broker.observer(&dev.topic("#"));
    let mut o = options(&broker, &dev);
    o.limits = Limits {
        publish_rate: 0,
        bandwidth_kb: 0,
        ..Limits::default()
    };
    let client = Client::connect(o).unwrap();
    let n = 2000;
    for i in 0..n {
        client
            .start_publish(
                &client.topic("seq"),
                i.to_string().into_bytes(),
                QoS::AtLeastOnce,
            )
            .unwrap();
    }
    client.flush(Duration::from_secs(20)).unwrap();
    let got = cloud.wait_for(n, Duration::from_secs(20));
    let seq: Vec<usize> = got
        .iter()
        .map(|m| m.payload_str().parse().unwrap())
        .collect();
    assert_eq!(seq, (0..n).collect::<Vec<_>>());
    client.disconnect().unwrap();
}

#[test]
fn the_topic_guard_stops_foreign_topics_before_the_wire() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let other = broker.device(1);
    let client = Client::connect(options(&broker, &dev)).unwrap();
    let foreign = other.topic("upload");
    match client.publish(&foreign, b"x", QoS::AtLeastOnce) {
        Err(Error::TopicDenied { topic, reason }) => {
            assert_eq!(topic, foreign);
            assert!(reason.contains("another product or device"), "{reason}");
        }
        other => panic!("expected TopicDenied, got {other:?}"),
    }
    assert!(matches!(
        client.subscribe(&[(other.topic("set"), QoS::AtMostOnce)]),
        Err(Error::TopicDenied { .. })
    ));
    assert!(matches!(
        client.subscribe(&[("#", QoS::AtMostOnce)]),
        Err(Error::TopicDenied { .. })
    ));
    assert!(matches!(
        client.publish(&client.topic("a/+"), b"x", QoS::AtMostOnce),
        Err(Error::InvalidTopic { .. })
    ));
    let long = client.topic(&"x".repeat(120));
    assert!(matches!(
        client.publish(&long, b"x", QoS::AtMostOnce),
        Err(Error::Limit(_))
    ));
    let big = vec![0u8; 300 * 1024];
    assert!(matches!(
        client.publish(&client.topic("upload"), &big, QoS::AtMostOnce),
        Err(Error::Limit(m)) if m.contains("256 KiB")
    ));
    // Something allowed, so we know the log is current, then check nothing
    // foreign ever reached the broker.
    client
        .publish(&client.topic("upload"), b"ok", QoS::AtLeastOnce)
        .unwrap();
    let log = broker.log();
    assert!(log.contains(&dev.topic("upload")));
    assert!(
        !log.contains(&foreign),
        "a denied topic reached the broker:\n{log}"
    );
    assert!(
        !log.contains("SUBSCRIBE from"),
        "a denied subscription reached the broker"
    );
    client.disconnect().unwrap();
}

#[test]
fn too_many_subscriptions_are_refused_locally() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let client = Client::connect(options(&broker, &dev)).unwrap();
    let filters: Vec<(String, QoS)> = (0..100)
        .map(|i| (client.topic(&format!("s/{i}")), QoS::AtMostOnce))
        .collect();
    client.subscribe(&filters).unwrap();
    match client.subscribe(&[(client.topic("one/more"), QoS::AtMostOnce)]) {
        Err(Error::Limit(m)) => assert!(m.contains("101 subscriptions"), "{m}"),
        other => panic!("expected Limit, got {other:?}"),
    }
    // Re-subscribing an existing filter does not count twice.
    client
        .subscribe(&[(client.topic("s/5"), QoS::AtLeastOnce)])
        .unwrap();
    client.disconnect().unwrap();
}

#[test]
fn a_wrong_secret_is_refused_with_advice() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut dev = broker.device(0);
    dev.secret = "wrongwrongwrong1".into();
    match Client::connect(options(&broker, &dev)) {
        Err(Error::Refused(code)) => {
            assert!(matches!(
                code,
                ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNameOrPassword
            ));
            let text = Error::Refused(code).to_string();
            assert!(
                text.contains("console") || text.contains("secret"),
                "{text}"
            );
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn an_absent_broker_is_unreachable_quickly() {
    let port = support::broker::free_port();
    let id = Identity::new("prodprodprod0001", "devicedevice0001");
    let mut o = Options::device("127.0.0.1", port, id, "secretsecret0001");
    o.connect_timeout = Duration::from_secs(2);
    let t = Instant::now();
    assert!(matches!(Client::connect(o), Err(Error::Unreachable(_))));
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn every_connack_refusal_is_typed() {
    use ConnectReturnCode::*;
    for (code, want) in [
        (1, UnacceptableProtocolVersion),
        (2, IdentifierRejected),
        (3, ServerUnavailable),
        (4, BadUserNameOrPassword),
        (5, NotAuthorized),
    ] {
        let peer = FakePeer::start(vec![
            Step::ConnAckNext(code),
            Step::ExpectClosed(Duration::from_secs(3)),
        ]);
        match Client::connect(peer_options(&peer)) {
            Err(Error::Refused(got)) => assert_eq!(got, want),
            other => panic!("code {code}: {other:?}"),
        }
        peer.wait_done(Duration::from_secs(3)).unwrap();
    }
}

#[test]
fn a_refused_subscription_is_reported() {
    let peer = FakePeer::start(vec![
        Step::ConnAckNext(0),
        Step::SubAckNext(vec![0x01, 0x80]),
        Step::Silent,
    ]);
    let client = Client::connect(peer_options(&peer)).unwrap();
    let r = client.subscribe(&[
        (client.topic("a"), QoS::AtLeastOnce),
        (client.topic("b"), QoS::AtLeastOnce),
    ]);
    match r {
        Err(Error::SubscribeRefused(f)) => assert_eq!(f, client.topic("b")),
        other => panic!("expected SubscribeRefused, got {other:?}"),
    }
}

#[test]
fn a_silent_peer_is_declared_dead_in_time() {
    let peer = FakePeer::start(vec![Step::ConnAckNext(0), Step::Silent]);
    let mut o = peer_options(&peer).unchecked_keep_alive(Duration::from_millis(600));
    o.reconnect.enabled = false;
    // Ping after ~0.5 s of silence, PINGRESP due 0.3 s later.
    let t = Instant::now();
    let client = Client::connect(o).unwrap();
    let why = wait_disconnected(&client, Duration::from_secs(5)).expect("not declared dead");
    assert!(why.contains("PINGRESP"), "{why}");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(!client.is_connected());
    assert!(matches!(
        client.publish(&client.topic("x"), b"x", QoS::AtMostOnce),
        Err(Error::Disconnected(_))
    ));
    assert_eq!(peer.received_of(peer::PINGREQ).len(), 1);
}

#[test]
fn pings_go_out_only_when_the_link_is_quiet_one_way_or_both() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let o = options(&broker, &dev).unchecked_keep_alive(Duration::from_secs(1));
    let client = Client::connect(o).unwrap();
    let pings = |b: &Broker| b.log_count(&format!("Received PINGREQ from {}", dev.client_id()));
    // Busy both ways: a QoS 1 message every 300 ms for 3 s (its PUBACK
    // comes back), no ping needed.
    for _ in 0..10 {
        client
            .publish(&client.topic("busy"), b"x", QoS::AtLeastOnce)
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(pings(&broker), 0, "pinged although busy");
    // Sending only (QoS 0, nothing comes back): the link is not known to be
    // alive, so a ping per interval still goes out (a hung broker or a
    // middlebox that swallows would otherwise never be noticed).
    for _ in 0..10 {
        client
            .publish(&client.topic("busy"), b"x", QoS::AtMostOnce)
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let sending = pings(&broker);
    assert!(
        (2..=4).contains(&sending),
        "{sending} pings in 3 s of QoS 0 only at keep-alive 1 s"
    );
    // Idle for 3 s: about one ping per 0.9 s.
    std::thread::sleep(Duration::from_secs(3));
    let n = pings(&broker) - sending;
    assert!(
        (2..=4).contains(&n),
        "{n} pings in 3 s idle at keep-alive 1 s"
    );
    assert!(client.is_connected());
    client.disconnect().unwrap();
}

#[test]
fn malformed_packets_close_the_connection_with_a_reason() {
    for (bad, what) in [
        (
            vec![0x30, 0x02, 0x00, 0x05],
            "PUBLISH whose topic runs past its end",
        ),
        (
            vec![0x40, 0x03, 0x00, 0x01, 0x00],
            "PUBACK with a byte left over",
        ),
        (vec![0x00, 0x00], "reserved packet type 0"),
        (
            vec![0xd0, 0xff, 0xff, 0xff, 0xff, 0x7f],
            "remaining length over 4 bytes",
        ),
        (peer::publish("/a/b", b"x", 2, 7), "QoS 2 PUBLISH"),
        (vec![0x50, 0x02, 0x00, 0x01], "PUBREC"),
        (vec![0x62, 0x02, 0x00, 0x01], "PUBREL"),
    ] {
        let peer = FakePeer::start(vec![Step::ConnAckNext(0), Step::Send(bad), Step::Silent]);
        let client = Client::connect(peer_options(&peer)).unwrap();
        let why = wait_disconnected(&client, Duration::from_secs(3))
            .unwrap_or_else(|| panic!("{what}: connection not closed"));
        assert!(why.contains("protocol error"), "{what}: {why}");
        assert!(
            peer.wait_closed(0, Duration::from_secs(3)),
            "{what}: socket left open"
        );
    }
}

#[test]
fn redeliveries_are_not_handed_over_twice() {
    let mut dup = peer::publish("/prodprodprod0001/devicedevice0001/set", b"once", 1, 5);
    dup[0] |= 0x08; // DUP
    let peer = FakePeer::start(vec![
        Step::ConnAckNext(0),
        Step::Send(peer::publish(
            "/prodprodprod0001/devicedevice0001/set",
            b"once",
            1,
            5,
        )),
        Step::Expect(peer::PUBACK),
        Step::Send(dup),
        Step::Expect(peer::PUBACK),
        Step::Send(peer::publish(
            "/prodprodprod0001/devicedevice0001/set",
            b"next",
            1,
            5,
        )),
        Step::Expect(peer::PUBACK),
        Step::Silent,
    ]);
    let client = Client::connect(peer_options(&peer)).unwrap();
    let m = client.messages();
    assert_eq!(
        m.recv_timeout(Duration::from_secs(3)).unwrap().payload,
        b"once"
    );
    assert_eq!(
        m.recv_timeout(Duration::from_secs(3)).unwrap().payload,
        b"next"
    );
    peer.wait_done(Duration::from_secs(3)).unwrap();
    assert!(m.try_recv().is_none());
}

#[test]
fn a_slow_application_loses_nothing() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let mut o = options(&broker, &dev);
    o.message_capacity = 4;
    let client = Client::connect(o).unwrap();
    client
        .subscribe(&[(client.topic("set"), QoS::AtLeastOnce)])
        .unwrap();
    let n = 40;
    for i in 0..n {
        broker.cloud_publish(&dev.topic("set"), i.to_string(), 1);
    }
    let mut got = Vec::new();
    while let Ok(m) = client.messages().recv_timeout(Duration::from_secs(5)) {
        got.push(
            String::from_utf8(m.payload)
                .unwrap()
                .parse::<usize>()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(20));
        if got.len() == n {
            break;
        }
    }
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    client.disconnect().unwrap();
}

#[test]
fn the_rate_limiter_holds_30_per_second() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let cloud = broker.observer(&dev.topic("rate"));
    let client = Client::connect(options(&broker, &dev)).unwrap();
    let n = 75;
    let t = Instant::now();
    for i in 0..n {
        client
            .publish(
                &client.topic("rate"),
                i.to_string().as_bytes(),
                QoS::AtMostOnce,
            )
            .unwrap();
    }
    let got = cloud.wait_for(n, Duration::from_secs(10));
    assert_eq!(got.len(), n);
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
    // Broker-side arrival times: no one-second window holds more than 30,
    // with slack for the observer's own timing.
    let times: Vec<f64> = got.iter().map(|m| m.unix_time).collect();
    for (i, &start) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|&&t| t < start + 0.95).count();
        assert!(in_window <= 32, "{in_window} messages within one second");
    }
    client.disconnect().unwrap();
}

#[test]
fn redeliveries_are_dropped_across_a_reconnect_that_keeps_the_session() {
    let topic = "/prodprodprod0001/devicedevice0001/set";
    let mut dup = peer::publish(topic, b"once", 1, 5);
    dup[0] |= 0x08;
    let peer = FakePeer::start_sessions(vec![
        vec![
            Step::ConnAckNext(0),
            Step::Send(peer::publish(topic, b"once", 1, 5)),
            Step::Expect(peer::PUBACK),
            Step::Close,
        ],
        vec![
            Step::Expect(peer::CONNECT),
            Step::Send(peer::connack(0, true)),
            Step::Send(dup),
            Step::Expect(peer::PUBACK),
            Step::Send(peer::publish(topic, b"new", 1, 6)),
            Step::Expect(peer::PUBACK),
            Step::Silent,
        ],
    ]);
    let mut o = peer_options(&peer);
    o.clean_session = false;
    o.reconnect.min = Duration::from_millis(50);
    o.reconnect.max = Duration::from_millis(100);
    let client = Client::connect(o).unwrap();
    let m = client.messages();
    assert_eq!(
        m.recv_timeout(Duration::from_secs(3)).unwrap().payload,
        b"once"
    );
    assert_eq!(
        m.recv_timeout(Duration::from_secs(3)).unwrap().payload,
        b"new"
    );
    peer.wait_done(Duration::from_secs(3)).unwrap();
    assert!(m.try_recv().is_none(), "a redelivery was handed over twice");
}

#[test]
fn more_than_a_write_batch_of_qos0_flows_without_waiting_for_a_timer() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let mut o = options(&broker, &dev);
    o.limits = Limits {
        publish_rate: 0,
        bandwidth_kb: 0,
        ..Limits::default()
    };
    let client = Client::connect(o).unwrap();
    // 100,000 x 64 bytes is far beyond the I/O thread's 64 KiB write batch.
    let t = Instant::now();
    for _ in 0..100_000 {
        client
            .start_publish(&client.topic("bulk"), vec![b'x'; 64], QoS::AtMostOnce)
            .unwrap();
    }
    client.flush(Duration::from_secs(20)).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    client.disconnect().unwrap();
}
