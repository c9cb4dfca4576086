//! Credentials from the Azure environment (never from settings) and the bearer token cache.
//!
//! The first credential whose variables are present is used, in the order azure-identity's
//! `DefaultAzureCredential` tries them: client secret, client certificate, workload identity,
//! managed identity (App Service `IDENTITY_ENDPOINT`, else IMDS).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, rand, rsa, signature};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use encrypt_repo_keys::{Error, Result};
use reqwest::Method;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::TYPE;
use crate::http::{Http, Request, form_body, percent_encode, sanitize};

/// The process environment, or a stand-in for it.
pub(crate) type EnvFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The Key Vault resource of the public cloud, used until the vault's challenge names one.
pub const DEFAULT_SCOPE: &str = "https://vault.azure.net/.default";
/// The IMDS address of an Azure VM.
pub const IMDS_HOST: &str = "http://169.254.169.254";
/// Tokens are renewed this long before they expire (as azure-identity does).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Key Vault and Managed HSM resources of the public and sovereign clouds: a challenge may
/// name one of these whatever the vault's host is (a private endpoint, a test server).
const KNOWN_RESOURCES: [&str; 7] = [
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
    "vault.microsoftazure.de",
    "managedhsm.azure.net",
    "managedhsm.azure.cn",
    "managedhsm.usgovcloudapi.net",
];

fn cred_error(message: impl Into<String>) -> Error {
    Error::Provider {
        provider: TYPE.into(),
        message: message.into(),
    }
}

/// A client certificate: its DER (for the thumbprints) and its RSA key.
struct ClientCert {
    der: Vec<u8>,
    key: rsa::KeyPair,
}

enum Source {
    ClientSecret {
        tenant: String,
        client_id: String,
        secret: Zeroizing<String>,
    },
    ClientCertificate {
        tenant: String,
        client_id: String,
        path: PathBuf,
        cert: ClientCert,
    },
    WorkloadIdentity {
        tenant: String,
        client_id: String,
        token_file: PathBuf,
    },
    AppService {
        endpoint: String,
        header: Zeroizing<String>,
        client_id: Option<String>,
    },
    Imds {
        host: String,
        client_id: Option<String>,
    },
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Self::ClientSecret {
                tenant, client_id, ..
            } => format!(
                "client secret (AZURE_CLIENT_SECRET) of client {client_id} in tenant {tenant}"
            ),
            Self::ClientCertificate {
                tenant,
                client_id,
                path,
                ..
            } => format!(
                "client certificate {} of client {client_id} in tenant {tenant}",
                path.display()
            ),
            Self::WorkloadIdentity {
                tenant,
                client_id,
                token_file,
            } => format!(
                "workload identity (federated token file {}) of client {client_id} in tenant {tenant}",
                token_file.display()
            ),
            Self::AppService {
                endpoint,
                client_id,
                ..
            } => format!(
                "managed identity{} at IDENTITY_ENDPOINT {endpoint}",
                client_id
                    .as_deref()
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default()
            ),
            Self::Imds { host, client_id } => format!(
                "managed identity{} from IMDS at {host}",
                client_id
                    .as_deref()
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default()
            ),
        }
    }

    fn tenant(&self) -> Option<&str> {
        match self {
            Self::ClientSecret { tenant, .. }
            | Self::ClientCertificate { tenant, .. }
            | Self::WorkloadIdentity { tenant, .. } => Some(tenant),
            Self::AppService { .. } | Self::Imds { .. } => None,
        }
    }
}

/// What the vault's `WWW-Authenticate` challenge asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) tenant: Option<String>,
    pub(crate) scope: String,
}

