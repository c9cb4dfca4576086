//! The trust boundary from outside (issue 14): a real `encrypt-repo-server` process on loopback,
//! attacked over HTTP by callers holding one permission each — registering repositories, or
//! managing one repository's keys. None of them can make the server create a file, run a
//! program, read a variable, or connect to a listener the attacker opened; the refusals name
//! the field and echo nothing of the server's.

mod harness;

use std::path::Path;
use std::time::Duration;

use harness::{ADMIN_PASSWORD, ServerProcess, config_yaml, server_process};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn admin_put(s: &ServerProcess, path: &str, body: &Value) {
    let r = client()
        .put(format!("{}{path}", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(body)
        .send()
        .await
        .expect("admin request");
    assert!(r.status().is_success(), "{path}: {:?}", r.text().await);
}

/// A user holding exactly `role` (defined with `permissions`).
async fn attacker(s: &ServerProcess, name: &str, permissions: Value) -> (String, String) {
    admin_put(
        s,
        &format!("/_plugins/_security/api/roles/{name}-role"),
        &permissions,
    )
    .await;
    let password = format!("{name}-Pa55word-1");
    admin_put(
        s,
        &format!("/_plugins/_security/api/internalusers/{name}"),
        &json!({ "password": password, "opendistro_security_roles": [format!("{name}-role")] }),
    )
    .await;
    (name.to_owned(), password)
}

async fn call(
    s: &ServerProcess,
    who: &(String, String),
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (StatusCode, String) {
    let r = client()
        .request(method, format!("{}{path}", s.base))
        .basic_auth(&who.0, Some(&who.1))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        v["error"]["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The operator's `main` local provider, with nothing but its name (what a caller may send).
fn main_local_key() -> Value {
    json!({ "key_provider_name": "main", "key_provider_type": "local", "settings": {} })
}

fn registration(dir: &Path, name: &str, crypto: Value) -> Value {
    json!({
        "type": "fs",
        "settings": { "location": dir.join("repos").join(name).to_str().expect("utf-8") },
        "encrypted": true,
        "crypto_settings": crypto,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_holding_register_or_key_permissions_cannot_reach_files_programs_variables_or_addresses()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("repos")).expect("repos");
    let config = dir.path().join("config.yml");
    std::fs::write(&config, config_yaml(dir.path(), 3600, "")).expect("config");
    let s = server_process(&config, Some(ADMIN_PASSWORD));
    let registrar = attacker(
        &s,
        "registrar",
        json!({ "cluster_permissions": ["cluster:admin/repository/put"] }),
    )
    .await;
    let keys = attacker(
        &s,
        "keyholder",
        json!({ "repository_permissions": [{ "repository_patterns": ["k"], "allowed_actions": ["repository:keys/manage"] }] }),
    )
    .await;
    admin_put(
        &s,
        "/_snapshot/k",
        &registration(dir.path(), "k", main_local_key()),
    )
    .await;

    // A listener of the attacker's: the server must never connect to it.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("trap");
    let trap_url = format!("http://{}", trap.local_addr().expect("addr"));
    let marker = dir.path().join("pwned");
    let m = marker.to_str().expect("utf-8").to_owned();
    let touch = format!("[\"-c\",\"touch {m}\"]");
    let crypto_attempts = [
        (
            json!({ "key_provider_name": "main", "key_provider_type": "local", "settings": { "key_file": m } }),
            "key_file",
        ),
        (
            json!({ "key_provider_name": "evil", "key_provider_type": "exec", "settings": { "command": "/bin/sh", "args": touch, "key_id": "k" } }),
            "key_provider_name",
        ),
        (
            json!({ "key_provider_name": "main", "key_provider_type": "exec", "settings": { "command": "/bin/sh", "args": touch, "key_id": "k" } }),
            "key_provider_type",
        ),
        (
            json!({ "key_provider_name": "main", "key_provider_type": "local", "settings": { "passphrase_command": format!("touch {m}") } }),
            "passphrase_command",
        ),
        (
            json!({ "key_provider_name": "main", "key_provider_type": "local", "settings": { "passphrase_env": "ENCRYPT_REPO_ADMIN_PASSWORD" } }),
            "passphrase_env",
        ),
        (
            json!({ "key_provider_name": "vault", "key_provider_type": "openbao", "settings": { "address": trap_url, "key_name": "x", "token_file": "/etc/shadow" } }),
            "key_provider_name",
        ),
        (
            json!({ "key_provider_name": "main", "key_provider_type": "local", "settings": { "address": trap_url, "token_env": "HOME" } }),
            "crypto_settings.settings",
        ),
    ];
    for (i, (crypto, field)) in crypto_attempts.iter().enumerate() {
        // The registrar, registering.
        let (status, reason) = call(
            &s,
            &registrar,
            reqwest::Method::PUT,
            &format!("/_snapshot/a{i}"),
            &registration(dir.path(), &format!("a{i}"), crypto.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{crypto}: {reason}");
        assert!(reason.contains(field), "{field}: {reason}");
        assert!(!reason.contains(&m), "{reason}");
        // The key holder, re-wrapping the one repository it manages.
        let (status, reason) = call(
            &s,
            &keys,
            reqwest::Method::POST,
            "/_snapshot/k/_keys/_rewrap",
            &json!({ "crypto_settings": crypto }),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "rewrap {crypto}: {reason}");
        assert!(!reason.contains(&m), "{reason}");
    }
    // Storage reached through the attacker's endpoint, with the server's credentials.
    let (status, reason) = call(
        &s,
        &registrar,
        reqwest::Method::PUT,
        "/_snapshot/s3",
        &json!({ "type": "s3", "settings": { "bucket": "b", "endpoint": trap_url }, "encrypted": false }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reason}");
    assert!(reason.contains("settings.endpoint"), "{reason}");
    // The key holder may not touch other repositories, nor register any.
    let (status, _) = call(
        &s,
        &keys,
        reqwest::Method::PUT,
        "/_snapshot/k2",
        &registration(dir.path(), "k2", main_local_key()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    assert!(!marker.exists(), "a request made the server create {m}");
    // Nothing connected to the trap (an accept would be ready at once if anything had).
    let accepted = tokio::time::timeout(Duration::from_millis(200), trap.accept()).await;
    assert!(
        accepted.is_err(),
        "the server connected to the attacker's listener: {accepted:?}"
    );
    // No refused repository exists, and the managed one still works.
    let r = client()
        .get(format!("{}/_snapshot", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("list");
    let v: Value = r.json().await.expect("json");
    let names: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(names, ["k"], "{v}");
}
