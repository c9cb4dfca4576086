//! The loopback services of `tests/services.sh` as the CLI tests use them: S3 buckets and KMS
//! keys on moto, containers on azurite, transit keys, policies and tokens on the OpenBao dev
//! server. Admin calls go through `curl` (reqwest is not a dependency of this package), except
//! the azurite container, which needs a Shared Key signature: object_store's own signer does it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::support::{Cmd, START, curl, service_env, unique};

/// moto accepts any credentials; these are what the child processes get.
const AWS_KEY_ID: &str = "testing";
const AWS_SECRET: &str = "testing";
pub const AWS_REGION: &str = "us-east-1";

/// Azurite's well-known development account and key (public, documented by Microsoft).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Where a repository lives and what the binary needs to reach it.
pub struct Backend {
    /// The repository URL or path.
    pub repo: String,
    /// `--store-option` values.
    pub options: Vec<String>,
    /// Environment for the child (credentials).
    pub env: Vec<(&'static str, String)>,
}

impl Backend {
    /// The flags and environment for one run.
    pub fn apply(&self, mut cmd: Cmd) -> Cmd {
        for o in &self.options {
            cmd = cmd.args(["--store-option", o]);
        }
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        cmd
    }
}

/// The environment AWS clients in the child read (S3 store and the aws-kms provider).
fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", AWS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET.to_owned()),
        ("AWS_REGION", AWS_REGION.to_owned()),
        // Never the caller's profile or the instance metadata service.
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

/// A fresh bucket on moto; the repository `s3://bucket/prefix`.
pub fn s3() -> Backend {
    let endpoint = service_env("ENCRYPT_REPO_TEST_S3_ENDPOINT");
    let bucket = unique("er-cli-");
    let (code, body) = curl(&["-X", "PUT", &format!("{endpoint}/{bucket}")]);
    assert!(
        code == 200,
        "creating bucket {bucket} on moto: {code} {body}"
    );
    Backend {
        repo: format!("s3://{bucket}/repo"),
        options: vec![
            format!("aws_endpoint={endpoint}"),
            "aws_allow_http=true".to_owned(),
        ],
        env: aws_env(),
    }
}

/// A fresh container on azurite; the repository `az://container/prefix`.
pub fn azure() -> Backend {
    use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential};
    use object_store::client::{
        ClientOptions, HttpConnector as _, HttpRequest, HttpRequestBody, ReqwestConnector,
    };

    let endpoint = service_env("ENCRYPT_REPO_TEST_AZURE_ENDPOINT");
    // object_store in emulator mode takes azurite's address only from this variable.
    let emulator = service_env("AZURITE_BLOB_STORAGE_URL");
    assert_eq!(
        emulator, endpoint,
        "AZURITE_BLOB_STORAGE_URL must equal ENCRYPT_REPO_TEST_AZURE_ENDPOINT: {START}"
    );
    let container = unique("er-cli-");
    let url = format!("{endpoint}/{AZURITE_ACCOUNT}/{container}?restype=container");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = ReqwestConnector::default()
            .connect(&ClientOptions::new().with_allow_http(true))
            .expect("http client");
        let mut request = HttpRequest::new(HttpRequestBody::empty());
        *request.method_mut() = "PUT".parse().expect("method");
        *request.uri_mut() = url.parse().expect("uri");
        request
            .headers_mut()
            .insert("content-length", "0".parse().expect("header"));
        let credential =
            AzureCredential::AccessKey(AzureAccessKey::try_new(AZURITE_KEY).expect("key"));
        AzureAuthorizer::new(&credential, AZURITE_ACCOUNT)
            .try_authorize(&mut request)
            .expect("signing");
        let response = client
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("PUT {url}: {e}; are the services running? {START}"));
        assert!(
            response.status().is_success(),
            "creating container {container}: {}",
            response.status()
        );
    });
    Backend {
        repo: format!("az://{container}/repo"),
        // The emulator's well-known account and key are object_store's defaults in this mode.
        options: vec!["azure_storage_use_emulator=true".to_owned()],
        env: vec![("AZURITE_BLOB_STORAGE_URL", emulator)],
    }
}

