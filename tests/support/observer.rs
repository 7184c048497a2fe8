//! The observer: a `mosquitto_sub` child process that records every message
//! it receives (as "the cloud", or as a stand-in device).
//!
//! Owns: its `mosquitto_sub` process (killed and reaped on drop), the thread
//! reading its output, and the list of received messages.
//! Must not touch: the broker process (only reads its log).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::broker::{tail, Broker};

/// How long to wait for the broker to acknowledge the subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// `mosquitto_sub -F` format: unix time with ns, QoS, retain, payload in hex,
/// then the topic last (so a tab in a topic cannot shift the fields).
const FORMAT: &str = "%U\t%q\t%r\t%x\t%t";

/// One message the observer received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Topic it was published to.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// QoS it was delivered with (min of publish and subscription QoS).
    pub qos: u8,
    /// Retain flag as delivered.
    pub retain: bool,
    /// When the harness read it (monotonic; compare with other `Instant`s).
    pub at: Instant,
    /// When `mosquitto_sub` printed it: Unix time in seconds, ns precision.
    pub unix_time: f64,
}

impl Received {
    /// The payload as text (invalid UTF-8 replaced).
    pub fn payload_str(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

type Shared = Arc<(Mutex<Vec<Received>>, Condvar)>;

/// A running `mosquitto_sub`; killed and reaped on drop.
#[derive(Debug)]
pub struct Observer {
    child: Child,
    messages: Shared,
    reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<()>>,
    client_id: String,
}

impl Observer {
    /// Starts `mosquitto_sub` with these login fields on `filters` (QoS 1)
    /// and waits until the broker has sent its SUBACK.
    pub(crate) fn spawn(
        broker: &Broker,
        client_id: &str,
        username: &str,
        password: &str,
        filters: &[&str],
    ) -> Observer {
        let suback_line = format!(": Sending SUBACK to {client_id}");
        let count_subacks = |log: &str| log.lines().filter(|l| l.ends_with(&suback_line)).count();
        let before = count_subacks(&broker.log());

        let mut cmd = Command::new(&broker.tools().subscribe);
        cmd.args(["-h", "127.0.0.1", "-V", "mqttv311", "-q", "1"])
            .args(["-p", &broker.port().to_string()])
            .args(["-i", client_id, "-u", username, "-P", password])
            .args(["-F", FORMAT]);
        for f in filters {
            cmd.args(["-t", f]);
        }
        let mut child = match cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("cannot run {}: {e}", broker.tools().subscribe.display()),
        };
        let messages: Shared = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let reader = child.stdout.take().map(|stdout| {
            let messages = Arc::clone(&messages);
            thread::spawn(move || read_messages(BufReader::new(stdout), &messages))
        });
        // Drained on a thread so a chatty mosquitto_sub can never block on a
        // full pipe; kept for the error message below.
        let errors = Arc::new(Mutex::new(String::new()));
        let stderr_reader = child.stderr.take().map(|stderr| {
            let errors = Arc::clone(&errors);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut e = relock(&errors);
                    e.push_str(&line);
                    e.push('\n');
                }
            })
        });
        let mut observer = Observer {
            child,
            messages,
            reader,
            stderr_reader,
            client_id: client_id.to_string(),
        };

        let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
        loop {
            if count_subacks(&broker.log()) > before {
                return observer;
            }
            if let Ok(Some(status)) = observer.child.try_wait() {
                if let Some(t) = observer.stderr_reader.take() {
                    let _ = t.join();
                }
                let err = relock(&errors).clone();
                panic!(
                    "mosquitto_sub as {client_id:?} on {filters:?} exited ({status}) before subscribing: {}\n--- broker log tail ---\n{}",
                    err.trim(),
                    tail(&broker.log(), 20)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "mosquitto_sub as {client_id:?} on {filters:?}: no SUBACK in the broker log within {SUBSCRIBE_TIMEOUT:?}\n--- broker log tail ---\n{}",
                    tail(&broker.log(), 20)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The client id this observer logged in with.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Waits until at least `n` messages arrived or `timeout` passed, and
    /// returns all messages received so far (check the length!).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.messages;
        let mut got = relock(lock);
        while got.len() < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            got = match cvar.wait_timeout(got, deadline - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        got.clone()
    }

    /// Waits until a message on `topic` arrived (true) or `timeout` passed.
    pub fn wait_for_topic(&self, topic: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.messages;
        let mut got = relock(lock);
        loop {
            if got.iter().any(|m| m.topic == topic) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            got = match cvar.wait_timeout(got, deadline - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// All messages received so far.
    pub fn messages(&self) -> Vec<Received> {
        relock(&self.messages.0).clone()
    }

    /// The messages received so far on exactly `topic`.
    pub fn messages_on(&self, topic: &str) -> Vec<Received> {
        relock(&self.messages.0)
            .iter()
            .filter(|m| m.topic == topic)
            .cloned()
            .collect()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipe closes with the process, so the reader ends.
        for t in [self.reader.take(), self.stderr_reader.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}

fn relock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_messages(mut out: impl BufRead, messages: &Shared) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match out.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let Some(msg) = parse_line(text) else {
            eprintln!("observer: cannot parse mosquitto_sub output line {text:?}");
            continue;
        };
        let (lock, cvar) = &**messages;
        relock(lock).push(msg);
        cvar.notify_all();
    }
}

/// Parses one line printed with [`FORMAT`].
fn parse_line(line: &str) -> Option<Received> {
    let mut fields = line.splitn(5, '\t');
    let unix_time = fields.next()?.parse().ok()?;
    let qos = fields.next()?.parse().ok()?;
    let retain = fields.next()? == "1";
    let payload = from_hex(fields.next()?)?;
    let topic = fields.next()?.to_string();
    Some(Received {
        topic,
        payload,
        qos,
        retain,
        at: Instant::now(),
        unix_time,
    })
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}
