//! The blocking client: threads, session state and the public [`Client`].
//!
//! Owns: the I/O thread (the only owner of the socket, inside a `mio` poll
//! loop), the timer thread (deadlines), the session state (packet ids,
//! in-flight QoS 1, subscriptions), and the handle callers use.
//! Must not touch: the wire format (that is `packet`), how bytes reach the
//! broker (that is `transport`), or the INI file (that is `config`).
//!
//! ```no_run
//! use uiot::{Client, Identity, Options, QoS};
//!
//! let device = Identity::new("70ly1tvowt696r15", "aruidyl0rt9tuvod");
//! let mut options = Options::device("127.0.0.1", 1883, device, "hly3dk1u5y8fq0b9");
//! options.keep_alive = std::time::Duration::from_secs(300);
//! let client = Client::connect(options)?;
//! client.subscribe(&[(client.topic("set"), QoS::AtLeastOnce)])?;
//! client.publish(&client.topic("upload"), b"{\"temperature\": 21}", QoS::AtLeastOnce)?;
//! if let Ok(msg) = client.messages().recv_timeout(std::time::Duration::from_secs(5)) {
//!     println!("{} {}", msg.topic, String::from_utf8_lossy(&msg.payload));
//! }
//! client.disconnect()?;
//! # Ok::<(), uiot::Error>(())
//! ```

mod io;
mod options;
mod session;
pub(crate) mod store;
mod timer;

// No 64-bit atomics: 32-bit MIPS (OpenWrt routers) has none.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use options::{OnFull, Options, Queue, Reconnect};

use crate::error::Error;
use crate::packet;
use crate::platform::RateLimiter;
use timer::Timers;

/// Quality of service: the packet layer's one QoS type (0 and 1 only).
pub use crate::packet::QoS;

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

/// Counters of the outgoing queue (see [`Client::queue_stats`]).
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
/// [`Client::flush`] later.
#[derive(Debug)]
pub struct PublishToken {
    rx: Option<Receiver<Result<(), Error>>>,
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

/// Commands from callers (and the timer) to the I/O thread.
pub(crate) enum Command {
    Publish {
        topic: Arc<str>,
        payload: Vec<u8>,
        qos: QoS,
        done: Option<mpsc::Sender<Result<(), Error>>>,
        store_id: Option<u64>,
    },
    Subscribe {
        filters: Vec<(String, QoS)>,
        done: mpsc::Sender<Result<Vec<QoS>, Error>>,
    },
    Unsubscribe {
        filters: Vec<String>,
        done: mpsc::Sender<Result<(), Error>>,
    },
    /// The application took an inbound QoS 1 message: acknowledge it.
    Ack {
        id: u16,
        conn: u32,
    },
    Flush {
        done: mpsc::Sender<Result<(), Error>>,
    },
    Disconnect {
        done: mpsc::Sender<Result<(), Error>>,
    },
    Timer(timer::Deadline),
}

/// Commands queued to the I/O thread at most; the I/O thread drains them
/// in batches, the queue's bounds (`[queue]`) hold back publishers first.
const COMMAND_QUEUE: usize = 256;

/// A message for the application, with what acknowledges it once taken.
pub(crate) struct Inbound {
    pub(crate) msg: Message,
    pub(crate) ack: Option<Ack>,
}

/// The PUBACK owed for an inbound QoS 1 message: its packet id and the
/// connection it came on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ack {
    pub(crate) id: u16,
    pub(crate) conn: u32,
}

/// `at + d`, or a point far beyond any deadline that matters when that
/// would overflow the clock (a `Duration::MAX` timeout means "never").
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .or_else(|| at.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(at)
}

/// Counts messages accepted and not yet done (QoS 1: until PUBACK; QoS 0:
/// until written), so the queue stays within `[queue]` bounds.
pub(crate) struct Capacity {
    used: Mutex<(usize, usize)>,
    room: Condvar,
    /// Callers blocked in `acquire` (guarded by `used`'s lock in spirit:
    /// changed and read only while holding it), so that a release wakes
    /// nobody, and costs no syscall, when nobody waits.
    blocked: AtomicUsize,
    max_messages: usize,
    max_bytes: usize,
    on_full: OnFull,
    /// Messages dropped under drop_oldest / drop_newest.
    pub(crate) dropped: AtomicUsize,
}

