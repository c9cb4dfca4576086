//! `securityconfig` PUT and PATCH with `restapi.allow_securityconfig_modification: true`: the
//! stored `config.dynamic` is in force at once on the node that took it, on every other node
//! sharing the system repository after its reload, and after a restart; invalid documents are
//! refused naming the key; secrets are neither shown nor readable through a patch.

mod harness;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use encrypt_repo_server::state::SECURITYCONFIG_DOC;
use encrypt_repo_server::{App, ServerConfig, provider_registry};
use harness::{ADMIN_PASSWORD, Node, Reply, config_yaml, node_in};
use serde_json::{Value, json};

const SECRET: &[u8] = b"securityconfig-test-secret-0123456789abcdef";
const CONFIG: &str = "/_plugins/_security/api/securityconfig";
const AUTHINFO: &str = "/_plugins/_security/authinfo";

/// The harness configuration, audit captured (not on stdout), modification allowed or not.
fn yaml(dir: &Path, allow: bool) -> String {
    format!(
        "{}  audit: {{ stdout: false, node_id: node-a, flush_seconds: 3600 }}\nrestapi:\n  allow_securityconfig_modification: {allow}\n",
        config_yaml(dir, 3600, "")
    )
}

async fn node(dir: &Path, allow: bool) -> Node {
    let n = node_in(dir, &yaml(dir, allow)).await;
    n.app.audit.start_capture();
    n
}

fn jwt_domain(signing_key: &str) -> Value {
    json!({
        "http_enabled": true,
        "order": 1,
        "http_authenticator": {
            "type": "jwt",
            "challenge": false,
            "config": { "signing_key": signing_key, "roles_key": "roles" }
        },
        "authentication_backend": { "type": "noop" }
    })
}

fn token(sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload =
        URL_SAFE_NO_PAD.encode(json!({ "sub": sub, "roles": "ops", "exp": exp }).to_string());
    let input = format!("{header}.{payload}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    let sig = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// `authinfo` with a bearer token: the user name, or the status when refused.
async fn whoami(n: &Node, bearer: &str) -> Result<String, StatusCode> {
    let r = n
        .call(
            Method::GET,
            AUTHINFO,
            None,
            &[("authorization", bearer)],
            "",
        )
        .await;
    if r.status == StatusCode::OK {
        Ok(r.json()["user_name"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    } else {
        Err(r.status)
    }
}

async fn dynamic(n: &Node) -> Value {
    let r = n.admin(Method::GET, CONFIG, "").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    r.json()["config"]["dynamic"].clone()
}

async fn put(n: &Node, body: &Value) -> Reply {
    n.admin(Method::PUT, &format!("{CONFIG}/config"), body.to_string())
        .await
}

async fn patch(n: &Node, ops: &Value) -> Reply {
    n.admin(Method::PATCH, CONFIG, ops.to_string()).await
}

#[track_caller]
fn assert_refused(r: &Reply, status: StatusCode, part: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(r.reason().contains(part), "{:?} lacks {part:?}", r.reason());
}

#[tokio::test]
async fn a_stored_configuration_is_in_force_here_on_other_nodes_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = node(dir.path(), true).await;
    // A second node on the same system repository that may not modify the configuration.
    let b = node(dir.path(), false).await;
    let bearer = token("carol");
    assert_eq!(whoami(&a, &bearer).await, Err(StatusCode::UNAUTHORIZED));

    // GET, add a JWT domain, PUT back: the redacted nothing is restored, the new key stored.
    let mut d = dynamic(&a).await;
    d["authc"]["jwt_auth_domain"] = jwt_domain(&STANDARD.encode(SECRET));
    let r = put(&a, &json!({ "dynamic": d })).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"status": "OK", "message": "'config' updated."})
    );
    assert_eq!(whoami(&a, &bearer).await.as_deref(), Ok("carol"));

    // Node b: its config.yml until it reloads, the stored document afterwards.
    assert_eq!(whoami(&b, &bearer).await, Err(StatusCode::UNAUTHORIZED));
    b.app.reload().await.expect("reload");
    assert_eq!(whoami(&b, &bearer).await.as_deref(), Ok("carol"));
    let shown = dynamic(&b).await;
    assert_eq!(
        shown["authc"]["jwt_auth_domain"]["http_authenticator"]["config"]["signing_key"],
        "<redacted>"
    );
    let text = shown.to_string();
    assert!(!text.contains(&STANDARD.encode(SECRET)), "{text}");
    // b still refuses changes itself: its own restapi section says so.
    let r = put(&b, &json!({ "dynamic": shown })).await;
    assert_refused(
        &r,
        StatusCode::FORBIDDEN,
        "allow_securityconfig_modification",
    );

    // Sending the GET back unchanged keeps the stored secret (the "<redacted>" is restored).
    let r = put(&a, &json!({ "dynamic": dynamic(&a).await })).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(whoami(&a, &bearer).await.as_deref(), Ok("carol"));

    // The change is audited, without the secret.
    let lines = a.audit_events().await;
    let changes: Vec<_> = lines
        .iter()
        .filter(|e| {
            e["category"] == "SECURITY_CONFIG_CHANGE" && e["document"] == SECURITYCONFIG_DOC
        })
        .collect();
    assert_eq!(changes.len(), 2, "{lines:#?}");
    assert!(changes.iter().all(|e| e["user"] == "admin"), "{changes:?}");
    let all = serde_json::to_string(&lines).expect("json");
    assert!(
        !all.contains(&STANDARD.encode(SECRET)),
        "the signing key is never audited"
    );

    // A restarted node runs with the stored document, not with its file's.
    drop((a, b));
    let c = node(dir.path(), false).await;
    assert_eq!(whoami(&c, &bearer).await.as_deref(), Ok("carol"));
}

