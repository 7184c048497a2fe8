//! `[queue]`: the outgoing queue, read straight into the client's [`Queue`].
//!
//! Owns: the keys of `[queue]`, the spelling of `on_full` and `fsync`, and
//! the ranges of the two sizes.
//! Must not touch: the defaults (they are `Queue::default()`), the fsync
//! interval's range (`Queue::FSYNC_INTERVAL_RANGE`), the queue itself.

use std::time::Duration;

use super::effective::Writer;
use super::reader::{Key, Reader, Section};
use crate::client::{OnFull, Queue};

/// Most messages the queue may be configured to hold.
const MAX_MESSAGES: usize = 10_000_000;
/// The smallest and largest payload budget, in bytes.
const MIN_BYTES: usize = 1024;
const MAX_BYTES: usize = 1 << 30;

fn on_full_name(p: OnFull) -> &'static str {
    match p {
        OnFull::Block => "block",
        OnFull::DropOldest => "drop_oldest",
        OnFull::DropNewest => "drop_newest",
    }
}

fn parse_on_full(v: &str) -> Result<OnFull, String> {
    [OnFull::Block, OnFull::DropOldest, OnFull::DropNewest]
        .into_iter()
        .find(|p| on_full_name(*p) == v)
        .ok_or_else(|| "must be block, drop_oldest or drop_newest".to_string())
}

/// `always` (`None`) or `interval_ms N` (`Some`).
fn parse_fsync(v: &str) -> Result<Option<Duration>, String> {
    let range = &Queue::FSYNC_INTERVAL_RANGE;
    let (min, max) = (range.start().as_millis(), range.end().as_millis());
    let mut words = v.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("always"), None, None) => Ok(None),
        (Some("interval_ms"), Some(n), None) => match n.parse::<u64>() {
            Ok(ms) if (min..=max).contains(&u128::from(ms)) => Ok(Some(Duration::from_millis(ms))),
            _ => Err(format!("interval_ms takes {min}..{max} milliseconds")),
        },
        _ => Err("must be 'always' or 'interval_ms N' (e.g. interval_ms 200)".to_string()),
    }
}

impl Section for Queue {
    const NAME: &'static str = "queue";
    const KEYS: &'static [Key] = &[
        Key::plain("max_messages"),
        Key::plain("max_bytes"),
        Key::plain("on_full"),
        Key::path("dir"),
        Key::plain("fsync"),
    ];

    fn read(r: &mut Reader<'_, '_>) -> Option<Self> {
        let d = Queue::default();
        let max_messages = r.number("max_messages", d.max_messages, 1, MAX_MESSAGES, "messages");
        let max_bytes = r.number(
            "max_bytes",
            d.max_bytes,
            MIN_BYTES,
            MAX_BYTES,
            "bytes of payload",
        );
        let on_full = r.value("on_full", parse_on_full).or(d.on_full);
        let dir = r.path(
            "dir",
            "give a directory on persistent storage, or remove the line to keep the queue in memory",
        );
        let fsync = r.value("fsync", parse_fsync).or(d.fsync_interval);
        Some(Queue {
            max_messages: max_messages?,
            max_bytes: max_bytes?,
            on_full: on_full?,
            dir: dir.optional()?,
            fsync_interval: fsync?,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.key("max_messages", self.max_messages);
        w.key("max_bytes", self.max_bytes);
        w.key("on_full", on_full_name(self.on_full));
        match &self.dir {
            Some(d) => w.key("dir", d.display()),
            None => w.unset("dir", "the queue is kept in memory only"),
        }
        match self.fsync_interval {
            None => w.key("fsync", "always"),
            Some(d) => w.key("fsync", format!("interval_ms {}", d.as_millis())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_util::*;
    use std::path::PathBuf;

    #[test]
    fn queue_section() {
        let c = ok(&format!(
            "{}[queue]\nmax_messages = 10\n\
             on_full = drop_oldest\nfsync = interval_ms 250\ndir = /var/lib/uiot\n",
            minimal()
        ));
        assert_eq!(
            c.queue,
            Queue {
                max_messages: 10,
                on_full: OnFull::DropOldest,
                fsync_interval: Some(Duration::from_millis(250)),
                dir: Some(PathBuf::from("/var/lib/uiot")),
                ..Queue::default()
            }
        );
        assert!(c.effective().contains("fsync = interval_ms 250\n"));
        assert_eq!(ok(&minimal()).queue, Queue::default());
        let p = one_problem(&format!("{}[queue]\non_full = discard\n", minimal()));
        assert!(
            p.contains("[queue] on_full = discard: must be block"),
            "{p}"
        );
        let p = one_problem(&format!("{}[queue]\nfsync = sometimes\n", minimal()));
        assert!(p.contains("'always' or 'interval_ms N'"), "{p}");
        let p = one_problem(&format!(
            "{}[queue]\nfsync = interval_ms 3600001\n",
            minimal()
        ));
        assert!(
            p.contains("interval_ms takes 1..3600000 milliseconds"),
            "{p}"
        );
    }
}
