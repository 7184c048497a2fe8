//! The firmware store of the simulated cloud: files pushed with `ota push`
//! are served from disk (never read whole) under
//! `http://127.0.0.1:PORT/fw/ID/BASENAME`, with `Range: bytes=N-` and
//! `bytes=N-M` (206 with Content-Range; 416 past the end) and always a
//! Content-Length, in one of the [`Mode`]s that test a client's download
//! (cuts, short files, a wrong MD5, expired and missing URLs, stalls,
//! a slow link). After each request a `fw-request` line says how it went.
//!
//! Owns: the registry of pushed files, their announced Size and MD5,
//! serving them. Must not touch: MQTT and the pending upgrades (`ota`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde_json::{json, Value};
use tiny_http::Request;

use crate::cloud::{emit, lock};
use crate::door::Conn;
use crate::http::{self, Ctx, Web};

/// Bytes read and sent at a time.
const CHUNK: usize = 16 * 1024;
/// The `slow` mode's rate, bytes per second.
const SLOW_RATE: u64 = 256 * 1024;
/// How long a `stall` keeps a connection open at most.
const STALL_MAX: Duration = Duration::from_secs(120);
/// How many bytes short the `truncated` copy is (at most half the file).
const TRUNCATE_BY: u64 = 1000;
/// Pushed files remembered; the oldest are forgotten past this.
const MAX_FIRMWARE: usize = 10_000;

/// How a pushed file is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Correctly.
    Ok,
    /// The first response is cut after half its body; later ones are fine.
    Cut,
    /// The server's copy is 1000 bytes short (half, if smaller); Size
    /// announces the whole file.
    Truncated,
    /// The announced MD5 is wrong (that of the file and one more byte).
    BadMd5,
    /// Every request gets 403 (an expired signature).
    Expired,
    /// Every request gets 404.
    Missing,
    /// Every response stops at the middle of the file and then sends
    /// nothing, until the client goes (or 120 s).
    Stall,
    /// Correctly, at about 256 KiB/s.
    Slow,
}

pub const MODES: &str = "ok, cut, truncated, badmd5, expired, missing, stall, slow";

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "ok" => Mode::Ok,
            "cut" => Mode::Cut,
            "truncated" => Mode::Truncated,
            "badmd5" => Mode::BadMd5,
            "expired" => Mode::Expired,
            "missing" => Mode::Missing,
            "stall" => Mode::Stall,
            "slow" => Mode::Slow,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ok => "ok",
            Mode::Cut => "cut",
            Mode::Truncated => "truncated",
            Mode::BadMd5 => "badmd5",
            Mode::Expired => "expired",
            Mode::Missing => "missing",
            Mode::Stall => "stall",
            Mode::Slow => "slow",
        }
    }
}

/// A pushed file.
pub struct Firmware {
    pub id: u64,
    pub module: String,
    pub version: String,
    pub url: String,
    /// MD5 and Size as announced in update_firmware.
    pub md5: String,
    pub size: u64,
    pub mode: Mode,
    path: PathBuf,
    name: String,
    requests: AtomicU64,
}

impl Firmware {
    /// How many bytes the server has of it.
    fn served_len(&self) -> u64 {
        match self.mode {
            Mode::Truncated => self.size.saturating_sub(TRUNCATE_BY.min(self.size / 2)),
            _ => self.size,
        }
    }
}

/// The pushed files, by id.
#[derive(Default)]
pub struct Registry {
    next: u64,
    by_id: BTreeMap<u64, Arc<Firmware>>,
}

/// Register `path` as `version` of `module`, served in `mode`: its size
/// and MD5 are read from the file (in pieces).
pub fn register(
    web: &Web,
    path: &Path,
    module: &str,
    version: &str,
    mode: Mode,
) -> Result<Arc<Firmware>, String> {
    let shown = path.display();
    let mut f = File::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let mut md5 = Md5::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read {shown}: {e}")),
        };
        md5.update(buf.get(..n).unwrap_or_default());
        size = size.saturating_add(n as u64);
    }
    if mode == Mode::BadMd5 {
        md5.update([0u8]);
    }
    let md5 = http::hex(&md5.finalize());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "firmware.bin".into());
    let mut reg = lock(&web.fw);
    reg.next = reg.next.saturating_add(1);
    let id = reg.next;
    let fw = Arc::new(Firmware {
        id,
        module: module.into(),
        version: version.into(),
        url: format!("{}/fw/{id}/{}", web.base, http::escape(&name)),
        md5,
        size,
        mode,
        path: path.to_path_buf(),
        name,
        requests: AtomicU64::new(0),
    });
    if reg.by_id.len() >= MAX_FIRMWARE {
        reg.by_id.pop_first();
    }
    reg.by_id.insert(id, Arc::clone(&fw));
    Ok(fw)
}

