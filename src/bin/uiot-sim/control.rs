//! The stdin line protocol of `uiot-sim`: one command a line, words
//! separated by spaces, a JSON value or payload last (it may hold spaces).
//!
//! Owns: turning a line into a [`Line`], or an error that says what the
//! line should look like. Must not touch: what a command does (`cloud`).

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::fw::{Mode, MODES};
use crate::ota::Push;
use crate::state::Dev;

/// One command from stdin.
#[derive(Debug)]
pub enum Line {
    /// Shadow desired values (a null value deletes that key).
    Desired(Dev, Map<String, Value>),
    /// A thing model property set.
    Set(Dev, Map<String, Value>),
    /// A thing model command: RequestID (chosen by the sim when `None`),
    /// Identifier, Input.
    Command(Dev, Option<String>, String, Map<String, Value>),
    /// Thing model desired values to cache.
    ThingDesired(Dev, Map<String, Value>),
    /// A product's thing model template.
    Template(String, Value),
    /// A product broadcast: PSN, the topic after `$broadcast/`, payload.
    Broadcast(String, String, String),
    /// A publish as it is: topic, payload.
    Raw(String, String),
    /// Print what the cloud keeps for a device.
    State(Dev),
    /// A device's secret, for checking HTTP signatures.
    Secret(Dev, String),
    /// Expire every HTTP token issued so far.
    ExpireTokens,
    /// Push a firmware file to a device.
    OtaPush(Dev, Push),
    /// Cancel an upgrade: module, version.
    OtaCancel(Dev, String, String),
    /// Print the OTA reports of a device.
    OtaLog(Dev),
    /// Disconnect and exit.
    Quit,
}

const FORMS: &str = "desired PSN DSN JSON | set PSN DSN JSON | command PSN DSN ID JSON | \
    command-id PSN DSN REQID ID JSON | tdesired PSN DSN JSON | template PSN JSON | \
    broadcast PSN REST PAYLOAD | raw TOPIC PAYLOAD | state PSN DSN | secret PSN DSN SECRET | \
    expire-tokens | ota push PSN DSN MODULE VERSION FILE [MODE] | \
    ota cancel PSN DSN MODULE VERSION | ota log PSN DSN | quit";

/// The command on `line`; `Ok(None)` for an empty line or a `#` comment.
pub fn parse(line: &str) -> Result<Option<Line>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (verb, rest) = word(line);
    let parsed = match verb {
        "desired" => device_object(rest, "desired").map(|(d, m)| Line::Desired(d, m)),
        "set" => device_object(rest, "set").map(|(d, m)| Line::Set(d, m)),
        "tdesired" => device_object(rest, "tdesired").map(|(d, m)| Line::ThingDesired(d, m)),
        "command" => {
            let (dev, rest) = device(rest, "command")?;
            let (id, rest) = word(rest);
            let input = object(rest, "command")?;
            identifier(id).map(|id| Line::Command(dev, None, id, input))
        }
        "command-id" => {
            let (dev, rest) = device(rest, "command-id")?;
            let (req, rest) = word(rest);
            let (id, rest) = word(rest);
            if req.is_empty() {
                return Err(
                    "command-id needs a RequestID: command-id PSN DSN REQID ID JSON".into(),
                );
            }
            let input = object(rest, "command-id")?;
            identifier(id).map(|id| Line::Command(dev, Some(req.into()), id, input))
        }
        "template" => {
            let (psn, rest) = word(rest);
            name(psn, "ProductSN")?;
            json(rest, "template").map(|t| Line::Template(psn.into(), t))
        }
        "broadcast" => {
            let (psn, rest) = word(rest);
            let (sub, payload) = word(rest);
            name(psn, "ProductSN")?;
            if sub.is_empty() || sub.contains(['+', '#']) {
                return Err("broadcast needs the rest of the topic without wildcards: \
                            broadcast PSN REST PAYLOAD"
                    .into());
            }
            Ok(Line::Broadcast(psn.into(), sub.into(), payload.into()))
        }
        "raw" => {
            let (topic, payload) = word(rest);
            if topic.is_empty() || topic.contains(['+', '#']) {
                return Err("raw needs a topic without wildcards: raw TOPIC PAYLOAD".into());
            }
            Ok(Line::Raw(topic.into(), payload.into()))
        }
        "state" => {
            let (dev, rest) = device(rest, "state")?;
            if !rest.is_empty() {
                return Err("state takes only PSN DSN".into());
            }
            Ok(Line::State(dev))
        }
        "secret" => {
            let (dev, rest) = device(rest, "secret")?;
            let (secret, rest) = word(rest);
            if secret.is_empty() || !rest.is_empty() {
                return Err("secret takes PSN DSN SECRET".into());
            }
            Ok(Line::Secret(dev, secret.into()))
        }
        "expire-tokens" => {
            if !rest.is_empty() {
                return Err("expire-tokens takes nothing more".into());
            }
            Ok(Line::ExpireTokens)
        }
        "ota" => ota(rest),
        "quit" | "exit" => Ok(Line::Quit),
        _ => Err(format!(
            "unknown command {:?}; one of: {FORMS}",
            uiot::cut(verb)
        )),
    };
    parsed.map(Some)
}

