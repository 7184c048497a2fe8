//! Entry points for the fuzz target `platform` (fuzz/fuzz_targets/platform.rs):
//! one downstream cloud message, as (message type, payload bytes), fed to
//! the parsing code the services run on it, with no connection.
//!
//! Owns: the selector table ([`TYPES`]), the detached runs of the shadow
//! dispatcher, the thing model's parse step and its reply post-processing,
//! and the registration reply check, and the [`Outcome`] they report.
//! Must not touch: the services' parsing itself (it calls it, never copies
//! it), sockets, files. Nothing here may panic, whatever the bytes.
//!
//! Not a stable API: hidden from the documentation, for the fuzz crate.

use serde_json::{Map, Value};

use super::service::Pending;
use super::shadow::{self, Waiting};
use super::thing::{self, Downstream, REPLIES};
use super::{dynreg, Identity};
use crate::client::{Message, QoS};

/// The message types, by selector: the first byte of a fuzz input, modulo
/// the table's length, picks the system topic (under
/// `/$system/PSN/DSN/`) the rest of the input arrives on.
pub const TYPES: [&str; 12] = [
    "shadow/get_reply",
    "shadow/downstream",
    "tmodel/property/post_reply",
    "tmodel/property/restore_reply",
    "tmodel/property/desired/get_reply",
    "tmodel/property/desired/delete_reply",
    "tmodel/event/post_reply",
    "tmodel/template/get_reply",
    "tmodel/property/set",
    "tmodel/command",
    "tmodel/service/unknown",
    "password_reply",
];

/// The version an update waiting in a shadow run expects (selector / 12
/// modulo 3 == 2), and the RequestID every thing model and registration
/// request waits with.
pub const WAITING_VERSION: u32 = 1;
/// See [`WAITING_VERSION`].
pub const WAITING_ID: &str = "1";

/// The ProductSN and DeviceSN of the device the messages are for.
pub const PRODUCT_SN: &str = "fuzzproduct00001";
/// See [`PRODUCT_SN`].
pub const DEVICE_SN: &str = "fuzzdevice0001";

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Dropped (with a warning naming the topic).
    Dropped,
    /// Completed the waiting request; what the request returns, in short.
    Answered(String),
    /// Handed to the application (desired values, a property set, a
    /// command).
    HandedOver,
    /// Taken without answering anything (a shadow version kept).
    Kept,
}

/// One fuzz input: `data[0]` picks the type ([`TYPES`]) and, for the
/// shadow, which request waits (`data[0] / 12 % 3`: none, a get, an update
/// producing [`WAITING_VERSION`]); the rest is the payload. Empty input is
/// [`Outcome::Dropped`].
pub fn message(data: &[u8]) -> Outcome {
    let Some((selector, payload)) = data.split_first() else {
        return Outcome::Dropped;
    };
    let n = TYPES.len();
    let index = usize::from(*selector) % n;
    let waiting = match usize::from(*selector) / n % 3 {
        0 => Waiting::Nothing,
        1 => Waiting::Get,
        _ => Waiting::Change(WAITING_VERSION),
    };
    let Some(suffix) = TYPES.get(index) else {
        return Outcome::Dropped;
    };
    let topic = identity().system_topic(suffix);
    if suffix.starts_with("shadow/") {
        shadow_message(&topic, waiting, payload)
    } else if suffix.starts_with("tmodel/") {
        thing_message(&topic, payload)
    } else {
        registration(&topic, payload)
    }
}

fn identity() -> Identity {
    Identity::new(PRODUCT_SN, DEVICE_SN)
}

fn msg(topic: &str, payload: &[u8]) -> Message {
    Message {
        topic: topic.to_string(),
        payload: payload.to_vec(),
        qos: QoS::AtLeastOnce,
        dup: false,
    }
}

/// The shadow dispatcher on `payload` arriving on `topic`, with `waiting`.
fn shadow_message(topic: &str, waiting: Waiting, payload: &[u8]) -> Outcome {
    let seen = shadow::handle_detached(&identity().system_topic(""), waiting, &msg(topic, payload));
    match seen {
        shadow::Seen {
            answer: Some(a), ..
        } => Outcome::Answered(a),
        shadow::Seen { desired, .. } if desired > 0 => Outcome::HandedOver,
        shadow::Seen {
            version: Some(_), ..
        } => Outcome::Kept,
        _ => Outcome::Dropped,
    }
}

