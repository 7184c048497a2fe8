//! A device's identity on UIoT Core and the topics it may use.
//!
//! Owns: ClientID / UserName construction, the device's own topic names, and
//! the topic guard (which topics a device may publish to or subscribe to, and
//! their shape limits).
//! Must not touch: sockets, threads, the INI format.

use crate::error::Error;
use crate::platform::{MAX_TOPIC_LEN, MAX_TOPIC_SLASHES};

/// How the device authenticates (the last field of the UserName).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// 1: static, with the device secret.
    Static = 1,
    /// 2: dynamic registration, with the product secret.
    Dynamic = 2,
}

/// A device: its ProductSN and DeviceSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// ProductSN, as shown in the UIoT Core console.
    pub product_sn: String,
    /// DeviceSN.
    pub device_sn: String,
}

impl Identity {
    /// A device of `product_sn` named `device_sn`.
    pub fn new(product_sn: impl Into<String>, device_sn: impl Into<String>) -> Self {
        Identity {
            product_sn: product_sn.into(),
            device_sn: device_sn.into(),
        }
    }

    /// The MQTT ClientID: `PSN.DSN`.
    pub fn client_id(&self) -> String {
        format!("{}.{}", self.product_sn, self.device_sn)
    }

    /// The MQTT UserName: `PSN|DSN|authmode`.
    pub fn username(&self, mode: AuthMode) -> String {
        format!("{}|{}|{}", self.product_sn, self.device_sn, mode as u8)
    }

    /// A custom topic of this device: `topic("upload")` is `/PSN/DSN/upload`.
    /// A leading `/` in `suffix` is ignored.
    pub fn topic(&self, suffix: &str) -> String {
        format!(
            "/{}/{}/{}",
            self.product_sn,
            self.device_sn,
            suffix.trim_start_matches('/')
        )
    }

    /// A system topic of this device: `system_topic("shadow/get")` is
    /// `/$system/PSN/DSN/shadow/get`.
    pub fn system_topic(&self, suffix: &str) -> String {
        format!(
            "/$system/{}/{}/{}",
            self.product_sn,
            self.device_sn,
            suffix.trim_start_matches('/')
        )
    }

    /// A broadcast topic of this device's product: `/PSN/$broadcast/suffix`.
    pub fn broadcast_topic(&self, suffix: &str) -> String {
        format!(
            "/{}/$broadcast/{}",
            self.product_sn,
            suffix.trim_start_matches('/')
        )
    }

    /// Resolve a topic given by a user: one that starts with `/` is taken
    /// as it is; any other is relative to `/PSN/DSN/`.
    pub fn resolve(&self, topic: &str) -> String {
        if topic.starts_with('/') {
            topic.to_string()
        } else {
            self.topic(topic)
        }
    }

    /// Check that this device may publish to `topic`: its own `/PSN/DSN/...`
    /// or `/$system/PSN/DSN/...` topics, within the platform's shape limits.
    pub fn check_publish(&self, topic: &str) -> Result<(), Error> {
        check_shape(topic)?;
        let levels: Vec<&str> = topic.split('/').collect();
        if self.owns(&levels) {
            return Ok(());
        }
        Err(self.denied(topic, "publish", false))
    }

    /// Check that this device may subscribe to `filter`: its own topics or
    /// its product's broadcast topics, with wildcards only below those
    /// prefixes.
    pub fn check_subscribe(&self, filter: &str) -> Result<(), Error> {
        check_shape(filter)?;
        let levels: Vec<&str> = filter.split('/').collect();
        let broadcast = matches!(
            levels.as_slice(),
            ["", psn, "$broadcast", _, ..] if *psn == self.product_sn
        );
        if broadcast || self.owns(&levels) {
            return Ok(());
        }
        Err(self.denied(filter, "subscribe", true))
    }

    fn owns(&self, levels: &[&str]) -> bool {
        let own = |psn: &str, dsn: &str| psn == self.product_sn && dsn == self.device_sn;
        match levels {
            ["", "$system", psn, dsn, _, ..] => own(psn, dsn),
            ["", psn, dsn, _, ..] => own(psn, dsn),
            _ => false,
        }
    }

    fn denied(&self, topic: &str, what: &str, subscribe: bool) -> Error {
        let mut allowed = format!(
            "/{p}/{d}/... and /$system/{p}/{d}/...",
            p = self.product_sn,
            d = self.device_sn
        );
        if subscribe {
            allowed.push_str(&format!(" and /{}/$broadcast/...", self.product_sn));
        }
        let why = if topic.contains(['+', '#'])
            && topic
                .split('/')
                .take(4)
                .any(|level| level == "+" || level == "#")
        {
            "a wildcard in the product or device level would reach other devices".to_string()
        } else if !topic.starts_with('/') {
            "UIoT Core topics start with '/'".to_string()
        } else {
            "it belongs to another product or device".to_string()
        };
        Error::TopicDenied {
            topic: topic.to_string(),
            reason: format!(
                "{why}; device {}/{} may {what} only to {allowed} \
                 (set [limits] enforce = false to use uiot with another broker)",
                self.product_sn, self.device_sn
            ),
        }
    }
}

