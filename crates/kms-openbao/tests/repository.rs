//! The key lifecycle of a repository over the `openbao` provider, against the dev server from
//! `tests/services.sh`: re-wrap from `local` to `openbao` without touching a data object, and a
//! token whose access is withdrawn locking the repository until it is restored.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_keys::{CachePolicy, ProviderRegistry, Settings};
use encrypt_repo_kms_openbao::OpenBaoFactory;
use encrypt_repo_store::{
    CryptoSettings, EncryptedStore, Error, RegistrationRequest, Repository, RepositoryOptions,
};
use encrypt_repo_testkit::store::{CountingStore, assert_numbered, put_numbered};
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use support::*;

fn registry() -> ProviderRegistry {
    let mut r = ProviderRegistry::with_builtin();
    r.register(Arc::new(OpenBaoFactory));
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

/// 1,000 objects under 4 data keys move from a local key file to a transit key: zero calls on
/// data objects, every object reads through a registry that has only the `openbao` provider,
/// and no keyring record keeps a `local` copy (the registration now refuses the old provider).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_from_local_to_openbao_over_1000_objects_touches_no_data_object() {
    const N: usize = 1000;
    let bao = bao().await;
    let key = bao.new_key().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.key");
    let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new())));
    let local = CryptoSettings {
        key_provider_name: "old".into(),
        key_provider_type: "local".into(),
        settings: Settings::from([("key_file".to_owned(), key_file.display().to_string())]),
    };
    let repo = Repository::register(
        counting.clone(),
        request(local),
        &registry(),
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
    let target = CryptoSettings {
        key_provider_name: "bao".into(),
        key_provider_type: "openbao".into(),
        settings: bao.settings(&key, &bao.token_file),
    };
    let report = repo.rewrap(target, &registry()).await.unwrap();
    assert_eq!((report.rewrapped, report.shredded), (4, 0));
    let data_calls = counting.calls_outside(encrypt_repo_store::RESERVED_PREFIX);
    assert!(
        data_calls.is_empty(),
        "re-wrap touched data objects: {data_calls:?}"
    );
    for k in repo.data_keys().await.unwrap() {
        let by: Vec<&str> = k.wrapped_by.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(by, ["openbao"], "{k:?}");
    }

    // Only the new provider: a registry without `local` at all.
    let mut only_bao = ProviderRegistry::new();
    only_bao.register(Arc::new(OpenBaoFactory));
    let fresh = Repository::open(
        counting.clone(),
        &only_bao,
        &Default::default(),
        RepositoryOptions::default(),
    )
    .await
    .unwrap();
    let fresh = EncryptedStore::new(counting.clone(), Arc::new(fresh));
    assert_numbered(&fresh, N).await;

    // Only the old provider: refused at open, and it holds no copy it could unwrap anyway.
    let e = Repository::open(
        counting.clone(),
        &ProviderRegistry::with_builtin(),
        &Default::default(),
        RepositoryOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("openbao"), "{e}");
    let old = ProviderRegistry::with_builtin()
        .open(
            "local",
            &Settings::from([("key_file".to_owned(), key_file.display().to_string())]),
        )
        .await
        .unwrap();
    let e = Repository::open_with_provider(counting.clone(), old, RepositoryOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RegistrationConflict { .. }), "{e}");
}

/// A repository on a token with the minimal policy: withdrawing the policy locks it within the
/// status-check interval (reads and writes refused, naming provider and key); restoring the
/// policy unlocks it within the interval, with no restart and no new provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_access_locks_and_restored_access_unlocks_within_the_interval() {
    let bao = bao().await;
    let key = bao.new_key().await;
    let policy = format!("policy-{key}");
    bao.set_policy(&policy, &minimal_policy(&key)).await;
    let (_token, token_file) = bao.token_with(&policy).await;
    let raw = Arc::new(InMemory::new());
    let crypto = CryptoSettings {
        key_provider_name: "bao".into(),
        key_provider_type: "openbao".into(),
        settings: bao.settings(&key, &token_file),
    };
    let options = RepositoryOptions {
        cache: CachePolicy {
            reader_ttl: Duration::from_millis(500),
            ..CachePolicy::default()
        },
        status_check_interval: Duration::from_millis(200),
        ..RepositoryOptions::default()
    };
    let repo = Repository::register(raw.clone(), request(crypto), &registry(), options)
        .await
        .unwrap()
        .repository;
    let store = EncryptedStore::new(raw.clone(), Arc::new(repo));
    put_numbered(&store, 0..5).await;
    assert_numbered(&store, 5).await;

    bao.set_policy(
        &policy,
        r#"path "transit/keys/none" { capabilities = ["read"] }"#,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.repository().lock_reason().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not locked within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = store.get(&Path::from("o/0000")).await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("locked") && m.contains("openbao") && m.contains(&key),
        "{m}"
    );
    let e = store.put(&Path::from("new"), "x".into()).await.unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");

    bao.set_policy(&policy, &minimal_policy(&key)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.repository().lock_reason().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not unlocked within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_numbered(&store, 5).await;
    store.put(&Path::from("new"), "x".into()).await.unwrap();
    let _ = std::fs::remove_file(&token_file);
}
