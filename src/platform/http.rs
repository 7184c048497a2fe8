//! HTTP uplink (protocol sections 7.4 and 11): publishing over HTTPS for a
//! device that cannot keep an MQTT connection. `POST {http_url}/auth` with
//! `{"ProductSN","DeviceSN","Timestamp"}` and `Authorization` = lowercase
//! hex HMAC-SHA256(device secret, body) buys a token (valid 7 days), kept
//! until 6 days have passed or the platform says it is invalid or expired
//! (100073, 100074: one new token, one retry); then `POST
//! {http_url}/topic/PSN/DSN/...` with the token in `Password` and the
//! payload (at most 128 KB) as the body. With a token file
//! ([`HttpUplink::with_token_file`]; `[connection] http_token_file` for
//! [`HttpUplink::from_config`]) the token also outlives the process: read
//! when none is in memory, written after each new one (`token_file`).
//!
//! Owns: the two requests, signing, the token, when it is renewed, their
//! errors.
//! Must not touch: MQTT (this is a transport of its own), the config file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::service::ret_code;
use super::Identity;
use crate::config::{Config, Secret, SecretSource};
use crate::error::Error;

mod token_file;

use token_file::TokenFile;
pub use token_file::MAX_TOKEN_FILE;

/// Largest body of an HTTP publish.
pub const MAX_HTTP_PAYLOAD: usize = 128 * 1024;
/// How long a token is used before a new one is fetched (the platform's
/// last 7 days).
pub const TOKEN_REUSE: Duration = Duration::from_secs(6 * 24 * 3600);
/// Largest reply read.
const MAX_REPLY: u64 = 64 * 1024;
/// Token invalid, token expired: fetch a new one and try once more.
const TOKEN_INVALID: i64 = 100073;
const TOKEN_EXPIRED: i64 = 100074;

/// The lowercase hex HMAC-SHA256 of `body` keyed with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Publishes over HTTP(S) as one device.
pub struct HttpUplink {
    base: String,
    identity: Identity,
    secret: Secret,
    agent: ureq::Agent,
    /// The token and until when it is used.
    token: Mutex<Option<(String, Instant)>>,
    token_file: Option<TokenFile>,
}

impl std::fmt::Debug for HttpUplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUplink")
            .field("base", &self.base)
            .field("identity", &self.identity)
            .field("token_file", &self.token_file.as_ref().map(TokenFile::path))
            .finish_non_exhaustive()
    }
}

impl HttpUplink {
    /// For `identity` with its device secret, against `base` (e.g.
    /// `https://http-cn-sh2.iot.ucloud.cn`); `timeout` for each request.
    pub fn new(base: &str, identity: Identity, secret: Secret, timeout: Duration) -> HttpUplink {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("uiot/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpUplink {
            base: base.trim_end_matches('/').to_string(),
            identity,
            secret,
            agent,
            token: Mutex::new(None),
            token_file: None,
        }
    }

    /// Keeps the token in the file at `path` between runs as well: read
    /// when no token is in memory (used while younger than
    /// [`TOKEN_REUSE`] and issued to this device, secret and base URL;
    /// anything else there is ignored), rewritten after each new token
    /// (mode 0600, atomically; the directory is created, 0700, if
    /// missing). A file that cannot be written is a warning, never a
    /// failed publish. It holds the token, never the secret.
    pub fn with_token_file(mut self, path: impl Into<PathBuf>) -> HttpUplink {
        self.token_file = Some(TokenFile::new(
            path.into(),
            &self.base,
            &self.identity,
            &self.secret,
        ));
        self
    }

    /// The token file, if any ([`HttpUplink::with_token_file`]).
    pub fn token_file(&self) -> Option<&Path> {
        self.token_file.as_ref().map(TokenFile::path)
    }

    /// From a configuration: `[connection] http_url`, the device, its
    /// secret (`device_secret`, or the one in `secret_file`: the platform
    /// authenticates HTTP with the device secret only), and the token file
    /// (`[connection] http_token_file`, by default `http.token` beside the
    /// device secret: see
    /// [`ConnectionConfig::http_token_path`](crate::config::ConnectionConfig::http_token_path)).
    pub fn from_config(config: &Config) -> Result<HttpUplink, Error> {
        let secret = match &config.device.secret {
            SecretSource::DeviceSecret(s) => s.clone(),
            SecretSource::ProductSecret { secret_file, .. } => {
                crate::config::read_secret_file(secret_file, &config.path)?
            }
        };
        let id = Identity::new(&config.device.product_sn, &config.device.device_sn);
        let token_file = config
            .connection
            .http_token_path(&config.device, &config.path);
        Ok(HttpUplink::new(
            &config.connection.http_url,
            id,
            secret,
            config.connection.connect_timeout,
        )
        .with_token_file(token_file))
    }

