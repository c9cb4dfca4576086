//! `encrypt-repo bench`: the benchmark harness users run on their own machines.
//!
//! Every figure is measured next to its baseline in the same run, in alternation (baseline,
//! measured, baseline, measured, …), and reported as the median of the rounds together with
//! the ratio of the two medians, so a noisy machine moves both sides alike:
//!
//! | figure | baseline |
//! |---|---|
//! | format seal/open, one thread | raw aws-lc-rs AES-256-GCM over the same chunks, one thread |
//! | format seal/open, all threads | raw AES-256-GCM on all threads, and the format on one thread |
//! | `EncryptedStore` put/get over InMemory and a local directory | the same store unencrypted |
//! | time to the first byte of a get | the same get unencrypted |
//! | a 1-byte range read (latency, backend requests and bytes) | the same read unencrypted |
//! | peak resident memory of a local put and get | the same put and get unencrypted |
//! | a local put and 4 KiB puts with fsync (as the CLI writes local repositories) | the same without fsync |
//!
//! Crypto figures work in place on a buffer of `--crypto-size` bytes (64 MiB by default) and
//! repeat each pass until it has run for a quarter of a second. Store figures move `--size` bytes
//! (1 GiB by default) through `WriteMultipart` from one random 4 MiB piece (as `put` reads files), with `--concurrency`
//! parts in flight. Peak memory is the kernel's high-water mark of this process (VmHWM), reset
//! through `/proc/self/clear_refs` before each operation, so it includes the 4 MiB source piece.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use bytes::Bytes;
use encrypt_repo::format::{
    ChunkSize, DataKey, DataKeyId, ObjectContext, ObjectOpener, ObjectSealer, RepositoryId,
    extend_sealed_layout,
};
use encrypt_repo::keys::ProviderRegistry;
use encrypt_repo::store::{
    CryptoSettings, EncryptedStore, RegistrationRequest, Repository, RepositoryOptions, StoreConfig,
};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt as _, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    WriteMultipart,
};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::app::args;
use crate::app::exit::Usage;
use crate::app::output::{Output, human_bytes};

const MIB: f64 = (1 << 20) as f64;
/// The piece `WriteMultipart` is fed with, repeated until `--size` bytes were written: the
/// size `encrypt-repo put` reads a file in.
const PIECE: usize = crate::app::commands::PIECE;
/// Each crypto sample runs passes over the buffer until it has been timed this long.
const CRYPTO_SAMPLE: Duration = Duration::from_millis(250);
/// 1-byte range reads per round.
const RANGE_READS: usize = 32;
/// The object every store figure writes and reads.
const OBJECT: &str = "bench/object";

/// One figure of the report.
#[derive(Debug, Clone)]
struct Figure {
    group: &'static str,
    name: String,
    /// Median over the rounds.
    value: f64,
    unit: &'static str,
    /// The figure this one is compared with and its value; the ratio is value ÷ baseline (for
    /// latencies and memory, above 1 means slower or larger).
    baseline: Option<(String, f64)>,
    /// What the ratio should be (`≥ x` for throughputs, `≤ x` for memory).
    target: Option<&'static str>,
}

impl Figure {
    fn ratio(&self) -> Option<f64> {
        self.baseline.as_ref().map(|(_, b)| self.value / b)
    }
}

/// The report under construction: figures and the progress shown meanwhile.
struct Report {
    figures: Vec<Figure>,
    progress: crate::app::output::Progress,
}

impl Report {
    fn add(&mut self, f: Figure) {
        self.figures.push(f);
    }

