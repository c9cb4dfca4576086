//! A loopback **stand-in** for Google Cloud KMS and its OAuth endpoints, for tests: no emulator of
//! Cloud KMS can be installed, so this implements exactly the calls the `gcp-kms` provider makes,
//! with real cryptography, and is judged by Google's own Python client
//! (`crates/kms-gcp/tests/vendor_client.rs`). It is not Cloud KMS: its ciphertext format, its
//! IAM (a deny list of principals) and its messages are its own, kept close to the service's.
//!
//! One HTTP server on `127.0.0.1` (plain http, or HTTPS with a generated CA from
//! [`GcpKmsStandIn::start_tls`]) answers:
//!
//! | call | what it does |
//! |---|---|
//! | `POST /token` | OAuth 2.0 JWT-bearer grant (RFC 7523), as `https://oauth2.googleapis.com/token`: the assertion's RS256 signature is verified against the service account's public key, and `iss`, `aud` (`https://oauth2.googleapis.com/token`, as Google requires whatever address the grant is sent to), `scope`, `iat`/`exp` (at most one hour, not expired) are checked; issues a random bearer token with `expires_in`. Failures answer 400 `{"error": "invalid_grant", "error_description": …}` as Google does. |
//! | `GET /computeMetadata/v1/instance/service-accounts/default/token` | the metadata server's token (requires `Metadata-Flavor: Google`, else 403) for [`METADATA_PRINCIPAL`] |
//! | `GET /v1/{cryptoKey}` | `cryptoKeys.get`: the CryptoKey resource (`name`, `purpose`, `primary{name, state, algorithm, protectionLevel, createTime}`, `versionTemplate`, `rotationPeriod`, `nextRotationTime`, `createTime`) |
//! | `POST /v1/{cryptoKey}:encrypt` | `cryptoKeys.encrypt` with the primary version: AES-256-GCM under that version's own random key, `additionalAuthenticatedData` as GCM AAD; checks `plaintextCrc32c` / `additionalAuthenticatedDataCrc32c` and answers `name`, `ciphertext`, `ciphertextCrc32c`, `verified…Crc32c`, `protectionLevel` |
//! | `POST /v1/{cryptoKey}:decrypt` | `cryptoKeys.decrypt`: finds the version in the ciphertext, checks `ciphertextCrc32c` / `additionalAuthenticatedDataCrc32c`, answers `plaintext`, `plaintextCrc32c`, `usedPrimary`, `protectionLevel` |
//!
//! Errors have Google's shape, `{"error": {"code", "message", "status"}}`: no or unknown bearer
//! token → 401 `UNAUTHENTICATED`; a denied principal → 403 `PERMISSION_DENIED`; an unknown key →
//! 404 `NOT_FOUND`; a version not `ENABLED` → 400 `FAILED_PRECONDITION`; a CRC32C mismatch, a
//! tampered ciphertext or wrong AAD → 400 `INVALID_ARGUMENT` (`Decryption failed: …`). The
//! `$alt=json;enum-encoding=int` query of Google's REST clients is honoured (enums as numbers).
//!
//! The stand-in ciphertext is `"GCKS"` ‖ version (u32 big-endian) ‖ nonce (12) ‖ GCM ciphertext
//! and tag; real Cloud KMS ciphertext is opaque, and also carries its version.
//!
//! Tests drive it through [`GcpKmsStandIn`]'s methods (not HTTP): keys, rotation, version states,
//! a deny list, faults ([`Fault`]), call counters ([`Calls`]), token lifetime and revocation,
//! and service-account key files (RSA 2048, PKCS#8) whose `token_uri` points here.

// The handlers' helpers return the HTTP answer itself as their error (`Result<_, Response>`), as
// axum handlers do; boxing it would buy nothing in a test server.
#![allow(clippy::result_large_err)]
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// The project every stand-in key lives in.
pub const PROJECT: &str = "stand-in";
/// The principal the metadata server's tokens belong to.
pub const METADATA_PRINCIPAL: &str = "default-compute@stand-in.iam.gserviceaccount.com";
/// Default lifetime of issued tokens, as Google's.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

