//! Session state, apart from the socket: packet ids, QoS 1 messages awaiting
//! PUBACK, subscriptions, and the inbound duplicate filter.
//!
//! Owns: what must survive a reconnect of the same session.
//! Must not touch: sockets, the poll loop, timers, encoding.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::mpsc::Sender;

use crate::client::QoS;
use crate::error::Error;

/// A QoS 1 publish awaiting its PUBACK (kept whole so it can be resent).
#[allow(dead_code)] // topic and payload are kept for resending after a reconnect
pub(crate) struct InFlight {
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) done: Option<Sender<Result<(), Error>>>,
}

/// A SUBSCRIBE awaiting its SUBACK.
pub(crate) struct PendingSub {
    pub(crate) filters: Vec<(String, QoS)>,
    pub(crate) done: Sender<Result<Vec<QoS>, Error>>,
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
    pub(crate) subscriptions: BTreeMap<String, QoS>,
    pub(crate) pending_subs: HashMap<u16, PendingSub>,
    pub(crate) pending_unsubs: HashMap<u16, PendingUnsub>,
    /// Ids of inbound QoS 1 messages handed to the application, to drop the
    /// broker's redeliveries (DUP set, same id).
    delivered: HashSet<u16>,
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

    #[test]
    fn ids_skip_zero_and_ids_in_use() {
        let mut s = Session {
            last_id: u16::MAX - 1,
            ..Session::default()
        };
        assert_eq!(s.next_id(), u16::MAX);
        s.add_inflight(
            1,
            InFlight {
                topic: "t".into(),
                payload: vec![],
                done: None,
            },
        );
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
    fn acks_keep_send_order() {
        let mut s = Session::default();
        for id in [3, 4, 5] {
            s.add_inflight(
                id,
                InFlight {
                    topic: "t".into(),
                    payload: vec![],
                    done: None,
                },
            );
        }
        assert!(s.ack(4).is_some());
        assert!(s.ack(4).is_none());
        assert_eq!(s.order, [3, 5]);
    }
}
