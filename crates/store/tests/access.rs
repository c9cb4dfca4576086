//! Where access settings come from under [`RepositoryOptions::caller_access_only`] (the CLI's
//! choice): the registration records what each key is, never how to reach it; what storage
//! holds beyond identity settings is ignored, so a copied or hostile bucket cannot make the
//! opener run its program or read its file; escrow providers take their access settings from
//! [`RepositoryOptions::escrow_access`]; and a misspelled setting name is refused, not ignored.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{key_file_settings, local_request, register_request};
use encrypt_repo_keys::{ProviderRegistry, Settings};
use encrypt_repo_store::{CryptoSettings, EncryptedStore, Error, Repository, RepositoryOptions};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

fn caller_only(escrow: &[(&str, Settings)]) -> RepositoryOptions {
    RepositoryOptions {
        caller_access_only: true,
        escrow_access: escrow
            .iter()
            .map(|(n, s)| ((*n).to_owned(), s.clone()))
            .collect(),
        ..RepositoryOptions::default()
    }
}

async fn registration(store: &dyn ObjectStore) -> serde_json::Value {
    let raw = store
        .get(&Path::from(".encrypt-repo/registration.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

async fn open(
    store: Arc<dyn ObjectStore>,
    access: &Settings,
    options: RepositoryOptions,
) -> encrypt_repo_store::Result<Repository> {
    Repository::open(store, &ProviderRegistry::with_builtin(), access, options).await
}

#[tokio::test]
async fn the_registration_records_identity_only_and_every_open_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (main_key, escrow_key) = (dir.path().join("main.key"), dir.path().join("escrow.key"));
    let raw = Arc::new(InMemory::new());
    let store: Arc<dyn ObjectStore> = raw.clone();
    let mut request = local_request(&main_key, None, None);
    request.escrow = vec![CryptoSettings {
        key_provider_name: "vault".into(),
        key_provider_type: "local".into(),
        settings: key_file_settings(&escrow_key),
    }];
    let escrow_access = [("vault", key_file_settings(&escrow_key))];
    let registered = register_request(store.clone(), request, caller_only(&escrow_access))
        .await
        .unwrap();
    assert!(registered.newly_registered);

    let reg = registration(store.as_ref()).await;
    let recorded = |v: &serde_json::Value| {
        v["settings"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(recorded(&reg["crypto_settings"]), ["fingerprint"], "{reg}");
    assert_eq!(recorded(&reg["escrow"][0]), ["fingerprint"], "{reg}");
    assert!(
        !reg.to_string().contains("main.key") && !reg.to_string().contains("escrow.key"),
        "a key file's location is stored: {reg}"
    );

    // No key file given: the error names the missing setting, nothing recorded is used.
    let e = open(store.clone(), &Settings::new(), caller_only(&escrow_access))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Keys(encrypt_repo_keys::Error::Setting { setting, .. }) if setting == "key_file"),
        "{e:?}"
    );
    // Without the escrow key's file the repository reads but does not write (every new data
    // key needs an escrow copy), and says which provider's settings are missing.
    let reader = open(
        store.clone(),
        &key_file_settings(&main_key),
        caller_only(&[]),
    )
    .await
    .unwrap();
    let e = EncryptedStore::new(raw.clone(), Arc::new(reader))
        .put(&Path::from("b"), b"x".to_vec().into())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("vault") && e.to_string().contains("key_file"),
        "{e}"
    );

    // Both given: the repository works and every new data key has its escrow copy.
    let repo = open(
        store.clone(),
        &key_file_settings(&main_key),
        caller_only(&escrow_access),
    )
    .await
    .unwrap();
    let encrypted = EncryptedStore::new(raw.clone(), Arc::new(repo));
    encrypted
        .put(&Path::from("a"), b"secret".to_vec().into())
        .await
        .unwrap();
    let mut keyring = store.list(Some(&Path::from(".encrypt-repo/keyring")));
    let mut records = 0;
    while let Some(meta) = futures::StreamExt::next(&mut keyring).await {
        let raw = store.get(&meta.unwrap().location).await.unwrap();
        let record: serde_json::Value =
            serde_json::from_slice(&raw.bytes().await.unwrap()).unwrap();
        assert_eq!(record["wrapped"].as_array().unwrap().len(), 2, "{record}");
        records += 1;
    }
    assert_eq!(records, 1);
    let back = encrypted.get(&Path::from("a")).await.unwrap().bytes().await;
    assert_eq!(back.unwrap().as_ref(), b"secret");
}

/// A registration someone else wrote, recording a `passphrase_command`: opened with the
/// caller's own `passphrase_file`, the recorded command never runs (its marker file is never
/// created), whereas the older trusting mode would have had both and refused.
#[tokio::test]
async fn a_command_recorded_in_storage_is_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let pass_file = dir.path().join("pass");
    std::fs::write(&pass_file, "correct horse battery staple\n").unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let crypto = |settings: Settings| CryptoSettings {
        key_provider_name: "p".into(),
        key_provider_type: "passphrase".into(),
        settings,
    };
    let mut request = local_request(&dir.path().join("unused.key"), None, None);
    request.crypto_settings = Some(crypto(Settings::from([(
        "passphrase_file".to_owned(),
        pass_file.display().to_string(),
    )])));
    register_request(store.clone(), request, RepositoryOptions::default())
        .await
        .unwrap();

    // The bucket's writer swaps the recorded access setting for a command of theirs.
    let mut reg = registration(store.as_ref()).await;
    let settings = reg["crypto_settings"]["settings"].as_object_mut().unwrap();
    settings.remove("passphrase_file");
    settings.insert(
        "passphrase_command".into(),
        format!(
            "touch {} && echo correct horse battery staple",
            marker.display()
        )
        .into(),
    );
    store
        .put(
            &Path::from(".encrypt-repo/registration.json"),
            serde_json::to_vec(&reg).unwrap().into(),
        )
        .await
        .unwrap();

    let access = Settings::from([(
        "passphrase_file".to_owned(),
        pass_file.display().to_string(),
    )]);
    let repo = open(store.clone(), &access, caller_only(&[]))
        .await
        .unwrap();
    assert!(repo.registration().request.crypto_settings.is_some());
    assert!(!marker.exists(), "the recorded passphrase_command ran");
    // The trusting mode sees both sources and refuses rather than guess.
    let e = open(store, &access, RepositoryOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("only once"), "{e}");
    assert!(!marker.exists(), "the recorded passphrase_command ran");
}