    /// Publishes `payload` to `topic` (relative to `/PSN/DSN/` unless it
    /// starts with `/`; the device's own topics only) and returns the
    /// platform's MessageID.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<String, Error> {
        let topic = self.identity.resolve(topic);
        self.identity.check_publish(&topic)?;
        if payload.len() > MAX_HTTP_PAYLOAD {
            return Err(Error::Limit(format!(
                "an HTTP publish carries at most {MAX_HTTP_PAYLOAD} bytes, not {}",
                payload.len()
            )));
        }
        let mut fresh = false;
        loop {
            let token = self.token(fresh)?;
            let url = format!("{}/topic/{}", self.base, topic.trim_start_matches('/'));
            let reply = self.post(
                &url,
                payload,
                &[("Password", &token)],
                "application/octet-stream",
            )?;
            match ret_code(&reply) {
                Ok(0) => {
                    return Ok(match reply.get("MessageID") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    })
                }
                Ok(code @ (TOKEN_INVALID | TOKEN_EXPIRED)) if !fresh => {
                    log::info!("HTTP token refused ({code}); fetching a new one");
                    fresh = true;
                }
                Ok(code) => return Err(super::service::refused("HTTP publish", code, &reply)),
                Err(why) => {
                    return Err(Error::ProtocolViolation(format!(
                        "answered the HTTP publish with {why}"
                    )))
                }
            }
        }
    }

    /// The token: unless `fresh`, the one in memory while younger than
    /// [`TOKEN_REUSE`], else (none in memory) the token file's; otherwise
    /// a new one, kept in memory and in the token file.
    fn token(&self, fresh: bool) -> Result<String, Error> {
        let mut t = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !fresh {
            match (t.as_ref(), &self.token_file) {
                (Some((tok, until)), _) if Instant::now() < *until => return Ok(tok.clone()),
                (None, Some(file)) => {
                    let kept = file.load(token_file::now_secs()).and_then(|(tok, left)| {
                        Instant::now().checked_add(left).map(|until| (tok, until))
                    });
                    if let Some((tok, until)) = kept {
                        *t = Some((tok.clone(), until));
                        return Ok(tok);
                    }
                }
                _ => {}
            }
        }
        let obtained = token_file::now_secs();
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let body = json!({
            "ProductSN": self.identity.product_sn,
            "DeviceSN": self.identity.device_sn,
            "Timestamp": ms.to_string(),
        })
        .to_string();
        let signature = sign(self.secret.expose(), body.as_bytes());
        let url = format!("{}/auth", self.base);
        let reply = self.post(
            &url,
            body.as_bytes(),
            &[("Authorization", &signature)],
            "application/json",
        )?;
        match (ret_code(&reply), reply.get("Token")) {
            (Ok(0), Some(Value::String(tok))) if !tok.is_empty() => {
                // Past the clock's end: used for this request only.
                *t = Instant::now()
                    .checked_add(TOKEN_REUSE)
                    .map(|until| (tok.clone(), until));
                if let Some(file) = &self.token_file {
                    match file.store(tok, obtained) {
                        Ok(()) => log::debug!("HTTP token kept in {}", file.path().display()),
                        Err(e) => log::warn!("{e}"),
                    }
                }
                Ok(tok.clone())
            }
            (Ok(0), _) => Err(Error::ProtocolViolation(
                "answered the HTTP authentication without a Token".into(),
            )),
            (Ok(code), _) => Err(super::service::refused("HTTP authentication", code, &reply)),
            (Err(why), _) => Err(Error::ProtocolViolation(format!(
                "answered the HTTP authentication with {why}"
            ))),
        }
    }

    /// One POST; the reply's JSON object (whatever the HTTP status, since
    /// the platform's errors come as a RetCode).
    fn post(
        &self,
        url: &str,
        body: &[u8],
        headers: &[(&str, &str)],
        content_type: &str,
    ) -> Result<Map<String, Value>, Error> {
        let mut req = self.agent.post(url).header("Content-Type", content_type);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.send(body).map_err(|e| match e {
            ureq::Error::Timeout(_) => {
                Error::Timeout(format!("no answer from {} in time", crate::cut(url)))
            }
            other => Error::Unreachable(format!("{}: {other}", crate::cut(url))),
        })?;
        let status = resp.status().as_u16();
        let mut text = String::new();
        resp.body_mut()
            .as_reader()
            .take(MAX_REPLY)
            .read_to_string(&mut text)
            .map_err(|e| {
                Error::Unreachable(format!("{}: reading the answer: {e}", crate::cut(url)))
            })?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(Error::ProtocolViolation(format!(
                "answered {} with HTTP {status} and no JSON object: {}",
                crate::cut(url),
                crate::cut(text.trim())
            ))),
        }
    }
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
}
