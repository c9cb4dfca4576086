//! The OpenAPI 3.1 document of the HTTP API, served at `GET /_openapi.json`.
//!
//! The document is not written by hand: every handler carries a `#[utoipa::path]` attribute,
//! [`crate::api::routes`] registers the handlers through `utoipa_axum::routes!`, and both the
//! router ([`crate::api::router`]) and the document ([`openapi`]) are split from that one
//! [`OpenApiRouter`](utoipa_axum::router::OpenApiRouter). A route cannot be served without
//! being documented, and a documented operation cannot lack a handler.
//!
//! `GET /_openapi.json` answers without authentication, like the health check: the document
//! describes the API's shape (paths, parameters, body schemas, statuses) and holds no
//! configuration, user, repository or key.
//!
//! This module also holds the schema types of bodies whose Rust types live in other crates
//! (the registration request, the key listing), and the reusable error responses, each with
//! the [`ErrorBody`] schema.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{OpenApi as _, ToSchema};

use crate::error::{ApiError, ErrorBody};

/// The name of the HTTP basic security scheme in the document.
pub const BASIC: &str = "basic";
/// The name of the HTTP bearer (JWT) security scheme in the document.
pub const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    components(schemas(ErrorBody)),
    tags(
        (name = "cluster", description = "The node: identity, health, the caller, this document"),
        (name = "repositories", description = "Registering, reading, verifying and unregistering repositories"),
        (name = "objects", description = "Objects of a repository, encrypted on their way in and decrypted on their way out"),
        (name = "keys", description = "Data keys of a repository: list, rotate, re-wrap, shred"),
    )
)]
struct Base;

/// The OpenAPI document of every route [`crate::api::router`] serves, with the security
/// schemes `basic` and `bearer` (JWT) required on every operation that does not say otherwise.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, paths) = crate::api::routes().split_for_parts();
    let mut doc = Base::openapi();
    doc.merge(paths);
    doc.info = InfoBuilder::new()
        .title("encrypt-repo")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The repository service of encrypt-repo: client-side encrypting object-storage \
             repositories behind OpenSearch-security-style authentication (HTTP basic against \
             internal users, or a JWT bearer token) and authorization (roles, role mappings, \
             action groups). Errors have OpenSearch's shape (the ErrorBody schema).",
        ))
        .license(Some(utoipa::openapi::License::new(env!(
            "CARGO_PKG_LICENSE"
        ))))
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BASIC,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
    );
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    doc.security = Some(vec![
        SecurityRequirement::new(BASIC, Vec::<String>::new()),
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
    ]);
    // axum's catch-all segments (`{*path}`) are plain parameters (`{path}`) in OpenAPI.
    doc.paths.paths = std::mem::take(&mut doc.paths.paths)
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    doc
}

/// The document as served, serialized once.
fn served() -> Option<&'static Bytes> {
    static DOC: OnceLock<Option<Bytes>> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_vec(&openapi()).ok().map(Bytes::from))
        .as_ref()
}

/// This OpenAPI document (no authentication).
#[utoipa::path(
    get,
    path = "/_openapi.json",
    tag = "cluster",
    operation_id = "openapi",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
        InternalError,
    )
)]
pub async fn document() -> Response {
    match served() {
        Some(doc) => {
            let mut r = Response::new(axum::body::Body::from(doc.clone()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        None => ApiError::internal(&"the OpenAPI document could not be serialized").into_response(),
    }
}

// --- reusable error responses: one type per status, each with the ErrorBody schema ---

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
        .into()
}

macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident = $status:expr, $description:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                BTreeMap::from([($status.as_u16().to_string(), error_response($description))])
            }
        }
    )*};
}

