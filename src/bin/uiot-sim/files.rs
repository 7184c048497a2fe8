//! File upload as UIoT Core and its file store answer it (protocol
//! sections 7.6 and 11): `POST /api/v1/url` (signed like `/auth`) with
//! `{"ProductSN","DeviceSN","FileName","FileSize","MD5","Content-Type"}`
//! buys a one-time URL under `/files/PSN/DSN/NAME?t=ID` and its
//! `Authorization`; the `PUT` there is streamed to `--files DIR` as
//! DIR/PSN/DSN/NAME (through a hidden `.part` file, MD5 computed as it
//! comes) and kept only when its size and MD5 are the announced ones and
//! its `Content-MD5` (hex, as the SDK sends it) agrees: then 200 `{}`,
//! otherwise 400 `{"RetCode":..,"ErrMsg":..}` and the file removed.
//!
//! The store's RetCodes are not documented; the sim's own (negative, like
//! UFile's) are the constants below.
//!
//! Owns: upload tickets, the files under `--files`, the `upload` line.
//! Must not touch: signatures and secrets (`uplink::signed`), other
//! directories.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde_json::{json, Value};
use tiny_http::Request;

use crate::cloud::{emit, lock};
use crate::http::{self, reply, Ctx};
use crate::state::Dev;
use crate::uplink::{self, refuse, PARAMETER};

/// No such upload URL, or a wrong `Authorization`.
const DENIED: i64 = -10001;
/// The body's size is not the announced FileSize.
const SIZE_MISMATCH: i64 = -10002;
/// The body's MD5 is not the announced one, or not `Content-MD5`.
const MD5_MISMATCH: i64 = -10003;
/// The sim could not store the file.
const STORE_FAILED: i64 = -10004;
/// Upload URLs kept; the oldest are forgotten past this.
const MAX_TICKETS: usize = 1000;
/// Bytes read and written at a time.
const CHUNK: usize = 64 * 1024;

/// An upload URL handed out and not used yet.
struct Ticket {
    dev: Dev,
    name: String,
    size: u64,
    md5: String,
    authorization: String,
}

/// The upload URLs handed out, by id.
#[derive(Default)]
pub struct Tickets {
    by_id: BTreeMap<u64, Ticket>,
}

/// A file or directory name: not empty, no '/', no NUL, not `.` or `..`.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0'])
}

/// `POST /api/v1/url`.
pub fn url(ctx: &Ctx, mut rq: Request) {
    let (m, dev) = match uplink::signed(ctx, &mut rq) {
        Ok(x) => x,
        Err((code, why)) => return refuse(rq, code, &why),
    };
    let name = match m.get("FileName") {
        Some(Value::String(s)) if plain_name(s) && !s.chars().any(char::is_control) => s.clone(),
        _ => {
            return refuse(
                rq,
                PARAMETER,
                "FileName is missing or not a plain file name",
            )
        }
    };
    let Some(size) = m.get("FileSize").and_then(Value::as_u64).filter(|s| *s > 0) else {
        return refuse(
            rq,
            PARAMETER,
            "FileSize is missing or not a positive integer",
        );
    };
    let md5 = match m.get("MD5") {
        Some(Value::String(s)) if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            s.to_ascii_lowercase()
        }
        _ => return refuse(rq, PARAMETER, "MD5 is missing or not 32 hex digits"),
    };
    if !matches!(m.get("Content-Type"), Some(Value::String(_))) {
        return refuse(rq, PARAMETER, "Content-Type is missing");
    }
    if !plain_name(&dev.psn) || !plain_name(&dev.dsn) {
        return refuse(rq, PARAMETER, "ProductSN or DeviceSN is not a plain name");
    }
    let token = match http::random_hex(16) {
        Ok(t) => t,
        Err(why) => return refuse(rq, 130, &why),
    };
    let id = ctx.web.id();
    let url = format!(
        "{}/files/{}/{}/{}?t={id}",
        ctx.web.base,
        http::escape(&dev.psn),
        http::escape(&dev.dsn),
        http::escape(&name)
    );
    let authorization = format!("Ucloud {token}");
    {
        let mut t = lock(&ctx.web.uploads);
        if t.by_id.len() >= MAX_TICKETS {
            t.by_id.pop_first();
        }
        t.by_id.insert(
            id,
            Ticket {
                dev,
                name,
                size,
                md5,
                authorization: authorization.clone(),
            },
        );
    }
    reply(
        rq,
        200,
        &json!({"RetCode": 0, "Message": "Success", "URL": url, "Authorization": authorization}),
    );
}

