//! The one error type of the library.
//!
//! Owns: `uiot::Error` and its `Display` texts (which say what to fix).
//! Must not touch: I/O, logging, process exit codes (the CLI maps variants to
//! sysexits codes itself).

use std::fmt;

use crate::config::ConfigError;
use crate::packet::{ConnectReturnCode, PacketError};

/// Shorthand for `std::result::Result<T, uiot::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, in variants a caller can act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; each problem names the file, section,
    /// key, value and the fix.
    Config(ConfigError),
    /// An I/O error, with what uiot was doing when it happened.
    Io {
        /// What was being done, e.g. "reading /etc/uiot/uiot.ini".
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The broker could not be reached (DNS, connection refused, no route,
    /// or nothing within `connect_timeout`).
    Unreachable(String),
    /// TLS set-up or handshake failed; the text says what to check.
    Tls(String),
    /// The broker refused the connection with this CONNACK code.
    Refused(ConnectReturnCode),
    /// The peer sent bytes that are not valid MQTT 3.1.1, or broke the protocol.
    Protocol(PacketError),
    /// Something did not happen in time; the text says what.
    Timeout(String),
    /// A platform limit would be exceeded (packet size, subscriptions, ...).
    Limit(String),
    /// The topic or filter is not valid MQTT (e.g. a wildcard in a publish
    /// topic, `#` not last).
    InvalidTopic {
        /// The topic or filter.
        topic: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The topic is not one this device may use on UIoT Core.
    TopicDenied {
        /// The topic or filter that was refused.
        topic: String,
        /// Why it was refused.
        reason: String,
    },
    /// The broker refused a subscription (SUBACK return code 0x80).
    SubscribeRefused(String),
    /// Another device logged in with the same credentials and this one was
    /// disconnected.
    Kicked,
    /// The client was disconnected or is shutting down.
    Disconnected(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Unreachable(s) => write!(f, "broker unreachable: {s}"),
            Error::Tls(s) => write!(f, "TLS: {s}"),
            Error::Refused(code) => write!(
                f,
                "the broker refused the connection: {} ({})",
                code.description(),
                code.advice()
            ),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Timeout(s) => write!(f, "timed out: {s}"),
            Error::Limit(s) => write!(f, "platform limit: {s}"),
            Error::InvalidTopic { topic, reason } => write!(f, "invalid topic {topic:?}: {reason}"),
            Error::TopicDenied { topic, reason } => write!(f, "topic {topic:?} denied: {reason}"),
            Error::SubscribeRefused(filter) => write!(
                f,
                "the broker refused the subscription to {filter:?} (SUBACK 0x80): \
                 check the topic's subscribe permission in the UIoT Core console"
            ),
            Error::Kicked => write!(
                f,
                "another device is using the same credentials and this one was disconnected; \
                 give every device its own DeviceSN"
            ),
            Error::Disconnected(s) => write!(f, "disconnected: {s}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Protocol(e) => Some(e),
            Error::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PacketError> for Error {
    fn from(e: PacketError) -> Self {
        Error::Protocol(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
