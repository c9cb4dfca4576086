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

pub mod clientcert;
pub mod jwt;
pub mod ratelimit;
pub mod xff;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::config::{AuthenticatorKind, ServerConfig};
use crate::error::{ApiError, Error, Result};
use crate::security::{ANONYMOUS_BACKEND_ROLE, ANONYMOUS_USER, SecurityModel, Subject};
use ratelimit::{Blocked, LoginRateLimiter, RateLimitConfig};
use xff::XffResolver;

/// How one configured domain authenticates.
#[derive(Debug, Clone)]
enum Method {
    Basic,
    Jwt(Arc<jwt::JwtAuthenticator>),
    ClientCert(Arc<clientcert::ClientCertConfig>),
}

/// One configured domain.
#[derive(Debug, Clone)]
struct Domain {
    name: String,
    method: Method,
    challenge: bool,
}

/// The authentication chain built from the configuration, with the failed-login limiter and
/// the client-address resolver.
#[derive(Debug, Clone)]
pub struct Authenticator {
    domains: Vec<Domain>,
    anonymous: bool,
    limiter: Arc<LoginRateLimiter>,
    xff: XffResolver,
    verified: Arc<VerifiedCache>,
    /// Password verifications running at once: each argon2id verification takes 19 MiB and a
    /// core for tens of milliseconds, so without a bound a burst of logins is a memory and CPU
    /// denial of service.
    hashing: Arc<tokio::sync::Semaphore>,
    /// Password verifications started (argon2id / bcrypt work, not cache hits).
    verifications: Arc<std::sync::atomic::AtomicU64>,
}

/// How long a verified password is remembered (OpenSearch caches authenticated users too).
pub const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// Most remembered verifications; the cache is emptied when full.
const VERIFIED_MAX: usize = 10_000;

/// Passwords verified recently, so a client sending basic credentials on every request does not
/// pay an argon2id verification each time. Keyed by an HMAC (per-process random key) of the
/// user name and password: neither is kept. An entry is used only while the user's stored hash is
/// the one it was verified against, so a changed password or a removed user ends it at once.
struct VerifiedCache {
    key: aws_lc_rs::hmac::Key,
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], (String, Instant)>>,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache").finish_non_exhaustive()
    }
}

impl VerifiedCache {
    fn new() -> Result<Self> {
        let key = aws_lc_rs::hmac::Key::generate(
            aws_lc_rs::hmac::HMAC_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .map_err(|_| Error::Config("no randomness for the credential cache key".into()))?;
        Ok(Self {
            key,
            entries: std::sync::Mutex::default(),
        })
    }

    fn id(&self, creds: &BasicCredentials) -> [u8; 32] {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.key);
        ctx.update(&(creds.user.len() as u64).to_be_bytes());
        ctx.update(creds.user.as_bytes());
        ctx.update(creds.password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], (String, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The subject, if these credentials were verified against the user's current hash lately.
    fn get(&self, model: &SecurityModel, creds: &BasicCredentials) -> Option<Subject> {
        let user = model.user(&creds.user)?;
        let id = self.id(creds);
        let hit = self.entries().get(&id).is_some_and(|(hash, at)| {
            at.elapsed() < VERIFIED_TTL
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    hash.as_bytes(),
                    user.hash.as_bytes(),
                )
                .is_ok()
        });
        hit.then(|| Subject {
            name: creds.user.clone(),
            backend_roles: user.backend_roles.clone(),
            direct_roles: user.opendistro_security_roles.clone(),
            remote_ip: None,
        })
    }

    fn put(&self, model: &SecurityModel, creds: &BasicCredentials) {
        let Some(user) = model.user(&creds.user) else {
            return;
        };
        let id = self.id(creds);
        let mut entries = self.entries();
        if entries.len() >= VERIFIED_MAX {
            entries.clear();
        }
        entries.insert(id, (user.hash.clone(), Instant::now()));
    }
}

/// The address used for requests whose peer is unknown (tests without a socket).
const UNKNOWN_PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

fn rate_limits(config: &ServerConfig) -> Result<LoginRateLimiter> {
    let mut ip = RateLimitConfig::default();
    let mut user = RateLimitConfig::default();
    for (name, v) in &config.config.dynamic.auth_failure_listeners {
        let key = format!("config.dynamic.auth_failure_listeners.{name}");
        let mut map = match v {
            serde_json::Value::Object(m) => m.clone(),
            _ => return Err(Error::Config(format!("{key}: must be a map"))),
        };
        let kind = map.remove("type");
        // OpenSearch names the backend a username listener applies to; only intern exists here.
        map.remove("authentication_backend");
        let parsed: RateLimitConfig = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| Error::Config(format!("{key}: {e}")))?;
        parsed
            .validate()
            .map_err(|e| Error::Config(format!("{key}.{}: must be greater than 0", e.key)))?;
        match kind.as_ref().and_then(|k| k.as_str()) {
            Some("ip") => ip = parsed,
            Some("username") => user = parsed,
            _ => {
                return Err(Error::Config(format!("{key}.type: must be ip or username")));
            }
        }
    }
    LoginRateLimiter::new(ip, user)
        .map_err(|e| Error::Config(format!("config.dynamic.auth_failure_listeners: {e}")))
}

