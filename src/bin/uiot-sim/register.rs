//! Dynamic registration as UIoT Core does it (protocol section 3): a
//! DeviceSN the cloud was told about (`--allow-register`) gets a secret
//! once; a second attempt is refused with 140 ("restricted permission",
//! until an operator resets the device), an unknown DeviceSN with 100008.
//! The reply's RetCode is a string, as in the platform's documentation.
//! After issuing a secret and before replying, the `--on-register` command
//! runs, so the broker knows the new login before the device uses it.
//!
//! Owns: who may register, the secret, the hook. Must not touch: topics
//! and publishing (`cloud`). The secret never reaches stdout or the log.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::cloud::{emit, Cloud, Outcome};
use crate::state::Dev;

/// Registered before: the platform refuses a second registration.
pub const ALREADY: i64 = 140;
/// Not a DeviceSN this product accepts (pre-authentication).
pub const UNKNOWN: i64 = 100008;
/// The broker could not be told about the device (the hook failed).
pub const UNAVAILABLE: i64 = 130;
/// No RequestID.
const MISSING: i64 = 210;
/// How long `--on-register` may take.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// A request on `password`.
pub fn handle(cloud: &mut Cloud, dev: &Dev, body: Result<Map<String, Value>, String>) -> Outcome {
    let m = match body {
        Ok(m) => m,
        Err(why) => return Outcome::Unanswerable(why),
    };
    let id = match m.get("RequestID") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return refuse(MISSING, String::new(), "no RequestID"),
    };
    if !cloud.allow.iter().any(|a| a == "*" || *a == dev.dsn) {
        return refuse(
            UNKNOWN,
            id,
            "DeviceSN not allowed to register (uiot-sim --allow-register)",
        );
    }
    if cloud.state.device(dev).secret.is_some() {
        return refuse(
            ALREADY,
            id,
            "registered before; an operator must reset the device",
        );
    }
    let secret = match new_secret() {
        Ok(s) => s,
        Err(why) => return refuse(UNAVAILABLE, id, &why),
    };
    if let Some(cmd) = &cloud.on_register {
        if let Err(why) = run_hook(cmd, dev, &secret) {
            emit(
                &json!({"sim": "error", "device": dev.key(), "request": "password", "error": why}),
            );
            return refuse(
                UNAVAILABLE,
                id,
                "the broker could not be told about the device",
            );
        }
    }
    cloud.state.device(dev).secret = Some(secret.clone());
    Outcome::Reply(
        "password_reply",
        json!({"RetCode": "0", "RequestID": id, "Password": secret}),
    )
}

fn refuse(code: i64, id: String, why: &str) -> Outcome {
    Outcome::Reply(
        "password_reply",
        json!({"RetCode": code.to_string(), "RequestID": id, "Message": why}),
    )
}

/// 16 characters of [a-z0-9], as the platform issues.
fn new_secret() -> Result<String, String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for a secret: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| {
            let i = usize::from(*b) % ALPHABET.len();
            char::from(ALPHABET.get(i).copied().unwrap_or(b'a'))
        })
        .collect())
}

/// Runs `sh -c CMD` with the device in its environment; `Err` says why it
/// failed (its stderr goes to ours).
fn run_hook(cmd: &str, dev: &Dev, secret: &str) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("UIOT_PRODUCT_SN", &dev.psn)
        .env("UIOT_DEVICE_SN", &dev.dsn)
        .env("UIOT_DEVICE_SECRET", secret)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run --on-register: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("--on-register failed ({status})")),
            Ok(None) if start.elapsed() > HOOK_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "--on-register took more than {} s; killed",
                    HOOK_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for --on-register: {e}")),
        }
    }
}
