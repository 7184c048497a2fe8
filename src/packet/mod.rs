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
//! Encoding appends to a `Vec<u8>` the caller owns and reuses.
//!
//! TYPES ONLY FOR NOW: the implementation is being written.

use std::fmt;

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
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketError {
    /// Placeholder while the implementation is written.
    Unimplemented,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
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
            ConnectReturnCode::UnacceptableProtocolVersion => {
                "set [connection] protocol = 3.1.1"
            }
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
pub fn decode(buf: &[u8], max_packet: usize) -> Result<Decoded, PacketError> {
    let _ = (buf, max_packet);
    Err(PacketError::Unimplemented)
}

impl Packet {
    /// Append the encoded packet to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), PacketError> {
        let _ = out;
        Err(PacketError::Unimplemented)
    }
}
