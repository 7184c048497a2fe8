//! Recognising a peer that is not an MQTT broker from its first bytes.
//!
//! Owns: [`not_mqtt`], a pure look at the bytes that came back in answer to
//! CONNECT, so that "wrong port / wrong service" reads as that instead of as
//! whatever MQTT error the first byte happens to make (an HTTP "H" is 0x48,
//! a PUBACK with bad flags).
//! Must not touch: sockets, when to call it (the client's I/O thread), the
//! wording of the final message.

/// The first byte of a CONNACK and its remaining length.
const CONNACK_START: [u8; 2] = [0x20, 0x02];

/// How many leading bytes [`not_mqtt`] looks at.
const LOOK: usize = 64;

/// Fewest bytes of text before they count as "a text protocol".
const MIN_TEXT: usize = 4;

/// What the peer answered like, if `first_bytes` (the first bytes received
/// after sending CONNECT) are clearly not an MQTT CONNACK: a short name
/// that fits "it answered like ...", e.g. `"an HTTP server"`.
///
/// `None` means "could be MQTT" (including a valid CONNACK, an empty or too
/// short buffer, and binary bytes that are not recognised); decode them as
/// usual then. Recognised: an HTTP response (`HTTP/`), a TLS record (alert
/// 0x15 or handshake 0x16, then version 0x03: the port expects TLS), an SSH
/// banner (`SSH-`), and other printable ASCII text (at least 4 bytes:
/// SMTP, FTP, POP3, Redis, an HTML page, ...).
///
/// ```
/// use uiot::packet::not_mqtt;
///
/// assert_eq!(not_mqtt(b"HTTP/1.1 400 Bad Request\r\n"), Some("an HTTP server"));
/// assert_eq!(not_mqtt(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]), Some("a TLS server"));
/// assert_eq!(not_mqtt(&[0x20, 0x02, 0x00, 0x00]), None); // CONNACK
/// ```
pub fn not_mqtt(first_bytes: &[u8]) -> Option<&'static str> {
    let head = first_bytes.get(..LOOK).unwrap_or(first_bytes);
    if head.starts_with(&CONNACK_START) {
        return None;
    }
    if head.starts_with(b"HTTP/") {
        return Some("an HTTP server");
    }
    if let [0x15 | 0x16, 0x03, ..] = head {
        return Some("a TLS server");
    }
    if head.starts_with(b"SSH-") {
        return Some("an SSH server");
    }
    let is_text = |b: &u8| matches!(b, 0x20..=0x7E | b'\t' | b'\r' | b'\n');
    if head.len() >= MIN_TEXT && head.iter().all(is_text) {
        return Some("a server of a text protocol");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_tls_ssh_and_text_are_named() {
        assert_eq!(
            not_mqtt(b"HTTP/1.0 200 OK\r\nServer: nginx\r\n\r\n<html>"),
            Some("an HTTP server")
        );
        assert_eq!(not_mqtt(b"HTTP/"), Some("an HTTP server"));
        // TLS alert (what a TLS port answers to plain bytes) and handshake.
        assert_eq!(
            not_mqtt(&[0x15, 0x03, 0x01, 0x00, 0x02]),
            Some("a TLS server")
        );
        assert_eq!(not_mqtt(&[0x16, 0x03, 0x03]), Some("a TLS server"));
        assert_eq!(
            not_mqtt(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
            Some("an SSH server")
        );
        for text in [
            &b"220 mail.example.com ESMTP Postfix\r\n"[..],
            b"+OK POP3 ready\r\n",
            b"-ERR unknown command 'MQTT'\r\n",
            b"<!DOCTYPE html>",
            b"hello",
        ] {
            assert_eq!(
                not_mqtt(text),
                Some("a server of a text protocol"),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn mqtt_and_unknown_bytes_are_left_to_the_decoder() {
        // CONNACK accepted, with a PUBLISH behind it.
        assert_eq!(not_mqtt(&[0x20, 0x02, 0x00, 0x00, 0x30, 0x03]), None);
        // A CONNACK refusal, and a CONNACK split after its first byte.
        assert_eq!(not_mqtt(&[0x20, 0x02, 0x00, 0x05]), None);
        assert_eq!(not_mqtt(&[0x20]), None);
        assert_eq!(not_mqtt(&[]), None);
        // Too little text to tell, and binary that is not recognised.
        assert_eq!(not_mqtt(b"HTT"), None);
        assert_eq!(not_mqtt(b"OK\n"), None);
        assert_eq!(not_mqtt(&[0x16, 0x01]), None);
        assert_eq!(not_mqtt(&[0x40, 0x02, 0x00, 0x01]), None);
        assert_eq!(not_mqtt(&[0xFF; 100]), None);
        // Text followed by binary within the first 64 bytes is not "text".
        assert_eq!(not_mqtt(b"abcd\x00\x01"), None);
    }

    #[test]
    fn only_the_first_64_bytes_are_looked_at() {
        let mut long = b"A".repeat(LOOK);
        long.extend_from_slice(&[0x00; 1_000_000]);
        assert_eq!(not_mqtt(&long), Some("a server of a text protocol"));
    }
}
