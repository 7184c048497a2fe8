//! Platform-service round trips through the library API (used by
//! scripts/bench.sh, against `uiot-sim` on a local broker).
//!
//! Owns: the shadow-report and property-post rows of the benchmark table
//! (docs/bench.md).
//! Must not touch: the library itself; it measures, it does not tune.
//!
//! `bench_platform PORT COUNT` logs in on 127.0.0.1:PORT as the device
//! `BENCH_PSN`.`BENCH_DSN` (default `benchproduct0001`.`bench-device-01`;
//! password `BENCH_PASS`, default `x`, for a broker that takes anyone) with
//! the limits off (the platform's 30 publishes/s would pace the requests),
//! then times COUNT blocking `Shadow::report` calls (update, the
//! simulator's `reply`, the version kept) and COUNT blocking `Thing::post`
//! calls (post, `post_reply` matched by RequestID), one after another, after
//! 20 untimed warm-up calls of each. Prints
//! `shadow_report_median_us M shadow_report_p99_us P` and
//! `property_post_median_us M property_post_p99_us P` (nearest rank).

// A benchmark tool, not library code: indexing into the sorted times it
// collected itself, and the rank cast of a bounded float, are fine here (see Cargo.toml's [lints]).
#![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::error::Error;
use std::time::{Duration, Instant};

use serde_json::json;
use uiot::platform::shadow::Shadow;
use uiot::platform::thing::Thing;
use uiot::{Client, Identity, Limits, Options};

/// Calls before the timed ones (connection, dispatchers, caches warm).
const WARM_UP: u32 = 20;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(port), Some(count)) = (args.first(), args.get(1)) else {
        return Err("usage: bench_platform PORT COUNT".into());
    };
    let port: u16 = port.parse()?;
    let count: u32 = count.parse()?;
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let id = Identity::new(
        env("BENCH_PSN", "benchproduct0001"),
        env("BENCH_DSN", "bench-device-01"),
    );
    let mut options = Options::device("127.0.0.1", port, id, env("BENCH_PASS", "x"));
    options.limits = Limits::unlimited();
    let client = Client::connect(options)?;
    let timeout = Duration::from_secs(5);

    let shadow = Shadow::with_timeout(&client, timeout)?;
    shadow.get()?;
    let mut n = 0u64;
    let times = timed(count, || {
        n += 1;
        shadow.report(&json!({ "counter": n })).map(|_| ())
    })?;
    report("shadow_report", times);

    let thing = Thing::with_timeout(&client, timeout)?;
    let mut n = 0u64;
    let times = timed(count, || {
        n += 1;
        thing.post(&json!({ "counter": n }))
    })?;
    report("property_post", times);

    client.disconnect()?;
    Ok(())
}

/// Runs `call` WARM_UP times, then `count` times timing each.
fn timed(
    count: u32,
    mut call: impl FnMut() -> Result<(), uiot::Error>,
) -> Result<Vec<Duration>, uiot::Error> {
    for _ in 0..WARM_UP {
        call()?;
    }
    let mut times = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let start = Instant::now();
        call()?;
        times.push(start.elapsed());
    }
    Ok(times)
}

/// Prints `NAME_median_us M NAME_p99_us P` (nearest rank) of the times.
fn report(name: &str, mut times: Vec<Duration>) {
    if times.is_empty() {
        println!("{name}_median_us 0 {name}_p99_us 0");
        return;
    }
    times.sort();
    let rank = |q: f64| {
        let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1e6
    };
    println!(
        "{name}_median_us {:.1} {name}_p99_us {:.1}",
        rank(0.5),
        rank(0.99)
    );
}
