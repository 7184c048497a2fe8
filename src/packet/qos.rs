//! Quality of service: the one public QoS type of uiot.
//!
//! Owns: [`QoS`] and its wire value. UIoT Core has no QoS 2, so neither has
//! this type: QoS 2 and 3 met on the wire are refused by the codecs with
//! [`PacketError::UnsupportedQoS2`] and [`PacketError::ReservedQoS3`].
//! Must not touch: QoS flows (acknowledgements, retries: the client's job).

use super::PacketError;

/// Quality of service for publishing and subscribing. UIoT Core supports
/// QoS 0 and 1 only, so there is no QoS 2. Ordered: `AtMostOnce <
/// AtLeastOnce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// QoS 0: sent once, no acknowledgement.
    AtMostOnce = 0,
    /// QoS 1: acknowledged by the receiver (PUBACK); may arrive twice.
    AtLeastOnce = 1,
}

impl QoS {
    /// The QoS numbered `n`: `Some` for 0 and 1, `None` for anything else
    /// (including 2, which UIoT Core does not support).
    ///
    /// ```
    /// use uiot::packet::QoS;
    /// assert_eq!(QoS::from_u8(1), Some(QoS::AtLeastOnce));
    /// assert_eq!(QoS::from_u8(2), None);
    /// ```
    pub fn from_u8(n: u8) -> Option<QoS> {
        match n {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            _ => None,
        }
    }

    /// The QoS number, as on the wire: 0 or 1.
    pub fn to_u8(self) -> u8 {
        match self {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
        }
    }
}

/// QoS from the two QoS bits of `packet`'s `field`: 2 and 3 are refused,
/// each with its own error.
pub(crate) fn from_bits(
    packet: &'static str,
    field: &'static str,
    bits: u8,
) -> Result<QoS, PacketError> {
    match bits {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Err(PacketError::UnsupportedQoS2 { packet, field }),
        _ => Err(PacketError::ReservedQoS3 { packet, field }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_0_and_1_exist() {
        assert_eq!(QoS::from_u8(0), Some(QoS::AtMostOnce));
        assert_eq!(QoS::from_u8(1), Some(QoS::AtLeastOnce));
        for n in 2..=u8::MAX {
            assert_eq!(QoS::from_u8(n), None, "{n}");
        }
        for q in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            assert_eq!(QoS::from_u8(q.to_u8()), Some(q));
            assert_eq!(q as u8, q.to_u8());
        }
        assert!(QoS::AtMostOnce < QoS::AtLeastOnce);
    }

    #[test]
    fn qos_2_and_3_bits_have_their_own_errors() {
        assert_eq!(from_bits("PUBLISH", "QoS", 1), Ok(QoS::AtLeastOnce));
        assert_eq!(
            from_bits("PUBLISH", "QoS", 2),
            Err(PacketError::UnsupportedQoS2 {
                packet: "PUBLISH",
                field: "QoS"
            })
        );
        assert_eq!(
            from_bits("CONNECT", "will QoS", 3),
            Err(PacketError::ReservedQoS3 {
                packet: "CONNECT",
                field: "will QoS"
            })
        );
    }
}