const MAGIC: &[u8; 4] = b"GCKS";
/// The audience Google's token endpoint requires in an assertion, whatever address it was sent
/// to (google-auth always uses it).
const GOOGLE_TOKEN_AUDIENCE: &str = "https://oauth2.googleapis.com/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const MAX_PLAINTEXT: usize = 64 * 1024;

/// A CryptoKeyVersion state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// `ENABLED`.
    Enabled,
    /// `DISABLED`.
    Disabled,
    /// `DESTROYED` (its key material is gone).
    Destroyed,
    /// `DESTROY_SCHEDULED`.
    DestroyScheduled,
}

impl VersionState {
    fn name(self) -> &'static str {
        match self {
            Self::Enabled => "ENABLED",
            Self::Disabled => "DISABLED",
            Self::Destroyed => "DESTROYED",
            Self::DestroyScheduled => "DESTROY_SCHEDULED",
        }
    }

    fn number(self) -> u64 {
        match self {
            Self::Enabled => 1,
            Self::Disabled => 2,
            Self::Destroyed => 3,
            Self::DestroyScheduled => 4,
        }
    }
}

/// A misbehaviour of the KMS calls (`/v1/…`; the token endpoints are not affected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Never answer.
    Hang,
    /// Answer 503 `UNAVAILABLE` this many times, then normally.
    Unavailable(u32),
    /// Answer normally but with `ciphertextCrc32c` / `plaintextCrc32c` off by one.
    CorruptCrc,
    /// Refuse every bearer token with 401 `UNAUTHENTICATED` (a credential the service no longer
    /// honours, while the token endpoint still issues tokens).
    RejectTokens,
    /// Answer normally but without `verifiedPlaintextCrc32c` /
    /// `verifiedAdditionalAuthenticatedDataCrc32c` (as if the request's checksums were lost).
    UnverifiedCrc,
}

/// How many calls each endpoint received (faulty answers included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    /// `POST /token`.
    pub token: usize,
    /// Metadata-server token requests.
    pub metadata: usize,
    /// `cryptoKeys.get`.
    pub get: usize,
    /// `cryptoKeys.encrypt`.
    pub encrypt: usize,
    /// `cryptoKeys.decrypt`.
    pub decrypt: usize,
}

struct Version {
    state: VersionState,
    key: LessSafeKey,
    create_time: String,
}

struct Key {
    purpose: &'static str,
    algorithm: &'static str,
    versions: Vec<Version>,
    /// 1-based; 0 for keys without a primary (asymmetric).
    primary: usize,
    rotation_period: Option<u64>,
    create_time: String,
}

struct Token {
    principal: String,
    expires: tokio::time::Instant,
}

