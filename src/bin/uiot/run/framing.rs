//! Frames on a serial byte stream: cutting the uplink stream into frames
//! ([`Framer`]) and encoding a downlink frame for the wire
//! ([`encode_downlink`]).
//!
//! Owns: the four framings and their rules (line, length prefix, idle gap,
//! raw streaming), the `max_frame` cut and its count.
//! Must not touch: any I/O, threads, clocks or the port (`serial` feeds the
//! bytes and says when the line went idle); the config file (its loader
//! builds a [`Framing`]).

use std::fmt;
use std::time::Duration;

/// The largest `max_frame` a [`Framer`] uses (1 MiB); larger values are
/// lowered to it, so no setting can make its one buffer unbounded.
pub const MAX_FRAME_LIMIT: usize = 1 << 20;

/// How the byte stream of a serial port is cut into frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A frame ends at `\n`; one `\r` before it is removed; empty lines are
    /// skipped.
    Line,
    /// A 2-byte big-endian length, then that many bytes. A zero length is
    /// an empty frame, delivered as such.
    Length,
    /// A frame is whatever arrived before the line was silent for this long.
    Idle(Duration),
    /// Transparent streaming: like `Idle`, and also a frame whenever
    /// `max_frame` bytes are buffered (so nothing is ever cut or lost).
    Raw(Duration),
}

impl Framing {
    /// The silence after which [`Framer::idle`] ends a frame, for the
    /// framings that have one.
    pub fn idle_time(&self) -> Option<Duration> {
        match self {
            Framing::Idle(d) | Framing::Raw(d) => Some(*d),
            Framing::Line | Framing::Length => None,
        }
    }
}

/// Where a length-prefixed frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LengthState {
    /// No byte of the prefix yet.
    Header0,
    /// The high byte of the prefix arrived.
    Header1(u8),
    /// In the body: bytes still to keep, then bytes to drop (the part of
    /// the frame past `max_frame`).
    Body { keep: usize, skip: usize },
}

/// Cuts incoming bytes into frames. Memory is bounded whatever the input:
/// one buffer of `max_frame + 1` bytes, allocated once; each frame handed
/// out is a copy of its exact size.
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    max_frame: usize,
    buf: Vec<u8>,
    /// The current frame was cut: its remaining bytes are dropped until the
    /// frame ends (`\n` or idle; `Length` counts them in `length`).
    discarding: bool,
    length: LengthState,
    cut: u64,
}

impl Framer {
    /// A framer for `framing` whose frames are at most `max_frame` bytes
    /// (clamped to 1..=[`MAX_FRAME_LIMIT`]).
    pub fn new(framing: Framing, max_frame: usize) -> Framer {
        let max_frame = max_frame.clamp(1, MAX_FRAME_LIMIT);
        Framer {
            framing,
            max_frame,
            buf: Vec::with_capacity(max_frame.saturating_add(1)),
            discarding: false,
            length: LengthState::Header0,
            cut: 0,
        }
    }

    /// How many frames were longer than `max_frame` and cut to it.
    pub fn cut(&self) -> u64 {
        self.cut
    }

