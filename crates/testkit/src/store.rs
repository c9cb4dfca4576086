//! Object-store wrappers for tests: [`CountingStore`] records every call (method, location,
//! range, body bytes streamed), so a test can show what an operation read and wrote.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    UploadPart,
};

/// Which `ObjectStore` / `MultipartUpload` method a call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `put_opts`.
    Put,
    /// `put_multipart_opts`.
    PutMultipart,
    /// `MultipartUpload::put_part`.
    PutPart,
    /// `MultipartUpload::complete`.
    Complete,
    /// `MultipartUpload::abort`.
    Abort,
    /// `get_opts` without `head`.
    Get,
    /// `get_opts` with `head`.
    Head,
    /// `get_ranges`.
    GetRanges,
    /// One location of `delete_stream`.
    Delete,
    /// `list`.
    List,
    /// `list_with_offset`.
    ListWithOffset,
    /// `list_with_delimiter`.
    ListWithDelimiter,
    /// `copy_opts`.
    Copy,
    /// `rename_opts`.
    Rename,
}

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The location (the prefix for listings, the source for copy/rename).
    pub location: Option<Path>,
    /// The requested range of a get.
    pub range: Option<GetRange>,
    /// For gets: body bytes streamed to the caller so far. For puts and parts: payload bytes.
    bytes: Arc<AtomicU64>,
}

impl Call {
    /// Body bytes streamed to the caller (gets) or sent (puts, parts).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Whether the call was for `location`.
    pub fn at(&self, location: &Path) -> bool {
        self.location.as_ref() == Some(location)
    }
}

type CallLog = Arc<Mutex<Vec<Call>>>;

fn record(
    log: &CallLog,
    method: Method,
    location: Option<&Path>,
    range: Option<GetRange>,
) -> Arc<AtomicU64> {
    let bytes = Arc::new(AtomicU64::new(0));
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Call {
            method,
            location: location.cloned(),
            range,
            bytes: bytes.clone(),
        });
    bytes
}

/// Replaces a get's body by `f(body)`, keeping its metadata.
pub fn map_body(
    r: GetResult,
    f: impl FnOnce(
        BoxStream<'static, object_store::Result<Bytes>>,
    ) -> BoxStream<'static, object_store::Result<Bytes>>,
) -> GetResult {
    let meta = r.meta.clone();
    let range = r.range.clone();
    let attributes = r.attributes.clone();
    let extensions = r.extensions.clone();
    GetResult {
        payload: GetResultPayload::Stream(f(r.into_stream())),
        meta,
        range,
        attributes,
        extensions,
    }
}

/// An `ObjectStore` that records every call: method, location, requested range, and the body
/// bytes actually streamed to the caller for gets.
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: Arc<S>,
    log: CallLog,
}

impl<S: ObjectStore> CountingStore<S> {
    /// Records the calls made to `inner`.
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            log: Arc::default(),
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Forgets the calls so far.
    pub fn clear(&self) {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Calls of `method` so far.
    pub fn count(&self, method: Method) -> usize {
        self.calls().iter().filter(|c| c.method == method).count()
    }
}

impl<S> std::fmt::Display for CountingStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountingStore")
    }
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    log: CallLog,
}

#[async_trait::async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let n = record(&self.log, Method::PutPart, Some(&self.location), None);
        n.store(data.content_length() as u64, Ordering::SeqCst);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        record(&self.log, Method::Complete, Some(&self.location), None);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        record(&self.log, Method::Abort, Some(&self.location), None);
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl<S: ObjectStore> ObjectStore for CountingStore<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let n = record(&self.log, Method::Put, Some(location), None);
        n.store(payload.content_length() as u64, Ordering::SeqCst);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        record(&self.log, Method::PutMultipart, Some(location), None);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            location: location.clone(),
            log: self.log.clone(),
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
        let n = record(&self.log, method, Some(location), options.range.clone());
        let r = self.inner.get_opts(location, options).await?;
        if method == Method::Head {
            return Ok(r);
        }
        Ok(map_body(r, move |s| {
            s.inspect_ok(move |b| {
                n.fetch_add(b.len() as u64, Ordering::SeqCst);
            })
            .boxed()
        }))
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let n = record(&self.log, Method::GetRanges, Some(location), None);
        let r = self.inner.get_ranges(location, ranges).await?;
        n.store(r.iter().map(|b| b.len() as u64).sum(), Ordering::SeqCst);
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let log = self.log.clone();
        let locations = locations
            .inspect_ok(move |p| {
                record(&log, Method::Delete, Some(p), None);
            })
            .boxed();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        record(&self.log, Method::List, prefix, None);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        record(&self.log, Method::ListWithOffset, prefix, None);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        record(&self.log, Method::ListWithDelimiter, prefix, None);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        record(&self.log, Method::Copy, Some(from), None);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        record(&self.log, Method::Rename, Some(from), None);
        self.inner.rename_opts(from, to, options).await
    }
}

impl<S> CountingStore<S> {
    /// The calls so far on locations outside `reserved` (a repository's own records live under
    /// `.encrypt-repo/`): the data objects an operation touched.
    pub fn calls_outside(&self, reserved: &str) -> Vec<Call> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|c| {
                c.location
                    .as_ref()
                    .is_some_and(|l| !l.as_ref().starts_with(reserved))
            })
            .cloned()
            .collect()
    }
}

/// Object `i` of a numbered test set: `o/0000`, `o/0001`, …
pub fn numbered_path(i: usize) -> Path {
    Path::from(format!("o/{i:04}"))
}

/// The body of numbered object `i`: distinct per object, of varying length.
pub fn numbered_body(i: usize) -> Vec<u8> {
    format!("object {i} ").repeat(1 + i % 13).into_bytes()
}

/// Writes numbered objects `range` into `store`.
///
/// # Panics
/// If a put fails.
pub async fn put_numbered(store: &dyn ObjectStore, range: Range<usize>) {
    for i in range {
        store
            .put_opts(
                &numbered_path(i),
                PutPayload::from(numbered_body(i)),
                PutOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("put {}: {e}", numbered_path(i)));
    }
}

/// Reads numbered objects `0..n` back from `store` and checks every byte.
///
/// # Panics
/// If a get fails or returns other bytes.
pub async fn assert_numbered(store: &dyn ObjectStore, n: usize) {
    for i in 0..n {
        let got = store
            .get_opts(&numbered_path(i), GetOptions::default())
            .await
            .unwrap_or_else(|e| panic!("get {}: {e}", numbered_path(i)))
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("read {}: {e}", numbered_path(i)));
        assert_eq!(got, numbered_body(i), "object {i}");
    }
}
