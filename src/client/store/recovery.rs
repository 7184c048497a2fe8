//! Opening the on-disk QoS 1 queue: scanning every segment, rebuilding the
//! pending set, cutting damaged tails, setting unusable files aside.
//!
//! Owns: what is recovered from the files at open (see the parent module's
//! "Recovery") and the choice of the segment appends continue in.
//! Must not touch: appends, acks and compaction after open (mod.rs,
//! compaction.rs), the byte layout (format.rs), names and modes (files.rs).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::time::Instant;

use super::files::{self, segment_path, write_error, MAX_SEGMENT_FILE};
use super::format::{self, Body, Item, Scan, HEADER_LEN};
use super::{Fsync, Loc, Segment, Store, Stored};
use crate::error::Error;

/// What scanning the segments found.
#[derive(Default)]
struct Found {
    segments: BTreeMap<u64, Segment>,
    pending: BTreeMap<u64, Loc>,
    messages: BTreeMap<u64, (String, Vec<u8>)>,
    next_id: u64,
    /// The newest segment, if it can take appends: (seq, valid length, file length).
    reusable: Option<(u64, u64, u64)>,
}

impl Found {
    /// Apply one valid record of segment `seq` (being built in `seg`).
    fn record(&mut self, path: &Path, seq: u64, seg: &mut Segment, rec: &format::Record<'_>) {
        let len = u32::try_from(rec.len).unwrap_or(u32::MAX);
        match rec.body {
            Body::Message { id, topic, payload } => {
                self.next_id = self.next_id.max(id.saturating_add(1));
                if self.pending.contains_key(&id) {
                    log::warn!(
                        "QoS 1 queue: {} holds message id {id} twice; keeping the first",
                        path.display()
                    );
                    return;
                }
                let loc = Loc {
                    seg: seq,
                    offset: rec.offset as u64,
                    len,
                    payload: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                };
                seg.live = seg.live.saturating_add(1);
                seg.live_bytes = seg.live_bytes.saturating_add(u64::from(len));
                self.pending.insert(id, loc);
                self.messages
                    .insert(id, (topic.to_owned(), payload.to_vec()));
            }
            Body::Acks(_) => {
                for id in rec.body.ack_ids() {
                    self.next_id = self.next_id.max(id.saturating_add(1));
                    let Some(loc) = self.pending.remove(&id) else {
                        continue;
                    };
                    self.messages.remove(&id);
                    let owner = if loc.seg == seq {
                        Some(&mut *seg)
                    } else {
                        self.segments.get_mut(&loc.seg)
                    };
                    if let Some(owner) = owner {
                        owner.live = owner.live.saturating_sub(1);
                        owner.live_bytes = owner.live_bytes.saturating_sub(u64::from(loc.len));
                    }
                    seg.acks_into.insert(loc.seg);
                }
            }
        }
    }
}

/// Set an unusable segment aside (or leave it, saying so).
fn put_aside(path: &Path, why: &str) {
    match files::set_aside(path) {
        Ok(bad) => log::warn!(
            "QoS 1 queue: {} {why}; renamed it to {} and went on without it",
            path.display(),
            bad.display()
        ),
        Err(e) => log::warn!(
            "QoS 1 queue: {} {why}, and it cannot be renamed ({e}); ignoring it: move it out \
             of the [queue] dir",
            path.display()
        ),
    }
}

impl Store {
    pub(super) fn open_with(
        dir: &Path,
        fsync: Fsync,
        segment_target: u64,
    ) -> Result<(Store, Vec<Stored>), Error> {
        files::create_dir(dir)?;
        let lock = files::lock_dir(dir)?;
        let listing = files::list_segments(dir)?;
        files::tighten_dir(dir, listing.foreign == 0);

        let mut found = Found {
            next_id: 1,
            ..Found::default()
        };
        let last = listing.seqs.last().copied();
        for &seq in &listing.seqs {
            scan_segment(dir, seq, Some(seq) == last, &mut found);
        }

        let mut store_bytes = 0u64;
        let mut next_seq = listing
            .highest
            .map_or(Some(1), |h| h.checked_add(1))
            .unwrap_or(u64::MAX);
        let mut active = None;
        if let Some((seq, valid_end, file_len)) = found.reusable {
            let path = segment_path(dir, seq);
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(file) => {
                    if valid_end < file_len {
                        log::warn!(
                            "QoS 1 queue: cutting {} to {valid_end} bytes (was {file_len})",
                            path.display()
                        );
                        file.set_len(valid_end)
                            .and_then(|()| file.sync_all())
                            .map_err(|e| write_error(dir, e))?;
                        if let Some(seg) = found.segments.get_mut(&seq) {
                            seg.len = valid_end;
                        }
                    }
                    active = Some((seq, file));
                }
                // Read-only for us, say: its records are recovered; appends
                // go to a new segment.
                Err(e) => log::warn!(
                    "QoS 1 queue: cannot append to {} ({e}); starting a new segment",
                    path.display()
                ),
            }
        }
        let (active_seq, active) = match active {
            Some(a) => a,
            None => {
                let header = format::encode_header(found.next_id);
                let seq = next_seq;
                let file = files::create_segment(dir, seq, &header, &mut store_bytes)
                    .map_err(|e| write_error(dir, e))?;
                next_seq = seq.saturating_add(1);
                found
                    .segments
                    .insert(seq, Segment::new(found.next_id, HEADER_LEN as u64));
                (seq, file)
            }
        };

