//! MQTT 3.1.1 (and 3.1) control packets: bytes <-> packets.
//!
//! Owns: the wire format of all 14 control packets, strict validation of
//! everything decoded, and encoding into a caller's buffer.
//! Must not touch: sockets, threads, time, logging, UIoT platform rules (those
//! live in `platform`). Nothing here performs I/O or panics on any input.
//!
//! Decoding works on a byte buffer that may hold a partial packet or several:
//! [`decode`] returns [`Decoded::Incomplete`] (consuming nothing) until a whole
//! packet is there, then the packet and how many bytes it took. The declared
//! remaining length is checked against a maximum before anything is allocated.
//!
//! Encoding appends to a `Vec<u8>` the caller owns and reuses, validating
//! the same rules as decoding; on error the buffer is left as it was.
//!
//! One file per packet family: `codec` (shared primitives), `connect`
//! (CONNECT, CONNACK, DISCONNECT), `publish` (PUBLISH and its acks),
//! `subscribe` (SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK), `ping`, `topic`
//! (topic name/filter rules and matching). This file keeps the types,
//! [`decode`] and [`Packet::encode`], and dispatches.

use std::fmt;

mod codec;
mod connect;
mod ping;
mod publish;
mod subscribe;
mod topic;

#[cfg(test)]
mod test_util;

pub use publish::encode_publish;
pub use topic::{filter_matches, validate_topic_filter, validate_topic_name};

/// The platform's packet limit (256 KiB), the default maximum packet size.
pub const DEFAULT_MAX_PACKET: usize = 256 * 1024;

/// The largest remaining length MQTT can express (four length bytes).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Quality of service on the wire (the packet layer knows all three levels;
/// the client only ever uses 0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// QoS 0.
    AtMostOnce = 0,
    /// QoS 1.
    AtLeastOnce = 1,
    /// QoS 2 (never sent by uiot; decoded so it can be refused clearly).
    ExactlyOnce = 2,
}

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

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name (no wildcards).
    pub topic: String,
    /// Packet identifier: `Some` (non-zero) for QoS 1 and 2, `None` for QoS 0.
    pub pkid: Option<u16>,
    /// Application payload.
    pub payload: Vec<u8>,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// Topic filters with their requested QoS (at least one).
    pub filters: Vec<(String, QoS)>,
}

/// One return code of a SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAckCode {
    /// Granted at this QoS.
    Success(QoS),
    /// 0x80: refused.
    Failure,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// One code per filter of the SUBSCRIBE, in order.
    pub codes: Vec<SubAckCode>,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// Topic filters (at least one).
    pub filters: Vec<String>,
}

/// Any MQTT 3.1.1 control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (type 1).
    Connect(Connect),
    /// CONNACK (type 2).
    ConnAck(ConnAck),
    /// PUBLISH (type 3).
    Publish(Publish),
    /// PUBACK (type 4) with its packet identifier.
    PubAck(u16),
    /// PUBREC (type 5).
    PubRec(u16),
    /// PUBREL (type 6).
    PubRel(u16),
    /// PUBCOMP (type 7).
    PubComp(u16),
    /// SUBSCRIBE (type 8).
    Subscribe(Subscribe),
    /// SUBACK (type 9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (type 10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (type 11).
    UnsubAck(u16),
    /// PINGREQ (type 12).
    PingReq,
    /// PINGRESP (type 13).
    PingResp,
    /// DISCONNECT (type 14).
    Disconnect,
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole packet, which took `len` bytes of the buffer.
    Packet {
        /// The packet.
        packet: Packet,
        /// How many bytes of the buffer it used.
        len: usize,
    },
    /// Not a whole packet yet: at least `needed` more bytes are required.
    /// Nothing was consumed.
    Incomplete {
        /// Minimum number of further bytes needed.
        needed: usize,
    },
}

