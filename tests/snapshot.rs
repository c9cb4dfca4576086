//! Snapshot engine: backup → restore round trips over `EncryptedStore` on InMemory and on a
//! local directory (local key provider), re-runs that upload only what is missing, an
//! interrupted backup, a tampered object, dry runs, unknown snapshots and hostile manifests.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path as FsPath;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use encrypt_repo::keys::ProviderRegistry;
use encrypt_repo::snapshot::{
    self, BackupOptions, BackupReport, Error, NoProgress, Progress, RestoreOptions, RestoreReport,
};
use encrypt_repo::store::{
    CryptoSettings, EncryptedStore, RegistrationRequest, Repository, RepositoryOptions,
};
use filetime::FileTime;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tempfile::TempDir;

const PREFIX: &str = "backup";

// ------------------------------------------------------------------------------------------
// Repositories
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Local,
}

/// An encrypted store over a raw backend, and the raw backend for inspection.
struct Repo {
    store: Arc<dyn ObjectStore>,
    raw: Arc<dyn ObjectStore>,
    _dirs: Vec<TempDir>,
}

fn request(key_file: &FsPath) -> RegistrationRequest {
    RegistrationRequest {
        store_type: "test".into(),
        settings: Default::default(),
        encrypted: true,
        crypto_settings: Some(CryptoSettings {
            key_provider_name: "test".into(),
            key_provider_type: "local".into(),
            settings: [(
                "key_file".to_owned(),
                key_file.to_string_lossy().into_owned(),
            )]
            .into(),
        }),
        chunk_size: None,
        escrow: Vec::new(),
        path_binding: None,
    }
}

/// Registers a repository (a new key file) in `raw` and wraps it.
async fn encrypted(raw: Arc<dyn ObjectStore>, keys: &TempDir) -> Arc<dyn ObjectStore> {
    let repo = Repository::register(
        raw.clone(),
        request(&keys.path().join("master.key")),
        &ProviderRegistry::with_builtin(),
        RepositoryOptions::default(),
    )
    .await
    .unwrap()
    .repository;
    Arc::new(EncryptedStore::new(Arc::new(raw), Arc::new(repo)))
}

async fn repo(backend: Backend) -> Repo {
    let keys = TempDir::new().unwrap();
    let mut dirs = Vec::new();
    let raw: Arc<dyn ObjectStore> = match backend {
        Backend::Memory => Arc::new(InMemory::new()),
        Backend::Local => {
            let d = TempDir::new().unwrap();
            let s = Arc::new(LocalFileSystem::new_with_prefix(d.path()).unwrap());
            dirs.push(d);
            s
        }
    };
    let store = encrypted(raw.clone(), &keys).await;
    dirs.push(keys);
    Repo {
        store,
        raw,
        _dirs: dirs,
    }
}

fn backup_opts() -> BackupOptions {
    BackupOptions {
        prefix: PREFIX.into(),
        concurrency: 4,
        dry_run: false,
    }
}

fn restore_opts(snapshot: Option<&str>) -> RestoreOptions {
    RestoreOptions {
        prefix: PREFIX.into(),
        snapshot: snapshot.map(str::to_owned),
        host: None,
        source: None,
        concurrency: 4,
    }
}

async fn backup(store: &Arc<dyn ObjectStore>, dir: &FsPath) -> BackupReport {
    snapshot::backup(store.clone(), dir, &backup_opts(), &NoProgress)
        .await
        .unwrap()
}

async fn restore(store: &Arc<dyn ObjectStore>, dir: &FsPath, id: Option<&str>) -> RestoreReport {
    snapshot::restore(store.clone(), dir, &restore_opts(id), &NoProgress)
        .await
        .unwrap()
}

/// Raw locations under `prefix` (or all), as strings, sorted.
async fn raw_names(raw: &Arc<dyn ObjectStore>, prefix: Option<&str>) -> Vec<String> {
    let prefix = prefix.map(Path::from);
    let mut v: Vec<String> = raw
        .list(prefix.as_ref())
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    v.sort();
    v
}

