//! Streaming multipart upload: plaintext parts in, ciphertext parts of whole chunks out.

use bytes::Bytes;
use encrypt_repo_format::{Encryptor, ObjectSealer};
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};

use crate::error::Error;

/// Wraps the backend's upload. Plaintext of any part size is sealed in batches (on the rayon
/// pool) as it arrives; every `part_chunks` sealed chunks become one backend part, so all parts
/// but the last have the same size (the first also carries the 96-byte header). Memory held:
/// at most one part plus one batch, whatever the object size; the caller bounds how many part
/// uploads run at once by how many returned futures it polls together.
///
/// Dropping the upload without `complete` leaves no object (the backend's upload is dropped or
/// aborted with it).
pub(crate) struct EncryptedUpload {
    inner: Box<dyn MultipartUpload>,
    encryptor: Option<Encryptor>,
    out: Vec<u8>,
    part_bytes: usize,
    path: String,
}

impl std::fmt::Debug for EncryptedUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedUpload")
            .field("path", &self.path)
            .field("buffered", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl EncryptedUpload {
    pub(crate) fn new(
        inner: Box<dyn MultipartUpload>,
        sealer: ObjectSealer,
        part_chunks: usize,
        batch_chunks: usize,
        path: String,
    ) -> Self {
        let part_bytes = sealer.chunk_size().sealed_bytes() * part_chunks.max(1);
        let encryptor = Encryptor::new(sealer, batch_chunks);
        let out = encryptor.header_bytes().to_vec();
        Self {
            inner,
            encryptor: Some(encryptor),
            out,
            part_bytes,
            path,
        }
    }

    fn failed(&self, source: encrypt_repo_format::Error) -> object_store::Error {
        Error::Object {
            path: self.path.clone(),
            source,
        }
        .into()
    }

    /// Sends every whole part in `out` to the backend; with `including_last`, the rest too.
    fn flush_parts(&mut self, including_last: bool) -> Vec<UploadPart> {
        let mut parts = Vec::new();
        while self.out.len() >= self.part_bytes || (including_last && !self.out.is_empty()) {
            let rest = self.out.split_off(self.part_bytes.min(self.out.len()));
            let part = std::mem::replace(&mut self.out, rest);
            parts.push(self.inner.put_part(PutPayload::from(Bytes::from(part))));
        }
        parts
    }
}

#[async_trait::async_trait]
impl MultipartUpload for EncryptedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let Some(enc) = self.encryptor.as_mut() else {
            return Box::pin(futures::future::ready(Err(object_store::Error::Generic {
                store: crate::error::STORE,
                source: "put_part after complete".into(),
            })));
        };
        for chunk in data.iter() {
            if let Err(e) = enc.push(chunk, &mut self.out) {
                let err = self.failed(e);
                return Box::pin(futures::future::ready(Err(err)));
            }
        }
        let parts = self.flush_parts(false);
        Box::pin(async move { futures::future::try_join_all(parts).await.map(drop) })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let Some(enc) = self.encryptor.take() else {
            return Err(object_store::Error::Generic {
                store: crate::error::STORE,
                source: "complete called twice".into(),
            });
        };
        if let Err(e) = enc.finish(&mut self.out) {
            return Err(self.failed(e));
        }
        futures::future::try_join_all(self.flush_parts(true)).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.encryptor = None;
        self.out.clear();
        self.inner.abort().await
    }
}
