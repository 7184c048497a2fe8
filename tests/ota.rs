//! OTA: the upstream reports and downstream notices against a real
//! Mosquitto (a superuser "cloud" client on the other side), and firmware
//! downloads from a tiny HTTP server in the test (127.0.0.1, one thread per
//! connection, behaviour chosen per test: whole file, a cut, a stall, an
//! error status, a server that ignores Range).

#![cfg(feature = "http")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::broker::{CLOUD_PASSWORD, CLOUD_USER};
use support::TempDir;
use uiot::platform::ota::{
    self, download_with, DownloadOptions, ModuleVersion, Notice, Ota, OtaError, CHUNK,
};
use uiot::{Client, Identity, Limits, Options, QoS};

// ---------------------------------------------------------------- MQTT

fn cloud(broker: &support::Broker) -> Client {
    let mut o = Options::new("127.0.0.1", broker.port(), "test-cloud");
    o.username = Some(CLOUD_USER.into());
    o.password = Some(CLOUD_PASSWORD.into());
    o.limits = Limits::unlimited();
    let c = Client::connect(o).unwrap();
    c.subscribe(&[("/$system/+/+/ota/upstream", QoS::AtLeastOnce)])
        .unwrap();
    c
}

fn next_json(inbox: &uiot::Messages) -> (String, Value) {
    let m = inbox.recv_timeout(Duration::from_secs(5)).unwrap();
    (m.topic.clone(), serde_json::from_slice(&m.payload).unwrap())
}

fn update_json(version: &str) -> Value {
    json!({"Method": "update_firmware", "Payload": {"Module": "default", "Version": version,
        "URL": "http://127.0.0.1:1/fw.bin?Signature=x", "MD5": "17ffea1119f36d1b366353f4edef1780",
        "Size": 4233}})
}