#[derive(Default)]
struct Inner {
    keys: BTreeMap<String, Key>,
    accounts: HashMap<String, Vec<u8>>,
    tokens: HashMap<String, Token>,
    denied: BTreeSet<String>,
    fault: Option<Fault>,
    token_lifetime: Option<Duration>,
    /// Seconds the token endpoint's clock is ahead of this machine's.
    clock_skew: i64,
    calls: Calls,
    next_id: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    base: String,
    ca_pem: Option<String>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running stand-in; the server stops when this is dropped.
pub struct GcpKmsStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for GcpKmsStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpKmsStandIn")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for GcpKmsStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).expect("random bytes");
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds as RFC 3339 UTC (the stand-in's clock is always within the years 1970 to 9999).
fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(encrypt_repo_keys::wire::rfc3339)
        .unwrap_or_default()
}

fn new_version() -> Version {
    let key = UnboundKey::new(&AES_256_GCM, &random::<32>()).expect("AES-256-GCM key");
    Version {
        state: VersionState::Enabled,
        key: LessSafeKey::new(key),
        create_time: rfc3339(unix_now()),
    }
}

impl GcpKmsStandIn {
    /// Starts the stand-in on `127.0.0.1` with a free port.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            base: format!("http://{addr}"),
            ca_pem: None,
        });
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    /// As [`start`](Self::start), but over HTTPS with a certificate for `127.0.0.1` from a fresh
    /// CA ([`ca_pem`](Self::ca_pem)), for the provider's `ca_file`. Its metadata-server path is
    /// then out of reach (clients ask the metadata server over plain http, as on Google Cloud):
    /// use [`start`](Self::start) for that.
    ///
    /// # Panics
    /// If no loopback port can be bound or the certificates cannot be made.
    pub async fn start_tls() -> Self {
        let (ca_pem, cert_pem, key_pem) = certificates();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            base: format!("https://{addr}"),
            ca_pem: Some(ca_pem),
        });
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.into_bytes(),
            key_pem.into_bytes(),
        )
        .await
        .expect("TLS config");
        let handle = axum_server::Handle::new();
        let server = axum_server::tls_rustls::from_tcp_rustls(listener, config)
            .expect("TLS server")
            .handle(handle.clone());
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        handle.listening().await.expect("listening");
        Self {
            addr,
            shared,
            server,
        }
    }

    /// The CA that signed the HTTPS certificate (PEM), for a stand-in from
    /// [`start_tls`](Self::start_tls).
    #[must_use]
    pub fn ca_pem(&self) -> Option<&str> {
        self.shared.ca_pem.as_deref()
    }

    /// The `endpoint` setting for the provider: `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        self.shared.base.clone()
    }

    /// `host:port`, for `GCE_METADATA_HOST`.
    #[must_use]
    pub fn metadata_host(&self) -> String {
        self.addr.to_string()
    }

    /// The OAuth token endpoint (`token_uri` of the key files this writes).
    #[must_use]
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.shared.base)
    }

    fn add_key(&self, purpose: &'static str, algorithm: &'static str, primary: bool) -> String {
        let mut inner = self.shared.lock();
        inner.next_id += 1;
        let name = format!(
            "projects/{PROJECT}/locations/global/keyRings/encrypt-repo/cryptoKeys/key-{}",
            inner.next_id
        );
        inner.keys.insert(
            name.clone(),
            Key {
                purpose,
                algorithm,
                versions: vec![new_version()],
                primary: usize::from(primary),
                rotation_period: None,
                create_time: rfc3339(unix_now()),
            },
        );
        name
    }

    /// Creates a symmetric `ENCRYPT_DECRYPT` key with one enabled version; returns its resource
    /// name.
    pub fn create_key(&self) -> String {
        self.add_key("ENCRYPT_DECRYPT", "GOOGLE_SYMMETRIC_ENCRYPTION", true)
    }

    /// Creates an `ASYMMETRIC_DECRYPT` key (RSA-OAEP 3072; it has no primary version and cannot
    /// `encrypt`); returns its resource name.
    pub fn create_asymmetric_key(&self) -> String {
        self.add_key("ASYMMETRIC_DECRYPT", "RSA_DECRYPT_OAEP_3072_SHA256", false)
    }

    fn with_key<T>(&self, name: &str, f: impl FnOnce(&mut Key) -> T) -> T {
        let mut inner = self.shared.lock();
        let key = inner
            .keys
            .get_mut(name)
            .unwrap_or_else(|| panic!("stand-in: no key {name}"));
        f(key)
    }

    /// Adds a new version and makes it primary; returns its number.
    pub fn rotate(&self, name: &str) -> u64 {
        self.with_key(name, |k| {
            k.versions.push(new_version());
            k.primary = k.versions.len();
            k.primary as u64
        })
    }

    /// The primary version's number.
    pub fn primary_version(&self, name: &str) -> u64 {
        self.with_key(name, |k| k.primary as u64)
    }

    /// Sets the state of version `version` (1-based) of key `name`.
    pub fn set_state(&self, name: &str, version: u64, state: VersionState) {
        self.with_key(name, |k| {
            let v = usize::try_from(version)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| k.versions.get_mut(i))
                .unwrap_or_else(|| panic!("stand-in: no version {version} of {name}"));
            v.state = state;
        });
    }

    /// Sets (or clears) the automatic rotation period.
    pub fn set_rotation_period(&self, name: &str, period: Option<Duration>) {
        self.with_key(name, |k| k.rotation_period = period.map(|p| p.as_secs()));
    }

    /// Refuses every KMS call of `principal` (a service-account email or
    /// [`METADATA_PRINCIPAL`]) with 403 `PERMISSION_DENIED`.
    pub fn deny(&self, principal: &str) {
        self.shared.lock().denied.insert(principal.to_owned());
    }

    /// Undoes [`deny`](Self::deny).
    pub fn allow(&self, principal: &str) {
        self.shared.lock().denied.remove(principal);
    }

    /// Makes the KMS calls misbehave (`None`: behave).
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.lock().fault = fault;
    }

    /// Calls received so far.
    #[must_use]
    pub fn calls(&self) -> Calls {
        self.shared.lock().calls
    }

    /// Lifetime (`expires_in`) of tokens issued from now on (default
    /// [`DEFAULT_TOKEN_LIFETIME`]).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().token_lifetime = Some(lifetime);
    }

    /// Puts the token endpoint's clock `seconds` ahead of (or, negative, behind) this machine's,
    /// as if the client's clock were wrong: assertions outside their hour are refused.
    pub fn skew_clock(&self, seconds: i64) {
        self.shared.lock().clock_skew = seconds;
    }

    /// Forgets every issued token: KMS calls with them get 401 `UNAUTHENTICATED`.
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Creates service account `email` (a fresh RSA 2048 key) and writes its JSON key file,
    /// shaped as Google's, with `token_uri` pointing at this stand-in, to `dir/{email}.json`.
    ///
    /// # Panics
    /// If the key cannot be generated or the file written.
    pub fn write_service_account(&self, dir: &Path, email: &str) -> PathBuf {
        let (file, public) = self.key_file(dir, email, "json");
        self.shared.lock().accounts.insert(email.to_owned(), public);
        file
    }

    /// A key file for `email` whose private key the stand-in does **not** know (a wrong or
    /// revoked key): its grants are refused with `invalid_grant`, `Invalid JWT Signature.`
    pub fn write_forged_service_account(&self, dir: &Path, email: &str) -> PathBuf {
        self.key_file(dir, email, "forged.json").0
    }

    fn key_file(&self, dir: &Path, email: &str, suffix: &str) -> (PathBuf, Vec<u8>) {
        let key = KeyPair::generate(KeySize::Rsa2048).expect("RSA 2048 key");
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&key).expect("PKCS#8");
        let b64 = STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        let json = json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": hex(&random::<20>()),
            "private_key": pem,
            "client_email": email,
            "client_id": u64::from_le_bytes(random::<8>()).to_string(),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        });
        let file = dir.join(format!("{email}.{suffix}"));
        std::fs::write(&file, serde_json::to_vec_pretty(&json).expect("json"))
            .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        (file, key.public_key().as_ref().to_vec())
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/token", post(token))
        .route(
            "/computeMetadata/v1/instance/service-accounts/default/token",
            get(metadata_token),
        )
        .route("/v1/{*path}", get(get_key).post(key_method))
        .with_state(shared)
}

