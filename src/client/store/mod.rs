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
//! progress; one left over from a crash is deleted at open. `<seq>.log.bad`
//! is a segment set aside at open as unusable (unreadable, or far too large
//! and not ours). Other files are not ours: they are ignored, with one
//! warning. Directory and files are created private (0700 / 0600): payloads
//! may be sensitive; an existing directory holding only queue files that
//! others may read is tightened to 0700 (logged), otherwise a warning says
//! what to do. The listing is in `files.rs`.
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
//! (an emptied active segment keeps a header with the next id). A message's cost on disk is
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
//! is the order they were appended. A segment file larger than
//! `MAX_SEGMENT_FILE` is read only that far: with a valid header its
//! records there are kept and the rest is cut like a torn tail; without one
//! it is set aside. No file in the directory blocks the queue. (`recovery.rs`)
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
//! # A full disk
//!
//! Freeing space needs no space: a segment whose messages are all
//! acknowledged (in memory) is deleted, and an active one is cut back to its
//! header, without writing an ack record; acks for messages no longer on
//! disk are dropped. When acks still cannot be written, the store says so
//! once (`warn`, naming the directory: those messages will be sent again
//! after a restart) and keeps them in memory, retrying; [`Store::check`]
//! tells the caller, as an [`Error::Io`], so that the program does not end
//! as if all was well. (`compaction.rs`)
//!
//! # Compaction
//!
//! Bounded work per [`Store::compact`] call: delete every older segment
//! whose messages are all acknowledged (and whose ack records no longer
//! matter, see [`Segment::acks_into`]); cut an active segment holding at
//! least half a segment of nothing but acknowledged records back to its
//! header; write the remaining buffered acks; and rewrite at most one
//! mostly-dead older segment (at least three quarters acknowledged and at
//! least half a segment to gain) into a new file holding only its pending
//! messages, swapped in by an atomic rename.

//!
//! Owns (this file): the [`Store`] and its bookkeeping, appends, acks, sync.
//! Must not touch (this file): how files are named, listed and created
//! (files.rs), recovery (recovery.rs), compaction (compaction.rs).

mod compaction;
mod files;
mod format;
mod recovery;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Error;
use files::{advice, write_error};
use format::{HEADER_LEN, MAX_BODY, MESSAGE_FIXED};

/// A new segment is started once the active one has this many bytes.
pub(crate) const SEGMENT_TARGET: u64 = 512 * 1024;
/// Buffered acks are written (without fsync) once this many are waiting.
const ACK_BUFFER: usize = 1024;
/// Tries to find a free segment number for a new segment.
const NAME_TRIES: usize = 16;
/// At most one "cannot record acknowledgements" warning this often (a disk
/// on the edge of full may go back and forth).
const WARN_EVERY: Duration = Duration::from_secs(60);

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

/// Why acknowledgements could not be written (the error, kept to be
/// reported again by [`Store::check`]).
#[derive(Debug, Clone, Copy)]
struct Unrecorded {
    raw: Option<i32>,
    kind: io::ErrorKind,
    /// Whether this episode was logged at `warn` (see `WARN_EVERY`).
    warned: bool,
}

