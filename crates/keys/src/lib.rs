//! encrypt-repo key providers.
//!
//! A [`KeyProvider`] generates 256-bit data keys and wraps / unwraps them under a master key it
//! keeps (a KMS key, a local key file, a passphrase). Data keys never leave the process in
//! plaintext; wrapped copies go to the repository keyring. A [`ProviderRegistry`] builds providers
//! from a type name and a settings map. [`WriterKey`] and [`ReaderCache`] keep provider calls to
//! one per rotation interval for writers and one per key per TTL for readers.
//!
//! This crate has the `local` and `passphrase` providers, and the `exec` provider, which hands
//! key operations to an external program speaking the JSON protocol in `EXEC-PROTOCOL.md` (any
//! KMS without recompiling); cloud KMS providers live in sibling crates that depend on this one.

mod cache;
mod error;
pub mod exec;
mod kek;
pub mod local;
pub mod passphrase;
mod provider;
mod registry;
mod secret;
pub mod wire;

pub use cache::{CachePolicy, ReaderCache, WriterKey};
pub use error::{Error, Result};
pub use provider::{
    GeneratedKey, KeyProvider, KeyStatus, RotationInfo, Settings, WrapContext, WrappedKey,
};
pub use registry::{ProviderFactory, ProviderRegistry, check_known_settings};
pub use secret::{COMMAND_TIMEOUT, MAX_SECRET_LEN, SecretSource};

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    // Only hex digits: `u8::from_str_radix` alone would also take a sign (`+0`).
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn unhex_takes_hex_digits_only() {
        assert_eq!(super::unhex("00aBff"), Some(vec![0, 0xab, 0xff]));
        for bad in ["+0", "-1", "0", "0g", " 0", "é0"] {
            assert_eq!(super::unhex(bad), None, "{bad:?}");
        }
    }
}