/// The thing model's parse step on `payload` arriving on `topic`; a reply
/// completes a request waiting with [`WAITING_ID`] and goes through what
/// the request does with it.
fn thing_message(topic: &str, payload: &[u8]) -> Outcome {
    let pending: Pending<(&'static str, String), Map<String, Value>> = Pending::new();
    let receivers: Vec<_> = REPLIES
        .iter()
        .map(|r| (*r, pending.insert((r, WAITING_ID.to_string()))))
        .collect();
    match thing::downstream(&identity().system_topic("tmodel/"), &msg(topic, payload)) {
        None => Outcome::Dropped,
        Some(Downstream::PropertySet { .. } | Downstream::Command { .. }) => Outcome::HandedOver,
        Some(Downstream::Reply { reply, id, body }) => {
            if !pending.complete(&(reply, id), body) {
                return Outcome::Dropped;
            }
            let got = receivers
                .iter()
                .find(|(r, _)| *r == reply)
                .and_then(|(_, rx)| rx.try_recv().ok());
            match got {
                Some(m) => Outcome::Answered(thing_reply(reply, m)),
                None => Outcome::Dropped,
            }
        }
    }
}

/// What the request waiting for `reply` makes of its body.
fn thing_reply(reply: &str, m: Map<String, Value>) -> String {
    let m = match thing::reply_result(reply, m) {
        Ok(m) => m,
        Err(e) => return e.to_string(),
    };
    match reply {
        "property/restore_reply" => {
            format!("{} values", thing::unwrap_values(m.get("Property")).len())
        }
        "property/desired/get_reply" => {
            let values = thing::desired_values_of(thing::desired_of(&m));
            format!("{} desired values", values.len())
        }
        "template/get_reply" => {
            format!("template {}", super::service::kind(&thing::template_of(&m)))
        }
        _ => "done".to_string(),
    }
}

/// The registration reply check on `payload` arriving on `topic`, for the
/// request [`WAITING_ID`].
fn registration(topic: &str, payload: &[u8]) -> Outcome {
    let reply_topic = identity().system_topic("password_reply");
    match dynreg::password_reply(&msg(topic, payload), &reply_topic, WAITING_ID) {
        None => Outcome::Dropped,
        Some(Ok(secret)) => {
            Outcome::Answered(format!("a secret of {} bytes", secret.expose().len()))
        }
        Some(Err(e)) => Outcome::Answered(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_reply_the_thing_model_waits_for() {
        for r in REPLIES {
            assert!(TYPES.contains(&format!("tmodel/{r}").as_str()), "{r}");
        }
    }

    #[test]
    fn valid_messages_reach_their_request() {
        let answered = |data: &[u8]| matches!(message(data), Outcome::Answered(_));
        let get = br#"{"State":{"Reported":{"a":1}},"Version":3}"#;
        assert!(answered(&[&[12u8][..], get].concat()));
        let reply = br#"{"Method":"reply","Payload":{"RetCode":0},"Version":1}"#;
        assert!(answered(&[&[25u8][..], reply].concat()));
        // Nobody waits: not answered, but the version is kept.
        assert_eq!(message(&[&[1u8][..], reply].concat()), Outcome::Kept);
        let post = br#"{"RequestID":"1","RetCode":0}"#;
        assert_eq!(
            message(&[&[2u8][..], post].concat()),
            Outcome::Answered("done".into())
        );
        let set = br#"{"RequestID":"9","Property":{"p":1}}"#;
        assert_eq!(message(&[&[8u8][..], set].concat()), Outcome::HandedOver);
        let reg = br#"{"RequestID":"1","RetCode":"0","Password":"issuedsecret0001"}"#;
        assert!(answered(&[&[11u8][..], reg].concat()));
        assert_eq!(message(&[11u8, 0xff, 0xfe]), Outcome::Dropped);
        assert_eq!(message(&[]), Outcome::Dropped);
    }
}
