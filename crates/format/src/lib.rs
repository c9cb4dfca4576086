//! The encrypt-repo container format: how one object is sealed.
//!
//! An object is a fixed-length [header](Header) followed by AES-256-GCM chunks. Each object gets
//! its own key, derived with HKDF-SHA-256 from a data key, a random salt, the repository id and
//! (by default) the object's path; a 32-byte key commitment in the header is checked in constant
//! time before any chunk is opened. Chunks use STREAM nonces (index ‖ final flag), so truncation,
//! extension, reordering and splicing are all detected, and any plaintext range can be read by
//! fetching only the header and the chunks that cover it. FORMAT.md in the repository root is
//! the byte-exact specification.
//!
//! This crate does no I/O and nothing async. Batches of chunks are sealed and opened in parallel
//! on the current rayon pool.
//!
//! ```
//! use encrypt_repo_format::{ChunkSize, DataKey, DataKeyId, ObjectContext, RepositoryId};
//!
//! let key = DataKey::generate()?;
//! let ctx = ObjectContext::bound(RepositoryId([1; 16]), "backups/2026-11-25.tar");
//! let sealed = encrypt_repo_format::seal_object(&key, DataKeyId([2; 16]), &ctx, ChunkSize::DEFAULT, b"hello")?;
//! assert_eq!(encrypt_repo_format::open_object(&key, &ctx, &sealed)?, b"hello");
//!
//! // The same bytes under another path fail before any chunk is opened.
//! let moved = ObjectContext::bound(RepositoryId([1; 16]), "elsewhere");
//! assert!(encrypt_repo_format::open_object(&key, &moved, &sealed).is_err());
//! # Ok::<(), encrypt_repo_format::Error>(())
//! ```

pub mod aead;
mod error;
mod header;
mod keys;
mod layout;
mod seal;
mod stream;

pub use error::{Error, Result};
pub use header::{
    COMMITMENT_LEN, FLAG_PATH_BOUND, HEADER_LEN, Header, MAGIC, SUITE_AES256GCM_HKDF_SHA256,
    VERSION_1,
};
pub use keys::{
    DATA_KEY_LEN, DataKey, DataKeyId, ID_LEN, ObjectContext, RepositoryId, SALT_LEN, Salt,
};
pub use layout::{
    CHUNK_LOG2_DEFAULT, CHUNK_LOG2_MAX, CHUNK_LOG2_MIN, ChunkSize, Layout, MAX_CHUNKS, RangePlan,
};
pub use seal::{ObjectOpener, ObjectSealer, extend_sealed_layout, opened_len, sealed_len};
pub use stream::{DEFAULT_BATCH_CHUNKS, Decryptor, Encryptor};

/// Seals a whole in-memory object (header included) under a fresh random salt.
///
/// # Errors
/// [`Error::Random`] or [`Error::TooLarge`].
pub fn seal_object(
    data_key: &DataKey,
    data_key_id: DataKeyId,
    ctx: &ObjectContext<'_>,
    chunk: ChunkSize,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    seal_with(
        ObjectSealer::new(data_key, data_key_id, ctx, chunk)?,
        plaintext,
    )
}

/// Seals a whole object with a given sealer (for example one built with a fixed salt).
///
/// # Errors
/// [`Error::TooLarge`].
pub fn seal_with(sealer: ObjectSealer, plaintext: &[u8]) -> Result<Vec<u8>> {
    let layout = Layout::for_plaintext(sealer.chunk_size(), plaintext.len() as u64)?;
    let mut out = Vec::with_capacity(layout.ciphertext_len() as usize);
    out.extend_from_slice(sealer.header_bytes());
    let mut body = vec![0u8; sealed_len(sealer.chunk_size(), plaintext.len())];
    sealer.seal_chunks(0, plaintext, true, &mut body)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens a whole in-memory object. Returns the plaintext only if every chunk verified and the
/// object ended with exactly one final chunk.
///
/// # Errors
/// Header errors, [`Error::CommitmentMismatch`], [`Error::Authentication`], [`Error::Truncated`].
/// Bytes after the final chunk make the final chunk fail to authenticate (it is opened as a
/// non-final chunk), so trailing data is an [`Error::Authentication`] here.
pub fn open_object(data_key: &DataKey, ctx: &ObjectContext<'_>, object: &[u8]) -> Result<Vec<u8>> {
    let opener = ObjectOpener::new(object, data_key, ctx)?;
    let mut dec = Decryptor::new(opener, DEFAULT_BATCH_CHUNKS);
    let mut out = Vec::new();
    dec.push(&object[HEADER_LEN..], &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

/// Opens plaintext `range` of an object of `layout`, given its header and exactly the
/// ciphertext bytes `plan.ciphertext` that [`Layout::plan`] named.
///
/// # Errors
/// As [`open_object`], plus [`Error::RangeOutOfBounds`].
pub fn open_range(
    data_key: &DataKey,
    ctx: &ObjectContext<'_>,
    header: &[u8],
    plan: &RangePlan,
    span: &[u8],
) -> Result<Vec<u8>> {
    let opener = ObjectOpener::new(header, data_key, ctx)?;
    let mut dec = Decryptor::for_range(opener, plan, DEFAULT_BATCH_CHUNKS);
    let mut out = Vec::with_capacity(usize::try_from(plan.len).unwrap_or(0).min(span.len()));
    dec.push(span, &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}
