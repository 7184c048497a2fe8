//! The service files and example hooks, checked without a broker, a
//! board or root: the systemd unit (`systemd-analyze verify` when it is on
//! PATH), the procd init script (sourced with stub procd functions that
//! record their calls), the deb's postinst (with stub system tools), and
//! every example hook in etc/hooks/ run with sample environment and stdin.
//!
//! Owns: these checks. Must not touch: the files checked (packaging/,
//! etc/hooks/) or the system (every stub writes only to a temp directory).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const HOOKS: [&str; 6] = [
    "on_command.sh",
    "on_connect.sh",
    "on_disconnect.sh",
    "on_message.sh",
    "on_property_set.sh",
    "on_shadow_desired.sh",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hook(name: &str) -> PathBuf {
    root().join("etc/hooks").join(name)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Writes an executable `#!/bin/sh` script.
fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory of stub tools, each appending `NAME|ARG|ARG...` to
/// `DIR/calls`, and exiting with the given status.
fn stubs(dir: &Path, tools: &[(&str, i32)]) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let calls = dir.join("calls");
    for (name, status) in tools {
        script(
            &bin.join(name),
            &format!(
                "{{ printf '%s' {name}; for a in \"$@\"; do printf '|%s' \"$a\"; done; echo; }} >> '{}'\nexit {status}\n",
                calls.display()
            ),
        );
    }
    bin
}

