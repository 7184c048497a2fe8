//! Wire primitives shared by every packet: the fixed header, the remaining
//! length, big-endian u16, length-prefixed strings and binary data.
//!
//! Owns: the one implementation of each primitive, for reading (a bounds
//! checked [`Reader`] over one packet's body) and for writing (size helpers
//! that validate, then writers that cannot fail).
//! Must not touch: packet-specific rules (those live in the packet files),
//! I/O of any kind.

use super::{PacketError, MAX_REMAINING_LENGTH};

/// Longest string or binary field: its length is a u16.
pub(crate) const MAX_FIELD_LEN: usize = 65_535;

/// Packet type numbers (upper nibble of the first byte).
pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const UNSUBSCRIBE: u8 = 10;
pub(crate) const UNSUBACK: u8 = 11;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;

/// The name of a packet type, `None` for the reserved types 0 and 15.
pub(crate) fn type_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        _ => return None,
    })
}

/// The fixed-header flags a packet type must carry (PUBLISH excluded: its
/// flags carry DUP, QoS and RETAIN).
pub(crate) fn required_flags(kind: u8) -> u8 {
    match kind {
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
        _ => 0,
    }
}

/// The remaining length of packet types whose size never varies.
pub(crate) fn fixed_remaining_length(kind: u8) -> Option<usize> {
    match kind {
        CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | UNSUBACK => Some(2),
        PINGREQ | PINGRESP | DISCONNECT => Some(0),
        _ => None,
    }
}

/// The fixed header once its remaining length is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    /// First byte: type and flags.
    pub byte1: u8,
    /// Declared remaining length.
    pub remaining_len: usize,
    /// Bytes taken by the fixed header itself (2..=5).
    pub header_len: usize,
}

/// Parse the fixed header at the start of `buf`: `Ok(None)` if `buf` ends
/// before the remaining length does.
pub(crate) fn read_fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, PacketError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let mut value = 0usize;
    let mut multiplier = 1usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        // At most 127 * (1 + 128 + 128^2 + 128^3) = 268435455: no overflow.
        value += usize::from(b & 0x7F) * multiplier;
        if b & 0x80 == 0 {
            return Ok(Some(FixedHeader {
                byte1,
                remaining_len: value,
                header_len: 2 + i,
            }));
        }
        multiplier *= 128;
    }
    Err(PacketError::RemainingLengthTooLong)
}

/// How many bytes the remaining length `len` takes on the wire.
pub(crate) fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Refuse a remaining length MQTT cannot express.
pub(crate) fn check_remaining_len(packet: &'static str, len: usize) -> Result<usize, PacketError> {
    if len > MAX_REMAINING_LENGTH {
        Err(PacketError::RemainingLengthOverflow { packet, len })
    } else {
        Ok(len)
    }
}

