//! The one reply a call waits for: a publish's PUBACK (its
//! [`PublishToken`](super::PublishToken)), a SUBACK, a flush, a disconnect,
//! the first connection.
//!
//! Owns: a slot for one value, sent once by the I/O thread, and the wait
//! for it. std's `mpsc::channel` took about 2.8 KB for each (a 31-slot
//! block at the first send, cache-padded heads), which an application
//! holding a token per queued QoS 1 message pays for every one of them (a
//! device offline with 1,000 queued was 2.8 MB); this is one small
//! allocation. Same method names and errors as `std::sync::mpsc`, so
//! callers only change their `use`.
//! Must not touch: what the reply means.

use std::sync::mpsc::{RecvError, RecvTimeoutError, SendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::chan::wait_until;

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    value: Option<T>,
    /// The sender sent its value or is gone: nothing more will come.
    done: bool,
    /// The receiver is blocked: only then is a wake (a system call) needed.
    waiting: bool,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding it; a poisoned slot is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where the reply goes (the I/O thread's end).
#[derive(Debug)]
pub(crate) struct Sender<T> {
    slot: Arc<Slot<T>>,
}

/// What waits for the reply (the caller's end).
#[derive(Debug)]
pub(crate) struct Receiver<T> {
    slot: Arc<Slot<T>>,
}

impl<T> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reply")
    }
}

/// A slot for one reply.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            value: None,
            done: false,
            waiting: false,
        }),
        ready: Condvar::new(),
    });
    (Sender { slot: slot.clone() }, Receiver { slot })
}

impl<T> Sender<T> {
    /// Deliver the reply; a second one is refused. The caller may have
    /// stopped waiting: then the value is dropped with the slot.
    pub(crate) fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut state = self.slot.lock();
        if state.done {
            return Err(SendError(value));
        }
        state.value = Some(value);
        state.done = true;
        if state.waiting {
            self.slot.ready.notify_one();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.slot.lock();
        if !state.done {
            state.done = true;
            if state.waiting {
                self.slot.ready.notify_one();
            }
        }
    }
}

impl<T> Receiver<T> {
    /// Wait for the reply; fails if the sender went away without one.
    pub(crate) fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    /// Wait at most `timeout` for the reply.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        // A timeout past what an Instant can hold waits forever.
        self.recv_until(Instant::now().checked_add(timeout))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let slot = &*self.slot;
        let mut state = slot.lock();
        loop {
            if let Some(value) = state.value.take() {
                return Ok(value);
            }
            if state.done {
                return Err(RecvTimeoutError::Disconnected);
            }
            state.waiting = true;
            let (woken, expired) = wait_until(&slot.ready, state, deadline);
            state = woken;
            state.waiting = false;
            if expired {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn one_value_then_nothing() {
        let (tx, rx) = channel();
        tx.send(1).unwrap();
        assert!(tx.send(2).is_err(), "a second reply is refused");
        assert_eq!(rx.recv().unwrap(), 1);
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Disconnected)
        ));
    }

    #[test]
    fn a_sender_gone_without_a_reply_ends_the_wait() {
        let (tx, rx) = channel::<u8>();
        let waiter = thread::spawn(move || rx.recv());
        thread::sleep(Duration::from_millis(50));
        drop(tx);
        assert!(waiter.join().unwrap().is_err());
    }

    #[test]
    fn a_waiter_is_woken_by_the_reply_and_times_out_without_one() {
        let (tx, rx) = channel::<u8>();
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        ));
        let waiter = thread::spawn(move || rx.recv_timeout(Duration::from_secs(30)));
        thread::sleep(Duration::from_millis(50));
        tx.send(9).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), 9);
        let (tx, rx) = channel::<u8>();
        tx.send(3).unwrap();
        drop(tx);
        assert_eq!(
            rx.recv_timeout(Duration::MAX).unwrap(),
            3,
            "sent, then gone"
        );
    }

    #[test]
    fn a_reply_is_small() {
        // What an application pays per token it holds (std's channel: ~2.8 KB).
        assert!(std::mem::size_of::<Slot<Result<(), crate::Error>>>() < 256);
    }
}
