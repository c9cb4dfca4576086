//! The key lifecycle of a repository over the `gcp-kms` provider, against the Cloud KMS
//! stand-in: registration, re-wrap from `local` without touching a data object, a disabled
//! primary version (or withdrawn permission) locking the repository within the status interval
//! and unlocking when undone, and nothing written to the keyring when Cloud KMS refuses a wrap.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_keys::{CachePolicy, ProviderRegistry, Settings};
use encrypt_repo_store::{
    CryptoSettings, EncryptedStore, RegistrationRequest, Repository, RepositoryOptions,
};
use encrypt_repo_testkit::gcp_kms::{Fault, VersionState};
use encrypt_repo_testkit::store::{CountingStore, Method, assert_numbered, put_numbered};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use support::*;

fn registry(env: &Env) -> ProviderRegistry {
    let mut r = ProviderRegistry::with_builtin();
    r.register(Arc::new(env.factory()));
    r
}

fn request(crypto: CryptoSettings) -> RegistrationRequest {
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

fn gcp(env: &Env, key_name: &str) -> CryptoSettings {
    CryptoSettings {
        key_provider_name: "gcp".into(),
        key_provider_type: "gcp-kms".into(),
        settings: env.settings(key_name),
    }
}

fn quick() -> RepositoryOptions {
    RepositoryOptions {
        cache: CachePolicy {
            reader_ttl: Duration::from_millis(500),
            ..CachePolicy::default()
        },
        status_check_interval: Duration::from_millis(200),
        ..RepositoryOptions::default()
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not {what} within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 400 objects under 4 data keys move from a local key file to a Cloud KMS key: zero calls on
/// data objects, every keyring copy names a version of the CryptoKey, and every object reads
/// through a registry that has only the `gcp-kms` provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_from_local_to_gcp_kms_touches_no_data_object() {
    const N: usize = 400;
    let env = env().await;
    let key_name = env.kms.create_key();
    let key_file = env.dir.path().join("master.key");
    let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new())));
    let local = CryptoSettings {
        key_provider_name: "old".into(),
        key_provider_type: "local".into(),
        settings: Settings::from([("key_file".to_owned(), key_file.display().to_string())]),
    };
    let repo = Repository::register(
        counting.clone(),
        request(local),
        &registry(&env),
        RepositoryOptions::default(),
    )
    .await
    .unwrap()
    .repository;
    let repo = Arc::new(repo);
    let store = EncryptedStore::new(counting.clone(), repo.clone());
    for batch in 0..4 {
        repo.rotate_now().await;
        put_numbered(&store, batch * N / 4..(batch + 1) * N / 4).await;
    }
    assert_eq!(repo.data_key_ids().await.unwrap().len(), 4);

    counting.clear();
    let before = env.kms.calls();
    let report = repo
        .rewrap(gcp(&env, &key_name), &registry(&env))
        .await
        .unwrap();
    assert_eq!((report.rewrapped, report.shredded), (4, 0));
    let data_calls = counting.calls_outside(encrypt_repo_store::RESERVED_PREFIX);
    assert!(
        data_calls.is_empty(),
        "re-wrap touched data objects: {data_calls:?}"
    );
    assert_eq!(env.kms.calls().encrypt - before.encrypt, 4);
    for k in repo.data_keys().await.unwrap() {
        assert_eq!(k.wrapped_by.len(), 1, "{k:?}");
        let (provider, master_key) = &k.wrapped_by[0];
        assert_eq!(provider, "gcp-kms");
        assert_eq!(master_key, &format!("{key_name}/cryptoKeyVersions/1"));
    }

    // Rotation of the Cloud KMS key is transparent to a fresh reader with only gcp-kms.
    env.kms.rotate(&key_name);
    let mut only_gcp = ProviderRegistry::new();
    only_gcp.register(Arc::new(env.factory()));
    let fresh = Repository::open(
        counting.clone(),
        &only_gcp,
        &Default::default(),
        RepositoryOptions::default(),
    )
    .await
    .unwrap();
    let fresh = EncryptedStore::new(counting.clone(), Arc::new(fresh));
    assert_numbered(&fresh, N).await;
    fresh
        .put(&Path::from("after-rotation"), "x".into())
        .await
        .unwrap();
    let versions: Vec<String> = fresh
        .repository()
        .data_keys()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|k| k.wrapped_by.into_iter().map(|(_, m)| m))
        .collect();
    assert!(
        versions.contains(&format!("{key_name}/cryptoKeyVersions/2")),
        "a new data key uses the new primary: {versions:?}"
    );
}

