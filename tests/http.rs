//! HTTP uplink (`uiot::platform::http`, `uiot pub --http`) against an HTTP
//! server in the test on 127.0.0.1 that plays the platform's two
//! endpoints: `/auth` checks the HMAC-SHA256 signature and issues tokens,
//! `/topic/...` takes a message with a valid token (and can expire it).
//! The token file (`[connection] http_token_file`) carries a token from one
//! `uiot pub --http` run to the next.

#![cfg(feature = "http")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::cli::{describe, uiot, write_config};
use support::TempDir;
use uiot::platform::http::{sign, HttpUplink, MAX_HTTP_PAYLOAD};
use uiot::{Error, Identity};

const PSN: &str = "httpproduct00001";
const DSN: &str = "httpdevice0001";
const SECRET: &str = "httpsecret000001";

#[derive(Default)]
struct Seen {
    auths: usize,
    token: Option<String>,
    published: Vec<(String, Vec<u8>)>,
    /// The next publish answers 100074 (token expired).
    expire_next: bool,
}

/// The platform's HTTP side; returns its base URL.
fn server(seen: Arc<Mutex<Seen>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || serve(c, &seen));
        }
    });
    base
}

fn serve(c: TcpStream, seen: &Mutex<Seen>) {
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let reply = {
            let mut s = seen.lock().unwrap();
            if path == "/auth" {
                s.auths += 1;
                let b: Value = serde_json::from_slice(&body).unwrap();
                let good = header("authorization") == Some(sign(SECRET, &body))
                    && b["ProductSN"] == PSN
                    && b["DeviceSN"] == DSN
                    && b["Timestamp"]
                        .as_str()
                        .is_some_and(|t| t.parse::<u64>().is_ok());
                if good {
                    let tok = format!("token-{}", s.auths);
                    s.token = Some(tok.clone());
                    json!({"RetCode": 0, "Message": "Success", "Token": tok})
                } else {
                    json!({"RetCode": 171, "Message": "signature error"})
                }
            } else if let Some(topic) = path.strip_prefix("/topic/") {
                if s.expire_next || header("password") != s.token {
                    s.expire_next = false;
                    json!({"RetCode": 100074, "Message": "token expired"})
                } else {
                    s.published.push((topic.to_string(), body));
                    json!({"RetCode": 0, "Message": "Success", "MessageID": "349022219378098176"})
                }
            } else {
                json!({"RetCode": 230})
            }
        };
        let text = reply.to_string();
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
    }
}

fn uplink(base: &str, secret: &str) -> HttpUplink {
    HttpUplink::new(
        base,
        Identity::new(PSN, DSN),
        secret.into(),
        Duration::from_secs(5),
    )
}

#[test]
fn publishes_with_one_token_renewed_when_expired() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = server(Arc::clone(&seen));
    let up = uplink(&base, SECRET);
    assert_eq!(up.publish("upload", b"one").unwrap(), "349022219378098176");
    up.publish("/httpproduct00001/httpdevice0001/upload", b"two")
        .unwrap();
    assert_eq!(seen.lock().unwrap().auths, 1, "the token is kept");
    seen.lock().unwrap().expire_next = true;
    up.publish("upload", b"three").unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(s.auths, 2, "an expired token is renewed once");
    let got: Vec<(&str, &[u8])> = s
        .published
        .iter()
        .map(|(t, b)| (t.as_str(), b.as_slice()))
        .collect();
    let topic = "httpproduct00001/httpdevice0001/upload";
    assert_eq!(
        got,
        vec![(topic, &b"one"[..]), (topic, b"two"), (topic, b"three")]
    );
}

#[test]
fn refusals_and_limits_are_typed_errors() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = server(Arc::clone(&seen));
    match uplink(&base, "wrongsecret00000").publish("upload", b"x") {
        Err(Error::Platform { code: 171, .. }) => {}
        other => panic!("{other:?}"),
    }
    let up = uplink(&base, SECRET);
    assert!(matches!(
        up.publish("upload", &vec![0; MAX_HTTP_PAYLOAD + 1]),
        Err(Error::Limit(_))
    ));
    assert!(matches!(
        up.publish("/otherproduct/otherdev/upload", b"x"),
        Err(Error::TopicDenied { .. })
    ));
    assert!(seen.lock().unwrap().published.is_empty());
    // Nothing listening: unreachable.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let up = uplink(&format!("http://{closed}"), SECRET);
    assert!(matches!(
        up.publish("upload", b"x"),
        Err(Error::Unreachable(_))
    ));
}

