//! [`GcpKmsProvider`]: data keys encrypted by `cryptoKeys.encrypt` under one symmetric
//! CryptoKey, with the wrap context as additional authenticated data and CRC32C checks both ways.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use encrypt_repo_format::DataKey;
use encrypt_repo_keys::{
    Error, KeyProvider, KeyStatus, Result, RotationInfo, WrapContext, WrappedKey,
};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;
use zeroize::Zeroizing;

use crate::auth::Auth;
use crate::error::{GoogleError, Op, integrity, map_error, odd_answer, parse_json};
use crate::http::{Answer, Http, Request, json_body};
use crate::settings::{KEY_NAME, bad};
use crate::{AAD_LABEL, TYPE};

/// Longest ciphertext sent to Cloud KMS: its limit for `decrypt` is 64 KiB of plaintext plus the
/// ciphertext overhead; a wrapped data key is about a hundred bytes.
const MAX_CIPHERTEXT_LEN: usize = 65_536 + 1_024;

/// CRC32C (Castagnoli), as Cloud KMS computes its `*Crc32c` fields.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    // The CRC-32/ISCSI result fits 32 bits by definition.
    u32::try_from(crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data)).unwrap_or(0)
}

/// A Google Cloud KMS CryptoKey (purpose `ENCRYPT_DECRYPT`) that wraps data keys.
///
/// Every call names the CryptoKey, never a version: `encrypt` uses the primary version and
/// `decrypt` finds the version in the ciphertext, so rotation is transparent. The version that
/// wrapped a data key is recorded in [`WrappedKey::master_key`].
///
/// `status` maps the primary version's state: `ENABLED` → usable (with the version number and
/// whether a rotation period is set), `DISABLED` and pending states → disabled, `DESTROYED` /
/// `DESTROY_SCHEDULED` → revoked, HTTP 403 → access denied, 404 → not found.
pub struct GcpKmsProvider {
    key_name: String,
    endpoint: String,
    http: Http,
    auth: Auth,
}

impl std::fmt::Debug for GcpKmsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpKmsProvider")
            .field("key_name", &self.key_name)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.auth.describe())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for GcpKmsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{TYPE} key {}", self.key_name)
    }
}

/// `int64` fields: the REST API writes them as decimal strings; numbers are accepted too.
fn de_int64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        I(i64),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::I(i)) => Ok(Some(i)),
        Some(N::S(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("not an int64")),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EncryptRequest<'a> {
    plaintext: &'a str,
    additional_authenticated_data: &'a str,
    plaintext_crc32c: String,
    additional_authenticated_data_crc32c: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptResponse {
    name: String,
    ciphertext: String,
    #[serde(default, deserialize_with = "de_int64")]
    ciphertext_crc32c: Option<i64>,
    #[serde(default)]
    verified_plaintext_crc32c: bool,
    #[serde(default)]
    verified_additional_authenticated_data_crc32c: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DecryptRequest<'a> {
    ciphertext: &'a str,
    additional_authenticated_data: &'a str,
    ciphertext_crc32c: String,
    additional_authenticated_data_crc32c: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecryptResponse {
    plaintext: Zeroizing<String>,
    #[serde(default, deserialize_with = "de_int64")]
    plaintext_crc32c: Option<i64>,
}

/// The parts of a `CryptoKey` resource this provider reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CryptoKey {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) purpose: Option<String>,
    #[serde(default)]
    pub(crate) primary: Option<CryptoKeyVersion>,
    #[serde(default)]
    pub(crate) rotation_period: Option<String>,
    #[serde(default)]
    pub(crate) version_template: Option<VersionTemplate>,
}

/// The parts of a `CryptoKeyVersion` this provider reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CryptoKeyVersion {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) state: Option<String>,
    #[serde(default)]
    pub(crate) algorithm: Option<String>,
    #[serde(default)]
    pub(crate) create_time: Option<String>,
}

/// `versionTemplate`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VersionTemplate {
    #[serde(default)]
    pub(crate) algorithm: Option<String>,
}

