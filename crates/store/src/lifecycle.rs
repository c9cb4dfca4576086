//! The key lifecycle of a repository: re-wrap, shred, key listing and the periodic status check
//! that locks a repository whose key was revoked and unlocks it when the key is back.
//!
//! None of these reads or writes a data object: they touch only the keyring
//! (`.encrypt-repo/keyring/<id>.json`) and the registration.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use encrypt_repo_format::DataKeyId;
use encrypt_repo_keys::{KeyProvider, ProviderRegistry};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::registration::{CryptoSettings, Registration};
use crate::repository::{
    KeyringRecord, REGISTRATION, Recorded, Repository, keyring_path, now_unix, open_provider,
    read_lock, write_lock,
};

/// How many keyring records a re-wrap or shred-all handles at once.
const CONCURRENCY: usize = 16;

/// What [`Repository::rewrap`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RewrapReport {
    /// Keyring records now wrapped by the new provider.
    pub rewrapped: usize,
    /// Tombstones of shredded keys, left as they are.
    pub shredded: usize,
    /// The provider the repository moved from (`type:name`).
    pub from: String,
    /// The provider it moved to (`type:name`).
    pub to: String,
}

/// One data key in the keyring, as [`Repository::data_keys`] lists it. No key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataKeyInfo {
    /// The data key's id.
    pub id: String,
    /// When it was created, seconds since the Unix epoch.
    pub created_unix: u64,
    /// When it was shredded, if it was.
    pub shredded_unix: Option<u64>,
    /// Who holds a wrapped copy: `provider type` and master key, main copy first.
    pub wrapped_by: Vec<(String, String)>,
    /// True while a re-wrap is in progress for this record.
    pub rewrap_pending: bool,
}

/// Which data keys [`Repository::shred`] destroys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shred {
    /// One data key.
    One(DataKeyId),
    /// Every data key in the keyring.
    All,
}

/// The periodic key-status check started by [`Repository::watch_key_status`]; stops when
/// dropped or when the repository is dropped.
#[derive(Debug)]
pub struct StatusWatch(tokio::task::JoinHandle<()>);

impl Drop for StatusWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A keyring record with the version it was read at, for a conditional update.
struct Versioned {
    path: Path,
    record: KeyringRecord,
    version: UpdateVersion,
}

