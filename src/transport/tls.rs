//! TLS on top of the non-blocking TCP stream, through the system's OpenSSL
//! (the `openssl` crate, the same binding `native-tls` uses on Linux).
//!
//! Owns: the built-in UIoT Core CA, reading `ca_file` (bounded), building
//! the TLS context (TLS 1.2 at least, only the configured CA trusted, host
//! name checked unless `tls_verify_hostname = false`, SNI = host), the
//! non-blocking handshake inside the I/O thread's poll with the connect
//! deadline, and turning handshake failures into advice.
//! Must not touch: MQTT, session state, threads.
//!
//! Why not `native-tls`: its `TlsConnector::new` always loads the CA bundle
//! `openssl-probe` finds (/etc/ssl/certs/ca-certificates.crt, about 140
//! certificates) and `SslConnector::builder` loads OpenSSL's default verify
//! paths too, before `disable_built_in_roots` throws both away; that is
//! about 50 ms of a 58 ms one-message process, for certificates uiot never
//! trusts. native-tls has no constructor that skips it, and pointing
//! `SSL_CERT_FILE` elsewhere would change trust for all TLS in the process.
//! So the context is built here with an empty store plus the pinned CA and
//! the same settings `SslConnector` uses (options, modes, cipher list, peer
//! verification, host name flags).

use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use openssl::ssl::{
    ErrorCode, HandshakeError, Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions,
    SslStream, SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509CheckFlags;
use openssl::x509::{X509VerifyResult, X509};

use super::{interrupted, TlsOptions};
use crate::error::{cut, ConfigError, Error};

/// The UIoT Core MQTT CA (X.509 v1, self-signed, valid until 2039-07-24;
/// SHA-256 27:4A:C9:13:...:91:33:8B), trusted unless `ca_file` replaces it.
pub const UIOT_CORE_CA_PEM: &[u8] = include_bytes!("../../etc/uiot-core-mqtt-ca.pem");

/// Largest `ca_file` read, in bytes: a CA certificate in PEM is 1 to 3 KB,
/// a whole system bundle about 200 KB.
pub(crate) const CA_FILE_MAX: u64 = 1024 * 1024;

/// `O_NONBLOCK` for `open` (its value differs between architectures).
const NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;

/// A TLS set-up ready for any number of connections: it holds the CA, so
/// it is built once per client.
pub struct Tls {
    ctx: SslContext,
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
    /// Load the CA (the built-in one, or `ca_file`) and build the context.
    ///
    /// Errors: `ca_file` missing, unreadable or not a regular file:
    /// [`Error::Input`]; not PEM certificates or over 1 MB:
    /// [`Error::Config`]; OpenSSL refusing the set-up: [`Error::Tls`].
    pub fn new(opts: &TlsOptions) -> Result<Tls, Error> {
        let cas = match &opts.ca_file {
            None => X509::stack_from_pem(UIOT_CORE_CA_PEM)
                .map_err(|e| Error::Tls(format!("the built-in UIoT Core CA does not load: {e}")))?,
            Some(path) => load_ca_file(path)?,
        };
        let ctx = context(cas).map_err(|e| Error::Tls(format!("cannot set up TLS: {e}")))?;
        Ok(Tls {
            ctx,
            verify_hostname: opts.verify_hostname,
        })
    }
}

/// A `ca_file` problem as a config problem (exit 78, found by `uiot check`).
fn ca_problem(path: &Path, what: &str) -> Error {
    let p = path.display().to_string();
    Error::Config(ConfigError {
        problems: vec![format!(
            "{p}: [connection] ca_file = {}: {what}; give the CA in PEM form",
            cut(&p)
        )],
    })
}

/// Read `path` (a regular file of at most [`CA_FILE_MAX`] bytes, never more
/// than that read) and parse every PEM certificate in it.
fn load_ca_file(path: &Path) -> Result<Vec<X509>, Error> {
    let input = |source: std::io::Error| Error::Input {
        context: format!("reading [connection] ca_file {}", path.display()),
        source,
    };
    let not_regular = || {
        input(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file; give the path of a PEM file",
        ))
    };
    // Look before opening (a FIFO would block open), and open non-blocking
    // in case it was swapped for one in between.
    if !std::fs::metadata(path).map_err(input)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(NONBLOCK)
        .open(path)
        .map_err(input)?;
    let meta = file.metadata().map_err(input)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let too_large = || {
        ca_problem(
            path,
            &format!("larger than {CA_FILE_MAX} bytes, so not a PEM certificate"),
        )
    };
    if meta.len() > CA_FILE_MAX {
        return Err(too_large());
    }
    // The file may grow between the metadata and the read: read one byte
    // more than allowed to notice.
    let mut pem = Vec::new();
    file.take(CA_FILE_MAX + 1)
        .read_to_end(&mut pem)
        .map_err(input)?;
    if u64::try_from(pem.len()).map_or(true, |n| n > CA_FILE_MAX) {
        return Err(too_large());
    }
    match X509::stack_from_pem(&pem) {
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

/// The client context: what `openssl::ssl::SslConnector::builder` sets up,
/// except the default verify paths (the system CA bundle), plus TLS 1.2 at
/// least and a store that holds only `cas`.
fn context(cas: Vec<X509>) -> Result<SslContext, openssl::error::ErrorStack> {
    let mut b = SslContextBuilder::new(SslMethod::tls_client())?;
    let opts = (SslOptions::ALL
        | SslOptions::NO_COMPRESSION
        | SslOptions::NO_SSLV2
        | SslOptions::NO_SSLV3
        | SslOptions::SINGLE_DH_USE
        | SslOptions::SINGLE_ECDH_USE)
        & !SslOptions::DONT_INSERT_EMPTY_FRAGMENTS;
    b.set_options(opts);
    // RELEASE_BUFFERS: free the 16 KB+ record buffers while idle.
    b.set_mode(
        SslMode::AUTO_RETRY
            | SslMode::ACCEPT_MOVING_WRITE_BUFFER
            | SslMode::ENABLE_PARTIAL_WRITE
            | SslMode::RELEASE_BUFFERS,
    );
    b.set_cipher_list("DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK")?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    let mut store = X509StoreBuilder::new()?;
    for ca in cas {
        store.add_cert(ca)?;
    }
    b.set_cert_store(store.build());
    b.set_verify(SslVerifyMode::PEER);
    Ok(b.build())
}

/// One connection's `Ssl`: SNI (for a name, not an address) and, unless
/// turned off, the host name (or IP address) check.
fn ssl_for(tls: &Tls, host: &str) -> Result<Ssl, openssl::error::ErrorStack> {
    let mut ssl = Ssl::new(&tls.ctx)?;
    let ip = host.parse::<IpAddr>().ok();
    if ip.is_none() {
        ssl.set_hostname(host)?;
    }
    if tls.verify_hostname {
        let param = ssl.param_mut();
        param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
        match ip {
            Some(ip) => param.set_ip(ip)?,
            None => param.set_host(host)?,
        }
    }
    Ok(ssl)
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
) -> Result<SslStream<TcpStream>, Error> {
    if !tls.verify_hostname {
        log::warn!(
            "tls_verify_hostname = false: the broker's certificate must still chain to the \
             configured CA, but its host name ({host}) is not checked"
        );
    }
    let ssl = ssl_for(tls, host).map_err(|e| Error::Tls(format!("cannot set up TLS: {e}")))?;
    let reg = |e: std::io::Error| Error::Io {
        context: "registering the socket for the TLS handshake".into(),
        source: e,
    };
    poll.registry()
        .register(&mut tcp, token, Interest::READABLE | Interest::WRITABLE)
        .map_err(reg)?;
    let mut events = Events::with_capacity(4);
    let mut attempt = ssl.connect(tcp);
    loop {
        match attempt {
            Ok(mut s) => {
                let _ = poll.registry().deregister(s.get_mut());
                return Ok(s);
            }
            Err(HandshakeError::SetupFailure(e)) => {
                return Err(Error::Tls(format!("cannot set up TLS: {e}")))
            }
            Err(HandshakeError::Failure(mut mid)) => {
                let _ = poll.registry().deregister(mid.get_mut());
                let verify = mid.ssl().verify_result();
                return Err(explain(mid.error(), verify, host, port));
            }
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
                        let _ = poll.registry().deregister(mid.get_mut());
                        return Err(Error::Io {
                            context: "waiting for the TLS handshake".into(),
                            source: e,
                        });
                    }
                }
                attempt = mid.handshake();
            }
        }
    }
}

