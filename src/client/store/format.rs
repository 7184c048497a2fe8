//! The bytes of the on-disk QoS 1 queue: segment headers, records, and a
//! scanner that finds every complete record in a damaged file.
//!
//! Owns: encoding and decoding (layout documented in the parent module).
//! Must not touch: files, the file system, logging, the pending set.

/// First 8 bytes of every segment file: name and format version 1.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"UIOTQ\x01\r\n";
/// Segment header: magic, base id (u64 LE), CRC32 of the first 16 bytes.
pub(super) const HEADER_LEN: usize = 20;
/// First byte of every record (a resynchronisation hint after corruption).
pub(super) const RECORD_MAGIC: u8 = 0xA5;
/// Record head: magic u8, body length u32 LE, CRC32 u32 LE.
pub(super) const RECORD_HEAD: usize = 9;
/// Largest record body; anything longer on disk is corruption. A message of
/// the platform's largest packet (256 KiB) fits.
pub(super) const MAX_BODY: usize = 300 * 1024;
/// Fixed part of a message body: kind, id, topic length.
pub(super) const MESSAGE_FIXED: usize = 1 + 8 + 2;
/// Most ids in one ack record (keeps the body under `MAX_BODY`).
pub(super) const MAX_ACKS_PER_RECORD: usize = 4096;

const KIND_MESSAGE: u8 = 1;
const KIND_ACKS: u8 = 2;

/// The segment header for a segment whose first id is at least `base_id`.
pub(super) fn encode_header(base_id: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let mut w = Vec::with_capacity(HEADER_LEN);
    w.extend_from_slice(&SEGMENT_MAGIC);
    w.extend_from_slice(&base_id.to_le_bytes());
    let crc = crc32fast::hash(&w);
    w.extend_from_slice(&crc.to_le_bytes());
    h.copy_from_slice(&w);
    h
}

/// The base id of a valid header at the start of `buf`, or `None`.
pub(super) fn decode_header(buf: &[u8]) -> Option<u64> {
    let magic = buf.get(..8)?;
    if magic != SEGMENT_MAGIC {
        return None;
    }
    let base = u64::from_le_bytes(buf.get(8..16)?.try_into().ok()?);
    let crc = u32::from_le_bytes(buf.get(16..20)?.try_into().ok()?);
    (crc32fast::hash(buf.get(..16)?) == crc).then_some(base)
}

/// Total record size (head and body) of a message; the caller checks it
/// against `MAX_BODY` first.
#[cfg(test)]
pub(super) fn message_record_len(topic: &str, payload: &[u8]) -> usize {
    RECORD_HEAD + MESSAGE_FIXED + topic.len() + payload.len()
}

/// Append one message record to `out`. The caller has checked that the topic
/// fits a u16 and the body fits `MAX_BODY`.
pub(super) fn encode_message(out: &mut Vec<u8>, id: u64, topic: &str, payload: &[u8]) {
    let topic_len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
    let start = begin_record(out);
    out.push(KIND_MESSAGE);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&topic_len.to_le_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(payload);
    finish_record(out, start);
}

/// Append ack records for `ids` to `out` (several if there are many).
pub(super) fn encode_acks(out: &mut Vec<u8>, ids: &[u64]) {
    for chunk in ids.chunks(MAX_ACKS_PER_RECORD) {
        let start = begin_record(out);
        out.push(KIND_ACKS);
        for id in chunk {
            out.extend_from_slice(&id.to_le_bytes());
        }
        finish_record(out, start);
    }
}

fn begin_record(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.push(RECORD_MAGIC);
    out.extend_from_slice(&[0u8; 8]); // length and CRC, filled in by finish_record
    start
}

