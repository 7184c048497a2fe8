//! CONNACK: the broker's answer to CONNECT.
//!
//! Owns: [`ConnAck`], [`ConnectReturnCode`] (with what each code means and
//! what a UIoT Core device should check), and CONNACK's wire format.
//! Must not touch: what the client does with a refusal (retry, exit code),
//! MQTT-3.2.2-4 session checks (the client knows what it asked for), I/O.

use super::codec::{self, Reader};
use super::PacketError;

/// CONNACK return codes of MQTT 3.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectReturnCode {
    /// 0: connection accepted.
    Accepted = 0,
    /// 1: the server does not support the protocol level.
    UnacceptableProtocolVersion = 1,
    /// 2: client identifier rejected.
    IdentifierRejected = 2,
    /// 3: server unavailable.
    ServerUnavailable = 3,
    /// 4: bad user name or password.
    BadUserNameOrPassword = 4,
    /// 5: not authorized.
    NotAuthorized = 5,
}

/// CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    /// Session present flag.
    pub session_present: bool,
    /// Return code.
    pub code: ConnectReturnCode,
}

impl ConnectReturnCode {
    /// What the code means.
    pub fn description(&self) -> &'static str {
        match self {
            ConnectReturnCode::Accepted => "accepted",
            ConnectReturnCode::UnacceptableProtocolVersion => {
                "code 1, unacceptable protocol version"
            }
            ConnectReturnCode::IdentifierRejected => "code 2, client identifier rejected",
            ConnectReturnCode::ServerUnavailable => "code 3, server unavailable",
            ConnectReturnCode::BadUserNameOrPassword => "code 4, bad user name or password",
            ConnectReturnCode::NotAuthorized => "code 5, not authorized",
        }
    }

    /// What to check, for a UIoT Core device.
    pub fn advice(&self) -> &'static str {
        match self {
            ConnectReturnCode::Accepted => "nothing to do",
            ConnectReturnCode::UnacceptableProtocolVersion => "set [connection] protocol = 3.1.1",
            ConnectReturnCode::IdentifierRejected => {
                "check [device] product_sn and device_sn: the client id is PSN.DSN"
            }
            ConnectReturnCode::ServerUnavailable => "the broker is busy; uiot will retry later",
            ConnectReturnCode::BadUserNameOrPassword => {
                "check [device] device_sn and device_secret (or product_secret) in the console"
            }
            ConnectReturnCode::NotAuthorized => {
                "check [device] device_secret (or product_secret): UIoT Core answers code 5 to a \
                 wrong secret; otherwise the device may be disabled, deleted or not yet \
                 registered (see the UIoT Core console), or keep_alive is outside 30..1200"
            }
        }
    }

    /// The code from its byte, `None` for codes MQTT 3.1.1 does not define.
    pub fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            0 => ConnectReturnCode::Accepted,
            1 => ConnectReturnCode::UnacceptableProtocolVersion,
            2 => ConnectReturnCode::IdentifierRejected,
            3 => ConnectReturnCode::ServerUnavailable,
            4 => ConnectReturnCode::BadUserNameOrPassword,
            5 => ConnectReturnCode::NotAuthorized,
            _ => return None,
        })
    }
}

/// Read a CONNACK body.
pub(crate) fn read_connack(body: &[u8]) -> Result<ConnAck, PacketError> {
    let mut r = Reader::new("CONNACK", body);
    let ack_flags = r.u8("acknowledge flags")?;
    let code_byte = r.u8("return code")?;
    r.finish()?;
    if ack_flags & 0xFE != 0 {
        return Err(PacketError::ConnAckReservedBits(ack_flags));
    }
    let code =
        ConnectReturnCode::from_u8(code_byte).ok_or(PacketError::UnknownConnAckCode(code_byte))?;
    let session_present = ack_flags & 0x01 != 0;
    if session_present && code != ConnectReturnCode::Accepted {
        return Err(PacketError::SessionPresentWithError(code_byte));
    }
    Ok(ConnAck {
        session_present,
        code,
    })
}

/// Append a CONNACK to `out`; on error `out` is unchanged.
pub(crate) fn encode_connack(a: &ConnAck, out: &mut Vec<u8>) -> Result<(), PacketError> {
    if a.session_present && a.code != ConnectReturnCode::Accepted {
        return Err(PacketError::SessionPresentWithError(a.code as u8));
    }
    codec::write_fixed_header(out, codec::CONNACK << 4, 2);
    out.push(u8::from(a.session_present));
    out.push(a.code as u8);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_util::{encoded, one};
    use crate::packet::Packet;

    #[test]
    fn connack_every_code_and_session_present() {
        for code in 0..=5u8 {
            let packet = [
                0x20, 0x02, // CONNACK, remaining length 2
                0x00, // no session present
                code, // return code
                0xC0, 0x00, // next packet (PINGREQ)
            ];
            let (p, len) = one(&packet).unwrap();
            assert_eq!(len, 4);
            let Packet::ConnAck(a) = p else {
                panic!("not a CONNACK: {p:?}")
            };
            assert_eq!(a.code as u8, code);
            assert!(!a.session_present);
            assert_eq!(encoded(&p), packet[..4]);
        }
        let (p, _) = one(&[0x20, 0x02, 0x01, 0x00]).unwrap();
        assert_eq!(
            p,
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: ConnectReturnCode::Accepted
            })
        );
    }

    #[test]
    fn connack_rules() {
        assert_eq!(
            one(&[0x20, 0x02, 0x00, 0x06]),
            Err(PacketError::UnknownConnAckCode(6))
        );
        assert_eq!(
            one(&[0x20, 0x02, 0x02, 0x00]),
            Err(PacketError::ConnAckReservedBits(0x02))
        );
        assert_eq!(
            one(&[0x20, 0x02, 0x01, 0x05]),
            Err(PacketError::SessionPresentWithError(5))
        );
        assert_eq!(
            one(&[0x20, 0x03, 0x00, 0x00, 0x00]),
            Err(PacketError::WrongRemainingLength {
                packet: "CONNACK",
                expected: 2,
                actual: 3
            })
        );
        let mut out = Vec::new();
        assert_eq!(
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: ConnectReturnCode::NotAuthorized
            })
            .encode(&mut out),
            Err(PacketError::SessionPresentWithError(5))
        );
        assert!(out.is_empty());
    }
}
