//! The I/O thread: the only owner of the socket.
//!
//! Owns: the `mio` poll loop and its park protocol, commands from callers
//! and deadlines from the timer, and the end of the client. The seams live
//! in their own files: `connect` (connecting, reconnecting, back-off),
//! `outbound` (publishing, pacing, subscribing, writing), `inbound`
//! (reading, decoding, delivery with back-pressure, acknowledgements),
//! `closed` (why a connection ended), `backoff`, `park`.
//! Must not touch: deadlines (the timer thread keeps them; this thread only
//! sets and cancels them), the caller-facing API.
//!
//! Wake-ups: callers push commands into a bounded channel and wake this
//! thread only when it is parked (see `park`); each wake-up drains every
//! queued command before writing. Memory is bounded by the queue
//! (`[queue]`): each publish holds its room from the caller's side.

mod backoff;
mod closed;
mod connect;
mod inbound;
mod outbound;
mod park;

use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::chan::{Receiver, SyncSender};
use super::reply::Sender;

pub(crate) use closed::Closed;
pub(crate) use park::ParkFlag;

use super::session::{Outgoing, Session};
use super::timer::Deadline;
use super::{later, Command, Event, Inbound, QoS, Shared};
use crate::error::Error;
use crate::transport::{self, interrupted, Stream};
use backoff::Backoff;
use park::Park;

/// Poll token of the waker.
pub(crate) const WAKER: Token = Token(0);
/// Poll token of the socket.
const SOCKET: Token = Token(1);
/// Encode no more messages, and park for the socket only (not for
/// commands), while this much is waiting to be written.
const TX_HIGH_WATER: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// Called on the timer thread when a deadline is due.
pub(crate) fn on_deadline(shared: &Shared, kind: Deadline) {
    if kind == Deadline::PingDue {
        // Only wake the I/O thread if the connection really was quiet (in
        // either direction) for the whole ping interval; otherwise look
        // again later.
        let next = later(shared.quiet_since(), shared.options.ping_interval());
        if next > later(Instant::now(), Duration::from_millis(1)) {
            shared.timers.set(Deadline::PingDue, next);
            return;
        }
    }
    let _ = shared.send(Command::Timer(kind));
}

struct Io {
    shared: Arc<Shared>,
    poll: Poll,
    events: Events,
    commands: Receiver<Command>,
    messages: SyncSender<Inbound>,
    /// Topic prefixes whose messages go to a queue of their own (the
    /// platform services'), first match wins.
    routes: Vec<(String, SyncSender<Inbound>)>,
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
    pending_delivery: Option<Inbound>,
    flush_waiters: Vec<Sender<Result<(), Error>>>,
    closing: Option<Sender<Result<(), Error>>>,
    max_packet: usize,
    online: bool,
    /// Counts connections; an acknowledgement taken by the application
    /// belongs to the connection its message came on.
    conn: u32,
    backoff: Backoff,
    /// Acknowledged records may be reclaimed once the queue is idle.
    compact_due: bool,
    /// The TLS set-up, made once for every (re)connect.
    tls: Option<transport::Tls>,
    /// The size of the last large PUBLISH written and when, to explain a
    /// broker that closes the connection right after it.
    last_large: Option<(usize, Instant)>,
    /// Consecutive connections closed right after the same large message.
    large_closes: u32,
    /// A pacing deadline is set: the front message waits for the limiter.
    pacing: bool,
}

