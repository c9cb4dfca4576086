//! The OpenAPI document (`GET /_openapi.json`): it is OpenAPI 3 and survives a round trip
//! through utoipa's types; every documented operation reaches a handler of the router (none
//! falls through to the "no handler" fallback) and every known route is documented; operation
//! ids are unique and every `$ref` resolves; the document is served without authentication;
//! the schema types accept what the server reads and sends.

mod harness;

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode};
use encrypt_repo_server::error::ErrorBody;
use encrypt_repo_server::openapi::{self, openapi};
use harness::node;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Every route the service had when this list was written, as (method, OpenAPI path). The
/// document may hold more (routes merged from other modules); it may not hold fewer.
const KNOWN: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/_openapi.json"),
    ("get", "/_plugins/_security/health"),
    ("get", "/_plugins/_security/authinfo"),
    ("get", "/_snapshot"),
    ("get", "/_snapshot/"),
    ("get", "/_snapshot/{repo}"),
    ("put", "/_snapshot/{repo}"),
    ("delete", "/_snapshot/{repo}"),
    ("post", "/_snapshot/{repo}/_verify"),
    ("get", "/_snapshot/{repo}/_objects"),
    ("put", "/_snapshot/{repo}/_objects/{path}"),
    ("get", "/_snapshot/{repo}/_objects/{path}"),
    ("head", "/_snapshot/{repo}/_objects/{path}"),
    ("delete", "/_snapshot/{repo}/_objects/{path}"),
    ("get", "/_snapshot/{repo}/_keys"),
    ("post", "/_snapshot/{repo}/_keys/_rotate"),
    ("post", "/_snapshot/{repo}/_keys/_rewrap"),
    ("post", "/_snapshot/{repo}/_keys/_shred"),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::to_value(openapi()).expect("the document serializes")
}

/// (method, path, operation) of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        for m in METHODS {
            if let Some(op) = item.get(*m) {
                out.push(((*m).to_owned(), path.clone(), op.clone()));
            }
        }
    }
    out
}

#[test]
fn document_is_openapi_3_and_round_trips_through_utoipa() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    let back: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("parses as utoipa's OpenApi");
    assert_eq!(serde_json::to_value(back).expect("serializes"), doc);

    assert_eq!(doc["info"]["title"], "encrypt-repo");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["basic"],
        json!({ "type": "http", "scheme": "basic" })
    );
    assert_eq!(
        schemes["bearer"],
        json!({ "type": "http", "scheme": "bearer", "bearerFormat": "JWT" })
    );
    assert_eq!(doc["security"], json!([{ "basic": [] }, { "bearer": [] }]));

    let ops = operations(&doc);
    let present: BTreeSet<(String, String)> =
        ops.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    for (m, p) in KNOWN {
        assert!(
            present.contains(&((*m).to_owned(), (*p).to_owned())),
            "{m} {p} is not documented"
        );
    }
    // No axum syntax left in the document.
    assert!(
        ops.iter()
            .all(|(_, p, _)| !p.contains('*') && !p.contains(':'))
    );
}

