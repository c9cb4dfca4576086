//! Conformance suites shared by every implementation of encrypt-repo's pluggable traits.
//!
//! [`key_provider_conformance`] is run once per key provider (local and passphrase here; AWS KMS,
//! OpenBao and exec in their own crates), in the way rustls-test runs one API suite per crypto
//! provider. Each check panics with a message naming the provider and the property that failed.
//!
//! [`store::CountingStore`] wraps any `ObjectStore` and records every call, so tests can show
//! what an operation read and wrote (a re-wrap touching no data object, a range read fetching
//! one chunk).
//!
//! [`repository`] holds the repository-level scenarios (re-wrap touching no data object, a
//! withdrawn key locking and a restored one unlocking) that every provider crate runs over its
//! own provider; [`azure_key_vault`] and [`gcp_kms`] are loopback stand-ins of those services.

pub mod azure_key_vault;
pub mod gcp_kms;
pub mod repository;
pub mod store;

use std::sync::Arc;

use encrypt_repo_format::{DataKey, DataKeyId, RepositoryId};
use encrypt_repo_keys::{Error, KeyProvider, WrapContext};

fn ctx(repo: u8, dek: u8) -> WrapContext {
    WrapContext {
        repository_id: RepositoryId([repo; 16]),
        data_key_id: DataKeyId([dek; 16]),
    }
}

/// Checks the [`KeyProvider`] contract on `provider`:
///
/// - generated keys are fresh (two generations differ) and unwrap to themselves;
/// - `wrap` of a given key unwraps to it, and wrapping twice gives different ciphertexts or at
///   least both unwrap (KMS providers may be deterministic);
/// - the wrap context is authenticated: another repository id or another data-key id fails with
///   [`Error::UnwrapFailed`] (or [`Error::KeyUnavailable`] for KMSs that report it so);
/// - tampered ciphertext (every byte flipped in turn, truncated, extended, empty) fails and never
///   panics;
/// - a key wrapped by another provider instance is rejected;
/// - `status` reports usable, and `Debug` of the provider and of a generated key shows no key
///   bytes.
///
/// `other` is a second instance of the same provider type with a *different* master key.
pub async fn key_provider_conformance(provider: Arc<dyn KeyProvider>, other: Arc<dyn KeyProvider>) {
    let name = provider.type_name().to_owned();
    let c = ctx(1, 2);

    let g1 = provider
        .generate_data_key(&c)
        .await
        .expect("generate_data_key");
    let g2 = provider
        .generate_data_key(&c)
        .await
        .expect("generate_data_key");
    assert_ne!(
        g1.plaintext.expose_secret(),
        g2.plaintext.expose_secret(),
        "{name}: generated keys repeat"
    );
    assert_eq!(
        g1.wrapped.provider, name,
        "{name}: wrapped key names another provider"
    );
    let back = provider
        .unwrap(&g1.wrapped, &c)
        .await
        .expect("unwrap of a generated key");
    assert_eq!(
        back.expose_secret(),
        g1.plaintext.expose_secret(),
        "{name}: unwrap differs from generated key"
    );

    let k = DataKey::from_bytes([0x5a; 32]);
    let w = provider.wrap(&k, &c).await.expect("wrap");
    let secret_hex: String = k
        .expose_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        !format!("{w:?}").contains(&secret_hex),
        "{name}: Debug of a wrapped key shows the key"
    );
    assert_eq!(
        provider
            .unwrap(&w, &c)
            .await
            .expect("unwrap")
            .expose_secret(),
        k.expose_secret()
    );

    for (label, wrong) in [("repository id", ctx(9, 2)), ("data-key id", ctx(1, 9))] {
        match provider.unwrap(&w, &wrong).await {
            Err(Error::UnwrapFailed { .. } | Error::KeyUnavailable { .. }) => {}
            other => panic!("{name}: unwrap under another {label} must fail, got {other:?}"),
        }
    }

    for i in 0..w.ciphertext.len() {
        let mut t = w.clone();
        t.ciphertext[i] ^= 0x01;
        assert!(
            provider.unwrap(&t, &c).await.is_err(),
            "{name}: flipped byte {i} accepted"
        );
    }
    for len in [0, 1, w.ciphertext.len() / 2, w.ciphertext.len() - 1] {
        let mut t = w.clone();
        t.ciphertext.truncate(len);
        assert!(
            provider.unwrap(&t, &c).await.is_err(),
            "{name}: truncation to {len} accepted"
        );
    }
    let mut t = w.clone();
    t.ciphertext.push(0);
    assert!(
        provider.unwrap(&t, &c).await.is_err(),
        "{name}: extension accepted"
    );

    let foreign = other
        .wrap(&k, &c)
        .await
        .expect("wrap by the other instance");
    assert!(
        provider.unwrap(&foreign, &c).await.is_err(),
        "{name}: accepted a key wrapped under another master key"
    );

    let status = provider.status().await.expect("status");
    assert!(
        status.is_usable(),
        "{name}: fresh provider reports {status:?}"
    );
    let dbg = format!("{provider:?} {:?}", g1.plaintext);
    let g1_hex: String = g1
        .plaintext
        .expose_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        !dbg.contains(&g1_hex),
        "{name}: Debug output shows key bytes"
    );
}
