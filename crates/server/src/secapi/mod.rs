//! The security REST API under `/_plugins/_security/api/` (the OpenSearch security plugin's
//! REST API of seed 004, adapted to repositories).
//!
//! | endpoint | methods | needs |
//! |---|---|---|
//! | `account` | GET, PUT | an authenticated user |
//! | `actiongroups[/{name}]` | GET, PUT, DELETE, PATCH | `restapi:admin/actiongroups` |
//! | `internalusers[/{name}]` | GET, PUT, DELETE, PATCH | `restapi:admin/internalusers` |
//! | `roles[/{name}]` | GET, PUT, DELETE, PATCH | `restapi:admin/roles` |
//! | `rolesmapping[/{name}]` | GET, PUT, DELETE, PATCH | `restapi:admin/rolesmapping` |
//! | `tenants[/{name}]` | GET, PUT, DELETE, PATCH | `restapi:admin/tenants` |
//! | `securityconfig` | GET; PUT, PATCH with `restapi.allow_securityconfig_modification` | `restapi:admin/config` |
//! | `cache` | DELETE | `restapi:admin/cache` |
//! | `ssl/certs` | GET | `restapi:admin/ssl/certs/info` |
//! | `ssl/http/reloadcerts` | PUT | `restapi:admin/ssl/certs/reload` |
//!
//! "needs" is the cluster permission that grants the endpoint; a role listed in
//! `restapi.roles_enabled` grants all of them (see [`access`]). `nodesdn`, `allowlist`,
//! `whitelist` and `ssl/transport/reloadcerts` answer 400 "not supported": encrypt-repo has no
//! node-to-node transport.

pub mod access;
mod other;
mod resources;
mod validate;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::Caller;
use crate::app::App;
use crate::error::ApiError;
use resources::Kind;

pub(crate) use other::redacted;
pub(crate) use resources::{apply_patch, parse_patch};
pub(crate) use validate::parse_body;

type Shared = Arc<App>;
type ApiResult<T = Response> = Result<T, ApiError>;

/// The `{"status", "message"}` body of a change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusMessage {
    /// `OK` or `CREATED`.
    pub status: String,
    /// What happened (`'x' created.`).
    pub message: String,
}

fn status_message(code: StatusCode, message: String) -> Response {
    let status = if code == StatusCode::CREATED {
        "CREATED"
    } else {
        "OK"
    };
    (
        code,
        axum::Json(StatusMessage {
            status: status.into(),
            message,
        }),
    )
        .into_response()
}

/// A resource name from the path; a bad one (not UTF-8) is a 400 in the API's shape.
struct Name(String);

impl<S: Send + Sync> FromRequestParts<S> for Name {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(n)| Self(n))
            .map_err(|_| ApiError::bad_request("invalid resource name in the path"))
    }
}

/// A request body (axum's 2 MB limit), rejections in the API's shape.
use crate::api::RawBody as Body;