    fn step(&self, what: &str) {
        self.progress.step(what);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB / d.as_secs_f64().max(1e-9)
}

// ----- crypto ----------------------------------------------------------------------------------

fn nonce(i: usize) -> Nonce {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&(i as u32).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Raw AES-256-GCM over `chunk`-sized pieces of `buf`, in place, tags into `tags`.
fn raw_seal(key: &LessSafeKey, chunk: usize, buf: &mut [u8], tags: &mut [[u8; 16]], par: bool) {
    let one = |(i, (c, t)): (usize, (&mut [u8], &mut [u8; 16]))| {
        if let Ok(tag) = key.seal_in_place_separate_tag(nonce(i), Aad::empty(), c) {
            t.copy_from_slice(tag.as_ref());
        }
    };
    if par {
        buf.par_chunks_mut(chunk)
            .zip(tags.par_iter_mut())
            .enumerate()
            .for_each(one);
    } else {
        buf.chunks_mut(chunk)
            .zip(tags.iter_mut())
            .enumerate()
            .for_each(one);
    }
}

/// Raw AES-256-GCM open in place of `ciphertext ‖ tag` pieces at stride `chunk + 16`.
fn raw_open(key: &LessSafeKey, chunk: usize, buf: &mut [u8], par: bool) -> bool {
    let one = |(i, c): (usize, &mut [u8])| key.open_in_place(nonce(i), Aad::empty(), c).is_ok();
    if par {
        buf.par_chunks_mut(chunk + 16).enumerate().all(one)
    } else {
        buf.chunks_mut(chunk + 16).enumerate().all(one)
    }
}

/// Times `work` over passes of `buf`, restoring it from `from` (untimed) before each pass when
/// given, until [`CRYPTO_SAMPLE`] has been timed; MiB/s of `bytes` per pass.
fn crypto_sample(
    bytes: usize,
    buf: &mut [u8],
    from: Option<&[u8]>,
    mut work: impl FnMut(&mut [u8]) -> bool,
) -> Result<f64> {
    let mut timed = Duration::ZERO;
    let mut passes = 0usize;
    while timed < CRYPTO_SAMPLE {
        if let Some(from) = from {
            buf.copy_from_slice(from);
        }
        let start = Instant::now();
        let ok = work(std::hint::black_box(&mut *buf));
        timed += start.elapsed();
        if !ok {
            bail!("a benchmark pass failed to authenticate its own ciphertext");
        }
        passes += 1;
    }
    Ok(mib_per_s(bytes * passes, timed))
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("bench-{threads}t-{i}"))
        .build()
        .context("starting a rayon pool")
}

/// Seal and open, raw and format, on one thread and on all threads.
fn crypto(a: &args::Bench, chunk: ChunkSize, report: &mut Report) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let (one, all) = (pool(1)?, pool(threads)?);
    let n = a.crypto_size as usize;
    let c = chunk.bytes();
    let mut plaintext = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut plaintext).map_err(|_| anyhow::anyhow!("random bytes"))?;
    let mut key_bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key_bytes).map_err(|_| anyhow::anyhow!("random bytes"))?;
    let raw = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &key_bytes).map_err(|_| anyhow::anyhow!("AES key"))?,
    );
    let data_key = DataKey::from_bytes(key_bytes);
    let ctx = ObjectContext::bound(RepositoryId([1; 16]), OBJECT);
    let sealer = ObjectSealer::new(&data_key, DataKeyId([2; 16]), &ctx, chunk)?;
    let opener = ObjectOpener::new(sealer.header_bytes(), &data_key, &ctx)?;

    // Raw: plaintext buffer + tag array; sealed copy as ciphertext ‖ tag chunks for opening.
    let mut raw_buf = plaintext.clone();
    let mut tags = vec![[0u8; 16]; n.div_ceil(c)];
    let mut raw_sealed = plaintext.clone();
    raw_seal(&raw, c, &mut raw_sealed, &mut tags, false);
    let raw_joined: Vec<u8> = raw_sealed
        .chunks(c)
        .zip(&tags)
        .flat_map(|(ct, t)| ct.iter().chain(t.iter()).copied())
        .collect();
    drop(raw_sealed);
    let mut raw_open_buf = raw_joined.clone();
    // Format: its own layout (chunk ‖ tag space at stride C + 16), sealed in place.
    let mut laid_out = Vec::with_capacity(n + n.div_ceil(c) * 16);
    extend_sealed_layout(&mut laid_out, chunk, &plaintext);
    let mut format_sealed = laid_out.clone();
    sealer.seal_chunks_in_place(0, &mut format_sealed, true)?;
    let mut format_open_buf = format_sealed.clone();
    drop(plaintext);

    let names = [
        ("raw-seal-1t", "format-seal-1t"),
        ("raw-seal-all", "format-seal-all"),
        ("raw-open-1t", "format-open-1t"),
        ("raw-open-all", "format-open-all"),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); 8];
    for round in 0..a.rounds {
        report.step(&format!("crypto, round {}/{}", round + 1, a.rounds));
        for (i, (p, par)) in [(&one, false), (&all, true)].into_iter().enumerate() {
            let s = p.install(|| {
                crypto_sample(n, &mut raw_buf, None, |b| {
                    raw_seal(&raw, c, b, &mut tags, par);
                    true
                })
            })?;
            samples[2 * i].push(s);
            let s = p.install(|| {
                crypto_sample(n, &mut laid_out, None, |b| {
                    sealer.seal_chunks_in_place(0, b, true).is_ok()
                })
            })?;
            samples[2 * i + 1].push(s);
            let s = p.install(|| {
                crypto_sample(n, &mut raw_open_buf, Some(&raw_joined), |b| {
                    raw_open(&raw, c, b, par)
                })
            })?;
            samples[4 + 2 * i].push(s);
            let s = p.install(|| {
                crypto_sample(n, &mut format_open_buf, Some(&format_sealed), |b| {
                    opener.open_chunks_in_place(0, b, true).is_ok()
                })
            })?;
            samples[4 + 2 * i + 1].push(s);
        }
    }
    // Medians in the order of `names`, flattened: raw 1t, format 1t, raw all, format all (seal),
    // then the same for open.
    let m: Vec<f64> = samples.into_iter().map(median).collect();
    let figure = |name: String, value: f64, baseline: Option<(&str, f64)>, target| Figure {
        group: "crypto",
        name,
        value,
        unit: "MiB/s",
        baseline: baseline.map(|(n, v)| (n.to_owned(), v)),
        target,
    };
    for (k, pair) in names.chunks_exact(2).enumerate() {
        let [(raw_1t, format_1t), (raw_all, format_all)] = [pair[0], pair[1]];
        let [r1, f1, ra, fa] = [m[4 * k], m[4 * k + 1], m[4 * k + 2], m[4 * k + 3]];
        report.add(figure(raw_1t.into(), r1, None, None));
        report.add(figure(
            format_1t.into(),
            f1,
            Some((raw_1t, r1)),
            Some("≥ 0.90"),
        ));
        // The raw all-thread figure's ratio is raw scaling: what the machine itself allows.
        report.add(figure(raw_all.into(), ra, Some((raw_1t, r1)), None));
        report.add(figure(
            format_all.into(),
            fa,
            Some((raw_all, ra)),
            Some("≥ 0.90"),
        ));
        let scaling = if threads >= 2 { "≥ 1.7" } else { "—" };
        report.add(figure(
            format!("{format_all} scaling"),
            fa,
            Some((format_1t, f1)),
            Some(scaling),
        ));
    }
    Ok(())
}

