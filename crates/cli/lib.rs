//! encrypt-repo: a client-side encrypting object-storage repository.
//!
//! This crate is the facade over the workspace libraries; see the README and ARCHITECTURE.md.

pub use encrypt_repo_format as format;
pub use encrypt_repo_keys as keys;
pub use encrypt_repo_store as store;
