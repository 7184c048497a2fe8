//! CONNECT and DISCONNECT: the packet types and their reading and writing.
//!
//! Owns: [`Connect`], [`LastWill`], [`Protocol`] and the wire format and
//! validation of CONNECT and DISCONNECT (CONNACK is in `connack`).
//! Must not touch: UIoT credentials rules (client id / user name shapes,
//! keep-alive range live in `platform`), shared primitives (in `codec`), I/O.

use std::fmt;

use super::codec::{self, Reader};
use super::{qos, topic, PacketError, QoS};

const NAME: &str = "CONNECT";

const FLAG_USERNAME: u8 = 0x80;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_WILL_QOS_SHIFT: u8 = 3;
const FLAG_WILL: u8 = 0x04;
const FLAG_CLEAN_SESSION: u8 = 0x02;
const FLAG_RESERVED: u8 = 0x01;

/// Protocol version carried by CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1.1: protocol name "MQTT", level 4 (the default; what the
    /// platform's SDK sends).
    V311,
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V31,
}

/// The will of a CONNECT (decoded for completeness; uiot never sends one).
#[derive(Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Will topic.
    pub topic: String,
    /// Will message.
    pub message: Vec<u8>,
    /// Will QoS.
    pub qos: QoS,
    /// Will retain flag.
    pub retain: bool,
}

/// CONNECT. `Debug` masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// 3.1.1 or 3.1.
    pub protocol: Protocol,
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// Clean session flag.
    pub clean_session: bool,
    /// Client identifier (UIoT: `PSN.DSN`).
    pub client_id: String,
    /// Will, if any.
    pub will: Option<LastWill>,
    /// User name (UIoT: `PSN|DSN|authmode`).
    pub username: Option<String>,
    /// Password bytes (UIoT: the device or product secret). Never logged.
    pub password: Option<Vec<u8>>,
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("protocol", &self.protocol)
            .field("keep_alive", &self.keep_alive)
            .field("clean_session", &self.clean_session)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl fmt::Debug for LastWill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastWill")
            .field("topic", &self.topic)
            .field("message_len", &self.message.len())
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .finish()
    }
}

impl Protocol {
    /// Protocol name and level as sent in CONNECT.
    pub fn name_and_level(self) -> (&'static str, u8) {
        match self {
            Protocol::V311 => ("MQTT", 4),
            Protocol::V31 => ("MQIsdp", 3),
        }
    }
}

