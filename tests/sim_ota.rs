//! `uiot-sim`'s OTA side against a real Mosquitto, with a plain uiot
//! `Client` and `platform::ota::Ota` as the device and
//! `platform::ota::download` fetching from the sim's firmware store: a push
//! arrives with the file's MD5 and Size and downloads verified; every
//! serving mode does what it promises (cut and resumed with a 206, a short
//! file and a wrong MD5 refused, 403 -> -2, 404 -> -1, a stall -> -3, a
//! slow link cancelled); Range answers; `request_firmware` brings a
//! pending upgrade back and not a finished one; reports are printed and
//! logged in order; bad upstream messages are error lines.

#![cfg(feature = "http")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde_json::Value;
use support::broker::Device;
use support::sim::Sim;
use support::{Broker, TempDir};
use uiot::platform::ota::{self, DownloadOptions, ModuleVersion, Notice, Ota, OtaError};
use uiot::{Client, Identity, Options, QoS};

const WAIT: Duration = Duration::from_secs(10);

fn device(broker: &Broker, d: &Device) -> Client {
    let id = Identity::new(&d.product_sn, &d.device_sn);
    Client::connect(Options::device("127.0.0.1", broker.port(), id, &d.secret)).unwrap()
}

/// A file of `len` bytes that differ along the file; its MD5.
fn firmware(dir: &Path, name: &str, len: usize) -> (PathBuf, String) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, md5_hex(&bytes))
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `ota push` and the notice the device gets for it.
fn push(sim: &mut Sim, ota: &Ota, d: &Device, version: &str, file: &Path, mode: &str) -> Notice {
    sim.send(&format!(
        "ota push {} {} default {version} {} {mode}",
        d.product_sn,
        d.device_sn,
        file.display()
    ));
    let pushed = sim.expect("the push", |l| {
        l["ota"] == "pushed" && l["version"] == version
    });
    let notice = ota.next_notice(WAIT).expect("update_firmware arrives");
    match &notice {
        Notice::Update { url, md5, size, .. } => {
            assert_eq!(pushed["url"], url.as_str());
            assert_eq!(pushed["md5"], md5.as_str());
            assert_eq!(pushed["size"], *size);
        }
        other => panic!("{other:?}"),
    }
    notice
}

/// The `fw-request` lines of `version`, once there are `n` (each is
/// printed after its response ended).
fn fw_requests(sim: &Sim, version: &str, n: usize) -> Vec<Value> {
    let got = sim.wait_for_count(
        n,
        |l| l["sim"] == "fw-request" && l["version"] == version,
        WAIT,
    );
    assert!(got.len() >= n, "{n} requests of {version}: {got:?}");
    got
}

fn quick() -> DownloadOptions {
    DownloadOptions {
        timeout: Duration::from_secs(3),
        window: Duration::from_secs(1),
        retries: 1,
        backoff: Duration::from_millis(100),
        progress_every: Duration::from_millis(100),
        margin: 0,
        ca_pem: None,
    }
}

