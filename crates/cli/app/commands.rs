//! One function per command. Each returns the human summary and the JSON summary; errors go up
//! as `anyhow::Error` with context naming what was being done.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use encrypt_repo::format::DataKeyId;
use encrypt_repo::keys::Settings;
use encrypt_repo::store::{
    BufferPool, CryptoSettings, EncryptedStore, RegistrationRequest, Repository, Shred,
};
use futures::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart,
};
use serde_json::{Value, json};

use crate::app::args;
use crate::app::exit::{KeyUnavailable, Partial, Usage, render};
use crate::app::listing;
use crate::app::open::{self, Backend, NotFound};
use crate::app::output::{Output, human_bytes};
use crate::app::source::SourceFile;

/// Plaintext read from a file or stdin per upload piece.
pub(crate) const PIECE: usize = 4 << 20;
/// Part uploads in flight per object on an object store (`put --parts-in-flight`).
pub(crate) const PARTS_IN_FLIGHT: usize = 4;
/// The same on a local directory, whose writes to one file are serialised.
const LOCAL_PARTS_IN_FLIGHT: usize = 2;
/// Pieces a reader (put) or writer (get) thread runs ahead of or behind the transfer.
const READ_AHEAD: usize = 2;

type Done = (String, Value);

/// Idle read buffers kept by put's pool: the pieces read ahead, being read and being sealed,
/// and the one whose last chunk the upload holds (by reference) until it knows whether that
/// chunk ends the object.
const KEEP_READ_BUFFERS: usize = READ_AHEAD + 3;

/// The repository's own records live under this prefix; no command reads or writes it as an
/// object.
const RESERVED: &str = ".encrypt-repo";

/// The longest object name S3, Azure Blob and GCS all accept (bytes).
const MAX_NAME: usize = 1024;

fn object_path(name: &str) -> Result<ObjectPath> {
    let path =
        ObjectPath::parse(name).map_err(|e| Usage(format!("invalid object name {name:?}: {e}")))?;
    if path.parts().next().is_some_and(|p| p.as_ref() == RESERVED) {
        bail!(Usage(format!(
            "{name:?} is inside the reserved prefix {RESERVED}/ (the repository's own records)"
        )));
    }
    // Refused on every backend, so that any repository can be copied to a local one.
    if path
        .filename()
        .is_some_and(crate::app::staging::is_staging_name)
    {
        bail!(Usage(format!(
            "object name {name:?} cannot be stored: a name ending in #<digits> is the form of \
             a local repository's staging files"
        )));
    }
    if path.as_ref().len() > MAX_NAME {
        bail!(Usage(format!(
            "object name of {} bytes cannot be stored: object stores accept at most {MAX_NAME}",
            path.as_ref().len()
        )));
    }
    Ok(path)
}

/// `e` as a usage error naming `name` when the backend refused the name itself (a segment
/// longer than the file system allows); otherwise `e` unchanged.
fn unstorable_name(e: anyhow::Error, name: &str) -> anyhow::Error {
    let refused = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidFilename)
    });
    if refused {
        anyhow::Error::new(Usage(format!(
            "object name {name:?} cannot be stored by this repository's backend (a part \
             between slashes is longer than its file system allows): {}",
            render(&e)
        )))
    } else {
        e
    }
}

fn settings(pairs: &[(String, String)]) -> Settings {
    pairs.iter().cloned().collect()
}

