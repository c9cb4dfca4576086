//! Throughput of the container format against raw aws-lc-rs AES-256-GCM measured in the same run.
//!
//! These machines are shared and noisy, so every figure is read as a ratio against a baseline
//! taken a few seconds earlier (`benches/format_report.py` prints the ratios and the targets).
//! Every format path is compared with the raw path that moves the same bytes the same way:
//!
//! - `seal/*`, `open/*` over 1, 16 and 256 MiB objects, in place (`*-ip-*`) and out of place
//!   (`*-oop-*`), on one thread (`*-1t`, a one-thread rayon pool) and on all threads (`*-all`):
//!   - `raw-ip`: `LessSafeKey::seal_in_place_separate_tag` / `open_in_place` per 1 MiB chunk,
//!     empty AAD (tags in a separate array for seal; ciphertext ‖ tag per chunk for open).
//!   - `format-ip`: `ObjectSealer::seal_chunks_in_place` / `ObjectOpener::open_chunks_in_place`
//!     over the format's own layout (chunk ‖ tag at stride C + 16, 96-byte header as AAD).
//!   - `raw-oop`: `seal_out_of_place_scatter` / `open_separate_gather`, one buffer into another.
//!   - `format-oop`: `ObjectSealer::seal_chunks` / `ObjectOpener::open_chunks`.
//!
//!   Targets: format-X-1t ≥ 0.90 × raw-X-1t for X = ip and X = oop, and format-X-all ≥ 1.7 ×
//!   format-X-1t on two cores. Opening in place overwrites the ciphertext, so every `open/*-ip-*`
//!   iteration first restores it with a copy that is not timed (`iter_custom`).
//! - `stream/*`: `Encryptor` / `Decryptor` over 256 MiB, all threads, fed 8 MiB pieces (as a
//!   multipart writer would) or 64 KiB pieces (as a network read would): `push` into a reused
//!   `Vec`, and for sealing also `push_slice` into a reused buffer. Read against `format-oop-all`.
//! - `chunk-sweep/*`: one-thread seal of a 64 MiB object for every allowed chunk size, out of
//!   place (`format-seal-1t`, the rule's figure) and in place (`format-seal-ip-1t`). The default
//!   chunk size is the smallest whose out-of-place figure is ≥ 95 % of the 4 MiB one
//!   (FORMAT.md §8).
//! - `stream-chunk/*`: the store's view of the chunk size: `Encryptor` / `Decryptor` over a 64 MiB
//!   object for every allowed chunk size, `DEFAULT_BATCH_CHUNKS`, 8 MiB pieces, called from
//!   outside any pool (as `crates/store` does from a blocking task), on the global pool.
//!
//! Every timed loop but `stream-chunk/*` runs on a worker of the pool it measures
//! (`pool.install(|| b.iter(..))`), so no cross-thread hand-off is timed, only the work and
//! rayon's own splitting.
//!
//! `CARGO_TARGET_DIR=/tmp/tgt-bench cargo bench --bench format`, then
//! `python3 benches/format_report.py /tmp/tgt-bench/criterion` (or set `CRITERION_HOME` to keep
//! each run's results in a directory of its own). Criterion's own filter narrows a
//! run (`cargo bench --bench format -- chunk-sweep`). Environment: `FORMAT_BENCH_MEASURE_SECS`
//! (measurement time per benchmark, default 4), `FORMAT_BENCH_WARMUP_SECS` (default 1),
//! `FORMAT_BENCH_SAMPLES` (default 10).

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main,
};
use encrypt_repo_format::aead::{TAG_LEN, chunk_nonce};
use encrypt_repo_format::{
    ChunkSize, DEFAULT_BATCH_CHUNKS, DataKey, DataKeyId, Decryptor, Encryptor, HEADER_LEN,
    ObjectContext, ObjectOpener, ObjectSealer, RepositoryId, extend_sealed_layout, opened_len,
    sealed_len,
};
use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

const MIB: usize = 1 << 20;
/// Object sizes of the seal/open groups.
const SIZES: [usize; 3] = [MIB, 16 * MIB, 256 * MIB];
/// Chunk size of the raw baseline (the format's default chunk size).
const RAW_CHUNK: usize = MIB;
/// Piece sizes pushed into the streaming `Encryptor` / `Decryptor`.
const PIECES: [usize; 2] = [8 * MIB, 64 << 10];
/// Object size of the streaming group.
const STREAM_SIZE: usize = 256 * MIB;
/// Object size of the chunk-size sweep.
const SWEEP_SIZE: usize = 64 * MIB;
const PATH: &str = "bench/object";

