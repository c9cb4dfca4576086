//! One repository through every cloud key service, from the CLI: `aws-kms` (moto) →
//! `azure-key-vault` → `gcp-kms` (the loopback stand-ins of `crates/testkit`) → `local` →
//! `aws-kms` again, an object written under each, every object read back after every re-wrap;
//! and, through the library, a `gcp-kms` repository with an Azure Key Vault key as its escrow,
//! read through the escrow alone once the Cloud KMS key is destroyed.

use std::sync::Arc;

use encrypt_repo::keys::Settings;
use encrypt_repo::store::{
    CryptoSettings, EncryptedStore, RegistrationRequest, Repository, RepositoryOptions,
};
use encrypt_repo_testkit::azure_key_vault::{AzureKeyVault, TENANT};
use encrypt_repo_testkit::gcp_kms::{GcpKmsStandIn, VersionState};
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use object_store::path::Path;

use crate::cli::services;
use crate::cli::support::{Env, er};

const AZURE_CLIENT: &str = "chain-app";
const AZURE_SECRET: &str = "chain-secret";

/// The stand-ins, served by a runtime that lives as long as the test.
struct Clouds {
    rt: tokio::runtime::Runtime,
    kv: AzureKeyVault,
    gcp: GcpKmsStandIn,
}

fn clouds() -> Clouds {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (kv, gcp) = rt.block_on(async {
        let kv = AzureKeyVault::start().await;
        kv.register_client_secret(AZURE_CLIENT, AZURE_SECRET);
        (kv, GcpKmsStandIn::start().await)
    });
    Clouds { rt, kv, gcp }
}

/// A provider as the CLI is told of it: identity settings at re-wrap (`--to-setting`), access
/// settings on every later run (`--key-setting`).
struct Provider {
    kind: &'static str,
    identity: Vec<String>,
    access: Vec<String>,
}

#[test]
fn a_repository_moves_through_aws_azure_gcp_and_local_keys_and_back_reading_everything() {
    let c = clouds();
    let env = Env::new();
    let repo = env.repo();
    let credentials = c
        .gcp
        .write_service_account(&env.path(""), "chain@stand-in.iam.gserviceaccount.com");
    let (aws_settings, aws_env) = services::kms_key();
    let run = |args: &[&str], key_settings: &[String]| {
        let mut cmd = er(args)
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", AZURE_CLIENT)
            .env("AZURE_CLIENT_SECRET", AZURE_SECRET)
            .env("GOOGLE_APPLICATION_CREDENTIALS", &credentials);
        for (k, v) in &aws_env {
            cmd = cmd.env(k, v);
        }
        for s in key_settings {
            cmd = cmd.args(["--key-setting", s]);
        }
        cmd
    };
    let split = |all: &[String], identity: &[&str]| -> (Vec<String>, Vec<String>) {
        all.iter()
            .cloned()
            .partition(|s| identity.iter().any(|k| s.starts_with(&format!("{k}="))))
    };
    let (aws_identity, aws_access) = split(&aws_settings, &["key_id"]);
    let aws = Provider {
        kind: "aws-kms",
        identity: aws_identity,
        access: aws_access,
    };
    let azure = Provider {
        kind: "azure-key-vault",
        identity: vec![format!("key_id={}", {
            let _ = c.kv.create_rsa_key("chain", 2048);
            c.kv.key_id("chain")
        })],
        access: vec![
            format!("authority_host={}", c.kv.url()),
            format!("ca_file={}", c.kv.ca_file().display()),
        ],
    };
    let gcp = Provider {
        kind: "gcp-kms",
        identity: vec![format!("key_name={}", c.gcp.create_key())],
        access: vec![format!("endpoint={}", c.gcp.endpoint())],
    };
    let local = Provider {
        kind: "local",
        identity: Vec::new(),
        access: vec![format!("key_file={}", env.path("local.key").display())],
    };
    let all = |p: &Provider| [p.identity.clone(), p.access.clone()].concat();

    run(&["init", &repo, "--key-provider", "aws-kms"], &all(&aws))
        .run()
        .ok();
    let mut written: Vec<(String, Vec<u8>)> = Vec::new();
    let mut current = &aws;
    for next in [&azure, &gcp, &local, &aws] {
        let name = format!("under-{}", current.kind);
        let body = format!("{name} ").repeat(5000).into_bytes();
        run(&["put", &repo, &name, "-"], &current.access)
            .stdin(&body)
            .run()
            .ok();
        written.push((name, body));

        let mut rewrap = run(
            &["keys", "rewrap", &repo, "--to-provider", next.kind],
            &current.access,
        );
        for s in all(next) {
            rewrap = rewrap.args(["--to-setting", &s]);
        }
        rewrap.run().ok();
        for (name, body) in &written {
            let out = run(&["get", &repo, name, "-"], &next.access).run();
            assert!(
                out.ok().stdout == *body,
                "{name} reads otherwise after the re-wrap to {}",
                next.kind
            );
        }
        // The registration records the key's identity, never how to reach it.
        let reg = std::fs::read_to_string(env.path("repo/.encrypt-repo/registration.json"))
            .expect("registration");
        for s in &next.access {
            let key = s.split_once('=').map_or("", |(k, _)| k);
            assert!(
                !reg.contains(&format!("\"{key}\"")),
                "{key} recorded: {reg}"
            );
        }
        current = next;
    }
    run(&["verify", &repo], &aws.access).run().ok();
    let info = run(&["info", &repo, "--json"], &aws.access).run();
    assert_eq!(
        info.ok().json()["registration"]["crypto_settings"]["key_provider_type"],
        "aws-kms"
    );
}