pub(crate) async fn init(a: &args::Init, g: &args::Global, out: &Output) -> Result<Done> {
    let location = open::locate(&a.repo.repo, &g.store_options, true)?;
    let crypto_settings = match (&a.key_provider, a.no_encryption) {
        (_, true) => None,
        (Some(t), false) => Some(CryptoSettings {
            key_provider_name: a.key_provider_name.clone().unwrap_or_else(|| t.clone()),
            key_provider_type: t.clone(),
            settings: settings(&g.key_settings),
        }),
        (None, false) => bail!(Usage(
            "--key-provider is required unless --no-encryption".into()
        )),
    };
    let mut escrow_settings = open::escrow_settings(&g.escrow_settings)?;
    let mut escrow = Vec::new();
    for spec in &a.escrow_providers {
        let (t, name) = spec
            .split_once(':')
            .ok_or_else(|| Usage(format!("--escrow-provider {spec:?}: expected TYPE:NAME")))?;
        escrow.push(CryptoSettings {
            key_provider_name: name.to_owned(),
            key_provider_type: t.to_owned(),
            settings: escrow_settings.remove(name).unwrap_or_default(),
        });
    }
    let request = RegistrationRequest {
        store_type: location.store_type.to_owned(),
        settings: location.settings.clone(),
        encrypted: !a.no_encryption,
        crypto_settings,
        chunk_size: a.chunk_size,
        escrow,
        path_binding: a.no_path_binding.then_some(false),
    };
    let registered = Repository::register(
        location.backend.clone(),
        request,
        &encrypt_repo::provider_registry(),
        open::repository_options(g)?,
    )
    .await
    .with_context(|| format!("registering repository {}", a.repo.repo))?;
    let repo = &registered.repository;
    let warning = registered.created_key_material.then(|| {
        let file = g
            .key_settings
            .iter()
            .find(|(k, _)| k == "key_file")
            .map_or_else(|| "the key".to_owned(), |(_, v)| v.clone());
        format!(
            "created a new master key in {file}: BACK IT UP NOW. Without it nothing in this \
             repository can ever be decrypted."
        )
    });
    if let Some(w) = &warning {
        out.warn(w);
    }
    let id = repo.id().to_hex();
    let human = if registered.newly_registered {
        format!("registered repository {id}")
    } else {
        format!("repository {id} was already registered with these settings")
    };
    Ok((
        human,
        json!({
            "repository_id": id,
            "newly_registered": registered.newly_registered,
            "created_key_material": registered.created_key_material,
            "warning": warning,
            "encrypted": repo.is_encrypted(),
        }),
    ))
}

pub(crate) async fn info(a: &args::Repo, g: &args::Global) -> Result<Done> {
    let (_, repo) = open::open(&a.repo, g).await?;
    let reg = repo.registration();
    let keys = if repo.is_encrypted() {
        repo.data_keys().await?
    } else {
        Vec::new()
    };
    let status = repo.check_key_status().await;
    let status_json = match &status {
        Ok(s) => serde_json::to_value(s)?,
        Err(e) => json!({"state": "unknown", "error": e.to_string()}),
    };
    let mut human = format!(
        "repository {}\n  type: {}\n  encrypted: {}\n  chunk size: {}\n  path binding: {}\n",
        repo.id().to_hex(),
        reg.request.store_type,
        repo.is_encrypted(),
        human_bytes(repo.chunk_size().bytes() as u64),
        repo.path_binding(),
    );
    if let Some(c) = &reg.request.crypto_settings {
        human += &format!(
            "  key provider: {} ({})\n  key status: {}\n",
            c.key_provider_name,
            c.key_provider_type,
            match &status {
                Ok(s) => format!("{s:?}"),
                Err(e) => format!("unknown: {e:#}"),
            }
        );
    }
    for e in &reg.request.escrow {
        human += &format!(
            "  escrow provider: {} ({})\n",
            e.key_provider_name, e.key_provider_type
        );
    }
    human += &format!(
        "  data keys: {} ({} shredded)\n  locked: {}\n",
        keys.len(),
        keys.iter().filter(|k| k.shredded_unix.is_some()).count(),
        repo.lock_reason().unwrap_or_else(|| "no".into())
    );
    Ok((
        human,
        json!({
            "repository_id": repo.id().to_hex(),
            "registration": reg,
            "key_status": status_json,
            "data_keys": keys,
            "locked": repo.lock_reason(),
        }),
    ))
}

