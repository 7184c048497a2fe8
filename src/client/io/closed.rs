//! Why a connection ended, as a type: the I/O thread decides by the kind
//! (reconnect or stop, kicked or not), never by the text.
//!
//! Owns: [`Closed`] and how each kind becomes a caller's [`Error`].
//! Must not touch: sockets, the session, logging.

use std::fmt;
use std::time::Duration;

use crate::error::{cut, Error};
use crate::packet::PacketError;

/// Why the connection (or the client) ended.
#[derive(Debug, Clone)]
pub(crate) enum Closed {
    /// The application called `disconnect()` (or dropped the client).
    ByApplication,
    /// The broker closed the TCP connection. `after_large` is the size of
    /// a large PUBLISH written just before, which the broker may have
    /// refused as too big.
    ByBroker { after_large: Option<usize> },
    /// The broker sent bytes that are not valid MQTT.
    Malformed(PacketError),
    /// The broker broke the protocol with a valid packet (a second
    /// CONNACK, a QoS 2 flow, a SUBACK with the wrong number of codes...).
    Violation(String),
    /// No PINGRESP within this long.
    Dead(Duration),
    /// A socket or poll operation failed.
    Io(String),
    /// The first connection failed; the caller got the error itself.
    ConnectFailed(String),
    /// The application's disconnect gave up after shutdown_timeout.
    ShutdownTimeout,
}

impl Closed {
    /// Whether the client stops instead of reconnecting: the application
    /// asked for it, or the broker broke the protocol (reconnecting would
    /// only meet the same broker again).
    pub(crate) fn is_final(&self) -> bool {
        matches!(
            self,
            Closed::ByApplication
                | Closed::Malformed(_)
                | Closed::Violation(_)
                | Closed::ConnectFailed(_)
                | Closed::ShutdownTimeout
        )
    }

    /// The error a caller gets for an operation the end of the connection
    /// cut short (or that was tried afterwards).
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Closed::Malformed(e) => Error::Protocol(e.clone()),
            Closed::Violation(s) => Error::ProtocolViolation(s.clone()),
            other => Error::Disconnected(other.to_string()),
        }
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::ByApplication => write!(f, "disconnected by the application"),
            Closed::ByBroker { after_large: None } => {
                write!(f, "the broker closed the connection")
            }
            Closed::ByBroker {
                after_large: Some(n),
            } => write!(
                f,
                "the broker closed the connection right after a PUBLISH of {n} bytes: it may \
                 exceed the broker's packet limit (UIoT Core allows 256 KiB; some brokers \
                 less, e.g. rumqttd 20 KiB by default): lower [limits] max_packet or send \
                 smaller messages"
            ),
            Closed::Malformed(e) => {
                write!(f, "protocol error: the broker sent an invalid packet: {e}")
            }
            Closed::Violation(s) => write!(f, "protocol error: the broker {}", cut(s)),
            Closed::Dead(t) => write!(
                f,
                "no PINGRESP within {}: the connection is dead",
                crate::client::secs(*t)
            ),
            Closed::Io(s) => write!(f, "{s}"),
            Closed::ConnectFailed(s) => write!(f, "{s}"),
            Closed::ShutdownTimeout => write!(
                f,
                "disconnected by the application (shutdown_timeout passed)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_faults_are_final_and_typed() {
        let v = Closed::Violation("answered a clean-session CONNECT with session present".into());
        assert!(v.is_final());
        assert!(matches!(v.to_error(), Error::ProtocolViolation(_)));
        let m = Closed::Malformed(PacketError::ZeroPacketId { packet: "PUBACK" });
        assert!(matches!(m.to_error(), Error::Protocol(_)));
        let c = Closed::ByBroker { after_large: None };
        assert!(!c.is_final());
        assert!(matches!(c.to_error(), Error::Disconnected(_)));
        assert!(!Closed::Dead(Duration::from_secs(15)).is_final());
    }

    #[test]
    fn a_large_publish_before_the_close_is_named() {
        let c = Closed::ByBroker {
            after_large: Some(30_000),
        };
        let s = c.to_string();
        assert!(
            s.contains("30000 bytes") && s.contains("packet limit"),
            "{s}"
        );
    }
}
