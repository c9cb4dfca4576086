//! Streaming multipart upload: plaintext parts in, ciphertext parts of whole chunks out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use encrypt_repo_format::{ChunkSize, Encryptor, ObjectSealer};
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};

use crate::error::Error;

/// Wraps the backend's upload. Plaintext of any part size is sealed in batches (on the rayon
/// pool) as it arrives; the ciphertext stream (header first) is cut into backend parts of
/// exactly `part_bytes`, so every part but the last has the same size whatever the chunk size
/// (S3 wants parts of at least 5 MiB, R2 and others want them equal). Memory held: at most one
/// part plus one batch, whatever the object size; the caller bounds how many part uploads run
/// at once by how many returned futures it polls together.
///
/// Once any part has failed, `complete` refuses: an object missing a part must never be
/// committed. Dropping the upload without `complete` leaves no object (the backend's upload is
/// dropped or aborted with it).
pub(crate) struct EncryptedUpload {
    inner: Box<dyn MultipartUpload>,
    encryptor: Option<Encryptor>,
    /// Sealed output of the current push (reused; emptied into `part` after every push).
    out: Vec<u8>,
    /// The backend part being filled, allocated at exactly `part_bytes`, so a part in flight
    /// holds no more memory than its own bytes.
    part: Vec<u8>,
    part_bytes: usize,
    chunk: ChunkSize,
    path: String,
    failed: Arc<AtomicBool>,
}

impl std::fmt::Debug for EncryptedUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedUpload")
            .field("path", &self.path)
            .field("buffered", &(self.out.len() + self.part.len()))
            .finish_non_exhaustive()
    }
}

impl EncryptedUpload {
    pub(crate) fn new(
        inner: Box<dyn MultipartUpload>,
        sealer: ObjectSealer,
        part_bytes: usize,
        batch_chunks: usize,
        path: String,
    ) -> Self {
        let part_bytes = part_bytes.max(1);
        let chunk = sealer.chunk_size();
        // A batch of one chunk per pool thread: input arrives in parts of megabytes, so larger
        // batches would only make the encryptor gather (and hold) more before sealing.
        let batch = batch_chunks.min(rayon::current_num_threads()).max(1);
        let encryptor = Encryptor::new(sealer, batch);
        let mut part = Vec::with_capacity(part_bytes);
        part.extend_from_slice(encryptor.header_bytes());
        let out = Vec::new();
        Self {
            inner,
            encryptor: Some(encryptor),
            out,
            part,
            part_bytes,
            chunk,
            path,
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn failed(&self, source: encrypt_repo_format::Error) -> object_store::Error {
        self.failed.store(true, Ordering::Release);
        Error::Object {
            path: self.path.clone(),
            source,
        }
        .into()
    }

    /// Moves `out` into parts and sends every full one to the backend; with `including_last`,
    /// the rest too. Ciphertext is copied once, into part-sized buffers: splitting `out` instead
    /// would leave every part in flight holding a whole push's allocation.
    fn flush_parts(&mut self, including_last: bool) -> Vec<UploadPart> {
        let mut parts = Vec::new();
        let mut from = 0;
        loop {
            let take = (self.part_bytes - self.part.len()).min(self.out.len() - from);
            self.part.extend_from_slice(&self.out[from..from + take]);
            from += take;
            let full = self.part.len() == self.part_bytes;
            let last = including_last && from == self.out.len() && !self.part.is_empty();
            if !full && !last {
                break;
            }
            let capacity = if last { 0 } else { self.part_bytes };
            let part = std::mem::replace(&mut self.part, Vec::with_capacity(capacity));
            let upload = self.inner.put_part(PutPayload::from(Bytes::from(part)));
            let failed = Arc::clone(&self.failed);
            parts.push(Box::pin(async move {
                let result = upload.await;
                if result.is_err() {
                    failed.store(true, Ordering::Release);
                }
                result
            }) as UploadPart);
            if last {
                break;
            }
        }
        self.out.clear();
        parts
    }

    /// How much of the next `want` input bytes can be pushed with its sealed output going
    /// straight into `part` without growing it past `part_bytes` (0: none can).
    fn direct_input(&self, enc: &Encryptor, want: usize) -> usize {
        let room = self.part_bytes - self.part.len();
        let whole = room / self.chunk.sealed_bytes();
        if whole == 0 {
            return 0;
        }
        // `max_output_len(n)` stays within `whole` chunks while n ≤ (whole + 1)·c − buffered.
        let limit = ((whole + 1) * self.chunk.bytes()).saturating_sub(enc.buffered());
        want.min(limit)
    }

    fn refuse(what: &'static str) -> object_store::Error {
        object_store::Error::Generic {
            store: crate::error::STORE,
            source: what.into(),
        }
    }
}

#[async_trait::async_trait]
impl MultipartUpload for EncryptedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let Some(mut enc) = self.encryptor.take() else {
            return Box::pin(futures::future::ready(Err(Self::refuse(
                "put_part after complete",
            ))));
        };
        // Sealed output goes through `out` in slices of one chunk per pool thread: enough to keep
        // every thread busy, and `out` stays a few MiB however large the caller's parts are.
        let slice = self.chunk.bytes() * rayon::current_num_threads().max(1);
        let mut parts = Vec::new();
        for piece in data.iter() {
            let mut input: &[u8] = piece;
            while !input.is_empty() {
                // Whole chunks that fit in the part being filled are sealed straight into it;
                // only the chunk that straddles two parts goes through `out` and is copied.
                let (take, direct) = match self.direct_input(&enc, input.len().min(slice)) {
                    0 => (input.len().min(self.chunk.bytes()), false),
                    n => (n, true),
                };
                let (now, rest) = input.split_at(take);
                let sink = if direct {
                    &mut self.part
                } else {
                    &mut self.out
                };
                if let Err(e) = enc.push(now, sink) {
                    self.encryptor = Some(enc);
                    let err = self.failed(e);
                    return Box::pin(futures::future::ready(Err(err)));
                }
                parts.extend(self.flush_parts(false));
                input = rest;
            }
        }
        self.encryptor = Some(enc);
        Box::pin(async move { futures::future::try_join_all(parts).await.map(drop) })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Self::refuse(
                "a part of this upload failed; abort it and upload the object again",
            ));
        }
        let Some(enc) = self.encryptor.take() else {
            return Err(Self::refuse("complete called twice"));
        };
        if let Err(e) = enc.finish(&mut self.out) {
            return Err(self.failed(e));
        }
        futures::future::try_join_all(self.flush_parts(true)).await?;
        if self.failed.load(Ordering::Acquire) {
            return Err(Self::refuse("a part of this upload failed"));
        }
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.encryptor = None;
        self.out = Vec::new();
        self.part = Vec::new();
        self.inner.abort().await
    }
}
