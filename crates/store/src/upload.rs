//! Streaming multipart upload: plaintext parts in, ciphertext parts of whole chunks out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use encrypt_repo_format::{ChunkSize, Encryptor, ObjectSealer};
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};

use crate::error::Error;
use crate::pool::BufferPool;

/// Wraps the backend's upload. Plaintext of any part size is sealed in batches (on the rayon
/// pool) as it arrives; the ciphertext stream (header first) is cut into backend parts of
/// exactly `part_bytes`, so every part but the last has the same size whatever the chunk size
/// (S3 wants parts of at least 5 MiB, R2 and others want them equal).
///
/// The hot path copies no plaintext: every chunk is sealed straight from the caller's `Bytes`
/// into the part buffer it is sent in. Only two things are copied: a sealed chunk that straddles
/// two parts (sealed aside, then split), and plaintext that does not end on a chunk boundary
/// (the encryptor holds that partial chunk). The last chunk of every `put_part` may be the
/// object's final one, so it is held back as a slice of the caller's `Bytes` (not copied) until
/// more input or `complete` says which it is. Part buffers are recycled once the backend drops
/// them, so a long upload neither allocates nor zero-fills per part.
///
/// Sealing runs off the async worker threads: each `put_part` starts a job at once (on tokio's
/// blocking pool when there is a runtime, else inline) that waits for the previous job, so parts
/// keep their call order whatever order the caller polls the returned futures in.
///
/// Memory held: the part being filled, one sealed chunk aside, the encryptor's batch (only for
/// input that arrives in pieces smaller than a chunk), one chunk of the caller's input (by
/// reference), up to [`KEEP_PARTS`] idle part buffers, and the input of each `put_part` whose
/// job has not run yet (by reference); the caller bounds that, and how many part uploads run at
/// once, by how many returned futures it holds.
///
/// Once any part has failed, `complete` refuses: an object missing a part must never be
/// committed. Dropping the upload without `complete` leaves no object (the backend's upload is
/// dropped or aborted with it).
pub(crate) struct EncryptedUpload {
    /// The backend's upload: parts are handed to it in order, by the sealing jobs.
    inner: Arc<tokio::sync::Mutex<Box<dyn MultipartUpload>>>,
    /// What sealing needs, used by one job at a time (the jobs run in call order).
    sealer: Arc<Mutex<Sealer>>,
    /// Resolves once every job started so far has sealed its input and handed its parts to the
    /// backend: the next job waits for it, so parts keep their order.
    last: Option<Shared<BoxFuture<'static, ()>>>,
    /// `complete` or `abort` was called.
    closed: bool,
    path: String,
    failed: Arc<AtomicBool>,
}

/// The sealing state of an [`EncryptedUpload`].
struct Sealer {
    encryptor: Option<Encryptor>,
    /// The end of the input so far (at most one chunk, by reference): it may be the end of the
    /// object, which is sealed differently, so it waits for more input or `complete`.
    tail: Vec<Bytes>,
    /// The part being filled: `part_bytes` long (contents past `filled` are stale), or empty
    /// before the first byte of the next part.
    part: Vec<u8>,
    filled: usize,
    /// A sealed chunk that straddles two parts, before it is split between them.
    aside: Vec<u8>,
    pool: BufferPool,
    part_bytes: usize,
    chunk: ChunkSize,
    path: String,
}

impl std::fmt::Debug for EncryptedUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedUpload")
            .field("path", &self.path)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// Idle part buffers kept: enough for the parts a caller typically keeps in flight.
const KEEP_PARTS: usize = 4;

