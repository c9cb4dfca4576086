//! Shared helpers of the server's tests: a node over a temporary system repository, requests
//! without a socket, users with a given role.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use encrypt_repo_server::{App, ServerConfig, provider_registry};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub const ADMIN_PASSWORD: &str = "admin-Pa55word";

/// A config for a node whose system repository and fs roots live in `dir`.
pub fn config_yaml(dir: &Path, reload_seconds: u64, extra_http: &str) -> String {
    config_yaml_with(dir, reload_seconds, extra_http, "", "")
}

/// Like [`config_yaml`], with lines added under `config.dynamic` (indent 4) and
/// `config.dynamic.authc` (indent 6).
pub fn config_yaml_with(
    dir: &Path,
    reload_seconds: u64,
    extra_http: &str,
    extra_dynamic: &str,
    extra_authc: &str,
) -> String {
    format!(
        r#"
_meta: {{ type: config, config_version: 2 }}
config:
  dynamic:
    http:
      anonymous_auth_enabled: false
      {extra_http}
    authc:
      basic_internal_auth_domain:
        http_enabled: true
        order: 0
        http_authenticator: {{ type: basic, challenge: true }}
        authentication_backend: {{ type: intern }}
{extra_authc}
{extra_dynamic}
server:
  listen: 127.0.0.1:0
  reload_interval_seconds: {reload_seconds}
  fs_roots: [ "{roots}" ]
  key_providers:
    main: {{ type: local, key_directory: "{keys}" }}
    next: {{ type: local, key_directory: "{keys}" }}
    escrow: {{ type: local, key_directory: "{keys}/escrow" }}
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

pub struct Node {
    pub dir: PathBuf,
    pub app: Arc<App>,
    pub router: Router,
}

pub async fn node_in(dir: &Path, yaml: &str) -> Node {
    std::fs::create_dir_all(dir.join("repos")).expect("repos dir");
    let config = ServerConfig::from_yaml(yaml).expect("valid config");
    let app = App::start(config, provider_registry(), || {
        Ok(zeroize::Zeroizing::new(ADMIN_PASSWORD.to_owned()))
    })
    .await
    .expect("node starts");
    let router = encrypt_repo_server::api::router(app.clone());
    Node {
        dir: dir.to_owned(),
        app,
        router,
    }
}

pub async fn node(dir: &Path) -> Node {
    node_in(dir, &config_yaml(dir, 3600, "")).await
}

/// `yaml` (one of this harness's configs) with key provider `name` declared as `decl`.
pub fn with_key_provider(yaml: &str, name: &str, decl: &Value) -> String {
    let at = yaml.find("  key_providers:\n").expect("key_providers") + "  key_providers:\n".len();
    format!("{}    {name}: {decl}\n{}", &yaml[..at], &yaml[at..])
}

/// `yaml` (one of this harness's configs) with storage backend `name` declared as `decl`.
pub fn with_storage(yaml: &str, name: &str, decl: &Value) -> String {
    match yaml.find("\n  storage:\n") {
        Some(i) => {
            let at = i + "\n  storage:\n".len();
            format!("{}    {name}: {decl}\n{}", &yaml[..at], &yaml[at..])
        }
        None => format!("{}\n  storage:\n    {name}: {decl}\n", yaml.trim_end()),
    }
}

impl Node {
    /// The key file the server made for repository `repo`'s main (local) provider.
    pub fn key_file(&self, repo: &str) -> PathBuf {
        let loaded = self.app.loaded();
        let c = loaded.registrations.value[repo]
            .crypto_settings
            .clone()
            .expect("encrypted");
        let dir = if c.key_provider_name == "escrow" {
            self.dir.join("keys/escrow")
        } else {
            self.dir.join("keys")
        };
        dir.join(&c.settings["key_file"])
    }
}

impl Node {
    /// The audit events captured so far (after a flush; `app.audit.start_capture()` first).
    pub async fn audit_events(&self) -> Vec<Value> {
        self.app.audit.flush().await;
        self.app
            .audit
            .captured()
            .iter()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} (status {})",
                String::from_utf8_lossy(&self.body),
                self.status
            )
        })
    }

    /// The OpenSearch-shaped error type.
    pub fn error_type(&self) -> String {
        let v = self.json();
        assert_eq!(v["status"], self.status.as_u16(), "{v}");
        assert_eq!(
            v["error"]["root_cause"][0]["type"], v["error"]["type"],
            "{v}"
        );
        v["error"]["type"].as_str().expect("error.type").to_owned()
    }

    pub fn reason(&self) -> String {
        self.json()["error"]["reason"]
            .as_str()
            .expect("error.reason")
            .to_owned()
    }
}

