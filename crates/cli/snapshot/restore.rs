//! `restore` and `list_snapshots`.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use filetime::FileTime;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::config::{self, ContentKey};
use super::manifest::{Entry, Kind, Manifest, is_snapshot_id};
use super::{
    Error, Event, Failure, Layout, Progress, ProgressTx, RestoreOptions, RestoreReport, Result,
    SnapshotInfo, SnapshotList, chain, hex,
};

/// Name prefix of the temporary files and links a restore creates beside their targets.
const TEMP_PREFIX: &str = ".encrypt-repo-restore-";

/// Restores a snapshot (the latest unless `opts.snapshot` names one) into `dir`, creating it.
///
/// Each file is downloaded into a temporary file in its directory and renamed into place only
/// once the store authenticated the whole object and its keyed hash matched the manifest, so
/// a failed file leaves nothing behind. Modes and mtimes are set on files, symlinks (mtime)
/// and directories (last, deepest first). Manifest paths that are absolute, contain `..`, or
/// would pass through a symlink or a file are refused. A file that fails is reported in
/// [`RestoreReport::failed`]; the others still restore.
///
/// # Errors
/// [`Error::SnapshotNotFound`] / [`Error::NoSnapshots`] when there is nothing to restore;
/// [`Error::Store`] when the manifest cannot be read (a wrong key or a locked repository fails
/// here, before any file) or the repository refuses every object (locked, key provider
/// failing) part-way; [`Error::Corrupt`] for a malformed manifest; [`Error::Io`] if `dir`
/// cannot be created.
pub async fn restore(
    store: Arc<dyn ObjectStore>,
    dir: &std::path::Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let started = std::time::SystemTime::now();
    let layout = Layout::new(&opts.prefix)?;
    let key = match config::load(&store, &layout).await? {
        Some(k) => k,
        None => return Err(no_snapshots(&layout)),
    };
    let mut skipped_manifests = Vec::new();
    let manifest = match &opts.snapshot {
        Some(id) => find(&store, &layout, id).await?,
        None => {
            let filter = Filter {
                host: opts.host.as_deref(),
                source: opts.source.as_deref(),
            };
            latest(&store, &layout, &filter, &mut skipped_manifests).await?
        }
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io(dir, e))?;
    let root = tokio::fs::canonicalize(dir)
        .await
        .map_err(|e| Error::io(dir, e))?;
    let mut report = RestoreReport {
        snapshot_id: manifest.id.clone(),
        skipped_manifests,
        ..RestoreReport::default()
    };

    // Validate every path first: a bad entry fails alone.
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    let mut links = Vec::new();
    for e in manifest.entries {
        match e.safe_components() {
            Ok(parts) => match e.kind {
                Kind::Dir => dirs.push((parts, e)),
                Kind::File => files.push((parts, e)),
                Kind::Symlink => links.push((parts, e)),
            },
            Err(why) => report.failed.push(failure(&e, why)),
        }
    }

    progress.note("creating directories");
    let (dirs, failed) = blocking({
        let root = root.clone();
        move || create_dirs(&root, dirs)
    })
    .await?;
    report.failed.extend(failed);

    progress.note("removing what an interrupted restore left");
    let scan: Vec<PathBuf> = std::iter::once(root.clone())
        .chain(dirs.iter().map(|(parts, _)| join(&root, parts)))
        .collect();
    report.removed_leftovers = blocking(move || remove_leftovers(&scan, started)).await?;

    progress.add_total(files.iter().map(|(_, e)| e.size).sum());
    let ctx = Arc::new(Ctx {
        store,
        layout,
        key,
        root: root.clone(),
    });
    run_files(ctx, files, opts.concurrency, progress, &mut report).await?;

    progress.note("creating symbolic links");
    let (n, failed) = blocking({
        let root = root.clone();
        move || create_links(&root, links)
    })
    .await?;
    report.symlinks = n;
    report.failed.extend(failed);

    progress.note("setting directory modes and times");
    let (n, failed) = blocking(move || finish_dirs(&root, dirs)).await?;
    report.dirs = n;
    report.failed.extend(failed);
    report.failed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

/// Every snapshot under `prefix`, oldest first, and the manifests that could not be read.
///
/// One tampered or malformed manifest is named in [`SnapshotList::bad`] and never hides the
/// others.
///
/// # Errors
/// [`Error::Store`] if listing fails, the repository refuses every object (locked, its key
/// provider failing), or not one manifest can be read (a wrong key fails here);
/// [`Error::Corrupt`] when the only manifests are malformed.
pub async fn list_snapshots(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<SnapshotList> {
    let layout = Layout::new(prefix)?;
    let mut out = Vec::new();
    let mut bad = Unreadable::default();
    for id in snapshot_ids(&store, &layout).await? {
        match read_manifest(&store, &layout, &id).await {
            Ok(m) => out.push((
                (m.time_unix, m.time_nsec),
                SnapshotInfo {
                    id: m.id,
                    time: m.time,
                    source: m.source,
                    host: m.host,
                    files: m.files,
                    bytes: m.bytes,
                },
            )),
            Err(e) => bad.add(&layout, &id, e)?,
        }
    }
    if out.is_empty()
        && let Some(e) = bad.first
    {
        return Err(e);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    Ok(SnapshotList {
        snapshots: out.into_iter().map(|(_, i)| i).collect(),
        bad: bad.named,
    })
}

/// Manifests that could not be read: each named, and the first error kept for when there is
/// nothing else to show.
#[derive(Default)]
struct Unreadable {
    named: Vec<Failure>,
    first: Option<Error>,
}

impl Unreadable {
    /// Records `e` for manifest `id`; an error that says the repository refuses every object
    /// (locked, key provider failing) is returned instead, as it would fail every manifest.
    fn add(&mut self, layout: &Layout, id: &str, e: Error) -> Result<()> {
        if let Error::Store { source, .. } = &e
            && refuses_everything(source)
        {
            return Err(e);
        }
        self.named.push(Failure {
            path: layout.snapshot(id).to_string(),
            error: chain(&e),
        });
        self.first.get_or_insert(e);
        Ok(())
    }
}

fn no_snapshots(layout: &Layout) -> Error {
    Error::NoSnapshots {
        prefix: layout.prefix.to_string(),
        source: object_store::Error::NotFound {
            path: layout.snapshots().to_string(),
            source: "no snapshot manifests".into(),
        },
    }
}

/// Ids of the manifests under the prefix, sorted (that is, by time to the second).
async fn snapshot_ids(store: &Arc<dyn ObjectStore>, layout: &Layout) -> Result<Vec<String>> {
    let dir = layout.snapshots();
    let metas: Vec<_> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| Error::store("listing", &dir, e))?;
    let mut ids: Vec<String> = metas
        .iter()
        .filter_map(|m| {
            m.location
                .filename()?
                .strip_suffix(".json")
                .map(str::to_owned)
        })
        .filter(|id| is_snapshot_id(id))
        .collect();
    ids.sort();
    Ok(ids)
}

async fn read_manifest(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    id: &str,
) -> Result<Manifest> {
    let path = layout.snapshot(id);
    let got = match store.get(&path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    let bytes = got.map_err(|e| match e {
        object_store::Error::NotFound { .. } => Error::SnapshotNotFound {
            id: id.to_owned(),
            prefix: layout.prefix.to_string(),
            source: e,
        },
        e => Error::store("reading", &path, e),
    })?;
    let m = Manifest::parse(&path, &bytes)?;
    if m.id != id {
        return Err(Error::corrupt(&path, format!("holds snapshot {}", m.id)));
    }
    Ok(m)
}

/// Which snapshots "the latest" is chosen among.
#[derive(Debug)]
struct Filter<'a> {
    host: Option<&'a str>,
    source: Option<&'a str>,
}

impl Filter<'_> {
    fn matches(&self, m: &Manifest) -> bool {
        self.host.is_none_or(|h| m.host == h) && self.source.is_none_or(|s| m.source == s)
    }

    fn describe(&self) -> String {
        match (self.host, self.source) {
            (Some(h), Some(s)) => format!("of host {h} and directory {s}"),
            (Some(h), None) => format!("of host {h}"),
            (None, Some(s)) => format!("of directory {s}"),
            (None, None) => "at all".into(),
        }
    }
}

/// The latest snapshot `filter` accepts: manifests are read newest first (by name, that is to
/// the second; within a second by the time inside) until one matches. A manifest that cannot be
/// read is recorded in `skipped` and passed over, unless none at all can be read.
async fn latest(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    filter: &Filter<'_>,
    skipped: &mut Vec<Failure>,
) -> Result<Manifest> {
    let ids = snapshot_ids(store, layout).await?;
    if ids.is_empty() {
        return Err(no_snapshots(layout));
    }
    let mut best: Option<Manifest> = None;
    let mut readable = false;
    let mut bad = Unreadable::default();
    for id in ids.iter().rev() {
        if best.as_ref().is_some_and(|b| id[..16] < b.id[..16]) {
            break; // an earlier second than the match: nothing newer can follow
        }
        let m = match read_manifest(store, layout, id).await {
            Ok(m) => m,
            Err(e) => {
                bad.add(layout, id, e)?;
                continue;
            }
        };
        readable = true;
        let newer = best
            .as_ref()
            .is_none_or(|b| (m.time_unix, m.time_nsec, &m.id) > (b.time_unix, b.time_nsec, &b.id));
        if filter.matches(&m) && newer {
            best = Some(m);
        }
    }
    *skipped = bad.named;
    match (best, bad.first) {
        (Some(m), _) => Ok(m),
        (None, Some(e)) if !readable => Err(e),
        (None, _) => Err(Error::NoMatchingSnapshot {
            what: filter.describe(),
            prefix: layout.prefix.to_string(),
            source: object_store::Error::NotFound {
                path: layout.snapshots().to_string(),
                source: "no snapshot matches".into(),
            },
        }),
    }
}

/// The snapshot `id` names: an id, or a prefix of exactly one.
async fn find(store: &Arc<dyn ObjectStore>, layout: &Layout, id: &str) -> Result<Manifest> {
    if is_snapshot_id(id) {
        return read_manifest(store, layout, id).await;
    }
    let not_found = || Error::SnapshotNotFound {
        id: id.to_owned(),
        prefix: layout.prefix.to_string(),
        source: object_store::Error::NotFound {
            path: layout.snapshots().to_string(),
            source: "no snapshot with this id".into(),
        },
    };
    if id.is_empty() {
        return Err(not_found());
    }
    let matches: Vec<String> = snapshot_ids(store, layout)
        .await?
        .into_iter()
        .filter(|s| s.starts_with(id))
        .collect();
    match matches.as_slice() {
        [] => Err(not_found()),
        [one] => read_manifest(store, layout, one).await,
        many => Err(Error::AmbiguousSnapshot {
            id: id.to_owned(),
            matches: many.join(", "),
        }),
    }
}

fn failure(e: &Entry, error: impl Into<String>) -> Failure {
    Failure {
        path: e.path.clone(),
        error: error.into(),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task: {e}")))
}

fn join(root: &FsPath, parts: &[Vec<u8>]) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(OsStr::from_bytes(part));
    }
    p
}