impl Capacity {
    fn full(&self, used: (usize, usize), bytes: usize) -> bool {
        used.0 > 0 && (used.0 >= self.max_messages || used.1 + bytes > self.max_bytes)
    }

    /// Whether the queue is over its bounds (for drop_oldest eviction).
    pub(crate) fn over(&self) -> bool {
        let used = *lock(&self.used);
        used.0 > self.max_messages || (used.0 > 1 && used.1 > self.max_bytes)
    }
}

/// State shared by the client handles, the I/O thread and the timer thread.
pub(crate) struct Shared {
    pub(crate) commands: SyncSender<Command>,
    pub(crate) waker: mio::Waker,
    /// The I/O thread is (about to be) parked in poll: wake it.
    pub(crate) parked: io::ParkFlag,
    /// Bumped on every write to the socket and every PUBACK: a drain waits
    /// as long as this moves.
    pub(crate) progress: AtomicUsize,
    /// The message queue was full and the I/O thread stopped reading.
    pub(crate) inbound_stalled: AtomicBool,
    pub(crate) capacity: Capacity,
    pub(crate) limiter: Mutex<RateLimiter>,
    pub(crate) closed: Mutex<Option<io::Closed>>,
    pub(crate) is_closed: AtomicBool,
    /// When the socket was last written to.
    pub(crate) last_sent: Mutex<Instant>,
    pub(crate) timers: Arc<Timers>,
    pub(crate) options: Options,
    /// The on-disk queue (`[queue] dir`).
    pub(crate) store: Option<Mutex<store::Store>>,
    /// A StoreSync deadline is pending.
    pub(crate) sync_pending: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// "1.5 s": tenths of a second, without float formatting (which costs
/// tens of KB on small targets).
pub(crate) fn secs(d: Duration) -> String {
    let tenths = d.as_millis() / 100;
    format!("{}.{} s", tenths / 10, tenths % 10)
}

impl Shared {
    /// Hand a command to the I/O thread, waking it only if it is parked.
    pub(crate) fn send(&self, cmd: Command) -> Result<(), Error> {
        match self.commands.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(cmd)) => {
                self.wake();
                self.commands.send(cmd).map_err(|_| self.closed_error())?;
            }
            Err(TrySendError::Disconnected(_)) => return Err(self.closed_error()),
        }
        if self.parked.take_wake() {
            self.wake();
        }
        Ok(())
    }

    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the I/O thread: {e}");
        }
    }

    pub(crate) fn closed_error(&self) -> Error {
        match lock(&self.closed).as_ref() {
            Some(why) => why.to_error(),
            None => Error::Disconnected("the client was closed".to_string()),
        }
    }

    pub(crate) fn mark_closed(&self, reason: &io::Closed) {
        let mut c = lock(&self.closed);
        if c.is_none() {
            *c = Some(reason.clone());
        }
        self.is_closed.store(true, Ordering::SeqCst);
        drop(c);
        let _guard = lock(&self.capacity.used);
        self.capacity.room.notify_all();
    }

    pub(crate) fn note_sent(&self) {
        *lock(&self.last_sent) = Instant::now();
    }

    pub(crate) fn last_sent(&self) -> Instant {
        *lock(&self.last_sent)
    }

    /// Take room for a message of `bytes` bytes, per the `on_full` policy.
    fn acquire(&self, bytes: usize) -> Result<(), Error> {
        let c = &self.capacity;
        let mut used = lock(&c.used);
        loop {
            if self.is_closed.load(Ordering::SeqCst) {
                return Err(self.closed_error());
            }
            if !c.full(*used, bytes) || c.on_full == OnFull::DropOldest {
                used.0 += 1;
                used.1 += bytes;
                return Ok(());
            }
            if c.on_full == OnFull::DropNewest {
                let n = c.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                return Err(Error::Limit(format!(
                    "the queue is full ({} messages, {} bytes): message dropped \
                     (on_full = drop_newest; {n} dropped so far)",
                    used.0, used.1
                )));
            }
            c.blocked.fetch_add(1, Ordering::Relaxed);
            used = c.room.wait(used).unwrap_or_else(|p| p.into_inner());
            c.blocked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Append a QoS 1 message to the on-disk queue, if there is one; it is
    /// durable (per the fsync policy) when this returns.
    fn persist(&self, topic: &str, payload: &[u8]) -> Result<Option<u64>, Error> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let id = lock(store).append(topic, payload)?;
        if let Some(every) = self.options.queue.fsync_interval {
            if !self.sync_pending.swap(true, Ordering::SeqCst) {
                self.timers
                    .set(timer::Deadline::StoreSync, later(Instant::now(), every));
            }
        }
        Ok(Some(id))
    }

    /// Mark a stored message done (PUBACK, or dropped on purpose).
    pub(crate) fn unstore(&self, id: Option<u64>) {
        if let (Some(store), Some(id)) = (&self.store, id) {
            if let Err(e) = lock(store).ack(id) {
                log::error!("on-disk queue: {e}");
            }
        }
    }

    /// Reclaim acknowledged records of the on-disk queue (when idle).
    pub(crate) fn compact_store(&self) {
        if let Some(store) = &self.store {
            if let Err(e) = lock(store).compact() {
                log::warn!("on-disk queue: {e}");
            }
        }
    }

    /// Sync the on-disk queue.
    pub(crate) fn sync_store(&self) {
        self.sync_pending.store(false, Ordering::SeqCst);
        if let Some(store) = &self.store {
            if let Err(e) = lock(store).sync() {
                log::error!("on-disk queue: {e}");
            }
        }
    }

    /// Give back the room of a message that is done.
    pub(crate) fn release(&self, bytes: usize) {
        let mut used = lock(&self.capacity.used);
        used.0 = used.0.saturating_sub(1);
        used.1 = used.1.saturating_sub(bytes);
        if self.capacity.blocked.load(Ordering::Relaxed) > 0 {
            self.capacity.room.notify_one();
        }
    }
}

