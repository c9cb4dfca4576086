//! Round trips through every public sealing and opening path, at every allowed chunk size.
//!
//! For every [`ChunkSize`] (64 KiB … 16 MiB) and the sizes at the chunk edges (0, 1, C−1, C,
//! C+1, 3C, 3C+7) this checks that
//!
//! - [`seal_object`]/[`seal_with`] and [`open_object`] round trip, and the ciphertext is exactly
//!   [`Layout::ciphertext_len`] bytes (and maps back to the same [`Layout`]);
//! - the streaming [`Encryptor`], fed in odd-sized pushes (0, 1, 7, 4096+3 bytes, pushes that
//!   end exactly on a chunk boundary or one past it, and random sizes), writes byte for byte the
//!   same object as the whole-object path when the salt is fixed, with batch sizes 1 and 8;
//! - the streaming [`Decryptor`], fed in other odd-sized pushes, returns the plaintext, releases
//!   only whole verified chunks before `finish`, each a correct prefix, and holds back at most
//!   one batch.
//!
//! Two property tests do the same at random sizes and random push splits.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use encrypt_repo_format::{
    ChunkSize, DataKey, DataKeyId, Decryptor, Encryptor, HEADER_LEN, Header, Layout, ObjectContext,
    ObjectOpener, ObjectSealer, RepositoryId, Salt, open_object, seal_object, seal_with,
};
use proptest::prelude::*;

const KEY: [u8; 32] = [0x42; 32];
const KEY_ID: DataKeyId = DataKeyId([0xa5; 16]);
const REPO: RepositoryId = RepositoryId([0x11; 16]);
const PATH: &str = "roundtrip/object.bin";

/// SplitMix64: a small deterministic generator for plaintext, salts and split points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }

    fn salt(&mut self) -> Salt {
        let mut s = [0u8; 32];
        self.fill(&mut s);
        Salt(s)
    }
}

fn plaintext(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng(seed).fill(&mut v);
    v
}

/// Push sizes summing to `len`: a cycle of an empty push, 1, 7, 4096+3, "up to the next chunk
/// boundary", "one past the next chunk boundary", and a random size below `max_random`.
fn pieces(len: usize, chunk: usize, max_random: usize, rng: &mut Rng) -> Vec<usize> {
    let mut out = vec![0];
    let mut pos = 0;
    let mut step = rng.below(7);
    while pos < len {
        let want = match step % 7 {
            0 => 0,
            1 => 1,
            2 => 7,
            3 => 4096 + 3,
            4 => chunk - pos % chunk,
            5 => chunk - pos % chunk + 1,
            _ => 1 + rng.below(max_random.max(1)),
        };
        step += 1;
        let p = want.min(len - pos);
        out.push(p);
        pos += p;
    }
    out
}

/// Random push sizes summing to `len`, with split points anywhere.
fn random_pieces(len: usize, max_piece: usize, rng: &mut Rng) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        let p = rng.below(max_piece + 1).min(len - pos);
        out.push(p);
        pos += p;
    }
    out
}

fn sealer(ctx: &ObjectContext<'_>, chunk: ChunkSize, salt: Salt) -> ObjectSealer {
    ObjectSealer::with_salt(&DataKey::from_bytes(KEY), KEY_ID, ctx, chunk, salt)
}

/// Seals `pt` through an [`Encryptor`] pushed in `pieces`.
fn stream_seal(sealer: ObjectSealer, batch: usize, pt: &[u8], pieces: &[usize]) -> Vec<u8> {
    let chunk = sealer.chunk_size();
    let mut enc = Encryptor::new(sealer, batch);
    let mut out = enc.header_bytes().to_vec();
    let mut pos = 0;
    for &p in pieces {
        enc.push(&pt[pos..pos + p], &mut out).unwrap();
        pos += p;
        assert!(
            enc.buffered() <= batch * chunk.bytes(),
            "encryptor holds more than one batch"
        );
        assert_eq!(
            (out.len() - HEADER_LEN) % chunk.sealed_bytes(),
            0,
            "encryptor emitted a partial chunk before finish"
        );
        assert_eq!(
            (out.len() - HEADER_LEN) / chunk.sealed_bytes() * chunk.bytes() + enc.buffered(),
            pos,
            "encryptor lost or duplicated input"
        );
    }
    assert_eq!(pos, pt.len());
    enc.finish(&mut out).unwrap();
    out
}

