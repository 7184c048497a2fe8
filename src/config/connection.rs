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
mod tests {
    use super::*;
    use crate::config::file::tests::TempDir;
    use crate::config::test_util::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn defaults_of_every_key() {
        let c = ok(&minimal());
        let k = &c.connection;
        assert_eq!(k.region, "cn-sh2");
        assert_eq!(k.host, "mqtt-cn-sh2.iot.ucloud.cn");
        assert_eq!(k.port, 8883);
        assert!(k.tls);
        assert_eq!(k.ca_file, None);
        assert!(k.tls_verify_hostname);
        assert_eq!(k.keep_alive, Duration::from_secs(300));
        assert!(k.clean_session);
        assert_eq!(k.protocol, Protocol::V311);
        assert_eq!(k.connect_timeout, Duration::from_secs(10));
        assert_eq!(k.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(k.tls_options(), Some(TlsOptions::default()));
    }

    #[test]
    fn every_key_can_be_set() {
        let d = TempDir::new("conn-every");
        let ca = d.file("ca.pem", PEM.as_bytes());
        let c = ok(&with_conn(&format!(
            "region = cn-gd\nhost = 127.0.0.1\nport = 1884\ntls = yes\nca_file = {}\n\
             tls_verify_hostname = off\nkeep_alive = 1200\nclean_session = 0\nprotocol = 3.1\n\
             connect_timeout = 300\nshutdown_timeout = 0",
            ca.display()
        )));
        let k = &c.connection;
        assert_eq!(k.region, "cn-gd");
        assert_eq!(k.host, "127.0.0.1");
        assert_eq!(k.port, 1884);
        assert!(k.tls);
        assert_eq!(k.ca_file.as_deref(), Some(ca.as_path()));
        assert!(!k.tls_verify_hostname);
        assert_eq!(k.keep_alive, Duration::from_secs(1200));
        assert!(!k.clean_session);
        assert_eq!(k.protocol, Protocol::V31);
        assert_eq!(k.connect_timeout, Duration::from_secs(300));
        assert_eq!(k.shutdown_timeout, Duration::ZERO);
        assert_eq!(
            k.tls_options(),
            Some(TlsOptions {
                ca_file: Some(ca.clone()),
                verify_hostname: false
            })
        );
        assert_eq!(ok(&with_conn("tls = off")).connection.tls_options(), None);
    }

    #[test]
    fn region_maps_to_host_and_host_overrides() {
        assert_eq!(
            ok(&with_conn("region = cn-gd")).connection.host,
            "mqtt-cn-gd.iot.ucloud.cn"
        );
        assert_eq!(
            ok(&with_conn("region = cn-sh2")).connection.host,
            "mqtt-cn-sh2.iot.ucloud.cn"
        );
        let c = ok(&with_conn("region = cn-gd\nhost = broker.example.com"));
        assert_eq!(c.connection.host, "broker.example.com");
        assert_eq!(c.connection.region, "cn-gd");
        let p = one_problem(&with_conn("region = cn-bj2"));
        assert_eq!(
            p,
            "uiot.ini: [connection] region = cn-bj2: unknown region; known regions: cn-sh2, cn-gd; \
             to use another broker set host (and port) instead"
        );
    }

    #[test]
    fn bad_host() {
        let p = one_problem(&with_conn("host = mqtt://broker:1883"));
        assert!(
            p.starts_with("uiot.ini: [connection] host = mqtt://broker:1883: must be a host name"),
            "{p}"
        );
        assert!(p.contains("port"), "{p}");
        assert_eq!(ok(&with_conn("host = ::1")).connection.host, "::1");
    }

    #[test]
    fn port_default_follows_tls() {
        assert_eq!(ok(&with_conn("tls = false")).connection.port, 1883);
        assert_eq!(ok(&with_conn("tls = true")).connection.port, 8883);
        assert_eq!(
            ok(&with_conn("tls = false\nport = 8883")).connection.port,
            8883
        );
        assert_eq!(
            one_problem(&with_conn("tls = no\nport = 0")),
            "uiot.ini: [connection] port = 0: must be 1..65535; remove the line for the default (1883 with tls = false)"
        );
        assert_eq!(problems(&with_conn("port = 65536")).len(), 1);
        assert_eq!(problems(&with_conn("port = http")).len(), 1);
        assert_eq!(ok(&with_conn("port = 65535")).connection.port, 65535);
    }

    #[test]
    fn keep_alive_range() {
        assert_eq!(
            one_problem(&with_conn("keep_alive = 10")),
            "uiot.ini: [connection] keep_alive = 10: must be 30..1200 seconds (UIoT Core refuses others); \
             remove the line for the default (300)"
        );
        assert_eq!(problems(&with_conn("keep_alive = 1201")).len(), 1);
        assert_eq!(problems(&with_conn("keep_alive = 5m")).len(), 1);
        assert_eq!(problems(&with_conn("keep_alive = -30")).len(), 1);
        assert_eq!(
            ok(&with_conn("keep_alive = 30")).connection.keep_alive,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn timeout_ranges() {
        assert_eq!(
            one_problem(&with_conn("connect_timeout = 0")),
            "uiot.ini: [connection] connect_timeout = 0: must be 1..300 seconds; \
             remove the line for the default (10)"
        );
        assert_eq!(problems(&with_conn("connect_timeout = 301")).len(), 1);
        assert_eq!(
            problems(&with_conn("connect_timeout = 18446744073709551615")).len(),
            1
        );
        assert_eq!(
            ok(&with_conn("connect_timeout = 1"))
                .connection
                .connect_timeout,
            Duration::from_secs(1)
        );
        assert_eq!(
            one_problem(&with_conn("shutdown_timeout = 3601")),
            "uiot.ini: [connection] shutdown_timeout = 3601: must be 0..3600 seconds; \
             remove the line for the default (5)"
        );
    }

    #[test]
    fn protocol_values() {
        assert_eq!(
            ok(&with_conn("protocol = 3.1.1")).connection.protocol,
            Protocol::V311
        );
        assert_eq!(
            one_problem(&with_conn("protocol = 5")),
            "uiot.ini: [connection] protocol = 5: must be 3.1.1 (the default, what UIoT Core expects) or 3.1"
        );
    }

    #[test]
    fn ca_file_must_be_a_readable_pem_file() {
        let d = TempDir::new("conn-ca");
        let missing = d.0.join("no-such-ca.pem");
        let p = one_problem(&with_conn(&format!("ca_file = {}", missing.display())));
        assert!(
            p.starts_with(&format!(
                "uiot.ini: [connection] ca_file = {}: cannot be read (",
                missing.display()
            )),
            "{p}"
        );
        assert!(p.contains("built-in UIoT Core CA"), "{p}");
        // A directory, a FIFO or a device is not a certificate file.
        let fifo = d.fifo("pipe");
        for path in [d.0.as_path(), fifo.as_path(), Path::new("/dev/zero")] {
            let p = one_problem(&with_conn(&format!("ca_file = {}", path.display())));
            assert!(p.contains(": not a regular file but "), "{p}");
        }
        // Not PEM.
        let der = d.file("ca.der", &[0x30, 0x82, 0x01, 0x0a]);
        let p = one_problem(&with_conn(&format!("ca_file = {}", der.display())));
        assert!(
            p.starts_with(&format!(
                "uiot.ini: [connection] ca_file = {}: not a PEM certificate",
                der.display()
            )),
            "{p}"
        );
        // Larger than any CA certificate: refused by its size.
        let big = std::fs::File::create(d.0.join("big.pem")).unwrap();
        big.set_len(MAX_CA_FILE + 1).unwrap();
        let p = one_problem(&with_conn(&format!(
            "ca_file = {}",
            d.0.join("big.pem").display()
        )));
        assert!(
            p.contains(": 1048577 bytes, more than the 1048576 accepted; "),
            "{p}"
        );
    }

    #[test]
    fn http_token_file_defaults_beside_the_device_secret() {
        use crate::config::Config;
        let d = TempDir::new("conn-token");
        let device =
            format!("[device]\nproduct_sn = abc\ndevice_sn = dev1\ndevice_secret = {DEV_SECRET}\n");
        // device_secret: beside the configuration file that holds it.
        let file = d.file("uiot.ini", device.as_bytes());
        let c = Config::load(&file).unwrap();
        assert_eq!(c.connection.http_token_file, None);
        assert_eq!(
            c.connection.http_token_path(&c.device, &c.path),
            d.0.join("http.token")
        );
        // product_secret: beside secret_file.
        let file = d.file(
            "dyn.ini",
            format!(
                "[device]\nproduct_sn = abc\ndevice_sn = dev1\nproduct_secret = {PROD_SECRET}\n\
                 secret_file = /var/lib/uiot/device.secret\n"
            )
            .as_bytes(),
        );
        let c = Config::load(&file).unwrap();
        assert_eq!(
            c.connection.http_token_path(&c.device, &c.path),
            Path::new("/var/lib/uiot/http.token")
        );
        // Set: relative to the configuration file, shown by effective().
        let file = d.file(
            "set.ini",
            format!("{device}[connection]\nhttp_token_file = cache/tok\n").as_bytes(),
        );
        let c = Config::load(&file).unwrap();
        assert_eq!(c.connection.http_token_file, Some(d.0.join("cache/tok")));
        assert_eq!(
            c.connection.http_token_path(&c.device, &c.path),
            d.0.join("cache/tok")
        );
        assert!(c.effective().contains(&format!(
            "http_token_file = {}\n",
            d.0.join("cache/tok").display()
        )));
        // A name without a directory: the current one.
        let c = ok(&minimal());
        assert_eq!(
            c.connection
                .http_token_path(&c.device, Path::new("uiot.ini")),
            Path::new("http.token")
        );
        assert!(one_problem(&with_conn("http_token_file =")).contains("http_token_file"),);
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        use crate::config::{Config, SecretSource};
        let d = TempDir::new("conn-rel");
        d.file("ca.pem", PEM.as_bytes());
        let file = d.file(
            "uiot.ini",
            format!(
                "[device]\nproduct_sn = abc\ndevice_sn = dev1\nproduct_secret = {PROD_SECRET}\nsecret_file = dev.secret\n\
                 [connection]\nca_file = ca.pem\n"
            )
            .as_bytes(),
        );
        let c = Config::load(&file).unwrap();
        assert_eq!(c.path, file);
        assert_eq!(c.connection.ca_file, Some(d.0.join("ca.pem")));
        assert_eq!(
            c.device.secret,
            SecretSource::ProductSecret {
                product_secret: PROD_SECRET.into(),
                secret_file: d.0.join("dev.secret")
            }
        );
    }
}