/// Why bytes are not a valid packet (decoding) or a packet cannot be written
/// (encoding). One variant per rule.
///
/// `packet` fields name the packet type ("PUBLISH", ...); `field` fields name
/// the part of it that is wrong ("topic name", "client identifier", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketError {
    /// The remaining length field has a continuation bit on its 4th byte.
    RemainingLengthTooLong,
    /// The whole packet (fixed header included) is larger than allowed.
    TooLarge {
        /// Declared packet size in bytes.
        size: usize,
        /// The maximum in force.
        max: usize,
    },
    /// Packet type 0 or 15 (reserved).
    ReservedPacketType(u8),
    /// The four flag bits of the fixed header are not what the packet type
    /// requires.
    BadFlags {
        /// Packet type.
        packet: &'static str,
        /// The flags found.
        flags: u8,
        /// The flags required.
        expected: u8,
    },
    /// PUBLISH with both QoS bits set (QoS 3 does not exist).
    PublishQoS3,
    /// PUBLISH with the DUP flag on a QoS 0 message.
    DupOnQoS0,
    /// A packet identifier of 0 where a non-zero one is required.
    ZeroPacketId {
        /// Packet type.
        packet: &'static str,
    },
    /// Encoding: a QoS 1 or 2 PUBLISH without a packet identifier.
    MissingPacketId {
        /// Packet type.
        packet: &'static str,
    },
    /// Encoding: a QoS 0 PUBLISH with a packet identifier.
    UnexpectedPacketId {
        /// Packet type.
        packet: &'static str,
    },
    /// A string field is not valid UTF-8.
    InvalidUtf8 {
        /// Packet type.
        packet: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A string field contains the character U+0000.
    NullCharacter {
        /// Packet type.
        packet: &'static str,
        /// The field.
        field: &'static str,
    },
    /// Encoding: a string or binary field is longer than 65535 bytes.
    FieldTooLong {
        /// Packet type.
        packet: &'static str,
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A topic name is empty.
    EmptyTopic {
        /// Packet type.
        packet: &'static str,
    },
    /// A topic name (not a filter) contains `+` or `#`.
    WildcardInTopic {
        /// Packet type.
        packet: &'static str,
        /// The topic.
        topic: String,
    },
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    NoFilters {
        /// Packet type.
        packet: &'static str,
    },
    /// A topic filter is empty.
    EmptyFilter {
        /// Packet type.
        packet: &'static str,
    },
    /// A topic filter has `#` somewhere other than its last level.
    MultiLevelWildcardNotLast {
        /// Packet type.
        packet: &'static str,
        /// The filter.
        filter: String,
    },
    /// A topic filter has `+` or `#` sharing a level with other characters.
    WildcardNotAlone {
        /// Packet type.
        packet: &'static str,
        /// The filter.
        filter: String,
        /// The wildcard, `+` or `#`.
        wildcard: char,
    },
    /// A SUBSCRIBE requested-QoS byte has its reserved upper 6 bits set.
    RequestedQoSReservedBits {
        /// The filter it belongs to.
        filter: String,
        /// The byte.
        byte: u8,
    },
    /// A SUBSCRIBE requests QoS 3.
    RequestedQoS3 {
        /// The filter it belongs to.
        filter: String,
    },
    /// SUBACK without any return code.
    NoReturnCodes,
    /// CONNACK return code above 5.
    UnknownConnAckCode(u8),
    /// CONNACK acknowledge-flags byte with reserved bits (7..1) set.
    ConnAckReservedBits(u8),
    /// CONNACK with session present set and a non-zero return code.
    SessionPresentWithError(u8),
    /// SUBACK return code other than 0, 1, 2 or 0x80.
    BadSubAckCode(u8),
    /// CONNECT protocol name/level other than "MQTT"/4 or "MQIsdp"/3.
    UnsupportedProtocol {
        /// Protocol name found.
        name: String,
        /// Protocol level found.
        level: u8,
    },
    /// CONNECT flags with the reserved bit 0 set.
    ConnectReservedFlag,
    /// CONNECT flags with will QoS or will retain set but no will flag.
    WillFlagsWithoutWill {
        /// The connect flags byte.
        flags: u8,
    },
    /// CONNECT with will QoS 3.
    WillQoS3,
    /// CONNECT with a password but no user name (not allowed by 3.1.1).
    PasswordWithoutUsername,
    /// A field runs past the end of the declared remaining length.
    Truncated {
        /// Packet type.
        packet: &'static str,
        /// The field.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the packet.
        available: usize,
    },
    /// Bytes left over after the last field of a packet.
    TrailingBytes {
        /// Packet type.
        packet: &'static str,
        /// The last field read.
        after: &'static str,
        /// How many bytes are left over.
        count: usize,
    },
    /// A packet of fixed size declares another remaining length.
    WrongRemainingLength {
        /// Packet type.
        packet: &'static str,
        /// The remaining length this packet type always has.
        expected: usize,
        /// The declared remaining length.
        actual: usize,
    },
    /// Encoding: the packet would need a remaining length above
    /// [`MAX_REMAINING_LENGTH`].
    RemainingLengthOverflow {
        /// Packet type.
        packet: &'static str,
        /// The remaining length it would need.
        len: usize,
    },
}

/// At most 64 characters of `s`, for error messages about untrusted input.
fn elide(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}... ({} bytes)", s.len())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PacketError as E;
        match self {
            E::RemainingLengthTooLong => write!(
                f,
                "the remaining length field is longer than 4 bytes; the peer is not speaking \
                 MQTT 3.1.1 (check the host and port)"
            ),
            E::TooLarge { size, max } => write!(
                f,
                "packet of {size} bytes is larger than the maximum of {max} bytes"
            ),
            E::ReservedPacketType(t) => write!(
                f,
                "packet type {t} is reserved; the peer is not speaking MQTT 3.1.1 (check the \
                 host and port)"
            ),
            E::BadFlags {
                packet,
                flags,
                expected,
            } => write!(
                f,
                "{packet}: fixed header flags are {flags:#06b} but must be {expected:#06b}"
            ),
            E::PublishQoS3 => write!(f, "PUBLISH: QoS 3 does not exist (both QoS bits set)"),
            E::DupOnQoS0 => write!(f, "PUBLISH: the DUP flag is set on a QoS 0 message"),
            E::ZeroPacketId { packet } => write!(
                f,
                "{packet}: packet identifier 0 is not allowed; use 1..=65535"
            ),
            E::MissingPacketId { packet } => write!(
                f,
                "{packet}: QoS 1 and 2 need a packet identifier; give one in 1..=65535"
            ),
            E::UnexpectedPacketId { packet } => write!(
                f,
                "{packet}: a QoS 0 message has no packet identifier; pass None"
            ),
            E::InvalidUtf8 { packet, field } => {
                write!(f, "{packet}: the {field} is not valid UTF-8")
            }
            E::NullCharacter { packet, field } => write!(
                f,
                "{packet}: the {field} contains the character U+0000, which MQTT forbids"
            ),
            E::FieldTooLong { packet, field, len } => write!(
                f,
                "{packet}: the {field} is {len} bytes long; MQTT allows at most 65535"
            ),
            E::EmptyTopic { packet } => write!(
                f,
                "{packet}: the topic name is empty; a topic needs at least one character"
            ),
            E::WildcardInTopic { packet, topic } => write!(
                f,
                "{packet}: topic name {} contains a wildcard (+ or #); wildcards are only \
                 allowed in subscription filters",
                elide(topic)
            ),
            E::NoFilters { packet } => {
                write!(f, "{packet}: no topic filter; give at least one")
            }
            E::EmptyFilter { packet } => write!(
                f,
                "{packet}: a topic filter is empty; a filter needs at least one character"
            ),
            E::MultiLevelWildcardNotLast { packet, filter } => write!(
                f,
                "{packet}: in topic filter {}, '#' must be the last level (like \"a/#\")",
                elide(filter)
            ),
            E::WildcardNotAlone {
                packet,
                filter,
                wildcard,
            } => write!(
                f,
                "{packet}: in topic filter {}, '{wildcard}' must fill a whole level (like \
                 \"a/{wildcard}\"), not share it with other characters",
                elide(filter)
            ),
            E::RequestedQoSReservedBits { filter, byte } => write!(
                f,
                "SUBSCRIBE: the requested QoS byte {byte:#04x} for filter {} has reserved bits \
                 set; only 0, 1 or 2 are allowed",
                elide(filter)
            ),
            E::RequestedQoS3 { filter } => write!(
                f,
                "SUBSCRIBE: QoS 3 requested for filter {}; only 0, 1 or 2 exist",
                elide(filter)
            ),
            E::NoReturnCodes => write!(f, "SUBACK: no return code; there must be one per filter"),
            E::UnknownConnAckCode(c) => write!(
                f,
                "CONNACK: unknown return code {c}; MQTT 3.1.1 defines 0..=5 (is the broker \
                 speaking MQTT 5?)"
            ),
            E::ConnAckReservedBits(b) => write!(
                f,
                "CONNACK: acknowledge flags {b:#04x} have reserved bits set; only bit 0 \
                 (session present) may be set"
            ),
            E::SessionPresentWithError(c) => write!(
                f,
                "CONNACK: session present is set together with the refusal code {c}"
            ),
            E::BadSubAckCode(c) => write!(
                f,
                "SUBACK: return code {c:#04x} is not one of 0x00, 0x01, 0x02 or 0x80"
            ),
            E::UnsupportedProtocol { name, level } => write!(
                f,
                "CONNECT: protocol {} level {level} is not supported; only MQTT 3.1.1 \
                 (\"MQTT\" level 4) and MQTT 3.1 (\"MQIsdp\" level 3) are",
                elide(name)
            ),
            E::ConnectReservedFlag => {
                write!(f, "CONNECT: the reserved bit 0 of the connect flags is set")
            }
            E::WillFlagsWithoutWill { flags } => write!(
                f,
                "CONNECT: connect flags {flags:#04x} set will QoS or will retain without the \
                 will flag"
            ),
            E::WillQoS3 => write!(f, "CONNECT: will QoS 3 does not exist"),
            E::PasswordWithoutUsername => write!(
                f,
                "CONNECT: a password without a user name is not allowed; set a user name too"
            ),
            E::Truncated {
                packet,
                field,
                needed,
                available,
            } => write!(
                f,
                "{packet}: the {field} needs {needed} byte{} but only {available} {} left in \
                 the packet",
                plural(*needed),
                if *available == 1 { "is" } else { "are" }
            ),
            E::TrailingBytes {
                packet,
                after,
                count,
            } => write!(
                f,
                "{packet}: {count} byte{} left over after the {after}",
                plural(*count)
            ),
            E::WrongRemainingLength {
                packet,
                expected,
                actual,
            } => write!(
                f,
                "{packet}: remaining length is {actual} but a {packet} always has {expected}"
            ),
            E::RemainingLengthOverflow { packet, len } => write!(
                f,
                "{packet}: the packet would need a remaining length of {len} bytes; MQTT \
                 allows at most {MAX_REMAINING_LENGTH}; send less data per packet"
            ),
        }
    }
}

