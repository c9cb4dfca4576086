//! The operator's key providers and storage backends (`server.key_providers`,
//! `server.storage`), and what an API request may say about them.
//!
//! The trust boundary of the service: `config.yml` (the operator) says how the node reaches a key
//! service or a bucket, with which credentials, and which keys and locations callers may use; a
//! request only *names* a declared provider or backend and gives *identity* settings (a key id
//! or alias, a transit key name, a bucket and prefix, a directory), each checked against the
//! operator's `allowed` patterns. A request that carries anything else (a file, a command, an
//! environment variable, an endpoint, an address) is refused with 400 naming the field, so no
//! request can make the server read or create a file, run a program, read a variable or connect
//! to an address the operator did not declare.
//!
//! ```yaml
//! server:
//!   key_providers:
//!     main:     { type: local, key_directory: /var/lib/encrypt-repo/keys }
//!     kms:      { type: aws-kms, region: eu-west-1, allowed: [ "alias/backup-*" ] }
//!     transit:  { type: openbao, address: "https://bao:8200", token_file: /etc/er/bao-token,
//!                 allowed: [ "team-a-*" ] }
//!   storage:
//!     disk:     { type: fs, root: /srv/repos }
//!     backups:  { type: s3, region: eu-west-1, allowed: [ "acme-backups/*" ] }
//! ```
//!
//! A registration then says `"crypto_settings": {"key_provider_name": "kms",
//! "key_provider_type": "aws-kms", "settings": {"key_id": "alias/backup-db"}}` and `"type": "s3",
//! "settings": {"client": "backups", "bucket": "acme-backups", "base_path": "db"}`
//! (`client` is OpenSearch's name for the configured S3 client; it may be left out when only one
//! backend of the type is declared, or one is named `default`).
//!
//! For the `local` type the server creates each repository's key file itself, in the declared
//! `key_directory`, under a name it chooses (`<repository>-<16 random hex digits>.key`); the
//! registration the server keeps records that file name as `key_file` (never shown to callers,
//! and never a path). A request can therefore never reach another repository's key, nor the
//! system repository's.
//!
//! Locations are canonicalised (for `fs`, symlinks resolved before anything is created) into a
//! [`LocationKey`]; a location may not equal, contain or lie inside another registered location
//! or the system repository.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use encrypt_repo_keys::{ProviderRegistry, Settings};
use encrypt_repo_store::{CryptoSettings, RegistrationRequest};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use serde::Deserialize;

use crate::backend::Backend;
use crate::error::{Error, Result};

/// `server.key_providers.<name>`: a key provider the operator declares, with every setting of
/// how it is reached.
#[derive(Clone, Deserialize)]
pub struct KeyProviderDecl {
    /// The provider type (`local`, `passphrase`, `aws-kms`, `openbao`, `exec`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// `local` only: the directory where the server creates and keeps one key file per
    /// repository (created 0700 if missing).
    #[serde(default)]
    pub key_directory: Option<PathBuf>,
    /// Patterns (`*` any run of characters, `?` one) a request's key name must match
    /// (`alias/team-a-*`, `arn:aws:kms:eu-west-1:111122223333:key/*`). Empty (the default): a
    /// request may not name a key; the declared settings fix it.
    #[serde(default)]
    pub allowed: Vec<String>,
    /// Every other setting of the provider type (region, endpoint, address, `token_file`,
    /// `passphrase_env`, `command`, a fixed `key_id`, …), as the provider documents them.
    #[serde(flatten)]
    pub settings: BTreeMap<String, serde_json::Value>,
}

/// `server.storage.<name>`: a storage backend the operator declares.
#[derive(Clone, Deserialize)]
pub struct StorageDecl {
    /// `fs`, `s3`, `azure` or `gcs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `fs` only: the directory repositories are created under (like OpenSearch's `path.repo`).
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Patterns a request's location must match: for `fs` the directory relative to `root`,
    /// for the clouds `bucket/base_path` (`container/base_path`). Default `["*"]`: anywhere in
    /// the backend (under `root`, in the declared `bucket` if one is declared).
    #[serde(default)]
    pub allowed: Option<Vec<String>>,
    /// The client's settings: object_store's configuration keys for the type (`region`,
    /// `endpoint`, `allow_http`, `account`, credentials, …) and optionally a fixed `bucket`
    /// (`container`).
    #[serde(flatten)]
    pub settings: BTreeMap<String, serde_json::Value>,
}

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "token", "key", "sas", "credential"]
        .iter()
        .any(|c| k.contains(c))
        && !["_file", "_env", "_command", "key_id", "key_name"]
            .iter()
            .any(|s| k.ends_with(s))
}

