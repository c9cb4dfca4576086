//! The service configuration: OpenSearch security's `config.yml` shape plus a `server` section.
//!
//! ```yaml
//! _meta:
//!   type: "config"
//!   config_version: 2
//! config:
//!   dynamic:
//!     http:
//!       anonymous_auth_enabled: false
//!       xff:
//!         enabled: false
//!         internalProxies: '127\.0\.0\.1'
//!         remoteIpHeader: 'x-forwarded-for'
//!     authc:
//!       basic_internal_auth_domain:
//!         http_enabled: true
//!         order: 0
//!         http_authenticator: { type: basic, challenge: true }
//!         authentication_backend: { type: intern }
//!     authz: {}
//! server:
//!   listen: 127.0.0.1:9200
//!   tls: { certificate: /etc/er/cert.pem, private_key: /etc/er/key.pem }
//!   reload_interval_seconds: 5
//!   system_repository:
//!     type: fs
//!     settings: { location: /var/lib/encrypt-repo/system }
//!     encrypted: true
//!     crypto_settings:
//!       key_provider_name: system
//!       key_provider_type: local
//!       settings: { key_file: /etc/encrypt-repo/system.key }
//! ```
//!
//! `crates/server/config.example.yml` is a commented example (tested to be valid).
//! Unknown keys are refused, and every error names the key at fault
//! (`config.dynamic.authc.basic.http_authenticator.type: …`). Kerberos and LDAP are refused
//! with "not supported"; `clientcert` needs `server.tls` with `client_ca` and `client_auth`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::HeaderName;
use encrypt_repo_store::RegistrationRequest;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default [`ServerSection::reload_interval_seconds`]: every node sees a change made through
/// another node within this many seconds.
pub const DEFAULT_RELOAD_INTERVAL_SECONDS: u64 = 5;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// OpenSearch's `_meta` block (`type: config`, `config_version: 2`); optional.
    #[serde(default, rename = "_meta")]
    pub meta: Option<Meta>,
    /// The security configuration (`config.dynamic`).
    pub config: SecurityConfig,
    /// Where and how to listen, and where the state lives.
    pub server: ServerSection,
    /// Who may use the security REST API (OpenSearch's `plugins.security.restapi.*`).
    #[serde(default)]
    pub restapi: RestApiConfig,
}

/// `restapi`: access to `/_plugins/_security/api/…` (see `crate::secapi::access`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestApiConfig {
    /// Roles that may use every endpoint (default `all_access`, `security_rest_api_access`).
    #[serde(default = "default_roles_enabled")]
    pub roles_enabled: Vec<String>,
    /// `<role>: { <ENDPOINT>: [<METHOD>, …] }`: methods an enabled role may not use.
    #[serde(default)]
    pub endpoints_disabled: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// PUT and PATCH of `securityconfig` (default false). When a node accepts one, the new
    /// `config.dynamic` is stored in the system repository and every node sharing it runs with
    /// that document instead of its own `config.yml`'s, from its next reload on (see
    /// [`ServerConfig::with_dynamic`]).
    #[serde(default)]
    pub allow_securityconfig_modification: bool,
}

impl Default for RestApiConfig {
    fn default() -> Self {
        Self {
            roles_enabled: default_roles_enabled(),
            endpoints_disabled: BTreeMap::new(),
            allow_securityconfig_modification: false,
        }
    }
}

fn default_roles_enabled() -> Vec<String> {
    vec!["all_access".into(), "security_rest_api_access".into()]
}

