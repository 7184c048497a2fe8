//! Fuzz target `decode`: feed arbitrary bytes to `uiot::packet::decode` with
//! a few maximum sizes, re-encode whatever decodes, and ask `not_mqtt` about
//! the same bytes.
//!
//! Owns: nothing but this harness. Must not touch: the library's code.
//!
//! Run: `cargo +nightly fuzz run decode fuzz/corpus/decode` (see docs/fuzz.md).

#![no_main]
#![allow(clippy::expect_used, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use uiot::packet::{decode, not_mqtt, Decoded};
use uiot::platform::MAX_PACKET;

fuzz_target!(|data: &[u8]| {
    let _ = not_mqtt(data);
    for max in [0, 2, 64, MAX_PACKET, usize::MAX] {
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
