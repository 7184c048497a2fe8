//! `uiot ota status` and `uiot ota check`, and what they share with the
//! daemon's OTA service: the state file (`state`) and reading a module's
//! running version (`version`).
//!
//! Owns: the `ota` subcommand.
//! Must not touch: upgrading (the daemon's `run::ota`).

pub mod state;
pub mod version;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uiot::config::Config;
use uiot::platform::ota::{ModuleVersion, Notice, Ota};

use crate::cli::{self, Failure};
use crate::service::{self, common_help, Common};

/// Usage of `uiot ota`.
pub const USAGE: &str = concat!(
    "\
usage: uiot ota status [-c FILE]
       uiot ota check [-W SECONDS] [options]

Firmware upgrades ([ota] in the configuration; `uiot run` does them).

  status   one JSON line per module: the version running now, the one last
           reported, the upgrade in progress, an applied image waiting for a
           restart (pending) and how the last upgrade ended
  check    report the versions and ask the cloud for a pending upgrade now;
           prints one line per module with the update offered (or null)
           within -W seconds (default 5). Through `uiot run` (when it runs)
           the daemon installs it; on a connection of its own nothing does.

options:
  -W, --timeout SECONDS how long check waits for the cloud's answer
",
    common_help!()
);

/// Runs `uiot ota`.
pub fn run(args: &mut lexopt::Parser) -> Result<(), Failure> {
    let mut common = Common::new();
    let mut action: Option<String> = None;
    while let Some(arg) = args.next()? {
        if let Some(flag) = Common::flag(&arg) {
            common.set(flag, args)?;
            continue;
        }
        match arg {
            lexopt::Arg::Value(v) if action.is_none() => {
                action = Some(v.to_string_lossy().into_owned());
            }
            other => return Err(other.unexpected().into()),
        }
    }
    match action.as_deref() {
        Some("status") => status(&common),
        Some("check") => check(&common),
        Some(other) => Err(Failure::Usage(format!(
            "unknown ota action {}: use status or check",
            cli::quote(other)
        ))),
        None => Err(Failure::Usage("give an action: status or check".into())),
    }
}

fn config_problem(problem: String) -> Failure {
    Failure::Uiot(uiot::Error::Config(uiot::config::ConfigError {
        problems: vec![problem],
    }))
}

fn modules_of(config: &Config) -> Result<(), Failure> {
    if config.ota.modules.is_empty() {
        return Err(config_problem(format!(
            "{}: no [ota] module: add [ota] with version_command or version_file (README, \
             \"Firmware upgrades\")",
            config.path.display()
        )));
    }
    Ok(())
}

fn status(common: &Common) -> Result<(), Failure> {
    cli::init_logging(common.debug);
    let config = cli::load_config(common.config.clone())?;
    modules_of(&config)?;
    let st = match state::State::load(&config.ota.state_file) {
        Ok(s) => s,
        Err(why) => {
            log::warn!("{why}");
            state::State::default()
        }
    };
    let all = st.to_json();
    for m in &config.ota.modules {
        let running = match version::running(m) {
            Ok(v) => json!(v),
            Err(why) => json!({ "error": why }),
        };
        let kept = all
            .get("modules")
            .and_then(|ms| ms.get(&m.name))
            .cloned()
            .unwrap_or_else(|| json!({}));
        let field = |k: &str| kept.get(k).cloned().unwrap_or(Value::Null);
        service::print_json(&json!({
            "module": m.name,
            "running": running,
            "reported": field("reported"),
            "active": field("active"),
            "pending": field("pending"),
            "last": field("last"),
        }))?;
    }
    Ok(())
}

fn check(common: &Common) -> Result<(), Failure> {
    cli::init_logging(common.debug);
    let config = cli::load_config(common.config.clone())?;
    modules_of(&config)?;
    let mut versions = Vec::new();
    for m in &config.ota.modules {
        let v = version::running(m).map_err(|why| {
            config_problem(format!(
                "{}: [ota] module {}: {why}",
                config.path.display(),
                m.name
            ))
        })?;
        versions.push(ModuleVersion::new(&m.name, &v));
    }
    let wait = common.timeout.unwrap_or(Duration::from_secs(5));
    let deadline = Instant::now().checked_add(wait);
    service::with_client(common, |client| {
        let via_daemon = client.options().local_socket.is_some();
        let ota = Ota::new(client, versions.clone())?;
        ota.report_version()?;
        ota.request_firmware()?;
        let mut offered: Vec<Option<Notice>> = vec![None; versions.len()];
        while offered.iter().any(Option::is_none) {
            let left = deadline.map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                break;
            }
            let Some(n) = ota.next_notice(left) else {
                break;
            };
            if let n @ Notice::Update { .. } = n {
                let (module, _) = n.target();
                let at = versions.iter().position(|v| v.module == module);
                if let Some(slot) = at.and_then(|i| offered.get_mut(i)) {
                    *slot = Some(n);
                }
            }
        }
        for (v, n) in versions.iter().zip(&offered) {
            let update = match n {
                Some(Notice::Update {
                    version, size, md5, ..
                }) => json!({"version": version, "size": size, "md5": md5}),
                _ => Value::Null,
            };
            service::print_json(&json!({
                "module": v.module, "running": v.version, "update": update,
            }))?;
        }
        if offered.iter().any(Option::is_some) && !via_daemon {
            log::warn!(
                "uiot run is not running: nothing installs the update now; start uiot run \
                 (it asks again when it connects)"
            );
        }
        Ok(())
    })
}