/// The version number at the end of `…/cryptoKeyVersions/N`, if `name` is a version of `key`.
pub(crate) fn version_of(key: &str, name: &str) -> Option<u64> {
    let n = name
        .strip_prefix(key)?
        .strip_prefix("/cryptoKeyVersions/")?;
    (!n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0'))
        .then(|| n.parse().ok())
        .flatten()
}

/// The primary version's state to a [`KeyStatus`].
pub(crate) fn status_of(key: &CryptoKey) -> KeyStatus {
    let Some(primary) = &key.primary else {
        return KeyStatus::Disabled;
    };
    match primary.state.as_deref() {
        Some("ENABLED") => KeyStatus::Usable {
            rotation: Some(RotationInfo {
                automatic: Some(key.rotation_period.is_some()),
                current_version: version_of(&key.name, &primary.name),
                last_rotated: primary.create_time.clone(),
            }),
        },
        Some("DESTROYED" | "DESTROY_SCHEDULED" | "GENERATION_FAILED" | "IMPORT_FAILED") => {
            KeyStatus::Revoked
        }
        _ => KeyStatus::Disabled,
    }
}

fn unwrap_failed(ctx: &WrapContext) -> Error {
    Error::UnwrapFailed {
        provider: TYPE.into(),
        data_key_id: ctx.data_key_id.to_hex(),
    }
}

fn crc_field(data: &[u8]) -> String {
    crc32c(data).to_string()
}

impl GcpKmsProvider {
    pub(crate) fn new(key_name: String, endpoint: String, http: Http, auth: Auth) -> Self {
        Self {
            key_name,
            endpoint,
            http,
            auth,
        }
    }

    /// The CryptoKey resource name every call uses.
    #[must_use]
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The Cloud KMS endpoint.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One call on the key (`suffix` is "" or `:encrypt` / `:decrypt`) with a bearer token. An
    /// answer of 401 drops the cached token and tries once more with a new one. Returns the
    /// answer, whatever its status, and the token used (to keep it out of messages).
    async fn call(
        &self,
        op: Op<'_>,
        method: Method,
        suffix: &str,
        body: Option<bytes::Bytes>,
    ) -> Result<(Answer, Zeroizing<String>)> {
        let url = Url::parse(&format!("{}/v1/{}{suffix}", self.endpoint, self.key_name)).map_err(
            |e| {
                bad(
                    crate::settings::ENDPOINT,
                    format!("does not make a valid URL: {e}"),
                )
            },
        )?;
        let what = format!(
            "{} on key {} at {}",
            op.name(),
            self.key_name,
            self.endpoint
        );
        let mut refreshed = false;
        loop {
            let token = self.auth.token(&self.http).await?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", *token)).map_err(|_| {
                Error::Provider {
                    provider: TYPE.into(),
                    message: "credentials: the access token cannot be sent in a header".into(),
                }
            })?;
            value.set_sensitive(true);
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, value);
            let request = Request {
                method: method.clone(),
                url: url.clone(),
                headers,
                body: body.clone(),
            };
            let answer = self.http.send(&what, &request).await?;
            if answer.status == StatusCode::UNAUTHORIZED && !refreshed {
                self.auth.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            return Ok((answer, token));
        }
    }

    /// As [`call`](Self::call), with error answers mapped to errors.
    async fn call_ok(
        &self,
        op: Op<'_>,
        method: Method,
        suffix: &str,
        body: Option<bytes::Bytes>,
    ) -> Result<Answer> {
        let (answer, token) = self.call(op, method, suffix, body).await?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        Err(self.answer_error(op, &answer, &token).0)
    }

    /// Maps an error answer: a refused token says whose it was, and a failure that outlasted
    /// the retries says how many attempts were made.
    fn answer_error(&self, op: Op<'_>, answer: &Answer, token: &str) -> (Error, GoogleError) {
        let e = GoogleError::parse(answer.status, &answer.body, token);
        let err = match map_error(op, &self.key_name, &e) {
            Error::Provider { provider, message } if e.status == "UNAUTHENTICATED" => {
                Error::Provider {
                    provider,
                    message: format!("{message}; credentials: {}", self.auth.describe()),
                }
            }
            Error::Provider { provider, message } if answer.attempts > 1 => Error::Provider {
                provider,
                message: format!("{message}, after {} attempts", answer.attempts),
            },
            other => other,
        };
        (err, e)
    }

    /// `GET v1/{key_name}`.
    pub(crate) async fn get_key(&self) -> Result<CryptoKey> {
        let answer = self.call_ok(Op::Get, Method::GET, "", None).await?;
        let key: CryptoKey = parse_json(Op::Get, &self.key_name, &answer.body)?;
        if key.name != self.key_name {
            return Err(odd_answer(
                Op::Get,
                &self.key_name,
                &format!(
                    "the answer is for {:?}",
                    crate::error::sanitize(&key.name, "")
                ),
            ));
        }
        Ok(key)
    }

    /// Registration check: the key exists, may be read, is a symmetric `ENCRYPT_DECRYPT` key,
    /// and its primary version is enabled.
    pub(crate) async fn check_registrable(&self) -> Result<()> {
        let key = self.get_key().await?;
        let purpose = key.purpose.as_deref().unwrap_or("unknown");
        let algorithm = key
            .primary
            .as_ref()
            .and_then(|p| p.algorithm.as_deref())
            .or_else(|| {
                key.version_template
                    .as_ref()
                    .and_then(|t| t.algorithm.as_deref())
            })
            .unwrap_or("GOOGLE_SYMMETRIC_ENCRYPTION");
        if purpose != "ENCRYPT_DECRYPT" || algorithm != "GOOGLE_SYMMETRIC_ENCRYPTION" {
            return Err(bad(
                KEY_NAME,
                format!(
                    "{} is a {} key ({}): a symmetric ENCRYPT_DECRYPT key \
                     (GOOGLE_SYMMETRIC_ENCRYPTION) is needed",
                    self.key_name,
                    crate::error::sanitize(purpose, ""),
                    crate::error::sanitize(algorithm, "")
                ),
            ));
        }
        match status_of(&key) {
            KeyStatus::Usable { .. } => Ok(()),
            other => Err(Error::KeyUnavailable {
                provider: TYPE.into(),
                key: self.key_name.clone(),
                reason: format!(
                    "primary version {} is {} ({other:?})",
                    key.primary.as_ref().map_or("(none)", |p| p.name.as_str()),
                    key.primary
                        .as_ref()
                        .and_then(|p| p.state.as_deref())
                        .unwrap_or("missing")
                ),
            }),
        }
    }

    /// A decrypt refused with `FAILED_PRECONDITION`: if the key's primary version is enabled
    /// and is not the version that wrapped this data key, only that old version is disabled or
    /// destroyed ([`Error::KeyVersionRetired`], no lock); otherwise the key is unavailable.
    async fn precondition_failed(&self, wrapped: &WrappedKey, original: Error) -> Error {
        match self.get_key().await {
            Ok(key)
                if matches!(status_of(&key), KeyStatus::Usable { .. })
                    && key
                        .primary
                        .as_ref()
                        .is_some_and(|p| p.name != wrapped.master_key) =>
            {
                Error::KeyVersionRetired {
                    provider: TYPE.into(),
                    key: self.key_name.clone(),
                    reason: match original {
                        Error::KeyUnavailable { reason, .. } => reason,
                        other => other.to_string(),
                    },
                }
            }
            _ => original,
        }
    }
}

