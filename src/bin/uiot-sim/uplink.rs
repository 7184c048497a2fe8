//! The HTTP uplink as UIoT Core answers it (protocol sections 7.4 and 11):
//! `POST /auth` checks the device's HMAC-SHA256 signature over the exact
//! body and issues an opaque token; `POST /topic/TOPIC` with the token in
//! `Password` publishes the body (at most 128 KB) to the broker at QoS 1
//! on one of the device's own topics. Errors are RetCodes in a JSON reply
//! (HTTP 200, as the platform does): 230 malformed, 100071 unknown device,
//! 171 bad signature, 100070 Timestamp off by more than an hour, 100073
//! unknown token, 100074 expired token (`expire-tokens`), 100075 not the
//! device's topic, 100076 body too long, 100077 the broker refused.
//!
//! Owns: signatures, the issued tokens, which topics a device may publish
//! over HTTP, the `http-auth` and `http-publish` lines. Must not touch:
//! the secrets (`Cloud::secret` knows them), MQTT beyond the one publish.

use std::collections::{HashMap, VecDeque};

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use tiny_http::Request;
use uiot::QoS;

use crate::cloud::{emit, lock};
use crate::http::{self, reply, BodyError, Ctx};
use crate::state::{now_ms, Dev};

pub const OK: i64 = 0;
pub const SIGNATURE: i64 = 171;
pub const PARAMETER: i64 = 230;
const TIMESTAMP: i64 = 100070;
pub const NO_DEVICE: i64 = 100071;
const BAD_TOKEN: i64 = 100073;
const TOKEN_EXPIRED: i64 = 100074;
const ACL: i64 = 100075;
const TOO_LONG: i64 = 100076;
const PUBLISH_FAILED: i64 = 100077;

/// Largest HTTP publish body (the platform's 128 KB).
pub const MAX_PUBLISH: usize = 128 * 1024;
/// How far a Timestamp may be from the sim's clock, in ms.
const TIMESTAMP_SLACK_MS: i64 = 3600 * 1000;
/// Tokens kept; the oldest are forgotten past this (then answer 100073).
const MAX_TOKENS: usize = 10_000;
/// Characters of the payload quoted in an `http-publish` line.
const PAYLOAD_QUOTE: usize = 200;

/// System topics (after `/$system/PSN/DSN/`) a device may publish to.
const SYSTEM_PUBLISH: &[&str] = &[
    "shadow/get",
    "shadow/upstream",
    "tmodel/property/post",
    "tmodel/property/set_reply",
    "tmodel/property/restore",
    "tmodel/property/desired/get",
    "tmodel/property/desired/delete",
    "tmodel/event/post",
    "tmodel/template/get",
    "ota/upstream",
];

/// The tokens issued, each with its device and whether `expire-tokens`
/// has expired it.
#[derive(Default)]
pub struct Tokens {
    by_token: HashMap<String, (Dev, bool)>,
    order: VecDeque<String>,
}

impl Tokens {
    fn issue(&mut self, token: String, dev: Dev) {
        if self.order.len() >= MAX_TOKENS {
            if let Some(old) = self.order.pop_front() {
                self.by_token.remove(&old);
            }
        }
        self.order.push_back(token.clone());
        self.by_token.insert(token, (dev, false));
    }

    /// Expire every token issued so far; returns how many there are.
    pub fn expire_all(&mut self) -> usize {
        for t in self.by_token.values_mut() {
            t.1 = true;
        }
        self.by_token.len()
    }
}

/// Lowercase hex HMAC-SHA256 of `body` keyed with `secret`. The sim's own,
/// not `uiot::platform::http::sign`: the cloud side checks the client's
/// signature independently (both are tested against the protocol's
/// reference vector), so a bug in one is not mirrored by the other.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    http::hex(&mac.finalize().into_bytes())
}

/// A RetCode reply with a Message.
pub fn refuse(rq: Request, code: i64, why: &str) {
    reply(rq, 200, &json!({"RetCode": code, "Message": why}));
}

