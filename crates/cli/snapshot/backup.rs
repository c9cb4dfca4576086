//! `backup`: hash every file, upload the contents the store lacks, write the manifest last.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, PoisonError};

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::config::{self, ContentKey};
use super::manifest::{self, Entry, Instant, Kind, Manifest};
use super::walk::{self, FileJob, mtime};
use super::{
    BackupOptions, BackupReport, Error, Event, Failure, Layout, Progress, ProgressTx, Result,
    UPLOAD_PART_SIZE, UPLOAD_PARTS_IN_FLIGHT, chain, hex,
};

/// Files up to this size are read once, into memory, and uploaded with one `put`.
const SMALL_FILE: u64 = 1 << 20;

/// Read buffer of the streaming passes.
const READ_BUF: usize = 1 << 20;

/// Shared by the file tasks of one backup.
struct Ctx {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    key: ContentKey,
    dry_run: bool,
    /// One lock per content id being stored, so two identical files do not upload it twice
    /// (the second waits, then finds it stored).
    uploading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Dry run: contents already counted as "would upload".
    would_upload: Mutex<HashSet<String>>,
}

/// How one file went.
enum Outcome {
    Stored {
        entry: Entry,
        /// Bytes uploaded, if the content was not stored yet.
        uploaded: Option<u64>,
    },
    Failed(Failure),
    /// The store failed: the backup stops.
    Fatal(Error),
}

/// Backs up the tree at `dir` into `store` under `opts.prefix` and writes a snapshot manifest.
///
/// Symbolic links are recorded, never followed. A file that cannot be read, or changes while
/// being read, is reported in [`BackupReport::failed`] and left out of the manifest; the others
/// go on. With `dry_run`, files are walked and hashed and nothing is written.
///
/// # Errors
/// [`Error::Io`] if `dir` cannot be read; [`Error::Store`] if the store fails (the snapshot is
/// then not written, and a re-run uploads only what is still missing); [`Error::Corrupt`] for a
/// prefix whose config is not this module's; [`Error::InvalidOption`] for a bad prefix.
pub async fn backup(
    store: Arc<dyn ObjectStore>,
    dir: &std::path::Path,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let layout = Layout::new(&opts.prefix)?;
    let started = Instant::now();
    let root = tokio::fs::canonicalize(dir)
        .await
        .map_err(|e| Error::io(dir, e))?;
    let key = if opts.dry_run {
        match config::load(&store, &layout).await? {
            Some(k) => k,
            None => ContentKey::random()?,
        }
    } else {
        config::load_or_create(&store, &layout).await?
    };

    progress.note("scanning");
    let walk_root = root.clone();
    let walked = tokio::task::spawn_blocking(move || walk::walk(&walk_root))
        .await
        .map_err(|e| Error::Internal(format!("walk task: {e}")))??;
    progress.add_total(walked.files.iter().map(|f| f.size).sum());

    let ctx = Arc::new(Ctx {
        store: store.clone(),
        layout: layout.clone(),
        key,
        dry_run: opts.dry_run,
        uploading: Mutex::default(),
        would_upload: Mutex::default(),
    });
    let mut report = BackupReport {
        failed: walked.failed,
        ..BackupReport::default()
    };
    let mut entries = walked.entries;
    run_files(ctx, walked.files, opts.concurrency, progress, |outcome| {
        match outcome {
            Outcome::Stored { entry, uploaded } => {
                match uploaded {
                    Some(n) => {
                        report.uploaded_files += 1;
                        report.uploaded_bytes += n;
                    }
                    None if entry.size > 0 => report.skipped_files += 1,
                    None => {}
                }
                entries.push(entry);
            }
            Outcome::Failed(f) => report.failed.push(f),
            Outcome::Fatal(e) => return Err(e),
        }
        Ok(())
    })
    .await?;

    let id = manifest::new_snapshot_id(&started)?;
    let m = Manifest::new(id, &started, root.to_string_lossy().into_owned(), entries);
    report.files = m.files;
    report.dirs = m.dirs;
    report.symlinks = m.symlinks;
    report.bytes = m.bytes;
    report.failed.sort_by(|a, b| a.path.cmp(&b.path));
    if opts.dry_run {
        return Ok(report);
    }
    progress.note("writing the snapshot manifest");
    let path = layout.snapshot(&m.id);
    let json = serde_json::to_vec(&m)
        .map_err(|e| Error::Internal(format!("serializing the manifest: {e}")))?;
    let put = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&path, PutPayload::from(json), put)
        .await
        .map_err(|e| Error::store("writing", &path, e))?;
    report.snapshot_id = Some(m.id);
    Ok(report)
}

