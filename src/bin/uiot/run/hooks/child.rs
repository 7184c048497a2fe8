//! One run of a hook: start the process in its own process group, feed its
//! stdin from a thread, read its stdout into a [`Tail`] from another, wait
//! for it and for its output, reap it.
//!
//! Owns: the child's set-up (environment, pipes; stderr is inherited, so it
//! goes wherever the daemon's log goes), the order "exited, output drained,
//! unwatched, reaped" that keeps the watchdog's signals safe.
//! Must not touch: signals (that is `watchdog`), the queue, `done`.

use std::io::{self, Read as _, Write as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, WaitId, WaitIdOptions};

use super::tail::Tail;
use super::{watchdog, HookExit, HookOutcome, Shared, HELPER_STACK};

/// One read of stdout: the only memory beyond the tail itself.
const READ_BUF: usize = 8 * 1024;

/// How long to wait for stdout to close after SIGKILL (a process that left
/// the hook's group may keep it open) before giving up on the rest.
const DRAIN: Duration = Duration::from_millis(500);

/// How often to look whether SIGKILL was sent, while stdout stays open
/// after the hook itself exited.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Retries of a start that failed with ETXTBSY, and the pause between.
const TXTBSY_TRIES: u32 = 5;
const TXTBSY_PAUSE: Duration = Duration::from_millis(20);

/// What to run.
pub(super) struct Spec<'a> {
    pub(super) name: &'a str,
    pub(super) program: &'a Path,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) env_remove: Vec<String>,
    pub(super) stdin: Vec<u8>,
}

/// The stdout reader's results, shared with the worker.
#[derive(Debug)]
struct Capture {
    tail: Tail,
    eof: bool,
}

type Captured = Arc<(Mutex<Capture>, Condvar)>;

/// Runs the hook to its end (or its kill) and returns the outcome.
pub(super) fn run(shared: &Shared, spec: Spec<'_>) -> HookOutcome {
    let name = spec.name;
    let mut cmd = Command::new(spec.program);
    cmd.args(&spec.args);
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    let started = Instant::now();
    let mut child = match spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("hook {name}: cannot run {}: {e}", spec.program.display());
            return HookOutcome::not_started(e.to_string());
        }
    };
    let pid = Pid::from_child(&child);
    let id = watchdog::watch(shared, pid, name, started);
    log::debug!(
        "hook {name}: started {} (pid {pid})",
        spec.program.display()
    );

    let captured: Captured = Arc::new((
        Mutex::new(Capture {
            tail: Tail::new(shared.limits.max_output),
            eof: false,
        }),
        Condvar::new(),
    ));
    let set_up = feed(child.stdin.take(), spec.stdin).and_then(|()| match child.stdout.take() {
        Some(out) => drain(out, Arc::clone(&captured)),
        None => Err(io::Error::other("no stdout pipe")),
    });
    if let Err(e) = set_up {
        log::warn!("hook {name}: cannot start a thread for it: {e}");
        watchdog::kill_now(shared, id);
        wait_exit(pid);
        watchdog::unwatch(shared, id);
        let _ = child.wait();
        return HookOutcome::not_started(format!("cannot start a thread: {e}"));
    }

    wait_exit(pid);
    let (tail, complete) = wait_output(shared, id, &captured);
    if !complete {
        log::warn!(
            "hook {name}: stdout still open {DRAIN:?} after SIGKILL (a process left its \
             group?); not reading the rest"
        );
    }
    let signalled = watchdog::unwatch(shared, id);
    // Only now may the pid (and the process group id) be freed.
    let status = child.wait();
    let elapsed = started.elapsed();
    let (stdout, stdout_cut) = tail.finish();
    let exit = match status {
        _ if signalled => HookExit::TimedOut,
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => HookExit::Code(c),
            (None, Some(sig)) => HookExit::Signal(sig),
            (None, None) => HookExit::Code(-1),
        },
        Err(e) => HookExit::NotStarted(format!("cannot wait for it: {e}")),
    };
    log::debug!(
        "hook {name}: {exit:?} after {elapsed:?}, {} bytes of stdout",
        stdout.len()
    );
    HookOutcome {
        exit,
        stdout,
        stdout_cut,
        elapsed,
    }
}

/// Starts the child. ETXTBSY (the executable is open for writing
/// somewhere: being installed, or an fd that a concurrent fork copied has
/// not reached its exec yet) is retried a few times.
fn spawn(cmd: &mut Command) -> io::Result<std::process::Child> {
    let mut tries = 0u32;
    loop {
        match cmd.spawn() {
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error())
                    && tries < TXTBSY_TRIES =>
            {
                tries = tries.saturating_add(1);
                thread::sleep(TXTBSY_PAUSE);
            }
            other => return other,
        }
    }
}

/// Writes `data` to the hook's stdin from a thread, then closes it. A hook
/// that does not read it blocks only that thread (until it exits: EPIPE,
/// ignored).
fn feed(stdin: Option<ChildStdin>, data: Vec<u8>) -> io::Result<()> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    thread::Builder::new()
        .name("uiot-hook-in".into())
        .stack_size(HELPER_STACK)
        .spawn(move || match stdin.write_all(&data) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => log::debug!("hook stdin: {e}"),
        })
        .map(drop)
}

/// Reads the hook's stdout into the capture from a thread, until EOF.
fn drain(mut out: ChildStdout, captured: Captured) -> io::Result<()> {
    thread::Builder::new()
        .name("uiot-hook-out".into())
        .stack_size(HELPER_STACK)
        .spawn(move || {
            let (lock, cv) = &*captured;
            let mut buf = vec![0u8; READ_BUF];
            loop {
                match out.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let chunk = buf.get(..n).unwrap_or_default();
                        lock.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .tail
                            .push(chunk);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::debug!("hook stdout: {e}");
                        break;
                    }
                }
            }
            lock.lock().unwrap_or_else(PoisonError::into_inner).eof = true;
            cv.notify_all();
        })
        .map(drop)
}

/// Blocks until the child has exited, without reaping it.
fn wait_exit(pid: Pid) {
    loop {
        match rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(rustix::io::Errno::INTR) => {}
            // Done, or not waitable here (then `Child::wait` says so).
            Ok(_) | Err(_) => return,
        }
    }
}

/// Waits for stdout to close: normally at once, as the hook has exited; if
/// processes it left behind keep it open, until the watchdog kills them,
/// and at most [`DRAIN`] after SIGKILL. Returns the tail and whether it is
/// complete.
fn wait_output(shared: &Shared, id: u64, captured: &Captured) -> (Tail, bool) {
    let (lock, cv) = &**captured;
    let mut complete = true;
    loop {
        {
            let mut c = lock.lock().unwrap_or_else(PoisonError::into_inner);
            if !c.eof {
                c = cv
                    .wait_timeout(c, DRAIN_POLL)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if c.eof {
                break;
            }
        }
        if watchdog::since_kill(shared, id).is_some_and(|d| d >= DRAIN) {
            complete = false;
            break;
        }
    }
    let mut c = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let tail = std::mem::replace(&mut c.tail, Tail::new(0));
    (tail, complete)
}
