//! The shared state of a node: configuration, system repository, the loaded security model and
//! registrations, opened repositories; bootstrap and reload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use encrypt_repo_keys::ProviderRegistry;
use encrypt_repo_store::{EncryptedStore, RegistrationRequest, Repository, RepositoryOptions};

use axum::http::StatusCode;
use object_store::ObjectStoreExt as _;

use crate::authn::Authenticator;
use crate::backend::Backend;
use crate::config::ServerConfig;
use crate::error::{ApiError, Error, Result};
use crate::security::{InternalUser, RoleMapping, SecurityData, SecurityModel};
use crate::state::{
    REPOSITORIES_DOC, RegistrationSet, Registrations, SECURITY_DOC, SECURITYCONFIG_DOC,
    SystemStore, Versioned, WriteError, registration_doc,
};

/// Environment variable with the admin password for the first start.
pub const ADMIN_PASSWORD_ENV: &str = "ENCRYPT_REPO_ADMIN_PASSWORD";
/// Environment variable naming a file with the admin password for the first start.
pub const ADMIN_PASSWORD_FILE_ENV: &str = "ENCRYPT_REPO_ADMIN_PASSWORD_FILE";
/// The user the first start creates.
pub const ADMIN_USER: &str = "admin";

/// What a node holds in memory: the last generations it read.
#[derive(Debug)]
pub struct Loaded {
    /// The security document as read.
    pub security: Versioned<SecurityData>,
    /// Its effective model.
    pub model: Arc<SecurityModel>,
    /// The registrations as read, one document per repository.
    pub registrations: RegistrationSet,
}

/// The `config.dynamic` a node runs with and the authentication chain built from it.
///
/// Until a `securityconfig` PUT or PATCH stores a document in the system repository, that is
/// the node's own `config.yml`; afterwards every node sharing the system repository runs with
/// the stored document (its `server` and `restapi` sections stay each node's own).
#[derive(Debug)]
pub struct Runtime {
    /// Generation of the stored `securityconfig` document in force (0: none stored).
    pub generation: u64,
    /// The configuration in force: this node's file with the stored `config.dynamic`, if any.
    pub config: Arc<ServerConfig>,
    /// The authentication chain of that configuration.
    pub authn: Arc<Authenticator>,
}

impl Runtime {
    /// The runtime of a stored document (`None`: the file's own `config.dynamic`).
    fn build(
        file: &ServerConfig,
        stored: &Versioned<Option<serde_json::Value>>,
        previous: Option<&Self>,
    ) -> Result<Self> {
        let config = match &stored.value {
            None => file.clone(),
            Some(v) => file.with_dynamic(crate::config::Dynamic::from_json(v.clone())?)?,
        };
        let authn = match previous {
            Some(p) => Authenticator::rebuilt(&config, &p.authn, &p.config)?,
            None => Authenticator::new(&config)?,
        };
        Ok(Self {
            generation: stored.generation,
            config: Arc::new(config),
            authn: Arc::new(authn),
        })
    }
}

/// A caller's registration request, checked: what the server records, and where it is.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The registration the server keeps: the caller's request with the canonical location,
    /// the storage's name and, for local keys, the server-made key file name.
    pub record: RegistrationRequest,
    /// The storage it resolved to.
    pub storage: crate::declared::ResolvedStorage,
}

/// An opened repository and the request it was opened with.
type Opened = (RegistrationRequest, Arc<EncryptedStore<Backend>>);

/// One node's state.
#[derive(Debug)]
pub struct App {
    /// The configuration as read from the node's file (for `config.dynamic`, which a stored
    /// `securityconfig` document may replace, see [`App::runtime`]).
    pub config: Arc<ServerConfig>,
    /// The key providers.
    pub registry: Arc<ProviderRegistry>,
    /// The operator's key providers and storage backends.
    pub declared: Arc<crate::declared::Declared>,
    /// Where the system repository is (no repository may overlap it).
    pub system_location: Option<crate::declared::LocationKey>,
    /// The system repository.
    pub system: SystemStore,
    /// The audit log.
    pub audit: Arc<crate::audit::Auditor>,
    loaded: RwLock<Arc<Loaded>>,
    runtime: RwLock<Arc<Runtime>>,
    opened: Mutex<HashMap<String, Opened>>,
    /// The served TLS configuration, once `serve` listens with TLS (for `ssl/http/reloadcerts`).
    pub tls: std::sync::OnceLock<axum_server::tls_rustls::RustlsConfig>,
    /// The object uploads in progress, per user (`server.limits.max_uploads_per_user`).
    pub uploads: Arc<crate::limits::Uploads>,
}

