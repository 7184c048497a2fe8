//! `uiot register` killed with SIGKILL at many moments of dynamic
//! registration, against a real Mosquitto and a test cloud that answers
//! `password` (sometimes late): after every kill the secret file is absent
//! or exactly the issued secret with mode 0600, nothing but the one temp
//! file the next run reuses is left beside it (0600, empty or the whole
//! secret); a later run keeps a whole secret found there (the platform
//! would refuse a second registration) and registers past a partial one.
//!
//! Owns: this test and its registrar. Must not touch: tests/support (it
//! only uses it), any address but 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::broker::{CLOUD_PASSWORD, CLOUD_USER};
use support::{BrokerConfig, Device, DynamicDevice, TempDir};
use uiot::{Client, Limits, Options, QoS};

const SECRET: &str = "issuedsecret0001";
/// Runs of the coarse phase that must end by SIGKILL (not by finishing
/// first).
const KILLS: usize = 32;
/// Upper bound on coarse runs, for a machine so slow (or fast) that many
/// runs finish before their kill.
const MAX_RUNS: usize = 120;
/// Runs of the fine phase, killed around the end of a whole registration.
const FINE_RUNS: usize = 40;

/// Answers every registration request with SECRET; while `slow` is set,
/// the n-th reply is delayed by `(n % 4) * 15` ms (a reply that comes
/// after its requester was killed reaches the next run, which must ignore
/// its foreign RequestID).
fn registrar(c: Client, answered: Arc<AtomicU64>, slow: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        for (n, m) in c.messages().iter().enumerate() {
            let Ok(req) = serde_json::from_slice::<Value>(&m.payload) else {
                continue;
            };
            let reply = m.topic.replace("/password", "/password_reply");
            let body = json!({"RetCode": "0", "RequestID": req["RequestID"], "Password": SECRET});
            let delay = if slow.load(Ordering::Relaxed) {
                Duration::from_millis((n as u64 % 4) * 15)
            } else {
                Duration::ZERO
            };
            let c = c.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = c.enqueue(&reply, body.to_string().into_bytes(), QoS::AtLeastOnce);
                answered.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
}

fn dyn_config(dir: &Path, port: u16, d: &DynamicDevice) -> PathBuf {
    let path = dir.join("dyn.ini");
    std::fs::write(
        &path,
        format!(
            "[device]\nproduct_sn = {}\ndevice_sn = {}\nproduct_secret = {}\nsecret_file = device.secret\n\
             [connection]\nhost = 127.0.0.1\nport = {port}\ntls = false\nconnect_timeout = 3\n",
            d.product_sn, d.device_sn, d.product_secret
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// What a kill left: whether the secret is there (checked whole and 0600
/// first) and whether the temp file is; anything else in the directory
/// fails the test.
fn check_left(dir: &Path, run: &str) -> (bool, bool) {
    let secret = dir.join("device.secret");
    let tmp = dir.join(".device.secret.tmp");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names {
        assert!(
            ["dyn.ini", "device.secret", ".device.secret.tmp"].contains(&n.as_str()),
            "{run}: stray file {n:?} left ({names:?})"
        );
    }
    let has_secret = secret.exists();
    if has_secret {
        assert_eq!(
            std::fs::read_to_string(&secret).unwrap(),
            format!("{SECRET}\n"),
            "{run}: the secret file is not the issued secret, whole"
        );
        assert_eq!(mode(&secret), 0o600, "{run}: secret file mode");
    }
    let has_tmp = tmp.exists();
    if has_tmp {
        // It may hold the secret (killed between write and rename).
        assert_eq!(mode(&tmp), 0o600, "{run}: temp file mode");
        let text = std::fs::read_to_string(&tmp).unwrap();
        assert!(
            text.is_empty() || text == format!("{SECRET}\n"),
            "{run}: temp file holds {text:?}"
        );
    }
    (has_secret, has_tmp)
}

fn uiot(cfg: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_uiot"));
    c.args(["register", "-c", cfg.to_str().unwrap()])
        .env_remove("UIOT_CONFIG")
        .env_remove("RUST_LOG");
    c
}

fn register(cfg: &Path) -> std::process::Output {
    uiot(cfg).output().unwrap()
}

#[derive(Default)]
struct Tally {
    kills: usize,
    finished: usize,
    killed_saved: usize,
    killed_in_tmp: usize,
    tmp_left: usize,
}

/// One `uiot register` killed after `delay` (or finished before it), then
/// the directory checked; a saved secret is removed again so that the next
/// run registers too (as after the operator's reset).
fn kill_after(cfg: &Path, dir: &Path, delay: Duration, name: &str, tally: &mut Tally) {
    let name = format!("{name} (kill after {delay:?})");
    let tmp = dir.join(".device.secret.tmp");
    let tmp_was_empty = std::fs::read(&tmp).map_or(true, |b| b.is_empty());
    let mut child = uiot(cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL; an exited child is fine too
    let status = child.wait().unwrap();
    let killed = status.signal() == Some(9);
    if killed {
        tally.kills += 1;
    } else {
        assert_eq!(status.code(), Some(0), "{name}: {status}");
        tally.finished += 1;
    }
    let (has_secret, has_tmp) = check_left(dir, &name);
    if !killed {
        assert!(has_secret, "{name}: exit 0 without the secret file");
    }
    if has_tmp {
        tally.tmp_left += 1;
        let whole = !std::fs::read(&tmp).unwrap().is_empty();
        tally.killed_in_tmp += usize::from(killed && whole && tmp_was_empty);
    }
    if has_secret {
        tally.killed_saved += usize::from(killed);
        std::fs::remove_file(dir.join("device.secret")).unwrap();
    }
}

#[test]
fn sigkill_at_any_moment_of_registration_leaves_no_half_secret() {
    let started = Instant::now();
    let d = DynamicDevice::new("harnessprod00001", "dyndevice0001", "harnessprodsec01");
    let config = BrokerConfig::new()
        .device(Device::new(&d.product_sn, &d.device_sn, SECRET))
        .dynamic(d.clone());
    let Some(broker) = support::broker_with(config) else {
        return;
    };
    let mut o = Options::new("127.0.0.1", broker.port(), "test-cloud");
    o.username = Some(CLOUD_USER.into());
    o.password = Some(CLOUD_PASSWORD.into());
    o.limits = Limits::unlimited();
    let cloud = Client::connect(o).unwrap();
    cloud
        .subscribe(&[("/$system/+/+/password", QoS::AtLeastOnce)])
        .unwrap();
    let answered = Arc::new(AtomicU64::new(0));
    let slow = Arc::new(AtomicBool::new(true));
    registrar(cloud.clone(), answered.clone(), slow.clone());

    let dir = TempDir::new("register-kill");
    let cfg = dyn_config(dir.path(), broker.port(), &d);
    let secret = dir.path().join("device.secret");
    let mut tally = Tally::default();
    // Coarse: kill after 0, 2, 4 ... 62 ms (then again), the cloud
    // answering after 0 to 45 ms.
    let mut run = 0;
    while tally.kills < KILLS && run < MAX_RUNS {
        let delay = Duration::from_millis((run as u64 * 2) % 64);
        kill_after(&cfg, dir.path(), delay, &format!("run {run}"), &mut tally);
        run += 1;
    }
    assert!(
        tally.kills >= KILLS,
        "only {} of {run} runs were killed",
        tally.kills
    );
    // Fine: a prompt cloud, kills from 80% to 110% of a whole run's time,
    // where the secret is written, synced and renamed.
    slow.store(false, Ordering::Relaxed);
    let t0 = Instant::now();
    let out = register(&cfg);
    let whole = t0.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_left(dir.path(), "the timed run");
    std::fs::remove_file(&secret).unwrap();
    for k in 0..FINE_RUNS {
        let delay = whole.mul_f64(0.8 + 0.3 * k as f64 / FINE_RUNS as f64);
        kill_after(
            &cfg,
            dir.path(),
            delay,
            &format!("fine run {k}"),
            &mut tally,
        );
    }
    eprintln!(
        "register_kill: {run} coarse + {FINE_RUNS} fine runs (a whole run takes {whole:?}): {} \
         killed, {} finished first; killed with the secret saved: {}, killed between the \
         temp file's write and its rename: {}; a temp file left {} times; {} replies sent",
        tally.kills,
        tally.finished,
        tally.killed_saved,
        tally.killed_in_tmp,
        tally.tmp_left,
        answered.load(Ordering::Relaxed)
    );

    // A run that is not killed finishes, whatever the kills left behind.
    // A temp file holding a whole secret (an earlier run killed between
    // write and rename): that secret is kept, since the platform would
    // refuse a second registration.
    let tmp = dir.path().join(".device.secret.tmp");
    std::fs::write(&tmp, "leftoversecret01\n").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!secret.exists());
    let out = register(&cfg);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"registered\":\"before\""));
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "leftoversecret01\n"
    );
    assert_eq!(mode(&secret), 0o600);
    assert!(!tmp.exists(), "the temp file became the secret file");
    // A partial one (no final newline) is no secret: the run registers.
    std::fs::remove_file(&secret).unwrap();
    std::fs::write(&tmp, "leftov").unwrap();
    let out = register(&cfg);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"registered\":\"now\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (has_secret, has_tmp) = check_left(dir.path(), "the final run");
    assert!(
        has_secret && !has_tmp,
        "secret {has_secret}, temp {has_tmp}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
