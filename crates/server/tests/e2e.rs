//! End-to-end over loopback: `serve_with` on port 0 and a reqwest client; bodies streamed both
//! ways.

mod harness;

use bytes::Bytes;
use encrypt_repo_server::{App, ServerConfig, provider_registry};
use futures::StreamExt as _;
use harness::{ADMIN_PASSWORD, config_yaml, start};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

fn client() -> Client {
    Client::builder().no_proxy().build().expect("client")
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_loopback_streams_objects_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start(dir.path(), &config_yaml(dir.path(), 3600, "")).await;
    let c = client();
    let url = |p: &str| format!("{}{p}", s.base);

    let r = c
        .get(url("/_plugins/_security/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["status"], "UP");
    let r = c.get(url("/")).send().await.expect("root");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"OpenSearch Security\""
    );
    let auth = |b: reqwest::RequestBuilder| b.basic_auth("admin", Some(ADMIN_PASSWORD));
    let v: Value = auth(c.get(url("/_plugins/_security/authinfo")))
        .send()
        .await
        .expect("authinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(v["user_name"], "admin");
    assert_eq!(v["remote_address"], "127.0.0.1");

    let body = json!({
        "type": "fs",
        "settings": { "location": dir.path().join("repos/big").to_str().expect("utf-8") },
        "encrypted": true,
        "crypto_settings": { "key_provider_name": "main", "key_provider_type": "local",
            "settings": {} }
    });
    let r = auth(c.put(url("/_snapshot/big")))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), StatusCode::OK);

    // 24 MiB in 64 KiB pieces, generated as it is sent.
    const PIECES: usize = 384;
    let piece = |i: usize| -> Bytes {
        let mut b = vec![0u8; 64 << 10];
        for (j, x) in b.iter_mut().enumerate() {
            *x = (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8;
        }
        Bytes::from(b)
    };
    let mut whole = Vec::with_capacity(PIECES << 16);
    for i in 0..PIECES {
        whole.extend_from_slice(&piece(i));
    }
    let expected = sha256(&whole);
    let stream = futures::stream::iter((0..PIECES).map(move |i| Ok::<_, std::io::Error>(piece(i))));
    let r = auth(c.put(url("/_snapshot/big/_objects/data/blob")))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.expect("json")["size"], whole.len());

    let r = auth(c.head(url("/_snapshot/big/_objects/data/blob")))
        .send()
        .await
        .expect("head");
    assert_eq!(
        r.headers()["content-length"],
        whole.len().to_string().as_str()
    );

    let r = auth(c.get(url("/_snapshot/big/_objects/data/blob")))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut n = 0usize;
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("chunk");
        n += chunk.len();
        ctx.update(&chunk);
    }
    assert_eq!(n, whole.len());
    assert_eq!(ctx.finish().as_ref(), expected.as_slice());

    let r = auth(c.get(url("/_snapshot/big/_objects/data/blob")))
        .header("range", "bytes=1048570-3145735")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let part = r.bytes().await.expect("bytes");
    assert_eq!(part.as_ref(), &whole[1_048_570..3_145_736]);

    let v: Value = auth(c.get(url("/_snapshot/big/_keys")))
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    assert_eq!(v["data_keys"].as_array().expect("keys").len(), 1);
    let r = auth(c.delete(url("/_snapshot/big/_objects/data/blob")))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    let r = auth(c.get(url("/_snapshot/big/_objects/data/blob")))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let _ = s.stop.take().map(|t| t.send(()));
    s.task.await.expect("join").expect("clean shutdown");
}

#[tokio::test]
async fn a_first_start_without_an_admin_password_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig::from_yaml(&config_yaml(dir.path(), 5, "")).expect("config");
    let e = App::start(config, provider_registry(), || {
        Err(encrypt_repo_server::Error::NoAdminPassword)
    })
    .await
    .expect_err("refused");
    assert!(e.to_string().contains("ENCRYPT_REPO_ADMIN_PASSWORD"), "{e}");
    // Nothing was bootstrapped: the next start with a password creates the admin.
    let config = ServerConfig::from_yaml(&config_yaml(dir.path(), 5, "")).expect("config");
    let app = App::start(config, provider_registry(), || {
        Ok(zeroize::Zeroizing::new("pw-123456".to_owned()))
    })
    .await
    .expect("starts");
    assert!(
        app.loaded()
            .security
            .value
            .internalusers
            .contains_key("admin")
    );
    // A later start does not ask for the password at all.
    let config = ServerConfig::from_yaml(&config_yaml(dir.path(), 5, "")).expect("config");
    App::start(config, provider_registry(), || {
        panic!("the password is only needed on the first start")
    })
    .await
    .expect("starts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).expect("write cert");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem())
        .expect("write key");
    let yaml = config_yaml(dir.path(), 3600, "").replace(
        "  listen: 127.0.0.1:0\n",
        &format!(
            "  listen: 127.0.0.1:0\n  tls: {{ certificate: \"{}\", private_key: \"{}\" }}\n",
            dir.path().join("cert.pem").display(),
            dir.path().join("key.pem").display()
        ),
    );
    assert!(yaml.contains("tls:"), "the config has a tls section");
    let s = start(dir.path(), &yaml).await;
    let port = s.base.rsplit(':').next().expect("port").to_owned();
    let c = Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .resolve(
            "localhost",
            ([127, 0, 0, 1], port.parse().expect("port")).into(),
        )
        .build()
        .expect("client");
    let v: Value = c
        .get(format!(
            "https://localhost:{port}/_plugins/_security/authinfo"
        ))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .expect("https request")
        .json()
        .await
        .expect("json");
    assert_eq!(v["user_name"], "admin");
    // Plain HTTP to the TLS port gets no answer.
    let plain = client()
        .get(format!("http://127.0.0.1:{port}/_plugins/_security/health"))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    s.stop().await;
}

#[tokio::test]
async fn missing_tls_files_refuse_to_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = config_yaml(dir.path(), 3600, "").replace(
        "  listen: 127.0.0.1:0\n",
        "  listen: 127.0.0.1:0\n  tls: { certificate: /nonexistent/cert.pem, private_key: /nonexistent/key.pem }\n",
    );
    std::fs::create_dir_all(dir.path().join("repos")).expect("repos");
    drop(
        App::start(
            ServerConfig::from_yaml(&yaml).expect("config"),
            provider_registry(),
            || Ok(zeroize::Zeroizing::new(ADMIN_PASSWORD.to_owned())),
        )
        .await
        .expect("bootstrap"),
    );
    let e = encrypt_repo_server::serve(ServerConfig::from_yaml(&yaml).expect("config"), async {})
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("server.tls"), "{e}");
}