/// Runs `back_up_file` over `files`, `concurrency` at once, forwarding progress and handing
/// each outcome to `done`; the first error `done` returns stops (and aborts) the rest.
async fn run_files(
    ctx: Arc<Ctx>,
    files: Vec<FileJob>,
    concurrency: usize,
    progress: &dyn Progress,
    mut done: impl FnMut(Outcome) -> Result<()>,
) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut set = JoinSet::new();
    let mut queue = files.into_iter();
    loop {
        while set.len() < concurrency.max(1) {
            let Some(job) = queue.next() else { break };
            progress.note(&String::from_utf8_lossy(&job.rel));
            set.spawn(back_up_file(ctx.clone(), job, tx.clone()));
        }
        if set.is_empty() {
            break;
        }
        tokio::select! {
            Some(ev) = rx.recv() => ev.report(progress),
            Some(joined) = set.join_next() => {
                let outcome = joined
                    .unwrap_or_else(|e| Outcome::Fatal(Error::Internal(format!("file task: {e}"))));
                if let Err(e) = done(outcome) {
                    set.shutdown().await;
                    return Err(e);
                }
            }
        }
    }
    while let Ok(ev) = rx.try_recv() {
        ev.report(progress);
    }
    Ok(())
}

fn failed(job: &FileJob, error: impl Into<String>) -> Outcome {
    Outcome::Failed(Failure {
        path: String::from_utf8_lossy(&job.rel).into_owned(),
        error: error.into(),
    })
}

fn changed(before: &Metadata, after: &Metadata, read: u64) -> bool {
    before.len() != after.len()
        || mtime(before) != mtime(after)
        || before.ino() != after.ino()
        || read != after.len()
}

const CHANGED: &str = "changed while being read (size or modification time differ); not backed up";

/// Hashes one file, and uploads it unless its content is stored already.
async fn back_up_file(ctx: Arc<Ctx>, job: FileJob, tx: ProgressTx) -> Outcome {
    let mut file = match tokio::fs::File::open(&job.abs).await {
        Ok(f) => f,
        Err(e) => return failed(&job, format!("opening: {}", chain(&e))),
    };
    let before = match file.metadata().await {
        Ok(m) if m.is_file() => m,
        Ok(_) => return failed(&job, "no longer a regular file; not backed up"),
        Err(e) => return failed(&job, format!("stat: {}", chain(&e))),
    };
    let size = before.len();
    // Small files are read once and kept for the upload; larger ones are read twice, streaming.
    let (tag, read, small) = match hash(&ctx.key, &mut file, size, &tx).await {
        Ok(h) => h,
        Err(e) => return failed(&job, format!("reading: {}", chain(&e))),
    };
    let after = match file.metadata().await {
        Ok(m) => m,
        Err(e) => return failed(&job, format!("stat: {}", chain(&e))),
    };
    if changed(&before, &after, read) {
        return failed(&job, CHANGED);
    }
    let mut entry = Entry::new(&job.rel, Kind::File, after.mode(), mtime(&after));
    entry.size = size;
    if size == 0 {
        return Outcome::Stored {
            entry,
            uploaded: None,
        };
    }
    let id = hex(&tag);
    entry.content = Some(id.clone());

    let lock = {
        let mut map = ctx.uploading.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(id.clone()).or_default().clone()
    };
    let _guard = lock.lock().await;
    let location = ctx.layout.data(&id);
    match stored(&ctx.store, &location, size).await {
        Ok(true) => {
            return Outcome::Stored {
                entry,
                uploaded: None,
            };
        }
        // Missing, of another size, or damaged: store it (again).
        Ok(false) => {}
        Err(e) => return Outcome::Fatal(Error::store("checking", &location, e)),
    }
    if ctx.dry_run {
        let first = ctx
            .would_upload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        return Outcome::Stored {
            entry,
            uploaded: first.then_some(size),
        };
    }
    let _ = tx.send(Event::Total(size)); // the upload reads it all again
    let upload = match small {
        Some(bytes) => ctx
            .store
            .put(&location, PutPayload::from(bytes))
            .await
            .map(|_| {
                let _ = tx.send(Event::Done(size));
                Ok(())
            }),
        None => upload_streaming(&ctx, &location, &mut file, &tag, &before, &tx).await,
    };
    match upload {
        Ok(Ok(())) => Outcome::Stored {
            entry,
            uploaded: Some(size),
        },
        Ok(Err(why)) => failed(&job, why),
        Err(e) => Outcome::Fatal(Error::store("uploading", &location, e)),
    }
}