/// Opens `sealed` through a [`Decryptor`] pushed in `pieces`, checking after every push that
/// only whole chunks of correct plaintext were released and at most one batch is held back.
fn stream_open(
    ctx: &ObjectContext<'_>,
    sealed: &[u8],
    batch: usize,
    pieces: &[usize],
    expect: &[u8],
) -> Vec<u8> {
    let opener = ObjectOpener::new(&sealed[..HEADER_LEN], &DataKey::from_bytes(KEY), ctx).unwrap();
    let chunk = opener.chunk_size();
    let (c, s) = (chunk.bytes(), chunk.sealed_bytes());
    let mut dec = Decryptor::new(opener, batch);
    let body = &sealed[HEADER_LEN..];
    let mut out = Vec::new();
    let (mut pos, mut checked) = (0, 0);
    for &p in pieces {
        dec.push(&body[pos..pos + p], &mut out).unwrap();
        pos += p;
        assert_eq!(out.len() % c, 0, "partial chunk released before finish");
        assert!(
            pos - out.len() / c * s <= batch * s,
            "decryptor holds back more than one batch ({pos} pushed, {} released)",
            out.len()
        );
        assert!(
            out.len() <= expect.len(),
            "more plaintext than the object holds"
        );
        assert!(
            out[checked..] == expect[checked..out.len()],
            "wrong plaintext released"
        );
        checked = out.len();
    }
    assert_eq!(pos, body.len());
    dec.finish(&mut out).unwrap();
    out
}

/// Every path for one plaintext; returns the number of round trips checked.
fn check_all_paths(
    ctx: &ObjectContext<'_>,
    chunk: ChunkSize,
    pt: &[u8],
    batches: &[usize],
    rng: &mut Rng,
    max_random: usize,
) -> usize {
    let key = DataKey::from_bytes(KEY);
    let c = chunk.bytes();
    let layout = Layout::for_plaintext(chunk, pt.len() as u64).unwrap();
    assert_eq!(layout.chunk_count(), pt.len().div_ceil(c).max(1) as u64);
    let salt = rng.salt();

    // (a) whole object, fixed salt.
    let whole = seal_with(sealer(ctx, chunk, salt), pt).unwrap();
    assert_eq!(
        whole.len() as u64,
        layout.ciphertext_len(),
        "len {}",
        pt.len()
    );
    assert_eq!(
        Layout::for_ciphertext(chunk, whole.len() as u64).unwrap(),
        layout
    );
    let header = Header::parse(&whole).unwrap();
    assert_eq!(header.chunk_size, chunk);
    assert_eq!(header.salt, salt);
    assert_eq!(header.data_key_id, KEY_ID);
    assert_eq!(header.path_bound, ctx.path.is_some());
    assert_eq!(open_object(&key, ctx, &whole).unwrap(), pt);
    let mut count = 1;

    // (a') whole object, fresh random salt: same length, different bytes, same plaintext.
    let random = seal_object(&key, KEY_ID, ctx, chunk, pt).unwrap();
    assert_eq!(random.len(), whole.len());
    assert_ne!(random[..HEADER_LEN], whole[..HEADER_LEN], "salt repeated");
    assert_eq!(open_object(&key, ctx, &random).unwrap(), pt);
    drop(random);
    count += 1;

    // (b) streaming, both directions, odd-sized pushes.
    for &batch in batches {
        let enc_pieces = pieces(pt.len(), c, max_random, rng);
        let streamed = stream_seal(sealer(ctx, chunk, salt), batch, pt, &enc_pieces);
        assert!(
            streamed == whole,
            "streamed object differs from the whole-object seal (len {}, batch {batch})",
            pt.len()
        );
        drop(streamed);
        let dec_pieces = pieces(whole.len() - HEADER_LEN, c, max_random, rng);
        let opened = stream_open(ctx, &whole, batch, &dec_pieces, pt);
        assert!(opened == pt, "streamed open differs (len {})", pt.len());
        count += 1;
    }
    count
}