#[async_trait::async_trait]
impl KeyProvider for GcpKmsProvider {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn master_key(&self) -> String {
        self.key_name.clone()
    }

    /// `cryptoKeys.encrypt` of the data key with AAD = [`WrapContext::aad`]`(`[`AAD_LABEL`]`)`,
    /// `plaintextCrc32c` and `additionalAuthenticatedDataCrc32c`; the answer must report both
    /// verified and carry a matching `ciphertextCrc32c`. [`WrappedKey::master_key`] is the
    /// CryptoKeyVersion that encrypted, [`WrappedKey::ciphertext`] Cloud KMS's ciphertext as is.
    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<WrappedKey> {
        let op = Op::Encrypt;
        let aad = ctx.aad(AAD_LABEL);
        let secret = key.expose_secret();
        let mut plaintext = Zeroizing::new(String::with_capacity(secret.len().div_ceil(3) * 4));
        STANDARD.encode_string(secret, &mut plaintext);
        let aad_b64 = STANDARD.encode(&aad);
        let body = json_body(&EncryptRequest {
            plaintext: &plaintext,
            additional_authenticated_data: &aad_b64,
            plaintext_crc32c: crc_field(secret),
            additional_authenticated_data_crc32c: crc_field(&aad),
        })?;
        let answer = self
            .call_ok(op, Method::POST, ":encrypt", Some(body))
            .await?;
        let r: EncryptResponse = parse_json(op, &self.key_name, &answer.body)?;
        if !r.verified_plaintext_crc32c {
            return Err(integrity(
                op,
                &self.key_name,
                "verifiedPlaintextCrc32c is not true",
            ));
        }
        if !r.verified_additional_authenticated_data_crc32c {
            return Err(integrity(
                op,
                &self.key_name,
                "verifiedAdditionalAuthenticatedDataCrc32c is not true",
            ));
        }
        let ciphertext = STANDARD
            .decode(&r.ciphertext)
            .ok()
            .filter(|c| !c.is_empty() && c.len() <= MAX_CIPHERTEXT_LEN)
            .ok_or_else(|| {
                odd_answer(
                    op,
                    &self.key_name,
                    "the ciphertext is not base64 of a plausible size",
                )
            })?;
        match r.ciphertext_crc32c {
            Some(c) if c == i64::from(crc32c(&ciphertext)) => {}
            Some(_) => {
                return Err(integrity(
                    op,
                    &self.key_name,
                    "ciphertextCrc32c does not match the ciphertext",
                ));
            }
            None => {
                return Err(integrity(
                    op,
                    &self.key_name,
                    "the answer has no ciphertextCrc32c",
                ));
            }
        }
        if version_of(&self.key_name, &r.name).is_none() {
            return Err(odd_answer(
                op,
                &self.key_name,
                &format!(
                    "encrypted by {:?}, not a version of this key",
                    crate::error::sanitize(&r.name, "")
                ),
            ));
        }
        Ok(WrappedKey {
            provider: TYPE.into(),
            master_key: r.name,
            ciphertext,
        })
    }

