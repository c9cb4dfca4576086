//! `P/config`: the content key that names data objects, created once per backup prefix.

use std::sync::Arc;

use aws_lc_rs::hmac;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{Error, Layout, Result, hex, unhex};

/// The only config version this build reads and writes.
const VERSION: u32 = 1;

/// The key of the content ids: HMAC-SHA-256 over a file's bytes. A keyed hash, so an object
/// name does not let anyone holding a known file confirm it is in the repository.
pub(crate) struct ContentKey {
    key: hmac::Key,
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

impl ContentKey {
    fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// A fresh random key (dry runs of a prefix that has none yet use one without storing it).
    pub(crate) fn random() -> Result<Self> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| Error::Internal("the system random generator failed".into()))?;
        let key = Self::from_bytes(&bytes);
        bytes.fill(0);
        Ok(key)
    }

    /// A streaming hasher for one content.
    pub(crate) fn hasher(&self) -> hmac::Context {
        hmac::Context::with_key(&self.key)
    }
}

/// The JSON form. No `Debug`: it holds the key in hex.
#[derive(Serialize, Deserialize)]
struct ConfigFile {
    version: u32,
    content_key: String,
}

impl ConfigFile {
    fn parse(layout: &Layout, bytes: &[u8]) -> Result<ContentKey> {
        let path = layout.config();
        let file: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(&path, format!("not a snapshot config: {e}")))?;
        if file.version != VERSION {
            return Err(Error::corrupt(
                &path,
                format!(
                    "config version {} is not supported (this build reads version {VERSION})",
                    file.version
                ),
            ));
        }
        match unhex(&file.content_key) {
            Some(mut key) if key.len() == 32 => {
                let k = ContentKey::from_bytes(&key);
                key.fill(0);
                Ok(k)
            }
            _ => Err(Error::corrupt(&path, "content_key is not 64 hex digits")),
        }
    }
}

/// The prefix's content key, or `None` if nothing was ever backed up under it.
pub(crate) async fn load(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
) -> Result<Option<ContentKey>> {
    let path = layout.config();
    let got = match store.get(&path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    match got {
        Ok(bytes) => ConfigFile::parse(layout, &bytes).map(Some),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::store("reading", &path, e)),
    }
}

/// The prefix's content key, created if absent. Two backups racing to create it both end up
/// with the winner's key (`PutMode::Create`, then read back).
pub(crate) async fn load_or_create(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
) -> Result<ContentKey> {
    if let Some(key) = load(store, layout).await? {
        return Ok(key);
    }
    let path = layout.config();
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Error::Internal("the system random generator failed".into()))?;
    let key = ContentKey::from_bytes(&bytes);
    let file = ConfigFile {
        version: VERSION,
        content_key: hex(&bytes),
    };
    bytes.fill(0);
    let json = serde_json::to_vec_pretty(&file)
        .map_err(|e| Error::Internal(format!("serializing the config: {e}")))?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(&path, PutPayload::from(json), opts).await {
        Ok(_) => Ok(key),
        Err(object_store::Error::AlreadyExists { .. }) => match load(store, layout).await? {
            Some(key) => Ok(key),
            None => Err(Error::corrupt(&path, "exists and then does not")),
        },
        Err(e) => Err(Error::store("writing", &path, e)),
    }
}
