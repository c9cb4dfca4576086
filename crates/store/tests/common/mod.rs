//! Helpers shared by the store crate's behavioural tests: repository registration over any
//! backend, a call-recording `CountingStore`, a fault-injecting `FaultyStore`, and a
//! `CountingProvider` that counts (and can fail) key-provider calls.
//!
//! Each test binary uses a subset of these helpers.

#![allow(dead_code, unreachable_pub)]

pub mod markers;

#[allow(unused_imports)] // each test binary uses some of them
pub use encrypt_repo_testkit::store::{Call, CountingStore, Method, map_body};

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use encrypt_repo_format::DataKey;
use encrypt_repo_keys::{
    GeneratedKey, KeyProvider, KeyStatus, ProviderRegistry, Settings, WrapContext, WrappedKey,
};
use encrypt_repo_store::{
    CryptoSettings, EncryptedStore, Registered, RegistrationRequest, Repository, RepositoryOptions,
};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

/// 64 KiB: the smallest chunk size, so multi-chunk objects stay small in tests.
pub const CHUNK_64K: u64 = 64 << 10;

// ------------------------------------------------------------------------------------------
// Registration
// ------------------------------------------------------------------------------------------

/// Access settings naming a local key file.
pub fn key_file_settings(key_file: &std::path::Path) -> Settings {
    [(
        "key_file".to_owned(),
        key_file.to_string_lossy().into_owned(),
    )]
    .into()
}

/// A registration request for an encrypted repository with the `local` provider.
pub fn local_request(
    key_file: &std::path::Path,
    chunk_size: Option<u64>,
    path_binding: Option<bool>,
) -> RegistrationRequest {
    RegistrationRequest {
        store_type: "test".into(),
        settings: Default::default(),
        encrypted: true,
        crypto_settings: Some(CryptoSettings {
            key_provider_name: "test".into(),
            key_provider_type: "local".into(),
            settings: key_file_settings(key_file),
        }),
        chunk_size,
        escrow: Vec::new(),
        path_binding,
    }
}

/// Registers `request` in `store` with the built-in providers.
pub async fn register_request(
    store: Arc<dyn ObjectStore>,
    request: RegistrationRequest,
    options: RepositoryOptions,
) -> encrypt_repo_store::Result<Registered> {
    Repository::register(store, request, &ProviderRegistry::with_builtin(), options).await
}

/// Registers an encrypted repository with the local provider (the key file is created if
/// missing) and returns the opened repository.
pub async fn register_local(
    store: Arc<dyn ObjectStore>,
    key_file: &std::path::Path,
    chunk_size: Option<u64>,
) -> Repository {
    register_request(
        store,
        local_request(key_file, chunk_size, None),
        RepositoryOptions::default(),
    )
    .await
    .expect("register repository")
    .repository
}

/// Opens a registered repository with the local provider reading `key_file`.
pub async fn open_local(
    store: Arc<dyn ObjectStore>,
    key_file: &std::path::Path,
    options: RepositoryOptions,
) -> encrypt_repo_store::Result<Repository> {
    Repository::open(
        store,
        &ProviderRegistry::with_builtin(),
        &key_file_settings(key_file),
        options,
    )
    .await
}

/// The local provider for `key_file`, wrapped in a [`CountingProvider`].
pub async fn counting_local_provider(key_file: &std::path::Path) -> Arc<CountingProvider> {
    let inner = ProviderRegistry::with_builtin()
        .open("local", &key_file_settings(key_file))
        .await
        .expect("open local provider");
    Arc::new(CountingProvider::new(inner))
}

/// Opens a registered repository (as a separate process would) with a [`CountingProvider`]
/// around the local provider for `key_file`.
pub async fn open_counting(
    store: Arc<dyn ObjectStore>,
    key_file: &std::path::Path,
    options: RepositoryOptions,
) -> (Repository, Arc<CountingProvider>) {
    let provider = counting_local_provider(key_file).await;
    let repo = Repository::open_with_provider(store, provider.clone(), options)
        .await
        .expect("open repository with counting provider");
    (repo, provider)
}