/// The latest manifest, decrypted, as JSON.
async fn latest_manifest(store: &Arc<dyn ObjectStore>) -> serde_json::Value {
    let names = raw_names(store, Some("backup/snapshots")).await;
    let last = names.last().unwrap();
    let bytes = store
        .get(&Path::from(last.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------------------------------------
// Trees
// ------------------------------------------------------------------------------------------

/// Deterministic bytes: xorshift64* from `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

fn write(root: &FsPath, rel: &[u8], bytes: &[u8], mode: u32) {
    let p = root.join(OsStr::from_bytes(rel));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

const BIG_MIB: usize = 200;

/// A tree with nested directories, empty files and directories, odd names, duplicate contents,
/// a multi-part file, symlinks (to a file, a directory, dangling, relative upwards), special
/// modes and mtimes with nanoseconds; with `big`, a 200 MiB file too.
fn build_tree(root: &FsPath, big: bool) {
    write(root, b"a/b/c/deep.txt", &pattern(1, 10_000), 0o644);
    write(root, b"a/b/file.txt", b"hello\n", 0o600);
    write(root, b"a/medium.bin", &pattern(2, (3 << 20) + 17), 0o644);
    write(root, b"empty.txt", b"", 0o644);
    write(root, b"a/b/empty", b"", 0o400);
    write(root, b"with space.txt", b"spaces", 0o644);
    write(root, b"new\nline", b"newline", 0o644);
    write(
        root,
        "unicodé ✓.txt".as_bytes(),
        "ünïcode".as_bytes(),
        0o644,
    );
    write(root, b"bad\xff\xfe-name", b"not utf-8", 0o644);
    write(
        root,
        b"dir\xff/inner",
        b"inside a non-UTF-8 directory",
        0o644,
    );
    write(root, b"-leading-dash", b"dash", 0o644);
    write(root, b"dup1", &pattern(3, 5000), 0o644);
    write(root, b"dup2", &pattern(3, 5000), 0o644);
    write(root, b"script.sh", b"#!/bin/sh\necho hi\n", 0o755);
    write(root, b"suid", b"setuid", 0o4755);
    write(root, b"ro/kept.txt", b"in a read-only dir", 0o444);
    std::fs::create_dir(root.join("emptydir")).unwrap();
    std::fs::create_dir(root.join("sticky")).unwrap();
    if big {
        let mut f = std::io::BufWriter::new(std::fs::File::create(root.join("big.bin")).unwrap());
        for i in 0..BIG_MIB {
            f.write_all(&pattern(1000 + i as u64, 1 << 20)).unwrap();
        }
        f.into_inner().unwrap().sync_all().unwrap();
    }
    let link = |target: &[u8], at: &str| {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), root.join(at)).unwrap();
    };
    link(b"a/b/file.txt", "link-file");
    link(b"a", "link-dir");
    link(b"does/not/exist", "dangling");
    link(b"../../with space.txt", "a/b/up");
    link(b"target\xff", "link-non-utf8");
    std::fs::set_permissions(root.join("sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();
    set_mtimes(root);
    std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
}

/// Distinct mtimes with nanoseconds on every entry, deepest first.
fn set_mtimes(root: &FsPath) {
    let mut all: Vec<_> = tree(root).into_keys().collect();
    all.sort();
    for (i, rel) in all.iter().enumerate().rev() {
        let t = FileTime::from_unix_time(1_600_000_000 + i as i64 * 1000, 123_456_789 + i as u32);
        filetime::set_symlink_file_times(root.join(OsStr::from_bytes(rel)), t, t).unwrap();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum What {
    File { size: u64, sha256: String },
    Dir,
    Link(Vec<u8>),
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    what: What,
    /// `None` for symlinks (Linux has no link modes).
    mode: Option<u32>,
    mtime: (i64, i64),
}

fn sha256_file(p: &FsPath) -> String {
    let mut f = std::fs::File::open(p).unwrap();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    hex(ctx.finish().as_ref())
}

/// Every entry under `root` (not `root` itself) by raw relative path.
fn tree(root: &FsPath) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), Vec::<u8>::new())];
    while let Some((dir, rel)) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let item = item.unwrap();
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(item.file_name().as_bytes());
            let p = item.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                What::Link(
                    std::fs::read_link(&p)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if m.is_dir() {
                stack.push((p.clone(), r.clone()));
                What::Dir
            } else {
                What::File {
                    size: m.len(),
                    sha256: sha256_file(&p),
                }
            };
            let mode = (!m.file_type().is_symlink()).then_some(m.mode() & 0o7777);
            out.insert(
                r,
                Node {
                    what,
                    mode,
                    mtime: (m.mtime(), m.mtime_nsec()),
                },
            );
        }
    }
    out
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn assert_same_tree(want: &BTreeMap<Vec<u8>, Node>, got: &BTreeMap<Vec<u8>, Node>) {
    for (p, n) in want {
        assert_eq!(got.get(p), Some(n), "entry {:?} differs", show(p));
    }
    for p in got.keys() {
        assert!(want.contains_key(p), "unexpected entry {:?}", show(p));
    }
}

fn temp_files_left(root: &FsPath) -> Vec<String> {
    tree(root)
        .into_keys()
        .map(|k| show(&k))
        .filter(|k| k.contains(".encrypt-repo-restore-"))
        .collect()
}

// ------------------------------------------------------------------------------------------
// Round trips
// ------------------------------------------------------------------------------------------

async fn round_trip(backend: Backend) {
    let r = repo(backend).await;
    let src = TempDir::new().unwrap();
    build_tree(src.path(), false);
    let want = tree(src.path());

    let report = backup(&r.store, src.path()).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.files, 16);
    assert_eq!(report.dirs, 7);
    assert_eq!(report.symlinks, 5);
    // dup1/dup2 share a content; two files are empty.
    assert_eq!(report.uploaded_files, 13);
    assert_eq!(report.skipped_files, 1);
    let id = report.snapshot_id.clone().unwrap();
    assert_eq!(id.len(), 25, "{id}");

    // Object names reveal no file name.
    for name in raw_names(&r.raw, None).await {
        if name.starts_with(".encrypt-repo/") {
            continue;
        }
        let rest = name.strip_prefix("backup/").unwrap();
        let ok = rest == "config"
            || rest
                .strip_prefix("data/")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit()))
            || rest == format!("snapshots/{id}.json");
        assert!(ok, "unexpected object {name}");
    }

    let dst = TempDir::new().unwrap();
    let target = dst.path().join("restored/here");
    let rr = restore(&r.store, &target, None).await;
    assert!(rr.failed.is_empty(), "{:?}", rr.failed);
    assert_eq!(rr.snapshot_id, id);
    assert_eq!((rr.files, rr.dirs, rr.symlinks), (16, 7, 5));
    assert_eq!(rr.bytes, report.bytes);
    assert_same_tree(&want, &tree(&target));

    let list = snapshot::list_snapshots(r.store.clone(), PREFIX)
        .await
        .unwrap()
        .snapshots;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].files, 16);
    assert_eq!(
        list[0].source,
        src.path().canonicalize().unwrap().to_string_lossy()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_in_memory() {
    round_trip(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_local_directory() {
    round_trip(Backend::Local).await;
}

/// Counts the bytes reported, to check the progress calls add up.
#[derive(Default)]
struct Counting {
    total: AtomicUsize,
    done: AtomicUsize,
}

impl Progress for Counting {
    fn add_total(&self, bytes: u64) {
        self.total.fetch_add(bytes as usize, Ordering::Relaxed);
    }
    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes as usize, Ordering::Relaxed);
    }
    fn note(&self, _msg: &str) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_a_200_mib_file_on_local_disk() {
    let r = repo(Backend::Local).await;
    let src = TempDir::new().unwrap();
    build_tree(src.path(), true);
    let want = tree(src.path());
    let big = (BIG_MIB << 20) as f64 / f64::from(1 << 20);

    let progress = Counting::default();
    let t = Instant::now();
    let report = snapshot::backup(r.store.clone(), src.path(), &backup_opts(), &progress)
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    eprintln!("backup: {secs:.2} s, {:.0} MiB/s of file data", big / secs);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.files, 17);
    let total = progress.total.load(Ordering::Relaxed);
    assert_eq!(total, progress.done.load(Ordering::Relaxed));
    // Everything hashed once, and what was uploaded counted again.
    assert_eq!(total as u64, report.bytes + report.uploaded_bytes);

    let dst = TempDir::new().unwrap();
    let t = Instant::now();
    let rr = restore(&r.store, dst.path(), None).await;
    let secs = t.elapsed().as_secs_f64();
    eprintln!("restore: {secs:.2} s, {:.0} MiB/s of file data", big / secs);
    assert!(rr.failed.is_empty(), "{:?}", rr.failed);
    assert_same_tree(&want, &tree(dst.path()));
    // The whole test process (other tests may run beside it): far below the file's size.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
        eprintln!(
            "peak resident set of the test process: {}",
            line[6..].trim()
        );
    }
}

