//! The thing model, as the C SDK's `samples/dev_model/dev_model_sample.c`
//! does it: post `humidity` and `temperature` 20 times; post the event
//! `high_temp` whenever the humidity reading (with its correction) reaches
//! 80; answer the command `set_temp_correction` (input `temp_correction`,
//! -5..5; output `effect_temp_correction` and `correction_result` 0 when
//! taken, 1 when out of range), which shifts every later reading; and
//! answer property sets with RetCode 0.
//!
//! ```text
//! cargo run --example thing_model -- [CONFIG] [--count N] [--interval MS] [--wait SECS] [--no-wait]
//! ```
//! - `CONFIG`: default `etc/broker/uiot-demo.ini` (with `uiot-sim` beside
//!   the broker: README, "The local cloud").
//! - `--count N` posts (default 20), one every `--interval MS` (default
//!   2000, as the SDK).
//! - `--wait SECS`: after the posts, how long to wait for a command if none
//!   came yet (default 60, as the SDK). `--no-wait`: do not wait.
//!
//! Prints `ready: ...` once subscribed, then `post ...`, `event ...`,
//! `command ...` and `set ...` lines, and `done`. Try, with uiot-sim:
//! `command demoproduct00001 demo-device-0001 set_temp_correction {"temp_correction": 3}`.
//! Exit rule (as in every example): 0 once done; a wait for the cloud that
//! times out is a failure unless `--no-wait` is given.

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uiot::config::Config;
use uiot::platform::thing::{Command, EventKind, Thing, ThingEvent};
use uiot::{Client, Options};

struct Args {
    config: PathBuf,
    count: u32,
    interval: Duration,
    wait: Duration,
    no_wait: bool,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut a = Args {
        config: PathBuf::from("etc/broker/uiot-demo.ini"),
        count: 20,
        interval: Duration::from_millis(2000),
        wait: Duration::from_secs(60),
        no_wait: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |what: &str| -> Result<u64, Box<dyn Error>> {
            Ok(it.next().ok_or(format!("{what} needs a number"))?.parse()?)
        };
        match arg.as_str() {
            "--count" => a.count = u32::try_from(number("--count")?)?,
            "--interval" => a.interval = Duration::from_millis(number("--interval")?),
            "--wait" => a.wait = Duration::from_secs(number("--wait")?),
            "--no-wait" => a.no_wait = true,
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option {flag}; usage: thing_model [CONFIG] [--count N] [--interval MS] [--wait SECS] [--no-wait]").into())
            }
            path => a.config = PathBuf::from(path),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = parse_args()?;
    let config = Config::load(&args.config)?;
    let client = Client::connect(Options::from_config(&config)?)?;
    // Subscribes to the replies, property/set and command.
    let thing = Thing::new(&client)?;
    println!(
        "ready: connected as {}, waiting for commands between posts",
        client.options().client_id
    );

    let mut correction: i64 = 0;
    let mut commands = 0;
    for i in 0..i64::from(args.count) {
        let humidity = i * 5 + correction;
        // Each value goes out wrapped: {"humidity": {"Value": 5}, ...}.
        thing.post(&json!({"humidity": humidity, "temperature": i * 3}))?;
        println!("post humidity {humidity} temperature {}", i * 3);
        if humidity >= 80 {
            thing.post_event(
                "high_temp",
                &json!({"temperature": humidity}),
                EventKind::Warning,
            )?;
            println!("event high_temp temperature {humidity}");
        }
        // Between posts: answer what the cloud asks.
        let until = Instant::now() + args.interval;
        while let Some(event) = thing.recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            commands += handle(event, &mut correction)?;
        }
    }
    if commands == 0 && !args.no_wait {
        println!(
            "ready: waiting up to {} s for a command",
            args.wait.as_secs()
        );
        match thing.recv_timeout(args.wait) {
            Some(event) => {
                handle(event, &mut correction)?;
            }
            None => {
                return Err(format!("timeout: no command within {} s", args.wait.as_secs()).into())
            }
        }
    }
    client.disconnect()?;
    println!("done");
    Ok(())
}

/// Answers one request of the cloud; returns 1 for a command.
fn handle(event: ThingEvent, correction: &mut i64) -> Result<u32, Box<dyn Error>> {
    match event {
        ThingEvent::Command(c) => {
            command(c, correction)?;
            Ok(1)
        }
        ThingEvent::PropertySet(s) => {
            println!("set {}", Value::Object(s.properties.clone()));
            s.reply(0)?;
            Ok(0)
        }
        // Kinds a later uiot may add: dropping one answers it with an error.
        _ => Ok(0),
    }
}

fn command(c: Command, correction: &mut i64) -> Result<(), Box<dyn Error>> {
    if c.identifier != "set_temp_correction" {
        println!("command {} unknown: answered 100038", c.identifier);
        c.reply(100038, &json!({}))?;
        return Ok(());
    }
    let asked = c.input.get("temp_correction").and_then(Value::as_i64);
    let result = match asked {
        Some(t) if (-5..=5).contains(&t) => {
            *correction = t;
            0
        }
        _ => 1,
    };
    println!("command set_temp_correction {asked:?}: correction now {correction}, result {result}");
    c.reply(
        0,
        &json!({"effect_temp_correction": *correction, "correction_result": result}),
    )?;
    Ok(())
}
