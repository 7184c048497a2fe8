//! The device shadow: the cloud's copy of the device's reported state, the
//! desired values apps set, and the version that orders every change.
//!
//! Owns: the shadow topics (`shadow/get`, `get_reply`, `upstream`,
//! `downstream`), their JSON, the local version (kept from every reply,
//! control and get_reply), the matching of replies to requests (one request
//! in flight; an update completes only on a `reply` carrying the version it
//! produced, never on a `control`), the conflict retry (100026: adopt the
//! returned version, retry once), and the queue of desired values.
//! Must not touch: the thing model, the socket, the application's messages.
//!
//! ```no_run
//! use serde_json::json;
//! use uiot::platform::shadow::Shadow;
//! # let id = uiot::Identity::new("70ly1tvowt696r15", "aruidyl0rt9tuvod");
//! # let client = uiot::Client::connect(uiot::Options::device("127.0.0.1", 1883, id, "hly3dk1u5y8fq0b9"))?;
//! let shadow = Shadow::new(&client)?;
//! let doc = shadow.get()?;                       // full document, version kept
//! shadow.report(&json!({"temperature": 26}))?;   // update with the current version
//! if let Some(d) = shadow.desired_timeout(std::time::Duration::from_secs(30)) {
//!     // apply d.state, then report what is now true and clear Desired:
//!     shadow.clear_desired(Some(&serde_json::Value::Object(d.state)))?;
//! }
//! # let _ = doc;
//! # Ok::<(), uiot::Error>(())
//! ```

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::service::{self, kind, object, parse, ret_code};
use crate::client::{lock, secs, Message, QoS};
use crate::error::Error;
use crate::Client;

/// RetCode of a version conflict.
pub const VERSION_CONFLICT: i64 = 100026;
/// Desired values held for the application (the rest stay in the shadow
/// and [`Shadow::get`] returns them).
const DESIRED_QUEUE: usize = 16;

/// The shadow document (`get_reply`).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `State.Reported`: what the device reported.
    pub reported: Map<String, Value>,
    /// `State.Desired`: what apps want the device to apply.
    pub desired: Map<String, Value>,
    /// `Metadata`: per-key timestamps (Unix seconds).
    pub metadata: Value,
    /// `Timestamp` of the document (Unix seconds), if sent.
    pub timestamp: Option<i64>,
    /// The shadow version.
    pub version: u32,
}

/// Desired values the cloud pushed (`control`), or found in a document
/// nobody asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The desired keys and values.
    pub state: Map<String, Value>,
    /// The shadow version after the change.
    pub version: u32,
}

/// The answer the dispatcher hands to the waiting request.
#[derive(Debug)]
enum Answer {
    Document(Document),
    Done(u32),
    Conflict(u32),
    Failed(i64, Map<String, Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    /// An update or delete, answered by a `reply` with this version.
    Change {
        expect: u32,
    },
}

#[derive(Debug)]
struct Waiter {
    kind: Kind,
    tx: SyncSender<Answer>,
}

/// What the request side and the dispatcher share.
#[derive(Debug, Default)]
struct State {
    version: Mutex<Option<u32>>,
    waiter: Mutex<Option<Waiter>>,
}

/// The device shadow of the client's device. Cheap to clone.
#[derive(Clone)]
pub struct Shadow {
    client: Client,
    state: Arc<State>,
    upstream: String,
    get: String,
    timeout: Duration,
    busy: Arc<Mutex<()>>,
    desired: Arc<Mutex<Receiver<Desired>>>,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow")
            .field("version", &*lock(&self.state.version))
            .finish_non_exhaustive()
    }
}

impl Shadow {
    /// Take the shadow topics of the client's device (a route of their own,
    /// so the application's subscriptions and reads never interfere) and
    /// subscribe to `get_reply` and `downstream`. Requests wait
    /// [`DEFAULT_TIMEOUT`](super::DEFAULT_TIMEOUT) for their reply.
    pub fn new(client: &Client) -> Result<Shadow, Error> {
        Shadow::with_timeout(client, super::DEFAULT_TIMEOUT)
    }

