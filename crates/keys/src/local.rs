//! The `local` provider: a 32-byte master key in a file, wrapping with AES-256-GCM.
//!
//! Settings: `key_file` (access: where the key is; required), `fingerprint` (identity: recorded at
//! registration, so opening with another key file is a clear error rather than a wall of
//! unwrap failures).
//!
//! Key file format (text, so it can be printed and kept on paper):
//! `encrypt-repo-local-key-v1\n` followed by 64 hex digits and a newline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use encrypt_repo_format::DataKey;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::kek::Kek;
use crate::provider::{KeyProvider, KeyStatus, Settings, WrapContext, WrappedKey};
use crate::registry::ProviderFactory;

/// Provider type name.
pub const TYPE: &str = "local";
const FILE_MAGIC: &str = "encrypt-repo-local-key-v1";
const WRAP_LABEL: &[u8] = b"encrypt-repo/v1 local wrap\0";

/// A master key held in a local file.
#[derive(Debug)]
pub struct LocalProvider {
    kek: Kek,
    path: PathBuf,
}

impl LocalProvider {
    /// Loads the key file at `path`. Refuses files readable by group or others.
    ///
    /// # Errors
    /// [`Error::Io`] if unreadable, [`Error::Setting`] if malformed or too permissive.
    pub fn load(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            what: format!("reading local key file {}", path.display()),
            source,
        };
        check_permissions(path)?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let bad = |problem: &str| Error::Setting {
            provider: TYPE.into(),
            setting: "key_file".into(),
            problem: format!("{}: {problem}", path.display()),
        };
        let mut lines = text.lines();
        if lines.next() != Some(FILE_MAGIC) {
            return Err(bad(
                "is not an encrypt-repo local key file (first line must be encrypt-repo-local-key-v1)",
            ));
        }
        let hex = lines.next().unwrap_or_default().trim();
        let bytes = Zeroizing::new(crate::unhex(hex).ok_or_else(|| bad("key line is not hex"))?);
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("key must be 32 bytes (64 hex digits)"))?;
        Ok(Self {
            kek: Kek::new(key),
            path: path.to_owned(),
        })
    }

    /// Creates a new key file with mode 0600 at `path`; fails if it exists.
    ///
    /// The key is written and synced to a temporary file beside `path`, which is then
    /// hard-linked to `path` (the link fails if `path` exists) and the directory synced: a
    /// reader never sees a half-written key file, and of two processes creating the same key
    /// file at once exactly one succeeds, the other getting "already exists".
    ///
    /// # Errors
    /// [`Error::Io`] (including "already exists").
    pub fn create(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            what: format!("creating local key file {}", path.display()),
            source,
        };
        let key = DataKey::generate()?;
        let text = Zeroizing::new(format!(
            "{FILE_MAGIC}\n{}\n",
            crate::hex(key.expose_secret())
        ));
        publish(path, text.as_bytes()).map_err(io)?;
        Ok(Self {
            kek: Kek::new(*key.expose_secret()),
            path: path.to_owned(),
        })
    }

    /// Loads the key file at `path`, creating it first if there is none; the flag says whether
    /// this call created it. When another process creates it at the same moment, both end up
    /// with the one key that process wrote.
    ///
    /// # Errors
    /// As [`LocalProvider::load`] and [`LocalProvider::create`].
    pub fn load_or_create(path: &Path) -> Result<(Self, bool)> {
        match Self::load(path) {
            Ok(p) => return Ok((p, false)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Self::create_or_adopt(path)
    }

    /// [`LocalProvider::create`], or, if the file appeared since it was found missing, the key
    /// another process put there (complete: [`publish`] links only finished files).
    fn create_or_adopt(path: &Path) -> Result<(Self, bool)> {
        match Self::create(path) {
            Ok(p) => Ok((p, true)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::load(path)?, false))
            }
            Err(e) => Err(e),
        }
    }

    /// The key's public fingerprint.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        self.kek.fingerprint()
    }
}

