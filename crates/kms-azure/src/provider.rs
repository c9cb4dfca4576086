//! [`AzureKeyVaultProvider`]: the [`KeyProvider`] over Key Vault's `GET key`, `wrapkey` and
//! `unwrapkey` calls, with the vault's bearer challenge and the binding MAC.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use bytes::Bytes;
use encrypt_repo_format::DataKey;
use encrypt_repo_keys::{
    Error, KeyProvider, KeyStatus, Result, RotationInfo, WrapContext, WrappedKey,
};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::credential::{Auth, Challenge, EnvFn, unix_now};
use crate::error::{Op, failure, malformed};
use crate::http::{Answer, Http, HttpOptions, Request, json_body};
use crate::record::{Record, binding_mac, verify_mac};
use crate::settings::{AzureSettings, KEY_ID, KeyId, bad, is_version};
use crate::{API_VERSION, TYPE, WRAP_ALGORITHM};

/// A key in Azure Key Vault (or Managed HSM). See the [crate docs](crate) for settings,
/// credentials, the binding MAC and the stored record.
pub struct AzureKeyVaultProvider {
    http: Http,
    auth: Auth,
    key: KeyId,
}

impl std::fmt::Debug for AzureKeyVaultProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureKeyVaultProvider")
            .field("key_id", &self.key.base())
            .field("pinned_version", &self.key.version)
            .field("credential", &self.auth)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for AzureKeyVaultProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "azure-key-vault key {}", self.key.base())
    }
}

/// What `GET key` said about a key version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The version the answer describes (the current one when `key_id` has no version).
    pub version: String,
    /// JSON Web Key type: `RSA`, `RSA-HSM`, `EC`, `oct-HSM`, …
    pub kty: String,
    /// Permitted operations (`wrapKey`, `unwrapKey`, …).
    pub key_ops: Vec<String>,
    /// `attributes.enabled`.
    pub enabled: bool,
    /// `attributes.nbf`, Unix seconds.
    pub not_before: Option<i64>,
    /// `attributes.exp`, Unix seconds.
    pub expires: Option<i64>,
    /// `attributes.created`, Unix seconds.
    pub created: Option<i64>,
}

impl KeyInfo {
    fn parse(body: &[u8], key: &KeyId) -> Option<Self> {
        #[derive(Deserialize)]
        struct Jwk {
            kid: String,
            kty: String,
            #[serde(default)]
            key_ops: Vec<String>,
        }
        #[derive(Deserialize, Default)]
        struct Attributes {
            enabled: Option<bool>,
            nbf: Option<i64>,
            exp: Option<i64>,
            created: Option<i64>,
        }
        #[derive(Deserialize)]
        struct Bundle {
            key: Jwk,
            #[serde(default)]
            attributes: Attributes,
        }
        let b: Bundle = serde_json::from_slice(body).ok()?;
        let version = kid_version(&b.key.kid, key)?;
        Some(Self {
            version,
            kty: b.key.kty,
            key_ops: b.key.key_ops,
            enabled: b.attributes.enabled.unwrap_or(true),
            not_before: b.attributes.nbf,
            expires: b.attributes.exp,
            created: b.attributes.created,
        })
    }

    /// RSA keys only: `RSA-OAEP-256` wrapping needs one.
    fn check_type(&self, key: &str) -> Result<()> {
        if matches!(self.kty.as_str(), "RSA" | "RSA-HSM") {
            return Ok(());
        }
        Err(bad(
            KEY_ID,
            format!(
                "{key} is a {} key: an RSA or RSA-HSM key is needed for {WRAP_ALGORITHM} wrapping",
                self.kty
            ),
        ))
    }

