//! `uiot-sim` (the simulated cloud) run beside a test broker: started as
//! the broker's superuser, driven through its stdin line protocol, its
//! stdout JSON lines collected for the test to wait on.
//!
//! Owns: the sim process of a test (killed when the [`Sim`] is dropped).
//! Must not touch: the broker's files, except through
//! `scripts/dev-broker.sh add-device` when a test asks for
//! [`on_register_command`].

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::broker::{Broker, CLOUD_PASSWORD, CLOUD_USER};

/// How long a test waits for a line by default.
pub const WAIT: Duration = Duration::from_secs(10);

type Lines = Arc<(Mutex<Vec<Value>>, Condvar)>;

/// A running `uiot-sim`.
pub struct Sim {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines,
}

/// The `--on-register` command that lets a registered device log in to
/// this test broker (dev-broker.sh's add-device on the broker's files).
pub fn on_register_command(broker: &Broker) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-broker.sh");
    let pid = broker.pid().expect("the broker runs");
    format!(
        "UIOT_BROKER_DIR='{}' UIOT_BROKER_PID={pid} bash '{script}' add-device >&2",
        broker.dir().display()
    )
}

impl Sim {
    /// Starts `uiot-sim` against `broker` with `args` added, and waits for
    /// its ready line.
    pub fn start(broker: &Broker, args: &[&str]) -> Sim {
        let port = broker.port().to_string();
        let mut all = vec!["-p", &port, "-u", CLOUD_USER, "-P", CLOUD_PASSWORD];
        all.extend_from_slice(args);
        let sim = Sim::spawn(&all);
        let ready = sim.wait_for(|l| l["sim"] == "ready", WAIT);
        assert!(
            ready.is_some(),
            "uiot-sim did not get ready: {:?}",
            sim.lines()
        );
        sim
    }

    /// Starts `uiot-sim` against `broker` with its HTTP server on a free
    /// port (`--http-port 0`) and the secrets of the broker's test devices
    /// (`--device PSN:DSN:SECRET`), `args` added; waits for the ready line.
    pub fn start_http(broker: &Broker, args: &[&str]) -> Sim {
        let devices: Vec<String> = broker
            .devices()
            .iter()
            .map(|d| format!("{}:{}:{}", d.product_sn, d.device_sn, d.secret))
            .collect();
        let mut all = vec!["--http-port", "0"];
        for d in &devices {
            all.extend_from_slice(&["--device", d]);
        }
        all.extend_from_slice(args);
        Sim::start(broker, &all)
    }

    /// The ready line.
    pub fn ready(&self) -> Value {
        self.wait_for(|l| l["sim"] == "ready", WAIT)
            .expect("uiot-sim printed its ready line")
    }

    /// The base URL of the sim's HTTP server, `http://127.0.0.1:PORT` (it
    /// must have been started with `--http-port`, e.g. by [`Sim::start_http`]).
    pub fn http_base(&self) -> String {
        let ready = self.ready();
        ready["http"]
            .as_str()
            .unwrap_or_else(|| panic!("uiot-sim runs no HTTP server (--http-port): {ready}"))
            .to_string()
    }

    /// Where the sim stores uploads (`--files`, or the directory it made).
    pub fn files_dir(&self) -> std::path::PathBuf {
        let ready = self.ready();
        ready["files"]
            .as_str()
            .unwrap_or_else(|| panic!("uiot-sim runs no HTTP server (--http-port): {ready}"))
            .into()
    }

    /// Every line so far that `pred` accepts.
    pub fn lines_where(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.lines().into_iter().filter(|l| pred(l)).collect()
    }

    /// Waits until `n` lines that `pred` accepts were printed (at most
    /// `timeout`), and returns them (fewer if the time ran out).
    pub fn wait_for_count(
        &self,
        n: usize,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let (m, c) = &*self.lines;
        let mut lines = m.lock().unwrap();
        loop {
            let got: Vec<Value> = lines.iter().filter(|l| pred(l)).cloned().collect();
            if got.len() >= n {
                return got;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return got;
            };
            lines = c.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Starts `uiot-sim` with exactly `args` (no waiting).
    pub fn spawn(args: &[&str]) -> Sim {
        // Built only with the `sim` feature (on by default).
        let Some(exe) = option_env!("CARGO_BIN_EXE_uiot-sim") else {
            panic!("uiot-sim is built only with the `sim` cargo feature (a default one)")
        };
        let mut child = Command::new(exe)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("uiot-sim runs");
        let lines: Lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let out = child.stdout.take().expect("piped stdout");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("uiot-sim printed a line that is not JSON ({e}): {line}")
                });
                let (m, c) = &*sink;
                m.lock().unwrap().push(v);
                c.notify_all();
            }
        });
        let stdin = child.stdin.take();
        Sim {
            child,
            stdin,
            lines,
        }
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("uiot-sim reads stdin");
        stdin.flush().expect("flush");
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.0.lock().unwrap().clone()
    }

    /// The first line so far (or within `timeout`) that `pred` accepts.
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let (m, c) = &*self.lines;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = c.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// [`Sim::wait_for`] with [`WAIT`], panicking with every line seen.
    pub fn expect(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        match self.wait_for(pred, WAIT) {
            Some(l) => l,
            None => panic!(
                "uiot-sim printed no line with {what}; it printed: {:#?}",
                self.lines()
            ),
        }
    }

    /// Sends `quit` and waits for the exit (killing it after 10 s).
    pub fn quit(mut self) -> ExitStatus {
        self.send("quit");
        self.stdin.take();
        self.wait_exit(WAIT)
    }

    /// Waits for the process to exit by itself (killed after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("uiot-sim did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
