//! The sections only `uiot run` (the board daemon) uses, and the one every
//! command reads to find it: `[daemon]` (the local socket), `[subscribe]`
//! (topics the daemon keeps subscribed), `[hooks]` (executables run on
//! events, with their limits), `[metrics]` (board health as properties).
//!
//! Owns: the keys of those sections, their defaults and ranges.
//! Must not touch: sockets, processes, threads (the daemon in
//! `src/bin/uiot/run/` does those).

use std::path::PathBuf;
use std::time::Duration;

use super::effective::Writer;
use super::reader::{Key, Reader, Section};
use crate::packet::QoS;

/// Where the daemon's local socket is unless `[daemon] socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/uiot/uiot.sock";

/// `[daemon]`: the local socket of `uiot run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// The Unix socket (default [`DEFAULT_SOCKET`]); its directory is
    /// created 0750, the socket is 0660.
    pub socket: PathBuf,
    /// The group that may use the socket besides root and the daemon's own
    /// user (`None`: the daemon's group).
    pub group: Option<String>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            group: None,
        }
    }
}

fn parse_group(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err("must be a group name (letters, digits, '_', '-', '.'; at most 32)".into())
    }
}

impl Section for DaemonConfig {
    const NAME: &'static str = "daemon";
    const KEYS: &'static [Key] = &[Key::path("socket"), Key::plain("group")];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let d = DaemonConfig::default();
        let socket = r
            .path("socket", "give the path of the daemon's Unix socket")
            .or(d.socket);
        let group = r.value("group", parse_group).optional();
        Some(DaemonConfig {
            socket: socket?,
            group: group?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("socket", self.socket.display());
        match &self.group {
            Some(g) => w.key("group", g),
            None => w.unset("group", "the daemon's own group"),
        }
    }
}

/// `[subscribe]`: topics `uiot run` keeps subscribed (for `[hooks]
/// on_message`), each relative to `/PSN/DSN/` unless it starts with `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeConfig {
    /// The filters, in file order.
    pub topics: Vec<String>,
    /// The QoS of those subscriptions (default 1).
    pub qos: QoS,
}

impl Default for SubscribeConfig {
    fn default() -> Self {
        SubscribeConfig {
            topics: Vec::new(),
            qos: QoS::AtLeastOnce,
        }
    }
}

fn parse_topics(v: &str) -> Result<Vec<String>, String> {
    let topics: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if topics.is_empty() {
        return Err("must list topic filters separated by commas, e.g. set, cmd/#".into());
    }
    for t in &topics {
        crate::packet::validate_topic_filter(t)
            .map_err(|e| format!("{t:?} is not a valid topic filter ({e})"))?;
    }
    Ok(topics)
}

impl Section for SubscribeConfig {
    const NAME: &'static str = "subscribe";
    const KEYS: &'static [Key] = &[Key::plain("topics"), Key::plain("qos")];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let topics = r.value("topics", parse_topics).or(Vec::new());
        let qos = r.number("qos", 1u8, 0, 1, "(UIoT Core has QoS 0 and 1)");
        Some(SubscribeConfig {
            topics: topics?,
            qos: if qos? == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
        })
    }

    fn write(&self, w: &mut Writer) {
        if self.topics.is_empty() {
            w.unset("topics", "none");
        } else {
            w.key("topics", self.topics.join(", "));
        }
        w.key("qos", self.qos.to_u8());
    }
}

