//! A loopback stand-in for Azure Key Vault and the Entra ID (Azure AD) token endpoints, over
//! HTTPS with a generated CA, with real cryptography: RSA-OAEP-256 (SHA-256, MGF1-SHA-256) under
//! RSA keys generated with aws-lc-rs, RS256 client assertions verified against the registered
//! certificate's public key.
//!
//! No emulator of Key Vault can be installed, so this implements exactly the calls the
//! `azure-key-vault` provider and Microsoft's Python clients (`azure-identity`'s
//! `ClientSecretCredential` with `disable_instance_discovery=True`, `azure-keyvault-keys`'
//! `KeyClient` and `CryptographyClient`) make, and nothing else:
//!
//! | call | answers |
//! |---|---|
//! | `GET /{tenant}/v2.0/.well-known/openid-configuration` | the OpenID metadata MSAL reads (`token_endpoint`, `issuer`, …) |
//! | `POST /{tenant}/oauth2/v2.0/token` | `client_credentials` with `client_secret`, or `client_assertion` (an RS256 JWT signed by a registered certificate, or a registered federated token); errors as Entra ID's JSON with `AADSTS` codes (`7000215` wrong secret, `7000222` expired secret, `700016` unknown client, `90002` unknown tenant, `700027` bad assertion signature, `70021` unknown federated token) |
//! | `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=…` | IMDS, with `Metadata: true`, for the identity [`AzureKeyVault::enable_managed_identity`] made |
//! | `GET /msi/token?api-version=2019-08-01&resource=…` | App Service's `IDENTITY_ENDPOINT`, with `X-IDENTITY-HEADER` |
//! | `GET /keys/{name}`, `GET /keys/{name}/` (as the Python client asks), `GET /keys/{name}/{version}` | the key bundle (`key` as a JWK with `kid`, `kty`, `key_ops`, `n`/`e` or `crv`/`x`/`y`; `attributes`) |
//! | `POST /keys/{name}/{version}/wrapkey`, `…/unwrapkey` | `{"alg":"RSA-OAEP-256","value":…}` → `{"kid":…,"value":…}` |
//!
//! Every `/keys` call needs a bearer token the token endpoints issued for the challenge's
//! resource; without one the answer is 401 with `WWW-Authenticate: Bearer
//! authorization="{base}/{tenant}", resource="https://vault.azure.net"`. Key Vault's error
//! shape `{"error":{"code","message","innererror":{"code"}}}`: 403 `Forbidden` for a denied
//! client (`ForbiddenByPolicy`), `unwrapkey` on a disabled key (`KeyDisabled`; `wrapkey` still
//! succeeds, as on the live service), `wrapkey` outside `nbf`/`exp` (`KeyNotYetValid`,
//! `KeyExpired`; `unwrapkey` still works there, as Azure documents) and an operation missing
//! from `key_ops` (`KeyOperationForbidden`, this stand-in's choice of inner code); 404
//! `KeyNotFound`; 400 `BadParameter` for an undecryptable ciphertext, a wrong algorithm or an EC
//! key. Any `api-version` is accepted.
//!
//! Control is by methods on [`AzureKeyVault`]: keys and versions, attributes, clients, faults
//! ([`Fault`]) and counters.

#![allow(
    clippy::result_large_err,
    reason = "handlers return an early `Response` as the error; not a hot path"
)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey,
};
use aws_lc_rs::signature::{self, KeyPair as _};
use aws_lc_rs::{digest, rand};
use axum::Router;
use axum::extract::{Form, Path as UrlPath, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use serde_json::{Value, json};

/// The stand-in's only tenant.
pub const TENANT: &str = "8f2b1c3e-5d4a-4e6f-9a0b-1c2d3e4f5a6b";
/// The resource the vault's challenge names by default.
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";
/// The default key operations of an RSA key (as Key Vault creates them).
pub const RSA_KEY_OPS: [&str; 6] = [
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
];

/// A fault the stand-in injects into the next `/keys` requests (before authentication), or into
/// the next token requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 200 with a body that is not JSON.
    Garbage,
    /// Never answers (until the stand-in stops).
    Hang,
    /// Answers this status (429, 503, …) with Key Vault's error JSON.
    Status(u16),
}

