//! The HTTP uplink's token kept on disk between runs (`uiot pub --http` is
//! a new process each time: without it every run buys a token first).
//!
//! The file is one JSON object of at most [`MAX_TOKEN_FILE`] bytes:
//! `{"format":1,"url":..,"product_sn":..,"device_sn":..,"key":..,
//! "obtained":SECONDS,"token":..}`: the token, when it was obtained (wall
//! clock, seconds since the epoch), and for whom: the HTTP base URL, the
//! device and `key`, a fingerprint of its secret (the first 16 hex digits
//! of HMAC-SHA256(secret, "uiot-token-cache")) so that another device or a
//! changed secret never picks the token up. The secret itself is never
//! stored.
//!
//! Owns: the file's format, reading it (bounded, anything odd ignored with
//! a debug line: it is only a cache) and writing it (mode 0600, atomically:
//! a temp file in the same directory, fsync, rename; the directory created
//! 0700 when missing).
//! Must not touch: the requests, when a token is renewed (`http`), logging
//! the token (never, at any level).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{sign, TOKEN_REUSE};
use crate::config::file::{read_bounded, FileError};
use crate::config::Secret;
use crate::error::Error;
use crate::platform::Identity;

/// Largest token file read; anything larger is not ours and is ignored.
pub const MAX_TOKEN_FILE: u64 = 4096;
/// The `format` written and the only one read.
const FORMAT: u64 = 1;
/// The message whose HMAC with the secret fingerprints it.
const FINGERPRINT_MESSAGE: &[u8] = b"uiot-token-cache";

/// Seconds since the epoch by the wall clock (0 before it).
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token file for one device at one base URL.
pub(super) struct TokenFile {
    path: PathBuf,
    /// What the file must say it is for (everything but the token and time).
    owner: Owner,
}

/// Whom a token belongs to.
#[derive(PartialEq, Eq)]
struct Owner {
    url: String,
    product_sn: String,
    device_sn: String,
    key: String,
}

impl TokenFile {
    /// The file at `path` for `identity` with `secret` at `url`.
    pub(super) fn new(path: PathBuf, url: &str, identity: &Identity, secret: &Secret) -> Self {
        let key = sign(secret.expose(), FINGERPRINT_MESSAGE)
            .get(..16)
            .unwrap_or_default()
            .to_string();
        TokenFile {
            path,
            owner: Owner {
                url: url.to_string(),
                product_sn: identity.product_sn.clone(),
                device_sn: identity.device_sn.clone(),
                key,
            },
        }
    }

    /// Where the file is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The kept token and how long it may still be used, at wall-clock
    /// time `now`; `None` (with a debug line saying why) when there is no
    /// usable one.
    pub(super) fn load(&self, now: u64) -> Option<(String, Duration)> {
        let shown = self.path.display();
        let bytes = match read_bounded(&self.path, MAX_TOKEN_FILE) {
            Ok((bytes, _)) => bytes,
            Err(FileError::Io(e)) if e.kind() == ErrorKind::NotFound => {
                log::debug!("no HTTP token kept in {shown} yet");
                return None;
            }
            Err(e) => {
                log::debug!("HTTP token file {shown} ignored: {e}");
                return None;
            }
        };
        match self.parse(&bytes, now) {
            Ok(got) => {
                log::debug!("HTTP token from {shown} ({} s left)", got.1.as_secs());
                Some(got)
            }
            Err(why) => {
                log::debug!("HTTP token file {shown} ignored: {why}");
                None
            }
        }
    }

    /// The token in `bytes` and its time left, or why it is not usable.
    fn parse(&self, bytes: &[u8], now: u64) -> Result<(String, Duration), String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|_| "not JSON".to_string())?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
        if v.get("format").and_then(Value::as_u64) != Some(FORMAT) {
            return Err("not format 1".into());
        }
        let owner = Owner {
            url: text("url").to_string(),
            product_sn: text("product_sn").to_string(),
            device_sn: text("device_sn").to_string(),
            key: text("key").to_string(),
        };
        if owner != self.owner {
            return Err("kept for another device, secret or http_url".into());
        }
        let token = text("token");
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("no token in it".into());
        }
        let obtained = v
            .get("obtained")
            .and_then(Value::as_u64)
            .ok_or("no time in it")?;
        let age = now
            .checked_sub(obtained)
            .ok_or("obtained in the future (the clock was set back?)")?;
        let left = TOKEN_REUSE
            .checked_sub(Duration::from_secs(age))
            .filter(|d| !d.is_zero())
            .ok_or("the token is older than 6 days")?;
        Ok((token.to_string(), left))
    }

    /// Keeps `token`, obtained at wall-clock time `obtained`: written to a
    /// temp file beside the target (mode 0600), synced, renamed over it,
    /// the directory synced. The directory is created (0700) if missing.
    pub(super) fn store(&self, token: &str, obtained: u64) -> Result<(), Error> {
        let io = |what: &str, source: std::io::Error| Error::Io {
            context: format!(
                "{what} the HTTP token file {} ([connection] http_token_file); the next \
                 run fetches a new token. Give a path this user may write, or check the disk",
                self.path.display()
            ),
            source,
        };
        let name = match self.path.file_name() {
            Some(n) => n.to_string_lossy().into_owned(),
            None => return Err(io("naming", ErrorKind::InvalidInput.into())),
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io("creating the directory of", e))?;
        }
        let body = json!({
            "format": FORMAT,
            "url": self.owner.url,
            "product_sn": self.owner.product_sn,
            "device_sn": self.owner.device_sn,
            "key": self.owner.key,
            "obtained": obtained,
            "token": token,
        })
        .to_string();
        // One temp file per process: two runs at once never share one.
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = write_synced(&tmp, body.as_bytes())
            .map_err(|e| io("writing a temp file for", e))
            .and_then(|()| std::fs::rename(&tmp, &self.path).map_err(|e| io("renaming into", e)));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        match File::open(&dir).and_then(|d| d.sync_all()) {
            // Some file systems cannot sync a directory; the rename stands.
            Err(e) if e.kind() != ErrorKind::InvalidInput => Err(io("syncing the directory of", e)),
            _ => Ok(()),
        }
    }
}

