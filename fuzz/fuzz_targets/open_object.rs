//! `open_object` on arbitrary bytes under the vectors' key, bound and unbound, and once more with
//! the header's commitment recomputed so arbitrary bodies reach the chunk code. Never panics;
//! only errors object bytes can cause; and whatever opens is the unique sealing of its plaintext:
//! its length matches `Layout::for_ciphertext`, and resealing with the header's salt reproduces
//! the input byte for byte.
#![no_main]

use encrypt_repo_format::{
    DataKey, Header, Layout, ObjectContext, ObjectSealer, open_object, seal_with,
};
use encrypt_repo_format_fuzz::{assert_open_error, ctx, ctx_for, key, recommit};
use libfuzzer_sys::fuzz_target;

fn check(key: &DataKey, ctx: &ObjectContext<'_>, object: &[u8]) {
    match open_object(key, ctx, object) {
        Ok(pt) => {
            let h = Header::parse(object).expect("an opened object has a valid header");
            let layout = Layout::for_ciphertext(h.chunk_size, object.len() as u64)
                .expect("an opened object has a valid length");
            assert_eq!(layout.plaintext_len(), pt.len() as u64, "plaintext length");
            let sealer = ObjectSealer::with_salt(key, h.data_key_id, ctx, h.chunk_size, h.salt);
            let resealed = seal_with(sealer, &pt).expect("reseal");
            assert!(
                resealed == object,
                "an accepted object is not the sealing of its plaintext"
            );
        }
        Err(e) => assert_open_error(&e),
    }
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    check(&key, &ctx(true), data);
    check(&key, &ctx(false), data);
    let mut fixed = data.to_vec();
    if recommit(&mut fixed) {
        check(&key, &ctx_for(&fixed), &fixed);
    }
});
