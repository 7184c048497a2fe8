//! `uiot check` and the CLI skeleton, run as a user would: the built binary
//! with temporary configuration files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "hly3dk1u5y8fq0b9";

/// A configuration file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "uiot-cli-check-{}-{}.ini",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn name(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn good() -> TempFile {
    TempFile::new(&format!(
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = {SECRET}\n\
         [connection]\nkeep_alive = 600\n"
    ))
}

fn uiot(args: &[&str], config_env: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uiot"));
    cmd.args(args).env("RUST_LOG", "trace");
    match config_env {
        Some(p) => cmd.env("UIOT_CONFIG", p),
        None => cmd.env_remove("UIOT_CONFIG"),
    };
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn assert_secret_absent(o: &Output) {
    assert!(
        !stdout(o).contains(SECRET),
        "secret on stdout:\n{}",
        stdout(o)
    );
    assert!(
        !stderr(o).contains(SECRET),
        "secret on stderr:\n{}",
        stderr(o)
    );
}

#[test]
fn good_file_prints_effective_settings_with_the_secret_masked() {
    let f = good();
    let o = uiot(&["check", "-c", f.path().to_str().unwrap()], None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "product_sn = 70ly1tvowt696r15",
        "device_secret = <hidden>",
        "host = mqtt-cn-sh2.iot.ucloud.cn",
        "port = 8883",
        "tls = true",
        "keep_alive = 600",
        "clean_session = true",
        "protocol = 3.1.1",
        "connect_timeout = 10",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    assert_secret_absent(&o);
}

#[test]
fn long_option_forms_work() {
    let f = good();
    let p = f.path().to_str().unwrap();
    assert_eq!(code(&uiot(&["check", "--config", p], None)), 0);
    assert_eq!(code(&uiot(&["check", &format!("--config={p}")], None)), 0);
}

#[test]
fn bad_file_lists_every_problem_and_exits_78() {
    let f = TempFile::new(&format!(
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = x\ndevice_secret = {SECRET}\nproduct_secret = {SECRET}\n\
         [connection]\nkeep_alive = 10\nkeepalive = 60\ntls = perhaps\n"
    ));
    let o = uiot(&["check", "-c", f.path().to_str().unwrap()], None);
    assert_eq!(code(&o), 78);
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 5, "{err}");
    assert!(lines.iter().all(|l| l.starts_with("uiot: ")), "{err}");
    let name = f.path().display().to_string();
    for want in [
        format!("uiot: {name}: [connection] keepalive: unknown key; did you mean keep_alive?"),
        format!("uiot: {name}: [device] device_sn = x: must be 4..64 characters"),
        format!("uiot: {name}: [device] device_secret, product_secret: both are set"),
        format!("uiot: {name}: [connection] tls = perhaps: must be true or false"),
        format!("uiot: {name}: [connection] keep_alive = 10: must be 30..1200 seconds (UIoT Core refuses others)"),
    ] {
        assert!(lines.iter().any(|l| l.starts_with(&want)), "missing {want:?} in:\n{err}");
    }
    assert_secret_absent(&o);
}

#[test]
fn uiot_config_is_used_when_no_flag_is_given() {
    let f = good();
    let o = uiot(&["check"], Some(f.path()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains(&f.path().display().to_string()));
    assert!(stdout(&o).contains("keep_alive = 600"));

    // -c wins over UIOT_CONFIG.
    let bad = TempFile::new("[device]\n");
    let o = uiot(
        &["check", "-c", f.path().to_str().unwrap()],
        Some(bad.path()),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = uiot(&["check"], Some(bad.path()));
    assert_eq!(code(&o), 78);
}

#[test]
fn missing_files_are_config_errors_that_say_what_to_do() {
    let missing = std::env::temp_dir().join("uiot-cli-check-no-such-file.ini");
    let m = missing.to_str().unwrap();

    let o = uiot(&["check", "-c", m], None);
    assert_eq!(code(&o), 78);
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("uiot: {m}: cannot read the configuration file: ")),
        "{err}"
    );
    assert!(err.contains("-c"), "{err}");

    let o = uiot(&["check"], Some(&missing));
    assert_eq!(code(&o), 78);
    assert!(
        stderr(&o).contains(m) && stderr(&o).contains("UIOT_CONFIG"),
        "{}",
        stderr(&o)
    );

    // The default file: only checkable where it does not exist.
    if !Path::new("/etc/uiot/uiot.ini").exists() {
        let o = uiot(&["check"], None);
        assert_eq!(code(&o), 78);
        let err = stderr(&o);
        assert!(err.contains("/etc/uiot/uiot.ini"), "{err}");
        assert!(err.contains("pass -c FILE or set UIOT_CONFIG"), "{err}");
    }
}

#[test]
fn command_line_mistakes_exit_64_with_usage() {
    let f = good();
    let p = f.path().to_str().unwrap();
    for (args, problem, usage) in [
        (
            vec!["frobnicate"],
            "uiot: unknown command 'frobnicate'",
            "usage: uiot <command>",
        ),
        (vec![], "uiot: missing command", "usage: uiot <command>"),
        (
            vec!["--frob"],
            "uiot: invalid option '--frob'",
            "usage: uiot <command>",
        ),
        (
            vec!["check", "--frob", "-c", p],
            "uiot: invalid option '--frob'",
            "usage: uiot check [-c FILE]",
        ),
        (
            vec!["check", "-c"],
            "uiot: missing argument for option '-c'",
            "usage: uiot check [-c FILE]",
        ),
        (
            vec!["check", "-c", p, "extra"],
            "uiot: unexpected argument",
            "usage: uiot check [-c FILE]",
        ),
        (
            vec!["help", "frobnicate"],
            "uiot: unknown command 'frobnicate'",
            "usage: uiot help",
        ),
    ] {
        let o = uiot(&args, None);
        assert_eq!(code(&o), 64, "{args:?}");
        let err = stderr(&o);
        assert!(err.starts_with(problem), "{args:?}: {err}");
        assert!(err.lines().any(|l| l.starts_with(usage)), "{args:?}: {err}");
        assert_eq!(stdout(&o), "", "{args:?}");
    }
}

#[test]
fn help_and_version() {
    for args in [vec!["--help"], vec!["-h"], vec!["help"]] {
        let o = uiot(&args, None);
        assert_eq!(code(&o), 0, "{args:?}");
        let out = stdout(&o);
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with("check ") && l.contains("configuration")),
            "{args:?}: {out}"
        );
        assert!(
            out.lines().any(|l| l.trim_start().starts_with("help ")),
            "{out}"
        );
    }
    for args in [
        vec!["help", "check"],
        vec!["check", "--help"],
        vec!["check", "-h"],
    ] {
        let o = uiot(&args, None);
        assert_eq!(code(&o), 0, "{args:?}");
        let out = stdout(&o);
        assert!(
            out.starts_with("usage: uiot check [-c FILE]\n"),
            "{args:?}: {out}"
        );
        assert!(out.contains("--config FILE"), "{out}");
    }
    let o = uiot(&["--version"], None);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "uiot 0.1.0\n"));
}

