//! The `aws-kms` provider against a real moto server (KMS and S3 on one port).
//!
//! Start it with `bash tests/services.sh start && source target/services.env`; these tests fail,
//! rather than skip, when `ENCRYPT_REPO_TEST_S3_ENDPOINT` is unset or does not answer.
//!
//! moto's KMS differs from AWS in ways these tests work around, each said where it matters:
//! it still decrypts under a disabled key (the lock comes from `status`), its RotateKeyOnDemand
//! records a rotation without new key material, and it answers AccessDenied (not
//! IncorrectKeyException) to a Decrypt whose ciphertext names another key.

use encrypt_repo_format::{DataKey, RepositoryId};
use encrypt_repo_keys::{Error, KeyProvider, KeyStatus, ProviderFactory, WrapContext};
use encrypt_repo_kms_aws::{AwsKmsProvider, kms_client};

mod support;

use support::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn conformance_suite_passes() {
    let kms = admin();
    let (a, _) = create_key(&kms).await;
    let (b, _) = create_key(&kms).await;
    encrypt_repo_testkit::key_provider_conformance(provider(&a).await, provider(&b).await).await;
}

#[tokio::test]
async fn round_trip_by_key_id_arn_alias_and_alias_arn() {
    let kms = admin();
    let (id, arn) = create_key(&kms).await;
    let alias = create_alias(&kms, &id).await;
    let alias_arn = format!(
        "{}alias/{}",
        &arn[..arn.find("key/").expect("key/")],
        &alias[6..]
    );
    let c = ctx(1);
    let mut wrapped = Vec::new();
    for key_id in [&id, &arn, &alias, &alias_arn] {
        let mut s = settings(key_id);
        let created = factory().prepare(&mut s).await.expect("prepare");
        assert!(!created, "aws-kms creates no key material");
        assert_eq!(
            s.get("key_arn"),
            Some(&arn),
            "{key_id} resolves to the key ARN"
        );
        let p = factory().open(&s).await.expect("open");
        assert_eq!(p.master_key(), arn);
        let g = p.generate_data_key(&c).await.expect("generate");
        assert_eq!(g.wrapped.master_key, arn);
        let back = p.unwrap(&g.wrapped, &c).await.expect("unwrap");
        assert_eq!(
            back.expose_secret(),
            g.plaintext.expose_secret(),
            "{key_id}"
        );
        let k = DataKey::from_bytes([7; 32]);
        let w = p.wrap(&k, &c).await.expect("wrap");
        assert_eq!(
            p.unwrap(&w, &c).await.expect("unwrap").expose_secret(),
            &[7; 32]
        );
        wrapped.push(g);
    }
    // Every form names the same key: keys made through one unwrap through another.
    let mut s = settings(&id);
    factory().prepare(&mut s).await.expect("prepare");
    let by_id = factory().open(&s).await.expect("open");
    for g in &wrapped {
        let back = by_id.unwrap(&g.wrapped, &c).await.expect("cross unwrap");
        assert_eq!(back.expose_secret(), g.plaintext.expose_secret());
    }
}