#[test]
fn ota_reports_reach_the_cloud_and_notices_are_handed_over_once() {
    let Some(broker) = support::broker() else {
        return;
    };
    let dev = broker.device(0);
    let c = cloud(&broker);
    let inbox = c.messages();
    let id = Identity::new(&dev.product_sn, &dev.device_sn);
    let client =
        Client::connect(Options::device("127.0.0.1", broker.port(), id, &dev.secret)).unwrap();
    let modules = vec![
        ModuleVersion::new("default", "1.0.0"),
        ModuleVersion::new("wifi", "w_1.2"),
    ];
    let ota = Ota::new(&client, modules).unwrap();
    let up = dev.system_topic("ota/upstream");

    ota.report_version().unwrap();
    for (module, version) in [("default", "1.0.0"), ("wifi", "w_1.2")] {
        assert_eq!(
            next_json(&inbox),
            (
                up.clone(),
                json!({"Method": "report_version", "Payload": {"Module": module, "Version": version}})
            )
        );
    }
    ota.request_firmware().unwrap();
    let (_, j) = next_json(&inbox);
    assert_eq!(
        j,
        json!({"Method": "request_firmware", "Payload": {"Module": "default", "Version": "1.0.0"}})
    );
    let _ = next_json(&inbox);
    ota.report_progress("default", "downloading", 35, "2.0.0")
        .unwrap();
    assert_eq!(
        next_json(&inbox).1,
        json!({"Method": "report_progress", "Payload": {"State": "downloading", "Percent": 35, "Module": "default", "Version": "2.0.0"}})
    );
    assert!(ota
        .report_progress("default", "flying", 1, "2.0.0")
        .is_err());

    // An update notice is handed over; the same again while active is not.
    let down = dev.system_topic("ota/downstream");
    let publish = |v: &Value| {
        c.publish(&down, v.to_string().as_bytes(), QoS::AtLeastOnce)
            .unwrap()
    };
    publish(&update_json("2.0.0"));
    let n = ota.next_notice(Duration::from_secs(5)).unwrap();
    assert_eq!(
        n,
        Notice::Update {
            module: "default".into(),
            version: "2.0.0".into(),
            url: "http://127.0.0.1:1/fw.bin?Signature=x".into(),
            md5: "17ffea1119f36d1b366353f4edef1780".into(),
            size: 4233,
        }
    );
    assert!(ota.is_active("default", "2.0.0"));
    let flag = ota.cancel_flag("default", "2.0.0").unwrap();
    assert!(!flag.load(Ordering::SeqCst));
    assert!(ota.cancel_flag("default", "9.9").is_none());
    publish(&update_json("2.0.0"));
    // Malformed ones: dropped (with a warning).
    c.publish(&down, b"not json", QoS::AtLeastOnce).unwrap();
    let mut bad = update_json("2.0.1");
    bad["Payload"]["MD5"] = json!("xyz");
    publish(&bad);
    publish(&json!({"Method": "update_firmware", "Payload": {"Module": "default"}}));
    // A cancel is always handed over, and comes after the ignored ones.
    publish(
        &json!({"Method": "cancel_update", "Payload": {"Module": "default", "Version": "2.0.0"}}),
    );
    assert_eq!(
        ota.next_notice(Duration::from_secs(5)).unwrap(),
        Notice::Cancel {
            module: "default".into(),
            version: "2.0.0".into()
        }
    );
    assert!(
        flag.load(Ordering::SeqCst),
        "the cancel set the upgrade's flag"
    );
    assert_eq!(ota.next_notice(Duration::from_millis(300)), None);
    // A failure report ends the upgrade: the same update is handed over again.
    ota.report_fail("default", "2.0.0", -4).unwrap();
    assert_eq!(
        next_json(&inbox).1,
        json!({"Method": "report_fail", "Payload": {"Module": "default", "Version": "2.0.0", "ErrCode": -4}})
    );
    assert!(!ota.is_active("default", "2.0.0"));
    publish(&update_json("2.0.0"));
    assert!(matches!(
        ota.next_notice(Duration::from_secs(5)),
        Some(Notice::Update { .. })
    ));
    ota.report_success("default", "2.0.0").unwrap();
    assert_eq!(
        next_json(&inbox).1,
        json!({"Method": "report_success", "Payload": {"Module": "default", "Version": "2.0.0"}})
    );
    // The new version is what later reports carry.
    ota.set_version("default", "2.0.0").unwrap();
    assert!(ota.set_version("default", "bad version").is_err());
    ota.report_version().unwrap();
    assert_eq!(next_json(&inbox).1["Payload"]["Version"], json!("2.0.0"));
    assert_eq!(next_json(&inbox).1["Payload"]["Version"], json!("w_1.2"));
}

// ---------------------------------------------------------------- HTTP

#[derive(Clone, Copy)]
enum Mode {
    /// The file, honouring Range.
    Whole,
    /// The first request sends this many body bytes, then closes.
    CutAt(usize),
    /// Every request stalls once the body reaches this offset.
    StallAt(usize),
    /// This status, no body.
    Status(u16),
    /// The first request is cut after this many bytes; later ones get 200
    /// and the whole file whatever their Range.
    IgnoreRange(usize),
    /// The file in 4 KiB pieces, 2 ms apart.
    Slow,
}

struct Server {
    port: u16,
    requests: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
    ranges: Arc<Mutex<Vec<Option<u64>>>>,
}

fn serve(data: Arc<Vec<u8>>, mode: Mode) -> Server {
    serve_with(data, mode, None)
}

/// [`serve`], over TLS when `tls` is given.
#[cfg(feature = "tls")]
type Acceptor = native_tls::TlsAcceptor;
/// No TLS server in a build without TLS.
#[cfg(not(feature = "tls"))]
type Acceptor = std::convert::Infallible;

fn serve_with(data: Arc<Vec<u8>>, mode: Mode, tls: Option<Acceptor>) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let (r, s, g) = (requests.clone(), sent.clone(), ranges.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { return };
            let n = r.fetch_add(1, Ordering::SeqCst);
            let (data, s, g) = (data.clone(), s.clone(), g.clone());
            #[allow(clippy::clone_on_copy)] // Copy in a build without TLS
            let tls = tls.clone();
            std::thread::spawn(move || match tls {
                None => answer(conn, &data, mode, n, &s, &g),
                #[cfg(feature = "tls")]
                Some(a) => {
                    if let Ok(conn) = a.accept(conn) {
                        answer(conn, &data, mode, n, &s, &g);
                    }
                }
                #[cfg(not(feature = "tls"))]
                Some(a) => match a {},
            });
        }
    });
    Server {
        port,
        requests,
        sent,
        ranges,
    }
}

