//! The streaming `Decryptor` fed arbitrary bytes in pieces whose sizes come from the input, with
//! a batch size from the input. Input: 8 parameter bytes, then the object.
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0 | batch chunks = 1 + byte % 4 |
//! | 1 | flags: bit 0 recompute the header commitment (so arbitrary bodies reach the chunk code) |
//! | 2..8 | seed of the piece sizes |
//!
//! Checks: never panics; only errors object bytes can cause; succeeds exactly when `open_object`
//! does, with the same plaintext; and then an `Encryptor` fed the plaintext in pieces reproduces
//! the object byte for byte.
#![no_main]

use encrypt_repo_format::{
    Decryptor, Encryptor, HEADER_LEN, Header, ObjectOpener, ObjectSealer, open_object,
};
use encrypt_repo_format_fuzz::{Rng, assert_open_error, ctx_for, key, recommit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (p, object) = data.split_at(8);
    let batch = 1 + usize::from(p[0] % 4);
    let mut object = object.to_vec();
    if p[1] & 1 != 0 {
        recommit(&mut object);
    }
    let object = &object[..];
    let key = key();
    let ctx = ctx_for(object);
    let whole = open_object(&key, &ctx, object);

    let streamed = (|| {
        let opener = ObjectOpener::new(object, &key, &ctx)?;
        let mut dec = Decryptor::new(opener, batch);
        let mut out = Vec::new();
        let mut rng = Rng::new(&p[2..]);
        let mut body = &object[HEADER_LEN..];
        while !body.is_empty() {
            let n = rng.piece(body.len());
            let before = out.len();
            dec.push(&body[..n], &mut out)?;
            // Output only ever grows by whole verified chunks' worth of plaintext.
            assert!(out.len() >= before);
            body = &body[n..];
        }
        dec.finish(&mut out)?;
        Ok::<_, encrypt_repo_format::Error>(out)
    })();

    match (&whole, &streamed) {
        (Ok(a), Ok(b)) => assert!(a == b, "streaming and whole-object plaintexts differ"),
        (Err(_), Err(e)) => assert_open_error(e),
        _ => panic!("whole-object {whole:?} vs streaming {streamed:?}"),
    }

    if let Ok(pt) = &streamed {
        let h = Header::parse(object).expect("opened, so the header parses");
        let sealer = ObjectSealer::with_salt(&key, h.data_key_id, &ctx, h.chunk_size, h.salt);
        let mut enc = Encryptor::new(sealer, batch);
        let mut out = enc.header_bytes().to_vec();
        let mut rng = Rng::new(&p[2..]);
        let mut rest = &pt[..];
        while !rest.is_empty() {
            let n = rng.piece(rest.len());
            enc.push(&rest[..n], &mut out).expect("encrypt push");
            rest = &rest[n..];
        }
        enc.finish(&mut out).expect("encrypt finish");
        assert!(
            out == object,
            "re-encrypting the plaintext does not reproduce the object"
        );
    }
});
