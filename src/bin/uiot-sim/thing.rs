//! The thing model as UIoT Core answers it (protocol sections 5 and 11):
//! property post, event post, restore, desired get and delete, template
//! get; every reply echoes the request's `RequestID` and carries `RetCode`
//! (0, or 230 for a malformed request with a `Message` saying what is
//! wrong, or 100038 for an event the product's template does not define).
//!
//! Owns: these rules over a device's [`DeviceState`]. Must not touch:
//! topics and publishing (`cloud`).

use serde_json::{json, Map, Value};

use crate::cloud::{emit, put, Outcome};
use crate::state::{now_ms, Dev, DeviceState, State};

const BAD_REQUEST: i64 = 230;
const NO_SUCH_IDENTIFIER: i64 = 100038;

/// A request on `tmodel/SUFFIX`.
pub fn request(
    state: &mut State,
    dev: &Dev,
    suffix: &str,
    body: Result<Map<String, Value>, String>,
) -> Outcome {
    let m = match body {
        Ok(m) => m,
        Err(why) => return Outcome::Unanswerable(why),
    };
    let id = match m.get("RequestID") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Outcome::Unanswerable(format!("RequestID {other} is not a string")),
        None => return Outcome::Unanswerable("no RequestID".into()),
    };
    let (reply, result) = match suffix {
        "property/post" => (
            "tmodel/property/post_reply",
            post(state.device(dev), dev, &m),
        ),
        "event/post" => (
            "tmodel/event/post_reply",
            event(state.templates.get(&dev.psn), dev, &m),
        ),
        "property/restore" => {
            let d = state.device(dev);
            (
                "tmodel/property/restore_reply",
                Ok(json!({"LatestUpdateTime": d.properties_at, "Property": d.properties})),
            )
        }
        "property/desired/get" => (
            "tmodel/property/desired/get_reply",
            desired_get(state.device(dev), &m),
        ),
        "property/desired/delete" => (
            "tmodel/property/desired/delete_reply",
            desired_delete(state.device(dev), &m),
        ),
        "template/get" => {
            let t = state.templates.get(&dev.psn).cloned();
            let t = t.unwrap_or_else(|| json!({"Property": [], "Event": [], "Command": []}));
            ("tmodel/template/get_reply", Ok(json!({"Template": t})))
        }
        _ => return Outcome::Unanswerable("a thing model topic the cloud does not serve".into()),
    };
    let mut body = match result {
        Ok(Value::Object(fields)) => {
            let mut b = fields;
            b.insert("RetCode".into(), json!(0));
            b.insert("Message".into(), json!("success"));
            b
        }
        Ok(_) => Map::new(),
        Err((code, why)) => {
            let mut b = Map::new();
            b.insert("RetCode".into(), json!(code));
            b.insert("Message".into(), json!(why));
            b
        }
    };
    body.insert("RequestID".into(), json!(id));
    Outcome::Reply(reply, Value::Object(body))
}

type Answer = Result<Value, (i64, String)>;

fn bad(why: impl Into<String>) -> (i64, String) {
    (BAD_REQUEST, why.into())
}

fn post(d: &mut DeviceState, dev: &Dev, m: &Map<String, Value>) -> Answer {
    let Some(Value::Object(props)) = m.get("Property") else {
        return Err(bad("Property is missing or not an object"));
    };
    let now = now_ms();
    let mut values = Map::new();
    for (k, v) in props {
        let Some(value) = v.get("Value") else {
            return Err(bad(format!(
                "Property {k:?} has no {{\"Value\": ...}} wrapper"
            )));
        };
        let time = v.get("Time").and_then(Value::as_i64).unwrap_or(now);
        values.insert(k.clone(), json!({"Value": value, "Time": time}));
    }
    emit(&json!({"sim": "property", "device": dev.key(), "Property": values}));
    d.properties.extend(values);
    d.properties_at = now;
    Ok(json!({}))
}

fn event(template: Option<&Value>, dev: &Dev, m: &Map<String, Value>) -> Answer {
    let Some(Value::String(id)) = m.get("Identifier") else {
        return Err(bad("Identifier is missing or not a string"));
    };
    let Some(output @ Value::Object(_)) = m.get("Output") else {
        return Err(bad("Output is missing or not an object"));
    };
    if let Some(events) = template
        .and_then(|t| t.get("Event"))
        .and_then(Value::as_array)
    {
        if !events
            .iter()
            .any(|e| e.get("Identifier").and_then(Value::as_str) == Some(id))
        {
            return Err((
                NO_SUCH_IDENTIFIER,
                format!("event {id:?} is not in the product's template"),
            ));
        }
    }
    let mut line = json!({"sim": "event", "device": dev.key(), "Identifier": id, "Output": output});
    for k in ["Type", "Time"] {
        if let Some(v) = m.get(k) {
            put(&mut line, k, v.clone());
        }
    }
    emit(&line);
    Ok(json!({}))
}

