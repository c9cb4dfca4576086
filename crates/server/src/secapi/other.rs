//! `account`, `securityconfig`, `cache`, `ssl/…`, and the seed's endpoints that have no meaning
//! here (`nodesdn`, `allowlist`, `whitelist`, `ssl/transport/reloadcerts`).

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::{Endpoint, authorize};
use super::validate::{Ty, check_object, parse_body};
use super::{ApiResult, Body, Shared, StatusMessage, status_message};
use crate::api::Caller;
use crate::app::App;
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(get_account, put_account))
        .routes(routes!(get_securityconfig, patch_securityconfig))
        .routes(routes!(put_securityconfig))
        .routes(routes!(flush_cache))
        .routes(routes!(get_certs))
        .routes(routes!(reload_http_certs))
        .routes(routes!(reload_transport_certs))
        .routes(routes!(
            get_nodesdn,
            put_nodesdn,
            patch_nodesdn,
            delete_nodesdn
        ))
        .routes(routes!(
            get_nodesdn_one,
            put_nodesdn_one,
            patch_nodesdn_one,
            delete_nodesdn_one
        ))
        .routes(routes!(get_allowlist, put_allowlist, patch_allowlist))
        .routes(routes!(get_whitelist, put_whitelist, patch_whitelist))
}

fn resource_error(status: StatusCode, reason: String) -> ApiError {
    let kind = if status == StatusCode::NOT_FOUND {
        "resource_not_found_exception"
    } else {
        "security_exception"
    };
    ApiError::new(status, kind, reason)
}

/// The caller's account: name, flags, backend roles, attribute names, tenants and roles.
/// Needs an authenticated user only.
#[utoipa::path(get, path = "/_plugins/_security/api/account", tag = "security",
    responses(
        (status = 200, description = "the caller's account", body = Object),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody)))]
async fn get_account(State(app): State<Shared>, caller: Caller) -> ApiResult {
    let loaded = app.loaded();
    let s = &caller.subject;
    let user = loaded.security.value.internalusers.get(&s.name);
    Ok(axum::Json(json!({
        "user_name": s.name,
        "is_reserved": user.is_some_and(|u| u.reserved || u.hidden),
        "is_hidden": user.is_some_and(|u| u.hidden),
        "is_internal_user": user.is_some(),
        "user_requested_tenant": null,
        "backend_roles": s.backend_roles,
        "custom_attribute_names": user.map(|u| u.attributes.keys().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "tenants": caller.model.tenants_of(&caller.roles),
        "roles": caller.roles,
    }))
    .into_response())
}

/// Changes the caller's own password: `{"current_password", "password"}`. Needs an
/// authenticated internal user that is neither hidden (404) nor reserved (403).
#[utoipa::path(put, path = "/_plugins/_security/api/account", tag = "security",
    request_body(content = Object, description = "current_password and password"),
    responses(
        (status = 200, description = "updated", body = StatusMessage),
        (status = 400, description = "missing or wrong current_password, invalid body", body = crate::error::ErrorBody),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "reserved user or not an internal user", body = crate::error::ErrorBody),
        (status = 404, description = "hidden user", body = crate::error::ErrorBody),
        (status = 409, description = "changed concurrently", body = crate::error::ErrorBody)))]