/// What a Range header asks for.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// No Range, or one the server ignores (multiple ranges, bad syntax).
    Whole,
    /// From the first byte to the last, inclusive (already within the file).
    Part(u64, u64),
    /// Starts at or past the end.
    Unsatisfiable(u64),
}

/// `bytes=N-`, `bytes=N-M` (inclusive), `bytes=-N` (the last N) over a
/// file of `len` bytes.
fn range(header: Option<&str>, len: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Whole;
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let (a, b) = (a.trim(), b.trim());
    let last = len.saturating_sub(1);
    match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(s), _) if s >= len && (b.is_empty() || b.parse::<u64>().is_ok_and(|e| e >= s)) => {
            Range::Unsatisfiable(s)
        }
        (Some(s), None) if b.is_empty() => Range::Part(s, last),
        (Some(s), Some(e)) if e >= s => Range::Part(s, e.min(last)),
        (None, Some(n)) if a.is_empty() && n > 0 && len > 0 => {
            Range::Part(len.saturating_sub(n), last)
        }
        _ => Range::Whole,
    }
}

/// `GET|HEAD /fw/ID/BASENAME`.
pub fn serve(ctx: &Ctx, rq: Request, path: &str) {
    let rest = path.strip_prefix("/fw/").unwrap_or_default();
    let (id, name) = rest.split_once('/').unwrap_or((rest, ""));
    let fw = id
        .parse::<u64>()
        .ok()
        .and_then(|id| lock(&ctx.web.fw).by_id.get(&id).cloned())
        .filter(|f| http::unescape(name).is_some_and(|n| n == f.name));
    let Some(fw) = fw else {
        emit(
            &json!({"sim": "error", "http": format!("GET {}", uiot::cut(path)), "error": "no such firmware"}),
        );
        return raw(rq, 404, &[], NO_SUCH_KEY.as_bytes());
    };
    let conn = ctx.door.conn(rq.remote_addr());
    let head = *rq.method() == tiny_http::Method::Head;
    let len = fw.served_len();
    let asked = range(http::header(&rq, "Range"), len);
    let range_start = match asked {
        Range::Whole => Value::Null,
        Range::Part(s, _) | Range::Unsatisfiable(s) => json!(s),
    };
    let first = fw.requests.fetch_add(1, Ordering::Relaxed) == 0;
    let done = |status: u16, sent: u64| {
        emit(&json!({
            "sim": "fw-request", "id": fw.id, "module": fw.module, "version": fw.version,
            "mode": fw.mode.name(), "status": status, "range_start": range_start,
            "bytes_sent": sent,
        }));
    };
    match fw.mode {
        Mode::Expired => {
            raw(rq, 403, &[], EXPIRED.as_bytes());
            return done(403, 0);
        }
        Mode::Missing => {
            raw(rq, 404, &[], NO_SUCH_KEY.as_bytes());
            return done(404, 0);
        }
        _ => {}
    }
    let (status, start, end) = match asked {
        Range::Whole => (200, 0, len),
        Range::Part(s, e) => (206, s, e.saturating_add(1)),
        Range::Unsatisfiable(_) => {
            raw(rq, 416, &[("Content-Range", format!("bytes */{len}"))], b"");
            return done(416, 0);
        }
    };
    let mut file = match File::open(&fw.path).and_then(|mut f| {
        let real = f.metadata()?.len();
        if real != fw.size {
            return Err(io::Error::other(format!(
                "it is {real} bytes now, {} when pushed",
                fw.size
            )));
        }
        f.seek(SeekFrom::Start(start)).map(|_| f)
    }) {
        Ok(f) => f,
        Err(e) => {
            let why = format!("cannot serve {}: {e}", fw.path.display());
            emit(
                &json!({"sim": "error", "http": format!("GET {}", uiot::cut(path)), "error": why}),
            );
            raw(rq, 500, &[], b"");
            return done(500, 0);
        }
    };
    let body_len = end.saturating_sub(start);
    // Where this response deviates (bytes of its body), and how.
    let stop = match fw.mode {
        Mode::Cut if first => Some((body_len / 2, Stop::Cut)),
        Mode::Stall => {
            let at = (fw.size / 2).saturating_sub(start);
            (at < body_len).then_some((at, Stop::Stall))
        }
        _ => None,
    };
    let mut headers = vec![
        ("Content-Type", "application/octet-stream".to_string()),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    if status == 206 {
        headers.push((
            "Content-Range",
            format!("bytes {start}-{}/{len}", end.saturating_sub(1)),
        ));
    }
    let mut w = rq.into_writer();
    if write_head(&mut w, status, &headers, body_len).is_err() || head {
        return done(status, 0);
    }
    let send = stop.map_or(body_len, |(at, _)| at);
    let slow = fw.mode == Mode::Slow;
    let sent = stream(&mut file, &mut w, send, slow, conn.as_deref());
    let _ = w.flush();
    match (stop, conn) {
        (Some((_, Stop::Cut)), Some(c)) => c.cut(),
        (Some((_, Stop::Stall)), Some(c)) if sent == send => {
            c.wait_gone(STALL_MAX);
            c.cut();
        }
        _ => {}
    }
    done(status, sent);
}

#[derive(Clone, Copy)]
enum Stop {
    Cut,
    Stall,
}

/// Copy `n` bytes of `file` to `w`; the number that was written (fewer
/// when the client went away or the file could not be read).
fn stream(file: &mut File, w: &mut dyn Write, n: u64, slow: bool, conn: Option<&Conn>) -> u64 {
    let started = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let mut sent: u64 = 0;
    while sent < n {
        if conn.is_some_and(Conn::is_gone) {
            break;
        }
        let want = usize::try_from(n.saturating_sub(sent))
            .unwrap_or(CHUNK)
            .min(CHUNK);
        let Some(b) = buf.get_mut(..want) else { break };
        let got = match file.read(b) {
            Ok(0) | Err(_) => break,
            Ok(k) => k,
        };
        if w.write_all(b.get(..got).unwrap_or_default()).is_err() {
            break;
        }
        sent = sent.saturating_add(got as u64);
        if slow {
            let due = Duration::from_micros(sent.saturating_mul(1_000_000) / SLOW_RATE);
            let elapsed = started.elapsed();
            if due > elapsed {
                let _ = w.flush();
                std::thread::sleep(due.saturating_sub(elapsed));
            }
        }
    }
    sent
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Internal Server Error",
    }
}

