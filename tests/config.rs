//! The configuration API as the client uses it: loading files, the error
//! conversion into `uiot::Error`, and secrets staying hidden.

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