impl std::error::Error for PacketError {}

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
                "the device may be disabled, deleted or not yet registered; check the UIoT Core \
                 console, and that keep_alive is within 30..1200"
            }
        }
    }
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

/// Decode the packet at the start of `buf`, refusing any packet whose declared
/// size exceeds `max_packet` bytes (fixed header included) before allocating.
///
/// `buf` may hold less than a packet ([`Decoded::Incomplete`]: nothing is
/// consumed, read at least `needed` more bytes and call again) or more than
/// one (only the first is decoded; [`Decoded::Packet::len`] says how many
/// bytes to drop). Errors that the fixed header already shows (reserved type,
/// bad flags, a size over `max_packet`, a wrong size for a fixed-size packet)
/// are reported before the rest of the packet has arrived.
///
/// ```
/// use uiot::packet::{decode, Decoded, Packet, DEFAULT_MAX_PACKET};
///
/// // A PUBACK for packet 5, then the first byte of a PINGRESP.
/// let buf = [0x40, 0x02, 0x00, 0x05, 0xD0];
/// assert_eq!(
///     decode(&buf, DEFAULT_MAX_PACKET),
///     Ok(Decoded::Packet { packet: Packet::PubAck(5), len: 4 })
/// );
/// assert_eq!(
///     decode(&buf[4..], DEFAULT_MAX_PACKET),
///     Ok(Decoded::Incomplete { needed: 1 })
/// );
/// ```
pub fn decode(buf: &[u8], max_packet: usize) -> Result<Decoded, PacketError> {
    let Some(&byte1) = buf.first() else {
        return Ok(Decoded::Incomplete { needed: 2 });
    };
    let kind = byte1 >> 4;
    let flags = byte1 & 0x0F;
    let name = codec::type_name(kind).ok_or(PacketError::ReservedPacketType(kind))?;
    if kind == codec::PUBLISH {
        publish::check_flags(flags)?;
    } else {
        let expected = codec::required_flags(kind);
        if flags != expected {
            return Err(PacketError::BadFlags {
                packet: name,
                flags,
                expected,
            });
        }
    }
    let Some(header) = codec::read_fixed_header(buf)? else {
        // At least one more byte of remaining length.
        return Ok(Decoded::Incomplete { needed: 1 });
    };
    if let Some(expected) = codec::fixed_remaining_length(kind) {
        if header.remaining_len != expected {
            return Err(PacketError::WrongRemainingLength {
                packet: name,
                expected,
                actual: header.remaining_len,
            });
        }
    }
    let size = header.header_len + header.remaining_len;
    if size > max_packet {
        return Err(PacketError::TooLarge {
            size,
            max: max_packet,
        });
    }
    let Some(body) = buf.get(header.header_len..size) else {
        return Ok(Decoded::Incomplete {
            needed: size.saturating_sub(buf.len()),
        });
    };
    let packet = match kind {
        codec::CONNECT => Packet::Connect(connect::read_connect(body)?),
        codec::CONNACK => Packet::ConnAck(connect::read_connack(body)?),
        codec::PUBLISH => Packet::Publish(publish::read_publish(flags, body)?),
        codec::PUBACK => Packet::PubAck(publish::read_ack(name, body)?),
        codec::PUBREC => Packet::PubRec(publish::read_ack(name, body)?),
        codec::PUBREL => Packet::PubRel(publish::read_ack(name, body)?),
        codec::PUBCOMP => Packet::PubComp(publish::read_ack(name, body)?),
        codec::SUBSCRIBE => Packet::Subscribe(subscribe::read_subscribe(body)?),
        codec::SUBACK => Packet::SubAck(subscribe::read_suback(body)?),
        codec::UNSUBSCRIBE => Packet::Unsubscribe(subscribe::read_unsubscribe(body)?),
        codec::UNSUBACK => Packet::UnsubAck(subscribe::read_unsuback(body)?),
        codec::PINGREQ => {
            ping::read_pingreq(body)?;
            Packet::PingReq
        }
        codec::PINGRESP => {
            ping::read_pingresp(body)?;
            Packet::PingResp
        }
        codec::DISCONNECT => {
            connect::read_disconnect(body)?;
            Packet::Disconnect
        }
        _ => return Err(PacketError::ReservedPacketType(kind)),
    };
    Ok(Decoded::Packet { packet, len: size })
}

