//! The `jwt` HTTP authenticator of seed 003: a signed, compact JSON web token in a header or a
//! URL parameter.
//!
//! ```text
//! let config = JwtConfig::from_value(domain_http_authenticator_config)?; // or serde from YAML
//! let jwt = JwtAuthenticator::new(config)?;                             // ConfigError names the key
//! match jwt.authenticate(&headers, uri.query(), SystemTime::now()) {
//!     Ok(Some(id)) => /* id.subject, id.backend_roles */,
//!     Ok(None) => /* no token in this request: try the next domain */,
//!     Err(e) => /* 401; `e` is safe to log: it never holds the token or the key */,
//! }
//! ```
//!
//! `signing_key` is either a base64 HMAC secret (HS256/384/512) or a PEM public key: RSA
//! (RS256/384/512, PS256/384/512, 2048 to 8192 bits), EC P-256 (ES256), P-384 (ES384) or P-521
//! (ES512). A token is accepted only with an algorithm of the configured key's family, so neither
//! `alg: none` nor an HMAC signed with the public key's text can pass. RS, PS, ES256 and ES384 are
//! verified by `jsonwebtoken` (aws-lc-rs); ES512, which `jsonwebtoken` lacks, and HMAC, whose
//! secret we keep out of `jsonwebtoken`'s non-zeroized key type, by aws-lc-rs directly.

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use http::HeaderMap;
use http::header::HeaderName;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Largest token accepted, in bytes; a longer one is refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Header read when `jwt_header` is not set.
pub const DEFAULT_JWT_HEADER: &str = "Authorization";
/// Claim holding the user name when `subject_key` is not set.
pub const DEFAULT_SUBJECT_KEY: &str = "sub";
/// Clock skew tolerated on `exp`, `nbf` and `iat` when `jwt_clock_skew_tolerance_seconds` is not set.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 30;
/// Largest configurable clock skew (a day); more is a configuration mistake.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 86_400;
/// Shortest HMAC secret accepted: RFC 7518 section 3.2 asks for at least the hash size (256 bits).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Smallest RSA modulus accepted (bytes): 2048 bits, as aws-lc-rs's verification algorithms require.
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// Largest RSA modulus accepted (bytes): 8192 bits, the other bound of aws-lc-rs's algorithms.
const MAX_RSA_MODULUS_BYTES: usize = 1024;

/// A configuration string that is wiped from memory on drop and never printed.
#[derive(Clone, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `value`.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// The `http_authenticator.config` map of a `jwt` domain (seed 003). Unknown keys are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// A base64 HMAC secret, or a PEM public key (RSA or EC P-256/P-384/P-521).
    pub signing_key: SecretString,
    /// Header carrying the token (default `Authorization`; a `Bearer ` prefix is accepted).
    #[serde(default)]
    pub jwt_header: Option<String>,
    /// URL query parameter carrying the token when the header is absent.
    #[serde(default)]
    pub jwt_url_parameter: Option<String>,
    /// Claim holding the user name (default `sub`).
    #[serde(default)]
    pub subject_key: Option<String>,
    /// Claim holding the backend roles: a comma-separated string or an array of strings.
    #[serde(default)]
    pub roles_key: Option<String>,
    /// When set, `aud` must be this string or an array containing it.
    #[serde(default)]
    pub required_audience: Option<String>,
    /// When set, `iss` must be this string.
    #[serde(default)]
    pub required_issuer: Option<String>,
    /// Tolerated clock skew on `exp`, `nbf` and `iat`, in seconds (default 30).
    #[serde(default)]
    pub jwt_clock_skew_tolerance_seconds: Option<u64>,
}

impl JwtConfig {
    /// Reads the configuration from a JSON value (the domain's `http_authenticator.config`).
    pub fn from_value(value: Value) -> Result<Self, ConfigError> {
        serde_json::from_value(value).map_err(|e| ConfigError::Parse(e.to_string()))
    }
}

/// An unusable JWT configuration. The message names the key; it never holds the key's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The map could not be read (serde's message names the key: unknown, missing, wrong type).
    #[error("{0}")]
    Parse(String),
    /// A key has a value that cannot be used.
    #[error("`{key}`: {reason}")]
    Invalid {
        /// The configuration key, e.g. `signing_key`.
        key: &'static str,
        /// Why the value cannot be used.
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// A JWS algorithm this authenticator knows (the twelve of seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // the names are the RFC 7518 identifiers
pub enum JwsAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
}

