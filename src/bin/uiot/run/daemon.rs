//! The daemon's life: connect (retrying), start the local socket and the
//! services, wait for signals, reload or stop.
//!
//! Owns: the order of start-up and shutdown, the signal loop, what a
//! reload restarts (the connection only when `[device]`, `[connection]`,
//! `[limits]`, `[reconnect]` or `[queue]` changed), retrying a refused
//! login every `[reconnect] max` without exiting.
//! Must not touch: what the socket does (`relay`), what the services do
//! (`services`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use uiot::config::Config;
use uiot::{Client, Error, Event, Message};

use super::relay::{self, Access, Relay};
use super::services::Services;
use crate::cli::{self, Failure};

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Stop,
    Reload,
}

/// How long a stop may take: hooks finishing, the queue flushed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Runs until SIGTERM or SIGINT; `path` is what `-c` named (`None`: the
/// default lookup), `config` its contents at start.
pub fn run(path: Option<PathBuf>, mut config: Config) -> Result<(), Failure> {
    let asks = signals()?;
    log::info!(
        "uiot {} starting as {}.{} ({})",
        env!("CARGO_PKG_VERSION"),
        config.device.product_sn,
        config.device.device_sn,
        config.path.display()
    );
    loop {
        let Some(client) = connect(&path, &mut config, &asks)? else {
            log::info!("stopped before connecting");
            return Ok(());
        };
        let target = Target::default();
        let on_event = OnEvent::default();
        let link_up = Arc::new(AtomicBool::new(true));
        start_dispatcher(&client, &target);
        start_events(&client, &on_event, &link_up);
        loop {
            let running = Running::start(&config, &client, &target, &on_event, &link_up)?;
            let ask = wait(&asks);
            running.stop();
            if ask == Ask::Stop {
                log::info!("stopping: flushing the queue and disconnecting");
                if let Err(e) = client.disconnect() {
                    log::warn!("while disconnecting: {e}");
                }
                log::info!("stopped");
                return Ok(());
            }
            match cli::load_config(path.clone()) {
                Err(f) => {
                    log::error!("reload: the configuration has problems; keeping the old one: {f}");
                }
                Ok(new) if connection_changed(&config, &new) => {
                    log::info!("reload: connection settings changed; reconnecting");
                    config = new;
                    if let Err(e) = client.disconnect() {
                        log::warn!("while disconnecting: {e}");
                    }
                    break;
                }
                Ok(new) => {
                    log::info!("reload: restarting the socket, hooks and serial bridges");
                    config = new;
                }
            }
        }
    }
}

fn connection_changed(old: &Config, new: &Config) -> bool {
    old.device != new.device
        || old.connection != new.connection
        || old.limits != new.limits
        || old.reconnect != new.reconnect
        || old.queue != new.queue
}

/// SIGTERM, SIGINT and SIGHUP as [`Ask`]s, from a thread of their own.
fn signals() -> Result<Receiver<Ask>, Failure> {
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|e| {
            Failure::Uiot(Error::Io {
                context: "installing the signal handlers".into(),
                source: e,
            })
        })?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("uiot-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for s in signals.forever() {
                let ask = if s == SIGHUP { Ask::Reload } else { Ask::Stop };
                if tx.send(ask).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| {
            Failure::Uiot(Error::Io {
                context: "starting the signal thread".into(),
                source: e,
            })
        })?;
    Ok(rx)
}

fn wait(asks: &Receiver<Ask>) -> Ask {
    asks.recv().unwrap_or(Ask::Stop)
}

