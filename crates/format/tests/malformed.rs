//! Malformed input: every case is an `Err`, never a panic, and nothing is sized from an
//! unchecked length.
//!
//! - every prefix of a sealed object up to `HEADER_LEN + TAG_LEN + 1` bytes;
//! - seeded random garbage, garbage behind a valid magic, behind plausible header fields, and
//!   behind a real header (also through the streaming [`Decryptor`], which must release nothing);
//! - each header check of FORMAT.md §2 on its own (bad magic, unknown version, unknown suite,
//!   chunk exponent outside 16..=24, unknown flag bits, non-zero reserved bytes) and their order;
//! - 97-byte (and similar) inputs whose header claims 16 MiB chunks, and range plans of
//!   maximum-size objects fed a few bytes: they fail at once;
//! - [`Layout::for_ciphertext`] at absurd lengths (`u64::MAX`, one past the largest object, the
//!   "impossible remainder" of 1..=16 bytes after whole chunks) and [`Layout::plan`] with ranges
//!   past the end or reversed;
//! - the chunk-index limit (FORMAT.md §7) on both the sealing and the opening side.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::time::{Duration, Instant};

use encrypt_repo_format::aead::TAG_LEN;
use encrypt_repo_format::{
    ChunkSize, DataKey, DataKeyId, Decryptor, Error, HEADER_LEN, Header, Layout, MAGIC, MAX_CHUNKS,
    ObjectContext, ObjectOpener, ObjectSealer, RepositoryId, Salt, open_object, open_range,
    seal_object, sealed_len,
};

const KEY: [u8; 32] = [0x77; 32];
const KEY_ID: DataKeyId = DataKeyId([0x88; 16]);
const REPO: RepositoryId = RepositoryId([0x99; 16]);
const PATH: &str = "malformed/object.bin";

/// SplitMix64.
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
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn key() -> DataKey {
    DataKey::from_bytes(KEY)
}

fn ctx() -> ObjectContext<'static> {
    ObjectContext::bound(REPO, PATH)
}

fn chunk(log2: u8) -> ChunkSize {
    ChunkSize::from_log2(log2).unwrap()
}

fn sealed(len: usize, log2: u8) -> Vec<u8> {
    let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
    seal_object(&key(), KEY_ID, &ctx(), chunk(log2), &pt).unwrap()
}

/// Opens `bytes` whole and streamed (batch 1, in two pieces). Both must fail and the stream must
/// release no plaintext. Returns the whole-object error.
fn open_fails(bytes: &[u8]) -> Error {
    let err = open_object(&key(), &ctx(), bytes).expect_err("malformed input accepted");
    if let Ok(opener) = ObjectOpener::new(bytes, &key(), &ctx()) {
        let mut dec = Decryptor::new(opener, 1);
        let mut out = Vec::new();
        let body = &bytes[HEADER_LEN..];
        let (a, b) = body.split_at(body.len() / 2);
        let pushed = dec.push(a, &mut out).and_then(|()| dec.push(b, &mut out));
        let finished = dec.finish(&mut out);
        assert!(
            pushed.is_err() || finished.is_err(),
            "streamed open accepted"
        );
        assert!(out.is_empty(), "streamed open released {} bytes", out.len());
    }
    err
}

#[test]
fn every_short_prefix_fails() {
    let mut cases = 0;
    for full in [sealed(100, 16), sealed(0, 16), sealed(70_000, 16)] {
        for n in 0..=(HEADER_LEN + TAG_LEN + 1).min(full.len() - 1) {
            let prefix = &full[..n];
            let err = open_fails(prefix);
            if n < HEADER_LEN {
                let want = Error::TruncatedHeader {
                    len: n,
                    need: HEADER_LEN,
                };
                assert_eq!(err, want, "prefix {n}");
                assert_eq!(Header::parse(prefix), Err(want.clone()));
                assert_eq!(
                    ObjectOpener::new(prefix, &key(), &ctx()).err(),
                    Some(want.clone())
                );
            } else if n < HEADER_LEN + TAG_LEN {
                assert_eq!(err, Error::Truncated { chunk: 0 }, "prefix {n}");
            } else {
                assert_eq!(err, Error::Authentication { chunk: 0 }, "prefix {n}");
            }
            cases += 1;
        }
    }
    eprintln!("{cases} short prefixes rejected");
}

