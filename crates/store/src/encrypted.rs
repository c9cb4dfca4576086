//! `EncryptedStore<S>`: every `ObjectStore` method, encrypting on the way in and verifying on
//! the way out.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use encrypt_repo_format::{
    DEFAULT_BATCH_CHUNKS, Decryptor, Encryptor, HEADER_LEN, Header, Layout, ObjectContext,
    ObjectOpener, ObjectSealer,
};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, RenameTargetMode,
};

use crate::error::{Error, Result};
use crate::repository::{RESERVED_PREFIX, Repository};
use crate::upload::EncryptedUpload;

/// Default bytes per multipart part: S3's minimum, as object_store's own `WriteMultipart`
/// default, which keeps a streaming upload within 64 MiB (README, "Memory"). S3 allows 10,000
/// parts, so objects over 48.8 GiB need a larger [`StoreConfig::part_size`] there.
pub const DEFAULT_PART_SIZE: usize = 5 << 20;
/// Smallest part size S3 accepts for any part but the last.
pub const MIN_PART_SIZE: usize = 5 << 20;

/// Tuning of an [`EncryptedStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Bytes per backend part of a multipart upload ([`DEFAULT_PART_SIZE`], 5 MiB). Every part
    /// but the last has exactly this size; S3 needs at least 5 MiB, so this is raised to 5 MiB if
    /// lower. The largest object S3 accepts is 10,000 × this.
    pub part_size: usize,
    /// Chunks sealed or opened together on the rayon pool (default 8).
    pub batch_chunks: usize,
    /// Headers remembered per (location, etag), so repeated range reads fetch only chunks.
    pub header_cache_entries: usize,
    /// Objects up to this size are copied (re-encrypted) with one put; larger ones stream
    /// through a multipart upload.
    pub copy_in_memory_limit: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            part_size: DEFAULT_PART_SIZE,
            batch_chunks: DEFAULT_BATCH_CHUNKS,
            header_cache_entries: 4096,
            copy_in_memory_limit: 64 << 20,
        }
    }
}

/// A drop-in `ObjectStore` that encrypts everything it writes to `inner` and verifies
/// everything it reads. Object attributes and tags are passed through **unencrypted**; object
/// names are not encrypted either.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use encrypt_repo_store::{EncryptedStore, Repository, RepositoryOptions};
/// use encrypt_repo_keys::ProviderRegistry;
/// use object_store::{ObjectStore, ObjectStoreExt, local::LocalFileSystem, path::Path};
///
/// let backend = Arc::new(LocalFileSystem::new_with_prefix("/srv/backups")?);
/// let repo = Repository::open(backend.clone(), &ProviderRegistry::with_builtin(), &Default::default(), RepositoryOptions::default()).await?;
/// let store = EncryptedStore::new(backend, Arc::new(repo));
/// store.put(&Path::from("a/b.txt"), "secret".into()).await?;
/// # Ok(()) }
/// ```
pub struct EncryptedStore<S> {
    inner: Arc<S>,
    repo: Arc<Repository>,
    config: StoreConfig,
    headers: Arc<Mutex<HeaderCache>>,
    /// The periodic key-status check (see [`Repository::watch_key_status`]), when the store was
    /// made inside a tokio runtime.
    _status: Option<Arc<crate::StatusWatch>>,
}

/// Object headers by (location, etag): a header never changes while the etag stays the same.
type HeaderCache = HashMap<(Path, String), [u8; HEADER_LEN]>;

impl<S> std::fmt::Debug for EncryptedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("repository", &self.repo)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: ObjectStore> std::fmt::Display for EncryptedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EncryptedStore({}, repository {})",
            self.inner,
            self.repo.id()
        )
    }
}

impl<S: ObjectStore> EncryptedStore<S> {
    /// Wraps `inner`, which must be the store `repo` was opened over. Called inside a tokio
    /// runtime, it also starts the repository's periodic key-status check
    /// ([`Repository::watch_key_status`]), which lives as long as this store.
    pub fn new(inner: Arc<S>, repo: Arc<Repository>) -> Self {
        Self::with_config(inner, repo, StoreConfig::default())
    }

