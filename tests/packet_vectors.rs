//! Byte-exact vectors (MQTT 3.1.1 spec examples, the UIoT CONNECT), round
//! trips of all 14 packets, every malformation rule, and partial buffers,
//! all through the public API of `uiot::packet`. Every protocol violation a
//! broker can commit after CONNACK has its own `PacketError` variant (the
//! client maps them to exit 76 by type).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use uiot::packet::{
    decode, encode_publish, not_mqtt, ConnAck, Connect, ConnectReturnCode, Decoded, LastWill,
    Packet, PacketError, Protocol, Publish, QoS, SubAck, SubAckCode, Subscribe, Unsubscribe,
    MAX_REMAINING_LENGTH,
};
use uiot::platform::MAX_PACKET;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn encode(p: &Packet) -> Vec<u8> {
    let mut out = Vec::new();
    p.encode(&mut out).unwrap();
    out
}

fn decode_one(buf: &[u8]) -> Result<(Packet, usize), PacketError> {
    match decode(buf, MAX_PACKET)? {
        Decoded::Packet { packet, len } => Ok((packet, len)),
        Decoded::Incomplete { needed } => panic!("incomplete, needs {needed} more"),
    }
}

fn uiot_connect() -> Connect {
    Connect {
        protocol: Protocol::V311,
        keep_alive: 300,
        clean_session: true,
        client_id: "70ly1tvowt696r15.aruidyl0rt9tuvod".into(),
        will: None,
        username: Some("70ly1tvowt696r15|aruidyl0rt9tuvod|1".into()),
        password: Some(b"hly3dk1u5y8fq0b9".to_vec()),
    }
}

