//! `clientcert`: authentication by the TLS client certificate the handshake verified.
//!
//! The certificate chain was checked by rustls against `server.tls.client_ca` (signature, CA
//! chain, validity period) before any request on the connection is read; this module only maps
//! the verified end-entity certificate's subject to a user:
//!
//! - the user name is the value of `username_attribute` (e.g. `cn`), or, when it is not set, the
//!   whole subject DN in RFC 4514 form (`CN=alice,OU=ops,O=example`), as OpenSearch does;
//! - the backend roles are every value of `roles_attribute` (e.g. `ou`), none when it is not
//!   set.
//!
//! ```yaml
//! clientcert_auth_domain:
//!   http_enabled: true
//!   order: 0
//!   http_authenticator:
//!     type: clientcert
//!     config: { username_attribute: cn, roles_attribute: ou }
//!     challenge: false
//!   authentication_backend: { type: noop }
//! ```

use serde::Deserialize;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// `http_authenticator.config` of a `clientcert` domain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    /// Subject attribute holding the user name (`cn`, `uid`, …; case-insensitive). Unset: the
    /// whole DN.
    #[serde(default)]
    pub username_attribute: Option<String>,
    /// Subject attribute whose values are the backend roles (`ou`, …). Unset: no backend roles.
    #[serde(default)]
    pub roles_attribute: Option<String>,
}

impl ClientCertConfig {
    /// Reads `http_authenticator.config` (`null` means the defaults).
    ///
    /// # Errors
    /// An unknown key or a wrong type, as text.
    pub fn from_value(v: serde_json::Value) -> Result<Self, String> {
        if v.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }
}

/// Who a client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The user name.
    pub name: String,
    /// The backend roles.
    pub backend_roles: Vec<String>,
}

/// Why a certificate names nobody.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Not a parsable X.509 certificate (rustls verified it, so this should not happen).
    #[error("the client certificate cannot be parsed")]
    Unparsable,
    /// The configured user name attribute is absent (or not a string).
    #[error("the client certificate subject has no {0} attribute")]
    NoUserName(String),
}

/// Maps a verified end-entity certificate (DER) to a user.
///
/// # Errors
/// [`CertError`].
pub fn identify(config: &ClientCertConfig, der: &[u8]) -> Result<CertIdentity, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| CertError::Unparsable)?;
    let subject = cert.subject();
    let name = match &config.username_attribute {
        Some(a) => values(subject, a)
            .into_iter()
            .next()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| CertError::NoUserName(a.clone()))?,
        None => rfc4514(subject),
    };
    let backend_roles = config
        .roles_attribute
        .as_deref()
        .map(|a| values(subject, a))
        .unwrap_or_default();
    Ok(CertIdentity {
        name,
        backend_roles,
    })
}

/// The short name of an attribute type (`CN`, `OU`, …) or its dotted OID.
fn attr_name(a: &AttributeTypeAndValue<'_>) -> String {
    x509_parser::objects::oid2abbrev(a.attr_type(), x509_parser::objects::oid_registry())
        .map_or_else(|_| a.attr_type().to_id_string(), str::to_owned)
}

/// String values of attribute `name` (short name or dotted OID, case-insensitive), in
/// certificate order.
fn values(subject: &X509Name<'_>, name: &str) -> Vec<String> {
    subject
        .iter_attributes()
        .filter(|a| attr_name(a).eq_ignore_ascii_case(name))
        .filter_map(|a| a.as_str().ok().map(str::to_owned))
        .collect()
}

/// The DN as RFC 4514 (and Java's `X500Principal.getName()`) writes it: last RDN first, `,`
/// between RDNs, `+` inside one, special characters escaped, non-string values as `#hex`.
fn rfc4514(subject: &X509Name<'_>) -> String {
    let rdns: Vec<String> = subject
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|a| match a.as_str() {
                    Ok(v) => format!("{}={}", attr_name(a), escape(v)),
                    Err(_) => {
                        let hex: String = a
                            .attr_value()
                            .data
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect();
                        format!("{}=#{hex}", a.attr_type().to_id_string())
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dn: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        let mut name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            name.push(t.clone(), *v);
        }
        params.distinguished_name = name;
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn user_name_and_roles_from_attributes() {
        let der = cert(&[
            (rcgen::DnType::OrganizationName, "Example, Inc."),
            (rcgen::DnType::OrganizationalUnitName, "ops"),
            (rcgen::DnType::CommonName, "alice"),
        ]);
        let c = ClientCertConfig {
            username_attribute: Some("CN".into()),
            roles_attribute: Some("ou".into()),
        };
        let id = identify(&c, &der).expect("identity");
        assert_eq!(id.name, "alice");
        assert_eq!(id.backend_roles, ["ops"]);
        let whole = identify(&ClientCertConfig::default(), &der).expect("identity");
        assert_eq!(whole.name, r"CN=alice,OU=ops,O=Example\, Inc.");
        assert!(whole.backend_roles.is_empty());
    }

    #[test]
    fn missing_attribute_and_garbage_are_refused() {
        let der = cert(&[(rcgen::DnType::OrganizationName, "x")]);
        let c = ClientCertConfig {
            username_attribute: Some("cn".into()),
            roles_attribute: None,
        };
        assert_eq!(identify(&c, &der), Err(CertError::NoUserName("cn".into())));
        assert_eq!(identify(&c, b"\x30\x03abc"), Err(CertError::Unparsable));
        assert_eq!(identify(&c, b""), Err(CertError::Unparsable));
    }

    #[test]
    fn config_refuses_unknown_keys() {
        assert!(ClientCertConfig::from_value(serde_json::json!({ "username": "cn" })).is_err());
        assert!(ClientCertConfig::from_value(serde_json::Value::Null).is_ok());
    }
}