/// The messages the broker delivers, in order. Obtained from
/// [`Client::messages`]; every clone reads from the same queue.
///
/// A QoS 1 message is acknowledged to the broker (PUBACK) only when it is
/// taken here: messages still queued when the client disconnects (or the
/// process dies) stay with the broker for the next session
/// (`clean_session = false`).
#[derive(Clone)]
pub struct Messages {
    rx: Arc<Mutex<Receiver<Inbound>>>,
    shared: Arc<Shared>,
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

/// Connection events ([`Event`]), obtained from [`Client::events`].
#[derive(Clone)]
pub struct Events {
    rx: Arc<Mutex<Receiver<Event>>>,
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
}

struct Threads {
    io: Option<JoinHandle<()>>,
    timer: Option<JoinHandle<()>>,
}

/// Closes the connection when the last [`Client`] clone is dropped.
struct Owner {
    shared: Arc<Shared>,
    threads: Mutex<Threads>,
}

impl Owner {
    fn shutdown(&self) -> Result<(), Error> {
        let mut threads = lock(&self.threads);
        let Some(io) = threads.io.take() else {
            return Ok(());
        };
        let (tx, rx) = mpsc::channel();
        // A connection that already ended needs no goodbye.
        let result = match self.shared.send(Command::Disconnect { done: tx }) {
            Ok(()) => rx.recv().unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        let _ = io.join();
        self.shared.timers.stop();
        if let Some(t) = threads.timer.take() {
            let _ = t.join();
        }
        result
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A connection to the broker. Cheap to clone; every clone is the same
/// connection, usable from any thread.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    last_topic: Arc<Mutex<Option<Arc<str>>>>,
    owner: Arc<Owner>,
    messages: Messages,
    events: Events,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.shared.options.client_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connect and block until the broker accepts (CONNACK), refuses
    /// ([`Error::Refused`]) or `connect_timeout` passes.
    pub fn connect(options: Options) -> Result<Client, Error> {
        options.validate()?;
        let tls = match &options.tls {
            Some(t) => Some(crate::transport::Tls::new(t)?),
            None => None,
        };
        let (store, recovered) = match &options.queue.dir {
            None => (None, Vec::new()),
            Some(dir) => {
                let fsync = match options.queue.fsync_interval {
                    None => store::Fsync::Always,
                    Some(d) => store::Fsync::Interval(d),
                };
                let (s, recovered) = store::Store::open(dir, fsync)?;
                if !recovered.is_empty() {
                    log::warn!(
                        "{} unacknowledged message(s) recovered from {}; sending them first",
                        recovered.len(),
                        dir.display()
                    );
                }
                (Some(Mutex::new(s)), recovered)
            }
        };
        let poll = mio::Poll::new().map_err(|e| io_err("creating the poll", e))?;
        let waker = mio::Waker::new(poll.registry(), io::WAKER)
            .map_err(|e| io_err("creating the waker", e))?;
        let timers = Arc::new(Timers::new().map_err(|e| io_err("creating the timerfd", e))?);
        let (cmd_tx, cmd_rx) = mpsc::sync_channel(COMMAND_QUEUE);
        let (msg_tx, msg_rx) = mpsc::sync_channel(options.message_capacity.max(1));
        let (ev_tx, ev_rx) = mpsc::sync_channel(64);
        let shared = Arc::new(Shared {
            commands: cmd_tx,
            waker,
            parked: io::ParkFlag::default(),
            progress: AtomicUsize::new(0),
            inbound_stalled: AtomicBool::new(false),
            capacity: Capacity {
                used: Mutex::new((0, 0)),
                room: Condvar::new(),
                blocked: AtomicUsize::new(0),
                max_messages: options.queue.max_messages.max(1),
                max_bytes: options.queue.max_bytes.max(1),
                on_full: options.queue.on_full,
                dropped: AtomicUsize::new(0),
            },
            limiter: Mutex::new(RateLimiter::new(&options.limits)),
            closed: Mutex::new(None),
            is_closed: AtomicBool::new(false),
            last_sent: Mutex::new(Instant::now()),
            timers: timers.clone(),
            options,
            store,
            sync_pending: AtomicBool::new(false),
        });
        {
            let mut used = lock(&shared.capacity.used);
            for m in &recovered {
                used.0 += 1;
                used.1 += m.payload.len();
            }
        }

        let (ready_tx, ready_rx) = mpsc::channel();
        let io_shared = shared.clone();
        let io = std::thread::Builder::new()
            .name("uiot-io".into())
            .spawn(move || {
                io::run(
                    io_shared,
                    io::Start {
                        poll,
                        commands: cmd_rx,
                        messages: msg_tx,
                        events_tx: ev_tx,
                        ready: ready_tx,
                        recovered,
                        tls,
                    },
                )
            })
            .map_err(|e| io_err("starting the I/O thread", e))?;
        let timer_shared = Arc::downgrade(&shared);
        let timer = std::thread::Builder::new()
            .name("uiot-timer".into())
            .spawn(move || {
                timer::run(timers, move |kind| {
                    if let Some(s) = timer_shared.upgrade() {
                        io::on_deadline(&s, kind);
                    }
                })
            })
            .map_err(|e| io_err("starting the timer thread", e))?;

        let owner = Arc::new(Owner {
            shared: shared.clone(),
            threads: Mutex::new(Threads {
                io: Some(io),
                timer: Some(timer),
            }),
        });
        let result = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(Error::Disconnected("the I/O thread stopped".into())));
        if let Err(e) = result {
            let _ = owner.shutdown();
            return Err(e);
        }
        Ok(Client {
            last_topic: Arc::new(Mutex::new(None)),
            messages: Messages {
                rx: Arc::new(Mutex::new(msg_rx)),
                shared: shared.clone(),
            },
            events: Events {
                rx: Arc::new(Mutex::new(ev_rx)),
            },
            shared,
            owner,
        })
    }

    /// The options this client was made with.
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// A topic of this device: `topic("upload")` is `/PSN/DSN/upload`. A
    /// topic that starts with `/` is returned as it is; without a device
    /// identity every topic is returned as it is.
    pub fn topic(&self, topic: &str) -> String {
        match &self.shared.options.identity {
            Some(id) => id.resolve(topic),
            None => topic.to_string(),
        }
    }

    /// The topic guard (when enforced) and MQTT's own rules, for a publish
    /// topic or a subscription filter.
    fn guard(&self, topic: &str, filter: bool) -> Result<(), Error> {
        let o = &self.shared.options;
        if o.limits.enforce {
            match (&o.identity, filter) {
                (Some(id), false) => id.check_publish(topic)?,
                (Some(id), true) => id.check_subscribe(topic)?,
                (None, _) => crate::platform::check_shape(topic)?,
            }
        }
        let valid = if filter {
            packet::validate_topic_filter(topic)
        } else {
            packet::validate_topic_name(topic)
        };
        valid.map_err(|e| Error::InvalidTopic {
            topic: topic.to_string(),
            reason: e.to_string(),
        })
    }

    /// The topic guard and the packet limit for a publish; returns the
    /// topic shared with the previous publish when it is the same (checked
    /// once: a publisher mostly repeats one topic, and checking it was most
    /// of the per-message cost).
    fn check_publish(&self, topic: &str, payload: &[u8]) -> Result<Arc<str>, Error> {
        let o = &self.shared.options;
        let shared = {
            let mut last = lock(&self.last_topic);
            match &*last {
                Some(t) if **t == *topic => t.clone(),
                _ => {
                    self.guard(topic, false)?;
                    let t: Arc<str> = Arc::from(topic);
                    *last = Some(t.clone());
                    t
                }
            }
        };
        let size = publish_size(topic, payload.len());
        if size > o.limits.max_packet {
            return Err(Error::Limit(format!(
                "a PUBLISH of {size} bytes exceeds the packet limit of {} bytes \
                 (UIoT Core: 256 KiB); split the payload",
                o.limits.max_packet
            )));
        }
        Ok(shared)
    }

    fn pace(&self, bytes: usize) {
        loop {
            let wait = {
                let mut l = lock(&self.shared.limiter);
                if l.is_unlimited() {
                    return;
                }
                l.try_acquire(bytes, Instant::now())
            };
            match wait {
                None => return,
                Some(d) => std::thread::sleep(d),
            }
        }
    }

    /// Publish and block: QoS 0 returns once the message is queued to the
    /// I/O thread (in order; [`Client::flush`] waits until it is written),
    /// QoS 1 returns once the broker acknowledged it (PUBACK), or fails with
    /// [`Error::Timeout`] after `ack_timeout`.
    pub fn publish(&self, topic: &str, payload: &[u8], qos: QoS) -> Result<(), Error> {
        let token = self.start_publish(topic, payload.to_vec(), qos)?;
        token.wait_timeout(self.shared.options.ack_timeout)
    }

    /// Publish without waiting for the acknowledgement: returns once the
    /// message is accepted (for QoS 1, once there is room in the in-flight
    /// window of `max_inflight`). Wait on the token, or drop it and call
    /// [`Client::flush`].
    pub fn start_publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
    ) -> Result<PublishToken, Error> {
        let shared_topic = self.check_publish(topic, &payload)?;
        if self.shared.is_closed.load(Ordering::SeqCst) {
            return Err(self.shared.closed_error());
        }
        self.pace(publish_size(topic, payload.len()));
        let bytes = payload.len();
        // Both QoS take room in the queue: QoS 0 until written, QoS 1 until
        // acknowledged, so memory stays bounded whatever the broker does.
        self.shared.acquire(bytes)?;
        let (done, rx, store_id) = match qos {
            QoS::AtMostOnce => (None, None, None),
            QoS::AtLeastOnce => {
                let store_id = match self.shared.persist(topic, &payload) {
                    Ok(id) => id,
                    Err(e) => {
                        self.shared.release(bytes);
                        return Err(e);
                    }
                };
                let (tx, rx) = mpsc::channel();
                (Some(tx), Some(rx), store_id)
            }
        };
        let sent = self.shared.send(Command::Publish {
            topic: shared_topic,
            payload,
            qos,
            done,
            store_id,
        });
        if let Err(e) = sent {
            self.shared.release(bytes);
            return Err(e);
        }
        Ok(PublishToken { rx })
    }

