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
    /// # Errors
    /// [`Error::Io`] (including "already exists").
    pub fn create(path: &Path) -> Result<Self> {
        use std::io::Write as _;
        let io = |source| Error::Io {
            what: format!("creating local key file {}", path.display()),
            source,
        };
        let key = DataKey::generate()?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(io)?;
        let text = Zeroizing::new(format!(
            "{FILE_MAGIC}\n{}\n",
            crate::hex(key.expose_secret())
        ));
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io)?;
        Ok(Self {
            kek: Kek::new(*key.expose_secret()),
            path: path.to_owned(),
        })
    }

    /// The key's public fingerprint.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        self.kek.fingerprint()
    }
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

    fn identity_settings(&self) -> &'static [&'static str] {
        &["fingerprint"]
    }

    async fn prepare(&self, settings: &mut Settings) -> Result<bool> {
        let path = key_file(settings)?;
        let (provider, created) = match LocalProvider::load(&path) {
            Ok(p) => (p, false),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                (LocalProvider::create(&path)?, true)
            }
            Err(e) => return Err(e),
        };
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