/// An `EncryptedStore` over `inner` for `repo`.
pub fn encrypted<S: ObjectStore>(inner: Arc<S>, repo: Repository) -> EncryptedStore<S> {
    EncryptedStore::new(inner, Arc::new(repo))
}

// ------------------------------------------------------------------------------------------
// Errors and raw inspection
// ------------------------------------------------------------------------------------------

/// The `encrypt_repo_store::Error` inside an `object_store::Error`, if there is one.
pub fn repo_error(e: &object_store::Error) -> Option<&encrypt_repo_store::Error> {
    match e {
        object_store::Error::Generic { source, .. }
        | object_store::Error::NotFound { source, .. } => source.downcast_ref(),
        _ => None,
    }
}

/// Every location in `store` (raw listing, reserved prefix included), sorted.
pub async fn raw_locations(store: &dyn ObjectStore) -> BTreeSet<Path> {
    store
        .list(None)
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .expect("raw list")
}

/// The raw bytes of one object.
pub async fn raw_bytes(store: &dyn ObjectStore, location: &Path) -> Bytes {
    store
        .get_opts(location, GetOptions::default())
        .await
        .expect("raw get")
        .bytes()
        .await
        .expect("raw body")
}

/// Deterministic, position-dependent test data: no two (seed, offset) pairs share a pattern
/// within a few hundred MiB, so a misplaced chunk or range is visible.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for w in v.chunks_mut(8) {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        w.copy_from_slice(&r[..w.len()]);
    }
    v
}

// ------------------------------------------------------------------------------------------
// Store wrappers
// ------------------------------------------------------------------------------------------

fn is_reserved(location: &Path) -> bool {
    location
        .parts()
        .next()
        .is_some_and(|p| p.as_ref() == encrypt_repo_store::RESERVED_PREFIX)
}

/// What a [`FaultyStore`] does to the call a [`Rule`] picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail the call with a generic error, without calling the backend.
    Fail,
    /// (gets only) Call the backend, but end the body cleanly after this many bytes.
    Truncate(u64),
    /// Wait this long before calling the backend (for parts: before awaiting its future).
    Delay(Duration),
}

/// Picks the `nth` (1-based) call of `method` and applies `fault` to it.
///
/// Calls under the reserved prefix `.encrypt-repo/` (registration, keyring) are not counted
/// unless `location` names one exactly, so "the 2nd put" means the 2nd put of an object.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The method.
    pub method: Method,
    /// Which matching call (1-based).
    pub nth: u64,
    /// What to do.
    pub fault: Fault,
    /// Only calls at this location count, when set.
    pub location: Option<Path>,
    seen: u64,
}

impl Rule {
    /// The `nth` call of `method`, anywhere outside the reserved prefix.
    pub fn new(method: Method, nth: u64, fault: Fault) -> Self {
        assert!(nth >= 1, "nth is 1-based");
        Self {
            method,
            nth,
            fault,
            location: None,
            seen: 0,
        }
    }

    /// Only count calls at `location`.
    pub fn at(mut self, location: &Path) -> Self {
        self.location = Some(location.clone());
        self
    }
}

#[derive(Debug, Default)]
struct FaultState {
    rules: Mutex<Vec<Rule>>,
    fired: AtomicU64,
}

impl FaultState {
    /// The fault for this call, if a rule picks it.
    fn check(&self, method: Method, location: &Path) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let mut out = None;
        for r in rules.iter_mut().filter(|r| r.method == method) {
            let counts = match &r.location {
                Some(l) => l == location,
                None => !is_reserved(location),
            };
            if counts {
                r.seen += 1;
                if r.seen == r.nth && out.is_none() {
                    out = Some(r.fault);
                }
            }
        }
        if out.is_some() {
            self.fired.fetch_add(1, Ordering::SeqCst);
        }
        out
    }
}

fn injected(method: Method, location: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected fault: {method:?} at {location}").into(),
    }
}