    /// Subscribe; returns the QoS the broker granted for each filter. A
    /// refused filter (SUBACK 0x80) gives [`Error::SubscribeRefused`].
    pub fn subscribe<S: AsRef<str>>(&self, filters: &[(S, QoS)]) -> Result<Vec<QoS>, Error> {
        if filters.is_empty() {
            return Err(Error::InvalidArgument(
                "subscribe needs at least one filter".into(),
            ));
        }
        let mut list = Vec::with_capacity(filters.len());
        for (f, q) in filters {
            let f = f.as_ref();
            self.guard(f, true)?;
            list.push((f.to_string(), *q));
        }
        let (tx, rx) = mpsc::channel();
        self.shared.send(Command::Subscribe {
            filters: list,
            done: tx,
        })?;
        self.wait_reply(rx, "SUBACK")
    }

    /// Unsubscribe from these filters.
    pub fn unsubscribe<S: AsRef<str>>(&self, filters: &[S]) -> Result<(), Error> {
        if filters.is_empty() {
            return Err(Error::InvalidArgument(
                "unsubscribe needs at least one filter".into(),
            ));
        }
        let mut list = Vec::with_capacity(filters.len());
        for f in filters {
            let f = f.as_ref();
            packet::validate_topic_filter(f).map_err(|e| Error::InvalidTopic {
                topic: f.to_string(),
                reason: e.to_string(),
            })?;
            list.push(f.to_string());
        }
        let (tx, rx) = mpsc::channel();
        self.shared.send(Command::Unsubscribe {
            filters: list,
            done: tx,
        })?;
        self.wait_reply(rx, "UNSUBACK")
    }

