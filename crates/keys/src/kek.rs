//! Wrapping data keys under a local key-encryption key (KEK) with AES-256-GCM. Used by the
//! `local` and `passphrase` providers.
//!
//! Wrapped form: `01 || nonce (12) || AES-256-GCM(KEK, nonce, aad, data key) (32) || tag (16)`,
//! 61 bytes, with `aad = label || repository id || data-key id`.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use encrypt_repo_format::{DATA_KEY_LEN, DataKey};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::provider::{WrapContext, WrappedKey};

const WRAP_VERSION: u8 = 1;
const WRAPPED_LEN: usize = 1 + NONCE_LEN + DATA_KEY_LEN + 16;

/// A 256-bit key-encryption key. Zeroized on drop; `Debug` shows only its fingerprint.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct Kek([u8; 32]);

impl Kek {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A public, one-way fingerprint: the first 8 bytes of HMAC-SHA-256(KEK, label), in hex.
    /// Lets a reader say "this is the wrong key file" without trying to unwrap.
    pub(crate) fn fingerprint(&self) -> String {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &self.0),
            b"encrypt-repo/v1 key fingerprint",
        );
        crate::hex(&tag.as_ref()[..8])
    }

    fn cipher(&self) -> LessSafeKey {
        // Only fails for a wrong key length; the array is 32 bytes.
        #[allow(clippy::expect_used)]
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte key"))
    }

    pub(crate) fn wrap(
        &self,
        provider: &str,
        label: &[u8],
        key: &DataKey,
        ctx: &WrapContext,
    ) -> Result<WrappedKey> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| encrypt_repo_format::Error::Random)?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(key.expose_secret());
        let tag = self
            .cipher()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(ctx.aad(label)),
                &mut out[1 + NONCE_LEN..],
            )
            .map_err(|_| Error::Provider {
                provider: provider.into(),
                message: "AES-GCM wrap failed".into(),
            })?;
        out.extend_from_slice(tag.as_ref());
        Ok(WrappedKey {
            provider: provider.into(),
            master_key: self.fingerprint(),
            ciphertext: out,
        })
    }

    pub(crate) fn unwrap(
        &self,
        provider: &str,
        label: &[u8],
        wrapped: &WrappedKey,
        ctx: &WrapContext,
    ) -> Result<DataKey> {
        let expected = self.fingerprint();
        if wrapped.provider != provider || wrapped.master_key != expected {
            return Err(Error::ForeignWrappedKey {
                found: format!("{} key {}", wrapped.provider, wrapped.master_key),
                expected: format!("{provider} key {expected}"),
            });
        }
        let failed = || Error::UnwrapFailed {
            provider: provider.into(),
            data_key_id: ctx.data_key_id.to_hex(),
        };
        let c = &wrapped.ciphertext;
        if c.len() != WRAPPED_LEN || c[0] != WRAP_VERSION {
            return Err(failed());
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&c[1..1 + NONCE_LEN]);
        let mut buf = Zeroizing::new(c[1 + NONCE_LEN..].to_vec());
        let plain = self
            .cipher()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(ctx.aad(label)),
                &mut buf,
            )
            .map_err(|_| failed())?;
        Ok(DataKey::try_from_slice(plain)?)
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek(fingerprint {})", self.fingerprint())
    }
}
