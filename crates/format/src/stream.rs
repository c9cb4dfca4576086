//! Push-style streaming: an [`Encryptor`] and a [`Decryptor`] that hold back at most one batch of
//! chunks, so objects of any size stream through bounded memory.
//!
//! Both seal or open whole chunks straight from the caller's slices whenever a push brings
//! enough of them to keep the rayon pool busy; only what is left over (at least the last chunk
//! seen, which may turn out to be the final one) is copied and held back. Input that arrives in
//! small pieces is gathered into full batches.

use crate::error::{Error, Result};
use crate::layout::RangePlan;
use crate::seal::{ObjectOpener, ObjectSealer, extend_sealed_layout, opened_len, sealed_len};

/// Default largest number of chunks sealed or opened together (one parallel rayon call), and
/// so the most a stream holds back.
pub const DEFAULT_BATCH_CHUNKS: usize = 8;

/// What a push does next, given `held` bytes held back and `input` more bytes, in `unit`s of a
/// chunk (plaintext for sealing, sealed for opening). `None`: hold all of `input` back. Otherwise
/// `(fill, direct)`: move `fill` bytes of `input` to the held bytes, which then are whole units,
/// and process those together with the next `direct` bytes of `input` (whole units, read in
/// place). Every unit processed is followed by at least one more byte, so none is final.
///
/// Work starts once a whole batch is known not to be final, or once `input` itself holds such a
/// unit and, with the held ones, there is one for every pool thread (at most `batch`). So input
/// arriving in pieces smaller than a chunk is gathered into full batches (one pool wake-up per
/// batch), while bigger pieces are processed in place and only what is left of each (at least
/// its last unit, which may be final) is copied. Whatever is held back fits in one batch: when
/// this returns `None`, `held + input` is at most `batch` units.
///
/// With `continued`, the caller promises that more input follows `input`, so a unit that ends
/// exactly at the end of `input` is not final either and need not be held back.
fn next_step(
    unit: usize,
    batch: usize,
    held: usize,
    input: usize,
    continued: bool,
) -> Option<(usize, usize)> {
    if input == 0 {
        return None;
    }
    let ready = (held + input - usize::from(!continued)) / unit;
    let held_units = held.div_ceil(unit);
    let threads = batch.min(rayon::current_num_threads()).max(1);
    // A continued push has nothing to gain by waiting: whatever it completes is not final, so
    // it is sealed at once (a held partial chunk that it completes included).
    let in_place = if continued {
        ready > 0 && ready >= held_units
    } else {
        ready > held_units && ready >= threads
    };
    if ready < batch && !in_place {
        return None;
    }
    Some((
        held_units * unit - held,
        (ready.min(batch) - held_units) * unit,
    ))
}

/// Appends `bytes` to `held`, never growing its buffer past `max` bytes.
fn hold(held: &mut Vec<u8>, bytes: &[u8], max: usize) {
    let need = held.len() + bytes.len();
    if need > held.capacity() {
        let cap = need.max(held.capacity() * 2).min(max).max(need);
        held.reserve_exact(cap - held.len());
    }
    held.extend_from_slice(bytes);
}

/// Streams plaintext in, ciphertext out. Holds back at most `batch_chunks` chunks of plaintext;
/// whole chunks are sealed straight from the caller's slices when a push brings enough of them
/// (see the module documentation), up to `batch_chunks` chunks per parallel call.
///
/// Write [`Encryptor::header_bytes`] first, then everything [`Encryptor::push`] and
/// [`Encryptor::finish`] append. `finish` consumes the encryptor, so the final chunk cannot be
/// forgotten by a caller that wants its output.
///
/// [`Encryptor::push_slice`] and [`Encryptor::finish_slice`] do the same into a caller-owned
/// buffer sized by [`Encryptor::max_output_len`] and [`Encryptor::finish_len`]; a caller that
/// reuses that buffer saves the pass over memory a `Vec` needs before ciphertext can be written
/// into it.
#[derive(Debug)]
pub struct Encryptor {
    sealer: ObjectSealer,
    next: u64,
    pending: Vec<u8>,
    batch_chunks: usize,
}

