//! TLS on top of the non-blocking TCP stream, through the system's OpenSSL
//! (`native-tls`).
//!
//! Owns: the built-in UIoT Core CA, building the TLS connector (TLS 1.2 at
//! least, only the configured CA trusted, SNI = host), the non-blocking
//! handshake inside the I/O thread's poll with the connect deadline, and
//! turning handshake failures into advice.
//! Must not touch: MQTT, session state, threads.

use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use native_tls::{Certificate, HandshakeError, Protocol, TlsConnector, TlsStream};

use super::{interrupted, TlsOptions};
use crate::error::Error;

/// The UIoT Core MQTT CA (X.509 v1, self-signed, valid until 2039-07-24;
/// SHA-256 27:4A:C9:13:...:91:33:8B), trusted unless `ca_file` replaces it.
pub const UIOT_CORE_CA_PEM: &[u8] = include_bytes!("../../etc/uiot-core-mqtt-ca.pem");

/// A TLS set-up ready for any number of connections: building it loads the
/// CA (and OpenSSL's default store), which is slow, so it is done once.
pub struct Tls {
    connector: TlsConnector,
    verify_hostname: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("verify_hostname", &self.verify_hostname)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Load the CA and build the connector.
    pub fn new(opts: &TlsOptions) -> Result<Tls, Error> {
        Ok(Tls {
            connector: connector(opts)?,
            verify_hostname: opts.verify_hostname,
        })
    }
}

fn connector(opts: &TlsOptions) -> Result<TlsConnector, Error> {
    let (pem, origin) = match &opts.ca_file {
        None => (
            UIOT_CORE_CA_PEM.to_vec(),
            "the built-in UIoT Core CA".to_string(),
        ),
        Some(path) => (
            std::fs::read(path).map_err(|e| {
                Error::Tls(format!(
                    "cannot read ca_file {}: {e}; give a readable PEM file",
                    path.display()
                ))
            })?,
            format!("ca_file {}", path.display()),
        ),
    };
    let ca = Certificate::from_pem(&pem).map_err(|e| {
        Error::Tls(format!(
            "{origin} is not a PEM certificate ({e}); give the CA in PEM form"
        ))
    })?;
    let mut b = TlsConnector::builder();
    b.min_protocol_version(Some(Protocol::Tlsv12))
        .disable_built_in_roots(true)
        .add_root_certificate(ca)
        .danger_accept_invalid_hostnames(!opts.verify_hostname);
    b.build()
        .map_err(|e| Error::Tls(format!("cannot set up TLS: {e}")))
}

/// Run the TLS handshake over a connected TCP stream, waiting in `poll`
/// (with `token`, free) until `deadline`. The stream comes back
/// deregistered.
pub(crate) fn handshake(
    mut tcp: TcpStream,
    host: &str,
    port: u16,
    tls: &Tls,
    deadline: Instant,
    poll: &mut Poll,
    token: Token,
) -> Result<TlsStream<TcpStream>, Error> {
    if !tls.verify_hostname {
        log::warn!(
            "tls_verify_hostname = false: the broker's certificate must still chain to the \
             configured CA, but its host name ({host}) is not checked"
        );
    }
    let reg = |e: std::io::Error| Error::Io {
        context: "registering the socket for the TLS handshake".into(),
        source: e,
    };
    poll.registry()
        .register(&mut tcp, token, Interest::READABLE | Interest::WRITABLE)
        .map_err(reg)?;
    let mut events = Events::with_capacity(4);
    let mut attempt = tls.connector.connect(host, tcp);
    loop {
        match attempt {
            Ok(mut s) => {
                let _ = poll.registry().deregister(s.get_mut());
                return Ok(s);
            }
            Err(HandshakeError::Failure(e)) => return Err(explain(&e, host, port)),
            Err(HandshakeError::WouldBlock(mut mid)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let _ = poll.registry().deregister(mid.get_mut());
                    return Err(Error::Timeout(format!(
                        "the TLS handshake with {host}:{port} did not finish within \
                         connect_timeout: the broker accepted TCP but does not answer TLS \
                         (is it up, and is {port} its TLS port?)"
                    )));
                }
                match poll.poll(&mut events, Some(left.min(Duration::from_secs(1)))) {
                    Ok(()) => {}
                    Err(e) if interrupted(&e) => {}
                    Err(e) => {
                        return Err(Error::Io {
                            context: "waiting for the TLS handshake".into(),
                            source: e,
                        })
                    }
                }
                attempt = mid.handshake();
            }
        }
    }
}

/// Turn an OpenSSL handshake failure into what to check.
fn explain(e: &native_tls::Error, host: &str, port: u16) -> Error {
    let detail = e.to_string();
    let d = detail.to_ascii_lowercase();
    let advice = if d.contains("hostname mismatch") || d.contains("ip address mismatch") {
        format!(
            "the broker's certificate is signed by the trusted CA but does not name {host}; \
             connect by the name in the certificate, or set [connection] \
             tls_verify_hostname = false (the CA is still checked)"
        )
    } else if d.contains("certificate has expired") || d.contains("not yet valid") {
        "the broker's certificate has expired or is not yet valid: check this device's clock \
         (date), then the broker's certificate"
            .to_string()
    } else if d.contains("certificate verify failed") {
        "the broker's certificate is not trusted: it does not chain to the configured CA \
         (check [connection] ca_file; without it the built-in UIoT Core CA is used), \
         and check this device's clock"
            .to_string()
    } else if d.contains("wrong version number") || d.contains("packet length too long") {
        format!(
            "the broker did not answer in TLS: port {port} looks like a plain MQTT port; \
             use port 8883, or set tls = false for port 1883"
        )
    } else if d.contains("unexpected eof") || d.contains("connection reset") || d.contains("eof") {
        format!(
            "the broker closed the connection during the TLS handshake: is port {port} a \
             plain MQTT port (1883)? use port 8883, or set tls = false"
        )
    } else if d.contains("protocol version") || d.contains("unsupported protocol") {
        "the broker refused TLS 1.2 and newer; uiot does not use older TLS versions".to_string()
    } else {
        "the TLS handshake failed".to_string()
    };
    Error::Tls(format!("{host}:{port}: {advice} ({})", detail.trim()))
}