/// Disabling the primary version locks the repository through the status check (reads and
/// writes refused, naming provider and key); enabling it unlocks with no restart. Withdrawing
/// the service account's permission does the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_primary_locks_and_enabling_unlocks_within_the_interval() {
    let env = env().await;
    let key_name = env.kms.create_key();
    let raw = Arc::new(InMemory::new());
    let repo = Repository::register(
        raw.clone(),
        request(gcp(&env, &key_name)),
        &registry(&env),
        quick(),
    )
    .await
    .unwrap()
    .repository;
    let store = EncryptedStore::new(raw.clone(), Arc::new(repo));
    put_numbered(&store, 0..5).await;
    assert_numbered(&store, 5).await;

    for (lock, unlock) in [
        (
            Box::new(|| env.kms.set_state(&key_name, 1, VersionState::Disabled)) as Box<dyn Fn()>,
            Box::new(|| env.kms.set_state(&key_name, 1, VersionState::Enabled)) as Box<dyn Fn()>,
        ),
        (
            Box::new(|| env.kms.deny(EMAIL)),
            Box::new(|| env.kms.allow(EMAIL)),
        ),
    ] {
        lock();
        wait_until("locked", || store.repository().lock_reason().is_some()).await;
        let m = store
            .get(&Path::from("o/0000"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("locked") && m.contains("gcp-kms") && m.contains(&key_name),
            "{m}"
        );
        let e = store.put(&Path::from("new"), "x".into()).await.unwrap_err();
        assert!(e.to_string().contains("locked"), "{e}");

        unlock();
        wait_until("unlocked", || store.repository().lock_reason().is_none()).await;
        assert_numbered(&store, 5).await;
        store.put(&Path::from("new"), "x".into()).await.unwrap();
    }
}

fn keyring_writes(counting: &CountingStore<InMemory>) -> Vec<String> {
    counting
        .calls()
        .into_iter()
        .filter(|c| {
            !matches!(
                c.method,
                Method::Get
                    | Method::Head
                    | Method::GetRanges
                    | Method::List
                    | Method::ListWithOffset
                    | Method::ListWithDelimiter
            )
        })
        .filter_map(|c| c.location.map(|l| l.to_string()))
        .filter(|l| l.starts_with(".encrypt-repo/keyring"))
        .collect()
}

/// A wrap Cloud KMS refuses (unavailable after every retry, or the key disabled before the
/// status check noticed) writes no keyring record and no data object; registering a disabled or
/// asymmetric key writes nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_written_to_the_keyring_when_a_wrap_fails() {
    let env = env().await;
    let key_name = env.kms.create_key();
    let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new())));
    let repo = Repository::register(
        counting.clone(),
        request(gcp(&env, &key_name)),
        &registry(&env),
        RepositoryOptions::default(),
    )
    .await
    .unwrap()
    .repository;
    let repo = Arc::new(repo);
    let store = EncryptedStore::new(counting.clone(), repo.clone());
    put_numbered(&store, 0..3).await;
    let ids = repo.data_key_ids().await.unwrap();

    for fault in [Fault::Unavailable(1000), Fault::CorruptCrc] {
        env.kms.set_fault(Some(fault));
        repo.rotate_now().await;
        counting.clear();
        let e = store
            .put(&Path::from("refused"), "x".into())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("gcp-kms"), "{fault:?}: {e}");
        assert_eq!(keyring_writes(&counting), Vec::<String>::new(), "{fault:?}");
        assert!(
            counting
                .calls_outside(encrypt_repo_store::RESERVED_PREFIX)
                .iter()
                .all(|c| c.method != Method::Put),
            "{fault:?}"
        );
        assert_eq!(repo.data_key_ids().await.unwrap(), ids, "{fault:?}");
    }
    env.kms.set_fault(None);
    env.kms.set_state(&key_name, 1, VersionState::Disabled);
    repo.rotate_now().await;
    counting.clear();
    assert!(store.put(&Path::from("refused"), "x".into()).await.is_err());
    assert_eq!(keyring_writes(&counting), Vec::<String>::new());
    assert_eq!(repo.data_key_ids().await.unwrap(), ids);

    // Registration over a disabled or an asymmetric key leaves the store empty.
    for bad in [key_name.clone(), env.kms.create_asymmetric_key()] {
        let empty = Arc::new(InMemory::new());
        let e = Repository::register(
            empty.clone(),
            request(gcp(&env, &bad)),
            &registry(&env),
            RepositoryOptions::default(),
        )
        .await
        .expect_err("registration must fail");
        assert!(e.to_string().contains(&bad), "{e}");
        let listed: Vec<_> = futures_list(empty.as_ref()).await;
        assert!(listed.is_empty(), "registration wrote {listed:?}");
    }
}

async fn futures_list(store: &dyn ObjectStore) -> Vec<String> {
    use futures::TryStreamExt as _;
    let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
    metas.into_iter().map(|m| m.location.to_string()).collect()
}