pub(crate) async fn put(a: &args::Put, g: &args::Global, out: &Output) -> Result<Done> {
    let (repo, store) = open::open_store(&a.repo.repo, g).await?;
    let in_flight = match a.parts_in_flight {
        Some(n) => usize::from(n),
        None if repo.registration().request.store_type == "fs" => LOCAL_PARTS_IN_FLIGHT,
        None => PARTS_IN_FLIGHT,
    };
    let path = object_path(&a.object)?;
    let (mut input, total, source): (Box<dyn std::io::Read + Send>, Option<u64>, String) =
        match a.file.as_deref() {
            None => (Box::new(std::io::stdin()), None, "standard input".into()),
            Some(p) if p.as_os_str() == "-" => {
                (Box::new(std::io::stdin()), None, "standard input".into())
            }
            Some(p) => {
                // Checked at the end: a file that changed while being read is not stored.
                let f = SourceFile::open(p)
                    .map_err(|e| anyhow::Error::new(NotFound(format!("{}: {e}", p.display()))))?;
                let len = Some(f.len());
                (Box::new(f), len, p.display().to_string())
            }
        };
    let progress = out.progress(total, &a.object);
    let mut uploaded = 0u64;
    // Reading is blocking (a file or a pipe): a thread reads up to READ_AHEAD pieces ahead, so
    // reading overlaps sealing (which runs in `put`, on the rayon pool) and writing.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    let pool = BufferPool::new(KEEP_READ_BUFFERS);
    let reader = tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = pool.take(PIECE);
            let mut filled = 0;
            while filled < PIECE {
                match input.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        drop(tx.blocking_send(Err(e)));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            if tx.blocking_send(Ok(pool.bytes(buf, filled))).is_err() {
                return; // the upload stopped
            }
        }
    });
    let result = async {
        let upload = store.put_multipart(&path).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PIECE);
        while let Some(piece) = rx.recv().await {
            let buf = match piece {
                Ok(b) => b,
                Err(e) => {
                    w.abort().await.ok();
                    return Err(anyhow::Error::new(e).context(format!("reading {source}")));
                }
            };
            uploaded += buf.len() as u64;
            progress.advance(buf.len() as u64);
            w.wait_for_capacity(in_flight).await?;
            w.put(buf);
        }
        w.finish().await?;
        anyhow::Ok(())
    }
    .await;
    drop(rx);
    reader.await.ok();
    progress.finish();
    result
        .map_err(|e| unstorable_name(e, &a.object))
        .with_context(|| format!("uploading {source} to {}", a.object))?;
    Ok((
        format!("{} → {} ({})", source, a.object, human_bytes(uploaded)),
        json!({"object": a.object, "bytes": uploaded}),
    ))
}

/// `START-END` (inclusive), `START-` or `-N`.
pub(crate) fn parse_range(s: &str) -> Result<GetRange> {
    let bad = || {
        Usage(format!(
            "--range {s:?}: expected START-END, START- or -N (bytes)"
        ))
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let num = |t: &str| t.trim().parse::<u64>().map_err(|_| bad());
    Ok(match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, false) => {
            let (start, end) = (num(a)?, num(b)?);
            if end < start {
                bail!(bad());
            }
            GetRange::Bounded(start..end.checked_add(1).ok_or_else(bad)?)
        }
        (false, true) => GetRange::Offset(num(a)?),
        (true, false) => GetRange::Suffix(num(b)?),
        (true, true) => bail!(bad()),
    })
}

/// Refuses a range that starts at or past the end of the object, naming plaintext offsets
/// (the backend, asked for the covering ciphertext, would name its own).
async fn check_range(
    store: &open::Store,
    path: &ObjectPath,
    range: &GetRange,
    text: &str,
) -> Result<()> {
    let start = match range {
        GetRange::Bounded(r) => r.start,
        GetRange::Offset(o) => *o,
        GetRange::Suffix(_) => return Ok(()),
    };
    let size = store
        .head(path)
        .await
        .with_context(|| format!("reading object {path}"))?
        .size;
    if start >= size {
        let valid = match size {
            0 => "it is empty, so no range is".to_owned(),
            n => format!("valid offsets are 0-{}", n - 1),
        };
        bail!(Usage(format!(
            "--range {text}: starts at byte {start}, but {path} has {size} bytes ({valid})"
        )));
    }
    Ok(())
}