error_responses! {
    /// 400 in the document.
    BadRequest = StatusCode::BAD_REQUEST,
        "The request is invalid: a body that does not parse or has unknown fields, a bad name, path or setting, or a condition the repository's storage cannot check atomically (If-Match on fs); the reason names it";
    /// 401 in the document.
    Unauthorized = StatusCode::UNAUTHORIZED,
        "No credentials, or credentials that are refused; with WWW-Authenticate when a basic domain challenges. A client or user blocked after failed logins gets 429 with Retry-After instead";
    /// 403 in the document.
    Forbidden = StatusCode::FORBIDDEN,
        "The caller's roles lack the permission the reason names (or the repository is read-only)";
    /// 404 in the document, for a repository.
    RepositoryNotFound = StatusCode::NOT_FOUND,
        "No repository is registered under this name";
    /// 404 in the document, for a repository or an object in it.
    ObjectNotFound = StatusCode::NOT_FOUND,
        "No such repository, or no such object in it";
    /// 404 in the document, for a repository or a data key.
    KeyNotFound = StatusCode::NOT_FOUND,
        "No such repository, or no such data key in its keyring";
    /// 409 in the document.
    Conflict = StatusCode::CONFLICT,
        "The stored state was changed concurrently; read it again and retry";
    /// 412 in the document (for operations that take `If-Match` / `If-None-Match`).
    PreconditionFailed = StatusCode::PRECONDITION_FAILED,
        "A precondition (If-Match, If-None-Match) does not hold";
    /// 408 in the document (for operations with a request body).
    RequestTimeout = StatusCode::REQUEST_TIMEOUT,
        "The request body stalled: no bytes for server.limits.body_stall_timeout_seconds; nothing was stored and the connection is closed";
    /// 429 in the document.
    TooManyRequests = StatusCode::TOO_MANY_REQUESTS,
        "Too many at once: the user has server.limits.max_uploads_per_user uploads in progress, or the client or user is blocked after failed logins; Retry-After says when to try again";
    /// 413 in the document.
    PayloadTooLarge = StatusCode::PAYLOAD_TOO_LARGE,
        "The body is too large: a JSON body over 2 MB, or a conditional object upload over 16 MiB";
    /// 416 in the document.
    RangeNotSatisfiable = StatusCode::RANGE_NOT_SATISFIABLE,
        "The Range header is not one bytes=a-b, a- or -n range, or lies outside the object";
    /// 422 in the document.
    Unverifiable = StatusCode::UNPROCESSABLE_ENTITY,
        "Stored data cannot be decrypted or failed verification (tampered, or its data key is shredded)";
    /// 500 in the document.
    InternalError = StatusCode::INTERNAL_SERVER_ERROR,
        "An internal error; the detail is in the server log only";
    /// 502 in the document.
    UpstreamFailed = StatusCode::BAD_GATEWAY,
        "The storage service or the key provider failed; the detail is in the server log only";
    /// 503 in the document.
    Locked = StatusCode::SERVICE_UNAVAILABLE,
        "The repository is locked: its key provider reports the master key unusable";
}

// --- schema types of bodies whose Rust types live in other crates or are built as JSON ---

/// `GET /`: who answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RootInfo {
    /// Always `encrypt-repo`.
    pub name: String,
    /// Always `encrypt-repo`.
    pub cluster_name: String,
    /// The software.
    pub version: RootVersion,
    /// One line about the service.
    pub tagline: String,
}

/// The `version` member of [`RootInfo`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RootVersion {
    /// Always `encrypt-repo`.
    pub distribution: String,
    /// The server's version.
    pub number: String,
}

/// `GET /_plugins/_security/health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Always null.
    pub message: Option<String>,
    /// Always `strict`.
    pub mode: String,
    /// `UP`.
    pub status: String,
}

/// `GET /_plugins/_security/authinfo`: the caller as the node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthInfo {
    /// The user in the security plugin's `User [name=…, backend_roles=[…], …]` form.
    pub user: String,
    /// The user name.
    pub user_name: String,
    /// Always null.
    pub user_requested_tenant: Option<String>,
    /// The client address (after X-Forwarded-For resolution when configured).
    pub remote_address: Option<String>,
    /// Backend roles (from the internal user or the JWT).
    pub backend_roles: Vec<String>,
    /// Always empty.
    pub custom_attribute_names: Vec<String>,
    /// The security roles the caller is mapped to.
    pub roles: Vec<String>,
    /// Tenants the caller's roles name, with write access (`true`) or read only.
    pub tenants: BTreeMap<String, bool>,
    /// Always null.
    pub principal: Option<String>,
    /// Always `"0"`.
    pub peer_certificates: String,
    /// Always null.
    pub sso_logout_url: Option<String>,
}

/// `{"acknowledged": true}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acknowledged {
    /// Always true.
    pub acknowledged: bool,
}

/// A key provider and its settings: the crypto plugin's `crypto_settings` (the Rust type is
/// `encrypt_repo_store::CryptoSettings`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "key_provider_name": "main",
    "key_provider_type": "local",
    "settings": { "key_file": "/etc/encrypt-repo/main.key" }
}))]
pub struct CryptoSettings {
    /// A name for the key provider, for people.
    pub key_provider_name: String,
    /// The provider type: `local`, `passphrase`, `aws-kms`, `openbao`, `exec`.
    pub key_provider_type: String,
    /// Provider settings. They say where a secret is (`…_file`, `…_env`, `…_command`), never
    /// the secret itself: settings that look like secrets are refused.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// A repository registration, as sent to `PUT /_snapshot/{repo}` and as read back (the Rust
/// type is `encrypt_repo_store::RegistrationRequest`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "type": "fs",
    "settings": { "location": "/srv/repos/main" },
    "encrypted": true,
    "crypto_settings": {
        "key_provider_name": "main",
        "key_provider_type": "local",
        "settings": { "key_file": "/etc/encrypt-repo/main.key" }
    }
}))]
pub struct RegistrationRequest {
    /// The storage service.
    #[serde(rename = "type")]
    pub store_type: StoreType,
    /// Storage settings (`location`; `bucket`, `container`, `url`, `base_path`, …). Never
    /// credentials: the server reads those from its environment.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Whether objects are encrypted; `false` passes data through unchanged.
    pub encrypted: bool,
    /// The key provider; required when `encrypted`. Read back as null when absent.
    #[serde(default)]
    pub crypto_settings: Option<CryptoSettings>,
    /// Plaintext chunk size in bytes: a power of two from 65536 to 16777216 (default 1 MiB).
    #[serde(default)]
    #[schema(minimum = 65536, maximum = 16777216)]
    pub chunk_size: Option<u64>,
    /// Escrow (disaster-recovery) providers, each holding a wrapped copy of every data key.
    #[serde(default)]
    pub escrow: Vec<CryptoSettings>,
    /// Bind each object's key to its path (default true).
    #[serde(default)]
    pub path_binding: Option<bool>,
}