// ------------------------------------------------------------------------------------------
// Re-runs
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_tree_uploads_nothing_and_one_change_uploads_one() {
    let r = repo(Backend::Memory).await;
    let src = TempDir::new().unwrap();
    build_tree(src.path(), false);
    let first_tree = tree(src.path());
    let first = backup(&r.store, src.path()).await;
    let objects = raw_names(&r.raw, Some("backup/data")).await;

    let second = backup(&r.store, src.path()).await;
    assert_eq!(second.uploaded_files, 0);
    assert_eq!(second.uploaded_bytes, 0);
    assert_eq!(second.skipped_files, 14);
    assert_eq!(raw_names(&r.raw, Some("backup/data")).await, objects);

    write(src.path(), b"a/b/c/deep.txt", b"changed", 0o644);
    let third = backup(&r.store, src.path()).await;
    assert_eq!(third.uploaded_files, 1);
    assert_eq!(third.uploaded_bytes, 7);
    assert_eq!(
        raw_names(&r.raw, Some("backup/data")).await.len(),
        objects.len() + 1
    );

    // The latest is the changed tree; the first is still there by id, and by a prefix of it.
    let latest = TempDir::new().unwrap();
    let rr = restore(&r.store, latest.path(), None).await;
    assert_eq!(rr.snapshot_id, third.snapshot_id.clone().unwrap());
    assert_eq!(
        std::fs::read(latest.path().join("a/b/c/deep.txt")).unwrap(),
        b"changed"
    );
    let old = TempDir::new().unwrap();
    let first_id = first.snapshot_id.clone().unwrap();
    restore(&r.store, old.path(), Some(&first_id)).await;
    assert_same_tree(&first_tree, &tree(old.path()));

    let list = snapshot::list_snapshots(r.store.clone(), PREFIX)
        .await
        .unwrap()
        .snapshots;
    let ids: Vec<_> = list.iter().map(|s| s.id.clone()).collect();
    assert_eq!(
        ids,
        [
            first_id,
            second.snapshot_id.unwrap(),
            third.snapshot_id.unwrap()
        ]
    );
}

