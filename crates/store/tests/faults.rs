//! Fault injection: failed and abandoned uploads leave no object, truncated backend bodies
//! never read as a shorter plaintext, key-provider failures write nothing, and a provider that
//! reports the key unusable locks the repository until a status check finds it usable again.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use encrypt_repo_format::{HEADER_LEN, Header};
use encrypt_repo_store::{EncryptedStore, Error, RepositoryOptions};
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const C: u64 = CHUNK_64K;
const S: u64 = CHUNK_64K + 16;
const H: u64 = HEADER_LEN as u64;

/// Object locations outside the reserved prefix.
fn objects(all: &BTreeSet<Path>) -> BTreeSet<Path> {
    all.iter()
        .filter(|p| !p.as_ref().starts_with(".encrypt-repo/"))
        .cloned()
        .collect()
}

/// A fresh encrypted repository over `raw` (64 KiB chunks), and an `EncryptedStore` over a
/// `FaultyStore` around the same backend.
async fn faulty_setup<S: ObjectStore>(
    raw: Arc<S>,
    keys: &std::path::Path,
) -> (EncryptedStore<FaultyStore<S>>, Arc<FaultyStore<S>>) {
    let repo = register_local(raw.clone(), &keys.join("master.key"), Some(C)).await;
    let faulty = Arc::new(FaultyStore::new(raw));
    (encrypted(faulty.clone(), repo), faulty)
}

async fn assert_absent(store: &dyn ObjectStore, raw: &dyn ObjectStore, location: &Path) {
    let e = store.head(location).await.unwrap_err();
    assert!(
        matches!(e, object_store::Error::NotFound { .. }),
        "head through the EncryptedStore: expected NotFound, got {e:?}"
    );
    let e = raw.head(location).await.unwrap_err();
    assert!(
        matches!(e, object_store::Error::NotFound { .. }),
        "raw head: expected NotFound, got {e:?}"
    );
}

/// Files under `dir` other than the repository's own records (staging files included).
fn files_outside_reserved(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.retain(|p| {
        !p.strip_prefix(dir)
            .unwrap()
            .starts_with(encrypt_repo_store::RESERVED_PREFIX)
    });
    out
}

// ------------------------------------------------------------------------------------------
// (a) a backend part fails in the middle of a multipart upload
// ------------------------------------------------------------------------------------------

