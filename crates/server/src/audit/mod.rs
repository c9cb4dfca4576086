//! The audit log: who did what, from where, with what outcome.
//!
//! Categories (see [`Category`]):
//!
//! - REST: `AUTHENTICATED`, `FAILED_LOGIN` (every 401, with the attempted user name when basic
//!   credentials name one), `MISSING_PRIVILEGES`, `GRANTED_PRIVILEGES` (the permission
//!   checked), `BAD_HEADERS` (an `Authorization` header that is malformed, not visible ASCII or
//!   longer than the 16 KiB token limit; a remote-IP header sent by a peer that is not a trusted
//!   proxy while xff is enabled), `SSL_EXCEPTION` (a failed TLS handshake, see [`tls`]).
//! - Repository (compliance): `OBJECT_READ` (get, head, list), `OBJECT_WRITE`, `OBJECT_DELETE`,
//!   `REPOSITORY_REGISTER`, `REPOSITORY_DELETE`, `KEY_ROTATE`, `KEY_REWRAP`, `KEY_SHRED`, and
//!   `KEY_LOCK` / `KEY_UNLOCK` when a request finds a repository's lock state changed (the store
//!   locks and unlocks itself; the service notices on the next request that touches the
//!   repository). Logged once the permission was granted, with the response status.
//! - `SECURITY_CONFIG_CHANGE`: every write of the security or audit configuration, with a JSON
//!   Patch from the old document to the new one when `compliance.write_log_diffs` is on
//!   (password hashes redacted).
//!
//! Every event has a timestamp (RFC 3339, UTC, milliseconds), the category, the node id, the
//! request id, the user (for `FAILED_LOGIN` the attempted one), the effective remote address
//! (after the xff rules), method, path (never the query string, which may carry a JWT), status,
//! and where relevant repository, object and privilege. Headers are logged without
//! `Authorization`, `Cookie`, the JWT header or any header whose name says token, secret, key,
//! auth or password. Request bodies only with `audit.log_request_body`, never object bodies,
//! and with password, hash, secret and token fields redacted.
//!
//! How it hooks in: [`middleware`] wraps every route; it gives the request an [`AuditSlot`] (a
//! task-local), which the `Caller` extractor fills through [`on_authenticated`],
//! [`on_failed_login`] and [`on_privilege`], and `App::write_security` through
//! [`Auditor::config_changed`]. After the handler the middleware classifies the request (method,
//! matched route, status) and hands the events to the [`sink`] without waiting.

pub mod api;
pub mod config;
pub mod sink;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::app::App;
use crate::error::{ApiError, Error, Result};
use crate::security::wildcard_match;
use crate::state::{AUDIT_DOC, SystemStore, Versioned, WriteError};
pub use config::AuditConfig;
pub use sink::{ReadError, SinkSettings, Timestamp, parse_time_bound, read_events};

/// Largest request body logged with `log_request_body` (larger ones are not read for the log).
pub const MAX_LOGGED_BODY: usize = 64 * 1024;

/// What an event is about.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Category {
    /// Credentials accepted.
    Authenticated,
    /// Credentials refused, or none where they are needed (401).
    FailedLogin,
    /// Authenticated, but the permission is missing (403).
    MissingPrivileges,
    /// Authenticated and permitted.
    GrantedPrivileges,
    /// A malformed, over-long or untrusted header.
    BadHeaders,
    /// A failed TLS handshake.
    SslException,
    /// An object read, head or listing.
    ObjectRead,
    /// An object upload.
    ObjectWrite,
    /// An object deletion.
    ObjectDelete,
    /// A repository registration (or re-registration).
    RepositoryRegister,
    /// A repository registration removed.
    RepositoryDelete,
    /// A new data key started.
    KeyRotate,
    /// Data keys re-wrapped under another master key.
    KeyRewrap,
    /// Data keys shredded.
    KeyShred,
    /// A repository found locked (its key provider reports the key unusable).
    KeyLock,
    /// A repository found unlocked again.
    KeyUnlock,
    /// The security or audit configuration written.
    SecurityConfigChange,
}

