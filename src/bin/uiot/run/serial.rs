//! One serial port bridged to frames: a reader thread (port → [`Framer`]
//! → uplink callback) and a writer thread (bounded downlink queue →
//! [`encode_downlink`] → port), with reopening when the port is absent or
//! vanishes (USB unplugged).
//!
//! Owns: opening and configuring the port, the two threads, the reopen
//! loop and its log lines, the downlink queue, the counters in
//! [`SerialStats`], stopping.
//! Must not touch: how bytes become frames (`framing`), what is done with
//! a frame (the uplink callback; the daemon publishes it), the config file
//! (its loader fills [`SerialSettings`], using the `FromStr` impls of
//! serial_settings.rs).

use std::fmt;
use std::io;
// No AtomicUsize: 32-bit MIPS (OpenWrt routers) has no 64-bit atomics.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serialport::SerialPort;

use super::framing::{encode_downlink, Framer};

#[path = "serial_settings.rs"]
mod settings;
pub use settings::{FlowControl, Parity, SerialSettings};

/// An open port (reads and writes through its supertraits).
type Port = Box<dyn SerialPort>;

/// Longest read of a quiet port: the reader sees the stop flag within it.
/// A port that stays quiet wakes the reader once per READ_WAIT; the writer
/// and the reopen wait sleep until woken.
const READ_WAIT: Duration = Duration::from_secs(1);
/// Downlink frames queued for the writer before [`DownlinkSender::send`]
/// refuses.
const QUEUE_FRAMES: usize = 64;
/// Stack of the writer thread: it only encodes and writes.
const TX_STACK: usize = 64 * 1024;
/// Stack of the reader thread: it also runs the uplink callback. Stack
/// pages cost memory only once touched.
const RX_STACK: usize = 128 * 1024;
/// One read from the port (on the heap, not the small stack).
const READ_BUF: usize = 4096;
/// How long one downlink frame may wait on a port that takes no bytes
/// (flow control held off) before it is dropped.
const WRITE_GIVE_UP: Duration = Duration::from_secs(2);

/// Counters of a [`Bridge`], read with [`Bridge::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SerialStats {
    /// Frames handed to the uplink callback.
    pub frames_up: u64,
    /// Downlink frames written to the port.
    pub frames_down: u64,
    /// Uplink frames cut to `max_frame`.
    pub cut: u64,
    /// Downlink frames dropped: port closed, write failed or timed out, or
    /// too long for a length prefix. (Refused by a full queue is not
    /// counted: `send` hands those back.)
    pub dropped_down: u64,
    /// Times the port was opened after a failed open or after it vanished.
    pub reopens: u64,
    /// Whether the port is open now.
    pub open: bool,
}

/// The counters and the port handle shared by the bridge and its threads.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    open: AtomicBool,
    frames_up: AtomicUsize,
    frames_down: AtomicUsize,
    cut: AtomicUsize,
    dropped_down: AtomicUsize,
    reopens: AtomicUsize,
    /// The writer's clone of the open port; `None` while it is closed.
    writer_port: Mutex<Option<Port>>,
    /// Wakes the reopen wait at stop.
    sleeping: Mutex<()>,
    wake: std::sync::Condvar,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn writer_port(&self) -> MutexGuard<'_, Option<Port>> {
        self.writer_port
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn bump(counter: &AtomicUsize) -> usize {
    counter.fetch_add(1, Ordering::Relaxed).saturating_add(1)
}

/// A counter as the `u64` of [`SerialStats`].
fn count(counter: &AtomicUsize) -> u64 {
    u64::try_from(counter.load(Ordering::Relaxed)).unwrap_or(u64::MAX)
}

/// The downlink queue was full (or the bridge stopped): the frame is
/// handed back, not sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Full(pub Vec<u8>);

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "serial downlink queue full ({QUEUE_FRAMES} frames) or bridge stopped"
        )
    }
}

impl std::error::Error for Full {}

/// Queues downlink frames for a [`Bridge`]'s writer thread; cheap to clone,
/// usable from any thread.
#[derive(Clone, Debug)]
pub struct DownlinkSender {
    tx: SyncSender<Down>,
}

/// What the writer thread takes.
enum Down {
    Frame(Vec<u8>),
    /// End now (sent at stop).
    Stop,
}

impl DownlinkSender {
    /// Queues `payload` without blocking. The writer encodes it for the
    /// framing (length prefix or suffix) and writes it if the port is
    /// open; a frame whose turn comes while the port is closed is dropped,
    /// counted in `dropped_down` and logged (a warn line when the reason
    /// changes, so a long outage logs once). `Err` if 64 frames are
    /// already waiting, or the bridge was stopped.
    pub fn send(&self, payload: Vec<u8>) -> Result<(), Full> {
        self.tx.try_send(Down::Frame(payload)).map_err(|e| match e {
            TrySendError::Full(Down::Frame(p)) | TrySendError::Disconnected(Down::Frame(p)) => {
                Full(p)
            }
            _ => Full(Vec::new()),
        })
    }
}

