//! `Header::parse` on arbitrary bytes: never panics; a parsed header serialises back to exactly
//! the first 96 input bytes and re-parses to the same value; trailing bytes never matter.
#![no_main]

use encrypt_repo_format::{HEADER_LEN, Header};
use encrypt_repo_format_fuzz::assert_header_error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = Header::parse(data);
    // Only the first HEADER_LEN bytes count.
    assert_eq!(parsed, Header::parse(&data[..data.len().min(HEADER_LEN)]));
    match parsed {
        Ok(h) => {
            let bytes = h.to_bytes();
            assert_eq!(
                &bytes[..],
                &data[..HEADER_LEN],
                "to_bytes differs from the input"
            );
            assert_eq!(Header::parse(&bytes).as_ref(), Ok(&h), "re-parse differs");
        }
        Err(e) => assert_header_error(&e),
    }
});
