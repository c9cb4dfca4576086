//! The bounded load test of issue 7, on demand (it takes a minute and both cores):
//!
//! ```text
//! cargo test -p encrypt-repo-server --release --test load -- --ignored --nocapture
//! ```
//!
//! 32 concurrent clients on loopback, each putting an 8 MiB object of its own pseudo-random
//! content and reading it back, for `ENCRYPT_REPO_LOAD_SECONDS` (default 60) seconds. Every
//! read is checked against the SHA-256 of what was written; any error fails the test. The
//! server runs as its own process (the `encrypt-repo-server` binary), so its peak RSS
//! (/proc/<pid>/status VmHWM, read just before it is stopped) is printed apart from the
//! clients' (this process).

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;

use harness::{ADMIN_PASSWORD, config_yaml, server_process};
use serde_json::json;

const CLIENTS: usize = 32;
const OBJECT: usize = 8 << 20;

fn content(client: usize, round: u64) -> Bytes {
    let mut x = (client as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ round;
    let mut v = Vec::with_capacity(OBJECT);
    while v.len() < OBJECT {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

fn sha256(b: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

/// VmHWM of `pid` ("self" for this process), in KiB.
fn peak_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a minute of load on both cores; run on demand (see the file's header)"]
async fn thirty_two_clients_put_and_get_8_mib_objects() {
    let seconds: u64 = std::env::var("ENCRYPT_REPO_LOAD_SECONDS")
        .ok()
        .map(|s| s.parse().expect("ENCRYPT_REPO_LOAD_SECONDS is a number"))
        .unwrap_or(60);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("repos")).expect("repos");
    let config = dir.path().join("config.yml");
    std::fs::write(&config, config_yaml(dir.path(), 3600, "")).expect("config");
    let server = server_process(&config, Some(ADMIN_PASSWORD));
    let base = server.base.clone();
    let pid = server.child.id().to_string();
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let body = json!({
        "type": "fs",
        "settings": { "location": dir.path().join("repos/load").to_str().expect("utf-8") },
        "encrypted": true,
        "crypto_settings": { "key_provider_name": "main", "key_provider_type": "local",
            "settings": {} }
    });
    let r = client
        .put(format!("{base}/_snapshot/load"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert!(r.status().is_success());

    let until = Instant::now() + Duration::from_secs(seconds);
    let rounds = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, base, rounds) = (client.clone(), base.clone(), rounds.clone());
        tasks.push(tokio::spawn(async move {
            let url = format!("{base}/_snapshot/load/_objects/client-{c}/object");
            let mut round = 0u64;
            while Instant::now() < until {
                let data = content(c, round);
                let expected = sha256(&data);
                let r = client
                    .put(&url)
                    .basic_auth("admin", Some(ADMIN_PASSWORD))
                    .body(data)
                    .send()
                    .await
                    .expect("put");
                assert_eq!(r.status(), reqwest::StatusCode::CREATED, "client {c} put");
                let r = client
                    .get(&url)
                    .basic_auth("admin", Some(ADMIN_PASSWORD))
                    .send()
                    .await
                    .expect("get");
                assert_eq!(r.status(), reqwest::StatusCode::OK, "client {c} get");
                let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
                let mut n = 0;
                let mut stream = r.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.expect("body");
                    n += chunk.len();
                    ctx.update(&chunk);
                }
                assert_eq!(n, OBJECT, "client {c} length");
                assert_eq!(
                    ctx.finish().as_ref(),
                    expected.as_slice(),
                    "client {c} content"
                );
                round += 1;
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let done = rounds.load(Ordering::Relaxed);
    let server_peak = peak_rss_kib(&pid);
    assert!(
        done >= CLIENTS as u64,
        "every client finished at least one round"
    );
    let mib = |k: Option<u64>| k.map_or_else(|| "unknown".to_owned(), |k| (k / 1024).to_string());
    println!(
        "load: {CLIENTS} clients, {seconds} s, {done} put+get rounds = {} requests, {} MiB each way, 0 errors (any error fails the test); server peak RSS {} MiB; clients (test process) peak RSS {} MiB",
        done * 2,
        done * 8,
        mib(server_peak),
        mib(peak_rss_kib("self")),
    );
    drop(server);
}