fn crypto(name: &str, kind: &str, settings: &[(&str, String)]) -> CryptoSettings {
    CryptoSettings {
        key_provider_name: name.into(),
        key_provider_type: kind.into(),
        settings: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

/// A registry whose Azure and GCP providers read their credentials from `vars` (the process
/// environment cannot be set safely from a test).
fn registry(vars: Vec<(&'static str, String)>) -> encrypt_repo::keys::ProviderRegistry {
    let vars: std::collections::BTreeMap<&str, String> = vars.into_iter().collect();
    let (a, g) = (vars.clone(), vars);
    let mut r = encrypt_repo::keys::ProviderRegistry::with_builtin();
    r.register(Arc::new(
        encrypt_repo::kms_azure::AzureKeyVaultFactory::with_env(move |k| a.get(k).cloned()),
    ));
    r.register(Arc::new(encrypt_repo::kms_gcp::GcpKmsFactory::with_env(
        move |k| g.get(k).cloned(),
    )));
    r
}

#[test]
fn an_azure_key_escrows_a_gcp_wrapped_repository() {
    let c = clouds();
    let dir = tempfile::tempdir().expect("tempdir");
    let credentials = c
        .gcp
        .write_service_account(dir.path(), "escrowed@stand-in.iam.gserviceaccount.com");
    let registry = registry(vec![
        ("AZURE_TENANT_ID", TENANT.to_owned()),
        ("AZURE_CLIENT_ID", AZURE_CLIENT.to_owned()),
        ("AZURE_CLIENT_SECRET", AZURE_SECRET.to_owned()),
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            credentials.display().to_string(),
        ),
    ]);
    let key_name = c.gcp.create_key();
    let main = crypto(
        "gcp",
        "gcp-kms",
        &[
            ("key_name", key_name.clone()),
            ("endpoint", c.gcp.endpoint()),
        ],
    );
    let azure_access: Settings = [
        ("authority_host".to_owned(), c.kv.url().to_owned()),
        ("ca_file".to_owned(), c.kv.ca_file().display().to_string()),
    ]
    .into();
    let _ = c.kv.create_rsa_key("escrow", 3072);
    let mut escrow = crypto(
        "vault",
        "azure-key-vault",
        &[("key_id", c.kv.key_id("escrow"))],
    );
    escrow.settings.extend(azure_access.clone());
    let raw = Arc::new(InMemory::new());
    c.rt.block_on(async {
        let repo = Repository::register(
            raw.clone(),
            RegistrationRequest {
                store_type: "memory".into(),
                settings: Default::default(),
                encrypted: true,
                crypto_settings: Some(main),
                chunk_size: None,
                escrow: vec![escrow],
                path_binding: None,
            },
            &registry,
            RepositoryOptions::default(),
        )
        .await
        .expect("register gcp-kms with an azure-key-vault escrow")
        .repository;
        let store = EncryptedStore::new(raw.clone(), Arc::new(repo));
        store
            .put(&Path::from("db/dump"), b"the only copy".to_vec().into())
            .await
            .expect("put");
        for k in store.repository().data_keys().await.expect("data keys") {
            let by: Vec<&str> = k.wrapped_by.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(by, ["gcp-kms", "azure-key-vault"], "{k:?}");
        }

        // The Cloud KMS key version is destroyed: the main provider cannot unwrap any more.
        let version = c.gcp.primary_version(&key_name);
        c.gcp.set_state(&key_name, version, VersionState::Destroyed);
        let reopened = Repository::open(
            raw.clone(),
            &registry,
            &Default::default(),
            RepositoryOptions::default(),
        )
        .await
        .expect("open");
        let reopened = EncryptedStore::new(raw.clone(), Arc::new(reopened));
        assert!(reopened.get(&Path::from("db/dump")).await.is_err());

        // The escrow alone reads it back (read-only).
        let by_escrow = Repository::open_escrow(
            raw.clone(),
            &registry,
            "vault",
            &azure_access,
            RepositoryOptions::default(),
        )
        .await
        .expect("open through the escrow");
        let by_escrow = EncryptedStore::new(raw.clone(), Arc::new(by_escrow));
        let back = by_escrow
            .get(&Path::from("db/dump"))
            .await
            .expect("get through the escrow")
            .bytes()
            .await
            .expect("body");
        assert_eq!(back.as_ref(), b"the only copy");
        assert!(
            by_escrow
                .put(&Path::from("new"), b"x".to_vec().into())
                .await
                .is_err(),
            "an escrow-opened repository wrote"
        );
    });
}
