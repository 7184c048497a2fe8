//! [`OtaError`]: why a firmware download or installation failed, the
//! `report_fail` ErrCode of each case, and a message saying what to do.
//!
//! Owns: the variants, their ErrCodes and Display texts.
//! Must not touch: HTTP, files, MQTT.

use std::fmt;
use std::io;

/// Why a download (or the installation after it) failed. [`err_code`]
/// gives the `report_fail` ErrCode.
///
/// [`err_code`]: OtaError::err_code
#[derive(Debug)]
#[non_exhaustive]
pub enum OtaError {
    /// The server could not be reached, or answered 404 or another
    /// error status (ErrCode -1). The text says what happened.
    UrlUnreachable(String),
    /// The server answered 403: the pre-signed URL expired (ErrCode -2).
    SignatureExpired,
    /// Connecting, the response or the body stalled past the timeout, on
    /// every retry (ErrCode -3).
    Timeout(String),
    /// The file's MD5 or size is not the notice's (ErrCode -4); the file
    /// was removed.
    Md5Mismatch(String),
    /// Installing the image failed (ErrCode -5); for the application's
    /// own install step.
    BurnFailed(String),
    /// The directory has too little free space; nothing was requested
    /// (ErrCode -1: the firmware cannot be fetched).
    NoSpace {
        /// Bytes needed (Size plus the margin, [`SPACE_MARGIN`](super::SPACE_MARGIN) by default).
        need: u64,
        /// Bytes free.
        free: u64,
    },
    /// The download was cancelled (the `cancel` flag); the file was
    /// removed. Not reported to the cloud: it was the cloud that cancelled
    /// (its err_code, -1, is only there for completeness).
    Cancelled,
    /// Writing the file failed (ErrCode -1).
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl OtaError {
    /// The `report_fail` ErrCode: -1 unreachable (also no space, I/O and
    /// cancelled), -2 signature expired, -3 timeout, -4 MD5 or size
    /// mismatch, -5 burning failed.
    pub fn err_code(&self) -> i64 {
        match self {
            OtaError::SignatureExpired => -2,
            OtaError::Timeout(_) => -3,
            OtaError::Md5Mismatch(_) => -4,
            OtaError::BurnFailed(_) => -5,
            OtaError::UrlUnreachable(_)
            | OtaError::NoSpace { .. }
            | OtaError::Cancelled
            | OtaError::Io { .. } => -1,
        }
    }
}

impl fmt::Display for OtaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtaError::UrlUnreachable(s) => write!(
                f,
                "firmware not fetched: {s}; check the device's network and that the firmware \
                 still exists in the UIoT Core console"
            ),
            OtaError::SignatureExpired => write!(
                f,
                "the firmware URL's signature expired (HTTP 403): start the upgrade again in \
                 the UIoT Core console"
            ),
            OtaError::Timeout(s) => write!(
                f,
                "firmware download timed out: {s}; check the device's network, the upgrade can \
                 be started again"
            ),
            OtaError::Md5Mismatch(s) => write!(
                f,
                "firmware rejected: {s}; the file was removed; check the file uploaded to the \
                 console"
            ),
            OtaError::BurnFailed(s) => write!(f, "installing the firmware failed: {s}"),
            OtaError::NoSpace { need, free } => write!(
                f,
                "not enough free space for the firmware: {need} bytes needed, {free} free; free \
                 some or choose another download directory"
            ),
            OtaError::Cancelled => write!(f, "firmware download cancelled"),
            OtaError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for OtaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OtaError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ota_err_codes() {
        assert_eq!(OtaError::SignatureExpired.err_code(), -2);
        assert_eq!(OtaError::Timeout(String::new()).err_code(), -3);
        assert_eq!(OtaError::Md5Mismatch(String::new()).err_code(), -4);
        assert_eq!(OtaError::BurnFailed(String::new()).err_code(), -5);
        assert_eq!(OtaError::UrlUnreachable(String::new()).err_code(), -1);
    }
}
