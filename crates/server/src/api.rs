//! The HTTP API (axum). Every route but the health check authenticates, then checks the action
//! documented in [`crate::security`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use encrypt_repo_store::{CryptoSettings, RegistrationRequest, Repository, Shred};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as ObjPath;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, WriteMultipart,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::conditional::{self, Conditions, MAX_CONDITIONAL_PUT, PutCondition};
use crate::error::{ApiError, from_object_store, from_store};
use crate::security::{InternalUser, SecurityModel, Subject, actions};

type Shared = Arc<App>;
type ApiResult<T = Response> = Result<T, ApiError>;

/// Bytes per part of an object upload; with [`UPLOAD_CONCURRENCY`] parts in flight, an upload
/// holds at most about 4 × 5 MiB of body in memory, whatever the object's size.
pub const UPLOAD_PART: usize = 5 << 20;
/// Parts of one upload in flight at once.
pub const UPLOAD_CONCURRENCY: usize = 3;
/// Largest byte position a `Range` header may name: 2^32 chunks × 16 MiB, the largest object
/// the container format allows.
pub const MAX_RANGE_BOUND: u64 = 1 << 56;
/// Most entries one listing returns.
pub const MAX_LIST: usize = 100_000;

/// The router of a node.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/_plugins/_security/health", get(health))
        .route("/_plugins/_security/authinfo", get(authinfo))
        .route(
            "/_plugins/_security/api/internalusers/{name}",
            put(put_user).get(get_user),
        )
        .route("/_snapshot", get(get_all_repositories))
        .route("/_snapshot/", get(get_all_repositories))
        .route(
            "/_snapshot/{repo}",
            put(put_repository)
                .get(get_repository)
                .delete(delete_repository),
        )
        .route("/_snapshot/{repo}/_verify", post(verify_repository))
        .route("/_snapshot/{repo}/_objects", get(list_objects))
        .route(
            "/_snapshot/{repo}/_objects/{*path}",
            put(put_object)
                .get(get_object)
                .head(head_object)
                .delete(delete_object),
        )
        .route("/_snapshot/{repo}/_keys", get(get_keys))
        .route("/_snapshot/{repo}/_keys/_rotate", post(rotate_keys))
        .route("/_snapshot/{repo}/_keys/_rewrap", post(rewrap_keys))
        .route("/_snapshot/{repo}/_keys/_shred", post(shred_keys))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Defence in depth: no handler is meant to panic on any input, but if one did, the
        // client gets the generic 500 and the connection's other requests carry on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(app)
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal(&"a handler panicked").into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "resource_not_found_exception",
        "no handler for this method and path",
    )
}

/// A path parameter whose rejection is an API error.
struct P<T>(T);

impl<T, S> FromRequestParts<S> for P<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Self(t))
            .map_err(|_| ApiError::bad_request("invalid path parameter"))
    }
}

/// A small request body (JSON documents; at most axum's default 2 MB), whose rejection is an
/// API error. Object bodies are streamed instead.
struct RawBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|e| ApiError::new(e.status(), "illegal_argument_exception", e.body_text()))
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed_exception",
        "this method is not allowed on this path",
    )
}

/// An authenticated caller with the model it was authenticated against.
pub struct Caller {
    /// Who.
    pub subject: Subject,
    /// Mapped roles.
    pub roles: std::collections::BTreeSet<String>,
    model: Arc<SecurityModel>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("subject", &self.subject)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl Caller {
    fn cluster(&self, action: &str) -> ApiResult<()> {
        if self.model.allows_cluster(&self.roles, action) {
            Ok(())
        } else {
            Err(ApiError::forbidden(action, &self.subject.name))
        }
    }

    fn repository(&self, repo: &str, action: &str) -> ApiResult<()> {
        if self.model.allows_repository(&self.roles, repo, action) {
            Ok(())
        } else {
            Err(ApiError::forbidden(action, &self.subject.name))
        }
    }
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let client = app.authn.client_ip(peer, &parts.headers);
        let model = app.loaded().model.clone();
        let tls = parts
            .extensions
            .get::<Arc<axum_server::tls::TlsInfo>>()
            .cloned();
        let cert = tls
            .as_ref()
            .and_then(|t| t.peer_certificates.first())
            .map(Vec::as_slice);
        let subject = app
            .authn
            .authenticate_with_cert(&model, &parts.headers, parts.uri.query(), client, cert)
            .await?;
        let roles = model.roles_of(&subject);
        Ok(Self {
            subject,
            roles,
            model,
        })
    }
}

