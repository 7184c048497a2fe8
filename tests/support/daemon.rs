//! A running `uiot run` for the tests: started with a configuration, its
//! stderr collected so a test can wait for a log line, killed on drop.
//!
//! Owns: the daemon's process in a test.
//! Must not touch: the broker, the simulator (their own modules).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long `start` waits for the local socket.
const WAIT: Duration = Duration::from_secs(15);

/// A running `uiot run`, its stderr collected.
pub struct Daemon {
    pub child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    pub fn start(cfg: &Path) -> Daemon {
        Daemon::start_with(cfg, &[])
    }

    pub fn start_with(cfg: &Path, env: &[(&str, &Path)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_uiot"))
            .args(["run", "-c", cfg.to_str().unwrap()])
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .env_remove("UIOT_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        let d = Daemon { child, log };
        d.wait_log("local socket", WAIT);
        d
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the daemon never logged {needle:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
