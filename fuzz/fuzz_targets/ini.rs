//! Fuzz target `ini`: feed arbitrary text to the INI loader,
//! `uiot::config::Config::parse`, and render whatever it returns.
//!
//! Owns: nothing but this harness. Must not touch: the library's code.
//!
//! Bytes that are not UTF-8 are tried both as the loader would refuse them
//! (`Config::load` rejects non-UTF-8 files before parsing) and converted
//! lossily, so that every input exercises the parser.
//!
//! Run: `cargo +nightly fuzz run ini fuzz/corpus/ini` (see docs/fuzz.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use uiot::config::Config;

fn check(text: &str) {
    match Config::parse(text, "fuzz.ini") {
        Ok(config) => {
            // The effective configuration must render, and parse again.
            let effective = config.effective();
            let _ = Config::parse(&effective, "effective.ini");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(text) => check(text),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});