/// A KMS key on moto; returns the aws-kms provider's settings (`--key-setting` values) and the
/// environment the child needs.
pub fn kms_key() -> (Vec<String>, Vec<(&'static str, String)>) {
    let endpoint = service_env("ENCRYPT_REPO_TEST_S3_ENDPOINT");
    let (code, body) = curl(&[
        "-X",
        "POST",
        &format!("{endpoint}/"),
        "-H",
        "X-Amz-Target: TrentService.CreateKey",
        "-H",
        "Content-Type: application/x-amz-json-1.1",
        // moto routes by the credential scope; it does not check the signature.
        "-H",
        "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0",
        "-d",
        r#"{"Description":"encrypt-repo CLI test"}"#,
    ]);
    assert!(code == 200, "CreateKey on moto: {code} {body}");
    let v: Value = serde_json::from_str(&body).expect("CreateKey answer");
    let key_id = v["KeyMetadata"]["KeyId"]
        .as_str()
        .expect("KeyMetadata.KeyId")
        .to_owned();
    (
        vec![
            format!("key_id={key_id}"),
            format!("region={AWS_REGION}"),
            format!("endpoint={endpoint}"),
        ],
        aws_env(),
    )
}

/// The OpenBao dev server, as its root.
pub struct Bao {
    pub addr: String,
    root: String,
}

pub fn bao() -> Bao {
    let addr = service_env("ENCRYPT_REPO_TEST_OPENBAO_ADDR");
    let token_file = service_env("ENCRYPT_REPO_TEST_OPENBAO_TOKEN_FILE");
    let root = std::fs::read_to_string(&token_file)
        .unwrap_or_else(|e| panic!("cannot read {token_file} ({e}): run `{START}`"))
        .trim()
        .to_owned();
    let (code, _) = curl(&[&format!("{addr}/v1/sys/health")]);
    assert!(
        code == 200,
        "OpenBao at {addr} is not healthy ({code}): run `{START}`"
    );
    Bao { addr, root }
}

impl Bao {
    /// An admin call with the root token; fails the test unless it succeeds.
    pub fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let header = format!("X-Vault-Token: {}", self.root);
        let url = format!("{}/v1/{path}", self.addr);
        let body = body.to_string();
        let (code, text) = curl(&["-X", method, &url, "-H", &header, "-d", &body]);
        assert!((200..300).contains(&code), "{method} {path}: {code} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A new derived transit key (the provider requires derivation).
    pub fn new_key(&self) -> String {
        let name = unique("cli-");
        self.call(
            "POST",
            &format!("transit/keys/{name}"),
            &json!({"derived": true}),
        );
        name
    }

    pub fn set_policy(&self, name: &str, hcl: &str) {
        self.call(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            &json!({ "policy": hcl }),
        );
    }

    /// A token holding only `policy`, in a file of `dir` (mode 0600).
    pub fn token_file(&self, policy: &str, dir: &std::path::Path) -> PathBuf {
        let v = self.call(
            "POST",
            "auth/token/create",
            &json!({"policies": [policy], "no_default_policy": true, "ttl": "1h"}),
        );
        let token = v["auth"]["client_token"].as_str().expect("client_token");
        let file = dir.join("bao.token");
        std::fs::write(&file, format!("{token}\n")).expect("token file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        file
    }

    /// A key, a policy with the least the provider needs on it, and a token with that policy:
    /// returns (key name, policy name, `--key-setting` values).
    pub fn key_with_token(&self, dir: &std::path::Path) -> (String, String, Vec<String>) {
        let key = self.new_key();
        let policy = format!("policy-{key}");
        self.set_policy(&policy, &minimal_policy(&key));
        let token = self.token_file(&policy, dir);
        let settings = vec![
            format!("address={}", self.addr),
            format!("key_name={key}"),
            format!("token_file={}", token.display()),
        ];
        (key, policy, settings)
    }
}

/// The least an encrypt-repo token needs on transit key `key` (as the kms-openbao docs give it).
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