impl Category {
    /// The categories `audit.enable_rest` switches.
    #[must_use]
    pub fn is_rest(self) -> bool {
        matches!(
            self,
            Self::Authenticated
                | Self::FailedLogin
                | Self::MissingPrivileges
                | Self::GrantedPrivileges
                | Self::BadHeaders
                | Self::SslException
        )
    }

    /// Repository reads (subject to `read_watched_fields` and `read_ignore_users`).
    #[must_use]
    pub fn is_read(self) -> bool {
        self == Self::ObjectRead
    }

    /// Its name, as in the configuration and the events.
    #[must_use]
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The category named `s` (case-insensitive).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.trim().to_ascii_uppercase())).ok()
    }
}

/// One audit event, as printed and stored (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// What.
    pub category: Category,
    /// The node that logged it.
    pub node: String,
    /// The request, unique per node and process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The user; for FAILED_LOGIN the user name attempted, if any.
    #[serde(default)]
    pub user: Option<String>,
    /// The user's mapped roles (authenticated requests).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The client address after the xff rules.
    #[serde(default)]
    pub remote_address: Option<String>,
    /// HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request path, without the query string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Response status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The repository concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The object concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The permission checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privilege: Option<String>,
    /// Why (BAD_HEADERS, SSL_EXCEPTION, KEY_LOCK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The configuration document changed (`security`, `audit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// JSON Patch from the old document to the new one (`write_log_diffs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<Value>,
    /// Request headers without the sensitive ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// The JSON request body, redacted (`log_request_body`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<Value>,
}

impl Event {
    /// The timestamp, parsed.
    #[must_use]
    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.timestamp)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn new(category: Category, node: &str) -> Self {
        Self {
            timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            category,
            node: node.to_owned(),
            request_id: None,
            user: None,
            roles: Vec::new(),
            remote_address: None,
            method: None,
            path: None,
            status: None,
            repository: None,
            object: None,
            privilege: None,
            reason: None,
            document: None,
            diff: None,
            headers: None,
            request_body: None,
        }
    }
}

/// What the handler found out about a request, filled while it runs.
#[derive(Debug, Default)]
struct SlotData {
    user: Option<String>,
    roles: Vec<String>,
    auth: Option<bool>,
    privilege: Option<(String, bool)>,
    changes: Vec<(String, Option<Value>)>,
}

/// The per-request record the `Caller` extractor and the configuration writers fill.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<SlotData>>);

impl AuditSlot {
    fn with<R>(&self, f: impl FnOnce(&mut SlotData) -> R) -> R {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

tokio::task_local! {
    static SLOT: AuditSlot;
}

fn current(f: impl FnOnce(&mut SlotData)) {
    let _ = SLOT.try_with(|s| s.with(f));
}

/// The request's caller was authenticated as `user` with `roles`.
pub fn on_authenticated<'a>(user: &str, roles: impl IntoIterator<Item = &'a String>) {
    current(|d| {
        d.user = Some(user.to_owned());
        d.roles = roles.into_iter().cloned().collect();
        d.auth = Some(true);
    });
}

/// The request's authentication failed; `headers` give the attempted user name if basic
/// credentials name one (the password is never looked at).
pub fn on_failed_login(headers: &HeaderMap) {
    let attempted = crate::authn::basic_credentials(headers)
        .ok()
        .flatten()
        .map(|c| c.user.clone());
    current(|d| {
        d.user = attempted;
        d.auth = Some(false);
    });
}

/// The permission `action` was checked: `granted` or not.
pub fn on_privilege(action: &str, granted: bool) {
    current(|d| d.privilege = Some((action.to_owned(), granted)));
}

/// The node's audit logger: the configuration in force and the way to the sink.
#[derive(Debug)]
pub struct Auditor {
    node: String,
    config: RwLock<Arc<Versioned<AuditConfig>>>,
    tx: Mutex<Option<mpsc::Sender<sink::Msg>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    counters: Arc<sink::Counters>,
    capture: sink::Capture,
    requests: AtomicU64,
    process: u32,
    locks: Mutex<HashMap<String, bool>>,
    jwt_headers: RwLock<Vec<String>>,
    /// `server.audit.fail_closed`: a request is answered only once its events are stored.
    fail_closed: bool,
}

fn store_err(e: WriteError) -> Error {
    Error::System(e.to_string())
}

impl Auditor {
    /// Reads the audit configuration from the system repository and starts the sink.
    ///
    /// # Errors
    /// [`Error::Config`] for bad `server.audit` settings; [`Error::System`].
    pub async fn start(
        settings: &SinkSettings,
        system: &SystemStore,
        jwt_headers: Vec<String>,
    ) -> Result<Arc<Self>> {
        settings.validate().map_err(Error::Config)?;
        let config: Versioned<AuditConfig> = system.read(AUDIT_DOC).await.map_err(store_err)?;
        let node = settings.node();
        let counters = Arc::new(sink::Counters::default());
        let capture = sink::Capture::default();
        let (tx, task) = sink::spawn(
            system.encrypted(),
            node.clone(),
            settings.clone(),
            capture.clone(),
            counters.clone(),
        );
        let mut r = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut r);
        Ok(Arc::new(Self {
            node,
            config: RwLock::new(Arc::new(config)),
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            counters,
            capture,
            requests: AtomicU64::new(0),
            process: u32::from_be_bytes(r),
            locks: Mutex::default(),
            jwt_headers: RwLock::new(lowercase(jwt_headers)),
            fail_closed: settings.fail_closed,
        }))
    }

