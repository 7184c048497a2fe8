//! The on-disk queue of QoS 1 messages not yet acknowledged (`[queue] dir`),
//! so that no message is lost to a crash, `kill -9` or a power cut.
//!
//! Owns: the files in the queue directory (segment files and their
//! temporary rewrites), their format, recovery, fsync policy and compaction,
//! and the bytes-written counter (flash wear).
//! Must not touch: sockets, threads, timers (the caller calls [`Store::sync`]
//! on its interval timer and [`Store::compact`] when idle), packet ids or
//! resending (that is the session), and any file outside the directory.
//!
//! # Files
//!
//! The directory holds segment files named `<seq>.log`, `seq` being 16
//! lowercase hex digits, increasing. Records are only ever appended, to the
//! newest ("active") segment; a new segment is started once the active one
//! reaches [`SEGMENT_TARGET`] bytes. `<seq>.log.tmp` is a rewrite in
//! progress; one left over from a crash is deleted at open. Other files are
//! ignored. Directory and files are created private (0700 / 0600): payloads
//! may be sensitive.
//!
//! # Format (all integers little endian)
//!
//! ```text
//! segment := header record*
//! header  := "UIOTQ" 01 0D 0A | base_id u64 | crc32(first 16 bytes) u32   (20 bytes)
//! record  := A5 | len u32 | crc32(len bytes ++ body) u32 | body[len]      (len 1..=300 KiB)
//! body    := 01 | id u64 | topic_len u16 | topic (UTF-8) | payload        (a message)
//!          | 02 | id u64 *                                                (acknowledged ids, 1..=4096)
//! ```
//!
//! `base_id` is the next id when the segment was created: ids keep
//! increasing across restarts even after every older segment was deleted
//! (the active segment is never deleted). A message's cost on disk is
//! 20 bytes + topic + payload, plus 8 bytes for its ack (acks are batched
//! into one record).
//!
//! # Recovery
//!
//! At open every segment is read in order and scanned. Every complete record
//! whose length, CRC and body are valid is used. Damaged bytes (a torn write
//! at the tail, or corruption anywhere) are **skipped, not fatal**: the scan
//! resynchronises at the next offset where a valid record starts, so a
//! corrupt record costs only itself, and everything before *and after* it is
//! recovered. Each damaged range is logged (`warn`) with file and offsets.
//! A damaged tail of the newest segment is truncated before appending
//! continues. A corrupt ack record only brings its messages back (sent
//! twice, never lost). The pending messages are returned in id order, which
//! is the order they were appended.
//!
//! # Durability
//!
//! [`Store::append`] writes the record to the file (the OS has it: it
//! survives `kill -9`) before returning, then with [`Fsync::Always`]
//! `fdatasync`s it (it survives power loss). With [`Fsync::Interval`] the
//! fdatasync happens on [`Store::sync`] or on the first append after the
//! interval has passed, so a power cut may lose up to that interval of
//! messages. Acks are buffered in memory and written with the next append,
//! by `sync`, by `compact`, or once 1024 are waiting; a lost ack only means
//! a message is sent twice.
//!
//! # Compaction
//!
//! Bounded work per [`Store::compact`] call: write buffered acks; delete
//! every older segment whose messages are all acknowledged (and whose ack
//! records no longer matter, see [`Segment::acks_into`]); and rewrite at most
//! one mostly-dead older segment (at least three quarters acknowledged and
//! at least half a segment to gain) into a new file holding only its pending
//! messages, swapped in by an atomic rename. The active segment is never
//! deleted or rewritten.

// The client wires the store in with the reconnect/resend work ("Never lose
// a message"); until then only the tests use it.

mod format;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Error;
use format::{Body, Item, Scan, HEADER_LEN, MAX_BODY, MESSAGE_FIXED};

/// A new segment is started once the active one has this many bytes.
pub(crate) const SEGMENT_TARGET: u64 = 512 * 1024;
/// Buffered acks are written (without fsync) once this many are waiting.
const ACK_BUFFER: usize = 1024;
/// A segment file larger than this was not written by uiot (ours stay under
/// `SEGMENT_TARGET` + one record); refuse it rather than read it into memory.
const MAX_SEGMENT_FILE: u64 = 64 * 1024 * 1024;

