//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK.
//!
//! Owns: [`Subscribe`], [`SubAck`], [`SubAckCode`], [`Unsubscribe`] and the
//! wire format and validation of the subscription packets.
//! Must not touch: UIoT subscription limits and allowed filters (in
//! `platform`), matching messages to subscriptions (the client's job), I/O.

use super::codec::{self, Reader};
use super::{qos, topic, PacketError, QoS};

const SUBSCRIBE: &str = "SUBSCRIBE";
const SUBACK: &str = "SUBACK";
const UNSUBSCRIBE: &str = "UNSUBSCRIBE";

const SUBACK_FAILURE: u8 = 0x80;

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// Topic filters with their requested QoS (at least one).
    pub filters: Vec<(String, QoS)>,
}

/// One return code of a SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAckCode {
    /// Granted at this QoS.
    Success(QoS),
    /// 0x80: refused.
    Failure,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// One code per filter of the SUBSCRIBE, in order.
    pub codes: Vec<SubAckCode>,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// Topic filters (at least one).
    pub filters: Vec<String>,
}

impl SubAckCode {
    /// The code from its byte: `Some` for 0x00, 0x01 and 0x80, `None` for
    /// anything else (0x02 grants QoS 2, which UIoT Core does not support;
    /// the decoder refuses it with [`PacketError::UnsupportedQoS2`]).
    pub fn from_u8(code: u8) -> Option<Self> {
        match code {
            SUBACK_FAILURE => Some(SubAckCode::Failure),
            _ => QoS::from_u8(code).map(SubAckCode::Success),
        }
    }

    /// The code's byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            SubAckCode::Success(q) => q.to_u8(),
            SubAckCode::Failure => SUBACK_FAILURE,
        }
    }
}

/// Read a SUBSCRIBE body.
pub(crate) fn read_subscribe(body: &[u8]) -> Result<Subscribe, PacketError> {
    let mut r = Reader::new(SUBSCRIBE, body);
    let pkid = r.pkid()?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("topic filter")?;
        topic::check_filter(SUBSCRIBE, filter)?;
        let byte = r.u8("requested QoS")?;
        if byte & 0xFC != 0 {
            return Err(PacketError::RequestedQoSReservedBits {
                filter: filter.to_owned(),
                byte,
            });
        }
        let qos = qos::from_bits(SUBSCRIBE, "requested QoS", byte)?;
        filters.push((filter.to_owned(), qos));
    }
    r.finish()?;
    if filters.is_empty() {
        return Err(PacketError::NoFilters { packet: SUBSCRIBE });
    }
    Ok(Subscribe { pkid, filters })
}

/// Validate a SUBSCRIBE for encoding; its remaining length.
pub(crate) fn subscribe_len(s: &Subscribe) -> Result<usize, PacketError> {
    codec::check_pkid(SUBSCRIBE, s.pkid)?;
    if s.filters.is_empty() {
        return Err(PacketError::NoFilters { packet: SUBSCRIBE });
    }
    let mut len = 2usize;
    for (filter, _) in &s.filters {
        topic::check_filter(SUBSCRIBE, filter)?;
        len = len.saturating_add(codec::string_size(SUBSCRIBE, "topic filter", filter)? + 1);
    }
    codec::check_remaining_len(SUBSCRIBE, len)
}

/// Append a SUBSCRIBE to `out`; on error `out` is unchanged.
pub(crate) fn encode_subscribe(s: &Subscribe, out: &mut Vec<u8>) -> Result<(), PacketError> {
    let len = subscribe_len(s)?;
    codec::write_fixed_header(
        out,
        (codec::SUBSCRIBE << 4) | codec::required_flags(codec::SUBSCRIBE),
        len,
    );
    codec::write_u16(out, s.pkid);
    for (filter, qos) in &s.filters {
        codec::write_string(out, filter);
        out.push(qos.to_u8());
    }
    Ok(())
}