/// `1MiB`, `64KiB`: the value part of every benchmark id.
fn label(bytes: usize) -> String {
    if bytes >= MIB {
        format!("{}MiB", bytes / MIB)
    } else {
        format!("{}KiB", bytes >> 10)
    }
}

fn pool(threads: usize) -> ThreadPool {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("bench-{threads}t-{i}"))
        .build()
        .expect("rayon pool")
}

/// Everything the groups share: keys, pools and one 256 MiB plaintext (smaller sizes are prefixes).
struct Fixture {
    raw: LessSafeKey,
    data_key: DataKey,
    ctx: ObjectContext<'static>,
    one: ThreadPool,
    all: ThreadPool,
    plaintext: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        // Any bytes will do for AES; a cheap xorshift fills (and faults in) every page.
        let mut plaintext = vec![0u8; *SIZES.iter().max().unwrap_or(&0)];
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for word in plaintext.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x42; 32]).expect("raw key"));
        Self {
            raw,
            data_key: DataKey::from_bytes([7; 32]),
            ctx: ObjectContext::bound(RepositoryId([1; 16]), PATH),
            one: pool(1),
            all: pool(threads),
            plaintext,
        }
    }

    fn sealer(&self, chunk: ChunkSize) -> ObjectSealer {
        ObjectSealer::new(&self.data_key, DataKeyId([2; 16]), &self.ctx, chunk).expect("sealer")
    }

    fn opener(&self, header: &[u8]) -> ObjectOpener {
        ObjectOpener::new(header, &self.data_key, &self.ctx).expect("opener")
    }

    /// A whole sealed object (header + body) of the first `len` plaintext bytes.
    fn sealed_object(&self, chunk: ChunkSize, len: usize) -> Vec<u8> {
        let sealer = self.sealer(chunk);
        let mut object = vec![0u8; HEADER_LEN + sealed_len(chunk, len)];
        let (header, body) = object.split_at_mut(HEADER_LEN);
        header.copy_from_slice(sealer.header_bytes());
        self.all
            .install(|| sealer.seal_chunks(0, &self.plaintext[..len], true, body))
            .expect("seal");
        object
    }
}

fn raw_nonce(i: usize) -> Nonce {
    Nonce::assume_unique_for_key(chunk_nonce(i as u32, false))
}

fn raw_seal_ip_one(key: &LessSafeKey, i: usize, chunk: &mut [u8], tag: &mut [u8; TAG_LEN]) {
    let t = key
        .seal_in_place_separate_tag(raw_nonce(i), Aad::empty(), chunk)
        .expect("raw seal");
    tag.copy_from_slice(t.as_ref());
}

/// Raw AES-256-GCM seal in place, 1 MiB chunks, empty AAD, one thread.
fn raw_seal_ip(key: &LessSafeKey, buf: &mut [u8], tags: &mut [[u8; TAG_LEN]]) {
    for (i, (chunk, tag)) in buf.chunks_mut(RAW_CHUNK).zip(tags.iter_mut()).enumerate() {
        raw_seal_ip_one(key, i, chunk, tag);
    }
}

/// The same on the current rayon pool.
fn raw_seal_ip_par(key: &LessSafeKey, buf: &mut [u8], tags: &mut [[u8; TAG_LEN]]) {
    buf.par_chunks_mut(RAW_CHUNK)
        .zip(tags.par_iter_mut())
        .enumerate()
        .for_each(|(i, (chunk, tag))| raw_seal_ip_one(key, i, chunk, tag));
}

fn raw_seal_oop_one(key: &LessSafeKey, i: usize, pt: &[u8], ct: &mut [u8], tag: &mut [u8]) {
    key.seal_out_of_place_scatter(raw_nonce(i), Aad::empty(), pt, ct, &[], tag)
        .expect("raw seal");
}

