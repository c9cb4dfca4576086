//! object_store's own conformance suite (`object_store::integration`) against `EncryptedStore`
//! over InMemory and LocalFileSystem, followed by a scan of the raw backend bytes for plaintext.
//! (S3 on moto and Azure on azurite run the same suite from the project's service script.)

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;

use encrypt_repo_keys::ProviderRegistry;
use encrypt_repo_store::{
    CryptoSettings, EncryptedStore, RegistrationRequest, Repository, RepositoryOptions,
};
use futures::TryStreamExt;
use object_store::integration::*;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const MARKER: &[u8] = b"ENCRYPT-REPO-PLAINTEXT-MARKER-7f3a9c";

async fn encrypted<S: ObjectStore>(
    inner: Arc<S>,
    key_dir: &std::path::Path,
    chunk: u64,
) -> EncryptedStore<S> {
    let request = RegistrationRequest {
        store_type: "test".into(),
        settings: Default::default(),
        encrypted: true,
        crypto_settings: Some(CryptoSettings {
            key_provider_name: "test".into(),
            key_provider_type: "local".into(),
            settings: [(
                "key_file".to_owned(),
                key_dir.join("master.key").to_string_lossy().into_owned(),
            )]
            .into(),
        }),
        chunk_size: Some(chunk),
        path_binding: None,
    };
    let reg = Repository::register(
        inner.clone(),
        request,
        &ProviderRegistry::with_builtin(),
        RepositoryOptions::default(),
    )
    .await
    .unwrap();
    EncryptedStore::new(inner, Arc::new(reg.repository))
}

async fn write_markers(store: &dyn ObjectStore) {
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

async fn assert_no_plaintext(raw: &dyn ObjectStore) {
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

async fn suite(store: &dyn ObjectStore, supports_update: bool) {
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
    multipart_race_condition(store, true).await;
    multipart_out_of_order(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_passes_object_store_conformance() {
    let keys = tempfile::tempdir().unwrap();
    let raw = Arc::new(InMemory::new());
    let store = encrypted(raw.clone(), keys.path(), 64 << 10).await;
    suite(&store, true).await;
    put_get_attributes(&store).await;
    write_markers(&store).await;
    assert_no_plaintext(raw.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_filesystem_passes_object_store_conformance() {
    let keys = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let raw = Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let store = encrypted(raw.clone(), keys.path(), 64 << 10).await;
    suite(&store, false).await;
    write_markers(&store).await;
    assert_no_plaintext(raw.as_ref()).await;
}