fn ok() -> Response {
    Json(json!({ "acknowledged": true })).into_response()
}

fn check_repo_name(name: &str) -> ApiResult<()> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['_', '.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_repository_name_exception",
            "repository names are 1-255 characters of a-z, A-Z, 0-9, '-', '_', '.', not starting with '_', '.' or '-'",
        ))
    }
}

/// A JSON body, with parse errors as 400 in the API's shape.
fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "parse_exception",
            format!("request body: {e}"),
        )
    })
}

async fn root(State(app): State<Shared>, caller: Caller) -> ApiResult {
    caller.cluster(actions::MONITOR_MAIN)?;
    let _ = app;
    Ok(Json(json!({
        "name": "encrypt-repo",
        "cluster_name": "encrypt-repo",
        "version": {
            "distribution": "encrypt-repo",
            "number": env!("CARGO_PKG_VERSION"),
        },
        "tagline": "client-side encrypting object-storage repositories",
    }))
    .into_response())
}

async fn health() -> Response {
    Json(json!({ "message": null, "mode": "strict", "status": "UP" })).into_response()
}

async fn authinfo(caller: Caller) -> Response {
    let s = &caller.subject;
    Json(json!({
        "user": format!("User [name={}, backend_roles={:?}, requestedTenant=null]", s.name, s.backend_roles),
        "user_name": s.name,
        "user_requested_tenant": null,
        "remote_address": s.remote_ip.map(|i| i.to_string()),
        "backend_roles": s.backend_roles,
        "custom_attribute_names": [],
        "roles": caller.roles,
        "tenants": caller.model.tenants_of(&caller.roles),
        "principal": null,
        "peer_certificates": "0",
        "sso_logout_url": null,
    }))
    .into_response()
}

// --- internal users (the minimum of the security REST API this issue needs) ---

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRequest {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    backend_roles: Vec<String>,
    #[serde(default)]
    opendistro_security_roles: Vec<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    description: Option<String>,
}

async fn put_user(
    State(app): State<Shared>,
    caller: Caller,
    P(name): P<String>,
    RawBody(body): RawBody,
) -> ApiResult {
    caller.cluster(actions::INTERNAL_USERS)?;
    let req: UserRequest = parse_json(&body)?;
    if name.is_empty()
        || name.len() > 255
        || name.contains(':')
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request("invalid user name"));
    }
    let hash = match (req.password, req.hash) {
        (Some(p), None) if !p.is_empty() => {
            let p = zeroize::Zeroizing::new(p);
            tokio::task::spawn_blocking(move || crate::password::hash(&p))
                .await
                .map_err(|e| ApiError::internal(&e))?
                .map_err(|e| ApiError::internal(&e))?
        }
        (None, Some(h)) if crate::password::is_supported(&h) => h,
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "hash: not an argon2id or bcrypt hash",
            ));
        }
        _ => {
            return Err(ApiError::bad_request(
                "exactly one of password (not empty) or hash is required",
            ));
        }
    };
    let loaded = app.loaded();
    let mut data = loaded.security.value.clone();
    if data.internalusers.get(&name).is_some_and(|u| u.reserved) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "security_exception",
            format!("resource '{name}' is reserved"),
        ));
    }
    let created = data
        .internalusers
        .insert(
            name.clone(),
            InternalUser {
                hash,
                backend_roles: req.backend_roles,
                opendistro_security_roles: req.opendistro_security_roles,
                attributes: req.attributes,
                description: req.description,
                ..InternalUser::default()
            },
        )
        .is_none();
    app.write_security(loaded.security.generation, data).await?;
    let (status, word) = if created {
        (StatusCode::CREATED, "CREATED")
    } else {
        (StatusCode::OK, "OK")
    };
    Ok((status, Json(json!({ "status": word, "message": format!("'{name}' {}", if created { "created" } else { "updated" }) }))).into_response())
}

