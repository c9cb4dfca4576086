//! Peak-memory probe: streams a generated object of `MIB` MiB (default 4096) through
//! `EncryptedStore` over LocalFileSystem — multipart put, then a streaming get — without ever
//! holding the object in memory. Run under `/usr/bin/time -v` and read "Maximum resident set size":
//!
//! ```sh
//! cargo build --release -p encrypt-repo-store --example memory
//! /usr/bin/time -v target/release/examples/memory 4096 /path/on/a/big/disk
//! ```
//!
//! With `ENCRYPT_REPO_PROBE_PLAIN=1` the same run goes to the LocalFileSystem directly: the
//! unencrypted baseline for both memory and throughput.

use std::sync::Arc;

use bytes::Bytes;
use encrypt_repo_keys::ProviderRegistry;
use encrypt_repo_store::{
    CryptoSettings, EncryptedStore, RegistrationRequest, Repository, RepositoryOptions,
};
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

/// Plaintext handed to the store per call, as a backup job reading a file would.
const PIECE: usize = 8 << 20;
/// Part uploads in flight at once.
const CONCURRENCY: usize = 4;

fn piece(i: u64) -> Bytes {
    // Cheap, deterministic, incompressible enough: a counter pattern per piece.
    let mut v = vec![0u8; PIECE];
    for (j, w) in v.chunks_mut(8).enumerate() {
        w.copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ j as u64).to_le_bytes());
    }
    Bytes::from(v)
}

/// The process's peak resident set so far (`VmHWM`), in KiB; 0 where /proc is missing.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).map_or(Ok(4096), |s| s.parse())?;
    let base = args
        .get(2)
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let dir = tempfile::tempdir_in(base)?;
    let keys = tempfile::tempdir()?;
    let raw = Arc::new(LocalFileSystem::new_with_prefix(dir.path())?);
    let request = RegistrationRequest {
        store_type: "fs".into(),
        settings: Default::default(),
        encrypted: true,
        crypto_settings: Some(CryptoSettings {
            key_provider_name: "probe".into(),
            key_provider_type: "local".into(),
            settings: [(
                "key_file".to_owned(),
                keys.path().join("k").to_string_lossy().into_owned(),
            )]
            .into(),
        }),
        chunk_size: None,
        escrow: Vec::new(),
        path_binding: None,
    };
    let repo = Repository::register(
        raw.clone(),
        request,
        &ProviderRegistry::with_builtin(),
        RepositoryOptions::default(),
    )
    .await?;
    let store: Arc<dyn ObjectStore> = if std::env::var_os("ENCRYPT_REPO_PROBE_PLAIN").is_some() {
        raw
    } else {
        Arc::new(EncryptedStore::new(raw, Arc::new(repo.repository)))
    };
    let path = Path::from("probe/object");
    let pieces = mib * (1 << 20) / PIECE as u64;

    let t = std::time::Instant::now();
    let mut w = WriteMultipart::new_with_chunk_size(store.put_multipart(&path).await?, PIECE);
    for i in 0..pieces {
        w.wait_for_capacity(CONCURRENCY).await?;
        w.put(piece(i));
    }
    w.finish().await?;
    let put_s = t.elapsed().as_secs_f64();
    let put_peak = peak_rss_kib();

    let t = std::time::Instant::now();
    let mut s = store.get(&path).await?.into_stream();
    let (mut n, mut i, mut at) = (0u64, 0u64, 0usize);
    let mut expected = piece(0);
    while let Some(b) = s.next().await {
        let b = b?;
        // Verify content as it streams, without keeping it.
        let mut rest = &b[..];
        while !rest.is_empty() {
            let take = (PIECE - at).min(rest.len());
            assert_eq!(
                &rest[..take],
                &expected[at..at + take],
                "content differs at piece {i}"
            );
            rest = &rest[take..];
            at += take;
            if at == PIECE {
                (i, at) = (i + 1, 0);
                expected = piece(i);
            }
        }
        n += b.len() as u64;
    }
    let get_s = t.elapsed().as_secs_f64();
    assert_eq!(n, pieces * PIECE as u64);
    println!(
        "object {mib} MiB: put {:.0} MiB/s, get {:.0} MiB/s; peak RSS after put {} KiB, after get {} KiB",
        mib as f64 / put_s,
        mib as f64 / get_s,
        put_peak,
        peak_rss_kib()
    );
    Ok(())
}