impl RestApiConfig {
    fn validate(&self) -> Result<()> {
        let bad = |key: String, what: &str| Err(Error::Config(format!("{key}: {what}")));
        if let Some(i) = self.roles_enabled.iter().position(|r| r.trim().is_empty()) {
            return bad(format!("restapi.roles_enabled[{i}]"), "empty role name");
        }
        for (role, endpoints) in &self.endpoints_disabled {
            for (endpoint, methods) in endpoints {
                let key = format!("restapi.endpoints_disabled.{role}.{endpoint}");
                if !crate::secapi::access::ENDPOINT_NAMES.contains(&endpoint.as_str()) {
                    return bad(
                        key,
                        &format!(
                            "unknown endpoint (known: {})",
                            crate::secapi::access::ENDPOINT_NAMES.join(", ")
                        ),
                    );
                }
                if let Some(m) = methods
                    .iter()
                    .find(|m| !crate::secapi::access::METHOD_NAMES.contains(&m.as_str()))
                {
                    return bad(
                        key,
                        &format!("unknown method {m:?} (known: GET, PUT, POST, DELETE, PATCH)"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// `_meta`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Must be `config`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Must be 2.
    pub config_version: u32,
}

/// `config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// `config.dynamic`.
    pub dynamic: Dynamic,
}

/// `config.dynamic`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dynamic {
    /// `http`: anonymous authentication and the proxy header.
    #[serde(default)]
    pub http: HttpSection,
    /// Authentication domains by name.
    #[serde(default)]
    pub authc: BTreeMap<String, AuthcDomain>,
    /// Authorization domains by name (only `noop` is supported; LDAP is refused).
    #[serde(default)]
    pub authz: BTreeMap<String, AuthzDomain>,
    /// Failed-login rate limits (`type: ip` or `type: username`, with `allowed_tries`,
    /// `time_window_seconds`, `block_expiry_seconds`, `max_blocked_clients`,
    /// `max_tracked_clients`). A kind that is not configured uses OpenSearch's defaults: 10
    /// failures within an hour block the address or user for 10 minutes.
    #[serde(default)]
    pub auth_failure_listeners: BTreeMap<String, serde_json::Value>,
    /// Accepted for compatibility with OpenSearch files; ignored.
    #[serde(default)]
    pub description: Option<String>,
}

impl Dynamic {
    /// Reads `config.dynamic` from JSON (a `securityconfig` request or stored document).
    ///
    /// # Errors
    /// [`Error::Config`] naming the key at fault (`config.dynamic.authc.jwt.order: …`).
    pub fn from_json(value: serde_json::Value) -> Result<Self> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || path.is_empty() {
                Error::Config(format!("config.dynamic: {inner}"))
            } else {
                Error::Config(format!("config.dynamic.{path}: {inner}"))
            }
        })
    }

    /// This section as JSON, the shape [`Dynamic::from_json`] reads.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// `config.dynamic.http`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Requests without credentials run as the anonymous user (backend role
    /// `opendistro_security_anonymous_backendrole`).
    #[serde(default)]
    pub anonymous_auth_enabled: bool,
    /// Trusting the remote-IP header from known proxies.
    #[serde(default)]
    pub xff: XffConfig,
}

/// `config.dynamic.http.xff`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct XffConfig {
    /// Whether the remote-IP header is looked at at all.
    #[serde(default)]
    pub enabled: bool,
    /// A regular expression matching the addresses of proxies whose header is trusted.
    #[serde(default, rename = "internalProxies")]
    pub internal_proxies: Option<String>,
    /// The header carrying the client address (default `x-forwarded-for`).
    #[serde(default = "default_remote_ip_header", rename = "remoteIpHeader")]
    pub remote_ip_header: String,
    /// Accepted for compatibility; ignored.
    #[serde(default, rename = "proxiesHeader")]
    pub proxies_header: Option<String>,
    /// Accepted for compatibility; ignored.
    #[serde(default, rename = "trustedProxies")]
    pub trusted_proxies: Option<String>,
}

impl Default for XffConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            internal_proxies: None,
            remote_ip_header: default_remote_ip_header(),
            proxies_header: None,
            trusted_proxies: None,
        }
    }
}

fn default_remote_ip_header() -> String {
    "x-forwarded-for".into()
}

/// An authentication domain (`config.dynamic.authc.<name>`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthcDomain {
    /// For people.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the domain is used for HTTP requests (default true).
    #[serde(default = "yes")]
    pub http_enabled: bool,
    /// Accepted for compatibility; there is no transport layer.
    #[serde(default)]
    pub transport_enabled: Option<bool>,
    /// Domains are tried in ascending order.
    #[serde(default)]
    pub order: i64,
    /// How credentials are taken from the request.
    pub http_authenticator: HttpAuthenticator,
    /// Against what they are checked.
    pub authentication_backend: AuthenticationBackend,
}

fn yes() -> bool {
    true
}

