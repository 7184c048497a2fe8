//! The simulator's HTTP server (`--http-port`): the platform's HTTP uplink
//! (`/auth`, `/topic/...`), file upload (`/api/v1/url`, `/files/...`) and
//! the firmware store (`/fw/...`), on 127.0.0.1 only. tiny_http parses the
//! requests behind the front door (`door`); every request is served on a
//! thread of its own (at most [`MAX_HANDLERS`] at once), so a stalled
//! download never holds up another request.
//!
//! Owns: start-up, routing, what every endpoint shares ([`Web`]) and the
//! request helpers (headers, bounded bodies, JSON replies, percent
//! escapes). Must not touch: what an endpoint answers (`uplink`, `files`,
//! `fw`), MQTT (handlers publish through their own [`Client`] clone).

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};
use uiot::Client;

use crate::cloud::{emit, Cloud};
use crate::door::Door;
use crate::{files, fw, uplink};

/// Requests served at once; more get 503.
pub const MAX_HANDLERS: usize = 128;
/// Largest body of a JSON request (`/auth`, `/api/v1/url`).
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// What the endpoints share.
pub struct Web {
    /// `http://127.0.0.1:PORT`, the port the clients reach.
    pub base: String,
    /// Where uploads are stored (`--files`).
    pub files: PathBuf,
    pub fw: Mutex<fw::Registry>,
    pub tokens: Mutex<uplink::Tokens>,
    pub uploads: Mutex<files::Tickets>,
    next_id: AtomicU64,
}

impl Web {
    /// A new id (tickets, MessageIDs), unique in this run.
    pub fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// What a handler gets.
pub struct Ctx {
    pub web: Arc<Web>,
    pub cloud: Arc<Mutex<Cloud>>,
    pub client: Client,
    pub door: Arc<Door>,
}

/// Start the server on 127.0.0.1:`port` (0: a free port).
pub fn start(
    port: u16,
    files: PathBuf,
    cloud: Arc<Mutex<Cloud>>,
    client: Client,
) -> Result<Arc<Web>, String> {
    let front = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port} (--http-port): {e}"))?;
    let addr = front
        .local_addr()
        .map_err(|e| format!("the HTTP port: {e}"))?;
    let server = Server::http("127.0.0.1:0")
        .map_err(|e| format!("cannot start the HTTP server on 127.0.0.1: {e}"))?;
    let back: SocketAddr = server
        .server_addr()
        .to_ip()
        .ok_or("the HTTP server has no TCP address")?;
    let door = Door::open(front, back).map_err(|e| format!("cannot start a thread: {e}"))?;
    let web = Arc::new(Web {
        base: format!("http://127.0.0.1:{}", addr.port()),
        files,
        fw: Mutex::new(fw::Registry::default()),
        tokens: Mutex::new(uplink::Tokens::default()),
        uploads: Mutex::new(files::Tickets::default()),
        next_id: AtomicU64::new(1),
    });
    let ctx = Arc::new(Ctx {
        web: Arc::clone(&web),
        cloud,
        client,
        door,
    });
    std::thread::Builder::new()
        .name("sim-http".into())
        .spawn(move || serve(&server, &ctx))
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(web)
}

fn serve(server: &Server, ctx: &Arc<Ctx>) {
    let active = Arc::new(AtomicUsize::new(0));
    for rq in server.incoming_requests() {
        if active.load(Ordering::Relaxed) >= MAX_HANDLERS {
            reply(
                rq,
                503,
                &json!({"RetCode": 130, "Message": "too many requests at once"}),
            );
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (ctx, done) = (Arc::clone(ctx), Arc::clone(&active));
        // If the thread cannot start, the request is dropped: tiny_http
        // answers 500.
        let _ = std::thread::Builder::new()
            .name("sim-http-req".into())
            .spawn(move || {
                route(&ctx, rq);
                done.fetch_sub(1, Ordering::Relaxed);
            });
    }
}

fn route(ctx: &Ctx, rq: Request) {
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    match (rq.method(), path) {
        (Method::Post, "/auth") => uplink::auth(ctx, rq),
        (Method::Post, p) if p.starts_with("/topic/") => uplink::publish(ctx, rq, path, query),
        (Method::Post, "/api/v1/url") => files::url(ctx, rq),
        (Method::Put, p) if p.starts_with("/files/") => files::put(ctx, rq, path, query),
        (Method::Get | Method::Head, p) if p.starts_with("/fw/") => fw::serve(ctx, rq, path),
        (m, p) => {
            let what = format!("{m} {}", uiot::cut(p));
            emit(&json!({"sim": "error", "http": what, "error": "no such endpoint"}));
            reply(
                rq,
                404,
                &json!({"RetCode": 230, "Message": "no such endpoint"}),
            );
        }
    }
}

/// The value of header `name` (any case).
pub fn header<'a>(rq: &'a Request, name: &str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Answer `rq` with `status` and the JSON `body`, after reading what is
/// left of the request's body (in small pieces: tiny_http would otherwise
/// allocate all of it at once to skip it).
pub fn reply(mut rq: Request, status: u16, body: &Value) {
    drain(rq.as_reader());
    let mut resp = Response::from_string(body.to_string()).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
        resp.add_header(h);
    }
    // The client may have gone: nothing to do about it.
    let _ = rq.respond(resp);
}

/// Why a body was not read.
pub enum BodyError {
    /// Longer than the limit (the rest was read and dropped).
    TooLarge,
    Io(io::Error),
}

/// The body of `rq`, at most `max` bytes. A longer one is read to its end
/// in small pieces and dropped (bounded memory; the connection stays
/// usable).
pub fn body(rq: &mut Request, max: usize) -> Result<Vec<u8>, BodyError> {
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut buf = Vec::new();
    let r = rq.as_reader();
    r.take(limit).read_to_end(&mut buf).map_err(BodyError::Io)?;
    if buf.len() > max {
        drain(r);
        return Err(BodyError::TooLarge);
    }
    Ok(buf)
}

/// Read `r` to its end in 64 KiB pieces, dropping what comes.
pub fn drain(r: &mut dyn Read) {
    let _ = io::copy(r, &mut io::sink());
}

/// `%XX` escapes decoded; `None` for a bad escape or bytes that are not UTF-8.
pub fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Everything but letters, digits and `-._~` as `%XX` (one path segment).
pub fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The value of `key` in a query string `a=1&b=2`.
pub fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `n` random bytes as lowercase hex (tokens).
pub fn random_hex(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn escapes_round_trip_and_bad_ones_are_refused() {
        let name = "a b/ü%.bin";
        let e = escape(name);
        assert_eq!(e, "a%20b%2F%C3%BC%25.bin");
        assert_eq!(unescape(&e).unwrap(), name);
        assert_eq!(unescape("/$system/p/d").unwrap(), "/$system/p/d");
        assert!(unescape("%zz").is_none());
        assert!(unescape("%4").is_none());
        assert!(unescape("%ff").is_none());
        assert_eq!(query_value("x=1&t=42", "t"), Some("42"));
        assert_eq!(query_value("t", "t"), None);
    }
}