    /// Wait until everything published so far is written and every QoS 1
    /// message is acknowledged, or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel();
        self.shared.send(Command::Flush { done: tx })?;
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(self.not_done(timeout, "after")),
            Err(RecvTimeoutError::Disconnected) => Err(self.shared.closed_error()),
        }
    }

    /// Like [`Client::flush`], but waits as long as the broker keeps making
    /// progress (bytes written, acknowledgements received): it fails only
    /// when nothing moved for `stall`. For a publisher that must exit only
    /// after everything it accepted went out, over a slow link.
    pub fn drain(&self, stall: Duration) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel();
        self.shared.send(Command::Flush { done: tx })?;
        let mut seen = self.shared.progress.load(Ordering::Relaxed);
        loop {
            match rx.recv_timeout(stall) {
                Ok(r) => return r,
                Err(RecvTimeoutError::Timeout) => {
                    let now = self.shared.progress.load(Ordering::Relaxed);
                    if now == seen {
                        return Err(self.not_done(stall, "and no progress for"));
                    }
                    seen = now;
                }
                Err(RecvTimeoutError::Disconnected) => return Err(self.shared.closed_error()),
            }
        }
    }

    fn not_done(&self, waited: Duration, how: &str) -> Error {
        let n = lock(&self.shared.capacity.used).0;
        Error::Timeout(format!(
            "{n} message(s) not yet written or acknowledged {how} {}",
            secs(waited)
        ))
    }

    fn wait_reply<T>(&self, rx: Receiver<Result<T, Error>>, what: &str) -> Result<T, Error> {
        let t = self.shared.options.ack_timeout;
        match rx.recv_timeout(t) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                Err(Error::Timeout(format!("no {what} within {}", secs(t))))
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.shared.closed_error()),
        }
    }

    /// The incoming messages. When the queue (`message_capacity`) is full
    /// the client stops reading from the broker, which also holds back the
    /// PUBACKs behind those messages: an application that subscribes and
    /// publishes QoS 1 should take messages in a thread of its own.
    pub fn messages(&self) -> Messages {
        self.messages.clone()
    }

    /// Connection events.
    pub fn events(&self) -> Events {
        self.events.clone()
    }

    /// Counters of the outgoing queue: drops and, with an on-disk queue, how
    /// much was written (bytes per message matter for flash wear).
    pub fn queue_stats(&self) -> QueueStats {
        let mut st = QueueStats {
            dropped: self.shared.capacity.dropped.load(Ordering::Relaxed) as u64,
            ..QueueStats::default()
        };
        if let Some(store) = &self.shared.store {
            let s = lock(store);
            st.stored = s.appended();
            st.bytes_written = s.bytes_written();
            st.pending = s.pending().0;
        }
        st
    }

    /// Whether the connection is still up.
    pub fn is_connected(&self) -> bool {
        !self.shared.is_closed.load(Ordering::SeqCst)
    }

    /// Flush what was published (waiting up to `shutdown_timeout` for QoS 1
    /// acknowledgements), send DISCONNECT, close the socket and stop the
    /// threads. Every clone is closed with it.
    pub fn disconnect(&self) -> Result<(), Error> {
        self.owner.shutdown()
    }
}

fn io_err(context: &str, source: std::io::Error) -> Error {
    Error::Io {
        context: context.to_string(),
        source,
    }
}

/// Size on the wire of a PUBLISH (QoS 1 worst case).
pub(crate) fn publish_size(topic: &str, payload: usize) -> usize {
    let remaining = 2 + topic.len() + 2 + payload;
    let len_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + len_bytes + remaining
}