/// `root/parts…`, each component a real directory (created if missing): a symlink or a file
/// in the way is refused, so nothing is ever written outside `root`.
fn ensure_dir(root: &FsPath, parts: &[Vec<u8>]) -> Result<PathBuf, String> {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(OsStr::from_bytes(part));
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(format!(
                    "{} exists and is not a directory (a file or a symlink); refused",
                    p.display()
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {}", p.display(), chain(&e))),
        }
        match std::fs::create_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists && p.is_dir() => {}
            Err(e) => return Err(format!("creating {}: {}", p.display(), chain(&e))),
        }
    }
    Ok(p)
}

type Dirs = Vec<(Vec<Vec<u8>>, Entry)>;

/// Creates every directory (parents first); returns those created and the failures.
fn create_dirs(root: &FsPath, mut dirs: Dirs) -> (Dirs, Vec<Failure>) {
    dirs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut failed = Vec::new();
    dirs.retain(|(parts, e)| match ensure_dir(root, parts) {
        Ok(_) => true,
        Err(why) => {
            failed.push(failure(e, why));
            false
        }
    });
    (dirs, failed)
}

/// Sets the directories' modes and mtimes, deepest first, so nothing written afterwards
/// changes an mtime already set.
fn finish_dirs(root: &FsPath, mut dirs: Dirs) -> (u64, Vec<Failure>) {
    dirs.sort_by(|a, b| b.0.cmp(&a.0));
    let mut failed = Vec::new();
    let mut n = 0;
    for (parts, e) in &dirs {
        let p = join(root, parts);
        let set = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(e.mode))
            .and_then(|()| filetime::set_file_mtime(&p, mtime(e)));
        match set {
            Ok(()) => n += 1,
            Err(err) => failed.push(failure(
                e,
                format!("setting mode and mtime: {}", chain(&err)),
            )),
        }
    }
    (n, failed)
}