async fn get_user(State(app): State<Shared>, caller: Caller, P(name): P<String>) -> ApiResult {
    caller.cluster(actions::INTERNAL_USERS)?;
    let loaded = app.loaded();
    let u = loaded
        .security
        .value
        .internalusers
        .get(&name)
        .filter(|u| !u.hidden)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "resource_not_found_exception",
                format!("user '{name}' not found"),
            )
        })?;
    Ok(Json(json!({ name: {
        "hash": "",
        "reserved": u.reserved,
        "hidden": u.hidden,
        "backend_roles": u.backend_roles,
        "opendistro_security_roles": u.opendistro_security_roles,
        "attributes": u.attributes,
        "description": u.description,
    }}))
    .into_response())
}

// --- repositories ---

fn public_registration(req: &RegistrationRequest) -> Value {
    let mut v = serde_json::to_value(req).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.entry("crypto_settings").or_insert(Value::Null);
    }
    v
}

async fn get_all_repositories(State(app): State<Shared>, caller: Caller) -> ApiResult {
    caller.cluster(actions::REPOSITORY_GET)?;
    let loaded = app.loaded();
    let all: serde_json::Map<String, Value> = loaded
        .registrations
        .value
        .iter()
        .map(|(k, v)| (k.clone(), public_registration(v)))
        .collect();
    Ok(Json(Value::Object(all)).into_response())
}

async fn get_repository(
    State(app): State<Shared>,
    caller: Caller,
    P(repo): P<String>,
) -> ApiResult {
    caller.cluster(actions::REPOSITORY_GET)?;
    let loaded = app.loaded();
    let req = loaded
        .registrations
        .value
        .get(&repo)
        .ok_or_else(|| ApiError::repository_missing(&repo))?;
    Ok(Json(json!({ repo: public_registration(req) })).into_response())
}

/// Names the first storage field of `a` that `b` changes.
fn storage_change(a: &RegistrationRequest, b: &RegistrationRequest) -> Option<String> {
    if a.store_type != b.store_type {
        return Some("type".into());
    }
    let keys: std::collections::BTreeSet<_> = a.settings.keys().chain(b.settings.keys()).collect();
    keys.into_iter()
        .find(|k| a.settings.get(*k) != b.settings.get(*k))
        .map(|k| format!("settings.{k}"))
}

async fn put_repository(
    State(app): State<Shared>,
    caller: Caller,
    P(repo): P<String>,
    RawBody(body): RawBody,
) -> ApiResult {
    caller.cluster(actions::REPOSITORY_PUT)?;
    check_repo_name(&repo)?;
    let req: RegistrationRequest = parse_json(&body)?;
    let loaded = app.loaded();
    if let Some(existing) = loaded.registrations.value.get(&repo) {
        if let Some(field) = storage_change(existing, &req) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "repository_exception",
                format!(
                    "[{repo}] is already registered with a different {field}; unregister it first"
                ),
            ));
        }
        if *existing == req {
            return Ok(ok());
        }
    }
    let backend = app.backend(&req)?;
    Repository::register(
        backend,
        req.clone(),
        &app.registry,
        encrypt_repo_store::RepositoryOptions::default(),
    )
    .await
    .map_err(|e| from_store(&repo, None, e))?;
    app.write_registration(&repo, loaded.registrations.generation_of(&repo), Some(req))
        .await?;
    app.forget(&repo);
    Ok(ok())
}

async fn delete_repository(
    State(app): State<Shared>,
    caller: Caller,
    P(repo): P<String>,
) -> ApiResult {
    caller.cluster(actions::REPOSITORY_DELETE)?;
    let loaded = app.loaded();
    if !loaded.registrations.value.contains_key(&repo) {
        return Err(ApiError::repository_missing(&repo));
    }
    app.write_registration(&repo, loaded.registrations.generation_of(&repo), None)
        .await?;
    app.forget(&repo);
    Ok(ok())
}

