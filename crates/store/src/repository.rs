//! A registered repository: its registration, keyring, data-key caches and lock state.

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
use crate::registration::{Registration, RegistrationRequest, compare};

/// The prefix under which a repository keeps its own records. Hidden from listings of the
/// [`EncryptedStore`](crate::EncryptedStore) and refused as an object location.
pub const RESERVED_PREFIX: &str = ".encrypt-repo";
pub(crate) const REGISTRATION: &str = ".encrypt-repo/registration.json";
const KEYRING: &str = ".encrypt-repo/keyring";

/// One data key's record in the keyring: `.encrypt-repo/keyring/<id>.json`, written create-only
/// before any object uses the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyringRecord {
    /// The data key's id (hex).
    pub data_key_id: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Wrapped copies, one per provider (the main one first, then escrow providers).
    pub wrapped: Vec<WrappedKey>,
}

/// Tuning for an opened repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepositoryOptions {
    /// Data-key rotation and cache lifetimes.
    pub cache: CachePolicy,
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
    store: Arc<dyn ObjectStore>,
    registration: Registration,
    id: RepositoryId,
    chunk: ChunkSize,
    provider: Option<Arc<dyn KeyProvider>>,
    writer: WriterKey,
    readers: ReaderCache,
    lock: RwLock<Option<String>>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("id", &self.id)
            .field("store", &self.store.to_string())
            .field("encrypted", &self.registration.request.encrypted)
            .field("provider", &self.provider)
            .field("locked", &self.lock_reason())
            .finish_non_exhaustive()
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn read_json<T: for<'de> Deserialize<'de>>(
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

async fn create_json<T: Serialize>(store: &dyn ObjectStore, path: &str, value: &T) -> Result<bool> {
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
                    created = registry
                        .get(&c.key_provider_type)?
                        .prepare(&mut c.settings)
                        .await?
                }
                (None, true) => {
                    return Err(Error::Setting {
                        setting: "crypto_settings".into(),
                        problem: "is required when encrypted is true".into(),
                    });
                }
                (_, false) => request.crypto_settings = None,
            }
            request.chunk_size =
                Some(crate::registration::chunk_size(request.chunk_size)?.bytes() as u64);
            request.path_binding = Some(request.path_binding.unwrap_or(true));
            let registration = Registration {
                format: 1,
                repository_id: RepositoryId::random()
                    .map_err(encrypt_repo_keys::Error::from)?
                    .to_hex(),
                request: request.clone(),
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
        Self::build(store, registration, Some(provider), options)
    }

    async fn from_registration(
        store: Arc<dyn ObjectStore>,
        registration: Registration,
        registry: &ProviderRegistry,
        access: &Settings,
        options: RepositoryOptions,
    ) -> Result<Self> {
        let provider = match (
            &registration.request.crypto_settings,
            registration.request.encrypted,
        ) {
            (Some(c), true) => {
                let factory = registry.get(&c.key_provider_type)?;
                let mut settings = c.settings.clone();
                for (k, v) in access {
                    if factory.identity_settings().contains(&k.as_str())
                        && settings.get(k).is_some_and(|s| s != v)
                    {
                        return Err(Error::RegistrationConflict {
                            field: format!("crypto_settings.settings.{k}"),
                            registered: settings[k].clone(),
                            requested: v.clone(),
                        });
                    }
                    settings.insert(k.clone(), v.clone());
                }
                Some(factory.open(&settings).await?)
            }
            _ => None,
        };
        Self::build(store, registration, provider, options)
    }

    fn build(
        store: Arc<dyn ObjectStore>,
        registration: Registration,
        provider: Option<Arc<dyn KeyProvider>>,
        options: RepositoryOptions,
    ) -> Result<Self> {
        Ok(Self {
            id: registration.repository_id()?,
            chunk: registration.chunk_size()?,
            store,
            registration,
            provider,
            writer: WriterKey::new(options.cache),
            readers: ReaderCache::new(options.cache),
            lock: RwLock::new(None),
        })
    }

    /// The repository id.
    #[must_use]
    pub fn id(&self) -> RepositoryId {
        self.id
    }

    /// The stored registration.
    #[must_use]
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The chunk size every object in this repository uses.
    #[must_use]
    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk
    }

    /// Whether objects are encrypted (false: a pass-through repository).
    #[must_use]
    pub fn is_encrypted(&self) -> bool {
        self.registration.request.encrypted
    }

    /// Whether object keys are bound to object paths.
    #[must_use]
    pub fn path_binding(&self) -> bool {
        self.registration.path_binding()
    }

    /// The key provider (None for an unencrypted repository).
    #[must_use]
    pub fn provider(&self) -> Option<&Arc<dyn KeyProvider>> {
        self.provider.as_ref()
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
        let Some(p) = &self.provider else {
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

    fn provider_or_err(&self) -> Result<&Arc<dyn KeyProvider>> {
        self.provider.as_ref().ok_or_else(|| Error::Setting {
            setting: "encrypted".into(),
            problem: "the repository is not encrypted".into(),
        })
    }

    /// The data key to seal the next object with, generating (and recording in the keyring)
    /// a new one when the current one is due for rotation.
    pub(crate) async fn key_for_write(&self) -> Result<(DataKeyId, DataKey)> {
        self.check_unlocked()?;
        let provider = self.provider_or_err()?;
        self.writer
            .current(|| async {
                let id = DataKeyId::random()?;
                let ctx = WrapContext {
                    repository_id: self.id,
                    data_key_id: id,
                };
                let g = provider.generate_data_key(&ctx).await?;
                let record = KeyringRecord {
                    data_key_id: id.to_hex(),
                    created_unix: now_unix(),
                    wrapped: vec![g.wrapped],
                };
                // Keyring first: no object may name a key that is not recorded.
                let path = format!("{KEYRING}/{}.json", id.to_hex());
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

    /// The data key `id` for reading the object at `path`.
    pub(crate) async fn key_for_read(&self, id: DataKeyId, path: &str) -> Result<DataKey> {
        self.check_unlocked()?;
        let provider = self.provider_or_err()?;
        let missing = std::sync::Mutex::new(false);
        let r = self
            .readers
            .get(id, || async {
                let record_path = format!("{KEYRING}/{}.json", id.to_hex());
                let record = read_json::<KeyringRecord>(self.store.as_ref(), &record_path)
                    .await
                    .map_err(|e| encrypt_repo_keys::Error::Provider {
                        provider: "keyring".into(),
                        message: e.to_string(),
                    })?;
                let Some(record) = record else {
                    *missing
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
                    return Err(encrypt_repo_keys::Error::Provider {
                        provider: "keyring".into(),
                        message: "missing".into(),
                    });
                };
                let ctx = WrapContext {
                    repository_id: self.id,
                    data_key_id: id,
                };
                let mut last = None;
                for w in record
                    .wrapped
                    .iter()
                    .filter(|w| w.provider == provider.type_name())
                {
                    match provider.unwrap(w, &ctx).await {
                        Ok(k) => return Ok(k),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or(encrypt_repo_keys::Error::ForeignWrappedKey {
                    found: "no copy for this provider".into(),
                    expected: provider.type_name().into(),
                }))
            })
            .await;
        match r {
            Ok(k) => Ok(k),
            Err(_)
                if *missing
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =>
            {
                Err(Error::MissingDataKey {
                    path: path.into(),
                    data_key_id: id,
                })
            }
            Err(e @ encrypt_repo_keys::Error::KeyUnavailable { .. }) => Err(self.provider_error(e)),
            Err(source) => Err(Error::DataKey {
                path: path.into(),
                data_key_id: id,
                source,
            }),
        }
    }

    /// Ids of every data key in the keyring.
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
