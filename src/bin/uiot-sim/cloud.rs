//! The simulated cloud: takes each message a device sent on its system
//! topics, hands it to the service it belongs to, publishes the answer and
//! prints one line saying what came and what went; runs the stdin commands
//! (the cloud's own side: desired values, property sets, commands,
//! broadcasts, OTA pushes).
//!
//! Owns: topic dispatch, publishing, the stdout lines, the requests the
//! cloud sent and awaits an answer to, the device secrets it was given.
//! Must not touch: the JSON rules of a service (`register`, `shadow`,
//! `thing`, `ota`), the state file (`state`), HTTP (`http`).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use uiot::{Client, Message, QoS};

use crate::control::Line;
use crate::http::Web;
use crate::state::{now_ms, Dev, State};
use crate::{ota, register, shadow, thing};

/// What the cloud subscribes to: every request a device can send.
pub const FILTERS: &[&str] = &[
    "/$system/+/+/password",
    "/$system/+/+/shadow/get",
    "/$system/+/+/shadow/upstream",
    "/$system/+/+/tmodel/property/post",
    "/$system/+/+/tmodel/property/set_reply",
    "/$system/+/+/tmodel/property/restore",
    "/$system/+/+/tmodel/property/desired/get",
    "/$system/+/+/tmodel/property/desired/delete",
    "/$system/+/+/tmodel/event/post",
    "/$system/+/+/tmodel/template/get",
    "/$system/+/+/tmodel/command_reply/+",
    "/$system/+/+/ota/upstream",
];

/// Requests the cloud sent (property sets, commands) that are remembered
/// for matching the device's answer; the oldest are forgotten past this.
const SENT_MAX: usize = 1024;

/// Largest payload quoted in a line of output.
const QUOTE: usize = 4096;

/// Print one JSON line on stdout (flushed: tests and scripts read it live).
pub fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Set `key` in a JSON object (a no-op on anything else).
pub fn put(v: &mut Value, key: &str, x: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.into(), x);
    }
}

/// A lock; a panic elsewhere never makes it unusable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request the cloud sent and awaits the answer to.
struct Sent {
    dev: Dev,
    /// "set" or "command".
    kind: &'static str,
    request_id: String,
}

/// The cloud's side of every device.
pub struct Cloud {
    client: Client,
    pub state: State,
    pub allow: Vec<String>,
    pub on_register: Option<String>,
    next_id: u64,
    sent: VecDeque<Sent>,
    /// Device secrets given with --device or `secret`, by device key
    /// (registered devices' secrets are in `state`).
    pub secrets: BTreeMap<String, String>,
    pub ota: ota::Ota,
    /// The HTTP server, with --http-port.
    pub web: Option<Arc<Web>>,
}

/// What a service makes of a request.
pub enum Outcome {
    /// Publish BODY on the device's SUFFIX topic.
    Reply(&'static str, Value),
    /// Nothing can be answered (no RequestID to echo): print this error.
    Unanswerable(String),
}

impl Cloud {
    pub fn new(
        client: Client,
        state: State,
        allow: Vec<String>,
        on_register: Option<String>,
    ) -> Cloud {
        // Ids unlike those of an earlier run (the device may remember some).
        let next_id = u64::try_from(now_ms()).unwrap_or(1).saturating_mul(1000);
        Cloud {
            client,
            state,
            allow,
            on_register,
            next_id,
            sent: VecDeque::new(),
            secrets: BTreeMap::new(),
            ota: ota::Ota::default(),
            web: None,
        }
    }

    /// The secret of `dev`: given (--device, `secret`) or issued by
    /// dynamic registration.
    pub fn secret(&self, dev: &Dev) -> Option<String> {
        let key = dev.key();
        self.secrets
            .get(&key)
            .cloned()
            .or_else(|| self.state.devices.get(&key).and_then(|d| d.secret.clone()))
    }

