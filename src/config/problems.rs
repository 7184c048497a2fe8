//! The problem reporter for everything that is not one key's value: lines
//! that are not INI, syntax errors, unknown or misplaced sections and keys,
//! keys given twice, and the "did you mean" suggestions.
//!
//! Owns: the wording of those problems. Names the user typed are cut with
//! `error::cut`; values are never shown here (a mistyped secret key must not
//! leak its secret).
//! Must not touch: the values of known keys (each section reads its own),
//! the file system.

use ini::Ini;

use super::reader::Key;
use super::SECTIONS;
use crate::error::cut;

/// Lines that are neither empty, a comment, a `[section]` nor `key = value`.
/// rust-ini would silently join such a line to the next key, so they are
/// reported here with their line numbers. Their text is not shown: a pasted
/// secret on a line of its own must not end up in a log.
pub(crate) fn bare_lines(text: &str, name: &str) -> Vec<String> {
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

/// A rust-ini syntax error message turned into what to fix.
pub(crate) fn explain_syntax(msg: &str) -> String {
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
        format!("{}; fix the INI syntax", cut(msg))
    };
    format!("syntax error: {what}")
}

/// Unknown sections and keys, keys outside any section, keys given twice.
pub(crate) fn structure_problems(ini: &Ini, file: &str) -> Vec<String> {
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
                        "{file}: {}: set outside any section; keys belong under a [section] header: {home}",
                        cut(key)
                    ));
                }
            }
            Some(name) => {
                if seen_sections.contains(&name) {
                    continue;
                }
                seen_sections.push(name);
                // [serial.NAME]: another serial bridge, with [serial]'s keys;
                // [ota.NAME]: another firmware module, with [ota]'s keys.
                let base = match name.split_once('.') {
                    Some(("serial", rest)) if !rest.is_empty() => "serial",
                    Some(("ota", rest)) if !rest.is_empty() => "ota",
                    _ => name,
                };
                match SECTIONS.iter().find(|(s, _)| *s == base) {
                    None => {
                        let hint = suggest(name, SECTIONS.iter().map(|(s, _)| *s))
                            .map(|s| format!("did you mean [{s}]? "))
                            .unwrap_or_default();
                        problems.push(format!(
                            "{file}: [{}]: unknown section; {hint}known sections: {}",
                            cut(name),
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
            problems.push(format!(
                "{file}: [{section}] {}: unknown key; {hint}",
                cut(key)
            ));
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

/// Longest name compared for a suggestion: a longer one is no typo of a key.
const SUGGEST_MAX: usize = 64;

/// The known name closest to `name` (case-insensitive edit distance), if close enough.
fn suggest<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    if name.len() > SUGGEST_MAX {
        return None;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::*;

    #[test]
    fn unknown_sections_and_keys_get_suggestions() {
        let p = problems(&format!(
            "{}[conection]\nkeep_alive = 60\n[serail]\n",
            minimal()
        ));
        assert_eq!(
            p,
            vec![
                "uiot.ini: [conection]: unknown section; did you mean [connection]? known sections: [device], [connection], [limits], [reconnect], [queue], [daemon], [subscribe], [hooks], [metrics], [serial], [ota]",
                "uiot.ini: [serail]: unknown section; did you mean [serial]? known sections: [device], [connection], [limits], [reconnect], [queue], [daemon], [subscribe], [hooks], [metrics], [serial], [ota]",
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
    fn long_names_are_cut() {
        let key = "k".repeat(100_000);
        let p = one_problem(&with_conn(&format!("{key} = 1")));
        assert!(p.len() < 400, "{p}");
        assert!(p.contains("... (100000 bytes): unknown key"), "{p}");
        let p = one_problem(&format!("{}[{key}]\n", minimal()));
        assert!(p.len() < 400, "{p}");
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
}
