//! The I/O thread: the only owner of the socket.
//!
//! Owns: connecting and reconnecting (back-off with full jitter, kick
//! detection), the `mio` poll loop, reading and decoding, encoding queued
//! commands and writing them (many per syscall), resending unacknowledged
//! QoS 1 messages after a reconnect, inbound delivery with back-pressure,
//! acknowledgements, and keep-alive pings when the timer says they are due.
//! Must not touch: deadlines (the timer thread keeps them; this thread only
//! sets and cancels them), the caller-facing API.
//!
//! Wake-ups: callers push commands into a bounded channel and wake this
//! thread only when it is parked (an atomic flag); each wake-up drains every
//! queued command before writing.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::session::{Outgoing, PendingSub, PendingUnsub, Session};
use super::timer::Deadline;
use super::{Command, Event, Message, OnFull, QoS, Shared};
use crate::error::Error;
use crate::packet::{self, ConnectReturnCode, Decoded, Packet, SubAckCode};
use crate::transport::{self, interrupted, would_block, Stream};

/// Poll token of the waker.
pub(crate) const WAKER: Token = Token(0);
/// Poll token of the socket.
const SOCKET: Token = Token(1);
/// Stop taking commands while this much is waiting to be written.
const TX_HIGH_WATER: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// Called on the timer thread when a deadline is due.
pub(crate) fn on_deadline(shared: &Shared, kind: Deadline) {
    if kind == Deadline::PingDue {
        // Only wake the I/O thread if the connection really was quiet for
        // the whole ping interval; otherwise look again later.
        let interval = shared.options.ping_interval();
        let next = shared.last_sent() + interval;
        if next > Instant::now() + Duration::from_millis(1) {
            shared.timers.set(Deadline::PingDue, next);
            return;
        }
    }
    let _ = shared.send(Command::Timer(kind));
}

/// Why the connection ended.
struct Closed(String);

/// What [`Io::run_loop`] hands back.
const BROKER_CLOSED: &str = "the broker closed the connection";
/// Young connections closed by the broker in a row that mean "kicked".
const KICK_AFTER: u32 = 3;
/// Text of a disconnect the application asked for.
const BY_APPLICATION: &str = "disconnected by the application";

/// Reconnect bookkeeping.
struct Backoff {
    attempt: u32,
    /// Young connections the broker closed in a row (kick detection).
    short_closes: u32,
    kicked: bool,
    connected_at: Instant,
    rng: u64,
}

impl Backoff {
    /// Next wait: full jitter between `min` and min(max, min * 2^attempt);
    /// the maximum when kicked.
    fn next(&mut self, min: Duration, max: Duration) -> Duration {
        if self.kicked {
            return max;
        }
        let cap = min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(max)
            .max(min);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64*: jitter only, not security.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        // (cap - min) * r / 2^32, in integer nanoseconds.
        let span = (cap - min).as_nanos().min(u128::from(u64::MAX));
        let pick = (span * u128::from(r)) >> 32;
        min + Duration::from_nanos(u64::try_from(pick).unwrap_or(u64::MAX))
    }
}

struct Io {
    shared: Arc<Shared>,
    poll: Poll,
    events: Events,
    commands: Receiver<Command>,
    messages: SyncSender<Message>,
    events_tx: SyncSender<Event>,
    stream: Option<Stream>,
    readable: bool,
    rx: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    tx: Vec<u8>,
    tx_start: usize,
    session: Session,
    ping_outstanding: bool,
    pending_delivery: Option<(Message, Option<u16>)>,
    flush_waiters: Vec<Sender<Result<(), Error>>>,
    closing: Option<Sender<Result<(), Error>>>,
    max_packet: usize,
    online: bool,
    backoff: Backoff,
    /// Acknowledged records may be reclaimed once the queue is idle.
    compact_due: bool,
    /// The TLS set-up, made once for every (re)connect.
    tls: Option<transport::Tls>,
}

