//! Push-style streaming: an [`Encryptor`] and a [`Decryptor`] that hold at most one batch of
//! chunks, so objects of any size stream through bounded memory.

use crate::error::{Error, Result};
use crate::layout::RangePlan;
use crate::seal::{ObjectOpener, ObjectSealer, opened_len, sealed_len};

/// Default number of chunks sealed or opened together (one rayon batch).
pub const DEFAULT_BATCH_CHUNKS: usize = 8;

/// Streams plaintext in, ciphertext out. Holds at most `batch_chunks` chunks of plaintext.
///
/// Write [`Encryptor::header_bytes`] first, then everything [`Encryptor::push`] and
/// [`Encryptor::finish`] append. `finish` consumes the encryptor, so the final chunk cannot be
/// forgotten by a caller that wants its output.
#[derive(Debug)]
pub struct Encryptor {
    sealer: ObjectSealer,
    next: u64,
    pending: Vec<u8>,
    batch: usize,
}

impl Encryptor {
    /// Streams through `sealer` in batches of `batch_chunks` chunks (at least 1).
    #[must_use]
    pub fn new(sealer: ObjectSealer, batch_chunks: usize) -> Self {
        let batch = sealer.chunk_size().bytes() * batch_chunks.max(1);
        Self {
            sealer,
            next: 0,
            pending: Vec::new(),
            batch,
        }
    }

    /// The header, to be written before any chunk.
    #[must_use]
    pub fn header_bytes(&self) -> &[u8; crate::HEADER_LEN] {
        self.sealer.header_bytes()
    }

    /// Plaintext bytes consumed but not yet sealed (at most one batch).
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Consumes `input`, appending every chunk that is now known not to be final to `out`.
    /// Whole batches of `input` are sealed straight from the caller's slice, without a copy.
    ///
    /// # Errors
    /// [`Error::TooLarge`] once the object would exceed 2^32 chunks.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        while !input.is_empty() {
            if self.pending.len() == self.batch {
                // More input follows, so none of the buffered chunks is final.
                let pending = std::mem::take(&mut self.pending);
                self.seal(&pending, false, out)?;
                self.pending = pending;
                self.pending.clear();
            }
            if self.pending.is_empty() && input.len() > self.batch {
                let (now, rest) = input.split_at(self.batch);
                self.seal(now, false, out)?;
                input = rest;
                continue;
            }
            let take = (self.batch - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
        Ok(())
    }

    /// Seals what remains, ending with the final chunk.
    ///
    /// # Errors
    /// [`Error::TooLarge`] past the chunk limit.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        self.seal(&pending, true, out)
    }

    fn seal(&mut self, plaintext: &[u8], last_is_final: bool, out: &mut Vec<u8>) -> Result<()> {
        let chunk = self.sealer.chunk_size();
        let start = out.len();
        out.resize(start + sealed_len(chunk, plaintext.len()), 0);
        self.sealer
            .seal_chunks(self.next, plaintext, last_is_final, &mut out[start..])?;
        self.next += plaintext.len().div_ceil(chunk.bytes()).max(1) as u64;
        Ok(())
    }
}

/// Where a [`Decryptor`]'s input ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Read to the end of the object: the last chunk received is the final chunk.
    Object,
    /// Stop after chunk `last`, which is the object's final chunk iff `is_final`.
    Chunk { last: u64, is_final: bool },
}

/// Streams ciphertext chunks in, verified plaintext out. Holds at most one batch of ciphertext.
///
/// Plaintext is released only after its chunk's tag has been verified. A decryptor that has
/// returned an error keeps returning it. `finish` must be called: it opens the final chunk, and
/// it is where truncation is detected.
#[derive(Debug)]
pub struct Decryptor {
    opener: ObjectOpener,
    next: u64,
    end: End,
    pending: Vec<u8>,
    batch: usize,
    skip: usize,
    remaining: u64,
    received: u64,
    expected_max: u64,
    poisoned: Option<Error>,
}

impl Decryptor {
    /// Decrypts a whole object: feed it every byte after the header.
    #[must_use]
    pub fn new(opener: ObjectOpener, batch_chunks: usize) -> Self {
        Self::build(opener, batch_chunks, 0, End::Object, 0, u64::MAX, u64::MAX)
    }

