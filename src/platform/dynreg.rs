//! Dynamic registration ("one secret per product", authmode 2): obtain the
//! device secret with the product secret, once, and keep it.
//!
//! Owns: the registration exchange (`password` / `password_reply`), the
//! atomic, 0600 write of `secret_file` (temp file in the same directory,
//! fsync, rename, fsync of the directory, under a lock so that two
//! processes never register the same device twice), and
//! [`device_options`], which every command uses to log in.
//! Must not touch: the INI format (it reads [`Config`]), the secret's text
//! in any message or log.
//!
//! The platform registers a DeviceSN only once: a lost secret file needs an
//! operator, who resets the device to "inactivated" in the UIoT Core
//! console. Every error here says so and names the file.
//!
//! ```no_run
//! let config = uiot::config::Config::load(std::path::Path::new("/etc/uiot/uiot.ini"))?;
//! // Registers on first use (product_secret configured, secret_file absent),
//! // then logs in with the saved secret (authmode 1), now and on every start.
//! let client = uiot::Client::connect(uiot::platform::dynreg::device_options(&config)?)?;
//! # Ok::<(), uiot::Error>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::service::{self, RequestIds};
use super::AuthMode;
use crate::client::{later, secs, Message, Options, QoS};
use crate::config::{Config, Secret, SecretSource};
use crate::error::Error;
use crate::Client;

/// How long registration waits for the platform's reply.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`register_config`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The device was registered now and its secret saved.
    Now,
    /// `secret_file` already held the secret (registered before).
    Before,
}

/// Options to log in as the configured device: with `device_secret`, or
/// with the secret saved in `secret_file`, registering the device first
/// when only `product_secret` is configured and the file does not exist.
pub fn device_options(config: &Config) -> Result<Options, Error> {
    if let SecretSource::ProductSecret { .. } = &config.device.secret {
        register_config(config)?;
    }
    Options::from_config(config)
}

/// Register the configured device unless `secret_file` exists. Fails with
/// a configuration error when `device_secret` is configured instead.
pub fn register_config(config: &Config) -> Result<Registered, Error> {
    let SecretSource::ProductSecret {
        product_secret,
        secret_file,
    } = &config.device.secret
    else {
        return Err(Error::Config(crate::ConfigError {
            problems: vec![format!(
                "{}: [device] dynamic registration needs product_secret (and secret_file); \
                 this device has device_secret, so it is registered already",
                config.path.display()
            )],
        }));
    };
    if secret_file.exists() {
        return Ok(Registered::Before);
    }
    let mut file = SecretFile::lock(secret_file)?;
    // Another process may have registered while we waited for the lock.
    if secret_file.exists() {
        return Ok(Registered::Before);
    }
    // An earlier run was killed after writing the issued secret and before
    // renaming it into place: the platform will not issue another, so keep
    // that one.
    if let Some(secret) = file.interrupted() {
        file.commit(&secret)?;
        log::warn!(
            "an earlier registration of {} was interrupted after the secret was issued; \
             saved it from {} to {}",
            config.device.device_sn,
            file.tmp.display(),
            secret_file.display()
        );
        return Ok(Registered::Before);
    }
    let options = Options::for_config(config, AuthMode::Dynamic, product_secret.expose());
    let secret = register(options, REGISTER_TIMEOUT).map_err(|e| with_file(e, secret_file))?;
    file.commit(&secret)?;
    log::info!(
        "registered {} and saved its device secret in {}",
        config.device.device_sn,
        secret_file.display()
    );
    Ok(Registered::Now)
}

/// The registration exchange itself: log in with `options` (authmode 2,
/// product secret), subscribe to `password_reply`, send the request, and
/// return the issued secret. Nothing is saved: keep the secret before
/// anything else (see [`register_config`]).
pub fn register(mut options: Options, timeout: Duration) -> Result<Secret, Error> {
    let Some(identity) = options.identity.clone() else {
        return Err(Error::InvalidArgument(
            "registration needs a device identity (Options::identity)".into(),
        ));
    };
    // A short, clean session that never touches the message queue on disk.
    options.reconnect.enabled = false;
    options.clean_session = true;
    options.queue = crate::client::Queue::default();
    let reply_topic = identity.system_topic("password_reply");
    let client = Client::connect(options).map_err(|e| match e {
        Error::Refused(code) => Error::Platform {
            request: "dynamic registration".into(),
            code: i64::from(code as u8),
            detail: format!(
                "the broker refused the authmode 2 login ({}): check product_secret and that \
                 Dynamic Registration is on for the product (and the DeviceSN pre-registered \
                 when Pre-authentication is on); a device that registered once can only \
                 register again after an operator resets it to inactivated",
                code.description()
            ),
        },
        other => other,
    })?;
    let result = exchange(
        &client,
        &identity.system_topic("password"),
        &reply_topic,
        timeout,
    );
    let _ = client.disconnect();
    result
}

fn exchange(
    client: &Client,
    topic: &str,
    reply_topic: &str,
    timeout: Duration,
) -> Result<Secret, Error> {
    client.subscribe(&[(reply_topic, QoS::AtLeastOnce)])?;
    let id = RequestIds::new().next();
    let body = serde_json::json!({ "RequestID": id }).to_string();
    client.publish(topic, body.as_bytes(), QoS::AtLeastOnce)?;
    let deadline = later(Instant::now(), timeout);
    let messages = client.messages();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(format!(
                "no dynamic registration reply within {}; nothing was saved, so the next \
                 start tries again",
                secs(timeout)
            )));
        }
        let Ok(msg) = messages.recv_timeout(left) else {
            continue;
        };
        if let Some(answer) = password_reply(&msg, reply_topic, &id) {
            return answer;
        }
    }
}

