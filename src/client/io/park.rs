//! The park protocol between callers and the I/O thread: callers wake the
//! I/O thread (a syscall) only when it is parked in `poll`, never for every
//! command.
//!
//! Owns: the parked flag and the order of its steps: the I/O thread
//! announces that it parks, then looks once more for a command that raced
//! with the announcement; a caller first queues its command, then clears
//! the flag and wakes the thread only if the flag was set.
//! Must not touch: the poll itself, commands' meaning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::TryRecvError;

use crate::client::chan::Receiver;

/// What the I/O thread found when it was about to park.
pub(crate) enum Park<T> {
    /// A command arrived meanwhile: handle it instead of sleeping.
    Command(T),
    /// Nothing arrived: sleep in poll; any later command wakes it.
    Sleep,
    /// Every sender is gone.
    Gone,
}

/// The parked flag.
#[derive(Debug, Default)]
pub(crate) struct ParkFlag(AtomicBool);

impl ParkFlag {
    /// I/O thread, before sleeping: announce it, then look for a command
    /// that was queued before the announcement was seen.
    pub(crate) fn park<T>(&self, commands: &Receiver<T>) -> Park<T> {
        self.0.store(true, Ordering::SeqCst);
        match commands.try_recv() {
            Ok(cmd) => {
                self.0.store(false, Ordering::SeqCst);
                Park::Command(cmd)
            }
            Err(TryRecvError::Empty) => Park::Sleep,
            Err(TryRecvError::Disconnected) => {
                self.0.store(false, Ordering::SeqCst);
                Park::Gone
            }
        }
    }

    /// I/O thread: it is running again (woken, or decided not to sleep).
    pub(crate) fn unpark(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Caller, after queuing a command: whether to wake the I/O thread
    /// (exactly one caller gets true per park).
    pub(crate) fn take_wake(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::chan;
    use mio::{Events, Poll, Token, Waker};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// The I/O side of the protocol, as the loop runs it, against a real
    /// poll and waker: no command may be left unseen while it sleeps.
    #[test]
    fn no_command_is_left_waiting_while_the_thread_sleeps() {
        const N: usize = 20_000;
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let flag = Arc::new(ParkFlag::default());
        let (tx, rx) = chan::sync_channel::<usize>(8);
        let (f, w) = (flag.clone(), waker.clone());
        let sender = std::thread::spawn(move || {
            let mut wakes = 0usize;
            for i in 0..N {
                tx.send(i).unwrap();
                if f.take_wake() {
                    w.wake().unwrap();
                    wakes += 1;
                }
                if i % 64 == 0 {
                    std::thread::yield_now();
                }
            }
            wakes
        });
        let mut events = Events::with_capacity(4);
        let mut got = 0usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        'outer: loop {
            while let Ok(i) = rx.try_recv() {
                assert_eq!(i, got, "in order");
                got += 1;
            }
            if got == N {
                break;
            }
            match flag.park(&rx) {
                Park::Command(i) => {
                    assert_eq!(i, got);
                    got += 1;
                    continue;
                }
                Park::Gone => break 'outer,
                Park::Sleep => {}
            }
            // A lost wake-up would leave us here until the timeout.
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            assert!(
                !events.is_empty(),
                "slept 5 s with {got} of {N} commands taken: a wake-up was lost"
            );
            flag.unpark();
            assert!(Instant::now() < deadline);
        }
        assert_eq!(got, N);
        let wakes = sender.join().unwrap();
        assert!(wakes < N, "woken for every command ({wakes})");
    }

    #[test]
    fn one_wake_per_park() {
        let flag = ParkFlag::default();
        let (_tx, rx) = chan::sync_channel::<()>(1);
        assert!(!flag.take_wake(), "running: no wake");
        assert!(matches!(flag.park(&rx), Park::Sleep));
        assert!(flag.take_wake());
        assert!(!flag.take_wake(), "a second caller need not wake again");
    }
}
