//! The OTA state on disk (`[ota] state_file`, default `[ota] dir`/state.json): per module the version
//! last reported, the upgrade in progress, the pending-upgrade marker (an
//! image applied whose version has not been seen running yet) and the last
//! result. `uiot run` writes it (temp file, fsync, rename, fsync of the
//! directory: a power cut leaves the old file or the new one); `uiot ota
//! status` reads it.
//!
//! Owns: the file's shape, reading it (bounded, a bad file is reported
//! and set aside, never fatal) and writing it.
//! Must not touch: MQTT, downloads, running commands.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// Largest state file read (a handful of modules take a few KiB).
const MAX_STATE: u64 = 256 * 1024;

/// An image applied and not yet confirmed running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The target version.
    pub version: String,
    /// The version that ran before.
    pub from: String,
    /// The image (removed once the outcome is known).
    pub image: PathBuf,
    /// When it was applied (seconds since the epoch).
    pub since: u64,
}

/// How the last upgrade of a module ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Its target version.
    pub version: String,
    /// `success`, `fail` or `cancelled`.
    pub result: String,
    /// The ErrCode reported with a fail.
    pub code: Option<i64>,
    /// What happened, for people.
    pub reason: String,
    /// When (seconds since the epoch).
    pub at: u64,
}

/// What is kept about one module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleState {
    /// The version last reported to the cloud.
    pub reported: Option<String>,
    /// The upgrade running now: target version and phase
    /// (`downloading`, `applying`).
    pub active: Option<(String, String)>,
    /// The pending-upgrade marker.
    pub pending: Option<Pending>,
    /// The last result.
    pub last: Option<Outcome>,
}

/// Every module's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// By module name.
    pub modules: BTreeMap<String, ModuleState>,
}

/// Seconds since the epoch (0 before 1970: a board without a clock).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn text(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

fn number(m: &Map<String, Value>, k: &str) -> u64 {
    m.get(k).and_then(Value::as_u64).unwrap_or(0)
}

impl State {
    /// Reads the state file `p`. No file: an empty state. A file that
    /// cannot be parsed is `Err` with the reason (the caller decides).
    pub fn load(p: &Path) -> Result<State, String> {
        let file = match File::open(p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATE.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_STATE {
            return Err(format!("{} is larger than {MAX_STATE} bytes", p.display()));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not JSON: {e}", p.display()))?;
        let Some(modules) = v.get("modules").and_then(Value::as_object) else {
            return Err(format!("{} has no \"modules\" object", p.display()));
        };
        let mut s = State::default();
        for (name, m) in modules {
            let Some(m) = m.as_object() else { continue };
            let obj = |k: &str| m.get(k).and_then(Value::as_object);
            let ms = ModuleState {
                reported: text(m, "reported"),
                active: obj("active").and_then(|a| Some((text(a, "version")?, text(a, "phase")?))),
                pending: obj("pending").and_then(|p| {
                    Some(Pending {
                        version: text(p, "version")?,
                        from: text(p, "from").unwrap_or_default(),
                        image: PathBuf::from(text(p, "image").unwrap_or_default()),
                        since: number(p, "since"),
                    })
                }),
                last: obj("last").and_then(|l| {
                    Some(Outcome {
                        version: text(l, "version")?,
                        result: text(l, "result")?,
                        code: l.get("code").and_then(Value::as_i64),
                        reason: text(l, "reason").unwrap_or_default(),
                        at: number(l, "at"),
                    })
                }),
            };
            s.modules.insert(name.clone(), ms);
        }
        Ok(s)
    }

    /// The state as JSON (what the file holds, and `uiot ota status --json`).
    pub fn to_json(&self) -> Value {
        let mut modules = Map::new();
        for (name, m) in &self.modules {
            let mut o = Map::new();
            if let Some(r) = &m.reported {
                o.insert("reported".into(), json!(r));
            }
            if let Some((v, phase)) = &m.active {
                o.insert("active".into(), json!({"version": v, "phase": phase}));
            }
            if let Some(p) = &m.pending {
                o.insert(
                    "pending".into(),
                    json!({"version": p.version, "from": p.from,
                           "image": p.image.display().to_string(), "since": p.since}),
                );
            }
            if let Some(l) = &m.last {
                let mut lo = json!({"version": l.version, "result": l.result,
                                    "reason": l.reason, "at": l.at});
                if let (Some(c), Some(obj)) = (l.code, lo.as_object_mut()) {
                    obj.insert("code".into(), json!(c));
                }
                o.insert("last".into(), lo);
            }
            modules.insert(name.clone(), Value::Object(o));
        }
        json!({ "modules": modules })
    }

    /// Writes it to `p` atomically and durably (creating its directory).
    pub fn save(&self, p: &Path) -> std::io::Result<()> {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir)?;
        let mut name = p.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let tmp = dir.join(name);
        let mut f = File::create(&tmp)?;
        f.write_all(self.to_json().to_string().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, p)?;
        File::open(dir)?.sync_all()
    }

    /// The state of `module`, created empty if new.
    pub fn module(&mut self, module: &str) -> &mut ModuleState {
        self.modules.entry(module.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_bad_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/state.json");
        assert_eq!(State::load(&file).unwrap(), State::default());
        let mut s = State::default();
        let m = s.module("default");
        m.reported = Some("1.0.0".into());
        m.pending = Some(Pending {
            version: "2.0.0".into(),
            from: "1.0.0".into(),
            image: dir.path().join("default-2.0.0.bin"),
            since: 7,
        });
        m.last = Some(Outcome {
            version: "1.0.0".into(),
            result: "fail".into(),
            code: Some(-4),
            reason: "MD5".into(),
            at: 3,
        });
        s.module("wifi").active = Some(("v2".into(), "downloading".into()));
        s.save(&file).unwrap();
        assert_eq!(State::load(&file).unwrap(), s);
        fs::write(&file, b"{not json").unwrap();
        assert!(State::load(&file).unwrap_err().contains("not JSON"));
        fs::write(&file, b"[]").unwrap();
        assert!(State::load(&file).unwrap_err().contains("modules"));
    }
}
