//! The `gcp-kms` provider against the loopback Cloud KMS stand-in of `encrypt-repo-testkit`:
//! the provider conformance suite, rotation, status mapping, credentials and token caching,
//! CRC32C checks, retries, timeouts and bad input.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use encrypt_repo_format::DataKey;
use encrypt_repo_keys::{Error, KeyProvider, KeyStatus, ProviderFactory, Settings, WrappedKey};
use encrypt_repo_kms_gcp::{GcpKmsFactory, MAX_ATTEMPTS, TYPE};
use encrypt_repo_testkit::gcp_kms::{Fault, METADATA_PRINCIPAL, VersionState};
use support::*;

fn key() -> DataKey {
    DataKey::from_bytes([0x42; 32])
}

#[track_caller]
fn assert_unavailable(r: Result<impl std::fmt::Debug, Error>, needle: &str) {
    match r {
        Err(Error::KeyUnavailable {
            provider, reason, ..
        }) => {
            assert_eq!(provider, TYPE);
            assert!(reason.contains(needle), "{reason}");
        }
        other => panic!("expected KeyUnavailable ({needle}), got {other:?}"),
    }
}

#[track_caller]
fn provider_message(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Provider { provider, message }) => {
            assert_eq!(provider, TYPE);
            message
        }
        other => panic!("expected a Provider error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_provider_conformance_suite() {
    let env = env().await;
    let (a, b) = (env.kms.create_key(), env.kms.create_key());
    let provider: Arc<dyn KeyProvider> = Arc::new(env.provider(&a).await);
    let other: Arc<dyn KeyProvider> = Arc::new(env.provider(&b).await);
    encrypt_repo_testkit::key_provider_conformance(provider, other).await;
    // The hundreds of calls above took one token per provider instance.
    assert_eq!(env.kms.calls().token, 2, "{:?}", env.kms.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_transparent_and_records_the_version() {
    let env = env().await;
    let name = env.kms.create_key();
    let p = env.provider(&name).await;
    let c = ctx(1, 2);
    let old = p.wrap(&key(), &c).await.expect("wrap v1");
    assert_eq!(old.master_key, format!("{name}/cryptoKeyVersions/1"));
    assert_eq!(p.master_key(), name);

    assert_eq!(env.kms.rotate(&name), 2);
    let new = p.wrap(&key(), &c).await.expect("wrap v2");
    assert_eq!(new.master_key, format!("{name}/cryptoKeyVersions/2"));
    for w in [&old, &new] {
        let back = p.unwrap(w, &c).await.expect("unwrap after rotation");
        assert_eq!(back.expose_secret(), key().expose_secret());
    }
    match p.status().await.expect("status") {
        KeyStatus::Usable { rotation: Some(r) } => {
            assert_eq!(r.current_version, Some(2));
            assert_eq!(r.automatic, Some(false));
            assert!(r.last_rotated.is_some());
        }
        other => panic!("{other:?}"),
    }

    // Disabling the old version retires only what it wrapped: no lock, the new one reads.
    env.kms.set_state(&name, 1, VersionState::Disabled);
    match p.unwrap(&old, &c).await {
        Err(Error::KeyVersionRetired { key, reason, .. }) => {
            assert_eq!(key, name);
            assert!(reason.contains("FAILED_PRECONDITION"), "{reason}");
        }
        other => panic!("expected KeyVersionRetired, got {other:?}"),
    }
    p.unwrap(&new, &c)
        .await
        .expect("the primary still decrypts");
    assert!(p.status().await.expect("status").is_usable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_maps_every_primary_state_and_permission_answers() {
    let env = env().await;
    let name = env.kms.create_key();
    let p = env.provider(&name).await;
    let c = ctx(3, 4);
    let w = p.wrap(&key(), &c).await.expect("wrap");
    env.kms
        .set_rotation_period(&name, Some(Duration::from_secs(90 * 86_400)));
    match p.status().await.expect("status") {
        KeyStatus::Usable { rotation: Some(r) } => assert_eq!(r.automatic, Some(true)),
        other => panic!("{other:?}"),
    }
    for (state, want) in [
        (VersionState::Disabled, KeyStatus::Disabled),
        (VersionState::DestroyScheduled, KeyStatus::Revoked),
        (VersionState::Destroyed, KeyStatus::Revoked),
    ] {
        env.kms.set_state(&name, 1, state);
        assert_eq!(p.status().await.expect("status"), want, "{state:?}");
        // Wrap and unwrap name the service's code and lock (KeyUnavailable).
        assert_unavailable(p.wrap(&key(), &c).await, "FAILED_PRECONDITION");
        assert_unavailable(p.unwrap(&w, &c).await, "FAILED_PRECONDITION");
    }
    env.kms.set_state(&name, 1, VersionState::Enabled);
    assert!(p.status().await.expect("status").is_usable());
    p.unwrap(&w, &c).await.expect("re-enabled");

    env.kms.deny(EMAIL);
    assert_eq!(p.status().await.expect("status"), KeyStatus::AccessDenied);
    assert_unavailable(p.wrap(&key(), &c).await, "PERMISSION_DENIED");
    assert_unavailable(p.unwrap(&w, &c).await, "useToDecrypt");
    env.kms.allow(EMAIL);

    let missing = name.replace("/cryptoKeys/key-", "/cryptoKeys/missing-");
    let q = env.provider(&missing).await;
    assert_eq!(q.status().await.expect("status"), KeyStatus::NotFound);
    assert_unavailable(q.wrap(&key(), &c).await, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_checks_the_key() {
    let env = env().await;
    let f = env.factory();
    let name = env.kms.create_key();
    let mut s = env.settings(&name);
    assert!(!f.prepare(&mut s).await.expect("prepare"));
    assert_eq!(s, env.settings(&name), "prepare adds no settings");
    assert_eq!(f.identity_settings(), ["key_name"]);
    assert_eq!(f.key_name_settings(), ["key_name"]);

    // An asymmetric key: a setting error naming key_name and the key's purpose.
    let asym = env.kms.create_asymmetric_key();
    match f.prepare(&mut env.settings(&asym)).await {
        Err(Error::Setting {
            setting, problem, ..
        }) => {
            assert_eq!(setting, "key_name");
            assert!(
                problem.contains("ASYMMETRIC_DECRYPT") && problem.contains(&asym),
                "{problem}"
            );
        }
        other => panic!("expected a key_name setting error, got {other:?}"),
    }

    env.kms.set_state(&name, 1, VersionState::Disabled);
    assert_unavailable(f.prepare(&mut env.settings(&name)).await, "DISABLED");
    let missing = format!("{name}-missing");
    assert_unavailable(f.prepare(&mut env.settings(&missing)).await, "NOT_FOUND");
    env.kms.deny(EMAIL);
    assert_unavailable(
        f.prepare(&mut env.settings(&missing)).await,
        "PERMISSION_DENIED",
    );
}

#[tokio::test]
async fn malformed_settings_are_setting_errors_naming_the_setting() {
    async fn named(s: Settings) -> (String, String) {
        match GcpKmsFactory::with_env(lookup(vec![])).open(&s).await {
            Err(Error::Setting {
                setting, problem, ..
            }) => (setting, problem),
            other => panic!("expected a setting error, got {other:?}"),
        }
    }
    let k = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
    for bad in [
        "",
        "projects/p/keyRings/r/cryptoKeys/k",
        "alias/backups",
        "projects/p/locations/global/keyRings/r",
    ] {
        let (setting, _) = named(Settings::from([("key_name".into(), bad.into())])).await;
        assert_eq!(setting, "key_name", "{bad:?}");
    }
    let (setting, problem) = named(Settings::from([(
        "key_name".into(),
        format!("{k}/cryptoKeyVersions/1"),
    )]))
    .await;
    assert_eq!(setting, "key_name");
    assert!(problem.contains("CryptoKeyVersion"), "{problem}");
    let (setting, _) = named(Settings::from([
        ("key_name".into(), k.into()),
        ("endpoint".into(), "http://kms.example.com".into()),
    ]))
    .await;
    assert_eq!(setting, "endpoint");
    let (setting, problem) = named(Settings::from([
        ("key_name".into(), k.into()),
        ("credentials_json".into(), "{\"private_key\": \"x\"}".into()),
    ]))
    .await;
    assert_eq!(setting, "credentials_json");
    assert!(
        problem.contains("never from settings") && !problem.contains("private_key\""),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_cached_and_refreshed_before_expiry() {
    let env = env().await;
    let name = env.kms.create_key();
    let p = Arc::new(env.provider(&name).await);
    // Concurrent first calls share one token request.
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move { p.wrap(&key(), &ctx(1, i)).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("join").expect("wrap");
    }
    p.status().await.expect("status");
    assert_eq!(env.kms.calls().token, 1, "{:?}", env.kms.calls());

    // A token living 62 s is replaced once it is within 60 s of expiring.
    env.kms.set_token_lifetime(Duration::from_secs(62));
    let q = env.provider(&name).await;
    q.wrap(&key(), &ctx(1, 1)).await.expect("wrap");
    q.wrap(&key(), &ctx(1, 1)).await.expect("wrap");
    assert_eq!(env.kms.calls().token, 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    env.kms.set_token_lifetime(Duration::from_secs(3600));
    q.wrap(&key(), &ctx(1, 1)).await.expect("wrap");
    assert_eq!(env.kms.calls().token, 3);

    // A token the service no longer accepts (401) is replaced once, transparently.
    env.kms.revoke_tokens();
    let before = env.kms.calls();
    q.wrap(&key(), &ctx(1, 1))
        .await
        .expect("wrap after revocation");
    let after = env.kms.calls();
    assert_eq!(
        (after.token - before.token, after.encrypt - before.encrypt),
        (1, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_server_credentials() {
    let env = env().await;
    let name = env.kms.create_key();
    let p = env
        .metadata_factory()
        .provider(&env.settings(&name))
        .await
        .expect("provider");
    assert!(format!("{p:?}").contains("metadata server"), "{p:?}");
    let w = p.wrap(&key(), &ctx(5, 6)).await.expect("wrap");
    p.unwrap(&w, &ctx(5, 6)).await.expect("unwrap");
    let calls = env.kms.calls();
    assert_eq!((calls.metadata, calls.token), (1, 0), "{calls:?}");
    env.kms.deny(METADATA_PRINCIPAL);
    assert_eq!(p.status().await.expect("status"), KeyStatus::AccessDenied);

    // No key file and no metadata server: a clear error naming both.
    let none = GcpKmsFactory::with_env(lookup(vec![("GCE_METADATA_HOST", "127.0.0.1:1".into())]))
        .with_retry_backoff(Duration::from_millis(10));
    let p = none.provider(&env.settings(&name)).await.expect("provider");
    let m = provider_message(p.wrap(&key(), &ctx(5, 6)).await);
    assert!(
        m.contains("GOOGLE_APPLICATION_CREDENTIALS") && m.contains("metadata server at 127.0.0.1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_credentials_are_clear_errors() {
    let env = env().await;
    let name = env.kms.create_key();
    // A key file whose key the service does not know.
    let forged = env.kms.write_forged_service_account(env.dir.path(), EMAIL);
    let f = env.factory_with_key_file(&forged);
    let p = f.provider(&env.settings(&name)).await.expect("provider");
    let m = provider_message(p.wrap(&key(), &ctx(1, 2)).await);
    assert!(
        m.contains("invalid_grant") && m.contains("Invalid JWT Signature") && m.contains(EMAIL),
        "{m}"
    );
    assert!(!m.contains("PRIVATE KEY"), "{m}");
    assert!(f.prepare(&mut env.settings(&name)).await.is_err());
    // No retry loop on a refused grant.
    let calls = env.kms.calls();
    assert_eq!((calls.token, calls.encrypt), (2, 0), "{calls:?}");

    // A client clock two hours off: the assertion is not in its hour.
    env.kms.skew_clock(2 * 3600);
    let p = env.provider(&name).await;
    let m = provider_message(p.wrap(&key(), &ctx(1, 2)).await);
    assert!(
        m.contains("invalid_grant") && m.contains("Check your iat and exp"),
        "{m}"
    );
    env.kms.skew_clock(0);

    // Tokens the service refuses: one fresh token is tried, then a clear error, no loop.
    let p = env.provider(&name).await;
    env.kms.set_fault(Some(Fault::RejectTokens));
    let before = env.kms.calls();
    let m = provider_message(p.wrap(&key(), &ctx(1, 2)).await);
    assert!(
        m.contains("UNAUTHENTICATED") && m.contains("HTTP 401") && m.contains(EMAIL),
        "{m}"
    );
    let after = env.kms.calls();
    assert_eq!(
        (after.token - before.token, after.encrypt - before.encrypt),
        (2, 2)
    );
    env.kms.set_fault(None);

    // An account the service has never heard of.
    let stranger = env
        .kms
        .write_forged_service_account(env.dir.path(), "nobody@stand-in.iam.gserviceaccount.com");
    let p = env
        .factory_with_key_file(&stranger)
        .provider(&env.settings(&name))
        .await
        .expect("provider");
    let m = provider_message(p.status().await);
    assert!(m.contains("account not found"), "{m}");

    // Missing, non-JSON and user-credential files fail when the provider is built.
    let missing = env.dir.path().join("missing.json");
    match env
        .factory_with_key_file(&missing)
        .provider(&env.settings(&name))
        .await
    {
        Err(Error::Io { what, .. }) => assert!(what.contains("missing.json"), "{what}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let junk = env.dir.path().join("junk.json");
    std::fs::write(&junk, "-----BEGIN PRIVATE KEY-----").expect("write");
    let m = provider_message(
        env.factory_with_key_file(&junk)
            .provider(&env.settings(&name))
            .await,
    );
    assert!(
        m.contains("junk.json") && m.contains("not a JSON credentials file"),
        "{m}"
    );
    let user = env.dir.path().join("adc.json");
    std::fs::write(&user, r#"{"type": "authorized_user", "client_id": "x", "client_secret": "s3cr3t", "refresh_token": "r"}"#).expect("write");
    let m = provider_message(
        env.factory_with_key_file(&user)
            .provider(&env.settings(&name))
            .await,
    );
    assert!(
        m.contains("authorized_user") && m.contains("service_account") && !m.contains("s3cr3t"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crc_mismatches_are_errors_and_never_retried() {
    let env = env().await;
    let name = env.kms.create_key();
    let p = env.provider(&name).await;
    let c = ctx(7, 8);
    let w = p.wrap(&key(), &c).await.expect("wrap");

    env.kms.set_fault(Some(Fault::CorruptCrc));
    let before = env.kms.calls();
    let m = provider_message(p.wrap(&key(), &c).await);
    assert!(
        m.contains("CRC32C") && m.contains("ciphertextCrc32c") && m.contains(&name),
        "{m}"
    );
    let m = provider_message(p.unwrap(&w, &c).await);
    assert!(m.contains("CRC32C") && m.contains("plaintextCrc32c"), "{m}");
    let after = env.kms.calls();
    assert_eq!(
        (
            after.encrypt - before.encrypt,
            after.decrypt - before.decrypt
        ),
        (1, 1),
        "a CRC mismatch must not be retried"
    );

    env.kms.set_fault(Some(Fault::UnverifiedCrc));
    let m = provider_message(p.wrap(&key(), &c).await);
    assert!(m.contains("verifiedPlaintextCrc32c"), "{m}");
    env.kms.set_fault(None);
    p.unwrap(&w, &c).await.expect("healthy again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_answers_are_retried_a_bounded_number_of_times() {
    let env = env().await;
    let name = env.kms.create_key();
    let p = env.provider(&name).await;
    env.kms.set_fault(Some(Fault::Unavailable(2)));
    p.wrap(&key(), &ctx(1, 1))
        .await
        .expect("third attempt succeeds");
    assert_eq!(env.kms.calls().encrypt, 3);

    env.kms.set_fault(Some(Fault::Unavailable(100)));
    let m = provider_message(p.wrap(&key(), &ctx(1, 1)).await);
    assert!(
        m.contains("UNAVAILABLE") && m.contains("HTTP 503") && m.contains(&name),
        "{m}"
    );
    assert_eq!(env.kms.calls().encrypt, 3 + MAX_ATTEMPTS as usize);
    assert!(
        p.status().await.is_err(),
        "status cannot be asked: an error, not a state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_service_times_out_within_bounds() {
    let env = env().await;
    let name = env.kms.create_key();
    let p = env
        .factory()
        .with_request_timeout(Duration::from_millis(300))
        .provider(&env.settings(&name))
        .await
        .expect("provider");
    let w = p.wrap(&key(), &ctx(1, 1)).await.expect("wrap");
    env.kms.set_fault(Some(Fault::Hang));
    let start = Instant::now();
    let m = provider_message(p.unwrap(&w, &ctx(1, 1)).await);
    let took = start.elapsed();
    assert!(m.contains("timed out") && m.contains(&name), "{m}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Retried, but no retry starts after twice the request timeout.
    let attempts = env.kms.calls().decrypt;
    assert!(
        (2..=MAX_ATTEMPTS as usize).contains(&attempts),
        "{attempts} attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_answer_is_a_clear_error() {
    let env = env().await;
    let name = env.kms.create_key();
    let p = env.provider(&name).await;
    let w = p.wrap(&key(), &ctx(1, 1)).await.expect("wrap");
    env.kms.set_fault(Some(Fault::Garbage));
    for r in [
        p.wrap(&key(), &ctx(1, 1)).await.map(|_| ()),
        p.unwrap(&w, &ctx(1, 1)).await.map(|_| ()),
        p.status().await.map(|_| ()),
    ] {
        let m = provider_message(r);
        assert!(
            m.contains("not the JSON Cloud KMS sends") && m.contains(&name),
            "{m}"
        );
        assert!(!m.contains("<html>"), "{m}");
    }
    let calls = env.kms.calls();
    assert_eq!(
        (calls.encrypt, calls.decrypt, calls.get),
        (2, 1, 1),
        "no retries: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_malformed_records_are_refused() {
    let env = env().await;
    let (a, b) = (env.kms.create_key(), env.kms.create_key());
    let p = env.provider(&a).await;
    let c = ctx(1, 1);
    let w = p.wrap(&key(), &c).await.expect("wrap");
    // A record naming another key is refused without a call.
    let before = env.kms.calls().decrypt;
    for master_key in [
        b.clone(),
        format!("{b}/cryptoKeyVersions/1"),
        a.clone(),
        format!("{a}/cryptoKeyVersions/x"),
    ] {
        let moved = WrappedKey {
            master_key,
            ..w.clone()
        };
        assert!(matches!(
            p.unwrap(&moved, &c).await,
            Err(Error::ForeignWrappedKey { .. })
        ));
    }
    let other_type = WrappedKey {
        provider: "aws-kms".into(),
        ..w.clone()
    };
    assert!(matches!(
        p.unwrap(&other_type, &c).await,
        Err(Error::ForeignWrappedKey { .. })
    ));
    let empty = WrappedKey {
        ciphertext: Vec::new(),
        ..w.clone()
    };
    assert!(matches!(
        p.unwrap(&empty, &c).await,
        Err(Error::UnwrapFailed { .. })
    ));
    assert_eq!(env.kms.calls().decrypt, before);
    // Another repository's AAD: refused by the service, INVALID_ARGUMENT → UnwrapFailed.
    match p.unwrap(&w, &ctx(2, 1)).await {
        Err(Error::UnwrapFailed { data_key_id, .. }) => {
            assert_eq!(data_key_id, ctx(2, 1).data_key_id.to_hex())
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_and_errors_show_no_secrets() {
    let env = env().await;
    let name = env.kms.create_key();
    let f = env.factory();
    let p = f.provider(&env.settings(&name)).await.expect("provider");
    p.wrap(&key(), &ctx(1, 1)).await.expect("wrap");
    let private_key = std::fs::read_to_string(&env.key_file).expect("key file");
    let pem_line = private_key
        .split("\\n")
        .nth(1)
        .expect("a line of the PEM body")
        .to_owned();
    let dbg = format!("{f:?} {p:?} {p}");
    for secret in [pem_line.as_str(), "PRIVATE KEY", "ya29.", "4242424242"] {
        assert!(!dbg.contains(secret), "{secret} in {dbg}");
    }
    assert!(dbg.contains(&name) && dbg.contains(EMAIL), "{dbg}");
    // A refused grant's error must not quote the assertion.
    let forged = env.kms.write_forged_service_account(env.dir.path(), EMAIL);
    let q = env
        .factory_with_key_file(&forged)
        .provider(&env.settings(&name))
        .await
        .expect("provider");
    let m = q
        .wrap(&key(), &ctx(1, 1))
        .await
        .expect_err("forged")
        .to_string();
    assert!(!m.contains("eyJ"), "the JWT assertion leaked: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_trusts_the_ca_file() {
    let kms = encrypt_repo_testkit::gcp_kms::GcpKmsStandIn::start_tls().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = kms.write_service_account(dir.path(), EMAIL);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, kms.ca_pem().expect("a TLS stand-in")).expect("write CA");
    let name = kms.create_key();
    assert!(kms.endpoint().starts_with("https://"));
    let factory = || {
        GcpKmsFactory::with_env(lookup(vec![(
            "GOOGLE_APPLICATION_CREDENTIALS",
            key_file.display().to_string(),
        )]))
        .with_retry_backoff(Duration::from_millis(10))
    };
    let settings = |ca: Option<&std::path::Path>| {
        let mut s = Settings::from([
            ("key_name".to_owned(), name.clone()),
            ("endpoint".to_owned(), kms.endpoint()),
        ]);
        if let Some(ca) = ca {
            s.insert("ca_file".into(), ca.display().to_string());
        }
        s
    };
    let mut s = settings(Some(&ca_file));
    factory().prepare(&mut s).await.expect("prepare over https");
    let p = factory().provider(&s).await.expect("provider");
    let w = p.wrap(&key(), &ctx(1, 2)).await.expect("wrap over https");
    p.unwrap(&w, &ctx(1, 2)).await.expect("unwrap over https");

    // Without the CA the certificate is refused (a clear transport error, no token sent).
    let before = kms.calls().token;
    let p = factory().provider(&settings(None)).await.expect("provider");
    let m = provider_message(p.wrap(&key(), &ctx(1, 2)).await);
    assert!(
        m.contains("certificate") || m.contains("UnknownIssuer"),
        "{m}"
    );
    assert_eq!(kms.calls().token, before);

    let missing = dir.path().join("missing-ca.pem");
    match factory().provider(&settings(Some(&missing))).await {
        Err(Error::Io { what, .. }) => assert!(what.contains("missing-ca.pem"), "{what}"),
        other => panic!("expected an I/O error naming the CA file, got {other:?}"),
    }
    match factory().provider(&settings(Some(&key_file))).await {
        Err(Error::Setting { setting, .. }) => assert_eq!(setting, "ca_file"),
        other => panic!("expected a ca_file setting error, got {other:?}"),
    }
}
