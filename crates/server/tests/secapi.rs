//! The security REST API (`/_plugins/_security/api/…`): every endpoint's success and error
//! paths, access control, hidden / reserved / static entries, validation (also through JSON
//! Patch), atomic patches, the cache flush, certificates, and an end-to-end run over loopback.

mod harness;

use axum::http::{Method, StatusCode};
use harness::*;
use serde_json::{Value, json};

const API: &str = "/_plugins/_security/api";

fn url(path: &str) -> String {
    format!("{API}/{path}")
}

/// A valid PUT body per resource.
fn body_for(resource: &str) -> Value {
    match resource {
        "actiongroups" => {
            json!({ "allowed_actions": ["read", "repository:keys/read"], "description": "d" })
        }
        "internalusers" => {
            json!({ "password": "pw-1-long-enough", "backend_roles": ["b1"], "attributes": { "team": "ops" } })
        }
        "roles" => json!({ "cluster_permissions": ["cluster:monitor/main"],
            "repository_permissions": [{ "repository_patterns": ["logs-*"], "allowed_actions": ["read"] }],
            "tenant_permissions": [{ "tenant_patterns": ["hr"], "allowed_actions": ["kibana_all_read"] }] }),
        "rolesmapping" => {
            json!({ "users": ["u1"], "backend_roles": ["b1"], "hosts": ["10.0.0.*"] })
        }
        "tenants" => json!({ "description": "A tenant" }),
        _ => unreachable!(),
    }
}

/// A field of each resource that a PATCH may replace with a valid value.
fn patch_for(resource: &str) -> (&'static str, Value) {
    match resource {
        "actiongroups" => ("/allowed_actions", json!(["write"])),
        "internalusers" => ("/backend_roles", json!(["b2"])),
        "roles" => ("/cluster_permissions", json!(["cluster_monitor"])),
        "rolesmapping" => ("/users", json!(["u2"])),
        "tenants" => ("/description", json!("changed")),
        _ => unreachable!(),
    }
}

const RESOURCES: [&str; 5] = [
    "actiongroups",
    "internalusers",
    "roles",
    "rolesmapping",
    "tenants",
];

fn status_body(r: &Reply, status: StatusCode, word: &str, message: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(
        r.json(),
        json!({ "status": word, "message": message }),
        "{r:?}"
    );
}

fn assert_error(r: &Reply, status: StatusCode, reason_part: &str) {
    assert_eq!(r.status, status, "{r:?}");
    r.error_type();
    assert!(
        r.reason().contains(reason_part),
        "{:?} does not contain {reason_part:?}",
        r.reason()
    );
}

#[tokio::test]
async fn every_resource_supports_get_put_delete_and_both_patches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    for res in RESOURCES {
        // rolesmapping needs a role of that name; the others take any name.
        let name = if res == "rolesmapping" {
            "repository_read"
        } else {
            "x1"
        };
        let r = n
            .admin(
                Method::PUT,
                &url(&format!("{res}/{name}")),
                body_for(res).to_string(),
            )
            .await;
        status_body(
            &r,
            StatusCode::CREATED,
            "CREATED",
            &format!("'{name}' created."),
        );
        let r = n
            .admin(
                Method::PUT,
                &url(&format!("{res}/{name}")),
                body_for(res).to_string(),
            )
            .await;
        status_body(&r, StatusCode::OK, "OK", &format!("'{name}' updated."));
        let one = n
            .admin(Method::GET, &url(&format!("{res}/{name}")), "")
            .await;
        assert_eq!(one.status, StatusCode::OK, "{one:?}");
        let v = one.json();
        assert_eq!(v.as_object().map(|m| m.len()), Some(1), "{v}");
        let e = &v[name];
        assert_eq!(
            (
                e["reserved"].clone(),
                e["hidden"].clone(),
                e["static"].clone()
            ),
            (json!(false), json!(false), json!(false)),
            "{v}"
        );
        for (k, want) in body_for(res).as_object().expect("object") {
            if k == "password" {
                continue;
            }
            assert_eq!(&e[k], want, "{res}.{k}: {v}");
        }
        if res == "internalusers" {
            assert_eq!(e["hash"], "", "hashes are never returned");
            assert!(e.get("password").is_none());
        }
        let all = n.admin(Method::GET, &url(res), "").await;
        assert_eq!(all.status, StatusCode::OK);
        assert_eq!(all.json()[name], *e, "{res}: GET all shows the same entry");
        let slash = n.admin(Method::GET, &url(&format!("{res}/")), "").await;
        assert_eq!(
            (slash.status, slash.json()),
            (StatusCode::OK, all.json()),
            "{res}/"
        );
        // PATCH one.
        let (path, value) = patch_for(res);
        let r = n
            .admin(
                Method::PATCH,
                &url(&format!("{res}/{name}")),
                json!([{ "op": "replace", "path": path, "value": value }]).to_string(),
            )
            .await;
        status_body(&r, StatusCode::OK, "OK", &format!("'{name}' updated."));
        let v = n
            .admin(Method::GET, &url(&format!("{res}/{name}")), "")
            .await
            .json();
        assert_eq!(v[name][&path[1..]], value, "{v}");
        // PATCH all: add a second entry, change the first.
        let second = if res == "rolesmapping" {
            "repository_write"
        } else {
            "x2"
        };
        let r = n
            .admin(Method::PATCH, &url(res),
                json!([
                    { "op": "add", "path": format!("/{second}"), "value": body_for(res) },
                    { "op": "replace", "path": format!("/{name}{path}"), "value": body_for(res)[&path[1..]].clone() },
                ]).to_string())
            .await;
        status_body(&r, StatusCode::OK, "OK", "Resource updated.");
        let all = n.admin(Method::GET, &url(res), "").await.json();
        assert!(all.get(second).is_some(), "{res}: {all}");
        // DELETE both; then 404.
        for nm in [name, second] {
            let r = n
                .admin(Method::DELETE, &url(&format!("{res}/{nm}")), "")
                .await;
            status_body(&r, StatusCode::OK, "OK", &format!("'{nm}' deleted."));
        }
        let r = n
            .admin(Method::GET, &url(&format!("{res}/{name}")), "")
            .await;
        assert_error(
            &r,
            StatusCode::NOT_FOUND,
            &format!("Resource '{name}' not found."),
        );
        let r = n
            .admin(Method::DELETE, &url(&format!("{res}/{name}")), "")
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, "not found");
        let r = n
            .admin(
                Method::PATCH,
                &url(&format!("{res}/{name}")),
                json!([{ "op": "replace", "path": path, "value": value }]).to_string(),
            )
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, "not found");
    }
}