    /// Why the key cannot be used now, from its attributes (not from a failed call: Key Vault
    /// lets `wrapkey` through on a disabled key).
    pub fn unusable_reason(&self, now: i64) -> Option<String> {
        let missing: Vec<&str> = ["wrapKey", "unwrapKey"]
            .into_iter()
            .filter(|op| !self.key_ops.iter().any(|o| o == op))
            .collect();
        if !self.enabled {
            Some("disabled (attributes.enabled is false)".into())
        } else if let Some(nbf) = self.not_before.filter(|&n| n > now) {
            Some(format!(
                "not valid before {} (attributes.nbf)",
                rfc3339(nbf)
            ))
        } else if let Some(exp) = self.expires.filter(|&e| e <= now) {
            Some(format!("expired at {} (attributes.exp)", rfc3339(exp)))
        } else if !missing.is_empty() {
            Some(format!(
                "its permitted operations (key_ops) lack {}",
                missing.join(" and ")
            ))
        } else {
            None
        }
    }
}

/// The version in a `kid` (`https://host/keys/{name}/{version}`), if it names our key. The host
/// is not compared: behind a private endpoint or a custom domain the vault names itself.
fn kid_version(kid: &str, key: &KeyId) -> Option<String> {
    let mut parts = kid.rsplit('/');
    let version = parts.next()?;
    let name = parts.next()?;
    let keys = parts.next()?;
    (keys == "keys" && name.eq_ignore_ascii_case(&key.name) && is_version(version))
        .then(|| version.to_ascii_lowercase())
}

#[derive(Serialize)]
struct KeyOpRequest<'a> {
    alg: &'static str,
    value: &'a str,
}

#[derive(Deserialize)]
struct KeyOpAnswer {
    kid: String,
    value: Zeroizing<String>,
}

fn www_authenticate(a: &Answer) -> Option<&str> {
    a.headers
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
}

impl AzureKeyVaultProvider {
    pub(crate) async fn new(s: &AzureSettings, env: &EnvFn, options: HttpOptions) -> Result<Self> {
        let http = Http::new(s.ca_file.as_deref(), options).await?;
        let auth = Auth::from_env(env, s.authority_host.clone()).await?;
        Ok(Self {
            http,
            auth,
            key: s.key_id.clone(),
        })
    }

    /// The key identifier without a version: the master key's identity.
    #[must_use]
    pub fn key_id(&self) -> String {
        self.key.base()
    }

    /// The version every wrap uses, when `key_id` names one; otherwise each wrap uses the
    /// key's current version.
    #[must_use]
    pub fn pinned_version(&self) -> Option<&str> {
        self.key.version.as_deref()
    }

    /// Which credential the provider uses (never a secret).
    #[must_use]
    pub fn credential(&self) -> String {
        self.auth.describe()
    }

    fn url(&self, version: Option<&str>, op: Option<&str>) -> String {
        let mut u = self.key.base();
        if let Some(v) = version {
            u.push('/');
            u.push_str(v);
        }
        if let Some(op) = op {
            u.push('/');
            u.push_str(op);
        }
        format!("{u}?api-version={API_VERSION}")
    }

    /// Reads the key (`GET {key_id}`): the pinned version, or the current one.
    ///
    /// # Errors
    /// [`Error::KeyUnavailable`] on 403 and 404, [`Error::Provider`] for transport failures,
    /// other statuses and malformed answers.
    pub async fn key_info(&self) -> Result<KeyInfo> {
        let answer = self.get_key(self.pinned_version()).await?;
        if answer.status != StatusCode::OK {
            return Err(failure(Op::Get, &self.key.base(), &answer));
        }
        self.parse_info(&answer)
    }

    async fn get_key(&self, version: Option<&str>) -> Result<Answer> {
        self.call(Op::Get, Method::GET, self.url(version, None), None)
            .await
    }

    fn parse_info(&self, answer: &Answer) -> Result<KeyInfo> {
        KeyInfo::parse(&answer.body, &self.key).ok_or_else(|| {
            malformed(
                Op::Get,
                &self.key.base(),
                "not a key bundle for this key (key.kid, key.kty)",
            )
        })
    }

