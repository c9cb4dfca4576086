//! The service's state in the *system repository*: the security configuration and the repository
//! registrations, as encrypted JSON documents in an [`EncryptedStore`].
//!
//! Each document is a series of generations, `state/<doc>/<generation, 20 digits>.json`. A
//! change reads generation N and writes N + 1 with a create-only put (`PutMode::Create`, the
//! conditional put every backend has, the local file system included, which has no
//! etag-conditional update). If another node wrote N + 1 first, the put fails and the change is
//! answered with 409: never a silent overwrite. The current state is the highest generation;
//! the last [`KEEP_GENERATIONS`] are kept, older ones are removed.
//!
//! Each repository registration is a document of its own, `state/registrations/<name>/…`, so
//! registering different repositories through different nodes at once never conflicts; a
//! removal is a generation holding `null`. Registrations kept in the single document of earlier
//! versions (`state/repositories`) are split into their own documents at start (see
//! `App::start`).
//!
//! Every node reloads the documents every `server.reload_interval_seconds` (default 5 s), so a
//! change made through one node is in force on every node within that interval.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use encrypt_repo_keys::ProviderRegistry;
use encrypt_repo_store::{EncryptedStore, RegistrationRequest, Repository, RepositoryOptions};
use futures::TryStreamExt as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{self, Backend};
use crate::error::{Error, Result};

/// Generations kept per document.
pub const KEEP_GENERATIONS: u64 = 8;
/// The security document (users, roles, mappings, action groups, tenants).
pub const SECURITY_DOC: &str = "security";
/// The single registrations document (name → request) of earlier versions, split at start.
pub const REPOSITORIES_DOC: &str = "repositories";
/// The `config.dynamic` stored through the `securityconfig` API (`null`/absent: each node's
/// `config.yml`; see [`crate::app::Runtime`]).
pub const SECURITYCONFIG_DOC: &str = "securityconfig";
/// The audit configuration document (see [`crate::audit::config`]).
pub const AUDIT_DOC: &str = "audit";
/// The parent of the per-repository registration documents.
pub const REGISTRATION_DOCS: &str = "registrations";

/// The document of repository `name`'s registration.
#[must_use]
pub fn registration_doc(name: &str) -> String {
    format!("{REGISTRATION_DOCS}/{name}")
}

/// A document as read, with its generation (0: never written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The generation read.
    pub generation: u64,
    /// The content.
    pub value: T,
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Another writer wrote the next generation first.
    #[error("the document was changed concurrently")]
    Conflict,
    /// Storage or encryption failed.
    #[error("system repository: {0}")]
    Store(String),
}

/// Repository registrations by name.
pub type Registrations = BTreeMap<String, RegistrationRequest>;

/// The registrations as read, with the generation of each repository's document (removed
/// repositories included: their newest generation is a removal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationSet {
    /// Registered repositories.
    pub value: Registrations,
    /// Newest generation of each document.
    pub generations: BTreeMap<String, u64>,
}

impl RegistrationSet {
    /// The generation `name`'s document was read at (0: never written).
    #[must_use]
    pub fn generation_of(&self, name: &str) -> u64 {
        self.generations.get(name).copied().unwrap_or(0)
    }

    /// Records generation `generation` of `name`'s document.
    pub fn set(&mut self, name: &str, generation: u64, value: Option<RegistrationRequest>) {
        self.generations.insert(name.to_owned(), generation);
        match value {
            Some(r) => self.value.insert(name.to_owned(), r),
            None => self.value.remove(name),
        };
    }

    /// Keeps, per repository, whichever of `self` and `other` holds the newer generation (a
    /// slow reload must not undo a write this node made meanwhile).
    pub fn keep_newer(&mut self, other: &Self) {
        for (name, g) in &other.generations {
            if *g > self.generation_of(name) {
                self.set(name, *g, other.value.get(name).cloned());
            }
        }
    }
}

/// The encrypted system repository.
#[derive(Debug, Clone)]
pub struct SystemStore {
    store: Arc<EncryptedStore<Backend>>,
}

