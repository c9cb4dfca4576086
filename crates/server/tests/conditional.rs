//! Conditional object requests (`If-Match`, `If-None-Match`) on an `fs` repository and on an
//! `s3` repository in moto. The moto test fails, with the command to start it, when
//! `ENCRYPT_REPO_TEST_S3_ENDPOINT` is unset or does not answer: it never passes silently.

mod harness;

use axum::http::{Method, StatusCode};
use harness::{Node, Reply, node};
use serde_json::{Value, json};

const START: &str = "bash tests/services.sh start && source target/services.env";

fn etag(r: &Reply) -> String {
    r.headers
        .get("etag")
        .unwrap_or_else(|| panic!("no ETag: {r:?}"))
        .to_str()
        .expect("ascii")
        .to_owned()
}

async fn req(n: &Node, m: Method, uri: &str, h: &[(&str, &str)], body: &'static str) -> Reply {
    n.call(m, uri, Some(("admin", harness::ADMIN_PASSWORD)), h, body)
        .await
}

/// What every backend does; `updates`: whether it has conditional updates (If-Match on PUT).
async fn exercise(n: &Node, repo: &str, updates: bool) {
    let obj = format!("/_snapshot/{repo}/_objects/dir/marker");
    let obj = obj.as_str();

    // Create only.
    let r = req(n, Method::PUT, obj, &[("if-none-match", "*")], "one").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let e1 = etag(&r);
    let r = req(n, Method::PUT, obj, &[("if-none-match", "*")], "two").await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{r:?}");
    assert_eq!(r.error_type(), "precondition_failed");
    let r = req(n, Method::GET, obj, &[], "").await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"one"[..]));
    assert_eq!(etag(&r), e1, "GET gives the ETag the PUT gave");

    // GET and HEAD honour the conditions.
    let r = req(n, Method::GET, obj, &[("if-none-match", &e1)], "").await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(etag(&r), e1);
    let r = req(n, Method::GET, obj, &[("if-match", &e1)], "").await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"one"[..]));
    let r = req(n, Method::GET, obj, &[("if-match", "\"nope\"")], "").await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{r:?}");
    assert_eq!(r.error_type(), "precondition_failed");
    let r = req(n, Method::GET, obj, &[("if-none-match", "\"nope\"")], "").await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"one"[..]));
    let r = req(n, Method::HEAD, obj, &[("if-none-match", &e1)], "").await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{r:?}");
    let r = req(n, Method::HEAD, obj, &[("if-match", "\"nope\"")], "").await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{r:?}");
    let r = req(n, Method::HEAD, obj, &[("if-match", &e1)], "").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.headers["content-length"], "3", "plaintext length");
    assert_eq!(etag(&r), e1);

    // Malformed conditions on PUT.
    let r = req(
        n,
        Method::PUT,
        obj,
        &[("if-match", &e1), ("if-none-match", "*")],
        "x",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let r = req(n, Method::PUT, obj, &[("if-none-match", &e1)], "x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.reason().contains("only *"), "{}", r.reason());

    if updates {
        // Update only the version read.
        let r = req(n, Method::PUT, obj, &[("if-match", &e1)], "three").await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        let e2 = etag(&r);
        assert_ne!(e1, e2);
        let r = req(n, Method::PUT, obj, &[("if-match", &e1)], "lost").await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{r:?}");
        let r = req(n, Method::GET, obj, &[], "").await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"three"[..]));
        assert_eq!(etag(&r), e2);
        // If-Match: * replaces an existing object only.
        let r = req(n, Method::PUT, obj, &[("if-match", "*")], "four").await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        let missing = format!("/_snapshot/{repo}/_objects/dir/absent");
        let r = req(n, Method::PUT, &missing, &[("if-match", "*")], "x").await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{r:?}");
        let r = req(n, Method::PUT, &missing, &[("if-match", &e2)], "x").await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{r:?}");
        let r = req(n, Method::GET, &missing, &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    } else {
        let r = req(n, Method::PUT, obj, &[("if-match", &e1)], "three").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
        assert!(
            r.reason().contains("type fs") && r.reason().contains("If-Match"),
            "{}",
            r.reason()
        );
        let r = req(n, Method::GET, obj, &[], "").await;
        assert_eq!(&r.body[..], b"one", "unchanged");
    }

    // An unconditional PUT streams and moves the ETag on; the old one no longer matches.
    let r = req(n, Method::PUT, obj, &[], "five").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let e3 = etag(&r);
    let r = req(n, Method::GET, obj, &[("if-match", &e1)], "").await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{r:?}");
    let r = req(n, Method::GET, obj, &[("if-match", &e3)], "").await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"five"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_on_fs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("local").await;
    exercise(&n, "local", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests_on_s3_moto() {
    let endpoint = match std::env::var("ENCRYPT_REPO_TEST_S3_ENDPOINT") {
        Ok(v) if !v.trim().is_empty() => v.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "ENCRYPT_REPO_TEST_S3_ENDPOINT is not set, so there is no S3 to test against (this test never skips). From the repository root run\n\n    {START}\n"
        ),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let bucket = format!("cond-{nanos}");
    // moto takes an unsigned CreateBucket; the canned ACL lets the server's unsigned requests
    // (skip_signature: credentials are never repository settings, and tests cannot set the
    // server's environment) read and write.
    let created = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .put(format!("{endpoint}/{bucket}"))
        .header("x-amz-acl", "public-read-write")
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("moto does not answer at {endpoint} ({e}); start it with\n\n    {START}\n")
        });
    assert!(created.status().is_success(), "CreateBucket: {created:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    // How the node reaches the bucket is the operator's: a declared storage backend.
    let storage = json!({ "type": "s3", "endpoint": endpoint, "allow_http": true,
        "region": "us-east-1", "skip_signature": true, "allowed": ["cond-*"] });
    let yaml = harness::with_storage(
        &harness::config_yaml(dir.path(), 3600, ""),
        "moto",
        &storage,
    );
    let n = harness::node_in(dir.path(), &yaml).await;
    let body: Value = json!({
        "type": "s3",
        "settings": { "bucket": bucket },
        "encrypted": true,
        "crypto_settings": { "key_provider_name": "main", "key_provider_type": "local",
            "settings": {} }
    });
    let r = n
        .admin(Method::PUT, "/_snapshot/cloud", body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?} (is moto running? {START})");
    exercise(&n, "cloud", true).await;
}
