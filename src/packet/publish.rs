//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP.
//!
//! Owns: [`Publish`], the wire format and validation of the message packets,
//! including the zero-copy hot path [`encode_publish`]. PUBREC, PUBREL and
//! PUBCOMP (QoS 2 flow) still decode, so that the client can name them in a
//! protocol error; UIoT Core never sends them.
//! Must not touch: UIoT topic rules (in `platform`), QoS flows and retries
//! (the client's job), I/O.

use super::codec::{self, Reader};
use super::{qos, topic, PacketError, QoS};

const NAME: &str = "PUBLISH";

const FLAG_DUP: u8 = 0b1000;
const FLAG_RETAIN: u8 = 0b0001;

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name (no wildcards).
    pub topic: String,
    /// Packet identifier: `Some` (non-zero) for QoS 1, `None` for QoS 0.
    pub pkid: Option<u16>,
    /// Application payload.
    pub payload: Vec<u8>,
}

/// PUBLISH flags as found in the fixed header: QoS, DUP, RETAIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublishFlags {
    pub qos: QoS,
    pub dup: bool,
    pub retain: bool,
}

/// Check the four flag bits of a PUBLISH fixed header.
pub(crate) fn check_flags(flags: u8) -> Result<PublishFlags, PacketError> {
    let qos = qos::from_bits(NAME, "QoS", (flags >> 1) & 0b11)?;
    let dup = flags & FLAG_DUP != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(PacketError::DupOnQoS0);
    }
    Ok(PublishFlags {
        qos,
        dup,
        retain: flags & FLAG_RETAIN != 0,
    })
}

/// Read a PUBLISH body given its fixed-header flags.
pub(crate) fn read_publish(flags: u8, body: &[u8]) -> Result<Publish, PacketError> {
    let PublishFlags { qos, dup, retain } = check_flags(flags)?;
    let mut r = Reader::new(NAME, body);
    let topic = r.string("topic name")?;
    topic::check_name(NAME, topic)?;
    let pkid = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce => Some(r.pkid()?),
    };
    let payload = r.rest("payload").to_vec();
    r.finish()?;
    Ok(Publish {
        dup,
        qos,
        retain,
        topic: topic.to_owned(),
        pkid,
        payload,
    })
}

/// Validate a PUBLISH for encoding; its remaining length.
pub(crate) fn publish_len(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    dup: bool,
    pkid: Option<u16>,
) -> Result<usize, PacketError> {
    if dup && qos == QoS::AtMostOnce {
        return Err(PacketError::DupOnQoS0);
    }
    topic::check_name(NAME, topic)?;
    let topic_len = codec::string_size(NAME, "topic name", topic)?;
    let pkid_len = match (qos, pkid) {
        (QoS::AtMostOnce, None) => 0,
        (QoS::AtMostOnce, Some(_)) => return Err(PacketError::UnexpectedPacketId { packet: NAME }),
        (_, None) => return Err(PacketError::MissingPacketId { packet: NAME }),
        (_, Some(id)) => {
            codec::check_pkid(NAME, id)?;
            2
        }
    };
    codec::check_remaining_len(
        NAME,
        topic_len
            .saturating_add(pkid_len)
            .saturating_add(payload.len()),
    )
}

/// Append a PUBLISH to `out` straight from borrowed topic and payload (no
/// intermediate [`Publish`]). Validates like the decoder does: topic name
/// valid, `pkid` non-zero and present exactly for QoS 1, no DUP on QoS 0,
/// size within MQTT's limit. On error `out` is left as it was.
pub fn encode_publish(
    out: &mut Vec<u8>,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    dup: bool,
    retain: bool,
    pkid: Option<u16>,
) -> Result<(), PacketError> {
    let len = publish_len(topic, payload, qos, dup, pkid)?;
    let mut byte1 = (codec::PUBLISH << 4) | (qos.to_u8() << 1);
    if dup {
        byte1 |= FLAG_DUP;
    }
    if retain {
        byte1 |= FLAG_RETAIN;
    }
    codec::write_fixed_header(out, byte1, len);
    codec::write_string(out, topic);
    if let Some(id) = pkid {
        codec::write_u16(out, id);
    }
    out.extend_from_slice(payload);
    Ok(())
}

/// Read the body of PUBACK, PUBREC, PUBREL or PUBCOMP (`packet` names it).
pub(crate) fn read_ack(packet: &'static str, body: &[u8]) -> Result<u16, PacketError> {
    codec::read_pkid_only(packet, body)
}