impl JwsAlgorithm {
    /// All twelve, in the seed's order.
    pub const ALL: [Self; 12] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::ES512,
    ];

    /// The `alg` header value, e.g. `"PS384"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
        }
    }

    /// The algorithm named by an `alg` header value (case-sensitive, as RFC 7515 says).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The only key family this algorithm may be verified with.
    pub fn key_family(self) -> KeyFamily {
        match self {
            Self::HS256 | Self::HS384 | Self::HS512 => KeyFamily::Hmac,
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyFamily::Rsa
            }
            Self::ES256 => KeyFamily::EcP256,
            Self::ES384 => KeyFamily::EcP384,
            Self::ES512 => KeyFamily::EcP521,
        }
    }

    fn jsonwebtoken(self) -> Option<Algorithm> {
        Some(match self {
            Self::RS256 => Algorithm::RS256,
            Self::RS384 => Algorithm::RS384,
            Self::RS512 => Algorithm::RS512,
            Self::PS256 => Algorithm::PS256,
            Self::PS384 => Algorithm::PS384,
            Self::PS512 => Algorithm::PS512,
            Self::ES256 => Algorithm::ES256,
            Self::ES384 => Algorithm::ES384,
            Self::HS256 | Self::HS384 | Self::HS512 | Self::ES512 => return None,
        })
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of the configured `signing_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// A shared secret: HS256, HS384, HS512.
    Hmac,
    /// An RSA public key: RS256/384/512 and PS256/384/512.
    Rsa,
    /// An EC P-256 public key: ES256.
    EcP256,
    /// An EC P-384 public key: ES384.
    EcP384,
    /// An EC P-521 public key: ES512.
    EcP521,
}

impl fmt::Display for KeyFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hmac => "HMAC",
            Self::Rsa => "RSA",
            Self::EcP256 => "EC P-256",
            Self::EcP384 => "EC P-384",
            Self::EcP521 => "EC P-521",
        })
    }
}

/// Why a request's token was refused. Never holds the token, a claim value or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("token longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not a compact JWS with a JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg: none`: an unsigned token.
    #[error("unsigned token (alg none) refused")]
    AlgNone,
    /// An `alg` this authenticator does not know.
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    /// A known algorithm that the configured key may not be used with.
    #[error("token algorithm {alg} cannot be verified with the configured {key} key")]
    AlgorithmNotAllowed {
        /// The token's algorithm.
        alg: JwsAlgorithm,
        /// The configured key's family.
        key: KeyFamily,
    },
    /// A `crit` header: extensions this authenticator does not implement (RFC 7515 4.1.11).
    #[error("token header `crit` is not supported")]
    CriticalHeader,
    /// The signature does not verify.
    #[error("invalid token signature")]
    InvalidSignature,
    /// `exp` has passed (beyond the clock skew).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the clock skew).
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    /// `iat` is in the future (beyond the clock skew).
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
    /// A claim has the wrong JSON type (e.g. `exp` as a string).
    #[error("token claim `{0}` has the wrong type")]
    InvalidClaim(String),
    /// `aud` is missing or does not contain `required_audience`.
    #[error("token audience does not match")]
    WrongAudience,
    /// `iss` is missing or is not `required_issuer`.
    #[error("token issuer does not match")]
    WrongIssuer,
    /// The subject claim is missing or empty.
    #[error("token has no subject (claim `{0}`)")]
    MissingSubject(String),
}

/// A user authenticated by a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtIdentity {
    /// The user name: the `subject_key` claim.
    pub subject: String,
    /// The `roles_key` claim, verbatim: entries are neither trimmed nor deduplicated, so
    /// `"admin, ops"` gives `admin` and ` ops` (which matches no role named `ops`).
    pub backend_roles: Vec<String>,
}

enum Verifier {
    /// HMAC keys for HS256, HS384, HS512; aws-lc wipes their state on drop.
    Hmac(Box<[hmac::Key; 3]>),
    /// RSA or EC P-256/P-384 public key (DER), verified by `jsonwebtoken`.
    Jwt(KeyFamily, DecodingKey),
    /// EC P-521 public key, verified by aws-lc-rs.
    P521(ParsedPublicKey),
}

impl Verifier {
    fn family(&self) -> KeyFamily {
        match self {
            Self::Hmac(_) => KeyFamily::Hmac,
            Self::Jwt(family, _) => *family,
            Self::P521(_) => KeyFamily::EcP521,
        }
    }
}

/// Verifies tokens against one `jwt` domain's configuration.
pub struct JwtAuthenticator {
    verifier: Verifier,
    header: HeaderName,
    url_parameter: Option<String>,
    subject_key: String,
    roles_key: Option<String>,
    required_audience: Option<String>,
    required_issuer: Option<String>,
    skew_seconds: u64,
}

