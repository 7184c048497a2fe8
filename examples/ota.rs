//! A device that takes one firmware upgrade, the way the C SDK's
//! `samples/ota/ota_sample.c` does it, but safely: report the running
//! version, ask for a pending upgrade, download the image on its own thread
//! (resumed after a cut, Size and MD5 checked), "install" it (here: the
//! image is copied to `DIR/installed.bin` and the version written to
//! `DIR/version`), and report success only once that version is in place.
//!
//! ```text
//! cargo run --example ota -- [CONFIG [DIR]]
//! ```
//! - `CONFIG`: default `etc/broker/uiot-demo.ini`, the demo device of
//!   `scripts/dev-broker.sh`.
//! - `DIR`: default `ota-demo`: the running version (`DIR/version`,
//!   `1.0.0` when missing), the download, the installed image.
//!
//! With `uiot-sim --http-port 8080` beside the broker, push an upgrade from
//! its stdin: `ota push PSN DSN default 2.0.0 some-file.bin`. Exits 0 after
//! one upgrade succeeded (or failed and was reported: exit 1).

use std::error::Error;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use uiot::config::Config;
use uiot::platform::ota::{self, ModuleVersion, Notice, Ota};
use uiot::{Client, Options};

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let config = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "etc/broker/uiot-demo.ini".into()),
    );
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "ota-demo".into()));
    std::fs::create_dir_all(&dir)?;
    let version_file = dir.join("version");
    let running = std::fs::read_to_string(&version_file)
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "1.0.0".into());
    let config = Config::load(&config)?;
    let client = Client::connect(Options::from_config(&config)?)?;
    println!(
        "connected as {}, running {running}",
        client.options().client_id
    );
    let ota = Ota::new(&client, vec![ModuleVersion::new("default", &running)])?;
    ota.report_version()?;
    ota.request_firmware()?;
    println!("waiting for an upgrade");
    while let Some(n) = ota.recv() {
        let Notice::Update {
            module,
            version,
            size,
            ..
        } = &n
        else {
            println!("cancel_update ignored: nothing is downloading");
            continue;
        };
        println!("upgrade of {module} to {version} ({size} bytes)");
        // A real device downloads on a worker and keeps taking notices
        // (a cancel sets this flag); one upgrade is all this example does.
        let cancel = ota
            .cancel_flag(module, version)
            .unwrap_or_else(|| AtomicBool::new(false).into());
        let got = ota::download(&n, &dir, &cancel, |pct| {
            println!("downloading {pct} %");
            let _ = ota.report_progress(module, "downloading", pct, version);
        });
        let image = match got {
            Ok(p) => p,
            Err(e) => {
                println!("download failed: {e}");
                ota.report_fail(module, version, e.err_code())?;
                client.disconnect()?;
                std::process::exit(1);
            }
        };
        ota.report_progress(module, "burning", 0, version)?;
        std::fs::rename(&image, dir.join("installed.bin"))?;
        std::fs::write(&version_file, format!("{version}\n"))?;
        // The new version is in place: only now is it a success.
        ota.report_success(module, version)?;
        println!("upgraded to {version}");
        break;
    }
    client.disconnect()?;
    Ok(())
}