#[tokio::test]
async fn open_without_key_arn_resolves_it_and_an_alias_moved_later_is_refused() {
    let kms = admin();
    let (id, arn) = create_key(&kms).await;
    let alias = create_alias(&kms, &id).await;
    let p = factory().open(&settings(&alias)).await.expect("open");
    assert_eq!(p.master_key(), arn);

    let mut s = settings(&alias);
    factory().prepare(&mut s).await.expect("prepare");
    let (other, _) = create_key(&kms).await;
    kms.update_alias()
        .alias_name(&alias)
        .target_key_id(&other)
        .send()
        .await
        .expect("UpdateAlias");
    // The registration stays pinned to the first key...
    let p = factory().open(&s).await.expect("open");
    assert_eq!(p.master_key(), arn);
    // ...and re-registering says the alias moved.
    match factory().prepare(&mut s).await {
        Err(Error::Setting {
            setting, problem, ..
        }) => {
            assert_eq!(setting, "key_arn");
            assert!(problem.contains(&arn), "{problem}");
        }
        other => panic!("expected a key_arn setting error, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_encryption_context_is_refused() {
    let (id, _) = create_key(&admin()).await;
    let p = provider(&id).await;
    let c = ctx(1);
    let g = p.generate_data_key(&c).await.expect("generate");
    let other_repo = WrapContext {
        repository_id: RepositoryId([2; 16]),
        ..c
    };
    let other_dek = ctx(1);
    for wrong in [other_repo, other_dek] {
        match p.unwrap(&g.wrapped, &wrong).await {
            Err(Error::UnwrapFailed {
                provider,
                data_key_id,
            }) => {
                assert_eq!(provider, "aws-kms");
                assert_eq!(data_key_id, wrong.data_key_id.to_hex());
            }
            other => panic!("expected UnwrapFailed, got {other:?}"),
        }
    }
    assert!(p.unwrap(&g.wrapped, &c).await.is_ok());
}

#[tokio::test]
async fn after_rotation_old_keys_unwrap_and_new_keys_are_made() {
    let kms = admin();
    let (id, arn) = create_key(&kms).await;
    let p = provider(&id).await;
    let c = ctx(3);
    let before = p.generate_data_key(&c).await.expect("generate");
    match p.status().await.expect("status") {
        KeyStatus::Usable { rotation: Some(r) } => {
            assert_eq!(r.automatic, Some(false));
            assert_eq!(r.last_rotated, None);
        }
        other => panic!("{other:?}"),
    }

    kms.enable_key_rotation()
        .key_id(&id)
        .send()
        .await
        .expect("EnableKeyRotation");
    kms.rotate_key_on_demand()
        .key_id(&arn)
        .send()
        .await
        .expect("RotateKeyOnDemand");
    let rotations = kms
        .list_key_rotations()
        .key_id(&arn)
        .send()
        .await
        .expect("ListKeyRotations")
        .rotations
        .unwrap_or_default();
    assert_eq!(rotations.len(), 1, "one on-demand rotation recorded");

    match p.status().await.expect("status") {
        KeyStatus::Usable { rotation: Some(r) } => {
            assert_eq!(r.automatic, Some(true));
            let last = r.last_rotated.expect("last rotation date");
            assert!(
                last.ends_with('Z') && last.contains('T'),
                "RFC 3339: {last}"
            );
        }
        other => panic!("{other:?}"),
    }
    let old = p
        .unwrap(&before.wrapped, &c)
        .await
        .expect("old data key after rotation");
    assert_eq!(old.expose_secret(), before.plaintext.expose_secret());
    let after = p
        .generate_data_key(&c)
        .await
        .expect("generate after rotation");
    assert_ne!(
        after.plaintext.expose_secret(),
        before.plaintext.expose_secret()
    );
    let new = p.unwrap(&after.wrapped, &c).await.expect("new data key");
    assert_eq!(new.expose_secret(), after.plaintext.expose_secret());
    // moto records the rotation but keeps one key material (its blobs carry the key id, no
    // material id, and GenerateDataKey returns no KeyMaterialId), so "made under the new
    // material" cannot be observed here: both blobs name the same key and the same master key.
    assert_eq!(after.wrapped.master_key, before.wrapped.master_key);
    assert_eq!(
        after.wrapped.ciphertext[..36],
        before.wrapped.ciphertext[..36]
    );
}

#[tokio::test]
async fn disable_enable_and_schedule_deletion_show_in_status() {
    let kms = admin();
    let (id, _) = create_key(&kms).await;
    let p = provider(&id).await;
    assert!(p.status().await.expect("status").is_usable());

    kms.disable_key()
        .key_id(&id)
        .send()
        .await
        .expect("DisableKey");
    assert_eq!(p.status().await.expect("status"), KeyStatus::Disabled);
    match factory().prepare(&mut settings(&id)).await {
        Err(Error::KeyUnavailable { key, reason, .. }) => {
            assert!(key.contains(&id), "{key}");
            assert!(reason.contains("Disabled"), "{reason}");
        }
        other => panic!("registration with a disabled key must fail, got {other:?}"),
    }

    kms.enable_key()
        .key_id(&id)
        .send()
        .await
        .expect("EnableKey");
    assert!(p.status().await.expect("status").is_usable());

    kms.schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .expect("ScheduleKeyDeletion");
    assert_eq!(p.status().await.expect("status"), KeyStatus::Revoked);
    kms.cancel_key_deletion()
        .key_id(&id)
        .send()
        .await
        .expect("CancelKeyDeletion");
    assert_eq!(p.status().await.expect("status"), KeyStatus::Disabled);
}

#[tokio::test]
async fn missing_keys_are_unavailable_at_prepare_and_not_found_in_status() {
    let missing = "0b7e2a63-7d4c-4f3e-9d1a-5f6b2c8e9a10";
    for key_id in [missing, "alias/encrypt-repo-no-such-alias"] {
        match factory().prepare(&mut settings(key_id)).await {
            Err(e @ Error::KeyUnavailable { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("aws-kms") && msg.contains(key_id), "{msg}");
                assert!(msg.contains("NotFoundException"), "{msg}");
            }
            other => panic!("expected KeyUnavailable for {key_id}, got {other:?}"),
        }
    }
    let arn = format!("arn:aws:kms:{REGION}:123456789012:key/{missing}");
    let p = AwsKmsProvider::from_parts(kms_client(&sdk(), None, None), missing, &arn);
    assert_eq!(p.status().await.expect("status"), KeyStatus::NotFound);
    match p.generate_data_key(&ctx(1)).await {
        Err(Error::KeyUnavailable { .. }) => {}
        other => panic!("expected KeyUnavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_key_policy_denying_describe_is_access_denied() {
    let kms = admin();
    let (id, _) = create_key(&kms).await;
    let p = provider(&id).await;
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"*"},"Action":["kms:DescribeKey"],"Resource":"*"}]}"#;
    kms.put_key_policy()
        .key_id(&id)
        .policy_name("default")
        .policy(deny)
        .send()
        .await
        .expect("PutKeyPolicy");
    assert_eq!(p.status().await.expect("status"), KeyStatus::AccessDenied);
    match factory().prepare(&mut settings(&id)).await {
        Err(Error::KeyUnavailable { reason, .. }) => {
            assert!(reason.contains("AccessDenied"), "{reason}");
        }
        other => panic!("expected KeyUnavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_kms_is_a_provider_error_not_a_lock() {
    // A closed loopback port: connection refused, retried, then reported as transient.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let arn = format!("arn:aws:kms:{REGION}:123456789012:key/0b7e2a63-7d4c-4f3e-9d1a-5f6b2c8e9a10");
    let client = kms_client(&sdk(), None, Some(&format!("http://127.0.0.1:{port}")));
    let p = AwsKmsProvider::from_parts(client, &arn, &arn);
    match p.status().await {
        Err(Error::Provider { provider, message }) => {
            assert_eq!(provider, "aws-kms");
            assert!(message.contains("could not reach KMS"), "{message}");
        }
        other => panic!("expected a Provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn debug_and_display_show_no_key_bytes_and_no_secret_access_key() {
    let kms = admin();
    let (id, _) = create_key(&kms).await;
    let alias = create_alias(&kms, &id).await;
    let mut s = settings(&alias);
    factory().prepare(&mut s).await.expect("prepare");
    let p = factory().open(&s).await.expect("open");
    let direct = AwsKmsProvider::connect(&sdk(), &id).await.expect("connect");
    let c = ctx(5);
    let g = p.generate_data_key(&c).await.expect("generate");
    let wrong = p
        .unwrap(&g.wrapped, &ctx(6))
        .await
        .expect_err("wrong context");
    let missing = factory()
        .prepare(&mut settings("alias/encrypt-repo-no-such-alias"))
        .await
        .expect_err("missing");
    let credential_setting = {
        let mut s = settings(&alias);
        s.insert("aws_secret_access_key".into(), SECRET_ACCESS_KEY.into());
        factory()
            .prepare(&mut s)
            .await
            .expect_err("credential in settings")
    };
    let out = format!(
        "{p:?}\n{direct:?}\n{direct}\n{:?}\n{g:?}\n{:?}\n{wrong:?}\n{wrong}\n{missing:?}\n{missing}\n\
         {credential_setting:?}\n{credential_setting}\n{:?}",
        factory(),
        g.plaintext,
        g.wrapped,
    );
    let key = g.plaintext.expose_secret();
    let b64 = base64_encode(key);
    for needle in [
        hex(key),
        hex(key).to_uppercase(),
        b64,
        SECRET_ACCESS_KEY.to_owned(),
    ] {
        assert!(!out.contains(&needle), "output shows {needle}:\n{out}");
    }
    assert!(out.contains(&alias) && out.contains("aws-kms"), "{out}");
    assert!(format!("{direct}").contains(REGION), "{direct}");
}

/// Standard base64 with padding (the KMS wire encoding of the key), without a dependency.
fn base64_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
