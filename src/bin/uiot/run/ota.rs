//! Firmware upgrades by `uiot run` (`[ota]`, `[ota.NAME]`). At start it
//! settles an upgrade applied before a restart (the pending marker against
//! the version now running: `report_success`, or `report_fail` -5), then
//! reports every module's version and asks for pending upgrades; after
//! each reconnect it asks again. An `update_firmware` starts a worker for
//! its module (one at a time per module; one more notice waits, the
//! newest): download (resumed, Size and MD5 checked, progress every 5 s),
//! the marker written, `burning`, the apply command (or `[hooks] on_ota`),
//! then the module's version read again: the target version means
//! `report_success`; anything else waits for the restart that settles it.
//! Never a success before the new version runs.
//!
//! The service talks MQTT over its own local connection to the daemon's
//! socket, like the thing model hooks, so `uiot ota check` is a peer.
//!
//! Owns: the workers, the apply runs (a hook runner per module, its
//! timeout the module's `apply_timeout`), the state file's updates; one
//! upgrade's steps are in `ota/upgrade.rs`.
//! Must not touch: how a download works (`uiot::platform::ota`), the
//! state file's shape (`crate::ota::state`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use uiot::config::{Config, OtaModule};
use uiot::platform::ota::{ModuleVersion, Notice, Ota};
use uiot::Client;

use super::hooks::{HookLimits, HookRunner};
use crate::ota::state::{self, Outcome, Pending, State};
use crate::ota::version;

mod upgrade;
use upgrade::Fetch;

/// The environment every apply gets (the device, `SSL_CERT_FILE`).
#[derive(Clone, Default)]
pub struct Env {
    /// Variables set.
    pub set: Vec<(String, String)>,
    /// Variables removed.
    pub remove: Vec<String>,
}

/// One module's worker slot.
#[derive(Default)]
struct Slot {
    busy: bool,
    /// The newest notice that came while busy.
    next: Option<Notice>,
}

struct Inner {
    ota: Ota,
    modules: Vec<OtaModule>,
    dir: PathBuf,
    state_file: PathBuf,
    fetch: Fetch,
    on_ota: Option<PathBuf>,
    env: Env,
    state: Mutex<State>,
    slots: Mutex<HashMap<String, Slot>>,
    runners: HashMap<String, HookRunner>,
    stopping: AtomicBool,
    /// Workers running (joined at stop).
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// The OTA service of the daemon.
pub struct OtaService {
    inner: Arc<Inner>,
    local: Client,
    notices: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OtaService {
    /// Starts it over `local` (a connection to the daemon's socket); `None`
    /// (logged) when `[ota]` has no module or it cannot start.
    pub fn start(config: &Config, local: Client, env: Env) -> Option<OtaService> {
        let o = &config.ota;
        if o.modules.is_empty() {
            return None;
        }
        if let Err(e) = std::fs::create_dir_all(&o.dir) {
            log::error!(
                "ota: cannot create [ota] dir {}: {e}; OTA is off",
                o.dir.display()
            );
            return None;
        }
        let mut st = State::load(&o.state_file).unwrap_or_else(|why| {
            let mut bad = o.state_file.clone().into_os_string();
            bad.push(".bad");
            let bad = PathBuf::from(bad);
            log::error!(
                "ota: {why}; starting with an empty state (the file is kept as {})",
                bad.display()
            );
            let _ = std::fs::rename(&o.state_file, &bad);
            State::default()
        });
        let mut versions = Vec::new();
        let mut settled = Vec::new();
        for m in &o.modules {
            let running = match version::running(m) {
                Ok(v) => v,
                Err(why) => {
                    log::error!(
                        "ota {}: {why}; this module is not reported and not upgraded",
                        m.name
                    );
                    continue;
                }
            };
            log::info!("ota {}: running {running}", m.name);
            let ms = st.module(&m.name);
            ms.active = None;
            ms.reported = Some(running.clone());
            if let Some(p) = ms.pending.take() {
                settled.push((m.name.clone(), p, running.clone()));
            }
            versions.push(ModuleVersion::new(&m.name, &running));
        }
        let ota = match Ota::new(&local, versions) {
            Ok(x) => x,
            Err(e) => {
                log::error!("ota: cannot start: {e}");
                return None;
            }
        };
        let mut runners = HashMap::new();
        for m in &o.modules {
            let limits = HookLimits {
                max_running: 1,
                max_queued: 1,
                timeout: m.apply_timeout,
                grace: Duration::from_secs(5),
                max_output: 16 * 1024,
            };
            runners.insert(m.name.clone(), HookRunner::new(limits));
        }
        let fetch = Fetch {
            margin: o.keep_free_mb.saturating_mul(1024 * 1024),
            timeout: o.timeout,
            retries: o.retries,
            ca_pem: o.ca_file.as_ref().and_then(|f| match std::fs::read(f) {
                Ok(pem) => Some(pem),
                Err(e) => {
                    log::error!(
                        "ota: cannot read ca_file {}: {e}; using the system's roots",
                        f.display()
                    );
                    None
                }
            }),
        };
        let inner = Arc::new(Inner {
            ota: ota.clone(),
            modules: o.modules.clone(),
            dir: o.dir.clone(),
            state_file: o.state_file.clone(),
            fetch,
            on_ota: config.hooks.on_ota.clone(),
            env,
            state: Mutex::new(st),
            slots: Mutex::new(HashMap::new()),
            runners,
            stopping: AtomicBool::new(false),
            workers: Mutex::new(Vec::new()),
        });
        for (module, pending, running) in settled {
            inner.settle(&module, &pending, &running);
        }
        inner.save();
        inner.announce();
        let for_thread = Arc::clone(&inner);
        let notices = std::thread::Builder::new()
            .name("uiot-ota".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                while let Some(n) = for_thread.ota.recv() {
                    Inner::notice(&for_thread, n);
                }
            });
        let notices = match notices {
            Ok(t) => Some(t),
            Err(e) => {
                log::error!("ota: cannot start its thread: {e}");
                None
            }
        };
        Some(OtaService {
            inner,
            local,
            notices,
        })
    }

