//! The key lifecycle (issue 4, store part): re-wrap without touching data objects, escrow,
//! shred, revocation locking and the periodic status check that unlocks, rotation and cache
//! flush — with the `local` and `passphrase` providers and a switchable test provider. The same
//! operations against AWS KMS (moto) and OpenBao run in the root package's tests.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use encrypt_repo_keys::{CachePolicy, ProviderRegistry};
use encrypt_repo_store::{
    CryptoSettings, EncryptedStore, Error, Repository, RepositoryOptions, Shred,
};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn local_crypto(name: &str, key_file: &std::path::Path) -> CryptoSettings {
    CryptoSettings {
        key_provider_name: name.into(),
        key_provider_type: "local".into(),
        settings: key_file_settings(key_file),
    }
}

async fn put_objects(store: &dyn ObjectStore, prefix: &str, n: usize) -> Vec<(Path, Vec<u8>)> {
    let mut written = Vec::with_capacity(n);
    for i in 0..n {
        let path = Path::from(format!("{prefix}/{i:04}"));
        let body = pattern(i as u64, 100 + i % 7);
        store
            .put(&path, PutPayload::from(body.clone()))
            .await
            .unwrap();
        written.push((path, body));
    }
    written
}

async fn assert_all_read(store: &dyn ObjectStore, objects: &[(Path, Vec<u8>)]) {
    for (path, body) in objects {
        let got = store.get(path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], &body[..], "{path}");
    }
}

fn data_object_calls(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| {
            c.location
                .as_ref()
                .is_some_and(|l| !l.as_ref().starts_with(encrypt_repo_store::RESERVED_PREFIX))
        })
        .map(|c| format!("{:?} {:?}", c.method, c.location))
        .collect()
}

/// Re-wrap from one local key to another over a repository with several data keys: only
/// keyring records and the registration are touched (a counting store shows zero data-object
/// calls), every object reads with only the new key, and none with only the old one.
#[tokio::test]
async fn rewrap_moves_every_record_without_touching_data_objects() {
    let keys = tempfile::tempdir().unwrap();
    let (old_key, new_key) = (keys.path().join("old.key"), keys.path().join("new.key"));
    let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new())));
    let repo = register_local(counting.clone(), &old_key, None).await;
    let repo = Arc::new(repo);
    let store = EncryptedStore::new(counting.clone(), repo.clone());
    let mut objects = Vec::new();
    for round in 0..4 {
        objects.extend(put_objects(&store, &format!("r{round}"), 50).await);
        repo.rotate_now().await;
    }
    assert_eq!(repo.data_key_ids().await.unwrap().len(), 4);

    counting.clear();
    let report = repo
        .rewrap(
            local_crypto("new", &new_key),
            &ProviderRegistry::with_builtin(),
        )
        .await
        .unwrap();
    assert_eq!((report.rewrapped, report.shredded), (4, 0));
    assert_eq!(report.to, "local:new");
    let touched = data_object_calls(&counting.calls());
    assert!(
        touched.is_empty(),
        "re-wrap touched data objects: {touched:?}"
    );
    for k in repo.data_keys().await.unwrap() {
        assert_eq!(k.wrapped_by.len(), 1, "old copy left in {k:?}");
        assert!(!k.rewrap_pending);
    }

    // This instance carries on with the new provider, cached keys or not.
    repo.flush_caches().await;
    assert_all_read(&store, &objects).await;

    // A fresh process with only the new key reads everything...
    let fresh = open_local(counting.clone(), &new_key, RepositoryOptions::default())
        .await
        .unwrap();
    assert_eq!(
        fresh
            .registration()
            .request
            .crypto_settings
            .unwrap()
            .key_provider_name,
        "new"
    );
    let fresh = EncryptedStore::new(counting.clone(), Arc::new(fresh));
    assert_all_read(&fresh, &objects).await;
    objects.extend(put_objects(&fresh, "after", 5).await);
    assert_all_read(&fresh, &objects).await;

    // ...and one with only the old key reads nothing.
    let old = counting_local_provider(&old_key).await;
    let stale = Repository::open_with_provider(counting.clone(), old, RepositoryOptions::default())
        .await
        .unwrap();
    let stale = EncryptedStore::new(counting.clone(), Arc::new(stale));
    for (path, _) in objects.iter().step_by(17) {
        let e = stale.get(path).await.unwrap_err();
        assert!(
            matches!(repo_error(&e), Some(Error::DataKey { .. })),
            "{path}: {e}"
        );
    }
}

