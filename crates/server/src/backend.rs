//! From a registration's `type` and `settings` to a storage backend.
//!
//! | type | settings |
//! |---|---|
//! | `fs` | `location`: a directory under one of `server.fs_roots` (created if missing) |
//! | `s3` | `bucket` or `url` (`s3://bucket/prefix`), optional `base_path`, and object_store's S3 options (`region`, `endpoint`, `allow_http`, …) |
//! | `azure` | `container` or `url` (`az://container/prefix`), optional `base_path`, and object_store's Azure options (`account`, `endpoint`, …) |
//! | `gcs` | `bucket` or `url` (`gs://bucket/prefix`), optional `base_path`, and object_store's GCS options |
//!
//! Credentials never come from a registration: the cloud builders read the server's environment
//! (`AWS_*`, `AZURE_*`, `GOOGLE_*`), and settings that look like credentials are refused. Like
//! OpenSearch's `path.repo`, `fs` repositories are confined to the configured roots.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

/// A backend store.
pub type Backend = Arc<dyn ObjectStore>;

const META: &[&str] = &[
    "url",
    "bucket",
    "container",
    "base_path",
    "prefix",
    "location",
];

fn looks_like_credential(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "access_key",
        "account_key",
        "service_account_key",
        "sas",
    ]
    .iter()
    .any(|c| k.contains(c))
}

/// Builds the backend of `store_type` with `settings`. Errors name the setting and are safe to
/// show a client.
///
/// # Errors
/// A message naming the setting at fault.
pub fn build(
    store_type: &str,
    settings: &BTreeMap<String, String>,
    fs_roots: &[PathBuf],
) -> Result<Backend, String> {
    for k in settings.keys() {
        if looks_like_credential(k) {
            return Err(format!(
                "settings.{k}: credentials are never repository settings; the server reads them from its environment"
            ));
        }
    }
    match store_type {
        "fs" => fs(settings, fs_roots),
        "s3" => cloud(settings, "bucket", "s3", |url, opts| {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url);
            for (k, v) in opts {
                let key = k.parse().map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            b.build()
                .map(|s| Arc::new(s) as Backend)
                .map_err(|_| invalid())
        }),
        "azure" => cloud(settings, "container", "az", |url, opts| {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url);
            for (k, v) in opts {
                let key = k.parse().map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            b.build()
                .map(|s| Arc::new(s) as Backend)
                .map_err(|_| invalid())
        }),
        "gcs" => cloud(settings, "bucket", "gs", |url, opts| {
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
            for (k, v) in opts {
                let key = k.parse().map_err(|_| unknown(k))?;
                b = b.with_config(key, v);
            }
            b.build()
                .map(|s| Arc::new(s) as Backend)
                .map_err(|_| invalid())
        }),
        other => Err(format!(
            "type: unknown repository type {other:?} (supported: fs, s3, azure, gcs)"
        )),
    }
}

fn unknown(k: &str) -> String {
    format!("settings.{k}: not a setting of this repository type")
}

fn invalid() -> String {
    "settings: the storage client could not be built from these settings".into()
}

fn cloud(
    settings: &BTreeMap<String, String>,
    name_key: &str,
    scheme: &str,
    make: impl FnOnce(&str, Vec<(&String, &String)>) -> Result<Backend, String>,
) -> Result<Backend, String> {
    let url = match (settings.get("url"), settings.get(name_key)) {
        (Some(u), _) => u.clone(),
        (None, Some(name)) if !name.is_empty() && !name.contains('/') => {
            format!("{scheme}://{name}")
        }
        _ => return Err(format!("settings.{name_key}: required (or settings.url)")),
    };
    let parsed = url::Url::parse(&url).map_err(|_| "settings.url: not a URL".to_owned())?;
    let url_prefix = parsed.path().trim_matches('/').to_owned();
    let opts: Vec<_> = settings
        .iter()
        .filter(|(k, _)| !META.contains(&k.as_str()))
        .collect();
    let store = make(&url, opts)?;
    let base = settings
        .get("base_path")
        .or_else(|| settings.get("prefix"))
        .map(|s| s.trim_matches('/').to_owned())
        .unwrap_or_default();
    let prefix = [url_prefix, base]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    Ok(if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    })
}