    /// [`Shadow::new`] with another reply timeout.
    pub fn with_timeout(client: &Client, timeout: Duration) -> Result<Shadow, Error> {
        let Some(id) = client.options().identity.clone() else {
            return Err(Error::InvalidArgument(
                "the device shadow needs a device identity (Options::device)".into(),
            ));
        };
        let state = Arc::new(State::default());
        let (desired_tx, desired_rx) = mpsc::sync_channel(DESIRED_QUEUE);
        let route = client.route(&id.system_topic("shadow/"), 64)?;
        let d = Dispatcher {
            state: state.clone(),
            desired: desired_tx,
            get_reply: id.system_topic("shadow/get_reply"),
            downstream: id.system_topic("shadow/downstream"),
        };
        let filters = [
            (d.get_reply.clone(), QoS::AtLeastOnce),
            (d.downstream.clone(), QoS::AtLeastOnce),
        ];
        service::spawn_dispatcher("uiot-shadow", route, move |m| d.handle(&m))?;
        client.subscribe(&filters)?;
        Ok(Shadow {
            client: client.clone(),
            state,
            upstream: id.system_topic("shadow/upstream"),
            get: id.system_topic("shadow/get"),
            timeout,
            busy: Arc::new(Mutex::new(())),
            desired: Arc::new(Mutex::new(desired_rx)),
        })
    }

    /// The last shadow version seen (from any reply, control or document).
    pub fn version(&self) -> Option<u32> {
        *lock(&self.state.version)
    }

    /// Fetch the whole document.
    pub fn get(&self) -> Result<Document, Error> {
        let _busy = lock(&self.busy);
        self.get_locked()
    }

    /// Report state: merge `reported` (a JSON object; a `null` value
    /// removes that key) into `State.Reported`. Returns the new version.
    pub fn report(&self, reported: &Value) -> Result<u32, Error> {
        let reported = object(reported, "shadow report")?;
        self.change("update", json!({ "Reported": reported }), false)
    }

    /// After applying desired values: clear `State.Desired` (the cloud then
    /// takes each cleared value as reported), reporting `reported` in the
    /// same message when the device kept other values. Returns the new
    /// version.
    pub fn clear_desired(&self, reported: Option<&Value>) -> Result<u32, Error> {
        let state = match reported {
            Some(r) => json!({ "Reported": object(r, "shadow report")?, "Desired": null }),
            None => json!({ "Desired": null }),
        };
        self.change("update", state, false)
    }

    /// Delete these reported keys. Returns the new version.
    pub fn delete(&self, keys: &[&str]) -> Result<u32, Error> {
        if keys.is_empty() {
            return Err(Error::InvalidArgument(
                "shadow delete needs at least one key (or use delete_all)".into(),
            ));
        }
        let keys: Map<String, Value> = keys.iter().map(|k| (k.to_string(), Value::Null)).collect();
        self.change("delete", json!({ "Reported": keys }), false)
    }

    /// Delete every reported key. Returns the new version.
    pub fn delete_all(&self) -> Result<u32, Error> {
        self.change("delete", json!({ "Reported": null }), false)
    }

    /// Reset the version to 0 (an update with `"Version": -1`), reporting
    /// `reported` (or nothing). Returns 0.
    pub fn reset(&self, reported: Option<&Value>) -> Result<u32, Error> {
        let reported = match reported {
            Some(r) => Value::Object(object(r, "shadow reset")?),
            None => json!({}),
        };
        self.change("update", json!({ "Reported": reported }), true)
    }

    /// The next desired values the cloud pushes, waiting at most `timeout`.
    pub fn desired_timeout(&self, timeout: Duration) -> Option<Desired> {
        lock(&self.desired).recv_timeout(timeout).ok()
    }