/// Fails every upload under `/data/` once `allowed` is used up (`usize::MAX`: never).
#[derive(Debug)]
struct FailingStore {
    inner: Arc<dyn ObjectStore>,
    allowed: AtomicUsize,
}

impl std::fmt::Display for FailingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailingStore")
    }
}

type Fut<'a, T> = Pin<Box<dyn Future<Output = object_store::Result<T>> + Send + 'a>>;

impl FailingStore {
    fn check(&self, location: &Path) -> object_store::Result<()> {
        if !location.as_ref().contains("/data/") {
            return Ok(());
        }
        let ok = self
            .allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                usize::MAX => Some(n),
                0 => None,
                n => Some(n - 1),
            })
            .is_ok();
        if ok {
            Ok(())
        } else {
            Err(object_store::Error::Generic {
                store: "FailingStore",
                source: "injected failure: connection reset".into(),
            })
        }
    }
}

// `ObjectStore` is an `async_trait` trait; this crate does not depend on async-trait, so the
// methods are written in their expanded form.
impl ObjectStore for FailingStore {
    fn put_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Fut<'async_trait, PutResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.check(location)?;
            self.inner.put_opts(location, payload, opts).await
        })
    }

    fn put_multipart_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        opts: PutMultipartOptions,
    ) -> Fut<'async_trait, Box<dyn MultipartUpload>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.check(location)?;
            self.inner.put_multipart_opts(location, opts).await
        })
    }

    fn get_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        options: GetOptions,
    ) -> Fut<'async_trait, GetResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.get_opts(location, options)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_delimiter<'life0, 'life1, 'async_trait>(
        &'life0 self,
        prefix: Option<&'life1 Path>,
    ) -> Fut<'async_trait, ListResult>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.list_with_delimiter(prefix)
    }

    fn copy_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: CopyOptions,
    ) -> Fut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.copy_opts(from, to, options)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_backup_uploads_only_the_rest_when_run_again() {
    let raw: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let failing = Arc::new(FailingStore {
        inner: raw.clone(),
        allowed: AtomicUsize::new(5),
    });
    let keys = TempDir::new().unwrap();
    let store = encrypted(failing.clone() as Arc<dyn ObjectStore>, &keys).await;
    let src = TempDir::new().unwrap();
    build_tree(src.path(), false);

    // One file at a time, so exactly the allowed uploads complete before the failure.
    let one_at_a_time = BackupOptions {
        concurrency: 1,
        ..backup_opts()
    };
    let err = snapshot::backup(store.clone(), src.path(), &one_at_a_time, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("injected failure"), "{chain}");
    assert!(raw_names(&raw, Some("backup/snapshots")).await.is_empty());
    let stored = raw_names(&raw, Some("backup/data")).await.len();
    assert_eq!(stored, 5);

    failing.allowed.store(usize::MAX, Ordering::SeqCst);
    let report = backup(&store, src.path()).await;
    assert_eq!(report.uploaded_files, 13 - 5);
    assert_eq!(report.skipped_files, 14 - (13 - 5));
    assert_eq!(raw_names(&raw, Some("backup/data")).await.len(), 13);

    let dst = TempDir::new().unwrap();
    let rr = restore(&store, dst.path(), None).await;
    assert!(rr.failed.is_empty(), "{:?}", rr.failed);
    assert_same_tree(&tree(src.path()), &tree(dst.path()));
}