impl Encryptor {
    /// Streams through `sealer`, sealing up to `batch_chunks` chunks (at least 1) per parallel
    /// call.
    #[must_use]
    pub fn new(sealer: ObjectSealer, batch_chunks: usize) -> Self {
        Self {
            sealer,
            next: 0,
            pending: Vec::new(),
            batch_chunks: batch_chunks.max(1),
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

    /// The most [`Encryptor::push`] or [`Encryptor::push_slice`] emit for `input_len` more bytes
    /// of input: every whole chunk that is followed by at least one more byte. (Fewer are
    /// emitted while input is being gathered into a batch.)
    #[must_use]
    pub fn max_output_len(&self, input_len: usize) -> usize {
        let chunk = self.sealer.chunk_size();
        match input_len {
            0 => 0,
            n => (self.pending.len() + n - 1) / chunk.bytes() * chunk.sealed_bytes(),
        }
    }

    /// Exactly how many bytes [`Encryptor::finish`] or [`Encryptor::finish_slice`] emit.
    #[must_use]
    pub fn finish_len(&self) -> usize {
        sealed_len(self.sealer.chunk_size(), self.pending.len())
    }

    /// Consumes `input`, appending sealed chunks that are known not to be final to `out` (at
    /// most [`Encryptor::max_output_len`] bytes).
    ///
    /// # Errors
    /// [`Error::TooLarge`] once the object would exceed 2^32 chunks. `out` is then as it was
    /// before the call, and the object cannot be completed.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let origin = out.len();
        let chunk = self.sealer.chunk_size();
        let (c, batch) = (chunk.bytes(), self.batch_chunks);
        while let Some((fill, direct)) = next_step(c, batch, self.pending.len(), input.len(), false)
        {
            hold(&mut self.pending, &input[..fill], batch * c);
            let (now, rest) = input[fill..].split_at(direct);
            let start = out.len();
            let r = if rayon::current_num_threads() == 1 && !now.is_empty() {
                // One thread: the held chunks are sealed out of place; `now` is laid out in
                // `out` and sealed there. That copy is the one pass over `out` before sealing
                // (instead of a zero-fill), and sealing in place is the cheaper seal.
                let held_len = sealed_len(chunk, self.pending.len());
                let held_len = if self.pending.is_empty() { 0 } else { held_len };
                out.resize(start + held_len, 0);
                let held_chunks = (self.pending.len() / c) as u64;
                self.seal_held_and(&[], &mut out[start..]).and_then(|_| {
                    extend_sealed_layout(out, chunk, now);
                    self.sealer.seal_chunks_in_place(
                        self.next + held_chunks,
                        &mut out[start + held_len..],
                        false,
                    )
                })
            } else {
                // Several threads: a serial copy would hold them up; zero-fill (cheaper than a
                // copy) and seal out of place in parallel.
                out.resize(start + sealed_len(chunk, self.pending.len() + now.len()), 0);
                self.seal_held_and(now, &mut out[start..]).map(drop)
            };
            if let Err(e) = r {
                out.truncate(origin);
                return Err(e);
            }
            self.advance(now.len());
            input = rest;
        }
        hold(&mut self.pending, input, batch * c);
        Ok(())
    }

    /// Like [`Encryptor::push`], into the start of a caller-owned `out` of at least
    /// [`Encryptor::max_output_len`]`(input.len())` bytes, which need not be zeroed and can be
    /// reused from one call to the next. Returns the bytes written.
    ///
    /// # Errors
    /// [`Error::Usage`] if `out` is too short (nothing is consumed), [`Error::TooLarge`] past the
    /// chunk limit.
    pub fn push_slice(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        self.push_slice_inner(input, out, false)
    }

    /// The most [`Encryptor::push_slice_continued`] emits for `input_len` more bytes: every
    /// whole chunk, the held ones included.
    #[must_use]
    pub fn max_output_len_continued(&self, input_len: usize) -> usize {
        let chunk = self.sealer.chunk_size();
        (self.pending.len() + input_len) / chunk.bytes() * chunk.sealed_bytes()
    }

    /// Like [`Encryptor::push_slice`] for a caller that knows more input follows `input` (at
    /// least one more byte before [`Encryptor::finish`]): a chunk that ends exactly at the end of
    /// `input` is then known not to be final and is sealed now instead of being copied and held
    /// back. A caller that pushes whole chunks this way copies nothing. `out` needs at least
    /// [`Encryptor::max_output_len_continued`]`(input.len())` bytes.
    ///
    /// Breaking the promise (calling [`Encryptor::finish`] with nothing more pushed after input
    /// that ended on a chunk boundary) cannot produce an object: no chunk is left to be sealed
    /// as the final one, and `finish` fails with [`Error::Usage`].
    ///
    /// # Errors
    /// As [`Encryptor::push_slice`].
    pub fn push_slice_continued(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        self.push_slice_inner(input, out, true)
    }

    fn push_slice_inner(
        &mut self,
        mut input: &[u8],
        out: &mut [u8],
        continued: bool,
    ) -> Result<usize> {
        let most = if continued {
            self.max_output_len_continued(input.len())
        } else {
            self.max_output_len(input.len())
        };
        if out.len() < most {
            return Err(Error::Usage("output buffer too short"));
        }
        let (c, batch) = (self.sealer.chunk_size().bytes(), self.batch_chunks);
        let mut written = 0;
        while let Some((fill, direct)) =
            next_step(c, batch, self.pending.len(), input.len(), continued)
        {
            hold(&mut self.pending, &input[..fill], batch * c);
            let (now, rest) = input[fill..].split_at(direct);
            written += self.seal_held_and(now, &mut out[written..])?;
            self.advance(now.len());
            input = rest;
        }
        hold(&mut self.pending, input, batch * c);
        Ok(written)
    }

    /// Seals what remains, ending with the final chunk ([`Encryptor::finish_len`] bytes).
    ///
    /// # Errors
    /// [`Error::TooLarge`] past the chunk limit; `out` is then as it was.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.resize(start + self.finish_len(), 0);
        let r = self.finish_slice(&mut out[start..]);
        if r.is_err() {
            out.truncate(start);
        }
        r.map(drop)
    }

