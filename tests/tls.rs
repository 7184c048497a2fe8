//! TLS: Mosquitto TLS listeners with certificates made at test time, and
//! peers that speak the wrong thing or nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)] // a test: a failed unwrap or assertion is the failure report
#![cfg(feature = "tls")]

mod support;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, SanType};
use support::{Broker, BrokerConfig, Device, TempDir};
use uiot::{Client, Error, Identity, Options, QoS, TlsOptions};

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A server certificate for `names` signed by `ca`; `expired` puts its
/// validity in the past.
fn server(ca: &Ca, names: &[&str], with_ip: bool, expired: bool) -> (String, String) {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if with_ip {
        p.subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
    p.distinguished_name.push(DnType::CommonName, names[0]);
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

struct Setup {
    broker: Broker,
    good: u16,
    mismatch: u16,
    expired: u16,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    _dir: TempDir,
}

/// A broker with its plain listener plus three TLS listeners: a good
/// certificate (localhost, 127.0.0.1), one for another name, an expired one.
fn setup() -> Option<Setup> {
    let dir = TempDir::new("uiot-tls");
    let ca1 = ca("uiot test CA");
    let ca2 = ca("some other CA");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_file = write("ca.pem", &ca1.cert.pem());
    let other_ca_file = write("other-ca.pem", &ca2.cert.pem());
    let mut config = BrokerConfig::new();
    let mut ports = Vec::new();
    for (name, names, ip, expired) in [
        ("good", &["localhost"][..], true, false),
        ("mismatch", &["wrong.example"][..], false, false),
        ("expired", &["localhost"][..], true, true),
    ] {
        let (cert, key) = server(&ca1, names, ip, expired);
        let cert = write(&format!("{name}.crt"), &cert);
        let key = write(&format!("{name}.key"), &key);
        let port = support::broker::free_port();
        ports.push(port);
        config = config.extra(&format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\ntls_version tlsv1.2",
            ca_file.display(),
            cert.display(),
            key.display()
        ));
    }
    let broker = support::broker_with(config)?;
    Some(Setup {
        broker,
        good: ports[0],
        mismatch: ports[1],
        expired: ports[2],
        ca_file,
        other_ca_file,
        _dir: dir,
    })
}

fn tls_options(host: &str, port: u16, dev: &Device, ca: &Path) -> Options {
    let id = Identity::new(&dev.product_sn, &dev.device_sn);
    let mut o = Options::device(host, port, id, &dev.secret);
    o.connect_timeout = Duration::from_secs(3);
    o.ack_timeout = Duration::from_secs(5);
    o.tls = Some(TlsOptions {
        ca_file: Some(ca.to_path_buf()),
        verify_hostname: true,
    });
    o
}

fn tls_error(r: Result<Client, Error>) -> String {
    match r {
        Err(Error::Tls(m)) => m,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[test]
fn a_trusted_broker_carries_qos1_and_a_200_kib_message() {
    let Some(s) = setup() else { return };
    let dev = s.broker.device(0);
    let cloud = s.broker.observer(&dev.topic("#"));
    for host in ["localhost", "127.0.0.1"] {
        let client = Client::connect(tls_options(host, s.good, &dev, &s.ca_file)).unwrap();
        client
            .publish(&client.topic("upload"), host.as_bytes(), QoS::AtLeastOnce)
            .unwrap();
        client.disconnect().unwrap();
    }
    let client = Client::connect(tls_options("localhost", s.good, &dev, &s.ca_file)).unwrap();
    let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    client
        .publish(&client.topic("big"), &big, QoS::AtLeastOnce)
        .unwrap();
    // Downlink over TLS too.
    client
        .subscribe(&[(client.topic("set"), QoS::AtLeastOnce)])
        .unwrap();
    s.broker.cloud_publish(&dev.topic("set"), "over tls", 1);
    let m = client
        .messages()
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    assert_eq!(m.payload, b"over tls");
    client.disconnect().unwrap();
    let got = cloud.wait_for(3, Duration::from_secs(10));
    assert_eq!(got[0].payload_str(), "localhost");
    assert_eq!(got[1].payload_str(), "127.0.0.1");
    assert_eq!(got[2].payload, big);
}

#[test]
fn an_untrusted_ca_is_refused() {
    let Some(s) = setup() else { return };
    let dev = s.broker.device(0);
    let m = tls_error(Client::connect(tls_options(
        "localhost",
        s.good,
        &dev,
        &s.other_ca_file,
    )));
    assert!(m.contains("not trusted") && m.contains("ca_file"), "{m}");
    // The platform's CA (the default) does not vouch for a test broker either.
    let mut o = tls_options("localhost", s.good, &dev, &s.ca_file);
    o.tls = Some(TlsOptions::default());
    let m = tls_error(Client::connect(o));
    assert!(m.contains("not trusted"), "{m}");
}

#[test]
fn a_hostname_mismatch_is_refused_and_names_the_setting() {
    let Some(s) = setup() else { return };
    let dev = s.broker.device(0);
    let m = tls_error(Client::connect(tls_options(
        "localhost",
        s.mismatch,
        &dev,
        &s.ca_file,
    )));
    assert!(
        m.contains("does not name localhost") && m.contains("tls_verify_hostname = false"),
        "{m}"
    );
    // Hostname checking off: the CA is still checked, and it connects.
    let mut o = tls_options("localhost", s.mismatch, &dev, &s.ca_file);
    o.tls = Some(TlsOptions {
        ca_file: Some(s.ca_file.clone()),
        verify_hostname: false,
    });
    Client::connect(o).unwrap().disconnect().unwrap();
    let mut o = tls_options("localhost", s.mismatch, &dev, &s.other_ca_file);
    o.tls.as_mut().unwrap().verify_hostname = false;
    assert!(tls_error(Client::connect(o)).contains("not trusted"));
}

#[test]
fn an_expired_certificate_is_refused() {
    let Some(s) = setup() else { return };
    let dev = s.broker.device(0);
    let m = tls_error(Client::connect(tls_options(
        "localhost",
        s.expired,
        &dev,
        &s.ca_file,
    )));
    assert!(m.contains("expired") && m.contains("clock"), "{m}");
}

#[test]
fn wrong_port_for_the_protocol_fails_fast_with_a_hint() {
    let Some(s) = setup() else { return };
    let dev = s.broker.device(0);
    // TLS to the plain port.
    let t = Instant::now();
    let m = tls_error(Client::connect(tls_options(
        "localhost",
        s.broker.port(),
        &dev,
        &s.ca_file,
    )));
    assert!(m.contains("1883") && m.contains("tls = false"), "{m}");
    assert!(t.elapsed() < Duration::from_secs(3));
    // Plain MQTT to the TLS port.
    let mut o = tls_options("localhost", s.good, &dev, &s.ca_file);
    o.tls = None;
    let t = Instant::now();
    let text = match Client::connect(o) {
        Err(e @ (Error::Tls(_) | Error::Unreachable(_) | Error::Timeout(_))) => e.to_string(),
        other => panic!("expected a failure, got {other:?}"),
    };
    assert!(text.contains("tls"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[test]
fn a_peer_that_never_answers_the_handshake_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(4));
        drop(conn);
    });
    let dev = Device::new("prodprodprod0001", "devicedevice0001", "secretsecret0001");
    let mut o = tls_options("localhost", port, &dev, Path::new("unused"));
    o.tls = Some(TlsOptions::default());
    o.connect_timeout = Duration::from_secs(1);
    let t = Instant::now();
    match Client::connect(o) {
        Err(Error::Timeout(m)) => assert!(m.contains("TLS handshake"), "{m}"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    holder.join().unwrap();
}

#[test]
fn the_built_in_ca_is_the_uiot_core_ca() {
    let dir = TempDir::new("uiot-ca");
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, uiot::UIOT_CORE_CA_PEM).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&pem)
        .output()
        .expect("openssl is installed by scripts/install-deps.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("27:4A:C9:13:A8:91:7B:F0:1A:D7:05:EA:0A:51:77:33:0C:47:56:01:E0:82:DA:5B:38:F9:51:12:B7:91:33:8B"),
        "{text}"
    );
}

#[test]
fn uiot_pub_over_tls_from_a_config_file() {
    let Some(s) = setup() else { return };
    let dev = s.broker.device(0);
    let cloud = s.broker.observer(&dev.topic("#"));
    let dir = TempDir::new("uiot-tls-cli");
    let ini = dir.path().join("tls.ini");
    std::fs::write(
        &ini,
        format!(
            "[device]\nproduct_sn = {}\ndevice_sn = {}\ndevice_secret = {}\n\
             [connection]\nhost = localhost\nport = {}\nca_file = {}\nconnect_timeout = 3\n",
            dev.product_sn,
            dev.device_sn,
            dev.secret,
            s.good,
            s.ca_file.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_uiot"))
        .args(["pub", "-c"])
        .arg(&ini)
        .args(["-t", "upload", "-q", "1", "-m", "tls from the cli"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cloud.wait_for(1, Duration::from_secs(5))[0].payload_str(),
        "tls from the cli"
    );
}
