//! The `azure-key-vault` key provider for encrypt-repo: data keys are wrapped with
//! `RSA-OAEP-256` under an RSA key in Azure Key Vault (or Managed HSM) by its `wrapkey` /
//! `unwrapkey` operations, and bound to their repository and data-key id by a keyed MAC stored
//! beside the wrapped key.
//!
//! # Settings
//!
//! | setting | kind | meaning |
//! |---|---|---|
//! | `key_id` | identity, required | the key identifier URL, `https://{vault}.vault.azure.net/keys/{name}` or `…/keys/{name}/{version}`; any host (sovereign clouds, private endpoints, Managed HSM); `https://` only |
//! | `authority_host` | access, optional | the Entra ID authority, default `https://login.microsoftonline.com`, else `AZURE_AUTHORITY_HOST` (`https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`, a test server) |
//! | `ca_file` | access, optional | a PEM file of extra CA certificates trusted for the vault and the authority (added to the system's roots) |
//!
//! Without a version in `key_id`, each wrap uses the key's **current** version and records it
//! in the stored record, so data keys wrapped before a rotation still unwrap with the version
//! that wrapped them. With a version, every wrap uses that version.
//!
//! ```json
//! {"key_provider_type": "azure-key-vault",
//!  "settings": {"key_id": "https://backups.vault.azure.net/keys/repo-key"}}
//! ```
//!
//! ```no_run
//! # async fn example() -> encrypt_repo_keys::Result<()> {
//! use std::sync::Arc;
//! use encrypt_repo_keys::{ProviderFactory, ProviderRegistry, Settings};
//! use encrypt_repo_kms_azure::AzureKeyVaultFactory;
//!
//! let mut registry = ProviderRegistry::with_builtin();
//! registry.register(Arc::new(AzureKeyVaultFactory::new()));
//! let mut settings = Settings::from([(
//!     "key_id".to_owned(),
//!     "https://backups.vault.azure.net/keys/repo-key".to_owned(),
//! )]);
//! registry.get("azure-key-vault")?.prepare(&mut settings).await?; // checks the key
//! let provider = registry.open("azure-key-vault", &settings).await?;
//! # Ok(()) }
//! ```
//!
//! # Credentials
//!
//! Never settings (a settings map naming one is refused): they come from the environment, the
//! first complete set in this order, as azure-identity's `DefaultAzureCredential` tries them.
//!
//! | credential | variables | token request |
//! |---|---|---|
//! | client secret | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` | `POST {authority}/{tenant}/oauth2/v2.0/token`, `client_credentials` with `client_secret` |
//! | client certificate | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_CERTIFICATE_PATH` (unencrypted PEM: certificate and RSA private key) | same, with an RS256 `client_assertion` JWT whose header carries `x5t#S256` and `x5t` |
//! | workload identity | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE` | same, `client_assertion` = the file's contents (read for every token: it is rotated) |
//! | managed identity (App Service, Functions, Container Apps) | `IDENTITY_ENDPOINT`, `IDENTITY_HEADER` (optional `AZURE_CLIENT_ID` for a user-assigned identity) | `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=…` with `X-IDENTITY-HEADER` |
//! | managed identity (VM, VMSS, AKS) | none; optional `AZURE_CLIENT_ID`; `AZURE_POD_IDENTITY_AUTHORITY_HOST` replaces the IMDS address `http://169.254.169.254` | `GET {imds}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=…` with `Metadata: true` |
//!
//! The first call of a provider is sent without a token; the vault answers 401 with
//! `WWW-Authenticate: Bearer authorization="{authority}/{tenant}", resource="…"`, and the token
//! is requested for that resource (`{resource}/.default`) from that tenant. Only the tenant is
//! taken from the challenge: tokens are always requested from `authority_host`, so a vault
//! cannot make the provider send a secret elsewhere; the resource must be a Key Vault or
//! Managed HSM resource of a known cloud or a parent domain of the vault's host, so a vault
//! cannot obtain a token for another service; a tenant other than `AZURE_TENANT_ID` is refused
//! unless listed in `AZURE_ADDITIONALLY_ALLOWED_TENANTS` (`;`-separated, or `*`). Tokens are
//! cached and renewed 5 minutes before they expire (at half their lifetime if shorter than
//! 10 minutes); a 401 on a cached token takes a fresh one, once.
//!
//! # Permissions
//!
//! On the key: `keys/get`, `keys/wrapKey` and `keys/unwrapKey` (access policy), or the RBAC role
//! *Key Vault Crypto Service Encryption User* (`Microsoft.KeyVault/vaults/keys/read`,
//! `…/keys/wrap/action`, `…/keys/unwrap/action`). The key must be `RSA` or `RSA-HSM` with the
//! `wrapKey` and `unwrapKey` operations permitted; registration (`prepare`) refuses an EC or
//! symmetric key naming `key_id`, and a disabled or expired one naming its state.
//!
//! # Binding and the stored record
//!
//! Key Vault's `wrapkey` has no associated data. The repository and data-key ids are bound by a
//! MAC stored beside the wrapped key:
//!
//! ```text
//! MAC = HMAC-SHA-256(key = the 32-byte data key,
//!                    message = "encrypt-repo/azure-key-vault/v1" || 0x00   (32 bytes, MAC_LABEL)
//!                              || repository id (16 bytes) || data-key id (16 bytes))
//! ```
//!
//! After `unwrapkey` the MAC is recomputed and compared in constant time; a record copied to
//! another repository or renamed to another data-key id fails with `UnwrapFailed`. (RSA wrapping
//! is a public-key operation: anyone holding the public key can wrap a key they chose and MAC
//! it. The MAC binds a record to its ids; keeping foreign records out of the keyring is the
//! store's write access, as for every provider.)
//!
//! A keyring copy names the master key as `https://{vault}/keys/{name}`, `key_id` without a
//! version (`WrappedKey::master_key`: every version is the same master key). Its ciphertext
//! (`WrappedKey::ciphertext`, hex in the keyring JSON) is, in layout 1
//! ([`record::LAYOUT_V1`], parsed and written by [`record::Record`]):
//!
//! ```text
//! offset   size  field
//! 0        1     0x01, the layout version
//! 1        1     L = 32, length of the key version
//! 2        L     the key version that wrapped it, ASCII lower-case hex
//! 2+L      2     W, big-endian: length of the wrapped key (the RSA modulus size: 256, 384, 512)
//! 4+L      W     the RSA-OAEP-256 ciphertext of the data key, exactly as wrapkey returned it
//! 4+L+W    32    the MAC above
//! ```
//!
//! To recover a data key without encrypt-repo: take the W bytes at offset 4+L and the version,
//! and `az keyvault key decrypt --id https://{vault}/keys/{name}/{version} --algorithm
//! RSA-OAEP-256 --value {base64 of the W bytes} --data-type base64`, or
//! `POST https://{vault}/keys/{name}/{version}/unwrapkey?api-version=2025-07-01` with
//! `{"alg":"RSA-OAEP-256","value":"{base64url of the W bytes}"}`; the answer's `value` is the
//! data key (base64url). Check the MAC above to be sure of the record's ids.
//!
//! # Errors, status and locking
//!
//! `wrap` first reads the key and refuses (`KeyUnavailable`, nothing written) when its
//! attributes make it unusable, because Key Vault itself still wraps under a disabled key and
//! refuses only `unwrapkey`. 403 and 404 answers are `KeyUnavailable` (the repository locks);
//! 400 on `unwrapkey`, a record naming a version the key does not have, a malformed record or a
//! wrong MAC is `UnwrapFailed`. 429 and 5xx answers and refused connections (except to IMDS,
//! which off Azure is simply absent) are retried with exponential backoff from 250 ms (or
//! `Retry-After`, at most 10 s), [`MAX_ATTEMPTS`] attempts in all, then reported as `Provider`;
//! each attempt has a timeout (30 s by default), which is not retried. A token refusal, a
//! garbage answer and a timeout are `Provider` errors. Messages name the key and Key Vault's or
//! Entra ID's error code (`Forbidden (KeyDisabled)`, `invalid_client: AADSTS7000215…`), never a
//! token, a secret or key material. `status` maps the key's attributes as
//! [`AzureKeyVaultProvider`]'s `status` documents.
//!
//! # Why a REST client and not the Azure SDK for Rust
//!
//! `azure_security_keyvault_keys` 1.0 and `azure_identity` 1.0 exist, and can be pointed at any
//! vault URL, at a custom authority host (`CloudConfiguration::Custom`) and, through a custom
//! transport, at an extra CA. They are not used because: their client-certificate credential
//! needs OpenSSL (a second crypto and TLS stack beside rustls over aws-lc-rs, which the
//! workspace keeps to one); they bring their own HTTP pipeline, retry policy and token cache,
//! so request bodies holding a data key could not be kept in zeroizing buffers, answers could
//! not be size-capped, and retries and timeouts would not be the bounded ones documented here;
//! and the provider needs four calls (token, get key, wrapkey, unwrapkey). So this crate is a
//! small REST client on the reqwest (rustls) stack the workspace already has, with
//! `api-version` [`API_VERSION`], the newest stable version and the one the Python
//! `azure-keyvault-keys` 4.11 and the Rust `azure_security_keyvault_keys` 1.0 default to.
//!
//! Data keys are generated locally (aws-lc-rs' CSPRNG, the trait's default `generate_data_key`):
//! Key Vault has no data-key generation.

