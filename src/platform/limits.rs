//! The platform's per-connection caps and the flow control that keeps a
//! device under them.
//!
//! Owns: [`Limits`] (what is enforced) and [`RateLimiter`] (30 publishes/s
//! and 1024 KB/s by default), which tells a publisher how long to wait rather
//! than letting the platform throttle or drop the device.
//! Must not touch: sockets, threads (it never sleeps itself), the INI format.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::platform::{BANDWIDTH_KB, MAX_PACKET, MAX_SUBSCRIPTIONS, PUBLISH_RATE};

/// What the client enforces before anything reaches the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Topic guard and caps on (default). `false` is for people using uiot
    /// against their own broker.
    pub enforce: bool,
    /// Publishes per second; 0 = unlimited.
    pub publish_rate: u32,
    /// Bandwidth in KB/s (1 KB = 1024 bytes); 0 = unlimited.
    pub bandwidth_kb: u32,
    /// Largest packet, in bytes.
    pub max_packet: usize,
    /// Most active subscriptions.
    pub max_subscriptions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            enforce: true,
            publish_rate: PUBLISH_RATE,
            bandwidth_kb: BANDWIDTH_KB,
            max_packet: MAX_PACKET,
            max_subscriptions: MAX_SUBSCRIPTIONS,
        }
    }
}

impl Limits {
    /// No caps at all (topic guard off, no rate or bandwidth limit), keeping
    /// only the packet size limit.
    pub fn unlimited() -> Self {
        Limits {
            enforce: false,
            publish_rate: 0,
            bandwidth_kb: 0,
            max_packet: MAX_PACKET,
            max_subscriptions: usize::MAX,
        }
    }
}

/// Flow control for publishes: never more than `publish_rate` messages in any
/// one-second window (a sliding window, so short bursts are allowed), and
/// bytes paced at `bandwidth_kb` KB/s.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: usize,
    sent: VecDeque<Instant>,
    bytes_per_sec: u64,
    next_byte_slot: Option<Instant>,
}

const WINDOW: Duration = Duration::from_secs(1);
/// How far ahead of the bandwidth the byte pacing may run (a burst of a
/// tenth of a second's worth of bytes goes out at once).
const BYTE_BURST: Duration = Duration::from_millis(100);

impl RateLimiter {
    /// A limiter for these limits (only `publish_rate` and `bandwidth_kb` are
    /// used; they are not applied when `enforce` is false).
    pub fn new(limits: &Limits) -> Self {
        let (rate, kb) = if limits.enforce {
            (limits.publish_rate, limits.bandwidth_kb)
        } else {
            (0, 0)
        };
        RateLimiter {
            rate: rate as usize,
            sent: VecDeque::with_capacity(rate as usize),
            bytes_per_sec: u64::from(kb) * 1024,
            next_byte_slot: None,
        }
    }

    /// True when neither limit applies (the fast path skips the limiter).
    pub fn is_unlimited(&self) -> bool {
        self.rate == 0 && self.bytes_per_sec == 0
    }

    /// Ask to send one packet of `bytes` bytes at `now`. Returns `None` when
    /// it may go now (and counts it), or how long to wait before asking again.
    pub fn try_acquire(&mut self, bytes: usize, now: Instant) -> Option<Duration> {
        if self.rate > 0 {
            while let Some(&t) = self.sent.front() {
                if now.duration_since(t) >= WINDOW {
                    self.sent.pop_front();
                } else {
                    break;
                }
            }
            if self.sent.len() >= self.rate {
                let oldest = self.sent.front().copied().unwrap_or(now);
                return Some((oldest + WINDOW).saturating_duration_since(now));
            }
        }
        if self.bytes_per_sec > 0 {
            // GCRA: the theoretical time the link is free again may run
            // ahead of now by at most BYTE_BURST.
            let free_at = self.next_byte_slot.map_or(now, |t| t.max(now));
            let ahead = free_at.saturating_duration_since(now);
            if ahead > BYTE_BURST {
                return Some(ahead - BYTE_BURST);
            }
            let nanos = (bytes as u128 * 1_000_000_000) / u128::from(self.bytes_per_sec);
            let cost = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            self.next_byte_slot = Some(free_at + cost);
        }
        if self.rate > 0 {
            self.sent.push_back(now);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_rate_in_a_window() {
        let mut l = RateLimiter::new(&Limits::default());
        let t0 = Instant::now();
        for _ in 0..30 {
            assert_eq!(l.try_acquire(10, t0), None);
        }
        let wait = l.try_acquire(10, t0).unwrap();
        assert!(
            wait <= WINDOW && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        assert_eq!(l.try_acquire(10, t0 + WINDOW), None);
    }

    #[test]
    fn bandwidth_paces_bytes() {
        let limits = Limits {
            publish_rate: 0,
            bandwidth_kb: 1,
            ..Limits::default()
        };
        let mut l = RateLimiter::new(&limits);
        let t0 = Instant::now();
        // 1 KB/s: a 512-byte packet books half a second of the link.
        assert_eq!(l.try_acquire(512, t0), None);
        let wait = l.try_acquire(512, t0).unwrap();
        assert!(
            wait > Duration::from_millis(390) && wait <= Duration::from_millis(400),
            "{wait:?}"
        );
        assert_eq!(l.try_acquire(512, t0 + wait), None);
        // Over ten seconds no more than about 10 KB gets through.
        let mut sent = 1024;
        let mut t = t0 + wait;
        while t < t0 + Duration::from_secs(10) {
            match l.try_acquire(100, t) {
                None => sent += 100,
                Some(w) => t += w,
            }
        }
        assert!(sent <= 10 * 1024 + 200, "{sent}");
    }

    #[test]
    fn off_when_not_enforced() {
        let limits = Limits {
            enforce: false,
            ..Limits::default()
        };
        let mut l = RateLimiter::new(&limits);
        assert!(l.is_unlimited());
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(l.try_acquire(100_000, t0), None);
        }
    }
}
