//! From a repository URL to a backend store and an opened repository.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use encrypt_repo::keys::Settings;
use encrypt_repo::store::{EncryptedStore, Repository, RepositoryOptions};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use url::Url;

use crate::app::exit::{Exit, Usage, classify};

/// The backend an encrypted store wraps.
pub(crate) type Backend = Arc<dyn ObjectStore>;
/// The store commands read and write through.
pub(crate) type Store = EncryptedStore<Backend>;

/// A parsed repository location.
#[derive(Debug)]
pub(crate) struct Location {
    /// The backend, already narrowed to the URL's prefix.
    pub(crate) backend: Backend,
    /// The registration's `type`: fs, s3, azure, gcs, http, memory.
    pub(crate) store_type: &'static str,
    /// The registration's storage settings (bucket/container and prefix, or the directory).
    pub(crate) settings: BTreeMap<String, String>,
}

/// A cloud store from the environment, the URL and the `--store-option`s.
macro_rules! cloud_store {
    ($builder:ty, $url:expr, $options:expr) => {{
        let mut builder = <$builder>::from_env().with_url($url.as_str());
        for (k, v) in $options {
            let key = k.to_ascii_lowercase().parse().map_err(|_| {
                Usage(format!(
                    "--store-option {k}: not an option of this store type"
                ))
            })?;
            builder = builder.with_config(key, v);
        }
        let store = builder
            .build()
            .with_context(|| format!("repository URL {}", $url))?;
        Box::new(store) as Box<dyn ObjectStore>
    }};
}

/// Parses a path or URL. A plain path (or `file://`) is a local directory, created when
/// `create` is set (for `init`).
pub(crate) fn locate(repo: &str, options: &[(String, String)], create: bool) -> Result<Location> {
    let url = match Url::parse(repo) {
        Ok(u) if u.scheme().len() > 1 => u, // "c:\…" is a path, not a URL with scheme "c"
        _ => {
            let path = std::path::Path::new(repo);
            if create {
                std::fs::create_dir_all(path)
                    .with_context(|| format!("creating repository directory {}", path.display()))?;
            }
            let abs = std::path::absolute(path)
                .with_context(|| format!("repository path {}", path.display()))?;
            Url::from_directory_path(&abs).map_err(|()| {
                anyhow::anyhow!("repository path {} is not absolute", abs.display())
            })?
        }
    };
    if url.scheme() == "file" {
        let dir = url
            .to_file_path()
            .map_err(|()| anyhow::anyhow!("not a local path: {url}"))?;
        if create {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating repository directory {}", dir.display()))?;
        }
        if !dir.is_dir() {
            bail!(NotFound(format!(
                "repository directory {} does not exist",
                dir.display()
            )));
        }
        let backend = LocalFileSystem::new_with_prefix(&dir)
            .with_context(|| format!("opening {}", dir.display()))?;
        return Ok(Location {
            backend: Arc::new(backend),
            store_type: "fs",
            settings: BTreeMap::from([("location".into(), dir.display().to_string())]),
        });
    }
    let (scheme, prefix) = object_store::ObjectStoreScheme::parse(&url)
        .with_context(|| format!("repository URL {url}"))?;
    let store_type = match scheme {
        object_store::ObjectStoreScheme::AmazonS3 => "s3",
        object_store::ObjectStoreScheme::MicrosoftAzure => "azure",
        object_store::ObjectStoreScheme::GoogleCloudStorage => "gcs",
        object_store::ObjectStoreScheme::Http => "http",
        object_store::ObjectStoreScheme::Memory => "memory",
        _ => "other",
    };
    // The cloud builders start from the environment (AWS_*, AZURE_*, GOOGLE_*), so credentials
    // never have to be command-line arguments; `--store-option` values come on top, and a key
    // object_store does not know is an error rather than silently ignored.
    let store: Box<dyn ObjectStore> = match scheme {
        object_store::ObjectStoreScheme::AmazonS3 => {
            cloud_store!(object_store::aws::AmazonS3Builder, url, options)
        }
        object_store::ObjectStoreScheme::MicrosoftAzure => {
            cloud_store!(object_store::azure::MicrosoftAzureBuilder, url, options)
        }
        object_store::ObjectStoreScheme::GoogleCloudStorage => {
            cloud_store!(object_store::gcp::GoogleCloudStorageBuilder, url, options)
        }
        _ => {
            object_store::parse_url_opts(&url, options.iter().cloned())
                .with_context(|| format!("repository URL {url}"))?
                .0
        }
    };
    let backend: Backend = if prefix.as_ref().is_empty() {
        Arc::from(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix.clone()))
    };
    let mut settings = BTreeMap::from([("url".into(), redact_url(&url))]);
    if !prefix.as_ref().is_empty() {
        settings.insert("prefix".into(), prefix.to_string());
    }
    Ok(Location {
        backend,
        store_type,
        settings,
    })
}

/// The URL without user info or query (which may carry credentials).
fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

/// Opens the registered repository at `repo` with the access settings given.
pub(crate) async fn open(
    repo: &str,
    store_options: &[(String, String)],
    key_settings: &[(String, String)],
) -> Result<(Location, Arc<Repository>)> {
    let location = locate(repo, store_options, false)?;
    let access: Settings = key_settings.iter().cloned().collect();
    let repository = Repository::open(
        location.backend.clone(),
        &encrypt_repo::provider_registry(),
        &access,
        RepositoryOptions::default(),
    )
    .await
    .map_err(|e| {
        let e = anyhow::Error::new(e);
        // At open, an authentication failure means the key given is not the registered one.
        if classify(&e) == Exit::Auth {
            e.context("the key does not match the one this repository was registered with")
        } else {
            e
        }
    })
    .with_context(|| format!("opening repository {repo}"))?;
    Ok((location, Arc::new(repository)))
}

/// Opens the repository and wraps its backend.
pub(crate) async fn open_store(
    repo: &str,
    store_options: &[(String, String)],
    key_settings: &[(String, String)],
) -> Result<(Arc<Repository>, Store)> {
    let (location, repository) = open(repo, store_options, key_settings).await?;
    let store = EncryptedStore::new(Arc::new(location.backend), repository.clone());
    Ok((repository, store))
}

/// A "not found" condition of the CLI itself (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NotFound(pub(crate) String);
