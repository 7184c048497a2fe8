//! PINGREQ and PINGRESP: a fixed header and nothing else.
//!
//! Owns: the wire format of the keep-alive packets.
//! Must not touch: keep-alive timing (the client's timer thread), I/O.

use super::codec;
use super::PacketError;

/// Read a PINGREQ body (must be empty).
pub(crate) fn read_pingreq(body: &[u8]) -> Result<(), PacketError> {
    codec::read_empty("PINGREQ", body)
}

/// Read a PINGRESP body (must be empty).
pub(crate) fn read_pingresp(body: &[u8]) -> Result<(), PacketError> {
    codec::read_empty("PINGRESP", body)
}

/// Append a PINGREQ to `out`.
pub(crate) fn encode_pingreq(out: &mut Vec<u8>) {
    codec::encode_empty(out, codec::PINGREQ << 4);
}

/// Append a PINGRESP to `out`.
pub(crate) fn encode_pingresp(out: &mut Vec<u8>) {
    codec::encode_empty(out, codec::PINGRESP << 4);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{decode, Decoded, Packet};

    #[test]
    fn pingreq_and_pingresp_back_to_back() {
        let bytes = [
            0xC0, 0x00, // PINGREQ
            0xD0, 0x00, // PINGRESP
        ];
        assert_eq!(
            decode(&bytes, 2),
            Ok(Decoded::Packet {
                packet: Packet::PingReq,
                len: 2
            })
        );
        assert_eq!(
            decode(&bytes[2..], 2),
            Ok(Decoded::Packet {
                packet: Packet::PingResp,
                len: 2
            })
        );
        let mut out = Vec::new();
        encode_pingreq(&mut out);
        encode_pingresp(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn ping_with_a_body_is_refused() {
        assert_eq!(
            decode(&[0xC0, 0x01, 0x00], 100),
            Err(PacketError::WrongRemainingLength {
                packet: "PINGREQ",
                expected: 0,
                actual: 1
            })
        );
        // Refused at once, without waiting for the declared body.
        assert_eq!(
            decode(&[0xD0, 0x05], 100),
            Err(PacketError::WrongRemainingLength {
                packet: "PINGRESP",
                expected: 0,
                actual: 5
            })
        );
        // The body readers refuse it too, if called on their own.
        assert_eq!(
            read_pingreq(&[0]),
            Err(PacketError::TrailingBytes {
                packet: "PINGREQ",
                after: "fixed header",
                count: 1
            })
        );
        assert_eq!(read_pingresp(&[]), Ok(()));
    }

    #[test]
    fn ping_with_flags_is_refused() {
        assert_eq!(
            decode(&[0xC8, 0x00], 100),
            Err(PacketError::BadFlags {
                packet: "PINGREQ",
                flags: 8,
                expected: 0
            })
        );
    }
}