pub(crate) async fn get(a: &args::Get, g: &args::Global, out: &Output) -> Result<Done> {
    let to_stdout = match a.file.as_deref() {
        Some(p) if p.as_os_str() == "-" => true,
        Some(_) => false,
        None => {
            if std::io::stdout().is_terminal() {
                bail!(Usage(
                    "refusing to write an object to a terminal: give an output file, or - to \
                     really write to standard output"
                        .into()
                ));
            }
            true
        }
    };
    if to_stdout && g.json {
        bail!(Usage(
            "--json needs an output file: standard output carries the summary".into()
        ));
    }
    let range = a.range.as_deref().map(parse_range).transpose()?;
    let (_, store) = open::open_store(&a.repo.repo, g).await?;
    let path = object_path(&a.object)?;
    if let (Some(r), Some(text)) = (&range, a.range.as_deref()) {
        check_range(&store, &path, r, text).await?;
    }
    let result = store
        .get_opts(
            &path,
            GetOptions {
                range,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("reading object {}", a.object))?;
    let total = result.range.end - result.range.start;
    // `get … -` to a terminal: a bar on the same screen would garble the object's bytes.
    let progress = if to_stdout && std::io::stdout().is_terminal() {
        Output {
            quiet: true,
            ..*out
        }
        .progress(Some(total), &a.object)
    } else {
        out.progress(Some(total), &a.object)
    };
    let mut stream = result.into_stream();
    let mut written = 0u64;
    if to_stdout {
        // Only verified plaintext is ever yielded by the stream; a failure mid-way stops it.
        let mut stdout = std::io::stdout().lock();
        while let Some(piece) = stream.next().await {
            let piece = piece.with_context(|| format!("reading object {}", a.object))?;
            stdout
                .write_all(&piece)
                .context("writing standard output")?;
            written += piece.len() as u64;
            progress.advance(piece.len() as u64);
        }
        stdout.flush().context("writing standard output")?;
        progress.finish();
        return Ok((String::new(), json!({"object": a.object, "bytes": written})));
    }
    let target = a.file.clone().unwrap_or_default();
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // A temporary file beside the target, renamed only once every byte verified: a tampered
    // object never leaves partial output (the temporary file is removed when dropped).
    let mut tmp = tempfile::Builder::new()
        .prefix(".encrypt-repo-get-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // A thread writes the file, so writing overlaps reading and decrypting; it holds at most
    // READ_AHEAD pieces. On any error the temporary file is dropped, and with it removed.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(READ_AHEAD);
    let writer = tokio::task::spawn_blocking(move || {
        let writeback = EarlyWriteback::start(tmp.as_file());
        while let Some(piece) = rx.blocking_recv() {
            tmp.write_all(&piece)
                .with_context(|| format!("writing {}", tmp.path().display()))?;
            writeback.wrote(piece.len());
        }
        writeback.finish();
        // Durable before it is renamed into place: a crash never leaves a short file there.
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("writing {}", tmp.path().display()))?;
        anyhow::Ok(tmp)
    });
    let streamed = async {
        while let Some(piece) = stream.next().await {
            let piece = piece.with_context(|| format!("reading object {}", a.object))?;
            written += piece.len() as u64;
            progress.advance(piece.len() as u64);
            if tx.send(piece).await.is_err() {
                break; // the writer failed: its error is reported below
            }
        }
        anyhow::Ok(())
    }
    .await;
    drop(tx);
    progress.finish();
    let tmp = writer.await?;
    streamed?;
    let tmp = tmp?;
    tmp.persist(&target)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", target.display()))?;
    Ok((
        format!(
            "{} → {} ({})",
            a.object,
            target.display(),
            human_bytes(written)
        ),
        json!({"object": a.object, "file": target, "bytes": written}),
    ))
}

/// Starts the disk writes of a file being written while it is still being written, so the
/// final `sync_all` of `get` waits for the last stretch only instead of the whole file: a
/// thread calls `sync_data` on its own handle each time another [`EarlyWriteback::STEP`] bytes
/// were written (skipped while the previous call still runs). Its errors are ignored — the
/// final `sync_all` reports the same failures. Without a second handle, nothing happens.
struct EarlyWriteback {
    signal: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pending: std::cell::Cell<usize>,
}

impl EarlyWriteback {
    /// Bytes written between two early `sync_data` calls.
    const STEP: usize = 32 << 20;

    fn start(file: &std::fs::File) -> Self {
        let spawned = file.try_clone().ok().and_then(|f| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
            std::thread::Builder::new()
                .name("get-writeback".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        let _ = f.sync_data();
                    }
                })
                .ok()
                .map(|t| (tx, t))
        });
        let (signal, thread) = spawned.unzip();
        Self {
            signal,
            thread,
            pending: std::cell::Cell::new(0),
        }
    }

    fn wrote(&self, n: usize) {
        let pending = self.pending.get() + n;
        if pending < Self::STEP {
            self.pending.set(pending);
            return;
        }
        self.pending.set(0);
        if let Some(s) = &self.signal {
            let _ = s.try_send(());
        }
    }

    fn finish(mut self) {
        self.signal = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) async fn ls(a: &args::Ls, g: &args::Global, out: &Output) -> Result<Done> {
    let (_, store) = open::open_store(&a.repo.repo, g).await?;
    let prefix = a.prefix.as_deref().map(object_path).transpose()?;
    let listing = listing::list(&store, prefix.as_ref()).await?;
    let mut human = String::new();
    for m in &listing.objects {
        human += &format!(
            "{:>12}  {}  {}\n",
            m.size,
            m.last_modified.format("%Y-%m-%d %H:%M:%S"),
            m.location
        );
    }
    let objects: Vec<Value> = listing
        .objects
        .iter()
        .map(|m| {
            json!({"object": m.location.to_string(), "size": m.size,
                   "last_modified": m.last_modified.to_rfc3339()})
        })
        .collect();
    let bad: Vec<Value> = listing
        .bad
        .iter()
        .map(|b| json!({"object": b.object, "error": b.error}))
        .collect();
    let json = json!({"objects": objects, "bad": bad});
    if !listing.bad.is_empty() {
        // stdout keeps the listing's shape (scripts parse it); the bad ones go to the log.
        for b in &listing.bad {
            out.warn(&format!("BAD {}: {}", b.object, b.error));
        }
        out.done(&human, json);
        bail!(Partial {
            failed: listing.bad.len(),
            total: listing.objects.len() + listing.bad.len(),
            what: "objects",
        });
    }
    Ok((human, json))
}

