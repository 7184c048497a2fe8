//! Fetching a firmware image: HTTP(S) GET into a staging file, resumed
//! with `Range` after a cut, checked against the notice's Size and MD5,
//! then renamed into place.
//!
//! Owns: the free-space check, the staging and final file names, the HTTP
//! status and error mapping to the platform's ErrCodes, the retry and
//! back-off, the incremental MD5, progress pacing, cancellation between
//! chunks. Memory is bounded: one chunk ([`CHUNK`]) at a time.
//! Must not touch: MQTT (the caller publishes progress and the outcome),
//! installing the image.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::error::OtaError;
use super::messages::Notice;

/// Bytes read and written at a time.
pub const CHUNK: usize = 16 * 1024;
/// Free space kept on top of the firmware's Size, in bytes.
pub const SPACE_MARGIN: u64 = 1024 * 1024;
/// Most HTTP requests for one download (cuts that made progress included).
const MAX_REQUESTS: u32 = 1000;

/// How a download behaves on a slow or broken link.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Connecting, sending the request and receiving the response headers,
    /// each at most this long. Default 10 s (the SDK's receive timeout).
    pub timeout: Duration,
    /// One request reads the body at most this long; then the download
    /// goes on with a `Range` request from where it got. A window that
    /// brought no byte counts as a failed attempt (a stall). Default 30 s.
    pub window: Duration,
    /// Failed attempts in a row (no byte received) before giving up.
    /// Default 4.
    pub retries: u32,
    /// Wait before a retry, times the number of failures in a row.
    /// Default 1 s.
    pub backoff: Duration,
    /// Least time between progress calls (100 % is always called).
    /// Default 5 s.
    pub progress_every: Duration,
    /// Free space required on top of Size. Default [`SPACE_MARGIN`].
    pub margin: u64,
    /// Certificates (PEM) to trust for `https://` instead of the system's
    /// roots, e.g. DigiCert Global Root CA on a board without a CA bundle.
    /// Only with the `tls` feature. Default none (the system's roots).
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            timeout: Duration::from_secs(10),
            window: Duration::from_secs(30),
            retries: 4,
            backoff: Duration::from_secs(1),
            progress_every: Duration::from_secs(5),
            margin: SPACE_MARGIN,
            ca_pem: None,
        }
    }
}

/// `Err(NoSpace)` unless `free` bytes hold `size` plus `margin`.
pub fn check_space(free: u64, size: u64, margin: u64) -> Result<(), OtaError> {
    let need = size.saturating_add(margin);
    if free < need {
        return Err(OtaError::NoSpace { need, free });
    }
    Ok(())
}

/// Bytes available to this process in the file system of `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The staging file of a download in `dir`: `.MODULE-VERSION.part`.
pub fn staging_path(dir: &Path, module: &str, version: &str) -> PathBuf {
    dir.join(format!(".{module}-{version}.part"))
}

/// The verified image in `dir`: `MODULE-VERSION.bin`.
pub fn image_path(dir: &Path, module: &str, version: &str) -> PathBuf {
    dir.join(format!("{module}-{version}.bin"))
}

/// [`download_with`] with the default [`DownloadOptions`].
pub fn download(
    notice: &Notice,
    dir: &Path,
    cancel: &AtomicBool,
    progress: impl FnMut(u8),
) -> Result<PathBuf, OtaError> {
    download_with(notice, dir, cancel, &DownloadOptions::default(), progress)
}

/// Fetch the firmware of an update notice into `dir` and return the path
/// of the verified image ([`image_path`]).
///
/// Refused before any request when `dir` lacks Size plus the margin of
/// free space. The body goes into [`staging_path`] a chunk at a time
/// (MD5 computed as it comes); after a cut or a stall the download
/// resumes with `Range: bytes=N-` (a server answering 200 instead of 206
/// makes it start over). Once Size bytes are in and the MD5 matches, the
/// file and the directory are synced and the file renamed into place. On
/// any failure, and when `cancel` becomes true (checked between chunks),
/// the staging file is removed. A staging file left by an earlier run is
/// overwritten, not resumed. `progress` gets the percentage at most every
/// [`DownloadOptions::progress_every`], and 100 at the end.
pub fn download_with(
    notice: &Notice,
    dir: &Path,
    cancel: &AtomicBool,
    opts: &DownloadOptions,
    progress: impl FnMut(u8),
) -> Result<PathBuf, OtaError> {
    let Notice::Update {
        module,
        version,
        url,
        md5,
        size,
    } = notice
    else {
        return Err(OtaError::Io {
            context: "download".into(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "a cancel notice has nothing to download",
            ),
        });
    };
    if url.starts_with("https://") && !cfg!(feature = "tls") {
        return Err(OtaError::UrlUnreachable(
            "an https:// URL needs uiot built with the `tls` feature".into(),
        ));
    }
    let free = free_space(dir).map_err(|source| OtaError::Io {
        context: format!("checking the free space in {}", dir.display()),
        source,
    })?;
    check_space(free, *size, opts.margin)?;
    let part = staging_path(dir, module, version);
    let image = image_path(dir, module, version);
    let mut job = Job {
        url,
        size: *size,
        opts,
        cancel,
        progress,
        last_progress: None,
        done: 0,
        hasher: Md5::new(),
    };
    let outcome = File::create(&part)
        .map_err(|source| io_error(&part, "creating", source))
        .and_then(|mut file| {
            job.fetch(&mut file)?;
            job.verify(md5)?;
            file.sync_all()
                .map_err(|source| io_error(&part, "syncing", source))
        });
    if let Err(e) = outcome {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, &image).map_err(|source| {
        let _ = std::fs::remove_file(&part);
        io_error(&image, "renaming the download to", source)
    })?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error(dir, "syncing the directory", source))?;
    (job.progress)(100);
    Ok(image)
}

