//! `server.limits`: what one client may hold of the node, so slow or greedy clients cannot
//! starve the others.
//!
//! | limit | default | when exceeded |
//! |---|---|---|
//! | `header_read_timeout_seconds` | 10 | the connection is closed: a request head (or the first byte of the next request on a kept-alive connection) must arrive within this time |
//! | `body_stall_timeout_seconds` | 30 | `408 request_timeout_exception`, connection closed: a request body must keep arriving (bytes at least this often) |
//! | `max_connections` | 4096 | new connections get `503` (plain HTTP) or are closed (HTTPS) |
//! | `max_connections_per_address` | 256 | the same, for one client address (an IPv6 client by its /64) |
//! | `max_uploads_per_user` | 16 | `429 too_many_requests` with `Retry-After` for that user's next object `PUT` |
//!
//! The connection caps are checked when a connection is accepted, before any TLS handshake or
//! request is read; a connection holds its slot until it closes. The header timeout bounds
//! how long a connection can hold a slot without sending a request, so 300 half-open
//! connections from one address hold at most `max_connections_per_address` slots for at most
//! `header_read_timeout_seconds`, and clients at other addresses are served meanwhile.
//! HTTP/2 connections (HTTPS with ALPN `h2`, or prior knowledge on plain HTTP) count against
//! the same caps; hyper does not time out an idle HTTP/2 connection, the per-address cap bounds
//! how many one client can keep.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::accept::Accept;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::App;
use crate::error::{ApiError, Error, Result};

/// The `server.limits` section (see the [module documentation](self) for what each does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Seconds a connection may take to send a request head, and may stay idle between
    /// requests (default 10).
    pub header_read_timeout_seconds: u64,
    /// Seconds a request body may go without a byte arriving (default 30).
    pub body_stall_timeout_seconds: u64,
    /// Open connections of the node (default 4096).
    pub max_connections: usize,
    /// Open connections of one client address (default 256).
    pub max_connections_per_address: usize,
    /// Object uploads one user may have in progress at once (default 16).
    pub max_uploads_per_user: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout_seconds: 10,
            body_stall_timeout_seconds: 30,
            max_connections: 4096,
            max_connections_per_address: 256,
            max_uploads_per_user: 16,
        }
    }
}

impl Limits {
    /// Every limit must be greater than 0.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key.
    pub fn validate(&self) -> Result<()> {
        let zero = [
            (
                "header_read_timeout_seconds",
                self.header_read_timeout_seconds == 0,
            ),
            (
                "body_stall_timeout_seconds",
                self.body_stall_timeout_seconds == 0,
            ),
            ("max_connections", self.max_connections == 0),
            (
                "max_connections_per_address",
                self.max_connections_per_address == 0,
            ),
            ("max_uploads_per_user", self.max_uploads_per_user == 0),
        ];
        match zero.iter().find(|(_, z)| *z) {
            Some((key, _)) => Err(Error::Config(format!(
                "server.limits.{key}: must be greater than 0"
            ))),
            None => Ok(()),
        }
    }

    /// [`Limits::header_read_timeout_seconds`] as a duration.
    #[must_use]
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds)
    }

    /// [`Limits::body_stall_timeout_seconds`] as a duration.
    #[must_use]
    pub fn body_stall_timeout(&self) -> Duration {
        Duration::from_secs(self.body_stall_timeout_seconds)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The counters hold no invariant a panic elsewhere could break halfway.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// IPv4-mapped IPv6 counts as IPv4; other IPv6 addresses by their /64 (one host's share).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The node's open connections: a total and a per-address count.
#[derive(Debug)]
pub struct Connections {
    total: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    max_per_address: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `max_connections` connections are open.
    #[error("the server has reached server.limits.max_connections")]
    Total,
    /// `max_connections_per_address` connections from this address are open.
    #[error("this client address has reached server.limits.max_connections_per_address")]
    PerAddress,
}

/// A connection's slot, given back when the connection closes.
#[derive(Debug)]
pub struct Slot {
    _total: OwnedSemaphorePermit,
    connections: Arc<Connections>,
    address: IpAddr,
}

/// Takes one from `key`'s count, dropping the entry at zero (so the map holds only keys with
/// something in progress).
fn release<K: std::hash::Hash + Eq>(counts: &Mutex<HashMap<K, usize>>, key: &K) {
    let mut m = lock(counts);
    if let Some(n) = m.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            m.remove(key);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        release(&self.connections.per_address, &self.address);
    }
}