/// When appended records are forced to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fsync {
    /// `fdatasync` before every append returns (`fsync = always`).
    Always,
    /// At most this long after an append (`fsync = interval_ms N`).
    Interval(Duration),
}

/// A message recovered from the queue at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Its id, as returned by [`Store::append`].
    pub(crate) id: u64,
    /// The topic it is published to.
    pub(crate) topic: String,
    /// Its payload.
    pub(crate) payload: Vec<u8>,
}

/// Where a pending message's record is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seg: u64,
    offset: u64,
    len: u32,
    payload: u32,
}

/// What the store knows about one segment file.
#[derive(Debug)]
struct Segment {
    /// Its header's base id (kept by a rewrite).
    base_id: u64,
    /// Bytes in the file.
    len: u64,
    /// Pending messages in it, and their record bytes.
    live: usize,
    live_bytes: u64,
    /// Segments holding messages that this segment's ack records (written
    /// or buffered) acknowledge. While such a segment still has them on
    /// disk, deleting this one would bring them back, so it may go only when
    /// this set is empty or only itself. A deleted or rewritten segment no
    /// longer holds acknowledged messages and leaves every set.
    acks_into: BTreeSet<u64>,
    /// False after a rewrite found its data changed on disk: leave it alone.
    rewritable: bool,
}

impl Segment {
    fn new(base_id: u64, len: u64) -> Self {
        Segment {
            base_id,
            len,
            live: 0,
            live_bytes: 0,
            acks_into: BTreeSet::new(),
            rewritable: true,
        }
    }

    fn acks_only_itself(&self, seq: u64) -> bool {
        self.acks_into.iter().all(|&s| s == seq)
    }
}

/// The persistent queue of unacknowledged QoS 1 messages (see the module
/// documentation for format and guarantees). One per directory.
pub(crate) struct Store {
    dir: PathBuf,
    fsync: Fsync,
    segment_target: u64,
    segments: BTreeMap<u64, Segment>,
    active_seq: u64,
    active: File,
    pending: BTreeMap<u64, Loc>,
    pending_payload: u64,
    acks: Vec<u64>,
    next_id: u64,
    last_sync: Instant,
    dirty: bool,
    bytes_written: u64,
    appended: u64,
    buf: Vec<u8>,
    /// Holds an exclusive lock on `dir/lock` for as long as the store is open
    /// (only its being held matters).
    #[allow(dead_code)]
    lock: Option<File>,
}

/// Lock the queue directory so that two processes never share it.
fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Io {
            context: format!(
                "cannot open the lock file of the QoS 1 queue {} ({})",
                path.display(),
                advice(&e)
            ),
            source: e,
        })?;
    // A child being forked by another thread holds a copy of a just-closed
    // lock until it execs: give such a lock a moment to go away.
    let mut tries = 0;
    let locked = loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Err(rustix::io::Errno::WOULDBLOCK) if tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    locked.map_err(|e| Error::Io {
        context: format!(
            "another uiot process is using the QoS 1 queue in {}: give each process \
                 its own [queue] dir",
            dir.display()
        ),
        source: e.into(),
    })?;
    Ok(file)
}

impl Store {
    /// Tests: vanish like a killed process (nothing flushed, the lock
    /// released as the kernel would).
    #[cfg(test)]
    pub(crate) fn crash(mut self) {
        self.lock = None;
        std::mem::forget(self);
    }

    /// Open (creating the dir if needed) and recover: the unacknowledged
    /// records in order.
    pub(crate) fn open(dir: &Path, fsync: Fsync) -> Result<(Store, Vec<Stored>), Error> {
        Store::open_with(dir, fsync, SEGMENT_TARGET)
    }

