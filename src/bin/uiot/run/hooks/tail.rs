//! The tail of a hook's stdout: a buffer that keeps the last `cap` bytes of
//! whatever is pushed into it, and says whether anything was dropped.
//!
//! Owns: the memory bound of a hook's captured output (the buffer never
//! holds, nor allocates room for, more than `cap` bytes).
//! Must not touch: pipes, threads, processes (that is `child`).

use std::collections::VecDeque;

/// The last `cap` bytes pushed, in order.
#[derive(Debug)]
pub(super) struct Tail {
    buf: VecDeque<u8>,
    cap: usize,
    cut: bool,
}

impl Tail {
    /// An empty tail keeping at most `cap` bytes. Allocates nothing yet.
    pub(super) fn new(cap: usize) -> Tail {
        Tail {
            buf: VecDeque::new(),
            cap,
            cut: false,
        }
    }

    /// Appends `chunk`, dropping the oldest bytes beyond `cap`.
    pub(super) fn push(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        if chunk.len() >= self.cap {
            // The chunk alone fills the buffer: keep its end only.
            let skip = chunk.len().saturating_sub(self.cap);
            self.cut |= skip > 0 || !self.buf.is_empty();
            self.buf.clear();
            let keep = chunk.get(skip..).unwrap_or_default();
            self.grow_to(keep.len());
            self.buf.extend(keep);
            return;
        }
        // chunk.len() < cap, so the overflow is less than buf.len().
        let overflow = self
            .buf
            .len()
            .saturating_add(chunk.len())
            .saturating_sub(self.cap);
        if overflow > 0 {
            self.buf.drain(..overflow);
            self.cut = true;
        }
        self.grow_to(self.buf.len().saturating_add(chunk.len()));
        self.buf.extend(chunk);
    }

    /// Makes room for `need` bytes in all, growing geometrically but never
    /// past `cap`.
    fn grow_to(&mut self, need: usize) {
        let have = self.buf.capacity();
        if need <= have {
            return;
        }
        let target = need.max(have.saturating_mul(2)).min(self.cap);
        self.buf
            .reserve_exact(target.saturating_sub(self.buf.len()));
    }

    /// Whether bytes were dropped so far.
    #[cfg(test)]
    pub(super) fn cut(&self) -> bool {
        self.cut
    }

    /// The bytes kept, oldest first, and whether any were dropped.
    pub(super) fn finish(self) -> (Vec<u8>, bool) {
        (Vec::from(self.buf), self.cut)
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(cap: usize, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut t = Tail::new(cap);
        for c in chunks {
            t.push(c);
            assert!(t.buf.len() <= cap);
        }
        t.finish()
    }

    #[test]
    fn hooks_tail_keeps_everything_below_cap() {
        assert_eq!(pushed(8, &[b"abc", b"de"]), (b"abcde".to_vec(), false));
        assert_eq!(pushed(5, &[b"abc", b"de"]), (b"abcde".to_vec(), false));
        assert_eq!(pushed(5, &[b"abcde"]), (b"abcde".to_vec(), false));
        assert_eq!(pushed(5, &[]), (Vec::new(), false));
    }

    #[test]
    fn hooks_tail_keeps_the_end() {
        assert_eq!(pushed(4, &[b"abc", b"de"]), (b"bcde".to_vec(), true));
        assert_eq!(pushed(4, &[b"abcdefg"]), (b"defg".to_vec(), true));
        assert_eq!(pushed(4, &[b"ab", b"cdef"]), (b"cdef".to_vec(), true));
        assert_eq!(
            pushed(4, &[b"a", b"b", b"c", b"d", b"e"]),
            (b"bcde".to_vec(), true)
        );
        assert_eq!(pushed(0, &[b"a"]), (Vec::new(), true));
        assert_eq!(pushed(0, &[]), (Vec::new(), false));
    }

    #[test]
    fn hooks_tail_never_allocates_past_cap() {
        let cap = 64 * 1024 + 3;
        let mut t = Tail::new(cap);
        let chunk: Vec<u8> = (0..8192u32)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        for _ in 0..2000 {
            t.push(&chunk);
            assert!(t.capacity() <= cap, "capacity {} > {cap}", t.capacity());
        }
        t.push(b"END");
        assert!(t.cut());
        let (out, cut) = t.finish();
        assert!(cut);
        assert_eq!(out.len(), cap);
        assert!(out.ends_with(b"END"));
    }
}
