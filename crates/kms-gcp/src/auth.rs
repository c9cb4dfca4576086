//! Application Default Credentials, the two sources servers use: a service-account key file
//! named by `GOOGLE_APPLICATION_CREDENTIALS` (an RS256 JWT assertion exchanged at the file's
//! `token_uri`), else the metadata server. Access tokens are cached until shortly before they
//! expire, and refreshed under a lock so concurrent calls fetch one token.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use encrypt_repo_keys::{Error, Result};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;
use zeroize::Zeroizing;

use crate::TYPE;
use crate::http::{Http, Request};

/// The OAuth scope requested: Cloud KMS only.
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/cloudkms";
/// Where a service-account file without `token_uri` exchanges its assertion, and the assertion's
/// audience whatever the `token_uri`: Google's token endpoint checks `aud` against this name, not
/// against the address the request reached (google-auth does the same).
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's name on Compute Engine, GKE, Cloud Run and Cloud Functions.
const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// A cached token is replaced this long before it expires.
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime asked for in the JWT assertion (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;
/// Service-account key files are a few KiB.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

fn cred_error(message: impl Into<String>) -> Error {
    Error::Provider {
        provider: TYPE.into(),
        message: format!("credentials: {}", message.into()),
    }
}

/// A service account from its JSON key file.
struct ServiceAccount {
    file: PathBuf,
    email: String,
    key_id: Option<String>,
    token_uri: Url,
    key: RsaKeyPair,
}

/// Where tokens come from.
enum Source {
    ServiceAccount(Box<ServiceAccount>),
    Metadata { url: Url },
}

struct Cached {
    token: Zeroizing<String>,
    refresh_at: Instant,
}

/// Credentials and the token cache.
pub(crate) struct Auth {
    source: Source,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for Auth {
    // Never the key or a token: only where they come from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Auth {
    /// Finds credentials the way Google's client libraries do for servers:
    /// `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key file), else the metadata server
    /// (`GCE_METADATA_HOST` overrides its address, as in google-auth).
    pub(crate) async fn from_env(
        env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    ) -> Result<Self> {
        let source = match env("GOOGLE_APPLICATION_CREDENTIALS").filter(|v| !v.is_empty()) {
            Some(path) => {
                Source::ServiceAccount(Box::new(read_service_account(path.into()).await?))
            }
            None => {
                let host = env("GCE_METADATA_HOST")
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned());
                let url = Url::parse(&format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                ))
                .map_err(|e| {
                    cred_error(format!(
                        "GCE_METADATA_HOST {host:?} is not a host[:port]: {e}"
                    ))
                })?;
                Source::Metadata { url }
            }
        };
        Ok(Self {
            source,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// Where tokens come from, for messages and `Debug`.
    pub(crate) fn describe(&self) -> String {
        match &self.source {
            Source::ServiceAccount(sa) => format!(
                "service account {} (GOOGLE_APPLICATION_CREDENTIALS={})",
                sa.email,
                sa.file.display()
            ),
            Source::Metadata { url } => {
                format!("the metadata server at {}", url.host_str().unwrap_or("?"))
            }
        }
    }

    /// A valid access token: the cached one, or a new one. Concurrent callers wait on one fetch.
    pub(crate) async fn token(&self, http: &Http) -> Result<Zeroizing<String>> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, expires_in) = match &self.source {
            Source::ServiceAccount(sa) => sa.fetch(http).await?,
            Source::Metadata { url } => fetch_metadata(http, url).await?,
        };
        let lifetime = Duration::from_secs(expires_in).saturating_sub(REFRESH_MARGIN);
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime,
        });
        Ok(token)
    }

    /// Drops `stale` from the cache (the service refused it), unless it was already replaced.
    pub(crate) async fn invalidate(&self, stale: &str) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| *c.token == stale) {
            *cache = None;
        }
    }
}

