//! The audit log (issue 8, item 5): every category produced by the request that triggers it,
//! the configuration API (`_readonly` → 409, atomic PATCH, 400 naming the field), the
//! settings (`ignore_users`, `disabled_rest_categories`, `enable_rest`, `write_log_diffs`,
//! `log_request_body`), encrypted audit objects read back by time and category, and no secret
//! anywhere in the audit output or the logs.

mod harness;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use encrypt_repo_server::audit::{Category, Event, parse_time_bound, read_events};
use harness::{ADMIN_PASSWORD, Node, Reply, config_yaml, config_yaml_with, node_in};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const AUDIT: &str = "/_plugins/_security/api/audit";

/// The harness configuration with the audit sink quiet on stdout (lines are captured instead)
/// and a fixed node id.
fn quiet(yaml: String) -> String {
    format!("{yaml}  audit: {{ stdout: false, node_id: node-a, flush_seconds: 3600 }}\n")
}

async fn audited(dir: &Path, yaml: String) -> Node {
    let n = node_in(dir, &quiet(yaml)).await;
    n.app.audit.start_capture();
    n
}

/// The events captured so far (after a flush).
async fn events(n: &Node) -> Vec<Value> {
    n.audit_events().await
}

fn of<'a>(events: &'a [Value], category: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["category"] == category)
        .collect()
}

async fn put_config(n: &Node, config: Value) -> Reply {
    n.admin(Method::PUT, &format!("{AUDIT}/config"), config.to_string())
        .await
}

/// Every REST category on (none disabled).
async fn all_categories(n: &Node) {
    let r = put_config(n, json!({"audit": {"disabled_rest_categories": []}})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"status": "OK", "message": "'config' updated."})
    );
}

/// A request from a peer address (what a socket would give), with headers.
async fn from_peer(n: &Node, peer: &str, path: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut req = Request::builder().uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::empty()).expect("request");
    let addr: SocketAddr = peer.parse().expect("address");
    req.extensions_mut().insert(ConnectInfo(addr));
    let resp = n.router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    status
}

