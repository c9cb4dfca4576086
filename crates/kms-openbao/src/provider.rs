//! [`OpenBaoProvider`]: the [`KeyProvider`] over transit's `datakey`, `encrypt`, `decrypt`,
//! `rewrap` and `keys` endpoints, and the mapping of its answers to [`Error`]s.

use std::sync::atomic::{AtomicBool, Ordering};

use encrypt_repo_format::DataKey;
use encrypt_repo_keys::{
    Error, GeneratedKey, KeyProvider, KeyStatus, Result, Settings, WrapContext, WrappedKey,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::http::{Answer, Client, json_body};
use crate::transit::{
    CiphertextAnswer, CiphertextRequest, DataKeyAnswer, DataKeyRequest, DecryptAnswer,
    EncryptRequest, Envelope, TransitKeyInfo, decode_data_key, encode_secret, parse_ciphertext,
};
use crate::{Config, TYPE, check_origin, derivation_context};

/// A transit key on an OpenBao or Vault server. See the [crate docs](crate) for settings,
/// binding and policy.
pub struct OpenBaoProvider {
    client: Client,
    mount: String,
    key_name: String,
    /// Set once the key was seen to be derived; until then every operation reads the key first.
    derived: AtomicBool,
}

impl std::fmt::Debug for OpenBaoProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBaoProvider")
            .field("address", &self.client.address)
            .field("mount", &self.mount)
            .field("key_name", &self.key_name)
            .field(
                "token",
                &format_args!("<redacted, from {}>", self.client.token_source()),
            )
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for OpenBaoProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "openbao transit key {}/{} at {}",
            self.mount, self.key_name, self.client.address
        )
    }
}

/// The transit operations, for paths and messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    DataKey,
    Encrypt,
    Decrypt,
    Rewrap,
    ReadKey,
}

impl Op {
    fn endpoint(self) -> &'static str {
        match self {
            Self::DataKey => "datakey/plaintext",
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
            Self::Rewrap => "rewrap",
            Self::ReadKey => "keys",
        }
    }

    /// Operations whose input is a stored ciphertext.
    fn reads_ciphertext(self) -> bool {
        matches!(self, Self::Decrypt | Self::Rewrap)
    }
}

impl OpenBaoProvider {
    /// Builds a provider from settings (see the crate docs) and reads the token. Does not
    /// contact the server.
    ///
    /// # Errors
    /// [`Error::Setting`] for missing or invalid settings, [`Error::Io`] if the token or CA file
    /// cannot be read.
    pub async fn from_settings(settings: &Settings) -> Result<Self> {
        Self::new(Config::from_settings(settings)?).await
    }

    pub(crate) async fn new(config: Config) -> Result<Self> {
        let client = Client::new(
            config.address,
            config.namespace,
            config.ca_file.as_deref(),
            config.timeout,
            config.token,
        )
        .await?;
        Ok(Self {
            client,
            mount: config.mount,
            key_name: config.key_name,
            derived: AtomicBool::new(false),
        })
    }

    /// Reads the transit key's metadata (`GET {mount}/keys/{key}`).
    ///
    /// # Errors
    /// [`Error::KeyUnavailable`] for 403 (access denied) and 404 (no such key);
    /// [`Error::Provider`] for network failures, 5xx and malformed answers.
    pub async fn key_info(&self) -> Result<TransitKeyInfo> {
        let answer = self.call(Op::ReadKey, Method::GET, None).await?;
        if answer.status != StatusCode::OK {
            return Err(self.failure(Op::ReadKey, &answer, None));
        }
        let info = TransitKeyInfo::parse(&answer.body)
            .ok_or_else(|| self.malformed(Op::ReadKey, "no key metadata"))?;
        if info.derived {
            self.derived.store(true, Ordering::Relaxed);
        }
        Ok(info)
    }

