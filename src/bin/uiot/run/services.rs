//! What the daemon does itself over its connection: the `[subscribe]`
//! topics, the connection's events, and the thing model and shadow events
//! handed to `[hooks]`, each hook run by the [`HookRunner`].
//!
//! Hook contract (README, "Hooks"): the event in `UIOT_*` variables, the
//! payload on stdin. `on_command`: exit 0 and a JSON object (or nothing)
//! on stdout reply RetCode 0 with that Output; exit N (1..255) replies
//! RetCode N with the stdout object (or `{}`); stdout that is not a JSON
//! object, a hook killed at its time limit, or one that cannot start
//! replies 130 (the platform's "try again later"). `on_property_set`: the
//! same RetCodes, no Output. `on_shadow_desired`: exit 0 clears the
//! desired values, reporting the JSON object it printed (if any); any
//! other outcome leaves them in the shadow (logged).
//!
//! The thing model and shadow are used over a local connection to the
//! daemon's own socket, so `uiot command wait` and the hooks are peers.
//!
//! Owns: starting and stopping those services, the hooks' environment.
//! Must not touch: the local socket's protocol (`relay`, `session`), how a
//! hook is run (`hooks`).

use std::path::Path;
// AtomicUsize, not AtomicU64: 32-bit MIPS has no 64-bit atomics.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Map, Value};
use uiot::config::{Config, SerialFraming};
use uiot::platform::shadow::Shadow;
use uiot::platform::thing::{Thing, ThingEvent, UNANSWERED};
use uiot::{Client, Event, Message, Options, QoS};

use super::framing::Framing;
use super::hooks::{HookExit, HookJob, HookLimits, HookOutcome, HookRunner};
use super::ota::{Env as OtaEnv, OtaService};
use super::relay::Relay;
use super::serial::{Bridge, SerialSettings};

/// What every hook gets: the device, the original `SSL_CERT_FILE`.
#[derive(Clone)]
struct Base {
    env: Vec<(String, String)>,
    remove: Vec<String>,
    /// `/$system/PSN/DSN/`.
    system: String,
}

impl Base {
    fn ota_env(&self) -> OtaEnv {
        OtaEnv {
            set: self.env.clone(),
            remove: self.remove.clone(),
        }
    }

    fn topic(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.system)
    }

    fn job(
        &self,
        name: &str,
        program: &Path,
        event: &str,
        extra: Vec<(String, String)>,
        stdin: Vec<u8>,
    ) -> HookJob {
        let mut env = self.env.clone();
        env.push(("UIOT_EVENT".into(), event.into()));
        env.extend(extra);
        HookJob {
            name: name.into(),
            program: program.to_path_buf(),
            args: Vec::new(),
            env,
            env_remove: self.remove.clone(),
            stdin,
            done: None,
        }
    }
}

/// The daemon's own services over one connection.
pub struct Services {
    runner: Arc<HookRunner>,
    bridges: Vec<Bridge>,
    /// Reconnects since start (for `[metrics] link_restarts`).
    restarts: Arc<AtomicUsize>,
    /// What every hook gets.
    base: Base,
    /// Dropped at stop: ends the metrics thread's wait.
    stop_tx: Option<mpsc::Sender<()>>,
    stop_rx: Option<mpsc::Receiver<()>>,
    threads: Vec<JoinHandle<()>>,
    local: Option<Client>,
    /// `[ota]` upgrades, over a local connection of their own.
    ota: Option<OtaService>,
}