/// `http_authenticator`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthenticator {
    /// `basic`, `jwt` or `clientcert` (`kerberos`, `saml`, `openid`, `proxy` are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// Answer a request without credentials with 401 and `WWW-Authenticate`.
    #[serde(default)]
    pub challenge: bool,
    /// Authenticator settings (for `jwt`: `signing_key`, `jwt_header`, …).
    #[serde(default)]
    pub config: serde_json::Value,
}

/// `authentication_backend`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationBackend {
    /// `intern`/`internal` (the internal user database) or `noop`; `ldap` is refused.
    #[serde(rename = "type")]
    pub kind: String,
    /// Backend settings (unused by the supported backends).
    #[serde(default)]
    pub config: serde_json::Value,
}

/// An authorization domain (`config.dynamic.authz.<name>`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzDomain {
    /// For people.
    #[serde(default)]
    pub description: Option<String>,
    /// Accepted for compatibility.
    #[serde(default)]
    pub http_enabled: Option<bool>,
    /// Accepted for compatibility.
    #[serde(default)]
    pub transport_enabled: Option<bool>,
    /// `authorization_backend { type }`: only `noop`.
    pub authorization_backend: AuthenticationBackend,
}

/// The `server` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on (default `127.0.0.1:9200`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// HTTPS with these PEM files; plain HTTP without.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// How often each node reloads the security configuration and the repository registrations
    /// from the system repository (seconds, 1 … 3600; default 5).
    #[serde(default = "default_reload")]
    pub reload_interval_seconds: u64,
    /// How often each open repository asks its key provider whether the key is still usable
    /// (seconds, 1 … 86400; default 300): a key disabled, revoked or no longer permitted at the
    /// provider locks the repository within this interval, and re-enabling it unlocks it, with
    /// no restart.
    #[serde(default = "default_key_status")]
    pub key_status_interval_seconds: u64,
    /// Directories under which `fs` repositories may be registered (OpenSearch's `path.repo`);
    /// the short form of an `fs` entry in [`storage`](Self::storage) with `allowed: ["*"]`.
    #[serde(default)]
    pub fs_roots: Vec<PathBuf>,
    /// Key providers callers may use, by name, with how the node reaches each (see
    /// [`crate::declared`]): a registration's `crypto_settings.key_provider_name` names one and
    /// gives at most its key name.
    #[serde(default)]
    pub key_providers: BTreeMap<String, crate::declared::KeyProviderDecl>,
    /// Storage backends callers may register repositories in, by name (see
    /// [`crate::declared`]): a registration's `settings.client` names one and gives only the
    /// location in it.
    #[serde(default)]
    pub storage: BTreeMap<String, crate::declared::StorageDecl>,
    /// The system repository: a registration request (`type`, `settings`, `encrypted`,
    /// `crypto_settings`). Default type `fs` with `settings.location`.
    pub system_repository: RegistrationRequest,
    /// The audit sinks: node id, flush interval, queue size, stdout (see [`crate::audit::sink`]).
    #[serde(default)]
    pub audit: crate::audit::SinkSettings,
    /// Timeouts and caps against slow and greedy clients (see [`crate::limits`]).
    #[serde(default)]
    pub limits: crate::limits::Limits,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9200))
}

fn default_key_status() -> u64 {
    encrypt_repo_store::DEFAULT_STATUS_CHECK_INTERVAL.as_secs()
}

fn default_reload() -> u64 {
    DEFAULT_RELOAD_INTERVAL_SECONDS
}

/// `server.tls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub private_key: PathBuf,
    /// Whether clients present a certificate (default `none`).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM bundle of the CAs client certificates must chain to; required unless `client_auth`
    /// is `none`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// `server.tls.client_auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    None,
    /// A certificate is asked for; connections without one are accepted (and authenticate
    /// through the other domains), a certificate that does not verify ends the handshake.
    Optional,
    /// Every connection must present a certificate that verifies.
    Require,
}

/// The authenticator types this service implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthenticatorKind {
    /// HTTP basic against the internal users.
    Basic,
    /// JSON web tokens.
    Jwt,
    /// The subject of a verified TLS client certificate.
    ClientCert,
}

