//! The key lifecycle of a repository over the `aws-kms` provider, against moto: re-wrap from one
//! KMS key to another over 1,000 objects without touching a data object, and a key reported
//! disabled by DescribeKey locking the repository until it is enabled again (moto still
//! decrypts under a disabled key, so the lock can only come from the status check).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_keys::ProviderRegistry;
use encrypt_repo_store::{CryptoSettings, EncryptedStore, Repository, RepositoryOptions};
use encrypt_repo_testkit::repository::{
    Rewrapped, rewrap_touches_no_data_object, withdrawn_key_locks_and_restored_key_unlocks,
};
use object_store::ObjectStoreExt;
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

/// 1,000 objects under 4 data keys move from KMS key A to key B: zero calls on data objects,
/// every keyring copy names B, every object reads with only B, and with only A nothing does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_from_one_kms_key_to_another_over_1000_objects() {
    const N: usize = 1000;
    let kms = admin();
    let (a, _) = create_key(&kms).await;
    let (b, b_arn) = create_key(&kms).await;
    let Rewrapped {
        store: counting,
        repository,
    } = rewrap_touches_no_data_object(&registry(), crypto("a", &a), crypto("b", &b), &b_arn, N)
        .await;
    assert_eq!(repository.provider().unwrap().master_key(), b_arn);

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
    withdrawn_key_locks_and_restored_key_unlocks(
        &registry(),
        crypto("a", &a),
        &arn,
        async || {
            kms.disable_key().key_id(&a).send().await.unwrap();
        },
        async || {
            kms.enable_key().key_id(&a).send().await.unwrap();
        },
        Duration::from_secs(10),
    )
    .await;
}