fn doc_prefix(doc: &str) -> Path {
    Path::from(format!("state/{doc}"))
}

fn doc_path(doc: &str, generation: u64) -> Path {
    Path::from(format!("state/{doc}/{generation:020}.json"))
}

impl SystemStore {
    /// Opens (registering on first use) the system repository described by `request`.
    ///
    /// # Errors
    /// [`Error::System`].
    pub async fn open(request: &RegistrationRequest, registry: &ProviderRegistry) -> Result<Self> {
        let backend = backend::build_system(&request.store_type, &request.settings)
            .map_err(|e| Error::System(format!("server.system_repository.{e}")))?;
        let registered = Repository::register(
            backend.clone(),
            request.clone(),
            registry,
            RepositoryOptions::default(),
        )
        .await
        .map_err(|e| Error::System(e.to_string()))?;
        if registered.created_key_material {
            tracing::warn!(
                "created a new master key for the system repository: back it up; without it the users and registrations cannot be read"
            );
        }
        let store = EncryptedStore::new(Arc::new(backend), Arc::new(registered.repository));
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// Wraps an already opened encrypting store (tests).
    #[must_use]
    pub fn from_store(store: Arc<EncryptedStore<Backend>>) -> Self {
        Self { store }
    }

    /// The encrypting store itself (the audit sink writes its objects under `audit/`).
    #[must_use]
    pub fn encrypted(&self) -> Arc<EncryptedStore<Backend>> {
        self.store.clone()
    }

    async fn generations(&self, doc: &str) -> Result<Vec<u64>, WriteError> {
        let metas: Vec<_> = self
            .store
            .list(Some(&doc_prefix(doc)))
            .try_collect()
            .await
            .map_err(|e| WriteError::Store(e.to_string()))?;
        let mut gens: Vec<u64> = metas
            .iter()
            .filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        gens.sort_unstable();
        Ok(gens)
    }

    /// The newest generation of `doc`, or generation 0 with the default value.
    ///
    /// # Errors
    /// [`WriteError::Store`] (including an undecryptable or unparsable document).
    pub async fn read<T: DeserializeOwned + Default>(
        &self,
        doc: &str,
    ) -> Result<Versioned<T>, WriteError> {
        loop {
            let Some(&generation) = self.generations(doc).await?.last() else {
                return Ok(Versioned {
                    generation: 0,
                    value: T::default(),
                });
            };
            let got = match self.store.get(&doc_path(doc, generation)).await {
                Ok(g) => g,
                // Pruned between the listing and the read: newer ones exist; list again.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(WriteError::Store(e.to_string())),
            };
            let bytes = got
                .bytes()
                .await
                .map_err(|e| WriteError::Store(e.to_string()))?;
            let value = serde_json::from_slice(&bytes).map_err(|e| {
                WriteError::Store(format!("state/{doc} generation {generation}: {e}"))
            })?;
            return Ok(Versioned { generation, value });
        }
    }

    /// Every repository registration document, at its newest generation.
    ///
    /// # Errors
    /// [`WriteError::Store`].
    pub async fn read_registrations(&self) -> Result<RegistrationSet, WriteError> {
        'again: loop {
            let metas: Vec<_> = self
                .store
                .list(Some(&doc_prefix(REGISTRATION_DOCS)))
                .try_collect()
                .await
                .map_err(|e| WriteError::Store(e.to_string()))?;
            let mut newest: BTreeMap<String, u64> = BTreeMap::new();
            for m in &metas {
                // state/registrations/<name>/<generation>.json
                let parts: Vec<_> = m.location.parts().collect();
                let (Some(name), Some(file), 4) = (parts.get(2), parts.get(3), parts.len()) else {
                    continue;
                };
                let Some(g) = file
                    .as_ref()
                    .strip_suffix(".json")
                    .and_then(|g| g.parse::<u64>().ok())
                else {
                    continue;
                };
                let e = newest.entry(name.as_ref().to_owned()).or_default();
                *e = (*e).max(g);
            }
            let mut set = RegistrationSet::default();
            for (name, g) in newest {
                let doc = registration_doc(&name);
                let got = match self.store.get(&doc_path(&doc, g)).await {
                    Ok(got) => got,
                    // Pruned between the listing and the read: a newer one exists.
                    Err(object_store::Error::NotFound { .. }) => continue 'again,
                    Err(e) => return Err(WriteError::Store(e.to_string())),
                };
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| WriteError::Store(e.to_string()))?;
                let value: Option<RegistrationRequest> = serde_json::from_slice(&bytes)
                    .map_err(|e| WriteError::Store(format!("state/{doc} generation {g}: {e}")))?;
                set.set(&name, g, value);
            }
            return Ok(set);
        }
    }

    /// Writes `value` as generation `read_generation + 1`, only if nobody else did.
    ///
    /// # Errors
    /// [`WriteError::Conflict`] if that generation exists; [`WriteError::Store`].
    pub async fn write<T: Serialize>(
        &self,
        doc: &str,
        read_generation: u64,
        value: &T,
    ) -> Result<u64, WriteError> {
        let next = read_generation + 1;
        let body = serde_json::to_vec(value).map_err(|e| WriteError::Store(e.to_string()))?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(
                &doc_path(doc, next),
                PutPayload::from(Bytes::from(body)),
                opts,
            )
            .await
        {
            Ok(_) => {}
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                return Err(WriteError::Conflict);
            }
            Err(e) => return Err(WriteError::Store(e.to_string())),
        }
        if next > KEEP_GENERATIONS {
            // Best effort: a failed prune only leaves old generations behind.
            if let Ok(gens) = self.generations(doc).await {
                for g in gens.into_iter().filter(|g| *g + KEEP_GENERATIONS <= next) {
                    let _ = self.store.delete(&doc_path(doc, g)).await;
                }
            }
        }
        Ok(next)
    }
}

