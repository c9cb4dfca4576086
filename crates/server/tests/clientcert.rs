//! `clientcert` authentication over real loopback TLS: certificates made with rcgen, a reqwest
//! (rustls) client presenting them as its identity.

mod harness;

use std::path::Path;

use encrypt_repo_server::security::RoleMapping;
use encrypt_repo_server::{App, ServerConfig, provider_registry};
use harness::{ADMIN_PASSWORD, Running, config_yaml_with, start};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use reqwest::StatusCode;
use serde_json::Value;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = p.self_signed(&key).expect("ca").pem();
    Ca {
        issuer: Issuer::new(p, key),
        pem,
    }
}

/// A certificate and key (PEM) issued by `ca`.
fn issue(
    ca: &Ca,
    sans: &[&str],
    dn: &[(DnType, &str)],
    usage: ExtendedKeyUsagePurpose,
    expired: bool,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        .expect("params");
    p.distinguished_name = DistinguishedName::new();
    for (t, v) in dn {
        p.distinguished_name.push(t.clone(), *v);
    }
    p.extended_key_usages = vec![usage];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = p.signed_by(&key, &ca.issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn client_cert(ca: &Ca, cn: &str, ou: &str, expired: bool) -> reqwest::Identity {
    let (cert, key) = issue(
        ca,
        &[],
        &[
            (DnType::CommonName, cn),
            (DnType::OrganizationalUnitName, ou),
        ],
        ExtendedKeyUsagePurpose::ClientAuth,
        expired,
    );
    reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity")
}

struct Setup {
    _dir: tempfile::TempDir,
    ca: Ca,
    running: Running,
    base: String,
}

/// A node serving HTTPS with client certificates `mode`, a clientcert domain (order 0,
/// `cn` → user, `ou` → backend roles) before basic, and backend role `ops` mapped to
/// `repository_read`.
async fn setup(mode: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("test root");
    let (cert, key) = issue(
        &ca,
        &["localhost", "127.0.0.1"],
        &[(DnType::CommonName, "localhost")],
        ExtendedKeyUsagePurpose::ServerAuth,
        false,
    );
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("server.pem"), cert).expect("write");
    std::fs::write(p("server.key"), key).expect("write");
    std::fs::write(p("ca.pem"), &ca.pem).expect("write");
    let yaml = tls_yaml(dir.path(), mode);
    // Bootstrap, then map backend role ops before serving.
    std::fs::create_dir_all(p("repos")).expect("repos");
    let app = App::start(
        ServerConfig::from_yaml(&yaml).expect("config"),
        provider_registry(),
        || Ok(zeroize::Zeroizing::new(ADMIN_PASSWORD.to_owned())),
    )
    .await
    .expect("bootstrap");
    let loaded = app.loaded();
    let mut data = loaded.security.value.clone();
    data.rolesmapping.insert(
        "repository_read".into(),
        RoleMapping {
            backend_roles: vec!["ops".into()],
            ..RoleMapping::default()
        },
    );
    app.write_security(loaded.security.generation, data)
        .await
        .expect("mapping");
    drop(app);
    let running = start(dir.path(), &yaml).await;
    let base = running.base.replace("http://", "https://");
    Setup {
        _dir: dir,
        ca,
        running,
        base,
    }
}

fn tls_yaml(dir: &Path, mode: &str) -> String {
    let authc = r"
      clientcert_auth_domain:
        http_enabled: true
        order: -1
        http_authenticator:
          type: clientcert
          challenge: false
          config: { username_attribute: cn, roles_attribute: ou }
        authentication_backend: { type: noop }";
    config_yaml_with(dir, 3600, "", "", authc).replace(
        "  listen: 127.0.0.1:0\n",
        &format!(
            "  listen: 127.0.0.1:0\n  tls: {{ certificate: \"{}\", private_key: \"{}\", client_auth: {mode}, client_ca: \"{}\" }}\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display(),
            dir.join("ca.pem").display(),
        ),
    )
}

fn client(ca: &Ca, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("root");
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tls_backend_rustls()
        .tls_certs_only([root]);
    if let Some(i) = identity {
        b = b.identity(i);
    }
    b.build().expect("client")
}

async fn authinfo(
    c: &reqwest::Client,
    base: &str,
    basic: bool,
) -> reqwest::Result<(StatusCode, Value)> {
    let mut r = c.get(format!("{base}/_plugins/_security/authinfo"));
    if basic {
        r = r.basic_auth("admin", Some(ADMIN_PASSWORD));
    }
    let r = r.send().await?;
    let status = r.status();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates() {
    let s = setup("optional").await;

    // A certificate from the configured CA: user from CN, backend role from OU, mapped role.
    let alice = client(&s.ca, Some(client_cert(&s.ca, "alice", "ops", false)));
    let (status, v) = authinfo(&alice, &s.base, false).await.expect("request");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["user_name"], "alice", "{v}");
    assert_eq!(v["backend_roles"], serde_json::json!(["ops"]), "{v}");
    assert_eq!(v["roles"], serde_json::json!(["repository_read"]), "{v}");
    assert_eq!(v["peer_certificates"], "1", "{v}");
    // The certificate's authority stops at what repository_read allows.
    let r = alice
        .put(format!("{}/_snapshot/x", s.base))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // No certificate: the next domain (basic) in order authenticates.
    let anon = client(&s.ca, None);
    let (status, v) = authinfo(&anon, &s.base, true).await.expect("request");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["user_name"], "admin", "{v}");
    assert_eq!(v["peer_certificates"], "0", "{v}");
    let (status, v) = authinfo(&anon, &s.base, false).await.expect("request");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");

    // A certificate from another CA, or an expired one: the handshake is refused.
    let other = ca("other root");
    let mallory = client(&s.ca, Some(client_cert(&other, "alice", "ops", false)));
    assert!(
        authinfo(&mallory, &s.base, true).await.is_err(),
        "foreign CA accepted"
    );
    let expired = client(&s.ca, Some(client_cert(&s.ca, "alice", "ops", true)));
    assert!(
        authinfo(&expired, &s.base, true).await.is_err(),
        "expired certificate accepted"
    );
    // The server is still fine afterwards.
    let (status, _) = authinfo(&alice, &s.base, false).await.expect("request");
    assert_eq!(status, StatusCode::OK);
    s.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates() {
    let s = setup("require").await;
    let anon = client(&s.ca, None);
    assert!(
        authinfo(&anon, &s.base, true).await.is_err(),
        "a connection without a certificate was accepted in require mode"
    );
    let bob = client(&s.ca, Some(client_cert(&s.ca, "bob", "dev", false)));
    let (status, v) = authinfo(&bob, &s.base, false).await.expect("request");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["user_name"], "bob", "{v}");
    assert_eq!(v["backend_roles"], serde_json::json!(["dev"]), "{v}");
    assert_eq!(v["roles"], serde_json::json!([]), "{v}");
    s.running.stop().await;
}

