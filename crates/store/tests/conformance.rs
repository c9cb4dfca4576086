//! object_store's own conformance suite (`object_store::integration`) against `EncryptedStore`
//! over InMemory and LocalFileSystem, followed by a scan of the raw backend bytes for plaintext.
//! (S3 on moto and Azure on azurite run the same suite from the project's service script.)

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;

use common::markers::{assert_no_plaintext, suite, write_markers};
use common::{encrypted, register_local};
use object_store::integration::put_get_attributes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_passes_object_store_conformance() {
    let keys = tempfile::tempdir().unwrap();
    let raw = Arc::new(InMemory::new());
    let store = encrypted(
        raw.clone(),
        register_local(raw.clone(), &keys.path().join("master.key"), Some(64 << 10)).await,
    );
    suite(&store, true, true).await;
    put_get_attributes(&store).await;
    write_markers(&store).await;
    assert_no_plaintext(raw.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_filesystem_passes_object_store_conformance() {
    let keys = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let raw = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let store = encrypted(
        raw.clone(),
        register_local(raw.clone(), &keys.path().join("master.key"), Some(64 << 10)).await,
    );
    suite(&store, false, true).await;
    write_markers(&store).await;
    assert_no_plaintext(raw.as_ref()).await;
}