    /// Desired values as they come, until the client is closed.
    pub fn desired(&self) -> impl Iterator<Item = Desired> + '_ {
        std::iter::from_fn(move || lock(&self.desired).recv().ok())
    }

    fn get_locked(&self) -> Result<Document, Error> {
        match self.exchange(Kind::Get, &self.get, &json!({ "Method": "get" }))? {
            Answer::Document(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    fn change(&self, method: &str, state: Value, reset: bool) -> Result<u32, Error> {
        let _busy = lock(&self.busy);
        let mut version: i64 = match (reset, self.version()) {
            (true, _) => -1,
            (false, Some(v)) => i64::from(v),
            (false, None) => i64::from(self.get_locked()?.version),
        };
        let what = format!("shadow {method}");
        for attempt in 0..2 {
            let expect = if version < 0 {
                0
            } else {
                u32::try_from(version + 1).map_err(|_| {
                    Error::Limit(format!(
                        "the shadow version {version} is at its maximum; reset it (Shadow::reset)"
                    ))
                })?
            };
            let body = json!({ "Method": method, "State": state, "Version": version });
            match self.exchange(Kind::Change { expect }, &self.upstream, &body)? {
                Answer::Done(v) => return Ok(v),
                Answer::Conflict(v) if attempt == 0 => {
                    log::info!("{what}: version conflict, retrying with version {v}");
                    version = i64::from(v);
                }
                Answer::Conflict(v) => {
                    return Err(Error::Platform {
                        request: what,
                        code: VERSION_CONFLICT,
                        detail: format!(
                            "shadow version conflict twice (now version {v}): something else \
                             changes the shadow at the same time; get it and try again"
                        ),
                    })
                }
                Answer::Failed(code, m) => return Err(service::refused(&what, code, &m)),
                other @ Answer::Document(_) => return Err(unexpected(&other)),
            }
        }
        Err(Error::Timeout(format!("{what}: no answer")))
    }

    fn exchange(&self, kind: Kind, topic: &str, body: &Value) -> Result<Answer, Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        *lock(&self.state.waiter) = Some(Waiter { kind, tx });
        let sent = self
            .client
            .publish(topic, body.to_string().as_bytes(), QoS::AtLeastOnce);
        let answer = match sent {
            Ok(()) => rx.recv_timeout(self.timeout).map_err(|_| {
                Error::Timeout(format!(
                    "no shadow reply within {}; check that the device shadow is on for the \
                     product in the UIoT Core console",
                    secs(self.timeout)
                ))
            }),
            Err(e) => Err(e),
        };
        lock(&self.state.waiter).take();
        answer
    }
}

fn unexpected(a: &Answer) -> Error {
    Error::ProtocolViolation(format!("answered a shadow request out of turn ({a:?})"))
}

/// The request [`handle_detached`] pretends is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// None.
    Nothing,
    /// A get.
    Get,
    /// An update or delete that produces this version.
    Change(u32),
}

/// What [`handle_detached`] saw come out of the dispatcher.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// What the waiting request was handed, as `Answer`'s debug form.
    pub(crate) answer: Option<String>,
    /// Desired values queued for the application.
    pub(crate) desired: usize,
    /// The version kept afterwards.
    pub(crate) version: Option<u32>,
}

/// Run the shadow dispatcher of the device with topics under `prefix`
/// (`/$system/PSN/DSN/`) on one message, with no client: a fresh state
/// with `waiting` registered. For the fuzz entry points.
pub(crate) fn handle_detached(prefix: &str, waiting: Waiting, msg: &Message) -> Seen {
    let state = Arc::new(State::default());
    let (tx, rx) = mpsc::sync_channel(1);
    let kind = match waiting {
        Waiting::Nothing => None,
        Waiting::Get => Some(Kind::Get),
        Waiting::Change(expect) => Some(Kind::Change { expect }),
    };
    *lock(&state.waiter) = kind.map(|kind| Waiter { kind, tx });
    let (desired_tx, desired_rx) = mpsc::sync_channel(DESIRED_QUEUE);
    let d = Dispatcher {
        state: state.clone(),
        desired: desired_tx,
        get_reply: format!("{prefix}shadow/get_reply"),
        downstream: format!("{prefix}shadow/downstream"),
    };
    d.handle(msg);
    let version = *lock(&state.version);
    Seen {
        answer: rx.try_recv().ok().map(|a| format!("{a:?}")),
        desired: desired_rx.try_iter().count(),
        version,
    }
}

/// Takes the shadow topics off the route and completes requests.
struct Dispatcher {
    state: Arc<State>,
    desired: SyncSender<Desired>,
    get_reply: String,
    downstream: String,
}

