//! The HTTP API (axum). Every route but the health check authenticates, then checks the action
//! documented in [`crate::security`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
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
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::conditional::{self, Conditions, MAX_CONDITIONAL_PUT, PutCondition};
use crate::error::{ApiError, from_object_store, from_store};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, KeyNotFound, Locked, ObjectNotFound,
    PayloadTooLarge, PreconditionFailed, RangeNotSatisfiable, RepositoryNotFound, RequestTimeout,
    TooManyRequests, Unauthorized, Unverifiable, UpstreamFailed,
};
use crate::security::{SecurityModel, Subject, actions};

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

/// Every route of a node, with its OpenAPI description: [`router`] serves them and
/// [`crate::openapi::openapi`] documents them, so neither can have a route the other lacks.
/// A module with routes of its own adds them here with one `.merge(module::routes())`.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(root))
        .routes(routes!(health))
        .routes(routes!(authinfo))
        .routes(routes!(crate::openapi::document))
        .routes(routes!(get_all_repositories))
        .routes(routes!(get_all_repositories_slash))
        .routes(routes!(put_repository, get_repository, delete_repository))
        .routes(routes!(verify_repository))
        .routes(routes!(list_objects))
        .routes(routes!(put_object, get_object, head_object, delete_object))
        .routes(routes!(get_keys))
        .routes(routes!(rotate_keys))
        .routes(routes!(rewrap_keys))
        .routes(routes!(shred_keys))
        .merge(crate::secapi::routes())
        .merge(crate::audit::api::routes())
}

/// The router of a node: [`routes()`] with the API's fallbacks for unknown paths and methods.
pub fn router(app: Arc<App>) -> Router {
    let audited = app.clone();
    let (routes, _) = routes().split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Defence in depth: no handler is meant to panic on any input, but if one did, the
        // client gets the generic 500 and the connection's other requests carry on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        // A stalled request body is a 408, whatever the handler made of the failed read.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::limits::body_stall,
        ))
        // Keep last: the audit layer must wrap every route (it sees the matched route).
        .layer(axum::middleware::from_fn_with_state(
            audited,
            crate::audit::middleware,
        ))
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
pub(crate) struct RawBody(pub(crate) Bytes);

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
    /// The model the caller was authenticated against.
    pub(crate) model: Arc<SecurityModel>,
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
    pub(crate) fn cluster(&self, action: &str) -> ApiResult<()> {
        let granted = self.model.allows_cluster(&self.roles, action);
        crate::audit::on_privilege(action, granted);
        if granted {
            Ok(())
        } else {
            Err(ApiError::forbidden(action, &self.subject.name))
        }
    }

    fn repository(&self, repo: &str, action: &str) -> ApiResult<()> {
        let granted = self.model.allows_repository(&self.roles, repo, action);
        crate::audit::on_privilege(action, granted);
        if granted {
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
        let authn = app.authn();
        let client = authn.client_ip(peer, &parts.headers);
        let model = app.loaded().model.clone();
        let tls = parts
            .extensions
            .get::<Arc<axum_server::tls::TlsInfo>>()
            .cloned();
        let cert = tls
            .as_ref()
            .and_then(|t| t.peer_certificates.first())
            .map(Vec::as_slice);
        let subject = authn
            .authenticate_with_cert(&model, &parts.headers, parts.uri.query(), client, cert)
            .await
            .inspect_err(|_| crate::audit::on_failed_login(&parts.headers))?;
        let roles = model.roles_of(&subject);
        crate::audit::on_authenticated(&subject.name, &roles);
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

/// The node's identity.
#[utoipa::path(get, path = "/", tag = "cluster",
    responses(
        (status = 200, description = "Who answers", body = crate::openapi::RootInfo),
        Unauthorized, Forbidden,
    )
)]
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

