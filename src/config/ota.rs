//! `[ota]` and `[ota.NAME]`: firmware upgrades done by `uiot run`. `[ota]`
//! holds what every module shares (the staging directory, the download's
//! patience, the CA for `https://` firmware URLs) and, when it has a
//! `version_command` or `version_file`, the module `default`; each
//! `[ota.NAME]` is the module `NAME`, taking `apply` and `apply_timeout`
//! from `[ota]` unless it sets its own.
//!
//! Owns: the keys of those sections, their defaults, ranges and how a
//! module section inherits from `[ota]`.
//! Must not touch: downloading, running the apply command, the OTA state
//! on disk (the daemon and `platform::ota` do those).

use std::path::PathBuf;
use std::time::Duration;

use super::effective::Writer;
use super::reader::{Ctx, Key, Reader, Section};

/// Where images and the OTA state are kept unless `[ota] dir` says otherwise.
pub const DEFAULT_OTA_DIR: &str = "/var/lib/uiot/ota";

/// The module `[ota]` itself describes.
pub const DEFAULT_MODULE: &str = "default";

/// One firmware module: how its running version is read and how an image
/// is installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtaModule {
    /// The module's name on the platform (`default` for `[ota]`).
    pub name: String,
    /// `sh -c` command installing a verified image (`{file}`, `{module}`,
    /// `{version}` and `{md5}` replaced by shell-quoted values; the same in
    /// `UIOT_OTA_*` variables). `None`: `[hooks] on_ota` installs it.
    pub apply: Option<String>,
    /// `sh -c` command printing the running version (first line, trimmed).
    pub version_command: Option<String>,
    /// A file holding the running version (first line, trimmed).
    pub version_file: Option<PathBuf>,
    /// Longest the apply command may run (then SIGTERM, SIGKILL 5 s later).
    pub apply_timeout: Duration,
}

/// `[ota]` and its modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtaConfig {
    /// Staging files and verified images.
    pub dir: PathBuf,
    /// The OTA state with the pending-upgrade marker (default
    /// `dir/state.json`): it must survive the reboot an upgrade causes,
    /// so on OpenWrt (where `/var` and `/tmp` are RAM) put it in a kept
    /// path such as `/etc/uiot/ota-state.json`.
    pub state_file: PathBuf,
    /// PEM certificates trusted for `https://` firmware URLs instead of
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long a download may wait for the server (connecting, headers)
    /// and how long a stalled body is waited for before a retry.
    pub timeout: Duration,
    /// Failed attempts in a row (no byte received) before the download
    /// gives up with ErrCode -3.
    pub retries: u32,
    /// Free space kept in `dir` on top of an image's Size, in MiB: an
    /// upgrade that would leave less is refused before the download.
    pub keep_free_mb: u64,
    /// The modules, `default` first when `[ota]` describes it. Empty: no OTA.
    pub modules: Vec<OtaModule>,
}

impl Default for OtaConfig {
    fn default() -> Self {
        OtaConfig {
            dir: PathBuf::from(DEFAULT_OTA_DIR),
            state_file: PathBuf::from(DEFAULT_OTA_DIR).join("state.json"),
            ca_file: None,
            timeout: Duration::from_secs(30),
            retries: 4,
            keep_free_mb: 1,
            modules: Vec::new(),
        }
    }
}

impl OtaConfig {
    /// The module called `name`.
    pub fn module(&self, name: &str) -> Option<&OtaModule> {
        self.modules.iter().find(|m| m.name == name)
    }
}

const KEYS: &[Key] = &[
    Key::path("dir"),
    Key::path("state_file"),
    Key::path("ca_file"),
    Key::plain("timeout"),
    Key::plain("retries"),
    Key::plain("keep_free"),
    Key::plain("apply"),
    Key::plain("version_command"),
    Key::path("version_file"),
    Key::plain("apply_timeout"),
];

/// Keys only `[ota]` may hold.
const SHARED_ONLY: [&str; 6] = [
    "dir",
    "state_file",
    "ca_file",
    "timeout",
    "retries",
    "keep_free",
];

const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(600);

fn command(v: &str) -> Result<String, String> {
    if v.trim().is_empty() {
        return Err("is empty; give a shell command, or remove the line".into());
    }
    if v.len() > 4096 {
        return Err("is longer than 4096 bytes; put it in a script".into());
    }
    Ok(v.to_string())
}

/// What one section says about its module (before inheriting).
struct Part {
    apply: Option<String>,
    version_command: Option<String>,
    version_file: Option<PathBuf>,
    apply_timeout: Option<Duration>,
}