#[test]
fn a_push_arrives_downloads_verified_and_the_reports_are_printed_in_order() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start_http(&broker, &[]);
    let d = broker.device(0);
    let client = device(&broker, &d);
    let ota = Ota::new(&client, vec![ModuleVersion::new("default", "1.0.0")]).unwrap();
    ota.report_version().unwrap();
    let dir = TempDir::new("sim-ota-ok");
    let (file, md5) = firmware(dir.path(), "fw.bin", 300_000);
    let notice = push(&mut sim, &ota, &d, "2.0.0", &file, "ok");
    let Notice::Update {
        md5: got_md5, size, ..
    } = &notice
    else {
        unreachable!()
    };
    assert_eq!((got_md5.as_str(), *size), (md5.as_str(), 300_000));
    let cancel = AtomicBool::new(false);
    let out = TempDir::new("sim-ota-ok-out");
    let image = ota::download_with(&notice, out.path(), &cancel, &quick(), |pct| {
        let _ = ota.report_progress("default", "downloading", pct, "2.0.0");
    })
    .unwrap();
    assert_eq!(
        std::fs::read(&image).unwrap(),
        std::fs::read(&file).unwrap()
    );
    let req = sim.expect("the request", |l| {
        l["sim"] == "fw-request" && l["version"] == "2.0.0"
    });
    assert_eq!(
        (
            req["status"].as_u64(),
            req["range_start"].is_null(),
            req["bytes_sent"].as_u64()
        ),
        (Some(200), true, Some(300_000)),
        "{req}"
    );
    ota.report_progress("default", "burning", 50, "2.0.0")
        .unwrap();
    ota.report_success("default", "2.0.0").unwrap();
    let result = sim.expect("the result", |l| l["sim"] == "ota-result");
    assert_eq!(
        (result["result"].as_str(), result["version"].as_str()),
        (Some("success"), Some("2.0.0")),
        "{result}"
    );
    // Printed in the order sent, and the log has the same lines.
    let methods: Vec<String> = sim
        .lines_where(|l| l["sim"] == "ota")
        .iter()
        .map(|l| l["method"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(methods.first().map(String::as_str), Some("report_version"));
    assert_eq!(methods.last().map(String::as_str), Some("report_success"));
    assert!(methods.len() >= 3, "{methods:?}");
    let burning = sim.expect("the burning report", |l| l["state"] == "burning");
    assert_eq!(burning["percent"], 50);
    assert!(
        burning.get("code").is_none(),
        "no ErrCode, no code: {burning}"
    );
    sim.send(&format!("ota log {} {}", d.product_sn, d.device_sn));
    let log = sim.expect("the log", |l| l["sim"] == "ota-log");
    let logged: Vec<&str> = log["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["method"].as_str().unwrap())
        .collect();
    assert_eq!(logged, methods);
    // Finished: a request_firmware with the old version brings nothing.
    ota.request_firmware().unwrap();
    sim.expect("the request_firmware", |l| {
        l["method"] == "request_firmware"
    });
    assert!(ota.next_notice(Duration::from_millis(700)).is_none());
    assert!(sim.lines_where(|l| l["ota"] == "repushed").is_empty());
}

#[test]
fn request_firmware_brings_a_pending_upgrade_back_until_it_ends() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start_http(&broker, &[]);
    let d = broker.device(1);
    let client = device(&broker, &d);
    let ota = Ota::new(&client, vec![ModuleVersion::new("default", "1.0.0")]).unwrap();
    let dir = TempDir::new("sim-ota-pending");
    let (file, _) = firmware(dir.path(), "fw.bin", 5000);
    let first = push(&mut sim, &ota, &d, "3.0.0", &file, "ok");
    // The device was "offline" (dropped the notice): it asks again.
    ota.finish("default", "3.0.0");
    ota.request_firmware().unwrap();
    let again = ota.next_notice(WAIT).expect("pushed again");
    assert_eq!(again, first);
    sim.expect("the re-push", |l| {
        l["ota"] == "repushed" && l["version"] == "3.0.0"
    });
    // A request with the target version running: nothing.
    let topic = d.system_topic("ota/upstream");
    let req = br#"{"Method":"request_firmware","Payload":{"Module":"default","Version":"3.0.0"}}"#;
    client.publish(&topic, req, QoS::AtLeastOnce).unwrap();
    assert!(ota.next_notice(Duration::from_millis(700)).is_none());
    // A success with the wrong version is a failure, and ends it.
    let wrong = br#"{"Method":"report_success","Payload":{"Module":"default","Version":"2.9"}}"#;
    client.publish(&topic, wrong, QoS::AtLeastOnce).unwrap();
    let r = sim.expect("the result", |l| l["sim"] == "ota-result");
    assert_eq!(
        (
            r["result"].as_str(),
            r["version"].as_str(),
            r["reported"].as_str()
        ),
        (Some("fail"), Some("3.0.0"), Some("2.9")),
        "{r}"
    );
    ota.request_firmware().unwrap();
    assert!(ota.next_notice(Duration::from_millis(700)).is_none());
    // A fail ends the next one; a cancel ends another and reaches the device.
    ota.finish("default", "3.0.0");
    push(&mut sim, &ota, &d, "4.0.0", &file, "ok");
    ota.report_fail("default", "4.0.0", -4).unwrap();
    let r = sim.expect("the failure", |l| {
        l["sim"] == "ota-result" && l["version"] == "4.0.0"
    });
    assert_eq!(
        (r["result"].as_str(), r["code"].as_i64()),
        (Some("fail"), Some(-4))
    );
    push(&mut sim, &ota, &d, "5.0.0", &file, "ok");
    sim.send(&format!(
        "ota cancel {} {} default 5.0.0",
        d.product_sn, d.device_sn
    ));
    let c = sim.expect("the cancel", |l| l["ota"] == "cancelled");
    assert_eq!(c["pending"], true);
    assert_eq!(
        ota.next_notice(WAIT),
        Some(Notice::Cancel {
            module: "default".into(),
            version: "5.0.0".into()
        })
    );
    ota.finish("default", "5.0.0");
    ota.request_firmware().unwrap();
    assert!(ota.next_notice(Duration::from_millis(700)).is_none());
    assert_eq!(sim.lines_where(|l| l["ota"] == "repushed").len(), 1);
}

#[test]
fn every_serving_mode_gives_the_client_what_it_promises() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start_http(&broker, &[]);
    let d = broker.device(2);
    let client = device(&broker, &d);
    let ota = Ota::new(&client, vec![ModuleVersion::new("default", "1.0.0")]).unwrap();
    let dir = TempDir::new("sim-ota-modes");
    let (file, _) = firmware(dir.path(), "fw.bin", 200_000);
    let out = TempDir::new("sim-ota-modes-out");
    let fetch =
        |n: &Notice| ota::download_with(n, out.path(), &AtomicBool::new(false), &quick(), |_| {});

    // cut: the first response ends at half; the download resumes with a 206.
    let n = push(&mut sim, &ota, &d, "cut", &file, "cut");
    let image = fetch(&n).unwrap();
    assert_eq!(std::fs::read(image).unwrap(), std::fs::read(&file).unwrap());
    let reqs = fw_requests(&sim, "cut", 2);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        (reqs[0]["status"].as_u64(), reqs[0]["bytes_sent"].as_u64()),
        (Some(200), Some(100_000))
    );
    assert_eq!(reqs[1]["status"], 206);
    assert!(reqs[1]["range_start"].as_u64().unwrap() > 0, "{reqs:?}");

    // truncated and badmd5: refused as a mismatch (-4).
    for mode in ["truncated", "badmd5"] {
        let n = push(&mut sim, &ota, &d, mode, &file, mode);
        match fetch(&n) {
            Err(e @ OtaError::Md5Mismatch(_)) => assert_eq!(e.err_code(), -4),
            other => panic!("{mode}: {other:?}"),
        }
    }
    let t = &fw_requests(&sim, "truncated", 1)[0];
    assert_eq!(t["bytes_sent"], 199_000, "1000 bytes short: {t}");

    // expired: 403 -> -2; missing: 404 -> -1.
    let n = push(&mut sim, &ota, &d, "expired", &file, "expired");
    assert!(matches!(fetch(&n), Err(OtaError::SignatureExpired)));
    let n = push(&mut sim, &ota, &d, "missing", &file, "missing");
    match fetch(&n) {
        Err(e @ OtaError::UrlUnreachable(_)) => assert_eq!(e.err_code(), -1),
        other => panic!("missing: {other:?}"),
    }
    assert_eq!(fw_requests(&sim, "expired", 1)[0]["status"], 403);
    assert_eq!(fw_requests(&sim, "missing", 1)[0]["status"], 404);

    // stall: half, then nothing; the client times out (-3) and each
    // request ends (line printed) once the client has gone.
    let n = push(&mut sim, &ota, &d, "stall", &file, "stall");
    let started = Instant::now();
    match fetch(&n) {
        Err(e @ OtaError::Timeout(_)) => assert_eq!(e.err_code(), -3),
        other => panic!("stall: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    let reqs = fw_requests(&sim, "stall", 2);
    assert_eq!(reqs[0]["bytes_sent"], 100_000);
    assert_eq!(
        (reqs[1]["status"].as_u64(), reqs[1]["range_start"].as_u64()),
        (Some(206), Some(100_000))
    );
    assert_eq!(reqs[1]["bytes_sent"], 0);

    // slow: about 256 KiB/s, so a cancel lands mid-download.
    let (big, _) = firmware(dir.path(), "big.bin", 2_000_000);
    let n = push(&mut sim, &ota, &d, "slow", &big, "slow");
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        flag.store(true, Ordering::Relaxed);
    });
    let got = ota::download_with(&n, out.path(), &cancel, &quick(), |_| {});
    canceller.join().unwrap();
    assert!(matches!(got, Err(OtaError::Cancelled)), "{got:?}");
    let r = sim.expect("the slow request", |l| {
        l["sim"] == "fw-request" && l["version"] == "slow"
    });
    let sent = r["bytes_sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 1_000_000, "{r}");
}

