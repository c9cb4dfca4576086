//! `server.limits` against a real `encrypt-repo-server` process on loopback, driven the way an
//! attacker would: raw half-open connections, idle keep-alive, a stalled upload, too many
//! uploads at once. The attacker's connections come from 127.0.0.2 (Linux routes all of
//! 127.0.0.0/8 to loopback), the legitimate client from 127.0.0.1.
//!
//! Every wait here is for something the server must do (close, answer) with a deadline far
//! above the configured timeout; none depends on how fast the machine is.

mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{ADMIN_PASSWORD, ServerProcess, config_yaml, server_process};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Far above every timeout configured below: only a server that never acts reaches it.
const DEADLINE: Duration = Duration::from_secs(60);

fn start(dir: &Path, limits: &str) -> ServerProcess {
    std::fs::create_dir_all(dir.join("repos")).expect("repos");
    let yaml = config_yaml(dir, 3600, "").replacen(
        "\nserver:\n",
        &format!("\nserver:\n  limits: {{ {limits} }}\n"),
        1,
    );
    let path = dir.join("config.yml");
    std::fs::write(&path, yaml).expect("config");
    server_process(&path, Some(ADMIN_PASSWORD))
}

fn addr(s: &ServerProcess) -> SocketAddr {
    s.base
        .strip_prefix("http://")
        .expect("http")
        .parse()
        .expect("address")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A connection to the server from `from` (another loopback address than the client's).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset) and returns what it sent.
async fn read_until_closed(c: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept the connection open for {DEADLINE:?}"
    );
    got
}

async fn register(s: &ServerProcess, dir: &Path, name: &str) {
    let r = client()
        .put(format!("{}/_snapshot/{name}", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({
            "type": "fs",
            "settings": { "location": dir.join("repos").join(name).to_str().expect("utf-8") },
            "encrypted": true,
            "crypto_settings": { "key_provider_name": "main", "key_provider_type": "local", "settings": {} }
        }))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
}

fn basic() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"))
    )
}