/// Raw seal from one buffer into another, one thread.
fn raw_seal_oop(key: &LessSafeKey, pt: &[u8], ct: &mut [u8], tags: &mut [[u8; TAG_LEN]]) {
    let chunks = pt.chunks(RAW_CHUNK).zip(ct.chunks_mut(RAW_CHUNK));
    for (i, ((p, c), tag)) in chunks.zip(tags.iter_mut()).enumerate() {
        raw_seal_oop_one(key, i, p, c, tag);
    }
}

/// The same on the current rayon pool.
fn raw_seal_oop_par(key: &LessSafeKey, pt: &[u8], ct: &mut [u8], tags: &mut [[u8; TAG_LEN]]) {
    pt.par_chunks(RAW_CHUNK)
        .zip(ct.par_chunks_mut(RAW_CHUNK))
        .zip(tags.par_iter_mut())
        .enumerate()
        .for_each(|(i, ((p, c), tag))| raw_seal_oop_one(key, i, p, c, tag));
}

fn raw_open_oop_one(key: &LessSafeKey, i: usize, ct: &[u8], tag: &[u8; TAG_LEN], pt: &mut [u8]) {
    key.open_separate_gather(raw_nonce(i), Aad::empty(), ct, tag, pt)
        .expect("raw open");
}

/// Raw open (verify + decrypt into a separate buffer), one thread.
fn raw_open_oop(key: &LessSafeKey, ct: &[u8], tags: &[[u8; TAG_LEN]], pt: &mut [u8]) {
    let chunks = ct.chunks(RAW_CHUNK).zip(pt.chunks_mut(RAW_CHUNK));
    for (i, ((c, p), tag)) in chunks.zip(tags).enumerate() {
        raw_open_oop_one(key, i, c, tag, p);
    }
}

/// The same on the current rayon pool.
fn raw_open_oop_par(key: &LessSafeKey, ct: &[u8], tags: &[[u8; TAG_LEN]], pt: &mut [u8]) {
    ct.par_chunks(RAW_CHUNK)
        .zip(pt.par_chunks_mut(RAW_CHUNK))
        .zip(tags.par_iter())
        .enumerate()
        .for_each(|(i, ((c, p), tag))| raw_open_oop_one(key, i, c, tag, p));
}

fn raw_open_ip_one(key: &LessSafeKey, i: usize, ct_and_tag: &mut [u8]) {
    key.open_in_place(raw_nonce(i), Aad::empty(), ct_and_tag)
        .expect("raw open");
}

/// Raw open in place of `ciphertext ‖ tag` chunks at stride `RAW_CHUNK + TAG_LEN`, one thread.
fn raw_open_ip(key: &LessSafeKey, buf: &mut [u8]) {
    for (i, chunk) in buf.chunks_mut(RAW_CHUNK + TAG_LEN).enumerate() {
        raw_open_ip_one(key, i, chunk);
    }
}

/// The same on the current rayon pool.
fn raw_open_ip_par(key: &LessSafeKey, buf: &mut [u8]) {
    buf.par_chunks_mut(RAW_CHUNK + TAG_LEN)
        .enumerate()
        .for_each(|(i, chunk)| raw_open_ip_one(key, i, chunk));
}

/// Times `work` over `buf` after restoring `buf` from `from` before every iteration (untimed).
fn timed_after_restore(
    iters: u64,
    buf: &mut [u8],
    from: &[u8],
    mut work: impl FnMut(&mut [u8]),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        buf.copy_from_slice(from);
        let start = Instant::now();
        work(black_box(&mut *buf));
        total += start.elapsed();
    }
    total
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(env_u64("FORMAT_BENCH_SAMPLES", 10) as usize)
        .warm_up_time(Duration::from_secs(env_u64("FORMAT_BENCH_WARMUP_SECS", 1)))
        .measurement_time(Duration::from_secs(env_u64("FORMAT_BENCH_MEASURE_SECS", 4)))
        .sampling_mode(SamplingMode::Flat);
}

