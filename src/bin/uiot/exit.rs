//! Process exit codes (sysexits.h) and the one mapping from `uiot::Error` to them.
//!
//! Owns: the numeric codes and [`code`].
//! Must not touch: printing, argument parsing, the library.

use std::io::ErrorKind;

use uiot::Error;

/// Success.
pub const OK: u8 = 0;
/// The command line was wrong.
pub const USAGE: u8 = 64;
/// Input data was wrong (e.g. a message over a platform limit).
pub const DATAERR: u8 = 65;
/// An input file did not exist or was not readable.
pub const NOINPUT: u8 = 66;
/// A service (the broker) is unavailable.
pub const UNAVAILABLE: u8 = 69;
/// An internal error: a case this program does not know yet.
pub const SOFTWARE: u8 = 70;
/// An I/O error.
pub const IOERR: u8 = 74;
/// A temporary failure; trying again later may work.
pub const TEMPFAIL: u8 = 75;
/// The remote side broke the protocol.
pub const PROTOCOL: u8 = 76;
/// Permission was refused.
pub const NOPERM: u8 = 77;
/// The configuration is wrong.
pub const CONFIG: u8 = 78;

/// The exit code for a library error.
///
/// An I/O error is `NOINPUT` (66) when a file being read or opened was
/// missing or unreadable (its context starts with "reading" or "opening"),
/// else `IOERR` (74).
pub fn code(err: &Error) -> u8 {
    match err {
        Error::Config(_) => CONFIG,
        Error::Io { context, source } => {
            let input = context.starts_with("reading") || context.starts_with("opening");
            let missing = matches!(
                source.kind(),
                ErrorKind::NotFound | ErrorKind::PermissionDenied
            );
            if input && missing {
                NOINPUT
            } else {
                IOERR
            }
        }
        Error::Unreachable(_) => UNAVAILABLE,
        Error::Tls(_) => UNAVAILABLE,
        Error::Refused(_) => NOPERM,
        Error::Protocol(_) => PROTOCOL,
        Error::Timeout(_) => TEMPFAIL,
        Error::Limit(_) => DATAERR,
        Error::InvalidTopic { .. } => DATAERR,
        Error::TopicDenied { .. } => NOPERM,
        Error::SubscribeRefused(_) => NOPERM,
        Error::Kicked => TEMPFAIL,
        Error::Disconnected(_) => UNAVAILABLE,
        // A variant added to uiot::Error after this table: map it above.
        _ => SOFTWARE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use uiot::config::ConfigError;
    use uiot::packet::ConnectReturnCode;

    fn io_err(context: &str, kind: ErrorKind) -> Error {
        Error::Io {
            context: context.to_string(),
            source: io::Error::from(kind),
        }
    }

    #[test]
    fn every_variant_has_its_sysexits_code() {
        let cases = [
            (Error::Config(ConfigError { problems: vec![] }), 78),
            (Error::Unreachable("x".into()), 69),
            (Error::Tls("x".into()), 69),
            (Error::Refused(ConnectReturnCode::NotAuthorized), 77),
            (Error::Timeout("x".into()), 75),
            (Error::Limit("x".into()), 65),
            (
                Error::TopicDenied {
                    topic: "/a".into(),
                    reason: "x".into(),
                },
                77,
            ),
            (Error::SubscribeRefused("/a".into()), 77),
            (Error::Kicked, 75),
            (Error::Disconnected("x".into()), 69),
        ];
        for (err, want) in cases {
            assert_eq!(code(&err), want, "{err:?}");
        }
    }

    #[test]
    fn io_errors_on_missing_input_are_noinput() {
        assert_eq!(
            code(&io_err("reading /x/payload.bin", ErrorKind::NotFound)),
            66
        );
        assert_eq!(
            code(&io_err("opening /x/ca.pem", ErrorKind::PermissionDenied)),
            66
        );
        assert_eq!(
            code(&io_err("reading /x/payload.bin", ErrorKind::InvalidData)),
            74
        );
        assert_eq!(
            code(&io_err("writing to standard output", ErrorKind::NotFound)),
            74
        );
        assert_eq!(
            code(&io_err(
                "writing /etc/uiot/device.secret",
                ErrorKind::PermissionDenied
            )),
            74
        );
    }
}
