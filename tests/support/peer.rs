//! A scripted fake MQTT server working on raw bytes, for what a real broker
//! will not do on demand: refuse a CONNECT, deny a subscription, never answer
//! a PINGREQ, drop the connection mid-session, send odd bytes.
//!
//! Owns: its listener on 127.0.0.1:0, the accepted connections, its thread,
//! a tiny MQTT frame reader (fixed header + remaining length) and byte
//! builders for the usual replies.
//! Must not touch: `uiot::packet` (it must not share bugs with the code under
//! test), any other address.
//!
//! ```ignore
//! use support::peer::{self, FakePeer, Step};
//! let peer = FakePeer::start(vec![
//!     Step::Expect(peer::CONNECT),
//!     Step::Send(peer::connack(0, false)),
//!     Step::SubAckNext(vec![0x80]), // refuse the subscription
//!     Step::Silent,                 // then never answer anything
//! ]);
//! // ... point the client at peer.addr() ...
//! peer.wait_done(Duration::from_secs(5)).unwrap();
//! ```
//!
//! The peer thread never hangs a test: every read has a deadline, and
//! dropping the peer stops the thread within ~50 ms.

use std::collections::VecDeque;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// CONNECT packet type.
pub const CONNECT: u8 = 1;
/// CONNACK packet type.
pub const CONNACK: u8 = 2;
/// PUBLISH packet type.
pub const PUBLISH: u8 = 3;
/// PUBACK packet type.
pub const PUBACK: u8 = 4;
/// PUBREC packet type.
pub const PUBREC: u8 = 5;
/// PUBREL packet type.
pub const PUBREL: u8 = 6;
/// PUBCOMP packet type.
pub const PUBCOMP: u8 = 7;
/// SUBSCRIBE packet type.
pub const SUBSCRIBE: u8 = 8;
/// SUBACK packet type.
pub const SUBACK: u8 = 9;
/// UNSUBSCRIBE packet type.
pub const UNSUBSCRIBE: u8 = 10;
/// UNSUBACK packet type.
pub const UNSUBACK: u8 = 11;
/// PINGREQ packet type.
pub const PINGREQ: u8 = 12;
/// PINGRESP packet type.
pub const PINGRESP: u8 = 13;
/// DISCONNECT packet type.
pub const DISCONNECT: u8 = 14;

/// Default deadline for accepting a connection and for each `Expect`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest single blocking read, so a drop is noticed quickly.
const READ_SLICE: Duration = Duration::from_millis(50);

/// Name of a packet type, for messages.
pub fn type_name(packet_type: u8) -> &'static str {
    match packet_type {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        _ => "reserved type",
    }
}

/// One step of a fake-peer script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read one whole frame (within the peer's timeout) and check its type.
    Expect(u8),
    /// Like `Expect`, with its own deadline.
    ExpectWithin(u8, Duration),
    /// Fail if any frame arrives within this time.
    ExpectNothing(Duration),
    /// Write these bytes.
    Send(Vec<u8>),
    /// Wait (frames arriving meanwhile are recorded with their arrival time
    /// and consumed by the next `Expect`).
    Sleep(Duration),
    /// Expect CONNECT and answer CONNACK with this return code (no session).
    ConnAckNext(u8),
    /// Expect PUBLISH; if it is QoS 1, answer PUBACK with its packet id.
    AckNextPublish,
    /// Expect SUBSCRIBE; answer SUBACK with its packet id and these codes.
    SubAckNext(Vec<u8>),
    /// Expect UNSUBSCRIBE; answer UNSUBACK with its packet id.
    UnsubAckNext,
    /// Expect PINGREQ; answer PINGRESP.
    PingRespNext,
    /// Close the connection (both directions).
    Close,
    /// Wait until the client closes the connection (frames arriving meanwhile
    /// are recorded); fail if it is still open after this time.
    ExpectClosed(Duration),
    /// Keep the connection open; record whatever arrives but never answer,
    /// until the client closes it or the peer is dropped. When this is the
    /// last step of the last session, `wait_done` reports Ok when it begins.
    Silent,
}