fn finish_record(out: &mut [u8], start: usize) {
    let body_start = start + RECORD_HEAD;
    let body_len = u32::try_from(out.len().saturating_sub(body_start)).unwrap_or(u32::MAX);
    let len_bytes = body_len.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len_bytes);
    crc.update(out.get(body_start..).unwrap_or_default());
    let crc = crc.finalize().to_le_bytes();
    if let Some(head) = out.get_mut(start + 1..body_start) {
        let (l, c) = head.split_at_mut(4);
        l.copy_from_slice(&len_bytes);
        c.copy_from_slice(&crc);
    }
}

/// A decoded record body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Body<'a> {
    /// A queued message.
    Message {
        id: u64,
        topic: &'a str,
        payload: &'a [u8],
    },
    /// Acknowledged ids, 8 bytes each (little endian).
    Acks(&'a [u8]),
}

impl Body<'_> {
    /// The ids of an ack record (none for a message).
    pub(super) fn ack_ids(&self) -> impl Iterator<Item = u64> + '_ {
        let bytes: &[u8] = match self {
            Body::Acks(b) => b,
            Body::Message { .. } => &[],
        };
        bytes
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
    }
}

/// One complete, valid record found in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record<'a> {
    /// Where it starts in the buffer.
    pub(super) offset: usize,
    /// Its total size (head and body).
    pub(super) len: usize,
    /// What it says.
    pub(super) body: Body<'a>,
}

/// The valid record starting exactly at `pos`, if there is one: magic,
/// bounded length inside the buffer, matching CRC and a well-formed body.
pub(super) fn record_at(buf: &[u8], pos: usize) -> Option<Record<'_>> {
    let head = buf.get(pos..pos.checked_add(RECORD_HEAD)?)?;
    let (&magic, rest) = head.split_first()?;
    if magic != RECORD_MAGIC {
        return None;
    }
    let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let crc = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
    let body_len = usize::try_from(u32::from_le_bytes(len_bytes)).ok()?;
    if body_len == 0 || body_len > MAX_BODY {
        return None;
    }
    let body_start = pos + RECORD_HEAD;
    let body = buf.get(body_start..body_start.checked_add(body_len)?)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&len_bytes);
    h.update(body);
    if h.finalize() != crc {
        return None;
    }
    Some(Record {
        offset: pos,
        len: RECORD_HEAD + body_len,
        body: decode_body(body)?,
    })
}

fn decode_body(body: &[u8]) -> Option<Body<'_>> {
    let (&kind, rest) = body.split_first()?;
    match kind {
        KIND_MESSAGE => {
            let id = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
            let topic_len = usize::from(u16::from_le_bytes(rest.get(8..10)?.try_into().ok()?));
            let topic = rest.get(10..10 + topic_len)?;
            let payload = rest.get(10 + topic_len..)?;
            let topic = std::str::from_utf8(topic).ok()?;
            Some(Body::Message { id, topic, payload })
        }
        KIND_ACKS if !rest.is_empty() && rest.len() % 8 == 0 => Some(Body::Acks(rest)),
        _ => None,
    }
}

/// What a scan finds, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Item<'a> {
    /// A complete, valid record.
    Record(Record<'a>),
    /// Bytes `from..to` hold no valid record (a torn write or corruption).
    /// `to` is the buffer's length when it is the tail.
    Damaged { from: usize, to: usize },
}

/// Every valid record in `buf` from `start`, resynchronising after damage:
/// after an invalid record the scan moves to the next offset where a valid
/// record starts, so one corrupt record costs only itself.
pub(super) struct Scan<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Scan<'a> {
    /// Scan `buf` starting at `start`.
    pub(super) fn new(buf: &'a [u8], start: usize) -> Self {
        Scan { buf, pos: start }
    }
}