/// What the I/O thread starts with.
pub(crate) struct Start {
    pub(crate) poll: Poll,
    pub(crate) commands: Receiver<Command>,
    pub(crate) messages: SyncSender<Inbound>,
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
        routes: Vec::new(),
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
        conn: 0,
        compact_due: false,
        tls,
        backoff: Backoff::new(seed()),
        last_large: None,
        large_closes: 0,
        pacing: false,
    };
    for m in recovered {
        io.session.waiting.push_back(Outgoing {
            topic: m.topic.into(),
            payload: m.payload,
            qos: QoS::AtLeastOnce,
            done: None,
            pkid: None,
            store_id: Some(m.id),
            // Recovered messages were never paced in this process.
            paced: false,
        });
    }
    match io.connect() {
        Ok(session_present) => {
            let _ = ready.send(Ok(()));
            io.connected(session_present);
        }
        Err(e) => {
            io.shared.mark_closed(&Closed::ConnectFailed(e.to_string()));
            io.close_stream();
            let _ = ready.send(Err(e));
            return;
        }
    }
    let reason = loop {
        match io.run_loop() {
            Ok(()) => break Closed::ByApplication,
            Err(why) => {
                let reconnect = io.shared.options.reconnect.enabled && io.closing.is_none();
                if !reconnect || why.is_final() {
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
        .map_or(0, |d| {
            // The low 64 bits of the nanoseconds: jitter only.
            #[allow(clippy::cast_possible_truncation)]
            let n = d.as_nanos() as u64;
            n
        });
    t ^ (u64::from(std::process::id()) << 32)
}

impl Io {
    fn event(&self, e: Event) {
        if let Err(TrySendError::Full(e)) = self.events_tx.try_send(e) {
            log::debug!("event queue full, dropped {e:?}");
        }
    }

    /// Bytes encoded and not yet written.
    fn tx_pending(&self) -> usize {
        self.tx.len().saturating_sub(self.tx_start)
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
            // Park for commands, unless the write buffer is over its
            // high-water mark: then only the socket becoming writable
            // matters, and a wake-up per command would only spin.
            if self.tx_pending() < TX_HIGH_WATER {
                match self.shared.parked.park(&self.commands) {
                    Park::Command(cmd) => {
                        self.handle_command(cmd)?;
                        continue;
                    }
                    Park::Gone => return Ok(()),
                    Park::Sleep => {}
                }
            }
            if self.online
                && ((self.readable && self.pending_delivery.is_none()) || self.can_send_more())
            {
                // More to read or send right away (we stopped at a batch
                // limit, not because the socket would block).
                self.shared.parked.unpark();
                continue;
            }
            let r = self.poll_once(None);
            self.shared.parked.unpark();
            r?;
        }
    }

    fn poll_once(&mut self, timeout: Option<Duration>) -> Result<(), Closed> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if interrupted(&e) => return Ok(()),
            Err(e) => return Err(Closed::Io(format!("poll failed: {e}"))),
        }
        for ev in self.events.iter() {
            if ev.token() == SOCKET && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                self.readable = true;
            }
        }
        Ok(())
    }

    /// Nothing waits to be written or acknowledged.
    fn idle(&self) -> bool {
        self.tx_start >= self.tx.len()
            && self.session.inflight.is_empty()
            && self.session.waiting.is_empty()
    }

    /// Finish flushes and a requested disconnect; true when the loop is done.
    fn settle(&mut self) -> Result<bool, Closed> {
        let idle = self.idle();
        if idle && self.compact_due {
            self.compact_due = false;
            self.shared.compact_store();
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
        // A queue that could not record its acknowledgements makes the
        // disconnect fail: the application must hear that those messages
        // come again after a restart.
        self.shared.sync_store();
        let result = result.and_then(|()| self.shared.check_store());
        if self.online {
            let mut bye = Vec::with_capacity(2);
            if crate::packet::Packet::Disconnect.encode(&mut bye).is_ok() {
                log::debug!(target: "uiot::wire", "-> DISCONNECT");
                self.tx.extend_from_slice(&bye);
            }
            // Best effort: a DISCONNECT that does not fit the socket now is skipped.
            let _ = self.write_out();
        }
        if let Some(done) = self.closing.take() {
            self.shared.mark_closed(&Closed::ByApplication);
            let _ = done.send(result);
        }
    }

    /// Take every queued command. Memory stays bounded without leaving
    /// commands in the channel: each publish holds room in the queue
    /// (`[queue]`), and a full queue blocks its publisher before the
    /// command is sent. (Leaving them in the channel made a publisher
    /// wait for every single free slot: a context switch per message.)
    fn take_commands(&mut self) -> Result<(), Closed> {
        while let Ok(cmd) = self.commands.try_recv() {
            self.handle_command(cmd)?;
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
            } => {
                self.publish(topic, payload, qos, done, store_id);
                Ok(())
            }
            Command::Subscribe { filters, done } => {
                self.subscribe(filters, done);
                Ok(())
            }
            Command::Unsubscribe { filters, done } => {
                self.unsubscribe(filters, done);
                Ok(())
            }
            Command::Ack { id, conn } => {
                self.taken(id, conn);
                Ok(())
            }
            Command::Flush { done } => {
                self.flush_waiters.push(done);
                Ok(())
            }
            Command::Disconnect { done } => {
                if self.closing.is_none() {
                    self.closing = Some(done);
                    let t = later(Instant::now(), self.shared.options.shutdown_timeout);
                    self.shared.timers.set(Deadline::Shutdown, t);
                } else {
                    let _ = done.send(Ok(()));
                }
                Ok(())
            }
            Command::Timer(kind) => self.deadline(kind),
            Command::Route { prefix, tx } => {
                self.routes.push((prefix, tx));
                Ok(())
            }
        }
    }

    fn deadline(&mut self, kind: Deadline) -> Result<(), Closed> {
        let now = Instant::now();
        match kind {
            Deadline::Reconnect => self.reconnect(),
            Deadline::StoreSync => {
                self.shared.sync_store();
                Ok(())
            }
            Deadline::Pace => {
                // The loop pumps next: the front message may go now.
                self.pacing = false;
                Ok(())
            }
            Deadline::PingDue | Deadline::PingResp if !self.online => Ok(()),
            Deadline::PingDue => {
                let o = &self.shared.options;
                let (interval, ping_timeout) = (o.ping_interval(), o.effective_ping_timeout());
                // While the application holds back delivery, the PINGRESP
                // waits unread behind the messages: ping again anyway so the
                // broker hears from us within its keep-alive.
                if !self.ping_outstanding || self.stalled() {
                    log::debug!(target: "uiot::wire", "-> PINGREQ");
                    let _ = crate::packet::Packet::PingReq.encode(&mut self.tx);
                    if !self.ping_outstanding {
                        self.ping_outstanding = true;
                        self.shared
                            .timers
                            .set(Deadline::PingResp, later(now, ping_timeout));
                    }
                }
                self.shared
                    .timers
                    .set(Deadline::PingDue, later(now, interval));
                Ok(())
            }
            Deadline::PingResp if self.ping_outstanding => {
                let timeout = self.shared.options.effective_ping_timeout();
                if self.stalled() {
                    // Unread bytes are waiting: the link is alive, the
                    // application is slow. Look again later.
                    self.shared
                        .timers
                        .set(Deadline::PingResp, later(now, timeout));
                    return Ok(());
                }
                Err(Closed::Dead(timeout))
            }
            Deadline::PingResp => Ok(()),
            Deadline::Shutdown => {
                if self.closing.is_some() {
                    let n = self.session.inflight.len() + self.session.waiting.len();
                    self.finish_disconnect(Err(Error::Timeout(format!(
                        "{n} message(s) still not written or acknowledged after \
                         shutdown_timeout ({})",
                        super::secs(self.shared.options.shutdown_timeout)
                    ))));
                    return Err(Closed::ShutdownTimeout);
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

    // ---- closing ----------------------------------------------------------

    fn close_stream(&mut self) {
        if let Some(mut s) = self.stream.take() {
            let _ = s.deregister(&self.poll);
            s.shutdown();
        }
    }

    fn teardown(&mut self, reason: &Closed) {
        self.shared.mark_closed(reason);
        self.shared.timers.clear();
        self.close_stream();
        match reason {
            Closed::ByApplication | Closed::ShutdownTimeout => {}
            Closed::Malformed(_) | Closed::Violation(_) => log::error!("{reason}; stopping"),
            _ => log::warn!("connection closed: {reason}"),
        }
        let err = || reason.to_error();
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
                Command::Publish { done, payload, .. } => {
                    self.shared.release(payload.len());
                    if let Some(d) = done {
                        let _ = d.send(Err(err()));
                    }
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
                Command::Ack { .. } | Command::Timer(_) | Command::Route { .. } => {}
            }
        }
        self.event(Event::Disconnected(reason.to_string()));
    }
}
