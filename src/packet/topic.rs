//! Topic names and topic filters: MQTT 3.1.1 validation and matching.
//!
//! Owns: what makes a topic name or filter valid on the wire (not empty, at
//! most 65535 bytes, no U+0000 nor other control characters, wildcards only
//! where MQTT allows them), and [`filter_matches`].
//! Must not touch: UIoT platform topic rules (length, slash count, allowed
//! topics; those live in `platform`), I/O.

use super::codec::MAX_FIELD_LEN;
use super::PacketError;

/// Check a topic name (PUBLISH, will topic) for `packet`'s error messages.
pub(crate) fn check_name(packet: &'static str, topic: &str) -> Result<(), PacketError> {
    if topic.is_empty() {
        return Err(PacketError::EmptyTopic { packet });
    }
    // The common case in one pass over the bytes (every topic of every
    // message goes through here): plain printable ASCII with no wildcard.
    // Anything else takes the detailed path, which names the problem.
    let plain = topic
        .bytes()
        .all(|b| matches!(b, 0x20..=0x7e) && b != b'+' && b != b'#');
    if plain && topic.len() <= MAX_FIELD_LEN {
        return Ok(());
    }
    check_string(packet, "topic name", topic)?;
    if topic.contains(['+', '#']) {
        return Err(PacketError::WildcardInTopic {
            packet,
            topic: topic.to_owned(),
        });
    }
    Ok(())
}

/// Check a topic filter (SUBSCRIBE, UNSUBSCRIBE) for `packet`'s error
/// messages.
pub(crate) fn check_filter(packet: &'static str, filter: &str) -> Result<(), PacketError> {
    if filter.is_empty() {
        return Err(PacketError::EmptyFilter { packet });
    }
    check_string(packet, "topic filter", filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') {
            if level != "#" {
                return Err(PacketError::WildcardNotAlone {
                    packet,
                    filter: filter.to_owned(),
                    wildcard: '#',
                });
            }
            if levels.peek().is_some() {
                return Err(PacketError::MultiLevelWildcardNotLast {
                    packet,
                    filter: filter.to_owned(),
                });
            }
        }
        if level.contains('+') && level != "+" {
            return Err(PacketError::WildcardNotAlone {
                packet,
                filter: filter.to_owned(),
                wildcard: '+',
            });
        }
    }
    Ok(())
}

fn check_string(packet: &'static str, field: &'static str, s: &str) -> Result<(), PacketError> {
    if s.contains('\0') {
        return Err(PacketError::NullCharacter { packet, field });
    }
    // `char::is_control` is exactly U+0000..U+001F and U+007F..U+009F, the
    // code points MQTT 3.1.1 (1.5.3) says a topic should not contain: they
    // cannot be typed, shown or logged as they are.
    if let Some(character) = s.chars().find(|c| c.is_control()) {
        return Err(PacketError::ControlCharacter {
            packet,
            field,
            value: s.to_owned(),
            character,
        });
    }
    if s.len() > MAX_FIELD_LEN {
        return Err(PacketError::FieldTooLong {
            packet,
            field,
            len: s.len(),
        });
    }
    Ok(())
}

/// Check that `topic` is a valid MQTT topic name to publish to: not empty,
/// at most 65535 bytes, no U+0000 nor other control characters (U+0001..U+001F,
/// U+007F..U+009F), no `+` or `#`. Errors name PUBLISH.
pub fn validate_topic_name(topic: &str) -> Result<(), PacketError> {
    check_name("PUBLISH", topic)
}

/// Check that `filter` is a valid MQTT topic filter: not empty, at most 65535
/// bytes, no U+0000 nor other control characters, `+` and `#` alone in their
/// level, `#` only last.
/// Errors name SUBSCRIBE.
pub fn validate_topic_filter(filter: &str) -> Result<(), PacketError> {
    check_filter("SUBSCRIBE", filter)
}

