//! Put and get through `EncryptedStore` against the same store unencrypted, in the same run
//! (issue 3's targets: LocalFileSystem encrypted ≥ 0.85 × unencrypted for put and for get).
//!
//! `cargo bench --bench store`; `ENCRYPT_REPO_BENCH_MIB=1024` (the default) sets the object size.
//! `python3 benches/store_report.py` prints the ratios from criterion's estimates
//! (results of a run are in benches/results/store.md).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use encrypt_repo::keys::ProviderRegistry;
use encrypt_repo::store::{
    CryptoSettings, EncryptedStore, RegistrationRequest, Repository, RepositoryOptions,
};
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

const PART: usize = 16 << 20;

fn size() -> usize {
    std::env::var("ENCRYPT_REPO_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
        << 20
}

async fn encrypted<S: ObjectStore>(inner: Arc<S>, key_dir: &std::path::Path) -> EncryptedStore<S> {
    let request = RegistrationRequest {
        store_type: "bench".into(),
        settings: Default::default(),
        encrypted: true,
        crypto_settings: Some(CryptoSettings {
            key_provider_name: "bench".into(),
            key_provider_type: "local".into(),
            settings: [(
                "key_file".to_owned(),
                key_dir.join("master.key").to_string_lossy().into_owned(),
            )]
            .into(),
        }),
        chunk_size: None,
        escrow: Vec::new(),
        path_binding: None,
    };
    let reg = Repository::register(
        inner.clone(),
        request,
        &ProviderRegistry::with_builtin(),
        RepositoryOptions::default(),
    )
    .await
    .expect("register");
    EncryptedStore::new(inner, Arc::new(reg.repository))
}

async fn put(store: &dyn ObjectStore, path: &Path, data: &Bytes) {
    let upload = store.put_multipart(path).await.expect("multipart");
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
    for piece in data.chunks(PART) {
        w.wait_for_capacity(4).await.expect("capacity");
        w.put(data.slice_ref(piece));
    }
    w.finish().await.expect("finish");
}

async fn get(store: &dyn ObjectStore, path: &Path) -> usize {
    let mut s = store.get(path).await.expect("get").into_stream();
    let mut n = 0;
    while let Some(b) = s.next().await {
        n += b.expect("chunk").len();
    }
    n
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let n = size();
    let mut data = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut data).expect("random");
    let data = Bytes::from(data);
    let keys = tempfile::tempdir().expect("tempdir");
    let dir_plain = tempfile::tempdir_in(".").expect("tempdir");
    let dir_enc = tempfile::tempdir_in(".").expect("tempdir");

    let local_plain: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir_plain.path()).expect("fs"));
    let local_raw = Arc::new(LocalFileSystem::new_with_prefix(dir_enc.path()).expect("fs"));
    let local_enc: Arc<dyn ObjectStore> = Arc::new(rt.block_on(encrypted(local_raw, keys.path())));
    let mem_plain: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mem_enc: Arc<dyn ObjectStore> =
        Arc::new(rt.block_on(encrypted(Arc::new(InMemory::new()), keys.path())));

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Bytes(n as u64));
    // Each iteration moves 1 GiB: flat sampling keeps it to `sample_size` iterations per case.
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.warm_up_time(Duration::from_secs(2));
    let path = Path::from("bench/object");
    for (name, store) in [
        ("local-plain", &local_plain),
        ("local-encrypted", &local_enc),
        ("memory-plain", &mem_plain),
        ("memory-encrypted", &mem_enc),
    ] {
        g.bench_function(BenchmarkId::new("put", name), |b| {
            b.iter(|| rt.block_on(put(store.as_ref(), &path, &data)))
        });
        rt.block_on(put(store.as_ref(), &path, &data));
        g.bench_function(BenchmarkId::new("get", name), |b| {
            b.iter(|| assert_eq!(rt.block_on(get(store.as_ref(), &path)), n));
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