/// What the I/O thread starts with.
pub(crate) struct Start {
    pub(crate) poll: Poll,
    pub(crate) commands: Receiver<Command>,
    pub(crate) messages: SyncSender<Message>,
    pub(crate) events_tx: SyncSender<Event>,
    /// Where the outcome of the first connect goes.
    pub(crate) ready: Sender<Result<(), Error>>,
    /// Messages recovered from the on-disk queue, sent first.
    pub(crate) recovered: Vec<super::store::Stored>,
    pub(crate) tls: Option<transport::Tls>,
}

/// The I/O thread's body: connect, report the outcome on `ready`, then run
/// the poll loop (reconnecting as configured) until the client disconnects.
pub(crate) fn run(shared: Arc<Shared>, start: Start) {
    let Start {
        poll,
        commands,
        messages,
        events_tx,
        ready,
        recovered,
        tls,
    } = start;
    let max_packet = shared.options.limits.max_packet.max(64);
    let mut io = Io {
        shared,
        poll,
        events: Events::with_capacity(16),
        commands,
        messages,
        events_tx,
        stream: None,
        readable: false,
        rx: vec![0; READ_CHUNK],
        rx_start: 0,
        rx_end: 0,
        tx: Vec::with_capacity(TX_HIGH_WATER + 1024),
        tx_start: 0,
        session: Session::default(),
        ping_outstanding: false,
        pending_delivery: None,
        flush_waiters: Vec::new(),
        closing: None,
        max_packet,
        online: false,
        compact_due: false,
        tls,
        backoff: Backoff {
            attempt: 0,
            short_closes: 0,
            kicked: false,
            connected_at: Instant::now(),
            rng: seed(),
        },
    };
    for m in recovered {
        io.session.waiting.push_back(Outgoing {
            topic: m.topic,
            payload: m.payload,
            qos: QoS::AtLeastOnce,
            done: None,
            pkid: None,
            store_id: Some(m.id),
        });
    }
    match io.connect() {
        Ok(session_present) => {
            let _ = ready.send(Ok(()));
            io.connected(session_present);
        }
        Err(e) => {
            io.shared.mark_closed(&e.to_string());
            io.close_stream();
            let _ = ready.send(Err(e));
            return;
        }
    }
    let reason = loop {
        match io.run_loop() {
            Ok(()) => break BY_APPLICATION.to_string(),
            Err(Closed(why)) => {
                let reconnect = io.shared.options.reconnect.enabled && io.closing.is_none();
                if !reconnect || why == BY_APPLICATION || why.starts_with("protocol error") {
                    break why;
                }
                io.lost(&why);
            }
        }
    };
    io.teardown(&reason);
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ (u64::from(std::process::id()) << 32)) | 1
}

impl Io {
    fn event(&self, e: Event) {
        if let Err(TrySendError::Full(e)) = self.events_tx.try_send(e) {
            log::debug!("event queue full, dropped {e:?}");
        }
    }

    // ---- connecting -------------------------------------------------------