    /// Replaces the JWT header names kept out of the log (the `securityconfig` changed).
    pub fn set_jwt_headers(&self, headers: Vec<String>) {
        *self
            .jwt_headers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = lowercase(headers);
    }

    /// This node's id.
    #[must_use]
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The configuration in force and its generation.
    #[must_use]
    pub fn config(&self) -> Arc<Versioned<AuditConfig>> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn install(&self, fresh: Versioned<AuditConfig>) {
        let mut cur = self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if fresh.generation >= cur.generation {
            *cur = Arc::new(fresh);
        }
    }

    /// Reads the configuration again (with the rest of the state); on failure the previous one
    /// stays in force.
    pub async fn reload(&self, system: &SystemStore) {
        match system.read(AUDIT_DOC).await {
            Ok(fresh) => self.install(fresh),
            Err(e) => tracing::warn!(error = %e, "reloading the audit configuration failed"),
        }
    }

    /// Writes `value` as the configuration following generation `base`.
    ///
    /// # Errors
    /// 409 when another change came first; 500 for storage.
    pub async fn write_config(
        &self,
        system: &SystemStore,
        base: u64,
        value: AuditConfig,
    ) -> Result<(), ApiError> {
        let before = self.config();
        let generation = match system.write(AUDIT_DOC, base, &value).await {
            Ok(g) => g,
            Err(WriteError::Conflict) => return Err(ApiError::conflict("the audit configuration")),
            Err(e) => return Err(ApiError::internal(&e)),
        };
        self.install(Versioned { generation, value });
        let after = self.config();
        self.config_changed(AUDIT_DOC, &before.value, &after.value);
        Ok(())
    }

    /// Events dropped because the sink was stuck, since the start.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// From now on, keep a copy of every line written to stdout (tests; also when stdout
    /// printing is off).
    pub fn start_capture(&self) {
        let mut c = self
            .capture
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.get_or_insert_with(Vec::new);
    }

    /// The lines captured since [`start_capture`](Self::start_capture).
    #[must_use]
    pub fn captured(&self) -> Vec<String> {
        self.capture
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    /// Waits until every event queued so far is on stdout's queue and in an object.
    pub async fn flush(&self) {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(tx) = tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(sink::Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Flushes and stops the sink (at shutdown). Later events are dropped.
    pub async fn shutdown(&self) {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(tx);
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), t).await;
        }
    }

    /// Fail-closed mode: hands `events` to the sink, which writes them (with whatever else is
    /// queued) before answering. `true` once they are stored in the system repository; `false`
    /// when they could not be (the sink stopped, or the repository refused the object, in which
    /// case they are kept and retried like any batch).
    async fn send_durable(&self, events: &[Event]) -> bool {
        if events.is_empty() {
            return true;
        }
        let lines = events
            .iter()
            .filter_map(|e| {
                let day = e.time().unwrap_or_else(Utc::now).date_naive();
                Some((serde_json::to_string(e).ok()?, day))
            })
            .collect();
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(tx) = tx else { return false };
        let (done, wait) = oneshot::channel();
        // Waiting for room (instead of dropping) is the point of this mode.
        if tx.send(sink::Msg::Durable(lines, done)).await.is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }

