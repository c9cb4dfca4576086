//! The AEAD primitive the format uses: AES-256-GCM from aws-lc-rs with 96-bit nonces and 128-bit
//! tags. Opening (out of place or in place) zeroes its output on every failure, so no unverified
//! plaintext is ever handed back.

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
    /// On every failure, the length checks included, `plaintext` is zeroed, so unverified (or
    /// stale) bytes never survive. The tag is compared in constant time by aws-lc.
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
            plaintext.fill(0);
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

    /// Verifies and decrypts `in_out` in place. `in_out` is the ciphertext followed by its
    /// 16-byte tag; on success its first `in_out.len() - 16` bytes are the plaintext (the tag
    /// bytes are left as they were) and that length is returned.
    ///
    /// On every failure the whole of `in_out` is zeroed, so unverified plaintext never survives.
    /// The tag is compared in constant time by aws-lc.
    ///
    /// # Errors
    /// [`Rejected`] on any authentication failure, or if `in_out` is shorter than a tag.
    pub fn open_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<usize, Rejected> {
        OPEN_ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        if in_out.len() < TAG_LEN {
            in_out.fill(0);
            return Err(Rejected);
        }
        let r = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map(|pt| pt.len());
        match r {
            Ok(len) => Ok(len),
            Err(_) => {
                in_out.fill(0);
                Err(Rejected)
            }
        }
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

/// The zeroing promises of [`Aes256Gcm::open`] and [`Aes256Gcm::open_in_place`] on every error
/// path, the early length checks included.
#[cfg(test)]
mod zeroing_tests {
    use super::{Aes256Gcm, Rejected, TAG_LEN, chunk_nonce};

    const AAD: &[u8] = b"header";

    fn sealed(gcm: &Aes256Gcm, pt: &[u8]) -> (Vec<u8>, [u8; TAG_LEN]) {
        let mut ct = pt.to_vec();
        let tag = gcm
            .seal_in_place(chunk_nonce(3, true), AAD, &mut ct)
            .unwrap();
        (ct, tag)
    }

    #[test]
    fn open_zeroes_output_on_length_mismatch() {
        let gcm = Aes256Gcm::new(&[9; 32]);
        let (ct, tag) = sealed(&gcm, b"sixteen byte msg");
        let nonce = chunk_nonce(3, true);
        // Output one byte short, one byte long, and a tag of the wrong length.
        for (out_len, tag_len) in [(15, TAG_LEN), (17, TAG_LEN), (16, 15), (16, 17)] {
            let mut long_tag = tag.to_vec();
            long_tag.resize(tag_len, 0);
            let mut out = vec![0xA5; out_len];
            assert_eq!(
                gcm.open(nonce, AAD, &ct, &long_tag, &mut out),
                Err(Rejected)
            );
            assert!(
                out.iter().all(|&b| b == 0),
                "{out_len}/{tag_len}: not zeroed"
            );
        }
        let mut out = vec![0xA5; 16];
        assert_eq!(gcm.open(nonce, AAD, &ct, &tag, &mut out), Ok(()));
        assert_eq!(out, b"sixteen byte msg");
    }

    #[test]
    fn open_in_place_round_trips_and_zeroes_on_failure() {
        let gcm = Aes256Gcm::new(&[9; 32]);
        let nonce = chunk_nonce(3, true);
        for pt in [&b""[..], b"x", b"a message longer than one AES block"] {
            let (ct, tag) = sealed(&gcm, pt);
            let mut buf = [ct.as_slice(), &tag].concat();
            assert_eq!(gcm.open_in_place(nonce, AAD, &mut buf), Ok(pt.len()));
            assert_eq!(&buf[..pt.len()], pt);
            assert_eq!(buf[pt.len()..], tag);

            for flip in [0, buf.len() - 1] {
                let mut bad = [ct.as_slice(), &tag].concat();
                bad[flip] ^= 0x80;
                assert_eq!(gcm.open_in_place(nonce, AAD, &mut bad), Err(Rejected));
                assert!(bad.iter().all(|&b| b == 0), "flip at {flip}: not zeroed");
            }
            let mut wrong_nonce = [ct.as_slice(), &tag].concat();
            assert_eq!(
                gcm.open_in_place(chunk_nonce(3, false), AAD, &mut wrong_nonce),
                Err(Rejected)
            );
            assert!(wrong_nonce.iter().all(|&b| b == 0));
        }
        // Shorter than a tag: rejected before aws-lc is called, and still zeroed.
        let mut short = vec![0xA5; TAG_LEN - 1];
        assert_eq!(gcm.open_in_place(nonce, AAD, &mut short), Err(Rejected));
        assert!(short.iter().all(|&b| b == 0));
    }
}