fn desired_get(d: &DeviceState, m: &Map<String, Value>) -> Answer {
    // Without Require: every cached value (what `uiot property desired` asks).
    let keys = match m.get("Require") {
        None => return Ok(json!({"Desired": d.desired})),
        Some(Value::Array(keys)) => keys,
        Some(_) => return Err(bad("Require is not an array of property names")),
    };
    let mut out = Map::new();
    for k in keys {
        let Some(k) = k.as_str() else {
            return Err(bad("Require holds something other than a string"));
        };
        if let Some(v) = d.desired.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    Ok(json!({"Desired": out}))
}

fn desired_delete(d: &mut DeviceState, m: &Map<String, Value>) -> Answer {
    let Some(Value::Object(items)) = m.get("Delete") else {
        return Err(bad("Delete is missing or not an object"));
    };
    for (k, v) in items {
        let version = v
            .get("Version")
            .or_else(|| v.get("version"))
            .and_then(Value::as_u64);
        let Some(version) = version else {
            return Err(bad(format!("Delete {k:?} has no numeric Version")));
        };
        let cached = d
            .desired
            .get(k)
            .and_then(|c| c.get("Version"))
            .and_then(Value::as_u64);
        // A stale Version deletes nothing (section 5): the device must re-get.
        if cached == Some(version) {
            d.desired.remove(k);
        }
    }
    Ok(json!({}))
}

/// The cloud caches desired values; each key's Version goes up by one.
pub fn set_desired(d: &mut DeviceState, values: &Map<String, Value>) {
    for (k, v) in values {
        if v.is_null() {
            d.desired.remove(k);
            continue;
        }
        let version = d
            .desired
            .get(k)
            .and_then(|c| c.get("Version"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        d.desired.insert(
            k.clone(),
            json!({"Value": v, "Version": version.saturating_add(1)}),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    fn ask(st: &mut State, suffix: &str, v: Value) -> (&'static str, Value) {
        match request(
            st,
            &Dev::new("p", "d"),
            suffix,
            Ok(v.as_object().unwrap().clone()),
        ) {
            Outcome::Reply(t, b) => (t, b),
            Outcome::Unanswerable(why) => panic!("{why}"),
        }
    }

    #[test]
    fn replies_echo_the_request_id_and_keep_properties_and_desired() {
        let mut st = State::default();
        let (t, r) = ask(
            &mut st,
            "property/post",
            json!({"RequestID":"1","Property":{"t":{"Value":3}}}),
        );
        assert_eq!(
            (t, r["RequestID"].as_str(), r["RetCode"].as_i64()),
            ("tmodel/property/post_reply", Some("1"), Some(0))
        );
        let (_, r) = ask(&mut st, "property/restore", json!({"RequestID":"2"}));
        assert_eq!(r["Property"]["t"]["Value"], 3);
        set_desired(
            st.device(&Dev::new("p", "d")),
            json!({"t": 9}).as_object().unwrap(),
        );
        let (_, r) = ask(
            &mut st,
            "property/desired/get",
            json!({"RequestID":"3","Require":["t","x"]}),
        );
        assert_eq!(
            (
                r["Desired"]["t"]["Value"].as_i64(),
                r["Desired"]["t"]["Version"].as_i64()
            ),
            (Some(9), Some(1))
        );
        ask(
            &mut st,
            "property/desired/delete",
            json!({"RequestID":"4","Delete":{"t":{"Version":1}}}),
        );
        assert!(st.device(&Dev::new("p", "d")).desired.is_empty());
        let (_, r) = ask(
            &mut st,
            "property/post",
            json!({"RequestID":"5","Property":{"t":3}}),
        );
        assert_eq!(r["RetCode"], 230);
        st.templates
            .insert("p".into(), json!({"Event":[{"Identifier":"high_temp"}]}));
        let (_, r) = ask(
            &mut st,
            "event/post",
            json!({"RequestID":"6","Identifier":"nope","Output":{}}),
        );
        assert_eq!(r["RetCode"], 100038);
        let (t, r) = ask(&mut st, "template/get", json!({"RequestID":"7"}));
        assert_eq!(
            (t, r["Template"]["Event"][0]["Identifier"].as_str()),
            ("tmodel/template/get_reply", Some("high_temp"))
        );
    }
}