    /// `GET key` at registration: an RSA key, enabled, inside its validity window, with the
    /// `wrapKey` and `unwrapKey` operations.
    pub(crate) async fn check_registrable(&self) -> Result<KeyInfo> {
        let info = self.key_info().await?;
        info.check_type(&self.key.base())?;
        if let Some(reason) = info.unusable_reason(now()) {
            return Err(self.unavailable(format!("version {}: {reason}", info.version)));
        }
        Ok(info)
    }

    fn unavailable(&self, reason: String) -> Error {
        Error::KeyUnavailable {
            provider: TYPE.into(),
            key: self.key.base(),
            reason,
        }
    }

    /// One authenticated call. The first call of a provider is sent without a token, as
    /// azure-keyvault does, to learn the vault's challenge (tenant and resource); a 401 later
    /// (a rotated tenant, a revoked token) takes the new challenge and a fresh token, once.
    async fn call(
        &self,
        op: Op,
        method: Method,
        url: String,
        body: Option<Bytes>,
    ) -> Result<Answer> {
        let what = format!("{} on key {}", op.name(), self.key.base());
        if !self.auth.has_challenge().await {
            // Without the body: it may hold a data key, and this request is unauthenticated.
            let probe = Request::new(
                Method::GET,
                self.url(self.pinned_version(), None),
                what.clone(),
            );
            let answer = self.http.send(&probe).await?;
            let challenge = match www_authenticate(&answer) {
                Some(h) if answer.status == StatusCode::UNAUTHORIZED => {
                    Challenge::parse(h, &self.key.host)?
                }
                _ => Challenge {
                    tenant: None,
                    scope: crate::credential::DEFAULT_SCOPE.into(),
                },
            };
            self.auth.set_challenge(challenge).await?;
        }
        let mut fresh = false;
        loop {
            let token = self.auth.token(&self.http, fresh).await?;
            let bearer = Zeroizing::new(format!("Bearer {}", token.as_str()));
            let mut request = Request::new(method.clone(), url.clone(), what.clone()).header(
                "authorization",
                &bearer,
                true,
            )?;
            if let Some(b) = &body {
                request = request.body("application/json", b.clone());
            }
            let answer = self.http.send(&request).await?;
            if answer.status == StatusCode::UNAUTHORIZED && !fresh {
                if let Some(h) = www_authenticate(&answer) {
                    self.auth
                        .set_challenge(Challenge::parse(h, &self.key.host)?)
                        .await?;
                }
                fresh = true;
                continue;
            }
            return Ok(answer);
        }
    }

    /// `POST …/{version}/wrapkey` or `unwrapkey` with `value`; the 200 answer's `kid` must name
    /// that version.
    async fn key_op(
        &self,
        op: Op,
        version: &str,
        value: &str,
    ) -> Result<std::result::Result<Zeroizing<Vec<u8>>, Answer>> {
        let path = if op == Op::Wrap {
            "wrapkey"
        } else {
            "unwrapkey"
        };
        let body = json_body(&KeyOpRequest {
            alg: WRAP_ALGORITHM,
            value,
        })?;
        let answer = self
            .call(
                op,
                Method::POST,
                self.url(Some(version), Some(path)),
                Some(body),
            )
            .await?;
        if answer.status != StatusCode::OK {
            return Ok(Err(answer));
        }
        let key = self.key.base();
        let parsed: KeyOpAnswer = serde_json::from_slice(&answer.body)
            .map_err(|_| malformed(op, &key, "not {\"kid\", \"value\"} JSON"))?;
        if kid_version(&parsed.kid, &self.key).as_deref() != Some(version) {
            return Err(malformed(op, &key, "the answer names another key version"));
        }
        let mut out = Zeroizing::new(vec![0u8; parsed.value.len()]);
        let n = URL_SAFE_NO_PAD_INDIFFERENT
            .decode_slice(parsed.value.as_bytes(), &mut out[..])
            .map_err(|_| malformed(op, &key, "the value is not base64url"))?;
        out.truncate(n);
        Ok(Ok(out))
    }