/// One of each of the 14 packets (and a few variants).
fn all_packets() -> Vec<Packet> {
    vec![
        Packet::Connect(uiot_connect()),
        Packet::Connect(Connect {
            protocol: Protocol::V31,
            keep_alive: 60,
            clean_session: false,
            client_id: "old-client".into(),
            will: Some(LastWill {
                topic: "status/old-client".into(),
                message: b"gone".to_vec(),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some("user".into()),
            password: None,
        }),
        Packet::Connect(Connect {
            protocol: Protocol::V311,
            keep_alive: 0,
            clean_session: true,
            client_id: String::new(),
            will: Some(LastWill {
                topic: "w".into(),
                message: vec![0, 255],
                qos: QoS::AtLeastOnce,
                retain: false,
            }),
            username: None,
            password: None,
        }),
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Accepted,
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::BadUserNameOrPassword,
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "/70ly1tvowt696r15/aruidyl0rt9tuvod/upload/event".into(),
            pkid: None,
            payload: br#"{"temp":21.5}"#.to_vec(),
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "$system/x/y".into(),
            pkid: Some(65_535),
            payload: vec![0; 300],
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "ü/€".into(),
            pkid: Some(1),
            payload: vec![],
        }),
        Packet::PubAck(1),
        Packet::PubRec(2),
        Packet::PubRel(3),
        Packet::PubComp(65_535),
        Packet::Subscribe(Subscribe {
            pkid: 7,
            filters: vec![
                ("a/+/c".into(), QoS::AtMostOnce),
                ("#".into(), QoS::AtLeastOnce),
                ("$system/+".into(), QoS::AtLeastOnce),
            ],
        }),
        Packet::SubAck(SubAck {
            pkid: 7,
            codes: vec![
                SubAckCode::Success(QoS::AtMostOnce),
                SubAckCode::Failure,
                SubAckCode::Success(QoS::AtLeastOnce),
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 8,
            filters: vec!["a/+/c".into(), "#".into()],
        }),
        Packet::UnsubAck(8),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect,
    ]
}

#[test]
fn uiot_connect_vector_is_byte_exact() {
    let expected = hex("10 64 00 04 4d 51 54 54 04 c2 01 2c 00 21 37 30
         6c 79 31 74 76 6f 77 74 36 39 36 72 31 35 2e 61
         72 75 69 64 79 6c 30 72 74 39 74 75 76 6f 64 00
         23 37 30 6c 79 31 74 76 6f 77 74 36 39 36 72 31
         35 7c 61 72 75 69 64 79 6c 30 72 74 39 74 75 76
         6f 64 7c 31 00 10 68 6c 79 33 64 6b 31 75 35 79
         38 66 71 30 62 39");
    assert_eq!(expected.len(), 102);
    let packet = Packet::Connect(uiot_connect());
    assert_eq!(encode(&packet), expected);
    assert_eq!(packet.encoded_len(), Ok(102));
    assert_eq!(decode_one(&expected), Ok((packet, 102)));
}

#[test]
fn spec_connect_variable_header_example() {
    // MQTT 3.1.1 section 3.1.2.10: name "MQTT", level 4, flags 0xCE (user
    // name, password, will QoS 1, will flag, clean session), keep alive 10.
    let packet = Packet::Connect(Connect {
        protocol: Protocol::V311,
        keep_alive: 10,
        clean_session: true,
        client_id: "c".into(),
        will: Some(LastWill {
            topic: "w".into(),
            message: b"m".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: false,
        }),
        username: Some("u".into()),
        password: Some(b"p".to_vec()),
    });
    let bytes = encode(&packet);
    assert_eq!(bytes[2..12], hex("00 04 4d 51 54 54 04 ce 00 0a"));
}

#[test]
fn spec_publish_example() {
    // MQTT 3.1.1 section 3.3.2.3: topic "a/b", packet identifier 10.
    let mut out = Vec::new();
    encode_publish(
        &mut out,
        "a/b",
        b"",
        QoS::AtLeastOnce,
        false,
        false,
        Some(10),
    )
    .unwrap();
    assert_eq!(out, hex("32 07 00 03 61 2f 62 00 0a"));
}

#[test]
fn spec_subscribe_suback_unsubscribe_examples() {
    // Sections 3.8.3, 3.9.3, 3.10.3.
    let sub = Packet::Subscribe(Subscribe {
        pkid: 10,
        filters: vec![
            ("a/b".into(), QoS::AtLeastOnce),
            ("c/d".into(), QoS::AtLeastOnce),
        ],
    });
    assert_eq!(
        encode(&sub),
        hex("82 0e 00 0a 00 03 61 2f 62 01 00 03 63 2f 64 01")
    );
    // The spec's own example asks for QoS 2 on "c/d": UIoT Core has none.
    assert_eq!(
        decode_one(&hex("82 0e 00 0a 00 03 61 2f 62 01 00 03 63 2f 64 02")),
        Err(PacketError::UnsupportedQoS2 {
            packet: "SUBSCRIBE",
            field: "requested QoS"
        })
    );
    let suback = Packet::SubAck(SubAck {
        pkid: 10,
        codes: vec![
            SubAckCode::Success(QoS::AtMostOnce),
            SubAckCode::Success(QoS::AtLeastOnce),
            SubAckCode::Failure,
        ],
    });
    assert_eq!(encode(&suback), hex("90 05 00 0a 00 01 80"));
    // The spec's example grants QoS 2: refused as such.
    assert_eq!(
        decode_one(&hex("90 06 00 0a 00 01 02 80")),
        Err(PacketError::UnsupportedQoS2 {
            packet: "SUBACK",
            field: "granted QoS"
        })
    );
    let unsub = Packet::Unsubscribe(Unsubscribe {
        pkid: 10,
        filters: vec!["a/b".into(), "c/d".into()],
    });
    assert_eq!(
        encode(&unsub),
        hex("a2 0c 00 0a 00 03 61 2f 62 00 03 63 2f 64")
    );
}

#[test]
fn spec_fixed_packets() {
    let cases = [
        (Packet::PingReq, "c0 00"),
        (Packet::PingResp, "d0 00"),
        (Packet::Disconnect, "e0 00"),
        (Packet::PubAck(10), "40 02 00 0a"),
        (Packet::PubRec(10), "50 02 00 0a"),
        (Packet::PubRel(10), "62 02 00 0a"),
        (Packet::PubComp(10), "70 02 00 0a"),
        (Packet::UnsubAck(10), "b0 02 00 0a"),
        (
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::Accepted,
            }),
            "20 02 00 00",
        ),
    ];
    for (packet, bytes) in cases {
        let bytes = hex(bytes);
        assert_eq!(encode(&packet), bytes, "{packet:?}");
        assert_eq!(decode_one(&bytes), Ok((packet, bytes.len())));
    }
}

/// A QoS 0 PUBLISH to "t" whose remaining length is `rl`.
fn publish_with_remaining_length(rl: usize) -> Vec<u8> {
    let payload = vec![0x5A; rl - 3];
    let mut out = Vec::new();
    encode_publish(&mut out, "t", &payload, QoS::AtMostOnce, false, false, None).unwrap();
    out
}