/// Read a SUBACK body.
pub(crate) fn read_suback(body: &[u8]) -> Result<SubAck, PacketError> {
    let mut r = Reader::new(SUBACK, body);
    let pkid = r.pkid()?;
    let mut codes = Vec::new();
    while !r.is_empty() {
        let byte = r.u8("return code")?;
        let code = match byte {
            2 => {
                return Err(PacketError::UnsupportedQoS2 {
                    packet: SUBACK,
                    field: "granted QoS",
                })
            }
            _ => SubAckCode::from_u8(byte).ok_or(PacketError::BadSubAckCode(byte))?,
        };
        codes.push(code);
    }
    r.finish()?;
    if codes.is_empty() {
        return Err(PacketError::NoReturnCodes);
    }
    Ok(SubAck { pkid, codes })
}

/// Validate a SUBACK for encoding; its remaining length.
pub(crate) fn suback_len(s: &SubAck) -> Result<usize, PacketError> {
    codec::check_pkid(SUBACK, s.pkid)?;
    if s.codes.is_empty() {
        return Err(PacketError::NoReturnCodes);
    }
    codec::check_remaining_len(SUBACK, s.codes.len().saturating_add(2))
}

/// Append a SUBACK to `out`; on error `out` is unchanged.
pub(crate) fn encode_suback(s: &SubAck, out: &mut Vec<u8>) -> Result<(), PacketError> {
    let len = suback_len(s)?;
    codec::write_fixed_header(out, codec::SUBACK << 4, len);
    codec::write_u16(out, s.pkid);
    out.extend(s.codes.iter().map(|c| c.to_u8()));
    Ok(())
}

/// Read an UNSUBSCRIBE body.
pub(crate) fn read_unsubscribe(body: &[u8]) -> Result<Unsubscribe, PacketError> {
    let mut r = Reader::new(UNSUBSCRIBE, body);
    let pkid = r.pkid()?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("topic filter")?;
        topic::check_filter(UNSUBSCRIBE, filter)?;
        filters.push(filter.to_owned());
    }
    r.finish()?;
    if filters.is_empty() {
        return Err(PacketError::NoFilters {
            packet: UNSUBSCRIBE,
        });
    }
    Ok(Unsubscribe { pkid, filters })
}

/// Validate an UNSUBSCRIBE for encoding; its remaining length.
pub(crate) fn unsubscribe_len(u: &Unsubscribe) -> Result<usize, PacketError> {
    codec::check_pkid(UNSUBSCRIBE, u.pkid)?;
    if u.filters.is_empty() {
        return Err(PacketError::NoFilters {
            packet: UNSUBSCRIBE,
        });
    }
    let mut len = 2usize;
    for filter in &u.filters {
        topic::check_filter(UNSUBSCRIBE, filter)?;
        len = len.saturating_add(codec::string_size(UNSUBSCRIBE, "topic filter", filter)?);
    }
    codec::check_remaining_len(UNSUBSCRIBE, len)
}

/// Append an UNSUBSCRIBE to `out`; on error `out` is unchanged.
pub(crate) fn encode_unsubscribe(u: &Unsubscribe, out: &mut Vec<u8>) -> Result<(), PacketError> {
    let len = unsubscribe_len(u)?;
    codec::write_fixed_header(
        out,
        (codec::UNSUBSCRIBE << 4) | codec::required_flags(codec::UNSUBSCRIBE),
        len,
    );
    codec::write_u16(out, u.pkid);
    for filter in &u.filters {
        codec::write_string(out, filter);
    }
    Ok(())
}

/// Read an UNSUBACK body.
pub(crate) fn read_unsuback(body: &[u8]) -> Result<u16, PacketError> {
    codec::read_pkid_only("UNSUBACK", body)
}