impl Unrecorded {
    fn io_error(self) -> io::Error {
        self.raw
            .map_or_else(|| io::Error::from(self.kind), io::Error::from_raw_os_error)
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
    /// The number for the next new segment (above every name of ours seen).
    next_seq: u64,
    active: File,
    pending: BTreeMap<u64, Loc>,
    pending_payload: u64,
    /// Buffered acks: (message id, segment holding the message).
    acks: Vec<(u64, u64)>,
    /// Set while acks cannot be written (logged once when it starts).
    unrecorded: Option<Unrecorded>,
    /// When "cannot record acknowledgements" was last logged at `warn`.
    last_warn: Option<Instant>,
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

    /// Append a message; durable per the fsync policy when this returns.
    /// Returns its id (ids increase; they survive restarts). On a full disk
    /// it first frees what needs no writing, then retries once.
    pub(crate) fn append(&mut self, topic: &str, payload: &[u8]) -> Result<u64, Error> {
        let body = MESSAGE_FIXED
            .saturating_add(topic.len())
            .saturating_add(payload.len());
        if topic.len() > usize::from(u16::MAX) || body > MAX_BODY {
            return Err(Error::Limit(format!(
                "a QoS 1 message of {} bytes (topic and payload) is larger than the \
                 on-disk queue's record limit of {} bytes; send a smaller payload",
                topic.len().saturating_add(payload.len()),
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
            // A drained active segment is cut back rather than replaced.
            self.reclaim(false)?;
        }
        if self.segment_len() >= self.segment_target {
            self.rotate()?;
        }
        let id = self.next_id;
        let (msg_offset, end) = match self.write_message(id, topic, payload) {
            Ok(v) => v,
            Err(e) if files::is_full(&e) && self.reclaim(true)? => self
                .write_message(id, topic, payload)
                .map_err(|e| write_error(&self.dir, e))?,
            Err(e) => return Err(write_error(&self.dir, e)),
        };
        let start = self.segment_len();

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
        let len = end.saturating_sub(msg_offset);
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.len = end;
            seg.live = seg.live.saturating_add(1);
            seg.live_bytes = seg.live_bytes.saturating_add(len);
        }
        self.acks.clear();
        self.recorded();
        self.pending.insert(
            id,
            Loc {
                seg: seq,
                offset: msg_offset,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                payload: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            },
        );
        self.pending_payload = self.pending_payload.saturating_add(payload.len() as u64);
        self.next_id = id.saturating_add(1);
        self.appended = self.appended.saturating_add(1);
        Ok(id)
    }

    /// Write the buffered acks and message `id` at the end of the active
    /// segment: (offset of the message record, new end of the file). On
    /// failure the file is cut back.
    fn write_message(&mut self, id: u64, topic: &str, payload: &[u8]) -> io::Result<(u64, u64)> {
        self.buf.clear();
        let ids: Vec<u64> = self.acks.iter().map(|&(id, _)| id).collect();
        format::encode_acks(&mut self.buf, &ids);
        let start = self.segment_len();
        let msg_offset = start.saturating_add(self.buf.len() as u64);
        format::encode_message(&mut self.buf, id, topic, payload);
        self.write_active(start)?;
        Ok((msg_offset, start.saturating_add(self.buf.len() as u64)))
    }

    /// Mark done (PUBACK). Cheap: buffered, written with the next append,
    /// `sync()` or `compact()`, or once 1024 are waiting; a lost ack only
    /// causes a duplicate resend, never a loss. An unknown id (already
    /// acknowledged, or never appended) is ignored. Acks that cannot be
    /// written are kept in memory (see [`Store::check`]): that alone is not
    /// an error here.
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
        self.acks.push((id, loc.seg));
        let n = self.acks.len();
        // While acks cannot be written, retry only every ACK_BUFFER acks.
        if n >= ACK_BUFFER && (self.unrecorded.is_none() || n % ACK_BUFFER == 0) {
            self.flush_acks()?;
        }
        Ok(())
    }

    /// Flush and fsync what is buffered (called on shutdown and on the
    /// interval timer). Acks that cannot be written are not an error here
    /// (logged once, kept, retried); ask [`Store::check`] at shutdown.
    pub(crate) fn sync(&mut self) -> Result<(), Error> {
        self.flush_acks()?;
        if self.dirty {
            self.active
                .sync_data()
                .map_err(|e| write_error(&self.dir, e))?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Whether everything acknowledged is recorded as such. `Err(Error::Io)`
    /// (its source the write error, e.g. ENOSPC) when acknowledgements could
    /// not be written and their messages are still on disk: those messages
    /// will be sent again after a restart. Cheap; call it after the final
    /// [`Store::sync`] and fail (exit 74) instead of ending as if all was
    /// well.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self.unrecorded {
            Some(why) if !self.acks.is_empty() => {
                let source = why.io_error();
                Err(Error::Io {
                    context: format!(
                        "cannot record acknowledgements in the QoS 1 queue in {} ({}): {} \
                         acknowledged message(s) will be sent again after a restart",
                        self.dir.display(),
                        advice(&source),
                        self.acks.len()
                    ),
                    source,
                })
            }
            _ => Ok(()),
        }
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
    fn write_active(&mut self, offset: u64) -> io::Result<()> {
        let result = files::write_all_at(&self.active, &self.buf, offset, &mut self.bytes_written);
        if result.is_err() {
            let _ = self.active.set_len(offset);
        }
        result
    }

    /// Write buffered acks to the active segment (no fsync).
    fn write_acks(&mut self) -> io::Result<()> {
        if self.acks.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        let ids: Vec<u64> = self.acks.iter().map(|&(id, _)| id).collect();
        format::encode_acks(&mut self.buf, &ids);
        let start = self.segment_len();
        self.write_active(start)?;
        let end = start.saturating_add(self.buf.len() as u64);
        if let Some(seg) = self.segments.get_mut(&self.active_seq) {
            seg.len = end;
        }
        self.acks.clear();
        self.dirty = true;
        Ok(())
    }

    /// Write buffered acks; when that fails, free what needs no writing and
    /// retry once. Acks still unwritten after that (their messages still on
    /// disk) are kept and reported once; only a failure to delete or cut a
    /// file is an error.
    fn flush_acks(&mut self) -> Result<(), Error> {
        let Err(e) = self.write_acks() else {
            self.recorded();
            return Ok(());
        };
        let e = if self.reclaim(true)? {
            match self.write_acks() {
                Ok(()) => {
                    self.recorded();
                    return Ok(());
                }
                Err(e) => e,
            }
        } else {
            e
        };
        if self.acks.is_empty() {
            self.recorded();
        } else {
            self.cannot_record(&e);
        }
        Ok(())
    }

    /// Acks cannot be written: say so once (per episode, and at most once
    /// per `WARN_EVERY`; more often at `debug`).
    fn cannot_record(&mut self, e: &io::Error) {
        let warned = match self.unrecorded {
            Some(u) => u.warned,
            None => {
                let loud = self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY);
                let text = format!(
                    "QoS 1 queue in {}: cannot record acknowledgements ({}; {e}): {} \
                     acknowledged message(s) stay on disk and will be sent again after a \
                     restart unless space is freed",
                    self.dir.display(),
                    advice(e),
                    self.acks.len()
                );
                if loud {
                    log::warn!("{text}");
                    self.last_warn = Some(Instant::now());
                } else {
                    log::debug!("{text}");
                }
                loud
            }
        };
        self.unrecorded = Some(Unrecorded {
            raw: e.raw_os_error(),
            kind: e.kind(),
            warned,
        });
    }

    /// Acks are recorded (or moot) again.
    fn recorded(&mut self) {
        if let Some(u) = self.unrecorded.take() {
            let text = format!(
                "QoS 1 queue in {}: acknowledgements are recorded again",
                self.dir.display()
            );
            if u.warned {
                log::info!("{text}");
            } else {
                log::debug!("{text}");
            }
        }
    }

    /// Finish the active segment (acks written, data synced) and start a new
    /// one.
    fn rotate(&mut self) -> Result<(), Error> {
        self.sync()?;
        let header = format::encode_header(self.next_id);
        let mut tries = 0;
        let (seq, file) = loop {
            let seq = self.next_seq;
            self.next_seq = seq.checked_add(1).ok_or_else(|| {
                Error::Limit(format!(
                    "the QoS 1 queue in {} has run out of segment numbers; move its files \
                     away while no message is pending",
                    self.dir.display()
                ))
            })?;
            match files::create_segment(&self.dir, seq, &header, &mut self.bytes_written) {
                Ok(file) => break (seq, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < NAME_TRIES => {
                    tries += 1;
                }
                Err(e) => return Err(write_error(&self.dir, e)),
            }
        };
        let mut seg = Segment::new(self.next_id, HEADER_LEN as u64);
        // Acks still buffered will be written into the new segment.
        seg.acks_into.extend(self.acks.iter().map(|&(_, s)| s));
        self.segments.insert(seq, seg);
        self.active = file;
        self.active_seq = seq;
        self.last_sync = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