enum Material {
    Rsa {
        private: OaepPrivateDecryptingKey,
        public: OaepPublicEncryptingKey,
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        x: Vec<u8>,
        y: Vec<u8>,
    },
}

struct Version {
    id: String,
    material: Material,
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    key_ops: Vec<String>,
    created: i64,
}

#[derive(Default)]
struct Client {
    secret: Option<String>,
    /// PKCS#1 RSAPublicKey DER and the SHA-256 / SHA-1 thumbprints (base64url) of the certificate.
    cert: Option<(Vec<u8>, String, String)>,
    federated: Option<String>,
    secret_expired: bool,
    denied: bool,
}

struct Token {
    client_id: String,
    scope: String,
    expires: Instant,
}

#[derive(Default)]
struct Counters {
    token_requests: AtomicU64,
    wraps: AtomicU64,
    unwraps: AtomicU64,
    key_gets: AtomicU64,
}

struct State {
    keys: BTreeMap<String, Vec<Version>>,
    clients: BTreeMap<String, Client>,
    managed_identity: Option<String>,
    app_service_header: Option<String>,
    tokens: HashMap<String, Token>,
    fault: Option<(Fault, u32)>,
    token_fault: Option<(Fault, u32)>,
    token_lifetime: u64,
    challenge_resource: String,
    last_token_scope: Option<String>,
}

struct Shared {
    base: String,
    state: Mutex<State>,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running stand-in; stops when dropped.
pub struct AzureKeyVault {
    shared: Arc<Shared>,
    handle: axum_server::Handle<SocketAddr>,
    dir: PathBuf,
    ca_file: PathBuf,
}

impl std::fmt::Debug for AzureKeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureKeyVault")
            .field("url", &self.shared.base)
            .finish_non_exhaustive()
    }
}

impl Drop for AzureKeyVault {
    fn drop(&mut self) {
        self.handle.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::fill(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// Reads one DER TLV; returns (tag, contents, rest).
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        let (l, r) = rest.split_at_checked(n)?;
        rest = r;
        l.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// `n` and `e` of a PKCS#1 RSAPublicKey, without leading zeros.
fn rsa_n_e(pkcs1: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, seq, _) = der_tlv(pkcs1)?;
    let (_, n, rest) = der_tlv(seq)?;
    let (_, e, _) = der_tlv(rest)?;
    let strip = |x: &[u8]| {
        let i = x.iter().position(|&b| b != 0).unwrap_or(x.len());
        x[i..].to_vec()
    };
    Some((strip(n), strip(e)))
}

fn rsa_material(bits: usize) -> Material {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        other => panic!("RSA-{other} is not a Key Vault key size here (2048, 3072, 4096)"),
    };
    let pair = signature::RsaKeyPair::generate(size).expect("RSA key generation");
    let (n, e) = rsa_n_e(pair.public_key().as_ref()).expect("RSA public key");
    let pkcs8 = pair.as_der().expect("PKCS#8");
    let private = PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref()).expect("RSA decrypting key");
    let public = OaepPublicEncryptingKey::new(private.public_key()).expect("OAEP public key");
    Material::Rsa {
        private: OaepPrivateDecryptingKey::new(private).expect("OAEP private key"),
        public,
        n,
        e,
    }
}