impl ServerConfig {
    /// Reads and validates a YAML file.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file and the key at fault.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        Self::from_yaml(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and validates YAML text.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key at fault.
    pub fn from_yaml(text: &str) -> Result<Self> {
        let de = serde_norway::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || path.is_empty() {
                Error::Config(inner)
            } else {
                Error::Config(format!("{path}: {inner}"))
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot: supported authenticators, a usable domain, sane values.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, what: &str| Err(Error::Config(format!("{key}: {what}")));
        if let Some(m) = &self.meta {
            if m.kind != "config" {
                return bad("_meta.type", "must be \"config\"");
            }
            if m.config_version != 2 {
                return bad("_meta.config_version", "must be 2");
            }
        }
        self.server.limits.validate()?;
        if let Some(t) = &self.server.tls {
            match (t.client_auth, &t.client_ca) {
                (ClientAuth::None, Some(_)) => {
                    return bad(
                        "server.tls.client_auth",
                        "must be optional or require when client_ca is set",
                    );
                }
                (ClientAuth::Optional | ClientAuth::Require, None) => {
                    return bad(
                        "server.tls.client_ca",
                        "is required when client_auth is optional or require",
                    );
                }
                _ => {}
            }
        }
        let dynamic = &self.config.dynamic;
        for (name, d) in &dynamic.authc {
            let key = format!("config.dynamic.authc.{name}");
            d.authenticator_kind(&key)?;
            match d.authentication_backend.kind.as_str() {
                "intern" | "internal" | "noop" => {}
                "ldap" => {
                    return bad(
                        &format!("{key}.authentication_backend.type"),
                        "ldap is not supported by encrypt-repo serve (use intern, or jwt with noop)",
                    );
                }
                other => {
                    return bad(
                        &format!("{key}.authentication_backend.type"),
                        &format!("unknown backend {other:?} (supported: intern, noop)"),
                    );
                }
            }
            if d.http_authenticator.kind == "basic" && d.authentication_backend.kind == "noop" {
                return bad(
                    &format!("{key}.authentication_backend.type"),
                    "basic authentication needs the intern backend",
                );
            }
            if d.http_authenticator.kind == "clientcert" {
                self.check_clientcert(&key, d)?;
            }
        }
        for (name, d) in &dynamic.authz {
            let key = format!("config.dynamic.authz.{name}.authorization_backend.type");
            match d.authorization_backend.kind.as_str() {
                "noop" => {}
                "ldap" => return bad(&key, "ldap is not supported by encrypt-repo serve"),
                other => {
                    return bad(
                        &key,
                        &format!("unknown backend {other:?} (supported: noop)"),
                    );
                }
            }
        }
        let enabled = dynamic.authc.values().any(|d| d.http_enabled);
        if !enabled && !dynamic.http.anonymous_auth_enabled {
            return bad(
                "config.dynamic.authc",
                "no HTTP authentication domain is enabled and anonymous_auth_enabled is false: nobody could log in",
            );
        }
        let xff = &dynamic.http.xff;
        if xff.enabled && xff.internal_proxies.as_deref().is_none_or(str::is_empty) {
            return bad(
                "config.dynamic.http.xff.internalProxies",
                "is required when xff is enabled",
            );
        }
        if xff.enabled && HeaderName::try_from(xff.remote_ip_header.as_str()).is_err() {
            return bad(
                "config.dynamic.http.xff.remoteIpHeader",
                "is not a valid header name",
            );
        }
        if !(1..=86_400).contains(&self.server.key_status_interval_seconds) {
            return bad(
                "server.key_status_interval_seconds",
                "must be from 1 to 86400",
            );
        }
        if !(1..=3600).contains(&self.server.reload_interval_seconds) {
            return bad("server.reload_interval_seconds", "must be from 1 to 3600");
        }
        let sys = &self.server.system_repository;
        if sys.store_type == "fs" && !sys.settings.contains_key("location") {
            return bad(
                "server.system_repository.settings.location",
                "is required for a system repository of type fs",
            );
        }
        if !sys.encrypted {
            return bad(
                "server.system_repository.encrypted",
                "must be true: the system repository holds password hashes",
            );
        }
        self.restapi.validate()?;
        // jwt settings, rate limits and xff patterns are checked by building them.
        crate::authn::Authenticator::new(self)?;
        Ok(())
    }

    fn check_clientcert(&self, key: &str, d: &AuthcDomain) -> Result<()> {
        let with_ca = self
            .server
            .tls
            .as_ref()
            .is_some_and(|t| t.client_auth != ClientAuth::None && t.client_ca.is_some());
        if d.http_enabled && !with_ca {
            return Err(Error::Config(format!(
                "{key}.http_authenticator.type: clientcert needs server.tls with client_ca and client_auth optional or require"
            )));
        }
        if d.authentication_backend.kind != "noop" {
            return Err(Error::Config(format!(
                "{key}.authentication_backend.type: clientcert authentication needs the noop backend"
            )));
        }
        Ok(())
    }

    /// The reload interval.
    #[must_use]
    pub fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.server.reload_interval_seconds)
    }

    /// This configuration with `config.dynamic` replaced by `dynamic` (a document stored
    /// through the `securityconfig` API), validated as a whole: a `clientcert` domain, for
    /// instance, needs this node's `server.tls`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key at fault.
    pub fn with_dynamic(&self, dynamic: Dynamic) -> Result<Self> {
        let mut c = self.clone();
        c.config.dynamic = dynamic;
        c.validate()?;
        Ok(c)
    }

    /// HTTP-enabled authentication domains in the order they are tried.
    #[must_use]
    pub fn domains(&self) -> Vec<(&str, &AuthcDomain)> {
        let mut v: Vec<_> = self
            .config
            .dynamic
            .authc
            .iter()
            .filter(|(_, d)| d.http_enabled)
            .map(|(n, d)| (n.as_str(), d))
            .collect();
        v.sort_by_key(|(n, d)| (d.order, *n));
        v
    }
}

