//! Repository-level scenarios every key provider crate runs, as [`key_provider_conformance`]
//! is the provider-level one: the same re-wrap and lock/unlock story, told once, over whichever
//! provider a crate brings.
//!
//! - [`rewrap_touches_no_data_object`]: objects under several data keys move from one
//!   provider (or key) to another with zero calls on data objects; every keyring copy names the
//!   target; a fresh open through the registry reads every byte.
//! - [`withdrawn_key_locks_and_restored_key_unlocks`]: making the key unusable at the provider
//!   (disable it, withdraw a policy) locks the repository within the status-check interval,
//!   naming provider and key; restoring it unlocks it with no restart.
//!
//! [`key_provider_conformance`]: crate::key_provider_conformance

use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_keys::{CachePolicy, ProviderRegistry};
use encrypt_repo_store::{
    CryptoSettings, EncryptedStore, RegistrationRequest, Repository, RepositoryOptions,
};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::store::{CountingStore, assert_numbered, put_numbered};

/// A registration request for an encrypted in-memory repository under `crypto`.
#[must_use]
pub fn request(crypto: CryptoSettings) -> RegistrationRequest {
    RegistrationRequest {
        store_type: "memory".into(),
        settings: Default::default(),
        encrypted: true,
        crypto_settings: Some(crypto),
        chunk_size: None,
        escrow: Vec::new(),
        path_binding: None,
    }
}

/// What [`rewrap_touches_no_data_object`] leaves for provider-specific checks.
#[derive(Debug)]
pub struct Rewrapped {
    /// The backend, recording calls.
    pub store: Arc<CountingStore<InMemory>>,
    /// The repository, now under the target provider.
    pub repository: Arc<Repository>,
}

/// Registers a repository under `from`, writes `objects` numbered objects under 4 data keys,
/// re-wraps to `to` and checks: one re-wrapped record per data key, no call on a data object,
/// every keyring copy made by `to`'s provider type with master key `to_master_key`, and every
/// object read back byte for byte through a fresh open with `registry`.
///
/// # Panics
/// When any of those fails, with a message saying which.
pub async fn rewrap_touches_no_data_object(
    registry: &ProviderRegistry,
    from: CryptoSettings,
    to: CryptoSettings,
    to_master_key: &str,
    objects: usize,
) -> Rewrapped {
    let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new())));
    let repo = Repository::register(
        counting.clone(),
        request(from),
        registry,
        RepositoryOptions::default(),
    )
    .await
    .expect("register under the first provider")
    .repository;
    let repo = Arc::new(repo);
    let store = EncryptedStore::new(counting.clone(), repo.clone());
    for batch in 0..4 {
        repo.rotate_now().await;
        put_numbered(&store, batch * objects / 4..(batch + 1) * objects / 4).await;
    }
    assert_eq!(repo.data_key_ids().await.expect("data keys").len(), 4);

    counting.clear();
    let target_type = to.key_provider_type.clone();
    let report = repo.rewrap(to, registry).await.expect("re-wrap");
    assert_eq!((report.rewrapped, report.shredded), (4, 0));
    let data_calls = counting.calls_outside(encrypt_repo_store::RESERVED_PREFIX);
    assert!(
        data_calls.is_empty(),
        "re-wrap touched data objects: {data_calls:?}"
    );
    for k in repo.data_keys().await.expect("data keys") {
        assert_eq!(
            k.wrapped_by,
            [(target_type.clone(), to_master_key.to_owned())],
            "{k:?}"
        );
    }

    let fresh = Repository::open(
        counting.clone(),
        registry,
        &Default::default(),
        RepositoryOptions::default(),
    )
    .await
    .expect("open after the re-wrap");
    let fresh = EncryptedStore::new(counting.clone(), Arc::new(fresh));
    assert_numbered(&fresh, objects).await;
    Rewrapped {
        store: counting,
        repository: repo,
    }
}

async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not {what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers a repository under `crypto` with a 200 ms status-check interval (and a 500 ms
/// reader cache), writes 5 objects, runs `withdraw` and checks that the repository locks within
/// `within` — reads and writes refused with a message holding "locked", the provider type and
/// `key` — then runs `restore` and checks that it unlocks within `within` and reads and writes
/// again, with the same `Repository`.
///
/// # Panics
/// When any of those fails, with a message saying which.
pub async fn withdrawn_key_locks_and_restored_key_unlocks(
    registry: &ProviderRegistry,
    crypto: CryptoSettings,
    key: &str,
    withdraw: impl AsyncFnOnce(),
    restore: impl AsyncFnOnce(),
    within: Duration,
) {
    let provider_type = crypto.key_provider_type.clone();
    let raw = Arc::new(InMemory::new());
    let options = RepositoryOptions {
        cache: CachePolicy {
            reader_ttl: Duration::from_millis(500),
            ..CachePolicy::default()
        },
        status_check_interval: Duration::from_millis(200),
        ..RepositoryOptions::default()
    };
    let repo = Repository::register(raw.clone(), request(crypto), registry, options)
        .await
        .expect("register")
        .repository;
    let store = EncryptedStore::new(raw.clone(), Arc::new(repo));
    put_numbered(&store, 0..5).await;
    assert_numbered(&store, 5).await;

    withdraw().await;
    wait_until("locked", within, || {
        store.repository().lock_reason().is_some()
    })
    .await;
    let e = store
        .get(&Path::from("o/0000"))
        .await
        .expect_err("a locked repository read");
    let m = e.to_string();
    assert!(
        m.contains("locked") && m.contains(&provider_type) && m.contains(key),
        "the lock does not name provider {provider_type} and key {key}: {m}"
    );
    let e = store
        .put(&Path::from("new"), "x".into())
        .await
        .expect_err("a locked repository wrote");
    assert!(e.to_string().contains("locked"), "{e}");

    restore().await;
    wait_until("unlocked", within, || {
        store.repository().lock_reason().is_none()
    })
    .await;
    assert_numbered(&store, 5).await;
    store
        .put(&Path::from("new"), "x".into())
        .await
        .expect("write after unlocking");
    let raw: &dyn ObjectStore = raw.as_ref();
    assert!(raw.head(&Path::from("new")).await.is_ok());
}
