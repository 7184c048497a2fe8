//! Where `uiot pub` payloads come from, read within a byte limit so that no
//! input is ever read whole before it is refused: `-f FILE` (size checked
//! first, then a bounded read, for files that grow, FIFOs and devices), `-s`
//! (standard input, bounded) and `-l` (one line at a time, each bounded).
//!
//! Owns: the bounded reads and the "standard input is closed" check.
//! Must not touch: the exact PUBLISH size rule (the library checks each
//! message against `[limits] max_packet`; the bound here is that same
//! number, which no payload can reach), connecting, printing.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::Path;

use rustix::fs::{FileType, OFlags};
use uiot::Error;

use crate::cli::quote;

/// `limit + extra` as a read bound.
fn bound(limit: usize, extra: u64) -> u64 {
    u64::try_from(limit)
        .unwrap_or(u64::MAX)
        .saturating_add(extra)
}

fn too_big(what: &str, size: Option<u64>, limit: usize) -> Error {
    let size = match size {
        Some(n) => format!("is {n} bytes, over"),
        None => "holds more than".to_string(),
    };
    Error::Limit(format!(
        "{what} {size} the packet limit of {limit} bytes ([limits] max_packet); \
         split it into smaller messages"
    ))
}

/// Reads at most `limit` bytes from `reader`; more is refused as `what`.
fn read_bounded(
    reader: impl Read,
    limit: usize,
    what: &str,
    hint: usize,
) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::with_capacity(hint.min(limit));
    reader
        .take(bound(limit, 1))
        .read_to_end(&mut buf)
        .map_err(|source| Error::Input {
            context: format!("reading {what}"),
            source,
        })?;
    if buf.len() > limit {
        return Err(too_big(what, None, limit));
    }
    Ok(buf)
}

/// The payload of `-f path`: a regular file is refused by its size before
/// it is opened; anything else (FIFO, device, a file that grows) is read up
/// to `limit + 1` bytes and refused when that is more than `limit`.
pub fn read_file(path: &Path, limit: usize) -> Result<Vec<u8>, Error> {
    let what = format!("-f {}", quote(&path.to_string_lossy()));
    let input = |source| Error::Input {
        context: format!("reading {what}"),
        source,
    };
    let meta = std::fs::metadata(path).map_err(input)?;
    if meta.is_dir() {
        return Err(input(io::Error::from(rustix::io::Errno::ISDIR)));
    }
    if meta.is_file() && meta.len() > bound(limit, 0) {
        return Err(too_big(&what, Some(meta.len()), limit));
    }
    let file = File::open(path).map_err(input)?;
    let hint = usize::try_from(meta.len()).unwrap_or(limit);
    read_bounded(file, limit, &what, hint)
}

/// True when standard input was closed when uiot started (`<&-`). The Rust
/// runtime reopens a closed descriptor 0 as /dev/null for reading *and*
/// writing, which a shell's `</dev/null` never does (it opens read-only), so
/// that is how it is told apart; only `<>/dev/null` looks the same.
pub fn stdin_closed() -> bool {
    let stdin = io::stdin();
    let Ok(st) = rustix::fs::fstat(&stdin) else {
        return true;
    };
    let Ok(null) = rustix::fs::stat("/dev/null") else {
        return false;
    };
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
        && st.st_rdev == null.st_rdev
        && rustix::fs::fcntl_getfl(&stdin)
            .is_ok_and(|f| f.intersection(OFlags::ACCMODE) == OFlags::RDWR)
}

/// The error for a closed standard input read by `flag`.
pub fn closed_stdin(flag: &str) -> Error {
    Error::Input {
        context: format!(
            "reading standard input for {flag}: it is closed; pipe the message in, \
             or give </dev/null for an empty one"
        ),
        source: io::Error::from(rustix::io::Errno::BADF),
    }
}

/// The payload of `-s`: all of standard input, at most `limit` bytes.
pub fn read_stdin(limit: usize) -> Result<Vec<u8>, Error> {
    read_bounded(io::stdin().lock(), limit, "standard input (-s)", 4096)
}

/// Reads the next line of `input` into `line` without its `\n` or `\r\n`,
/// buffering at most `limit + 2` bytes. `Ok(false)` at the end of input;
/// a longer line is refused with [`Error::Limit`] and is not read further.
pub fn read_line(
    input: &mut impl BufRead,
    limit: usize,
    line: &mut Vec<u8>,
) -> Result<bool, Error> {
    line.clear();
    let n = (&mut *input)
        .take(bound(limit, 2))
        .read_until(b'\n', line)
        .map_err(|source| Error::Input {
            context: "reading standard input (-l)".to_string(),
            source,
        })?;
    if n == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > limit {
        line.clear();
        return Err(too_big("the line", None, limit));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut r = input;
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            match read_line(&mut r, limit, &mut line) {
                Ok(true) => out.push(Ok(line.clone())),
                Ok(false) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn lines_up_to_the_limit_pass_longer_ones_stop_the_input() {
        let ok = |s: &str| Ok(s.as_bytes().to_vec());
        assert_eq!(
            lines(b"abcd\nab\r\nx", 4),
            vec![ok("abcd"), ok("ab"), ok("x")]
        );
        assert_eq!(lines(b"abcd\r\n", 4), vec![ok("abcd")]);
        let got = lines(b"ab\nabcde\nab\n", 4);
        assert_eq!(got.len(), 2);
        assert!(got[1]
            .as_ref()
            .is_err_and(|e| e.contains("more than the packet limit of 4 bytes")));
        assert_eq!(lines(b"", 4), vec![]);
        assert_eq!(lines(b"\n\n", 4), vec![ok(""), ok("")]);
    }

    #[test]
    fn a_stream_over_the_limit_is_refused_after_limit_plus_one_bytes() {
        let zero = io::repeat(0);
        let e = read_bounded(zero, 10, "standard input (-s)", 0).unwrap_err();
        assert!(matches!(e, Error::Limit(_)), "{e}");
        assert_eq!(
            read_bounded(&b"0123456789"[..], 10, "x", 0).unwrap().len(),
            10
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_by_its_size() {
        let dir = std::env::temp_dir().join(format!("uiot-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big");
        File::create(&big).unwrap().set_len(1 << 30).unwrap();
        let e = read_file(&big, 1000).unwrap_err();
        assert!(e.to_string().contains("is 1073741824 bytes"), "{e}");
        let e = read_file(&dir, 1000).unwrap_err();
        assert!(matches!(e, Error::Input { .. }), "{e}");
        let e = read_file(&dir.join("missing"), 1000).unwrap_err();
        assert!(matches!(e, Error::Input { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