impl AzureKeyVault {
    /// Starts the stand-in on `127.0.0.1`, on a free port, with a fresh CA.
    ///
    /// # Panics
    /// If the port cannot be bound or the certificates cannot be made.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("azure-kv-stand-in-{}", random_hex(8)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (ca_pem, cert_pem, key_pem) = certificates();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write CA");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            base: format!("https://127.0.0.1:{}", addr.port()),
            state: Mutex::new(State {
                keys: BTreeMap::new(),
                clients: BTreeMap::new(),
                managed_identity: None,
                app_service_header: None,
                tokens: HashMap::new(),
                fault: None,
                token_fault: None,
                token_lifetime: 3600,
                challenge_resource: VAULT_RESOURCE.into(),
                last_token_scope: None,
            }),
            counters: Counters::default(),
        });
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.into_bytes(),
            key_pem.into_bytes(),
        )
        .await
        .expect("TLS config");
        let handle = axum_server::Handle::new();
        let server = axum_server::tls_rustls::from_tcp_rustls(listener, config)
            .expect("server")
            .handle(handle.clone());
        let app = router(shared.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        handle.listening().await.expect("listening");
        Self {
            shared,
            handle,
            dir,
            ca_file,
        }
    }

    /// `https://127.0.0.1:PORT`: the vault URL, the authority host and the IMDS host at once.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.shared.base
    }

    /// The CA certificate (PEM) that signed the stand-in's server certificate.
    #[must_use]
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A scratch directory that is removed with the stand-in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `https://127.0.0.1:PORT/keys/{name}`.
    #[must_use]
    pub fn key_id(&self, name: &str) -> String {
        format!("{}/keys/{name}", self.shared.base)
    }

    fn add_version(&self, name: &str, material: Material, ops: &[&str]) -> String {
        let id = random_hex(16);
        let v = Version {
            id: id.clone(),
            material,
            enabled: true,
            nbf: None,
            exp: None,
            key_ops: ops.iter().map(|s| (*s).to_owned()).collect(),
            created: now(),
        };
        self.shared
            .lock()
            .keys
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(v);
        id
    }

    /// Creates an RSA key (2048, 3072 or 4096 bits), or a new version of it; returns the version.
    #[must_use]
    pub fn create_rsa_key(&self, name: &str, bits: usize) -> String {
        self.add_version(name, rsa_material(bits), &RSA_KEY_OPS)
    }

    /// Creates a P-256 EC key; returns the version.
    #[must_use]
    pub fn create_ec_key(&self, name: &str) -> String {
        let rng = rand::SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .expect("EC key");
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
        )
        .expect("EC key");
        let point = pair.public_key().as_ref();
        let material = Material::Ec {
            x: point[1..33].to_vec(),
            y: point[33..65].to_vec(),
        };
        self.add_version(name, material, &["sign", "verify"])
    }

    /// A new version of an RSA key of the same size; it becomes the current version.
    ///
    /// # Panics
    /// If there is no such RSA key.
    #[must_use]
    pub fn rotate(&self, name: &str) -> String {
        let bits = match self.shared.lock().keys.get(&name.to_ascii_lowercase()) {
            Some(v) => match &v.last().expect("version").material {
                Material::Rsa { n, .. } => n.len() * 8,
                Material::Ec { .. } => panic!("{name} is an EC key"),
            },
            None => panic!("no key {name}"),
        };
        self.create_rsa_key(name, bits)
    }

    /// The current (newest) version of a key.
    ///
    /// # Panics
    /// If there is no such key.
    #[must_use]
    pub fn current_version(&self, name: &str) -> String {
        self.with_current(name, |v| v.id.clone())
    }

    fn with_current<T>(&self, name: &str, f: impl FnOnce(&mut Version) -> T) -> T {
        let mut s = self.shared.lock();
        let versions = s
            .keys
            .get_mut(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no key {name}"));
        f(versions.last_mut().expect("version"))
    }

    /// Sets `attributes.enabled` of the current version.
    pub fn set_enabled(&self, name: &str, enabled: bool) {
        self.with_current(name, |v| v.enabled = enabled);
    }

    /// Sets `attributes.nbf` and `attributes.exp` (Unix seconds) of the current version.
    pub fn set_dates(&self, name: &str, nbf: Option<i64>, exp: Option<i64>) {
        self.with_current(name, |v| {
            v.nbf = nbf;
            v.exp = exp;
        });
    }

    /// Sets `key_ops` of the current version.
    pub fn set_key_ops(&self, name: &str, ops: &[&str]) {
        self.with_current(name, |v| {
            v.key_ops = ops.iter().map(|s| (*s).to_owned()).collect();
        });
    }

    /// Deletes a key with all its versions.
    pub fn delete_key(&self, name: &str) {
        self.shared.lock().keys.remove(&name.to_ascii_lowercase());
    }

    /// Registers (or replaces) an application with a client secret.
    pub fn register_client_secret(&self, client_id: &str, secret: &str) {
        self.shared
            .lock()
            .clients
            .entry(client_id.into())
            .or_default()
            .secret = Some(secret.into());
    }

    /// Registers an application with a new self-signed RSA-2048 certificate; returns the path of
    /// a PEM file holding the certificate and its PKCS#8 private key (for
    /// `AZURE_CLIENT_CERTIFICATE_PATH`).
    ///
    /// # Panics
    /// If the certificate cannot be made or written.
    #[must_use]
    pub fn register_client_certificate(&self, client_id: &str) -> PathBuf {
        let pair = signature::RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let pkcs8 = pair.as_der().expect("PKCS#8");
        let key = rcgen::KeyPair::try_from(pkcs8.as_ref()).expect("rcgen key");
        let mut params =
            rcgen::CertificateParams::new(vec![format!("{client_id}.example")]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, client_id);
        let cert = params.self_signed(&key).expect("certificate");
        let der = cert.der().to_vec();
        let thumb256 = b64(digest::digest(&digest::SHA256, &der).as_ref());
        let thumb1 = b64(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref());
        let path = self.dir.join(format!("{client_id}.pem"));
        std::fs::write(&path, format!("{}{}", cert.pem(), key.serialize_pem())).expect("write");
        self.shared
            .lock()
            .clients
            .entry(client_id.into())
            .or_default()
            .cert = Some((pair.public_key().as_ref().to_vec(), thumb256, thumb1));
        path
    }

    /// Registers an application that trusts `assertion` as a federated token (workload
    /// identity); returns the path of a file holding it (for `AZURE_FEDERATED_TOKEN_FILE`).
    ///
    /// # Panics
    /// If the file cannot be written.
    #[must_use]
    pub fn register_federated_token(&self, client_id: &str, assertion: &str) -> PathBuf {
        let path = self.dir.join(format!("{client_id}.federated-token"));
        std::fs::write(&path, assertion).expect("write");
        self.shared
            .lock()
            .clients
            .entry(client_id.into())
            .or_default()
            .federated = Some(assertion.into());
        path
    }

    /// Enables the managed identity `client_id` on the IMDS endpoint.
    pub fn enable_managed_identity(&self, client_id: &str) {
        let mut s = self.shared.lock();
        s.managed_identity = Some(client_id.into());
        s.clients.entry(client_id.into()).or_default();
    }

    /// Enables the App Service identity endpoint with `header` as `IDENTITY_HEADER`; returns
    /// the `IDENTITY_ENDPOINT` URL. Tokens are for the managed identity (enable it first).
    #[must_use]
    pub fn enable_app_service_identity(&self, header: &str) -> String {
        self.shared.lock().app_service_header = Some(header.into());
        format!("{}/msi/token", self.shared.base)
    }

    /// Denies (or allows again) a client every key operation: 403 `Forbidden`.
    pub fn deny_client(&self, client_id: &str, denied: bool) {
        self.shared
            .lock()
            .clients
            .entry(client_id.into())
            .or_default()
            .denied = denied;
    }

    /// Injects `fault` into the next `times` `/keys` requests.
    pub fn fault(&self, fault: Fault, times: u32) {
        self.shared.lock().fault = Some((fault, times));
    }

    /// Injects `fault` into the next `times` requests to the Entra ID token endpoint.
    pub fn token_fault(&self, fault: Fault, times: u32) {
        self.shared.lock().token_fault = Some((fault, times));
    }

    /// Marks a client's secret expired: token requests with it get `AADSTS7000222`.
    pub fn expire_client_secret(&self, client_id: &str) {
        self.shared
            .lock()
            .clients
            .entry(client_id.into())
            .or_default()
            .secret_expired = true;
    }

    /// Lifetime of the tokens issued from now on (`expires_in`), seconds.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.shared.lock().token_lifetime = secs;
    }

    /// Invalidates every issued token (the next `/keys` call gets a 401 challenge).
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// The resource the 401 challenge names (and issued tokens must be for).
    pub fn set_challenge_resource(&self, resource: &str) {
        self.shared.lock().challenge_resource = resource.into();
    }

    /// The `scope` (or managed identity `resource`) of the last token request.
    #[must_use]
    pub fn last_token_scope(&self) -> Option<String> {
        self.shared.lock().last_token_scope.clone()
    }

    /// Token requests answered so far (successful or not).
    #[must_use]
    pub fn token_requests(&self) -> u64 {
        self.shared.counters.token_requests.load(Ordering::Relaxed)
    }

    /// Successful `wrapkey` calls.
    #[must_use]
    pub fn wraps(&self) -> u64 {
        self.shared.counters.wraps.load(Ordering::Relaxed)
    }

    /// Successful `unwrapkey` calls.
    #[must_use]
    pub fn unwraps(&self) -> u64 {
        self.shared.counters.unwraps.load(Ordering::Relaxed)
    }

    /// `/keys` requests received (any method, any outcome, faults included).
    #[must_use]
    pub fn key_requests(&self) -> u64 {
        self.shared.counters.key_gets.load(Ordering::Relaxed)
    }
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
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "encrypt-repo Azure stand-in CA");
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

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/metadata/identity/oauth2/token", get(imds))
        .route("/msi/token", get(app_service))
        .route("/keys/{name}", get(get_key))
        // azure-keyvault-keys asks for the current version as `/keys/{name}/` (empty version).
        .route("/keys/{name}/", get(get_key))
        .route("/keys/{name}/{version}", get(get_key_version))
        .route("/keys/{name}/{version}/{op}", post(key_op))
        .with_state(shared)
}