fn answer<S: Read + Write>(
    mut conn: S,
    data: &[u8],
    mode: Mode,
    n: usize,
    sent: &AtomicU64,
    ranges: &Mutex<Vec<Option<u64>>>,
) {
    let mut range = None;
    // The request head, a byte at a time (nothing follows it).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    for line in String::from_utf8_lossy(&head).lines() {
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = v.trim_end_matches('-').parse::<u64>().ok();
        }
    }
    ranges.lock().unwrap().push(range);
    let start = match mode {
        Mode::IgnoreRange(_) => 0,
        _ => range.unwrap_or(0) as usize,
    };
    if let Mode::Status(code) = mode {
        let _ = write!(
            conn,
            "HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    let head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            data.len() - start,
            data.len() - 1,
            data.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            data.len()
        )
    };
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    let end = match mode {
        Mode::CutAt(k) | Mode::IgnoreRange(k) if n == 0 => k,
        Mode::StallAt(k) => k.max(start),
        _ => data.len(),
    };
    let body = &data[start..end];
    let piece = if matches!(mode, Mode::Slow) {
        4096
    } else {
        body.len().max(1)
    };
    for p in body.chunks(piece) {
        if conn.write_all(p).is_err() {
            return;
        }
        sent.fetch_add(p.len() as u64, Ordering::SeqCst);
        if matches!(mode, Mode::Slow) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let _ = conn.flush();
    if let Mode::StallAt(_) = mode {
        std::thread::sleep(Duration::from_secs(20));
    }
}

fn firmware(len: usize) -> Arc<Vec<u8>> {
    Arc::new((0..len).map(|i| (i * 7 + i / 251) as u8).collect())
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn notice(port: u16, data: &[u8]) -> Notice {
    Notice::Update {
        module: "default".into(),
        version: "2.0.0".into(),
        url: format!("http://127.0.0.1:{port}/fw.bin?Signature=abc&Expires=1"),
        md5: md5_hex(data),
        size: data.len() as u64,
    }
}

fn fast() -> DownloadOptions {
    DownloadOptions {
        timeout: Duration::from_secs(2),
        window: Duration::from_millis(400),
        retries: 2,
        backoff: Duration::from_millis(20),
        progress_every: Duration::ZERO,
        ..DownloadOptions::default()
    }
}

fn no_files(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn run(
    n: &Notice,
    dir: &Path,
    opts: &DownloadOptions,
) -> (Result<std::path::PathBuf, OtaError>, Vec<u8>) {
    let mut seen = Vec::new();
    let r = download_with(n, dir, &AtomicBool::new(false), opts, |p| seen.push(p));
    (r, seen)
}

#[test]
fn ota_download_whole_file_verified_and_renamed() {
    let data = firmware(200_000);
    let srv = serve(data.clone(), Mode::Whole);
    let dir = TempDir::new("ota-ok");
    let (r, seen) = run(&notice(srv.port, &data), dir.path(), &fast());
    let path = r.unwrap();
    assert_eq!(path, dir.path().join("default-2.0.0.bin"));
    assert_eq!(std::fs::read(&path).unwrap(), *data);
    assert!(!dir.path().join(".default-2.0.0.part").exists());
    assert_eq!(seen.last(), Some(&100));
    assert!(seen.iter().all(|p| *p <= 100));
    assert_eq!(srv.requests.load(Ordering::SeqCst), 1);
    // Paced: with a long interval, the first chunk's percentage and 100.
    let opts = DownloadOptions {
        progress_every: Duration::from_secs(3600),
        ..fast()
    };
    let (r, seen) = run(&notice(srv.port, &data), dir.path(), &opts);
    r.unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0] < 100 && seen[1] == 100, "{seen:?}");
}