fn io_error(path: &Path, what: &str, source: io::Error) -> OtaError {
    OtaError::Io {
        context: format!("{what} {}", path.display()),
        source,
    }
}

/// How one request ended.
enum Attempt {
    /// The whole body is in.
    Complete,
    /// Cut, stalled or refused for now; `progressed` when it brought bytes.
    Failed { error: OtaError, progressed: bool },
}

struct Job<'a, P> {
    url: &'a str,
    size: u64,
    opts: &'a DownloadOptions,
    cancel: &'a AtomicBool,
    progress: P,
    last_progress: Option<Instant>,
    done: u64,
    hasher: Md5,
}

impl<P: FnMut(u8)> Job<'_, P> {
    fn fetch(&mut self, file: &mut File) -> Result<(), OtaError> {
        let agent = agent(self.opts)?;
        let mut failures: u32 = 0;
        for _ in 0..MAX_REQUESTS {
            self.check_cancel()?;
            if self.done > 0 && self.done == self.size {
                // All in, though the last request ended in an error.
                return Ok(());
            }
            match self.request(&agent, file)? {
                Attempt::Complete => return Ok(()),
                Attempt::Failed {
                    progressed: true,
                    error,
                } => {
                    log::info!(
                        "firmware download interrupted at {} bytes ({error}); resuming",
                        self.done
                    );
                    failures = 0;
                }
                Attempt::Failed { error, .. } => {
                    failures = failures.saturating_add(1);
                    if failures > self.opts.retries {
                        return Err(error);
                    }
                    log::info!(
                        "firmware download: {error}; retry {failures} of {}",
                        self.opts.retries
                    );
                    self.sleep(self.opts.backoff.saturating_mul(failures))?;
                }
            }
        }
        Err(OtaError::UrlUnreachable(format!(
            "{MAX_REQUESTS} requests without the whole file"
        )))
    }

    /// One GET from `self.done` on, appending what comes to `file`.
    fn request(&mut self, agent: &ureq::Agent, file: &mut File) -> Result<Attempt, OtaError> {
        let mut req = agent.get(self.url);
        if self.done > 0 {
            req = req.header("Range", format!("bytes={}-", self.done));
        }
        let resp = match req.call() {
            Ok(r) => r,
            // A bad URL or certificate stays bad: not retried.
            Err(e @ (ureq::Error::BadUri(_) | ureq::Error::Tls(_) | ureq::Error::TlsRequired)) => {
                return Err(classify(e))
            }
            #[cfg(feature = "tls")]
            Err(e @ ureq::Error::NativeTls(_)) => return Err(classify(e)),
            Err(e) => return retryable(classify(e), false),
        };
        match resp.status().as_u16() {
            200 => {
                if self.done > 0 {
                    log::info!("the firmware server ignored Range: starting over");
                    self.restart(file)?;
                }
            }
            206 => {
                let start = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(range_start);
                if start != Some(self.done) {
                    self.restart(file)?;
                    return retryable(
                        OtaError::UrlUnreachable("206 with a Content-Range not asked for".into()),
                        false,
                    );
                }
            }
            403 => return Err(OtaError::SignatureExpired),
            404 => return Err(OtaError::UrlUnreachable("HTTP 404: no such file".into())),
            s @ 500..=599 => {
                return retryable(OtaError::UrlUnreachable(format!("HTTP {s}")), false)
            }
            s => return Err(OtaError::UrlUnreachable(format!("HTTP {s}"))),
        }
        // A body with a length or chunked ends cleanly only when complete;
        // one delimited by the connection's close may also end by a cut.
        let framed = ["content-length", "transfer-encoding"]
            .iter()
            .any(|h| resp.headers().contains_key(*h));
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; CHUNK];
        let mut progressed = false;
        loop {
            self.check_cancel()?;
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return retryable(classify_io(e), progressed),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            let done = self
                .done
                .checked_add(n as u64)
                .filter(|d| *d <= self.size)
                .ok_or_else(|| {
                    OtaError::Md5Mismatch(format!("the server sent more than Size ({})", self.size))
                })?;
            file.write_all(chunk).map_err(|source| OtaError::Io {
                context: "writing the firmware".into(),
                source,
            })?;
            self.hasher.update(chunk);
            self.done = done;
            progressed = true;
            self.tick();
        }
        if self.done < self.size && framed {
            return Err(OtaError::Md5Mismatch(format!(
                "the server's file ends at {} bytes, Size is {}",
                self.done, self.size
            )));
        }
        if self.done < self.size {
            return retryable(
                OtaError::UrlUnreachable(format!(
                    "the server closed the body at {} of {} bytes",
                    self.done, self.size
                )),
                progressed,
            );
        }
        Ok(Attempt::Complete)
    }

    fn restart(&mut self, file: &mut File) -> Result<(), OtaError> {
        self.done = 0;
        self.hasher = Md5::new();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .map_err(|source| OtaError::Io {
                context: "truncating the firmware file".into(),
                source,
            })
    }

    fn verify(&mut self, md5: &str) -> Result<(), OtaError> {
        if self.done != self.size {
            return Err(OtaError::Md5Mismatch(format!(
                "{} bytes where Size is {}",
                self.done, self.size
            )));
        }
        let got: String = std::mem::take(&mut self.hasher)
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !got.eq_ignore_ascii_case(md5) {
            return Err(OtaError::Md5Mismatch(format!("MD5 {got}, expected {md5}")));
        }
        Ok(())
    }

    fn tick(&mut self) {
        let due = self
            .last_progress
            .is_none_or(|t| t.elapsed() >= self.opts.progress_every);
        if due && self.done < self.size {
            self.last_progress = Some(Instant::now());
            let pct = self
                .done
                .saturating_mul(100)
                .checked_div(self.size)
                .unwrap_or(100);
            (self.progress)(u8::try_from(pct.min(99)).unwrap_or(99));
        }
    }

    fn check_cancel(&self) -> Result<(), OtaError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(OtaError::Cancelled);
        }
        Ok(())
    }

    /// Sleep `d`, waking every 50 ms to look at the cancel flag.
    fn sleep(&self, d: Duration) -> Result<(), OtaError> {
        let end = Instant::now().checked_add(d);
        loop {
            self.check_cancel()?;
            let left = end.map_or(Duration::from_millis(50), |e| {
                e.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

fn retryable(error: OtaError, progressed: bool) -> Result<Attempt, OtaError> {
    Ok(Attempt::Failed { error, progressed })
}

fn agent(opts: &DownloadOptions) -> Result<ureq::Agent, OtaError> {
    let b = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(5)
        .timeout_resolve(Some(opts.timeout))
        .timeout_connect(Some(opts.timeout))
        .timeout_send_request(Some(opts.timeout))
        .timeout_recv_response(Some(opts.timeout))
        .timeout_recv_body(Some(opts.window))
        .user_agent(concat!("uiot/", env!("CARGO_PKG_VERSION")));
    #[cfg(feature = "tls")]
    let b = b.tls_config(
        ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(roots(opts.ca_pem.as_deref())?)
            .build(),
    );
    Ok(b.build().into())
}

#[cfg(feature = "tls")]
fn roots(pem: Option<&[u8]>) -> Result<ureq::tls::RootCerts, OtaError> {
    use ureq::tls::{parse_pem, PemItem, RootCerts};
    let Some(pem) = pem else {
        return Ok(RootCerts::PlatformVerifier);
    };
    let mut certs = Vec::new();
    for item in parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(bad_ca(&e.to_string())),
        }
    }
    if certs.is_empty() {
        return Err(bad_ca("no certificate in it"));
    }
    Ok(RootCerts::from(certs))
}

#[cfg(feature = "tls")]
fn bad_ca(why: &str) -> OtaError {
    OtaError::Io {
        context: "reading DownloadOptions::ca_pem".into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, why.to_string()),
    }
}

/// The first byte of `Content-Range: bytes N-M/T`.
fn range_start(v: &str) -> Option<u64> {
    v.trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn classify(e: ureq::Error) -> OtaError {
    match e {
        ureq::Error::Timeout(t) => OtaError::Timeout(format!("no {t} in time")),
        ureq::Error::Io(e) => classify_io(e),
        other => OtaError::UrlUnreachable(other.to_string()),
    }
}

fn classify_io(e: io::Error) -> OtaError {
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        return OtaError::Timeout(e.to_string());
    }
    if e.get_ref().is_some_and(|i| i.is::<ureq::Error>()) {
        if let Some(Ok(u)) = e.into_inner().map(|b| b.downcast::<ureq::Error>()) {
            return classify(*u);
        }
        return OtaError::UrlUnreachable("reading the body failed".into());
    }
    OtaError::UrlUnreachable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ota_space_is_checked_with_the_margin() {
        assert!(check_space(5 + SPACE_MARGIN, 5, SPACE_MARGIN).is_ok());
        match check_space(4 + SPACE_MARGIN, 5, SPACE_MARGIN) {
            Err(e @ OtaError::NoSpace { .. }) => assert_eq!(e.err_code(), -1),
            other => panic!("{other:?}"),
        }
        assert!(check_space(u64::MAX - 1, u64::MAX, 10).is_err());
    }

    #[test]
    fn ota_content_range_start() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
