//! The daemon's local socket: every `uiot` command of the board (and the
//! daemon's own hooks) connects here instead of to the broker, and the
//! daemon relays over its one connection, so they all share the device's
//! single login (a second login would kick the first).
//!
//! The socket speaks MQTT 3.1.1 (the packet layer's own codec, both ways):
//! a command is a normal `uiot::Client` with `Options::local_socket` set.
//! The daemon acknowledges a QoS 1 PUBLISH only once the broker
//! acknowledged it upstream, grants a SUBSCRIBE with the broker's answer,
//! and hands every upstream message to each local subscription it matches.
//!
//! Owns: binding the socket (directory 0750, socket 0660, group), checking
//! each peer (SO_PEERCRED: root, the daemon's user, or the socket's
//! group), the table of local subscriptions and its reference counts on
//! the upstream subscriptions, dispatching upstream messages.
//! Must not touch: the upstream connection's life (the daemon owns the
//! `Client`), what one local connection does (`session`).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
// No AtomicU64: 32-bit MIPS (OpenWrt routers) has no 64-bit atomics.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use uiot::packet::filter_matches;
use uiot::{Client, Message, QoS};

use super::session;

/// Local connections at once; more are refused (CONNACK 3).
pub const MAX_SESSIONS: usize = 64;
/// Connections accepted beyond [`MAX_SESSIONS`] only to be answered
/// CONNACK 3; past this they are closed unanswered.
const ACCEPT_MARGIN: usize = 8;

/// What receives the messages of a subscription.
#[derive(Clone)]
pub enum Sink {
    /// A local connection's delivery queue.
    Session(SyncSender<Message>),
    /// The daemon itself (serial downlink, `[subscribe]` hooks).
    Internal(Arc<dyn Fn(&Message) + Send + Sync>),
}

struct Entry {
    owner: usize,
    filter: String,
    qos: QoS,
    sink: Sink,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    /// Upstream subscriptions and how many entries hold each.
    refs: HashMap<String, usize>,
}

/// Who may connect: root, `uid`, or members of `gid`.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    pub uid: u32,
    pub gid: u32,
}

/// What the sessions share with the relay.
pub struct Shared {
    pub client: Client,
    /// The device's ClientID: a CONNECT with another is refused (CONNACK 2),
    /// so a command for another device connects on its own.
    pub client_id: String,
    pub access: Access,
    /// Whether the upstream link is up now (the daemon's events thread
    /// keeps it).
    pub link_up: Arc<AtomicBool>,
    table: Mutex<Table>,
    pub sessions: AtomicUsize,
    next_owner: AtomicUsize,
    pub stop: AtomicBool,
    dropped: AtomicUsize,
    /// Connections closed unanswered past the cap.
    refused: AtomicUsize,
    /// Open local connections, to shut them down at the end.
    open: Mutex<HashMap<usize, UnixStream>>,
}

/// The running local socket.
pub struct Relay {
    shared: Arc<Shared>,
    path: PathBuf,
    accept: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Creates the socket at `path`: its directory (0750) if missing, a stale
/// socket of a dead daemon removed, the socket 0660 and owned by `group`.
/// Fails if another daemon answers there.
pub fn bind(path: &Path, group: Option<u32>) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)?;
            if let Some(gid) = group {
                chown_group(dir, gid)?;
            }
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another uiot daemon answers on {}; stop it first (one login per device)",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = group {
        chown_group(path, gid)?;
    }
    Ok(listener)
}

fn chown_group(path: &Path, gid: u32) -> io::Result<()> {
    rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid))).map_err(io::Error::from)
}

/// The gid of group `name`, from /etc/group.
pub fn group_id(name: &str) -> io::Result<u32> {
    let text = std::fs::read_to_string("/etc/group")?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (n == name).then_some(gid)
        })
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no group {name:?} in /etc/group; create it (addgroup --system {name}) or change [daemon] group"),
            )
        })
}

