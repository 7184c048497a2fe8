//! File upload (protocol sections 7.6 and 11): the file's MD5 first (read
//! in 64 KiB pieces), then `POST {file_url}/api/v1/url` with
//! `{"ProductSN","DeviceSN","FileName","FileSize","MD5","Content-Type"}`
//! signed like the HTTP uplink (hex HMAC-SHA256 with the device secret)
//! for a pre-signed URL and its `Authorization`, then a `PUT` of the file
//! there, streamed from disk (never held in memory), with `Content-MD5`
//! (hex, as the platform's SDK sends it). An empty file is refused before
//! anything is sent (the platform refuses it too).
//!
//! Owns: the two requests and their errors. Must not touch: MQTT, the
//! config file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::{json, Value};

use super::http::sign;
use super::service::ret_code;
use super::Identity;
use crate::config::{Config, Secret, SecretSource};
use crate::error::Error;

/// Largest reply read.
const MAX_REPLY: u64 = 64 * 1024;

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Where the file is now.
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its MD5, lowercase hex.
    pub md5: String,
}

/// Uploads files as one device.
pub struct FileUpload {
    base: String,
    identity: Identity,
    secret: Secret,
    agent: ureq::Agent,
}

impl std::fmt::Debug for FileUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileUpload")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The Content-Type of a file name, by its extension.
fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "csv" => "text/plain",
        "json" => "application/json",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gz" => "application/gzip",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Input { context, source }
}

impl FileUpload {
    /// Against `base` (e.g. `https://file-cn-sh2.iot.ucloud.cn`); `timeout`
    /// for the URL request and for each stall of the upload.
    pub fn new(base: &str, identity: Identity, secret: Secret, timeout: Duration) -> FileUpload {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .user_agent(concat!("uiot/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        FileUpload {
            base: base.trim_end_matches('/').to_string(),
            identity,
            secret,
            agent,
        }
    }

    /// From a configuration: `[connection] file_url`, the device and its
    /// device secret (`device_secret`, or the one in `secret_file`).
    pub fn from_config(config: &Config) -> Result<FileUpload, Error> {
        let secret = match &config.device.secret {
            SecretSource::DeviceSecret(s) => s.clone(),
            SecretSource::ProductSecret { secret_file, .. } => {
                crate::config::read_secret_file(secret_file, &config.path)?
            }
        };
        let id = Identity::new(&config.device.product_sn, &config.device.device_sn);
        Ok(FileUpload::new(
            &config.connection.file_url,
            id,
            secret,
            config.connection.connect_timeout,
        ))
    }

    /// Uploads the file at `path` as `name` (default: the file's name).
    pub fn upload(&self, path: &Path, name: Option<&str>) -> Result<Uploaded, Error> {
        let shown = path.display().to_string();
        let mut file = File::open(path).map_err(io(format!("opening {shown}")))?;
        let meta = file.metadata().map_err(io(format!("reading {shown}")))?;
        if !meta.is_file() {
            return Err(Error::InvalidArgument(format!(
                "{shown} is not a regular file"
            )));
        }
        if meta.len() == 0 {
            return Err(Error::InvalidArgument(format!(
                "{shown} is empty; the platform stores no empty files"
            )));
        }
        let name = match name {
            Some(n) => n.to_string(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if name.is_empty() || name.contains('/') {
            return Err(Error::InvalidArgument(format!(
                "file name {:?}: give a name without '/' (--name)",
                crate::cut(&name)
            )));
        }
        let mut md5 = Md5::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size: u64 = 0;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(io(format!("reading {shown}")))?;
            if n == 0 {
                break;
            }
            md5.update(buf.get(..n).unwrap_or_default());
            size = size.saturating_add(n as u64);
        }
        let md5: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let ctype = content_type(&name);
        let body = json!({
            "ProductSN": self.identity.product_sn,
            "DeviceSN": self.identity.device_sn,
            "FileName": name,
            "FileSize": size,
            "MD5": md5,
            "Content-Type": ctype,
        })
        .to_string();
        let url = format!("{}/api/v1/url", self.base);
        let signature = sign(self.secret.expose(), body.as_bytes());
        let resp = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Authorization", &signature)
            .send(body.as_bytes())
            .map_err(|e| Error::Unreachable(format!("{}: {e}", crate::cut(&url))))?;
        let reply = json_of(resp, &url)?;
        match ret_code(&reply) {
            Ok(0) => {}
            Ok(code) => {
                return Err(super::service::refused(
                    "file upload URL request",
                    code,
                    &reply,
                ))
            }
            Err(why) => {
                return Err(Error::ProtocolViolation(format!(
                    "answered the file upload URL request with {why}"
                )))
            }
        }
        let (Some(Value::String(put_url)), Some(Value::String(auth))) =
            (reply.get("URL"), reply.get("Authorization"))
        else {
            return Err(Error::ProtocolViolation(
                "answered the file upload URL request without URL and Authorization".into(),
            ));
        };
        file.seek(SeekFrom::Start(0))
            .map_err(io(format!("reading {shown}")))?;
        let resp = self
            .agent
            .put(put_url)
            .header("Authorization", auth)
            .header("Content-Type", ctype)
            .header("Content-MD5", &md5)
            .send(&file)
            .map_err(|e| {
                Error::Unreachable(format!("uploading to {}: {e}", crate::cut(put_url)))
            })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let reply = json_of(resp, put_url).unwrap_or_default();
            let code = ret_code(&reply).unwrap_or(i64::from(status));
            let why = reply
                .get("ErrMsg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Err(Error::Platform {
                request: "file upload".into(),
                code,
                detail: format!(
                    "the file store answered HTTP {status}: {}",
                    crate::cut(&why)
                ),
            });
        }
        Ok(Uploaded {
            url: put_url.clone(),
            size,
            md5,
        })
    }
}

fn json_of(
    mut resp: ureq::http::Response<ureq::Body>,
    url: &str,
) -> Result<serde_json::Map<String, Value>, Error> {
    let mut text = String::new();
    resp.body_mut()
        .as_reader()
        .take(MAX_REPLY)
        .read_to_string(&mut text)
        .map_err(|e| Error::Unreachable(format!("{}: reading the answer: {e}", crate::cut(url))))?;
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::ProtocolViolation(format!(
            "answered {} with no JSON object: {}",
            crate::cut(url),
            crate::cut(text.trim())
        ))),
    }
}
