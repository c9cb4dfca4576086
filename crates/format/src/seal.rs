//! Per-object sealing and opening of chunk batches, in parallel (FORMAT.md §4).

use aws_lc_rs::constant_time::verify_slices_are_equal;
use rayon::prelude::*;

use crate::aead::{Aes256Gcm, TAG_LEN, chunk_nonce};
use crate::error::{Error, Result};
use crate::header::{HEADER_LEN, Header};
use crate::keys::{DataKey, DataKeyId, ObjectContext, Salt, derive};
use crate::layout::{ChunkSize, MAX_CHUNKS};

/// Seals the chunks of one object. Created once per object with a fresh random salt; holds the
/// derived object key (never the data key).
#[derive(Debug)]
pub struct ObjectSealer {
    cipher: Aes256Gcm,
    header: [u8; HEADER_LEN],
    chunk: ChunkSize,
}

impl ObjectSealer {
    /// Starts a new object: draws a random salt, derives the object key and commitment, and
    /// builds the header.
    ///
    /// # Errors
    /// [`Error::Random`] if the system generator fails.
    pub fn new(
        data_key: &DataKey,
        data_key_id: DataKeyId,
        ctx: &ObjectContext<'_>,
        chunk: ChunkSize,
    ) -> Result<Self> {
        Ok(Self::with_salt(
            data_key,
            data_key_id,
            ctx,
            chunk,
            Salt::random()?,
        ))
    }

    /// Like [`ObjectSealer::new`] with a caller-chosen salt. The salt must never repeat for a data
    /// key; this exists for test vectors and the FORMAT.md worked example.
    #[must_use]
    pub fn with_salt(
        data_key: &DataKey,
        data_key_id: DataKeyId,
        ctx: &ObjectContext<'_>,
        chunk: ChunkSize,
        salt: Salt,
    ) -> Self {
        let mut header = Header {
            chunk_size: chunk,
            path_bound: ctx.path.is_some(),
            data_key_id,
            salt,
            commitment: [0; 32],
        };
        let (key, commitment) = derive(data_key, &header.to_bytes(), &salt, ctx);
        header.commitment = commitment;
        Self {
            cipher: Aes256Gcm::new(&key.0),
            header: header.to_bytes(),
            chunk,
        }
    }

    /// The header to write at offset 0.
    #[must_use]
    pub fn header_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.header
    }

    /// The chunk size.
    #[must_use]
    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk
    }

    /// Seals the chunks starting at index `first` from `plaintext` into `out`, in parallel.
    ///
    /// `plaintext` is a whole number of chunks unless `last_is_final`, in which case its last
    /// chunk may be short (and is sealed as the final chunk). `out` must be exactly
    /// [`sealed_len`]`(chunk, plaintext.len())` bytes.
    ///
    /// # Errors
    /// [`Error::Usage`] for wrong lengths, [`Error::TooLarge`] past chunk index 2^32 - 1.
    pub fn seal_chunks(
        &self,
        first: u64,
        plaintext: &[u8],
        last_is_final: bool,
        out: &mut [u8],
    ) -> Result<()> {
        let c = self.chunk.bytes();
        let n = check_batch(first, plaintext.len().div_ceil(c).max(1) as u64)?;
        if !last_is_final && (plaintext.is_empty() || !plaintext.len().is_multiple_of(c)) {
            return Err(Error::Usage("non-final batch must be whole chunks"));
        }
        if last_is_final && plaintext.is_empty() && first != 0 {
            return Err(Error::Usage(
                "only an empty object has an empty final chunk",
            ));
        }
        if out.len() != sealed_len(self.chunk, plaintext.len()) {
            return Err(Error::Usage("output buffer has the wrong length"));
        }
        let last = first + n - 1;
        let seal_one = |i: u64, pt: &[u8], ct: &mut [u8]| {
            let (body, tag) = ct.split_at_mut(pt.len());
            let nonce = chunk_nonce(i as u32, last_is_final && i == last);
            self.cipher
                .seal(nonce, &self.header, pt, body, tag)
                .map_err(|_| Error::Usage("AEAD refused to seal"))
        };
        if n == 1 {
            return seal_one(first, plaintext, out);
        }
        plaintext
            .par_chunks(c)
            .zip(out.par_chunks_mut(c + TAG_LEN))
            .enumerate()
            .try_for_each(|(k, (pt, ct))| seal_one(first + k as u64, pt, ct))
    }

    /// Seals the chunks starting at index `first` in place, in parallel.
    ///
    /// `buf` holds the plaintext already laid out at its sealed offsets: chunk `k`'s plaintext
    /// at `k * (C + 16)`, each chunk followed by 16 bytes of room for its tag (whatever those
    /// bytes hold is overwritten). [`extend_sealed_layout`] builds such a buffer, and
    /// `buf.len()` is [`sealed_len`] of the plaintext length. Afterwards `buf` is byte for byte
    /// what [`ObjectSealer::seal_chunks`] writes for the same plaintext: this is the same
    /// operation without a second buffer. All chunks are whole unless `last_is_final`, in which
    /// case the last may be short (and is sealed as the final chunk).
    ///
    /// # Errors
    /// [`Error::Usage`] for a length no plaintext seals to (checked before any byte is touched),
    /// [`Error::TooLarge`] past chunk index 2^32 - 1.
    pub fn seal_chunks_in_place(
        &self,
        first: u64,
        buf: &mut [u8],
        last_is_final: bool,
    ) -> Result<()> {
        let n = sealed_chunk_count(self.chunk, first, buf.len(), last_is_final).map_err(
            |e| match e {
                Error::TooLarge { .. } => e,
                _ => Error::Usage("in-place buffer has no valid sealed length"),
            },
        )?;
        let last = first + n - 1;
        let seal_one = |i: u64, chunk: &mut [u8]| {
            let (body, tag) = chunk.split_at_mut(chunk.len() - TAG_LEN);
            let nonce = chunk_nonce(i as u32, last_is_final && i == last);
            let t = self
                .cipher
                .seal_in_place(nonce, &self.header, body)
                .map_err(|_| Error::Usage("AEAD refused to seal"))?;
            tag.copy_from_slice(&t);
            Ok(())
        };
        if n == 1 {
            return seal_one(first, buf);
        }
        buf.par_chunks_mut(self.chunk.sealed_bytes())
            .enumerate()
            .try_for_each(|(k, chunk)| seal_one(first + k as u64, chunk))
    }
}