#[test]
fn ranges_are_answered_with_206_and_416_and_always_a_content_length() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start_http(&broker, &[]);
    let d = broker.device(0);
    let client = device(&broker, &d);
    let ota = Ota::new(&client, vec![ModuleVersion::new("default", "1.0.0")]).unwrap();
    let dir = TempDir::new("sim-ota-range");
    let (file, _) = firmware(dir.path(), "fw.bin", 1000);
    let bytes = std::fs::read(&file).unwrap();
    let Notice::Update { url, .. } = push(&mut sim, &ota, &d, "9.0.0", &file, "ok") else {
        unreachable!()
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |range: Option<&str>| {
        let mut req = agent.get(&url);
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        let mut resp = req.call().unwrap();
        let h = |k: &str| {
            resp.headers()
                .get(k)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (len, range) = (h("content-length"), h("content-range"));
        let body = resp.body_mut().read_to_vec().unwrap();
        (resp.status().as_u16(), len, range, body)
    };
    let (s, len, _, body) = get(None);
    assert_eq!(
        (s, len.as_deref(), body.as_slice()),
        (200, Some("1000"), bytes.as_slice())
    );
    let (s, len, range, body) = get(Some("bytes=10-19"));
    assert_eq!(
        (s, len.as_deref(), range.as_deref()),
        (206, Some("10"), Some("bytes 10-19/1000"))
    );
    assert_eq!(body, &bytes[10..20]);
    let (s, len, range, body) = get(Some("bytes=990-"));
    assert_eq!(
        (s, len.as_deref(), range.as_deref()),
        (206, Some("10"), Some("bytes 990-999/1000"))
    );
    assert_eq!(body, &bytes[990..]);
    let (s, len, range, _) = get(Some("bytes=1000-"));
    assert_eq!(
        (s, len.as_deref(), range.as_deref()),
        (416, Some("0"), Some("bytes */1000"))
    );
    let statuses: Vec<u64> = fw_requests(&sim, "9.0.0", 4)
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 206, 206, 416]);
    // An unknown firmware: 404 and an error line.
    let mut resp = agent
        .get(format!("{}/fw/999/x.bin", sim.http_base()))
        .call()
        .unwrap();
    let _ = resp.body_mut().read_to_vec();
    assert_eq!(resp.status().as_u16(), 404);
    sim.expect("the unknown firmware", |l| l["error"] == "no such firmware");
}