/// A CA, and a server certificate it signed for `127.0.0.1` and `localhost`: (CA PEM, server
/// certificate PEM, server key PEM).
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        "encrypt-repo Cloud KMS stand-in CA",
    );
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

// ---------------------------------------------------------------------------------------------
// Answers

fn crc32c(b: &[u8]) -> u32 {
    u32::try_from(crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, b)).unwrap_or(0)
}

fn google_error(code: StatusCode, status: &str, message: impl Into<String>) -> Response {
    let body =
        json!({"error": {"code": code.as_u16(), "message": message.into(), "status": status}});
    (code, axum::Json(body)).into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

fn issue_token(shared: &Shared, principal: &str) -> Value {
    let token = format!("ya29.stand-in-{}", hex(&random::<24>()));
    let mut inner = shared.lock();
    let lifetime = inner.token_lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME);
    inner.tokens.insert(
        token.clone(),
        Token {
            principal: principal.to_owned(),
            expires: tokio::time::Instant::now() + lifetime,
        },
    );
    json!({"access_token": token, "expires_in": lifetime.as_secs(), "token_type": "Bearer"})
}

// ---------------------------------------------------------------------------------------------
// OAuth

fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hexval = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    shared.lock().calls.token += 1;
    let body = String::from_utf8_lossy(&body);
    match form_value(&body, "grant_type") {
        Some(g) if g == JWT_BEARER => {}
        Some(g) => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("Invalid grant_type: {g}"),
            );
        }
        None => return oauth_error("invalid_request", "Missing required parameter: grant_type"),
    }
    let Some(assertion) = form_value(&body, "assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    match verify_assertion(&shared, &assertion) {
        Ok(principal) => axum::Json(issue_token(&shared, &principal)).into_response(),
        Err((error, description)) => oauth_error(error, &description),
    }
}