/// A signed JSON request (`/auth`, `/api/v1/url`): its body object and
/// device once the body parses, names a device the sim knows and carries
/// its signature; otherwise the RetCode and Message to refuse it with.
pub fn signed(ctx: &Ctx, rq: &mut Request) -> Result<(Map<String, Value>, Dev), (i64, String)> {
    let body = match http::body(rq, http::MAX_JSON_BODY) {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Err((
                PARAMETER,
                format!("the body is longer than {} bytes", http::MAX_JSON_BODY),
            ))
        }
        Err(BodyError::Io(e)) => return Err((PARAMETER, format!("reading the body: {e}"))),
    };
    let m = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err((PARAMETER, "the body is not a JSON object".into())),
        Err(e) => return Err((PARAMETER, format!("the body is not JSON ({e})"))),
    };
    let text = |k: &str| match m.get(k) {
        Some(Value::String(s)) if !s.is_empty() && !s.contains('/') => Ok(s.clone()),
        _ => Err((PARAMETER, format!("{k} is missing or not a name"))),
    };
    let dev = Dev::new(&text("ProductSN")?, &text("DeviceSN")?);
    let Some(secret) = lock(&ctx.cloud).secret(&dev) else {
        return Err((
            NO_DEVICE,
            format!(
                "device {} is unknown to the sim (uiot-sim --device PSN:DSN:SECRET or the \
                 stdin command secret PSN DSN SECRET)",
                dev.key()
            ),
        ));
    };
    if http::header(rq, "Authorization") != Some(sign(&secret, &body).as_str()) {
        return Err((
            SIGNATURE,
            "Authorization is not the lowercase hex HMAC-SHA256 of the body with the device \
             secret"
                .into(),
        ));
    }
    Ok((m, dev))
}

/// `POST /auth`.
pub fn auth(ctx: &Ctx, mut rq: Request) {
    let (m, dev) = match signed(ctx, &mut rq) {
        Ok(x) => x,
        Err((code, why)) => return refuse(rq, code, &why),
    };
    if let Some(t) = m.get("Timestamp") {
        let ms = match t {
            Value::String(s) => s.parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        let Some(mut ms) = ms else {
            return refuse(rq, PARAMETER, "Timestamp is not an integer (ms or s)");
        };
        // Seconds, not ms, until the year 5138.
        if ms < 100_000_000_000 {
            ms = ms.saturating_mul(1000);
        }
        if now_ms().saturating_sub(ms).saturating_abs() > TIMESTAMP_SLACK_MS {
            return refuse(rq, TIMESTAMP, "Timestamp is more than 3600 s off");
        }
    }
    let token = match http::random_hex(24) {
        Ok(t) => format!("sim.{t}"),
        Err(why) => return refuse(rq, 130, &why),
    };
    lock(&ctx.web.tokens).issue(token.clone(), dev.clone());
    emit(&json!({"sim": "http-auth", "psn": dev.psn, "dsn": dev.dsn}));
    reply(
        rq,
        200,
        &json!({"RetCode": OK, "Message": "Success", "Token": token}),
    );
}

/// `POST /topic/TOPIC` (`path` without the query).
pub fn publish(ctx: &Ctx, mut rq: Request, path: &str, query: &str) {
    let token = http::header(&rq, "Password")
        .unwrap_or_default()
        .to_string();
    let dev = match lock(&ctx.web.tokens).by_token.get(&token) {
        None => None,
        Some((_, true)) => {
            return refuse(
                rq,
                TOKEN_EXPIRED,
                "the token expired: ask /auth for a new one",
            )
        }
        Some((dev, false)) => Some(dev.clone()),
    };
    let Some(dev) = dev else {
        return refuse(rq, BAD_TOKEN, "no such token (Password): ask /auth for one");
    };
    let raw = path.strip_prefix("/topic").unwrap_or(path);
    let Some(topic) = http::unescape(raw) else {
        return refuse(rq, PARAMETER, "the topic has a bad %-escape");
    };
    // The SDK sends the topic without its leading '/': accept both.
    let topic = if topic.starts_with("//") {
        topic.get(1..).unwrap_or_default().to_string()
    } else {
        topic
    };
    if !query.is_empty() {
        return refuse(rq, PARAMETER, "an HTTP publish takes no query string");
    }
    if topic.contains(['+', '#']) || topic.split('/').skip(1).any(str::is_empty) {
        return refuse(
            rq,
            PARAMETER,
            "not a topic name (empty level or a wildcard)",
        );
    }
    if !may_publish(&dev, &topic) {
        return refuse(
            rq,
            ACL,
            &format!(
                "device {} may not publish to {} (its own /PSN/DSN/... topics and the system \
                 topics it publishes only)",
                dev.key(),
                uiot::cut(&topic)
            ),
        );
    }
    let body = match http::body(&mut rq, MAX_PUBLISH) {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return refuse(
                rq,
                TOO_LONG,
                &format!("the body is longer than {MAX_PUBLISH} bytes"),
            )
        }
        Err(BodyError::Io(e)) => return refuse(rq, PARAMETER, &format!("reading the body: {e}")),
    };
    if let Err(e) = ctx.client.publish(&topic, &body, QoS::AtLeastOnce) {
        emit(
            &json!({"sim": "error", "http": "publish", "topic": uiot::cut(&topic), "error": e.to_string()}),
        );
        return refuse(rq, PUBLISH_FAILED, &format!("the broker refused: {e}"));
    }
    let id = ctx.web.id().to_string();
    let text = String::from_utf8_lossy(&body);
    let quoted: String = text.chars().take(PAYLOAD_QUOTE).collect();
    emit(&json!({
        "sim": "http-publish", "psn": dev.psn, "dsn": dev.dsn, "topic": topic,
        "bytes": body.len(), "payload": quoted,
    }));
    reply(
        rq,
        200,
        &json!({"RetCode": OK, "Message": "Success", "MessageID": id}),
    );
}