    /// Like [`EncryptedStore::new`] with explicit tuning.
    pub fn with_config(inner: Arc<S>, repo: Arc<Repository>, config: StoreConfig) -> Self {
        let status = (repo.is_encrypted() && tokio::runtime::Handle::try_current().is_ok())
            .then(|| Arc::new(repo.watch_key_status()));
        Self {
            inner,
            repo,
            config,
            headers: Arc::default(),
            _status: status,
        }
    }

    /// The repository.
    pub fn repository(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    fn context<'a>(&self, location: &'a Path) -> ObjectContext<'a> {
        if self.repo.path_binding() {
            ObjectContext::bound(self.repo.id(), location.as_ref())
        } else {
            ObjectContext::unbound(self.repo.id())
        }
    }

    fn layout(&self, location: &Path, ciphertext_len: u64) -> Result<Layout> {
        Layout::for_ciphertext(self.repo.chunk_size(), ciphertext_len).map_err(|source| {
            Error::Object {
                path: location.to_string(),
                source,
            }
        })
    }

    fn plain_meta(&self, mut meta: ObjectMeta) -> Result<ObjectMeta> {
        if self.repo.is_encrypted() {
            meta.size = self.layout(&meta.location, meta.size)?.plaintext_len();
        }
        Ok(meta)
    }

    async fn sealer(&self, location: &Path) -> Result<ObjectSealer> {
        let (id, key) = self.repo.key_for_write().await?;
        ObjectSealer::new(&key, id, &self.context(location), self.repo.chunk_size()).map_err(
            |source| Error::Object {
                path: location.to_string(),
                source,
            },
        )
    }

    async fn seal_payload(&self, location: &Path, payload: PutPayload) -> Result<PutPayload> {
        let sealer = self.sealer(location).await?;
        let batch = self.config.batch_chunks;
        let chunk = self.repo.chunk_size();
        let small = payload.content_length() <= chunk.bytes();
        let path = location.to_string();
        let seal = move || -> Result<PutPayload> {
            let mut enc = Encryptor::new(sealer, batch);
            let layout = Layout::for_plaintext(chunk, payload.content_length() as u64).map_err(
                |source| Error::Object {
                    path: path.clone(),
                    source,
                },
            )?;
            let mut out = Vec::with_capacity(layout.ciphertext_len() as usize);
            out.extend_from_slice(enc.header_bytes());
            for part in payload.iter() {
                enc.push(part, &mut out).map_err(|source| Error::Object {
                    path: path.clone(),
                    source,
                })?;
            }
            enc.finish(&mut out).map_err(|source| Error::Object {
                path: path.clone(),
                source,
            })?;
            Ok(PutPayload::from(Bytes::from(out)))
        };
        // One chunk or less: cheaper to seal here than to hop to a blocking thread.
        if small {
            return seal();
        }
        tokio::task::spawn_blocking(seal)
            .await
            .map_err(|e| Error::Store(e.into()))?
    }

    async fn header_for(&self, location: &Path, meta: &ObjectMeta) -> Result<[u8; HEADER_LEN]> {
        let key = meta.e_tag.clone().map(|e| (location.clone(), e));
        if let Some(k) = &key
            && let Some(h) = self.lock_headers().get(k)
        {
            return Ok(*h);
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(0..HEADER_LEN as u64)),
            if_match: meta.e_tag.clone(),
            version: meta.version.clone(),
            ..Default::default()
        };
        let bytes = self.inner.get_opts(location, opts).await?.bytes().await?;
        let header: [u8; HEADER_LEN] = bytes.as_ref().try_into().map_err(|_| Error::Object {
            path: location.to_string(),
            source: encrypt_repo_format::Error::TruncatedHeader {
                len: bytes.len(),
                need: HEADER_LEN,
            },
        })?;
        self.remember_header(key, header);
        Ok(header)
    }

    fn remember_header(&self, key: Option<(Path, String)>, header: [u8; HEADER_LEN]) {
        let Some(key) = key else { return };
        let mut cache = self.lock_headers();
        if cache.len() >= self.config.header_cache_entries {
            cache.clear(); // crude but bounded: a full cache starts over
        }
        cache.insert(key, header);
    }

    fn lock_headers(&self) -> std::sync::MutexGuard<'_, HeaderCache> {
        self.headers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn opener(&self, location: &Path, header: &[u8; HEADER_LEN]) -> Result<ObjectOpener> {
        let obj = |source| Error::Object {
            path: location.to_string(),
            source,
        };
        let parsed = Header::parse(header).map_err(obj)?;
        if parsed.chunk_size != self.repo.chunk_size() {
            return Err(Error::ChunkSizeMismatch {
                path: location.to_string(),
                found: parsed.chunk_size.bytes(),
                expected: self.repo.chunk_size().bytes(),
            });
        }
        let key = self
            .repo
            .key_for_read(parsed.data_key_id, location.as_ref())
            .await?;
        ObjectOpener::new(header, &key, &self.context(location)).map_err(obj)
    }

    async fn get_encrypted(&self, location: &Path, mut options: GetOptions) -> Result<GetResult> {
        self.repo.check_unlocked()?;
        if options.head {
            let mut r = self.inner.get_opts(location, options).await?;
            r.meta = self.plain_meta(r.meta)?;
            r.range = 0..r.meta.size;
            return Ok(r);
        }
        let c = self.repo.chunk_size().bytes() as u64;
        let s = self.repo.chunk_size().sealed_bytes() as u64;
        let h = HEADER_LEN as u64;
        let range_err = |message: String| Error::Range {
            path: location.to_string(),
            message,
        };
        let requested = match options.range.take() {
            Some(GetRange::Suffix(n)) => {
                // Suffix needs the plaintext length (and Azure has no suffix ranges): head first.
                let l = self
                    .layout(location, self.inner.head(location).await?.size)?
                    .plaintext_len();
                if l == 0 {
                    None
                } else {
                    Some(GetRange::Bounded(l.saturating_sub(n)..l))
                }
            }
            Some(GetRange::Bounded(r)) if r.start >= r.end => {
                return Err(range_err(format!(
                    "range {}..{} is empty or reversed",
                    r.start, r.end
                )));
            }
            other => other,
        };
        let first_chunk = match &requested {
            Some(GetRange::Bounded(r)) => r.start / c,
            Some(GetRange::Offset(o)) => o / c,
            None | Some(GetRange::Suffix(_)) => 0, // a suffix was resolved to a bounded range above
        };
        // Ciphertext offset of the end of chunk `n - 1` (or of the start of chunk `n`): a range
        // no object can reach (bounds near u64::MAX) is an error, never an overflow.
        let sealed_end = |chunks: u64| {
            chunks
                .checked_mul(s)
                .and_then(|b| b.checked_add(h))
                .ok_or_else(|| {
                    range_err(format!(
                        "range reaches past the largest possible object ({} chunks)",
                        encrypt_repo_format::MAX_CHUNKS
                    ))
                })
        };
        let fetch_from = if first_chunk == 0 {
            0
        } else {
            sealed_end(first_chunk)?
        };
        options.range = match &requested {
            None => None,
            Some(GetRange::Bounded(r)) => Some(GetRange::Bounded(
                fetch_from..sealed_end((r.end - 1) / c + 1)?,
            )),
            Some(_) if fetch_from == 0 => None,
            Some(_) => Some(GetRange::Offset(fetch_from)),
        };
        let result = self.inner.get_opts(location, options).await?;
        let layout = self.layout(location, result.meta.size)?;
        let l = layout.plaintext_len();
        let plain_range = match &requested {
            None => 0..l,
            Some(r) => r.as_range(l).map_err(|e| range_err(e.to_string()))?,
        };
        let plan = layout
            .plan(plain_range.clone())
            .map_err(|source| Error::Object {
                path: location.to_string(),
                source,
            })?;
        if result.range.start != fetch_from {
            return Err(range_err(format!(
                "backend returned bytes from {} instead of {fetch_from}",
                result.range.start
            )));
        }
        let meta = self.plain_meta(result.meta.clone())?;
        let attributes = result.attributes.clone();
        let extensions = result.extensions.clone();
        let mut input = match result.payload {
            // A local file: read it in whole sealed chunks on a blocking thread that runs ahead
            // of decryption (object_store's own stream reads 8 KiB per blocking call, and the
            // reads would otherwise alternate with decryption instead of overlapping it).
            GetResultPayload::File(file, path) => read_ahead(
                file,
                path,
                result.range.clone(),
                // Pieces of one sealed chunk per pool thread, the header read with the first:
                // every piece is then whole chunks, opened straight from the buffer it was read
                // into, on every thread.
                self.repo.chunk_size().sealed_bytes() * rayon::current_num_threads().max(1),
                if fetch_from == 0 { HEADER_LEN } else { 0 },
            ),
            GetResultPayload::Stream(_) => result.into_stream(),
        };
        let header = if fetch_from == 0 {
            let (header, rest) = take_header(input, location).await?;
            input = rest;
            self.remember_header(meta.e_tag.clone().map(|e| (location.clone(), e)), header);
            header
        } else {
            self.header_for(location, &meta).await?
        };
        let opener = self.opener(location, &header).await?;
        let dec = match requested {
            None => Decryptor::new(opener, self.config.batch_chunks),
            Some(_) => Decryptor::for_range(opener, &plan, self.config.batch_chunks),
        };
        let piece_limit = self.config.batch_chunks.max(1) * self.repo.chunk_size().sealed_bytes();
        let stream = decrypt_stream(
            input,
            dec,
            location.to_string(),
            piece_limit,
            self.repo.chunk_size().sealed_bytes(),
        );
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range: plain_range,
            attributes,
            extensions,
        })
    }

    async fn copy_encrypted(&self, from: &Path, to: &Path, mode: CopyMode) -> Result<()> {
        reject_reserved(from)?;
        reject_reserved(to)?;
        let src = self.get_encrypted(from, GetOptions::default()).await?;
        let put_mode = match mode {
            CopyMode::Overwrite => PutMode::Overwrite,
            CopyMode::Create => PutMode::Create,
        };
        if src.meta.size <= self.config.copy_in_memory_limit {
            let bytes = src.bytes().await?;
            let payload = self.seal_payload(to, PutPayload::from(bytes)).await?;
            self.inner
                .put_opts(
                    to,
                    payload,
                    PutOptions {
                        mode: put_mode,
                        ..Default::default()
                    },
                )
                .await?;
            return Ok(());
        }
        if mode == CopyMode::Create && self.inner.head(to).await.is_ok() {
            return Err(Error::Store(object_store::Error::AlreadyExists {
                path: to.to_string(),
                source: "copy target exists".into(),
            }));
        }
        let mut upload = self
            .put_multipart_opts(to, PutMultipartOptions::default())
            .await?;
        let mut stream = src.into_stream();
        while let Some(bytes) = stream.next().await {
            match bytes {
                Ok(b) => upload.put_part(PutPayload::from(b)).await?,
                Err(e) => {
                    upload.abort().await.ok();
                    return Err(e.into());
                }
            }
        }
        upload.complete().await?;
        Ok(())
    }
}

