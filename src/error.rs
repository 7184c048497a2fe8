//! The one error type of the library.
//!
//! Owns: `uiot::Error`, [`ConfigError`] and their `Display` texts (which say
//! what to fix), and [`cut`], which keeps quoted values short.
//! Must not touch: I/O, logging, process exit codes (the CLI maps variants to
//! sysexits codes itself). Depends on nothing of the crate but `packet`, so
//! every layer can use it without a cycle.

use std::fmt;

use crate::packet::{ConnectReturnCode, PacketError};

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// One line per problem, e.g.
    /// `uiot.ini: [connection] keep_alive = 10: must be 30..1200 seconds (UIoT Core refuses others)`.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

/// Longest quoted value in an error message, in characters.
pub const QUOTE_MAX: usize = 64;

/// `value` for quoting in a message: at most 64 characters ([`QUOTE_MAX`]), with
/// "... (N bytes)" when it was longer, so that a 1 MB value never becomes a
/// 1 MB log line.
pub fn cut(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(QUOTE_MAX) {
        None => std::borrow::Cow::Borrowed(value),
        Some((end, _)) => std::borrow::Cow::Owned(format!(
            "{}... ({} bytes)",
            value.get(..end).unwrap_or_default(),
            value.len()
        )),
    }
}

/// Shorthand for `std::result::Result<T, uiot::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, in variants a caller can act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; each problem names the file, section,
    /// key, value and the fix.
    Config(ConfigError),
    /// An input the caller named (a payload file, standard input, the secret
    /// or CA file) is missing, unreadable or not a regular file.
    Input {
        /// What was being read, e.g. "reading /tmp/payload.bin".
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
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
    /// The peer sent bytes that are not valid MQTT 3.1.1.
    Protocol(PacketError),
    /// The broker broke the protocol with well-formed packets (a second
    /// CONNACK, a QoS 2 flow, session present on a clean session, ...); the
    /// text says what it did. The client stops instead of reconnecting.
    ProtocolViolation(String),
    /// Something did not happen in time; the text says what.
    Timeout(String),
    /// A platform limit would be exceeded (packet size, subscriptions, ...),
    /// or an input is larger than uiot accepts.
    Limit(String),
    /// An argument given to the library is out of range (e.g. a `Duration`
    /// too large to add to the clock, an empty topic); the text names it.
    InvalidArgument(String),
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
    /// UIoT Core answered a request (registration, shadow, thing model)
    /// with a non-zero RetCode. [`crate::platform::retcode`] tells which
    /// codes are worth a retry.
    Platform {
        /// The request, e.g. "shadow update".
        request: String,
        /// The platform's RetCode.
        code: i64,
        /// What the code means and what to do.
        detail: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Input { context, source } => write!(f, "{context}: {source}"),
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
            Error::ProtocolViolation(s) => write!(f, "protocol error: the broker {s}"),
            Error::Timeout(s) => write!(f, "timed out: {s}"),
            Error::Limit(s) => write!(f, "platform limit: {s}"),
            Error::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            Error::InvalidTopic { topic, reason } => {
                write!(f, "invalid topic {:?}: {reason}", cut(topic))
            }
            Error::TopicDenied { topic, reason } => {
                write!(f, "topic {:?} denied: {reason}", cut(topic))
            }
            Error::SubscribeRefused(filter) => write!(
                f,
                "the broker refused the subscription to {:?} (SUBACK 0x80): \
                 check the topic's subscribe permission in the UIoT Core console",
                cut(filter)
            ),
            Error::Kicked => write!(
                f,
                "another device is using the same credentials and this one was disconnected; \
                 give every device its own DeviceSN"
            ),
            Error::Disconnected(s) => write!(f, "disconnected: {s}"),
            Error::Platform {
                request,
                code,
                detail,
            } => write!(
                f,
                "{request} refused by UIoT Core: RetCode {code}, {detail}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Input { source, .. } => Some(source),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_values_and_cuts_long_ones() {
        assert_eq!(cut("cn-sh2"), "cn-sh2");
        let long = "x".repeat(1_000_000);
        let c = cut(&long);
        assert!(c.len() < 100, "{c}");
        assert!(c.ends_with("... (1000000 bytes)"), "{c}");
        let wide = "\u{e9}".repeat(100);
        assert!(cut(&wide).starts_with(&"\u{e9}".repeat(QUOTE_MAX)));
    }
}