/// Appends `plaintext` to `out` laid out for [`ObjectSealer::seal_chunks_in_place`]: every
/// chunk of `plaintext` followed by 16 bytes of room for its tag ([`sealed_len`] bytes in all;
/// an empty `plaintext` appends the 16 bytes of an empty final chunk). The bytes are copied, not
/// zero-filled first, so this is the only pass over `out` before sealing.
pub fn extend_sealed_layout(out: &mut Vec<u8>, chunk: ChunkSize, plaintext: &[u8]) {
    out.reserve(sealed_len(chunk, plaintext.len()));
    if plaintext.is_empty() {
        out.extend_from_slice(&[0; TAG_LEN]);
    }
    for piece in plaintext.chunks(chunk.bytes()) {
        out.extend_from_slice(piece);
        out.extend_from_slice(&[0; TAG_LEN]);
    }
}

/// Ciphertext bytes for a batch of `plaintext_len` bytes (tags included, header excluded).
/// Saturates at `usize::MAX` for lengths no batch can have.
#[must_use]
pub fn sealed_len(chunk: ChunkSize, plaintext_len: usize) -> usize {
    plaintext_len.saturating_add(plaintext_len.div_ceil(chunk.bytes()).max(1) * TAG_LEN)
}

/// Opens the chunks of one object. Exists only after the key commitment has been verified, so
/// no chunk of an object can be opened under a wrong key or context.
#[derive(Debug)]
pub struct ObjectOpener {
    cipher: Aes256Gcm,
    header_bytes: [u8; HEADER_LEN],
    header: Header,
}

impl ObjectOpener {
    /// Parses the header, checks it against `ctx`, derives the object key and verifies the key
    /// commitment in constant time.
    ///
    /// # Errors
    /// Header errors (see [`Header::parse`]), [`Error::BindingMismatch`], and
    /// [`Error::CommitmentMismatch`] for a wrong data key, wrong repository, moved object or
    /// swapped header. No chunk has been opened when these are returned.
    pub fn new(header_bytes: &[u8], data_key: &DataKey, ctx: &ObjectContext<'_>) -> Result<Self> {
        let header = Header::parse(header_bytes)?;
        if header.path_bound != ctx.path.is_some() {
            return Err(Error::BindingMismatch {
                header: header.path_bound,
                expected: ctx.path.is_some(),
            });
        }
        let bytes = header.to_bytes();
        let (key, commitment) = derive(data_key, &bytes, &header.salt, ctx);
        verify_slices_are_equal(&commitment, &header.commitment)
            .map_err(|_| Error::CommitmentMismatch)?;
        Ok(Self {
            cipher: Aes256Gcm::new(&key.0),
            header_bytes: bytes,
            header,
        })
    }

