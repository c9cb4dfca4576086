//! Size arithmetic and random-access planning (FORMAT.md §5–§6). Pure functions, no keys.

use std::ops::Range;

use crate::aead::TAG_LEN;
use crate::error::{Error, Result};
use crate::header::HEADER_LEN;

/// Smallest allowed chunk size exponent (64 KiB).
pub const CHUNK_LOG2_MIN: u8 = 16;
/// Largest allowed chunk size exponent (16 MiB).
pub const CHUNK_LOG2_MAX: u8 = 24;
/// Default chunk size exponent (1 MiB), chosen by `benches/format.rs`; see FORMAT.md §8.
pub const CHUNK_LOG2_DEFAULT: u8 = 20;
/// Most chunks one object may have: chunk indices are 32-bit (FORMAT.md §7).
pub const MAX_CHUNKS: u64 = 1 << 32;

/// A plaintext chunk size: a power of two from 64 KiB to 16 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkSize(u8);

impl ChunkSize {
    /// The default chunk size (1 MiB).
    pub const DEFAULT: Self = Self(CHUNK_LOG2_DEFAULT);

    /// The chunk size `2^log2`.
    ///
    /// # Errors
    /// [`Error::InvalidChunkSize`] unless `16 <= log2 <= 24`.
    pub fn from_log2(log2: u8) -> Result<Self> {
        if (CHUNK_LOG2_MIN..=CHUNK_LOG2_MAX).contains(&log2) {
            Ok(Self(log2))
        } else {
            Err(Error::InvalidChunkSize(log2))
        }
    }

    /// The chunk size of `bytes` bytes, which must be an allowed power of two.
    ///
    /// # Errors
    /// [`Error::InvalidChunkSize`] otherwise.
    pub fn from_bytes(bytes: u64) -> Result<Self> {
        let log2 = bytes.trailing_zeros();
        if bytes.is_power_of_two() && log2 <= u32::from(u8::MAX) {
            Self::from_log2(log2 as u8)
        } else {
            Err(Error::InvalidChunkSize(0))
        }
    }

    /// Every allowed chunk size, smallest first.
    pub fn all() -> impl Iterator<Item = Self> {
        (CHUNK_LOG2_MIN..=CHUNK_LOG2_MAX).map(Self)
    }

    /// The exponent.
    #[must_use]
    pub fn log2(self) -> u8 {
        self.0
    }

    /// Plaintext bytes per chunk.
    #[must_use]
    pub fn bytes(self) -> usize {
        1 << self.0
    }

    /// Ciphertext bytes per full chunk (chunk + tag).
    #[must_use]
    pub fn sealed_bytes(self) -> usize {
        self.bytes() + TAG_LEN
    }
}

impl Default for ChunkSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The shape of one object: plaintext length and chunk size. Everything else follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    chunk: ChunkSize,
    plaintext_len: u64,
}

impl Layout {
    /// The largest plaintext length: `MAX_CHUNKS` full chunks.
    #[must_use]
    pub fn max_plaintext_len(chunk: ChunkSize) -> u64 {
        MAX_CHUNKS * chunk.bytes() as u64
    }

    /// The layout of a `plaintext_len`-byte object.
    ///
    /// # Errors
    /// [`Error::TooLarge`] above [`Layout::max_plaintext_len`].
    pub fn for_plaintext(chunk: ChunkSize, plaintext_len: u64) -> Result<Self> {
        if plaintext_len > Self::max_plaintext_len(chunk) {
            return Err(Error::TooLarge {
                what: "more than 2^32 chunks",
            });
        }
        Ok(Self {
            chunk,
            plaintext_len,
        })
    }

    /// The layout of an object whose whole ciphertext (header included) is `ciphertext_len` bytes.
    /// This is how `head` learns the plaintext size without reading the object.
    ///
    /// # Errors
    /// [`Error::InvalidCiphertextLength`] if no plaintext length maps to it (for example a
    /// truncated tag, or an empty chunk after full ones), [`Error::TooLarge`] past the limits.
    pub fn for_ciphertext(chunk: ChunkSize, ciphertext_len: u64) -> Result<Self> {
        let invalid = Error::InvalidCiphertextLength(ciphertext_len);
        let body = ciphertext_len
            .checked_sub(HEADER_LEN as u64)
            .ok_or(invalid.clone())?;
        let (c, t) = (chunk.bytes() as u64, TAG_LEN as u64);
        let (k, r) = (body / (c + t), body % (c + t));
        let plaintext_len = match r {
            0 if k > 0 => k * c,
            r if r == t && k == 0 => 0,
            r if r > t => k * c + (r - t),
            _ => return Err(invalid),
        };
        Self::for_plaintext(chunk, plaintext_len)
    }

