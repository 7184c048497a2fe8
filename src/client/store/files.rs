//! The files of the on-disk QoS 1 queue: the directory (creation, mode,
//! lock), segment names and the listing at open, reading and creating
//! segment files, byte-counting writes, and how an I/O error is explained.
//!
//! Owns: paths and names inside the queue directory, the directory's mode,
//! the lock file, setting a file aside as `*.bad`, errno classification.
//! Must not touch: record contents (format.rs), the pending set and segment
//! bookkeeping (mod.rs), deciding what to keep or delete (recovery.rs,
//! compaction.rs), and any file outside the directory.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use crate::error::{cut, Error};

/// A segment file larger than this was not written by uiot (ours stay under
/// the segment target plus one write); only this much of it is ever read.
pub(super) const MAX_SEGMENT_FILE: u64 = 16 * 1024 * 1024;
/// Names shown in the "not ours" warning.
const NAMES_SHOWN: usize = 3;

pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.log"))
}

pub(super) fn tmp_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.log.tmp"))
}

/// The sequence number in a name `<16 lowercase hex digits><suffix>`
/// (exactly the names uiot writes).
fn parse_name(name: &str, suffix: &str) -> Option<u64> {
    let hex = name.strip_suffix(suffix)?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// What the queue directory holds.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Segment files (regular files named `<seq>.log`), ascending.
    pub(super) seqs: Vec<u64>,
    /// The highest sequence number in any name of ours (also set-aside,
    /// temporary and non-regular ones): new segments are numbered above it.
    pub(super) highest: Option<u64>,
    /// Entries that are not ours; they are left alone.
    pub(super) foreign: usize,
}

/// List `dir`: segments ascending; leftover rewrites are deleted; files
/// that are not ours are ignored with one warning.
pub(super) fn list_segments(dir: &Path) -> Result<Listing, Error> {
    let entries = fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    let mut list = Listing::default();
    let mut foreign_names = Vec::new();
    let mut set_aside = 0usize;
    for entry in entries {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let os_name = entry.file_name();
        let name = os_name.to_string_lossy();
        if name == "lock" {
            continue;
        }
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        let ours = [".log", ".log.tmp", ".log.bad"]
            .iter()
            .find_map(|suffix| parse_name(&name, suffix).map(|seq| (seq, *suffix)));
        match ours {
            Some((seq, suffix)) => {
                list.highest = Some(list.highest.map_or(seq, |h| h.max(seq)));
                if !regular {
                    foreign_names.push(format!("{name} (not a regular file)"));
                } else if suffix == ".log" {
                    list.seqs.push(seq);
                } else if suffix == ".log.tmp" {
                    log::debug!("QoS 1 queue: removing unfinished rewrite {name}");
                    if let Err(e) = fs::remove_file(entry.path()) {
                        log::warn!(
                            "QoS 1 queue: cannot remove the unfinished rewrite {} ({e}); \
                             ignoring it",
                            entry.path().display()
                        );
                    }
                } else {
                    set_aside += 1;
                }
            }
            None => foreign_names.push(name.into_owned()),
        }
    }
    list.foreign = foreign_names.len();
    if !foreign_names.is_empty() {
        let shown: Vec<String> = foreign_names
            .iter()
            .take(NAMES_SHOWN)
            .map(|n| format!("\"{}\"", cut(n)))
            .collect();
        let more = foreign_names.len().saturating_sub(NAMES_SHOWN);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        log::warn!(
            "QoS 1 queue: ignoring {} file(s) in {} that are not queue segments ({}{more}); \
             give the queue a directory of its own",
            foreign_names.len(),
            dir.display(),
            shown.join(", ")
        );
    }
    if set_aside > 0 {
        log::warn!(
            "QoS 1 queue: {} holds {set_aside} file(s) set aside as unusable (*.log.bad); \
             inspect them, then delete them",
            dir.display()
        );
    }
    list.seqs.sort_unstable();
    Ok(list)
}

/// The start of a segment file: at most [`MAX_SEGMENT_FILE`] bytes, and the
/// file's real length.
pub(super) struct SegmentData {
    pub(super) bytes: Vec<u8>,
    pub(super) file_len: u64,
}

