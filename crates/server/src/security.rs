//! The security model: internal users, roles, role mappings, action groups and tenants (the
//! documents of OpenSearch security's `internal_users.yml`, `roles.yml`, `roles_mapping.yml`,
//! `action_groups.yml` and `tenants.yml`), and permission evaluation.
//!
//! # Permissions
//!
//! Every endpoint is guarded by one action. Cluster actions are checked against a role's
//! `cluster_permissions`; repository actions against `repository_permissions` whose
//! `repository_patterns` match the repository name (the analogue of `index_permissions`).
//!
//! | action | endpoints |
//! |---|---|
//! | `cluster:monitor/main` | `GET /` |
//! | `cluster:admin/repository/put` | `PUT /_snapshot/{repo}` |
//! | `cluster:admin/repository/get` | `GET /_snapshot`, `GET /_snapshot/{repo}` |
//! | `cluster:admin/repository/delete` | `DELETE /_snapshot/{repo}` |
//! | `cluster:admin/repository/verify` | `POST /_snapshot/{repo}/_verify` |
//! | `restapi:admin/actiongroups` | `/_plugins/_security/api/actiongroups[/{name}]` |
//! | `restapi:admin/internalusers` | `/_plugins/_security/api/internalusers[/{name}]` |
//! | `restapi:admin/roles` | `/_plugins/_security/api/roles[/{name}]` |
//! | `restapi:admin/rolesmapping` | `/_plugins/_security/api/rolesmapping[/{name}]` |
//! | `restapi:admin/tenants` | `/_plugins/_security/api/tenants[/{name}]` |
//! | `restapi:admin/config` | `/_plugins/_security/api/securityconfig` |
//! | `restapi:admin/cache` | `DELETE /_plugins/_security/api/cache` |
//! | `restapi:admin/ssl/certs/info` | `GET /_plugins/_security/api/ssl/certs` |
//! | `restapi:admin/ssl/certs/reload` | `PUT /_plugins/_security/api/ssl/{http,transport}/reloadcerts` |
//! | `repository:data/read` | `GET`, `HEAD` objects, `GET …/_objects` (listing) |
//! | `repository:data/write` | `PUT` objects |
//! | `repository:data/delete` | `DELETE` objects |
//! | `repository:keys/read` | `GET /_snapshot/{repo}/_keys` |
//! | `repository:keys/manage` | `POST …/_keys/_rotate`, `…/_rewrap`, `…/_shred` |
//!
//! The `restapi:admin/…` permissions are one of two ways into the security REST API; the other
//! is `restapi.roles_enabled` in the configuration (see `crate::secapi::access`).
//! `GET`/`PUT /_plugins/_security/api/account` needs only an authenticated user.
//!
//! `GET /_plugins/_security/health` needs no authentication; `GET /_plugins/_security/authinfo`
//! needs only an authenticated user.
//!
//! # Predefined action groups (static)
//!
//! | group | actions |
//! |---|---|
//! | `cluster_all` | `cluster:*` |
//! | `cluster_monitor` | `cluster:monitor/*` |
//! | `manage_repositories` | `cluster:admin/repository/*` |
//! | `read` | `repository:data/read` |
//! | `write` | `repository:data/write`, `repository:data/delete` |
//! | `crud` | `read`, `write` |
//! | `read_keys` | `repository:keys/read` |
//! | `manage_keys` | `repository:keys/*` |
//! | `repository_all` | `repository:*` |
//! | `kibana_all_read` / `kibana_all_write` | tenant read / write |
//!
//! # Predefined roles (static)
//!
//! | role | cluster | repositories `*` | tenants |
//! |---|---|---|---|
//! | `all_access` | `*` | `*` | `*` write |
//! | `repository_read` | `cluster:monitor/main`, `cluster:admin/repository/get` | `read`, `read_keys` | — |
//! | `repository_write` | `cluster:monitor/main`, `cluster:admin/repository/get` | `crud`, `read_keys` | — |
//! | `repository_manager` | `cluster:monitor/main`, `manage_repositories` | `read`, `manage_keys` | — |
//!
//! Patterns use `*` (any run of characters) and `?` (one character).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The backend role every anonymous request carries (OpenSearch's name).
pub const ANONYMOUS_BACKEND_ROLE: &str = "opendistro_security_anonymous_backendrole";
/// The user name of anonymous requests.
pub const ANONYMOUS_USER: &str = "opendistro_security_anonymous";