/// A running serial bridge; stopping it (or dropping it) ends its threads.
pub struct Bridge {
    shared: Arc<Shared>,
    sender: DownlinkSender,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Bridge {
    /// Starts the reader thread (`serial-NAME-rx`), which opens the port,
    /// reopens it every `reopen_every` while it is absent, and calls
    /// `uplink` with each frame; and the writer thread (`serial-NAME-tx`)
    /// for [`Bridge::sender`]. `uplink` runs on the reader thread: while it
    /// blocks, the port is not read (the kernel buffers a little). `Err`
    /// only if a thread cannot be spawned.
    pub fn start(
        settings: SerialSettings,
        uplink: Box<dyn FnMut(Vec<u8>) + Send>,
    ) -> io::Result<Bridge> {
        let settings = Arc::new(settings);
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::sync_channel(QUEUE_FRAMES);
        let mut bridge = Bridge {
            shared: Arc::clone(&shared),
            sender: DownlinkSender { tx },
            reader: None,
            writer: None,
        };
        let (s, sh) = (Arc::clone(&settings), Arc::clone(&shared));
        bridge.reader = Some(
            thread::Builder::new()
                .name(format!("serial-{}-rx", settings.name))
                .stack_size(RX_STACK)
                .spawn(move || read_loop(&s, &sh, uplink))?,
        );
        // On an error here, dropping `bridge` stops the reader.
        bridge.writer = Some(
            thread::Builder::new()
                .name(format!("serial-{}-tx", settings.name))
                .stack_size(TX_STACK)
                .spawn(move || write_loop(&settings, &shared, &rx))?,
        );
        Ok(bridge)
    }

    /// A handle that queues downlink frames.
    pub fn sender(&self) -> DownlinkSender {
        self.sender.clone()
    }

    /// The counters now.
    pub fn stats(&self) -> SerialStats {
        let s = &self.shared;
        SerialStats {
            frames_up: count(&s.frames_up),
            frames_down: count(&s.frames_down),
            cut: count(&s.cut),
            dropped_down: count(&s.dropped_down),
            reopens: count(&s.reopens),
            open: s.open.load(Ordering::Relaxed),
        }
    }

    /// Stops both threads (the reader looks at the stop flag at least once
    /// per second, unless the uplink callback blocks; the writer and the
    /// reopen wait are woken) and waits for them; the port is closed.
    /// Frames still queued are dropped.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.sender.tx.try_send(Down::Stop);
        {
            let _g = self
                .shared
                .sleeping
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.shared.wake.notify_all();
        }
        for handle in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            // A panicked thread has nothing left to clean up.
            let _ = handle.join();
        }
    }
}

/// Logs a warn line only when the reason differs from the last one logged.
fn warn_once(last: &mut Option<String>, settings: &SerialSettings, what: &str, error: String) {
    if last.as_deref() != Some(error.as_str()) {
        log::warn!(
            "serial {}: {} {what}: {error}",
            settings.name,
            settings.device.display()
        );
    }
    *last = Some(error);
}

/// The reader thread: open, pump, and after a failure or loss wait
/// `reopen_every` and open again, until stopped.
fn read_loop(
    settings: &SerialSettings,
    shared: &Shared,
    mut uplink: Box<dyn FnMut(Vec<u8>) + Send>,
) {
    let mut framer = Framer::new(settings.framing, settings.max_frame);
    let mut buf = vec![0u8; READ_BUF];
    // Why the port is not open, as last logged; `None` until a failure.
    let mut last_error: Option<String> = None;
    while !shared.stopped() {
        match open(settings) {
            Ok((mut port, writer_port)) => {
                if last_error.take().is_some() {
                    bump(&shared.reopens);
                    log::info!(
                        "serial {}: {} open again",
                        settings.name,
                        settings.device.display()
                    );
                } else {
                    log::debug!(
                        "serial {}: {} open",
                        settings.name,
                        settings.device.display()
                    );
                }
                *shared.writer_port() = Some(writer_port);
                shared.open.store(true, Ordering::Relaxed);
                let lost = pump(
                    settings,
                    shared,
                    port.as_mut(),
                    &mut framer,
                    &mut buf,
                    &mut uplink,
                );
                shared.open.store(false, Ordering::Relaxed);
                *shared.writer_port() = None;
                framer.clear();
                match lost {
                    Some(error) => warn_once(&mut last_error, settings, "lost", error),
                    None => return,
                }
            }
            Err(error) => warn_once(&mut last_error, settings, "cannot open", error),
        }
        sleep_unless_stopped(shared, settings.reopen_every);
    }
}

/// Sleeps `total`, returning early once stopped.
fn sleep_unless_stopped(shared: &Shared, total: Duration) {
    let g = shared
        .sleeping
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let _ = shared
        .wake
        .wait_timeout_while(g, total, |_| !shared.stopped());
}