    /// The chunk size.
    #[must_use]
    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk
    }

    /// Plaintext length in bytes.
    #[must_use]
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Number of chunks: one for an empty object, otherwise `ceil(len / chunk)`.
    #[must_use]
    pub fn chunk_count(&self) -> u64 {
        self.plaintext_len
            .div_ceil(self.chunk.bytes() as u64)
            .max(1)
    }

    /// Index of the final chunk.
    #[must_use]
    pub fn final_index(&self) -> u64 {
        self.chunk_count() - 1
    }

    /// Total ciphertext length, header included.
    #[must_use]
    pub fn ciphertext_len(&self) -> u64 {
        HEADER_LEN as u64 + self.plaintext_len + self.chunk_count() * TAG_LEN as u64
    }

    /// Ciphertext offset of chunk `index` (from the start of the object). Saturates at
    /// `u64::MAX` for indices no object can have.
    #[must_use]
    pub fn chunk_offset(&self, index: u64) -> u64 {
        index
            .saturating_mul(self.chunk.sealed_bytes() as u64)
            .saturating_add(HEADER_LEN as u64)
    }

    /// The bytes to fetch, and the chunks to open, to read plaintext `range`.
    ///
    /// # Errors
    /// [`Error::RangeOutOfBounds`] if `range` is reversed or ends past the object.
    pub fn plan(&self, range: Range<u64>) -> Result<RangePlan> {
        if range.start > range.end || range.end > self.plaintext_len {
            return Err(Error::RangeOutOfBounds {
                start: range.start,
                end: range.end,
                len: self.plaintext_len,
            });
        }
        let c = self.chunk.bytes() as u64;
        if range.is_empty() {
            return Ok(RangePlan {
                chunks: 0..0,
                ciphertext: 0..0,
                skip: 0,
                len: 0,
                final_included: false,
            });
        }
        let first = range.start / c;
        let last = (range.end - 1) / c;
        let end = (self.chunk_offset(last + 1)).min(self.ciphertext_len());
        Ok(RangePlan {
            chunks: first..last + 1,
            ciphertext: self.chunk_offset(first)..end,
            skip: (range.start - first * c) as usize,
            len: range.end - range.start,
            final_included: last == self.final_index(),
        })
    }
}

/// What a plaintext range read needs: the header (always `0..HEADER_LEN`) plus these chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    /// Chunk indices to open (empty for an empty range).
    pub chunks: Range<u64>,
    /// Ciphertext byte span holding exactly those chunks (offsets from the object start).
    pub ciphertext: Range<u64>,
    /// Plaintext bytes to skip at the start of the first chunk.
    pub skip: usize,
    /// Plaintext bytes to return.
    pub len: u64,
    /// Whether the last chunk opened is the object's final chunk (opened with the final flag).
    pub final_included: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_a_bijection_near_chunk_edges() {
        for chunk in [ChunkSize(16), ChunkSize(20)] {
            let c = chunk.bytes() as u64;
            for p in [0, 1, c - 1, c, c + 1, 2 * c, 3 * c + 7, 10 * c] {
                let l = Layout::for_plaintext(chunk, p).unwrap();
                let back = Layout::for_ciphertext(chunk, l.ciphertext_len()).unwrap();
                assert_eq!(back.plaintext_len(), p);
            }
        }
    }

    #[test]
    fn invalid_ciphertext_lengths() {
        let chunk = ChunkSize(16);
        let (c, t, h) = (chunk.bytes() as u64, TAG_LEN as u64, HEADER_LEN as u64);
        for bad in [
            0,
            h - 1,
            h,
            h + t - 1,
            h + c + t + 1,
            h + c + t + t,
            h + c + 2 * t - 1,
        ] {
            assert!(Layout::for_ciphertext(chunk, bad).is_err(), "{bad}");
        }
        // Exhaustively: every length maps back to itself or is rejected.
        for s in 0..(h + 3 * (c + t) + 40) {
            if let Ok(l) = Layout::for_ciphertext(chunk, s) {
                assert_eq!(l.ciphertext_len(), s);
            }
        }
    }

    #[test]
    fn limits_at_the_edge() {
        for chunk in ChunkSize::all() {
            let max = Layout::max_plaintext_len(chunk);
            let l = Layout::for_plaintext(chunk, max).unwrap();
            assert_eq!(l.chunk_count(), MAX_CHUNKS);
            assert_eq!(l.final_index(), MAX_CHUNKS - 1);
            assert_eq!(
                Layout::for_ciphertext(chunk, l.ciphertext_len()).unwrap(),
                l
            );
            assert!(matches!(
                Layout::for_plaintext(chunk, max + 1),
                Err(Error::TooLarge { .. })
            ));
            let over = l.ciphertext_len() + TAG_LEN as u64 + 1;
            assert!(Layout::for_ciphertext(chunk, over).is_err());
        }
        assert!(Layout::for_ciphertext(ChunkSize(24), u64::MAX).is_err());
    }

    #[test]
    fn plan_edges() {
        let chunk = ChunkSize(16);
        let c = chunk.bytes() as u64;
        let l = Layout::for_plaintext(chunk, 3 * c + 7).unwrap();
        let p = l.plan(c - 1..c + 1).unwrap();
        assert_eq!(p.chunks, 0..2);
        assert_eq!(p.skip as u64, c - 1);
        assert!(!p.final_included);
        let p = l.plan(3 * c + 6..3 * c + 7).unwrap();
        assert_eq!(p.chunks, 3..4);
        assert!(p.final_included);
        assert_eq!(p.ciphertext.end, l.ciphertext_len());
        assert!(l.plan(0..3 * c + 8).is_err());
        assert_eq!(l.plan(5..5).unwrap().chunks, 0..0);
    }
}
