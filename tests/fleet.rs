//! A small fleet through a broker crash (issue 13): 20 devices, each its own
//! `Client` and login, publishing QoS 1 before, during and after a
//! `kill -9` of the broker and its restart 2 s later.
//!
//! Owns: this run and its assertions: every message the broker acknowledged
//! while the checker was subscribed arrives (duplicates counted, allowed),
//! the messages queued during the outage arrive once the checker is back,
//! the reconnects are spread by the back-off's jitter, and no file
//! descriptor is left behind by a reconnect. And what an idle client costs
//! in memory, which decides how many devices a gateway can hold.
//! Must not touch: the library; any address but 127.0.0.1.
//! scripts/fleet.sh (examples/fleet.rs) is the large version of this test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::broker::{CLOUD_PASSWORD, CLOUD_USER};
use support::{BrokerConfig, Device};
use uiot::{Client, Event, Identity, Options, PublishToken, QoS};

const DEVICES: usize = 20;
const DOWN: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(20);

/// The two tests measure this process (fds, RSS): one at a time.
static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Publishes `count` messages `dev seq` from every device, starting at
/// `first`, and returns their tokens.
fn publish_round(
    clients: &[Client],
    devices: &[Device],
    first: u64,
    count: u64,
) -> Vec<(usize, u64, PublishToken)> {
    let mut tokens = Vec::new();
    for seq in first..first + count {
        for (i, (c, d)) in clients.iter().zip(devices).enumerate() {
            let t = c
                .start_publish(
                    &d.topic("upload"),
                    format!("{i} {seq}").into_bytes(),
                    QoS::AtLeastOnce,
                )
                .unwrap();
            tokens.push((i, seq, t));
        }
    }
    tokens
}

/// Waits for every token; all must be acknowledged.
fn acked(tokens: Vec<(usize, u64, PublishToken)>) -> Vec<(usize, u64)> {
    tokens
        .into_iter()
        .map(|(i, seq, t)| {
            t.wait_timeout(WAIT)
                .unwrap_or_else(|e| panic!("device {i} message {seq}: {e}"));
            (i, seq)
        })
        .collect()
}

