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

use crate::app::args::Global;
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
    /// The directory of a local repository (`None` for object stores).
    pub(crate) local_dir: Option<std::path::PathBuf>,
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
        let backend = durable_local(&dir)?;
        return Ok(Location {
            backend: Arc::new(backend),
            store_type: "fs",
            settings: BTreeMap::from([("location".into(), dir.display().to_string())]),
            local_dir: Some(dir),
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
        local_dir: None,
    })
}

/// A local directory as a backend that makes every write durable before it returns.
///
/// object_store's `LocalFileSystem` writes each object (put or multipart) into a staging file
/// `<name>#<n>` and renames it into place; with `with_fsync(true)` it also `fsync`s the staging
/// file before the rename and the parent directory after it (and every directory it creates),
/// so an object, a keyring record, the registration or a snapshot manifest whose write returned
/// survives a power cut. The cost is measured by `encrypt-repo bench` ("local put … fsync").
pub(crate) fn durable_local(dir: &std::path::Path) -> Result<LocalFileSystem> {
    Ok(LocalFileSystem::new_with_prefix(dir)
        .with_context(|| format!("opening {}", dir.display()))?
        .with_fsync(true))
}

/// The URL without user info or query (which may carry credentials).
fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

/// `--escrow-setting NAME:K=V` values, by escrow provider name.
pub(crate) fn escrow_settings(values: &[String]) -> Result<BTreeMap<String, Settings>> {
    let mut by_name = BTreeMap::<String, Settings>::new();
    for e in values {
        let (name, k, v) = e
            .split_once(':')
            .and_then(|(n, kv)| kv.split_once('=').map(|(k, v)| (n, k, v)))
            .ok_or_else(|| Usage(format!("--escrow-setting {e:?}: expected NAME:K=V")))?;
        by_name
            .entry(name.to_owned())
            .or_default()
            .insert(k.to_owned(), v.to_owned());
    }
    Ok(by_name)
}

/// How the CLI opens and registers repositories: the registration records what each key is,
/// never how to reach it; `--key-setting` and `--escrow-setting` say that, on every run.
pub(crate) fn repository_options(g: &Global) -> Result<RepositoryOptions> {
    Ok(RepositoryOptions {
        caller_access_only: true,
        escrow_access: escrow_settings(&g.escrow_settings)?,
        ..RepositoryOptions::default()
    })
}

/// Opens the registered repository at `repo` with the access settings given.
pub(crate) async fn open(repo: &str, g: &Global) -> Result<(Location, Arc<Repository>)> {
    let location = locate(repo, &g.store_options, false)?;
    let access: Settings = g.key_settings.iter().cloned().collect();
    let repository = Repository::open(
        location.backend.clone(),
        &encrypt_repo::provider_registry(),
        &access,
        repository_options(g)?,
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
pub(crate) async fn open_store(repo: &str, g: &Global) -> Result<(Arc<Repository>, Store)> {
    let (location, repository) = open(repo, g).await?;
    let store = EncryptedStore::new(Arc::new(location.backend), repository.clone());
    Ok((repository, store))
}

/// A "not found" condition of the CLI itself (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NotFound(pub(crate) String);

#[cfg(test)]
mod tests {
    use super::*;

    /// The store every command of a local repository writes through syncs: `LocalFileSystem`
    /// keeps the setting private, so its `Debug` output is the only way to see it.
    #[test]
    fn a_local_repository_is_opened_with_fsync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().display().to_string();
        for repo in [path.clone(), format!("file://{path}")] {
            let location = locate(&repo, &[], false).expect("locate");
            assert_eq!(location.store_type, "fs");
            let shown = format!("{:?}", location.backend);
            assert!(shown.contains("fsync: true"), "{repo}: {shown}");
        }
    }
}
