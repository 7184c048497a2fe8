//! One upgrade by `uiot run`'s OTA service, start to end: the download
//! (resumed, Size and MD5 checked, progress every 5 s), the pending marker,
//! `burning`, the apply command or `[hooks] on_ota`, and the version read
//! again afterwards.
//!
//! Owns: [`Inner::upgrade`], the apply run and its placeholders, how
//! firmware is fetched ([`Fetch`]).
//! Must not touch: which notice starts a worker, the worker slots, and the
//! reports' bookkeeping (the parent module); how a download works
//! (`uiot::platform::ota`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use uiot::config::OtaModule;
use uiot::platform::ota::{Notice, OtaError};

use super::{lock, Inner};
use crate::ota::state::{self, Pending};
use crate::ota::version;
use crate::run::hooks::{HookExit, HookJob, HookOutcome};

impl Inner {
    /// One upgrade, start to end.
    pub(super) fn upgrade(&self, n: &Notice) {
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
pub(super) struct Fetch {
    pub(super) margin: u64,
    pub(super) timeout: Duration,
    pub(super) retries: u32,
    pub(super) ca_pem: Option<Vec<u8>>,
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
