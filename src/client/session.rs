//! Session state, apart from the socket: packet ids, QoS 1 messages awaiting
//! PUBACK, subscriptions, and the inbound duplicate filter.
//!
//! Owns: what must survive a reconnect of the same session.
//! Must not touch: sockets, the poll loop, timers, encoding.

use super::reply::Sender;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::client::QoS;
use crate::error::Error;

/// A message on its way: waiting to be sent, or (QoS 1) sent and awaiting
/// its PUBACK, kept whole so it can be resent after a reconnect.
pub(crate) struct Outgoing {
    /// Shared by consecutive messages to the same topic.
    pub(crate) topic: Arc<str>,
    pub(crate) payload: Vec<u8>,
    pub(crate) qos: QoS,
    /// Who waits for the outcome (QoS 1).
    pub(crate) done: Option<Sender<Result<(), Error>>>,
    /// The packet id it was last sent with; `Some` means it went out
    /// before, so it is resent with DUP set.
    pub(crate) pkid: Option<u16>,
    /// Its record in the on-disk queue, if any.
    pub(crate) store_id: Option<u64>,
    /// It was paced by the rate and bandwidth limits for its next sending
    /// (false for resends and recovered messages, which the I/O thread
    /// paces itself).
    pub(crate) paced: bool,
}

/// A QoS 1 publish awaiting its PUBACK.
pub(crate) type InFlight = Outgoing;

/// A SUBSCRIBE awaiting its SUBACK.
pub(crate) struct PendingSub {
    pub(crate) filters: Vec<(String, QoS)>,
    /// `None` for the subscriptions restored after a reconnect.
    pub(crate) done: Option<Sender<Result<Vec<QoS>, Error>>>,
}

/// An UNSUBSCRIBE awaiting its UNSUBACK.
pub(crate) struct PendingUnsub {
    pub(crate) filters: Vec<String>,
    pub(crate) done: Sender<Result<(), Error>>,
}

#[derive(Default)]
pub(crate) struct Session {
    last_id: u16,
    pub(crate) inflight: HashMap<u16, InFlight>,
    /// In-flight ids in the order they were sent (for resending in order).
    pub(crate) order: VecDeque<u16>,
    /// Messages not sent yet (offline, or the in-flight window is full), in
    /// order; after a reconnect the unacknowledged ones come first again.
    pub(crate) waiting: VecDeque<Outgoing>,
    pub(crate) subscriptions: BTreeMap<String, QoS>,
    pub(crate) pending_subs: HashMap<u16, PendingSub>,
    pub(crate) pending_unsubs: HashMap<u16, PendingUnsub>,
    /// Ids of inbound QoS 1 messages handed to the application, to drop the
    /// broker's redeliveries (DUP set, same id).
    delivered: HashSet<u16>,
    /// Inbound QoS 1 ids queued for the application and not taken yet:
    /// their PUBACK waits until it takes them.
    untaken: HashSet<u16>,
    /// Untaken ids the broker redelivered on the current connection: their
    /// PUBACK goes on this connection once taken.
    redelivered: HashSet<u16>,
}

impl Session {
    /// The next free packet id (never 0, never one still in use).
    pub(crate) fn next_id(&mut self) -> u16 {
        loop {
            self.last_id = self.last_id.wrapping_add(1);
            let id = self.last_id;
            if id != 0
                && !self.inflight.contains_key(&id)
                && !self.pending_subs.contains_key(&id)
                && !self.pending_unsubs.contains_key(&id)
            {
                return id;
            }
        }
    }

    /// Record an in-flight publish.
    pub(crate) fn add_inflight(&mut self, id: u16, msg: InFlight) {
        self.inflight.insert(id, msg);
        self.order.push_back(id);
    }

    /// Take the in-flight publish `id` (on PUBACK).
    pub(crate) fn ack(&mut self, id: u16) -> Option<InFlight> {
        let msg = self.inflight.remove(&id)?;
        if self.order.front() == Some(&id) {
            self.order.pop_front();
        } else if let Some(pos) = self.order.iter().position(|&x| x == id) {
            self.order.remove(pos);
        }
        Some(msg)
    }

    /// Whether an inbound QoS 1 message should go to the application:
    /// false for a redelivery (DUP) of an id already handed over.
    pub(crate) fn accept_inbound(&mut self, id: u16, dup: bool) -> bool {
        let fresh = self.delivered.insert(id);
        fresh || !dup
    }

    /// An inbound QoS 1 message went into the application's queue.
    pub(crate) fn delivering(&mut self, id: u16) {
        self.untaken.insert(id);
    }

