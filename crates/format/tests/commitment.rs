//! Key commitment (FORMAT.md §3): a wrong data key, a wrong repository id, a moved object or a
//! header taken from another object fails with [`Error::CommitmentMismatch`] before any chunk
//! is opened; a path-bound object read as unbound (or the reverse) fails with
//! [`Error::BindingMismatch`], also before any chunk.
//!
//! "Before any chunk" is shown with the process-global [`aead::chunk_open_attempts`] counter,
//! which must not move for a rejected object and must rise by exactly the chunk count for a
//! correct open (so the counter is shown to work). The counter is shared by all threads of this
//! binary, so it holds one test only.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use encrypt_repo_format::{
    ChunkSize, DataKey, DataKeyId, Decryptor, Error, HEADER_LEN, Layout, ObjectContext,
    ObjectOpener, RepositoryId, aead, open_object, open_range, seal_object,
};

const KEY: [u8; 32] = [0x11; 32];
const KEY_ID: DataKeyId = DataKeyId([0x22; 16]);
const REPO: RepositoryId = RepositoryId([0x33; 16]);
const PATH: &str = "commitment/object.bin";

/// Every way `sealed` can be opened: [`ObjectOpener::new`], [`open_object`], [`open_range`]
/// (whole object) and a streaming [`Decryptor`]. Each must fail with `want` and open no chunk.
fn assert_rejected(
    what: &str,
    key: &DataKey,
    ctx: &ObjectContext<'_>,
    sealed: &[u8],
    want: &Error,
) {
    let before = aead::chunk_open_attempts();
    assert_eq!(
        ObjectOpener::new(sealed, key, ctx).err().as_ref(),
        Some(want),
        "{what}: ObjectOpener::new"
    );
    assert_eq!(
        open_object(key, ctx, sealed).as_ref(),
        Err(want),
        "{what}: open_object"
    );
    let chunk = ChunkSize::from_log2(sealed[12]).unwrap();
    let layout = Layout::for_ciphertext(chunk, sealed.len() as u64).unwrap();
    let plan = layout.plan(0..layout.plaintext_len()).unwrap();
    let span = &sealed[plan.ciphertext.start as usize..plan.ciphertext.end as usize];
    assert_eq!(
        open_range(key, ctx, &sealed[..HEADER_LEN], &plan, span).as_ref(),
        Err(want),
        "{what}: open_range"
    );
    assert_eq!(
        aead::chunk_open_attempts(),
        before,
        "{what}: a chunk was opened before the rejection"
    );
    // The error says what failed and carries no key material.
    let shown = format!("{want} {want:?}");
    assert!(!shown.contains(&hex(key.expose_secret())), "{shown}");
    assert!(!shown.contains(&hex(&KEY)), "{shown}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn commitment_failures_open_no_chunk() {
    let key = DataKey::from_bytes(KEY);
    let chunk = ChunkSize::from_log2(16).unwrap();
    let c = chunk.bytes();
    let pt: Vec<u8> = (0..4 * c + 99).map(|i| (i * 7 + 3) as u8).collect();
    let bound = ObjectContext::bound(REPO, PATH);
    let unbound = ObjectContext::unbound(REPO);
    let sealed = seal_object(&key, KEY_ID, &bound, chunk, &pt).unwrap();
    let sealed_unbound = seal_object(&key, KEY_ID, &unbound, chunk, &pt).unwrap();
    let n = Layout::for_plaintext(chunk, pt.len() as u64)
        .unwrap()
        .chunk_count();
    assert_eq!(n, 5);

    // The counter works: a correct open opens every chunk once, a range only its chunks.
    for (what, s, ctx) in [
        ("bound", &sealed, &bound),
        ("unbound", &sealed_unbound, &unbound),
    ] {
        let before = aead::chunk_open_attempts();
        assert_eq!(open_object(&key, ctx, s).unwrap(), pt, "{what}");
        assert_eq!(aead::chunk_open_attempts() - before, n, "{what}");
        let layout = Layout::for_ciphertext(chunk, s.len() as u64).unwrap();
        let plan = layout.plan(c as u64 - 1..2 * c as u64 + 1).unwrap();
        let span = &s[plan.ciphertext.start as usize..plan.ciphertext.end as usize];
        let before = aead::chunk_open_attempts();
        let got = open_range(&key, ctx, &s[..HEADER_LEN], &plan, span).unwrap();
        assert_eq!(got, pt[c - 1..2 * c + 1]);
        assert_eq!(aead::chunk_open_attempts() - before, 3, "{what}");
        // Streaming, batch 1: one open per chunk as well.
        let before = aead::chunk_open_attempts();
        let mut dec = Decryptor::new(ObjectOpener::new(s, &key, ctx).unwrap(), 1);
        let mut out = Vec::new();
        dec.push(&s[HEADER_LEN..], &mut out).unwrap();
        dec.finish(&mut out).unwrap();
        assert_eq!(out, pt);
        assert_eq!(aead::chunk_open_attempts() - before, n, "{what}");
    }

    let wrong_key = DataKey::from_bytes([0x12; 32]);
    let mut one_bit_key = KEY;
    one_bit_key[31] ^= 0x80;
    let one_bit_key = DataKey::from_bytes(one_bit_key);
    let other_repo = RepositoryId([0x34; 16]);
    let mismatch = Error::CommitmentMismatch;
    let mut cases = 0;
    let mut reject =
        |what: &str, key: &DataKey, ctx: &ObjectContext<'_>, s: &[u8], want: &Error| {
            assert_rejected(what, key, ctx, s, want);
            cases += 1;
        };

    // Wrong data key.
    reject("wrong data key", &wrong_key, &bound, &sealed, &mismatch);
    reject(
        "data key off by one bit",
        &one_bit_key,
        &bound,
        &sealed,
        &mismatch,
    );
    reject(
        "wrong data key, unbound",
        &wrong_key,
        &unbound,
        &sealed_unbound,
        &mismatch,
    );
    // Wrong repository id.
    for r in [other_repo, RepositoryId([0; 16]), {
        let mut r = REPO;
        r.0[0] ^= 1;
        r
    }] {
        reject(
            "wrong repository",
            &key,
            &ObjectContext::bound(r, PATH),
            &sealed,
            &mismatch,
        );
        reject(
            "wrong repository, unbound",
            &key,
            &ObjectContext::unbound(r),
            &sealed_unbound,
            &mismatch,
        );
    }
    // Moved object: any other path.
    for p in [
        "",
        "commitment/object.bin ",
        "commitment/Object.bin",
        "commitment/object.bi",
        "x",
    ] {
        reject(
            "moved object",
            &key,
            &ObjectContext::bound(REPO, p),
            &sealed,
            &mismatch,
        );
    }
    // Bound vs unbound: the header's flag disagrees with the reader's context.
    reject(
        "bound object read as unbound",
        &key,
        &unbound,
        &sealed,
        &Error::BindingMismatch {
            header: true,
            expected: false,
        },
    );
    reject(
        "unbound object read as bound",
        &key,
        &bound,
        &sealed_unbound,
        &Error::BindingMismatch {
            header: false,
            expected: true,
        },
    );
    // The flag rewritten to match the reader: the flag is bound into the commitment.
    let mut stripped = sealed.clone();
    stripped[13] = 0;
    reject(
        "path-bound flag cleared",
        &key,
        &unbound,
        &stripped,
        &mismatch,
    );
    let mut added = sealed_unbound.clone();
    added[13] = 1;
    reject("path-bound flag set", &key, &bound, &added, &mismatch);
    // Other header fields bound into the commitment: data-key id, chunk size, salt.
    let mut id = sealed.clone();
    id[16] ^= 1;
    reject("data-key id changed", &key, &bound, &id, &mismatch);
    let mut salt = sealed.clone();
    salt[40] ^= 1;
    reject("salt changed", &key, &bound, &salt, &mismatch);
    let mut commitment = sealed.clone();
    commitment[95] ^= 1;
    reject("commitment changed", &key, &bound, &commitment, &mismatch);
    let mut chunk_size = sealed.clone();
    chunk_size[12] = 17;
    reject("chunk size changed", &key, &bound, &chunk_size, &mismatch);
    // A header from an object at another path (same data key), on this object's chunks.
    let elsewhere =
        seal_object(&key, KEY_ID, &ObjectContext::bound(REPO, "x/y"), chunk, &pt).unwrap();
    let mut swapped = elsewhere[..HEADER_LEN].to_vec();
    swapped.extend_from_slice(&sealed[HEADER_LEN..]);
    reject(
        "header from another path",
        &key,
        &bound,
        &swapped,
        &mismatch,
    );
    // A header from an object of another repository (same data key).
    let other = seal_object(
        &key,
        KEY_ID,
        &ObjectContext::bound(other_repo, PATH),
        chunk,
        &pt,
    )
    .unwrap();
    let mut swapped = other[..HEADER_LEN].to_vec();
    swapped.extend_from_slice(&sealed[HEADER_LEN..]);
    reject(
        "header from another repository",
        &key,
        &bound,
        &swapped,
        &mismatch,
    );

    eprintln!("{cases} commitment cases, none opened a chunk");
    assert_eq!(cases, 24);

    // And the counter still works after all that.
    let before = aead::chunk_open_attempts();
    open_object(&key, &bound, &sealed).unwrap();
    assert_eq!(aead::chunk_open_attempts() - before, n);
}