impl Challenge {
    /// Parses `Bearer authorization="https://login…/{tenant}", resource="https://vault.azure.net"`
    /// (or `authorization_uri=`, `scope=`). Only the tenant is taken from the authorization URL:
    /// tokens are always requested from the configured authority host, so a vault cannot send a
    /// client secret elsewhere. The resource must be Key Vault's, or a parent domain of the
    /// vault's host, so a vault cannot obtain a token for another service.
    pub(crate) fn parse(header: &str, vault_host: &str) -> Result<Self> {
        let rest = header
            .trim()
            .strip_prefix("Bearer")
            .or_else(|| header.trim().strip_prefix("bearer"))
            .ok_or_else(|| cred_error("the vault's WWW-Authenticate challenge is not Bearer"))?;
        let mut tenant = None;
        let mut scope = None;
        for (k, v) in challenge_params(rest) {
            match k.to_ascii_lowercase().as_str() {
                "authorization" | "authorization_uri" => {
                    tenant = v
                        .split_once("://")
                        .and_then(|(_, r)| r.split('/').nth(1))
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned);
                }
                "resource" if scope.is_none() => {
                    scope = Some(format!("{}/.default", v.trim_end_matches('/')));
                }
                "scope" => scope = Some(v.to_owned()),
                _ => {}
            }
        }
        let scope = scope.ok_or_else(|| {
            cred_error("the vault's WWW-Authenticate challenge names no resource or scope")
        })?;
        let scope_host = scope
            .strip_prefix("https://")
            .and_then(|r| r.split('/').next())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let ok = KNOWN_RESOURCES.contains(&scope_host.as_str())
            || vault_host == scope_host
            || (scope_host.contains('.') && vault_host.ends_with(&format!(".{scope_host}")));
        if !ok || !tenant.as_deref().is_none_or(is_tenant) {
            return Err(cred_error(format!(
                "the vault's challenge asks for a token for {scope:?}, which is not a Key Vault \
                 resource for host {vault_host}; refusing to send it one"
            )));
        }
        Ok(Self { tenant, scope })
    }
}

fn is_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// `k="v", k2=v2` pairs of a challenge.
fn challenge_params(s: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = s.trim_start_matches([' ', ',']);
    while let Some((k, r)) = rest.split_once('=') {
        let k = k.trim();
        let r = r.trim_start();
        let (v, r) = if let Some(q) = r.strip_prefix('"') {
            q.split_once('"').unwrap_or((q, ""))
        } else {
            r.split_once([',', ' ']).unwrap_or((r, ""))
        };
        out.push((k, v));
        rest = r.trim_start_matches([' ', ',']);
    }
    out
}

struct Token {
    value: Zeroizing<String>,
    renew_at: Instant,
    tenant: Option<String>,
    scope: String,
}

#[derive(Default)]
struct State {
    challenge: Option<Challenge>,
    token: Option<Token>,
}

/// A credential and its token cache.
pub(crate) struct Auth {
    source: Source,
    authority: String,
    allowed_tenants: Vec<String>,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("source", &self.source.describe())
            .field("authority_host", &self.authority)
            .finish_non_exhaustive()
    }
}

