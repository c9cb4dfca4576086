//! Random access (FORMAT.md §6): a plaintext range is read from the header plus exactly the
//! covering chunks, and only those chunks are opened.
//!
//! For every range tested: [`Layout::plan`] names exactly the covering chunks
//! (`start / C ..= (end - 1) / C`) and their exact ciphertext span; [`open_range`] fed exactly
//! that span returns the same bytes as a full decrypt; and the process-global
//! [`aead::chunk_open_attempts`] counter rises by exactly the number of covering chunks.
//!
//! Ranges: all `(start, end)` pairs of a ~300-byte one-chunk object; all pairs over a set of
//! offsets (every chunk boundary ±2 and 40 random offsets) of two 3-chunk objects (short and full
//! final chunk); random ranges of a 20-chunk object, also through a streaming
//! [`Decryptor::for_range`] in odd pieces. Empty ranges open nothing; ranges past the end or
//! reversed are [`Error::RangeOutOfBounds`]; a range reaching the end of a truncated object fails.
//!
//! The open counter is process-global and tests run on parallel threads, so every test here
//! holds [`COUNTER_LOCK`].

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use encrypt_repo_format::{
    ChunkSize, DataKey, DataKeyId, Decryptor, Error, HEADER_LEN, Layout, ObjectContext,
    ObjectOpener, RangePlan, RepositoryId, aead, open_object, open_range, seal_object,
};

const KEY: [u8; 32] = [0x07; 32];
const KEY_ID: DataKeyId = DataKeyId([0x33; 16]);
const REPO: RepositoryId = RepositoryId([0x44; 16]);
const PATH: &str = "random/access.bin";

static COUNTER_LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    COUNTER_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

fn chunk64k() -> ChunkSize {
    ChunkSize::from_log2(16).unwrap()
}

/// A sealed object of `len` random bytes at 64 KiB chunks.
struct Object {
    pt: Vec<u8>,
    sealed: Vec<u8>,
    layout: Layout,
}

impl Object {
    fn new(len: usize, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let pt: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let key = DataKey::from_bytes(KEY);
        let sealed = seal_object(&key, KEY_ID, &ctx(), chunk64k(), &pt).unwrap();
        let layout = Layout::for_ciphertext(chunk64k(), sealed.len() as u64).unwrap();
        assert_eq!(layout.plaintext_len(), len as u64);
        assert_eq!(open_object(&key, &ctx(), &sealed).unwrap(), pt);
        Self { pt, sealed, layout }
    }

    fn len(&self) -> u64 {
        self.pt.len() as u64
    }
}

fn ctx() -> ObjectContext<'static> {
    ObjectContext::bound(REPO, PATH)
}

/// Checks the plan of `start..end` against an independent computation and returns it.
fn checked_plan(obj: &Object, start: u64, end: u64) -> RangePlan {
    let plan = obj.layout.plan(start..end).unwrap();
    let c = obj.layout.chunk_size().bytes() as u64;
    let s = obj.layout.chunk_size().sealed_bytes() as u64;
    let n = obj.layout.chunk_count();
    assert_eq!(plan.len, end - start);
    if start == end {
        assert!(plan.chunks.is_empty(), "{start}..{end}: {plan:?}");
        assert!(plan.ciphertext.is_empty(), "{start}..{end}: {plan:?}");
        return plan;
    }
    let (first, last) = (start / c, (end - 1) / c);
    assert_eq!(plan.chunks, first..last + 1, "{start}..{end}");
    let span_end = (HEADER_LEN as u64 + (last + 1) * s).min(obj.sealed.len() as u64);
    assert_eq!(
        plan.ciphertext,
        HEADER_LEN as u64 + first * s..span_end,
        "{start}..{end}"
    );
    assert_eq!(plan.skip as u64, start - first * c);
    assert_eq!(plan.final_included, last == n - 1, "{start}..{end}");
    plan
}

/// Reads `start..end` with [`open_range`] fed exactly the planned span; checks the bytes and
/// that exactly the covering chunks were opened. Returns the chunk indices opened.
fn read_range(obj: &Object, start: u64, end: u64) -> std::ops::Range<u64> {
    let plan = checked_plan(obj, start, end);
    let span = &obj.sealed[plan.ciphertext.start as usize..plan.ciphertext.end as usize];
    let before = aead::chunk_open_attempts();
    let got = open_range(
        &DataKey::from_bytes(KEY),
        &ctx(),
        &obj.sealed[..HEADER_LEN],
        &plan,
        span,
    )
    .unwrap_or_else(|e| panic!("range {start}..{end}: {e}"));
    let opened = aead::chunk_open_attempts() - before;
    assert!(
        got == obj.pt[start as usize..end as usize],
        "range {start}..{end}: wrong bytes"
    );
    let covering = if start == end {
        0
    } else {
        (end - 1) / obj.layout.chunk_size().bytes() as u64
            - start / obj.layout.chunk_size().bytes() as u64
            + 1
    };
    assert_eq!(
        opened, covering,
        "range {start}..{end} opened {opened} chunks, {covering} cover it"
    );
    plan.chunks
}