/// Whether the content object at `location` is stored, `size` bytes long and sound as far as
/// one ranged read shows: its last byte is read, which authenticates the header (key
/// commitment, repository and path binding, data key) and the final chunk, so a truncated,
/// swapped or overwritten object is uploaded again instead of being counted as stored. (A
/// file up to one chunk is read whole; damage inside an earlier chunk of a larger file is
/// found by `verify`, and the object removed with `rm` is uploaded by the next backup.)
///
/// # Errors
/// The store's error when it refuses every object (locked, key provider failing) or cannot be
/// reached; an error about this object only means "not stored".
async fn stored(
    store: &Arc<dyn ObjectStore>,
    location: &object_store::path::Path,
    size: u64,
) -> object_store::Result<bool> {
    let about_this_object = |e: &object_store::Error| {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cur {
            if let Some(s) = c.downcast_ref::<crate::store::Error>() {
                return !matches!(
                    s,
                    crate::store::Error::Locked { .. }
                        | crate::store::Error::Keys(_)
                        | crate::store::Error::Store(_)
                );
            }
            cur = c.source();
        }
        false
    };
    let meta = match store.head(location).await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) if about_this_object(&e) => return Ok(false),
        Err(e) => return Err(e),
    };
    if meta.size != size {
        return Ok(false);
    }
    let last = match store.get_range(location, size - 1..size).await {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) if about_this_object(&e) => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(last.len() == 1)
}

/// The keyed hash of `file`, the bytes read and, for a small file, its bytes.
async fn hash(
    key: &ContentKey,
    file: &mut tokio::fs::File,
    size: u64,
    tx: &ProgressTx,
) -> std::io::Result<([u8; 32], u64, Option<Vec<u8>>)> {
    let mut h = key.hasher();
    if size <= SMALL_FILE {
        let mut all = Vec::with_capacity(size as usize);
        // One byte more than expected shows a file that grew.
        (&mut *file)
            .take(SMALL_FILE + 1)
            .read_to_end(&mut all)
            .await?;
        h.update(&all);
        let _ = tx.send(Event::Done(all.len() as u64));
        return Ok((tag(h), all.len() as u64, Some(all)));
    }
    let mut buf = vec![0u8; READ_BUF];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        read += n as u64;
        let _ = tx.send(Event::Done(n as u64));
    }
    Ok((tag(h), read, None))
}

fn tag(h: aws_lc_rs::hmac::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(h.sign().as_ref());
    out
}

/// Streams `file` again into a multipart upload, hashing it on the way. `Ok(Err(why))`: the
/// file changed since it was hashed (the upload is aborted, nothing is stored).
async fn upload_streaming(
    ctx: &Ctx,
    location: &object_store::path::Path,
    file: &mut tokio::fs::File,
    expected: &[u8; 32],
    before: &Metadata,
    tx: &ProgressTx,
) -> object_store::Result<Result<(), String>> {
    if let Err(e) = file.seek(std::io::SeekFrom::Start(0)).await {
        return Ok(Err(format!("reading: {}", chain(&e))));
    }
    let upload = ctx.store.put_multipart(location).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_SIZE);
    let mut h = ctx.key.hasher();
    let mut buf = vec![0u8; READ_BUF];
    let mut read = 0u64;
    let problem = loop {
        let n = match file.read(&mut buf).await {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) => break Some(format!("reading: {}", chain(&e))),
        };
        h.update(&buf[..n]);
        read += n as u64;
        if let Err(e) = writer.wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.write(&buf[..n]);
        let _ = tx.send(Event::Done(n as u64));
    };
    let unchanged = match file.metadata().await {
        Ok(after) => !changed(before, &after, read) && tag(h) == *expected,
        Err(_) => false,
    };
    if problem.is_some() || !unchanged {
        let _ = writer.abort().await;
        return Ok(Err(problem.unwrap_or_else(|| CHANGED.into())));
    }
    writer.finish().await?;
    Ok(Ok(()))
}
