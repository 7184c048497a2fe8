//! Connection options, built by hand or from the INI configuration.
//!
//! Owns: every knob of a connection, its default and its allowed range
//! (each once, as associated constants the `config` sections read with),
//! [`Options::validate`] and [`Options::check`], and building options from
//! a loaded [`Config`](crate::config::Config).
//! Must not touch: sockets, threads, the INI syntax (that is `config`).

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::error::Error;
use crate::packet::Protocol;
use crate::platform::{AuthMode, Identity, Limits};
use crate::transport::TlsOptions;

mod validate;

/// How to connect. Start from [`Options::new`] (any MQTT broker) or
/// [`Options::device`] (a UIoT Core device), then adjust fields.
#[derive(Clone)]
pub struct Options {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT ClientID.
    pub client_id: String,
    /// MQTT UserName.
    pub username: Option<String>,
    /// MQTT Password (never logged).
    pub password: Option<String>,
    /// The UIoT device behind this connection, for topic helpers and the
    /// topic guard.
    pub identity: Option<Identity>,
    /// Keep-alive (default 300 s); UIoT Core accepts 30..1200 s
    /// ([`Options::KEEP_ALIVE_RANGE`]).
    pub keep_alive: Duration,
    /// Clean session flag.
    pub clean_session: bool,
    /// MQTT 3.1.1 (default) or 3.1.
    pub protocol: Protocol,
    /// How long TCP connect plus CONNACK may take (default 10 s, at most
    /// 300 s: [`Options::CONNECT_TIMEOUT_RANGE`]).
    pub connect_timeout: Duration,
    /// How long a PINGRESP may take before the connection counts as dead;
    /// `None`: min(keep_alive / 2, 30 s); at most an hour
    /// ([`Options::PING_TIMEOUT_RANGE`]).
    pub ping_timeout: Option<Duration>,
    /// How long a blocking publish (QoS 1), subscribe or unsubscribe waits
    /// for its acknowledgement (default 30 s, at most a day:
    /// [`Options::ACK_TIMEOUT_RANGE`]).
    pub ack_timeout: Duration,
    /// Most QoS 1 publishes awaiting PUBACK at once (default 64: a
    /// window of 16 was 19% slower end to end on a local broker).
    pub max_inflight: u16,
    /// Capacity of the incoming message queue; when it is full the client
    /// stops reading from the broker until the application catches up.
    pub message_capacity: usize,
    /// What is enforced before anything reaches the wire.
    pub limits: Limits,
    /// How long `disconnect()` waits for unacknowledged QoS 1 messages
    /// (default 5 s, at most an hour: [`Options::SHUTDOWN_TIMEOUT_RANGE`]).
    pub shutdown_timeout: Duration,
    /// TLS (with how to verify the broker), or `None` for plain TCP.
    pub tls: Option<TlsOptions>,
    /// Automatic reconnection.
    pub reconnect: Reconnect,
    /// Connect to the local socket of a `uiot run` daemon at this path
    /// instead of the broker (`host`, `port` and `tls` are then not used):
    /// the daemon relays over its own connection, so a board's scripts
    /// share the device's one login. `None` (default): the broker.
    pub local_socket: Option<std::path::PathBuf>,
    /// The queue of messages accepted but not yet acknowledged (or, QoS 0,
    /// not yet sent): its bounds and what happens when it is full.
    pub queue: Queue,
    pub(crate) keep_alive_checked: bool,
}

/// Automatic reconnection with exponential back-off and full jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// Reconnect at all (default true). When false a lost connection ends
    /// the client.
    pub enabled: bool,
    /// Shortest wait before a reconnect attempt (default 1 s, at most an
    /// hour: [`Reconnect::MIN_RANGE`]).
    pub min: Duration,
    /// Longest wait (default 60 s); also the wait after being kicked by
    /// another device using the same credentials. At most a day
    /// ([`Reconnect::MAX_RANGE`]), not below `min`.
    pub max: Duration,
    /// A connection that stayed up this long resets the back-off (default
    /// 30 s, at most a day: [`Reconnect::STABLE_AFTER_RANGE`]).
    pub stable_after: Duration,
}

