//! The INI configuration file, validated completely at load.
//!
//! Owns: loading a file (through the bounded reader in `file`), the list of
//! sections (the `sections!` invocation below), [`Config`] and its
//! warnings, and the public face of the module. One file per seam:
//! - `file`: reading a named file: regular files only, bounded, non-blocking open;
//! - `problems`: syntax, unknown/misplaced/duplicate names, suggestions;
//! - `reader`: the `Section` trait and the per-key reader every section uses;
//! - `secret`: [`Secret`], [`SecretSource`], reading `secret_file`;
//! - `device`, `connection`, `limits`, `reconnect`, `queue`: one per section;
//! - `daemon`: `[daemon]`, `[subscribe]`, `[hooks]`, `[metrics]` (for `uiot run`);
//! - `serial`: `[serial]` and `[serial.NAME]`, which may come several times;
//! - `ota`: `[ota]` and `[ota.NAME]` (firmware modules), likewise;
//! - `effective`: the `effective()` rendering shown by `uiot check`.
//!
//! Must not touch: sockets, threads, logging, process exit codes, the
//! defaults and ranges of options (those belong to `Options`, `Limits`,
//! `Reconnect` and `Queue`; the sections read into those types directly).
//! Secrets (`device_secret`, `product_secret`) never appear in any message,
//! rendering or `Debug` output: they print as `<hidden>`.
//!
//! Adding a section: write its struct (or use the option type it fills),
//! implement `Section` for it (name, keys, reading with validation,
//! rendering), and add one line to the `sections!` invocation. The
//! unknown-name check and `effective()` follow.

use std::path::{Path, PathBuf};

use ini::{Ini, ParseOption};

use crate::client::{Queue, Reconnect};
use crate::platform::Limits;

mod connection;
mod daemon;
mod device;
mod effective;
pub(crate) mod file;
mod limits;
mod ota;
mod problems;
mod queue;
mod reader;
mod reconnect;
mod secret;
mod serial;
#[cfg(test)]
mod test_util;

pub use crate::error::ConfigError;
pub use connection::{ConnectionConfig, MAX_CA_FILE};
pub use daemon::{
    DaemonConfig, HooksConfig, MetricsConfig, SubscribeConfig, DEFAULT_SOCKET, METRICS,
};
pub use device::DeviceConfig;
pub use ota::{OtaConfig, OtaModule, DEFAULT_MODULE, DEFAULT_OTA_DIR};
pub(crate) use secret::parse_secret;
pub use secret::{read_secret_file, Secret, SecretSource, MAX_SECRET_FILE, MAX_SECRET_LEN};
pub use serial::{SerialFraming, SerialPort, SerialPorts};

use file::FileError;
use reader::{Ctx, Key, Section};

