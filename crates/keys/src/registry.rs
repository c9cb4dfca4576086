//! Builds providers from a type name and a settings map, as the crypto plugin's
//! `crypto_settings { key_provider_type, settings }` does.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::provider::{KeyProvider, Settings};

/// Makes providers of one type.
///
/// # Contract
/// Settings split in two: **identity** settings (listed by
/// [`identity_settings`](ProviderFactory::identity_settings): key id, ARN, transit key name,
/// salt, fingerprint) are fixed when a repository is registered and stored with it; every other
/// setting only says how to *reach* the key (file location, endpoint, credentials source) and may
/// be supplied afresh when a repository is opened. Secrets themselves are never settings: settings
/// name where to read them.
#[async_trait::async_trait]
pub trait ProviderFactory: std::fmt::Debug + Send + Sync + 'static {
    /// The type name this factory answers to.
    fn type_name(&self) -> &'static str;

    /// Names of the settings that define the key's identity.
    fn identity_settings(&self) -> &'static [&'static str];

    /// The settings that *name* the key (an ARN or alias, a transit key name), the only settings
    /// a less trusted party, such as a caller of `encrypt-repo serve`'s API, may choose; the
    /// operator decides everything else. A subset of
    /// [`identity_settings`](ProviderFactory::identity_settings); empty (the default) for
    /// providers whose key is fixed by how they are reached (a local key file, a passphrase).
    fn key_name_settings(&self) -> &'static [&'static str] {
        &[]
    }

    /// Every setting name this provider type understands, identity and access, or `None` (the
    /// default) if the factory checks names itself. [`check_known_settings`] refuses any other
    /// name, so a misspelled `--key-setting key_fiel=…` is an error, not a silently ignored
    /// setting.
    fn known_settings(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// Called once at registration: validates the settings and fills in generated identity
    /// settings (a salt, a fingerprint). Returns true if it created key material that the user
    /// must back up (for example a new local key file).
    ///
    /// # Errors
    /// Invalid or missing settings, an unreachable key.
    async fn prepare(&self, settings: &mut Settings) -> Result<bool>;

    /// Builds a provider for an existing registration.
    ///
    /// # Errors
    /// Invalid or missing settings, a key that does not match the registered identity.
    async fn open(&self, settings: &Settings) -> Result<Arc<dyn KeyProvider>>;
}

/// Provider factories by type name.
#[derive(Debug, Clone, Default)]
pub struct ProviderRegistry {
    factories: BTreeMap<&'static str, Arc<dyn ProviderFactory>>,
}

impl ProviderRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the providers of this crate: `local`, `passphrase` and `exec`.
    #[must_use]
    pub fn with_builtin() -> Self {
        let mut r = Self::new();
        r.register(Arc::new(crate::local::LocalFactory));
        r.register(Arc::new(crate::passphrase::PassphraseFactory));
        r.register(Arc::new(crate::exec::ExecFactory));
        r
    }

    /// Adds (or replaces) a factory under its type name.
    pub fn register(&mut self, factory: Arc<dyn ProviderFactory>) {
        self.factories.insert(factory.type_name(), factory);
    }

    /// Registered type names, sorted.
    #[must_use]
    pub fn known(&self) -> Vec<String> {
        self.factories.keys().map(|k| (*k).to_owned()).collect()
    }

    /// The factory for `type_name`.
    ///
    /// # Errors
    /// [`Error::UnknownProvider`] listing the known types.
    pub fn get(&self, type_name: &str) -> Result<&Arc<dyn ProviderFactory>> {
        self.factories
            .get(type_name)
            .ok_or_else(|| Error::UnknownProvider {
                name: type_name.into(),
                known: self.known(),
            })
    }

    /// Builds a provider of `type_name` from `settings`.
    ///
    /// # Errors
    /// As [`ProviderRegistry::get`] and [`ProviderFactory::open`].
    pub async fn open(&self, type_name: &str, settings: &Settings) -> Result<Arc<dyn KeyProvider>> {
        self.get(type_name)?.open(settings).await
    }
}

/// Refuses a setting `factory` does not know (see [`ProviderFactory::known_settings`]), naming
/// it and the known ones.
///
/// # Errors
/// [`Error::Setting`] naming the first unknown setting.
pub fn check_known_settings(factory: &dyn ProviderFactory, settings: &Settings) -> Result<()> {
    let Some(known) = factory.known_settings() else {
        return Ok(());
    };
    match settings.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(name) => Err(Error::Setting {
            provider: factory.type_name().into(),
            setting: name.clone(),
            problem: format!("is unknown; known settings: {}", known.join(", ")),
        }),
    }
}