impl Node {
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        auth: Option<(&str, &str)>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some((u, p)) = auth {
            req = req.header("authorization", basic(u, p));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body.into()).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// As admin.
    pub async fn admin(&self, method: Method, uri: &str, body: impl Into<Body>) -> Reply {
        self.call(method, uri, Some(("admin", ADMIN_PASSWORD)), &[], body)
            .await
    }

    pub fn repo_body(&self, name: &str) -> Value {
        json!({
            "type": "fs",
            "settings": { "location": self.dir.join("repos").join(name).to_str().expect("utf-8") },
            "encrypted": true,
            "crypto_settings": {
                "key_provider_name": "main",
                "key_provider_type": "local",
                "settings": {}
            }
        })
    }

    /// Registers repository `name` as admin.
    pub async fn register(&self, name: &str) {
        let r = self
            .admin(
                Method::PUT,
                &format!("/_snapshot/{name}"),
                self.repo_body(name).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r);
        assert_eq!(r.json(), json!({ "acknowledged": true }));
    }

    /// Creates user `name` with `password` and direct roles.
    pub async fn user(&self, name: &str, password: &str, roles: &[&str]) {
        let r = self
            .admin(
                Method::PUT,
                &format!("/_plugins/_security/api/internalusers/{name}"),
                json!({ "password": password, "opendistro_security_roles": roles }).to_string(),
            )
            .await;
        assert!(r.status.is_success(), "{r:?}");
    }
}

pub struct Running {
    pub base: String,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), encrypt_repo_server::Error>>,
}

/// Bootstraps the system repository in `dir` (so `serve` needs no environment variable), then
/// serves it on a free loopback port.
pub async fn start(dir: &Path, yaml: &str) -> Running {
    std::fs::create_dir_all(dir.join("repos")).expect("repos");
    drop(
        App::start(
            ServerConfig::from_yaml(yaml).expect("config"),
            provider_registry(),
            || Ok(zeroize::Zeroizing::new(ADMIN_PASSWORD.to_owned())),
        )
        .await
        .expect("bootstrap"),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<std::net::SocketAddr>();
    let config = ServerConfig::from_yaml(yaml).expect("config");
    let task = tokio::spawn(encrypt_repo_server::serve_with(
        config,
        async move {
            let _ = stop_rx.await;
        },
        Some(Box::new(move |a| {
            let _ = addr_tx.send(a);
        })),
    ));
    let addr = addr_rx.await.expect("server bound");
    Running {
        base: format!("http://{addr}"),
        stop: Some(stop_tx),
        task,
    }
}

impl Running {
    /// Stops the server and checks it shut down cleanly.
    pub async fn stop(mut self) {
        let _ = self.stop.take().map(|t| t.send(()));
        self.task.await.expect("join").expect("clean shutdown");
    }
}

/// The `encrypt-repo-server` binary of this build.
pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_encrypt-repo-server");

/// A server process on loopback, killed when dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server binary on `config` (with the first-start admin password, if given) and
/// waits for its "listening on" line.
pub fn server_process(config: &Path, password: Option<&str>) -> ServerProcess {
    server_process_with(config, |cmd| {
        if let Some(p) = password {
            cmd.env("ENCRYPT_REPO_ADMIN_PASSWORD", p);
        }
    })
}

/// Like [`server_process`], with no admin password in the environment unless `setup` adds
/// one (or another setting) to the command.
pub fn server_process_with(
    config: &Path,
    setup: impl FnOnce(&mut std::process::Command),
) -> ServerProcess {
    use std::io::BufRead as _;
    let mut cmd = std::process::Command::new(SERVER_BIN);
    cmd.arg("--config")
        .arg(config)
        .env_remove("ENCRYPT_REPO_ADMIN_PASSWORD")
        .env_remove("ENCRYPT_REPO_ADMIN_PASSWORD_FILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    setup(&mut cmd);
    let mut child = cmd.spawn().expect("spawn encrypt-repo-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read stdout");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    ServerProcess {
        child,
        base: format!("http://{addr}"),
    }
}
