//! The `aws-kms` key provider for encrypt-repo: data keys come from AWS KMS `GenerateDataKey`
//! under one symmetric KMS key, bound to their repository and data-key id by the KMS
//! *encryption context*, and are unwrapped by `Decrypt` pinned to that key.
//!
//! # Settings
//!
//! | setting | kind | meaning |
//! |---|---|---|
//! | `key_id` | identity, required | the KMS key: key id, key ARN, alias name (`alias/NAME`) or alias ARN |
//! | `key_arn` | identity, filled in by registration | the key ARN `key_id` resolved to; every call is pinned to it |
//! | `region` | access, optional | AWS region; else the AWS environment / profile; else the region of an ARN `key_id` |
//! | `endpoint` | access, optional | endpoint URL (VPC endpoint, a test server); `https://`, or `http://` on loopback only |
//! | `profile` | access, optional | named profile from `~/.aws/config` and `~/.aws/credentials` |
//!
//! Credentials are **never** settings: they come from the standard AWS chain (environment
//! variables, `AWS_PROFILE` / `profile`, web identity, SSO, ECS and EC2 instance roles), as any
//! AWS tool finds them. A settings map naming a credential is refused.
//!
//! An alias is resolved once, at registration (`prepare` calls `DescribeKey` and stores
//! `key_arn`): re-pointing the alias later does not move the repository to another key; re-wrap
//! does. Registration fails, naming the key, if it does not exist, is not enabled, may not be
//! described, or is not a `SYMMETRIC_DEFAULT` / `ENCRYPT_DECRYPT` key.
//!
//! ```json
//! {"key_provider_type": "aws-kms", "settings": {"key_id": "alias/backups", "region": "eu-west-1"}}
//! ```
//!
//! ```no_run
//! # async fn example() -> encrypt_repo_keys::Result<()> {
//! use std::sync::Arc;
//! use encrypt_repo_keys::{ProviderFactory, ProviderRegistry, Settings};
//! use encrypt_repo_kms_aws::AwsKmsFactory;
//!
//! let mut registry = ProviderRegistry::with_builtin();
//! registry.register(Arc::new(AwsKmsFactory::new()));
//! let mut settings = Settings::from([
//!     ("key_id".to_owned(), "alias/backups".to_owned()),
//!     ("region".to_owned(), "eu-west-1".to_owned()),
//! ]);
//! registry.get("aws-kms")?.prepare(&mut settings).await?; // adds key_arn
//! let provider = registry.open("aws-kms", &settings).await?;
//! # Ok(()) }
//! ```
//!
//! # Errors and locking
//!
//! Answers meaning the key cannot be used (disabled, pending deletion, access denied, not found,
//! unavailable) are [`Error::KeyUnavailable`](encrypt_repo_keys::Error) and lock the repository;
//! a refused ciphertext or wrong encryption context is `UnwrapFailed`; throttling, 5xx and network
//! failures are retried ([`retry_config`]) and then reported as `Provider`. `status` maps the KMS
//! key state as [`AwsKmsProvider`]'s `status` documents (`Disabled` → Disabled,
//! `PendingDeletion` → Revoked).

mod error;
mod provider;
mod settings;

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kms::config::Region;
use encrypt_repo_keys::{KeyProvider, ProviderFactory, Result, Settings};

pub use provider::{AwsKmsProvider, MAX_ATTEMPTS, kms_client, retry_config, timeout_config};

use settings::{AwsKmsSettings, KEY_ARN, KEY_ID, REGION, bad};

/// Provider type name.
pub const TYPE: &str = "aws-kms";

/// Builds [`AwsKmsProvider`]s from settings.
///
/// [`AwsKmsFactory::new`] loads AWS configuration the standard way (environment, profiles,
/// instance roles). [`AwsKmsFactory::with_sdk_config`] starts from a given [`SdkConfig`] instead
/// (static test credentials, a custom HTTP client); the `region` and `endpoint` settings still
/// apply on top of it, `profile` does not.
#[derive(Default)]
pub struct AwsKmsFactory {
    base: Option<SdkConfig>,
}

impl std::fmt::Debug for AwsKmsFactory {
    // Not derived: an SdkConfig holds a credentials provider.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKmsFactory")
            .field("explicit_sdk_config", &self.base.is_some())
            .finish()
    }
}

impl AwsKmsFactory {
    /// A factory using the standard AWS configuration and credential chain.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A factory starting from `config` (its credentials, region, endpoint, HTTP client).
    #[must_use]
    pub fn with_sdk_config(config: SdkConfig) -> Self {
        Self { base: Some(config) }
    }

    async fn client(&self, s: &AwsKmsSettings) -> Result<aws_sdk_kms::Client> {
        let sdk = match &self.base {
            Some(c) => c.clone(),
            None => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(p) = &s.profile {
                    loader = loader.profile_name(p);
                }
                if let Some(r) = &s.region {
                    loader = loader.region(Region::new(r.clone()));
                }
                loader.load().await
            }
        };
        let region = s.region.clone().or_else(|| {
            sdk.region()
                .is_none()
                .then(|| s.region_from_arn())
                .flatten()
        });
        if region.is_none() && sdk.region().is_none() {
            return Err(bad(
                REGION,
                "is not set, and neither AWS_REGION nor the AWS profile names a region",
            ));
        }
        Ok(kms_client(&sdk, region.as_deref(), s.endpoint.as_deref()))
    }
}

#[async_trait::async_trait]
impl ProviderFactory for AwsKmsFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn identity_settings(&self) -> &'static [&'static str] {
        &[KEY_ID, KEY_ARN]
    }

    fn key_name_settings(&self) -> &'static [&'static str] {
        &[KEY_ID]
    }

    /// Validates the settings, calls DescribeKey once on `key_id` and stores the key ARN as
    /// `key_arn`. Creates no key material, so always returns `false`.
    async fn prepare(&self, settings: &mut Settings) -> Result<bool> {
        let s = AwsKmsSettings::parse(settings)?;
        let provider = AwsKmsProvider::resolve(self.client(&s).await?, &s.key_id).await?;
        if let Some(registered) = &s.key_arn
            && registered != provider.key_arn()
        {
            return Err(bad(
                KEY_ARN,
                format!(
                    "{} now resolves to {}, not the registered {registered}",
                    s.key_id,
                    provider.key_arn()
                ),
            ));
        }
        settings.insert(KEY_ARN.into(), provider.key_arn().to_owned());
        Ok(false)
    }

    /// Builds the provider without a network call when `key_arn` is present (it is after
    /// registration); otherwise resolves `key_id` with DescribeKey, as `prepare` does.
    async fn open(&self, settings: &Settings) -> Result<Arc<dyn KeyProvider>> {
        let s = AwsKmsSettings::parse(settings)?;
        let client = self.client(&s).await?;
        let provider = match &s.key_arn {
            Some(arn) => AwsKmsProvider::from_parts(client, &s.key_id, arn),
            None => AwsKmsProvider::resolve(client, &s.key_id).await?,
        };
        Ok(Arc::new(provider))
    }
}