fn var(env: &EnvFn, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

impl Auth {
    /// Picks the credential from the environment. Reads a client certificate now (so a bad one
    /// is reported when the provider is built); a federated token file is read for each token,
    /// because it is rotated in place.
    pub(crate) async fn from_env(env: &EnvFn, authority: String) -> Result<Self> {
        let tenant = var(env, "AZURE_TENANT_ID");
        let client_id = var(env, "AZURE_CLIENT_ID");
        let need = |what: &str| -> Result<(String, String)> {
            match (&tenant, &client_id) {
                (Some(t), Some(c)) => {
                    if !is_tenant(t) {
                        return Err(cred_error(
                            "AZURE_TENANT_ID is not a tenant id or domain name",
                        ));
                    }
                    Ok((t.clone(), c.clone()))
                }
                _ => Err(cred_error(format!(
                    "{what} is set, but AZURE_TENANT_ID and AZURE_CLIENT_ID must be set with it"
                ))),
            }
        };
        let source = if let Some(secret) = var(env, "AZURE_CLIENT_SECRET") {
            let (tenant, client_id) = need("AZURE_CLIENT_SECRET")?;
            Source::ClientSecret {
                tenant,
                client_id,
                secret: Zeroizing::new(secret),
            }
        } else if let Some(path) = var(env, "AZURE_CLIENT_CERTIFICATE_PATH") {
            let (tenant, client_id) = need("AZURE_CLIENT_CERTIFICATE_PATH")?;
            if var(env, "AZURE_CLIENT_CERTIFICATE_PASSWORD").is_some() {
                return Err(cred_error(
                    "AZURE_CLIENT_CERTIFICATE_PASSWORD is set: only an unencrypted PEM file \
                     (certificate and private key) is supported",
                ));
            }
            let path = PathBuf::from(path);
            let cert = read_client_cert(&path).await?;
            Source::ClientCertificate {
                tenant,
                client_id,
                path,
                cert,
            }
        } else if let Some(file) = var(env, "AZURE_FEDERATED_TOKEN_FILE") {
            let (tenant, client_id) = need("AZURE_FEDERATED_TOKEN_FILE")?;
            Source::WorkloadIdentity {
                tenant,
                client_id,
                token_file: PathBuf::from(file),
            }
        } else if let (Some(endpoint), Some(header)) =
            (var(env, "IDENTITY_ENDPOINT"), var(env, "IDENTITY_HEADER"))
        {
            Source::AppService {
                endpoint,
                header: Zeroizing::new(header),
                client_id,
            }
        } else {
            let host = var(env, "AZURE_POD_IDENTITY_AUTHORITY_HOST")
                .unwrap_or_else(|| IMDS_HOST.to_owned())
                .trim_end_matches('/')
                .to_owned();
            if !host.starts_with("http://") && !host.starts_with("https://") {
                return Err(cred_error(
                    "AZURE_POD_IDENTITY_AUTHORITY_HOST is not an http:// or https:// URL",
                ));
            }
            Source::Imds { host, client_id }
        };
        let allowed_tenants = var(env, "AZURE_ADDITIONALLY_ALLOWED_TENANTS")
            .map(|v| v.split(';').map(|t| t.trim().to_owned()).collect())
            .unwrap_or_default();
        Ok(Self {
            source,
            authority,
            allowed_tenants,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// Which credential this is, for messages (never a secret).
    pub(crate) fn describe(&self) -> String {
        self.source.describe()
    }

    /// True once a challenge was seen (or the vault answered without one).
    pub(crate) async fn has_challenge(&self) -> bool {
        self.state.lock().await.challenge.is_some()
    }

    /// Records the vault's challenge; a different one drops the cached token.
    pub(crate) async fn set_challenge(&self, c: Challenge) -> Result<()> {
        if let (Some(ours), Some(asked)) = (self.source.tenant(), c.tenant.as_deref())
            && !ours.eq_ignore_ascii_case(asked)
            && !self
                .allowed_tenants
                .iter()
                .any(|t| t == "*" || t.eq_ignore_ascii_case(asked))
        {
            return Err(cred_error(format!(
                "the vault asks for a token from tenant {asked}, but the credential is for tenant \
                 {ours}; add {asked} to AZURE_ADDITIONALLY_ALLOWED_TENANTS to allow it"
            )));
        }
        let mut s = self.state.lock().await;
        if s.challenge.as_ref() != Some(&c) {
            s.token = None;
            s.challenge = Some(c);
        }
        Ok(())
    }

    /// A bearer token for the vault: the cached one unless it is due for renewal or `fresh`.
    pub(crate) async fn token(&self, http: &Http, fresh: bool) -> Result<Zeroizing<String>> {
        let mut s = self.state.lock().await;
        let (tenant, scope) = match &s.challenge {
            Some(c) => (
                c.tenant
                    .clone()
                    .or_else(|| self.source.tenant().map(str::to_owned)),
                c.scope.clone(),
            ),
            None => (
                self.source.tenant().map(str::to_owned),
                DEFAULT_SCOPE.to_owned(),
            ),
        };
        if !fresh
            && let Some(t) = &s.token
            && t.renew_at > Instant::now()
            && t.tenant == tenant
            && t.scope == scope
        {
            return Ok(t.value.clone());
        }
        s.token = None;
        let (value, lifetime) = self.request(http, tenant.as_deref(), &scope).await?;
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        s.token = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
            tenant,
            scope,
        });
        Ok(value)
    }

    async fn request(
        &self,
        http: &Http,
        tenant: Option<&str>,
        scope: &str,
    ) -> Result<(Zeroizing<String>, Duration)> {
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let what = format!("token request for {}", self.source.describe());
        let (request, secret): (Request, Option<&str>) = match &self.source {
            Source::ClientSecret {
                client_id, secret, ..
            } => {
                let url = self.token_url(tenant)?;
                let body = form_body(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret),
                    ("scope", scope),
                ]);
                (
                    Request::new(Method::POST, url, what)
                        .body("application/x-www-form-urlencoded", body),
                    Some(secret.as_str()),
                )
            }
            Source::ClientCertificate {
                client_id, cert, ..
            } => {
                let url = self.token_url(tenant)?;
                let assertion = client_assertion(cert, client_id, &url)?;
                (
                    self.assertion_request(url, what, client_id, &assertion, scope),
                    None,
                )
            }
            Source::WorkloadIdentity {
                client_id,
                token_file,
                ..
            } => {
                let url = self.token_url(tenant)?;
                let raw = tokio::fs::read(token_file)
                    .await
                    .map_err(|source| Error::Io {
                        what: format!(
                            "reading the federated token file {} (AZURE_FEDERATED_TOKEN_FILE)",
                            token_file.display()
                        ),
                        source,
                    })?;
                let raw = Zeroizing::new(raw);
                let assertion = std::str::from_utf8(&raw)
                    .map(|s| Zeroizing::new(s.trim().to_owned()))
                    .map_err(|_| {
                        cred_error(format!(
                            "the federated token file {} is not text",
                            token_file.display()
                        ))
                    })?;
                (
                    self.assertion_request(url, what, client_id, &assertion, scope),
                    None,
                )
            }
            Source::AppService {
                endpoint,
                header,
                client_id,
            } => {
                let url = mi_url(endpoint, "2019-08-01", resource, client_id.as_deref());
                (
                    Request::new(Method::GET, url, what).header(
                        "x-identity-header",
                        header,
                        true,
                    )?,
                    Some(header.as_str()),
                )
            }
            Source::Imds { host, client_id } => {
                let url = mi_url(
                    &format!("{host}/metadata/identity/oauth2/token"),
                    "2018-02-01",
                    resource,
                    client_id.as_deref(),
                );
                let what = format!(
                    "{what} (the environment names no other credential: AZURE_CLIENT_SECRET, \
                     AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE or IDENTITY_ENDPOINT)"
                );
                let mut request =
                    Request::new(Method::GET, url, what).header("metadata", "true", false)?;
                request.retry_connect = false;
                (request, None)
            }
        };
        let answer = http.send(&request).await?;
        let secrets: Vec<&str> = secret.into_iter().collect();
        if !answer.status.is_success() {
            return Err(token_refused(
                &request.what,
                answer.status,
                &answer.body,
                &secrets,
            ));
        }
        parse_token(&answer.body).ok_or_else(|| {
            cred_error(format!(
                "{}: the answer is not a token response (HTTP {}, {} bytes)",
                request.what,
                answer.status,
                answer.body.len()
            ))
        })
    }

    fn token_url(&self, tenant: Option<&str>) -> Result<String> {
        let tenant = tenant.ok_or_else(|| cred_error("no tenant for the token request"))?;
        Ok(format!("{}/{tenant}/oauth2/v2.0/token", self.authority))
    }

    fn assertion_request(
        &self,
        url: String,
        what: String,
        client_id: &str,
        assertion: &str,
        scope: &str,
    ) -> Request {
        let body = form_body(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
            ("scope", scope),
        ]);
        Request::new(Method::POST, url, what).body("application/x-www-form-urlencoded", body)
    }
}

