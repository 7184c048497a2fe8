//! `[reconnect]`: automatic reconnection, read straight into the client's
//! [`Reconnect`].
//!
//! Owns: the keys of `[reconnect]` and the rule that max is not below min.
//! Must not touch: the defaults and ranges (they belong to `Reconnect`),
//! the back-off itself (`client`).

use super::effective::Writer;
use super::reader::{Key, Reader, Section};
use crate::client::Reconnect;

impl Section for Reconnect {
    const NAME: &'static str = "reconnect";
    const KEYS: &'static [Key] = &[Key::plain("enabled"), Key::plain("min"), Key::plain("max")];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let d = Reconnect::default();
        let enabled = r.bool("enabled", d.enabled);
        let min = r.seconds("min", d.min, &Reconnect::MIN_RANGE, "");
        let max = r.seconds("max", d.max, &Reconnect::MAX_RANGE, "");
        let (min, max) = (min?, max?);
        if max < min {
            r.bad(
                "max",
                &max.as_secs().to_string(),
                &format!(
                    "must not be below min ({}); raise max or lower min",
                    min.as_secs()
                ),
            );
            return None;
        }
        Some(Reconnect {
            enabled: enabled?,
            min,
            max,
            ..d
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("enabled", self.enabled);
        w.key("min", self.min.as_secs());
        w.key("max", self.max.as_secs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::*;
    use std::time::Duration;

    #[test]
    fn reconnect_section() {
        let c = ok(&format!(
            "{}[reconnect]\nenabled = no\nmin = 2\nmax = 30\n",
            minimal()
        ));
        assert_eq!(
            c.reconnect,
            Reconnect {
                enabled: false,
                min: Duration::from_secs(2),
                max: Duration::from_secs(30),
                ..Reconnect::default()
            }
        );
        assert_eq!(ok(&minimal()).reconnect, Reconnect::default());
        let p = one_problem(&format!("{}[reconnect]\nmin = 10\nmax = 5\n", minimal()));
        assert!(
            p.contains("[reconnect] max = 5: must not be below min (10)"),
            "{p}"
        );
        assert_eq!(
            one_problem(&format!("{}[reconnect]\nmax = 86401\n", minimal())),
            "uiot.ini: [reconnect] max = 86401: must be 1..86400 seconds; \
             remove the line for the default (60)"
        );
        assert_eq!(
            problems(&format!("{}[reconnect]\nmin = 0\n", minimal())).len(),
            1
        );
    }
}