/// Handlers of one resource type: GET/PATCH on the collection, GET/PUT/DELETE/PATCH on one
/// entry.
macro_rules! resource_handlers {
    ($res:ident, $kind:expr, $all:literal, $all_slash:literal, $one:literal, $perm:literal) => {
        utoipa_axum::paste! {
            #[utoipa::path(get, path = $all_slash, tag = "security",
                operation_id = concat!("get_all_", stringify!($res), "_slash"),
                description = concat!("As without the trailing slash (the seed's form). Needs `", $perm, "` or a role in `restapi.roles_enabled`."),
                responses(
                    (status = 200, description = "name → entry", body = Object),
                    (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
                    (status = 403, description = "not allowed", body = crate::error::ErrorBody)))]
            async fn [<get_all_ $res _slash>](State(app): State<Shared>, caller: Caller) -> ApiResult {
                resources::get_all(&app, &caller, $kind).await
            }

            #[utoipa::path(patch, path = $all_slash, tag = "security",
                operation_id = concat!("patch_all_", stringify!($res), "_slash"),
                description = concat!("As without the trailing slash (the seed's form). Needs `", $perm, "` or a role in `restapi.roles_enabled`."),
                request_body(content = Vec<Object>, description = "JSON Patch operations"),
                responses(
                    (status = 200, description = "applied", body = StatusMessage),
                    (status = 400, description = "invalid patch or result", body = crate::error::ErrorBody),
                    (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
                    (status = 403, description = "not allowed, reserved or static", body = crate::error::ErrorBody),
                    (status = 404, description = "hidden entry", body = crate::error::ErrorBody),
                    (status = 409, description = "changed concurrently", body = crate::error::ErrorBody)))]
            async fn [<patch_all_ $res _slash>](State(app): State<Shared>, caller: Caller, Body(body): Body) -> ApiResult {
                resources::patch_all(&app, &caller, $kind, &body).await
            }

            #[utoipa::path(get, path = $all, tag = "security",
                operation_id = concat!("get_all_", stringify!($res)),
                description = concat!("Every entry but hidden ones. Needs `", $perm, "` or a role in `restapi.roles_enabled`."),
                responses(
                    (status = 200, description = "name → entry", body = Object),
                    (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
                    (status = 403, description = "not allowed", body = crate::error::ErrorBody)))]
            async fn [<get_all_ $res>](State(app): State<Shared>, caller: Caller) -> ApiResult {
                resources::get_all(&app, &caller, $kind).await
            }

            #[utoipa::path(patch, path = $all, tag = "security",
                operation_id = concat!("patch_all_", stringify!($res)),
                description = concat!("RFC 6902 JSON Patch over `{name: entry}`, applied atomically. Needs `", $perm, "` or a role in `restapi.roles_enabled`."),
                request_body(content = Vec<Object>, description = "JSON Patch operations"),
                responses(
                    (status = 200, description = "applied", body = StatusMessage),
                    (status = 400, description = "invalid patch or result", body = crate::error::ErrorBody),
                    (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
                    (status = 403, description = "not allowed, reserved or static", body = crate::error::ErrorBody),
                    (status = 404, description = "hidden entry", body = crate::error::ErrorBody),
                    (status = 409, description = "changed concurrently", body = crate::error::ErrorBody)))]
            async fn [<patch_all_ $res>](State(app): State<Shared>, caller: Caller, Body(body): Body) -> ApiResult {
                resources::patch_all(&app, &caller, $kind, &body).await
            }

            #[utoipa::path(get, path = $one, tag = "security",
                operation_id = concat!("get_", stringify!($res)),
                description = concat!("One entry. Needs `", $perm, "` or a role in `restapi.roles_enabled`."),
                params(("name" = String, Path, description = "entry name")),
                responses(
                    (status = 200, description = "name → entry", body = Object),
                    (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
                    (status = 403, description = "not allowed", body = crate::error::ErrorBody),
                    (status = 404, description = "not found or hidden", body = crate::error::ErrorBody)))]
            async fn [<get_ $res>](State(app): State<Shared>, caller: Caller, Name(name): Name) -> ApiResult {
                resources::get_one(&app, &caller, $kind, &name).await
            }

            #[utoipa::path(put, path = $one, tag = "security",
                operation_id = concat!("put_", stringify!($res)),
                description = concat!("Create (201) or replace (200). Needs `", $perm, "` or a role in `restapi.roles_enabled`."),
                params(("name" = String, Path, description = "entry name")),
                request_body(content = Object, description = "the entry"),
                responses(
                    (status = 200, description = "replaced", body = StatusMessage),
                    (status = 201, description = "created", body = StatusMessage),
                    (status = 400, description = "invalid entry", body = crate::error::ErrorBody),
                    (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
                    (status = 403, description = "not allowed, reserved or static", body = crate::error::ErrorBody),
                    (status = 404, description = "hidden entry", body = crate::error::ErrorBody),
                    (status = 409, description = "changed concurrently", body = crate::error::ErrorBody)))]
            async fn [<put_ $res>](State(app): State<Shared>, caller: Caller, Name(name): Name, Body(body): Body) -> ApiResult {
                resources::put(&app, &caller, $kind, &name, &body).await
            }

            #[utoipa::path(delete, path = $one, tag = "security",
                operation_id = concat!("delete_", stringify!($res)),
                description = concat!("Delete. Needs `", $perm, "` or a role in `restapi.roles_enabled`."),
                params(("name" = String, Path, description = "entry name")),
                responses(
                    (status = 200, description = "deleted", body = StatusMessage),
                    (status = 400, description = "an invalid name", body = crate::error::ErrorBody),
                    (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
                    (status = 403, description = "not allowed, reserved or static", body = crate::error::ErrorBody),
                    (status = 404, description = "not found or hidden", body = crate::error::ErrorBody),
                    (status = 409, description = "changed concurrently", body = crate::error::ErrorBody)))]
            async fn [<delete_ $res>](State(app): State<Shared>, caller: Caller, Name(name): Name) -> ApiResult {
                resources::delete(&app, &caller, $kind, &name).await
            }

            #[utoipa::path(patch, path = $one, tag = "security",
                operation_id = concat!("patch_", stringify!($res)),
                description = concat!("RFC 6902 JSON Patch of one entry, applied atomically. Needs `", $perm, "` or a role in `restapi.roles_enabled`."),
                params(("name" = String, Path, description = "entry name")),
                request_body(content = Vec<Object>, description = "JSON Patch operations"),
                responses(
                    (status = 200, description = "applied", body = StatusMessage),
                    (status = 400, description = "invalid patch or result", body = crate::error::ErrorBody),
                    (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
                    (status = 403, description = "not allowed, reserved or static", body = crate::error::ErrorBody),
                    (status = 404, description = "not found or hidden", body = crate::error::ErrorBody),
                    (status = 409, description = "changed concurrently", body = crate::error::ErrorBody)))]
            async fn [<patch_ $res>](State(app): State<Shared>, caller: Caller, Name(name): Name, Body(body): Body) -> ApiResult {
                resources::patch_one(&app, &caller, $kind, &name, &body).await
            }
        }
    };
}

