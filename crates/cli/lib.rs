//! encrypt-repo: a client-side encrypting object-storage repository.
//!
//! This crate is the facade over the workspace libraries; see the README and ARCHITECTURE.md.
//! [`provider_registry`] knows every key provider compiled in: `local`, `passphrase` and `exec`
//! always; `aws-kms`, `openbao`, `azure-key-vault` and `gcp-kms` with the cargo features of the
//! same names (all on by default).

pub use encrypt_repo_format as format;
pub use encrypt_repo_keys as keys;
#[cfg(feature = "aws-kms")]
pub use encrypt_repo_kms_aws as kms_aws;
#[cfg(feature = "azure-key-vault")]
pub use encrypt_repo_kms_azure as kms_azure;
#[cfg(feature = "gcp-kms")]
pub use encrypt_repo_kms_gcp as kms_gcp;
#[cfg(feature = "openbao")]
pub use encrypt_repo_kms_openbao as kms_openbao;
pub use encrypt_repo_store as store;

pub mod snapshot;

/// A registry with every key provider compiled into this build.
///
/// ```
/// let known = encrypt_repo::provider_registry().known();
/// assert!(known.iter().any(|t| t == "local"));
/// ```
#[must_use]
pub fn provider_registry() -> keys::ProviderRegistry {
    #[allow(unused_mut)] // without the cloud features nothing is added
    let mut registry = keys::ProviderRegistry::with_builtin();
    #[cfg(feature = "aws-kms")]
    registry.register(std::sync::Arc::new(kms_aws::AwsKmsFactory::new()));
    #[cfg(feature = "openbao")]
    registry.register(std::sync::Arc::new(kms_openbao::OpenBaoFactory));
    #[cfg(feature = "azure-key-vault")]
    registry.register(std::sync::Arc::new(kms_azure::AzureKeyVaultFactory::new()));
    #[cfg(feature = "gcp-kms")]
    registry.register(std::sync::Arc::new(kms_gcp::GcpKmsFactory::new()));
    registry
}