    fn send(&self, e: &Event) {
        let Ok(line) = serde_json::to_string(e) else {
            return;
        };
        let day = e.time().unwrap_or_else(Utc::now).date_naive();
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match tx.as_ref() {
            Some(tx) => {
                if tx.try_send(sink::Msg::Event(line, day)).is_err() {
                    self.counters.drop_one("the audit queue is full");
                }
            }
            None => self.counters.drop_one("the audit sink has stopped"),
        }
    }

    /// A configuration document was written: `before` → `after`. Inside a request the event
    /// carries the request's user and address; otherwise it is logged on its own.
    pub fn config_changed<T: Serialize>(&self, document: &str, before: &T, after: &T) {
        let cfg = self.config();
        let diff = cfg.value.compliance.write_log_diffs.then(|| {
            let (a, b) = (
                serde_json::to_value(before).unwrap_or(Value::Null),
                serde_json::to_value(after).unwrap_or(Value::Null),
            );
            let mut d = serde_json::to_value(json_patch::diff(&a, &b)).unwrap_or(Value::Null);
            redact(&mut d);
            d
        });
        let inside = SLOT
            .try_with(|s| s.with(|d| d.changes.push((document.to_owned(), diff.clone()))))
            .is_ok();
        if !inside && wanted(&cfg.value, Category::SecurityConfigChange, None, &[]) {
            let mut e = Event::new(Category::SecurityConfigChange, &self.node);
            e.document = Some(document.to_owned());
            e.diff = diff;
            self.send(&e);
        }
    }

    /// A failed TLS handshake from `peer`.
    pub fn ssl_exception(&self, peer: Option<SocketAddr>, reason: &str) {
        let cfg = self.config();
        if wanted(&cfg.value, Category::SslException, None, &[]) {
            let mut e = Event::new(Category::SslException, &self.node);
            e.remote_address = peer.map(|p| p.ip().to_canonical().to_string());
            e.reason = Some(reason.to_owned());
            self.send(&e);
        }
    }

    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{n:x}", self.process)
    }

    fn observe_lock(&self, ctx: &Ctx, repo: &str, reason: Option<String>) -> Option<Event> {
        let locked = reason.is_some();
        let before = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(repo.to_owned(), locked);
        let category = match (before, locked) {
            (Some(false) | None, true) => Category::KeyLock,
            (Some(true), false) => Category::KeyUnlock,
            _ => return None,
        };
        let cfg = self.config();
        let mut e = ctx.event(category, &self.node);
        e.repository = Some(repo.to_owned());
        e.reason = reason;
        wanted(
            &cfg.value,
            category,
            e.user.as_deref(),
            &ctx.request_names(None),
        )
        .then_some(e)
    }

    fn sensitive_header(&self, name: &str) -> bool {
        const WORDS: [&str; 7] = [
            "auth", "cookie", "token", "secret", "key", "password", "jwt",
        ];
        WORDS.iter().any(|w| name.contains(w))
            || self
                .jwt_headers
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .any(|h| h == name)
    }
}

fn lowercase(headers: Vec<String>) -> Vec<String> {
    headers
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect()
}

