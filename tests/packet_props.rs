//! Property tests of the packet layer: valid packets round trip, anything
//! that encodes decodes, and no input makes `decode` panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use uiot::packet::{
    decode, ConnAck, Connect, ConnectReturnCode, Decoded, LastWill, Packet, PacketError, Protocol,
    Publish, QoS, SubAck, SubAckCode, Subscribe, Unsubscribe,
};

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]
}

fn pkid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

/// Any string without U+0000 (control characters other than NUL included).
fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,24}"
}

/// A valid topic name: one or more levels, no wildcards, no control
/// characters (U+0000..U+001F, U+007F..U+009F).
fn topic_name() -> impl Strategy<Value = String> {
    "[^\\x00-\\x1f\\x7f-\\u{9f}+#]{1,40}"
}

/// A valid topic filter built level by level.
fn topic_filter() -> impl Strategy<Value = String> {
    (
        vec(
            prop_oneof![Just("+".to_owned()), "[^\\x00-\\x1f\\x7f-\\u{9f}+#/]{0,8}"],
            1..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("a filter is never empty", |f| !f.is_empty())
}

fn connect() -> impl Strategy<Value = Connect> {
    (
        prop_oneof![Just(Protocol::V311), Just(Protocol::V31)],
        any::<u16>(),
        any::<bool>(),
        text(),
        option::of((topic_name(), vec(any::<u8>(), 0..40), qos(), any::<bool>())),
        option::of((text(), option::of(vec(any::<u8>(), 0..40)))),
    )
        .prop_map(
            |(protocol, keep_alive, clean_session, client_id, will, creds)| {
                let (username, password) = match creds {
                    Some((u, p)) => (Some(u), p),
                    None => (None, None),
                };
                Connect {
                    protocol,
                    keep_alive,
                    clean_session,
                    client_id,
                    will: will.map(|(topic, message, qos, retain)| LastWill {
                        topic,
                        message,
                        qos,
                        retain,
                    }),
                    username,
                    password,
                }
            },
        )
}

fn return_code() -> impl Strategy<Value = ConnectReturnCode> {
    prop_oneof![
        Just(ConnectReturnCode::Accepted),
        Just(ConnectReturnCode::UnacceptableProtocolVersion),
        Just(ConnectReturnCode::IdentifierRejected),
        Just(ConnectReturnCode::ServerUnavailable),
        Just(ConnectReturnCode::BadUserNameOrPassword),
        Just(ConnectReturnCode::NotAuthorized),
    ]
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        pkid(),
        vec(any::<u8>(), 0..600),
    )
        .prop_map(|(qos, dup, retain, topic, id, payload)| {
            let qos0 = qos == QoS::AtMostOnce;
            Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                pkid: if qos0 { None } else { Some(id) },
                payload,
            }
        })
}

/// Any valid packet of any of the 14 kinds.
fn valid_packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect().prop_map(Packet::Connect),
        (any::<bool>(), return_code()).prop_map(|(sp, code)| Packet::ConnAck(ConnAck {
            session_present: sp && code == ConnectReturnCode::Accepted,
            code
        })),
        publish().prop_map(Packet::Publish),
        pkid().prop_map(Packet::PubAck),
        pkid().prop_map(Packet::PubRec),
        pkid().prop_map(Packet::PubRel),
        pkid().prop_map(Packet::PubComp),
        (pkid(), vec((topic_filter(), qos()), 1..5))
            .prop_map(|(pkid, filters)| Packet::Subscribe(Subscribe { pkid, filters })),
        (
            pkid(),
            vec(
                prop_oneof![
                    qos().prop_map(SubAckCode::Success),
                    Just(SubAckCode::Failure)
                ],
                1..6
            )
        )
            .prop_map(|(pkid, codes)| Packet::SubAck(SubAck { pkid, codes })),
        (pkid(), vec(topic_filter(), 1..5))
            .prop_map(|(pkid, filters)| Packet::Unsubscribe(Unsubscribe { pkid, filters })),
        pkid().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

/// Strings that are often invalid: empty, wildcards, NUL, control
/// characters, misplaced `#`.
fn loose_string() -> impl Strategy<Value = String> {
    "[ab/+#\\x00\\x07\\u{85}]{0,6}"
}

