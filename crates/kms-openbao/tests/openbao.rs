//! The `openbao` provider against a real OpenBao dev server (`bash tests/services.sh start`), and
//! against tiny fake servers that answer garbage.
//!
//! Each test makes its own transit keys (random names) through the HTTP API with the root token,
//! so tests run in parallel and again on the same server.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use encrypt_repo_format::{DataKey, DataKeyId, RepositoryId};
use encrypt_repo_keys::{
    Error, KeyProvider, KeyStatus, ProviderFactory, ProviderRegistry, Settings, WrapContext,
    WrappedKey,
};
use encrypt_repo_kms_openbao::{OpenBaoFactory, OpenBaoProvider};
use serde_json::{Value, json};

mod support;

use support::*;

fn ctx(repo: u8, dek: u8) -> WrapContext {
    WrapContext {
        repository_id: RepositoryId([repo; 16]),
        data_key_id: DataKeyId([dek; 16]),
    }
}

fn version_of(w: &WrappedKey) -> String {
    let s = std::str::from_utf8(&w.ciphertext).expect("ascii");
    s.split(':').nth(1).expect("vault:vN:").to_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Neither the token nor the key bytes (hex or base64) appear in `text`.
fn assert_clean(text: &str, token: &str, key: &DataKey) {
    use base64::Engine as _;
    let k = key.expose_secret();
    assert!(!text.contains(token), "token in {text:?}");
    assert!(!text.contains(&hex(k)), "key bytes (hex) in {text:?}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(k);
    assert!(!text.contains(&b64), "key bytes (base64) in {text:?}");
}

// ---------------------------------------------------------------------------------------------
// Against the real server

#[tokio::test]
async fn conformance_suite_passes() {
    let bao = bao().await;
    let (a, b) = (bao.new_key().await, bao.new_key().await);
    encrypt_repo_testkit::key_provider_conformance(
        Arc::new(bao.provider(&a).await),
        Arc::new(bao.provider(&b).await),
    )
    .await;
}

#[tokio::test]
async fn round_trip_through_the_registry_and_context_binding() {
    let bao = bao().await;
    let key = bao.new_key().await;
    let mut registry = ProviderRegistry::with_builtin();
    registry.register(Arc::new(OpenBaoFactory));
    let mut settings = bao.settings(&key, &bao.token_file);
    assert!(
        !OpenBaoFactory
            .prepare(&mut settings)
            .await
            .expect("prepare")
    );
    assert_eq!(settings.get("mount").map(String::as_str), Some("transit"));
    assert_eq!(OpenBaoFactory.identity_settings(), ["mount", "key_name"]);
    let provider = registry.open("openbao", &settings).await.expect("open");
    assert_eq!(provider.master_key(), format!("transit/{key}"));

    let c = ctx(1, 2);
    let g = provider.generate_data_key(&c).await.expect("generate");
    assert_eq!(g.wrapped.master_key, format!("transit/{key}"));
    assert!(g.wrapped.ciphertext.starts_with(b"vault:v1:"));
    let back = provider.unwrap(&g.wrapped, &c).await.expect("unwrap");
    assert_eq!(back.expose_secret(), g.plaintext.expose_secret());

    let k = DataKey::generate().expect("rng");
    let w = provider.wrap(&k, &c).await.expect("wrap");
    assert_eq!(
        provider
            .unwrap(&w, &c)
            .await
            .expect("unwrap")
            .expose_secret(),
        k.expose_secret()
    );
    for wrong in [ctx(9, 2), ctx(1, 9)] {
        match provider.unwrap(&w, &wrong).await {
            Err(e @ Error::UnwrapFailed { .. }) => assert_clean(&e.to_string(), &bao.root, &k),
            other => panic!("unwrap under another context: {other:?}"),
        }
    }
    match provider.status().await.expect("status") {
        KeyStatus::Usable { rotation: Some(r) } => {
            assert_eq!(r.current_version, Some(1));
            assert_eq!(r.automatic, Some(false));
            assert!(r.last_rotated.is_some());
        }
        other => panic!("status {other:?}"),
    }
}

#[tokio::test]
async fn rotation_keeps_old_wraps_and_rewrap_moves_them() {
    let bao = bao().await;
    let key = bao.new_key().await;
    let p = bao.provider(&key).await;
    let c = ctx(3, 4);
    let old = p.generate_data_key(&c).await.expect("generate");
    assert_eq!(version_of(&old.wrapped), "v1");

    bao.post(&format!("transit/keys/{key}/rotate"), json!({}))
        .await;

    let back = p
        .unwrap(&old.wrapped, &c)
        .await
        .expect("old wrap still unwraps");
    assert_eq!(back.expose_secret(), old.plaintext.expose_secret());
    let new = p.wrap(&old.plaintext, &c).await.expect("wrap");
    assert_eq!(version_of(&new), "v2", "new wraps use the new version");

    let moved = p.rewrap(&old.wrapped, &c).await.expect("rewrap");
    assert_eq!(version_of(&moved), "v2");
    assert_eq!(moved.master_key, old.wrapped.master_key);
    let back = p.unwrap(&moved, &c).await.expect("rewrapped unwraps");
    assert_eq!(back.expose_secret(), old.plaintext.expose_secret());
    assert!(matches!(
        p.rewrap(&old.wrapped, &ctx(3, 5)).await,
        Err(Error::UnwrapFailed { .. })
    ));

    let KeyStatus::Usable { rotation: Some(r) } = p.status().await.expect("status") else {
        panic!("not usable");
    };
    assert_eq!(r.current_version, Some(2));
    bao.post(
        &format!("transit/keys/{key}/config"),
        json!({"auto_rotate_period": "24h"}),
    )
    .await;
    let KeyStatus::Usable { rotation: Some(r) } = p.status().await.expect("status") else {
        panic!("not usable");
    };
    assert_eq!(r.automatic, Some(true));
}

#[tokio::test]
async fn raised_min_decryption_version_retires_old_wraps_only() {
    let bao = bao().await;
    let key = bao.new_key().await;
    let p = bao.provider(&key).await;
    let c = ctx(5, 6);
    let v1 = p.generate_data_key(&c).await.expect("generate");
    bao.post(&format!("transit/keys/{key}/rotate"), json!({}))
        .await;
    let v2 = p.generate_data_key(&c).await.expect("generate");
    bao.post(
        &format!("transit/keys/{key}/config"),
        json!({"min_decryption_version": 2}),
    )
    .await;

    for result in [
        p.unwrap(&v1.wrapped, &c).await.map(|_| ()),
        p.rewrap(&v1.wrapped, &c).await.map(|_| ()),
    ] {
        match result {
            Err(e @ Error::KeyVersionRetired { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains("min_decryption_version") && m.contains(&key),
                    "{m}"
                );
                assert_clean(&m, &bao.root, &v1.plaintext);
            }
            other => panic!("expected KeyVersionRetired, got {other:?}"),
        }
    }
    let back = p.unwrap(&v2.wrapped, &c).await.expect("v2 still unwraps");
    assert_eq!(back.expose_secret(), v2.plaintext.expose_secret());
    let info = p.key_info().await.expect("key info");
    assert_eq!((info.latest_version, info.min_decryption_version), (2, 2));
    assert!(p.status().await.expect("status").is_usable());
}

/// The policy from the crate docs, for one key.
#[tokio::test]
async fn access_denied_locks_and_restored_policy_unlocks_without_a_new_provider() {
    let bao = bao().await;
    let key = bao.new_key().await;
    let policy = format!("policy-{key}");
    bao.set_policy(&policy, &minimal_policy(&key)).await;
    let (token, token_file) = bao.token_with(&policy).await;
    let p = OpenBaoProvider::from_settings(&bao.settings(&key, &token_file))
        .await
        .expect("provider");

    // The documented minimal policy is enough for everything.
    let c = ctx(7, 8);
    let g = p.generate_data_key(&c).await.expect("generate");
    let w = p.wrap(&g.plaintext, &c).await.expect("wrap");
    p.unwrap(&w, &c).await.expect("unwrap");
    p.rewrap(&w, &c).await.expect("rewrap");
    assert!(p.status().await.expect("status").is_usable());

    // Deny: the policy no longer names this key.
    bao.set_policy(
        &policy,
        r#"path "transit/keys/none" { capabilities = ["read"] }"#,
    )
    .await;
    assert_eq!(p.status().await.expect("status"), KeyStatus::AccessDenied);
    let mut messages = vec![format!("{p:?}"), p.to_string()];
    for result in [
        p.unwrap(&g.wrapped, &c).await.map(|_| ()),
        p.generate_data_key(&c).await.map(|_| ()),
        p.wrap(&g.plaintext, &c).await.map(|_| ()),
        p.rewrap(&g.wrapped, &c).await.map(|_| ()),
    ] {
        match result {
            Err(e @ Error::KeyUnavailable { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains("openbao") && m.contains(&key) && m.contains("permission denied"),
                    "{m}"
                );
                messages.push(m);
                messages.push(format!("{e:?}"));
            }
            other => panic!("expected KeyUnavailable, got {other:?}"),
        }
    }
    for m in &messages {
        assert_clean(m, &token, &g.plaintext);
    }

    // Restore: same token, same provider instance.
    bao.set_policy(&policy, &minimal_policy(&key)).await;
    assert!(p.status().await.expect("status").is_usable());
    let back = p
        .unwrap(&g.wrapped, &c)
        .await
        .expect("unwrap after restore");
    assert_eq!(back.expose_secret(), g.plaintext.expose_secret());

    // Revoke the token: locked again. A new token written to the same file is picked up on the
    // next 403, again without a new provider.
    bao.post("auth/token/revoke", json!({ "token": token }))
        .await;
    assert_eq!(p.status().await.expect("status"), KeyStatus::AccessDenied);
    assert!(matches!(
        p.unwrap(&g.wrapped, &c).await,
        Err(Error::KeyUnavailable { .. })
    ));
    let (_, other_file) = bao.token_with(&policy).await;
    std::fs::rename(&other_file, &token_file).expect("replace token file");
    assert!(p.status().await.expect("status").is_usable());
    p.unwrap(&g.wrapped, &c)
        .await
        .expect("unwrap with the renewed token");
    let _ = std::fs::remove_file(&token_file);
}

#[tokio::test]
async fn missing_and_deleted_keys_are_unavailable_and_never_created() {
    let bao = bao().await;
    let missing = format!("missing-{}", DataKeyId::random().expect("rng").to_hex());
    let p = bao.provider(&missing).await;
    assert_eq!(p.status().await.expect("status"), KeyStatus::NotFound);
    let c = ctx(1, 1);
    let k = DataKey::generate().expect("rng");
    for result in [
        p.generate_data_key(&c).await.map(|_| ()),
        p.wrap(&k, &c).await.map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(Error::KeyUnavailable { .. })),
            "{result:?}"
        );
    }
    // wrap must not have created it (transit's encrypt "upsert")
    assert_eq!(p.status().await.expect("status"), KeyStatus::NotFound);
    let mut mut_settings = bao.settings(&missing, &bao.token_file);
    assert!(matches!(
        OpenBaoFactory.prepare(&mut mut_settings).await,
        Err(Error::KeyUnavailable { .. })
    ));

    // A key deleted after use: unwrap reports it unavailable.
    let key = bao.new_key().await;
    let p = bao.provider(&key).await;
    let g = p.generate_data_key(&c).await.expect("generate");
    bao.post(
        &format!("transit/keys/{key}/config"),
        json!({"deletion_allowed": true}),
    )
    .await;
    bao.admin(
        reqwest::Method::DELETE,
        &format!("transit/keys/{key}"),
        Value::Null,
    )
    .await;
    match p.unwrap(&g.wrapped, &c).await {
        Err(e @ Error::KeyUnavailable { .. }) => {
            assert_clean(&e.to_string(), &bao.root, &g.plaintext)
        }
        other => panic!("expected KeyUnavailable, got {other:?}"),
    }
    assert_eq!(p.status().await.expect("status"), KeyStatus::NotFound);
}

