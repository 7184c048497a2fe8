//! MQTT 3.1.1 (and 3.1) control packets: bytes <-> packets.
//!
//! Owns: the wire format of all 14 control packets, strict validation of
//! everything decoded, and encoding into a caller's buffer.
//! Must not touch: sockets, threads, time, logging, UIoT platform rules (those
//! live in `platform`). Nothing here performs I/O or panics on any input.
//!
//! Decoding works on a byte buffer that may hold a partial packet or several:
//! [`decode`] returns [`Decoded::Incomplete`] (consuming nothing) until a whole
//! packet is there, then the packet and how many bytes it took. The declared
//! remaining length is checked against a maximum before anything is allocated
//! (the platform's is [`crate::platform::MAX_PACKET`], 256 KiB).
//!
//! Encoding appends to a `Vec<u8>` the caller owns and reuses, validating
//! the same rules as decoding; on error the buffer is left as it was.
//!
//! UIoT Core has no QoS 2: [`QoS`] has two levels, and QoS 2 met on the wire
//! (a PUBLISH, a SUBACK granting it) is [`PacketError::UnsupportedQoS2`].
//!
//! Each packet type lives next to its codec: `connect` (CONNECT,
//! DISCONNECT), `connack`, `publish` (PUBLISH and its acks), `subscribe`
//! (SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK), `ping`; shared pieces are
//! `codec` (wire primitives), `qos`, `topic` (topic name/filter rules and
//! matching), `error` ([`PacketError`]), `summary` (log lines) and `sniff`
//! ([`not_mqtt`]). This file keeps the [`Packet`] enum, [`decode`] and
//! [`Packet::encode`], and dispatches.

mod codec;
mod connack;
mod connect;
mod error;
mod ping;
mod publish;
mod qos;
mod sniff;
mod subscribe;
mod summary;
mod topic;

#[cfg(test)]
mod test_util;

pub use connack::{ConnAck, ConnectReturnCode};
pub use connect::{Connect, LastWill, Protocol};
pub use error::PacketError;
pub use publish::{encode_publish, Publish};
pub use qos::QoS;
pub use sniff::not_mqtt;
pub use subscribe::{SubAck, SubAckCode, Subscribe, Unsubscribe};
pub use topic::{filter_matches, validate_topic_filter, validate_topic_name};

/// The largest remaining length MQTT can express (four length bytes).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Any MQTT 3.1.1 control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (type 1).
    Connect(Connect),
    /// CONNACK (type 2).
    ConnAck(ConnAck),
    /// PUBLISH (type 3).
    Publish(Publish),
    /// PUBACK (type 4) with its packet identifier.
    PubAck(u16),
    /// PUBREC (type 5), of the QoS 2 flow: still decoded so that the client can
    /// name it in a protocol error (UIoT Core has no QoS 2).
    PubRec(u16),
    /// PUBREL (type 6), of the QoS 2 flow: still decoded so that the client can
    /// name it in a protocol error (UIoT Core has no QoS 2).
    PubRel(u16),
    /// PUBCOMP (type 7), of the QoS 2 flow: still decoded so that the client can
    /// name it in a protocol error (UIoT Core has no QoS 2).
    PubComp(u16),
    /// SUBSCRIBE (type 8).
    Subscribe(Subscribe),
    /// SUBACK (type 9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (type 10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (type 11).
    UnsubAck(u16),
    /// PINGREQ (type 12).
    PingReq,
    /// PINGRESP (type 13).
    PingResp,
    /// DISCONNECT (type 14).
    Disconnect,
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole packet, which took `len` bytes of the buffer.
    Packet {
        /// The packet.
        packet: Packet,
        /// How many bytes of the buffer it used.
        len: usize,
    },
    /// Not a whole packet yet: at least `needed` more bytes are required.
    /// Nothing was consumed.
    Incomplete {
        /// Minimum number of further bytes needed.
        needed: usize,
    },
}

