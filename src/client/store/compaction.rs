//! Giving space back: deleting acknowledged segments, cutting a drained
//! active segment back to its header, and rewriting a mostly-dead older
//! segment (see the parent module's "Compaction" and "A full disk").
//!
//! Owns: which segment files are deleted, cut or rewritten, and when.
//! Must not touch: appends and acks (mod.rs), the byte layout (format.rs),
//! names, listing and modes (files.rs), recovery (recovery.rs).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;

use super::files::{self, advice, segment_path, tmp_path, write_error};
use super::format::{self, Body, HEADER_LEN};
use super::Store;
use crate::error::Error;

impl Store {
    /// Reclaim space from acknowledged records if worthwhile (called when
    /// idle); bounded work: deletes whole segments, cuts a drained active
    /// one, writes the buffered acks and rewrites at most one segment.
    pub(crate) fn compact(&mut self) -> Result<(), Error> {
        self.reclaim(false)?;
        self.flush_acks()?;

        let half = self.segment_target / 2;
        let candidate = self
            .segments
            .iter()
            .filter(|(&s, seg)| {
                s != self.active_seq && seg.rewritable && seg.live > 0 && seg.acks_only_itself(s)
            })
            .map(|(&s, seg)| {
                let dead = seg
                    .len
                    .saturating_sub((HEADER_LEN as u64).saturating_add(seg.live_bytes));
                (s, dead, seg.live_bytes)
            })
            .filter(|&(_, dead, live)| dead >= half && dead >= live.saturating_mul(3))
            .max_by_key(|&(_, dead, _)| dead);
        if let Some((seq, _, _)) = candidate {
            self.rewrite(seq)?;
        }
        Ok(())
    }

    /// Free what needs no writing: delete every older segment whose
    /// messages are all acknowledged and whose acks no longer matter, and
    /// cut the active segment back to its header when all its records are
    /// acknowledged (always when `force`, else once it holds half a
    /// segment). Buffered acks for messages no longer on disk are dropped.
    /// True when anything was freed.
    pub(super) fn reclaim(&mut self, force: bool) -> Result<bool, Error> {
        let mut freed = false;
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
            self.acks.retain(|&(_, s)| s != seq);
            freed = true;
        }
        if freed {
            files::sync_dir(&self.dir).map_err(|e| write_error(&self.dir, e))?;
        }

        let active = self.active_seq;
        let drained = self
            .segments
            .get(&active)
            .is_some_and(|seg| seg.live == 0 && seg.acks_only_itself(active));
        let len = self.segment_len();
        let worth = if force {
            len > HEADER_LEN as u64 || !self.acks.is_empty()
        } else {
            len > HEADER_LEN as u64 && len >= self.segment_target / 2
        };
        if drained && worth {
            self.reset_active()?;
            freed = true;
        }
        Ok(freed)
    }

    /// Cut the drained active segment back to a header carrying the next id
    /// (so ids keep increasing across restarts). Cutting needs no space; the
    /// header is rewritten in place, best effort: without it, ids that no
    /// file mentions any more may be used again after a restart, which is
    /// harmless.
    fn reset_active(&mut self) -> Result<(), Error> {
        let seq = self.active_seq;
        self.active
            .set_len(HEADER_LEN as u64)
            .map_err(|e| write_error(&self.dir, e))?;
        let header = format::encode_header(self.next_id);
        let header_ok = match files::write_all_at(&self.active, &header, 0, &mut self.bytes_written)
        {
            Ok(()) => true,
            Err(e) => {
                log::debug!("QoS 1 queue: cannot renew the header of segment {seq:016x}: {e}");
                false
            }
        };
        self.active
            .sync_all()
            .map_err(|e| write_error(&self.dir, e))?;
        let next_id = self.next_id;
        if let Some(seg) = self.segments.get_mut(&seq) {
            seg.len = HEADER_LEN as u64;
            seg.live_bytes = 0;
            seg.acks_into.clear();
            if header_ok {
                seg.base_id = next_id;
            }
        }
        self.forget_segment(seq);
        self.acks.retain(|&(_, s)| s != seq);
        self.dirty = false;
        log::debug!("QoS 1 queue: segment {seq:016x} drained; cut back to its header");
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
        let old = File::open(&path).map_err(|e| files::read_error(&path, e))?;
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(&format::encode_header(base_id));
        let mut moved = Vec::new();
        let mut record = Vec::new();
        for (&id, loc) in self.pending.iter().filter(|(_, l)| l.seg == seq) {
            // (u32 always fits; 0 would read as "changed on disk".)
            record.resize(usize::try_from(loc.len).unwrap_or(0), 0);
            old.read_exact_at(&mut record, loc.offset)
                .map_err(|e| files::read_error(&path, e))?;
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
            let file = files::new_file(&tmp, true)?;
            files::write_all_at(&file, &out, 0, &mut self.bytes_written)?;
            file.sync_data()?;
            fs::rename(&tmp, &path)?;
            files::sync_dir(&self.dir)
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