fn verify_assertion(shared: &Shared, jwt: &str) -> Result<String, (&'static str, String)> {
    let malformed = || {
        (
            "invalid_grant",
            "Invalid JWT: malformed assertion.".to_owned(),
        )
    };
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let decode = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|_| malformed())
    };
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| malformed())?;
    let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| malformed())?;
    let signature = decode(s)?;
    if header["alg"] != "RS256" {
        return Err((
            "invalid_grant",
            "Invalid JWT: unsupported signing algorithm.".into(),
        ));
    }
    let iss = claims["iss"].as_str().unwrap_or_default().to_owned();
    let public = shared.lock().accounts.get(&iss).cloned().ok_or((
        "invalid_grant",
        "Invalid grant: account not found".to_owned(),
    ))?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
        .verify(format!("{h}.{c}").as_bytes(), &signature)
        .map_err(|_| ("invalid_grant", "Invalid JWT Signature.".to_owned()))?;
    if claims["aud"] != GOOGLE_TOKEN_AUDIENCE {
        return Err((
            "invalid_grant",
            format!(
                "Invalid JWT: Failed audience check. The right audience is {GOOGLE_TOKEN_AUDIENCE}"
            ),
        ));
    }
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    let skew = shared.lock().clock_skew;
    let now = unix_now().saturating_add_signed(skew);
    let timely = matches!((iat, exp), (Some(iat), Some(exp))
        if iat <= now + 300 && exp > now && exp > iat && exp - iat <= 3600);
    if !timely {
        return Err((
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim."
                .into(),
        ));
    }
    let scope = claims["scope"].as_str().unwrap_or_default();
    if !scope.split(' ').any(|s| {
        s == "https://www.googleapis.com/auth/cloudkms"
            || s == "https://www.googleapis.com/auth/cloud-platform"
    }) {
        return Err((
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.".into(),
        ));
    }
    Ok(iss)
}

async fn metadata_token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.lock().calls.metadata += 1;
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor:Google header.",
        )
            .into_response();
    }
    (
        [("Metadata-Flavor", "Google")],
        axum::Json(issue_token(&shared, METADATA_PRINCIPAL)),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Cloud KMS

/// Before a KMS call: the fault, then the bearer token. `Ok` carries the principal and the fault
/// to apply to the answer.
async fn admit(shared: &Shared, headers: &HeaderMap) -> Result<(String, Option<Fault>), Response> {
    let fault = {
        let mut inner = shared.lock();
        match inner.fault {
            Some(Fault::Unavailable(n)) => {
                inner.fault = n.checked_sub(1).filter(|n| *n > 0).map(Fault::Unavailable);
                Some(Fault::Unavailable(n))
            }
            f => f,
        }
    };
    match fault {
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Some(Fault::Unavailable(_)) => {
            return Err(google_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
            ));
        }
        Some(Fault::Garbage) => {
            return Err((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "<html><body>502 upstream {\"plaintext\": ",
            )
                .into_response());
        }
        _ => {}
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let principal = token
        .filter(|_| fault != Some(Fault::RejectTokens))
        .and_then(|t| {
            let inner = shared.lock();
            inner
                .tokens
                .get(t)
                .filter(|t| t.expires > tokio::time::Instant::now())
                .map(|t| t.principal.clone())
        });
    match principal {
        Some(p) => Ok((p, fault)),
        None => Err(google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )),
    }
}

