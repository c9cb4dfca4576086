//! A registered repository: its registration, keyring, data-key caches and lock state.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use encrypt_repo_format::{ChunkSize, DataKey, DataKeyId, RepositoryId};
use encrypt_repo_keys::{
    CachePolicy, KeyProvider, KeyStatus, ProviderRegistry, ReaderCache, Settings, WrapContext,
    WrappedKey, WriterKey,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::registration::{CryptoSettings, Registration, RegistrationRequest, compare};

/// The prefix under which a repository keeps its own records. Hidden from listings of the
/// [`EncryptedStore`](crate::EncryptedStore) and refused as an object location.
pub const RESERVED_PREFIX: &str = ".encrypt-repo";
pub(crate) const REGISTRATION: &str = ".encrypt-repo/registration.json";
pub(crate) const KEYRING: &str = ".encrypt-repo/keyring";

/// One data key's record in the keyring: `.encrypt-repo/keyring/<id>.json`, written create-only
/// before any object uses the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyringRecord {
    /// The data key's id (hex).
    pub data_key_id: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Wrapped copies, one per provider: the main provider's first, then one per escrow
    /// provider in registration order. Empty once shredded.
    pub wrapped: Vec<WrappedKey>,
    /// During a re-wrap: the copy made by the provider the repository is moving to. It replaces
    /// `wrapped[0]` when the re-wrap finishes; until then readers may use either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<WrappedKey>,
    /// When the data key was shredded (seconds since the Unix epoch): the record stays as a
    /// tombstone without any wrapped copy, so objects under the key fail with
    /// [`Error::DataKeyShredded`] rather than "missing".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shredded_unix: Option<u64>,
}

/// Tuning for an opened repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryOptions {
    /// Data-key rotation and cache lifetimes.
    pub cache: CachePolicy,
    /// How often [`Repository::watch_key_status`] asks the provider whether the key is usable
    /// (default 5 minutes): a revoked key locks the repository, a restored one unlocks it.
    pub status_check_interval: std::time::Duration,
    /// Where the key providers' *access* settings come from.
    ///
    /// `None` (the default): the settings recorded in storage, overlaid by the `access`
    /// settings given to [`Repository::open`] — unless
    /// [`caller_access_only`](Self::caller_access_only) says otherwise.
    ///
    /// `Some(map)`: storage is not trusted with how a key is reached. The map (by
    /// `key_provider_name`: the provider type expected and its settings) is the only source of
    /// access settings; of the settings recorded in storage only the provider's
    /// [identity settings](encrypt_repo_keys::ProviderFactory::identity_settings) are used (and
    /// must agree with the map's), a recorded provider the map does not name, or names with
    /// another type, is refused, and a registration written (by [`Repository::register`] or a
    /// re-wrap) records identity settings only. So nobody who can write to the bucket can make
    /// the opener run a program, read a file or reach an address: `encrypt-repo serve` opens
    /// every repository this way.
    pub trusted_access: Option<Arc<BTreeMap<String, CryptoSettings>>>,
    /// With [`trusted_access`](Self::trusted_access) `None`: storage is not trusted with how a
    /// key is reached either, but the caller gives the access settings itself (the CLI's
    /// choice). A registration written (by [`Repository::register`] or a re-wrap) records
    /// identity settings only; of the settings recorded in storage only the provider's identity
    /// settings are used; the `access` settings given to [`Repository::open`] (main provider)
    /// and [`escrow_access`](Self::escrow_access) (escrow providers) supply the rest. So a
    /// copied bucket cannot make the opener run its `passphrase_command` or read its `key_file`.
    /// `false` (the default) keeps the older behaviour: recorded settings, overlaid by `access`.
    pub caller_access_only: bool,
    /// Access settings of escrow providers, by `key_provider_name`, laid over what storage
    /// records for them (under [`caller_access_only`](Self::caller_access_only): their only
    /// source). Ignored under [`trusted_access`](Self::trusted_access), whose map holds them.
    pub escrow_access: BTreeMap<String, Settings>,
}