fn seal(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("seal");
    configure(&mut group);
    let chunk = ChunkSize::DEFAULT;
    let sealer = f.sealer(chunk);
    for size in SIZES {
        let pt = &f.plaintext[..size];
        group.throughput(Throughput::Bytes(size as u64));
        let id = |name: &str| BenchmarkId::new(name, label(size));

        // In place: raw over a plain buffer with a tag array, the format over its own layout.
        let mut buf = pt.to_vec();
        let mut tags = vec![[0u8; TAG_LEN]; size.div_ceil(RAW_CHUNK)];
        let mut laid_out = Vec::new();
        extend_sealed_layout(&mut laid_out, chunk, pt);
        {
            // The in-place seal writes exactly what the out-of-place one does.
            let mut check = laid_out.clone();
            let mut want = vec![0u8; sealed_len(chunk, size)];
            sealer.seal_chunks(0, pt, true, &mut want).expect("seal");
            sealer
                .seal_chunks_in_place(0, &mut check, true)
                .expect("seal");
            assert!(check == want, "in-place seal differs");
        }
        group.bench_function(id("raw-ip-1t"), |b| {
            f.one
                .install(|| b.iter(|| raw_seal_ip(&f.raw, black_box(&mut buf), &mut tags)));
        });
        group.bench_function(id("format-ip-1t"), |b| {
            f.one.install(|| {
                b.iter(|| {
                    sealer
                        .seal_chunks_in_place(0, black_box(&mut laid_out), true)
                        .expect("seal")
                });
            });
        });
        group.bench_function(id("raw-ip-all"), |b| {
            f.all
                .install(|| b.iter(|| raw_seal_ip_par(&f.raw, black_box(&mut buf), &mut tags)));
        });
        group.bench_function(id("format-ip-all"), |b| {
            f.all.install(|| {
                b.iter(|| {
                    sealer
                        .seal_chunks_in_place(0, black_box(&mut laid_out), true)
                        .expect("seal")
                });
            });
        });
        drop((buf, laid_out));

        // Out of place: plaintext in one buffer, ciphertext into another.
        let mut ct = vec![1u8; size];
        let mut out = vec![1u8; sealed_len(chunk, size)];
        group.bench_function(id("raw-oop-1t"), |b| {
            f.one.install(|| {
                b.iter(|| raw_seal_oop(&f.raw, black_box(pt), &mut ct, &mut tags));
            });
        });
        group.bench_function(id("format-oop-1t"), |b| {
            f.one.install(|| {
                b.iter(|| {
                    sealer
                        .seal_chunks(0, black_box(pt), true, &mut out)
                        .expect("seal")
                });
            });
        });
        group.bench_function(id("raw-oop-all"), |b| {
            f.all.install(|| {
                b.iter(|| raw_seal_oop_par(&f.raw, black_box(pt), &mut ct, &mut tags));
            });
        });
        group.bench_function(id("format-oop-all"), |b| {
            f.all.install(|| {
                b.iter(|| {
                    sealer
                        .seal_chunks(0, black_box(pt), true, &mut out)
                        .expect("seal")
                });
            });
        });
    }
    group.finish();
}

