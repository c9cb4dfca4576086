//! Concurrent writers and readers: on one `EncryptedStore`, and from two `Repository`
//! instances (two processes) over one directory. Nothing is corrupted, every object's data key
//! is in the keyring, and each writer makes one data key per rotation interval.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use encrypt_repo_format::{DataKeyId, Header};
use encrypt_repo_store::{EncryptedStore, RepositoryOptions};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const C: usize = CHUNK_64K as usize;
const TASKS: usize = 16;
const ROUNDS: usize = 8;

/// Sizes around the chunk edges, cycling with the round number.
fn size_for(task: usize, round: usize) -> usize {
    const SIZES: [usize; 8] = [0, 1, C - 1, C, C + 1, 3 * C + 17, 200_000, 9 * C];
    SIZES[(task + round) % SIZES.len()]
}

fn seed(task: usize, round: usize) -> u64 {
    (task * 1000 + round) as u64
}

fn own(task: usize, round: usize) -> Path {
    Path::from(format!("t{task:02}/obj-{round}"))
}

/// Writes one object: a plain put, or a multipart upload in uneven parts.
async fn write(store: &dyn ObjectStore, loc: &Path, data: &[u8], multipart: bool) {
    if multipart {
        let mut up = store.put_multipart(loc).await.unwrap();
        for part in data.chunks(70_001) {
            up.put_part(PutPayload::from(part.to_vec())).await.unwrap();
        }
        up.complete().await.unwrap();
    } else {
        store
            .put(loc, PutPayload::from(data.to_vec()))
            .await
            .unwrap();
    }
}

async fn read(store: &dyn ObjectStore, loc: &Path) -> Vec<u8> {
    store
        .get(loc)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_writers_and_readers_on_one_store() {
    let keys = tempfile::tempdir().unwrap();
    let raw = Arc::new(InMemory::new());
    let repo = register_local(
        raw.clone(),
        &keys.path().join("master.key"),
        Some(CHUNK_64K),
    )
    .await;
    let store = Arc::new(EncryptedStore::new(raw.clone(), Arc::new(repo)));
    // progress[t] = rounds task t has written and verified.
    let progress: Arc<Vec<AtomicUsize>> =
        Arc::new((0..TASKS).map(|_| AtomicUsize::new(0)).collect());
    let hot = Path::from("shared/hot");
    let hot_versions: Vec<Vec<u8>> = (0..TASKS)
        .map(|t| pattern(90_000 + t as u64, 3 * C + 5))
        .collect();
    let hot_versions = Arc::new(hot_versions);

    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let progress = progress.clone();
        let hot = hot.clone();
        let hot_versions = hot_versions.clone();
        handles.push(tokio::spawn(async move {
            let mut others_read = 0usize;
            let mut hot_reads = 0usize;
            for r in 0..ROUNDS {
                // Own object: write, read back whole and by range.
                let data = pattern(seed(t, r), size_for(t, r));
                let loc = own(t, r);
                write(store.as_ref(), &loc, &data, r % 3 == 2).await;
                assert_eq!(read(store.as_ref(), &loc).await, data, "{loc}");
                if data.len() > 10 {
                    let (a, b) = (data.len() / 3, data.len() - 2);
                    let got = store.get_range(&loc, a as u64..b as u64).await.unwrap();
                    assert_eq!(got.as_ref(), &data[a..b], "{loc} range");
                }
                progress[t].store(r + 1, Ordering::SeqCst);

                // Others' objects that are known to be complete.
                for u in (0..TASKS).filter(|&u| u != t) {
                    let done = progress[u].load(Ordering::SeqCst);
                    if done > 0 {
                        let ru = (t + r) % done;
                        let want = pattern(seed(u, ru), size_for(u, ru));
                        assert_eq!(read(store.as_ref(), &own(u, ru)).await, want);
                        others_read += 1;
                    }
                }

                // A shared object every task overwrites: any read returns one whole version.
                store
                    .put(&hot, PutPayload::from(hot_versions[t].clone()))
                    .await
                    .unwrap();
                let got = read(store.as_ref(), &hot).await;
                assert!(
                    hot_versions.contains(&got),
                    "hot object read back as none of the written versions"
                );
                // Range reads may race with an overwrite; they may fail a precondition, but
                // never return bytes of no version.
                match store
                    .get_range(&hot, (C as u64 + 3)..(2 * C as u64 + 9))
                    .await
                {
                    Ok(b) => assert!(
                        hot_versions.iter().any(|v| v[C + 3..2 * C + 9] == b[..]),
                        "hot range read returned bytes of no version"
                    ),
                    Err(object_store::Error::Precondition { .. }) => {}
                    Err(e) => panic!("hot range read failed: {e}"),
                }
                hot_reads += 1;
            }
            (others_read, hot_reads)
        }));
    }
    let mut others = 0;
    for h in handles {
        let (o, _) = h.await.unwrap();
        others += o;
    }
    println!("{TASKS} tasks x {ROUNDS} rounds; {others} reads of other tasks' objects");
    assert!(others > 0, "tasks did read each other's objects");

    // Afterwards, every object reads back identical from a fresh store instance.
    let fresh = EncryptedStore::new(raw.clone(), store.repository().clone());
    for t in 0..TASKS {
        for r in 0..ROUNDS {
            assert_eq!(
                read(&fresh, &own(t, r)).await,
                pattern(seed(t, r), size_for(t, r))
            );
        }
    }
    let ids = store.repository().data_key_ids().await.unwrap();
    assert_eq!(
        ids.len(),
        1,
        "concurrent writers share one data key: {ids:?}"
    );
}