mod credential;
mod error;
mod http;
mod provider;
pub mod record;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_keys::{KeyProvider, ProviderFactory, Result, Settings};

pub use credential::{DEFAULT_SCOPE, IMDS_HOST, REFRESH_MARGIN};
pub use http::{MAX_ATTEMPTS, MAX_RESPONSE_LEN};
pub use provider::{AzureKeyVaultProvider, KeyInfo};
pub use settings::DEFAULT_AUTHORITY_HOST;

use credential::EnvFn;
use http::HttpOptions;
use settings::{AzureSettings, KEY_ID};

/// Provider type name.
pub const TYPE: &str = "azure-key-vault";
/// The Key Vault REST `api-version` of every call.
pub const API_VERSION: &str = "2025-07-01";
/// The wrapping algorithm.
pub const WRAP_ALGORITHM: &str = "RSA-OAEP-256";
/// Limit for each HTTP attempt, from connecting to the last byte of the answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// First backoff between attempts (doubled each time).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(250);

/// Builds [`AzureKeyVaultProvider`]s from settings and the Azure environment.
///
/// [`AzureKeyVaultFactory::new`] reads credentials from the process environment;
/// [`AzureKeyVaultFactory::with_env`] from a lookup function instead (tests, or a program that
/// keeps Azure variables apart from its own environment).
#[derive(Clone)]
pub struct AzureKeyVaultFactory {
    env: EnvFn,
    options: HttpOptions,
}