fn open(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("open");
    configure(&mut group);
    let chunk = ChunkSize::DEFAULT;
    for size in SIZES {
        let pt = &f.plaintext[..size];
        group.throughput(Throughput::Bytes(size as u64));
        let id = |name: &str| BenchmarkId::new(name, label(size));

        // Raw ciphertext, both as (ciphertext, tag array) and as ciphertext ‖ tag chunks.
        let mut raw_ct = vec![1u8; size];
        let mut tags = vec![[0u8; TAG_LEN]; size.div_ceil(RAW_CHUNK)];
        raw_seal_oop(&f.raw, pt, &mut raw_ct, &mut tags);
        let mut raw_joined = Vec::with_capacity(size + tags.len() * TAG_LEN);
        for (c, t) in raw_ct.chunks(RAW_CHUNK).zip(&tags) {
            raw_joined.extend_from_slice(c);
            raw_joined.extend_from_slice(t);
        }
        let object = f.sealed_object(chunk, size);
        let (header, body) = object.split_at(HEADER_LEN);
        let opener = f.opener(header);
        assert_eq!(opened_len(chunk, body.len()), size);

        // Round trips checked here, not after the timed loops: a filter may skip those.
        let mut out = vec![1u8; size];
        raw_open_oop(&f.raw, &raw_ct, &tags, &mut out);
        assert!(out == pt, "raw open round trip");
        out.fill(0);
        opener.open_chunks(0, body, true, &mut out).expect("open");
        assert!(out == pt, "format open round trip");
        let mut buf = body.to_vec();
        assert_eq!(opener.open_chunks_in_place(0, &mut buf, true), Ok(size));
        let opened: Vec<u8> = buf
            .chunks(chunk.sealed_bytes())
            .flat_map(|c| &c[..c.len() - TAG_LEN])
            .copied()
            .collect();
        assert!(opened == pt, "format in-place open round trip");
        let mut raw_buf = raw_joined.clone();
        raw_open_ip(&f.raw, &mut raw_buf);

        group.bench_function(id("raw-ip-1t"), |b| {
            f.one.install(|| {
                b.iter_custom(|n| {
                    timed_after_restore(n, &mut raw_buf, &raw_joined, |b| raw_open_ip(&f.raw, b))
                });
            });
        });
        group.bench_function(id("format-ip-1t"), |b| {
            f.one.install(|| {
                b.iter_custom(|n| {
                    timed_after_restore(n, &mut buf, body, |b| {
                        opener.open_chunks_in_place(0, b, true).expect("open");
                    })
                });
            });
        });
        group.bench_function(id("raw-ip-all"), |b| {
            f.all.install(|| {
                b.iter_custom(|n| {
                    timed_after_restore(n, &mut raw_buf, &raw_joined, |b| {
                        raw_open_ip_par(&f.raw, b);
                    })
                });
            });
        });
        group.bench_function(id("format-ip-all"), |b| {
            f.all.install(|| {
                b.iter_custom(|n| {
                    timed_after_restore(n, &mut buf, body, |b| {
                        opener.open_chunks_in_place(0, b, true).expect("open");
                    })
                });
            });
        });
        drop((buf, raw_buf, raw_joined));

        group.bench_function(id("raw-oop-1t"), |b| {
            f.one.install(|| {
                b.iter(|| raw_open_oop(&f.raw, black_box(&raw_ct), &tags, &mut out));
            });
        });
        group.bench_function(id("format-oop-1t"), |b| {
            f.one.install(|| {
                b.iter(|| {
                    opener
                        .open_chunks(0, black_box(body), true, &mut out)
                        .expect("open")
                });
            });
        });
        group.bench_function(id("raw-oop-all"), |b| {
            f.all.install(|| {
                b.iter(|| raw_open_oop_par(&f.raw, black_box(&raw_ct), &tags, &mut out));
            });
        });
        group.bench_function(id("format-oop-all"), |b| {
            f.all.install(|| {
                b.iter(|| {
                    opener
                        .open_chunks(0, black_box(body), true, &mut out)
                        .expect("open")
                });
            });
        });
    }
    group.finish();
}

/// Streaming, as a writer or reader would use it: pieces in, each push's output handed to a
/// sink (here `black_box`) and the buffer reused.
fn stream(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("stream");
    configure(&mut group);
    group.throughput(Throughput::Bytes(STREAM_SIZE as u64));
    let pt = &f.plaintext[..STREAM_SIZE];
    let object = f.sealed_object(ChunkSize::DEFAULT, STREAM_SIZE);
    let (header, body) = object.split_at(HEADER_LEN);
    let mut out = Vec::with_capacity(2 * PIECES[0]);
    for piece in PIECES {
        let p = label(piece);
        group.bench_function(
            BenchmarkId::new(format!("encrypt-{p}-all"), label(STREAM_SIZE)),
            |b| {
                f.all.install(|| {
                    b.iter(|| {
                        let mut enc =
                            Encryptor::new(f.sealer(ChunkSize::DEFAULT), DEFAULT_BATCH_CHUNKS);
                        for piece in black_box(pt).chunks(piece) {
                            enc.push(piece, &mut out).expect("push");
                            black_box(&out);
                            out.clear();
                        }
                        enc.finish(&mut out).expect("finish");
                        black_box(&out);
                        out.clear();
                    });
                });
            },
        );
        let mut buf = vec![1u8; 2 * PIECES[0] + ChunkSize::DEFAULT.sealed_bytes()];
        group.bench_function(
            BenchmarkId::new(format!("encrypt-slice-{p}-all"), label(STREAM_SIZE)),
            |b| {
                f.all.install(|| {
                    b.iter(|| {
                        let mut enc =
                            Encryptor::new(f.sealer(ChunkSize::DEFAULT), DEFAULT_BATCH_CHUNKS);
                        for piece in black_box(pt).chunks(piece) {
                            let n = enc.push_slice(piece, &mut buf).expect("push");
                            black_box(&buf[..n]);
                        }
                        let n = enc.finish_slice(&mut buf).expect("finish");
                        black_box(&buf[..n]);
                    });
                });
            },
        );
        group.bench_function(
            BenchmarkId::new(format!("decrypt-{p}-all"), label(STREAM_SIZE)),
            |b| {
                f.all.install(|| {
                    b.iter(|| {
                        let mut dec = Decryptor::new(f.opener(header), DEFAULT_BATCH_CHUNKS);
                        let mut n = 0;
                        for piece in black_box(body).chunks(piece) {
                            dec.push(piece, &mut out).expect("push");
                            n += black_box(&out).len();
                            out.clear();
                        }
                        dec.finish(&mut out).expect("finish");
                        n += black_box(&out).len();
                        out.clear();
                        assert_eq!(n, STREAM_SIZE);
                    });
                });
            },
        );
    }
    group.finish();
}

