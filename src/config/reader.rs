//! The framework every section is read with: the [`Section`] trait, the
//! per-key [`Reader`] that parses values and records problems with their full
//! context, and the shared [`Ctx`] of one file.
//!
//! Owns: how a problem about a key is worded (`file: [section] key = value:
//! fix`, the value cut with `error::cut` and masked for secrets), parsing of
//! the value shapes all sections share (booleans, bounded numbers, whole
//! seconds, paths), and recording warnings.
//! Must not touch: the rules of any one section, the file system (beyond
//! resolving a path), the INI syntax.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ini::Ini;

use super::effective::Writer;
use super::secret::HIDDEN;
use crate::error::cut;

/// How a key's value is shown in a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shown {
    /// Cut with `error::cut`.
    Cut,
    /// Never shown: `<hidden>`.
    Secret,
    /// A path: shown whole up to [`PATH_MAX`] bytes (the user must see
    /// which file is meant), cut beyond.
    Path,
}

/// Longest path Linux accepts, in bytes; a longer value is cut when shown.
pub(crate) const PATH_MAX: usize = 4096;

/// One key of a section: its name and how its value is shown.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key {
    pub(crate) name: &'static str,
    pub(crate) shown: Shown,
}

impl Key {
    pub(crate) const fn plain(name: &'static str) -> Key {
        Key {
            name,
            shown: Shown::Cut,
        }
    }
    pub(crate) const fn secret(name: &'static str) -> Key {
        Key {
            name,
            shown: Shown::Secret,
        }
    }
    pub(crate) const fn path(name: &'static str) -> Key {
        Key {
            name,
            shown: Shown::Path,
        }
    }
}

/// One `[section]` of the file: its name, its keys, how it is read (with
/// defaults and validation) and how it is rendered by `effective()`.
pub(crate) trait Section: Sized {
    /// The name between the brackets.
    const NAME: &'static str;
    /// Every key the section accepts; anything else is reported as unknown.
    const KEYS: &'static [Key];
    /// Reads and validates the section; `None` when a problem was recorded.
    fn read(r: &mut Reader<'_, '_>) -> Option<Self>;
    /// Reads it from the file (one section named [`Section::NAME`]; a
    /// section that may come several times, `[NAME.x]`, overrides this).
    fn read_all(ctx: &mut Ctx<'_>) -> Option<Self> {
        ctx.read::<Self>()
    }
    /// Writes it into `effective()` (a header and [`Section::write`]).
    fn write_all(&self, w: &mut Writer) {
        w.section(self);
    }
    /// Writes every setting, defaults filled in and secrets masked.
    fn write(&self, w: &mut Writer);
}

/// Shared state while reading one file.
pub(crate) struct Ctx<'a> {
    /// The file's name, starting every problem.
    pub(crate) file: &'a str,
    /// The directory relative paths are taken from.
    pub(crate) base: Option<&'a Path>,
    pub(crate) ini: &'a Ini,
    pub(crate) problems: Vec<String>,
    /// Things that do not stop the file from loading but should be fixed.
    pub(crate) warnings: Vec<String>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn read<S: Section>(&mut self) -> Option<S> {
        self.read_named(S::NAME, S::KEYS, S::read)
    }

    /// Reads the section called `name` (e.g. `serial.gps`) with `keys` and `read`.
    pub(crate) fn read_named<T>(
        &mut self,
        name: &'a str,
        keys: &'static [Key],
        read: impl FnOnce(&mut Reader<'_, 'a>) -> Option<T>,
    ) -> Option<T> {
        let values: Vec<(&'a str, &'a str)> = self
            .ini
            .section_all(Some(name))
            .flat_map(|p| p.iter())
            .collect();
        let mut r = Reader {
            ctx: self,
            section: name,
            keys,
            values,
        };
        read(&mut r)
    }

    /// The names of the file's sections, in file order, each once.
    pub(crate) fn section_names(&self) -> Vec<&'a str> {
        let mut names: Vec<&'a str> = Vec::new();
        for n in self.ini.sections().flatten() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }
}

/// The outcome of looking up one key.
pub(crate) enum Got<T> {
    /// The key is not in the file.
    Absent,
    /// The key is there and its value is valid.
    Valid(T),
    /// The key is there and a problem was recorded.
    Invalid,
}

impl<T> Got<T> {
    pub(crate) fn or(self, default: T) -> Option<T> {
        match self {
            Got::Absent => Some(default),
            Got::Valid(v) => Some(v),
            Got::Invalid => None,
        }
    }
    pub(crate) fn is_present(&self) -> bool {
        !matches!(self, Got::Absent)
    }
    /// `Some(None)` when absent, `Some(Some(v))` when valid, `None` when invalid.
    pub(crate) fn optional(self) -> Option<Option<T>> {
        match self {
            Got::Absent => Some(None),
            Got::Valid(v) => Some(Some(v)),
            Got::Invalid => None,
        }
    }
}

/// Reads the keys of one section and records problems with full context.
pub(crate) struct Reader<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    section: &'a str,
    keys: &'static [Key],
    values: Vec<(&'a str, &'a str)>,
}

/// How a value is quoted in a problem: cut to a readable length, `Debug`
/// form when empty or holding control characters.
pub(crate) fn shown(value: &str) -> String {
    let short = cut(value);
    if value.is_empty() || value.chars().any(char::is_control) {
        format!("{short:?}")
    } else {
        short.into_owned()
    }
}

