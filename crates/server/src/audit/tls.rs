//! `SSL_EXCEPTION`: a TLS acceptor that reports failed handshakes (a plain-HTTP client on the
//! HTTPS port, an unsupported protocol version, a handshake that times out) to the audit log,
//! with the peer address. The handshake itself is axum-server's rustls acceptor, unchanged.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use axum_server::accept::Accept;
use axum_server::tls_rustls::RustlsAcceptor;
use tokio::net::TcpStream;

use super::Auditor;

/// [`RustlsAcceptor`] that logs a failed handshake as `SSL_EXCEPTION`.
#[derive(Debug, Clone)]
pub struct AuditedTls {
    inner: RustlsAcceptor,
    audit: Arc<Auditor>,
}

impl AuditedTls {
    /// Wraps `inner`.
    #[must_use]
    pub fn new(inner: RustlsAcceptor, audit: Arc<Auditor>) -> Self {
        Self { inner, audit }
    }
}

type Inner<S> = <RustlsAcceptor as Accept<TcpStream, S>>::Stream;
type InnerService<S> = <RustlsAcceptor as Accept<TcpStream, S>>::Service;
type Accepted<S> = io::Result<(Inner<S>, InnerService<S>)>;

impl<S> Accept<TcpStream, S> for AuditedTls
where
    RustlsAcceptor: Accept<TcpStream, S>,
    <RustlsAcceptor as Accept<TcpStream, S>>::Future: Send + 'static,
    S: Send + 'static,
{
    type Stream = Inner<S>;
    type Service = InnerService<S>;
    type Future = Pin<Box<dyn Future<Output = Accepted<S>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let peer = stream.peer_addr().ok();
        let fut = self.inner.accept(stream, service);
        let audit = self.audit.clone();
        Box::pin(async move {
            let r = fut.await;
            if let Err(e) = &r {
                audit.ssl_exception(peer, &format!("TLS handshake failed: {e}"));
            }
            r
        })
    }
}
