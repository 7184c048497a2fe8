//! Secrets: the type that keeps them out of every message, how one is
//! configured, and reading the device secret from `secret_file`.
//!
//! Owns: [`Secret`] (prints as `<hidden>`), [`SecretSource`], the rules for a
//! secret's text, and the bounded read of `secret_file` (a regular file of
//! at most [`MAX_SECRET_FILE`] bytes, or a clear error).
//! Must not touch: logging, the CONNECT packet (it only gets `expose()`).

use std::fmt;
use std::path::{Path, PathBuf};

use super::file::{self, FileError};
use crate::error::{ConfigError, Error};

/// How a secret is shown anywhere outside the running client.
pub(crate) const HIDDEN: &str = "<hidden>";

/// Longest secret accepted, in characters. The platform issues secrets of
/// 16 characters; anything much longer is a wrong file or a pasted mistake.
pub const MAX_SECRET_LEN: usize = 64;

/// Largest `secret_file` read, in bytes: one secret and a line end.
pub const MAX_SECRET_FILE: u64 = 64;

/// A secret value (device or product secret). `Debug` and `Display` print
/// `<hidden>`; only [`Secret::expose`] gives the text, for the CONNECT packet.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret text. Use it only to build the CONNECT password; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HIDDEN)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HIDDEN)
    }
}

/// How the device proves who it is (exactly one way is configured).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// Static authentication (authmode 1) with the device's own secret.
    DeviceSecret(Secret),
    /// Dynamic registration (authmode 2): the product secret obtains the
    /// device secret, which is then kept in `secret_file`.
    ProductSecret {
        /// The product secret from the UIoT Core console.
        product_secret: Secret,
        /// Where the obtained device secret is kept.
        secret_file: PathBuf,
    },
}

/// Checks the text of a secret; the error is the fix.
pub(crate) fn parse_secret(v: &str) -> Result<Secret, String> {
    if v.is_empty() {
        Err("must not be empty; copy the secret from the UIoT Core console".to_string())
    } else if v.chars().any(char::is_whitespace) {
        Err(
            "must not contain whitespace; copy the secret from the UIoT Core console again"
                .to_string(),
        )
    } else if v.chars().count() > MAX_SECRET_LEN {
        Err(format!(
            "{} characters, more than {MAX_SECRET_LEN} (the platform issues 16); \
             copy the secret from the UIoT Core console again",
            v.chars().count()
        ))
    } else {
        Ok(Secret::from(v))
    }
}

