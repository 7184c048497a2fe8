//! The hook runner of `uiot run`: runs the configured executables for
//! events, at most `max_running` at once, FIFO-queueing the rest, with a
//! timeout, a bounded capture of stdout and a clean shutdown.
//!
//! Owns: the job queue, the worker threads, the limits ([`HookLimits`]),
//! calling each accepted job's `done` exactly once.
//! Must not touch: what a hook's environment says or what its output means
//! (the caller builds [`HookJob`] and reads [`HookOutcome`]), MQTT, the
//! configuration file. Starting one child and collecting it is `child`, its
//! deadlines and signals `watchdog`, the output buffer `tail`.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod child;
mod tail;
#[cfg(test)]
mod tests;
mod watchdog;

/// Stack of a worker thread, which also runs each job's `done`: keep heavy
/// work out of `done` (hand it to another thread).
const WORKER_STACK: usize = 128 * 1024;

/// Stack of the small helper threads (watchdog, stdin writer, stdout reader).
const HELPER_STACK: usize = 64 * 1024;

/// Name of the worker threads (`done` runs on one of them).
const WORKER_NAME: &str = "uiot-hook";

/// Limits of a [`HookRunner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookLimits {
    /// Hooks running at once (default 4; 0 counts as 1).
    pub max_running: usize,
    /// Jobs waiting for a free slot before [`HookRunner::submit`] rejects
    /// more (default 64).
    pub max_queued: usize,
    /// How long a hook may run before it gets SIGTERM (default 30 s; one
    /// too long to represent, such as `Duration::MAX`, never expires).
    pub timeout: Duration,
    /// How long after SIGTERM it gets SIGKILL (default 5 s).
    pub grace: Duration,
    /// Bytes of stdout kept; beyond it the *last* `max_output` bytes are
    /// kept (default 64 KiB).
    pub max_output: usize,
}

impl Default for HookLimits {
    fn default() -> HookLimits {
        HookLimits {
            max_running: 4,
            max_queued: 64,
            timeout: Duration::from_secs(30),
            grace: Duration::from_secs(5),
            max_output: 64 * 1024,
        }
    }
}

/// What [`HookJob::done`] is called with.
pub type Done = Box<dyn FnOnce(HookOutcome) + Send>;

/// One run of a hook.
pub struct HookJob {
    /// The hook's name, for logs (e.g. `on_command`).
    pub name: String,
    /// The executable (a name without `/` is looked up in `PATH`).
    pub program: PathBuf,
    /// Its arguments (hooks have none; the OTA apply command is `sh -c CMD`).
    pub args: Vec<String>,
    /// Variables set for the hook (`UIOT_EVENT`, `UIOT_TOPIC`, ...), after
    /// `env_remove` is applied; the rest of the daemon's environment is
    /// inherited. Note that `main` overrides `SSL_CERT_FILE` for uiot
    /// itself: the caller gives the hook the original value (or removes it).
    pub env: Vec<(String, String)>,
    /// Inherited variables the hook must not see.
    pub env_remove: Vec<String>,
    /// The hook's stdin (the event's payload); empty: stdin is `/dev/null`.
    pub stdin: Vec<u8>,
    /// Called exactly once with the outcome if the job was accepted, from a
    /// runner thread (128 KiB stack), holding no runner lock.
    pub done: Option<Done>,
}

impl fmt::Debug for HookJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookJob")
            .field("name", &self.name)
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("env_remove", &self.env_remove)
            .field("stdin", &format_args!("{} bytes", self.stdin.len()))
            .field("done", &self.done.is_some())
            .finish()
    }
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookExit {
    /// It exited with this status.
    Code(i32),
    /// A signal it did not get from the runner ended it.
    Signal(i32),
    /// The runner signalled it: it ran past [`HookLimits::timeout`], or
    /// past the deadline of [`HookRunner::shutdown`].
    TimedOut,
    /// It never ran: the reason (the OS error of a failed start, or
    /// `shutting down` for a job still queued at shutdown).
    NotStarted(String),
}

/// The result of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutcome {
    /// How it ended.
    pub exit: HookExit,
    /// Its stdout: all of it, or the last [`HookLimits::max_output`] bytes.
    pub stdout: Vec<u8>,
    /// Whether the start of stdout was dropped.
    pub stdout_cut: bool,
    /// From the start of the process to its end (zero if it never ran).
    pub elapsed: Duration,
}

impl HookOutcome {
    fn not_started(reason: impl Into<String>) -> HookOutcome {
        HookOutcome {
            exit: HookExit::NotStarted(reason.into()),
            stdout: Vec::new(),
            stdout_cut: false,
            elapsed: Duration::ZERO,
        }
    }
}

/// [`HookRunner::submit`] refused a job: too many already wait. The job's
/// `done` was not called; the job is handed back.
pub struct Rejected {
    /// The refused job, untouched.
    pub job: Box<HookJob>,
    /// How many jobs were waiting.
    pub waiting: usize,
}

impl fmt::Debug for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("job", &self.job.name)
            .field("waiting", &self.waiting)
            .finish()
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hook {} not run: {} hooks already waiting",
            self.job.name, self.waiting
        )
    }
}

impl std::error::Error for Rejected {}