/// Every chunk boundary ±2 (clamped to the object) plus `random` random offsets.
fn offsets(obj: &Object, random: usize, rng: &mut Rng) -> Vec<u64> {
    let c = obj.layout.chunk_size().bytes() as u64;
    let len = obj.len();
    let mut set = BTreeSet::new();
    let mut boundaries: Vec<u64> = (0..=len / c).map(|k| k * c).collect();
    boundaries.push(len);
    for b in boundaries {
        for d in -2i64..=2 {
            let o = b as i64 + d;
            if (0..=len as i64).contains(&o) {
                set.insert(o as u64);
            }
        }
    }
    while set.len() < random + 20 {
        set.insert(rng.below(len + 1));
    }
    set.into_iter().collect()
}

#[test]
fn every_range_of_a_small_object() {
    let _guard = lock();
    let obj = Object::new(300, 1);
    let mut n = 0;
    for start in 0..=obj.len() {
        for end in start..=obj.len() {
            let chunks = read_range(&obj, start, end);
            assert!(chunks.is_empty() || chunks == (0..1));
            n += 1;
        }
    }
    eprintln!("300-byte object: {n} ranges (all pairs), each opened at most chunk 0");
    assert_eq!(n, 301 * 302 / 2);
}

#[test]
fn all_pairs_of_sampled_offsets_of_three_chunk_objects() {
    let _guard = lock();
    let c = chunk64k().bytes();
    let mut rng = Rng(2);
    let mut total = 0;
    for (len, random) in [(2 * c + 12_345, 40), (3 * c, 25)] {
        let obj = Object::new(len, len as u64);
        assert_eq!(obj.layout.chunk_count(), 3);
        let offs = offsets(&obj, random, &mut rng);
        let mut n = 0;
        for (i, &start) in offs.iter().enumerate() {
            for &end in &offs[i..] {
                read_range(&obj, start, end);
                n += 1;
            }
        }
        let (c, l) = (c as u64, len as u64);
        for (start, end) in [
            (0, 1),
            (c - 2, c),
            (c - 2, c + 2),
            (c, 2 * c),
            (2 * c - 1, l),
            (1, l),
        ] {
            let chunks = read_range(&obj, start, end);
            eprintln!("len {len}: range {start}..{end} -> chunks {chunks:?}");
        }
        eprintln!(
            "{}-chunk object of {len} bytes: {} offsets, {n} ranges",
            obj.layout.chunk_count(),
            offs.len()
        );
        total += n;
    }
    assert!(total > 2000, "{total}");
}

#[test]
fn random_ranges_of_a_twenty_chunk_object() {
    let _guard = lock();
    let c = chunk64k().bytes() as u64;
    let obj = Object::new(20 * c as usize - 777, 3);
    assert_eq!(obj.layout.chunk_count(), 20);
    let mut rng = Rng(4);
    let key = DataKey::from_bytes(KEY);
    for i in 0..200 {
        // Mix short ranges, ranges near boundaries and long ones.
        let (start, end) = match i % 4 {
            0 => {
                let s = rng.below(obj.len());
                (s, (s + 1 + rng.below(100)).min(obj.len()))
            }
            1 => {
                let b = c * (1 + rng.below(19));
                (b - 1 - rng.below(3), b + rng.below(3))
            }
            2 => (rng.below(obj.len()), obj.len()),
            _ => {
                let a = rng.below(obj.len() + 1);
                let b = rng.below(obj.len() + 1);
                (a.min(b), a.max(b))
            }
        };
        let chunks = read_range(&obj, start, end);
        if i < 8 {
            eprintln!("20-chunk object: range {start}..{end} -> chunks {chunks:?}");
        }

        // The same range through a streaming range decryptor, in odd pieces, batch 1..=3.
        let plan = obj.layout.plan(start..end).unwrap();
        let span = &obj.sealed[plan.ciphertext.start as usize..plan.ciphertext.end as usize];
        let opener = ObjectOpener::new(&obj.sealed[..HEADER_LEN], &key, &ctx()).unwrap();
        let mut dec = Decryptor::for_range(opener, &plan, 1 + i % 3);
        let mut out = Vec::new();
        let before = aead::chunk_open_attempts();
        let mut pos = 0;
        while pos < span.len() {
            let p = (1 + rng.below(100_000) as usize).min(span.len() - pos);
            dec.push(&span[pos..pos + p], &mut out).unwrap();
            pos += p;
        }
        dec.finish(&mut out).unwrap();
        assert!(
            out == obj.pt[start as usize..end as usize],
            "{start}..{end}"
        );
        assert_eq!(
            aead::chunk_open_attempts() - before,
            plan.chunks.end - plan.chunks.start
        );
    }
}

