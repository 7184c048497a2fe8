//! `uiot-sim`: a local stand-in for UIoT Core's cloud side. It logs in to
//! a local broker as a superuser and answers the system topics of every
//! device it sees (dynamic registration, device shadow, thing model) as
//! ../shared/uiot-protocol.md sections 3-5 and 11 describe; a line
//! protocol on stdin drives the cloud's own side (desired values, property
//! sets, commands, broadcasts). Every line on stdout is one JSON object.
//!
//! Owns: the command line, start-up, the two threads (broker messages,
//! stdin) and the exit codes.
//! Must not touch: what is answered (`cloud`), what is kept (`state`),
//! the stdin grammar (`control`).

mod cloud;
mod control;
mod register;
mod shadow;
mod state;
mod thing;

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use lexopt::prelude::*;
use serde_json::json;
use uiot::{Client, Error, Limits, Options, QoS};

use cloud::{emit, Cloud};

const USAGE: &str = "\
uiot-sim: a local UIoT Core cloud for a local broker (tests, quickstart, offline work)

usage: uiot-sim --username USER --password PASS [options]

  -h, --host HOST          broker address (default 127.0.0.1)
  -p, --port PORT          broker port (default 1883)
  -u, --username USER      the broker login of the cloud: it must read and
                           write every topic (etc/broker: demo-cloud)
  -P, --password PASS      its password (etc/broker: demo-cloud-pw)
  -i, --client-id ID       MQTT client id (default uiot-sim)
      --allow-register DSN a DeviceSN that may register dynamically, once;
                           repeat it; '*' allows every DeviceSN
      --on-register CMD    run `sh -c CMD` after issuing a secret and before
                           replying, with UIOT_PRODUCT_SN, UIOT_DEVICE_SN and
                           UIOT_DEVICE_SECRET set; if it fails the device gets
                           RetCode 130 and may try again. For scripts/dev-broker.sh:
                           --on-register 'scripts/dev-broker.sh add-device'
      --state FILE         keep registrations, shadows and properties in FILE
                           (JSON, 0600, written atomically after each change)
      --help               this text

stdin, one command a line (JSON last, it may contain spaces):
  desired PSN DSN JSON           shadow: set desired values (null deletes one),
                                 pushed to the device as a control
  set PSN DSN JSON               thing model: property set; the device's
                                 set_reply is printed
  command PSN DSN ID JSON        thing model: command ID with Input JSON
  command-id PSN DSN REQID ID JSON   the same with a chosen RequestID
  tdesired PSN DSN JSON          thing model: cache desired values (device
                                 reads them with desired get)
  template PSN JSON              the thing model template of a product
  broadcast PSN REST PAYLOAD     publish PAYLOAD to /PSN/$broadcast/REST
  raw TOPIC PAYLOAD              publish PAYLOAD to TOPIC as it is
  state PSN DSN                  print what the cloud keeps for a device
  quit                           disconnect and exit 0
stdout: {\"sim\":\"ready\"|\"answered\"|\"property\"|\"event\"|\"reply\"|\"ok\"|\"state\"|\"error\",...}
End of stdin does not stop it (it may run in the background): use quit or SIGTERM.

exit: 0 quit, 64 usage, 69 broker unreachable, 77 login refused, 78 bad --state file, 1 other";

/// What the command line says.
struct Args {
    host: String,
    port: u16,
    username: String,
    password: String,
    client_id: String,
    allow: Vec<String>,
    on_register: Option<String>,
    state: Option<PathBuf>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    let args = match parse(lexopt::Parser::from_env()) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("uiot-sim: {why}\n(uiot-sim --help shows the options)");
            return ExitCode::from(64);
        }
    };
    ExitCode::from(run(args))
}

fn parse(mut p: lexopt::Parser) -> Result<Option<Args>, String> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 1883,
        username: String::new(),
        password: String::new(),
        client_id: "uiot-sim".into(),
        allow: Vec::new(),
        on_register: None,
        state: None,
    };
    let text = |p: &mut lexopt::Parser, what: &str| -> Result<String, String> {
        p.value()
            .map_err(|e| format!("{what}: {e}"))?
            .into_string()
            .map_err(|_| format!("{what} is not UTF-8"))
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("host") => a.host = text(&mut p, "--host")?,
            Short('p') | Long("port") => {
                let v = text(&mut p, "--port")?;
                a.port = match v.parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--port {v:?} is not a port (1-65535)")),
                };
            }
            Short('u') | Long("username") => a.username = text(&mut p, "--username")?,
            Short('P') | Long("password") => a.password = text(&mut p, "--password")?,
            Short('i') | Long("client-id") => a.client_id = text(&mut p, "--client-id")?,
            Long("allow-register") => a.allow.push(text(&mut p, "--allow-register")?),
            Long("on-register") => a.on_register = Some(text(&mut p, "--on-register")?),
            Long("state") => a.state = Some(PathBuf::from(text(&mut p, "--state")?)),
            Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if a.username.is_empty() {
        return Err(
            "--username is missing: the broker login of the cloud, one that may \
                    read and write every topic (scripts/dev-broker.sh: demo-cloud)"
                .into(),
        );
    }
    Ok(Some(a))
}

fn run(args: Args) -> u8 {
    let state = match state::State::load(args.state.as_deref()) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("uiot-sim: {why}");
            return 78;
        }
    };
    let mut o = Options::new(args.host.clone(), args.port, args.client_id.clone());
    o.username = Some(args.username.clone());
    o.password = Some(args.password.clone());
    // The cloud publishes to every device: the device limits are not its.
    o.limits = Limits::unlimited();
    let client = match Client::connect(o).and_then(|c| {
        let filters: Vec<(String, QoS)> = cloud::FILTERS
            .iter()
            .map(|f| ((*f).to_string(), QoS::AtLeastOnce))
            .collect();
        c.subscribe(&filters).map(|_| c)
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "uiot-sim: cannot log in to the broker at {}:{} as {:?}: {e}",
                args.host, args.port, args.username
            );
            return match e {
                Error::Refused(_) => 77,
                Error::Unreachable(_) | Error::Timeout(_) | Error::Tls(_) => 69,
                _ => 1,
            };
        }
    };
    let cloud = Arc::new(Mutex::new(Cloud::new(
        client.clone(),
        state,
        args.allow,
        args.on_register,
    )));
    let messages = client.messages();
    let for_messages = Arc::clone(&cloud);
    let spawned = std::thread::Builder::new()
        .name("sim-messages".into())
        .spawn(move || {
            for m in messages.iter() {
                cloud::lock(&for_messages).handle(&m);
            }
        });
    if let Err(e) = spawned {
        eprintln!("uiot-sim: cannot start a thread: {e}");
        return 1;
    }
    emit(&json!({"sim": "ready", "broker": format!("{}:{}", args.host, args.port)}));
    let stdin = std::io::stdin();
    let mut quit = false;
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match control::parse(&line) {
            Ok(None) => {}
            Ok(Some(control::Line::Quit)) => {
                quit = true;
                break;
            }
            Ok(Some(cmd)) => cloud::lock(&cloud).control(cmd),
            Err(why) => emit(&json!({"sim": "error", "input": uiot::cut(&line), "error": why})),
        }
    }
    if !quit {
        // Keep answering until killed: `uiot-sim ... </dev/null &` is a
        // normal way to run it beside a broker.
        loop {
            std::thread::park();
        }
    }
    let _ = client.disconnect();
    0
}
