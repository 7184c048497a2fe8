//! Publisher benchmark through the library API (used by scripts/bench.sh).
//!
//! `cargo run --release --example bench_pub -- PORT QOS COUNT SIZE [rtt]`
//! publishes COUNT messages of SIZE bytes to 127.0.0.1:PORT as an anonymous
//! client with the limits off, and prints `msgs/s` (after every QoS 1 PUBACK)
//! or, with `rtt`, the median and p99 of blocking QoS 1 round trips.

use std::time::{Duration, Instant};

use uiot::{Client, Limits, Options, QoS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let port: u16 = arg(0, "1883").parse()?;
    let qos = QoS::from_u8(arg(1, "0").parse()?).ok_or("QoS must be 0 or 1")?;
    let count: usize = arg(2, "100000").parse()?;
    let size: usize = arg(3, "64").parse()?;
    let rtt = arg(4, "") == "rtt";

    let mut options = Options::new("127.0.0.1", port, format!("bench-{}", std::process::id()));
    if let (Ok(user), Ok(pass)) = (std::env::var("BENCH_USER"), std::env::var("BENCH_PASS")) {
        options.username = Some(user);
        options.password = Some(pass);
    }
    options.limits = Limits::unlimited();
    let topic = std::env::var("BENCH_TOPIC").unwrap_or_else(|_| "bench/lib".into());
    let client = Client::connect(options)?;
    let payload = vec![b'x'; size];

    if rtt {
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let t = Instant::now();
            client.publish(&topic, &payload, QoS::AtLeastOnce)?;
            times.push(t.elapsed());
        }
        times.sort();
        let pick = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "rtt_median_us {:.1} rtt_p99_us {:.1}",
            pick(0.5).as_secs_f64() * 1e6,
            pick(0.99).as_secs_f64() * 1e6
        );
    } else {
        let t = Instant::now();
        for _ in 0..count {
            drop(client.start_publish(&topic, payload.clone(), qos)?);
        }
        client.flush(Duration::from_secs(120))?;
        let secs = t.elapsed().as_secs_f64();
        println!("msgs_per_s {:.0} seconds {:.3}", count as f64 / secs, secs);
    }
    client.disconnect()?;
    Ok(())
}