#[tokio::test]
async fn invalid_documents_are_refused_naming_the_key_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), true).await;
    let before = dynamic(&n).await;
    let with_domain = |domain: Value| {
        let mut d = before.clone();
        d["authc"]["extra"] = domain;
        json!({ "dynamic": d })
    };
    let kerberos = json!({
        "http_authenticator": { "type": "kerberos" },
        "authentication_backend": { "type": "noop" }
    });
    let clientcert = json!({
        "http_authenticator": { "type": "clientcert", "config": { "username_attribute": "cn" } },
        "authentication_backend": { "type": "noop" }
    });
    let mut typo = before.clone();
    typo["http"]["anonymous_auth_enable"] = json!(true);
    let mut wrong_type = before.clone();
    wrong_type["http"]["anonymous_auth_enabled"] = json!("yes");
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "Request body required"),
        ("[]".into(), "Object expected"),
        (json!({}).to_string(), "'dynamic': required"),
        (
            json!({ "dynamic": {}, "x": 1 }).to_string(),
            "'x': unknown field",
        ),
        (
            json!({ "dynamic": [] }).to_string(),
            "'dynamic': Object expected",
        ),
        (r#"{"dynamic": {}, "dynamic": {}}"#.into(), "Duplicate key"),
        (
            json!({ "dynamic": typo }).to_string(),
            "config.dynamic.http",
        ),
        (
            json!({ "dynamic": wrong_type }).to_string(),
            "config.dynamic.http.anonymous_auth_enabled",
        ),
        (
            with_domain(kerberos).to_string(),
            "config.dynamic.authc.extra",
        ),
        (with_domain(clientcert).to_string(), "server.tls"),
        (
            with_domain(jwt_domain("<redacted>")).to_string(),
            "none is stored here",
        ),
        (
            with_domain(jwt_domain("not base64 !")).to_string(),
            "config.dynamic.authc.extra",
        ),
    ];
    for (body, part) in cases {
        let r = n
            .admin(Method::PUT, &format!("{CONFIG}/config"), body.clone())
            .await;
        assert_refused(&r, StatusCode::BAD_REQUEST, part);
        assert_eq!(dynamic(&n).await, before, "{body} changed nothing");
    }
    assert_eq!(n.app.runtime().generation, 0);
}