#[tokio::test]
async fn a_key_that_is_not_derived_is_refused() {
    let bao = bao().await;
    let key = format!("plain-{}", DataKeyId::random().expect("rng").to_hex());
    bao.post(&format!("transit/keys/{key}"), json!({})).await;
    let p = bao.provider(&key).await;
    let k = DataKey::generate().expect("rng");
    for result in [
        p.wrap(&k, &ctx(1, 1)).await.map(|_| ()),
        p.generate_data_key(&ctx(1, 1)).await.map(|_| ()),
        p.status().await.map(|_| ()),
    ] {
        match result {
            Err(Error::Setting {
                setting, problem, ..
            }) => {
                assert_eq!(setting, "key_name");
                assert!(problem.contains("derived=true"), "{problem}");
            }
            other => panic!("expected a Setting error, got {other:?}"),
        }
    }
    let mut settings = bao.settings(&key, &bao.token_file);
    assert!(matches!(
        OpenBaoFactory.prepare(&mut settings).await,
        Err(Error::Setting { .. })
    ));
}

#[tokio::test]
async fn foreign_and_malformed_wrapped_keys_fail_before_the_network() {
    let bao = bao().await;
    let (a, b) = (bao.new_key().await, bao.new_key().await);
    let (pa, pb) = (bao.provider(&a).await, bao.provider(&b).await);
    let c = ctx(2, 2);
    let w = pb.generate_data_key(&c).await.expect("generate").wrapped;
    assert!(matches!(
        pa.unwrap(&w, &c).await,
        Err(Error::ForeignWrappedKey { .. })
    ));
    // Relabelled as ours: transit's authentication refuses it.
    let relabelled = WrappedKey {
        master_key: pa.master_key(),
        ..w.clone()
    };
    assert!(matches!(
        pa.unwrap(&relabelled, &c).await,
        Err(Error::UnwrapFailed { .. })
    ));
    // `vault:v0:` is version 1 to transit; refused here.
    let mut v0 = pb
        .wrap(&DataKey::generate().expect("rng"), &c)
        .await
        .expect("wrap");
    v0.ciphertext = String::from_utf8(v0.ciphertext)
        .expect("ascii")
        .replacen("vault:v1:", "vault:v0:", 1)
        .into_bytes();
    assert!(matches!(
        pb.unwrap(&v0, &c).await,
        Err(Error::UnwrapFailed { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Fake servers

enum Reply {
    /// A full HTTP response.
    Raw(Vec<u8>),
    /// 200 and then this many bytes of junk without a length, until the client gives up.
    Endless(usize),
    /// Accept and say nothing.
    Silent,
}

fn respond(status: &str, body: &str) -> Reply {
    Reply::Raw(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// Serves `handler(method, path, request head)` on a loopback port; returns the address.
fn fake_server(handler: fn(&str, &str, &str) -> Reply) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let mut first = head.split_whitespace();
                let (method, path) = (
                    first.next().unwrap_or("").to_owned(),
                    first.next().unwrap_or("").to_owned(),
                );
                match handler(&method, &path, &head) {
                    Reply::Raw(bytes) => {
                        let _ = stream.write_all(&bytes);
                    }
                    Reply::Endless(n) => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                        let junk = vec![b'{'; 64 * 1024];
                        for _ in 0..n / junk.len() {
                            if stream.write_all(&junk).is_err() {
                                return;
                            }
                        }
                    }
                    Reply::Silent => std::thread::sleep(Duration::from_secs(10)),
                }
            });
        }
    });
    addr
}