/// Connects, retrying until it works: a refused login (wrong secret, an
/// unregistered device, a refused registration) every `[reconnect] max`,
/// an unreachable broker with doubling waits from `min` to `max`. SIGHUP
/// rereads the configuration and tries at once (a fixed secret); SIGTERM
/// ends it (`None`). A configuration that is wrong at start is an error.
fn connect(
    path: &Option<PathBuf>,
    config: &mut Config,
    asks: &Receiver<Ask>,
) -> Result<Option<Client>, Failure> {
    let mut wait = config.reconnect.min;
    loop {
        let attempt = uiot::platform::dynreg::device_options(config).and_then(Client::connect);
        let pause = match attempt {
            Ok(c) => {
                log::info!(
                    "connected to {}:{} as {}",
                    config.connection.host,
                    config.connection.port,
                    c.options().client_id
                );
                return Ok(Some(c));
            }
            Err(e @ Error::Config(_)) => return Err(Failure::Uiot(e)),
            Err(e @ (Error::Refused(_) | Error::Platform { .. } | Error::Tls(_))) => {
                log::error!(
                    "login refused: {e}; trying again in {} s or on SIGHUP (after fixing the configuration)",
                    config.reconnect.max.as_secs()
                );
                config.reconnect.max
            }
            Err(e) => {
                log::warn!(
                    "cannot connect: {e}; trying again in {} s",
                    wait.as_secs_f32()
                );
                let w = wait;
                wait = wait.saturating_mul(2).min(config.reconnect.max);
                w
            }
        };
        match asks.recv_timeout(pause) {
            Ok(Ask::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(None),
            Ok(Ask::Reload) => match cli::load_config(path.clone()) {
                Ok(new) => {
                    log::info!("reload: trying again with the new configuration");
                    *config = new;
                    wait = config.reconnect.min;
                }
                Err(f) => {
                    log::error!("reload: the configuration has problems; keeping the old one: {f}")
                }
            },
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Where the dispatcher sends upstream messages: the current local
/// socket's table (replaced when a reload restarts the socket).
type Target = Arc<Mutex<Option<Arc<dyn Fn(&Message) + Send + Sync>>>>;

/// What takes the connection's events: the event, and whether it came
/// before these services started (it waited for them).
pub type EventHandler = Arc<dyn Fn(Event, bool) + Send + Sync>;

/// Where the events thread sends the connection's events: the current
/// services (replaced when a reload restarts them). An event that comes
/// while there are none waits for the next ones: the first connection's
/// `Connected` always comes before the services start (its on_connect
/// hook was lost), and a link lost during a reload still runs
/// on_disconnect.
#[derive(Default)]
struct EventSink {
    handler: Option<EventHandler>,
    waiting: VecDeque<Event>,
}

type OnEvent = Arc<Mutex<EventSink>>;

/// Events kept while no services run; beyond, the oldest is dropped.
const MAX_WAITING_EVENTS: usize = 64;

/// One thread per connection takes the connection's events and hands them
/// to the current [`OnEvent`]; it ends when the client is disconnected.
fn start_events(client: &Client, on_event: &OnEvent, link_up: &Arc<AtomicBool>) {
    let events = client.events();
    let on_event = Arc::clone(on_event);
    let link_up = Arc::clone(link_up);
    let started = std::thread::Builder::new()
        .name("uiot-events".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            while let Some(e) = events.recv() {
                match e {
                    Event::Connected { .. } => link_up.store(true, Ordering::SeqCst),
                    Event::Disconnected(_) => link_up.store(false, Ordering::SeqCst),
                    _ => {}
                }
                let mut sink = on_event
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match sink.handler.clone() {
                    Some(f) => {
                        drop(sink);
                        f(e, false);
                    }
                    None => {
                        if sink.waiting.len() >= MAX_WAITING_EVENTS {
                            let _ = sink.waiting.pop_front();
                        }
                        sink.waiting.push_back(e);
                    }
                }
            }
        });
    if let Err(e) = started {
        log::error!("cannot start the events thread: {e}");
    }
}

/// One thread per connection takes every upstream message and hands it to
/// the current [`Target`]; it ends when the client is disconnected.
fn start_dispatcher(client: &Client, target: &Target) {
    let messages = client.messages();
    let target = Arc::clone(target);
    let started = std::thread::Builder::new()
        .name("uiot-dispatch".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            for m in messages.iter() {
                let f = target
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                match f {
                    Some(f) => f(&m),
                    None => log::debug!("message on {} while restarting; dropped", m.topic),
                }
            }
        });
    if let Err(e) = started {
        log::error!("cannot start the dispatcher thread: {e}");
    }
}

/// The socket and the services over one connection.
struct Running {
    relay: Relay,
    services: Services,
    target: Target,
    on_event: OnEvent,
}

impl Running {
    fn start(
        config: &Config,
        client: &Client,
        target: &Target,
        on_event: &OnEvent,
        link_up: &Arc<AtomicBool>,
    ) -> Result<Running, Failure> {
        let socket = &config.daemon.socket;
        let gid = match &config.daemon.group {
            Some(name) => Some(relay::group_id(name).map_err(|e| socket_error(socket, e))?),
            None => None,
        };
        let listener = relay::bind(socket, gid).map_err(|e| socket_error(socket, e))?;
        let access = Access {
            uid: rustix::process::getuid().as_raw(),
            gid: gid.unwrap_or_else(|| rustix::process::getgid().as_raw()),
        };
        let relay = Relay::start(
            listener,
            socket.clone(),
            client.clone(),
            access,
            Arc::clone(link_up),
        );
        *target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(relay.dispatcher());
        log::info!("local socket {} ready", socket.display());
        let services = Services::start(config, client, &relay);
        let f = services.on_event(config);
        {
            // Under the lock: the waiting events go first, in order.
            let mut sink = on_event
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for e in sink.waiting.drain(..) {
                f(e, true);
            }
            sink.handler = Some(f);
        }
        Ok(Running {
            relay,
            services,
            target: Arc::clone(target),
            on_event: Arc::clone(on_event),
        })
    }

    fn stop(self) {
        self.on_event
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .handler = None;
        self.services.stop(STOP_DEADLINE);
        *self
            .target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.relay.stop();
    }
}

fn socket_error(path: &std::path::Path, e: std::io::Error) -> Failure {
    Failure::Uiot(Error::Unreachable(format!(
        "cannot serve the local socket {}: {e} (check [daemon] socket and group, and that \
         this user may create it)",
        path.display()
    )))
}