/// Decode the packet at the start of `buf`, refusing any packet whose declared
/// size exceeds `max_packet` bytes (fixed header included) before allocating.
///
/// `buf` may hold less than a packet ([`Decoded::Incomplete`]: nothing is
/// consumed, read at least `needed` more bytes and call again) or more than
/// one (only the first is decoded; [`Decoded::Packet::len`] says how many
/// bytes to drop). Errors that the fixed header already shows (reserved type,
/// bad flags, QoS 2 or 3 in a PUBLISH, a size over `max_packet`, a wrong size
/// for a fixed-size packet) are reported before the rest of the packet has
/// arrived.
///
/// ```
/// use uiot::packet::{decode, Decoded, Packet};
/// use uiot::platform::MAX_PACKET;
///
/// // A PUBACK for packet 5, then the first byte of a PINGRESP.
/// let buf = [0x40, 0x02, 0x00, 0x05, 0xD0];
/// assert_eq!(
///     decode(&buf, MAX_PACKET),
///     Ok(Decoded::Packet { packet: Packet::PubAck(5), len: 4 })
/// );
/// assert_eq!(
///     decode(&buf[4..], MAX_PACKET),
///     Ok(Decoded::Incomplete { needed: 1 })
/// );
/// ```
pub fn decode(buf: &[u8], max_packet: usize) -> Result<Decoded, PacketError> {
    let Some(&byte1) = buf.first() else {
        return Ok(Decoded::Incomplete { needed: 2 });
    };
    let kind = byte1 >> 4;
    let flags = byte1 & 0x0F;
    let name = codec::type_name(kind).ok_or(PacketError::ReservedPacketType(kind))?;
    if kind == codec::PUBLISH {
        publish::check_flags(flags)?;
    } else {
        let expected = codec::required_flags(kind);
        if flags != expected {
            return Err(PacketError::BadFlags {
                packet: name,
                flags,
                expected,
            });
        }
    }
    let Some(header) = codec::read_fixed_header(buf)? else {
        // At least one more byte of remaining length.
        return Ok(Decoded::Incomplete { needed: 1 });
    };
    if let Some(expected) = codec::fixed_remaining_length(kind) {
        if header.remaining_len != expected {
            return Err(PacketError::WrongRemainingLength {
                packet: name,
                expected,
                actual: header.remaining_len,
            });
        }
    }
    let size = header.header_len + header.remaining_len;
    if size > max_packet {
        return Err(PacketError::TooLarge {
            packet: name,
            size,
            max: max_packet,
        });
    }
    let Some(body) = buf.get(header.header_len..size) else {
        return Ok(Decoded::Incomplete {
            needed: size.saturating_sub(buf.len()),
        });
    };
    let packet = match kind {
        codec::CONNECT => Packet::Connect(connect::read_connect(body)?),
        codec::CONNACK => Packet::ConnAck(connack::read_connack(body)?),
        codec::PUBLISH => Packet::Publish(publish::read_publish(flags, body)?),
        codec::PUBACK => Packet::PubAck(publish::read_ack(name, body)?),
        codec::PUBREC => Packet::PubRec(publish::read_ack(name, body)?),
        codec::PUBREL => Packet::PubRel(publish::read_ack(name, body)?),
        codec::PUBCOMP => Packet::PubComp(publish::read_ack(name, body)?),
        codec::SUBSCRIBE => Packet::Subscribe(subscribe::read_subscribe(body)?),
        codec::SUBACK => Packet::SubAck(subscribe::read_suback(body)?),
        codec::UNSUBSCRIBE => Packet::Unsubscribe(subscribe::read_unsubscribe(body)?),
        codec::UNSUBACK => Packet::UnsubAck(subscribe::read_unsuback(body)?),
        codec::PINGREQ => {
            ping::read_pingreq(body)?;
            Packet::PingReq
        }
        codec::PINGRESP => {
            ping::read_pingresp(body)?;
            Packet::PingResp
        }
        codec::DISCONNECT => {
            connect::read_disconnect(body)?;
            Packet::Disconnect
        }
        _ => return Err(PacketError::ReservedPacketType(kind)),
    };
    Ok(Decoded::Packet { packet, len: size })
}

