//! The keys crate's error type.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from key providers, the registry and the caches. None of them carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The provider answered that the key cannot be used (disabled, revoked, access denied, not
    /// found, pending deletion, unavailable). A repository that sees this locks itself.
    #[error("key provider {provider} reports key {key} unavailable: {reason}")]
    KeyUnavailable {
        /// Provider type name.
        provider: String,
        /// Key identity as registered (id, ARN, key name, fingerprint).
        key: String,
        /// What the provider said, without secrets.
        reason: String,
    },
    /// The master key is usable, but the version of it that wrapped this data key may no longer
    /// decrypt (for example an OpenBao transit key whose `min_decryption_version` was raised
    /// past it). Only data keys wrapped under retired versions are affected, so this does not
    /// lock the repository.
    #[error(
        "key provider {provider}: the version of key {key} that wrapped this data key is retired: {reason}"
    )]
    KeyVersionRetired {
        /// Provider type name.
        provider: String,
        /// Key identity as registered.
        key: String,
        /// What the provider said, without secrets.
        reason: String,
    },
    /// A wrapped data key did not authenticate: wrong master key, wrong context, or tampering.
    #[error(
        "key provider {provider} could not unwrap data key {data_key_id}: wrong master key, wrong repository, or a tampered keyring record"
    )]
    UnwrapFailed {
        /// Provider type name.
        provider: String,
        /// The data key that failed (hex).
        data_key_id: String,
    },
    /// The master key given when opening (a key file, a passphrase) is not the one the
    /// repository was registered with: nothing it wrapped would unwrap.
    #[error("key provider {provider}: {setting} {detail}")]
    WrongMasterKey {
        /// Provider type name.
        provider: String,
        /// The setting that supplied the key (`key_file`, `passphrase`).
        setting: String,
        /// What does not match (names the file; never key material).
        detail: String,
    },
    /// A wrapped key belongs to another provider instance or master key.
    #[error("wrapped data key was made by {found}, not by this provider ({expected})")]
    ForeignWrappedKey {
        /// Who wrapped it.
        found: String,
        /// This provider.
        expected: String,
    },
    /// Unknown provider type.
    #[error("unknown key provider type {name:?}; known types: {}", known.join(", "))]
    UnknownProvider {
        /// The requested type.
        name: String,
        /// Registered types.
        known: Vec<String>,
    },
    /// A setting is missing or invalid.
    #[error("key provider {provider}: setting {setting:?} {problem}")]
    Setting {
        /// Provider type name.
        provider: String,
        /// The setting's name.
        setting: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Reading or creating a key file, or running a passphrase command, failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (names the file or command, never a secret).
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The provider could not be reached or failed for a transient reason.
    #[error("key provider {provider} failed: {message}")]
    Provider {
        /// Provider type name.
        provider: String,
        /// What went wrong, without secrets.
        message: String,
    },
    /// A format-level failure (random generator, key length).
    #[error(transparent)]
    Format(#[from] encrypt_repo_format::Error),
}