/// Opens and configures the port; returns it and a clone for the writer.
fn open(s: &SerialSettings) -> Result<(Port, Port), String> {
    let data_bits = match s.data_bits {
        5 => serialport::DataBits::Five,
        6 => serialport::DataBits::Six,
        7 => serialport::DataBits::Seven,
        8 => serialport::DataBits::Eight,
        n => return Err(format!("data_bits {n} is not one of: 5, 6, 7, 8")),
    };
    let stop_bits = match s.stop_bits {
        1 => serialport::StopBits::One,
        2 => serialport::StopBits::Two,
        n => return Err(format!("stop_bits {n} is not one of: 1, 2")),
    };
    let parity = match s.parity {
        Parity::None => serialport::Parity::None,
        Parity::Odd => serialport::Parity::Odd,
        Parity::Even => serialport::Parity::Even,
    };
    let flow_control = match s.flow_control {
        FlowControl::None => serialport::FlowControl::None,
        FlowControl::Software => serialport::FlowControl::Software,
        FlowControl::Hardware => serialport::FlowControl::Hardware,
    };
    // A read returns after this much silence, so idle ends a frame on time
    // and the stop flag is seen.
    let timeout = READ_WAIT;
    let port = serialport::new(s.device.to_string_lossy(), s.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(flow_control)
        .timeout(timeout)
        .open()
        .map_err(|e| e.to_string())?;
    let writer = port.try_clone().map_err(|e| e.to_string())?;
    Ok((port, writer))
}

/// Reads the open port into the framer and hands out frames until the
/// port fails (`Some(reason)`) or the bridge stops (`None`).
fn pump(
    settings: &SerialSettings,
    shared: &Shared,
    port: &mut dyn SerialPort,
    framer: &mut Framer,
    buf: &mut [u8],
    uplink: &mut Box<dyn FnMut(Vec<u8>) + Send>,
) -> Option<String> {
    let idle_time = settings.framing.idle_time();
    // When the last byte came, while the framer may hold a frame.
    let mut last_byte: Option<Instant> = None;
    let mut frames = Vec::new();
    while !shared.stopped() {
        // Short only while a frame waits for the silence that ends it.
        let wait = match (idle_time, last_byte) {
            (Some(idle), Some(at)) => idle
                .saturating_sub(at.elapsed())
                .clamp(Duration::from_millis(1), READ_WAIT),
            _ => READ_WAIT,
        };
        let _ = port.set_timeout(wait);
        match port.read(buf) {
            // A hung-up tty reads as end of file.
            Ok(0) => return Some("end of file (hung up)".to_string()),
            Ok(n) => {
                framer.push(buf.get(..n).unwrap_or_default(), &mut frames);
                last_byte = Some(Instant::now());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Some(e.to_string()),
        }
        if let (Some(idle), Some(at)) = (idle_time, last_byte) {
            if at.elapsed() >= idle {
                framer.idle(&mut frames);
                last_byte = None;
            }
        }
        let cut = usize::try_from(framer.cut()).unwrap_or(usize::MAX);
        shared.cut.store(cut, Ordering::Relaxed);
        for frame in frames.drain(..) {
            bump(&shared.frames_up);
            uplink(frame);
        }
    }
    None
}

/// The writer thread: takes queued frames and writes them while the port
/// is open, until stopped.
fn write_loop(settings: &SerialSettings, shared: &Shared, rx: &Receiver<Down>) {
    // Why the last frame was dropped, as last logged; `None` after a write.
    let mut last_drop: Option<String> = None;
    while !shared.stopped() {
        let payload = match rx.recv() {
            Ok(Down::Frame(p)) => p,
            Ok(Down::Stop) | Err(_) => return,
        };
        let result = match encode_downlink(&settings.framing, &payload, &settings.downlink_suffix) {
            Ok(wire) => match shared.writer_port().as_mut() {
                Some(port) => write_frame(shared, port.as_mut(), &wire),
                None => Err("port closed".to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                bump(&shared.frames_down);
                last_drop = None;
            }
            Err(reason) => {
                let n = bump(&shared.dropped_down);
                if last_drop.as_deref() != Some(reason.as_str()) {
                    log::warn!(
                        "serial {}: {} downlink frame dropped ({reason}); {n} dropped so far",
                        settings.name,
                        settings.device.display()
                    );
                }
                last_drop = Some(reason);
            }
        }
    }
}

/// Writes all of `wire`, waiting at most [`WRITE_GIVE_UP`] for a port that
/// takes no bytes. After a timeout part of the frame may have been written.
fn write_frame(shared: &Shared, port: &mut dyn SerialPort, wire: &[u8]) -> Result<(), String> {
    let start = Instant::now();
    let mut rest = wire;
    while !rest.is_empty() {
        match port.write(rest) {
            Ok(0) => return Err("port takes no bytes".to_string()),
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if shared.stopped() {
                    return Err("bridge stopping".to_string());
                }
                if start.elapsed() >= WRITE_GIVE_UP {
                    return Err("write timed out".to_string());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "serial_tests.rs"]
mod tests;