    fn connect(&mut self) -> Result<bool, Error> {
        let shared = self.shared.clone();
        let o = &shared.options;
        let deadline = Instant::now() + o.connect_timeout;
        let timeout_text = super::secs(o.connect_timeout);
        let mut stream = transport::connect(
            &o.host,
            o.port,
            self.tls.as_ref(),
            o.keep_alive,
            deadline,
            &mut self.poll,
            SOCKET,
        )?;
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
        loop {
            self.write_out()
                .map_err(|Closed(why)| Error::Unreachable(why))?;
            match self.read_once() {
                Ok(()) => {}
                Err(Closed(why)) => {
                    return Err(Error::Unreachable(format!(
                        "{why} before answering CONNECT: is this an MQTT broker, and does \
                         [connection] tls match the port (8883 is TLS, 1883 plain)?"
                    )))
                }
            }
            if self.rx_end > self.rx_start {
                let buf = self.rx.get(self.rx_start..self.rx_end).unwrap_or(&[]);
                // 0x15/0x16 start a TLS alert/handshake record: a TLS port.
                if o.tls.is_none() && matches!(buf.first(), Some(0x15 | 0x16)) {
                    return Err(Error::Tls(format!(
                        "{}:{}: the broker answered in TLS: this is a TLS port; set \
                         [connection] tls = true (port 8883), or use the plain port 1883",
                        o.host, o.port
                    )));
                }
                match packet::decode(buf, self.max_packet)? {
                    Decoded::Incomplete { .. } => {}
                    Decoded::Packet { packet, len } => {
                        self.rx_start += len;
                        log::debug!(target: "uiot::wire", "<- {}", packet.summary());
                        return match packet {
                            Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Accepted => {
                                self.after_connect();
                                Ok(ack.session_present)
                            }
                            Packet::ConnAck(ack) => Err(Error::Refused(ack.code)),
                            other => Err(Error::Disconnected(format!(
                                "protocol error: the broker answered CONNECT with {} \
                                 instead of CONNACK",
                                other.name()
                            ))),
                        };
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(format!(
                    "no CONNACK within connect_timeout ({timeout_text}): is this an MQTT broker, \
                     and is the port right (1883 plain, 8883 TLS)?"
                )));
            }
            if !self.readable {
                self.poll_once(Some(left))
                    .map_err(|Closed(why)| Error::Unreachable(why))?;
            }
        }
    }

    fn after_connect(&mut self) {
        let now = Instant::now();
        self.shared.note_sent();
        self.shared
            .timers
            .set(Deadline::PingDue, now + self.shared.options.ping_interval());
    }

    /// The connection is up (CONNACK accepted): restore subscriptions when
    /// the broker kept no session, then send what waits.
    fn connected(&mut self, session_present: bool) {
        self.online = true;
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
        if let Err(e) = self.send_subscribe(filters, None) {
            log::error!("cannot restore the subscriptions: {e}");
        }
    }

    /// The connection dropped and reconnecting is on: keep every message,
    /// tell the application, and schedule the next attempt.
    fn lost(&mut self, why: &str) {
        self.online = false;
        self.close_stream();
        self.tx.clear();
        self.tx_start = 0;
        self.rx_start = 0;
        self.rx_end = 0;
        self.readable = false;
        self.ping_outstanding = false;
        self.shared.timers.cancel(Deadline::PingDue);
        self.shared.timers.cancel(Deadline::PingResp);
        self.session.requeue_inflight();
        let retry = || Error::Disconnected(format!("{why}; try again once reconnected"));
        for (_, p) in self.session.pending_subs.drain() {
            if let Some(d) = p.done {
                let _ = d.send(Err(retry()));
            }
        }
        for (_, p) in self.session.pending_unsubs.drain() {
            let _ = p.done.send(Err(retry()));
        }
        // A message waiting for room is still delivered, but its PUBACK
        // belonged to the old connection.
        if let Some((_, ack)) = self.pending_delivery.as_mut() {
            *ack = None;
        }
        let o = &self.shared.options;
        let lived = self.backoff.connected_at.elapsed();
        if lived >= o.reconnect.stable_after {
            self.backoff.attempt = 0;
            self.backoff.short_closes = 0;
        }
        if lived >= o.reconnect.stable_after + o.reconnect.max {
            self.backoff.kicked = false;
        }
        if why == BROKER_CLOSED && lived < o.reconnect.stable_after {
            self.backoff.short_closes += 1;
        } else {
            self.backoff.short_closes = 0;
        }
        log::warn!("connection lost: {why}; reconnecting");
        self.event(Event::Disconnected(why.to_string()));
        // Three young connections closed by the broker in a row, with the
        // broker reachable in between (a failed attempt resets the count):
        // a broker restarting that often is rarer than two devices sharing
        // one login.
        if self.backoff.short_closes >= KICK_AFTER && !self.backoff.kicked {
            self.backoff.kicked = true;
            let who = match &o.identity {
                Some(id) => format!("{}/{}", id.product_sn, id.device_sn),
                None => o.client_id.clone(),
            };
            log::error!(
                "another device is using the credentials of {who}; this device was \
                 disconnected (reconnecting only every {} from now on)",
                super::secs(o.reconnect.max)
            );
            self.event(Event::Kicked);
        }
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        let r = &self.shared.options.reconnect;
        let wait = self.backoff.next(r.min, r.max);
        log::info!("next connection attempt in {}", super::secs(wait));
        self.shared
            .timers
            .set(Deadline::Reconnect, Instant::now() + wait);
    }

    fn reconnect(&mut self) {
        if self.online || self.closing.is_some() {
            return;
        }
        match self.connect() {
            Ok(session_present) => {
                log::warn!("reconnected");
                self.connected(session_present);
            }
            Err(e) => {
                self.close_stream();
                self.tx.clear();
                self.tx_start = 0;
                self.rx_start = 0;
                self.rx_end = 0;
                // Kicked devices reconnect fine; a failing attempt means
                // the broker or the network is away instead.
                if !matches!(e, Error::Refused(_)) {
                    self.backoff.short_closes = 0;
                    self.backoff.kicked = false;
                }
                log::warn!("reconnect failed: {e}");
                self.schedule_reconnect();
            }
        }
    }

    // ---- the loop ---------------------------------------------------------

    fn run_loop(&mut self) -> Result<(), Closed> {
        loop {
            self.take_commands()?;
            if self.online {
                self.read_in()?;
                self.pump();
                self.write_out()?;
            }
            if self.settle()? {
                return Ok(());
            }
            // Park: announce it, then look once more for a command that
            // raced with the announcement.
            self.shared.io_parked.store(true, Ordering::SeqCst);
            match self.commands.try_recv() {
                Ok(cmd) => {
                    self.shared.io_parked.store(false, Ordering::SeqCst);
                    self.handle_command(cmd)?;
                    continue;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
            if self.online
                && ((self.readable && self.pending_delivery.is_none()) || self.can_send_more())
            {
                // More to read or send right away (we stopped at a batch
                // limit, not because the socket would block).
                self.shared.io_parked.store(false, Ordering::SeqCst);
                continue;
            }
            let r = self.poll_once(None);
            self.shared.io_parked.store(false, Ordering::SeqCst);
            r?;
        }
    }

    fn poll_once(&mut self, timeout: Option<std::time::Duration>) -> Result<(), Closed> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if interrupted(&e) => return Ok(()),
            Err(e) => return Err(Closed(format!("poll failed: {e}"))),
        }
        for ev in self.events.iter() {
            if ev.token() == SOCKET && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                self.readable = true;
            }
        }
        Ok(())
    }