#[test]
fn spec_remaining_length_encodings() {
    // Section 2.2.3, table 2.4 (boundaries of 1..4 bytes). Checked by
    // encoding a PUBLISH of that remaining length and by decoding.
    let cases: [(usize, &str); 7] = [
        (127, "7f"),
        (128, "80 01"),
        (16_383, "ff 7f"),
        (16_384, "80 80 01"),
        (2_097_151, "ff ff 7f"),
        (2_097_152, "80 80 80 01"),
        (MAX_REMAINING_LENGTH, "ff ff ff 7f"),
    ];
    for (rl, bytes) in cases {
        let len_bytes = hex(bytes);
        let packet = publish_with_remaining_length(rl);
        assert_eq!(packet[1..1 + len_bytes.len()], len_bytes, "rl {rl}");
        assert_eq!(packet.len(), 1 + len_bytes.len() + rl);
        let mut header = vec![0x30];
        header.extend_from_slice(&len_bytes);
        assert_eq!(
            decode(&header, usize::MAX),
            Ok(Decoded::Incomplete { needed: rl }),
            "rl {rl}"
        );
        if rl <= 2_097_152 {
            match decode(&packet, usize::MAX) {
                Ok(Decoded::Packet { len, .. }) => assert_eq!(len, packet.len()),
                other => panic!("rl {rl}: {other:?}"),
            }
        }
    }
    // 0 is a single zero byte.
    assert_eq!(encode(&Packet::PingReq), hex("c0 00"));
    // One more than the maximum cannot be encoded, and `out` is untouched.
    let payload = vec![0; MAX_REMAINING_LENGTH - 2];
    let mut out = vec![1, 2, 3];
    assert_eq!(
        encode_publish(&mut out, "t", &payload, QoS::AtMostOnce, false, false, None),
        Err(PacketError::RemainingLengthOverflow {
            packet: "PUBLISH",
            len: MAX_REMAINING_LENGTH + 1
        })
    );
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn every_packet_round_trips() {
    for packet in all_packets() {
        let bytes = encode(&packet);
        assert_eq!(packet.encoded_len(), Ok(bytes.len()), "{}", packet.name());
        assert_eq!(
            decode_one(&bytes),
            Ok((packet.clone(), bytes.len())),
            "{}",
            packet.summary()
        );
    }
    let names: std::collections::BTreeSet<&str> = all_packets().iter().map(|p| p.name()).collect();
    assert_eq!(names.len(), 14, "all 14 packet types covered: {names:?}");
}

#[test]
fn every_prefix_is_incomplete_and_consumes_nothing() {
    for packet in all_packets() {
        let bytes = encode(&packet);
        for cut in 0..bytes.len() {
            match decode(&bytes[..cut], MAX_PACKET) {
                Ok(Decoded::Incomplete { needed }) => {
                    assert!(
                        needed >= 1 && cut + needed <= bytes.len(),
                        "{} prefix {cut}: needed {needed} of {}",
                        packet.name(),
                        bytes.len()
                    );
                }
                other => panic!("{} prefix {cut}: {other:?}", packet.name()),
            }
        }
    }
}

#[test]
fn packets_back_to_back_decode_one_after_the_other() {
    let packets = all_packets();
    let mut stream = Vec::new();
    for p in &packets {
        p.encode(&mut stream).unwrap();
    }
    let mut rest = &stream[..];
    let mut decoded = Vec::new();
    while !rest.is_empty() {
        let (p, len) = decode_one(rest).unwrap();
        decoded.push(p);
        rest = &rest[len..];
    }
    assert_eq!(decoded, packets);
}

#[test]
fn too_large_is_an_error_before_the_body_arrives() {
    // PUBLISH declaring 16384 bytes, limit 1000: refused from 4 bytes.
    assert_eq!(
        decode(&hex("30 80 80 01"), 1000),
        Err(PacketError::TooLarge {
            packet: "PUBLISH",
            size: 16_388,
            max: 1000
        })
    );
    // The platform's own limit: 256 KiB + 1 declared.
    assert_eq!(
        decode(&hex("30 81 80 10"), MAX_PACKET),
        Err(PacketError::TooLarge {
            packet: "PUBLISH",
            size: 262_145 + 4,
            max: MAX_PACKET
        })
    );
    // Within the limit the same header just waits for the body.
    assert_eq!(
        decode(&hex("30 80 80 01"), 20_000),
        Ok(Decoded::Incomplete { needed: 16_384 })
    );
}

/// Every strict rule, each with the bytes that break it and its error.
#[test]
fn every_malformation_has_its_own_error() {
    use PacketError as E;
    let cases: Vec<(&str, &str, PacketError)> = vec![
        (
            "length over 4 bytes",
            "30 ff ff ff ff 01",
            E::RemainingLengthTooLong,
        ),
        ("reserved type 0", "00 00", E::ReservedPacketType(0)),
        ("reserved type 15", "f0 00", E::ReservedPacketType(15)),
        (
            "PUBACK flags",
            "41 02 00 01",
            E::BadFlags {
                packet: "PUBACK",
                flags: 1,
                expected: 0,
            },
        ),
        (
            "PUBREL flags",
            "60 02 00 01",
            E::BadFlags {
                packet: "PUBREL",
                flags: 0,
                expected: 2,
            },
        ),
        (
            "SUBSCRIBE flags",
            "8a 06 00 01 00 01 61 00",
            E::BadFlags {
                packet: "SUBSCRIBE",
                flags: 0xa,
                expected: 2,
            },
        ),
        (
            "UNSUBSCRIBE flags",
            "a0 05 00 01 00 01 61",
            E::BadFlags {
                packet: "UNSUBSCRIBE",
                flags: 0,
                expected: 2,
            },
        ),
        (
            "CONNECT flags",
            "12 00",
            E::BadFlags {
                packet: "CONNECT",
                flags: 2,
                expected: 0,
            },
        ),
        (
            "PUBLISH QoS 3",
            "36 05 00 01 61 00 01",
            E::ReservedQoS3 {
                packet: "PUBLISH",
                field: "QoS",
            },
        ),
        (
            "PUBLISH QoS 2",
            "34 05 00 01 61 00 01",
            E::UnsupportedQoS2 {
                packet: "PUBLISH",
                field: "QoS",
            },
        ),
        (
            "reserved type 15 with flags",
            "f5 00",
            E::ReservedPacketType(15),
        ),
        (
            "reserved type 0 with flags",
            "0f 00",
            E::ReservedPacketType(0),
        ),
        ("DUP on QoS 0", "38 03 00 01 61", E::DupOnQoS0),
        (
            "PUBLISH id 0",
            "32 05 00 01 61 00 00",
            E::ZeroPacketId { packet: "PUBLISH" },
        ),
        (
            "PUBACK id 0",
            "40 02 00 00",
            E::ZeroPacketId { packet: "PUBACK" },
        ),
        (
            "SUBACK id 0",
            "90 03 00 00 00",
            E::ZeroPacketId { packet: "SUBACK" },
        ),
        (
            "UNSUBACK id 0",
            "b0 02 00 00",
            E::ZeroPacketId { packet: "UNSUBACK" },
        ),
        (
            "SUBACK flags",
            "92 03 00 01 00",
            E::BadFlags {
                packet: "SUBACK",
                flags: 2,
                expected: 0,
            },
        ),
        (
            "SUBACK shorter than its packet identifier",
            "90 01 00",
            E::Truncated {
                packet: "SUBACK",
                field: "packet identifier",
                needed: 2,
                available: 1,
            },
        ),
        (
            "SUBACK granting QoS 2",
            "90 04 00 01 01 02",
            E::UnsupportedQoS2 {
                packet: "SUBACK",
                field: "granted QoS",
            },
        ),
        ("SUBACK code 0x81", "90 03 00 01 81", E::BadSubAckCode(0x81)),
        (
            "PUBACK length 0",
            "40 00",
            E::WrongRemainingLength {
                packet: "PUBACK",
                expected: 2,
                actual: 0,
            },
        ),
        (
            "topic with a control character",
            "30 05 00 03 61 0a 62",
            E::ControlCharacter {
                packet: "PUBLISH",
                field: "topic name",
                value: "a\nb".into(),
                character: '\n',
            },
        ),
        (
            "topic with a C1 control character",
            "30 05 00 03 61 c2 85",
            E::ControlCharacter {
                packet: "PUBLISH",
                field: "topic name",
                value: "a\u{85}".into(),
                character: '\u{85}',
            },
        ),
        (
            "filter with DEL",
            "82 07 00 01 00 02 61 7f 00",
            E::ControlCharacter {
                packet: "SUBSCRIBE",
                field: "topic filter",
                value: "a\u{7f}".into(),
                character: '\u{7f}',
            },
        ),
        (
            "topic not UTF-8",
            "30 04 00 02 c3 28",
            E::InvalidUtf8 {
                packet: "PUBLISH",
                field: "topic name",
            },
        ),
        (
            "topic with U+0000",
            "30 04 00 02 61 00",
            E::NullCharacter {
                packet: "PUBLISH",
                field: "topic name",
            },
        ),
        (
            "empty topic",
            "30 02 00 00",
            E::EmptyTopic { packet: "PUBLISH" },
        ),
        (
            "+ in topic",
            "30 05 00 03 61 2f 2b",
            E::WildcardInTopic {
                packet: "PUBLISH",
                topic: "a/+".into(),
            },
        ),
        (
            "# in topic",
            "30 03 00 01 23",
            E::WildcardInTopic {
                packet: "PUBLISH",
                topic: "#".into(),
            },
        ),
        (
            "SUBSCRIBE no filters",
            "82 02 00 01",
            E::NoFilters {
                packet: "SUBSCRIBE",
            },
        ),
        (
            "UNSUBSCRIBE no filters",
            "a2 02 00 01",
            E::NoFilters {
                packet: "UNSUBSCRIBE",
            },
        ),
        (
            "empty filter",
            "82 05 00 01 00 00 00",
            E::EmptyFilter {
                packet: "SUBSCRIBE",
            },
        ),
        (
            "# not last",
            "82 08 00 01 00 03 23 2f 61 00",
            E::MultiLevelWildcardNotLast {
                packet: "SUBSCRIBE",
                filter: "#/a".into(),
            },
        ),
        (
            "# not alone",
            "a2 06 00 01 00 02 61 23",
            E::WildcardNotAlone {
                packet: "UNSUBSCRIBE",
                filter: "a#".into(),
                wildcard: '#',
            },
        ),
        (
            "+ sharing a level",
            "82 09 00 01 00 04 61 2f 2b 62 00",
            E::WildcardNotAlone {
                packet: "SUBSCRIBE",
                filter: "a/+b".into(),
                wildcard: '+',
            },
        ),
        (
            "requested QoS reserved bits",
            "82 06 00 01 00 01 61 04",
            E::RequestedQoSReservedBits {
                filter: "a".into(),
                byte: 4,
            },
        ),
        (
            "requested QoS 3",
            "82 06 00 01 00 01 61 03",
            E::ReservedQoS3 {
                packet: "SUBSCRIBE",
                field: "requested QoS",
            },
        ),
        (
            "requested QoS 2",
            "82 06 00 01 00 01 61 02",
            E::UnsupportedQoS2 {
                packet: "SUBSCRIBE",
                field: "requested QoS",
            },
        ),
        ("CONNACK code 6", "20 02 00 06", E::UnknownConnAckCode(6)),
        (
            "CONNACK reserved bits",
            "20 02 80 00",
            E::ConnAckReservedBits(0x80),
        ),
        (
            "session present with refusal",
            "20 02 01 04",
            E::SessionPresentWithError(4),
        ),
        ("SUBACK code 3", "90 03 00 01 03", E::BadSubAckCode(3)),
        ("SUBACK no codes", "90 02 00 01", E::NoReturnCodes),
        (
            "protocol MQTT level 3",
            "10 0c 00 04 4d 51 54 54 03 02 00 3c 00 00",
            E::UnsupportedProtocol {
                name: "MQTT".into(),
                level: 3,
            },
        ),
        (
            "protocol MQIsdp level 4",
            "10 0e 00 06 4d 51 49 73 64 70 04 02 00 3c 00 00",
            E::UnsupportedProtocol {
                name: "MQIsdp".into(),
                level: 4,
            },
        ),
        (
            "CONNECT reserved flag",
            "10 0c 00 04 4d 51 54 54 04 03 00 3c 00 00",
            E::ConnectReservedFlag,
        ),
        (
            "will QoS without will",
            "10 0c 00 04 4d 51 54 54 04 0a 00 3c 00 00",
            E::WillFlagsWithoutWill { flags: 0x0a },
        ),
        (
            "will retain without will",
            "10 0c 00 04 4d 51 54 54 04 22 00 3c 00 00",
            E::WillFlagsWithoutWill { flags: 0x22 },
        ),
        (
            "will QoS 3",
            "10 11 00 04 4d 51 54 54 04 1e 00 3c 00 00 00 01 77 00 00",
            E::ReservedQoS3 {
                packet: "CONNECT",
                field: "will QoS",
            },
        ),
        (
            "will QoS 2",
            "10 11 00 04 4d 51 54 54 04 16 00 3c 00 00 00 01 77 00 00",
            E::UnsupportedQoS2 {
                packet: "CONNECT",
                field: "will QoS",
            },
        ),
        (
            "password without user name",
            "10 0f 00 04 4d 51 54 54 04 42 00 3c 00 00 00 01 70",
            E::PasswordWithoutUsername,
        ),
        (
            "string past the end",
            "10 0e 00 04 4d 51 54 54 04 02 00 3c 00 09 61 62",
            E::Truncated {
                packet: "CONNECT",
                field: "client identifier",
                needed: 9,
                available: 2,
            },
        ),
        (
            "SUBSCRIBE filter without QoS",
            "82 05 00 01 00 01 61",
            E::Truncated {
                packet: "SUBSCRIBE",
                field: "requested QoS",
                needed: 1,
                available: 0,
            },
        ),
        (
            "bytes after the CONNECT fields",
            "10 0e 00 04 4d 51 54 54 04 02 00 3c 00 00 ff ff",
            E::TrailingBytes {
                packet: "CONNECT",
                after: "client identifier",
                count: 2,
            },
        ),
        (
            "PUBACK length 3",
            "40 03 00 01 00",
            E::WrongRemainingLength {
                packet: "PUBACK",
                expected: 2,
                actual: 3,
            },
        ),
        (
            "PUBCOMP length 1",
            "70 01 01",
            E::WrongRemainingLength {
                packet: "PUBCOMP",
                expected: 2,
                actual: 1,
            },
        ),
        (
            "PINGREQ length 1",
            "c0 01 00",
            E::WrongRemainingLength {
                packet: "PINGREQ",
                expected: 0,
                actual: 1,
            },
        ),
        (
            "CONNACK length 1",
            "20 01 00",
            E::WrongRemainingLength {
                packet: "CONNACK",
                expected: 2,
                actual: 1,
            },
        ),
    ];
    for (what, bytes, expected) in cases {
        let bytes = hex(bytes);
        assert_eq!(decode(&bytes, MAX_PACKET), Err(expected.clone()), "{what}");
        // The message is a readable sentence, not a Debug dump.
        let text = expected.to_string();
        assert!(!text.contains(" { ") && text.len() > 15, "{what}: {text}");
    }
}

#[test]
fn error_messages_name_packet_field_and_value() {
    let e = decode(&hex("40 02 00 00"), 100).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PUBACK: packet identifier 0 is not allowed; use 1..=65535"
    );
    let e = decode(&hex("30 03 00 05 61"), 100).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PUBLISH: the topic name needs 5 bytes but only 1 is left in the packet"
    );
    let e = decode(&hex("30 ff ff 7f"), MAX_PACKET).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PUBLISH: packet of 2097155 bytes is larger than the maximum of 262144 bytes"
    );
    let e = decode(&hex("20 02 00 07"), 100).unwrap_err();
    assert!(e.to_string().contains("unknown return code 7"), "{e}");
}

