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

mod chan;
mod inbox;
mod io;
mod options;
mod reply;
mod session;
mod shared;
pub(crate) mod store;
mod timer;
mod types;
mod weak;

// No 64-bit atomics: 32-bit MIPS (OpenWrt routers) has none.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reply::Receiver;

pub use inbox::{Events, Messages};
pub use options::{OnFull, Options, Queue, Reconnect};
pub(crate) use shared::{later, lock, secs, Ack, Capacity, Command, Inbound, Shared};
pub use types::{Event, Message, PublishToken, QueueStats};
pub use weak::WeakClient;

use crate::error::Error;
use crate::packet;
use crate::platform::RateLimiter;
use timer::Timers;

/// Quality of service: the packet layer's one QoS type (0 and 1 only).
pub use crate::packet::QoS;

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
        let (tx, rx) = reply::channel();
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
        let (cmd_tx, cmd_rx) =
            chan::sync_channel(shared::command_queue(options.queue.max_messages));
        let (msg_tx, msg_rx) = chan::sync_channel(options.message_capacity.max(1));
        let (ev_tx, ev_rx) = chan::sync_channel(64);
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
            unlimited: RateLimiter::new(&options.limits).is_unlimited(),
            limiter: Mutex::new(RateLimiter::new(&options.limits)),
            closed: Mutex::new(None),
            is_closed: AtomicBool::new(false),
            last_sent: Mutex::new(Instant::now()),
            last_received: Mutex::new(Instant::now()),
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

        let (ready_tx, ready_rx) = reply::channel();
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
        if self.shared.unlimited {
            return;
        }
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
        let rx = self.submit(topic, payload, qos, true)?;
        Ok(PublishToken { rx })
    }

    /// Accept a message for sending and return at once, without a token:
    /// for a stream of messages whose outcome is checked as a whole with
    /// [`Client::flush`] or [`Client::drain`] (as `uiot pub -l` does).
    /// Saves the per-message reply channel of [`Client::start_publish`].
    pub fn enqueue(&self, topic: &str, payload: Vec<u8>, qos: QoS) -> Result<(), Error> {
        self.submit(topic, payload, qos, false).map(|_| ())
    }

    /// Check, pace, take room, store (QoS 1 with `[queue] dir`) and hand to
    /// the I/O thread; with `token`, the receiver of the outcome (QoS 1).
    fn submit(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: QoS,
        token: bool,
    ) -> Result<Option<Receiver<Result<(), Error>>>, Error> {
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
                if token {
                    let (tx, rx) = reply::channel();
                    (Some(tx), Some(rx), store_id)
                } else {
                    (None, None, store_id)
                }
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
        Ok(rx)
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
        let (tx, rx) = reply::channel();
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
        let (tx, rx) = reply::channel();
        self.shared.send(Command::Unsubscribe {
            filters: list,
            done: tx,
        })?;
        self.wait_reply(rx, "UNSUBACK")
    }

    /// Wait until everything published so far is written and every QoS 1
    /// message is acknowledged, or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let (tx, rx) = reply::channel();
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
        let (tx, rx) = reply::channel();
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