/// An interrupted re-wrap (records carrying a `next` copy, registration not yet switched)
/// leaves everything readable with the old provider, and running it again completes it.
#[tokio::test]
async fn rewrap_interrupted_after_step_one_can_be_run_again() {
    let keys = tempfile::tempdir().unwrap();
    let (old_key, new_key) = (keys.path().join("old.key"), keys.path().join("new.key"));
    let raw = Arc::new(InMemory::new());
    // The backend refuses the registration update: the re-wrap stops after step 1.
    let faulty = Arc::new(FaultyStore::new(raw.clone()));
    let repo = Arc::new(register_local(faulty.clone(), &old_key, None).await);
    let store = EncryptedStore::new(faulty.clone(), repo.clone());
    let objects = put_objects(&store, "o", 20).await;
    faulty.add(
        Rule::new(Method::Put, 1, Fault::Fail).at(&Path::from(".encrypt-repo/registration.json")),
    );
    repo.rewrap(
        local_crypto("new", &new_key),
        &ProviderRegistry::with_builtin(),
    )
    .await
    .unwrap_err();
    assert!(repo.data_keys().await.unwrap()[0].rewrap_pending);
    // Still the old provider, still readable.
    let again = open_local(raw.clone(), &old_key, RepositoryOptions::default())
        .await
        .unwrap();
    assert_all_read(&EncryptedStore::new(raw.clone(), Arc::new(again)), &objects).await;

    faulty.clear();
    repo.rewrap(
        local_crypto("new", &new_key),
        &ProviderRegistry::with_builtin(),
    )
    .await
    .unwrap();
    let fresh = open_local(raw.clone(), &new_key, RepositoryOptions::default())
        .await
        .unwrap();
    assert_all_read(&EncryptedStore::new(raw, Arc::new(fresh)), &objects).await;
}

/// Escrow: every data key gets a copy for the escrow provider, and the repository opens and
/// reads with only that provider (the main key file deleted), read-only.
#[tokio::test]
async fn escrow_provider_alone_reads_everything_and_refuses_writes() {
    let keys = tempfile::tempdir().unwrap();
    let (main_key, escrow_key) = (keys.path().join("main.key"), keys.path().join("dr.key"));
    let raw = Arc::new(InMemory::new());
    let mut request = local_request(&main_key, None, None);
    request.escrow = vec![local_crypto("dr", &escrow_key)];
    let reg = register_request(raw.clone(), request, RepositoryOptions::default())
        .await
        .unwrap();
    let repo = Arc::new(reg.repository);
    assert_eq!(repo.escrow_names(), ["dr"]);
    let store = EncryptedStore::new(raw.clone(), repo.clone());
    let mut objects = put_objects(&store, "a", 30).await;
    repo.rotate_now().await;
    objects.extend(put_objects(&store, "b", 30).await);
    for k in repo.data_keys().await.unwrap() {
        assert_eq!(k.wrapped_by.len(), 2, "{k:?}");
    }

    std::fs::remove_file(&main_key).unwrap();
    let dr = Repository::open_escrow(
        raw.clone(),
        &ProviderRegistry::with_builtin(),
        "dr",
        &Default::default(),
        RepositoryOptions::default(),
    )
    .await
    .unwrap();
    assert!(dr.read_only().is_some());
    let dr = EncryptedStore::new(raw.clone(), Arc::new(dr));
    assert_all_read(&dr, &objects).await;
    let e = dr.put(&Path::from("new"), "x".into()).await.unwrap_err();
    assert!(matches!(repo_error(&e), Some(Error::ReadOnly(_))), "{e}");
    assert!(e.to_string().contains("escrow provider dr"), "{e}");

    let e = Repository::open_escrow(
        raw,
        &ProviderRegistry::with_builtin(),
        "nope",
        &Default::default(),
        RepositoryOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("registered: dr"),
        "names the known escrow providers: {e}"
    );
}