#[test]
fn encoding_validates_like_decoding_and_leaves_out_untouched() {
    use PacketError as E;
    let long = "x".repeat(65_536);
    let cases: Vec<(Packet, PacketError)> = vec![
        (
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: "a".into(),
                pkid: None,
                payload: vec![],
            }),
            E::MissingPacketId { packet: "PUBLISH" },
        ),
        (
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: "a".into(),
                pkid: Some(4),
                payload: vec![],
            }),
            E::UnexpectedPacketId { packet: "PUBLISH" },
        ),
        (
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: long.clone(),
                pkid: None,
                payload: vec![],
            }),
            E::FieldTooLong {
                packet: "PUBLISH",
                field: "topic name",
                len: 65_536,
            },
        ),
        (
            Packet::Connect(Connect {
                client_id: long,
                ..uiot_connect()
            }),
            E::FieldTooLong {
                packet: "CONNECT",
                field: "client identifier",
                len: 65_536,
            },
        ),
        (
            Packet::Subscribe(Subscribe {
                pkid: 1,
                filters: vec![("a/b+".into(), QoS::AtMostOnce)],
            }),
            E::WildcardNotAlone {
                packet: "SUBSCRIBE",
                filter: "a/b+".into(),
                wildcard: '+',
            },
        ),
        (
            Packet::Unsubscribe(Unsubscribe {
                pkid: 1,
                filters: vec![],
            }),
            E::NoFilters {
                packet: "UNSUBSCRIBE",
            },
        ),
        (Packet::UnsubAck(0), E::ZeroPacketId { packet: "UNSUBACK" }),
        (Packet::PubRel(0), E::ZeroPacketId { packet: "PUBREL" }),
    ];
    for (packet, expected) in cases {
        let mut out = vec![0xAB, 0xCD];
        assert_eq!(
            packet.encode(&mut out),
            Err(expected.clone()),
            "{}",
            packet.name()
        );
        assert_eq!(packet.encoded_len(), Err(expected));
        assert_eq!(out, [0xAB, 0xCD], "{} touched the buffer", packet.name());
    }
}