    /// What the connection's events call after each (re)connect.
    pub fn on_connect(&self) -> Arc<dyn Fn() + Send + Sync> {
        let inner = Arc::clone(&self.inner);
        Arc::new(move || inner.announce())
    }

    /// Stops: downloads cancelled, an apply running is waited for (up to
    /// its `apply_timeout`), the local connection closed.
    pub fn stop(self) {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::SeqCst);
        for m in &inner.modules {
            if let Some((v, _)) = lock(&inner.state)
                .modules
                .get(&m.name)
                .and_then(|s| s.active.clone())
            {
                if let Some(flag) = inner.ota.cancel_flag(&m.name, &v) {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        }
        for (name, r) in &inner.runners {
            let wait = inner
                .modules
                .iter()
                .find(|m| &m.name == name)
                .map_or(Duration::ZERO, |m| m.apply_timeout);
            r.shutdown(wait);
        }
        let workers: Vec<JoinHandle<()>> = lock(&inner.workers).drain(..).collect();
        for w in workers {
            let _ = w.join();
        }
        let _ = self.local.disconnect();
        if let Some(t) = self.notices {
            let _ = t.join();
        }
    }
}

impl Inner {
    fn module(&self, name: &str) -> Option<&OtaModule> {
        self.modules.iter().find(|m| m.name == name)
    }

    fn save(&self) {
        if let Err(e) = lock(&self.state).save(&self.state_file) {
            log::error!("ota: cannot write {}: {e}", self.state_file.display());
        }
    }

    /// The upgrade ended without an outcome for the cloud: its handle
    /// released, `last` says why.
    fn cancelled(&self, module: &str, version: &str, why: &str) {
        self.ota.finish(module, version);
        self.record(module, version, "cancelled", None, why);
    }

    fn record(&self, module: &str, version: &str, result: &str, code: Option<i64>, reason: &str) {
        {
            let mut st = lock(&self.state);
            let ms = st.module(module);
            ms.active = None;
            ms.last = Some(Outcome {
                version: version.into(),
                result: result.into(),
                code,
                reason: reason.into(),
                at: state::now(),
            });
        }
        self.save();
    }

    /// `report_version` and `request_firmware` of every module.
    fn announce(&self) {
        if let Err(e) = self
            .ota
            .report_version()
            .and_then(|()| self.ota.request_firmware())
        {
            log::warn!("ota: cannot report the versions: {e}");
        }
    }

    fn success(&self, module: &str, version: &str, reason: &str) {
        log::info!("ota {module}: {version} runs: upgrade succeeded");
        if let Err(e) = self.ota.set_version(module, version) {
            log::warn!("ota {module}: {e}");
        }
        lock(&self.state).module(module).reported = Some(version.into());
        // Recorded first: once the cloud has the result, `uiot ota status`
        // shows it too.
        self.record(module, version, "success", None, reason);
        if let Err(e) = self.ota.report_success(module, version) {
            log::warn!("ota {module}: report_success not sent: {e}");
        }
    }