async fn put_account(State(app): State<Shared>, caller: Caller, Body(body): Body) -> ApiResult {
    let v = parse_body(&body)?;
    check_object(
        "",
        &v,
        &[
            ("current_password", Ty::Str, false),
            ("password", Ty::Str, false),
        ],
    )?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    let current = zeroize::Zeroizing::new(text("current_password").to_owned());
    let new = zeroize::Zeroizing::new(text("password").to_owned());
    if current.is_empty() {
        return Err(ApiError::bad_request("'current_password': required"));
    }
    if new.is_empty() {
        return Err(ApiError::bad_request("'password': required"));
    }
    if new.len() > crate::password::MAX_PASSWORD_LEN {
        return Err(ApiError::bad_request("'password': too long"));
    }
    let name = caller.subject.name.clone();
    let loaded = app.loaded();
    let Some(user) = loaded.security.value.internalusers.get(&name) else {
        return Err(resource_error(
            StatusCode::FORBIDDEN,
            format!("'{name}' is not an internal user; its password is not kept here."),
        ));
    };
    if user.hidden {
        return Err(resource_error(
            StatusCode::NOT_FOUND,
            format!("Resource '{name}' is not available."),
        ));
    }
    if user.reserved {
        return Err(resource_error(
            StatusCode::FORBIDDEN,
            format!("Resource '{name}' is reserved."),
        ));
    }
    let stored = user.hash.clone();
    let (authn, client, who) = (app.authn(), caller.subject.remote_ip, name.clone());
    // Under the failed-login limits: a caller authenticated some other way (a token naming an
    // internal user) cannot use this to guess the password.
    let hash = tokio::task::spawn_blocking(move || {
        if authn.verify_password_attempt(client, &who, &current, &stored) {
            crate::password::hash(&new).map(Some)
        } else {
            Ok(None)
        }
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(|e| ApiError::internal(&e))?
    .ok_or_else(|| ApiError::bad_request("Could not validate your current password."))?;
    let mut data = loaded.security.value.clone();
    if let Some(u) = data.internalusers.get_mut(&name) {
        u.hash = hash;
    }
    app.write_security(loaded.security.generation, data).await?;
    Ok(status_message(StatusCode::OK, format!("'{name}' updated.")))
}

/// Whether a setting name holds a secret (redacted from `securityconfig`).
fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k == "signing_key"
        || ["secret", "password", "private", "credential", "token"]
            .iter()
            .any(|s| k.contains(s))
}

/// What `securityconfig` shows in place of a secret; sent back in a PUT or PATCH, it keeps the
/// stored secret.
const REDACTED: &str = "<redacted>";

/// `v` with every secret setting's value replaced by `"<redacted>"`.
pub(crate) fn redacted(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if secret_key(k) && !x.is_null() {
                        Value::String(REDACTED.into())
                    } else {
                        redacted(x)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

/// Puts the stored secret back wherever `new` holds `"<redacted>"` for a secret setting (a GET
/// edited and sent back). `place` is the JSON pointer of `new`, for the error.
fn restore_secrets(new: &mut Value, old: Option<&Value>, place: &str) -> Result<(), ApiError> {
    match new {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let here = format!("{place}/{k}");
                let before = old.and_then(|o| o.get(k));
                if secret_key(k) && x.as_str() == Some(REDACTED) {
                    *x = before.filter(|b| !b.is_null()).cloned().ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "'{here}': \"{REDACTED}\" stands for the stored secret, and none is stored here; send the value"
                        ))
                    })?;
                } else {
                    restore_secrets(x, before, &here)?;
                }
            }
            Ok(())
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                restore_secrets(x, old.and_then(|o| o.get(i)), &format!("{place}/{i}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The `config.dynamic` this node runs with — its `config.yml`'s, or the one stored through
/// this API — with secrets such as JWT signing keys shown as `"<redacted>"`. Needs
/// `restapi:admin/config` or a role in `restapi.roles_enabled`.
#[utoipa::path(get, path = "/_plugins/_security/api/securityconfig", tag = "security",
    responses(
        (status = 200, description = "`{\"config\": {\"dynamic\": …}}`", body = Object),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "not allowed", body = crate::error::ErrorBody)))]
async fn get_securityconfig(State(app): State<Shared>, caller: Caller) -> ApiResult {
    authorize(&app, &caller, Endpoint::Config, &Method::GET)?;
    let dynamic = app.runtime().config.config.dynamic.to_json();
    Ok(axum::Json(json!({ "config": { "dynamic": redacted(&dynamic) } })).into_response())
}

fn modification_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "security_exception",
        "Modifying the security configuration through the REST API is disabled on this node \
         (restapi.allow_securityconfig_modification is false)",
    )
}

/// Refuses modification unless this node allows it, then authorizes the caller.
fn may_modify(app: &App, caller: &Caller, method: &Method) -> Result<(), ApiError> {
    authorize(app, caller, Endpoint::Config, method)?;
    if app.config.restapi.allow_securityconfig_modification {
        Ok(())
    } else {
        Err(modification_refused())
    }
}

/// Replaces `config.dynamic` — authentication domains, anonymous access, `xff`, failed-login
/// limits — for every node sharing the system repository: `{"dynamic": {…}}` in the shape of
/// `config.yml`. A secret sent as `"<redacted>"` keeps the stored one. It is validated as a
/// whole (400 naming the key), stored as the next generation of `state/securityconfig` (409
/// if another change came first), in force on this node at once and on the others within
/// their reload interval. Only when `restapi.allow_securityconfig_modification` is true (403
/// otherwise); needs `restapi:admin/config` or a role in `restapi.roles_enabled`.
#[utoipa::path(put, path = "/_plugins/_security/api/securityconfig/config", tag = "security",
    request_body(content = Object, description = "`{\"dynamic\": {…}}`"),
    responses(
        (status = 200, description = "updated", body = StatusMessage),
        (status = 400, description = "invalid configuration (the key is named), invalid body", body = crate::error::ErrorBody),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "modification disabled, or not allowed", body = crate::error::ErrorBody),
        (status = 409, description = "changed concurrently", body = crate::error::ErrorBody)))]
