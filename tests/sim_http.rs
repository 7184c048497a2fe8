//! `uiot-sim`'s HTTP endpoints against a real Mosquitto, with the library's
//! own clients: `HttpUplink` publishes through the sim and an MQTT
//! subscriber gets the message (custom and system topics, with and without
//! the leading slash); `expire-tokens` makes the client renew once; wrong
//! topics, secrets, devices, Timestamps and sizes are typed errors with
//! the platform's RetCodes; `FileUpload` of a few MB lands in `--files`
//! with its MD5, and a PUT whose MD5 or size is not the announced one is
//! refused and leaves no file. The CLI the same way: `uiot pub --http`
//! reaches a subscriber, `uiot upload` streams 50 MB into `--files` with
//! its peak RSS sampled.

#![cfg(feature = "http")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use serde_json::{json, Value};
use support::broker::Device;
use support::cli::{describe, output_with_peak_rss, static_device, uiot, write_config};
use support::sim::Sim;
use support::TempDir;
use uiot::platform::http::{sign, HttpUplink};
use uiot::platform::upload::FileUpload;
use uiot::{Error, Identity};

const WAIT: Duration = Duration::from_secs(10);

fn uplink(base: &str, psn: &str, dsn: &str, secret: &str) -> HttpUplink {
    HttpUplink::new(
        base,
        Identity::new(psn, dsn),
        secret.into(),
        Duration::from_secs(5),
    )
}

fn of(d: &Device, base: &str) -> HttpUplink {
    uplink(base, &d.product_sn, &d.device_sn, &d.secret)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POST `body` to `url` with `headers`; the status and the JSON reply.
fn post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body).unwrap();
    let text = resp.body_mut().read_to_string().unwrap();
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (resp.status().as_u16(), v)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// A token from `/auth` for `d`, signed as the platform wants.
fn token(base: &str, d: &Device) -> String {
    let body = json!({"ProductSN": d.product_sn, "DeviceSN": d.device_sn}).to_string();
    let sig = sign(&d.secret, body.as_bytes());
    let (_, v) = post(
        &format!("{base}/auth"),
        body.as_bytes(),
        &[("Authorization", &sig)],
    );
    assert_eq!(v["RetCode"], 0, "{v}");
    v["Token"].as_str().unwrap().to_string()
}

#[test]
fn http_publishes_reach_mqtt_subscribers_on_custom_and_system_topics() {
    let Some(broker) = support::broker() else {
        return;
    };
    let sim = Sim::start_http(&broker, &[]);
    let base = sim.http_base();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let d = broker.device(0);
    let cloud = broker.observer(&d.topic("#"));
    let up = of(&d, &base);
    let id = up.publish("upload", b"hello over http").unwrap();
    assert!(!id.is_empty());
    let topic = d.topic("upload");
    assert!(cloud.wait_for_topic(&topic, WAIT), "{:?}", sim.lines());
    assert_eq!(cloud.messages_on(&topic)[0].payload, b"hello over http");
    let auth = sim.expect("the auth", |l| l["sim"] == "http-auth");
    assert_eq!(
        (auth["psn"].as_str(), auth["dsn"].as_str()),
        (Some(d.product_sn.as_str()), Some(d.device_sn.as_str()))
    );
    let line = sim.expect("the publish", |l| l["sim"] == "http-publish");
    assert_eq!(
        (
            line["topic"].as_str(),
            line["bytes"].as_u64(),
            line["payload"].as_str()
        ),
        (Some(topic.as_str()), Some(15), Some("hello over http")),
        "{line}"
    );
    // A system topic the device publishes: the sim answers it as the cloud.
    up.publish(&d.system_topic("shadow/get"), b"{}").unwrap();
    sim.expect("the shadow get answered", |l| {
        l["sim"] == "answered" && l["request"] == "shadow/get"
    });
    // The topic with its leading slash is the same topic; a long payload
    // is quoted at 200 characters.
    let tok = token(&base, &d);
    let long = "x".repeat(5000);
    let url = format!("{base}/topic/{}", d.topic("upload"));
    let (_, v) = post(&url, long.as_bytes(), &[("Password", &tok)]);
    assert_eq!(v["RetCode"], 0, "{v}");
    let line = sim.expect("the long publish", |l| l["bytes"] == 5000);
    assert_eq!(line["payload"].as_str().unwrap().len(), 200);
    assert!(cloud.wait_for(2, WAIT).len() >= 2);
}

