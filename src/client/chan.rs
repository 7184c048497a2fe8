//! A bounded channel whose buffer grows with use: the client's command,
//! message and event queues.
//!
//! Owns: the queue, its bound, and who is waiting on it. The std
//! `sync_channel` allocates and touches its whole bound up front (the
//! command queue's 1,032 slots and the message queue's 1,024 were 170 KiB of
//! RSS for every idle `Client`, measured with scripts/fleet.sh); this one
//! holds what is queued and keeps at most [`KEEP`] slots once it has
//! drained. Same methods and errors as `std::sync::mpsc`, so callers only
//! change their `use`.
//! Must not touch: what flows through it, the park protocol (io/park.rs),
//! which only needs `try_recv` to see every `send` that returned before.

use std::collections::VecDeque;
use std::sync::mpsc::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Slots kept allocated once the queue has drained after a burst.
const KEEP: usize = 32;

struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
    receiver: bool,
    /// Threads blocked in `recv`/`send`: notify only when someone waits
    /// (a futex wake is a system call).
    waiting_recv: usize,
    waiting_send: usize,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    readable: Condvar,
    writable: Condvar,
    cap: usize,
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding it; a poisoned queue is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue `value` (room checked by the caller) and wake a reader.
    fn push(&self, state: &mut State<T>, value: T) {
        state.queue.push_back(value);
        if state.waiting_recv > 0 {
            self.readable.notify_one();
        }
    }

    fn pop(&self, state: &mut State<T>) -> Option<T> {
        let value = state.queue.pop_front()?;
        if state.queue.is_empty() && state.queue.capacity() > KEEP {
            state.queue.shrink_to(KEEP);
        }
        if state.waiting_send > 0 {
            self.writable.notify_one();
        }
        Some(value)
    }
}

/// Wait on `cv` until woken, or until `deadline` (`None`: no deadline).
/// True, without waiting, when the deadline has passed. Shared with
/// reply.rs.
pub(super) fn wait_until<'a, S>(
    cv: &Condvar,
    guard: MutexGuard<'a, S>,
    deadline: Option<Instant>,
) -> (MutexGuard<'a, S>, bool) {
    match deadline.map(|d| d.checked_duration_since(Instant::now())) {
        Some(None) => (guard, true),
        Some(Some(left)) => (
            cv.wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0,
            false,
        ),
        None => (
            cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
            false,
        ),
    }
}

/// The sending half; cloneable.
pub(crate) struct SyncSender<T> {
    inner: Arc<Inner<T>>,
}

/// The receiving half.
pub(crate) struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

/// A channel that holds at most `cap` values (at least 1).
pub(crate) fn sync_channel<T>(cap: usize) -> (SyncSender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            senders: 1,
            receiver: true,
            waiting_recv: 0,
            waiting_send: 0,
        }),
        readable: Condvar::new(),
        writable: Condvar::new(),
        cap: cap.max(1),
    });
    (
        SyncSender {
            inner: inner.clone(),
        },
        Receiver { inner },
    )
}

impl<T> SyncSender<T> {
    /// Queue `value`, waiting for room; fails once the receiver is gone.
    pub(crate) fn send(&self, value: T) -> Result<(), SendError<T>> {
        let inner = &*self.inner;
        let mut state = inner.lock();
        loop {
            if !state.receiver {
                return Err(SendError(value));
            }
            if state.queue.len() < inner.cap {
                inner.push(&mut state, value);
                return Ok(());
            }
            state.waiting_send += 1;
            state = inner
                .writable
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting_send -= 1;
        }
    }

    /// Queue `value` if there is room now.
    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let inner = &*self.inner;
        let mut state = inner.lock();
        if !state.receiver {
            return Err(TrySendError::Disconnected(value));
        }
        if state.queue.len() >= inner.cap {
            return Err(TrySendError::Full(value));
        }
        inner.push(&mut state, value);
        Ok(())
    }
}