// ----- store -----------------------------------------------------------------------------------

/// Counts requests and bytes a store's reads fetch from its backend.
#[derive(Debug)]
struct Counting<S> {
    inner: Arc<S>,
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl<S> Counting<S> {
    fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            requests: Arc::default(),
            bytes: Arc::default(),
        }
    }

    fn take(&self) -> (u64, u64) {
        (
            self.requests.swap(0, Ordering::Relaxed),
            self.bytes.swap(0, Ordering::Relaxed),
        )
    }
}

impl<S> std::fmt::Display for Counting<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counting")
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for Counting<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.get_opts(location, options).await?;
        // The bytes the backend was asked for; over a local disk the reader takes them from
        // the file itself rather than from a stream, so the range is what is counted.
        if !head {
            self.bytes
                .fetch_add(r.range.end - r.range.start, Ordering::Relaxed);
        }
        Ok(r)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.requests
            .fetch_add(ranges.len() as u64, Ordering::Relaxed);
        let out = self.inner.get_ranges(location, ranges).await?;
        let n: usize = out.iter().map(Bytes::len).sum();
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

async fn encrypted<S: ObjectStore>(
    inner: Arc<S>,
    key_dir: &std::path::Path,
    chunk: ChunkSize,
    part_size: usize,
) -> Result<EncryptedStore<S>> {
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
        chunk_size: Some(chunk.bytes() as u64),
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
    .context("registering the benchmark repository")?;
    let config = StoreConfig {
        part_size,
        ..StoreConfig::default()
    };
    Ok(EncryptedStore::with_config(
        inner,
        Arc::new(reg.repository),
        config,
    ))
}

/// Writes `size` bytes (`piece` repeated) to `path` through `WriteMultipart`, `concurrency`
/// parts in flight.
async fn put(
    store: &dyn ObjectStore,
    path: &Path,
    size: u64,
    piece: &Bytes,
    concurrency: usize,
) -> Result<()> {
    let upload = store.put_multipart(path).await?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, piece.len());
    let mut left = size;
    while left > 0 {
        let n = left.min(piece.len() as u64) as usize;
        w.wait_for_capacity(concurrency).await?;
        w.put(piece.slice(..n));
        left -= n as u64;
    }
    w.finish().await?;
    Ok(())
}