/// Whether `topic` (with its leading '/') is one the device may publish to.
fn may_publish(dev: &Dev, topic: &str) -> bool {
    let custom = format!("/{}/{}/", dev.psn, dev.dsn);
    if let Some(rest) = topic.strip_prefix(&custom) {
        return !rest.is_empty();
    }
    let Some(rest) = topic.strip_prefix(&format!("/$system/{}/{}/", dev.psn, dev.dsn)) else {
        return false;
    };
    SYSTEM_PUBLISH.contains(&rest)
        || rest
            .strip_prefix("tmodel/command_reply/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_protocol_reference_vector() {
        assert_eq!(
            sign(
                "hly3dk1u5y8fq0b9",
                br#"{"ProductSN":"70ly1tvowt696r15","DeviceSN":"aruidyl0rt9tuvod"}"#
            ),
            "22e08aad276b1c00b90c3a759fcd68f2cc71eeb3fcb78b5b5512cbc0e30e3515"
        );
    }

    #[test]
    fn a_device_publishes_to_its_own_topics_only() {
        let d = Dev::new("p", "d");
        assert!(may_publish(&d, "/p/d/upload"));
        assert!(may_publish(&d, "/p/d/a/b"));
        assert!(may_publish(&d, "/$system/p/d/shadow/upstream"));
        assert!(may_publish(&d, "/$system/p/d/tmodel/command_reply/7"));
        assert!(!may_publish(&d, "/p/d/"));
        assert!(!may_publish(&d, "/p/e/upload"));
        assert!(!may_publish(&d, "/$system/p/d/shadow/downstream"));
        assert!(!may_publish(&d, "/$system/p/d/password"));
        assert!(!may_publish(&d, "/p/$broadcast/x"));
    }

    #[test]
    fn expired_tokens_stay_known_and_new_ones_are_fresh() {
        let mut t = Tokens::default();
        t.issue("a".into(), Dev::new("p", "d"));
        assert_eq!(t.expire_all(), 1);
        t.issue("b".into(), Dev::new("p", "d"));
        assert!(t.by_token.get("a").is_some_and(|x| x.1));
        assert!(t.by_token.get("b").is_some_and(|x| !x.1));
    }
}