#[test]
fn random_garbage_fails() {
    let mut rng = Rng(0x5eed);
    let real_header = sealed(10, 16)[..HEADER_LEN].to_vec();
    let mut cases = 0;
    for i in 0..2000 {
        let len = rng.below(400);
        let mut g = rng.bytes(len);
        match i % 4 {
            // Pure garbage.
            0 => {
                let err = open_fails(&g);
                if g.len() >= 10 && g[..8] != MAGIC {
                    assert_eq!(err, Error::BadMagic);
                } else {
                    assert!(matches!(err, Error::TruncatedHeader { .. }), "{err:?}");
                }
            }
            // A valid magic, garbage after it.
            1 => {
                g.splice(0..g.len().min(8), MAGIC);
                let err = open_fails(&g);
                assert!(
                    matches!(
                        err,
                        Error::TruncatedHeader { .. }
                            | Error::UnsupportedVersion(_)
                            | Error::UnsupportedSuite(_)
                    ),
                    "{err:?}"
                );
            }
            // Plausible header fields (checks 1-7 pass), garbage data-key id, salt, commitment.
            2 => {
                g.resize(g.len().max(HEADER_LEN), 0);
                g[..8].copy_from_slice(&MAGIC);
                g[8..12].copy_from_slice(&[0, 1, 0, 1]);
                g[12] = 16 + (g[12] % 9);
                g[13] = 1;
                g[14..16].fill(0);
                assert_eq!(open_fails(&g), Error::CommitmentMismatch);
            }
            // A real header, garbage chunks of any length up to a little over two chunks.
            _ => {
                let body = rng.below(2 * chunk(16).sealed_bytes() + 100);
                let mut g = real_header.clone();
                g.extend(rng.bytes(body));
                let err = open_fails(&g);
                assert!(
                    matches!(err, Error::Authentication { .. } | Error::Truncated { .. }),
                    "{err:?}"
                );
            }
        }
        cases += 1;
    }
    eprintln!("{cases} garbage inputs rejected");
}