/// Writes `bytes` to a new file at `path` (mode 0600) all at once: into a temporary file in
/// the same directory, synced, hard-linked to `path` (failing with `AlreadyExists` if it
/// exists), then the directory synced. The temporary file is removed in every case.
fn publish(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut suffix = [0u8; 8];
    aws_lc_rs::rand::fill(&mut suffix)
        .map_err(|_| std::io::Error::other("the system random generator failed"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::hex(&suffix)));
    let mut f = opts.open(&tmp)?;
    let linked = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked?;
    #[cfg(unix)]
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        what: format!("reading local key file {}", path.display()),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Setting {
            provider: TYPE.into(),
            setting: "key_file".into(),
            problem: format!(
                "{} is accessible by group or others (mode {mode:03o}); run chmod 600 on it",
                path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path) -> Result<()> {
    Ok(())
}

#[async_trait::async_trait]
impl KeyProvider for LocalProvider {
    fn type_name(&self) -> &str {
        TYPE
    }

    fn master_key(&self) -> String {
        format!("{} ({})", self.kek.fingerprint(), self.path.display())
    }

    async fn wrap(&self, key: &DataKey, ctx: &WrapContext) -> Result<WrappedKey> {
        self.kek.wrap(TYPE, WRAP_LABEL, key, ctx)
    }

    async fn unwrap(&self, wrapped: &WrappedKey, ctx: &WrapContext) -> Result<DataKey> {
        self.kek.unwrap(TYPE, WRAP_LABEL, wrapped, ctx)
    }

    async fn status(&self) -> Result<KeyStatus> {
        // The key is in memory; it is usable as long as the file still holds the same key.
        match Self::load(&self.path) {
            Ok(k) if k.fingerprint() == self.fingerprint() => {
                Ok(KeyStatus::Usable { rotation: None })
            }
            Ok(_) => Ok(KeyStatus::Revoked),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(KeyStatus::NotFound)
            }
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Ok(KeyStatus::AccessDenied)
            }
            Err(e) => Err(e),
        }
    }
}

/// Builds [`LocalProvider`]s from settings.
#[derive(Debug, Default)]
pub struct LocalFactory;

fn key_file(settings: &Settings) -> Result<PathBuf> {
    settings
        .get("key_file")
        .map(PathBuf::from)
        .ok_or_else(|| Error::Setting {
            provider: TYPE.into(),
            setting: "key_file".into(),
            problem: "is required (path of the 32-byte master key file)".into(),
        })
}

#[async_trait::async_trait]
impl ProviderFactory for LocalFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn known_settings(&self) -> Option<&'static [&'static str]> {
        Some(&["key_file", "fingerprint"])
    }

    fn identity_settings(&self) -> &'static [&'static str] {
        &["fingerprint"]
    }

    async fn prepare(&self, settings: &mut Settings) -> Result<bool> {
        let path = key_file(settings)?;
        let (provider, created) = LocalProvider::load_or_create(&path)?;
        settings.insert("fingerprint".into(), provider.fingerprint());
        Ok(created)
    }

    async fn open(&self, settings: &Settings) -> Result<Arc<dyn KeyProvider>> {
        let path = key_file(settings)?;
        let provider = LocalProvider::load(&path)?;
        if let Some(expected) = settings.get("fingerprint")
            && *expected != provider.fingerprint()
        {
            return Err(Error::WrongMasterKey {
                provider: TYPE.into(),
                setting: "key_file".into(),
                detail: format!(
                    "{} holds key {} but the repository was registered with key {expected}: wrong key file",
                    path.display(),
                    provider.fingerprint()
                ),
            });
        }
        Ok(Arc::new(provider))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_key_file_created_by_another_process_in_between_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        // This process found no file; another one created it before this one could.
        let theirs = LocalProvider::create(&path).unwrap();
        let (ours, created) = LocalProvider::create_or_adopt(&path).unwrap();
        assert!(!created);
        assert_eq!(ours.fingerprint(), theirs.fingerprint());
    }

    #[test]
    fn processes_racing_to_create_one_key_file_all_get_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let start = std::sync::Barrier::new(8);
        let results: Vec<(String, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        let (p, created) = LocalProvider::load_or_create(&path).unwrap();
                        (p.fingerprint(), created)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.1).count(), 1, "{results:?}");
        assert!(results.iter().all(|r| r.0 == results[0].0), "{results:?}");
        // No temporary file is left beside the key.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("master.key")]);
    }
}
