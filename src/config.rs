//! The INI configuration file, validated completely at load.
//!
//! Owns: reading the file, the section/key table (one `Section` impl per
//! section, registered once in the `sections!` list below), every default,
//! every validation rule, the text of every problem, and the `effective()`
//! rendering shown by `uiot check`.
//! Must not touch: sockets, threads, logging of values, process exit codes.
//! Secrets (`device_secret`, `product_secret`) never appear in any message,
//! rendering or `Debug` output: they print as `<hidden>`.
//!
//! Adding a section: write its struct, implement `Section` for it (name,
//! keys, reading with validation, rendering), and add one line to the
//! `sections!` invocation. The unknown-name check and `effective()` follow.

use std::fmt::{self, Write as _};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ini::{Ini, ParseOption};

use crate::packet::Protocol;
use crate::platform::{Limits, MAX_KEEP_ALIVE, MAX_PACKET, MIN_KEEP_ALIVE};

pub use crate::error::ConfigError;

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

/// Largest configuration file accepted, in bytes (guards against `-c /dev/zero`).
const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// How a secret is shown anywhere outside the running client.
const HIDDEN: &str = "<hidden>";

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

/// `[connection]`: where and how to connect to the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Region id, e.g. `cn-sh2`.
    pub region: String,
    /// Broker host name: `host` if given, else the region's MQTT host.
    pub host: String,
    /// Broker port (default 8883 with TLS, 1883 without).
    pub port: u16,
    /// Whether to use TLS.
    pub tls: bool,
    /// CA certificate file (PEM); `None` means the built-in UIoT Core CA.
    pub ca_file: Option<PathBuf>,
    /// Whether the server certificate must name `host`.
    pub tls_verify_hostname: bool,
    /// MQTT keep-alive in seconds (30..1200).
    pub keep_alive: u16,
    /// MQTT clean-session flag.
    pub clean_session: bool,
    /// MQTT protocol version sent in CONNECT.
    pub protocol: Protocol,
    /// How long to wait for TCP, TLS and CONNACK together.
    pub connect_timeout: Duration,
    /// How long a graceful stop waits for QoS 1 acknowledgements.
    pub shutdown_timeout: Duration,
}

/// One key of a section: its name and whether its value is a secret.
#[derive(Clone, Copy, Debug)]
struct Key {
    name: &'static str,
    secret: bool,
}

impl Key {
    const fn plain(name: &'static str) -> Key {
        Key {
            name,
            secret: false,
        }
    }
    const fn secret(name: &'static str) -> Key {
        Key { name, secret: true }
    }
}

/// One `[section]` of the file: its name, its keys, how it is read (with
/// defaults and validation) and how it is rendered by `effective()`.
trait Section: Sized {
    /// The name between the brackets.
    const NAME: &'static str;
    /// Every key the section accepts; anything else is reported as unknown.
    const KEYS: &'static [Key];
    /// Reads and validates the section; `None` when a problem was recorded.
    fn read(r: &mut Reader<'_, '_>) -> Option<Self>;
    /// Writes every setting, defaults filled in and secrets masked.
    fn write(&self, w: &mut Writer);
}

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
        }

        /// Every section and its keys, in the order they are rendered.
        const SECTIONS: &[(&str, &[Key])] = &[ $( (<$ty as Section>::NAME, <$ty as Section>::KEYS), )+ ];

        fn read_sections(ctx: &mut Ctx<'_>, path: PathBuf) -> Option<Config> {
            $( let $field = ctx.read::<$ty>(); )+
            Some(Config { path, $( $field: $field?, )+ })
        }

        fn write_sections(config: &Config, w: &mut Writer) {
            $( w.section(&config.$field); )+
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
    /// `[reconnect]`: automatic reconnection.
    reconnect: ReconnectConfig,
    /// `[queue]`: the outgoing queue and its optional file on disk.
    queue: QueueConfig,
}

impl Config {
    /// Reads and validates the file at `path`. Every problem is reported,
    /// each naming the file; I/O errors say which file could not be read.
    /// Relative paths inside the file (`ca_file`, `secret_file`) are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let fail = |msg: String| ConfigError {
            problems: vec![format!("{name}: {msg}")],
        };
        let file = std::fs::File::open(path).map_err(|e| {
            fail(format!(
                "cannot read the configuration file: {e}; check the path and that this user may read it"
            ))
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                fail(format!(
                    "cannot read the configuration file: {e}; give the path of a regular INI file"
                ))
            })?;
        if bytes.len() as u64 > MAX_FILE_SIZE {
            return Err(fail(format!(
                "larger than {MAX_FILE_SIZE} bytes; this is not a uiot configuration file, give the right path"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            fail(format!(
                "not UTF-8 text (bad byte at offset {}); save the file as UTF-8",
                e.utf8_error().valid_up_to()
            ))
        })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty());
        parse_with(&text, &name, PathBuf::from(path), base)
    }

    /// Validates INI `text`; `name` (usually the file name) starts every
    /// problem. Relative paths inside are taken relative to the current directory.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        parse_with(text, name, PathBuf::from(name), None)
    }

    /// INI text of every setting, defaults filled in, secrets shown as `<hidden>`.
    pub fn effective(&self) -> String {
        let mut w = Writer::default();
        write_sections(self, &mut w);
        w.out
    }
}

fn parse_with(
    text: &str,
    name: &str,
    path: PathBuf,
    base: Option<&Path>,
) -> Result<Config, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bare = bare_lines(text, name);
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
            explain_syntax(&e.msg)
        )],
    })?;
    let mut ctx = Ctx {
        file: name,
        base,
        ini: &ini,
        problems: structure_problems(&ini, name),
    };
    let config = read_sections(&mut ctx, path);
    match config {
        Some(c) if ctx.problems.is_empty() => Ok(c),
        _ => Err(ConfigError {
            problems: ctx.problems,
        }),
    }
}

