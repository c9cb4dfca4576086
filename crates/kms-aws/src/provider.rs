//! [`AwsKmsProvider`]: data keys from GenerateDataKey, unwrapped by Decrypt pinned to one key.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::Region;
use aws_sdk_kms::primitives::{Blob, DateTimeFormat};
use aws_sdk_kms::types::{
    DataKeySpec, EncryptionAlgorithmSpec, KeyMetadata, KeySpec, KeyState, KeyUsageType,
};
use encrypt_repo_format::DataKey;
use encrypt_repo_keys::{
    Error, GeneratedKey, KeyProvider, KeyStatus, Result, RotationInfo, WrapContext, WrappedKey,
};
use zeroize::Zeroizing;

use crate::TYPE;
use crate::error::{Call, Class, classify, is_access_denied, map_sdk_error, service_code};

/// Attempts per KMS call, first one included (the SDK's standard mode; see [`retry_config`]).
pub const MAX_ATTEMPTS: u32 = 4;
/// KMS ciphertext blobs are 1 to 6144 bytes; anything else is refused before any call.
const MAX_CIPHERTEXT_LEN: usize = 6144;

/// The retry policy on every KMS call: the SDK's **standard** mode, [`MAX_ATTEMPTS`] attempts,
/// exponential backoff with full jitter from 1 s, capped at 20 s.
///
/// Standard mode retries throttling codes (`ThrottlingException`, `LimitExceededException`, …),
/// 5xx answers, `RequestTimeout`, timeouts and connection errors, and keeps a client-side retry
/// budget so a KMS that keeps failing is not hammered. Adaptive mode (client-side rate limiting)
/// is for clients that sustain many calls per second; this provider makes one call per data
/// key per rotation interval or cache TTL, so it has nothing to gain from it. One attempt more
/// than the SDK's default (3) rides out a short throttling burst, at most ~7 s of waiting in
/// expectation.
#[must_use]
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_secs(1))
        .with_max_backoff(Duration::from_secs(20))
}

/// Timeouts on every KMS call: 5 s to connect, 20 s per attempt, 60 s per call including
/// retries. A hung KMS then surfaces as [`Error::Provider`] instead of stalling reads.
#[must_use]
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(60))
        .build()
}

/// Builds a KMS client from `sdk` with this crate's retry and timeout policy, and optional
/// region and endpoint overrides.
#[must_use]
pub fn kms_client(sdk: &SdkConfig, region: Option<&str>, endpoint: Option<&str>) -> Client {
    let mut b = aws_sdk_kms::config::Builder::from(sdk)
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    if let Some(r) = region {
        b = b.region(Region::new(r.to_owned()));
    }
    if let Some(e) = endpoint {
        b = b.endpoint_url(e);
    }
    Client::from_conf(b.build())
}

/// An AWS KMS symmetric key (`SYMMETRIC_DEFAULT`, usage `ENCRYPT_DECRYPT`) that wraps data keys.
///
/// Every call names the key by its ARN, resolved once at registration, so re-pointing an alias
/// later does not move the repository to another key (use re-wrap for that). Data keys are bound
/// to their [`WrapContext`] by the KMS encryption context.
pub struct AwsKmsProvider {
    client: Client,
    key_id: String,
    key_arn: String,
}

impl std::fmt::Debug for AwsKmsProvider {
    // Not derived: the client's config holds the credentials provider.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKmsProvider")
            .field("key_id", &self.key_id)
            .field("key_arn", &self.key_arn)
            .field("region", &self.region())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for AwsKmsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{TYPE} key {}", self.key_label())?;
        if let Some(r) = self.region() {
            write!(f, " in {r}")?;
        }
        Ok(())
    }
}

impl AwsKmsProvider {
    /// A provider for a key already resolved to `key_arn` (no network call). `client` should come
    /// from [`kms_client`] so the retry and timeout policy applies.
    #[must_use]
    pub fn from_parts(
        client: Client,
        key_id: impl Into<String>,
        key_arn: impl Into<String>,
    ) -> Self {
        Self {
            client,
            key_id: key_id.into(),
            key_arn: key_arn.into(),
        }
    }

    /// Resolves `key_id` (key id, key ARN, alias name or alias ARN) with one DescribeKey call and
    /// checks that it is an enabled symmetric encryption key. For tests and embedders that hold
    /// an explicit [`SdkConfig`] (static credentials, a test endpoint); the
    /// [`AwsKmsFactory`](crate::AwsKmsFactory) uses the standard AWS credential chain.
    ///
    /// # Errors
    /// [`Error::KeyUnavailable`] if the key does not exist, is not enabled or may not be used;
    /// [`Error::Setting`] if it is not a symmetric encryption key; [`Error::Provider`] otherwise.
    pub async fn connect(sdk: &SdkConfig, key_id: &str) -> Result<Self> {
        Self::resolve(kms_client(sdk, None, None), key_id).await
    }