    /// Re-wraps `wrapped` under the key's latest version (`POST {mount}/rewrap/{key}`), on the
    /// server: the data key does not leave it. Returns `wrapped` unchanged in content if it is
    /// already at the latest version.
    ///
    /// # Errors
    /// As [`KeyProvider::unwrap`]: [`Error::UnwrapFailed`] for a wrong context or tampered input,
    /// [`Error::KeyVersionRetired`] if its version is below `min_decryption_version`,
    /// [`Error::KeyUnavailable`] if the key cannot be used.
    pub async fn rewrap(&self, wrapped: &WrappedKey, ctx: &WrapContext) -> Result<WrappedKey> {
        let ciphertext = self.stored_ciphertext(wrapped, ctx)?;
        self.ensure_derived().await?;
        let context = encode_secret(&derivation_context(ctx));
        let body = json_body(&CiphertextRequest {
            ciphertext,
            context: &context,
        })?;
        let answer: CiphertextAnswer = self.transit(Op::Rewrap, body, Some(ctx)).await?;
        self.wrapped(answer.ciphertext)
    }

    fn master_key_id(&self) -> String {
        format!("{}/{}", self.mount, self.key_name)
    }

    /// Before the first use of the key: is it derived? (Transit ignores `context` otherwise.)
    async fn ensure_derived(&self) -> Result<()> {
        if self.derived.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.key_info().await?.check_derived(&self.master_key_id())
    }

    /// The stored ciphertext, if it is ours and well formed.
    fn stored_ciphertext<'w>(&self, wrapped: &'w WrappedKey, ctx: &WrapContext) -> Result<&'w str> {
        check_origin(wrapped, &self.master_key_id())?;
        parse_ciphertext(&wrapped.ciphertext)
            .map(|(s, _)| s)
            .ok_or_else(|| self.unwrap_failed(ctx))
    }

    fn wrapped(&self, ciphertext: String) -> Result<WrappedKey> {
        if parse_ciphertext(ciphertext.as_bytes()).is_none() {
            return Err(self.malformed(Op::Encrypt, "the ciphertext is not vault:vN:base64"));
        }
        Ok(WrappedKey {
            provider: TYPE.into(),
            master_key: self.master_key_id(),
            ciphertext: ciphertext.into_bytes(),
        })
    }

    async fn call(&self, op: Op, method: Method, body: Option<bytes::Bytes>) -> Result<Answer> {
        let path = format!("{}/{}/{}", self.mount, op.endpoint(), self.key_name);
        self.client.call(method, &path, body).await
    }

    /// A POST whose 200 answer is `{"data": T}`; any other status is mapped to an error.
    async fn transit<T: DeserializeOwned>(
        &self,
        op: Op,
        body: bytes::Bytes,
        ctx: Option<&WrapContext>,
    ) -> Result<T> {
        let answer = self.call(op, Method::POST, Some(body)).await?;
        if answer.status != StatusCode::OK {
            return Err(self.failure(op, &answer, ctx));
        }
        serde_json::from_slice::<Envelope<T>>(&answer.body)
            .map(|e| e.data)
            .map_err(|_| self.malformed(op, "not the expected JSON"))
    }

    /// Maps a non-200 answer. Messages carry the server's words (cleaned, without the token)
    /// but never a request or answer body.
    fn failure(&self, op: Op, answer: &Answer, ctx: Option<&WrapContext>) -> Error {
        let message = answer.error_message(&self.client.token());
        let lower = message.to_ascii_lowercase();
        let key = self.master_key_id();
        let unavailable = |reason: String| Error::KeyUnavailable {
            provider: TYPE.into(),
            key: key.clone(),
            reason,
        };
        match answer.status {
            StatusCode::FORBIDDEN => unavailable(format!(
                "permission denied for {} (HTTP 403: {message}); check the token and its policy",
                op.endpoint()
            )),
            StatusCode::NOT_FOUND => unavailable(format!(
                "not found at {}/v1/{} (HTTP 404: {message})",
                self.client.address, key
            )),
            StatusCode::BAD_REQUEST if lower.contains("key not found") => {
                unavailable(format!("the transit key does not exist ({message})"))
            }
            StatusCode::BAD_REQUEST if op.reads_ciphertext() && lower.contains("too old") => {
                Error::KeyVersionRetired {
                    provider: TYPE.into(),
                    key: key.clone(),
                    reason: format!(
                        "transit refuses to decrypt it ({message}): its key version is below the \
                         key's min_decryption_version; lower min_decryption_version to read it again"
                    ),
                }
            }
            StatusCode::BAD_REQUEST if op.reads_ciphertext() => match ctx {
                Some(ctx) => self.unwrap_failed(ctx),
                None => self.malformed(op, &message),
            },
            status => Error::Provider {
                provider: TYPE.into(),
                message: format!(
                    "{} with transit key {key} at {}: HTTP {status}: {message}",
                    op.endpoint(),
                    self.client.address
                ),
            },
        }
    }

    fn unwrap_failed(&self, ctx: &WrapContext) -> Error {
        Error::UnwrapFailed {
            provider: TYPE.into(),
            data_key_id: ctx.data_key_id.to_hex(),
        }
    }

    fn malformed(&self, op: Op, what: &str) -> Error {
        Error::Provider {
            provider: TYPE.into(),
            message: format!(
                "malformed answer to {} with transit key {} from {}: {what}",
                op.endpoint(),
                self.master_key_id(),
                self.client.address
            ),
        }
    }
}

