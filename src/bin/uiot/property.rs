//! `uiot property post JSON | desired [--delete] [KEY...] | restore |
//! template`: the thing model's properties from a shell.
//!
//! Owns: the `property` subcommand's actions, flags and JSON output.
//! Must not touch: the thing-model exchange (`uiot::platform::thing`).

use lexopt::prelude::*;
use serde_json::{json, Map, Value};
use uiot::platform::thing::Thing;

use crate::cli::{self, Failure};
use crate::service::{self, common_help, Common};

/// Usage of `uiot property`.
pub const USAGE: &str = concat!(
    "\
usage: uiot property post JSON | desired [--delete] [KEY...] | restore | template
                     [-c FILE] [-W SECONDS] [-d]

The thing model's properties. Each action prints one JSON line:
  post JSON         report property values, a JSON object such as
                    '{\"temperature\":21,\"power\":1}' (each sent as {\"Value\":..}):
                    {\"RetCode\":0}
  desired [KEY...]  the cloud's cached desired values of these properties
                    (all without KEY): {\"Desired\":{\"KEY\":{\"Value\":..,\"Version\":N}}}
  desired --delete KEY...
                    delete these desired values after applying them (each
                    with the version it has now; one set since is kept):
                    {\"Deleted\":{\"KEY\":{\"Version\":N}}}
  restore           the last saved values: {\"Property\":{\"KEY\":value}}
  template          the product's thing model: {\"Template\":{..}}

options:
  -W, --timeout SECONDS how long to wait for each reply (default 10)
      --delete          see desired above
",
    common_help!()
);

/// What `uiot property` was asked to do.
enum Action {
    Post(Value),
    Desired(Vec<String>),
    DeleteDesired(Vec<String>),
    Restore,
    Template,
}

fn parse_args(args: &mut lexopt::Parser) -> Result<(Action, Common), Failure> {
    let mut common = Common::new();
    let mut action = None;
    let mut values: Vec<std::ffi::OsString> = Vec::new();
    let mut delete = false;
    while let Some(arg) = args.next()? {
        if let Some(flag) = Common::flag(&arg) {
            common.set(flag, args)?;
            continue;
        }
        match arg {
            Long("delete") => delete = true,
            Value(v) if action.is_none() => action = Some(v.string()?),
            Value(v) => values.push(v),
            other => return Err(other.unexpected().into()),
        }
    }
    let Some(name) = action else {
        return Err(Failure::Usage(
            "missing action: post, desired, restore or template".into(),
        ));
    };
    let keys = |values: Vec<std::ffi::OsString>| -> Result<Vec<String>, Failure> {
        values
            .into_iter()
            .map(|v| v.into_string())
            .collect::<Result<_, _>>()
            .map_err(|_| Failure::Usage("a KEY is not valid UTF-8".into()))
    };
    let action = match (name.as_str(), values.len()) {
        ("post", 1) => {
            let json = values.pop().unwrap_or_default();
            Action::Post(service::object_arg(json, "property JSON")?)
        }
        ("post", _) => {
            return Err(Failure::Usage(
                "post takes one JSON object, e.g. '{\"temperature\":21}'".into(),
            ))
        }
        ("desired", 0) if delete => {
            return Err(Failure::Usage(
                "desired --delete needs the KEYs to delete".into(),
            ))
        }
        ("desired", _) if delete => Action::DeleteDesired(keys(values)?),
        ("desired", _) => Action::Desired(keys(values)?),
        ("restore", 0) => Action::Restore,
        ("template", 0) => Action::Template,
        ("restore" | "template", _) => {
            return Err(Failure::Usage(format!("{name} takes no argument")))
        }
        (other, _) => {
            return Err(Failure::Usage(format!(
                "unknown action {}: use post, desired, restore or template",
                cli::quote(other)
            )))
        }
    };
    if delete && !matches!(action, Action::DeleteDesired(_)) {
        return Err(Failure::Usage("--delete goes with desired only".into()));
    }
    Ok((action, common))
}

/// Runs `uiot property`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let (action, common) = parse_args(args)?;
    service::with_client(&common, |client| {
        let thing = Thing::with_timeout(client, common.reply_timeout())?;
        let out = match action {
            Action::Post(values) => {
                thing.post(&values)?;
                json!({ "RetCode": 0 })
            }
            Action::Desired(keys) => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                json!({ "Desired": thing.desired_get(&keys)? })
            }
            Action::DeleteDesired(keys) => delete_desired(&thing, &keys)?,
            Action::Restore => json!({ "Property": thing.restore()? }),
            Action::Template => json!({ "Template": thing.template()? }),
        };
        service::print_json(&out)
    })
}

/// Reads the versions of `keys`, then deletes those values (a key without
/// a cached value is left out, and said so on stderr).
fn delete_desired(thing: &Thing, keys: &[String]) -> Result<Value, Failure> {
    let wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
    let found = thing.desired_values(&wanted)?;
    let items: Vec<(&str, u32)> = found
        .iter()
        .filter(|(k, _)| wanted.contains(&k.as_str()))
        .map(|(k, d)| (k.as_str(), d.version))
        .collect();
    for k in &wanted {
        if !items.iter().any(|(f, _)| f == k) {
            log::warn!(
                "desired value {} is not cached; nothing to delete",
                cli::quote(k)
            );
        }
    }
    let mut deleted = Map::new();
    if !items.is_empty() {
        thing.desired_delete(&items)?;
        for (k, v) in &items {
            deleted.insert((*k).to_string(), json!({ "Version": v }));
        }
    }
    Ok(json!({ "Deleted": deleted }))
}