    /// Finish flushes and a requested disconnect; true when the loop is done.
    fn settle(&mut self) -> Result<bool, Closed> {
        let idle = self.tx_start >= self.tx.len()
            && self.session.inflight.is_empty()
            && self.session.waiting.is_empty();
        if idle && self.compact_due {
            self.compact_due = false;
            if let Some(store) = &self.shared.store {
                let mut st = store.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = st.compact() {
                    log::warn!("on-disk queue: {e}");
                }
            }
        }
        if idle {
            for w in self.flush_waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
            if self.closing.is_some() {
                self.finish_disconnect(Ok(()));
                return Ok(true);
            }
        } else if self.closing.is_some() && !self.online {
            // Offline: nothing can be flushed; stop now.
            let n = self.session.inflight.len() + self.session.waiting.len();
            let kept = if self.shared.store.is_some() {
                " (QoS 1 messages stay in the on-disk queue for the next start)"
            } else {
                ""
            };
            self.finish_disconnect(Err(Error::Disconnected(format!(
                "{n} message(s) were not sent: the broker is unreachable{kept}"
            ))));
            return Ok(true);
        }
        Ok(false)
    }

    fn finish_disconnect(&mut self, result: Result<(), Error>) {
        if self.online {
            let mut bye = Vec::with_capacity(2);
            if Packet::Disconnect.encode(&mut bye).is_ok() {
                log::debug!(target: "uiot::wire", "-> DISCONNECT");
                self.tx.extend_from_slice(&bye);
            }
            // Best effort: a DISCONNECT that does not fit the socket now is skipped.
            let _ = self.write_out();
        }
        if let Some(done) = self.closing.take() {
            self.shared.mark_closed(BY_APPLICATION);
            let _ = done.send(result);
        }
    }