/// `ota push|cancel|log ...`.
fn ota(s: &str) -> Result<Line, String> {
    let (what, rest) = word(s);
    let (dev, rest) = match what {
        "push" | "cancel" | "log" => device(rest, &format!("ota {what}"))?,
        _ => {
            return Err(format!(
                "ota {:?}: one of ota push PSN DSN MODULE VERSION FILE [MODE], \
                 ota cancel PSN DSN MODULE VERSION, ota log PSN DSN",
                uiot::cut(what)
            ))
        }
    };
    let (module, rest) = word(rest);
    let (version, rest) = word(rest);
    let forms = |w: &str| match w {
        "push" => "ota push PSN DSN MODULE VERSION FILE [MODE]",
        "cancel" => "ota cancel PSN DSN MODULE VERSION",
        _ => "ota log PSN DSN",
    };
    if what == "log" {
        if !module.is_empty() {
            return Err(format!("{} takes nothing more", forms(what)));
        }
        return Ok(Line::OtaLog(dev));
    }
    if module.is_empty() || version.is_empty() {
        return Err(format!("MODULE and VERSION are missing: {}", forms(what)));
    }
    let (module, version) = (module.to_string(), version.to_string());
    if what == "cancel" {
        if !rest.is_empty() {
            return Err(format!("{} takes nothing more", forms(what)));
        }
        return Ok(Line::OtaCancel(dev, module, version));
    }
    let (file, rest) = word(rest);
    let (mode, rest) = word(rest);
    if file.is_empty() {
        return Err(format!("FILE is missing: {}", forms(what)));
    }
    if !rest.is_empty() {
        return Err(format!("{} takes nothing more", forms(what)));
    }
    let mode = if mode.is_empty() {
        Mode::Ok
    } else {
        Mode::parse(mode)
            .ok_or_else(|| format!("MODE {:?} is not one of {MODES}", uiot::cut(mode)))?
    };
    Ok(Line::OtaPush(
        dev,
        Push {
            module,
            version,
            file: PathBuf::from(file),
            mode,
        },
    ))
}

/// The first word and the rest (leading spaces removed).
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (
            s.get(..i).unwrap_or(s),
            s.get(i..).unwrap_or("").trim_start(),
        ),
        None => (s, ""),
    }
}

fn name(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is missing; the forms are: {FORMS}"));
    }
    if s.contains(['/', '+', '#']) {
        return Err(format!(
            "{what} {:?} may not contain '/', '+' or '#'",
            uiot::cut(s)
        ));
    }
    Ok(())
}

fn identifier(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['/', '+', '#']) {
        return Err(format!(
            "command identifier {:?} is empty or has '/', '+' or '#'",
            s
        ));
    }
    Ok(s.into())
}

