//! The stand-in and the provider judged by Microsoft's Python clients (`azure-identity` 1.27,
//! `azure-keyvault-keys` 4.11, installed by `bash tests/services.sh venv`), talking to the HTTPS
//! stand-in through its challenge, token endpoint and OpenID metadata: a data key wrapped by
//! `CryptographyClient.wrap_key` unwraps through this provider, one wrapped by this provider
//! unwraps through `CryptographyClient.unwrap_key` to the same key, and `KeyClient.get_key`
//! sees the attributes the provider reads.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use encrypt_repo_format::DataKey;
use encrypt_repo_keys::{KeyProvider, WrappedKey};
use encrypt_repo_kms_azure::TYPE;
use encrypt_repo_kms_azure::record::{Record, binding_mac};
use serde_json::{Value, json};
use support::*;
use tokio::io::AsyncWriteExt as _;

/// The venv's Python with the Azure clients; a missing venv fails the test (never a silent pass).
fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = root.join(".venv/bin/python");
    let ok = p.exists()
        && std::process::Command::new(&p)
            .args(["-c", "import azure.keyvault.keys, azure.identity"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with azure-keyvault-keys and azure-identity is missing: run `bash tests/services.sh venv`",
        p.display()
    );
    p
}

async fn run_client(kv: &AzureKeyVault, request: Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vendor/azure_kv_client.py");
    let mut child = tokio::process::Command::new(python())
        .arg(script)
        .env("REQUESTS_CA_BUNDLE", kv.ca_file())
        .env("SSL_CERT_FILE", kv.ca_file())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(request.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .expect("the Python client did not finish within 120 s")
    .unwrap();
    assert!(
        out.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn unb64(s: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s.as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsofts_python_clients_and_the_provider_agree() {
    let kv = stand_in().await;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    kv.set_dates("key1", Some(now - 60), Some(now + 86_400));
    let p = factory(secret_env())
        .provider(&settings(&kv, "key1"))
        .await
        .unwrap();
    let info = p.key_info().await.unwrap();

    // Ours wraps, Python unwraps.
    let ours = DataKey::generate().unwrap();
    let c = ctx(7, 8);
    let w = p.wrap(&ours, &c).await.unwrap();
    let record = Record::decode(&w.ciphertext).unwrap();
    assert_eq!(record.version, info.version);

    let theirs = DataKey::generate().unwrap();
    let answer = run_client(
        &kv,
        json!({
            "vault_url": kv.url(),
            "authority": kv.url(),
            "tenant": TENANT,
            "client_id": CLIENT,
            "secret": SECRET,
            "ca_file": kv.ca_file(),
            "key_name": "key1",
            "wrap": URL_SAFE_NO_PAD.encode(theirs.expose_secret()),
            "unwrap": URL_SAFE_NO_PAD.encode(&record.wrapped),
            "unwrap_kid": format!("{}/{}", kv.key_id("key1"), record.version),
        }),
    )
    .await;
    assert_eq!(
        unb64(&answer["unwrapped"]),
        ours.expose_secret(),
        "Python unwrapped another key"
    );

    // get_key sees what the provider read.
    assert_eq!(
        answer["kid"],
        format!("{}/{}", kv.key_id("key1"), info.version)
    );
    assert_eq!(answer["version"], info.version);
    assert_eq!(answer["kty"], info.kty);
    assert_eq!(answer["key_ops"], json!(info.key_ops));
    assert_eq!(answer["enabled"], info.enabled);
    assert_eq!(answer["not_before"], json!(info.not_before));
    assert_eq!(answer["expires_on"], json!(info.expires));
    assert_eq!(answer["created_on"], json!(info.created));
    assert_eq!(answer["n_len"], 256);

    // Python wraps, ours unwraps (the record built from Python's wrap and the binding MAC).
    let wrapped_kid = answer["wrapped_kid"].as_str().unwrap();
    let version = wrapped_kid.rsplit('/').next().unwrap().to_owned();
    assert_eq!(version, info.version);
    let from_python = Record {
        version,
        wrapped: unb64(&answer["wrapped"]),
        mac: binding_mac(&theirs, &c),
    };
    let wk = WrappedKey {
        provider: TYPE.into(),
        master_key: p.key_id(),
        ciphertext: from_python.encode(),
    };
    assert_eq!(
        p.unwrap(&wk, &c).await.unwrap().expose_secret(),
        theirs.expose_secret(),
        "the provider unwrapped another key"
    );
    // azure-keyvault-keys wraps locally with the JWK's `n` and `e` (a public-key operation),
    // so the stand-in's key material is checked too; its wrapkey served only our wrap.
    assert_eq!(kv.wraps(), 1);
    assert_eq!(kv.unwraps(), 2);
    // Bound to its context like any record of ours.
    assert!(p.unwrap(&wk, &ctx(7, 9)).await.is_err());
}

/// The stand-in's error answers, as azure-core parses them: 404 `KeyNotFound` is a
/// `ResourceNotFoundError`, unwrap under a disabled key a 403 `Forbidden` — the shapes the
/// provider maps (and names) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsofts_python_clients_read_the_stand_ins_errors() {
    let kv = stand_in().await;
    let p = provider(&kv, "key1").await;
    let c = ctx(1, 1);
    let w = p.wrap(&DataKey::from_bytes([1; 32]), &c).await.unwrap();
    let record = Record::decode(&w.ciphertext).unwrap();
    kv.set_enabled("key1", false);
    let answer = run_client(
        &kv,
        json!({
            "mode": "errors",
            "vault_url": kv.url(),
            "authority": kv.url(),
            "tenant": TENANT,
            "client_id": CLIENT,
            "secret": SECRET,
            "ca_file": kv.ca_file(),
            "missing_key": "missing",
            "unwrap": URL_SAFE_NO_PAD.encode(&record.wrapped),
            "unwrap_kid": format!("{}/{}", kv.key_id("key1"), record.version),
        }),
    )
    .await;
    assert_eq!(
        answer["missing"]["type"], "ResourceNotFoundError",
        "{answer}"
    );
    assert_eq!(answer["missing"]["status"], 404);
    assert_eq!(answer["missing"]["code"], "KeyNotFound");
    assert_eq!(answer["disabled_unwrap"]["status"], 403, "{answer}");
    assert_eq!(answer["disabled_unwrap"]["code"], "Forbidden");
    assert!(
        answer["disabled_unwrap"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled"),
        "{answer}"
    );
    // The provider reads the same answer as the key being unavailable, naming the codes.
    let e = p.unwrap(&w, &c).await.unwrap_err().to_string();
    assert!(e.contains("Forbidden (KeyDisabled)"), "{e}");
}