#[test]
fn each_header_check_and_their_order() {
    let good = sealed(1000, 16);
    let mut cases = 0;
    let mut expect = |what: String, bytes: &[u8], want: Error| {
        if matches!(
            want,
            Error::BindingMismatch { .. } | Error::CommitmentMismatch
        ) {
            // Checks 7 and 8 need the reader's context and key; the syntax is fine.
            assert!(Header::parse(bytes).is_ok(), "{what}");
        } else {
            assert_eq!(Header::parse(bytes).as_ref().err(), Some(&want), "{what}");
        }
        assert_eq!(
            ObjectOpener::new(bytes, &key(), &ctx()).err().as_ref(),
            Some(&want),
            "{what}"
        );
        if bytes.len() >= HEADER_LEN {
            assert_eq!(open_fails(bytes), want, "{what}");
        }
        cases += 1;
    };
    let with = |edits: &[(usize, u8)]| {
        let mut b = good.clone();
        for &(i, v) in edits {
            b[i] = v;
        }
        b
    };

    for (i, m) in MAGIC.iter().enumerate() {
        for bit in 0..8 {
            let b = with(&[(i, m ^ (1 << bit))]);
            expect(format!("magic byte {i} bit {bit}"), &b, Error::BadMagic);
        }
    }
    for v in [0u16, 2, 3, 0x0100, 0x0101, 0x8000, 0xffff] {
        let [hi, lo] = v.to_be_bytes();
        let b = with(&[(8, hi), (9, lo)]);
        expect(format!("version {v}"), &b, Error::UnsupportedVersion(v));
        // A future version is reported as such however short its header is.
        for n in [10, 11, 50, HEADER_LEN - 1] {
            expect(
                format!("version {v}, {n} bytes"),
                &b[..n],
                Error::UnsupportedVersion(v),
            );
        }
    }
    for v in [0u16, 2, 0x0100, 0x0101, 0xffff] {
        let [hi, lo] = v.to_be_bytes();
        expect(
            format!("suite {v}"),
            &with(&[(10, hi), (11, lo)]),
            Error::UnsupportedSuite(v),
        );
    }
    for e in (0..16).chain(25..=255u8) {
        expect(
            format!("chunk exponent {e}"),
            &with(&[(12, e)]),
            Error::InvalidChunkSize(e),
        );
    }
    for bit in 1..8 {
        for base in [0u8, 1] {
            expect(
                format!("flags {:#04x}", base | 1 << bit),
                &with(&[(13, base | 1 << bit)]),
                Error::InvalidFlags,
            );
        }
    }
    for (i, v) in [(14, 1u8), (14, 0x80), (15, 1), (15, 0xff)] {
        expect(
            format!("reserved byte {i} = {v}"),
            &with(&[(i, v)]),
            Error::InvalidFlags,
        );
    }
    // The order of FORMAT.md §2: the first failing check names the error.
    expect(
        "magic+version".into(),
        &with(&[(0, 0), (9, 2)]),
        Error::BadMagic,
    );
    expect(
        "version+suite+chunk".into(),
        &with(&[(9, 2), (11, 9), (12, 0)]),
        Error::UnsupportedVersion(2),
    );
    expect(
        "suite+chunk+flags".into(),
        &with(&[(11, 9), (12, 0), (13, 0xff)]),
        Error::UnsupportedSuite(9),
    );
    expect(
        "chunk+flags".into(),
        &with(&[(12, 0), (13, 0xff)]),
        Error::InvalidChunkSize(0),
    );
    expect(
        "flags+binding".into(),
        &with(&[(13, 0x02)]),
        Error::InvalidFlags,
    );
    expect(
        "binding before commitment".into(),
        &with(&[(13, 0), (95, 0)]),
        Error::BindingMismatch {
            header: false,
            expected: true,
        },
    );
    expect(
        "commitment".into(),
        &with(&[(95, good[95] ^ 1)]),
        Error::CommitmentMismatch,
    );
    eprintln!("{cases} malformed headers rejected");
}