/// `[hooks]`: executables `uiot run` runs on events (the event in
/// `UIOT_*` environment variables, the payload on stdin), and their limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HooksConfig {
    /// After each connection to the broker.
    pub on_connect: Option<PathBuf>,
    /// After each lost connection.
    pub on_disconnect: Option<PathBuf>,
    /// For each message on a `[subscribe]` topic.
    pub on_message: Option<PathBuf>,
    /// For each thing model command: stdout (JSON) and exit status are the reply.
    pub on_command: Option<PathBuf>,
    /// For each thing model property set: exit status is the reply.
    pub on_property_set: Option<PathBuf>,
    /// For each set of desired values pushed to the shadow: exit 0 clears them.
    pub on_shadow_desired: Option<PathBuf>,
    /// Firmware upgrades (the OTA service; not used yet).
    pub on_ota: Option<PathBuf>,
    /// Longest a hook may run before SIGTERM (then SIGKILL 5 s later).
    pub timeout: Duration,
    /// Hooks running at once; more wait in a queue.
    pub max_running: usize,
    /// Hooks waiting; past this, an event's hook is dropped with a log line.
    pub max_queued: usize,
    /// Bytes of a hook's stdout kept (the tail).
    pub max_output: usize,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            on_connect: None,
            on_disconnect: None,
            on_message: None,
            on_command: None,
            on_property_set: None,
            on_shadow_desired: None,
            on_ota: None,
            timeout: Duration::from_secs(30),
            max_running: 4,
            max_queued: 64,
            max_output: 64 * 1024,
        }
    }
}

const HOOKS: [&str; 7] = [
    "on_connect",
    "on_disconnect",
    "on_message",
    "on_command",
    "on_property_set",
    "on_shadow_desired",
    "on_ota",
];

impl HooksConfig {
    /// Each hook key with its program, in file order.
    pub fn programs(&self) -> [(&'static str, Option<&PathBuf>); 7] {
        [
            ("on_connect", self.on_connect.as_ref()),
            ("on_disconnect", self.on_disconnect.as_ref()),
            ("on_message", self.on_message.as_ref()),
            ("on_command", self.on_command.as_ref()),
            ("on_property_set", self.on_property_set.as_ref()),
            ("on_shadow_desired", self.on_shadow_desired.as_ref()),
            ("on_ota", self.on_ota.as_ref()),
        ]
    }
}

impl Section for HooksConfig {
    const NAME: &'static str = "hooks";
    const KEYS: &'static [Key] = &[
        Key::path("on_connect"),
        Key::path("on_disconnect"),
        Key::path("on_message"),
        Key::path("on_command"),
        Key::path("on_property_set"),
        Key::path("on_shadow_desired"),
        Key::path("on_ota"),
        Key::plain("timeout"),
        Key::plain("max_running"),
        Key::plain("max_queued"),
        Key::plain("max_output"),
    ];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let d = HooksConfig::default();
        let mut paths: Vec<Option<Option<PathBuf>>> = Vec::new();
        for key in HOOKS {
            paths.push(
                r.path(key, "give the path of an executable, or remove the line")
                    .optional(),
            );
        }
        let range = Duration::from_secs(1)..=Duration::from_secs(24 * 3600);
        let timeout = r.seconds("timeout", d.timeout, &range, "");
        let max_running = r.number("max_running", d.max_running, 1, 256, "hooks at once");
        let max_queued = r.number("max_queued", d.max_queued, 0, 100_000, "hooks waiting");
        let max_output = r.number("max_output", d.max_output, 1024, 16 << 20, "bytes");
        let mut it = paths.into_iter();
        let mut next = || it.next().flatten();
        Some(HooksConfig {
            on_connect: next()?,
            on_disconnect: next()?,
            on_message: next()?,
            on_command: next()?,
            on_property_set: next()?,
            on_shadow_desired: next()?,
            on_ota: next()?,
            timeout: timeout?,
            max_running: max_running?,
            max_queued: max_queued?,
            max_output: max_output?,
        })
    }

    fn write(&self, w: &mut Writer) {
        for (key, program) in self.programs() {
            match program {
                Some(p) => w.key(key, p.display()),
                None => w.unset(key, "none"),
            }
        }
        w.key("timeout", self.timeout.as_secs());
        w.key("max_running", self.max_running);
        w.key("max_queued", self.max_queued);
        w.key("max_output", self.max_output);
    }
}