#[test]
fn expired_tokens_are_renewed_once_and_refusals_carry_the_retcode() {
    let Some(broker) = support::broker() else {
        return;
    };
    let mut sim = Sim::start_http(&broker, &[]);
    let base = sim.http_base();
    let d = broker.device(1);
    let up = of(&d, &base);
    up.publish("upload", b"one").unwrap();
    up.publish("upload", b"two").unwrap();
    assert_eq!(sim.lines_where(|l| l["sim"] == "http-auth").len(), 1);
    sim.send("expire-tokens");
    let ok = sim.expect("the expiry", |l| l["command"] == "expire-tokens");
    assert_eq!(ok["tokens"], 1);
    up.publish("upload", b"three").unwrap();
    assert_eq!(sim.lines_where(|l| l["sim"] == "http-auth").len(), 2);
    assert_eq!(sim.lines_where(|l| l["sim"] == "http-publish").len(), 3);

    // Not one of the device's publish topics: 100075 from the sim.
    match up.publish(&d.system_topic("shadow/downstream"), b"x") {
        Err(Error::Platform { code: 100075, .. }) => {}
        other => panic!("{other:?}"),
    }
    // Another device's topic: refused before anything is sent.
    assert!(matches!(
        up.publish(&broker.device(2).topic("upload"), b"x"),
        Err(Error::TopicDenied { .. })
    ));
    // A wrong secret: 171; a device the sim does not know: 100071, until
    // its secret is given on stdin.
    match uplink(&base, &d.product_sn, &d.device_sn, "wrongsecret00000").publish("upload", b"x") {
        Err(Error::Platform { code: 171, .. }) => {}
        other => panic!("{other:?}"),
    }
    let stranger = uplink(&base, "simhttpprod0001", "stranger01", "strangersecret01");
    match stranger.publish("upload", b"x") {
        Err(Error::Platform { code: 100071, .. }) => {}
        other => panic!("{other:?}"),
    }
    sim.send("secret simhttpprod0001 stranger01 strangersecret01");
    sim.expect("the secret", |l| l["command"] == "secret");
    assert!(
        !sim.lines()
            .iter()
            .any(|l| l.to_string().contains("strangersecret01")),
        "secrets are never printed"
    );
    stranger.publish("upload", b"hi").unwrap();

    // Raw requests: a stale Timestamp, a malformed body, an unknown token,
    // a body over 128 KB.
    let body = json!({"ProductSN": d.product_sn, "DeviceSN": d.device_sn,
        "Timestamp": (now_ms() - 2 * 3600 * 1000).to_string()})
    .to_string();
    let sig = sign(&d.secret, body.as_bytes());
    let (_, v) = post(
        &format!("{base}/auth"),
        body.as_bytes(),
        &[("Authorization", &sig)],
    );
    assert_eq!(v["RetCode"], 100070, "{v}");
    let body = json!({"ProductSN": d.product_sn, "DeviceSN": d.device_sn,
        "Timestamp": now_ms().to_string()})
    .to_string();
    let sig = sign(&d.secret, body.as_bytes());
    let (_, v) = post(
        &format!("{base}/auth"),
        body.as_bytes(),
        &[("Authorization", &sig)],
    );
    assert_eq!(v["RetCode"], 0, "a fresh Timestamp: {v}");
    let (_, v) = post(
        &format!("{base}/auth"),
        b"{not json",
        &[("Authorization", "00")],
    );
    assert_eq!(v["RetCode"], 230, "{v}");
    let url = format!("{base}/topic/{}", &d.topic("upload")[1..]);
    let (_, v) = post(&url, b"x", &[("Password", "sim.nosuchtoken")]);
    assert_eq!(v["RetCode"], 100073, "{v}");
    let tok = token(&base, &d);
    let (_, v) = post(&url, &vec![b'a'; 128 * 1024 + 1], &[("Password", &tok)]);
    assert_eq!(v["RetCode"], 100076, "{v}");
    let (_, v) = post(&url, &vec![b'a'; 128 * 1024], &[("Password", &tok)]);
    assert_eq!(v["RetCode"], 0, "exactly 128 KB: {v}");
}