fn device<'a>(s: &'a str, verb: &str) -> Result<(Dev, &'a str), String> {
    let (psn, rest) = word(s);
    let (dsn, rest) = word(rest);
    name(psn, &format!("{verb}: ProductSN"))?;
    name(dsn, &format!("{verb}: DeviceSN"))?;
    Ok((Dev::new(psn, dsn), rest))
}

fn device_object(s: &str, verb: &str) -> Result<(Dev, Map<String, Value>), String> {
    let (dev, rest) = device(s, verb)?;
    object(rest, verb).map(|m| (dev, m))
}

fn json(s: &str, verb: &str) -> Result<Value, String> {
    if s.is_empty() {
        return Err(format!("{verb} needs JSON at the end of the line"));
    }
    serde_json::from_str(s).map_err(|e| format!("{verb}: not JSON ({e}): {}", uiot::cut(s)))
}

fn object(s: &str, verb: &str) -> Result<Map<String, Value>, String> {
    match json(s, verb)? {
        Value::Object(m) => Ok(m),
        _ => Err(format!(
            "{verb} needs a JSON object, e.g. {{\"temperature\":20}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn lines_parse_with_json_that_has_spaces() {
        match parse("desired p d {\"a\": 1, \"b\": null}").unwrap() {
            Some(Line::Desired(d, m)) => {
                assert_eq!(d.key(), "p.d");
                assert_eq!(m.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        match parse("command-id p d 42 set_temp {\"x\": 1}").unwrap() {
            Some(Line::Command(_, Some(r), id, _)) => {
                assert_eq!((r.as_str(), id.as_str()), ("42", "set_temp"))
            }
            other => panic!("{other:?}"),
        }
        assert!(parse("  # comment").unwrap().is_none());
        assert!(matches!(parse("quit").unwrap(), Some(Line::Quit)));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(parse("frobnicate").unwrap_err().contains("unknown command"));
        assert!(parse("desired p d [1]")
            .unwrap_err()
            .contains("JSON object"));
        assert!(parse("desired p d {").unwrap_err().contains("not JSON"));
        assert!(parse("set p/x d {}")
            .unwrap_err()
            .contains("may not contain"));
        assert!(parse("desired p")
            .unwrap_err()
            .contains("DeviceSN is missing"));
        assert!(parse("raw a/# x").unwrap_err().contains("wildcards"));
        assert!(parse("ota push p d m").unwrap_err().contains("VERSION"));
        assert!(parse("ota push p d m 1").unwrap_err().contains("FILE"));
        assert!(parse("ota push p d m 1 f fast")
            .unwrap_err()
            .contains("not one of"));
        assert!(parse("ota frob p d").unwrap_err().contains("ota push"));
        assert!(parse("ota log p d x").unwrap_err().contains("nothing more"));
        assert!(parse("secret p d").unwrap_err().contains("SECRET"));
        assert!(parse("expire-tokens now")
            .unwrap_err()
            .contains("nothing more"));
    }

    #[test]
    fn ota_lines_parse() {
        match parse("ota push p d default 2.0.0 /tmp/fw.bin cut").unwrap() {
            Some(Line::OtaPush(d, p)) => {
                assert_eq!(d.key(), "p.d");
                assert_eq!(
                    (p.module.as_str(), p.version.as_str()),
                    ("default", "2.0.0")
                );
                assert_eq!((p.file.to_str(), p.mode), (Some("/tmp/fw.bin"), Mode::Cut));
            }
            other => panic!("{other:?}"),
        }
        match parse("ota push p d m v f").unwrap() {
            Some(Line::OtaPush(_, p)) => assert_eq!(p.mode, Mode::Ok),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("ota cancel p d m v").unwrap(),
            Some(Line::OtaCancel(_, m, v)) if m == "m" && v == "v"
        ));
        assert!(matches!(
            parse("ota log p d").unwrap(),
            Some(Line::OtaLog(_))
        ));
        assert!(matches!(
            parse("secret p d s3cr3t").unwrap(),
            Some(Line::Secret(_, s)) if s == "s3cr3t"
        ));
        assert!(matches!(
            parse("expire-tokens").unwrap(),
            Some(Line::ExpireTokens)
        ));
    }
}
