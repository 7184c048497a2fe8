//! `uiot command wait [-C COUNT] [--reply JSON]`: answer the thing model's
//! commands from a shell script.
//!
//! Owns: the `command` subcommand: printing each command, reading its
//! answer from standard input (or `--reply`), the answer line's format.
//! Must not touch: the reply topic and its limits (`uiot::platform::thing`
//! checks them; a command dropped unanswered is answered there).

use std::io::BufRead;
use std::time::Instant;

use lexopt::prelude::*;
use serde_json::{json, Map, Value};
use uiot::platform::thing::{Command, Thing, ThingEvent};
use uiot::Error;

use crate::cli::{self, Failure};
use crate::service::{self, common_help, Common};

/// Usage of `uiot command`.
pub const USAGE: &str = concat!(
    "\
usage: uiot command wait [-C COUNT] [--reply JSON] [-c FILE] [-W SECONDS] [-d]

Waits for the cloud's commands and prints each as one JSON line:
{\"RequestID\":\"..\",\"Identifier\":\"..\",\"Input\":{..}}. Then answers it with
--reply JSON (the same output every time, RetCode 0), or else with the next
line read from standard input, one of:
  JSON        the command's output parameters (a JSON object), RetCode 0
  CODE JSON   a RetCode (0: done) and the output, e.g. '1 {\"reason\":\"busy\"}'
  CODE        a RetCode and no output
The end of standard input stops the command; a command still waiting then is
answered with RetCode 130 (unanswered). Property sets are not commands: they
are answered with 130 and logged. A command whose reply topic would exceed
the platform's 128 bytes cannot be answered; it is printed with
\"CanReply\":false and skipped.

options:
  -C, --count COUNT     exit 0 after answering COUNT commands
  -W, --timeout SECONDS exit 75 when SECONDS pass before COUNT commands
                        (without -C: when SECONDS pass)
      --reply JSON      answer every command with this output
",
    common_help!()
);

struct Args {
    common: Common,
    count: Option<u64>,
    reply: Option<Map<String, Value>>,
}

fn parse_args(args: &mut lexopt::Parser) -> Result<Args, Failure> {
    let mut a = Args {
        common: Common::new(),
        count: None,
        reply: None,
    };
    let mut action = None;
    while let Some(arg) = args.next()? {
        if let Some(flag) = Common::flag(&arg) {
            a.common.set(flag, args)?;
            continue;
        }
        match arg {
            Short('C') | Long("count") => {
                a.count = Some(cli::parse_count(args.value()?, "-C", u64::from(u32::MAX))?)
            }
            Long("reply") => match service::object_arg(args.value()?, "--reply")? {
                Value::Object(m) => a.reply = Some(m),
                _ => return Err(Failure::Usage("--reply must be a JSON object".into())),
            },
            Value(v) if action.is_none() => action = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    match action.as_deref() {
        Some("wait") => Ok(a),
        Some(other) => Err(Failure::Usage(format!(
            "unknown action {}: the only action is wait",
            cli::quote(other)
        ))),
        None => Err(Failure::Usage("missing action: wait".into())),
    }
}

/// Runs `uiot command`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let a = parse_args(args)?;
    service::with_client(&a.common, |client| serve(&Thing::new(client)?, &a))
}

fn serve(thing: &Thing, a: &Args) -> Result<(), Failure> {
    let deadline = a.common.deadline()?;
    let mut stdin = std::io::stdin().lock();
    let mut answered = 0u64;
    while a.count.is_none_or(|c| answered < c) {
        let event = match deadline {
            None => thing.recv(),
            Some(d) => thing.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        let command = match event {
            Some(ThingEvent::Command(c)) => c,
            Some(ThingEvent::PropertySet(s)) => {
                log::warn!(
                    "property set {} is not a command: answered with RetCode 130 \
                     (use the library's Thing to apply property sets)",
                    cli::quote(&s.request_id)
                );
                continue;
            }
            Some(_) => continue,
            None if deadline.is_some() => {
                return Err(Failure::Uiot(Error::Timeout(format!(
                    "-W {}: {answered} command(s) answered",
                    a.common.timeout.map_or(0, |t| t.as_secs())
                ))))
            }
            None => {
                return Err(Failure::Uiot(Error::Disconnected(
                    "the client closed while waiting for commands".into(),
                )))
            }
        };
        let can_reply = command.can_reply();
        let mut shown = json!({
            "RequestID": command.request_id,
            "Identifier": command.identifier,
            "Input": command.input,
        });
        if !can_reply {
            if let Some(o) = shown.as_object_mut() {
                o.insert("CanReply".into(), false.into());
            }
        }
        service::print_json(&shown)?;
        if !can_reply {
            log::error!(
                "command {}: its reply topic would exceed 128 bytes; not answered",
                cli::quote(&command.request_id)
            );
            continue;
        }
        let (code, output) = match &a.reply {
            Some(out) => (0, Value::Object(out.clone())),
            None => match read_answer(&mut stdin, &command)? {
                Some(answer) => answer,
                None => return Ok(()),
            },
        };
        command.reply(code, &output)?;
        answered = answered.saturating_add(1);
    }
    Ok(())
}

/// The next answer line from standard input; `None` at its end.
fn read_answer(
    stdin: &mut impl BufRead,
    command: &Command,
) -> Result<Option<(i64, Value)>, Failure> {
    let mut line = String::new();
    let n = stdin.read_line(&mut line).map_err(|source| Error::Io {
        context: "reading the command's answer from standard input".into(),
        source,
    })?;
    if n == 0 {
        log::warn!(
            "standard input ended: command {} answered with RetCode 130",
            cli::quote(&command.request_id)
        );
        return Ok(None);
    }
    parse_answer(&line).map(Some).map_err(|problem| {
        Failure::Data(format!(
            "answer line {}: {problem}; write JSON, CODE JSON or CODE \
             (command {} answered with RetCode 130)",
            cli::quote(line.trim_end()),
            cli::quote(&command.request_id)
        ))
    })
}

/// `JSON`, `CODE JSON` or `CODE` (an empty line is RetCode 0, no output).
fn parse_answer(line: &str) -> Result<(i64, Value), String> {
    let line = line.trim();
    let (code, rest) = match line.split_once(char::is_whitespace) {
        Some((first, rest)) if first.parse::<i64>().is_ok() => (first, rest.trim()),
        _ if line.parse::<i64>().is_ok() => (line, ""),
        _ => ("0", line),
    };
    let code: i64 = code.parse().map_err(|_| "bad RetCode".to_string())?;
    if rest.is_empty() {
        return Ok((code, Value::Object(Map::new())));
    }
    match serde_json::from_str::<Value>(rest) {
        Ok(v @ Value::Object(_)) => Ok((code, v)),
        Ok(other) => Err(format!("the output must be a JSON object, not {other}")),
        Err(e) => Err(format!("not JSON ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_lines_are_json_code_json_or_code() {
        assert_eq!(parse_answer("{\"a\":1}\n").unwrap(), (0, json!({"a":1})));
        assert_eq!(parse_answer("1 {\"a\":1}").unwrap(), (1, json!({"a":1})));
        assert_eq!(parse_answer("130\n").unwrap(), (130, json!({})));
        assert_eq!(parse_answer("\n").unwrap(), (0, json!({})));
        assert!(parse_answer("[1]").is_err());
        assert!(parse_answer("0 nope").is_err());
        assert!(parse_answer("hello").is_err());
    }
}
