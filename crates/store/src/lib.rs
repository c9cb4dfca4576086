//! encrypt-repo repositories and the encrypting object store.
//!
//! A [`Repository`] is registered once in an object store (the crypto plugin's request shape:
//! `type`, `settings`, `encrypted`, `crypto_settings`), gets a random id, and keeps its records
//! under the reserved prefix `.encrypt-repo/`: the registration and a keyring of wrapped data
//! keys. [`EncryptedStore<S>`] implements `object_store::ObjectStore` over any other store: a
//! snapshot uploader swaps `store` for `EncryptedStore::new(store, repo)` and changes nothing else.

mod encrypted;
mod error;
mod lifecycle;
mod pool;
mod registration;
mod repository;
mod upload;

pub use encrypted::{
    DEFAULT_PART_SIZE, EncryptedStore, MIN_PART_SIZE, StoreConfig, is_reserved_segment,
};
pub use error::{Error, Result};
pub use lifecycle::{DataKeyInfo, RewrapReport, Shred, StatusWatch};
pub use pool::BufferPool;
pub use registration::{CryptoSettings, Registration, RegistrationRequest};
pub use repository::{
    DEFAULT_STATUS_CHECK_INTERVAL, KeyringRecord, RESERVED_PREFIX, Registered, Repository,
    RepositoryOptions,
};