#[test]
fn empty_and_out_of_bounds_ranges() {
    let _guard = lock();
    let c = chunk64k().bytes() as u64;
    let obj = Object::new(3 * c as usize + 5, 5);
    let len = obj.len();
    let key = DataKey::from_bytes(KEY);
    for k in [0, 1, c - 1, c, 2 * c + 3, len - 1, len] {
        let plan = obj.layout.plan(k..k).unwrap();
        assert_eq!(plan.chunks, 0..0);
        assert_eq!(plan.ciphertext, 0..0);
        assert_eq!(plan.len, 0);
        let before = aead::chunk_open_attempts();
        let got = open_range(&key, &ctx(), &obj.sealed[..HEADER_LEN], &plan, &[]).unwrap();
        assert!(got.is_empty());
        assert_eq!(
            aead::chunk_open_attempts(),
            before,
            "empty range opened a chunk"
        );
        // An empty range accepts no ciphertext.
        assert!(open_range(&key, &ctx(), &obj.sealed[..HEADER_LEN], &plan, &[0]).is_err());
    }
    #[allow(clippy::reversed_empty_ranges)]
    let bad = [
        0..len + 1,
        len..len + 1,
        len + 1..len + 1,
        len + 1..len + 100,
        5..4,
        len..0,
        u64::MAX - 1..u64::MAX,
        0..u64::MAX,
        u64::MAX..0,
    ];
    for r in bad {
        assert_eq!(
            obj.layout.plan(r.clone()),
            Err(Error::RangeOutOfBounds {
                start: r.start,
                end: r.end,
                len
            }),
            "{r:?}"
        );
    }
}

#[test]
fn wrong_span_and_truncated_end_fail() {
    let _guard = lock();
    let c = chunk64k().bytes() as u64;
    let obj = Object::new(20 * c as usize - 777, 6);
    let key = DataKey::from_bytes(KEY);
    let header = &obj.sealed[..HEADER_LEN];
    let open = |plan: &RangePlan, span: &[u8]| open_range(&key, &ctx(), header, plan, span);
    for (start, end) in [
        (0, 10),
        (c - 3, c + 3),
        (5 * c, 8 * c),
        (obj.len() - 9, obj.len()),
    ] {
        let plan = obj.layout.plan(start..end).unwrap();
        let span = &obj.sealed[plan.ciphertext.start as usize..plan.ciphertext.end as usize];
        assert!(open(&plan, span).is_ok());
        // One byte short, one byte extra, shifted by one chunk: all fail.
        assert!(
            open(&plan, &span[..span.len() - 1]).is_err(),
            "{start}..{end}"
        );
        let mut longer = span.to_vec();
        longer.push(0);
        assert!(open(&plan, &longer).is_err(), "{start}..{end}");
        let s = chunk64k().sealed_bytes();
        let shifted = plan.ciphertext.start as usize + s;
        if shifted + span.len() <= obj.sealed.len() {
            assert!(open(&plan, &obj.sealed[shifted..shifted + span.len()]).is_err());
        }
    }

    // An object truncated at a chunk boundary has a valid-looking length (10 full chunks); a
    // range reaching its apparent end opens chunk 9 as final and must fail.
    let s = chunk64k().sealed_bytes();
    let truncated = &obj.sealed[..HEADER_LEN + 10 * s];
    let layout = Layout::for_ciphertext(chunk64k(), truncated.len() as u64).unwrap();
    assert_eq!(layout.plaintext_len(), 10 * c);
    let plan = layout.plan(10 * c - 5..10 * c).unwrap();
    assert!(plan.final_included);
    let span = &truncated[plan.ciphertext.start as usize..plan.ciphertext.end as usize];
    assert_eq!(
        open_range(&key, &ctx(), header, &plan, span),
        Err(Error::Authentication { chunk: 9 })
    );
    // A range that stops before the apparent end verifies what it returns.
    let plan = layout.plan(0..9 * c).unwrap();
    let span = &truncated[plan.ciphertext.start as usize..plan.ciphertext.end as usize];
    assert_eq!(
        open_range(&key, &ctx(), header, &plan, span).unwrap(),
        obj.pt[..9 * c as usize]
    );
}

/// A range plan computed from a length two bytes longer than the stored object (a store whose
/// reported size is wrong, or a range request clamped at the object's real end): the final chunk
/// verifies, but holds fewer bytes than the plan asks for. The read must fail rather than
/// return `Ok` with fewer than `plan.len` bytes (`Decryptor::finish` checks that the whole
/// requested length was produced).
#[test]
fn range_read_never_returns_short() {
    let _guard = lock();
    let c = chunk64k().bytes() as u64;
    let obj = Object::new(3 * c as usize + 5, 7);
    let claimed = Layout::for_ciphertext(chunk64k(), obj.sealed.len() as u64 + 2).unwrap();
    assert_eq!(claimed.plaintext_len(), 3 * c + 7);
    let plan = claimed.plan(3 * c + 2..3 * c + 7).unwrap();
    assert!(plan.final_included);
    let end = (plan.ciphertext.end as usize).min(obj.sealed.len());
    let span = &obj.sealed[plan.ciphertext.start as usize..end];
    let r = open_range(
        &DataKey::from_bytes(KEY),
        &ctx(),
        &obj.sealed[..HEADER_LEN],
        &plan,
        span,
    );
    if let Ok(got) = r {
        assert_eq!(
            got.len() as u64,
            plan.len,
            "open_range returned Ok with {} of {} requested bytes",
            got.len(),
            plan.len
        );
    }
}