/// Reads the whole object; returns (bytes, time to the first byte).
async fn get(store: &dyn ObjectStore) -> Result<(u64, Duration)> {
    let start = Instant::now();
    let mut s = store.get(&Path::from(OBJECT)).await?.into_stream();
    let mut n = 0u64;
    let mut first = None;
    while let Some(b) = s.next().await {
        n += b?.len() as u64;
        first.get_or_insert_with(|| start.elapsed());
    }
    Ok((n, first.unwrap_or_default()))
}

/// The peak resident memory since the last [`reset_peak`], in bytes (Linux; `None` elsewhere).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// Resets the kernel's high-water mark of this process to its current resident size.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// One store pair (unencrypted, encrypted) over the same kind of backend.
struct Pair<'a> {
    label: &'static str,
    plain: &'a dyn ObjectStore,
    enc: &'a dyn ObjectStore,
}

#[derive(Default)]
struct PairSamples {
    put: [Vec<f64>; 2],
    get: [Vec<f64>; 2],
    ttfb: [Vec<f64>; 2],
    put_peak: [Vec<f64>; 2],
    get_peak: [Vec<f64>; 2],
}

async fn store_pair(
    a: &args::Bench,
    pair: &Pair<'_>,
    piece: &Bytes,
    report: &mut Report,
) -> Result<()> {
    let mut s = PairSamples::default();
    let track_memory = pair.label == "local" && reset_peak();
    for round in 0..a.rounds {
        for (i, store) in [pair.plain, pair.enc].into_iter().enumerate() {
            let which = if i == 0 { "unencrypted" } else { "encrypted" };
            report.step(&format!(
                "{} put {which}, round {}/{}",
                pair.label,
                round + 1,
                a.rounds
            ));
            reset_peak();
            let start = Instant::now();
            put(store, &Path::from(OBJECT), a.size, piece, a.concurrency).await?;
            s.put[i].push(mib_per_s(a.size as usize, start.elapsed()));
            if track_memory {
                s.put_peak[i].push(peak_rss().unwrap_or(0) as f64 / MIB);
            }
            report.step(&format!(
                "{} get {which}, round {}/{}",
                pair.label,
                round + 1,
                a.rounds
            ));
            reset_peak();
            let start = Instant::now();
            let (n, first) = get(store).await?;
            if n != a.size {
                bail!(
                    "{} get {which} returned {n} bytes, not {}",
                    pair.label,
                    a.size
                );
            }
            s.get[i].push(mib_per_s(a.size as usize, start.elapsed()));
            s.ttfb[i].push(first.as_secs_f64() * 1e3);
            if track_memory {
                s.get_peak[i].push(peak_rss().unwrap_or(0) as f64 / MIB);
            }
        }
    }
    let group = if pair.label == "local" {
        "local"
    } else {
        "memory"
    };
    let mut pairs = vec![
        ("put", s.put, "MiB/s", Some("≥ 0.85")),
        ("get", s.get, "MiB/s", Some("≥ 0.85")),
        ("time to first byte", s.ttfb, "ms", None),
    ];
    if track_memory {
        pairs.push(("put peak memory", s.put_peak, "MiB", Some("≤ 64 MiB")));
        pairs.push(("get peak memory", s.get_peak, "MiB", Some("≤ 64 MiB")));
    }
    for (what, [plain, enc], unit, target) in pairs {
        let base_name = format!("{} {what} unencrypted", pair.label);
        let base = median(plain);
        report.add(Figure {
            group,
            name: base_name.clone(),
            value: base,
            unit,
            baseline: None,
            target: None,
        });
        // InMemory's unencrypted get hands out the stored `Bytes` without touching them: no
        // ratio means anything there.
        let comparable = pair.label == "local" || what == "put";
        report.add(Figure {
            group,
            name: format!("{} {what} encrypted", pair.label),
            value: median(enc),
            unit,
            baseline: comparable.then_some((base_name, base)),
            // InMemory's unencrypted put and get only move references: no target there.
            target: if pair.label == "local" { target } else { None },
        });
    }
    Ok(())
}

