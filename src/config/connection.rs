//! `[connection]`: where and how to connect to the broker.
//!
//! Owns: [`ConnectionConfig`], the region table, host/port/protocol rules,
//! the load-time check of `ca_file` (a regular file of at most
//! [`MAX_CA_FILE`] bytes holding a PEM certificate), and where the HTTP
//! uplink's token file is by default.
//! Must not touch: the defaults and ranges of the options it fills (they
//! belong to [`Options`]), building the TLS connector (`transport`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::device::DeviceConfig;
use super::effective::Writer;
use super::file::{self, FileError};
use super::reader::{Got, Key, Reader, Section};
use super::secret::SecretSource;
use crate::client::Options;
use crate::packet::Protocol;
use crate::transport::TlsOptions;

/// Largest `ca_file` accepted, in bytes (a CA certificate in PEM is a few KB).
pub const MAX_CA_FILE: u64 = 1024 * 1024;

/// What every PEM certificate contains.
const PEM_CERTIFICATE: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// `[connection]`: where and how to connect to the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Region id, e.g. `cn-sh2`.
    pub region: String,
    /// Broker host name: `host` if given, else the region's MQTT host.
    pub host: String,
    /// Broker port (default 8883 with TLS, 1883 without).
    pub port: u16,
    /// Whether to use TLS.
    pub tls: bool,
    /// CA certificate file (PEM); `None` means the built-in UIoT Core CA.
    pub ca_file: Option<PathBuf>,
    /// Whether the server certificate must name `host`.
    pub tls_verify_hostname: bool,
    /// MQTT keep-alive, whole seconds in [`Options::KEEP_ALIVE_RANGE`].
    pub keep_alive: Duration,
    /// MQTT clean-session flag.
    pub clean_session: bool,
    /// MQTT protocol version sent in CONNECT.
    pub protocol: Protocol,
    /// How long to wait for TCP, TLS and CONNACK together.
    pub connect_timeout: Duration,
    /// How long a graceful stop waits for QoS 1 acknowledgements.
    pub shutdown_timeout: Duration,
    /// Base URL of the HTTP uplink (`uiot pub --http`): default
    /// `https://http-REGION.iot.ucloud.cn`.
    pub http_url: String,
    /// Where the HTTP uplink keeps its token between runs; `None`: the
    /// default, see [`ConnectionConfig::http_token_path`].
    pub http_token_file: Option<PathBuf>,
    /// Base URL of file upload (`uiot upload`): default
    /// `https://file-REGION.iot.ucloud.cn`.
    pub file_url: String,
}

impl ConnectionConfig {
    /// The TLS part of [`Options`]: `None` when `tls` is off.
    pub fn tls_options(&self) -> Option<TlsOptions> {
        self.tls.then(|| TlsOptions {
            ca_file: self.ca_file.clone(),
            verify_hostname: self.tls_verify_hostname,
        })
    }

    /// The HTTP uplink's token file: `http_token_file`, else
    /// `http.token` beside the device secret: in the directory
    /// of `secret_file` with `product_secret`, else in that of the
    /// configuration file `config` (which holds `device_secret`).
    pub fn http_token_path(&self, device: &DeviceConfig, config: &Path) -> PathBuf {
        if let Some(p) = &self.http_token_file {
            return p.clone();
        }
        let beside = match &device.secret {
            SecretSource::ProductSecret { secret_file, .. } => secret_file.as_path(),
            SecretSource::DeviceSecret(_) => config,
        };
        match beside.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(DEFAULT_TOKEN_FILE),
            _ => PathBuf::from(DEFAULT_TOKEN_FILE),
        }
    }
}

/// The name of the HTTP uplink's token file when `http_token_file` is not
/// set (placed beside the device secret).
pub(crate) const DEFAULT_TOKEN_FILE: &str = "http.token";

