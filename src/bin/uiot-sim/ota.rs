//! OTA as the cloud side of UIoT Core does it (protocol sections 6 and 11):
//! every message on a device's `ota/upstream` becomes one `ota` line (and
//! is kept for `ota log`, the last [`LOG_MAX`] per device); `ota push`
//! registers a file with the firmware store (`fw`) and publishes
//! `update_firmware`; the upgrade then stays pending for its device and
//! module until `report_success` or `report_fail` for the module (a
//! success with another Version counts as a failure) or `ota cancel`. A
//! `request_firmware` whose Version is not the pending target gets the
//! same `update_firmware` again; with nothing pending, nothing.
//!
//! Owns: the upstream JSON rules, the pending upgrades, the report log and
//! the `ota`, `ota-result`, `ota-log` lines. Must not touch: serving files
//! (`fw`), publishing (`Cloud::publish`).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::cloud::{emit, put, Cloud};
use crate::fw::{self, Mode};
use crate::state::Dev;

/// Upstream reports kept per device for `ota log`.
pub const LOG_MAX: usize = 1000;

/// An `ota push` from stdin.
#[derive(Debug)]
pub struct Push {
    pub module: String,
    pub version: String,
    pub file: PathBuf,
    pub mode: Mode,
}

/// An upgrade the cloud pushed and has no outcome for yet.
struct Pending {
    version: String,
    /// The update_firmware body, published again on request_firmware.
    notice: Value,
}

/// The cloud's OTA state.
#[derive(Default)]
pub struct Ota {
    /// By (device key, module).
    pending: BTreeMap<(String, String), Pending>,
    /// By device key.
    log: BTreeMap<String, VecDeque<Value>>,
}

/// One upstream message, checked.
struct Report {
    method: &'static str,
    module: String,
    version: Option<String>,
    state: Option<String>,
    percent: Option<u64>,
    code: Option<i64>,
}

fn parse(body: Result<Map<String, Value>, String>) -> Result<Report, String> {
    let m = body?;
    let method = match m.get("Method") {
        Some(Value::String(s)) => match s.as_str() {
            "report_version" => "report_version",
            "request_firmware" => "request_firmware",
            "report_progress" => "report_progress",
            "report_success" => "report_success",
            "report_fail" => "report_fail",
            other => return Err(format!("unknown Method {:?}", uiot::cut(other))),
        },
        Some(other) => return Err(format!("Method {other} is not a string")),
        None => return Err("no Method".into()),
    };
    let Some(Value::Object(p)) = m.get("Payload") else {
        return Err("no Payload object".into());
    };
    let text = |k: &str| -> Result<Option<String>, String> {
        match p.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(format!("Payload.{k} {other} is not a non-empty string")),
        }
    };
    // An omitted Module is the default one (section 6).
    let module = text("Module")?.unwrap_or_else(|| "default".into());
    let version = text("Version")?;
    let needs_version = !matches!(method, "report_progress" | "report_fail");
    if needs_version && version.is_none() {
        return Err(format!("{method} without Payload.Version"));
    }
    let state = text("State")?;
    if let Some(s) = &state {
        if s != "downloading" && s != "burning" {
            return Err(format!(
                "Payload.State {:?} is not downloading or burning",
                uiot::cut(s)
            ));
        }
    }
    let percent = match p.get("Percent") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n <= 100)
                .ok_or_else(|| format!("Payload.Percent {v} is not an integer 0..100"))?,
        ),
    };
    let code = match p.get("ErrCode") {
        None => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| format!("Payload.ErrCode {v} is not an integer"))?,
        ),
    };
    if method == "report_fail" && code.is_none() {
        return Err("report_fail without Payload.ErrCode".into());
    }
    Ok(Report {
        method,
        module,
        version,
        state,
        percent,
        code,
    })
}

/// A message on `/$system/PSN/DSN/ota/upstream`.
pub fn upstream(
    cloud: &mut Cloud,
    dev: &Dev,
    body: Result<Map<String, Value>, String>,
    raw: &[u8],
) {
    let r = match parse(body) {
        Ok(r) => r,
        Err(why) => {
            return emit(&json!({
                "sim": "error", "device": dev.key(), "request": "ota/upstream", "error": why,
                "payload": String::from_utf8_lossy(raw.get(..512).unwrap_or(raw)),
            }))
        }
    };
    let mut line = json!({
        "sim": "ota", "psn": dev.psn, "dsn": dev.dsn, "method": r.method,
        "module": r.module, "version": r.version,
    });
    if let Some(s) = &r.state {
        put(&mut line, "state", json!(s));
    }
    if let Some(p) = r.percent {
        put(&mut line, "percent", json!(p));
    }
    if let Some(c) = r.code {
        put(&mut line, "code", json!(c));
    }
    emit(&line);
    let log = cloud.ota.log.entry(dev.key()).or_default();
    if log.len() >= LOG_MAX {
        log.pop_front();
    }
    log.push_back(line);
    let key = (dev.key(), r.module.clone());
    match r.method {
        "request_firmware" => {
            let again = cloud
                .ota
                .pending
                .get(&key)
                .filter(|p| r.version.as_ref() != Some(&p.version))
                .map(|p| (p.version.clone(), p.notice.clone()));
            if let Some((target, notice)) = again {
                cloud.publish(
                    &dev.topic("ota/downstream"),
                    notice.to_string().into_bytes(),
                );
                emit(&json!({
                    "sim": "ok", "ota": "repushed", "psn": dev.psn, "dsn": dev.dsn,
                    "module": r.module, "version": target,
                    "url": notice.get("Payload").and_then(|p| p.get("URL")),
                }));
            }
        }
        "report_success" | "report_fail" => {
            let pending = cloud.ota.pending.remove(&key);
            let target = pending.as_ref().map(|p| p.version.clone());
            let wrong = r.method == "report_success"
                && target.is_some()
                && target.as_ref() != r.version.as_ref();
            let result = if r.method == "report_success" && !wrong {
                "success"
            } else {
                "fail"
            };
            let mut res = json!({
                "sim": "ota-result", "psn": dev.psn, "dsn": dev.dsn, "module": r.module,
                "version": target.clone().or(r.version.clone()), "reported": r.version,
                "result": result, "code": r.code,
            });
            if wrong {
                put(
                    &mut res,
                    "error",
                    json!(format!(
                        "report_success with Version {:?}, the target is {:?}: counted as failed",
                        r.version.unwrap_or_default(),
                        target.unwrap_or_default()
                    )),
                );
            }
            emit(&res);
        }
        _ => {}
    }
}