/// Lines that are neither empty, a comment, a `[section]` nor `key = value`.
/// rust-ini would silently join such a line to the next key, so they are
/// reported here with their line numbers. Their text is not shown: a pasted
/// secret on a line of its own must not end up in a log.
fn bare_lines(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let t = line.trim();
            !(t.is_empty()
                || t.starts_with('#')
                || t.starts_with(';')
                || t.starts_with('[')
                || t.contains('=')
                || t.contains(':'))
        })
        .map(|(i, _)| {
            format!(
                "{name}: line {}: not `key = value`, a `[section]` header or a comment \
                 (text not shown, it may be a secret); write it as `key = value` or delete it",
                i + 1
            )
        })
        .collect()
}

fn explain_syntax(msg: &str) -> String {
    let what = if msg.contains("inline comment") {
        "a comment after other text; comments (# or ;) must start at the beginning of a line"
            .to_string()
    } else if msg.contains("Some(']')") {
        "a `[section]` header is not closed; end it with `]`".to_string()
    } else if msg.contains("Some('\"')") || msg.contains("Some('\\'')") {
        "a quoted value is not closed; end it with the same quote on the same line".to_string()
    } else if msg.contains("missing key") {
        "a line starts with `=`; write it as `key = value`".to_string()
    } else {
        format!("{msg}; fix the INI syntax")
    };
    format!("syntax error: {what}")
}

/// Unknown sections and keys, keys outside any section, keys given twice.
fn structure_problems(ini: &Ini, file: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen_sections: Vec<&str> = Vec::new();
    for (section, props) in ini.iter() {
        match section {
            None => {
                for (key, _) in props.iter() {
                    let home = SECTIONS
                        .iter()
                        .find(|(_, keys)| keys.iter().any(|k| k.name == key))
                        .map(|(s, _)| format!("move it under [{s}]"))
                        .unwrap_or_else(|| format!("put it under one of {}", section_list()));
                    problems.push(format!(
                        "{file}: {key}: set outside any section; keys belong under a [section] header: {home}"
                    ));
                }
            }
            Some(name) => {
                if seen_sections.contains(&name) {
                    continue;
                }
                seen_sections.push(name);
                match SECTIONS.iter().find(|(s, _)| *s == name) {
                    None => {
                        let hint = suggest(name, SECTIONS.iter().map(|(s, _)| *s))
                            .map(|s| format!("did you mean [{s}]? "))
                            .unwrap_or_default();
                        problems.push(format!(
                            "{file}: [{name}]: unknown section; {hint}known sections: {}",
                            section_list()
                        ));
                    }
                    Some((_, keys)) => {
                        problems.extend(key_problems(ini, file, name, keys));
                    }
                }
            }
        }
    }
    problems
}

fn key_problems(ini: &Ini, file: &str, section: &str, keys: &[Key]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for props in ini.section_all(Some(section)) {
        for (key, _) in props.iter() {
            match counted.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => counted.push((key, 1)),
            }
        }
    }
    for (key, n) in counted {
        if !keys.iter().any(|k| k.name == key) {
            let hint = match suggest(key, keys.iter().map(|k| k.name)) {
                Some(s) => format!("did you mean {s}?"),
                None => match SECTIONS
                    .iter()
                    .find(|(_, ks)| ks.iter().any(|k| k.name == key))
                {
                    Some((s, _)) => format!("it belongs in [{s}]"),
                    None => format!(
                        "known keys: {}",
                        keys.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                    ),
                },
            };
            // The value is not shown: it could be a mistyped secret key.
            problems.push(format!("{file}: [{section}] {key}: unknown key; {hint}"));
        } else if n > 1 {
            problems.push(format!(
                "{file}: [{section}] {key}: given {n} times; keep exactly one line for it"
            ));
        }
    }
    problems
}

