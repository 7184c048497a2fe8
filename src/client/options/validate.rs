//! Checking [`Options`] before a client is built from them.
//!
//! Owns: [`Options::validate`] (every `Duration` within its documented range
//! and addable to `Instant::now()`, the other numbers in range) and
//! [`Options::check`] (validate, then build the TLS set-up once), and the
//! wording of those errors.
//! Must not touch: the ranges and defaults themselves (the associated
//! constants in `options`), connecting.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use super::{Options, Queue, Reconnect};
use crate::error::Error;
use crate::platform::MAX_PACKET;

/// `value` of option `field` must lie in `range` and fit the clock; `why`
/// (may be empty) follows the range in the error.
fn within(
    field: &str,
    value: Duration,
    range: &RangeInclusive<Duration>,
    why: &str,
) -> Result<(), Error> {
    if range.contains(&value) && Instant::now().checked_add(value).is_some() {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "Options {field} = {value:?}: must be {:?} to {:?}{why}",
        range.start(),
        range.end()
    )))
}

impl Reconnect {
    fn validate(&self) -> Result<(), Error> {
        within("reconnect.min", self.min, &Reconnect::MIN_RANGE, "")?;
        within("reconnect.max", self.max, &Reconnect::MAX_RANGE, "")?;
        within(
            "reconnect.stable_after",
            self.stable_after,
            &Reconnect::STABLE_AFTER_RANGE,
            "",
        )?;
        if self.max < self.min {
            return Err(Error::InvalidArgument(format!(
                "Options reconnect.max = {:?}: must not be below reconnect.min ({:?})",
                self.max, self.min
            )));
        }
        Ok(())
    }
}

impl Queue {
    fn validate(&self) -> Result<(), Error> {
        match self.fsync_interval {
            Some(d) => within("queue.fsync_interval", d, &Queue::FSYNC_INTERVAL_RANGE, ""),
            None => Ok(()),
        }
    }
}

impl Options {
    /// Checks every setting a client would act on: each `Duration` within
    /// its range (the `*_RANGE` constants of [`Options`], [`Reconnect`] and
    /// [`Queue`]), so that no deadline can overflow the clock, and the
    /// numbers in range. [`Client::connect`](crate::Client::connect) calls
    /// it first. The error ([`Error::InvalidArgument`], or [`Error::Limit`]
    /// for a packet size over the platform's) names the field, its value
    /// and what is allowed.
    pub fn validate(&self) -> Result<(), Error> {
        if self.keep_alive_checked {
            within(
                "keep_alive",
                self.keep_alive,
                &Options::KEEP_ALIVE_RANGE,
                " (UIoT Core refuses others)",
            )?;
        } else {
            within(
                "keep_alive",
                self.keep_alive,
                &Options::UNCHECKED_KEEP_ALIVE_RANGE,
                " (what MQTT can express)",
            )?;
        }
        within(
            "connect_timeout",
            self.connect_timeout,
            &Options::CONNECT_TIMEOUT_RANGE,
            "",
        )?;
        if let Some(t) = self.ping_timeout {
            within("ping_timeout", t, &Options::PING_TIMEOUT_RANGE, "")?;
        }
        within(
            "ack_timeout",
            self.ack_timeout,
            &Options::ACK_TIMEOUT_RANGE,
            "",
        )?;
        within(
            "shutdown_timeout",
            self.shutdown_timeout,
            &Options::SHUTDOWN_TIMEOUT_RANGE,
            "",
        )?;
        self.reconnect.validate()?;
        self.queue.validate()?;
        if self.max_inflight == 0 {
            return Err(Error::InvalidArgument(
                "Options max_inflight = 0: must be at least 1".to_string(),
            ));
        }
        if self.limits.max_packet > MAX_PACKET && self.limits.enforce {
            return Err(Error::Limit(format!(
                "max_packet {} exceeds the platform's {MAX_PACKET} bytes; lower it, or set \
                 limits.enforce = false for another broker",
                self.limits.max_packet
            )));
        }
        Ok(())
    }