fn is_reserved(location: &Path) -> bool {
    location
        .parts()
        .next()
        .is_some_and(|p| is_reserved_segment(p.as_ref()))
}

/// Whether a path's first segment is the reserved prefix `.encrypt-repo`, compared without
/// regard to case (ASCII and Unicode lower-casing): on a case-insensitive backend (a local disk
/// on macOS or Windows, some S3-compatible servers) `.Encrypt-Repo/keyring/…` *is* the
/// repository's metadata, so no case form of the prefix is ever a user object.
#[must_use]
pub fn is_reserved_segment(segment: &str) -> bool {
    segment.eq_ignore_ascii_case(RESERVED_PREFIX) || segment.to_lowercase() == RESERVED_PREFIX
}

fn reject_reserved(location: &Path) -> Result<()> {
    if is_reserved(location) {
        Err(Error::Reserved(location.to_string()))
    } else {
        Ok(())
    }
}

/// Reads the 96-byte header off the front of `input`; returns it and the rest of the stream.
async fn take_header(
    mut input: BoxStream<'static, object_store::Result<Bytes>>,
    location: &Path,
) -> Result<(
    [u8; HEADER_LEN],
    BoxStream<'static, object_store::Result<Bytes>>,
)> {
    let mut buf = Vec::with_capacity(HEADER_LEN);
    let mut rest = Bytes::new();
    while buf.len() < HEADER_LEN {
        match input.next().await {
            Some(b) => {
                let b = b?;
                let take = (HEADER_LEN - buf.len()).min(b.len());
                buf.extend_from_slice(&b[..take]);
                rest = b.slice(take..);
            }
            None => {
                return Err(Error::Object {
                    path: location.to_string(),
                    source: encrypt_repo_format::Error::TruncatedHeader {
                        len: buf.len(),
                        need: HEADER_LEN,
                    },
                });
            }
        }
    }
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&buf);
    let stream = futures::stream::once(async move { Ok(rest) })
        .chain(input)
        .boxed();
    Ok((header, stream))
}

