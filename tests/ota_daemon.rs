//! Firmware upgrades by `uiot run` against a real Mosquitto and
//! `uiot-sim` (its OTA side and firmware server): the reports in order,
//! a resumed download, each broken download's ErrCode with nothing
//! applied, no room refused before the download, a cancel mid-download, a
//! failing apply (-5), success only after a "reboot" (a restart of the
//! daemon with the new version file), two modules, an upgrade pushed while
//! offline, `uiot ota status` and `uiot ota check`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::{static_device, uiot, write_config};
use support::daemon::Daemon;
use support::sim::Sim;
use support::{Broker, Device, TempDir};

const WAIT: Duration = Duration::from_secs(30);
/// The download's chunk: a resume may fetch at most this much twice.
const CHUNK: u64 = 16 * 1024;

/// One board: a broker, the simulated cloud with its firmware server, a
/// device, its directory (config, version files, apply script).
struct Board {
    broker: Broker,
    sim: Sim,
    d: Device,
    dir: TempDir,
}

impl Board {
    fn new(name: &str) -> Option<Board> {
        let broker = support::broker()?;
        let d = broker.device(0);
        let sim = Sim::start(
            &broker,
            &[
                "--http-port",
                "0",
                "--device",
                &format!("{}:{}:{}", d.product_sn, d.device_sn, d.secret),
            ],
        );
        let dir = TempDir::new(name);
        Some(Board {
            broker,
            sim,
            d,
            dir,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `version_file` of `module` holding `v`.
    fn set_version(&self, module: &str, v: &str) {
        std::fs::write(self.path(&format!("{module}.version")), format!("{v}\n")).unwrap();
    }

    fn version(&self, module: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{module}.version")))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The apply script: records each call in `applied`, copies the image
    /// to `installed-MODULE`, and then per `mode`: `ok` writes the target
    /// version, `reboot` leaves the version alone (a reboot would switch
    /// it), `fail` exits 3.
    fn apply_script(&self, mode: &str) -> PathBuf {
        let p = self.path("apply.sh");
        let dir = self.dir.path().display();
        let tail = match mode {
            "ok" => format!(
                "printf '%s\\n' \"$UIOT_OTA_VERSION\" > '{dir}/'\"$UIOT_OTA_MODULE\".version"
            ),
            "reboot" => "exit 0".to_string(),
            _ => "echo 'flash failed' >&2; exit 3".to_string(),
        };
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\nset -eu\necho \"$UIOT_EVENT $UIOT_OTA_MODULE $UIOT_OTA_FROM $UIOT_OTA_VERSION $UIOT_OTA_MD5 $UIOT_OTA_SIZE $1\" >> '{dir}/applied'\n\
                 cp \"$UIOT_OTA_FILE\" '{dir}/installed-'\"$UIOT_OTA_MODULE\"\n{tail}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// The config: `[ota]` for the module default (and `extra` after it).
    fn config(&self, apply_mode: &str, ota_extra: &str, extra: &str) -> PathBuf {
        let script = self.apply_script(apply_mode);
        let dir = self.dir.path();
        let daemon = format!(
            "[reconnect]\nmin = 1\nmax = 2\n[daemon]\nsocket = {}\n\
             [ota]\ndir = {}\ntimeout = 2\nretries = 1\nversion_file = {}\n\
             apply = {} {{file}}\n{ota_extra}{extra}",
            dir.join("run/uiot.sock").display(),
            dir.join("ota").display(),
            dir.join("default.version").display(),
            script.display(),
        );
        write_config(dir, self.broker.port(), &static_device(&self.d), &daemon)
    }

    /// A firmware file of `len` bytes.
    fn firmware(&self, name: &str, len: usize) -> PathBuf {
        let p = self.path(name);
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn push(&mut self, module: &str, version: &str, file: &Path, mode: &str) -> Value {
        let (psn, dsn) = (self.d.product_sn.clone(), self.d.device_sn.clone());
        self.sim.send(&format!(
            "ota push {psn} {dsn} {module} {version} {} {mode}",
            file.display()
        ));
        self.sim.expect("the push", |l| {
            l["ota"] == "pushed" && l["module"] == module && l["version"] == version
        })
    }

    /// The OTA reports of the device so far.
    fn reports(&self) -> Vec<Value> {
        self.sim
            .lines()
            .into_iter()
            .filter(|l| l["sim"] == "ota" && l["dsn"] == self.d.device_sn.as_str())
            .collect()
    }

    /// The first report with `method` for `module`/`version`, within WAIT.
    fn wait_report(&self, method: &str, module: &str, version: &str) -> Value {
        let dsn = self.d.device_sn.clone();
        match self.sim.wait_for(
            |l| {
                l["sim"] == "ota"
                    && l["dsn"] == dsn.as_str()
                    && l["method"] == method
                    && l["module"] == module
                    && l["version"] == version
            },
            WAIT,
        ) {
            Some(l) => l,
            None => panic!(
                "no {method} for {module} {version}; reports: {:#?}",
                self.reports()
            ),
        }
    }

    fn fw_requests(&self, version: &str) -> Vec<Value> {
        self.sim
            .lines()
            .into_iter()
            .filter(|l| l["sim"] == "fw-request" && l["version"] == version)
            .collect()
    }

    fn applied(&self) -> String {
        std::fs::read_to_string(self.path("applied")).unwrap_or_default()
    }

    /// `uiot ota status`, one JSON value per module.
    fn status(&self, cfg: &Path) -> Vec<Value> {
        let out = uiot(&["ota", "status", "-c", cfg.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "uiot ota status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Position of the first report accepted by `pred`.
fn index(reports: &[Value], what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    reports
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no {what} in {reports:#?}"))
}

#[test]
fn an_upgrade_reports_in_order_and_succeeds_once_the_new_version_runs() {
    let Some(mut b) = Board::new("ota-ok") else {
        return;
    };
    b.set_version("default", "1.0.0");
    let cfg = b.config("ok", "", "");
    let daemon = Daemon::start(&cfg);
    b.wait_report("request_firmware", "default", "1.0.0");
    let fw = b.firmware("fw.bin", 300_000);
    let pushed = b.push("default", "2.0.0", &fw, "ok");
    b.wait_report("report_success", "default", "2.0.0");
    let r = b.reports();
    let version = index(&r, "report_version 1.0.0", |l| {
        l["method"] == "report_version" && l["version"] == "1.0.0"
    });
    let first_dl = index(&r, "downloading", |l| l["state"] == "downloading");
    let last_dl = r.iter().rposition(|l| l["state"] == "downloading").unwrap();
    let burning = index(&r, "burning", |l| l["state"] == "burning");
    let success = index(&r, "report_success", |l| l["method"] == "report_success");
    assert!(
        version < first_dl && last_dl < burning && burning < success,
        "{r:#?}"
    );
    assert_eq!(r[last_dl]["percent"], 100, "{r:#?}");
    assert_eq!(r[burning]["version"], "2.0.0");
    assert!(!r.iter().any(|l| l["method"] == "report_fail"), "{r:#?}");
    // The image the script got is the firmware, with its facts in the env.
    assert_eq!(
        std::fs::read(b.path("installed-default")).unwrap(),
        std::fs::read(&fw).unwrap()
    );
    let applied = b.applied();
    let md5 = pushed["md5"].as_str().unwrap();
    assert!(
        applied.starts_with(&format!("ota default 1.0.0 2.0.0 {md5} 300000 ")),
        "{applied}"
    );
    assert_eq!(applied.lines().count(), 1, "applied once: {applied}");
    // Status: running and reported 2.0.0, nothing pending, last success;
    // the image is gone from [ota] dir.
    let st = &b.status(&cfg)[0];
    assert_eq!(st["module"], "default");
    assert_eq!(st["running"], "2.0.0");
    assert_eq!(st["reported"], "2.0.0");
    assert!(st["pending"].is_null(), "{st}");
    assert_eq!(st["last"]["result"], "success", "{st}");
    let left: Vec<_> = std::fs::read_dir(b.path("ota"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "state.json")
        .collect();
    assert!(left.is_empty(), "left in [ota] dir: {left:?}");
    drop(daemon);
}

#[test]
fn a_cut_download_resumes_and_fetches_at_most_a_chunk_twice() {
    let Some(mut b) = Board::new("ota-cut") else {
        return;
    };
    b.set_version("default", "1.0.0");
    let cfg = b.config("ok", "", "");
    let _daemon = Daemon::start(&cfg);
    b.wait_report("request_firmware", "default", "1.0.0");
    let size = 1_000_000u64;
    let fw = b.firmware("fw.bin", size as usize);
    b.push("default", "2.0.0", &fw, "cut");
    b.wait_report("report_success", "default", "2.0.0");
    let reqs = b.fw_requests("2.0.0");
    assert!(reqs.len() >= 2, "{reqs:#?}");
    assert!(
        reqs.iter()
            .any(|r| r["status"] == 206 && r["range_start"].as_u64().unwrap_or(0) > 0),
        "no resumed request: {reqs:#?}"
    );
    let sent: u64 = reqs.iter().map(|r| r["bytes_sent"].as_u64().unwrap()).sum();
    assert!(
        sent >= size && sent - size <= CHUNK,
        "{sent} bytes sent for {size}: {reqs:#?}"
    );
    assert_eq!(
        std::fs::read(b.path("installed-default")).unwrap(),
        std::fs::read(&fw).unwrap()
    );
}

#[test]
fn broken_downloads_fail_with_their_err_code_and_nothing_is_applied() {
    let Some(mut b) = Board::new("ota-broken") else {
        return;
    };
    b.set_version("default", "1.0.0");
    let cfg = b.config("ok", "", "");
    let _daemon = Daemon::start(&cfg);
    b.wait_report("request_firmware", "default", "1.0.0");
    let fw = b.firmware("fw.bin", 200_000);
    for (version, mode, code) in [
        ("2.0.1", "badmd5", -4),
        ("2.0.2", "truncated", -4),
        ("2.0.3", "expired", -2),
        ("2.0.4", "missing", -1),
        ("2.0.5", "stall", -3),
    ] {
        b.push("default", version, &fw, mode);
        let fail = b.wait_report("report_fail", "default", version);
        assert_eq!(fail["code"], code, "{mode}: {fail}");
        assert!(b.applied().is_empty(), "{mode}: applied {}", b.applied());
        assert!(
            !b.reports().iter().any(|l| l["state"] == "burning"),
            "{mode}: burning reported"
        );
    }
    assert_eq!(b.version("default"), "1.0.0");
    let st = &b.status(&cfg)[0];
    assert_eq!(st["last"]["result"], "fail", "{st}");
    assert_eq!(st["last"]["code"], -3, "{st}");
    assert_eq!(st["running"], "1.0.0");
}

#[test]
fn too_little_room_is_refused_before_the_download() {
    let Some(mut b) = Board::new("ota-room") else {
        return;
    };
    b.set_version("default", "1.0.0");
    // 1 TiB kept free: more than any test machine has.
    let cfg = b.config("ok", "keep_free = 1048576\n", "");
    let daemon = Daemon::start(&cfg);
    b.wait_report("request_firmware", "default", "1.0.0");
    let fw = b.firmware("fw.bin", 100_000);
    b.push("default", "2.0.0", &fw, "ok");
    let fail = b.wait_report("report_fail", "default", "2.0.0");
    assert_eq!(fail["code"], -1, "{fail}");
    assert!(b.fw_requests("2.0.0").is_empty(), "downloaded anyway");
    assert!(b.applied().is_empty());
    daemon.wait_log("not enough free space", WAIT);
}

#[test]
fn a_cancel_mid_download_stops_it_and_applies_nothing() {
    let Some(mut b) = Board::new("ota-cancel") else {
        return;
    };
    b.set_version("default", "1.0.0");
    let cfg = b.config("ok", "", "");
    let daemon = Daemon::start(&cfg);
    b.wait_report("request_firmware", "default", "1.0.0");
    // About 16 s at the slow server's 256 KiB/s.
    let fw = b.firmware("fw.bin", 4_000_000);
    b.push("default", "2.0.0", &fw, "slow");
    let part = b.path("ota/.default-2.0.0.part");
    let deadline = Instant::now() + WAIT;
    while std::fs::metadata(&part).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (psn, dsn) = (b.d.product_sn.clone(), b.d.device_sn.clone());
    b.sim.send(&format!("ota cancel {psn} {dsn} default 2.0.0"));
    daemon.wait_log("cancelled", WAIT);
    let deadline = Instant::now() + WAIT;
    while part.exists() {
        assert!(Instant::now() < deadline, "the staging file stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(b.applied().is_empty());
    let r = b.reports();
    assert!(
        !r.iter()
            .any(|l| l["method"] == "report_success" || l["state"] == "burning"),
        "{r:#?}"
    );
    let st = &b.status(&cfg)[0];
    assert_eq!(st["last"]["result"], "cancelled", "{st}");
}

#[test]
fn a_failing_apply_reports_minus_5_and_keeps_the_old_version() {
    let Some(mut b) = Board::new("ota-applyfail") else {
        return;
    };
    b.set_version("default", "1.0.0");
    let cfg = b.config("fail", "", "");
    let _daemon = Daemon::start(&cfg);
    b.wait_report("request_firmware", "default", "1.0.0");
    let fw = b.firmware("fw.bin", 50_000);
    b.push("default", "2.0.0", &fw, "ok");
    let fail = b.wait_report("report_fail", "default", "2.0.0");
    assert_eq!(fail["code"], -5, "{fail}");
    assert_eq!(b.applied().lines().count(), 1);
    assert!(!b.reports().iter().any(|l| l["method"] == "report_success"));
    let st = &b.status(&cfg)[0];
    assert_eq!(st["running"], "1.0.0");
    assert!(st["pending"].is_null(), "{st}");
    assert!(
        st["last"]["reason"]
            .as_str()
            .unwrap()
            .contains("exited with 3"),
        "{st}"
    );
}

#[test]
fn success_is_reported_only_after_the_restart_that_runs_the_new_version() {
    let Some(mut b) = Board::new("ota-reboot") else {
        return;
    };
    b.set_version("default", "1.0.0");
    let cfg = b.config("reboot", "", "");
    let mut daemon = Daemon::start(&cfg);
    b.wait_report("request_firmware", "default", "1.0.0");
    let fw = b.firmware("fw.bin", 50_000);
    b.push("default", "2.0.0", &fw, "ok");
    daemon.wait_log("success is reported once 2.0.0 runs", WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let r = b.reports();
    assert!(r.iter().any(|l| l["state"] == "burning"), "{r:#?}");
    assert!(
        !r.iter()
            .any(|l| l["method"] == "report_success" || l["method"] == "report_fail"),
        "reported before the new version ran: {r:#?}"
    );
    let st = &b.status(&cfg)[0];
    assert_eq!(st["pending"]["version"], "2.0.0", "{st}");
    assert_eq!(st["pending"]["from"], "1.0.0", "{st}");
    // "Reboot": the daemon stops, the new version is in place, it starts.
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(WAIT), Some(0));
    b.set_version("default", "2.0.0");
    let _daemon = Daemon::start(&cfg);
    b.wait_report("report_success", "default", "2.0.0");
    b.wait_report("report_version", "default", "2.0.0");
    let st = &b.status(&cfg)[0];
    assert!(st["pending"].is_null(), "{st}");
    assert_eq!(st["last"]["result"], "success", "{st}");
    assert_eq!(b.applied().lines().count(), 1, "applied once");
}

#[test]
fn a_restart_still_on_the_old_version_reports_minus_5() {
    let Some(mut b) = Board::new("ota-rollback") else {
        return;
    };
    b.set_version("default", "1.0.0");
    let cfg = b.config("reboot", "", "");
    let mut daemon = Daemon::start(&cfg);
    b.wait_report("request_firmware", "default", "1.0.0");
    let fw = b.firmware("fw.bin", 50_000);
    b.push("default", "2.0.0", &fw, "ok");
    daemon.wait_log("success is reported once 2.0.0 runs", WAIT);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(WAIT), Some(0));
    // The board came back on the old image (an A/B rollback).
    let _daemon = Daemon::start(&cfg);
    let fail = b.wait_report("report_fail", "default", "2.0.0");
    assert_eq!(fail["code"], -5, "{fail}");
    assert!(!b.reports().iter().any(|l| l["method"] == "report_success"));
}

#[test]
fn two_modules_upgrade_each_with_its_own_version() {
    let Some(mut b) = Board::new("ota-two") else {
        return;
    };
    b.set_version("default", "1.0.0");
    b.set_version("wifi", "w1");
    let wifi = format!(
        "[ota.wifi]\nversion_file = {}\n",
        b.path("wifi.version").display()
    );
    let cfg = b.config("ok", "", &wifi);
    let _daemon = Daemon::start(&cfg);
    b.wait_report("request_firmware", "default", "1.0.0");
    b.wait_report("request_firmware", "wifi", "w1");
    let fw1 = b.firmware("fw1.bin", 400_000);
    let fw2 = b.firmware("fw2.bin", 123_456);
    b.push("default", "2.0.0", &fw1, "ok");
    b.push("wifi", "w2", &fw2, "ok");
    b.wait_report("report_success", "default", "2.0.0");
    b.wait_report("report_success", "wifi", "w2");
    assert_eq!(
        (b.version("default"), b.version("wifi")),
        ("2.0.0".into(), "w2".into())
    );
    assert_eq!(
        std::fs::read(b.path("installed-wifi")).unwrap(),
        std::fs::read(&fw2).unwrap()
    );
    let st = b.status(&cfg);
    assert_eq!(st.len(), 2);
    assert_eq!(
        (st[1]["module"].clone(), st[1]["running"].clone()),
        ("wifi".into(), "w2".into())
    );
}

#[test]
fn an_upgrade_pushed_while_offline_comes_with_the_next_start_and_ota_check_shows_it() {
    let Some(mut b) = Board::new("ota-offline") else {
        return;
    };
    b.set_version("default", "1.0.0");
    let cfg = b.config("ok", "", "");
    let fw = b.firmware("fw.bin", 80_000);
    // Nobody is online: the notice is lost, the upgrade stays pending.
    b.push("default", "2.0.0", &fw, "ok");
    let out = uiot(&[
        "ota",
        "check",
        "--direct",
        "-W",
        "10",
        "-c",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["module"], "default");
    assert_eq!(line["running"], "1.0.0");
    assert_eq!(line["update"]["version"], "2.0.0", "{line}");
    assert_eq!(line["update"]["size"], 80_000);
    assert!(b.applied().is_empty(), "check installs nothing");
    let _daemon = Daemon::start(&cfg);
    b.wait_report("report_success", "default", "2.0.0");
    assert_eq!(b.version("default"), "2.0.0");
    // Nothing pending any more.
    let out = uiot(&[
        "ota",
        "check",
        "--via-daemon",
        "-W",
        "2",
        "-c",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["running"], "2.0.0");
    assert!(line["update"].is_null(), "{line}");
}

#[test]
fn ota_commands_explain_a_missing_or_bad_setup() {
    let dir = TempDir::new("ota-cli");
    let cfg = write_config(
        dir.path(),
        1,
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = hly3dk1u5y8fq0b9\n",
        "",
    );
    let out = uiot(&["ota", "status", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [ota] module"));
    let out = uiot(&["ota", "frobnicate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use status or check"));
    // A version file that is not there: status says so per module.
    let cfg = write_config(
        dir.path(),
        1,
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = hly3dk1u5y8fq0b9\n",
        &format!(
            "[ota]\ndir = {}\nversion_file = {}\napply = true\n",
            dir.path().join("ota").display(),
            dir.path().join("nope").display()
        ),
    );
    let out = uiot(&["ota", "status", "-c", cfg.to_str().unwrap()]);
    assert!(out.status.success());
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        line["running"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot read version_file"),
        "{line}"
    );
}
