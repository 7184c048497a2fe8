//! The thing model: properties, events and commands defined for the
//! product in the console, on the `tmodel/` system topics.
//!
//! Owns: the requests a device sends (property post, restore, desired get
//! and delete, event post, template get), each matched to its reply by
//! reply topic and RequestID with a timeout; and what the cloud sends
//! (property set, command), handed to the application as [`ThingEvent`]s
//! whose reply handle must be used once ([`reply`]).
//! Must not touch: the shadow, the socket, the application's messages.
//!
//! ```no_run
//! use serde_json::json;
//! use uiot::platform::thing::{EventKind, Thing, ThingEvent};
//! # let id = uiot::Identity::new("70ly1tvowt696r15", "aruidyl0rt9tuvod");
//! # let client = uiot::Client::connect(uiot::Options::device("127.0.0.1", 1883, id, "hly3dk1u5y8fq0b9"))?;
//! let thing = Thing::new(&client)?;
//! thing.post(&json!({"temperature": 26, "humidity": 57}))?;
//! thing.post_event("alarm", &json!({"alarmcode": 3}), EventKind::Warning)?;
//! while let Some(event) = thing.recv_timeout(std::time::Duration::from_secs(60)) {
//!     match event {
//!         ThingEvent::PropertySet(set) => set.reply(0)?,
//!         ThingEvent::Command(cmd) => cmd.reply(0, &json!({"nowvalue": 21}))?,
//!         _ => {} // kinds added later
//!     }
//! }
//! # Ok::<(), uiot::Error>(())
//! ```

pub mod reply;

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

pub(crate) use super::service::kind;
use super::service::{self, object, parse, ret_code, Pending, RequestIds};
use crate::client::{lock, Message, QoS, WeakClient};
use crate::error::Error;
use crate::Client;
pub use reply::{Command, PropertySet, UNANSWERED};

/// What the cloud asks of the device.
#[derive(Debug)]
#[non_exhaustive]
pub enum ThingEvent {
    /// Set properties (`property/set`); answer with [`PropertySet::reply`].
    PropertySet(PropertySet),
    /// Invoke a command (`command`); answer with [`Command::reply`].
    Command(Command),
}

/// An event's type in the thing model. The platform takes the type from
/// the model; here it sets the level of the device's own log line
/// (notify: info, warning: warn, error: error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `notify`
    Notify,
    /// `warning`
    Warning,
    /// `error`
    Error,
}

impl std::str::FromStr for EventKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "notify" | "info" => Ok(EventKind::Notify),
            "warning" | "warn" => Ok(EventKind::Warning),
            "error" => Ok(EventKind::Error),
            other => Err(Error::InvalidArgument(format!(
                "event type {:?}: use notify, warning or error",
                crate::cut(other)
            ))),
        }
    }
}

/// A cached desired value (`property/desired/get`).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredValue {
    /// The value.
    pub value: Value,
    /// Its version (give it back to [`Thing::desired_delete`]).
    pub version: u32,
}

/// Events held for the application; beyond that, a set or command is
/// answered with [`UNANSWERED`] at once.
const EVENT_QUEUE: usize = 32;
/// Replies this module waits for (suffixes under `tmodel/`).
pub(crate) const REPLIES: [&str; 6] = [
    "property/post_reply",
    "property/restore_reply",
    "property/desired/get_reply",
    "property/desired/delete_reply",
    "event/post_reply",
    "template/get_reply",
];