resource_handlers!(
    actiongroups,
    Kind::ActionGroups,
    "/_plugins/_security/api/actiongroups",
    "/_plugins/_security/api/actiongroups/",
    "/_plugins/_security/api/actiongroups/{name}",
    "restapi:admin/actiongroups"
);
resource_handlers!(
    internalusers,
    Kind::InternalUsers,
    "/_plugins/_security/api/internalusers",
    "/_plugins/_security/api/internalusers/",
    "/_plugins/_security/api/internalusers/{name}",
    "restapi:admin/internalusers"
);
resource_handlers!(
    roles,
    Kind::Roles,
    "/_plugins/_security/api/roles",
    "/_plugins/_security/api/roles/",
    "/_plugins/_security/api/roles/{name}",
    "restapi:admin/roles"
);
resource_handlers!(
    rolesmapping,
    Kind::RolesMapping,
    "/_plugins/_security/api/rolesmapping",
    "/_plugins/_security/api/rolesmapping/",
    "/_plugins/_security/api/rolesmapping/{name}",
    "restapi:admin/rolesmapping"
);
resource_handlers!(
    tenants,
    Kind::Tenants,
    "/_plugins/_security/api/tenants",
    "/_plugins/_security/api/tenants/",
    "/_plugins/_security/api/tenants/{name}",
    "restapi:admin/tenants"
);

/// The routes of the security REST API.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(get_all_actiongroups, patch_all_actiongroups))
        .routes(routes!(
            get_all_actiongroups_slash,
            patch_all_actiongroups_slash
        ))
        .routes(routes!(
            get_actiongroups,
            put_actiongroups,
            delete_actiongroups,
            patch_actiongroups
        ))
        .routes(routes!(get_all_internalusers, patch_all_internalusers))
        .routes(routes!(
            get_all_internalusers_slash,
            patch_all_internalusers_slash
        ))
        .routes(routes!(
            get_internalusers,
            put_internalusers,
            delete_internalusers,
            patch_internalusers
        ))
        .routes(routes!(get_all_roles, patch_all_roles))
        .routes(routes!(get_all_roles_slash, patch_all_roles_slash))
        .routes(routes!(get_roles, put_roles, delete_roles, patch_roles))
        .routes(routes!(get_all_rolesmapping, patch_all_rolesmapping))
        .routes(routes!(
            get_all_rolesmapping_slash,
            patch_all_rolesmapping_slash
        ))
        .routes(routes!(
            get_rolesmapping,
            put_rolesmapping,
            delete_rolesmapping,
            patch_rolesmapping
        ))
        .routes(routes!(get_all_tenants, patch_all_tenants))
        .routes(routes!(get_all_tenants_slash, patch_all_tenants_slash))
        .routes(routes!(
            get_tenants,
            put_tenants,
            delete_tenants,
            patch_tenants
        ))
        .merge(other::routes())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn every_route_is_documented_once_with_its_errors() {
        let (_, api) = super::routes().split_for_parts();
        let mut ids = BTreeSet::new();
        let mut operations = 0;
        for (path, item) in &api.paths.paths {
            assert!(path.starts_with("/_plugins/_security/api/"), "{path}");
            let ops = [&item.get, &item.put, &item.post, &item.delete, &item.patch];
            for op in ops.into_iter().flatten() {
                operations += 1;
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "duplicate operation id {id}");
                assert!(
                    op.responses.responses.contains_key("401"),
                    "{path} {id}: 401 documented"
                );
                if path.contains("{name}") {
                    let params = op.parameters.as_ref().map_or(0, Vec::len);
                    assert_eq!(params, 1, "{path} {id}: the name parameter");
                }
            }
        }
        // 5 resources × 8 operations, account 2, securityconfig 3, cache 1, ssl 3,
        // nodesdn 2 × 4, allowlist and whitelist 2 × 3.
        assert_eq!(operations, 5 * 8 + 2 + 3 + 1 + 3 + 8 + 6);
    }
}