impl std::fmt::Debug for AzureKeyVaultFactory {
    // Not derived: the environment lookup is a closure (and the environment holds secrets).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureKeyVaultFactory")
            .field("timeout", &self.options.timeout)
            .field("retry_delay", &self.options.retry_delay)
            .finish_non_exhaustive()
    }
}

impl Default for AzureKeyVaultFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl AzureKeyVaultFactory {
    /// A factory reading `AZURE_*` (and `IDENTITY_*`) variables from the process environment.
    #[must_use]
    pub fn new() -> Self {
        Self::with_env(|name| std::env::var(name).ok())
    }

    /// A factory reading those variables through `env` (`None` = not set).
    #[must_use]
    pub fn with_env(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            env: Arc::new(env),
            options: HttpOptions {
                timeout: DEFAULT_TIMEOUT,
                retry_delay: DEFAULT_RETRY_DELAY,
            },
        }
    }

    /// Sets the limit of each HTTP attempt (default [`DEFAULT_TIMEOUT`]).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// Sets the first backoff between attempts (default [`DEFAULT_RETRY_DELAY`]).
    #[must_use]
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.options.retry_delay = delay;
        self
    }

    /// Builds a provider without calling the vault (reads `ca_file` and a client certificate).
    ///
    /// # Errors
    /// [`Error::Setting`](encrypt_repo_keys::Error) for invalid settings; `Io` or `Provider` for
    /// an unreadable CA file or an incomplete credential.
    pub async fn provider(&self, settings: &Settings) -> Result<AzureKeyVaultProvider> {
        let s = AzureSettings::parse(settings, (self.env)("AZURE_AUTHORITY_HOST"))?;
        AzureKeyVaultProvider::new(&s, &self.env, self.options).await
    }
}

#[async_trait::async_trait]
impl ProviderFactory for AzureKeyVaultFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn identity_settings(&self) -> &'static [&'static str] {
        &[KEY_ID]
    }

    fn key_name_settings(&self) -> &'static [&'static str] {
        &[KEY_ID]
    }

    /// Validates the settings and reads the key once: it must be RSA, enabled, inside its
    /// validity dates and permit `wrapKey` and `unwrapKey`. Adds no setting (the version is
    /// recorded per data key) and creates no key material, so returns `false`.
    async fn prepare(&self, settings: &mut Settings) -> Result<bool> {
        self.provider(settings).await?.check_registrable().await?;
        Ok(false)
    }

    /// Builds the provider without a network call.
    async fn open(&self, settings: &Settings) -> Result<Arc<dyn KeyProvider>> {
        Ok(Arc::new(self.provider(settings).await?))
    }
}