    /// Decrypts a plaintext range: feed it exactly the bytes of `plan.ciphertext`.
    /// Output is trimmed to the requested range.
    #[must_use]
    pub fn for_range(opener: ObjectOpener, plan: &RangePlan, batch_chunks: usize) -> Self {
        let n = plan.chunks.end - plan.chunks.start;
        let end = match n {
            0 => End::Chunk {
                last: 0,
                is_final: false,
            },
            _ => End::Chunk {
                last: plan.chunks.end - 1,
                is_final: plan.final_included,
            },
        };
        let max = n * opener.chunk_size().sealed_bytes() as u64;
        Self::build(
            opener,
            batch_chunks,
            plan.chunks.start,
            end,
            plan.skip,
            plan.len,
            max,
        )
    }

    fn build(
        opener: ObjectOpener,
        batch_chunks: usize,
        first: u64,
        end: End,
        skip: usize,
        remaining: u64,
        expected_max: u64,
    ) -> Self {
        let batch = opener.chunk_size().sealed_bytes() * batch_chunks.max(1);
        Self {
            opener,
            next: first,
            end,
            pending: Vec::new(),
            batch,
            skip,
            remaining,
            received: 0,
            expected_max,
            poisoned: None,
        }
    }

    /// The verified header of the object being read.
    #[must_use]
    pub fn opener(&self) -> &ObjectOpener {
        &self.opener
    }

    /// Consumes ciphertext, appending verified plaintext of every chunk that is complete and
    /// known not to be final.
    ///
    /// # Errors
    /// [`Error::Authentication`], [`Error::TrailingData`] and the others of
    /// [`ObjectOpener::open_chunks`]; after one error, the same error forever.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let r = self.push_inner(input, out);
        self.poison(r)
    }

    /// Opens the remaining chunks, the last one as final if this stream reaches the object's end.
    ///
    /// # Errors
    /// [`Error::Truncated`] if the input stopped early, and everything [`Decryptor::push`] returns.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        if let Some(e) = self.poisoned.take() {
            return Err(e);
        }
        let pending = std::mem::take(&mut self.pending);
        if let End::Chunk { last, .. } = self.end {
            if self.remaining == 0 && self.expected_max == 0 {
                return Ok(()); // empty range: nothing to open
            }
            let sealed = self.opener.chunk_size().sealed_bytes();
            if self.next + pending.len().div_ceil(sealed) as u64 != last + 1 {
                return Err(Error::Truncated {
                    chunk: self.next + (pending.len() / sealed) as u64,
                });
            }
        }
        if pending.is_empty() {
            return Err(Error::Truncated { chunk: self.next });
        }
        let is_final = match self.end {
            End::Object => true,
            End::Chunk { is_final, .. } => is_final,
        };
        self.open(&pending, is_final, out)
    }

    fn push_inner(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.received = self.received.saturating_add(input.len() as u64);
        if self.received > self.expected_max {
            return Err(Error::TrailingData {
                extra: self.received - self.expected_max,
            });
        }
        while !input.is_empty() {
            if self.pending.len() == self.batch {
                // More input follows, so these are whole, non-final chunks.
                let pending = std::mem::take(&mut self.pending);
                self.open(&pending, false, out)?;
                self.pending = pending;
                self.pending.clear();
            }
            if self.pending.is_empty() && input.len() > self.batch {
                let (now, rest) = input.split_at(self.batch);
                self.open(now, false, out)?;
                input = rest;
                continue;
            }
            let take = (self.batch - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
        Ok(())
    }

    fn open(&mut self, ciphertext: &[u8], last_is_final: bool, out: &mut Vec<u8>) -> Result<()> {
        let chunk = self.opener.chunk_size();
        let start = out.len();
        out.resize(start + opened_len(chunk, ciphertext.len()), 0);
        if let Err(e) =
            self.opener
                .open_chunks(self.next, ciphertext, last_is_final, &mut out[start..])
        {
            out.truncate(start);
            return Err(e);
        }
        self.next += ciphertext.len().div_ceil(chunk.sealed_bytes()) as u64;
        // Trim to the requested range (only the first and last batch of a range read do work).
        let skip = self.skip.min(out.len() - start);
        out.drain(start..start + skip);
        self.skip -= skip;
        let keep = ((out.len() - start) as u64).min(self.remaining);
        out.truncate(start + keep as usize);
        self.remaining -= keep;
        Ok(())
    }

    fn poison(&mut self, r: Result<()>) -> Result<()> {
        if let Err(e) = &r {
            self.poisoned = Some(e.clone());
        }
        r
    }
}
