//! The crate's error type and the JSON error responses.
//!
//! Every error a client sees has OpenSearch's shape:
//!
//! ```json
//! { "error": { "root_cause": [ { "type": "…", "reason": "…" } ], "type": "…", "reason": "…" },
//!   "status": 400 }
//! ```
//!
//! Reasons are written for the client: they name the repository, the object or the setting,
//! never a key, a password, a token, a file system path of the server or a backend's message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop the service from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The first start needs the admin password.
    #[error(
        "first start: no admin password; set ENCRYPT_REPO_ADMIN_PASSWORD or ENCRYPT_REPO_ADMIN_PASSWORD_FILE (there is no default password)"
    )]
    NoAdminPassword,
    /// The system repository could not be opened or read.
    #[error("system repository: {0}")]
    System(String),
    /// Listening or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An error answer: a status, an OpenSearch error type and a reason for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The OpenSearch-style error type (`repository_missing_exception`, …).
    pub kind: &'static str,
    /// A reason safe to show the client.
    pub reason: String,
    /// Send `WWW-Authenticate: Basic realm="OpenSearch Security"` (a basic challenge).
    pub challenge: bool,
    /// Send `Retry-After: <seconds>` (429 of a blocked login, 503 of a full server).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, type and reason.
    pub fn new(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            reason: reason.into(),
            challenge: false,
            retry_after: None,
        }
    }

    /// 429 for a client or user blocked by the failed-login limiter, with `Retry-After`.
    #[must_use]
    pub fn too_many_failed_logins(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "security_exception",
            format!("too many failed logins; try again in {retry_after_secs} s"),
        );
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// 400.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            reason,
        )
    }

    /// 401 without a challenge.
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "security_exception",
            "authentication required",
        )
    }

    /// 403 naming the permission that is missing.
    pub fn forbidden(action: &str, user: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "security_exception",
            format!("no permissions for [{action}] and User [name={user}]"),
        )
    }

    /// 404 for a repository.
    pub fn repository_missing(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "repository_missing_exception",
            format!("[{name}] missing"),
        )
    }

    /// 404 for an object.
    pub fn object_missing(repo: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "resource_not_found_exception",
            format!("object [{path}] not found in repository [{repo}]"),
        )
    }

    /// 409: someone else changed the state first.
    pub fn conflict(what: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "version_conflict_engine_exception",
            format!("{what} was changed concurrently; read it again and retry"),
        )
    }

    /// 500 with a generic reason; the detail goes to the log only.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "internal error; see the server log",
        )
    }

    /// The JSON body.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self.error_body()).unwrap_or(serde_json::Value::Null)
    }

    /// The JSON body as its documented type ([`ErrorBody`], the `ErrorBody` schema of the
    /// OpenAPI document).
    #[must_use]
    pub fn error_body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                root_cause: vec![ErrorCause {
                    kind: self.kind.to_owned(),
                    reason: self.reason.clone(),
                }],
                kind: self.kind.to_owned(),
                reason: self.reason.clone(),
            },
            status: self.status.as_u16(),
        }
    }
}

/// The body of every error answer, in OpenSearch's shape. The body and the OpenAPI schema
/// come from this one type, so they cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "error": {
        "root_cause": [{ "type": "repository_missing_exception", "reason": "[main] missing" }],
        "type": "repository_missing_exception",
        "reason": "[main] missing"
    },
    "status": 404
}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
    /// The HTTP status, repeated.
    pub status: u16,
}

/// The `error` member of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// The cause (one, repeating `type` and `reason`).
    pub root_cause: Vec<ErrorCause>,
    /// The OpenSearch-style error type (`repository_missing_exception`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// A reason safe to show the client.
    pub reason: String,
}

/// One entry of [`ErrorDetail::root_cause`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorCause {
    /// The error type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The reason.
    pub reason: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"OpenSearch Security\""),
            );
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