#[test]
fn example_config_is_accepted() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/uiot.ini");
    let o = uiot(&["check", "-c", example], None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("device_secret = <hidden>"));
    assert!(!stdout(&o).contains("REPLACE-WITH"), "{}", stdout(&o));
}

/// A fresh directory in the temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "uiot-cli-check-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn fifo(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        let status = Command::new("mkfifo").arg(&p).status().unwrap();
        assert!(status.success(), "mkfifo {}", p.display());
        p
    }
    /// A file of `len` bytes that occupies no disk space.
    fn sparse(&self, name: &str, len: u64) -> PathBuf {
        let p = self.0.join(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs uiot like `uiot()`, but fails the test instead of hanging when it
/// has not finished within 20 s.
fn uiot_bounded(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uiot"))
        .args(args)
        .env_remove("UIOT_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("uiot {args:?} still running after 20 s: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn dynamic(secret_file: &Path) -> TempFile {
    let f = TempFile::new(&format!(
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\n\
         product_secret = {SECRET}\nsecret_file = {}\n",
        secret_file.display()
    ));
    chmod(f.path(), 0o600);
    f
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_fifo_device_or_directory_as_config_exits_78_without_hanging() {
    let d = TempDir::new("kinds");
    let fifo = d.fifo("uiot.ini");
    let dir = d.0.to_str().unwrap().to_string();
    for (path, what) in [
        (fifo.to_str().unwrap(), "a FIFO (named pipe)"),
        ("/dev/zero", "a character device"),
        (dir.as_str(), "a directory"),
    ] {
        let o = uiot_bounded(&["check", "-c", path]);
        assert_eq!(code(&o), 78, "{path}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "uiot: {path}: not a regular file but {what}; give the path of a regular INI \
                 configuration file\n"
            )
        );
        assert_eq!(stdout(&o), "");
    }
}

#[test]
fn an_oversized_config_is_refused_by_its_size() {
    let d = TempDir::new("big");
    let big = d.sparse("uiot.ini", 1 << 30);
    let o = uiot_bounded(&["check", "-c", big.to_str().unwrap()]);
    assert_eq!(code(&o), 78, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1073741824 bytes, more than the 1048576 accepted"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_bad_secret_file_exits_78_and_is_never_sent() {
    let d = TempDir::new("secret");
    let fifo = d.fifo("device.secret");
    let huge = d.sparse("huge.secret", 50 << 20);
    for (file, want) in [
        (fifo.as_path(), "not a regular file but a FIFO (named pipe)"),
        (
            Path::new("/dev/zero"),
            "not a regular file but a character device",
        ),
        (huge.as_path(), "52428800 bytes, more than the 64 accepted"),
    ] {
        let f = dynamic(file);
        let o = uiot_bounded(&["check", "-c", f.name()]);
        assert_eq!(code(&o), 78, "{}: {}", file.display(), stderr(&o));
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!(
                "uiot: {}: [device] secret_file = {}: {want}",
                f.name(),
                file.display()
            )),
            "{err}"
        );
        assert_secret_absent(&o);
    }
    // A good one passes, and one others may read gets a warning.
    let good = d.0.join("good.secret");
    std::fs::write(&good, "hly3dk1u5y8fq0b9\n").unwrap();
    chmod(&good, 0o600);
    let f = dynamic(&good);
    let o = uiot_bounded(&["check", "-c", f.name()]);
    assert_eq!((code(&o), stderr(&o).as_str()), (0, ""));
    chmod(&good, 0o644);
    let o = uiot_bounded(&["check", "-c", f.name()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("run chmod 600 {}", good.display())),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_config_with_a_secret_that_others_may_read_gets_a_chmod_600_warning() {
    let f = good();
    chmod(f.path(), 0o644);
    let o = uiot_bounded(&["check", "-c", f.name()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let name = f.name();
    assert_eq!(
        stderr(&o),
        format!(
            "uiot: warning: {name}: holds a secret ([device] device_secret) and other users may \
             read it (mode 0644); run chmod 600 {name}\n"
        )
    );
    assert!(
        stdout(&o).contains("# 1 warning(s) on stderr"),
        "{}",
        stdout(&o)
    );
    assert_secret_absent(&o);
    chmod(f.path(), 0o600);
    let o = uiot_bounded(&["check", "-c", name]);
    assert_eq!((code(&o), stderr(&o).as_str()), (0, ""));
}

#[test]
fn a_ca_file_that_is_not_pem_is_a_config_error_found_by_check() {
    let d = TempDir::new("ca");
    let der = d.0.join("ca.der");
    std::fs::write(&der, [0x30, 0x82, 0x01, 0x0a, 0x02, 0x82]).unwrap();
    let f = TempFile::new(&format!(
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = {SECRET}\n\
         [connection]\nca_file = {}\n",
        der.display()
    ));
    let o = uiot_bounded(&["check", "-c", f.name()]);
    assert_eq!(code(&o), 78, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!(
            "uiot: {}: [connection] ca_file = {}: not a PEM certificate",
            f.name(),
            der.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("built-in UIoT Core CA"),
        "{}",
        stderr(&o)
    );
    // A 1 GB ca_file is refused by its size, never read.
    let big = d.sparse("big.pem", 1 << 30);
    let f = TempFile::new(&format!(
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = {SECRET}\n\
         [connection]\nca_file = {}\n",
        big.display()
    ));
    let o = uiot_bounded(&["check", "-c", f.name()]);
    assert_eq!(code(&o), 78, "{}", stderr(&o));
    assert!(stderr(&o).contains("1073741824 bytes, more than the 1048576 accepted"));
}

/// Needs `Tls::new` to report a ca_file OpenSSL cannot load as a
/// configuration error (the TLS side of defect 9).
#[cfg(feature = "tls")]
#[test]
fn a_ca_file_that_looks_like_pem_but_is_no_certificate_is_found_by_check() {
    let d = TempDir::new("ca-garbage");
    let ca = d.0.join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let f = TempFile::new(&format!(
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = {SECRET}\n\
         [connection]\nca_file = {}\n",
        ca.display()
    ));
    let o = uiot_bounded(&["check", "-c", f.name()]);
    assert_eq!(code(&o), 78, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&ca.display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_huge_value_is_cut_in_the_message() {
    let region = "x".repeat(1_000_000);
    let f = TempFile::new(&format!(
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = {SECRET}\n\
         [connection]\nregion = {region}\n"
    ));
    let o = uiot_bounded(&["check", "-c", f.name()]);
    assert_eq!(code(&o), 78);
    let err = stderr(&o);
    assert!(err.len() < 1000, "{} bytes on stderr", err.len());
    assert!(
        err.starts_with(&format!(
            "uiot: {}: [connection] region = {}... (1000000 bytes): unknown region",
            f.name(),
            "x".repeat(64)
        )),
        "{}",
        &err[..err.len().min(300)]
    );
}

#[test]
fn out_of_range_durations_are_config_errors() {
    let f = TempFile::new(&format!(
        "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = {SECRET}\n\
         [connection]\nconnect_timeout = 18446744073709551615\n[reconnect]\nmax = 18446744073709551615\n"
    ));
    let o = uiot_bounded(&["check", "-c", f.name()]);
    assert_eq!(code(&o), 78, "{}", stderr(&o));
    assert!(stderr(&o).contains("connect_timeout = 18446744073709551615: must be 1..300 seconds"));
    assert!(stderr(&o).contains("[reconnect] max = 18446744073709551615: must be 1..86400 seconds"));
}
