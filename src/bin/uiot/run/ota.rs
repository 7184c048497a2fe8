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
//! timeout the module's `apply_timeout`), the state file's updates.
//! Must not touch: how a download works (`uiot::platform::ota`), the
//! state file's shape (`crate::ota::state`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use uiot::config::{Config, OtaModule};
use uiot::platform::ota::{ModuleVersion, Notice, Ota, OtaError};
use uiot::Client;

use super::hooks::{HookExit, HookJob, HookLimits, HookOutcome, HookRunner};
use crate::ota::state::{self, Outcome, Pending, State};
use crate::ota::version;

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

    /// One upgrade, start to end.
    fn upgrade(&self, n: &Notice) {
        let Notice::Update {
            module,
            version,
            size,
            md5,
            ..
        } = n
        else {
            return;
        };
        let Some(m) = self.module(module) else { return };
        let from = {
            let mut st = lock(&self.state);
            let ms = st.module(module);
            ms.active = Some((version.clone(), "downloading".into()));
            ms.reported.clone().unwrap_or_default()
        };
        self.save();
        log::info!("ota {module}: downloading {version} ({size} bytes)");
        let cancel = self
            .ota
            .cancel_flag(module, version)
            .unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
        let got = self.fetch.get(n, &self.dir, &cancel, |pct| {
            if let Err(e) = self
                .ota
                .report_progress(module, "downloading", pct, version)
            {
                log::debug!("ota {module}: progress not sent: {e}");
            }
        });
        let image = match got {
            Ok(p) => p,
            Err(OtaError::Cancelled) => {
                log::info!("ota {module}: download of {version} cancelled");
                self.cancelled(module, version, "cancelled during the download");
                return;
            }
            Err(e) => {
                self.fail(module, version, e.err_code(), &e.to_string());
                return;
            }
        };
        if cancel.load(Ordering::SeqCst) || self.stopping.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&image);
            self.cancelled(module, version, "cancelled before the apply");
            return;
        }
        {
            let mut st = lock(&self.state);
            let ms = st.module(module);
            ms.active = Some((version.clone(), "applying".into()));
            ms.pending = Some(Pending {
                version: version.clone(),
                from: from.clone(),
                image: image.clone(),
                since: state::now(),
            });
        }
        // The marker is on disk before anything is flashed.
        self.save();
        if let Err(e) = self.ota.report_progress(module, "burning", 0, version) {
            log::debug!("ota {module}: progress not sent: {e}");
        }
        log::info!("ota {module}: applying {version} ({})", image.display());
        let outcome = self.apply(m, &image, version, &from, md5, *size);
        let printed = String::from_utf8_lossy(&outcome.stdout);
        if !printed.trim().is_empty() {
            log::info!(
                "ota {module}: the apply printed: {}",
                uiot::cut(printed.trim())
            );
        }
        let ok = matches!(outcome.exit, HookExit::Code(0));
        if !ok {
            lock(&self.state).module(module).pending = None;
            let _ = std::fs::remove_file(&image);
            let why = match &outcome.exit {
                HookExit::Code(c) => format!("the apply command exited with {c}"),
                HookExit::Signal(s) => format!("the apply command was killed by signal {s}"),
                HookExit::TimedOut => format!(
                    "the apply command ran longer than apply_timeout ({} s)",
                    m.apply_timeout.as_secs()
                ),
                HookExit::NotStarted(why) => format!("the apply command did not start: {why}"),
            };
            self.fail(module, version, -5, &why);
            return;
        }
        match version::running(m) {
            Ok(now) if &now == version => {
                lock(&self.state).module(module).pending = None;
                let _ = std::fs::remove_file(&image);
                self.success(module, version, "the new version runs after the apply");
            }
            Ok(now) => {
                log::info!(
                    "ota {module}: {version} applied; the module still runs {now}: success is \
                     reported once {version} runs (after the restart or reboot the apply needs)"
                );
                {
                    let mut st = lock(&self.state);
                    st.module(module).active = Some((version.clone(), "awaiting restart".into()));
                }
                self.save();
                self.ota.finish(module, version);
            }
            Err(why) => {
                log::warn!(
                    "ota {module}: {version} applied; its version cannot be read now ({why}): \
                     the next start decides"
                );
                self.ota.finish(module, version);
            }
        }
    }

    /// Runs the module's apply command (or `[hooks] on_ota`) to its end.
    fn apply(
        &self,
        m: &OtaModule,
        image: &Path,
        version: &str,
        from: &str,
        md5: &str,
        size: u64,
    ) -> HookOutcome {
        let file = image.display().to_string();
        let (program, args) = match (&m.apply, &self.on_ota) {
            (Some(cmd), _) => {
                let c = substitute(
                    cmd,
                    &[
                        ("file", &file),
                        ("module", &m.name),
                        ("version", version),
                        ("md5", md5),
                    ],
                );
                (PathBuf::from("sh"), vec!["-c".to_string(), c])
            }
            (None, Some(hook)) => (hook.clone(), Vec::new()),
            (None, None) => {
                return not_started("no apply command and no [hooks] on_ota");
            }
        };
        let mut env = self.env.set.clone();
        env.extend([
            ("UIOT_EVENT".to_string(), "ota".to_string()),
            ("UIOT_OTA_FILE".to_string(), file),
            ("UIOT_OTA_MODULE".to_string(), m.name.clone()),
            ("UIOT_OTA_VERSION".to_string(), version.to_string()),
            ("UIOT_OTA_FROM".to_string(), from.to_string()),
            ("UIOT_OTA_MD5".to_string(), md5.to_string()),
            ("UIOT_OTA_SIZE".to_string(), size.to_string()),
        ]);
        let (tx, rx) = mpsc::channel();
        let job = HookJob {
            name: format!("ota apply ({})", m.name),
            program,
            args,
            env,
            env_remove: self.env.remove.clone(),
            stdin: Vec::new(),
            done: Some(Box::new(move |o| {
                let _ = tx.send(o);
            })),
        };
        let Some(runner) = self.runners.get(&m.name) else {
            return not_started("no runner for the module");
        };
        if let Err(r) = runner.submit(job) {
            return not_started(&r.to_string());
        }
        rx.recv()
            .unwrap_or_else(|_| not_started("the runner stopped"))
    }
}