impl<T> Clone for SyncSender<T> {
    fn clone(&self) -> Self {
        self.inner.lock().senders += 1;
        SyncSender {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Drop for SyncSender<T> {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.senders = state.senders.saturating_sub(1);
        if state.senders == 0 {
            self.inner.readable.notify_all();
        }
    }
}

impl<T> Receiver<T> {
    /// The next value, waiting for one; fails once every sender is gone and
    /// the queue is empty.
    pub(crate) fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    /// The next value, waiting at most `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        // A timeout past what an Instant can hold waits forever.
        self.recv_until(Instant::now().checked_add(timeout))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let inner = &*self.inner;
        let mut state = inner.lock();
        loop {
            if let Some(value) = inner.pop(&mut state) {
                return Ok(value);
            }
            if state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            state.waiting_recv += 1;
            let (woken, expired) = wait_until(&inner.readable, state, deadline);
            state = woken;
            state.waiting_recv -= 1;
            if expired {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// The next value if one is queued now.
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let inner = &*self.inner;
        let mut state = inner.lock();
        match inner.pop(&mut state) {
            Some(value) => Ok(value),
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let left = {
            let mut state = self.inner.lock();
            state.receiver = false;
            self.inner.writable.notify_all();
            std::mem::take(&mut state.queue)
        };
        // Dropped outside the lock: a value may own other channels' ends.
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn bound_order_and_disconnect() {
        let (tx, rx) = sync_channel(2);
        tx.try_send(1).unwrap();
        tx.send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv().unwrap(), 1);
        tx.try_send(3).unwrap();
        assert_eq!(rx.recv().unwrap(), 2);
        let tx2 = tx.clone();
        drop(tx);
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), 3);
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        ));
        drop(tx2);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
        assert!(rx.recv().is_err());
        assert!(matches!(
            rx.recv_timeout(Duration::MAX),
            Err(RecvTimeoutError::Disconnected)
        ));
    }

    #[test]
    fn a_full_sender_waits_and_a_gone_receiver_frees_it() {
        let (tx, rx) = sync_channel(1);
        tx.send(0).unwrap();
        let t = {
            let tx = tx.clone();
            thread::spawn(move || tx.send(1))
        };
        thread::sleep(Duration::from_millis(50));
        assert_eq!(rx.recv().unwrap(), 0);
        t.join().unwrap().unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
        tx.send(2).unwrap();
        let t = {
            let tx = tx.clone();
            thread::spawn(move || tx.send(3))
        };
        thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert!(t.join().unwrap().is_err(), "a blocked send fails");
        assert!(matches!(tx.try_send(4), Err(TrySendError::Disconnected(4))));
    }

    #[test]
    fn a_waiting_reader_is_woken_by_a_send_and_by_the_last_sender_leaving() {
        let (tx, rx) = sync_channel::<u32>(4);
        let reader = thread::spawn(move || {
            let first = rx.recv();
            let second = rx.recv_timeout(Duration::from_secs(30));
            (first, second)
        });
        thread::sleep(Duration::from_millis(50));
        tx.send(7).unwrap();
        thread::sleep(Duration::from_millis(50));
        drop(tx);
        let (first, second) = reader.join().unwrap();
        assert_eq!(first.unwrap(), 7);
        assert!(matches!(second, Err(RecvTimeoutError::Disconnected)));
    }

    /// Many values through a small bound from several threads: none lost,
    /// each sender's in order, and the buffer shrinks back once drained.
    #[test]
    fn many_senders_nothing_lost_and_memory_given_back() {
        const PER: u32 = 20_000;
        let (tx, rx) = sync_channel::<(u32, u32)>(64);
        let senders: Vec<_> = (0..4)
            .map(|s| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for i in 0..PER {
                        tx.send((s, i)).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0u32; 4];
        while let Ok((s, i)) = rx.recv() {
            let slot = &mut next[s as usize];
            assert_eq!(i, *slot, "sender {s} out of order");
            *slot += 1;
        }
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(next, [PER; 4]);
        assert!(rx.inner.lock().queue.capacity() <= KEEP);

        // The bound is what the queue may hold, not what it allocates.
        let (tx, rx) = sync_channel::<[u8; 256]>(1_000_000);
        tx.send([0; 256]).unwrap();
        assert!(rx.inner.lock().queue.capacity() < 1_000);
    }
}
