//! What callers get back: messages, connection events, queue counters and
//! the token of a pipelined publish.
//!
//! Owns: [`Message`], [`Event`], [`QueueStats`], [`PublishToken`].
//! Must not touch: threads, sockets, the session.

use std::sync::mpsc::RecvTimeoutError;

use super::reply::Receiver;
use std::time::Duration;

use super::{secs, QoS};
use crate::error::Error;

/// A message from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic it was published to.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// QoS it was delivered with.
    pub qos: QoS,
    /// The broker's DUP flag (a possible redelivery; uiot already drops the
    /// redeliveries it can recognise).
    pub dup: bool,
}

/// Something that happened to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Connected (CONNACK accepted).
    Connected {
        /// Whether the broker kept a session for this client.
        session_present: bool,
    },
    /// The connection ended; the text says why. With reconnect enabled the
    /// client keeps trying (with back-off) and reports `Connected` again.
    Disconnected(String),
    /// The broker closed young connections repeatedly: another device is
    /// using this device's credentials. uiot backs off to the longest
    /// reconnect interval instead of fighting over the login.
    Kicked,
    /// A message was dropped because the queue was full (`on_full`
    /// drop_oldest or drop_newest); the count of drops so far.
    Dropped(u64),
}

/// Counters of the outgoing queue (see [`Client::queue_stats`](super::Client::queue_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages dropped because the queue was full.
    pub dropped: u64,
    /// With `[queue] dir`: messages appended to the on-disk queue since start.
    pub stored: u64,
    /// With `[queue] dir`: bytes written to disk since start (flash wear).
    pub bytes_written: u64,
    /// With `[queue] dir`: messages on disk awaiting their PUBACK.
    pub pending: usize,
}

/// Result of a pipelined publish: wait for it, or drop it and call
/// [`Client::flush`](super::Client::flush) later.
#[derive(Debug)]
pub struct PublishToken {
    pub(super) rx: Option<Receiver<Result<(), Error>>>,
}

impl PublishToken {
    /// Wait until the message is acknowledged (QoS 1) or queued (QoS 0).
    pub fn wait(self) -> Result<(), Error> {
        match self.rx {
            None => Ok(()),
            Some(rx) => rx
                .recv()
                .unwrap_or_else(|_| Err(Error::Disconnected("client closed".into()))),
        }
    }

    /// Like [`PublishToken::wait`], giving up after `timeout`.
    pub fn wait_timeout(self, timeout: Duration) -> Result<(), Error> {
        match self.rx {
            None => Ok(()),
            Some(rx) => match rx.recv_timeout(timeout) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => Err(Error::Timeout(format!(
                    "no PUBACK within {}",
                    secs(timeout)
                ))),
                Err(RecvTimeoutError::Disconnected) => {
                    Err(Error::Disconnected("client closed".into()))
                }
            },
        }
    }
}