fn mi_url(endpoint: &str, api_version: &str, resource: &str, client_id: Option<&str>) -> String {
    let mut q = Vec::new();
    q.extend_from_slice(b"api-version=");
    percent_encode(api_version, &mut q);
    q.extend_from_slice(b"&resource=");
    percent_encode(resource, &mut q);
    if let Some(c) = client_id {
        q.extend_from_slice(b"&client_id=");
        percent_encode(c, &mut q);
    }
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{sep}{}", String::from_utf8_lossy(&q))
}

/// An Entra ID (or IMDS) refusal: `error`, `error_description` (which carries the `AADSTS`
/// code), never the raw body when it is not that JSON.
fn token_refused(what: &str, status: reqwest::StatusCode, body: &[u8], secrets: &[&str]) -> Error {
    #[derive(Deserialize)]
    struct Refusal {
        error: Option<String>,
        error_description: Option<String>,
    }
    let detail = match serde_json::from_slice::<Refusal>(body) {
        Ok(Refusal {
            error: Some(e),
            error_description,
        }) => format!(
            "{e}: {}",
            sanitize(error_description.as_deref().unwrap_or(""), secrets)
        ),
        _ => format!(
            "an answer that is not Entra ID's JSON ({} bytes)",
            body.len()
        ),
    };
    cred_error(format!(
        "{what} refused: HTTP {status}: {}",
        sanitize(&detail, secrets)
    ))
}

