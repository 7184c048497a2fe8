//! The OTA JSON: what the cloud sends on `ota/downstream` (parsed into a
//! [`Notice`], every field checked) and the upstream messages a device sends.
//!
//! Owns: [`parse_downstream`], [`Notice`], [`ModuleVersion`], the names and
//! value rules of module and version, the upstream bodies.
//! Must not touch: the client, HTTP, files.

use serde_json::{json, Map, Value};

use crate::client::Message;
use crate::platform::service::{self, kind, parse};

/// Longest module name or version, in characters (the console's limit).
pub const MAX_NAME: usize = 32;
/// Largest firmware `Size` accepted, in bytes (1 GiB; the console allows 10 MB).
pub const MAX_SIZE: u64 = 1 << 30;

/// A module of the device and the version it runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModuleVersion {
    /// Module name (`"default"` for the device's main firmware).
    pub module: String,
    /// Version now running.
    pub version: String,
}

impl ModuleVersion {
    /// `module` running `version`.
    pub fn new(module: &str, version: &str) -> ModuleVersion {
        ModuleVersion {
            module: module.to_string(),
            version: version.to_string(),
        }
    }
}

/// What the cloud asks of the device on `ota/downstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `update_firmware`: fetch `url` (`size` bytes, MD5 `md5`) and install
    /// it as `version` of `module`.
    Update {
        /// Module to upgrade.
        module: String,
        /// Target version.
        version: String,
        /// Pre-signed `http://` or `https://` URL (expires after a day).
        url: String,
        /// MD5 of the file: 32 lowercase hex digits.
        md5: String,
        /// Size of the file in bytes (at most [`MAX_SIZE`]).
        size: u64,
    },
    /// `cancel_update`: the console cancelled the upgrade of `module` to
    /// `version`.
    Cancel {
        /// Module whose upgrade is cancelled.
        module: String,
        /// Target version that is cancelled.
        version: String,
    },
}

impl Notice {
    /// The module and target version the notice is about.
    pub fn target(&self) -> (&str, &str) {
        match self {
            Notice::Update {
                module, version, ..
            }
            | Notice::Cancel { module, version } => (module, version),
        }
    }
}

/// The notice in a downstream message, or `None` after a warning that
/// names the topic and what is wrong (not JSON, unknown Method, a field
/// missing, of the wrong type or out of range).
pub fn parse_downstream(msg: &Message) -> Option<Notice> {
    let m = parse(msg)?;
    match notice(&m) {
        Ok(n) => Some(n),
        Err(why) => {
            service::ignored(&msg.topic, &why);
            None
        }
    }
}

fn notice(m: &Map<String, Value>) -> Result<Notice, String> {
    let method = string(m, "Method")?;
    let payload = match m.get("Payload") {
        Some(Value::Object(p)) => p,
        Some(other) => return Err(format!("Payload is {}, not an object", kind(other))),
        None => return Err("no Payload".into()),
    };
    let module = string(payload, "Module")?;
    check_module(module)?;
    let version = string(payload, "Version")?;
    check_version(version)?;
    let (module, version) = (module.to_string(), version.to_string());
    match method {
        "update_firmware" => {
            let url = string(payload, "URL")?;
            check_url(url)?;
            let md5 = string(payload, "MD5")?;
            if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("MD5 {:?} is not 32 hex digits", crate::cut(md5)));
            }
            let size = match payload.get("Size") {
                Some(Value::Number(n)) => n
                    .as_u64()
                    .filter(|s| *s <= MAX_SIZE)
                    .ok_or_else(|| format!("Size {n} is not an integer 0..={MAX_SIZE}"))?,
                Some(other) => return Err(format!("Size is {}, not a number", kind(other))),
                None => return Err("no Size".into()),
            };
            Ok(Notice::Update {
                module,
                version,
                url: url.to_string(),
                md5: md5.to_ascii_lowercase(),
                size,
            })
        }
        "cancel_update" => Ok(Notice::Cancel { module, version }),
        other => Err(format!("unknown Method {:?}", crate::cut(other))),
    }
}

fn string<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("{key} is {}, not a string", kind(other))),
        None => Err(format!("no {key}")),
    }
}

/// A module name: 1..=32 letters (any script), digits, `_` `-` `@` `:`.
/// (Used in file names, so never a `/` or a dot.)
pub(crate) fn check_module(s: &str) -> Result<(), String> {
    check_name(s, "Module", |c| c.is_alphanumeric() || "_-@:".contains(c))
}

