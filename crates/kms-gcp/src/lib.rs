//! The `gcp-kms` key provider for encrypt-repo: data keys are encrypted by Google Cloud KMS
//! (`cryptoKeys.encrypt` / `cryptoKeys.decrypt`) under one symmetric CryptoKey, bound to their
//! repository and data-key id by *additional authenticated data*, with CRC32C integrity checks
//! on every request and answer.
//!
//! # Settings
//!
//! | setting | kind | meaning |
//! |---|---|---|
//! | `key_name` | identity, required | the CryptoKey resource name, `projects/P/locations/L/keyRings/R/cryptoKeys/K` (not a `…/cryptoKeyVersions/N`) |
//! | `endpoint` | access, default `https://cloudkms.googleapis.com` | the Cloud KMS endpoint (Private Service Connect, a test server); `https://`, or `http://` on loopback only |
//! | `ca_file` | access, optional | PEM bundle of extra trusted roots for an `https://` endpoint (added to the platform's) |
//!
//! Credentials are **never** settings (a settings map naming one is refused). They come from
//! Application Default Credentials, in this order:
//!
//! 1. `GOOGLE_APPLICATION_CREDENTIALS`: the path of a service-account key file (JSON, `"type":
//!    "service_account"`). Its `private_key` (PEM PKCS#8 RSA) signs an RS256 JWT assertion
//!    (`iss` = `client_email`, `aud` = `https://oauth2.googleapis.com/token`, `scope` =
//!    `https://www.googleapis.com/auth/cloudkms`, valid one hour), which is exchanged at the
//!    file's `token_uri` (default `https://oauth2.googleapis.com/token`; `https://`, or `http://`
//!    on loopback) with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`.
//! 2. Otherwise the metadata server of Compute Engine, GKE, Cloud Run and Cloud Functions:
//!    `GET http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token`
//!    with `Metadata-Flavor: Google`; `GCE_METADATA_HOST` replaces the host, as in google-auth.
//!
//! `gcloud auth application-default login` user credentials (`authorized_user`) are refused with
//! a message saying so: repositories are opened by services, which should use a service account.
//! Access tokens are cached and replaced 60 s before they expire (one fetch for any number of
//! concurrent calls); a 401 answer drops the cached token and retries once with a new one.
//!
//! # IAM permissions
//!
//! On the CryptoKey: `cloudkms.cryptoKeys.get` (registration and `status`),
//! `cloudkms.cryptoKeyVersions.useToEncrypt` (new data keys, escrow, re-wrap to this key) and
//! `cloudkms.cryptoKeyVersions.useToDecrypt` (reading). The predefined role
//! `roles/cloudkms.cryptoKeyEncrypterDecrypter` holds the last two; `roles/cloudkms.viewer` the
//! first.
//!
//! # What is sent and stored
//!
//! Cloud KMS has no data-key call: a new data key comes from the local CSPRNG (aws-lc-rs) and is
//! encrypted like any other. `encrypt` carries the 32-byte data key as `plaintext` and, as
//! `additionalAuthenticatedData`, exactly these 61 bytes ([`AAD_LABEL`] then
//! [`WrapContext::aad`]'s ids):
//!
//! ```text
//! "encrypt-repo/v1 gcp-kms wrap" 0x00     29 bytes: the label, NUL-terminated
//! repository id                            16 bytes
//! data-key id                              16 bytes
//! ```
//!
//! with `plaintextCrc32c` and `additionalAuthenticatedDataCrc32c` (CRC32C, as decimal strings).
//! The answer must say `verifiedPlaintextCrc32c` and `verifiedAdditionalAuthenticatedDataCrc32c`
//! and carry a `ciphertextCrc32c` matching the ciphertext; `decrypt` sends `ciphertextCrc32c` and
//! the AAD's CRC and checks `plaintextCrc32c`. A mismatch is an error and is not retried.
//!
//! The keyring record ([`WrappedKey`]) holds `provider` = `gcp-kms`, `master_key` = the
//! CryptoKeyVersion that encrypted (`projects/…/cryptoKeys/K/cryptoKeyVersions/N`, from the
//! answer's `name`) and `ciphertext` = Cloud KMS's ciphertext, byte for byte (hex in the record).
//! Decrypt names the CryptoKey, never the version: Cloud KMS finds the version in its
//! ciphertext, so rotating the key (a new primary version) is transparent and old data keys
//! still decrypt while their version is enabled. Without encrypt-repo, a data key is recovered
//! with the record's hex ciphertext decoded to `ct.bin` and the 61 AAD bytes in `aad.bin`:
//!
//! ```text
//! gcloud kms decrypt --key K --keyring R --location L --project P \
//!   --ciphertext-file ct.bin --additional-authenticated-data-file aad.bin --plaintext-file dek.bin
//! ```
//!
//! # Errors and locking
//!
//! `PERMISSION_DENIED` (403), `NOT_FOUND` (404) and `FAILED_PRECONDITION` (a disabled or
//! destroyed version) are [`Error::KeyUnavailable`](encrypt_repo_keys::Error) and lock the
//! repository — except a decrypt refused because an *old* version is disabled while the primary
//! is enabled, which is `KeyVersionRetired` (only those data keys are affected). `INVALID_ARGUMENT`
//! on decrypt (wrong AAD, tampered ciphertext) is `UnwrapFailed`. 429 and 5xx answers and
//! transport failures are retried with exponential backoff and jitter (from 500 ms, at most 8 s),
//! [`MAX_ATTEMPTS`] attempts in all, each limited to 30 s (10 s to connect), and none started
//! after 60 s; then they are reported as `Provider` naming the key and Google's status code; so
//! is `UNAUTHENTICATED`, naming the credentials used. A refused OAuth grant (`invalid_grant`:
//! a wrong or deleted service-account key, a clock off by more than the assertion's hour) is a
//! `Provider` error naming the account and the token endpoint. No token, private key or data
//! key appears in an error, a log or `Debug`.
//!
//! `status` reads the CryptoKey: primary version `ENABLED` → usable (current version number;
//! automatic rotation when `rotationPeriod` is set), `DISABLED` → disabled, `DESTROYED` /
//! `DESTROY_SCHEDULED` → revoked, 403 → access denied, 404 → not found. Registration
//! (`prepare`) fails naming `key_name` for a key that is not a symmetric `ENCRYPT_DECRYPT` key
//! (an asymmetric or MAC key), and as `KeyUnavailable` for a missing, unreadable or disabled one.
//!
//! # Client
//!
//! A small REST client on reqwest 0.13 with rustls (the HTTP stack object_store already brings),
//! not Google's `google-cloud-kms-v1` crate (1.16, google-cloud-rust). That crate could be
//! pointed at a test endpoint, but for the three calls used here it brings a second client stack
//! (google-cloud-gax and its internal crate, google-cloud-auth, the IAM, location and
//! long-running-operation clients, OpenTelemetry 0.33 with its SDK), and its service-account
//! credentials sign *self-signed* JWTs used directly as bearer tokens (google-cloud-auth 1.19)
//! instead of exchanging the assertion at the key file's `token_uri` as the other Google clients
//! (google-auth for Python, gcloud) do, so its credential path differs from the one the
//! vendor's Python client exercises against our stand-in. The REST calls are small, documented
//! and stable.
//!
//! The loopback stand-in in `encrypt-repo-testkit` (`gcp_kms`) is judged by Google's official
//! Python client: `google-cloud-kms` 3.18 with its REST transport over plain http and
//! `google-auth` 2.63 doing the JWT grant encrypt data keys that this provider decrypts and
//! decrypt what it encrypts, with the AAD above (`tests/vendor_client.rs`). That check caught
//! one difference already: Google requires the assertion's `aud` to be
//! `https://oauth2.googleapis.com/token` whatever `token_uri` it is sent to.
//!
//! ```json
//! {"key_provider_type": "gcp-kms",
//!  "settings": {"key_name": "projects/acme/locations/europe-west1/keyRings/backups/cryptoKeys/repo"}}
//! ```
//!
//! ```no_run
//! # async fn example() -> encrypt_repo_keys::Result<()> {
//! use std::sync::Arc;
//! use encrypt_repo_keys::{ProviderFactory, ProviderRegistry, Settings};
//! use encrypt_repo_kms_gcp::GcpKmsFactory;
//!
//! let mut registry = ProviderRegistry::with_builtin();
//! registry.register(Arc::new(GcpKmsFactory::new()));
//! let mut settings = Settings::from([(
//!     "key_name".to_owned(),
//!     "projects/acme/locations/europe-west1/keyRings/backups/cryptoKeys/repo".to_owned(),
//! )]);
//! registry.get("gcp-kms")?.prepare(&mut settings).await?; // checks the key
//! let provider = registry.open("gcp-kms", &settings).await?;
//! # Ok(()) }
//! ```