#[test]
fn operations_say_their_statuses_parameters_and_security() {
    let doc = document();
    let public = ["/_openapi.json", "/_plugins/_security/health"];
    for (m, p, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or("?");
        let responses = op["responses"].as_object().expect("responses");
        // Seed endpoints with no meaning here (nodesdn, allowlist, transport certificates)
        // only ever refuse, and say so.
        let text = format!("{} {}", op["summary"], op["description"]);
        let unsupported = text.contains("Not supported") || text.contains("not supported");
        assert!(
            unsupported || responses.keys().any(|s| s.starts_with('2')),
            "{m} {p}: no success status"
        );
        for (status, r) in responses {
            assert!(r["description"].as_str().is_some_and(|d| !d.is_empty()));
            // The one error body of another shape: the audit API's 409 for a read-only field,
            // which answers as OpenSearch does (`{"status", "reason", "invalid_keys"}`).
            let audit_conflict = p.starts_with("/_plugins/_security/api/audit") && status == "409";
            if (status.starts_with('4') || status.starts_with('5')) && !audit_conflict {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{m} {p} {status}"
                );
            }
        }
        if public.contains(&p.as_str()) {
            assert_eq!(op["security"], json!([{}]), "{m} {p} is public");
        } else {
            assert!(
                op.get("security").is_none(),
                "{m} {p}: the global security applies"
            );
            assert!(responses.contains_key("401"), "{m} {p} ({id}): no 401");
        }
        // Every `{name}` of the path is a required path parameter, and nothing else is.
        let names: BTreeSet<&str> = p
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let params: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|x| x["in"] == "path")
            .map(|x| {
                assert_eq!(x["required"], true);
                x["name"].as_str().expect("name")
            })
            .collect();
        assert_eq!(names, params, "{m} {p}");
    }
    let ops = operations(&doc);
    let op = |m: &str, p: &str| {
        ops.iter()
            .find(|(om, op, _)| om == m && op == p)
            .map(|(_, _, o)| o.clone())
            .expect("operation")
    };
    let get_object = op("get", "/_snapshot/{repo}/_objects/{path}");
    let statuses: BTreeSet<&str> = get_object["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(String::as_str)
        .collect();
    for s in [
        "200", "206", "400", "401", "403", "404", "416", "422", "500", "502", "503",
    ] {
        assert!(statuses.contains(s), "GET object lacks {s}");
    }
    assert_eq!(
        get_object["responses"]["206"]["content"]["application/octet-stream"]["schema"]["$ref"],
        "#/components/schemas/ObjectBytes"
    );
    assert!(
        get_object["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|x| x["in"] == "header" && x["name"] == "Range")
    );
    let put_object = op("put", "/_snapshot/{repo}/_objects/{path}");
    assert!(
        put_object["requestBody"]["content"]
            .get("application/octet-stream")
            .is_some()
    );
    assert_eq!(
        doc["components"]["schemas"]["ObjectBytes"]["format"],
        "binary"
    );
    let list = op("get", "/_snapshot/{repo}/_objects");
    let query: BTreeSet<&str> = list["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|x| x["in"] == "query")
        .map(|x| x["name"].as_str().expect("name"))
        .collect();
    assert_eq!(query, BTreeSet::from(["prefix", "delimiter"]));
    let register = op("put", "/_snapshot/{repo}");
    assert_eq!(
        register["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/RegistrationRequest"
    );
    let reg = &doc["components"]["schemas"]["RegistrationRequest"];
    for field in [
        "type",
        "settings",
        "encrypted",
        "crypto_settings",
        "chunk_size",
        "escrow",
    ] {
        assert!(reg["properties"].get(field).is_some(), "{field}");
    }
    assert_eq!(reg["additionalProperties"], false);
}

#[test]
fn operation_ids_are_unique_and_every_ref_resolves() {
    let doc = document();
    let mut seen = BTreeMap::new();
    for (m, p, op) in operations(&doc) {
        let id = op["operationId"].as_str().expect("operationId").to_owned();
        if let Some(other) = seen.insert(id.clone(), format!("{m} {p}")) {
            panic!("operationId {id} of {m} {p} is also {other}'s");
        }
    }
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

/// The OpenAPI path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{repo}", "main")
        .replace("{path}", "docs/readme.txt")
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("main").await;
    // What the fallbacks answer, so that "reached a handler" means something.
    let r = n.admin(Method::GET, "/_no_such_path", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let fallback = r.reason();
    assert_eq!(fallback, "no handler for this method and path");
    let r = n
        .admin(Method::PATCH, "/_snapshot/main/_objects/a", "")
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_type(), "method_not_allowed_exception");

    let ops = operations(&document());
    assert!(ops.len() >= KNOWN.len());
    // Deleting the repository last keeps the others meaningful.
    let mut ops: Vec<_> = ops.into_iter().map(|(m, p, _)| (m, p)).collect();
    ops.sort_by_key(|(m, p)| m == "delete" && p == "/_snapshot/{repo}");
    for (m, p) in ops {
        let method = Method::from_bytes(m.to_uppercase().as_bytes()).expect("method");
        let uri = concrete(&p);
        let body = if m == "put" && p == "/_snapshot/{repo}" {
            n.repo_body("main").to_string()
        } else {
            "{}".to_owned()
        };
        let r = n.admin(method, &uri, body).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {uri}: {r:?}");
        if r.status == StatusCode::NOT_FOUND && m != "head" {
            assert_ne!(r.reason(), fallback, "{m} {uri} has no handler");
        }
        assert!(!r.status.is_server_error(), "{m} {uri}: {r:?}");
    }
}

#[tokio::test]
async fn the_document_is_served_without_authentication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    let r = n.call(Method::GET, "/_openapi.json", None, &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.json(), document());
    // Wrong credentials do not matter either: nothing is checked.
    let r = n
        .call(
            Method::GET,
            "/_openapi.json",
            Some(("admin", "wrong")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // …whereas the API itself still needs them.
    let r = n.call(Method::GET, "/_snapshot", None, &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_type(), "security_exception");
    // The document names no user, repository, path or key of this node.
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let served = String::from_utf8_lossy(
        &n.call(Method::GET, "/_openapi.json", None, &[], "")
            .await
            .body,
    )
    .into_owned();
    assert!(
        !served.contains(dir.path().to_str().expect("utf-8")),
        "{text}"
    );
    assert!(!served.contains(harness::ADMIN_PASSWORD));
}

/// `value` as `T` (the schema types deny unknown fields), or a panic naming `what`.
fn conforms<T: DeserializeOwned>(what: &str, value: &Value) -> T {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what} does not match its schema type: {e}: {value}"))
}

#[test]
fn schema_types_mirror_the_types_of_other_crates() {
    use encrypt_repo_store as store;
    // The examples of the document parse as the real types.
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let _: store::RegistrationRequest = conforms(
        "RegistrationRequest example",
        &schemas["RegistrationRequest"]["example"],
    );
    let _: store::CryptoSettings = conforms(
        "CryptoSettings example",
        &schemas["CryptoSettings"]["example"],
    );
    let _: ErrorBody = conforms("ErrorBody example", &schemas["ErrorBody"]["example"]);
    // A registration with every field, both ways.
    let crypto = json!({ "key_provider_name": "m", "key_provider_type": "local",
        "settings": { "key_file": "/k" } });
    let full = json!({
        "type": "s3", "settings": { "bucket": "b" }, "encrypted": true,
        "crypto_settings": crypto, "chunk_size": 65536, "escrow": [crypto],
        "path_binding": false,
    });
    let real: store::RegistrationRequest = conforms("a full registration", &full);
    let mirror: openapi::RegistrationRequest = conforms(
        "a full registration",
        &serde_json::to_value(&real).expect("json"),
    );
    let again: store::RegistrationRequest = conforms(
        "the mirror's registration",
        &serde_json::to_value(&mirror).expect("json"),
    );
    assert_eq!(again, real);
    // Data keys and re-wrap reports, as the store serializes them.
    let info = store::DataKeyInfo {
        id: "00".repeat(16),
        created_unix: 1,
        shredded_unix: Some(2),
        wrapped_by: vec![("local".into(), "fp".into())],
        rewrap_pending: false,
    };
    let _: openapi::DataKey = conforms("DataKeyInfo", &serde_json::to_value(&info).expect("json"));
    let report = store::RewrapReport {
        rewrapped: 3,
        shredded: 0,
        from: "local:a".into(),
        to: "local:b".into(),
    };
    let _: openapi::RewrapReport = conforms(
        "RewrapReport",
        &serde_json::to_value(&report).expect("json"),
    );
    // Error bodies.
    let e = encrypt_repo_server::ApiError::repository_missing("x");
    let body: ErrorBody = conforms("an error", &e.body());
    assert_eq!(body, e.error_body());
}

#[tokio::test]
async fn answers_match_their_schema_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("main").await;
    let get = |uri: &'static str| n.admin(Method::GET, uri, "");

    let _: openapi::RootInfo = conforms("GET /", &get("/").await.json());
    let _: openapi::Health = conforms("health", &get("/_plugins/_security/health").await.json());
    let _: openapi::AuthInfo = conforms(
        "authinfo",
        &get("/_plugins/_security/authinfo").await.json(),
    );
    let all: BTreeMap<String, openapi::RegistrationRequest> =
        conforms("GET /_snapshot", &get("/_snapshot").await.json());
    assert!(all.contains_key("main"));
    let _: BTreeMap<String, openapi::RegistrationRequest> =
        conforms("GET /_snapshot/main", &get("/_snapshot/main").await.json());
    let _: openapi::Verified = conforms(
        "verify",
        &n.admin(Method::POST, "/_snapshot/main/_verify", "")
            .await
            .json(),
    );

    let r = n
        .admin(
            Method::PUT,
            "/_snapshot/main/_objects/docs/readme.txt",
            "hello",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let w: openapi::ObjectWritten = conforms("PUT object", &r.json());
    assert_eq!((w.path.as_str(), w.size), ("docs/readme.txt", 5));
    let l: openapi::ObjectList = conforms("list", &get("/_snapshot/main/_objects").await.json());
    assert_eq!(l.objects.len(), 1);
    let l: openapi::ObjectList = conforms(
        "list with a delimiter",
        &get("/_snapshot/main/_objects?delimiter=/").await.json(),
    );
    // (Verify's emptied test directory may be listed too on an fs repository.)
    assert!(l.common_prefixes.contains(&"docs/".to_owned()), "{l:?}");
    assert!(l.objects.is_empty(), "{l:?}");
    let r = get("/_snapshot/main/_objects/docs/readme.txt").await;
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    let keys: openapi::Keys = conforms("keys", &get("/_snapshot/main/_keys").await.json());
    assert_eq!(keys.data_keys.len(), 1);
    let _: openapi::Acknowledged = conforms(
        "rotate",
        &n.admin(Method::POST, "/_snapshot/main/_keys/_rotate", "")
            .await
            .json(),
    );
    let body = json!({ "crypto_settings": { "key_provider_name": "next", "key_provider_type": "local",
        "settings": {} } });
    let r = n
        .admin(
            Method::POST,
            "/_snapshot/main/_keys/_rewrap",
            body.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let _: openapi::RewrapReport = conforms("rewrap", &r.json());
    let r = n
        .admin(
            Method::POST,
            "/_snapshot/main/_keys/_shred",
            json!({ "data_key_id": keys.data_keys[0].id }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let _: openapi::Shredded = conforms("shred", &r.json());
    let _: openapi::ObjectDeleted = conforms(
        "DELETE object",
        &n.admin(
            Method::DELETE,
            "/_snapshot/main/_objects/docs/readme.txt",
            "",
        )
        .await
        .json(),
    );
    let _: openapi::Acknowledged = conforms(
        "DELETE repository",
        &n.admin(Method::DELETE, "/_snapshot/main", "").await.json(),
    );
    let _: ErrorBody = conforms("an error", &get("/_snapshot/main").await.json());
}

/// Found by schemathesis: a key file named in crypto_settings that cannot be created was a
/// 502 ("the key provider failed"). A request may no longer name a key file at all: a 400 that
/// names the field but neither the file nor any I/O error.
#[tokio::test]
async fn a_key_file_that_cannot_be_created_is_a_client_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path()).await;
    n.register("main").await;
    let missing = dir.path().join("no-such-dir/next.key");
    let crypto = json!({ "key_provider_name": "next", "key_provider_type": "local",
        "settings": { "key_file": missing.to_str().expect("utf-8") } });
    let r = n
        .admin(
            Method::POST,
            "/_snapshot/main/_keys/_rewrap",
            json!({ "crypto_settings": crypto }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.error_type(), "repository_exception");
    assert!(r.reason().contains("crypto_settings"), "{}", r.reason());
    assert!(!r.reason().contains("no-such-dir"), "{}", r.reason());
    let mut body = n.repo_body("other");
    body["crypto_settings"] = crypto;
    let r = n
        .admin(Method::PUT, "/_snapshot/other", body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(!r.reason().contains("no-such-dir"), "{}", r.reason());
    // The repository still answers with its own key.
    let r = n.admin(Method::GET, "/_snapshot/main/_keys", "").await;
    assert_eq!(r.status, StatusCode::OK);
}
