//! Outbound: publishes into the waiting queue, from there onto the wire
//! (QoS 0 at once, QoS 1 within the in-flight window, resends and recovered
//! messages paced by the platform's limits), SUBSCRIBE and UNSUBSCRIBE, and
//! writing the encoded bytes to the socket.
//!
//! Owns: the waiting queue's policy (on_full = drop_oldest), the pacing of
//! messages that no caller paced, the write buffer.
//! Must not touch: reading, delivery, connecting.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{Closed, Io, TX_HIGH_WATER};
use crate::client::reply::Sender;
use crate::client::session::{Outgoing, PendingSub, PendingUnsub};
use crate::client::timer::Deadline;
use crate::client::{later, publish_size, Event, OnFull, QoS};
use crate::error::Error;
use crate::packet::{self, Packet};
use crate::transport::{interrupted, would_block};

/// Where a SUBACK's outcome goes.
type SubDone = Sender<Result<Vec<QoS>, Error>>;

/// A PUBLISH at least this large is remembered, to explain a broker that
/// closes the connection right after it.
const LARGE_PUBLISH: usize = 16 * 1024;

impl Io {
    /// A publish from a caller: into the waiting queue (its room in the
    /// queue was taken by the caller).
    pub(super) fn publish(
        &mut self,
        topic: Arc<str>,
        payload: Vec<u8>,
        qos: QoS,
        done: Option<Sender<Result<(), Error>>>,
        store_id: Option<u64>,
    ) {
        if self.closing.is_some() {
            // Accepted into the on-disk queue already: it stays there for
            // the next start.
            self.shared.release(payload.len());
            if let Some(d) = &done {
                self.refuse_if_closing(d);
            }
            return;
        }
        self.session.waiting.push_back(Outgoing {
            topic,
            payload,
            qos,
            done,
            pkid: None,
            store_id,
            paced: true,
        });
        if self.shared.options.queue.on_full == OnFull::DropOldest {
            while self.shared.capacity.over() {
                let pos = self.session.waiting.iter().position(|m| m.pkid.is_none());
                let Some(old) = pos.and_then(|p| self.session.waiting.remove(p)) else {
                    break;
                };
                self.shared.release(old.payload.len());
                self.shared.unstore(old.store_id);
                if let Some(d) = old.done {
                    let _ = d.send(Err(Error::Limit(
                        "dropped: the queue was full (on_full = drop_oldest)".into(),
                    )));
                }
                self.dropped(&format!("the oldest queued message, to {}", old.topic));
            }
        }
    }

    fn dropped(&self, what: &str) {
        let n = self.shared.capacity.dropped.fetch_add(1, Ordering::Relaxed) as u64 + 1;
        if n == 1 || n % 100 == 0 {
            log::warn!("queue full: dropped {what} ({n} dropped so far)");
        }
        self.event(Event::Dropped(n));
    }

    /// Everything written, and a waiting message could go out now.
    pub(super) fn can_send_more(&self) -> bool {
        if self.tx_start < self.tx.len() || self.pacing {
            return false; // the socket would block, or the limiter says wait
        }
        let max_inflight = usize::from(self.shared.options.max_inflight);
        self.session
            .waiting
            .front()
            .is_some_and(|m| m.qos == QoS::AtMostOnce || self.session.inflight.len() < max_inflight)
    }

    /// Whether the front message may go now per the rate and bandwidth
    /// limits. Messages a caller published were paced in `publish`; resends
    /// and recovered messages are paced here.
    fn paced(&mut self) -> bool {
        if self.pacing {
            return false;
        }
        if self.shared.unlimited {
            return true;
        }
        let Some(front) = self.session.waiting.front_mut() else {
            return false;
        };
        if front.paced {
            return true;
        }
        let size = publish_size(&front.topic, front.payload.len());
        let now = Instant::now();
        let wait = {
            let mut l = self
                .shared
                .limiter
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            l.try_acquire(size, now)
        };
        match wait {
            None => {
                front.paced = true;
                true
            }
            Some(d) => {
                self.pacing = true;
                self.shared.timers.set(Deadline::Pace, later(now, d));
                false
            }
        }
    }