/// Whether a message published to `topic` is delivered to a subscription
/// with `filter`, by MQTT 3.1.1 rules: `+` matches exactly one level
/// (possibly empty), `#` matches the parent level and any number of levels
/// below it, and topics starting with `$` are not matched by a filter whose
/// first level is a wildcard. An invalid filter or topic matches nothing.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if check_filter("SUBSCRIBE", filter).is_err() || check_name("PUBLISH", topic).is_err() {
        return false;
    }
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples_of_multi_level_wildcard() {
        assert!(filter_matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1"
        ));
        assert!(filter_matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(filter_matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(filter_matches("sport/#", "sport"));
        assert!(filter_matches("#", "a/b/c"));
        assert!(filter_matches("#", "/"));
        assert!(!filter_matches("sport/tennis/#", "sport/football"));
    }

    #[test]
    fn spec_examples_of_single_level_wildcard() {
        assert!(filter_matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(filter_matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!filter_matches(
            "sport/tennis/+",
            "sport/tennis/player1/ranking"
        ));
        assert!(!filter_matches("sport/+", "sport"));
        assert!(filter_matches("sport/+", "sport/"));
        assert!(filter_matches("+/+", "/finance"));
        assert!(filter_matches("/+", "/finance"));
        assert!(!filter_matches("+", "/finance"));
        assert!(filter_matches("+/tennis/#", "sport/tennis/x/y"));
    }

    #[test]
    fn exact_filters_match_only_the_same_topic() {
        assert!(filter_matches("a/b", "a/b"));
        assert!(!filter_matches("a/b", "a/b/"));
        assert!(!filter_matches("a/b", "a"));
        assert!(!filter_matches("a/b", "A/b"));
        assert!(!filter_matches("/a", "a"));
    }

    #[test]
    fn dollar_topics_are_not_matched_by_leading_wildcards() {
        assert!(!filter_matches("#", "$SYS/broker"));
        assert!(!filter_matches("+/broker", "$SYS/broker"));
        assert!(!filter_matches("+", "$system"));
        assert!(filter_matches("$SYS/#", "$SYS/broker"));
        assert!(filter_matches("$system/+/x", "$system/abc/x"));
        // A `$` later in the topic is an ordinary character.
        assert!(filter_matches("a/+", "a/$b"));
    }

    #[test]
    fn invalid_filter_or_topic_matches_nothing() {
        assert!(!filter_matches("a/#/b", "a/x/b"));
        assert!(!filter_matches("a+", "a+"));
        assert!(!filter_matches("", ""));
        assert!(!filter_matches("a/+", "a/+"));
        assert!(!filter_matches("#", ""));
    }

    #[test]
    fn filter_rules_each_have_their_error() {
        assert_eq!(
            validate_topic_filter("a/#/b"),
            Err(PacketError::MultiLevelWildcardNotLast {
                packet: "SUBSCRIBE",
                filter: "a/#/b".into()
            })
        );
        assert_eq!(
            validate_topic_filter("a/b#"),
            Err(PacketError::WildcardNotAlone {
                packet: "SUBSCRIBE",
                filter: "a/b#".into(),
                wildcard: '#'
            })
        );
        assert_eq!(
            validate_topic_filter("a/+b/c"),
            Err(PacketError::WildcardNotAlone {
                packet: "SUBSCRIBE",
                filter: "a/+b/c".into(),
                wildcard: '+'
            })
        );
        assert_eq!(
            validate_topic_filter(""),
            Err(PacketError::EmptyFilter {
                packet: "SUBSCRIBE"
            })
        );
        for ok in ["#", "+", "+/+", "a/+/b/#", "/", "//", "$SYS/#", "a b/ü"] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn topic_name_rules_each_have_their_error() {
        assert_eq!(
            validate_topic_name(""),
            Err(PacketError::EmptyTopic { packet: "PUBLISH" })
        );
        assert_eq!(
            validate_topic_name("a/+"),
            Err(PacketError::WildcardInTopic {
                packet: "PUBLISH",
                topic: "a/+".into()
            })
        );
        assert_eq!(
            validate_topic_name("a/#"),
            Err(PacketError::WildcardInTopic {
                packet: "PUBLISH",
                topic: "a/#".into()
            })
        );
        assert_eq!(
            validate_topic_name("a\0"),
            Err(PacketError::NullCharacter {
                packet: "PUBLISH",
                field: "topic name"
            })
        );
        assert!(matches!(
            validate_topic_name(&"x".repeat(65_536)),
            Err(PacketError::FieldTooLong { len: 65_536, .. })
        ));
        assert_eq!(validate_topic_name(&"x".repeat(65_535)), Ok(()));
        assert_eq!(validate_topic_name("/"), Ok(()));
    }

    #[test]
    fn control_characters_are_refused_in_names_and_filters() {
        let controls = ('\u{1}'..='\u{1f}').chain('\u{7f}'..='\u{9f}');
        for c in controls {
            let topic = format!("a/{c}/b");
            assert_eq!(
                validate_topic_name(&topic),
                Err(PacketError::ControlCharacter {
                    packet: "PUBLISH",
                    field: "topic name",
                    value: topic.clone(),
                    character: c
                }),
                "U+{:04X}",
                u32::from(c)
            );
            assert_eq!(
                validate_topic_filter(&topic),
                Err(PacketError::ControlCharacter {
                    packet: "SUBSCRIBE",
                    field: "topic filter",
                    value: topic.clone(),
                    character: c
                })
            );
            assert!(!filter_matches("#", &topic));
        }
        // The neighbours of the control ranges are ordinary characters.
        for ok in [" ", "~", "\u{a0}", "\u{2028}", "\u{fffd}", "caf\u{e9}"] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok:?}");
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok:?}");
        }
        // U+0000 keeps its own error.
        assert_eq!(
            validate_topic_filter("a\0"),
            Err(PacketError::NullCharacter {
                packet: "SUBSCRIBE",
                field: "topic filter"
            })
        );
    }

    #[test]
    fn control_character_message_quotes_the_topic_escaped_and_cut() {
        let topic = format!("line\r\nINFO forged{}", "x".repeat(10_000));
        let e = validate_topic_name(&topic).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("PUBLISH: the topic name \"line\\r\\nINFO forged"),
            "{s}"
        );
        assert!(s.contains("U+000D"), "{s}");
        assert!(s.contains("(10017 bytes)"), "{s}");
        assert!(!s.contains('\r') && !s.contains('\n'), "{s}");
        assert!(s.len() < 300, "{s}");
    }

    #[test]
    fn empty_names_and_filters_say_so() {
        let e = validate_topic_name("").unwrap_err();
        assert_eq!(
            e.to_string(),
            "PUBLISH: the topic name is empty; a topic needs at least one character"
        );
        let e = validate_topic_filter("").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