/// Packets with fields that may break the rules.
fn loose_packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        (
            qos(),
            any::<bool>(),
            any::<bool>(),
            loose_string(),
            option::of(any::<u16>()),
            vec(any::<u8>(), 0..8)
        )
            .prop_map(|(qos, dup, retain, topic, pkid, payload)| {
                Packet::Publish(Publish {
                    dup,
                    qos,
                    retain,
                    topic,
                    pkid,
                    payload,
                })
            }),
        (
            loose_string(),
            option::of((loose_string(), qos())),
            option::of(loose_string()),
            option::of(vec(any::<u8>(), 0..4))
        )
            .prop_map(|(client_id, will, username, password)| {
                Packet::Connect(Connect {
                    protocol: Protocol::V311,
                    keep_alive: 30,
                    clean_session: true,
                    client_id,
                    will: will.map(|(topic, qos)| LastWill {
                        topic,
                        message: vec![],
                        qos,
                        retain: false,
                    }),
                    username,
                    password,
                })
            }),
        (any::<bool>(), return_code()).prop_map(|(session_present, code)| Packet::ConnAck(
            ConnAck {
                session_present,
                code
            }
        )),
        (any::<u16>(), vec((loose_string(), qos()), 0..3))
            .prop_map(|(pkid, filters)| Packet::Subscribe(Subscribe { pkid, filters })),
        (any::<u16>(), vec(loose_string(), 0..3))
            .prop_map(|(pkid, filters)| Packet::Unsubscribe(Unsubscribe { pkid, filters })),
        (
            any::<u16>(),
            vec(
                prop_oneof![
                    qos().prop_map(SubAckCode::Success),
                    Just(SubAckCode::Failure)
                ],
                0..3
            )
        )
            .prop_map(|(pkid, codes)| Packet::SubAck(SubAck { pkid, codes })),
        any::<u16>().prop_map(Packet::PubAck),
        any::<u16>().prop_map(Packet::PubRel),
        any::<u16>().prop_map(Packet::UnsubAck),
    ]
}

/// A first byte with a valid type and the flags that type requires.
fn valid_first_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        (1u8..=14).prop_filter_map("PUBLISH handled below", |t| match t {
            3 => None,
            6 | 8 | 10 => Some((t << 4) | 0b0010),
            _ => Some(t << 4),
        }),
        // PUBLISH with any valid QoS/DUP/RETAIN combination.
        (0u8..=1, any::<bool>(), any::<bool>()).prop_map(|(q, dup, retain)| 0x30
            | (u8::from(dup && q > 0) << 3)
            | (q << 1)
            | u8::from(retain)),
    ]
}

fn encode_len_bytes(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn valid_packets_round_trip(p in valid_packet(), trailing in vec(any::<u8>(), 0..4)) {
        let mut bytes = Vec::new();
        p.encode(&mut bytes).unwrap();
        prop_assert_eq!(p.encoded_len(), Ok(bytes.len()));
        let len = bytes.len();
        bytes.extend_from_slice(&trailing);
        prop_assert_eq!(
            decode(&bytes, usize::MAX),
            Ok(Decoded::Packet { packet: p, len })
        );
    }

    #[test]
    fn prefixes_of_valid_packets_are_incomplete(p in valid_packet(), cut in any::<prop::sample::Index>()) {
        let mut bytes = Vec::new();
        p.encode(&mut bytes).unwrap();
        let cut = cut.index(bytes.len());
        match decode(&bytes[..cut], usize::MAX) {
            Ok(Decoded::Incomplete { needed }) => {
                prop_assert!(needed >= 1 && cut + needed <= bytes.len());
            }
            other => prop_assert!(false, "prefix {} of {}: {:?}", cut, bytes.len(), other),
        }
    }

    #[test]
    fn whatever_encodes_decodes_and_failures_leave_out_alone(p in loose_packet()) {
        let mut out = vec![0xEE];
        match p.encode(&mut out) {
            Ok(()) => {
                prop_assert_eq!(
                    decode(&out[1..], usize::MAX),
                    Ok(Decoded::Packet { packet: p, len: out.len() - 1 })
                );
            }
            Err(e) => {
                prop_assert_eq!(&out, &vec![0xEE]);
                prop_assert_eq!(p.encoded_len(), Err(e));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..64),
        max in prop_oneof![Just(0usize), Just(2), Just(16), Just(usize::MAX)],
    ) {
        let _decoded = check_decode(&bytes, max)?;
    }

    #[test]
    fn arbitrary_body_after_a_valid_header_never_panics(
        first in valid_first_byte(),
        body in vec(any::<u8>(), 0..48),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = vec![first];
        encode_len_bytes(body.len(), &mut bytes);
        bytes.extend_from_slice(&body);
        let total = bytes.len();
        // The whole packet: decoded to exactly its length, or refused.
        if let Ok(Decoded::Packet { len, .. }) = check_decode(&bytes, usize::MAX)? {
            prop_assert_eq!(len, total);
        }
        // Any prefix: never a packet.
        let cut = cut.index(total);
        let prefix = decode(&bytes[..cut], usize::MAX);
        prop_assert!(!matches!(prefix, Ok(Decoded::Packet { .. })), "{:?}", prefix);
    }
}

/// Decode `bytes`; whatever decodes must re-encode into something that
/// decodes to the same packet.
fn check_decode(bytes: &[u8], max: usize) -> Result<Result<Decoded, PacketError>, TestCaseError> {
    let result = decode(bytes, max);
    match &result {
        Ok(Decoded::Packet { packet, len }) => {
            prop_assert!(*len <= bytes.len() && *len <= max);
            let mut again = Vec::new();
            prop_assert_eq!(packet.encode(&mut again), Ok(()));
            prop_assert_eq!(
                decode(&again, usize::MAX),
                Ok(Decoded::Packet {
                    packet: packet.clone(),
                    len: again.len()
                })
            );
        }
        Ok(Decoded::Incomplete { needed }) => prop_assert!(*needed >= 1),
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(result)
}