/// The head of an object upload that announces `length` bytes.
fn upload_head(repo: &str, object: &str, length: usize) -> String {
    format!(
        "PUT /_snapshot/{repo}/_objects/{object} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-length: {length}\r\n\r\n",
        basic()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_half_open_connections_do_not_stop_an_authenticated_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(
        dir.path(),
        "header_read_timeout_seconds: 2, max_connections_per_address: 50",
    );
    let to = addr(&s);
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut c = connect_from([127, 0, 0, 2], to).await;
        // A request head that never ends (slowloris).
        c.write_all(b"GET /_snapshot HTTP/1.1\r\nhost: x\r\n")
            .await
            .expect("write");
        held.push(c);
    }
    // The legitimate client, from another address, is served while all 300 are open.
    let r = client()
        .get(format!("{}/_plugins/_security/authinfo", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("authinfo");
    assert_eq!(r.status(), StatusCode::OK);
    // Every attacker connection ends: the first 50 when the head is not complete within the
    // header timeout, the 250 beyond the per-address cap at once, with a 503.
    let mut refused = 0;
    for mut c in held {
        let got = String::from_utf8_lossy(&read_until_closed(&mut c).await).into_owned();
        if got.starts_with("HTTP/1.1 503") {
            assert!(got.contains("retry-after: 1"), "{got}");
            assert!(got.contains("max_connections_per_address"), "{got}");
            refused += 1;
        } else {
            assert!(!got.contains("200 OK"), "{got}");
        }
    }
    assert_eq!(refused, 250, "the connections beyond the cap are refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(dir.path(), "header_read_timeout_seconds: 1");
    let mut c = TcpStream::connect(addr(&s)).await.expect("connect");
    c.write_all(
        format!(
            "GET /_plugins/_security/authinfo HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\r\n",
            basic()
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    // One answer, then nothing more is sent: the server closes the connection.
    let got = String::from_utf8_lossy(&read_until_closed(&mut c).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_answered_408_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(dir.path(), "body_stall_timeout_seconds: 1");
    register(&s, dir.path(), "r").await;
    let mut c = TcpStream::connect(addr(&s)).await.expect("connect");
    // 10 MiB announced, 1 MiB sent, then silence.
    c.write_all(upload_head("r", "big", 10 << 20).as_bytes())
        .await
        .expect("head");
    c.write_all(&vec![7u8; 1 << 20]).await.expect("part");
    let got = String::from_utf8_lossy(&read_until_closed(&mut c).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("request_timeout_exception"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    // Nothing of it was stored, and the server still works.
    let r = client()
        .get(format!("{}/_snapshot/r/_objects/big", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client()
        .put(format!("{}/_snapshot/r/_objects/small", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body("fine")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// PUTs a small object as admin; the status.
async fn small_put(s: &ServerProcess, name: &str) -> reqwest::Response {
    client()
        .put(format!("{}/_snapshot/r/_objects/{name}", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body("x")
        .send()
        .await
        .expect("put")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_has_at_most_max_uploads_per_user_in_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(
        dir.path(),
        "max_uploads_per_user: 2, body_stall_timeout_seconds: 3600",
    );
    register(&s, dir.path(), "r").await;
    let mut slow = Vec::new();
    for i in 0..2 {
        let mut c = TcpStream::connect(addr(&s)).await.expect("connect");
        c.write_all(upload_head("r", &format!("slow{i}"), 1000).as_bytes())
            .await
            .expect("head");
        c.write_all(b"partial").await.expect("part");
        slow.push(c);
    }
    // The two slow uploads are counted once the server has read their heads; until then a
    // third may still get through (and is stored), after that it is refused.
    let started = Instant::now();
    let refused = loop {
        let r = small_put(&s, "third").await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            break r;
        }
        assert_eq!(r.status(), StatusCode::CREATED);
        assert!(started.elapsed() < DEADLINE, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let v: Value = refused.json().await.expect("json");
    assert_eq!(v["error"]["type"], "too_many_requests", "{v}");
    // Another user is not held back by admin's uploads.
    let r = client()
        .put(format!(
            "{}/_plugins/_security/api/internalusers/bob",
            s.base
        ))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({ "password": "bob-password-1", "opendistro_security_roles": ["all_access"] }))
        .send()
        .await
        .expect("user");
    assert!(r.status().is_success());
    let r = client()
        .put(format!("{}/_snapshot/r/_objects/bobs", s.base))
        .basic_auth("bob", Some("bob-password-1"))
        .body("b")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    // A slow upload that gives up frees its place.
    drop(slow.pop());
    let started = Instant::now();
    loop {
        let r = small_put(&s, "fourth").await;
        if r.status() == StatusCode::CREATED {
            break;
        }
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(started.elapsed() < DEADLINE, "the place was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_too_long_for_a_backend_are_400_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(dir.path(), "max_uploads_per_user: 16");
    register(&s, dir.path(), "r").await;
    for (name, says) in [
        ("a".repeat(255), "at most 240 bytes"),
        (format!("d/{}", "b".repeat(241)), "at most 240 bytes"),
        (vec!["seg"; 2600].join("/"), "at most 1024 bytes"),
    ] {
        for method in [reqwest::Method::PUT, reqwest::Method::GET] {
            let r = client()
                .request(
                    method.clone(),
                    format!("{}/_snapshot/r/_objects/{name}", s.base),
                )
                .basic_auth("admin", Some(ADMIN_PASSWORD))
                .body("x")
                .send()
                .await
                .expect("request");
            assert_eq!(
                r.status(),
                StatusCode::BAD_REQUEST,
                "{method} {}",
                name.len()
            );
            let v: Value = r.json().await.expect("json");
            let reason = v["error"]["reason"].as_str().unwrap_or_default();
            assert!(reason.contains(says), "{reason}");
        }
    }
    // The longest accepted segment is stored and read back on a local disk.
    let name = "c".repeat(240);
    let r = small_put(&s, &name).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client()
        .get(format!("{}/_snapshot/r/_objects/{name}", s.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.expect("body"), "x");
}
