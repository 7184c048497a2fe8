//! Reconnect pacing: exponential back-off with full jitter, and kick
//! detection (another device logging in with the same credentials).
//!
//! Owns: how long to wait before the next attempt, and when a run of short
//! connections means "kicked".
//! Must not touch: sockets, timers, logging, the session.

use std::time::{Duration, Instant};

use crate::client::Reconnect;

/// Young connections closed by the broker in a row that mean "kicked".
pub(super) const KICK_AFTER: u32 = 3;

/// Reconnect bookkeeping.
pub(super) struct Backoff {
    attempt: u32,
    /// Young connections the broker closed in a row (kick detection).
    short_closes: u32,
    kicked: bool,
    pub(super) connected_at: Instant,
    rng: u64,
}

impl Backoff {
    pub(super) fn new(seed: u64) -> Backoff {
        Backoff {
            attempt: 0,
            short_closes: 0,
            kicked: false,
            connected_at: Instant::now(),
            rng: seed | 1,
        }
    }

    /// Whether kicked mode is on (attempts only every `max`).
    #[cfg(test)]
    pub(super) fn kicked(&self) -> bool {
        self.kicked
    }

    /// Next wait: full jitter between `min` and min(max, min * 2^(attempt +
    /// 1)); the maximum when kicked. The first window is already `min` to
    /// 2 * `min`: a fleet that lost the broker at one moment must not all
    /// come back exactly `min` later (after an outage shorter than `min`
    /// that would be one burst of every device at once).
    pub(super) fn next(&mut self, min: Duration, max: Duration) -> Duration {
        let max = max.max(min);
        if self.kicked {
            return max;
        }
        let cap = min
            .saturating_mul(2u32 << self.attempt.min(20))
            .min(max)
            .max(min);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64*: jitter only, not security.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        // (cap - min) * r / 2^32, in integer nanoseconds.
        let span = cap.saturating_sub(min).as_nanos().min(u128::from(u64::MAX));
        let pick = (span * u128::from(r)) >> 32;
        min.saturating_add(Duration::from_nanos(
            u64::try_from(pick).unwrap_or(u64::MAX),
        ))
    }

    /// A connection ended after living `lived`; `by_broker` when the broker
    /// closed it. Returns true when this makes the device count as kicked
    /// (the first time only).
    pub(super) fn ended(&mut self, lived: Duration, by_broker: bool, r: &Reconnect) -> bool {
        if lived >= r.stable_after {
            self.attempt = 0;
            self.short_closes = 0;
        }
        if lived >= r.stable_after.saturating_add(r.max) {
            self.kicked = false;
        }
        if by_broker && lived < r.stable_after {
            self.short_closes = self.short_closes.saturating_add(1);
        } else {
            self.short_closes = 0;
        }
        // Three young connections closed by the broker in a row, with the
        // broker reachable in between (a failed attempt resets the count):
        // a broker restarting that often is rarer than two devices sharing
        // one login.
        if self.short_closes >= KICK_AFTER && !self.kicked {
            self.kicked = true;
            return true;
        }
        false
    }

    /// An attempt failed without reaching the broker (or was refused):
    /// kicked devices reconnect fine, so a failure means the broker or the
    /// network is away instead.
    pub(super) fn attempt_failed(&mut self, refused: bool) {
        if !refused {
            self.short_closes = 0;
            self.kicked = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Reconnect {
        Reconnect {
            enabled: true,
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
            stable_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn waits_grow_within_min_and_a_doubling_cap() {
        let mut b = Backoff::new(42);
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for attempt in 0..12u32 {
            let cap = min.saturating_mul(2 << attempt.min(20)).min(max);
            let w = b.next(min, max);
            assert!(
                w >= min && w <= cap,
                "attempt {attempt}: {w:?} not in {min:?}..={cap:?}"
            );
        }
        // Long past the cap the wait stays within max.
        for _ in 0..100 {
            assert!(b.next(min, max) <= max);
        }
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut b = Backoff::new(7);
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..8 {
            b.next(min, max);
        }
        let waits: Vec<Duration> = (0..20).map(|_| b.next(min, max)).collect();
        let distinct = waits
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert!(distinct > 15, "{waits:?}");
    }

    #[test]
    fn huge_and_inverted_bounds_do_not_panic() {
        let mut b = Backoff::new(1);
        for _ in 0..40 {
            let w = b.next(Duration::MAX, Duration::MAX);
            assert_eq!(w, Duration::MAX);
        }
        let mut b = Backoff::new(1);
        let w = b.next(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(w, Duration::from_secs(5), "max below min counts as min");
    }

    #[test]
    fn three_short_closes_by_the_broker_mean_kicked() {
        let r = policy();
        let mut b = Backoff::new(3);
        let young = Duration::from_secs(2);
        assert!(!b.ended(young, true, &r));
        assert!(!b.ended(young, true, &r));
        assert!(b.ended(young, true, &r), "third short close: kicked");
        assert!(b.kicked());
        assert!(!b.ended(young, true, &r), "reported once");
        assert_eq!(
            b.next(r.min, r.max),
            r.max,
            "kicked: always the longest wait"
        );
        // A connection that lasted stable_after + max ends kicked mode.
        assert!(!b.ended(Duration::from_secs(100), true, &r));
        assert!(!b.kicked());
    }

    #[test]
    fn a_failed_attempt_or_a_dead_link_is_not_a_kick() {
        let r = policy();
        let mut b = Backoff::new(3);
        let young = Duration::from_secs(2);
        b.ended(young, true, &r);
        b.ended(young, true, &r);
        b.attempt_failed(false); // broker restarting: unreachable in between
        b.ended(young, true, &r);
        assert!(!b.kicked());
        b.ended(young, false, &r); // ping timeout: not closed by the broker
        b.ended(young, true, &r);
        b.ended(young, true, &r);
        assert!(!b.kicked());
    }

    #[test]
    fn a_stable_connection_resets_the_growth() {
        let r = policy();
        let mut b = Backoff::new(9);
        for _ in 0..10 {
            b.next(r.min, r.max);
        }
        b.ended(Duration::from_secs(31), false, &r);
        // Back to the first step: between min and 2 * min.
        let w = b.next(r.min, r.max);
        assert!(w >= r.min && w <= r.min * 2, "{w:?}");
    }

    #[test]
    fn the_first_waits_of_a_fleet_are_spread_not_all_min() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let firsts: Vec<Duration> = (1..=200u64)
            .map(|i| Backoff::new(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).next(min, max))
            .collect();
        assert!(firsts.iter().all(|w| *w >= min && *w <= min * 2));
        let early = firsts.iter().filter(|w| **w < min + min / 2).count();
        assert!(
            (60..=140).contains(&early),
            "{early} of 200 first waits in the first half of the window"
        );
    }
}
