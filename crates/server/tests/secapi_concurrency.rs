//! Concurrent changes through the security REST API: conditional writes of the security
//! document mean one winner per generation and a 409 for the others, never a lost update.

mod harness;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use harness::*;
use serde_json::json;

const API: &str = "/_plugins/_security/api";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_puts_creating_one_user_give_exactly_one_201() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = std::sync::Arc::new(node(dir.path()).await);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            let r = n
                .admin(
                    Method::PUT,
                    &format!("{API}/internalusers/racer"),
                    json!({ "password": format!("racer-pw-{i}"), "backend_roles": [format!("b{i}")] })
                        .to_string(),
                )
                .await;
            (i, r)
        }));
    }
    let mut created = Vec::new();
    let mut updated = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (i, r) = t.await.expect("join");
        match r.status {
            StatusCode::CREATED => {
                assert_eq!(
                    r.json(),
                    json!({ "status": "CREATED", "message": "'racer' created." })
                );
                created.push(i);
            }
            StatusCode::OK => {
                assert_eq!(
                    r.json(),
                    json!({ "status": "OK", "message": "'racer' updated." })
                );
                updated.push(i);
            }
            StatusCode::CONFLICT => {
                assert_eq!(r.error_type(), "version_conflict_engine_exception");
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {r:?}"),
        }
    }
    assert_eq!(created.len(), 1, "created {created:?} updated {updated:?}");
    assert_eq!(created.len() + updated.len() + conflicts, 10);
    println!(
        "10 concurrent PUTs: 1 created, {} updated, {conflicts} conflicts",
        updated.len()
    );
    // The stored user is the last successful write's, whole: its password matches its roles.
    n.app.reload().await.expect("reload");
    let user = n.app.loaded().security.value.internalusers["racer"].clone();
    let winner: usize = user.backend_roles[0][1..].parse().expect("index");
    assert!(created.contains(&winner) || updated.contains(&winner));
    let r = n
        .call(
            Method::GET,
            &format!("{API}/account"),
            Some(("racer", &format!("racer-pw-{winner}"))),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_lose_no_update() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = std::sync::Arc::new(node(dir.path()).await);
    n.user("kirk", "kirk-pw-1", &[]).await;
    let mut applied = BTreeSet::new();
    // Several rounds, so that some patches are applied and some refused.
    for round in 0..3 {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let n = n.clone();
            let role = format!("r{round}-{i}");
            tasks.push(tokio::spawn(async move {
                let r = n
                    .admin(
                        Method::PATCH,
                        &format!("{API}/internalusers/kirk"),
                        json!([{ "op": "add", "path": "/backend_roles/-", "value": role }])
                            .to_string(),
                    )
                    .await;
                (role, r)
            }));
        }
        for t in tasks {
            let (role, r) = t.await.expect("join");
            match r.status {
                StatusCode::OK => {
                    applied.insert(role);
                }
                StatusCode::CONFLICT => {
                    assert_eq!(r.error_type(), "version_conflict_engine_exception");
                }
                other => panic!("unexpected {other}: {r:?}"),
            }
        }
    }
    assert!(!applied.is_empty());
    n.app.reload().await.expect("reload");
    let stored: BTreeSet<String> = n.app.loaded().security.value.internalusers["kirk"]
        .backend_roles
        .iter()
        .cloned()
        .collect();
    assert_eq!(
        stored, applied,
        "the stored roles are exactly those whose PATCH answered 200"
    );
    println!(
        "24 concurrent PATCHes: {} applied, the rest 409",
        applied.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_conflicting_patches_one_wins_one_409() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two nodes over one system repository, neither reloading on its own during the test.
    let a = node(dir.path()).await;
    let b = node(dir.path()).await;
    let r = a
        .admin(Method::PUT, &format!("{API}/tenants/t"), "{}")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // b still holds the generation before t: its change is refused rather than applied over a's.
    let r = b
        .admin(
            Method::PATCH,
            &format!("{API}/tenants"),
            json!([{ "op": "add", "path": "/u", "value": {} }]).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    b.app.reload().await.expect("reload");
    let r = b
        .admin(
            Method::PATCH,
            &format!("{API}/tenants"),
            json!([{ "op": "add", "path": "/u", "value": {} }]).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    a.app.reload().await.expect("reload");
    let names: Vec<String> = a
        .app
        .loaded()
        .security
        .value
        .tenants
        .keys()
        .cloned()
        .collect();
    assert_eq!(names, ["t", "u"]);
}