/// The configuration file used when none is given: `$UIOT_CONFIG` if it is
/// set and non-empty, else `/etc/uiot/uiot.ini`.
pub fn default_path() -> PathBuf {
    match std::env::var_os("UIOT_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// Where the configuration is read from when neither `-c` nor `UIOT_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/uiot/uiot.ini";

/// Where a device secret obtained by dynamic registration is kept by default.
pub const DEFAULT_SECRET_FILE: &str = "/etc/uiot/device.secret";

/// Largest configuration file accepted, in bytes (checked before reading, so
/// `-c /dev/zero` or a wrong multi-GB file never fills memory).
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Declares the sections of [`Config`] once: its fields, the table of known
/// names, reading and rendering all come from this list.
macro_rules! sections {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty ),+ $(,)?) => {
        /// A loaded and completely validated configuration.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct Config {
            /// The file it was read from (or the name given to [`Config::parse`]).
            pub path: PathBuf,
            $( $(#[$doc])* pub $field: $ty, )+
            warnings: Vec<String>,
        }

        /// Every section and its keys, in the order they are rendered.
        const SECTIONS: &[(&str, &[Key])] = &[ $( (<$ty as Section>::NAME, <$ty as Section>::KEYS), )+ ];

        fn read_sections(ctx: &mut Ctx<'_>, path: PathBuf) -> Option<Config> {
            $( let $field = <$ty as Section>::read_all(ctx); )+
            Some(Config { path, $( $field: $field?, )+ warnings: Vec::new() })
        }

        fn write_sections(config: &Config, w: &mut effective::Writer) {
            $( config.$field.write_all(w); )+
        }
    };
}

sections! {
    /// `[device]`: identity and secret.
    device: DeviceConfig,
    /// `[connection]`: broker, TLS and MQTT session settings.
    connection: ConnectionConfig,
    /// `[limits]`: the platform's caps, enforced before anything is sent.
    limits: Limits,
    /// `[reconnect]`: automatic reconnection (`stable_after` keeps its default).
    reconnect: Reconnect,
    /// `[queue]`: the outgoing queue and its optional file on disk.
    queue: Queue,
    /// `[daemon]`: the local socket of `uiot run` (every command looks there).
    daemon: DaemonConfig,
    /// `[subscribe]`: topics `uiot run` keeps subscribed.
    subscribe: SubscribeConfig,
    /// `[hooks]`: executables `uiot run` runs on events.
    hooks: HooksConfig,
    /// `[metrics]`: board health `uiot run` posts as properties.
    metrics: MetricsConfig,
    /// `[serial]` and `[serial.NAME]`: the serial bridges of `uiot run`.
    serial: SerialPorts,
    /// `[ota]` and `[ota.NAME]`: firmware upgrades by `uiot run`.
    ota: OtaConfig,
}

impl Config {
    /// Reads and validates the file at `path`. Every problem is reported,
    /// each naming the file; a file that cannot be read, is not a regular
    /// file (a FIFO, a device, a directory: refused before it is opened,
    /// so nothing blocks) or is larger than [`MAX_FILE_SIZE`] is one
    /// problem saying so. Relative paths inside the file (`ca_file`,
    /// `secret_file`) are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let fail = |msg: String| ConfigError {
            problems: vec![format!("{name}: {msg}")],
        };
        let (bytes, meta) = file::read_bounded(path, MAX_FILE_SIZE).map_err(|e| {
            fail(match e {
                FileError::Io(e) => format!(
                    "cannot read the configuration file: {e}; check the path and that this user may read it"
                ),
                e @ FileError::NotRegular(_) => {
                    format!("{e}; give the path of a regular INI configuration file")
                }
                e @ FileError::TooLarge { .. } => format!(
                    "{e}; this is not a uiot configuration file, give the right path"
                ),
            })
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            fail(format!(
                "not UTF-8 text (bad byte at offset {}); save the file as UTF-8",
                e.utf8_error().valid_up_to()
            ))
        })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty());
        let mut config = parse_with(&text, &name, PathBuf::from(path), base)?;
        if let (Some(key), Some(mode)) = (config.secret_key(), file::readable_by_others(&meta)) {
            config.warnings.insert(
                0,
                format!(
                    "{name}: holds a secret ([device] {key}) and other users may read it \
                     (mode {mode:04o}); run chmod 600 {name}"
                ),
            );
        }
        Ok(config)
    }

    /// Validates INI `text`; `name` (usually the file name) starts every
    /// problem. Relative paths inside are taken relative to the current directory.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        parse_with(text, name, PathBuf::from(name), None)
    }

    /// What is wrong but does not stop the configuration from working, one
    /// line each, naming the file and the fix: a file holding a secret that
    /// other users may read (`chmod 600 FILE`). Never holds a secret. The
    /// client logs them at start; `uiot check` prints them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Takes the warnings out, for a caller that shows them itself (as
    /// `uiot check` does); [`Options::from_config`](crate::Options::from_config)
    /// then has none left to log.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The name of the secret key the file itself holds, if any.
    fn secret_key(&self) -> Option<&'static str> {
        match self.device.secret {
            SecretSource::DeviceSecret(_) => Some("device_secret"),
            SecretSource::ProductSecret { .. } => Some("product_secret"),
        }
    }
}