/// A new file at `path` (a leftover of a crashed run replaced), mode
/// 0600, holding `bytes`, synced.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    let mut file = match open() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            open()?
        }
        other => other?,
    };
    // The mode given to open is masked by the umask; 0600 is what we want.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::tests::TempDir;
    use std::os::unix::fs::MetadataExt;

    const NOW: u64 = 1_700_000_000;

    fn file(dir: &Path, secret: &str) -> TokenFile {
        TokenFile::new(
            dir.join("sub/http.token"),
            "http://127.0.0.1:1",
            &Identity::new("psn", "dsn1"),
            &Secret::from(secret),
        )
    }

    #[test]
    fn a_stored_token_is_loaded_until_six_days_have_passed() {
        let d = TempDir::new("token-roundtrip");
        let f = file(&d.0, "secret1");
        assert_eq!(f.load(NOW), None);
        f.store("tok.en-1", NOW).unwrap();
        let meta = std::fs::metadata(f.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let dir = std::fs::metadata(d.0.join("sub")).unwrap();
        assert_eq!(dir.mode() & 0o777, 0o700);
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(!text.contains("secret1"), "{text}");
        assert_eq!(
            f.load(NOW + 10),
            Some((
                "tok.en-1".to_string(),
                TOKEN_REUSE - Duration::from_secs(10)
            ))
        );
        let six_days = TOKEN_REUSE.as_secs();
        assert!(f.load(NOW + six_days - 1).is_some());
        assert_eq!(f.load(NOW + six_days), None);
        // From the future: ignored.
        assert_eq!(f.load(NOW - 1), None);
        // Replaced in place; no temp file left.
        f.store("tok2", NOW + 5).unwrap();
        assert_eq!(f.load(NOW + 5).map(|t| t.0), Some("tok2".to_string()));
        let names: Vec<_> = std::fs::read_dir(d.0.join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn another_device_secret_or_url_never_uses_it() {
        let d = TempDir::new("token-owner");
        file(&d.0, "secret1").store("tok", NOW).unwrap();
        assert_eq!(file(&d.0, "secret2").load(NOW), None);
        let other = TokenFile::new(
            d.0.join("sub/http.token"),
            "http://127.0.0.1:1",
            &Identity::new("psn", "dsn2"),
            &Secret::from("secret1"),
        );
        assert_eq!(other.load(NOW), None);
        let other = TokenFile::new(
            d.0.join("sub/http.token"),
            "http://127.0.0.1:2",
            &Identity::new("psn", "dsn1"),
            &Secret::from("secret1"),
        );
        assert_eq!(other.load(NOW), None);
        assert!(file(&d.0, "secret1").load(NOW).is_some());
    }

    #[test]
    fn corrupt_odd_and_oversized_files_are_ignored() {
        let d = TempDir::new("token-bad");
        let f = file(&d.0, "s");
        std::fs::create_dir_all(d.0.join("sub")).unwrap();
        for bad in [&b"garbage"[..], b"", b"[]", b"{\"format\":2}", b"\xff\xfe"] {
            std::fs::write(f.path(), bad).unwrap();
            assert_eq!(f.load(NOW), None);
        }
        let good = std::fs::read_to_string({
            f.store("tok", NOW).unwrap();
            f.path()
        })
        .unwrap();
        for (from, to) in [
            ("\"tok\"", "\"\""),
            ("\"tok\"", "\"t o k\""),
            ("\"tok\"", "7"),
            (&format!("{NOW}"), "\"x\""),
            (&format!("{NOW}"), "-1"),
        ] {
            std::fs::write(f.path(), good.replace(from, to)).unwrap();
            assert_eq!(f.load(NOW), None, "{from} -> {to}");
        }
        let big = format!("{}{}", good, " ".repeat(5000));
        std::fs::write(f.path(), big).unwrap();
        assert_eq!(f.load(NOW), None);
        std::fs::remove_file(f.path()).unwrap();
        std::fs::create_dir(f.path()).unwrap();
        assert_eq!(f.load(NOW), None);
        // A directory in the way: a write error, not a panic.
        assert!(matches!(f.store("tok", NOW), Err(Error::Io { .. })));
    }
}
