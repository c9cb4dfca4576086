//! Key material and per-object key derivation (FORMAT.md §3).

use aws_lc_rs::{digest, hkdf};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::header::{BOUND_FIELDS, COMMITMENT_LEN, HEADER_LEN};

/// Length of a data key.
pub const DATA_KEY_LEN: usize = 32;
/// Length of the per-object salt.
pub const SALT_LEN: usize = 32;
/// Length of a data-key id and of a repository id.
pub const ID_LEN: usize = 16;

/// HKDF-Expand label for the object key (FORMAT.md §3).
pub(crate) const LABEL_OBJECT_KEY: &[u8] = b"encrypt-repo/v1 object key\0";
/// HKDF-Expand label for the key commitment (FORMAT.md §3).
pub(crate) const LABEL_COMMITMENT: &[u8] = b"encrypt-repo/v1 commitment\0";

/// A 256-bit data key (DEK) in plaintext. Zeroized on drop; `Debug` never prints it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; DATA_KEY_LEN]);

impl DataKey {
    /// Wraps raw key bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Copies a key from a slice.
    ///
    /// # Errors
    /// [`Error::InvalidKeyLength`] unless `bytes` is exactly 32 bytes long.
    pub fn try_from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; DATA_KEY_LEN] = bytes.try_into().map_err(|_| Error::InvalidKeyLength)?;
        Ok(Self(arr))
    }

    /// A fresh key from the system CSPRNG.
    ///
    /// # Errors
    /// [`Error::Random`] if the system generator fails.
    pub fn generate() -> Result<Self> {
        let mut k = Self([0; DATA_KEY_LEN]);
        aws_lc_rs::rand::fill(&mut k.0).map_err(|_| Error::Random)?;
        Ok(k)
    }

    /// The raw key bytes, for a key provider to wrap. Handle with care.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

macro_rules! public_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// A fresh random value from the system CSPRNG.
            ///
            /// # Errors
            /// [`Error::Random`] if the system generator fails.
            pub fn random() -> Result<Self> {
                let mut b = [0u8; $len];
                aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Random)?;
                Ok(Self(b))
            }

            /// Lower-case hex.
            #[must_use]
            pub fn to_hex(&self) -> String {
                crate::hex(&self.0)
            }

            /// Parses lower- or upper-case hex of exactly the right length.
            #[must_use]
            pub fn from_hex(s: &str) -> Option<Self> {
                crate::unhex(s)?.try_into().ok().map(Self)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

public_id!(
    /// Identifies a data key in the repository keyring. Public; stored in every object header.
    DataKeyId,
    ID_LEN
);
public_id!(
    /// Identifies a repository. Public; bound into every object key.
    RepositoryId,
    ID_LEN
);
public_id!(
    /// The per-object random salt. Public; stored in the header.
    Salt,
    SALT_LEN
);

/// Where an object lives: what its key is bound to besides the data key and salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectContext<'a> {
    /// The repository the object belongs to.
    pub repository_id: RepositoryId,
    /// The object's path, or `None` if the repository opted out of path binding.
    pub path: Option<&'a str>,
}

impl<'a> ObjectContext<'a> {
    /// A context bound to `path` (the default).
    #[must_use]
    pub fn bound(repository_id: RepositoryId, path: &'a str) -> Self {
        Self {
            repository_id,
            path: Some(path),
        }
    }

    /// A context for a repository that opted out of path binding.
    #[must_use]
    pub fn unbound(repository_id: RepositoryId) -> Self {
        Self {
            repository_id,
            path: None,
        }
    }

    /// SHA-256 of the path, or 32 zero bytes when unbound (FORMAT.md §3).
    pub(crate) fn path_digest(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        if let Some(p) = self.path {
            out.copy_from_slice(digest::digest(&digest::SHA256, p.as_bytes()).as_ref());
        }
        out
    }
}

/// The derived per-object AES-256 key bytes. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct ObjectKeyBytes(pub(crate) [u8; 32]);

/// Derives (object key, commitment) for a header whose fields `header[8..32]` and salt are set.
///
/// `header` must be the full header with any commitment bytes (they are not read).
pub(crate) fn derive(
    data_key: &DataKey,
    header: &[u8; HEADER_LEN],
    salt: &Salt,
    ctx: &ObjectContext<'_>,
) -> (ObjectKeyBytes, [u8; COMMITMENT_LEN]) {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt.0).extract(&data_key.0);
    let bound = &header[BOUND_FIELDS];
    let repo = ctx.repository_id.0;
    let path = ctx.path_digest();
    let mut key = ObjectKeyBytes([0; 32]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    expand(&prk, LABEL_OBJECT_KEY, bound, &repo, &path, &mut key.0);
    expand(&prk, LABEL_COMMITMENT, bound, &repo, &path, &mut commitment);
    (key, commitment)
}

fn expand(
    prk: &hkdf::Prk,
    label: &[u8],
    bound: &[u8],
    repo: &[u8],
    path: &[u8],
    out: &mut [u8; 32],
) {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let info = [label, bound, repo, path];
    // Both calls only fail for output lengths above 255 * 32 bytes; 32 is a constant.
    #[allow(clippy::expect_used)]
    prk.expand(&info, Len32)
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-SHA-256 expand of 32 bytes cannot fail");
}