fn chunk_sweep(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("chunk-sweep");
    configure(&mut group);
    group.throughput(Throughput::Bytes(SWEEP_SIZE as u64));
    let pt = &f.plaintext[..SWEEP_SIZE];
    for chunk in ChunkSize::all() {
        let sealer = f.sealer(chunk);
        let mut out = vec![1u8; sealed_len(chunk, SWEEP_SIZE)];
        let id = BenchmarkId::new("format-seal-1t", label(chunk.bytes()));
        group.bench_function(id, |b| {
            f.one.install(|| {
                b.iter(|| {
                    sealer
                        .seal_chunks(0, black_box(pt), true, &mut out)
                        .expect("seal")
                });
            });
        });
        let mut laid_out = Vec::new();
        extend_sealed_layout(&mut laid_out, chunk, pt);
        let id = BenchmarkId::new("format-seal-ip-1t", label(chunk.bytes()));
        group.bench_function(id, |b| {
            f.one.install(|| {
                b.iter(|| {
                    sealer
                        .seal_chunks_in_place(0, black_box(&mut laid_out), true)
                        .expect("seal")
                });
            });
        });
    }
    group.finish();
}

/// The store's view of the chunk size: `Encryptor` / `Decryptor` with `DEFAULT_BATCH_CHUNKS`,
/// 8 MiB pieces, called from a thread outside any pool (as `crates/store` calls them from a
/// blocking task), so every parallel call pays rayon's hand-off to the global pool.
fn stream_chunk_sweep(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("stream-chunk");
    configure(&mut group);
    group.throughput(Throughput::Bytes(SWEEP_SIZE as u64));
    let pt = &f.plaintext[..SWEEP_SIZE];
    let piece = PIECES[0];
    let mut out = Vec::with_capacity(
        2 * piece
            + ChunkSize::all()
                .map(|c| c.sealed_bytes())
                .max()
                .unwrap_or(0),
    );
    for chunk in ChunkSize::all() {
        group.bench_function(
            BenchmarkId::new("encrypt-8MiB-global", label(chunk.bytes())),
            |b| {
                b.iter(|| {
                    let mut enc = Encryptor::new(f.sealer(chunk), DEFAULT_BATCH_CHUNKS);
                    for piece in black_box(pt).chunks(piece) {
                        enc.push(piece, &mut out).expect("push");
                        black_box(&out);
                        out.clear();
                    }
                    enc.finish(&mut out).expect("finish");
                    black_box(&out);
                    out.clear();
                });
            },
        );
        let object = f.sealed_object(chunk, SWEEP_SIZE);
        let (header, body) = object.split_at(HEADER_LEN);
        group.bench_function(
            BenchmarkId::new("decrypt-8MiB-global", label(chunk.bytes())),
            |b| {
                b.iter(|| {
                    let mut dec = Decryptor::new(f.opener(header), DEFAULT_BATCH_CHUNKS);
                    for piece in black_box(body).chunks(piece) {
                        dec.push(piece, &mut out).expect("push");
                        black_box(&out);
                        out.clear();
                    }
                    dec.finish(&mut out).expect("finish");
                    black_box(&out);
                    out.clear();
                });
            },
        );
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let f = Fixture::new();
    seal(c, &f);
    open(c, &f);
    stream(c, &f);
    chunk_sweep(c, &f);
    stream_chunk_sweep(c, &f);
}

criterion_group!(format, benches);
criterion_main!(format);