/// Waits until the checker has seen every one of `want`.
fn wait_seen(seen: &Mutex<HashMap<(usize, u64), u32>>, want: &[(usize, u64)]) -> Vec<(usize, u64)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let missing: Vec<_> = {
            let s = seen.lock().unwrap();
            want.iter()
                .filter(|k| !s.contains_key(k))
                .copied()
                .collect()
        };
        if missing.is_empty() || Instant::now() > deadline {
            return missing;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn twenty_devices_through_a_broker_kill_lose_no_acknowledged_message_and_reconnect_spread() {
    let _alone = alone();
    let mut config = BrokerConfig::new();
    let devices: Vec<Device> = (0..DEVICES)
        .map(|i| {
            Device::new(
                "fleetprod0000001",
                &format!("fleetdev{i:06}"),
                &format!("fleetsecret{i:05}"),
            )
        })
        .collect();
    for d in &devices {
        config = config.device(d.clone());
    }
    let Some(broker) = support::broker_with(config) else {
        return;
    };

    // The checker: the cloud, back within 10 ms of the broker.
    let mut o = Options::new("127.0.0.1", broker.port(), "fleet-test-checker");
    o.username = Some(CLOUD_USER.into());
    o.password = Some(CLOUD_PASSWORD.into());
    o.reconnect.min = Duration::from_millis(10);
    o.reconnect.max = Duration::from_millis(10);
    let checker = Client::connect(o).unwrap();
    checker
        .subscribe(&[
            ("/+/+/upload", QoS::AtLeastOnce),
            ("/probe", QoS::AtLeastOnce),
        ])
        .unwrap();
    let seen: Arc<Mutex<HashMap<(usize, u64), u32>>> = Arc::default();
    let probes = Arc::new(Mutex::new(0u64));
    let reader = {
        let messages = checker.messages();
        let seen = Arc::clone(&seen);
        let probes = Arc::clone(&probes);
        thread::spawn(move || {
            while let Ok(m) = messages.recv() {
                if m.topic == "/probe" {
                    *probes.lock().unwrap() += 1;
                    continue;
                }
                let text = String::from_utf8(m.payload).unwrap();
                let (i, seq) = text.split_once(' ').unwrap();
                *seen
                    .lock()
                    .unwrap()
                    .entry((i.parse().unwrap(), seq.parse().unwrap()))
                    .or_insert(0) += 1;
            }
        })
    };

    // The devices, with the library's default back-off (1 s .. 60 s, full
    // jitter).
    let clients: Vec<Client> = devices
        .iter()
        .map(|d| {
            let id = Identity::new(&d.product_sn, &d.device_sn);
            let mut o = Options::device("127.0.0.1", broker.port(), id, &d.secret);
            o.ack_timeout = Duration::from_secs(5);
            let c = Client::connect(o).unwrap();
            c.subscribe(&[(d.topic("cmd"), QoS::AtLeastOnce)]).unwrap();
            c
        })
        .collect();

    // Before: everything acknowledged arrives.
    let before = acked(publish_round(&clients, &devices, 0, 5));
    let missing = wait_seen(&seen, &before);
    assert!(missing.is_empty(), "lost before the outage: {missing:?}");
    let fds_before = fds();

    // Every device's events, stamped within 2 ms: the first Connected
    // after its Disconnected.
    let watcher = {
        let events: Vec<_> = clients.iter().map(Client::events).collect();
        thread::spawn(move || {
            let started = Instant::now();
            let mut down = [false; DEVICES];
            let mut back: Vec<Option<Instant>> = vec![None; DEVICES];
            while back.iter().any(Option::is_none) {
                assert!(
                    started.elapsed() < WAIT,
                    "devices not back after {WAIT:?}: {back:?}"
                );
                let now = Instant::now();
                for (i, e) in events.iter().enumerate() {
                    while let Some(ev) = e.try_recv() {
                        match ev {
                            Event::Disconnected(_) => down[i] = true,
                            Event::Connected { .. } if down[i] && back[i].is_none() => {
                                back[i] = Some(now);
                            }
                            _ => {}
                        }
                    }
                }
                thread::sleep(Duration::from_millis(2));
            }
            back.into_iter().flatten().collect::<Vec<Instant>>()
        })
    };

    // The crash. Messages published while the broker is away wait in each
    // device's queue.
    broker.stop();
    let down_at = Instant::now();
    thread::sleep(Duration::from_millis(300));
    let queued = publish_round(&clients, &devices, 5, 3);
    thread::sleep(DOWN.saturating_sub(down_at.elapsed()));
    broker.restart();
    let back_at = Instant::now();

    // When the checker hears again (its own probe comes back).
    let checker_ready = loop {
        let _ = checker.publish("/probe", b"p", QoS::AtLeastOnce);
        if *probes.lock().unwrap() > 0 {
            break Instant::now();
        }
        assert!(back_at.elapsed() < WAIT, "the checker did not come back");
        thread::sleep(Duration::from_millis(5));
    };

    // Each device's first Connected after the restart (stamped by the
    // watcher started before the crash).
    let connected: Vec<Instant> = watcher.join().unwrap();
    assert!(
        connected
            .iter()
            .all(|c| *c >= back_at.checked_sub(Duration::from_secs(1)).unwrap()),
        "a device reconnected long before the broker was back"
    );

    // The queued messages: acknowledged after the reconnect. Those of a
    // device that was back before the checker could hear may have been
    // routed to no subscriber (the broker kept no session: persistence
    // false); every other one must arrive.
    let queued = acked(queued);
    let must: Vec<_> = queued
        .iter()
        .filter(|(i, _)| connected[*i] > checker_ready)
        .copied()
        .collect();
    let missing = wait_seen(&seen, &must);
    assert!(missing.is_empty(), "queued messages lost: {missing:?}");

    // After: everything acknowledged arrives.
    let after = acked(publish_round(&clients, &devices, 8, 5));
    let missing = wait_seen(&seen, &after);
    assert!(missing.is_empty(), "lost after the outage: {missing:?}");

    // Spread: the jitter keeps the fleet from reconnecting in one burst.
    let first = connected.iter().min().unwrap();
    let last = connected.iter().max().unwrap();
    let spread = *last - *first;
    let duplicates: u32 = seen.lock().unwrap().values().map(|c| c - 1).sum();
    eprintln!(
        "fleet: {DEVICES} devices back {:?}..{:?} after the restart, {} of {} queued \
         messages checked ({} excused: device back before the checker), {duplicates} duplicates",
        *first - back_at,
        *last - back_at,
        must.len(),
        queued.len(),
        queued.len() - must.len()
    );
    assert!(
        spread >= Duration::from_millis(50),
        "all {DEVICES} devices reconnected within {spread:?}: lockstep"
    );

    // No descriptor left behind by the reconnects (a leak would be one per
    // device at least).
    let fds_after = fds();
    assert!(
        fds_after <= fds_before + 2,
        "fds {fds_before} before the outage, {fds_after} after"
    );

    for c in &clients {
        c.disconnect().unwrap();
    }
    checker.disconnect().unwrap();
    // The reader ends with the checker's message queue; not waited for.
    drop(reader);
}

/// 200 idle connected clients cost well under 100 KiB of RSS each (42 KiB
/// measured in release; std's `sync_channel` queues made it 213 KiB, since
/// they allocate and touch their whole bound at connect).
#[test]
fn an_idle_client_costs_little_memory() {
    const N: usize = 200;
    let _alone = alone();
    let Some(broker) = support::broker() else {
        return;
    };
    let connect = |i: usize| {
        let mut o = Options::new("127.0.0.1", broker.port(), format!("fleet-mem-{i}"));
        o.username = Some(CLOUD_USER.into());
        o.password = Some(CLOUD_PASSWORD.into());
        let c = Client::connect(o).unwrap();
        c.subscribe(&[(format!("/mem/{i}/cmd"), QoS::AtLeastOnce)])
            .unwrap();
        c
    };
    // A first few, so that the allocator's per-thread arenas exist before
    // the measurement.
    let warm: Vec<Client> = (0..20).map(connect).collect();
    thread::sleep(Duration::from_millis(200));
    let before = vm_rss_kib();
    let clients: Vec<Client> = (20..20 + N).map(connect).collect();
    thread::sleep(Duration::from_millis(500));
    let per = vm_rss_kib().saturating_sub(before) / N as u64;
    eprintln!("{N} idle clients: {per} KiB RSS each");
    assert!(
        per < 100,
        "an idle client costs {per} KiB of RSS (42 KiB expected): a queue allocates its bound up front?"
    );

    // Tokens an application holds for QoS 1 messages already acknowledged
    // (a gateway that checks them later): small each (std's channel made
    // every token about 2.8 KB).
    const PER_CLIENT: usize = 20;
    let before = vm_rss_kib();
    let mut tokens = Vec::with_capacity(N * PER_CLIENT);
    for k in 0..PER_CLIENT {
        for (i, c) in clients.iter().enumerate() {
            let topic = format!("/mem/{}/up", i + 20);
            tokens.push(
                c.start_publish(&topic, format!("{k}").into_bytes(), QoS::AtLeastOnce)
                    .unwrap(),
            );
        }
    }
    for c in &clients {
        c.flush(Duration::from_secs(30)).unwrap();
    }
    let per_token = (vm_rss_kib().saturating_sub(before) * 1024) / tokens.len() as u64;
    eprintln!(
        "{} acknowledged tokens held: {per_token} B RSS each",
        tokens.len()
    );
    assert!(
        per_token < 1536,
        "a held PublishToken costs {per_token} B of RSS (about 300 expected)"
    );
    for t in tokens {
        t.wait().unwrap();
    }
    for c in clients.iter().chain(&warm) {
        c.disconnect().unwrap();
    }
}