impl<'a> Iterator for Scan<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        if let Some(rec) = record_at(self.buf, self.pos) {
            self.pos += rec.len;
            return Some(Item::Record(rec));
        }
        let from = self.pos;
        let mut p = from + 1;
        while let Some(found) = self
            .buf
            .get(p..)
            .and_then(|rest| rest.iter().position(|&b| b == RECORD_MAGIC).map(|i| p + i))
        {
            if record_at(self.buf, found).is_some() {
                self.pos = found;
                return Some(Item::Damaged { from, to: found });
            }
            p = found + 1;
        }
        self.pos = self.buf.len();
        Some(Item::Damaged {
            from,
            to: self.buf.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(buf: &[u8], start: usize) -> Vec<Item<'_>> {
        Scan::new(buf, start).collect()
    }

    #[test]
    fn header_round_trip_and_rejects_damage() {
        let h = encode_header(42);
        assert_eq!(decode_header(&h), Some(42));
        for i in 0..HEADER_LEN {
            let mut bad = h;
            bad[i] ^= 0x10;
            assert_eq!(decode_header(&bad), None, "flip at {i}");
        }
        assert_eq!(decode_header(&h[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn message_and_acks_round_trip() {
        let mut buf = Vec::new();
        encode_message(&mut buf, 7, "/a/b", b"hello");
        let first = buf.len();
        assert_eq!(first, message_record_len("/a/b", b"hello"));
        encode_acks(&mut buf, &[7, 9]);
        let items = records(&buf, 0);
        assert_eq!(items.len(), 2);
        let Item::Record(m) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(
            m.body,
            Body::Message {
                id: 7,
                topic: "/a/b",
                payload: b"hello"
            }
        );
        let Item::Record(a) = &items[1] else {
            panic!("{items:?}")
        };
        assert_eq!(a.offset, first);
        assert_eq!(a.body.ack_ids().collect::<Vec<_>>(), vec![7, 9]);
    }

    #[test]
    fn many_acks_split_into_bounded_records() {
        let ids: Vec<u64> = (0..(MAX_ACKS_PER_RECORD as u64 * 2 + 5)).collect();
        let mut buf = Vec::new();
        encode_acks(&mut buf, &ids);
        let got: Vec<u64> = Scan::new(&buf, 0)
            .flat_map(|i| match i {
                Item::Record(r) => r.body.ack_ids().collect::<Vec<_>>(),
                Item::Damaged { .. } => panic!("damaged"),
            })
            .collect();
        assert_eq!(got, ids);
    }

    #[test]
    fn scan_skips_a_corrupt_record_and_finds_the_next() {
        let mut buf = Vec::new();
        encode_message(&mut buf, 1, "t", b"one");
        let mid = buf.len();
        encode_message(&mut buf, 2, "t", b"two");
        let end_mid = buf.len();
        encode_message(&mut buf, 3, "t", b"three");
        buf[mid + RECORD_HEAD + 12] ^= 0x01;
        let items = records(&buf, 0);
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(
            items[1],
            Item::Damaged {
                from: mid,
                to: end_mid
            }
        );
    }

    #[test]
    fn oversized_length_is_corruption_not_an_allocation() {
        let mut buf = vec![RECORD_MAGIC];
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        assert_eq!(record_at(&buf, 0), None);
        assert_eq!(
            records(&buf, 0),
            vec![Item::Damaged {
                from: 0,
                to: buf.len()
            }]
        );
    }

    #[test]
    fn malformed_bodies_are_rejected_even_with_a_good_crc() {
        // (body, why it is bad)
        let cases: [(&[u8], &str); 5] = [
            (&[9, 0, 0], "unknown kind"),
            (&[KIND_ACKS], "ack record without ids"),
            (&[KIND_ACKS, 1, 2, 3], "ack ids not a multiple of 8"),
            (
                &[KIND_MESSAGE, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, b'a'],
                "topic past the end",
            ),
            (
                &[KIND_MESSAGE, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff],
                "topic not UTF-8",
            ),
        ];
        for (body, why) in cases {
            let mut buf = Vec::new();
            let start = begin_record(&mut buf);
            buf.extend_from_slice(body);
            finish_record(&mut buf, start);
            assert_eq!(record_at(&buf, 0), None, "{why}");
        }
    }
}
