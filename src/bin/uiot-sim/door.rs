//! The front door of the HTTP server: the listening socket on 127.0.0.1
//! that clients reach. Each client connection is relayed, byte for byte,
//! to the tiny_http server on a second loopback socket. tiny_http cannot
//! close a keep-alive connection from the server side, nor tell a handler
//! that its client went away; the firmware modes need both (`cut` closes
//! the connection in the middle of a body, `stall` waits until the client
//! gives up). A handler finds its connection by the address tiny_http
//! reports as the request's peer ([`Door::conn`]).
//!
//! Owns: the client sockets, the two relay threads of each connection and
//! the table of open connections. Must not touch: HTTP (it never looks at
//! the bytes it relays).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cloud::{emit, lock};

/// Bytes relayed at a time, each way.
const RELAY_CHUNK: usize = 16 * 1024;
/// How often the server-to-client relay looks for a requested cut while
/// nothing comes from the server; also how long it must be quiet before it
/// cuts (loopback delivers what a handler flushed well within this).
const CUT_POLL: Duration = Duration::from_millis(100);
/// Most connections open at once; more are closed at once.
const MAX_CONNECTIONS: usize = 256;

/// One client connection.
pub struct Conn {
    front: TcpStream,
    back: TcpStream,
    cut: AtomicBool,
    gone: Mutex<bool>,
    changed: Condvar,
}

impl Conn {
    /// Close the connection once what the server wrote so far has reached
    /// the client (call it after flushing the response).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }

    /// Whether the client closed the connection (or it was cut).
    pub fn is_gone(&self) -> bool {
        *lock(&self.gone)
    }

    /// Wait until the client is gone, at most `limit`; true if it is.
    pub fn wait_gone(&self, limit: Duration) -> bool {
        let end = Instant::now().checked_add(limit);
        let mut gone = lock(&self.gone);
        while !*gone {
            let left = end.map_or(limit, |e| e.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return false;
            }
            gone = self
                .changed
                .wait_timeout(gone, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    fn set_gone(&self) {
        *lock(&self.gone) = true;
        self.changed.notify_all();
    }
}

/// The open connections, by the address of the relay's end of the socket
/// to tiny_http (what tiny_http reports as the peer of a request).
#[derive(Default)]
pub struct Door {
    conns: Mutex<HashMap<SocketAddr, Arc<Conn>>>,
}

impl Door {
    /// The connection a request came in on (`None` once it is closed).
    pub fn conn(&self, peer: Option<&SocketAddr>) -> Option<Arc<Conn>> {
        peer.and_then(|p| lock(&self.conns).get(p).cloned())
    }

    /// Accept clients on `front` and relay each to `back`, on threads of
    /// their own.
    pub fn open(front: TcpListener, back: SocketAddr) -> io::Result<Arc<Door>> {
        let door = Arc::new(Door::default());
        let d = Arc::clone(&door);
        std::thread::Builder::new()
            .name("sim-http-door".into())
            .spawn(move || {
                for client in front.incoming() {
                    match client {
                        Ok(c) => d.admit(c, back),
                        Err(e) => {
                            // Out of descriptors and the like: wait, go on.
                            emit(
                                &json!({"sim": "error", "http": "accept", "error": e.to_string()}),
                            );
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(door)
    }

    fn admit(self: &Arc<Door>, front: TcpStream, back: SocketAddr) {
        if lock(&self.conns).len() >= MAX_CONNECTIONS {
            let _ = front.shutdown(Shutdown::Both);
            return;
        }
        let relay = || -> io::Result<()> {
            let back = TcpStream::connect(back)?;
            let _ = back.set_nodelay(true);
            let _ = front.set_nodelay(true);
            let key = back.local_addr()?;
            let conn = Arc::new(Conn {
                front: front.try_clone()?,
                back: back.try_clone()?,
                cut: AtomicBool::new(false),
                gone: Mutex::new(false),
                changed: Condvar::new(),
            });
            lock(&self.conns).insert(key, Arc::clone(&conn));
            let up = Arc::clone(&conn);
            let spawned = std::thread::Builder::new()
                .name("sim-http-up".into())
                .spawn(move || relay_up(&up));
            if let Err(e) = spawned {
                lock(&self.conns).remove(&key);
                return Err(e);
            }
            let door = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("sim-http-down".into())
                .spawn(move || {
                    relay_down(&conn);
                    lock(&door.conns).remove(&key);
                });
            if let Err(e) = spawned {
                let _ = front.shutdown(Shutdown::Both);
                let _ = back.shutdown(Shutdown::Both);
                lock(&self.conns).remove(&key);
                return Err(e);
            }
            Ok(())
        };
        if let Err(e) = relay() {
            let _ = front.shutdown(Shutdown::Both);
            emit(&json!({"sim": "error", "http": "relay", "error": e.to_string()}));
        }
    }
}

/// Client to server. The client closing its side means it is gone.
fn relay_up(c: &Conn) {
    let mut buf = vec![0u8; RELAY_CHUNK];
    let (mut from, mut to) = (&c.front, &c.back);
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                if to.write_all(chunk).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    c.set_gone();
    // tiny_http sees the end of the requests and finishes the connection.
    let _ = c.back.shutdown(Shutdown::Write);
}

/// Server to client, until either side closes or a cut is asked for and
/// the server has been quiet for [`CUT_POLL`]; then both sockets close.
fn relay_down(c: &Conn) {
    let mut buf = vec![0u8; RELAY_CHUNK];
    let _ = c.back.set_read_timeout(Some(CUT_POLL));
    let (mut from, mut to) = (&c.back, &c.front);
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                if to.write_all(chunk).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if c.cut.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    c.set_gone();
    let _ = c.front.shutdown(Shutdown::Both);
    let _ = c.back.shutdown(Shutdown::Both);
}