/// A string for a one-line log: as is, or quoted and escaped if it holds
/// spaces or control characters (a peer's topic cannot forge log lines).
fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    if s.is_empty() || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        std::borrow::Cow::Owned(format!("{s:?}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

impl Packet {
    /// Append the encoded packet to `out`.
    ///
    /// Validates the same rules as [`decode`], so nothing is written that the
    /// decoder would refuse; on error `out` is left exactly as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), PacketError> {
        match self {
            Packet::Connect(c) => connect::encode_connect(c, out),
            Packet::ConnAck(a) => connect::encode_connack(a, out),
            Packet::Publish(p) => {
                encode_publish(out, &p.topic, &p.payload, p.qos, p.dup, p.retain, p.pkid)
            }
            Packet::PubAck(id) => publish::encode_ack(out, self.name(), codec::PUBACK, *id),
            Packet::PubRec(id) => publish::encode_ack(out, self.name(), codec::PUBREC, *id),
            Packet::PubRel(id) => publish::encode_ack(out, self.name(), codec::PUBREL, *id),
            Packet::PubComp(id) => publish::encode_ack(out, self.name(), codec::PUBCOMP, *id),
            Packet::Subscribe(s) => subscribe::encode_subscribe(s, out),
            Packet::SubAck(s) => subscribe::encode_suback(s, out),
            Packet::Unsubscribe(u) => subscribe::encode_unsubscribe(u, out),
            Packet::UnsubAck(id) => subscribe::encode_unsuback(out, *id),
            Packet::PingReq => {
                ping::encode_pingreq(out);
                Ok(())
            }
            Packet::PingResp => {
                ping::encode_pingresp(out);
                Ok(())
            }
            Packet::Disconnect => {
                connect::encode_disconnect(out);
                Ok(())
            }
        }
    }

    /// The size [`Packet::encode`] would write, fixed header included, after
    /// the same validation (so a caller can check a size limit first).
    pub fn encoded_len(&self) -> Result<usize, PacketError> {
        let remaining = match self {
            Packet::Connect(c) => connect::connect_len(c)?,
            Packet::ConnAck(a) => {
                if a.session_present && a.code != ConnectReturnCode::Accepted {
                    return Err(PacketError::SessionPresentWithError(a.code as u8));
                }
                2
            }
            Packet::Publish(p) => publish::publish_len(&p.topic, &p.payload, p.qos, p.dup, p.pkid)?,
            Packet::PubAck(id)
            | Packet::PubRec(id)
            | Packet::PubRel(id)
            | Packet::PubComp(id)
            | Packet::UnsubAck(id) => {
                codec::check_pkid(self.name(), *id)?;
                2
            }
            Packet::Subscribe(s) => subscribe::subscribe_len(s)?,
            Packet::SubAck(s) => subscribe::suback_len(s)?,
            Packet::Unsubscribe(u) => subscribe::unsubscribe_len(u)?,
            Packet::PingReq | Packet::PingResp | Packet::Disconnect => 0,
        };
        Ok(1 + codec::remaining_length_len(remaining) + remaining)
    }

    /// The packet type's name as the MQTT specification spells it
    /// ("PUBLISH", "CONNACK", ...).
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect => "DISCONNECT",
        }
    }

    /// One line for debug logs: type, packet id, topic or filters, sizes.
    /// Never contains the CONNECT password nor any payload bytes, e.g.
    /// `PUBLISH id=5 qos=1 topic=/a/b payload=12 bytes`.
    pub fn summary(&self) -> String {
        let name = self.name();
        match self {
            Packet::Connect(c) => {
                let (proto, level) = c.protocol.name_and_level();
                let mut s = format!(
                    "{name} protocol={proto}/{level} client_id={} keep_alive={} clean_session={}",
                    shown(&c.client_id),
                    c.keep_alive,
                    c.clean_session
                );
                if let Some(user) = &c.username {
                    s.push_str(&format!(" username={}", shown(user)));
                }
                if c.password.is_some() {
                    s.push_str(" password=<hidden>");
                }
                if let Some(will) = &c.will {
                    s.push_str(&format!(
                        " will=(topic={} qos={} retain={} message={} bytes)",
                        shown(&will.topic),
                        will.qos as u8,
                        will.retain,
                        will.message.len()
                    ));
                }
                s
            }
            Packet::ConnAck(a) => format!(
                "{name} session_present={} code={}",
                a.session_present,
                a.code.description()
            ),
            Packet::Publish(p) => {
                let mut s = String::from(name);
                if let Some(id) = p.pkid {
                    s.push_str(&format!(" id={id}"));
                }
                s.push_str(&format!(" qos={}", p.qos as u8));
                if p.dup {
                    s.push_str(" dup");
                }
                if p.retain {
                    s.push_str(" retain");
                }
                s.push_str(&format!(
                    " topic={} payload={} bytes",
                    shown(&p.topic),
                    p.payload.len()
                ));
                s
            }
            Packet::PubAck(id)
            | Packet::PubRec(id)
            | Packet::PubRel(id)
            | Packet::PubComp(id)
            | Packet::UnsubAck(id) => format!("{name} id={id}"),
            Packet::Subscribe(s) => {
                let filters: Vec<String> = s
                    .filters
                    .iter()
                    .map(|(f, q)| format!("{} qos={}", shown(f), *q as u8))
                    .collect();
                format!("{name} id={} filters=[{}]", s.pkid, filters.join(", "))
            }
            Packet::SubAck(s) => {
                let codes: Vec<String> = s
                    .codes
                    .iter()
                    .map(|c| match c {
                        SubAckCode::Success(q) => format!("qos={}", *q as u8),
                        SubAckCode::Failure => "failure".to_owned(),
                    })
                    .collect();
                format!("{name} id={} codes=[{}]", s.pkid, codes.join(", "))
            }
            Packet::Unsubscribe(u) => {
                let filters: Vec<_> = u.filters.iter().map(|f| shown(f)).collect();
                format!("{name} id={} filters=[{}]", u.pkid, filters.join(", "))
            }
            Packet::PingReq | Packet::PingResp | Packet::Disconnect => name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish_bytes() -> Vec<u8> {
        let mut out = Vec::new();
        encode_publish(
            &mut out,
            "a/b",
            b"hello",
            QoS::AtLeastOnce,
            false,
            false,
            Some(3),
        )
        .unwrap();
        out
    }

    #[test]
    fn every_prefix_is_incomplete_and_names_a_lower_bound() {
        let bytes = publish_bytes();
        for cut in 0..bytes.len() {
            match decode(&bytes[..cut], DEFAULT_MAX_PACKET) {
                Ok(Decoded::Incomplete { needed }) => {
                    assert!(needed >= 1, "prefix {cut}");
                    assert!(cut + needed <= bytes.len(), "prefix {cut} overstates");
                }
                other => panic!("prefix {cut}: {other:?}"),
            }
        }
        assert_eq!(
            decode(&bytes[..2], DEFAULT_MAX_PACKET),
            Ok(Decoded::Incomplete {
                needed: bytes.len() - 2
            })
        );
    }

    #[test]
    fn too_large_is_refused_before_the_body_arrives() {
        // PUBLISH declaring 300000 bytes of remaining length, nothing else.
        let header = [0x30, 0xE0, 0xA7, 0x12];
        assert_eq!(
            decode(&header, DEFAULT_MAX_PACKET),
            Err(PacketError::TooLarge {
                size: 300_004,
                max: DEFAULT_MAX_PACKET
            })
        );
        // Exactly at the limit is fine (and incomplete here).
        let bytes = publish_bytes();
        assert!(matches!(
            decode(&bytes, bytes.len()),
            Ok(Decoded::Packet { .. })
        ));
        assert_eq!(
            decode(&bytes, bytes.len() - 1),
            Err(PacketError::TooLarge {
                size: bytes.len(),
                max: bytes.len() - 1
            })
        );
    }

    #[test]
    fn reserved_types_are_refused_from_the_first_byte() {
        assert_eq!(
            decode(&[0x00], 100),
            Err(PacketError::ReservedPacketType(0))
        );
        assert_eq!(
            decode(&[0xF0], 100),
            Err(PacketError::ReservedPacketType(15))
        );
    }

    #[test]
    fn summary_never_shows_password_or_payload() {
        let connect = Packet::Connect(Connect {
            protocol: Protocol::V311,
            keep_alive: 300,
            clean_session: true,
            client_id: "psn.dsn".into(),
            will: None,
            username: Some("psn|dsn|1".into()),
            password: Some(b"TopSecret99".to_vec()),
        });
        let s = connect.summary();
        assert!(!s.contains("TopSecret99"), "{s}");
        assert!(s.contains("client_id=psn.dsn"), "{s}");
        assert!(!format!("{connect:?}").contains("TopSecret99"));

        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "/a/b".into(),
            pkid: Some(5),
            payload: b"PAYLOAD_MARK".to_vec(),
        });
        assert_eq!(
            publish.summary(),
            "PUBLISH id=5 qos=1 topic=/a/b payload=12 bytes"
        );
        assert_eq!(Packet::PubAck(9).summary(), "PUBACK id=9");
        assert_eq!(
            Packet::SubAck(SubAck {
                pkid: 2,
                codes: vec![SubAckCode::Success(QoS::AtLeastOnce), SubAckCode::Failure]
            })
            .summary(),
            "SUBACK id=2 codes=[qos=1, failure]"
        );
        assert_eq!(Packet::PingReq.summary(), "PINGREQ");
        let forged = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "a\nINFO fake line".into(),
            pkid: None,
            payload: vec![],
        });
        assert_eq!(
            forged.summary(),
            "PUBLISH qos=0 retain topic=\"a\\nINFO fake line\" payload=0 bytes"
        );
    }

    #[test]
    fn encoded_len_matches_encode() {
        let packets = [
            Packet::PingReq,
            Packet::PubRel(4),
            Packet::Subscribe(Subscribe {
                pkid: 1,
                filters: vec![("a/#".into(), QoS::AtLeastOnce)],
            }),
        ];
        for p in packets {
            let mut out = Vec::new();
            p.encode(&mut out).unwrap();
            assert_eq!(p.encoded_len(), Ok(out.len()), "{p:?}");
        }
        assert_eq!(
            Packet::PubAck(0).encoded_len(),
            Err(PacketError::ZeroPacketId { packet: "PUBACK" })
        );
    }
}