    /// The verified header.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The chunk size.
    #[must_use]
    pub fn chunk_size(&self) -> ChunkSize {
        self.header.chunk_size
    }

    /// Opens the sealed chunks in `ciphertext`, starting at index `first`, into `out`, in
    /// parallel. `ciphertext` holds whole sealed chunks, except that when `last_is_final` its last
    /// chunk may be short. `out` must be [`opened_len`] bytes.
    ///
    /// On error `out` is zeroed: no unverified (or partially verified) plaintext survives.
    ///
    /// # Errors
    /// [`Error::Authentication`] naming a failing chunk; [`Error::Truncated`] if a chunk is
    /// shorter than a tag; [`Error::Usage`] for a wrong `out` length.
    pub fn open_chunks(
        &self,
        first: u64,
        ciphertext: &[u8],
        last_is_final: bool,
        out: &mut [u8],
    ) -> Result<()> {
        let n = sealed_chunk_count(
            self.header.chunk_size,
            first,
            ciphertext.len(),
            last_is_final,
        )?;
        let last = first + n - 1;
        if out.len() != ciphertext.len() - n as usize * TAG_LEN {
            return Err(Error::Usage("output buffer has the wrong length"));
        }
        let open_one = |i: u64, ct: &[u8], pt: &mut [u8]| {
            let (body, tag) = ct.split_at(ct.len() - TAG_LEN);
            let nonce = chunk_nonce(i as u32, last_is_final && i == last);
            self.cipher
                .open(nonce, &self.header_bytes, body, tag, pt)
                .map_err(|_| Error::Authentication { chunk: i })
        };
        let result = if n == 1 {
            open_one(first, ciphertext, out)
        } else {
            let chunk = self.header.chunk_size;
            ciphertext
                .par_chunks(chunk.sealed_bytes())
                .zip(out.par_chunks_mut(chunk.bytes()))
                .enumerate()
                .try_for_each(|(k, (ct, pt))| open_one(first + k as u64, ct, pt))
        };
        if result.is_err() {
            out.fill(0);
        }
        result
    }

    /// Opens the sealed chunks in `buf`, starting at index `first`, in place, in parallel.
    /// `buf` holds whole sealed chunks, except that when `last_is_final` its last chunk may be
    /// short, exactly as for [`ObjectOpener::open_chunks`].
    ///
    /// On success the plaintext stays at the sealed offsets: chunk `k`'s plaintext is
    /// `buf[k * (C + 16)..][..len_k]`, where every `len_k` is `C` except perhaps the last
    /// (the tag bytes after each chunk are left as they were). Returns the total plaintext length,
    /// [`opened_len`]`(C, buf.len())`. Nothing is compacted: a caller that owns the buffer can
    /// hand out each chunk's plaintext as a slice.
    ///
    /// On every error the whole of `buf` is zeroed: no unverified (or partially verified)
    /// plaintext survives.
    ///
    /// # Errors
    /// As [`ObjectOpener::open_chunks`].
    pub fn open_chunks_in_place(
        &self,
        first: u64,
        buf: &mut [u8],
        last_is_final: bool,
    ) -> Result<usize> {
        let result = self.open_in_place_inner(first, buf, last_is_final);
        if result.is_err() {
            buf.fill(0);
        }
        result
    }

    fn open_in_place_inner(
        &self,
        first: u64,
        buf: &mut [u8],
        last_is_final: bool,
    ) -> Result<usize> {
        let chunk = self.header.chunk_size;
        let n = sealed_chunk_count(chunk, first, buf.len(), last_is_final)?;
        let last = first + n - 1;
        let open_one = |i: u64, sealed: &mut [u8]| {
            let nonce = chunk_nonce(i as u32, last_is_final && i == last);
            self.cipher
                .open_in_place(nonce, &self.header_bytes, sealed)
                .map(drop)
                .map_err(|_| Error::Authentication { chunk: i })
        };
        if n == 1 {
            open_one(first, buf)?;
        } else {
            buf.par_chunks_mut(chunk.sealed_bytes())
                .enumerate()
                .try_for_each(|(k, sealed)| open_one(first + k as u64, sealed))?;
        }
        Ok(buf.len() - n as usize * TAG_LEN)
    }
}