async fn put_securityconfig(
    State(app): State<Shared>,
    caller: Caller,
    Body(body): Body,
) -> ApiResult {
    may_modify(&app, &caller, &Method::PUT)?;
    let v = parse_body(&body)?;
    let Value::Object(mut top) = v else {
        return Err(ApiError::bad_request("'': Object expected"));
    };
    if let Some(k) = top.keys().find(|k| *k != "dynamic") {
        return Err(ApiError::bad_request(format!(
            "'{k}': unknown field (expected: dynamic)"
        )));
    }
    let mut dynamic = top
        .remove("dynamic")
        .ok_or_else(|| ApiError::bad_request("'dynamic': required"))?;
    if !dynamic.is_object() {
        return Err(ApiError::bad_request("'dynamic': Object expected"));
    }
    let runtime = app.runtime();
    let current = runtime.config.config.dynamic.to_json();
    restore_secrets(&mut dynamic, Some(&current), "/dynamic")?;
    app.write_securityconfig(runtime.generation, dynamic)
        .await?;
    Ok(status_message(StatusCode::OK, "'config' updated.".into()))
}

/// Changes `config.dynamic` with an RFC 6902 JSON Patch over `{"config": {"dynamic": …}}`
/// (paths such as `/config/dynamic/http/anonymous_auth_enabled`), applied atomically, then
/// stored and put in force as PUT does. `test`, and the `from` of `copy` and `move`, may not
/// read a secret (400): a patch must not be a way to guess one.
#[utoipa::path(patch, path = "/_plugins/_security/api/securityconfig", tag = "security",
    request_body(content = Vec<Object>, description = "JSON Patch operations"),
    responses(
        (status = 200, description = "updated", body = StatusMessage),
        (status = 400, description = "invalid patch or configuration, a failed operation (nothing changed)", body = crate::error::ErrorBody),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "modification disabled, or not allowed", body = crate::error::ErrorBody),
        (status = 409, description = "changed concurrently", body = crate::error::ErrorBody)))]
async fn patch_securityconfig(
    State(app): State<Shared>,
    caller: Caller,
    Body(body): Body,
) -> ApiResult {
    may_modify(&app, &caller, &Method::PATCH)?;
    let patch = super::resources::parse_patch(&body)?;
    let runtime = app.runtime();
    let current = runtime.config.config.dynamic.to_json();
    let doc = json!({ "config": { "dynamic": current } });
    for op in &patch.0 {
        let read = match op {
            json_patch::PatchOperation::Test(t) => Some(t.path.as_str()),
            json_patch::PatchOperation::Copy(c) => Some(c.from.as_str()),
            json_patch::PatchOperation::Move(m) => Some(m.from.as_str()),
            _ => None,
        };
        // A path naming a secret, or a value holding one.
        if let Some(path) = read
            && (path.split('/').any(secret_key)
                || doc.pointer(path).is_some_and(|v| redacted(v) != *v))
        {
            return Err(ApiError::bad_request(format!(
                "'{path}' holds a secret: test, copy and move may not read it"
            )));
        }
    }
    let mut patched = super::resources::apply_patch(&doc, &patch)?;
    let mut dynamic = patched
        .pointer_mut("/config/dynamic")
        .map(Value::take)
        .filter(Value::is_object)
        .ok_or_else(|| ApiError::bad_request("'/config/dynamic': Object expected"))?;
    if let Value::Object(top) = &patched
        && let Some(k) = top.keys().find(|k| *k != "config")
    {
        return Err(ApiError::bad_request(format!(
            "'/{k}': unknown field (expected: config)"
        )));
    }
    if let Some(Value::Object(c)) = patched.get("config")
        && let Some(k) = c.keys().find(|k| *k != "dynamic")
    {
        return Err(ApiError::bad_request(format!(
            "'/config/{k}': unknown field (expected: dynamic)"
        )));
    }
    let current = doc.pointer("/config/dynamic");
    restore_secrets(&mut dynamic, current, "/config/dynamic")?;
    app.write_securityconfig(runtime.generation, dynamic)
        .await?;
    Ok(status_message(StatusCode::OK, "Resource updated.".into()))
}

