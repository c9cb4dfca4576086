//! Known-answer tests of the AES-256-GCM wrapper.
//!
//! 1. Every Wycheproof `aes_gcm_test.json` case our API can express (256-bit key, 96-bit nonce,
//!    128-bit tag) through [`Aes256Gcm::open`], [`Aes256Gcm::seal`] and
//!    [`Aes256Gcm::seal_in_place`].
//! 2. The Wycheproof C2SP chunked-encryption (Cobblestone-256) vectors, run through a test-side
//!    Cobblestone decryptor whose every chunk is opened by [`Aes256Gcm::open`]. Their `ct` is
//!    zlib-compressed, so this file carries a small zlib/DEFLATE decoder. `crates/format/C2SP.md`
//!    says what these vectors check and how our format differs from Cobblestone.
//! 3. The exact byte layout of [`chunk_nonce`] (FORMAT.md §4).

use aws_lc_rs::aead::NONCE_LEN;
use aws_lc_rs::{constant_time, digest, hkdf};
use wycheproof::TestResult;
use wycheproof::chunked_encryption::TestFlag as CeFlag;

use super::{Aes256Gcm, Rejected, TAG_LEN, chunk_nonce};

// ---------------------------------------------------------------------------------------------
// 1. Wycheproof AES-GCM
// ---------------------------------------------------------------------------------------------

/// `aes_gcm_test.json` (wycheproof 0.7.0) holds 66 cases with a 256-bit key, 96-bit nonce and
/// 128-bit tag: 39 valid (tcId 91..=129) and 27 invalid (tcId 130..=156, modified tags).
/// Update these if the wycheproof crate is upgraded and the file grows.
const GCM_256_96_VALID: usize = 39;
const GCM_256_96_INVALID: usize = 27;

#[test]
fn wycheproof_aes_gcm_256_96() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).unwrap();
    let (mut valid, mut invalid, mut skipped) = (0usize, 0usize, 0usize);
    for group in &set.test_groups {
        // `Aes256Gcm` only takes a 32-byte key (`&[u8; 32]`), a 12-byte nonce (`[u8; NONCE_LEN]`)
        // and a 16-byte tag (anything else is `Rejected`). The 128- and 192-bit key groups and the
        // groups with 0- to 2056-bit nonces cannot be expressed through its API, so they are
        // skipped here, deliberately and visibly (counted in `skipped`).
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            skipped += group.tests.len();
            continue;
        }
        for t in &group.tests {
            let id = t.tc_id;
            let key: [u8; 32] = t.key.as_slice().try_into().unwrap();
            let nonce: [u8; NONCE_LEN] = t.nonce.as_slice().try_into().unwrap();
            assert_eq!(t.tag.len(), TAG_LEN, "tcId {id}");
            let gcm = Aes256Gcm::new(&key);

            // Open into a buffer holding stale non-zero bytes, so that zeroing is observable.
            let mut pt = vec![0xA5u8; t.ct.len()];
            let opened = gcm.open(nonce, &t.aad, &t.ct, &t.tag, &mut pt);
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(opened, Ok(()), "tcId {id} ({}): open", t.comment);
                    assert_eq!(pt, *t.pt, "tcId {id}: plaintext");

                    let mut ct = vec![0u8; t.pt.len()];
                    let mut tag = [0u8; TAG_LEN];
                    gcm.seal(nonce, &t.aad, &t.pt, &mut ct, &mut tag)
                        .unwrap_or_else(|_| panic!("tcId {id}: seal"));
                    assert_eq!(ct, *t.ct, "tcId {id}: seal ciphertext");
                    assert_eq!(tag[..], t.tag[..], "tcId {id}: seal tag");

                    let mut in_out = t.pt.to_vec();
                    let tag = gcm
                        .seal_in_place(nonce, &t.aad, &mut in_out)
                        .unwrap_or_else(|_| panic!("tcId {id}: seal_in_place"));
                    assert_eq!(in_out, *t.ct, "tcId {id}: seal_in_place ciphertext");
                    assert_eq!(tag[..], t.tag[..], "tcId {id}: seal_in_place tag");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(opened, Err(Rejected), "tcId {id} ({}): open", t.comment);
                    assert!(
                        pt.iter().all(|&b| b == 0),
                        "tcId {id}: output not zeroed after rejection"
                    );
                    invalid += 1;
                }
            }
        }
    }
    let ran = valid + invalid;
    println!(
        "aes_gcm_test.json: {ran} cases run ({valid} valid, {invalid} invalid), {skipped} skipped \
         (other key/nonce/tag sizes), {} in file",
        set.number_of_tests
    );
    assert!(
        ran >= GCM_256_96_VALID + GCM_256_96_INVALID,
        "too few cases ran: {ran}"
    );
    assert_eq!((valid, invalid), (GCM_256_96_VALID, GCM_256_96_INVALID));
    assert_eq!(ran + skipped, set.number_of_tests);
}