/// Liveness (no authentication).
#[utoipa::path(get, path = "/_plugins/_security/health", tag = "cluster", security(()),
    responses((status = 200, description = "The node is up", body = crate::openapi::Health))
)]
async fn health() -> Response {
    Json(json!({ "message": null, "mode": "strict", "status": "UP" })).into_response()
}

/// The authenticated caller.
#[utoipa::path(get, path = "/_plugins/_security/authinfo", tag = "cluster",
    responses(
        (status = 200, description = "The authenticated caller, its roles and tenants", body = crate::openapi::AuthInfo),
        Unauthorized,
    )
)]
async fn authinfo(
    caller: Caller,
    tls: Option<axum::Extension<Arc<axum_server::tls::TlsInfo>>>,
) -> Response {
    let s = &caller.subject;
    // How many certificates the client presented (and rustls verified), as OpenSearch reports.
    let peer_certificates = tls.map_or(0, |t| t.peer_certificates.len()).to_string();
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
        "peer_certificates": peer_certificates,
        "sso_logout_url": null,
    }))
    .into_response()
}

// --- repositories ---

/// A registration as callers see it: the local key file's name the server chose is its own
/// business.
fn public_registration(req: &RegistrationRequest) -> Value {
    let mut req = req.clone();
    for c in req.crypto_settings.iter_mut().chain(req.escrow.iter_mut()) {
        if c.key_provider_type == "local" {
            c.settings.remove(crate::declared::SERVER_KEY_FILE);
        }
    }
    let mut v = serde_json::to_value(&req).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.entry("crypto_settings").or_insert(Value::Null);
    }
    v
}

/// Lists every registration.
#[utoipa::path(get, path = "/_snapshot", tag = "repositories",
    responses(
        (status = 200, description = "Every registered repository by name",
            body = BTreeMap<String, crate::openapi::RegistrationRequest>),
        Unauthorized, Forbidden,
    )
)]
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

/// Lists every registration (as `GET /_snapshot`).
#[utoipa::path(get, path = "/_snapshot/", tag = "repositories",
    responses(
        (status = 200, description = "Every registered repository by name",
            body = BTreeMap<String, crate::openapi::RegistrationRequest>),
        Unauthorized, Forbidden,
    )
)]
async fn get_all_repositories_slash(app: State<Shared>, caller: Caller) -> ApiResult {
    get_all_repositories(app, caller).await
}

/// Reads one registration.
#[utoipa::path(get, path = "/_snapshot/{repo}", tag = "repositories",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")),
    responses(
        (status = 200, description = "The registration, under its name",
            body = BTreeMap<String, crate::openapi::RegistrationRequest>),
        Unauthorized, Forbidden, RepositoryNotFound,
    )
)]
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

/// Registers a repository, or changes its registration.
///
/// The first registration creates the repository's metadata in storage; a later one may not
/// change the storage type or settings.
#[utoipa::path(put, path = "/_snapshot/{repo}", tag = "repositories",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")),
    request_body(content = crate::openapi::RegistrationRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Registered (or already registered as asked)", body = crate::openapi::Acknowledged),
        BadRequest, Unauthorized, Forbidden, Conflict, PayloadTooLarge, Unverifiable,
        InternalError, UpstreamFailed, Locked,
    )
)]
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
    let existing = loaded.registrations.value.get(&repo);
    let resolved = app.resolve(&repo, &req, existing)?;
    let req = resolved.record;
    if let Some(existing) = existing {
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
    app.check_location(
        &repo,
        &resolved.storage.location,
        &loaded.registrations.value,
    )?;
    let backend = app
        .declared
        .backend(&resolved.storage, true)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "repository_exception", e))?;
    let mut req = req;
    if existing.is_none() {
        app.adopt_key_files(&repo, &backend, &mut req).await;
    }
    let (effective, options) = app.effective(&req)?;
    Repository::register(backend, effective, &app.registry, options)
        .await
        .map_err(|e| from_store(&repo, None, e))?;
    app.write_registration(&repo, loaded.registrations.generation_of(&repo), Some(req))
        .await?;
    app.forget(&repo);
    Ok(ok())
}