const DERIVED_KEY: &str = r#"{"data":{"name":"k","type":"aes256-gcm96","derived":true,"latest_version":1,"min_decryption_version":1,"keys":{"1":1700000000}}}"#;
const A_CIPHERTEXT: &str =
    "vault:v1:RotXhV8QiQt4aOvVVF0XDt4dAseBRt2jFnWT7X7441hbwDaXe5dF9G3PYhyqHxyZrf9UzIZzpWBobt2w";

async fn fake_provider(addr: &str, timeout_secs: &str) -> (OpenBaoProvider, String) {
    let token = format!("s.{}", DataKeyId::random().expect("rng").to_hex());
    let file = std::env::temp_dir().join(format!(
        "encrypt-repo-openbao-fake-{}",
        hex(&[rand_byte(); 8])
    ));
    std::fs::write(&file, &token).expect("token file");
    let settings = Settings::from([
        ("address".to_owned(), addr.to_owned()),
        ("key_name".to_owned(), "k".to_owned()),
        ("token_file".to_owned(), file.display().to_string()),
        ("timeout_secs".to_owned(), timeout_secs.to_owned()),
    ]);
    let p = OpenBaoProvider::from_settings(&settings)
        .await
        .expect("provider");
    (p, token)
}

fn rand_byte() -> u8 {
    DataKeyId::random().expect("rng").0[0]
}