// Certificate verification results (OpenSSL's x509_vfy.h; the same numbers
// in OpenSSL 1.1 and 3.x).
const V_ERR_CERT_NOT_YET_VALID: i32 = 9;
const V_ERR_CERT_HAS_EXPIRED: i32 = 10;
const V_ERR_HOSTNAME_MISMATCH: i32 = 62;
const V_ERR_IP_ADDRESS_MISMATCH: i32 = 64;

/// Turn a failed handshake into what to check: the certificate check's
/// result first (by its code), else the OpenSSL error.
fn explain(e: &openssl::ssl::Error, verify: X509VerifyResult, host: &str, port: u16) -> Error {
    let mut detail = e.to_string();
    if verify != X509VerifyResult::OK {
        detail = format!("{detail} ({})", verify.error_string());
    }
    let d = detail.to_ascii_lowercase();
    let advice = match verify.as_raw() {
        V_ERR_HOSTNAME_MISMATCH | V_ERR_IP_ADDRESS_MISMATCH => format!(
            "the broker's certificate is signed by the trusted CA but does not name {host}; \
             connect by the name in the certificate, or set [connection] \
             tls_verify_hostname = false (the CA is still checked)"
        ),
        V_ERR_CERT_HAS_EXPIRED | V_ERR_CERT_NOT_YET_VALID => {
            "the broker's certificate has expired or is not yet valid: check this device's \
             clock (date), then the broker's certificate"
                .to_string()
        }
        v if v != X509VerifyResult::OK.as_raw() => "the broker's certificate is not trusted: \
             it does not chain to the configured CA (check [connection] ca_file; without it \
             the built-in UIoT Core CA is used), and check this device's clock"
            .to_string(),
        _ if e.code() == ErrorCode::SYSCALL && e.io_error().is_none() => format!(
            "the broker closed the connection during the TLS handshake: is port {port} a \
             plain MQTT port (1883)? use port 8883, or set tls = false"
        ),
        _ if d.contains("wrong version number") || d.contains("packet length too long") => {
            format!(
                "the broker did not answer in TLS: port {port} looks like a plain MQTT port; \
                 use port 8883, or set tls = false for port 1883"
            )
        }
        _ if d.contains("unexpected eof")
            || d.contains("connection reset")
            || d.contains("eof") =>
        {
            format!(
                "the broker closed the connection during the TLS handshake: is port {port} a \
                 plain MQTT port (1883)? use port 8883, or set tls = false"
            )
        }
        _ if d.contains("protocol version") || d.contains("unsupported protocol") => {
            "the broker refused TLS 1.2 and newer; uiot does not use older TLS versions".to_string()
        }
        _ => "the TLS handshake failed".to_string(),
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
                assert_eq!(c.problems.len(), 1);
                let m = &c.problems[0];
                assert!(m.contains("[connection] ca_file = "), "{m}");
                assert!(m.contains("not a PEM certificate"), "{m}");
                assert!(m.contains("give the CA in PEM form"), "{m}");
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