    /// As [`connect`](Self::connect) with a ready client.
    pub(crate) async fn resolve(client: Client, key_id: &str) -> Result<Self> {
        let mut p = Self::from_parts(client, key_id, key_id);
        let meta = p.describe(key_id).await?;
        let arn = meta
            .arn
            .clone()
            .ok_or_else(|| p.odd_answer("DescribeKey", "no key ARN"))?;
        p.key_arn = arn;
        check_usable_for_data_keys(&meta, &p.key_label())?;
        Ok(p)
    }

    /// The key as configured (id, ARN or alias).
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key ARN every call is pinned to.
    #[must_use]
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    /// The client's region.
    #[must_use]
    pub fn region(&self) -> Option<&str> {
        self.client.config().region().map(Region::as_ref)
    }

    fn key_label(&self) -> String {
        if self.key_id == self.key_arn {
            self.key_arn.clone()
        } else {
            format!("{} ({})", self.key_id, self.key_arn)
        }
    }

    fn odd_answer(&self, op: &str, what: &str) -> Error {
        Error::Provider {
            provider: TYPE.into(),
            message: format!(
                "{op} on key {}: unexpected answer: {what}",
                self.key_label()
            ),
        }
    }

    async fn describe(&self, key_id: &str) -> Result<KeyMetadata> {
        let out = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &self.key_label(), Call::Op("DescribeKey")))?;
        out.key_metadata
            .ok_or_else(|| self.odd_answer("DescribeKey", "no key metadata"))
    }

    fn context(ctx: &WrapContext) -> HashMap<String, String> {
        ctx.encryption_context().into_iter().collect()
    }

    /// Checks that KMS answered for our key: a mismatch is a misbehaving endpoint.
    fn check_answer_key(&self, op: &str, answered: Option<&str>) -> Result<()> {
        match answered {
            Some(k) if k == self.key_arn => Ok(()),
            Some(k) => Err(self.odd_answer(op, &format!("answered for key {k}"))),
            None => Err(self.odd_answer(op, "no key id")),
        }
    }

    fn wrapped(&self, ciphertext: Option<Blob>, op: &str) -> Result<WrappedKey> {
        let ciphertext = ciphertext
            .map(Blob::into_inner)
            .filter(|c| !c.is_empty() && c.len() <= MAX_CIPHERTEXT_LEN)
            .ok_or_else(|| self.odd_answer(op, "no ciphertext, or one of an impossible size"))?;
        Ok(WrappedKey {
            provider: TYPE.into(),
            master_key: self.key_arn.clone(),
            ciphertext,
        })
    }

    async fn rotation(&self) -> RotationInfo {
        // Rotation facts are informational: a caller allowed DescribeKey but not these calls,
        // or a key type without rotation (imported material), still gets a usable status.
        let automatic = self
            .client
            .get_key_rotation_status()
            .key_id(&self.key_arn)
            .send()
            .await
            .ok()
            .map(|o| o.key_rotation_enabled);
        let mut last: Option<aws_sdk_kms::primitives::DateTime> = None;
        let mut pages = self
            .client
            .list_key_rotations()
            .key_id(&self.key_arn)
            .into_paginator()
            .send();
        while let Some(Ok(page)) = pages.next().await {
            for r in page.rotations.unwrap_or_default() {
                if let Some(d) = r.rotation_date
                    && last.is_none_or(|l| d > l)
                {
                    last = Some(d);
                }
            }
        }
        RotationInfo {
            automatic,
            current_version: None,
            last_rotated: last.and_then(|d| d.fmt(DateTimeFormat::DateTime).ok()),
        }
    }
}

/// Refuses keys that cannot make data keys: asymmetric, HMAC, signing keys, and keys that are
/// not enabled (at registration the key must work).
pub(crate) fn check_usable_for_data_keys(meta: &KeyMetadata, key: &str) -> Result<()> {
    let usage_ok = meta
        .key_usage
        .as_ref()
        .is_none_or(|u| *u == KeyUsageType::EncryptDecrypt);
    let spec_ok = meta
        .key_spec
        .as_ref()
        .is_none_or(|s| *s == KeySpec::SymmetricDefault);
    if !usage_ok || !spec_ok {
        return Err(Error::Setting {
            provider: TYPE.into(),
            setting: crate::settings::KEY_ID.into(),
            problem: format!(
                "{key} is a {} key with usage {}: a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key is needed",
                meta.key_spec.as_ref().map_or("?", KeySpec::as_str),
                meta.key_usage.as_ref().map_or("?", KeyUsageType::as_str),
            ),
        });
    }
    match key_status(meta) {
        KeyStatus::Usable { .. } => Ok(()),
        other => Err(Error::KeyUnavailable {
            provider: TYPE.into(),
            key: key.into(),
            reason: format!(
                "key state is {} ({other:?})",
                meta.key_state.as_ref().map_or("unknown", KeyState::as_str)
            ),
        }),
    }
}