fn fs(settings: &BTreeMap<String, String>, roots: &[PathBuf]) -> Result<Backend, String> {
    let location = settings
        .get("location")
        .ok_or_else(|| "settings.location: required for type fs".to_owned())?;
    if let Some(k) = settings.keys().find(|k| k.as_str() != "location") {
        return Err(format!("settings.{k}: not a setting of type fs"));
    }
    let dir = Path::new(location);
    if !dir.is_absolute() || dir.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("settings.location: must be an absolute path without '..'".into());
    }
    if !roots.iter().any(|r| dir.starts_with(r)) {
        return Err("settings.location: not under any of the server's fs_roots".into());
    }
    std::fs::create_dir_all(dir)
        .map_err(|_| "settings.location: the directory cannot be created".to_owned())?;
    // Symlinks must not lead out of the roots.
    let real = dir
        .canonicalize()
        .map_err(|_| "settings.location: the directory cannot be opened".to_owned())?;
    let inside = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|r| real.starts_with(r));
    if !inside {
        return Err("settings.location: not under any of the server's fs_roots".into());
    }
    LocalFileSystem::new_with_prefix(&real)
        .map(|s| Arc::new(s) as Backend)
        .map_err(|_| "settings.location: the directory cannot be opened".into())
}

/// Builds the system repository's backend: an `fs` system repository may live anywhere.
///
/// # Errors
/// As [`build`].
pub fn build_system(
    store_type: &str,
    settings: &BTreeMap<String, String>,
) -> Result<Backend, String> {
    if store_type == "fs" {
        let root = settings
            .get("location")
            .map(PathBuf::from)
            .ok_or_else(|| "settings.location: required".to_owned())?;
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("settings.location: {}: {e}", root.display()))?;
        let root = std::path::absolute(&root).map_err(|e| format!("settings.location: {e}"))?;
        return build(store_type, settings, &[root]);
    }
    build(store_type, settings, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn fs_is_confined_to_its_roots() {
        let root = tempfile::tempdir().expect("tempdir");
        let roots = [root.path().to_path_buf()];
        let inside = root.path().join("repo");
        let loc = inside.to_str().expect("utf-8");
        assert!(build("fs", &s(&[("location", loc)]), &roots).is_ok());
        assert!(inside.is_dir());
        let e = build("fs", &s(&[("location", "/etc")]), &roots).expect_err("refused");
        assert!(e.contains("fs_roots"), "{e}");
        let dots = format!("{}/../x", root.path().display());
        assert!(build("fs", &s(&[("location", &dots)]), &roots).is_err());
        assert!(build("fs", &s(&[("location", "relative")]), &roots).is_err());
        assert!(
            build("fs", &s(&[]), &roots)
                .expect_err("x")
                .contains("settings.location")
        );
        #[cfg(unix)]
        {
            let link = root.path().join("out");
            std::os::unix::fs::symlink("/tmp", &link).expect("symlink");
            let l = link.to_str().expect("utf-8");
            assert!(
                build("fs", &s(&[("location", l)]), &roots).is_err(),
                "symlink out"
            );
        }
    }

    #[test]
    fn cloud_settings_are_checked() {
        let e = build("s3", &s(&[]), &[]).expect_err("refused");
        assert!(e.contains("settings.bucket"), "{e}");
        let e = build(
            "s3",
            &s(&[("bucket", "b"), ("secret_access_key", "x")]),
            &[],
        )
        .expect_err("refused");
        assert!(e.contains("settings.secret_access_key"), "{e}");
        let e = build("s3", &s(&[("bucket", "b"), ("colour", "blue")]), &[]).expect_err("refused");
        assert!(e.contains("settings.colour"), "{e}");
        let ok = build(
            "s3",
            &s(&[
                ("bucket", "b"),
                ("region", "us-east-1"),
                ("base_path", "x/y"),
            ]),
            &[],
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
        let e = build("hdfs", &s(&[]), &[]).expect_err("refused");
        assert!(e.starts_with("type:"), "{e}");
    }
}