/// Appends to `grow` as soon as its first MiB has been read, and deletes `vanish` just before
/// its task starts.
struct Saboteur {
    grow: std::path::PathBuf,
    grow_name: &'static str,
    /// Bytes reported when `grow`'s task started (`usize::MAX`: not yet).
    armed_at: AtomicUsize,
    vanish: std::path::PathBuf,
    vanish_name: &'static str,
    done: AtomicUsize,
    grown: std::sync::atomic::AtomicBool,
}

impl Progress for Saboteur {
    fn add_total(&self, _bytes: u64) {}
    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes as usize, Ordering::SeqCst) + bytes as usize;
        // Other files here are a few bytes, so 1 MiB since `grow` started is `grow` itself.
        let armed_at = self.armed_at.load(Ordering::SeqCst);
        if armed_at != usize::MAX
            && done - armed_at >= 1 << 20
            && !self.grown.swap(true, Ordering::SeqCst)
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&self.grow)
                .unwrap();
            f.write_all(b"more").unwrap();
        }
    }
    fn note(&self, msg: &str) {
        if msg == self.grow_name {
            self.armed_at
                .store(self.done.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        if msg == self.vanish_name {
            std::fs::remove_file(&self.vanish).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_change_or_vanish_fail_alone() {
    let r = repo(Backend::Memory).await;
    let src = TempDir::new().unwrap();
    write(src.path(), b"growing.bin", &pattern(7, 16 << 20), 0o644);
    write(src.path(), b"vanishing.txt", b"gone soon", 0o644);
    write(src.path(), b"steady.txt", b"steady", 0o644);
    let saboteur = Saboteur {
        grow: src.path().join("growing.bin"),
        grow_name: "growing.bin",
        armed_at: AtomicUsize::new(usize::MAX),
        vanish: src.path().join("vanishing.txt"),
        vanish_name: "vanishing.txt",
        done: AtomicUsize::new(0),
        grown: Default::default(),
    };
    let one_at_a_time = BackupOptions {
        concurrency: 1,
        ..backup_opts()
    };
    let report = snapshot::backup(r.store.clone(), src.path(), &one_at_a_time, &saboteur)
        .await
        .unwrap();
    let failed: Vec<_> = report.failed.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        failed,
        ["growing.bin", "vanishing.txt"],
        "{:?}",
        report.failed
    );
    assert!(report.failed[0].error.contains("changed while being read"));
    assert_eq!(report.files, 1);
    // Nothing of the changed file was stored: only steady.txt's content.
    assert_eq!(raw_names(&r.raw, Some("backup/data")).await.len(), 1);
    let paths: Vec<_> = latest_manifest(&r.store).await["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["steady.txt"]);
}

// ------------------------------------------------------------------------------------------
// Tampering and hostile input
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_fails_only_its_file_and_leaves_nothing_partial() {
    let r = repo(Backend::Local).await;
    let src = TempDir::new().unwrap();
    build_tree(src.path(), false);
    backup(&r.store, src.path()).await;

    let manifest = latest_manifest(&r.store).await;
    let entry = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "a/medium.bin")
        .unwrap();
    let location = Path::from(format!(
        "backup/data/{}",
        entry["content"].as_str().unwrap()
    ));
    let mut bytes = r
        .raw
        .get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    r.raw.put(&location, bytes.into()).await.unwrap();

    let dst = TempDir::new().unwrap();
    let rr = restore(&r.store, dst.path(), None).await;
    assert_eq!(rr.failed.len(), 1, "{:?}", rr.failed);
    assert_eq!(rr.failed[0].path, "a/medium.bin");
    assert!(
        rr.failed[0].error.contains(location.as_ref()),
        "{}",
        rr.failed[0].error
    );
    assert!(!dst.path().join("a/medium.bin").exists());
    assert_eq!(temp_files_left(dst.path()), Vec::<String>::new());
    let mut want = tree(src.path());
    want.remove(b"a/medium.bin".as_slice());
    // Its directory's mtime is still restored (set after the files).
    assert_same_tree(&want, &tree(dst.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_repositorys_key_fails_the_whole_restore() {
    let r = repo(Backend::Memory).await;
    let src = TempDir::new().unwrap();
    write(src.path(), b"f", b"data", 0o644);
    backup(&r.store, src.path()).await;

    // Every backup object copied into another repository's backend: nothing decrypts there.
    let other_raw: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let keys = TempDir::new().unwrap();
    let other = encrypted(other_raw.clone(), &keys).await;
    for name in raw_names(&r.raw, Some(PREFIX)).await {
        let p = Path::from(name.as_str());
        let bytes = r.raw.get(&p).await.unwrap().bytes().await.unwrap();
        other_raw.put(&p, bytes.into()).await.unwrap();
    }
    let dst = TempDir::new().unwrap();
    let err = snapshot::restore(other, dst.path(), &restore_opts(None), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut found = false;
    while let Some(c) = cause {
        found |= c.downcast_ref::<encrypt_repo::store::Error>().is_some();
        cause = c.source();
    }
    assert!(found, "the store error is in the chain: {err:?}");
    assert!(!dst.path().join("f").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_malformed_manifests() {
    let r = repo(Backend::Memory).await;
    let src = TempDir::new().unwrap();
    write(src.path(), b"ok.txt", b"fine", 0o644);
    backup(&r.store, src.path()).await;
    let mut m = latest_manifest(&r.store).await;

    // Entries that would leave the target directory, or pass through a symlink.
    let id = "29990101T000000Z-0000000a";
    m["id"] = id.into();
    let good = m["entries"][0].clone();
    let mut entries = vec![good.clone()];
    for (path, kind) in [
        (&b"../escape"[..], "file"),
        (b"/tmp/absolute", "file"),
        (b"a/./b", "dir"),
        (b"", "dir"),
        (b"link", "symlink"),
        (b"link/through", "file"),
    ] {
        let mut e = good.clone();
        e["path_hex"] = hex(path).into();
        e["path"] = show(path).into();
        e["kind"] = kind.into();
        if kind == "symlink" {
            e["target_hex"] = hex(b"/tmp").into();
        }
        entries.push(e);
    }
    m["entries"] = entries.into();
    let at = Path::from(format!("backup/snapshots/{id}.json"));
    r.store
        .put(&at, serde_json::to_vec(&m).unwrap().into())
        .await
        .unwrap();

    let outer = TempDir::new().unwrap();
    let dst = outer.path().join("inner");
    let rr = restore(&r.store, &dst, Some(id)).await;
    let failed: Vec<_> = rr.failed.iter().map(|f| f.path.as_str()).collect();
    // `link/through` is written first (files before symlinks), so `link` is a real directory
    // and the symlink cannot replace it.
    assert_eq!(
        failed,
        ["", "../escape", "/tmp/absolute", "a/./b", "link"],
        "{:?}",
        rr.failed
    );
    assert_eq!((rr.files, rr.symlinks), (2, 0));
    assert!(!outer.path().join("escape").exists());
    assert!(dst.join("link").is_dir());
    assert_eq!(std::fs::read(dst.join("ok.txt")).unwrap(), b"fine");

    // A file under an existing symlink is refused rather than written through it.
    let dst2 = outer.path().join("second");
    std::fs::create_dir(&dst2).unwrap();
    std::os::unix::fs::symlink(outer.path(), dst2.join("link")).unwrap();
    let rr = restore(&r.store, &dst2, Some(id)).await;
    assert!(
        rr.failed.iter().any(|f| f.path == "link/through"),
        "{:?}",
        rr.failed
    );
    assert!(!outer.path().join("through").exists());

    // Not JSON, JSON of another shape, another version: errors, never panics.
    for (n, body) in [
        &b"\x00\xffgarbage"[..],
        b"{\"version\": 1}",
        b"[]",
        br#"{"version":2,"id":"x","entries":[]}"#,
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("29990101T000000Z-0000010{n}");
        let at = Path::from(format!("backup/snapshots/{id}.json"));
        r.store.put(&at, body.to_vec().into()).await.unwrap();
        let err = snapshot::restore(r.store.clone(), &dst, &restore_opts(Some(&id)), &NoProgress)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_snapshot_is_of_the_host_and_directory_asked_for_and_a_bad_manifest_is_skipped()
{
    let r = repo(Backend::Memory).await;
    let src = TempDir::new().unwrap();
    write(src.path(), b"f", b"ours", 0o644);
    let ours = backup(&r.store, src.path()).await.snapshot_id.unwrap();

    // A later snapshot of another machine sharing the prefix, and a later one of another
    // directory of this machine.
    let mut m = latest_manifest(&r.store).await;
    let theirs = "29990101T000000Z-00000001";
    m["id"] = theirs.into();
    m["host"] = "another-host".into();
    let at = Path::from(format!("backup/snapshots/{theirs}.json"));
    r.store
        .put(&at, serde_json::to_vec(&m).unwrap().into())
        .await
        .unwrap();
    let elsewhere = "29990101T000000Z-00000002";
    let mut e = latest_manifest(&r.store).await;
    e["id"] = elsewhere.into();
    e["host"] = snapshot::this_host().into();
    e["source"] = "/some/other/dir".into();
    let at = Path::from(format!("backup/snapshots/{elsewhere}.json"));
    r.store
        .put(&at, serde_json::to_vec(&e).unwrap().into())
        .await
        .unwrap();

    let pick = |host: Option<String>, source: Option<String>| RestoreOptions {
        host,
        source,
        ..restore_opts(None)
    };
    let dst = TempDir::new().unwrap();
    let source = src
        .path()
        .canonicalize()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let here = Some(snapshot::this_host());
    let rr = snapshot::restore(
        r.store.clone(),
        dst.path(),
        &pick(here.clone(), Some(source)),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(rr.snapshot_id, ours);
    let rr = snapshot::restore(
        r.store.clone(),
        dst.path(),
        &pick(here.clone(), None),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(rr.snapshot_id, elsewhere);
    let rr = snapshot::restore(r.store.clone(), dst.path(), &pick(None, None), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        rr.snapshot_id, elsewhere,
        "within one second the last id wins"
    );
    let rr = snapshot::restore(
        r.store.clone(),
        dst.path(),
        &pick(Some("another-host".into()), None),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(rr.snapshot_id, theirs);
    let err = snapshot::restore(
        r.store.clone(),
        dst.path(),
        &pick(Some("nobody".into()), None),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoMatchingSnapshot { .. }), "{err:?}");
    assert!(err.is_not_found());

    // The newest manifest tampered with (here: not a manifest at all): named, passed over.
    let newest = "29990101T000000Z-00000003";
    let at = Path::from(format!("backup/snapshots/{newest}.json"));
    r.store
        .put(&at, b"{\"version\": 1}".to_vec().into())
        .await
        .unwrap();
    let rr = snapshot::restore(r.store.clone(), dst.path(), &pick(here, None), &NoProgress)
        .await
        .unwrap();
    assert_eq!(rr.snapshot_id, elsewhere);
    assert_eq!(rr.skipped_manifests.len(), 1, "{:?}", rr.skipped_manifests);
    assert!(rr.skipped_manifests[0].path.contains(newest));
    let list = snapshot::list_snapshots(r.store.clone(), PREFIX)
        .await
        .unwrap();
    let ids: Vec<_> = list.snapshots.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, [ours.as_str(), theirs, elsewhere]);
    assert_eq!(list.bad.len(), 1);
    assert!(list.bad[0].path.contains(newest), "{:?}", list.bad);
}

// ------------------------------------------------------------------------------------------
// Dry runs and missing snapshots
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing() {
    let r = repo(Backend::Memory).await;
    let src = TempDir::new().unwrap();
    build_tree(src.path(), false);
    let before = raw_names(&r.raw, None).await;
    let opts = BackupOptions {
        dry_run: true,
        ..backup_opts()
    };
    let dry = snapshot::backup(r.store.clone(), src.path(), &opts, &NoProgress)
        .await
        .unwrap();
    assert_eq!(dry.snapshot_id, None);
    assert_eq!(
        (dry.files, dry.uploaded_files, dry.skipped_files),
        (16, 13, 1)
    );
    assert_eq!(raw_names(&r.raw, None).await, before);

    let real = backup(&r.store, src.path()).await;
    assert_eq!(real.uploaded_bytes, dry.uploaded_bytes);
    let after = raw_names(&r.raw, None).await;
    let dry = snapshot::backup(r.store.clone(), src.path(), &opts, &NoProgress)
        .await
        .unwrap();
    assert_eq!((dry.uploaded_files, dry.skipped_files), (0, 14));
    assert_eq!(raw_names(&r.raw, None).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_snapshots_are_not_found() {
    let r = repo(Backend::Memory).await;
    let dst = TempDir::new().unwrap();
    let err = snapshot::restore(
        r.store.clone(),
        dst.path(),
        &restore_opts(None),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoSnapshots { .. }), "{err:?}");
    assert!(err.is_not_found());

    let src = TempDir::new().unwrap();
    write(src.path(), b"f", b"x", 0o644);
    let id = backup(&r.store, src.path()).await.snapshot_id.unwrap();
    for unknown in ["20990101T000000Z-deadbeef", "nope", "2099"] {
        let err = snapshot::restore(
            r.store.clone(),
            dst.path(),
            &restore_opts(Some(unknown)),
            &NoProgress,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::SnapshotNotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(unknown) && msg.contains("encrypt-repo snapshots"),
            "{msg}"
        );
        // The CLI maps the object_store not-found in the chain to exit 3.
        let source = std::error::Error::source(&err).unwrap();
        assert!(matches!(
            source.downcast_ref::<object_store::Error>(),
            Some(object_store::Error::NotFound { .. })
        ));
    }
    // A unique prefix of an id works.
    let rr = restore(&r.store, dst.path(), Some(&id[..20])).await;
    assert_eq!(rr.snapshot_id, id);
}