    /// Like [`Encryptor::finish`], into the start of a caller-owned `out` of at least
    /// [`Encryptor::finish_len`] bytes. Returns the bytes written.
    ///
    /// # Errors
    /// [`Error::Usage`] if `out` is too short, [`Error::TooLarge`] past the chunk limit.
    pub fn finish_slice(self, out: &mut [u8]) -> Result<usize> {
        let len = self.finish_len();
        let out = out
            .get_mut(..len)
            .ok_or(Error::Usage("output buffer too short"))?;
        self.sealer
            .seal_chunks(self.next, &self.pending, true, out)?;
        Ok(len)
    }

    /// Seals the held chunks (whole, not final) and then `direct` (whole, non-final chunks;
    /// possibly none), in parallel, into the start of `out`. Returns the bytes written.
    fn seal_held_and(&self, direct: &[u8], out: &mut [u8]) -> Result<usize> {
        let chunk = self.sealer.chunk_size();
        let held_len = self.pending.len() / chunk.bytes() * chunk.sealed_bytes();
        let direct_len = direct.len() / chunk.bytes() * chunk.sealed_bytes();
        let (held_out, rest) = out.split_at_mut(held_len);
        let direct_out = &mut rest[..direct_len];
        let (sealer, next, held) = (&self.sealer, self.next, &self.pending);
        let held_chunks = (held.len() / chunk.bytes()) as u64;
        match (held.is_empty(), direct.is_empty()) {
            (true, true) => {}
            (false, true) => sealer.seal_chunks(next, held, false, held_out)?,
            (true, false) => sealer.seal_chunks(next, direct, false, direct_out)?,
            (false, false) => {
                let (a, b) = rayon::join(
                    || sealer.seal_chunks(next, held, false, held_out),
                    || sealer.seal_chunks(next + held_chunks, direct, false, direct_out),
                );
                a.and(b)?;
            }
        }
        Ok(held_len + direct_len)
    }