/// Maps a repository error to an answer. Storage and provider details stay in the log.
pub(crate) fn from_store(repo: &str, path: Option<&str>, e: encrypt_repo_store::Error) -> ApiError {
    use encrypt_repo_store::Error as E;
    match e {
        E::Store(object_store::Error::NotFound { .. }) => {
            ApiError::object_missing(repo, path.unwrap_or(""))
        }
        E::Store(s) => from_object_store(repo, path, s),
        E::RegistrationConflict { field, .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "repository_exception",
            format!(
                "[{repo}] is already registered with a different {field}; changing it would make existing data unreadable"
            ),
        ),
        E::Setting { setting, problem } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "repository_exception",
            format!("[{repo}] invalid setting {setting}: {problem}"),
        ),
        E::Locked { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "repository_locked_exception",
            format!("[{repo}] is locked: its key provider reports the key unusable"),
        ),
        E::ReadOnly(_) => ApiError::new(
            StatusCode::FORBIDDEN,
            "repository_exception",
            format!("[{repo}] is read-only"),
        ),
        E::Reserved(p) => ApiError::bad_request(format!(
            "[{p}] is inside the reserved prefix .encrypt-repo/"
        )),
        E::Range { message, .. } => ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            message,
        ),
        E::UnknownDataKey(id) => ApiError::new(
            StatusCode::NOT_FOUND,
            "resource_not_found_exception",
            format!("data key {id} is not in the keyring of [{repo}]"),
        ),
        E::Object { .. }
        | E::MissingDataKey { .. }
        | E::DataKey { .. }
        | E::DataKeyShredded { .. }
        | E::ChunkSizeMismatch { .. } => {
            tracing::warn!(repository = repo, error = %e, "object failed verification");
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "verification_exception",
                format!(
                    "object [{}] in [{repo}] cannot be decrypted or failed verification",
                    path.unwrap_or("")
                ),
            )
        }
        E::Keys(
            k @ (encrypt_repo_keys::Error::UnknownProvider { .. }
            | encrypt_repo_keys::Error::Setting { .. }
            | encrypt_repo_keys::Error::WrongMasterKey { .. }),
        ) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "repository_exception",
            format!("[{repo}] {k}"),
        ),
        // A key file or passphrase command named in the client's crypto_settings that cannot
        // be read, created or run: the request's fault, not an upstream failure. The file
        // name and the I/O error stay in the log (no oracle for files on the server).
        E::Keys(k @ encrypt_repo_keys::Error::Io { .. }) => {
            tracing::warn!(repository = repo, error = %k, "key provider file or command");
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "repository_exception",
                format!(
                    "[{repo}] crypto_settings: a file or command the key provider needs cannot be read, created or run; see the server log"
                ),
            )
        }
        E::Keys(k @ encrypt_repo_keys::Error::KeyUnavailable { .. }) => {
            tracing::warn!(repository = repo, error = %k, "key unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "repository_locked_exception",
                format!("[{repo}] the key provider reports the key unusable"),
            )
        }
        E::Keys(k) => {
            tracing::warn!(repository = repo, error = %k, "key provider error");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "key_provider_exception",
                format!("[{repo}] the key provider failed; see the server log"),
            )
        }
        other => ApiError::internal(&other),
    }
}

/// Maps a storage error.
pub(crate) fn from_object_store(
    repo: &str,
    path: Option<&str>,
    e: object_store::Error,
) -> ApiError {
    use object_store::Error as E;
    match &e {
        E::NotFound { .. } => ApiError::object_missing(repo, path.unwrap_or("")),
        E::Precondition { .. } | E::NotModified { .. } => ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "precondition failed",
        ),
        E::AlreadyExists { .. } => ApiError::conflict(path.unwrap_or("the object")),
        E::InvalidPath { .. } => ApiError::bad_request("invalid object path"),
        E::Generic { source, .. } => {
            // The encrypting store wraps its own errors in Generic.
            if let Some(s) = source.downcast_ref::<encrypt_repo_store::Error>() {
                return from_store_ref(repo, path, s);
            }
            if unstorable_name(source.as_ref()) {
                tracing::info!(repository = repo, error = %e, "name refused by the storage");
                return ApiError::bad_request(format!(
                    "[{repo}] the storage cannot store an object named [{}]",
                    path.unwrap_or("")
                ));
            }
            tracing::warn!(repository = repo, error = %e, "storage error");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "storage_exception",
                format!("[{repo}] the storage service failed; see the server log"),
            )
        }
        _ => {
            tracing::warn!(repository = repo, error = %e, "storage error");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "storage_exception",
                format!("[{repo}] the storage service failed; see the server log"),
            )
        }
    }
}

/// Whether a storage error is a local file system refusing the name (too long, or not a valid
/// file name): the request's fault, not the storage's.
fn unstorable_name(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        // std maps ENAMETOOLONG to InvalidFilename.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidFilename
        {
            return true;
        }
        next = e.source();
    }
    false
}

fn from_store_ref(repo: &str, path: Option<&str>, e: &encrypt_repo_store::Error) -> ApiError {
    use encrypt_repo_store::Error as E;
    let status = |s, k, r: String| ApiError::new(s, k, r);
    match e {
        E::Locked { .. } => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "repository_locked_exception",
            format!("[{repo}] is locked: its key provider reports the key unusable"),
        ),
        E::Range { message, .. } => status(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            message.clone(),
        ),
        E::Reserved(p) => ApiError::bad_request(format!(
            "[{p}] is inside the reserved prefix .encrypt-repo/"
        )),
        E::ReadOnly(_) => status(
            StatusCode::FORBIDDEN,
            "repository_exception",
            format!("[{repo}] is read-only"),
        ),
        E::Keys(_) => {
            tracing::warn!(repository = repo, error = %e, "key provider error");
            status(
                StatusCode::BAD_GATEWAY,
                "key_provider_exception",
                format!("[{repo}] the key provider failed; see the server log"),
            )
        }
        _ => {
            tracing::warn!(repository = repo, error = %e, "object failed verification");
            status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "verification_exception",
                format!(
                    "object [{}] in [{repo}] cannot be decrypted or failed verification",
                    path.unwrap_or("")
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file system with shorter names than the service allows (eCryptfs: 143 bytes) refuses
    /// the name deep in object_store's error chain: still the request's fault, 400.
    #[test]
    fn a_name_the_file_system_refuses_is_400_not_502() {
        let refused = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from_raw_os_error(36)), // ENAMETOOLONG
        };
        let e = from_object_store("r", Some("a/long-name"), refused);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.reason
                .contains("cannot store an object named [a/long-name]"),
            "{}",
            e.reason
        );
        let other = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        };
        assert_eq!(
            from_object_store("r", None, other).status,
            StatusCode::BAD_GATEWAY
        );
    }
}
