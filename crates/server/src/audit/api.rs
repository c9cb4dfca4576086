//! `/_plugins/_security/api/audit`: GET the configuration, PUT `config`, PATCH (RFC 6902),
//! with the seed's shapes. Permission `restapi:admin/audit` (a cluster permission; `all_access`
//! has it).
//!
//! - GET → `{"_readonly": [...], "config": {...}}`.
//! - PUT `/audit/config` with the whole configuration → `{"status":"OK","message":"'config' updated."}`.
//! - PATCH `/audit` with operations on the GET document (`/config/enabled`, …) →
//!   `{"status":"OK","message":"Resource updated."}`; applied to a copy, so when one operation
//!   fails nothing changes.
//! - A change to a field listed in `_readonly`, or a PUT body carrying `_readonly` / `config`
//!   → 409 `{"status":"error","reason":"Invalid configuration","invalid_keys":{"keys":"…"}}`.
//! - Any other invalid field → 400 naming it. A concurrent change → 409 (the write is
//!   conditional on the generation read).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::config::{self, AuditConfig, Invalid, READONLY};
use crate::api::{Caller, RawBody};
use crate::app::App;
use crate::error::ApiError;
use crate::secapi::{apply_patch, parse_body, parse_patch};

/// The permission of these endpoints.
pub const PERMISSION: &str = "restapi:admin/audit";

/// The routes, for `api::router`.
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(get_audit, patch_audit))
        .routes(routes!(put_audit_config))
}

fn document(cfg: &AuditConfig) -> Value {
    json!({ "_readonly": READONLY, "config": cfg })
}

fn refused(e: Invalid) -> Response {
    match e {
        Invalid::Field(reason) => ApiError::bad_request(reason).into_response(),
        Invalid::ReadOnly(keys) => (
            StatusCode::CONFLICT,
            Json(json!({
                "status": "error",
                "reason": "Invalid configuration",
                "invalid_keys": { "keys": keys.join(",") }
            })),
        )
            .into_response(),
    }
}

/// The audit configuration.
#[utoipa::path(
    get,
    path = "/_plugins/_security/api/audit",
    tag = "security",
    responses(
        (status = 200, description = "`_readonly` and `config`", body = Object),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "no restapi:admin/audit", body = crate::error::ErrorBody),
    )
)]
async fn get_audit(State(app): State<Arc<App>>, caller: Caller) -> Result<Response, ApiError> {
    caller.cluster(PERMISSION)?;
    Ok(Json(document(&app.audit.config().value)).into_response())
}

/// Replaces the audit configuration.
#[utoipa::path(
    put,
    path = "/_plugins/_security/api/audit/config",
    tag = "security",
    request_body(content = AuditConfig, description = "the whole configuration"),
    responses(
        (status = 200, description = "`{\"status\":\"OK\",\"message\":\"'config' updated.\"}`", body = Object),
        (status = 400, description = "an invalid field, named", body = crate::error::ErrorBody),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "no restapi:admin/audit", body = crate::error::ErrorBody),
        (status = 409, description = "a read-only field changed, or a concurrent change", body = Object),
    )
)]
async fn put_audit_config(
    State(app): State<Arc<App>>,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    caller.cluster(PERMISSION)?;
    let value = parse_body(&body)?;
    let current = app.audit.config();
    let parsed = match config::parse(value, &current.value) {
        Ok(p) => p,
        Err(e) => return Ok(refused(e)),
    };
    app.audit
        .write_config(&app.system, current.generation, parsed)
        .await?;
    Ok(Json(json!({ "status": "OK", "message": "'config' updated." })).into_response())
}

/// Changes the audit configuration with an RFC 6902 JSON Patch on the GET document.
#[utoipa::path(
    patch,
    path = "/_plugins/_security/api/audit",
    tag = "security",
    request_body(content = Object, description = "JSON Patch operations, paths such as `/config/enabled`"),
    responses(
        (status = 200, description = "`{\"status\":\"OK\",\"message\":\"Resource updated.\"}`", body = Object),
        (status = 400, description = "not a patch, a failed operation, or an invalid field, named", body = crate::error::ErrorBody),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "no restapi:admin/audit", body = crate::error::ErrorBody),
        (status = 409, description = "a read-only field changed, or a concurrent change", body = Object),
    )
)]
async fn patch_audit(
    State(app): State<Arc<App>>,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    caller.cluster(PERMISSION)?;
    let patch = parse_patch(&body)?;
    let current = app.audit.config();
    // Applied to a copy: when one operation fails nothing changes.
    let doc = apply_patch(&document(&current.value), &patch)?;
    if doc.get("_readonly") != Some(&json!(READONLY)) {
        return Ok(refused(Invalid::ReadOnly(vec!["_readonly".into()])));
    }
    let Value::Object(mut top) = doc else {
        return Err(ApiError::bad_request("the document must stay an object"));
    };
    top.remove("_readonly");
    if let Some(k) = top.keys().find(|k| *k != "config") {
        return Err(ApiError::bad_request(format!("{k}: unknown field")));
    }
    let config = top.remove("config").unwrap_or(Value::Null);
    let parsed = match config::parse(config, &current.value) {
        Ok(p) => p,
        Err(e) => return Ok(refused(e)),
    };
    app.audit
        .write_config(&app.system, current.generation, parsed)
        .await?;
    Ok(Json(json!({ "status": "OK", "message": "Resource updated." })).into_response())
}
