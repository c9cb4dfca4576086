//! The authorization matrix: for each predefined role (and a user without any), each endpoint
//! answers 2xx or 403 as documented in `encrypt_repo_server::security`.

mod harness;

use axum::http::{Method, StatusCode};
use harness::{Node, node};
use serde_json::json;

const ROLES: [&str; 5] = [
    "all_access",
    "repository_read",
    "repository_write",
    "repository_manager",
    "",
];

/// (method, uri, body, allowed for each of ROLES in order).
fn endpoints(n: &Node) -> Vec<(Method, String, String, [bool; 5])> {
    let rewrap = json!({ "crypto_settings": {
        "key_provider_name": "main", "key_provider_type": "local",
        "settings": {} } });
    let e = String::new;
    vec![
        (
            Method::GET,
            "/".into(),
            e(),
            [true, true, true, true, false],
        ),
        (
            Method::GET,
            "/_plugins/_security/authinfo".into(),
            e(),
            [true; 5],
        ),
        (
            Method::GET,
            "/_plugins/_security/health".into(),
            e(),
            [true; 5],
        ),
        (
            Method::GET,
            "/_snapshot".into(),
            e(),
            [true, true, true, true, false],
        ),
        (
            Method::GET,
            "/_snapshot/m".into(),
            e(),
            [true, true, true, true, false],
        ),
        (
            Method::PUT,
            "/_snapshot/fresh".into(),
            n.repo_body("fresh").to_string(),
            [true, false, false, true, false],
        ),
        (
            Method::DELETE,
            "/_snapshot/d".into(),
            e(),
            [true, false, false, true, false],
        ),
        (
            Method::POST,
            "/_snapshot/m/_verify".into(),
            e(),
            [true, false, false, true, false],
        ),
        (
            Method::PUT,
            "/_snapshot/m/_objects/new".into(),
            "payload".into(),
            [true, false, true, false, false],
        ),
        (
            Method::GET,
            "/_snapshot/m/_objects/obj".into(),
            e(),
            [true, true, true, true, false],
        ),
        (
            Method::HEAD,
            "/_snapshot/m/_objects/obj".into(),
            e(),
            [true, true, true, true, false],
        ),
        (
            Method::GET,
            "/_snapshot/m/_objects?prefix=o".into(),
            e(),
            [true, true, true, true, false],
        ),
        (
            Method::DELETE,
            "/_snapshot/m/_objects/obj".into(),
            e(),
            [true, false, true, false, false],
        ),
        (
            Method::GET,
            "/_snapshot/m/_keys".into(),
            e(),
            [true, true, true, true, false],
        ),
        (
            Method::POST,
            "/_snapshot/m/_keys/_rotate".into(),
            e(),
            [true, false, false, true, false],
        ),
        (
            Method::POST,
            "/_snapshot/m/_keys/_rewrap".into(),
            rewrap.to_string(),
            [true, false, false, true, false],
        ),
        (
            Method::POST,
            "/_snapshot/m/_keys/_shred".into(),
            json!({ "all": true }).to_string(),
            [true, false, false, true, false],
        ),
        (
            Method::PUT,
            "/_plugins/_security/api/internalusers/someone".into(),
            json!({ "password": "someone-pw-1" }).to_string(),
            [true, false, false, false, false],
        ),
    ]
}

/// Puts the state every endpoint expects back in place.
async fn setup(n: &Node) {
    let regs = n.app.loaded().registrations.value.clone();
    for name in ["m", "d"] {
        if !regs.contains_key(name) {
            n.register(name).await;
        }
    }
    if regs.contains_key("fresh") {
        let r = n.admin(Method::DELETE, "/_snapshot/fresh", "").await;
        assert!(r.status.is_success());
    }
    let r = n
        .admin(Method::PUT, "/_snapshot/m/_objects/obj", "object")
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

#[tokio::test]
async fn each_predefined_role_gets_2xx_or_403_as_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    for (r, role) in ROLES.iter().enumerate() {
        let user = format!("user{r}");
        let roles: Vec<&str> = if role.is_empty() { vec![] } else { vec![role] };
        n.user(&user, "user-pw-123", &roles).await;
    }
    let mut checked = 0;
    for (r, role) in ROLES.iter().enumerate() {
        let user = format!("user{r}");
        for (i, (method, uri, body, allowed)) in endpoints(&n).into_iter().enumerate() {
            setup(&n).await;
            let reply = n
                .call(
                    method.clone(),
                    &uri,
                    Some((&user, "user-pw-123")),
                    &[],
                    body,
                )
                .await;
            let what = format!("role {role:?}: {method} {uri} (#{i}) → {reply:?}");
            if allowed[r] {
                assert!(reply.status.is_success(), "expected 2xx: {what}");
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "expected 403: {what}");
                if method != Method::HEAD {
                    assert_eq!(reply.error_type(), "security_exception", "{what}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROLES.len() * 18);
}