/// Read a CONNECT body.
pub(crate) fn read_connect(body: &[u8]) -> Result<Connect, PacketError> {
    let mut r = Reader::new(NAME, body);
    let name = r.string("protocol name")?;
    let level = r.u8("protocol level")?;
    let protocol = match (name, level) {
        ("MQTT", 4) => Protocol::V311,
        ("MQIsdp", 3) => Protocol::V31,
        _ => {
            return Err(PacketError::UnsupportedProtocol {
                name: name.to_owned(),
                level,
            })
        }
    };
    let flags = r.u8("connect flags")?;
    if flags & FLAG_RESERVED != 0 {
        return Err(PacketError::ConnectReservedFlag);
    }
    let has_will = flags & FLAG_WILL != 0;
    let will_qos_bits = (flags >> FLAG_WILL_QOS_SHIFT) & 0b11;
    let will_retain = flags & FLAG_WILL_RETAIN != 0;
    if !has_will && (will_qos_bits != 0 || will_retain) {
        return Err(PacketError::WillFlagsWithoutWill { flags });
    }
    let will_qos = qos::from_bits(NAME, "will QoS", will_qos_bits)?;
    let has_username = flags & FLAG_USERNAME != 0;
    let has_password = flags & FLAG_PASSWORD != 0;
    if has_password && !has_username {
        return Err(PacketError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16("keep alive")?;
    let client_id = r.string("client identifier")?.to_owned();
    let will = if has_will {
        let will_topic = r.string("will topic")?;
        topic::check_name(NAME, will_topic)?;
        let message = r.bytes("will message")?.to_vec();
        Some(LastWill {
            topic: will_topic.to_owned(),
            message,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string("user name")?.to_owned())
    } else {
        None
    };
    let password = if has_password {
        Some(r.bytes("password")?.to_vec())
    } else {
        None
    };
    r.finish()?;
    Ok(Connect {
        protocol,
        keep_alive,
        clean_session: flags & FLAG_CLEAN_SESSION != 0,
        client_id,
        will,
        username,
        password,
    })
}

/// Validate a CONNECT for encoding; its remaining length.
pub(crate) fn connect_len(c: &Connect) -> Result<usize, PacketError> {
    let (name, _) = c.protocol.name_and_level();
    // Protocol name, level, flags, keep-alive.
    let mut len = 2 + name.len() + 1 + 1 + 2;
    len += codec::string_size(NAME, "client identifier", &c.client_id)?;
    if let Some(will) = &c.will {
        topic::check_name(NAME, &will.topic)?;
        len += codec::string_size(NAME, "will topic", &will.topic)?;
        len += codec::bytes_size(NAME, "will message", &will.message)?;
    }
    if let Some(username) = &c.username {
        len += codec::string_size(NAME, "user name", username)?;
    }
    if let Some(password) = &c.password {
        if c.username.is_none() {
            return Err(PacketError::PasswordWithoutUsername);
        }
        len += codec::bytes_size(NAME, "password", password)?;
    }
    // At most 6 + 6 + 5 fields of 65537 bytes: far below the limit, but
    // checked all the same.
    codec::check_remaining_len(NAME, len)
}

/// Append a CONNECT to `out`; on error `out` is unchanged.
pub(crate) fn encode_connect(c: &Connect, out: &mut Vec<u8>) -> Result<(), PacketError> {
    let len = connect_len(c)?;
    let (name, level) = c.protocol.name_and_level();
    let mut flags = 0u8;
    if c.username.is_some() {
        flags |= FLAG_USERNAME;
    }
    if c.password.is_some() {
        flags |= FLAG_PASSWORD;
    }
    if let Some(will) = &c.will {
        flags |= FLAG_WILL | (will.qos.to_u8() << FLAG_WILL_QOS_SHIFT);
        if will.retain {
            flags |= FLAG_WILL_RETAIN;
        }
    }
    if c.clean_session {
        flags |= FLAG_CLEAN_SESSION;
    }
    codec::write_fixed_header(out, codec::CONNECT << 4, len);
    codec::write_string(out, name);
    out.push(level);
    out.push(flags);
    codec::write_u16(out, c.keep_alive);
    codec::write_string(out, &c.client_id);
    if let Some(will) = &c.will {
        codec::write_string(out, &will.topic);
        codec::write_bytes(out, &will.message);
    }
    if let Some(username) = &c.username {
        codec::write_string(out, username);
    }
    if let Some(password) = &c.password {
        codec::write_bytes(out, password);
    }
    Ok(())
}

/// Read a DISCONNECT body (must be empty).
pub(crate) fn read_disconnect(body: &[u8]) -> Result<(), PacketError> {
    codec::read_empty("DISCONNECT", body)
}

/// Append a DISCONNECT to `out`.
pub(crate) fn encode_disconnect(out: &mut Vec<u8>) {
    codec::encode_empty(out, codec::DISCONNECT << 4);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_util::{encoded, one};
    use crate::packet::Packet;

    /// A valid CONNECT with `flags` and the fields that follow them.
    fn connect_with(flags: u8, tail: &[u8]) -> Vec<u8> {
        let mut body = vec![
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x04, // level
            flags, 0x00, 0x3C, // keep alive 60
            0x00, 0x01, b'c', // client id "c"
        ];
        body.extend_from_slice(tail);
        let mut p = vec![0x10, u8::try_from(body.len()).unwrap()];
        p.extend_from_slice(&body);
        p
    }

    #[test]
    fn connect_with_will_username_password() {
        let packet = [
            0x10, 0x27, // CONNECT, remaining length 39
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x04, // protocol level 4
            0xEE, // user, password, will retain, will QoS 1, will, clean
            0x00, 0x0A, // keep alive 10
            0x00, 0x04, b't', b'e', b's', b't', // client id
            0x00, 0x02, b'/', b'a', // will topic
            0x00, 0x07, b'o', b'f', b'f', b'l', b'i', b'n', b'e', // will message
            0x00, 0x04, b'r', b'u', b's', b't', // user name
            0x00, 0x02, b'm', b'q', // password
            0xDE, 0xAD, // next packet
        ];
        let (p, len) = one(&packet).unwrap();
        assert_eq!(len, 41);
        assert_eq!(
            p,
            Packet::Connect(Connect {
                protocol: Protocol::V311,
                keep_alive: 10,
                clean_session: true,
                client_id: "test".into(),
                will: Some(LastWill {
                    topic: "/a".into(),
                    message: b"offline".to_vec(),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                }),
                username: Some("rust".into()),
                password: Some(b"mq".to_vec()),
            })
        );
        assert_eq!(encoded(&p), packet[..41]);
    }

    #[test]
    fn connect_mqtt_3_1() {
        let packet = [
            0x10, 0x10, // CONNECT, remaining length 16
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name
            0x03, // level 3
            0x00, // no flags
            0x00, 0x00, // keep alive 0
            0x00, 0x02, b'i', b'd', // client id
        ];
        let (p, _) = one(&packet).unwrap();
        let Packet::Connect(c) = &p else {
            panic!("not a CONNECT: {p:?}")
        };
        assert_eq!(c.protocol, Protocol::V31);
        assert!(!c.clean_session);
        assert_eq!(c.client_id, "id");
        assert_eq!(encoded(&p), packet);
    }

    #[test]
    fn connect_refuses_unknown_protocols() {
        for (name, level) in [("MQTT", 3u8), ("MQTT", 5), ("MQIsdp", 4), ("mqtt", 4)] {
            let mut body = vec![0x00, u8::try_from(name.len()).unwrap()];
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(&[level, 0x02, 0x00, 0x3C, 0x00, 0x00]);
            let mut p = vec![0x10, u8::try_from(body.len()).unwrap()];
            p.extend_from_slice(&body);
            assert_eq!(
                one(&p),
                Err(PacketError::UnsupportedProtocol {
                    name: name.into(),
                    level
                })
            );
        }
    }

    #[test]
    fn connect_flag_rules() {
        assert_eq!(
            one(&connect_with(0x03, &[])),
            Err(PacketError::ConnectReservedFlag)
        );
        // Will QoS 1 without will flag.
        assert_eq!(
            one(&connect_with(0x08, &[])),
            Err(PacketError::WillFlagsWithoutWill { flags: 0x08 })
        );
        // Will retain without will flag.
        assert_eq!(
            one(&connect_with(0x20, &[])),
            Err(PacketError::WillFlagsWithoutWill { flags: 0x20 })
        );
        // Will QoS 2: MQTT has it, UIoT Core does not.
        assert_eq!(
            one(&connect_with(0x14, &[0, 1, b'a', 0, 0])),
            Err(PacketError::UnsupportedQoS2 {
                packet: "CONNECT",
                field: "will QoS"
            })
        );
        // Will QoS 3.
        assert_eq!(
            one(&connect_with(0x1C, &[0, 1, b'a', 0, 0])),
            Err(PacketError::ReservedQoS3 {
                packet: "CONNECT",
                field: "will QoS"
            })
        );
        // Password without user name.
        assert_eq!(
            one(&connect_with(0x40, &[0, 1, b'p'])),
            Err(PacketError::PasswordWithoutUsername)
        );
        // User name without password is fine.
        assert!(one(&connect_with(0x80, &[0, 1, b'u'])).is_ok());
    }

    #[test]
    fn connect_will_topic_must_be_a_topic_name() {
        assert_eq!(
            one(&connect_with(0x04, &[0, 3, b'a', b'/', b'#', 0, 0])),
            Err(PacketError::WildcardInTopic {
                packet: "CONNECT",
                topic: "a/#".into()
            })
        );
        assert_eq!(
            one(&connect_with(0x04, &[0, 0, 0, 0])),
            Err(PacketError::EmptyTopic { packet: "CONNECT" })
        );
    }

    #[test]
    fn connect_truncated_and_trailing() {
        // User name flag set, but the user name's length points past the end.
        assert_eq!(
            one(&connect_with(0x80, &[0, 9, b'u'])),
            Err(PacketError::Truncated {
                packet: "CONNECT",
                field: "user name",
                needed: 9,
                available: 1
            })
        );
        // A user name but no flag for it.
        assert_eq!(
            one(&connect_with(0x02, &[0, 1, b'u'])),
            Err(PacketError::TrailingBytes {
                packet: "CONNECT",
                after: "client identifier",
                count: 3
            })
        );
        // Remaining length too short for the variable header.
        assert_eq!(
            one(&[0x10, 0x03, 0x00, 0x04, b'M']),
            Err(PacketError::Truncated {
                packet: "CONNECT",
                field: "protocol name",
                needed: 4,
                available: 1
            })
        );
    }

    #[test]
    fn connect_strings_must_be_utf8_without_nul() {
        assert_eq!(
            one(&connect_with(0x80, &[0, 2, 0xFF, 0xFE])),
            Err(PacketError::InvalidUtf8 {
                packet: "CONNECT",
                field: "user name"
            })
        );
        assert_eq!(
            one(&connect_with(0x80, &[0, 2, b'a', 0])),
            Err(PacketError::NullCharacter {
                packet: "CONNECT",
                field: "user name"
            })
        );
    }

    #[test]
    fn connect_encoding_refuses_what_decoding_refuses() {
        let mut c = Connect {
            protocol: Protocol::V311,
            keep_alive: 60,
            clean_session: true,
            client_id: "id".into(),
            will: None,
            username: None,
            password: Some(b"secret".to_vec()),
        };
        let mut out = vec![0xAA];
        assert_eq!(
            Packet::Connect(c.clone()).encode(&mut out),
            Err(PacketError::PasswordWithoutUsername)
        );
        c.username = Some("u\0".into());
        assert_eq!(
            Packet::Connect(c.clone()).encode(&mut out),
            Err(PacketError::NullCharacter {
                packet: "CONNECT",
                field: "user name"
            })
        );
        c.username = Some("u".into());
        c.password = Some(vec![0; 65_536]);
        assert!(matches!(
            Packet::Connect(c.clone()).encode(&mut out),
            Err(PacketError::FieldTooLong {
                field: "password",
                ..
            })
        ));
        c.password = None;
        c.will = Some(LastWill {
            topic: "a/+".into(),
            message: vec![],
            qos: QoS::AtMostOnce,
            retain: false,
        });
        assert!(matches!(
            Packet::Connect(c).encode(&mut out),
            Err(PacketError::WildcardInTopic { .. })
        ));
        assert_eq!(out, [0xAA], "a failed encode must leave the buffer alone");
    }

    #[test]
    fn disconnect() {
        assert_eq!(one(&[0xE0, 0x00, 0xE0]), Ok((Packet::Disconnect, 2)));
        assert_eq!(encoded(&Packet::Disconnect), [0xE0, 0x00]);
        assert_eq!(
            one(&[0xE0, 0x01, 0x00]),
            Err(PacketError::WrongRemainingLength {
                packet: "DISCONNECT",
                expected: 0,
                actual: 1
            })
        );
        assert_eq!(
            one(&[0xE1, 0x00]),
            Err(PacketError::BadFlags {
                packet: "DISCONNECT",
                flags: 1,
                expected: 0
            })
        );
    }
}
