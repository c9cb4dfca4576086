//! `actiongroups`, `internalusers`, `roles`, `rolesmapping` and `tenants`: GET one and all,
//! PUT (create or replace), DELETE, PATCH one and PATCH all (RFC 6902).
//!
//! Every change reads the generation the node holds, applies the change to a copy of the
//! security document, validates the whole result ([`crate::security::SecurityModel::new`]) and
//! writes it conditionally ([`App::write_security`]): if another change came first the answer
//! is 409 and nothing is overwritten. A JSON Patch is applied to a copy and is atomic: if any
//! operation fails (a `test` included) nothing is written.
//!
//! Entries marked `hidden` answer 404 "Resource 'x' is not available." to every method and are
//! left out of listings; `reserved` ones answer 403 "Resource 'x' is reserved." to changes;
//! predefined (`static`) ones 403 "Resource 'x' is static.". Payloads may not set any of the
//! three flags.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode};
use axum::response::IntoResponse as _;
use serde::Serialize;
use serde_json::{Map, Value};

use super::access::{Endpoint, authorize};
use super::validate::{Field, Ty, check_name, check_object, parse_body};
use super::{ApiResult, status_message};
use crate::api::Caller;
use crate::app::App;
use crate::error::ApiError;
use crate::security::{
    ActionGroup, InternalUser, Role, RoleMapping, SecurityData, Tenant, static_action_groups,
    static_roles,
};

/// The tenant every role pattern can name; predefined.
const GLOBAL_TENANT: &str = "global_tenant";

/// A resource type of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
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
}

const PERMS: &[&str] = &["repository_patterns", "allowed_actions"];
const TENANT_PERMS: &[&str] = &["tenant_patterns", "allowed_actions"];

impl Kind {
    fn endpoint(self) -> Endpoint {
        match self {
            Self::ActionGroups => Endpoint::ActionGroups,
            Self::InternalUsers => Endpoint::InternalUsers,
            Self::Roles => Endpoint::Roles,
            Self::RolesMapping => Endpoint::RolesMapping,
            Self::Tenants => Endpoint::Tenants,
        }
    }

    /// The fields a PUT body (or a patched entry) may have.
    fn fields(self) -> &'static [Field] {
        match self {
            Self::ActionGroups => &[
                ("allowed_actions", Ty::StrList, true),
                ("type", Ty::Str, false),
                ("description", Ty::Str, false),
            ],
            Self::InternalUsers => &[
                ("password", Ty::Str, false),
                ("hash", Ty::Str, false),
                ("backend_roles", Ty::StrList, false),
                ("opendistro_security_roles", Ty::StrList, false),
                ("attributes", Ty::StrMap, false),
                ("description", Ty::Str, false),
            ],
            Self::Roles => &[
                ("description", Ty::Str, false),
                ("cluster_permissions", Ty::StrList, false),
                ("repository_permissions", Ty::Objects(PERMS), false),
                ("tenant_permissions", Ty::Objects(TENANT_PERMS), false),
            ],
            Self::RolesMapping => &[
                ("description", Ty::Str, false),
                ("users", Ty::StrList, false),
                ("backend_roles", Ty::StrList, false),
                ("hosts", Ty::StrList, false),
                ("and_backend_roles", Ty::StrList, false),
            ],
            Self::Tenants => &[("description", Ty::Str, false)],
        }
    }
}

/// `reserved`, `hidden`, `static` of a stored entry.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    reserved: bool,
    hidden: bool,
    is_static: bool,
}

/// A stored entry: its flags and its editable form (what a PUT body looks like, without the
/// flags and without a user's hash).
#[derive(Debug, Clone)]
struct Entry {
    flags: Flags,
    value: Value,
}

fn split<T: Serialize>(t: &T) -> Entry {
    // These types serialize to objects; nothing in them can fail.
    let mut value = serde_json::to_value(t).unwrap_or_else(|_| Value::Object(Map::new()));
    let mut flags = Flags::default();
    if let Value::Object(m) = &mut value {
        let mut take = |k: &str| m.remove(k).and_then(|v| v.as_bool()).unwrap_or(false);
        flags.reserved = take("reserved");
        flags.hidden = take("hidden");
        flags.is_static = take("static");
        m.remove("hash");
    }
    // Hidden entries are reserved too (the seed: "Hidden resources are automatically reserved").
    flags.reserved |= flags.hidden;
    Entry { flags, value }
}