#[tokio::test]
async fn patches_apply_atomically_and_cannot_read_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), true).await;
    let anonymous = || n.call(Method::GET, AUTHINFO, None, &[], "");
    assert_eq!(anonymous().await.status, StatusCode::UNAUTHORIZED);

    let r = patch(
        &n,
        &json!([
            { "op": "replace", "path": "/config/dynamic/http/anonymous_auth_enabled", "value": true },
            { "op": "add", "path": "/config/dynamic/authc/jwt_auth_domain", "value": jwt_domain(&STANDARD.encode(SECRET)) }
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"status": "OK", "message": "Resource updated."})
    );
    let r = anonymous().await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(whoami(&n, &token("dave")).await.as_deref(), Ok("dave"));
    let generation = n.app.runtime().generation;
    let before = dynamic(&n).await;

    // The last operation fails: nothing changes.
    let r = patch(
        &n,
        &json!([
            { "op": "replace", "path": "/config/dynamic/http/anonymous_auth_enabled", "value": false },
            { "op": "test", "path": "/config/dynamic/http/anonymous_auth_enabled", "value": true }
        ]),
    )
    .await;
    assert_refused(&r, StatusCode::BAD_REQUEST, "nothing was changed");
    assert_eq!(
        (n.app.runtime().generation, dynamic(&n).await),
        (generation, before.clone())
    );
    assert_eq!(anonymous().await.status, StatusCode::OK);

    // A patch may not read a secret: no test, copy or move from it.
    let key = "/config/dynamic/authc/jwt_auth_domain/http_authenticator/config/signing_key";
    for ops in [
        json!([{ "op": "test", "path": key, "value": STANDARD.encode(SECRET) }]),
        json!([{ "op": "test", "path": "/config/dynamic/authc/jwt_auth_domain", "value": {} }]),
        json!([{ "op": "copy", "from": key, "path": "/config/dynamic/description" }]),
        json!([{ "op": "move", "from": key, "path": "/config/dynamic/description" }]),
    ] {
        let r = patch(&n, &ops).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{ops}: {r:?}");
        assert_refused(&r, StatusCode::BAD_REQUEST, "holds a secret");
    }
    // Invalid results are refused as PUT refuses them, also through a patch.
    for (ops, part) in [
        (
            json!([{ "op": "add", "path": "/config/dynamic/bogus", "value": 1 }]),
            "config.dynamic",
        ),
        (
            json!([{ "op": "add", "path": "/config/static", "value": 1 }]),
            "'/config/static': unknown field",
        ),
        (
            json!([{ "op": "remove", "path": "/config/dynamic" }]),
            "'/config/dynamic': Object expected",
        ),
        (json!({ "op": "remove" }), "Array expected"),
    ] {
        let r = patch(&n, &ops).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{ops}: {r:?}");
        assert_refused(&r, StatusCode::BAD_REQUEST, part);
    }
    assert_eq!(
        (n.app.runtime().generation, dynamic(&n).await),
        (generation, before)
    );

    // Writing a secret is fine; the other settings of its domain stay.
    let other = b"another-secret-0123456789abcdef0123456789";
    let r = patch(
        &n,
        &json!([{ "op": "replace", "path": key, "value": STANDARD.encode(other) }]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        whoami(&n, &token("dave")).await,
        Err(StatusCode::UNAUTHORIZED)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_never_lose_an_update() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = std::sync::Arc::new(node(dir.path(), true).await);
    // The admin's password verified once beforehand, so the patches do not queue behind its
    // argon2id verification and really run at once.
    dynamic(&n).await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let n = n.clone();
            let ops = json!([{
                "op": "add",
                "path": format!("/config/dynamic/authc/racer_{i:02}"),
                "value": {
                    "order": 10 + i,
                    "http_authenticator": { "type": "basic" },
                    "authentication_backend": { "type": "intern" }
                }
            }]);
            tokio::spawn(async move { (i, patch(&n, &ops).await) })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.expect("join"));
    }
    let mut applied = Vec::new();
    for (i, r) in &replies {
        match r.status {
            StatusCode::OK => applied.push(format!("racer_{i:02}")),
            StatusCode::CONFLICT => {}
            other => panic!("patch {i}: {other} {r:?}"),
        }
    }
    assert!(!applied.is_empty());
    eprintln!(
        "{} of {} concurrent patches applied, the others 409",
        applied.len(),
        replies.len()
    );
    let d = dynamic(&n).await;
    let present: Vec<String> = d["authc"]
        .as_object()
        .expect("authc")
        .keys()
        .filter(|k| k.starts_with("racer_"))
        .cloned()
        .collect();
    assert_eq!(present, applied, "exactly the applied patches are stored");
    assert_eq!(n.app.runtime().generation, applied.len() as u64);
}

#[tokio::test]
async fn a_stored_configuration_that_cannot_run_is_reported_not_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), true).await;
    let mut d = dynamic(&n).await;
    d["authc"]["jwt_auth_domain"] = jwt_domain(&STANDARD.encode(SECRET));
    assert_eq!(
        put(&n, &json!({ "dynamic": d })).await.status,
        StatusCode::OK
    );
    // Another writer (an older or differently configured node) stores a document this node
    // cannot run: kerberos.
    let mut bad = n.app.runtime().config.config.dynamic.to_json();
    bad["authc"]["k"] = json!({
        "http_authenticator": { "type": "kerberos" },
        "authentication_backend": { "type": "noop" }
    });
    n.app
        .system
        .write(SECURITYCONFIG_DOC, 1, &Some(bad))
        .await
        .expect("written");
    // The reload keeps the previous configuration in force.
    n.app.reload().await.expect("reload");
    assert_eq!(n.app.runtime().generation, 1);
    assert_eq!(whoami(&n, &token("erin")).await.as_deref(), Ok("erin"));
    // A node starting on it refuses to start, naming the document and the key.
    let config = ServerConfig::from_yaml(&yaml(dir.path(), true)).expect("valid");
    let e = App::start(config, provider_registry(), || {
        Ok(zeroize::Zeroizing::new(ADMIN_PASSWORD.to_owned()))
    })
    .await
    .expect_err("refused");
    let e = e.to_string();
    assert!(
        e.contains("state/securityconfig generation 2") && e.contains("config.dynamic.authc.k"),
        "{e}"
    );
}