#[async_trait::async_trait]
impl KeyProvider for OpenBaoProvider {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn master_key(&self) -> String {
        self.master_key_id()
    }

    /// Transit generates the key (`datakey/plaintext`, 256 bits) and wraps it under `ctx`.
    async fn generate_data_key(&self, ctx: &WrapContext) -> Result<GeneratedKey> {
        self.ensure_derived().await?;
        let context = encode_secret(&derivation_context(ctx));
        let body = json_body(&DataKeyRequest {
            bits: 256,
            context: &context,
        })?;
        let answer: DataKeyAnswer = self.transit(Op::DataKey, body, Some(ctx)).await?;
        let plaintext = decode_data_key(&answer.plaintext)
            .ok_or_else(|| self.malformed(Op::DataKey, "the data key is not 32 bytes of base64"))?;
        Ok(GeneratedKey {
            plaintext,
            wrapped: self.wrapped(answer.ciphertext)?,
        })
    }

    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<WrappedKey> {
        self.ensure_derived().await?;
        let plaintext = encode_secret(key.expose_secret());
        let context = encode_secret(&derivation_context(ctx));
        let body = json_body(&EncryptRequest {
            plaintext: &plaintext,
            context: &context,
        })?;
        let answer: CiphertextAnswer = self.transit(Op::Encrypt, body, Some(ctx)).await?;
        self.wrapped(answer.ciphertext)
    }

    async fn unwrap(&self, wrapped: &WrappedKey, ctx: &WrapContext) -> Result<DataKey> {
        let ciphertext = self.stored_ciphertext(wrapped, ctx)?;
        self.ensure_derived().await?;
        let context = encode_secret(&derivation_context(ctx));
        let body = json_body(&CiphertextRequest {
            ciphertext,
            context: &context,
        })?;
        let answer: DecryptAnswer = self.transit(Op::Decrypt, body, Some(ctx)).await?;
        // Authenticated under this context, yet not a data key: not something this provider wrapped.
        decode_data_key(&answer.plaintext).ok_or_else(|| self.unwrap_failed(ctx))
    }

    /// `GET {mount}/keys/{key}`: usable with rotation facts, [`KeyStatus::Revoked`] when soft
    /// deleted, [`KeyStatus::AccessDenied`] on 403, [`KeyStatus::NotFound`] on 404. A key that
    /// is not derived is an [`Error::Setting`].
    async fn status(&self) -> Result<KeyStatus> {
        let answer = self.call(Op::ReadKey, Method::GET, None).await?;
        match answer.status {
            StatusCode::FORBIDDEN => return Ok(KeyStatus::AccessDenied),
            StatusCode::NOT_FOUND => return Ok(KeyStatus::NotFound),
            StatusCode::OK => {}
            _ => return Err(self.failure(Op::ReadKey, &answer, None)),
        }
        let info = TransitKeyInfo::parse(&answer.body)
            .ok_or_else(|| self.malformed(Op::ReadKey, "no key metadata"))?;
        info.check_derived(&self.master_key_id())?;
        self.derived.store(true, Ordering::Relaxed);
        if info.soft_deleted {
            return Ok(KeyStatus::Revoked);
        }
        Ok(KeyStatus::Usable {
            rotation: Some(info.rotation()),
        })
    }
}
