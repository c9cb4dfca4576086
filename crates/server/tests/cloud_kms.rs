//! Repositories registered over the API under the operator's Azure Key Vault and Google Cloud
//! KMS providers, served by a real `encrypt-repo-server` process that takes its cloud
//! credentials from its environment, against the loopback stand-ins of `crates/testkit` (no
//! emulator of either service can be installed): objects round-trip; a key outside the
//! operator's `allowed` patterns is refused; disabling the key at the service locks the
//! repository within `server.key_status_interval_seconds` (1 s here); re-enabling it unlocks it
//! with no restart.

mod harness;

use std::path::Path;
use std::time::Duration;

use harness::{ADMIN_PASSWORD, ServerProcess, config_yaml, server_process_with, with_key_provider};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Far above the 1 s status interval: only a server that never re-checks reaches it.
const DEADLINE: Duration = Duration::from_secs(60);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A server whose operator declared key provider `cloud` as `decl`, checking key status every
/// second, with `env` (the cloud's credentials) in its environment.
fn start(dir: &Path, decl: &Value, env: &[(String, String)]) -> ServerProcess {
    std::fs::create_dir_all(dir.join("repos")).expect("repos");
    let yaml = with_key_provider(&config_yaml(dir, 3600, ""), "cloud", decl).replacen(
        "\nserver:\n",
        "\nserver:\n  key_status_interval_seconds: 1\n",
        1,
    );
    let path = dir.join("config.yml");
    std::fs::write(&path, yaml).expect("config");
    server_process_with(&path, |cmd| {
        cmd.env("ENCRYPT_REPO_ADMIN_PASSWORD", ADMIN_PASSWORD);
        for (k, v) in env {
            cmd.env(k, v);
        }
    })
}

async fn register(
    s: &ServerProcess,
    dir: &Path,
    name: &str,
    provider: &str,
    identity: Value,
) -> reqwest::Response {
    client()
        .put(format!("{}/_snapshot/{name}", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({
            "type": "fs",
            "settings": { "location": dir.join("repos").join(name).to_str().expect("utf-8") },
            "encrypted": true,
            "crypto_settings": {
                "key_provider_name": "cloud",
                "key_provider_type": provider,
                "settings": identity,
            }
        }))
        .send()
        .await
        .expect("register")
}

async fn get(s: &ServerProcess, repo: &str) -> (StatusCode, String) {
    let r = client()
        .get(format!("{}/_snapshot/{repo}/_objects/a", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("get");
    (r.status(), r.text().await.expect("body"))
}

async fn wait_for(s: &ServerProcess, repo: &str, want: StatusCode) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = get(s, repo).await;
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {status} after {DEADLINE:?}, want {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers `repo` under `identity`, writes and reads an object, then checks the lock cycle
/// around `disable` and `enable`, and that `outside` (a key the operator did not allow) is
/// refused naming the setting.
async fn lock_cycle(
    s: &ServerProcess,
    dir: &Path,
    provider: &str,
    identity: Value,
    outside: Value,
    disable: impl FnOnce(),
    enable: impl FnOnce(),
) {
    let r = register(s, dir, "r", provider, identity).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let r = client()
        .put(format!("{}/_snapshot/r/_objects/a", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body("secret under a cloud key")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_eq!(
        get(s, "r").await,
        (StatusCode::OK, "secret under a cloud key".to_owned())
    );
    let stored = std::fs::read(dir.join("repos/r/a")).expect("ciphertext on disk");
    assert!(
        !stored.windows(6).any(|w| w == b"secret"),
        "plaintext on disk"
    );

    disable();
    let body = wait_for(s, "r", StatusCode::SERVICE_UNAVAILABLE).await;
    // The service names the lock, not the key service's detail (that goes to its log).
    assert!(body.contains("repository_locked_exception"), "{body}");
    enable();
    let body = wait_for(s, "r", StatusCode::OK).await;
    assert_eq!(body, "secret under a cloud key");

    let setting = outside
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .expect("one identity setting");
    let r = register(s, dir, "other", provider, outside).await;
    let status = r.status();
    let text = r.text().await.expect("body");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains(&format!("crypto_settings.settings.{setting}"))
            && text.contains("operator allows"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_key_vault_disabled_locks_and_enabled_unlocks_a_served_repository() {
    use encrypt_repo_testkit::azure_key_vault::{AzureKeyVault, TENANT};
    let kv = AzureKeyVault::start().await;
    kv.register_client_secret("served-app", "served-secret");
    let _ = kv.create_rsa_key("served", 2048);
    let _ = kv.create_rsa_key("forbidden", 2048);
    let dir = tempfile::tempdir().expect("tempdir");
    let decl = json!({
        "type": "azure-key-vault",
        "authority_host": kv.url(),
        "ca_file": kv.ca_file(),
        "allowed": [kv.key_id("served*")],
    });
    let env = [
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", "served-app"),
        ("AZURE_CLIENT_SECRET", "served-secret"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let s = start(dir.path(), &decl, &env);
    lock_cycle(
        &s,
        dir.path(),
        "azure-key-vault",
        json!({ "key_id": kv.key_id("served") }),
        json!({ "key_id": kv.key_id("forbidden") }),
        || kv.set_enabled("served", false),
        || kv.set_enabled("served", true),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_kms_disabled_locks_and_enabled_unlocks_a_served_repository() {
    use encrypt_repo_testkit::gcp_kms::{GcpKmsStandIn, VersionState};
    let kms = GcpKmsStandIn::start().await;
    let served = kms.create_key();
    let forbidden = kms.create_key();
    let dir = tempfile::tempdir().expect("tempdir");
    let credentials =
        kms.write_service_account(dir.path(), "served@stand-in.iam.gserviceaccount.com");
    let decl = json!({
        "type": "gcp-kms",
        "endpoint": kms.endpoint(),
        "allowed": [served],
    });
    let env = [(
        "GOOGLE_APPLICATION_CREDENTIALS".to_owned(),
        credentials.display().to_string(),
    )];
    let s = start(dir.path(), &decl, &env);
    let version = kms.primary_version(&served);
    lock_cycle(
        &s,
        dir.path(),
        "gcp-kms",
        json!({ "key_name": served }),
        json!({ "key_name": forbidden }),
        || kms.set_state(&served, version, VersionState::Disabled),
        || kms.set_state(&served, version, VersionState::Enabled),
    )
    .await;
}
