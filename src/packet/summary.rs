//! One-line descriptions of packets for the wire debug log.
//!
//! Owns: [`Packet::summary`], which never shows a password or payload bytes
//! and escapes peer strings so they cannot forge log lines.
//! Must not touch: logging itself (the client decides what to log), I/O.

use super::{Packet, SubAckCode};

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
                        will.qos.to_u8(),
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
                s.push_str(&format!(" qos={}", p.qos.to_u8()));
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
                    .map(|(f, q)| format!("{} qos={}", shown(f), q.to_u8()))
                    .collect();
                format!("{name} id={} filters=[{}]", s.pkid, filters.join(", "))
            }
            Packet::SubAck(s) => {
                let codes: Vec<String> = s
                    .codes
                    .iter()
                    .map(|c| match c {
                        SubAckCode::Success(q) => format!("qos={}", q.to_u8()),
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
    use crate::packet::*;

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
}