fn mtime(e: &Entry) -> FileTime {
    FileTime::from_unix_time(e.mtime, e.mtime_nsec.min(999_999_999))
}

/// Removes the files named like this module's temporary files from `dirs` (not recursively)
/// whose inode changed before `started` (status change time: a restore sets the temporary
/// file's mtime to the entry's before renaming it, so the mtime says nothing): what an earlier
/// restore left when it was killed. Two restores into one directory at once are not supported.
fn remove_leftovers(dirs: &[PathBuf], started: std::time::SystemTime) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(since) = started.duration_since(std::time::UNIX_EPOCH) else {
        return 0;
    };
    let limit = (since.as_secs() as i64, i64::from(since.subsec_nanos()));
    let mut removed = 0;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry
                .file_name()
                .as_bytes()
                .starts_with(TEMP_PREFIX.as_bytes())
            {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let old = (meta.ctime(), meta.ctime_nsec()) < limit;
            if old && !meta.is_dir() && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// Creates every symlink (after all files, so no restored file is written through one).
fn create_links(root: &FsPath, links: Dirs) -> (u64, Vec<Failure>) {
    let mut failed = Vec::new();
    let mut n = 0;
    for (parts, e) in &links {
        match create_link(root, parts, e) {
            Ok(()) => n += 1,
            Err(why) => failed.push(failure(e, why)),
        }
    }
    (n, failed)
}

fn create_link(root: &FsPath, parts: &[Vec<u8>], e: &Entry) -> Result<(), String> {
    let target = e.raw_target().ok_or("symlink without a valid target_hex")?;
    let (name, parents) = parts.split_last().ok_or("empty path")?;
    let dir = ensure_dir(root, parents)?;
    let mut r = [0u8; 8];
    aws_lc_rs::rand::fill(&mut r).map_err(|_| "the system random generator failed")?;
    let tmp = dir.join(format!("{TEMP_PREFIX}{}", hex(&r)));
    std::os::unix::fs::symlink(OsStr::from_bytes(&target), &tmp)
        .map_err(|err| format!("creating the link: {}", chain(&err)))?;
    let dest = dir.join(OsStr::from_bytes(name));
    let placed = std::fs::rename(&tmp, &dest)
        .map_err(|err| format!("moving the link into place: {}", chain(&err)))
        .and_then(|()| {
            filetime::set_symlink_file_times(&dest, FileTime::now(), mtime(e))
                .map_err(|err| format!("setting the link's mtime: {}", chain(&err)))
        });
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed
}

/// Shared by the file tasks of one restore.
struct Ctx {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    key: ContentKey,
    root: PathBuf,
}

enum Outcome {
    Restored(u64),
    Failed(Failure),
    /// The repository refuses every object: the restore stops.
    Fatal(Error),
}

async fn run_files(
    ctx: Arc<Ctx>,
    files: Dirs,
    concurrency: usize,
    progress: &dyn Progress,
    report: &mut RestoreReport,
) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut set = JoinSet::new();
    let mut queue = files.into_iter();
    loop {
        while set.len() < concurrency.max(1) {
            let Some((parts, entry)) = queue.next() else {
                break;
            };
            progress.note(&entry.path);
            set.spawn(restore_file(ctx.clone(), parts, entry, tx.clone()));
        }
        if set.is_empty() {
            break;
        }
        tokio::select! {
            Some(ev) = rx.recv() => ev.report(progress),
            Some(joined) = set.join_next() => {
                match joined.unwrap_or_else(|e| Outcome::Fatal(Error::Internal(format!("file task: {e}")))) {
                    Outcome::Restored(n) => {
                        report.files += 1;
                        report.bytes += n;
                    }
                    Outcome::Failed(f) => report.failed.push(f),
                    Outcome::Fatal(e) => {
                        set.shutdown().await;
                        return Err(e);
                    }
                }
            }
        }
    }
    while let Ok(ev) = rx.try_recv() {
        ev.report(progress);
    }
    Ok(())
}

