//! Connecting: TCP (and TLS), CONNECT and its CONNACK, what follows a
//! connection (subscriptions restored, waiting messages sent) and what
//! follows its loss (back-off, kick detection, the next attempt).
//!
//! Owns: the CONNECT/CONNACK exchange and its errors, reconnect scheduling.
//! Must not touch: how messages are encoded or delivered (outbound/inbound).

use std::time::Instant;

use super::{Closed, Io, SOCKET};
use crate::client::timer::Deadline;
use crate::client::{later, secs, Event, QoS};
use crate::error::Error;
use crate::packet::{self, ConnectReturnCode, Decoded, Packet};
use crate::transport;

impl Io {
    /// Open the connection and wait for CONNACK (up to connect_timeout).
    /// Returns the broker's session-present flag.
    pub(super) fn connect(&mut self) -> Result<bool, Error> {
        let shared = self.shared.clone();
        let o = &shared.options;
        let deadline = later(Instant::now(), o.connect_timeout);
        let timeout_text = secs(o.connect_timeout);
        let mut stream = match &o.local_socket {
            Some(path) => transport::connect_unix(path)?,
            None => transport::connect(
                &o.host,
                o.port,
                self.tls.as_ref(),
                o.keep_alive,
                deadline,
                &mut self.poll,
                SOCKET,
            )?,
        };
        stream.register(&self.poll, SOCKET).map_err(|e| Error::Io {
            context: "registering the socket".into(),
            source: e,
        })?;
        self.stream = Some(stream);
        let connect = Packet::Connect(packet::Connect {
            protocol: o.protocol,
            keep_alive: o.keep_alive_secs(),
            clean_session: o.clean_session,
            client_id: o.client_id.clone(),
            will: None,
            username: o.username.clone(),
            password: o.password.as_ref().map(|p| p.as_bytes().to_vec()),
        });
        log::debug!(target: "uiot::wire", "-> {}", connect.summary());
        connect.encode(&mut self.tx)?;
        self.readable = true;
        let at = || format!("{}:{}", o.host, o.port);
        loop {
            self.write_out()
                .map_err(|why| Error::Unreachable(why.to_string()))?;
            if let Err(why) = self.read_once() {
                return Err(Error::Unreachable(format!(
                    "{}: {why} before answering CONNECT: is this an MQTT broker, and does \
                     [connection] tls match the port (8883 is TLS, 1883 plain)?",
                    at()
                )));
            }
            if self.rx_end > self.rx_start {
                let buf = self.rx.get(self.rx_start..self.rx_end).unwrap_or(&[]);
                // 0x15/0x16 start a TLS alert/handshake record: a TLS port.
                if o.tls.is_none() && matches!(buf.first(), Some(0x15 | 0x16)) {
                    return Err(Error::Tls(format!(
                        "{}: the broker answered in TLS: this is a TLS port; set \
                         [connection] tls = true (port 8883), or use the plain port 1883",
                        at()
                    )));
                }
                if let Some(what) = packet::not_mqtt(buf) {
                    return Err(Error::ProtocolViolation(format!(
                        "at {} is not an MQTT broker (it answered like {what}); check \
                         [connection] host and port",
                        at()
                    )));
                }
                let decoded = match packet::decode(buf, self.max_packet) {
                    Ok(d) => d,
                    // Anything but a CONNACK first: not MQTT at all.
                    Err(_) if buf.first() != Some(&0x20) => {
                        return Err(Error::ProtocolViolation(format!(
                            "at {} answered CONNECT with bytes that are not MQTT (first byte \
                             0x{:02x}): is it an MQTT broker? check [connection] host and port",
                            at(),
                            buf.first().copied().unwrap_or(0)
                        )))
                    }
                    Err(e) => return Err(Error::Protocol(e)),
                };
                match decoded {
                    Decoded::Incomplete { .. } => {}
                    Decoded::Packet { packet, len } => {
                        self.rx_start += len;
                        log::debug!(target: "uiot::wire", "<- {}", packet.summary());
                        return match packet {
                            Packet::ConnAck(ack)
                                if ack.code == ConnectReturnCode::Accepted
                                    && ack.session_present
                                    && o.clean_session =>
                            {
                                // MQTT-3.2.2-1: a clean session has no
                                // session to be present.
                                Err(Error::ProtocolViolation(
                                    "answered a clean-session CONNECT with session present = 1 \
                                     (MQTT-3.2.2-1): it is not a conforming MQTT 3.1.1 broker"
                                        .into(),
                                ))
                            }
                            Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Accepted => {
                                self.after_connect();
                                Ok(ack.session_present)
                            }
                            Packet::ConnAck(ack) => Err(Error::Refused(ack.code)),
                            other => Err(Error::ProtocolViolation(format!(
                                "answered CONNECT with {} instead of CONNACK",
                                other.name()
                            ))),
                        };
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(format!(
                    "no CONNACK from {} within connect_timeout ({timeout_text}): is this an MQTT \
                     broker, and is the port right (1883 plain, 8883 TLS)?",
                    at()
                )));
            }
            if !self.readable {
                self.poll_once(Some(left))
                    .map_err(|why| Error::Unreachable(why.to_string()))?;
            }
        }
    }

    fn after_connect(&mut self) {
        let now = Instant::now();
        self.shared.note_sent();
        self.shared.note_received();
        self.shared.timers.set(
            Deadline::PingDue,
            later(now, self.shared.options.ping_interval()),
        );
    }

    /// The connection is up (CONNACK accepted): restore subscriptions when
    /// the broker kept no session, then send what waits.
    pub(super) fn connected(&mut self, session_present: bool) {
        self.online = true;
        self.conn = self.conn.wrapping_add(1);
        self.backoff.connected_at = Instant::now();
        if !session_present {
            self.session.new_session();
            self.restore_subscriptions();
        }
        self.event(Event::Connected { session_present });
        self.pump();
    }

    fn restore_subscriptions(&mut self) {
        if self.session.subscriptions.is_empty() {
            return;
        }
        let filters: Vec<(String, QoS)> = self
            .session
            .subscriptions
            .iter()
            .map(|(f, q)| (f.clone(), *q))
            .collect();
        log::info!("restoring {} subscription(s)", filters.len());
        if let Err((e, _)) = self.send_subscribe(filters, None) {
            log::error!("cannot restore the subscriptions: {e}");
        }
    }

    /// Forget the connection's buffers (not the session).
    fn reset_link(&mut self) {
        self.close_stream();
        self.tx.clear();
        self.tx_start = 0;
        self.rx_start = 0;
        self.rx_end = 0;
        self.readable = false;
    }

    /// The connection dropped and reconnecting is on: keep every message,
    /// tell the application, and schedule the next attempt.
    pub(super) fn lost(&mut self, why: &Closed) {
        self.online = false;
        self.reset_link();
        self.ping_outstanding = false;
        self.shared.timers.cancel(Deadline::PingDue);
        self.shared.timers.cancel(Deadline::PingResp);
        self.session.requeue_inflight();
        self.poison_check(why);
        let retry = || Error::Disconnected(format!("{why}; try again once reconnected"));
        for (_, p) in self.session.pending_subs.drain() {
            if let Some(d) = p.done {
                let _ = d.send(Err(retry()));
            }
        }
        for (_, p) in self.session.pending_unsubs.drain() {
            let _ = p.done.send(Err(retry()));
        }
        let o = &self.shared.options;
        let lived = self.backoff.connected_at.elapsed();
        let by_broker = matches!(why, Closed::ByBroker { .. });
        let kicked = self.backoff.ended(lived, by_broker, &o.reconnect);
        log::warn!("connection lost: {why}; reconnecting");
        self.event(Event::Disconnected(why.to_string()));
        if kicked {
            let who = match &o.identity {
                Some(id) => format!("{}/{}", id.product_sn, id.device_sn),
                None => o.client_id.clone(),
            };
            log::error!(
                "another device is using the credentials of {who}; this device was \
                 disconnected (reconnecting only every {} from now on)",
                secs(o.reconnect.max)
            );
            self.event(Event::Kicked);
        }
        self.schedule_reconnect();
    }

    /// A broker that closes the connection each time right after the same
    /// large message refuses it (too big for it): after three tries that
    /// message fails with [`Error::Limit`] instead of wedging the queue.
    fn poison_check(&mut self, why: &Closed) {
        const TRIES: u32 = 3;
        let Closed::ByBroker {
            after_large: Some(size),
        } = why
        else {
            self.large_closes = 0;
            return;
        };
        self.large_closes = self.large_closes.saturating_add(1);
        if self.large_closes < TRIES {
            return;
        }
        self.large_closes = 0;
        // The front message is the first one resent: the one that went out
        // first after the last reconnect.
        let is_it = self
            .session
            .waiting
            .front()
            .is_some_and(|m| crate::client::publish_size(&m.topic, m.payload.len()) >= *size);
        if !is_it {
            return;
        }
        if let Some(m) = self.session.waiting.pop_front() {
            log::error!(
                "dropped a message of {} bytes to {}: the broker closed the connection each \
                 of {TRIES} times it was sent (too large for this broker?)",
                m.payload.len(),
                m.topic
            );
            self.shared.release(m.payload.len());
            self.shared.unstore(m.store_id);
            if let Some(d) = m.done {
                let _ = d.send(Err(Error::Limit(format!(
                    "the broker closed the connection each of {TRIES} times this {}-byte \
                     message was sent: it is probably over the broker's packet limit",
                    m.payload.len()
                ))));
            }
        }
    }

    fn schedule_reconnect(&mut self) {
        let r = &self.shared.options.reconnect;
        let wait = self.backoff.next(r.min, r.max);
        log::info!("next connection attempt in {}", secs(wait));
        self.shared
            .timers
            .set(Deadline::Reconnect, later(Instant::now(), wait));
    }

    /// A reconnect attempt; an error only when the broker broke the
    /// protocol (then the client stops).
    pub(super) fn reconnect(&mut self) -> Result<(), Closed> {
        if self.online || self.closing.is_some() {
            return Ok(());
        }
        match self.connect() {
            Ok(session_present) => {
                log::info!("reconnected");
                self.connected(session_present);
            }
            Err(e @ (Error::ProtocolViolation(_) | Error::Protocol(_))) => {
                // The broker broke the protocol: stop like after CONNACK.
                self.reset_link();
                log::error!("reconnect: {e}");
                return Err(match e {
                    Error::Protocol(p) => Closed::Malformed(p),
                    Error::ProtocolViolation(s) => Closed::Violation(s),
                    other => Closed::Io(other.to_string()),
                });
            }
            Err(e) => {
                self.reset_link();
                self.backoff.attempt_failed(matches!(e, Error::Refused(_)));
                log::warn!("reconnect failed: {e}");
                self.schedule_reconnect();
            }
        }
        Ok(())
    }
}