impl Connections {
    /// Counters for `limits`.
    #[must_use]
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: Mutex::new(HashMap::new()),
            max_per_address: limits.max_connections_per_address,
        })
    }

    /// A slot for a connection from `peer`, unless a cap is reached.
    ///
    /// # Errors
    /// [`Refused`] naming the cap.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let address = address_key(peer);
        let mut m = lock(&self.per_address);
        let n = m.entry(address).or_insert(0);
        if *n >= self.max_per_address {
            return Err(Refused::PerAddress);
        }
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Total)?;
        *n += 1;
        drop(m);
        Ok(Slot {
            _total: total,
            connections: self.clone(),
            address,
        })
    }

    /// Open connections from `peer`'s address.
    #[must_use]
    pub fn open_from(&self, peer: IpAddr) -> usize {
        lock(&self.per_address)
            .get(&address_key(peer))
            .copied()
            .unwrap_or(0)
    }
}

/// An acceptor that admits a connection only within [`Connections`]' caps, then hands it to
/// `inner` (the TLS handshake, or nothing for plain HTTP). A refused plain-HTTP connection is
/// answered `503` before it is closed; a refused HTTPS connection is closed (no handshake is
/// spent on it).
#[derive(Debug, Clone)]
pub struct Limited<A> {
    inner: A,
    connections: Arc<Connections>,
    plain_http: bool,
}

impl<A> Limited<A> {
    /// Wraps `inner`; `plain_http` when the listener speaks HTTP without TLS.
    #[must_use]
    pub fn new(inner: A, connections: Arc<Connections>, plain_http: bool) -> Self {
        Self {
            inner,
            connections,
            plain_http,
        }
    }
}

/// A connection holding its [`Slot`].
#[derive(Debug)]
pub struct Admitted<S> {
    inner: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Admitted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Admitted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

type Accepted<A, S> = io::Result<(
    Admitted<<A as Accept<TcpStream, S>>::Stream>,
    <A as Accept<TcpStream, S>>::Service,
)>;

impl<A, S> Accept<TcpStream, S> for Limited<A>
where
    A: Accept<TcpStream, S>,
    A::Future: Send + 'static,
    S: Send + 'static,
{
    type Stream = Admitted<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = Accepted<A, S>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer = stream
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        match self.connections.admit(peer) {
            Ok(slot) => {
                let fut = self.inner.accept(stream, service);
                Box::pin(async move {
                    let (inner, service) = fut.await?;
                    Ok((Admitted { inner, _slot: slot }, service))
                })
            }
            Err(why) => {
                tracing::warn!(remote = %peer, reason = %why, "connection refused");
                let plain = self.plain_http;
                Box::pin(async move {
                    if plain {
                        // Bounded: a client that does not read its answer loses it.
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), refuse(stream, why)).await;
                    }
                    Err(io::Error::other(why))
                })
            }
        }
    }
}

/// Answers a refused plain-HTTP connection `503` with `Retry-After`, then lets the client
/// read it (what it sent is read and dropped, so closing does not reset the connection).
async fn refuse(mut stream: TcpStream, why: Refused) -> io::Result<()> {
    let body = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        format!("{why}; try again later"),
    )
    .body()
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

/// The object uploads in progress, per user.
#[derive(Debug)]
pub struct Uploads {
    per_user: Mutex<HashMap<String, usize>>,
    max: usize,
}

/// An upload in progress, counted until dropped.
#[derive(Debug)]
pub struct Upload {
    uploads: Arc<Uploads>,
    user: String,
}

impl Drop for Upload {
    fn drop(&mut self) {
        release(&self.uploads.per_user, &self.user);
    }
}

impl Uploads {
    /// At most `limits.max_uploads_per_user` at once per user.
    #[must_use]
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            per_user: Mutex::new(HashMap::new()),
            max: limits.max_uploads_per_user,
        })
    }

    /// Starts an upload of `user`'s.
    ///
    /// # Errors
    /// `429 too_many_requests` with `Retry-After: 1` when `user` has the maximum in progress.
    pub fn begin(self: &Arc<Self>, user: &str) -> Result<Upload, ApiError> {
        let mut m = lock(&self.per_user);
        let n = m.entry(user.to_owned()).or_insert(0);
        if *n >= self.max {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!(
                    "[{user}] already has {} uploads in progress (server.limits.max_uploads_per_user); retry when one has finished",
                    self.max
                ),
            );
            e.retry_after = Some(1);
            return Err(e);
        }
        *n += 1;
        Ok(Upload {
            uploads: self.clone(),
            user: user.to_owned(),
        })
    }
}

/// A request body that fails once no byte has arrived for `timeout` while the handler waits
/// for one, and says so in `stalled`.
struct StallGuard {
    inner: Body,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    stalled: Arc<AtomicBool>,
}