impl fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field(
                "signing_key",
                &format_args!("[{} key, redacted]", self.verifier.family()),
            )
            .field("jwt_header", &self.header)
            .field("jwt_url_parameter", &self.url_parameter)
            .field("subject_key", &self.subject_key)
            .field("roles_key", &self.roles_key)
            .field("required_audience", &self.required_audience)
            .field("required_issuer", &self.required_issuer)
            .field("jwt_clock_skew_tolerance_seconds", &self.skew_seconds)
            .finish()
    }
}

impl JwtAuthenticator {
    /// Checks the configuration and parses the key; errors name the configuration key.
    pub fn new(config: JwtConfig) -> Result<Self, ConfigError> {
        // `jsonwebtoken` picks its crypto backend from its crate features; should another crate
        // in the build enable a second backend, choose aws-lc-rs here rather than have the first
        // token panic. A provider someone installed before us is kept.
        if CryptoProvider::try_get_default().is_none() {
            let _ =
                CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
        }
        let verifier = parse_signing_key(config.signing_key.expose())?;
        let header_name = non_empty(config.jwt_header, "jwt_header")?
            .unwrap_or_else(|| DEFAULT_JWT_HEADER.to_owned());
        let header = HeaderName::try_from(header_name.as_str())
            .map_err(|_| invalid("jwt_header", "not a valid HTTP header name"))?;
        let skew_seconds = config
            .jwt_clock_skew_tolerance_seconds
            .unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
        if skew_seconds > MAX_CLOCK_SKEW_SECONDS {
            return Err(invalid(
                "jwt_clock_skew_tolerance_seconds",
                format!("at most {MAX_CLOCK_SKEW_SECONDS} seconds"),
            ));
        }
        Ok(Self {
            verifier,
            header,
            url_parameter: non_empty(config.jwt_url_parameter, "jwt_url_parameter")?,
            subject_key: non_empty(config.subject_key, "subject_key")?
                .unwrap_or_else(|| DEFAULT_SUBJECT_KEY.to_owned()),
            roles_key: non_empty(config.roles_key, "roles_key")?,
            required_audience: non_empty(config.required_audience, "required_audience")?,
            required_issuer: non_empty(config.required_issuer, "required_issuer")?,
            skew_seconds,
        })
    }

    /// The configured key's family (which algorithms a token may use).
    pub fn key_family(&self) -> KeyFamily {
        self.verifier.family()
    }