fn xff_resolver(config: &ServerConfig) -> Result<XffResolver> {
    let x = &config.config.dynamic.http.xff;
    if !x.enabled {
        return Ok(XffResolver::disabled());
    }
    let bad = |e: xff::ConfigError| Error::Config(format!("config.dynamic.http.xff.{e}"));
    XffResolver::new(
        x.internal_proxies.as_deref().unwrap_or_default(),
        &x.remote_ip_header,
    )
    .map_err(bad)?
    .with_trusted_proxies(x.trusted_proxies.as_deref())
    .map_err(bad)
}

impl Authenticator {
    /// The chain of `config`'s HTTP-enabled domains.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key: an unsupported domain type, an unusable `jwt`
    /// configuration, rate limit or xff setting.
    pub fn new(config: &ServerConfig) -> Result<Self> {
        let mut domains = Vec::new();
        for (name, d) in config.domains() {
            let key = format!("config.dynamic.authc.{name}");
            let method = match d.authenticator_kind(&key)? {
                AuthenticatorKind::Basic => Method::Basic,
                AuthenticatorKind::Jwt => {
                    let key = format!("{key}.http_authenticator.config");
                    let c = jwt::JwtConfig::from_value(d.http_authenticator.config.clone())
                        .map_err(|e| Error::Config(format!("{key}: {e}")))?;
                    let a = jwt::JwtAuthenticator::new(c)
                        .map_err(|e| Error::Config(format!("{key}.{e}")))?;
                    Method::Jwt(Arc::new(a))
                }
                AuthenticatorKind::ClientCert => {
                    let key = format!("{key}.http_authenticator.config");
                    let c = clientcert::ClientCertConfig::from_value(
                        d.http_authenticator.config.clone(),
                    )
                    .map_err(|e| Error::Config(format!("{key}: {e}")))?;
                    Method::ClientCert(Arc::new(c))
                }
            };
            domains.push(Domain {
                name: name.to_owned(),
                method,
                challenge: d.http_authenticator.challenge,
            });
        }
        Ok(Self {
            domains,
            anonymous: config.config.dynamic.http.anonymous_auth_enabled,
            limiter: Arc::new(rate_limits(config)?),
            xff: xff_resolver(config)?,
            verified: Arc::new(VerifiedCache::new()?),
            hashing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            )),
            verifications: Arc::default(),
        })
    }

    /// The chain of `config`'s domains (a changed `config.dynamic`), keeping what `previous`
    /// learnt: remembered password verifications (each is tied to the user's stored hash, not
    /// to the configuration), the bound on concurrent verifications, and — unless
    /// `config.dynamic.auth_failure_listeners` changed — the failed-login counts and blocks,
    /// so changing the configuration does not unblock a client guessing passwords.
    ///
    /// # Errors
    /// As [`Authenticator::new`].
    pub fn rebuilt(
        config: &ServerConfig,
        previous: &Self,
        previous_config: &ServerConfig,
    ) -> Result<Self> {
        let mut next = Self::new(config)?;
        next.verified = previous.verified.clone();
        next.hashing = previous.hashing.clone();
        next.verifications = previous.verifications.clone();
        if config.config.dynamic.auth_failure_listeners
            == previous_config.config.dynamic.auth_failure_listeners
        {
            next.limiter = previous.limiter.clone();
        }
        Ok(next)
    }

    /// Forgets every remembered password verification (`DELETE …/api/cache`): the next
    /// request of each user verifies its password again.
    pub fn flush_cache(&self) {
        self.verified.entries().clear();
    }

    /// Checks a password given outside a login (the current password of an account password
    /// change) under the failed-login limits: refused while `user` or `client` is blocked, and
    /// a wrong password counts as a failed login. Blocking (argon2id): call from a blocking
    /// thread.
    #[must_use]
    pub fn verify_password_attempt(
        &self,
        client: Option<IpAddr>,
        user: &str,
        password: &str,
        stored: &str,
    ) -> bool {
        let ip = client.unwrap_or(UNKNOWN_PEER);
        if self.limiter.check(ip, Some(user), Instant::now()).is_err() {
            crate::password::dummy_verify(password);
            return false;
        }
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ok = crate::password::verify(password, stored);
        if ok {
            self.limiter.record_success(ip, Some(user), Instant::now());
        } else {
            self.limiter.record_failure(ip, Some(user), Instant::now());
        }
        ok
    }

    /// How many password verifications this node has run (cache hits not counted).
    #[must_use]
    pub fn password_verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The client address of a request from `peer`: the remote-IP header is used only when
    /// `peer` is one of the `internalProxies`.
    #[must_use]
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        peer.map(|p| self.xff.client_ip(p, headers))
    }

    /// Authenticates a request from client address `client` (after xff resolution).
    ///
    /// # Errors
    /// 401 (with a challenge when configured), also while the address or user is blocked by
    /// the failed-login limiter.
    pub async fn authenticate(
        &self,
        model: &Arc<SecurityModel>,
        headers: &HeaderMap,
        query: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Subject, ApiError> {
        self.authenticate_with_cert(model, headers, query, client, None)
            .await
    }

    /// [`Authenticator::authenticate`] for a request on a TLS connection whose client presented
    /// `peer_cert` (the end-entity certificate, DER, already verified by the handshake), which
    /// `clientcert` domains map to a user.
    ///
    /// # Errors
    /// As [`Authenticator::authenticate`].
    pub async fn authenticate_with_cert(
        &self,
        model: &Arc<SecurityModel>,
        headers: &HeaderMap,
        query: Option<&str>,
        client: Option<IpAddr>,
        peer_cert: Option<&[u8]>,
    ) -> Result<Subject, ApiError> {
        let ip = client.unwrap_or(UNKNOWN_PEER);
        let mut refused: Option<Option<String>> = None;
        let mut blocked: Option<Blocked> = None;
        let mut unmapped = false;
        let mut challenge = false;
        for d in &self.domains {
            let outcome = match &d.method {
                Method::Basic => {
                    challenge |= d.challenge;
                    match basic_credentials(headers) {
                        Ok(Some(creds)) => self.basic(model, d, creds, ip).await,
                        Ok(None) => continue,
                        Err(_) => Outcome::Refused { user: None },
                    }
                }
                Method::Jwt(j) => self.jwt(j, d, headers, query, ip),
                Method::ClientCert(c) => match peer_cert {
                    None => continue,
                    Some(der) => Self::clientcert(c, d, der),
                },
            };
            match outcome {
                Outcome::Accepted(mut s) => {
                    s.remote_ip = client;
                    return Ok(s);
                }
                Outcome::Absent => {}
                Outcome::Unmapped => unmapped = true,
                Outcome::Refused { user } => {
                    // The first domain that named a user decides whom the failure counts
                    // against; it is counted only if no later domain accepts.
                    match &mut refused {
                        Some(Some(_)) => {}
                        slot => *slot = Some(user),
                    }
                }
                Outcome::Blocked(b) => {
                    blocked = Some(
                        blocked.map_or(b, |o| if b.retry_after > o.retry_after { b } else { o }),
                    );
                }
            }
        }
        // Credentials were refused by every domain they applied to: one failed login, however
        // many domains looked at them (a token valid for the second JWT domain is no failure of
        // the first).
        if let Some(user) = &refused {
            self.limiter
                .record_failure(ip, user.as_deref(), Instant::now());
        }
        if let Some(b) = blocked {
            return Err(ApiError::too_many_failed_logins(b.retry_after_secs()));
        }
        if refused.is_none() && !unmapped && self.anonymous {
            return Ok(Subject {
                name: ANONYMOUS_USER.into(),
                backend_roles: vec![ANONYMOUS_BACKEND_ROLE.into()],
                direct_roles: Vec::new(),
                remote_ip: client,
            });
        }
        let mut e = ApiError::unauthorized();
        e.challenge = challenge;
        Err(e)
    }

    /// Basic credentials against the internal users. A refusal is counted by the caller.
    async fn basic(
        &self,
        model: &Arc<SecurityModel>,
        d: &Domain,
        creds: BasicCredentials,
        ip: IpAddr,
    ) -> Outcome {
        let user = creds.user.clone();
        if let Err(blocked) = self.limiter.check(ip, Some(&user), Instant::now()) {
            tracing::warn!(domain = %d.name, user = %user, remote = %ip, by = ?blocked.by, "login refused: too many failures");
            return Outcome::Blocked(blocked);
        }
        if let Some(s) = self.verified.get(model, &creds) {
            self.limiter.record_success(ip, Some(&user), Instant::now());
            return Outcome::Accepted(s);
        }
        let Ok(_permit) = self.hashing.acquire().await else {
            return Outcome::Refused { user: Some(user) };
        };
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (m, cache) = (model.clone(), self.verified.clone());
        let verified = tokio::task::spawn_blocking(move || {
            let s = verify_basic(&m, &creds);
            if s.is_some() {
                cache.put(&m, &creds);
            }
            s
        })
        .await
        .ok()
        .flatten();
        match verified {
            Some(s) => {
                self.limiter.record_success(ip, Some(&user), Instant::now());
                Outcome::Accepted(s)
            }
            None => {
                tracing::info!(domain = %d.name, user = %user, remote = %ip, "authentication failed");
                Outcome::Refused { user: Some(user) }
            }
        }
    }

    /// The certificate chain was verified during the handshake; only the subject is read here.
    fn clientcert(c: &clientcert::ClientCertConfig, d: &Domain, der: &[u8]) -> Outcome {
        match clientcert::identify(c, der) {
            Ok(id) => Outcome::Accepted(Subject {
                name: id.name,
                backend_roles: id.backend_roles,
                direct_roles: Vec::new(),
                remote_ip: None,
            }),
            Err(e) => {
                // A certificate the handshake verified but this domain cannot map: refused,
                // but no guess to count (the certificate, not a password, is the credential).
                tracing::info!(domain = %d.name, error = %e, "client certificate refused");
                Outcome::Unmapped
            }
        }
    }

    fn jwt(
        &self,
        j: &jwt::JwtAuthenticator,
        d: &Domain,
        headers: &HeaderMap,
        query: Option<&str>,
        ip: IpAddr,
    ) -> Outcome {
        // No token for this domain: nothing presented, whatever the limiter says.
        let Some(checked) = j
            .authenticate(headers, query, SystemTime::now())
            .transpose()
        else {
            return Outcome::Absent;
        };
        if let Err(blocked) = self.limiter.check(ip, None, Instant::now()) {
            tracing::warn!(domain = %d.name, remote = %ip, by = ?blocked.by, "token refused: too many failures");
            return Outcome::Blocked(blocked);
        }
        match checked {
            Ok(id) => Outcome::Accepted(Subject {
                name: id.subject,
                backend_roles: id.backend_roles,
                direct_roles: Vec::new(),
                remote_ip: None,
            }),
            Err(e) => {
                tracing::info!(domain = %d.name, remote = %ip, error = %e, "token refused");
                Outcome::Refused { user: None }
            }
        }
    }
}