/// Action names of the endpoints (see the module documentation).
pub mod actions {
    /// `GET /`.
    pub const MONITOR_MAIN: &str = "cluster:monitor/main";
    /// Register a repository.
    pub const REPOSITORY_PUT: &str = "cluster:admin/repository/put";
    /// Read registrations.
    pub const REPOSITORY_GET: &str = "cluster:admin/repository/get";
    /// Unregister.
    pub const REPOSITORY_DELETE: &str = "cluster:admin/repository/delete";
    /// Verify.
    pub const REPOSITORY_VERIFY: &str = "cluster:admin/repository/verify";
    /// Manage internal users (`/_plugins/_security/api/internalusers`).
    pub const INTERNAL_USERS: &str = "restapi:admin/internalusers";
    /// Manage action groups (`/_plugins/_security/api/actiongroups`).
    pub const RESTAPI_ACTIONGROUPS: &str = "restapi:admin/actiongroups";
    /// Manage roles (`/_plugins/_security/api/roles`).
    pub const RESTAPI_ROLES: &str = "restapi:admin/roles";
    /// Manage role mappings (`/_plugins/_security/api/rolesmapping`).
    pub const RESTAPI_ROLESMAPPING: &str = "restapi:admin/rolesmapping";
    /// Manage tenants (`/_plugins/_security/api/tenants`).
    pub const RESTAPI_TENANTS: &str = "restapi:admin/tenants";
    /// Read the dynamic configuration (`/_plugins/_security/api/securityconfig`).
    pub const RESTAPI_CONFIG: &str = "restapi:admin/config";
    /// Flush caches (`DELETE /_plugins/_security/api/cache`).
    pub const RESTAPI_CACHE: &str = "restapi:admin/cache";
    /// Read the certificates (`GET /_plugins/_security/api/ssl/certs`).
    pub const RESTAPI_SSL_INFO: &str = "restapi:admin/ssl/certs/info";
    /// Reload the certificates (`PUT /_plugins/_security/api/ssl/*/reloadcerts`).
    pub const RESTAPI_SSL_RELOAD: &str = "restapi:admin/ssl/certs/reload";
    /// `nodesdn` (not supported: no node-to-node transport).
    pub const RESTAPI_NODESDN: &str = "restapi:admin/nodesdn";
    /// `allowlist` (not supported).
    pub const RESTAPI_ALLOWLIST: &str = "restapi:admin/allowlist";
    /// Read and list objects.
    pub const DATA_READ: &str = "repository:data/read";
    /// Write objects.
    pub const DATA_WRITE: &str = "repository:data/write";
    /// Delete objects.
    pub const DATA_DELETE: &str = "repository:data/delete";
    /// List data keys.
    pub const KEYS_READ: &str = "repository:keys/read";
    /// Rotate, re-wrap, shred.
    pub const KEYS_MANAGE: &str = "repository:keys/manage";
}

/// An internal user (`internal_users.yml`). `Debug` never shows the hash.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalUser {
    /// Password hash: argon2id PHC string or imported bcrypt.
    pub hash: String,
    /// Not changeable through the API.
    #[serde(default)]
    pub reserved: bool,
    /// Not shown by the API.
    #[serde(default)]
    pub hidden: bool,
    /// Backend roles, used by role mappings.
    #[serde(default)]
    pub backend_roles: Vec<String>,
    /// Roles assigned directly.
    #[serde(default)]
    pub opendistro_security_roles: Vec<String>,
    /// Free attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// OpenSearch's demo files carry this flag; accepted and ignored.
    #[serde(default, rename = "static", skip_serializing_if = "std::ops::Not::not")]
    pub is_static: bool,
}

impl std::fmt::Debug for InternalUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalUser")
            .field("hash", &"<redacted>")
            .field("backend_roles", &self.backend_roles)
            .field("opendistro_security_roles", &self.opendistro_security_roles)
            .finish_non_exhaustive()
    }
}

/// A role (`roles.yml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Not changeable through the API.
    #[serde(default)]
    pub reserved: bool,
    /// Not shown by the API.
    #[serde(default)]
    pub hidden: bool,
    /// Predefined.
    #[serde(default, rename = "static")]
    pub is_static: bool,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Cluster actions, patterns or action groups.
    #[serde(default)]
    pub cluster_permissions: Vec<String>,
    /// Repository actions by repository name pattern.
    #[serde(default)]
    pub repository_permissions: Vec<RepositoryPermission>,
    /// Tenant access.
    #[serde(default)]
    pub tenant_permissions: Vec<TenantPermission>,
}

