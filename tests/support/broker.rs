//! A real Mosquitto broker per test, configured like UIoT Core.
//!
//! Owns: the broker's temporary directory (config, password file, ACL, log),
//! its process (started, restarted, killed and reaped here), its port, and the
//! test devices and "cloud" credentials it knows.
//! Must not touch: any address but 127.0.0.1; files outside its temporary
//! directory (it only reads `etc/broker/mosquitto.conf`, at compile time).
//!
//! The profile is `etc/broker/mosquitto.conf`; this module adds the
//! listener, the generated password file and ACL, and the log file.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::observer::Observer;
use super::tools::{self, TempDir, Tools};

/// The UIoT Core profile shared with `scripts/dev-broker.sh`.
pub const PROFILE: &str = include_str!("../../etc/broker/mosquitto.conf");

/// User name of the observer ("the cloud"): readwrite on every topic.
pub const CLOUD_USER: &str = "harness-cloud";
/// Password of the observer user (test-only broker on 127.0.0.1).
pub const CLOUD_PASSWORD: &str = "harness-cloud-pw";

/// How long to wait for Mosquitto to say it is running.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `restart` keeps retrying a port that is still busy.
const RESTART_BIND_TIMEOUT: Duration = Duration::from_secs(15);
/// How many fresh ports `start` tries when Mosquitto cannot bind one.
const PORT_ATTEMPTS: usize = 5;
/// Poll interval while waiting on the log.
const POLL: Duration = Duration::from_millis(10);

/// A device with static authentication (`PSN|DSN|1` + device secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Product serial number (16 chars on the platform).
    pub product_sn: String,
    /// Device serial number.
    pub device_sn: String,
    /// Device secret: the MQTT password.
    pub secret: String,
}

impl Device {
    /// A device from its three identifiers.
    pub fn new(product_sn: &str, device_sn: &str, secret: &str) -> Device {
        Device {
            product_sn: product_sn.to_string(),
            device_sn: device_sn.to_string(),
            secret: secret.to_string(),
        }
    }

    /// MQTT ClientID: `PSN.DSN`.
    pub fn client_id(&self) -> String {
        format!("{}.{}", self.product_sn, self.device_sn)
    }

    /// MQTT UserName for static auth: `PSN|DSN|1`.
    pub fn username(&self) -> String {
        format!("{}|{}|1", self.product_sn, self.device_sn)
    }

    /// The device's own custom topic prefix: `/PSN/DSN`.
    pub fn topic_prefix(&self) -> String {
        format!("/{}/{}", self.product_sn, self.device_sn)
    }

    /// A topic under the device's own prefix: `/PSN/DSN/<rest>`.
    pub fn topic(&self, rest: &str) -> String {
        format!("{}/{rest}", self.topic_prefix())
    }

    /// A system topic of the device: `/$system/PSN/DSN/<rest>`.
    pub fn system_topic(&self, rest: &str) -> String {
        format!("/$system/{}/{}/{rest}", self.product_sn, self.device_sn)
    }

    /// The product's broadcast topic: `/PSN/$broadcast/<rest>`.
    pub fn broadcast_topic(&self, rest: &str) -> String {
        format!("/{}/$broadcast/{rest}", self.product_sn)
    }
}

/// A device logging in for dynamic registration (`PSN|DSN|2` + product
/// secret). The broker lets it subscribe to
/// `/$system/PSN/DSN/password_reply` and publish to `/$system/PSN/DSN/password`
/// only. The test plays the cloud: it watches `password` with an observer and
/// answers on `password_reply` with [`Broker::cloud_publish`]. To let the
/// device log in afterwards, also add a static [`Device`] with the secret the
/// test hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicDevice {
    /// Product serial number.
    pub product_sn: String,
    /// Device serial number chosen by the device.
    pub device_sn: String,
    /// Product secret: the MQTT password for authmode 2.
    pub product_secret: String,
}

impl DynamicDevice {
    /// A dynamic-registration login from its identifiers.
    pub fn new(product_sn: &str, device_sn: &str, product_secret: &str) -> DynamicDevice {
        DynamicDevice {
            product_sn: product_sn.to_string(),
            device_sn: device_sn.to_string(),
            product_secret: product_secret.to_string(),
        }
    }

    /// MQTT ClientID: `PSN.DSN`.
    pub fn client_id(&self) -> String {
        format!("{}.{}", self.product_sn, self.device_sn)
    }