/// Write the fixed header; `remaining_len` must have passed
/// [`check_remaining_len`]. Reserves room for the whole packet.
pub(crate) fn write_fixed_header(out: &mut Vec<u8>, byte1: u8, remaining_len: usize) {
    out.reserve(1 + remaining_length_len(remaining_len) + remaining_len);
    out.push(byte1);
    let mut len = remaining_len;
    loop {
        // `len % 128` fits in its lowest byte.
        let [mut b, ..] = (len % 128).to_le_bytes();
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

/// Validate a string field for encoding; its size on the wire.
pub(crate) fn string_size(
    packet: &'static str,
    field: &'static str,
    s: &str,
) -> Result<usize, PacketError> {
    if s.contains('\0') {
        return Err(PacketError::NullCharacter { packet, field });
    }
    bytes_size(packet, field, s.as_bytes())
}

/// Validate a binary field for encoding; its size on the wire.
pub(crate) fn bytes_size(
    packet: &'static str,
    field: &'static str,
    b: &[u8],
) -> Result<usize, PacketError> {
    if b.len() > MAX_FIELD_LEN {
        return Err(PacketError::FieldTooLong {
            packet,
            field,
            len: b.len(),
        });
    }
    Ok(2 + b.len())
}

/// Validate a packet identifier that must be non-zero.
pub(crate) fn check_pkid(packet: &'static str, pkid: u16) -> Result<u16, PacketError> {
    if pkid == 0 {
        Err(PacketError::ZeroPacketId { packet })
    } else {
        Ok(pkid)
    }
}

/// Write a big-endian u16.
pub(crate) fn write_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Write a length-prefixed binary field that passed [`bytes_size`].
pub(crate) fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Validated by `bytes_size`: the length fits in a u16.
    let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
    write_u16(out, len);
    out.extend_from_slice(b);
}

/// Write a length-prefixed string that passed [`string_size`].
pub(crate) fn write_string(out: &mut Vec<u8>, s: &str) {
    write_bytes(out, s.as_bytes());
}

/// Bounds-checked reading of one packet's body (the bytes covered by the
/// remaining length). Every error names the packet and the field.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    packet: &'static str,
    buf: &'a [u8],
    pos: usize,
    last: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `body`, the variable header and payload of `packet`.
    pub(crate) fn new(packet: &'static str, body: &'a [u8]) -> Self {
        Reader {
            packet,
            buf: body,
            pos: 0,
            last: "fixed header",
        }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True when everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], PacketError> {
        let end = self.pos.saturating_add(n);
        match self.buf.get(self.pos..end) {
            Some(bytes) => {
                self.pos = end;
                self.last = field;
                Ok(bytes)
            }
            None => Err(PacketError::Truncated {
                packet: self.packet,
                field,
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    /// One byte.
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, PacketError> {
        match self.take(field, 1)? {
            [b] => Ok(*b),
            _ => Err(PacketError::Truncated {
                packet: self.packet,
                field,
                needed: 1,
                available: 0,
            }),
        }
    }

    /// A big-endian u16.
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, PacketError> {
        match self.take(field, 2)? {
            [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => Err(PacketError::Truncated {
                packet: self.packet,
                field,
                needed: 2,
                available: 0,
            }),
        }
    }

    /// A non-zero packet identifier.
    pub(crate) fn pkid(&mut self) -> Result<u16, PacketError> {
        let id = self.u16("packet identifier")?;
        check_pkid(self.packet, id)
    }

    /// A length-prefixed binary field.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], PacketError> {
        let len = self.u16(field)?;
        self.take(field, usize::from(len))
    }

    /// A length-prefixed UTF-8 string without U+0000.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<&'a str, PacketError> {
        let bytes = self.bytes(field)?;
        let s = std::str::from_utf8(bytes).map_err(|_| PacketError::InvalidUtf8 {
            packet: self.packet,
            field,
        })?;
        if s.contains('\0') {
            return Err(PacketError::NullCharacter {
                packet: self.packet,
                field,
            });
        }
        Ok(s)
    }

    /// Everything not read yet (a PUBLISH payload).
    pub(crate) fn rest(&mut self, field: &'static str) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        self.last = field;
        rest
    }

    /// Refuse bytes left over after the last field.
    pub(crate) fn finish(self) -> Result<(), PacketError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(PacketError::TrailingBytes {
                packet: self.packet,
                after: self.last,
                count,
            }),
        }
    }
}

/// Read a body that is exactly a non-zero packet identifier (PUBACK, PUBREC,
/// PUBREL, PUBCOMP, UNSUBACK).
pub(crate) fn read_pkid_only(packet: &'static str, body: &[u8]) -> Result<u16, PacketError> {
    let mut r = Reader::new(packet, body);
    let id = r.pkid()?;
    r.finish()?;
    Ok(id)
}

/// Read a body that must be empty (PINGREQ, PINGRESP, DISCONNECT).
pub(crate) fn read_empty(packet: &'static str, body: &[u8]) -> Result<(), PacketError> {
    Reader::new(packet, body).finish()
}

/// Append a packet that is only a packet identifier.
pub(crate) fn encode_pkid_only(
    out: &mut Vec<u8>,
    packet: &'static str,
    byte1: u8,
    pkid: u16,
) -> Result<(), PacketError> {
    check_pkid(packet, pkid)?;
    write_fixed_header(out, byte1, 2);
    write_u16(out, pkid);
    Ok(())
}

/// Append a packet that is only a fixed header with remaining length 0.
pub(crate) fn encode_empty(out: &mut Vec<u8>, byte1: u8) {
    write_fixed_header(out, byte1, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_len(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        write_fixed_header(&mut out, 0x30, len);
        out.split_off(1)
    }

    #[test]
    fn remaining_length_round_trips_at_every_boundary() {
        for len in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_REMAINING_LENGTH,
        ] {
            let bytes = encode_len(len);
            assert_eq!(bytes.len(), remaining_length_len(len), "length of {len}");
            let mut buf = vec![0x30];
            buf.extend_from_slice(&bytes);
            let h = read_fixed_header(&buf).unwrap().unwrap();
            assert_eq!(h.remaining_len, len);
            assert_eq!(h.header_len, 1 + bytes.len());
        }
    }

    #[test]
    fn fifth_length_byte_is_refused_without_waiting_for_it() {
        assert_eq!(
            read_fixed_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(PacketError::RemainingLengthTooLong)
        );
    }

    #[test]
    fn unfinished_length_is_incomplete() {
        assert_eq!(read_fixed_header(&[]), Ok(None));
        assert_eq!(read_fixed_header(&[0x30]), Ok(None));
        assert_eq!(read_fixed_header(&[0x30, 0x80, 0x80]), Ok(None));
    }

    #[test]
    fn reader_reports_field_and_sizes_when_truncated() {
        // Length prefix 5, but only 2 bytes follow.
        let mut r = Reader::new("PUBLISH", &[0x00, 0x05, b'a', b'b']);
        assert_eq!(
            r.string("topic name"),
            Err(PacketError::Truncated {
                packet: "PUBLISH",
                field: "topic name",
                needed: 5,
                available: 2
            })
        );
    }

    #[test]
    fn reader_refuses_bad_utf8_and_nul() {
        let mut r = Reader::new("CONNECT", &[0x00, 0x02, 0xC3, 0x28]);
        assert_eq!(
            r.string("client identifier"),
            Err(PacketError::InvalidUtf8 {
                packet: "CONNECT",
                field: "client identifier"
            })
        );
        let mut r = Reader::new("CONNECT", &[0x00, 0x02, b'a', 0x00]);
        assert_eq!(
            r.string("client identifier"),
            Err(PacketError::NullCharacter {
                packet: "CONNECT",
                field: "client identifier"
            })
        );
    }

    #[test]
    fn leftover_bytes_name_the_last_field() {
        let err = read_pkid_only("PUBACK", &[0x00, 0x01, 0xFF]).unwrap_err();
        assert_eq!(
            err,
            PacketError::TrailingBytes {
                packet: "PUBACK",
                after: "packet identifier",
                count: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "PUBACK: 1 byte left over after the packet identifier"
        );
    }

    #[test]
    fn string_size_refuses_too_long_and_nul() {
        let long = "a".repeat(MAX_FIELD_LEN + 1);
        assert_eq!(
            string_size("PUBLISH", "topic name", &long),
            Err(PacketError::FieldTooLong {
                packet: "PUBLISH",
                field: "topic name",
                len: MAX_FIELD_LEN + 1
            })
        );
        assert_eq!(
            string_size("PUBLISH", "topic name", &long[1..]),
            Ok(MAX_FIELD_LEN + 2)
        );
        assert!(matches!(
            string_size("CONNECT", "user name", "a\0b"),
            Err(PacketError::NullCharacter { .. })
        ));
    }
}