fn write_head(
    w: &mut dyn Write,
    status: u16,
    headers: &[(&str, String)],
    len: u64,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    w.write_all(head.as_bytes())?;
    w.flush()
}

/// A small whole response.
fn raw(rq: Request, status: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut w = rq.into_writer();
    let mut all = headers.to_vec();
    if !body.is_empty() {
        all.push(("Content-Type", "application/xml".into()));
    }
    let _ = write_head(&mut w, status, &all, body.len() as u64)
        .and_then(|()| w.write_all(body))
        .and_then(|()| w.flush());
}

const EXPIRED: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
<Message>Request has expired (Expires is in the past)</Message></Error>\n";
const NO_SUCH_KEY: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
<Message>The specified key does not exist.</Message></Error>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_rfc_9110_says() {
        assert_eq!(range(None, 10), Range::Whole);
        assert_eq!(range(Some("bytes=0-"), 10), Range::Part(0, 9));
        assert_eq!(range(Some("bytes=4-"), 10), Range::Part(4, 9));
        assert_eq!(range(Some("bytes=4-5"), 10), Range::Part(4, 5));
        assert_eq!(range(Some("bytes=4-4000"), 10), Range::Part(4, 9));
        assert_eq!(range(Some("bytes=-3"), 10), Range::Part(7, 9));
        assert_eq!(range(Some("bytes=10-"), 10), Range::Unsatisfiable(10));
        assert_eq!(range(Some("bytes=12-20"), 10), Range::Unsatisfiable(12));
        assert_eq!(range(Some("bytes=5-4"), 10), Range::Whole);
        assert_eq!(range(Some("bytes=1-2,4-5"), 10), Range::Whole);
        assert_eq!(range(Some("items=1-2"), 10), Range::Whole);
        assert_eq!(range(Some("bytes=x-"), 10), Range::Whole);
    }

    #[test]
    fn modes_parse_by_name() {
        for m in MODES.split(", ") {
            assert_eq!(Mode::parse(m).map(Mode::name), Some(m));
        }
        assert_eq!(Mode::parse("fast"), None);
    }
}
