//! What the simulated cloud keeps: per device its registration, shadow
//! document and thing model properties and desired values; per product
//! its thing model template. Kept in memory, and with `--state FILE` also
//! on disk as one JSON document, written atomically (temp file 0600 in
//! the same directory, fsync, rename, fsync of the directory) after every
//! change, so a kill never leaves half a file.
//!
//! Owns: the data and its file. Must not touch: the topics and the JSON the
//! devices see (`shadow`, `thing`, `register`).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// A device: ProductSN and DeviceSN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dev {
    /// ProductSN.
    pub psn: String,
    /// DeviceSN.
    pub dsn: String,
}

impl Dev {
    pub fn new(psn: &str, dsn: &str) -> Dev {
        Dev {
            psn: psn.into(),
            dsn: dsn.into(),
        }
    }

    /// `PSN.DSN` (the device's ClientID), the key in the state file.
    pub fn key(&self) -> String {
        format!("{}.{}", self.psn, self.dsn)
    }

    /// `/$system/PSN/DSN/SUFFIX`.
    pub fn topic(&self, suffix: &str) -> String {
        format!("/$system/{}/{}/{suffix}", self.psn, self.dsn)
    }
}

/// A device shadow (section 4.2): versions start at 0.
#[derive(Debug, Default, Clone)]
pub struct ShadowDoc {
    pub reported: Map<String, Value>,
    pub desired: Map<String, Value>,
    /// Key -> Unix seconds of its last change.
    pub reported_at: Map<String, Value>,
    pub desired_at: Map<String, Value>,
    pub version: u32,
    pub timestamp: i64,
}

impl ShadowDoc {
    /// `{"Reported":{k:{"Timestamp":t}},"Desired":{..}}`.
    pub fn metadata(&self) -> Value {
        let wrap = |m: &Map<String, Value>| -> Map<String, Value> {
            m.iter()
                .map(|(k, t)| (k.clone(), json!({"Timestamp": t})))
                .collect()
        };
        json!({"Reported": wrap(&self.reported_at), "Desired": wrap(&self.desired_at)})
    }

    /// The full document as get_reply carries it.
    pub fn document(&self) -> Value {
        json!({
            "State": {"Reported": self.reported, "Desired": self.desired},
            "Metadata": self.metadata(),
            "Timestamp": self.timestamp,
            "Version": self.version,
        })
    }

    fn from_document(v: &Value) -> ShadowDoc {
        let obj = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
        let stamps = |v: Option<&Value>| -> Map<String, Value> {
            obj(v)
                .into_iter()
                .map(|(k, m)| {
                    let t = m.get("Timestamp").cloned().unwrap_or(Value::from(0));
                    (k, t)
                })
                .collect()
        };
        let state = v.get("State");
        let meta = v.get("Metadata");
        ShadowDoc {
            reported: obj(state.and_then(|s| s.get("Reported"))),
            desired: obj(state.and_then(|s| s.get("Desired"))),
            reported_at: stamps(meta.and_then(|m| m.get("Reported"))),
            desired_at: stamps(meta.and_then(|m| m.get("Desired"))),
            version: v
                .get("Version")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            timestamp: v.get("Timestamp").and_then(Value::as_i64).unwrap_or(0),
        }
    }
}

/// Everything kept for one device.
#[derive(Debug, Default, Clone)]
pub struct DeviceState {
    /// The secret issued by dynamic registration (then it may not register again).
    pub secret: Option<String>,
    pub shadow: ShadowDoc,
    /// Thing model properties: key -> {"Value":..,"Time":ms}.
    pub properties: Map<String, Value>,
    /// Unix ms of the last property post.
    pub properties_at: i64,
    /// Thing model desired values: key -> {"Value":..,"Version":n}.
    pub desired: Map<String, Value>,
}

impl DeviceState {
    /// The device's entry as `state` prints it and the file keeps it.
    pub fn to_json(&self) -> Value {
        json!({
            "Registered": self.secret.is_some(),
            "Secret": self.secret,
            "Shadow": self.shadow.document(),
            "Property": self.properties,
            "LatestUpdateTime": self.properties_at,
            "Desired": self.desired,
        })
    }

    fn from_json(v: &Value) -> DeviceState {
        let obj = |k: &str| {
            v.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        DeviceState {
            secret: v.get("Secret").and_then(Value::as_str).map(String::from),
            shadow: v
                .get("Shadow")
                .map(ShadowDoc::from_document)
                .unwrap_or_default(),
            properties: obj("Property"),
            properties_at: v
                .get("LatestUpdateTime")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            desired: obj("Desired"),
        }
    }
}

/// All devices and templates, and where to save them.
#[derive(Debug, Default)]
pub struct State {
    pub devices: BTreeMap<String, DeviceState>,
    pub templates: BTreeMap<String, Value>,
    file: Option<PathBuf>,
}

impl State {
    /// An empty state, or the one in `file` (a missing file is an empty
    /// state that will be created there).
    pub fn load(file: Option<&Path>) -> Result<State, String> {
        let mut st = State {
            file: file.map(Path::to_path_buf),
            ..State::default()
        };
        let Some(path) = file else { return Ok(st) };
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(st),
            Err(e) => {
                return Err(format!(
                    "cannot read the state file {}: {e}",
                    path.display()
                ))
            }
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "the state file {} is not JSON ({e}); move it away to start with an empty cloud",
                path.display()
            )
        })?;
        let Some(top) = v.as_object() else {
            return Err(format!(
                "the state file {} is not a JSON object",
                path.display()
            ));
        };
        if let Some(devices) = top.get("Devices").and_then(Value::as_object) {
            for (k, d) in devices {
                st.devices.insert(k.clone(), DeviceState::from_json(d));
            }
        }
        if let Some(t) = top.get("Templates").and_then(Value::as_object) {
            st.templates = t.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        Ok(st)
    }

    /// The device's entry, created empty on first sight.
    pub fn device(&mut self, dev: &Dev) -> &mut DeviceState {
        self.devices.entry(dev.key()).or_default()
    }

    /// Writes the state file (if any); an error is returned for the log,
    /// the state in memory stays.
    pub fn save(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let devices: Map<String, Value> = self
            .devices
            .iter()
            .map(|(k, d)| (k.clone(), d.to_json()))
            .collect();
        let templates: Map<String, Value> = self
            .templates
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        let body = json!({"Devices": devices, "Templates": templates});
        write_atomically(path, body.to_string().as_bytes())
            .map_err(|e| format!("cannot write the state file {}: {e}", path.display()))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Unix time in seconds.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_state_file_round_trips_and_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.json");
        let mut st = State::load(Some(&path)).unwrap();
        let d = st.device(&Dev::new("p", "d"));
        d.secret = Some("s".into());
        d.shadow.reported.insert("t".into(), json!(1));
        d.shadow.reported_at.insert("t".into(), json!(5));
        d.shadow.version = 3;
        st.templates.insert("p".into(), json!({"Property": []}));
        st.save().unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = State::load(Some(&path)).unwrap();
        let d = again.devices.get("p.d").unwrap();
        assert_eq!(d.secret.as_deref(), Some("s"));
        assert_eq!(d.shadow.version, 3);
        assert_eq!(
            d.shadow.document()["Metadata"]["Reported"]["t"]["Timestamp"],
            5
        );
        assert_eq!(again.templates.len(), 1);
    }

    #[test]
    fn a_broken_state_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.json");
        fs::write(&path, "{not json").unwrap();
        assert!(State::load(Some(&path))
            .unwrap_err()
            .contains("move it away"));
    }
}
