//! # uiot: a blocking MQTT device client for UCloud's UIoT Core
//!
//! uiot connects Linux IoT boards (Raspberry Pi, OpenWrt routers, embedded
//! Linux images) to UIoT Core over MQTT 3.1.1 on TCP or TLS. It has a small,
//! synchronous API: no async runtime, one I/O thread that owns the socket, one
//! timer thread that keeps the deadlines, and a cloneable handle for callers.
//!
//! Layers, each in its own module:
//! - [`packet`]: bytes <-> MQTT packets, strict, no I/O.
//! - [`config`]: the INI file, validated completely at load.
//! - [`platform`]: UIoT Core rules: credentials, topics, limits.
//! - `transport` (crate-private): TCP (and TLS) streams to the broker.
//! - [`client`]: the I/O and timer threads and the public [`Client`].
//! - [`Error`]: the one error type, whose messages say what to fix.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
mod error;
pub mod packet;
pub mod platform;
mod transport;

pub use client::{
    Client, Event, Message, Messages, OnFull, Options, PublishToken, QoS, QueueStats, WeakClient,
};
pub use error::{cut, ConfigError, Error, Result, QUOTE_MAX};
pub use platform::{Identity, Limits};
#[cfg(feature = "tls")]
pub use transport::UIOT_CORE_CA_PEM;
pub use transport::{TlsOptions, TLS_AVAILABLE};
