//! Who may use the security REST API (the seed's "Access control for the API").
//!
//! 1. A caller with one of `restapi.roles_enabled` may use every endpoint, except the methods
//!    listed in `restapi.endpoints_disabled.<role>.<ENDPOINT>`. With several enabled roles, a
//!    method is blocked only if every one of them blocks it (as OpenSearch does).
//! 2. Otherwise a role whose `cluster_permissions` grant the endpoint's `restapi:admin/…`
//!    permission may use that endpoint (see [`Endpoint::permission`]).
//! 3. Everyone else gets 403 on every method.
//!
//! `account` is open to every authenticated user and is not checked here.

use axum::http::{Method, StatusCode};

use crate::api::Caller;
use crate::app::App;
use crate::error::ApiError;

/// An endpoint group of the API, as named in `restapi.endpoints_disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `actiongroups`.
    ActionGroups,
    /// `internalusers`.
    InternalUsers,
    /// `roles`.
    Roles,
    /// `rolesmapping`.
    RolesMapping,
    /// `tenants`.
    Tenants,
    /// `securityconfig`.
    Config,
    /// `cache`.
    Cache,
    /// `ssl/certs` (GET).
    SslInfo,
    /// `ssl/http/reloadcerts`, `ssl/transport/reloadcerts`.
    SslReload,
    /// `nodesdn`.
    NodesDn,
    /// `allowlist` / `whitelist`.
    Allowlist,
}

/// The names accepted in `restapi.endpoints_disabled.<role>.<ENDPOINT>`.
pub const ENDPOINT_NAMES: &[&str] = &[
    "ACTIONGROUPS",
    "INTERNALUSERS",
    "ROLES",
    "ROLESMAPPING",
    "TENANTS",
    "CONFIG",
    "CACHE",
    "SSL",
    "NODESDN",
    "ALLOWLIST",
    "AUDIT",
    "SYSTEMINFO",
];

/// The methods accepted in `restapi.endpoints_disabled`.
pub const METHOD_NAMES: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH"];

impl Endpoint {
    /// The name used in `restapi.endpoints_disabled`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::ActionGroups => "ACTIONGROUPS",
            Self::InternalUsers => "INTERNALUSERS",
            Self::Roles => "ROLES",
            Self::RolesMapping => "ROLESMAPPING",
            Self::Tenants => "TENANTS",
            Self::Config => "CONFIG",
            Self::Cache => "CACHE",
            Self::SslInfo | Self::SslReload => "SSL",
            Self::NodesDn => "NODESDN",
            Self::Allowlist => "ALLOWLIST",
        }
    }

    /// The cluster permission that grants this endpoint without `roles_enabled`.
    #[must_use]
    pub fn permission(self) -> &'static str {
        use crate::security::actions as a;
        match self {
            Self::ActionGroups => a::RESTAPI_ACTIONGROUPS,
            Self::InternalUsers => a::INTERNAL_USERS,
            Self::Roles => a::RESTAPI_ROLES,
            Self::RolesMapping => a::RESTAPI_ROLESMAPPING,
            Self::Tenants => a::RESTAPI_TENANTS,
            Self::Config => a::RESTAPI_CONFIG,
            Self::Cache => a::RESTAPI_CACHE,
            Self::SslInfo => a::RESTAPI_SSL_INFO,
            Self::SslReload => a::RESTAPI_SSL_RELOAD,
            Self::NodesDn => a::RESTAPI_NODESDN,
            Self::Allowlist => a::RESTAPI_ALLOWLIST,
        }
    }
}

/// Refuses `caller` unless it may use `method` on `endpoint`.
///
/// # Errors
/// 403 naming the permission, or the disabled method.
pub fn authorize(
    app: &App,
    caller: &Caller,
    endpoint: Endpoint,
    method: &Method,
) -> Result<(), ApiError> {
    let rest = &app.config.restapi;
    let enabled: Vec<&String> = caller
        .roles
        .iter()
        .filter(|r| rest.roles_enabled.contains(r))
        .collect();
    if !enabled.is_empty() {
        let blocked = enabled.iter().all(|role| {
            rest.endpoints_disabled
                .get(*role)
                .and_then(|e| e.get(endpoint.name()))
                .is_some_and(|methods| methods.iter().any(|m| m == method.as_str()))
        });
        if blocked {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "security_exception",
                format!(
                    "Method {method} for endpoint {} is disabled for User [name={}]",
                    endpoint.name(),
                    caller.subject.name
                ),
            ));
        }
        return Ok(());
    }
    if caller
        .model
        .allows_cluster(&caller.roles, endpoint.permission())
    {
        return Ok(());
    }
    Err(ApiError::forbidden(
        endpoint.permission(),
        &caller.subject.name,
    ))
}
