//! Tests of the hook runner against real processes: `/bin/sh` scripts
//! written to a temporary directory.
//!
//! Owns: the runner's behaviour as the daemon sees it (outcomes, limits,
//! timeouts, shutdown). Must not touch: the tail buffer's own tests (`tail`).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::*;

const WAIT: Duration = Duration::from_secs(10);
/// Scheduling slack for timing assertions (two shared cores).
const SLACK: Duration = Duration::from_millis(1500);

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A job whose outcome (and the name of the thread `done` ran on) goes to
/// the returned receiver.
fn job(name: &str, program: &Path) -> (HookJob, Receiver<(HookOutcome, String)>) {
    let (tx, rx) = mpsc::channel();
    let job = HookJob {
        name: name.to_owned(),
        program: program.to_owned(),
        args: Vec::new(),
        env: Vec::new(),
        env_remove: Vec::new(),
        stdin: Vec::new(),
        done: Some(Box::new(move |o| {
            let thread = thread::current().name().unwrap_or("").to_owned();
            let _ = tx.send((o, thread));
        })),
    };
    (job, rx)
}

fn run_one(limits: HookLimits, job: HookJob, rx: &Receiver<(HookOutcome, String)>) -> HookOutcome {
    let runner = HookRunner::new(limits);
    runner.submit(job).unwrap();
    let (outcome, thread) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(thread, WORKER_NAME);
    runner.shutdown(Duration::ZERO);
    outcome
}

#[test]
fn hooks_env_and_stdin_reach_the_hook_and_status_and_stdout_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "h",
        r#"printf '%s|%s|%s|' "$UIOT_EVENT" "$UIOT_TOPIC" "${HOME-unset}"; cat; exit 3"#,
    );
    let (mut j, rx) = job("on_command", &p);
    j.env = vec![
        ("UIOT_EVENT".into(), "command".into()),
        ("UIOT_TOPIC".into(), "/p/d/cmd".into()),
    ];
    j.env_remove = vec!["HOME".into()];
    j.stdin = br#"{"x":1}"#.to_vec();
    let o = run_one(HookLimits::default(), j, &rx);
    assert_eq!(o.exit, HookExit::Code(3));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        r#"command|/p/d/cmd|unset|{"x":1}"#
    );
    assert!(!o.stdout_cut);
    assert!(o.elapsed < WAIT);
}

#[test]
fn hooks_signal_exit_and_unread_stdin() {
    let dir = tempfile::tempdir().unwrap();
    // Dies of a signal the runner did not send.
    let p = script(dir.path(), "sig", "kill -USR1 $$");
    let (j, rx) = job("sig", &p);
    let o = run_one(HookLimits::default(), j, &rx);
    assert_eq!(
        o.exit,
        HookExit::Signal(rustix::process::Signal::USR1.as_raw())
    );

    // Never reads 4 MiB of stdin: nothing blocks, EPIPE is ignored.
    let p = script(dir.path(), "deaf", "echo hi");
    let (mut j, rx) = job("deaf", &p);
    j.stdin = vec![b'x'; 4 << 20];
    let o = run_one(HookLimits::default(), j, &rx);
    assert_eq!(o.exit, HookExit::Code(0));
    assert_eq!(o.stdout, b"hi\n");
    assert!(o.elapsed < Duration::from_secs(3), "{:?}", o.elapsed);
}

#[test]
fn hooks_big_output_keeps_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "loud",
        r"head -c 10485760 /dev/zero | tr '\0' a; printf END",
    );
    let (j, rx) = job("loud", &p);
    let limits = HookLimits::default();
    let max = limits.max_output;
    let o = run_one(limits, j, &rx);
    assert_eq!(o.exit, HookExit::Code(0));
    assert!(o.stdout_cut);
    assert_eq!(o.stdout.len(), max);
    assert!(o.stdout.ends_with(b"END"));
    assert!(o.stdout[..max - 3].iter().all(|&b| b == b'a'));
}