    /// Authenticates a request: `Ok(None)` when it carries no token for this domain (no header,
    /// another scheme such as `Basic`, no URL parameter), so the next domain may try.
    ///
    /// `query` is the raw query string (without `?`); `now` is the time to check claims against.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        now: SystemTime,
    ) -> Result<Option<JwtIdentity>, JwtError> {
        match self.extract(headers, query)? {
            None => Ok(None),
            Some(token) => self.verify(&token, now).map(Some),
        }
    }

    /// Verifies one compact token (no `Bearer ` prefix) and returns its identity.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<JwtIdentity, JwtError> {
        // Before any decoding or signature work.
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three dot-separated parts"));
        };
        let alg = self.check_header(header_b64)?;
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        self.check_signature(alg, signing_input, signature_b64)?;
        // The payload is parsed only once its signature is known to be good.
        let claims: Map<String, Value> = serde_json::from_slice(&b64(payload_b64)?)
            .map_err(|_| JwtError::Malformed("payload is not a JSON object"))?;
        self.check_claims(&claims, now)?;
        Ok(JwtIdentity {
            subject: self.subject(&claims)?,
            backend_roles: self.roles(&claims)?,
        })
    }

    fn extract<'a>(
        &self,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
    ) -> Result<Option<Cow<'a, str>>, JwtError> {
        let mut values = headers.get_all(&self.header).iter();
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Err(JwtError::Malformed("more than one token header"));
            }
            // A scheme, spaces, and a token of at most MAX_TOKEN_BYTES: refuse more unread.
            if value.len() > MAX_TOKEN_BYTES + 64 {
                return Err(JwtError::TooLarge);
            }
            let value = value
                .to_str()
                .map_err(|_| JwtError::Malformed("header is not visible ASCII"))?
                .trim();
            if value.is_empty() {
                return Ok(None);
            }
            let token = match value.split_once(|c: char| c.is_ascii_whitespace()) {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                // Another scheme (e.g. `Basic`) is for another domain.
                Some(_) => return Ok(None),
                None => value,
            };
            if token.is_empty() {
                return Err(JwtError::Malformed("empty bearer token"));
            }
            return Ok(Some(Cow::Borrowed(token)));
        }
        let (Some(name), Some(query)) = (&self.url_parameter, query) else {
            return Ok(None);
        };
        query_parameter(query, name)
    }

    fn check_header(&self, header_b64: &str) -> Result<JwsAlgorithm, JwtError> {
        let header: Map<String, Value> = serde_json::from_slice(&b64(header_b64)?)
            .map_err(|_| JwtError::Malformed("header is not a JSON object"))?;
        let Some(Value::String(name)) = header.get("alg") else {
            return Err(JwtError::Malformed("header has no `alg` string"));
        };
        let alg = match JwsAlgorithm::from_name(name) {
            Some(alg) => alg,
            None if name.eq_ignore_ascii_case("none") => return Err(JwtError::AlgNone),
            None => return Err(JwtError::UnsupportedAlgorithm),
        };
        let key = self.verifier.family();
        if alg.key_family() != key {
            return Err(JwtError::AlgorithmNotAllowed { alg, key });
        }
        if header.contains_key("crit") {
            return Err(JwtError::CriticalHeader);
        }
        Ok(alg)
    }

    fn check_signature(
        &self,
        alg: JwsAlgorithm,
        signing_input: &[u8],
        signature_b64: &str,
    ) -> Result<(), JwtError> {
        let signature = b64(signature_b64).map_err(|_| JwtError::InvalidSignature)?;
        let ok = match &self.verifier {
            Verifier::Hmac(keys) => {
                let key = match alg {
                    JwsAlgorithm::HS256 => &keys[0],
                    JwsAlgorithm::HS384 => &keys[1],
                    _ => &keys[2],
                };
                // Constant time.
                hmac::verify(key, signing_input, &signature).is_ok()
            }
            Verifier::Jwt(family, key) => {
                // A fixed-length r||s for ECDSA; r = s = 0 is refused outright (never valid).
                let ecdsa_len = match family {
                    KeyFamily::EcP256 => Some(64),
                    KeyFamily::EcP384 => Some(96),
                    _ => None,
                };
                let shape_ok = ecdsa_len
                    .is_none_or(|n| signature.len() == n && signature.iter().any(|&b| b != 0));
                let jwt_alg = alg.jsonwebtoken().ok_or(JwtError::InvalidSignature)?;
                shape_ok
                    && jsonwebtoken::crypto::verify(signature_b64, signing_input, key, jwt_alg)
                        .unwrap_or(false)
            }
            Verifier::P521(key) => {
                signature.len() == 132
                    && signature.iter().any(|&b| b != 0)
                    && key.verify_sig(signing_input, &signature).is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(JwtError::InvalidSignature)
        }
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: SystemTime) -> Result<(), JwtError> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let skew = self.skew_seconds as f64;
        if let Some(exp) = numeric_date(claims, "exp")?
            && now >= exp + skew
        {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && now + skew < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(iat) = numeric_date(claims, "iat")?
            && now + skew < iat
        {
            return Err(JwtError::IssuedInFuture);
        }
        if let Some(issuer) = &self.required_issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(JwtError::WrongIssuer);
        }
        if let Some(audience) = &self.required_audience {
            let matches = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !matches {
                return Err(JwtError::WrongAudience);
            }
        }
        Ok(())
    }

    fn subject(&self, claims: &Map<String, Value>) -> Result<String, JwtError> {
        match claims.get(&self.subject_key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                Err(JwtError::MissingSubject(self.subject_key.clone()))
            }
            Some(_) => Err(JwtError::InvalidClaim(self.subject_key.clone())),
        }
    }

    fn roles(&self, claims: &Map<String, Value>) -> Result<Vec<String>, JwtError> {
        let Some(key) = &self.roles_key else {
            return Ok(Vec::new());
        };
        let wrong_type = || JwtError::InvalidClaim(key.clone());
        match claims.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(s
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or_else(wrong_type))
                .filter(|r| r.as_ref().map_or(true, |r| !r.is_empty()))
                .collect(),
            Some(_) => Err(wrong_type()),
        }
    }
}

/// A NumericDate claim (RFC 7519 2): a JSON number of seconds; any other type is refused.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or(JwtError::InvalidClaim(name.into())),
        Some(_) => Err(JwtError::InvalidClaim(name.to_owned())),
    }
}

/// Strict base64url without padding, as RFC 7515 requires.
fn b64(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed("invalid base64url"))
}

fn non_empty(value: Option<String>, key: &'static str) -> Result<Option<String>, ConfigError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(invalid(key, "empty; leave it out for the default")),
        other => Ok(other),
    }
}