/// `[metrics]`: board health posted by `uiot run` as thing model
/// properties every `interval` (0: off). Each other key names the property
/// a reading is posted as (empty: not posted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// How often (0: never).
    pub interval: Duration,
    /// Property names, in [`METRICS`] order: uptime (s), load (1-minute
    /// load average), mem_free (KiB available), disk_free (KiB free where
    /// the queue is, else /), link_restarts (reconnects since start),
    /// queue_depth (QoS 1 messages on disk awaiting their PUBACK).
    pub names: [String; 6],
}

/// The readings `[metrics]` can post, as their keys.
pub const METRICS: [&str; 6] = [
    "uptime",
    "load",
    "mem_free",
    "disk_free",
    "link_restarts",
    "queue_depth",
];

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            interval: Duration::ZERO,
            names: METRICS.map(String::from),
        }
    }
}

fn parse_identifier(v: &str) -> Result<String, String> {
    let ok = v.is_empty()
        || (v.len() <= 32
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !v.starts_with(|c: char| c.is_ascii_digit()));
    if ok {
        Ok(v.to_string())
    } else {
        Err("must be a thing model identifier (letters, digits, '_', not starting with a digit, at most 32), or empty to leave it out".into())
    }
}

impl Section for MetricsConfig {
    const NAME: &'static str = "metrics";
    const KEYS: &'static [Key] = &[
        Key::plain("interval"),
        Key::plain("uptime"),
        Key::plain("load"),
        Key::plain("mem_free"),
        Key::plain("disk_free"),
        Key::plain("link_restarts"),
        Key::plain("queue_depth"),
    ];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let d = MetricsConfig::default();
        let range = Duration::ZERO..=Duration::from_secs(24 * 3600);
        let interval = r.seconds("interval", d.interval, &range, "(0: off)");
        let mut names = d.names.clone();
        let mut ok = true;
        for (i, key) in METRICS.iter().enumerate() {
            match r
                .value(key, parse_identifier)
                .or(METRICS.get(i).map(|m| m.to_string()).unwrap_or_default())
            {
                Some(n) => {
                    if let Some(slot) = names.get_mut(i) {
                        *slot = n;
                    }
                }
                None => ok = false,
            }
        }
        ok.then_some(())?;
        Some(MetricsConfig {
            interval: interval?,
            names,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("interval", self.interval.as_secs());
        for (key, name) in METRICS.iter().zip(&self.names) {
            w.key(key, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::*;

    #[test]
    fn daemon_subscribe_and_hooks_sections() {
        let c = ok(&minimal());
        assert_eq!(c.daemon, DaemonConfig::default());
        assert!(c.subscribe.topics.is_empty());
        assert_eq!(c.hooks, HooksConfig::default());
        let c = ok(&format!(
            "{}[daemon]\nsocket = /tmp/u.sock\ngroup = uiot\n[subscribe]\ntopics = set, cmd/#\nqos = 0\n\
             [hooks]\non_command = /etc/uiot/hooks/on_command.sh\ntimeout = 5\nmax_running = 2\n",
            minimal()
        ));
        assert_eq!(c.daemon.socket, PathBuf::from("/tmp/u.sock"));
        assert_eq!(c.daemon.group.as_deref(), Some("uiot"));
        assert_eq!(c.subscribe.topics, vec!["set", "cmd/#"]);
        assert_eq!(c.subscribe.qos, QoS::AtMostOnce);
        assert_eq!(
            c.hooks.on_command,
            Some(PathBuf::from("/etc/uiot/hooks/on_command.sh"))
        );
        assert_eq!(
            (c.hooks.timeout, c.hooks.max_running),
            (Duration::from_secs(5), 2)
        );
        let p = one_problem(&format!("{}[subscribe]\ntopics = a/#/b\n", minimal()));
        assert!(p.contains("[subscribe] topics = a/#/b"), "{p}");
        let p = one_problem(&format!("{}[hooks]\nmax_running = 0\n", minimal()));
        assert!(p.contains("must be 1..256 hooks at once"), "{p}");
        let p = one_problem(&format!("{}[daemon]\ngroup = a b\n", minimal()));
        assert!(p.contains("must be a group name"), "{p}");
    }
}