/// How many chunks a batch of `len` sealed bytes starting at chunk `first` holds, or why no
/// honest sealer writes such a batch ([`Error::TooLarge`] past the chunk limit, otherwise
/// [`Error::Truncated`] or [`Error::Authentication`] naming the offending chunk).
fn sealed_chunk_count(
    chunk: ChunkSize,
    first: u64,
    len: usize,
    last_is_final: bool,
) -> Result<u64> {
    let s = chunk.sealed_bytes();
    if len == 0 {
        return Err(Error::Truncated { chunk: first });
    }
    let n = check_batch(first, len.div_ceil(s) as u64)?;
    let last = first + n - 1;
    let tail = len - (n as usize - 1) * s;
    if tail < TAG_LEN {
        return Err(Error::Truncated { chunk: last });
    }
    if (!last_is_final && tail != s) || (last_is_final && tail == TAG_LEN && last != 0) {
        // A short non-final chunk, or an empty final chunk after full ones: never written
        // by an honest sealer.
        return Err(Error::Authentication { chunk: last });
    }
    Ok(n)
}

/// Plaintext bytes in a batch of `ciphertext_len` sealed bytes (0 if it cannot hold a tag).
#[must_use]
pub fn opened_len(chunk: ChunkSize, ciphertext_len: usize) -> usize {
    let n = ciphertext_len.div_ceil(chunk.sealed_bytes());
    ciphertext_len.saturating_sub(n * TAG_LEN)
}

