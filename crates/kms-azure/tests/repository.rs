//! The key lifecycle of a repository over the `azure-key-vault` provider and the HTTPS
//! stand-in: the shared scenarios of `encrypt_repo_testkit::repository` (re-wrap from `local`
//! without touching a data object; a disabled or expired key locking the repository within the
//! status interval and unlocking it when enabled again), and no keyring record written when a
//! wrap fails.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_keys::{ProviderRegistry, Settings};
use encrypt_repo_store::{CryptoSettings, EncryptedStore, Repository, RepositoryOptions};
use encrypt_repo_testkit::repository::{
    Rewrapped, request, rewrap_touches_no_data_object, withdrawn_key_locks_and_restored_key_unlocks,
};
use encrypt_repo_testkit::store::{assert_numbered, put_numbered};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use support::*;

fn registry() -> ProviderRegistry {
    let mut r = ProviderRegistry::with_builtin();
    r.register(Arc::new(factory(secret_env())));
    r
}

fn azure(kv: &AzureKeyVault) -> CryptoSettings {
    CryptoSettings {
        key_provider_name: "kv".into(),
        key_provider_type: "azure-key-vault".into(),
        settings: settings(kv, "key1"),
    }
}

async fn keyring_objects(store: &dyn ObjectStore) -> usize {
    use futures::TryStreamExt as _;
    let prefix = Path::from(encrypt_repo_store::RESERVED_PREFIX);
    let all: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    all.iter()
        .filter(|m| m.location.as_ref().contains("keyring"))
        .count()
}

/// 200 objects under 4 data keys move from a local key file to a Key Vault key with no call on
/// a data object (the shared scenario), and every object reads through a registry with only
/// `azure-key-vault`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_from_local_to_azure_touches_no_data_object() {
    const N: usize = 200;
    let kv = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let local = CryptoSettings {
        key_provider_name: "old".into(),
        key_provider_type: "local".into(),
        settings: Settings::from([(
            "key_file".to_owned(),
            dir.path().join("master.key").display().to_string(),
        )]),
    };
    let Rewrapped { store, .. } =
        rewrap_touches_no_data_object(&registry(), local, azure(&kv), &kv.key_id("key1"), N).await;
    assert_eq!(kv.wraps(), 4, "one wrapkey per data key");

    let mut only_azure = ProviderRegistry::new();
    only_azure.register(Arc::new(factory(secret_env())));
    let fresh = Repository::open(
        store.clone(),
        &only_azure,
        &Default::default(),
        RepositoryOptions::default(),
    )
    .await
    .unwrap();
    let fresh = EncryptedStore::new(store, Arc::new(fresh));
    assert_numbered(&fresh, N).await;
}

/// Disabling the key at the vault locks the repository within the status interval (reads and
/// writes refused, naming provider and key); enabling it unlocks it, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_key_locks_and_enabling_it_unlocks_within_the_interval() {
    let kv = stand_in().await;
    withdrawn_key_locks_and_restored_key_unlocks(
        &registry(),
        azure(&kv),
        &kv.key_id("key1"),
        async || kv.set_enabled("key1", false),
        async || kv.set_enabled("key1", true),
        Duration::from_secs(5),
    )
    .await;
}

/// The same with the key's `exp` moved into the past and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_locks_and_extending_it_unlocks_within_the_interval() {
    let kv = stand_in().await;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    withdrawn_key_locks_and_restored_key_unlocks(
        &registry(),
        azure(&kv),
        &kv.key_id("key1"),
        async || kv.set_dates("key1", None, Some(now - 1)),
        async || kv.set_dates("key1", None, Some(now + 86_400)),
        Duration::from_secs(5),
    )
    .await;
}

/// A wrap refused by the provider (the key's operations withdrawn, which the periodic status
/// check has not seen yet) fails the write, locks the repository and leaves the keyring as it
/// was; so does a vault answering 503 to every retry (without locking).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wrap_writes_nothing_to_the_keyring() {
    let kv = stand_in().await;
    let raw = Arc::new(InMemory::new());
    let options = RepositoryOptions {
        status_check_interval: Duration::from_secs(3600),
        ..RepositoryOptions::default()
    };
    let repo = Repository::register(raw.clone(), request(azure(&kv)), &registry(), options)
        .await
        .unwrap()
        .repository;
    let store = EncryptedStore::new(raw.clone(), Arc::new(repo));
    put_numbered(&store, 0..2).await;
    let before = keyring_objects(raw.as_ref()).await;
    assert!(before >= 1);

    store.repository().rotate_now().await;
    kv.set_key_ops("key1", &["unwrapKey"]);
    let wraps = kv.wraps();
    let e = store.put(&Path::from("new"), "x".into()).await.unwrap_err();
    assert!(e.to_string().contains("wrapKey"), "{e}");
    assert_eq!(kv.wraps(), wraps);
    assert_eq!(keyring_objects(raw.as_ref()).await, before);

    // The refusal meant the key is unusable: the repository locked at once; with the
    // operations restored, a status check unlocks it.
    assert!(store.repository().lock_reason().is_some());
    kv.set_key_ops("key1", &["wrapKey", "unwrapKey"]);
    assert!(
        store
            .repository()
            .check_key_status()
            .await
            .unwrap()
            .is_usable()
    );
    assert!(store.repository().lock_reason().is_none());

    // The vault failing outright (503 after every retry) writes nothing either.
    kv.fault(Fault::Status(503), 100);
    assert!(store.put(&Path::from("new"), "x".into()).await.is_err());
    kv.fault(Fault::Status(503), 0);
    assert_eq!(keyring_objects(raw.as_ref()).await, before);
    assert_numbered(&store, 2).await;
}

/// An Azure key as the escrow of a repository whose main key is a local key file: every data
/// key gets a Key Vault copy, and with the key file gone the repository reads through the
/// escrow alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_key_escrows_a_repository_whose_main_key_is_lost() {
    let kv = stand_in().await;
    let _ = kv.create_rsa_key("escrow", 3072);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    let mut req = request(CryptoSettings {
        key_provider_name: "main".into(),
        key_provider_type: "local".into(),
        settings: Settings::from([("key_file".to_owned(), key_file.display().to_string())]),
    });
    req.escrow = vec![CryptoSettings {
        key_provider_name: "dr".into(),
        key_provider_type: "azure-key-vault".into(),
        settings: settings(&kv, "escrow"),
    }];
    let repo = Repository::register(raw.clone(), req, &registry(), RepositoryOptions::default())
        .await
        .unwrap()
        .repository;
    let repo = Arc::new(repo);
    let store = EncryptedStore::new(raw.clone(), repo.clone());
    for batch in 0..2 {
        repo.rotate_now().await;
        put_numbered(&store, batch * 10..(batch + 1) * 10).await;
    }
    assert_eq!(kv.wraps(), 2, "one escrow copy per data key");
    drop(store);
    drop(repo);

    std::fs::remove_file(&key_file).unwrap();
    let escrowed = Repository::open_escrow(
        raw.clone(),
        &registry(),
        "dr",
        &Settings::new(),
        RepositoryOptions::default(),
    )
    .await
    .unwrap();
    let escrowed = EncryptedStore::new(raw.clone(), Arc::new(escrowed));
    assert_numbered(&escrowed, 20).await;
    assert!(kv.unwraps() >= 2);
}