fn enum_ints(query: Option<&str>) -> bool {
    query.is_some_and(|q| percent_decode(q).contains("enum-encoding=int"))
}

fn enum_value(name: &'static str, ints: bool) -> Value {
    if !ints {
        return name.into();
    }
    let n: u64 = match name {
        "ENCRYPT_DECRYPT" | "GOOGLE_SYMMETRIC_ENCRYPTION" | "SOFTWARE" => 1,
        "ASYMMETRIC_DECRYPT" => 6,
        "RSA_DECRYPT_OAEP_3072_SHA256" => 9,
        _ => return name.into(),
    };
    n.into()
}

fn denied(shared: &Shared, principal: &str, permission: &str, name: &str) -> Option<Response> {
    shared.lock().denied.contains(principal).then(|| {
        google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("Permission '{permission}' denied on resource '{name}' (or it may not exist)."),
        )
    })
}

fn not_found(name: &str) -> Response {
    google_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("CryptoKey {name} not found."),
    )
}

fn resource(name: &str, key: &Key, ints: bool) -> Value {
    let mut v = json!({
        "name": name,
        "purpose": enum_value(key.purpose, ints),
        "createTime": key.create_time,
        "versionTemplate": {
            "protectionLevel": enum_value("SOFTWARE", ints),
            "algorithm": enum_value(key.algorithm, ints),
        },
        "destroyScheduledDuration": "2592000s",
    });
    if key.primary > 0
        && let Some(p) = key.versions.get(key.primary - 1)
    {
        v["primary"] = json!({
            "name": format!("{name}/cryptoKeyVersions/{}", key.primary),
            "state": if ints { p.state.number().into() } else { Value::from(p.state.name()) },
            "createTime": p.create_time,
            "generateTime": p.create_time,
            "protectionLevel": enum_value("SOFTWARE", ints),
            "algorithm": enum_value(key.algorithm, ints),
        });
    }
    if let Some(period) = key.rotation_period {
        v["rotationPeriod"] = format!("{period}s").into();
        v["nextRotationTime"] = rfc3339(unix_now() + period).into();
    }
    v
}

async fn get_key(
    State(shared): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    shared.lock().calls.get += 1;
    let principal = match admit(&shared, &headers).await {
        Ok((p, _)) => p,
        Err(r) => return r,
    };
    if let Some(r) = denied(&shared, &principal, "cloudkms.cryptoKeys.get", &name) {
        return r;
    }
    let inner = shared.lock();
    match inner.keys.get(&name) {
        Some(key) => axum::Json(resource(&name, key, enum_ints(query.as_deref()))).into_response(),
        None => not_found(&name),
    }
}

/// Reads a base64 `bytes` field (standard or URL-safe, as proto3 JSON allows).
fn bytes_field(body: &Value, field: &str) -> Result<Option<Vec<u8>>, Response> {
    match &body[field] {
        Value::Null => Ok(None),
        Value::String(s) => STANDARD
            .decode(s)
            .or_else(|_| URL_SAFE.decode(s))
            .or_else(|_| URL_SAFE_NO_PAD.decode(s))
            .map(Some)
            .map_err(|_| {
                invalid(format!(
                    "Invalid value at '{field}' (TYPE_BYTES), Base64 decoding failed"
                ))
            }),
        _ => Err(invalid(format!("Invalid value at '{field}' (TYPE_BYTES)"))),
    }
}

/// Reads an `Int64Value` field (a decimal string, or a number).
fn int64_field(body: &Value, field: &str) -> Result<Option<i64>, Response> {
    match &body[field] {
        Value::Null => Ok(None),
        Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|_| invalid(format!("Invalid value at '{field}' (TYPE_INT64), \"{s}\""))),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(format!("Invalid value at '{field}' (TYPE_INT64)"))),
        _ => Err(invalid(format!("Invalid value at '{field}' (TYPE_INT64)"))),
    }
}

