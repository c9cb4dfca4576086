//! Authentication: the `authc` domains of `config.yml`.
//!
//! Domains are tried in ascending `order`. A domain whose credentials are absent from the
//! request is skipped; the first domain that accepts the request's credentials wins. When no
//! domain accepts them:
//!
//! - credentials were presented but rejected → 401;
//! - none were presented and `anonymous_auth_enabled` → the anonymous user
//!   ([`ANONYMOUS_USER`], backend role
//!   [`ANONYMOUS_BACKEND_ROLE`]);
//! - otherwise → 401, with `WWW-Authenticate: Basic realm="OpenSearch Security"` when a
//!   `basic` domain has `challenge: true`.
//!
//! `basic` checks the internal users. A user that does not exist is verified against a dummy
//! argon2id hash, so it costs what a wrong password costs and follows the same code path.

pub mod jwt;
pub mod ratelimit;
pub mod xff;

use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::config::{AuthenticatorKind, ServerConfig};
use crate::error::{ApiError, Result};
use crate::security::{ANONYMOUS_BACKEND_ROLE, ANONYMOUS_USER, SecurityModel, Subject};

/// One configured domain.
#[derive(Debug, Clone)]
struct Domain {
    name: String,
    kind: AuthenticatorKind,
    challenge: bool,
}

/// The authentication chain built from the configuration.
#[derive(Debug, Clone)]
pub struct Authenticator {
    domains: Vec<Domain>,
    anonymous: bool,
}

/// Basic credentials. `Debug` hides the password, which is wiped on drop.
pub struct BasicCredentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `Authorization: Basic …`, if present and well formed. A malformed header is `Err`.
///
/// # Errors
/// A header that says `Basic` but does not decode to `user:password`.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<BasicCredentials>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let Ok(value) = value.to_str() else {
        return Err(ApiError::unauthorized());
    };
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| ApiError::unauthorized())?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| ApiError::unauthorized())?;
    let (user, password) = text.split_once(':').ok_or_else(ApiError::unauthorized)?;
    Ok(Some(BasicCredentials {
        user: user.to_owned(),
        password: Zeroizing::new(password.to_owned()),
    }))
}

/// Checks basic credentials against the internal users, spending the same work whether or not
/// the user exists. Blocking (argon2id): call from a blocking thread.
#[must_use]
pub fn verify_basic(model: &SecurityModel, creds: &BasicCredentials) -> Option<Subject> {
    match model.user(&creds.user) {
        Some(u) => crate::password::verify(&creds.password, &u.hash).then(|| Subject {
            name: creds.user.clone(),
            backend_roles: u.backend_roles.clone(),
            direct_roles: u.opendistro_security_roles.clone(),
            remote_ip: None,
        }),
        None => {
            crate::password::dummy_verify(&creds.password);
            None
        }
    }
}

impl Authenticator {
    /// The chain of `config`'s HTTP-enabled domains.
    ///
    /// # Errors
    /// A domain type that is not supported (already refused by
    /// [`ServerConfig::validate`]).
    pub fn new(config: &ServerConfig) -> Result<Self> {
        let mut domains = Vec::new();
        for (name, d) in config.domains() {
            let kind = d.authenticator_kind(&format!("config.dynamic.authc.{name}"))?;
            domains.push(Domain {
                name: name.to_owned(),
                kind,
                challenge: d.http_authenticator.challenge,
            });
        }
        Ok(Self {
            domains,
            anonymous: config.config.dynamic.http.anonymous_auth_enabled,
        })
    }

    /// Authenticates a request.
    ///
    /// # Errors
    /// 401 (with a challenge when configured).
    pub async fn authenticate(
        &self,
        model: &std::sync::Arc<SecurityModel>,
        headers: &HeaderMap,
        remote_ip: Option<IpAddr>,
    ) -> Result<Subject, ApiError> {
        let mut presented = false;
        let mut challenge = false;
        for d in &self.domains {
            match d.kind {
                AuthenticatorKind::Basic => {
                    challenge |= d.challenge;
                    let creds = match basic_credentials(headers) {
                        Ok(Some(c)) => c,
                        Ok(None) => continue,
                        Err(_) => {
                            presented = true;
                            continue;
                        }
                    };
                    presented = true;
                    let m = model.clone();
                    let user = creds.user.clone();
                    let verified = tokio::task::spawn_blocking(move || verify_basic(&m, &creds))
                        .await
                        .ok()
                        .flatten();
                    match verified {
                        Some(mut s) => {
                            s.remote_ip = remote_ip;
                            return Ok(s);
                        }
                        None => {
                            tracing::info!(domain = %d.name, user = %user, remote = ?remote_ip, "authentication failed");
                        }
                    }
                }
                AuthenticatorKind::Jwt => {
                    // Wired once the jwt authenticator lands (authn::jwt).
                }
            }
        }
        if !presented && self.anonymous {
            return Ok(Subject {
                name: ANONYMOUS_USER.into(),
                backend_roles: vec![ANONYMOUS_BACKEND_ROLE.into()],
                direct_roles: Vec::new(),
                remote_ip,
            });
        }
        let mut e = ApiError::unauthorized();
        e.challenge = challenge;
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{InternalUser, SecurityData};

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().expect("header"));
        h
    }

    fn basic(user: &str, pw: &str) -> HeaderMap {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        headers(&format!("Basic {enc}"))
    }

    #[test]
    fn basic_header_parsing() {
        let c = basic_credentials(&basic("al:ice", "pw:with:colons"))
            .expect("ok")
            .expect("some");
        assert_eq!(c.user, "al");
        assert_eq!(c.password.as_str(), "ice:pw:with:colons");
        assert!(!format!("{c:?}").contains("ice:pw"));
        assert!(basic_credentials(&HeaderMap::new()).expect("ok").is_none());
        assert!(
            basic_credentials(&headers("Bearer x"))
                .expect("ok")
                .is_none()
        );
        assert!(basic_credentials(&headers("Basic !!!")).is_err());
        assert!(
            basic_credentials(&headers("Basic Zm9v")).is_err(),
            "no colon"
        );
    }

    #[test]
    fn unknown_user_and_wrong_password_fail_alike() {
        let mut data = SecurityData::default();
        data.internalusers.insert(
            "alice".into(),
            InternalUser {
                hash: crate::password::hash("secret").expect("hash"),
                backend_roles: vec!["readers".into()],
                ..InternalUser::default()
            },
        );
        let m = SecurityModel::new(data).expect("model");
        let c = |u: &str, p: &str| basic_credentials(&basic(u, p)).expect("ok").expect("some");
        let s = verify_basic(&m, &c("alice", "secret")).expect("accepted");
        assert_eq!(s.backend_roles, ["readers"]);
        assert!(verify_basic(&m, &c("alice", "wrong")).is_none());
        assert!(verify_basic(&m, &c("alice", "")).is_none());
        assert!(verify_basic(&m, &c("mallory", "secret")).is_none());
    }
}