#[test]
fn huge_claims_fail_at_once() {
    let t = Instant::now();
    let mut cases = 0;
    for log2 in 16..=24 {
        // Real headers of empty objects (so their commitment verifies), with 1..=17 bytes after
        // them: the header claims chunks of up to 16 MiB, nothing of that size may be allocated
        // or waited for.
        let empty = sealed(0, log2);
        for extra in [0, 1, 15, 17, 33] {
            let mut b = empty[..HEADER_LEN].to_vec();
            b.extend(std::iter::repeat_n(0xaa, extra));
            let err = open_fails(&b);
            assert!(
                matches!(err, Error::Truncated { .. } | Error::Authentication { .. }),
                "{err:?}"
            );
            cases += 1;
        }
        // The same header with its commitment broken.
        let mut b = empty[..HEADER_LEN + 1].to_vec();
        b[70] ^= 1;
        assert_eq!(open_fails(&b), Error::CommitmentMismatch);
        cases += 1;

        // Range plans of the largest object of this chunk size, fed a handful of bytes.
        let c = chunk(log2);
        let max = Layout::for_plaintext(c, Layout::max_plaintext_len(c)).unwrap();
        let header = &empty[..HEADER_LEN];
        let top = max.plaintext_len();
        for range in [0..top, top - 1..top, 0..1, top / 2..top / 2 + 1] {
            let plan = max.plan(range.clone()).unwrap();
            for span in [&[][..], &[0u8; 17][..], &empty[HEADER_LEN..]] {
                let r = open_range(&key(), &ctx(), header, &plan, span);
                assert!(r.is_err(), "{range:?} with {} bytes: {r:?}", span.len());
                cases += 1;
            }
        }
    }
    let elapsed = t.elapsed();
    eprintln!("{cases} inputs claiming huge sizes rejected in {elapsed:?}");
    // Generous for a shared machine: the work is a few HKDFs and tiny AES-GCM calls per case.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn impossible_ciphertext_lengths() {
    let (h, t) = (HEADER_LEN as u64, TAG_LEN as u64);
    let mut cases = 0;
    for c in ChunkSize::all() {
        let s = c.sealed_bytes() as u64;
        let mut invalid = |n: u64| {
            assert_eq!(
                Layout::for_ciphertext(c, n),
                Err(Error::InvalidCiphertextLength(n)),
                "2^{}: {n}",
                c.log2()
            );
            cases += 1;
        };
        // Shorter than a header and an empty chunk's tag.
        for n in 0..h + t {
            invalid(n);
        }
        // 1..=16 bytes after whole chunks: a cut tag, or an empty chunk after full ones.
        for k in [1, 2, 3, 1000, MAX_CHUNKS - 1, MAX_CHUNKS] {
            for r in 1..=t {
                invalid(h + k * s + r);
            }
        }
        let mut too_large = |n: u64| {
            assert!(
                matches!(Layout::for_ciphertext(c, n), Err(Error::TooLarge { .. })),
                "2^{}: {n}",
                c.log2()
            );
            cases += 1;
        };
        // One past the largest object, in every way.
        let max_ct = h + MAX_CHUNKS * s;
        too_large(max_ct + t + 1);
        too_large(max_ct + s);
        too_large(max_ct + s + 1000);
        too_large(h + (MAX_CHUNKS + 1) * s + t + 1);
        for n in [u64::MAX, u64::MAX - 1, u64::MAX - h, u64::MAX / 2, 1 << 63] {
            assert!(Layout::for_ciphertext(c, n).is_err(), "{n}");
            cases += 1;
        }
        // The edges that are valid map back exactly.
        for n in [
            h + t,
            h + s,
            h + s + t + 1,
            max_ct,
            max_ct - 1,
            max_ct - s + t + 1,
        ] {
            let l = Layout::for_ciphertext(c, n).unwrap();
            assert_eq!(l.ciphertext_len(), n);
            assert_eq!(Layout::for_plaintext(c, l.plaintext_len()).unwrap(), l);
        }
        assert_eq!(
            Layout::for_ciphertext(c, max_ct).unwrap().plaintext_len(),
            Layout::max_plaintext_len(c)
        );
        for p in [Layout::max_plaintext_len(c) + 1, u64::MAX] {
            assert!(matches!(
                Layout::for_plaintext(c, p),
                Err(Error::TooLarge { .. })
            ));
        }
        // Windows around the first chunk boundaries: valid lengths are exactly the images of
        // plaintext lengths.
        for k in 0..4u64 {
            let centre = h + k * s;
            for n in centre.saturating_sub(40)..centre + 40 {
                // A plaintext of m chunks maps to n iff p = n - H - m*T has exactly m chunks.
                let image = (1..=k + 2)
                    .filter_map(|m| n.checked_sub(h + m * t))
                    .find(|&p| Layout::for_plaintext(c, p).unwrap().ciphertext_len() == n);
                match (Layout::for_ciphertext(c, n), image) {
                    (Ok(l), Some(p)) => assert_eq!(l.plaintext_len(), p),
                    (Err(Error::InvalidCiphertextLength(m)), None) => assert_eq!(m, n),
                    other => panic!("2^{} length {n}: {other:?}", c.log2()),
                }
            }
        }
    }
    eprintln!("{cases} impossible ciphertext lengths rejected");
}

#[test]
#[allow(clippy::reversed_empty_ranges)]
fn plans_out_of_bounds_or_reversed() {
    let c = chunk(16);
    let cb = c.bytes() as u64;
    let mut cases = 0;
    for len in [0, 1, 3 * cb + 7] {
        let l = Layout::for_plaintext(c, len).unwrap();
        let bad = [
            0..len + 1,
            len..len + 1,
            len + 1..len + 1,
            len + 1..len,
            len + 5..len + 2,
            1..0,
            u64::MAX..u64::MAX,
            u64::MAX..0,
            0..u64::MAX,
            len..u64::MAX,
        ];
        for r in bad {
            assert_eq!(
                l.plan(r.clone()),
                Err(Error::RangeOutOfBounds {
                    start: r.start,
                    end: r.end,
                    len
                }),
                "len {len} range {r:?}"
            );
            cases += 1;
        }
        assert!(l.plan(len..len).unwrap().chunks.is_empty());
    }
    let l = Layout::for_plaintext(c, 3 * cb + 7).unwrap();
    assert!(l.plan(10..5).is_err());
    assert!(l.plan(3 * cb + 7..3 * cb + 6).is_err());
    eprintln!("{cases} bad ranges rejected");
}