/// Unregisters a repository; its data stays in storage.
#[utoipa::path(delete, path = "/_snapshot/{repo}", tag = "repositories",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")),
    responses(
        (status = 200, description = "Unregistered", body = crate::openapi::Acknowledged),
        Unauthorized, Forbidden, RepositoryNotFound, Conflict, InternalError,
    )
)]
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

/// Verifies a repository.
///
/// Writes, reads back and deletes a test object.
#[utoipa::path(post, path = "/_snapshot/{repo}/_verify", tag = "repositories",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")),
    responses(
        (status = 200, description = "The repository can be written and read", body = crate::openapi::Verified),
        BadRequest, Unauthorized, Forbidden, RepositoryNotFound, Unverifiable, InternalError,
        UpstreamFailed, Locked,
    )
)]
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

/// The longest object path the service accepts, in bytes (S3's key limit).
pub const MAX_OBJECT_PATH: usize = 1024;

/// The longest segment of an object path, in bytes: 255 (a local file name) less room for the
/// staging suffix a local-disk upload writes next to it, so every backend can store it.
pub const MAX_OBJECT_SEGMENT: usize = 240;

fn object_path(path: &str) -> ApiResult<ObjPath> {
    if path.len() > MAX_OBJECT_PATH {
        return Err(ApiError::bad_request(format!(
            "object paths are at most {MAX_OBJECT_PATH} bytes (this one has {})",
            path.len()
        )));
    }
    let p = ObjPath::parse(path).map_err(|_| ApiError::bad_request("invalid object path"))?;
    if p.as_ref().is_empty() {
        return Err(ApiError::bad_request("invalid object path"));
    }
    if let Some(long) = p.parts().find(|s| s.as_ref().len() > MAX_OBJECT_SEGMENT) {
        return Err(ApiError::bad_request(format!(
            "each segment of an object path is at most {MAX_OBJECT_SEGMENT} bytes (one has {})",
            long.as_ref().len()
        )));
    }
    if p.parts()
        .next()
        .is_some_and(|s| encrypt_repo_store::is_reserved_segment(s.as_ref()))
    {
        return Err(ApiError::bad_request(
            "object paths may not start with the reserved prefix .encrypt-repo/ (in any letter case)",
        ));
    }
    Ok(p)
}

/// Stores an object.
///
/// The body is streamed and encrypted on its way in, whatever its size.
#[utoipa::path(put, path = "/_snapshot/{repo}/_objects/{*path}", tag = "objects",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"), ("path" = String, Path, description = "The object's path in the repository; may contain '/'; not under .encrypt-repo/", example = "docs/readme.txt"),
        ("If-Match" = Option<String>, Header, description = "Store only if the object's current ETag is this one (or, with *, only if it exists); 412 otherwise"),
        ("If-None-Match" = Option<String>, Header, description = "Only *: store only if no object is there yet; 412 otherwise")),
    request_body(content = crate::openapi::ObjectBytes, content_type = "application/octet-stream",
        description = "The object's bytes, any size"),
    responses(
        (status = 201, description = "Stored", body = crate::openapi::ObjectWritten,
            headers(("ETag" = String, description = "The storage service's entity tag, when it gives one"))),
        BadRequest, Unauthorized, Forbidden, RepositoryNotFound, RequestTimeout, PreconditionFailed,
        PayloadTooLarge, TooManyRequests, Unverifiable, InternalError, UpstreamFailed, Locked,
    )
)]
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
    // Counted from here to the answer, conditional or not: what a user's uploads can buffer.
    let _upload = app.uploads.begin(&caller.subject.name)?;
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
    Ok(created(&location, size, result.e_tag))
}

