//! Inbound: reading from the socket, decoding, and what each packet from
//! the broker means: messages handed to the application with back-pressure
//! (a full message queue stops the reading), acknowledgements of our
//! publishes and subscriptions, PINGRESP.
//!
//! Owns: the receive buffer, delivery, and the rule that an inbound QoS 1
//! message is acknowledged only once the application has taken it.
//! Must not touch: the write path's policy, connecting.

use std::io::Read as _;
use std::sync::atomic::Ordering;
use std::sync::mpsc::TrySendError;
use std::time::Duration;

use super::{Closed, Io, READ_CHUNK};
use crate::client::timer::Deadline;
use crate::client::{Ack, Inbound, Message, QoS};
use crate::error::Error;
use crate::packet::{self, Decoded, Packet, SubAckCode};
use crate::transport::{interrupted, would_block};

/// A close this soon after a large PUBLISH was written is blamed on it.
const CLOSE_AFTER_LARGE: Duration = Duration::from_secs(2);

impl Io {
    /// The application holds back delivery: messages wait unread.
    pub(super) fn stalled(&self) -> bool {
        self.pending_delivery.is_some()
    }

    /// Read what the socket has (until it would block) and handle every
    /// whole packet, unless the message queue is full.
    pub(super) fn read_in(&mut self) -> Result<(), Closed> {
        loop {
            self.process_rx()?;
            if self.pending_delivery.is_some() || !self.readable {
                return Ok(());
            }
            self.read_once()?;
        }
    }