fn redacted(settings: &BTreeMap<String, serde_json::Value>) -> BTreeMap<&str, String> {
    settings
        .iter()
        .map(|(k, v)| {
            let shown = if looks_secret(k) {
                "<redacted>".to_owned()
            } else {
                v.to_string()
            };
            (k.as_str(), shown)
        })
        .collect()
}

impl std::fmt::Debug for KeyProviderDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyProviderDecl")
            .field("kind", &self.kind)
            .field("key_directory", &self.key_directory)
            .field("allowed", &self.allowed)
            .field("settings", &redacted(&self.settings))
            .finish()
    }
}

impl std::fmt::Debug for StorageDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageDecl")
            .field("kind", &self.kind)
            .field("root", &self.root)
            .field("allowed", &self.allowed)
            .field("settings", &redacted(&self.settings))
            .finish()
    }
}

/// A YAML scalar as the string a provider or client setting takes.
fn scalar(key: &str, v: &serde_json::Value) -> Result<String> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(Error::Config(format!(
            "{key}: must be a string, number or boolean"
        ))),
    }
}

fn strings(prefix: &str, map: &BTreeMap<String, serde_json::Value>) -> Result<Settings> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), scalar(&format!("{prefix}.{k}"), v)?)))
        .collect()
}

/// Whether `text` matches `pattern`: `*` matches any run of characters (`/` included), `?` any
/// one character, everything else itself.
#[must_use]
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Where a repository's objects are, canonicalised, for the one-repository-per-location rule:
/// `fs:/srv/repos/a/` or `s3|<endpoint>|bucket/prefix/`. Always ends in `/`, so containment is a
/// prefix test on whole segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationKey(String);

impl LocationKey {
    /// Whether one location equals, contains or lies inside the other.
    #[must_use]
    pub fn overlaps(&self, other: &Self) -> bool {
        self.0.starts_with(&other.0) || other.0.starts_with(&self.0)
    }
}

impl std::fmt::Display for LocationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The settings a request may give for each storage type (besides `client`).
fn storage_identity(kind: &str) -> &'static [&'static str] {
    match kind {
        "fs" => &["location"],
        "azure" => &["container", "base_path", "url"],
        _ => &["bucket", "base_path", "url"],
    }
}

fn bucket_key(kind: &str) -> &'static str {
    if kind == "azure" {
        "container"
    } else {
        "bucket"
    }
}

fn scheme(kind: &str) -> &'static str {
    match kind {
        "s3" => "s3",
        "azure" => "az",
        _ => "gs",
    }
}