type Shr = AxState<Arc<Shared>>;

async fn openid(AxState(sh): Shr, UrlPath(tenant): UrlPath<String>) -> Response {
    let base = format!("{}/{tenant}", sh.base);
    axum::Json(json!({
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "issuer": format!("{base}/v2.0"),
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "tenant_region_scope": "EU",
    }))
    .into_response()
}

fn entra_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": random_hex(16),
            "correlation_id": random_hex(16),
        })),
    )
        .into_response()
}

fn issue(sh: &Shared, client_id: &str, scope: &str) -> (String, u64) {
    let value = random_hex(32);
    let mut s = sh.lock();
    let lifetime = s.token_lifetime;
    s.tokens.insert(
        value.clone(),
        Token {
            client_id: client_id.into(),
            scope: scope.into(),
            expires: Instant::now() + Duration::from_secs(lifetime),
        },
    );
    (value, lifetime)
}

async fn token(
    AxState(sh): Shr,
    UrlPath(tenant): UrlPath<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    sh.counters.token_requests.fetch_add(1, Ordering::Relaxed);
    let fault = take_fault(&mut sh.lock().token_fault);
    if let Some(f) = fault {
        return fault_answer(f).await;
    }
    let f = |k: &str| form.get(k).map(String::as_str);
    let scope = f("scope").unwrap_or_default().to_owned();
    sh.lock().last_token_scope = Some(scope.clone());
    if tenant != TENANT {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    if f("grant_type") != Some("client_credentials") {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let client_id = f("client_id").unwrap_or_default().to_owned();
    let verdict = {
        let s = sh.lock();
        match s.clients.get(&client_id) {
            None => Err(entra_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory."
                ),
            )),
            Some(c) => check_client(
                c,
                &client_id,
                &form,
                &format!("{}/{tenant}/oauth2/v2.0/token", sh.base),
            ),
        }
    };
    if let Err(r) = verdict {
        return r;
    }
    let wanted = format!("{}/.default", sh.lock().challenge_resource);
    if !scope.split(' ').any(|s| s == wanted) {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            &format!("The provided value for the input parameter 'scope' is not valid: {scope}"),
        );
    }
    let (value, lifetime) = issue(&sh, &client_id, &wanted);
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": value,
    }))
    .into_response()
}

