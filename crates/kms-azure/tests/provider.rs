//! The `azure-key-vault` provider against the HTTPS stand-in: the shared conformance suite,
//! rotation, status mapping, every credential, the challenge, the token cache, retries,
//! timeouts, garbage, and bad input.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use encrypt_repo_format::DataKey;
use encrypt_repo_keys::{Error, KeyStatus, ProviderFactory, Settings};
use encrypt_repo_kms_azure::record::Record;
use encrypt_repo_kms_azure::{AzureKeyVaultFactory, MAX_ATTEMPTS};
use support::*;

#[tokio::test]
async fn passes_the_key_provider_conformance_suite() {
    let kv = stand_in().await;
    let _ = kv.create_rsa_key("other", 3072);
    let p = provider(&kv, "key1").await;
    let other = provider(&kv, "other").await;
    encrypt_repo_testkit::key_provider_conformance(p, other).await;
}

#[tokio::test]
async fn old_records_unwrap_with_their_version_after_rotation() {
    let kv = stand_in().await;
    let v1 = kv.current_version("key1");
    let p = provider(&kv, "key1").await;
    let k = DataKey::from_bytes([3; 32]);
    let old = p.wrap(&k, &ctx(1, 1)).await.unwrap();
    assert_eq!(Record::decode(&old.ciphertext).unwrap().version, v1);

    let v2 = kv.rotate("key1");
    assert_ne!(v1, v2);
    let new = p.wrap(&k, &ctx(1, 2)).await.unwrap();
    assert_eq!(Record::decode(&new.ciphertext).unwrap().version, v2);
    assert_eq!(
        old.master_key, new.master_key,
        "same master key across versions"
    );
    for (w, c) in [(&old, ctx(1, 1)), (&new, ctx(1, 2))] {
        assert_eq!(
            p.unwrap(w, &c).await.unwrap().expose_secret(),
            k.expose_secret()
        );
    }

    // A key_id pinned to the old version keeps wrapping under it, and still reads both.
    let mut pinned = settings(&kv, "key1");
    pinned.insert("key_id".into(), format!("{}/{v1}", kv.key_id("key1")));
    let p1 = factory(secret_env()).open(&pinned).await.unwrap();
    let w = p1.wrap(&k, &ctx(1, 3)).await.unwrap();
    assert_eq!(Record::decode(&w.ciphertext).unwrap().version, v1);
    assert!(p1.unwrap(&new, &ctx(1, 2)).await.is_ok());
}

#[tokio::test]
async fn status_follows_the_key_attributes_and_the_vaults_answers() {
    let kv = stand_in().await;
    let p = provider(&kv, "key1").await;
    let usable = p.status().await.unwrap();
    match &usable {
        KeyStatus::Usable { rotation: Some(r) } => assert!(r.last_rotated.is_some(), "{r:?}"),
        other => panic!("{other:?}"),
    }

    kv.set_enabled("key1", false);
    assert_eq!(p.status().await.unwrap(), KeyStatus::Disabled);
    kv.set_enabled("key1", true);
    assert!(p.status().await.unwrap().is_usable());

    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    kv.set_dates("key1", Some(now + 3600), None);
    assert_eq!(p.status().await.unwrap(), KeyStatus::Disabled);
    kv.set_dates("key1", None, Some(now - 1));
    assert_eq!(p.status().await.unwrap(), KeyStatus::Disabled);
    kv.set_dates("key1", None, Some(now + 3600));
    assert!(p.status().await.unwrap().is_usable());

    kv.set_key_ops("key1", &["wrapKey", "encrypt"]);
    assert_eq!(p.status().await.unwrap(), KeyStatus::Disabled);
    kv.set_key_ops("key1", &["wrapKey", "unwrapKey"]);
    assert!(p.status().await.unwrap().is_usable());

    kv.deny_client(CLIENT, true);
    assert_eq!(p.status().await.unwrap(), KeyStatus::AccessDenied);
    kv.deny_client(CLIENT, false);

    kv.delete_key("key1");
    assert_eq!(p.status().await.unwrap(), KeyStatus::NotFound);
}

