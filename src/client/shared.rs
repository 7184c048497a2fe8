//! The state the client handles, the I/O thread and the timer thread share:
//! the command channel and its park flag, the queue's capacity (what
//! `[queue]` bounds), the rate limiter, why the client closed, and the
//! on-disk queue.
//!
//! Owns: [`Shared`], [`Command`], [`Capacity`] and the small helpers every
//! thread uses ([`later`], [`secs`], [`lock`]).
//! Must not touch: the socket (the I/O thread's), the public API.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::chan::SyncSender;
use super::reply;

use super::io;
use super::store;
use super::timer::{self, Timers};
use super::{Message, OnFull, Options, QoS};
use crate::error::Error;
use crate::platform::RateLimiter;

/// Commands from callers (and the timer) to the I/O thread.
pub(crate) enum Command {
    Publish {
        topic: Arc<str>,
        payload: Vec<u8>,
        qos: QoS,
        done: Option<reply::Sender<Result<(), Error>>>,
        store_id: Option<u64>,
    },
    Subscribe {
        filters: Vec<(String, QoS)>,
        done: reply::Sender<Result<Vec<QoS>, Error>>,
    },
    Unsubscribe {
        filters: Vec<String>,
        done: reply::Sender<Result<(), Error>>,
    },
    /// The application took an inbound QoS 1 message: acknowledge it.
    Ack {
        id: u16,
        conn: u32,
    },
    Flush {
        done: reply::Sender<Result<(), Error>>,
    },
    Disconnect {
        done: reply::Sender<Result<(), Error>>,
    },
    Timer(timer::Deadline),
    /// Messages whose topic starts with `prefix` go to `tx` (a platform
    /// service's queue) instead of the application's.
    Route {
        prefix: String,
        tx: SyncSender<Inbound>,
    },
}

/// How many commands the channel to the I/O thread holds: room for a full
/// queue (`max_messages`, up to 1024) and a few others, so that publishers
/// wait on the queue's bound (which wakes them in batches) rather than on
/// the channel (which wakes them for every free slot: a context switch
/// per message). About 100 bytes a slot.
pub(crate) fn command_queue(max_messages: usize) -> usize {
    max_messages.clamp(16, 1024) + 32
}

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
    pub(crate) used: Mutex<(usize, usize)>,
    pub(crate) room: Condvar,
    /// Callers blocked in `acquire` (guarded by `used`'s lock in spirit:
    /// changed and read only while holding it), so that a release wakes
    /// nobody, and costs no syscall, when nobody waits.
    pub(crate) blocked: AtomicUsize,
    pub(crate) max_messages: usize,
    pub(crate) max_bytes: usize,
    pub(crate) on_full: OnFull,
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
    /// Neither a publish rate nor a bandwidth limit applies: the limiter
    /// need not be locked at all.
    pub(crate) unlimited: bool,
    pub(crate) closed: Mutex<Option<io::Closed>>,
    pub(crate) is_closed: AtomicBool,
    /// When the socket was last written to.
    pub(crate) last_sent: Mutex<Instant>,
    /// When bytes last came from the socket.
    pub(crate) last_received: Mutex<Instant>,
    pub(crate) timers: Arc<Timers>,
    pub(crate) options: Options,
    /// The on-disk queue (`[queue] dir`).
    pub(crate) store: Option<Mutex<store::Store>>,
    /// A StoreSync deadline is pending.
    pub(crate) sync_pending: AtomicBool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
                // A parked I/O thread must drain; a busy one (or one
                // waiting for the socket) drains when it can, and waking it
                // for every command would only make it spin.
                if self.parked.take_wake() {
                    self.wake();
                }
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

    pub(crate) fn note_received(&self) {
        *lock(&self.last_received) = Instant::now();
    }

    /// Since when the link has been quiet in at least one direction: a
    /// PINGREQ is due one ping interval after it. Not only after nothing
    /// was sent: a client that keeps publishing into a black-holed link
    /// (QoS 0, or QoS 1 slower than the in-flight window fills) would
    /// otherwise never ping, and would find the link dead only when TCP
    /// gave up (about 15 minutes on Linux), or never when a middlebox
    /// acknowledges what it swallows.
    pub(crate) fn quiet_since(&self) -> Instant {
        self.last_sent().min(*lock(&self.last_received))
    }

    /// Take room for a message of `bytes` bytes, per the `on_full` policy.
    pub(crate) fn acquire(&self, bytes: usize) -> Result<(), Error> {
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
    pub(crate) fn persist(&self, topic: &str, payload: &[u8]) -> Result<Option<u64>, Error> {
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

    /// Whether the on-disk queue could record every acknowledgement
    /// (a full disk may keep it from doing so: those messages would be sent
    /// again after a restart).
    pub(crate) fn check_store(&self) -> Result<(), Error> {
        match &self.store {
            Some(store) => lock(store).check(),
            None => Ok(()),
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

    /// Give back the room of a message that is done. Blocked publishers
    /// are woken once the queue is down to three quarters (not for every
    /// message: that would cost a context switch per message).
    pub(crate) fn release(&self, bytes: usize) {
        self.release_many(1, bytes);
    }

    /// [`Shared::release`] for `n` messages of `bytes` bytes in all.
    pub(crate) fn release_many(&self, n: usize, bytes: usize) {
        let c = &self.capacity;
        let mut used = lock(&c.used);
        used.0 = used.0.saturating_sub(n);
        used.1 = used.1.saturating_sub(bytes);
        if c.blocked.load(Ordering::Relaxed) > 0
            && used.0 <= c.max_messages - c.max_messages / 4
            && used.1 <= c.max_bytes - c.max_bytes / 4
        {
            c.room.notify_all();
        }
    }
}
