//! The watchdog of the hook runner: one thread that sends SIGTERM to a hook
//! past its timeout (or past the shutdown deadline) and SIGKILL `grace`
//! later, to the hook's process group and to the hook itself.
//!
//! Owns: the guard list (`State::children`), the only place signals are
//! sent from, and why that is safe: a child is signalled only while it is
//! listed, under the lock, and `child` reaps it only after unlisting it, so
//! its pid (and process group id) cannot have been reused.
//! Must not touch: spawning, pipes, the job queue.

use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::{Shared, State};

/// A started, not yet reaped child.
pub(super) struct Watched {
    id: u64,
    pid: Pid,
    name: String,
    /// When it gets SIGTERM (`None`: the timeout is too far to represent).
    deadline: Option<Instant>,
    /// When SIGTERM was sent.
    term_at: Option<Instant>,
    /// When SIGKILL was sent.
    kill_at: Option<Instant>,
}

/// Lists a child just started (its own process group leader) with its
/// deadline; returns the id to [`unwatch`] it with.
pub(super) fn watch(shared: &Shared, pid: Pid, name: &str, started: Instant) -> u64 {
    let mut st = shared.lock();
    let id = st.next_child;
    st.next_child = st.next_child.wrapping_add(1);
    st.children.push(Watched {
        id,
        pid,
        name: name.to_owned(),
        deadline: started.checked_add(shared.limits.timeout),
        term_at: None,
        kill_at: None,
    });
    drop(st);
    shared.watch.notify_all();
    id
}

/// Unlists a child before it is reaped; returns whether it was signalled.
pub(super) fn unwatch(shared: &Shared, id: u64) -> bool {
    let mut st = shared.lock();
    let Some(at) = st.children.iter().position(|w| w.id == id) else {
        return false;
    };
    let w = st.children.swap_remove(at);
    w.term_at.is_some()
}

/// How long ago the child was sent SIGKILL, if it was.
pub(super) fn since_kill(shared: &Shared, id: u64) -> Option<Duration> {
    let st = shared.lock();
    let w = st.children.iter().find(|w| w.id == id)?;
    w.kill_at.map(|t| t.elapsed())
}

/// SIGKILLs a listed child at once (it could not be set up); the caller
/// then unlists and reaps it.
pub(super) fn kill_now(shared: &Shared, id: u64) {
    let mut st = shared.lock();
    if let Some(w) = st.children.iter_mut().find(|w| w.id == id) {
        signal(w.pid, Signal::KILL);
        w.term_at.get_or_insert_with(Instant::now);
        w.kill_at = Some(Instant::now());
    }
}

/// The watchdog thread.
pub(super) fn run(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        if st.watchdog_exit {
            return;
        }
        let now = Instant::now();
        let (next, said) = scan(&mut st, now, shared.limits.grace, shared.limits.timeout);
        if !said.is_empty() {
            drop(st);
            for line in said {
                log::warn!("{line}");
            }
            st = shared.lock();
            continue;
        }
        st = match next {
            Some(t) => {
                let wait = t.saturating_duration_since(now);
                shared
                    .watch
                    .wait_timeout(st, wait)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0
            }
            None => shared
                .watch
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        };
    }
}

/// Signals every child that is due; returns the next time one will be and
/// the log lines to write (after unlocking).
fn scan(
    st: &mut State,
    now: Instant,
    grace: Duration,
    timeout: Duration,
) -> (Option<Instant>, Vec<String>) {
    let stop = if st.stopping { st.stop_deadline } else { None };
    let mut next: Option<Instant> = None;
    let mut said = Vec::new();
    for w in &mut st.children {
        let due = match (w.term_at, w.kill_at) {
            (None, _) => {
                // A shutdown deadline too far to represent never comes.
                let by_stop = stop.is_some_and(|s| w.deadline.is_none_or(|d| s < d));
                let term = if by_stop { stop } else { w.deadline };
                match term {
                    Some(t) if now >= t => {
                        signal(w.pid, Signal::TERM);
                        w.term_at = Some(now);
                        said.push(if by_stop {
                            format!(
                                "shutting down: hook {} (pid {}) still running, sent SIGTERM",
                                w.name, w.pid
                            )
                        } else {
                            format!(
                                "hook {} (pid {}) still running after {timeout:?}, sent SIGTERM",
                                w.name, w.pid
                            )
                        });
                        now.checked_add(grace)
                    }
                    other => other,
                }
            }
            (Some(term), None) => match term.checked_add(grace) {
                Some(k) if now >= k => {
                    signal(w.pid, Signal::KILL);
                    w.kill_at = Some(now);
                    said.push(format!(
                        "hook {} (pid {}) still running {grace:?} after SIGTERM, sent SIGKILL",
                        w.name, w.pid
                    ));
                    None
                }
                other => other,
            },
            (Some(_), Some(_)) => None,
        };
        if let Some(d) = due {
            next = Some(next.map_or(d, |n| n.min(d)));
        }
    }
    (next, said)
}

/// Sends `sig` to the child's process group, and to the child itself in
/// case it left the group. Errors (it is gone) do not matter.
fn signal(pid: Pid, sig: Signal) {
    let _ = rustix::process::kill_process_group(pid, sig);
    let _ = rustix::process::kill_process(pid, sig);
}
