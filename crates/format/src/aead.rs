//! The AEAD primitive the format uses: AES-256-GCM from aws-lc-rs with 96-bit nonces and 128-bit
//! tags, opened out of place so that no unverified plaintext is ever handed back.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;

static OPEN_ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// How many chunk opens (tag checks) this process has attempted. A diagnostic that lets tests show
/// that a commitment failure stops work before any chunk is touched.
#[must_use]
pub fn chunk_open_attempts() -> u64 {
    OPEN_ATTEMPTS.load(Ordering::Relaxed)
}

/// An AES-256-GCM key. The aws-lc context is cleansed by aws-lc when dropped.
#[derive(Debug)]
pub struct Aes256Gcm(LessSafeKey);

/// The AEAD rejected its input (wrong key, modified ciphertext, tag or AAD, or bad lengths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

impl Aes256Gcm {
    /// Builds a key from 32 bytes.
    #[must_use]
    pub fn new(key: &[u8; 32]) -> Self {
        // UnboundKey::new only fails for a key of the wrong length; the type guarantees 32.
        #[allow(clippy::expect_used)]
        let k = UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key");
        Self(LessSafeKey::new(k))
    }

    /// Encrypts `plaintext` into `ciphertext` (same length) and writes the tag to `tag`.
    ///
    /// # Errors
    /// [`Rejected`] if the lengths differ or `tag` is not 16 bytes.
    pub fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        ciphertext: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), Rejected> {
        self.0
            .seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                plaintext,
                ciphertext,
                &[],
                tag,
            )
            .map_err(|_| Rejected)
    }

    /// Encrypts `in_out` in place and returns the tag.
    ///
    /// # Errors
    /// [`Rejected`] if aws-lc refuses (only for absurd lengths).
    pub fn seal_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Rejected> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| Rejected)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Verifies and decrypts `ciphertext` (with its 16-byte `tag`) into `plaintext`.
    ///
    /// On failure `plaintext` is zeroed, so unverified bytes never survive. The tag is compared
    /// in constant time by aws-lc.
    ///
    /// # Errors
    /// [`Rejected`] on any authentication failure or length mismatch.
    pub fn open(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        plaintext: &mut [u8],
    ) -> Result<(), Rejected> {
        OPEN_ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        if tag.len() != TAG_LEN || ciphertext.len() != plaintext.len() {
            return Err(Rejected);
        }
        let r = self.0.open_separate_gather(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            ciphertext,
            tag,
            plaintext,
        );
        if r.is_err() {
            plaintext.fill(0);
            return Err(Rejected);
        }
        Ok(())
    }
}

/// The STREAM nonce of chunk `index` (FORMAT.md §4): seven zero bytes, the index as a 32-bit
/// big-endian integer, then 0x01 for the final chunk or 0x00 otherwise.
#[must_use]
pub fn chunk_nonce(index: u32, is_final: bool) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[7..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(is_final);
    n
}

#[cfg(test)]
mod tests;
