//! The audit configuration document (seed 004, "Audit logs"), stored encrypted in the system
//! repository as `state/audit/…` generations, and the static `server.audit` settings of the
//! sinks.
//!
//! Differences from OpenSearch, because this service is not a search cluster:
//!
//! - `compliance.write_watched_indices` and the keys of `compliance.read_watched_fields` name
//!   *repositories* (wildcards allowed); the values of `read_watched_fields` name object paths.
//!   An empty list or map watches every repository (OpenSearch watches none): an encrypting
//!   service that logs no object access by default would be a poor audit log.
//! - `audit.log_request_body` defaults to `false`: bodies only appear when asked for, and never
//!   object bodies or password / hash / secret fields.
//! - Transport settings (`enable_transport`, `disabled_transport_categories`), `resolve_indices`,
//!   `resolve_bulk_requests` and the `*_metadata_only` flags are kept for compatibility and have
//!   no effect: there is no transport layer, and object contents are never logged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Category;

/// Fields that cannot be changed through the API (the seed's `_readonly`), as JSON pointers into
/// the configuration.
pub const READONLY: [&str; 3] = [
    "/audit/exclude_sensitive_headers",
    "/compliance/internal_config",
    "/compliance/external_config",
];

fn yes() -> bool {
    true
}

fn default_disabled() -> Vec<Category> {
    vec![Category::Authenticated, Category::GrantedPrivileges]
}

/// The whole document: `{"enabled", "audit", "compliance"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Audit logging on or off (default on).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// REST event settings.
    #[serde(default)]
    pub audit: AuditSection,
    /// Repository (compliance) and configuration-change event settings.
    #[serde(default)]
    pub compliance: ComplianceSection,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            audit: AuditSection::default(),
            compliance: ComplianceSection::default(),
        }
    }
}

/// `audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Users (wildcards) whose requests are not audited at all.
    #[serde(default)]
    pub ignore_users: Vec<String>,
    /// Requests not audited: patterns (wildcards) matched against the path, `METHOD path` and
    /// the privilege checked (`repository:data/read`).
    #[serde(default)]
    pub ignore_requests: Vec<String>,
    /// REST categories not logged (default AUTHENTICATED, GRANTED_PRIVILEGES).
    #[serde(default = "default_disabled")]
    pub disabled_rest_categories: Vec<Category>,
    /// Accepted for compatibility; no transport layer here.
    #[serde(default = "default_disabled")]
    pub disabled_transport_categories: Vec<Category>,
    /// Log the JSON body of non-object requests (password, hash, secret and token fields
    /// redacted). Default false.
    #[serde(default)]
    pub log_request_body: bool,
    /// Accepted for compatibility; no effect.
    #[serde(default = "yes")]
    pub resolve_indices: bool,
    /// Accepted for compatibility; no effect.
    #[serde(default)]
    pub resolve_bulk_requests: bool,
    /// Read-only, always true: Authorization, Cookie, the JWT header and any header whose name
    /// says token, secret, key or password never appear.
    #[serde(default = "yes")]
    pub exclude_sensitive_headers: bool,
    /// Accepted for compatibility; no transport layer here.
    #[serde(default = "yes")]
    pub enable_transport: bool,
    /// REST categories (AUTHENTICATED … SSL_EXCEPTION) on or off.
    #[serde(default = "yes")]
    pub enable_rest: bool,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            ignore_users: Vec::new(),
            ignore_requests: Vec::new(),
            disabled_rest_categories: default_disabled(),
            disabled_transport_categories: default_disabled(),
            log_request_body: false,
            resolve_indices: true,
            resolve_bulk_requests: false,
            exclude_sensitive_headers: true,
            enable_transport: true,
            enable_rest: true,
        }
    }
}

/// `compliance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplianceSection {
    /// Repository events and configuration changes on or off (default on).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Configuration changes carry a JSON Patch from the old to the new document (hashes
    /// redacted). Default false.
    #[serde(default)]
    pub write_log_diffs: bool,
    /// Repository pattern → object path patterns whose reads are logged (empty: all).
    #[serde(default)]
    pub read_watched_fields: BTreeMap<String, Vec<String>>,
    /// Users (wildcards) whose reads are not logged.
    #[serde(default)]
    pub read_ignore_users: Vec<String>,
    /// Repository patterns whose writes, deletes, registrations and key operations are logged
    /// (empty: all).
    #[serde(default)]
    pub write_watched_indices: Vec<String>,
    /// Users (wildcards) whose writes are not logged.
    #[serde(default)]
    pub write_ignore_users: Vec<String>,
    /// Accepted for compatibility; object contents are never logged.
    #[serde(default = "yes")]
    pub read_metadata_only: bool,
    /// Accepted for compatibility; object contents are never logged.
    #[serde(default = "yes")]
    pub write_metadata_only: bool,
    /// Read-only (false): no external configuration files are audited.
    #[serde(default)]
    pub external_config: bool,
    /// Read-only (true): changes to the security and audit configuration are logged.
    #[serde(default = "yes")]
    pub internal_config: bool,
}

