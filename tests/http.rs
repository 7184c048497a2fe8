//! HTTP uplink (`uiot::platform::http`, `uiot pub --http`) against an HTTP
//! server in the test on 127.0.0.1 that plays the platform's two
//! endpoints: `/auth` checks the HMAC-SHA256 signature and issues tokens,
//! `/topic/...` takes a message with a valid token (and can expire it).

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
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    assert_eq!(s.auths, 2, "one token per process");
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