#[tokio::test]
async fn each_category_is_produced_by_the_request_that_triggers_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let xff = "xff: { enabled: true, internalProxies: '10\\.0\\.0\\.1', remoteIpHeader: 'x-forwarded-for' }";
    let n = audited(dir.path(), config_yaml(dir.path(), 3600, xff)).await;
    all_categories(&n).await;
    n.user("alice", "alice-Pa55word-1", &["repository_read"])
        .await;

    // AUTHENTICATED + GRANTED_PRIVILEGES, through a trusted proxy: the effective address.
    let ok = from_peer(
        &n,
        "10.0.0.1:5000",
        "/",
        &[
            ("authorization", &harness::basic("admin", ADMIN_PASSWORD)),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    assert_eq!(ok, StatusCode::OK);
    // FAILED_LOGIN with the attempted name.
    let r = n
        .call(Method::GET, "/", Some(("mallory", "wrong-Pa55")), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // MISSING_PRIVILEGES.
    let r = n
        .call(
            Method::PUT,
            "/_snapshot/r1",
            Some(("alice", "alice-Pa55word-1")),
            &[],
            n.repo_body("r1").to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    // BAD_HEADERS: malformed basic credentials, an over-long token, a spoofed X-Forwarded-For.
    let r = n
        .call(
            Method::GET,
            "/",
            None,
            &[("authorization", "Basic !!!")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let long = format!("Bearer {}", "a".repeat(20_000));
    let r = n
        .call(Method::GET, "/", None, &[("authorization", &long)], "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let spoofed = from_peer(
        &n,
        "192.0.2.7:4000",
        "/",
        &[
            ("authorization", &harness::basic("admin", ADMIN_PASSWORD)),
            ("x-forwarded-for", "198.51.100.1"),
        ],
    )
    .await;
    assert_eq!(spoofed, StatusCode::OK);

    // Repository events.
    n.register("r1").await;
    let obj = "/_snapshot/r1/_objects/dir/a.bin";
    assert_eq!(
        n.admin(Method::PUT, obj, "object body 1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(n.admin(Method::GET, obj, "").await.status, StatusCode::OK);
    assert_eq!(
        n.admin(Method::DELETE, obj, "").await.status,
        StatusCode::OK
    );
    let keys = |op: &'static str, body: Value| {
        let n = &n;
        async move {
            n.admin(
                Method::POST,
                &format!("/_snapshot/r1/_keys/{op}"),
                body.to_string(),
            )
            .await
        }
    };
    assert_eq!(keys("_rotate", json!({})).await.status, StatusCode::OK);
    let first_key = n.key_file("r1");
    let rewrap = json!({"crypto_settings": {"key_provider_name": "next", "key_provider_type": "local",
        "settings": {}}});
    let r = keys("_rewrap", rewrap).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // Lock: the key file now holds another key (the provider reports it revoked); verify asks
    // the provider and the repository locks; the right key back, it unlocks.
    let verify = || async { n.admin(Method::POST, "/_snapshot/r1/_verify", "").await };
    assert_eq!(verify().await.status, StatusCode::OK);
    let key = n.key_file("r1");
    let saved = std::fs::read(&key).expect("key");
    std::fs::copy(&first_key, &key).expect("another key");
    let v = verify().await;
    assert!(!v.status.is_success(), "{v:?}");
    std::fs::write(&key, &saved).expect("restore key");
    let v = verify().await;
    assert_eq!(v.status, StatusCode::OK, "{v:?}");
    let r = keys("_shred", json!({"all": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        n.admin(Method::DELETE, "/_snapshot/r1", "").await.status,
        StatusCode::OK
    );

    let all = events(&n).await;
    let one = |cat: &str| -> Value {
        let found = of(&all, cat);
        assert!(!found.is_empty(), "no {cat} in {all:#?}");
        found[0].clone()
    };
    let e = of(&all, "AUTHENTICATED")
        .into_iter()
        .find(|e| e["path"] == "/")
        .expect("AUTHENTICATED on /")
        .clone();
    assert_eq!(e["user"], "admin");
    assert_eq!(e["remote_address"], "203.0.113.9", "{e}");
    assert_eq!(e["node"], "node-a");
    assert!(
        e["request_id"].is_string() && e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z'))
    );
    let g = of(&all, "GRANTED_PRIVILEGES");
    assert!(
        g.iter()
            .any(|e| e["privilege"] == "cluster:monitor/main" && e["path"] == "/"),
        "{g:?}"
    );
    let f = of(&all, "FAILED_LOGIN");
    assert!(
        f.iter()
            .any(|e| e["user"] == "mallory" && e["status"] == 401),
        "{f:?}"
    );
    let m = one("MISSING_PRIVILEGES");
    assert_eq!(
        (&m["user"], &m["privilege"], &m["status"]),
        (
            &json!("alice"),
            &json!("cluster:admin/repository/put"),
            &json!(403)
        )
    );
    let b = of(&all, "BAD_HEADERS");
    let reasons: Vec<&str> = b.iter().filter_map(|e| e["reason"].as_str()).collect();
    for want in [
        "malformed Basic",
        "longer than 16384",
        "not a trusted proxy",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "{want}: {reasons:?}"
        );
    }
    let spoof = b
        .iter()
        .find(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("trusted proxy"))
        })
        .expect("spoof event");
    assert_eq!(spoof["remote_address"], "192.0.2.7", "{spoof}");
    for (cat, method) in [
        ("OBJECT_WRITE", "PUT"),
        ("OBJECT_READ", "GET"),
        ("OBJECT_DELETE", "DELETE"),
    ] {
        let e = one(cat);
        assert_eq!(
            (&e["repository"], &e["object"], &e["method"], &e["user"]),
            (
                &json!("r1"),
                &json!("dir/a.bin"),
                &json!(method),
                &json!("admin")
            ),
            "{e}"
        );
    }
    for cat in [
        "REPOSITORY_REGISTER",
        "REPOSITORY_DELETE",
        "KEY_ROTATE",
        "KEY_REWRAP",
        "KEY_SHRED",
        "KEY_LOCK",
        "KEY_UNLOCK",
    ] {
        let e = one(cat);
        assert_eq!(e["repository"], "r1", "{e}");
    }
    assert!(one("KEY_LOCK")["reason"].is_string());
    let c = of(&all, "SECURITY_CONFIG_CHANGE");
    assert!(
        c.iter()
            .any(|e| e["document"] == "security" && e["user"] == "admin"),
        "{c:?}"
    );
    assert!(c.iter().any(|e| e["document"] == "audit"), "{c:?}");
    // Never a credential header.
    for e in &all {
        let h = e["headers"].as_object().cloned().unwrap_or_default();
        assert!(!h.contains_key("authorization"), "{e}");
    }
    assert_eq!(n.app.audit.dropped(), 0);
}

#[tokio::test]
async fn defaults_ignore_users_disabled_categories_and_enable_rest_are_respected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = audited(dir.path(), config_yaml(dir.path(), 3600, "")).await;
    n.user("bob-1", "bob-Pa55word-1", &[]).await;
    n.user("carol", "carol-Pa55word-1", &[]).await;
    let get_as = |u: &'static str, p: &'static str| {
        let n = &n;
        async move {
            n.call(Method::GET, "/_snapshot", Some((u, p)), &[], "")
                .await
        }
    };
    // Defaults: AUTHENTICATED and GRANTED_PRIVILEGES are disabled.
    assert_eq!(n.admin(Method::GET, "/", "").await.status, StatusCode::OK);
    assert_eq!(
        get_as("carol", "carol-Pa55word-1").await.status,
        StatusCode::FORBIDDEN
    );
    let all = events(&n).await;
    assert!(
        of(&all, "AUTHENTICATED").is_empty() && of(&all, "GRANTED_PRIVILEGES").is_empty(),
        "{all:#?}"
    );
    assert_eq!(of(&all, "MISSING_PRIVILEGES").len(), 1, "{all:#?}");

    // ignore_users (wildcards) and a disabled category.
    let r = put_config(
        &n,
        json!({"audit": {"ignore_users": ["bob-*"], "disabled_rest_categories": ["FAILED_LOGIN", "AUTHENTICATED"]}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let before = events(&n).await.len();
    assert_eq!(
        get_as("bob-1", "bob-Pa55word-1").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_as("carol", "carol-Pa55word-1").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_as("carol", "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(n.admin(Method::GET, "/", "").await.status, StatusCode::OK);
    let all = events(&n).await;
    let new = &all[before..];
    assert!(new.iter().all(|e| e["user"] != "bob-1"), "{new:#?}");
    assert!(
        of(new, "FAILED_LOGIN").is_empty() && of(new, "AUTHENTICATED").is_empty(),
        "{new:#?}"
    );
    let m = of(new, "MISSING_PRIVILEGES");
    assert_eq!(m.len(), 1, "{new:#?}");
    assert_eq!(m[0]["user"], "carol");
    // GRANTED_PRIVILEGES is on again (not in the list any more).
    assert!(!of(new, "GRANTED_PRIVILEGES").is_empty(), "{new:#?}");

    // ignore_requests, then enable_rest: false.
    let r = put_config(
        &n,
        json!({"audit": {"ignore_requests": ["GET /_snapshot*"]}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let before = events(&n).await.len();
    assert_eq!(
        get_as("carol", "carol-Pa55word-1").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(events(&n).await.len(), before);
    let r = put_config(&n, json!({"audit": {"enable_rest": false}})).await;
    assert_eq!(r.status, StatusCode::OK);
    let before = events(&n).await.len();
    assert_eq!(
        n.call(Method::GET, "/", Some(("carol", "x")), &[], "")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as("carol", "carol-Pa55word-1").await.status,
        StatusCode::FORBIDDEN
    );
    let all = events(&n).await;
    assert!(
        all[before..]
            .iter()
            .all(|e| e["category"] == "SECURITY_CONFIG_CHANGE"),
        "{:#?}",
        &all[before..]
    );
    // enabled: false → nothing at all.
    let r = put_config(&n, json!({"enabled": false})).await;
    assert_eq!(r.status, StatusCode::OK);
    let before = events(&n).await.len();
    n.user("dave", "dave-Pa55word-1", &[]).await;
    assert_eq!(events(&n).await.len(), before);
}

#[tokio::test]
async fn the_configuration_api_readonly_patch_validation_and_permissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = audited(dir.path(), config_yaml(dir.path(), 3600, "")).await;
    let got = n.admin(Method::GET, AUDIT, "").await;
    assert_eq!(got.status, StatusCode::OK);
    let doc = got.json();
    assert_eq!(
        doc["_readonly"],
        json!([
            "/audit/exclude_sensitive_headers",
            "/compliance/internal_config",
            "/compliance/external_config"
        ])
    );
    assert_eq!(doc["config"]["enabled"], true);
    assert_eq!(
        doc["config"]["audit"]["disabled_rest_categories"],
        json!(["AUTHENTICATED", "GRANTED_PRIVILEGES"])
    );
    assert_eq!(doc["config"]["compliance"]["internal_config"], true);

    // The GET document PUT back: 409 naming _readonly and config, as the seed shows.
    let r = put_config(&n, doc.clone()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.json(),
        json!({"status": "error", "reason": "Invalid configuration", "invalid_keys": {"keys": "_readonly,config"}})
    );
    // A read-only field changed, by PUT and by PATCH: 409.
    let r = put_config(&n, json!({"audit": {"exclude_sensitive_headers": false}})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.json()["invalid_keys"]["keys"],
        "/audit/exclude_sensitive_headers"
    );
    let patch = |ops: Value| {
        let n = &n;
        async move { n.admin(Method::PATCH, AUDIT, ops.to_string()).await }
    };
    let r = patch(
        json!([{"op": "replace", "path": "/config/compliance/internal_config", "value": false}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(
        r.json()["invalid_keys"]["keys"],
        "/compliance/internal_config"
    );
    let r = patch(json!([{"op": "remove", "path": "/_readonly/0"}])).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");

    // 400 naming the field: unknown field, wrong type, unknown category, empty body.
    for (body, field) in [
        (json!({"audit": {"no_such": true}}), "no_such"),
        (json!({"audit": {"enable_rest": [1]}}), "audit.enable_rest"),
        (
            json!({"audit": {"disabled_rest_categories": ["NOPE"]}}),
            "audit.disabled_rest_categories",
        ),
        (
            json!({"compliance": {"read_watched_fields": []}}),
            "compliance.read_watched_fields",
        ),
    ] {
        let r = put_config(&n, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {r:?}");
        assert!(r.reason().contains(field), "{body}: {}", r.reason());
    }
    let r = n.admin(Method::PUT, &format!("{AUDIT}/config"), "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Duplicate keys are refused like on every other security endpoint.
    let r = n
        .admin(
            Method::PUT,
            &format!("{AUDIT}/config"),
            r#"{"enabled": true, "enabled": false}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.reason().contains("Duplicate key 'enabled'"),
        "{}",
        r.reason()
    );

    // PATCH: the seed's example (a string "true" for a boolean) works; a patch whose last
    // operation fails changes nothing; one that leaves an invalid document changes nothing.
    let r = patch(
        json!([{"op": "add", "path": "/config/compliance/write_log_diffs", "value": "true"}]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"status": "OK", "message": "Resource updated."})
    );
    let before = n.admin(Method::GET, AUDIT, "").await.json();
    assert_eq!(before["config"]["compliance"]["write_log_diffs"], true);
    let r = patch(json!([
        {"op": "replace", "path": "/config/enabled", "value": false},
        {"op": "add", "path": "/config/audit/ignore_users/-", "value": "x"},
        {"op": "test", "path": "/config/audit/log_request_body", "value": true}
    ]))
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let r = patch(json!([
        {"op": "replace", "path": "/config/enabled", "value": false},
        {"op": "add", "path": "/config/audit/enable_rest", "value": "maybe"}
    ]))
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.reason().contains("audit.enable_rest"), "{}", r.reason());
    assert_eq!(n.admin(Method::GET, AUDIT, "").await.json(), before);
    let r = patch(json!({"op": "add"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.reason().contains("Array expected"), "{}", r.reason());

    // Lost update: a write based on an old generation is refused.
    let cfg = n.app.audit.config();
    let stale = n
        .app
        .audit
        .write_config(&n.app.system, cfg.generation - 1, cfg.value.clone())
        .await
        .expect_err("stale");
    assert_eq!(stale.status, StatusCode::CONFLICT);

    // Non-admins: 403 on every verb.
    n.user("eve", "eve-Pa55word-1", &["repository_manager"])
        .await;
    for (m, path, body) in [
        (Method::GET, AUDIT.to_owned(), String::new()),
        (Method::PUT, format!("{AUDIT}/config"), "{}".to_owned()),
        (Method::PATCH, AUDIT.to_owned(), "[]".to_owned()),
    ] {
        let r = n
            .call(m.clone(), &path, Some(("eve", "eve-Pa55word-1")), &[], body)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}");
    }

    // The configuration is reloaded with the rest of the state: a second node sees it.
    let other = node_in(dir.path(), &quiet(config_yaml(dir.path(), 3600, ""))).await;
    assert!(other.app.audit.config().value.compliance.write_log_diffs);
    assert_eq!(
        other.app.audit.config().generation,
        n.app.audit.config().generation
    );
    let r =
        patch(json!([{"op": "replace", "path": "/config/audit/log_request_body", "value": true}]))
            .await;
    assert_eq!(r.status, StatusCode::OK);
    other.app.reload().await.expect("reload");
    assert!(other.app.audit.config().value.audit.log_request_body);
}

#[tokio::test]
async fn a_security_change_with_write_log_diffs_carries_a_diff_without_hashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = audited(dir.path(), config_yaml(dir.path(), 3600, "")).await;
    n.user("frank", "frank-Pa55word-1", &[]).await;
    let all = events(&n).await;
    let c = of(&all, "SECURITY_CONFIG_CHANGE");
    assert_eq!(c.len(), 1, "{all:#?}");
    assert!(c[0].get("diff").is_none(), "no diff unless asked: {}", c[0]);

    let r = put_config(&n, json!({"compliance": {"write_log_diffs": true}})).await;
    assert_eq!(r.status, StatusCode::OK);
    n.user("grace", "grace-Pa55word-1", &["repository_read"])
        .await;
    let all = events(&n).await;
    let c: Vec<_> = of(&all, "SECURITY_CONFIG_CHANGE")
        .into_iter()
        .filter(|e| e["document"] == "security")
        .collect();
    let last = c.last().expect("change");
    let diff = last["diff"].as_array().expect("a JSON Patch");
    assert!(
        diff.iter()
            .any(|op| op["path"].as_str().is_some_and(|p| p.contains("grace"))),
        "{last}"
    );
    assert_eq!(last["user"], "admin");
    let text = last.to_string();
    assert!(
        !text.contains("$argon2") && !text.contains("grace-Pa55word-1"),
        "{text}"
    );
    // The audit document's own change carries its diff (the setting in force after it counts).
    let a = of(&all, "SECURITY_CONFIG_CHANGE")
        .into_iter()
        .find(|e| e["document"] == "audit")
        .expect("audit change");
    assert_eq!(
        a["diff"],
        json!([{"op": "replace", "path": "/compliance/write_log_diffs", "value": true}]),
        "{a}"
    );
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test]
async fn audit_objects_are_ciphertext_and_read_back_by_time_and_category() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = audited(dir.path(), config_yaml(dir.path(), 3600, "")).await;
    let t0 = chrono::Utc::now();
    let r = n
        .call(
            Method::GET,
            "/",
            Some(("zed-the-attacker", "nope")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    n.app.audit.flush().await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let t1 = chrono::Utc::now();
    n.user("henry", "henry-Pa55word-1", &[]).await;
    n.app.audit.flush().await;

    let mut files = Vec::new();
    walk(&dir.path().join("system").join("audit"), &mut files);
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        let raw = std::fs::read(f).expect("read");
        for plain in [
            &b"FAILED_LOGIN"[..],
            b"zed-the-attacker",
            b"node-a",
            b"timestamp",
        ] {
            assert!(
                !raw.windows(plain.len()).any(|w| w == plain),
                "{} holds {:?} in clear",
                f.display(),
                String::from_utf8_lossy(plain)
            );
        }
    }
    let store = n.app.system.encrypted();
    let all: Vec<Event> = read_events(store.as_ref(), None, None).await.expect("read");
    assert!(all.windows(2).all(|w| w[0].time() <= w[1].time()));
    let first: Vec<Event> = read_events(store.as_ref(), Some(t0), Some(t1))
        .await
        .expect("read");
    assert!(
        !first.is_empty() && first.iter().all(|e| e.category == Category::FailedLogin),
        "{first:#?}"
    );
    assert_eq!(first[0].user.as_deref(), Some("zed-the-attacker"));
    let later: Vec<Event> = read_events(store.as_ref(), Some(t1), None)
        .await
        .expect("read");
    assert!(
        later
            .iter()
            .any(|e| e.category == Category::SecurityConfigChange)
            && later.iter().all(|e| e.category != Category::FailedLogin),
        "{later:#?}"
    );
    // Date bounds: today's date as --from and --to includes everything of today.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let day = read_events(
        store.as_ref(),
        parse_time_bound(&today, false),
        parse_time_bound(&today, true),
    )
    .await
    .expect("read");
    assert_eq!(day.len(), all.len());
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let none = read_events(store.as_ref(), None, parse_time_bound(&yesterday, true))
        .await
        .expect("read");
    assert!(none.is_empty(), "{none:#?}");
}

/// Everything tracing writes, for the secret grep.
fn log_capture() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || Writer(b.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_token_or_key_in_any_audit_output_or_log() {
    let logs = log_capture();
    let dir = tempfile::tempdir().expect("tempdir");
    const SIGNING: &[u8] = b"jwt-signing-secret-0123456789abcdef-xyz";
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let authc = format!(
        r#"      jwt_auth_domain:
        http_enabled: true
        order: 1
        http_authenticator:
          type: jwt
          challenge: false
          config: {{ signing_key: "{}", jwt_header: X-Auth-Jwt }}
        authentication_backend: {{ type: noop }}"#,
        STANDARD.encode(SIGNING)
    );
    let yaml = config_yaml_with(dir.path(), 3600, "", "", &authc);
    let n = audited(dir.path(), yaml).await;
    // Everything on: every category, request bodies, diffs.
    let r = put_config(
        &n,
        json!({"audit": {"disabled_rest_categories": [], "log_request_body": true},
               "compliance": {"write_log_diffs": true}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let token = {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload =
            URL_SAFE_NO_PAD.encode(json!({"sub": "jwt-user", "exp": 4_000_000_000u64}).to_string());
        let input = format!("{header}.{payload}");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SIGNING);
        let sig = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    };
    let passwords = [
        "ivan-Pa55word-secret-1",
        "ivan-Pa55word-secret-2",
        "wrong-Pa55word-secret-3",
    ];
    n.user("ivan", passwords[0], &["repository_write"]).await;
    // A password change through the API (body logged, redacted) and a hash import.
    let r = n
        .admin(
            Method::PUT,
            "/_plugins/_security/api/internalusers/ivan",
            json!({"password": passwords[1], "opendistro_security_roles": ["repository_write"]})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let bcrypt = "$2y$12$ABCDEFGHIJKLMNOPQRSTUuZ9m7W1dQzQmV8p1y3l0cB5Q0r1z2x3y";
    let _ = n
        .admin(
            Method::PUT,
            "/_plugins/_security/api/internalusers/judy",
            json!({"hash": bcrypt}).to_string(),
        )
        .await;
    n.register("r2").await;
    let r = n
        .call(
            Method::PUT,
            "/_snapshot/r2/_objects/o",
            Some(("ivan", passwords[1])),
            &[],
            "object-body-secret",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = n
        .call(Method::GET, "/", Some(("ivan", passwords[2])), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = n
        .call(
            Method::GET,
            "/_plugins/_security/authinfo",
            None,
            &[("x-auth-jwt", &token)],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = n
        .call(
            Method::GET,
            &format!("/_snapshot?token={token}"),
            None,
            &[("cookie", "session=cookie-secret")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = n
        .call(
            Method::GET,
            "/",
            None,
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let rewrap = json!({"crypto_settings": {"key_provider_name": "next", "key_provider_type": "local",
        "settings": {}}});
    let r = n
        .admin(
            Method::POST,
            "/_snapshot/r2/_keys/_rewrap",
            rewrap.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    n.app.audit.flush().await;
    let stdout = n.app.audit.captured().join("\n");
    assert!(
        stdout.contains("OBJECT_WRITE") && stdout.contains("request_body"),
        "{stdout}"
    );
    let store = n.app.system.encrypted();
    let stored =
        serde_json::to_string(&read_events(store.as_ref(), None, None).await.expect("read"))
            .expect("json");
    let mut raw = Vec::new();
    let mut files = Vec::new();
    walk(&dir.path().join("system"), &mut files);
    for f in files {
        raw.extend(std::fs::read(f).expect("read"));
    }
    let logs = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
    let mut secrets: Vec<String> = passwords.iter().map(|p| (*p).to_owned()).collect();
    secrets.extend([
        ADMIN_PASSWORD.to_owned(),
        token.clone(),
        bcrypt.to_owned(),
        "cookie-secret".into(),
        "object-body-secret".into(),
    ]);
    secrets.push(String::from_utf8_lossy(SIGNING).into_owned());
    secrets.push(STANDARD.encode(SIGNING));
    // Basic credentials as sent, and the signature part of the token alone.
    secrets.push(
        harness::basic("ivan", passwords[1])
            .trim_start_matches("Basic ")
            .to_owned(),
    );
    secrets.extend(token.rsplit('.').next().map(str::to_owned));
    // The system key and every repository key the server made (r2's first and re-wrapped).
    let mut keys = vec![dir.path().join("system.key")];
    for e in std::fs::read_dir(dir.path().join("keys")).expect("key directory") {
        let p = e.expect("entry").path();
        if p.is_file() {
            keys.push(p);
        }
    }
    assert!(keys.len() >= 3, "{keys:?}");
    for key in keys {
        let k = std::fs::read(&key).expect("key file");
        secrets.push(String::from_utf8_lossy(&k).trim().to_owned());
    }
    for hash in n
        .app
        .loaded()
        .security
        .value
        .internalusers
        .values()
        .map(|u| u.hash.clone())
    {
        secrets.push(hash);
    }
    assert!(stored.contains("SECURITY_CONFIG_CHANGE") && !logs.is_empty());
    for s in &secrets {
        assert!(s.len() >= 8, "{s}");
        for (name, text) in [("stdout", &stdout), ("objects", &stored), ("logs", &logs)] {
            assert!(
                !text.contains(s.as_str()),
                "{name} contains a secret ({} bytes)",
                s.len()
            );
        }
        assert!(
            !raw.windows(s.len()).any(|w| w == s.as_bytes()),
            "raw system repository contains a secret"
        );
    }
    let _ = std::io::stdout().flush();
}

/// SSL_EXCEPTION over loopback: a plain-HTTP request to the HTTPS port fails the handshake;
/// the event reaches the system repository when the server stops (the flush on shutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tls_handshake_is_an_ssl_exception_flushed_at_shutdown() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("write cert");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).expect("key");
    let yaml = quiet(config_yaml(dir.path(), 3600, "")).replace(
        "  listen: 127.0.0.1:0\n",
        &format!(
            "  listen: 127.0.0.1:0\n  tls: {{ certificate: \"{}\", private_key: \"{}\" }}\n",
            dir.path().join("cert.pem").display(),
            dir.path().join("key.pem").display()
        ),
    );
    let server = harness::start(dir.path(), &yaml).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    // The server closes the connection when the handshake fails and records the event in the
    // same step; the deadline is only for a server that never closes.
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(60), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the server kept a failed handshake open");
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    server.stop().await;

    let reader = node_in(dir.path(), &yaml).await;
    let store = reader.app.system.encrypted();
    let all = read_events(store.as_ref(), None, None).await.expect("read");
    let ssl: Vec<_> = all
        .iter()
        .filter(|e| e.category == Category::SslException)
        .collect();
    assert_eq!(ssl.len(), 1, "{all:#?}");
    assert_eq!(ssl[0].remote_address.as_deref(), Some("127.0.0.1"));
    assert!(
        ssl[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("TLS handshake failed")),
        "{:?}",
        ssl[0]
    );
}

/// The cost of auditing on the request path: the same 2000 object reads with the audit log on
/// (every category, each read an OBJECT_READ + GRANTED_PRIVILEGES + AUTHENTICATED event) and
/// off. Prints the two figures; run with
/// `cargo test -p encrypt-repo-server --release --test audit -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_audit_overhead_on_object_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = audited(dir.path(), config_yaml(dir.path(), 3600, "")).await;
    n.register("m").await;
    let obj = "/_snapshot/m/_objects/o";
    assert_eq!(
        n.admin(Method::PUT, obj, "x".repeat(1024)).await.status,
        StatusCode::CREATED
    );
    let run = |label: &'static str| {
        let n = &n;
        async move {
            for _ in 0..200 {
                n.admin(Method::GET, obj, "").await;
            }
            let t = std::time::Instant::now();
            for _ in 0..2000 {
                assert_eq!(n.admin(Method::GET, obj, "").await.status, StatusCode::OK);
            }
            let per = t.elapsed() / 2000;
            println!("{label}: {per:?} per object read (in-process, basic auth cached)");
            per
        }
    };
    all_categories(&n).await;
    let on = run("audit on, all categories").await;
    assert_eq!(
        put_config(&n, json!({"enabled": false})).await.status,
        StatusCode::OK
    );
    let off = run("audit off").await;
    println!(
        "difference: {:?} per request; dropped events: {}",
        on.saturating_sub(off),
        n.app.audit.dropped()
    );
}