impl Services {
    /// Starts them; what cannot start is logged and left out.
    pub fn start(config: &Config, client: &Client, relay: &Relay) -> Services {
        let h = &config.hooks;
        let runner = Arc::new(HookRunner::new(HookLimits {
            max_running: h.max_running,
            max_queued: h.max_queued,
            timeout: h.timeout,
            grace: Duration::from_secs(5),
            max_output: h.max_output,
        }));
        let mut base = Base {
            env: vec![
                ("UIOT_PRODUCT_SN".into(), config.device.product_sn.clone()),
                ("UIOT_DEVICE_SN".into(), config.device.device_sn.clone()),
            ],
            remove: Vec::new(),
            system: format!(
                "/$system/{}/{}/",
                config.device.product_sn, config.device.device_sn
            ),
        };
        match crate::ORIGINAL_SSL_CERT_FILE.get().cloned().flatten() {
            Some(v) => base.env.push(("SSL_CERT_FILE".into(), v)),
            None => base.remove.push("SSL_CERT_FILE".into()),
        }
        let (stop_tx, stop_rx) = mpsc::channel();
        let mut s = Services {
            runner,
            bridges: Vec::new(),
            restarts: Arc::new(AtomicUsize::new(0)),
            base: base.clone(),
            stop_tx: Some(stop_tx),
            stop_rx: Some(stop_rx),
            threads: Vec::new(),
            local: None,
            ota: None,
        };
        s.subscribe(config, client, relay, &base);
        s.metrics(config, client);
        s.serial(config, client, relay);
        if !config.ota.modules.is_empty() {
            s.ota = local_client(config, client, "ota")
                .and_then(|local| OtaService::start(config, local, base.ota_env()));
        }
        if h.on_command.is_some() || h.on_property_set.is_some() || h.on_shadow_desired.is_some() {
            s.platform(config, client, &base);
        }
        s
    }

    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) {
        match std::thread::Builder::new()
            .name(name.into())
            .stack_size(128 * 1024)
            .spawn(f)
        {
            Ok(t) => self.threads.push(t),
            Err(e) => log::error!("cannot start thread {name}: {e}"),
        }
    }

    /// `[subscribe]` topics: each message logged and given to `on_message`.
    fn subscribe(&mut self, config: &Config, client: &Client, relay: &Relay, base: &Base) {
        for t in &config.subscribe.topics {
            let filter = client.topic(t);
            let hook = config.hooks.on_message.clone();
            let (runner, base) = (Arc::clone(&self.runner), base.clone());
            let on_message: Arc<dyn Fn(&Message) + Send + Sync> = Arc::new(move |m: &Message| {
                log::info!("message on {} ({} bytes)", m.topic, m.payload.len());
                if let Some(p) = &hook {
                    let extra = vec![
                        ("UIOT_TOPIC".into(), m.topic.clone()),
                        ("UIOT_QOS".into(), m.qos.to_u8().to_string()),
                    ];
                    let job = base.job("on_message", p, "message", extra, m.payload.clone());
                    let _ = runner.submit(job);
                }
            });
            match relay.subscribe_internal(&filter, config.subscribe.qos, on_message) {
                Ok(_) => log::info!("subscribed to {filter}"),
                Err(e) => log::error!("cannot subscribe to {filter} ([subscribe] topics): {e}"),
            }
        }
    }

    /// The connection's events: logged, and `on_connect` / `on_disconnect`.
    /// The daemon's events thread (one per connection) calls this; an
    /// event that came before these services started (`waited`) runs its
    /// hook too, but the OTA service announced itself when it started.
    pub fn on_event(&self, config: &Config) -> super::daemon::EventHandler {
        let (on_connect, on_disconnect) = (
            config.hooks.on_connect.clone(),
            config.hooks.on_disconnect.clone(),
        );
        let (runner, base) = (Arc::clone(&self.runner), self.base.clone());
        let restarts = Arc::clone(&self.restarts);
        let ota = self.ota.as_ref().map(OtaService::on_connect);
        Arc::new(move |e: Event, waited: bool| {
            let (hook, event, extra) = match e {
                Event::Connected { .. } => {
                    log::info!("connected");
                    if let Some(f) = ota.as_ref().filter(|_| !waited) {
                        f();
                    }
                    (&on_connect, "connect", Vec::new())
                }
                Event::Disconnected(why) => {
                    restarts.fetch_add(1, Ordering::Relaxed);
                    log::warn!("connection lost: {why}; reconnecting");
                    (
                        &on_disconnect,
                        "disconnect",
                        vec![("UIOT_REASON".into(), why)],
                    )
                }
                Event::Kicked => {
                    log::error!(
                        "another device logged in with this device's credentials and this one \
                         was disconnected; check that no other board or `uiot --direct` uses them"
                    );
                    return;
                }
                Event::Dropped(n) => {
                    log::warn!(
                        "the queue is full: {n} message(s) dropped so far ([queue] on_full)"
                    );
                    return;
                }
                _ => return,
            };
            if let Some(p) = hook {
                let _ =
                    runner.submit(base.job(&format!("on_{event}"), p, event, extra, Vec::new()));
            }
        })
    }

    /// `[serial]` bridges: frames up to `uplink_topic` (queued while
    /// offline), messages on `downlink_topic` down to the port.
    fn serial(&mut self, config: &Config, client: &Client, relay: &Relay) {
        for p in &config.serial.0 {
            let name = if p.name.is_empty() {
                "serial"
            } else {
                p.name.as_str()
            };
            let mut settings = SerialSettings::new(name, &p.device);
            settings.baud = p.baud;
            settings.data_bits = p.data_bits;
            settings.stop_bits = p.stop_bits;
            // The config loader accepted only the spellings these parse.
            settings.parity = p.parity.parse().unwrap_or(settings.parity);
            settings.flow_control = p.flow_control.parse().unwrap_or(settings.flow_control);
            settings.framing = match p.framing {
                SerialFraming::Line => Framing::Line,
                SerialFraming::Length => Framing::Length,
                SerialFraming::Idle => Framing::Idle(p.idle),
                SerialFraming::Raw => Framing::Raw(p.idle),
            };
            settings.max_frame = p.max_frame;
            settings.downlink_suffix = p.downlink_suffix.clone();
            let (up, qos, c) = (client.topic(&p.uplink_topic), p.uplink_qos, client.clone());
            let topic = up.clone();
            let uplink = Box::new(move |frame: Vec<u8>| {
                if let Err(e) = c.enqueue(&topic, frame, qos) {
                    log::warn!("serial: a frame not published to {topic}: {e}");
                }
            });
            let bridge = match Bridge::start(settings, uplink) {
                Ok(b) => b,
                Err(e) => {
                    log::error!("serial {name}: cannot start: {e}");
                    continue;
                }
            };
            log::info!("serial {name}: {} -> {up}", p.device.display());
            if let Some(down) = &p.downlink_topic {
                let filter = client.topic(down);
                let tx = bridge.sender();
                let port = name.to_string();
                let write: Arc<dyn Fn(&Message) + Send + Sync> = Arc::new(move |m: &Message| {
                    if tx.send(m.payload.clone()).is_err() {
                        log::warn!(
                            "serial {port}: the port does not keep up; a downlink message dropped"
                        );
                    }
                });
                match relay.subscribe_internal(&filter, QoS::AtLeastOnce, write) {
                    Ok(_) => log::info!("serial {name}: {filter} -> {}", p.device.display()),
                    Err(e) => log::error!("serial {name}: cannot subscribe to {filter}: {e}"),
                }
            }
            self.bridges.push(bridge);
        }
    }

    /// `[metrics]`: a post every interval (off at 0).
    fn metrics(&mut self, config: &Config, client: &Client) {
        let interval = config.metrics.interval;
        if interval.is_zero() {
            return;
        }
        let (m, client) = (config.metrics.clone(), client.clone());
        let Some(stop) = self.stop_rx.take() else {
            return;
        };
        let (dir, restarts) = (config.queue.dir.clone(), Arc::clone(&self.restarts));
        self.spawn("uiot-metrics", move || {
            let mut n: u64 = 0;
            // Wakes once per interval, or at stop (the sender dropped).
            loop {
                n = n.wrapping_add(1);
                super::metrics::post(&m, &client, dir.as_deref(), &restarts, n);
                if stop.recv_timeout(interval) != Err(mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
            }
        });
    }

    /// Commands, property sets and desired values, over a local connection.
    fn platform(&mut self, config: &Config, client: &Client, base: &Base) {
        let Some(local) = local_client(
            config,
            client,
            "on_command, on_property_set and on_shadow_desired",
        ) else {
            return;
        };
        let h = &config.hooks;
        if h.on_command.is_some() || h.on_property_set.is_some() {
            match Thing::new(&local) {
                Ok(thing) => {
                    let (cmd, set) = (h.on_command.clone(), h.on_property_set.clone());
                    let (runner, base) = (Arc::clone(&self.runner), base.clone());
                    self.spawn("uiot-thing", move || {
                        while let Some(e) = thing.recv() {
                            thing_event(e, cmd.as_deref(), set.as_deref(), &runner, &base);
                        }
                    });
                }
                Err(e) => log::error!("hooks: the thing model cannot start: {e}"),
            }
        }
        if let Some(program) = h.on_shadow_desired.clone() {
            match Shadow::new(&local) {
                Ok(shadow) => {
                    let (runner, base) = (Arc::clone(&self.runner), base.clone());
                    self.spawn("uiot-shadow", move || {
                        // Desired values set while the daemon was away.
                        match shadow.get() {
                            Ok(doc) if !doc.desired.is_empty() => {
                                desired(&shadow, doc.desired, doc.version, &program, &runner, &base)
                            }
                            Ok(_) => {}
                            Err(e) => log::warn!("shadow: cannot read the document at start: {e}"),
                        }
                        for d in shadow.desired() {
                            desired(&shadow, d.state, d.version, &program, &runner, &base);
                        }
                    });
                }
                Err(e) => log::error!("hooks: the shadow cannot start: {e}"),
            }
        }
        self.local = Some(local);
    }

    /// Stops them: hooks get until `deadline` to finish (and answer),
    /// then the local connection closes, which ends the service threads.
    pub fn stop(mut self, deadline: Duration) {
        self.stop_tx.take();
        if let Some(o) = self.ota.take() {
            o.stop();
        }
        for b in self.bridges {
            let st = b.stats();
            log::info!(
                "serial: {} frames up, {} down, {} cut at max_frame, {} down dropped, {} reopens",
                st.frames_up,
                st.frames_down,
                st.cut,
                st.dropped_down,
                st.reopens
            );
            b.stop();
        }
        self.runner.shutdown(deadline);
        if let Some(c) = self.local {
            let _ = c.disconnect();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// A connection to the daemon's own socket for `what` (logged when it
/// cannot be made: `what` is then off).
fn local_client(config: &Config, client: &Client, what: &str) -> Option<Client> {
    let mut o: Options = client.options().clone();
    o.local_socket = Some(config.daemon.socket.clone());
    o.queue = uiot::client::Queue::default();
    match Client::connect(o) {
        Ok(c) => Some(c),
        Err(e) => {
            log::error!("cannot connect to the daemon's own socket: {e}; {what} off");
            None
        }
    }
}

/// The RetCode and Output of a command or property set hook's outcome.
fn reply_of(name: &str, o: &HookOutcome) -> (i64, Map<String, Value>) {
    let text = String::from_utf8_lossy(&o.stdout);
    let output = match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Object(m)) => Some(m),
        _ if text.trim().is_empty() => Some(Map::new()),
        _ => None,
    };
    match (&o.exit, output) {
        (HookExit::Code(0), Some(m)) => (0, m),
        (HookExit::Code(0), None) => {
            log::warn!(
                "{name}: stdout is not a JSON object ({}); replied {UNANSWERED}",
                uiot::cut(text.trim())
            );
            (UNANSWERED, Map::new())
        }
        (HookExit::Code(n), out) => (i64::from(*n), out.unwrap_or_default()),
        (HookExit::TimedOut, _) => {
            log::warn!("{name}: killed at its time limit ([hooks] timeout); replied {UNANSWERED}");
            (UNANSWERED, Map::new())
        }
        (HookExit::Signal(s), _) => {
            log::warn!("{name}: ended by signal {s}; replied {UNANSWERED}");
            (UNANSWERED, Map::new())
        }
        (HookExit::NotStarted(why), _) => {
            log::warn!("{name}: did not start ({why}); replied {UNANSWERED}");
            (UNANSWERED, Map::new())
        }
    }
}

fn thing_event(
    e: ThingEvent,
    cmd: Option<&Path>,
    set: Option<&Path>,
    runner: &HookRunner,
    base: &Base,
) {
    match e {
        ThingEvent::Command(c) => {
            let Some(program) = cmd else {
                // Dropping it answers UNANSWERED (and logs).
                log::warn!(
                    "command {} arrived but [hooks] on_command is not set",
                    c.identifier
                );
                return;
            };
            let extra = vec![
                ("UIOT_REQUEST_ID".into(), c.request_id.clone()),
                ("UIOT_IDENTIFIER".into(), c.identifier.clone()),
                ("UIOT_TOPIC".into(), base.topic("tmodel/command")),
                ("UIOT_QOS".into(), "1".into()),
            ];
            let stdin = Value::Object(c.input.clone()).to_string().into_bytes();
            let mut job = base.job("on_command", program, "command", extra, stdin);
            job.done = Some(Box::new(move |o: HookOutcome| {
                let (code, output) = reply_of("on_command", &o);
                log::info!(
                    "command {} ({}) answered RetCode {code}",
                    c.identifier,
                    c.request_id
                );
                if let Err(e) = c.reply(code, &Value::Object(output)) {
                    log::warn!("cannot answer the command: {e}");
                }
            }));
            let _ = runner.submit(job);
        }
        ThingEvent::PropertySet(s) => {
            let Some(program) = set else {
                log::warn!("property set arrived but [hooks] on_property_set is not set");
                return;
            };
            let extra = vec![
                ("UIOT_REQUEST_ID".into(), s.request_id.clone()),
                ("UIOT_TOPIC".into(), base.topic("tmodel/property/set")),
                ("UIOT_QOS".into(), "1".into()),
            ];
            let stdin = Value::Object(s.properties.clone()).to_string().into_bytes();
            let mut job = base.job("on_property_set", program, "property_set", extra, stdin);
            job.done = Some(Box::new(move |o: HookOutcome| {
                let (code, _) = reply_of("on_property_set", &o);
                log::info!("property set {} answered RetCode {code}", s.request_id);
                if let Err(e) = s.reply(code) {
                    log::warn!("cannot answer the property set: {e}");
                }
            }));
            let _ = runner.submit(job);
        }
        _ => {}
    }
}

fn desired(
    shadow: &Shadow,
    state: Map<String, Value>,
    version: u32,
    program: &Path,
    runner: &HookRunner,
    base: &Base,
) {
    let extra = vec![("UIOT_VERSION".into(), version.to_string())];
    let stdin = Value::Object(state).to_string().into_bytes();
    let mut job = base.job("on_shadow_desired", program, "shadow_desired", extra, stdin);
    let shadow = shadow.clone();
    job.done = Some(Box::new(move |o: HookOutcome| {
        let text = String::from_utf8_lossy(&o.stdout);
        let reported = match serde_json::from_str::<Value>(text.trim()) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => None,
        };
        match o.exit {
            HookExit::Code(0) => match shadow.clear_desired(reported.as_ref()) {
                Ok(v) => log::info!("shadow desired values (version {version}) applied; now version {v}"),
                Err(e) => log::warn!("shadow: cannot clear the desired values: {e}"),
            },
            other => log::warn!("on_shadow_desired did not apply version {version} ({other:?}); the desired values stay in the shadow"),
        }
    }));
    let _ = runner.submit(job);
}