impl Dispatcher {
    fn handle(&self, msg: &Message) {
        let is_get = msg.topic == self.get_reply;
        if !is_get && msg.topic != self.downstream {
            service::ignored(&msg.topic, "not a shadow topic this device subscribes to");
            return;
        }
        let Some(m) = parse(msg) else { return };
        let version = match m.get("Version") {
            Some(v) => match v.as_u64().and_then(|v| u32::try_from(v).ok()) {
                Some(v) => v,
                None => {
                    return service::ignored(
                        &msg.topic,
                        &format!(
                            "Version {} is not a non-negative 32-bit integer",
                            crate::cut(&v.to_string())
                        ),
                    )
                }
            },
            None => return service::ignored(&msg.topic, "no Version"),
        };
        let outcome = if is_get {
            self.document(&m, version)
        } else {
            self.downstream(&m, version)
        };
        if let Err(why) = outcome {
            service::ignored(&msg.topic, &why);
        }
    }

    /// Keep the version and hand `answer` to the request it belongs to.
    fn answer(&self, version: u32, fits: impl Fn(Kind) -> bool, answer: Answer) -> bool {
        *lock(&self.state.version) = Some(version);
        let mut w = lock(&self.state.waiter);
        match w.as_ref() {
            Some(waiter) if fits(waiter.kind) => {
                if let Some(waiter) = w.take() {
                    let _ = waiter.tx.try_send(answer);
                }
                true
            }
            _ => false,
        }
    }

    fn document(&self, m: &Map<String, Value>, version: u32) -> Result<(), String> {
        let st = section(m.get("State"), "State")?;
        let doc = Document {
            reported: section(st.get("Reported"), "State.Reported")?,
            desired: section(st.get("Desired"), "State.Desired")?,
            metadata: m.get("Metadata").cloned().unwrap_or(Value::Null),
            timestamp: m.get("Timestamp").and_then(Value::as_i64),
            version,
        };
        let desired = doc.desired.clone();
        if !self.answer(version, |k| k == Kind::Get, Answer::Document(doc)) {
            log::info!("shadow document nobody asked for (version {version})");
            self.push_desired(desired, version);
        }
        Ok(())
    }

    fn downstream(&self, m: &Map<String, Value>, version: u32) -> Result<(), String> {
        let method = match m.get("Method") {
            Some(Value::String(s)) => s.as_str(),
            Some(other) => return Err(format!("Method is {}, not a string", kind(other))),
            None => return Err("no Method".into()),
        };
        let payload = section(m.get("Payload"), "Payload")?;
        let code = ret_code(&payload)?;
        let change = |k: Kind| matches!(k, Kind::Change { .. });
        match (method, code) {
            ("reply", 0) => {
                let ours = |k: Kind| k == Kind::Change { expect: version };
                if !self.answer(version, ours, Answer::Done(version)) {
                    return Err(format!(
                        "shadow reply (version {version}) belongs to no pending request"
                    ));
                }
            }
            ("reply", code) => {
                if !self.answer(version, change, Answer::Failed(code, payload)) {
                    return Err(format!(
                        "shadow reply RetCode {code} belongs to no pending request"
                    ));
                }
            }
            ("control", VERSION_CONFLICT) => {
                if !self.answer(version, change, Answer::Conflict(version)) {
                    log::info!("shadow version conflict: now version {version}");
                }
            }
            ("control", 0) => {
                *lock(&self.state.version) = Some(version);
                let st = section(payload.get("State"), "Payload.State")?;
                let desired = section(st.get("Desired"), "Payload.State.Desired")?;
                self.push_desired(desired, version);
            }
            ("control", code) => {
                *lock(&self.state.version) = Some(version);
                log::warn!(
                    "shadow control with RetCode {code} ({})",
                    super::retcode::meaning(code)
                );
            }
            (other, _) => return Err(format!("unknown Method {:?}", crate::cut(other))),
        }
        Ok(())
    }

    fn push_desired(&self, state: Map<String, Value>, version: u32) {
        if state.is_empty() {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.desired.try_send(Desired { state, version }) {
            log::warn!(
                "desired values of shadow version {version} not taken (Shadow::desired): \
                 dropped here; they stay in the shadow, Shadow::get returns them"
            );
        }
    }
}

/// An object member that may be absent (empty) or null (empty), but not
/// of another type.
fn section(v: Option<&Value>, name: &str) -> Result<Map<String, Value>, String> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(other) => Err(format!("{name} is {}, not an object", kind(other))),
    }
}
