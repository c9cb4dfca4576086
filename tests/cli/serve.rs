//! `encrypt-repo serve` (issue 7) through the binary: it starts on a config.yml, says where it
//! listens, answers over HTTP with basic authentication, stops cleanly on SIGTERM, and refuses
//! to start on a bad configuration or without an admin password. The service itself is tested
//! in crates/server.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;

use super::support::{Env, er};

const PASSWORD: &str = "cli-serve-Pa55word";

pub(super) fn config(dir: &Path) -> String {
    format!(
        r#"
_meta: {{ type: config, config_version: 2 }}
config:
  dynamic:
    http:
      anonymous_auth_enabled: false
    authc:
      basic_internal_auth_domain:
        http_enabled: true
        order: 0
        http_authenticator: {{ type: basic, challenge: true }}
        authentication_backend: {{ type: intern }}
server:
  listen: 127.0.0.1:0
  reload_interval_seconds: 5
  fs_roots: [ "{roots}" ]
  key_providers:
    main: {{ type: local, key_directory: "{keys}" }}
  system_repository:
    type: fs
    settings: {{ location: "{sys}" }}
    encrypted: true
    crypto_settings:
      key_provider_name: system
      key_provider_type: local
      settings: {{ key_file: "{key}" }}
"#,
        roots = dir.join("repos").display(),
        keys = dir.join("keys").display(),
        sys = dir.join("system").display(),
        key = dir.join("system.key").display(),
    )
}

/// One HTTP/1.1 request over a fresh connection; (status, body).
fn http(addr: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let auth = auth
        .map(|a| format!("Authorization: Basic {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {reply}"));
    let body = reply.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
    (status, body)
}

/// `admin:PASSWORD` in base64 (standard alphabet), without a dependency for it.
pub(super) fn basic(user: &str, password: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::new();
    for c in input.as_bytes().chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn serve_starts_answers_with_basic_auth_and_stops_on_sigterm() {
    let env = Env::new();
    let cfg = env.path("config.yml");
    std::fs::write(&cfg, config(env.tmp.path())).unwrap();
    let mut child = er(["serve", "--config"])
        .arg(&cfg)
        .env("ENCRYPT_REPO_ADMIN_PASSWORD", PASSWORD)
        .spawn();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).ok();
        child.kill().ok();
        panic!("no 'listening on' line: {line:?}\nstderr: {err}");
    };
    let addr = addr.to_owned();

    let (status, body) = http(&addr, "/_plugins/_security/health", None);
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(&addr, "/_plugins/_security/authinfo", None);
    assert_eq!(status, 401);
    let (status, _) = http(
        &addr,
        "/_plugins/_security/authinfo",
        Some(&basic("admin", "wrong")),
    );
    assert_eq!(status, 401);
    let (status, body) = http(
        &addr,
        "/_plugins/_security/authinfo",
        Some(&basic("admin", PASSWORD)),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"admin\""), "{body}");

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "after SIGTERM");
    // No password in what it logged.
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    assert!(!err.contains(PASSWORD), "{err}");
}

#[test]
fn serve_refuses_a_bad_configuration_and_a_first_start_without_a_password() {
    let env = Env::new();
    let cfg = env.path("config.yml");
    std::fs::write(
        &cfg,
        config(env.tmp.path()).replace("reload_interval_seconds: 5", "reload_intervall: 5"),
    )
    .unwrap();
    let out = er(["serve", "--config"]).arg(&cfg).run();
    out.code(2);
    assert!(out.stderr.contains("reload_intervall"), "{}", out.stderr);

    std::fs::write(&cfg, config(env.tmp.path())).unwrap();
    let out = er(["serve", "--config"]).arg(&cfg).run();
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("ENCRYPT_REPO_ADMIN_PASSWORD"),
        "{}",
        out.stderr
    );
}