    fn unwrap_failed(ctx: &WrapContext) -> Error {
        Error::UnwrapFailed {
            provider: TYPE.into(),
            data_key_id: ctx.data_key_id.to_hex(),
        }
    }
}

#[async_trait::async_trait]
impl KeyProvider for AzureKeyVaultProvider {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn master_key(&self) -> String {
        self.key.base()
    }

    /// Reads the key first (its attributes decide, since Key Vault would wrap under a disabled
    /// key), then `wrapkey` under the pinned or current version; stores that version, the
    /// wrapped key and the binding MAC (see the crate docs).
    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<WrappedKey> {
        let info = self.key_info().await?;
        info.check_type(&self.key.base())?;
        if let Some(reason) = info.unusable_reason(now()) {
            return Err(self.unavailable(format!("version {}: {reason}", info.version)));
        }
        let value = Zeroizing::new(URL_SAFE_NO_PAD.encode(key.expose_secret()));
        let wrapped = match self.key_op(Op::Wrap, &info.version, &value).await? {
            Ok(w) => w,
            Err(answer) => return Err(failure(Op::Wrap, &self.key.base(), &answer)),
        };
        if !Record::check_sizes(&info.version, &wrapped) {
            return Err(malformed(
                Op::Wrap,
                &self.key.base(),
                "a wrapped key of an impossible size",
            ));
        }
        let record = Record {
            version: info.version,
            wrapped: wrapped.to_vec(),
            mac: binding_mac(key, ctx),
        };
        Ok(WrappedKey {
            provider: TYPE.into(),
            master_key: self.key.base(),
            ciphertext: record.encode(),
        })
    }

    /// `unwrapkey` under the version the record names, then the binding MAC, in constant time.
    async fn unwrap(&self, wrapped: &WrappedKey, ctx: &WrapContext) -> Result<DataKey> {
        if wrapped.provider != TYPE || wrapped.master_key != self.key.base() {
            return Err(Error::ForeignWrappedKey {
                found: format!("{} key {}", wrapped.provider, wrapped.master_key),
                expected: format!("{TYPE} key {}", self.key.base()),
            });
        }
        let record = Record::decode(&wrapped.ciphertext).ok_or_else(|| Self::unwrap_failed(ctx))?;
        let value = URL_SAFE_NO_PAD.encode(&record.wrapped);
        let plaintext = match self.key_op(Op::Unwrap, &record.version, &value).await? {
            Ok(p) => p,
            // Key Vault refuses a ciphertext it cannot decrypt with 400 BadParameter.
            Err(a) if a.status == StatusCode::BAD_REQUEST => return Err(Self::unwrap_failed(ctx)),
            // No such version: a tampered record if the key itself is there.
            Err(a) if a.status == StatusCode::NOT_FOUND => {
                let key = self.get_key(None).await?;
                return Err(if key.status == StatusCode::OK {
                    Self::unwrap_failed(ctx)
                } else {
                    failure(Op::Unwrap, &self.key.base(), &a)
                });
            }
            Err(a) => return Err(failure(Op::Unwrap, &self.key.base(), &a)),
        };
        let key = DataKey::try_from_slice(&plaintext).map_err(|_| Self::unwrap_failed(ctx))?;
        if !verify_mac(&key, ctx, &record.mac) {
            return Err(Self::unwrap_failed(ctx));
        }
        Ok(key)
    }