/// `access_token` and its lifetime from `expires_in` (Entra ID) or `expires_on` (IMDS, App
/// Service: Unix seconds), numbers or strings.
fn parse_token(body: &[u8]) -> Option<(Zeroizing<String>, Duration)> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        N(u64),
        S(String),
    }
    impl Num {
        fn get(&self) -> Option<u64> {
            match self {
                Self::N(n) => Some(*n),
                Self::S(s) => s.trim().parse().ok(),
            }
        }
    }
    #[derive(Deserialize)]
    struct Answer {
        access_token: Zeroizing<String>,
        expires_in: Option<Num>,
        expires_on: Option<Num>,
    }
    let a: Answer = serde_json::from_slice(body).ok()?;
    if a.access_token.is_empty() || !a.access_token.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let secs = match (
        a.expires_in.and_then(|n| n.get()),
        a.expires_on.and_then(|n| n.get()),
    ) {
        (Some(s), _) => s,
        (None, Some(on)) => on.saturating_sub(unix_now()),
        (None, None) => return None,
    };
    Some((a.access_token, Duration::from_secs(secs)))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The RS256 client assertion Entra ID takes for a certificate credential, with both the
/// SHA-256 (`x5t#S256`) and the SHA-1 (`x5t`) thumbprint of the certificate.
fn client_assertion(cert: &ClientCert, client_id: &str, aud: &str) -> Result<Zeroizing<String>> {
    let sha256 = digest::digest(&digest::SHA256, &cert.der);
    let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &cert.der);
    let header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "x5t": URL_SAFE_NO_PAD.encode(sha1.as_ref()),
        "x5t#S256": URL_SAFE_NO_PAD.encode(sha256.as_ref()),
    });
    let mut jti = [0u8; 16];
    rand::fill(&mut jti).map_err(|_| cred_error("the random generator failed"))?;
    let now = unix_now();
    let claims = serde_json::json!({
        "aud": aud,
        "iss": client_id,
        "sub": client_id,
        "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0u8; cert.key.public_modulus_len()];
    cert.key
        .sign(
            &signature::RSA_PKCS1_SHA256,
            &rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut sig,
        )
        .map_err(|_| cred_error("signing the client assertion failed"))?;
    Ok(Zeroizing::new(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(&sig)
    )))
}

/// PEM blocks of `text`: (label, DER).
fn pem_blocks(text: &str) -> Vec<(String, Zeroizing<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut b64 = Zeroizing::new(String::new());
        for l in lines.by_ref() {
            if l.trim() == end {
                break;
            }
            b64.push_str(l.trim());
        }
        if let Ok(der) = STANDARD.decode(b64.as_bytes()) {
            out.push((label.to_owned(), Zeroizing::new(der)));
        }
    }
    out
}

