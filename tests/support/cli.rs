//! Running the `uiot` binary from a test, and the configuration files it
//! reads: the helpers the CLI, simulator and daemon tests share.
//!
//! Owns: how a test starts `uiot` (no `UIOT_CONFIG`, no `RUST_LOG` from
//! the environment), how its output is shown in a failed assertion, and
//! the config files for a test broker (0600, plain TCP on 127.0.0.1).
//! Must not touch: the broker (see `broker`), any address but 127.0.0.1.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::broker::{Device, DynamicDevice};

/// Runs `uiot ARGS` to the end.
pub fn uiot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uiot"))
        .args(args)
        .env_remove("UIOT_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("the uiot binary runs")
}

/// Its standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code, stdout and stderr, for an assertion's message.
pub fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// The `[device]` section of a static-auth device.
pub fn static_device(d: &Device) -> String {
    format!(
        "[device]\nproduct_sn = {}\ndevice_sn = {}\ndevice_secret = {}\n",
        d.product_sn, d.device_sn, d.secret
    )
}

/// The `[device]` section of a dynamic-registration device (its secret
/// kept in `device.secret` beside the config).
pub fn dynamic_device(d: &DynamicDevice) -> String {
    format!(
        "[device]\nproduct_sn = {}\ndevice_sn = {}\nproduct_secret = {}\nsecret_file = device.secret\n",
        d.product_sn, d.device_sn, d.product_secret
    )
}

/// `dir/uiot.ini` (0600): `device`, a plain connection to 127.0.0.1:`port`
/// (connect timeout 3 s), then `extra` sections.
pub fn write_config(dir: &Path, port: u16, device: &str, extra: &str) -> PathBuf {
    let path = dir.join("uiot.ini");
    std::fs::write(
        &path,
        format!(
            "{device}[connection]\nhost = 127.0.0.1\nport = {port}\ntls = false\nconnect_timeout = 3\n{extra}"
        ),
    )
    .expect("the config is written");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("the config is made 0600");
    path
}

/// Runs `cmd` (stdout and stderr captured) and returns its output with
/// its peak RSS in KB (VmHWM, sampled every 10 ms until it exits).
pub fn output_with_peak_rss(mut cmd: std::process::Command) -> (std::process::Output, u64) {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kb) = std::fs::read_to_string(&status).ok().and_then(|st| {
                    st.lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.split_whitespace().next()?.parse().ok())
                }) {
                    peak = peak.max(kb);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            peak
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, sampler.join().unwrap())
}