impl Relay {
    /// Starts accepting on `listener`, relaying over `client`.
    pub fn start(
        listener: UnixListener,
        path: PathBuf,
        client: Client,
        access: Access,
        link_up: Arc<AtomicBool>,
    ) -> Relay {
        let client_id = client.options().client_id.clone();
        let shared = Arc::new(Shared {
            client,
            client_id,
            access,
            link_up,
            table: Mutex::new(Table::default()),
            sessions: AtomicUsize::new(0),
            next_owner: AtomicUsize::new(1),
            stop: AtomicBool::new(false),
            dropped: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("uiot-socket".into())
            .stack_size(128 * 1024)
            .spawn(move || accept_loop(&listener, &s))
            .map_err(|e| log::error!("cannot start the local socket's thread: {e}"))
            .ok();
        Relay {
            shared,
            path,
            accept,
        }
    }

    /// Subscribes the daemon itself (upstream too, if new).
    pub fn subscribe_internal(
        &self,
        filter: &str,
        qos: QoS,
        f: Arc<dyn Fn(&Message) + Send + Sync>,
    ) -> Result<QoS, uiot::Error> {
        self.shared.subscribe(0, filter, qos, Sink::Internal(f))
    }

    /// What hands one upstream message to every subscription it matches.
    pub fn dispatcher(&self) -> Arc<dyn Fn(&Message) + Send + Sync> {
        let shared = Arc::clone(&self.shared);
        Arc::new(move |m| shared.dispatch(m))
    }

    /// Stops accepting, closes every local connection, removes the socket.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for (_, s) in lock(&self.shared.open).drain() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        // Nothing is subscribed for this socket's table any more.
        let mut t = lock(&self.shared.table);
        t.entries.clear();
        for (filter, _) in t.refs.drain() {
            if let Err(e) = self.shared.client.unsubscribe(&[filter.as_str()]) {
                log::debug!("local socket: unsubscribing {filter} upstream: {e}");
            }
        }
        drop(t);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("local socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        // Connections beyond the cap (and a margin for those still in
        // their CONNECT) are closed at once: no thread, no memory.
        if lock(&shared.open).len() >= MAX_SESSIONS + ACCEPT_MARGIN {
            let n = shared.refused.fetch_add(1, Ordering::Relaxed);
            if (n + 1).is_power_of_two() {
                log::warn!(
                    "local socket: more than {MAX_SESSIONS} connections; {} refused so far",
                    n + 1
                );
            }
            drop(stream);
            continue;
        }
        let owner = shared.next_owner.fetch_add(1, Ordering::Relaxed);
        if let Ok(c) = stream.try_clone() {
            lock(&shared.open).insert(owner, c);
        }
        let s = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name(format!("uiot-local-{owner}"))
            .stack_size(128 * 1024)
            .spawn(move || {
                session::run(&s, owner, stream);
                s.forget(owner);
                lock(&s.open).remove(&owner);
            });
        if let Err(e) = spawned {
            log::warn!("local socket: cannot start a thread for a connection: {e}");
            lock(&shared.open).remove(&owner);
        }
    }
}

impl Shared {
    /// Adds a subscription of `owner`; the first for its filter subscribes
    /// upstream (and its refusal refuses this one).
    pub fn subscribe(
        &self,
        owner: usize,
        filter: &str,
        qos: QoS,
        sink: Sink,
    ) -> Result<QoS, uiot::Error> {
        let mut t = lock(&self.table);
        let granted = if t.refs.get(filter).copied().unwrap_or(0) == 0 {
            // Subscribing upstream under the lock keeps the counts exact;
            // it waits for the broker's SUBACK (ack_timeout at most).
            let codes = self.client.subscribe(&[(filter, qos)])?;
            codes.first().copied().unwrap_or(qos)
        } else {
            qos
        };
        *t.refs.entry(filter.to_string()).or_insert(0) += 1;
        t.entries.push(Entry {
            owner,
            filter: filter.to_string(),
            qos: granted,
            sink,
        });
        Ok(granted)
    }

    /// Removes `owner`'s subscription to `filter` (if any).
    pub fn unsubscribe(&self, owner: usize, filter: &str) {
        let mut t = lock(&self.table);
        if let Some(i) = t
            .entries
            .iter()
            .position(|e| e.owner == owner && e.filter == filter)
        {
            t.entries.remove(i);
            self.release(&mut t, filter);
        }
    }

    /// Removes every subscription of `owner`.
    pub fn forget(&self, owner: usize) {
        let mut t = lock(&self.table);
        let mine: Vec<String> = t
            .entries
            .iter()
            .filter(|e| e.owner == owner)
            .map(|e| e.filter.clone())
            .collect();
        t.entries.retain(|e| e.owner != owner);
        for f in mine {
            self.release(&mut t, &f);
        }
    }

    fn release(&self, t: &mut Table, filter: &str) {
        let left = match t.refs.get_mut(filter) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => return,
        };
        if left == 0 {
            t.refs.remove(filter);
            if let Err(e) = self.client.unsubscribe(&[filter]) {
                log::warn!("local socket: unsubscribing {filter} upstream: {e}");
            }
        }
    }

    fn dispatch(&self, m: &Message) {
        let sinks: Vec<(Sink, QoS)> = lock(&self.table)
            .entries
            .iter()
            .filter(|e| filter_matches(&e.filter, &m.topic))
            .map(|e| (e.sink.clone(), e.qos))
            .collect();
        for (sink, qos) in sinks {
            match sink {
                Sink::Internal(f) => f(m),
                Sink::Session(tx) => {
                    let mut copy = m.clone();
                    copy.qos = qos.min(m.qos);
                    if let Err(TrySendError::Full(_)) = tx.try_send(copy) {
                        let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                        if (n + 1).is_power_of_two() {
                            log::warn!(
                                "local socket: a local subscriber does not keep up; {} message(s) dropped for it so far",
                                n + 1
                            );
                        }
                    }
                }
            }
        }
    }
}
