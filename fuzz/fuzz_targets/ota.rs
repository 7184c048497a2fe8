//! Fuzz target `ota`: arbitrary bytes as an `ota/downstream` message,
//! through `uiot::platform::ota::parse_downstream`, and what it accepts
//! checked against the rules it promises (module and version of 1..32
//! characters, an MD5 of 32 lowercase hex digits, a Size up to MAX_SIZE,
//! an http(s) URL).
//!
//! Owns: nothing but this harness. Must not touch: the library's code.
//!
//! Run: `cargo +nightly fuzz run ota fuzz/corpus/ota` (see docs/fuzz.md).

#![no_main]
#![allow(clippy::panic)]

use libfuzzer_sys::fuzz_target;
use uiot::platform::ota::{parse_downstream, Notice, MAX_NAME, MAX_SIZE};
use uiot::{Message, QoS};

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= MAX_NAME
}

fuzz_target!(|data: &[u8]| {
    let msg = Message {
        topic: "/$system/fuzzproduct00001/fuzzdevice0001/ota/downstream".into(),
        payload: data.to_vec(),
        qos: QoS::AtLeastOnce,
        dup: false,
    };
    match parse_downstream(&msg) {
        None => {}
        Some(Notice::Update { module, version, url, md5, size }) => {
            assert!(name_ok(&module) && name_ok(&version), "{module:?} {version:?}");
            assert!(url.starts_with("http://") || url.starts_with("https://"), "{url:?}");
            assert!(md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{md5:?}");
            assert!(size <= MAX_SIZE, "{size}");
        }
        Some(Notice::Cancel { module, version }) => {
            assert!(name_ok(&module) && name_ok(&version), "{module:?} {version:?}");
        }
    }
});
