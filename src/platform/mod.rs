//! UIoT Core platform rules: credentials, topics, limits.
//!
//! Owns: what UIoT Core requires of a device (ClientID `PSN.DSN`, UserName
//! `PSN|DSN|authmode`, keep-alive range, topic shapes, rate and size limits).
//! Must not touch: sockets, threads, the INI file format.

/// Smallest keep-alive the platform accepts, in seconds.
pub const MIN_KEEP_ALIVE: u16 = 30;
/// Largest keep-alive the platform accepts, in seconds.
pub const MAX_KEEP_ALIVE: u16 = 1200;
/// Largest MQTT packet the platform accepts, in bytes.
pub const MAX_PACKET: usize = 256 * 1024;
/// Longest topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;
/// Most slashes a topic may have.
pub const MAX_TOPIC_SLASHES: usize = 7;
/// Most active subscriptions per connection.
pub const MAX_SUBSCRIPTIONS: usize = 100;
/// Publishes per second per connection.
pub const PUBLISH_RATE: u32 = 30;
/// Bandwidth per connection, in KB/s.
pub const BANDWIDTH_KB: u32 = 1024;

mod identity;
mod limits;

pub(crate) use identity::check_shape;
pub use identity::{AuthMode, Identity};
pub use limits::Limits;
pub(crate) use limits::RateLimiter;
