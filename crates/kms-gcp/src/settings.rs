//! The `gcp-kms` settings map: parsing and validation, without any network call.

use std::path::PathBuf;

use encrypt_repo_keys::{Error, Result, Settings};
use url::Url;

use crate::TYPE;

/// Identity: the CryptoKey resource name.
pub(crate) const KEY_NAME: &str = "key_name";
/// Access: the Cloud KMS endpoint (default [`DEFAULT_ENDPOINT`]).
pub(crate) const ENDPOINT: &str = "endpoint";
/// Access: an extra trusted CA bundle (PEM) for `https://` endpoints.
pub(crate) const CA_FILE: &str = "ca_file";

/// The public Cloud KMS endpoint.
pub(crate) const DEFAULT_ENDPOINT: &str = "https://cloudkms.googleapis.com";

const KNOWN: [&str; 3] = [KEY_NAME, ENDPOINT, CA_FILE];
/// Project ids are at most 30 characters, but older "domain:project" ids are longer; location,
/// key ring and key ids are at most 63.
const MAX_PROJECT_LEN: usize = 100;
const MAX_ID_LEN: usize = 63;

/// Parsed and validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GcpKmsSettings {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub(crate) key_name: String,
    /// Base URL without a trailing slash.
    pub(crate) endpoint: String,
    pub(crate) ca_file: Option<PathBuf>,
}

pub(crate) fn bad(setting: &str, problem: impl Into<String>) -> Error {
    Error::Setting {
        provider: TYPE.into(),
        setting: setting.into(),
        problem: problem.into(),
    }
}

impl GcpKmsSettings {
    /// Validates `settings`. Unknown names are refused (a typo would otherwise be ignored), and
    /// credentials are never settings.
    pub(crate) fn parse(settings: &Settings) -> Result<Self> {
        if let Some(name) = settings.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            let hint = if is_credential_name(name) {
                "is not accepted: credentials come from Application Default Credentials \
                 (GOOGLE_APPLICATION_CREDENTIALS naming a service-account key file, or the \
                 metadata server), never from settings"
                    .to_owned()
            } else {
                format!("is unknown; known settings: {}", KNOWN.join(", "))
            };
            return Err(bad(name, hint));
        }
        let key_name = settings.get(KEY_NAME).ok_or_else(|| {
            bad(
                KEY_NAME,
                "is required (projects/P/locations/L/keyRings/R/cryptoKeys/K)",
            )
        })?;
        validate_key_name(key_name)?;
        let endpoint = match settings.get(ENDPOINT) {
            Some(e) => validate_endpoint(e)?,
            None => DEFAULT_ENDPOINT.to_owned(),
        };
        let ca_file = match settings.get(CA_FILE) {
            Some(p) if p.is_empty() => return Err(bad(CA_FILE, "is empty")),
            Some(p) => Some(PathBuf::from(p)),
            None => None,
        };
        Ok(Self {
            key_name: key_name.clone(),
            endpoint,
            ca_file,
        })
    }
}

fn is_credential_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "credential",
        "secret",
        "token",
        "password",
        "private_key",
        "service_account",
        "access_key",
        "api_key",
    ]
    .iter()
    .any(|w| n.contains(w))
}

fn is_id(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_project(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PROJECT_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b))
}

