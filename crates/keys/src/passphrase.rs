//! The `passphrase` provider: an Argon2id-derived key-encryption key.
//!
//! Settings: `passphrase_env` | `passphrase_file` | `passphrase_command` (access: where the
//! passphrase comes from — never the command line); `salt`, `m_cost`, `t_cost`, `p_cost`,
//! `fingerprint` (identity: chosen at registration and stored with it).

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, Version};
use encrypt_repo_format::DataKey;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::kek::Kek;
use crate::provider::{KeyProvider, KeyStatus, Settings, WrapContext, WrappedKey};
use crate::registry::ProviderFactory;
use crate::secret::SecretSource;

/// Provider type name.
pub const TYPE: &str = "passphrase";
const WRAP_LABEL: &[u8] = b"encrypt-repo/v1 passphrase wrap\0";
/// Argon2id cost parameters used for new registrations (OWASP baseline).
pub const DEFAULT_COST: ArgonCost = ArgonCost {
    m_cost_kib: 19 * 1024,
    t_cost: 2,
    p_cost: 1,
};
const SALT_LEN: usize = 16;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgonCost {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

/// A key-encryption key derived from a passphrase.
#[derive(Debug)]
pub struct PassphraseProvider {
    kek: Kek,
}

impl PassphraseProvider {
    /// Derives the KEK with Argon2id (runs on a blocking thread: it takes ~50 ms and 19 MiB).
    ///
    /// # Errors
    /// [`Error::Setting`] for invalid cost parameters.
    pub async fn derive(
        passphrase: Zeroizing<Vec<u8>>,
        salt: Vec<u8>,
        cost: ArgonCost,
    ) -> Result<Self> {
        let bad = |m: String| Error::Setting {
            provider: TYPE.into(),
            setting: "m_cost/t_cost/p_cost".into(),
            problem: m,
        };
        let params = Params::new(cost.m_cost_kib, cost.t_cost, cost.p_cost, Some(32))
            .map_err(|e| bad(e.to_string()))?;
        let kek = tokio::task::spawn_blocking(move || {
            let mut out = Zeroizing::new([0u8; 32]);
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(&passphrase, &salt, out.as_mut())
                .map(|()| Kek::new(*out))
        })
        .await
        .map_err(|e| Error::Provider {
            provider: TYPE.into(),
            message: format!("key derivation task failed: {e}"),
        })?
        .map_err(|e| bad(e.to_string()))?;
        Ok(Self { kek })
    }

    /// The derived key's public fingerprint.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        self.kek.fingerprint()
    }
}

#[async_trait::async_trait]
impl KeyProvider for PassphraseProvider {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn master_key(&self) -> String {
        self.kek.fingerprint()
    }

    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<WrappedKey> {
        self.kek.wrap(TYPE, WRAP_LABEL, key, ctx)
    }

    async fn unwrap(&self, wrapped: &WrappedKey, ctx: &WrapContext) -> Result<DataKey> {
        self.kek.unwrap(TYPE, WRAP_LABEL, wrapped, ctx)
    }

    async fn status(&self) -> Result<KeyStatus> {
        Ok(KeyStatus::Usable { rotation: None })
    }
}

/// Builds [`PassphraseProvider`]s from settings.
#[derive(Debug, Default)]
pub struct PassphraseFactory;

fn setting<'a>(settings: &'a Settings, name: &str) -> Result<&'a String> {
    settings.get(name).ok_or_else(|| Error::Setting {
        provider: TYPE.into(),
        setting: name.into(),
        problem: "is missing from the registration".into(),
    })
}

fn number(settings: &Settings, name: &str) -> Result<u32> {
    setting(settings, name)?
        .parse()
        .map_err(|_| Error::Setting {
            provider: TYPE.into(),
            setting: name.into(),
            problem: "must be an unsigned integer".into(),
        })
}

async fn derive_from(settings: &Settings) -> Result<PassphraseProvider> {
    let salt = crate::unhex(setting(settings, "salt")?)
        .filter(|s| s.len() >= SALT_LEN)
        .ok_or_else(|| Error::Setting {
            provider: TYPE.into(),
            setting: "salt".into(),
            problem: format!("must be at least {SALT_LEN} bytes of hex"),
        })?;
    let cost = ArgonCost {
        m_cost_kib: number(settings, "m_cost")?,
        t_cost: number(settings, "t_cost")?,
        p_cost: number(settings, "p_cost")?,
    };
    let passphrase = SecretSource::from_settings(TYPE, "passphrase", settings)?
        .read(TYPE)
        .await?;
    PassphraseProvider::derive(passphrase, salt, cost).await
}

#[async_trait::async_trait]
impl ProviderFactory for PassphraseFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn known_settings(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "salt",
            "m_cost",
            "t_cost",
            "p_cost",
            "fingerprint",
            "passphrase_env",
            "passphrase_file",
            "passphrase_command",
        ])
    }

    fn identity_settings(&self) -> &'static [&'static str] {
        &["salt", "m_cost", "t_cost", "p_cost", "fingerprint"]
    }

    async fn prepare(&self, settings: &mut Settings) -> Result<bool> {
        if !settings.contains_key("salt") {
            let mut salt = [0u8; SALT_LEN];
            aws_lc_rs::rand::fill(&mut salt).map_err(|_| encrypt_repo_format::Error::Random)?;
            settings.insert("salt".into(), crate::hex(&salt));
        }
        for (name, value) in [
            ("m_cost", DEFAULT_COST.m_cost_kib),
            ("t_cost", DEFAULT_COST.t_cost),
            ("p_cost", DEFAULT_COST.p_cost),
        ] {
            settings
                .entry(name.into())
                .or_insert_with(|| value.to_string());
        }
        let provider = derive_from(settings).await?;
        settings.insert("fingerprint".into(), provider.fingerprint());
        Ok(false)
    }

    async fn open(&self, settings: &Settings) -> Result<Arc<dyn KeyProvider>> {
        let provider = derive_from(settings).await?;
        if let Some(expected) = settings.get("fingerprint")
            && *expected != provider.fingerprint()
        {
            return Err(Error::WrongMasterKey {
                provider: TYPE.into(),
                setting: "passphrase".into(),
                detail:
                    "does not match the one the repository was registered with: wrong passphrase"
                        .into(),
            });
        }
        Ok(Arc::new(provider))
    }
}
