//! Shared support for the integration tests: a real Mosquitto broker started
//! per test with a profile that mimics UIoT Core, an observer playing "the
//! cloud", and a scripted fake MQTT peer working on raw bytes.
//!
//! Owns: starting/stopping test brokers and Mosquitto's command-line clients,
//! the temporary directories they use, and the fake peer's frame reader.
//! Must not touch: the library's internals (no `uiot::packet` here: the fake
//! peer must stay independent of the code it tests), any network address
//! other than 127.0.0.1, and files outside its own temporary directories
//! (apart from reading `etc/broker/`).
//!
//! Include it from a test file with `mod support;`. Every test crate uses a
//! different subset, hence the `allow`s below.
//!
//! ```ignore
//! mod support;
//! #[test]
//! fn uploads_reach_the_cloud() {
//!     let Some(broker) = support::broker() else { return }; // SKIP when Mosquitto is missing
//!     let cloud = broker.observer("#");
//!     let dev = broker.device(0);
//!     // ... connect `dev` and publish to /PSN/DSN/upload ...
//!     let got = cloud.wait_for(1, std::time::Duration::from_secs(5));
//!     assert_eq!(got.len(), 1);
//! }
//! ```

#![allow(dead_code, unused_imports)]

pub mod broker;
pub mod cli;
pub mod daemon;
pub mod observer;
pub mod peer;
pub mod proxy;
pub mod sim;
mod tools;

pub use broker::{Broker, BrokerConfig, Device, DynamicDevice};
pub use observer::{Observer, Received};
pub use peer::{FakePeer, Frame, PeerError, Step};
pub use proxy::Proxy;
pub use sim::Sim;
pub use tools::TempDir;

/// Starts a broker with the default profile and devices, or returns `None`
/// (after printing a SKIP line) when Mosquitto is not installed and the
/// environment variable `CI` is not `true`. With `CI=true` a missing
/// Mosquitto is a hard failure, so CI cannot pass by skipping everything.
pub fn broker() -> Option<Broker> {
    Broker::try_start()
}

/// Like [`broker`], with a custom configuration.
pub fn broker_with(config: BrokerConfig) -> Option<Broker> {
    Broker::try_start_with(config)
}