/// Append PUBACK, PUBREC, PUBREL or PUBCOMP (`kind` is the packet type).
pub(crate) fn encode_ack(
    out: &mut Vec<u8>,
    packet: &'static str,
    kind: u8,
    pkid: u16,
) -> Result<(), PacketError> {
    codec::encode_pkid_only(out, packet, (kind << 4) | codec::required_flags(kind), pkid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_util::{encoded, one};
    use crate::packet::Packet;

    #[test]
    fn qos1_publish_with_flags() {
        let packet = [
            0x3B, 0x0B, // PUBLISH dup, QoS 1, retain; remaining length 11
            0x00, 0x03, b'a', b'/', b'b', // topic name
            0x00, 0x0A, // packet id 10
            0x01, 0x02, 0x03, 0x04, // payload
            0x30, 0x00, // start of the next packet
        ];
        let (p, len) = one(&packet).unwrap();
        assert_eq!(len, 13);
        assert_eq!(
            p,
            Packet::Publish(Publish {
                dup: true,
                qos: QoS::AtLeastOnce,
                retain: true,
                topic: "a/b".into(),
                pkid: Some(10),
                payload: vec![1, 2, 3, 4],
            })
        );
        assert_eq!(encoded(&p), packet[..13]);
    }

    #[test]
    fn qos0_publish_has_no_packet_id_and_may_be_empty() {
        let packet = [
            0x30, 0x05, // PUBLISH QoS 0, remaining length 5
            0x00, 0x03, b'a', b'/', b'b', // topic name, no payload
        ];
        let (p, _) = one(&packet).unwrap();
        assert_eq!(
            p,
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: "a/b".into(),
                pkid: None,
                payload: vec![],
            })
        );
        assert_eq!(encoded(&p), packet);
    }

    #[test]
    fn qos2_publish_is_refused_from_its_first_byte() {
        let packet = [
            0x34, 0x06, // PUBLISH QoS 2
            0x00, 0x01, b't', // topic
            0xFF, 0xFF, // packet id 65535
            b'x', // payload
        ];
        let qos2 = PacketError::UnsupportedQoS2 {
            packet: "PUBLISH",
            field: "QoS",
        };
        assert_eq!(one(&packet), Err(qos2.clone()));
        assert_eq!(crate::packet::decode(&packet[..1], 100), Err(qos2));
    }

    #[test]
    fn publish_header_rules() {
        assert_eq!(
            one(&[0x36, 0x00]),
            Err(PacketError::ReservedQoS3 {
                packet: "PUBLISH",
                field: "QoS"
            })
        );
        assert_eq!(
            one(&[0x3F, 0x00]),
            Err(PacketError::ReservedQoS3 {
                packet: "PUBLISH",
                field: "QoS"
            })
        );
        assert_eq!(one(&[0x38, 0x00]), Err(PacketError::DupOnQoS0));
    }

    #[test]
    fn publish_body_rules() {
        assert_eq!(
            one(&[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00]),
            Err(PacketError::ZeroPacketId { packet: "PUBLISH" })
        );
        assert_eq!(
            one(&[0x30, 0x02, 0x00, 0x00]),
            Err(PacketError::EmptyTopic { packet: "PUBLISH" })
        );
        assert_eq!(
            one(&[0x30, 0x04, 0x00, 0x02, b'a', b'+']),
            Err(PacketError::WildcardInTopic {
                packet: "PUBLISH",
                topic: "a+".into()
            })
        );
        assert_eq!(
            one(&[0x30, 0x04, 0x00, 0x02, b'#', b'a']),
            Err(PacketError::WildcardInTopic {
                packet: "PUBLISH",
                topic: "#a".into()
            })
        );
        assert_eq!(
            one(&[0x30, 0x03, 0x00, 0x01, 0x80]),
            Err(PacketError::InvalidUtf8 {
                packet: "PUBLISH",
                field: "topic name"
            })
        );
        assert_eq!(
            one(&[0x30, 0x03, 0x00, 0x01, 0x00]),
            Err(PacketError::NullCharacter {
                packet: "PUBLISH",
                field: "topic name"
            })
        );
        // Topic length points past the end of the packet.
        assert_eq!(
            one(&[0x30, 0x03, 0x00, 0x05, b'a']),
            Err(PacketError::Truncated {
                packet: "PUBLISH",
                field: "topic name",
                needed: 5,
                available: 1
            })
        );
        // QoS 1 but the packet ends inside the packet identifier.
        assert_eq!(
            one(&[0x32, 0x04, 0x00, 0x01, b'a', 0x01]),
            Err(PacketError::Truncated {
                packet: "PUBLISH",
                field: "packet identifier",
                needed: 2,
                available: 1
            })
        );
    }

    #[test]
    fn encode_publish_refuses_what_decoding_refuses_and_leaves_out_alone() {
        let mut out = vec![7, 7];
        let cases = [
            (
                "a",
                QoS::AtLeastOnce,
                false,
                None,
                PacketError::MissingPacketId { packet: "PUBLISH" },
            ),
            (
                "a",
                QoS::AtMostOnce,
                false,
                Some(1),
                PacketError::UnexpectedPacketId { packet: "PUBLISH" },
            ),
            (
                "a",
                QoS::AtLeastOnce,
                false,
                Some(0),
                PacketError::ZeroPacketId { packet: "PUBLISH" },
            ),
            ("a", QoS::AtMostOnce, true, None, PacketError::DupOnQoS0),
            (
                "",
                QoS::AtMostOnce,
                false,
                None,
                PacketError::EmptyTopic { packet: "PUBLISH" },
            ),
            (
                "a/#",
                QoS::AtMostOnce,
                false,
                None,
                PacketError::WildcardInTopic {
                    packet: "PUBLISH",
                    topic: "a/#".into(),
                },
            ),
        ];
        for (topic, qos, dup, pkid, err) in cases {
            assert_eq!(
                encode_publish(&mut out, topic, b"x", qos, dup, false, pkid),
                Err(err)
            );
        }
        assert!(matches!(
            encode_publish(
                &mut out,
                &"t".repeat(70_000),
                b"",
                QoS::AtMostOnce,
                false,
                false,
                None
            ),
            Err(PacketError::FieldTooLong { len: 70_000, .. })
        ));
        assert_eq!(out, [7, 7]);
    }

    #[test]
    fn encode_publish_appends() {
        let mut out = vec![0xEE];
        encode_publish(
            &mut out,
            "a/b",
            b"hi",
            QoS::AtLeastOnce,
            false,
            false,
            Some(1),
        )
        .unwrap();
        assert_eq!(
            out,
            [0xEE, 0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, b'h', b'i']
        );
    }

    #[test]
    fn acks_round_trip_with_the_next_packet_behind() {
        for (byte1, make) in [
            (0x40u8, Packet::PubAck as fn(u16) -> Packet),
            (0x50, Packet::PubRec),
            (0x62, Packet::PubRel),
            (0x70, Packet::PubComp),
        ] {
            let packet = [
                byte1, 0x02, // type, remaining length 2
                0x12, 0x34, // packet id 0x1234
                0xC0, // next packet
            ];
            let (p, len) = one(&packet).unwrap();
            assert_eq!(p, make(0x1234));
            assert_eq!(len, 4);
            assert_eq!(encoded(&p), packet[..4]);
        }
    }

    #[test]
    fn ack_rules() {
        assert_eq!(
            one(&[0x40, 0x02, 0x00, 0x00]),
            Err(PacketError::ZeroPacketId { packet: "PUBACK" })
        );
        assert_eq!(
            one(&[0x40, 0x03, 0x00, 0x01, 0x00]),
            Err(PacketError::WrongRemainingLength {
                packet: "PUBACK",
                expected: 2,
                actual: 3
            })
        );
        assert_eq!(
            one(&[0x50, 0x01, 0x01]),
            Err(PacketError::WrongRemainingLength {
                packet: "PUBREC",
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(
            one(&[0x60, 0x02, 0x00, 0x01]),
            Err(PacketError::BadFlags {
                packet: "PUBREL",
                flags: 0,
                expected: 2
            })
        );
        assert_eq!(
            one(&[0x72, 0x02, 0x00, 0x01]),
            Err(PacketError::BadFlags {
                packet: "PUBCOMP",
                flags: 2,
                expected: 0
            })
        );
        let mut out = Vec::new();
        assert_eq!(
            Packet::PubComp(0).encode(&mut out),
            Err(PacketError::ZeroPacketId { packet: "PUBCOMP" })
        );
        assert!(out.is_empty());
    }
}
