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
}

/// Ciphertext bytes for a batch of `plaintext_len` bytes (tags included, header excluded).
#[must_use]
pub fn sealed_len(chunk: ChunkSize, plaintext_len: usize) -> usize {
    plaintext_len + plaintext_len.div_ceil(chunk.bytes()).max(1) * TAG_LEN
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
        let s = self.header.chunk_size.sealed_bytes();
        if ciphertext.is_empty() {
            return Err(Error::Truncated { chunk: first });
        }
        let n = check_batch(first, ciphertext.len().div_ceil(s) as u64)?;
        let last = first + n - 1;
        let tail = ciphertext.len() - (n as usize - 1) * s;
        if tail < TAG_LEN {
            return Err(Error::Truncated { chunk: last });
        }
        if (!last_is_final && tail != s) || (last_is_final && tail == TAG_LEN && last != 0) {
            // A short non-final chunk, or an empty final chunk after full ones: never written
            // by an honest sealer.
            return Err(Error::Authentication { chunk: last });
        }
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
            let c = self.header.chunk_size.bytes();
            ciphertext
                .par_chunks(s)
                .zip(out.par_chunks_mut(c))
                .enumerate()
                .try_for_each(|(k, (ct, pt))| open_one(first + k as u64, ct, pt))
        };
        if result.is_err() {
            out.fill(0);
        }
        result
    }
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
