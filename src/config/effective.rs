//! The `effective()` rendering: every setting as INI text, defaults filled
//! in, secrets masked, readable back by [`Config::parse`].
//!
//! Owns: the [`Writer`] sections render into and the layout of the text.
//! Must not touch: what each section renders (its `Section::write` does), validation.

use std::fmt::{self, Write as _};

use super::reader::Section;
use super::secret::HIDDEN;
use super::Config;

/// Builds the text of `effective()`.
#[derive(Default)]
pub(crate) struct Writer {
    out: String,
}

impl Writer {
    pub(crate) fn section<S: Section>(&mut self, s: &S) {
        self.header(S::NAME);
        s.write(self);
    }
    /// `[name]`, after a blank line.
    pub(crate) fn header(&mut self, name: &str) {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        let _ = writeln!(self.out, "[{name}]");
    }
    pub(crate) fn key(&mut self, key: &str, value: impl fmt::Display) {
        let _ = writeln!(self.out, "{key} = {value}");
    }
    pub(crate) fn hidden(&mut self, key: &str) {
        self.key(key, HIDDEN);
    }
    /// An optional key that is not set, with what that means.
    pub(crate) fn unset(&mut self, key: &str, meaning: &str) {
        let _ = writeln!(self.out, "# {key} is not set: {meaning}");
    }
}

impl Config {
    /// INI text of every setting, defaults filled in, secrets shown as `<hidden>`.
    pub fn effective(&self) -> String {
        let mut w = Writer::default();
        super::write_sections(self, &mut w);
        w.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::*;
    use crate::config::{Secret, SecretSource};

    #[test]
    fn secrets_never_shown() {
        let c = ok(&minimal());
        let eff = c.effective();
        assert!(eff.contains("device_secret = <hidden>"), "{eff}");
        assert_no_secret(&eff);
        assert_no_secret(&format!("{c:?}"));
        assert_no_secret(&format!("{:#?}", c.device));
        let s = Secret::from(DEV_SECRET);
        assert_eq!(s.expose(), DEV_SECRET);

        let dynamic = ok(&format!(
            "[device]\nproduct_sn = P\ndevice_sn = abcd\nproduct_secret = {PROD_SECRET}\n"
        ));
        let eff = dynamic.effective();
        assert!(
            eff.contains("product_secret = <hidden>\nsecret_file = /etc/uiot/device.secret\n"),
            "{eff}"
        );
        assert_no_secret(&eff);
        assert_no_secret(&format!("{dynamic:?}"));
    }

    #[test]
    fn effective_shows_every_setting() {
        let eff = ok(&minimal()).effective();
        assert_eq!(
            eff,
            "[device]\nproduct_sn = 70ly1tvowt696r15\ndevice_sn = aruidyl0rt9tuvod\ndevice_secret = <hidden>\n\
             \n[connection]\nregion = cn-sh2\nhost = mqtt-cn-sh2.iot.ucloud.cn\nport = 8883\ntls = true\n\
             # ca_file is not set: the built-in UIoT Core CA is used\ntls_verify_hostname = true\n\
             keep_alive = 300\nclean_session = true\nprotocol = 3.1.1\nconnect_timeout = 10\nshutdown_timeout = 5\nhttp_url = https://http-cn-sh2.iot.ucloud.cn\n\
             # http_token_file is not set: http.token beside the device secret (secret_file's directory, else this file's)\n\
             file_url = https://file-cn-sh2.iot.ucloud.cn\n\n[limits]\nenforce = true\npublish_rate = 30\nbandwidth_kb = 1024\nmax_packet = 262144\nmax_subscriptions = 100\n\n[reconnect]\nenabled = true\nmin = 1\nmax = 60\n\n[queue]\nmax_messages = 1000\nmax_bytes = 4194304\non_full = block\n# dir is not set: the queue is kept in memory only\nfsync = always\n\
             \n[daemon]\nsocket = /run/uiot/uiot.sock\n# group is not set: the daemon's own group\n\
             \n[subscribe]\n# topics is not set: none\nqos = 1\n\
             \n[hooks]\n# on_connect is not set: none\n# on_disconnect is not set: none\n\
             # on_message is not set: none\n# on_command is not set: none\n\
             # on_property_set is not set: none\n# on_shadow_desired is not set: none\n\
             # on_ota is not set: none\ntimeout = 30\nmax_running = 4\nmax_queued = 64\nmax_output = 65536\n\
             \n[metrics]\ninterval = 0\nuptime = uptime\nload = load\nmem_free = mem_free\n\
             disk_free = disk_free\nlink_restarts = link_restarts\nqueue_depth = queue_depth\n"
        );
        // What `effective()` prints reads back to the same settings (secrets aside).
        let mut c = ok(&minimal());
        let again = ok(&c.effective());
        c.device.secret = SecretSource::DeviceSecret(HIDDEN.into());
        assert_eq!(again, c);
    }
}