/// Shred one key: its objects fail with "shredded" (in this process at once, in a fresh one
/// too), the others still read, writing goes on under a new key; shred all: nothing reads.
#[tokio::test]
async fn shred_one_key_then_all() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("k");
    let raw = Arc::new(InMemory::new());
    let repo = Arc::new(register_local(raw.clone(), &key_file, None).await);
    let store = EncryptedStore::new(raw.clone(), repo.clone());
    let doomed = put_objects(&store, "doomed", 10).await;
    let doomed_key = repo.data_key_ids().await.unwrap()[0];
    repo.rotate_now().await;
    let kept = put_objects(&store, "kept", 10).await;
    assert_all_read(&store, &doomed).await; // cached now

    assert_eq!(repo.shred(Shred::One(doomed_key)).await.unwrap(), 1);
    let check_shredded = |e: object_store::Error| {
        assert!(
            matches!(repo_error(&e), Some(Error::DataKeyShredded { data_key_id, .. }) if *data_key_id == doomed_key),
            "{e}"
        );
        assert!(e.to_string().contains("shredded"), "{e}");
    };
    for (path, _) in &doomed {
        check_shredded(store.get(path).await.unwrap_err());
    }
    assert_all_read(&store, &kept).await;
    let more = put_objects(&store, "more", 3).await;
    assert_all_read(&store, &more).await;

    let fresh = open_local(raw.clone(), &key_file, RepositoryOptions::default())
        .await
        .unwrap();
    let fresh = EncryptedStore::new(raw.clone(), Arc::new(fresh));
    check_shredded(fresh.get(&doomed[3].0).await.unwrap_err());
    assert_all_read(&fresh, &kept).await;
    // The tombstone holds no wrapped copy at all.
    let info = repo.data_keys().await.unwrap();
    let tomb = info.iter().find(|k| k.id == doomed_key.to_hex()).unwrap();
    assert!(tomb.shredded_unix.is_some() && tomb.wrapped_by.is_empty());
    // Shredding again is a no-op; an unknown id is an error.
    assert_eq!(repo.shred(Shred::One(doomed_key)).await.unwrap(), 0);
    let unknown = encrypt_repo_format::DataKeyId([7; 16]);
    assert!(matches!(
        repo.shred(Shred::One(unknown)).await,
        Err(Error::UnknownDataKey(_))
    ));

    assert_eq!(repo.shred(Shred::All).await.unwrap(), 2);
    // This process forgets its cached keys at once; another process keeps its cached copies
    // until its reader TTL ends, so look with a newly opened one.
    let later = open_local(raw.clone(), &key_file, RepositoryOptions::default())
        .await
        .unwrap();
    let later = EncryptedStore::new(raw.clone(), Arc::new(later));
    for (path, _) in kept.iter().chain(&more) {
        for s in [&store, &later] {
            let e = s.get(path).await.unwrap_err();
            assert!(
                matches!(repo_error(&e), Some(Error::DataKeyShredded { .. })),
                "{e}"
            );
        }
    }
}

fn short(ttl_ms: u64, check_ms: u64) -> RepositoryOptions {
    RepositoryOptions {
        cache: CachePolicy {
            reader_ttl: Duration::from_millis(ttl_ms),
            ..CachePolicy::default()
        },
        status_check_interval: Duration::from_millis(check_ms),
        ..RepositoryOptions::default()
    }
}

/// Far above every interval the tests configure (100 ms … 1 s): only a check that never runs
/// misses it, however loaded the machine.
const EVENTUALLY: Duration = Duration::from_secs(60);

async fn eventually(what: &str, within: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !ok().await {
        assert!(
            start.elapsed() < within,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Revocation takes effect within the reader TTL: cached keys stop being used once they expire
/// and the provider answers "unavailable"; the repository locks (every read and write refused,
/// naming provider and key), and the periodic status check unlocks it once the key is usable
/// again — with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_locks_within_the_ttl_and_the_status_check_unlocks() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("k");
    let raw = Arc::new(InMemory::new());
    register_local(raw.clone(), &key_file, None).await;
    let (repo, provider) = open_counting(raw.clone(), &key_file, short(300, 100)).await;
    let store = EncryptedStore::new(raw.clone(), Arc::new(repo));
    let objects = put_objects(&store, "o", 5).await;
    assert_all_read(&store, &objects).await;

    provider.set_mode(ProviderMode::Unavailable);
    let path = objects[0].0.clone();
    eventually("lock after the reader TTL", EVENTUALLY, async || {
        store.get(&path).await.is_err()
    })
    .await;
    let e = store.get(&path).await.unwrap_err();
    assert!(matches!(repo_error(&e), Some(Error::Locked { .. })), "{e}");
    assert!(e.to_string().contains("local"), "names the provider: {e}");
    let e = store.put(&Path::from("w"), "x".into()).await.unwrap_err();
    assert!(matches!(repo_error(&e), Some(Error::Locked { .. })), "{e}");

    provider.set_mode(ProviderMode::Healthy);
    eventually("unlock by the status check", EVENTUALLY, async || {
        store.repository().lock_reason().is_none()
    })
    .await;
    assert_all_read(&store, &objects).await;
    store.put(&Path::from("w"), "x".into()).await.unwrap();
}

/// A key that still unwraps but is reported disabled (moto's KMS behaves so) is noticed only by
/// the status check: the repository locks within the interval, and unlocks when re-enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_check_alone_locks_a_disabled_key() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("k");
    let raw = Arc::new(InMemory::new());
    register_local(raw.clone(), &key_file, None).await;
    let (repo, provider) = open_counting(raw.clone(), &key_file, short(60_000, 100)).await;
    let store = EncryptedStore::new(raw.clone(), Arc::new(repo));
    let objects = put_objects(&store, "o", 3).await;

    provider.set_mode(ProviderMode::StatusDisabled);
    eventually("lock by the status check", EVENTUALLY, async || {
        store.repository().lock_reason().is_some()
    })
    .await;
    let reason = store.repository().lock_reason().unwrap();
    assert!(reason.contains("Disabled"), "{reason}");
    let e = store.get(&objects[0].0).await.unwrap_err();
    assert!(matches!(repo_error(&e), Some(Error::Locked { .. })), "{e}");

    provider.set_mode(ProviderMode::Healthy);
    eventually("unlock", EVENTUALLY, async || {
        store.repository().lock_reason().is_none()
    })
    .await;
    assert_all_read(&store, &objects).await;
    // The check runs as long as the store lives, and stops with it.
    let before = provider.counts().status;
    eventually("another status check", EVENTUALLY, async || {
        provider.counts().status > before
    })
    .await;
    drop(store);
    // A check already running when the store is dropped may still finish; give it ten
    // intervals, then none may follow in another ten.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = provider.counts().status;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        provider.counts().status,
        after,
        "status checks outlived the store"
    );
}