#[test]
fn constructors_reject_bad_parameters() {
    for e in (0..16).chain(25..=255u8) {
        assert_eq!(ChunkSize::from_log2(e), Err(Error::InvalidChunkSize(e)));
    }
    for b in [
        0u64,
        1,
        3,
        1 << 15,
        (1 << 16) + 1,
        (1 << 16) - 1,
        3 << 16,
        1 << 25,
        1 << 63,
        u64::MAX,
    ] {
        assert!(ChunkSize::from_bytes(b).is_err(), "{b}");
    }
    for e in 16..=24u8 {
        assert_eq!(ChunkSize::from_bytes(1 << e).unwrap().log2(), e);
    }
    for n in [0, 1, 16, 31, 33, 64] {
        assert_eq!(
            DataKey::try_from_slice(&vec![0; n]).err(),
            Some(Error::InvalidKeyLength)
        );
    }
    assert!(DataKey::try_from_slice(&[0; 32]).is_ok());
}

#[test]
fn chunk_index_limit_on_both_sides() {
    let c = chunk(16);
    let sealer = ObjectSealer::with_salt(&key(), KEY_ID, &ctx(), c, Salt([3; 32]));
    let opener = ObjectOpener::new(sealer.header_bytes(), &key(), &ctx()).unwrap();
    let last = MAX_CHUNKS - 1;
    let pt = [9u8; 5];

    // The last allowed index seals and opens, as final or not.
    let mut final_chunk = vec![0; sealed_len(c, pt.len())];
    sealer
        .seal_chunks(last, &pt, true, &mut final_chunk)
        .unwrap();
    let mut out = [0u8; 5];
    opener
        .open_chunks(last, &final_chunk, true, &mut out)
        .unwrap();
    assert_eq!(out, pt);
    let full = vec![1u8; c.bytes()];
    let mut sealed_full = vec![0; c.sealed_bytes()];
    sealer
        .seal_chunks(last, &full, false, &mut sealed_full)
        .unwrap();
    let mut out_full = vec![0u8; c.bytes()];
    opener
        .open_chunks(last, &sealed_full, false, &mut out_full)
        .unwrap();
    assert_eq!(out_full, full);

    // One past it, or a batch running past it, is refused on both sides.
    let too_large =
        |r: Result<(), Error>| assert!(matches!(r, Err(Error::TooLarge { .. })), "{r:?}");
    too_large(sealer.seal_chunks(MAX_CHUNKS, &pt, true, &mut final_chunk));
    too_large(sealer.seal_chunks(u64::MAX, &pt, true, &mut final_chunk));
    let two = vec![1u8; c.bytes() + 1];
    let mut two_out = vec![0; sealed_len(c, two.len())];
    too_large(sealer.seal_chunks(last, &two, true, &mut two_out));
    too_large(opener.open_chunks(MAX_CHUNKS, &final_chunk, true, &mut out));
    too_large(opener.open_chunks(u64::MAX, &final_chunk, true, &mut out));
    let mut both = sealed_full.clone();
    both.extend_from_slice(&final_chunk);
    let mut both_out = vec![0; c.bytes() + pt.len()];
    too_large(opener.open_chunks(last, &both, true, &mut both_out));

    // Wrong lengths are usage errors, not panics.
    let usage = |r: Result<(), Error>| assert!(matches!(r, Err(Error::Usage(_))), "{r:?}");
    let mut short = vec![0; 3];
    usage(sealer.seal_chunks(0, &pt, true, &mut short));
    usage(sealer.seal_chunks(0, &pt, false, &mut final_chunk));
    usage(sealer.seal_chunks(1, &[], true, &mut [0u8; TAG_LEN]));
    usage(opener.open_chunks(last, &final_chunk, true, &mut [0u8; 4]));
    assert!(opener.open_chunks(0, &[], true, &mut []).is_err());
    assert!(opener.open_chunks(0, &[0; 15], true, &mut []).is_err());
}