fn entries(kind: Kind, data: &SecurityData) -> BTreeMap<String, Entry> {
    fn all<T: Serialize>(m: &BTreeMap<String, T>) -> BTreeMap<String, Entry> {
        m.iter().map(|(k, v)| (k.clone(), split(v))).collect()
    }
    match kind {
        Kind::ActionGroups => {
            let mut out = all(&static_action_groups());
            out.extend(all(&data.actiongroups));
            out
        }
        Kind::InternalUsers => all(&data.internalusers),
        Kind::Roles => {
            let mut out = all(&static_roles());
            out.extend(all(&data.roles));
            out
        }
        Kind::RolesMapping => all(&data.rolesmapping),
        Kind::Tenants => {
            let global = Tenant {
                reserved: true,
                hidden: false,
                is_static: true,
                description: Some("Global tenant".into()),
            };
            let mut out = BTreeMap::from([(GLOBAL_TENANT.to_owned(), split(&global))]);
            out.extend(all(&data.tenants));
            out
        }
    }
}

/// The GET form of an entry: the editable form plus the flags (and an empty hash for users).
fn public(kind: Kind, e: &Entry) -> Value {
    let mut v = e.value.clone();
    if let Value::Object(m) = &mut v {
        if kind == Kind::InternalUsers {
            m.insert("hash".into(), Value::String(String::new()));
        }
        m.insert("reserved".into(), Value::Bool(e.flags.reserved));
        m.insert("hidden".into(), Value::Bool(e.flags.hidden));
        m.insert("static".into(), Value::Bool(e.flags.is_static));
    }
    v
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "resource_not_found_exception",
        format!("Resource '{name}' not found."),
    )
}

fn not_available(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "resource_not_found_exception",
        format!("Resource '{name}' is not available."),
    )
}

fn forbidden(name: &str, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "security_exception",
        format!("Resource '{name}' is {why}."),
    )
}

/// Refuses changing `name`: hidden → 404, static or reserved → 403.
fn check_changeable(existing: Option<&Entry>, name: &str) -> Result<(), ApiError> {
    match existing.map(|e| e.flags) {
        Some(f) if f.hidden => Err(not_available(name)),
        Some(f) if f.is_static => Err(forbidden(name, "static")),
        Some(f) if f.reserved => Err(forbidden(name, "reserved")),
        _ => Ok(()),
    }
}

pub(crate) fn parse_patch(body: &[u8]) -> Result<json_patch::Patch, ApiError> {
    let v = parse_body(body)?;
    if !v.is_array() {
        return Err(ApiError::bad_request(
            "A JSON Patch (RFC 6902) is an array of operations: Array expected",
        ));
    }
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("Invalid JSON Patch: {e}")))
}

pub(crate) fn apply_patch(doc: &Value, patch: &json_patch::Patch) -> Result<Value, ApiError> {
    let mut out = doc.clone();
    json_patch::patch(&mut out, patch).map_err(|e| {
        ApiError::bad_request(format!(
            "JSON Patch operation {} failed ({}); nothing was changed",
            e.operation, e.kind
        ))
    })?;
    Ok(out)
}