fn check_client(
    c: &Client,
    client_id: &str,
    form: &HashMap<String, String>,
    aud: &str,
) -> Result<(), Response> {
    if let Some(given) = form.get("client_secret") {
        return match &c.secret {
            Some(s) if s == given && c.secret_expired => Err(entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000222,
                &format!("The provided client secret keys for app '{client_id}' are expired."),
            )),
            Some(s) if s == given => Ok(()),
            _ => Err(entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 the app.",
            )),
        };
    }
    let Some(assertion) = form.get("client_assertion") else {
        return Err(entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    if form.get("client_assertion_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return Err(entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            "client_assertion_type is not jwt-bearer.",
        ));
    }
    if let Some(f) = &c.federated {
        return if f == assertion {
            Ok(())
        } else {
            Err(entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                70021,
                "No matching federated identity record found for presented assertion.",
            ))
        };
    }
    match &c.cert {
        Some((public, t256, t1))
            if verify_assertion(assertion, public, t256, t1, client_id, aud) =>
        {
            Ok(())
        }
        _ => Err(entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
        )),
    }
}

/// An RS256 JWT signed by the registered certificate's key, naming it by thumbprint, for this
/// client and this token endpoint, not expired.
fn verify_assertion(
    jwt: &str,
    public: &[u8],
    t256: &str,
    t1: &str,
    client_id: &str,
    aud: &str,
) -> bool {
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode = |s: &str| URL_SAFE_NO_PAD_INDIFFERENT.decode(s).ok();
    let (Some(hb), Some(pb), Some(sb)) = (decode(h), decode(p), decode(sig)) else {
        return false;
    };
    let (Ok(header), Ok(claims)) = (
        serde_json::from_slice::<Value>(&hb),
        serde_json::from_slice::<Value>(&pb),
    ) else {
        return false;
    };
    let thumb_ok = header["x5t#S256"].as_str() == Some(t256) || header["x5t"].as_str() == Some(t1);
    let key = signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public);
    header["alg"] == "RS256"
        && thumb_ok
        && key.verify(format!("{h}.{p}").as_bytes(), &sb).is_ok()
        && claims["aud"] == aud
        && claims["iss"] == client_id
        && claims["sub"] == client_id
        && claims["exp"].as_i64().is_some_and(|e| e > now())
}