impl Packet {
    /// Append the encoded packet to `out`.
    ///
    /// Validates the same rules as [`decode`], so nothing is written that the
    /// decoder would refuse; on error `out` is left exactly as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), PacketError> {
        match self {
            Packet::Connect(c) => connect::encode_connect(c, out),
            Packet::ConnAck(a) => connack::encode_connack(a, out),
            Packet::Publish(p) => {
                encode_publish(out, &p.topic, &p.payload, p.qos, p.dup, p.retain, p.pkid)
            }
            Packet::PubAck(id) => publish::encode_ack(out, self.name(), codec::PUBACK, *id),
            Packet::PubRec(id) => publish::encode_ack(out, self.name(), codec::PUBREC, *id),
            Packet::PubRel(id) => publish::encode_ack(out, self.name(), codec::PUBREL, *id),
            Packet::PubComp(id) => publish::encode_ack(out, self.name(), codec::PUBCOMP, *id),
            Packet::Subscribe(s) => subscribe::encode_subscribe(s, out),
            Packet::SubAck(s) => subscribe::encode_suback(s, out),
            Packet::Unsubscribe(u) => subscribe::encode_unsubscribe(u, out),
            Packet::UnsubAck(id) => subscribe::encode_unsuback(out, *id),
            Packet::PingReq => {
                ping::encode_pingreq(out);
                Ok(())
            }
            Packet::PingResp => {
                ping::encode_pingresp(out);
                Ok(())
            }
            Packet::Disconnect => {
                connect::encode_disconnect(out);
                Ok(())
            }
        }
    }

    /// The size [`Packet::encode`] would write, fixed header included, after
    /// the same validation (so a caller can check a size limit first).
    pub fn encoded_len(&self) -> Result<usize, PacketError> {
        let remaining = match self {
            Packet::Connect(c) => connect::connect_len(c)?,
            Packet::ConnAck(a) => {
                if a.session_present && a.code != ConnectReturnCode::Accepted {
                    return Err(PacketError::SessionPresentWithError(a.code as u8));
                }
                2
            }
            Packet::Publish(p) => publish::publish_len(&p.topic, &p.payload, p.qos, p.dup, p.pkid)?,
            Packet::PubAck(id)
            | Packet::PubRec(id)
            | Packet::PubRel(id)
            | Packet::PubComp(id)
            | Packet::UnsubAck(id) => {
                codec::check_pkid(self.name(), *id)?;
                2
            }
            Packet::Subscribe(s) => subscribe::subscribe_len(s)?,
            Packet::SubAck(s) => subscribe::suback_len(s)?,
            Packet::Unsubscribe(u) => subscribe::unsubscribe_len(u)?,
            Packet::PingReq | Packet::PingResp | Packet::Disconnect => 0,
        };
        Ok(1 + codec::remaining_length_len(remaining) + remaining)
    }

    /// The packet type's name as the MQTT specification spells it
    /// ("PUBLISH", "CONNACK", ...).
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect => "DISCONNECT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::MAX_PACKET;

    fn publish_bytes() -> Vec<u8> {
        let mut out = Vec::new();
        encode_publish(
            &mut out,
            "a/b",
            b"hello",
            QoS::AtLeastOnce,
            false,
            false,
            Some(3),
        )
        .unwrap();
        out
    }

    #[test]
    fn every_prefix_is_incomplete_and_names_a_lower_bound() {
        let bytes = publish_bytes();
        for cut in 0..bytes.len() {
            match decode(&bytes[..cut], MAX_PACKET) {
                Ok(Decoded::Incomplete { needed }) => {
                    assert!(needed >= 1, "prefix {cut}");
                    assert!(cut + needed <= bytes.len(), "prefix {cut} overstates");
                }
                other => panic!("prefix {cut}: {other:?}"),
            }
        }
        assert_eq!(
            decode(&bytes[..2], MAX_PACKET),
            Ok(Decoded::Incomplete {
                needed: bytes.len() - 2
            })
        );
    }

    #[test]
    fn too_large_is_refused_before_the_body_arrives() {
        // PUBLISH declaring 300000 bytes of remaining length, nothing else.
        let header = [0x30, 0xE0, 0xA7, 0x12];
        assert_eq!(
            decode(&header, MAX_PACKET),
            Err(PacketError::TooLarge {
                packet: "PUBLISH",
                size: 300_004,
                max: MAX_PACKET
            })
        );
        // Exactly at the limit is fine (and incomplete here).
        let bytes = publish_bytes();
        assert!(matches!(
            decode(&bytes, bytes.len()),
            Ok(Decoded::Packet { .. })
        ));
        assert_eq!(
            decode(&bytes, bytes.len() - 1),
            Err(PacketError::TooLarge {
                packet: "PUBLISH",
                size: bytes.len(),
                max: bytes.len() - 1
            })
        );
    }

    #[test]
    fn reserved_types_are_refused_from_the_first_byte() {
        assert_eq!(
            decode(&[0x00], 100),
            Err(PacketError::ReservedPacketType(0))
        );
        assert_eq!(
            decode(&[0xF0], 100),
            Err(PacketError::ReservedPacketType(15))
        );
    }

    #[test]
    fn encoded_len_matches_encode() {
        let packets = [
            Packet::PingReq,
            Packet::PubRel(4),
            Packet::Subscribe(Subscribe {
                pkid: 1,
                filters: vec![("a/#".into(), QoS::AtLeastOnce)],
            }),
        ];
        for p in packets {
            let mut out = Vec::new();
            p.encode(&mut out).unwrap();
            assert_eq!(p.encoded_len(), Ok(out.len()), "{p:?}");
        }
        assert_eq!(
            Packet::PubAck(0).encoded_len(),
            Err(PacketError::ZeroPacketId { packet: "PUBACK" })
        );
    }
}