impl Reconnect {
    /// Allowed `min`: 1 ms to an hour.
    pub const MIN_RANGE: RangeInclusive<Duration> = MS..=HOUR;
    /// Allowed `max`: 1 ms to a day (and not below `min`).
    pub const MAX_RANGE: RangeInclusive<Duration> = MS..=DAY;
    /// Allowed `stable_after`: 0 to a day.
    pub const STABLE_AFTER_RANGE: RangeInclusive<Duration> = Duration::ZERO..=DAY;
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            enabled: true,
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
            stable_after: Duration::from_secs(30),
        }
    }
}

/// What `publish` does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Wait for room (default).
    Block,
    /// Drop the oldest message not yet sent; its token fails with
    /// [`Error::Limit`].
    DropOldest,
    /// Refuse the new message with [`Error::Limit`].
    DropNewest,
}

/// Bounds of the outgoing queue: QoS 1 messages until their PUBACK (also
/// across reconnects) and messages published while offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// Most messages (default 1000).
    pub max_messages: usize,
    /// Most payload bytes (default 4 MiB).
    pub max_bytes: usize,
    /// What happens when full (default block).
    pub on_full: OnFull,
    /// Keep QoS 1 messages in a log in this directory until their PUBACK,
    /// so they survive a restart or a power cut (default: memory only).
    pub dir: Option<std::path::PathBuf>,
    /// With `dir`: sync the log at most this long after an append instead
    /// of before every publish returns (`None`, the default: always); at
    /// most an hour ([`Queue::FSYNC_INTERVAL_RANGE`]).
    pub fsync_interval: Option<Duration>,
}

impl Queue {
    /// Allowed `fsync_interval`: 1 ms to an hour.
    pub const FSYNC_INTERVAL_RANGE: RangeInclusive<Duration> = MS..=HOUR;
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            max_messages: 1000,
            max_bytes: 4 * 1024 * 1024,
            on_full: OnFull::Block,
            dir: None,
            fsync_interval: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("keep_alive", &self.keep_alive)
            .field("clean_session", &self.clean_session)
            .field("protocol", &self.protocol)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_inflight", &self.max_inflight)
            .field("limits", &self.limits)
            .field("tls", &self.tls)
            .field("reconnect", &self.reconnect)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

impl Options {
    /// Default `keep_alive`: 300 s.
    pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(300);
    /// Default `connect_timeout`: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default `shutdown_timeout`: 5 s.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default `ack_timeout`: 30 s.
    pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

    /// Allowed `keep_alive`: what UIoT Core accepts, 30..1200 s.
    pub const KEEP_ALIVE_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(crate::platform::MIN_KEEP_ALIVE as u64)
            ..=Duration::from_secs(crate::platform::MAX_KEEP_ALIVE as u64);
    /// Allowed `keep_alive` after [`Options::unchecked_keep_alive`]: 1 ms
    /// to the 65535 s MQTT can express.
    pub const UNCHECKED_KEEP_ALIVE_RANGE: RangeInclusive<Duration> =
        MS..=Duration::from_secs(u16::MAX as u64);
    /// Allowed `connect_timeout`: 1 ms to 300 s.
    pub const CONNECT_TIMEOUT_RANGE: RangeInclusive<Duration> = MS..=Duration::from_secs(300);
    /// Allowed `ping_timeout` when set: 1 ms to an hour.
    pub const PING_TIMEOUT_RANGE: RangeInclusive<Duration> = MS..=HOUR;
    /// Allowed `ack_timeout`: 1 ms to a day.
    pub const ACK_TIMEOUT_RANGE: RangeInclusive<Duration> = MS..=DAY;
    /// Allowed `shutdown_timeout`: 0 to an hour.
    pub const SHUTDOWN_TIMEOUT_RANGE: RangeInclusive<Duration> = Duration::ZERO..=HOUR;

    /// Options for any MQTT broker: no credentials, keep-alive 300 s.
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> Self {
        Options {
            host: host.into(),
            port,
            client_id: client_id.into(),
            username: None,
            password: None,
            identity: None,
            keep_alive: Options::DEFAULT_KEEP_ALIVE,
            clean_session: true,
            protocol: Protocol::V311,
            connect_timeout: Options::DEFAULT_CONNECT_TIMEOUT,
            ping_timeout: None,
            ack_timeout: Options::DEFAULT_ACK_TIMEOUT,
            max_inflight: 64,
            message_capacity: 1024,
            limits: Limits::default(),
            shutdown_timeout: Options::DEFAULT_SHUTDOWN_TIMEOUT,
            tls: None,
            reconnect: Reconnect::default(),
            local_socket: None,
            queue: Queue::default(),
            keep_alive_checked: true,
        }
    }