/// Small objects per round of the fsync figures (each is one put, as a keyring record, a
/// manifest or a small file of a backup is).
const SMALL_PUTS: usize = 32;
/// Bytes per small object.
const SMALL_SIZE: usize = 4096;

/// What durability costs on a local directory: the encrypted put of `--size` bytes and
/// [`SMALL_PUTS`] puts of [`SMALL_SIZE`] bytes, each with fsync (file before its rename into
/// place, directory after, as the CLI opens local repositories) against the same without.
async fn fsync_cost(
    a: &args::Bench,
    work: &std::path::Path,
    keys: &std::path::Path,
    chunk: ChunkSize,
    piece: &Bytes,
    report: &mut Report,
) -> Result<()> {
    let (plain_dir, synced_dir) = (work.join("no-fsync"), work.join("fsync"));
    for d in [&plain_dir, &synced_dir] {
        std::fs::create_dir_all(d)?;
    }
    let part = a.part_size as usize;
    let stores = [
        encrypted(
            Arc::new(LocalFileSystem::new_with_prefix(&plain_dir)?),
            keys,
            chunk,
            part,
        )
        .await?,
        encrypted(
            Arc::new(crate::app::open::durable_local(&synced_dir)?),
            keys,
            chunk,
            part,
        )
        .await?,
    ];
    let small = random_piece(SMALL_SIZE)?;
    let mut big: [Vec<f64>; 2] = Default::default();
    let mut many: [Vec<f64>; 2] = Default::default();
    for round in 0..a.rounds {
        for (i, store) in stores.iter().enumerate() {
            let which = if i == 0 { "without" } else { "with" };
            report.step(&format!(
                "local put {which} fsync, round {}/{}",
                round + 1,
                a.rounds
            ));
            let start = Instant::now();
            put(store, &Path::from(OBJECT), a.size, piece, a.concurrency).await?;
            big[i].push(mib_per_s(a.size as usize, start.elapsed()));
            let start = Instant::now();
            for n in 0..SMALL_PUTS {
                store
                    .put(
                        &Path::from(format!("bench/small/{n}")),
                        small.clone().into(),
                    )
                    .await?;
            }
            many[i].push(SMALL_PUTS as f64 / start.elapsed().as_secs_f64().max(1e-9));
        }
    }
    let rows = [
        ("local put encrypted", big, "MiB/s"),
        ("local 4 KiB puts encrypted", many, "objects/s"),
    ];
    for (what, [plain, synced], unit) in rows {
        let base_name = format!("{what}, no fsync");
        let base = median(plain);
        report.add(Figure {
            group: "durability",
            name: base_name.clone(),
            value: base,
            unit,
            baseline: None,
            target: None,
        });
        report.add(Figure {
            group: "durability",
            name: format!("{what}, fsync"),
            value: median(synced),
            unit,
            baseline: Some((base_name, base)),
            target: None,
        });
    }
    Ok(())
}

