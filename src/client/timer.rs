//! The timer thread: one set of deadlines, one sleep until the nearest.
//!
//! Owns: the deadlines of a connection (when to check for a due PINGREQ,
//! when a PINGRESP is overdue, when a graceful shutdown must give up) and the
//! thread that sleeps until the nearest one.
//! Must not touch: the socket, packets, session state. It only tells the I/O
//! thread (through the callback the client gives it) that a deadline is due.
//!
//! The thread blocks on a Linux timerfd. Any thread may move a deadline by
//! re-arming the timerfd, which never wakes the timer thread: it wakes only
//! when a deadline is really due. An idle client therefore wakes about once
//! per keep-alive interval.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fd::OwnedFd;
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

/// The kinds of deadline a connection keeps (at most one of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Check whether a PINGREQ is due (nothing sent, or nothing received, for
    /// the ping interval).
    PingDue = 0,
    /// The PINGRESP for the last PINGREQ is overdue.
    PingResp = 1,
    /// A graceful disconnect must finish by now.
    Shutdown = 2,
    /// Time for the next reconnect attempt.
    Reconnect = 3,
    /// Sync the on-disk queue (`fsync = interval_ms N`).
    StoreSync = 4,
    /// The rate or bandwidth limit lets the next resent message go.
    Pace = 5,
}

const KINDS: [Deadline; N] = [
    Deadline::PingDue,
    Deadline::PingResp,
    Deadline::Shutdown,
    Deadline::Reconnect,
    Deadline::StoreSync,
    Deadline::Pace,
];
const N: usize = 6;

struct State {
    at: [Option<Instant>; N],
    stop: bool,
}

impl State {
    /// The slot of one kind (every kind has one: `KINDS` lists them all).
    fn slot(&mut self, kind: Deadline) -> Option<&mut Option<Instant>> {
        self.at.get_mut(kind as usize)
    }
}

/// The deadlines, shared by the timer thread and whoever sets them.
pub(crate) struct Timers {
    state: Mutex<State>,
    fd: OwnedFd,
}

impl Timers {
    /// A new, empty set with its timerfd.
    pub(crate) fn new() -> io::Result<Self> {
        let fd = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC)?;
        Ok(Timers {
            state: Mutex::new(State {
                at: [None; N],
                stop: false,
            }),
            fd,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set (or move) a deadline.
    pub(crate) fn set(&self, kind: Deadline, at: Instant) {
        let mut st = self.lock();
        if let Some(slot) = st.slot(kind) {
            *slot = Some(at);
        }
        self.arm(&st);
    }

    /// Remove a deadline.
    pub(crate) fn cancel(&self, kind: Deadline) {
        let mut st = self.lock();
        if st.slot(kind).and_then(Option::take).is_some() {
            self.arm(&st);
        }
    }

    /// Remove every deadline.
    pub(crate) fn clear(&self) {
        let mut st = self.lock();
        st.at = [None; N];
        self.arm(&st);
    }

    /// Make the timer thread exit.
    pub(crate) fn stop(&self) {
        let mut st = self.lock();
        st.stop = true;
        self.settime(Duration::from_nanos(1));
    }

    fn arm(&self, st: &State) {
        if st.stop {
            return;
        }
        let next = st.at.iter().flatten().min().copied();
        let wait = match next {
            Some(t) => t
                .saturating_duration_since(Instant::now())
                .max(Duration::from_nanos(1)),
            None => Duration::ZERO, // disarms
        };
        self.settime(wait);
    }

    fn settime(&self, wait: Duration) {
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: wait.as_secs().try_into().unwrap_or(i64::MAX),
                // Below 1e9, so it fits the i32 `tv_nsec` of 32-bit targets
                // (where the conversion is fallible; here it is not).
                #[allow(clippy::unnecessary_fallible_conversions)]
                tv_nsec: wait.subsec_nanos().try_into().unwrap_or(999_999_999),
            },
        };
        if let Err(e) = timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec) {
            log::error!("timer: cannot arm the timerfd: {e}");
        }
    }

    /// Block until the nearest deadline is due; return the due ones (removed
    /// from the set), or `None` once [`Timers::stop`] was called. No heap
    /// allocation: the timer thread never gets a malloc arena of its own.
    fn wait_due(&self) -> Option<[Option<Deadline>; N]> {
        loop {
            let mut buf = [0u8; 8];
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => {
                    log::error!("timer: reading the timerfd failed: {e}");
                    return None;
                }
            }
            let mut st = self.lock();
            if st.stop {
                return None;
            }
            // A deadline within a millisecond counts as due: the timerfd and
            // Instant may round differently.
            let now = Instant::now() + Duration::from_millis(1);
            let mut due = [None; N];
            let mut any = false;
            for (kind, out) in KINDS.into_iter().zip(due.iter_mut()) {
                if let Some(slot) = st.slot(kind) {
                    if slot.is_some_and(|at| at <= now) {
                        *slot = None;
                        *out = Some(kind);
                        any = true;
                    }
                }
            }
            self.arm(&st);
            if any {
                return Some(due);
            }
        }
    }
}

/// Run the timer thread: call `on_due` for each deadline as it falls due,
/// until the set is stopped.
pub(crate) fn run(timers: Arc<Timers>, mut on_due: impl FnMut(Deadline)) {
    while let Some(due) = timers.wait_due() {
        for kind in due.into_iter().flatten() {
            on_due(kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn fires_in_order_and_moves_without_waking() {
        let timers = Arc::new(Timers::new().unwrap());
        let (tx, rx) = mpsc::channel();
        let t = timers.clone();
        let th = std::thread::spawn(move || run(t, move |k| tx.send((k, Instant::now())).unwrap()));
        let t0 = Instant::now();
        timers.set(Deadline::PingResp, t0 + Duration::from_millis(80));
        timers.set(Deadline::PingDue, t0 + Duration::from_millis(40));
        // Moved later before it fired: fires at the new time only.
        timers.set(Deadline::PingDue, t0 + Duration::from_millis(120));
        let (k1, at1) = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        let (k2, at2) = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!((k1, k2), (Deadline::PingResp, Deadline::PingDue));
        assert!(at1 >= t0 + Duration::from_millis(79), "{:?}", at1 - t0);
        assert!(at2 >= t0 + Duration::from_millis(119), "{:?}", at2 - t0);
        timers.set(
            Deadline::Shutdown,
            Instant::now() + Duration::from_millis(30),
        );
        timers.cancel(Deadline::Shutdown);
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        timers.stop();
        th.join().unwrap();
    }
}