#[test]
fn inconsistent_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = tls_yaml(dir.path(), "optional");
    let err = |y: &str| {
        ServerConfig::from_yaml(y)
            .expect_err("must be refused")
            .to_string()
    };
    // clientcert without TLS.
    let no_tls: String = yaml
        .lines()
        .filter(|l| !l.trim_start().starts_with("tls:"))
        .collect::<Vec<_>>()
        .join("\n");
    let e = err(&no_tls);
    assert!(
        e.contains("config.dynamic.authc.clientcert_auth_domain.http_authenticator.type"),
        "{e}"
    );
    assert!(e.contains("server.tls"), "{e}");
    // TLS without client certificates.
    let e = err(&yaml.replace("client_auth: optional", "client_auth: none"));
    assert!(e.contains("server.tls.client_auth"), "{e}");
    let no_ca = yaml.replace(
        &format!(", client_ca: \"{}\"", dir.path().join("ca.pem").display()),
        "",
    );
    let e = err(&no_ca);
    assert!(e.contains("server.tls.client_ca"), "{e}");
    let e = err(&yaml.replace("client_auth: optional", "client_auth: sometimes"));
    assert!(e.contains("server.tls.client_auth"), "{e}");
    // A backend other than noop.
    let e = err(&yaml.replace("type: noop", "type: intern"));
    assert!(
        e.contains("clientcert_auth_domain.authentication_backend.type"),
        "{e}"
    );
    // Unknown authenticator settings.
    let e = err(&yaml.replace("roles_attribute", "role_attr"));
    assert!(
        e.contains("clientcert_auth_domain.http_authenticator.config"),
        "{e}"
    );
}