/// The provider registry of the service: `local`, `passphrase`, `exec`, `aws-kms`, `openbao`,
/// `azure-key-vault`, `gcp-kms`.
#[must_use]
pub fn provider_registry() -> ProviderRegistry {
    let mut r = ProviderRegistry::with_builtin();
    r.register(Arc::new(encrypt_repo_kms_aws::AwsKmsFactory::new()));
    r.register(Arc::new(encrypt_repo_kms_openbao::OpenBaoFactory));
    r.register(Arc::new(encrypt_repo_kms_azure::AzureKeyVaultFactory::new()));
    r.register(Arc::new(encrypt_repo_kms_gcp::GcpKmsFactory::new()));
    r
}

fn store_err(e: WriteError) -> Error {
    Error::System(e.to_string())
}

/// The admin password for the first start, from the environment or a file.
///
/// # Errors
/// [`Error::NoAdminPassword`] when neither is set or the password is empty;
/// [`Error::Config`] for an unreadable file.
pub fn admin_password_from_env() -> Result<zeroize::Zeroizing<String>> {
    if let Ok(p) = std::env::var(ADMIN_PASSWORD_ENV)
        && !p.is_empty()
    {
        return Ok(zeroize::Zeroizing::new(p));
    }
    if let Ok(file) = std::env::var(ADMIN_PASSWORD_FILE_ENV) {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&file).map_err(|e| {
            Error::Config(format!("{ADMIN_PASSWORD_FILE_ENV}: reading {file}: {e}"))
        })?);
        let p = text.trim_end_matches(['\r', '\n']);
        if !p.is_empty() {
            return Ok(zeroize::Zeroizing::new(p.to_owned()));
        }
    }
    Err(Error::NoAdminPassword)
}