fn a_wrapped() -> WrappedKey {
    WrappedKey {
        provider: "openbao".into(),
        master_key: "transit/k".into(),
        ciphertext: A_CIPHERTEXT.as_bytes().to_vec(),
    }
}

/// Every operation on `p` fails with a Provider error that holds no token, quickly.
async fn all_fail_cleanly(p: &OpenBaoProvider, token: &str, within: Duration) {
    let k = DataKey::from_bytes([0x42; 32]);
    let c = ctx(1, 1);
    let t0 = Instant::now();
    let results = [
        p.status().await.map(|_| ()),
        p.generate_data_key(&c).await.map(|_| ()),
        p.wrap(&k, &c).await.map(|_| ()),
        p.unwrap(&a_wrapped(), &c).await.map(|_| ()),
        p.rewrap(&a_wrapped(), &c).await.map(|_| ()),
    ];
    for r in results {
        match r {
            Err(e @ Error::Provider { .. }) => {
                assert_clean(&e.to_string(), token, &k);
                assert_clean(&format!("{e:?}"), token, &k);
            }
            other => panic!("expected a Provider error, got {other:?}"),
        }
    }
    assert!(t0.elapsed() < within, "took {:?}", t0.elapsed());
    assert_clean(&format!("{p:?} {p}"), token, &k);
}