#[tokio::test]
async fn users_created_through_the_api_log_in_with_their_roles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("u").await;
    n.user("writer", "writer-pw-1", &["repository_write"]).await;
    let w = Some(("writer", "writer-pw-1"));
    let r = n
        .call(Method::PUT, "/_snapshot/u/_objects/x", w, &[], "data")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = n.call(Method::DELETE, "/_snapshot/u", w, &[], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.reason().contains("cluster:admin/repository/delete"),
        "{}",
        r.reason()
    );
    // Replacing the password; the old one stops working.
    let r = n
        .admin(
            Method::PUT,
            &url("internalusers/writer"),
            json!({ "password": "writer-pw-2", "opendistro_security_roles": ["repository_write"] })
                .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = n
        .call(Method::GET, "/_snapshot/u/_objects/x", w, &[], "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A PUT without password keeps the existing hash.
    let r = n
        .admin(
            Method::PUT,
            &url("internalusers/writer"),
            json!({ "opendistro_security_roles": ["repository_write"], "backend_roles": ["x"] })
                .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = n
        .call(
            Method::GET,
            "/_snapshot/u/_objects/x",
            Some(("writer", "writer-pw-2")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Imported bcrypt hashes are accepted.
    let r = n
        .admin(
            Method::PUT,
            &url("internalusers/imported"),
            json!({ "hash": "$2a$12$VcCDgh2NDk07JGN0rjGbM.Ad41qVR/YFJcgHp0UGns5JDymv..TOG",
                    "opendistro_security_roles": ["repository_read"] })
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = n
        .call(
            Method::GET,
            "/_snapshot/u",
            Some(("imported", "admin")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // The stored document never holds the password, only an argon2id hash.
    let stored = n.app.loaded().security.value.internalusers["writer"]
        .hash
        .clone();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    for (bad, why) in [
        (json!({}), "'password': required"),
        (json!({ "password": "" }), "'password': must not be empty"),
        (
            json!({ "hash": "plain" }),
            "'hash': not an argon2id or bcrypt hash",
        ),
        (
            json!({ "password": "a", "hash": "$2a$12$VcCDgh2NDk07JGN0rjGbM.Ad41qVR/YFJcgHp0UGns5JDymv..TOG" }),
            "not both",
        ),
    ] {
        let r = n
            .admin(Method::PUT, &url("internalusers/bad"), bad.to_string())
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, why);
    }
    // The bootstrap admin is reserved.
    let r = n
        .admin(
            Method::PUT,
            &url("internalusers/admin"),
            json!({ "password": "x" }).to_string(),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "Resource 'admin' is reserved.");
}

#[tokio::test]
async fn account_shows_the_caller_and_changes_its_own_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    let r = n
        .admin(Method::PUT, &url("internalusers/alice"),
            json!({ "password": "alice-pw-1", "backend_roles": ["readers"],
                    "opendistro_security_roles": ["repository_read"], "attributes": { "dept": "hr" } }).to_string())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let alice = Some(("alice", "alice-pw-1"));
    let r = n.call(Method::GET, &url("account"), alice, &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({ "user_name": "alice", "is_reserved": false, "is_hidden": false, "is_internal_user": true,
                "user_requested_tenant": null, "backend_roles": ["readers"], "custom_attribute_names": ["dept"],
                "tenants": {}, "roles": ["repository_read"] })
    );
    let v = n.admin(Method::GET, &url("account"), "").await.json();
    assert_eq!(
        (v["user_name"].clone(), v["is_reserved"].clone()),
        (json!("admin"), json!(true))
    );
    assert_eq!(v["tenants"], json!({ "global_tenant": true }));
    // Not authenticated.
    let r = n.call(Method::GET, &url("account"), None, &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Password change errors.
    let put = |body: String, auth: Option<(&'static str, &'static str)>| {
        let n = &n;
        async move { n.call(Method::PUT, &url("account"), auth, &[], body).await }
    };
    for (body, why) in [
        (
            json!({ "password": "new-pw-1" }).to_string(),
            "'current_password': required",
        ),
        (
            json!({ "current_password": "", "password": "new-pw-1" }).to_string(),
            "'current_password': required",
        ),
        (
            json!({ "current_password": "wrong", "password": "new-pw-1" }).to_string(),
            "Could not validate your current password.",
        ),
        (
            json!({ "current_password": "alice-pw-1", "password": "" }).to_string(),
            "'password': required",
        ),
        (
            json!({ "current_password": "alice-pw-1", "password": 5 }).to_string(),
            "'password': String expected",
        ),
        (
            json!({ "current_password": "alice-pw-1", "password": "x", "roles": [] }).to_string(),
            "'roles': unknown field",
        ),
        (
            r#"{"current_password":"alice-pw-1","password":"a","password":"b"}"#.to_owned(),
            "Duplicate key 'password'",
        ),
        (String::new(), "Request body required"),
    ] {
        let r = put(body.clone(), Some(("alice", "alice-pw-1"))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, why);
    }
    let r = put(
        json!({ "current_password": "alice-pw-1", "password": "alice-pw-2" }).to_string(),
        Some(("alice", "alice-pw-1")),
    )
    .await;
    status_body(&r, StatusCode::OK, "OK", "'alice' updated.");
    let r = n.call(Method::GET, &url("account"), alice, &[], "").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the old password stops working"
    );
    let r = n
        .call(
            Method::GET,
            &url("account"),
            Some(("alice", "alice-pw-2")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // The reserved admin cannot change its password through the API.
    let r = n
        .admin(
            Method::PUT,
            &url("account"),
            json!({ "current_password": ADMIN_PASSWORD, "password": "other-pw" }).to_string(),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "Resource 'admin' is reserved.");
}

#[tokio::test]
async fn wrong_current_passwords_count_as_failed_logins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = "    auth_failure_listeners:\n      addresses: { type: ip, allowed_tries: 3, time_window_seconds: 3600, block_expiry_seconds: 600 }\n";
    let n = node_in(
        dir.path(),
        &config_yaml_with(dir.path(), 3600, "", limits, ""),
    )
    .await;
    n.user("alice", "alice-pw-1", &[]).await;
    let alice = Some(("alice", "alice-pw-1"));
    for _ in 0..3 {
        let r = n
            .call(
                Method::PUT,
                &url("account"),
                alice,
                &[],
                json!({ "current_password": "guess", "password": "new-pw-1" }).to_string(),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "Could not validate your current password.",
        );
    }
    // Blocked now (the client address reached its limit; a successful basic login resets only
    // the user's count): the next login from that address is refused.
    n.app.authn().flush_cache();
    let r = n.call(Method::GET, &url("account"), alice, &[], "").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}");
}

/// Every endpoint (but `account`) with every method it has.
fn all_calls() -> Vec<(Method, String, String)> {
    let mut v = Vec::new();
    for res in RESOURCES {
        v.push((Method::GET, url(res), String::new()));
        v.push((Method::PATCH, url(res), "[]".into()));
        v.push((Method::GET, url(&format!("{res}/")), String::new()));
        v.push((Method::PATCH, url(&format!("{res}/")), "[]".into()));
        v.push((
            Method::GET,
            url(&format!("{res}/repository_read")),
            String::new(),
        ));
        v.push((
            Method::PUT,
            url(&format!("{res}/repository_read")),
            body_for(res).to_string(),
        ));
        v.push((
            Method::DELETE,
            url(&format!("{res}/repository_read")),
            String::new(),
        ));
        v.push((
            Method::PATCH,
            url(&format!("{res}/repository_read")),
            "[]".into(),
        ));
    }
    v.push((Method::GET, url("securityconfig"), String::new()));
    v.push((Method::PUT, url("securityconfig/config"), "{}".into()));
    v.push((Method::PATCH, url("securityconfig"), "[]".into()));
    v.push((Method::DELETE, url("cache"), String::new()));
    v.push((Method::GET, url("ssl/certs"), String::new()));
    v.push((Method::PUT, url("ssl/http/reloadcerts"), String::new()));
    v.push((Method::PUT, url("ssl/transport/reloadcerts"), String::new()));
    for m in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        v.push((m.clone(), url("nodesdn"), String::new()));
        v.push((m, url("nodesdn/c1"), String::new()));
    }
    for m in [Method::GET, Method::PUT, Method::PATCH] {
        v.push((m.clone(), url("allowlist"), String::new()));
        v.push((m, url("whitelist"), String::new()));
    }
    v
}

#[tokio::test]
async fn non_admins_get_403_on_every_verb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.user("mgr", "mgr-pw-1", &["repository_manager"]).await;
    let before = n.app.loaded().security.clone();
    for (m, path, body) in all_calls() {
        let r = n
            .call(m.clone(), &path, Some(("mgr", "mgr-pw-1")), &[], body)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}: {r:?}");
        assert_eq!(r.error_type(), "security_exception");
        assert!(
            r.reason().contains("restapi:admin/"),
            "{m} {path}: {}",
            r.reason()
        );
        let r = n.call(m.clone(), &path, None, &[], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {path}");
    }
    assert_eq!(n.app.loaded().security, before, "nothing changed");
    // account is open to every authenticated user.
    let r = n
        .call(
            Method::GET,
            &url("account"),
            Some(("mgr", "mgr-pw-1")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_restapi_permission_grants_exactly_its_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    let r = n
        .admin(
            Method::PUT,
            &url("roles/user_admin"),
            json!({ "cluster_permissions": ["restapi:admin/internalusers"] }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    n.user("ua", "ua-pw-1", &["user_admin"]).await;
    let ua = Some(("ua", "ua-pw-1"));
    let r = n
        .call(Method::GET, &url("internalusers"), ua, &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = n
        .call(
            Method::PUT,
            &url("internalusers/bob"),
            ua,
            &[],
            json!({ "password": "bob-pw-1" }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    for path in [
        "roles",
        "rolesmapping",
        "actiongroups",
        "tenants",
        "securityconfig",
    ] {
        let r = n.call(Method::GET, &url(path), ua, &[], "").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    let r = n.call(Method::DELETE, &url("cache"), ua, &[], "").await;
    assert_error(&r, StatusCode::FORBIDDEN, "restapi:admin/cache");
}

#[tokio::test]
async fn endpoints_disabled_blocks_exactly_the_listed_methods_for_the_listed_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{}restapi:\n  roles_enabled: [all_access, ops]\n  endpoints_disabled:\n    ops:\n      ROLES: [PUT, DELETE]\n      CACHE: [DELETE]\n",
        config_yaml(dir.path(), 3600, "")
    );
    let n = node_in(dir.path(), &yaml).await;
    let r = n
        .admin(
            Method::PUT,
            &url("roles/ops"),
            json!({ "description": "operators" }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    n.user("op", "op-pw-1", &["ops"]).await;
    let op = Some(("op", "op-pw-1"));
    let call = |m: Method, path: &str, body: String| {
        let n = &n;
        let path = url(path);
        async move { n.call(m, &path, op, &[], body).await }
    };
    let role = json!({ "description": "r" }).to_string();
    // Blocked: PUT and DELETE on ROLES, DELETE on CACHE.
    let r = call(Method::PUT, "roles/r1", role.clone()).await;
    assert_error(
        &r,
        StatusCode::FORBIDDEN,
        "Method PUT for endpoint ROLES is disabled",
    );
    let r = call(Method::DELETE, "roles/ops", String::new()).await;
    assert_error(
        &r,
        StatusCode::FORBIDDEN,
        "Method DELETE for endpoint ROLES is disabled",
    );
    let r = call(Method::DELETE, "cache", String::new()).await;
    assert_error(
        &r,
        StatusCode::FORBIDDEN,
        "Method DELETE for endpoint CACHE is disabled",
    );
    // Not blocked: the other methods of ROLES, and other endpoints.
    assert_eq!(
        call(Method::GET, "roles", String::new()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(Method::GET, "roles/ops", String::new()).await.status,
        StatusCode::OK
    );
    let r = call(
        Method::PATCH,
        "roles",
        json!([{ "op": "add", "path": "/r2", "value": { "description": "x" } }]).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = call(
        Method::PATCH,
        "roles/r2",
        json!([{ "op": "replace", "path": "/description", "value": "y" }]).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = call(
        Method::PUT,
        "internalusers/carl",
        json!({ "password": "carl-pw-1" }).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(
        call(Method::DELETE, "internalusers/carl", String::new())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(Method::PUT, "tenants/t1", "{}".into()).await.status,
        StatusCode::CREATED
    );
    // Not blocked for the other enabled role.
    let r = n.admin(Method::PUT, &url("roles/r1"), role).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        n.admin(Method::DELETE, &url("roles/r1"), "").await.status,
        StatusCode::OK
    );
    assert_eq!(
        n.admin(Method::DELETE, &url("cache"), "").await.status,
        StatusCode::OK
    );
}

/// Plants hidden and reserved entries the way the configuration files would.
async fn plant(n: &Node) {
    use encrypt_repo_server::security::{InternalUser, Role, RoleMapping};
    let loaded = n.app.loaded();
    let mut data = loaded.security.value.clone();
    data.internalusers.insert(
        "ghost".into(),
        InternalUser {
            hash: encrypt_repo_server::password::hash("ghost-pw").expect("hash"),
            hidden: true,
            ..InternalUser::default()
        },
    );
    data.internalusers.insert(
        "keeper".into(),
        InternalUser {
            hash: encrypt_repo_server::password::hash("keeper-pw").expect("hash"),
            reserved: true,
            ..InternalUser::default()
        },
    );
    data.roles.insert(
        "secret_role".into(),
        Role {
            hidden: true,
            ..Role::default()
        },
    );
    data.roles.insert(
        "locked_role".into(),
        Role {
            reserved: true,
            ..Role::default()
        },
    );
    data.rolesmapping.insert(
        "locked_role".into(),
        RoleMapping {
            reserved: true,
            ..RoleMapping::default()
        },
    );
    n.app
        .write_security(loaded.security.generation, data)
        .await
        .expect("planted");
}

#[tokio::test]
async fn hidden_reserved_and_static_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    plant(&n).await;
    let patch = json!([{ "op": "replace", "path": "/description", "value": "x" }]).to_string();
    // Hidden: 404 "not available" on every method, absent from listings.
    for (res, name, body) in [
        ("internalusers", "ghost", json!({ "password": "p-1" })),
        ("roles", "secret_role", json!({})),
    ] {
        let path = url(&format!("{res}/{name}"));
        let want = format!("Resource '{name}' is not available.");
        for (m, b) in [
            (Method::GET, String::new()),
            (Method::PUT, body.to_string()),
            (Method::PATCH, patch.clone()),
            (Method::DELETE, String::new()),
        ] {
            let r = n.admin(m.clone(), &path, b).await;
            assert_error(&r, StatusCode::NOT_FOUND, &want);
        }
        let all = n.admin(Method::GET, &url(res), "").await.json();
        assert!(all.get(name).is_none(), "{all}");
        // Also through PATCH all (the entry is not in the document, so adding it is refused).
        let r = n
            .admin(
                Method::PATCH,
                &url(res),
                json!([{ "op": "add", "path": format!("/{name}"), "value": body }]).to_string(),
            )
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, &want);
    }
    // A hidden role cannot be assigned.
    let r = n
        .admin(
            Method::PUT,
            &url("internalusers/u1"),
            json!({ "password": "p-1", "opendistro_security_roles": ["secret_role"] }).to_string(),
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "'opendistro_security_roles': role 'secret_role' is not available",
    );
    // Reserved: readable, not changeable.
    for (res, name, body) in [
        ("internalusers", "keeper", json!({ "password": "p-1" })),
        ("roles", "locked_role", json!({})),
        ("rolesmapping", "locked_role", json!({ "users": ["x"] })),
    ] {
        let path = url(&format!("{res}/{name}"));
        let v = n.admin(Method::GET, &path, "").await.json();
        assert_eq!(v[name]["reserved"], true, "{v}");
        let want = format!("Resource '{name}' is reserved.");
        for (m, b) in [
            (Method::PUT, body.to_string()),
            (Method::PATCH, patch.clone()),
            (Method::DELETE, String::new()),
        ] {
            let r = n.admin(m.clone(), &path, b).await;
            assert_error(&r, StatusCode::FORBIDDEN, &want);
        }
        let r = n
            .admin(
                Method::PATCH,
                &url(res),
                json!([{ "op": "remove", "path": format!("/{name}") }]).to_string(),
            )
            .await;
        assert_error(&r, StatusCode::FORBIDDEN, &want);
    }
    // Static (predefined): listed with static: true, not changeable.
    for (res, name) in [
        ("roles", "all_access"),
        ("actiongroups", "read"),
        ("tenants", "global_tenant"),
    ] {
        let path = url(&format!("{res}/{name}"));
        let v = n.admin(Method::GET, &path, "").await.json();
        assert_eq!(
            (v[name]["static"].clone(), v[name]["reserved"].clone()),
            (json!(true), json!(true)),
            "{v}"
        );
        let want = format!("Resource '{name}' is static.");
        let put_body = if res == "actiongroups" {
            json!({ "allowed_actions": ["x:y"] })
        } else {
            json!({})
        };
        for (m, b) in [
            (Method::PUT, put_body.to_string()),
            (Method::PATCH, patch.clone()),
            (Method::DELETE, String::new()),
        ] {
            let r = n.admin(m.clone(), &path, b).await;
            assert_error(&r, StatusCode::FORBIDDEN, &want);
        }
    }
    let v = n.admin(Method::GET, &url("roles"), "").await.json();
    assert_eq!(v["repository_read"]["static"], true, "{v}");
}

#[tokio::test]
async fn payloads_may_not_set_hidden_reserved_or_static() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    let r = n.admin(Method::PUT, &url("tenants/t"), "{}").await;
    assert_eq!(r.status, StatusCode::CREATED);
    for flag in ["hidden", "reserved", "static"] {
        for res in RESOURCES {
            let mut body = body_for(res);
            body[flag] = json!(true);
            let name = if res == "rolesmapping" {
                "repository_read"
            } else {
                "f1"
            };
            let r = n
                .admin(
                    Method::PUT,
                    &url(&format!("{res}/{name}")),
                    body.to_string(),
                )
                .await;
            assert_error(
                &r,
                StatusCode::BAD_REQUEST,
                &format!("'{flag}': cannot be set"),
            );
        }
        let r = n
            .admin(
                Method::PATCH,
                &url("tenants/t"),
                json!([{ "op": "add", "path": format!("/{flag}"), "value": true }]).to_string(),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            &format!("'{flag}': cannot be set"),
        );
        let r = n
            .admin(
                Method::PATCH,
                &url("tenants"),
                json!([{ "op": "add", "path": format!("/t/{flag}"), "value": false }]).to_string(),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            &format!("'{flag}': cannot be set"),
        );
    }
    assert!(!n.app.loaded().security.value.tenants["t"].hidden);
}

#[tokio::test]
async fn validation_errors_name_the_field_through_put_and_patch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.user("victim", "victim-pw-1", &[]).await;
    let r = n
        .admin(
            Method::PUT,
            &url("roles/r"),
            json!({ "description": "r" }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let before = n.app.loaded().security.clone();
    // (resource, PUT body, the same field set through PATCH one (path, value), expected reason)
    let cases: Vec<(&str, Value, (&str, Value), &str)> = vec![
        (
            "internalusers",
            json!({ "password": "p-1", "colour": "red" }),
            ("/colour", json!("red")),
            "'colour': unknown field",
        ),
        (
            "internalusers",
            json!({ "password": "p-1", "backend_roles": "admin" }),
            ("/backend_roles", json!("admin")),
            "'backend_roles': Array expected",
        ),
        (
            "internalusers",
            json!({ "password": "p-1", "description": 7 }),
            ("/description", json!(7)),
            "'description': String expected",
        ),
        (
            "internalusers",
            json!({ "password": "p-1", "attributes": ["a"] }),
            ("/attributes", json!(["a"])),
            "'attributes': Object expected",
        ),
        (
            "internalusers",
            json!({ "password": "p-1", "attributes": { "a": 1 } }),
            ("/attributes", json!({ "a": 1 })),
            "'attributes.a': String expected",
        ),
        (
            "internalusers",
            json!({ "password": "p-1", "backend_roles": ["a", null] }),
            ("/backend_roles", json!(["a", null])),
            "'backend_roles[1]': null or empty element",
        ),
        (
            "internalusers",
            json!({ "password": "p-1", "backend_roles": [""] }),
            ("/backend_roles", json!([""])),
            "'backend_roles[0]': null or empty element",
        ),
        (
            "internalusers",
            json!({ "password": "p-1", "opendistro_security_roles": ["nope"] }),
            ("/opendistro_security_roles", json!(["nope"])),
            "'opendistro_security_roles': role 'nope' does not exist",
        ),
        (
            "internalusers",
            json!({ "password": "p-1", "opendistro_security_roles": [3] }),
            ("/opendistro_security_roles", json!([3])),
            "'opendistro_security_roles[0]': String expected",
        ),
        (
            "roles",
            json!({ "cluster_permissions": ["no_such_group"] }),
            ("/cluster_permissions", json!(["no_such_group"])),
            "no_such_group",
        ),
        (
            "roles",
            json!({ "repository_permissions": [{ "repository_patterns": ["*"] }] }),
            (
                "/repository_permissions",
                json!([{ "repository_patterns": ["*"] }]),
            ),
            "'repository_permissions[0].allowed_actions': required",
        ),
        (
            "roles",
            json!({ "repository_permissions": {} }),
            ("/repository_permissions", json!({})),
            "'repository_permissions': Array expected",
        ),
        (
            "roles",
            json!({ "index_permissions": [] }),
            ("/index_permissions", json!([])),
            "'index_permissions': not supported",
        ),
        (
            "roles",
            json!({ "tenant_permissions": [{ "tenant_patterns": ["*"], "allowed_actions": ["x"], "dls": "" }] }),
            (
                "/tenant_permissions",
                json!([{ "tenant_patterns": ["*"], "allowed_actions": ["x"], "dls": "" }]),
            ),
            "'tenant_permissions[0].dls': unknown field",
        ),
    ];
    for (res, put_body, (ppath, pvalue), why) in &cases {
        let name = if *res == "internalusers" {
            "newbie"
        } else {
            "r2"
        };
        let r = n
            .admin(
                Method::PUT,
                &url(&format!("{res}/{name}")),
                put_body.to_string(),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, why);
        let existing = if *res == "internalusers" {
            "victim"
        } else {
            "r"
        };
        let r = n
            .admin(
                Method::PATCH,
                &url(&format!("{res}/{existing}")),
                json!([{ "op": "add", "path": ppath, "value": pvalue }]).to_string(),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, why);
        let r = n
            .admin(
                Method::PATCH,
                &url(res),
                json!([{ "op": "add", "path": format!("/{existing}{ppath}"), "value": pvalue }])
                    .to_string(),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, why);
    }
    // Unknown action group in an action group, through PUT and PATCH all.
    let r = n
        .admin(
            Method::PUT,
            &url("actiongroups/g"),
            json!({ "allowed_actions": ["ghost_group"] }).to_string(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "ghost_group");
    let r = n
        .admin(
            Method::PATCH,
            &url("actiongroups"),
            json!([{ "op": "add", "path": "/g", "value": { "allowed_actions": ["ghost_group"] } }])
                .to_string(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "ghost_group");
    let r = n
        .admin(
            Method::PUT,
            &url("actiongroups/g"),
            json!({ "description": "no actions" }).to_string(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'allowed_actions': required");
    // A role mapping for a role that does not exist.
    let r = n
        .admin(
            Method::PUT,
            &url("rolesmapping/nope"),
            json!({ "users": ["a"] }).to_string(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "role 'nope' does not exist");
    // ':' in user names, through PUT and PATCH all.
    let r = n
        .admin(
            Method::PUT,
            &url("internalusers/a:b"),
            json!({ "password": "p-1" }).to_string(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "must not contain ':'");
    let r = n
        .admin(
            Method::PATCH,
            &url("internalusers"),
            json!([{ "op": "add", "path": "/a:b", "value": { "password": "p-1" } }]).to_string(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "must not contain ':'");
    // Empty bodies, non-objects, malformed JSON, duplicate keys (also inside a patch value).
    for (m, path, body, why) in [
        (Method::PUT, "tenants/t", "", "Request body required"),
        (Method::PUT, "tenants/t", "  \n", "Request body required"),
        (Method::PATCH, "tenants", "", "Request body required"),
        (Method::PUT, "tenants/t", "[]", "Object expected"),
        (
            Method::PUT,
            "tenants/t",
            "{\"description\":",
            "Invalid JSON",
        ),
        (
            Method::PUT,
            "tenants/t",
            r#"{"description":"a","description":"b"}"#,
            "Duplicate key 'description'",
        ),
        (
            Method::PATCH,
            "tenants",
            r#"[{"op":"add","path":"/t","value":{"description":"a","description":"b"}}]"#,
            "Duplicate key 'description'",
        ),
        (
            Method::PATCH,
            "internalusers/victim",
            r#"[{"op":"add","op":"add","path":"/description","value":"a"}]"#,
            "Duplicate key 'op'",
        ),
        (Method::PATCH, "tenants", "{}", "Array expected"),
        (
            Method::PATCH,
            "tenants",
            r#"[{"op":"frobnicate","path":"/x"}]"#,
            "Invalid JSON Patch",
        ),
        (
            Method::PATCH,
            "tenants",
            r#"[{"op":"add","path":"","value":[]}]"#,
            "Object expected",
        ),
    ] {
        let r = n.admin(m.clone(), &url(path), body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, why);
    }
    assert_eq!(
        n.app.loaded().security,
        before,
        "no refused request changed anything"
    );
}

#[tokio::test]
async fn a_patch_whose_last_operation_fails_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.user("kirk", "kirk-pw-1", &["repository_read"]).await;
    let before = n
        .admin(Method::GET, &url("internalusers/kirk"), "")
        .await
        .json();
    let generation = n.app.loaded().security.generation;
    let r = n
        .admin(
            Method::PATCH,
            &url("internalusers/kirk"),
            json!([
                { "op": "replace", "path": "/backend_roles", "value": ["klingons"] },
                { "op": "add", "path": "/attributes/x", "value": "y" },
                { "op": "test", "path": "/backend_roles", "value": ["romulans"] },
            ])
            .to_string(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "JSON Patch operation 2 failed");
    let r = n
        .admin(
            Method::PATCH,
            &url("internalusers"),
            json!([
                { "op": "add", "path": "/spock", "value": { "password": "spock-pw-1" } },
                { "op": "replace", "path": "/kirk/backend_roles", "value": ["klingons"] },
                { "op": "remove", "path": "/riker" },
            ])
            .to_string(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "JSON Patch operation 2 failed");
    // Read back: the document and the stored generation are untouched.
    assert_eq!(
        n.admin(Method::GET, &url("internalusers/kirk"), "")
            .await
            .json(),
        before
    );
    let r = n.admin(Method::GET, &url("internalusers/spock"), "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    n.app.reload().await.expect("reload");
    assert_eq!(
        n.app.loaded().security.generation,
        generation,
        "nothing was written"
    );
    // The same patch with a passing test applies every operation.
    let r = n
        .admin(Method::PATCH, &url("internalusers/kirk"),
            json!([
                { "op": "replace", "path": "/backend_roles", "value": ["klingons"] },
                { "op": "copy", "from": "/backend_roles", "path": "/opendistro_security_roles" },
                { "op": "replace", "path": "/opendistro_security_roles", "value": ["repository_write"] },
                { "op": "add", "path": "/attributes/a", "value": "1" },
                { "op": "move", "from": "/attributes/a", "path": "/attributes/b" },
                { "op": "test", "path": "/backend_roles", "value": ["klingons"] },
            ]).to_string())
        .await;
    status_body(&r, StatusCode::OK, "OK", "'kirk' updated.");
    let v = n
        .admin(Method::GET, &url("internalusers/kirk"), "")
        .await
        .json();
    assert_eq!(v["kirk"]["backend_roles"], json!(["klingons"]));
    assert_eq!(
        v["kirk"]["opendistro_security_roles"],
        json!(["repository_write"])
    );
    assert_eq!(v["kirk"]["attributes"], json!({ "b": "1" }));
    // The password was kept.
    let r = n
        .call(
            Method::GET,
            &url("account"),
            Some(("kirk", "kirk-pw-1")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // A patch that sets a password hashes it.
    let r = n
        .admin(
            Method::PATCH,
            &url("internalusers/kirk"),
            json!([{ "op": "add", "path": "/password", "value": "kirk-pw-2" }]).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = n
        .call(
            Method::GET,
            &url("account"),
            Some(("kirk", "kirk-pw-2")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn securityconfig_is_readable_with_secrets_redacted_and_not_modifiable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwt = r#"
      jwt_auth_domain:
        http_enabled: true
        order: 1
        http_authenticator:
          type: jwt
          challenge: false
          config: { signing_key: "c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=", jwt_header: Authorization }
        authentication_backend: { type: noop }
"#;
    let n = node_in(dir.path(), &config_yaml_with(dir.path(), 3600, "", "", jwt)).await;
    let r = n.admin(Method::GET, &url("securityconfig"), "").await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        !text.contains("c2VjcmV0"),
        "the signing key is not shown: {text}"
    );
    let v = r.json();
    let d = &v["config"]["dynamic"];
    assert_eq!(
        d["authc"]["jwt_auth_domain"]["http_authenticator"]["config"]["signing_key"],
        "<redacted>"
    );
    assert_eq!(
        d["authc"]["jwt_auth_domain"]["http_authenticator"]["config"]["jwt_header"],
        "Authorization"
    );
    assert_eq!(
        d["authc"]["basic_internal_auth_domain"]["http_authenticator"]["type"],
        "basic"
    );
    assert_eq!(d["http"]["anonymous_auth_enabled"], false);
    for (m, path, body) in [
        (Method::PUT, "securityconfig/config", json!({ "dynamic": {} }).to_string()),
        (Method::PATCH, "securityconfig", json!([{ "op": "replace", "path": "/config/dynamic/http/anonymous_auth_enabled", "value": true }]).to_string()),
    ] {
        let r = n.admin(m, &url(path), body).await;
        assert_error(&r, StatusCode::FORBIDDEN, "allow_securityconfig_modification");
    }
}

#[tokio::test]
async fn unsupported_and_tls_only_endpoints_answer_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    for (m, path, why) in [
        (
            Method::GET,
            "nodesdn",
            "nodesdn is not supported by encrypt-repo: there is no node-to-node transport",
        ),
        (Method::PUT, "nodesdn/c1", "nodesdn is not supported"),
        (Method::PATCH, "nodesdn", "nodesdn is not supported"),
        (Method::DELETE, "nodesdn/c1", "nodesdn is not supported"),
        (
            Method::PUT,
            "ssl/transport/reloadcerts",
            "no node-to-node transport",
        ),
        (Method::GET, "allowlist", "allowlist is not supported"),
        (Method::PUT, "whitelist", "allowlist is not supported"),
        (Method::GET, "ssl/certs", "TLS is not enabled"),
        (Method::PUT, "ssl/http/reloadcerts", "TLS is not enabled"),
    ] {
        let r = n.admin(m.clone(), &url(path), "").await;
        assert_error(&r, StatusCode::BAD_REQUEST, why);
    }
    // The seed's trailing-slash form of PATCH all.
    let r = n
        .admin(
            Method::PATCH,
            &url("tenants/"),
            json!([{ "op": "add", "path": "/hr", "value": { "description": "HR" } }]).to_string(),
        )
        .await;
    status_body(&r, StatusCode::OK, "OK", "Resource updated.");
    let r = n.admin(Method::POST, &url("roles"), "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// An `exec` key provider that counts its invocations: a shell wrapper appends a line to
/// `calls` and runs the keys crate's test KMS.
fn counting_provider(dir: &std::path::Path) -> (Value, std::path::PathBuf) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../keys/tests/exec-provider/test-kms.py");
    assert!(script.exists(), "{}", script.display());
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("python3 is needed by the exec provider test KMS (apt-get install python3)");
    let key_file = dir.join("master.key");
    let key: String = (0..32)
        .map(|i| format!("{:02x}", (i * 7 + 3) as u8))
        .collect();
    std::fs::write(&key_file, format!("{key}\n")).expect("key");
    let calls = dir.join("calls");
    let wrapper = dir.join("kms.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho call >> '{}'\nexec '{}' '{}' --key-file '{}'\n",
            calls.display(),
            python,
            script.display(),
            key_file.display()
        ),
    )
    .expect("wrapper");
    let crypto = json!({
        "key_provider_name": "counted",
        "key_provider_type": "exec",
        "settings": { "command": "/bin/sh", "args": json!([wrapper.to_str().expect("utf-8")]).to_string(), "key_id": "k1" }
    });
    (crypto, calls)
}

fn count(calls: &std::path::Path) -> usize {
    std::fs::read_to_string(calls)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn cache_flush_makes_the_next_request_verify_the_password_and_unwrap_keys_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A repository whose key provider (declared by the operator) counts its calls.
    let (crypto, calls) = counting_provider(dir.path());
    let mut decl = crypto["settings"].clone();
    decl["type"] = json!("exec");
    decl["allowed"] = json!(["k1"]);
    let yaml = with_key_provider(&config_yaml(dir.path(), 3600, ""), "counted", &decl);
    let n = node_in(dir.path(), &yaml).await;
    n.user("alice", "alice-pw-1", &["repository_write"]).await;
    let mut body = n.repo_body("counted");
    body["crypto_settings"] = json!({ "key_provider_name": "counted",
        "key_provider_type": "exec", "settings": { "key_id": "k1" } });
    let r = n
        .admin(Method::PUT, "/_snapshot/counted", body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let alice = Some(("alice", "alice-pw-1"));
    let r = n
        .call(
            Method::PUT,
            "/_snapshot/counted/_objects/o",
            alice,
            &[],
            "secret data",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // Flush once so the read below starts from an empty reader cache.
    assert_eq!(
        n.admin(Method::DELETE, &url("cache"), "").await.status,
        StatusCode::OK
    );
    let get = || n.call(Method::GET, "/_snapshot/counted/_objects/o", alice, &[], "");
    let r = get().await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::OK, &b"secret data"[..])
    );
    let (v1, k1) = (n.app.authn().password_verifications(), count(&calls));
    let r = get().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (n.app.authn().password_verifications(), count(&calls)),
        (v1, k1),
        "a second request uses the remembered verification and the cached data key"
    );
    let r = n.admin(Method::DELETE, &url("cache"), "").await;
    status_body(&r, StatusCode::OK, "OK", "Cache flushed successfully.");
    let v2 = n.app.authn().password_verifications();
    let r = get().await;
    assert_eq!(
        (r.status, &r.body[..]),
        (StatusCode::OK, &b"secret data"[..])
    );
    assert_eq!(
        n.app.authn().password_verifications(),
        v2 + 1,
        "the password was verified again"
    );
    assert!(
        count(&calls) > k1,
        "the data key was unwrapped again ({} calls before, {} after)",
        k1,
        count(&calls)
    );
}

#[tokio::test]
async fn cache_flush_also_drops_the_system_repositorys_data_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    // The system repository itself behind the counting key provider.
    let (crypto, calls) = counting_provider(&keys);
    let yaml = config_yaml(dir.path(), 3600, "");
    let start = yaml.find("    crypto_settings:").expect("crypto_settings");
    let yaml = format!("{}    crypto_settings: {crypto}\n", &yaml[..start]);
    let n = node_in(dir.path(), &yaml).await;
    n.app.reload().await.expect("reload");
    let before = count(&calls);
    n.app.reload().await.expect("reload");
    assert_eq!(
        count(&calls),
        before,
        "a reload reads with cached data keys"
    );
    let r = n.admin(Method::DELETE, &url("cache"), "").await;
    status_body(&r, StatusCode::OK, "OK", "Cache flushed successfully.");
    n.app.reload().await.expect("reload");
    assert!(
        count(&calls) > before,
        "after the flush the system repository's documents need the key provider again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_loopback_with_tls_certs_are_shown_and_reloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write_cert = |name: &str| {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), name.to_owned()])
            .expect("cert");
        std::fs::write(dir.path().join("cert.pem"), c.cert.pem()).expect("cert");
        std::fs::write(dir.path().join("key.pem"), c.signing_key.serialize_pem()).expect("key");
        c.cert
    };
    let first = write_cert("first.example");
    let yaml = config_yaml(dir.path(), 3600, "").replace(
        "  listen: 127.0.0.1:0\n",
        &format!(
            "  listen: 127.0.0.1:0\n  tls: {{ certificate: \"{}\", private_key: \"{}\" }}\n",
            dir.path().join("cert.pem").display(),
            dir.path().join("key.pem").display()
        ),
    );
    let s = start(dir.path(), &yaml).await;
    let port: u16 = s
        .base
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port");
    let client = |root: &rcgen::Certificate| {
        reqwest::Client::builder()
            .no_proxy()
            .tls_info(true)
            .add_root_certificate(
                reqwest::Certificate::from_pem(root.pem().as_bytes()).expect("pem"),
            )
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .build()
            .expect("client")
    };
    let base = format!("https://localhost:{port}{API}");
    let c = client(&first);
    // Users over loopback.
    let r = c
        .put(format!("{base}/internalusers/e2e"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({ "password": "e2e-pw-1", "opendistro_security_roles": ["repository_read"] }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .get(format!("{base}/account"))
        .basic_auth("e2e", Some("e2e-pw-1"))
        .send()
        .await
        .expect("account");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["roles"], json!(["repository_read"]));
    let r = c
        .get(format!("{base}/internalusers"))
        .basic_auth("e2e", Some("e2e-pw-1"))
        .send()
        .await
        .expect("users");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Certificates.
    let r = c
        .get(format!("{base}/ssl/certs"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("certs");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    let cert = &v["http_certificates_list"][0];
    assert!(
        cert["san"].as_str().expect("san").contains("first.example"),
        "{v}"
    );
    assert!(
        cert["subject_dn"]
            .as_str()
            .expect("subject")
            .contains("CN="),
        "{v}"
    );
    assert!(
        cert["not_after"].as_str().expect("date").ends_with('Z'),
        "{v}"
    );
    assert_eq!(v["transport_certificates_list"], json!([]));
    let served = |r: &reqwest::Response| {
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
            .map(<[u8]>::to_vec)
            .expect("peer certificate")
    };
    let r = c
        .get(format!(
            "https://localhost:{port}/_plugins/_security/health"
        ))
        .send()
        .await
        .expect("health");
    assert_eq!(served(&r), first.der().to_vec());
    // A new certificate, reloaded without a restart: new connections get it.
    let second = write_cert("second.example");
    let r = c
        .put(format!("{base}/ssl/http/reloadcerts"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v,
        json!({ "status": "OK", "message": "updated http certs" })
    );
    let c2 = client(&second);
    let r = c2
        .get(format!(
            "https://localhost:{port}/_plugins/_security/health"
        ))
        .send()
        .await
        .expect("health");
    assert_eq!(served(&r), second.der().to_vec());
    // A broken certificate file is refused; the served one stays.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").expect("write");
    let r = c2
        .put(format!("{base}/ssl/http/reloadcerts"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let c3 = client(&second);
    let r = c3
        .get(format!(
            "https://localhost:{port}/_plugins/_security/health"
        ))
        .send()
        .await
        .expect("health");
    assert_eq!(served(&r), second.der().to_vec());
    s.stop().await;
}