/// One MQTT frame the peer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Connection it came on (0 = first accepted).
    pub conn: usize,
    /// Packet type (high nibble of the first byte).
    pub packet_type: u8,
    /// Flags (low nibble of the first byte).
    pub flags: u8,
    /// Everything after the remaining length.
    pub body: Vec<u8>,
    /// When the whole frame had arrived.
    pub at: Instant,
}

/// The fields of a CONNECT frame. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// Protocol name ("MQTT" for 3.1.1).
    pub protocol_name: String,
    /// Protocol level (4 for 3.1.1).
    pub protocol_level: u8,
    /// Connect flags byte.
    pub flags: u8,
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// ClientID.
    pub client_id: String,
    /// Will topic and message, if the will flag is set.
    pub will: Option<(String, Vec<u8>)>,
    /// UserName, if present.
    pub username: Option<String>,
    /// Password bytes, if present.
    pub password: Option<Vec<u8>>,
}

impl ConnectInfo {
    /// The clean-session flag.
    pub fn clean_session(&self) -> bool {
        self.flags & 0x02 != 0
    }
}

impl fmt::Debug for ConnectInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectInfo")
            .field("protocol_name", &self.protocol_name)
            .field("protocol_level", &self.protocol_level)
            .field("flags", &format_args!("{:#04x}", self.flags))
            .field("keep_alive", &self.keep_alive)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Cursor over a frame body for the accessors below.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }
    fn binary(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.binary()?.to_vec()).ok()
    }
}

impl Frame {
    /// Name of its packet type.
    pub fn type_name(&self) -> &'static str {
        type_name(self.packet_type)
    }

    /// The QoS bits of a PUBLISH (0 for other packets).
    pub fn qos(&self) -> u8 {
        if self.packet_type == PUBLISH {
            (self.flags >> 1) & 0x03
        } else {
            0
        }
    }

    /// The packet id: of a PUBLISH with QoS > 0 (after the topic), or of
    /// PUBACK/PUBREC/PUBREL/PUBCOMP/SUBSCRIBE/SUBACK/UNSUBSCRIBE/UNSUBACK.
    pub fn packet_id(&self) -> Option<u16> {
        let mut c = Cursor { bytes: &self.body };
        match self.packet_type {
            PUBLISH if self.qos() > 0 => {
                c.binary()?;
                c.u16()
            }
            PUBACK..=UNSUBACK => c.u16(),
            _ => None,
        }
    }

    /// Topic of a PUBLISH.
    pub fn publish_topic(&self) -> Option<String> {
        if self.packet_type != PUBLISH {
            return None;
        }
        Cursor { bytes: &self.body }.string()
    }

    /// Payload of a PUBLISH.
    pub fn publish_payload(&self) -> Option<Vec<u8>> {
        if self.packet_type != PUBLISH {
            return None;
        }
        let mut c = Cursor { bytes: &self.body };
        c.binary()?;
        if self.qos() > 0 {
            c.u16()?;
        }
        Some(c.bytes.to_vec())
    }

    /// Topic filters and requested QoS of a SUBSCRIBE.
    pub fn subscribe_filters(&self) -> Option<Vec<(String, u8)>> {
        if self.packet_type != SUBSCRIBE {
            return None;
        }
        let mut c = Cursor { bytes: &self.body };
        c.u16()?;
        let mut filters = Vec::new();
        while !c.bytes.is_empty() {
            let f = c.string()?;
            filters.push((f, c.u8()?));
        }
        Some(filters)
    }

    /// Topic filters of an UNSUBSCRIBE.
    pub fn unsubscribe_filters(&self) -> Option<Vec<String>> {
        if self.packet_type != UNSUBSCRIBE {
            return None;
        }
        let mut c = Cursor { bytes: &self.body };
        c.u16()?;
        let mut filters = Vec::new();
        while !c.bytes.is_empty() {
            filters.push(c.string()?);
        }
        Some(filters)
    }

    /// The fields of a CONNECT (None if not a CONNECT or malformed).
    pub fn connect(&self) -> Option<ConnectInfo> {
        if self.packet_type != CONNECT {
            return None;
        }
        let mut c = Cursor { bytes: &self.body };
        let protocol_name = c.string()?;
        let protocol_level = c.u8()?;
        let flags = c.u8()?;
        let keep_alive = c.u16()?;
        let client_id = c.string()?;
        let will = if flags & 0x04 != 0 {
            Some((c.string()?, c.binary()?.to_vec()))
        } else {
            None
        };
        let username = if flags & 0x80 != 0 {
            Some(c.string()?)
        } else {
            None
        };
        let password = if flags & 0x40 != 0 {
            Some(c.binary()?.to_vec())
        } else {
            None
        };
        Some(ConnectInfo {
            protocol_name,
            protocol_level,
            flags,
            keep_alive,
            client_id,
            will,
            username,
            password,
        })
    }

    /// The frame as bytes again (fixed header + body).
    pub fn to_bytes(&self) -> Vec<u8> {
        frame(self.packet_type << 4 | self.flags, &self.body)
    }
}

