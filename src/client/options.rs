//! Connection options, built by hand or from the INI configuration.
//!
//! Owns: every knob of a connection and its defaults.
//! Must not touch: sockets, threads, the INI syntax (that is `config`).

use std::fmt;
use std::time::Duration;

use crate::error::Error;
use crate::packet::{Protocol, DEFAULT_MAX_PACKET};
use crate::platform::{AuthMode, Identity, Limits, MAX_KEEP_ALIVE, MIN_KEEP_ALIVE};
use crate::transport::TlsOptions;

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
    /// Keep-alive; UIoT Core accepts 30..1200 s.
    pub keep_alive: Duration,
    /// Clean session flag.
    pub clean_session: bool,
    /// MQTT 3.1.1 (default) or 3.1.
    pub protocol: Protocol,
    /// How long TCP connect plus CONNACK may take.
    pub connect_timeout: Duration,
    /// How long a PINGRESP may take before the connection counts as dead;
    /// `None`: min(keep_alive / 2, 30 s).
    pub ping_timeout: Option<Duration>,
    /// How long a blocking publish (QoS 1), subscribe or unsubscribe waits
    /// for its acknowledgement.
    pub ack_timeout: Duration,
    /// Most QoS 1 publishes awaiting PUBACK at once.
    pub max_inflight: u16,
    /// Capacity of the incoming message queue; when it is full the client
    /// stops reading from the broker until the application catches up.
    pub message_capacity: usize,
    /// What is enforced before anything reaches the wire.
    pub limits: Limits,
    /// How long `disconnect()` waits for unacknowledged QoS 1 messages.
    pub shutdown_timeout: Duration,
    /// TLS (with how to verify the broker), or `None` for plain TCP.
    pub tls: Option<TlsOptions>,
    /// Automatic reconnection.
    pub reconnect: Reconnect,
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
    /// Shortest wait before a reconnect attempt (default 1 s).
    pub min: Duration,
    /// Longest wait (default 60 s); also the wait after being kicked by
    /// another device using the same credentials.
    pub max: Duration,
    /// A connection that stayed up this long resets the back-off (default 30 s).
    pub stable_after: Duration,
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
    /// of before every publish returns (`None`, the default: always).
    pub fsync_interval: Option<Duration>,
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

impl Options {
    /// Options for any MQTT broker: no credentials, keep-alive 300 s.
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> Self {
        Options {
            host: host.into(),
            port,
            client_id: client_id.into(),
            username: None,
            password: None,
            identity: None,
            keep_alive: Duration::from_secs(300),
            clean_session: true,
            protocol: Protocol::V311,
            connect_timeout: Duration::from_secs(10),
            ping_timeout: None,
            ack_timeout: Duration::from_secs(30),
            max_inflight: 16,
            message_capacity: 1024,
            limits: Limits::default(),
            shutdown_timeout: Duration::from_secs(5),
            tls: None,
            reconnect: Reconnect::default(),
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

    /// Options from a loaded configuration file.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, Error> {
        use crate::config::SecretSource;
        let c = &config.connection;
        let identity = Identity::new(&config.device.product_sn, &config.device.device_sn);
        let secret = match &config.device.secret {
            SecretSource::DeviceSecret(s) => s.expose().to_string(),
            SecretSource::ProductSecret { secret_file, .. } => {
                match std::fs::read_to_string(secret_file) {
                    Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
                    _ => {
                        return Err(Error::Config(crate::config::ConfigError {
                            problems: vec![format!(
                                "{}: [device] product_secret: dynamic registration is not \
                                 implemented in this version and {} holds no device secret; \
                                 set device_secret instead",
                                config.path.display(),
                                secret_file.display()
                            )],
                        }))
                    }
                }
            }
        };
        let mut o = Options::device(&c.host, c.port, identity, secret);
        o.keep_alive = Duration::from_secs(c.keep_alive.into());
        o.clean_session = c.clean_session;
        o.protocol = c.protocol;
        o.connect_timeout = c.connect_timeout;
        o.limits = config.limits.clone();
        o.shutdown_timeout = c.shutdown_timeout;
        o.reconnect.enabled = config.reconnect.enabled;
        o.reconnect.min = config.reconnect.min;
        o.reconnect.max = config.reconnect.max;
        let q = &config.queue;
        o.queue.max_messages = q.max_messages;
        o.queue.max_bytes = q.max_bytes;
        o.queue.on_full = match q.on_full {
            crate::config::OnFullPolicy::Block => OnFull::Block,
            crate::config::OnFullPolicy::DropOldest => OnFull::DropOldest,
            crate::config::OnFullPolicy::DropNewest => OnFull::DropNewest,
        };
        o.queue.dir = q.dir.clone();
        o.queue.fsync_interval = match q.fsync {
            crate::config::FsyncPolicy::Always => None,
            crate::config::FsyncPolicy::IntervalMs(ms) => Some(Duration::from_millis(ms)),
        };
        o.tls = c.tls.then(|| TlsOptions {
            ca_file: c.ca_file.clone(),
            verify_hostname: c.tls_verify_hostname,
        });
        Ok(o)
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

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let ka = self.keep_alive.as_secs();
        if self.keep_alive_checked
            && !(u64::from(MIN_KEEP_ALIVE)..=u64::from(MAX_KEEP_ALIVE)).contains(&ka)
        {
            return Err(Error::Limit(format!(
                "keep-alive {ka} s: must be {MIN_KEEP_ALIVE}..{MAX_KEEP_ALIVE} seconds \
                 (UIoT Core refuses others)"
            )));
        }
        if self.keep_alive.as_secs() > u64::from(u16::MAX) {
            return Err(Error::Limit("keep-alive over 65535 s".to_string()));
        }
        if self.max_inflight == 0 {
            return Err(Error::Limit("max_inflight must be at least 1".to_string()));
        }
        if self.limits.max_packet > DEFAULT_MAX_PACKET && self.limits.enforce {
            return Err(Error::Limit(format!(
                "max_packet {} exceeds the platform's {DEFAULT_MAX_PACKET} bytes",
                self.limits.max_packet
            )));
        }
        Ok(())
    }

    /// Keep-alive in whole seconds as sent in CONNECT (at least 1).
    pub(crate) fn keep_alive_secs(&self) -> u16 {
        let s = u64::try_from(self.keep_alive.as_millis().div_ceil(1000)).unwrap_or(u64::MAX);
        s.clamp(1, u64::from(u16::MAX)) as u16
    }
}