    /// Counts the held chunks and `direct` more bytes as sealed, and empties the held buffer.
    fn advance(&mut self, direct: usize) {
        let c = self.sealer.chunk_size().bytes();
        self.next += ((self.pending.len() + direct) / c) as u64;
        self.pending.clear();
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

/// Streams ciphertext chunks in, verified plaintext out. Holds back at most `batch_chunks`
/// sealed chunks of ciphertext; whole chunks are opened straight from the caller's slices when a
/// push brings enough of them (see the module documentation), up to `batch_chunks` chunks per
/// parallel call.
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
    batch_chunks: usize,
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
        let n = plan.chunks.end.saturating_sub(plan.chunks.start);
        let end = match n {
            0 => End::Chunk {
                last: 0,
                is_final: false,
            },
            _ => End::Chunk {
                last: plan.chunks.end.saturating_sub(1),
                is_final: plan.final_included,
            },
        };
        let max = n.saturating_mul(opener.chunk_size().sealed_bytes() as u64);
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
        Self {
            opener,
            next: first,
            end,
            pending: Vec::new(),
            batch_chunks: batch_chunks.max(1),
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

    /// Consumes ciphertext, appending the verified plaintext of chunks that are complete and
    /// known not to be final. The others (at least the last chunk seen, which may be final) are
    /// held back.
    ///
    /// # Errors
    /// [`Error::Authentication`], [`Error::TrailingData`] and the others of
    /// [`ObjectOpener::open_chunks`]; after one error, the same error forever.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let r = self.push_inner(input, out, false);
        self.poison(r)
    }

    /// Like [`Decryptor::push`] for a caller that knows more ciphertext follows `input` (at
    /// least one more byte before [`Decryptor::finish`]): a chunk that ends exactly at the end of
    /// `input` is then known not to be final and is opened now instead of being copied and held
    /// back. A caller that pushes whole sealed chunks this way copies no ciphertext.
    ///
    /// Breaking the promise (finishing right after input that ended on a chunk boundary) opens
    /// that chunk as not final: a final chunk then fails to authenticate, so the mistake cannot
    /// release plaintext the object does not hold.
    ///
    /// # Errors
    /// As [`Decryptor::push`].
    pub fn push_continued(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let r = self.push_inner(input, out, true);
        self.poison(r)
    }

    /// Sealed bytes consumed but not yet opened (at most one batch).
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.pending.len()
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
        self.open(&pending, is_final, out)?;
        if let End::Chunk { last, .. } = self.end
            && self.remaining != 0
        {
            // Every chunk verified, yet they hold less plaintext than the plan promised: the
            // object is shorter than the size the plan was made from (a backend that reported
            // one length and served fewer bytes). Never report a short range as complete.
            return Err(Error::Truncated { chunk: last });
        }
        Ok(())
    }

    fn push_inner(&mut self, mut input: &[u8], out: &mut Vec<u8>, continued: bool) -> Result<()> {
        self.received = self.received.saturating_add(input.len() as u64);
        if self.received > self.expected_max {
            return Err(Error::TrailingData {
                extra: self.received - self.expected_max,
            });
        }
        let (s, batch) = (self.opener.chunk_size().sealed_bytes(), self.batch_chunks);
        while let Some((fill, direct)) =
            next_step(s, batch, self.pending.len(), input.len(), continued)
        {
            hold(&mut self.pending, &input[..fill], batch * s);
            let (now, rest) = input[fill..].split_at(direct);
            self.open_held_and(now, out)?;
            input = rest;
        }
        hold(&mut self.pending, input, batch * s);
        Ok(())
    }

    /// Opens the held chunks (whole, not final) and then `direct` (whole, non-final sealed
    /// chunks; possibly none), in parallel, appending their verified plaintext to `out`. On error
    /// `out` is as it was.
    fn open_held_and(&mut self, direct: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let chunk = self.opener.chunk_size();
        let s = chunk.sealed_bytes();
        let held_len = self.pending.len() / s * chunk.bytes();
        let direct_len = direct.len() / s * chunk.bytes();
        let start = out.len();
        out.resize(start + held_len + direct_len, 0);
        let (held_out, direct_out) = out[start..].split_at_mut(held_len);
        let (opener, next, held) = (&self.opener, self.next, &self.pending);
        let held_chunks = (held.len() / s) as u64;
        let r = match (held.is_empty(), direct.is_empty()) {
            (true, true) => Ok(()),
            (false, true) => opener.open_chunks(next, held, false, held_out),
            (true, false) => opener.open_chunks(next, direct, false, direct_out),
            (false, false) => {
                let (a, b) = rayon::join(
                    || opener.open_chunks(next, held, false, held_out),
                    || opener.open_chunks(next + held_chunks, direct, false, direct_out),
                );
                a.and(b)
            }
        };
        if let Err(e) = r {
            // open_chunks zeroed the output of whichever call failed; the other's is verified.
            out.truncate(start);
            return Err(e);
        }
        self.next += ((self.pending.len() + direct.len()) / s) as u64;
        self.pending.clear();
        self.trim(start, out);
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
        self.trim(start, out);
        Ok(())
    }