    /// One read into the receive buffer; clears `readable` when the socket
    /// has nothing more.
    pub(super) fn read_once(&mut self) -> Result<(), Closed> {
        self.make_room();
        let end = self.rx_end;
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| Closed::Io("not connected".into()))?;
        let Some(space) = self.rx.get_mut(end..) else {
            return Err(Closed::Io("receive buffer error".into()));
        };
        match stream.read(space) {
            Ok(0) => {
                let after_large = self
                    .last_large
                    .filter(|(_, at)| at.elapsed() < CLOSE_AFTER_LARGE)
                    .map(|(size, _)| size);
                Err(Closed::ByBroker { after_large })
            }
            Ok(n) => {
                self.rx_end += n;
                self.shared.note_received();
                Ok(())
            }
            Err(e) if would_block(&e) => {
                self.readable = false;
                Ok(())
            }
            Err(e) if interrupted(&e) => Ok(()),
            Err(e) => Err(Closed::Io(format!("read failed: {e}"))),
        }
    }

    fn make_room(&mut self) {
        if self.rx_start == self.rx_end {
            self.rx_start = 0;
            self.rx_end = 0;
        }
        if self.rx.len().saturating_sub(self.rx_end) >= READ_CHUNK / 4 {
            return;
        }
        if self.rx_start > 0 {
            self.rx.copy_within(self.rx_start..self.rx_end, 0);
            self.rx_end -= self.rx_start;
            self.rx_start = 0;
        }
        if self.rx.len().saturating_sub(self.rx_end) < READ_CHUNK / 4 {
            let want = self
                .rx
                .len()
                .saturating_mul(2)
                .min(self.max_packet.saturating_add(READ_CHUNK));
            if want > self.rx.len() {
                self.rx.resize(want, 0);
            }
        }
    }

    fn process_rx(&mut self) -> Result<(), Closed> {
        loop {
            if let Some(inbound) = self.pending_delivery.take() {
                self.deliver(inbound);
                if self.pending_delivery.is_some() {
                    return Ok(());
                }
            }
            let buf = self.rx.get(self.rx_start..self.rx_end).unwrap_or(&[]);
            if buf.is_empty() {
                return Ok(());
            }
            match packet::decode(buf, self.max_packet) {
                Ok(Decoded::Incomplete { .. }) => return Ok(()),
                Ok(Decoded::Packet { packet, len }) => {
                    self.rx_start += len;
                    self.handle_packet(packet)?;
                }
                Err(e) => return Err(Closed::Malformed(e)),
            }
        }
    }

    /// Hand a message to the application. Its PUBACK (QoS 1) is sent only
    /// when the application takes it (see [`Io::taken`]). When the queue is
    /// full, keep it and stop reading.
    fn deliver(&mut self, inbound: Inbound) {
        // Announce the stall before trying, so a consumer that frees room
        // right now sees the flag and wakes us.
        self.shared.inbound_stalled.store(true, Ordering::SeqCst);
        let topic = inbound.msg.topic.as_str();
        let route = self
            .routes
            .iter()
            .position(|(p, _)| topic.starts_with(p.as_str()));
        let sender = match route.and_then(|i| self.routes.get(i)) {
            Some((_, tx)) => tx,
            None => &self.messages,
        };
        match sender.try_send(inbound) {
            Ok(()) => {
                self.shared.inbound_stalled.store(false, Ordering::SeqCst);
            }
            Err(TrySendError::Full(inbound)) => {
                self.pending_delivery = Some(inbound);
            }
            Err(TrySendError::Disconnected(inbound)) => match route {
                // The service's queue is gone: its topics are the
                // application's again, and this message too.
                Some(i) => {
                    self.routes.remove(i);
                    self.deliver(inbound);
                }
                None => self.shared.inbound_stalled.store(false, Ordering::SeqCst),
            },
        }
    }

    /// The application took the message with packet id `id` that came on
    /// connection `conn`: acknowledge it now, if that connection is still
    /// the one we have (or the broker redelivered it on this one).
    pub(super) fn taken(&mut self, id: u16, conn: u32) {
        let redelivered = self.session.taken(id);
        if !self.online || (conn != self.conn && !redelivered) {
            // Its connection is gone: the broker redelivers it (and the
            // duplicate filter acknowledges that redelivery).
            return;
        }
        log::debug!(target: "uiot::wire", "-> PUBACK id={id}");
        let _ = Packet::PubAck(id).encode(&mut self.tx);
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), Closed> {
        if log::log_enabled!(target: "uiot::wire", log::Level::Debug) {
            log::debug!(target: "uiot::wire", "<- {}", packet.summary());
        }
        match packet {
            Packet::Publish(p) => {
                let (qos, id) = match (p.qos, p.pkid) {
                    (QoS::AtMostOnce, _) => (QoS::AtMostOnce, None),
                    (QoS::AtLeastOnce, Some(id)) => (QoS::AtLeastOnce, Some(id)),
                    // The decoder refuses a QoS 1 PUBLISH without an id.
                    (QoS::AtLeastOnce, None) => {
                        return Err(Closed::Violation(
                            "sent a QoS 1 PUBLISH without a packet id".into(),
                        ))
                    }
                };
                let msg = Message {
                    topic: p.topic,
                    payload: p.payload,
                    qos,
                    dup: p.dup,
                };
                match id {
                    Some(id) if !self.session.accept_inbound(id, p.dup) => {
                        log::debug!("dropped a redelivery of message id {id}");
                        if !self.session.redelivered(id) {
                            let _ = Packet::PubAck(id).encode(&mut self.tx);
                        }
                    }
                    Some(id) => {
                        self.session.delivering(id);
                        self.deliver(Inbound {
                            msg,
                            ack: Some(Ack {
                                id,
                                conn: self.conn,
                            }),
                        });
                    }
                    None => self.deliver(Inbound { msg, ack: None }),
                }
            }
            Packet::PubAck(id) => match self.session.ack(id) {
                Some(m) => {
                    self.shared.release(m.payload.len());
                    self.shared.unstore(m.store_id);
                    self.shared.progress.fetch_add(1, Ordering::Relaxed);
                    self.compact_due = self.shared.store.is_some();
                    self.large_closes = 0;
                    if let Some(done) = m.done {
                        let _ = done.send(Ok(()));
                    }
                }
                None => log::warn!("PUBACK for unknown packet id {id} ignored"),
            },
            Packet::SubAck(ack) => {
                let Some(pending) = self.session.pending_subs.remove(&ack.pkid) else {
                    log::warn!("SUBACK for unknown packet id {} ignored", ack.pkid);
                    return Ok(());
                };
                if ack.codes.len() != pending.filters.len() {
                    return Err(Closed::Violation(format!(
                        "sent a SUBACK with {} return codes for {} filters",
                        ack.codes.len(),
                        pending.filters.len()
                    )));
                }
                let mut granted = Vec::with_capacity(ack.codes.len());
                let mut refused = None;
                for ((filter, _), code) in pending.filters.into_iter().zip(ack.codes) {
                    match code {
                        SubAckCode::Success(q) => {
                            self.session.subscriptions.insert(filter, q);
                            granted.push(q);
                        }
                        SubAckCode::Failure => {
                            log::warn!("the broker refused the subscription to {filter:?}");
                            self.session.subscriptions.remove(&filter);
                            refused.get_or_insert(filter);
                        }
                    }
                }
                if let Some(done) = pending.done {
                    let _ = done.send(match refused {
                        Some(f) => Err(Error::SubscribeRefused(f)),
                        None => Ok(granted),
                    });
                }
            }
            Packet::UnsubAck(id) => {
                if let Some(p) = self.session.pending_unsubs.remove(&id) {
                    for f in &p.filters {
                        self.session.subscriptions.remove(f);
                    }
                    let _ = p.done.send(Ok(()));
                } else {
                    log::warn!("UNSUBACK for unknown packet id {id} ignored");
                }
            }
            Packet::PingResp => {
                self.ping_outstanding = false;
                self.shared.timers.cancel(Deadline::PingResp);
            }
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                return Err(Closed::Violation(format!(
                    "sent {}, a QoS 2 packet UIoT Core does not use",
                    packet.name()
                )))
            }
            other => {
                return Err(Closed::Violation(format!(
                    "sent {}, which a broker must not send to a client",
                    other.name()
                )))
            }
        }
        Ok(())
    }
}
