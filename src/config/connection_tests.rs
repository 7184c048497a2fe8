//! Tests of `[connection]` (config/connection.rs).

use super::*;
use crate::config::file::tests::TempDir;
use crate::config::test_util::*;

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn defaults_of_every_key() {
    let c = ok(&minimal());
    let k = &c.connection;
    assert_eq!(k.region, "cn-sh2");
    assert_eq!(k.host, "mqtt-cn-sh2.iot.ucloud.cn");
    assert_eq!(k.port, 8883);
    assert!(k.tls);
    assert_eq!(k.ca_file, None);
    assert!(k.tls_verify_hostname);
    assert_eq!(k.keep_alive, Duration::from_secs(300));
    assert!(k.clean_session);
    assert_eq!(k.protocol, Protocol::V311);
    assert_eq!(k.connect_timeout, Duration::from_secs(10));
    assert_eq!(k.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(k.tls_options(), Some(TlsOptions::default()));
}

#[test]
fn every_key_can_be_set() {
    let d = TempDir::new("conn-every");
    let ca = d.file("ca.pem", PEM.as_bytes());
    let c = ok(&with_conn(&format!(
        "region = cn-gd\nhost = 127.0.0.1\nport = 1884\ntls = yes\nca_file = {}\n\
         tls_verify_hostname = off\nkeep_alive = 1200\nclean_session = 0\nprotocol = 3.1\n\
         connect_timeout = 300\nshutdown_timeout = 0",
        ca.display()
    )));
    let k = &c.connection;
    assert_eq!(k.region, "cn-gd");
    assert_eq!(k.host, "127.0.0.1");
    assert_eq!(k.port, 1884);
    assert!(k.tls);
    assert_eq!(k.ca_file.as_deref(), Some(ca.as_path()));
    assert!(!k.tls_verify_hostname);
    assert_eq!(k.keep_alive, Duration::from_secs(1200));
    assert!(!k.clean_session);
    assert_eq!(k.protocol, Protocol::V31);
    assert_eq!(k.connect_timeout, Duration::from_secs(300));
    assert_eq!(k.shutdown_timeout, Duration::ZERO);
    assert_eq!(
        k.tls_options(),
        Some(TlsOptions {
            ca_file: Some(ca.clone()),
            verify_hostname: false
        })
    );
    assert_eq!(ok(&with_conn("tls = off")).connection.tls_options(), None);
}

#[test]
fn region_maps_to_host_and_host_overrides() {
    assert_eq!(
        ok(&with_conn("region = cn-gd")).connection.host,
        "mqtt-cn-gd.iot.ucloud.cn"
    );
    assert_eq!(
        ok(&with_conn("region = cn-sh2")).connection.host,
        "mqtt-cn-sh2.iot.ucloud.cn"
    );
    let c = ok(&with_conn("region = cn-gd\nhost = broker.example.com"));
    assert_eq!(c.connection.host, "broker.example.com");
    assert_eq!(c.connection.region, "cn-gd");
    let p = one_problem(&with_conn("region = cn-bj2"));
    assert_eq!(
        p,
        "uiot.ini: [connection] region = cn-bj2: unknown region; known regions: cn-sh2, cn-gd; \
         to use another broker set host (and port) instead"
    );
}

#[test]
fn bad_host() {
    let p = one_problem(&with_conn("host = mqtt://broker:1883"));
    assert!(
        p.starts_with("uiot.ini: [connection] host = mqtt://broker:1883: must be a host name"),
        "{p}"
    );
    assert!(p.contains("port"), "{p}");
    assert_eq!(ok(&with_conn("host = ::1")).connection.host, "::1");
}

#[test]
fn port_default_follows_tls() {
    assert_eq!(ok(&with_conn("tls = false")).connection.port, 1883);
    assert_eq!(ok(&with_conn("tls = true")).connection.port, 8883);
    assert_eq!(
        ok(&with_conn("tls = false\nport = 8883")).connection.port,
        8883
    );
    assert_eq!(
        one_problem(&with_conn("tls = no\nport = 0")),
        "uiot.ini: [connection] port = 0: must be 1..65535; remove the line for the default (1883 with tls = false)"
    );
    assert_eq!(problems(&with_conn("port = 65536")).len(), 1);
    assert_eq!(problems(&with_conn("port = http")).len(), 1);
    assert_eq!(ok(&with_conn("port = 65535")).connection.port, 65535);
}

#[test]
fn keep_alive_range() {
    assert_eq!(
        one_problem(&with_conn("keep_alive = 10")),
        "uiot.ini: [connection] keep_alive = 10: must be 30..1200 seconds (UIoT Core refuses others); \
         remove the line for the default (300)"
    );
    assert_eq!(problems(&with_conn("keep_alive = 1201")).len(), 1);
    assert_eq!(problems(&with_conn("keep_alive = 5m")).len(), 1);
    assert_eq!(problems(&with_conn("keep_alive = -30")).len(), 1);
    assert_eq!(
        ok(&with_conn("keep_alive = 30")).connection.keep_alive,
        Duration::from_secs(30)
    );
}

#[test]
fn timeout_ranges() {
    assert_eq!(
        one_problem(&with_conn("connect_timeout = 0")),
        "uiot.ini: [connection] connect_timeout = 0: must be 1..300 seconds; \
         remove the line for the default (10)"
    );
    assert_eq!(problems(&with_conn("connect_timeout = 301")).len(), 1);
    assert_eq!(
        problems(&with_conn("connect_timeout = 18446744073709551615")).len(),
        1
    );
    assert_eq!(
        ok(&with_conn("connect_timeout = 1"))
            .connection
            .connect_timeout,
        Duration::from_secs(1)
    );
    assert_eq!(
        one_problem(&with_conn("shutdown_timeout = 3601")),
        "uiot.ini: [connection] shutdown_timeout = 3601: must be 0..3600 seconds; \
         remove the line for the default (5)"
    );
}

#[test]
fn protocol_values() {
    assert_eq!(
        ok(&with_conn("protocol = 3.1.1")).connection.protocol,
        Protocol::V311
    );
    assert_eq!(
        one_problem(&with_conn("protocol = 5")),
        "uiot.ini: [connection] protocol = 5: must be 3.1.1 (the default, what UIoT Core expects) or 3.1"
    );
}

#[test]
fn ca_file_must_be_a_readable_pem_file() {
    let d = TempDir::new("conn-ca");
    let missing = d.0.join("no-such-ca.pem");
    let p = one_problem(&with_conn(&format!("ca_file = {}", missing.display())));
    assert!(
        p.starts_with(&format!(
            "uiot.ini: [connection] ca_file = {}: cannot be read (",
            missing.display()
        )),
        "{p}"
    );
    assert!(p.contains("built-in UIoT Core CA"), "{p}");
    // A directory, a FIFO or a device is not a certificate file.
    let fifo = d.fifo("pipe");
    for path in [d.0.as_path(), fifo.as_path(), Path::new("/dev/zero")] {
        let p = one_problem(&with_conn(&format!("ca_file = {}", path.display())));
        assert!(p.contains(": not a regular file but "), "{p}");
    }
    // Not PEM.
    let der = d.file("ca.der", &[0x30, 0x82, 0x01, 0x0a]);
    let p = one_problem(&with_conn(&format!("ca_file = {}", der.display())));
    assert!(
        p.starts_with(&format!(
            "uiot.ini: [connection] ca_file = {}: not a PEM certificate",
            der.display()
        )),
        "{p}"
    );
    // Larger than any CA certificate: refused by its size.
    let big = std::fs::File::create(d.0.join("big.pem")).unwrap();
    big.set_len(MAX_CA_FILE + 1).unwrap();
    let p = one_problem(&with_conn(&format!(
        "ca_file = {}",
        d.0.join("big.pem").display()
    )));
    assert!(
        p.contains(": 1048577 bytes, more than the 1048576 accepted; "),
        "{p}"
    );
}

#[test]
fn http_token_file_defaults_beside_the_device_secret() {
    use crate::config::Config;
    let d = TempDir::new("conn-token");
    let device =
        format!("[device]\nproduct_sn = abc\ndevice_sn = dev1\ndevice_secret = {DEV_SECRET}\n");
    // device_secret: beside the configuration file that holds it.
    let file = d.file("uiot.ini", device.as_bytes());
    let c = Config::load(&file).unwrap();
    assert_eq!(c.connection.http_token_file, None);
    assert_eq!(
        c.connection.http_token_path(&c.device, &c.path),
        d.0.join("http.token")
    );
    // product_secret: beside secret_file.
    let file = d.file(
        "dyn.ini",
        format!(
            "[device]\nproduct_sn = abc\ndevice_sn = dev1\nproduct_secret = {PROD_SECRET}\n\
             secret_file = /var/lib/uiot/device.secret\n"
        )
        .as_bytes(),
    );
    let c = Config::load(&file).unwrap();
    assert_eq!(
        c.connection.http_token_path(&c.device, &c.path),
        Path::new("/var/lib/uiot/http.token")
    );
    // Set: relative to the configuration file, shown by effective().
    let file = d.file(
        "set.ini",
        format!("{device}[connection]\nhttp_token_file = cache/tok\n").as_bytes(),
    );
    let c = Config::load(&file).unwrap();
    assert_eq!(c.connection.http_token_file, Some(d.0.join("cache/tok")));
    assert_eq!(
        c.connection.http_token_path(&c.device, &c.path),
        d.0.join("cache/tok")
    );
    assert!(c.effective().contains(&format!(
        "http_token_file = {}\n",
        d.0.join("cache/tok").display()
    )));
    // A name without a directory: the current one.
    let c = ok(&minimal());
    assert_eq!(
        c.connection
            .http_token_path(&c.device, Path::new("uiot.ini")),
        Path::new("http.token")
    );
    assert!(one_problem(&with_conn("http_token_file =")).contains("http_token_file"),);
}

#[test]
fn relative_paths_follow_the_config_file() {
    use crate::config::{Config, SecretSource};
    let d = TempDir::new("conn-rel");
    d.file("ca.pem", PEM.as_bytes());
    let file = d.file(
        "uiot.ini",
        format!(
            "[device]\nproduct_sn = abc\ndevice_sn = dev1\nproduct_secret = {PROD_SECRET}\nsecret_file = dev.secret\n\
             [connection]\nca_file = ca.pem\n"
        )
        .as_bytes(),
    );
    let c = Config::load(&file).unwrap();
    assert_eq!(c.path, file);
    assert_eq!(c.connection.ca_file, Some(d.0.join("ca.pem")));
    assert_eq!(
        c.device.secret,
        SecretSource::ProductSecret {
            product_secret: PROD_SECRET.into(),
            secret_file: d.0.join("dev.secret")
        }
    );
}