    /// Trims the plaintext just appended at `out[start..]` to the requested range (only the
    /// first and last calls of a range read do any work).
    fn trim(&mut self, start: usize, out: &mut Vec<u8>) {
        let skip = self.skip.min(out.len() - start);
        out.drain(start..start + skip);
        self.skip -= skip;
        let keep = ((out.len() - start) as u64).min(self.remaining);
        out.truncate(start + keep as usize);
        self.remaining -= keep;
    }

    fn poison(&mut self, r: Result<()>) -> Result<()> {
        if let Err(e) = &r {
            self.poisoned = Some(e.clone());
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aead::TAG_LEN;
    use crate::header::HEADER_LEN;
    use crate::keys::{DataKey, DataKeyId, ObjectContext, RepositoryId, Salt};
    use crate::layout::{ChunkSize, Layout};

    const C: usize = 1 << 16;
    const S: usize = C + TAG_LEN;

    fn chunk() -> ChunkSize {
        ChunkSize::from_log2(16).unwrap()
    }

    fn ctx() -> ObjectContext<'static> {
        ObjectContext::bound(RepositoryId([1; 16]), "stream/object")
    }

    fn sealer() -> ObjectSealer {
        let key = DataKey::from_bytes([7; 32]);
        ObjectSealer::with_salt(&key, DataKeyId([2; 16]), &ctx(), chunk(), Salt([3; 32]))
    }

    fn opener(header: &[u8]) -> ObjectOpener {
        ObjectOpener::new(header, &DataKey::from_bytes([7; 32]), &ctx()).unwrap()
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 509) as u8).collect()
    }

    /// The whole object, sealed in one call.
    fn one_shot(pt: &[u8]) -> Vec<u8> {
        let sealer = sealer();
        let mut body = vec![0; sealed_len(chunk(), pt.len())];
        sealer.seal_chunks(0, pt, true, &mut body).unwrap();
        [&sealer.header_bytes()[..], &body].concat()
    }

    /// Runs `f` on rayon pools of 1, 2 and 3 threads: how much a push gathers depends on it.
    fn on_pools(f: impl Fn(usize) + Sync) {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| f(threads));
        }
    }

    const LENS: &[usize] = &[0, 1, C - 1, C, C + 1, 2 * C, 8 * C, 9 * C + 5, 17 * C + 3];
    const BATCHES: &[usize] = &[1, 2, DEFAULT_BATCH_CHUNKS];
    /// Piece-size patterns, cycled: odd sizes around chunk and tag boundaries, and big pieces.
    const PATTERNS: &[&[usize]] = &[
        &[1, 15, 16, 17, 4093],
        &[C],
        &[C - 1, C + 1],
        &[S, 2 * S - 3, 1],
        &[8 * C],
        &[3 * C + 5, 7],
        &[usize::MAX],
    ];

    /// One combination of pool size, plaintext length, batch size and piece pattern.
    struct Case<'a> {
        /// The combination, for assertion messages.
        what: String,
        pt: &'a [u8],
        /// `pt` sealed in one call (header and body).
        object: &'a [u8],
        batch: usize,
        pattern: &'a [usize],
    }

    /// Runs `f` on every combination of [`on_pools`], [`LENS`], [`BATCHES`] and [`PATTERNS`].
    fn each_case(f: impl Fn(&Case<'_>) + Sync) {
        on_pools(|threads| {
            for &len in LENS {
                let pt = plaintext(len);
                let object = one_shot(&pt);
                for &batch in BATCHES {
                    for pattern in PATTERNS {
                        f(&Case {
                            what: format!(
                                "{threads} threads, len {len}, batch {batch}, {pattern:?}"
                            ),
                            pt: &pt,
                            object: &object,
                            batch,
                            pattern,
                        });
                    }
                }
            }
        });
    }

    fn pieces<'a>(mut data: &'a [u8], pattern: &[usize]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        for &n in pattern.iter().cycle() {
            if data.is_empty() {
                break;
            }
            let (a, b) = data.split_at(n.min(data.len()));
            out.push(a);
            data = b;
        }
        out
    }

    #[test]
    fn encryptor_output_is_byte_identical_to_one_shot_sealing() {
        each_case(|c| {
            let (what, pt, want, batch, pattern) = (&c.what, c.pt, c.object, c.batch, c.pattern);
            // Through `push` into a Vec.
            let mut enc = Encryptor::new(sealer(), batch);
            let mut got = enc.header_bytes().to_vec();
            for piece in pieces(pt, pattern) {
                let before = got.len();
                let most = enc.max_output_len(piece.len());
                enc.push(piece, &mut got).unwrap();
                let n = got.len() - before;
                assert!(n <= most && n.is_multiple_of(S), "{what}: {n} of {most}");
                assert!(enc.buffered() <= batch * C, "{what}");
                assert!(enc.pending.capacity() <= batch * C, "{what}");
            }
            assert_eq!(enc.finish_len(), sealed_len(chunk(), enc.buffered()));
            enc.finish(&mut got).unwrap();
            assert!(got == want, "push: {what}");

            // Through `push_slice` into one dirty, reused buffer.
            let mut enc = Encryptor::new(sealer(), batch);
            let mut got = enc.header_bytes().to_vec();
            let mut buf = vec![0xA5; 20 * S];
            for piece in pieces(pt, pattern) {
                let most = enc.max_output_len(piece.len());
                let n = enc.push_slice(piece, &mut buf).unwrap();
                assert!(n <= most && n.is_multiple_of(S), "{what}: {n} of {most}");
                got.extend_from_slice(&buf[..n]);
            }
            let n = enc.finish_len();
            assert_eq!(enc.finish_slice(&mut buf).unwrap(), n);
            got.extend_from_slice(&buf[..n]);
            assert!(got == want, "push_slice: {what}");
        });
    }

    #[test]
    fn continued_pushes_are_byte_identical_and_whole_chunks_are_never_copied() {
        each_case(|c| {
            let (what, pt, want, batch, pattern) = (&c.what, c.pt, c.object, c.batch, c.pattern);
            let mut enc = Encryptor::new(sealer(), batch);
            let mut got = enc.header_bytes().to_vec();
            let mut buf = vec![0x5A; 20 * S];
            let all = pieces(pt, pattern);
            for (i, piece) in all.iter().enumerate() {
                // Every piece but the last is followed by more input.
                let n = if i + 1 < all.len() {
                    let most = enc.max_output_len_continued(piece.len());
                    let n = enc.push_slice_continued(piece, &mut buf).unwrap();
                    assert!(n <= most && n.is_multiple_of(S), "{what}: {n} of {most}");
                    n
                } else {
                    enc.push_slice(piece, &mut buf).unwrap()
                };
                assert!(enc.buffered() <= batch * C, "{what}");
                got.extend_from_slice(&buf[..n]);
            }
            let n = enc.finish_len();
            assert_eq!(enc.finish_slice(&mut buf).unwrap(), n);
            got.extend_from_slice(&buf[..n]);
            assert!(got == want, "push_slice_continued: {what}");
        });
        on_pools(|_| {
            // Whole chunks pushed as continued are sealed at once: nothing is ever held back,
            // so the held buffer is never even allocated.
            let pt = plaintext(12 * C);
            let mut enc = Encryptor::new(sealer(), 2);
            let mut buf = vec![0; 12 * S];
            for piece in pt.chunks(3 * C) {
                let n = enc.push_slice_continued(piece, &mut buf).unwrap();
                assert_eq!(n, 3 * S);
                assert_eq!((enc.buffered(), enc.pending.capacity()), (0, 0));
            }
            // Breaking the promise: there is no final chunk left to seal, and finish says so.
            assert!(matches!(enc.finish_slice(&mut buf), Err(Error::Usage(_))));
        });
    }

    #[test]
    fn big_pieces_are_sealed_in_place_and_small_ones_gathered_into_batches() {
        on_pools(|threads| {
            // Pieces of a whole batch: only the last chunk of each is held back (copied).
            let pt = plaintext(8 * 8 * C);
            let mut enc = Encryptor::new(sealer(), 8);
            let mut out = Vec::new();
            for piece in pt.chunks(8 * C) {
                enc.push(piece, &mut out).unwrap();
                assert_eq!(enc.buffered(), C, "{threads} threads");
            }
            // Pieces of two chunks: sealed in place once there is a chunk for every thread, so
            // no more than that is ever gathered (not a whole batch).
            let mut enc = Encryptor::new(sealer(), 8);
            for piece in pt.chunks(2 * C) {
                enc.push(piece, &mut out).unwrap();
                assert!(enc.buffered() <= (threads + 1) * C, "{threads} threads");
            }
            // Small pieces: gathered into whole batches, each sealed in one parallel call.
            let enough = 8;
            let mut enc = Encryptor::new(sealer(), 8);
            let mut out = Vec::new();
            let mut seen = 0;
            for piece in pt.chunks(4096) {
                enc.push(piece, &mut out).unwrap();
                if out.len() > seen {
                    assert_eq!(out.len() - seen, enough * S, "{threads} threads");
                    seen = out.len();
                }
                assert!(enc.buffered() <= enough * C);
            }
            assert_eq!(seen, (pt.len() / C - 1) / enough * enough * S);
        });
    }

    #[test]
    fn encryptor_slice_api_checks_the_buffer_before_consuming() {
        let mut enc = Encryptor::new(sealer(), 2);
        let pt = plaintext(3 * C);
        let most = enc.max_output_len(pt.len());
        assert_eq!(most, 2 * S);
        let mut short = vec![0; most - 1];
        assert!(matches!(
            enc.push_slice(&pt, &mut short),
            Err(Error::Usage(_))
        ));
        assert_eq!(enc.buffered(), 0);
        let mut out = enc.header_bytes().to_vec();
        enc.push(&pt, &mut out).unwrap();
        assert_eq!(out.len(), HEADER_LEN + 2 * S);
        assert_eq!(enc.buffered(), C);
        let mut short = vec![0; enc.finish_len() - 1];
        assert!(matches!(enc.finish_slice(&mut short), Err(Error::Usage(_))));
        // An empty object is one empty final chunk: a tag.
        let enc = Encryptor::new(sealer(), 2);
        assert_eq!(enc.finish_len(), TAG_LEN);
        assert_eq!(enc.finish_slice(&mut [0; TAG_LEN]), Ok(TAG_LEN));
    }

    #[test]
    fn decryptor_round_trips_holding_at_most_one_batch() {
        each_case(|c| {
            let (what, pt, object, batch, pattern) = (&c.what, c.pt, c.object, c.batch, c.pattern);
            let body = &object[HEADER_LEN..];
            let mut dec = Decryptor::new(opener(object), batch);
            let mut got = Vec::new();
            for piece in pieces(body, pattern) {
                dec.push(piece, &mut got).unwrap();
                assert!(dec.pending.len() <= batch * S, "{what}");
                assert!(dec.pending.capacity() <= batch * S, "{what}");
                // Everything released so far is whole chunks (the final one is held).
                assert_eq!(got.len() % C, 0, "{what}");
            }
            dec.finish(&mut got).unwrap();
            assert!(got == pt, "{what}");
        });
    }

    #[test]
    fn continued_decryption_round_trips_and_whole_chunks_are_never_copied() {
        each_case(|c| {
            let (what, pt, object, batch, pattern) = (&c.what, c.pt, c.object, c.batch, c.pattern);
            let body = &object[HEADER_LEN..];
            let mut dec = Decryptor::new(opener(object), batch);
            let mut got = Vec::new();
            let all = pieces(body, pattern);
            for (i, piece) in all.iter().enumerate() {
                if i + 1 < all.len() {
                    dec.push_continued(piece, &mut got).unwrap();
                } else {
                    dec.push(piece, &mut got).unwrap();
                }
                assert!(dec.buffered() <= batch * S, "{what}");
            }
            dec.finish(&mut got).unwrap();
            assert!(got == pt, "{what}");
        });
        on_pools(|_| {
            // Whole sealed chunks pushed as continued are opened at once, never held.
            let pt = plaintext(12 * C);
            let object = one_shot(&pt);
            let mut dec = Decryptor::new(opener(&object), 2);
            let mut got = Vec::new();
            let (body, last) = object[HEADER_LEN..].split_at(11 * S);
            for piece in body.chunks(3 * S) {
                dec.push_continued(piece, &mut got).unwrap();
                assert_eq!(dec.pending.capacity(), 0);
            }
            assert_eq!(got.len(), 11 * C);
            // The final chunk pushed as continued is opened as not final: it fails, and stays
            // failed.
            let mut broken = Decryptor::new(opener(&object), 2);
            let mut out = Vec::new();
            broken.push_continued(body, &mut out).unwrap();
            let e = broken.push_continued(last, &mut out).unwrap_err();
            assert_eq!(broken.finish(&mut out), Err(e));
            assert_eq!(out.len(), 11 * C);
            dec.push(last, &mut got).unwrap();
            dec.finish(&mut got).unwrap();
            assert!(got == pt);
        });
    }

    #[test]
    fn decryptor_never_releases_plaintext_of_an_unverified_chunk() {
        let pt = plaintext(9 * C + 5);
        let object = one_shot(&pt);
        on_pools(|threads| {
            for bad_chunk in [0, 1, 7, 8, 9] {
                for at in [0, C - 1, C + 3] {
                    let pos = HEADER_LEN + bad_chunk * S + at;
                    if pos >= object.len() {
                        continue;
                    }
                    let mut bad = object.clone();
                    bad[pos] ^= 1;
                    for batch in [1, 3, DEFAULT_BATCH_CHUNKS] {
                        for pattern in PATTERNS {
                            let what = format!("{threads} threads, chunk {bad_chunk}, {pattern:?}");
                            let mut dec = Decryptor::new(opener(&bad), batch);
                            let mut got = Vec::new();
                            let mut err = None;
                            for piece in pieces(&bad[HEADER_LEN..], pattern) {
                                if let Err(e) = dec.push(piece, &mut got) {
                                    err = Some(e);
                                    break;
                                }
                            }
                            let err = match err {
                                Some(e) => {
                                    // Poisoned: the same error again, nothing more released.
                                    let before = got.len();
                                    assert_eq!(dec.push(b"x", &mut got), Err(e.clone()));
                                    assert_eq!(dec.finish(&mut got), Err(e.clone()));
                                    assert_eq!(got.len(), before);
                                    e
                                }
                                None => dec.finish(&mut got).unwrap_err(),
                            };
                            assert!(
                                matches!(err, Error::Authentication { .. }),
                                "{what}: {err:?}"
                            );
                            // Only chunks before the damaged one can have been released.
                            assert!(got.len() <= bad_chunk * C, "{what}");
                            assert!(got == pt[..got.len()], "{what}");
                        }
                    }
                }
            }
        });
    }

    #[test]
    fn range_decryptor_in_pieces_matches_the_plaintext() {
        let pt = plaintext(9 * C + 5);
        let object = one_shot(&pt);
        let layout = Layout::for_plaintext(chunk(), pt.len() as u64).unwrap();
        let n = pt.len() as u64;
        let c = C as u64;
        for range in [
            0..0,
            0..1,
            c - 1..c + 1,
            3..5 * c + 2,
            2 * c..n,
            n - 1..n,
            0..n,
        ] {
            let plan = layout.plan(range.clone()).unwrap();
            let span = &object[plan.ciphertext.start as usize..plan.ciphertext.end as usize];
            on_pools(|threads| {
                for batch in [1, DEFAULT_BATCH_CHUNKS] {
                    for pattern in PATTERNS {
                        let mut dec = Decryptor::for_range(opener(&object), &plan, batch);
                        let mut got = Vec::new();
                        for piece in pieces(span, pattern) {
                            dec.push(piece, &mut got).unwrap();
                        }
                        dec.finish(&mut got).unwrap();
                        let want = &pt[range.start as usize..range.end as usize];
                        assert!(
                            got == want,
                            "{threads} threads, {range:?}, batch {batch}, {pattern:?}"
                        );
                    }
                }
            });
            // One chunk short is truncation, not a shorter answer.
            if plan.chunks.end - plan.chunks.start > 1 {
                let mut dec = Decryptor::for_range(opener(&object), &plan, 2);
                let mut got = Vec::new();
                dec.push(&span[..span.len() - S.min(span.len())], &mut got)
                    .unwrap();
                assert!(matches!(dec.finish(&mut got), Err(Error::Truncated { .. })));
            }
        }
    }
}
