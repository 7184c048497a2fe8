//! A smart bracelet counting steps in its shadow, as the C SDK's
//! `samples/shadow/smart_bracelet_walk_step_shadow_sample.c`: get the
//! shadow, then add 5 steps and report `walk_step` every interval until the
//! day's goal (100) is reached. A desired `walk_step` set by the app (say,
//! a correction from the phone) is applied at once: the count takes the
//! desired value, and the device clears the desired value while reporting
//! it, so the cloud's document agrees with the bracelet.
//!
//! ```text
//! cargo run --example smart_bracelet -- [CONFIG] [--interval MS] [--goal N]
//! ```
//! - `CONFIG`: default `etc/broker/uiot-demo.ini` (with `uiot-sim` beside
//!   the broker: README, "The local cloud"). Try, in uiot-sim:
//!   `desired demoproduct00001 demo-device-0001 {"walk_step": 60}`.
//! - `--interval MS`: between reports (default 3000, as the SDK).
//! - `--goal N`: steps of the day (default 100).
//!
//! Prints `ready: ...` after the first get, `walk_step N (version V)` per
//! report, `desired walk_step N applied (version V)`, then `today's goal is
//! completed!` and `done`. Exit 0 then, non-zero with the error.

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uiot::config::Config;
use uiot::platform::shadow::Shadow;
use uiot::{Client, Options};

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut config = PathBuf::from("etc/broker/uiot-demo.ini");
    let mut interval = Duration::from_millis(3000);
    let mut goal: u64 = 100;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |what: &str| -> Result<u64, Box<dyn Error>> {
            Ok(it.next().ok_or(format!("{what} needs a number"))?.parse()?)
        };
        match arg.as_str() {
            "--interval" => interval = Duration::from_millis(number("--interval")?),
            "--goal" => goal = number("--goal")?,
            flag if flag.starts_with('-') => {
                return Err(format!(
                "unknown option {flag}; usage: smart_bracelet [CONFIG] [--interval MS] [--goal N]"
            )
                .into())
            }
            path => config = PathBuf::from(path),
        }
    }
    let config = Config::load(&config)?;
    let client = Client::connect(Options::from_config(&config)?)?;
    let shadow = Shadow::new(&client)?;

    // Start from what the cloud has: the last reported count, or a desired
    // one set while the bracelet was off.
    let doc = shadow.get()?;
    let mut steps = doc
        .reported
        .get("walk_step")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if let Some(want) = doc.desired.get("walk_step").and_then(Value::as_u64) {
        steps = want;
        let v = shadow.clear_desired(Some(&json!({"walk_step": steps})))?;
        println!("desired walk_step {steps} applied (version {v})");
    }
    println!(
        "ready: walk_step {steps} at version {}, goal {goal}",
        doc.version
    );

    while steps < goal {
        steps += 5;
        let v = shadow.report(&json!({"walk_step": steps}))?;
        println!("walk_step {steps} (version {v})");
        // Until the next report: apply desired values the app pushes.
        let until = Instant::now() + interval;
        while let Some(d) = shadow.desired_timeout(until.saturating_duration_since(Instant::now()))
        {
            if let Some(want) = d.state.get("walk_step").and_then(Value::as_u64) {
                steps = want;
                // Clear Desired and report the value taken, in one update.
                let v = shadow.clear_desired(Some(&json!({"walk_step": steps})))?;
                println!("desired walk_step {steps} applied (version {v})");
            }
        }
    }
    println!("today's goal is completed!");
    client.disconnect()?;
    println!("done");
    Ok(())
}