fn section_list() -> String {
    SECTIONS
        .iter()
        .map(|(s, _)| format!("[{s}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The known name closest to `name` (case-insensitive edit distance), if close enough.
fn suggest<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let lower = name.to_ascii_lowercase();
    known
        .map(|k| (distance(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance between two strings, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (cb, pair) in b.iter().zip(prev.windows(2)) {
            if let [diag, up] = pair {
                let left = cur.last().copied().unwrap_or(0);
                let cost = usize::from(ca != *cb);
                cur.push((diag + cost).min(up + 1).min(left + 1));
            }
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// Shared state while reading one file.
struct Ctx<'a> {
    file: &'a str,
    base: Option<&'a Path>,
    ini: &'a Ini,
    problems: Vec<String>,
}

impl<'a> Ctx<'a> {
    fn read<S: Section>(&mut self) -> Option<S> {
        let values: Vec<(&'a str, &'a str)> = self
            .ini
            .section_all(Some(S::NAME))
            .flat_map(|p| p.iter())
            .collect();
        let mut r = Reader {
            ctx: self,
            section: S::NAME,
            keys: S::KEYS,
            values,
        };
        S::read(&mut r)
    }
}

/// The outcome of looking up one key.
enum Got<T> {
    /// The key is not in the file.
    Absent,
    /// The key is there and its value is valid.
    Valid(T),
    /// The key is there and a problem was recorded.
    Invalid,
}

impl<T> Got<T> {
    fn or(self, default: T) -> Option<T> {
        match self {
            Got::Absent => Some(default),
            Got::Valid(v) => Some(v),
            Got::Invalid => None,
        }
    }
    fn is_present(&self) -> bool {
        !matches!(self, Got::Absent)
    }
}

/// Reads the keys of one section and records problems with full context.
struct Reader<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    section: &'static str,
    keys: &'static [Key],
    values: Vec<(&'a str, &'a str)>,
}

impl<'a> Reader<'_, 'a> {
    fn raw(&self, key: &str) -> Option<&'a str> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn is_secret(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k.name == key && k.secret)
    }

    /// Records `file: [section] key = value: fix` (the value masked for secrets).
    fn bad(&mut self, key: &str, value: &str, fix: &str) {
        let shown = if self.is_secret(key) {
            HIDDEN.to_string()
        } else if value.is_empty() || value.chars().any(char::is_control) {
            format!("{value:?}")
        } else {
            value.to_string()
        };
        let comment = if value.contains(" #") || value.contains(" ;") {
            " (a comment must be on a line of its own)"
        } else {
            ""
        };
        let (file, section) = (self.ctx.file, self.section);
        self.ctx.problems.push(format!(
            "{file}: [{section}] {key} = {shown}: {fix}{comment}"
        ));
    }

    /// Records a problem about the section or a combination of keys.
    fn problem(&mut self, keys: &str, msg: &str) {
        let (file, section) = (self.ctx.file, self.section);
        self.ctx
            .problems
            .push(format!("{file}: [{section}] {keys}: {msg}"));
    }

    /// Looks `key` up and parses it; a parse error (the fix) is recorded.
    fn value<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Got<T> {
        match self.raw(key) {
            None => Got::Absent,
            Some(v) => match parse(v) {
                Ok(t) => Got::Valid(t),
                Err(fix) => {
                    self.bad(key, v, &fix);
                    Got::Invalid
                }
            },
        }
    }

    /// A key that must be present.
    fn required<T>(
        &mut self,
        key: &str,
        fix: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.value(key, parse) {
            Got::Absent => {
                self.problem(key, &format!("missing; {fix}"));
                None
            }
            Got::Valid(v) => Some(v),
            Got::Invalid => None,
        }
    }

    fn bool(&mut self, key: &str, default: bool) -> Option<bool> {
        self.value(key, |v| {
            parse_bool(v).ok_or_else(|| {
                format!(
                    "must be true or false (yes/no, on/off, 1/0 also work); remove the line for the default ({default})"
                )
            })
        })
        .or(default)
    }

    /// A whole number in `min..=max`; `what` completes "must be {min}..{max} {what}".
    fn number<T>(&mut self, key: &str, default: T, min: T, max: T, what: &str) -> Option<T>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        self.value(key, |v| match v.parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(format!(
                "must be {min}..{max} {what}; remove the line for the default ({default})"
            )),
        })
        .or(default)
    }

    /// A path, relative to the configuration file's directory; when
    /// `readable`, the file must exist and be readable now.
    fn path(&mut self, key: &str, readable: bool, fix: &str) -> Got<PathBuf> {
        let base = self.ctx.base;
        self.value(key, |v| {
            if v.is_empty() {
                return Err(format!("is empty; {fix}"));
            }
            let p = match base {
                Some(dir) if Path::new(v).is_relative() => dir.join(v),
                _ => PathBuf::from(v),
            };
            if readable {
                check_readable(&p).map_err(|e| format!("cannot be read ({e}); {fix}"))?;
            }
            Ok(p)
        })
    }
}

fn check_readable(p: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(p).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_string());
    }
    std::fs::File::open(p).map_err(|e| e.to_string())?;
    Ok(())
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Builds the text of `effective()`.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn section<S: Section>(&mut self, s: &S) {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        let _ = writeln!(self.out, "[{}]", S::NAME);
        s.write(self);
    }
    fn key(&mut self, key: &str, value: impl fmt::Display) {
        let _ = writeln!(self.out, "{key} = {value}");
    }
    fn hidden(&mut self, key: &str) {
        self.key(key, HIDDEN);
    }
    /// An optional key that is not set, with what that means.
    fn unset(&mut self, key: &str, meaning: &str) {
        let _ = writeln!(self.out, "# {key} is not set: {meaning}");
    }
}

// ---------------------------------------------------------------- [device]

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

fn parse_secret(v: &str) -> Result<Secret, String> {
    if v.is_empty() {
        Err("must not be empty; copy the secret from the UIoT Core console".to_string())
    } else if v.chars().any(char::is_whitespace) {
        Err(
            "must not contain whitespace; copy the secret from the UIoT Core console again"
                .to_string(),
        )
    } else {
        Ok(Secret::from(v))
    }
}

const SECRET_WAYS: &str = "either device_secret (the device's own secret, static authentication) \
     or product_secret (dynamic registration: the device obtains its secret once and keeps it in secret_file)";

impl Section for DeviceConfig {
    const NAME: &'static str = "device";
    const KEYS: &'static [Key] = &[
        Key::plain("product_sn"),
        Key::plain("device_sn"),
        Key::secret("device_secret"),
        Key::secret("product_secret"),
        Key::plain("secret_file"),
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
            false,
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
            (_, Got::Valid(s)) => secret_file.or(PathBuf::from(DEFAULT_SECRET_FILE)).map(|f| {
                SecretSource::ProductSecret {
                    product_secret: s,
                    secret_file: f,
                }
            }),
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

// ------------------------------------------------------------ [connection]

/// Regions of UIoT Core and their MQTT hosts.
const REGIONS: &[(&str, &str)] = &[
    ("cn-sh2", "mqtt-cn-sh2.iot.ucloud.cn"),
    ("cn-gd", "mqtt-cn-gd.iot.ucloud.cn"),
];
const DEFAULT_REGION: &str = "cn-sh2";
const DEFAULT_KEEP_ALIVE: u16 = 300;
const DEFAULT_CONNECT_TIMEOUT: u64 = 10;

/// The MQTT host of a known region.
fn region_host(region: &str) -> Option<&'static str> {
    REGIONS
        .iter()
        .find(|(r, _)| *r == region)
        .map(|(_, host)| *host)
}

