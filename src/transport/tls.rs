//! TLS on top of the non-blocking TCP stream, through the system's OpenSSL
//! (`native-tls`).
//!
//! Owns: the built-in UIoT Core CA, building the TLS connector (TLS 1.2 at
//! least, only the configured CA trusted, SNI = host), the non-blocking
//! handshake inside the I/O thread's poll with the connect deadline, and
//! turning handshake failures into advice.
//! Must not touch: MQTT, session state, threads.

use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use native_tls::{Certificate, HandshakeError, Protocol, TlsConnector, TlsStream};

use super::{interrupted, TlsOptions};
use crate::config::file::{self, FileError};
use crate::config::MAX_CA_FILE;
use crate::error::{cut, ConfigError, Error};

/// The UIoT Core MQTT CA (X.509 v1, self-signed, valid until 2039-07-24;
/// SHA-256 27:4A:C9:13:...:91:33:8B), trusted unless `ca_file` replaces it.
pub const UIOT_CORE_CA_PEM: &[u8] = include_bytes!("../../etc/uiot-core-mqtt-ca.pem");

/// A TLS set-up ready for any number of connections: building it loads the
/// CA (and OpenSSL's default store, unless `SSL_CERT_FILE` points it
/// elsewhere: see the README's TLS section), so it is done once per client.
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
    /// Load the CA (the built-in one, or every certificate in `ca_file`)
    /// and build the connector.
    ///
    /// Errors: `ca_file` missing, unreadable or not a regular file:
    /// [`Error::Input`]; not PEM certificates or over 1 MB:
    /// [`Error::Config`]; OpenSSL refusing the set-up: [`Error::Tls`].
    pub fn new(opts: &TlsOptions) -> Result<Tls, Error> {
        Ok(Tls {
            connector: connector(opts)?,
            verify_hostname: opts.verify_hostname,
        })
    }
}

fn connector(opts: &TlsOptions) -> Result<TlsConnector, Error> {
    let cas = match &opts.ca_file {
        None => Certificate::stack_from_pem(UIOT_CORE_CA_PEM)
            .map_err(|e| Error::Tls(format!("the built-in UIoT Core CA does not load: {e}")))?,
        Some(path) => load_ca_file(path)?,
    };
    let mut b = TlsConnector::builder();
    b.min_protocol_version(Some(Protocol::Tlsv12))
        .disable_built_in_roots(true)
        .danger_accept_invalid_hostnames(!opts.verify_hostname);
    for ca in cas {
        b.add_root_certificate(ca);
    }
    b.build()
        .map_err(|e| Error::Tls(format!("cannot set up TLS: {e}")))
}

/// A `ca_file` problem as a config problem (exit 78, found by `uiot check`).
fn ca_problem(path: &Path, what: &str) -> Error {
    let p = path.display().to_string();
    Error::Config(ConfigError {
        problems: vec![format!(
            "[connection] ca_file = {}: {what}; give the CA in PEM form",
            cut(&p)
        )],
    })
}

/// The certificates of `path`: a regular file of at most
/// [`MAX_CA_FILE`] bytes (never more is read) holding PEM certificates.
/// Missing or unreadable: [`Error::Input`]; too large or not PEM:
/// [`Error::Config`].
fn load_ca_file(path: &Path) -> Result<Vec<Certificate>, Error> {
    let pem = match file::read_bounded(path, MAX_CA_FILE) {
        Ok((bytes, _)) => bytes,
        Err(FileError::Io(source)) => {
            return Err(Error::Input {
                context: format!("reading [connection] ca_file {}", path.display()),
                source,
            })
        }
        Err(FileError::NotRegular(kind)) => {
            return Err(Error::Input {
                context: format!("reading [connection] ca_file {}", path.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("not a regular file but {kind}; give the path of a PEM file"),
                ),
            })
        }
        Err(FileError::TooLarge { max, .. }) => {
            return Err(ca_problem(
                path,
                &format!("larger than {max} bytes, so not a CA certificate"),
            ))
        }
    };
    match Certificate::stack_from_pem(&pem) {
        Ok(cas) if !cas.is_empty() => Ok(cas),
        Ok(_) => Err(ca_problem(
            path,
            "not a PEM certificate (no -----BEGIN CERTIFICATE----- block)",
        )),
        Err(e) => Err(ca_problem(
            path,
            &format!("not a PEM certificate ({})", cut(e.to_string().trim())),
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ca: &Path) -> TlsOptions {
        TlsOptions {
            ca_file: Some(ca.to_path_buf()),
            verify_hostname: true,
        }
    }

    #[test]
    fn the_built_in_ca_loads() {
        assert!(Tls::new(&TlsOptions::default()).is_ok());
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_a_config_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.der");
        std::fs::write(&p, b"\x30\x82\x01\x00 not pem").unwrap();
        match Tls::new(&opts(&p)) {
            Err(Error::Config(c)) => {
                let m = &c.problems[0];
                assert!(m.contains("[connection] ca_file = "), "{m}");
                assert!(m.contains("not a PEM certificate"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_ca_file_over_1_mb_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.pem");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(1 << 30).unwrap(); // sparse: 1 GB that costs nothing
        match Tls::new(&opts(&p)) {
            Err(Error::Config(c)) => assert!(c.problems[0].contains("larger than"), "{c}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_or_odd_ca_file_is_an_input_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        for p in [missing.as_path(), dir.path()] {
            match Tls::new(&opts(p)) {
                Err(e @ Error::Input { .. }) => {
                    assert!(e.to_string().contains(&p.display().to_string()), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