/// KMS key state to [`KeyStatus`], as the `status` table of [`AwsKmsProvider`] says.
pub(crate) fn key_status(meta: &KeyMetadata) -> KeyStatus {
    match &meta.key_state {
        Some(KeyState::Enabled | KeyState::Updating) => KeyStatus::Usable { rotation: None },
        Some(KeyState::PendingDeletion | KeyState::PendingReplicaDeletion) => KeyStatus::Revoked,
        Some(_) => KeyStatus::Disabled,
        None if meta.enabled => KeyStatus::Usable { rotation: None },
        None => KeyStatus::Disabled,
    }
}

fn unwrap_failed(ctx: &WrapContext) -> Error {
    Error::UnwrapFailed {
        provider: TYPE.into(),
        data_key_id: ctx.data_key_id.to_hex(),
    }
}

#[async_trait::async_trait]
impl KeyProvider for AwsKmsProvider {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn master_key(&self) -> String {
        self.key_arn.clone()
    }

    /// GenerateDataKey (AES_256) under the registered key and the context.
    ///
    /// Key material hygiene: the plaintext `Blob`'s buffer is moved into a [`Zeroizing`] and
    /// wiped after it is copied into the [`DataKey`]. Out of our reach, and not wiped: the HTTP
    /// response body (base64 of the key) in the SDK's buffers, the base64 decoder's output before
    /// it became the `Blob`, and rustls' decrypted record buffers.
    async fn generate_data_key(&self, ctx: &WrapContext) -> Result<GeneratedKey> {
        let mut out = self
            .client
            .generate_data_key()
            .key_id(&self.key_arn)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(Self::context(ctx)))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &self.key_label(), Call::Op("GenerateDataKey")))?;
        let plaintext = out.plaintext.take().map(|b| Zeroizing::new(b.into_inner()));
        self.check_answer_key("GenerateDataKey", out.key_id.as_deref())?;
        let plaintext =
            plaintext.ok_or_else(|| self.odd_answer("GenerateDataKey", "no plaintext data key"))?;
        let plaintext = DataKey::try_from_slice(&plaintext).map_err(|_| {
            self.odd_answer(
                "GenerateDataKey",
                &format!("a data key of {} bytes, not 32", plaintext.len()),
            )
        })?;
        let wrapped = self.wrapped(out.ciphertext_blob.take(), "GenerateDataKey")?;
        Ok(GeneratedKey { plaintext, wrapped })
    }

    /// Encrypt of an existing data key (escrow copies, re-wrap), same context.
    ///
    /// The request's `Blob` holds a copy of the key that the SDK drops without wiping, as it does
    /// the serialized request body; this cannot be controlled from here.
    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<WrappedKey> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_arn)
            .plaintext(Blob::new(key.expose_secret().to_vec()))
            .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .set_encryption_context(Some(Self::context(ctx)))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &self.key_label(), Call::Op("Encrypt")))?;
        self.check_answer_key("Encrypt", out.key_id.as_deref())?;
        self.wrapped(out.ciphertext_blob, "Encrypt")
    }

    /// Decrypt with `KeyId` pinned to the registered key ARN and the context; the answer must
    /// name that key.
    async fn unwrap(&self, wrapped: &WrappedKey, ctx: &WrapContext) -> Result<DataKey> {
        if wrapped.provider != TYPE || wrapped.master_key != self.key_arn {
            return Err(Error::ForeignWrappedKey {
                found: format!("{} key {}", wrapped.provider, wrapped.master_key),
                expected: format!("{TYPE} key {}", self.key_arn),
            });
        }
        if wrapped.ciphertext.is_empty() || wrapped.ciphertext.len() > MAX_CIPHERTEXT_LEN {
            return Err(unwrap_failed(ctx));
        }
        let dek = ctx.data_key_id.to_hex();
        let mut out = self
            .client
            .decrypt()
            .key_id(&self.key_arn)
            .ciphertext_blob(Blob::new(wrapped.ciphertext.clone()))
            .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .set_encryption_context(Some(Self::context(ctx)))
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &self.key_label(), Call::Decrypt(&dek)))?;
        let plaintext = out.plaintext.take().map(|b| Zeroizing::new(b.into_inner()));
        if out.key_id.as_deref() != Some(self.key_arn.as_str()) {
            return Err(unwrap_failed(ctx));
        }
        let plaintext = plaintext.ok_or_else(|| self.odd_answer("Decrypt", "no plaintext"))?;
        DataKey::try_from_slice(&plaintext).map_err(|_| unwrap_failed(ctx))
    }

    /// DescribeKey on the key ARN and, when usable, GetKeyRotationStatus and ListKeyRotations for
    /// [`RotationInfo`] (automatic rotation on/off, date of the last rotation; left empty when
    /// those calls are refused). `AccessDenied` → AccessDenied, `NotFoundException` → NotFound;
    /// the key state maps as follows.
    ///
    /// | KeyState | status | why |
    /// |---|---|---|
    /// | `Enabled`, `Updating` | Usable | `Updating` is a multi-Region primary change; the key works |
    /// | `Disabled` | Disabled | re-enabling restores it |
    /// | `PendingDeletion`, `PendingReplicaDeletion` | Revoked | the key is on its way out; only cancelling the deletion (which leaves it Disabled) brings it back |
    /// | `PendingImport`, `Unavailable`, `Creating`, anything newer | Disabled | no usable key material now, but it may come back (import, custom key store reconnect) |
    async fn status(&self) -> Result<KeyStatus> {
        let meta = match self
            .client
            .describe_key()
            .key_id(&self.key_arn)
            .send()
            .await
        {
            Ok(out) => out
                .key_metadata
                .ok_or_else(|| self.odd_answer("DescribeKey", "no key metadata"))?,
            Err(e) => {
                return match service_code(&e).map(|c| (c, classify(c))) {
                    Some((c, _)) if is_access_denied(c) => Ok(KeyStatus::AccessDenied),
                    Some(("NotFoundException", _)) => Ok(KeyStatus::NotFound),
                    Some((_, Class::Unavailable)) => Ok(KeyStatus::Disabled),
                    _ => Err(map_sdk_error(e, &self.key_label(), Call::Op("DescribeKey"))),
                };
            }
        };
        if meta.arn.as_deref().is_some_and(|a| a != self.key_arn) {
            return Err(self.odd_answer("DescribeKey", "metadata of another key"));
        }
        Ok(match key_status(&meta) {
            KeyStatus::Usable { .. } => KeyStatus::Usable {
                rotation: Some(self.rotation().await),
            },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(state: Option<KeyState>, enabled: bool) -> KeyMetadata {
        let mut b = KeyMetadata::builder().key_id("k1").enabled(enabled);
        if let Some(s) = state {
            b = b.key_state(s);
        }
        b.build().expect("metadata")
    }

    #[test]
    fn key_states_map_to_statuses() {
        let usable = KeyStatus::Usable { rotation: None };
        for (state, expected) in [
            (KeyState::Enabled, usable.clone()),
            (KeyState::Updating, usable.clone()),
            (KeyState::Disabled, KeyStatus::Disabled),
            (KeyState::PendingDeletion, KeyStatus::Revoked),
            (KeyState::PendingReplicaDeletion, KeyStatus::Revoked),
            (KeyState::PendingImport, KeyStatus::Disabled),
            (KeyState::Unavailable, KeyStatus::Disabled),
            (KeyState::Creating, KeyStatus::Disabled),
            (KeyState::from("SomethingNew"), KeyStatus::Disabled),
        ] {
            assert_eq!(
                key_status(&meta(Some(state.clone()), true)),
                expected,
                "{state:?}"
            );
        }
        assert_eq!(key_status(&meta(None, true)), usable);
        assert_eq!(key_status(&meta(None, false)), KeyStatus::Disabled);
    }

    #[test]
    fn asymmetric_and_disabled_keys_are_refused_at_registration() {
        let m = KeyMetadata::builder()
            .key_id("k1")
            .key_usage(KeyUsageType::SignVerify)
            .key_spec(KeySpec::EccNistP256)
            .key_state(KeyState::Enabled)
            .build()
            .expect("metadata");
        match check_usable_for_data_keys(&m, "alias/x") {
            Err(Error::Setting {
                setting, problem, ..
            }) => {
                assert_eq!(setting, "key_id");
                assert!(problem.contains("ECC_NIST_P256"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        let m = meta(Some(KeyState::Disabled), false);
        assert!(matches!(
            check_usable_for_data_keys(&m, "alias/x"),
            Err(Error::KeyUnavailable { .. })
        ));
        assert!(check_usable_for_data_keys(&meta(Some(KeyState::Enabled), true), "k").is_ok());
    }
}
