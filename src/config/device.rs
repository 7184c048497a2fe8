//! `[device]`: who the device is and how it gets its secret.
//!
//! Owns: [`DeviceConfig`], the rules for ProductSN and DeviceSN, "exactly one
//! secret", and the load-time look at `secret_file` (when it exists: a
//! regular file no larger than a secret, not readable by other users).
//! Must not touch: reading the secret itself (that happens at start, in
//! `secret::read_secret_file`), other sections.

use std::path::{Path, PathBuf};

use super::effective::Writer;
use super::file::{self, FileError};
use super::reader::{Got, Key, Reader, Section};
use super::secret::{parse_secret, SecretSource, MAX_SECRET_FILE, MAX_SECRET_LEN};
use super::DEFAULT_SECRET_FILE;

/// `[device]`: who the device is and how it gets its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// ProductSN (letters and digits; the platform issues 16 characters).
    pub product_sn: String,
    /// DeviceSN (4..64 characters of letters, digits, `-` `_` `@` `:`).
    pub device_sn: String,
    /// The device secret or the product secret.
    pub secret: SecretSource,
}

fn parse_product_sn(v: &str) -> Result<String, String> {
    if (1..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(v.to_string())
    } else {
        Err("must be 1..64 letters and digits; copy the ProductSN (16 characters) from the UIoT Core console".to_string())
    }
}

fn parse_device_sn(v: &str) -> Result<String, String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '@' | ':');
    if (4..=64).contains(&v.len()) && v.chars().all(ok_char) {
        Ok(v.to_string())
    } else {
        Err("must be 4..64 characters of letters, digits, - _ @ :; copy the DeviceSN from the UIoT Core console".to_string())
    }
}

const SECRET_WAYS: &str = "either device_secret (the device's own secret, static authentication) \
     or product_secret (dynamic registration: the device obtains its secret once and keeps it in secret_file)";

/// Looks at an existing `secret_file` without reading it: a FIFO, device
/// or oversized file is a problem now, one readable by others a warning. A
/// missing file is fine here (dynamic registration would create it).
fn look_at_secret_file(r: &mut Reader<'_, '_>, path: &Path) -> Option<()> {
    let shown = path.display().to_string();
    match file::inspect(path, MAX_SECRET_FILE) {
        Ok(meta) => {
            if let Some(mode) = file::readable_by_others(&meta) {
                r.warn(
                    "secret_file",
                    &shown,
                    &format!(
                        "holds the device secret and other users may read it (mode {mode:04o}); \
                         run chmod 600 {shown}"
                    ),
                );
            }
            Some(())
        }
        Err(FileError::Io(_)) => Some(()),
        Err(e @ FileError::NotRegular(_)) => {
            r.bad(
                "secret_file",
                &shown,
                &format!("{e}; give the file that keeps the device secret"),
            );
            None
        }
        Err(e @ FileError::TooLarge { .. }) => {
            r.bad(
                "secret_file",
                &shown,
                &format!(
                    "{e}: a device secret is {MAX_SECRET_LEN} characters at most; \
                     give the file that keeps only the device secret"
                ),
            );
            None
        }
    }
}