/// Truncates a body to its first `keep` bytes, then ends cleanly.
pub fn truncate_stream(
    s: BoxStream<'static, object_store::Result<Bytes>>,
    keep: u64,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    futures::stream::unfold((s, keep), |(mut s, left)| async move {
        if left == 0 {
            return None;
        }
        match s.next().await? {
            Err(e) => Some((Err(e), (s, 0))),
            Ok(b) => {
                let take = (b.len() as u64).min(left);
                Some((Ok(b.slice(..take as usize)), (s, left - take)))
            }
        }
    })
    .fuse() // object_store's collect_bytes polls again after the end
    .boxed()
}

/// An `ObjectStore` that injects faults: for a configured Nth call of a method it fails the
/// call, truncates the returned body (fewer bytes, then a clean end of stream), or delays it.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: Arc<S>,
    state: Arc<FaultState>,
}

impl<S: ObjectStore> FaultyStore<S> {
    /// No faults until [`FaultyStore::add`] is called.
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            state: Arc::default(),
        }
    }

    /// Adds a rule.
    pub fn add(&self, rule: Rule) {
        self.state.rules.lock().unwrap().push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// How many faults were injected so far.
    pub fn fired(&self) -> u64 {
        self.state.fired.load(Ordering::SeqCst)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    async fn before(&self, method: Method, location: &Path) -> object_store::Result<Option<u64>> {
        match self.state.check(method, location) {
            None => Ok(None),
            Some(Fault::Fail) => Err(injected(method, location)),
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            Some(Fault::Truncate(n)) => {
                assert_eq!(method, Method::Get, "Fault::Truncate applies to gets only");
                Ok(Some(n))
            }
        }
    }
}

impl<S> std::fmt::Display for FaultyStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultyStore")
    }
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    state: Arc<FaultState>,
}

#[async_trait::async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match self.state.check(Method::PutPart, &self.location) {
            None => self.inner.put_part(data),
            Some(Fault::Fail) => {
                let e = injected(Method::PutPart, &self.location);
                Box::pin(futures::future::ready(Err(e)))
            }
            Some(Fault::Delay(d)) => {
                let fut = self.inner.put_part(data);
                Box::pin(async move {
                    tokio::time::sleep(d).await;
                    fut.await
                })
            }
            Some(Fault::Truncate(_)) => panic!("Fault::Truncate applies to gets only"),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        match self.state.check(Method::Complete, &self.location) {
            None => {}
            Some(Fault::Fail) => return Err(injected(Method::Complete, &self.location)),
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Truncate(_)) => panic!("Fault::Truncate applies to gets only"),
        }
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        match self.state.check(Method::Abort, &self.location) {
            None => {}
            Some(Fault::Fail) => return Err(injected(Method::Abort, &self.location)),
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Truncate(_)) => panic!("Fault::Truncate applies to gets only"),
        }
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.before(Method::Put, location).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.before(Method::PutMultipart, location).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            location: location.clone(),
            state: self.state.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let method = if options.head {
            Method::Head
        } else {
            Method::Get
        };
        let truncate = self.before(method, location).await?;
        let r = self.inner.get_opts(location, options).await?;
        Ok(match truncate {
            Some(keep) => map_body(r, |s| truncate_stream(s, keep)),
            None => r,
        })
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.before(Method::GetRanges, location).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Deletes are passed through (no rule applies to them).
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.before(Method::Copy, from).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.before(Method::Rename, from).await?;
        self.inner.rename_opts(from, to, options).await
    }
}

// ------------------------------------------------------------------------------------------
// Key provider wrapper
// ------------------------------------------------------------------------------------------

/// How a [`CountingProvider`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderMode {
    /// Delegate everything.
    Healthy,
    /// `generate_data_key` fails with a transient `Provider` error; the rest delegates.
    FailGenerate,
    /// Every call answers that the key is unusable: `KeyUnavailable` from generate / wrap /
    /// unwrap, `Disabled` from `status`.
    Unavailable,
    /// `status` says `Disabled` while unwrap still works (as moto's KMS does for a disabled key):
    /// only a status check can notice.
    StatusDisabled,
}

/// Call counts of a [`CountingProvider`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProviderCounts {
    /// `generate_data_key` calls.
    pub generate: u64,
    /// `wrap` calls.
    pub wrap: u64,
    /// `unwrap` calls.
    pub unwrap: u64,
    /// `status` calls.
    pub status: u64,
}