async fn verify_repository(
    State(app): State<Shared>,
    caller: Caller,
    P(repo): P<String>,
) -> ApiResult {
    caller.cluster(actions::REPOSITORY_VERIFY)?;
    let store = app.repository(&repo).await?;
    let r = store.repository();
    r.check_key_status()
        .await
        .map_err(|e| from_store(&repo, None, e))?;
    r.check_unlocked().map_err(|e| from_store(&repo, None, e))?;
    let mut nonce = [0u8; 8];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| ApiError::internal(&"no randomness"))?;
    let path = ObjPath::from(format!("tests-{}/verify", hex(&nonce)));
    let payload = Bytes::from_static(b"encrypt-repo verify");
    store
        .put(&path, payload.clone().into())
        .await
        .map_err(|e| from_object_store(&repo, Some(path.as_ref()), e))?;
    let back = async { store.get(&path).await?.bytes().await }.await;
    let _ = store.delete(&path).await;
    let back = back.map_err(|e| from_object_store(&repo, Some(path.as_ref()), e))?;
    if back != payload {
        return Err(ApiError::internal(&"verify: read back differs"));
    }
    Ok(Json(json!({ "nodes": { "local": { "name": "encrypt-repo" } } })).into_response())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// --- objects ---

fn object_path(path: &str) -> ApiResult<ObjPath> {
    let p = ObjPath::parse(path).map_err(|_| ApiError::bad_request("invalid object path"))?;
    if p.as_ref().is_empty() {
        return Err(ApiError::bad_request("invalid object path"));
    }
    if p.parts()
        .next()
        .is_some_and(|s| s.as_ref() == encrypt_repo_store::RESERVED_PREFIX)
    {
        return Err(ApiError::bad_request(
            "object paths may not start with the reserved prefix .encrypt-repo/",
        ));
    }
    Ok(p)
}

async fn put_object(
    State(app): State<Shared>,
    caller: Caller,
    P((repo, path)): P<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    caller.repository(&repo, actions::DATA_WRITE)?;
    let location = object_path(&path)?;
    let condition = PutCondition::from_conditions(&Conditions::from_headers(&headers)?)?;
    let store = app.repository(&repo).await?;
    if condition != PutCondition::None {
        return put_object_conditional(&app, &repo, &store, &location, condition, body).await;
    }
    let fail = |e| from_object_store(&repo, Some(location.as_ref()), e);
    let upload = store.put_multipart(&location).await.map_err(fail)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART);
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(_) => {
                let _ = writer.abort().await;
                return Err(ApiError::bad_request("the request body could not be read"));
            }
        };
        size += chunk.len() as u64;
        if let Err(e) = writer.wait_for_capacity(UPLOAD_CONCURRENCY).await {
            return Err(fail(e));
        }
        writer.put(chunk);
    }
    let result = writer.finish().await.map_err(fail)?;
    let mut r = (
        StatusCode::CREATED,
        Json(json!({ "result": "created", "path": location.as_ref(), "size": size })),
    )
        .into_response();
    if let Some(etag) = result.e_tag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        r.headers_mut().insert(header::ETAG, etag);
    }
    Ok(r)
}