/// The device secret kept in `secret_file` (named by the configuration file
/// `config`), read bounded: a file that is not a regular file, or larger
/// than [`MAX_SECRET_FILE`], or that holds no valid secret is a
/// configuration error; one that exists but cannot be read is
/// [`Error::Input`]. The secret's text never appears in an error.
pub fn read_secret_file(secret_file: &Path, config: &Path) -> Result<Secret, Error> {
    let (cfg, shown) = (config.display(), secret_file.display());
    let problem = |msg: String| {
        Error::Config(ConfigError {
            problems: vec![format!("{cfg}: [device] secret_file = {shown}: {msg}")],
        })
    };
    let bytes = match file::read_bounded(secret_file, MAX_SECRET_FILE) {
        Ok((bytes, _)) => bytes,
        Err(FileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Config(ConfigError {
                problems: vec![format!(
                    "{cfg}: [device] secret_file = {shown} does not exist yet: the device is \
                     not registered; run `uiot register` (or call \
                     uiot::platform::dynreg::device_options), which registers it with the \
                     product secret and writes the obtained device secret there"
                )],
            }))
        }
        Err(FileError::Io(source)) => {
            return Err(Error::Input {
                context: format!(
                    "reading the device secret from {shown} ([device] secret_file of {cfg}); \
                     check that this user may read it"
                ),
                source,
            })
        }
        Err(e @ FileError::NotRegular(_)) => {
            return Err(problem(format!(
                "{e}; give the file that holds only the device secret"
            )))
        }
        Err(e @ FileError::TooLarge { .. }) => {
            return Err(problem(format!(
                "{e}: a device secret is {MAX_SECRET_LEN} characters at most (the platform \
                 issues 16); give the file that holds only the device secret"
            )))
        }
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| problem("not text; give the file that holds only the device secret".into()))?
        .trim();
    if text.is_empty() {
        return Err(problem(
            "holds no device secret; write the secret into it, or set device_secret instead"
                .to_string(),
        ));
    }
    parse_secret(text).map_err(|fix| problem(format!("the secret in it {fix}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::tests::TempDir;

    const CFG: &str = "/etc/uiot/uiot.ini";

    fn problem(r: Result<Secret, Error>) -> String {
        match r {
            Err(Error::Config(e)) => {
                assert_eq!(e.problems.len(), 1, "{e}");
                e.problems.join("")
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn secret_text_rules() {
        assert_eq!(
            parse_secret("hly3dk1u5y8fq0b9").unwrap().expose(),
            "hly3dk1u5y8fq0b9"
        );
        assert!(parse_secret("").unwrap_err().contains("must not be empty"));
        assert!(parse_secret("a b").unwrap_err().contains("whitespace"));
        assert!(parse_secret(&"a".repeat(64)).is_ok());
        let e = parse_secret(&"a".repeat(65)).unwrap_err();
        assert!(e.starts_with("65 characters, more than 64"), "{e}");
    }

    #[test]
    fn a_secret_file_is_read_and_trimmed() {
        let d = TempDir::new("secret-ok");
        let p = d.file("device.secret", b"hly3dk1u5y8fq0b9\n");
        let s = read_secret_file(&p, Path::new(CFG)).unwrap();
        assert_eq!(s.expose(), "hly3dk1u5y8fq0b9");
    }

    #[test]
    fn an_oversized_secret_file_is_a_config_error_and_never_a_password() {
        let d = TempDir::new("secret-big");
        let p = d.file("device.secret", "s".repeat(1000).as_bytes());
        let e = problem(read_secret_file(&p, Path::new(CFG)));
        assert_eq!(
            e,
            format!(
                "{CFG}: [device] secret_file = {}: 1000 bytes, more than the 64 accepted: a device \
                 secret is 64 characters at most (the platform issues 16); give the file that \
                 holds only the device secret",
                p.display()
            )
        );
        assert!(!e.contains("sss"), "{e}");
    }

    #[test]
    fn fifo_device_and_directory_are_refused_without_blocking() {
        let d = TempDir::new("secret-kinds");
        let fifo = d.fifo("pipe");
        for path in [fifo.as_path(), Path::new("/dev/zero"), d.0.as_path()] {
            let e = problem(read_secret_file(path, Path::new(CFG)));
            assert!(e.contains(": not a regular file but "), "{e}");
        }
    }

    #[test]
    fn empty_missing_and_bad_secret_files() {
        let d = TempDir::new("secret-bad");
        let empty = d.file("empty", b"\n");
        assert!(
            problem(read_secret_file(&empty, Path::new(CFG))).contains("holds no device secret")
        );
        let spaced = d.file("spaced", b"abc def\n");
        let e = problem(read_secret_file(&spaced, Path::new(CFG)));
        assert!(
            e.contains("the secret in it must not contain whitespace"),
            "{e}"
        );
        assert!(!e.contains("abc"), "{e}");
        let e = problem(read_secret_file(&d.0.join("missing"), Path::new(CFG)));
        assert!(
            e.contains("does not exist yet: the device is not registered"),
            "{e}"
        );
        assert!(e.contains("run `uiot register`"), "{e}");
    }

    #[test]
    fn secrets_print_hidden() {
        let s = Secret::from("hly3dk1u5y8fq0b9");
        assert_eq!(format!("{s} {s:?}"), "<hidden> <hidden>");
    }
}