fn mi_answer(sh: &Shared, q: &HashMap<String, String>) -> Response {
    sh.counters.token_requests.fetch_add(1, Ordering::Relaxed);
    let resource = q.get("resource").cloned().unwrap_or_default();
    sh.lock().last_token_scope = Some(resource.clone());
    let Some(id) = sh.lock().managed_identity.clone() else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": "invalid_request", "error_description": "Identity not found"}),
            ),
        )
            .into_response();
    };
    if q.get("client_id").is_some_and(|c| *c != id) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": "invalid_request", "error_description": "Identity not found"}),
            ),
        )
            .into_response();
    }
    let wanted = sh.lock().challenge_resource.clone();
    if resource.trim_end_matches('/') != wanted {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_resource", "error_description": "AADSTS500011: The resource principal was not found"})),
        )
            .into_response();
    }
    let (value, lifetime) = issue(sh, &id, &format!("{wanted}/.default"));
    let on = u64::try_from(now()).unwrap_or(0) + lifetime;
    axum::Json(json!({
        "access_token": value,
        "client_id": id,
        "expires_in": lifetime.to_string(),
        "expires_on": on.to_string(),
        "ext_expires_in": lifetime.to_string(),
        "not_before": now().to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn imds(
    AxState(sh): Shr,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request", "error_description": "Required metadata header not specified"})),
        )
            .into_response();
    }
    mi_answer(&sh, &q)
}

async fn app_service(
    AxState(sh): Shr,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let expected = sh.lock().app_service_header.clone();
    let given = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok());
    if expected.is_none() || given != expected.as_deref() {
        return (StatusCode::UNAUTHORIZED, "").into_response();
    }
    mi_answer(&sh, &q)
}