#[test]
fn file_uploads_land_in_the_files_dir_with_their_md5_and_bad_ones_leave_nothing() {
    let Some(broker) = support::broker() else {
        return;
    };
    let files = TempDir::new("sim-files");
    let sim = Sim::start_http(&broker, &["--files", files.path().to_str().unwrap()]);
    assert_eq!(sim.files_dir(), files.path());
    let base = sim.http_base();
    let d = broker.device(0);
    let src = TempDir::new("sim-files-src");
    let path = src.path().join("board.log");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut md5 = Md5::new();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
    for _ in 0..3 {
        f.write_all(&chunk).unwrap();
        md5.update(&chunk);
    }
    f.write_all(b"tail").unwrap();
    md5.update(b"tail");
    drop(f);
    let md5: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let up = FileUpload::new(
        &base,
        Identity::new(&d.product_sn, &d.device_sn),
        d.secret.as_str().into(),
        Duration::from_secs(10),
    );
    let got = up.upload(&path, Some("logs 1.txt")).unwrap();
    assert_eq!(
        (got.size, got.md5.as_str()),
        (3 * 1024 * 1024 + 4, md5.as_str())
    );
    assert!(
        got.url.contains("/files/") && got.url.contains("logs%201.txt"),
        "{}",
        got.url
    );
    let stored = files
        .path()
        .join(&d.product_sn)
        .join(&d.device_sn)
        .join("logs 1.txt");
    let bytes = std::fs::read(&stored).unwrap();
    let stored_md5: String = Md5::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(stored_md5, md5);
    let line = sim.expect("the upload", |l| l["sim"] == "upload");
    assert_eq!(
        (
            line["ok"].as_bool(),
            line["size"].as_u64(),
            line["md5"].as_str(),
            line["name"].as_str()
        ),
        (
            Some(true),
            Some(3 * 1024 * 1024 + 4),
            Some(md5.as_str()),
            Some("logs 1.txt")
        ),
        "{line}"
    );

    // Announce one MD5, send other bytes: 400 and no file.
    let ask = |name: &str, size: u64, md5: &str| -> (String, String) {
        let body = json!({"ProductSN": d.product_sn, "DeviceSN": d.device_sn, "FileName": name,
            "FileSize": size, "MD5": md5, "Content-Type": "text/plain"})
        .to_string();
        let sig = sign(&d.secret, body.as_bytes());
        let (_, v) = post(
            &format!("{base}/api/v1/url"),
            body.as_bytes(),
            &[("Authorization", &sig)],
        );
        assert_eq!(v["RetCode"], 0, "{v}");
        (
            v["URL"].as_str().unwrap().into(),
            v["Authorization"].as_str().unwrap().into(),
        )
    };
    let put = |url: &str, auth: &str, body: &[u8], content_md5: &str| -> (u16, Value) {
        let mut resp = agent()
            .put(url)
            .header("Authorization", auth)
            .header("Content-MD5", content_md5)
            .send(body)
            .unwrap();
        let text = resp.body_mut().read_to_string().unwrap();
        (resp.status().as_u16(), serde_json::from_str(&text).unwrap())
    };
    let body = b"the real content";
    let real: String = Md5::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (url, auth) = ask("bad.txt", body.len() as u64, &"0".repeat(32));
    let (status, v) = put(&url, &auth, body, &real);
    assert_eq!(status, 400, "{v}");
    assert!(v["ErrMsg"].as_str().unwrap().contains("MD5"), "{v}");
    // The URL is used once.
    let (status, _) = put(&url, &auth, body, &real);
    assert_eq!(status, 403);
    // Right MD5, wrong size; right everything but Content-MD5; a wrong
    // Authorization.
    let (url, auth) = ask("short.txt", body.len() as u64 + 1, &real);
    assert_eq!(put(&url, &auth, body, &real).0, 400);
    let (url, auth) = ask("cmd5.txt", body.len() as u64, &real);
    assert_eq!(put(&url, &auth, body, &"1".repeat(32)).0, 400);
    let (url, _) = ask("auth.txt", body.len() as u64, &real);
    assert_eq!(put(&url, "Ucloud wrong", body, &real).0, 403);
    let refused = sim.wait_for_count(5, |l| l["sim"] == "upload" && l["ok"] == false, WAIT);
    assert_eq!(refused.len(), 5, "{refused:?}");
    let dir = files.path().join(&d.product_sn).join(&d.device_sn);
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["logs 1.txt"], "nothing but the good upload is kept");
    // And the same name done right is stored.
    let (url, auth) = ask("good.txt", body.len() as u64, &real);
    assert_eq!(put(&url, &auth, body, &real).0, 200);
    assert_eq!(std::fs::read(dir.join("good.txt")).unwrap(), body);
}