    /// Everything that can be checked without connecting: [`validate`]
    /// and, with TLS, building the TLS set-up once (so a `ca_file` that is
    /// not a usable PEM certificate is found now, not at connect). `uiot
    /// check` calls it.
    ///
    /// [`validate`]: Options::validate
    pub fn check(&self) -> Result<(), Error> {
        self.validate()?;
        if let Some(tls) = &self.tls {
            crate::transport::Tls::new(tls)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Options {
        Options::new("127.0.0.1", 1883, "c")
    }

    fn refused(o: &Options) -> String {
        match o.validate() {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        base().validate().unwrap();
        base().check().unwrap();
        let o = base().unchecked_keep_alive(Duration::from_millis(600));
        o.validate().unwrap();
    }

    #[test]
    fn duration_max_is_refused_for_every_field_never_a_panic() {
        let max = Duration::MAX;
        type Set = fn(&mut Options);
        let cases: [(&str, Set); 9] = [
            ("keep_alive", |o| o.keep_alive = Duration::MAX),
            ("connect_timeout", |o| o.connect_timeout = Duration::MAX),
            ("ping_timeout", |o| o.ping_timeout = Some(Duration::MAX)),
            ("ack_timeout", |o| o.ack_timeout = Duration::MAX),
            ("shutdown_timeout", |o| o.shutdown_timeout = Duration::MAX),
            ("reconnect.min", |o| o.reconnect.min = Duration::MAX),
            ("reconnect.max", |o| o.reconnect.max = Duration::MAX),
            ("reconnect.stable_after", |o| {
                o.reconnect.stable_after = Duration::MAX
            }),
            ("queue.fsync_interval", |o| {
                o.queue.fsync_interval = Some(Duration::MAX)
            }),
        ];
        for (field, set) in cases {
            let mut o = base();
            set(&mut o);
            let m = refused(&o);
            assert!(
                m.starts_with(&format!("Options {field} = {max:?}: must be ")),
                "{field}: {m}"
            );
            assert!(o.check().is_err(), "{field}");
        }
        let o = base().unchecked_keep_alive(max);
        assert!(refused(&o).contains("(what MQTT can express)"));
    }

    #[test]
    fn messages_name_the_range() {
        let mut o = base();
        o.keep_alive = Duration::from_secs(10);
        assert_eq!(
            refused(&o),
            "Options keep_alive = 10s: must be 30s to 1200s (UIoT Core refuses others)"
        );
        let mut o = base();
        o.connect_timeout = Duration::ZERO;
        assert_eq!(
            refused(&o),
            "Options connect_timeout = 0ns: must be 1ms to 300s"
        );
        let mut o = base();
        o.reconnect.min = Duration::from_secs(10);
        o.reconnect.max = Duration::from_secs(5);
        assert!(refused(&o).contains("must not be below reconnect.min (10s)"));
        let mut o = base();
        o.max_inflight = 0;
        assert!(refused(&o).contains("max_inflight"));
        let mut o = base();
        o.limits.max_packet = MAX_PACKET + 1;
        assert!(matches!(o.validate(), Err(Error::Limit(_))));
    }

    #[test]
    fn the_ends_of_every_range_are_accepted() {
        let mut o = base();
        o.keep_alive = *Options::KEEP_ALIVE_RANGE.end();
        o.connect_timeout = *Options::CONNECT_TIMEOUT_RANGE.end();
        o.ping_timeout = Some(*Options::PING_TIMEOUT_RANGE.start());
        o.ack_timeout = *Options::ACK_TIMEOUT_RANGE.end();
        o.shutdown_timeout = Duration::ZERO;
        o.reconnect.min = *Reconnect::MIN_RANGE.end();
        o.reconnect.max = *Reconnect::MAX_RANGE.end();
        o.reconnect.stable_after = *Reconnect::STABLE_AFTER_RANGE.end();
        o.queue.fsync_interval = Some(*Queue::FSYNC_INTERVAL_RANGE.start());
        o.validate().unwrap();
    }

    #[test]
    fn check_builds_the_tls_set_up() {
        let dir = std::env::temp_dir().join(format!("uiot-options-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
        let mut o = base();
        o.tls = Some(crate::transport::TlsOptions {
            ca_file: Some(not_pem),
            verify_hostname: true,
        });
        assert!(o.validate().is_ok());
        assert!(o.check().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