/// A version: 1..=32 ASCII letters, digits, `.` `-` `_`.
pub(crate) fn check_version(s: &str) -> Result<(), String> {
    check_name(s, "Version", |c| {
        c.is_ascii_alphanumeric() || "._-".contains(c)
    })
}

fn check_name(s: &str, what: &str, ok: impl Fn(char) -> bool) -> Result<(), String> {
    let n = s.chars().count();
    if n == 0 || n > MAX_NAME {
        return Err(format!(
            "{what} {:?} must be 1..={MAX_NAME} characters",
            crate::cut(s)
        ));
    }
    if let Some(c) = s.chars().find(|c| !ok(*c)) {
        return Err(format!(
            "{what} {:?} has the character {c:?}",
            crate::cut(s)
        ));
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !url.chars().any(char::is_control) => {
            Ok(())
        }
        _ => Err(format!(
            "URL {:?} is not an http:// or https:// URL",
            crate::cut(url)
        )),
    }
}

/// `{"Method": method, "Payload": {"Module": .., "Version": ..}}`.
pub(crate) fn upstream(method: &str, module: &str, version: &str) -> Value {
    json!({ "Method": method, "Payload": { "Module": module, "Version": version } })
}

/// A `report_progress` body.
pub(crate) fn progress(module: &str, version: &str, state: &str, percent: u8) -> Value {
    json!({ "Method": "report_progress", "Payload": {
        "State": state, "Percent": percent.min(100), "Module": module, "Version": version } })
}

/// A `report_fail` body (the documented form, with Module and Version).
pub(crate) fn fail(module: &str, version: &str, code: i64) -> Value {
    json!({ "Method": "report_fail", "Payload": {
        "Module": module, "Version": version, "ErrCode": code } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QoS;

    fn msg(v: Value) -> Message {
        Message {
            topic: "/$system/p/d/ota/downstream".into(),
            payload: v.to_string().into_bytes(),
            qos: QoS::AtLeastOnce,
            dup: false,
        }
    }

    fn update() -> Value {
        json!({"Method": "update_firmware", "Payload": {"Module": "default", "Version": "2.0.0",
            "URL": "http://h.example/f.bin?Signature=x", "MD5": "17FFEA1119F36D1B366353F4EDEF1780",
            "Size": 4233}})
    }

    #[test]
    fn ota_update_and_cancel_parse() {
        let n = parse_downstream(&msg(update())).unwrap();
        assert_eq!(
            n,
            Notice::Update {
                module: "default".into(),
                version: "2.0.0".into(),
                url: "http://h.example/f.bin?Signature=x".into(),
                md5: "17ffea1119f36d1b366353f4edef1780".into(),
                size: 4233,
            }
        );
        let c = json!({"Method": "cancel_update", "Payload": {"Module": "wifi", "Version": "wifi_v1.0.8"}});
        assert_eq!(
            parse_downstream(&msg(c)).unwrap(),
            Notice::Cancel {
                module: "wifi".into(),
                version: "wifi_v1.0.8".into()
            }
        );
    }

    #[test]
    fn ota_malformed_notices_are_dropped() {
        let set = |path: &str, v: Value| {
            let mut u = update();
            u["Payload"][path] = v;
            u
        };
        let mut bad = vec![
            json!([1]),
            json!({"Method": "update_firmware"}),
            json!({"Method": "reboot", "Payload": {"Module": "default", "Version": "1"}}),
            set("Module", json!("")),
            set("Module", json!("a/b")),
            set("Module", json!("x".repeat(33))),
            set("Version", json!("1 0")),
            set("Version", json!(2)),
            set("URL", json!("ftp://h/f")),
            set("URL", json!("http://")),
            set("MD5", json!("17ffea")),
            set("MD5", json!("zzffea1119f36d1b366353f4edef1780")),
            set("Size", json!(-1)),
            set("Size", json!(1.5)),
            set("Size", json!("4233")),
            set("Size", json!(MAX_SIZE + 1)),
        ];
        let mut u = update();
        u["Payload"].as_object_mut().unwrap().remove("Size");
        bad.push(u);
        for b in bad {
            assert!(parse_downstream(&msg(b.clone())).is_none(), "{b}");
        }
    }

    #[test]
    fn ota_upstream_bodies() {
        assert_eq!(
            fail("default", "2.0.0", -4),
            json!({"Method":"report_fail","Payload":{"Module":"default","Version":"2.0.0","ErrCode":-4}})
        );
        assert_eq!(
            progress("m", "v", "downloading", 150)["Payload"]["Percent"],
            100
        );
    }
}