/// `PUT /files/PSN/DSN/NAME?t=ID`.
pub fn put(ctx: &Ctx, mut rq: Request, path: &str, query: &str) {
    let parts: Vec<Option<String>> = path
        .strip_prefix("/files/")
        .unwrap_or_default()
        .split('/')
        .map(http::unescape)
        .collect();
    let (psn, dsn, name) = match parts.as_slice() {
        [Some(p), Some(d), Some(n)] => (p.clone(), d.clone(), n.clone()),
        _ => (String::new(), String::new(), path.to_string()),
    };
    let ticket = query_id(query).and_then(|id| lock(&ctx.web.uploads).by_id.remove(&id));
    let mut line = json!({"sim": "upload", "psn": psn, "dsn": dsn, "name": name, "size": 0, "md5": null, "ok": false});
    let Some(t) = ticket.filter(|t| t.dev.psn == psn && t.dev.dsn == dsn && t.name == name) else {
        return store_refuses(
            rq,
            line,
            403,
            DENIED,
            "no such upload URL (each from /api/v1/url is used once)",
        );
    };
    if http::header(&rq, "Authorization") != Some(t.authorization.as_str()) {
        return store_refuses(
            rq,
            line,
            403,
            DENIED,
            "Authorization is not the one /api/v1/url gave",
        );
    }
    let content_md5 = http::header(&rq, "Content-MD5").map(str::to_ascii_lowercase);
    let dir = ctx.web.files.join(&t.dev.psn).join(&t.dev.dsn);
    let part = dir.join(format!(".{}.part-{}", t.name, ctx.web.id()));
    let stored = store(&mut rq, &dir, &part, t.size);
    let (size, md5) = match stored {
        Ok(x) => x,
        Err(why) => {
            let _ = fs::remove_file(&part);
            return store_refuses(rq, line, 500, STORE_FAILED, &why);
        }
    };
    crate::cloud::put(&mut line, "size", json!(size));
    crate::cloud::put(&mut line, "md5", json!(md5));
    let wrong = if size != t.size {
        Some((
            SIZE_MISMATCH,
            format!("{size} bytes arrived, FileSize was {}", t.size),
        ))
    } else if md5 != t.md5 {
        Some((
            MD5_MISMATCH,
            format!("the file's MD5 is {md5}, the announced MD5 {}", t.md5),
        ))
    } else if content_md5.as_ref().is_some_and(|c| *c != md5) {
        Some((
            MD5_MISMATCH,
            format!("the file's MD5 is {md5}, Content-MD5 says otherwise (hex expected)"),
        ))
    } else {
        None
    };
    if let Some((code, why)) = wrong {
        let _ = fs::remove_file(&part);
        return store_refuses(rq, line, 400, code, &why);
    }
    let path = dir.join(&t.name);
    if let Err(e) = fs::rename(&part, &path) {
        let _ = fs::remove_file(&part);
        return store_refuses(
            rq,
            line,
            500,
            STORE_FAILED,
            &format!("cannot store {}: {e}", path.display()),
        );
    }
    crate::cloud::put(&mut line, "ok", json!(true));
    crate::cloud::put(&mut line, "path", json!(path.display().to_string()));
    emit(&line);
    reply(rq, 200, &json!({}));
}

fn query_id(query: &str) -> Option<u64> {
    http::query_value(query, "t").and_then(|v| v.parse().ok())
}

/// The body into `part` in `dir`: its size and MD5. At most `limit` bytes
/// are written; the rest is counted and dropped.
fn store(rq: &mut Request, dir: &Path, part: &Path, limit: u64) -> Result<(u64, String), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut f = File::create(part).map_err(|e| format!("cannot create {}: {e}", part.display()))?;
    let mut md5 = Md5::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    let r = rq.as_reader();
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the body: {e}")),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        md5.update(chunk);
        let room = usize::try_from(limit.saturating_sub(size)).unwrap_or(usize::MAX);
        let keep = chunk.get(..n.min(room)).unwrap_or_default();
        f.write_all(keep)
            .map_err(|e| format!("writing {}: {e}", part.display()))?;
        size = size.saturating_add(n as u64);
    }
    f.sync_all()
        .map_err(|e| format!("syncing {}: {e}", part.display()))?;
    Ok((size, http::hex(&md5.finalize())))
}

fn store_refuses(rq: Request, mut line: Value, status: u16, code: i64, why: &str) {
    crate::cloud::put(&mut line, "error", json!(why));
    emit(&line);
    reply(rq, status, &json!({"RetCode": code, "ErrMsg": why}));
}

/// A fresh directory for uploads when `--files` is not given (created by
/// the first upload, so a run without uploads leaves nothing behind).
pub fn temp_dir() -> PathBuf {
    let stamp = crate::state::now_ms();
    std::env::temp_dir().join(format!("uiot-sim-files-{}-{stamp}", std::process::id()))
}