/// State shared by the runner's handle, its workers and its watchdog.
struct Shared {
    limits: HookLimits,
    state: Mutex<State>,
    /// Workers wait here: a job was queued, or shutdown began.
    work: Condvar,
    /// The watchdog waits here: a child started or ended, or shutdown began.
    watch: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<HookJob>,
    /// Worker threads alive.
    workers: usize,
    /// Jobs taken by a worker and not finished.
    running: usize,
    /// Shutdown began: no job starts any more.
    stopping: bool,
    /// The shutdown deadline for running hooks (`None`: none, or too far).
    stop_deadline: Option<Instant>,
    /// The watchdog's guard list: every child started and not yet reaped.
    children: Vec<watchdog::Watched>,
    next_child: u64,
    /// The watchdog should end (set once the workers are gone).
    watchdog_exit: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs hooks on worker threads; see the module documentation.
pub struct HookRunner {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    watchdog: Mutex<Option<JoinHandle<()>>>,
}

impl HookRunner {
    /// Starts the worker threads (`max_running` of them) and the watchdog.
    /// A thread that cannot be started is logged; with no worker at all,
    /// every job is rejected.
    pub fn new(mut limits: HookLimits) -> HookRunner {
        limits.max_running = limits.max_running.max(1);
        let shared = Arc::new(Shared {
            limits,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            watch: Condvar::new(),
        });
        let watchdog = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("uiot-hook-watch".into())
                .stack_size(HELPER_STACK)
                .spawn(move || watchdog::run(&shared))
        };
        let watchdog = match watchdog {
            Ok(h) => Some(h),
            Err(e) => {
                // Without it no timeout is enforced: run no hook at all.
                log::error!("hooks disabled: cannot start the watchdog thread: {e}");
                return HookRunner {
                    shared,
                    workers: Mutex::new(Vec::new()),
                    watchdog: Mutex::new(None),
                };
            }
        };
        let mut workers = Vec::new();
        for _ in 0..shared.limits.max_running {
            let s = Arc::clone(&shared);
            {
                let mut st = shared.lock();
                st.workers = st.workers.saturating_add(1);
            }
            let spawned = thread::Builder::new()
                .name(WORKER_NAME.into())
                .stack_size(WORKER_STACK)
                .spawn(move || worker(&s));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    let mut st = shared.lock();
                    st.workers = st.workers.saturating_sub(1);
                    drop(st);
                    log::error!("cannot start a hook worker thread: {e}");
                    break;
                }
            }
        }
        HookRunner {
            shared,
            workers: Mutex::new(workers),
            watchdog: Mutex::new(watchdog),
        }
    }

    /// Queues `job`; never blocks. Rejected (with a warn line naming the
    /// hook, and without calling `done`) when `max_queued` jobs already
    /// wait for a free slot.
    pub fn submit(&self, job: HookJob) -> Result<(), Rejected> {
        let mut st = self.shared.lock();
        let free = st.workers.saturating_sub(st.running);
        let waiting = st.queue.len().saturating_sub(free);
        if st.workers == 0 || st.stopping || waiting >= self.shared.limits.max_queued {
            drop(st);
            let rejected = Rejected {
                job: Box::new(job),
                waiting,
            };
            log::warn!("{rejected}");
            return Err(rejected);
        }
        st.queue.push_back(job);
        drop(st);
        self.shared.work.notify_one();
        Ok(())
    }

    /// Hooks running now (or being started, or being collected).
    #[cfg_attr(not(test), allow(dead_code))] // the tests watch the cap with it
    pub fn running(&self) -> usize {
        self.shared.lock().running
    }

    /// Jobs accepted and not started yet.
    #[cfg_attr(not(test), allow(dead_code))] // the tests watch the queue with it
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Stops: takes no more jobs, ends queued ones with
    /// `NotStarted("shutting down")`, lets running hooks finish until
    /// `deadline`, then sends them SIGTERM and, `grace` later, SIGKILL.
    /// Returns once every `done` has returned.
    /// (It takes `&self`, so that the hooks' callers may still hold the
    /// runner; a second call returns at once.)
    pub fn shutdown(&self, deadline: Duration) {
        self.stop(deadline);
    }

    fn stop(&self, deadline: Duration) {
        {
            let mut st = self.shared.lock();
            st.stopping = true;
            st.stop_deadline = Instant::now().checked_add(deadline);
        }
        self.shared.work.notify_all();
        self.shared.watch.notify_all();
        let workers: Vec<JoinHandle<()>> = self
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for w in workers {
            if w.join().is_err() {
                log::error!("a hook worker thread panicked");
            }
        }
        self.shared.lock().watchdog_exit = true;
        self.shared.watch.notify_all();
        let watchdog = self
            .watchdog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = watchdog {
            if w.join().is_err() {
                log::error!("the hook watchdog thread panicked");
            }
        }
    }
}

impl Drop for HookRunner {
    /// Like `shutdown(Duration::ZERO)` if it was not called: running hooks
    /// get SIGTERM now and SIGKILL `grace` later.
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

/// A worker thread: takes jobs until shutdown.
fn worker(shared: &Shared) {
    loop {
        let (job, start) = {
            let mut st = shared.lock();
            loop {
                if let Some(job) = st.queue.pop_front() {
                    let start = !st.stopping;
                    if start {
                        st.running = st.running.saturating_add(1);
                    }
                    break (job, start);
                }
                if st.stopping {
                    st.workers = st.workers.saturating_sub(1);
                    return;
                }
                st = shared.work.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let HookJob {
            name,
            program,
            args,
            env,
            env_remove,
            stdin,
            done,
        } = job;
        let outcome = if start {
            let outcome = child::run(
                shared,
                child::Spec {
                    name: &name,
                    program: &program,
                    args,
                    env,
                    env_remove,
                    stdin,
                },
            );
            let mut st = shared.lock();
            st.running = st.running.saturating_sub(1);
            outcome
        } else {
            HookOutcome::not_started("shutting down")
        };
        if let Some(done) = done {
            if panic::catch_unwind(AssertUnwindSafe(|| done(outcome))).is_err() {
                log::error!("hook {name}: its completion handler panicked");
            }
        }
    }
}