    /// MQTT UserName for dynamic registration: `PSN|DSN|2`.
    pub fn username(&self) -> String {
        format!("{}|{}|2", self.product_sn, self.device_sn)
    }

    /// `/$system/PSN/DSN/password` (the device publishes its request here).
    pub fn request_topic(&self) -> String {
        format!("/$system/{}/{}/password", self.product_sn, self.device_sn)
    }

    /// `/$system/PSN/DSN/password_reply` (the cloud answers here).
    pub fn reply_topic(&self) -> String {
        format!(
            "/$system/{}/{}/password_reply",
            self.product_sn, self.device_sn
        )
    }
}

/// The default devices: two of product `harnessprod00001`, one of
/// `harnessprod00002`.
pub fn default_devices() -> Vec<Device> {
    vec![
        Device::new("harnessprod00001", "harnessdevi00001", "harnesssecret001"),
        Device::new("harnessprod00001", "harnessdevi00002", "harnesssecret002"),
        Device::new("harnessprod00002", "harnessdevi00003", "harnesssecret003"),
    ]
}

/// What to start: devices, dynamic-registration logins, extra config lines,
/// and optionally a fixed port.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    devices: Vec<Device>,
    dynamic: Vec<DynamicDevice>,
    extra: Vec<String>,
    port: Option<u16>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            devices: default_devices(),
            dynamic: Vec::new(),
            extra: Vec::new(),
            port: None,
        }
    }
}

impl BrokerConfig {
    /// The default devices, no extras, a free port.
    pub fn new() -> BrokerConfig {
        BrokerConfig::default()
    }

    /// Adds a static-auth device (index = 3, 4, ... after the defaults).
    pub fn device(mut self, device: Device) -> BrokerConfig {
        self.devices.push(device);
        self
    }

    /// Adds a dynamic-registration login.
    pub fn dynamic(mut self, device: DynamicDevice) -> BrokerConfig {
        self.dynamic.push(device);
        self
    }

    /// Appends a raw line to mosquitto.conf (after the profile, so it wins
    /// where Mosquitto lets a later line override an earlier one).
    pub fn extra(mut self, line: &str) -> BrokerConfig {
        self.extra.push(line.to_string());
        self
    }

    /// Listens on this port instead of a free one picked at random.
    pub fn port(mut self, port: u16) -> BrokerConfig {
        self.port = Some(port);
        self
    }
}

/// Why a start attempt failed.
enum StartFailure {
    /// The port was taken (by the time Mosquitto tried to bind it).
    PortBusy,
    /// Anything else: the reason, with the log.
    Other(String),
}

/// A running Mosquitto. Dropping it kills and reaps the process and removes
/// its directory; if the test is panicking, the end of the broker log is
/// printed first.
#[derive(Debug)]
pub struct Broker {
    dir: TempDir,
    port: u16,
    child: Mutex<Option<Child>>,
    devices: Vec<Device>,
    dynamic: Vec<DynamicDevice>,
    extra: Vec<String>,
    tools: &'static Tools,
    sequence: AtomicUsize,
}

impl Broker {
    /// Starts a broker with the default devices. Panics (with how to install
    /// it) when Mosquitto is missing; see [`Broker::try_start`].
    pub fn start() -> Broker {
        Broker::start_with(BrokerConfig::default())
    }

    /// Starts a broker with this configuration. Panics when Mosquitto is
    /// missing or does not come up (with its log).
    pub fn start_with(config: BrokerConfig) -> Broker {
        Broker::launch(tools::tools_or_panic(), config)
    }

    /// Starts a broker, or returns `None` after printing a SKIP line when
    /// Mosquitto is missing and `CI` is not `true` (with `CI=true`: panics).
    pub fn try_start() -> Option<Broker> {
        Broker::try_start_with(BrokerConfig::default())
    }

    /// [`Broker::try_start`] with a configuration.
    pub fn try_start_with(config: BrokerConfig) -> Option<Broker> {
        tools::tools_or_skip().map(|t| Broker::launch(t, config))
    }

