//! The trust boundary (issue 14): a caller who may register repositories or manage keys cannot
//! make the server read or create a file, run a program or reach an address the operator did not
//! declare; locations do not alias or nest; the system repository and other repositories' keys
//! stay out of reach.

mod harness;

use axum::http::{Method, StatusCode};
use harness::*;
use serde_json::json;

#[tokio::test]
async fn access_settings_in_a_request_are_refused_and_nothing_is_created_or_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    let marker = dir.path().join("pwned");
    let m = marker.to_str().expect("utf-8");
    let attempts = [
        // A key file of the caller's choosing (would be created by the local provider).
        (
            json!({ "key_provider_name": "main", "key_provider_type": "local",
                    "settings": { "key_file": m } }),
            "crypto_settings.settings.key_file",
        ),
        // A program (exec provider) under a declared name of another type.
        (
            json!({ "key_provider_name": "main", "key_provider_type": "exec",
                    "settings": { "command": "/bin/sh", "args": format!("[\"-c\",\"touch {m}\"]"), "key_id": "k" } }),
            "crypto_settings.key_provider_type",
        ),
        // A program under an undeclared name.
        (
            json!({ "key_provider_name": "evil", "key_provider_type": "exec",
                    "settings": { "command": "/bin/sh", "args": format!("[\"-c\",\"touch {m}\"]"), "key_id": "k" } }),
            "crypto_settings.key_provider_name",
        ),
        // A passphrase read from a file or a variable of the server's.
        (
            json!({ "key_provider_name": "main", "key_provider_type": "local",
                    "settings": { "passphrase_file": "/etc/shadow" } }),
            "crypto_settings.settings.passphrase_file",
        ),
        (
            json!({ "key_provider_name": "main", "key_provider_type": "local",
                    "settings": { "passphrase_env": "ENCRYPT_REPO_ADMIN_PASSWORD" } }),
            "crypto_settings.settings.passphrase_env",
        ),
    ];
    for (crypto, field) in attempts {
        let mut body = n.repo_body("r");
        body["crypto_settings"] = crypto.clone();
        let r = n.admin(Method::PUT, "/_snapshot/r", body.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{crypto}: {r:?}");
        assert!(r.reason().contains(field), "{field}: {}", r.reason());
        // The same through an escrow entry.
        let mut body = n.repo_body("r");
        body["escrow"] = json!([crypto]);
        let r = n.admin(Method::PUT, "/_snapshot/r", body.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "escrow {crypto}: {r:?}");
        assert!(r.reason().contains("escrow[0]"), "{}", r.reason());
    }
    // And through a re-wrap of a registered repository.
    n.register("k").await;
    let r = n
        .admin(
            Method::POST,
            "/_snapshot/k/_keys/_rewrap",
            json!({ "crypto_settings": { "key_provider_name": "next", "key_provider_type": "local",
                "settings": { "key_file": m } } })
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.reason().contains("crypto_settings.settings.key_file"),
        "{}",
        r.reason()
    );
    assert!(!marker.exists(), "a request made the server create {m}");
    assert!(!r.reason().contains(m), "{}", r.reason());
}

