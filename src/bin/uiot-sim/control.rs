//! The stdin line protocol of `uiot-sim`: one command a line, words
//! separated by spaces, a JSON value or payload last (it may hold spaces).
//!
//! Owns: turning a line into a [`Line`], or an error that says what the
//! line should look like. Must not touch: what a command does (`cloud`).

use serde_json::{Map, Value};

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
    /// Disconnect and exit.
    Quit,
}

const FORMS: &str = "desired PSN DSN JSON | set PSN DSN JSON | command PSN DSN ID JSON | \
    command-id PSN DSN REQID ID JSON | tdesired PSN DSN JSON | template PSN JSON | \
    broadcast PSN REST PAYLOAD | raw TOPIC PAYLOAD | state PSN DSN | quit";

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
        "quit" | "exit" => Ok(Line::Quit),
        _ => Err(format!(
            "unknown command {:?}; one of: {FORMS}",
            uiot::cut(verb)
        )),
    };
    parsed.map(Some)
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
    }
}