/// 1-byte range reads at random offsets: latency, backend requests and bytes per read, with the
/// header not yet cached (a fresh store per read) and cached.
async fn range_reads(
    a: &args::Bench,
    dir: &std::path::Path,
    key_dir: &std::path::Path,
    chunk: ChunkSize,
    report: &mut Report,
) -> Result<()> {
    let backend = Arc::new(LocalFileSystem::new_with_prefix(dir)?);
    let counting = Arc::new(Counting::new(backend.clone()));
    let registry = ProviderRegistry::with_builtin();
    let access = [(
        "key_file".to_owned(),
        key_dir.join("master.key").to_string_lossy().into_owned(),
    )]
    .into();
    let open = || async {
        let repo = Repository::open(
            counting.clone(),
            &registry,
            &access,
            RepositoryOptions::default(),
        )
        .await
        .context("opening the benchmark repository")?;
        anyhow::Ok(EncryptedStore::new(counting.clone(), Arc::new(repo)))
    };
    let plain_counting = Counting::new(backend);
    let mut offsets = vec![0u8; RANGE_READS * 8];
    aws_lc_rs::rand::fill(&mut offsets).map_err(|_| anyhow::anyhow!("random bytes"))?;
    let offsets: Vec<u64> = offsets
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) % a.size)
        .collect();
    let enc_object = Path::from("bench/range-object");
    let plain_object = Path::from("bench/range-plain");
    // The objects the reads hit: written once, outside the timed part.
    {
        let store = open().await?;
        let piece = random_piece(PIECE.min(a.size as usize))?;
        put(&store, &enc_object, a.size, &piece, a.concurrency).await?;
        put(
            &plain_counting,
            &plain_object,
            a.size,
            &piece,
            a.concurrency,
        )
        .await?;
        counting.take();
        plain_counting.take();
    }
    let mut lat: [Vec<f64>; 3] = Default::default();
    let mut reqs: [Vec<f64>; 3] = Default::default();
    let mut bytes: [Vec<f64>; 3] = Default::default();
    let warm = open().await?;
    warm.get_range(&enc_object, 0..1).await?;
    counting.take();
    for round in 0..a.rounds {
        report.step(&format!(
            "1-byte range reads, round {}/{}",
            round + 1,
            a.rounds
        ));
        for &off in &offsets {
            let r = off..off + 1;
            // Unencrypted.
            let start = Instant::now();
            let b = plain_counting.get_range(&plain_object, r.clone()).await?;
            lat[0].push(start.elapsed().as_secs_f64() * 1e3);
            let (q, n) = plain_counting.take();
            reqs[0].push(q as f64);
            bytes[0].push(n as f64);
            // Encrypted, header cached.
            let start = Instant::now();
            let e = warm.get_range(&enc_object, r.clone()).await?;
            lat[2].push(start.elapsed().as_secs_f64() * 1e3);
            let (q, n) = counting.take();
            reqs[2].push(q as f64);
            bytes[2].push(n as f64);
            if b.len() != 1 || e.len() != 1 {
                bail!(
                    "a 1-byte range read returned {} and {} bytes",
                    b.len(),
                    e.len()
                );
            }
            // Encrypted, header not cached: a new store over the same repository (its data-key
            // cache already holds the key, so only the object is read).
            let cold = EncryptedStore::new(counting.clone(), warm.repository().clone());
            counting.take();
            let start = Instant::now();
            cold.get_range(&enc_object, r).await?;
            lat[1].push(start.elapsed().as_secs_f64() * 1e3);
            let (q, n) = counting.take();
            reqs[1].push(q as f64);
            bytes[1].push(n as f64);
        }
    }
    let names = [
        "unencrypted",
        "encrypted, header not cached",
        "encrypted, header cached",
    ];
    let sealed_chunk = chunk.sealed_bytes() as f64;
    let header = encrypt_repo::format::HEADER_LEN as f64;
    for (i, name) in names.into_iter().enumerate() {
        let base = (i > 0).then(|| ("1-byte read unencrypted".to_owned(), median(lat[0].clone())));
        report.add(Figure {
            group: "range",
            name: format!("1-byte read {name}"),
            value: median(lat[i].clone()),
            unit: "ms",
            baseline: base,
            target: None,
        });
        report.add(Figure {
            group: "range",
            name: format!("backend requests per read, {name}"),
            value: worst(&reqs[i]),
            unit: "requests",
            baseline: None,
            target: match i {
                2 => Some("= 1"),
                _ => None,
            },
        });
        report.add(Figure {
            group: "range",
            name: format!("backend bytes per read, {name}"),
            value: worst(&bytes[i]),
            unit: "bytes",
            baseline: (i > 0).then(|| {
                (
                    "header + one sealed chunk".to_owned(),
                    header + sealed_chunk,
                )
            }),
            target: (i > 0).then_some("≤ 1.00"),
        });
    }
    Ok(())
}

/// The largest of the samples (for counts: the worst read).
fn worst(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn random_piece(n: usize) -> Result<Bytes> {
    let mut v = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut v).map_err(|_| anyhow::anyhow!("random bytes"))?;
    Ok(Bytes::from(v))
}

// ----- the command -----------------------------------------------------------------------------