    /// `cryptoKeys.decrypt` on the CryptoKey (Cloud KMS finds the version in the ciphertext)
    /// with the same AAD and CRC32C of ciphertext and AAD; the answer's `plaintextCrc32c` must
    /// match. A record naming another key, or a ciphertext of an impossible size, is refused
    /// without a call.
    async fn unwrap(&self, wrapped: &WrappedKey, ctx: &WrapContext) -> Result<DataKey> {
        if wrapped.provider != TYPE || version_of(&self.key_name, &wrapped.master_key).is_none() {
            return Err(Error::ForeignWrappedKey {
                found: format!("{} key {}", wrapped.provider, wrapped.master_key),
                expected: format!("{TYPE} key {}", self.key_name),
            });
        }
        if wrapped.ciphertext.is_empty() || wrapped.ciphertext.len() > MAX_CIPHERTEXT_LEN {
            return Err(unwrap_failed(ctx));
        }
        let data_key_id = ctx.data_key_id.to_hex();
        let op = Op::Decrypt(&data_key_id);
        let aad = ctx.aad(AAD_LABEL);
        let ciphertext_b64 = STANDARD.encode(&wrapped.ciphertext);
        let aad_b64 = STANDARD.encode(&aad);
        let body = json_body(&DecryptRequest {
            ciphertext: &ciphertext_b64,
            additional_authenticated_data: &aad_b64,
            ciphertext_crc32c: crc_field(&wrapped.ciphertext),
            additional_authenticated_data_crc32c: crc_field(&aad),
        })?;
        let (answer, token) = self.call(op, Method::POST, ":decrypt", Some(body)).await?;
        if !answer.status.is_success() {
            let (err, e) = self.answer_error(op, &answer, &token);
            return Err(if e.status == "FAILED_PRECONDITION" {
                self.precondition_failed(wrapped, err).await
            } else {
                err
            });
        }
        let r: DecryptResponse = parse_json(op, &self.key_name, &answer.body)?;
        let mut buf = Zeroizing::new([0u8; 48]);
        let n = STANDARD
            .decode_slice(r.plaintext.as_bytes(), &mut *buf)
            .map_err(|_| unwrap_failed(ctx))?;
        let plaintext = &buf[..n];
        match r.plaintext_crc32c {
            Some(c) if c == i64::from(crc32c(plaintext)) => {}
            Some(_) => {
                return Err(integrity(
                    op,
                    &self.key_name,
                    "plaintextCrc32c does not match the plaintext",
                ));
            }
            None => {
                return Err(integrity(
                    op,
                    &self.key_name,
                    "the answer has no plaintextCrc32c",
                ));
            }
        }
        DataKey::try_from_slice(plaintext).map_err(|_| unwrap_failed(ctx))
    }