#[test]
fn the_cli_publishes_over_http_and_uploads_50_mb_through_the_sim() {
    let Some(broker) = support::broker() else {
        return;
    };
    let files = TempDir::new("sim-cli-files");
    let sim = Sim::start_http(&broker, &["--files", files.path().to_str().unwrap()]);
    let base = sim.http_base();
    let d = broker.device(1);
    let dir = TempDir::new("sim-cli");
    let cfg = write_config(
        dir.path(),
        broker.port(),
        &static_device(&d),
        &format!("http_url = {base}\nfile_url = {base}\n"),
    );
    let cfg = cfg.to_str().unwrap();

    // uiot pub --http: a subscriber on MQTT gets it.
    let cloud = broker.observer(&d.topic("#"));
    let o = uiot(&[
        "pub",
        "--http",
        "-c",
        cfg,
        "-t",
        "upload",
        "-m",
        "hi from the cli",
    ]);
    assert!(o.status.success(), "{}", describe(&o));
    let topic = d.topic("upload");
    assert!(cloud.wait_for_topic(&topic, WAIT), "{:?}", sim.lines());
    assert_eq!(cloud.messages_on(&topic)[0].payload, b"hi from the cli");

    // uiot upload: 50 MB streamed, stored whole with its MD5, memory small.
    let path = dir.path().join("big.log");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut md5 = Md5::new();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 241) as u8).collect();
    for _ in 0..50 {
        f.write_all(&chunk).unwrap();
        md5.update(&chunk);
    }
    drop(f);
    let md5: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_uiot"));
    cmd.args([
        "upload",
        path.to_str().unwrap(),
        "-c",
        cfg,
        "--name",
        "big.log",
    ])
    .env_remove("UIOT_CONFIG")
    .env_remove("RUST_LOG");
    let (out, peak_kb) = output_with_peak_rss(cmd);
    assert!(out.status.success(), "{}", describe(&out));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (line["Size"].as_u64(), line["MD5"].as_str()),
        (Some(50 * 1024 * 1024), Some(md5.as_str())),
        "{line}"
    );
    let stored = files
        .path()
        .join(&d.product_sn)
        .join(&d.device_sn)
        .join("big.log");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), 50 * 1024 * 1024);
    let up = sim.expect("the upload", |l| l["sim"] == "upload");
    assert_eq!(
        (up["ok"].as_bool(), up["md5"].as_str()),
        (Some(true), Some(md5.as_str())),
        "{up}"
    );
    // Streamed: the process never holds the file (50 MB); what it needs is
    // the binary, its libraries and a few buffers.
    assert!(
        peak_kb > 0 && peak_kb < 16 * 1024,
        "uiot upload peaked at {peak_kb} KB for a 50 MB file"
    );
}