fn kv_error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response {
    let mut error = json!({"code": code, "message": message});
    if let Some(i) = inner {
        error["innererror"] = json!({"code": i});
    }
    (status, axum::Json(json!({"error": error}))).into_response()
}

fn take_fault(slot: &mut Option<(Fault, u32)>) -> Option<Fault> {
    match slot {
        Some((f, n)) if *n > 0 => {
            *n -= 1;
            Some(*f)
        }
        _ => None,
    }
}

async fn fault_answer(fault: Fault) -> Response {
    match fault {
        Fault::Garbage => (StatusCode::OK, "<html>\u{1}\u{2} not json").into_response(),
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = if code == 429 {
                "Throttled"
            } else {
                "ServiceUnavailable"
            };
            kv_error(status, code, "Injected fault.", None)
        }
    }
}

/// Faults, then the bearer token; `Ok(client_id)` or the answer to send.
async fn gate(sh: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    sh.counters.key_gets.fetch_add(1, Ordering::Relaxed);
    let fault = take_fault(&mut sh.lock().fault);
    if let Some(f) = fault {
        return Err(fault_answer(f).await);
    }
    let s = sh.lock();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let wanted = format!("{}/.default", s.challenge_resource);
    match bearer.and_then(|b| s.tokens.get(b)) {
        Some(t) if t.expires > Instant::now() && t.scope == wanted => {
            if s.clients.get(&t.client_id).is_some_and(|c| c.denied) {
                return Err(kv_error(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &format!(
                        "The user, group or application 'appid={}' does not have keys \
                         permissions on key vault '127.0.0.1'.",
                        t.client_id
                    ),
                    Some("ForbiddenByPolicy"),
                ));
            }
            Ok(t.client_id.clone())
        }
        _ => {
            let challenge = format!(
                "Bearer authorization=\"{}/{TENANT}\", resource=\"{}\"",
                sh.base, s.challenge_resource
            );
            let mut r = kv_error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                None,
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                challenge.parse().expect("header value"),
            );
            Err(r)
        }
    }
}

fn not_found(name: &str) -> Response {
    kv_error(
        StatusCode::NOT_FOUND,
        "KeyNotFound",
        &format!("A key with (name/id) {name} was not found in this key vault."),
        None,
    )
}

fn bundle(base: &str, name: &str, v: &Version) -> Value {
    let kid = format!("{base}/keys/{name}/{}", v.id);
    let mut key = match &v.material {
        Material::Rsa { n, e, .. } => json!({"kid": kid, "kty": "RSA", "n": b64(n), "e": b64(e)}),
        Material::Ec { x, y } => {
            json!({"kid": kid, "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)})
        }
    };
    key["key_ops"] = json!(v.key_ops);
    let mut attributes = json!({
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
        "exportable": false,
    });
    if let Some(nbf) = v.nbf {
        attributes["nbf"] = json!(nbf);
    }
    if let Some(exp) = v.exp {
        attributes["exp"] = json!(exp);
    }
    json!({"key": key, "attributes": attributes, "tags": {}})
}

fn find<'a>(s: &'a State, name: &str, version: Option<&str>) -> Option<&'a Version> {
    let versions = s.keys.get(&name.to_ascii_lowercase())?;
    match version {
        None | Some("") => versions.last(),
        Some(v) => versions.iter().find(|x| x.id.eq_ignore_ascii_case(v)),
    }
}

async fn get_key(sh: Shr, headers: HeaderMap, UrlPath(name): UrlPath<String>) -> Response {
    get_any(sh, headers, name, None).await
}

async fn get_key_version(
    sh: Shr,
    headers: HeaderMap,
    UrlPath((name, version)): UrlPath<(String, String)>,
) -> Response {
    get_any(sh, headers, name, Some(version)).await
}