impl<'a> Reader<'_, 'a> {
    fn raw(&self, key: &str) -> Option<&'a str> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn shown_as(&self, key: &str) -> Shown {
        self.keys
            .iter()
            .find(|k| k.name == key)
            .map_or(Shown::Cut, |k| k.shown)
    }

    /// `value` of `key` as a problem shows it.
    fn show(&self, key: &str, value: &str) -> String {
        match self.shown_as(key) {
            Shown::Secret => HIDDEN.to_string(),
            Shown::Path if value.len() <= PATH_MAX && !value.is_empty() => {
                if value.chars().any(char::is_control) {
                    format!("{value:?}")
                } else {
                    value.to_string()
                }
            }
            Shown::Path | Shown::Cut => shown(value),
        }
    }

    /// Records `file: [section] key = value: fix` (the value cut, masked for secrets).
    pub(crate) fn bad(&mut self, key: &str, value: &str, fix: &str) {
        let value_shown = self.show(key, value);
        let comment = if value.contains(" #") || value.contains(" ;") {
            " (a comment must be on a line of its own)"
        } else {
            ""
        };
        let (file, section) = (self.ctx.file, self.section);
        self.ctx.problems.push(format!(
            "{file}: [{section}] {key} = {value_shown}: {fix}{comment}"
        ));
    }

    /// Records a problem about the section or a combination of keys.
    pub(crate) fn problem(&mut self, keys: &str, msg: &str) {
        let (file, section) = (self.ctx.file, self.section);
        self.ctx
            .problems
            .push(format!("{file}: [{section}] {keys}: {msg}"));
    }

    /// Records a warning about `key`, which holds `value` (never a secret).
    pub(crate) fn warn(&mut self, key: &str, value: &str, msg: &str) {
        let (file, section) = (self.ctx.file, self.section);
        let value = self.show(key, value);
        self.ctx
            .warnings
            .push(format!("{file}: [{section}] {key} = {value}: {msg}"));
    }

    /// Looks `key` up and parses it; a parse error (the fix) is recorded.
    pub(crate) fn value<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Got<T> {
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
    pub(crate) fn required<T>(
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

    pub(crate) fn bool(&mut self, key: &str, default: bool) -> Option<bool> {
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
    pub(crate) fn number<T>(
        &mut self,
        key: &str,
        default: T,
        min: T,
        max: T,
        what: &str,
    ) -> Option<T>
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

    /// A whole number of seconds within `range` (the library's range for
    /// the option, in whole seconds); `what` follows "seconds".
    pub(crate) fn seconds(
        &mut self,
        key: &str,
        default: Duration,
        range: &RangeInclusive<Duration>,
        what: &str,
    ) -> Option<Duration> {
        let (min, max) = whole_seconds(range);
        let what = if what.is_empty() {
            "seconds".to_string()
        } else {
            format!("seconds {what}")
        };
        self.number(key, default.as_secs(), min, max, &what)
            .map(Duration::from_secs)
    }

    /// A path, relative to the configuration file's directory.
    pub(crate) fn path(&mut self, key: &str, fix: &str) -> Got<PathBuf> {
        let base = self.ctx.base;
        self.value(key, |v| {
            if v.is_empty() {
                return Err(format!("is empty; {fix}"));
            }
            Ok(match base {
                Some(dir) if Path::new(v).is_relative() => dir.join(v),
                _ => PathBuf::from(v),
            })
        })
    }

    /// The raw text of `key`, for a problem about a value already parsed.
    pub(crate) fn text(&self, key: &str) -> &'a str {
        self.raw(key).unwrap_or_default()
    }
}

/// The whole seconds inside `range`: its start rounded up, its end down.
pub(crate) fn whole_seconds(range: &RangeInclusive<Duration>) -> (u64, u64) {
    let start = range.start();
    let min = start.as_secs() + u64::from(start.subsec_nanos() > 0);
    (min, range.end().as_secs())
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::*;

    #[test]
    fn whole_seconds_round_inwards() {
        let r = Duration::from_millis(1)..=Duration::from_secs(300);
        assert_eq!(whole_seconds(&r), (1, 300));
        let r = Duration::ZERO..=Duration::from_millis(3_600_500);
        assert_eq!(whole_seconds(&r), (0, 3600));
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
    fn a_quoted_value_is_cut_in_the_problem() {
        // A 1 MB value gives a short line that still says what to fix.
        let huge = "x".repeat(1_000_000);
        let p = one_problem(&with_conn(&format!("region = {huge}")));
        assert!(p.len() < 400, "{} bytes: {}", p.len(), &p[..200]);
        assert!(
            p.starts_with(&format!(
                "uiot.ini: [connection] region = {}... (1000000 bytes): unknown region",
                "x".repeat(64)
            )),
            "{}",
            &p[..200]
        );
        // A path is shown whole while the system could open it, cut beyond.
        let long = format!("/nonexistent/{}", "d".repeat(200));
        let p = one_problem(&with_conn(&format!("ca_file = {long}")));
        assert!(
            p.starts_with(&format!("uiot.ini: [connection] ca_file = {long}: ")),
            "{p}"
        );
        let huge = format!("/{}", "d".repeat(100_000));
        let p = one_problem(&with_conn(&format!("ca_file = {huge}")));
        assert!(p.len() < 1000, "{} bytes", p.len());
        assert!(p.contains("... (100001 bytes): cannot be read ("), "{p}");
        // Control characters are escaped, the cut text too.
        assert_eq!(shown("a\u{7}b"), "\"a\\u{7}b\"");
        assert_eq!(shown(""), "\"\"");
    }
}