/// Eight 4 MiB plaintext parts; the store cuts the ciphertext into 5 MiB backend parts
/// (`DEFAULT_PART_SIZE`), so backend parts 1, 2 and 3 are sent during plaintext parts 2, 3 and 4
/// and the last one by `complete` (failures there: `failure_during_complete_leaves_no_object`).
/// Backend part number `fail_at` fails.
async fn failing_part_upload<S: ObjectStore>(raw: Arc<S>, fail_at: u64) {
    let keys = tempfile::tempdir().unwrap();
    let (store, faulty) = faulty_setup(raw.clone(), keys.path()).await;
    let loc = Path::from("uploads/failing-part.bin");
    let before = raw_locations(raw.as_ref()).await;
    faulty.add(Rule::new(Method::PutPart, fail_at, Fault::Fail).at(&loc));

    let mut up = store.put_multipart(&loc).await.unwrap();
    let mut errors = Vec::new();
    for i in 0..8u64 {
        let part = PutPayload::from(pattern(i, 4 << 20));
        if let Err(e) = up.put_part(part).await {
            errors.push(e);
        }
    }
    assert_eq!(
        faulty.fired(),
        1,
        "the backend part fault was injected; errors: {errors:?}"
    );
    assert_eq!(
        errors.len(),
        1,
        "exactly the plaintext part containing backend part {fail_at} fails"
    );
    assert!(
        errors[0].to_string().contains("injected fault"),
        "the backend error surfaces: {}",
        errors[0]
    );
    up.abort().await.expect("abort after a failed part");

    assert_absent(&store, raw.as_ref(), &loc).await;
    let after = raw_locations(raw.as_ref()).await;
    assert_eq!(
        objects(&after),
        objects(&before),
        "no new object in the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_backend_part_leaves_no_object_in_memory() {
    for fail_at in [1, 2, 3] {
        failing_part_upload(Arc::new(InMemory::new()), fail_at).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_backend_part_leaves_no_object_local_fs() {
    for fail_at in [1, 3] {
        let root = tempfile::tempdir().unwrap();
        let raw = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
        failing_part_upload(raw, fail_at).await;
        assert_eq!(
            files_outside_reserved(root.path()),
            Vec::<std::path::PathBuf>::new(),
            "no object and no staging file left on disk"
        );
    }
}

/// Completing (instead of aborting) after a failed part is refused: an object missing a part is
/// never committed. (Were it committed, reading it back would have to fail too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_after_failed_part_never_reads_back_clean() {
    for fail_at in [1, 2, 3] {
        let keys = tempfile::tempdir().unwrap();
        let raw = Arc::new(InMemory::new());
        let (store, faulty) = faulty_setup(raw.clone(), keys.path()).await;
        let loc = Path::from("uploads/completed-anyway.bin");
        faulty.add(Rule::new(Method::PutPart, fail_at, Fault::Fail).at(&loc));
        let mut up = store.put_multipart(&loc).await.unwrap();
        let mut failed = false;
        for i in 0..8u64 {
            failed |= up
                .put_part(PutPayload::from(pattern(i, 4 << 20)))
                .await
                .is_err();
        }
        assert!(failed);
        let refused = up.complete().await.is_err();
        assert!(
            refused,
            "complete after failed backend part {fail_at} must refuse"
        );
        let read = match store.get(&loc).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        assert!(
            read.is_err(),
            "an upload missing backend part {fail_at} read back cleanly ({} bytes)",
            read.unwrap().len()
        );
    }
}

/// The last backend parts are sent by `complete`; a failure there (or in the backend's own
/// complete) fails `complete`, and after abort nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_during_complete_leaves_no_object() {
    for rule in [
        // 16 MiB of plaintext: backend parts 1-3 (5 MiB each) go during put_part, part 4 in
        // complete.
        Rule::new(Method::PutPart, 4, Fault::Fail),
        Rule::new(Method::Complete, 1, Fault::Fail),
    ] {
        let root = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let raw = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
        let (store, faulty) = faulty_setup(raw.clone(), keys.path()).await;
        let loc = Path::from("uploads/failing-complete.bin");
        faulty.add(rule.clone().at(&loc));
        let mut up = store.put_multipart(&loc).await.unwrap();
        for i in 0..4u64 {
            up.put_part(PutPayload::from(pattern(i, 4 << 20)))
                .await
                .unwrap();
        }
        assert!(up.complete().await.is_err(), "{rule:?}: complete must fail");
        assert_eq!(faulty.fired(), 1);
        up.abort().await.expect("abort after a failed complete");
        assert_absent(&store, raw.as_ref(), &loc).await;
        assert_eq!(
            files_outside_reserved(root.path()),
            Vec::<std::path::PathBuf>::new()
        );
    }
}

// ------------------------------------------------------------------------------------------
// (b) puts and uploads abandoned midway
// ------------------------------------------------------------------------------------------

/// How long a delayed backend call waits.
const DELAY: Duration = Duration::from_secs(1);

/// Polls `fut` until `reached()` says it is inside the delayed backend call, then drops it.
/// Panics if it finishes first.
async fn abandon_when<F: Future>(fut: F, reached: impl Fn() -> bool)
where
    F::Output: std::fmt::Debug,
{
    let wait = async {
        while !reached() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::select! {
        r = fut => panic!("finished although the backend was delayed: {r:?}"),
        () = wait => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_dropped_while_backend_put_is_delayed_leaves_no_object() {
    let keys = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let raw = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let (store, faulty) = faulty_setup(raw.clone(), keys.path()).await;
    for (i, size) in [10usize, (3 << 20) + 5].into_iter().enumerate() {
        let loc = Path::from(format!("dropped/put-{i}"));
        faulty.add(Rule::new(Method::Put, 1, Fault::Delay(DELAY)).at(&loc));
        let fired = faulty.fired();
        abandon_when(
            store.put(&loc, PutPayload::from(pattern(i as u64, size))),
            || faulty.fired() > fired,
        )
        .await;
        // Had the put been detached rather than dropped, it would land within the delay.
        tokio::time::sleep(DELAY + Duration::from_millis(500)).await;
        assert_absent(&store, raw.as_ref(), &loc).await;
    }
    assert_eq!(faulty.fired(), 2);
    assert_eq!(
        files_outside_reserved(root.path()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_dropped_while_sealing_leaves_no_object() {
    let keys = tempfile::tempdir().unwrap();
    let raw = Arc::new(InMemory::new());
    let (store, _faulty) = faulty_setup(raw.clone(), keys.path()).await;
    let loc = Path::from("dropped/while-sealing");
    let r = tokio::time::timeout(
        Duration::from_millis(1),
        store.put(&loc, PutPayload::from(pattern(7, 48 << 20))),
    )
    .await;
    assert!(r.is_err(), "sealing 48 MiB takes longer than 1 ms");
    // Long enough for a detached seal-and-put to finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_absent(&store, raw.as_ref(), &loc).await;
}

async fn dropped_upload<S: ObjectStore>(raw: Arc<S>) {
    let keys = tempfile::tempdir().unwrap();
    let (store, faulty) = faulty_setup(raw.clone(), keys.path()).await;
    let before = objects(&raw_locations(raw.as_ref()).await);

    // Parts uploaded, then the upload is dropped without complete.
    let loc = Path::from("dropped/upload-never-completed");
    let mut up = store.put_multipart(&loc).await.unwrap();
    for i in 0..3 {
        up.put_part(PutPayload::from(pattern(i, 1 << 20)))
            .await
            .unwrap();
    }
    drop(up);
    assert_absent(&store, raw.as_ref(), &loc).await;

    // complete() itself abandoned while the backend's complete is delayed.
    let loc2 = Path::from("dropped/complete-abandoned");
    faulty.add(Rule::new(Method::Complete, 1, Fault::Delay(DELAY)).at(&loc2));
    let mut up = store.put_multipart(&loc2).await.unwrap();
    up.put_part(PutPayload::from(pattern(9, 2 << 20)))
        .await
        .unwrap();
    let fired = faulty.fired();
    abandon_when(up.complete(), || faulty.fired() > fired).await;
    drop(up);
    tokio::time::sleep(DELAY + Duration::from_millis(500)).await;
    assert_absent(&store, raw.as_ref(), &loc2).await;
    assert_eq!(objects(&raw_locations(raw.as_ref()).await), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_upload_leaves_no_object_in_memory() {
    dropped_upload(Arc::new(InMemory::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_upload_leaves_no_object_local_fs() {
    let root = tempfile::tempdir().unwrap();
    dropped_upload(Arc::new(
        LocalFileSystem::new_with_prefix(root.path()).unwrap(),
    ))
    .await;
    assert_eq!(
        files_outside_reserved(root.path()),
        Vec::<std::path::PathBuf>::new(),
        "no object and no staging file left on disk"
    );
}

// ------------------------------------------------------------------------------------------
// (c) truncated backend bodies
// ------------------------------------------------------------------------------------------

/// Reads `loc` (whole, or `range`) with the next backend get truncated to `keep` bytes, both
/// collected and streamed. Returns the error; panics if any plaintext is wrong or if the read
/// succeeds.
async fn read_truncated<S: ObjectStore>(
    store: &EncryptedStore<FaultyStore<S>>,
    faulty: &FaultyStore<S>,
    loc: &Path,
    expected: &[u8],
    range: Option<std::ops::Range<u64>>,
    nth_get: u64,
    keep: u64,
) -> object_store::Error {
    let opts = || object_store::GetOptions {
        range: range.clone().map(Into::into),
        ..Default::default()
    };
    let want = match &range {
        Some(r) => &expected[r.start as usize..r.end as usize],
        None => expected,
    };

    // Collected.
    faulty.clear();
    let fired = faulty.fired();
    faulty.add(Rule::new(Method::Get, nth_get, Fault::Truncate(keep)).at(loc));
    let collected = match store.get_opts(loc, opts()).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    assert_eq!(faulty.fired(), fired + 1, "the truncation was injected");
    if let Ok(b) = &collected {
        panic!(
            "body truncated to {keep} bytes (range {range:?}) read back cleanly: {} of {} bytes{}",
            b.len(),
            want.len(),
            if b.as_ref() == want {
                " (identical!)"
            } else {
                ""
            }
        );
    }

    // Streamed: every byte yielded is a correct prefix, then an error, then the end.
    faulty.clear();
    faulty.add(Rule::new(Method::Get, nth_get, Fault::Truncate(keep)).at(loc));
    let err = match store.get_opts(loc, opts()).await {
        Err(e) => e,
        Ok(r) => {
            let mut s = r.into_stream();
            let mut at = 0usize;
            let mut err = None;
            while let Some(item) = s.next().await {
                match item {
                    Ok(b) => {
                        assert!(err.is_none(), "plaintext yielded after an error");
                        assert!(
                            at + b.len() <= want.len() && b.as_ref() == &want[at..at + b.len()],
                            "wrong plaintext at offset {at} (truncated to {keep})"
                        );
                        at += b.len();
                    }
                    Err(e) => {
                        assert!(err.is_none(), "two errors from one stream");
                        err = Some(e);
                    }
                }
            }
            assert!(
                at < want.len(),
                "the whole plaintext was released from a truncated body (keep {keep})"
            );
            err.unwrap_or_else(|| {
                panic!("stream of a body truncated to {keep} ended cleanly after {at} bytes")
            })
        }
    };
    faulty.clear();
    err
}

fn assert_names_object(e: &object_store::Error, loc: &Path) {
    let inner = repo_error(e).unwrap_or_else(|| panic!("not an encrypt-repo error: {e:?}"));
    assert!(
        matches!(inner, Error::Object { path, .. } if path == loc.as_ref()),
        "expected an object error naming {loc}, got {inner:?}"
    );
    assert!(e.to_string().contains(loc.as_ref()), "{e}");
}

async fn truncated_bodies<S: ObjectStore>(raw: Arc<S>) {
    let keys = tempfile::tempdir().unwrap();
    let (store, faulty) = faulty_setup(raw, keys.path()).await;

    // 20.5 chunks (spans more than one 8-chunk batch), and exactly 16 chunks (the last chunk
    // is full, so dropping it leaves a length-valid object).
    for (name, len) in [("partial", 20 * C + C / 2), ("exact", 16 * C)] {
        let loc = Path::from(format!("truncated/{name}"));
        let data = pattern(len, len as usize);
        store
            .put(&loc, PutPayload::from(data.clone()))
            .await
            .unwrap();
        let n = H + len + len.div_ceil(C) * 16;
        let chunks = len.div_ceil(C);
        let points = [
            0,
            9,
            10,
            H - 1,
            H,
            H + 1,
            H + S / 2,
            H + S,
            H + 8 * S,
            H + 8 * S + 1,
            H + (chunks - 1) * S,
            H + (chunks - 1) * S + 1,
            n - 17,
            n - 16,
            n - 1,
        ];
        for keep in points {
            let e = read_truncated(&store, &faulty, &loc, &data, None, 1, keep).await;
            assert_names_object(&e, &loc);
        }

        // Range reads: the range fetch (1st backend get) is truncated. Ranges inside the object
        // and ranges reaching its end.
        let ranges = [
            (C + 5)..(5 * C),
            (3 * C)..(4 * C),
            (len - C - 3)..len,
            (len - 1)..len,
            0..(2 * C + 1),
        ];
        for r in ranges {
            let first = r.start / C;
            let last = (r.end - 1) / C;
            let fetched = (H + (last + 1) * S).min(n) - if first == 0 { 0 } else { H + first * S };
            for keep in [0, 1, S / 2, S, fetched - 1] {
                if keep >= fetched {
                    continue;
                }
                let e =
                    read_truncated(&store, &faulty, &loc, &data, Some(r.clone()), 1, keep).await;
                assert_names_object(&e, &loc);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_is_an_error_in_memory() {
    truncated_bodies(Arc::new(InMemory::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_is_an_error_local_fs() {
    let root = tempfile::tempdir().unwrap();
    truncated_bodies(Arc::new(
        LocalFileSystem::new_with_prefix(root.path()).unwrap(),
    ))
    .await;
}

/// A range read that does not start in chunk 0 fetches the header separately (2nd backend
/// get when the header is not cached); a truncated header is an error too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_header_fetch_is_an_error() {
    let keys = tempfile::tempdir().unwrap();
    let raw = Arc::new(InMemory::new());
    let repo = Arc::new(register_local(raw.clone(), &keys.path().join("k"), Some(C)).await);
    let loc = Path::from("truncated/header-fetch");
    let data = pattern(3, (5 * C) as usize);
    EncryptedStore::new(raw.clone(), repo.clone())
        .put(&loc, PutPayload::from(data.clone()))
        .await
        .unwrap();
    for keep in [0, 10, H - 1] {
        // A fresh store: empty header cache.
        let faulty = Arc::new(FaultyStore::new(raw.clone()));
        let store = EncryptedStore::new(faulty.clone(), repo.clone());
        let e = read_truncated(
            &store,
            &faulty,
            &loc,
            &data,
            Some(2 * C..2 * C + 10),
            2,
            keep,
        )
        .await;
        assert_names_object(&e, &loc);
    }
}

// ------------------------------------------------------------------------------------------
// (d) key provider failure while writing
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_generate_data_key_writes_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    drop(register_local(raw.clone(), &key_file, Some(C)).await);
    let (repo, provider) =
        open_counting(raw.clone(), &key_file, RepositoryOptions::default()).await;
    let store = encrypted(raw.clone(), repo);
    provider.set_mode(ProviderMode::FailGenerate);

    let before = raw_locations(raw.as_ref()).await;
    let small = store
        .put(&Path::from("k/small"), PutPayload::from_static(b"hello"))
        .await;
    let big = store
        .put(
            &Path::from("k/big"),
            PutPayload::from(pattern(1, (3 * C) as usize)),
        )
        .await;
    let multi = store.put_multipart(&Path::from("k/multi")).await;
    for (what, failed) in [
        ("small put", small.err()),
        ("large put", big.err()),
        ("put_multipart", multi.err()),
    ] {
        let e = failed.unwrap_or_else(|| panic!("{what} succeeded without a data key"));
        assert!(
            matches!(repo_error(&e), Some(Error::Keys(_))),
            "{what}: expected a key provider error, got {e:?}"
        );
    }
    assert!(provider.counts().generate >= 3);
    assert_eq!(
        raw_locations(raw.as_ref()).await,
        before,
        "no object and no keyring record may be written when the provider fails"
    );
    assert!(
        store.repository().lock_reason().is_none(),
        "a transient provider failure must not lock the repository"
    );

    // The provider recovers: the next write generates a key and succeeds.
    provider.set_mode(ProviderMode::Healthy);
    store
        .put(&Path::from("k/small"), PutPayload::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(
        store
            .get(&Path::from("k/small"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        Bytes::from_static(b"hello")
    );
    assert_eq!(raw_locations(raw.as_ref()).await.len(), before.len() + 2);
}

// ------------------------------------------------------------------------------------------
// (e) key unavailable: lock and unlock
// ------------------------------------------------------------------------------------------

fn assert_locked(e: &object_store::Error, provider: &CountingProvider) {
    use encrypt_repo_keys::KeyProvider as _;
    let inner = repo_error(e).unwrap_or_else(|| panic!("not an encrypt-repo error: {e:?}"));
    let Error::Locked { reason, .. } = inner else {
        panic!("expected Locked, got {inner:?}")
    };
    assert!(
        reason.contains("local"),
        "reason names the provider: {reason}"
    );
    assert!(
        reason.contains(&provider.master_key()),
        "reason names the key {}: {reason}",
        provider.master_key()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_unavailable_on_read_locks_until_status_check_recovers() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    let writer = encrypted(
        raw.clone(),
        register_local(raw.clone(), &key_file, Some(C)).await,
    );
    let a = Path::from("lock/a");
    writer
        .put(&a, PutPayload::from_static(b"alpha"))
        .await
        .unwrap();

    // A second process, whose provider now reports the key disabled.
    let (repo, provider) =
        open_counting(raw.clone(), &key_file, RepositoryOptions::default()).await;
    let store = encrypted(raw.clone(), repo);
    provider.set_mode(ProviderMode::Unavailable);

    let e = store.get(&a).await.unwrap_err();
    assert_locked(&e, &provider);
    assert!(store.repository().lock_reason().is_some());
    let unwraps = provider.counts().unwrap;
    assert_eq!(unwraps, 1);

    // Locked: reads and writes are refused without asking the provider again.
    let e = store.get(&a).await.unwrap_err();
    assert_locked(&e, &provider);
    let before = raw_locations(raw.as_ref()).await;
    let b = Path::from("lock/b");
    let e = store
        .put(&b, PutPayload::from_static(b"beta"))
        .await
        .unwrap_err();
    assert_locked(&e, &provider);
    let e = store.put_multipart(&b).await.unwrap_err();
    assert_locked(&e, &provider);
    let e = store.get_range(&a, 1..3).await.unwrap_err();
    assert_locked(&e, &provider);
    assert_eq!(
        raw_locations(raw.as_ref()).await,
        before,
        "nothing written while locked"
    );
    assert_eq!(provider.counts().unwrap, unwraps);
    assert_eq!(provider.counts().generate, 0);

    // A status check while the key is still disabled keeps the lock.
    let status = store.repository().check_key_status().await.unwrap();
    assert!(!status.is_usable());
    assert!(store.get(&a).await.is_err());

    // The key is re-enabled: the status check unlocks.
    provider.set_mode(ProviderMode::Healthy);
    let status = store.repository().check_key_status().await.unwrap();
    assert!(status.is_usable());
    assert!(store.repository().lock_reason().is_none());
    assert_eq!(
        store.get(&a).await.unwrap().bytes().await.unwrap(),
        Bytes::from_static(b"alpha")
    );
    store
        .put(&b, PutPayload::from_static(b"beta"))
        .await
        .unwrap();
    assert_eq!(
        store.get(&b).await.unwrap().bytes().await.unwrap(),
        Bytes::from_static(b"beta")
    );
    assert_eq!(provider.counts().status, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_unavailable_on_write_locks_until_status_check_recovers() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    drop(register_local(raw.clone(), &key_file, Some(C)).await);
    let (repo, provider) =
        open_counting(raw.clone(), &key_file, RepositoryOptions::default()).await;
    let store = encrypted(raw.clone(), repo);
    provider.set_mode(ProviderMode::Unavailable);
    let before = raw_locations(raw.as_ref()).await;

    let loc = Path::from("lock/w");
    let e = store
        .put(&loc, PutPayload::from_static(b"w"))
        .await
        .unwrap_err();
    assert_locked(&e, &provider);
    let e = store
        .put(&loc, PutPayload::from_static(b"w"))
        .await
        .unwrap_err();
    assert_locked(&e, &provider);
    assert_eq!(
        provider.counts().generate,
        1,
        "locked: the provider is not asked again"
    );
    assert_eq!(raw_locations(raw.as_ref()).await, before);

    provider.set_mode(ProviderMode::Healthy);
    assert!(
        store
            .repository()
            .check_key_status()
            .await
            .unwrap()
            .is_usable()
    );
    store
        .put(&loc, PutPayload::from_static(b"w"))
        .await
        .unwrap();
    let raw_obj = raw_bytes(raw.as_ref(), &loc).await;
    let id = Header::parse(&raw_obj).unwrap().data_key_id;
    assert!(
        store
            .repository()
            .data_key_ids()
            .await
            .unwrap()
            .contains(&id)
    );
    assert_eq!(
        store.get(&loc).await.unwrap().bytes().await.unwrap(),
        Bytes::from_static(b"w")
    );
}

/// The file itself cut short on disk (a crashed copy, a full disk during restore): reads through
/// the local-file read-ahead path fail at every cut, whole and ranged, and whatever was yielded
/// before the error is a correct prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_truncated_on_disk_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let raw = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let repo = Arc::new(register_local(raw.clone(), &keys.path().join("k"), Some(C)).await);
    let loc = Path::from("truncated/on-disk");
    let data = pattern(9, (4 * C + 100) as usize);
    let file = root.path().join("truncated/on-disk");
    for keep in [H, H + 1, H + S, H + 2 * S - 1, H + 4 * S, H + 4 * S + 50] {
        let store = EncryptedStore::new(raw.clone(), repo.clone());
        store
            .put(&loc, PutPayload::from(data.clone()))
            .await
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(keep)
            .unwrap();
        for range in [
            None,
            Some(0..10),
            Some(C - 5..2 * C + 5),
            Some(3 * C..4 * C + 100),
        ] {
            let opts = object_store::GetOptions {
                range: range.clone().map(Into::into),
                ..Default::default()
            };
            let want = match &range {
                Some(r) => &data[r.start as usize..r.end as usize],
                None => &data[..],
            };
            let mut yielded = Vec::new();
            let mut failed = false;
            match store.get_opts(&loc, opts).await {
                Err(_) => failed = true,
                Ok(r) => {
                    let mut s = r.into_stream();
                    while let Some(item) = s.next().await {
                        match item {
                            Ok(b) => yielded.extend_from_slice(&b),
                            Err(_) => {
                                failed = true;
                                break;
                            }
                        }
                    }
                }
            }
            assert!(
                want.starts_with(&yielded),
                "cut at {keep}, range {range:?}: yielded bytes are not a prefix"
            );
            // A range wholly inside what survived may read back; anything else must fail.
            let survives = range
                .as_ref()
                .is_some_and(|r| H + (r.end - 1) / C * S + S < keep);
            assert!(
                failed || (survives && yielded == want),
                "cut at {keep}, range {range:?}: read {} of {} bytes without error",
                yielded.len(),
                want.len()
            );
        }
    }
}
