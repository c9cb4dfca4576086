//! object_store's own conformance suite (`object_store::integration`) against `EncryptedStore`
//! over S3 (moto) and Azure Blob (azurite), then a scan of the raw bucket bytes for plaintext.
//!
//! The services run on loopback, installed and started by the project's own script:
//!
//! ```text
//! bash tests/services.sh start && source target/services.env
//! cargo test -p encrypt-repo-store --test cloud
//! ```
//!
//! `tests/run.sh` does this itself. Without the services these tests fail (never skip): a test
//! that silently passes without its backend asserts nothing.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::markers::{assert_no_plaintext, suite, write_markers};
use common::{encrypted, register_local};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut, S3CopyIfNotExists};
use object_store::azure::{
    AzureAccessKey, AzureAuthorizer, AzureCredential, MicrosoftAzureBuilder,
};
use object_store::client::{
    ClientOptions, HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector,
};
use object_store::integration::put_get_attributes;

/// How to get the services these tests need.
const START: &str = "bash tests/services.sh start && source target/services.env";

/// Azurite's well-known development account and key (public, documented by Microsoft).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The service endpoint in `var`; fails the test, with the command to start the services, if
/// it is not set.
fn endpoint(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "{var} is not set, so there is no service to test against (this test never skips). \
             From the repository root run\n\n    {START}\n\nand run the tests again in that shell \
             (tests/run.sh does both itself)."
        ),
    }
}

/// A bucket or container name no other test run uses.
fn fresh_name(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("er-{kind}-{}-{nanos}", std::process::id())
}

/// One HTTP PUT with an empty body (bucket or container creation); panics unless it succeeds.
async fn http_put(url: &str, sign: impl FnOnce(&mut HttpRequest)) {
    let client = ReqwestConnector::default()
        .connect(&ClientOptions::new().with_allow_http(true))
        .unwrap();
    let mut request = HttpRequest::new(HttpRequestBody::empty());
    *request.method_mut() = "PUT".parse().unwrap();
    *request.uri_mut() = url.parse().unwrap();
    request
        .headers_mut()
        .insert("content-length", "0".parse().unwrap());
    sign(&mut request);
    let response = client
        .execute(request)
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}; are the services running? {START}"));
    let status = response.status();
    let body = response.into_body().bytes().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "PUT {url}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_moto_passes_object_store_conformance() {
    let endpoint = endpoint("ENCRYPT_REPO_TEST_S3_ENDPOINT");
    let bucket = fresh_name("s3");
    // moto takes an unsigned CreateBucket.
    http_put(&format!("{endpoint}/{bucket}"), |_| {}).await;
    let raw = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_bucket_name(&bucket)
            // PutMode::Create/Update as If-None-Match/If-Match (the default, said explicitly),
            // and copy-if-not-exists the native S3 way, which moto implements.
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
            .build()
            .unwrap(),
    );
    let keys = tempfile::tempdir().unwrap();
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
async fn azure_azurite_passes_object_store_conformance() {
    let endpoint = endpoint("ENCRYPT_REPO_TEST_AZURE_ENDPOINT");
    // In emulator mode object_store takes azurite's address only from this variable (the
    // builder has no setter for it); target/services.env sets both.
    let emulator_url = std::env::var("AZURITE_BLOB_STORAGE_URL").unwrap_or_default();
    assert_eq!(
        emulator_url.trim_end_matches('/'),
        endpoint,
        "AZURITE_BLOB_STORAGE_URL must equal ENCRYPT_REPO_TEST_AZURE_ENDPOINT; run\n\n    {START}"
    );
    let container = fresh_name("az");
    let credential = AzureCredential::AccessKey(AzureAccessKey::try_new(AZURITE_KEY).unwrap());
    http_put(
        &format!("{endpoint}/{AZURITE_ACCOUNT}/{container}?restype=container"),
        |request| {
            AzureAuthorizer::new(&credential, AZURITE_ACCOUNT)
                .try_authorize(request)
                .unwrap();
        },
    )
    .await;
    let raw = Arc::new(
        MicrosoftAzureBuilder::new()
            .with_use_emulator(true)
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(AZURITE_KEY)
            .with_container_name(&container)
            .build()
            .unwrap(),
    );
    let keys = tempfile::tempdir().unwrap();
    let store = encrypted(
        raw.clone(),
        register_local(raw.clone(), &keys.path().join("master.key"), Some(64 << 10)).await,
    );
    // Azure refuses the second of two racing block-list commits (object_store's own
    // azure_blob_test passes false). put_get_attributes is left out as there: azurite does not
    // support attributes properly (object_store src/azure/mod.rs, azure_blob_test).
    suite(&store, true, false).await;
    write_markers(&store).await;
    assert_no_plaintext(raw.as_ref()).await;
}
