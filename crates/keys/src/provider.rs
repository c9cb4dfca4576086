//! The `KeyProvider` trait and the values that cross it.

use std::collections::BTreeMap;

use encrypt_repo_format::{DataKey, DataKeyId, RepositoryId};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A provider's settings, as in the crypto plugin's `crypto_settings.settings`: string keys and
/// string values.
pub type Settings = BTreeMap<String, String>;

/// What a wrapped data key is bound to. Providers must authenticate it (AES-GCM AAD, or a KMS
/// encryption context), so a keyring record copied to another repository or renamed to another
/// data-key id does not unwrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrapContext {
    /// The repository the data key belongs to.
    pub repository_id: RepositoryId,
    /// The data key's id.
    pub data_key_id: DataKeyId,
}

impl WrapContext {
    /// The context as bytes for an AEAD's associated data: `label || repository id || data-key id`.
    #[must_use]
    pub fn aad(&self, label: &[u8]) -> Vec<u8> {
        [label, &self.repository_id.0, &self.data_key_id.0].concat()
    }

    /// The context as a KMS-style encryption context (string pairs).
    #[must_use]
    pub fn encryption_context(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "encrypt-repo:repository".to_owned(),
                self.repository_id.to_hex(),
            ),
            (
                "encrypt-repo:data-key".to_owned(),
                self.data_key_id.to_hex(),
            ),
        ])
    }
}

/// A data key wrapped by one provider. Safe to store: it reveals nothing without the provider.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// Provider type name (`local`, `passphrase`, `aws-kms`, …).
    pub provider: String,
    /// Which master key wrapped it (fingerprint, ARN, transit key name and version, …).
    pub master_key: String,
    /// The provider's ciphertext, opaque to everyone else.
    #[serde(with = "hex_bytes")]
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("provider", &self.provider)
            .field("master_key", &self.master_key)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// A freshly generated data key: plaintext for immediate use, wrapped for the keyring.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The plaintext key (zeroized on drop).
    pub plaintext: DataKey,
    /// Its wrapped form.
    pub wrapped: WrappedKey,
}

/// Whether a provider's key can be used now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyStatus {
    /// Usable for wrap and unwrap.
    Usable {
        /// Rotation information, when the provider has it.
        rotation: Option<RotationInfo>,
    },
    /// Disabled (may be re-enabled).
    Disabled,
    /// Revoked or scheduled for deletion.
    Revoked,
    /// The caller's credentials may not use the key.
    AccessDenied,
    /// The key does not exist.
    NotFound,
}

impl KeyStatus {
    /// True for [`KeyStatus::Usable`].
    #[must_use]
    pub fn is_usable(&self) -> bool {
        matches!(self, Self::Usable { .. })
    }
}

/// Master-key rotation facts reported by a provider.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RotationInfo {
    /// Whether automatic rotation is on.
    pub automatic: Option<bool>,
    /// The current key version, for providers with versions.
    pub current_version: Option<u64>,
    /// When the key was last rotated (RFC 3339), if known.
    pub last_rotated: Option<String>,
}

/// A source of data-key wrapping: a KMS, a local master key, a passphrase, a program.
///
/// # Contract
///
/// - [`wrap`](KeyProvider::wrap) and [`unwrap`](KeyProvider::unwrap) are inverse for the same
///   [`WrapContext`], and `unwrap` **must fail** for any other context: the context is
///   authenticated (AEAD associated data or KMS encryption context), not just stored.
/// - `unwrap` input is attacker-controlled (it is read from the object store): it must not panic
///   on any bytes and must reject anything it did not produce.
/// - Answers that mean the key itself cannot be used — disabled, revoked, access denied, not
///   found, pending deletion — are reported as [`Error::KeyUnavailable`](crate::Error), so the
///   repository can lock; transient failures use other variants.
/// - No method logs or returns key material, except `generate_data_key` and `unwrap`, whose
///   plaintext is a zeroizing [`DataKey`].
///
/// ```
/// use encrypt_repo_keys::{KeyProvider, KeyStatus, WrapContext, WrappedKey, Result, Error};
/// use encrypt_repo_format::DataKey;
///
/// /// A toy provider that "wraps" by storing the key in the clear. Never do this.
/// #[derive(Debug)]
/// struct Cleartext;
///
/// #[async_trait::async_trait]
/// impl KeyProvider for Cleartext {
///     fn type_name(&self) -> &str { "cleartext" }
///     fn master_key(&self) -> String { "none".into() }
///     async fn wrap(&self, key: &DataKey, _: &WrapContext) -> Result<WrappedKey> {
///         Ok(WrappedKey { provider: "cleartext".into(), master_key: "none".into(),
///                         ciphertext: key.expose_secret().to_vec() })
///     }
///     async fn unwrap(&self, w: &WrappedKey, _: &WrapContext) -> Result<DataKey> {
///         Ok(DataKey::try_from_slice(&w.ciphertext)?)
///     }
///     async fn status(&self) -> Result<KeyStatus> { Ok(KeyStatus::Usable { rotation: None }) }
/// }
/// ```
#[async_trait::async_trait]
pub trait KeyProvider: std::fmt::Debug + Send + Sync + 'static {
    /// The registry type name (`local`, `passphrase`, `aws-kms`, `openbao`, `exec`).
    fn type_name(&self) -> &str;

    /// The master key's identity, for messages and for [`WrappedKey::master_key`].
    fn master_key(&self) -> String;

    /// Generates a fresh 256-bit data key and wraps it. The default draws the key from the local
    /// CSPRNG and calls [`wrap`](KeyProvider::wrap); KMS providers override it to have the KMS
    /// generate the key.
    ///
    /// # Errors
    /// Provider failures; [`Error::KeyUnavailable`](crate::Error) if the key cannot be used.
    async fn generate_data_key(&self, ctx: &WrapContext) -> Result<GeneratedKey> {
        let plaintext = DataKey::generate()?;
        let wrapped = self.wrap(&plaintext, ctx).await?;
        Ok(GeneratedKey { plaintext, wrapped })
    }

    /// Wraps an existing data key (for escrow copies and re-wrap).
    ///
    /// # Errors
    /// Provider failures; [`Error::KeyUnavailable`](crate::Error) if the key cannot be used.
    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<WrappedKey>;

    /// Unwraps a data key wrapped by this provider under `ctx`.
    ///
    /// # Errors
    /// [`Error::UnwrapFailed`](crate::Error) for a wrong context or tampered input;
    /// [`Error::KeyUnavailable`](crate::Error) if the key cannot be used.
    async fn unwrap(&self, wrapped: &WrappedKey, ctx: &WrapContext) -> Result<DataKey>;

    /// Reports whether the master key is usable now.
    ///
    /// # Errors
    /// Only when the provider cannot be asked at all (network, credentials missing).
    async fn status(&self) -> Result<KeyStatus>;
}

/// Serde helper: bytes as lower-case hex strings.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::hex(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        crate::unhex(&s).ok_or_else(|| D::Error::custom("invalid hex"))
    }
}
