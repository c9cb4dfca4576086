//! The key lifecycle of a repository over the `aws-kms` provider, against moto: re-wrap from one
//! KMS key to another over 1,000 objects without touching a data object, and a key reported
//! disabled by DescribeKey locking the repository until it is enabled again (moto still
//! decrypts under a disabled key, so the lock can only come from the status check).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_keys::ProviderRegistry;
use encrypt_repo_store::{
    CryptoSettings, EncryptedStore, RegistrationRequest, Repository, RepositoryOptions,
};
use encrypt_repo_testkit::store::{CountingStore, assert_numbered, put_numbered};
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use support::*;

fn registry() -> ProviderRegistry {
    let mut r = ProviderRegistry::with_builtin();
    r.register(Arc::new(factory()));
    r
}

fn crypto(name: &str, key_id: &str) -> CryptoSettings {
    CryptoSettings {
        key_provider_name: name.into(),
        key_provider_type: "aws-kms".into(),
        settings: settings(key_id),
    }
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

/// 1,000 objects under 4 data keys move from KMS key A to key B: zero calls on data objects,
/// every keyring copy names B, every object reads with only B, and with only A nothing does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_from_one_kms_key_to_another_over_1000_objects() {
    const N: usize = 1000;
    let kms = admin();
    let (a, _) = create_key(&kms).await;
    let (b, b_arn) = create_key(&kms).await;
    let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new())));
    let repo = Repository::register(
        counting.clone(),
        request(crypto("a", &a)),
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

    counting.clear();
    let report = repo.rewrap(crypto("b", &b), &registry()).await.unwrap();
    assert_eq!((report.rewrapped, report.shredded), (4, 0));
    let data_calls = counting.calls_outside(encrypt_repo_store::RESERVED_PREFIX);
    assert!(
        data_calls.is_empty(),
        "re-wrap touched data objects: {data_calls:?}"
    );
    for k in repo.data_keys().await.unwrap() {
        assert_eq!(
            k.wrapped_by,
            [("aws-kms".to_owned(), b_arn.clone())],
            "{k:?}"
        );
    }

    // Only key B: a fresh open through the registry reads everything.
    let fresh = Repository::open(
        counting.clone(),
        &registry(),
        &Default::default(),
        RepositoryOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(fresh.provider().unwrap().master_key(), b_arn);
    let fresh = EncryptedStore::new(counting.clone(), Arc::new(fresh));
    assert_numbered(&fresh, N).await;

    // Only key A: not one object reads.
    let old = Repository::open_with_provider(
        counting.clone(),
        provider(&a).await,
        RepositoryOptions::default(),
    )
    .await
    .unwrap();
    let old = EncryptedStore::new(counting.clone(), Arc::new(old));
    for i in (0..N).step_by(97) {
        assert!(
            old.get(&Path::from(format!("o/{i:04}"))).await.is_err(),
            "object {i} read with the old key"
        );
    }
}

/// DisableKey: the periodic status check (DescribeKey) locks the repository within the
/// interval, though moto would still decrypt; EnableKey: it unlocks, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_key_locks_through_the_status_check_and_enabling_unlocks() {
    let kms = admin();
    let (a, arn) = create_key(&kms).await;
    let raw = Arc::new(InMemory::new());
    let options = RepositoryOptions {
        status_check_interval: Duration::from_millis(200),
        ..RepositoryOptions::default()
    };
    let repo = Repository::register(raw.clone(), request(crypto("a", &a)), &registry(), options)
        .await
        .unwrap()
        .repository;
    let store = EncryptedStore::new(raw.clone(), Arc::new(repo));
    put_numbered(&store, 0..5).await;
    assert_numbered(&store, 5).await;

    kms.disable_key().key_id(&a).send().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.repository().lock_reason().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not locked within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = store.get(&Path::from("o/0000")).await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("locked") && m.contains("aws-kms") && m.contains(&arn),
        "{m}"
    );
    let e = store.put(&Path::from("new"), "x".into()).await.unwrap_err();
    assert!(e.to_string().contains("locked"), "{e}");

    kms.enable_key().key_id(&a).send().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.repository().lock_reason().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not unlocked within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_numbered(&store, 5).await;
    store.put(&Path::from("new"), "x".into()).await.unwrap();
}
