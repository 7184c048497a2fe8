//! `uiot shadow get | report JSON | delete [KEY...] | reset | watch`: the
//! device shadow from a shell.
//!
//! Owns: the `shadow` subcommand's actions, flags and JSON output.
//! Must not touch: the shadow exchange and its versions
//! (`uiot::platform::shadow` owns them).

use std::time::Instant;

use lexopt::prelude::*;
use serde_json::{json, Value};
use uiot::platform::shadow::{Desired, Document, Shadow};
use uiot::Error;

use crate::cli::{self, Failure};
use crate::service::{self, common_help, Common};

/// Usage of `uiot shadow`.
pub const USAGE: &str = concat!(
    "\
usage: uiot shadow get | report JSON | delete [KEY...] | reset | watch [-C COUNT] [--clear]
                   [-c FILE] [-W SECONDS] [-d]

The device shadow. Each action prints the platform's answer as one JSON line:
  get            the document: {\"State\":{\"Reported\":{..},\"Desired\":{..}},
                 \"Metadata\":{..},\"Timestamp\":..,\"Version\":N}
  report JSON    report these values (a JSON object): {\"Version\":N}
  delete [KEY..] delete these reported keys, or all without KEY: {\"Version\":N}
  reset          reset the version (and reported values): {\"Version\":N}
  watch          print desired values as the cloud sets them, one line each:
                 {\"Desired\":{..},\"Version\":N}; first those already set
A version conflict (100026) is resolved by adopting the cloud's version and
trying once more.

options:
  -W, --timeout SECONDS how long to wait for each reply (default 10); with
                        watch: exit 75 when SECONDS pass before COUNT values
  -C, --count COUNT     watch: exit 0 after COUNT desired values
      --clear           watch: clear the desired values after printing them
                        (the platform keeps them until the device does)
",
    common_help!()
);

/// What `uiot shadow` was asked to do.
enum Action {
    Get,
    Report(Value),
    Delete(Vec<String>),
    Reset,
    Watch { count: Option<u64>, clear: bool },
}

fn parse_args(args: &mut lexopt::Parser) -> Result<(Action, Common), Failure> {
    let mut common = Common::new();
    let mut action = None;
    let mut values: Vec<std::ffi::OsString> = Vec::new();
    let mut count = None;
    let mut clear = false;
    while let Some(arg) = args.next()? {
        if let Some(flag) = Common::flag(&arg) {
            common.set(flag, args)?;
            continue;
        }
        match arg {
            Short('C') | Long("count") => {
                count = Some(cli::parse_count(args.value()?, "-C", u64::from(u32::MAX))?)
            }
            Long("clear") => clear = true,
            Value(v) if action.is_none() => action = Some(v.string()?),
            Value(v) => values.push(v),
            other => return Err(other.unexpected().into()),
        }
    }
    let Some(name) = action else {
        return Err(Failure::Usage(
            "missing action: get, report, delete, reset or watch".into(),
        ));
    };
    let only_watch = count.is_some() || clear;
    let action = match (name.as_str(), values.len()) {
        ("get", 0) => Action::Get,
        ("report", 1) => {
            let json = values.pop().unwrap_or_default();
            Action::Report(service::object_arg(json, "report JSON")?)
        }
        ("report", _) => {
            return Err(Failure::Usage(
                "report takes one JSON object, e.g. '{\"temperature\":21}'".into(),
            ))
        }
        ("delete", _) => Action::Delete(
            values
                .into_iter()
                .map(|v| v.into_string())
                .collect::<Result<_, _>>()
                .map_err(|_| Failure::Usage("delete: a KEY is not valid UTF-8".into()))?,
        ),
        ("reset", 0) => Action::Reset,
        ("watch", 0) => Action::Watch { count, clear },
        ("get" | "reset" | "watch", _) => {
            return Err(Failure::Usage(format!("{name} takes no argument")))
        }
        (other, _) => {
            return Err(Failure::Usage(format!(
                "unknown action {}: use get, report, delete, reset or watch",
                cli::quote(other)
            )))
        }
    };
    if only_watch && !matches!(action, Action::Watch { .. }) {
        return Err(Failure::Usage("-C and --clear go with watch only".into()));
    }
    Ok((action, common))
}

/// Runs `uiot shadow`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let (action, common) = parse_args(args)?;
    service::with_client(&common, |client| {
        let shadow = Shadow::with_timeout(client, common.reply_timeout())?;
        let version = |v: u32| service::print_json(&json!({ "Version": v }));
        match action {
            Action::Get => service::print_json(&document(&shadow.get()?)),
            Action::Report(values) => version(shadow.report(&values)?),
            Action::Delete(keys) if keys.is_empty() => version(shadow.delete_all()?),
            Action::Delete(keys) => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                version(shadow.delete(&keys)?)
            }
            Action::Reset => version(shadow.reset(None)?),
            Action::Watch { count, clear } => watch(&shadow, &common, count, clear),
        }
    })
}

/// The document in the platform's shape.
fn document(d: &Document) -> Value {
    json!({
        "State": {"Reported": d.reported, "Desired": d.desired},
        "Metadata": d.metadata,
        "Timestamp": d.timestamp,
        "Version": d.version,
    })
}

fn watch(shadow: &Shadow, common: &Common, count: Option<u64>, clear: bool) -> Result<(), Failure> {
    let deadline = common.deadline()?;
    let mut seen = 0u64;
    // Values set while the device was offline are in the document.
    let doc = shadow.get()?;
    if !doc.desired.is_empty() {
        show(
            shadow,
            clear,
            Desired {
                state: doc.desired,
                version: doc.version,
            },
        )?;
        seen = 1;
    }
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        let next = match deadline {
            None => shadow.desired().next(),
            Some(d) => shadow.desired_timeout(d.saturating_duration_since(Instant::now())),
        };
        match next {
            Some(d) => {
                show(shadow, clear, d)?;
                seen = seen.saturating_add(1);
            }
            None if deadline.is_some() => {
                return Err(Failure::Uiot(Error::Timeout(format!(
                    "-W {}: {seen} desired value(s) arrived",
                    common.timeout.map_or(0, |t| t.as_secs())
                ))))
            }
            None => {
                return Err(Failure::Uiot(Error::Disconnected(
                    "the client closed while watching the shadow".into(),
                )))
            }
        }
    }
}

/// Prints one desired change, then clears it in the shadow if asked to.
fn show(shadow: &Shadow, clear: bool, d: Desired) -> Result<(), Failure> {
    service::print_json(&json!({ "Desired": d.state, "Version": d.version }))?;
    if clear {
        shadow.clear_desired(None)?;
    }
    Ok(())
}
