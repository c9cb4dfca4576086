//! Shared by this crate's test binaries: a stand-in Cloud KMS with a service account, and
//! factories whose credentials come from it (never from the process environment).

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use encrypt_repo_format::{DataKeyId, RepositoryId};
use encrypt_repo_keys::{Settings, WrapContext};
use encrypt_repo_kms_gcp::{GcpKmsFactory, GcpKmsProvider};
use encrypt_repo_testkit::gcp_kms::GcpKmsStandIn;

pub const EMAIL: &str = "encrypt-repo@stand-in.iam.gserviceaccount.com";

pub struct Env {
    pub kms: GcpKmsStandIn,
    pub dir: tempfile::TempDir,
    pub key_file: PathBuf,
}

/// A stand-in with service account [`EMAIL`] and its key file.
pub async fn env() -> Env {
    let kms = GcpKmsStandIn::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = kms.write_service_account(dir.path(), EMAIL);
    Env { kms, dir, key_file }
}

/// A lookup that answers `vars` and nothing else.
pub fn lookup(
    vars: Vec<(&'static str, String)>,
) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

impl Env {
    /// A factory with `GOOGLE_APPLICATION_CREDENTIALS` = this service account's key file, and
    /// quick retries.
    pub fn factory(&self) -> GcpKmsFactory {
        self.factory_with_key_file(&self.key_file)
    }

    pub fn factory_with_key_file(&self, file: &std::path::Path) -> GcpKmsFactory {
        GcpKmsFactory::with_env(lookup(vec![(
            "GOOGLE_APPLICATION_CREDENTIALS",
            file.display().to_string(),
        )]))
        .with_retry_backoff(Duration::from_millis(20))
    }

    /// A factory using the stand-in's metadata server (no key file).
    pub fn metadata_factory(&self) -> GcpKmsFactory {
        GcpKmsFactory::with_env(lookup(vec![(
            "GCE_METADATA_HOST",
            self.kms.metadata_host(),
        )]))
        .with_retry_backoff(Duration::from_millis(20))
    }

    pub fn settings(&self, key_name: &str) -> Settings {
        Settings::from([
            ("key_name".to_owned(), key_name.to_owned()),
            ("endpoint".to_owned(), self.kms.endpoint()),
        ])
    }

    pub async fn provider(&self, key_name: &str) -> GcpKmsProvider {
        self.factory()
            .provider(&self.settings(key_name))
            .await
            .expect("provider")
    }
}

pub fn ctx(repo: u8, dek: u8) -> WrapContext {
    WrapContext {
        repository_id: RepositoryId([repo; 16]),
        data_key_id: DataKeyId([dek; 16]),
    }
}
