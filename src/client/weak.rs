//! Handles for the platform services: a route of one's own for a topic
//! prefix ([`Client::route`]) and a handle that does not keep the
//! connection open ([`WeakClient`]).
//!
//! Owns: [`WeakClient`], [`Client::route`], [`Client::downgrade`].
//! Must not touch: the I/O thread's delivery (it only sends it a route).

use std::sync::{Arc, Mutex};

use super::{Client, Command, Events, Messages, Owner, Shared};
use crate::error::Error;

/// A [`Client`] that does not keep the connection open (see
/// [`Client::downgrade`]).
#[derive(Clone)]
pub struct WeakClient {
    shared: Arc<Shared>,
    last_topic: Arc<Mutex<Option<Arc<str>>>>,
    owner: std::sync::Weak<Owner>,
    messages: Messages,
    events: Events,
}

impl WeakClient {
    /// The client, while some [`Client`] clone still holds the connection.
    pub fn upgrade(&self) -> Option<Client> {
        Some(Client {
            owner: self.owner.upgrade()?,
            shared: self.shared.clone(),
            last_topic: self.last_topic.clone(),
            messages: self.messages.clone(),
            events: self.events.clone(),
        })
    }
}

impl std::fmt::Debug for WeakClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakClient")
            .field("client_id", &self.shared.options.client_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A queue of its own for the messages whose topic starts with
    /// `prefix`: they no longer reach [`Client::messages`]. This is how the
    /// platform services ([`crate::platform::shadow`], [`crate::platform::thing`])
    /// take their system topics whatever the application subscribes or
    /// reads. Routes are kept in the order they were made (the first
    /// matching prefix wins) and last as long as the client: dropping every
    /// clone of the returned queue gives its topics back to
    /// [`Client::messages`]. Make the route before subscribing, so that no
    /// message of the new subscription reaches the application's queue.
    pub fn route(&self, prefix: &str, capacity: usize) -> Result<Messages, Error> {
        let (tx, rx) = super::chan::sync_channel(capacity.max(1));
        self.shared.send(Command::Route {
            prefix: prefix.to_string(),
            tx,
        })?;
        Ok(Messages {
            rx: Arc::new(Mutex::new(rx)),
            shared: self.shared.clone(),
        })
    }

    /// A handle that does not keep the connection open: for a thread that
    /// serves the client (a platform service's dispatcher) and must not
    /// stop the connection from closing when the application drops its
    /// last [`Client`].
    pub fn downgrade(&self) -> WeakClient {
        WeakClient {
            shared: self.shared.clone(),
            last_topic: self.last_topic.clone(),
            owner: Arc::downgrade(&self.owner),
            messages: self.messages.clone(),
            events: self.events.clone(),
        }
    }
}