    async fn status(&self) -> Result<KeyStatus> {
        let (answer, token) = self.call(Op::Get, Method::GET, "", None).await?;
        if answer.status.is_success() {
            let key: CryptoKey = parse_json(Op::Get, &self.key_name, &answer.body)?;
            return Ok(status_of(&key));
        }
        let (err, e) = self.answer_error(Op::Get, &answer, &token);
        match (e.http, e.status.as_str()) {
            (403, _) | (_, "PERMISSION_DENIED") => Ok(KeyStatus::AccessDenied),
            (404, _) | (_, "NOT_FOUND") => Ok(KeyStatus::NotFound),
            _ => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "projects/p/locations/global/keyRings/r/cryptoKeys/k";

    fn key(json: serde_json::Value) -> CryptoKey {
        serde_json::from_value(json).expect("crypto key")
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // The check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn versions_are_parsed_strictly() {
        assert_eq!(
            version_of(KEY, &format!("{KEY}/cryptoKeyVersions/12")),
            Some(12)
        );
        for bad in ["", KEY, "/cryptoKeyVersions/1", "x/cryptoKeyVersions/1"] {
            assert_eq!(version_of(KEY, bad), None, "{bad}");
        }
        for bad in ["", "0", "01", "1a", "-1", "1/x"] {
            assert_eq!(
                version_of(KEY, &format!("{KEY}/cryptoKeyVersions/{bad}")),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn status_follows_the_primary_version() {
        let with = |state: &str| {
            status_of(&key(serde_json::json!({
                "name": KEY,
                "purpose": "ENCRYPT_DECRYPT",
                "primary": {"name": format!("{KEY}/cryptoKeyVersions/3"), "state": state,
                            "createTime": "2026-01-02T03:04:05Z"},
                "rotationPeriod": "7776000s",
            })))
        };
        assert_eq!(
            with("ENABLED"),
            KeyStatus::Usable {
                rotation: Some(RotationInfo {
                    automatic: Some(true),
                    current_version: Some(3),
                    last_rotated: Some("2026-01-02T03:04:05Z".into()),
                })
            }
        );
        assert_eq!(with("DISABLED"), KeyStatus::Disabled);
        assert_eq!(with("PENDING_GENERATION"), KeyStatus::Disabled);
        assert_eq!(with("DESTROYED"), KeyStatus::Revoked);
        assert_eq!(with("DESTROY_SCHEDULED"), KeyStatus::Revoked);
        assert_eq!(
            status_of(&key(serde_json::json!({"name": KEY}))),
            KeyStatus::Disabled
        );
    }

    #[test]
    fn int64_fields_are_strings_or_numbers() {
        let r: DecryptResponse =
            serde_json::from_str(r#"{"plaintext":"AA==","plaintextCrc32c":"4294967295"}"#)
                .expect("string");
        assert_eq!(r.plaintext_crc32c, Some(4_294_967_295));
        let r: DecryptResponse =
            serde_json::from_str(r#"{"plaintext":"AA==","plaintextCrc32c":7}"#).expect("number");
        assert_eq!(r.plaintext_crc32c, Some(7));
        assert!(
            serde_json::from_str::<DecryptResponse>(
                r#"{"plaintext":"AA==","plaintextCrc32c":"x"}"#
            )
            .is_err()
        );
    }
}