    fn launch(tools: &'static Tools, config: BrokerConfig) -> Broker {
        let dir = TempDir::new("broker");
        let mut broker = Broker {
            dir,
            port: 0,
            child: Mutex::new(None),
            devices: config.devices,
            dynamic: config.dynamic,
            extra: config.extra,
            tools,
            sequence: AtomicUsize::new(0),
        };
        broker.write_auth_files();
        match config.port {
            Some(port) => {
                broker.port = port;
                broker.start_retrying_port(START_TIMEOUT);
            }
            None => {
                let mut last = String::new();
                for _ in 0..PORT_ATTEMPTS {
                    broker.port = free_port();
                    match broker.spawn_and_wait() {
                        Ok(()) => return broker,
                        Err(StartFailure::PortBusy) => {
                            last = format!("port {} was taken", broker.port);
                        }
                        Err(StartFailure::Other(why)) => panic!("{why}"),
                    }
                }
                panic!("mosquitto could not bind a free port in {PORT_ATTEMPTS} attempts ({last}); is something grabbing ports on 127.0.0.1?");
            }
        }
        broker
    }

    /// Mosquitto's process id while it runs (to signal a reload).
    pub fn pid(&self) -> Option<u32> {
        self.child_slot().as_ref().map(Child::id)
    }

    /// The port Mosquitto listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's temporary directory (config, passwd, acl, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the broker log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// The static-auth device number `i` (0, 1: product `harnessprod00001`;
    /// 2: product `harnessprod00002`; then those added by the config).
    pub fn device(&self, i: usize) -> Device {
        match self.devices.get(i) {
            Some(d) => d.clone(),
            None => panic!(
                "broker has {} devices, there is no device({i}); add more with BrokerConfig::device",
                self.devices.len()
            ),
        }
    }

    /// All static-auth devices.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The dynamic-registration login number `i`, in config order.
    pub fn dynamic_device(&self, i: usize) -> DynamicDevice {
        match self.dynamic.get(i) {
            Some(d) => d.clone(),
            None => panic!(
                "broker has {} dynamic-registration logins, there is no dynamic_device({i}); add them with BrokerConfig::dynamic",
                self.dynamic.len()
            ),
        }
    }