mod auth;
mod error;
mod http;
mod provider;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_keys::{KeyProvider, ProviderFactory, Result, Settings};

pub use provider::GcpKmsProvider;

#[cfg(doc)]
use encrypt_repo_keys::{WrapContext, WrappedKey};

use http::{Http, Tuning};
use settings::{GcpKmsSettings, KEY_NAME};

/// Provider type name.
pub const TYPE: &str = "gcp-kms";

/// The label at the start of the additional authenticated data: `"encrypt-repo/v1 gcp-kms
/// wrap\0"`, followed by the repository id and the data-key id (16 bytes each).
pub const AAD_LABEL: &[u8] = b"encrypt-repo/v1 gcp-kms wrap\0";

/// Attempts per Cloud KMS or token call, the first one included.
pub const MAX_ATTEMPTS: u32 = 4;

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Builds [`GcpKmsProvider`]s from settings.
///
/// [`GcpKmsFactory::new`] reads credentials from the process environment
/// (`GOOGLE_APPLICATION_CREDENTIALS`, `GCE_METADATA_HOST`); [`GcpKmsFactory::with_env`] from a
/// given lookup instead (tests, embedders that keep their own environment).
pub struct GcpKmsFactory {
    env: Arc<EnvLookup>,
    tuning: Tuning,
}

