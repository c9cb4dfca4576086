//! The TLS server configuration of `server.tls`: the node's certificate and key, and, with
//! `client_auth: optional | require`, a verifier of client certificates against `client_ca`.
//!
//! Client certificates are verified during the handshake by rustls's webpki verifier (chain to
//! one of the `client_ca` certificates, signatures, validity period, client-auth usage): a
//! certificate that does not verify ends the handshake, before any request is read. With
//! `optional`, a client may present none and authenticates through the other domains. The
//! verified chain reaches each request as axum-server's `Arc<TlsInfo>` extension, whose first
//! certificate the `clientcert` domain maps to a user.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::{ClientAuth, TlsConfig};
use crate::error::{Error, Result};

fn certs(key: &str, path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| Error::Config(format!("{key}: {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{key}: {}: no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The rustls server configuration for `t` (HTTP/1.1 and HTTP/2 by ALPN).
///
/// # Errors
/// [`Error::Config`] naming the key: unreadable or empty PEM files, a key that does not match,
/// an unusable CA bundle.
pub fn server_config(t: &TlsConfig) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certs("server.tls.certificate", &t.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&t.private_key).map_err(|e| {
        Error::Config(format!(
            "server.tls.private_key: {}: {e}",
            t.private_key.display()
        ))
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("server.tls: {e}")))?;
    let builder = match (t.client_auth, &t.client_ca) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for c in certs("server.tls.client_ca", ca)? {
                roots
                    .add(c)
                    .map_err(|e| Error::Config(format!("server.tls.client_ca: {e}")))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if mode == ClientAuth::Optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            let verifier = v
                .build()
                .map_err(|e| Error::Config(format!("server.tls.client_ca: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| Error::Config(format!("server.tls.private_key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