/// Read (the bounded start of) a segment file. Never blocks on a FIFO and
/// never follows a symlink put in place of a segment.
pub(super) fn read_segment(path: &Path) -> io::Result<SegmentData> {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(i32::try_from(flags.bits()).unwrap_or(0))
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let file_len = meta.len();
    let cap = usize::try_from(file_len.min(MAX_SEGMENT_FILE)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(cap);
    file.take(MAX_SEGMENT_FILE).read_to_end(&mut bytes)?;
    Ok(SegmentData { bytes, file_len })
}

/// Rename an unusable segment file to `<name>.bad` (never over an existing
/// file) so that it no longer blocks the queue; the new name on success.
pub(super) fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let mut bad = path.as_os_str().to_owned();
    bad.push(".bad");
    let bad = PathBuf::from(bad);
    if fs::symlink_metadata(&bad).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", bad.display()),
        ));
    }
    fs::rename(path, &bad)?;
    Ok(bad)
}

/// Create `dir` (and missing parents) private to the user.
pub(super) fn create_dir(dir: &Path) -> Result<(), Error> {
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
        })
}

/// The queue holds message payloads: an existing directory that others may
/// enter or read is tightened to 0700 when it holds only queue files (and is
/// not a shared sticky directory such as /tmp); otherwise, or when chmod
/// fails, say what to do.
pub(super) fn tighten_dir(dir: &Path, only_ours: bool) {
    let Ok(meta) = fs::metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    let shown = dir.display();
    if !only_ours || mode & 0o1000 != 0 {
        log::warn!(
            "QoS 1 queue: {shown} is mode {mode:04o} and shared with other files: other users \
             may read the queued message payloads; set [queue] dir to a directory of its own \
             (uiot creates it with mode 0700)"
        );
        return;
    }
    match fs::set_permissions(dir, fs::Permissions::from_mode(0o700)) {
        Ok(()) => log::info!(
            "QoS 1 queue: {shown} was mode {mode:04o} (open to other users; it holds message \
             payloads): changed it to 0700"
        ),
        Err(e) => log::warn!(
            "QoS 1 queue: {shown} is mode {mode:04o}: other users may read the queued message \
             payloads, and uiot cannot change that ({e}): run `chmod 700 {shown}`"
        ),
    }
}

/// Lock the queue directory so that two processes never share it.
pub(super) fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
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
            Err(Errno::WOULDBLOCK) if tries < 50 => {
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

/// A new file, private to the user. `replace` truncates an existing one.
pub(super) fn new_file(path: &Path, replace: bool) -> io::Result<File> {
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
/// entry), counting the bytes. An existing file is an `AlreadyExists` error
/// and is left alone.
pub(super) fn create_segment(
    dir: &Path,
    seq: u64,
    header: &[u8],
    counter: &mut u64,
) -> io::Result<File> {
    let path = segment_path(dir, seq);
    let result = (|| -> io::Result<File> {
        let file = new_file(&path, false)?;
        write_all_at(&file, header, 0, counter)?;
        file.sync_data()?;
        sync_dir(dir)?;
        Ok(file)
    })();
    if let Err(e) = &result {
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = fs::remove_file(&path);
        }
    }
    result
}

/// Like `FileExt::write_all_at`, but counts every byte that reached the
/// file, even when a later part fails.
pub(super) fn write_all_at(
    file: &File,
    mut buf: &[u8],
    mut offset: u64,
    counter: &mut u64,
) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
            Ok(n) => {
                let n64 = n as u64;
                *counter = counter.saturating_add(n64);
                offset = offset.saturating_add(n64);
                buf = buf.get(n..).unwrap_or_default();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The file system (or the user's quota) is full. Through rustix: EDQUOT
/// is not the same number on every architecture.
pub(super) fn is_full(e: &io::Error) -> bool {
    matches!(Errno::from_io_error(e), Some(Errno::NOSPC | Errno::DQUOT))
}

/// What to do about an I/O error on the queue directory.
pub(super) fn advice(e: &io::Error) -> &'static str {
    if is_full(e) {
        return "the file system is full: free space there, or set [queue] dir elsewhere";
    }
    if Errno::from_io_error(e) == Some(Errno::ROFS) {
        return "the file system is read-only: set [queue] dir to a writable directory";
    }
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "permission denied: let uiot's user write there, or set [queue] dir elsewhere"
        }
        _ => "check that the path is a writable directory, or set [queue] dir elsewhere",
    }
}

pub(super) fn write_error(dir: &Path, e: io::Error) -> Error {
    Error::Io {
        context: format!(
            "cannot write the QoS 1 queue in {} ({})",
            dir.display(),
            advice(&e)
        ),
        source: e,
    }
}

pub(super) fn read_error(path: &Path, e: io::Error) -> Error {
    Error::Io {
        context: format!(
            "cannot read the QoS 1 queue at {} (check its permissions, or move it out of \
             the [queue] dir)",
            path.display()
        ),
        source: e,
    }
}