/// The stored hash of a user after a change: from `password` (hashed here), from `hash`, or the
/// previous one.
async fn user_hash(
    m: &mut Map<String, Value>,
    previous: Option<String>,
) -> Result<String, ApiError> {
    let password = m.remove("password");
    let hash = m.remove("hash");
    match (password, hash) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "'password', 'hash': give one of them, not both",
        )),
        (Some(Value::String(p)), None) => {
            let p = zeroize::Zeroizing::new(p);
            if p.is_empty() {
                return Err(ApiError::bad_request("'password': must not be empty"));
            }
            if p.len() > crate::password::MAX_PASSWORD_LEN {
                return Err(ApiError::bad_request(format!(
                    "'password': longer than {} bytes",
                    crate::password::MAX_PASSWORD_LEN
                )));
            }
            tokio::task::spawn_blocking(move || crate::password::hash(&p))
                .await
                .map_err(|e| ApiError::internal(&e))?
                .map_err(|e| ApiError::internal(&e))
        }
        (None, Some(Value::String(h))) if crate::password::is_supported(&h) => Ok(h),
        (None, Some(_)) => Err(ApiError::bad_request(
            "'hash': not an argon2id or bcrypt hash",
        )),
        (Some(_), None) => Err(ApiError::bad_request("'password': String expected")),
        (None, None) => previous.ok_or_else(|| {
            ApiError::bad_request("'password': required for a new user (or 'hash')")
        }),
    }
}

fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("Invalid entry: {e}")))
}

/// Applies the changes (`None`: delete) to `data`, checking each entry.
async fn apply(
    app: &App,
    kind: Kind,
    data: &mut SecurityData,
    changes: Vec<(String, Option<Value>)>,
) -> Result<(), ApiError> {
    let current = entries(kind, data);
    let model = app.loaded().model.clone();
    for (name, value) in changes {
        check_name(&name, kind == Kind::InternalUsers)?;
        let existing = current.get(&name);
        check_changeable(existing, &name)?;
        let Some(mut value) = value else {
            if existing.is_none() {
                return Err(not_found(&name));
            }
            remove(kind, data, &name);
            continue;
        };
        check_object("", &value, kind.fields())?;
        match kind {
            Kind::ActionGroups => {
                data.actiongroups
                    .insert(name, from_value::<ActionGroup>(value)?);
            }
            Kind::Roles => {
                data.roles.insert(name, from_value::<Role>(value)?);
            }
            Kind::Tenants => {
                data.tenants.insert(name, from_value::<Tenant>(value)?);
            }
            Kind::RolesMapping => {
                check_role_usable(&model, "name", &name)?;
                data.rolesmapping
                    .insert(name, from_value::<RoleMapping>(value)?);
            }
            Kind::InternalUsers => {
                let previous = data.internalusers.get(&name).map(|u| u.hash.clone());
                let Value::Object(m) = &mut value else {
                    return Err(ApiError::bad_request("Object expected"));
                };
                let hash = user_hash(m, previous).await?;
                m.insert("hash".into(), Value::String(hash));
                let user: InternalUser = from_value(value)?;
                for r in &user.opendistro_security_roles {
                    check_role_usable(&model, "opendistro_security_roles", r)?;
                }
                data.internalusers.insert(name, user);
            }
        }
    }
    Ok(())
}

fn check_role_usable(
    model: &crate::security::SecurityModel,
    field: &str,
    role: &str,
) -> Result<(), ApiError> {
    match model.roles().get(role) {
        None => Err(ApiError::bad_request(format!(
            "'{field}': role '{role}' does not exist"
        ))),
        Some(r) if r.hidden => Err(ApiError::bad_request(format!(
            "'{field}': role '{role}' is not available"
        ))),
        Some(_) => Ok(()),
    }
}

fn remove(kind: Kind, data: &mut SecurityData, name: &str) {
    match kind {
        Kind::ActionGroups => drop(data.actiongroups.remove(name)),
        Kind::InternalUsers => drop(data.internalusers.remove(name)),
        Kind::Roles => drop(data.roles.remove(name)),
        Kind::RolesMapping => drop(data.rolesmapping.remove(name)),
        Kind::Tenants => drop(data.tenants.remove(name)),
    }
}

/// GET one.
pub(crate) async fn get_one(app: &App, caller: &Caller, kind: Kind, name: &str) -> ApiResult {
    authorize(app, caller, kind.endpoint(), &Method::GET)?;
    let loaded = app.loaded();
    let all = entries(kind, &loaded.security.value);
    let e = all.get(name).ok_or_else(|| not_found(name))?;
    if e.flags.hidden {
        return Err(not_available(name));
    }
    let mut out = Map::new();
    out.insert(name.to_owned(), public(kind, e));
    Ok(axum::Json(Value::Object(out)).into_response())
}