/// 201 for a stored object, with the storage service's entity tag when it gave one.
fn created(location: &ObjPath, size: u64, e_tag: Option<String>) -> Response {
    let mut r = (
        StatusCode::CREATED,
        Json(json!({ "result": "created", "path": location.as_ref(), "size": size })),
    )
        .into_response();
    if let Some(etag) = e_tag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        r.headers_mut().insert(header::ETAG, etag);
    }
    r
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
    Ok(created(location, size as u64, result.e_tag))
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

/// Reads an object, or one range of it.
///
/// The body is decrypted and verified as it streams.
#[utoipa::path(get, path = "/_snapshot/{repo}/_objects/{*path}", tag = "objects",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"), ("path" = String, Path, description = "The object's path in the repository; may contain '/'; not under .encrypt-repo/", example = "docs/readme.txt"),
        ("Range" = Option<String>, Header, description = "One range: bytes=a-b, bytes=a- or bytes=-n",
            example = "bytes=0-99"),
        ("If-Match" = Option<String>, Header, description = "412 unless the object's ETag is this one"),
        ("If-None-Match" = Option<String>, Header, description = "304 if the object's ETag is this one")),
    responses(
        (status = 200, description = "The whole object", content_type = "application/octet-stream", body = crate::openapi::ObjectBytes,
            headers(("Content-Length" = u64), ("Accept-Ranges" = String), ("ETag" = String),
                ("Last-Modified" = String))),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = crate::openapi::ObjectBytes,
            headers(("Content-Range" = String, description = "bytes a-b/size"), ("Content-Length" = u64),
                ("Accept-Ranges" = String), ("ETag" = String), ("Last-Modified" = String))),
        (status = 304, description = "If-None-Match matched: the object is unchanged",
            headers(("ETag" = String))),
        BadRequest, Unauthorized, Forbidden, ObjectNotFound, PreconditionFailed,
        RangeNotSatisfiable, Unverifiable, InternalError, UpstreamFailed, Locked,
    )
)]
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

/// Reads an object's size and tags, without its bytes.
#[utoipa::path(head, path = "/_snapshot/{repo}/_objects/{*path}", tag = "objects",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"), ("path" = String, Path, description = "The object's path in the repository; may contain '/'; not under .encrypt-repo/", example = "docs/readme.txt"),
        ("If-Match" = Option<String>, Header, description = "412 unless the object's ETag is this one"),
        ("If-None-Match" = Option<String>, Header, description = "304 if the object's ETag is this one")),
    responses(
        (status = 200, description = "The object exists",
            headers(("Content-Length" = u64, description = "Plaintext size"), ("Accept-Ranges" = String),
                ("ETag" = String), ("Last-Modified" = String))),
        (status = 304, description = "If-None-Match matched: the object is unchanged",
            headers(("ETag" = String))),
        BadRequest, Unauthorized, Forbidden, ObjectNotFound, PreconditionFailed, Unverifiable,
        InternalError, UpstreamFailed, Locked,
    )
)]
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

/// Deletes an object.
#[utoipa::path(delete, path = "/_snapshot/{repo}/_objects/{*path}", tag = "objects",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"), ("path" = String, Path, description = "The object's path in the repository; may contain '/'; not under .encrypt-repo/", example = "docs/readme.txt")),
    responses(
        (status = 200, description = "Deleted", body = crate::openapi::ObjectDeleted),
        BadRequest, Unauthorized, Forbidden, ObjectNotFound, Unverifiable, InternalError,
        UpstreamFailed, Locked,
    )
)]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only objects whose paths start with this string (not necessarily at a `/`).
    #[serde(default)]
    prefix: Option<String>,
    /// `/` to list one level (objects and common prefixes); absent or empty for everything
    /// below the prefix. No other delimiter is supported.
    #[serde(default)]
    #[param(example = "/")]
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