    /// Move waiting messages onto the wire: QoS 0 at once, QoS 1 while the
    /// in-flight window has room.
    pub(super) fn pump(&mut self) {
        let max_inflight = usize::from(self.shared.options.max_inflight);
        // QoS 0 messages leave the queue as they are encoded; their room is
        // given back once per pump (one lock, not one per message).
        let mut written = (0usize, 0usize);
        while self.online && self.tx_pending() < TX_HIGH_WATER {
            let Some(front) = self.session.waiting.front() else {
                break;
            };
            if front.qos == QoS::AtLeastOnce && self.session.inflight.len() >= max_inflight {
                break;
            }
            if !self.paced() {
                break;
            }
            let Some(mut m) = self.session.waiting.pop_front() else {
                break;
            };
            let before = self.tx.len();
            match m.qos {
                QoS::AtMostOnce => {
                    let r = packet::encode_publish(
                        &mut self.tx,
                        &m.topic,
                        &m.payload,
                        QoS::AtMostOnce,
                        false,
                        false,
                        None,
                    );
                    // Written or not, it leaves the queue now (at most once).
                    written.0 += 1;
                    written.1 += m.payload.len();
                    match r {
                        Ok(()) => log::debug!(target: "uiot::wire",
                            "-> PUBLISH qos=0 topic={} payload={} bytes", m.topic, m.payload.len()),
                        Err(e) => log::warn!("dropped a QoS 0 publish to {:?}: {e}", m.topic),
                    }
                }
                QoS::AtLeastOnce => {
                    let dup = m.pkid.is_some();
                    let id = match m.pkid {
                        Some(id) if !self.session.inflight.contains_key(&id) => id,
                        _ => self.session.next_id(),
                    };
                    match packet::encode_publish(
                        &mut self.tx,
                        &m.topic,
                        &m.payload,
                        QoS::AtLeastOnce,
                        dup,
                        false,
                        Some(id),
                    ) {
                        Ok(()) => {
                            log::debug!(target: "uiot::wire",
                                "-> PUBLISH id={id} qos=1{} topic={} payload={} bytes",
                                if dup { " dup" } else { "" }, m.topic, m.payload.len());
                            m.pkid = Some(id);
                            self.session.add_inflight(id, m);
                        }
                        Err(e) => {
                            self.shared.release(m.payload.len());
                            self.shared.unstore(m.store_id);
                            if let Some(d) = m.done {
                                let _ = d.send(Err(Error::Protocol(e)));
                            }
                        }
                    }
                }
            }
            let size = self.tx.len().saturating_sub(before);
            if size >= LARGE_PUBLISH {
                self.last_large = Some((size, Instant::now()));
            }
        }
        if written.0 > 0 {
            self.shared.release_many(written.0, written.1);
        }
    }

    pub(super) fn subscribe(
        &mut self,
        filters: Vec<(String, QoS)>,
        done: Sender<Result<Vec<QoS>, Error>>,
    ) {
        if self.refuse_if_closing(&done) {
            return;
        }
        let limits = &self.shared.options.limits;
        if limits.enforce {
            let n = self.session.subscriptions_after(&filters);
            if n > limits.max_subscriptions {
                let _ = done.send(Err(Error::Limit(format!(
                    "{n} subscriptions would exceed the limit of {} per connection \
                     (UIoT Core: 100); unsubscribe from some first",
                    limits.max_subscriptions
                ))));
                return;
            }
        }
        if let Err((e, Some(done))) = self.send_subscribe(filters, Some(done)) {
            let _ = done.send(Err(Error::Protocol(e)));
        }
    }

    /// Encode a SUBSCRIBE and remember it until its SUBACK. A packet that
    /// cannot be encoded gives `done` back, to be told why.
    pub(super) fn send_subscribe(
        &mut self,
        filters: Vec<(String, QoS)>,
        done: Option<SubDone>,
    ) -> Result<(), (packet::PacketError, Option<SubDone>)> {
        let id = self.session.next_id();
        let pkt = Packet::Subscribe(packet::Subscribe {
            pkid: id,
            filters: filters.clone(),
        });
        if let Err(e) = pkt.encode(&mut self.tx) {
            return Err((e, done));
        }
        log::debug!(target: "uiot::wire", "-> {}", pkt.summary());
        self.session
            .pending_subs
            .insert(id, PendingSub { filters, done });
        Ok(())
    }

    pub(super) fn unsubscribe(&mut self, filters: Vec<String>, done: Sender<Result<(), Error>>) {
        if self.refuse_if_closing(&done) {
            return;
        }
        let id = self.session.next_id();
        let pkt = Packet::Unsubscribe(packet::Unsubscribe {
            pkid: id,
            filters: filters.clone(),
        });
        match pkt.encode(&mut self.tx) {
            Ok(()) => {
                log::debug!(target: "uiot::wire", "-> {}", pkt.summary());
                self.session
                    .pending_unsubs
                    .insert(id, PendingUnsub { filters, done });
            }
            Err(e) => {
                let _ = done.send(Err(Error::Protocol(e)));
            }
        }
    }

    // ---- writing ----------------------------------------------------------

    pub(super) fn write_out(&mut self) -> Result<(), Closed> {
        let mut wrote = false;
        while self.tx_start < self.tx.len() {
            let start = self.tx_start;
            let stream = self
                .stream
                .as_mut()
                .ok_or_else(|| Closed::Io("not connected".into()))?;
            let n = {
                let Some(pending) = self.tx.get(start..) else {
                    break;
                };
                match stream.write(pending) {
                    Ok(0) => return Err(Closed::Io("the connection closed while writing".into())),
                    Ok(n) => n,
                    Err(e) if would_block(&e) => break,
                    Err(e) if interrupted(&e) => continue,
                    Err(e) => return Err(Closed::Io(format!("write failed: {e}"))),
                }
            };
            self.tx_start += n;
            wrote = true;
        }
        if self.tx_start >= self.tx.len() {
            self.tx.clear();
            self.tx_start = 0;
        } else if self.tx_start >= TX_HIGH_WATER {
            // The broker is slow: drop what was written so the buffer does
            // not grow with everything ever published.
            self.tx.drain(..self.tx_start);
            self.tx_start = 0;
        }
        if wrote {
            self.shared.note_sent();
            self.shared.progress.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