/// What one message on the registration route means for the request `id`
/// whose reply comes on `reply_topic`: `None` when it is not the answer
/// (logged at warn with its topic), else the issued secret or the error.
pub(crate) fn password_reply(
    msg: &Message,
    reply_topic: &str,
    id: &str,
) -> Option<Result<Secret, Error>> {
    if msg.topic != reply_topic {
        service::ignored(&msg.topic, "not the registration reply");
        return None;
    }
    let m = service::parse(msg)?;
    match service::request_id(&m) {
        Ok(got) if got == id => {}
        Ok(got) => {
            service::ignored(&msg.topic, &format!("RequestID {got:?} is not ours ({id})"));
            return None;
        }
        Err(why) => {
            service::ignored(&msg.topic, &why);
            return None;
        }
    }
    let code = match service::ret_code(&m) {
        Ok(c) => c,
        Err(why) => {
            service::ignored(&msg.topic, &why);
            return None;
        }
    };
    if code != 0 {
        let mut e = service::refused("dynamic registration", code, &m);
        if let Error::Platform { detail, .. } = &mut e {
            detail.push_str(
                "; the platform registers a device only once: if this device registered \
                 before and lost its secret, an operator must reset it to inactivated in \
                 the UIoT Core console",
            );
        }
        return Some(Err(e));
    }
    Some(match m.get("Password") {
        Some(Value::String(p)) => crate::config::parse_secret(p).map_err(|why| {
            Error::ProtocolViolation(format!("sent a registration reply whose Password {why}"))
        }),
        _ => Err(Error::ProtocolViolation(
            "sent a successful registration reply without a Password".into(),
        )),
    })
}

/// Add the file and the operator's way out to a registration error.
fn with_file(e: Error, file: &Path) -> Error {
    match e {
        Error::Platform {
            request,
            code,
            detail,
        } => Error::Platform {
            request,
            code,
            detail: format!("{detail} (the secret would be saved in {})", file.display()),
        },
        other => other,
    }
}

/// The temp file beside `secret_file`, locked: the secret is written
/// there, synced, and renamed over `secret_file`, so the file is either
/// absent or complete, whenever the process dies.
struct SecretFile {
    tmp: PathBuf,
    target: PathBuf,
    file: File,
}

impl SecretFile {
    /// Create (or reuse a leftover) temp file, mode 0600, and take its
    /// lock. Done before registering: a directory we cannot write must
    /// fail before the platform issues a secret we could not keep.
    fn lock(target: &Path) -> Result<SecretFile, Error> {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name else {
            return Err(Error::InvalidArgument(format!(
                "secret_file {} names no file",
                target.display()
            )));
        };
        let tmp = target.with_file_name(format!(".{name}.tmp"));
        let io = |what: &str, source: std::io::Error| Error::Io {
            context: format!(
                "{what} {} (before registering: the secret goes to {}); check that the \
                 directory exists and this user may write it",
                tmp.display(),
                target.display()
            ),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("creating", e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("locking", e.into()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("setting mode 0600 on", e))?;
        Ok(SecretFile {
            tmp,
            target: target.to_path_buf(),
            file,
        })
    }

    /// The secret an interrupted run left in the temp file: whole (it
    /// ends with the newline written after it), at most 64 printable
    /// characters without spaces; anything else is not a secret.
    fn interrupted(&self) -> Option<Secret> {
        let bytes = std::fs::read(&self.tmp).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?.strip_suffix('\n')?;
        let fits = (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic());
        fits.then(|| Secret::from(text))
    }

    /// Write the secret, sync, rename into place and sync the directory.
    fn commit(&mut self, secret: &Secret) -> Result<(), Error> {
        let target = self.target.display().to_string();
        let io = |what: &str, source: std::io::Error| Error::Io {
            context: format!(
                "{what} while saving the device secret to {target}: the platform issued it \
                 but it is not kept; free the disk or fix the directory, then an operator \
                 must reset the device to inactivated in the UIoT Core console so that it \
                 can register again"
            ),
            source,
        };
        self.file.set_len(0).map_err(|e| io("truncating", e))?;
        self.file
            .write_all(format!("{}\n", secret.expose()).as_bytes())
            .map_err(|e| io("writing", e))?;
        self.file.sync_all().map_err(|e| io("syncing", e))?;
        std::fs::rename(&self.tmp, &self.target).map_err(|e| io("renaming", e))?;
        let dir = match self.target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match File::open(&dir).and_then(|d| d.sync_all()) {
            Ok(()) => Ok(()),
            // Some file systems cannot sync a directory; the rename stands.
            Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(()),
            Err(e) => Err(io("syncing the directory", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::tests::TempDir;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_secret_file_is_written_whole_with_mode_0600() {
        let d = TempDir::new("dynreg-save");
        let target = d.0.join("device.secret");
        let mut f = SecretFile::lock(&target).unwrap();
        assert!(!target.exists(), "nothing at the target before commit");
        f.commit(&Secret::from("zlc3d21u5k8fq0d2")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "zlc3d21u5k8fq0d2\n"
        );
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        assert!(!d.0.join(".device.secret.tmp").exists());
    }

    #[test]
    fn an_unwritable_directory_fails_before_registering() {
        let e = SecretFile::lock(Path::new("/nonexistent-dir/device.secret"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("before registering"), "{e}");
    }
}