/// Wraps any provider, counting `generate_data_key` / `wrap` / `unwrap` / `status` calls, and
/// failing them on demand. `type_name` and `master_key` are the wrapped provider's, so it can
/// open a repository registered with that provider type.
#[derive(Debug)]
pub struct CountingProvider {
    inner: Arc<dyn KeyProvider>,
    generate: AtomicU64,
    wrap: AtomicU64,
    unwrap: AtomicU64,
    status: AtomicU64,
    mode: Mutex<ProviderMode>,
    unwrap_delay: Mutex<Duration>,
}

impl CountingProvider {
    /// Counts calls to `inner`; starts healthy.
    pub fn new(inner: Arc<dyn KeyProvider>) -> Self {
        Self {
            inner,
            generate: AtomicU64::new(0),
            wrap: AtomicU64::new(0),
            unwrap: AtomicU64::new(0),
            status: AtomicU64::new(0),
            mode: Mutex::new(ProviderMode::Healthy),
            unwrap_delay: Mutex::new(Duration::ZERO),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> ProviderCounts {
        ProviderCounts {
            generate: self.generate.load(Ordering::SeqCst),
            wrap: self.wrap.load(Ordering::SeqCst),
            unwrap: self.unwrap.load(Ordering::SeqCst),
            status: self.status.load(Ordering::SeqCst),
        }
    }

    /// Switches behaviour.
    pub fn set_mode(&self, mode: ProviderMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Makes every `unwrap` take at least `d` (so concurrent cold readers overlap).
    pub fn set_unwrap_delay(&self, d: Duration) {
        *self.unwrap_delay.lock().unwrap() = d;
    }

    fn mode(&self) -> ProviderMode {
        *self.mode.lock().unwrap()
    }

    fn unavailable(&self) -> encrypt_repo_keys::Error {
        encrypt_repo_keys::Error::KeyUnavailable {
            provider: self.inner.type_name().to_owned(),
            key: self.inner.master_key(),
            reason: "disabled (test provider)".into(),
        }
    }
}

#[async_trait::async_trait]
impl KeyProvider for CountingProvider {
    fn type_name(&self) -> &str {
        self.inner.type_name()
    }

    fn master_key(&self) -> String {
        self.inner.master_key()
    }

    async fn generate_data_key(
        &self,
        ctx: &WrapContext,
    ) -> encrypt_repo_keys::Result<GeneratedKey> {
        self.generate.fetch_add(1, Ordering::SeqCst);
        match self.mode() {
            ProviderMode::Healthy | ProviderMode::StatusDisabled => {
                self.inner.generate_data_key(ctx).await
            }
            ProviderMode::FailGenerate => Err(encrypt_repo_keys::Error::Provider {
                provider: self.inner.type_name().to_owned(),
                message: "injected generate_data_key failure".into(),
            }),
            ProviderMode::Unavailable => Err(self.unavailable()),
        }
    }

    async fn wrap(
        &self,
        key: &DataKey,
        ctx: &WrapContext,
    ) -> encrypt_repo_keys::Result<WrappedKey> {
        self.wrap.fetch_add(1, Ordering::SeqCst);
        match self.mode() {
            ProviderMode::Unavailable => Err(self.unavailable()),
            _ => self.inner.wrap(key, ctx).await,
        }
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        ctx: &WrapContext,
    ) -> encrypt_repo_keys::Result<DataKey> {
        self.unwrap.fetch_add(1, Ordering::SeqCst);
        let delay = *self.unwrap_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match self.mode() {
            ProviderMode::Unavailable => Err(self.unavailable()),
            _ => self.inner.unwrap(wrapped, ctx).await,
        }
    }

    async fn status(&self) -> encrypt_repo_keys::Result<KeyStatus> {
        self.status.fetch_add(1, Ordering::SeqCst);
        match self.mode() {
            ProviderMode::Unavailable | ProviderMode::StatusDisabled => Ok(KeyStatus::Disabled),
            _ => self.inner.status().await,
        }
    }
}