fn parse_region(v: &str) -> Result<String, String> {
    match region_host(v) {
        Some(_) => Ok(v.to_string()),
        None => Err(format!(
            "unknown region; known regions: {}; to use another broker set host (and port) instead",
            REGIONS
                .iter()
                .map(|(r, _)| *r)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn parse_host(v: &str) -> Result<String, String> {
    if v.parse::<std::net::IpAddr>().is_ok() {
        return Ok(v.to_string());
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if !v.is_empty() && v.len() <= 253 && v.chars().all(ok_char) {
        Ok(v.to_string())
    } else {
        Err(
            "must be a host name or IP address without scheme or port (put the port in `port`); \
             or remove the line to use the region's host"
                .to_string(),
        )
    }
}

fn parse_protocol(v: &str) -> Result<Protocol, String> {
    match v {
        "3.1.1" => Ok(Protocol::V311),
        "3.1" => Ok(Protocol::V31),
        _ => Err("must be 3.1.1 (the default, what UIoT Core expects) or 3.1".to_string()),
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::V311 => "3.1.1",
        Protocol::V31 => "3.1",
    }
}

impl Section for ConnectionConfig {
    const NAME: &'static str = "connection";
    const KEYS: &'static [Key] = &[
        Key::plain("region"),
        Key::plain("host"),
        Key::plain("port"),
        Key::plain("tls"),
        Key::plain("ca_file"),
        Key::plain("tls_verify_hostname"),
        Key::plain("keep_alive"),
        Key::plain("clean_session"),
        Key::plain("protocol"),
        Key::plain("connect_timeout"),
        Key::plain("shutdown_timeout"),
    ];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let region = r
            .value("region", parse_region)
            .or(DEFAULT_REGION.to_string());
        let host = r.value("host", parse_host);
        let tls = r.bool("tls", true);
        let default_port = if tls == Some(false) { 1883 } else { 8883 };
        let port = r.value("port", |v| match v.parse::<u16>() {
            Ok(p) if p >= 1 => Ok(p),
            _ => Err(format!(
                "must be 1..65535; remove the line for the default ({default_port} with tls = {})",
                tls.unwrap_or(true)
            )),
        });
        let ca_file = r.path(
            "ca_file",
            true,
            "give a readable PEM file with the broker's CA certificate, \
             or remove the line to use the built-in UIoT Core CA",
        );
        let tls_verify_hostname = r.bool("tls_verify_hostname", true);
        let keep_alive = r.number(
            "keep_alive",
            DEFAULT_KEEP_ALIVE,
            MIN_KEEP_ALIVE,
            MAX_KEEP_ALIVE,
            "seconds (UIoT Core refuses others)",
        );
        let clean_session = r.bool("clean_session", true);
        let protocol = r.value("protocol", parse_protocol).or(Protocol::V311);
        let connect_timeout = r.number(
            "connect_timeout",
            DEFAULT_CONNECT_TIMEOUT,
            1,
            300,
            "seconds",
        );
        let shutdown_timeout = r.number("shutdown_timeout", 5, 0, 3600, "seconds");

        let region = region?;
        let host = match host {
            Got::Valid(h) => h,
            Got::Absent => region_host(&region)?.to_string(),
            Got::Invalid => return None,
        };
        Some(ConnectionConfig {
            region,
            host,
            port: port.or(default_port)?,
            tls: tls?,
            ca_file: match ca_file {
                Got::Valid(p) => Some(p),
                Got::Absent => None,
                Got::Invalid => return None,
            },
            tls_verify_hostname: tls_verify_hostname?,
            keep_alive: keep_alive?,
            clean_session: clean_session?,
            protocol: protocol?,
            connect_timeout: Duration::from_secs(connect_timeout?),
            shutdown_timeout: Duration::from_secs(shutdown_timeout?),
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("region", &self.region);
        w.key("host", &self.host);
        w.key("port", self.port);
        w.key("tls", self.tls);
        match &self.ca_file {
            Some(p) => w.key("ca_file", p.display()),
            None => w.unset("ca_file", "the built-in UIoT Core CA is used"),
        }
        w.key("tls_verify_hostname", self.tls_verify_hostname);
        w.key("keep_alive", self.keep_alive);
        w.key("clean_session", self.clean_session);
        w.key("protocol", protocol_name(self.protocol));
        w.key("connect_timeout", self.connect_timeout.as_secs());
        w.key("shutdown_timeout", self.shutdown_timeout.as_secs());
    }
}

/// `[reconnect]`: automatic reconnection with back-off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconnectConfig {
    /// Reconnect automatically.
    pub enabled: bool,
    /// Shortest wait, seconds.
    pub min: Duration,
    /// Longest wait, seconds (also after being kicked).
    pub max: Duration,
}

impl Section for ReconnectConfig {
    const NAME: &'static str = "reconnect";
    const KEYS: &'static [Key] = &[Key::plain("enabled"), Key::plain("min"), Key::plain("max")];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let enabled = r.bool("enabled", true);
        let min = r.number("min", 1, 1, 3600, "seconds");
        let max = r.number("max", 60, 1, 86_400, "seconds");
        let (min, max) = (min?, max?);
        if max < min {
            r.bad(
                "max",
                &max.to_string(),
                &format!("must not be below min ({min}); raise max or lower min"),
            );
            return None;
        }
        Some(ReconnectConfig {
            enabled: enabled?,
            min: Duration::from_secs(min),
            max: Duration::from_secs(max),
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("enabled", self.enabled);
        w.key("min", self.min.as_secs());
        w.key("max", self.max.as_secs());
    }
}

/// When the on-disk queue is synced to storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every publish returns (safest, most flash writes).
    Always,
    /// At most this often; a power cut may lose the last interval.
    IntervalMs(u64),
}

/// What publish does when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFullPolicy {
    /// Wait for room.
    Block,
    /// Drop the oldest message not yet sent.
    DropOldest,
    /// Refuse the new message.
    DropNewest,
}

/// `[queue]`: messages accepted but not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most messages.
    pub max_messages: usize,
    /// Most payload bytes.
    pub max_bytes: usize,
    /// What happens when full.
    pub on_full: OnFullPolicy,
    /// Directory of the on-disk queue; `None`: memory only.
    pub dir: Option<PathBuf>,
    /// When the on-disk queue is synced.
    pub fsync: FsyncPolicy,
}

impl Section for QueueConfig {
    const NAME: &'static str = "queue";
    const KEYS: &'static [Key] = &[
        Key::plain("max_messages"),
        Key::plain("max_bytes"),
        Key::plain("on_full"),
        Key::plain("dir"),
        Key::plain("fsync"),
    ];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let max_messages = r.number("max_messages", 1000, 1, 10_000_000, "messages");
        let max_bytes = r.number(
            "max_bytes",
            4 * 1024 * 1024,
            1024,
            1 << 30,
            "bytes of payload",
        );
        let on_full = r
            .value("on_full", |v| match v {
                "block" => Ok(OnFullPolicy::Block),
                "drop_oldest" => Ok(OnFullPolicy::DropOldest),
                "drop_newest" => Ok(OnFullPolicy::DropNewest),
                _ => Err("must be block, drop_oldest or drop_newest".to_string()),
            })
            .or(OnFullPolicy::Block);
        let dir = r.path(
            "dir",
            false,
            "give a directory on persistent storage, or remove the line to keep the queue in memory",
        );
        let fsync = r
            .value("fsync", |v| {
                let mut words = v.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some("always"), None, None) => Ok(FsyncPolicy::Always),
                    (Some("interval_ms"), Some(n), None) => match n.parse::<u64>() {
                        Ok(ms) if (1..=3_600_000).contains(&ms) => Ok(FsyncPolicy::IntervalMs(ms)),
                        _ => Err("interval_ms takes 1..3600000 milliseconds".to_string()),
                    },
                    _ => {
                        Err("must be 'always' or 'interval_ms N' (e.g. interval_ms 200)"
                            .to_string())
                    }
                }
            })
            .or(FsyncPolicy::Always);
        Some(QueueConfig {
            max_messages: max_messages?,
            max_bytes: max_bytes?,
            on_full: on_full?,
            dir: match dir {
                Got::Valid(p) => Some(p),
                Got::Absent => None,
                Got::Invalid => return None,
            },
            fsync: fsync?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("max_messages", self.max_messages);
        w.key("max_bytes", self.max_bytes);
        w.key(
            "on_full",
            match self.on_full {
                OnFullPolicy::Block => "block",
                OnFullPolicy::DropOldest => "drop_oldest",
                OnFullPolicy::DropNewest => "drop_newest",
            },
        );
        match &self.dir {
            Some(d) => w.key("dir", d.display()),
            None => w.unset("dir", "the queue is kept in memory only"),
        }
        match self.fsync {
            FsyncPolicy::Always => w.key("fsync", "always"),
            FsyncPolicy::IntervalMs(ms) => w.key("fsync", format!("interval_ms {ms}")),
        }
    }
}