impl Default for ComplianceSection {
    fn default() -> Self {
        Self {
            enabled: true,
            write_log_diffs: false,
            read_watched_fields: BTreeMap::new(),
            read_ignore_users: Vec::new(),
            write_watched_indices: Vec::new(),
            write_ignore_users: Vec::new(),
            read_metadata_only: true,
            write_metadata_only: true,
            external_config: false,
            internal_config: true,
        }
    }
}

/// Why a submitted configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// 400: the field and what is wrong with it.
    Field(String),
    /// 409: read-only keys the submission changes (or `_readonly` / `config` themselves).
    ReadOnly(Vec<String>),
}

/// Boolean fields, whose `"true"` / `"false"` strings are accepted as the seed's PATCH example
/// sends them.
const BOOLEANS: [&str; 13] = [
    "/enabled",
    "/audit/log_request_body",
    "/audit/resolve_indices",
    "/audit/resolve_bulk_requests",
    "/audit/exclude_sensitive_headers",
    "/audit/enable_transport",
    "/audit/enable_rest",
    "/compliance/enabled",
    "/compliance/write_log_diffs",
    "/compliance/read_metadata_only",
    "/compliance/write_metadata_only",
    "/compliance/external_config",
    "/compliance/internal_config",
];

/// Parses a submitted configuration and checks that it leaves the read-only fields of
/// `current` as they are.
///
/// # Errors
/// [`Invalid::ReadOnly`] (409) for `_readonly`/`config` keys or a changed read-only field;
/// [`Invalid::Field`] (400) naming the field for anything else.
pub fn parse(mut body: Value, current: &AuditConfig) -> Result<AuditConfig, Invalid> {
    let Value::Object(map) = &body else {
        return Err(Invalid::Field("body: Object expected".into()));
    };
    let wrapper: Vec<String> = ["_readonly", "config"]
        .into_iter()
        .filter(|k| map.contains_key(*k))
        .map(str::to_owned)
        .collect();
    if !wrapper.is_empty() {
        return Err(Invalid::ReadOnly(wrapper));
    }
    for pointer in BOOLEANS {
        if let Some(v) = body.pointer_mut(pointer)
            && let Some(b) = v.as_str().and_then(|s| s.parse::<bool>().ok())
        {
            *v = Value::Bool(b);
        }
    }
    let parsed: AuditConfig = serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let what = inner.split(" at line").next().unwrap_or_default();
        Invalid::Field(format!("{path}: {what}"))
    })?;
    if parsed
        .audit
        .ignore_users
        .iter()
        .chain(&parsed.audit.ignore_requests)
        .chain(&parsed.compliance.read_ignore_users)
        .chain(&parsed.compliance.write_watched_indices)
        .chain(&parsed.compliance.write_ignore_users)
        .any(String::is_empty)
    {
        return Err(Invalid::Field(
            "patterns: empty strings are not allowed".into(),
        ));
    }
    let (new, old) = (
        serde_json::to_value(&parsed).unwrap_or(Value::Null),
        serde_json::to_value(current).unwrap_or(Value::Null),
    );
    let changed: Vec<String> = READONLY
        .iter()
        .filter(|p| new.pointer(p) != old.pointer(p))
        .map(|p| (*p).to_owned())
        .collect();
    if !changed.is_empty() {
        return Err(Invalid::ReadOnly(changed));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_match_the_seed_and_parse_names_fields() {
        let d = AuditConfig::default();
        let v = serde_json::to_value(&d).expect("json");
        assert_eq!(
            v["audit"]["disabled_rest_categories"],
            json!(["AUTHENTICATED", "GRANTED_PRIVILEGES"])
        );
        assert_eq!(parse(json!({}), &d), Ok(d.clone()));
        let e = parse(json!({"audit": {"enable_rest": 3}}), &d);
        assert!(
            matches!(&e, Err(Invalid::Field(m)) if m.starts_with("audit.enable_rest")),
            "{e:?}"
        );
        let e = parse(json!({"audit": {"nope": true}}), &d);
        assert!(
            matches!(&e, Err(Invalid::Field(m)) if m.contains("nope")),
            "{e:?}"
        );
        let e = parse(json!({"audit": {"disabled_rest_categories": ["NOPE"]}}), &d);
        assert!(
            matches!(&e, Err(Invalid::Field(m)) if m.starts_with("audit.disabled_rest_categories")),
            "{e:?}"
        );
        assert_eq!(
            parse(json!({"compliance": {"internal_config": false}}), &d),
            Err(Invalid::ReadOnly(vec![
                "/compliance/internal_config".into()
            ]))
        );
        assert_eq!(
            parse(json!({"_readonly": [], "config": {}}), &d),
            Err(Invalid::ReadOnly(vec!["_readonly".into(), "config".into()]))
        );
        let c = parse(json!({"enabled": "false"}), &d).expect("string boolean");
        assert!(!c.enabled);
    }
}
