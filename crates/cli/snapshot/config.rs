//! `P/config`: the content key that names data objects, created once per backup prefix.

use std::sync::Arc;

use aws_lc_rs::hmac;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize as _, Zeroizing};

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
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut())
            .map_err(|_| Error::Internal("the system random generator failed".into()))?;
        Ok(Self::from_bytes(bytes.as_ref()))
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
        let mut file: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(&path, format!("not a snapshot config: {e}")))?;
        let hex_key = Zeroizing::new(std::mem::take(&mut file.content_key));
        if file.version != VERSION {
            return Err(Error::corrupt(
                &path,
                format!(
                    "config version {} is not supported (this build reads version {VERSION})",
                    file.version
                ),
            ));
        }
        match unhex(&hex_key).map(Zeroizing::new) {
            Some(key) if key.len() == 32 => Ok(ContentKey::from_bytes(&key)),
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
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(bytes.as_mut())
        .map_err(|_| Error::Internal("the system random generator failed".into()))?;
    let key = ContentKey::from_bytes(bytes.as_ref());
    let mut file = ConfigFile {
        version: VERSION,
        content_key: hex(bytes.as_ref()),
    };
    let json = serde_json::to_vec_pretty(&file)
        .map_err(|e| Error::Internal(format!("serializing the config: {e}")));
    file.content_key.zeroize();
    // The serialized copy goes to the store, which seals it and drops it (not zeroized there).
    let json = json?;
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