/// Flushes this node's remembered password verifications and the unwrapped data keys of every
/// opened repository: the next request verifies its password again and the next read asks
/// the key provider again. Needs `restapi:admin/cache` or a role in `restapi.roles_enabled`.
#[utoipa::path(delete, path = "/_plugins/_security/api/cache", tag = "security",
    responses(
        (status = 200, description = "flushed", body = StatusMessage),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "not allowed", body = crate::error::ErrorBody)))]
async fn flush_cache(State(app): State<Shared>, caller: Caller) -> ApiResult {
    authorize(&app, &caller, Endpoint::Cache, &Method::DELETE)?;
    app.authn().flush_cache();
    let n = app.flush_key_caches().await;
    tracing::info!(
        user = %caller.subject.name,
        repositories = n,
        "caches flushed"
    );
    Ok(status_message(
        StatusCode::OK,
        "Cache flushed successfully.".into(),
    ))
}

fn tls_off() -> ApiError {
    ApiError::bad_request("TLS is not enabled on this node (server.tls is not set)")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (proleptic Gregorian, days-from-civil inverse).
fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The certificates of a PEM chain: subject, issuer, SAN, validity.
fn describe_chain(pem: &[u8]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for item in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let item = item.map_err(|e| format!("not PEM: {e}"))?;
        let cert = item
            .parse_x509()
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let san = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let v = cert.validity();
        out.push(json!({
            "issuer_dn": cert.issuer().to_string(),
            "subject_dn": cert.subject().to_string(),
            "san": san,
            "not_before": rfc3339(v.not_before.timestamp()),
            "not_after": rfc3339(v.not_after.timestamp()),
        }));
    }
    Ok(out)
}

/// The HTTP certificate chain (`server.tls.certificate`): subject, issuer, SAN, validity; the
/// transport list is always empty. 400 when TLS is off. Needs `restapi:admin/ssl/certs/info`
/// or a role in `restapi.roles_enabled`.
#[utoipa::path(get, path = "/_plugins/_security/api/ssl/certs", tag = "security",
    responses(
        (status = 200, description = "http_certificates_list, transport_certificates_list", body = Object),
        (status = 400, description = "TLS is off", body = crate::error::ErrorBody),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "not allowed", body = crate::error::ErrorBody)))]
async fn get_certs(State(app): State<Shared>, caller: Caller) -> ApiResult {
    authorize(&app, &caller, Endpoint::SslInfo, &Method::GET)?;
    let tls = app.config.server.tls.as_ref().ok_or_else(tls_off)?;
    let pem = tokio::fs::read(&tls.certificate)
        .await
        .map_err(|e| ApiError::internal(&format!("reading server.tls.certificate: {e}")))?;
    let list = describe_chain(&pem)
        .map_err(|e| ApiError::internal(&format!("server.tls.certificate: {e}")))?;
    Ok(axum::Json(json!({
        "http_certificates_list": list,
        "transport_certificates_list": [],
    }))
    .into_response())
}

/// Reloads the HTTP certificate and key from `server.tls` without a restart; new connections
/// use them. 400 when TLS is off or the files are unusable (the old certificate stays). Needs
/// `restapi:admin/ssl/certs/reload` or a role in `restapi.roles_enabled`.
#[utoipa::path(put, path = "/_plugins/_security/api/ssl/http/reloadcerts", tag = "security",
    responses(
        (status = 200, description = "reloaded", body = StatusMessage),
        (status = 400, description = "TLS is off, or the new files are unusable", body = crate::error::ErrorBody),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "not allowed", body = crate::error::ErrorBody)))]
async fn reload_http_certs(State(app): State<Shared>, caller: Caller) -> ApiResult {
    authorize(&app, &caller, Endpoint::SslReload, &Method::PUT)?;
    let tls = app.config.server.tls.as_ref().ok_or_else(tls_off)?;
    let rustls = app.tls.get().ok_or_else(|| {
        ApiError::bad_request("this node is not serving HTTPS (no listener to reload)")
    })?;
    // Rebuilt whole from the configuration, so the client-certificate verifier (clientcert
    // authentication) survives the reload.
    crate::tls::server_config(tls)
        .map(|c| rustls.reload_from_config(std::sync::Arc::new(c)))
        .map_err(|e| {
            tracing::warn!(error = %e, "reloading the HTTP certificate failed");
            ApiError::bad_request(
                "the certificate or key in server.tls could not be loaded; the previous one stays in use (see the server log)",
            )
        })?;
    tracing::info!(user = %caller.subject.name, "HTTP certificate reloaded");
    Ok(status_message(StatusCode::OK, "updated http certs".into()))
}