async fn read_service_account(file: PathBuf) -> Result<ServiceAccount> {
    #[derive(Deserialize)]
    struct KeyFile {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        client_email: String,
        #[serde(default)]
        private_key_id: Option<String>,
        #[serde(default)]
        private_key: Zeroizing<String>,
        #[serde(default)]
        token_uri: Option<String>,
    }
    let shown = file.display().to_string();
    let bad = |what: &str| {
        cred_error(format!(
            "GOOGLE_APPLICATION_CREDENTIALS file {shown}: {what}"
        ))
    };
    let meta = tokio::fs::metadata(&file)
        .await
        .map_err(|source| Error::Io {
            what: format!(
                "reading the service-account key file {shown} (GOOGLE_APPLICATION_CREDENTIALS)"
            ),
            source,
        })?;
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(bad("is too large to be a service-account key file"));
    }
    let raw = Zeroizing::new(tokio::fs::read(&file).await.map_err(|source| Error::Io {
        what: format!(
            "reading the service-account key file {shown} (GOOGLE_APPLICATION_CREDENTIALS)"
        ),
        source,
    })?);
    let parsed: KeyFile =
        serde_json::from_slice(&raw).map_err(|_| bad("is not a JSON credentials file"))?;
    if parsed.kind != "service_account" {
        return Err(bad(&format!(
            "holds {:?} credentials; only service-account key files (\"type\": \"service_account\") \
             are supported, or the metadata server when GOOGLE_APPLICATION_CREDENTIALS is unset",
            sanitize_short(&parsed.kind)
        )));
    }
    if parsed.client_email.is_empty() || parsed.client_email.chars().any(char::is_control) {
        return Err(bad("has no client_email"));
    }
    let der =
        pem_pkcs8(&parsed.private_key).ok_or_else(|| bad("private_key is not a PEM PKCS#8 key"))?;
    let key = RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| bad(&format!("private_key is not a usable RSA key ({e})")))?;
    let token_uri = parsed.token_uri.as_deref().unwrap_or(GOOGLE_TOKEN_URI);
    let token_uri = crate::settings::validate_endpoint(token_uri)
        .ok()
        .and_then(|u| Url::parse(&u).ok())
        .ok_or_else(|| bad("token_uri is not an https:// URL (or http:// on loopback)"))?;
    Ok(ServiceAccount {
        file,
        email: parsed.client_email,
        key_id: parsed.private_key_id.filter(|k| !k.is_empty()),
        token_uri,
        key,
    })
}

fn sanitize_short(s: &str) -> String {
    crate::error::sanitize(&s.chars().take(40).collect::<String>(), "")
}

/// The DER inside `-----BEGIN PRIVATE KEY-----` … `-----END PRIVATE KEY-----`.
fn pem_pkcs8(pem: &str) -> Option<Zeroizing<Vec<u8>>> {
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PRIVATE KEY-----")?
        .strip_suffix("-----END PRIVATE KEY-----")?;
    let b64: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
    let mut out = Zeroizing::new(Vec::with_capacity(b64.len()));
    STANDARD.decode_vec(b64.as_bytes(), &mut out).ok()?;
    Some(out)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The token endpoint's and the metadata server's success answer.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Zeroizing<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// An OAuth error answer (`{"error": "invalid_grant", "error_description": …}`).
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: String,
}

