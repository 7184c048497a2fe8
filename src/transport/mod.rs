//! Byte streams to the broker: plain TCP, or TLS over it.
//!
//! Owns: resolving the broker's address, the non-blocking connect (and TLS
//! handshake) with its deadline, socket options (TCP_NODELAY), and the
//! [`Stream`] the I/O thread reads and writes. After the handshake TCP and
//! TLS share one path: the I/O thread only sees `Read + Write`.
//! Must not touch: MQTT packets, session state, threads, UIoT rules.
//!
//! Public (for the root to re-export): [`TlsOptions`], [`Tls`] with
//! `Tls::new` (`uiot check` builds one to find a bad `ca_file`),
//! [`TLS_AVAILABLE`] and `UIOT_CORE_CA_PEM`. Everything else is for the
//! I/O thread only (`pub(crate)`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};

use crate::error::Error;

#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub use tls::{Tls, UIOT_CORE_CA_PEM};

/// Without the `tls` feature there is no TLS set-up to make (this type has
/// no values).
#[cfg(not(feature = "tls"))]
#[derive(Debug)]
pub struct Tls(Never);

#[cfg(not(feature = "tls"))]
#[derive(Debug)]
enum Never {}

#[cfg(not(feature = "tls"))]
impl Tls {
    /// Always an error: this build has no TLS.
    pub fn new(_opts: &TlsOptions) -> Result<Tls, Error> {
        Err(Error::Tls(
            "this uiot was built without TLS (cargo feature `tls`); set [connection] \
             tls = false and port = 1883, or use a build with TLS"
                .to_string(),
        ))
    }
}

/// Whether this build can speak TLS (the `tls` cargo feature).
pub const TLS_AVAILABLE: bool = cfg!(feature = "tls");

/// How to verify the broker when connecting with TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA to trust; `None`: the built-in UIoT Core CA.
    pub ca_file: Option<PathBuf>,
    /// Check that the certificate names the host (default true). With false
    /// the chain must still lead to the CA; there is no way to trust all.
    pub verify_hostname: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca_file: None,
            verify_hostname: true,
        }
    }
}