fn read_part(r: &mut Reader<'_, '_>) -> Option<Part> {
    let apply = r.value("apply", command).optional();
    let version_command = r.value("version_command", command).optional();
    let version_file = r
        .path("version_file", "give the file holding the running version")
        .optional();
    let timeout = r
        .value("apply_timeout", |v| match v.parse::<u64>() {
            Ok(n @ 1..=86_400) => Ok(Duration::from_secs(n)),
            _ => Err("must be 1..86400 seconds; remove the line for the default (600)".into()),
        })
        .optional();
    let part = Part {
        apply: apply?,
        version_command: version_command?,
        version_file: version_file?,
        apply_timeout: timeout?,
    };
    if part.version_command.is_some() && part.version_file.is_some() {
        r.problem(
            "version_command, version_file",
            "give one of them: where the running version is read from",
        );
        return None;
    }
    Some(part)
}

impl Part {
    fn describes_module(&self) -> bool {
        self.version_command.is_some() || self.version_file.is_some()
    }

    /// The module `name`, taking what it does not say from `shared`.
    fn module(self, name: &str, shared: &Part) -> OtaModule {
        OtaModule {
            name: name.to_string(),
            apply: self.apply.or_else(|| shared.apply.clone()),
            version_command: self.version_command,
            version_file: self.version_file,
            apply_timeout: self
                .apply_timeout
                .or(shared.apply_timeout)
                .unwrap_or(DEFAULT_APPLY_TIMEOUT),
        }
    }
}

fn check_module_name(name: &str) -> Result<(), String> {
    crate::platform::ota::check_module(name)
}

impl Section for OtaConfig {
    const NAME: &'static str = "ota";
    const KEYS: &'static [Key] = KEYS;

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let d = OtaConfig::default();
        let dir = r
            .path("dir", "give the directory for firmware images")
            .or(d.dir);
        let state_file = r
            .path("state_file", "give the file of the OTA state")
            .optional();
        let ca_file = r
            .path("ca_file", "give a PEM file of CA certificates")
            .optional();
        let range = Duration::from_secs(1)..=Duration::from_secs(3600);
        let timeout = r.seconds("timeout", d.timeout, &range, "");
        let retries = r.number("retries", d.retries, 0, 100, "attempts");
        let keep_free = r.number("keep_free", d.keep_free_mb, 0, 1 << 20, "MiB");
        let dir = dir?;
        Some(OtaConfig {
            state_file: state_file?.unwrap_or_else(|| dir.join("state.json")),
            dir,
            ca_file: ca_file?,
            timeout: timeout?,
            retries: retries?,
            keep_free_mb: keep_free?,
            modules: Vec::new(),
        })
    }

    fn read_all(ctx: &mut Ctx<'_>) -> Option<Self> {
        let names: Vec<&str> = ctx
            .section_names()
            .into_iter()
            .filter(|n| n.strip_prefix("ota.").is_some_and(|r| !r.is_empty()))
            .collect();
        let (shared, part) = ctx.read_named("ota", KEYS, |r| {
            let s = OtaConfig::read(r);
            let p = read_part(r);
            Some((s?, p?))
        })?;
        let mut config = shared;
        let mut ok = true;
        let has_ota = ctx.section_names().contains(&"ota");
        let mut modules = Vec::new();
        for n in names {
            let short = n.strip_prefix("ota.").unwrap_or_default();
            let got = ctx.read_named(n, KEYS, |r| {
                for key in SHARED_ONLY {
                    if !r.text(key).is_empty() {
                        r.problem(key, "only [ota] holds it (every module shares it); move it there");
                        return None;
                    }
                }
                if let Err(why) = check_module_name(short) {
                    r.problem("section name", &format!("{why}; name the section [ota.MODULE] after the module on the platform"));
                    return None;
                }
                let p = read_part(r)?;
                if !p.describes_module() {
                    r.problem(
                        "version_command",
                        "missing; give version_command or version_file: how the running version of this module is read",
                    );
                    return None;
                }
                Some(p)
            });
            match got {
                Some(p) => modules.push(p.module(short, &part)),
                None => ok = false,
            }
        }
        let default_named = modules.iter().any(|m| m.name == DEFAULT_MODULE);
        if part.describes_module() && default_named {
            ctx.problems.push(format!(
                "{}: [ota.{DEFAULT_MODULE}]: the module default is described twice; [ota] \
                 describes it when it has version_command or version_file: keep one",
                ctx.file
            ));
            ok = false;
        } else if part.describes_module() {
            let none = Part {
                apply: None,
                version_command: None,
                version_file: None,
                apply_timeout: None,
            };
            modules.insert(0, part.module(DEFAULT_MODULE, &none));
        } else if ok && has_ota && modules.is_empty() {
            ctx.problems.push(format!(
                "{}: [ota]: no module: give version_command or version_file (for the module \
                 default) or add [ota.MODULE] sections; remove [ota] to turn OTA off",
                ctx.file
            ));
            ok = false;
        }
        config.modules = modules;
        ok.then_some(config)
    }

    fn write(&self, w: &mut Writer) {
        w.key("dir", self.dir.display());
        w.key("state_file", self.state_file.display());
        match &self.ca_file {
            Some(p) => w.key("ca_file", p.display()),
            None => w.unset("ca_file", "the system's roots"),
        }
        w.key("timeout", self.timeout.as_secs());
        w.key("retries", self.retries);
        w.key("keep_free", self.keep_free_mb);
    }

    fn write_all(&self, w: &mut Writer) {
        if self.modules.is_empty() {
            return;
        }
        w.header("ota");
        self.write(w);
        for m in &self.modules {
            if m.name != DEFAULT_MODULE {
                w.header(&format!("ota.{}", m.name));
            }
            match &m.apply {
                Some(a) => w.key("apply", a),
                None => w.unset("apply", "[hooks] on_ota installs images"),
            }
            if let Some(c) = &m.version_command {
                w.key("version_command", c);
            }
            if let Some(f) = &m.version_file {
                w.key("version_file", f.display());
            }
            w.key("apply_timeout", m.apply_timeout.as_secs());
        }
    }
}