    /// The whole broker log so far (across restarts).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// How many times `needle` occurs in the log so far.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Waits until the log contains `needle`; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_log_count(needle, 1, timeout)
    }

    /// Waits until `needle` occurs at least `count` times in the log; false
    /// on timeout. Handy for "the client connected a second time".
    pub fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_count(needle) >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL);
        }
    }

    /// True while the Mosquitto process is alive.
    pub fn is_running(&self) -> bool {
        match self.child_slot().as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the broker (SIGKILL, like a crash: clients see their connection
    /// closed) and reaps it. Does nothing if it is not running.
    pub fn stop(&self) {
        if let Some(mut child) = self.child_slot().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker and starts it again on the same port with the same
    /// files; returns once it listens again. Retries the bind for a while in
    /// case the port is still held. Clients must reconnect; nothing of the
    /// old sessions survives (`persistence false`).
    pub fn restart(&self) {
        self.stop();
        self.start_retrying_port(RESTART_BIND_TIMEOUT);
    }

    /// An observer ("the cloud") subscribed to `filter` with QoS 1; returns
    /// once the broker has acknowledged the subscription.
    pub fn observer(&self, filter: &str) -> Observer {
        let id = self.next_id("harness-observer");
        Observer::spawn(self, &id, CLOUD_USER, CLOUD_PASSWORD, &[filter])
    }

    /// A stand-in device (`mosquitto_sub` logged in as `device`) subscribed
    /// to `filters` with QoS 1; returns once the broker has acknowledged the
    /// subscription (Mosquitto grants even filters the ACL denies; it then
    /// delivers nothing on them). It logs in with the device's own ClientID,
    /// so another login as the same device (e.g. [`Broker::device_publish`]
    /// or the client under test) kicks it off, as the platform would.
    pub fn device_subscriber(&self, device: &Device, filters: &[&str]) -> Observer {
        self.subscriber(
            &device.client_id(),
            &device.username(),
            &device.secret,
            filters,
        )
    }

    /// A `mosquitto_sub` with any login fields (e.g. a [`DynamicDevice`]),
    /// subscribed to `filters` with QoS 1; returns once the broker has
    /// acknowledged the subscription. Panics if the login is refused.
    pub fn subscriber(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
        filters: &[&str],
    ) -> Observer {
        Observer::spawn(self, client_id, username, password, filters)
    }

    /// Publishes as the cloud (observer credentials) with `mosquitto_pub`;
    /// returns after the broker accepted it (PUBACK for QoS 1). Panics with
    /// `mosquitto_pub`'s error output when that fails.
    pub fn cloud_publish(&self, topic: &str, payload: impl AsRef<[u8]>, qos: u8) {
        let id = self.next_id("harness-cloud-pub");
        let out = self.mosquitto_pub(
            &id,
            CLOUD_USER,
            CLOUD_PASSWORD,
            topic,
            payload.as_ref(),
            qos,
        );
        if !out.status.success() {
            panic!(
                "cloud_publish to {topic:?} failed ({}): {}\n--- broker log tail ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                tail(&self.log(), 20)
            );
        }
    }

    /// Runs `mosquitto_pub` once (MQTT 3.1.1) with these login fields and
    /// returns its output; the exit status says whether the broker accepted
    /// the login (a refused login exits non-zero; an ACL-denied publish does
    /// not, Mosquitto acknowledges and drops it).
    pub fn mosquitto_pub(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
        topic: &str,
        payload: &[u8],
        qos: u8,
    ) -> std::process::Output {
        let mut cmd = Command::new(&self.tools.publish);
        cmd.args(["-h", "127.0.0.1", "-V", "mqttv311"])
            .args(["-p", &self.port.to_string()])
            .args(["-i", client_id, "-u", username, "-P", password])
            .args(["-q", &qos.to_string(), "-t", topic])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if payload.is_empty() {
            cmd.arg("-n").stdin(Stdio::null());
        } else {
            cmd.arg("-s").stdin(Stdio::piped());
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot run {}: {e}", self.tools.publish.display()),
        };
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            // A failed write shows up as mosquitto_pub's own error below.
            let _ = stdin.write_all(payload);
        }
        match child.wait_with_output() {
            Ok(out) => out,
            Err(e) => panic!("mosquitto_pub did not finish: {e}"),
        }
    }

    /// Publishes as `device` with `mosquitto_pub` (a stand-in device).
    pub fn device_publish(
        &self,
        device: &Device,
        topic: &str,
        payload: impl AsRef<[u8]>,
        qos: u8,
    ) -> std::process::Output {
        self.mosquitto_pub(
            &device.client_id(),
            &device.username(),
            &device.secret,
            topic,
            payload.as_ref(),
            qos,
        )
    }

    /// Programs used by this broker.
    pub(crate) fn tools(&self) -> &'static Tools {
        self.tools
    }

    /// A per-broker unique client id.
    pub(crate) fn next_id(&self, prefix: &str) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{n}")
    }

    fn child_slot(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock cannot leave the Option half-written.
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_auth_files(&self) {
        let dir = self.dir.path();
        let names = self.devices.iter().map(Device::username);
        let names = names.chain(self.dynamic.iter().map(DynamicDevice::username));
        for name in names {
            if name.contains(':') || name.contains(char::is_whitespace) {
                panic!(
                    "test user name {name:?} cannot go into Mosquitto's password file \
                     (':' separates name and hash there; whitespace breaks the ACL file); \
                     UIoT allows ':' in a DeviceSN, but pick one without ':' for broker tests \
                     (the fake peer has no such limit)"
                );
            }
        }
        let mut passwd = format!("{CLOUD_USER}:{CLOUD_PASSWORD}\n");
        let mut acl = String::from(
            "# Generated by tests/support/broker.rs: UIoT Core device rules.\n\
             # The cloud (observer) may read and write everything; '#' also\n\
             # matches /$system/... because those topics start with '/'.\n",
        );
        let _ = writeln!(acl, "user {CLOUD_USER}\ntopic readwrite #\n");
        for d in &self.devices {
            let _ = writeln!(passwd, "{}:{}", d.username(), d.secret);
            let _ = writeln!(
                acl,
                "user {}\ntopic readwrite /{p}/{s}/#\ntopic readwrite /$system/{p}/{s}/#\ntopic read /{p}/$broadcast/#\n",
                d.username(),
                p = d.product_sn,
                s = d.device_sn
            );
        }
        for d in &self.dynamic {
            let _ = writeln!(passwd, "{}:{}", d.username(), d.product_secret);
            let _ = writeln!(
                acl,
                "user {}\ntopic write {}\ntopic read {}\n",
                d.username(),
                d.request_topic(),
                d.reply_topic()
            );
        }
        write_file(&dir.join("passwd"), &passwd);
        write_file(&dir.join("acl"), &acl);
        let out = Command::new(&self.tools.passwd)
            .arg("-U")
            .arg(dir.join("passwd"))
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "mosquitto_passwd -U failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("cannot run {}: {e}", self.tools.passwd.display()),
        }
    }

    fn write_config(&self) -> PathBuf {
        let dir = self.dir.path();
        let mut conf = format!(
            "# Generated by tests/support/broker.rs\nlistener {} 127.0.0.1\n\n",
            self.port
        );
        conf.push_str(PROFILE);
        let _ = writeln!(conf, "\n# --- run-specific (harness) ---");
        let _ = writeln!(conf, "password_file {}", dir.join("passwd").display());
        let _ = writeln!(conf, "acl_file {}", dir.join("acl").display());
        let _ = writeln!(conf, "log_dest file {}", self.log_path().display());
        if tools::running_as_root() {
            let _ = writeln!(conf, "user root");
        }
        for line in &self.extra {
            let _ = writeln!(conf, "{line}");
        }
        let path = dir.join("mosquitto.conf");
        write_file(&path, &conf);
        path
    }

    /// Starts on `self.port`, retrying while the port is busy, for `patience`.
    fn start_retrying_port(&self, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartFailure::PortBusy) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(StartFailure::PortBusy) => panic!(
                    "mosquitto could not bind 127.0.0.1:{} for {patience:?} (address in use); stop whatever holds it",
                    self.port
                ),
                Err(StartFailure::Other(why)) => panic!("{why}"),
            }
        }
    }

    /// Writes the config, spawns Mosquitto, and waits until its log says
    /// "mosquitto version ... running" (printed after every listener is open).
    fn spawn_and_wait(&self) -> Result<(), StartFailure> {
        let conf = self.write_config();
        let log_path = self.log_path();
        let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let stderr_path = self.dir.path().join("mosquitto.stderr");
        let stderr_start = fs::metadata(&stderr_path).map(|m| m.len()).unwrap_or(0);
        let out = match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
        {
            Ok(f) => f,
            Err(e) => {
                return Err(StartFailure::Other(format!(
                    "cannot create {}: {e}",
                    stderr_path.display()
                )))
            }
        };
        let err = match out.try_clone() {
            Ok(f) => f,
            Err(e) => {
                return Err(StartFailure::Other(format!(
                    "cannot duplicate a file handle: {e}"
                )))
            }
        };
        let child = Command::new(&self.tools.mosquitto)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                return Err(StartFailure::Other(format!(
                    "cannot run {}: {e}; {}",
                    self.tools.mosquitto.display(),
                    tools::INSTALL_HINT
                )))
            }
        };
        *self.child_slot() = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let new_log = read_from(&log_path, log_start);
            if new_log
                .lines()
                .any(|l| l.contains("mosquitto version") && l.trim_end().ends_with(" running"))
            {
                return Ok(());
            }
            let exited = match self.child_slot().as_mut() {
                Some(c) => c.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                self.child_slot().take();
                // The log may be written just before exit; read it again.
                let new_log = read_from(&log_path, log_start);
                let new_err = read_from(&stderr_path, stderr_start);
                if new_log.contains("Address already in use")
                    || new_err.contains("Address already in use")
                {
                    return Err(StartFailure::PortBusy);
                }
                return Err(StartFailure::Other(format!(
                    "mosquitto exited during start-up ({status}) on port {}.\n--- log ---\n{new_log}\n--- stderr ---\n{new_err}\n--- config ---\n{}",
                    self.port,
                    read_lossy(&conf)
                )));
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(StartFailure::Other(format!(
                    "mosquitto did not report \"running\" within {START_TIMEOUT:?} on port {}.\n--- log ---\n{}\n--- stderr ---\n{}",
                    self.port,
                    read_from(&log_path, log_start),
                    read_from(&stderr_path, stderr_start)
                )));
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- broker {} log tail ({}) ---\n{}",
                self.addr(),
                self.log_path().display(),
                tail(&self.log(), 40)
            );
        }
        self.stop();
    }
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn write_file(path: &Path, contents: &str) {
    if let Err(e) = fs::write(path, contents) {
        panic!("cannot write {}: {e}", path.display());
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The file's contents from byte `offset` on (empty if it does not exist).
fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let mut bytes = Vec::new();
    use std::io::Seek;
    if file.seek(std::io::SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut bytes).is_err()
    {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
