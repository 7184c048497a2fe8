//! `uiot check` and the CLI skeleton, run as a user would: the built binary
//! with temporary configuration files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

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
