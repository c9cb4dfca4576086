//! Every way an object can fail to open has its own error, naming the object: wrong key file,
//! a keyring record wrapped under another master key, a moved object, a tampered object, a
//! missing keyring record. Plus registration rules, pass-through repositories, and the hidden,
//! refused reserved prefix.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use encrypt_repo_format::{DataKeyId, HEADER_LEN, Header};
use encrypt_repo_keys::local::LocalProvider;
use encrypt_repo_store::{
    CryptoSettings, EncryptedStore, Error, RegistrationRequest, RepositoryOptions,
};
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const C: u64 = CHUNK_64K;
const S: usize = CHUNK_64K as usize + 16;
const REGISTRATION: &str = ".encrypt-repo/registration.json";

/// Reads `loc` whole through `store`; the error (from the get or from its stream).
async fn read_err<S: ObjectStore>(store: &EncryptedStore<S>, loc: &Path) -> object_store::Error {
    match store.get(loc).await {
        Err(e) => e,
        Ok(r) => match r.bytes().await {
            Err(e) => e,
            Ok(b) => panic!("{loc} read back {} bytes without error", b.len()),
        },
    }
}

fn inner(e: &object_store::Error) -> &Error {
    repo_error(e).unwrap_or_else(|| panic!("not an encrypt-repo error: {e:?}"))
}

fn keyring_path(id: DataKeyId) -> Path {
    Path::from(format!(".encrypt-repo/keyring/{}.json", id.to_hex()))
}

async fn header_of(raw: &dyn ObjectStore, loc: &Path) -> Header {
    Header::parse(&raw_bytes(raw, loc).await).unwrap()
}

struct Fixture {
    _keys: tempfile::TempDir,
    key_file: std::path::PathBuf,
    raw: Arc<InMemory>,
    store: EncryptedStore<InMemory>,
}

async fn fixture(path_binding: Option<bool>) -> Fixture {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    let repo = register_request(
        raw.clone(),
        local_request(&key_file, Some(C), path_binding),
        RepositoryOptions::default(),
    )
    .await
    .unwrap()
    .repository;
    let store = encrypted(raw.clone(), repo);
    Fixture {
        _keys: keys,
        key_file,
        raw,
        store,
    }
}

// ------------------------------------------------------------------------------------------
// Keys
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_key_file_is_refused_at_open_naming_the_file() {
    let f = fixture(None).await;
    let other = f._keys.path().join("other.key");
    drop(LocalProvider::create(&other).unwrap());
    let e = open_local(f.raw.clone(), &other, RepositoryOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Keys(encrypt_repo_keys::Error::WrongMasterKey { setting, .. }) if setting == "key_file"
        ),
        "expected a wrong-key error for key_file, got {e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&other.display().to_string()),
        "names the wrong key file: {msg}"
    );
    assert!(msg.contains("wrong key file"), "{msg}");
    // The right key file still opens.
    open_local(f.raw.clone(), &f.key_file, RepositoryOptions::default())
        .await
        .unwrap();
}