/// Key Vault itself wraps under a disabled key; the provider reads the attributes first and
/// refuses, so no new data key is wrapped under it. Unwrap is refused by the vault (403
/// Forbidden, KeyDisabled) and reported as the key being unavailable, naming the code.
#[tokio::test]
async fn a_disabled_key_is_refused_for_wrap_and_unwrap() {
    let kv = stand_in().await;
    let p = provider(&kv, "key1").await;
    let k = DataKey::from_bytes([4; 32]);
    let w = p.wrap(&k, &ctx(1, 1)).await.unwrap();
    kv.set_enabled("key1", false);
    let wraps = kv.wraps();
    match p.wrap(&k, &ctx(1, 2)).await {
        Err(Error::KeyUnavailable { key, reason, .. }) => {
            assert_eq!(key, kv.key_id("key1"));
            assert!(reason.contains("disabled"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(kv.wraps(), wraps, "wrapkey was called on a disabled key");
    match p.unwrap(&w, &ctx(1, 1)).await {
        Err(e @ Error::KeyUnavailable { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("Forbidden (KeyDisabled)") && m.contains("key1"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    kv.set_enabled("key1", true);
    assert!(p.unwrap(&w, &ctx(1, 1)).await.is_ok());
}

#[tokio::test]
async fn a_record_moved_to_another_repository_or_data_key_id_is_refused() {
    let kv = stand_in().await;
    let p = provider(&kv, "key1").await;
    let k = DataKey::from_bytes([5; 32]);
    let w = p.wrap(&k, &ctx(1, 1)).await.unwrap();
    let unwraps = kv.unwraps();
    for moved in [ctx(2, 1), ctx(1, 2)] {
        match p.unwrap(&w, &moved).await {
            Err(Error::UnwrapFailed { data_key_id, .. }) => {
                assert_eq!(data_key_id, moved.data_key_id.to_hex());
            }
            other => panic!("{other:?}"),
        }
    }
    // The vault did unwrap (RSA has no context): the MAC refused the record.
    assert_eq!(kv.unwraps(), unwraps + 2);
}

/// A record naming a version the key does not have is a refused record (`UnwrapFailed`, which
/// does not lock the repository), not an unavailable key; a deleted key is unavailable.
#[tokio::test]
async fn a_record_naming_an_unknown_version_is_refused() {
    let kv = stand_in().await;
    let p = provider(&kv, "key1").await;
    let mut w = p
        .wrap(&DataKey::from_bytes([9; 32]), &ctx(1, 1))
        .await
        .unwrap();
    let mut r = Record::decode(&w.ciphertext).unwrap();
    r.version = "0".repeat(32);
    w.ciphertext = r.encode();
    assert!(matches!(
        p.unwrap(&w, &ctx(1, 1)).await,
        Err(Error::UnwrapFailed { .. })
    ));
    kv.delete_key("key1");
    match p.unwrap(&w, &ctx(1, 1)).await {
        Err(e @ Error::KeyUnavailable { .. }) => {
            assert!(e.to_string().contains("KeyNotFound"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn client_certificate_credential() {
    let kv = stand_in().await;
    let path = kv.register_client_certificate("cert-client");
    let f = factory(env(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "cert-client"),
        ("AZURE_CLIENT_CERTIFICATE_PATH", &path.display().to_string()),
    ]));
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    assert!(format!("{p:?}").contains("client certificate"), "{p:?}");
    let k = DataKey::from_bytes([6; 32]);
    let w = p.wrap(&k, &ctx(1, 1)).await.unwrap();
    assert!(p.unwrap(&w, &ctx(1, 1)).await.is_ok());

    // Another application's certificate does not sign for this one.
    let other = kv.register_client_certificate("other-client");
    let f = factory(env(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "cert-client"),
        (
            "AZURE_CLIENT_CERTIFICATE_PATH",
            &other.display().to_string(),
        ),
    ]));
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    let e = p.status().await.unwrap_err().to_string();
    assert!(
        e.contains("AADSTS700027") && e.contains("invalid_client"),
        "{e}"
    );
}

#[tokio::test]
async fn workload_identity_credential_rereads_the_token_file() {
    let kv = stand_in().await;
    let file = kv.register_federated_token("wi-client", "federated.jwt.one");
    let f = factory(env(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "wi-client"),
        ("AZURE_FEDERATED_TOKEN_FILE", &file.display().to_string()),
    ]));
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    assert!(p.status().await.unwrap().is_usable());
    // A rotated file with a token the application does not trust: the next token request
    // reads it (and is refused with Entra ID's code).
    std::fs::write(&file, "federated.jwt.two").unwrap();
    kv.revoke_tokens();
    let e = p.status().await.unwrap_err().to_string();
    assert!(e.contains("AADSTS70021"), "{e}");
}

#[tokio::test]
async fn managed_identity_from_imds_and_app_service() {
    let kv = stand_in().await;
    kv.enable_managed_identity("mi-client");
    let f = factory(env(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", kv.url())]));
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    assert!(format!("{p:?}").contains("IMDS"), "{p:?}");
    assert!(p.status().await.unwrap().is_usable());
    assert_eq!(
        kv.last_token_scope().as_deref(),
        Some("https://vault.azure.net")
    );

    let endpoint = kv.enable_app_service_identity("app-service-header-value");
    let f = factory(env(&[
        ("IDENTITY_ENDPOINT", &endpoint),
        ("IDENTITY_HEADER", "app-service-header-value"),
    ]));
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    let w = p
        .wrap(&DataKey::from_bytes([7; 32]), &ctx(1, 1))
        .await
        .unwrap();
    assert!(p.unwrap(&w, &ctx(1, 1)).await.is_ok());
    assert!(!format!("{p:?}").contains("app-service-header-value"));
}

/// Off Azure, with no credential in the environment, IMDS is not there: one attempt, and an
/// error that says which credentials were looked for.
#[tokio::test]
async fn no_credential_and_no_imds_is_a_quick_clear_error() {
    let kv = stand_in().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let f = factory(env(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", &url)]));
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    let t = Instant::now();
    let e = p.status().await.unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        e.contains("IMDS") && e.contains("AZURE_CLIENT_SECRET") && e.contains("cannot connect"),
        "{e}"
    );
    assert!(!e.contains("attempts"), "{e}");
}

#[tokio::test]
async fn tokens_are_cached_and_the_challenge_is_honoured() {
    let kv = stand_in().await;
    kv.set_challenge_resource("https://managedhsm.azure.net");
    let p = provider(&kv, "key1").await;
    let k = DataKey::from_bytes([8; 32]);
    for i in 0..5 {
        let w = p.wrap(&k, &ctx(1, i)).await.unwrap();
        p.unwrap(&w, &ctx(1, i)).await.unwrap();
    }
    assert_eq!(
        kv.token_requests(),
        1,
        "one token for 5 wraps and 5 unwraps"
    );
    assert_eq!(
        kv.last_token_scope().as_deref(),
        Some("https://managedhsm.azure.net/.default")
    );
    // A revoked token: the 401 takes a fresh token, once, transparently.
    kv.revoke_tokens();
    assert!(p.status().await.unwrap().is_usable());
    assert_eq!(kv.token_requests(), 2);
}

/// Concurrent first calls of a fresh provider share one token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_token() {
    let kv = stand_in().await;
    let p = provider(&kv, "key1").await;
    let calls = (0..10u8).map(|i| {
        let p = p.clone();
        tokio::spawn(async move {
            let k = DataKey::from_bytes([i; 32]);
            let w = p.wrap(&k, &ctx(1, i)).await.unwrap();
            assert_eq!(
                p.unwrap(&w, &ctx(1, i)).await.unwrap().expose_secret(),
                k.expose_secret()
            );
        })
    });
    for c in calls.collect::<Vec<_>>() {
        c.await.unwrap();
    }
    assert_eq!(kv.token_requests(), 1);
    assert_eq!((kv.wraps(), kv.unwraps()), (10, 10));
}

#[tokio::test]
async fn a_challenge_for_another_resource_gets_no_token() {
    let kv = stand_in().await;
    kv.set_challenge_resource("https://management.azure.com");
    let p = provider(&kv, "key1").await;
    let e = p.status().await.unwrap_err().to_string();
    assert!(
        e.contains("management.azure.com") && e.contains("refusing"),
        "{e}"
    );
    assert_eq!(kv.token_requests(), 0);
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    let kv = stand_in().await;
    kv.set_token_lifetime(2);
    let p = provider(&kv, "key1").await;
    assert!(p.status().await.unwrap().is_usable());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(p.status().await.unwrap().is_usable());
    assert_eq!(kv.token_requests(), 2, "renewed at half its lifetime");
}

#[tokio::test]
async fn a_wrong_secret_is_a_clear_error_with_the_aadsts_code() {
    let kv = stand_in().await;
    let f = factory(env(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_SECRET", "wrong-secret-value"),
    ]));
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    let e = p
        .wrap(&DataKey::from_bytes([1; 32]), &ctx(1, 1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("invalid_client") && e.contains("AADSTS7000215"),
        "{e}"
    );
    assert!(!e.contains("wrong-secret-value"), "{e}");
    let e = f
        .prepare(&mut settings(&kv, "key1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("AADSTS7000215"), "{e}");

    // An unknown application.
    let f = factory(env(&[
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "nobody"),
        ("AZURE_CLIENT_SECRET", SECRET),
    ]));
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    let e = p.status().await.unwrap_err().to_string();
    assert!(e.contains("unauthorized_client: AADSTS700016"), "{e}");

    // The challenge names the vault's tenant: a credential for another tenant is refused
    // before any token request, unless that tenant is allowed; then the token comes from the
    // challenge's tenant.
    let other = |allowed: &str| {
        factory(env(&[
            ("AZURE_TENANT_ID", "other-tenant"),
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_CLIENT_SECRET", SECRET),
            ("AZURE_ADDITIONALLY_ALLOWED_TENANTS", allowed),
        ]))
    };
    let requests = kv.token_requests();
    let p = other("").open(&settings(&kv, "key1")).await.unwrap();
    let e = p.status().await.unwrap_err().to_string();
    assert!(
        e.contains(TENANT) && e.contains("AZURE_ADDITIONALLY_ALLOWED_TENANTS"),
        "{e}"
    );
    assert_eq!(kv.token_requests(), requests);
    for allowed in ["*", &format!("x;{TENANT}")] {
        let p = other(allowed).open(&settings(&kv, "key1")).await.unwrap();
        assert!(p.status().await.unwrap().is_usable(), "{allowed}");
    }
}

#[tokio::test]
async fn an_expired_secret_and_a_broken_token_endpoint_are_clear_errors() {
    let kv = stand_in().await;
    let f = factory(secret_env());
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    kv.expire_client_secret(CLIENT);
    let e = p.status().await.unwrap_err().to_string();
    assert!(e.contains("AADSTS7000222") && e.contains("expired"), "{e}");

    let kv = stand_in().await;
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    kv.token_fault(Fault::Garbage, 1);
    let e = p.status().await.unwrap_err().to_string();
    assert!(
        e.contains("not a token response") && e.contains(CLIENT),
        "{e}"
    );
    assert!(!e.contains("not json"), "{e}");
    kv.token_fault(Fault::Hang, 1);
    let t = Instant::now();
    let e = p.status().await.unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        e.contains("timed out") && e.contains("token request"),
        "{e}"
    );
    kv.token_fault(Fault::Status(503), MAX_ATTEMPTS - 1);
    assert!(
        p.status().await.unwrap().is_usable(),
        "503s on the token endpoint are retried"
    );
}

#[tokio::test]
async fn missing_or_incomplete_credentials_are_clear_errors() {
    let kv = stand_in().await;
    for (vars, expect) in [
        (
            env(&[("AZURE_CLIENT_SECRET", "x")]),
            "AZURE_TENANT_ID and AZURE_CLIENT_ID",
        ),
        (
            env(&[
                ("AZURE_TENANT_ID", TENANT),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_CERTIFICATE_PATH", "/nonexistent.pem"),
            ]),
            "/nonexistent.pem",
        ),
        (
            env(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", "ftp://x")]),
            "AZURE_POD_IDENTITY_AUTHORITY_HOST",
        ),
    ] {
        let e = factory(vars)
            .open(&settings(&kv, "key1"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(expect), "{e}");
    }
}

#[tokio::test]
async fn throttling_and_unavailability_are_retried_a_bounded_number_of_times() {
    let kv = stand_in().await;
    let p = provider(&kv, "key1").await;
    assert!(p.status().await.unwrap().is_usable());
    let k = DataKey::from_bytes([2; 32]);
    kv.fault(Fault::Status(429), MAX_ATTEMPTS - 1);
    let w = p.wrap(&k, &ctx(1, 1)).await.unwrap();
    kv.fault(Fault::Status(503), MAX_ATTEMPTS - 1);
    assert!(p.unwrap(&w, &ctx(1, 1)).await.is_ok());

    let before = kv.key_requests();
    kv.fault(Fault::Status(503), 100);
    let e = p.unwrap(&w, &ctx(1, 1)).await.unwrap_err();
    assert!(matches!(e, Error::Provider { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("503") && m.contains(&format!("after {MAX_ATTEMPTS} attempts")),
        "{m}"
    );
    assert_eq!(kv.key_requests() - before, u64::from(MAX_ATTEMPTS));
    kv.fault(Fault::Status(503), 0);
}

#[tokio::test]
async fn a_hanging_vault_is_an_error_within_the_timeout() {
    let kv = stand_in().await;
    let p = provider(&kv, "key1").await;
    assert!(p.status().await.unwrap().is_usable());
    kv.fault(Fault::Hang, 1);
    let t = Instant::now();
    let e = p.status().await.unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(e.contains("timed out") && e.contains("key1"), "{e}");
}

#[tokio::test]
async fn a_garbage_answer_is_a_clear_error() {
    let kv = stand_in().await;
    let p = provider(&kv, "key1").await;
    assert!(p.status().await.unwrap().is_usable());
    kv.fault(Fault::Garbage, 1);
    let e = p.status().await.unwrap_err();
    assert!(matches!(e, Error::Provider { .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("malformed answer") && m.contains("key1"), "{m}");
    assert!(!m.contains("not json"), "the body is not echoed: {m}");
}

#[tokio::test]
async fn malformed_key_ids_and_bad_settings_name_the_setting() {
    let kv = stand_in().await;
    let f = factory(secret_env());
    for (k, v) in [
        ("key_id", "http://127.0.0.1/keys/key1".to_owned()),
        ("key_id", format!("{}/secrets/key1", kv.url())),
        ("key_id", format!("{}/keys/key_1", kv.url())),
        ("key_id", format!("{}/keys/key1/not-a-version", kv.url())),
        ("authority_host", "login.microsoftonline.com".to_owned()),
        ("ca_file", String::new()),
        ("client_secret", "x".to_owned()),
    ] {
        let mut s = settings(&kv, "key1");
        s.insert(k.into(), v.clone());
        for result in [
            f.prepare(&mut s.clone()).await.map(|_| ()),
            f.open(&s).await.map(|_| ()),
        ] {
            match result {
                Err(Error::Setting { setting, .. }) => assert_eq!(setting, k, "{v}"),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }
    let mut s = settings(&kv, "key1");
    s.insert(
        "ca_file".into(),
        kv.dir().join("missing.pem").display().to_string(),
    );
    let e = f.open(&s).await.unwrap_err().to_string();
    assert!(e.contains("ca_file") && e.contains("missing.pem"), "{e}");
    // Without the CA, the stand-in's certificate is not trusted.
    let mut s = settings(&kv, "key1");
    s.remove("ca_file");
    let p = f.open(&s).await.unwrap();
    let e = p.status().await.unwrap_err().to_string();
    assert!(e.to_ascii_lowercase().contains("certificate"), "{e}");
}

#[tokio::test]
async fn registration_checks_the_key_type_state_and_operations() {
    let kv = stand_in().await;
    let f = factory(secret_env());
    assert!(!f.prepare(&mut settings(&kv, "key1")).await.unwrap());

    let _ = kv.create_ec_key("ec");
    match f.prepare(&mut settings(&kv, "ec")).await {
        Err(e @ Error::Setting { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("key_id") && m.contains("EC key") && m.contains("RSA"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    // An EC key opened anyway (registered before it was replaced) refuses to wrap, clearly.
    let p = f.open(&settings(&kv, "ec")).await.unwrap();
    assert!(matches!(
        p.wrap(&DataKey::from_bytes([1; 32]), &ctx(1, 1)).await,
        Err(Error::Setting { .. })
    ));

    kv.set_key_ops("key1", &["encrypt", "decrypt"]);
    match f.prepare(&mut settings(&kv, "key1")).await {
        Err(Error::KeyUnavailable { reason, .. }) => {
            assert!(reason.contains("wrapKey and unwrapKey"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match f.prepare(&mut settings(&kv, "missing")).await {
        Err(e @ Error::KeyUnavailable { .. }) => {
            assert!(e.to_string().contains("KeyNotFound"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn debug_output_shows_no_secret() {
    let kv = stand_in().await;
    let f = factory(secret_env());
    let p = f.open(&settings(&kv, "key1")).await.unwrap();
    assert!(p.status().await.unwrap().is_usable());
    let dbg = format!("{p:?} {f:?}");
    assert!(!dbg.contains(SECRET), "{dbg}");
    assert!(dbg.contains("key1") && dbg.contains(CLIENT), "{dbg}");
    let default = AzureKeyVaultFactory::default();
    assert!(format!("{default:?}").contains("AzureKeyVaultFactory"));
    let _: Arc<dyn ProviderFactory> = Arc::new(default);
    let _ = Settings::new();
}