/// The path as it is on disk: the deepest existing ancestor canonicalised (symlinks resolved),
/// the rest appended. Nothing is created.
fn canonical_without_creating(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(real) => {
                let mut out = real;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return Ok(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name().map(ToOwned::to_owned) else {
                    return Err(e);
                };
                rest.push(name);
                if !existing.pop() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[derive(Debug)]
struct Provider {
    kind: String,
    key_directory: Option<PathBuf>,
    allowed: Vec<String>,
    settings: Settings,
    key_names: &'static [&'static str],
}

#[derive(Debug)]
struct Storage {
    kind: String,
    root: Option<PathBuf>,
    allowed: Vec<String>,
    settings: Settings,
}

/// A request's storage, resolved against the declarations.
#[derive(Debug, Clone)]
pub struct ResolvedStorage {
    /// The settings the server records: `client`, and the canonical location (`location`, or
    /// `bucket`/`container` and `base_path`).
    pub record: BTreeMap<String, String>,
    /// Where it is.
    pub location: LocationKey,
    storage: String,
    dir: Option<PathBuf>,
    bucket: String,
    prefix: String,
}

/// The declarations, checked: built once at start.
#[derive(Debug)]
pub struct Declared {
    providers: BTreeMap<String, Provider>,
    storage: BTreeMap<String, Storage>,
}

/// The setting a local key file's name is recorded under in the server's registration.
pub const SERVER_KEY_FILE: &str = "key_file";

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn server_key_file_name_ok(name: &str) -> bool {
    valid_name(name.trim_end_matches(".key"))
        && name.ends_with(".key")
        && !name.starts_with('.')
        && name.len() <= 300
}

fn bad(field: impl std::fmt::Display, what: impl std::fmt::Display) -> String {
    format!("{field}: {what}")
}

impl Declared {
    /// Checks the declarations of `server` against `registry`: known types, usable directories,
    /// no key directory or system repository inside a storage root (nor the reverse).
    ///
    /// # Errors
    /// [`Error::Config`] naming the key at fault.
    pub fn new(server: &crate::config::ServerSection, registry: &ProviderRegistry) -> Result<Self> {
        let mut providers = BTreeMap::new();
        for (name, d) in &server.key_providers {
            let key = format!("server.key_providers.{name}");
            if !valid_name(name) {
                return Err(Error::Config(format!(
                    "{key}: a provider name is 1 to 64 of A-Z a-z 0-9 . _ -"
                )));
            }
            let factory = registry
                .get(&d.kind)
                .map_err(|e| Error::Config(format!("{key}.type: {e}")))?;
            let settings = strings(&key, &d.settings)?;
            let key_directory = match (&d.key_directory, d.kind.as_str()) {
                (Some(_), k) if k != "local" => {
                    return Err(Error::Config(format!(
                        "{key}.key_directory: only for type local"
                    )));
                }
                (Some(dir), _) => {
                    if !dir.is_absolute() {
                        return Err(Error::Config(format!(
                            "{key}.key_directory: must be an absolute path"
                        )));
                    }
                    let mut b = std::fs::DirBuilder::new();
                    b.recursive(true);
                    #[cfg(unix)]
                    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
                    b.create(dir).map_err(|e| {
                        Error::Config(format!("{key}.key_directory: {}: {e}", dir.display()))
                    })?;
                    Some(dir.canonicalize().map_err(|e| {
                        Error::Config(format!("{key}.key_directory: {}: {e}", dir.display()))
                    })?)
                }
                (None, "local") if !settings.contains_key("key_file") => {
                    return Err(Error::Config(format!(
                        "{key}: type local needs key_directory (one key per repository, made by the server) or key_file (one key shared by every repository)"
                    )));
                }
                (None, _) => None,
            };
            if let Some(p) = d.allowed.iter().position(String::is_empty) {
                return Err(Error::Config(format!("{key}.allowed[{p}]: empty pattern")));
            }
            providers.insert(
                name.clone(),
                Provider {
                    kind: d.kind.clone(),
                    key_directory,
                    allowed: d.allowed.clone(),
                    settings,
                    key_names: factory.key_name_settings(),
                },
            );
        }
        let mut storage = BTreeMap::new();
        let add_fs = |storage: &mut BTreeMap<String, Storage>,
                      name: String,
                      root: &Path,
                      allowed: Vec<String>|
         -> Result<()> {
            let key = format!("server.storage.{name}.root");
            if !root.is_absolute() {
                return Err(Error::Config(format!("{key}: must be an absolute path")));
            }
            std::fs::create_dir_all(root)
                .map_err(|e| Error::Config(format!("{key}: {}: {e}", root.display())))?;
            let real = root
                .canonicalize()
                .map_err(|e| Error::Config(format!("{key}: {}: {e}", root.display())))?;
            storage.insert(
                name,
                Storage {
                    kind: "fs".into(),
                    root: Some(real),
                    allowed,
                    settings: Settings::new(),
                },
            );
            Ok(())
        };
        for (i, root) in server.fs_roots.iter().enumerate() {
            add_fs(
                &mut storage,
                format!("fs_roots[{i}]"),
                root,
                vec!["*".into()],
            )?;
        }
        for (name, d) in &server.storage {
            let key = format!("server.storage.{name}");
            if !valid_name(name) {
                return Err(Error::Config(format!(
                    "{key}: a storage name is 1 to 64 of A-Z a-z 0-9 . _ -"
                )));
            }
            let allowed = d.allowed.clone().unwrap_or_else(|| vec!["*".into()]);
            match d.kind.as_str() {
                "fs" => {
                    let root = d.root.as_ref().ok_or_else(|| {
                        Error::Config(format!("{key}.root: required for type fs"))
                    })?;
                    if let Some(k) = d.settings.keys().next() {
                        return Err(Error::Config(format!(
                            "{key}.{k}: not a setting of type fs"
                        )));
                    }
                    add_fs(&mut storage, name.clone(), root, allowed)?;
                }
                "s3" | "azure" | "gcs" => {
                    if d.root.is_some() {
                        return Err(Error::Config(format!("{key}.root: only for type fs")));
                    }
                    let settings = strings(&key, &d.settings)?;
                    check_client_keys(&key, &d.kind, &settings)?;
                    storage.insert(
                        name.clone(),
                        Storage {
                            kind: d.kind.clone(),
                            root: None,
                            allowed,
                            settings,
                        },
                    );
                }
                other => {
                    return Err(Error::Config(format!(
                        "{key}.type: unknown storage type {other:?} (supported: fs, s3, azure, gcs)"
                    )));
                }
            }
        }
        let declared = Self { providers, storage };
        declared.check_separation(server)?;
        Ok(declared)
    }

    /// Key directories, storage roots and the system repository stay apart: a caller who may
    /// register an unencrypted `fs` repository could otherwise read key files or the system
    /// state as objects.
    fn check_separation(&self, server: &crate::config::ServerSection) -> Result<()> {
        let sys = &server.system_repository;
        let sys_dir = (sys.store_type == "fs")
            .then(|| sys.settings.get("location"))
            .flatten()
            .map(|l| canonical_without_creating(Path::new(l)).unwrap_or_else(|_| l.into()));
        let sys_key = sys
            .crypto_settings
            .as_ref()
            .and_then(|c| c.settings.get("key_file"))
            .map(|k| canonical_without_creating(Path::new(k)).unwrap_or_else(|_| k.into()));
        let apart = |a: &Path, b: &Path| !a.starts_with(b) && !b.starts_with(a);
        for (name, s) in &self.storage {
            let Some(root) = &s.root else { continue };
            if let Some(d) = &sys_dir
                && !apart(root, d)
            {
                return Err(Error::Config(format!(
                    "server.system_repository.settings.location: {} overlaps the fs storage root of {name} ({}); keep the system repository outside every root",
                    d.display(),
                    root.display()
                )));
            }
            if let Some(k) = &sys_key
                && k.starts_with(root)
            {
                return Err(Error::Config(format!(
                    "server.system_repository.crypto_settings.settings.key_file: lies inside the fs storage root of {name}; keep keys outside every root"
                )));
            }
        }
        for (name, p) in &self.providers {
            let Some(dir) = &p.key_directory else {
                continue;
            };
            let key = format!("server.key_providers.{name}.key_directory");
            for (sname, s) in &self.storage {
                if let Some(root) = &s.root
                    && !apart(root, dir)
                {
                    return Err(Error::Config(format!(
                        "{key}: overlaps the fs storage root of {sname} ({}); keep key directories outside every root",
                        root.display()
                    )));
                }
            }
            if let Some(d) = &sys_dir
                && !apart(d, dir)
            {
                return Err(Error::Config(format!(
                    "{key}: overlaps the system repository"
                )));
            }
            if let Some(k) = &sys_key
                && k.starts_with(dir)
            {
                return Err(Error::Config(format!(
                    "{key}: holds the system repository's key file; give the system key a place of its own"
                )));
            }
        }
        Ok(())
    }

    /// Whether any storage backend is declared (else only the system repository exists).
    #[must_use]
    pub fn provider_names(&self) -> Vec<&str> {
        self.providers.keys().map(String::as_str).collect()
    }

    /// Checks a request's `crypto_settings` (or an escrow entry, `field` says which) and returns
    /// what the server records. For a `local` provider with a key directory, `key_file` is the
    /// name of the key file: `existing`'s if the repository already has one for this provider,
    /// else a new one.
    ///
    /// # Errors
    /// A message naming the field, safe to show the caller.
    pub fn crypto_record(
        &self,
        field: &str,
        request: &CryptoSettings,
        repo: &str,
        existing: Option<&CryptoSettings>,
    ) -> std::result::Result<CryptoSettings, String> {
        let name = &request.key_provider_name;
        let p = self.providers.get(name).ok_or_else(|| {
            bad(
                format!("{field}.key_provider_name"),
                format!(
                    "no key provider {name:?} is declared by the operator (server.key_providers; declared: {})",
                    self.provider_names().join(", ")
                ),
            )
        })?;
        if request.key_provider_type != p.kind {
            return Err(bad(
                format!("{field}.key_provider_type"),
                format!(
                    "key provider {name:?} is of type {:?}, not {:?}",
                    p.kind, request.key_provider_type
                ),
            ));
        }
        for (k, v) in &request.settings {
            if !p.key_names.contains(&k.as_str()) {
                return Err(bad(
                    format!("{field}.settings.{k}"),
                    format!(
                        "not accepted in a request: how a key is reached (files, commands, variables, addresses, credentials) is set by the operator in server.key_providers.{name}{}",
                        if p.key_names.is_empty() {
                            String::new()
                        } else {
                            format!("; a request may give only {}", p.key_names.join(", "))
                        }
                    ),
                ));
            }
            if !p.allowed.iter().any(|pat| glob(pat, v)) {
                return Err(bad(
                    format!("{field}.settings.{k}"),
                    format!(
                        "{v:?} is not among the keys the operator allows for key provider {name:?}"
                    ),
                ));
            }
        }
        let mut record = request.clone();
        if p.key_directory.is_some() {
            let file = existing
                .filter(|e| e.key_provider_name == *name)
                .and_then(|e| e.settings.get(SERVER_KEY_FILE))
                .cloned()
                .map_or_else(
                    || -> std::result::Result<String, String> {
                        let mut r = [0u8; 8];
                        aws_lc_rs::rand::fill(&mut r)
                            .map_err(|_| "the server's random source failed".to_owned())?;
                        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
                        Ok(format!("{repo}-{hex}.key"))
                    },
                    Ok,
                )?;
            record.settings.insert(SERVER_KEY_FILE.into(), file);
        }
        Ok(record)
    }

    /// When a repository is registered again under the name it had (its data stays in storage
    /// when it is unregistered), finds the key file the server made for it before: a file
    /// `<repo>-….key` in the provider's key directory holding the key with `fingerprint` (the
    /// one the registration in storage names). Only files made for the same repository name
    /// are considered, so a request can never reach another repository's key.
    pub fn adopt_key_file(&self, record: &mut CryptoSettings, repo: &str, fingerprint: &str) {
        let Some(p) = self.providers.get(&record.key_provider_name) else {
            return;
        };
        let Some(dir) = &p.key_directory else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let prefix = format!("{repo}-");
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&prefix) || !server_key_file_name_ok(&name) {
                continue;
            }
            let rest = &name[prefix.len()..name.len() - ".key".len()];
            if rest.len() != 16 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            if encrypt_repo_keys::local::LocalProvider::load(&e.path())
                .is_ok_and(|k| k.fingerprint() == fingerprint)
            {
                record.settings.insert(SERVER_KEY_FILE.into(), name);
                return;
            }
        }
    }

    /// The settings a provider is built with for a recorded `crypto_settings`: the operator's
    /// declaration, the recorded key name, and for `local` the key file in the key directory.
    ///
    /// # Errors
    /// A message naming the field (a registration kept from an earlier version that still
    /// carries access settings, a provider the operator no longer declares).
    pub fn effective(
        &self,
        field: &str,
        record: &CryptoSettings,
    ) -> std::result::Result<CryptoSettings, String> {
        let name = &record.key_provider_name;
        let p = self.providers.get(name).ok_or_else(|| {
            bad(
                format!("{field}.key_provider_name"),
                format!("key provider {name:?} is no longer declared in server.key_providers"),
            )
        })?;
        if record.key_provider_type != p.kind {
            return Err(bad(
                format!("{field}.key_provider_type"),
                format!("server.key_providers.{name} is now of type {:?}", p.kind),
            ));
        }
        let mut settings = p.settings.clone();
        for (k, v) in &record.settings {
            if p.key_names.contains(&k.as_str()) {
                settings.insert(k.clone(), v.clone());
            } else if k == SERVER_KEY_FILE
                && let Some(dir) = &p.key_directory
                && server_key_file_name_ok(v)
            {
                settings.insert(k.clone(), dir.join(v).to_string_lossy().into_owned());
            } else {
                return Err(bad(
                    format!("{field}.settings.{k}"),
                    "the registration carries an access setting (kept from a version before operator-declared key providers); unregister and register the repository again naming a declared provider (README: Migrating registrations)",
                ));
            }
        }
        Ok(CryptoSettings {
            key_provider_name: name.clone(),
            key_provider_type: p.kind.clone(),
            settings,
        })
    }

    /// Checks a request's storage (`type` and `settings`) and resolves it: which declared
    /// backend, the canonical location. Nothing is created.
    ///
    /// # Errors
    /// A message naming the setting, safe to show the caller (it never names a server path the
    /// caller did not give).
    pub fn storage(
        &self,
        store_type: &str,
        settings: &BTreeMap<String, String>,
    ) -> std::result::Result<ResolvedStorage, String> {
        if !["fs", "s3", "azure", "gcs"].contains(&store_type) {
            return Err(bad(
                "type",
                format!("unknown repository type {store_type:?} (supported: fs, s3, azure, gcs)"),
            ));
        }
        for k in settings.keys() {
            if k != "client" && !storage_identity(store_type).contains(&k.as_str()) {
                return Err(bad(
                    format!("settings.{k}"),
                    format!(
                        "not accepted in a request: endpoints, regions and credentials are set by the operator in server.storage; a request gives only client, {}",
                        storage_identity(store_type).join(", ")
                    ),
                ));
            }
        }
        let of_type: Vec<(&String, &Storage)> = self
            .storage
            .iter()
            .filter(|(_, s)| s.kind == store_type)
            .collect();
        if store_type == "fs" {
            return self.fs_storage(settings, &of_type);
        }
        let (name, s) = match settings.get("client") {
            Some(c) => of_type
                .iter()
                .find(|(n, _)| *n == c)
                .copied()
                .ok_or_else(|| {
                    bad(
                        "settings.client",
                        format!("no {store_type} storage {c:?} is declared (server.storage)"),
                    )
                })?,
            None => match of_type.as_slice() {
                [one] => *one,
                [] => {
                    return Err(bad(
                        "type",
                        format!("the operator declares no {store_type} storage (server.storage)"),
                    ));
                }
                many => many
                    .iter()
                    .find(|(n, _)| n.as_str() == "default")
                    .copied()
                    .ok_or_else(|| {
                        bad(
                            "settings.client",
                            format!(
                                "required: several {store_type} storages are declared ({})",
                                many.iter()
                                    .map(|(n, _)| n.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?,
            },
        };
        let bkey = bucket_key(store_type);
        let (mut bucket, mut prefix) = (settings.get(bkey).cloned(), String::new());
        if let Some(u) = settings.get("url") {
            let parsed = url::Url::parse(u).map_err(|_| bad("settings.url", "not a URL"))?;
            if parsed.scheme() != scheme(store_type) {
                return Err(bad(
                    "settings.url",
                    format!("must be a {}:// URL", scheme(store_type)),
                ));
            }
            bucket = parsed.host_str().map(ToOwned::to_owned);
            parsed.path().clone_into(&mut prefix);
        }
        if let Some(b) = settings.get("base_path") {
            prefix = [prefix.as_str(), b.as_str()].join("/");
        }
        if let Some(fixed) = s.settings.get(bkey) {
            match &bucket {
                Some(b) if b != fixed => {
                    return Err(bad(
                        format!("settings.{bkey}"),
                        format!("storage {name:?} is limited to one {bkey} by the operator"),
                    ));
                }
                _ => bucket = Some(fixed.clone()),
            }
        }
        let bucket = bucket
            .filter(|b| !b.is_empty() && !b.contains('/'))
            .ok_or_else(|| bad(format!("settings.{bkey}"), "required (or settings.url)"))?;
        let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
        if parts.iter().any(|p| *p == "." || *p == "..") {
            return Err(bad(
                "settings.base_path",
                "may not contain . or .. segments",
            ));
        }
        if parts
            .first()
            .is_some_and(|p| encrypt_repo_store::is_reserved_segment(p))
        {
            return Err(bad(
                "settings.base_path",
                "may not start with the reserved prefix .encrypt-repo",
            ));
        }
        let prefix = parts.join("/");
        let shown = if prefix.is_empty() {
            bucket.clone()
        } else {
            format!("{bucket}/{prefix}")
        };
        if !s.allowed.iter().any(|p| glob(p, &shown)) {
            return Err(bad(
                format!("settings.{bkey}"),
                format!(
                    "{shown:?} is not among the locations the operator allows in storage {name:?}"
                ),
            ));
        }
        let endpoint = s
            .settings
            .get("endpoint")
            .or_else(|| s.settings.get("account"))
            .cloned()
            .unwrap_or_default();
        let mut record = BTreeMap::from([
            ("client".to_owned(), name.clone()),
            (bkey.to_owned(), bucket.clone()),
        ]);
        if !prefix.is_empty() {
            record.insert("base_path".into(), prefix.clone());
        }
        Ok(ResolvedStorage {
            record,
            location: LocationKey(format!("{store_type}|{endpoint}|{shown}/")),
            storage: name.clone(),
            dir: None,
            bucket,
            prefix,
        })
    }

    fn fs_storage(
        &self,
        settings: &BTreeMap<String, String>,
        of_type: &[(&String, &Storage)],
    ) -> std::result::Result<ResolvedStorage, String> {
        let location = settings
            .get("location")
            .ok_or_else(|| bad("settings.location", "required for type fs"))?;
        let given = Path::new(location);
        if given
            .components()
            .any(|c| matches!(c, Component::ParentDir))
            || location.is_empty()
        {
            return Err(bad("settings.location", "must be a path without '..'"));
        }
        let candidates: Vec<&(&String, &Storage)> = match settings.get("client") {
            Some(c) => {
                let found: Vec<_> = of_type.iter().filter(|(n, _)| *n == c).collect();
                if found.is_empty() {
                    return Err(bad(
                        "settings.client",
                        format!("no fs storage {c:?} is declared (server.storage)"),
                    ));
                }
                found
            }
            None => of_type.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(bad(
                "settings.location",
                "the operator declares no fs storage (server.storage or server.fs_roots)",
            ));
        }
        if !given.is_absolute() && candidates.len() > 1 {
            return Err(bad(
                "settings.location",
                "a relative location needs settings.client: several fs storages are declared",
            ));
        }
        for (name, s) in candidates {
            let Some(root) = &s.root else { continue };
            let wanted = if given.is_absolute() {
                given.to_path_buf()
            } else {
                root.join(given)
            };
            let Ok(real) = canonical_without_creating(&wanted) else {
                continue;
            };
            let Ok(rel) = real.strip_prefix(root) else {
                continue;
            };
            let rel = rel.to_string_lossy();
            if rel.is_empty() {
                return Err(bad(
                    "settings.location",
                    "is the storage root itself; give a directory under it",
                ));
            }
            if rel
                .split('/')
                .next()
                .is_some_and(encrypt_repo_store::is_reserved_segment)
            {
                return Err(bad("settings.location", "may not be named .encrypt-repo"));
            }
            if !s.allowed.iter().any(|p| glob(p, &rel)) {
                return Err(bad(
                    "settings.location",
                    format!("not among the locations the operator allows in storage {name:?}"),
                ));
            }
            let shown = real.to_string_lossy().into_owned();
            let mut record = BTreeMap::from([("location".to_owned(), shown.clone())]);
            if !name.starts_with("fs_roots[") {
                record.insert("client".into(), (*name).clone());
            }
            return Ok(ResolvedStorage {
                record,
                location: LocationKey(format!("fs:{}/", shown.trim_end_matches('/'))),
                storage: (*name).clone(),
                dir: Some(real),
                bucket: String::new(),
                prefix: String::new(),
            });
        }
        Err(bad(
            "settings.location",
            "not under any fs storage root the operator declares (server.storage, server.fs_roots; symlinks are followed)",
        ))
    }

    /// Builds the backend of resolved storage; for `fs` with `create`, makes the directory
    /// (and checks that no symlink swapped in meanwhile leads elsewhere).
    ///
    /// # Errors
    /// A message safe to show the caller.
    pub fn backend(
        &self,
        resolved: &ResolvedStorage,
        create: bool,
    ) -> std::result::Result<Backend, String> {
        let s = self
            .storage
            .get(&resolved.storage)
            .ok_or_else(|| bad("settings.client", "the storage is no longer declared"))?;
        if let Some(dir) = &resolved.dir {
            if create {
                std::fs::create_dir_all(dir)
                    .map_err(|_| bad("settings.location", "the directory cannot be created"))?;
            }
            let real = dir
                .canonicalize()
                .map_err(|_| bad("settings.location", "the directory cannot be opened"))?;
            if real != *dir {
                return Err(bad(
                    "settings.location",
                    "changed while being registered (a symlink?)",
                ));
            }
            return LocalFileSystem::new_with_prefix(&real)
                .map(|s| Arc::new(s) as Backend)
                .map_err(|_| bad("settings.location", "the directory cannot be opened"));
        }
        let url = format!("{}://{}", scheme(&s.kind), resolved.bucket);
        let bkey = bucket_key(&s.kind);
        let opts = s.settings.iter().filter(|(k, _)| k.as_str() != bkey);
        let store: Backend = build_client(&s.kind, &url, opts)?;
        Ok(if resolved.prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, resolved.prefix.as_str()))
        })
    }
}

fn build_client<'a>(
    kind: &str,
    url: &str,
    opts: impl Iterator<Item = (&'a String, &'a String)>,
) -> std::result::Result<Backend, String> {
    let invalid = || "settings: the storage client could not be built".to_owned();
    let unknown = |k: &str| format!("{k}: not a setting of this storage type");
    match kind {
        "s3" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url);
            for (k, v) in opts {
                b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
            }
            b.build()
                .map(|s| Arc::new(s) as Backend)
                .map_err(|_| invalid())
        }
        "azure" => {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url);
            for (k, v) in opts {
                b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
            }
            b.build()
                .map(|s| Arc::new(s) as Backend)
                .map_err(|_| invalid())
        }
        _ => {
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
            for (k, v) in opts {
                b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
            }
            b.build()
                .map(|s| Arc::new(s) as Backend)
                .map_err(|_| invalid())
        }
    }
}