/// Builds a frame: first byte, remaining length, body.
pub fn frame(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    out.extend(remaining_length(body.len()));
    out.extend_from_slice(body);
    out
}

/// The variable-length encoding of `len` (1..4 bytes; larger values are
/// encoded anyway, producing an invalid 5+ byte length on purpose).
pub fn remaining_length(mut len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return out;
        }
    }
}

/// CONNACK bytes: `20 02 <session present> <code>`.
pub fn connack(code: u8, session_present: bool) -> Vec<u8> {
    vec![0x20, 0x02, u8::from(session_present), code]
}

/// SUBACK bytes for packet id `pkid` with one return code per filter
/// (0x00/0x01 granted QoS, 0x80 failure).
pub fn suback(pkid: u16, codes: &[u8]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend_from_slice(codes);
    frame(0x90, &body)
}

/// PUBACK bytes for packet id `pkid`.
pub fn puback(pkid: u16) -> Vec<u8> {
    frame(0x40, &pkid.to_be_bytes())
}

/// UNSUBACK bytes for packet id `pkid`.
pub fn unsuback(pkid: u16) -> Vec<u8> {
    frame(0xB0, &pkid.to_be_bytes())
}

/// PINGRESP bytes.
pub fn pingresp() -> Vec<u8> {
    vec![0xD0, 0x00]
}

/// PUBLISH bytes (downlink from the fake server). `pkid` is used for QoS > 0.
pub fn publish(topic: &str, payload: &[u8], qos: u8, pkid: u16) -> Vec<u8> {
    let mut body = Vec::new();
    // Topics in tests are short; a longer one would be a test bug.
    let topic_len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
    body.extend_from_slice(&topic_len.to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos & 0x03) << 1, &body)
}

/// Where and why a script failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerError {
    /// Session (connection) number, 0-based.
    pub session: usize,
    /// Step number within the session, 0-based.
    pub step: usize,
    /// The step, as written in the script.
    pub what: String,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fake peer: session {} step {} ({}): {}",
            self.session, self.step, self.what, self.reason
        )
    }
}

impl std::error::Error for PeerError {}

#[derive(Default)]
struct State {
    frames: Vec<Frame>,
    outcome: Option<Result<(), PeerError>>,
    /// (session, step) being run, for "still running" messages.
    position: (usize, usize, String),
    accepted: usize,
    closed: Vec<(usize, Instant)>,
}

struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// A fake MQTT server running a script per accepted connection.
pub struct FakePeer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FakePeer {
    /// Accepts one connection and runs `script` on it.
    pub fn start(script: Vec<Step>) -> FakePeer {
        FakePeer::start_sessions(vec![script])
    }

    /// Accepts connections in turn and runs `scripts[i]` on the i-th. A
    /// finished session's connection stays open, unread, until the peer is
    /// dropped (end its script with `Close` or `ExpectClosed` otherwise); the
    /// last session's connection keeps being read and recorded.
    pub fn start_sessions(scripts: Vec<Vec<Step>>) -> FakePeer {
        FakePeer::start_with_timeout(scripts, DEFAULT_TIMEOUT)
    }

