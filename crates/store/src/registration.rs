//! The registration request (the crypto plugin's shape) and the stored registration.

use std::collections::BTreeMap;

use encrypt_repo_format::{ChunkSize, RepositoryId};
use encrypt_repo_keys::Settings;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A repository registration request, as in the crypto plugin:
///
/// ```json
/// { "type": "s3", "settings": { "bucket": "b" }, "encrypted": true,
///   "crypto_settings": { "key_provider_name": "main", "key_provider_type": "local",
///                        "settings": { "key_file": "/etc/er/master.key" } } }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// The storage service (`fs`, `memory`, `s3`, `azure`, `gcs`, `http`).
    #[serde(rename = "type")]
    pub store_type: String,
    /// Storage settings (bucket, base path…). Never credentials.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Whether objects are encrypted. `false` passes data through unchanged.
    pub encrypted: bool,
    /// Key provider settings; required when `encrypted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto_settings: Option<CryptoSettings>,
    /// Plaintext chunk size in bytes (a power of two, 64 KiB … 16 MiB; default 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u64>,
    /// Escrow (disaster-recovery) providers: each receives a wrapped copy of every data key,
    /// and the repository can be opened and read with any one of them alone
    /// ([`Repository::open_escrow`](crate::Repository::open_escrow)). An extension of the crypto
    /// plugin's request; omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escrow: Vec<CryptoSettings>,
    /// Bind each object's key to its path (default true). Off: objects survive server-side
    /// copies and renames, at the price of not detecting moved objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_binding: Option<bool>,
}

/// The crypto plugin's `crypto_settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoSettings {
    /// A name for the key provider, for people.
    pub key_provider_name: String,
    /// The provider type (`local`, `passphrase`, `aws-kms`, `openbao`, `exec`).
    pub key_provider_type: String,
    /// Provider settings.
    #[serde(default)]
    pub settings: Settings,
}

/// What is stored at `.encrypt-repo/registration.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Metadata format version (1).
    pub format: u32,
    /// Random repository id, bound into every object key.
    pub repository_id: String,
    /// The request, normalised: defaults filled in, provider settings reduced to identity
    /// settings plus generated ones.
    #[serde(flatten)]
    pub request: RegistrationRequest,
}

impl Registration {
    /// The repository id.
    ///
    /// # Errors
    /// [`Error::CorruptMetadata`] if it is not 32 hex digits.
    pub fn repository_id(&self) -> Result<RepositoryId> {
        RepositoryId::from_hex(&self.repository_id).ok_or_else(|| Error::CorruptMetadata {
            path: crate::repository::REGISTRATION.into(),
            message: "repository_id is not 32 hex digits".into(),
        })
    }

    /// The chunk size.
    ///
    /// # Errors
    /// [`Error::Setting`] for a size that is not an allowed power of two.
    pub fn chunk_size(&self) -> Result<ChunkSize> {
        chunk_size(self.request.chunk_size)
    }

    /// Whether objects are bound to their paths.
    #[must_use]
    pub fn path_binding(&self) -> bool {
        self.request.path_binding.unwrap_or(true)
    }
}

pub(crate) fn chunk_size(bytes: Option<u64>) -> Result<ChunkSize> {
    match bytes {
        None => Ok(ChunkSize::DEFAULT),
        Some(b) => ChunkSize::from_bytes(b).map_err(|_| Error::Setting {
            setting: "chunk_size".into(),
            problem: format!("{b} is not a power of two from 65536 to 16777216"),
        }),
    }
}

/// Compares a stored registration with a new request; names the first field that differs.
pub(crate) fn compare(
    stored: &RegistrationRequest,
    requested: &RegistrationRequest,
    identity: &[&str],
) -> Result<()> {
    let conflict = |field: &str, a: String, b: String| Error::RegistrationConflict {
        field: field.into(),
        registered: a,
        requested: b,
    };
    if stored.store_type != requested.store_type {
        return Err(conflict(
            "type",
            stored.store_type.clone(),
            requested.store_type.clone(),
        ));
    }
    if stored.encrypted != requested.encrypted {
        return Err(conflict(
            "encrypted",
            stored.encrypted.to_string(),
            requested.encrypted.to_string(),
        ));
    }
    let size = |r: &RegistrationRequest| chunk_size(r.chunk_size).map(|c| c.bytes()).unwrap_or(0);
    if requested.chunk_size.is_some() && size(stored) != size(requested) {
        return Err(conflict(
            "chunk_size",
            size(stored).to_string(),
            size(requested).to_string(),
        ));
    }
    let binding = |r: &RegistrationRequest| r.path_binding.unwrap_or(true);
    if requested.path_binding.is_some() && binding(stored) != binding(requested) {
        return Err(conflict(
            "path_binding",
            binding(stored).to_string(),
            binding(requested).to_string(),
        ));
    }
    let escrow = |r: &RegistrationRequest| {
        r.escrow
            .iter()
            .map(|e| format!("{}:{}", e.key_provider_name, e.key_provider_type))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if requested.encrypted && escrow(stored) != escrow(requested) {
        return Err(conflict("escrow", escrow(stored), escrow(requested)));
    }
    match (&stored.crypto_settings, &requested.crypto_settings) {
        (Some(a), Some(b)) => {
            if a.key_provider_type != b.key_provider_type {
                return Err(conflict(
                    "crypto_settings.key_provider_type",
                    a.key_provider_type.clone(),
                    b.key_provider_type.clone(),
                ));
            }
            if a.key_provider_name != b.key_provider_name {
                return Err(conflict(
                    "crypto_settings.key_provider_name",
                    a.key_provider_name.clone(),
                    b.key_provider_name.clone(),
                ));
            }
            for key in identity {
                if let (Some(x), Some(y)) = (a.settings.get(*key), b.settings.get(*key))
                    && x != y
                {
                    return Err(conflict(
                        &format!("crypto_settings.settings.{key}"),
                        x.clone(),
                        y.clone(),
                    ));
                }
            }
            Ok(())
        }
        (None, None) => Ok(()),
        (a, b) => Err(conflict(
            "crypto_settings",
            present(a.is_some()),
            present(b.is_some()),
        )),
    }
}

fn present(p: bool) -> String {
    if p { "present".into() } else { "absent".into() }
}
