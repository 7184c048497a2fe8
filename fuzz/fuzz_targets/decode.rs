//! Fuzz target `decode`: feed arbitrary bytes to `uiot::packet::decode` with
//! a few maximum sizes, and re-encode whatever decodes.
//!
//! Owns: nothing but this harness. Must not touch: the library's code.
//!
//! Run (stable toolchain): `RUSTC_BOOTSTRAP=1 cargo fuzz run decode`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use uiot::packet::{decode, Decoded, DEFAULT_MAX_PACKET};

fuzz_target!(|data: &[u8]| {
    for max in [0, 2, 64, DEFAULT_MAX_PACKET, usize::MAX] {
        match decode(data, max) {
            Ok(Decoded::Packet { packet, len }) => {
                assert!(len <= data.len() && len <= max, "len {len} out of bounds");
                // Whatever decodes must encode, and decode back to itself.
                let mut out = Vec::new();
                packet
                    .encode(&mut out)
                    .expect("a decoded packet must re-encode");
                assert_eq!(packet.encoded_len(), Ok(out.len()));
                match decode(&out, usize::MAX) {
                    Ok(Decoded::Packet { packet: again, len }) => {
                        assert_eq!(again, packet);
                        assert_eq!(len, out.len());
                    }
                    other => panic!("re-encoded {packet:?} decodes as {other:?}"),
                }
                let _ = packet.summary();
            }
            Ok(Decoded::Incomplete { needed }) => assert!(needed >= 1),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
