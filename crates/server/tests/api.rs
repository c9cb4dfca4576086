//! Router tests without a socket: every endpoint and its error paths.

mod harness;

use axum::http::{Method, StatusCode, header};
use harness::{ADMIN_PASSWORD, node};
use serde_json::{Value, json};

#[tokio::test]
async fn health_needs_no_authentication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    let r = n
        .call(Method::GET, "/_plugins/_security/health", None, &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({ "message": null, "mode": "strict", "status": "UP" })
    );
}

#[tokio::test]
async fn root_challenges_and_answers_name_and_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    let r = n.call(Method::GET, "/", None, &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers[header::WWW_AUTHENTICATE],
        "Basic realm=\"OpenSearch Security\""
    );
    assert_eq!(r.error_type(), "security_exception");
    for (user, pw) in [
        ("admin", "wrong"),
        ("admin", ""),
        ("nobody", ADMIN_PASSWORD),
    ] {
        let r = n.call(Method::GET, "/", Some((user, pw)), &[], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{user}");
        assert!(!String::from_utf8_lossy(&r.body).contains(pw) || pw.is_empty());
    }
    let r = n
        .call(
            Method::GET,
            "/",
            None,
            &[("authorization", "Basic %%%")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = n.admin(Method::GET, "/", "").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["name"], "encrypt-repo");
    assert_eq!(v["version"]["number"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn authinfo_names_user_roles_and_tenants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    let v = n
        .admin(Method::GET, "/_plugins/_security/authinfo", "")
        .await
        .json();
    assert_eq!(v["user_name"], "admin");
    assert_eq!(v["roles"], json!(["all_access"]));
    assert_eq!(v["backend_roles"], json!([]));
    assert_eq!(v["tenants"]["global_tenant"], true);
    n.user("reader", "reader-pw-1", &["repository_read"]).await;
    let v = n
        .call(
            Method::GET,
            "/_plugins/_security/authinfo",
            Some(("reader", "reader-pw-1")),
            &[],
            "",
        )
        .await
        .json();
    assert_eq!(v["roles"], json!(["repository_read"]));
    assert_eq!(v["tenants"], json!({}));
}

#[tokio::test]
async fn repositories_register_read_reregister_and_unregister() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("r1").await;
    // Same request again: a no-op.
    n.register("r1").await;
    let v = n.admin(Method::GET, "/_snapshot/r1", "").await.json();
    assert_eq!(v["r1"]["type"], "fs");
    assert_eq!(v["r1"]["encrypted"], true);
    assert_eq!(v["r1"]["crypto_settings"]["key_provider_type"], "local");
    n.register("r2").await;
    let v = n.admin(Method::GET, "/_snapshot", "").await.json();
    let names: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
    assert_eq!(names, ["r1", "r2"]);

    // A changed crypto setting: 400 naming the field. The location is the same, so the
    // repository's own registration refuses it.
    let mut body = n.repo_body("r1");
    body["crypto_settings"]["key_provider_name"] = json!("other");
    let r = n
        .admin(Method::PUT, "/_snapshot/r1", body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.reason().contains("crypto_settings.key_provider_name"),
        "{}",
        r.reason()
    );
    // Registering the same location under another name with other crypto settings: also 400.
    let r = n
        .admin(Method::PUT, "/_snapshot/r1bis", body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.reason().contains("crypto_settings.key_provider_name"),
        "{}",
        r.reason()
    );
    let mut body = n.repo_body("r1");
    body["encrypted"] = json!(false);
    body.as_object_mut()
        .expect("object")
        .remove("crypto_settings");
    let r = n
        .admin(Method::PUT, "/_snapshot/r1", body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.reason().contains("encrypted"), "{}", r.reason());
    // A changed location under the same name.
    let body = n.repo_body("elsewhere");
    let r = n
        .admin(Method::PUT, "/_snapshot/r1", body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.reason().contains("settings.location"), "{}", r.reason());

    let r = n.admin(Method::DELETE, "/_snapshot/r1", "").await;
    assert_eq!(r.json(), json!({ "acknowledged": true }));
    let r = n.admin(Method::GET, "/_snapshot/r1", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "repository_missing_exception");
    let r = n.admin(Method::DELETE, "/_snapshot/r1", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Unregistering keeps the data: registering again finds the same repository.
    n.register("r1").await;
}

#[tokio::test]
async fn repository_requests_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    let good = n.repo_body("x").to_string();
    let long = "x".repeat(256);
    for name in ["_x", ".x", "a%20b", "a%2Fb", long.as_str()] {
        let r = n
            .admin(Method::PUT, &format!("/_snapshot/{name}"), good.clone())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}");
    }
    let r = n.admin(Method::PUT, "/_snapshot/x", "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_type(), "parse_exception");
    let mut body = n.repo_body("x");
    body["colour"] = json!("blue");
    let r = n.admin(Method::PUT, "/_snapshot/x", body.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.reason().contains("colour"), "{}", r.reason());
    let mut body = n.repo_body("x");
    body["settings"]["location"] = json!("/etc");
    let r = n.admin(Method::PUT, "/_snapshot/x", body.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.reason().contains("fs_roots"), "{}", r.reason());
    assert!(!r.reason().contains(dir.path().to_str().expect("utf-8")));
    let mut body = n.repo_body("x");
    body["type"] = json!("hdfs");
    let r = n.admin(Method::PUT, "/_snapshot/x", body.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut body = n.repo_body("x");
    body["crypto_settings"]["key_provider_type"] = json!("no-such-kms");
    let r = n.admin(Method::PUT, "/_snapshot/x", body.to_string()).await;
    assert!(
        r.status.is_client_error() || r.status == StatusCode::BAD_GATEWAY,
        "{r:?}"
    );
    let mut body = n.repo_body("x");
    body["crypto_settings"]["settings"]["secret_token"] = json!("hunter2");
    let r = n.admin(Method::PUT, "/_snapshot/x", body.to_string()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.reason().contains("crypto_settings.settings.secret_token"),
        "{}",
        r.reason()
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("hunter2"));
    // Nothing was registered by the refused requests.
    assert_eq!(
        n.admin(Method::GET, "/_snapshot", "").await.json(),
        json!({})
    );
}

#[tokio::test]
async fn verify_writes_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("v").await;
    let r = n.admin(Method::POST, "/_snapshot/v/_verify", "").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.json()["nodes"].is_object());
    let r = n
        .admin(Method::POST, "/_snapshot/missing/_verify", "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Nothing left behind.
    let v = n
        .admin(Method::GET, "/_snapshot/v/_objects", "")
        .await
        .json();
    assert_eq!(v["objects"], json!([]));
}

#[tokio::test]
async fn objects_put_get_range_head_list_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("o").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = n
        .admin(Method::PUT, "/_snapshot/o/_objects/dir/a.bin", data.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json()["size"], data.len());
    for p in ["dir/b.txt", "dir/sub/c.txt", "top.txt", "dirx/d.txt"] {
        let r = n
            .admin(
                Method::PUT,
                &format!("/_snapshot/o/_objects/{p}"),
                p.to_owned(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }

    let r = n
        .admin(Method::GET, "/_snapshot/o/_objects/dir/a.bin", "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[header::CONTENT_LENGTH],
        data.len().to_string().as_str()
    );
    assert_eq!(r.body.as_ref(), data.as_slice());

    for (range, start, end) in [
        ("bytes=2-5", 2usize, 6usize),
        ("bytes=299990-", 299_990, 300_000),
        ("bytes=-7", 299_993, 300_000),
        ("bytes=65530-131080", 65_530, 131_081),
    ] {
        let r = n
            .call(
                Method::GET,
                "/_snapshot/o/_objects/dir/a.bin",
                Some(("admin", ADMIN_PASSWORD)),
                &[("range", range)],
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.body.as_ref(), &data[start..end], "{range}");
        assert_eq!(
            r.headers[header::CONTENT_RANGE],
            format!("bytes {start}-{}/300000", end - 1).as_str()
        );
    }
    for bad in [
        "bytes=5-2",
        "bytes=1-2,4-5",
        "items=1-2",
        "bytes=-",
        "bytes=400000-",
        "bytes=18446744073709551615-",
        "bytes=0-18446744073709551614",
    ] {
        let r = n
            .call(
                Method::GET,
                "/_snapshot/o/_objects/dir/a.bin",
                Some(("admin", ADMIN_PASSWORD)),
                &[("range", bad)],
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}: {r:?}");
        r.error_type();
    }

    let r = n
        .admin(Method::HEAD, "/_snapshot/o/_objects/dir/a.bin", "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_LENGTH], "300000");
    assert!(r.body.is_empty());

    let v = n
        .admin(Method::GET, "/_snapshot/o/_objects?prefix=dir/", "")
        .await
        .json();
    let paths: Vec<_> = v["objects"]
        .as_array()
        .expect("array")
        .iter()
        .map(|o| o["path"].as_str().expect("path").to_owned())
        .collect();
    assert_eq!(paths, ["dir/a.bin", "dir/b.txt", "dir/sub/c.txt"]);
    let v = n
        .admin(
            Method::GET,
            "/_snapshot/o/_objects?prefix=dir&delimiter=/",
            "",
        )
        .await
        .json();
    assert_eq!(v["common_prefixes"], json!(["dir/", "dirx/"]));
    assert_eq!(v["objects"], json!([]));
    let v = n
        .admin(Method::GET, "/_snapshot/o/_objects?delimiter=/", "")
        .await
        .json();
    assert_eq!(v["objects"][0]["path"], "top.txt");
    assert_eq!(v["objects"][0]["size"], 7);
    let v = n
        .admin(Method::GET, "/_snapshot/o/_objects", "")
        .await
        .json();
    assert_eq!(
        v["objects"].as_array().expect("array").len(),
        5,
        "reserved prefix hidden"
    );
    let r = n
        .admin(Method::GET, "/_snapshot/o/_objects?delimiter=%7C", "")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = n
        .admin(Method::GET, "/_snapshot/o/_objects?max=3", "")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.error_type();

    let r = n
        .admin(Method::DELETE, "/_snapshot/o/_objects/dir/b.txt", "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    for m in [Method::GET, Method::DELETE] {
        let r = n
            .admin(m.clone(), "/_snapshot/o/_objects/dir/b.txt", "")
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m}");
        assert_eq!(r.error_type(), "resource_not_found_exception");
    }
    let r = n
        .admin(Method::HEAD, "/_snapshot/o/_objects/dir/b.txt", "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = n.admin(Method::GET, "/_snapshot/nope/_objects/x", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "repository_missing_exception");
}

#[tokio::test]
async fn object_paths_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("p").await;
    for p in [
        ".encrypt-repo/registration.json",
        ".encrypt-repo/keyring/x",
        "a//b",
        "a/../b",
        "a/./b",
    ] {
        for m in [Method::PUT, Method::GET, Method::DELETE] {
            let r = n
                .admin(m.clone(), &format!("/_snapshot/p/_objects/{p}"), "x")
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{m} {p}: {r:?}");
            r.error_type();
        }
    }
    // The registration was not overwritten.
    let r = n
        .admin(Method::PUT, "/_snapshot/p/_objects/ok", "fine")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn keys_list_rotate_rewrap_and_shred() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("k").await;
    n.admin(Method::PUT, "/_snapshot/k/_objects/one", "first")
        .await;
    let v = n.admin(Method::GET, "/_snapshot/k/_keys", "").await.json();
    assert_eq!(v["encrypted"], true);
    assert_eq!(v["locked"], false);
    assert_eq!(v["provider"]["type"], "local");
    assert_eq!(v["data_keys"].as_array().expect("keys").len(), 1);
    let first = v["data_keys"][0]["id"].as_str().expect("id").to_owned();

    let r = n
        .admin(Method::POST, "/_snapshot/k/_keys/_rotate", "")
        .await;
    assert_eq!(r.json(), json!({ "acknowledged": true }));
    n.admin(Method::PUT, "/_snapshot/k/_objects/two", "second")
        .await;
    let v = n.admin(Method::GET, "/_snapshot/k/_keys", "").await.json();
    assert_eq!(v["data_keys"].as_array().expect("keys").len(), 2);

    let old_key = n.key_file("k");
    let body = json!({ "crypto_settings": {
        "key_provider_name": "main", "key_provider_type": "local", "settings": {} } });
    let r = n
        .admin(Method::POST, "/_snapshot/k/_keys/_rewrap", body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json()["rewrapped"], 2);
    // A re-wrap to a local provider makes a new key; the old key file is no longer needed.
    let new_key = n.key_file("k");
    assert_ne!(new_key, old_key);
    std::fs::remove_file(&old_key).expect("remove old key");
    let r = n.admin(Method::GET, "/_snapshot/k/_objects/one", "").await;
    assert_eq!(r.body.as_ref(), b"first");
    let v = n.admin(Method::GET, "/_snapshot/k", "").await.json();
    // Where the server keeps key files is not the caller's business.
    assert_eq!(v["k"]["crypto_settings"]["settings"], json!({}), "{v}");

    for bad in [
        json!({}),
        json!({ "data_key_id": "zz" }),
        json!({ "data_key_id": first, "all": true }),
    ] {
        let r = n
            .admin(Method::POST, "/_snapshot/k/_keys/_shred", bad.to_string())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = n
        .admin(
            Method::POST,
            "/_snapshot/k/_keys/_shred",
            json!({ "data_key_id": "00000000000000000000000000000000" }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = n
        .admin(
            Method::POST,
            "/_snapshot/k/_keys/_shred",
            json!({ "data_key_id": first }).to_string(),
        )
        .await;
    assert_eq!(r.json()["shredded"], 1);
    let r = n.admin(Method::GET, "/_snapshot/k/_objects/one", "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error_type(), "verification_exception");
    let r = n.admin(Method::GET, "/_snapshot/k/_objects/two", "").await;
    assert_eq!(r.body.as_ref(), b"second");
    let r = n
        .admin(
            Method::POST,
            "/_snapshot/k/_keys/_shred",
            json!({ "all": true }).to_string(),
        )
        .await;
    assert_eq!(r.json()["shredded"], 1);
    let r = n.admin(Method::GET, "/_snapshot/k/_objects/two", "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = n.admin(Method::GET, "/_snapshot/k/_keys", "").await.json();
    assert!(
        v["data_keys"]
            .as_array()
            .expect("keys")
            .iter()
            .all(|k| k["shredded_unix"].is_u64())
    );
}

#[tokio::test]
async fn a_lost_update_is_a_409_not_an_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two nodes over one system repository that do not reload on their own during the test.
    let a = node(dir.path()).await;
    let b = node(dir.path()).await;
    a.user("alice", "alice-pw-1", &[]).await;
    // b still holds the generation before alice: its change is refused, not applied over hers.
    let r = b
        .admin(
            Method::PUT,
            "/_plugins/_security/api/internalusers/bob",
            json!({ "password": "bob-pw-1" }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "version_conflict_engine_exception");
    let r = b
        .admin(Method::PUT, "/_snapshot/z", b.repo_body("z").to_string())
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the registrations are a document of their own"
    );
    // One document per repository: a registers y without having seen z.
    a.register("y").await;
    // But b, which has not seen y, cannot register y over a's.
    let r = b
        .admin(Method::PUT, "/_snapshot/y", b.repo_body("y2").to_string())
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(r.error_type(), "version_conflict_engine_exception");
    // After a reload, b sees alice and can write.
    b.app.reload().await.expect("reload");
    let r = b
        .call(
            Method::GET,
            "/_plugins/_security/authinfo",
            Some(("alice", "alice-pw-1")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    b.user("bob", "bob-pw-1", &[]).await;
    a.app.reload().await.expect("reload");
    let names: Vec<String> = a
        .app
        .loaded()
        .security
        .value
        .internalusers
        .keys()
        .cloned()
        .collect();
    assert_eq!(names, ["admin", "alice", "bob"]);
    let regs: Vec<String> = a.app.loaded().registrations.value.keys().cloned().collect();
    assert_eq!(regs, ["y", "z"]);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    let r = n.admin(Method::GET, "/_cat/indices", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.error_type();
    let r = n
        .admin(Method::PUT, "/_snapshot/x", vec![b' '; 3 << 20])
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    r.error_type();
    let r = n.admin(Method::GET, "/_snapshot/%FF%FE", "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.error_type();
    let r = n.admin(Method::PATCH, "/_snapshot/x", "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    r.error_type();
}
