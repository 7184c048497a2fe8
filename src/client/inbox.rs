//! What the broker delivers, as the application takes it: the message
//! queue (with PUBACK on take) and the event queue.
//!
//! Owns: [`Messages`] and [`Events`].
//! Must not touch: the socket, decoding (the I/O thread hands over whole
//! messages).

use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::chan::Receiver;
use super::shared::{lock, secs, Ack, Command, Inbound, Shared};
use super::{Event, Message};
use crate::error::Error;

/// The messages the broker delivers, in order. Obtained from
/// [`Client::messages`](super::Client::messages); every clone reads from the same queue.
///
/// A QoS 1 message is acknowledged to the broker (PUBACK) only when it is
/// taken here: messages still queued when the client disconnects (or the
/// process dies) stay with the broker for the next session
/// (`clean_session = false`).
#[derive(Clone)]
pub struct Messages {
    pub(super) rx: Arc<Mutex<Receiver<Inbound>>>,
    pub(super) shared: Arc<Shared>,
}

impl Messages {
    /// Take one message off the queue: wake a stalled reader, owe the
    /// broker its PUBACK. Called with the queue locked, so that PUBACKs go
    /// out in the order the messages came.
    fn took(&self, inbound: Inbound) -> Message {
        if let Some(Ack { id, conn }) = inbound.ack {
            // A closed client cannot acknowledge any more: the broker
            // redelivers the message to the next session.
            let _ = self.shared.send(Command::Ack { id, conn });
        }
        if self.shared.inbound_stalled.swap(false, Ordering::SeqCst) {
            self.shared.wake();
        }
        inbound.msg
    }

    /// Wait for the next message. Fails once the client is closed and every
    /// queued message has been taken.
    pub fn recv(&self) -> Result<Message, Error> {
        let rx = lock(&self.rx);
        match rx.recv() {
            Ok(inbound) => Ok(self.took(inbound)),
            Err(_) => Err(self.shared.closed_error()),
        }
    }

    /// Wait at most `timeout` for the next message.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, Error> {
        let rx = lock(&self.rx);
        match rx.recv_timeout(timeout) {
            Ok(inbound) => Ok(self.took(inbound)),
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout(format!(
                "no message within {}",
                secs(timeout)
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(self.shared.closed_error()),
        }
    }

    /// The next message if one is queued now.
    pub fn try_recv(&self) -> Option<Message> {
        let rx = lock(&self.rx);
        rx.try_recv().ok().map(|inbound| self.took(inbound))
    }

    /// Iterate over messages until the client is closed.
    pub fn iter(&self) -> impl Iterator<Item = Message> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }
}

/// Connection events ([`Event`]), obtained from [`Client::events`](super::Client::events).
#[derive(Clone)]
pub struct Events {
    pub(super) rx: Arc<Mutex<Receiver<Event>>>,
}

impl Events {
    /// The next event if one is queued now.
    pub fn try_recv(&self) -> Option<Event> {
        lock(&self.rx).try_recv().ok()
    }

    /// Wait at most `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        lock(&self.rx).recv_timeout(timeout).ok()
    }

    /// Wait for the next event; `None` once the client is closed.
    pub fn recv(&self) -> Option<Event> {
        lock(&self.rx).recv().ok()
    }
}