impl ServiceAccount {
    /// The signed JWT assertion of RFC 7523 for this account, scoped to Cloud KMS.
    fn assertion(&self) -> Result<Zeroizing<String>> {
        let now = now_unix();
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = kid.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.email,
            "scope": SCOPE,
            "aud": GOOGLE_TOKEN_URI,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| cred_error(format!("cannot sign the JWT assertion of {}", self.email)))?;
        Ok(Zeroizing::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig)
        )))
    }

    async fn fetch(&self, http: &Http) -> Result<(Zeroizing<String>, u64)> {
        let assertion = self.assertion()?;
        let mut body = Zeroizing::new(String::with_capacity(assertion.len() + 128));
        body.push_str(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
        );
        // base64url and '.': nothing to percent-encode.
        body.push_str(&assertion);
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let request = Request {
            method: Method::POST,
            url: self.token_uri.clone(),
            headers,
            body: Some(bytes::Bytes::from_owner(ZeroizingString(body))),
        };
        let what = format!(
            "credentials: token request for service account {} to {}",
            self.email, self.token_uri
        );
        let answer = http.send(&what, &request).await?;
        if answer.status.is_success() {
            return parse_token(&answer.body, &what);
        }
        let reason = match serde_json::from_slice::<OAuthError>(&answer.body) {
            Ok(e) => format!(
                "{}: {}",
                crate::error::sanitize(&e.error, &assertion),
                crate::error::sanitize(&e.error_description, &assertion)
            ),
            Err(_) => format!(
                "an answer that is not OAuth error JSON ({} bytes)",
                answer.body.len()
            ),
        };
        Err(cred_error(format!(
            "the token endpoint {} refused service account {} (HTTP {}): {reason}",
            self.token_uri,
            self.email,
            answer.status.as_u16()
        )))
    }
}

fn parse_token(body: &[u8], what: &str) -> Result<(Zeroizing<String>, u64)> {
    let t: TokenAnswer = serde_json::from_slice(body).map_err(|_| Error::Provider {
        provider: TYPE.into(),
        message: format!(
            "{what}: the answer is not an OAuth token ({} bytes)",
            body.len()
        ),
    })?;
    if t.access_token.is_empty() || !t.access_token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Provider {
            provider: TYPE.into(),
            message: format!("{what}: the access token is empty or cannot be sent in a header"),
        });
    }
    Ok((t.access_token, t.expires_in.unwrap_or(3600)))
}

async fn fetch_metadata(http: &Http, url: &Url) -> Result<(Zeroizing<String>, u64)> {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("scopes", SCOPE);
    let mut headers = HeaderMap::new();
    headers.insert("Metadata-Flavor", HeaderValue::from_static("Google"));
    let request = Request {
        method: Method::GET,
        url,
        headers,
        body: None,
    };
    let host = request.url.host_str().unwrap_or("?").to_owned();
    let what = format!(
        "credentials: GOOGLE_APPLICATION_CREDENTIALS is not set, and the metadata server at {host} \
         (GCE_METADATA_HOST) did not give a token"
    );
    let answer = http.send(&what, &request).await?;
    if !answer.status.is_success() {
        return Err(cred_error(format!(
            "the metadata server at {host} refused a token (HTTP {})",
            answer.status.as_u16()
        )));
    }
    parse_token(&answer.body, &what)
}

/// `Zeroizing<String>` as a `Bytes` owner.
struct ZeroizingString(Zeroizing<String>);

impl AsRef<[u8]> for ZeroizingString {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bodies_are_read_and_junk_refused() {
        let der = pem_pkcs8("-----BEGIN PRIVATE KEY-----\nAAEC\nAw==\n-----END PRIVATE KEY-----\n")
            .expect("pem");
        assert_eq!(&der[..], &[0, 1, 2, 3]);
        assert!(
            pem_pkcs8("-----BEGIN RSA PRIVATE KEY-----\nAAEC\n-----END RSA PRIVATE KEY-----")
                .is_none()
        );
        assert!(pem_pkcs8("AAEC").is_none());
        assert!(pem_pkcs8("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----").is_none());
    }

    #[test]
    fn token_answers_must_be_header_safe() {
        assert!(parse_token(br#"{"access_token":"ya29.a","expires_in":10}"#, "t").is_ok());
        assert!(parse_token(br#"{"access_token":"a b"}"#, "t").is_err());
        assert!(parse_token(br#"{"access_token":""}"#, "t").is_err());
        let e = parse_token(b"ya29.secret", "t").expect_err("junk");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