        let pending_payload = found
            .pending
            .values()
            .fold(0u64, |sum, l| sum.saturating_add(u64::from(l.payload)));
        let recovered = std::mem::take(&mut found.messages)
            .into_iter()
            .map(|(id, (topic, payload))| Stored { id, topic, payload })
            .collect::<Vec<_>>();
        if !recovered.is_empty() {
            log::info!(
                "QoS 1 queue {}: recovered {} unacknowledged message(s)",
                dir.display(),
                recovered.len()
            );
        }
        let store = Store {
            dir: dir.to_owned(),
            fsync,
            segment_target,
            segments: found.segments,
            active_seq,
            next_seq,
            active,
            pending: found.pending,
            pending_payload,
            acks: Vec::new(),
            unrecorded: None,
            last_warn: None,
            next_id: found.next_id,
            last_sync: Instant::now(),
            dirty: false,
            bytes_written: store_bytes,
            appended: 0,
            buf: Vec::new(),
            lock: Some(lock),
        };
        Ok((store, recovered))
    }
}

/// Scan segment `seq` into `found`. An unreadable file, or an oversized one
/// that is not ours, is set aside; an oversized one of ours keeps the
/// records of its first [`MAX_SEGMENT_FILE`] bytes and is cut after them.
fn scan_segment(dir: &Path, seq: u64, newest: bool, found: &mut Found) {
    let path = segment_path(dir, seq);
    let data = match files::read_segment(&path) {
        Ok(d) => d,
        Err(e) => {
            put_aside(&path, &format!("cannot be read ({e})"));
            return;
        }
    };
    let bytes = &data.bytes;
    let header = format::decode_header(bytes);
    let oversized = data.file_len > MAX_SEGMENT_FILE;
    if oversized && header.is_none() {
        put_aside(
            &path,
            &format!(
                "is {} bytes and not a uiot queue file (uiot's stay far below {MAX_SEGMENT_FILE})",
                data.file_len
            ),
        );
        return;
    }
    if header.is_none() && !bytes.is_empty() {
        log::warn!(
            "QoS 1 queue: {} has no valid header; recovering its records anyway",
            path.display()
        );
    }
    let base_id = header.unwrap_or(0);
    found.next_id = found.next_id.max(base_id);
    let mut seg = Segment::new(base_id, data.file_len);
    let start = if header.is_some() { HEADER_LEN } else { 0 };
    let mut valid_end = start;
    for item in Scan::new(bytes, start) {
        match item {
            Item::Damaged { from, to } => {
                let what = if to == bytes.len() {
                    "a torn or corrupt tail"
                } else {
                    "corrupt"
                };
                log::warn!(
                    "QoS 1 queue: {} bytes {from}..{to} are {what}; skipped, \
                     every complete record before and after is kept",
                    path.display()
                );
            }
            Item::Record(rec) => {
                valid_end = rec.offset.saturating_add(rec.len);
                found.record(&path, seq, &mut seg, &rec);
            }
        }
    }
    let valid_end = valid_end as u64;
    if oversized {
        log::warn!(
            "QoS 1 queue: {} is {} bytes, more than any queue file uiot writes; \
             kept the records of its first {MAX_SEGMENT_FILE} bytes",
            path.display(),
            data.file_len
        );
        if !newest {
            // The newest one is cut below, like any torn tail.
            match OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(valid_end))
            {
                Ok(()) => seg.len = valid_end,
                Err(e) => log::warn!(
                    "QoS 1 queue: cannot cut {} to {valid_end} bytes ({e})",
                    path.display()
                ),
            }
        }
    }
    if newest && header.is_some() {
        found.reusable = Some((seq, valid_end, data.file_len));
    }
    found.segments.insert(seq, seg);
}
