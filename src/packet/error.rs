//! Why bytes are not a valid packet, or a packet cannot be written.
//!
//! Owns: [`PacketError`], one variant per rule of the wire format, and its
//! `Display` texts, which name the packet, the field and what is wrong, and
//! quote peer values only cut short (`crate::error::cut`) and escaped.
//! Must not touch: the rules themselves (they live next to the codecs),
//! exit codes or wording-based decisions (callers branch on the variant).

use std::fmt;

use super::MAX_REMAINING_LENGTH;

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
        /// Packet type.
        packet: &'static str,
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
    /// QoS 2, which MQTT defines but UIoT Core does not support: in a
    /// PUBLISH header, a SUBACK return code, a SUBSCRIBE request or a will.
    UnsupportedQoS2 {
        /// Packet type.
        packet: &'static str,
        /// The field ("QoS", "granted QoS", "requested QoS", "will QoS").
        field: &'static str,
    },
    /// QoS 3, which does not exist (both QoS bits set): a malformed packet.
    ReservedQoS3 {
        /// Packet type.
        packet: &'static str,
        /// The field ("QoS", "requested QoS", "will QoS").
        field: &'static str,
    },
    /// PUBLISH with the DUP flag on a QoS 0 message.
    DupOnQoS0,
    /// A packet identifier of 0 where a non-zero one is required.
    ZeroPacketId {
        /// Packet type.
        packet: &'static str,
    },
    /// Encoding: a QoS 1 PUBLISH without a packet identifier.
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
    /// A topic name or filter contains a control character (U+0001..U+001F
    /// or U+007F..U+009F).
    ControlCharacter {
        /// Packet type.
        packet: &'static str,
        /// The field ("topic name", "topic filter").
        field: &'static str,
        /// The topic or filter.
        value: String,
        /// The first control character in it.
        character: char,
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
    /// SUBACK without any return code.
    NoReturnCodes,
    /// CONNACK return code above 5.
    UnknownConnAckCode(u8),
    /// CONNACK acknowledge-flags byte with reserved bits (7..1) set.
    ConnAckReservedBits(u8),
    /// CONNACK with session present set and a non-zero return code.
    SessionPresentWithError(u8),
    /// SUBACK return code other than 0, 1, 2 or 0x80 (2 is
    /// [`PacketError::UnsupportedQoS2`]).
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

/// `s` quoted for a message about untrusted input: cut to
/// [`crate::error::QUOTE_MAX`] characters, control characters escaped (a
/// peer's topic cannot forge log lines).
pub(crate) fn quoted(s: &str) -> String {
    format!("\"{}\"", crate::error::cut(s).escape_debug())
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
            E::TooLarge { packet, size, max } => write!(
                f,
                "{packet}: packet of {size} bytes is larger than the maximum of {max} bytes"
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
            E::UnsupportedQoS2 { packet, field } => write!(
                f,
                "{packet}: the {field} is 2, but QoS 2 is not supported by UIoT Core (only \
                 QoS 0 and 1)"
            ),
            E::ReservedQoS3 { packet, field } => write!(
                f,
                "{packet}: the {field} is 3 (both QoS bits set), a reserved value: the packet \
                 is malformed"
            ),
            E::DupOnQoS0 => write!(f, "PUBLISH: the DUP flag is set on a QoS 0 message"),
            E::ZeroPacketId { packet } => write!(
                f,
                "{packet}: packet identifier 0 is not allowed; use 1..=65535"
            ),
            E::MissingPacketId { packet } => write!(
                f,
                "{packet}: QoS 1 needs a packet identifier; give one in 1..=65535"
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
            E::ControlCharacter {
                packet,
                field,
                value,
                character,
            } => write!(
                f,
                "{packet}: the {field} {} contains the control character U+{:04X}; topics may \
                 not contain control characters (U+0001..U+001F, U+007F..U+009F)",
                quoted(value),
                u32::from(*character)
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
                quoted(topic)
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
                quoted(filter)
            ),
            E::WildcardNotAlone {
                packet,
                filter,
                wildcard,
            } => write!(
                f,
                "{packet}: in topic filter {}, '{wildcard}' must fill a whole level (like \
                 \"a/{wildcard}\"), not share it with other characters",
                quoted(filter)
            ),
            E::RequestedQoSReservedBits { filter, byte } => write!(
                f,
                "SUBSCRIBE: the requested QoS byte {byte:#04x} for filter {} has reserved bits \
                 set; only its lowest two bits carry the QoS",
                quoted(filter)
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
                quoted(name)
            ),
            E::ConnectReservedFlag => {
                write!(f, "CONNECT: the reserved bit 0 of the connect flags is set")
            }
            E::WillFlagsWithoutWill { flags } => write!(
                f,
                "CONNECT: connect flags {flags:#04x} set will QoS or will retain without the \
                 will flag"
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_messages_say_what_is_wrong() {
        let two = PacketError::UnsupportedQoS2 {
            packet: "PUBLISH",
            field: "QoS",
        };
        assert_eq!(
            two.to_string(),
            "PUBLISH: the QoS is 2, but QoS 2 is not supported by UIoT Core (only QoS 0 and 1)"
        );
        let three = PacketError::ReservedQoS3 {
            packet: "CONNECT",
            field: "will QoS",
        };
        assert!(three.to_string().contains("reserved"), "{three}");
        assert!(three.to_string().contains("malformed"), "{three}");
    }

    #[test]
    fn quoted_values_are_cut_and_escaped() {
        let e = PacketError::WildcardInTopic {
            packet: "PUBLISH",
            topic: format!("a\n{}#", "x".repeat(100_000)),
        };
        let s = e.to_string();
        assert!(s.len() < 300, "{s}");
        assert!(s.contains("\"a\\nxxx"), "{s}");
        assert!(s.contains("(100003 bytes)"), "{s}");
        assert!(!s.contains('\n'), "{s}");
        let c = PacketError::ControlCharacter {
            packet: "PUBLISH",
            field: "topic name",
            value: "a\u{7}b".into(),
            character: '\u{7}',
        };
        assert_eq!(
            c.to_string(),
            "PUBLISH: the topic name \"a\\u{7}b\" contains the control character U+0007; \
             topics may not contain control characters (U+0001..U+001F, U+007F..U+009F)"
        );
    }

    #[test]
    fn too_large_names_the_packet() {
        let e = PacketError::TooLarge {
            packet: "PUBLISH",
            size: 300_004,
            max: 262_144,
        };
        assert_eq!(
            e.to_string(),
            "PUBLISH: packet of 300004 bytes is larger than the maximum of 262144 bytes"
        );
    }
}