/// `repository_permissions[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryPermission {
    /// Repository name patterns.
    pub repository_patterns: Vec<String>,
    /// Actions, patterns or action groups.
    pub allowed_actions: Vec<String>,
}

/// `tenant_permissions[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPermission {
    /// Tenant name patterns.
    pub tenant_patterns: Vec<String>,
    /// `kibana_all_read` or `kibana_all_write`.
    pub allowed_actions: Vec<String>,
}

/// A role mapping (`roles_mapping.yml`): who gets the role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// Not changeable through the API.
    #[serde(default)]
    pub reserved: bool,
    /// Not shown by the API.
    #[serde(default)]
    pub hidden: bool,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// User name patterns.
    #[serde(default)]
    pub users: Vec<String>,
    /// Backend role patterns.
    #[serde(default)]
    pub backend_roles: Vec<String>,
    /// Client address patterns (`127.0.0.*`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Accepted for compatibility; must be empty.
    #[serde(default)]
    pub and_backend_roles: Vec<String>,
}

/// An action group (`action_groups.yml`): a name for a set of actions and other groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionGroup {
    /// Not changeable through the API.
    #[serde(default)]
    pub reserved: bool,
    /// Not shown by the API.
    #[serde(default)]
    pub hidden: bool,
    /// Predefined.
    #[serde(default, rename = "static")]
    pub is_static: bool,
    /// Actions, patterns and other groups.
    pub allowed_actions: Vec<String>,
    /// `cluster`, `repository` or `tenant` (informational).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A tenant (`tenants.yml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Not changeable through the API.
    #[serde(default)]
    pub reserved: bool,
    /// Not shown by the API.
    #[serde(default)]
    pub hidden: bool,
    /// Predefined.
    #[serde(default, rename = "static")]
    pub is_static: bool,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The stored security configuration: everything but `config.yml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityData {
    /// Internal users by name.
    #[serde(default)]
    pub internalusers: BTreeMap<String, InternalUser>,
    /// Custom roles by name (the predefined ones are added on top).
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// Role mappings by role name.
    #[serde(default)]
    pub rolesmapping: BTreeMap<String, RoleMapping>,
    /// Custom action groups by name (the predefined ones are added on top).
    #[serde(default)]
    pub actiongroups: BTreeMap<String, ActionGroup>,
    /// Tenants by name.
    #[serde(default)]
    pub tenants: BTreeMap<String, Tenant>,
}

/// Why a security configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Action groups that contain themselves.
    #[error("action group {0} contains itself (cycle: {1})")]
    Cycle(String, String),
    /// A name that is neither an action, a pattern nor a known action group.
    #[error("{place}: unknown action group {name:?}")]
    UnknownGroup {
        /// Where it is used.
        place: String,
        /// The name.
        name: String,
    },
    /// A custom entry with the name of a predefined one.
    #[error("{0} is predefined and cannot be redefined")]
    Predefined(String),
    /// `and_backend_roles` is not implemented.
    #[error("role mapping {0}: and_backend_roles is not supported")]
    AndBackendRoles(String),
}

/// Who is asking, after authentication.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    /// User name.
    pub name: String,
    /// Backend roles (from the internal user, a token, or the anonymous role).
    pub backend_roles: Vec<String>,
    /// Roles assigned directly to an internal user.
    pub direct_roles: Vec<String>,
    /// The client address, for `hosts` mappings.
    pub remote_ip: Option<IpAddr>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The predefined action groups.
#[must_use]
pub fn static_action_groups() -> BTreeMap<String, ActionGroup> {
    let g = |kind: &str, actions: &[&str], description: &str| ActionGroup {
        reserved: true,
        hidden: false,
        is_static: true,
        allowed_actions: strings(actions),
        kind: Some(kind.into()),
        description: Some(description.into()),
    };
    BTreeMap::from([
        (
            "cluster_all".into(),
            g("cluster", &["cluster:*"], "Everything on cluster level"),
        ),
        (
            "cluster_monitor".into(),
            g("cluster", &["cluster:monitor/*"], "Cluster monitoring"),
        ),
        (
            "manage_repositories".into(),
            g(
                "cluster",
                &["cluster:admin/repository/*"],
                "Register, read, unregister and verify repositories",
            ),
        ),
        (
            "read".into(),
            g("repository", &[actions::DATA_READ], "Read and list objects"),
        ),
        (
            "write".into(),
            g(
                "repository",
                &[actions::DATA_WRITE, actions::DATA_DELETE],
                "Write and delete objects",
            ),
        ),
        (
            "crud".into(),
            g(
                "repository",
                &["read", "write"],
                "Read, write and delete objects",
            ),
        ),
        (
            "read_keys".into(),
            g("repository", &[actions::KEYS_READ], "List data keys"),
        ),
        (
            "manage_keys".into(),
            g(
                "repository",
                &["repository:keys/*"],
                "List, rotate, re-wrap and shred keys",
            ),
        ),
        (
            "repository_all".into(),
            g(
                "repository",
                &["repository:*"],
                "Everything on a repository",
            ),
        ),
        (
            "kibana_all_read".into(),
            g("tenant", &["kibana:saved_objects/*/read"], "Read a tenant"),
        ),
        (
            "kibana_all_write".into(),
            g(
                "tenant",
                &[
                    "kibana:saved_objects/*/read",
                    "kibana:saved_objects/*/write",
                ],
                "Read and write a tenant",
            ),
        ),
    ])
}

/// The predefined roles.
#[must_use]
pub fn static_roles() -> BTreeMap<String, Role> {
    let role = |description: &str, cluster: &[&str], repo: &[&str], tenant: Option<&str>| Role {
        reserved: true,
        hidden: false,
        is_static: true,
        description: Some(description.into()),
        cluster_permissions: strings(cluster),
        repository_permissions: vec![RepositoryPermission {
            repository_patterns: strings(&["*"]),
            allowed_actions: strings(repo),
        }],
        tenant_permissions: tenant
            .map(|t| TenantPermission {
                tenant_patterns: strings(&["*"]),
                allowed_actions: strings(&[t]),
            })
            .into_iter()
            .collect(),
    };
    let monitor_get = [actions::MONITOR_MAIN, actions::REPOSITORY_GET];
    BTreeMap::from([
        (
            "all_access".into(),
            role("Everything", &["*"], &["*"], Some("kibana_all_write")),
        ),
        (
            "repository_read".into(),
            role(
                "Read registrations, objects and key lists",
                &monitor_get,
                &["read", "read_keys"],
                None,
            ),
        ),
        (
            "repository_write".into(),
            role(
                "Read, write and delete objects",
                &monitor_get,
                &["crud", "read_keys"],
                None,
            ),
        ),
        (
            "repository_manager".into(),
            role(
                "Register repositories and manage their keys",
                &[actions::MONITOR_MAIN, "manage_repositories"],
                &["read", "manage_keys"],
                None,
            ),
        ),
    ])
}

/// Shell-style match: `*` any run, `?` one character. Linear-ish (no backtracking blow-up for
/// one `*`; the classic two-pointer algorithm).
#[must_use]
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
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

fn is_action(s: &str) -> bool {
    s.contains(':') || s.contains('*')
}

/// The effective model: stored data plus the predefined roles and action groups, validated.
#[derive(Debug, Clone, Default)]
pub struct SecurityModel {
    data: SecurityData,
    roles: BTreeMap<String, Role>,
    groups: BTreeMap<String, ActionGroup>,
}

impl SecurityModel {
    /// Validates `data` and adds the predefined entries.
    ///
    /// # Errors
    /// A redefined predefined entry, an unknown or cyclic action group, `and_backend_roles`.
    pub fn new(data: SecurityData) -> Result<Self, ModelError> {
        let mut roles = static_roles();
        for (name, role) in &data.roles {
            if roles.insert(name.clone(), role.clone()).is_some() {
                return Err(ModelError::Predefined(format!("role {name}")));
            }
        }
        let mut groups = static_action_groups();
        for (name, g) in &data.actiongroups {
            if groups.insert(name.clone(), g.clone()).is_some() {
                return Err(ModelError::Predefined(format!("action group {name}")));
            }
        }
        for (name, m) in &data.rolesmapping {
            if !m.and_backend_roles.is_empty() {
                return Err(ModelError::AndBackendRoles(name.clone()));
            }
        }
        let model = Self {
            data,
            roles,
            groups,
        };
        model.check_groups()?;
        Ok(model)
    }

    fn check_groups(&self) -> Result<(), ModelError> {
        for name in self.groups.keys() {
            self.expand_group(name, &mut Vec::new(), &mut BTreeSet::new())?;
        }
        for (rname, role) in &self.roles {
            let check = |place: String, list: &[String]| -> Result<(), ModelError> {
                for a in list.iter().filter(|a| !is_action(a)) {
                    if !self.groups.contains_key(a) {
                        return Err(ModelError::UnknownGroup {
                            place: place.clone(),
                            name: a.clone(),
                        });
                    }
                }
                Ok(())
            };
            check(
                format!("role {rname} cluster_permissions"),
                &role.cluster_permissions,
            )?;
            for (i, p) in role.repository_permissions.iter().enumerate() {
                check(
                    format!("role {rname} repository_permissions[{i}]"),
                    &p.allowed_actions,
                )?;
            }
            for (i, p) in role.tenant_permissions.iter().enumerate() {
                check(
                    format!("role {rname} tenant_permissions[{i}]"),
                    &p.allowed_actions,
                )?;
            }
        }
        Ok(())
    }

    /// Every action pattern `name` stands for, following nested groups.
    fn expand_group(
        &self,
        name: &str,
        stack: &mut Vec<String>,
        out: &mut BTreeSet<String>,
    ) -> Result<(), ModelError> {
        if stack.iter().any(|s| s == name) {
            stack.push(name.to_owned());
            return Err(ModelError::Cycle(name.to_owned(), stack.join(" → ")));
        }
        let Some(g) = self.groups.get(name) else {
            return Err(ModelError::UnknownGroup {
                place: stack
                    .last()
                    .map_or_else(String::new, |s| format!("action group {s}")),
                name: name.to_owned(),
            });
        };
        stack.push(name.to_owned());
        for a in &g.allowed_actions {
            if is_action(a) {
                out.insert(a.clone());
            } else {
                self.expand_group(a, stack, out)?;
            }
        }
        stack.pop();
        Ok(())
    }

    /// Action patterns of a permission list (actions and groups, expanded).
    fn expand(&self, list: &[String]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for a in list {
            if is_action(a) {
                out.insert(a.clone());
            } else {
                // Validated at construction; an unknown name grants nothing.
                let _ = self.expand_group(a, &mut Vec::new(), &mut out);
            }
        }
        out
    }

    /// The stored data.
    #[must_use]
    pub fn data(&self) -> &SecurityData {
        &self.data
    }

    /// Every role, predefined ones included.
    #[must_use]
    pub fn roles(&self) -> &BTreeMap<String, Role> {
        &self.roles
    }

    /// Every action group, predefined ones included.
    #[must_use]
    pub fn action_groups(&self) -> &BTreeMap<String, ActionGroup> {
        &self.groups
    }

    /// An internal user.
    #[must_use]
    pub fn user(&self, name: &str) -> Option<&InternalUser> {
        self.data.internalusers.get(name)
    }

    /// The roles `subject` has: mapped by user name, backend role or host, and assigned
    /// directly. Only roles that exist are returned.
    #[must_use]
    pub fn roles_of(&self, subject: &Subject) -> BTreeSet<String> {
        let any =
            |patterns: &[String], value: &str| patterns.iter().any(|p| wildcard_match(p, value));
        let ip = subject.remote_ip.map(|i| i.to_string());
        let mut out = BTreeSet::new();
        for (role, m) in &self.data.rolesmapping {
            let by_user = any(&m.users, &subject.name);
            let by_backend = subject
                .backend_roles
                .iter()
                .any(|b| any(&m.backend_roles, b));
            let by_host = ip.as_deref().is_some_and(|i| any(&m.hosts, i));
            if by_user || by_backend || by_host {
                out.insert(role.clone());
            }
        }
        out.extend(subject.direct_roles.iter().cloned());
        out.retain(|r| self.roles.contains_key(r));
        out
    }

    /// Whether any of `roles` grants the cluster action `action`.
    #[must_use]
    pub fn allows_cluster(&self, roles: &BTreeSet<String>, action: &str) -> bool {
        roles.iter().filter_map(|r| self.roles.get(r)).any(|role| {
            self.expand(&role.cluster_permissions)
                .iter()
                .any(|p| wildcard_match(p, action))
        })
    }

    /// Whether any of `roles` grants `action` on repository `repository`.
    #[must_use]
    pub fn allows_repository(
        &self,
        roles: &BTreeSet<String>,
        repository: &str,
        action: &str,
    ) -> bool {
        roles.iter().filter_map(|r| self.roles.get(r)).any(|role| {
            role.repository_permissions.iter().any(|p| {
                p.repository_patterns
                    .iter()
                    .any(|pat| wildcard_match(pat, repository))
                    && self
                        .expand(&p.allowed_actions)
                        .iter()
                        .any(|a| wildcard_match(a, action))
            })
        })
    }

    /// Tenants `roles` give access to: name → true for write access. The `global_tenant` and
    /// every configured tenant are matched against `tenant_patterns`.
    #[must_use]
    pub fn tenants_of(&self, roles: &BTreeSet<String>) -> BTreeMap<String, bool> {
        let mut names: BTreeSet<&str> = self.data.tenants.keys().map(String::as_str).collect();
        names.insert("global_tenant");
        let mut out = BTreeMap::new();
        for role in roles.iter().filter_map(|r| self.roles.get(r)) {
            for p in &role.tenant_permissions {
                let actions = self.expand(&p.allowed_actions);
                let write = actions
                    .iter()
                    .any(|a| wildcard_match(a, "kibana:saved_objects/x/write"));
                let read = write
                    || actions
                        .iter()
                        .any(|a| wildcard_match(a, "kibana:saved_objects/x/read"));
                if !read {
                    continue;
                }
                for t in &names {
                    if p.tenant_patterns.iter().any(|pat| wildcard_match(pat, t)) {
                        let e = out.entry((*t).to_owned()).or_insert(false);
                        *e |= write;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(name: &str, backend: &[&str]) -> Subject {
        Subject {
            name: name.into(),
            backend_roles: strings(backend),
            ..Subject::default()
        }
    }

    fn mapping(users: &[&str], backend: &[&str], hosts: &[&str]) -> RoleMapping {
        RoleMapping {
            users: strings(users),
            backend_roles: strings(backend),
            hosts: strings(hosts),
            ..RoleMapping::default()
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("logs-*", "logs-2024"));
        assert!(!wildcard_match("logs-*", "log-2024"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*a*b*", "xxaxxbxx"));
        assert!(!wildcard_match("*a*b", "xxaxxbxxc"));
        assert!(wildcard_match(
            "cluster:admin/repository/*",
            "cluster:admin/repository/put"
        ));
        assert!(!wildcard_match(
            "cluster:admin/repository/*",
            "cluster:monitor/main"
        ));
        assert!(wildcard_match("192.168.0.*", "192.168.0.17"));
    }

    #[test]
    fn predefined_roles_grant_what_is_documented() {
        let m = SecurityModel::new(SecurityData::default()).expect("valid");
        let r = |n: &str| BTreeSet::from([n.to_owned()]);
        let all = r("all_access");
        assert!(m.allows_cluster(&all, actions::REPOSITORY_PUT));
        assert!(m.allows_repository(&all, "any", actions::KEYS_MANAGE));
        let read = r("repository_read");
        assert!(m.allows_cluster(&read, actions::REPOSITORY_GET));
        assert!(!m.allows_cluster(&read, actions::REPOSITORY_PUT));
        assert!(m.allows_repository(&read, "x", actions::DATA_READ));
        assert!(m.allows_repository(&read, "x", actions::KEYS_READ));
        assert!(!m.allows_repository(&read, "x", actions::DATA_WRITE));
        assert!(!m.allows_repository(&read, "x", actions::KEYS_MANAGE));
        let write = r("repository_write");
        assert!(m.allows_repository(&write, "x", actions::DATA_WRITE));
        assert!(m.allows_repository(&write, "x", actions::DATA_DELETE));
        assert!(!m.allows_repository(&write, "x", actions::KEYS_MANAGE));
        assert!(!m.allows_cluster(&write, actions::REPOSITORY_DELETE));
        let mgr = r("repository_manager");
        assert!(m.allows_cluster(&mgr, actions::REPOSITORY_VERIFY));
        assert!(m.allows_repository(&mgr, "x", actions::KEYS_MANAGE));
        assert!(!m.allows_repository(&mgr, "x", actions::DATA_WRITE));
        assert!(!m.allows_cluster(&BTreeSet::new(), actions::MONITOR_MAIN));
    }

    #[test]
    fn custom_roles_patterns_and_nested_groups() {
        let mut data = SecurityData::default();
        data.actiongroups.insert(
            "backup_ops".into(),
            ActionGroup {
                allowed_actions: strings(&["crud", "read_keys"]),
                ..ActionGroup::default()
            },
        );
        data.roles.insert(
            "backups".into(),
            Role {
                cluster_permissions: strings(&["cluster:admin/repository/get"]),
                repository_permissions: vec![RepositoryPermission {
                    repository_patterns: strings(&["backup-*"]),
                    allowed_actions: strings(&["backup_ops"]),
                }],
                tenant_permissions: vec![TenantPermission {
                    tenant_patterns: strings(&["ops"]),
                    allowed_actions: strings(&["kibana_all_read"]),
                }],
                ..Role::default()
            },
        );
        data.tenants.insert("ops".into(), Tenant::default());
        data.rolesmapping
            .insert("backups".into(), mapping(&[], &["backup-hosts"], &[]));
        let m = SecurityModel::new(data).expect("valid");
        let roles = m.roles_of(&subject("job", &["backup-hosts"]));
        assert_eq!(roles, BTreeSet::from(["backups".to_owned()]));
        assert!(m.allows_repository(&roles, "backup-db", actions::DATA_WRITE));
        assert!(m.allows_repository(&roles, "backup-db", actions::KEYS_READ));
        assert!(!m.allows_repository(&roles, "backup-db", actions::KEYS_MANAGE));
        assert!(!m.allows_repository(&roles, "finance", actions::DATA_READ));
        assert_eq!(
            m.tenants_of(&roles),
            BTreeMap::from([("ops".to_owned(), false)])
        );
        let all = BTreeSet::from(["all_access".to_owned()]);
        assert_eq!(
            m.tenants_of(&all),
            BTreeMap::from([("global_tenant".to_owned(), true), ("ops".to_owned(), true)])
        );
    }

    #[test]
    fn mappings_by_user_backend_role_and_host() {
        let mut data = SecurityData::default();
        data.rolesmapping.insert(
            "repository_read".into(),
            mapping(&["ali*"], &["readers"], &["10.0.0.*"]),
        );
        data.rolesmapping
            .insert("nonexistent".into(), mapping(&["*"], &[], &[]));
        let m = SecurityModel::new(data).expect("valid");
        let read = BTreeSet::from(["repository_read".to_owned()]);
        assert_eq!(m.roles_of(&subject("alice", &[])), read);
        assert_eq!(m.roles_of(&subject("bob", &["readers"])), read);
        assert!(
            m.roles_of(&subject("bob", &[" readers"])).is_empty(),
            "no trimming"
        );
        let mut s = subject("bob", &[]);
        assert!(m.roles_of(&s).is_empty());
        s.remote_ip = Some("10.0.0.7".parse().expect("ip"));
        assert_eq!(m.roles_of(&s), read);
        s.remote_ip = None;
        s.direct_roles = strings(&["all_access", "no_such_role"]);
        assert_eq!(m.roles_of(&s), BTreeSet::from(["all_access".to_owned()]));
    }

    #[test]
    fn cycles_unknown_groups_and_redefinitions_are_refused() {
        let mut data = SecurityData::default();
        for (a, b) in [("a", "b"), ("b", "c"), ("c", "a")] {
            data.actiongroups.insert(
                a.into(),
                ActionGroup {
                    allowed_actions: strings(&[b]),
                    ..ActionGroup::default()
                },
            );
        }
        assert!(matches!(
            SecurityModel::new(data),
            Err(ModelError::Cycle(..))
        ));

        let mut data = SecurityData::default();
        data.roles.insert(
            "r".into(),
            Role {
                cluster_permissions: strings(&["no_such_group"]),
                ..Role::default()
            },
        );
        let e = SecurityModel::new(data).expect_err("unknown");
        assert!(e.to_string().contains("no_such_group"), "{e}");

        let mut data = SecurityData::default();
        data.roles.insert("all_access".into(), Role::default());
        assert!(matches!(
            SecurityModel::new(data),
            Err(ModelError::Predefined(_))
        ));
    }

    #[test]
    fn user_debug_hides_the_hash() {
        let u = InternalUser {
            hash: "$argon2id$secret".into(),
            ..InternalUser::default()
        };
        assert!(!format!("{u:?}").contains("secret"));
    }
}
