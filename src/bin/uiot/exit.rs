//! Process exit codes (sysexits.h) and the one mapping from `uiot::Error` to them.
//!
//! Owns: the numeric codes and [`code`].
//! Must not touch: printing, argument parsing, the library.

use uiot::packet::ConnectReturnCode;
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
/// An input the user named that cannot be opened or read is `NOINPUT` (66);
/// any other I/O error is `IOERR` (74).
pub fn code(err: &Error) -> u8 {
    match err {
        Error::Config(_) => CONFIG,
        Error::Input { .. } => NOINPUT,
        Error::Io { .. } => IOERR,
        Error::Unreachable(_) => UNAVAILABLE,
        Error::Tls(_) => UNAVAILABLE,
        // "Server unavailable" is the broker being busy: try again later.
        Error::Refused(ConnectReturnCode::ServerUnavailable) => TEMPFAIL,
        Error::Refused(_) => NOPERM,
        Error::Protocol(_) | Error::ProtocolViolation(_) => PROTOCOL,
        Error::Timeout(_) => TEMPFAIL,
        Error::Limit(_) => DATAERR,
        Error::InvalidArgument(_) => USAGE,
        Error::InvalidTopic { .. } => DATAERR,
        Error::TopicDenied { .. } => NOPERM,
        Error::SubscribeRefused(_) => NOPERM,
        Error::Kicked => TEMPFAIL,
        Error::Disconnected(_) => UNAVAILABLE,
        Error::Platform { code, .. } if uiot::platform::retcode::is_temporary(*code) => TEMPFAIL,
        Error::Platform { .. } => NOPERM,
        // A variant added to uiot::Error after this table: map it above.
        _ => SOFTWARE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, ErrorKind};
    use uiot::config::ConfigError;

    fn io_err(context: &str, kind: ErrorKind) -> Error {
        Error::Io {
            context: context.to_string(),
            source: io::Error::from(kind),
        }
    }

    fn platform(code: i64) -> Error {
        Error::Platform {
            request: "r".into(),
            code,
            detail: "d".into(),
        }
    }

    #[test]
    fn every_variant_has_its_sysexits_code() {
        let cases = [
            (Error::Config(ConfigError { problems: vec![] }), 78),
            (Error::Unreachable("x".into()), 69),
            (Error::Tls("x".into()), 69),
            (Error::Refused(ConnectReturnCode::NotAuthorized), 77),
            (Error::Refused(ConnectReturnCode::BadUserNameOrPassword), 77),
            (Error::Refused(ConnectReturnCode::ServerUnavailable), 75),
            (Error::InvalidArgument("x".into()), 64),
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
            (Error::ProtocolViolation("x".into()), 76),
            (Error::InvalidArgument("x".into()), 64),
            (Error::Disconnected("x".into()), 69),
            (platform(140), 77),
            (platform(130), 75),
        ];
        for (err, want) in cases {
            assert_eq!(code(&err), want, "{err:?}");
        }
    }

    #[test]
    fn unreadable_input_is_noinput_other_io_is_ioerr() {
        let input = Error::Input {
            context: "reading /x/payload.bin".into(),
            source: io::Error::from(ErrorKind::NotFound),
        };
        assert_eq!(code(&input), 66);
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