#[test]
fn every_chunk_size_at_the_chunk_edges() {
    let ctx = ObjectContext::bound(REPO, PATH);
    let mut rng = Rng(1);
    let mut total = 0;
    for chunk in ChunkSize::all() {
        let t = std::time::Instant::now();
        let c = chunk.bytes();
        let big = plaintext(3 * c + 7, u64::from(chunk.log2()));
        for len in [0, 1, c - 1, c, c + 1, 3 * c, 3 * c + 7] {
            total += check_all_paths(&ctx, chunk, &big[..len], &[1, 8], &mut rng, 3 * c / 2);
        }
        eprintln!(
            "chunk size 2^{}: 7 sizes, all paths, {:?}",
            chunk.log2(),
            t.elapsed()
        );
    }
    eprintln!("{total} round trips");
    assert_eq!(total, 9 * 7 * 4);
}

#[test]
fn unbound_context_round_trips() {
    let ctx = ObjectContext::unbound(REPO);
    let mut rng = Rng(2);
    let chunk = ChunkSize::from_log2(16).unwrap();
    let c = chunk.bytes();
    let big = plaintext(3 * c + 7, 2);
    for len in [0, 1, c - 1, c, c + 1, 3 * c, 3 * c + 7] {
        check_all_paths(&ctx, chunk, &big[..len], &[1, 8], &mut rng, 3 * c / 2);
    }
}

fn small_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(small_config(64))]

    /// Random sizes up to three 64 KiB chunks, random push splits, random batch sizes.
    #[test]
    fn random_sizes_and_splits_small_chunks(
        len in prop_oneof![0usize..=3 * 65536 + 64, (0usize..=3).prop_map(|k| k * 65536)],
        seed in any::<u64>(),
        batch in 1usize..=4,
        bound in any::<bool>(),
        max_piece in prop_oneof![Just(17usize), Just(5000), Just(70_000), Just(300_000)],
    ) {
        let chunk = ChunkSize::from_log2(16).unwrap();
        let ctx = if bound { ObjectContext::bound(REPO, PATH) } else { ObjectContext::unbound(REPO) };
        let mut rng = Rng(seed);
        let pt = plaintext(len, seed);
        let salt = rng.salt();
        let whole = seal_with(sealer(&ctx, chunk, salt), &pt).unwrap();
        prop_assert_eq!(
            whole.len() as u64,
            Layout::for_plaintext(chunk, len as u64).unwrap().ciphertext_len()
        );
        let enc_pieces = random_pieces(len, max_piece, &mut rng);
        let streamed = stream_seal(sealer(&ctx, chunk, salt), batch, &pt, &enc_pieces);
        prop_assert!(streamed == whole);
        let dec_pieces = random_pieces(whole.len() - HEADER_LEN, max_piece, &mut rng);
        let opened = stream_open(&ctx, &whole, batch, &dec_pieces, &pt);
        prop_assert!(opened == pt);
        prop_assert!(open_object(&DataKey::from_bytes(KEY), &ctx, &whole).unwrap() == pt);
    }
}

proptest! {
    #![proptest_config(small_config(6))]

    /// A few random sizes at every chunk size up to three chunks (up to 48 MiB at 16 MiB).
    #[test]
    fn random_sizes_any_chunk_size(
        log2 in 16u8..=24,
        frac in 0.0f64..=3.0,
        seed in any::<u64>(),
        batch in prop_oneof![Just(1usize), Just(2), Just(8)],
    ) {
        let chunk = ChunkSize::from_log2(log2).unwrap();
        let len = (frac * chunk.bytes() as f64) as usize;
        let ctx = ObjectContext::bound(REPO, PATH);
        let mut rng = Rng(seed);
        let pt = plaintext(len, seed);
        let salt = rng.salt();
        let whole = seal_with(sealer(&ctx, chunk, salt), &pt).unwrap();
        prop_assert_eq!(
            whole.len() as u64,
            Layout::for_plaintext(chunk, len as u64).unwrap().ciphertext_len()
        );
        let max_piece = chunk.bytes() + 5;
        let enc_pieces = random_pieces(len, max_piece, &mut rng);
        let streamed = stream_seal(sealer(&ctx, chunk, salt), batch, &pt, &enc_pieces);
        prop_assert!(streamed == whole);
        let dec_pieces = random_pieces(whole.len() - HEADER_LEN, max_piece, &mut rng);
        let opened = stream_open(&ctx, &whole, batch, &dec_pieces, &pt);
        prop_assert!(opened == pt);
    }
}