    /// Like [`FakePeer::start_sessions`]; `timeout` bounds each accept and
    /// each `Expect`-like step.
    pub fn start_with_timeout(scripts: Vec<Vec<Step>>, timeout: Duration) -> FakePeer {
        let listener = match TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("fake peer cannot bind 127.0.0.1:0: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("fake peer has no local address: {e}"),
        };
        if let Err(e) = listener.set_nonblocking(true) {
            panic!("fake peer cannot make its listener non-blocking: {e}");
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let runner = Runner {
            shared: Arc::clone(&shared),
            timeout,
        };
        let thread = thread::spawn(move || runner.run(&listener, scripts));
        FakePeer {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT` to point the client at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every frame received so far, in arrival order.
    pub fn received(&self) -> Vec<Frame> {
        self.shared.lock().frames.clone()
    }

    /// The received frames of one packet type.
    pub fn received_of(&self, packet_type: u8) -> Vec<Frame> {
        self.shared
            .lock()
            .frames
            .iter()
            .filter(|f| f.packet_type == packet_type)
            .cloned()
            .collect()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().accepted
    }

    /// When the client closed connection `conn` (None while open).
    pub fn closed_at(&self, conn: usize) -> Option<Instant> {
        self.shared
            .lock()
            .closed
            .iter()
            .find(|(c, _)| *c == conn)
            .map(|(_, at)| *at)
    }

    /// Waits until at least `n` frames arrived (or timeout); returns all.
    pub fn wait_for_frames(&self, n: usize, timeout: Duration) -> Vec<Frame> {
        self.wait_until(timeout, |s| s.frames.len() >= n);
        self.received()
    }

    /// Waits until the client closed connection `conn`; false on timeout.
    pub fn wait_closed(&self, conn: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.closed.iter().any(|(c, _)| *c == conn))
    }

    /// Waits for the script to finish: Ok, or the step that failed and why
    /// (also an error if it is still running after `timeout`).
    pub fn wait_done(&self, timeout: Duration) -> Result<(), PeerError> {
        self.wait_until(timeout, |s| s.outcome.is_some());
        let state = self.shared.lock();
        match &state.outcome {
            Some(outcome) => outcome.clone(),
            None => Err(PeerError {
                session: state.position.0,
                step: state.position.1,
                what: state.position.2.clone(),
                reason: format!("script still running after {timeout:?}"),
            }),
        }
    }

    fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if done(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl fmt::Debug for FakePeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakePeer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why reading stopped.
enum ReadEnd {
    /// The peer is being dropped.
    Stopped,
    /// A step failed.
    Failed(String),
}

type StepResult = Result<(), ReadEnd>;

struct Conn {
    index: usize,
    stream: TcpStream,
    buf: Vec<u8>,
    pending: VecDeque<Frame>,
    eof: bool,
}

struct Runner {
    shared: Arc<Shared>,
    timeout: Duration,
}

impl Runner {
    fn run(&self, listener: &TcpListener, scripts: Vec<Vec<Step>>) {
        let sessions = scripts.len();
        // Finished connections stay open (unread) until the peer is dropped,
        // unless the script closed them.
        let mut kept = Vec::new();
        for (session, script) in scripts.into_iter().enumerate() {
            self.shared
                .update(|s| s.position = (session, 0, "accept".into()));
            let mut conn = match self.accept(listener, session) {
                Ok(c) => c,
                Err(ReadEnd::Stopped) => return,
                Err(ReadEnd::Failed(reason)) => {
                    self.fail(session, 0, "accept", reason);
                    return;
                }
            };
            let last_session = session + 1 == sessions;
            let steps = script.len();
            for (i, step) in script.into_iter().enumerate() {
                let what = format!("{step:?}");
                self.shared
                    .update(|s| s.position = (session, i, what.clone()));
                if step == Step::Silent && last_session && i + 1 == steps {
                    self.shared.update(|s| s.outcome = Some(Ok(())));
                }
                match self.step(&mut conn, &step) {
                    Ok(()) => {}
                    Err(ReadEnd::Stopped) => return,
                    Err(ReadEnd::Failed(reason)) => {
                        self.fail(session, i, &what, reason);
                        return;
                    }
                }
            }
            if last_session {
                self.shared.update(|s| {
                    if s.outcome.is_none() {
                        s.outcome = Some(Ok(()));
                    }
                });
                // Keep recording until the client closes or we are dropped.
                let _ = self.silent(&mut conn);
            } else {
                kept.push(conn);
            }
        }
    }

    fn fail(&self, session: usize, step: usize, what: &str, reason: String) {
        self.shared.update(|s| {
            s.outcome = Some(Err(PeerError {
                session,
                step,
                what: what.to_string(),
                reason,
            }))
        });
    }

    fn accept(&self, listener: &TcpListener, index: usize) -> Result<Conn, ReadEnd> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if self.shared.stopped() {
                return Err(ReadEnd::Stopped);
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    let setup = stream
                        .set_nonblocking(false)
                        .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
                        .and_then(|()| stream.set_nodelay(true));
                    if let Err(e) = setup {
                        return Err(ReadEnd::Failed(format!(
                            "cannot set up the accepted socket: {e}"
                        )));
                    }
                    self.shared.update(|s| s.accepted += 1);
                    return Ok(Conn {
                        index,
                        stream,
                        buf: Vec::new(),
                        pending: VecDeque::new(),
                        eof: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(ReadEnd::Failed(format!(
                            "no client connected within {:?}",
                            self.timeout
                        )));
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(ReadEnd::Failed(format!("accept failed: {e}"))),
            }
        }
    }

    fn step(&self, conn: &mut Conn, step: &Step) -> StepResult {
        match step {
            Step::Expect(t) => self.expect(conn, *t, self.timeout).map(|_| ()),
            Step::ExpectWithin(t, d) => self.expect(conn, *t, *d).map(|_| ()),
            Step::ExpectNothing(d) => {
                self.pump(conn, Instant::now() + *d)?;
                match conn.pending.pop_front() {
                    None => Ok(()),
                    Some(f) => Err(ReadEnd::Failed(format!(
                        "expected nothing for {d:?}, got {} ({} body bytes)",
                        f.type_name(),
                        f.body.len()
                    ))),
                }
            }
            Step::Send(bytes) => self.send(conn, bytes),
            Step::Sleep(d) => self.pump(conn, Instant::now() + *d),
            Step::ConnAckNext(code) => {
                self.expect(conn, CONNECT, self.timeout)?;
                self.send(conn, &connack(*code, false))
            }
            Step::AckNextPublish => {
                let f = self.expect(conn, PUBLISH, self.timeout)?;
                match (f.qos(), f.packet_id()) {
                    (0, _) => Ok(()),
                    (_, Some(id)) => self.send(conn, &puback(id)),
                    (_, None) => Err(ReadEnd::Failed(
                        "PUBLISH with QoS > 0 but no packet id".into(),
                    )),
                }
            }
            Step::SubAckNext(codes) => {
                let f = self.expect(conn, SUBSCRIBE, self.timeout)?;
                match f.packet_id() {
                    Some(id) => self.send(conn, &suback(id, codes)),
                    None => Err(ReadEnd::Failed("SUBSCRIBE without a packet id".into())),
                }
            }
            Step::UnsubAckNext => {
                let f = self.expect(conn, UNSUBSCRIBE, self.timeout)?;
                match f.packet_id() {
                    Some(id) => self.send(conn, &unsuback(id)),
                    None => Err(ReadEnd::Failed("UNSUBSCRIBE without a packet id".into())),
                }
            }
            Step::PingRespNext => {
                self.expect(conn, PINGREQ, self.timeout)?;
                self.send(conn, &pingresp())
            }
            Step::Close => {
                let _ = conn.stream.shutdown(Shutdown::Both);
                conn.eof = true;
                Ok(())
            }
            Step::ExpectClosed(d) => {
                let deadline = Instant::now() + *d;
                while !conn.eof {
                    if Instant::now() >= deadline {
                        return Err(ReadEnd::Failed(format!(
                            "client did not close the connection within {d:?}"
                        )));
                    }
                    self.read_once(conn, deadline)?;
                }
                conn.pending.clear();
                Ok(())
            }
            Step::Silent => self.silent(conn),
        }
    }

    /// Reads and records until the client closes or the peer is dropped.
    fn silent(&self, conn: &mut Conn) -> StepResult {
        while !conn.eof {
            self.read_once(conn, Instant::now() + READ_SLICE)?;
        }
        Ok(())
    }

    fn send(&self, conn: &mut Conn, bytes: &[u8]) -> StepResult {
        conn.stream
            .write_all(bytes)
            .and_then(|()| conn.stream.flush())
            .map_err(|e| ReadEnd::Failed(format!("write of {} bytes failed: {e}", bytes.len())))
    }

    fn expect(&self, conn: &mut Conn, packet_type: u8, within: Duration) -> Result<Frame, ReadEnd> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(f) = conn.pending.pop_front() {
                if f.packet_type == packet_type {
                    return Ok(f);
                }
                return Err(ReadEnd::Failed(format!(
                    "expected {}, got {} (flags {:#x}, {} body bytes)",
                    type_name(packet_type),
                    f.type_name(),
                    f.flags,
                    f.body.len()
                )));
            }
            if conn.eof {
                return Err(ReadEnd::Failed(format!(
                    "expected {}, but the connection is closed",
                    type_name(packet_type)
                )));
            }
            if Instant::now() >= deadline {
                return Err(ReadEnd::Failed(format!(
                    "expected {}, nothing arrived within {within:?}",
                    type_name(packet_type)
                )));
            }
            self.read_once(conn, deadline)?;
        }
    }

    /// Reads and records frames until `until` (or EOF).
    fn pump(&self, conn: &mut Conn, until: Instant) -> StepResult {
        while !conn.eof && Instant::now() < until {
            self.read_once(conn, until)?;
        }
        if !conn.eof {
            return Ok(());
        }
        // Nothing more can arrive; just honour the wait.
        while Instant::now() < until {
            if self.shared.stopped() {
                return Err(ReadEnd::Stopped);
            }
            thread::sleep(Duration::from_millis(5).min(until - Instant::now()));
        }
        Ok(())
    }

    /// One bounded read (at most READ_SLICE, at most until `deadline`);
    /// parses and records complete frames.
    fn read_once(&self, conn: &mut Conn, deadline: Instant) -> StepResult {
        if self.shared.stopped() {
            return Err(ReadEnd::Stopped);
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), READ_SLICE);
        if let Err(e) = conn.stream.set_read_timeout(Some(wait)) {
            return Err(ReadEnd::Failed(format!("cannot set a read timeout: {e}")));
        }
        let mut chunk = [0u8; 4096];
        match conn.stream.read(&mut chunk) {
            Ok(0) => self.mark_closed(conn),
            Ok(n) => {
                conn.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                self.parse_frames(conn)?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            // Reset and friends: the client is gone.
            Err(_) => self.mark_closed(conn),
        }
        Ok(())
    }

    fn mark_closed(&self, conn: &mut Conn) {
        conn.eof = true;
        let index = conn.index;
        self.shared
            .update(|s| s.closed.push((index, Instant::now())));
    }

    fn parse_frames(&self, conn: &mut Conn) -> StepResult {
        loop {
            match split_frame(&conn.buf) {
                Ok(None) => return Ok(()),
                Ok(Some((first, body_start, total))) => {
                    let frame = Frame {
                        conn: conn.index,
                        packet_type: first >> 4,
                        flags: first & 0x0F,
                        body: conn.buf.get(body_start..total).unwrap_or_default().to_vec(),
                        at: Instant::now(),
                    };
                    conn.buf.drain(..total);
                    let recorded = frame.clone();
                    self.shared.update(|s| s.frames.push(recorded));
                    conn.pending.push_back(frame);
                }
                Err(why) => return Err(ReadEnd::Failed(why)),
            }
        }
    }
}

/// Finds the first whole frame in `buf`: (first byte, body start, total
/// length), None if incomplete, Err if the remaining length is malformed.
pub fn split_frame(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len: usize = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let body_start = 2 + i;
            let total = body_start + len;
            return Ok((buf.len() >= total).then_some((first, body_start, total)));
        }
    }
    Err(format!(
        "malformed remaining length (more than 4 bytes) after first byte {first:#04x}"
    ))
}
