//! The device shadow as UIoT Core keeps it (protocol sections 4 and 11):
//! versions from 0, +1 on every change; an update or delete must carry
//! the current `Version` (else a `control` with 100026 and the full state);
//! `"Version": -1` resets to 0; `"Desired": null` clears the desired values
//! and lets Reported take each cleared value unless the same message
//! reports another. Every downstream message carries `Method` and `Version`
//! (the SDK drops one without them).
//!
//! Owns: these rules over a [`ShadowDoc`]. Must not touch: topics and
//! publishing (`cloud`).

use serde_json::{json, Map, Value};

use crate::cloud::{put, Outcome};
use crate::state::{now_secs, ShadowDoc};

/// Malformed request (all shadow format errors share it).
const BAD_REQUEST: i64 = 230;
/// Version conflict.
const CONFLICT: i64 = 100026;

/// An update or delete on `shadow/upstream`.
pub fn upstream(doc: &mut ShadowDoc, body: Result<Map<String, Value>, String>) -> Outcome {
    match apply(doc, body) {
        Ok(()) => reply(doc, 0, None),
        Err(Refusal::Bad(why)) => reply(doc, BAD_REQUEST, Some(why)),
        Err(Refusal::Conflict) => {
            let now = now_secs();
            Outcome::Reply(
                "shadow/downstream",
                json!({
                    "Method": "control",
                    "Payload": {
                        "RetCode": CONFLICT,
                        "State": {"Reported": doc.reported, "Desired": doc.desired},
                        "Metadata": doc.metadata(),
                    },
                    "Version": doc.version,
                    "Timestamp": now,
                }),
            )
        }
    }
}

enum Refusal {
    Bad(String),
    Conflict,
}

fn reply(doc: &ShadowDoc, code: i64, why: Option<String>) -> Outcome {
    let mut payload = json!({"RetCode": code});
    if let Some(why) = why {
        put(&mut payload, "Message", json!(why));
    }
    Outcome::Reply(
        "shadow/downstream",
        json!({"Method": "reply", "Payload": payload, "Version": doc.version, "Timestamp": now_secs()}),
    )
}

fn apply(doc: &mut ShadowDoc, body: Result<Map<String, Value>, String>) -> Result<(), Refusal> {
    let m = body.map_err(Refusal::Bad)?;
    let method = match m.get("Method") {
        Some(Value::String(s)) if s == "update" || s == "delete" => s.as_str(),
        Some(other) => {
            return Err(Refusal::Bad(format!(
                "Method {other} is not \"update\" or \"delete\""
            )))
        }
        None => return Err(Refusal::Bad("no Method".into())),
    };
    let Some(Value::Object(state)) = m.get("State") else {
        return Err(Refusal::Bad("no State object".into()));
    };
    let reset = match m.get("Version").and_then(Value::as_i64) {
        Some(-1) if method == "update" => true,
        Some(v) if v == i64::from(doc.version) => false,
        Some(_) => return Err(Refusal::Conflict),
        None => return Err(Refusal::Bad("Version is missing or not an integer".into())),
    };
    let reported = state.get("Reported");
    let desired = state.get("Desired");
    for (name, part) in [("Reported", reported), ("Desired", desired)] {
        if !matches!(part, None | Some(Value::Null) | Some(Value::Object(_))) {
            return Err(Refusal::Bad(format!(
                "State.{name} is neither an object nor null"
            )));
        }
    }
    let now = now_secs();
    match (method, reported) {
        ("delete", Some(Value::Null)) => {
            doc.reported.clear();
            doc.reported_at.clear();
        }
        ("delete", Some(Value::Object(keys))) => {
            for k in keys.keys() {
                doc.reported.remove(k);
                doc.reported_at.remove(k);
            }
        }
        (_, Some(Value::Object(values))) => {
            for (k, v) in values {
                if v.is_null() {
                    doc.reported.remove(k);
                    doc.reported_at.remove(k);
                } else {
                    doc.reported.insert(k.clone(), v.clone());
                    doc.reported_at.insert(k.clone(), json!(now));
                }
            }
        }
        _ => {}
    }
    match desired {
        Some(Value::Null) => {
            let also_reported = reported.and_then(Value::as_object);
            for (k, v) in std::mem::take(&mut doc.desired) {
                let kept = also_reported.is_some_and(|r| r.contains_key(&k));
                if method == "update" && !kept {
                    doc.reported.insert(k.clone(), v);
                    doc.reported_at.insert(k, json!(now));
                }
            }
            doc.desired_at.clear();
        }
        Some(Value::Object(values)) => merge_desired(doc, values, now),
        _ => {}
    }
    doc.version = if reset {
        0
    } else {
        doc.version.wrapping_add(1)
    };
    doc.timestamp = now;
    Ok(())
}