/// A connected byte stream to the broker, registered with the I/O thread's poll.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    #[cfg(feature = "tls")]
    Tls(Box<native_tls::TlsStream<TcpStream>>),
    /// The local socket of a `uiot run` daemon.
    Unix(UnixStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.get_mut(),
            Stream::Unix(s) => s,
        }
    }

    /// Register with `poll` for reads and writes (edge-triggered).
    pub(crate) fn register(&mut self, poll: &Poll, token: Token) -> io::Result<()> {
        poll.registry().register(
            self.source(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// Deregister from `poll`.
    pub(crate) fn deregister(&mut self, poll: &Poll) -> io::Result<()> {
        poll.registry().deregister(self.source())
    }

    /// Shut both directions down (best effort; TLS sends close_notify first).
    pub(crate) fn shutdown(&mut self) {
        match self {
            Stream::Tcp(s) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            #[cfg(feature = "tls")]
            Stream::Tls(s) => {
                let _ = s.shutdown();
                let _ = s.get_mut().shutdown(std::net::Shutdown::Both);
            }
            Stream::Unix(s) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// Connect to `host:port` before `deadline`: TCP, then the TLS handshake
/// when `tls` is given. Waits in `poll` (with `token`, which must be free);
/// the stream comes back deregistered.
pub(crate) fn connect(
    host: &str,
    port: u16,
    tls: Option<&Tls>,
    keep_alive: Duration,
    deadline: Instant,
    poll: &mut Poll,
    token: Token,
) -> Result<Stream, Error> {
    match tls {
        None => connect_tcp(host, port, keep_alive, deadline, poll, token),
        #[cfg(feature = "tls")]
        Some(t) => match connect_tcp(host, port, keep_alive, deadline, poll, token)? {
            Stream::Tcp(tcp) => {
                let s = tls::handshake(tcp, host, port, t, deadline, poll, token)?;
                Ok(Stream::Tls(Box::new(s)))
            }
            other => Ok(other),
        },
        #[cfg(not(feature = "tls"))]
        Some(t) => match t.0 {},
    }
}

/// Connect to the local socket of a `uiot run` daemon. A missing socket or
/// no daemon listening is [`Error::Unreachable`] saying so.
pub(crate) fn connect_unix(path: &std::path::Path) -> Result<Stream, Error> {
    let unreachable = |e: io::Error| {
        Error::Unreachable(format!(
            "no uiot daemon answers on {} ({e}); is `uiot run` running?",
            path.display()
        ))
    };
    // A local connect completes at once (or fails): no deadline needed.
    let s = std::os::unix::net::UnixStream::connect(path).map_err(unreachable)?;
    s.set_nonblocking(true).map_err(unreachable)?;
    Ok(Stream::Unix(UnixStream::from_std(s)))
}

/// True for the "try again later" error of a non-blocking socket.
pub(crate) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// True for an interrupted system call.
pub(crate) fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Resolve `host:port` and open a TCP connection to the first address that
/// answers before `deadline`, using `poll` (with `token`, which must be free)
/// to wait. The stream comes back deregistered, with TCP_NODELAY set and
/// dead-link detection tuned to `keep_alive` (see [`tune_dead_link`]).
pub(crate) fn connect_tcp(
    host: &str,
    port: u16,
    keep_alive: Duration,
    deadline: Instant,
    poll: &mut Poll,
    token: Token,
) -> Result<Stream, Error> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            Error::Unreachable(format!(
                "cannot resolve {host}: {e} (check [connection] host/region and DNS)"
            ))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Unreachable(format!("{host} has no address")));
    }
    let mut last = None;
    for addr in addrs {
        match connect_addr(addr, keep_alive, deadline, poll, token) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let why = match last {
        Some(e) if e.kind() == io::ErrorKind::TimedOut => {
            "no answer within connect_timeout (is the broker up, and the port right?)".to_string()
        }
        Some(e) => e.to_string(),
        None => "no address tried".to_string(),
    };
    Err(Error::Unreachable(format!("{host}:{port}: {why}")))
}

fn connect_addr(
    addr: SocketAddr,
    keep_alive: Duration,
    deadline: Instant,
    poll: &mut Poll,
    token: Token,
) -> io::Result<Stream> {
    let mut s = TcpStream::connect(addr)?;
    poll.registry()
        .register(&mut s, token, Interest::WRITABLE)?;
    let result = wait_connected(&mut s, deadline, poll, token);
    let _ = poll.registry().deregister(&mut s);
    result?;
    s.set_nodelay(true)?;
    if let Err(e) = tune_dead_link(&s, keep_alive) {
        log::warn!("cannot set TCP keep-alive / TCP_USER_TIMEOUT: {e}");
    }
    Ok(Stream::Tcp(s))
}

/// Make the kernel give up on a dead link by itself: TCP keep-alive probes
/// after `keep_alive` of silence, and TCP_USER_TIMEOUT so that data written
/// into a dead link fails after keep-alive plus the PINGRESP timeout instead
/// of being retransmitted for many minutes.
pub(crate) fn tune_dead_link(s: &TcpStream, keep_alive: Duration) -> io::Result<()> {
    use rustix::net::sockopt;
    let grace = (keep_alive / 2).min(Duration::from_secs(30));
    let user_timeout = (keep_alive + grace).max(Duration::from_secs(1));
    sockopt::set_socket_keepalive(s, true)?;
    sockopt::set_tcp_keepidle(s, keep_alive.max(Duration::from_secs(1)))?;
    sockopt::set_tcp_keepintvl(
        s,
        (keep_alive / 3).clamp(Duration::from_secs(1), Duration::from_secs(30)),
    )?;
    sockopt::set_tcp_keepcnt(s, 3)?;
    sockopt::set_tcp_user_timeout(
        s,
        u32::try_from(user_timeout.as_millis()).unwrap_or(u32::MAX),
    )?;
    Ok(())
}

fn wait_connected(
    s: &mut TcpStream,
    deadline: Instant,
    poll: &mut Poll,
    token: Token,
) -> io::Result<()> {
    let mut events = Events::with_capacity(4);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        match poll.poll(&mut events, Some(left.min(Duration::from_secs(1)))) {
            Ok(()) => {}
            Err(e) if interrupted(&e) => continue,
            Err(e) => return Err(e),
        }
        if !events.iter().any(|e| e.token() == token) {
            continue;
        }
        if let Some(e) = s.take_error()? {
            return Err(e);
        }
        match s.peer_addr() {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
            Err(e) => return Err(e),
        }
    }
}