/// The `jwt_header` names of the configured JWT domains: never logged.
#[must_use]
pub fn jwt_headers(config: &crate::config::ServerConfig) -> Vec<String> {
    config
        .domains()
        .into_iter()
        .filter_map(|(_, d)| {
            d.http_authenticator
                .config
                .get("jwt_header")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Replaces the values of sensitive fields (password, hash, secret, token, …) in a JSON value,
/// including JSON Patch operations whose `path` ends in such a field.
pub fn redact(v: &mut Value) {
    const WORDS: [&str; 9] = [
        "password",
        "hash",
        "secret",
        "token",
        "passphrase",
        "credential",
        "private_key",
        "access_key",
        "api_key",
    ];
    let sensitive = |k: &str| {
        let k = k.to_ascii_lowercase();
        WORDS.iter().any(|w| k.contains(w))
    };
    match v {
        Value::Object(m) => {
            let op_on_secret = m
                .get("path")
                .and_then(Value::as_str)
                .and_then(|p| p.rsplit('/').next())
                .is_some_and(sensitive);
            for (k, x) in m.iter_mut() {
                if sensitive(k) || (op_on_secret && k == "value") {
                    *x = Value::String("<redacted>".into());
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Whether `cfg` wants an event of `category` by `user` for a request named by `names` (path,
/// `METHOD path`, privilege).
fn wanted(cfg: &AuditConfig, category: Category, user: Option<&str>, names: &[String]) -> bool {
    let any = |patterns: &[String], s: &str| patterns.iter().any(|p| wildcard_match(p, s));
    if !cfg.enabled
        || cfg.audit.disabled_rest_categories.contains(&category)
        || user.is_some_and(|u| any(&cfg.audit.ignore_users, u))
        || names.iter().any(|n| any(&cfg.audit.ignore_requests, n))
    {
        return false;
    }
    if category.is_rest() {
        cfg.audit.enable_rest
    } else if category == Category::SecurityConfigChange {
        cfg.compliance.enabled && cfg.compliance.internal_config
    } else {
        cfg.compliance.enabled
    }
}

/// Whether the compliance section watches this repository event.
fn watched(
    cfg: &AuditConfig,
    category: Category,
    user: Option<&str>,
    repo: &str,
    object: Option<&str>,
) -> bool {
    let c = &cfg.compliance;
    let any = |patterns: &[String], s: &str| patterns.iter().any(|p| wildcard_match(p, s));
    if category.is_read() {
        if user.is_some_and(|u| any(&c.read_ignore_users, u)) {
            return false;
        }
        c.read_watched_fields.is_empty()
            || c.read_watched_fields.iter().any(|(r, objects)| {
                wildcard_match(r, repo)
                    && (objects.is_empty() || object.is_none_or(|o| any(objects, o)))
            })
    } else {
        !user.is_some_and(|u| any(&c.write_ignore_users, u))
            && (c.write_watched_indices.is_empty() || any(&c.write_watched_indices, repo))
    }
}

/// The request as the middleware saw it.
#[derive(Debug, Clone)]
struct Ctx {
    request_id: String,
    method: Method,
    path: String,
    remote: Option<IpAddr>,
    status: u16,
    user: Option<String>,
    roles: Vec<String>,
    headers: BTreeMap<String, String>,
    body: Option<Value>,
}

impl Ctx {
    fn event(&self, category: Category, node: &str) -> Event {
        let mut e = Event::new(category, node);
        e.request_id = Some(self.request_id.clone());
        e.user.clone_from(&self.user);
        e.roles.clone_from(&self.roles);
        e.remote_address = self.remote.map(|r| r.to_string());
        e.method = Some(self.method.to_string());
        e.path = Some(self.path.clone());
        e.status = Some(self.status);
        e.headers = Some(self.headers.clone());
        e.request_body.clone_from(&self.body);
        e
    }

    fn request_names(&self, privilege: Option<&str>) -> Vec<String> {
        let mut v = vec![self.path.clone(), format!("{} {}", self.method, self.path)];
        v.extend(privilege.map(str::to_owned));
        v
    }
}

/// The repository event of a route, if it is one.
fn repository_category(method: &Method, route: &str) -> Option<Category> {
    const OBJECT: &str = "/_snapshot/{repo}/_objects/{*path}";
    Some(match (method.as_str(), route) {
        ("GET" | "HEAD", OBJECT) | ("GET", "/_snapshot/{repo}/_objects") => Category::ObjectRead,
        ("PUT", OBJECT) => Category::ObjectWrite,
        ("DELETE", OBJECT) => Category::ObjectDelete,
        ("PUT" | "POST", "/_snapshot/{repo}") => Category::RepositoryRegister,
        ("DELETE", "/_snapshot/{repo}") => Category::RepositoryDelete,
        ("POST", "/_snapshot/{repo}/_keys/_rotate") => Category::KeyRotate,
        ("POST", "/_snapshot/{repo}/_keys/_rewrap") => Category::KeyRewrap,
        ("POST", "/_snapshot/{repo}/_keys/_shred") => Category::KeyShred,
        _ => return None,
    })
}

/// What is wrong with the request's headers, if anything (BAD_HEADERS).
fn bad_headers(app: &App, peer: Option<IpAddr>, headers: &HeaderMap) -> Vec<String> {
    let mut bad = Vec::new();
    for v in headers.get_all(header::AUTHORIZATION) {
        if v.len() > crate::authn::jwt::MAX_TOKEN_BYTES {
            bad.push(format!(
                "Authorization header longer than {} bytes",
                crate::authn::jwt::MAX_TOKEN_BYTES
            ));
        } else if v.to_str().is_err() {
            bad.push("Authorization header is not visible ASCII".into());
        } else if !v.as_bytes().contains(&b' ') {
            bad.push("Authorization header without a scheme".into());
        }
    }
    if bad.is_empty() && crate::authn::basic_credentials(headers).is_err() {
        bad.push("malformed Basic credentials".into());
    }
    let runtime = app.runtime();
    let xff = &runtime.config.config.dynamic.http.xff;
    if xff.enabled
        && let Some(p) = peer
        && headers.contains_key(xff.remote_ip_header.as_str())
        && runtime.authn.client_ip(Some(p), headers) == Some(p.to_canonical())
    {
        bad.push(format!(
            "{} header from {} which is not a trusted proxy",
            xff.remote_ip_header,
            p.to_canonical()
        ));
    }
    bad
}

/// The audit layer: `axum::middleware::from_fn_with_state(app, audit::middleware)`, applied
/// after every route is added.
pub async fn middleware(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let audit = app.audit.clone();
    let cfg = audit.config();
    if !cfg.value.enabled {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let headers = req.headers();
    let remote = app.authn().client_ip(peer, headers);
    let bad = bad_headers(&app, peer, headers);
    let kept: BTreeMap<String, String> = headers
        .iter()
        .filter(|(k, _)| !audit.sensitive_header(k.as_str()))
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
        .collect();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut params: HashMap<String, String> = HashMap::new();
    let (mut parts, body) = req.into_parts();
    if let Ok(p) =
        <RawPathParams as axum::extract::FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
    {
        params = p
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    }
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let is_object = route.as_deref().is_some_and(|r| r.contains("_objects"));
    let small = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > 0 && n <= MAX_LOGGED_BODY);
    let (body, logged) = if cfg.value.audit.log_request_body && !is_object && small {
        match axum::body::to_bytes(body, MAX_LOGGED_BODY).await {
            Ok(b) => {
                let logged = serde_json::from_slice::<Value>(&b).ok().map(|mut v| {
                    redact(&mut v);
                    v
                });
                (Body::from(b), logged)
            }
            Err(_) => (Body::empty(), None),
        }
    } else {
        (body, None)
    };
    let req = Request::from_parts(parts, body);
    let slot = AuditSlot::default();
    let response = SLOT.scope(slot.clone(), next.run(req)).await;
    let data = slot.with(std::mem::take);
    let granted = data.privilege.as_ref().is_some_and(|p| p.1);
    let ctx = Ctx {
        request_id: audit.request_id(),
        method,
        path,
        remote,
        status: response.status().as_u16(),
        user: data.user.clone(),
        roles: data.roles.clone(),
        headers: kept,
        body: logged,
    };
    let repo = params.get("repo").cloned();
    let object = params.get("path").cloned();
    let mut events = audit.request_done(
        &cfg.value,
        &ctx,
        data,
        &bad,
        route.as_deref(),
        repo.clone(),
        object,
    );
    // The lock state of the repository the request touched. The handler has just opened it, so
    // this is a cached lookup, not a provider call; a request that was refused, or whose
    // repository could not be opened, is not looked at.
    let status = ctx.status;
    if let Some(repo) = repo
        && granted
        && status != 404
        && (status < 500 || status == 503)
        && let Ok(store) = app.repository(&repo).await
    {
        events.extend(audit.observe_lock(&ctx, &repo, store.repository().lock_reason()));
    }
    if !audit.fail_closed {
        for e in &events {
            audit.send(e);
        }
        return response;
    }
    if audit.send_durable(&events).await {
        return response;
    }
    tracing::error!(
        request_id = %ctx.request_id,
        "fail-closed audit: the request's events could not be stored; answering 503"
    );
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_exception",
        "the audit log could not record this request (server.audit.fail_closed); it may have taken effect",
    )
    .into_response()
}

impl Auditor {
    #[allow(clippy::too_many_arguments)]
    fn request_done(
        &self,
        cfg: &AuditConfig,
        ctx: &Ctx,
        data: SlotData,
        bad: &[String],
        route: Option<&str>,
        repo: Option<String>,
        object: Option<String>,
    ) -> Vec<Event> {
        let privilege = data.privilege.as_ref().map(|p| p.0.as_str());
        let names = ctx.request_names(privilege);
        let user = ctx.user.as_deref();
        let mut out = Vec::new();
        let mut emit = |e: Event| {
            if wanted(cfg, e.category, e.user.as_deref(), &names) {
                out.push(e);
            }
        };
        for reason in bad {
            let mut e = ctx.event(Category::BadHeaders, &self.node);
            e.reason = Some(reason.clone());
            emit(e);
        }
        match data.auth {
            Some(true) => emit(ctx.event(Category::Authenticated, &self.node)),
            Some(false) => emit(ctx.event(Category::FailedLogin, &self.node)),
            None => {}
        }
        if let Some((action, granted)) = &data.privilege {
            let category = if *granted {
                Category::GrantedPrivileges
            } else {
                Category::MissingPrivileges
            };
            let mut e = ctx.event(category, &self.node);
            e.privilege = Some(action.clone());
            e.repository.clone_from(&repo);
            emit(e);
            if *granted
                && let Some(category) = route.and_then(|r| repository_category(&ctx.method, r))
                && let Some(repo) = &repo
                && watched(cfg, category, user, repo, object.as_deref())
            {
                let mut e = ctx.event(category, &self.node);
                e.privilege = Some(action.clone());
                e.repository = Some(repo.clone());
                e.object.clone_from(&object);
                emit(e);
            }
        }
        for (document, diff) in data.changes {
            let mut e = ctx.event(Category::SecurityConfigChange, &self.node);
            e.document = Some(document);
            e.diff = diff;
            emit(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_covers_fields_and_patch_operations() {
        let mut v = json!({
            "password": "p", "current_password": "q", "users": [{"hash": "$argon2id$x", "name": "bob"}],
            "ops": [{"op": "add", "path": "/internalusers/bob/hash", "value": "$2y$abc"},
                    {"op": "add", "path": "/internalusers/bob", "value": {"hash": "$2y$def", "backend_roles": []}}],
            "crypto_settings": {"settings": {"token": "t", "key_file": "/k"}}
        });
        redact(&mut v);
        let s = v.to_string();
        for secret in ["\"p\"", "\"q\"", "argon2id", "$2y$", "\"t\""] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert!(s.contains("bob") && s.contains("/k"), "{s}");
    }

    /// Producers never wait: with the sink task not running (a current-thread runtime that is
    /// not yielded to), events beyond the queue are dropped and counted at once, and the queued
    /// ones still arrive.
    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_blocking_the_producer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let system = crate::state::temp_system(dir.path()).await;
        let settings: SinkSettings =
            serde_json::from_value(json!({ "queue": 16, "stdout": false })).expect("settings");
        let auditor = Auditor::start(&settings, &system, Vec::new())
            .await
            .expect("auditor");
        auditor.start_capture();
        for i in 0..20 {
            auditor.config_changed("doc", &i, &(i + 1));
        }
        assert_eq!(auditor.dropped(), 4);
        auditor.flush().await;
        assert_eq!(auditor.captured().len(), 16);
    }

    #[test]
    fn categories_round_trip_by_name() {
        assert_eq!(Category::parse("failed_login"), Some(Category::FailedLogin));
        assert_eq!(Category::FailedLogin.name(), "FAILED_LOGIN");
        assert_eq!(Category::parse("nope"), None);
    }
}
