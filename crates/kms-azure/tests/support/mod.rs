//! Shared set-up: a stand-in with a client-secret application, and factories whose environment
//! is a map (edition 2024 makes `std::env::set_var` unsafe, and this workspace forbids unsafe).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use encrypt_repo_format::{DataKeyId, RepositoryId};
use encrypt_repo_keys::{KeyProvider, ProviderFactory, Settings, WrapContext};
use encrypt_repo_kms_azure::AzureKeyVaultFactory;
#[allow(unused_imports)]
pub use encrypt_repo_testkit::azure_key_vault::{AzureKeyVault, Fault, TENANT};

pub const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
pub const SECRET: &str = "s3cret~value.Only-For_Tests";

/// A stand-in with the client-secret application registered and an RSA-2048 key `key1`.
pub async fn stand_in() -> AzureKeyVault {
    let kv = AzureKeyVault::start().await;
    kv.register_client_secret(CLIENT, SECRET);
    let _ = kv.create_rsa_key("key1", 2048);
    kv
}

/// The client-secret environment.
pub fn secret_env() -> Vec<(String, String)> {
    env(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_SECRET", SECRET),
    ])
}

pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A factory reading only `vars`, with a 2 s attempt timeout and 10 ms first backoff.
pub fn factory(vars: Vec<(String, String)>) -> AzureKeyVaultFactory {
    let map: BTreeMap<String, String> = vars.into_iter().collect();
    AzureKeyVaultFactory::with_env(move |k| map.get(k).cloned())
        .request_timeout(Duration::from_secs(2))
        .retry_delay(Duration::from_millis(10))
}

/// `key_id`, `authority_host` and `ca_file` for key `name` of the stand-in.
pub fn settings(kv: &AzureKeyVault, name: &str) -> Settings {
    Settings::from([
        ("key_id".to_owned(), kv.key_id(name)),
        ("authority_host".to_owned(), kv.url().to_owned()),
        ("ca_file".to_owned(), kv.ca_file().display().to_string()),
    ])
}

/// A provider for key `name` with the client-secret credential.
pub async fn provider(kv: &AzureKeyVault, name: &str) -> Arc<dyn KeyProvider> {
    factory(secret_env())
        .open(&settings(kv, name))
        .await
        .unwrap()
}

pub fn ctx(repo: u8, dek: u8) -> WrapContext {
    WrapContext {
        repository_id: RepositoryId([repo; 16]),
        data_key_id: DataKeyId([dek; 16]),
    }
}
