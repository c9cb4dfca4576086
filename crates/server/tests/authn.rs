//! Authentication through the router and over loopback: domains in order, jwt next to basic,
//! anonymous, the failed-login limiter and the remote-IP header.

mod harness;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use encrypt_repo_server::security::{ANONYMOUS_BACKEND_ROLE, ANONYMOUS_USER, RoleMapping};
use harness::{ADMIN_PASSWORD, Node, config_yaml, config_yaml_with, node_in, start};
use serde_json::{Value, json};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-only";

fn jwt_domain(extra: &str) -> String {
    format!(
        r#"      jwt_auth_domain:
        http_enabled: true
        order: 1
        http_authenticator:
          type: jwt
          challenge: false
          config: {{ signing_key: "{}", roles_key: roles{extra} }}
        authentication_backend: {{ type: noop }}"#,
        STANDARD.encode(SECRET)
    )
}

fn hs256(claims: &Value) -> String {
    hs256_with(SECRET, claims)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

async fn map(n: &Node, role: &str, mapping: RoleMapping) {
    let loaded = n.app.loaded();
    let mut data = loaded.security.value.clone();
    data.rolesmapping.insert(role.into(), mapping);
    n.app
        .write_security(loaded.security.generation, data)
        .await
        .expect("mapping written");
}

#[tokio::test]
async fn jwt_domain_next_to_basic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = config_yaml_with(
        dir.path(),
        3600,
        "",
        "",
        &jwt_domain(", jwt_url_parameter: token"),
    );
    let n = node_in(dir.path(), &yaml).await;
    map(
        &n,
        "repository_read",
        RoleMapping {
            backend_roles: vec!["readers".into()],
            ..RoleMapping::default()
        },
    )
    .await;
    let good = hs256(&json!({ "sub": "jwtuser", "roles": "readers,other", "exp": now() + 600 }));
    let bearer = format!("Bearer {good}");
    let r = n
        .call(
            Method::GET,
            "/_plugins/_security/authinfo",
            None,
            &[("authorization", &bearer)],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let v = r.json();
    assert_eq!(v["user_name"], "jwtuser");
    assert_eq!(v["backend_roles"], json!(["readers", "other"]));
    assert_eq!(v["roles"], json!(["repository_read"]));
    let r = n
        .call(
            Method::GET,
            "/_snapshot",
            None,
            &[("authorization", &bearer)],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = n
        .call(
            Method::PUT,
            "/_snapshot/x",
            None,
            &[("authorization", &bearer)],
            n.repo_body("x").to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The URL parameter.
    let r = n
        .call(
            Method::GET,
            &format!("/_plugins/_security/authinfo?token={good}"),
            None,
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Refused tokens: 401, and basic still works next to them.
    let expired = hs256(&json!({ "sub": "jwtuser", "exp": now() - 3600 }));
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#)
    );
    for bad in [expired, tampered, none, "x".repeat(20_000)] {
        let r = n
            .call(
                Method::GET,
                "/_plugins/_security/authinfo",
                None,
                &[("authorization", &format!("Bearer {bad}"))],
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(!String::from_utf8_lossy(&r.body).contains(&bad[..10]));
    }
    let r = n
        .call(
            Method::GET,
            "/_plugins/_security/authinfo",
            Some(("admin", ADMIN_PASSWORD)),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn anonymous_only_without_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = config_yaml(dir.path(), 3600, "").replace(
        "anonymous_auth_enabled: false",
        "anonymous_auth_enabled: true",
    );
    let n = node_in(dir.path(), &yaml).await;
    let r = n
        .call(Method::GET, "/_plugins/_security/authinfo", None, &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["user_name"], ANONYMOUS_USER);
    assert_eq!(v["backend_roles"], json!([ANONYMOUS_BACKEND_ROLE]));
    assert_eq!(v["roles"], json!([]));
    let r = n.call(Method::GET, "/_snapshot", None, &[], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    map(
        &n,
        "repository_read",
        RoleMapping {
            backend_roles: vec![ANONYMOUS_BACKEND_ROLE.into()],
            ..RoleMapping::default()
        },
    )
    .await;
    let r = n.call(Method::GET, "/_snapshot", None, &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    // Wrong credentials never fall back to anonymous.
    let r = n
        .call(Method::GET, "/_snapshot", Some(("admin", "wrong")), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

const SECOND_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210-second-domain";

fn hs256_with(key: &[u8], claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let sig = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// A token valid for the second JWT domain fails the first one's signature check; that is no
/// failed login (only credentials every applicable domain refused are), so such clients are
/// never blocked. Tokens no domain accepts are counted, once per request.
#[tokio::test]
async fn a_token_of_the_second_jwt_domain_is_no_failure_of_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let second = format!(
        r#"
      second_jwt_domain:
        http_enabled: true
        order: 2
        http_authenticator:
          type: jwt
          challenge: false
          config: {{ signing_key: "{}", roles_key: roles }}
        authentication_backend: {{ type: noop }}"#,
        STANDARD.encode(SECOND_SECRET)
    );
    let listeners = "    auth_failure_listeners:\n      ip_rate_limiting: { type: ip, allowed_tries: 3, time_window_seconds: 3600, block_expiry_seconds: 3600 }";
    let yaml = config_yaml_with(
        dir.path(),
        3600,
        "",
        listeners,
        &format!("{}{second}", jwt_domain("")),
    );
    let n = node_in(dir.path(), &yaml).await;
    let claims = json!({ "sub": "svc", "exp": now() + 600 });
    let call = |token: String| {
        let n = &n;
        async move {
            let bearer = format!("Bearer {token}");
            n.call(
                Method::GET,
                "/_plugins/_security/authinfo",
                None,
                &[("authorization", &bearer)],
                "",
            )
            .await
        }
    };
    for _ in 0..10 {
        let r = call(hs256_with(SECOND_SECRET, &claims)).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.json()["user_name"], "svc");
    }
    // Three tokens neither domain accepts: three failures (not six), then the address is
    // blocked, for valid tokens too, with 429.
    for _ in 0..3 {
        let r = call(hs256_with(b"a key neither domain has, 32 bytes+", &claims)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    }
    let r = call(hs256_with(SECOND_SECRET, &claims)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}");
    assert!(r.headers.contains_key("retry-after"), "{r:?}");
}

/// The block's end is the limiter's unit tests' business (they pass the clock in); here the
/// block lasts an hour, so no scheduling delay can end it before it is looked at.
#[tokio::test]
async fn failed_logins_block_the_user_with_429_and_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listeners = r#"    auth_failure_listeners:
      internal_authentication_backend_limiting:
        type: username
        authentication_backend: intern
        allowed_tries: 3
        time_window_seconds: 3600
        block_expiry_seconds: 3600"#;
    let yaml = config_yaml_with(dir.path(), 3600, "", listeners, "");
    let n = node_in(dir.path(), &yaml).await;
    n.user("eve", "eve-pw-1", &[]).await;
    let login = |pw: &'static str| {
        let n = &n;
        async move {
            n.call(
                Method::GET,
                "/_plugins/_security/authinfo",
                Some(("eve", pw)),
                &[],
                "",
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(login("wrong").await.status, StatusCode::UNAUTHORIZED);
    }
    // Blocked: even the right password is refused, with 429 and when to come back.
    let r = login("eve-pw-1").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r
        .headers
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((3000..=3600).contains(&retry), "Retry-After: {retry}");
    let body: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(body["status"], 429);
    assert!(
        body["error"]["reason"]
            .as_str()
            .is_some_and(|m| m.contains("too many failed logins")),
        "{body}"
    );
    // Other users are not blocked by eve's failures.
    let r = n
        .admin(Method::GET, "/_plugins/_security/authinfo", "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn invalid_jwt_and_limiter_settings_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = config_yaml_with(dir.path(), 5, "", "", &jwt_domain(", colour: blue"));
    let e = encrypt_repo_server::ServerConfig::from_yaml(&yaml)
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("config.dynamic.authc.jwt_auth_domain.http_authenticator.config"),
        "{e}"
    );
    assert!(e.contains("colour"), "{e}");
    let yaml = config_yaml_with(
        dir.path(),
        5,
        "",
        "",
        &jwt_domain("").replace("signing_key: \"", "signing_key: \"AA"),
    );
    let e = encrypt_repo_server::ServerConfig::from_yaml(&yaml)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("signing_key"), "{e}");
    let listeners = "    auth_failure_listeners:\n      l: { type: ip, allowed_tries: 0 }";
    let yaml = config_yaml_with(dir.path(), 5, "", listeners, "");
    let e = encrypt_repo_server::ServerConfig::from_yaml(&yaml)
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("config.dynamic.auth_failure_listeners.l.allowed_tries"),
        "{e}"
    );
    let yaml = config_yaml(
        dir.path(),
        5,
        "xff: { enabled: true, internalProxies: '(' }",
    );
    let e = encrypt_repo_server::ServerConfig::from_yaml(&yaml)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("config.dynamic.http.xff"), "{e}");
    assert!(e.contains("internalProxies"), "{e}");
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_trusted_only_from_internal_proxies() {
    // Loopback is the trusted proxy: the header names the client.
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = config_yaml(
        dir.path(),
        3600,
        r"xff: { enabled: true, internalProxies: '127\.0\.0\.1', remoteIpHeader: x-forwarded-for }",
    );
    let s = start(dir.path(), &yaml).await;
    let v: Value = client()
        .get(format!("{}/_plugins/_security/authinfo", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("authinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(v["remote_address"], "203.0.113.9");
    s.stop().await;

    // Loopback is not a trusted proxy: a spoofed header changes neither the address nor the
    // rate-limit key.
    let dir = tempfile::tempdir().expect("tempdir");
    let listeners = "    auth_failure_listeners:\n      ip_rate_limiting: { type: ip, allowed_tries: 3, block_expiry_seconds: 600 }";
    let yaml = config_yaml_with(
        dir.path(),
        3600,
        r"xff: { enabled: true, internalProxies: '10\.0\.0\.1' }",
        listeners,
        "",
    );
    let s = start(dir.path(), &yaml).await;
    let c = client();
    let v: Value = c
        .get(format!("{}/_plugins/_security/authinfo", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("authinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(v["remote_address"], "127.0.0.1");
    for i in 0..3 {
        let r = c
            .get(format!("{}/_plugins/_security/authinfo", s.base))
            .basic_auth(format!("user{i}"), Some("wrong"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = c
        .get(format!("{}/_plugins/_security/authinfo", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("x-forwarded-for", "198.51.100.77")
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the address is blocked whatever the header says"
    );
    s.stop().await;
}