pub(crate) async fn rm(a: &args::Rm, g: &args::Global) -> Result<Done> {
    let (_, store) = open::open_store(&a.repo.repo, g).await?;
    for o in &a.objects {
        let p = object_path(o)?;
        store
            .delete(&p)
            .await
            .with_context(|| format!("deleting {o}"))?;
    }
    Ok((
        format!("deleted {} object(s)", a.objects.len()),
        json!({"deleted": a.objects}),
    ))
}

pub(crate) async fn cp(a: &args::Cp, g: &args::Global) -> Result<Done> {
    let (_, store) = open::open_store(&a.repo.repo, g).await?;
    store
        .copy(&object_path(&a.from)?, &object_path(&a.to)?)
        .await
        .with_context(|| format!("copying {} to {}", a.from, a.to))?;
    Ok((
        format!("{} → {}", a.from, a.to),
        json!({"from": a.from, "to": a.to}),
    ))
}

pub(crate) async fn verify(a: &args::Verify, g: &args::Global, out: &Output) -> Result<Done> {
    let (location, repo) = open::open(&a.repo.repo, g).await?;
    let leftovers = listing::leftovers(location.local_dir.clone()).await?;
    let store = EncryptedStore::new(Arc::new(location.backend), repo);
    let prefix = a.prefix.as_deref().map(object_path).transpose()?;
    let listing = listing::list(&store, prefix.as_ref()).await?;
    let metas = listing.objects;
    let total: u64 = metas.iter().map(|m| m.size).sum();
    let progress = out.progress(Some(total), "verifying");
    let store = Arc::new(store);
    let results: Vec<(String, u64, Option<String>)> = futures::stream::iter(metas)
        .map(|m| {
            let store = Arc::clone(&store);
            let progress = progress.clone();
            async move {
                let name = m.location.to_string();
                let r = async {
                    let mut s = store.get(&m.location).await?.into_stream();
                    let mut n = 0u64;
                    while let Some(piece) = s.next().await {
                        let piece = piece?;
                        n += piece.len() as u64;
                        progress.advance(piece.len() as u64);
                    }
                    anyhow::Ok(n)
                }
                .await;
                match r {
                    Ok(n) => (name, n, None),
                    Err(e) => (name, 0, Some(render(&e))),
                }
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    progress.finish();
    let mut results = results;
    results.extend(
        listing
            .bad
            .into_iter()
            .map(|b| (b.object, 0, Some(b.error))),
    );
    results.sort_by(|x, y| x.0.cmp(&y.0));
    let bad: Vec<&(String, u64, Option<String>)> =
        results.iter().filter(|r| r.2.is_some()).collect();
    let bytes: u64 = results.iter().map(|r| r.1).sum();
    let mut human = String::new();
    for (name, _, e) in &bad {
        let line = format!("BAD {name}: {}", e.as_deref().unwrap_or_default());
        // -q prints no summary, but a job's log must still name every bad object.
        if out.quiet && !out.json {
            out.warn(&line);
        }
        human += &line;
        human.push('\n');
    }
    let now = std::time::SystemTime::now();
    for f in &leftovers {
        out.warn(&format!(
            "leftover of an interrupted write: {} ({}, last written {}s ago; \
             `encrypt-repo cleanup` removes it)",
            f.relative,
            human_bytes(f.bytes),
            f.age(now).as_secs()
        ));
    }
    human += &format!(
        "verified {} object(s), {}: {} bad",
        results.len() - bad.len(),
        human_bytes(bytes),
        bad.len()
    );
    if !leftovers.is_empty() {
        human += &format!("; {} leftover staging file(s)", leftovers.len());
    }
    let json = json!({
        "objects": results.len(),
        "bytes": bytes,
        "bad": bad.iter().map(|(n, _, e)| json!({"object": n, "error": e})).collect::<Vec<_>>(),
        "leftovers": leftovers.iter().map(|f| json!({
            "file": f.relative,
            "bytes": f.bytes,
            "age_seconds": f.age(now).as_secs(),
        })).collect::<Vec<_>>(),
    });
    if !bad.is_empty() {
        out.done(&human, json);
        bail!(Partial {
            failed: bad.len(),
            total: results.len(),
            what: "objects",
        });
    }
    Ok((human, json))
}

pub(crate) async fn keys(k: &args::Keys, g: &args::Global, out: &Output) -> Result<Done> {
    match k {
        args::Keys::Status(a) => {
            let (_, repo) = open::open(&a.repo, g).await?;
            let status = repo.check_key_status().await?;
            let keys = repo.data_keys().await?;
            let mut human = format!(
                "key provider: {}\nstatus: {status:?}\nlocked: {}\ndata keys:\n",
                repo.provider()
                    .map(|p| format!("{} ({})", p.type_name(), p.master_key()))
                    .unwrap_or_else(|| "none (unencrypted)".into()),
                repo.lock_reason().unwrap_or_else(|| "no".into()),
            );
            for key in &keys {
                human += &format!(
                    "  {} created {}{}\n",
                    key.id,
                    key.created_unix,
                    if key.shredded_unix.is_some() {
                        " SHREDDED"
                    } else {
                        ""
                    }
                );
            }
            let json = json!({"status": status, "locked": repo.lock_reason(), "data_keys": keys});
            if !status.is_usable() {
                // A monitoring job must see it in the exit code too.
                out.done(&human, json);
                bail!(KeyUnavailable(format!(
                    "the key is not usable: {}",
                    repo.lock_reason().unwrap_or_else(|| format!("{status:?}"))
                )));
            }
            Ok((human, json))
        }
        args::Keys::Rotate(a) => {
            // A new data key is made by the next write of any process; record one now so the
            // rotation is visible and the old key stops being used here.
            let (location, repo) = open::open(&a.repo, g).await?;
            let before = repo.data_key_ids().await?.len();
            repo.rotate_now().await;
            // The probe object lives under the reserved prefix, where no user object can be
            // (a user's `.rotation-check` is left alone): an encrypting store over the raw
            // backend narrowed to `.encrypt-repo/rotation/` sees it as an ordinary object.
            let probe: Backend = Arc::new(PrefixStore::new(
                location.backend,
                ObjectPath::from_iter([RESERVED, "rotation"]),
            ));
            let store = EncryptedStore::new(Arc::new(probe), repo.clone());
            let marker = ObjectPath::from("check");
            store
                .put(&marker, PutPayload::from_static(b""))
                .await
                .context("writing with the new data key")?;
            store.delete(&marker).await.ok();
            let after = repo.data_key_ids().await?.len();
            Ok((
                format!("rotated: {after} data keys (was {before})"),
                json!({"data_keys_before": before, "data_keys_after": after}),
            ))
        }
        args::Keys::Rewrap(a) => {
            let (_, repo) = open::open(&a.repo.repo, g).await?;
            let target = CryptoSettings {
                key_provider_name: a.to_name.clone().unwrap_or_else(|| a.to_provider.clone()),
                key_provider_type: a.to_provider.clone(),
                settings: settings(&a.to_settings),
            };
            let report = repo
                .rewrap(target, &encrypt_repo::provider_registry())
                .await
                .context("re-wrapping the keyring")?;
            Ok((
                format!(
                    "re-wrapped {} data key(s) from {} to {} ({} shredded left alone)",
                    report.rewrapped, report.from, report.to, report.shredded
                ),
                serde_json::to_value(&report)?,
            ))
        }
        args::Keys::Shred(a) => {
            if !a.yes {
                bail!(Usage(
                    "shredding cannot be undone: objects under the shredded keys become \
                     unreadable forever. Add --yes to confirm."
                        .into()
                ));
            }
            let (_, repo) = open::open(&a.repo.repo, g).await?;
            let n = if a.all {
                repo.shred(Shred::All).await?
            } else {
                let mut n = 0;
                for id in &a.ids {
                    let id = DataKeyId::from_hex(id).ok_or_else(|| {
                        Usage(format!("{id:?} is not a data key id (32 hex digits)"))
                    })?;
                    n += repo.shred(Shred::One(id)).await?;
                }
                n
            };
            out.warn(&format!("shredded {n} data key(s)"));
            Ok((format!("shredded {n} data key(s)"), json!({"shredded": n})))
        }
    }
}

pub(crate) async fn backup(a: &args::Backup, g: &args::Global, out: &Output) -> Result<Done> {
    if a.init {
        // Registering an already registered repository with the same settings is a no-op, so
        // `--init` is safe on every run of a scheduled job.
        let init_args = args::Init {
            repo: args::Repo {
                repo: a.repo.repo.clone(),
            },
            key_provider: Some(a.key_provider.clone()),
            key_provider_name: None,
            escrow_providers: Vec::new(),
            chunk_size: None,
            no_encryption: false,
            no_path_binding: false,
        };
        let (registered, _) = init(&init_args, g, out).await?;
        out.note(&registered);
    }
    let (_, store) = open::open_store(&a.repo.repo, g).await?;
    if !a.dir.is_dir() {
        bail!(NotFound(format!("{} is not a directory", a.dir.display())));
    }
    let progress = out.progress(Some(0), "backup");
    let opts = encrypt_repo::snapshot::BackupOptions {
        prefix: a.prefix.clone(),
        concurrency: a.concurrency.max(1),
        dry_run: a.dry_run,
    };
    let report = encrypt_repo::snapshot::backup(Arc::new(store), &a.dir, &opts, &progress).await;
    progress.finish();
    let report = report.with_context(|| format!("backing up {}", a.dir.display()))?;
    let mut human = String::new();
    for f in &report.failed {
        human += &format!("FAILED {}: {}\n", f.path, f.error);
    }
    human += &format!(
        "{}snapshot {}: {} files, {} dirs, {} symlinks, {}; uploaded {} files ({}), {} already stored",
        if a.dry_run { "dry run, no " } else { "" },
        report.snapshot_id.as_deref().unwrap_or("-"),
        report.files,
        report.dirs,
        report.symlinks,
        human_bytes(report.bytes),
        report.uploaded_files,
        human_bytes(report.uploaded_bytes),
        report.skipped_files
    );
    let json = serde_json::to_value(&report)?;
    if !report.failed.is_empty() {
        out.done(&human, json);
        bail!(Partial {
            failed: report.failed.len(),
            total: (report.files + report.failed.len() as u64) as usize,
            what: "files",
        });
    }
    Ok((human, json))
}

pub(crate) async fn restore(a: &args::Restore, g: &args::Global, out: &Output) -> Result<Done> {
    let (_, store) = open::open_store(&a.repo.repo, g).await?;
    let progress = out.progress(Some(0), "restore");
    let host = match (&a.host, a.any_host) {
        (_, true) => None,
        (Some(h), false) => Some(h.clone()),
        (None, false) => Some(encrypt_repo::snapshot::this_host()),
    };
    let opts = encrypt_repo::snapshot::RestoreOptions {
        prefix: a.prefix.clone(),
        snapshot: a.snapshot.clone(),
        host,
        source: a.path.clone(),
        concurrency: a.concurrency.max(1),
    };
    let report = encrypt_repo::snapshot::restore(Arc::new(store), &a.dir, &opts, &progress).await;
    progress.finish();
    let report = report.with_context(|| format!("restoring into {}", a.dir.display()))?;
    for f in &report.skipped_manifests {
        out.warn(&format!(
            "skipped unreadable snapshot manifest {}: {}",
            f.path, f.error
        ));
    }
    if report.removed_leftovers > 0 {
        out.note(&format!(
            "removed {} temporary file(s) an interrupted restore left",
            report.removed_leftovers
        ));
    }
    let mut human = String::new();
    for f in &report.failed {
        human += &format!("FAILED {}: {}\n", f.path, f.error);
    }
    human += &format!(
        "restored snapshot {}: {} files, {} dirs, {} symlinks, {}",
        report.snapshot_id,
        report.files,
        report.dirs,
        report.symlinks,
        human_bytes(report.bytes)
    );
    let json = serde_json::to_value(&report)?;
    if !report.failed.is_empty() {
        out.done(&human, json);
        bail!(Partial {
            failed: report.failed.len(),
            total: (report.files + report.failed.len() as u64) as usize,
            what: "files",
        });
    }
    Ok((human, json))
}

pub(crate) async fn snapshots(a: &args::Snapshots, g: &args::Global, out: &Output) -> Result<Done> {
    let (_, store) = open::open_store(&a.repo.repo, g).await?;
    let list = encrypt_repo::snapshot::list_snapshots(Arc::new(store), &a.prefix).await?;
    let mut human = String::new();
    for s in &list.snapshots {
        human += &format!(
            "{}  {}  {} files  {}  {}  {}\n",
            s.id,
            s.time,
            s.files,
            human_bytes(s.bytes),
            s.host,
            s.source
        );
    }
    let json = json!({ "snapshots": list.snapshots, "bad": list.bad });
    if !list.bad.is_empty() {
        for f in &list.bad {
            out.warn(&format!("BAD {}: {}", f.path, f.error));
        }
        out.done(&human, json);
        bail!(Partial {
            failed: list.bad.len(),
            total: list.snapshots.len() + list.bad.len(),
            what: "snapshot manifests",
        });
    }
    Ok((human, json))
}

pub(crate) async fn serve(a: &args::Serve, out: &Output) -> Result<Done> {
    // Logs on stderr (RUST_LOG, default info); stdout carries only the "listening" line.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
    let config = encrypt_repo_server::ServerConfig::load(&a.config)
        .map_err(|e| Usage(format!("{}: {e}", a.config.display())))?;
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let json = out.json;
    let on_bound: encrypt_repo_server::OnBound = Box::new(move |addr| {
        if json {
            println!("{}", json!({"listening": addr.to_string()}));
        } else {
            println!("listening on {addr}");
        }
    });
    encrypt_repo_server::serve_with(config, shutdown, Some(on_bound))
        .await
        .context("serving")?;
    // The summary was the "listening" line; nothing more on stdout after a clean shutdown.
    Ok((String::new(), Value::Null))
}