#[test]
fn summary_and_debug_hide_the_password() {
    let packet = Packet::Connect(uiot_connect());
    let summary = packet.summary();
    assert!(!summary.contains("hly3dk1u5y8fq0b9"), "{summary}");
    assert!(summary.starts_with("CONNECT "), "{summary}");
    assert!(summary.contains("username=70ly1tvowt696r15|aruidyl0rt9tuvod|1"));
    let debug = format!("{packet:?}");
    assert!(!debug.contains("hly3dk1u5y8fq0b9"), "{debug}");
    // Not even as the byte list Debug would print for a Vec<u8>.
    assert!(!debug.contains("104, 108, 121"), "{debug}");
}

/// Defect 9: each violation a broker can commit after CONNACK is its own
/// variant, so the client can map it to "protocol error" by type.
#[test]
fn broker_violations_are_distinct_variants() {
    use std::mem::discriminant;
    let violations = [
        "30 04 00 02 c3 28",    // invalid UTF-8 topic
        "30 05 00 03 61 2f 23", // wildcard topic
        "40 02 00 00",          // PUBACK id 0
        "34 05 00 01 61 00 01", // QoS 2 PUBLISH
        "36 05 00 01 61 00 01", // QoS 3 PUBLISH
        "f0 00",                // reserved type 15
        "41 02 00 01",          // PUBACK flags
        "40 03 00 01 00",       // PUBACK length
        "90 03 00 01 81",       // SUBACK return code
    ];
    let errors: Vec<PacketError> = violations
        .iter()
        .map(|v| decode(&hex(v), MAX_PACKET).unwrap_err())
        .collect();
    for (i, a) in errors.iter().enumerate() {
        for b in &errors[i + 1..] {
            assert_ne!(discriminant(a), discriminant(b), "{a} / {b}");
        }
    }
    // Oversized against the maximum the caller gives, from the header alone.
    assert_eq!(
        decode(&hex("30 e4 00"), 99),
        Err(PacketError::TooLarge {
            packet: "PUBLISH",
            size: 103,
            max: 99
        })
    );
    assert_eq!(
        decode(&hex("90 ff 7f"), 1024),
        Err(PacketError::TooLarge {
            packet: "SUBACK",
            size: 16_386,
            max: 1024
        })
    );
}

/// Defect 12: bytes that answer CONNECT but are not MQTT are named.
#[test]
fn non_mqtt_answers_to_connect_are_recognised() {
    assert_eq!(
        not_mqtt(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
        Some("an HTTP server")
    );
    // What an OpenSSL server sends back to a plain-MQTT CONNECT.
    assert_eq!(not_mqtt(&hex("15 03 01 00 02 02 32")), Some("a TLS server"));
    assert_eq!(not_mqtt(b"SSH-2.0-dropbear\r\n"), Some("an SSH server"));
    assert_eq!(
        not_mqtt(b"220 ftp ready\r\n"),
        Some("a server of a text protocol")
    );
    // The first byte of "HTTP/" alone decodes as a bad PUBACK: the reason
    // not_mqtt is asked first.
    assert!(matches!(
        decode(b"HTTP/1.1", MAX_PACKET),
        Err(PacketError::BadFlags {
            packet: "PUBACK",
            ..
        })
    ));
    assert_eq!(not_mqtt(&hex("20 02 00 00")), None);
    assert_eq!(not_mqtt(&hex("20 02 01 00 30 03 00 01 61")), None);
}