pub(crate) async fn bench(a: &args::Bench, out: &Output) -> Result<(String, Value)> {
    let chunk = ChunkSize::from_bytes(a.chunk_size).map_err(|_| {
        Usage(format!(
            "--chunk-size {}: a power of two from 64KiB to 16MiB",
            a.chunk_size
        ))
    })?;
    if a.size == 0 || a.crypto_size == 0 || a.rounds == 0 || a.concurrency == 0 {
        bail!(Usage(
            "--size, --crypto-size, --rounds and --concurrency must be above zero".into()
        ));
    }
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("creating the benchmark directory {}", a.dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("encrypt-repo-bench-")
        .tempdir_in(&a.dir)
        .with_context(|| format!("creating a directory in {}", a.dir.display()))?;
    let keys = work.path().join("keys");
    let (plain_dir, enc_dir) = (work.path().join("plain"), work.path().join("encrypted"));
    for d in [&keys, &plain_dir, &enc_dir] {
        std::fs::create_dir_all(d)?;
    }
    let steps = u64::from(a.rounds) * (1 + 4 + 1 + 2 + if a.skip_memory_backend { 0 } else { 4 });
    let progress = out.steps(steps, "bench");
    let mut report = Report {
        figures: Vec::new(),
        progress,
    };

    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    // Crypto first, on a blocking thread (it owns the CPUs while it runs).
    let (mut report, crypto_result) = {
        let a2 = a.clone();
        tokio::task::spawn_blocking(move || {
            let r = crypto(&a2, chunk, &mut report);
            (report, r)
        })
        .await?
    };
    crypto_result?;

    let piece = random_piece(PIECE.min(a.size as usize))?;
    {
        let plain = LocalFileSystem::new_with_prefix(&plain_dir)?;
        let enc = encrypted(
            Arc::new(LocalFileSystem::new_with_prefix(&enc_dir)?),
            &keys,
            chunk,
            a.part_size as usize,
        )
        .await?;
        let pair = Pair {
            label: "local",
            plain: &plain,
            enc: &enc,
        };
        store_pair(a, &pair, &piece, &mut report).await?;
        plain.delete(&Path::from(OBJECT)).await.ok();
        enc.delete(&Path::from(OBJECT)).await.ok();
    }
    range_reads(a, &enc_dir, &keys, chunk, &mut report).await?;
    fsync_cost(a, work.path(), &keys, chunk, &piece, &mut report).await?;
    if !a.skip_memory_backend {
        let plain = InMemory::new();
        let enc = encrypted(
            Arc::new(InMemory::new()),
            &keys,
            chunk,
            a.part_size as usize,
        )
        .await?;
        let pair = Pair {
            label: "memory",
            plain: &plain,
            enc: &enc,
        };
        store_pair(a, &pair, &piece, &mut report).await?;
    }
    report.progress.finish();

    let config = json!({
        "size": a.size,
        "crypto_size": a.crypto_size,
        "chunk_size": chunk.bytes(),
        "part_size": a.part_size,
        "concurrency": a.concurrency,
        "rounds": a.rounds,
        "threads": threads,
        "dir": a.dir.display().to_string(),
    });
    let figures: Vec<Value> = report
        .figures
        .iter()
        .map(|f| {
            json!({
                "group": f.group,
                "name": f.name,
                // Counts are integers; everything else keeps three decimals.
                "value": match f.unit {
                    "requests" | "bytes" if f.value.is_finite() => json!(f.value as u64),
                    _ => json!(finite(f.value)),
                },
                "unit": f.unit,
                "baseline": f.baseline.as_ref().map(|(n, _)| n),
                "ratio": f.ratio().and_then(finite),
                "target": f.target,
            })
        })
        .collect();
    let human = table(a, chunk, threads, &report.figures);
    Ok((human, json!({"config": config, "figures": figures})))
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some((v * 1000.0).round() / 1000.0)
}

fn table(a: &args::Bench, chunk: ChunkSize, threads: usize, figures: &[Figure]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "encrypt-repo bench: {} objects, {} crypto buffer, {} chunks, {} parts, {} in flight, {} rounds, {threads} threads, in {}\n",
        human_bytes(a.size),
        human_bytes(a.crypto_size),
        human_bytes(chunk.bytes() as u64),
        human_bytes(a.part_size),
        a.concurrency,
        a.rounds,
        a.dir.display()
    );
    let _ = writeln!(s, "| figure | median | baseline | ratio | target |");
    let _ = writeln!(s, "|---|---:|---|---:|---|");
    for f in figures {
        let value = match f.unit {
            "MiB/s" | "MiB" => format!("{:.0} {}", f.value, f.unit),
            "ms" => format!("{:.3} ms", f.value),
            _ => format!("{:.0} {}", f.value, f.unit),
        };
        let (base, ratio) = match (&f.baseline, f.ratio()) {
            (Some((n, _)), Some(r)) if r.is_finite() => (n.clone(), format!("{r:.2}")),
            (Some((n, _)), _) => (n.clone(), "—".into()),
            _ => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {value} | {base} | {ratio} | {} |",
            f.name,
            f.target.unwrap_or("")
        );
    }
    s
}