fn merge_desired(doc: &mut ShadowDoc, values: &Map<String, Value>, now: i64) {
    for (k, v) in values {
        if v.is_null() {
            doc.desired.remove(k);
            doc.desired_at.remove(k);
        } else {
            doc.desired.insert(k.clone(), v.clone());
            doc.desired_at.insert(k.clone(), json!(now));
        }
    }
}

/// The cloud sets desired values (a null deletes one): a new version, and
/// the `control` to push, carrying every desired value now in the shadow.
pub fn set_desired(doc: &mut ShadowDoc, values: &Map<String, Value>) -> Value {
    let now = now_secs();
    merge_desired(doc, values, now);
    doc.version = doc.version.wrapping_add(1);
    doc.timestamp = now;
    let meta = doc.metadata();
    json!({
        "Method": "control",
        "Payload": {
            "RetCode": 0,
            "State": {"Desired": doc.desired},
            "Metadata": {"Desired": meta.get("Desired")},
        },
        "Version": doc.version,
        "Timestamp": now,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    fn send(doc: &mut ShadowDoc, v: Value) -> Value {
        match upstream(doc, Ok(v.as_object().unwrap().clone())) {
            Outcome::Reply(_, body) => body,
            Outcome::Unanswerable(why) => panic!("{why}"),
        }
    }

    #[test]
    fn versions_conflicts_reset_and_desired_clearing() {
        let mut d = ShadowDoc::default();
        let r = send(
            &mut d,
            json!({"Method":"update","State":{"Reported":{"t":1}},"Version":0}),
        );
        assert_eq!(
            (
                r["Method"].as_str(),
                r["Payload"]["RetCode"].as_i64(),
                r["Version"].as_u64()
            ),
            (Some("reply"), Some(0), Some(1))
        );
        let r = send(
            &mut d,
            json!({"Method":"update","State":{"Reported":{"t":2}},"Version":0}),
        );
        assert_eq!(
            (
                r["Method"].as_str(),
                r["Payload"]["RetCode"].as_i64(),
                r["Version"].as_u64()
            ),
            (Some("control"), Some(CONFLICT), Some(1))
        );
        assert_eq!(r["Payload"]["State"]["Reported"]["t"], 1);
        let push = set_desired(&mut d, json!({"t":5,"h":7}).as_object().unwrap());
        assert_eq!(
            (
                push["Version"].as_u64(),
                push["Payload"]["State"]["Desired"]["t"].as_i64()
            ),
            (Some(2), Some(5))
        );
        // Clear desired, keeping another value for h: t takes the desired 5.
        send(
            &mut d,
            json!({"Method":"update","State":{"Reported":{"h":8},"Desired":null},"Version":2}),
        );
        assert_eq!(
            (
                d.reported["t"].as_i64(),
                d.reported["h"].as_i64(),
                d.desired.len(),
                d.version
            ),
            (Some(5), Some(8), 0, 3)
        );
        send(
            &mut d,
            json!({"Method":"delete","State":{"Reported":{"t":null}},"Version":3}),
        );
        assert!(!d.reported.contains_key("t"));
        let r = send(
            &mut d,
            json!({"Method":"update","State":{"Reported":{}},"Version":-1}),
        );
        assert_eq!(r["Version"], 0);
        send(
            &mut d,
            json!({"Method":"delete","State":{"Reported":null},"Version":0}),
        );
        assert!(d.reported.is_empty());
    }

    #[test]
    fn malformed_requests_get_230_with_the_version() {
        let mut d = ShadowDoc::default();
        for bad in [
            json!({"State":{}, "Version":0}),
            json!({"Method":"frob","State":{},"Version":0}),
            json!({"Method":"update","Version":0}),
            json!({"Method":"update","State":{},"Version":"0"}),
            json!({"Method":"update","State":{"Reported":3},"Version":0}),
        ] {
            let r = send(&mut d, bad);
            assert_eq!(
                (
                    r["Method"].as_str(),
                    r["Payload"]["RetCode"].as_i64(),
                    r["Version"].as_u64()
                ),
                (Some("reply"), Some(230), Some(0))
            );
        }
        match upstream(&mut d, Err("not JSON".into())) {
            Outcome::Reply(_, r) => assert_eq!(r["Payload"]["RetCode"], 230),
            Outcome::Unanswerable(_) => panic!(),
        }
    }
}