impl App {
    /// Opens the system repository, bootstraps it on first start (with `admin_password`,
    /// asked only then) and loads the state.
    ///
    /// # Errors
    /// [`Error::NoAdminPassword`] on a first start without a password; system repository errors.
    pub async fn start(
        config: ServerConfig,
        registry: ProviderRegistry,
        admin_password: impl FnOnce() -> Result<zeroize::Zeroizing<String>>,
    ) -> Result<Arc<Self>> {
        config.validate()?;
        // A broken config.yml is refused even when a stored configuration will replace its
        // `config.dynamic`: the file is what the node runs with until one is stored.
        Authenticator::new(&config)?;
        let declared = crate::declared::Declared::new(&config.server, &registry)?;
        let system = SystemStore::open(&config.server.system_repository, &registry).await?;
        let system_location = crate::declared::system_location(&config.server.system_repository);
        let security: Versioned<SecurityData> =
            system.read(SECURITY_DOC).await.map_err(store_err)?;
        if security.generation == 0 {
            let password = admin_password()?;
            let hash =
                crate::password::hash(&password).map_err(|e| Error::System(e.to_string()))?;
            let mut data = SecurityData::default();
            data.internalusers.insert(
                ADMIN_USER.into(),
                InternalUser {
                    hash,
                    reserved: true,
                    description: Some("created at the first start".into()),
                    ..InternalUser::default()
                },
            );
            data.rolesmapping.insert(
                "all_access".into(),
                RoleMapping {
                    users: vec![ADMIN_USER.into()],
                    ..RoleMapping::default()
                },
            );
            match system.write(SECURITY_DOC, 0, &data).await {
                Ok(_) => tracing::info!("first start: created user admin (role all_access)"),
                // Another node bootstrapped at the same moment: use theirs.
                Err(WriteError::Conflict) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Self::split_registrations(&system).await?;
        let loaded = Self::read_state(&system).await?;
        let stored: Versioned<Option<serde_json::Value>> =
            system.read(SECURITYCONFIG_DOC).await.map_err(store_err)?;
        let runtime = Runtime::build(&config, &stored, None).map_err(|e| {
            Error::Config(format!(
                "the security configuration stored through the REST API (state/{SECURITYCONFIG_DOC} generation {}) cannot run on this node: {e}",
                stored.generation
            ))
        })?;
        if stored.value.is_some() {
            tracing::info!(
                generation = stored.generation,
                "config.dynamic comes from the system repository (changed through the securityconfig API), not from config.yml"
            );
        }
        let jwt_headers = crate::audit::jwt_headers(&runtime.config);
        let audit =
            crate::audit::Auditor::start(&config.server.audit, &system, jwt_headers).await?;
        let uploads = crate::limits::Uploads::new(&config.server.limits);
        Ok(Arc::new(Self {
            uploads,
            config: Arc::new(config),
            registry: Arc::new(registry),
            declared: Arc::new(declared),
            system_location,
            system,
            audit,
            loaded: RwLock::new(Arc::new(loaded)),
            runtime: RwLock::new(Arc::new(runtime)),
            opened: Mutex::default(),
            tls: std::sync::OnceLock::new(),
        }))
    }

    /// Moves the registrations of the single document of earlier versions into one document
    /// per repository, then empties it. Idempotent, and safe with several nodes starting at once:
    /// a repository that already has a document (even a removal) is left alone, and every write
    /// is create-only, so a lost race changes nothing.
    async fn split_registrations(system: &SystemStore) -> Result<()> {
        let old: Versioned<Registrations> =
            system.read(REPOSITORIES_DOC).await.map_err(store_err)?;
        if old.value.is_empty() {
            return Ok(());
        }
        let current = system.read_registrations().await.map_err(store_err)?;
        for (name, req) in &old.value {
            if current.generations.contains_key(name) {
                continue;
            }
            match system.write(&registration_doc(name), 0, &Some(req)).await {
                Ok(_) | Err(WriteError::Conflict) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        match system
            .write(REPOSITORIES_DOC, old.generation, &Registrations::new())
            .await
        {
            Ok(_) | Err(WriteError::Conflict) => {}
            Err(e) => return Err(store_err(e)),
        }
        tracing::info!(
            repositories = old.value.len(),
            "moved the repository registrations into one document each"
        );
        Ok(())
    }

    async fn read_state(system: &SystemStore) -> Result<Loaded> {
        let security: Versioned<SecurityData> =
            system.read(SECURITY_DOC).await.map_err(store_err)?;
        let model = SecurityModel::new(security.value.clone()).map_err(|e| {
            Error::System(format!(
                "security configuration generation {}: {e}",
                security.generation
            ))
        })?;
        let registrations = system.read_registrations().await.map_err(store_err)?;
        Ok(Loaded {
            security,
            model: Arc::new(model),
            registrations,
        })
    }

    /// What this node currently holds.
    #[must_use]
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the state again; opened repositories whose registration changed or went are closed.
    ///
    /// # Errors
    /// System repository errors (the previous state stays in force).
    pub async fn reload(&self) -> Result<()> {
        let fresh = Self::read_state(&self.system).await?;
        self.install(fresh);
        self.audit.reload(&self.system).await;
        let stored: Versioned<Option<serde_json::Value>> = self
            .system
            .read(SECURITYCONFIG_DOC)
            .await
            .map_err(store_err)?;
        if stored.generation > self.runtime().generation {
            let built = Runtime::build(&self.config, &stored, Some(&self.runtime()));
            match built {
                Ok(r) => self.install_runtime(r),
                // Keep authenticating as before, and say so at every reload until fixed.
                Err(e) => tracing::error!(
                    generation = stored.generation,
                    error = %e,
                    "the stored security configuration cannot run on this node; keeping the previous one"
                ),
            }
        }
        Ok(())
    }

    /// The `config.dynamic` in force and its authentication chain.
    #[must_use]
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The authentication chain in force.
    #[must_use]
    pub fn authn(&self) -> Arc<Authenticator> {
        self.runtime().authn.clone()
    }

    fn install_runtime(&self, fresh: Runtime) {
        let mut cur = self
            .runtime
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Never go back to an older generation (a slow reload racing a write).
        if fresh.generation > cur.generation {
            self.audit
                .set_jwt_headers(crate::audit::jwt_headers(&fresh.config));
            *cur = Arc::new(fresh);
        }
    }

    /// Stores `dynamic` as the `config.dynamic` of every node sharing the system repository,
    /// as the generation after `base` (the one it was read at), and runs with it at once.
    ///
    /// # Errors
    /// 400 naming the key when `dynamic` is invalid or cannot run on this node (a `clientcert`
    /// domain without `server.tls`); 409 when another change came first; 500 for storage.
    pub async fn write_securityconfig(
        &self,
        base: u64,
        dynamic: serde_json::Value,
    ) -> Result<(), ApiError> {
        let previous = self.runtime();
        let stored = Versioned {
            generation: base + 1,
            value: Some(dynamic),
        };
        let runtime = Runtime::build(&self.config, &stored, Some(&previous))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        // Stored normalised (defaults filled in), so what GET shows is what runs.
        let normalised = runtime.config.config.dynamic.to_json();
        match self
            .system
            .write(SECURITYCONFIG_DOC, base, &Some(&normalised))
            .await
        {
            Ok(_) => {}
            Err(WriteError::Conflict) => {
                return Err(ApiError::conflict(
                    "the security configuration (securityconfig)",
                ));
            }
            Err(e) => return Err(ApiError::internal(&e)),
        }
        self.audit.config_changed(
            SECURITYCONFIG_DOC,
            &crate::secapi::redacted(&previous.config.config.dynamic.to_json()),
            &crate::secapi::redacted(&normalised),
        );
        self.install_runtime(runtime);
        Ok(())
    }

    fn install(&self, mut fresh: Loaded) {
        let mut cur = self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Never go back to an older generation (a slow reload racing a write).
        if fresh.security.generation < cur.security.generation {
            fresh.security = cur.security.clone();
            fresh.model = cur.model.clone();
        }
        fresh.registrations.keep_newer(&cur.registrations);
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|name, (req, _)| fresh.registrations.value.get(name) == Some(req));
        *cur = Arc::new(fresh);
    }

    /// Writes a new security document based on the generation `base` was read at.
    ///
    /// # Errors
    /// 409 when another change came first; 400 for an invalid model; 500 for storage.
    pub async fn write_security(&self, base: u64, data: SecurityData) -> Result<(), ApiError> {
        let model =
            SecurityModel::new(data.clone()).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let generation = match self.system.write(SECURITY_DOC, base, &data).await {
            Ok(g) => g,
            Err(WriteError::Conflict) => {
                return Err(ApiError::conflict("the security configuration"));
            }
            Err(e) => return Err(ApiError::internal(&e)),
        };
        let cur = self.loaded();
        self.audit
            .config_changed(SECURITY_DOC, &cur.security.value, &data);
        self.install(Loaded {
            security: Versioned {
                generation,
                value: data,
            },
            model: Arc::new(model),
            registrations: cur.registrations.clone(),
        });
        Ok(())
    }

    /// Writes repository `name`'s registration (`None`: removes it) as the generation after
    /// `base`, the one it was read at.
    ///
    /// # Errors
    /// 409 when another change of this repository's registration came first; 500 for storage.
    pub async fn write_registration(
        &self,
        name: &str,
        base: u64,
        value: Option<RegistrationRequest>,
    ) -> Result<(), ApiError> {
        let generation = match self
            .system
            .write(&registration_doc(name), base, &value)
            .await
        {
            Ok(g) => g,
            Err(WriteError::Conflict) => {
                return Err(ApiError::conflict(&format!(
                    "the registration of repository [{name}]"
                )));
            }
            Err(e) => return Err(ApiError::internal(&e)),
        };
        let cur = self.loaded();
        let mut registrations = cur.registrations.clone();
        registrations.set(name, generation, value);
        self.install(Loaded {
            security: cur.security.clone(),
            model: cur.model.clone(),
            registrations,
        });
        Ok(())
    }

    /// Checks a caller's registration request for repository `repo` against the operator's
    /// declarations and the other registrations (see [`crate::declared`]).
    ///
    /// # Errors
    /// 400 naming the field.
    pub fn resolve(
        &self,
        repo: &str,
        req: &RegistrationRequest,
        existing: Option<&RegistrationRequest>,
    ) -> Result<Resolved, ApiError> {
        let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, "repository_exception", e);
        let storage = self
            .declared
            .storage(&req.store_type, &req.settings)
            .map_err(bad)?;
        let mut record = req.clone();
        record.settings = storage.record.clone();
        if req.encrypted {
            if let Some(c) = &req.crypto_settings {
                let old = existing.and_then(|e| e.crypto_settings.as_ref());
                record.crypto_settings = Some(
                    self.declared
                        .crypto_record("crypto_settings", c, repo, old)
                        .map_err(bad)?,
                );
            }
            for (i, e) in req.escrow.iter().enumerate() {
                let old = existing.and_then(|x| {
                    x.escrow
                        .iter()
                        .find(|o| o.key_provider_name == e.key_provider_name)
                });
                record.escrow[i] = self
                    .declared
                    .crypto_record(&format!("escrow[{i}]"), e, repo, old)
                    .map_err(bad)?;
            }
        }
        Ok(Resolved { record, storage })
    }

    /// The request a recorded registration is registered or opened with (the operator's
    /// access settings filled in) and the trusted access settings of each of its providers.
    ///
    /// # Errors
    /// 400 (or, for a stored registration, 500) naming the field.
    pub fn effective(
        &self,
        record: &RegistrationRequest,
    ) -> Result<(RegistrationRequest, RepositoryOptions), ApiError> {
        let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, "repository_exception", e);
        let mut effective = record.clone();
        let mut trusted = std::collections::BTreeMap::new();
        if let Some(c) = &record.crypto_settings {
            let e = self.declared.effective("crypto_settings", c).map_err(bad)?;
            trusted.insert(e.key_provider_name.clone(), e.clone());
            effective.crypto_settings = Some(e);
        }
        for (i, c) in record.escrow.iter().enumerate() {
            let e = self
                .declared
                .effective(&format!("escrow[{i}]"), c)
                .map_err(bad)?;
            trusted.insert(e.key_provider_name.clone(), e.clone());
            effective.escrow[i] = e;
        }
        let options = RepositoryOptions {
            trusted_access: Some(Arc::new(trusted)),
            status_check_interval: std::time::Duration::from_secs(
                self.config.server.key_status_interval_seconds,
            ),
            ..RepositoryOptions::default()
        };
        Ok((effective, options))
    }

    /// For a registration of a location that already holds a repository: the local key files
    /// the server made for it under this name before (see
    /// [`Declared::adopt_key_file`](crate::declared::Declared::adopt_key_file)).
    pub async fn adopt_key_files(
        &self,
        repo: &str,
        backend: &Backend,
        req: &mut RegistrationRequest,
    ) {
        let path = object_store::path::Path::from(format!(
            "{}/registration.json",
            encrypt_repo_store::RESERVED_PREFIX
        ));
        let Ok(got) = backend.get(&path).await else {
            return;
        };
        let Ok(bytes) = got.bytes().await else { return };
        let Ok(stored) = serde_json::from_slice::<encrypt_repo_store::Registration>(&bytes) else {
            return;
        };
        let stored = &stored.request;
        let pairs = req
            .crypto_settings
            .iter_mut()
            .zip(stored.crypto_settings.iter())
            .chain(req.escrow.iter_mut().zip(stored.escrow.iter()));
        for (mine, theirs) in pairs {
            if mine.key_provider_type == "local"
                && mine.key_provider_name == theirs.key_provider_name
                && let Some(f) = theirs.settings.get("fingerprint")
            {
                self.declared.adopt_key_file(mine, repo, f);
            }
        }
    }

    /// Refuses a location that equals, contains or lies inside the system repository or
    /// another registered repository.
    ///
    /// # Errors
    /// 400 naming the repository it overlaps.
    pub fn check_location(
        &self,
        repo: &str,
        location: &crate::declared::LocationKey,
        registrations: &Registrations,
    ) -> Result<(), ApiError> {
        let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, "repository_exception", e);
        if self
            .system_location
            .as_ref()
            .is_some_and(|s| s.overlaps(location))
        {
            return Err(bad(
                "settings: the location overlaps the service's system repository".into(),
            ));
        }
        for (name, other) in registrations {
            if name == repo {
                continue;
            }
            let Ok(theirs) = self.declared.storage(&other.store_type, &other.settings) else {
                continue;
            };
            if theirs.location.overlaps(location) {
                return Err(bad(format!(
                    "settings: the location equals, contains or lies inside that of repository [{name}]; one repository per location"
                )));
            }
        }
        Ok(())
    }