fn parse_with(
    text: &str,
    name: &str,
    path: PathBuf,
    base: Option<&Path>,
) -> Result<Config, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bare = problems::bare_lines(text, name);
    if !bare.is_empty() {
        return Err(ConfigError { problems: bare });
    }
    let opt = ParseOption {
        enabled_quote: true,
        enabled_escape: false,
        ..ParseOption::default()
    };
    let ini = Ini::load_from_str_opt(text, opt).map_err(|e| ConfigError {
        problems: vec![format!(
            "{name}: line {}: {}",
            e.line,
            problems::explain_syntax(&e.msg)
        )],
    })?;
    let mut ctx = Ctx {
        file: name,
        base,
        ini: &ini,
        problems: problems::structure_problems(&ini, name),
        warnings: Vec::new(),
    };
    let config = read_sections(&mut ctx, path);
    if let Some(c) = &config {
        let cross = ota::cross_check(&c.ota, c.hooks.on_ota.is_some(), name);
        ctx.problems.extend(cross);
    }
    match config {
        Some(mut c) if ctx.problems.is_empty() => {
            c.warnings = ctx.warnings;
            Ok(c)
        }
        _ => Err(ConfigError {
            problems: ctx.problems,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::file::tests::TempDir;
    use super::test_util::*;
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn all_problems_are_collected() {
        let text = "[device]\nproduct_sn = !\n[connection]\nkeep_alive = 1\nport = 0\ntls = perhaps\nprotocol = 4\n";
        let p = problems(text);
        // product_sn, device_sn missing, no secret, keep_alive, port, tls, protocol.
        assert_eq!(p.len(), 7, "{p:#?}");
    }

    #[test]
    fn parse_names_the_path() {
        let c = ok(&minimal());
        assert_eq!(c.path, PathBuf::from("uiot.ini"));
        assert_eq!(c.device.product_sn, "70ly1tvowt696r15");
        assert_eq!(c.device.device_sn, "aruidyl0rt9tuvod");
        assert_eq!(
            c.device.secret,
            SecretSource::DeviceSecret(DEV_SECRET.into())
        );
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn load_reports_unreadable_files() {
        let d = TempDir::new("load-bad");
        let missing = d.0.join("missing.ini");
        let e = Config::load(&missing).unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert!(
            e.problems[0].starts_with(&format!(
                "{}: cannot read the configuration file: ",
                missing.display()
            )),
            "{e}"
        );
        let bin = d.file("bin.ini", b"[device]\nproduct_sn = \xff\xfe\n");
        let e = Config::load(&bin).unwrap_err();
        assert!(
            e.problems[0].contains("not UTF-8 text (bad byte at offset 22)"),
            "{e}"
        );
    }

    #[test]
    fn load_refuses_what_is_not_a_small_regular_file_without_blocking() {
        let d = TempDir::new("load-kinds");
        let fifo = d.fifo("pipe.ini");
        for (path, what) in [
            (fifo.as_path(), "a FIFO (named pipe)"),
            (Path::new("/dev/zero"), "a character device"),
            (d.0.as_path(), "a directory"),
        ] {
            let e = Config::load(path).unwrap_err();
            assert_eq!(
                e.problems,
                [format!(
                    "{}: not a regular file but {what}; give the path of a regular INI configuration file",
                    path.display()
                )]
            );
        }
        let big = std::fs::File::create(d.0.join("big.ini")).unwrap();
        big.set_len(MAX_FILE_SIZE + 1).unwrap();
        let e = Config::load(&d.0.join("big.ini")).unwrap_err();
        assert!(
            e.problems[0].ends_with(
                ": 1048577 bytes, more than the 1048576 accepted; this is not a uiot \
                 configuration file, give the right path"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_secret_in_a_file_others_may_read_is_a_warning() {
        let d = TempDir::new("load-mode");
        let f = d.file("uiot.ini", minimal().as_bytes());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::load(&f).unwrap();
        let name = f.display();
        assert_eq!(
            c.warnings(),
            [format!(
                "{name}: holds a secret ([device] device_secret) and other users may read it \
                 (mode 0644); run chmod 600 {name}"
            )]
        );
        for w in c.warnings() {
            assert_no_secret(w);
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Config::load(&f).unwrap().warnings().is_empty());
    }

    #[test]
    fn byte_order_mark_and_crlf_are_accepted() {
        let text = format!("\u{feff}{}", minimal().replace('\n', "\r\n"));
        assert_eq!(ok(&text).device.device_sn, "aruidyl0rt9tuvod");
    }

    #[test]
    fn default_path_uses_env() {
        // Only this test touches UIOT_CONFIG in this process.
        std::env::set_var("UIOT_CONFIG", "/tmp/x.ini");
        assert_eq!(default_path(), PathBuf::from("/tmp/x.ini"));
        std::env::set_var("UIOT_CONFIG", "");
        assert_eq!(default_path(), PathBuf::from("/etc/uiot/uiot.ini"));
        std::env::remove_var("UIOT_CONFIG");
        assert_eq!(default_path(), PathBuf::from("/etc/uiot/uiot.ini"));
    }

    #[test]
    fn example_file_documents_every_key() {
        let text = include_str!("../../etc/uiot.ini");
        for (section, keys) in SECTIONS {
            assert!(
                text.contains(&format!("[{section}]")),
                "etc/uiot.ini lacks [{section}]"
            );
            for key in *keys {
                assert!(text.contains(key.name), "etc/uiot.ini lacks {}", key.name);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_gives_a_config_or_problems_never_a_panic(
            text in "(\\[[a-z]{0,12}\\]?|[a-z_]{0,16} ?[=:]? ?[ -~]{0,20}|#.*|\\PC{0,8})(\n(\\[[a-z]{0,12}\\]?|[a-z_]{0,16} ?[=:]? ?[ -~]{0,20}|\\PC{0,8})){0,12}"
        ) {
            match Config::parse(&text, "f.ini") {
                Ok(c) => { let _ = c.effective(); }
                Err(e) => proptest::prop_assert!(!e.problems.is_empty()),
            }
        }
    }
}