async fn read_client_cert(path: &std::path::Path) -> Result<ClientCert> {
    let raw = Zeroizing::new(tokio::fs::read(path).await.map_err(|source| Error::Io {
        what: format!(
            "reading the client certificate {} (AZURE_CLIENT_CERTIFICATE_PATH)",
            path.display()
        ),
        source,
    })?);
    let bad = |why: &str| {
        cred_error(format!(
            "the client certificate {} (AZURE_CLIENT_CERTIFICATE_PATH) {why}",
            path.display()
        ))
    };
    let text = std::str::from_utf8(&raw).map_err(|_| bad("is not a PEM file"))?;
    let blocks = pem_blocks(text);
    let der = blocks
        .iter()
        .find(|(l, _)| l == "CERTIFICATE")
        .map(|(_, d)| d.to_vec())
        .ok_or_else(|| bad("holds no CERTIFICATE block"))?;
    let key = blocks
        .iter()
        .find_map(|(l, d)| match l.as_str() {
            "PRIVATE KEY" => Some(
                rsa::KeyPair::from_pkcs8(d).map_err(|_| bad("holds a private key that is not RSA")),
            ),
            "RSA PRIVATE KEY" => Some(
                rsa::KeyPair::from_der(d).map_err(|_| bad("holds an unreadable RSA private key")),
            ),
            "ENCRYPTED PRIVATE KEY" => Some(Err(bad(
                "holds an encrypted private key; only unencrypted PEM is supported",
            ))),
            _ => None,
        })
        .ok_or_else(|| bad("holds no PRIVATE KEY block"))??;
    Ok(ClientCert { der, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_give_tenant_and_scope() {
        let c = Challenge::parse(
            r#"Bearer authorization="https://login.microsoftonline.com/72f988bf-86f1", resource="https://vault.azure.net""#,
            "myvault.vault.azure.net",
        )
        .unwrap();
        assert_eq!(c.tenant.as_deref(), Some("72f988bf-86f1"));
        assert_eq!(c.scope, DEFAULT_SCOPE);
        let c = Challenge::parse(
            r#"Bearer authorization_uri="https://login/t1/", scope="https://managedhsm.azure.net/.default""#,
            "127.0.0.1",
        )
        .unwrap();
        assert_eq!(c.tenant.as_deref(), Some("t1"));
        assert_eq!(c.scope, "https://managedhsm.azure.net/.default");
        let c = Challenge::parse(
            r#"Bearer authorization="https://login/t1", resource="https://vault.example.org""#,
            "kv.vault.example.org",
        )
        .unwrap();
        assert_eq!(c.scope, "https://vault.example.org/.default");
    }

    #[test]
    fn challenges_for_other_resources_are_refused() {
        for h in [
            r#"Bearer authorization="https://login/t1", resource="https://management.azure.com""#,
            r#"Bearer authorization="https://login/t1", resource="https://evil.example""#,
            r#"Bearer authorization="https://login/t1""#,
            r#"Basic realm="x""#,
            r#"Bearer authorization="https://login/t%2F..", resource="https://vault.azure.net""#,
        ] {
            assert!(Challenge::parse(h, "127.0.0.1").is_err(), "{h}");
        }
        let tld = r#"Bearer authorization="https://login/t1", resource="https://net""#;
        assert!(Challenge::parse(tld, "kv.vault.example.net").is_err());
    }

    #[test]
    fn token_answers_of_entra_and_imds_parse() {
        let (t, d) =
            parse_token(br#"{"token_type":"Bearer","expires_in":3599,"access_token":"abc"}"#)
                .unwrap();
        assert_eq!((t.as_str(), d), ("abc", Duration::from_secs(3599)));
        let on = unix_now() + 100;
        let body = format!(r#"{{"access_token":"x","expires_on":"{on}","resource":"r"}}"#);
        let (_, d) = parse_token(body.as_bytes()).unwrap();
        assert!(d.as_secs() >= 98 && d.as_secs() <= 100, "{d:?}");
        assert!(parse_token(br#"{"access_token":"a b","expires_in":1}"#).is_none());
        assert!(parse_token(br#"{"access_token":"ab"}"#).is_none());
        assert!(parse_token(b"<html>").is_none());
    }

    #[test]
    fn refusals_carry_the_aadsts_code_and_no_secret() {
        let e = token_refused(
            "token request",
            reqwest::StatusCode::UNAUTHORIZED,
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided: s3cret-value"}"#,
            &["s3cret-value"],
        )
        .to_string();
        assert!(
            e.contains("invalid_client") && e.contains("AADSTS7000215"),
            "{e}"
        );
        assert!(!e.contains("s3cret-value"), "{e}");
        let e = token_refused(
            "t",
            reqwest::StatusCode::BAD_GATEWAY,
            b"<html>s3cret</html>",
            &[],
        )
        .to_string();
        assert!(
            !e.contains("s3cret") && e.contains("not Entra ID's JSON"),
            "{e}"
        );
    }

    #[test]
    fn managed_identity_urls_are_encoded() {
        assert_eq!(
            mi_url(
                "http://169.254.169.254/metadata/identity/oauth2/token",
                "2018-02-01",
                "https://vault.azure.net",
                Some("c 1")
            ),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=c%201"
        );
    }
}