/// Checks an optional checksum field; `Ok(true)` when one was given (and matched).
fn verify_crc(
    body: &Value,
    field: &str,
    json_field: &str,
    data: &[u8],
    data_field: &str,
) -> Result<bool, Response> {
    match int64_field(body, json_field)? {
        None => Ok(false),
        Some(c) if c == i64::from(crc32c(data)) => Ok(true),
        Some(_) => Err(invalid(format!(
            "The checksum in field {field} did not match the data in field {data_field}."
        ))),
    }
}

struct Call {
    name: String,
    method: String,
    principal: String,
    fault: Option<Fault>,
    ints: bool,
    body: Value,
}

async fn key_method(
    State(shared): State<Arc<Shared>>,
    UrlPath(path): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((name, method)) = path.rsplit_once(':') else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    };
    {
        let mut inner = shared.lock();
        match method {
            "encrypt" => inner.calls.encrypt += 1,
            "decrypt" => inner.calls.decrypt += 1,
            _ => {}
        }
    }
    if method != "encrypt" && method != "decrypt" {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    }
    let (principal, fault) = match admit(&shared, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return invalid("Invalid JSON payload received.");
    };
    let call = Call {
        name: name.to_owned(),
        method: method.to_owned(),
        principal,
        fault,
        ints: enum_ints(query.as_deref()),
        body,
    };
    let result = if call.method == "encrypt" {
        encrypt(&shared, &call)
    } else {
        decrypt(&shared, &call)
    };
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

fn encrypt(shared: &Shared, call: &Call) -> Result<Value, Response> {
    let name = &call.name;
    if let Some(r) = denied(
        shared,
        &call.principal,
        "cloudkms.cryptoKeyVersions.useToEncrypt",
        name,
    ) {
        return Err(r);
    }
    let plaintext = bytes_field(&call.body, "plaintext")?.unwrap_or_default();
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
        return Err(invalid("The plaintext must be 1 to 65536 bytes."));
    }
    let aad = bytes_field(&call.body, "additionalAuthenticatedData")?.unwrap_or_default();
    let pt_ok = verify_crc(
        &call.body,
        "plaintext_crc32c",
        "plaintextCrc32c",
        &plaintext,
        "plaintext",
    )?;
    let aad_ok = verify_crc(
        &call.body,
        "additional_authenticated_data_crc32c",
        "additionalAuthenticatedDataCrc32c",
        &aad,
        "additional_authenticated_data",
    )?;
    let inner = shared.lock();
    let key = inner.keys.get(name).ok_or_else(|| not_found(name))?;
    if key.purpose != "ENCRYPT_DECRYPT" {
        return Err(invalid(format!(
            "{name} has purpose {}; this method requires ENCRYPT_DECRYPT.",
            key.purpose
        )));
    }
    let version = &key.versions[key.primary - 1];
    let version_name = format!("{name}/cryptoKeyVersions/{}", key.primary);
    if version.state != VersionState::Enabled {
        return Err(google_error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!(
                "{version_name} is not enabled, current state is: {}.",
                version.state.name()
            ),
        ));
    }
    let nonce = random::<NONCE_LEN>();
    let mut sealed = plaintext;
    version
        .key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut sealed,
        )
        .map_err(|_| {
            google_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal error.",
            )
        })?;
    let number = u32::try_from(key.primary).unwrap_or(u32::MAX);
    let ciphertext = [&MAGIC[..], &number.to_be_bytes(), &nonce, &sealed].concat();
    let mut crc = i64::from(crc32c(&ciphertext));
    if call.fault == Some(Fault::CorruptCrc) {
        crc += 1;
    }
    let mut v = json!({
        "name": version_name,
        "ciphertext": STANDARD.encode(&ciphertext),
        "ciphertextCrc32c": crc.to_string(),
        "protectionLevel": enum_value("SOFTWARE", call.ints),
    });
    // proto3 JSON leaves out false booleans.
    if call.fault != Some(Fault::UnverifiedCrc) {
        if pt_ok {
            v["verifiedPlaintextCrc32c"] = true.into();
        }
        if aad_ok {
            v["verifiedAdditionalAuthenticatedDataCrc32c"] = true.into();
        }
    }
    Ok(v)
}

