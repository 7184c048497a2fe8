//! Reading a file the user named: only a regular file, never more than a limit.
//!
//! Owns: the checks made before a configured file (the INI file, `ca_file`,
//! `secret_file`) is read: it must be a regular file (checked on the path
//! before opening and again on the open descriptor), it is opened
//! non-blocking (so a FIFO can never hang the open), it is read through a
//! bound, and whether users other than its owner may read it.
//! Must not touch: what the bytes mean, the wording of problems about keys
//! (callers add the file's role and the fix).

use std::fmt;
use std::fs::{File, FileType, Metadata};
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// Why a file was not read.
#[derive(Debug)]
pub(crate) enum FileError {
    /// It could not be looked at or opened (missing, no permission, ...).
    Io(io::Error),
    /// It exists but is not a regular file; what it is instead.
    NotRegular(&'static str),
    /// It is larger than accepted.
    TooLarge {
        /// Its size in bytes (at least `max + 1`).
        size: u64,
        /// The most accepted.
        max: u64,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io(e) => write!(f, "{e}"),
            FileError::NotRegular(kind) => write!(f, "not a regular file but {kind}"),
            FileError::TooLarge { size, max } => {
                write!(f, "{size} bytes, more than the {max} accepted")
            }
        }
    }
}

/// What a file that is not a regular file is, for messages.
fn kind(t: FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "something else"
    }
}

/// Refuses anything but a regular file of at most `max` bytes.
fn check(meta: &Metadata, max: u64) -> Result<(), FileError> {
    if !meta.is_file() {
        return Err(FileError::NotRegular(kind(meta.file_type())));
    }
    if meta.len() > max {
        return Err(FileError::TooLarge {
            size: meta.len(),
            max,
        });
    }
    Ok(())
}

/// The metadata of `path` (following links) if it is a regular file of at
/// most `max` bytes; nothing is opened.
pub(crate) fn inspect(path: &Path, max: u64) -> Result<Metadata, FileError> {
    let meta = std::fs::metadata(path).map_err(FileError::Io)?;
    check(&meta, max)?;
    Ok(meta)
}

/// The whole of `path`, which must be a regular file of at most `max` bytes.
/// The type and size are checked before opening, the open is non-blocking
/// (a FIFO swapped in meanwhile cannot block it), both are checked again on
/// the descriptor, and at most `max + 1` bytes are ever read (a file that
/// grows, or a `/proc` file that claims size 0, is still bounded).
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<(Vec<u8>, Metadata), FileError> {
    inspect(path, max)?;
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| FileError::Io(e.into()))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(FileError::Io)?;
    check(&meta, max)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > max {
        return Err(FileError::TooLarge { size, max });
    }
    Ok((bytes, meta))
}

/// The permission bits of `meta` when users other than the owner (its group
/// or everyone) may read the file; `None` when only the owner may.
pub(crate) fn readable_by_others(meta: &Metadata) -> Option<u32> {
    let mode = meta.permissions().mode() & 0o7777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh, empty directory under the temp directory, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "uiot-config-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        pub(crate) fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        }
        pub(crate) fn fifo(&self, name: &str) -> PathBuf {
            let p = self.0.join(name);
            rustix::fs::mkfifoat(rustix::fs::CWD, &p, Mode::from_raw_mode(0o600)).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_regular_file_within_the_limit_is_read_whole() {
        let d = TempDir::new("file-ok");
        let p = d.file("a", b"hello");
        let (bytes, meta) = read_bounded(&p, 5).unwrap();
        assert_eq!((bytes.as_slice(), meta.len()), (&b"hello"[..], 5));
    }

    #[test]
    fn larger_files_are_refused_before_reading() {
        let d = TempDir::new("file-big");
        let p = d.file("a", b"hello!");
        let e = read_bounded(&p, 5).unwrap_err();
        assert!(
            matches!(e, FileError::TooLarge { size: 6, max: 5 }),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "6 bytes, more than the 5 accepted");
        // A sparse file of 1 GB is refused by its size, nothing is read.
        let sparse = std::fs::File::create(d.0.join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        let e = read_bounded(&d.0.join("sparse"), 1024).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { size, .. } if size == 1 << 30));
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_without_blocking() {
        let d = TempDir::new("file-kinds");
        let fifo = d.fifo("pipe");
        for (path, want) in [
            (fifo.as_path(), "not a regular file but a FIFO (named pipe)"),
            (
                Path::new("/dev/zero"),
                "not a regular file but a character device",
            ),
            (d.0.as_path(), "not a regular file but a directory"),
        ] {
            let e = read_bounded(path, 1024).unwrap_err();
            assert!(matches!(e, FileError::NotRegular(_)), "{e:?}");
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn missing_files_are_io_errors() {
        let d = TempDir::new("file-missing");
        let e = read_bounded(&d.0.join("nothing"), 1024).unwrap_err();
        assert!(
            matches!(&e, FileError::Io(io) if io.kind() == io::ErrorKind::NotFound),
            "{e:?}"
        );
    }

    #[test]
    fn readable_by_others_looks_at_group_and_world_read_bits() {
        let d = TempDir::new("file-mode");
        let p = d.file("a", b"x");
        for (mode, want) in [
            (0o600, None),
            (0o400, None),
            (0o640, Some(0o640)),
            (0o604, Some(0o604)),
            (0o644, Some(0o644)),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let meta = std::fs::metadata(&p).unwrap();
            assert_eq!(readable_by_others(&meta), want, "{mode:o}");
        }
    }
}
