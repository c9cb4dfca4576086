//! The `azure-key-vault` settings map: parsing and validation, without any network call.

use std::path::PathBuf;

use encrypt_repo_keys::{Error, Result, Settings};

use crate::TYPE;

/// Identity: the key identifier URL, with or without a version.
pub(crate) const KEY_ID: &str = "key_id";
/// Access: the Entra ID (Azure AD) authority host.
pub(crate) const AUTHORITY_HOST: &str = "authority_host";
/// Access: an extra trusted CA certificate (PEM) for the vault and the authority.
pub(crate) const CA_FILE: &str = "ca_file";

const KNOWN: [&str; 3] = [KEY_ID, AUTHORITY_HOST, CA_FILE];

/// The public cloud's authority host, used when neither the setting nor `AZURE_AUTHORITY_HOST`
/// names one.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// Key Vault key names: 1 to 127 letters, digits and dashes.
const MAX_NAME_LEN: usize = 127;
/// Key Vault key versions are 32 hexadecimal characters.
pub(crate) const VERSION_LEN: usize = 32;

pub(crate) fn bad(setting: &str, problem: impl Into<String>) -> Error {
    Error::Setting {
        provider: TYPE.into(),
        setting: setting.into(),
        problem: problem.into(),
    }
}

/// A parsed key identifier: `https://{host}/keys/{name}[/{version}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyId {
    /// `https://host[:port]`, no trailing slash.
    pub(crate) vault: String,
    /// The host, without the port (for the challenge's resource check).
    pub(crate) host: String,
    pub(crate) name: String,
    pub(crate) version: Option<String>,
}

impl KeyId {
    /// `https://host/keys/name`, the master key's identity whatever the version.
    pub(crate) fn base(&self) -> String {
        format!("{}/keys/{}", self.vault, self.name)
    }

    /// Parses a key identifier strictly.
    pub(crate) fn parse(s: &str) -> Result<Self> {
        let hint =
            "must be a key identifier https://VAULT/keys/NAME or https://VAULT/keys/NAME/VERSION";
        let fail = |why: &str| bad(KEY_ID, format!("{s:?} {hint}: {why}"));
        let rest = s
            .strip_prefix("https://")
            .ok_or_else(|| fail("only https:// is accepted"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| fail("there is no /keys/NAME path"))?;
        let host = parse_authority(authority).map_err(|why| fail(&why))?;
        if path.contains(['?', '#']) {
            return Err(fail("a query or fragment is not part of a key identifier"));
        }
        let mut parts = path.split('/');
        if parts.next() != Some("keys") {
            return Err(fail("the path must start with /keys/"));
        }
        let name = parts.next().unwrap_or_default();
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(fail("a key name is 1 to 127 letters, digits and dashes"));
        }
        let version = match parts.next() {
            None => None,
            Some(v) if is_version(v) => Some(v.to_ascii_lowercase()),
            Some(_) => return Err(fail("a key version is 32 hexadecimal characters")),
        };
        if parts.next().is_some() {
            return Err(fail("nothing may follow the version"));
        }
        Ok(Self {
            vault: format!("https://{authority}"),
            host,
            name: name.to_owned(),
            version,
        })
    }
}

pub(crate) fn is_version(v: &str) -> bool {
    v.len() == VERSION_LEN && v.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks `host[:port]` (a DNS name, an IPv4 address, or `[v6]`) and returns the host.
fn parse_authority(authority: &str) -> std::result::Result<String, String> {
    if authority.contains('@') {
        return Err("user information is not accepted in the URL".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 address needs a closing ]".to_owned())?;
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("not an IPv6 address".into());
        }
        (format!("[{h}]"), rest.strip_prefix(':').map(str::to_owned))
    } else {
        let mut it = authority.splitn(2, ':');
        let h = it.next().unwrap_or_default();
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err("the host is not a DNS name or IP address".into());
        }
        (h.to_ascii_lowercase(), it.next().map(str::to_owned))
    };
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |n| n == 0)
    {
        return Err("the port is not a number from 1 to 65535".into());
    }
    Ok(host)
}

/// Parsed and validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AzureSettings {
    pub(crate) key_id: KeyId,
    /// The raw setting, for messages.
    pub(crate) key_id_text: String,
    /// `https://host[:port]`, no trailing slash.
    pub(crate) authority_host: String,
    pub(crate) ca_file: Option<PathBuf>,
}

impl AzureSettings {
    /// Validates `settings`; `env_authority` is `AZURE_AUTHORITY_HOST`, used when the setting is
    /// absent. Unknown names are refused (a typo would otherwise be ignored), and so is anything
    /// that looks like a credential.
    pub(crate) fn parse(settings: &Settings, env_authority: Option<String>) -> Result<Self> {
        if let Some(name) = settings.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            let hint = if is_credential_name(name) {
                "is not accepted: credentials come from the Azure environment (AZURE_TENANT_ID, \
                 AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH, \
                 AZURE_FEDERATED_TOKEN_FILE, or a managed identity), never from settings"
                    .to_owned()
            } else {
                format!("is unknown; known settings: {}", KNOWN.join(", "))
            };
            return Err(bad(name, hint));
        }
        let key_id_text = settings.get(KEY_ID).ok_or_else(|| {
            bad(
                KEY_ID,
                "is required (https://VAULT.vault.azure.net/keys/NAME)",
            )
        })?;
        let key_id = KeyId::parse(key_id_text)?;
        let (authority, from) = match settings.get(AUTHORITY_HOST) {
            Some(a) => (a.clone(), "setting"),
            None => match env_authority.filter(|a| !a.is_empty()) {
                Some(a) => (a, "AZURE_AUTHORITY_HOST"),
                None => (DEFAULT_AUTHORITY_HOST.to_owned(), "default"),
            },
        };
        let authority_host = parse_authority_host(&authority).map_err(|why| {
            let problem = if from == "AZURE_AUTHORITY_HOST" {
                format!("(from AZURE_AUTHORITY_HOST) {authority:?} {why}")
            } else {
                format!("{authority:?} {why}")
            };
            bad(AUTHORITY_HOST, problem)
        })?;
        let ca_file = match settings.get(CA_FILE) {
            Some(p) if p.is_empty() => return Err(bad(CA_FILE, "is empty")),
            Some(p) => Some(PathBuf::from(p)),
            None => None,
        };
        Ok(Self {
            key_id,
            key_id_text: key_id_text.clone(),
            authority_host,
            ca_file,
        })
    }
}