#[tokio::test]
async fn non_json_answers_are_provider_errors() {
    let addr = fake_server(|_, _, _| respond("200 OK", "<html>hello</html>"));
    let (p, token) = fake_provider(&addr, "5").await;
    all_fail_cleanly(&p, &token, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn huge_answers_are_cut_off() {
    // announced: refused before reading; unannounced: read to 1 MiB, then refused
    let addr = fake_server(|_, _, _| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n{".to_vec(),
        )
    });
    let (p, token) = fake_provider(&addr, "5").await;
    all_fail_cleanly(&p, &token, Duration::from_secs(10)).await;
    let addr = fake_server(|_, _, _| Reply::Endless(64 << 20));
    let (p, token) = fake_provider(&addr, "5").await;
    match p.status().await {
        Err(Error::Provider { message, .. }) => {
            assert!(message.contains("larger than"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    all_fail_cleanly(&p, &token, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let addr = fake_server(|_, _, _| Reply::Silent);
    let (p, token) = fake_provider(&addr, "1").await;
    // five operations, one second each at most
    all_fail_cleanly(&p, &token, Duration::from_secs(8)).await;
}

#[tokio::test]
async fn server_errors_and_wrong_shapes_are_provider_errors_without_the_token() {
    // The key reads fine; every POST gets a 500 quoting the token, or a 200 of the wrong shape.
    let addr = fake_server(|method, _, head| match method {
        "GET" => respond("200 OK", DERIVED_KEY),
        _ => {
            let echoed: String = head
                .chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .collect();
            respond(
                "500 Internal Server Error",
                &format!(r#"{{"errors":["you sent: {echoed}"]}}"#),
            )
        }
    });
    let (p, token) = fake_provider(&addr, "5").await;
    assert!(p.status().await.expect("status").is_usable());
    let c = ctx(1, 1);
    match p.unwrap(&a_wrapped(), &c).await {
        Err(e @ Error::Provider { .. }) => {
            let m = e.to_string();
            assert!(m.contains("HTTP 500") && m.contains("<redacted>"), "{m}");
            assert_clean(&m, &token, &DataKey::from_bytes([0x42; 32]));
        }
        other => panic!("{other:?}"),
    }

    let addr = fake_server(|method, path, _| match method {
        "GET" => respond("200 OK", DERIVED_KEY),
        _ if path.contains("datakey") => respond(
            "200 OK",
            r#"{"data":{"plaintext":"AAAA","ciphertext":"vault:v1:AAAA"}}"#,
        ),
        _ if path.contains("decrypt") => respond("200 OK", r#"{"data":{"plaintext":17}}"#),
        _ => respond(
            "200 OK",
            r#"{"data":{"ciphertext":"not a transit ciphertext"}}"#,
        ),
    });
    let (p2, token2) = fake_provider(&addr, "5").await;
    let k = DataKey::from_bytes([0x42; 32]);
    for r in [
        p2.generate_data_key(&c).await.map(|_| ()),
        p2.unwrap(&a_wrapped(), &c).await.map(|_| ()),
        p2.wrap(&k, &c).await.map(|_| ()),
        p2.rewrap(&a_wrapped(), &c).await.map(|_| ()),
    ] {
        match r {
            Err(e @ Error::Provider { .. }) => assert_clean(&e.to_string(), &token2, &k),
            other => panic!("expected a Provider error, got {other:?}"),
        }
    }
}

/// Not a check: prints the latency of each operation against the dev server
/// (`cargo test -p encrypt-repo-kms-openbao --test openbao latency -- --ignored --nocapture`).
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn latency() {
    let bao = bao().await;
    let key = bao.new_key().await;
    let p = bao.provider(&key).await;
    let c = ctx(1, 1);
    let g = p.generate_data_key(&c).await.expect("warm up");
    let n = 200u32;
    let t = Instant::now();
    for _ in 0..n {
        p.generate_data_key(&c).await.expect("generate");
    }
    let gen_t = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        p.unwrap(&g.wrapped, &c).await.expect("unwrap");
    }
    let unwrap_t = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        p.status().await.expect("status");
    }
    let status_t = t.elapsed() / n;
    println!("per call over {n}: generate {gen_t:?}, unwrap {unwrap_t:?}, status {status_t:?}");
}