    /// One message from a device.
    pub fn handle(&mut self, m: &Message) {
        let Some((dev, suffix)) = split(&m.topic) else {
            return emit(
                &json!({"sim": "error", "topic": uiot::cut(&m.topic), "error": "not a device system topic"}),
            );
        };
        let body = match serde_json::from_slice::<Value>(&m.payload) {
            Ok(Value::Object(o)) => Ok(o),
            Ok(_) => Err("a JSON value that is not an object".to_string()),
            Err(e) => Err(format!("not JSON ({e})")),
        };
        let outcome = match suffix {
            "ota/upstream" => return ota::upstream(self, &dev, body, &m.payload),
            "password" => register::handle(self, &dev, body),
            "shadow/get" => Outcome::Reply(
                "shadow/get_reply",
                self.state.device(&dev).shadow.document(),
            ),
            "shadow/upstream" => shadow::upstream(&mut self.state.device(&dev).shadow, body),
            s if s.starts_with("tmodel/") => {
                let s = s.trim_start_matches("tmodel/");
                if s == "property/set_reply" {
                    return self.answer_from_device(&dev, "set", body, None);
                }
                if let Some(id) = s.strip_prefix("command_reply/") {
                    return self.answer_from_device(&dev, "command", body, Some(id));
                }
                thing::request(&mut self.state, &dev, s, body)
            }
            _ => Outcome::Unanswerable("a topic the cloud does not serve".into()),
        };
        match outcome {
            Outcome::Reply(reply, body) => self.answer(&dev, suffix, reply, &body),
            Outcome::Unanswerable(why) => emit(&json!({
                "sim": "error", "device": dev.key(), "request": suffix, "error": why,
                "payload": quote(&m.payload),
            })),
        }
        self.save();
    }

    fn answer(&mut self, dev: &Dev, request: &str, reply: &str, body: &Value) {
        self.publish(&dev.topic(reply), body.to_string().into_bytes());
        let mut line =
            json!({"sim": "answered", "device": dev.key(), "request": request, "reply": reply});
        for k in ["RequestID", "RetCode", "Version"] {
            if let Some(v) = body
                .get(k)
                .or_else(|| body.get("Payload").and_then(|p| p.get(k)))
            {
                put(&mut line, k, v.clone());
            }
        }
        emit(&line);
    }

    /// The device's set_reply or command_reply.
    fn answer_from_device(
        &mut self,
        dev: &Dev,
        kind: &'static str,
        body: Result<Map<String, Value>, String>,
        topic_id: Option<&str>,
    ) {
        let body = match body {
            Ok(b) => b,
            Err(why) => {
                return emit(
                    &json!({"sim": "error", "device": dev.key(), "request": kind, "error": why}),
                )
            }
        };
        let id = body
            .get("RequestID")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let at = self
            .sent
            .iter()
            .position(|s| s.dev == *dev && s.kind == kind && s.request_id == id);
        let matched = at.and_then(|i| self.sent.remove(i)).is_some();
        let mut line = json!({"sim": "reply", "device": dev.key(), "to": kind, "matched": matched});
        for k in ["RequestID", "RetCode", "Identifier", "Output"] {
            if let Some(v) = body.get(k) {
                put(&mut line, k, v.clone());
            }
        }
        if let Some(t) = topic_id {
            if t != id {
                put(
                    &mut line,
                    "error",
                    json!(format!("RequestID {id:?} differs from the topic's {t:?}")),
                );
            }
        }
        if !matched {
            put(
                &mut line,
                "error",
                json!("answers no request the cloud sent (or sent long ago)"),
            );
        }
        emit(&line);
    }

