//! moto helpers shared by this crate's test binaries: the endpoint (or a panic naming the command
//! that starts moto), static test credentials, key and alias creation, provider settings.

#![allow(dead_code, unreachable_pub)]

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kms::Client;
use aws_sdk_kms::config::{Credentials, Region, SharedCredentialsProvider};
use encrypt_repo_format::{DataKeyId, RepositoryId};
use encrypt_repo_keys::{KeyProvider, Settings, WrapContext};
use encrypt_repo_kms_aws::{AwsKmsFactory, AwsKmsProvider, kms_client};

pub const START: &str = "bash tests/services.sh start && source target/services.env";
pub const REGION: &str = "eu-west-1";
/// moto accepts any credentials; this one is distinctive so tests can grep output for it.
pub const SECRET_ACCESS_KEY: &str = "moto-test-secret-access-key-Zx81Qq";

/// The moto endpoint, or a panic naming the command that starts it.
pub fn endpoint() -> String {
    let e = std::env::var("ENCRYPT_REPO_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!("ENCRYPT_REPO_TEST_S3_ENDPOINT is not set; start moto with: {START}")
    });
    let authority = e
        .split_once("://")
        .map_or(e.as_str(), |(_, rest)| rest)
        .trim_end_matches('/');
    let reachable = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "moto does not answer at {e} (ENCRYPT_REPO_TEST_S3_ENDPOINT); start it with: {START}"
    );
    e
}

pub fn sdk() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint())
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing",
            SECRET_ACCESS_KEY,
            None,
            None,
            "moto-test",
        )))
        .build()
}

pub fn admin() -> Client {
    kms_client(&sdk(), None, None)
}

pub fn ctx(repo: u8) -> WrapContext {
    WrapContext {
        repository_id: RepositoryId([repo; 16]),
        data_key_id: DataKeyId::random().expect("random id"),
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", DataKeyId::random().expect("random").to_hex())
}

/// Creates a symmetric key; returns (key id, key ARN).
pub async fn create_key(kms: &Client) -> (String, String) {
    let meta = kms
        .create_key()
        .description("encrypt-repo aws-kms test")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("key metadata");
    (meta.key_id, meta.arn.expect("arn"))
}

pub async fn create_alias(kms: &Client, key_id: &str) -> String {
    let alias = unique("alias/encrypt-repo-test-");
    kms.create_alias()
        .alias_name(&alias)
        .target_key_id(key_id)
        .send()
        .await
        .expect("CreateAlias");
    alias
}

pub fn settings(key_id: &str) -> Settings {
    Settings::from([
        ("key_id".to_owned(), key_id.to_owned()),
        ("region".to_owned(), REGION.to_owned()),
        ("endpoint".to_owned(), endpoint()),
    ])
}

pub fn factory() -> AwsKmsFactory {
    AwsKmsFactory::with_sdk_config(sdk())
}

pub async fn provider(key_id: &str) -> Arc<dyn KeyProvider> {
    Arc::new(
        AwsKmsProvider::connect(&sdk(), key_id)
            .await
            .expect("connect"),
    )
}