/// A misspelled setting name is an error naming it, at registration and at open, for every
/// built-in provider type; nothing is registered.
#[tokio::test]
async fn unknown_setting_names_are_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut request = local_request(&key, None, None);
    if let Some(c) = &mut request.crypto_settings {
        c.settings.insert("key_fiel".into(), "typo".into());
    }
    let e = register_request(store.clone(), request, caller_only(&[]))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("key_fiel") && e.to_string().contains("unknown"),
        "{e}"
    );
    assert!(
        store
            .get(&Path::from(".encrypt-repo/registration.json"))
            .await
            .is_err(),
        "a refused registration was written"
    );

    register_request(
        store.clone(),
        local_request(&key, None, None),
        caller_only(&[]),
    )
    .await
    .unwrap();
    let mut access = key_file_settings(&key);
    access.insert("key_flie".into(), "typo".into());
    let e = open(store, &access, caller_only(&[])).await.unwrap_err();
    assert!(e.to_string().contains("key_flie"), "{e}");

    let registry = ProviderRegistry::with_builtin();
    for (type_name, known) in [
        ("local", "key_file"),
        ("passphrase", "passphrase_file"),
        ("exec", "command"),
    ] {
        let factory = registry.get(type_name).unwrap();
        let mut s = BTreeMap::from([(known.to_owned(), "x".to_owned())]);
        encrypt_repo_keys::check_known_settings(factory.as_ref(), &s).unwrap();
        s.insert("endpiont".into(), "x".into());
        let e = encrypt_repo_keys::check_known_settings(factory.as_ref(), &s).unwrap_err();
        assert!(e.to_string().contains("endpiont"), "{type_name}: {e}");
    }
}