#[test]
fn wrapper_rejects_bad_lengths_and_modified_aad() {
    let gcm = Aes256Gcm::new(&[7; 32]);
    let nonce = chunk_nonce(3, false);
    let msg = b"sixteen byte msg and then some";
    let mut ct = vec![0u8; msg.len()];
    let mut tag = [0u8; TAG_LEN];
    gcm.seal(nonce, b"aad", msg, &mut ct, &mut tag).unwrap();

    // Sealing: wrong ciphertext or tag buffer lengths.
    let mut short = vec![0u8; msg.len() - 1];
    assert_eq!(
        gcm.seal(nonce, b"aad", msg, &mut short, &mut tag.clone()),
        Err(Rejected)
    );
    for n in [0, 15, 17] {
        let mut t = vec![0u8; n];
        assert_eq!(
            gcm.seal(nonce, b"aad", msg, &mut ct.clone(), &mut t),
            Err(Rejected),
            "{n}"
        );
    }

    // Opening: the genuine input works; every variation is rejected.
    let mut pt = vec![0u8; msg.len()];
    gcm.open(nonce, b"aad", &ct, &tag, &mut pt).unwrap();
    assert_eq!(pt, msg);
    for n in [0, 15, 17] {
        let mut t = tag.to_vec();
        t.resize(n, 0);
        assert_eq!(
            gcm.open(nonce, b"aad", &ct, &t, &mut pt),
            Err(Rejected),
            "tag len {n}"
        );
    }
    assert_eq!(
        gcm.open(nonce, b"aad", &ct, &tag, &mut pt[1..]),
        Err(Rejected)
    );
    let mut pt = vec![0xA5u8; msg.len()];
    assert_eq!(gcm.open(nonce, b"aaD", &ct, &tag, &mut pt), Err(Rejected));
    assert!(
        pt.iter().all(|&b| b == 0),
        "zeroed after a modified-AAD rejection"
    );
    let mut pt = vec![0xA5u8; msg.len()];
    assert_eq!(
        gcm.open(chunk_nonce(3, true), b"aad", &ct, &tag, &mut pt),
        Err(Rejected)
    );
    assert!(
        pt.iter().all(|&b| b == 0),
        "zeroed after a wrong-final-flag rejection"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. STREAM nonce layout
// ---------------------------------------------------------------------------------------------

#[test]
fn chunk_nonce_layout() {
    // FORMAT.md §4: 00 00 00 00 00 00 00 || u32 BE index || 01 (final) / 00 (not final).
    let cases: [(u32, bool, &str); 10] = [
        (0, false, "00000000000000 00000000 00"),
        (0, true, "00000000000000 00000000 01"),
        (1, false, "00000000000000 00000001 00"),
        (1, true, "00000000000000 00000001 01"),
        (255, false, "00000000000000 000000ff 00"),
        (255, true, "00000000000000 000000ff 01"),
        (256, false, "00000000000000 00000100 00"),
        (256, true, "00000000000000 00000100 01"),
        (u32::MAX, false, "00000000000000 ffffffff 00"),
        (u32::MAX, true, "00000000000000 ffffffff 01"),
    ];
    let mut seen = std::collections::HashSet::new();
    for (index, is_final, want) in cases {
        let want = hex::decode(want.replace(' ', "")).unwrap();
        let got = chunk_nonce(index, is_final);
        assert_eq!(got.len(), 12);
        assert_eq!(got[..], want[..], "chunk_nonce({index}, {is_final})");
        assert!(seen.insert(got), "chunk_nonce({index}, {is_final}) repeats");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. C2SP chunked encryption (Cobblestone-256), https://c2sp.org/chunked-encryption
// ---------------------------------------------------------------------------------------------

/// Plaintext bytes per chunk; the final chunk is always strictly shorter (possibly empty).
const CE_CHUNK: usize = 16 * 1024;
/// Ciphertext bytes per full chunk.
const CE_SEALED: usize = CE_CHUNK + TAG_LEN;
const CE_SALT: usize = 24;
const CE_COMMITMENT: usize = 32;
/// salt || commitment.
const CE_HEADER: usize = CE_SALT + CE_COMMITMENT;
/// Chunk counters must stay below 2^38.
const CE_MAX_CHUNKS: u64 = 1 << 38;
const CE_KEY: usize = 32;
/// key || base nonce || commitment.
const CE_OKM: usize = CE_KEY + NONCE_LEN + CE_COMMITMENT;

/// Why a Cobblestone decryption failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CeError {
    /// The input key is not 32 bytes (checked before anything else).
    KeySize,
    /// Fewer than 56 bytes: no room for salt and commitment.
    ShortHeader,
    /// The commitment does not match the one derived from key, salt and context.
    Commitment,
    /// `Aes256Gcm::open` rejected chunk `i`.
    Chunk(u64),
    /// The ciphertext ends where chunk `i` should start or is shorter than a tag: no short
    /// final chunk.
    Truncated(u64),
    /// The chunk counter reached 2^38.
    TooManyChunks,
}

/// `key || base nonce || commitment = HKDF-Expand-SHA-512(prk = input key, info =
/// "c2sp.org/chunked-encryption@v1+" || "AEAD_AES_256_GCM" || 0x00 || salt || context)`.
/// Takes a key of any length so that the `InvalidKeySize` vectors can be examined.
fn ce_derive(input_key: &[u8], salt: &[u8], ctx: &[u8]) -> [u8; CE_OKM] {
    struct Okm;
    impl hkdf::KeyType for Okm {
        fn len(&self) -> usize {
            CE_OKM
        }
    }
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA512, input_key);
    let info: [&[u8]; 5] = [
        b"c2sp.org/chunked-encryption@v1+",
        b"AEAD_AES_256_GCM",
        &[0],
        salt,
        ctx,
    ];
    let mut okm = [0u8; CE_OKM];
    prk.expand(&info, Okm).unwrap().fill(&mut okm).unwrap();
    okm
}

/// Chunk `i`'s nonce: the base nonce XOR `i` as a big-endian integer as wide as the nonce.
fn ce_nonce(base: &[u8; NONCE_LEN], i: u64) -> [u8; NONCE_LEN] {
    let mut n = *base;
    for (b, c) in n[NONCE_LEN - 8..].iter_mut().zip(i.to_be_bytes()) {
        *b ^= c;
    }
    n
}

/// A pull-based streaming Cobblestone reader (raw mode once the header is checked). Every chunk
/// goes through `Aes256Gcm::open`; plaintext is released a chunk at a time, only once verified;
/// after an error, every further read returns the same error.
struct CeReader<'a> {
    gcm: Aes256Gcm,
    base_nonce: [u8; NONCE_LEN],
    rest: &'a [u8],
    next: u64,
    /// `Some(Ok)` after the final chunk, `Some(Err)` after a failure.
    done: Option<Result<(), CeError>>,
    /// Chunk opens attempted by this reader.
    opens: u64,
}

impl<'a> CeReader<'a> {
    /// Checks key size, header length and commitment; no chunk is opened here.
    fn new(input_key: &[u8], ctx: &[u8], ciphertext: &'a [u8]) -> Result<Self, CeError> {
        if input_key.len() != CE_KEY {
            return Err(CeError::KeySize);
        }
        if ciphertext.len() < CE_HEADER {
            return Err(CeError::ShortHeader);
        }
        let (salt, rest) = ciphertext.split_at(CE_SALT);
        let (commitment, body) = rest.split_at(CE_COMMITMENT);
        let okm = ce_derive(input_key, salt, ctx);
        constant_time::verify_slices_are_equal(&okm[CE_KEY + NONCE_LEN..], commitment)
            .map_err(|_| CeError::Commitment)?;
        Ok(Self::raw(
            okm[..CE_KEY].try_into().unwrap(),
            okm[CE_KEY..CE_KEY + NONCE_LEN].try_into().unwrap(),
            body,
        ))
    }

    /// Raw mode: chunks only, with a given AEAD key and base nonce.
    fn raw(key: &[u8; CE_KEY], base_nonce: &[u8; NONCE_LEN], body: &'a [u8]) -> Self {
        Self {
            gcm: Aes256Gcm::new(key),
            base_nonce: *base_nonce,
            rest: body,
            next: 0,
            done: None,
            opens: 0,
        }
    }

    fn open_chunk(&mut self, i: u64, sealed: &[u8]) -> Result<Vec<u8>, CeError> {
        let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let mut pt = vec![0x5Au8; body.len()];
        self.opens += 1;
        let nonce = ce_nonce(&self.base_nonce, i);
        if self.gcm.open(nonce, &[], body, tag, &mut pt).is_err() {
            assert!(pt.iter().all(|&b| b == 0), "chunk {i}: output not zeroed");
            return Err(CeError::Chunk(i));
        }
        Ok(pt)
    }

    /// The next verified chunk of plaintext; `Ok(None)` once the final chunk has been read.
    fn read_chunk(&mut self) -> Result<Option<Vec<u8>>, CeError> {
        if let Some(done) = self.done {
            return done.map(|()| None);
        }
        let r = self.step();
        if let Err(e) = r {
            self.done = Some(Err(e));
        }
        r
    }

    fn step(&mut self) -> Result<Option<Vec<u8>>, CeError> {
        let i = self.next;
        if i >= CE_MAX_CHUNKS {
            return Err(CeError::TooManyChunks);
        }
        // A full-size chunk is never final; the final chunk is the first short one and must
        // at least hold a tag. Ending on a chunk boundary (including an empty body) means the
        // short final chunk is missing.
        let (sealed, is_final) = match self.rest.len() {
            n if n >= CE_SEALED => (&self.rest[..CE_SEALED], false),
            n if n >= TAG_LEN => (self.rest, true),
            _ => return Err(CeError::Truncated(i)),
        };
        let pt = self.open_chunk(i, sealed)?;
        self.rest = &self.rest[sealed.len()..];
        self.next += 1;
        if is_final {
            self.done = Some(Ok(()));
        }
        Ok(Some(pt))
    }
}

/// What a full streaming decryption produced.
struct CeOutcome {
    /// Verified plaintext released before the end or the first error.
    released: Vec<u8>,
    result: Result<(), CeError>,
    opens: u64,
}

fn ce_read_all(mut reader: CeReader<'_>) -> CeOutcome {
    let mut released = Vec::new();
    let result = loop {
        match reader.read_chunk() {
            Ok(Some(pt)) => released.extend_from_slice(&pt),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Reading on after the end or an error keeps returning the same thing.
    for _ in 0..2 {
        assert_eq!(
            reader.read_chunk().map(|c| c.is_some()),
            result.map(|()| false)
        );
    }
    CeOutcome {
        released,
        result,
        opens: reader.opens,
    }
}

fn ce_decrypt(input_key: &[u8], ctx: &[u8], ciphertext: &[u8]) -> CeOutcome {
    match CeReader::new(input_key, ctx, ciphertext) {
        Ok(reader) => ce_read_all(reader),
        Err(e) => CeOutcome {
            released: Vec::new(),
            result: Err(e),
            opens: 0,
        },
    }
}

/// Random-access length authentication: open only the chunk the ciphertext length says is
/// final, at its index. Returns the authenticated message length.
fn ce_authenticate_length(reader: &mut CeReader<'_>) -> Result<u64, CeError> {
    let body = reader.rest;
    let (k, r) = (body.len() / CE_SEALED, body.len() % CE_SEALED);
    if r < TAG_LEN {
        return Err(CeError::Truncated(k as u64));
    }
    let pt = reader.open_chunk(k as u64, &body[k * CE_SEALED..])?;
    Ok((k * CE_CHUNK + pt.len()) as u64)
}

/// Deterministic raw-mode encryption: 16 KiB chunks and an always-short final chunk, sealed
/// with `seal_in_place` or with out-of-place `seal`.
fn ce_seal_raw(
    key: &[u8; CE_KEY],
    base_nonce: &[u8; NONCE_LEN],
    msg: &[u8],
    in_place: bool,
) -> Vec<u8> {
    let gcm = Aes256Gcm::new(key);
    let chunks = msg.len() / CE_CHUNK + 1;
    let mut out = Vec::with_capacity(msg.len() + chunks * TAG_LEN);
    for i in 0..chunks {
        let pt = &msg[i * CE_CHUNK..((i + 1) * CE_CHUNK).min(msg.len())];
        let nonce = ce_nonce(base_nonce, i as u64);
        let start = out.len();
        out.resize(start + pt.len() + TAG_LEN, 0);
        let (ct, tag) = out[start..].split_at_mut(pt.len());
        if in_place {
            ct.copy_from_slice(pt);
            tag.copy_from_slice(&gcm.seal_in_place(nonce, &[], ct).unwrap());
        } else {
            gcm.seal(nonce, &[], pt, ct, tag).unwrap();
        }
    }
    out
}

fn sha512(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA512, data).as_ref().to_vec()
}

/// Cobblestone-256 vector counts (wycheproof 0.7.0): 35 cases, 10 valid, 25 invalid, of which
/// 10 fail in the header (2 of those on the key size) and 25 have `aeadKey`/`baseNonce` for raw
/// mode.
const CE_CASES: usize = 35;
const CE_VALID: usize = 10;
const CE_HEADER_FAILURES: usize = 10;
const CE_KEY_SIZE_FAILURES: usize = 2;
const CE_RAW: usize = 25;

#[test]
fn wycheproof_c2sp_chunked_encryption_aes_256_gcm() {
    use wycheproof::chunked_encryption::{ChunkedEncryptionAead, TestName, TestSet};

    let set = TestSet::load(TestName::Cobblestone256).unwrap();
    let (mut ran, mut valid, mut header_failures, mut key_size, mut raw_runs) = (0, 0, 0, 0, 0);
    let (mut partial, mut valid_final) = (0, 0);
    let mut blocks = [0usize; 3];
    for group in &set.test_groups {
        assert_eq!(group.aead, ChunkedEncryptionAead::Aes256Gcm);
        for t in &group.tests {
            ran += 1;
            let id = t.tc_id;
            let has = |f: CeFlag| t.flags.contains(&f);
            let (ct, stats) =
                zlib_decompress(&t.ct).unwrap_or_else(|e| panic!("tcId {id}: zlib: {e}"));
            for (total, n) in blocks.iter_mut().zip(stats) {
                *total += n;
            }
            let full = ce_decrypt(&t.key, &t.ctx, &ct);
            let released_ok = |o: &CeOutcome, mode: &str| match (t.msg_length, &t.msg_sha512) {
                (Some(len), Some(h)) => {
                    assert_eq!(o.released.len(), len, "tcId {id} {mode}: released length");
                    assert_eq!(
                        sha512(&o.released),
                        **h,
                        "tcId {id} {mode}: released SHA-512"
                    );
                }
                (None, None) => {
                    assert!(
                        o.released.is_empty(),
                        "tcId {id} {mode}: released plaintext"
                    )
                }
                _ => panic!("tcId {id}: msgLength without msgSha512"),
            };
            released_ok(&full, "full");

            match t.result {
                TestResult::Valid => {
                    assert_eq!(full.result, Ok(()), "tcId {id} ({})", t.comment);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(full.result.is_err(), "tcId {id} ({}): accepted", t.comment);
                    if has(CeFlag::PartialPlaintext) {
                        assert!(t.msg_length.is_some(), "tcId {id}");
                        partial += 1;
                    }
                }
                TestResult::Acceptable => panic!("tcId {id}: no acceptable vectors expected"),
            }

            if has(CeFlag::HeaderFailure) {
                header_failures += 1;
                assert!(t.aead_key.is_none() && t.base_nonce.is_none(), "tcId {id}");
                assert_eq!(full.opens, 0, "tcId {id}: a chunk was opened");
                let want: &[CeError] = if has(CeFlag::InvalidKeySize) {
                    key_size += 1;
                    // HKDF accepts a 31- or 33-byte PRK and these vectors were built so that
                    // the commitment still matches: only the key-length check rejects them.
                    let okm = ce_derive(&t.key, &ct[..CE_SALT], &t.ctx);
                    assert_eq!(
                        okm[CE_KEY + NONCE_LEN..],
                        ct[CE_SALT..CE_HEADER],
                        "tcId {id}"
                    );
                    &[CeError::KeySize]
                } else {
                    &[CeError::ShortHeader, CeError::Commitment]
                };
                let err = full.result.unwrap_err();
                assert!(
                    want.contains(&err),
                    "tcId {id}: {err:?}, want one of {want:?}"
                );
                continue;
            }

            // Everything else gets past the header: the derived key and base nonce must be the
            // vector's, and raw mode must behave exactly like full mode.
            let aead_key: [u8; CE_KEY] =
                t.aead_key.as_ref().unwrap().as_slice().try_into().unwrap();
            let base: [u8; NONCE_LEN] = t
                .base_nonce
                .as_ref()
                .unwrap()
                .as_slice()
                .try_into()
                .unwrap();
            let okm = ce_derive(&t.key, &ct[..CE_SALT], &t.ctx);
            assert_eq!(okm[..CE_KEY], aead_key, "tcId {id}: derived key");
            assert_eq!(
                okm[CE_KEY..CE_KEY + NONCE_LEN],
                base,
                "tcId {id}: derived base nonce"
            );
            assert!(
                !matches!(
                    full.result,
                    Err(CeError::KeySize | CeError::ShortHeader | CeError::Commitment)
                ),
                "tcId {id}: header rejected: {:?}",
                full.result
            );
            let body = &ct[CE_HEADER..];
            let raw = ce_read_all(CeReader::raw(&aead_key, &base, body));
            released_ok(&raw, "raw");
            assert_eq!(raw.result, full.result, "tcId {id}: raw vs full mode");
            assert_eq!(raw.opens, full.opens, "tcId {id}: raw vs full mode opens");
            raw_runs += 1;

            // Length authentication from the final chunk alone (random access, seek from end).
            let auth = ce_authenticate_length(&mut CeReader::raw(&aead_key, &base, body));
            if t.result == TestResult::Valid {
                assert_eq!(auth, Ok(t.msg_length.unwrap() as u64), "tcId {id}: length");
            } else if has(CeFlag::ValidFinalChunk) {
                assert!(
                    auth.is_ok(),
                    "tcId {id}: valid final chunk rejected: {auth:?}"
                );
                valid_final += 1;
            } else {
                assert!(
                    auth.is_err(),
                    "tcId {id}: bad final chunk accepted: {auth:?}"
                );
            }

            // Re-encryption is deterministic given key and base nonce (and the salt in full mode).
            if t.result == TestResult::Valid {
                for in_place in [false, true] {
                    let sealed = ce_seal_raw(&aead_key, &base, &full.released, in_place);
                    assert!(
                        sealed == body,
                        "tcId {id}: raw re-encryption (in_place {in_place})"
                    );
                }
            }
        }
    }
    println!(
        "c2sp_chunked_encryption_aes_256_gcm_test.json: {ran} cases run ({valid} valid, {} invalid: \
         {header_failures} header failures incl. {key_size} key-size, {partial} partial-plaintext, \
         {valid_final} valid-final-chunk), {raw_runs} also in raw mode; zlib blocks \
         stored/fixed/dynamic = {blocks:?}",
        ran - valid
    );
    assert_eq!(ran, set.number_of_tests);
    assert_eq!(ran, CE_CASES);
    assert_eq!(valid, CE_VALID);
    assert_eq!(header_failures, CE_HEADER_FAILURES);
    assert_eq!(key_size, CE_KEY_SIZE_FAILURES);
    assert_eq!(raw_runs, CE_RAW);
}

#[test]
fn c2sp_nonce_counter_is_big_endian_xor() {
    let base: [u8; NONCE_LEN] = hex::decode("0102030405060708090a0b0c")
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(ce_nonce(&base, 0), base);
    assert_eq!(hex::encode(ce_nonce(&base, 1)), "0102030405060708090a0b0d");
    assert_eq!(
        hex::encode(ce_nonce(&base, 0x100)),
        "0102030405060708090a0a0c"
    );
    assert_eq!(
        hex::encode(ce_nonce(&base, (1 << 38) - 1)),
        "0102030405060737f6f5f4f3"
    );
}

// ---------------------------------------------------------------------------------------------
// zlib (RFC 1950) / DEFLATE (RFC 1951) decoder, test-only: the Cobblestone vectors' `ct` is
// zlib-compressed and no zlib crate is a dependency. Canonical Huffman decoding as in zlib's
// puff.c: slow and simple, which is plenty for a few hundred KiB.
// ---------------------------------------------------------------------------------------------

type Inflated = Result<(Vec<u8>, [usize; 3]), &'static str>;

/// Decompresses a complete zlib stream, which must end exactly after its Adler-32. Also returns
/// how many stored, fixed-Huffman and dynamic-Huffman blocks it held.
fn zlib_decompress(data: &[u8]) -> Inflated {
    let (&cmf, &flg) = (
        data.first().ok_or("empty")?,
        data.get(1).ok_or("short header")?,
    );
    if cmf & 0x0f != 8 || cmf >> 4 > 7 {
        return Err("not a deflate stream with a window of at most 32 KiB");
    }
    if ((u16::from(cmf) << 8) | u16::from(flg)) % 31 != 0 {
        return Err("zlib header check failed");
    }
    if flg & 0x20 != 0 {
        return Err("preset dictionaries are not supported");
    }
    let mut bits = Bits {
        data: &data[2..],
        pos: 0,
    };
    let (mut out, mut blocks) = (Vec::new(), [0usize; 3]);
    loop {
        let last = bits.bits(1)? == 1;
        let kind = bits.bits(2)? as usize;
        match kind {
            0 => stored_block(&mut bits, &mut out)?,
            1 => {
                let mut lit = [8u8; 288];
                lit[144..256].fill(9);
                lit[256..280].fill(7);
                codes(
                    &mut bits,
                    &mut out,
                    &Huffman::new(&lit)?,
                    &Huffman::new(&[5; 30])?,
                )?;
            }
            2 => {
                let (lit, dist) = dynamic_tables(&mut bits)?;
                codes(&mut bits, &mut out, &lit, &dist)?;
            }
            _ => return Err("reserved block type"),
        }
        blocks[kind] += 1;
        if last {
            break;
        }
    }
    let Some(&[a, b, c, d]) = data.get(2 + bits.pos.div_ceil(8)..) else {
        return Err("missing Adler-32 or bytes after it");
    };
    if u32::from_be_bytes([a, b, c, d]) != adler32(&out) {
        return Err("Adler-32 mismatch");
    }
    Ok((out, blocks))
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// Reads bits least-significant first.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bits(&mut self, n: u32) -> Result<u32, &'static str> {
        let mut v = 0;
        for k in 0..n {
            let byte = self
                .data
                .get(self.pos / 8)
                .ok_or("unexpected end of deflate data")?;
            v |= u32::from((byte >> (self.pos % 8)) & 1) << k;
            self.pos += 1;
        }
        Ok(v)
    }
}

/// A canonical Huffman code: how many codes of each length, and the symbols in code order.
struct Huffman {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Self, &'static str> {
        let mut counts = [0u16; 16];
        for &l in lengths {
            counts[usize::from(l)] += 1;
        }
        let mut left = 1i32;
        for &c in &counts[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return Err("over-subscribed Huffman code");
            }
        }
        // Incomplete codes are accepted; an unused code then fails in `decode`.
        let mut offsets = [0usize; 16];
        for len in 1..15 {
            offsets[len + 1] = offsets[len] + usize::from(counts[len]);
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (sym, &l) in lengths.iter().enumerate().filter(|(_, l)| **l != 0) {
            symbols[offsets[usize::from(l)]] = sym as u16;
            offsets[usize::from(l)] += 1;
        }
        Ok(Self { counts, symbols })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, &'static str> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for &count in &self.counts[1..] {
            code |= bits.bits(1)? as i32;
            let count = i32::from(count);
            if code - first < count {
                return Ok(self.symbols[(index + code - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("invalid Huffman code")
    }
}

fn stored_block(bits: &mut Bits<'_>, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let p = bits.pos.div_ceil(8);
    let h = bits.data.get(p..p + 4).ok_or("truncated stored block")?;
    let len = u16::from_le_bytes([h[0], h[1]]);
    if len != !u16::from_le_bytes([h[2], h[3]]) {
        return Err("stored block LEN/NLEN mismatch");
    }
    let end = p + 4 + usize::from(len);
    out.extend_from_slice(bits.data.get(p + 4..end).ok_or("truncated stored block")?);
    bits.pos = end * 8;
    Ok(())
}

fn dynamic_tables(bits: &mut Bits<'_>) -> Result<(Huffman, Huffman), &'static str> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let nlit = bits.bits(5)? as usize + 257;
    let ndist = bits.bits(5)? as usize + 1;
    let ncode = bits.bits(4)? as usize + 4;
    if nlit > 286 || ndist > 30 {
        return Err("too many length or distance codes");
    }
    let mut cl = [0u8; 19];
    for &i in &ORDER[..ncode] {
        cl[i] = bits.bits(3)? as u8;
    }
    let cl = Huffman::new(&cl)?;
    let mut lengths = Vec::with_capacity(nlit + ndist);
    while lengths.len() < nlit + ndist {
        let (value, repeat) = match cl.decode(bits)? {
            sym @ 0..=15 => (sym as u8, 1),
            16 => (
                *lengths.last().ok_or("repeat with no previous length")?,
                3 + bits.bits(2)?,
            ),
            17 => (0, 3 + bits.bits(3)?),
            18 => (0, 11 + bits.bits(7)?),
            _ => return Err("invalid code-length symbol"),
        };
        let new_len = lengths.len() + repeat as usize;
        if new_len > nlit + ndist {
            return Err("code lengths overrun");
        }
        lengths.resize(new_len, value);
    }
    if lengths[256] == 0 {
        return Err("no end-of-block code");
    }
    Ok((
        Huffman::new(&lengths[..nlit])?,
        Huffman::new(&lengths[nlit..])?,
    ))
}

fn codes(
    bits: &mut Bits<'_>,
    out: &mut Vec<u8>,
    lit: &Huffman,
    dist: &Huffman,
) -> Result<(), &'static str> {
    const LEN_BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [u32; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DIST_EXTRA: [u32; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];
    loop {
        let sym = usize::from(lit.decode(bits)?);
        if sym < 256 {
            out.push(sym as u8);
            continue;
        }
        if sym == 256 {
            return Ok(());
        }
        let s = sym - 257;
        if s >= LEN_BASE.len() {
            return Err("invalid length symbol");
        }
        let len = usize::from(LEN_BASE[s]) + bits.bits(LEN_EXTRA[s])? as usize;
        let d = usize::from(dist.decode(bits)?);
        if d >= DIST_BASE.len() {
            return Err("invalid distance symbol");
        }
        let distance = usize::from(DIST_BASE[d]) + bits.bits(DIST_EXTRA[d])? as usize;
        let start = out
            .len()
            .checked_sub(distance)
            .ok_or("distance too far back")?;
        out.reserve(len);
        for k in start..start + len {
            out.push(out[k]);
        }
    }
}

#[test]
fn zlib_decoder_self_test() {
    assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    assert_eq!(adler32(b""), 1);

    // Streams made by CPython's zlib, one per block type.
    let stored = hex::decode("7801011500eaff73746f72656420626c6f636b2c206c6576656c203057990771");
    let (out, blocks) = zlib_decompress(&stored.unwrap()).unwrap();
    assert_eq!(
        (&out[..], blocks),
        (&b"stored block, level 0"[..], [1, 0, 0])
    );

    let fixed = hex::decode("78014bcbac484d51f0284d4bcb4dccb352484c4a46460a6960693009004a650f6e");
    let (out, blocks) = zlib_decompress(&fixed.unwrap()).unwrap();
    assert_eq!(
        (&out[..], blocks),
        (
            &b"fixed Huffman: abcabcabcabcabc fixed fixed"[..],
            [0, 1, 0]
        )
    );

    // 600 bytes of "ACGT" from an LCG, compressed at level 9.
    let dynamic = hex::decode(concat!(
        "78da3591d10d433108036743fe6001f69fa5be4b9fd2aa3431c636bbb9bbbde9ef4cae6777bdcaf6827a93e1",
        "adc5edb63e20b1b19da163a79f56e7fb657a32e5e83b977efd53da220b070df732a74d4c177f30070266d006",
        "64512af92aa6eccb1c145363e0890150ea6154af807a57f2f60d14839653b903b185a34529484490c969eb29",
        "7d91145eb927afb9259fe5dcdffa88be18d428049ba5cd7da44d413ba6b7e6050e62fceb64b808fa63a799bb",
        "086c2ba46956840e5cd6bc5546f943d46f699029e5d07b9e91c65d22f9b97fd9b8e4b8d6bc2efa11b26f4de7",
        "0e0cdfc1ca9b67acc50f3496a841"
    ))
    .unwrap();
    let mut x = 1u64;
    let want: Vec<u8> = (0..600)
        .map(|_| {
            x = (x * 1_103_515_245 + 12_345) % (1 << 31);
            b"ACGT"[((x >> 16) & 3) as usize]
        })
        .collect();
    let (out, blocks) = zlib_decompress(&dynamic).unwrap();
    assert_eq!((out, blocks), (want, [0, 0, 1]));

    // Corruption is detected: Adler-32, trailing bytes, truncation, header check.
    let mut bad = dynamic.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(zlib_decompress(&bad), Err("Adler-32 mismatch"));
    let mut long = dynamic.clone();
    long.push(0);
    assert!(zlib_decompress(&long).is_err());
    for n in [0, 1, 2, 10, dynamic.len() - 1] {
        assert!(zlib_decompress(&dynamic[..n]).is_err(), "prefix {n}");
    }
    assert!(zlib_decompress(&[0x78, 0xdb, 0x03, 0x00]).is_err());
}