/// `ota push PSN DSN MODULE VERSION FILE [MODE]`.
pub fn push(cloud: &mut Cloud, dev: &Dev, p: Push) {
    let Some(web) = cloud.web.clone() else {
        return emit(&json!({
            "sim": "error", "command": "ota push",
            "error": "ota push serves the firmware over HTTP: start uiot-sim with --http-port PORT (0: any free port)",
        }));
    };
    let fw = match fw::register(&web, &p.file, &p.module, &p.version, p.mode) {
        Ok(f) => f,
        Err(why) => return emit(&json!({"sim": "error", "command": "ota push", "error": why})),
    };
    let notice = json!({"Method": "update_firmware", "Payload": {
        "Module": p.module, "Version": p.version, "URL": fw.url, "MD5": fw.md5, "Size": fw.size,
    }});
    cloud.publish(
        &dev.topic("ota/downstream"),
        notice.to_string().into_bytes(),
    );
    cloud.ota.pending.insert(
        (dev.key(), p.module.clone()),
        Pending {
            version: p.version.clone(),
            notice,
        },
    );
    emit(&json!({
        "sim": "ok", "ota": "pushed", "psn": dev.psn, "dsn": dev.dsn, "module": p.module,
        "version": p.version, "url": fw.url, "md5": fw.md5, "size": fw.size, "id": fw.id,
        "mode": p.mode.name(),
    }));
}

/// `ota cancel PSN DSN MODULE VERSION`.
pub fn cancel(cloud: &mut Cloud, dev: &Dev, module: &str, version: &str) {
    let body =
        json!({"Method": "cancel_update", "Payload": {"Module": module, "Version": version}});
    cloud.publish(&dev.topic("ota/downstream"), body.to_string().into_bytes());
    let key = (dev.key(), module.to_string());
    let was = cloud
        .ota
        .pending
        .get(&key)
        .is_some_and(|p| p.version == version);
    if was {
        cloud.ota.pending.remove(&key);
    }
    emit(&json!({
        "sim": "ok", "ota": "cancelled", "psn": dev.psn, "dsn": dev.dsn, "module": module,
        "version": version, "pending": was,
    }));
}

/// `ota log PSN DSN`.
pub fn log(cloud: &Cloud, dev: &Dev) {
    let reports: Vec<Value> = cloud
        .ota
        .log
        .get(&dev.key())
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default();
    emit(&json!({"sim": "ota-log", "psn": dev.psn, "dsn": dev.dsn, "reports": reports}));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn obj(v: Value) -> Result<Map<String, Value>, String> {
        Ok(v.as_object().unwrap().clone())
    }

    #[test]
    fn upstream_reports_parse_with_the_default_module() {
        let r = parse(obj(
            json!({"Method": "report_version", "Payload": {"Version": "1.0"}}),
        ))
        .unwrap();
        assert_eq!((r.method, r.module.as_str()), ("report_version", "default"));
        let r = parse(obj(json!({"Method": "report_progress", "Payload":
            {"State": "downloading", "Percent": 35, "Module": "wifi", "Version": "2"}})))
        .unwrap();
        assert_eq!(
            (r.state.as_deref(), r.percent),
            (Some("downloading"), Some(35))
        );
        let r = parse(obj(
            json!({"Method": "report_fail", "Payload": {"ErrCode": -4}}),
        ))
        .unwrap();
        assert_eq!((r.code, r.version), (Some(-4), None));
    }

    #[test]
    fn malformed_reports_name_the_problem() {
        let bad = [
            (json!({"Payload": {}}), "no Method"),
            (json!({"Method": "reboot", "Payload": {}}), "unknown Method"),
            (json!({"Method": "report_version"}), "no Payload"),
            (
                json!({"Method": "report_version", "Payload": {}}),
                "without Payload.Version",
            ),
            (
                json!({"Method": "report_fail", "Payload": {}}),
                "without Payload.ErrCode",
            ),
            (
                json!({"Method": "report_progress", "Payload": {"Percent": 101}}),
                "Percent",
            ),
            (
                json!({"Method": "report_progress", "Payload": {"State": "flying"}}),
                "State",
            ),
            (
                json!({"Method": "report_version", "Payload": {"Module": 3, "Version": "1"}}),
                "Module",
            ),
        ];
        for (b, want) in bad {
            let e = parse(obj(b.clone())).err().unwrap();
            assert!(e.contains(want), "{b}: {e}");
        }
        assert!(parse(Err("not JSON".into())).is_err());
    }
}