impl RepositoryOptions {
    /// True if storage records identity settings only ([`trusted_access`](Self::trusted_access)
    /// or [`caller_access_only`](Self::caller_access_only)).
    #[must_use]
    pub fn records_identity_only(&self) -> bool {
        self.trusted_access.is_some() || self.caller_access_only
    }
}

/// Default [`RepositoryOptions::status_check_interval`]: 5 minutes.
pub const DEFAULT_STATUS_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

impl Default for RepositoryOptions {
    fn default() -> Self {
        Self {
            cache: CachePolicy::default(),
            status_check_interval: DEFAULT_STATUS_CHECK_INTERVAL,
            trusted_access: None,
            caller_access_only: false,
            escrow_access: BTreeMap::new(),
        }
    }
}

/// What [`Repository::register`] did.
#[derive(Debug)]
pub struct Registered {
    /// The opened repository.
    pub repository: Repository,
    /// False if an identical registration already existed (a no-op).
    pub newly_registered: bool,
    /// True if the provider created key material the user must back up (a new local key file).
    pub created_key_material: bool,
}

/// A registered repository. Cheap to share behind an `Arc`; all state is caches.
pub struct Repository {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) registration: RwLock<Registration>,
    id: RepositoryId,
    chunk: ChunkSize,
    encrypted: bool,
    path_binding: bool,
    /// The provider that unwraps (and, unless read-only, generates) data keys. Replaced by a
    /// re-wrap.
    pub(crate) provider: RwLock<Option<Arc<dyn KeyProvider>>>,
    /// Escrow providers by name: each new data key gets a wrapped copy from each.
    pub(crate) escrow: Vec<(String, Arc<dyn KeyProvider>)>,
    /// Set when opened with an escrow provider: reads only.
    read_only: Option<String>,
    pub(crate) writer: WriterKey,
    pub(crate) readers: ReaderCache,
    lock: RwLock<Option<String>>,
    options: RepositoryOptions,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("id", &self.id)
            .field("store", &self.store.to_string())
            .field("encrypted", &self.is_encrypted())
            .field("provider", &self.provider())
            .field(
                "escrow",
                &self.escrow.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("read_only", &self.read_only)
            .field("locked", &self.lock_reason())
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) async fn read_json<T: for<'de> Deserialize<'de>>(
    store: &dyn ObjectStore,
    path: &str,
) -> Result<Option<T>> {
    match store.get(&Path::from(path)).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::CorruptMetadata {
                    path: path.into(),
                    message: e.to_string(),
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn create_json<T: Serialize>(
    store: &dyn ObjectStore,
    path: &str,
    value: &T,
) -> Result<bool> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| Error::CorruptMetadata {
        path: path.into(),
        message: e.to_string(),
    })?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(&Path::from(path), PutPayload::from(Bytes::from(body)), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Lays `over` on `settings`; a setting of `over` may not change an identity setting.
fn overlay(settings: &mut Settings, over: &Settings, identity: &[&str], field: &str) -> Result<()> {
    for (k, v) in over {
        if identity.contains(&k.as_str()) && settings.get(k).is_some_and(|s| s != v) {
            return Err(Error::RegistrationConflict {
                field: format!("{field}.settings.{k}"),
                registered: settings[k].clone(),
                requested: v.clone(),
            });
        }
        settings.insert(k.clone(), v.clone());
    }
    Ok(())
}

/// `crypto` with only its provider's identity settings (what a registration written under
/// [`RepositoryOptions::trusted_access`] records).
pub(crate) fn identity_only(
    registry: &ProviderRegistry,
    crypto: &CryptoSettings,
) -> Result<CryptoSettings> {
    let identity = registry.get(&crypto.key_provider_type)?.identity_settings();
    let mut c = crypto.clone();
    c.settings.retain(|k, _| identity.contains(&k.as_str()));
    Ok(c)
}

/// Where [`open_provider`] takes access settings from besides the caller's `access`.
#[derive(Clone, Copy)]
pub(crate) enum Recorded<'a> {
    /// The settings recorded in storage, all of them.
    Trusted,
    /// Only the identity settings recorded in storage
    /// ([`RepositoryOptions::caller_access_only`]).
    IdentityOnly,
    /// The identity settings recorded in storage and the operator's entry for the provider's
    /// name ([`RepositoryOptions::trusted_access`]).
    Operator(&'a BTreeMap<String, CryptoSettings>),
}

impl<'a> Recorded<'a> {
    /// What `options` say about recorded settings.
    pub(crate) fn of(options: &'a RepositoryOptions) -> Self {
        match (&options.trusted_access, options.caller_access_only) {
            (Some(map), _) => Self::Operator(map),
            (None, true) => Self::IdentityOnly,
            (None, false) => Self::Trusted,
        }
    }
}

/// Builds the provider of `crypto` (as recorded in storage) with `access` settings laid over
/// the recorded ones, as [`Recorded`] says which of those count.
pub(crate) async fn open_provider(
    registry: &ProviderRegistry,
    crypto: &CryptoSettings,
    access: &Settings,
    field: &str,
    recorded: Recorded<'_>,
) -> Result<Arc<dyn KeyProvider>> {
    let factory = registry.get(&crypto.key_provider_type)?;
    let identity = factory.identity_settings();
    let mut settings = match recorded {
        Recorded::Trusted => crypto.settings.clone(),
        Recorded::IdentityOnly => identity_only(registry, crypto)?.settings,
        Recorded::Operator(map) => {
            let t = map
                .get(&crypto.key_provider_name)
                .ok_or_else(|| Error::Setting {
                    setting: format!("{field}.key_provider_name"),
                    problem: format!(
                        "the registration in storage names key provider {:?}, which this repository is not configured to use",
                        crypto.key_provider_name
                    ),
                })?;
            if t.key_provider_type != crypto.key_provider_type {
                return Err(Error::RegistrationConflict {
                    field: format!("{field}.key_provider_type"),
                    registered: crypto.key_provider_type.clone(),
                    requested: t.key_provider_type.clone(),
                });
            }
            let mut s = identity_only(registry, crypto)?.settings;
            overlay(&mut s, &t.settings, identity, field)?;
            s
        }
    };
    overlay(&mut settings, access, identity, field)?;
    encrypt_repo_keys::check_known_settings(factory.as_ref(), &settings)?;
    Ok(factory.open(&settings).await?)
}

impl Repository {
    /// Registers a repository in `store`, or confirms an identical existing registration.
    /// Conflicting crypto settings are refused with an error naming the field.
    ///
    /// # Errors
    /// [`Error::RegistrationConflict`], [`Error::Setting`], provider errors, storage errors.
    pub async fn register(
        store: Arc<dyn ObjectStore>,
        mut request: RegistrationRequest,
        registry: &ProviderRegistry,
        options: RepositoryOptions,
    ) -> Result<Registered> {
        crate::registration::chunk_size(request.chunk_size)?;
        let access = request
            .crypto_settings
            .as_ref()
            .map(|c| c.settings.clone())
            .unwrap_or_default();
        loop {
            if let Some(existing) = read_json::<Registration>(store.as_ref(), REGISTRATION).await? {
                let identity = match &request.crypto_settings {
                    Some(c) => registry.get(&c.key_provider_type)?.identity_settings(),
                    None => &[],
                };
                compare(&existing.request, &request, identity)?;
                let repository =
                    Self::from_registration(store, existing, registry, &access, options).await?;
                return Ok(Registered {
                    repository,
                    newly_registered: false,
                    created_key_material: false,
                });
            }
            let mut created = false;
            match (&mut request.crypto_settings, request.encrypted) {
                (Some(c), true) => {
                    let factory = registry.get(&c.key_provider_type)?;
                    encrypt_repo_keys::check_known_settings(factory.as_ref(), &c.settings)?;
                    created = factory.prepare(&mut c.settings).await?
                }
                (None, true) => {
                    return Err(Error::Setting {
                        setting: "crypto_settings".into(),
                        problem: "is required when encrypted is true".into(),
                    });
                }
                (_, false) => request.crypto_settings = None,
            }
            if request.encrypted {
                let main = request
                    .crypto_settings
                    .as_ref()
                    .map(|c| c.key_provider_name.clone());
                let mut names = std::collections::BTreeSet::from_iter(main);
                for e in &mut request.escrow {
                    if !names.insert(e.key_provider_name.clone()) {
                        return Err(Error::Setting {
                            setting: "escrow".into(),
                            problem: format!(
                                "key_provider_name {:?} is used twice; every provider needs its own name",
                                e.key_provider_name
                            ),
                        });
                    }
                    let factory = registry.get(&e.key_provider_type)?;
                    encrypt_repo_keys::check_known_settings(factory.as_ref(), &e.settings)?;
                    created |= factory.prepare(&mut e.settings).await?;
                }
            } else {
                request.escrow.clear();
            }
            request.chunk_size =
                Some(crate::registration::chunk_size(request.chunk_size)?.bytes() as u64);
            request.path_binding = Some(request.path_binding.unwrap_or(true));
            let mut recorded = request.clone();
            if options.records_identity_only() {
                // Storage records what the key is, never how to reach it.
                if let Some(c) = &mut recorded.crypto_settings {
                    *c = identity_only(registry, c)?;
                }
                for e in &mut recorded.escrow {
                    *e = identity_only(registry, e)?;
                }
            }
            let registration = Registration {
                format: 1,
                repository_id: RepositoryId::random()
                    .map_err(encrypt_repo_keys::Error::from)?
                    .to_hex(),
                request: recorded,
            };
            if create_json(store.as_ref(), REGISTRATION, &registration).await? {
                let repository =
                    Self::from_registration(store, registration, registry, &access, options)
                        .await?;
                return Ok(Registered {
                    repository,
                    newly_registered: true,
                    created_key_material: created,
                });
            }
            // Another process registered first: compare against theirs.
        }
    }

    /// Opens a registered repository. `access` settings (key file location, endpoint, where
    /// to read a passphrase) override the stored ones; identity settings must not differ.
    ///
    /// # Errors
    /// [`Error::NotRegistered`], [`Error::RegistrationConflict`], provider and storage errors.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        registry: &ProviderRegistry,
        access: &Settings,
        options: RepositoryOptions,
    ) -> Result<Self> {
        let registration = read_json::<Registration>(store.as_ref(), REGISTRATION)
            .await?
            .ok_or_else(|| Error::NotRegistered(REGISTRATION.into()))?;
        Self::from_registration(store, registration, registry, access, options).await
    }

    /// Opens a registered repository with a provider built by the caller (a custom provider, a
    /// test double). The provider's type must match the registration.
    ///
    /// # Errors
    /// As [`Repository::open`].
    pub async fn open_with_provider(
        store: Arc<dyn ObjectStore>,
        provider: Arc<dyn KeyProvider>,
        options: RepositoryOptions,
    ) -> Result<Self> {
        let registration = read_json::<Registration>(store.as_ref(), REGISTRATION)
            .await?
            .ok_or_else(|| Error::NotRegistered(REGISTRATION.into()))?;
        if let Some(c) = &registration.request.crypto_settings
            && c.key_provider_type != provider.type_name()
        {
            return Err(Error::RegistrationConflict {
                field: "crypto_settings.key_provider_type".into(),
                registered: c.key_provider_type.clone(),
                requested: provider.type_name().into(),
            });
        }
        Self::build(store, registration, Some(provider), Vec::new(), options)
    }

    /// Opens a registered repository with one of its escrow providers (by
    /// `key_provider_name`) instead of the main one: the disaster-recovery path when the main
    /// key is gone. Reads only; writes are refused (a new data key would lack its main copy).
    /// `access` settings apply to the escrow provider.
    ///
    /// # Errors
    /// [`Error::Setting`] if no escrow provider has that name; as [`Repository::open`].
    pub async fn open_escrow(
        store: Arc<dyn ObjectStore>,
        registry: &ProviderRegistry,
        escrow_name: &str,
        access: &Settings,
        options: RepositoryOptions,
    ) -> Result<Self> {
        let registration = read_json::<Registration>(store.as_ref(), REGISTRATION)
            .await?
            .ok_or_else(|| Error::NotRegistered(REGISTRATION.into()))?;
        let escrow = registration
            .request
            .escrow
            .iter()
            .find(|e| e.key_provider_name == escrow_name)
            .ok_or_else(|| Error::Setting {
                setting: "escrow".into(),
                problem: format!(
                    "no escrow provider named {escrow_name:?} (registered: {})",
                    registration
                        .request
                        .escrow
                        .iter()
                        .map(|e| e.key_provider_name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let provider =
            open_provider(registry, escrow, access, "escrow", Recorded::of(&options)).await?;
        let mut repo = Self::build(store, registration, Some(provider), Vec::new(), options)?;
        repo.read_only = Some(format!(
            "opened with escrow provider {escrow_name}; writing needs the main key provider"
        ));
        Ok(repo)
    }

    async fn from_registration(
        store: Arc<dyn ObjectStore>,
        registration: Registration,
        registry: &ProviderRegistry,
        access: &Settings,
        options: RepositoryOptions,
    ) -> Result<Self> {
        let mut unreachable = Vec::new();
        let (provider, escrow) = match (
            &registration.request.crypto_settings,
            registration.request.encrypted,
        ) {
            (Some(c), true) => {
                let recorded = Recorded::of(&options);
                let main = open_provider(registry, c, access, "crypto_settings", recorded).await?;
                let mut escrow = Vec::new();
                let none = Settings::new();
                for e in &registration.request.escrow {
                    let given = match recorded {
                        Recorded::Operator(_) => &none,
                        _ => options
                            .escrow_access
                            .get(&e.key_provider_name)
                            .unwrap_or(&none),
                    };
                    match open_provider(registry, e, given, "escrow", recorded).await {
                        Ok(p) => escrow.push((e.key_provider_name.clone(), p)),
                        // The caller said nothing of how to reach this escrow key: reading
                        // needs only the main key, so the repository opens read-only.
                        Err(err)
                            if matches!(recorded, Recorded::IdentityOnly) && given.is_empty() =>
                        {
                            unreachable.push(format!("{:?} ({err})", e.key_provider_name));
                        }
                        Err(err) => return Err(err),
                    }
                }
                (Some(main), escrow)
            }
            _ => (None, Vec::new()),
        };
        let mut repo = Self::build(store, registration, provider, escrow, options)?;
        if !unreachable.is_empty() {
            repo.read_only = Some(format!(
                "opened without the access settings of escrow provider {}: every new data key \
                 needs an escrow copy, so writing needs them (RepositoryOptions::escrow_access; \
                 the CLI's --escrow-setting NAME:K=V)",
                unreachable.join(", ")
            ));
        }
        Ok(repo)
    }

    fn build(
        store: Arc<dyn ObjectStore>,
        registration: Registration,
        provider: Option<Arc<dyn KeyProvider>>,
        escrow: Vec<(String, Arc<dyn KeyProvider>)>,
        options: RepositoryOptions,
    ) -> Result<Self> {
        Ok(Self {
            id: registration.repository_id()?,
            chunk: registration.chunk_size()?,
            encrypted: registration.request.encrypted,
            path_binding: registration.path_binding(),
            store,
            registration: RwLock::new(registration),
            provider: RwLock::new(provider),
            escrow,
            read_only: None,
            writer: WriterKey::new(options.cache),
            readers: ReaderCache::new(options.cache),
            lock: RwLock::new(None),
            options,
        })
    }

    /// The repository id.
    #[must_use]
    pub fn id(&self) -> RepositoryId {
        self.id
    }

    /// The stored registration (as of opening, or of this instance's last re-wrap).
    #[must_use]
    pub fn registration(&self) -> Registration {
        read_lock(&self.registration).clone()
    }

    /// The chunk size every object in this repository uses.
    #[must_use]
    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk
    }

    /// Whether objects are encrypted (false: a pass-through repository).
    #[must_use]
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// Whether object keys are bound to object paths.
    #[must_use]
    pub fn path_binding(&self) -> bool {
        self.path_binding
    }

    /// The key provider that unwraps data keys (None for an unencrypted repository): the main
    /// provider, or the escrow provider the repository was opened with.
    #[must_use]
    pub fn provider(&self) -> Option<Arc<dyn KeyProvider>> {
        read_lock(&self.provider).clone()
    }

    /// Names of the escrow providers that receive a copy of every new data key.
    #[must_use]
    pub fn escrow_names(&self) -> Vec<String> {
        self.escrow.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Why writes are refused, if the repository was opened read-only (with an escrow provider).
    #[must_use]
    pub fn read_only(&self) -> Option<&str> {
        self.read_only.as_deref()
    }

    /// The options the repository was opened with.
    #[must_use]
    pub fn options(&self) -> RepositoryOptions {
        self.options.clone()
    }

    /// Why the repository is locked, if it is.
    #[must_use]
    pub fn lock_reason(&self) -> Option<String> {
        self.lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Fails with [`Error::Locked`] while the repository is locked.
    ///
    /// # Errors
    /// [`Error::Locked`].
    pub fn check_unlocked(&self) -> Result<()> {
        match self.lock_reason() {
            Some(reason) => Err(Error::Locked {
                repository: self.id.to_hex(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Asks the provider whether the key is usable; locks or unlocks the repository accordingly.
    ///
    /// # Errors
    /// Provider errors when it cannot be asked at all.
    pub async fn check_key_status(&self) -> Result<KeyStatus> {
        let Some(p) = self.provider() else {
            return Ok(KeyStatus::Usable { rotation: None });
        };
        let status = p.status().await?;
        if status.is_usable() {
            *self
                .lock
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        } else {
            self.lock_with(format!(
                "key provider {} reports key {} {status:?}",
                p.type_name(),
                p.master_key()
            ));
        }
        Ok(status)
    }

    /// Drops every cached data key (zeroized) and the writer's current key.
    pub async fn flush_caches(&self) {
        self.readers.flush();
        self.writer.rotate_now().await;
    }

    /// Starts a new data key for the next write.
    pub async fn rotate_now(&self) {
        self.writer.rotate_now().await;
    }

    fn lock_with(&self, reason: String) {
        *self
            .lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
        self.readers.flush();
        // The writer's key is dropped at its next use: `current` sees the lock first.
    }

    /// Maps a provider error; a "key unavailable" answer locks the repository.
    fn provider_error(&self, e: encrypt_repo_keys::Error) -> Error {
        if let encrypt_repo_keys::Error::KeyUnavailable { .. } = &e {
            self.lock_with(e.to_string());
            return Error::Locked {
                repository: self.id.to_hex(),
                reason: e.to_string(),
            };
        }
        e.into()
    }

    pub(crate) fn provider_or_err(&self) -> Result<Arc<dyn KeyProvider>> {
        self.provider().ok_or_else(|| Error::Setting {
            setting: "encrypted".into(),
            problem: "the repository is not encrypted".into(),
        })
    }

    /// The data key to seal the next object with, generating (and recording in the keyring)
    /// a new one when the current one is due for rotation.
    pub(crate) async fn key_for_write(&self) -> Result<(DataKeyId, DataKey)> {
        self.check_unlocked()?;
        if let Some(why) = &self.read_only {
            return Err(Error::ReadOnly(why.clone()));
        }
        let provider = self.provider_or_err()?;
        self.writer
            .current(|| async {
                let id = DataKeyId::random()?;
                let ctx = WrapContext {
                    repository_id: self.id,
                    data_key_id: id,
                };
                let g = provider.generate_data_key(&ctx).await?;
                let mut wrapped = vec![g.wrapped];
                for (name, escrow) in &self.escrow {
                    // An escrow provider that cannot wrap stops the write (every data key must
                    // have its escrow copies) but does not lock the repository: reads need only
                    // the main provider.
                    let copy = escrow.wrap(&g.plaintext, &ctx).await.map_err(|e| {
                        encrypt_repo_keys::Error::Provider {
                            provider: format!("escrow {name} ({})", escrow.type_name()),
                            message: e.to_string(),
                        }
                    })?;
                    wrapped.push(copy);
                }
                let record = KeyringRecord {
                    data_key_id: id.to_hex(),
                    created_unix: now_unix(),
                    wrapped,
                    next: None,
                    shredded_unix: None,
                };
                // Keyring first: no object may name a key that is not recorded.
                let path = keyring_path(id);
                if !create_json(self.store.as_ref(), &path, &record)
                    .await
                    .map_err(|e| encrypt_repo_keys::Error::Provider {
                        provider: "keyring".into(),
                        message: e.to_string(),
                    })?
                {
                    return Err(encrypt_repo_keys::Error::Provider {
                        provider: "keyring".into(),
                        message: format!("{path} already exists (random id collision)"),
                    });
                }
                Ok((id, g.plaintext))
            })
            .await
            .map_err(|e| self.provider_error(e))
    }

    /// Unwraps the data key of `record` with `provider`, trying every copy it made (the main
    /// copy, escrow copies, and a re-wrap's `next` copy).
    pub(crate) async fn unwrap_record(
        &self,
        provider: &Arc<dyn KeyProvider>,
        id: DataKeyId,
        record: &KeyringRecord,
    ) -> encrypt_repo_keys::Result<DataKey> {
        let ctx = WrapContext {
            repository_id: self.id,
            data_key_id: id,
        };
        let mut last = None;
        for w in record
            .next
            .iter()
            .chain(&record.wrapped)
            .filter(|w| w.provider == provider.type_name())
        {
            match provider.unwrap(w, &ctx).await {
                Ok(k) => return Ok(k),
                // The key itself is unusable: no other copy of this provider will do better.
                Err(e @ encrypt_repo_keys::Error::KeyUnavailable { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(encrypt_repo_keys::Error::ForeignWrappedKey {
            found: record
                .next
                .iter()
                .chain(&record.wrapped)
                .map(|w| w.provider.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            expected: provider.type_name().into(),
        }))
    }

    /// The data key `id` for reading the object at `path`.
    pub(crate) async fn key_for_read(&self, id: DataKeyId, path: &str) -> Result<DataKey> {
        self.check_unlocked()?;
        let provider = self.provider_or_err()?;
        // Why the record could not be used, when that is not the provider's answer.
        let special = std::sync::Mutex::new(None);
        let note = |e: Error| {
            *special
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
            encrypt_repo_keys::Error::Provider {
                provider: "keyring".into(),
                message: "record unusable".into(),
            }
        };
        let r = self
            .readers
            .get(id, || async {
                let record_path = keyring_path(id);
                let record = read_json::<KeyringRecord>(self.store.as_ref(), &record_path)
                    .await
                    .map_err(|e| encrypt_repo_keys::Error::Provider {
                        provider: "keyring".into(),
                        message: e.to_string(),
                    })?;
                let Some(record) = record else {
                    return Err(note(Error::MissingDataKey {
                        path: path.into(),
                        data_key_id: id,
                    }));
                };
                if let Some(when) = record.shredded_unix {
                    return Err(note(Error::DataKeyShredded {
                        path: path.into(),
                        data_key_id: id,
                        shredded_unix: when,
                    }));
                }
                self.unwrap_record(&provider, id, &record).await
            })
            .await;
        match r {
            Ok(k) => Ok(k),
            Err(_) if special.lock().is_ok_and(|s| s.is_some()) => Err(special
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .unwrap_or(Error::MissingDataKey {
                    path: path.into(),
                    data_key_id: id,
                })),
            Err(e @ encrypt_repo_keys::Error::KeyUnavailable { .. }) => Err(self.provider_error(e)),
            Err(source) => Err(Error::DataKey {
                path: path.into(),
                data_key_id: id,
                source,
            }),
        }
    }

    /// Ids of every data key in the keyring (shredded ones included).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn data_key_ids(&self) -> Result<Vec<DataKeyId>> {
        use futures::TryStreamExt as _;
        let prefix = Path::from(KEYRING);
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas
            .iter()
            .filter_map(|m| {
                m.location
                    .filename()?
                    .strip_suffix(".json")
                    .and_then(DataKeyId::from_hex)
            })
            .collect())
    }
}

/// Reads a lock that no code path can leave inconsistent (single assignments), so poisoning is
/// ignored.
pub(crate) fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Like [`read_lock`], for writing.
pub(crate) fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where the keyring record of data key `id` lives.
pub(crate) fn keyring_path(id: DataKeyId) -> String {
    format!("{KEYRING}/{}.json", id.to_hex())
}