async fn get_any(
    AxState(sh): Shr,
    headers: HeaderMap,
    name: String,
    version: Option<String>,
) -> Response {
    if let Err(r) = gate(&sh, &headers).await {
        return r;
    }
    let s = sh.lock();
    match find(&s, &name, version.as_deref()) {
        Some(v) => axum::Json(bundle(&sh.base, &name, v)).into_response(),
        None => not_found(&name),
    }
}

async fn key_op(
    AxState(sh): Shr,
    headers: HeaderMap,
    UrlPath((name, version, op)): UrlPath<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = gate(&sh, &headers).await {
        return r;
    }
    let wrap = match op.as_str() {
        "wrapkey" => true,
        "unwrapkey" => false,
        _ => return not_found(&name),
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request body is not JSON.",
            None,
        );
    };
    let Some(value) = req["value"]
        .as_str()
        .and_then(|v| URL_SAFE_NO_PAD_INDIFFERENT.decode(v).ok())
    else {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "Property value is required and must be base64url.",
            None,
        );
    };
    let s = sh.lock();
    let Some(v) = find(&s, &name, Some(&version)) else {
        return not_found(&format!("{name}/{version}"));
    };
    if req["alg"] != "RSA-OAEP-256" {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "Algorithm is not supported by this stand-in (RSA-OAEP-256 only).",
            None,
        );
    }
    let op_name = if wrap { "wrapKey" } else { "unwrapKey" };
    let forbidden = |message: String, inner: &str| {
        kv_error(StatusCode::FORBIDDEN, "Forbidden", &message, Some(inner))
    };
    if !v.key_ops.iter().any(|o| o == op_name) {
        return forbidden(
            format!("Operation {op_name} is not permitted on this key."),
            "KeyOperationForbidden",
        );
    }
    let t = now();
    if wrap && v.nbf.is_some_and(|n| n > t) {
        return forbidden(
            format!("Operation {op_name} is not allowed on a key that is not yet valid."),
            "KeyNotYetValid",
        );
    }
    if wrap && v.exp.is_some_and(|e| e <= t) {
        return forbidden(
            format!("Operation {op_name} is not allowed on an expired key."),
            "KeyExpired",
        );
    }
    if !wrap && !v.enabled {
        return forbidden(
            format!("Operation {op_name} is not allowed on a disabled key."),
            "KeyDisabled",
        );
    }
    let Material::Rsa {
        private, public, ..
    } = &v.material
    else {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "Key and algorithm are not compatible.",
            None,
        );
    };
    let out = if wrap {
        let mut out = vec![0u8; public.ciphertext_size()];
        match public.encrypt(&OAEP_SHA256_MGF1SHA256, &value, &mut out, None) {
            Ok(c) => c.to_vec(),
            Err(_) => {
                return kv_error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    "The value is too long for this key.",
                    None,
                );
            }
        }
    } else {
        let mut out = vec![0u8; private.min_output_size()];
        match private.decrypt(&OAEP_SHA256_MGF1SHA256, &value, &mut out, None) {
            Ok(p) => p.to_vec(),
            Err(_) => {
                return kv_error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    "Unwrap failed: the ciphertext could not be decrypted.",
                    None,
                );
            }
        }
    };
    let counter = if wrap {
        &sh.counters.wraps
    } else {
        &sh.counters.unwraps
    };
    counter.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({
        "kid": format!("{}/keys/{name}/{}", sh.base, v.id),
        "value": b64(&out),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_public_keys_give_modulus_and_exponent() {
        for bits in [2048, 3072] {
            let Material::Rsa { n, e, public, .. } = rsa_material(bits) else {
                panic!("not RSA");
            };
            assert_eq!(n.len() * 8, bits);
            assert_eq!(e, [1, 0, 1]);
            assert_eq!(public.key_size_bits(), bits);
        }
        assert_eq!(der_tlv(&[0x30, 0x82, 0x00]), None, "truncated length");
    }

    #[test]
    fn assertions_are_verified_against_the_certificate() {
        assert!(!verify_assertion("a.b", &[], "t", "t", "c", "aud"));
        assert!(!verify_assertion("e30.e30.AAAA", &[], "t", "t", "c", "aud"));
    }
}
