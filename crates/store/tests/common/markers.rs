//! The parts of object_store's conformance suite (`object_store::integration`) that apply to
//! `EncryptedStore`, and a scan of the raw backend for a plaintext marker. Shared by
//! tests/conformance.rs (InMemory, LocalFileSystem) and tests/cloud.rs (S3, Azure).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use futures::TryStreamExt;
use object_store::integration::*;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// A distinctive plaintext that must never appear in the backend.
pub const MARKER: &[u8] = b"ENCRYPT-REPO-PLAINTEXT-MARKER-7f3a9c";

pub async fn write_markers(store: &dyn ObjectStore) {
    let body: Vec<u8> = MARKER.iter().copied().cycle().take(300_000).collect();
    store
        .put(
            &Path::from("markers/small"),
            PutPayload::from(MARKER.to_vec()),
        )
        .await
        .unwrap();
    store
        .put(&Path::from("markers/big"), PutPayload::from(body.clone()))
        .await
        .unwrap();
    let mut up = store
        .put_multipart(&Path::from("markers/multipart"))
        .await
        .unwrap();
    for _ in 0..3 {
        up.put_part(PutPayload::from(body.clone())).await.unwrap();
    }
    up.complete().await.unwrap();
    assert_eq!(
        store
            .get(&Path::from("markers/big"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        body
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub async fn assert_no_plaintext(raw: &dyn ObjectStore) {
    let all: Vec<_> = raw.list(None).try_collect().await.unwrap();
    assert!(all.len() >= 3, "the markers must be in the backend");
    for meta in all {
        let bytes = raw
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(
            !contains(&bytes, MARKER),
            "plaintext marker found in raw object {}",
            meta.location
        );
    }
}

/// The suite functions object_store's own `s3_test` and `azure_blob_test` run that take only
/// an `ObjectStore` (the others need the backend's `MultipartStore`, `PaginatedListStore` or
/// `Signer`, which `EncryptedStore` does not offer), plus `copy_rename_nonexistent_object`.
pub async fn suite(store: &dyn ObjectStore, supports_update: bool, last_writer_wins: bool) {
    put_get_delete_list(store).await;
    list_with_offset_exclusivity(store).await;
    get_opts(store).await;
    list_uses_directories_correctly(store).await;
    list_with_delimiter(store).await;
    rename_and_copy(store).await;
    copy_if_not_exists(store).await;
    copy_rename_nonexistent_object(store).await;
    stream_get(store).await;
    put_opts(store, supports_update).await;
    multipart_race_condition(store, last_writer_wins).await;
    multipart_out_of_order(store).await;
}
