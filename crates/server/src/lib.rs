//! `encrypt-repo serve`: a shared, stateless service in front of encrypted repositories, with
//! OpenSearch-security-style authentication (basic, JWT) and authorization (roles, role
//! mappings, action groups, tenants).
//!
//! ```no_run
//! # async fn demo() -> Result<(), encrypt_repo_server::Error> {
//! let config = encrypt_repo_server::ServerConfig::load("config.yml".as_ref())?;
//! encrypt_repo_server::serve(config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! - [`config`]: the `config.yml` shape and the `server` section.
//! - [`security`]: users, roles, mappings, action groups, tenants; the permission of every
//!   endpoint.
//! - [`declared`]: the operator's key providers and storage backends, and what a request may
//!   say about them (the service's trust boundary).
//! - [`state`]: the system repository and its generations (409 on a lost update).
//! - [`api`]: the routes.
//! - [`openapi`]: the OpenAPI document of the routes, served at `GET /_openapi.json`.
//! - [`secapi`]: the security REST API under `/_plugins/_security/api/`.

pub mod api;
pub mod app;
pub mod audit;
pub mod authn;
pub mod backend;
pub mod conditional;
pub mod config;
pub mod declared;
pub mod error;
pub mod limits;
pub mod openapi;
pub mod password;
pub mod secapi;
pub mod security;
pub mod state;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use app::{App, admin_password_from_env, provider_registry};
pub use config::ServerConfig;
pub use error::{ApiError, Error, Result};

/// Called once the listener is bound, with the address (useful with port 0).
pub type OnBound = Box<dyn FnOnce(SocketAddr) + Send>;

/// Runs the service until `shutdown` completes: opens (and on first start bootstraps) the
/// system repository, reloads it every `server.reload_interval_seconds`, and serves HTTP or
/// HTTPS on `server.listen`. The admin password of the first start comes from
/// `ENCRYPT_REPO_ADMIN_PASSWORD` or the file named by `ENCRYPT_REPO_ADMIN_PASSWORD_FILE`.
///
/// # Errors
/// [`Error::Config`], [`Error::NoAdminPassword`], [`Error::System`], [`Error::Io`].
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with(config, shutdown, None).await
}

/// [`serve`], calling `on_bound` with the bound address.
///
/// # Errors
/// As [`serve`].
pub async fn serve_with(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: Option<OnBound>,
) -> Result<()> {
    let app = App::start(config, provider_registry(), admin_password_from_env).await?;
    let reloader = app.spawn_reloader();
    let result = run(app.clone(), shutdown, on_bound).await;
    reloader.abort();
    // The events buffered for the system repository are written before the process ends.
    app.audit.shutdown().await;
    result
}

async fn run(
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: Option<OnBound>,
) -> Result<()> {
    let listen = app.config.server.listen;
    let tls = app.config.server.tls.clone();
    let audit = app.audit.clone();
    let service = api::router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| Error::Config(format!("server.listen: cannot listen on {listen}: {e}")))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    let limits = app.config.server.limits;
    let connections = limits::Connections::new(&limits);
    match tls {
        Some(t) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
                tls::server_config(&t)?,
            ));
            let _ = app.tls.set(rustls.clone());
            tracing::info!(address = %bound, "listening (https)");
            if let Some(f) = on_bound {
                f(bound);
            }
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls)
                .handshake_timeout(limits.header_read_timeout());
            let acceptor = limits::Limited::new(
                audit::tls::AuditedTls::new(acceptor, audit),
                connections,
                false,
            );
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle)
                .first_request_timeout(limits.header_read_timeout());
            apply_timeouts(&mut server, &limits);
            server.serve(service).await?;
        }
        None => {
            tracing::info!(address = %bound, "listening (http)");
            if let Some(f) = on_bound {
                f(bound);
            }
            let acceptor =
                limits::Limited::new(axum_server::accept::DefaultAcceptor, connections, true);
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle)
                .first_request_timeout(limits.header_read_timeout());
            apply_timeouts(&mut server, &limits);
            server.serve(service).await?;
        }
    }
    Ok(())
}

/// The HTTP timeouts of `server.limits` on `server`'s protocol builder.
fn apply_timeouts<A: axum_server::Address, Acc>(
    server: &mut axum_server::Server<A, Acc>,
    limits: &limits::Limits,
) {
    // hyper restarts this timer whenever it waits for a request head, so it also closes a
    // kept-alive connection that stays idle that long.
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_read_timeout());
    server
        .http_builder()
        .http2()
        .keep_alive_interval(Some(limits.header_read_timeout()))
        .keep_alive_timeout(limits.header_read_timeout())
        .max_concurrent_streams(64);
}
