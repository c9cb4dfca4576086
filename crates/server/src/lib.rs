//! `encrypt-repo serve`: a shared, stateless service in front of encrypted repositories, with
//! OpenSearch-security-style authentication (basic, JWT, client certificates) and authorization
//! (roles, role mappings, action groups, tenants).

pub mod authn;
