//! What every platform service shares: parsing cloud JSON defensively,
//! request ids, the table of requests awaiting their reply, and the
//! dispatcher thread that takes a service's routed topics.
//!
//! Owns: [`parse`] (a cloud message that is not a JSON object is logged at
//! warn with its topic and dropped), RetCode reading (number or string),
//! [`RequestIds`], [`Pending`] (a reply completes only the request it
//! belongs to), [`spawn_dispatcher`].
//! Must not touch: any one service's JSON shapes or topics.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::client::{lock, secs, Message, Messages};
use crate::error::{cut, Error};

/// How long a platform request waits for its reply by default. The SDK
/// waits 5 s; a slow cellular link needs more.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest cloud message a service parses (the platform's packet limit).
const MAX_JSON: usize = crate::platform::MAX_PACKET;

/// The payload of a cloud message as a JSON object, or `None` after a
/// warning that names the topic and what is wrong.
pub(crate) fn parse(msg: &Message) -> Option<Map<String, Value>> {
    let why = if msg.payload.len() > MAX_JSON {
        format!("{} bytes, more than {MAX_JSON}", msg.payload.len())
    } else {
        match serde_json::from_slice::<Value>(&msg.payload) {
            Ok(Value::Object(m)) => return Some(m),
            Ok(other) => format!("JSON {} where an object was expected", kind(&other)),
            Err(e) => format!("not JSON ({e})"),
        }
    };
    ignored(&msg.topic, &why);
    None
}

/// Log a cloud message that is dropped, with its topic and the reason.
pub(crate) fn ignored(topic: &str, why: &str) {
    log::warn!("ignored a message on {}: {why}", cut(topic));
}

/// The JSON type's name, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object argument, or [`Error::InvalidArgument`] naming `what`.
pub(crate) fn object(v: &Value, what: &str) -> Result<Map<String, Value>, Error> {
    match v {
        Value::Object(m) => Ok(m.clone()),
        other => Err(Error::InvalidArgument(format!(
            "{what} needs a JSON object, not {}",
            kind(other)
        ))),
    }
}

/// `RetCode` as a number: the platform sends a number, the registration
/// reply a string (`"0"`). `Err` says what is wrong with it.
pub(crate) fn ret_code(m: &Map<String, Value>) -> Result<i64, String> {
    match m.get("RetCode") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("RetCode {n} is not an integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("RetCode {:?} is not an integer", cut(s))),
        Some(other) => Err(format!("RetCode is {}, not a number", kind(other))),
        None => Err("no RetCode".into()),
    }
}

/// `RequestID` as text (the platform's ids are strings; a number is
/// accepted too).
pub(crate) fn request_id(m: &Map<String, Value>) -> Result<String, String> {
    match m.get("RequestID") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::String(_)) => Err("RequestID is empty".into()),
        Some(other) => Err(format!("RequestID is {}, not a string", kind(other))),
        None => Err("no RequestID".into()),
    }
}

/// The request's reply error for a non-zero RetCode.
pub(crate) fn refused(request: &str, code: i64, m: &Map<String, Value>) -> Error {
    let message = match m.get("Message").or_else(|| m.get("ErrMsg")) {
        Some(Value::String(s)) if !s.is_empty() => format!(": {}", cut(s)),
        _ => String::new(),
    };
    Error::Platform {
        request: request.to_string(),
        code,
        detail: format!("{}{message}", super::retcode::meaning(code)),
    }
}

/// Request ids: decimal strings from a counter that starts at the clock,
/// so that a restarted device does not reuse the ids of its last run.
#[derive(Debug)]
pub(crate) struct RequestIds(AtomicU32);

impl RequestIds {
    pub(crate) fn new() -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| {
                let s = u32::try_from(d.as_secs() % 1_000_000).unwrap_or(0);
                s.wrapping_mul(1000).wrapping_add(d.subsec_millis())
            });
        RequestIds(AtomicU32::new(start))
    }

    pub(crate) fn next(&self) -> String {
        self.0.fetch_add(1, Ordering::Relaxed).to_string()
    }
}