/// What one domain made of a request's credentials.
enum Outcome {
    /// Not this domain's kind of credential: the next domain looks.
    Absent,
    /// Accepted: the request runs as this subject.
    Accepted(Subject),
    /// Presented and refused; `user` is the basic user name, if any.
    Refused { user: Option<String> },
    /// A verified client certificate this domain cannot map to a user: refused, not counted.
    Unmapped,
    /// Not checked: the address or the user is blocked by the failed-login limiter.
    Blocked(Blocked),
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

    #[test]
    fn remembered_verifications_end_with_a_changed_hash() {
        let mut data = SecurityData::default();
        let user = |pw: &str| InternalUser {
            hash: crate::password::hash(pw).expect("hash"),
            ..InternalUser::default()
        };
        data.internalusers.insert("alice".into(), user("one"));
        let m1 = SecurityModel::new(data.clone()).expect("model");
        let cache = VerifiedCache::new().expect("cache");
        let c = |u: &str, p: &str| basic_credentials(&basic(u, p)).expect("ok").expect("some");
        assert!(cache.get(&m1, &c("alice", "one")).is_none());
        cache.put(&m1, &c("alice", "one"));
        assert_eq!(
            cache.get(&m1, &c("alice", "one")).map(|s| s.name),
            Some("alice".to_owned())
        );
        assert!(
            cache.get(&m1, &c("alice", "two")).is_none(),
            "other password"
        );
        data.internalusers.insert("alice".into(), user("one"));
        let m2 = SecurityModel::new(data.clone()).expect("model");
        assert!(
            cache.get(&m2, &c("alice", "one")).is_none(),
            "a new hash, even of the same password, is verified again"
        );
        data.internalusers.clear();
        let m3 = SecurityModel::new(data).expect("model");
        assert!(cache.get(&m3, &c("alice", "one")).is_none(), "user removed");
    }
}
