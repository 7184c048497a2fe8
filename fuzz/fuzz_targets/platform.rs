//! Fuzz target `platform`: one downstream cloud message for the platform
//! services (shadow, thing model, dynamic registration), through
//! `uiot::platform::fuzz::message`: the first byte picks the message type
//! (and for the shadow, which request waits), the rest is the payload.
//!
//! Owns: nothing but this harness. Must not touch: the library's code.
//!
//! Run: `cargo +nightly fuzz run platform fuzz/corpus/platform` (see docs/fuzz.md).

#![no_main]
#![allow(clippy::panic)]

use libfuzzer_sys::fuzz_target;
use uiot::platform::fuzz::{message, Outcome, TYPES};

fuzz_target!(|data: &[u8]| {
    let outcome = message(data);
    let Some(selector) = data.first().map(|b| usize::from(*b)) else {
        assert_eq!(outcome, Outcome::Dropped);
        return;
    };
    let kind = TYPES[selector % TYPES.len()];
    let shadow_waits = selector / TYPES.len() % 3 != 0;
    match &outcome {
        // Only a request that waits can be answered.
        Outcome::Answered(_) if kind.starts_with("shadow/") && !shadow_waits => {
            panic!("{kind}: answered with no request waiting: {outcome:?}")
        }
        // Replies are never handed to the application.
        Outcome::HandedOver if kind.ends_with("_reply") && kind != "shadow/get_reply" => {
            panic!("{kind}: a reply handed over: {outcome:?}")
        }
        _ => {}
    }
});
