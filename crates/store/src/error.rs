//! The store crate's error type, and its conversion into `object_store::Error`.

use encrypt_repo_format::DataKeyId;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a repository. Messages name the object, the data key and the provider,
/// never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object could not be opened or verified.
    #[error("object {path}: {source}")]
    Object {
        /// The object's location.
        path: String,
        /// The format-level reason.
        #[source]
        source: encrypt_repo_format::Error,
    },
    /// The data key an object names has no keyring record (deleted, or the object
    /// belongs to another repository).
    #[error(
        "object {path}: data key {data_key_id} is not in the repository keyring (deleted, or the object comes from another repository)"
    )]
    MissingDataKey {
        /// The object's location.
        path: String,
        /// The data key's id.
        data_key_id: DataKeyId,
    },
    /// The data key an object names could not be unwrapped from its keyring record (a record
    /// copied from another repository, or wrapped under another master key).
    #[error("object {path}: data key {data_key_id} could not be unwrapped: {source}")]
    DataKey {
        /// The object's location.
        path: String,
        /// The data key's id.
        data_key_id: DataKeyId,
        /// The provider's answer.
        #[source]
        source: encrypt_repo_keys::Error,
    },
    /// The data key an object names was shredded: its keyring record is a tombstone.
    #[error(
        "object {path}: data key {data_key_id} was shredded (at {shredded_unix} s since the epoch); the object can never be decrypted again"
    )]
    DataKeyShredded {
        /// The object.
        path: String,
        /// The shredded data key.
        data_key_id: DataKeyId,
        /// When it was shredded, seconds since the Unix epoch.
        shredded_unix: u64,
    },
    /// The repository was opened read-only (with an escrow provider).
    #[error("repository is read-only: {0}")]
    ReadOnly(String),
    /// A data key id that is not in the keyring.
    #[error("data key {0} is not in the keyring")]
    UnknownDataKey(DataKeyId),
    /// The object was sealed with another chunk size than the repository's.
    #[error("object {path}: chunk size {found} differs from the repository's {expected}")]
    ChunkSizeMismatch {
        /// The object's location.
        path: String,
        /// Chunk size in the header.
        found: usize,
        /// The repository's chunk size.
        expected: usize,
    },
    /// The repository is locked because its key provider reported the key unusable.
    #[error("repository {repository} is locked: {reason}")]
    Locked {
        /// Repository id.
        repository: String,
        /// Why (names provider and key).
        reason: String,
    },
    /// The repository is not registered at this location.
    #[error(
        "no encrypt-repo repository is registered here (missing {0}); run `encrypt-repo init` first"
    )]
    NotRegistered(String),
    /// Re-registration with different settings.
    #[error(
        "repository is already registered with a different {field}: registered {registered}, requested {requested}; changing it would make existing data unreadable"
    )]
    RegistrationConflict {
        /// The field that differs.
        field: String,
        /// Registered value.
        registered: String,
        /// Requested value.
        requested: String,
    },
    /// A registration or keyring record could not be parsed.
    #[error("corrupt repository metadata {path}: {message}")]
    CorruptMetadata {
        /// The record's location.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Writing under the reserved prefix through the encrypting store.
    #[error("{0} is inside the reserved prefix .encrypt-repo/")]
    Reserved(String),
    /// An invalid requested range.
    #[error("object {path}: invalid range: {message}")]
    Range {
        /// The object's location.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Invalid repository settings.
    #[error("invalid repository setting {setting}: {problem}")]
    Setting {
        /// The setting.
        setting: String,
        /// What is wrong.
        problem: String,
    },
    /// A key provider error.
    #[error(transparent)]
    Keys(#[from] encrypt_repo_keys::Error),
    /// A storage error.
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

pub(crate) const STORE: &str = "EncryptedStore";

impl From<Error> for object_store::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(inner) => inner,
            Error::Reserved(path) => Self::NotFound {
                path: path.clone(),
                source: Box::new(Error::Reserved(path)),
            },
            other => Self::Generic {
                store: STORE,
                source: Box::new(other),
            },
        }
    }
}
