//! Separate `encrypt-repo-server` processes on loopback sharing one system repository.

mod harness;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::{
    ADMIN_PASSWORD, SERVER_BIN, ServerProcess as Server, config_yaml, server_process,
    server_process_with,
};
use reqwest::StatusCode;
use serde_json::json;

fn write_config(dir: &Path, name: &str, reload: u64) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("repos")).expect("repos");
    let path = dir.join(name);
    std::fs::write(&path, config_yaml(dir, reload, "")).expect("config");
    path
}

/// Whether `check` holds within a minute (tried every 200 ms): sixty times the reload interval
/// the tests configure, so only a node that never reloads misses it, however loaded the machine.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check().await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn put_user(s: &Server, name: &str, password: &str) -> StatusCode {
    client()
        .put(format!(
            "{}/_plugins/_security/api/internalusers/{name}",
            s.base
        ))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({ "password": password }))
        .send()
        .await
        .expect("put user")
        .status()
}

async fn authinfo(s: &Server, user: &str, password: &str) -> StatusCode {
    client()
        .get(format!("{}/_plugins/_security/authinfo", s.base))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("authinfo")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_on_one_node_logs_in_on_the_other_within_the_reload_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "config.yml", 1);
    let a = server_process(&config, Some(ADMIN_PASSWORD));
    let b = server_process(&config, None); // not a first start: no password needed
    assert_eq!(
        authinfo(&b, "carol", "carol-pw-1").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        put_user(&a, "carol", "carol-pw-1").await,
        StatusCode::CREATED
    );
    assert_eq!(authinfo(&a, "carol", "carol-pw-1").await, StatusCode::OK);
    // The reload interval is 1 s; only a node that never reloads reaches the deadline.
    let seen =
        eventually(|| async { authinfo(&b, "carol", "carol-pw-1").await == StatusCode::OK }).await;
    assert!(seen, "node b never saw the user created on node a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conflicting_updates_give_one_success_and_one_409() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No reload during the test: both nodes hold the same generation when the updates arrive.
    let config = write_config(dir.path(), "config.yml", 3600);
    let a = server_process(&config, Some(ADMIN_PASSWORD));
    let b = server_process(&config, None);
    let (ra, rb) = tokio::join!(
        put_user(&a, "dave", "dave-pw-from-a"),
        put_user(&b, "dave", "dave-pw-from-b")
    );
    let mut statuses = [ra, rb];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{ra} {rb}"
    );
    let (winner, password) = if ra == StatusCode::CREATED {
        (&a, "dave-pw-from-a")
    } else {
        (&b, "dave-pw-from-b")
    };
    assert_eq!(authinfo(winner, "dave", password).await, StatusCode::OK);
}

#[test]
fn the_first_start_needs_an_admin_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "config.yml", 5);
    let out = Command::new(SERVER_BIN)
        .arg("--config")
        .arg(&config)
        .env_remove("ENCRYPT_REPO_ADMIN_PASSWORD")
        .env_remove("ENCRYPT_REPO_ADMIN_PASSWORD_FILE")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ENCRYPT_REPO_ADMIN_PASSWORD"), "{stderr}");
    assert!(out.stdout.is_empty(), "never listened");

    // From a file instead.
    let file = dir.path().join("admin.pw");
    std::fs::write(&file, "from-a-file-123\n").expect("write");
    let s = server_process_with(&config, |cmd| {
        cmd.env("ENCRYPT_REPO_ADMIN_PASSWORD_FILE", &file);
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        assert_eq!(
            authinfo(&s, "admin", "from-a-file-123").await,
            StatusCode::OK
        );
    });
}

#[test]
fn invalid_configuration_refuses_to_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (from, to, expected) in [
        (
            "order: 0",
            "order: zero",
            "config.dynamic.authc.basic_internal_auth_domain.order",
        ),
        (
            "type: basic",
            "type: kerberos",
            "kerberos authentication is not supported",
        ),
        ("type: intern", "type: ldap", "ldap is not supported"),
        ("reload_interval_seconds:", "reload_every:", "reload_every"),
    ] {
        let path = dir.path().join("bad.yml");
        let text = config_yaml(dir.path(), 5, "").replacen(from, to, 1);
        std::fs::write(&path, text).expect("write");
        let out = Command::new(SERVER_BIN)
            .arg("--config")
            .arg(&path)
            .env("ENCRYPT_REPO_ADMIN_PASSWORD", "x-123456")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{to}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{to}: {stderr}");
    }
    let out = Command::new(SERVER_BIN).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

