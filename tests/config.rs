//! The configuration API as the client uses it: loading files, the error
//! conversion into `uiot::Error`, building `Options` from it, and secrets
//! staying hidden.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;
use std::time::Duration;

use uiot::config::{Config, SecretSource};
use uiot::packet::Protocol;

const SECRET: &str = "pr0dS3cretZZ9q7x";

fn temp_file(tag: &str, text: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("uiot-config-it-{tag}-{}.ini", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_dynamic_registration_file_loads_with_everything_the_client_needs() {
    let path = temp_file(
        "dynamic",
        &format!(
            "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = 112233445566\nproduct_secret = {SECRET}\n\
             secret_file = /var/lib/uiot/device.secret\n\n[connection]\nhost = 127.0.0.1\ntls = off\n"
        ),
    );
    let c = Config::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(c.path, path);
    match &c.device.secret {
        SecretSource::ProductSecret {
            product_secret,
            secret_file,
        } => {
            assert_eq!(product_secret.expose(), SECRET);
            assert_eq!(secret_file, &PathBuf::from("/var/lib/uiot/device.secret"));
        }
        other => panic!("expected a product secret, got {other:?}"),
    }
    let k = &c.connection;
    assert_eq!((k.host.as_str(), k.port, k.tls), ("127.0.0.1", 1883, false));
    assert_eq!(k.protocol, Protocol::V311);
    assert_eq!(k.connect_timeout, Duration::from_secs(10));
    assert!(!format!("{c:?}").contains(SECRET));
    assert!(!c.effective().contains(SECRET));
}

#[test]
fn problems_become_a_uiot_error_listing_each_one() {
    let path = temp_file("bad", "[device]\nproduct_sn = P\n[connection]\nport = 0\n");
    let e = Config::load(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    let name = path.display().to_string();
    assert_eq!(e.problems.len(), 3, "{e}"); // device_sn, the secret, port
    assert!(
        e.problems
            .iter()
            .all(|p| p.starts_with(&format!("{name}: "))),
        "{e}"
    );
    let err = uiot::Error::from(e.clone());
    assert_eq!(err.to_string(), e.problems.join("\n"));
}

#[test]
fn effective_output_loads_back_to_the_same_settings() {
    let path = temp_file(
        "roundtrip",
        &format!("[device]\nproduct_sn = P\ndevice_sn = abcd\nproduct_secret = {SECRET}\n[connection]\nregion = cn-gd\n"),
    );
    let first = Config::load(&path).unwrap();
    std::fs::write(&path, first.effective()).unwrap();
    let second = Config::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(second.connection, first.connection);
    assert_eq!(second.device.device_sn, first.device.device_sn);
    // The secret itself is not in the rendering, so it does not come back.
    match second.device.secret {
        SecretSource::ProductSecret { product_secret, .. } => {
            assert_eq!(product_secret.expose(), "<hidden>")
        }
        other => panic!("{other:?}"),
    }
}

fn dynamic_with(secret_file: &std::path::Path, tag: &str) -> PathBuf {
    temp_file(
        tag,
        &format!(
            "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = 112233445566\nproduct_secret = {SECRET}\n\
             secret_file = {}\n[connection]\nhost = 127.0.0.1\ntls = off\n\
             [reconnect]\nmin = 2\n[queue]\nmax_messages = 7\nfsync = interval_ms 40\n",
            secret_file.display()
        ),
    )
}

#[test]
fn options_from_config_take_every_part_and_read_the_secret_file() {
    let secret_file =
        std::env::temp_dir().join(format!("uiot-config-it-{}.secret", std::process::id()));
    std::fs::write(&secret_file, "hly3dk1u5y8fq0b9\n").unwrap();
    let path = dynamic_with(&secret_file, "options");
    let c = Config::load(&path).unwrap();
    let o = uiot::Options::from_config(&c).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&secret_file).unwrap();
    assert_eq!(o.password.as_deref(), Some("hly3dk1u5y8fq0b9"));
    assert_eq!(o.reconnect, c.reconnect);
    assert_eq!(o.reconnect.min, Duration::from_secs(2));
    assert_eq!(o.queue, c.queue);
    assert_eq!(o.queue.max_messages, 7);
    assert_eq!(o.queue.fsync_interval, Some(Duration::from_millis(40)));
    assert_eq!(o.keep_alive, Duration::from_secs(300));
    assert!(o.tls.is_none());
    o.validate().unwrap();
    o.check().unwrap();
}

#[test]
fn a_50_mb_secret_file_is_a_config_error_never_a_password() {
    let secret_file =
        std::env::temp_dir().join(format!("uiot-config-it-{}-huge.secret", std::process::id()));
    std::fs::File::create(&secret_file)
        .unwrap()
        .set_len(50 << 20)
        .unwrap();
    let path = dynamic_with(&secret_file, "huge-secret");
    // Refused at load already; and by from_config if it grew after the load.
    let e = Config::load(&path).unwrap_err();
    assert!(
        e.problems[0].contains("52428800 bytes, more than the 64 accepted"),
        "{e}"
    );
    std::fs::write(&secret_file, "hly3dk1u5y8fq0b9\n").unwrap();
    let c = Config::load(&path).unwrap();
    std::fs::File::create(&secret_file)
        .unwrap()
        .set_len(50 << 20)
        .unwrap();
    let e = uiot::Options::from_config(&c).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&secret_file).unwrap();
    assert!(matches!(e, uiot::Error::Config(_)), "{e:?}");
    assert!(e.to_string().contains("more than the 64 accepted"), "{e}");
}

#[test]
fn options_from_a_duration_max_are_refused_by_validate() {
    let mut o = uiot::Options::new("127.0.0.1", 1883, "c");
    o.connect_timeout = Duration::MAX;
    match o.validate() {
        Err(uiot::Error::InvalidArgument(m)) => assert!(m.contains("connect_timeout"), "{m}"),
        other => panic!("{other:?}"),
    }
}
