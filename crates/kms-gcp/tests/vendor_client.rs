//! Keeps the stand-in honest: Google's official Python client (`google-cloud-kms` 3.18 with its
//! REST transport, `google-auth` 2.63 doing the service-account JWT grant) talks to the same
//! stand-in as our provider. A data key the Python client encrypts (with our AAD and CRC32C
//! checks) unwraps through the provider, one the provider wraps decrypts in Python, and the
//! client's `get_crypto_key` reads what the provider's `status` reads.
//!
//! Needs `.venv` from `bash tests/services.sh venv`; without it these tests fail, naming it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use encrypt_repo_format::DataKey;
use encrypt_repo_keys::{KeyProvider, KeyStatus, WrappedKey};
use encrypt_repo_kms_gcp::{AAD_LABEL, TYPE};
use encrypt_repo_testkit::gcp_kms::VersionState;
use serde_json::Value;
use support::*;

const INSTALL: &str = "bash tests/services.sh venv";

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `{INSTALL}` (it installs google-cloud-kms and google-auth)",
        p.display()
    );
    p
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vendor/gcp_kms_client.py")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Runs the Python client; `Ok(json)` on success, `Err(stderr)` on failure.
async fn client(env: &Env, args: &[&str]) -> Result<Value, String> {
    let run = tokio::process::Command::new(python())
        .arg(script())
        .arg(env.kms.endpoint())
        .arg(&env.key_file)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Python client did not finish within 120 s")
        .expect("run the Python client");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the venv lacks the Google client: run `{INSTALL}`\n{stderr}"
    );
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("the client prints JSON"))
    } else {
        Err(stderr)
    }
}

async fn ok(env: &Env, args: &[&str]) -> Value {
    client(env, args)
        .await
        .unwrap_or_else(|e| panic!("Python client {args:?} failed:\n{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_and_provider_wrap_for_each_other() {
    let env = env().await;
    let name = env.kms.create_key();
    let p = env.provider(&name).await;
    let c = ctx(0x11, 0x22);

    // The AAD, byte for byte as the crate docs give it.
    let aad = [
        b"encrypt-repo/v1 gcp-kms wrap\0".as_slice(),
        &[0x11; 16],
        &[0x22; 16],
    ]
    .concat();
    assert_eq!(aad.len(), 61);
    assert_eq!(aad, c.aad(AAD_LABEL));

    // Python encrypts, the provider unwraps.
    let dek = [0xa5u8; 32];
    let r = ok(&env, &["encrypt", &name, &hex(&dek), &hex(&aad)]).await;
    let version = r["name"].as_str().expect("name").to_owned();
    assert_eq!(version, format!("{name}/cryptoKeyVersions/1"));
    let wrapped = WrappedKey {
        provider: TYPE.into(),
        master_key: version,
        ciphertext: unhex(r["ciphertext"].as_str().expect("ciphertext")),
    };
    let back = p
        .unwrap(&wrapped, &c)
        .await
        .expect("provider unwraps the Python wrap");
    assert_eq!(back.expose_secret(), &dek);
    assert!(
        p.unwrap(&wrapped, &ctx(0x11, 0x23)).await.is_err(),
        "AAD not bound"
    );

    // The provider wraps, Python decrypts with the documented AAD.
    let ours = p
        .wrap(&DataKey::from_bytes([0x5c; 32]), &c)
        .await
        .expect("wrap");
    let r = ok(
        &env,
        &["decrypt", &name, &hex(&ours.ciphertext), &hex(&aad)],
    )
    .await;
    assert_eq!(r["plaintext"], hex(&[0x5c; 32]));
    // ... and refuses it under other AAD, with the service's code.
    let mut other = aad.clone();
    other[60] ^= 1;
    let e = client(
        &env,
        &["decrypt", &name, &hex(&ours.ciphertext), &hex(&other)],
    )
    .await
    .expect_err("other AAD");
    assert!(e.contains("400") && e.contains("Decryption failed"), "{e}");

    // After a rotation both sides still read each other's old and new wraps.
    env.kms.rotate(&name);
    let r = ok(&env, &["encrypt", &name, &hex(&dek), &hex(&aad)]).await;
    assert_eq!(r["name"], format!("{name}/cryptoKeyVersions/2"));
    let newer = WrappedKey {
        provider: TYPE.into(),
        master_key: r["name"].as_str().expect("name").into(),
        ciphertext: unhex(r["ciphertext"].as_str().expect("ciphertext")),
    };
    p.unwrap(&newer, &c).await.expect("new version");
    p.unwrap(&wrapped, &c).await.expect("old version");
    let r = ok(
        &env,
        &["decrypt", &name, &hex(&ours.ciphertext), &hex(&aad)],
    )
    .await;
    assert_eq!(r["plaintext"], hex(&[0x5c; 32]));

    // Every Python process made its own JWT grant at the stand-in's token endpoint.
    assert!(env.kms.calls().token >= 5, "{:?}", env.kms.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_get_crypto_key_reads_what_status_reads() {
    let env = env().await;
    let name = env.kms.create_key();
    let p = env.provider(&name).await;
    env.kms.rotate(&name);
    let r = ok(&env, &["get", &name]).await;
    assert_eq!(r["name"], name.as_str());
    assert_eq!(r["purpose"], "ENCRYPT_DECRYPT");
    assert_eq!(r["algorithm"], "GOOGLE_SYMMETRIC_ENCRYPTION");
    assert_eq!(r["primary_state"], "ENABLED");
    assert_eq!(r["primary_name"], format!("{name}/cryptoKeyVersions/2"));
    match p.status().await.expect("status") {
        KeyStatus::Usable {
            rotation: Some(rot),
        } => assert_eq!(rot.current_version, Some(2)),
        other => panic!("{other:?}"),
    }

    env.kms.set_state(&name, 2, VersionState::Disabled);
    let r = ok(&env, &["get", &name]).await;
    assert_eq!(r["primary_state"], "DISABLED");
    assert_eq!(p.status().await.expect("status"), KeyStatus::Disabled);
    let e = client(&env, &["encrypt", &name, &hex(&[1; 32]), ""])
        .await
        .expect_err("disabled");
    assert!(e.contains("FailedPrecondition") || e.contains("400"), "{e}");
    assert!(e.contains("is not enabled"), "{e}");

    let asym = env.kms.create_asymmetric_key();
    let r = ok(&env, &["get", &asym]).await;
    assert_eq!(r["purpose"], "ASYMMETRIC_DECRYPT");

    env.kms.deny(EMAIL);
    let e = client(&env, &["get", &name]).await.expect_err("denied");
    assert!(
        e.contains("403") && e.contains("cloudkms.cryptoKeys.get"),
        "{e}"
    );
    assert_eq!(p.status().await.expect("status"), KeyStatus::AccessDenied);
}
