//! `[metrics]`: board health read from /proc (and statvfs) and posted as
//! thing model properties every `interval`, as one `property/post`
//! (QoS 1, fire and forget: a lost post is replaced by the next one).
//!
//! Owns: reading the values, the post's JSON.
//! Must not touch: the thing model's request matching (the daemon does
//! not wait for post_reply, so its `Thing` never takes commands away from
//! `uiot command wait`).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Map, Value};
use uiot::config::MetricsConfig;
use uiot::{Client, QoS};

/// One reading of every metric, as `(index in METRICS, value)`.
fn read(queue_dir: Option<&Path>, restarts: usize, queue_depth: usize) -> Vec<(usize, Value)> {
    let mut out = Vec::new();
    let first = |path: &str| -> Option<f64> {
        let text = std::fs::read_to_string(path).ok()?;
        text.split_whitespace().next()?.parse().ok()
    };
    // Whole seconds: the text before the point.
    let uptime = std::fs::read_to_string("/proc/uptime").ok().and_then(|t| {
        t.split(['.', ' '])
            .next()
            .and_then(|s| s.parse::<u64>().ok())
    });
    if let Some(up) = uptime {
        out.push((0, json!(up)));
    }
    if let Some(load) = first("/proc/loadavg") {
        out.push((1, json!(load)));
    }
    let avail = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    });
    if let Some(kb) = avail {
        out.push((2, json!(kb)));
    }
    let fs = queue_dir.unwrap_or(Path::new("/"));
    if let Ok(st) = rustix::fs::statvfs(fs) {
        let free = st.f_bavail.saturating_mul(st.f_frsize) / 1024;
        out.push((3, json!(free)));
    }
    out.push((4, json!(restarts)));
    out.push((5, json!(queue_depth)));
    out
}

/// Posts one reading; failures are logged.
pub fn post(
    config: &MetricsConfig,
    client: &Client,
    queue_dir: Option<&Path>,
    restarts: &AtomicUsize,
    id: u64,
) {
    let depth = client.queue_stats().pending;
    let mut props = Map::new();
    for (i, v) in read(queue_dir, restarts.load(Ordering::Relaxed), depth) {
        match config.names.get(i) {
            Some(name) if !name.is_empty() => {
                props.insert(name.clone(), json!({ "Value": v }));
            }
            _ => {}
        }
    }
    if props.is_empty() {
        return;
    }
    let body = json!({"RequestID": format!("metrics-{id}"), "Property": props});
    let Some(topic) = client
        .options()
        .identity
        .as_ref()
        .map(|i| i.system_topic("tmodel/property/post"))
    else {
        return;
    };
    if let Err(e) = client.enqueue(&topic, body.to_string().into_bytes(), QoS::AtLeastOnce) {
        log::warn!("metrics: not posted: {e}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn readings_come_from_proc() {
        let r = read(None, 3, 7);
        let keys: Vec<usize> = r.iter().map(|(i, _)| *i).collect();
        assert_eq!(keys, vec![0, 1, 2, 3, 4, 5], "{r:?}");
        assert!(r[0].1.as_u64().unwrap() > 0);
        assert_eq!((r[4].1.clone(), r[5].1.clone()), (json!(3), json!(7)));
    }
}