/// Data-key id in the header of every object outside the reserved prefix.
async fn header_ids(raw: &dyn ObjectStore) -> BTreeMap<Path, DataKeyId> {
    let metas: Vec<_> = raw.list(None).try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for m in metas {
        if m.location.as_ref().starts_with(".encrypt-repo/") {
            continue;
        }
        let bytes = raw_bytes(raw, &m.location).await;
        let h = Header::parse(&bytes)
            .unwrap_or_else(|e| panic!("raw object {} has no valid header: {e}", m.location));
        out.insert(m.location, h.data_key_id);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_repository_instances_over_one_directory() {
    const PER_WRITER: usize = 48;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let root = tempfile::tempdir().unwrap();
    {
        let raw = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
        drop(register_local(raw, &key_file, Some(CHUNK_64K)).await);
    }

    // Two "processes": separate backends over the directory, separately opened repositories.
    let raw_a = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let raw_b = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let (repo_a, prov_a) =
        open_counting(raw_a.clone(), &key_file, RepositoryOptions::default()).await;
    let (repo_b, prov_b) =
        open_counting(raw_b.clone(), &key_file, RepositoryOptions::default()).await;
    assert_eq!(repo_a.id(), repo_b.id());
    let a = Arc::new(encrypted(raw_a.clone(), repo_a));
    let b = Arc::new(encrypted(raw_b.clone(), repo_b));

    let data = |w: usize, i: usize| pattern((w * 10_000 + i) as u64, size_for(w, i) + i);
    let shared = Path::from("shared/both");
    let shared_versions: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..2)
            .map(|w| pattern(77_000 + w as u64, 2 * C + 1))
            .collect(),
    );

    let run = |w: usize,
               store: Arc<EncryptedStore<LocalFileSystem>>,
               other: Arc<EncryptedStore<LocalFileSystem>>| {
        let shared = shared.clone();
        let shared_versions = shared_versions.clone();
        tokio::spawn(async move {
            // 4 concurrent lanes per writer.
            let lanes = (0..4).map(|lane| {
                let store = store.clone();
                let other = other.clone();
                let shared = shared.clone();
                let shared_versions = shared_versions.clone();
                async move {
                    for i in (lane..PER_WRITER).step_by(4) {
                        let loc = Path::from(format!("w{w}/obj-{i:03}"));
                        let d = data(w, i);
                        write(store.as_ref(), &loc, &d, i % 5 == 4).await;
                        assert_eq!(read(store.as_ref(), &loc).await, d);
                        // The other process reads it too (its cache has never seen this key).
                        assert_eq!(read(other.as_ref(), &loc).await, d);
                        if i % 6 == 0 {
                            store
                                .put(&shared, PutPayload::from(shared_versions[w].clone()))
                                .await
                                .unwrap();
                        }
                    }
                }
            });
            futures::future::join_all(lanes).await;
        })
    };
    let ha = run(0, a.clone(), b.clone());
    let hb = run(1, b.clone(), a.clone());
    ha.await.unwrap();
    hb.await.unwrap();

    // Each instance made exactly one data key (one rotation interval each).
    println!(
        "provider calls: A {:?}, B {:?}",
        prov_a.counts(),
        prov_b.counts()
    );
    assert_eq!(prov_a.counts().generate, 1, "instance A data keys");
    assert_eq!(prov_b.counts().generate, 1, "instance B data keys");

    // A third, fresh instance reads everything back identical.
    let raw_c = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let repo_c = open_local(raw_c.clone(), &key_file, RepositoryOptions::default())
        .await
        .unwrap();
    let c = encrypted(raw_c.clone(), repo_c);
    for w in 0..2 {
        for i in 0..PER_WRITER {
            let loc = Path::from(format!("w{w}/obj-{i:03}"));
            assert_eq!(read(&c, &loc).await, data(w, i), "{loc}");
        }
    }
    let got = read(&c, &shared).await;
    assert!(
        shared_versions.contains(&got),
        "shared object is one whole version"
    );

    // The keyring is consistent: every object's data key has a record; two records in all,
    // one per writer.
    let keyring: BTreeSet<DataKeyId> = c
        .repository()
        .data_key_ids()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let ids = header_ids(raw_c.as_ref()).await;
    assert_eq!(ids.len(), 2 * PER_WRITER + 1);
    for (loc, id) in &ids {
        assert!(
            keyring.contains(id),
            "{loc} names data key {id}, which has no keyring record"
        );
    }
    assert_eq!(
        keyring.len(),
        2,
        "one data-key record per writer: {keyring:?}"
    );
    let by_writer = |w: usize| -> BTreeSet<DataKeyId> {
        ids.iter()
            .filter(|(l, _)| l.as_ref().starts_with(&format!("w{w}/")))
            .map(|(_, id)| *id)
            .collect()
    };
    let (ka, kb) = (by_writer(0), by_writer(1));
    assert_eq!(ka.len(), 1);
    assert_eq!(kb.len(), 1);
    assert_ne!(ka, kb, "the two writers have their own data keys");
}

