//! Benchmark helper for scripts/bench.sh: downloads one firmware image with
//! `uiot::platform::ota::download` (what `uiot run` does) and prints the
//! path of the verified image; beside it the bench runs `curl -o` on the
//! same URL.
//!
//! ```text
//! cargo run --release --example bench_ota -- URL SIZE MD5 DIR
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use uiot::platform::ota::{self, Notice};

fn main() -> Result<(), Box<dyn Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [url, size, md5, dir] = a.as_slice() else {
        return Err("usage: bench_ota URL SIZE MD5 DIR".into());
    };
    let n = Notice::Update {
        module: "default".into(),
        version: "bench".into(),
        url: url.clone(),
        md5: md5.to_ascii_lowercase(),
        size: size.parse()?,
    };
    let image = ota::download(&n, &PathBuf::from(dir), &AtomicBool::new(false), |_| {})?;
    println!("{}", image.display());
    Ok(())
}