fn limits(timeout_ms: u64, grace_ms: u64) -> HookLimits {
    HookLimits {
        timeout: Duration::from_millis(timeout_ms),
        grace: Duration::from_millis(grace_ms),
        ..HookLimits::default()
    }
}

/// Whether the process is gone (or a zombie nobody reaps, as under a
/// container's init).
fn gone(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

#[test]
fn hooks_timeout_terms_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    // A grandchild that keeps stdout open, and a hook that waits for it.
    let p = script(
        dir.path(),
        "hang",
        r#"sleep 1000 & echo $! > "$PIDFILE"; wait"#,
    );
    let (mut j, rx) = job("hang", &p);
    j.env = vec![("PIDFILE".into(), pidfile.display().to_string())];
    let l = limits(300, 2000);
    let (timeout, grace) = (l.timeout, l.grace);
    let o = run_one(l, j, &rx);
    assert_eq!(o.exit, HookExit::TimedOut);
    assert!(o.elapsed >= timeout, "{:?}", o.elapsed);
    // SIGTERM was enough: no need to wait for the grace period.
    assert!(o.elapsed < timeout + grace, "{:?}", o.elapsed);
    let pid = fs::read_to_string(&pidfile).unwrap();
    let pid = pid.trim();
    let t = Instant::now();
    while !gone(pid) {
        assert!(t.elapsed() < SLACK, "grandchild {pid} survived");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hooks_ignoring_sigterm_get_sigkill_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(dir.path(), "stubborn", "trap '' TERM; sleep 1000");
    let (j, rx) = job("stubborn", &p);
    let l = limits(300, 500);
    let (timeout, grace) = (l.timeout, l.grace);
    let o = run_one(l, j, &rx);
    assert_eq!(o.exit, HookExit::TimedOut);
    assert!(o.elapsed >= timeout + grace, "{:?}", o.elapsed);
    assert!(o.elapsed < timeout + grace + SLACK, "{:?}", o.elapsed);
}

#[test]
fn hooks_at_most_max_running_at_once_and_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "busy",
        r#"s=$(date +%s%N); sleep 0.05; e=$(date +%s%N); echo "$s $e""#,
    );
    let runner = HookRunner::new(HookLimits {
        max_running: 4,
        max_queued: 100,
        ..HookLimits::default()
    });
    let (tx, rx) = mpsc::channel();
    for i in 0..100 {
        let tx = tx.clone();
        let (mut j, _) = job(&format!("busy{i}"), &p);
        j.done = Some(Box::new(move |o| {
            let _ = tx.send(o);
        }));
        runner.submit(j).unwrap();
    }
    drop(tx);
    let t = Instant::now();
    let mut spans = Vec::new();
    while spans.len() < 100 {
        assert!(runner.running() <= 4);
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(o) => {
                assert_eq!(o.exit, HookExit::Code(0));
                let s = String::from_utf8(o.stdout).unwrap();
                let mut it = s.split_whitespace().map(|n| n.parse::<u128>().unwrap());
                spans.push((it.next().unwrap(), it.next().unwrap()));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => assert!(t.elapsed() < WAIT * 2),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(runner.queued(), 0);
    runner.shutdown(Duration::ZERO);
    // Largest number of hooks between their two `date`s at one time.
    let mut edges: Vec<(u128, i32)> = spans.iter().flat_map(|&(s, e)| [(s, 1), (e, -1)]).collect();
    edges.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    assert!(peak <= 4, "{peak} hooks at once");
    assert!(peak >= 2, "no concurrency at all ({peak})");
}

#[test]
fn hooks_full_queue_rejects_and_order_is_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let p = script(
        dir.path(),
        "gated",
        r#"while [ ! -e "$GATE" ]; do sleep 0.01; done; echo "$N""#,
    );
    let runner = HookRunner::new(HookLimits {
        max_running: 1,
        max_queued: 10,
        ..HookLimits::default()
    });
    let (tx, rx) = mpsc::channel();
    let mut rejected = Vec::new();
    for i in 0..20 {
        let tx = tx.clone();
        let (mut j, _) = job(&format!("gated{i}"), &p);
        j.env = vec![
            ("GATE".into(), gate.display().to_string()),
            ("N".into(), i.to_string()),
        ];
        j.done = Some(Box::new(move |o| {
            let _ = tx.send(o);
        }));
        if let Err(r) = runner.submit(j) {
            assert_eq!(r.waiting, 10);
            rejected.push(r.job.name.clone());
        }
    }
    drop(tx);
    // One slot and ten waiting: the last nine are refused.
    let expected: Vec<String> = (11..20).map(|i| format!("gated{i}")).collect();
    assert_eq!(rejected, expected);
    assert!(runner.queued() >= 10 && runner.queued() <= 11);
    fs::write(&gate, "").unwrap();
    for i in 0..11 {
        let o = rx.recv_timeout(WAIT).unwrap();
        assert_eq!(o.exit, HookExit::Code(0));
        assert_eq!(String::from_utf8(o.stdout).unwrap(), format!("{i}\n"));
    }
    runner.shutdown(Duration::ZERO);
    // The rejected jobs' `done` was never called (and is dropped now).
    assert!(rx.recv().is_err());
}