fn is_location(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Exactly `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
pub(crate) fn validate_key_name(name: &str) -> Result<()> {
    const FORM: &str = "projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY";
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() >= 10 && parts[8] == "cryptoKeyVersions" {
        return Err(bad(
            KEY_NAME,
            format!(
                "{name:?} names a CryptoKeyVersion: give the CryptoKey ({}) instead; new data \
                 keys use its primary version and old ones decrypt with the version that made them",
                parts[..8].join("/")
            ),
        ));
    }
    let shape_ok = parts.len() == 8
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[4] == "keyRings"
        && parts[6] == "cryptoKeys";
    if !shape_ok {
        let hint = if name.starts_with("//") || name.contains("googleapis.com") {
            " (the resource name, without the //cloudkms.googleapis.com/ prefix)"
        } else {
            ""
        };
        return Err(bad(
            KEY_NAME,
            format!("{name:?} is not a CryptoKey resource name {FORM}{hint}"),
        ));
    }
    let problem = if !is_project(parts[1]) {
        Some("project id")
    } else if !is_location(parts[3]) {
        Some("location")
    } else if !is_id(parts[5], MAX_ID_LEN) {
        Some("key ring id")
    } else if !is_id(parts[7], MAX_ID_LEN) {
        Some("key id")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(what) => Err(bad(
            KEY_NAME,
            format!(
                "{name:?}: invalid {what} (ids are 1 to 63 letters, digits, '-' or '_'; \
                 project ids and locations lower case)"
            ),
        )),
    }
}

/// `https://HOST[:PORT][/PATH]`, or `http://` to a loopback host only: encrypt and decrypt
/// answers carry plaintext data keys, which must not cross a network unencrypted. Returns the
/// endpoint without a trailing slash.
pub(crate) fn validate_endpoint(e: &str) -> Result<String> {
    let url = Url::parse(e).map_err(|err| {
        bad(
            ENDPOINT,
            format!("{e:?} is not a URL (https://HOST[:PORT]): {err}"),
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(ENDPOINT, format!("{e:?} must not carry user info")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            ENDPOINT,
            format!("{e:?} must not have a query or fragment"),
        ));
    }
    let Some(host) = url.host() else {
        return Err(bad(ENDPOINT, format!("{e:?} has no host")));
    };
    let loopback = match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(bad(
                ENDPOINT,
                format!(
                    "{e:?} is plain http to a non-loopback host: data keys would cross the \
                     network unencrypted; use https"
                ),
            ));
        }
        _ => return Err(bad(ENDPOINT, format!("{e:?}: the scheme must be https"))),
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn setting_error(pairs: &[(&str, &str)]) -> (String, String) {
        match GcpKmsSettings::parse(&settings(pairs)) {
            Err(e @ Error::Setting { .. }) => {
                let Error::Setting { ref setting, .. } = e else {
                    unreachable!()
                };
                (setting.clone(), e.to_string())
            }
            other => panic!("expected a setting error for {pairs:?}, got {other:?}"),
        }
    }

    const KEY: &str =
        "projects/my-project/locations/europe-west1/keyRings/backups/cryptoKeys/repo_1";

    #[test]
    fn accepts_a_crypto_key_name_and_defaults_the_endpoint() {
        let s = GcpKmsSettings::parse(&settings(&[(KEY_NAME, KEY)])).expect("parse");
        assert_eq!(s.key_name, KEY);
        assert_eq!(s.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(s.ca_file, None);
        for name in [
            "projects/example.com:legacy/locations/global/keyRings/r/cryptoKeys/k",
            "projects/123456789012/locations/us/keyRings/R-1/cryptoKeys/K_2",
        ] {
            assert!(
                GcpKmsSettings::parse(&settings(&[(KEY_NAME, name)])).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn refuses_malformed_key_names() {
        for name in [
            "",
            "projects/p",
            "my-key",
            "projects/p/locations/l/keyRings/r/cryptoKeys/",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k/",
            "projects/P/locations/l/keyRings/r/cryptoKeys/k",
            "projects/p/locations/L/keyRings/r/cryptoKeys/k",
            "projects/p/locations/l/keyRings/r r/cryptoKeys/k",
            "projects/p/locations/l/keyrings/r/cryptoKeys/k",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k?x=1",
            "//cloudkms.googleapis.com/projects/p/locations/l/keyRings/r/cryptoKeys/k",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions",
        ] {
            assert_eq!(setting_error(&[(KEY_NAME, name)]).0, KEY_NAME, "{name:?}");
        }
        let long = format!(
            "projects/p/locations/l/keyRings/r/cryptoKeys/{}",
            "k".repeat(64)
        );
        assert_eq!(setting_error(&[(KEY_NAME, &long)]).0, KEY_NAME);
        assert_eq!(setting_error(&[(ENDPOINT, "https://x")]).0, KEY_NAME);
    }

    #[test]
    fn a_version_name_is_refused_with_the_crypto_key_to_use() {
        let (setting, message) =
            setting_error(&[(KEY_NAME, &format!("{KEY}/cryptoKeyVersions/3"))]);
        assert_eq!(setting, KEY_NAME);
        assert!(message.contains("CryptoKeyVersion"), "{message}");
        assert!(message.contains(&format!("({KEY})")), "{message}");
    }

    #[test]
    fn refuses_unknown_settings_and_credentials() {
        for name in [
            "credentials",
            "credentials_file",
            "service_account_json",
            "private_key",
            "access_token",
            "client_secret",
        ] {
            let (setting, message) = setting_error(&[(KEY_NAME, KEY), (name, "s3cr3t")]);
            assert_eq!(setting, name);
            assert!(message.contains("never from settings"), "{message}");
            assert!(!message.contains("s3cr3t"), "{message}");
        }
        let (setting, message) = setting_error(&[(KEY_NAME, KEY), ("endpiont", "x")]);
        assert_eq!(setting, "endpiont");
        assert!(message.contains("known settings"), "{message}");
    }

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        for (e, want) in [
            (
                "https://cloudkms.googleapis.com",
                "https://cloudkms.googleapis.com",
            ),
            (
                "https://cloudkms.googleapis.com/",
                "https://cloudkms.googleapis.com",
            ),
            (
                "https://private.p.googleapis.com:8443",
                "https://private.p.googleapis.com:8443",
            ),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
            ("http://localhost:5000/", "http://localhost:5000"),
            ("http://[::1]:5000", "http://[::1]:5000"),
        ] {
            let s = GcpKmsSettings::parse(&settings(&[(KEY_NAME, KEY), (ENDPOINT, e)]))
                .unwrap_or_else(|err| panic!("{e}: {err}"));
            assert_eq!(s.endpoint, want);
        }
        for e in [
            "http://cloudkms.googleapis.com",
            "http://10.0.0.1:5000",
            "ftp://127.0.0.1",
            "cloudkms.googleapis.com",
            "https://",
            "https://user@host",
            "https://host/?q=1",
        ] {
            assert_eq!(
                setting_error(&[(KEY_NAME, KEY), (ENDPOINT, e)]).0,
                ENDPOINT,
                "{e}"
            );
        }
        assert_eq!(setting_error(&[(KEY_NAME, KEY), (CA_FILE, "")]).0, CA_FILE);
    }
}