    fn fail(&self, module: &str, version: &str, code: i64, reason: &str) {
        log::error!("ota {module}: upgrade to {version} failed (ErrCode {code}): {reason}");
        self.record(module, version, "fail", Some(code), reason);
        if let Err(e) = self.ota.report_fail(module, version, code) {
            log::warn!("ota {module}: report_fail not sent: {e}");
        }
    }

    /// An upgrade applied before this start: does its version run now?
    fn settle(&self, module: &str, p: &Pending, running: &str) {
        let _ = std::fs::remove_file(&p.image);
        if running == p.version {
            self.success(module, &p.version, "the new version runs after a restart");
        } else {
            let why = format!(
                "after applying {} and restarting, the module runs {running}",
                p.version
            );
            self.fail(module, &p.version, -5, &why);
        }
    }

    fn notice(this: &Arc<Inner>, n: Notice) {
        let (module, version) = {
            let (m, v) = n.target();
            (m.to_string(), v.to_string())
        };
        if let Notice::Cancel { .. } = n {
            log::info!("ota {module}: the cloud cancelled the upgrade to {version}");
            let mut slots = lock(&this.slots);
            if let Some(slot) = slots.get_mut(&module) {
                if slot.next.as_ref().is_some_and(|q| q.target().1 == version) {
                    slot.next = None;
                    this.ota.finish(&module, &version);
                    return;
                }
            }
            drop(slots);
            // The worker downloading it stops at its cancel flag (set by
            // the library) and ends the upgrade itself; once it applies,
            // a cancel comes too late.
            let running = lock(&this.state)
                .modules
                .get(&module)
                .and_then(|s| s.active.clone());
            match running {
                Some((v, phase)) if v == version && phase == "applying" => {
                    log::warn!("ota {module}: {version} is being applied: too late to cancel");
                }
                Some((v, _)) if v == version => {}
                _ => this.ota.finish(&module, &version),
            }
            return;
        }
        if this.stopping.load(Ordering::SeqCst) {
            this.ota.finish(&module, &version);
            return;
        }
        if this.module(&module).is_none() {
            log::warn!(
                "ota: an upgrade of module {module} to {version}, which [ota] does not \
                 describe: ignored (add [ota.{module}])"
            );
            this.ota.finish(&module, &version);
            return;
        }
        let (reported, pending) = {
            let st = lock(&this.state);
            let ms = st.modules.get(&module);
            (
                ms.and_then(|s| s.reported.clone()),
                ms.and_then(|s| s.pending.clone()),
            )
        };
        if pending.as_ref().is_some_and(|p| p.version == version) {
            log::info!(
                "ota {module}: {version} is applied and waits for a restart to run; notice ignored"
            );
            this.ota.finish(&module, &version);
            return;
        }
        if reported.as_deref() == Some(version.as_str()) {
            this.success(&module, &version, "already running");
            return;
        }
        let mut slots = lock(&this.slots);
        let slot = slots.entry(module.clone()).or_default();
        if slot.busy {
            log::info!("ota {module}: an upgrade runs; {version} starts after it ends");
            if let Some(old) = slot.next.replace(n) {
                let (om, ov) = old.target();
                this.ota.finish(om, ov);
            }
            return;
        }
        slot.busy = true;
        drop(slots);
        // Active before the worker runs: a cancel from now on is its.
        lock(&this.state).module(&module).active = Some((version, "downloading".into()));
        Inner::spawn(this, n);
    }

    fn spawn(this: &Arc<Inner>, n: Notice) {
        let (module, version) = {
            let (m, v) = n.target();
            (m.to_string(), v.to_string())
        };
        let for_worker = Arc::clone(this);
        let spawned = std::thread::Builder::new()
            .name("uiot-ota-worker".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut n = Some(n);
                while let Some(notice) = n.take() {
                    for_worker.upgrade(&notice);
                    let (m, _) = notice.target();
                    let mut slots = lock(&for_worker.slots);
                    let slot = slots.entry(m.to_string()).or_default();
                    n = slot.next.take();
                    if for_worker.stopping.load(Ordering::SeqCst) {
                        if let Some(q) = n.take() {
                            let (qm, qv) = q.target();
                            for_worker.ota.finish(qm, qv);
                        }
                    }
                    if n.is_none() {
                        slot.busy = false;
                    }
                }
            });
        match spawned {
            Ok(t) => {
                let mut w = lock(&this.workers);
                w.retain(|t| !t.is_finished());
                w.push(t);
            }
            Err(e) => {
                log::error!(
                    "ota {module}: cannot start a worker thread: {e}; {version} not installed"
                );
                if let Some(slot) = lock(&this.slots).get_mut(&module) {
                    slot.busy = false;
                }
                this.ota.finish(&module, &version);
            }
        }
    }
}
