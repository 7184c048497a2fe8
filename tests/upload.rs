//! File upload (`uiot upload`) against an HTTP server in the test on
//! 127.0.0.1 that plays the file store: the URL request (its HMAC
//! checked) and the PUT (its MD5 computed as it streams in, nothing kept).

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

use md5::{Digest, Md5};
use serde_json::{json, Value};
use support::cli::{describe, output_with_peak_rss, stdout, write_config};
use support::TempDir;
use uiot::platform::http::sign;

const PSN: &str = "fileproduct00001";
const DSN: &str = "filedevice0001";
const SECRET: &str = "filesecret000001";

#[derive(Default)]
struct Seen {
    requested: Vec<Value>,
    stored: Vec<(String, u64, String, Option<String>)>,
    /// Answer PUTs with 403.
    refuse: bool,
}

fn header(lines: &[(String, String)], k: &str) -> Option<String> {
    lines.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

fn server(seen: Arc<Mutex<Seen>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let b = base.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let (seen, base) = (Arc::clone(&seen), b.clone());
            std::thread::spawn(move || serve(c, &seen, &base));
        }
    });
    base
}

fn serve(c: TcpStream, seen: &Mutex<Seen>, base: &str) {
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut hs = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            hs.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        // The body, streamed: MD5 and length only.
        let mut md5 = Md5::new();
        let mut body = Vec::new();
        let mut len: u64 = 0;
        let mut take = |r: &mut BufReader<TcpStream>, mut n: u64, keep: bool| {
            let mut buf = vec![0u8; 64 * 1024];
            while n > 0 {
                let k = r.read(&mut buf[..n.min(65536) as usize]).unwrap();
                assert!(k > 0, "the body ended early");
                md5.update(&buf[..k]);
                if keep {
                    body.extend_from_slice(&buf[..k]);
                }
                len += k as u64;
                n -= k as u64;
            }
        };
        let keep = method == "POST";
        if header(&hs, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).unwrap();
                let n = u64::from_str_radix(size.trim(), 16).unwrap();
                take(&mut r, n, keep);
                let mut crlf = String::new();
                r.read_line(&mut crlf).unwrap();
                if n == 0 {
                    break;
                }
            }
        } else {
            let n = header(&hs, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            take(&mut r, n, keep);
        }
        let digest: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let (status, reply) = {
            let mut s = seen.lock().unwrap();
            if method == "POST" && path == "/api/v1/url" {
                let b: Value = serde_json::from_slice(&body).unwrap();
                s.requested.push(b.clone());
                if header(&hs, "authorization") != Some(sign(SECRET, &body)) {
                    (
                        200,
                        json!({"RetCode": 171, "Message": "signature error"}).to_string(),
                    )
                } else {
                    let url = format!(
                        "{base}/bucket/{PSN}/{DSN}/{}",
                        b["FileName"].as_str().unwrap()
                    );
                    (
                        200,
                        json!({"RetCode": 0, "URL": url, "Authorization": "Ucloud test-token"})
                            .to_string(),
                    )
                }
            } else if method == "PUT" {
                if s.refuse || header(&hs, "authorization").as_deref() != Some("Ucloud test-token")
                {
                    (
                        403,
                        json!({"RetCode": -148654, "ErrMsg": "signature expired"}).to_string(),
                    )
                } else {
                    s.stored
                        .push((path.clone(), len, digest, header(&hs, "content-md5")));
                    (200, String::new())
                }
            } else {
                (404, String::new())
            }
        };
        let _ = write!(
            w,
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
    }
}

fn config(dir: &TempDir, base: &str) -> String {
    let device =
        format!("[device]\nproduct_sn = {PSN}\ndevice_sn = {DSN}\ndevice_secret = {SECRET}\n");
    let cfg = write_config(dir.path(), 1, &device, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "[connection]\n",
            &format!("[connection]\nfile_url = {base}\n"),
        ),
    )
    .unwrap();
    cfg.to_str().unwrap().into()
}

#[test]
fn a_50_mb_file_is_streamed_with_its_md5_and_memory_stays_small() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = server(Arc::clone(&seen));
    let dir = TempDir::new("upload");
    let cfg = config(&dir, &base);
    let path = dir.path().join("big.log");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut expect = Md5::new();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..50 {
        f.write_all(&chunk).unwrap();
        expect.update(&chunk);
    }
    drop(f);
    let expect: String = expect
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_uiot"));
    cmd.args([
        "upload",
        path.to_str().unwrap(),
        "-c",
        &cfg,
        "--name",
        "board.log",
    ]);
    let (out, peak_kb) = output_with_peak_rss(cmd);
    assert!(out.status.success(), "{}", describe(&out));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (line["Size"].as_u64(), line["MD5"].as_str()),
        (Some(50 * 1024 * 1024), Some(expect.as_str()))
    );
    let s = seen.lock().unwrap();
    assert_eq!(s.requested[0]["FileName"], "board.log");
    assert_eq!(s.requested[0]["Content-Type"], "text/plain");
    assert_eq!(s.requested[0]["MD5"], expect.as_str());
    let (path, len, md5, content_md5) = &s.stored[0];
    assert_eq!(
        (path.as_str(), *len),
        (
            format!("/bucket/{PSN}/{DSN}/board.log").as_str(),
            50 * 1024 * 1024
        )
    );
    assert_eq!(
        (md5, content_md5.as_deref()),
        (&expect, Some(expect.as_str()))
    );
    assert!(
        peak_kb > 0 && peak_kb < 30 * 1024,
        "peak RSS {peak_kb} KB for a 50 MB file"
    );
}

#[test]
fn empty_files_bad_secrets_and_refused_puts_say_why() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let base = server(Arc::clone(&seen));
    let dir = TempDir::new("upload-bad");
    let cfg = config(&dir, &base);
    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let o = support::cli::uiot(&["upload", empty.to_str().unwrap(), "-c", &cfg]);
    assert_eq!(o.status.code(), Some(64), "{}", describe(&o));
    assert!(
        support::cli::stderr(&o).contains("empty"),
        "{}",
        describe(&o)
    );
    assert!(
        seen.lock().unwrap().requested.is_empty(),
        "nothing sent for an empty file"
    );
    let missing = dir.path().join("missing.bin");
    let o = support::cli::uiot(&["upload", missing.to_str().unwrap(), "-c", &cfg]);
    assert_eq!(o.status.code(), Some(66), "{}", describe(&o));
    let file = dir.path().join("data.bin");
    std::fs::write(&file, b"hello").unwrap();
    seen.lock().unwrap().refuse = true;
    let o = support::cli::uiot(&["upload", file.to_str().unwrap(), "-c", &cfg]);
    assert_eq!(o.status.code(), Some(77), "{}", describe(&o));
    assert!(
        support::cli::stderr(&o).contains("HTTP 403"),
        "{}",
        describe(&o)
    );
    seen.lock().unwrap().refuse = false;
    let o = support::cli::uiot(&["upload", file.to_str().unwrap(), "-c", &cfg]);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(stdout(&o).contains("/bucket/"), "{}", describe(&o));
}