#[test]
fn ota_download_resumes_after_a_cut_fetching_little_twice() {
    let data = firmware(300_000);
    let srv = serve(data.clone(), Mode::CutAt(100_003));
    let dir = TempDir::new("ota-cut");
    let (r, _) = run(&notice(srv.port, &data), dir.path(), &fast());
    assert_eq!(std::fs::read(r.unwrap()).unwrap(), *data);
    let ranges = srv.ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let resumed = ranges[1].unwrap();
    assert!(resumed > 0 && resumed <= 100_003, "{ranges:?}");
    let twice = srv.sent.load(Ordering::SeqCst) - data.len() as u64;
    assert!(twice <= CHUNK as u64, "{twice} bytes fetched twice");
}

#[test]
fn ota_download_starts_over_when_the_server_ignores_range() {
    let data = firmware(50_000);
    let srv = serve(data.clone(), Mode::IgnoreRange(20_000));
    let dir = TempDir::new("ota-norange");
    let (r, _) = run(&notice(srv.port, &data), dir.path(), &fast());
    assert_eq!(std::fs::read(r.unwrap()).unwrap(), *data);
    let ranges = srv.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![None, Some(20_000)]);
    assert_eq!(srv.sent.load(Ordering::SeqCst), 20_000 + data.len() as u64);
}

#[test]
fn ota_download_md5_mismatch_is_minus_4_and_leaves_no_file() {
    let data = firmware(40_000);
    let srv = serve(data.clone(), Mode::Whole);
    let dir = TempDir::new("ota-md5");
    let mut n = notice(srv.port, &data);
    if let Notice::Update { md5, .. } = &mut n {
        *md5 = "0".repeat(32);
    }
    let (r, _) = run(&n, dir.path(), &fast());
    let e = r.unwrap_err();
    assert!(matches!(e, OtaError::Md5Mismatch(_)), "{e}");
    assert_eq!(e.err_code(), -4);
    no_files(dir.path());
    // A Size the server does not match is -4 too.
    let mut n = notice(srv.port, &data);
    if let Notice::Update { size, .. } = &mut n {
        *size = 39_000;
    }
    assert_eq!(run(&n, dir.path(), &fast()).0.unwrap_err().err_code(), -4);
    no_files(dir.path());
    // So is a file shorter than Size, at once: not fetched again and again.
    let srv = serve(data.clone(), Mode::Whole);
    let mut n = notice(srv.port, &data);
    if let Notice::Update { size, .. } = &mut n {
        *size = 41_000;
    }
    let e = run(&n, dir.path(), &fast()).0.unwrap_err();
    assert!(matches!(e, OtaError::Md5Mismatch(_)), "{e}");
    assert_eq!(srv.requests.load(Ordering::SeqCst), 1);
    no_files(dir.path());
}

#[test]
fn ota_download_403_is_minus_2_and_404_is_minus_1() {
    let data = firmware(1000);
    let dir = TempDir::new("ota-status");
    for (code, want) in [(403, -2), (404, -1), (410, -1)] {
        let srv = serve(data.clone(), Mode::Status(code));
        let e = run(&notice(srv.port, &data), dir.path(), &fast())
            .0
            .unwrap_err();
        assert_eq!(e.err_code(), want, "{code}: {e}");
        assert_eq!(
            srv.requests.load(Ordering::SeqCst),
            1,
            "{code}: not retried"
        );
        no_files(dir.path());
    }
    if_refused(&data, dir.path());
}

/// Nothing listening: -1 after the retries.
fn if_refused(data: &[u8], dir: &Path) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = run(&notice(port, data), dir, &fast()).0.unwrap_err();
    assert!(matches!(e, OtaError::UrlUnreachable(_)), "{e}");
}

