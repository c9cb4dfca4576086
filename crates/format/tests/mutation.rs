//! Modified ciphertexts are rejected, in the style of Tink's
//! `StreamingTestUtil.testModifiedCiphertext`.
//!
//! Objects of several 64 KiB chunks (4C+1234 bytes: five chunks with a short final one; exactly
//! 4C: four full chunks) and an empty object are mutated in every way listed below. For every
//! mutated object:
//!
//! - [`open_object`] must fail;
//! - a streaming [`Decryptor`] fed the mutated bytes (batch 1 in odd-sized pieces, and batch 8 in
//!   one piece) may release plaintext before it fails, but only a prefix of the original
//!   plaintext, and its `finish` never succeeds.
//!
//! Mutations: every bit of every header byte; one bit of every tag byte (and all bits of each
//! tag's first byte); a stride of body bytes plus each body's first and last byte; truncation at
//! 0, inside the header, and at every chunk boundary and one byte either side; appending 1 byte,
//! 16 bytes and whole sealed chunks; deleting, duplicating and swapping chunks; splicing chunk `i`
//! of another object sealed under the same data key and path (other salt); and swapping headers
//! between two objects of the same key (same path, and different paths).
//!
//! Everything runs in one test so that the process-global [`aead::chunk_open_attempts`] counter
//! can also show that header mutations are rejected before any chunk is opened.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;

use encrypt_repo_format::{
    ChunkSize, DataKey, DataKeyId, Decryptor, HEADER_LEN, ObjectContext, ObjectOpener,
    RepositoryId, aead, open_object, seal_object,
};

const KEY: [u8; 32] = [0x5a; 32];
const KEY_ID: DataKeyId = DataKeyId([0x01; 16]);
const REPO: RepositoryId = RepositoryId([0x02; 16]);
const PATH: &str = "mutation/object.bin";
const OTHER_PATH: &str = "mutation/other.bin";
const TAG: usize = aead::TAG_LEN;

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
}

fn chunk64k() -> ChunkSize {
    ChunkSize::from_log2(16).unwrap()
}

fn seal(pt: &[u8], path: &str) -> Vec<u8> {
    let ctx = ObjectContext::bound(REPO, path);
    seal_object(&DataKey::from_bytes(KEY), KEY_ID, &ctx, chunk64k(), pt).unwrap()
}

/// A sealed object and its chunk boundaries.
struct Sealed {
    pt: Vec<u8>,
    bytes: Vec<u8>,
    /// Byte ranges of the sealed chunks (body + tag), in order.
    chunks: Vec<std::ops::Range<usize>>,
}

impl Sealed {
    fn new(len: usize, seed: u64, path: &str) -> Self {
        let mut rng = Rng(seed);
        let pt: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let bytes = seal(&pt, path);
        let s = chunk64k().sealed_bytes();
        let chunks = (HEADER_LEN..bytes.len())
            .step_by(s)
            .map(|a| a..(a + s).min(bytes.len()))
            .collect();
        Self { pt, bytes, chunks }
    }

    fn chunk(&self, k: usize) -> &[u8] {
        &self.bytes[self.chunks[k].clone()]
    }

    /// Header followed by the given sealed chunks.
    fn rebuild<'a>(&'a self, header: &[u8], parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut v = header.to_vec();
        for p in parts {
            v.extend_from_slice(p);
        }
        v
    }
}

#[derive(Default)]
struct Stats {
    cases: usize,
    accepted: Vec<String>,
    stream_accepted: Vec<String>,
    not_prefix: Vec<String>,
    header_cases_opening_chunks: Vec<String>,
    errors: BTreeMap<String, usize>,
    released_before_error: usize,
}