    /// `GET key` (the pinned version, or the current one) and its attributes:
    ///
    /// | answer | status |
    /// |---|---|
    /// | 200, enabled, inside `nbf`..`exp`, `key_ops` has `wrapKey` and `unwrapKey` | Usable (`last_rotated` = the current version's `created`) |
    /// | 200, `enabled: false` | Disabled |
    /// | 200, `nbf` in the future or `exp` past | Disabled (the owner can change the dates; no data is lost) |
    /// | 200, `key_ops` lacking `wrapKey` or `unwrapKey` | Disabled (the owner can restore the operations) |
    /// | 403 | AccessDenied |
    /// | 404 | NotFound (deleted or never there; a soft-deleted key can be recovered) |
    ///
    /// A key that is not RSA is an [`Error::Setting`]; other answers are errors.
    async fn status(&self) -> Result<KeyStatus> {
        let answer = self.get_key(self.pinned_version()).await?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::FORBIDDEN => return Ok(KeyStatus::AccessDenied),
            StatusCode::NOT_FOUND => return Ok(KeyStatus::NotFound),
            _ => return Err(failure(Op::Get, &self.key.base(), &answer)),
        }
        let info = self.parse_info(&answer)?;
        info.check_type(&self.key.base())?;
        if info.unusable_reason(now()).is_some() {
            return Ok(KeyStatus::Disabled);
        }
        Ok(KeyStatus::Usable {
            rotation: Some(RotationInfo {
                automatic: None,
                // Key Vault versions are 128-bit ids, not numbers.
                current_version: None,
                last_rotated: info.created.map(rfc3339),
            }),
        })
    }
}

fn now() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

/// Unix seconds as RFC 3339 UTC, or as the number itself outside the years 1970 to 9999.
pub(crate) fn rfc3339(t: i64) -> String {
    encrypt_repo_keys::wire::rfc3339(t).unwrap_or_else(|| format!("{t} (Unix seconds)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> KeyInfo {
        KeyInfo {
            version: "0".repeat(32),
            kty: "RSA".into(),
            key_ops: vec!["wrapKey".into(), "unwrapKey".into()],
            enabled: true,
            not_before: None,
            expires: None,
            created: None,
        }
    }

    #[test]
    fn attributes_decide_usability() {
        assert_eq!(info().unusable_reason(100), None);
        let mut i = info();
        i.enabled = false;
        assert!(i.unusable_reason(100).unwrap().contains("disabled"));
        let mut i = info();
        i.not_before = Some(101);
        assert!(i.unusable_reason(100).unwrap().contains("not valid before"));
        let mut i = info();
        i.expires = Some(100);
        assert!(i.unusable_reason(100).unwrap().contains("expired"));
        let mut i = info();
        i.key_ops = vec!["wrapKey".into(), "encrypt".into()];
        assert!(i.unusable_reason(100).unwrap().contains("lack unwrapKey"));
    }

    #[test]
    fn only_rsa_keys_are_accepted() {
        for kty in ["RSA", "RSA-HSM"] {
            let i = KeyInfo {
                kty: kty.into(),
                ..info()
            };
            assert!(i.check_type("k").is_ok());
        }
        for kty in ["EC", "EC-HSM", "oct", "oct-HSM"] {
            let i = KeyInfo {
                kty: kty.into(),
                ..info()
            };
            match i.check_type("https://v/keys/k") {
                Err(e @ Error::Setting { .. }) => {
                    assert!(e.to_string().contains("key_id") && e.to_string().contains(kty))
                }
                other => panic!("{kty}: {other:?}"),
            }
        }
    }

    #[test]
    fn kid_versions_must_name_our_key() {
        let k = KeyId::parse("https://v.vault.azure.net/keys/Key1").unwrap();
        let v = "ab".repeat(16);
        assert_eq!(
            kid_version(&format!("https://other/keys/key1/{v}"), &k),
            Some(v.clone())
        );
        assert_eq!(kid_version(&format!("https://v/keys/key2/{v}"), &k), None);
        assert_eq!(
            kid_version(&format!("https://v/secrets/key1/{v}"), &k),
            None
        );
        assert_eq!(kid_version("https://v/keys/key1/123", &k), None);
    }

    #[test]
    fn rfc3339_formats_unix_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-1), "-1 (Unix seconds)");
    }
}
