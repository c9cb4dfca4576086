//! `open_range` on arbitrary objects and ranges. Input: 16 parameter bytes, then the object.
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0..4 | start (u32 LE), clamped to the plaintext length |
//! | 4..8 | end (u32 LE), clamped to the plaintext length |
//! | 8 | flags: bit 0 read with the opposite path binding, bit 1 start counts from the end, bit 2 end counts from the end, bit 3 recompute the header commitment (so arbitrary bodies reach the chunk code) |
//! | 9..16 | unused |
//!
//! Checks: never panics; only errors object bytes can cause; if the whole object opens, the
//! range opens to the same bytes; a range read of every chunk succeeds only if the whole object
//! opens.
#![no_main]

use encrypt_repo_format::{Header, Layout, open_object, open_range};
use encrypt_repo_format_fuzz::{assert_open_error, ctx, ctx_for, key, recommit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (p, object) = data.split_at(16);
    let a = u64::from(u32::from_le_bytes([p[0], p[1], p[2], p[3]]));
    let b = u64::from(u32::from_le_bytes([p[4], p[5], p[6], p[7]]));
    let flags = p[8];
    let mut object = object.to_vec();
    if flags & 8 != 0 {
        recommit(&mut object);
    }
    let object = &object[..];
    let Ok(h) = Header::parse(object) else {
        return;
    };
    let Ok(layout) = Layout::for_ciphertext(h.chunk_size, object.len() as u64) else {
        return;
    };
    let len = layout.plaintext_len();
    let pos = |raw: u64, from_end: bool| {
        if from_end {
            len - raw.min(len)
        } else {
            raw.min(len)
        }
    };
    let (mut start, mut end) = (pos(a, flags & 2 != 0), pos(b, flags & 4 != 0));
    if start > end {
        std::mem::swap(&mut start, &mut end);
    }
    let Ok(plan) = layout.plan(start..end) else {
        return;
    };
    assert_eq!(plan.len, end - start);
    let header_ctx = ctx_for(object);
    let ctx = if flags & 1 != 0 {
        ctx(header_ctx.path.is_none())
    } else {
        header_ctx
    };
    let key = key();
    let span = &object[plan.ciphertext.start as usize..plan.ciphertext.end as usize];
    let ranged = open_range(&key, &ctx, &object[..96], &plan, span);
    match &ranged {
        Ok(pt) => assert_eq!(pt.len() as u64, end - start, "range length"),
        Err(e) => assert_open_error(e),
    }
    let whole = open_object(&key, &ctx, object);
    if let Ok(full) = &whole {
        let got = ranged
            .as_ref()
            .expect("the whole object opens, so must every range");
        assert!(
            got[..] == full[start as usize..end as usize],
            "range {start}..{end} differs from the whole-object plaintext"
        );
    }
    let every_chunk = plan.chunks == (0..layout.chunk_count());
    if every_chunk && ranged.is_ok() {
        assert!(
            whole.is_ok(),
            "a range over every chunk opened but the whole object did not: {whole:?}"
        );
    }
});