fn check_client_keys(key: &str, kind: &str, settings: &Settings) -> Result<()> {
    let bkey = bucket_key(kind);
    for k in settings.keys().filter(|k| k.as_str() != bkey) {
        let ok = match kind {
            "s3" => k.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok(),
            "azure" => k.parse::<object_store::azure::AzureConfigKey>().is_ok(),
            _ => k.parse::<object_store::gcp::GoogleConfigKey>().is_ok(),
        };
        if !ok {
            return Err(Error::Config(format!(
                "{key}.{k}: not a setting of storage type {kind}"
            )));
        }
    }
    Ok(())
}

/// The [`LocationKey`] of the system repository, from its operator-written settings.
#[must_use]
pub fn system_location(req: &RegistrationRequest) -> Option<LocationKey> {
    if req.store_type == "fs" {
        let l = req.settings.get("location")?;
        let real = canonical_without_creating(Path::new(l)).ok()?;
        return Some(LocationKey(format!(
            "fs:{}/",
            real.to_string_lossy().trim_end_matches('/')
        )));
    }
    let bkey = bucket_key(&req.store_type);
    let (bucket, mut prefix) = match req
        .settings
        .get("url")
        .and_then(|u| url::Url::parse(u).ok())
    {
        Some(u) => (u.host_str()?.to_owned(), u.path().to_owned()),
        None => (req.settings.get(bkey)?.clone(), String::new()),
    };
    if let Some(b) = req
        .settings
        .get("base_path")
        .or_else(|| req.settings.get("prefix"))
    {
        prefix = format!("{prefix}/{b}");
    }
    let prefix: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
    let shown = std::iter::once(bucket.as_str())
        .chain(prefix)
        .collect::<Vec<_>>()
        .join("/");
    let endpoint = req
        .settings
        .get("endpoint")
        .or_else(|| req.settings.get("account"))
        .cloned()
        .unwrap_or_default();
    Some(LocationKey(format!(
        "{}|{endpoint}|{shown}/",
        req.store_type
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_a_shell_pattern_without_special_slashes() {
        assert!(glob("alias/team-*", "alias/team-a"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(glob("arn:aws:kms:*:key/?bc", "arn:aws:kms:eu:key/abc"));
        assert!(!glob("alias/team-*", "alias/other"));
        assert!(!glob("abc", "abcd"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("b/*", "b/x/y"));
        // Adversarial input ends quickly (one backtrack point: no exponential blow-up).
        let text = format!("{}b", "a".repeat(5_000));
        assert!(!glob(&"*a".repeat(50), &text));
        assert!(glob(&"*a".repeat(50), &"a".repeat(5_000)));
    }

    #[test]
    fn locations_overlap_on_whole_segments_only() {
        let a = LocationKey("fs:/r/a/".into());
        let ab = LocationKey("fs:/r/a/b/".into());
        let a2 = LocationKey("fs:/r/a2/".into());
        assert!(a.overlaps(&ab) && ab.overlaps(&a) && a.overlaps(&a));
        assert!(!a.overlaps(&a2));
    }
}
