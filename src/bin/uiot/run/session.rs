//! One local connection to the daemon's socket: a `uiot` command (or the
//! daemon's own hook services) speaking MQTT 3.1.1 to the daemon, which
//! relays it over its upstream connection.
//!
//! Owns: the peer check, the CONNECT rules of the socket (only the
//! daemon's own device: another ClientID gets CONNACK 2 and connects on
//! its own), reading and answering the connection's packets, its delivery
//! thread (upstream messages out to it) and its acknowledgement thread
//! (a PUBACK once the broker acknowledged upstream, in order).
//! Must not touch: the subscription table (`relay::Shared` methods), the
//! upstream connection's life.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uiot::packet::{
    self, ConnAck, ConnectReturnCode, Decoded, Packet, Publish, SubAck, SubAckCode,
};
use uiot::{Message, PublishToken, QoS};

use super::relay::{Shared, Sink, MAX_SESSIONS};

/// Messages waiting for a slow local subscriber; past this they are dropped
/// (counted and logged by the relay).
const DELIVERY_QUEUE: usize = 256;
/// Largest packet a local client may send: the platform's limit and the
/// fixed header.
const MAX_PACKET: usize = uiot::platform::MAX_PACKET + 8;
/// How long a new connection may take to send CONNECT.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

type Writer = Arc<Mutex<UnixStream>>;