async fn read_versioned(store: &dyn ObjectStore, path: Path) -> Result<Option<Versioned>> {
    let got = match store.get(&path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let version = UpdateVersion {
        e_tag: got.meta.e_tag.clone(),
        version: got.meta.version.clone(),
    };
    let bytes = got.bytes().await?;
    let record = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptMetadata {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    Ok(Some(Versioned {
        path,
        record,
        version,
    }))
}

/// Writes `value` at `path` if it is still at `version`; backends without conditional updates
/// (LocalFileSystem) are overwritten. Returns false if someone else changed it first.
async fn update_json<T: Serialize>(
    store: &dyn ObjectStore,
    path: &Path,
    value: &T,
    version: &UpdateVersion,
) -> Result<bool> {
    let body =
        Bytes::from(
            serde_json::to_vec_pretty(value).map_err(|e| Error::CorruptMetadata {
                path: path.to_string(),
                message: e.to_string(),
            })?,
        );
    let conditional = PutOptions {
        mode: PutMode::Update(version.clone()),
        ..Default::default()
    };
    match store
        .put_opts(path, PutPayload::from(body.clone()), conditional)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(object_store::Error::NotImplemented { .. }) => {
            store.put(path, PutPayload::from(body)).await?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

fn label(c: &CryptoSettings) -> String {
    format!("{}:{}", c.key_provider_type, c.key_provider_name)
}

impl Repository {
    async fn keyring_paths(&self) -> Result<Vec<Path>> {
        Ok(self
            .data_key_ids()
            .await?
            .into_iter()
            .map(|id| Path::from(keyring_path(id)))
            .collect())
    }

    /// Every data key in the keyring, oldest first: ids, creation and shred times, and who holds
    /// wrapped copies. Reads only the keyring.
    ///
    /// # Errors
    /// Storage errors; [`Error::CorruptMetadata`] for an unreadable record.
    pub async fn data_keys(&self) -> Result<Vec<DataKeyInfo>> {
        let store = self.store.as_ref();
        let mut keys: Vec<DataKeyInfo> = futures::stream::iter(self.keyring_paths().await?)
            .map(|p| async move { read_versioned(store, p).await })
            .buffer_unordered(CONCURRENCY)
            .try_filter_map(|v| async move { Ok(v) })
            .map_ok(|v| DataKeyInfo {
                id: v.record.data_key_id.clone(),
                created_unix: v.record.created_unix,
                shredded_unix: v.record.shredded_unix,
                wrapped_by: v
                    .record
                    .wrapped
                    .iter()
                    .map(|w| (w.provider.clone(), w.master_key.clone()))
                    .collect(),
                rewrap_pending: v.record.next.is_some(),
            })
            .try_collect()
            .await?;
        keys.sort_by(|a, b| (a.created_unix, &a.id).cmp(&(b.created_unix, &b.id)));
        Ok(keys)
    }

    /// Moves every keyring record to a new master key or provider (`target`, with the access
    /// settings it needs) and removes the old wrapped copies. No data object is read or written:
    /// each data key is unwrapped with the current provider and wrapped with the new one.
    ///
    /// Safe to interrupt and run again: (1) every record gains a `next` copy from the new
    /// provider next to its old copy; (2) the registration switches to `target`; (3) each
    /// record's old main copy is replaced by the `next` one. Between the steps every record can
    /// be unwrapped by whichever provider the registration names. Escrow copies are kept.
    ///
    /// This instance uses the new provider afterwards; other processes must reopen the
    /// repository with the new provider's access settings (their cached data keys stay valid).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] for a repository opened with an escrow provider; the new provider's
    /// errors (nothing is changed if it cannot wrap); unwrap errors of the current provider,
    /// naming the data key; storage errors.
    pub async fn rewrap(
        &self,
        mut target: CryptoSettings,
        registry: &ProviderRegistry,
    ) -> Result<RewrapReport> {
        self.check_unlocked()?;
        if let Some(why) = self.read_only() {
            return Err(Error::ReadOnly(why.to_owned()));
        }
        let old = self.provider_or_err()?;
        let from = read_lock(&self.registration)
            .request
            .crypto_settings
            .as_ref()
            .map(label)
            .unwrap_or_default();
        let factory = registry.get(&target.key_provider_type)?;
        encrypt_repo_keys::check_known_settings(factory.as_ref(), &target.settings)?;
        factory.prepare(&mut target.settings).await?;
        let new = open_provider(
            registry,
            &target,
            &Default::default(),
            "target",
            Recorded::Trusted,
        )
        .await?;
        let status = new.status().await?;
        if !status.is_usable() {
            return Err(encrypt_repo_keys::Error::KeyUnavailable {
                provider: new.type_name().into(),
                key: new.master_key(),
                reason: format!("{status:?}"),
            }
            .into());
        }

        // (1) a `next` copy in every live record.
        let store = self.store.as_ref();
        let paths = self.keyring_paths().await?;
        let counts: Vec<bool> = futures::stream::iter(paths.clone())
            .map(|p| self.add_next_copy(store, p, &old, &new))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let rewrapped = counts.iter().filter(|live| **live).count();

        // (2) the registration names the new provider.
        loop {
            let path = Path::from(REGISTRATION);
            let got = store.get(&path).await?;
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            let mut reg: Registration =
                serde_json::from_slice(&got.bytes().await?).map_err(|e| {
                    Error::CorruptMetadata {
                        path: REGISTRATION.into(),
                        message: e.to_string(),
                    }
                })?;
            reg.request.crypto_settings = Some(if self.options().records_identity_only() {
                crate::repository::identity_only(registry, &target)?
            } else {
                target.clone()
            });
            if update_json(store, &path, &reg, &version).await? {
                *write_lock(&self.registration) = reg;
                break;
            }
        }
        *write_lock(&self.provider) = Some(Arc::clone(&new));

        // (3) the old main copies go.
        futures::stream::iter(paths)
            .map(|p| Self::promote_next(store, p))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(RewrapReport {
            rewrapped,
            shredded: counts.len() - rewrapped,
            from,
            to: label(&target),
        })
    }

    /// Step 1 of a re-wrap for one record; false for a tombstone.
    async fn add_next_copy(
        &self,
        store: &dyn ObjectStore,
        path: Path,
        old: &Arc<dyn KeyProvider>,
        new: &Arc<dyn KeyProvider>,
    ) -> Result<bool> {
        loop {
            let Some(mut v) = read_versioned(store, path.clone()).await? else {
                return Ok(false);
            };
            if v.record.shredded_unix.is_some() {
                return Ok(false);
            }
            let id = DataKeyId::from_hex(&v.record.data_key_id).ok_or_else(|| {
                Error::CorruptMetadata {
                    path: v.path.to_string(),
                    message: "data_key_id is not 32 hex digits".into(),
                }
            })?;
            let key = self
                .unwrap_record(old, id, &v.record)
                .await
                .map_err(|source| Error::DataKey {
                    path: v.path.to_string(),
                    data_key_id: id,
                    source,
                })?;
            let ctx = encrypt_repo_keys::WrapContext {
                repository_id: self.id(),
                data_key_id: id,
            };
            v.record.next = Some(new.wrap(&key, &ctx).await?);
            if update_json(store, &v.path, &v.record, &v.version).await? {
                return Ok(true);
            }
        }
    }

    /// Step 3 of a re-wrap for one record.
    async fn promote_next(store: &dyn ObjectStore, path: Path) -> Result<()> {
        loop {
            let Some(mut v) = read_versioned(store, path.clone()).await? else {
                return Ok(());
            };
            let Some(next) = v.record.next.take() else {
                return Ok(());
            };
            match v.record.wrapped.first_mut() {
                Some(main) => *main = next,
                None => return Ok(()), // shredded meanwhile: keep the tombstone bare
            }
            if update_json(store, &v.path, &v.record, &v.version).await? {
                return Ok(());
            }
        }
    }

    /// Destroys data keys: each keyring record becomes a tombstone without any wrapped copy, so
    /// the objects sealed under those keys fail with [`Error::DataKeyShredded`] for everyone,
    /// forever. Cached copies in this process are dropped at once and the writer starts a new
    /// key; other processes lose theirs within their reader TTL and rotation interval.
    ///
    /// On a backend that keeps object versions (S3 versioning, Azure soft delete), the old
    /// versions of the keyring record must also be deleted for the shred to be complete.
    ///
    /// Returns the number of keys shredded (tombstones already there are not counted).
    ///
    /// # Errors
    /// [`Error::UnknownDataKey`] for an id that is not in the keyring; storage errors.
    pub async fn shred(&self, which: Shred) -> Result<usize> {
        let ids = match which {
            Shred::One(id) => vec![id],
            Shred::All => self.data_key_ids().await?,
        };
        let store = self.store.as_ref();
        let done: Vec<bool> = futures::stream::iter(ids)
            .map(|id| async move {
                let path = Path::from(keyring_path(id));
                let Some(v) = read_versioned(store, path.clone()).await? else {
                    return Err(Error::UnknownDataKey(id));
                };
                self.readers.forget(id);
                if v.record.shredded_unix.is_some() {
                    return Ok(false);
                }
                let tombstone = KeyringRecord {
                    data_key_id: v.record.data_key_id,
                    created_unix: v.record.created_unix,
                    wrapped: Vec::new(),
                    next: None,
                    shredded_unix: Some(now_unix()),
                };
                // Unconditional: a shred must win over a concurrent re-wrap of the same record.
                let body =
                    serde_json::to_vec_pretty(&tombstone).map_err(|e| Error::CorruptMetadata {
                        path: path.to_string(),
                        message: e.to_string(),
                    })?;
                store.put(&path, PutPayload::from(body)).await?;
                self.readers.forget(id);
                Ok(true)
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        self.writer.rotate_now().await;
        Ok(done.iter().filter(|d| **d).count())
    }

    /// Starts a task that calls [`Repository::check_key_status`] every
    /// [`RepositoryOptions::status_check_interval`](crate::RepositoryOptions): a key reported
    /// disabled, revoked, denied or missing locks the repository (caches flushed); a usable key
    /// unlocks it. A check that cannot reach the provider changes nothing. The task holds only
    /// a weak reference and stops with the returned guard or the repository.
    ///
    /// Must be called inside a tokio runtime.
    pub fn watch_key_status(self: &Arc<Self>) -> StatusWatch {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self
            .options()
            .status_check_interval
            .max(Duration::from_millis(10));
        StatusWatch(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate; the repository was just opened
            loop {
                tick.tick().await;
                let Some(repo) = weak.upgrade() else { return };
                // Unreachable provider: keep the current state; the next tick asks again.
                let _ = repo.check_key_status().await;
            }
        }))
    }
}