/// How firmware is fetched (`[ota] timeout`, `retries`, `ca_file`).
struct Fetch {
    margin: u64,
    timeout: Duration,
    retries: u32,
    ca_pem: Option<Vec<u8>>,
}

impl Fetch {
    #[cfg(feature = "http")]
    fn get(
        &self,
        n: &Notice,
        dir: &Path,
        cancel: &AtomicBool,
        progress: impl FnMut(u8),
    ) -> Result<PathBuf, OtaError> {
        let opts = uiot::platform::ota::DownloadOptions {
            timeout: self.timeout,
            window: self.timeout,
            retries: self.retries,
            ca_pem: self.ca_pem.clone(),
            margin: self.margin,
            ..Default::default()
        };
        uiot::platform::ota::download_with(n, dir, cancel, &opts, progress)
    }

    #[cfg(not(feature = "http"))]
    fn get(
        &self,
        _: &Notice,
        _: &Path,
        _: &AtomicBool,
        _: impl FnMut(u8),
    ) -> Result<PathBuf, OtaError> {
        let _ = (self.margin, self.timeout, self.retries, &self.ca_pem);
        Err(OtaError::UrlUnreachable(
            "this uiot was built without the `http` feature: it cannot download firmware".into(),
        ))
    }
}

fn not_started(why: &str) -> HookOutcome {
    HookOutcome {
        exit: HookExit::NotStarted(why.to_string()),
        stdout: Vec::new(),
        stdout_cut: false,
        elapsed: Duration::ZERO,
    }
}

/// `{name}` in `cmd` replaced by the single-quoted value (for `sh -c`).
fn substitute(cmd: &str, values: &[(&str, &str)]) -> String {
    let mut out = cmd.to_string();
    for (k, v) in values {
        let quoted = format!("'{}'", v.replace('\'', r"'\''"));
        out = out.replace(&format!("{{{k}}}"), &quoted);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_placeholders_are_shell_quoted() {
        assert_eq!(
            substitute(
                "sysupgrade {file} # {module} {version}",
                &[
                    ("file", "/d/a b'c.bin"),
                    ("module", "default"),
                    ("version", "2.0")
                ]
            ),
            r"sysupgrade '/d/a b'\''c.bin' # 'default' '2.0'"
        );
    }
}
