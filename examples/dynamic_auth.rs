//! Dynamic registration ("one secret per product"): the device knows only
//! its product's secret, obtains its own device secret once, keeps it in
//! `secret_file`, then logs in with it like any device. Mirrors the C SDK's
//! `samples/dynamic_auth/dynamic_auth_sample.c` (register, log in with the
//! new secret, publish `{"test": "0"}` to `/PSN/DSN/upload`), except that
//! the secret is saved (atomically, 0600): the platform issues it only once.
//!
//! ```text
//! cargo run --example dynamic_auth -- [CONFIG]
//! ```
//! - `CONFIG`: default `etc/broker/uiot-dyn-demo.ini`, the dynamic demo
//!   device of `scripts/dev-broker.sh` + `uiot-sim` (README, "The local
//!   cloud"). It needs `product_secret` and `secret_file`.
//!
//! Prints `registered now, secret saved in FILE` (or `registered before,
//! secret read from FILE` on later runs), `connected as CLIENT_ID`,
//! `published qos 1 to TOPIC: PAYLOAD` and `done`. Exit 0 once done,
//! non-zero with the error otherwise (a refused registration names the
//! RetCode and the operator's reset).

use std::error::Error;
use std::path::PathBuf;

use uiot::config::{Config, SecretSource};
use uiot::platform::dynreg::{register_config, Registered};
use uiot::{Client, Options, QoS};

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let path = match std::env::args().nth(1) {
        Some(flag) if flag.starts_with('-') => {
            return Err(format!("unknown option {flag}; usage: dynamic_auth [CONFIG]").into())
        }
        Some(p) => PathBuf::from(p),
        None => PathBuf::from("etc/broker/uiot-dyn-demo.ini"),
    };
    let config = Config::load(&path)?;
    let SecretSource::ProductSecret { secret_file, .. } = &config.device.secret else {
        return Err(format!(
            "{}: this example needs product_secret and secret_file in [device]",
            path.display()
        )
        .into());
    };

    // Step 1: register unless secret_file already holds the secret. This
    // logs in as PSN|DSN|2 with the product secret, asks on
    // /$system/PSN/DSN/password and saves the answer before returning.
    match register_config(&config)? {
        Registered::Now => println!("registered now, secret saved in {}", secret_file.display()),
        Registered::Before => println!(
            "registered before, secret read from {}",
            secret_file.display()
        ),
    }

    // Step 2: log in as PSN|DSN|1 with the saved secret (Options::from_config
    // reads it from secret_file) and use the device as usual.
    let client = Client::connect(Options::from_config(&config)?)?;
    println!("connected as {}", client.options().client_id);
    let topic = client.topic("upload");
    let payload = r#"{"test": "0"}"#;
    client.publish(&topic, payload.as_bytes(), QoS::AtLeastOnce)?;
    println!("published qos 1 to {topic}: {payload}");
    client.disconnect()?;
    println!("done");
    Ok(())
}