/// Lists objects.
#[utoipa::path(get, path = "/_snapshot/{repo}/_objects", tag = "objects",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"), ListQuery),
    responses(
        (status = 200, description = "The objects by path", body = crate::openapi::ObjectList),
        BadRequest, Unauthorized, Forbidden, RepositoryNotFound, Unverifiable, InternalError,
        UpstreamFailed, Locked,
    )
)]
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

/// Lists the keyring, without key material.
#[utoipa::path(get, path = "/_snapshot/{repo}/_keys", tag = "keys",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")),
    responses(
        (status = 200, description = "The provider and the data keys", body = crate::openapi::Keys),
        BadRequest, Unauthorized, Forbidden, RepositoryNotFound, Unverifiable, InternalError,
        UpstreamFailed, Locked,
    )
)]
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

/// Rotates the data key: new objects get a new one from now on.
#[utoipa::path(post, path = "/_snapshot/{repo}/_keys/_rotate", tag = "keys",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")),
    responses(
        (status = 200, description = "Rotated", body = crate::openapi::Acknowledged),
        BadRequest, Unauthorized, Forbidden, RepositoryNotFound, Unverifiable, InternalError,
        UpstreamFailed, Locked,
    )
)]
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

/// The body of a re-wrap.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RewrapRequest {
    /// The key provider to move every data key to.
    #[schema(value_type = crate::openapi::CryptoSettings)]
    crypto_settings: CryptoSettings,
}

/// Moves every data key to another key provider.
///
/// Each data key is re-wrapped (no data object is rewritten) and the registration follows.
#[utoipa::path(post, path = "/_snapshot/{repo}/_keys/_rewrap", tag = "keys",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")),
    request_body(content = RewrapRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Re-wrapped", body = crate::openapi::RewrapReport),
        BadRequest, Unauthorized, Forbidden, RepositoryNotFound, Conflict, PayloadTooLarge,
        Unverifiable, InternalError, UpstreamFailed, Locked,
    )
)]
async fn rewrap_keys(
    State(app): State<Shared>,
    caller: Caller,
    P(repo): P<String>,
    RawBody(body): RawBody,
) -> ApiResult {
    caller.repository(&repo, actions::KEYS_MANAGE)?;
    let req: RewrapRequest = parse_json(&body)?;
    let store = app.repository(&repo).await?;
    let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, "repository_exception", e);
    // A new key file for a local target, even under the same provider: a re-wrap to a local
    // provider is a master-key rotation.
    let target = app
        .declared
        .crypto_record("crypto_settings", &req.crypto_settings, &repo, None)
        .map_err(bad)?;
    let effective = app
        .declared
        .effective("crypto_settings", &target)
        .map_err(bad)?;
    let report = store
        .repository()
        .rewrap(effective, &app.registry)
        .await
        .map_err(|e| from_store(&repo, None, e))?;
    // The re-wrap is done: the stored request must follow, whatever else changed meanwhile.
    loop {
        app.reload().await.map_err(|e| ApiError::internal(&e))?;
        let loaded = app.loaded();
        let Some(mut r) = loaded.registrations.value.get(&repo).cloned() else {
            break;
        };
        r.crypto_settings = Some(target.clone());
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

/// The body of a shred: exactly one of `data_key_id` or `all: true`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ShredRequest {
    /// The data key to destroy (32 hex digits).
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{32}$")]
    data_key_id: Option<String>,
    /// Destroy every data key of the repository.
    #[serde(default)]
    all: bool,
}

/// Destroys data keys.
///
/// The objects they encrypted can never be read again.
#[utoipa::path(post, path = "/_snapshot/{repo}/_keys/_shred", tag = "keys",
    params(("repo" = String, Path, description = "The repository's registered name", example = "main",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")),
    request_body(content = ShredRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Shredded", body = crate::openapi::Shredded),
        BadRequest, Unauthorized, Forbidden, KeyNotFound, PayloadTooLarge, Unverifiable,
        InternalError, UpstreamFailed, Locked,
    )
)]
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