/// The storage service of a [`RegistrationRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreType {
    /// A directory under one of the server's `fs_roots` (`settings.location`).
    Fs,
    /// Amazon S3 or a compatible service (`settings.bucket` or `settings.url`).
    S3,
    /// Azure Blob Storage (`settings.container` or `settings.url`).
    Azure,
    /// Google Cloud Storage (`settings.bucket` or `settings.url`).
    Gcs,
}

/// `POST /_snapshot/{repo}/_verify`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verified {
    /// The nodes that verified the repository (`local`).
    pub nodes: BTreeMap<String, VerifiedNode>,
}

/// One node of [`Verified`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifiedNode {
    /// The node's name.
    pub name: String,
}

/// `PUT` of an object: what was stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectWritten {
    /// `created`.
    pub result: String,
    /// The object's path in the repository.
    pub path: String,
    /// Plaintext bytes received.
    pub size: u64,
}

/// `DELETE` of an object.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectDeleted {
    /// `deleted`.
    pub result: String,
    /// The object's path in the repository.
    pub path: String,
}

/// One object of a listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectInfo {
    /// The object's path in the repository.
    pub path: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// RFC 3339 time of the last write.
    #[schema(format = DateTime)]
    pub last_modified: String,
    /// The storage service's entity tag, when it gives one.
    pub e_tag: Option<String>,
}

/// `GET /_snapshot/{repo}/_objects`: objects (and, with `delimiter=/`, common prefixes)
/// whose paths start with `prefix`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectList {
    /// The objects, by path.
    pub objects: Vec<ObjectInfo>,
    /// With `delimiter=/`: the "directories" one level below the prefix, each ending in `/`.
    pub common_prefixes: Vec<String>,
    /// True when the listing stopped at its limit of 100000 objects.
    pub truncated: bool,
}

/// `GET /_snapshot/{repo}/_keys`: the keyring, without key material.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// The repository id (32 hex digits), bound into every object key.
    pub repository_id: String,
    /// Whether objects are encrypted.
    pub encrypted: bool,
    /// Whether the repository is locked (its key provider reports the key unusable).
    pub locked: bool,
    /// The main key provider, when encrypted.
    pub provider: Option<KeyProvider>,
    /// Escrow providers (`type:name`).
    pub escrow: Vec<String>,
    /// The data keys.
    pub data_keys: Vec<DataKey>,
}

/// A key provider in [`Keys`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyProvider {
    /// The provider type.
    #[serde(rename = "type")]
    pub provider_type: String,
    /// Which master key (a file, a KMS key id, a transit key name), never the key.
    pub master_key: String,
}

/// One data key of [`Keys`] (the Rust type is `encrypt_repo_store::DataKeyInfo`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataKey {
    /// The data key's id (32 hex digits).
    pub id: String,
    /// When it was created, seconds since the Unix epoch.
    pub created_unix: u64,
    /// When it was shredded, if it was.
    pub shredded_unix: Option<u64>,
    /// Who holds a wrapped copy: `[provider type, master key]` pairs, main copy first.
    #[schema(value_type = Vec<Vec<String>>)]
    pub wrapped_by: Vec<(String, String)>,
    /// True while a re-wrap is in progress for this record.
    pub rewrap_pending: bool,
}

/// `POST /_snapshot/{repo}/_keys/_rewrap`'s answer (the Rust type is
/// `encrypt_repo_store::RewrapReport`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewrapReport {
    /// Keyring records now wrapped by the new provider.
    pub rewrapped: u64,
    /// Tombstones of shredded keys, left as they are.
    pub shredded: u64,
    /// The provider the repository moved from (`type:name`).
    pub from: String,
    /// The provider it moved to (`type:name`).
    pub to: String,
}

/// `POST /_snapshot/{repo}/_keys/_shred`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Shredded {
    /// Always true.
    pub acknowledged: bool,
    /// Data keys destroyed by this call.
    pub shredded: u64,
}

/// The bytes of an object, as sent and as read back (`application/octet-stream`).
#[derive(Debug)]
pub struct ObjectBytes;

impl utoipa::PartialSchema for ObjectBytes {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .description(Some("The object's bytes"))
            .into()
    }
}

impl ToSchema for ObjectBytes {}