#[test]
fn ota_download_stalled_mid_file_is_minus_3_quickly() {
    let data = firmware(100_000);
    let srv = serve(data.clone(), Mode::StallAt(30_000));
    let dir = TempDir::new("ota-stall");
    let t = Instant::now();
    let e = run(&notice(srv.port, &data), dir.path(), &fast())
        .0
        .unwrap_err();
    assert!(matches!(e, OtaError::Timeout(_)), "{e}");
    assert_eq!(e.err_code(), -3);
    // Window 400 ms: the cut-off window, then 3 windows without a byte.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(srv.requests.load(Ordering::SeqCst), 4);
    no_files(dir.path());
}

#[test]
fn ota_download_cancelled_mid_file_leaves_no_file() {
    let data = firmware(2_000_000);
    let srv = serve(data.clone(), Mode::Slow);
    let dir = TempDir::new("ota-cancel");
    let cancel = AtomicBool::new(false);
    let mut seen = Vec::new();
    let r = download_with(
        &notice(srv.port, &data),
        dir.path(),
        &cancel,
        &fast(),
        |p| {
            seen.push(p);
            if p >= 10 {
                cancel.store(true, Ordering::SeqCst);
            }
        },
    );
    assert!(matches!(r, Err(OtaError::Cancelled)), "{r:?}");
    assert!(seen.iter().all(|p| *p < 100), "{seen:?}");
    assert!(srv.sent.load(Ordering::SeqCst) < data.len() as u64);
    no_files(dir.path());
}

#[test]
fn ota_download_refused_before_any_request_without_space() {
    let data = firmware(1000);
    let srv = serve(data.clone(), Mode::Whole);
    let dir = TempDir::new("ota-space");
    let free = ota::free_space(dir.path()).unwrap();
    // A margin larger than the free space: refused as if the disk were full.
    let opts = DownloadOptions {
        margin: free + 1,
        ..fast()
    };
    let e = run(&notice(srv.port, &data), dir.path(), &opts)
        .0
        .unwrap_err();
    assert!(matches!(e, OtaError::NoSpace { .. }), "{e}");
    assert_eq!(srv.requests.load(Ordering::SeqCst), 0);
    no_files(dir.path());
}

#[cfg(feature = "tls")]
#[test]
fn ota_download_over_https_with_a_given_ca_and_refused_without_it() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "uiot ota test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        )));
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
    let id =
        native_tls::Identity::from_pkcs8(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap();
    let acceptor = native_tls::TlsAcceptor::new(id).unwrap();

    let data = firmware(100_000);
    let https = |port: u16| {
        let mut n = notice(port, &data);
        if let Notice::Update { url, .. } = &mut n {
            *url = url.replace("http://", "https://");
        }
        n
    };
    let dir = TempDir::new("ota-https");
    // The system's roots do not know the test CA: refused, not retried,
    // nothing kept.
    let srv = serve_with(data.clone(), Mode::Whole, Some(acceptor.clone()));
    let e = run(&https(srv.port), dir.path(), &fast()).0.unwrap_err();
    assert!(matches!(e, OtaError::UrlUnreachable(_)), "{e}");
    assert!(
        srv.ranges.lock().unwrap().is_empty(),
        "no request got through"
    );
    no_files(dir.path());
    // With the CA: fetched, cut after 40 000 bytes, resumed over TLS.
    let srv = serve_with(data.clone(), Mode::CutAt(40_000), Some(acceptor));
    let opts = DownloadOptions {
        ca_pem: Some(ca.pem().into_bytes()),
        ..fast()
    };
    let (r, _) = run(&https(srv.port), dir.path(), &opts);
    assert_eq!(std::fs::read(r.unwrap()).unwrap(), *data);
    let ranges = srv.ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(ranges[1].is_some_and(|r| r > 0), "{ranges:?}");
}

#[cfg(not(feature = "tls"))]
#[test]
fn ota_download_https_needs_the_tls_feature() {
    let data = firmware(1000);
    let mut n = notice(1, &data);
    if let Notice::Update { url, .. } = &mut n {
        *url = url.replace("http://", "https://");
    }
    let dir = TempDir::new("ota-notls");
    let e = run(&n, dir.path(), &fast()).0.unwrap_err();
    assert!(e.to_string().contains("`tls` feature"), "{e}");
    no_files(dir.path());
}