impl EncryptedUpload {
    pub(crate) fn new(
        inner: Box<dyn MultipartUpload>,
        sealer: ObjectSealer,
        part_bytes: usize,
        batch_chunks: usize,
        path: String,
    ) -> Self {
        let chunk = sealer.chunk_size();
        // The header must fit in the first part.
        let part_bytes = part_bytes.max(encrypt_repo_format::HEADER_LEN);
        // A batch of one chunk per pool thread: input arrives in parts of megabytes, so larger
        // batches would only make the encryptor gather (and hold) more before sealing.
        let batch = batch_chunks.min(rayon::current_num_threads()).max(1);
        let encryptor = Encryptor::new(sealer, batch);
        let pool = BufferPool::new(KEEP_PARTS);
        let mut part = pool.take(part_bytes);
        let header = encryptor.header_bytes();
        part[..header.len()].copy_from_slice(header);
        Self {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            sealer: Arc::new(Mutex::new(Sealer {
                filled: header.len(),
                encryptor: Some(encryptor),
                tail: Vec::new(),
                part,
                aside: Vec::new(),
                pool,
                part_bytes,
                chunk,
                path: path.clone(),
            })),
            last: None,
            closed: false,
            path,
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn refuse(what: &'static str) -> object_store::Error {
        object_store::Error::Generic {
            store: crate::error::STORE,
            source: what.into(),
        }
    }

    /// Starts a job that waits for the previous one, runs `seal` off the async worker threads
    /// (on tokio's blocking pool; the batches inside fan out on rayon's) and hands the
    /// ciphertext parts it made to the backend, in order. Resolves to the backend's part
    /// uploads. Without a tokio runtime, seals on the calling thread.
    fn job(
        &mut self,
        seal: impl FnOnce(&mut Sealer) -> object_store::Result<Vec<PutPayload>> + Send + 'static,
    ) -> BoxFuture<'static, object_store::Result<Vec<UploadPart>>> {
        let (sealer, inner, failed) = (
            Arc::clone(&self.sealer),
            Arc::clone(&self.inner),
            Arc::clone(&self.failed),
        );
        let previous = self.last.take();
        let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
        self.last = Some(done_rx.map(drop).boxed().shared());
        let work = async move {
            if let Some(p) = previous {
                p.await;
            }
            let run = move || seal(&mut lock(&sealer));
            let sealed = match tokio::runtime::Handle::try_current() {
                Ok(_) => tokio::task::spawn_blocking(run).await.map_err(joined)?,
                Err(_) => run(),
            };
            let payloads = sealed.inspect_err(|_| failed.store(true, Ordering::Release))?;
            let mut inner = inner.lock().await;
            let parts: Vec<UploadPart> = payloads
                .into_iter()
                .map(|payload| {
                    let upload = inner.put_part(payload);
                    let failed = Arc::clone(&failed);
                    Box::pin(async move {
                        let result = upload.await;
                        if result.is_err() {
                            failed.store(true, Ordering::Release);
                        }
                        result
                    }) as UploadPart
                })
                .collect();
            drop(inner);
            let _ = done.send(());
            Ok::<_, object_store::Error>(parts)
        };
        match tokio::runtime::Handle::try_current() {
            // Started now, whether or not the caller polls it soon: later jobs wait for it.
            Ok(rt) => {
                let task = rt.spawn(work);
                Box::pin(async move { task.await.map_err(joined)? })
            }
            Err(_) => Box::pin(work),
        }
    }
}

/// A sealing task that panicked or was cancelled (the runtime shutting down).
fn joined(e: tokio::task::JoinError) -> object_store::Error {
    object_store::Error::Generic {
        store: crate::error::STORE,
        source: format!("sealing task: {e}").into(),
    }
}

fn lock(sealer: &Mutex<Sealer>) -> std::sync::MutexGuard<'_, Sealer> {
    sealer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sealer {
    /// The part being filled, taken from the pool if the last one was sent.
    fn part(&mut self) -> &mut Vec<u8> {
        if self.part.is_empty() {
            self.part = self.pool.take(self.part_bytes);
            self.filled = 0;
        }
        &mut self.part
    }

    /// Moves the part being filled (if it holds anything) to `out`.
    fn send(&mut self, out: &mut Vec<PutPayload>) {
        if self.part.is_empty() || self.filled == 0 {
            return;
        }
        let buf = std::mem::take(&mut self.part);
        out.push(PutPayload::from(
            self.pool.bytes(buf, std::mem::take(&mut self.filled)),
        ));
    }

    /// Appends sealed bytes to the parts, sending every part that fills up.
    fn append(&mut self, mut sealed: &[u8], out: &mut Vec<PutPayload>) {
        while !sealed.is_empty() {
            let filled = self.filled;
            let part = self.part();
            let n = (part.len() - filled).min(sealed.len());
            part[filled..filled + n].copy_from_slice(&sealed[..n]);
            self.filled += n;
            sealed = &sealed[n..];
            if self.filled == self.part_bytes {
                self.send(out);
            }
        }
    }

    /// Seals `input` (followed by more input when `continued`) into the parts: whole chunks
    /// that fit in the part being filled straight into it, a chunk that straddles two parts
    /// aside and then split.
    fn push(
        &mut self,
        enc: &mut Encryptor,
        mut input: &[u8],
        continued: bool,
        out: &mut Vec<PutPayload>,
    ) -> Result<(), encrypt_repo_format::Error> {
        let (c, sealed) = (self.chunk.bytes(), self.chunk.sealed_bytes());
        while !input.is_empty() {
            let filled = self.filled;
            let room = self.part().len() - filled;
            let whole = room / sealed;
            let buffered = enc.buffered();
            // Input whose sealed output is at most `whole` chunks; for a continued push, ending
            // on a chunk boundary so the encryptor holds nothing back.
            let fit = if continued {
                (whole * c).saturating_sub(buffered)
            } else {
                ((whole + 1) * c).saturating_sub(buffered)
            };
            if whole > 0 && fit > 0 {
                let (now, rest) = input.split_at(fit.min(input.len()));
                let part = &mut self.part[filled..];
                let n = if continued {
                    enc.push_slice_continued(now, part)?
                } else {
                    enc.push_slice(now, part)?
                };
                self.filled += n;
                if self.filled == self.part_bytes {
                    self.send(out);
                }
                input = rest;
            } else {
                // The next chunk straddles this part and the next: seal it aside.
                let take = input.len().min(c - buffered % c);
                let (now, rest) = input.split_at(take);
                let mut aside = std::mem::take(&mut self.aside);
                let r = if continued {
                    aside.resize(enc.max_output_len_continued(take), 0);
                    enc.push_slice_continued(now, &mut aside)
                } else {
                    aside.resize(enc.max_output_len(take), 0);
                    enc.push_slice(now, &mut aside)
                };
                let n = match r {
                    Ok(n) => n,
                    Err(e) => {
                        self.aside = aside;
                        return Err(e);
                    }
                };
                self.append(&aside[..n], out);
                self.aside = aside;
                input = rest;
            }
        }
        Ok(())
    }

    /// Seals `data` but for what may be the end of the object, returning the parts that
    /// filled up.
    fn seal_part(&mut self, data: PutPayload) -> object_store::Result<Vec<PutPayload>> {
        let Some(mut enc) = self.encryptor.take() else {
            return Err(EncryptedUpload::refuse("put_part after abort"));
        };
        let len = data.content_length();
        let mut out = Vec::new();
        // What was held back is followed by `data`: not the end of the object after all.
        let mut result = Ok(());
        for piece in std::mem::take(&mut self.tail) {
            result = result.and_then(|()| self.push(&mut enc, &piece, true, &mut out));
        }
        // Of `data`, hold back what would leave the stream at a chunk boundary (at least one
        // byte, at most one chunk: it may be the end of the object) and seal the rest now.
        let c = self.chunk.bytes();
        let keep = match (enc.buffered() + len) % c {
            0 => c,
            r => r,
        }
        .min(len);
        let pieces: Vec<Bytes> = data.iter().cloned().collect();
        let (head, tail) = split_tail(&pieces, len, keep);
        for piece in head {
            result = result.and_then(|()| self.push(&mut enc, &piece, true, &mut out));
        }
        self.tail = tail;
        self.encryptor = Some(enc);
        result.map(|()| out).map_err(|e| self.object_error(e))
    }

    fn object_error(&self, source: encrypt_repo_format::Error) -> object_store::Error {
        Error::Object {
            path: self.path.clone(),
            source,
        }
        .into()
    }

    /// Seals what was held back and the end of the object, returning the last parts.
    fn seal_final(&mut self) -> object_store::Result<Vec<PutPayload>> {
        let Some(mut enc) = self.encryptor.take() else {
            return Err(EncryptedUpload::refuse("complete after abort"));
        };
        let mut out = Vec::new();
        let mut result = Ok(());
        for piece in std::mem::take(&mut self.tail) {
            result = result.and_then(|()| self.push(&mut enc, &piece, false, &mut out));
        }
        let mut aside = std::mem::take(&mut self.aside);
        let result = result.and_then(|()| {
            aside.resize(enc.finish_len(), 0);
            enc.finish_slice(&mut aside)
        });
        match result {
            Ok(n) => {
                self.append(&aside[..n], &mut out);
                self.send(&mut out);
                Ok(out)
            }
            Err(e) => Err(self.object_error(e)),
        }
    }
}

/// Splits `pieces` (holding `len` bytes) into the first `len - keep` bytes and the last `keep`,
/// without copying.
fn split_tail(pieces: &[Bytes], len: usize, keep: usize) -> (Vec<Bytes>, Vec<Bytes>) {
    let mut cut = len - keep;
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    for b in pieces {
        if cut >= b.len() {
            cut -= b.len();
            head.push(b.clone());
        } else {
            if cut > 0 {
                head.push(b.slice(..cut));
            }
            tail.push(b.slice(cut..));
            cut = 0;
        }
    }
    (head, tail)
}

#[async_trait::async_trait]
impl MultipartUpload for EncryptedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if self.closed {
            return Box::pin(futures::future::ready(Err(Self::refuse(
                "put_part after complete",
            ))));
        }
        if data.content_length() == 0 {
            return Box::pin(futures::future::ready(Ok(())));
        }
        let sealed = self.job(move |s| s.seal_part(data));
        Box::pin(async move { futures::future::try_join_all(sealed.await?).await.map(drop) })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if self.closed {
            return Err(Self::refuse("complete called twice"));
        }
        self.closed = true;
        let parts = self.job(Sealer::seal_final).await;
        if self.failed.load(Ordering::Acquire) {
            return Err(Self::refuse(
                "a part of this upload failed; abort it and upload the object again",
            ));
        }
        futures::future::try_join_all(parts?).await?;
        if self.failed.load(Ordering::Acquire) {
            return Err(Self::refuse("a part of this upload failed"));
        }
        self.inner.lock().await.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.closed = true;
        // Jobs already started finish (their parts are aborted with the upload); the held
        // plaintext and part buffers go now if no job holds them.
        if let Ok(mut s) = self.sealer.try_lock() {
            s.encryptor = None;
            s.tail = Vec::new();
            s.aside = Vec::new();
            s.part = Vec::new();
            s.filled = 0;
        }
        self.inner.lock().await.abort().await
    }
}
