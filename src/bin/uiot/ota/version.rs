//! The running version of a firmware module: the first line of
//! `[ota] version_file`, or of what `version_command` prints (`sh -c`, at
//! most 10 s, stdout capped), trimmed and checked like the platform's
//! versions (1..32 of letters, digits, `.` `-` `_`).
//!
//! Owns: reading and checking a version.
//! Must not touch: the OTA state, MQTT.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use uiot::config::OtaModule;
use uiot::platform::ota::ModuleVersion;

/// Longest a version command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of a version file or command output read.
const MAX_READ: u64 = 4096;

/// The module's running version, or why it cannot be read (naming the
/// key to fix).
pub fn running(m: &OtaModule) -> Result<String, String> {
    let (raw, source) = if let Some(f) = &m.version_file {
        let mut bytes = Vec::new();
        std::fs::File::open(f)
            .and_then(|file| file.take(MAX_READ).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read version_file {}: {e}", f.display()))?;
        (bytes, format!("version_file {}", f.display()))
    } else if let Some(c) = &m.version_command {
        (run(c)?, "version_command".to_string())
    } else {
        return Err("no version_command or version_file".into());
    };
    let text = String::from_utf8_lossy(&raw);
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        return Err(format!("{source} gave no version (an empty first line)"));
    }
    // The library's check: the same rules as the platform's.
    let mv = ModuleVersion::new(&m.name, &line);
    if let Err(why) = check(&mv) {
        return Err(format!("{source} gave {line:?}, not a version: {why}"));
    }
    Ok(line)
}

fn check(mv: &ModuleVersion) -> Result<(), String> {
    let ok = !mv.version.is_empty()
        && mv.version.chars().count() <= uiot::platform::ota::MAX_NAME
        && mv
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "1..{} of letters, digits, '.', '-', '_'",
            uiot::platform::ota::MAX_NAME
        ))
    }
}

/// Runs `sh -c command` and returns its stdout (at most [`MAX_READ`]
/// bytes), failing on a non-zero exit or after [`COMMAND_TIMEOUT`].
fn run(command: &str) -> Result<Vec<u8>, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run version_command: {e}"))?;
    let out = child.stdout.take();
    let reader = std::thread::Builder::new()
        .name("uiot-version".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut bytes = Vec::new();
            if let Some(o) = out {
                let mut o = o.take(MAX_READ);
                let _ = o.read_to_end(&mut bytes);
                // Drain the rest so the command never blocks on a full pipe.
                let _ = std::io::copy(&mut o.into_inner(), &mut std::io::sink());
            }
            bytes
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "version_command ran longer than {} s; make it quicker",
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for version_command: {e}")),
        }
    };
    let bytes = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("version_command failed ({status})"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn module(file: Option<PathBuf>, cmd: Option<&str>) -> OtaModule {
        OtaModule {
            name: "default".into(),
            apply: None,
            version_command: cmd.map(str::to_string),
            version_file: file,
            apply_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn versions_from_files_and_commands() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v");
        std::fs::write(&f, "2.0.1\nmore\n").unwrap();
        assert_eq!(running(&module(Some(f.clone()), None)).unwrap(), "2.0.1");
        std::fs::write(&f, "\n").unwrap();
        assert!(running(&module(Some(f.clone()), None))
            .unwrap_err()
            .contains("empty"));
        std::fs::write(&f, "v 2").unwrap();
        assert!(running(&module(Some(f), None))
            .unwrap_err()
            .contains("not a version"));
        assert_eq!(
            running(&module(None, Some("echo ' 1.2.3 '"))).unwrap(),
            "1.2.3"
        );
        assert!(running(&module(None, Some("exit 3")))
            .unwrap_err()
            .contains("failed"));
        assert!(running(&module(dir.path().join("nope").into(), None))
            .unwrap_err()
            .contains("cannot read"));
    }
}