impl AuthcDomain {
    /// The authenticator type, or a "not supported" error naming `key`.
    ///
    /// # Errors
    /// [`Error::Config`].
    pub fn authenticator_kind(&self, key: &str) -> Result<AuthenticatorKind> {
        let key = format!("{key}.http_authenticator.type");
        match self.http_authenticator.kind.as_str() {
            "basic" => Ok(AuthenticatorKind::Basic),
            "jwt" => Ok(AuthenticatorKind::Jwt),
            "clientcert" => Ok(AuthenticatorKind::ClientCert),
            "kerberos" | "saml" | "openid" | "proxy" | "extended-proxy" => {
                Err(Error::Config(format!(
                    "{key}: {} authentication is not supported by encrypt-repo serve (supported: basic, jwt, clientcert)",
                    self.http_authenticator.kind
                )))
            }
            other => Err(Error::Config(format!(
                "{key}: unknown authenticator {other:?} (supported: basic, jwt, clientcert)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = r#"
_meta: { type: config, config_version: 2 }
config:
  dynamic:
    http:
      anonymous_auth_enabled: false
      xff: { enabled: true, internalProxies: '127\.0\.0\.1', remoteIpHeader: x-forwarded-for }
    authc:
      basic_internal_auth_domain:
        description: internal users
        http_enabled: true
        transport_enabled: true
        order: 1
        http_authenticator: { type: basic, challenge: true }
        authentication_backend: { type: intern }
      jwt_auth_domain:
        http_enabled: true
        order: 0
        http_authenticator:
          type: jwt
          challenge: false
          config: { signing_key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", jwt_header: Authorization }
        authentication_backend: { type: noop }
    authz: {}
server:
  listen: 127.0.0.1:0
  system_repository:
    type: fs
    settings: { location: /tmp/x }
    encrypted: true
    crypto_settings: { key_provider_name: system, key_provider_type: local, settings: { key_file: /tmp/k } }
"#;

    fn err(text: &str) -> String {
        ServerConfig::from_yaml(text)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn sample_parses_and_orders_domains() {
        let c = ServerConfig::from_yaml(SAMPLE).expect("valid");
        let names: Vec<_> = c.domains().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["jwt_auth_domain", "basic_internal_auth_domain"]);
        assert!(c.config.dynamic.http.xff.enabled);
        assert_eq!(c.reload_interval(), Duration::from_secs(5));
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../config.example.yml");
        let c = ServerConfig::from_yaml(text).expect("config.example.yml is valid");
        assert_eq!(c.server.listen, default_listen());
        assert_eq!(c.domains().len(), 1, "jwt is there but off");
        // What the securityconfig API shows and stores reads back as the same configuration.
        let json = c.config.dynamic.to_json();
        let again = Dynamic::from_json(json.clone()).expect("round trip");
        assert_eq!(again.to_json(), json);
        assert!(json["authc"]["jwt_auth_domain"]["http_authenticator"]["config"].is_object());
    }

    #[test]
    fn unknown_key_is_named() {
        let text = SAMPLE.replace("anonymous_auth_enabled: false", "anonymous_auth: false");
        let e = err(&text);
        assert!(e.contains("config.dynamic.http"), "{e}");
        assert!(e.contains("anonymous_auth"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let text = SAMPLE.replace("order: 1", "order: first");
        let e = err(&text);
        assert!(
            e.contains("config.dynamic.authc.basic_internal_auth_domain.order"),
            "{e}"
        );
    }

    #[test]
    fn kerberos_and_ldap_are_not_supported() {
        let e = err(&SAMPLE.replace("type: basic", "type: kerberos"));
        assert!(e.contains("http_authenticator.type"), "{e}");
        assert!(
            e.contains("kerberos authentication is not supported"),
            "{e}"
        );
        let e = err(&SAMPLE.replace("type: intern", "type: ldap"));
        assert!(
            e.contains("authentication_backend.type: ldap is not supported"),
            "{e}"
        );
        let e = err(&SAMPLE.replace("type: basic", "type: clientcert"));
        assert!(
            e.contains(
                "basic_internal_auth_domain.http_authenticator.type: clientcert needs server.tls"
            ),
            "{e}"
        );
        let e = err(&SAMPLE.replace(
            "authz: {}",
            "authz: { roles_from_ldap: { authorization_backend: { type: ldap } } }",
        ));
        assert!(e.contains("authz.roles_from_ldap"), "{e}");
    }

    #[test]
    fn nobody_could_log_in() {
        let text = SAMPLE.replace("http_enabled: true", "http_enabled: false");
        assert!(err(&text).contains("config.dynamic.authc"));
    }

    #[test]
    fn bad_values_are_named() {
        let e = err(&SAMPLE.replace("listen: 127.0.0.1:0", "listen: nowhere"));
        assert!(e.contains("server.listen"), "{e}");
        let e = err(&SAMPLE.replace("listen: 127.0.0.1:0", "reload_interval_seconds: 0"));
        assert!(e.contains("server.reload_interval_seconds"), "{e}");
        let e = err(&SAMPLE.replace("internalProxies: '127\\.0\\.0\\.1', ", ""));
        assert!(e.contains("internalProxies"), "{e}");
        let e = err(&SAMPLE.replace("config_version: 2", "config_version: 1"));
        assert!(e.contains("_meta.config_version"), "{e}");
        let e = err(&SAMPLE.replace("encrypted: true", "encrypted: false"));
        assert!(e.contains("server.system_repository.encrypted"), "{e}");
    }

    #[test]
    fn restapi_section_defaults_and_bad_values() {
        let c = ServerConfig::from_yaml(SAMPLE).expect("valid");
        assert_eq!(
            c.restapi.roles_enabled,
            ["all_access", "security_rest_api_access"]
        );
        let with = |section: &str| format!("{SAMPLE}restapi:\n{section}");
        let c = ServerConfig::from_yaml(&with(
            "  roles_enabled: [all_access, ops]\n  endpoints_disabled: { ops: { ROLES: [PUT, DELETE] } }\n",
        ))
        .expect("valid");
        assert_eq!(
            c.restapi.endpoints_disabled["ops"]["ROLES"],
            ["PUT", "DELETE"]
        );
        let e = err(&with("  endpoints_disabled: { ops: { ROLE: [PUT] } }\n"));
        assert!(
            e.contains("restapi.endpoints_disabled.ops.ROLE: unknown endpoint"),
            "{e}"
        );
        let e = err(&with("  endpoints_disabled: { ops: { ROLES: [put] } }\n"));
        assert!(
            e.contains("restapi.endpoints_disabled.ops.ROLES: unknown method"),
            "{e}"
        );
        let e = err(&with("  roles_enabled: [\"\"]\n"));
        assert!(e.contains("restapi.roles_enabled[0]"), "{e}");
        let ok = ServerConfig::from_yaml(&with("  allow_securityconfig_modification: true\n"))
            .expect("allowed");
        assert!(ok.restapi.allow_securityconfig_modification);
        let e = err(&with("  roles_enable: []\n"));
        assert!(e.contains("restapi") && e.contains("roles_enable"), "{e}");
    }
}