/// A `PUT` with `If-None-Match: *` or `If-Match`: one conditional storage request, so the
/// body is read whole (at most [`MAX_CONDITIONAL_PUT`] bytes).
async fn put_object_conditional(
    app: &App,
    repo: &str,
    store: &encrypt_repo_store::EncryptedStore<crate::backend::Backend>,
    location: &ObjPath,
    condition: PutCondition,
    body: Body,
) -> ApiResult {
    let body = axum::body::to_bytes(body, MAX_CONDITIONAL_PUT)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "illegal_argument_exception",
                format!(
                    "a conditional PUT body is read whole and may be at most {MAX_CONDITIONAL_PUT} bytes (or could not be read)"
                ),
            )
        })?;
    let store_type = app
        .loaded()
        .registrations
        .value
        .get(repo)
        .map(|r| r.store_type.clone())
        .unwrap_or_default();
    let fail = |e| conditional::put_error(repo, location.as_ref(), &store_type, e);
    let mode = match condition {
        PutCondition::None => PutMode::Overwrite,
        PutCondition::Create => PutMode::Create,
        PutCondition::Update(e_tag) => PutCondition::update_mode(e_tag),
        PutCondition::UpdateAny => {
            let meta = store.head(location).await.map_err(fail)?;
            PutCondition::update_mode(meta.e_tag.ok_or_else(conditional::precondition_failed)?)
        }
    };
    let size = body.len();
    let opts = PutOptions {
        mode,
        ..PutOptions::default()
    };
    let result = store
        .put_opts(location, body.into(), opts)
        .await
        .map_err(fail)?;
    let mut r = (
        StatusCode::CREATED,
        Json(json!({ "result": "created", "path": location.as_ref(), "size": size })),
    )
        .into_response();
    if let Some(etag) = result.e_tag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        r.headers_mut().insert(header::ETAG, etag);
    }
    Ok(r)
}

/// A `GET`/`HEAD` whose `If-None-Match` matched: 304 with the entity tag.
fn not_modified(headers: &Conditions) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    if let Some(v) = headers
        .if_none_match
        .as_deref()
        .filter(|v| *v != "*" && !v.contains(','))
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// Maps a storage error of a conditional `GET`/`HEAD`.
fn get_error(repo: &str, path: &str, conditions: &Conditions, e: object_store::Error) -> Response {
    match e {
        object_store::Error::NotModified { .. } => not_modified(conditions),
        object_store::Error::Precondition { .. } => {
            conditional::precondition_failed().into_response()
        }
        other => from_object_store(repo, Some(path), other).into_response(),
    }
}

/// Parses one `bytes=` range. `Ok(None)` for no header.
fn parse_range(headers: &HeaderMap) -> ApiResult<Option<GetRange>> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            "unsupported Range header (one bytes=a-b, a- or -n range)",
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    let spec = s.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Err(bad());
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    // No object is larger than the format's limit (2^32 chunks of at most 16 MiB): a bound
    // beyond it is refused here, before any offset arithmetic.
    let num = |x: &str| {
        x.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= MAX_RANGE_BOUND)
            .ok_or_else(bad)
    };
    Ok(Some(match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, true) => GetRange::Offset(num(a)?),
        (true, false) => GetRange::Suffix(num(b)?),
        (false, false) => {
            let (start, end) = (num(a)?, num(b)?);
            if end < start {
                return Err(bad());
            }
            GetRange::Bounded(start..end.checked_add(1).ok_or_else(bad)?)
        }
        (true, true) => return Err(bad()),
    }))
}

fn meta_headers(r: &mut Response, meta: &object_store::ObjectMeta) {
    let h = r.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(etag) = meta
        .e_tag
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        h.insert(header::ETAG, etag);
    }
    if let Ok(v) = HeaderValue::from_str(
        &meta
            .last_modified
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    ) {
        h.insert(header::LAST_MODIFIED, v);
    }
}

async fn get_object(
    State(app): State<Shared>,
    caller: Caller,
    P((repo, path)): P<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    caller.repository(&repo, actions::DATA_READ)?;
    let location = object_path(&path)?;
    let range = parse_range(&headers)?;
    let conditions = Conditions::from_headers(&headers)?;
    let store = app.repository(&repo).await?;
    let partial = range.is_some();
    let opts = GetOptions {
        range,
        if_match: conditions.if_match.clone(),
        if_none_match: conditions.if_none_match.clone(),
        ..GetOptions::default()
    };
    let got = match store.get_opts(&location, opts).await {
        Ok(g) => g,
        Err(e) => return Ok(get_error(&repo, location.as_ref(), &conditions, e)),
    };
    let meta = got.meta.clone();
    let span = got.range.clone();
    let (repo2, loc2) = (repo.clone(), location.to_string());
    let stream = got.into_stream().map_err(move |e| {
        // The status line is gone: the connection is cut, and the log says why.
        tracing::warn!(repository = %repo2, object = %loc2, error = %e, "object stream failed");
        std::io::Error::other("object stream failed")
    });
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    meta_headers(&mut r, &meta);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(span.end - span.start),
    );
    if partial {
        let cr = format!(
            "bytes {}-{}/{}",
            span.start,
            span.end.saturating_sub(1),
            meta.size
        );
        if let Ok(v) = HeaderValue::from_str(&cr) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(r)
}