impl std::fmt::Debug for GcpKmsFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpKmsFactory")
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

impl Default for GcpKmsFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl GcpKmsFactory {
    /// A factory reading Application Default Credentials from the process environment.
    #[must_use]
    pub fn new() -> Self {
        Self::with_env(|name| std::env::var(name).ok())
    }

    /// A factory reading `GOOGLE_APPLICATION_CREDENTIALS` and `GCE_METADATA_HOST` through `env`
    /// instead of the process environment.
    #[must_use]
    pub fn with_env(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            env: Arc::new(env),
            tuning: Tuning::default(),
        }
    }

    /// Limits each HTTP attempt to `timeout` (default 30 s; connecting to at most 10 s of it).
    /// No retry starts after twice `timeout` since the first attempt.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.tuning.timeout = timeout;
        self.tuning.total = timeout * 2;
        self
    }

    /// Sets the backoff before the first retry (default 500 ms; doubled for each further retry,
    /// at most 8 s). For tests that provoke retries.
    #[doc(hidden)]
    #[must_use]
    pub fn with_retry_backoff(mut self, backoff: Duration) -> Self {
        self.tuning.backoff = backoff;
        self.tuning.max_backoff = self.tuning.max_backoff.max(backoff);
        self
    }

    /// Builds the provider for `settings` without a network call (credentials files are read).
    ///
    /// # Errors
    /// [`Error::Setting`](encrypt_repo_keys::Error) naming a bad setting; an unreadable CA or
    /// service-account key file.
    pub async fn provider(&self, settings: &Settings) -> Result<GcpKmsProvider> {
        let s = GcpKmsSettings::parse(settings)?;
        let http = Http::new(s.ca_file.as_deref(), self.tuning).await?;
        let auth = auth::Auth::from_env(&*self.env).await?;
        Ok(GcpKmsProvider::new(s.key_name, s.endpoint, http, auth))
    }
}

#[async_trait::async_trait]
impl ProviderFactory for GcpKmsFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn identity_settings(&self) -> &'static [&'static str] {
        &[KEY_NAME]
    }

    fn key_name_settings(&self) -> &'static [&'static str] {
        &[KEY_NAME]
    }

    /// Validates the settings and reads the CryptoKey once: it must exist, be readable, be a
    /// symmetric `ENCRYPT_DECRYPT` key and have an enabled primary version. Adds no settings and
    /// creates no key material, so returns `false`.
    async fn prepare(&self, settings: &mut Settings) -> Result<bool> {
        self.provider(settings).await?.check_registrable().await?;
        Ok(false)
    }

    /// Builds the provider without a network call.
    async fn open(&self, settings: &Settings) -> Result<Arc<dyn KeyProvider>> {
        Ok(Arc::new(self.provider(settings).await?))
    }
}
