//! `uiot event post ID JSON [--type notify|warning|error]`: report one
//! thing-model event from a shell.
//!
//! Owns: the `event` subcommand's arguments and output.
//! Must not touch: the thing-model exchange (`uiot::platform::thing`).

use lexopt::prelude::*;
use serde_json::json;
use uiot::platform::thing::{EventKind, Thing};

use crate::cli::Failure;
use crate::service::{self, common_help, Common};

/// Usage of `uiot event`.
pub const USAGE: &str = concat!(
    "\
usage: uiot event post ID JSON [--type notify|warning|error] [-c FILE] [-W SECONDS] [-d]

Reports the event ID of the thing model with its output parameters, a JSON
object such as '{\"alarmcode\":3}', and prints the platform's answer:
{\"RetCode\":0}. The platform takes the event's type from the model; --type
sets the level of the line uiot logs (notify: info, warning, error).

options:
  -t, --type TYPE       notify (default), warning or error
  -W, --timeout SECONDS how long to wait for the reply (default 10)
",
    common_help!()
);

/// Runs `uiot event`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let mut common = Common::new();
    let mut kind = EventKind::Notify;
    let mut positional = Vec::new();
    while let Some(arg) = args.next()? {
        if let Some(flag) = Common::flag(&arg) {
            common.set(flag, args)?;
            continue;
        }
        match arg {
            Short('t') | Long("type") => {
                kind = args.value()?.string()?.parse().map_err(Failure::Uiot)?
            }
            Value(v) => positional.push(v),
            other => return Err(other.unexpected().into()),
        }
    }
    let mut positional = positional.into_iter();
    match positional.next().map(|a| a.into_string()) {
        Some(Ok(a)) if a == "post" => {}
        Some(_) => return Err(Failure::Usage("the only action is post".into())),
        None => return Err(Failure::Usage("missing action: post".into())),
    }
    let (Some(id), Some(output), None) = (positional.next(), positional.next(), positional.next())
    else {
        return Err(Failure::Usage(
            "post takes an event ID and one JSON object, e.g. post alarm '{\"code\":3}'".into(),
        ));
    };
    let id = id
        .into_string()
        .map_err(|_| Failure::Usage("the event ID is not valid UTF-8".into()))?;
    let output = service::object_arg(output, "event JSON")?;
    service::with_client(&common, |client| {
        Thing::with_timeout(client, common.reply_timeout())?.post_event(&id, &output, kind)?;
        service::print_json(&json!({ "RetCode": 0 }))
    })
}