/// A system repository in `dir/sys` with a local key in `dir/sys.key` (unit tests).
#[cfg(test)]
pub(crate) async fn temp_system(dir: &std::path::Path) -> SystemStore {
    let req: RegistrationRequest = serde_json::from_value(serde_json::json!({
        "type": "fs",
        "settings": { "location": dir.join("sys").to_str().expect("utf-8") },
        "encrypted": true,
        "crypto_settings": { "key_provider_name": "system", "key_provider_type": "local",
            "settings": { "key_file": dir.join("sys.key").to_str().expect("utf-8") } }
    }))
    .expect("request");
    SystemStore::open(&req, &ProviderRegistry::with_builtin())
        .await
        .expect("open")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generations_conflict_and_prune() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = temp_system(dir.path()).await;
        let v: Versioned<BTreeMap<String, u32>> = s.read("t").await.expect("read");
        assert_eq!(v.generation, 0);
        let mut m = BTreeMap::from([("a".to_owned(), 1u32)]);
        assert_eq!(s.write("t", 0, &m).await.expect("write"), 1);
        assert!(matches!(
            s.write("t", 0, &m).await,
            Err(WriteError::Conflict)
        ));
        for g in 1..20 {
            m.insert("a".into(), g as u32);
            assert_eq!(s.write("t", g, &m).await.expect("write"), g + 1);
        }
        let v: Versioned<BTreeMap<String, u32>> = s.read("t").await.expect("read");
        assert_eq!((v.generation, v.value["a"]), (20, 19));
        assert!(s.generations("t").await.expect("list").len() as u64 <= KEEP_GENERATIONS);
        // Encrypted at rest: no plaintext in the files.
        let mut found = false;
        for e in walk(&dir.path().join("sys")) {
            let bytes = std::fs::read(&e).expect("read");
            assert!(!bytes.windows(3).any(|w| w == b"\"a\""), "{}", e.display());
            found = true;
        }
        assert!(found);
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.to_string_lossy().contains("state") {
                out.push(p);
            }
        }
        out
    }
}
