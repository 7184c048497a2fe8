//! `[limits]`: the platform's caps, read straight into [`Limits`].
//!
//! Owns: the keys of `[limits]`, their accepted ranges and wording.
//! Must not touch: the defaults (they are `Limits::default()`, from the
//! platform's constants), the enforcement (`platform`).

use super::effective::Writer;
use super::reader::{Key, Reader, Section};
use crate::platform::{Limits, MAX_PACKET};

impl Section for Limits {
    const NAME: &'static str = "limits";
    const KEYS: &'static [Key] = &[
        Key::plain("enforce"),
        Key::plain("publish_rate"),
        Key::plain("bandwidth_kb"),
        Key::plain("max_packet"),
        Key::plain("max_subscriptions"),
    ];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let d = Limits::default();
        let enforce = r.bool("enforce", d.enforce);
        let publish_rate = r.number(
            "publish_rate",
            d.publish_rate,
            0,
            1_000_000,
            "messages per second (0 = unlimited; UIoT Core allows 30)",
        );
        let bandwidth_kb = r.number(
            "bandwidth_kb",
            d.bandwidth_kb,
            0,
            10_000_000,
            "KB per second (0 = unlimited; UIoT Core allows 1024)",
        );
        let max_packet = r.number(
            "max_packet",
            d.max_packet,
            64,
            crate::packet::MAX_REMAINING_LENGTH,
            &format!("bytes (UIoT Core allows {MAX_PACKET})"),
        );
        let max_subscriptions = r.number(
            "max_subscriptions",
            d.max_subscriptions,
            1,
            1_000_000,
            "subscriptions (UIoT Core allows 100)",
        );
        let (enforce, max_packet) = (enforce?, max_packet?);
        if enforce && max_packet > MAX_PACKET {
            r.bad(
                "max_packet",
                &max_packet.to_string(),
                &format!(
                    "UIoT Core refuses packets over {MAX_PACKET} bytes; lower it, \
                     or set enforce = false for another broker"
                ),
            );
            return None;
        }
        Some(Limits {
            enforce,
            publish_rate: publish_rate?,
            bandwidth_kb: bandwidth_kb?,
            max_packet,
            max_subscriptions: max_subscriptions?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("enforce", self.enforce);
        w.key("publish_rate", self.publish_rate);
        w.key("bandwidth_kb", self.bandwidth_kb);
        w.key("max_packet", self.max_packet);
        w.key("max_subscriptions", self.max_subscriptions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::*;

    #[test]
    fn limits_section() {
        let c = ok(&minimal());
        assert_eq!(c.limits, Limits::default());
        let c = ok(&format!(
            "{}[limits]\nenforce = false\npublish_rate = 0\nbandwidth_kb = 0\nmax_packet = 1000000\n",
            minimal()
        ));
        assert!(!c.limits.enforce);
        assert_eq!((c.limits.publish_rate, c.limits.max_packet), (0, 1_000_000));
        let p = one_problem(&format!("{}[limits]\nmax_packet = 300000\n", minimal()));
        assert!(
            p.starts_with("uiot.ini: [limits] max_packet = 300000: UIoT Core refuses"),
            "{p}"
        );
        let p = one_problem(&format!("{}[limits]\npublish_rate = -1\n", minimal()));
        assert!(
            p.contains("[limits] publish_rate = -1: must be 0..1000000"),
            "{p}"
        );
        assert!(
            c.effective().contains("[limits]\nenforce = false\n"),
            "{}",
            c.effective()
        );
    }
}
