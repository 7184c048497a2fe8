//! Helpers shared by the packet unit tests.
//!
//! Owns: decoding/encoding shorthands for `#[cfg(test)]` code only.
//! Must not touch: anything compiled into the library.

use super::{decode, Decoded, Packet, PacketError};

/// Decode exactly one whole packet at the start of `buf`.
pub(crate) fn one(buf: &[u8]) -> Result<(Packet, usize), PacketError> {
    match decode(buf, usize::MAX)? {
        Decoded::Packet { packet, len } => Ok((packet, len)),
        Decoded::Incomplete { needed } => panic!("incomplete, needs {needed}"),
    }
}

/// Encode `p`, which must be valid.
pub(crate) fn encoded(p: &Packet) -> Vec<u8> {
    let mut out = Vec::new();
    p.encode(&mut out).unwrap();
    out
}