async fn head_object(
    State(app): State<Shared>,
    caller: Caller,
    P((repo, path)): P<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    caller.repository(&repo, actions::DATA_READ)?;
    let location = object_path(&path)?;
    let conditions = Conditions::from_headers(&headers)?;
    let store = app.repository(&repo).await?;
    let opts = GetOptions {
        head: true,
        if_match: conditions.if_match.clone(),
        if_none_match: conditions.if_none_match.clone(),
        ..GetOptions::default()
    };
    let meta = match store.get_opts(&location, opts).await {
        Ok(g) => g.meta,
        Err(e) => return Ok(get_error(&repo, location.as_ref(), &conditions, e)),
    };
    let mut r = Response::new(Body::empty());
    meta_headers(&mut r, &meta);
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    Ok(r)
}

async fn delete_object(
    State(app): State<Shared>,
    caller: Caller,
    P((repo, path)): P<(String, String)>,
) -> ApiResult {
    caller.repository(&repo, actions::DATA_DELETE)?;
    let location = object_path(&path)?;
    let store = app.repository(&repo).await?;
    let fail = |e| from_object_store(&repo, Some(location.as_ref()), e);
    store.head(&location).await.map_err(fail)?;
    store.delete(&location).await.map_err(fail)?;
    Ok(Json(json!({ "result": "deleted", "path": location.as_ref() })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    delimiter: Option<String>,
}

fn meta_json(m: &object_store::ObjectMeta) -> Value {
    json!({
        "path": m.location.as_ref(),
        "size": m.size,
        "last_modified": m.last_modified.to_rfc3339(),
        "e_tag": m.e_tag,
    })
}

async fn list_objects(
    State(app): State<Shared>,
    caller: Caller,
    P(repo): P<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    caller.repository(&repo, actions::DATA_READ)?;
    let Query(q) = query
        .map_err(|_| ApiError::bad_request("query: only prefix and delimiter are accepted"))?;
    let prefix = q.prefix.unwrap_or_default();
    // String prefixes, as S3: list the enclosing directory and filter.
    let dir = match prefix.rfind('/') {
        Some(i) => {
            ObjPath::parse(&prefix[..i]).map_err(|_| ApiError::bad_request("invalid prefix"))?
        }
        None => ObjPath::default(),
    };
    let store = app.repository(&repo).await?;
    let fail = |e| from_object_store(&repo, None, e);
    match q.delimiter.as_deref() {
        None | Some("") => {
            let mut objects = Vec::new();
            let mut truncated = false;
            let mut s = store.list(Some(&dir));
            while let Some(m) = s.next().await {
                let m = m.map_err(fail)?;
                if !m.location.as_ref().starts_with(&prefix) {
                    continue;
                }
                if objects.len() == MAX_LIST {
                    truncated = true;
                    break;
                }
                objects.push(m);
            }
            objects.sort_by(|a, b| a.location.cmp(&b.location));
            let objects: Vec<_> = objects.iter().map(meta_json).collect();
            Ok(
                Json(json!({ "objects": objects, "common_prefixes": [], "truncated": truncated }))
                    .into_response(),
            )
        }
        Some("/") => {
            let l = store.list_with_delimiter(Some(&dir)).await.map_err(fail)?;
            let objects: Vec<_> = l
                .objects
                .iter()
                .filter(|m| m.location.as_ref().starts_with(&prefix))
                .map(meta_json)
                .collect();
            let prefixes: Vec<_> = l
                .common_prefixes
                .iter()
                .map(|p| format!("{}/", p.as_ref()))
                .filter(|p| p.starts_with(&prefix))
                .collect();
            Ok(
                Json(
                    json!({ "objects": objects, "common_prefixes": prefixes, "truncated": false }),
                )
                .into_response(),
            )
        }
        Some(_) => Err(ApiError::bad_request("delimiter: only \"/\" is supported")),
    }
}

// --- keys ---

async fn get_keys(State(app): State<Shared>, caller: Caller, P(repo): P<String>) -> ApiResult {
    caller.repository(&repo, actions::KEYS_READ)?;
    let store = app.repository(&repo).await?;
    let r = store.repository();
    let keys = r
        .data_keys()
        .await
        .map_err(|e| from_store(&repo, None, e))?;
    let provider = r
        .provider()
        .map(|p| json!({ "type": p.type_name(), "master_key": p.master_key() }));
    Ok(Json(json!({
        "repository_id": r.id().to_hex(),
        "encrypted": r.is_encrypted(),
        "locked": r.lock_reason().is_some(),
        "provider": provider,
        "escrow": r.escrow_names(),
        "data_keys": keys,
    }))
    .into_response())
}

async fn rotate_keys(State(app): State<Shared>, caller: Caller, P(repo): P<String>) -> ApiResult {
    caller.repository(&repo, actions::KEYS_MANAGE)?;
    let store = app.repository(&repo).await?;
    store
        .repository()
        .check_unlocked()
        .map_err(|e| from_store(&repo, None, e))?;
    store.repository().rotate_now().await;
    Ok(ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RewrapRequest {
    crypto_settings: CryptoSettings,
}

async fn rewrap_keys(
    State(app): State<Shared>,
    caller: Caller,
    P(repo): P<String>,
    RawBody(body): RawBody,
) -> ApiResult {
    caller.repository(&repo, actions::KEYS_MANAGE)?;
    let req: RewrapRequest = parse_json(&body)?;
    let store = app.repository(&repo).await?;
    let report = store
        .repository()
        .rewrap(req.crypto_settings.clone(), &app.registry)
        .await
        .map_err(|e| from_store(&repo, None, e))?;
    // The re-wrap is done: the stored request must follow, whatever else changed meanwhile.
    let target = store.repository().registration().request.crypto_settings;
    loop {
        app.reload().await.map_err(|e| ApiError::internal(&e))?;
        let loaded = app.loaded();
        let Some(mut r) = loaded.registrations.value.get(&repo).cloned() else {
            break;
        };
        let mut settings = target.clone();
        if let Some(s) = &mut settings {
            // Keep the access settings the client gave (key file location, endpoint).
            for (k, v) in &req.crypto_settings.settings {
                s.settings.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        r.crypto_settings = settings;
        match app
            .write_registration(&repo, loaded.registrations.generation_of(&repo), Some(r))
            .await
        {
            Ok(()) => break,
            Err(e) if e.status == StatusCode::CONFLICT => continue,
            Err(e) => return Err(e),
        }
    }
    app.forget(&repo);
    Ok(Json(json!(report)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShredRequest {
    #[serde(default)]
    data_key_id: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn shred_keys(
    State(app): State<Shared>,
    caller: Caller,
    P(repo): P<String>,
    RawBody(body): RawBody,
) -> ApiResult {
    caller.repository(&repo, actions::KEYS_MANAGE)?;
    let req: ShredRequest = parse_json(&body)?;
    let which = match (req.data_key_id, req.all) {
        (Some(id), false) => Shred::One(
            encrypt_repo_format::DataKeyId::from_hex(&id)
                .ok_or_else(|| ApiError::bad_request("data_key_id: not 32 hex digits"))?,
        ),
        (None, true) => Shred::All,
        _ => {
            return Err(ApiError::bad_request(
                "exactly one of data_key_id or all: true is required",
            ));
        }
    };
    let store = app.repository(&repo).await?;
    let n = store
        .repository()
        .shred(which)
        .await
        .map_err(|e| from_store(&repo, None, e))?;
    Ok(Json(json!({ "acknowledged": true, "shredded": n })).into_response())
}