/// Append an UNSUBACK to `out`; on error `out` is unchanged.
pub(crate) fn encode_unsuback(out: &mut Vec<u8>, pkid: u16) -> Result<(), PacketError> {
    codec::encode_pkid_only(out, "UNSUBACK", codec::UNSUBACK << 4, pkid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_util::{encoded, one};
    use crate::packet::Packet;

    #[test]
    fn subscribe_two_filters() {
        let packet = [
            0x82, 0x0C, // SUBSCRIBE, remaining length 12
            0x00, 0x0A, // packet id 10
            0x00, 0x03, b'a', b'/', b'+', // filter "a/+"
            0x01, // QoS 1
            0x00, 0x01, b'#', // filter "#"
            0x00, // QoS 0
            0xA2, // next packet
        ];
        let (p, len) = one(&packet).unwrap();
        assert_eq!(len, 14);
        assert_eq!(
            p,
            Packet::Subscribe(Subscribe {
                pkid: 10,
                filters: vec![
                    ("a/+".into(), QoS::AtLeastOnce),
                    ("#".into(), QoS::AtMostOnce)
                ],
            })
        );
        assert_eq!(encoded(&p), packet[..14]);
    }

    #[test]
    fn subscribe_rules() {
        assert_eq!(
            one(&[0x80, 0x02, 0x00, 0x01]),
            Err(PacketError::BadFlags {
                packet: "SUBSCRIBE",
                flags: 0,
                expected: 2
            })
        );
        assert_eq!(
            one(&[0x82, 0x02, 0x00, 0x01]),
            Err(PacketError::NoFilters {
                packet: "SUBSCRIBE"
            })
        );
        assert_eq!(
            one(&[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00]),
            Err(PacketError::ZeroPacketId {
                packet: "SUBSCRIBE"
            })
        );
        assert_eq!(
            one(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03]),
            Err(PacketError::ReservedQoS3 {
                packet: "SUBSCRIBE",
                field: "requested QoS"
            })
        );
        assert_eq!(
            one(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x02]),
            Err(PacketError::UnsupportedQoS2 {
                packet: "SUBSCRIBE",
                field: "requested QoS"
            })
        );
        assert_eq!(
            one(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x41]),
            Err(PacketError::RequestedQoSReservedBits {
                filter: "a".into(),
                byte: 0x41
            })
        );
        assert_eq!(
            one(&[0x82, 0x08, 0x00, 0x01, 0x00, 0x03, b'#', b'/', b'a', 0x00]),
            Err(PacketError::MultiLevelWildcardNotLast {
                packet: "SUBSCRIBE",
                filter: "#/a".into()
            })
        );
        assert_eq!(
            one(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x02, b'a', b'+', 0x00]),
            Err(PacketError::WildcardNotAlone {
                packet: "SUBSCRIBE",
                filter: "a+".into(),
                wildcard: '+'
            })
        );
        assert_eq!(
            one(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00]),
            Err(PacketError::EmptyFilter {
                packet: "SUBSCRIBE"
            })
        );
        // Filter without its QoS byte.
        assert_eq!(
            one(&[0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']),
            Err(PacketError::Truncated {
                packet: "SUBSCRIBE",
                field: "requested QoS",
                needed: 1,
                available: 0
            })
        );
    }

    #[test]
    fn suback_with_failure_code() {
        let packet = [
            0x90, 0x05, // SUBACK, remaining length 5
            0x00, 0x07, // packet id 7
            0x00, 0x01, 0x80, // one code of each kind
            0x90, // next packet
        ];
        let (p, len) = one(&packet).unwrap();
        assert_eq!(len, 7);
        assert_eq!(
            p,
            Packet::SubAck(SubAck {
                pkid: 7,
                codes: vec![
                    SubAckCode::Success(QoS::AtMostOnce),
                    SubAckCode::Success(QoS::AtLeastOnce),
                    SubAckCode::Failure,
                ],
            })
        );
        assert_eq!(encoded(&p), packet[..7]);
    }

    #[test]
    fn suback_granting_qos_2_is_refused() {
        assert_eq!(
            one(&[0x90, 0x04, 0x00, 0x01, 0x01, 0x02]),
            Err(PacketError::UnsupportedQoS2 {
                packet: "SUBACK",
                field: "granted QoS"
            })
        );
        assert_eq!(SubAckCode::from_u8(2), None);
        assert_eq!(SubAckCode::from_u8(0x80), Some(SubAckCode::Failure));
    }

    #[test]
    fn suback_rules() {
        for bad in [0x03u8, 0x81, 0x7F, 0xFF] {
            assert_eq!(
                one(&[0x90, 0x03, 0x00, 0x01, bad]),
                Err(PacketError::BadSubAckCode(bad))
            );
        }
        assert_eq!(
            one(&[0x90, 0x02, 0x00, 0x01]),
            Err(PacketError::NoReturnCodes)
        );
        let mut out = Vec::new();
        assert_eq!(
            Packet::SubAck(SubAck {
                pkid: 1,
                codes: vec![]
            })
            .encode(&mut out),
            Err(PacketError::NoReturnCodes)
        );
    }

    #[test]
    fn unsubscribe_and_unsuback() {
        let packet = [
            0xA2, 0x0A, // UNSUBSCRIBE, remaining length 10
            0x00, 0x05, // packet id 5
            0x00, 0x01, b'a', // filter "a"
            0x00, 0x03, b'b', b'/', b'#', // filter "b/#"
            0xB0, 0x02, 0x00, 0x05, // next packet: UNSUBACK 5
        ];
        let (p, len) = one(&packet).unwrap();
        assert_eq!(len, 12);
        assert_eq!(
            p,
            Packet::Unsubscribe(Unsubscribe {
                pkid: 5,
                filters: vec!["a".into(), "b/#".into()],
            })
        );
        assert_eq!(encoded(&p), packet[..12]);
        let (ack, len) = one(&packet[12..]).unwrap();
        assert_eq!((ack.clone(), len), (Packet::UnsubAck(5), 4));
        assert_eq!(encoded(&ack), packet[12..]);
    }

    #[test]
    fn unsubscribe_rules() {
        assert_eq!(
            one(&[0xA2, 0x02, 0x00, 0x01]),
            Err(PacketError::NoFilters {
                packet: "UNSUBSCRIBE"
            })
        );
        assert_eq!(
            one(&[0xA0, 0x02, 0x00, 0x01]),
            Err(PacketError::BadFlags {
                packet: "UNSUBSCRIBE",
                flags: 0,
                expected: 2
            })
        );
        assert_eq!(
            one(&[0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, 0x00]),
            Err(PacketError::NullCharacter {
                packet: "UNSUBSCRIBE",
                field: "topic filter"
            })
        );
        assert_eq!(
            one(&[0xB0, 0x02, 0x00, 0x00]),
            Err(PacketError::ZeroPacketId { packet: "UNSUBACK" })
        );
    }

    #[test]
    fn encoding_refuses_bad_subscriptions_and_leaves_out_alone() {
        let mut out = vec![1];
        let no_filters = Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![],
        });
        assert_eq!(
            no_filters.encode(&mut out),
            Err(PacketError::NoFilters {
                packet: "SUBSCRIBE"
            })
        );
        let bad_filter = Packet::Unsubscribe(Unsubscribe {
            pkid: 1,
            filters: vec!["ok".into(), "a/#/b".into()],
        });
        assert!(matches!(
            bad_filter.encode(&mut out),
            Err(PacketError::MultiLevelWildcardNotLast { .. })
        ));
        let zero = Packet::Subscribe(Subscribe {
            pkid: 0,
            filters: vec![("a".into(), QoS::AtMostOnce)],
        });
        assert_eq!(
            zero.encode(&mut out),
            Err(PacketError::ZeroPacketId {
                packet: "SUBSCRIBE"
            })
        );
        assert_eq!(out, [1]);
    }
}