#[tokio::test]
async fn storage_access_settings_in_a_request_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    for (settings, field) in [
        (
            json!({ "bucket": "b", "endpoint": "http://127.0.0.1:1" }),
            "settings.endpoint",
        ),
        (
            json!({ "bucket": "b", "aws_access_key_id": "x" }),
            "settings.aws_access_key_id",
        ),
        (
            json!({ "bucket": "b", "allow_http": "true" }),
            "settings.allow_http",
        ),
    ] {
        let body = json!({ "type": "s3", "settings": settings, "encrypted": false });
        let r = n.admin(Method::PUT, "/_snapshot/s", body.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
        assert!(r.reason().contains(field), "{field}: {}", r.reason());
    }
    // No s3 storage is declared: naming a bucket alone is not enough.
    let body = json!({ "type": "s3", "settings": { "bucket": "b" }, "encrypted": false });
    let r = n.admin(Method::PUT, "/_snapshot/s", body.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
}

#[tokio::test]
async fn locations_may_not_alias_nest_or_reach_the_system_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("a").await;
    let repos = dir.path().join("repos");
    let at = |name: &str, location: &std::path::Path| {
        let mut body = n.repo_body(name);
        body["settings"]["location"] = json!(location.to_str().expect("utf-8"));
        body.to_string()
    };
    // Inside another repository, containing it, the root itself.
    for (name, location) in [
        ("inside", repos.join("a/sub")),
        ("root", repos.clone()),
        ("dots", repos.join("a/./")),
    ] {
        let r = n
            .admin(
                Method::PUT,
                &format!("/_snapshot/{name}"),
                at(name, &location),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {r:?}");
        assert!(
            !repos.join("a/sub").exists(),
            "nothing created for a refused location"
        );
    }
    // Containing another repository.
    n.register("outer-x").await;
    let mut body = n.repo_body("deep");
    body["settings"]["location"] = json!(repos.join("outer-x/deeper").to_str().expect("utf-8"));
    let r = n
        .admin(Method::PUT, "/_snapshot/deep", body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    // A symlink to another repository is the same location.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(repos.join("a"), repos.join("alias")).expect("symlink");
        let r = n
            .admin(
                Method::PUT,
                "/_snapshot/alias",
                at("alias", &repos.join("alias")),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
        assert!(r.reason().contains("[a]"), "{}", r.reason());
        // A symlink leading out of the root, to the system repository.
        std::os::unix::fs::symlink(dir.path().join("system"), repos.join("sys")).expect("symlink");
        let r = n
            .admin(
                Method::PUT,
                "/_snapshot/sys",
                at("sys", &repos.join("sys/x")),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
        assert!(!dir.path().join("system/x").exists());
    }
    // The system repository and the key directory directly.
    for (name, location) in [
        ("system", dir.path().join("system")),
        ("keys", dir.path().join("keys")),
    ] {
        let r = n
            .admin(
                Method::PUT,
                &format!("/_snapshot/{name}"),
                at(name, &location),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {r:?}");
    }
}

#[tokio::test]
async fn the_reserved_prefix_is_refused_in_any_letter_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("r").await;
    for path in [
        ".encrypt-repo/keyring/x",
        ".ENCRYPT-REPO/registration.json",
        ".Encrypt-Repo/x",
    ] {
        let r = n
            .admin(Method::PUT, &format!("/_snapshot/r/_objects/{path}"), "x")
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {r:?}");
    }
}

#[tokio::test]
async fn a_key_directory_or_system_repository_inside_an_fs_root_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = config_yaml(dir.path(), 3600, "");
    let keys = dir.path().join("keys").display().to_string();
    let inside = dir.path().join("repos/keys").display().to_string();
    for bad in [
        yaml.replace(
            &format!("key_directory: \"{keys}\" }}"),
            &format!("key_directory: \"{inside}\" }}"),
        ),
        yaml.replace(
            &format!("location: \"{}\"", dir.path().join("system").display()),
            &format!(
                "location: \"{}\"",
                dir.path().join("repos/system").display()
            ),
        ),
    ] {
        assert_ne!(bad, yaml, "the replacement applied");
        std::fs::create_dir_all(dir.path().join("repos")).expect("repos");
        let config = encrypt_repo_server::ServerConfig::from_yaml(&bad).expect("parses");
        let started = encrypt_repo_server::App::start(
            config,
            encrypt_repo_server::provider_registry(),
            || Ok(zeroize::Zeroizing::new(ADMIN_PASSWORD.to_owned())),
        )
        .await;
        let e = started.expect_err("refused").to_string();
        assert!(e.contains("root"), "{e}");
    }
}