    /// One stdin command.
    pub fn control(&mut self, line: Line) {
        match line {
            Line::Desired(dev, values) => {
                let doc = &mut self.state.device(&dev).shadow;
                let push = shadow::set_desired(doc, &values);
                let version = doc.version;
                self.publish(
                    &dev.topic("shadow/downstream"),
                    push.to_string().into_bytes(),
                );
                emit(
                    &json!({"sim": "ok", "command": "desired", "device": dev.key(), "Version": version}),
                );
            }
            Line::Set(dev, values) => {
                let id = self.request_id();
                let body = json!({"RequestID": id, "Property": values});
                self.send(dev, "set", "tmodel/property/set", id, body);
            }
            Line::Command(dev, id, identifier, input) => {
                let id = id.unwrap_or_else(|| self.request_id());
                let body = json!({"RequestID": id, "Identifier": identifier, "Input": input});
                self.send(dev, "command", "tmodel/command", id, body);
            }
            Line::ThingDesired(dev, values) => {
                let d = self.state.device(&dev);
                thing::set_desired(d, &values);
                emit(
                    &json!({"sim": "ok", "command": "tdesired", "device": dev.key(), "Desired": d.desired}),
                );
            }
            Line::Template(psn, template) => {
                self.state.templates.insert(psn.clone(), template);
                emit(&json!({"sim": "ok", "command": "template", "product": psn}));
            }
            Line::Broadcast(psn, rest, payload) => {
                let topic = format!("/{psn}/$broadcast/{rest}");
                self.publish(&topic, payload.into_bytes());
                emit(&json!({"sim": "ok", "command": "broadcast", "topic": topic}));
            }
            Line::Raw(topic, payload) => {
                self.publish(&topic, payload.into_bytes());
                emit(&json!({"sim": "ok", "command": "raw", "topic": topic}));
            }
            Line::State(dev) => {
                let d = self
                    .state
                    .devices
                    .get(&dev.key())
                    .cloned()
                    .unwrap_or_default();
                let mut v = d.to_json();
                if let Some(o) = v.as_object_mut() {
                    o.remove("Secret");
                }
                emit(&json!({"sim": "state", "device": dev.key(), "state": v}));
            }
            Line::Secret(dev, secret) => {
                self.secrets.insert(dev.key(), secret);
                emit(&json!({"sim": "ok", "command": "secret", "device": dev.key()}));
            }
            Line::ExpireTokens => {
                let n = self
                    .web
                    .as_ref()
                    .map_or(0, |w| lock(&w.tokens).expire_all());
                emit(&json!({"sim": "ok", "command": "expire-tokens", "tokens": n}));
            }
            Line::OtaPush(dev, push) => ota::push(self, &dev, push),
            Line::OtaCancel(dev, module, version) => ota::cancel(self, &dev, &module, &version),
            Line::OtaLog(dev) => ota::log(self, &dev),
            Line::Quit => {}
        }
        self.save();
    }

    fn send(
        &mut self,
        dev: Dev,
        kind: &'static str,
        suffix: &str,
        request_id: String,
        body: Value,
    ) {
        self.publish(&dev.topic(suffix), body.to_string().into_bytes());
        emit(&json!({"sim": "ok", "command": kind, "device": dev.key(), "RequestID": request_id}));
        if self.sent.len() >= SENT_MAX {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent {
            dev,
            kind,
            request_id,
        });
    }

    fn request_id(&mut self) -> String {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id.to_string()
    }

    /// Publish at QoS 1 without waiting (an error line if it cannot).
    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        if let Err(e) = self.client.enqueue(topic, payload, QoS::AtLeastOnce) {
            emit(
                &json!({"sim": "error", "topic": uiot::cut(topic), "error": format!("cannot publish: {e}")}),
            );
        }
    }

    fn save(&self) {
        if let Err(why) = self.state.save() {
            emit(&json!({"sim": "error", "error": why}));
        }
    }
}

/// `/$system/PSN/DSN/SUFFIX` -> (device, SUFFIX).
fn split(topic: &str) -> Option<(Dev, &str)> {
    let rest = topic.strip_prefix("/$system/")?;
    let (psn, rest) = rest.split_once('/')?;
    let (dsn, suffix) = rest.split_once('/')?;
    if psn.is_empty() || dsn.is_empty() {
        return None;
    }
    Some((Dev::new(psn, dsn), suffix))
}

/// A payload for a line of output: the text, cut at [`QUOTE`] bytes.
fn quote(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload.get(..QUOTE).unwrap_or(payload));
    if payload.len() > QUOTE {
        format!("{text}... ({} bytes)", payload.len())
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn system_topics_split_into_device_and_suffix() {
        let (d, s) = split("/$system/p/d/tmodel/command_reply/7").unwrap();
        assert_eq!((d.key().as_str(), s), ("p.d", "tmodel/command_reply/7"));
        assert!(split("/p/d/upload").is_none());
        assert!(split("/$system//d/x").is_none());
    }
}
