//! Plain MQTT with a UIoT Core device: connect, subscribe to the device's
//! downlink topic, publish one QoS 0 and one QoS 1 message, receive a
//! message, disconnect. Mirrors the C SDK's `samples/mqtt/mqtt_sample.c`
//! (subscribe `/PSN/DSN/set`, publish `{"test": "N"}` to `/PSN/DSN/upload`).
//!
//! ```text
//! cargo run --example mqtt -- [CONFIG] [--wait SECS] [--no-wait] [--echo]
//! ```
//! - `CONFIG`: the configuration file, default `etc/broker/uiot-demo.ini`
//!   (the demo device of `scripts/dev-broker.sh`).
//! - `--wait SECS`: how long to wait for the downlink (default 20).
//! - `--no-wait`: do not wait for the cloud (see the exit rule).
//! - `--echo`: publish to `/PSN/DSN/set` itself instead of `upload`, so the
//!   broker delivers both messages back (works on the local broker, and on
//!   UIoT Core when `set` is a publish-and-subscribe topic); then it waits
//!   for those two messages instead of a downlink.
//!
//! Prints `connected as CLIENT_ID`, `subscribed to TOPIC`, one `published
//! qos N to TOPIC: PAYLOAD` line per message, then the ready line
//! `ready: waiting up to SECS s for a message on TOPIC`, one `received
//! TOPIC: PAYLOAD` line per message and finally `done`.
//!
//! Exit rule (the same in every example): 0 once the scenario completed;
//! non-zero with the error on any failure. A wait for the cloud that times
//! out is a failure, unless `--no-wait` is given: then the example does not
//! wait at all (it takes only what already arrived), prints `timeout:
//! nothing arrived (--no-wait)` and exits 0.
//!
//! Trigger the downlink by hand on the local broker:
//! ```text
//! mosquitto_pub -h 127.0.0.1 -p PORT -u demo-cloud -P demo-cloud-pw \
//!   -t /demoproduct00001/demo-device-0001/set -m '{"led": 1}'
//! ```

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use uiot::config::Config;
use uiot::{Client, Options, QoS};

/// The command line: `[CONFIG] [--wait SECS] [--no-wait] [--echo]`.
struct Args {
    config: PathBuf,
    wait: Duration,
    no_wait: bool,
    echo: bool,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        config: PathBuf::from("etc/broker/uiot-demo.ini"),
        wait: Duration::from_secs(20),
        no_wait: false,
        echo: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--wait" => {
                let n = it.next().ok_or("--wait needs a number of seconds")?;
                args.wait = Duration::from_secs(n.parse()?);
            }
            "--no-wait" => args.no_wait = true,
            "--echo" => args.echo = true,
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown option {flag}; usage: mqtt [CONFIG] [--wait SECS] [--no-wait] [--echo]"
                )
                .into())
            }
            path => args.config = PathBuf::from(path),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = parse_args()?;

    // The configuration file holds the device's identity, its secret and
    // the broker; it is validated completely here.
    let config = Config::load(&args.config)?;
    let client = Client::connect(Options::from_config(&config)?)?;
    println!("connected as {}", client.options().client_id);

    // `client.topic("set")` is the device's topic `/PSN/DSN/set`.
    let downlink = client.topic("set");
    client.subscribe(&[(downlink.as_str(), QoS::AtLeastOnce)])?;
    println!("subscribed to {downlink}");

    let uplink = if args.echo {
        downlink.clone()
    } else {
        client.topic("upload")
    };
    for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce].into_iter().enumerate() {
        let payload = format!("{{\"test\": \"{n}\"}}");
        // QoS 0 returns once queued, QoS 1 once the broker sent its PUBACK.
        client.publish(&uplink, payload.as_bytes(), qos)?;
        println!("published qos {} to {uplink}: {payload}", qos.to_u8());
    }
    // Make sure the QoS 0 message has been written too.
    client.flush(Duration::from_secs(10))?;

    // With --echo we expect our two messages back, else one downlink.
    let expected = if args.echo { 2 } else { 1 };
    let messages = client.messages();
    let mut received = 0;
    if args.no_wait {
        while let Some(msg) = messages.try_recv() {
            print_message(&msg);
            received += 1;
        }
        if received < expected {
            println!("timeout: nothing arrived (--no-wait)");
        }
    } else {
        println!(
            "ready: waiting up to {} s for a message on {downlink}",
            args.wait.as_secs()
        );
        let deadline = Instant::now()
            .checked_add(args.wait)
            .ok_or("--wait is too large")?;
        while received < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match messages.recv_timeout(left) {
                Ok(msg) => {
                    print_message(&msg);
                    received += 1;
                }
                Err(uiot::Error::Timeout(_)) => {
                    client.disconnect()?;
                    return Err(format!(
                        "timeout: {received} of {expected} message(s) on {downlink} within {} s",
                        args.wait.as_secs()
                    )
                    .into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    // DISCONNECT after every QoS 1 acknowledgement is in.
    client.disconnect()?;
    println!("done");
    Ok(())
}

fn print_message(msg: &uiot::Message) {
    println!(
        "received {}: {}",
        msg.topic,
        String::from_utf8_lossy(&msg.payload)
    );
}
