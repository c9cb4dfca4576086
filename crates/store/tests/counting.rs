//! What reaches the backend and the key provider: a 1-byte read of a 1 GiB object fetches the
//! header and one sealed chunk (and the header only once); writers call the provider once per
//! rotation, cold readers once per data key, however many objects and concurrent readers.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use encrypt_repo_format::{HEADER_LEN, Header};
use encrypt_repo_keys::CachePolicy;
use encrypt_repo_store::{EncryptedStore, RepositoryOptions};
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetRange, ObjectStore, ObjectStoreExt, PutPayload};

const MIB: u64 = 1 << 20;
/// Object size for the sparse-read test. 1 GiB as asked: sealing and writing it through
/// LocalFileSystem takes a few seconds here (see the timing the test prints).
const BIG: u64 = 1024 * MIB;
const PART: u64 = 16 * MIB;

/// The plaintext byte at offset `p` of the big object: constant per 1 MiB block, different
/// for neighbouring blocks, so a wrong chunk shows.
fn big_byte(p: u64) -> u8 {
    ((p >> 20).wrapping_mul(37).wrapping_add(11)) as u8
}

fn big_part(i: u64) -> PutPayload {
    let mut v = vec![0u8; PART as usize];
    for (j, block) in v.chunks_mut(MIB as usize).enumerate() {
        block.fill(big_byte(i * PART + j as u64 * MIB));
    }
    PutPayload::from(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_read_of_1_gib_object_fetches_header_and_one_chunk() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let root = tempfile::tempdir().unwrap();
    let raw = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    // Default chunk size (1 MiB).
    let writer = encrypted(
        raw.clone(),
        register_local(raw.clone(), &key_file, None).await,
    );
    let chunk = writer.repository().chunk_size();
    assert_eq!(chunk.bytes() as u64, MIB);
    let sealed = chunk.sealed_bytes() as u64;
    let loc = Path::from("big/1gib.bin");

    let t = Instant::now();
    let mut up = writer.put_multipart(&loc).await.unwrap();
    for i in 0..BIG / PART {
        up.put_part(big_part(i)).await.unwrap();
    }
    up.complete().await.unwrap();
    println!(
        "wrote {} MiB through EncryptedStore<LocalFileSystem> in {:.1} s",
        BIG / MIB,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(writer.head(&loc).await.unwrap().size, BIG);

    // A reader in a fresh process: cold caches, every backend call recorded.
    let counting = Arc::new(CountingStore::new(raw.clone()));
    let repo = open_local(counting.clone(), &key_file, RepositoryOptions::default())
        .await
        .unwrap();
    let store = EncryptedStore::new(counting.clone(), Arc::new(repo));
    counting.clear();

    let mid = BIG / 2 + 12_345;
    let t = Instant::now();
    let got = store.get_range(&loc, mid..mid + 1).await.unwrap();
    let elapsed = t.elapsed();
    assert_eq!(got.as_ref(), &[big_byte(mid)]);
    let calls = counting.calls();
    let at_obj: Vec<_> = calls.iter().filter(|c| c.at(&loc)).collect();
    let obj_bytes: u64 = at_obj.iter().map(|c| c.bytes()).sum();
    let other_bytes: u64 = calls
        .iter()
        .filter(|c| !c.at(&loc))
        .map(|c| c.bytes())
        .sum();
    println!(
        "1-byte read at {mid} of a {} MiB object ({:.1} ms): {} backend calls for the object, \
         {obj_bytes} object bytes fetched (bound {}: header {HEADER_LEN} + one sealed chunk \
         {sealed}); ranges {:?}; plus {} metadata calls ({other_bytes} bytes: keyring record)",
        BIG / MIB,
        elapsed.as_secs_f64() * 1e3,
        at_obj.len(),
        HEADER_LEN as u64 + sealed,
        at_obj.iter().map(|c| c.range.clone()).collect::<Vec<_>>(),
        calls.len() - at_obj.len(),
    );
    assert!(
        obj_bytes <= HEADER_LEN as u64 + sealed,
        "fetched {obj_bytes} bytes of the object for a 1-byte read; at most {} allowed",
        HEADER_LEN as u64 + sealed
    );
    assert!(at_obj.iter().all(|c| c.method == Method::Get), "{at_obj:?}");
    assert!(
        calls.iter().filter(|c| !c.at(&loc)).all(|c| c
            .location
            .as_ref()
            .is_some_and(|l| l.as_ref().starts_with(".encrypt-repo/keyring/"))),
        "only the keyring record besides the object: {calls:?}"
    );
    let first = mid / MIB;
    let chunk_start = HEADER_LEN as u64 + first * sealed;
    assert!(
        at_obj
            .iter()
            .any(|c| c.range == Some(GetRange::Bounded(chunk_start..chunk_start + sealed))),
        "the covering chunk is fetched by range: {at_obj:?}"
    );

    // Another byte of the same object: the header is cached (same location and etag), the
    // data key too. Exactly one backend get, for exactly one chunk.
    counting.clear();
    let other = BIG / 4 + 3 * MIB + 777;
    let got = store.get_range(&loc, other..other + 1).await.unwrap();
    assert_eq!(got.as_ref(), &[big_byte(other)]);
    let calls = counting.calls();
    println!(
        "second 1-byte read: {} backend call(s), {} bytes, ranges {:?}",
        calls.len(),
        calls.iter().map(|c| c.bytes()).sum::<u64>(),
        calls.iter().map(|c| c.range.clone()).collect::<Vec<_>>()
    );
    assert_eq!(calls.len(), 1, "exactly one backend call: {calls:?}");
    assert_eq!(calls[0].method, Method::Get);
    assert!(calls[0].at(&loc));
    assert_eq!(calls[0].bytes(), sealed, "one sealed chunk, no header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_puts_generate_one_data_key() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    drop(register_local(raw.clone(), &key_file, Some(CHUNK_64K)).await);
    let (repo, provider) =
        open_counting(raw.clone(), &key_file, RepositoryOptions::default()).await;
    let store = encrypted(raw.clone(), repo);

    let t = Instant::now();
    futures::stream::iter(0..10_000u32)
        .map(|i| {
            let store = &store;
            async move {
                let loc = Path::from(format!("many/{i:05}"));
                store
                    .put(&loc, PutPayload::from(i.to_le_bytes().to_vec()))
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let counts = provider.counts();
    println!(
        "10,000 puts (16 concurrent) in {:.2} s: provider calls {counts:?}",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        counts.generate, 1,
        "one generate_data_key per rotation interval"
    );
    assert_eq!(counts.unwrap, 0);
    assert_eq!(counts.status, 0);
    let ids = store.repository().data_key_ids().await.unwrap();
    assert_eq!(ids.len(), 1, "one keyring record: {ids:?}");

    // Every object names that key.
    let metas: Vec<_> = raw
        .list(Some(&Path::from("many")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(metas.len(), 10_000);
    for m in metas.iter().step_by(97) {
        let bytes = raw_bytes(raw.as_ref(), &m.location).await;
        assert_eq!(Header::parse(&bytes).unwrap().data_key_id, ids[0]);
    }
}

/// Writes `groups` groups of `per_group` objects, forcing a new data key before each group.
async fn write_groups(
    store: &EncryptedStore<InMemory>,
    groups: usize,
    per_group: usize,
) -> Vec<(Path, Vec<u8>)> {
    let mut written = Vec::new();
    for g in 0..groups {
        store.repository().rotate_now().await;
        for i in 0..per_group {
            let loc = Path::from(format!("groups/{g}/{i:03}"));
            let data = pattern((g * 1000 + i) as u64, 100 + 997 * i);
            store
                .put(&loc, PutPayload::from(data.clone()))
                .await
                .unwrap();
            written.push((loc, data));
        }
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_readers_unwrap_once_per_data_key_with_16_concurrent_readers() {
    const GROUPS: usize = 4;
    const PER_GROUP: usize = 40;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    drop(register_local(raw.clone(), &key_file, Some(CHUNK_64K)).await);
    let (repo, writer_provider) =
        open_counting(raw.clone(), &key_file, RepositoryOptions::default()).await;
    let writer = encrypted(raw.clone(), repo);
    let written = write_groups(&writer, GROUPS, PER_GROUP).await;
    assert_eq!(writer_provider.counts().generate, GROUPS as u64);
    assert_eq!(
        writer.repository().data_key_ids().await.unwrap().len(),
        GROUPS
    );

    // A fresh process reads everything, 16 reads at a time, groups interleaved so each data
    // key is wanted by ~4 concurrent readers while its (slow) unwrap is in flight.
    let (repo, provider) =
        open_counting(raw.clone(), &key_file, RepositoryOptions::default()).await;
    provider.set_unwrap_delay(Duration::from_millis(150));
    let reader = encrypted(raw.clone(), repo);
    let order: Vec<_> = (0..PER_GROUP)
        .flat_map(|i| (0..GROUPS).map(move |g| g * PER_GROUP + i))
        .collect();
    let read_all = || {
        futures::stream::iter(order.iter().copied())
            .map(|k| {
                let (loc, data) = &written[k];
                let reader = &reader;
                async move {
                    let got = reader.get(loc).await?.bytes().await?;
                    assert_eq!(got.as_ref(), data.as_slice(), "{loc}");
                    Ok::<_, object_store::Error>(())
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
    };
    read_all().await.unwrap();
    let counts = provider.counts();
    println!(
        "{} cold reads under {GROUPS} data keys, 16 concurrent: provider calls {counts:?}",
        written.len()
    );
    assert_eq!(counts.unwrap, GROUPS as u64, "one unwrap per data key");
    assert_eq!(counts.generate, 0);
    assert_eq!(counts.status, 0);

    // Warm: no more provider calls.
    read_all().await.unwrap();
    assert_eq!(provider.counts().unwrap, GROUPS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_rotate_by_use_count_and_by_age() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    drop(register_local(raw.clone(), &key_file, Some(CHUNK_64K)).await);

    // By use count: keys for objects 1-100, 101-200, 201-250.
    let options = RepositoryOptions {
        cache: CachePolicy {
            max_objects_per_key: 100,
            ..CachePolicy::default()
        },
        ..RepositoryOptions::default()
    };
    let (repo, provider) = open_counting(raw.clone(), &key_file, options).await;
    let store = encrypted(raw.clone(), repo);
    for i in 0..250 {
        store
            .put(&Path::from(format!("r/{i}")), PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }
    assert_eq!(provider.counts().generate, 3, "rotation every 100 objects");
    assert_eq!(store.repository().data_key_ids().await.unwrap().len(), 3);

    // By age.
    let options = RepositoryOptions {
        cache: CachePolicy {
            rotation_interval: Duration::from_secs(1),
            ..CachePolicy::default()
        },
        ..RepositoryOptions::default()
    };
    let (repo, provider) = open_counting(raw.clone(), &key_file, options).await;
    let store = encrypted(raw.clone(), repo);
    let started = tokio::time::Instant::now();
    for name in ["age/1", "age/2"] {
        store
            .put(&Path::from(name), PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }
    // One key for both, unless the machine was so loaded that they were a second apart.
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(provider.counts().generate, 1);
    }
    let generated = provider.counts().generate;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    store
        .put(&Path::from("age/late"), PutPayload::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(provider.counts().generate, generated + 1, "rotation by age");
    assert_eq!(
        store.repository().data_key_ids().await.unwrap().len(),
        3 + generated as usize + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_ask_the_provider_again_after_the_ttl() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    let writer = encrypted(
        raw.clone(),
        register_local(raw.clone(), &key_file, Some(CHUNK_64K)).await,
    );
    let loc = Path::from("ttl/a");
    writer
        .put(&loc, PutPayload::from_static(b"a"))
        .await
        .unwrap();

    let options = RepositoryOptions {
        cache: CachePolicy {
            reader_ttl: Duration::from_secs(1),
            ..CachePolicy::default()
        },
        ..RepositoryOptions::default()
    };
    let (repo, provider) = open_counting(raw.clone(), &key_file, options).await;
    let reader = encrypted(raw.clone(), repo);
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        reader.get(&loc).await.unwrap().bytes().await.unwrap();
    }
    // One unwrap for the five, unless the machine was so loaded that they spanned the TTL.
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(provider.counts().unwrap, 1);
    }
    let unwrapped = provider.counts().unwrap;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    reader.get(&loc).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        provider.counts().unwrap,
        unwrapped + 1,
        "expired key is unwrapped again"
    );
    // flush_caches drops it at once.
    reader.repository().flush_caches().await;
    reader.get(&loc).await.unwrap().bytes().await.unwrap();
    assert_eq!(provider.counts().unwrap, unwrapped + 2);
}

/// Backend parts are cut by bytes, not chunks: with 64 KiB chunks and with the default 1 MiB,
/// fed in pieces of 3 MiB or of irregular sizes (1 byte, odd lengths, more than a part), every
/// part but the last is exactly `DEFAULT_PART_SIZE` (≥ S3's 5 MiB minimum; equal sizes as R2
/// requires), the header included in the first, and the parts concatenate to a valid object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_parts_are_equal_and_at_least_the_s3_minimum() {
    const IRREGULAR: [usize; 7] = [1, 777_777, (3 << 20) + 1, 15, 9 << 20, 1 << 20, 65_535];
    for (chunk, pieces) in [
        (Some(CHUNK_64K), &[3 << 20][..]),
        (None, &[3 << 20][..]),
        (Some(CHUNK_64K), &IRREGULAR[..]),
        (None, &IRREGULAR[..]),
    ] {
        parts_are_equal(chunk, pieces).await;
    }
}

async fn parts_are_equal(chunk: Option<u64>, pieces: &[usize]) {
    use encrypt_repo_store::{DEFAULT_PART_SIZE, MIN_PART_SIZE};
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new())));
    let repo = register_local(counting.clone(), &key_file, chunk).await;
    let store = encrypted(counting.clone(), repo);
    let loc = Path::from("parts/object.bin");
    let total = 3 * DEFAULT_PART_SIZE + 12_345;
    let mut expected = Vec::with_capacity(total);
    let mut up = store.put_multipart(&loc).await.unwrap();
    for (i, &size) in (0u64..).zip(pieces.iter().cycle()) {
        let len = size.min(total - expected.len());
        let piece = pattern(i, len);
        expected.extend_from_slice(&piece);
        up.put_part(PutPayload::from(piece)).await.unwrap();
        if expected.len() == total {
            break;
        }
    }
    up.complete().await.unwrap();
    let parts: Vec<u64> = counting
        .calls()
        .iter()
        .filter(|c| c.method == Method::PutPart && c.at(&loc))
        .map(Call::bytes)
        .collect();
    let what = format!("chunk {chunk:?}, pieces {pieces:?}: backend part sizes {parts:?}");
    assert!(parts.len() >= 4, "{what}");
    let (last, full) = parts.split_last().unwrap();
    assert!(
        full.iter().all(|&p| p == DEFAULT_PART_SIZE as u64),
        "{what}"
    );
    const { assert!(DEFAULT_PART_SIZE >= MIN_PART_SIZE) };
    assert!(*last > 0 && *last <= DEFAULT_PART_SIZE as u64, "{what}");
    let back = store.get(&loc).await.unwrap().bytes().await.unwrap();
    assert!(back == expected, "round trip: {what}");
}

/// The upload holds the last chunk of every part back (by reference) until it knows whether it
/// ends the object: objects that end exactly on a chunk boundary, in one part or many, parts
/// made of several `Bytes`, empty parts, a one-byte object and an empty one all round-trip, and
/// the stored object is exactly as long as the format says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_objects_ending_on_chunk_boundaries_and_odd_part_shapes_round_trip() {
    const C: usize = 1 << 16;
    // (total, part sizes cycled; 0 = an empty part, negative = that size in 3 `Bytes`)
    let cases: &[(usize, &[isize])] = &[
        (0, &[0]),
        (1, &[1]),
        (C, &[C as isize]),
        (4 * C, &[C as isize]),
        (64 * C, &[4 * C as isize]),
        (64 * C, &[-(4 * C as isize), 0]),
        (96 * C, &[(5 << 20) + 96, C as isize - 96]),
        (80 * C + 1, &[-(3 * C as isize + 7), 1, 0, C as isize]),
        (2 * C, &[1, (C - 2) as isize, 1, C as isize]),
    ];
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let raw = Arc::new(InMemory::new());
    let repo = register_local(raw.clone(), &key_file, Some(CHUNK_64K)).await;
    let store = encrypted(raw.clone(), repo);
    for (n, &(total, shape)) in cases.iter().enumerate() {
        let loc = Path::from(format!("aligned/{n}"));
        let data = pattern(n as u64, total);
        let mut up = store.put_multipart(&loc).await.unwrap();
        let (mut at, mut sizes) = (0, shape.iter().cycle());
        loop {
            let size = *sizes.next().unwrap();
            let len = size.unsigned_abs().min(total - at);
            let piece = &data[at..at + len];
            let payload = if size < 0 {
                let (a, b) = piece.split_at(len / 3);
                let (b, c) = b.split_at(b.len() / 2);
                PutPayload::from_iter([a, b, c].map(bytes::Bytes::copy_from_slice))
            } else {
                PutPayload::from(piece.to_vec())
            };
            up.put_part(payload).await.unwrap();
            at += len;
            if at == total {
                break;
            }
        }
        up.complete().await.unwrap();
        let stored = raw.head(&loc).await.unwrap().size;
        let want = (HEADER_LEN + total + total.div_ceil(C).max(1) * 16) as u64;
        assert_eq!(stored, want, "case {n}: stored length");
        let back = store.get(&loc).await.unwrap().bytes().await.unwrap();
        assert!(
            back == data,
            "case {n}: round trip of {total} bytes in {shape:?}"
        );
    }
}

/// A local file is read ahead in pieces of whole sealed chunks (the header with the first) and
/// the last chunk of each piece is held back by reference until the next piece shows it is not
/// final: whole objects and ranges (from the start, across chunk boundaries, to the end,
/// offsets and suffixes) come back exact, objects ending on a chunk boundary included, and a
/// flipped byte in any chunk (the last one too) fails the read with no plaintext after the
/// last verified chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_reads_in_whole_chunk_pieces_are_exact_and_stop_at_a_tampered_chunk() {
    const C: usize = 1 << 16;
    const S: usize = C + 16;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("master.key");
    let root = tempfile::tempdir().unwrap();
    let raw = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let store = encrypted(
        raw.clone(),
        register_local(raw.clone(), &key_file, Some(CHUNK_64K)).await,
    );
    for (n, len) in [1, C, 7 * C, 40 * C + 5].into_iter().enumerate() {
        let loc = Path::from(format!("local/{n}"));
        let data = pattern(n as u64, len);
        store
            .put(&loc, PutPayload::from(data.clone()))
            .await
            .unwrap();
        let all = store.get(&loc).await.unwrap().bytes().await.unwrap();
        assert!(all == data, "whole object of {len}");
        let ranges = [
            GetRange::Bounded(0..1),
            GetRange::Bounded((C - 1).min(len - 1) as u64..(C + 1).min(len) as u64),
            GetRange::Bounded((len / 3) as u64..len as u64),
            GetRange::Offset((2 * C).min(len - 1) as u64),
            GetRange::Suffix((3 * C + 2).min(len) as u64),
        ];
        for range in ranges {
            let want = match &range {
                GetRange::Bounded(r) => &data[r.start as usize..r.end as usize],
                GetRange::Offset(o) => &data[*o as usize..],
                GetRange::Suffix(k) => &data[len - *k as usize..],
            };
            let opts = object_store::GetOptions {
                range: Some(range.clone()),
                ..Default::default()
            };
            let got = store
                .get_opts(&loc, opts)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert!(got == want, "{len} bytes, range {range:?}");
        }
        // Flip one byte in chunk k, for the first, a middle and the last chunk.
        let chunks = len.div_ceil(C);
        let file = root.path().join("local").join(n.to_string());
        let pristine = std::fs::read(&file).unwrap();
        for k in [0, chunks / 2, chunks - 1] {
            let mut bad = pristine.clone();
            bad[HEADER_LEN + k * S + 3] ^= 1;
            std::fs::write(&file, &bad).unwrap();
            let mut stream = store.get(&loc).await.unwrap().into_stream();
            let mut released = 0;
            let mut failed = false;
            while let Some(piece) = stream.next().await {
                match piece {
                    Ok(b) => released += b.len(),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            assert!(failed, "{len} bytes, chunk {k} flipped: the read must fail");
            assert!(
                released <= k * C,
                "{len} bytes, chunk {k} flipped: {released} released"
            );
        }
        std::fs::write(&file, &pristine).unwrap();
    }
}

/// InMemory hands a whole object to the reader as one `Bytes`: the plaintext still comes out in
/// pieces of at most one batch (batch_chunks × chunk), so the first byte does not wait for the
/// whole object and no buffer grows to its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_object_in_one_backend_piece_is_decrypted_one_batch_at_a_time() {
    let keys = tempfile::tempdir().unwrap();
    let raw = Arc::new(InMemory::new());
    let store = encrypted(
        raw.clone(),
        register_local(raw.clone(), &keys.path().join("master.key"), None).await,
    );
    let chunk = store.repository().chunk_size().bytes();
    let batch = encrypt_repo_store::StoreConfig::default().batch_chunks * chunk;
    let size = 4 * batch + 12345;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let loc = Path::from("one-piece");
    store.put(&loc, data.clone().into()).await.unwrap();
    // The backend does hand it over in one piece.
    let pieces: Vec<_> = raw
        .get(&loc)
        .await
        .unwrap()
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(pieces.len(), 1);

    let pieces: Vec<bytes::Bytes> = store
        .get(&loc)
        .await
        .unwrap()
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert!(pieces.len() >= 4, "{} pieces", pieces.len());
    for p in &pieces {
        assert!(
            p.len() <= batch,
            "a piece of {} bytes (batch {batch})",
            p.len()
        );
    }
    assert!(pieces.concat() == data);
}