    /// Drops a partial frame (the port closed mid-frame); the cut count
    /// stays.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.discarding = false;
        self.length = LengthState::Header0;
    }

    /// Takes `bytes` off the wire and appends each frame they complete to
    /// `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Vec<u8>>) {
        match self.framing {
            Framing::Line => self.push_line(bytes, out),
            Framing::Length => self.push_length(bytes, out),
            Framing::Idle(_) => self.push_idle(bytes, out),
            Framing::Raw(_) => self.push_raw(bytes, out),
        }
    }

    /// The line was silent for the idle time: for `Idle` and `Raw`, what is
    /// buffered is a frame. `Line` and `Length` ignore silence.
    pub fn idle(&mut self, out: &mut Vec<Vec<u8>>) {
        match self.framing {
            Framing::Idle(_) | Framing::Raw(_) => {
                self.discarding = false;
                if !self.buf.is_empty() {
                    out.push(self.take_frame());
                }
            }
            Framing::Line | Framing::Length => {}
        }
    }

    /// The buffered bytes as a frame of their own size; the buffer keeps
    /// its allocation.
    fn take_frame(&mut self) -> Vec<u8> {
        let frame = self.buf.clone();
        self.buf.clear();
        frame
    }

    /// Room left in the buffer before `max_frame`.
    fn room(&self) -> usize {
        self.max_frame.saturating_sub(self.buf.len())
    }

    /// Cuts the buffered frame to `max_frame`, counts it, hands it out and
    /// drops the rest of the frame as it comes.
    fn emit_cut(&mut self, out: &mut Vec<Vec<u8>>) {
        self.buf.truncate(self.max_frame);
        out.push(self.take_frame());
        self.cut = self.cut.saturating_add(1);
        self.discarding = true;
    }

    fn push_line(&mut self, bytes: &[u8], out: &mut Vec<Vec<u8>>) {
        for segment in bytes.split_inclusive(|&b| b == b'\n') {
            let (body, ends) = match segment.split_last() {
                Some((b'\n', body)) => (body, true),
                _ => (segment, false),
            };
            if !self.discarding {
                // One byte past max_frame may stay if it is a `\r`: the
                // line may end right after it, and the `\r` goes then.
                let limit = self.max_frame.saturating_add(1);
                let room = limit.saturating_sub(self.buf.len());
                let (keep, rest) = body.split_at(room.min(body.len()));
                self.buf.extend_from_slice(keep);
                let at_limit = self.buf.len() >= limit;
                if !rest.is_empty() || (at_limit && self.buf.last() != Some(&b'\r')) {
                    self.emit_cut(out);
                }
            }
            if ends {
                if self.discarding {
                    self.discarding = false;
                } else {
                    if self.buf.last() == Some(&b'\r') {
                        self.buf.pop();
                    }
                    if !self.buf.is_empty() {
                        out.push(self.take_frame());
                    }
                }
            }
        }
    }

    fn push_length(&mut self, mut bytes: &[u8], out: &mut Vec<Vec<u8>>) {
        while let Some((&first, rest)) = bytes.split_first() {
            match self.length {
                LengthState::Header0 => {
                    self.length = LengthState::Header1(first);
                    bytes = rest;
                }
                LengthState::Header1(high) => {
                    bytes = rest;
                    let len = usize::from(u16::from_be_bytes([high, first]));
                    let keep = len.min(self.max_frame);
                    let skip = len.saturating_sub(keep);
                    self.length = LengthState::Body { keep, skip };
                    if len == 0 {
                        self.length = LengthState::Header0;
                        out.push(Vec::new());
                    }
                }
                LengthState::Body { keep, skip } if keep > 0 => {
                    let (head, rest) = bytes.split_at(keep.min(bytes.len()));
                    bytes = rest;
                    self.buf.extend_from_slice(head);
                    let keep = keep.saturating_sub(head.len());
                    self.length = LengthState::Body { keep, skip };
                    if keep == 0 {
                        out.push(self.take_frame());
                        if skip > 0 {
                            self.cut = self.cut.saturating_add(1);
                        } else {
                            self.length = LengthState::Header0;
                        }
                    }
                }
                LengthState::Body { skip, .. } => {
                    let n = skip.min(bytes.len());
                    bytes = bytes.get(n..).unwrap_or_default();
                    let skip = skip.saturating_sub(n);
                    self.length = if skip == 0 {
                        LengthState::Header0
                    } else {
                        LengthState::Body { keep: 0, skip }
                    };
                }
            }
        }
    }

    fn push_idle(&mut self, bytes: &[u8], out: &mut Vec<Vec<u8>>) {
        if self.discarding || bytes.is_empty() {
            return;
        }
        let keep = self.room().min(bytes.len());
        let (head, rest) = bytes.split_at(keep);
        self.buf.extend_from_slice(head);
        if !rest.is_empty() {
            self.emit_cut(out);
        }
    }

    fn push_raw(&mut self, mut bytes: &[u8], out: &mut Vec<Vec<u8>>) {
        while !bytes.is_empty() {
            let keep = self.room().min(bytes.len());
            let (head, rest) = bytes.split_at(keep);
            self.buf.extend_from_slice(head);
            bytes = rest;
            if self.buf.len() >= self.max_frame {
                out.push(self.take_frame());
            }
        }
    }
}