fn repo_body(dir: &Path, name: &str) -> serde_json::Value {
    json!({
        "type": "fs",
        "settings": { "location": dir.join("repos").join(name).to_str().expect("utf-8") },
        "encrypted": true,
        "crypto_settings": { "key_provider_name": "main", "key_provider_type": "local",
            "settings": {} }
    })
}

async fn register(s: &Server, name: &str, body: serde_json::Value) -> StatusCode {
    client()
        .put(format!("{}/_snapshot/{name}", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&body)
        .send()
        .await
        .expect("register")
        .status()
}

async fn repositories(s: &Server) -> Vec<String> {
    let v: serde_json::Value = client()
        .get(format!("{}/_snapshot", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_of_different_repositories_through_two_nodes_do_not_conflict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "config.yml", 1);
    let a = server_process(&config, Some(ADMIN_PASSWORD));
    let b = server_process(&config, None);
    let d = dir.path();
    let (ra, rb) = tokio::join!(
        register(&a, "alpha", repo_body(d, "alpha")),
        register(&b, "beta", repo_body(d, "beta"))
    );
    assert_eq!((ra, rb), (StatusCode::OK, StatusCode::OK));
    let seen = eventually(|| async {
        repositories(&a).await == ["alpha", "beta"] && repositories(&b).await == ["alpha", "beta"]
    })
    .await;
    assert!(
        seen,
        "a: {:?}, b: {:?}",
        repositories(&a).await,
        repositories(&b).await
    );
    // A removal through one node reaches the other too.
    let r = client()
        .delete(format!("{}/_snapshot/alpha", a.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    let gone = eventually(|| async { repositories(&b).await == ["beta"] }).await;
    assert!(gone, "b: {:?}", repositories(&b).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_one_repository_differently_through_two_nodes_gives_one_409() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "config.yml", 3600);
    let a = server_process(&config, Some(ADMIN_PASSWORD));
    let b = server_process(&config, None);
    let d = dir.path();
    // Same name, different storage locations.
    let (ra, rb) = tokio::join!(
        register(&a, "gamma", repo_body(d, "gamma-a")),
        register(&b, "gamma", repo_body(d, "gamma-b"))
    );
    let mut statuses = [ra, rb];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{ra} {rb}"
    );
}

/// The events stored in the system repository of the node configured in `dir` (read with a
/// fresh in-process node after the server process is gone).
async fn stored_events(dir: &Path, yaml: &str) -> Vec<encrypt_repo_server::audit::Event> {
    let n = harness::node_in(dir, yaml).await;
    let store = n.app.system.encrypted();
    encrypt_repo_server::audit::read_events(store.as_ref(), None, None)
        .await
        .expect("read events")
}

/// `server.audit.fail_closed: true`: a 200/201 means the request's events are already in the
/// system repository, so a SIGKILL right after the answer loses none of them. The same run in
/// the default mode (events buffered for `flush_seconds`) loses them: the test shows the
/// difference, not only the good case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_audit_keeps_the_events_of_answered_requests_across_a_sigkill() {
    for fail_closed in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("repos")).expect("repos");
        let yaml = format!(
            "{}  audit: {{ stdout: false, node_id: node-a, flush_seconds: 3600, fail_closed: {fail_closed} }}\n",
            config_yaml(dir.path(), 3600, "")
        );
        let path = dir.path().join("config.yml");
        std::fs::write(&path, &yaml).expect("config");
        let mut s = server_process(&path, Some(ADMIN_PASSWORD));
        assert_eq!(
            put_user(&s, "carol", "a-long-password-1").await,
            StatusCode::CREATED
        );
        s.child.kill().expect("SIGKILL");
        s.child.wait().expect("wait");
        drop(s);
        let events = stored_events(dir.path(), &yaml).await;
        let carol = events.iter().any(|e| {
            e.category == encrypt_repo_server::audit::Category::SecurityConfigChange
                && serde_json::to_string(e).is_ok_and(|j| j.contains("carol"))
        });
        assert_eq!(
            carol, fail_closed,
            "fail_closed={fail_closed}: the change to carol stored: {carol}; events: {events:#?}"
        );
    }
}