/// Problems only visible across sections: a module nothing installs.
pub(crate) fn cross_check(ota: &OtaConfig, on_ota: bool, file: &str) -> Vec<String> {
    ota.modules
        .iter()
        .filter(|m| m.apply.is_none() && !on_ota)
        .map(|m| {
            let section = if m.name == DEFAULT_MODULE {
                "ota".to_string()
            } else {
                format!("ota.{}", m.name)
            };
            format!(
                "{file}: [{section}] apply: missing; give the command installing an image \
                 (e.g. apply = sysupgrade {{file}}), in [ota] for every module, or set [hooks] on_ota"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::test_util::*;

    #[test]
    fn ota_default_and_named_modules() {
        assert!(ok(&minimal()).ota.modules.is_empty());
        let c = ok(&format!(
            "{}[ota]\ndir = /data/ota\napply = sysupgrade {{file}}\nversion_file = /etc/fw.version\n\
             timeout = 5\n[ota.wifi]\nversion_command = cat /etc/wifi.version\napply_timeout = 60\n",
            minimal()
        ));
        let o = &c.ota;
        assert_eq!(
            (o.dir.to_str(), o.timeout.as_secs()),
            (Some("/data/ota"), 5)
        );
        assert_eq!(o.modules.len(), 2);
        assert_eq!(o.modules[0].name, "default");
        assert_eq!(o.modules[0].apply_timeout.as_secs(), 600);
        assert_eq!(o.modules[1].name, "wifi");
        assert_eq!(o.modules[1].apply.as_deref(), Some("sysupgrade {file}"));
        assert_eq!(o.modules[1].apply_timeout.as_secs(), 60);
        let eff = c.effective();
        assert!(
            eff.contains("[ota.wifi]\napply = sysupgrade {file}\n"),
            "{eff}"
        );
        // Only named modules: [ota] holds what they share.
        let c = ok(&format!(
            "{}[ota]\napply = /x {{file}}\n[ota.app]\nversion_file = v\n",
            minimal()
        ));
        assert_eq!(c.ota.modules.len(), 1);
    }

    #[test]
    fn ota_problems_name_the_fix() {
        let p = one_problem(&format!("{}[ota]\napply = x\n", minimal()));
        assert!(p.contains("[ota]: no module"), "{p}");
        let p = one_problem(&format!("{}[ota]\nversion_file = /v\n", minimal()));
        assert!(p.contains("[ota] apply: missing"), "{p}");
        let c = ok(&format!(
            "{}[hooks]\non_ota = /h.sh\n[ota]\nversion_file = /v\n",
            minimal()
        ));
        assert_eq!(c.ota.modules[0].apply, None);
        let p = one_problem(&format!(
            "{}[ota]\napply = x\n[ota.wifi]\napply = y\n",
            minimal()
        ));
        assert!(p.contains("[ota.wifi] version_command: missing"), "{p}");
        let p = one_problem(&format!(
            "{}[ota]\napply = x\n[ota.wifi]\nversion_file = v\ndir = /d\n",
            minimal()
        ));
        assert!(p.contains("[ota.wifi] dir: only [ota]"), "{p}");
        let p = one_problem(&format!(
            "{}[ota]\napply = x\nversion_file = v\nversion_command = c\n",
            minimal()
        ));
        assert!(p.contains("give one of them"), "{p}");
        let p = one_problem(&format!(
            "{}[ota]\napply = x\n[ota.a/b]\nversion_file = v\n",
            minimal()
        ));
        assert!(p.contains("[ota.a/b]"), "{p}");
        let p = one_problem(&format!(
            "{}[ota]\napply = x\nversion_file = v\napplytimeout = 3\n",
            minimal()
        ));
        assert!(p.contains("did you mean apply_timeout"), "{p}");
    }
}