fn kind(e: &encrypt_repo_format::Error) -> String {
    let d = format!("{e:?}");
    d.split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Runs one mutated object through every reader and records the outcome.
fn check(
    stats: &mut Stats,
    rng: &mut Rng,
    name: &str,
    mutated: &[u8],
    pt: &[u8],
    path: &str,
    header_only: bool,
) {
    let key = DataKey::from_bytes(KEY);
    let ctx = ObjectContext::bound(REPO, path);
    stats.cases += 1;
    let before = aead::chunk_open_attempts();
    match open_object(&key, &ctx, mutated) {
        Ok(_) => stats.accepted.push(name.to_owned()),
        Err(e) => *stats.errors.entry(kind(&e)).or_default() += 1,
    }
    if header_only && aead::chunk_open_attempts() != before {
        stats.header_cases_opening_chunks.push(name.to_owned());
    }

    for batch in [1, 8] {
        let Ok(opener) = ObjectOpener::new(mutated, &key, &ctx) else {
            continue; // rejected before any plaintext could exist
        };
        let mut dec = Decryptor::new(opener, batch);
        let body = &mutated[HEADER_LEN..];
        let mut out = Vec::new();
        let mut pos = 0;
        let mut failed = false;
        while pos < body.len() {
            let p = if batch == 1 {
                (1 + rng.below(100_000)).min(body.len() - pos)
            } else {
                body.len()
            };
            if dec.push(&body[pos..pos + p], &mut out).is_err() {
                failed = true;
                break;
            }
            pos += p;
        }
        if !(out.len() <= pt.len() && out[..] == pt[..out.len()]) {
            stats.not_prefix.push(format!("{name} (batch {batch})"));
        }
        let released = out.len();
        let finished = dec.finish(&mut out);
        if failed && finished.is_ok() {
            stats
                .stream_accepted
                .push(format!("{name} (batch {batch}, after error)"));
        } else if finished.is_ok() {
            stats
                .stream_accepted
                .push(format!("{name} (batch {batch})"));
        }
        if out.len() != released && !(out.len() <= pt.len() && out[..] == pt[..out.len()]) {
            stats
                .not_prefix
                .push(format!("{name} (batch {batch}, finish)"));
        }
        stats.released_before_error += usize::from(released > 0);
    }
}

/// Every mutation of `obj`. `twin` is another object of the same length, data key and path
/// (other salt); `moved` is an object of the same data key at [`OTHER_PATH`].
fn mutate_all(
    stats: &mut Stats,
    rng: &mut Rng,
    label: &str,
    obj: &Sealed,
    twin: &Sealed,
    moved: &Sealed,
) {
    let start = stats.cases;
    let b = &obj.bytes;
    let n = obj.chunks.len();
    let pt = &obj.pt;
    let mut run = |stats: &mut Stats, name: String, m: Vec<u8>, header_only: bool| {
        assert_ne!(&m, b, "{name} is not a mutation");
        check(
            stats,
            rng,
            &format!("{label}: {name}"),
            &m,
            pt,
            PATH,
            header_only,
        );
    };

    // Every bit of every header byte.
    for i in 0..HEADER_LEN {
        for bit in 0..8 {
            let mut m = b.clone();
            m[i] ^= 1 << bit;
            run(stats, format!("header byte {i} bit {bit}"), m, true);
        }
    }
    // Every tag byte (one bit each, cycling through bit positions) and all bits of byte 0.
    for (k, r) in obj.chunks.iter().enumerate() {
        let tag = r.end - TAG..r.end;
        for (j, i) in tag.clone().enumerate() {
            let mut m = b.clone();
            m[i] ^= 1 << (j % 8);
            run(stats, format!("chunk {k} tag byte {j}"), m, false);
        }
        let mut m = b.clone();
        m[tag.start] ^= 0xff;
        run(stats, format!("chunk {k} tag byte 0 inverted"), m, false);
    }
    // A stride of body bytes, offset per chunk, plus each body's first and last byte.
    for (k, r) in obj.chunks.iter().enumerate() {
        let body = r.start..r.end - TAG;
        if body.is_empty() {
            continue;
        }
        let mut picks: Vec<usize> = body.clone().skip(k * 53).step_by(397).collect();
        picks.extend([body.start, body.end - 1]);
        picks.sort_unstable();
        picks.dedup();
        for i in picks {
            let mut m = b.clone();
            m[i] ^= 1 << (i % 8);
            run(
                stats,
                format!("chunk {k} body byte {}", i - body.start),
                m,
                false,
            );
        }
    }
    // Truncation: at 0, inside the header, at every chunk boundary and one byte either side.
    let mut cuts = vec![
        0,
        1,
        8,
        9,
        10,
        11,
        50,
        HEADER_LEN - 1,
        HEADER_LEN,
        HEADER_LEN + 1,
    ];
    for r in &obj.chunks {
        cuts.extend([
            r.start - 1,
            r.start,
            r.start + 1,
            r.end - 1,
            r.end,
            r.end + 1,
        ]);
        cuts.extend([r.end - TAG, r.end - TAG - 1, r.end - TAG + 1]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts.into_iter().filter(|&c| c < b.len()) {
        run(
            stats,
            format!("truncated to {cut} bytes"),
            b[..cut].to_vec(),
            false,
        );
    }
    // Appending.
    let first = obj.chunk(0).to_vec();
    let last = obj.chunk(n - 1).to_vec();
    let twin_last = twin.chunk(n - 1).to_vec();
    let appends: Vec<(&str, Vec<u8>)> = vec![
        ("1 zero byte", vec![0]),
        ("1 byte 0xff", vec![0xff]),
        ("16 zero bytes", vec![0; 16]),
        ("a copy of the last tag", last[last.len() - TAG..].to_vec()),
        ("a copy of chunk 0", first.clone()),
        ("a copy of the last chunk", last.clone()),
        ("the twin's last chunk", twin_last),
    ];
    for (what, tail) in appends {
        let mut m = b.clone();
        m.extend_from_slice(&tail);
        run(stats, format!("appended {what}"), m, false);
    }
    // Deleting, duplicating, swapping chunks.
    let header = &b[..HEADER_LEN];
    for k in 0..n {
        let del = obj.rebuild(header, (0..n).filter(|&i| i != k).map(|i| obj.chunk(i)));
        run(stats, format!("chunk {k} deleted"), del, false);
        let dup = obj.rebuild(
            header,
            (0..n)
                .flat_map(|i| if i == k { vec![i, i] } else { vec![i] })
                .map(|i| obj.chunk(i)),
        );
        run(stats, format!("chunk {k} duplicated"), dup, false);
    }
    for i in 0..n {
        for j in i + 1..n {
            let order: Vec<usize> = (0..n)
                .map(|x| {
                    if x == i {
                        j
                    } else if x == j {
                        i
                    } else {
                        x
                    }
                })
                .collect();
            let m = obj.rebuild(header, order.into_iter().map(|x| obj.chunk(x)));
            if m != *b {
                run(stats, format!("chunks {i} and {j} swapped"), m, false);
            }
        }
    }
    // Splicing chunk k of another object (same data key, same path, other salt).
    for k in 0..n {
        let m = obj.rebuild(
            header,
            (0..n).map(|i| if i == k { twin.chunk(i) } else { obj.chunk(i) }),
        );
        run(stats, format!("chunk {k} spliced from the twin"), m, false);
    }
    // Swapping headers: the twin's (same key, same path), the moved object's (other path).
    let mut m = twin.bytes[..HEADER_LEN].to_vec();
    m.extend_from_slice(&b[HEADER_LEN..]);
    run(stats, "header of the twin (same path)".into(), m, false);
    let mut m = moved.bytes[..HEADER_LEN].to_vec();
    m.extend_from_slice(&b[HEADER_LEN..]);
    run(
        stats,
        "header of an object at another path".into(),
        m.clone(),
        true,
    );
    // ... and read at the other path, where that header's commitment verifies.
    check(
        stats,
        rng,
        &format!("{label}: header of an object at another path, read there"),
        &m,
        pt,
        OTHER_PATH,
        false,
    );
    eprintln!("{label}: {} mutated objects", stats.cases - start);
}

#[test]
fn modified_ciphertexts_are_rejected() {
    let t = std::time::Instant::now();
    let c = chunk64k().bytes();
    let key = DataKey::from_bytes(KEY);
    let mut rng = Rng(99);
    let mut stats = Stats::default();
    for (label, len) in [
        ("4C+1234", 4 * c + 1234),
        ("4C", 4 * c),
        ("empty", 0),
        ("1 byte", 1),
    ] {
        let obj = Sealed::new(len, len as u64, PATH);
        let twin = Sealed::new(len, len as u64 + 1, PATH);
        let moved = Sealed::new(len, len as u64 + 2, OTHER_PATH);
        assert_eq!(obj.chunks.len(), len.div_ceil(c).max(1));

        // Controls: the unmodified objects open, whole and streamed.
        assert_eq!(
            open_object(&key, &ObjectContext::bound(REPO, PATH), &obj.bytes).unwrap(),
            obj.pt
        );
        let before = stats.cases;
        let mut control = Stats::default();
        check(
            &mut control,
            &mut rng,
            "control",
            &obj.bytes,
            &obj.pt,
            PATH,
            false,
        );
        assert_eq!(control.accepted, ["control"]);
        assert_eq!(control.stream_accepted.len(), 2);
        assert!(control.not_prefix.is_empty());
        assert_eq!(stats.cases, before);

        mutate_all(&mut stats, &mut rng, label, &obj, &twin, &moved);
    }
    eprintln!(
        "{} mutated objects in {:?}; rejections by error: {:?}; {} streamed reads released a \
         verified prefix before failing",
        stats.cases,
        t.elapsed(),
        stats.errors,
        stats.released_before_error
    );
    assert!(
        stats.accepted.is_empty(),
        "open_object accepted: {:#?}",
        stats.accepted
    );
    assert!(
        stats.stream_accepted.is_empty(),
        "streaming finish() succeeded: {:#?}",
        stats.stream_accepted
    );
    assert!(
        stats.not_prefix.is_empty(),
        "streaming released non-prefix plaintext: {:#?}",
        stats.not_prefix
    );
    assert!(
        stats.header_cases_opening_chunks.is_empty(),
        "header mutations reached chunk opening: {:#?}",
        stats.header_cases_opening_chunks
    );
    assert_eq!(stats.errors.values().sum::<usize>(), stats.cases);
    assert!(stats.cases > 3000, "{}", stats.cases);
}