/// Serves one connection until it ends (errors are logged here).
pub fn run(shared: &Arc<Shared>, owner: usize, stream: UnixStream) {
    shared.sessions.fetch_add(1, Ordering::SeqCst);
    match serve(shared, owner, &stream) {
        Ok(()) => log::debug!("local socket: connection {owner} closed"),
        Err(why) => log::warn!("local socket: connection {owner}: {why}; closed"),
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    shared.sessions.fetch_sub(1, Ordering::SeqCst);
}

fn send(w: &Writer, p: &Packet) -> Result<(), String> {
    let mut out = Vec::new();
    p.encode(&mut out)
        .map_err(|e| format!("encoding {}: {e}", p.summary()))?;
    let mut s = w.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    s.write_all(&out).map_err(|e| format!("writing: {e}"))
}

fn connack(w: &Writer, code: ConnectReturnCode) -> Result<(), String> {
    send(
        w,
        &Packet::ConnAck(ConnAck {
            session_present: false,
            code,
        }),
    )
}

/// Reads whole packets from the stream, bounded by [`MAX_PACKET`].
struct Reader {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Reader {
    /// The next packet; `Ok(None)` at a clean end of the stream.
    fn next(&mut self) -> Result<Option<Packet>, String> {
        loop {
            match packet::decode(&self.buf, MAX_PACKET) {
                Ok(Decoded::Packet { packet, len }) => {
                    self.buf.drain(..len.min(self.buf.len()));
                    return Ok(Some(packet));
                }
                Ok(Decoded::Incomplete { .. }) => {}
                Err(e) => return Err(format!("malformed packet ({e})")),
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err("the connection ended inside a packet".into()),
                Ok(n) => self.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err("silent for longer than its keep-alive".into())
                }
                Err(e) => return Err(format!("reading: {e}")),
            }
        }
    }
}

/// Whether the peer may use the socket: root, the daemon's user, or a
/// member (primary or supplementary group) of the socket's group.
fn allowed(shared: &Shared, stream: &UnixStream) -> Result<(), String> {
    let cred = rustix::net::sockopt::socket_peercred(stream)
        .map_err(|e| format!("cannot read the peer's credentials (SO_PEERCRED): {e}"))?;
    let (uid, gid, pid) = (
        cred.uid.as_raw(),
        cred.gid.as_raw(),
        cred.pid.as_raw_nonzero(),
    );
    let a = shared.access;
    if uid == 0 || uid == a.uid || gid == a.gid || in_group(pid.get(), a.gid) {
        return Ok(());
    }
    Err(format!(
        "process {pid} (uid {uid}) may not use the socket: it is not root, the daemon's user \
         or in the socket's group (gid {}); add the user to that group ([daemon] group)",
        a.gid
    ))
}

/// Whether process `pid` has `gid` among its supplementary groups.
fn in_group(pid: i32, gid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

fn serve(shared: &Arc<Shared>, owner: usize, stream: &UnixStream) -> Result<(), String> {
    let writer: Writer = Arc::new(Mutex::new(
        stream
            .try_clone()
            .map_err(|e| format!("cloning the socket: {e}"))?,
    ));
    let read_half = stream
        .try_clone()
        .map_err(|e| format!("cloning the socket: {e}"))?;
    let _ = read_half.set_read_timeout(Some(CONNECT_WAIT));
    let mut reader = Reader {
        stream: read_half,
        buf: Vec::new(),
    };
    let connect = match reader.next()? {
        Some(Packet::Connect(c)) => c,
        Some(other) => return Err(format!("sent {} before CONNECT", other.summary())),
        None => return Ok(()),
    };
    if let Err(why) = allowed(shared, stream) {
        let _ = connack(&writer, ConnectReturnCode::NotAuthorized);
        return Err(why);
    }
    if shared.sessions.load(Ordering::SeqCst) > MAX_SESSIONS {
        let _ = connack(&writer, ConnectReturnCode::ServerUnavailable);
        return Err(format!("more than {MAX_SESSIONS} local connections"));
    }
    if connect.client_id != shared.client_id {
        let _ = connack(&writer, ConnectReturnCode::IdentifierRejected);
        log::info!(
            "local socket: a client for {:?}, not this daemon's device {:?}, was sent to connect on its own",
            uiot::cut(&connect.client_id),
            shared.client_id
        );
        return Ok(());
    }
    connack(&writer, ConnectReturnCode::Accepted)?;
    let keep_alive = u64::from(connect.keep_alive);
    let _ = reader.stream.set_read_timeout(if keep_alive == 0 {
        None
    } else {
        Some(Duration::from_millis(keep_alive.saturating_mul(1500)))
    });
    let (deliver_tx, deliver_rx) = mpsc::sync_channel::<Message>(DELIVERY_QUEUE);
    let (ack_tx, ack_rx) = mpsc::channel::<(u16, Option<PublishToken>)>();
    let ack_timeout = shared.client.options().ack_timeout;
    let w = Arc::clone(&writer);
    spawn(&format!("uiot-local-{owner}-out"), move || {
        deliver(&w, &deliver_rx)
    });
    let w = Arc::clone(&writer);
    spawn(&format!("uiot-local-{owner}-ack"), move || {
        acknowledge(&w, &ack_rx, ack_timeout)
    });
    loop {
        let Some(p) = reader.next()? else {
            return Ok(());
        };
        match p {
            Packet::Publish(p) => publish(shared, p, &ack_tx)?,
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                for (filter, qos) in &s.filters {
                    match shared.subscribe(owner, filter, *qos, Sink::Session(deliver_tx.clone())) {
                        Ok(g) => codes.push(SubAckCode::Success(g)),
                        Err(e) => {
                            log::warn!("local socket: subscribing {filter}: {e}");
                            codes.push(SubAckCode::Failure);
                        }
                    }
                }
                send(
                    &writer,
                    &Packet::SubAck(SubAck {
                        pkid: s.pkid,
                        codes,
                    }),
                )?;
            }
            Packet::Unsubscribe(u) => {
                for f in &u.filters {
                    shared.unsubscribe(owner, f);
                }
                send(&writer, &Packet::UnsubAck(u.pkid))?;
            }
            Packet::PingReq => send(&writer, &Packet::PingResp)?,
            // Acknowledgements of what the daemon delivered.
            Packet::PubAck(_) => {}
            Packet::Disconnect => return Ok(()),
            other => {
                return Err(format!(
                    "sent {}, which a client does not send",
                    other.summary()
                ))
            }
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    let r = std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(64 * 1024)
        .spawn(f);
    if let Err(e) = r {
        log::warn!("local socket: cannot start thread {name}: {e}");
    }
}

/// Relays a local PUBLISH upstream; a QoS 1 one is acknowledged by the
/// acknowledgement thread once the broker acknowledged it.
fn publish(
    shared: &Shared,
    p: Publish,
    acks: &mpsc::Sender<(u16, Option<PublishToken>)>,
) -> Result<(), String> {
    match (p.qos, p.pkid) {
        (QoS::AtMostOnce, _) => {
            if let Err(e) = shared.client.enqueue(&p.topic, p.payload, QoS::AtMostOnce) {
                log::warn!(
                    "local socket: a QoS 0 message to {} not relayed: {e}",
                    uiot::cut(&p.topic)
                );
            }
            Ok(())
        }
        (QoS::AtLeastOnce, Some(pkid)) => {
            let token = shared
                .client
                .start_publish(&p.topic, p.payload, QoS::AtLeastOnce)
                .map_err(|e| format!("relaying a QoS 1 message to {}: {e}", uiot::cut(&p.topic)))?;
            // With the queue on disk and the link down, the message is safe
            // once stored: acknowledge it now rather than when the link is
            // back (the local command would time out).
            let stored = shared.client.options().queue.dir.is_some()
                && !shared.link_up.load(Ordering::SeqCst);
            if stored {
                log::debug!("local socket: a QoS 1 message to {} is in the on-disk queue (the link is down); acknowledged", uiot::cut(&p.topic));
            }
            acks.send((pkid, (!stored).then_some(token)))
                .map_err(|_| "its acknowledgement thread ended".to_string())
        }
        (QoS::AtLeastOnce, None) => Err("sent a QoS 1 PUBLISH without a packet id".into()),
    }
}

/// PUBACKs in order, each once the broker acknowledged that message.
fn acknowledge(w: &Writer, rx: &Receiver<(u16, Option<PublishToken>)>, timeout: Duration) {
    for (pkid, token) in rx.iter() {
        if let Err(e) = token.map_or(Ok(()), |t| t.wait_timeout(timeout)) {
            log::warn!("local socket: a relayed QoS 1 message was not acknowledged upstream: {e}");
            let s = w.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        }
        if send(w, &Packet::PubAck(pkid)).is_err() {
            return;
        }
    }
}

/// Writes upstream messages to the local subscriber.
fn deliver(w: &Writer, rx: &Receiver<Message>) {
    let mut next: u16 = 0;
    for m in rx.iter() {
        let pkid = (m.qos == QoS::AtLeastOnce).then(|| {
            next = next.checked_add(1).unwrap_or(1);
            next
        });
        let p = Packet::Publish(Publish {
            dup: false,
            qos: m.qos,
            retain: false,
            topic: m.topic,
            pkid,
            payload: m.payload,
        });
        if send(w, &p).is_err() {
            return;
        }
    }
}