/// `http://` or `https://` and a host; a trailing `/` is dropped.
fn parse_http_url(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .unwrap_or("");
    if rest.is_empty() || rest.starts_with('/') || v.contains(char::is_whitespace) {
        return Err(
            "must be http:// or https:// and a host (e.g. https://http-cn-sh2.iot.ucloud.cn); remove the line for the region's"
                .into(),
        );
    }
    Ok(v.trim_end_matches('/').to_string())
}

/// Regions of UIoT Core and their MQTT hosts.
const REGIONS: &[(&str, &str)] = &[
    ("cn-sh2", "mqtt-cn-sh2.iot.ucloud.cn"),
    ("cn-gd", "mqtt-cn-gd.iot.ucloud.cn"),
];
const DEFAULT_REGION: &str = "cn-sh2";
/// The broker's MQTT ports with and without TLS.
const TLS_PORT: u16 = 8883;
const PLAIN_PORT: u16 = 1883;

/// The MQTT host of a known region.
fn region_host(region: &str) -> Option<&'static str> {
    REGIONS
        .iter()
        .find(|(r, _)| *r == region)
        .map(|(_, host)| *host)
}

fn parse_region(v: &str) -> Result<String, String> {
    match region_host(v) {
        Some(_) => Ok(v.to_string()),
        None => Err(format!(
            "unknown region; known regions: {}; to use another broker set host (and port) instead",
            REGIONS
                .iter()
                .map(|(r, _)| *r)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn parse_host(v: &str) -> Result<String, String> {
    if v.parse::<std::net::IpAddr>().is_ok() {
        return Ok(v.to_string());
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if !v.is_empty() && v.len() <= 253 && v.chars().all(ok_char) {
        Ok(v.to_string())
    } else {
        Err(
            "must be a host name or IP address without scheme or port (put the port in `port`); \
             or remove the line to use the region's host"
                .to_string(),
        )
    }
}

fn parse_protocol(v: &str) -> Result<Protocol, String> {
    match v {
        "3.1.1" => Ok(Protocol::V311),
        "3.1" => Ok(Protocol::V31),
        _ => Err("must be 3.1.1 (the default, what UIoT Core expects) or 3.1".to_string()),
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::V311 => "3.1.1",
        Protocol::V31 => "3.1",
    }
}

const CA_FIX: &str = "give a readable PEM file with the broker's CA certificate, \
     or remove the line to use the built-in UIoT Core CA";

/// The cheap load-time check of a CA file: a regular file of at most
/// [`MAX_CA_FILE`] bytes that holds a PEM certificate. Whether OpenSSL
/// accepts it is checked by `Options::check` (`uiot check`).
fn check_ca_file(p: &Path) -> Result<(), String> {
    let (bytes, _) = file::read_bounded(p, MAX_CA_FILE).map_err(|e| match e {
        FileError::Io(e) => format!("cannot be read ({e}); {CA_FIX}"),
        e => format!("{e}; {CA_FIX}"),
    })?;
    if bytes
        .windows(PEM_CERTIFICATE.len())
        .any(|w| w == PEM_CERTIFICATE)
    {
        Ok(())
    } else {
        Err(format!(
            "not a PEM certificate (no \"-----BEGIN CERTIFICATE-----\" line; a DER file can be \
             converted with `openssl x509 -inform der -in FILE -out ca.pem`); {CA_FIX}"
        ))
    }
}

impl Section for ConnectionConfig {
    const NAME: &'static str = "connection";
    const KEYS: &'static [Key] = &[
        Key::plain("region"),
        Key::plain("host"),
        Key::plain("port"),
        Key::plain("tls"),
        Key::path("ca_file"),
        Key::plain("tls_verify_hostname"),
        Key::plain("keep_alive"),
        Key::plain("clean_session"),
        Key::plain("protocol"),
        Key::plain("connect_timeout"),
        Key::plain("shutdown_timeout"),
        Key::plain("http_url"),
        Key::path("http_token_file"),
        Key::plain("file_url"),
    ];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let region = r
            .value("region", parse_region)
            .or(DEFAULT_REGION.to_string());
        let host = r.value("host", parse_host);
        let tls = r.bool("tls", true);
        let default_port = if tls == Some(false) {
            PLAIN_PORT
        } else {
            TLS_PORT
        };
        let port = r.value("port", |v| match v.parse::<u16>() {
            Ok(p) if p >= 1 => Ok(p),
            _ => Err(format!(
                "must be 1..65535; remove the line for the default ({default_port} with tls = {})",
                tls.unwrap_or(true)
            )),
        });
        let ca_file = match r.path("ca_file", CA_FIX) {
            Got::Valid(p) => match check_ca_file(&p) {
                Ok(()) => Got::Valid(p),
                Err(fix) => {
                    let text = r.text("ca_file");
                    r.bad("ca_file", text, &fix);
                    Got::Invalid
                }
            },
            other => other,
        };
        let tls_verify_hostname = r.bool("tls_verify_hostname", true);
        let keep_alive = r.seconds(
            "keep_alive",
            Options::DEFAULT_KEEP_ALIVE,
            &Options::KEEP_ALIVE_RANGE,
            "(UIoT Core refuses others)",
        );
        let clean_session = r.bool("clean_session", true);
        let protocol = r.value("protocol", parse_protocol).or(Protocol::V311);
        let connect_timeout = r.seconds(
            "connect_timeout",
            Options::DEFAULT_CONNECT_TIMEOUT,
            &Options::CONNECT_TIMEOUT_RANGE,
            "",
        );
        let shutdown_timeout = r.seconds(
            "shutdown_timeout",
            Options::DEFAULT_SHUTDOWN_TIMEOUT,
            &Options::SHUTDOWN_TIMEOUT_RANGE,
            "",
        );

        let http_url = r.value("http_url", parse_http_url).optional();
        let http_token_file = r
            .path(
                "http_token_file",
                "give the file for the HTTP token, or remove the line for the default \
                 (http.token beside the device secret)",
            )
            .optional();
        let file_url = r.value("file_url", parse_http_url).optional();
        let region = region?;
        let host = match host {
            Got::Valid(h) => h,
            Got::Absent => region_host(&region)?.to_string(),
            Got::Invalid => return None,
        };
        Some(ConnectionConfig {
            host,
            port: port.or(default_port)?,
            tls: tls?,
            ca_file: ca_file.optional()?,
            tls_verify_hostname: tls_verify_hostname?,
            keep_alive: keep_alive?,
            clean_session: clean_session?,
            protocol: protocol?,
            connect_timeout: connect_timeout?,
            shutdown_timeout: shutdown_timeout?,
            http_url: http_url?.unwrap_or_else(|| format!("https://http-{region}.iot.ucloud.cn")),
            http_token_file: http_token_file?,
            file_url: file_url?.unwrap_or_else(|| format!("https://file-{region}.iot.ucloud.cn")),
            region,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("region", &self.region);
        w.key("host", &self.host);
        w.key("port", self.port);
        w.key("tls", self.tls);
        match &self.ca_file {
            Some(p) => w.key("ca_file", p.display()),
            None => w.unset("ca_file", "the built-in UIoT Core CA is used"),
        }
        w.key("tls_verify_hostname", self.tls_verify_hostname);
        w.key("keep_alive", self.keep_alive.as_secs());
        w.key("clean_session", self.clean_session);
        w.key("protocol", protocol_name(self.protocol));
        w.key("connect_timeout", self.connect_timeout.as_secs());
        w.key("shutdown_timeout", self.shutdown_timeout.as_secs());
        w.key("http_url", &self.http_url);
        match &self.http_token_file {
            Some(p) => w.key("http_token_file", p.display()),
            None => w.unset(
                "http_token_file",
                "http.token beside the device secret (secret_file's directory, else this file's)",
            ),
        }
        w.key("file_url", &self.file_url);
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