fn calls(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `prog` with only `env` (plus PATH = `bin` then the system's) and
/// `stdin` (None: /dev/null).
fn run(prog: &Path, args: &[&str], bin: &Path, env: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
        )
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", prog.display()));
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn shell_scripts_parse() {
    let mut files: Vec<PathBuf> = HOOKS.iter().map(|h| hook(h)).collect();
    files.push(root().join("packaging/openwrt/uiot.init"));
    for s in ["postinst", "prerm", "postrm"] {
        files.push(root().join("packaging/deb").join(s));
    }
    for f in files {
        let out = Command::new("sh").arg("-n").arg(&f).output().unwrap();
        assert!(
            out.status.success(),
            "sh -n {}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn hooks_are_executable_documented_and_need_no_jq() {
    let found: Vec<String> = fs::read_dir(root().join("etc/hooks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(found.len(), HOOKS.len(), "etc/hooks/ holds {found:?}");
    for name in HOOKS {
        let path = hook(name);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{name} mode {mode:o}");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{name}: not #!/bin/sh");
        let key = name.trim_end_matches(".sh");
        assert!(
            text.contains("[hooks]"),
            "{name}: header does not name [hooks]"
        );
        assert!(
            text.contains(&format!("{key} = /etc/uiot/hooks/{name}")),
            "{name}: header does not show its [hooks] key"
        );
        for word in ["Environment:", "Stdin:", "Stdout:", "UIOT_EVENT="] {
            assert!(text.contains(word), "{name}: header lacks {word}");
        }
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(!line.contains("jq"), "{name} uses jq: {line}");
        }
    }
}

#[test]
fn systemd_unit() {
    let unit = fs::read_to_string(root().join("packaging/systemd/uiot.service")).unwrap();
    let settings: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .collect();
    for want in [
        "Type=simple",
        "ExecStart=/usr/bin/uiot run -c /etc/uiot/uiot.ini",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "RestartSec=5",
        "RuntimeDirectory=uiot",
        "RuntimeDirectoryMode=0750",
        "StateDirectory=uiot",
        "ProtectSystem=strict",
        "ReadWritePaths=/etc/uiot /var/lib/uiot",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "DevicePolicy=closed",
        "DeviceAllow=char-ttyUSB rw",
        "DeviceAllow=char-ttyACM rw",
        "DeviceAllow=char-ttyS rw",
        "DeviceAllow=char-ttyAMA rw",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "After=network-online.target",
        "Wants=network-online.target",
        "WantedBy=multi-user.target",
    ] {
        assert!(settings.contains(&want), "uiot.service lacks {want}");
    }
    // Stopping must outlast the daemon's ~10 s flush.
    let stop = settings
        .iter()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec");
    assert!(stop.parse::<u32>().unwrap() > 10, "TimeoutStopSec={stop}");

    if !on_path("systemd-analyze") {
        println!("SKIP: systemd-analyze not on PATH; uiot.service not verified");
        return;
    }
    // verify wants ExecStart's program to exist: point it at a stand-in.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("uiot");
    script(&fake, "exit 0\n");
    let copy = dir.path().join("uiot.service");
    fs::write(&copy, unit.replace("/usr/bin/uiot", fake.to_str().unwrap())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    // Only complaints about other (host) units are tolerated.
    assert!(
        !said.contains("uiot.service"),
        "systemd-analyze verify: {said}"
    );
}

#[test]
fn procd_init_script() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls");
    let init = root().join("packaging/openwrt/uiot.init");
    let mut driver = String::from(
        "log=\"$1\"\nrec() { { printf '%s' \"$1\"; shift; for a in \"$@\"; do printf '|%s' \"$a\"; done; echo; } >> \"$log\"; }\n",
    );
    // Stubs for procd.sh's functions, and for mkdir so that nothing is
    // created on this machine.
    for f in [
        "procd_open_instance",
        "procd_set_param",
        "procd_append_param",
        "procd_close_instance",
        "procd_send_signal",
        "procd_add_reload_trigger",
        "procd_add_interface_trigger",
        "procd_add_reload_interface_trigger",
        "procd_open_trigger",
        "procd_close_trigger",
        "procd_add_jail",
        "mkdir",
    ] {
        driver.push_str(&format!("{f}() {{ rec {f} \"$@\"; }}\n"));
    }
    driver.push_str(&format!(
        ". '{}'\n\
         rec vars \"USE_PROCD=$USE_PROCD\" \"START=$START\" \"STOP=$STOP\"\n\
         rec start_service; start_service\n\
         rec reload_service; reload_service\n\
         if command -v service_triggers >/dev/null 2>&1; then rec service_triggers; service_triggers; fi\n",
        init.display()
    ));
    let driver_path = dir.path().join("driver.sh");
    fs::write(&driver_path, driver).unwrap();
    let out = Command::new("sh")
        .arg(&driver_path)
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = fs::read_to_string(&log).unwrap();
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(
        got,
        [
            "vars|USE_PROCD=1|START=95|STOP=10",
            "start_service",
            "mkdir|-p|-m|0750|/var/run/uiot",
            "procd_open_instance",
            "procd_set_param|command|/usr/bin/uiot|run|-c|/etc/uiot/uiot.ini",
            "procd_set_param|respawn|3600|5|5",
            "procd_set_param|stdout|1",
            "procd_set_param|stderr|1",
            "procd_set_param|file|/etc/uiot/uiot.ini",
            "procd_set_param|term_timeout|15",
            "procd_close_instance",
            "reload_service",
            "procd_send_signal|uiot|*|HUP",
        ]
    );
    let first = fs::read_to_string(&init).unwrap();
    assert!(first.starts_with("#!/bin/sh /etc/rc.common\n"));
}

#[test]
fn deb_postinst_creates_group_and_never_enables() {
    let postinst = root().join("packaging/deb/postinst");
    // Group missing: getent fails, addgroup runs.
    let dir = tempfile::tempdir().unwrap();
    let bin = stubs(
        dir.path(),
        &[("getent", 2), ("addgroup", 0), ("systemctl", 1)],
    );
    let r = run(&postinst, &["configure", ""], &bin, &[], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = calls(dir.path());
    assert!(
        got.contains(&"addgroup|--system|uiot".to_owned()),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|c| c.contains("enable") || c.contains("|start")),
        "postinst enables or starts the unit: {got:?}"
    );
    // Group present: no addgroup.
    let dir = tempfile::tempdir().unwrap();
    let bin = stubs(
        dir.path(),
        &[("getent", 0), ("addgroup", 0), ("systemctl", 1)],
    );
    let r = run(&postinst, &["configure", "0.1.0"], &bin, &[], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = calls(dir.path());
    assert!(!got.iter().any(|c| c.starts_with("addgroup")), "{got:?}");
}

/// A scratch state dir, stub `logger` and `reboot`, and the environment
/// every hook gets.
struct HookEnv {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl HookEnv {
    fn new() -> HookEnv {
        let dir = tempfile::tempdir().unwrap();
        let bin = stubs(dir.path(), &[("logger", 0), ("reboot", 0)]);
        fs::create_dir(dir.path().join("state")).unwrap();
        HookEnv { dir, bin }
    }

    fn state(&self, file: &str) -> String {
        fs::read_to_string(self.dir.path().join("state").join(file)).unwrap_or_default()
    }

    fn run(&self, name: &str, extra: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
        let state = self.dir.path().join("state");
        let mut env = vec![
            ("UIOT_PRODUCT_SN", "70ly1tvowt696r15"),
            ("UIOT_DEVICE_SN", "aruidyl0rt9tuvod"),
            ("UIOT_HOOK_STATE_DIR", state.to_str().unwrap()),
            ("UIOT_HOOK_DRY_RUN", "1"),
        ];
        env.extend_from_slice(extra);
        run(&hook(name), &[], &self.bin, &env, stdin)
    }

    fn calls(&self) -> Vec<String> {
        calls(self.dir.path())
    }
}

/// The hook's stdout: exactly one line holding one JSON value.
fn json_out(r: &Run) -> Value {
    assert_eq!(r.stdout.lines().count(), 1, "stdout {:?}", r.stdout);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("stdout {:?}: {e}", r.stdout))
}

fn command_env(id: &str) -> Vec<(&str, &str)> {
    vec![
        ("UIOT_EVENT", "command"),
        ("UIOT_IDENTIFIER", id),
        ("UIOT_REQUEST_ID", "42"),
        (
            "UIOT_TOPIC",
            "/$system/70ly1tvowt696r15/aruidyl0rt9tuvod/tmodel/service/invoke",
        ),
        ("UIOT_QOS", "1"),
    ]
}

#[test]
fn on_command_known_and_unknown() {
    let h = HookEnv::new();
    let r = h.run(
        "on_command.sh",
        &command_env("set_led"),
        Some(b"{\"state\": 1}"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json_out(&r), json!({"state": 1}));
    assert_eq!(h.state("led"), "1\n");

    let r = h.run(
        "on_command.sh",
        &command_env("set_led"),
        Some(b"{\"state\":7}"),
    );
    assert_eq!(r.code, 1);
    assert!(json_out(&r)["reason"].as_str().unwrap().contains("state"));

    let r = h.run("on_command.sh", &command_env("reboot"), Some(b"{}"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json_out(&r), json!({"rebooting": true, "delay": 5}));
    assert!(r.stderr.contains("dry run"), "{}", r.stderr);

    let r = h.run("on_command.sh", &command_env("self_destruct"), Some(b"{}"));
    assert_eq!(r.code, 1);
    assert_eq!(
        json_out(&r),
        json!({"reason": "unknown command: self_destruct"})
    );

    // An identifier that would need escaping is not echoed back.
    let r = h.run("on_command.sh", &command_env("x\"}"), Some(b"{}"));
    assert_eq!(r.code, 1);
    assert_eq!(json_out(&r), json!({"reason": "unknown command"}));

    assert!(
        h.calls().iter().all(|c| !c.starts_with("reboot")),
        "{:?}",
        h.calls()
    );
}

#[test]
fn on_property_set() {
    let h = HookEnv::new();
    let env = [("UIOT_EVENT", "property_set"), ("UIOT_REQUEST_ID", "7")];
    let r = h.run(
        "on_property_set.sh",
        &env,
        Some(b"{\"led\": 0,\n \"target_temp\": 22}"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json_out(&r), json!({"led": 0, "target_temp": 22}));
    assert_eq!(h.state("led"), "0\n");
    assert_eq!(h.state("target_temp"), "22\n");

    // One bad value: refused, nothing set.
    let r = h.run(
        "on_property_set.sh",
        &env,
        Some(b"{\"led\":1,\"target_temp\":99}"),
    );
    assert_eq!(r.code, 1);
    assert!(json_out(&r)["reason"]
        .as_str()
        .unwrap()
        .contains("target_temp"));
    assert_eq!(h.state("led"), "0\n");

    let r = h.run("on_property_set.sh", &env, Some(b"{\"colour\":\"red\"}"));
    assert_eq!(r.code, 1);
    assert!(json_out(&r)["reason"].is_string());
}

#[test]
fn on_shadow_desired() {
    let h = HookEnv::new();
    let env = [("UIOT_EVENT", "shadow_desired")];
    let r = h.run("on_shadow_desired.sh", &env, Some(b"{\"interval\":30}"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json_out(&r), json!({"interval": 30}));
    assert_eq!(h.state("interval"), "30\n");

    let r = h.run("on_shadow_desired.sh", &env, Some(b"{\"other\":1}"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json_out(&r), json!({}));

    let r = h.run("on_shadow_desired.sh", &env, Some(b"{\"interval\":0}"));
    assert_eq!(r.code, 1);
    assert!(json_out(&r)["reason"].is_string());
    assert_eq!(h.state("interval"), "30\n");
    // No temp file left behind.
    let left: Vec<_> = fs::read_dir(h.dir.path().join("state")).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn on_connect_and_on_disconnect_log() {
    let h = HookEnv::new();
    let r = h.run("on_connect.sh", &[("UIOT_EVENT", "connect")], None);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    let r = h.run("on_disconnect.sh", &[("UIOT_EVENT", "disconnect")], None);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert_eq!(
        h.calls(),
        [
            "logger|-t|uiot-hook|connected to UIoT Core as 70ly1tvowt696r15/aruidyl0rt9tuvod",
            "logger|-t|uiot-hook|disconnected from UIoT Core (70ly1tvowt696r15/aruidyl0rt9tuvod)",
        ]
    );
}

#[test]
fn on_message_keeps_payload() {
    let h = HookEnv::new();
    let payload = b"hello\0world\n";
    let env = [
        ("UIOT_EVENT", "message"),
        ("UIOT_TOPIC", "/70ly1tvowt696r15/aruidyl0rt9tuvod/download"),
        ("UIOT_QOS", "1"),
    ];
    let r = h.run("on_message.sh", &env, Some(payload));
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert_eq!(
        fs::read(h.dir.path().join("state/last_message")).unwrap(),
        payload
    );
    assert_eq!(
        h.calls(),
        ["logger|-t|uiot-hook|message on /70ly1tvowt696r15/aruidyl0rt9tuvod/download (QoS 1, 12 bytes)"]
    );
}