impl http_body::Body for StallGuard {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    let deadline = tokio::time::Instant::now() + this.timeout;
                    this.sleep.as_mut().reset(deadline);
                }
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.stalled.store(true, Ordering::SeqCst);
                    return Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request body stalled",
                    )))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: a request body must keep arriving (`server.limits.body_stall_timeout_seconds`);
/// a request whose body stalled is answered `408` and its connection closed, whatever the
/// handler made of the failed read (an upload is aborted and its buffers freed by then).
pub async fn body_stall(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    // Nothing to wait for (a GET, an empty PUT): no timer.
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let timeout = app.config.server.limits.body_stall_timeout();
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    let req = req.map(move |inner| {
        Body::new(StallGuard {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
            stalled: flag,
        })
    });
    let response = next.run(req).await;
    if !stalled.load(Ordering::SeqCst) {
        return response;
    }
    let mut r = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout_exception",
        format!(
            "the request body stalled: no bytes for {} s (server.limits.body_stall_timeout_seconds)",
            timeout.as_secs()
        ),
    )
    .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_address: usize, total: usize) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_address: per_address,
            ..Limits::default()
        }
    }

    #[test]
    fn per_address_and_total_caps_hold_and_slots_come_back() {
        let c = Connections::new(&limits(2, 3));
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let a1 = c.admit(a).expect("a1");
        let _a2 = c.admit(a).expect("a2");
        assert_eq!(c.admit(a).expect_err("a3"), Refused::PerAddress);
        let _b1 = c.admit(b).expect("b1");
        assert_eq!(c.admit(b).expect_err("total"), Refused::Total);
        assert_eq!(c.open_from(b), 1, "a refused connection holds nothing");
        drop(a1);
        assert_eq!(c.open_from(a), 1);
        c.admit(b).expect("a freed slot is usable");
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let c = Connections::new(&limits(1, 10));
        let _x = c.admit("2001:db8::1".parse().expect("ip")).expect("first");
        assert_eq!(
            c.admit("2001:db8::ffff:1".parse().expect("ip"))
                .expect_err("same /64"),
            Refused::PerAddress
        );
        c.admit("2001:db8:0:1::1".parse().expect("ip"))
            .expect("another /64");
        let _m = c.admit("::ffff:10.0.0.1".parse().expect("ip")).expect("v4");
        assert_eq!(
            c.admit("10.0.0.1".parse().expect("ip"))
                .expect_err("mapped"),
            Refused::PerAddress
        );
    }

    #[test]
    fn uploads_are_capped_per_user() {
        let u = Uploads::new(&Limits {
            max_uploads_per_user: 2,
            ..Limits::default()
        });
        let one = u.begin("alice").expect("1");
        let _two = u.begin("alice").expect("2");
        let e = u.begin("alice").expect_err("3");
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(1));
        u.begin("bob").expect("another user");
        drop(one);
        u.begin("alice").expect("a finished upload frees its place");
    }

    #[test]
    fn zero_limits_are_refused_naming_the_key() {
        let l = Limits {
            body_stall_timeout_seconds: 0,
            ..Limits::default()
        };
        let e = l.validate().expect_err("0").to_string();
        assert!(
            e.contains("server.limits.body_stall_timeout_seconds"),
            "{e}"
        );
        Limits::default().validate().expect("defaults");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_fails_and_says_so() {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, io::Error>>(1);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let stalled = Arc::new(AtomicBool::new(false));
        let guard = StallGuard {
            inner: Body::from_stream(stream),
            timeout: Duration::from_secs(30),
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(30))),
            armed: false,
            stalled: stalled.clone(),
        };
        let mut body = Body::new(guard).into_data_stream();
        use futures::StreamExt as _;
        tx.send(Ok(Bytes::from_static(b"abc"))).await.expect("send");
        assert_eq!(body.next().await.expect("chunk").expect("ok"), "abc");
        // A handler busy elsewhere for longer than the timeout is not a stall: the clock
        // starts when it waits for the body.
        tokio::time::advance(Duration::from_secs(100)).await;
        tx.send(Ok(Bytes::from_static(b"def"))).await.expect("send");
        assert_eq!(body.next().await.expect("chunk").expect("ok"), "def");
        assert!(!stalled.load(Ordering::SeqCst));
        // Nothing for 30 s while waited on: an error, and the flag.
        let e = body.next().await.expect("item").expect_err("stalled");
        assert!(e.to_string().contains("stalled"), "{e}");
        assert!(stalled.load(Ordering::SeqCst));
        drop(tx);
    }
}