type Key = (&'static str, String);

/// The thing model of the client's device. Cheap to clone.
#[derive(Clone)]
pub struct Thing {
    client: Client,
    prefix: String,
    timeout: Duration,
    ids: Arc<RequestIds>,
    pending: Arc<Pending<Key, Map<String, Value>>>,
    events: Arc<Mutex<Receiver<ThingEvent>>>,
}

impl std::fmt::Debug for Thing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thing")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Thing {
    /// Take the `tmodel/` topics of the client's device (a route of their
    /// own) and subscribe to the replies, `property/set` and `command`.
    /// Requests wait [`DEFAULT_TIMEOUT`](super::DEFAULT_TIMEOUT).
    pub fn new(client: &Client) -> Result<Thing, Error> {
        Thing::with_timeout(client, super::DEFAULT_TIMEOUT)
    }

    /// [`Thing::new`] with another reply timeout.
    pub fn with_timeout(client: &Client, timeout: Duration) -> Result<Thing, Error> {
        let Some(id) = client.options().identity.clone() else {
            return Err(Error::InvalidArgument(
                "the thing model needs a device identity (Options::device)".into(),
            ));
        };
        let prefix = id.system_topic("tmodel/");
        let pending = Arc::new(Pending::new());
        let (tx, rx) = mpsc::sync_channel(EVENT_QUEUE);
        let route = client.route(&prefix, 64)?;
        let d = Dispatcher {
            client: client.downgrade(),
            prefix: prefix.clone(),
            pending: pending.clone(),
            events: tx,
        };
        service::spawn_dispatcher("uiot-thing", route, move |m| d.handle(&m))?;
        let mut filters: Vec<(String, QoS)> = REPLIES
            .iter()
            .chain(["property/set", "command"].iter())
            .map(|s| (format!("{prefix}{s}"), QoS::AtLeastOnce))
            .collect();
        filters.sort();
        client.subscribe(&filters)?;
        Ok(Thing {
            client: client.clone(),
            prefix,
            timeout,
            ids: Arc::new(RequestIds::new()),
            pending,
            events: Arc::new(Mutex::new(rx)),
        })
    }

    /// Report properties: `properties` is a JSON object; each value is sent
    /// wrapped as `{"Value": v}` (structs and arrays too).
    pub fn post(&self, properties: &Value) -> Result<(), Error> {
        self.post_at(properties, None)
    }

    /// [`Thing::post`] with a `Time` (Unix milliseconds) on every value.
    pub fn post_at(&self, properties: &Value, time_ms: Option<i64>) -> Result<(), Error> {
        let props = object(properties, "property post")?;
        let wrapped: Map<String, Value> = props
            .into_iter()
            .map(|(k, v)| {
                let mut w = json!({ "Value": v });
                if let (Some(t), Some(o)) = (time_ms, w.as_object_mut()) {
                    o.insert("Time".into(), t.into());
                }
                (k, w)
            })
            .collect();
        let mut body = Map::new();
        body.insert("Property".into(), Value::Object(wrapped));
        self.request(
            "property/post",
            "property/post_reply",
            body,
            "property post",
        )
        .map(|_| ())
    }

    /// Report one event with its output parameters (a JSON object).
    pub fn post_event(
        &self,
        identifier: &str,
        output: &Value,
        kind: EventKind,
    ) -> Result<(), Error> {
        identifier_ok(identifier)?;
        let out = object(output, "event output")?;
        let mut body = Map::new();
        body.insert("Identifier".into(), identifier.into());
        body.insert("Output".into(), Value::Object(out));
        let what = format!("event {identifier}");
        self.request("event/post", "event/post_reply", body, &what)?;
        match kind {
            EventKind::Notify => log::info!("event {identifier} posted"),
            EventKind::Warning => log::warn!("event {identifier} posted"),
            EventKind::Error => log::error!("event {identifier} posted"),
        }
        Ok(())
    }

    /// The last saved property values (`property/restore`), unwrapped.
    pub fn restore(&self) -> Result<Map<String, Value>, Error> {
        let m = self.request(
            "property/restore",
            "property/restore_reply",
            Map::new(),
            "property restore",
        )?;
        Ok(unwrap_values(m.get("Property")))
    }

    /// Cached desired values of these properties (all when `keys` is empty).
    pub fn desired_get(&self, keys: &[&str]) -> Result<Map<String, Value>, Error> {
        let mut body = Map::new();
        if !keys.is_empty() {
            body.insert("Require".into(), json!(keys));
        }
        let m = self.request(
            "property/desired/get",
            "property/desired/get_reply",
            body,
            "desired get",
        )?;
        Ok(desired_of(&m))
    }

    /// [`Thing::desired_get`], typed: each value with its version.
    pub fn desired_values(&self, keys: &[&str]) -> Result<Vec<(String, DesiredValue)>, Error> {
        Ok(desired_values_of(self.desired_get(keys)?))
    }

    /// Delete cached desired values after applying them: each key with the
    /// version it was read with (a changed value is kept).
    pub fn desired_delete(&self, items: &[(&str, u32)]) -> Result<(), Error> {
        if items.is_empty() {
            return Err(Error::InvalidArgument(
                "desired delete needs at least one key and its version".into(),
            ));
        }
        let delete: Map<String, Value> = items
            .iter()
            .map(|(k, v)| (k.to_string(), json!({ "Version": v })))
            .collect();
        let mut body = Map::new();
        body.insert("Delete".into(), Value::Object(delete));
        self.request(
            "property/desired/delete",
            "property/desired/delete_reply",
            body,
            "desired delete",
        )
        .map(|_| ())
    }

    /// The product's thing model definition (with or without the outer
    /// `Template` wrapper, the content is returned).
    pub fn template(&self) -> Result<Value, Error> {
        let m = self.request(
            "template/get",
            "template/get_reply",
            Map::new(),
            "template get",
        )?;
        Ok(template_of(&m))
    }

    /// The next property set or command, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<ThingEvent> {
        lock(&self.events).recv_timeout(timeout).ok()
    }

    /// The next property set or command; `None` once the client is closed.
    pub fn recv(&self) -> Option<ThingEvent> {
        lock(&self.events).recv().ok()
    }

    fn request(
        &self,
        topic: &str,
        reply: &'static str,
        mut body: Map<String, Value>,
        what: &str,
    ) -> Result<Map<String, Value>, Error> {
        let id = self.ids.next();
        body.insert("RequestID".into(), Value::String(id.clone()));
        let key = (reply, id);
        let rx = self.pending.insert(key.clone());
        let sent = self.client.publish(
            &format!("{}{topic}", self.prefix),
            Value::Object(body).to_string().as_bytes(),
            QoS::AtLeastOnce,
        );
        if let Err(e) = sent {
            self.pending.cancel(&key);
            return Err(e);
        }
        let m = service::wait(&self.pending, &key, &rx, self.timeout, what)?;
        reply_result(what, m)
    }
}