/// A downlink payload too long for a 2-byte length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLong {
    /// The payload's length in bytes.
    pub len: usize,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payload of {} bytes is over the 65535 of a length prefix",
            self.len
        )
    }
}

impl std::error::Error for TooLong {}

/// The bytes to write for one downlink `payload`: `Length` framing puts the
/// 2-byte big-endian length before it (over 65535 bytes is [`TooLong`]);
/// every other framing puts `suffix` after it.
pub fn encode_downlink(
    framing: &Framing,
    payload: &[u8],
    suffix: &[u8],
) -> Result<Vec<u8>, TooLong> {
    match framing {
        Framing::Length => {
            let len = u16::try_from(payload.len()).map_err(|_| TooLong { len: payload.len() })?;
            let mut wire = Vec::with_capacity(payload.len().saturating_add(2));
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend_from_slice(payload);
            Ok(wire)
        }
        Framing::Line | Framing::Idle(_) | Framing::Raw(_) => {
            let mut wire = Vec::with_capacity(payload.len().saturating_add(suffix.len()));
            wire.extend_from_slice(payload);
            wire.extend_from_slice(suffix);
            Ok(wire)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const IDLE: Duration = Duration::from_millis(10);

    fn frames(framer: &mut Framer, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for c in chunks {
            framer.push(c, &mut out);
        }
        out
    }

    /// Feeds `input` byte by byte and in one piece; both must give the same.
    fn both_ways(framing: Framing, max: usize, input: &[u8]) -> (Vec<Vec<u8>>, u64) {
        let mut whole = Framer::new(framing, max);
        let a = frames(&mut whole, &[input]);
        let mut bytes = Framer::new(framing, max);
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let b = frames(&mut bytes, &chunks);
        assert_eq!(a, b, "byte-wise differs from whole for {input:?}");
        assert_eq!(whole.cut(), bytes.cut());
        (a, whole.cut())
    }

    fn v(items: &[&[u8]]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn line_splits_strips_cr_and_skips_empty() {
        let (out, cut) = both_ways(Framing::Line, 100, b"one\r\ntwo\n\n\r\nthree\r\npartial");
        assert_eq!(out, v(&[b"one", b"two", b"three"]));
        assert_eq!(cut, 0);
    }

    #[test]
    fn line_keeps_inner_cr_and_only_one_trailing_cr() {
        let (out, _) = both_ways(Framing::Line, 100, b"a\rb\r\r\n");
        assert_eq!(out, v(&[b"a\rb\r"]));
    }

    #[test]
    fn line_partial_is_completed_by_a_later_push() {
        let mut f = Framer::new(Framing::Line, 100);
        let out = frames(&mut f, &[b"hel", b"lo\r", b"\nwor", b"ld\n"]);
        assert_eq!(out, v(&[b"hello", b"world"]));
    }

    #[test]
    fn line_cut_keeps_head_and_drops_rest_of_line() {
        let (out, cut) = both_ways(Framing::Line, 4, b"abcdefgh\r\nxy\n123456789\nok\n");
        assert_eq!(out, v(&[b"abcd", b"xy", b"1234", b"ok"]));
        assert_eq!(cut, 2);
    }

    #[test]
    fn line_exactly_max_is_not_cut_with_or_without_cr() {
        let (out, cut) = both_ways(Framing::Line, 4, b"abcd\r\nefgh\nijkl\r\r\n");
        assert_eq!(out, v(&[b"abcd", b"efgh", b"ijkl"]));
        // "ijkl\r" + "\r" is 6 bytes before the strip: over max, so cut.
        assert_eq!(cut, 1);
    }

    #[test]
    fn line_one_over_max_is_cut() {
        let (out, cut) = both_ways(Framing::Line, 4, b"abcde\n");
        assert_eq!(out, v(&[b"abcd"]));
        assert_eq!(cut, 1);
    }

    #[test]
    fn line_ignores_idle() {
        let mut f = Framer::new(Framing::Line, 10);
        let mut out = frames(&mut f, &[b"abc"]);
        f.idle(&mut out);
        assert!(out.is_empty());
        f.push(b"\n", &mut out);
        assert_eq!(out, v(&[b"abc"]));
    }

    #[test]
    fn length_frames_including_empty() {
        let (out, cut) = both_ways(
            Framing::Length,
            100,
            b"\x00\x03abc\x00\x00\x00\x01z\x00\x02p",
        );
        assert_eq!(out, v(&[b"abc", b"", b"z"]));
        assert_eq!(cut, 0);
    }

    #[test]
    fn length_over_max_delivers_head_and_skips_rest() {
        let (out, cut) = both_ways(Framing::Length, 3, b"\x00\x05abcde\x00\x03xyz\x00\x04wxyz");
        assert_eq!(out, v(&[b"abc", b"xyz", b"wxy"]));
        assert_eq!(cut, 2);
    }

    #[test]
    fn length_big_declared_length_stays_bounded() {
        let mut f = Framer::new(Framing::Length, 16);
        let mut out = Vec::new();
        f.push(&[0xff, 0xff], &mut out);
        for _ in 0..65 {
            f.push(&[7u8; 1000], &mut out);
            assert!(f.buf.capacity() <= 17);
        }
        assert_eq!(out, vec![vec![7u8; 16]]);
        // 535 more bytes end the 65535-byte body; then a frame of its own.
        f.push(&[7u8; 535], &mut out);
        f.push(b"\x00\x01q", &mut out);
        assert_eq!(out.last().unwrap(), b"q");
        assert_eq!(f.cut(), 1);
    }

    #[test]
    fn idle_frames_end_on_idle_only() {
        let mut f = Framer::new(Framing::Idle(IDLE), 100);
        let mut out = frames(&mut f, &[b"ab\n", b"c"]);
        assert!(out.is_empty());
        f.idle(&mut out);
        f.idle(&mut out);
        f.push(b"d", &mut out);
        f.idle(&mut out);
        assert_eq!(out, v(&[b"ab\nc", b"d"]));
    }

    #[test]
    fn idle_cut_drops_until_idle() {
        let mut f = Framer::new(Framing::Idle(IDLE), 4);
        let mut out = frames(&mut f, &[b"abc", b"defg", b"hij"]);
        assert_eq!(out, v(&[b"abcd"]));
        f.idle(&mut out);
        assert_eq!(out.len(), 1, "the dropped tail is not a frame");
        f.push(b"wxyz", &mut out);
        f.idle(&mut out);
        assert_eq!(out, v(&[b"abcd", b"wxyz"]));
        assert_eq!(f.cut(), 1);
    }

    #[test]
    fn raw_emits_every_max_frame_and_on_idle() {
        let mut f = Framer::new(Framing::Raw(IDLE), 4);
        let mut out = frames(&mut f, &[b"abcdefghij"]);
        assert_eq!(out, v(&[b"abcd", b"efgh"]));
        f.idle(&mut out);
        assert_eq!(out, v(&[b"abcd", b"efgh", b"ij"]));
        assert_eq!(f.cut(), 0);
        let (bytewise, _) = both_ways(Framing::Raw(IDLE), 3, b"0123456789");
        assert_eq!(bytewise, v(&[b"012", b"345", b"678"]));
    }

    #[test]
    fn raw_keeps_every_byte_of_a_big_stream_in_bounded_memory() {
        let mut f = Framer::new(Framing::Raw(IDLE), 4096);
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut got = Vec::new();
        let mut out = Vec::new();
        for chunk in data.chunks(1000) {
            f.push(chunk, &mut out);
            assert!(f.buf.capacity() <= 4097);
            for frame in out.drain(..) {
                assert!(frame.len() <= 4096);
                got.extend_from_slice(&frame);
            }
        }
        f.idle(&mut out);
        for frame in out.drain(..) {
            got.extend_from_slice(&frame);
        }
        assert_eq!(got, data);
    }

    #[test]
    fn buffer_is_bounded_for_every_framing() {
        for framing in [
            Framing::Line,
            Framing::Length,
            Framing::Idle(IDLE),
            Framing::Raw(IDLE),
        ] {
            let mut f = Framer::new(framing, 32);
            let mut out = Vec::new();
            for i in 0..2000u32 {
                let junk: Vec<u8> = (0..97u32).map(|j| (i ^ j).to_le_bytes()[0] | 1).collect();
                f.push(&junk, &mut out);
                assert!(f.buf.capacity() <= 33, "{framing:?}");
                assert!(out.iter().all(|fr| fr.len() <= 32), "{framing:?}");
                out.clear();
            }
        }
    }

    #[test]
    fn clear_drops_a_partial_frame() {
        let mut f = Framer::new(Framing::Length, 10);
        let mut out = frames(&mut f, &[b"\x00\x05ab"]);
        f.clear();
        f.push(b"\x00\x01z", &mut out);
        assert_eq!(out, v(&[b"z"]));
    }

    #[test]
    fn max_frame_zero_means_one() {
        let (out, cut) = both_ways(Framing::Line, 0, b"ab\n");
        assert_eq!(out, v(&[b"a"]));
        assert_eq!(cut, 1);
    }

    #[test]
    fn huge_max_frame_is_clamped() {
        let f = Framer::new(Framing::Idle(IDLE), usize::MAX);
        assert_eq!(f.max_frame, MAX_FRAME_LIMIT);
        assert!(f.buf.capacity() <= MAX_FRAME_LIMIT + 1);
    }

    #[test]
    fn encode_length_prefix_and_suffix() {
        assert_eq!(
            encode_downlink(&Framing::Length, b"abc", b"\r\n").unwrap(),
            b"\x00\x03abc"
        );
        assert_eq!(
            encode_downlink(&Framing::Length, b"", b"\n").unwrap(),
            b"\x00\x00"
        );
        let max = vec![1u8; 65535];
        assert_eq!(
            encode_downlink(&Framing::Length, &max, b"").unwrap().len(),
            65537
        );
        let over = vec![1u8; 65536];
        assert_eq!(
            encode_downlink(&Framing::Length, &over, b""),
            Err(TooLong { len: 65536 })
        );
        assert_eq!(
            encode_downlink(&Framing::Line, b"on", b"\r\n").unwrap(),
            b"on\r\n"
        );
        assert_eq!(
            encode_downlink(&Framing::Idle(IDLE), b"x", b"").unwrap(),
            b"x"
        );
        assert_eq!(
            encode_downlink(&Framing::Raw(IDLE), &over, b"!")
                .unwrap()
                .len(),
            65537
        );
    }

    #[test]
    fn idle_time_only_for_idle_and_raw() {
        assert_eq!(Framing::Idle(IDLE).idle_time(), Some(IDLE));
        assert_eq!(Framing::Raw(IDLE).idle_time(), Some(IDLE));
        assert_eq!(Framing::Line.idle_time(), None);
        assert_eq!(Framing::Length.idle_time(), None);
    }
}