    /// Options for a UIoT Core device with a device secret (static auth):
    /// ClientID `PSN.DSN`, UserName `PSN|DSN|1`, Password the secret.
    pub fn device(
        host: impl Into<String>,
        port: u16,
        identity: Identity,
        device_secret: impl Into<String>,
    ) -> Self {
        let mut o = Options::new(host, port, identity.client_id());
        o.username = Some(identity.username(AuthMode::Static));
        o.password = Some(device_secret.into());
        o.identity = Some(identity);
        o
    }

    /// Options from a loaded configuration file. Its warnings (e.g. a
    /// secret in a file other users may read) are logged here, once per
    /// start. With dynamic registration the device secret is read from
    /// `secret_file`, bounded (see [`crate::config::read_secret_file`]).
    pub fn from_config(config: &crate::config::Config) -> Result<Self, Error> {
        use crate::config::SecretSource;
        for warning in config.warnings() {
            log::warn!("{warning}");
        }
        let secret = match &config.device.secret {
            SecretSource::DeviceSecret(s) => s.clone(),
            SecretSource::ProductSecret { secret_file, .. } => {
                crate::config::read_secret_file(secret_file, &config.path)?
            }
        };
        Ok(Options::for_config(
            config,
            AuthMode::Static,
            secret.expose(),
        ))
    }

    /// Options to log in for dynamic registration (authmode 2 with the
    /// product secret); a configuration error when `device_secret` is
    /// configured instead. Used to check such a configuration before the
    /// device is registered; [`crate::platform::dynreg`] registers.
    pub fn for_registration(config: &crate::config::Config) -> Result<Self, Error> {
        match &config.device.secret {
            crate::config::SecretSource::ProductSecret { product_secret, .. } => Ok(
                Options::for_config(config, AuthMode::Dynamic, product_secret.expose()),
            ),
            crate::config::SecretSource::DeviceSecret(_) => {
                Err(Error::Config(crate::config::ConfigError {
                    problems: vec![format!(
                        "{}: [device] dynamic registration needs product_secret; this device \
                         has device_secret, so it is registered already",
                        config.path.display()
                    )],
                }))
            }
        }
    }

    /// Options from a configuration with the given login (dynamic
    /// registration logs in with authmode 2 and the product secret).
    pub(crate) fn for_config(
        config: &crate::config::Config,
        mode: AuthMode,
        password: &str,
    ) -> Self {
        let c = &config.connection;
        let identity = Identity::new(&config.device.product_sn, &config.device.device_sn);
        let mut o = Options::new(&c.host, c.port, identity.client_id());
        o.username = Some(identity.username(mode));
        o.password = Some(password.to_string());
        o.identity = Some(identity);
        o.keep_alive = c.keep_alive;
        o.clean_session = c.clean_session;
        o.protocol = c.protocol;
        o.connect_timeout = c.connect_timeout;
        o.shutdown_timeout = c.shutdown_timeout;
        o.limits = config.limits.clone();
        o.reconnect = config.reconnect.clone();
        o.queue = config.queue.clone();
        o.tls = c.tls_options();
        o
    }

    /// Test hook: allow a keep-alive outside UIoT Core's 30..1200 s (e.g. one
    /// second, to see pings quickly). Not for production use.
    #[doc(hidden)]
    pub fn unchecked_keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self.keep_alive_checked = false;
        self
    }

    /// The PINGRESP timeout in force.
    pub fn effective_ping_timeout(&self) -> Duration {
        self.ping_timeout
            .unwrap_or_else(|| (self.keep_alive / 2).min(Duration::from_secs(30)))
    }

    /// How long the connection may be quiet before a PINGREQ goes out: the
    /// keep-alive minus a margin of a tenth (at least 100 ms, at most 10 s).
    pub fn ping_interval(&self) -> Duration {
        let margin = (self.keep_alive / 10)
            .max(Duration::from_millis(100))
            .min(Duration::from_secs(10));
        self.keep_alive
            .saturating_sub(margin)
            .max(Duration::from_millis(50))
    }

    /// Keep-alive in whole seconds as sent in CONNECT (at least 1).
    pub(crate) fn keep_alive_secs(&self) -> u16 {
        let s = self.keep_alive.as_millis().div_ceil(1000);
        u16::try_from(s).unwrap_or(u16::MAX).max(1)
    }
}
