//! OpenBao helpers shared by this crate's test binaries: the dev server from
//! `tests/services.sh` (or a panic naming the command that starts it), admin calls with the root
//! token, derived transit keys, policies and tokens.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use encrypt_repo_format::DataKeyId;
use encrypt_repo_keys::Settings;
use encrypt_repo_kms_openbao::OpenBaoProvider;
use serde_json::{Value, json};

pub const START: &str = "bash tests/services.sh start && source target/services.env";

// ---------------------------------------------------------------------------------------------
// The server and admin calls

pub struct Bao {
    pub addr: String,
    pub token_file: PathBuf,
    pub root: String,
    pub http: reqwest::Client,
}

pub async fn bao() -> Bao {
    let addr = std::env::var("ENCRYPT_REPO_TEST_OPENBAO_ADDR").unwrap_or_else(|_| {
        panic!(
            "ENCRYPT_REPO_TEST_OPENBAO_ADDR is not set: start the OpenBao dev server with `{START}`"
        )
    });
    let token_file = PathBuf::from(
        std::env::var("ENCRYPT_REPO_TEST_OPENBAO_TOKEN_FILE").unwrap_or_else(|_| {
            panic!("ENCRYPT_REPO_TEST_OPENBAO_TOKEN_FILE is not set: run `{START}`")
        }),
    );
    let root = std::fs::read_to_string(&token_file)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}): run `{START}`", token_file.display()))
        .trim()
        .to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let health = http.get(format!("{addr}/v1/sys/health")).send().await;
    match health {
        Ok(r) if r.status().is_success() => {}
        other => panic!("OpenBao at {addr} is not answering ({other:?}): run `{START}`"),
    }
    Bao {
        addr,
        token_file,
        root,
        http,
    }
}

impl Bao {
    /// An admin request with the root token; panics unless it succeeds.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.root);
        if !body.is_null() {
            request = request.body(body.to_string());
        }
        let r = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let text = r.text().await.expect("body");
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.admin(reqwest::Method::POST, path, body).await
    }

    /// A new derived transit key with a random name.
    pub async fn new_key(&self) -> String {
        let name = format!("test-{}", DataKeyId::random().expect("rng").to_hex());
        self.post(&format!("transit/keys/{name}"), json!({"derived": true}))
            .await;
        name
    }

    pub fn settings(&self, key: &str, token_file: &std::path::Path) -> Settings {
        Settings::from([
            ("address".to_owned(), self.addr.clone()),
            ("key_name".to_owned(), key.to_owned()),
            ("token_file".to_owned(), token_file.display().to_string()),
        ])
    }

    /// A provider for `key` with the root token (from the services' token file).
    pub async fn provider(&self, key: &str) -> OpenBaoProvider {
        OpenBaoProvider::from_settings(&self.settings(key, &self.token_file))
            .await
            .expect("provider")
    }

    /// A policy named `name` with `hcl`, created or replaced.
    pub async fn set_policy(&self, name: &str, hcl: &str) {
        self.admin(
            reqwest::Method::PUT,
            &format!("sys/policies/acl/{name}"),
            json!({ "policy": hcl }),
        )
        .await;
    }

    /// A token with only `policy`, written to a file of its own.
    pub async fn token_with(&self, policy: &str) -> (String, PathBuf) {
        let v = self
            .post(
                "auth/token/create",
                json!({"policies": [policy], "no_default_policy": true, "ttl": "1h"}),
            )
            .await;
        let token = v["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_owned();
        let file = std::env::temp_dir().join(format!(
            "encrypt-repo-openbao-token-{}",
            DataKeyId::random().expect("rng").to_hex()
        ));
        std::fs::write(&file, format!("{token}\n")).expect("token file");
        (token, file)
    }
}

/// The least an encrypt-repo token needs on transit key `key` (as the crate docs give it).
pub fn minimal_policy(key: &str) -> String {
    format!(
        r#"
path "transit/keys/{key}"              {{ capabilities = ["read"] }}
path "transit/datakey/plaintext/{key}" {{ capabilities = ["update"] }}
path "transit/encrypt/{key}"           {{ capabilities = ["update"] }}
path "transit/decrypt/{key}"           {{ capabilities = ["update"] }}
path "transit/rewrap/{key}"            {{ capabilities = ["update"] }}
"#
    )
}