/// Whether `e` means the repository refuses every object (locked, or its key provider
/// failing), rather than something wrong with this one object.
fn refuses_everything(e: &object_store::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(s) = c.downcast_ref::<crate::store::Error>() {
            return matches!(
                s,
                crate::store::Error::Locked { .. } | crate::store::Error::Keys(_)
            );
        }
        cur = c.source();
    }
    false
}

async fn restore_file(ctx: Arc<Ctx>, parts: Vec<Vec<u8>>, entry: Entry, tx: ProgressTx) -> Outcome {
    match restore_file_inner(&ctx, parts, &entry, &tx).await {
        Ok(()) => Outcome::Restored(entry.size),
        Err(Fail::File(why)) => Outcome::Failed(failure(&entry, why)),
        Err(Fail::Fatal(e)) => Outcome::Fatal(e),
    }
}

enum Fail {
    File(String),
    Fatal(Error),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Self::File(s)
    }
}

async fn restore_file_inner(
    ctx: &Ctx,
    parts: Vec<Vec<u8>>,
    entry: &Entry,
    tx: &ProgressTx,
) -> Result<(), Fail> {
    let content = match (&entry.content, entry.size) {
        (_, 0) => None,
        (Some(c), _) => Some(c.clone()),
        (None, _) => return Err("a non-empty file without a content id".to_owned().into()),
    };
    let root = ctx.root.clone();
    let (temp, dest) = tokio::task::spawn_blocking(move || {
        let (name, parents) = parts.split_last().ok_or("empty path")?;
        let dir = ensure_dir(&root, parents)?;
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&dir)
            .map_err(|e| {
                format!(
                    "creating a temporary file in {}: {}",
                    dir.display(),
                    chain(&e)
                )
            })?;
        Ok::<_, String>((temp, dir.join(OsStr::from_bytes(name))))
    })
    .await
    .map_err(|e| Fail::Fatal(Error::Internal(format!("blocking task: {e}"))))??;

    if let Some(id) = content {
        download(ctx, &id, entry.size, &temp, tx).await?;
    }

    // Mode after the content (writing clears setuid), mtime last, then into place.
    let (mode, mtime) = (entry.mode, mtime(entry));
    tokio::task::spawn_blocking(move || {
        let f = temp.as_file();
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("setting the mode: {}", chain(&e)))?;
        filetime::set_file_handle_times(f, None, Some(mtime))
            .map_err(|e| format!("setting the mtime: {}", chain(&e)))?;
        temp.persist(&dest)
            .map_err(|e| format!("moving into place: {}", chain(&e.error)))?;
        Ok::<_, String>(())
    })
    .await
    .map_err(|e| Fail::Fatal(Error::Internal(format!("blocking task: {e}"))))??;
    Ok(())
}

