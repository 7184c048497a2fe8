//! Answers to the cloud's property sets and commands: each must be sent
//! once; dropping one unanswered sends [`UNANSWERED`] and logs it.
//!
//! Owns: [`PropertySet`], [`Command`] and the reply they owe
//! (`property/set_reply`, `command_reply/<RequestID>`), including the
//! refusal of a reply topic longer than the platform's 128 bytes.
//! Must not touch: the dispatcher, pending requests.

use serde_json::{json, Map, Value};

use crate::client::{QoS, WeakClient};
use crate::error::Error;
use crate::platform::MAX_TOPIC_LEN;

/// RetCode sent for a property set or command the application dropped
/// without answering (or could not take: its queue was full). 130 is the
/// platform's "service temporarily unavailable, retry later".
pub const UNANSWERED: i64 = 130;

/// The reply a set or command owes, sent once.
#[derive(Debug)]
pub(super) struct Responder {
    client: WeakClient,
    topic: String,
    request_id: String,
    identifier: Option<String>,
    done: bool,
}

impl Responder {
    pub(super) fn new(
        client: WeakClient,
        topic: String,
        request_id: String,
        identifier: Option<String>,
    ) -> Self {
        Responder {
            client,
            topic,
            request_id,
            identifier,
            done: false,
        }
    }

    fn body(&self, code: i64, output: Option<&Map<String, Value>>) -> Value {
        let mut b = json!({ "RequestID": self.request_id, "RetCode": code });
        if let (Some(o), Some(id)) = (b.as_object_mut(), &self.identifier) {
            o.insert("Identifier".into(), id.clone().into());
            o.insert(
                "Output".into(),
                Value::Object(output.cloned().unwrap_or_default()),
            );
        }
        b
    }

    fn check_topic(&self) -> Result<(), Error> {
        if self.topic.len() > MAX_TOPIC_LEN {
            return Err(Error::Limit(format!(
                "the reply topic {} is {} bytes, more than UIoT Core's {MAX_TOPIC_LEN}: the \
                 cloud's RequestID ({} bytes) is too long for this DeviceSN; nothing was sent",
                crate::cut(&self.topic),
                self.topic.len(),
                self.request_id.len()
            )));
        }
        Ok(())
    }

    /// Send the reply and wait for its PUBACK.
    fn send(&mut self, code: i64, output: Option<&Map<String, Value>>) -> Result<(), Error> {
        self.done = true;
        self.check_topic()?;
        let client = self.client.upgrade().ok_or_else(|| {
            Error::Disconnected("the client was closed before the reply was sent".into())
        })?;
        let body = self.body(code, output).to_string();
        client.publish(&self.topic, body.as_bytes(), QoS::AtLeastOnce)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        log::warn!(
            "{} RequestID {} dropped without a reply: answering RetCode {UNANSWERED}",
            crate::cut(&self.topic),
            crate::cut(&self.request_id)
        );
        if self.check_topic().is_err() {
            return;
        }
        if let Some(c) = self.client.upgrade() {
            let body = self.body(UNANSWERED, None).to_string();
            // No waiting in a destructor: queued, sent by the I/O thread.
            let _ = c.enqueue(&self.topic, body.into_bytes(), QoS::AtLeastOnce);
        }
    }
}

/// The cloud sets properties (`property/set`; plain values, no `Value`
/// wrapper). Answer once with [`PropertySet::reply`].
#[derive(Debug)]
pub struct PropertySet {
    /// The cloud's RequestID (echoed in the reply).
    pub request_id: String,
    /// The properties and their new values.
    pub properties: Map<String, Value>,
    responder: Responder,
}

impl PropertySet {
    pub(super) fn new(request_id: String, properties: Map<String, Value>, r: Responder) -> Self {
        PropertySet {
            request_id,
            properties,
            responder: r,
        }
    }

    /// Answer on `property/set_reply` with `ret_code` (0: applied).
    pub fn reply(mut self, ret_code: i64) -> Result<(), Error> {
        self.responder.send(ret_code, None)
    }
}

/// The cloud invokes a command (`command`). Answer once with
/// [`Command::reply`] on `command_reply/<RequestID>`.
#[derive(Debug)]
pub struct Command {
    /// The cloud's RequestID (part of the reply topic).
    pub request_id: String,
    /// The command's identifier in the thing model.
    pub identifier: String,
    /// Its input parameters.
    pub input: Map<String, Value>,
    responder: Responder,
}

impl Command {
    pub(super) fn new(
        request_id: String,
        identifier: String,
        input: Map<String, Value>,
        r: Responder,
    ) -> Self {
        Command {
            request_id,
            identifier,
            input,
            responder: r,
        }
    }

    /// Whether the reply topic fits the platform's 128 bytes (a reply
    /// would fail with [`Error::Limit`] before sending).
    pub fn can_reply(&self) -> bool {
        self.responder.check_topic().is_ok()
    }

    /// Answer with `ret_code` (0: done) and the output parameters (a JSON
    /// object, or null for none). A reply topic over 128 bytes fails with
    /// [`Error::Limit`] and nothing is sent.
    pub fn reply(mut self, ret_code: i64, output: &Value) -> Result<(), Error> {
        let out = match output {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => {
                let e = Error::InvalidArgument(format!(
                    "command output must be a JSON object, not {}",
                    super::kind(other)
                ));
                // Still owed: the drop answers UNANSWERED.
                return Err(e);
            }
        };
        self.responder.send(ret_code, Some(&out))
    }
}