impl Section for DeviceConfig {
    const NAME: &'static str = "device";
    const KEYS: &'static [Key] = &[
        Key::plain("product_sn"),
        Key::plain("device_sn"),
        Key::secret("device_secret"),
        Key::secret("product_secret"),
        Key::path("secret_file"),
    ];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let product_sn = r.required(
            "product_sn",
            "set it to the ProductSN from the UIoT Core console",
            parse_product_sn,
        );
        let device_sn = r.required(
            "device_sn",
            "set it to the DeviceSN from the UIoT Core console",
            parse_device_sn,
        );
        let device_secret = r.value("device_secret", parse_secret);
        let product_secret = r.value("product_secret", parse_secret);
        let secret_file = r.path(
            "secret_file",
            &format!(
                "give the file for the obtained device secret, or remove the line for the default ({DEFAULT_SECRET_FILE})"
            ),
        );
        let secret = match (device_secret, product_secret) {
            (d, p) if d.is_present() && p.is_present() => {
                r.problem(
                    "device_secret, product_secret",
                    &format!("both are set; keep exactly one: {SECRET_WAYS}"),
                );
                None
            }
            (Got::Absent, Got::Absent) => {
                r.problem(
                    "device_secret",
                    &format!("no secret is set; set {SECRET_WAYS}"),
                );
                None
            }
            (Got::Valid(s), _) => {
                if secret_file.is_present() {
                    r.problem(
                        "secret_file",
                        "only used with product_secret (dynamic registration); remove it when device_secret is set",
                    );
                    None
                } else {
                    Some(SecretSource::DeviceSecret(s))
                }
            }
            (_, Got::Valid(s)) => {
                secret_file
                    .or(PathBuf::from(DEFAULT_SECRET_FILE))
                    .and_then(|f| {
                        look_at_secret_file(r, &f)?;
                        Some(SecretSource::ProductSecret {
                            product_secret: s,
                            secret_file: f,
                        })
                    })
            }
            _ => None,
        };
        Some(DeviceConfig {
            product_sn: product_sn?,
            device_sn: device_sn?,
            secret: secret?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("product_sn", &self.product_sn);
        w.key("device_sn", &self.device_sn);
        match &self.secret {
            SecretSource::DeviceSecret(_) => w.hidden("device_secret"),
            SecretSource::ProductSecret { secret_file, .. } => {
                w.hidden("product_secret");
                w.key("secret_file", secret_file.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::tests::TempDir;
    use crate::config::test_util::*;
    use crate::config::Config;
    use std::os::unix::fs::PermissionsExt as _;

    fn dynamic(secret_file: &Path) -> String {
        format!(
            "[device]\nproduct_sn = P\ndevice_sn = abcd\nproduct_secret = {PROD_SECRET}\nsecret_file = {}\n",
            secret_file.display()
        )
    }

    #[test]
    fn identifiers_are_validated() {
        let text = format!(
            "[device]\nproduct_sn = 70ly-1tvo\ndevice_sn = a b\ndevice_secret = {DEV_SECRET}\n"
        );
        assert_eq!(
            problems(&text),
            vec![
                "uiot.ini: [device] product_sn = 70ly-1tvo: must be 1..64 letters and digits; \
                 copy the ProductSN (16 characters) from the UIoT Core console",
                "uiot.ini: [device] device_sn = a b: must be 4..64 characters of letters, digits, - _ @ :; \
                 copy the DeviceSN from the UIoT Core console",
            ]
        );
        let long = "a".repeat(65);
        let text = format!(
            "[device]\nproduct_sn = {long}\ndevice_sn = abc\ndevice_secret = {DEV_SECRET}\n"
        );
        assert_eq!(problems(&text).len(), 2);
        let text = format!(
            "[device]\nproduct_sn = P\ndevice_sn = a-b_c@d:e\ndevice_secret = {DEV_SECRET}\n"
        );
        assert_eq!(ok(&text).device.device_sn, "a-b_c@d:e");
    }

    #[test]
    fn required_keys_are_reported_missing() {
        let p = problems(&format!("[device]\ndevice_secret = {DEV_SECRET}\n"));
        assert_eq!(
            p,
            vec![
                "uiot.ini: [device] product_sn: missing; set it to the ProductSN from the UIoT Core console",
                "uiot.ini: [device] device_sn: missing; set it to the DeviceSN from the UIoT Core console",
            ]
        );
        // An empty file is missing everything, including a secret.
        let p = problems("");
        assert_eq!(p.len(), 3, "{p:#?}");
    }

    #[test]
    fn exactly_one_secret() {
        let both = format!(
            "[device]\nproduct_sn = P\ndevice_sn = abcd\ndevice_secret = {DEV_SECRET}\nproduct_secret = {PROD_SECRET}\n"
        );
        let p = one_problem(&both);
        assert!(
            p.starts_with(
                "uiot.ini: [device] device_secret, product_secret: both are set; keep exactly one"
            ),
            "{p}"
        );
        assert!(
            p.contains("dynamic registration") && p.contains("secret_file"),
            "{p}"
        );
        assert_no_secret(&p);

        let neither = "[device]\nproduct_sn = P\ndevice_sn = abcd\n";
        let p = one_problem(neither);
        assert!(
            p.starts_with(
                "uiot.ini: [device] device_secret: no secret is set; set either device_secret"
            ),
            "{p}"
        );
        assert!(p.contains("product_secret (dynamic registration"), "{p}");

        let dynamic =
            format!("[device]\nproduct_sn = P\ndevice_sn = abcd\nproduct_secret = {PROD_SECRET}\n");
        assert_eq!(
            ok(&dynamic).device.secret,
            SecretSource::ProductSecret {
                product_secret: PROD_SECRET.into(),
                secret_file: PathBuf::from("/etc/uiot/device.secret")
            }
        );

        let stray = format!("{}secret_file = /tmp/x\n", minimal());
        assert!(one_problem(&stray)
            .starts_with("uiot.ini: [device] secret_file: only used with product_secret"));
    }

    #[test]
    fn bad_secrets_are_reported_hidden() {
        let text = format!(
            "[device]\nproduct_sn = P\ndevice_sn = abcd\nproduct_secret = {PROD_SECRET} {DEV_SECRET}\n"
        );
        let p = one_problem(&text);
        assert_eq!(
            p,
            "uiot.ini: [device] product_secret = <hidden>: must not contain whitespace; \
             copy the secret from the UIoT Core console again"
        );
        let p = one_problem("[device]\nproduct_sn = P\ndevice_sn = abcd\ndevice_secret =\n");
        assert_eq!(
            p,
            "uiot.ini: [device] device_secret = <hidden>: must not be empty; copy the secret from the UIoT Core console"
        );
        let with_comment = format!(
            "[device]\nproduct_sn = P\ndevice_sn = abcd\ndevice_secret = {DEV_SECRET} # mine\n"
        );
        let p = one_problem(&with_comment);
        assert_no_secret(&p);
        assert!(
            p.ends_with("(a comment must be on a line of its own)"),
            "{p}"
        );
        // A secret far longer than the platform's is a mistake, and stays hidden.
        let long = "s".repeat(100_000);
        let p = one_problem(&format!(
            "[device]\nproduct_sn = P\ndevice_sn = abcd\ndevice_secret = {long}\n"
        ));
        assert!(
            p.starts_with(
                "uiot.ini: [device] device_secret = <hidden>: 100000 characters, more than 64"
            ),
            "{p}"
        );
    }

    #[test]
    fn an_existing_secret_file_must_be_a_small_regular_file() {
        let d = TempDir::new("device-secret-file");
        let fifo = d.fifo("pipe");
        let p = one_problem(&dynamic(&fifo));
        assert_eq!(
            p,
            format!(
                "uiot.ini: [device] secret_file = {}: not a regular file but a FIFO (named pipe); \
                 give the file that keeps the device secret",
                fifo.display()
            )
        );
        let p = one_problem(&dynamic(Path::new("/dev/zero")));
        assert!(
            p.contains("not a regular file but a character device"),
            "{p}"
        );
        let big = d.file("big", &[b'x'; 65]);
        let p = one_problem(&dynamic(&big));
        assert!(p.contains(": 65 bytes, more than the 64 accepted: "), "{p}");
        // A missing one is fine at load: it is where the secret would be kept.
        ok(&dynamic(&d.0.join("missing")));
    }

    #[test]
    fn a_secret_file_readable_by_others_is_a_warning() {
        let d = TempDir::new("device-secret-mode");
        let f = d.file("device.secret", b"hly3dk1u5y8fq0b9\n");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::parse(&dynamic(&f), "uiot.ini").unwrap();
        assert_eq!(
            c.warnings(),
            [format!(
                "uiot.ini: [device] secret_file = {0}: holds the device secret and other users \
                 may read it (mode 0644); run chmod 600 {0}",
                f.display()
            )]
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::parse(&dynamic(&f), "uiot.ini").unwrap();
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }
}