    /// The broker redelivered `id`, which the application has not taken
    /// yet: true when its PUBACK must wait for the taking (false: the
    /// application took it already, acknowledge the redelivery now).
    pub(crate) fn redelivered(&mut self, id: u16) -> bool {
        if self.untaken.contains(&id) {
            self.redelivered.insert(id);
            true
        } else {
            false
        }
    }

    /// The application took `id`; true when the broker redelivered it on
    /// the current connection (so it is acknowledged there).
    pub(crate) fn taken(&mut self, id: u16) -> bool {
        self.untaken.remove(&id);
        self.redelivered.remove(&id)
    }

    /// Connection lost: every unacknowledged message goes back to the front
    /// of the waiting queue, in the order it was first sent, to be paced
    /// again.
    pub(crate) fn requeue_inflight(&mut self) {
        let mut again: VecDeque<Outgoing> = VecDeque::with_capacity(self.order.len());
        for id in self.order.drain(..) {
            if let Some(m) = self.inflight.remove(&id) {
                again.push_back(m);
            }
        }
        // Anything left in the map (not in `order`) goes after, by id.
        let mut rest: Vec<(u16, Outgoing)> = self.inflight.drain().collect();
        rest.sort_by_key(|(id, _)| *id);
        again.extend(rest.into_iter().map(|(_, m)| m));
        for m in &mut again {
            m.paced = false;
        }
        // Redeliveries on the old connection are void.
        self.redelivered.clear();
        again.extend(self.waiting.drain(..));
        self.waiting = again;
    }

    /// A new session (CONNACK without session present): inbound ids start
    /// afresh.
    pub(crate) fn new_session(&mut self) {
        self.delivered.clear();
        self.untaken.clear();
        self.redelivered.clear();
    }

    /// Number of active plus requested subscriptions after adding `filters`.
    pub(crate) fn subscriptions_after(&self, filters: &[(String, QoS)]) -> usize {
        let mut all: HashSet<&str> = self.subscriptions.keys().map(String::as_str).collect();
        for p in self.pending_subs.values() {
            all.extend(p.filters.iter().map(|(f, _)| f.as_str()));
        }
        all.extend(filters.iter().map(|(f, _)| f.as_str()));
        all.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str) -> Outgoing {
        Outgoing {
            topic: topic.into(),
            payload: vec![],
            qos: QoS::AtLeastOnce,
            done: None,
            pkid: None,
            store_id: None,
            paced: true,
        }
    }

    #[test]
    fn lost_messages_are_resent_first_in_order() {
        let mut s = Session::default();
        for (id, t) in [(9, "a"), (3, "b"), (5, "c")] {
            let mut m = msg(t);
            m.pkid = Some(id);
            s.add_inflight(id, m);
        }
        s.waiting.push_back(msg("d"));
        s.requeue_inflight();
        let order: Vec<&str> = s.waiting.iter().map(|m| &*m.topic).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        let paced: Vec<bool> = s.waiting.iter().map(|m| m.paced).collect();
        assert_eq!(
            paced,
            [false, false, false, true],
            "resends are paced again"
        );
        assert!(s.inflight.is_empty() && s.order.is_empty());
    }

    #[test]
    fn ids_skip_zero_and_ids_in_use() {
        let mut s = Session {
            last_id: u16::MAX - 1,
            ..Session::default()
        };
        assert_eq!(s.next_id(), u16::MAX);
        s.add_inflight(1, msg("t"));
        assert_eq!(s.next_id(), 2);
    }

    #[test]
    fn redeliveries_are_dropped_but_new_messages_reusing_an_id_are_not() {
        let mut s = Session::default();
        assert!(s.accept_inbound(7, false));
        assert!(!s.accept_inbound(7, true), "DUP redelivery of 7");
        assert!(s.accept_inbound(7, false), "a new message reusing id 7");
        assert!(s.accept_inbound(8, true), "first sight of 8, even with DUP");
    }

    #[test]
    fn a_redelivery_of_an_untaken_message_is_acknowledged_when_taken() {
        let mut s = Session::default();
        assert!(s.accept_inbound(4, false));
        s.delivering(4);
        // Reconnect with session: the broker redelivers 4 (DUP).
        s.requeue_inflight();
        assert!(!s.accept_inbound(4, true));
        assert!(s.redelivered(4), "untaken: PUBACK waits");
        assert!(s.taken(4), "taken: PUBACK on the current connection");
        assert!(
            !s.redelivered(4),
            "taken already: PUBACK the redelivery now"
        );
    }

    #[test]
    fn acks_keep_send_order() {
        let mut s = Session::default();
        for id in [3, 4, 5] {
            s.add_inflight(id, msg("t"));
        }
        assert!(s.ack(4).is_some());
        assert!(s.ack(4).is_none());
        assert_eq!(s.order, [3, 5]);
    }
}