    fn take_commands(&mut self) -> Result<(), Closed> {
        let max_waiting = self.shared.options.queue.max_messages;
        // Online, a long waiting queue means the link is the bottleneck:
        // leave commands in the channel so callers feel the back-pressure.
        while self.tx.len() - self.tx_start < TX_HIGH_WATER
            && (!self.online || self.session.waiting.len() < max_waiting)
        {
            match self.commands.try_recv() {
                Ok(cmd) => self.handle_command(cmd)?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn handle_command(&mut self, cmd: Command) -> Result<(), Closed> {
        match cmd {
            Command::Publish {
                topic,
                payload,
                qos,
                done,
                store_id,
            } => self.publish(topic, payload, qos, done, store_id),
            Command::Subscribe { filters, done } => self.subscribe(filters, done),
            Command::Unsubscribe { filters, done } => self.unsubscribe(filters, done),
            Command::Flush { done } => {
                self.flush_waiters.push(done);
                Ok(())
            }
            Command::Disconnect { done } => {
                if self.closing.is_none() {
                    self.closing = Some(done);
                    let t = Instant::now() + self.shared.options.shutdown_timeout;
                    self.shared.timers.set(Deadline::Shutdown, t);
                } else {
                    let _ = done.send(Ok(()));
                }
                Ok(())
            }
            Command::Timer(kind) => self.deadline(kind),
        }
    }

    fn deadline(&mut self, kind: Deadline) -> Result<(), Closed> {
        let now = Instant::now();
        match kind {
            Deadline::Reconnect => {
                self.reconnect();
                Ok(())
            }
            Deadline::StoreSync => {
                self.shared.sync_store();
                Ok(())
            }
            Deadline::PingDue | Deadline::PingResp if !self.online => Ok(()),
            Deadline::PingDue => {
                let o = &self.shared.options;
                let (interval, ping_timeout) = (o.ping_interval(), o.effective_ping_timeout());
                if !self.ping_outstanding {
                    log::debug!(target: "uiot::wire", "-> PINGREQ");
                    let _ = Packet::PingReq.encode(&mut self.tx);
                    self.ping_outstanding = true;
                    self.shared
                        .timers
                        .set(Deadline::PingResp, now + ping_timeout);
                }
                self.shared.timers.set(Deadline::PingDue, now + interval);
                Ok(())
            }
            Deadline::PingResp if self.ping_outstanding => Err(Closed(format!(
                "no PINGRESP within {}: the connection is dead",
                super::secs(self.shared.options.effective_ping_timeout())
            ))),
            Deadline::PingResp => Ok(()),
            Deadline::Shutdown => {
                if self.closing.is_some() {
                    let n = self.session.inflight.len() + self.session.waiting.len();
                    self.finish_disconnect(Err(Error::Timeout(format!(
                        "{n} message(s) still unacknowledged after shutdown_timeout"
                    ))));
                    return Err(Closed(BY_APPLICATION.into()));
                }
                Ok(())
            }
        }
    }

    fn refuse_if_closing<T>(&self, done: &Sender<Result<T, Error>>) -> bool {
        if self.closing.is_some() {
            let _ = done.send(Err(Error::Disconnected(
                "the client is disconnecting".into(),
            )));
            return true;
        }
        false
    }

    fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        done: Option<Sender<Result<(), Error>>>,
        store_id: Option<u64>,
    ) -> Result<(), Closed> {
        if let Some(d) = &done {
            if self.refuse_if_closing(d) {
                // Accepted into the on-disk queue already: it stays there
                // for the next start.
                self.shared.release(payload.len());
                return Ok(());
            }
        }
        if qos == QoS::AtMostOnce
            && !self.online
            && self.session.waiting.len() >= self.shared.options.queue.max_messages
        {
            self.dropped(&format!("a QoS 0 message to {topic} (offline, queue full)"));
            return Ok(());
        }
        self.session.waiting.push_back(Outgoing {
            topic,
            payload,
            qos,
            done,
            pkid: None,
            store_id,
        });
        if self.shared.options.queue.on_full == OnFull::DropOldest {
            while self.shared.capacity.over() {
                let pos = self
                    .session
                    .waiting
                    .iter()
                    .position(|m| m.qos == QoS::AtLeastOnce && m.pkid.is_none());
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
        Ok(())
    }

    fn dropped(&self, what: &str) {
        let n = self.shared.capacity.dropped.fetch_add(1, Ordering::Relaxed) as u64 + 1;
        if n == 1 || n % 100 == 0 {
            log::warn!("queue full: dropped {what} ({n} dropped so far)");
        }
        self.event(Event::Dropped(n));
    }

    /// Everything written, and a waiting message could go out now.
    fn can_send_more(&self) -> bool {
        if self.tx_start < self.tx.len() {
            return false; // the socket would block: wait for WRITABLE
        }
        let max_inflight = usize::from(self.shared.options.max_inflight);
        self.session
            .waiting
            .front()
            .is_some_and(|m| m.qos == QoS::AtMostOnce || self.session.inflight.len() < max_inflight)
    }

    /// Move waiting messages onto the wire: QoS 0 at once, QoS 1 while the
    /// in-flight window has room.
    fn pump(&mut self) {
        let max_inflight = usize::from(self.shared.options.max_inflight);
        while self.online && self.tx.len() - self.tx_start < TX_HIGH_WATER {
            let Some(front) = self.session.waiting.front() else {
                break;
            };
            if front.qos == QoS::AtLeastOnce && self.session.inflight.len() >= max_inflight {
                break;
            }
            let Some(mut m) = self.session.waiting.pop_front() else {
                break;
            };
            match m.qos {
                QoS::AtMostOnce => {
                    match packet::encode_publish(
                        &mut self.tx,
                        &m.topic,
                        &m.payload,
                        packet::QoS::AtMostOnce,
                        false,
                        false,
                        None,
                    ) {
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
                        packet::QoS::AtLeastOnce,
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
                            if let Some(d) = m.done {
                                let _ = d.send(Err(Error::Protocol(e)));
                            }
                        }
                    }
                }
            }
        }
    }

    fn subscribe(
        &mut self,
        filters: Vec<(String, QoS)>,
        done: Sender<Result<Vec<QoS>, Error>>,
    ) -> Result<(), Closed> {
        if self.refuse_if_closing(&done) {
            return Ok(());
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
                return Ok(());
            }
        }
        if let Err(e) = self.send_subscribe(filters, Some(done.clone())) {
            let _ = done.send(Err(Error::Protocol(e)));
        }
        Ok(())
    }

    /// Encode a SUBSCRIBE and remember it until its SUBACK.
    fn send_subscribe(
        &mut self,
        filters: Vec<(String, QoS)>,
        done: Option<Sender<Result<Vec<QoS>, Error>>>,
    ) -> Result<(), packet::PacketError> {
        let id = self.session.next_id();
        let pkt = Packet::Subscribe(packet::Subscribe {
            pkid: id,
            filters: filters.iter().map(|(f, q)| (f.clone(), q.wire())).collect(),
        });
        pkt.encode(&mut self.tx)?;
        log::debug!(target: "uiot::wire", "-> {}", pkt.summary());
        self.session
            .pending_subs
            .insert(id, PendingSub { filters, done });
        Ok(())
    }

    fn unsubscribe(
        &mut self,
        filters: Vec<String>,
        done: Sender<Result<(), Error>>,
    ) -> Result<(), Closed> {
        if self.refuse_if_closing(&done) {
            return Ok(());
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
        Ok(())
    }

    // ---- writing ----------------------------------------------------------

    fn write_out(&mut self) -> Result<(), Closed> {
        let mut wrote = false;
        while self.tx_start < self.tx.len() {
            let start = self.tx_start;
            let stream = self
                .stream
                .as_mut()
                .ok_or_else(|| Closed("not connected".into()))?;
            let n = {
                let Some(pending) = self.tx.get(start..) else {
                    break;
                };
                match stream.write(pending) {
                    Ok(0) => return Err(Closed("the connection closed while writing".into())),
                    Ok(n) => n,
                    Err(e) if would_block(&e) => break,
                    Err(e) if interrupted(&e) => continue,
                    Err(e) => return Err(Closed(format!("write failed: {e}"))),
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
        }
        Ok(())
    }

    // ---- reading ----------------------------------------------------------

    /// Read what the socket has (until it would block) and handle every
    /// whole packet, unless the message queue is full.
    fn read_in(&mut self) -> Result<(), Closed> {
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
    fn read_once(&mut self) -> Result<(), Closed> {
        self.make_room();
        let end = self.rx_end;
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| Closed("not connected".into()))?;
        let Some(space) = self.rx.get_mut(end..) else {
            return Err(Closed("receive buffer error".into()));
        };
        match stream.read(space) {
            Ok(0) => Err(Closed(BROKER_CLOSED.into())),
            Ok(n) => {
                self.rx_end += n;
                Ok(())
            }
            Err(e) if would_block(&e) => {
                self.readable = false;
                Ok(())
            }
            Err(e) if interrupted(&e) => Ok(()),
            Err(e) => Err(Closed(format!("read failed: {e}"))),
        }
    }

    fn make_room(&mut self) {
        if self.rx_start == self.rx_end {
            self.rx_start = 0;
            self.rx_end = 0;
        }
        if self.rx.len() - self.rx_end >= READ_CHUNK / 4 {
            return;
        }
        if self.rx_start > 0 {
            self.rx.copy_within(self.rx_start..self.rx_end, 0);
            self.rx_end -= self.rx_start;
            self.rx_start = 0;
        }
        if self.rx.len() - self.rx_end < READ_CHUNK / 4 {
            let want = (self.rx.len() * 2).min(self.max_packet + READ_CHUNK);
            if want > self.rx.len() {
                self.rx.resize(want, 0);
            }
        }
    }

    fn process_rx(&mut self) -> Result<(), Closed> {
        loop {
            if let Some((msg, ack)) = self.pending_delivery.take() {
                self.deliver(msg, ack);
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
                Err(e) => {
                    return Err(Closed(format!(
                        "protocol error: the broker sent an invalid packet: {e}"
                    )))
                }
            }
        }
    }

    /// Hand a message to the application; PUBACK (QoS 1) only once it is in
    /// the queue. When the queue is full, keep it and stop reading.
    fn deliver(&mut self, msg: Message, ack: Option<u16>) {
        // Announce the stall before trying, so a consumer that frees room
        // right now sees the flag and wakes us.
        self.shared.inbound_stalled.store(true, Ordering::SeqCst);
        match self.messages.try_send(msg) {
            Ok(()) => {
                self.shared.inbound_stalled.store(false, Ordering::SeqCst);
                if let Some(id) = ack {
                    log::debug!(target: "uiot::wire", "-> PUBACK id={id}");
                    let _ = Packet::PubAck(id).encode(&mut self.tx);
                }
            }
            Err(TrySendError::Full(msg)) => {
                self.pending_delivery = Some((msg, ack));
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.inbound_stalled.store(false, Ordering::SeqCst);
            }
        }
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), Closed> {
        if log::log_enabled!(target: "uiot::wire", log::Level::Debug) {
            log::debug!(target: "uiot::wire", "<- {}", packet.summary());
        }
        match packet {
            Packet::Publish(p) => {
                let (qos, id) = match (p.qos, p.pkid) {
                    (packet::QoS::AtMostOnce, _) => (QoS::AtMostOnce, None),
                    (packet::QoS::AtLeastOnce, Some(id)) => (QoS::AtLeastOnce, Some(id)),
                    _ => {
                        return Err(Closed(
                            "protocol error: the broker sent a QoS 2 PUBLISH, which UIoT Core \
                             does not use"
                                .into(),
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
                        let _ = Packet::PubAck(id).encode(&mut self.tx);
                    }
                    _ => self.deliver(msg, id),
                }
            }
            Packet::PubAck(id) => match self.session.ack(id) {
                Some(m) => {
                    self.shared.release(m.payload.len());
                    self.shared.unstore(m.store_id);
                    self.compact_due = self.shared.store.is_some();
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
                    return Err(Closed(format!(
                        "protocol error: SUBACK has {} codes for {} filters",
                        ack.codes.len(),
                        pending.filters.len()
                    )));
                }
                let mut granted = Vec::with_capacity(ack.codes.len());
                let mut refused = None;
                for ((filter, _), code) in pending.filters.into_iter().zip(ack.codes) {
                    match code {
                        SubAckCode::Success(q) => {
                            let q = if q == packet::QoS::AtMostOnce {
                                QoS::AtMostOnce
                            } else {
                                QoS::AtLeastOnce
                            };
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
                return Err(Closed(format!(
                    "protocol error: the broker sent {}, a QoS 2 packet UIoT Core does not use",
                    packet.name()
                )))
            }
            other => {
                return Err(Closed(format!(
                    "protocol error: the broker sent {}, which a broker must not send here",
                    other.name()
                )))
            }
        }
        Ok(())
    }

    // ---- closing ----------------------------------------------------------

    fn close_stream(&mut self) {
        if let Some(mut s) = self.stream.take() {
            let _ = s.deregister(&self.poll);
            s.shutdown();
        }
    }

    fn teardown(&mut self, reason: &str) {
        self.shared.mark_closed(reason);
        self.shared.timers.clear();
        self.close_stream();
        if reason != BY_APPLICATION {
            log::warn!("connection closed: {reason}");
        }
        let err = || Error::Disconnected(reason.to_string());
        self.session.requeue_inflight();
        // Messages in the on-disk queue stay there for the next start.
        self.shared.sync_store();
        for m in self.session.waiting.drain(..) {
            self.shared.release(m.payload.len());
            if let Some(d) = m.done {
                let _ = d.send(Err(err()));
            }
        }
        for (_, p) in self.session.pending_subs.drain() {
            if let Some(d) = p.done {
                let _ = d.send(Err(err()));
            }
        }
        for (_, p) in self.session.pending_unsubs.drain() {
            let _ = p.done.send(Err(err()));
        }
        for w in self.flush_waiters.drain(..) {
            let _ = w.send(Err(err()));
        }
        if let Some(done) = self.closing.take() {
            let _ = done.send(Ok(()));
        }
        // Fail whatever is still queued, so no caller waits forever.
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Publish { done: Some(d), .. } => {
                    let _ = d.send(Err(err()));
                }
                Command::Subscribe { done, .. } => {
                    let _ = done.send(Err(err()));
                }
                Command::Unsubscribe { done, .. } | Command::Flush { done } => {
                    let _ = done.send(Err(err()));
                }
                Command::Disconnect { done } => {
                    let _ = done.send(Ok(()));
                }
                _ => {}
            }
        }
        self.event(Event::Disconnected(reason.to_string()));
    }
}