impl Section for Limits {
    const NAME: &'static str = "limits";
    const KEYS: &'static [Key] = &[
        Key::plain("enforce"),
        Key::plain("publish_rate"),
        Key::plain("bandwidth_kb"),
        Key::plain("max_packet"),
        Key::plain("max_subscriptions"),
    ];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let d = Limits::default();
        let enforce = r.bool("enforce", d.enforce);
        let publish_rate = r.number(
            "publish_rate",
            d.publish_rate,
            0,
            1_000_000,
            "messages per second (0 = unlimited; UIoT Core allows 30)",
        );
        let bandwidth_kb = r.number(
            "bandwidth_kb",
            d.bandwidth_kb,
            0,
            10_000_000,
            "KB per second (0 = unlimited; UIoT Core allows 1024)",
        );
        let max_packet = r.number(
            "max_packet",
            d.max_packet,
            64,
            crate::packet::MAX_REMAINING_LENGTH,
            "bytes (UIoT Core allows 262144)",
        );
        let max_subscriptions = r.number(
            "max_subscriptions",
            d.max_subscriptions,
            1,
            1_000_000,
            "subscriptions (UIoT Core allows 100)",
        );
        let (enforce, max_packet) = (enforce?, max_packet?);
        if enforce && max_packet > MAX_PACKET {
            r.bad(
                "max_packet",
                &max_packet.to_string(),
                &format!(
                    "UIoT Core refuses packets over {MAX_PACKET} bytes; lower it, \
                     or set enforce = false for another broker"
                ),
            );
            return None;
        }
        Some(Limits {
            enforce,
            publish_rate: publish_rate?,
            bandwidth_kb: bandwidth_kb?,
            max_packet,
            max_subscriptions: max_subscriptions?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("enforce", self.enforce);
        w.key("publish_rate", self.publish_rate);
        w.key("bandwidth_kb", self.bandwidth_kb);
        w.key("max_packet", self.max_packet);
        w.key("max_subscriptions", self.max_subscriptions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV_SECRET: &str = "hly3dk1u5y8fq0b9";
    const PROD_SECRET: &str = "pr0dS3cretZZ9q7x";

    fn minimal() -> String {
        format!(
            "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = {DEV_SECRET}\n"
        )
    }

    fn with_conn(lines: &str) -> String {
        format!("{}[connection]\n{lines}\n", minimal())
    }

    fn ok(text: &str) -> Config {
        match Config::parse(text, "uiot.ini") {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(text, "uiot.ini") {
            Ok(c) => panic!("expected problems, got {c:?}"),
            Err(e) => e.problems,
        }
    }

    /// Asserts there is exactly one problem and returns it.
    fn one_problem(text: &str) -> String {
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:#?}");
        p.into_iter().next().unwrap()
    }

    fn assert_no_secret(s: &str) {
        assert!(!s.contains(DEV_SECRET), "device secret leaked: {s}");
        assert!(!s.contains(PROD_SECRET), "product secret leaked: {s}");
    }

    #[test]
    fn reconnect_and_queue_sections() {
        let c = ok(&format!(
            "{}[reconnect]\nenabled = no\nmin = 2\nmax = 30\n[queue]\nmax_messages = 10\n\
             on_full = drop_oldest\nfsync = interval_ms 250\ndir = /var/lib/uiot\n",
            minimal()
        ));
        assert!(!c.reconnect.enabled);
        assert_eq!(c.reconnect.max, Duration::from_secs(30));
        assert_eq!(c.queue.on_full, OnFullPolicy::DropOldest);
        assert_eq!(c.queue.fsync, FsyncPolicy::IntervalMs(250));
        assert_eq!(c.queue.dir, Some(PathBuf::from("/var/lib/uiot")));
        let p = one_problem(&format!("{}[reconnect]\nmin = 10\nmax = 5\n", minimal()));
        assert!(
            p.contains("[reconnect] max = 5: must not be below min (10)"),
            "{p}"
        );
        let p = one_problem(&format!("{}[queue]\non_full = discard\n", minimal()));
        assert!(
            p.contains("[queue] on_full = discard: must be block"),
            "{p}"
        );
        let p = one_problem(&format!("{}[queue]\nfsync = sometimes\n", minimal()));
        assert!(p.contains("'always' or 'interval_ms N'"), "{p}");
    }

    #[test]
    fn limits_section() {
        let c = ok(&minimal());
        assert_eq!(c.limits, Limits::default());
        let c = ok(&format!(
            "{}[limits]\nenforce = false\npublish_rate = 0\nbandwidth_kb = 0\nmax_packet = 1000000\n",
            minimal()
        ));
        assert!(!c.limits.enforce);
        assert_eq!((c.limits.publish_rate, c.limits.max_packet), (0, 1_000_000));
        let p = one_problem(&format!("{}[limits]\nmax_packet = 300000\n", minimal()));
        assert!(
            p.starts_with("uiot.ini: [limits] max_packet = 300000: UIoT Core refuses"),
            "{p}"
        );
        let p = one_problem(&format!("{}[limits]\npublish_rate = -1\n", minimal()));
        assert!(
            p.contains("[limits] publish_rate = -1: must be 0..1000000"),
            "{p}"
        );
        assert!(
            c.effective().contains("[limits]\nenforce = false\n"),
            "{}",
            c.effective()
        );
    }

    #[test]
    fn defaults_of_every_key() {
        let c = ok(&minimal());
        assert_eq!(c.path, PathBuf::from("uiot.ini"));
        assert_eq!(c.device.product_sn, "70ly1tvowt696r15");
        assert_eq!(c.device.device_sn, "aruidyl0rt9tuvod");
        assert_eq!(
            c.device.secret,
            SecretSource::DeviceSecret(DEV_SECRET.into())
        );
        let k = &c.connection;
        assert_eq!(k.region, "cn-sh2");
        assert_eq!(k.host, "mqtt-cn-sh2.iot.ucloud.cn");
        assert_eq!(k.port, 8883);
        assert!(k.tls);
        assert_eq!(k.ca_file, None);
        assert!(k.tls_verify_hostname);
        assert_eq!(k.keep_alive, 300);
        assert!(k.clean_session);
        assert_eq!(k.protocol, Protocol::V311);
        assert_eq!(k.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn every_key_can_be_set() {
        let ca = std::env::temp_dir().join(format!("uiot-config-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "not really a cert").unwrap();
        let c = ok(&with_conn(&format!(
            "region = cn-gd\nhost = 127.0.0.1\nport = 1884\ntls = yes\nca_file = {}\n\
             tls_verify_hostname = off\nkeep_alive = 1200\nclean_session = 0\nprotocol = 3.1\n\
             connect_timeout = 300",
            ca.display()
        )));
        std::fs::remove_file(&ca).unwrap();
        let k = &c.connection;
        assert_eq!(k.region, "cn-gd");
        assert_eq!(k.host, "127.0.0.1");
        assert_eq!(k.port, 1884);
        assert!(k.tls);
        assert_eq!(k.ca_file.as_deref(), Some(ca.as_path()));
        assert!(!k.tls_verify_hostname);
        assert_eq!(k.keep_alive, 1200);
        assert!(!k.clean_session);
        assert_eq!(k.protocol, Protocol::V31);
        assert_eq!(k.connect_timeout, Duration::from_secs(300));
    }

    #[test]
    fn region_maps_to_host_and_host_overrides() {
        assert_eq!(
            ok(&with_conn("region = cn-gd")).connection.host,
            "mqtt-cn-gd.iot.ucloud.cn"
        );
        assert_eq!(
            ok(&with_conn("region = cn-sh2")).connection.host,
            "mqtt-cn-sh2.iot.ucloud.cn"
        );
        let c = ok(&with_conn("region = cn-gd\nhost = broker.example.com"));
        assert_eq!(c.connection.host, "broker.example.com");
        assert_eq!(c.connection.region, "cn-gd");
        let p = one_problem(&with_conn("region = cn-bj2"));
        assert_eq!(
            p,
            "uiot.ini: [connection] region = cn-bj2: unknown region; known regions: cn-sh2, cn-gd; \
             to use another broker set host (and port) instead"
        );
    }

    #[test]
    fn bad_host() {
        let p = one_problem(&with_conn("host = mqtt://broker:1883"));
        assert!(
            p.starts_with("uiot.ini: [connection] host = mqtt://broker:1883: must be a host name"),
            "{p}"
        );
        assert!(p.contains("port"), "{p}");
        assert_eq!(ok(&with_conn("host = ::1")).connection.host, "::1");
    }

    #[test]
    fn port_default_follows_tls() {
        assert_eq!(ok(&with_conn("tls = false")).connection.port, 1883);
        assert_eq!(ok(&with_conn("tls = true")).connection.port, 8883);
        assert_eq!(
            ok(&with_conn("tls = false\nport = 8883")).connection.port,
            8883
        );
        assert_eq!(
            one_problem(&with_conn("tls = no\nport = 0")),
            "uiot.ini: [connection] port = 0: must be 1..65535; remove the line for the default (1883 with tls = false)"
        );
        assert_eq!(problems(&with_conn("port = 65536")).len(), 1);
        assert_eq!(problems(&with_conn("port = http")).len(), 1);
        assert_eq!(ok(&with_conn("port = 65535")).connection.port, 65535);
    }

    #[test]
    fn booleans_in_every_spelling() {
        for (text, want) in [
            ("true", true),
            ("TRUE", true),
            ("yes", true),
            ("On", true),
            ("1", true),
            ("false", false),
            ("False", false),
            ("no", false),
            ("OFF", false),
            ("0", false),
        ] {
            let c = ok(&with_conn(&format!("clean_session = {text}")));
            assert_eq!(c.connection.clean_session, want, "{text}");
        }
        assert_eq!(
            one_problem(&with_conn("tls = maybe")),
            "uiot.ini: [connection] tls = maybe: must be true or false (yes/no, on/off, 1/0 also work); \
             remove the line for the default (true)"
        );
    }

    #[test]
    fn keep_alive_range() {
        assert_eq!(
            one_problem(&with_conn("keep_alive = 10")),
            "uiot.ini: [connection] keep_alive = 10: must be 30..1200 seconds (UIoT Core refuses others); \
             remove the line for the default (300)"
        );
        assert_eq!(problems(&with_conn("keep_alive = 1201")).len(), 1);
        assert_eq!(problems(&with_conn("keep_alive = 5m")).len(), 1);
        assert_eq!(problems(&with_conn("keep_alive = -30")).len(), 1);
        assert_eq!(ok(&with_conn("keep_alive = 30")).connection.keep_alive, 30);
    }

    #[test]
    fn connect_timeout_range() {
        let p = one_problem(&with_conn("connect_timeout = 0"));
        assert!(
            p.starts_with("uiot.ini: [connection] connect_timeout = 0: must be 1..300 seconds"),
            "{p}"
        );
        assert_eq!(problems(&with_conn("connect_timeout = 301")).len(), 1);
        assert_eq!(
            ok(&with_conn("connect_timeout = 1"))
                .connection
                .connect_timeout,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn protocol_values() {
        assert_eq!(
            ok(&with_conn("protocol = 3.1.1")).connection.protocol,
            Protocol::V311
        );
        assert_eq!(
            one_problem(&with_conn("protocol = 5")),
            "uiot.ini: [connection] protocol = 5: must be 3.1.1 (the default, what UIoT Core expects) or 3.1"
        );
    }

    #[test]
    fn ca_file_must_be_readable() {
        let missing = std::env::temp_dir().join("uiot-config-test-no-such-ca.pem");
        let p = one_problem(&with_conn(&format!("ca_file = {}", missing.display())));
        assert!(
            p.starts_with(&format!(
                "uiot.ini: [connection] ca_file = {}: cannot be read (",
                missing.display()
            )),
            "{p}"
        );
        assert!(p.contains("built-in UIoT Core CA"), "{p}");
        // A directory is not a certificate file.
        let dir = std::env::temp_dir();
        assert!(
            one_problem(&with_conn(&format!("ca_file = {}", dir.display())))
                .contains("not a regular file")
        );
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = std::env::temp_dir().join(format!("uiot-config-rel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), "x").unwrap();
        let file = dir.join("uiot.ini");
        std::fs::write(
            &file,
            format!(
                "[device]\nproduct_sn = abc\ndevice_sn = dev1\nproduct_secret = {PROD_SECRET}\nsecret_file = dev.secret\n\
                 [connection]\nca_file = ca.pem\n"
            ),
        )
        .unwrap();
        let c = Config::load(&file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.path, file);
        assert_eq!(c.connection.ca_file, Some(dir.join("ca.pem")));
        assert_eq!(
            c.device.secret,
            SecretSource::ProductSecret {
                product_secret: PROD_SECRET.into(),
                secret_file: dir.join("dev.secret")
            }
        );
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
    }

    #[test]
    fn unknown_sections_and_keys_get_suggestions() {
        let p = problems(&format!(
            "{}[conection]\nkeep_alive = 60\n[serail]\n",
            minimal()
        ));
        assert_eq!(
            p,
            vec![
                "uiot.ini: [conection]: unknown section; did you mean [connection]? known sections: [device], [connection], [limits], [reconnect], [queue]",
                "uiot.ini: [serail]: unknown section; known sections: [device], [connection], [limits], [reconnect], [queue]",
            ]
        );
        assert_eq!(
            one_problem(&with_conn("keepalive = 60")),
            "uiot.ini: [connection] keepalive: unknown key; did you mean keep_alive?"
        );
        assert_eq!(
            one_problem(&with_conn("Connect_Timeout = 5")),
            "uiot.ini: [connection] Connect_Timeout: unknown key; did you mean connect_timeout?"
        );
        assert_eq!(
            one_problem(&with_conn("product_sn = x")),
            "uiot.ini: [connection] product_sn: unknown key; it belongs in [device]"
        );
        let p = one_problem(&with_conn("colour = blue"));
        assert!(
            p.starts_with(
                "uiot.ini: [connection] colour: unknown key; known keys: region, host, port"
            ),
            "{p}"
        );
    }

    #[test]
    fn mistyped_secret_key_does_not_leak() {
        let text =
            format!("[device]\nproduct_sn = P\ndevice_sn = abcd\ndevice_secert = {DEV_SECRET}\n");
        let p = problems(&text);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert_eq!(
            p[0],
            "uiot.ini: [device] device_secert: unknown key; did you mean device_secret?"
        );
        for line in &p {
            assert_no_secret(line);
        }
        let p = problems(&format!("device_secret = {DEV_SECRET}\n{}", minimal()));
        assert_eq!(
            p,
            vec![
                "uiot.ini: device_secret: set outside any section; keys belong under a [section] header: \
                 move it under [device]"
            ]
        );
    }

    #[test]
    fn duplicate_keys() {
        let p = one_problem(&with_conn("keep_alive = 60\nkeep_alive = 90"));
        assert_eq!(
            p,
            "uiot.ini: [connection] keep_alive: given 2 times; keep exactly one line for it"
        );
        // Also when the section header is repeated.
        let p = one_problem(&format!(
            "{}[connection]\nport = 1\n[connection]\nport = 2\n",
            minimal()
        ));
        assert!(
            p.starts_with("uiot.ini: [connection] port: given 2 times"),
            "{p}"
        );
        // A repeated section with different keys is merged.
        let c = ok(&format!(
            "{}[connection]\nport = 1\n[connection]\ntls = off\n",
            minimal()
        ));
        assert_eq!((c.connection.port, c.connection.tls), (1, false));
    }

    #[test]
    fn syntax_errors_keep_line_numbers() {
        let p = one_problem("[device]\nproduct_sn = P\n[connection\nport = 1\n");
        assert!(p.starts_with("uiot.ini: line "), "{p}");
        assert!(p.contains("not closed"), "{p}");
        assert_eq!(
            one_problem("[device] # the device\nproduct_sn = P\n"),
            "uiot.ini: line 1: syntax error: a comment after other text; comments (# or ;) must start at the beginning of a line"
        );
        // A line without `=` is reported with its number, never with its text.
        let p = problems(&format!(
            "{}\n{DEV_SECRET}\n[connection]\nhello\n",
            minimal()
        ));
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(
            p[0].starts_with("uiot.ini: line 6: not `key = value`"),
            "{p:#?}"
        );
        assert!(p[1].starts_with("uiot.ini: line 8: "), "{p:#?}");
        for line in &p {
            assert_no_secret(line);
        }
    }

    #[test]
    fn all_problems_are_collected() {
        let text = "[device]\nproduct_sn = !\n[connection]\nkeep_alive = 1\nport = 0\ntls = perhaps\nprotocol = 4\n";
        let p = problems(text);
        // product_sn, device_sn missing, no secret, keep_alive, port, tls, protocol.
        assert_eq!(p.len(), 7, "{p:#?}");
    }

    #[test]
    fn secrets_never_shown() {
        let c = ok(&minimal());
        let eff = c.effective();
        assert!(eff.contains("device_secret = <hidden>"), "{eff}");
        assert_no_secret(&eff);
        assert_no_secret(&format!("{c:?}"));
        assert_no_secret(&format!("{:#?}", c.device));
        let s = Secret::from(DEV_SECRET);
        assert_eq!(format!("{s} {s:?}"), "<hidden> <hidden>");
        assert_eq!(s.expose(), DEV_SECRET);

        let dynamic = ok(&format!(
            "[device]\nproduct_sn = P\ndevice_sn = abcd\nproduct_secret = {PROD_SECRET}\n"
        ));
        let eff = dynamic.effective();
        assert!(
            eff.contains("product_secret = <hidden>\nsecret_file = /etc/uiot/device.secret\n"),
            "{eff}"
        );
        assert_no_secret(&eff);
        assert_no_secret(&format!("{dynamic:?}"));
    }

    #[test]
    fn effective_shows_every_setting() {
        let eff = ok(&minimal()).effective();
        assert_eq!(
            eff,
            "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = <hidden>\n\
             \n[connection]\nregion = cn-sh2\nhost = mqtt-cn-sh2.iot.ucloud.cn\nport = 8883\ntls = true\n\
             # ca_file is not set: the built-in UIoT Core CA is used\ntls_verify_hostname = true\n\
             keep_alive = 300\nclean_session = true\nprotocol = 3.1.1\nconnect_timeout = 10\nshutdown_timeout = 5\n\n[limits]\nenforce = true\npublish_rate = 30\nbandwidth_kb = 1024\nmax_packet = 262144\nmax_subscriptions = 100\n\n[reconnect]\nenabled = true\nmin = 1\nmax = 60\n\n[queue]\nmax_messages = 1000\nmax_bytes = 4194304\non_full = block\n# dir is not set: the queue is kept in memory only\nfsync = always\n"
        );
        // What `effective()` prints reads back to the same settings (secrets aside).
        let mut c = ok(&minimal());
        let again = ok(&c.effective());
        c.device.secret = SecretSource::DeviceSecret(HIDDEN.into());
        assert_eq!(again, c);
    }

    #[test]
    fn load_reports_unreadable_files() {
        let missing = std::env::temp_dir().join("uiot-config-test-missing.ini");
        let e = Config::load(&missing).unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert!(
            e.problems[0].starts_with(&format!(
                "{}: cannot read the configuration file: ",
                missing.display()
            )),
            "{e}"
        );
        let bin = std::env::temp_dir().join(format!("uiot-config-bin-{}.ini", std::process::id()));
        std::fs::write(&bin, b"[device]\nproduct_sn = \xff\xfe\n").unwrap();
        let e = Config::load(&bin).unwrap_err();
        std::fs::remove_file(&bin).unwrap();
        assert!(
            e.problems[0].contains("not UTF-8 text (bad byte at offset 22)"),
            "{e}"
        );
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
        let text = include_str!("../etc/uiot.ini");
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

    #[test]
    fn suggestions_are_close_names_only() {
        assert_eq!(distance("keepalive", "keep_alive"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(
            suggest("prot", ["port", "protocol"].into_iter()),
            Some("port")
        );
        assert_eq!(suggest("zzzzzz", ["port", "protocol"].into_iter()), None);
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