/// A reply's body when its RetCode is 0, else the request's error.
pub(crate) fn reply_result(what: &str, m: Map<String, Value>) -> Result<Map<String, Value>, Error> {
    match ret_code(&m) {
        Ok(0) => Ok(m),
        Ok(code) => Err(service::refused(what, code, &m)),
        Err(why) => Err(Error::ProtocolViolation(format!(
            "answered the {what} with {why}"
        ))),
    }
}

/// `Desired` of a `property/desired/get_reply` (empty when absent).
pub(crate) fn desired_of(m: &Map<String, Value>) -> Map<String, Value> {
    match m.get("Desired") {
        Some(Value::Object(d)) => d.clone(),
        _ => Map::new(),
    }
}

/// Desired values with their versions; one without both is skipped (logged).
pub(crate) fn desired_values_of(d: Map<String, Value>) -> Vec<(String, DesiredValue)> {
    let mut out = Vec::new();
    for (k, v) in d {
        let version = v
            .get("Version")
            .or_else(|| v.get("version"))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok());
        match (v.get("Value"), version) {
            (Some(value), Some(version)) => out.push((
                k,
                DesiredValue {
                    value: value.clone(),
                    version,
                },
            )),
            _ => log::warn!(
                "desired value {:?} without Value and Version; skipped",
                crate::cut(&k)
            ),
        }
    }
    out
}

/// The template of a `template/get_reply`, without an outer `Template`
/// wrapper.
pub(crate) fn template_of(m: &Map<String, Value>) -> Value {
    let t = m.get("Template").cloned().unwrap_or(Value::Null);
    match t {
        Value::Object(mut o) if o.len() == 1 && o.contains_key("Template") => {
            o.remove("Template").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// Thing model identifiers: letters, digits, `_`, at most 32, not starting
/// with a digit.
fn identifier_ok(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !id.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "identifier {:?}: letters, digits and _, at most 32, not starting with a digit \
             (as defined in the thing model)",
            crate::cut(id)
        )))
    }
}

/// `{"k": {"Value": v, "Time": t}}` -> `{"k": v}`.
pub(crate) fn unwrap_values(v: Option<&Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.get("Value").cloned().unwrap_or_else(|| v.clone()),
                )
            })
            .collect(),
        _ => Map::new(),
    }
}