/// A snapshot uploader on a one-thread runtime: `put_part` of a 64 MiB part returns before the
/// part is sealed (sealing runs on the blocking pool, not on the calling task), so another task
/// on the same thread runs while it is sealed — it sees none of the part's ciphertext handed to
/// the backend yet — and the object still reads back byte for byte, its parts in order.
#[test]
fn sealing_a_large_part_leaves_a_one_thread_runtime_answering() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let keys = tempfile::tempdir().unwrap();
        let raw = Arc::new(CountingStore::new(Arc::new(InMemory::new())));
        let repo = register_local(
            raw.clone(),
            &keys.path().join("master.key"),
            Some(CHUNK_64K),
        )
        .await;
        let store = EncryptedStore::new(raw.clone(), Arc::new(repo));
        let path = Path::from("big");
        let mut upload = store.put_multipart(&path).await.unwrap();
        let data: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
        let second: Vec<u8> = data.iter().rev().copied().collect();
        raw.clear();
        let first = upload.put_part(PutPayload::from(data.clone()));
        let next = upload.put_part(PutPayload::from(second.clone()));
        // Runs on this, the only worker thread, as soon as the caller yields.
        let counter = raw.clone();
        let seen = tokio::spawn(async move { counter.count(Method::PutPart) })
            .await
            .unwrap();
        futures::future::try_join(first, next).await.unwrap();
        upload.complete().await.unwrap();
        let parts = raw.count(Method::PutPart);
        assert!(parts > 20, "{parts} backend parts for 128 MiB");
        assert_eq!(
            seen, 0,
            "the other task ran only after {seen} of {parts} parts were sealed and sent"
        );
        let back = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert!(
            back.len() == 128 << 20
                && back[..64 << 20] == data[..]
                && back[64 << 20..] == second[..]
        );
    });
}