/// The platform's limits on any topic or filter: at most 128 bytes and at
/// most 7 slashes.
pub(crate) fn check_shape(topic: &str) -> Result<(), Error> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(Error::Limit(format!(
            "topic {:?} is {} bytes; UIoT Core allows at most {MAX_TOPIC_LEN}",
            crate::error::cut(topic),
            topic.len()
        )));
    }
    let slashes = topic.matches('/').count();
    if slashes > MAX_TOPIC_SLASHES {
        return Err(Error::Limit(format!(
            "topic {:?} has {slashes} slashes; UIoT Core allows at most {MAX_TOPIC_SLASHES}",
            crate::error::cut(topic)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Identity {
        Identity::new("70ly1tvowt696r15", "aruidyl0rt9tuvod")
    }

    #[test]
    fn login_fields_follow_the_platform() {
        let d = dev();
        assert_eq!(d.client_id(), "70ly1tvowt696r15.aruidyl0rt9tuvod");
        assert_eq!(
            d.username(AuthMode::Static),
            "70ly1tvowt696r15|aruidyl0rt9tuvod|1"
        );
        assert_eq!(
            d.username(AuthMode::Dynamic),
            "70ly1tvowt696r15|aruidyl0rt9tuvod|2"
        );
    }

    #[test]
    fn topics() {
        let d = dev();
        assert_eq!(
            d.topic("upload"),
            "/70ly1tvowt696r15/aruidyl0rt9tuvod/upload"
        );
        assert_eq!(d.resolve("set"), "/70ly1tvowt696r15/aruidyl0rt9tuvod/set");
        assert_eq!(d.resolve("/x/y/z"), "/x/y/z");
        assert_eq!(
            d.system_topic("shadow/get"),
            "/$system/70ly1tvowt696r15/aruidyl0rt9tuvod/shadow/get"
        );
        assert_eq!(d.broadcast_topic("all"), "/70ly1tvowt696r15/$broadcast/all");
    }

    #[test]
    fn guard_allows_own_topics() {
        let d = dev();
        d.check_publish(&d.topic("upload")).unwrap();
        d.check_publish(&d.system_topic("shadow/upstream")).unwrap();
        d.check_subscribe(&d.topic("#")).unwrap();
        d.check_subscribe(&d.topic("+/x")).unwrap();
        d.check_subscribe(&d.broadcast_topic("#")).unwrap();
        d.check_subscribe(&d.system_topic("tmodel/#")).unwrap();
    }

    #[test]
    fn guard_denies_other_devices() {
        let d = dev();
        for t in [
            "/70ly1tvowt696r15/otherdevice00001/upload",
            "/otherproduct0001/aruidyl0rt9tuvod/upload",
            "/$system/70ly1tvowt696r15/otherdevice00001/shadow/get",
            "/70ly1tvowt696r15/$broadcast/x",
            "70ly1tvowt696r15/aruidyl0rt9tuvod/upload",
            "/70ly1tvowt696r15/aruidyl0rt9tuvod",
        ] {
            match d.check_publish(t) {
                Err(Error::TopicDenied { topic, .. }) => assert_eq!(topic, t),
                other => panic!("{t}: {other:?}"),
            }
        }
        for f in [
            "#",
            "/+/aruidyl0rt9tuvod/#",
            "/70ly1tvowt696r15/+/upload",
            "/otherproduct0001/$broadcast/#",
        ] {
            match d.check_subscribe(f) {
                Err(Error::TopicDenied { reason, .. }) => assert!(reason.contains("may subscribe")),
                other => panic!("{f}: {other:?}"),
            }
        }
        let Err(Error::TopicDenied { reason, .. }) =
            d.check_subscribe("/70ly1tvowt696r15/+/upload")
        else {
            panic!()
        };
        assert!(reason.contains("wildcard"), "{reason}");
    }

    #[test]
    fn guard_enforces_shape() {
        let d = dev();
        let long = d.topic(&"a".repeat(100));
        assert!(matches!(d.check_publish(&long), Err(Error::Limit(m)) if m.contains("128")));
        let deep = d.topic("a/b/c/d/e/f");
        assert!(matches!(d.check_publish(&deep), Err(Error::Limit(m)) if m.contains("slashes")));
        d.check_publish(&d.topic("a/b/c/d/e")).unwrap();
    }
}