/// Checks that chunks `first .. first + n` stay below [`MAX_CHUNKS`]; returns `n`.
fn check_batch(first: u64, n: u64) -> Result<u64> {
    match first.checked_add(n) {
        Some(end) if end <= MAX_CHUNKS => Ok(n),
        _ => Err(Error::TooLarge {
            what: "chunk index above 2^32 - 1",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RepositoryId;

    const C: usize = 1 << 16;
    const S: usize = C + TAG_LEN;

    fn chunk() -> ChunkSize {
        ChunkSize::from_log2(16).unwrap()
    }

    fn key() -> DataKey {
        DataKey::from_bytes([7; 32])
    }

    fn ctx() -> ObjectContext<'static> {
        ObjectContext::bound(RepositoryId([1; 16]), "in/place")
    }

    fn sealer() -> ObjectSealer {
        ObjectSealer::with_salt(&key(), DataKeyId([2; 16]), &ctx(), chunk(), Salt([3; 32]))
    }

    fn opener() -> ObjectOpener {
        ObjectOpener::new(sealer().header_bytes(), &key(), &ctx()).unwrap()
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    /// Lengths around chunk boundaries, for final batches.
    const FINAL_LENS: &[usize] = &[0, 1, C - 1, C, C + 1, 2 * C, 3 * C + 7, 9 * C + 5];

    fn seal_out_of_place(first: u64, pt: &[u8], last_is_final: bool) -> Vec<u8> {
        let mut out = vec![0xA5; sealed_len(chunk(), pt.len())];
        sealer()
            .seal_chunks(first, pt, last_is_final, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn extend_sealed_layout_places_chunks_at_sealed_offsets() {
        for &len in FINAL_LENS {
            let pt = plaintext(len);
            let mut buf = b"prefix".to_vec();
            extend_sealed_layout(&mut buf, chunk(), &pt);
            let buf = &buf[6..];
            assert_eq!(buf.len(), sealed_len(chunk(), len), "{len}");
            for (k, piece) in pt.chunks(C).enumerate() {
                assert_eq!(&buf[k * S..k * S + piece.len()], piece, "{len}: chunk {k}");
            }
        }
    }

    #[test]
    fn seal_in_place_matches_seal_chunks_byte_for_byte() {
        let sealer = sealer();
        let mut cases: Vec<(u64, usize, bool)> = FINAL_LENS.iter().map(|&l| (0, l, true)).collect();
        // Non-final batches (whole chunks) and batches that start further in.
        cases.extend([
            (0, C, false),
            (0, 8 * C, false),
            (5, 3 * C, false),
            (5, 2 * C + 9, true),
        ]);
        cases.push((MAX_CHUNKS - 2, C + 1, true));
        for (first, len, last_is_final) in cases {
            let pt = plaintext(len);
            let want = seal_out_of_place(first, &pt, last_is_final);
            let mut buf = Vec::new();
            extend_sealed_layout(&mut buf, chunk(), &pt);
            // Whatever is in the tag room is overwritten.
            for k in 0..buf.len().div_ceil(S) {
                let end = ((k + 1) * S).min(buf.len());
                buf[end - TAG_LEN..end].fill(0xEE);
            }
            sealer
                .seal_chunks_in_place(first, &mut buf, last_is_final)
                .unwrap();
            assert!(
                buf == want,
                "first {first}, len {len}, final {last_is_final}"
            );
        }
    }

    #[test]
    fn seal_in_place_rejects_lengths_no_plaintext_seals_to() {
        let sealer = sealer();
        let usage = |first: u64, len: usize, last_is_final: bool| {
            let mut buf = vec![0x5A; len];
            let r = sealer.seal_chunks_in_place(first, &mut buf, last_is_final);
            assert!(
                matches!(r, Err(Error::Usage(_))),
                "first {first}, len {len}, final {last_is_final}: {r:?}"
            );
            assert!(buf.iter().all(|&b| b == 0x5A), "touched before the check");
        };
        usage(0, 0, true);
        usage(0, TAG_LEN - 1, true);
        usage(0, S + TAG_LEN - 1, true); // a second chunk shorter than its tag
        usage(0, S + TAG_LEN, true); // an empty final chunk after a full one
        usage(3, TAG_LEN, true); // an empty final chunk that is not chunk 0
        usage(0, S - 1, false); // a short non-final chunk
        usage(0, 2 * S + 1, false);
        assert!(matches!(
            sealer.seal_chunks_in_place(MAX_CHUNKS - 1, &mut vec![0; 2 * S], false),
            Err(Error::TooLarge { .. })
        ));
        // The empty object: one empty final chunk.
        let mut buf = vec![0; TAG_LEN];
        sealer.seal_chunks_in_place(0, &mut buf, true).unwrap();
        assert_eq!(buf, seal_out_of_place(0, &[], true));
    }

    #[test]
    fn open_in_place_round_trips_and_matches_open_chunks() {
        let opener = opener();
        for &len in FINAL_LENS {
            let pt = plaintext(len);
            let sealed = seal_out_of_place(0, &pt, true);
            let mut want = vec![0; len];
            opener.open_chunks(0, &sealed, true, &mut want).unwrap();
            let mut buf = sealed.clone();
            assert_eq!(opener.open_chunks_in_place(0, &mut buf, true), Ok(len));
            let mut got = Vec::new();
            for (k, piece) in pt.chunks(C).enumerate() {
                got.extend_from_slice(&buf[k * S..k * S + piece.len()]);
                // The tag bytes are left as they were.
                let end = (k * S + piece.len() + TAG_LEN).min(buf.len());
                assert_eq!(buf[end - TAG_LEN..end], sealed[end - TAG_LEN..end]);
            }
            assert!(got == pt && want == pt, "{len}");
        }
        // A non-final batch that starts further in.
        let pt = plaintext(3 * C);
        let mut buf = seal_out_of_place(4, &pt, false);
        assert_eq!(opener.open_chunks_in_place(4, &mut buf, false), Ok(3 * C));
        // Opening twice fails (which chunk is named depends on the parallel schedule).
        assert!(matches!(
            opener.open_chunks_in_place(4, &mut buf, false),
            Err(Error::Authentication { chunk: 4..=6 })
        ));
        assert!(buf.iter().all(|&b| b == 0));
    }

    #[test]
    fn open_in_place_failures_zero_the_whole_buffer() {
        let opener = opener();
        let pt = plaintext(5 * C + 3);
        let sealed = seal_out_of_place(0, &pt, true);
        let check = |buf: &mut [u8], first: u64, last_is_final: bool, want: Error| {
            assert_eq!(
                opener.open_chunks_in_place(first, buf, last_is_final),
                Err(want.clone()),
                "{want:?}"
            );
            assert!(buf.iter().all(|&b| b == 0), "{want:?}: not zeroed");
        };
        // One flipped byte in any chunk, body or tag: every other chunk may have verified and
        // been decrypted, and none of it survives.
        for (k, at) in [(0, 5), (2, 2 * S + C + 3), (5, sealed.len() - 1)] {
            let mut buf = sealed.clone();
            buf[at] ^= 1;
            check(&mut buf, 0, true, Error::Authentication { chunk: k });
        }
        // Wrong final flag, wrong starting index.
        check(
            &mut sealed.clone(),
            0,
            false,
            Error::Authentication { chunk: 5 },
        );
        let mut buf = sealed.clone();
        assert!(matches!(
            opener.open_chunks_in_place(1, &mut buf, true),
            Err(Error::Authentication { chunk: 1..=6 })
        ));
        assert!(buf.iter().all(|&b| b == 0));
        // Lengths no sealer writes: the same errors as open_chunks.
        for (len, last_is_final) in [
            (0, true),
            (TAG_LEN - 1, true),
            (S + 3, true),
            (S + TAG_LEN, true),
            (S + 1, false),
        ] {
            let mut out = vec![0; opened_len(chunk(), len)];
            let want = opener
                .open_chunks(0, &sealed[..len], last_is_final, &mut out)
                .unwrap_err();
            check(&mut sealed[..len].to_vec(), 0, last_is_final, want);
        }
    }
}
