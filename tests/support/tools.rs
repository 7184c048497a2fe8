//! Finding Mosquitto's programs, the missing-broker policy, and temporary
//! directories for the harness.
//!
//! Owns: where `mosquitto`, `mosquitto_passwd`, `mosquitto_pub` and
//! `mosquitto_sub` are looked up, what happens when they are missing, and
//! creating/removing the harness's own temporary directories.
//! Must not touch: anything outside those directories.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Absolute paths of the Mosquitto programs the harness runs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The broker, `mosquitto`.
    pub mosquitto: PathBuf,
    /// `mosquitto_passwd`, to hash the password file.
    pub passwd: PathBuf,
    /// `mosquitto_pub`, the cloud's (and stand-in devices') publisher.
    pub publish: PathBuf,
    /// `mosquitto_sub`, the observer.
    pub subscribe: PathBuf,
}

/// The install hint printed whenever a Mosquitto program is missing.
pub const INSTALL_HINT: &str = "install it: apt-get install -y mosquitto mosquitto-clients \
     (or run scripts/install-deps.sh)";

/// Set this environment variable to make the harness behave as if Mosquitto
/// were not installed (tests of the missing-broker policy use it).
pub const PRETEND_MISSING: &str = "UIOT_TEST_PRETEND_NO_MOSQUITTO";

fn find(name: &str) -> Option<PathBuf> {
    let fixed = [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
        "/sbin",
    ];
    let from_path = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    fixed
        .iter()
        .map(PathBuf::from)
        .chain(from_path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The Mosquitto programs, or the names of those that are missing.
pub fn tools() -> &'static Result<Tools, Vec<&'static str>> {
    static TOOLS: OnceLock<Result<Tools, Vec<&'static str>>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        if env::var_os(PRETEND_MISSING).is_some() {
            return Err(vec![
                "mosquitto (pretended by UIOT_TEST_PRETEND_NO_MOSQUITTO)",
            ]);
        }
        let names = [
            "mosquitto",
            "mosquitto_passwd",
            "mosquitto_pub",
            "mosquitto_sub",
        ];
        let found: Vec<Option<PathBuf>> = names.iter().map(|n| find(n)).collect();
        match found.as_slice() {
            [Some(m), Some(pw), Some(p), Some(s)] => Ok(Tools {
                mosquitto: m.clone(),
                passwd: pw.clone(),
                publish: p.clone(),
                subscribe: s.clone(),
            }),
            _ => Err(names
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(n, _)| *n)
                .collect()),
        }
    })
}

/// True when the environment variable `CI` says we run in CI (`true` or `1`).
pub fn in_ci() -> bool {
    env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false)
}

/// The message for missing programs.
pub fn missing_message(missing: &[&str]) -> String {
    format!(
        "the integration tests need Mosquitto, but {} not found in /usr/sbin, /usr/bin or PATH; {}",
        missing.join(", "),
        INSTALL_HINT
    )
}

/// The programs, applying the missing-broker policy: with `CI=true` a missing
/// program panics; otherwise a SKIP line goes to stderr and `None` comes back.
pub fn tools_or_skip() -> Option<&'static Tools> {
    match tools() {
        Ok(t) => Some(t),
        Err(missing) if in_ci() => panic!(
            "{} (CI=true, so this is an error)",
            missing_message(missing)
        ),
        Err(missing) => {
            eprintln!(
                "\n*** SKIP: {} -- this test did NOT run (set CI=true to make this an error) ***\n",
                missing_message(missing)
            );
            None
        }
    }
}

/// The programs, or a panic saying how to install them.
pub fn tools_or_panic() -> &'static Tools {
    match tools() {
        Ok(t) => t,
        Err(missing) => panic!("{}", missing_message(missing)),
    }
}

/// True when this process runs as root (Mosquitto then switches to the
/// `mosquitto` user unless the config says `user root`).
pub fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A fresh directory under the system temp dir, removed with everything in it
/// on drop (unless `UIOT_KEEP_TEST_DIRS` is set, for debugging).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/uiot-<prefix>-<pid>-<n>-<nanos>`.
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                env::temp_dir().join(format!("uiot-{prefix}-{}-{n}-{nanos}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!(
                    "cannot create a temporary directory {}: {e}; check that TMPDIR is writable",
                    path.display()
                ),
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if env::var_os("UIOT_KEEP_TEST_DIRS").is_some() {
            eprintln!("keeping test directory {}", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}