#[test]
fn uiot_pub_http_sends_a_message_and_lines_on_one_token() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = server(Arc::clone(&seen));
    let dir = TempDir::new("http-cli");
    let device =
        format!("[device]\nproduct_sn = {PSN}\ndevice_sn = {DSN}\ndevice_secret = {SECRET}\n");
    // The MQTT port is never used by --http.
    let cfg = write_config(dir.path(), 1, &device, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "[connection]\n",
            &format!("[connection]\nhttp_url = {base}\n"),
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let o = uiot(&["pub", "--http", "-c", cfg, "-t", "upload", "-m", "hello"]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_uiot"))
        .args(["pub", "--http", "-c", cfg, "-t", "upload", "-l"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a\nb\nc\n").unwrap();
    assert!(child.wait().unwrap().success());
    let s = seen.lock().unwrap();
    let bodies: Vec<&[u8]> = s.published.iter().map(|(_, b)| b.as_slice()).collect();
    assert_eq!(bodies, vec![&b"hello"[..], b"a", b"b", b"c"]);
    assert_eq!(
        s.auths, 1,
        "the token file carries the token to the next run"
    );
    drop(s);
    let o = uiot(&[
        "pub",
        "--http",
        "-c",
        cfg,
        "-t",
        "/otherproduct/otherdev/upload",
        "-m",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(77), "{}", describe(&o));
}

/// A config for the server at `base` in `dir` (`extra` lines in
/// `[connection]`); its path.
fn http_config(dir: &Path, base: &str, extra: &str) -> PathBuf {
    let device =
        format!("[device]\nproduct_sn = {PSN}\ndevice_sn = {DSN}\ndevice_secret = {SECRET}\n");
    let cfg = write_config(dir, 1, &device, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "[connection]\n",
            &format!("[connection]\nhttp_url = {base}\n{extra}"),
        ),
    )
    .unwrap();
    cfg
}

/// `uiot pub --http -m ..` with `cfg`; asserts exit 0.
fn pub_http(cfg: &Path, msg: &str) -> std::process::Output {
    let o = uiot(&[
        "pub",
        "--http",
        "-c",
        cfg.to_str().unwrap(),
        "-t",
        "upload",
        "-m",
        msg,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    o
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The token file's JSON with `key` set to `value`, written back.
fn edit(file: &Path, key: &str, value: Value) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    v[key] = value;
    std::fs::write(file, v.to_string()).unwrap();
}

#[test]
fn uiot_pub_http_runs_share_one_token_through_the_token_file() {
    use std::os::unix::fs::MetadataExt;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = server(Arc::clone(&seen));
    let dir = TempDir::new("http-token-file");
    let cfg = http_config(dir.path(), &base, "");
    pub_http(&cfg, "one");
    pub_http(&cfg, "two");
    assert_eq!(seen.lock().unwrap().auths, 1, "two runs, one /auth");
    assert_eq!(seen.lock().unwrap().published.len(), 2);
    // The default: http.token beside the config that holds the secret.
    let file = dir.path().join("http.token");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(SECRET), "the secret is not kept: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["token"], "token-1");
    assert_eq!(v["product_sn"], PSN);
    assert_eq!(v["device_sn"], DSN);
    assert_eq!(v["key"], &sign(SECRET, b"uiot-token-cache")[..16]);
    let obtained = v["obtained"].as_u64().unwrap();
    assert!(obtained.abs_diff(now_secs()) < 60, "{obtained}");
    // The token is never logged, not even with -d.
    let o = uiot(&[
        "pub",
        "--http",
        "-d",
        "-c",
        cfg.to_str().unwrap(),
        "-t",
        "upload",
        "-m",
        "three",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(!describe(&o).contains("token-1"), "{}", describe(&o));
    assert_eq!(seen.lock().unwrap().auths, 1);

    // Refused by the platform (expired early): renewed once, the file
    // replaced with the new token.
    seen.lock().unwrap().expire_next = true;
    pub_http(&cfg, "four");
    assert_eq!(seen.lock().unwrap().auths, 2);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["token"], "token-2");
    pub_http(&cfg, "five");
    assert_eq!(seen.lock().unwrap().auths, 2);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "uiot.ini and http.token only: {left:?}");
}

#[test]
fn a_kept_token_not_for_this_device_expired_or_corrupt_is_not_used() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = server(Arc::clone(&seen));
    let dir = TempDir::new("http-token-stale");
    // Relative to the config file, in a directory that does not exist yet.
    let cfg = http_config(dir.path(), &base, "http_token_file = state/tok\n");
    pub_http(&cfg, "first");
    let file = dir.path().join("state/tok");
    assert!(file.is_file());
    assert_eq!(seen.lock().unwrap().auths, 1);
    let mut auths = 1;
    // Each edit leaves the server's current token in the file: were it
    // used, there would be no new /auth.
    let current = |seen: &Mutex<Seen>| Value::String(seen.lock().unwrap().token.clone().unwrap());
    let six_days = 6 * 24 * 3600;
    let cases: Vec<(&str, Value)> = vec![
        ("key", json!("0123456789abcdef")),
        ("device_sn", json!("otherdevice1")),
        ("product_sn", json!("otherproduct0001")),
        ("url", json!("http://127.0.0.1:1")),
        ("obtained", json!(now_secs() - six_days - 10)),
        ("obtained", json!(now_secs() + 3600)),
        ("format", json!(2)),
    ];
    for (key, value) in cases {
        edit(&file, "token", current(&seen));
        edit(&file, key, value.clone());
        pub_http(&cfg, "x");
        auths += 1;
        assert_eq!(
            seen.lock().unwrap().auths,
            auths,
            "a kept token with {key} = {value} was used"
        );
    }
    // Younger than 6 days: used.
    edit(&file, "obtained", json!(now_secs() - six_days + 600));
    pub_http(&cfg, "y");
    assert_eq!(seen.lock().unwrap().auths, auths);
    // Corrupt, then oversized: a new token, the publish succeeds.
    std::fs::write(&file, b"{\"format\":1,\"tok").unwrap();
    pub_http(&cfg, "z");
    auths += 1;
    assert_eq!(seen.lock().unwrap().auths, auths);
    let big = format!(
        "{}{}",
        std::fs::read_to_string(&file).unwrap(),
        " ".repeat(5000)
    );
    std::fs::write(&file, big).unwrap();
    pub_http(&cfg, "w");
    auths += 1;
    assert_eq!(seen.lock().unwrap().auths, auths);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["token"], Value::String(format!("token-{auths}")));
}

#[test]
fn a_token_kept_for_another_secret_is_not_used_and_an_unwritable_file_is_a_warning() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = server(Arc::clone(&seen));
    let dir = TempDir::new("http-token-secret");
    let file = dir.path().join("http.token");
    uplink(&base, SECRET)
        .with_token_file(&file)
        .publish("upload", b"a")
        .unwrap();
    assert!(file.is_file());
    // The same device with another secret: it authenticates itself (and
    // is refused) rather than publishing with the kept token.
    let other = uplink(&base, "wrongsecret00000").with_token_file(&file);
    assert_eq!(other.token_file(), Some(file.as_path()));
    match other.publish("upload", b"b") {
        Err(Error::Platform { code: 171, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().unwrap().published.len(), 1);
    // A token file that cannot be written: the publish still succeeds.
    let cfg = http_config(
        dir.path(),
        &base,
        "http_token_file = uiot.ini/cannot/be/here\n",
    );
    let o = pub_http(&cfg, "c");
    assert!(describe(&o).contains("http_token_file"), "{}", describe(&o));
    assert_eq!(seen.lock().unwrap().published.len(), 2);
}