    fn open_with(
        dir: &Path,
        fsync: Fsync,
        segment_target: u64,
    ) -> Result<(Store, Vec<Stored>), Error> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::Io {
                context: format!(
                    "cannot create the QoS 1 queue directory {} ({})",
                    dir.display(),
                    advice(&e)
                ),
                source: e,
            })?;
        let lock = lock_dir(dir)?;
        let seqs = list_segments(dir)?;

        let mut segments = BTreeMap::new();
        let mut pending: BTreeMap<u64, Loc> = BTreeMap::new();
        let mut messages: BTreeMap<u64, (String, Vec<u8>)> = BTreeMap::new();
        let mut next_id = 1u64;
        // The newest segment, if it can take appends: (seq, valid length, file length).
        let mut reusable = None;

        for (i, &seq) in seqs.iter().enumerate() {
            let path = segment_path(dir, seq);
            let data = read_segment(&path)?;
            let header = format::decode_header(&data);
            if header.is_none() && !data.is_empty() {
                log::warn!(
                    "QoS 1 queue: {} has no valid header; recovering its records anyway",
                    path.display()
                );
            }
            let base_id = header.unwrap_or(0);
            next_id = next_id.max(base_id);
            let mut seg = Segment::new(base_id, data.len() as u64);
            let start = if header.is_some() { HEADER_LEN } else { 0 };
            let mut valid_end = start;
            for item in Scan::new(&data, start) {
                match item {
                    Item::Damaged { from, to } => {
                        let what = if to == data.len() {
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
                        valid_end = rec.offset + rec.len;
                        match rec.body {
                            Body::Message { id, topic, payload } => {
                                next_id = next_id.max(id.saturating_add(1));
                                if pending.contains_key(&id) {
                                    log::warn!(
                                        "QoS 1 queue: {} holds message id {id} twice; \
                                         keeping the first",
                                        path.display()
                                    );
                                    continue;
                                }
                                let loc = Loc {
                                    seg: seq,
                                    offset: rec.offset as u64,
                                    len: u32::try_from(rec.len).unwrap_or(u32::MAX),
                                    payload: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                                };
                                seg.live += 1;
                                seg.live_bytes += u64::from(loc.len);
                                pending.insert(id, loc);
                                messages.insert(id, (topic.to_owned(), payload.to_vec()));
                            }
                            Body::Acks(_) => {
                                for id in rec.body.ack_ids() {
                                    next_id = next_id.max(id.saturating_add(1));
                                    let Some(loc) = pending.remove(&id) else {
                                        continue;
                                    };
                                    messages.remove(&id);
                                    if loc.seg == seq {
                                        seg.live = seg.live.saturating_sub(1);
                                        seg.live_bytes =
                                            seg.live_bytes.saturating_sub(u64::from(loc.len));
                                    } else if let Some(owner) = segments.get_mut(&loc.seg) {
                                        let owner: &mut Segment = owner;
                                        owner.live = owner.live.saturating_sub(1);
                                        owner.live_bytes =
                                            owner.live_bytes.saturating_sub(u64::from(loc.len));
                                    }
                                    seg.acks_into.insert(loc.seg);
                                }
                            }
                        }
                    }
                }
            }
            if i + 1 == seqs.len() && header.is_some() {
                reusable = Some((seq, valid_end as u64, data.len() as u64));
            }
            segments.insert(seq, seg);
        }

        let now = Instant::now();
        let mut store_bytes = 0u64;
        let (active_seq, active) = match reusable {
            Some((seq, valid_end, file_len)) => {
                let path = segment_path(dir, seq);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| write_error(dir, e))?;
                if valid_end < file_len {
                    log::warn!(
                        "QoS 1 queue: cutting {} to {valid_end} bytes (was {file_len})",
                        path.display()
                    );
                    file.set_len(valid_end)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| write_error(dir, e))?;
                    if let Some(seg) = segments.get_mut(&seq) {
                        seg.len = valid_end;
                    }
                }
                (seq, file)
            }
            None => {
                let seq = seqs.last().map_or(1, |s| s.saturating_add(1));
                let file = create_segment(dir, seq, next_id, &mut store_bytes)?;
                segments.insert(seq, Segment::new(next_id, HEADER_LEN as u64));
                (seq, file)
            }
        };

        let pending_payload = pending.values().map(|l| u64::from(l.payload)).sum();
        let recovered = messages
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
            segments,
            active_seq,
            active,
            pending,
            pending_payload,
            acks: Vec::new(),
            next_id,
            last_sync: now,
            dirty: false,
            bytes_written: store_bytes,
            appended: 0,
            buf: Vec::new(),
            lock: Some(lock),
        };
        Ok((store, recovered))
    }

    /// Append a message; durable per the fsync policy when this returns.
    /// Returns its id (ids increase; they survive restarts).
    pub(crate) fn append(&mut self, topic: &str, payload: &[u8]) -> Result<u64, Error> {
        let body = MESSAGE_FIXED + topic.len() + payload.len();
        if topic.len() > usize::from(u16::MAX) || body > MAX_BODY {
            return Err(Error::Limit(format!(
                "a QoS 1 message of {} bytes (topic and payload) is larger than the \
                 on-disk queue's record limit of {} bytes; send a smaller payload",
                topic.len() + payload.len(),
                MAX_BODY - MESSAGE_FIXED
            )));
        }
        if self.next_id == u64::MAX {
            return Err(Error::Limit(format!(
                "the QoS 1 queue in {} has run out of message ids (its files claim id {}); \
                 move its files away while no message is pending",
                self.dir.display(),
                u64::MAX
            )));
        }
        if self.segment_len() >= self.segment_target {
            self.rotate()?;
        }
        let id = self.next_id;
        self.buf.clear();
        format::encode_acks(&mut self.buf, &self.acks);
        let msg_offset = self.segment_len() + self.buf.len() as u64;
        format::encode_message(&mut self.buf, id, topic, payload);
        let start = self.segment_len();
        self.write_active(start)?;
        let written = self.buf.len() as u64;

        let must_sync = match self.fsync {
            Fsync::Always => true,
            Fsync::Interval(d) => self.last_sync.elapsed() >= d,
        };
        if must_sync {
            if let Err(e) = self.active.sync_data() {
                // The record's fate on disk is unknown: take it back, so the
                // caller's "not queued" is true.
                let _ = self.active.set_len(start);
                return Err(write_error(&self.dir, e));
            }
            self.last_sync = Instant::now();
            self.dirty = false;
        } else {
            self.dirty = true;
        }

        let seq = self.active_seq;
        let len = format::message_record_len(topic, payload) as u64;
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.len = start + written;
            seg.live += 1;
            seg.live_bytes += len;
        }
        self.acks.clear();
        self.pending.insert(
            id,
            Loc {
                seg: seq,
                offset: msg_offset,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                payload: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            },
        );
        self.pending_payload += payload.len() as u64;
        self.next_id = id.saturating_add(1);
        self.appended += 1;
        Ok(id)
    }

    /// Mark done (PUBACK). Cheap: may be buffered, but must be on disk at
    /// the latest by the next append's sync or by `sync()`; a lost ack only
    /// causes a duplicate resend, never a loss. An unknown id (already
    /// acknowledged, or never appended) is ignored.
    pub(crate) fn ack(&mut self, id: u64) -> Result<(), Error> {
        let Some(loc) = self.pending.remove(&id) else {
            log::debug!("QoS 1 queue: ack for unknown id {id} ignored");
            return Ok(());
        };
        self.pending_payload = self.pending_payload.saturating_sub(u64::from(loc.payload));
        if let Some(seg) = self.segments.get_mut(&loc.seg) {
            seg.live = seg.live.saturating_sub(1);
            seg.live_bytes = seg.live_bytes.saturating_sub(u64::from(loc.len));
        }
        if let Some(active) = self.segments.get_mut(&self.active_seq) {
            active.acks_into.insert(loc.seg);
        }
        self.acks.push(id);
        if self.acks.len() >= ACK_BUFFER {
            self.write_acks()?;
        }
        Ok(())
    }

    /// Flush and fsync what is buffered (called on shutdown and on the
    /// interval timer).
    pub(crate) fn sync(&mut self) -> Result<(), Error> {
        self.write_acks()?;
        if self.dirty {
            self.active
                .sync_data()
                .map_err(|e| write_error(&self.dir, e))?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Reclaim space from acknowledged records if worthwhile (called when
    /// idle); bounded work: deletes whole segments and rewrites at most one.
    pub(crate) fn compact(&mut self) -> Result<(), Error> {
        // On a full disk the ack record may not fit; deleting segments is
        // safe without it (and is what frees the space), so go on and retry.
        let flushed = self.write_acks();
        let mut deleted = false;
        while let Some(seq) = self
            .segments
            .iter()
            .find(|(&s, seg)| s != self.active_seq && seg.live == 0 && seg.acks_only_itself(s))
            .map(|(&s, _)| s)
        {
            let path = segment_path(&self.dir, seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Io {
                        context: format!(
                            "cannot delete the acknowledged QoS 1 queue file {} ({})",
                            path.display(),
                            advice(&e)
                        ),
                        source: e,
                    })
                }
            }
            self.forget_segment(seq);
            self.segments.remove(&seq);
            deleted = true;
        }
        if deleted {
            sync_dir(&self.dir).map_err(|e| write_error(&self.dir, e))?;
        }
        if flushed.is_err() {
            self.write_acks()?;
        }

        let half = self.segment_target / 2;
        let candidate = self
            .segments
            .iter()
            .filter(|(&s, seg)| {
                s != self.active_seq && seg.rewritable && seg.live > 0 && seg.acks_only_itself(s)
            })
            .map(|(&s, seg)| {
                let dead = seg.len.saturating_sub(HEADER_LEN as u64 + seg.live_bytes);
                (s, dead, seg.live_bytes)
            })
            .filter(|&(_, dead, live)| dead >= half && dead >= live.saturating_mul(3))
            .max_by_key(|&(_, dead, _)| dead);
        if let Some((seq, _, _)) = candidate {
            self.rewrite(seq)?;
        }
        Ok(())
    }

    /// Bytes written to disk since open (all files).
    pub(crate) fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Messages appended since open.
    pub(crate) fn appended(&self) -> u64 {
        self.appended
    }

    /// Unacknowledged messages and their payload bytes now.
    pub(crate) fn pending(&self) -> (usize, u64) {
        (self.pending.len(), self.pending_payload)
    }

    fn segment_len(&self) -> u64 {
        self.segments
            .get(&self.active_seq)
            .map_or(HEADER_LEN as u64, |s| s.len)
    }

    /// Write `self.buf` at `offset` of the active segment; on failure cut
    /// the file back so no partial record is left behind.
    fn write_active(&mut self, offset: u64) -> Result<(), Error> {
        if let Err(e) = write_all_at(&self.active, &self.buf, offset, &mut self.bytes_written) {
            let _ = self.active.set_len(offset);
            return Err(write_error(&self.dir, e));
        }
        Ok(())
    }

    /// Write buffered acks to the active segment (no fsync).
    fn write_acks(&mut self) -> Result<(), Error> {
        if self.acks.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        format::encode_acks(&mut self.buf, &self.acks);
        let start = self.segment_len();
        self.write_active(start)?;
        let end = start + self.buf.len() as u64;
        if let Some(seg) = self.segments.get_mut(&self.active_seq) {
            seg.len = end;
        }
        self.acks.clear();
        self.dirty = true;
        Ok(())
    }

    /// Finish the active segment (acks written, data synced) and start a new
    /// one.
    fn rotate(&mut self) -> Result<(), Error> {
        self.sync()?;
        let seq = self.active_seq.saturating_add(1);
        let file = create_segment(&self.dir, seq, self.next_id, &mut self.bytes_written)?;
        self.segments
            .insert(seq, Segment::new(self.next_id, HEADER_LEN as u64));
        self.active = file;
        self.active_seq = seq;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// A deleted or rewritten segment holds no acknowledged message any more.
    fn forget_segment(&mut self, seq: u64) {
        for seg in self.segments.values_mut() {
            seg.acks_into.remove(&seq);
        }
    }

    /// Copy the pending messages of segment `seq` into a new file and swap
    /// it in atomically.
    fn rewrite(&mut self, seq: u64) -> Result<(), Error> {
        let path = segment_path(&self.dir, seq);
        let tmp = tmp_path(&self.dir, seq);
        let Some(base_id) = self.segments.get(&seq).map(|s| s.base_id) else {
            return Ok(());
        };
        let old = File::open(&path).map_err(|e| read_error(&path, e))?;
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(&format::encode_header(base_id));
        let mut moved = Vec::new();
        let mut record = Vec::new();
        for (&id, loc) in self.pending.iter().filter(|(_, l)| l.seg == seq) {
            record.resize(loc.len as usize, 0);
            old.read_exact_at(&mut record, loc.offset)
                .map_err(|e| read_error(&path, e))?;
            let intact = matches!(
                format::record_at(&record, 0),
                Some(format::Record { body: Body::Message { id: got, .. }, .. }) if got == id
            );
            if !intact {
                log::warn!(
                    "QoS 1 queue: {} changed on disk (message {id} no longer valid); \
                     not compacting it",
                    path.display()
                );
                if let Some(seg) = self.segments.get_mut(&seq) {
                    seg.rewritable = false;
                }
                return Ok(());
            }
            moved.push((id, out.len() as u64));
            out.extend_from_slice(&record);
        }
        drop(old);

        let result = (|| -> io::Result<()> {
            let file = new_file(&tmp, true)?;
            write_all_at(&file, &out, 0, &mut self.bytes_written)?;
            file.sync_data()?;
            fs::rename(&tmp, &path)?;
            sync_dir(&self.dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(write_error(&self.dir, e));
        }
        for (id, offset) in moved {
            if let Some(loc) = self.pending.get_mut(&id) {
                loc.offset = offset;
            }
        }
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.len = out.len() as u64;
            seg.acks_into.clear();
        }
        self.forget_segment(seq);
        log::debug!(
            "QoS 1 queue: compacted {} to {} bytes",
            path.display(),
            out.len()
        );
        Ok(())
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.log"))
}

fn tmp_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.log.tmp"))
}

/// The sequence number in a segment file name (`<16 hex>.log`).
fn parse_name(name: &str, suffix: &str) -> Option<u64> {
    let hex = name.strip_suffix(suffix)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The segment numbers in `dir`, ascending; leftover rewrites are deleted.
fn list_segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let entries = fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    let mut seqs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_name(name, ".log") {
            seqs.push(seq);
        } else if parse_name(name, ".log.tmp").is_some() {
            log::debug!("QoS 1 queue: removing unfinished rewrite {name}");
            fs::remove_file(entry.path()).map_err(|e| write_error(dir, e))?;
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

fn read_segment(path: &Path) -> Result<Vec<u8>, Error> {
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    let len = file.metadata().map_err(|e| read_error(path, e))?.len();
    if len > MAX_SEGMENT_FILE {
        return Err(Error::Io {
            context: format!(
                "{} is {len} bytes, far larger than any QoS 1 queue file uiot writes; \
                 move it out of the [queue] dir",
                path.display()
            ),
            source: io::Error::new(io::ErrorKind::InvalidData, "not a uiot queue segment"),
        });
    }
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_SEGMENT_FILE)
        .read_to_end(&mut data)
        .map_err(|e| read_error(path, e))?;
    Ok(data)
}

/// A new file, private to the user. `replace` truncates an existing one.
fn new_file(path: &Path, replace: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).mode(0o600);
    if replace {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    o.open(path)
}

/// Create segment `seq` with its header, durably (file data and directory
/// entry), counting the bytes.
fn create_segment(dir: &Path, seq: u64, base_id: u64, counter: &mut u64) -> Result<File, Error> {
    let path = segment_path(dir, seq);
    let result = (|| -> io::Result<File> {
        let file = new_file(&path, false)?;
        write_all_at(&file, &format::encode_header(base_id), 0, counter)?;
        file.sync_data()?;
        sync_dir(dir)?;
        Ok(file)
    })();
    result.map_err(|e| {
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = fs::remove_file(&path);
        }
        write_error(dir, e)
    })
}

/// Like `FileExt::write_all_at`, but counts every byte that reached the
/// file, even when a later part fails.
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64, counter: &mut u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
            Ok(n) => {
                *counter += n as u64;
                offset += n as u64;
                buf = buf.get(n..).unwrap_or_default();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What to do about an I/O error on the queue directory.
fn advice(e: &io::Error) -> &'static str {
    const ENOSPC: i32 = 28;
    const EROFS: i32 = 30;
    const EDQUOT: i32 = 122;
    match e.raw_os_error() {
        Some(ENOSPC) | Some(EDQUOT) => {
            "the file system is full: free space there, or set [queue] dir elsewhere"
        }
        Some(EROFS) => "the file system is read-only: set [queue] dir to a writable directory",
        _ => match e.kind() {
            io::ErrorKind::PermissionDenied => {
                "permission denied: let uiot's user write there, or set [queue] dir elsewhere"
            }
            _ => "check that the path is a writable directory, or set [queue] dir elsewhere",
        },
    }
}

fn write_error(dir: &Path, e: io::Error) -> Error {
    Error::Io {
        context: format!(
            "cannot write the QoS 1 queue in {} ({})",
            dir.display(),
            advice(&e)
        ),
        source: e,
    }
}

fn read_error(path: &Path, e: io::Error) -> Error {
    Error::Io {
        context: format!(
            "cannot read the QoS 1 queue at {} (check its permissions, or move it out of \
             the [queue] dir)",
            path.display()
        ),
        source: e,
    }
}

#[cfg(test)]
mod tests;