    /// The opened repository registered as `name`.
    ///
    /// # Errors
    /// 404 if not registered; errors of opening it.
    pub async fn repository(&self, name: &str) -> Result<Arc<EncryptedStore<Backend>>, ApiError> {
        let req = self
            .loaded()
            .registrations
            .value
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::repository_missing(name))?;
        if let Some((r, s)) = self
            .opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            && *r == req
        {
            return Ok(s.clone());
        }
        let stored = |e: ApiError| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "repository_exception",
                format!("[{name}] registration: {}", e.reason),
            )
        };
        let storage = self
            .declared
            .storage(&req.store_type, &req.settings)
            .map_err(|e| stored(ApiError::bad_request(e)))?;
        let backend = self
            .declared
            .backend(&storage, false)
            .map_err(|e| stored(ApiError::bad_request(e)))?;
        let (_, options) = self.effective(&req).map_err(stored)?;
        let repo = Repository::open(
            backend.clone(),
            &self.registry,
            &encrypt_repo_keys::Settings::new(),
            options,
        )
        .await
        .map_err(|e| crate::error::from_store(name, None, e))?;
        let store = Arc::new(EncryptedStore::new(Arc::new(backend), Arc::new(repo)));
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), (req, store.clone()));
        Ok(store)
    }

    /// Drops the unwrapped data keys of every opened repository and of the system repository
    /// (zeroized); the next read asks the key provider again. Returns how many repositories
    /// were flushed, the system repository not counted.
    pub async fn flush_key_caches(&self) -> usize {
        let stores: Vec<_> = self
            .opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|(_, s)| s.clone())
            .collect();
        for s in &stores {
            s.repository().flush_caches().await;
        }
        self.system.encrypted().repository().flush_caches().await;
        stores.len()
    }

    /// Closes the opened repository `name` (after a re-registration or re-wrap).
    pub fn forget(&self, name: &str) {
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    /// Reloads every `reload_interval` until the returned task is aborted.
    #[must_use]
    pub fn spawn_reloader(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = self.config.reload_interval();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(app) = weak.upgrade() else { return };
                if let Err(e) = app.reload().await {
                    tracing::warn!(error = %e, "reloading the state failed; keeping the previous one");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(location: &str) -> RegistrationRequest {
        serde_json::from_value(serde_json::json!({
            "type": "fs", "settings": { "location": location }, "encrypted": false
        }))
        .expect("request")
    }

    #[tokio::test]
    async fn the_single_registrations_document_is_split_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let system = crate::state::temp_system(dir.path()).await;
        let old = Registrations::from([
            ("a".to_owned(), req("/a")),
            ("b".to_owned(), req("/b")),
            ("c".to_owned(), req("/c")),
        ]);
        system.write(REPOSITORIES_DOC, 0, &old).await.expect("old");
        // b was already split and then removed, c already split with other settings: both kept.
        system
            .write(&registration_doc("b"), 0, &Some(req("/b")))
            .await
            .expect("b");
        system
            .write(&registration_doc("b"), 1, &None::<RegistrationRequest>)
            .await
            .expect("b removed");
        system
            .write(&registration_doc("c"), 0, &Some(req("/c2")))
            .await
            .expect("c");
        // Two nodes starting together, then a restart.
        let (x, y) = tokio::join!(
            App::split_registrations(&system),
            App::split_registrations(&system)
        );
        x.expect("split");
        y.expect("split");
        App::split_registrations(&system).await.expect("again");
        let set = system.read_registrations().await.expect("read");
        assert_eq!(
            set.value,
            Registrations::from([("a".to_owned(), req("/a")), ("c".to_owned(), req("/c2"))])
        );
        assert_eq!(
            (
                set.generation_of("a"),
                set.generation_of("b"),
                set.generation_of("c")
            ),
            (1, 2, 1)
        );
        let old: Versioned<Registrations> = system.read(REPOSITORIES_DOC).await.expect("old");
        assert!(old.value.is_empty());
    }
}