/// Streams `data/<id>` into `temp`, checking its length and keyed hash against the manifest.
async fn download(
    ctx: &Ctx,
    id: &str,
    size: u64,
    temp: &tempfile::NamedTempFile,
    tx: &ProgressTx,
) -> Result<(), Fail> {
    let location: Path = ctx.layout.data(id);
    let store_failed = |e: object_store::Error| {
        if refuses_everything(&e) {
            Fail::Fatal(Error::store("reading", &location, e))
        } else {
            let what = match e {
                object_store::Error::NotFound { .. } => "missing from the repository",
                _ => "could not be read",
            };
            Fail::File(format!("content {location} {what}: {}", chain(&e)))
        }
    };
    let mut stream = ctx
        .store
        .get(&location)
        .await
        .map_err(store_failed)?
        .into_stream();
    let std_file = temp
        .as_file()
        .try_clone()
        .map_err(|e| format!("opening the temporary file: {}", chain(&e)))?;
    let mut out = tokio::fs::File::from_std(std_file);
    let mut h = ctx.key.hasher();
    let mut got = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(store_failed)?;
        got += piece.len() as u64;
        if got > size {
            return Err(format!("content {location} is longer than the manifest says").into());
        }
        h.update(&piece);
        out.write_all(&piece)
            .await
            .map_err(|e| format!("writing: {}", chain(&e)))?;
        let _ = tx.send(Event::Done(piece.len() as u64));
    }
    out.flush()
        .await
        .map_err(|e| format!("writing: {}", chain(&e)))?;
    if got != size {
        return Err(format!("content {location} has {got} bytes, the manifest says {size}").into());
    }
    if hex(h.sign().as_ref()) != id {
        return Err(format!("content {location} does not match its id").into());
    }
    Ok(())
}
