//! UIoT Core: the platform's rules (credentials, topics, limits) and its
//! services on top of the [`Client`](crate::Client), one module each.
//!
//! Owns: what UIoT Core requires of a device (ClientID `PSN.DSN`, UserName
//! `PSN|DSN|authmode`, keep-alive range, topic shapes, rate and size
//! limits), its RetCodes ([`retcode`]), and the services on its system
//! topics: [`dynreg`] (dynamic registration), [`shadow`] (device shadow),
//! [`thing`] (thing model), [`ota`] (firmware upgrade). Broadcast topics (`/PSN/$broadcast/...`) are
//! plain subscriptions ([`Identity::broadcast_topic`]); the topic guard
//! refuses to publish to them.
//! Must not touch: sockets, the packet layer, the INI file format.

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

pub mod dynreg;
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "http")]
pub mod http;
mod identity;
mod limits;
pub mod ota;
pub mod retcode;
mod service;
pub mod shadow;
pub mod thing;
#[cfg(feature = "http")]
pub mod upload;

pub use service::DEFAULT_TIMEOUT;

pub(crate) use identity::check_shape;
pub use identity::{AuthMode, Identity};
pub use limits::Limits;
pub(crate) use limits::RateLimiter;