/// The named parameter of a raw query string, percent-decoded; more than one is refused.
fn query_parameter<'a>(query: &'a str, name: &str) -> Result<Option<Cow<'a, str>>, JwtError> {
    let mut found = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key).as_deref() != Some(name) {
            continue;
        }
        if found.is_some() {
            return Err(JwtError::Malformed("more than one token parameter"));
        }
        // Percent-encoding triples the length at most; refuse anything longer unread.
        if value.len() > 3 * MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let value = percent_decode(value).ok_or(JwtError::Malformed(
            "invalid percent-encoding in the token parameter",
        ))?;
        found = Some(value);
    }
    match found {
        Some(v) if v.is_empty() => Err(JwtError::Malformed("empty token parameter")),
        other => Ok(other),
    }
}

/// `application/x-www-form-urlencoded` decoding; `None` for bad escapes or non-UTF-8 results.
fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains(['%', '+']) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn parse_signing_key(text: &str) -> Result<Verifier, ConfigError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid("signing_key", "empty"));
    }
    if text.starts_with("-----BEGIN ") {
        return parse_pem_key(text);
    }
    let secret = Zeroizing::new(
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or_else(|| {
                invalid(
                    "signing_key",
                    "neither base64 (an HMAC secret) nor a PEM public key",
                )
            })?,
    );
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(invalid(
            "signing_key",
            format!(
                "an HMAC secret must be at least {MIN_HMAC_SECRET_BYTES} bytes (RFC 7518 3.2), \
                 this one decodes to {}",
                secret.len()
            ),
        ));
    }
    Ok(Verifier::Hmac(Box::new([
        hmac::Key::new(hmac::HMAC_SHA256, &secret),
        hmac::Key::new(hmac::HMAC_SHA384, &secret),
        hmac::Key::new(hmac::HMAC_SHA512, &secret),
    ])))
}

fn parse_pem_key(text: &str) -> Result<Verifier, ConfigError> {
    let (label, der) = pem_decode(text)?;
    match label {
        "PUBLIC KEY" => {}
        "RSA PUBLIC KEY" => return rsa_verifier(&der),
        l if l.contains("PRIVATE KEY") => {
            return Err(invalid(
                "signing_key",
                "this is a private key; configure only the public key",
            ));
        }
        "CERTIFICATE" => {
            return Err(invalid(
                "signing_key",
                "certificates are not accepted; give the public key \
                 (openssl x509 -pubkey -noout -in cert.pem)",
            ));
        }
        _ => return Err(invalid("signing_key", "PEM label is not PUBLIC KEY")),
    }
    // SubjectPublicKeyInfo: aws-lc-rs checks the curve, so each probe matches one family only.
    if ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, &der).is_ok() {
        return Ok(Verifier::Jwt(
            KeyFamily::EcP256,
            DecodingKey::from_ec_der(&der),
        ));
    }
    if ParsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, &der).is_ok() {
        return Ok(Verifier::Jwt(
            KeyFamily::EcP384,
            DecodingKey::from_ec_der(&der),
        ));
    }
    if let Ok(key) = ParsedPublicKey::new(&sig::ECDSA_P521_SHA512_FIXED, &der) {
        return Ok(Verifier::P521(key));
    }
    rsa_verifier(&der)
}

fn rsa_verifier(der: &[u8]) -> Result<Verifier, ConfigError> {
    let key = aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|_| {
        invalid(
            "signing_key",
            "not an RSA or EC (P-256, P-384, P-521) public key",
        )
    })?;
    if !(MIN_RSA_MODULUS_BYTES..=MAX_RSA_MODULUS_BYTES).contains(&key.modulus_len()) {
        return Err(invalid(
            "signing_key",
            "RSA keys must have 2048 to 8192 bits",
        ));
    }
    Ok(Verifier::Jwt(
        KeyFamily::Rsa,
        DecodingKey::from_rsa_der(der),
    ))
}

/// One PEM block: its label and DER bytes. Text after the block is refused.
fn pem_decode(text: &str) -> Result<(&str, Vec<u8>), ConfigError> {
    let bad = || invalid("signing_key", "not a well-formed PEM block");
    let rest = text.strip_prefix("-----BEGIN ").ok_or_else(bad)?;
    let (label, rest) = rest.split_once("-----").ok_or_else(bad)?;
    let end = format!("-----END {label}-----");
    let (body, after) = rest.split_once(end.as_str()).ok_or_else(bad)?;
    if !after.trim().is_empty() {
        return Err(invalid("signing_key", "text after the PEM block"));
    }
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(body).map_err(|_| bad())?;
    Ok((label, der))
}

#[cfg(test)]
mod tests;