/// GET all (hidden ones left out).
pub(crate) async fn get_all(app: &App, caller: &Caller, kind: Kind) -> ApiResult {
    authorize(app, caller, kind.endpoint(), &Method::GET)?;
    let loaded = app.loaded();
    let out: Map<String, Value> = entries(kind, &loaded.security.value)
        .iter()
        .filter(|(_, e)| !e.flags.hidden)
        .map(|(k, e)| (k.clone(), public(kind, e)))
        .collect();
    Ok(axum::Json(Value::Object(out)).into_response())
}

/// PUT: create (201) or replace (200).
pub(crate) async fn put(
    app: &App,
    caller: &Caller,
    kind: Kind,
    name: &str,
    body: &[u8],
) -> ApiResult {
    authorize(app, caller, kind.endpoint(), &Method::PUT)?;
    check_name(name, kind == Kind::InternalUsers)?;
    let loaded = app.loaded();
    let existed = entries(kind, &loaded.security.value).get(name).cloned();
    check_changeable(existed.as_ref(), name)?;
    let value = parse_body(body)?;
    let mut data = loaded.security.value.clone();
    apply(app, kind, &mut data, vec![(name.to_owned(), Some(value))]).await?;
    app.write_security(loaded.security.generation, data).await?;
    Ok(if existed.is_some() {
        status_message(StatusCode::OK, format!("'{name}' updated."))
    } else {
        status_message(StatusCode::CREATED, format!("'{name}' created."))
    })
}

/// DELETE.
pub(crate) async fn delete(app: &App, caller: &Caller, kind: Kind, name: &str) -> ApiResult {
    authorize(app, caller, kind.endpoint(), &Method::DELETE)?;
    let loaded = app.loaded();
    let mut data = loaded.security.value.clone();
    apply(app, kind, &mut data, vec![(name.to_owned(), None)]).await?;
    app.write_security(loaded.security.generation, data).await?;
    Ok(status_message(StatusCode::OK, format!("'{name}' deleted.")))
}

/// PATCH one entry.
pub(crate) async fn patch_one(
    app: &App,
    caller: &Caller,
    kind: Kind,
    name: &str,
    body: &[u8],
) -> ApiResult {
    authorize(app, caller, kind.endpoint(), &Method::PATCH)?;
    let loaded = app.loaded();
    let all = entries(kind, &loaded.security.value);
    let e = all.get(name).ok_or_else(|| not_found(name))?;
    check_changeable(Some(e), name)?;
    let patch = parse_patch(body)?;
    let patched = apply_patch(&e.value, &patch)?;
    if patched != e.value {
        let mut data = loaded.security.value.clone();
        apply(app, kind, &mut data, vec![(name.to_owned(), Some(patched))]).await?;
        app.write_security(loaded.security.generation, data).await?;
    }
    Ok(status_message(StatusCode::OK, format!("'{name}' updated.")))
}

/// PATCH all: the document is `{ name: entry, … }` of the entries that are not hidden.
pub(crate) async fn patch_all(app: &App, caller: &Caller, kind: Kind, body: &[u8]) -> ApiResult {
    authorize(app, caller, kind.endpoint(), &Method::PATCH)?;
    let loaded = app.loaded();
    let all = entries(kind, &loaded.security.value);
    let before: Map<String, Value> = all
        .iter()
        .filter(|(_, e)| !e.flags.hidden)
        .map(|(k, e)| (k.clone(), e.value.clone()))
        .collect();
    let patch = parse_patch(body)?;
    let after = match apply_patch(&Value::Object(before.clone()), &patch)? {
        Value::Object(m) => m,
        _ => {
            return Err(ApiError::bad_request(
                "The patched document must be an object of entries: Object expected",
            ));
        }
    };
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changes: Vec<(String, Option<Value>)> = names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .map(|n| (n.clone(), after.get(n).cloned()))
        .collect();
    if !changes.is_empty() {
        let mut data = loaded.security.value.clone();
        apply(app, kind, &mut data, changes).await?;
        app.write_security(loaded.security.generation, data).await?;
    }
    Ok(status_message(StatusCode::OK, "Resource updated.".into()))
}