/// Pieces read ahead of the consumer by [`read_ahead`].
const READ_AHEAD_PIECES: usize = 2;

/// Streams `range` of a local file in pieces of `piece` bytes (the first `first_extra` bytes
/// longer), read on a blocking thread that stays up to [`READ_AHEAD_PIECES`] pieces ahead of the
/// consumer (memory: that many pieces plus the one being read). The thread stops as soon as the
/// stream is dropped.
fn read_ahead(
    mut file: std::fs::File,
    path: std::path::PathBuf,
    range: Range<u64>,
    piece: usize,
    first_extra: usize,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_PIECES);
    let fail = move |path: &std::path::Path, e: std::io::Error| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("reading {}: {e}", path.display()).into(),
    };
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(range.start)) {
            drop(tx.blocking_send(Err(fail(&path, e))));
            return;
        }
        let mut remaining = range.end.saturating_sub(range.start);
        let mut extra = first_extra as u64;
        while remaining > 0 {
            let want = remaining.min(piece as u64 + std::mem::take(&mut extra));
            let mut buf = Vec::with_capacity(want as usize);
            let got = match (&mut file).take(want).read_to_end(&mut buf) {
                Ok(0) => {
                    // Shorter than its metadata said: end here; the decryptor reports the
                    // truncation, naming the chunk.
                    return;
                }
                Ok(n) => n as u64,
                Err(e) => {
                    drop(tx.blocking_send(Err(fail(&path, e))));
                    return;
                }
            };
            remaining -= got;
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // the reader went away
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// Verified plaintext out of a ciphertext stream. After an error the stream ends.
///
/// Input pieces larger than `piece_limit` (a backend such as InMemory hands over a whole
/// object as one `Bytes`) are fed to the decryptor in slices of that size, so each item of the
/// output is at most about one batch: the first byte comes after one batch, not after the whole
/// object, and no output buffer grows to the object's size.
///
/// The last chunk of every piece may be the object's final one, so it is held back (by
/// reference, not copied) until the next piece or the end of the input says which it is; the
/// rest of the piece is opened straight from the backend's buffer. Input that arrives in whole
/// sealed chunks is thus never copied before it is opened.
fn decrypt_stream(
    input: BoxStream<'static, object_store::Result<Bytes>>,
    dec: Decryptor,
    path: String,
    piece_limit: usize,
    sealed_chunk: usize,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    struct State {
        input: BoxStream<'static, object_store::Result<Bytes>>,
        /// The unfed rest of an input piece larger than `piece_limit`.
        held: Bytes,
        /// The end of the input so far (at most one sealed chunk), not yet known not to be
        /// the object's end.
        tail: Bytes,
        dec: Option<Decryptor>,
        path: String,
    }
    let piece_limit = piece_limit.max(1);
    let sealed_chunk = sealed_chunk.max(1);
    let fail = |path: &str, source| {
        object_store::Error::from(Error::Object {
            path: path.to_owned(),
            source,
        })
    };
    futures::stream::unfold(
        State {
            input,
            held: Bytes::new(),
            tail: Bytes::new(),
            dec: Some(dec),
            path,
        },
        move |mut st| async move {
            loop {
                let dec = st.dec.as_mut()?;
                let next = if st.held.is_empty() {
                    st.input.next().await
                } else {
                    Some(Ok(std::mem::take(&mut st.held)))
                };
                match next {
                    Some(Ok(mut bytes)) => {
                        if bytes.is_empty() {
                            continue;
                        }
                        if bytes.len() > piece_limit {
                            st.held = bytes.split_off(piece_limit);
                        }
                        // The tail is followed by `bytes`: not the end. Of `bytes`, hold back
                        // what leaves the stream at a chunk boundary (at least one byte, at
                        // most one chunk) and open the rest.
                        let mut out = Vec::new();
                        let tail = std::mem::take(&mut st.tail);
                        let r = dec.push_continued(&tail, &mut out).and_then(|()| {
                            let keep = match (dec.buffered() + bytes.len()) % sealed_chunk {
                                0 => sealed_chunk,
                                r => r,
                            }
                            .min(bytes.len());
                            st.tail = bytes.split_off(bytes.len() - keep);
                            dec.push_continued(&bytes, &mut out)
                        });
                        if let Err(e) = r {
                            st.dec = None;
                            return Some((Err(fail(&st.path, e)), st));
                        }
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), st));
                        }
                    }
                    Some(Err(e)) => {
                        st.dec = None;
                        return Some((Err(e), st));
                    }
                    None => {
                        let mut dec = st.dec.take()?;
                        let mut out = Vec::new();
                        let tail = std::mem::take(&mut st.tail);
                        return match dec
                            .push(&tail, &mut out)
                            .and_then(|()| dec.finish(&mut out))
                        {
                            Ok(()) if out.is_empty() => None,
                            Ok(()) => Some((Ok(Bytes::from(out)), st)),
                            Err(e) => Some((Err(fail(&st.path, e)), st)),
                        };
                    }
                }
            }
        },
    )
    .fuse() // consumers such as object_store's collect_bytes poll again after the end
    .boxed()
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: ObjectStore> ObjectStore for EncryptedStore<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        reject_reserved(location)?;
        if !self.repo.is_encrypted() {
            return self.inner.put_opts(location, payload, opts).await;
        }
        self.repo.check_unlocked()?;
        let sealed = self.seal_payload(location, payload).await?;
        self.inner.put_opts(location, sealed, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        reject_reserved(location)?;
        if !self.repo.is_encrypted() {
            return self.inner.put_multipart_opts(location, opts).await;
        }
        self.repo.check_unlocked()?;
        let sealer = self.sealer(location).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(EncryptedUpload::new(
            inner,
            sealer,
            self.config.part_size.max(MIN_PART_SIZE),
            self.config.batch_chunks,
            location.to_string(),
        )))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if is_reserved(location) {
            return Err(Error::Reserved(location.to_string()).into());
        }
        if !self.repo.is_encrypted() {
            return self.inner.get_opts(location, options).await;
        }
        Ok(self.get_encrypted(location, options).await?)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        object_store::coalesce_ranges(
            ranges,
            |r| self.get_range(location, r),
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let checked = locations
            .map(|l| {
                l.and_then(|p| {
                    if is_reserved(&p) {
                        Err(Error::Reserved(p.to_string()).into())
                    } else {
                        Ok(p)
                    }
                })
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.map_listing(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.map_listing(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        r.common_prefixes.retain(|p| !is_reserved(p));
        r.objects.retain(|m| !is_reserved(&m.location));
        r.objects = r
            .objects
            .into_iter()
            .map(|m| self.plain_meta(m))
            .collect::<Result<_>>()?;
        Ok(r)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        reject_reserved(from)?;
        reject_reserved(to)?;
        if !self.repo.is_encrypted() || !self.repo.path_binding() {
            return self.inner.copy_opts(from, to, options).await;
        }
        Ok(self.copy_encrypted(from, to, options.mode).await?)
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        reject_reserved(from)?;
        reject_reserved(to)?;
        if !self.repo.is_encrypted() || !self.repo.path_binding() {
            return self.inner.rename_opts(from, to, options).await;
        }
        let mode = match options.target_mode {
            RenameTargetMode::Overwrite => CopyMode::Overwrite,
            RenameTargetMode::Create => CopyMode::Create,
        };
        self.copy_encrypted(from, to, mode).await?;
        self.inner.delete(from).await
    }
}

impl<S: ObjectStore> EncryptedStore<S> {
    fn map_listing(
        &self,
        s: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let encrypted = self.repo.is_encrypted();
        let chunk = self.repo.chunk_size();
        s.try_filter(|m| futures::future::ready(!is_reserved(&m.location)))
            .and_then(move |mut m| {
                let r = if encrypted {
                    match Layout::for_ciphertext(chunk, m.size) {
                        Ok(l) => {
                            m.size = l.plaintext_len();
                            Ok(m)
                        }
                        Err(source) => Err(Error::Object {
                            path: m.location.to_string(),
                            source,
                        }
                        .into()),
                    }
                } else {
                    Ok(m)
                };
                futures::future::ready(r)
            })
            .boxed()
    }
}