/// One downstream `tmodel/` message, parsed (no client needed).
#[derive(Debug)]
pub(crate) enum Downstream {
    /// `property/set`.
    PropertySet {
        id: String,
        properties: Map<String, Value>,
    },
    /// `command`.
    Command {
        id: String,
        identifier: String,
        input: Map<String, Value>,
    },
    /// One of [`REPLIES`], for the request `id`.
    Reply {
        reply: &'static str,
        id: String,
        body: Map<String, Value>,
    },
}

/// Parse a message on the `tmodel/` route of the device whose topics start
/// with `prefix`; `None` after a warning naming the topic when it is not
/// one uiot takes (the dispatcher's whole parsing step).
pub(crate) fn downstream(prefix: &str, msg: &Message) -> Option<Downstream> {
    let Some(suffix) = msg.topic.strip_prefix(prefix) else {
        service::ignored(&msg.topic, "not a thing model topic of this device");
        return None;
    };
    let m = parse(msg)?;
    let id = match service::request_id(&m) {
        Ok(id) => id,
        Err(why) => {
            service::ignored(&msg.topic, &why);
            return None;
        }
    };
    let parsed = match suffix {
        "property/set" => property_set(id, &m),
        "command" => command(id, &m),
        _ => match REPLIES.iter().find(|r| **r == suffix) {
            Some(reply) => Ok(Downstream::Reply { reply, id, body: m }),
            None => Err("not a thing model topic uiot handles".to_string()),
        },
    };
    match parsed {
        Ok(d) => Some(d),
        Err(why) => {
            service::ignored(&msg.topic, &why);
            None
        }
    }
}

fn property_set(id: String, m: &Map<String, Value>) -> Result<Downstream, String> {
    let properties = match m.get("Property") {
        Some(Value::Object(p)) => p.clone(),
        Some(other) => return Err(format!("Property is {}, not an object", kind(other))),
        None => return Err("no Property".into()),
    };
    Ok(Downstream::PropertySet { id, properties })
}

fn command(id: String, m: &Map<String, Value>) -> Result<Downstream, String> {
    let identifier = match m.get("Identifier") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err("Identifier is empty".into()),
        Some(other) => return Err(format!("Identifier is {}, not a string", kind(other))),
        None => return Err("no Identifier".into()),
    };
    let input = match m.get("Input") {
        Some(Value::Object(i)) => i.clone(),
        Some(other) => return Err(format!("Input is {}, not an object", kind(other))),
        None => return Err("no Input".into()),
    };
    Ok(Downstream::Command {
        id,
        identifier,
        input,
    })
}

/// Takes the `tmodel/` topics off the route.
struct Dispatcher {
    client: WeakClient,
    prefix: String,
    pending: Arc<Pending<Key, Map<String, Value>>>,
    events: SyncSender<ThingEvent>,
}

impl Dispatcher {
    fn handle(&self, msg: &Message) {
        match downstream(&self.prefix, msg) {
            Some(Downstream::PropertySet { id, properties }) => {
                let topic = format!("{}property/set_reply", self.prefix);
                let r = reply::Responder::new(self.client.clone(), topic, id.clone(), None);
                self.hand_over(ThingEvent::PropertySet(PropertySet::new(id, properties, r)));
            }
            Some(Downstream::Command {
                id,
                identifier,
                input,
            }) => {
                let topic = format!("{}command_reply/{id}", self.prefix);
                let r = reply::Responder::new(
                    self.client.clone(),
                    topic,
                    id.clone(),
                    Some(identifier.clone()),
                );
                self.hand_over(ThingEvent::Command(Command::new(id, identifier, input, r)));
            }
            Some(Downstream::Reply { reply, id, body }) => {
                let done = self.pending.complete(&(reply, id.clone()), body);
                if !done {
                    log::warn!(
                        "{} RequestID {:?} belongs to no pending request; dropped",
                        msg.topic,
                        crate::cut(&id)
                    );
                }
            }
            None => {}
        }
    }

    fn hand_over(&self, event: ThingEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            // Dropping the event answers it with UNANSWERED (and logs).
            Err(TrySendError::Full(e)) => {
                log::warn!("thing model events not taken (Thing::recv): {EVENT_QUEUE} waiting");
                drop(e);
            }
            Err(TrySendError::Disconnected(e)) => drop(e),
        }
    }
}