#[test]
fn hooks_missing_or_not_executable_is_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let (j, rx) = job("missing", &dir.path().join("nope"));
    let o = run_one(HookLimits::default(), j, &rx);
    match &o.exit {
        HookExit::NotStarted(why) => assert!(why.contains("No such file"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(o.elapsed, Duration::ZERO);

    let p = dir.path().join("plain");
    fs::write(&p, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let (j, rx) = job("plain", &p);
    let o = run_one(HookLimits::default(), j, &rx);
    match &o.exit {
        HookExit::NotStarted(why) => assert!(why.contains("Permission denied"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hooks_shutdown_waits_then_kills_and_drops_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let quick = script(dir.path(), "quick", "sleep 0.1; echo ok");
    let stuck = script(dir.path(), "stuck", "trap '' TERM; sleep 1000");
    let never = script(dir.path(), "never", "echo never");
    let runner = HookRunner::new(HookLimits {
        max_running: 2,
        grace: Duration::from_millis(300),
        ..HookLimits::default()
    });
    let mut rxs = Vec::new();
    for (name, p) in [
        ("quick", &quick),
        ("stuck", &stuck),
        ("never1", &never),
        ("never2", &never),
    ] {
        let (j, rx) = job(name, p);
        runner.submit(j).unwrap();
        rxs.push(rx);
    }
    let t = Instant::now();
    while runner.running() < 2 {
        assert!(t.elapsed() < WAIT);
        thread::sleep(Duration::from_millis(5));
    }
    let deadline = Duration::from_millis(400);
    let grace = Duration::from_millis(300);
    let t = Instant::now();
    runner.shutdown(deadline);
    let took = t.elapsed();
    assert!(took >= deadline + grace, "{took:?}");
    assert!(took < deadline + grace + SLACK, "{took:?}");
    // Every `done` ran before shutdown returned.
    let outs: Vec<HookOutcome> = rxs.iter().map(|rx| rx.try_recv().unwrap().0).collect();
    assert_eq!(outs[0].exit, HookExit::Code(0));
    assert_eq!(outs[0].stdout, b"ok\n");
    assert_eq!(outs[1].exit, HookExit::TimedOut);
    for o in &outs[2..] {
        assert_eq!(o.exit, HookExit::NotStarted("shutting down".into()));
    }
}

#[test]
fn hooks_runner_can_be_shared_by_dispatch_threads() {
    fn shared<T: Send + Sync>() {}
    fn sent<T: Send>() {}
    shared::<HookRunner>();
    // Not Sync: it hands back the job, whose `done` need only be Send.
    sent::<Rejected>();
}