/// Requests awaiting their reply, by key (the reply topic and the
/// RequestID): a reply completes only the request it belongs to.
#[derive(Debug)]
pub(crate) struct Pending<K, V> {
    map: Mutex<HashMap<K, SyncSender<V>>>,
}

impl<K: Eq + Hash, V> Pending<K, V> {
    pub(crate) fn new() -> Self {
        Pending {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Register a request; its reply arrives on the receiver.
    pub(crate) fn insert(&self, key: K) -> Receiver<V> {
        let (tx, rx) = mpsc::sync_channel(1);
        lock(&self.map).insert(key, tx);
        rx
    }

    /// Hand `value` to the request `key`; `false` when none waits for it.
    pub(crate) fn complete(&self, key: &K, value: V) -> bool {
        match lock(&self.map).remove(key) {
            Some(tx) => tx.try_send(value).is_ok(),
            None => false,
        }
    }

    /// Forget a request that timed out or failed to send.
    pub(crate) fn cancel(&self, key: &K) {
        lock(&self.map).remove(key);
    }
}

/// Wait for a request's reply, forgetting the request when none comes.
pub(crate) fn wait<K: Eq + Hash, V>(
    pending: &Pending<K, V>,
    key: &K,
    rx: &Receiver<V>,
    timeout: Duration,
    what: &str,
) -> Result<V, Error> {
    match rx.recv_timeout(timeout) {
        Ok(v) => Ok(v),
        Err(_) => {
            pending.cancel(key);
            Err(Error::Timeout(format!(
                "no reply to the {what} within {}; is the device online in the UIoT Core \
                 console and the service enabled for the product?",
                secs(timeout)
            )))
        }
    }
}

/// Start the thread that takes a service's routed messages and hands each
/// to `handle`, until the client is closed.
pub(crate) fn spawn_dispatcher(
    name: &str,
    route: Messages,
    mut handle: impl FnMut(Message) + Send + 'static,
) -> Result<(), Error> {
    std::thread::Builder::new()
        .name(name.to_string())
        // serde_json nests at most 128 levels; 256 KiB is ample.
        .stack_size(256 * 1024)
        .spawn(move || {
            while let Ok(m) = route.recv() {
                handle(m);
            }
        })
        .map(|_| ())
        .map_err(|source| Error::Io {
            context: format!("starting the {name} thread"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QoS;

    fn msg(payload: &str) -> Message {
        Message {
            topic: "/t".into(),
            payload: payload.as_bytes().to_vec(),
            qos: QoS::AtLeastOnce,
            dup: false,
        }
    }

    #[test]
    fn parse_takes_objects_only() {
        assert!(parse(&msg("{\"a\":1}")).is_some());
        for bad in ["", "[1]", "nul", "\"x\"", "{\"a\":"] {
            assert!(parse(&msg(bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn ret_code_accepts_numbers_and_strings() {
        let m = |v: Value| {
            serde_json::json!({ "RetCode": v })
                .as_object()
                .cloned()
                .unwrap()
        };
        assert_eq!(ret_code(&m(0.into())), Ok(0));
        assert_eq!(ret_code(&m("100026".into())), Ok(100026));
        assert!(ret_code(&m(1.5.into())).is_err());
        assert!(ret_code(&m("x".into())).is_err());
        assert!(ret_code(&Map::new()).is_err());
    }

    #[test]
    fn a_reply_completes_only_its_own_request() {
        let p: Pending<String, u8> = Pending::new();
        let rx = p.insert("1".into());
        assert!(!p.complete(&"2".into(), 9));
        assert!(p.complete(&"1".into(), 7));
        assert_eq!(rx.recv().unwrap(), 7);
        assert!(
            !p.complete(&"1".into(), 8),
            "a second reply finds no request"
        );
    }
}