fn decrypt(shared: &Shared, call: &Call) -> Result<Value, Response> {
    let name = &call.name;
    if let Some(r) = denied(
        shared,
        &call.principal,
        "cloudkms.cryptoKeyVersions.useToDecrypt",
        name,
    ) {
        return Err(r);
    }
    let ciphertext = bytes_field(&call.body, "ciphertext")?.unwrap_or_default();
    let aad = bytes_field(&call.body, "additionalAuthenticatedData")?.unwrap_or_default();
    verify_crc(
        &call.body,
        "ciphertext_crc32c",
        "ciphertextCrc32c",
        &ciphertext,
        "ciphertext",
    )?;
    verify_crc(
        &call.body,
        "additional_authenticated_data_crc32c",
        "additionalAuthenticatedDataCrc32c",
        &aad,
        "additional_authenticated_data",
    )?;
    let inner = shared.lock();
    let key = inner.keys.get(name).ok_or_else(|| not_found(name))?;
    if key.purpose != "ENCRYPT_DECRYPT" {
        return Err(invalid(format!(
            "{name} has purpose {}; this method requires ENCRYPT_DECRYPT.",
            key.purpose
        )));
    }
    let bad_ciphertext = || invalid("Decryption failed: the ciphertext is invalid.");
    if ciphertext.len() < 4 + 4 + NONCE_LEN + 16 || &ciphertext[..4] != MAGIC {
        return Err(bad_ciphertext());
    }
    let number = u32::from_be_bytes([ciphertext[4], ciphertext[5], ciphertext[6], ciphertext[7]]);
    let index = usize::try_from(number).unwrap_or(0);
    let version = index
        .checked_sub(1)
        .and_then(|i| key.versions.get(i))
        .ok_or_else(bad_ciphertext)?;
    if version.state != VersionState::Enabled {
        return Err(google_error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!(
                "{name}/cryptoKeyVersions/{number} is not enabled, current state is: {}.",
                version.state.name()
            ),
        ));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&ciphertext[8..8 + NONCE_LEN]);
    let mut buf = ciphertext[8 + NONCE_LEN..].to_vec();
    let plaintext = version
        .key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut buf,
        )
        .map_err(|_| {
            invalid("Decryption failed: verify that 'name' refers to the correct CryptoKey.")
        })?;
    let mut crc = i64::from(crc32c(plaintext));
    if call.fault == Some(Fault::CorruptCrc) {
        crc += 1;
    }
    Ok(json!({
        "plaintext": STANDARD.encode(&*plaintext),
        "plaintextCrc32c": crc.to_string(),
        "usedPrimary": index == key.primary,
        "protectionLevel": enum_value("SOFTWARE", call.ints),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_decoded() {
        let body =
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c";
        assert_eq!(form_value(body, "grant_type").as_deref(), Some(JWT_BEARER));
        assert_eq!(form_value(body, "assertion").as_deref(), Some("a.b.c"));
        assert_eq!(form_value(body, "scope"), None);
        assert_eq!(
            percent_decode("%24alt=json%3Benum-encoding%3Dint"),
            "$alt=json;enum-encoding=int"
        );
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn enums_are_numbers_when_the_client_asks() {
        let key = Key {
            purpose: "ENCRYPT_DECRYPT",
            algorithm: "GOOGLE_SYMMETRIC_ENCRYPTION",
            versions: vec![new_version()],
            primary: 1,
            rotation_period: Some(86_400),
            create_time: rfc3339(0),
        };
        assert!(enum_ints(Some("%24alt=json%3Benum-encoding%3Dint")));
        assert!(!enum_ints(Some("$alt=json")) && !enum_ints(None));
        let names = resource("k", &key, false);
        assert_eq!(names["purpose"], "ENCRYPT_DECRYPT");
        assert_eq!(names["primary"]["state"], "ENABLED");
        assert_eq!(names["rotationPeriod"], "86400s");
        let ints = resource("k", &key, true);
        assert_eq!(ints["purpose"], 1);
        assert_eq!(ints["primary"]["state"], 1);
        assert_eq!(ints["primary"]["algorithm"], 1);
        assert_eq!(ints["primary"]["name"], "k/cryptoKeyVersions/1");
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