/// Copies `loc` and its keyring record from `from` into `to`'s backend.
async fn copy_object_with_record(from: &Fixture, to: &Fixture, loc: &Path) -> DataKeyId {
    let bytes = raw_bytes(from.raw.as_ref(), loc).await;
    let id = Header::parse(&bytes).unwrap().data_key_id;
    let record = raw_bytes(from.raw.as_ref(), &keyring_path(id)).await;
    to.raw.put(loc, PutPayload::from(bytes)).await.unwrap();
    to.raw
        .put(&keyring_path(id), PutPayload::from(record))
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn keyring_record_under_another_master_key_is_an_unwrap_error_naming_the_object() {
    let a = fixture(None).await;
    let b = fixture(None).await; // another repository, another key file
    let loc = Path::from("copied/under-other-master");
    a.store
        .put(&loc, PutPayload::from(pattern(1, 1000)))
        .await
        .unwrap();
    let id = copy_object_with_record(&a, &b, &loc).await;

    let e = read_err(&b.store, &loc).await;
    let err = inner(&e);
    assert!(
        matches!(
            err,
            Error::DataKey {
                source: encrypt_repo_keys::Error::ForeignWrappedKey { .. }
                    | encrypt_repo_keys::Error::UnwrapFailed { .. },
                ..
            }
        ),
        "expected an unwrap error, got {err:?}"
    );
    assert!(
        b.store.repository().lock_reason().is_none(),
        "a bad record does not lock"
    );
    let msg = e.to_string();
    assert!(msg.contains(&id.to_hex()), "names the data key {id}: {msg}");
    assert!(msg.contains(loc.as_ref()), "names the object {loc}: {msg}");
}

#[tokio::test]
async fn keyring_record_of_another_repository_same_master_is_an_unwrap_error_naming_the_object() {
    let a = fixture(None).await;
    // Repository b shares a's key file: same master key, different repository id.
    let raw = Arc::new(InMemory::new());
    let repo = register_local(raw.clone(), &a.key_file, Some(C)).await;
    assert_ne!(repo.id(), a.store.repository().id());
    let b = Fixture {
        _keys: tempfile::tempdir().unwrap(),
        key_file: a.key_file.clone(),
        raw: raw.clone(),
        store: encrypted(raw, repo),
    };
    let loc = Path::from("copied/other-repo");
    a.store
        .put(&loc, PutPayload::from(pattern(2, 1000)))
        .await
        .unwrap();
    let id = copy_object_with_record(&a, &b, &loc).await;

    let e = read_err(&b.store, &loc).await;
    let err = inner(&e);
    assert!(
        matches!(
            err,
            Error::DataKey {
                source: encrypt_repo_keys::Error::UnwrapFailed { .. },
                ..
            }
        ),
        "expected UnwrapFailed (record bound to the other repository), got {err:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&id.to_hex()), "names the data key {id}: {msg}");
    assert!(msg.contains(loc.as_ref()), "names the object {loc}: {msg}");
}

#[tokio::test]
async fn object_copied_without_its_record_is_a_missing_data_key() {
    let a = fixture(None).await;
    let b = fixture(None).await;
    let loc = Path::from("copied/no-record");
    a.store
        .put(&loc, PutPayload::from_static(b"x"))
        .await
        .unwrap();
    b.raw
        .put(
            &loc,
            PutPayload::from(raw_bytes(a.raw.as_ref(), &loc).await),
        )
        .await
        .unwrap();
    let e = read_err(&b.store, &loc).await;
    assert!(
        matches!(inner(&e), Error::MissingDataKey { path, .. } if path == loc.as_ref()),
        "{e:?}"
    );
}

#[tokio::test]
async fn missing_keyring_record_names_object_and_data_key() {
    let f = fixture(None).await;
    let loc = Path::from("records/deleted");
    f.store
        .put(&loc, PutPayload::from(pattern(3, 5000)))
        .await
        .unwrap();
    let id = header_of(f.raw.as_ref(), &loc).await.data_key_id;
    f.raw.delete(&keyring_path(id)).await.unwrap();

    // The writing instance (its reader cache never held the key) and a fresh one.
    let fresh = encrypted(
        f.raw.clone(),
        open_local(f.raw.clone(), &f.key_file, RepositoryOptions::default())
            .await
            .unwrap(),
    );
    for store in [&f.store, &fresh] {
        let e = read_err(store, &loc).await;
        match inner(&e) {
            Error::MissingDataKey { path, data_key_id } => {
                assert_eq!(path, loc.as_ref());
                assert_eq!(*data_key_id, id);
            }
            other => panic!("expected MissingDataKey, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains(loc.as_ref()) && msg.contains(&id.to_hex()),
            "{msg}"
        );
        // A range read that skips the header in the body fails the same way.
        let e = f.store.get_range(&loc, 10..20).await.unwrap_err();
        assert!(matches!(inner(&e), Error::MissingDataKey { .. }), "{e:?}");
    }
}

// ------------------------------------------------------------------------------------------
// Moved and tampered objects
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn moved_object_fails_the_commitment_naming_the_object() {
    let f = fixture(None).await;
    let from = Path::from("moves/original");
    let to = Path::from("moves/elsewhere");
    let data = pattern(4, (3 * C) as usize + 10);
    f.store
        .put(&from, PutPayload::from(data.clone()))
        .await
        .unwrap();
    f.raw.rename(&from, &to).await.unwrap();

    let e = read_err(&f.store, &to).await;
    match inner(&e) {
        Error::Object { path, source } => {
            assert_eq!(path, to.as_ref());
            assert_eq!(*source, encrypt_repo_format::Error::CommitmentMismatch);
        }
        other => panic!("expected a commitment error, got {other:?}"),
    }
    assert!(e.to_string().contains(to.as_ref()), "{e}");
    assert!(e.to_string().contains("commitment"), "{e}");
    // A range read (header fetched separately) fails the same way.
    let e = f.store.get_range(&to, 2 * C..2 * C + 5).await.unwrap_err();
    assert!(
        matches!(
            inner(&e),
            Error::Object {
                source: encrypt_repo_format::Error::CommitmentMismatch,
                ..
            }
        ),
        "{e:?}"
    );
    // Moved back, it reads again.
    f.raw.rename(&to, &from).await.unwrap();
    assert_eq!(
        f.store.get(&from).await.unwrap().bytes().await.unwrap(),
        data
    );
}

#[tokio::test]
async fn moved_object_reads_in_an_unbound_repository() {
    let f = fixture(Some(false)).await;
    let data = pattern(5, 1000);
    f.store
        .put(&Path::from("a"), PutPayload::from(data.clone()))
        .await
        .unwrap();
    f.raw
        .rename(&Path::from("a"), &Path::from("b"))
        .await
        .unwrap();
    assert_eq!(
        f.store
            .get(&Path::from("b"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        data
    );
}

async fn flip(raw: &InMemory, loc: &Path, at: usize) {
    let mut b = raw_bytes(raw, loc).await.to_vec();
    b[at] ^= 0x01;
    raw.put(loc, PutPayload::from(b)).await.unwrap();
}

#[tokio::test]
async fn tampered_chunk_is_an_authentication_error_naming_object_and_chunk() {
    let f = fixture(None).await;
    let loc = Path::from("tamper/chunks");
    let data = pattern(6, 3 * C as usize + 100); // chunks 0, 1, 2 (full) and 3 (final)
    for (at, chunk) in [
        (HEADER_LEN + S + 7, 1u64),         // inside chunk 1
        (HEADER_LEN + 2 * S - 1, 1),        // chunk 1's tag
        (HEADER_LEN + 3 * S + 50, 3),       // inside the final chunk
        (HEADER_LEN + 3 * S + 100 + 15, 3), // the last byte of the object
    ] {
        f.store
            .put(&loc, PutPayload::from(data.clone()))
            .await
            .unwrap();
        flip(&f.raw, &loc, at).await;

        // Whole read, streamed: the untouched chunks before it may be released, then the error.
        let mut s = f.store.get(&loc).await.unwrap().into_stream();
        let mut released = Vec::new();
        let mut err = None;
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => released.extend_from_slice(&b),
                Err(e) => err = Some(e),
            }
        }
        assert!(
            released.len() as u64 <= chunk * C,
            "plaintext of the tampered chunk released"
        );
        assert_eq!(released[..], data[..released.len()]);
        let e = err.expect("tampered object read without error");
        match inner(&e) {
            Error::Object { path, source } => {
                assert_eq!(path, loc.as_ref());
                assert_eq!(
                    *source,
                    encrypt_repo_format::Error::Authentication { chunk }
                );
            }
            other => panic!("expected an authentication error, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains(loc.as_ref()) && msg.contains(&format!("chunk {chunk}")),
            "{msg}"
        );

        // A range read of that chunk fails the same way; one of an intact chunk succeeds.
        let e = f
            .store
            .get_range(&loc, chunk * C + 1..chunk * C + 2)
            .await
            .unwrap_err();
        assert!(
            matches!(inner(&e), Error::Object { source: encrypt_repo_format::Error::Authentication { chunk: c }, .. } if *c == chunk),
            "{e:?}"
        );
        let ok = f.store.get_range(&loc, 2 * C..2 * C + 3).await;
        if chunk != 2 {
            assert_eq!(ok.unwrap(), data[2 * C as usize..2 * C as usize + 3]);
        }
    }
}

#[tokio::test]
async fn tampered_header_fails_before_any_chunk() {
    let f = fixture(None).await;
    let loc = Path::from("tamper/header");
    let data = pattern(7, 2 * C as usize);
    for (at, expect) in [
        (40usize, encrypt_repo_format::Error::CommitmentMismatch), // salt
        (70, encrypt_repo_format::Error::CommitmentMismatch),      // commitment
        (14, encrypt_repo_format::Error::InvalidFlags),            // reserved byte
        (3, encrypt_repo_format::Error::BadMagic),
    ] {
        f.store
            .put(&loc, PutPayload::from(data.clone()))
            .await
            .unwrap();
        flip(&f.raw, &loc, at).await;
        let e = read_err(&f.store, &loc).await;
        match inner(&e) {
            Error::Object { path, source } => {
                assert_eq!(path, loc.as_ref());
                assert_eq!(*source, expect, "byte {at}");
            }
            other => panic!("byte {at}: expected an object error, got {other:?}"),
        }
    }
}

/// The five failures are five different errors.
#[tokio::test]
async fn failures_are_distinct() {
    fn kind(e: &Error) -> String {
        match e {
            Error::Object { source, .. } => format!("Object/{source:?}")
                .split(['{', '('])
                .next()
                .unwrap()
                .trim()
                .to_owned(),
            Error::Keys(k) | Error::DataKey { source: k, .. } => format!("Keys/{k:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned(),
            other => format!("{other:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned(),
        }
    }
    let a = fixture(None).await;
    let b = fixture(None).await;
    let mut kinds = Vec::new();

    // Wrong key file.
    let other = a._keys.path().join("other.key");
    drop(LocalProvider::create(&other).unwrap());
    kinds.push(kind(
        &open_local(a.raw.clone(), &other, RepositoryOptions::default())
            .await
            .unwrap_err(),
    ));
    // Record under another master.
    let l1 = Path::from("d/foreign");
    a.store
        .put(&l1, PutPayload::from_static(b"1"))
        .await
        .unwrap();
    copy_object_with_record(&a, &b, &l1).await;
    kinds.push(kind(inner(&read_err(&b.store, &l1).await)));
    // Moved.
    let l2 = Path::from("d/moved");
    a.store
        .put(&l2, PutPayload::from_static(b"2"))
        .await
        .unwrap();
    a.raw.rename(&l2, &Path::from("d/moved-to")).await.unwrap();
    kinds.push(kind(inner(
        &read_err(&a.store, &Path::from("d/moved-to")).await,
    )));
    // Tampered.
    let l3 = Path::from("d/tampered");
    a.store
        .put(&l3, PutPayload::from_static(b"3333"))
        .await
        .unwrap();
    flip(&a.raw, &l3, HEADER_LEN + 1).await;
    kinds.push(kind(inner(&read_err(&a.store, &l3).await)));
    // Missing record (a fresh repository for a cold cache).
    let raw = Arc::new(InMemory::new());
    let s = encrypted(
        raw.clone(),
        register_local(raw.clone(), &a.key_file, Some(C)).await,
    );
    let l4 = Path::from("d/missing");
    s.put(&l4, PutPayload::from_static(b"4")).await.unwrap();
    let id = header_of(raw.as_ref(), &l4).await.data_key_id;
    raw.delete(&keyring_path(id)).await.unwrap();
    kinds.push(kind(inner(&read_err(&s, &l4).await)));

    println!("{kinds:?}");
    let distinct: std::collections::BTreeSet<_> = kinds.iter().collect();
    assert_eq!(
        distinct.len(),
        kinds.len(),
        "errors are not distinct: {kinds:?}"
    );
}

// ------------------------------------------------------------------------------------------
// Registration
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn registering_twice_with_the_same_settings_is_a_no_op() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    let first = register_request(
        raw.clone(),
        local_request(&key_file, Some(C), None),
        RepositoryOptions::default(),
    )
    .await
    .unwrap();
    assert!(first.newly_registered);
    assert!(first.created_key_material, "a new key file was created");
    let stored = raw_bytes(raw.as_ref(), &Path::from(REGISTRATION)).await;

    for request in [
        local_request(&key_file, Some(C), None),
        local_request(&key_file, Some(C), Some(true)),
        local_request(&key_file, None, None), // chunk size not given: the registered one stands
    ] {
        let again = register_request(raw.clone(), request, RepositoryOptions::default())
            .await
            .unwrap();
        assert!(!again.newly_registered);
        assert!(!again.created_key_material);
        assert_eq!(again.repository.id(), first.repository.id());
        assert_eq!(again.repository.chunk_size(), first.repository.chunk_size());
    }
    assert_eq!(
        raw_bytes(raw.as_ref(), &Path::from(REGISTRATION)).await,
        stored
    );
}

#[tokio::test]
async fn conflicting_re_registration_is_refused_naming_the_field() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    register_request(
        raw.clone(),
        local_request(&key_file, Some(C), None),
        RepositoryOptions::default(),
    )
    .await
    .unwrap();
    let stored = raw_bytes(raw.as_ref(), &Path::from(REGISTRATION)).await;

    let mut passphrase = local_request(&key_file, Some(C), None);
    passphrase.crypto_settings = Some(CryptoSettings {
        key_provider_name: "test".into(),
        key_provider_type: "passphrase".into(),
        settings: [(
            "passphrase_env".to_owned(),
            "ENCRYPT_REPO_TEST_PASSPHRASE".to_owned(),
        )]
        .into(),
    });
    let mut unencrypted = local_request(&key_file, Some(C), None);
    unencrypted.encrypted = false;
    let cases = [
        (passphrase, "crypto_settings.key_provider_type"),
        (local_request(&key_file, Some(C * 4), None), "chunk_size"),
        (
            local_request(&key_file, Some(C), Some(false)),
            "path_binding",
        ),
        (unencrypted, "encrypted"),
    ];
    for (request, field) in cases {
        let e = register_request(raw.clone(), request, RepositoryOptions::default())
            .await
            .unwrap_err();
        match &e {
            Error::RegistrationConflict { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: expected RegistrationConflict, got {other:?}"),
        }
        assert!(e.to_string().contains(field), "message names {field}: {e}");
    }
    assert_eq!(
        raw_bytes(raw.as_ref(), &Path::from(REGISTRATION)).await,
        stored,
        "a refused registration changes nothing"
    );
}

#[tokio::test]
async fn unencrypted_repository_passes_data_through_unchanged() {
    let raw = Arc::new(InMemory::new());
    let request = RegistrationRequest {
        store_type: "test".into(),
        settings: Default::default(),
        encrypted: false,
        crypto_settings: None,
        chunk_size: None,
        escrow: Vec::new(),
        path_binding: None,
    };
    let reg = register_request(raw.clone(), request, RepositoryOptions::default())
        .await
        .unwrap();
    assert!(
        !reg.repository.is_encrypted(),
        "the repository says it is not encrypted"
    );
    assert!(!reg.repository.registration().request.encrypted);
    assert!(reg.repository.provider().is_none());
    let store = encrypted(raw.clone(), reg.repository);

    let loc = Path::from("plain/a.bin");
    let data = pattern(8, 200_000);
    store
        .put(&loc, PutPayload::from(data.clone()))
        .await
        .unwrap();
    assert_eq!(
        raw_bytes(raw.as_ref(), &loc).await,
        data,
        "raw bytes are the plaintext"
    );
    assert_eq!(store.get(&loc).await.unwrap().bytes().await.unwrap(), data);
    assert_eq!(store.head(&loc).await.unwrap().size, data.len() as u64);
    assert_eq!(store.get_range(&loc, 5..9).await.unwrap(), data[5..9]);

    let loc2 = Path::from("plain/multi.bin");
    let mut up = store.put_multipart(&loc2).await.unwrap();
    up.put_part(PutPayload::from(data.clone())).await.unwrap();
    up.put_part(PutPayload::from_static(b"tail")).await.unwrap();
    up.complete().await.unwrap();
    let mut expect = data.clone();
    expect.extend_from_slice(b"tail");
    assert_eq!(raw_bytes(raw.as_ref(), &loc2).await, expect);
    // No keyring: nothing but the registration under the reserved prefix.
    let reserved: Vec<_> = raw_locations(raw.as_ref())
        .await
        .into_iter()
        .filter(|p| p.as_ref().starts_with(".encrypt-repo/"))
        .collect();
    assert_eq!(reserved, vec![Path::from(REGISTRATION)]);
}

// ------------------------------------------------------------------------------------------
// Reserved prefix
// ------------------------------------------------------------------------------------------

fn assert_reserved_refusal(what: &str, e: &object_store::Error) {
    assert!(
        matches!(repo_error(e), Some(Error::Reserved(_))),
        "{what}: expected a reserved-prefix refusal, got {e:?}"
    );
}

#[tokio::test]
async fn reserved_prefix_is_hidden_and_refused() {
    let f = fixture(None).await;
    let store = &f.store;
    store
        .put(&Path::from("visible/a"), PutPayload::from_static(b"a"))
        .await
        .unwrap();
    // Look-alikes outside the first path segment are ordinary objects.
    for p in ["visible/.encrypt-repo/x", ".encrypt-repo-not/x"] {
        store
            .put(&Path::from(p), PutPayload::from_static(b"ok"))
            .await
            .unwrap();
        assert_eq!(
            store
                .get(&Path::from(p))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            Bytes::from_static(b"ok")
        );
    }
    let raw_all = raw_locations(f.raw.as_ref()).await;
    assert!(
        raw_all
            .iter()
            .any(|p| p.as_ref().starts_with(".encrypt-repo/keyring/"))
    );
    assert!(raw_all.contains(&Path::from(REGISTRATION)));

    // Hidden from listings.
    let listed: Vec<_> = store
        .list(None)
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|p| !p.as_ref().starts_with(".encrypt-repo/")),
        "{listed:?}"
    );
    let under: Vec<_> = store
        .list(Some(&Path::from(".encrypt-repo")))
        .try_collect()
        .await
        .unwrap();
    assert!(under.is_empty(), "{under:?}");
    let offset: Vec<_> = store
        .list_with_offset(None, &Path::from("."))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap();
    assert!(
        offset
            .iter()
            .all(|p| !p.as_ref().starts_with(".encrypt-repo/")),
        "{offset:?}"
    );
    let top = store.list_with_delimiter(None).await.unwrap();
    assert!(
        top.common_prefixes
            .iter()
            .all(|p| p.as_ref() != ".encrypt-repo"),
        "{:?}",
        top.common_prefixes
    );
    assert!(top.common_prefixes.contains(&Path::from("visible")));
    let inside = store
        .list_with_delimiter(Some(&Path::from(".encrypt-repo")))
        .await
        .unwrap();
    assert!(
        inside.objects.is_empty() && inside.common_prefixes.is_empty(),
        "{inside:?}"
    );

    // Refused for every operation, and the records are untouched.
    let reg = Path::from(REGISTRATION);
    let evil = Path::from(".encrypt-repo/evil");
    let keyring = raw_all
        .iter()
        .find(|p| p.as_ref().starts_with(".encrypt-repo/keyring/"))
        .unwrap()
        .clone();
    assert_reserved_refusal(
        "put",
        &store
            .put(&evil, PutPayload::from_static(b"x"))
            .await
            .unwrap_err(),
    );
    assert_reserved_refusal(
        "put over keyring",
        &store
            .put(&keyring, PutPayload::from_static(b"x"))
            .await
            .unwrap_err(),
    );
    assert_reserved_refusal(
        "put_multipart",
        &store.put_multipart(&evil).await.unwrap_err(),
    );
    assert_reserved_refusal("get", &store.get(&reg).await.unwrap_err());
    assert_reserved_refusal("get_range", &store.get_range(&reg, 0..4).await.unwrap_err());
    assert_reserved_refusal("head", &store.head(&reg).await.unwrap_err());
    assert_reserved_refusal(
        "delete registration",
        &store.delete(&reg).await.unwrap_err(),
    );
    assert_reserved_refusal("delete keyring", &store.delete(&keyring).await.unwrap_err());
    assert_reserved_refusal(
        "copy from",
        &store.copy(&reg, &Path::from("stolen")).await.unwrap_err(),
    );
    assert_reserved_refusal(
        "copy to",
        &store
            .copy(&Path::from("visible/a"), &keyring)
            .await
            .unwrap_err(),
    );
    assert_reserved_refusal(
        "rename to",
        &store
            .rename(&Path::from("visible/a"), &evil)
            .await
            .unwrap_err(),
    );
    assert_reserved_refusal(
        "rename from",
        &store.rename(&keyring, &Path::from("x")).await.unwrap_err(),
    );
    let deleted: Vec<_> = store
        .delete_stream(
            futures::stream::iter([Ok(Path::from("visible/a")), Ok(reg.clone())]).boxed(),
        )
        .collect()
        .await;
    assert!(deleted.iter().any(|r| r.is_err()), "{deleted:?}");

    assert_eq!(
        raw_locations(f.raw.as_ref())
            .await
            .into_iter()
            .filter(|p| p.as_ref().starts_with(".encrypt-repo/"))
            .collect::<Vec<_>>(),
        raw_all
            .iter()
            .filter(|p| p.as_ref().starts_with(".encrypt-repo/"))
            .cloned()
            .collect::<Vec<_>>(),
        "reserved records unchanged"
    );
    assert!(f.raw.head(&Path::from("stolen")).await.is_err());
    // The repository still works.
    let again = open_local(f.raw.clone(), &f.key_file, RepositoryOptions::default())
        .await
        .unwrap();
    assert_eq!(again.id(), f.store.repository().id());
}

/// Range bounds no object can reach (near u64::MAX, where the ciphertext offsets of their chunks
/// overflow) are a range error, not a panic or a wrapped offset.
#[tokio::test]
async fn ranges_near_u64_max_are_range_errors() {
    use object_store::{GetOptions, GetRange};
    let f = fixture(None).await;
    let loc = Path::from("small");
    f.store
        .put(&loc, Bytes::from_static(b"hello").into())
        .await
        .unwrap();
    let read = |range: GetRange| {
        let store = &f.store;
        let loc = &loc;
        async move {
            let opts = GetOptions {
                range: Some(range.clone()),
                ..Default::default()
            };
            match store.get_opts(loc, opts).await {
                Err(e) => e,
                Ok(r) => match r.bytes().await {
                    Err(e) => e,
                    Ok(b) => panic!("{range:?} read {} bytes", b.len()),
                },
            }
        }
    };
    // Chunk offsets that overflow: refused before the backend is asked.
    for range in [
        GetRange::Bounded(u64::MAX - 1..u64::MAX),
        GetRange::Bounded(1..u64::MAX),
        GetRange::Offset(u64::MAX),
    ] {
        let e = read(range.clone()).await;
        assert!(matches!(inner(&e), Error::Range { .. }), "{range:?}: {e:?}");
    }
    // Far past the end but representable: the backend's own range error.
    for range in [
        GetRange::Bounded((1 << 60)..(1 << 60) + 1),
        GetRange::Offset(1 << 60),
    ] {
        let e = read(range.clone()).await;
        assert!(e.to_string().contains("ange"), "{range:?}: {e}");
    }
    // The object itself is untouched.
    assert_eq!(
        f.store.get(&loc).await.unwrap().bytes().await.unwrap(),
        "hello"
    );
}