/// Rotate now starts a new data key (one generate call, one new keyring record); flushing the
/// caches makes the next read unwrap again.
#[tokio::test]
async fn rotate_now_and_flush() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("k");
    let raw = Arc::new(InMemory::new());
    register_local(raw.clone(), &key_file, None).await;
    let (repo, provider) =
        open_counting(raw.clone(), &key_file, RepositoryOptions::default()).await;
    let store = EncryptedStore::new(raw.clone(), Arc::new(repo));
    let objects = put_objects(&store, "a", 20).await;
    assert_eq!(provider.counts().generate, 1);
    store.repository().rotate_now().await;
    put_objects(&store, "b", 20).await;
    assert_eq!(provider.counts().generate, 2);
    assert_eq!(store.repository().data_key_ids().await.unwrap().len(), 2);

    assert_all_read(&store, &objects).await;
    let unwraps = provider.counts().unwrap;
    assert_all_read(&store, &objects).await;
    assert_eq!(provider.counts().unwrap, unwraps, "cached");
    store.repository().flush_caches().await;
    assert_all_read(&store, &objects).await;
    assert_eq!(provider.counts().unwrap, unwraps + 1, "flushed");
}

/// No key material in any Debug or Display of the repository, its key listing, or the errors
/// the lifecycle produces.
#[tokio::test]
async fn lifecycle_output_carries_no_key_material() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("k");
    let raw = Arc::new(InMemory::new());
    let repo = Arc::new(register_local(raw.clone(), &key_file, None).await);
    let store = EncryptedStore::new(raw.clone(), repo.clone());
    let objects = put_objects(&store, "o", 2).await;
    let id = repo.data_key_ids().await.unwrap()[0];
    repo.shred(Shred::One(id)).await.unwrap();
    // The key file is `encrypt-repo-local-key-v1\n` and the key in hex.
    let text = std::fs::read_to_string(&key_file).unwrap();
    let master_hex = text.lines().nth(1).unwrap().trim().to_owned();
    assert_eq!(master_hex.len(), 64);
    let mut out = format!("{repo:?} {store:?} {:?}", repo.data_keys().await.unwrap());
    out += &store.get(&objects[0].0).await.unwrap_err().to_string();
    out += &format!("{:?}", store.get(&objects[0].0).await.unwrap_err());
    let e = repo
        .rewrap(
            local_crypto("bad", std::path::Path::new("/nonexistent/dir/k")),
            &ProviderRegistry::with_builtin(),
        )
        .await
        .unwrap_err();
    out += &format!("{e} {e:?}");
    assert!(
        !out.to_lowercase().contains(&master_hex),
        "key material in output"
    );
    // Debug of byte arrays prints decimal lists: look for the key's first 8 bytes that way too.
    let bytes: Vec<String> = (0..8)
        .map(|i| {
            u8::from_str_radix(&master_hex[2 * i..2 * i + 2], 16)
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(!out.contains(&bytes.join(", ")), "key bytes in output");
}
