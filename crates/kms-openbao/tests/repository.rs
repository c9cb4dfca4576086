//! The key lifecycle of a repository over the `openbao` provider, against the dev server from
//! `tests/services.sh`: re-wrap from `local` to `openbao` without touching a data object, and a
//! token whose access is withdrawn locking the repository until it is restored.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_keys::{ProviderRegistry, Settings};
use encrypt_repo_kms_openbao::OpenBaoFactory;
use encrypt_repo_store::{CryptoSettings, EncryptedStore, Error, Repository, RepositoryOptions};
use encrypt_repo_testkit::repository::{
    Rewrapped, rewrap_touches_no_data_object, withdrawn_key_locks_and_restored_key_unlocks,
};
use encrypt_repo_testkit::store::assert_numbered;
use support::*;

fn registry() -> ProviderRegistry {
    let mut r = ProviderRegistry::with_builtin();
    r.register(Arc::new(OpenBaoFactory));
    r
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
    let local = CryptoSettings {
        key_provider_name: "old".into(),
        key_provider_type: "local".into(),
        settings: Settings::from([("key_file".to_owned(), key_file.display().to_string())]),
    };
    let target = CryptoSettings {
        key_provider_name: "bao".into(),
        key_provider_type: "openbao".into(),
        settings: bao.settings(&key, &bao.token_file),
    };
    let Rewrapped {
        store: counting, ..
    } = rewrap_touches_no_data_object(&registry(), local, target, &format!("transit/{key}"), N)
        .await;

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
    let crypto = CryptoSettings {
        key_provider_name: "bao".into(),
        key_provider_type: "openbao".into(),
        settings: bao.settings(&key, &token_file),
    };
    withdrawn_key_locks_and_restored_key_unlocks(
        &registry(),
        crypto,
        &key,
        async || {
            bao.set_policy(
                &policy,
                r#"path "transit/keys/none" { capabilities = ["read"] }"#,
            )
            .await;
        },
        async || bao.set_policy(&policy, &minimal_policy(&key)).await,
        Duration::from_secs(5),
    )
    .await;
    let _ = std::fs::remove_file(&token_file);
}
