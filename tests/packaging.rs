//! The service files and example hooks, checked without a broker, a
//! board or root: the systemd unit (`systemd-analyze verify` when it is on
//! PATH), the procd init script (sourced with stub procd functions that
//! record their calls), the deb's postinst (with stub system tools),
//! every example hook in etc/hooks/ run with sample environment and stdin,
//! and the OTA apply scripts in etc/ota/ (ab-image.sh for real in a temp
//! directory, the others against stub sysupgrade, dpkg and dpkg-deb).
//!
//! Owns: these checks. Must not touch: the files checked (packaging/,
//! etc/hooks/, etc/ota/) or the system (every stub writes only to a temp
//! directory).

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

const OTA_SCRIPTS: [&str; 3] = ["ab-image.sh", "debian-dpkg.sh", "openwrt-sysupgrade.sh"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hook(name: &str) -> PathBuf {
    root().join("etc/hooks").join(name)
}

fn ota_script(name: &str) -> PathBuf {
    root().join("etc/ota").join(name)
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
    files.extend(OTA_SCRIPTS.iter().map(|s| ota_script(s)));
    for f in files {
        let out = Command::new("sh").arg("-n").arg(&f).output().unwrap();
        assert!(
            out.status.success(),
            "sh -n {}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // BusyBox ash (OpenWrt's shell) when it is here.
    if !on_path("busybox") {
        println!("SKIP: busybox not on PATH; the OTA scripts not parsed by ash");
        return;
    }
    for f in OTA_SCRIPTS.iter().map(|s| ota_script(s)) {
        let out = Command::new("busybox")
            .args(["sh", "-n"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "busybox sh -n {}: {}",
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

#[test]
fn ota_scripts_are_executable_and_say_how_to_wire_them() {
    let mut found: Vec<String> = fs::read_dir(root().join("etc/ota"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, OTA_SCRIPTS, "etc/ota/ holds {found:?}");
    for name in OTA_SCRIPTS {
        let path = ota_script(name);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{name} mode {mode:o}");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{name}: not #!/bin/sh");
        assert!(text.contains("\nset -eu\n"), "{name}: no set -eu");
        assert!(
            text.contains("#   [ota") || text.contains("#     [ota"),
            "{name}: header names no [ota] section"
        );
        assert!(
            text.contains(&format!("/etc/uiot/ota/{name}")) && text.contains("apply = "),
            "{name}: header does not show its apply line"
        );
        assert!(
            text.contains("version_command = ") || text.contains("version_file = "),
            "{name}: header shows no version_command or version_file to pair with it"
        );
        for word in [
            "Environment",
            "UIOT_OTA_FILE",
            "UIOT_OTA_VERSION",
            "Exit status:",
        ] {
            assert!(text.contains(word), "{name}: header lacks {word}");
        }
    }
}

/// A temp directory for an OTA script's images, stubs and calls.
struct Ota {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

fn md5_hex(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_string()
}

impl Ota {
    fn new(tools: &[(&str, i32)]) -> Ota {
        let dir = tempfile::tempdir().unwrap();
        let bin = stubs(dir.path(), tools);
        Ota { dir, bin }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the image `name` and returns the daemon's environment for it.
    fn image(&self, name: &str, bytes: &[u8], version: &str) -> Vec<(String, String)> {
        let file = self.path(name);
        fs::write(&file, bytes).unwrap();
        [
            ("UIOT_EVENT", "ota".to_string()),
            ("UIOT_OTA_FILE", file.display().to_string()),
            ("UIOT_OTA_MODULE", "app".to_string()),
            ("UIOT_OTA_VERSION", version.to_string()),
            ("UIOT_OTA_FROM", "1.0.0".to_string()),
            ("UIOT_OTA_MD5", md5_hex(&file)),
            ("UIOT_OTA_SIZE", bytes.len().to_string()),
            ("UIOT_PRODUCT_SN", "70ly1tvowt696r15".to_string()),
            ("UIOT_DEVICE_SN", "aruidyl0rt9tuvod".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Runs etc/ota/`name` with `env` plus `extra`, by `shell` (e.g.
    /// `busybox sh`) when given, else by its #! line.
    fn run(
        &self,
        name: &str,
        env: &[(String, String)],
        extra: &[(&str, &str)],
        shell: &[&str],
    ) -> Run {
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        let script = ota_script(name);
        match shell.split_first() {
            None => run(&script, &[], &self.bin, &all, None),
            Some((prog, args)) => {
                let mut args = args.to_vec();
                args.push(script.to_str().unwrap());
                run(Path::new(prog), &args, &self.bin, &all, None)
            }
        }
    }

    fn calls(&self) -> Vec<String> {
        calls(self.dir.path())
    }
}

/// `env` with `key` set to `value`.
fn with(mut env: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    for (k, v) in &mut env {
        if k == key {
            *v = value.to_string();
        }
    }
    env
}

/// The shells the OTA scripts are run with: their #! line (the system's
/// sh), and BusyBox ash when it is here.
fn shells() -> Vec<Vec<&'static str>> {
    let mut v = vec![vec![]];
    if on_path("busybox") {
        v.push(vec!["busybox", "sh"]);
    } else {
        println!("SKIP: busybox not on PATH; ab-image.sh run by the system's sh only");
    }
    v
}

fn link_target(p: &Path) -> String {
    fs::read_link(p).unwrap().display().to_string()
}

#[test]
fn ab_image_file_mode_installs_into_the_other_directory_and_switches() {
    for shell in shells() {
        let o = Ota::new(&[]);
        let app = o.path("app");
        let mode = [
            ("UIOT_AB_MODE", "file"),
            ("UIOT_AB_DIR", app.to_str().unwrap()),
        ];
        // A plain file: copied as UIOT_AB_FILE_NAME, executable.
        let env = o.image("app-2.0.0.bin", b"#!/bin/sh\necho v2\n", "2.0.0");
        let mut extra = mode.to_vec();
        extra.push(("UIOT_AB_FILE_NAME", "myapp"));
        let r = o.run("ab-image.sh", &env, &extra, &shell);
        assert_eq!(r.code, 0, "{shell:?}: {}", r.stderr);
        assert_eq!(link_target(&app.join("current")), "a");
        assert_eq!(
            fs::read(app.join("a/myapp")).unwrap(),
            b"#!/bin/sh\necho v2\n"
        );
        let m = fs::metadata(app.join("a/myapp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, 0o755);
        assert_eq!(
            fs::read_to_string(app.join("current/VERSION")).unwrap(),
            "2.0.0\n"
        );

        // A gzipped tar: unpacked into b/, current switched, a/ kept.
        let src = o.path("src");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("bin/tool"), "v3\n").unwrap();
        let tgz = o.path("built.tgz");
        let st = Command::new("tar")
            .arg("-czf")
            .arg(&tgz)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let env = o.image("app-3.0.0.tgz", &fs::read(&tgz).unwrap(), "3.0.0");
        let r = o.run("ab-image.sh", &env, &mode, &shell);
        assert_eq!(r.code, 0, "{shell:?}: {}", r.stderr);
        assert_eq!(link_target(&app.join("current")), "b");
        assert_eq!(
            fs::read_to_string(app.join("current/bin/tool")).unwrap(),
            "v3\n"
        );
        assert_eq!(
            fs::read_to_string(app.join("current/VERSION")).unwrap(),
            "3.0.0\n"
        );
        assert_eq!(
            fs::read_to_string(app.join("a/VERSION")).unwrap(),
            "2.0.0\n"
        );

        // A wrong MD5: refused with a message before anything changes.
        let bad = "0123456789abcdef0123456789abcdef";
        let env = with(
            o.image("app-4.0.0.bin", b"v4", "4.0.0"),
            "UIOT_OTA_MD5",
            bad,
        );
        let r = o.run("ab-image.sh", &env, &mode, &shell);
        assert_ne!(r.code, 0);
        assert!(
            r.stderr.contains("MD5") && r.stderr.contains(bad),
            "{}",
            r.stderr
        );
        assert_eq!(link_target(&app.join("current")), "b");
        assert_eq!(
            fs::read_to_string(app.join("a/VERSION")).unwrap(),
            "2.0.0\n"
        );
        // A wrong size likewise.
        let env = with(
            o.image("app-4.0.0.bin", b"v4", "4.0.0"),
            "UIOT_OTA_SIZE",
            "3",
        );
        let r = o.run("ab-image.sh", &env, &mode, &shell);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains("UIOT_OTA_SIZE=3"), "{}", r.stderr);

        // A failing restart: switched back, a failure.
        let env = o.image("app-4.0.0.bin", b"v4", "4.0.0");
        let mut extra = mode.to_vec();
        extra.push(("UIOT_AB_RESTART", "exit 3"));
        let r = o.run("ab-image.sh", &env, &extra, &shell);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains("UIOT_AB_RESTART failed"), "{}", r.stderr);
        assert_eq!(link_target(&app.join("current")), "b");
        assert_eq!(
            fs::read_to_string(app.join("current/VERSION")).unwrap(),
            "3.0.0\n"
        );
        // Without the directory: a clear refusal.
        let r = o.run("ab-image.sh", &env, &[("UIOT_AB_MODE", "file")], &shell);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains("UIOT_AB_DIR is not set"), "{}", r.stderr);
    }
}

#[test]
fn ab_image_block_mode_writes_verifies_switches_and_reboots() {
    for shell in shells() {
        let o = Ota::new(&[("reboot", 0)]);
        // Two "partitions": regular files here.
        let (s1, s2) = (o.path("slot1"), o.path("slot2"));
        let empty = vec![0u8; 4096];
        fs::write(&s1, &empty).unwrap();
        fs::write(&s2, &empty).unwrap();
        let slots = format!("{} {}", s1.display(), s2.display());
        let marker = o.path("active");
        let cmdline = o.path("cmdline");
        fs::write(
            &cmdline,
            format!("console=ttyS0 root={} rootwait\n", s1.display()),
        )
        .unwrap();
        let switched = o.path("switched");
        let switch = format!(
            "echo \"$UIOT_AB_NEXT_SLOT $UIOT_AB_NEXT_NUMBER\" >> '{}'",
            switched.display()
        );
        let extra = [
            ("UIOT_AB_SLOTS", slots.as_str()),
            ("UIOT_AB_ACTIVE_FILE", marker.to_str().unwrap()),
            ("UIOT_AB_CMDLINE", cmdline.to_str().unwrap()),
            ("UIOT_AB_SWITCH", switch.as_str()),
        ];
        let image: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let env = o.image("os.img", &image, "2.0.0");
        // Without a switch command nothing is written.
        let r = o.run("ab-image.sh", &env, &extra[..3], &shell);
        assert_ne!(r.code, 0);
        assert!(
            r.stderr.contains("UIOT_AB_SWITCH is not set"),
            "{}",
            r.stderr
        );
        assert_eq!(fs::read(&s2).unwrap(), empty);

        // Running from slot 1 (root= on the command line): slot 2 written.
        let r = o.run("ab-image.sh", &env, &extra, &shell);
        assert_eq!(r.code, 0, "{shell:?}: {}", r.stderr);
        assert_eq!(&fs::read(&s2).unwrap()[..image.len()], &image[..]);
        assert_eq!(fs::read(&s1).unwrap(), empty);
        assert_eq!(
            fs::read_to_string(&switched).unwrap(),
            format!("{} 2\n", s2.display())
        );
        assert_eq!(
            fs::read_to_string(&marker).unwrap(),
            format!("{}\n", s2.display())
        );
        assert_eq!(o.calls(), ["reboot"]);

        // No root= naming a slot: the marker says slot 2, so slot 1.
        fs::write(&cmdline, "console=ttyS0 root=PARTUUID=abc\n").unwrap();
        let r = o.run("ab-image.sh", &env, &extra, &shell);
        assert_eq!(r.code, 0, "{shell:?}: {}", r.stderr);
        assert_eq!(&fs::read(&s1).unwrap()[..image.len()], &image[..]);
        assert_eq!(
            fs::read_to_string(&marker).unwrap(),
            format!("{}\n", s1.display())
        );

        // A wrong MD5: nothing written, no reboot.
        fs::write(&s2, &empty).unwrap();
        let env = with(env, "UIOT_OTA_MD5", "ffffffffffffffffffffffffffffffff");
        let r = o.run("ab-image.sh", &env, &extra, &shell);
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains("MD5"), "{}", r.stderr);
        assert_eq!(fs::read(&s2).unwrap(), empty);
        assert_eq!(o.calls(), ["reboot", "reboot"]);
    }
}

#[test]
fn openwrt_sysupgrade_tests_the_image_first_and_keeps_settings() {
    let o = Ota::new(&[("sysupgrade", 0)]);
    let env = o.image("fw.bin", b"firmware", "r2");
    let conf = o.path("sysupgrade.conf");
    fs::write(&conf, "/etc/dropbear/\n").unwrap();
    let extra = [("UIOT_SYSUPGRADE_CONF", conf.to_str().unwrap())];
    let file = o.path("fw.bin").display().to_string();
    let r = o.run("openwrt-sysupgrade.sh", &env, &extra, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        o.calls(),
        [
            format!("sysupgrade|-T|{file}"),
            format!("sysupgrade|{file}")
        ]
    );
    // /etc/uiot/ is kept across the upgrade: added once.
    let r = o.run("openwrt-sysupgrade.sh", &env, &extra, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fs::read_to_string(&conf).unwrap(),
        "/etc/dropbear/\n/etc/uiot/\n"
    );

    // -n: passed to both calls, the conf left alone.
    let o = Ota::new(&[("sysupgrade", 0)]);
    let env = o.image("fw.bin", b"firmware", "r2");
    let conf = o.path("sysupgrade.conf");
    let extra = [
        ("UIOT_SYSUPGRADE_CONF", conf.to_str().unwrap()),
        ("UIOT_SYSUPGRADE_ARGS", "-n"),
    ];
    let file = o.path("fw.bin").display().to_string();
    let r = o.run("openwrt-sysupgrade.sh", &env, &extra, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        o.calls(),
        [
            format!("sysupgrade|-T|-n|{file}"),
            format!("sysupgrade|-n|{file}")
        ]
    );
    assert!(!conf.exists());

    // The test fails: no upgrade, a failure with a message.
    let o = Ota::new(&[("sysupgrade", 1)]);
    let env = o.image("fw.bin", b"not for this board", "r2");
    let conf = o.path("sysupgrade.conf");
    let file = o.path("fw.bin").display().to_string();
    let r = o.run(
        "openwrt-sysupgrade.sh",
        &env,
        &[("UIOT_SYSUPGRADE_CONF", conf.to_str().unwrap())],
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("not a valid image for this board"),
        "{}",
        r.stderr
    );
    assert_eq!(o.calls(), [format!("sysupgrade|-T|{file}")]);
    assert!(!conf.exists());

    // Not run by the daemon: said so.
    let r = o.run("openwrt-sysupgrade.sh", &[], &[], &[]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("UIOT_OTA_FILE is not set"),
        "{}",
        r.stderr
    );
}

/// Stub `dpkg-deb` (recording; --field prints STUB_PACKAGE or
/// STUB_VERSION, --info exits STUB_INFO_STATUS) and `dpkg` (recording,
/// exiting STUB_DPKG_STATUS).
fn dpkg_stubs(o: &Ota) {
    let rec = format!(
        "{{ printf '%s' \"${{0##*/}}\"; for a in \"$@\"; do printf '|%s' \"$a\"; done; echo; }} >> '{}'\n",
        o.path("calls").display()
    );
    script(
        &o.bin.join("dpkg-deb"),
        &format!(
            "{rec}case \"$1\" in\n--info) exit \"${{STUB_INFO_STATUS:-0}}\" ;;\n\
             --field) if [ \"$3\" = Package ]; then echo \"$STUB_PACKAGE\"; else echo \"$STUB_VERSION\"; fi ;;\nesac\n"
        ),
    );
    script(
        &o.bin.join("dpkg"),
        &format!("{rec}exit \"${{STUB_DPKG_STATUS:-0}}\"\n"),
    );
}

#[test]
fn debian_dpkg_checks_the_package_and_returns_dpkg_status() {
    let stub = [("STUB_PACKAGE", "myapp"), ("STUB_VERSION", "2.0.0")];
    let o = Ota::new(&[]);
    dpkg_stubs(&o);
    let env = o.image("myapp.deb", b"!<arch>\n", "2.0.0");
    let file = o.path("myapp.deb").display().to_string();
    let r = o.run("debian-dpkg.sh", &env, &stub, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        o.calls(),
        [
            format!("dpkg-deb|--info|{file}"),
            format!("dpkg-deb|--field|{file}|Package"),
            format!("dpkg-deb|--field|{file}|Version"),
            format!("dpkg|--force-confdef|--force-confold|-i|{file}"),
        ]
    );

    // dpkg fails: its status is the script's.
    let o = Ota::new(&[]);
    dpkg_stubs(&o);
    let env = o.image("myapp.deb", b"!<arch>\n", "2.0.0");
    let mut extra = stub.to_vec();
    extra.push(("STUB_DPKG_STATUS", "2"));
    let r = o.run("debian-dpkg.sh", &env, &extra, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("dpkg -i"), "{}", r.stderr);

    // Not a .deb, the wrong version, the wrong package: dpkg never runs.
    for (more, says) in [
        (("STUB_INFO_STATUS", "2"), "not a Debian package"),
        (("STUB_VERSION", "1.9.9"), "the upgrade's target is '2.0.0'"),
        (("UIOT_DPKG_PACKAGE", "other"), "not 'other'"),
    ] {
        let o = Ota::new(&[]);
        dpkg_stubs(&o);
        let env = o.image("myapp.deb", b"!<arch>\n", "2.0.0");
        let mut all = stub.to_vec();
        all.push(more);
        let r = o.run("debian-dpkg.sh", &env, &all, &[]);
        assert_ne!(r.code, 0, "{says}");
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
        assert!(
            !o.calls().iter().any(|c| c.starts_with("dpkg|")),
            "{says}: {:?}",
            o.calls()
        );
    }
    // The version check can be turned off.
    let o = Ota::new(&[]);
    dpkg_stubs(&o);
    let env = o.image("myapp.deb", b"!<arch>\n", "2.0.0");
    let r = o.run(
        "debian-dpkg.sh",
        &env,
        &[
            ("STUB_PACKAGE", "myapp"),
            ("STUB_VERSION", "2.0.0-1"),
            ("UIOT_DPKG_CHECK_VERSION", "0"),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(o.calls().len(), 4, "{:?}", o.calls());
}

/// Under systemd (INVOCATION_ID set) dpkg runs in a transient unit of its
/// own, so uiot.service's sandbox and a restart of it leave dpkg alone.
#[test]
fn debian_dpkg_under_systemd_runs_dpkg_in_its_own_unit() {
    let stub = [("STUB_PACKAGE", "myapp"), ("STUB_VERSION", "2.0.0")];
    // The image may be anywhere (the checkout may be under /tmp): the
    // private-/tmp refusal is off here and checked at the end.
    let o = Ota::new(&[]);
    dpkg_stubs(&o);
    // systemd-run: records its arguments, then runs what follows `--`.
    script(
        &o.bin.join("systemd-run"),
        &format!(
            "{{ printf systemd-run; for a in \"$@\"; do printf '|%s' \"$a\"; done; echo; }} >> '{}'\n\
             while [ \"$1\" != -- ]; do shift; done; shift; exec \"$@\"\n",
            o.path("calls").display()
        ),
    );
    let env = o.image("myapp.deb", b"!<arch>\n", "2.0.0");
    let file = o.path("myapp.deb").display().to_string();
    let mut extra = stub.to_vec();
    extra.push(("INVOCATION_ID", "0123456789abcdef"));
    extra.push(("UIOT_DPKG_PRIVATE_TMP", "0"));
    for status in ["0", "3"] {
        let _ = fs::remove_file(o.path("calls"));
        let mut extra = extra.clone();
        extra.push(("STUB_DPKG_STATUS", status));
        let r = o.run("debian-dpkg.sh", &env, &extra, &[]);
        assert_eq!(r.code.to_string(), status, "{}", r.stderr);
        let calls = o.calls();
        assert_eq!(
            calls[3..],
            [
                "systemd-run|--wait|--pipe|--collect|--quiet|--unit=uiot-ota-apply|\
                 --setenv=DEBIAN_FRONTEND=noninteractive|--|dpkg|--force-confdef|--force-confold|-i|"
                    .to_string()
                    + &file,
                format!("dpkg|--force-confdef|--force-confold|-i|{file}"),
            ],
            "{calls:?}"
        );
    }
    // Turned off: dpkg directly.
    let _ = fs::remove_file(o.path("calls"));
    extra.push(("UIOT_DPKG_SYSTEMD_RUN", "0"));
    let r = o.run("debian-dpkg.sh", &env, &extra, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !o.calls().iter().any(|c| c.starts_with("systemd-run")),
        "{:?}",
        o.calls()
    );

    // An image in /tmp under systemd (PrivateTmp=yes): refused, nothing run.
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let bin = stubs(dir.path(), &[]);
    let t = Ota { dir, bin };
    dpkg_stubs(&t);
    let env = t.image("myapp.deb", b"!<arch>\n", "2.0.0");
    extra.pop();
    extra.pop();
    let r = t.run("debian-dpkg.sh", &env, &extra, &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("private /tmp"), "{}", r.stderr);
    assert!(
        !t.calls()
            .iter()
            .any(|c| c.starts_with("dpkg|") || c.starts_with("systemd-run")),
        "{:?}",
        t.calls()
    );
}
