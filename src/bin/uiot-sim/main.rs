//! `uiot-sim`: a local stand-in for UIoT Core's cloud side. It logs in to
//! a local broker as a superuser and answers the system topics of every
//! device it sees (dynamic registration, device shadow, thing model, OTA)
//! as ../shared/uiot-protocol.md sections 3-6 and 11 describe; with
//! `--http-port` it also serves the HTTP uplink, file upload and the
//! firmware files (section 7.4, 7.6). A line protocol on stdin drives the
//! cloud's own side (desired values, property sets, commands, broadcasts,
//! OTA pushes). Every line on stdout is one JSON object.
//!
//! Owns: the command line, start-up, the two threads (broker messages,
//! stdin) and the exit codes.
//! Must not touch: what is answered (`cloud`, `http`), what is kept
//! (`state`), the stdin grammar (`control`).

mod cloud;
mod control;
mod door;
mod files;
mod fw;
mod http;
mod ota;
mod register;
mod shadow;
mod state;
mod thing;
mod uplink;

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
      --http-port PORT     serve HTTP on 127.0.0.1:PORT (0: a free port, named
                           in the ready line): the HTTP uplink (POST /auth,
                           POST /topic/TOPIC), file upload (POST /api/v1/url,
                           PUT /files/...) and the firmware of ota push (/fw/...)
      --device PSN:DSN:SECRET  a device secret, for checking HTTP signatures;
                           repeat it (registered devices' secrets are known)
      --files DIR          where uploads are stored, as DIR/PSN/DSN/NAME
                           (default: a new directory in $TMPDIR, made by the
                           first upload; needs --http-port)
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
  secret PSN DSN SECRET          a device secret for HTTP signatures
  expire-tokens                  every HTTP token issued so far answers 100074
  ota push PSN DSN MODULE VERSION FILE [MODE]
                                 serve FILE (needs --http-port) and publish
                                 update_firmware; MODE: ok (default), cut (the
                                 first response cut at half), truncated (the
                                 served copy 1000 bytes short), badmd5 (a wrong
                                 MD5 announced), expired (403), missing (404),
                                 stall (half, then silence), slow (256 KiB/s)
  ota cancel PSN DSN MODULE VERSION  publish cancel_update, end the upgrade
  ota log PSN DSN                the device's OTA reports so far (last 1000)
  quit                           disconnect and exit 0
stdout: {\"sim\":\"ready\"|\"answered\"|\"property\"|\"event\"|\"reply\"|\"ok\"|\"state\"|
  \"ota\"|\"ota-result\"|\"ota-log\"|\"fw-request\"|\"http-auth\"|\"http-publish\"|\"upload\"|\"error\",...}
End of stdin does not stop it (it may run in the background): use quit or SIGTERM.

exit: 0 quit, 64 usage, 69 broker unreachable or the HTTP port taken, 77 login refused,
78 bad --state file, 1 other";

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
    http_port: Option<u16>,
    /// (PSN, DSN, secret).
    devices: Vec<(String, String, String)>,
    files: Option<PathBuf>,
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
        http_port: None,
        devices: Vec::new(),
        files: None,
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
            Long("http-port") => {
                let v = text(&mut p, "--http-port")?;
                a.http_port = Some(v.parse::<u16>().map_err(|_| {
                    format!("--http-port {v:?} is not a port (0-65535; 0: any free port)")
                })?);
            }
            Long("device") => {
                let v = text(&mut p, "--device")?;
                a.devices.push(device_arg(&v)?);
            }
            Long("files") => a.files = Some(PathBuf::from(text(&mut p, "--files")?)),
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
    if a.files.is_some() && a.http_port.is_none() {
        return Err("--files is where HTTP uploads go: it needs --http-port".into());
    }
    Ok(Some(a))
}

/// `PSN:DSN:SECRET` (the DeviceSN may hold ':'; ProductSN and secret not).
fn device_arg(v: &str) -> Result<(String, String, String), String> {
    let bad = || format!("--device {:?} is not PSN:DSN:SECRET", uiot::cut(v));
    let (psn, rest) = v.split_once(':').ok_or_else(bad)?;
    let (dsn, secret) = rest.rsplit_once(':').ok_or_else(bad)?;
    let plain =
        |s: &str| !s.is_empty() && !s.contains(['/', '+', '#']) && !s.contains(char::is_whitespace);
    if !plain(psn) || !plain(dsn) || !plain(secret) {
        return Err(bad());
    }
    Ok((psn.into(), dsn.into(), secret.into()))
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
    for (psn, dsn, secret) in &args.devices {
        cloud::lock(&cloud)
            .secrets
            .insert(state::Dev::new(psn, dsn).key(), secret.clone());
    }
    let mut ready = json!({"sim": "ready", "broker": format!("{}:{}", args.host, args.port)});
    if let Some(port) = args.http_port {
        let files = args.files.clone().unwrap_or_else(files::temp_dir);
        match http::start(port, files.clone(), Arc::clone(&cloud), client.clone()) {
            Ok(web) => {
                cloud::put(&mut ready, "http", json!(web.base));
                cloud::put(&mut ready, "files", json!(files.display().to_string()));
                cloud::lock(&cloud).web = Some(web);
            }
            Err(why) => {
                eprintln!("uiot-sim: {why}");
                return 69;
            }
        }
    }
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
    emit(&ready);
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