#[test]
fn bad_upstream_messages_and_pushes_are_error_lines_and_the_sim_goes_on() {
    let Some(broker) = support::broker() else {
        return;
    };
    let d = broker.device(0);
    // Without --http-port there is nothing to serve a push from.
    let mut plain = Sim::start(&broker, &[]);
    plain.send(&format!(
        "ota push {} {} default 2 /etc/hostname",
        d.product_sn, d.device_sn
    ));
    let e = plain.expect("the refusal", |l| l["sim"] == "error");
    assert!(e["error"].as_str().unwrap().contains("--http-port"), "{e}");
    drop(plain);

    let mut sim = Sim::start_http(&broker, &[]);
    sim.send(&format!(
        "ota push {} {} default 2 /no/such/file",
        d.product_sn, d.device_sn
    ));
    let e = sim.expect("no such file", |l| l["sim"] == "error");
    assert!(
        e["error"].as_str().unwrap().contains("/no/such/file"),
        "{e}"
    );
    let client = device(&broker, &d);
    let topic = d.system_topic("ota/upstream");
    for (body, want) in [
        (&b"not json"[..], "not JSON"),
        (br#"{"Method":"report_version"}"#, "no Payload"),
        (br#"{"Method":"reboot","Payload":{}}"#, "unknown Method"),
        (
            br#"{"Method":"report_progress","Payload":{"Percent":"x"}}"#,
            "Percent",
        ),
        (
            br#"{"Method":"report_fail","Payload":{"Module":"default"}}"#,
            "ErrCode",
        ),
    ] {
        client.publish(&topic, body, QoS::AtLeastOnce).unwrap();
        let e = sim.expect(want, |l| {
            l["sim"] == "error" && l["error"].as_str().unwrap_or("").contains(want)
        });
        assert_eq!(e["request"], "ota/upstream");
    }
    let ok = br#"{"Method":"report_fail","Payload":{"ErrCode":-6}}"#;
    client.publish(&topic, ok, QoS::AtLeastOnce).unwrap();
    let l = sim.expect("the report", |l| l["sim"] == "ota");
    assert_eq!(
        (
            l["module"].as_str(),
            l["version"].is_null(),
            l["code"].as_i64()
        ),
        (Some("default"), true, Some(-6)),
        "{l}"
    );
}