/// `https://host[:port]` with an optional trailing slash; returns it without the slash.
fn parse_authority_host(a: &str) -> std::result::Result<String, String> {
    let rest = a
        .strip_prefix("https://")
        .ok_or_else(|| "must be an https:// URL (https://login.microsoftonline.com)".to_owned())?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err("must be a host only, without a path (the tenant is added)".into());
    }
    parse_authority(authority).map_err(|why| format!("is not a valid URL: {why}"))?;
    Ok(format!("https://{authority}"))
}

fn is_credential_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "certificate",
        "client_id",
        "tenant",
        "credential",
        "assertion",
    ]
    .iter()
    .any(|w| n.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "0123456789abcdef0123456789abcdef";

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn key_ids_with_and_without_version_parse() {
        let k = KeyId::parse("https://my-vault.vault.azure.net/keys/backup-key").unwrap();
        assert_eq!(k.vault, "https://my-vault.vault.azure.net");
        assert_eq!(k.name, "backup-key");
        assert_eq!(k.version, None);
        let k = KeyId::parse(&format!(
            "https://127.0.0.1:8443/keys/k1/{}",
            V.to_uppercase()
        ))
        .unwrap();
        assert_eq!(k.vault, "https://127.0.0.1:8443");
        assert_eq!(k.host, "127.0.0.1");
        assert_eq!(k.version.as_deref(), Some(V));
        assert_eq!(k.base(), "https://127.0.0.1:8443/keys/k1");
    }

    #[test]
    fn malformed_key_ids_are_refused_naming_key_id() {
        for bad_id in [
            "",
            "http://v.vault.azure.net/keys/k",
            "https://v.vault.azure.net",
            "https://v.vault.azure.net/",
            "https://v.vault.azure.net/keys/",
            "https://v.vault.azure.net/keys/k/",
            "https://v.vault.azure.net/secrets/k",
            "https://v.vault.azure.net/keys/k_1",
            "https://v.vault.azure.net/keys/k/123",
            &format!("https://v.vault.azure.net/keys/k/{V}/wrapkey"),
            "https://v.vault.azure.net/keys/k?api-version=7.5",
            "https://user@v.vault.azure.net/keys/k",
            "https://v.vault.azure.net:0/keys/k",
            "https://v.vault.azure.net:x/keys/k",
            "https://-v.vault.azure.net/keys/k",
            "https://v..azure.net/keys/k",
            "https:///keys/k",
        ] {
            match KeyId::parse(bad_id) {
                Err(Error::Setting { setting, .. }) => assert_eq!(setting, KEY_ID, "{bad_id}"),
                other => panic!("{bad_id:?} accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn authority_comes_from_setting_then_env_then_default() {
        let base = [("key_id", "https://v.vault.azure.net/keys/k")];
        let s = AzureSettings::parse(&settings(&base), None).unwrap();
        assert_eq!(s.authority_host, DEFAULT_AUTHORITY_HOST);
        let s = AzureSettings::parse(
            &settings(&base),
            Some("https://login.microsoftonline.us/".into()),
        )
        .unwrap();
        assert_eq!(s.authority_host, "https://login.microsoftonline.us");
        let mut m = settings(&base);
        m.insert(AUTHORITY_HOST.into(), "https://127.0.0.1:9/".into());
        let s = AzureSettings::parse(&m, Some("https://ignored".into())).unwrap();
        assert_eq!(s.authority_host, "https://127.0.0.1:9");
        for a in [
            "http://login",
            "https://login/x",
            "login.microsoftonline.com",
        ] {
            let mut m = settings(&base);
            m.insert(AUTHORITY_HOST.into(), a.into());
            match AzureSettings::parse(&m, None) {
                Err(Error::Setting { setting, .. }) => assert_eq!(setting, AUTHORITY_HOST),
                other => panic!("{a} accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_and_credential_settings_are_refused() {
        for (name, expect) in [
            ("client_secret", "never from settings"),
            ("AZURE_CLIENT_SECRET", "never from settings"),
            ("tenant_id", "never from settings"),
            ("keyid", "is unknown"),
        ] {
            let m = settings(&[("key_id", "https://v.vault.azure.net/keys/k"), (name, "x")]);
            match AzureSettings::parse(&m, None) {
                Err(e @ Error::Setting { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(name) && msg.contains(expect), "{msg}");
                    assert!(!msg.contains("\"x\""), "{msg}");
                }
                other => panic!("{name} accepted: {other:?}"),
            }
        }
        match AzureSettings::parse(&Settings::new(), None) {
            Err(Error::Setting { setting, .. }) => assert_eq!(setting, KEY_ID),
            other => panic!("{other:?}"),
        }
    }
}