fn no_transport(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "not_supported_exception",
        format!("{what} is not supported by encrypt-repo: there is no node-to-node transport"),
    )
}

/// Not supported (no node-to-node transport): 400.
#[utoipa::path(put, path = "/_plugins/_security/api/ssl/transport/reloadcerts", tag = "security",
    responses(
        (status = 400, description = "not supported", body = crate::error::ErrorBody),
        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "not allowed", body = crate::error::ErrorBody)))]
async fn reload_transport_certs(State(app): State<Shared>, caller: Caller) -> ApiResult {
    authorize(&app, &caller, Endpoint::SslReload, &Method::PUT)?;
    Err(no_transport("ssl/transport/reloadcerts"))
}

/// Per-method handlers of an endpoint that is not supported here (400).
macro_rules! unsupported {
    ($name:ident, $path:literal, $params:tt, $endpoint:expr, $error:expr, $(($method:ident, $m:expr)),+) => {
        utoipa_axum::paste! {
            $(
                #[utoipa::path($method, path = $path, tag = "security",
                    operation_id = concat!(stringify!($method), "_", stringify!($name)),
                    description = "Not supported by encrypt-repo: answers 400 saying so.",
                    params $params,
                    responses(
                        (status = 400, description = "not supported", body = crate::error::ErrorBody),
                        (status = 401, description = "not authenticated", body = crate::error::ErrorBody),
                        (status = 403, description = "not allowed", body = crate::error::ErrorBody)))]
                async fn [<$method _ $name>](State(app): State<Shared>, caller: Caller) -> ApiResult {
                    authorize(&app, &caller, $endpoint, &$m)?;
                    Err($error)
                }
            )+
        }
    };
}

unsupported!(
    nodesdn,
    "/_plugins/_security/api/nodesdn",
    (),
    Endpoint::NodesDn,
    no_transport("nodesdn"),
    (get, Method::GET),
    (put, Method::PUT),
    (patch, Method::PATCH),
    (delete, Method::DELETE)
);
unsupported!(
    nodesdn_one,
    "/_plugins/_security/api/nodesdn/{name}",
    (("name" = String, Path, description = "cluster name")),
    Endpoint::NodesDn,
    no_transport("nodesdn"),
    (get, Method::GET),
    (put, Method::PUT),
    (patch, Method::PATCH),
    (delete, Method::DELETE)
);
unsupported!(
    allowlist,
    "/_plugins/_security/api/allowlist",
    (),
    Endpoint::Allowlist,
    no_allowlist(),
    (get, Method::GET),
    (put, Method::PUT),
    (patch, Method::PATCH)
);
unsupported!(
    whitelist,
    "/_plugins/_security/api/whitelist",
    (),
    Endpoint::Allowlist,
    no_allowlist(),
    (get, Method::GET),
    (put, Method::PUT),
    (patch, Method::PATCH)
);

fn no_allowlist() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "not_supported_exception",
        "allowlist is not supported by encrypt-repo: use roles, role mappings and restapi.endpoints_disabled",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_524_368_627), "2018-04-22T03:43:47Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn secrets_are_redacted() {
        let v = redacted(
            &json!({ "signing_key": "abc", "jwt_header": "Authorization",
            "nested": { "client_secret": "s", "roles_key": "roles" } }),
        );
        assert_eq!(v["signing_key"], "<redacted>");
        assert_eq!(v["nested"]["client_secret"], "<redacted>");
        assert_eq!(v["jwt_header"], "Authorization");
        assert_eq!(v["nested"]["roles_key"], "roles");
    }

    #[test]
    fn redacted_secrets_are_restored_from_the_stored_document() {
        let old = json!({ "a": { "signing_key": "k1", "list": [{ "password": "p" }] } });
        let mut new = redacted(&old);
        new["a"]["other"] = json!(1);
        restore_secrets(&mut new, Some(&old), "").expect("restored");
        assert_eq!(new["a"]["signing_key"], "k1");
        assert_eq!(new["a"]["list"][0]["password"], "p");
        let mut fresh = json!({ "b": { "signing_key": REDACTED } });
        let e = restore_secrets(&mut fresh, Some(&old), "/dynamic").expect_err("nothing stored");
        assert!(format!("{e:?}").contains("/dynamic/b/signing_key"), "{e:?}");
    }
}
