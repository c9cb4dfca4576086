//! The key vectors of `crates/keys/testdata/vectors/` (written from KEYS.md alone by
//! `contrib/recover/make_key_vectors.py`) through both readers: the real providers
//! (`ProviderRegistry::open` with the registered settings, then `KeyProvider::unwrap` over the
//! record's copies in KEYS.md §2.2's order) and the independent Python reader
//! `contrib/recover/er_recover.py keys vector`. Both must give each file's `expect` — the data
//! key for `success`, the error name of KEYS.md §10 otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use encrypt_repo::format::{DataKeyId, RepositoryId};
use encrypt_repo::keys::{Error, Settings, WrapContext, WrappedKey};

/// `tool` from the venv `tests/services.sh` makes (Python with `cryptography` and `jsonschema`,
/// the `bao` and `aws` CLIs); fails, naming the command that installs it, when it is missing.
fn venv(tool: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(tool);
    assert!(
        p.exists(),
        "{} is missing: run `bash tests/services.sh start` (it installs the venv these tests use)",
        p.display()
    );
    p
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/keys/testdata/vectors")
}

/// One vector file: the `key: value` head (comments dropped) and the keyring record after the
/// empty line.
struct Vector {
    name: String,
    head: BTreeMap<String, String>,
    record: String,
}

fn vectors() -> Vec<Vector> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(vectors_dir())
        .expect("vectors dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("vector");
            let (head, record) = text
                .split_once("\n\n")
                .expect("an empty line before the record");
            let head = head
                .lines()
                .filter_map(|l| l.split_once(": "))
                .filter(|(k, _)| *k != "comment")
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            Vector {
                name: path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                head,
                record: record.to_owned(),
            }
        })
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "{s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn id16(s: &str) -> [u8; 16] {
    unhex(s).try_into().expect("16 bytes")
}

/// The KEYS.md §10 name of a provider error.
fn error_name(e: &Error) -> String {
    match e {
        Error::Setting { setting, .. } if setting == "key_file" => "malformed key file".into(),
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
            "malformed key file".into()
        }
        Error::Setting { problem, .. } if problem.contains("empty") => "empty passphrase".into(),
        Error::WrongMasterKey { .. } => "wrong master key".into(),
        Error::ForeignWrappedKey { .. } => "foreign wrapped key".into(),
        Error::UnwrapFailed { .. } => "unwrap failed".into(),
        other => format!("unexpected error: {other}"),
    }
}

#[derive(serde::Deserialize)]
struct Record {
    data_key_id: String,
    #[expect(
        dead_code,
        reason = "part of the record's shape, checked by deserialising"
    )]
    created_unix: u64,
    wrapped: Vec<WrappedKey>,
    #[serde(default)]
    next: Option<WrappedKey>,
    #[serde(default)]
    shredded_unix: Option<u64>,
}

/// A secret file as the providers require it: mode 0600.
fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("secret file");
}

/// The Rust reader's outcome: the data key in hex, or the error name.
async fn rust_outcome(v: &Vector, scratch: &Path) -> String {
    let provider = v.head["provider"].as_str();
    let mut settings: Settings =
        serde_json::from_str(&v.head["registered settings"]).expect("registered settings");
    let secret = scratch.join(&v.name);
    match provider {
        "local" => {
            write_private(&secret, &unhex(&v.head["key file"]));
            settings.insert("key_file".into(), secret.display().to_string());
        }
        "passphrase" => {
            write_private(&secret, &unhex(&v.head["passphrase"]));
            settings.insert("passphrase_file".into(), secret.display().to_string());
        }
        other => panic!("{}: provider {other}", v.name),
    }
    let opened = match encrypt_repo::provider_registry()
        .open(provider, &settings)
        .await
    {
        Ok(p) => p,
        Err(e) => return error_name(&e),
    };
    // KEYS.md §2.2 step 1.
    let Ok(record) = serde_json::from_str::<Record>(&v.record) else {
        return "corrupt metadata".into();
    };
    if record.shredded_unix.is_some() {
        return "data key shredded".into();
    }
    assert_eq!(record.data_key_id, v.head["data key id"], "{}", v.name);
    let ctx = WrapContext {
        repository_id: RepositoryId(id16(&v.head["repository id"])),
        data_key_id: DataKeyId(id16(&v.head["data key id"])),
    };
    // Steps 2 and 3: `next`, then `wrapped` in order, of this provider's type; the first that
    // unwraps, else the last failure.
    let copies: Vec<&WrappedKey> = record
        .next
        .iter()
        .chain(&record.wrapped)
        .filter(|w| w.provider == provider)
        .collect();
    let mut last = "foreign wrapped key".to_owned();
    for w in copies {
        match opened.unwrap(w, &ctx).await {
            Ok(key) => {
                return key
                    .expose_secret()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
            }
            Err(e) => last = error_name(&e),
        }
    }
    last
}

fn expected(v: &Vector) -> String {
    match v.head["expect"].as_str() {
        "success" => v.head["data key"].clone(),
        name => name.to_owned(),
    }
}

#[tokio::test]
async fn key_vectors_agree_in_both_readers() {
    let all = vectors();
    assert!(all.len() >= 30, "{} vectors", all.len());
    let scratch = tempfile::tempdir().expect("tempdir");

    let files: Vec<String> = all
        .iter()
        .map(|v| vectors_dir().join(&v.name).display().to_string())
        .collect();
    let mut args = vec!["keys", "vector"];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, err) = er_recover(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let python_outcomes: BTreeMap<String, (String, String)> = String::from_utf8(stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let name = f.next().expect("name").to_owned();
            let outcome = f.next().expect("outcome").to_owned();
            let detail = f.next().unwrap_or_default().to_owned();
            (name, (outcome, detail))
        })
        .collect();

    let mut wrong = Vec::new();
    for v in &all {
        let want = expected(v);
        let rust = rust_outcome(v, scratch.path()).await;
        if rust != want {
            wrong.push(format!(
                "{}: Rust reader gave {rust:?}, the vector says {want:?}",
                v.name
            ));
        }
        let (outcome, detail) = python_outcomes
            .get(&v.name)
            .unwrap_or_else(|| panic!("the Python reader skipped {}", v.name));
        let python = if outcome == "success" {
            detail
        } else {
            outcome
        };
        if *python != want {
            wrong.push(format!(
                "{}: Python reader gave {python:?}, the vector says {want:?}",
                v.name
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every `.json` file under `dir`.
fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    out.extend(
        crate::golden::files(dir)
            .into_iter()
            .filter(|(rel, _)| rel.ends_with(".json"))
            .map(|(rel, _)| dir.join(rel)),
    );
}

/// Validates each file against `schema` with Python's `jsonschema` (an implementation of JSON
/// Schema nobody here wrote); the failures, one line each.
fn schema_failures(schema: &str, files: &[PathBuf]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema)
for path in sys.argv[2:]:
    for e in v.iter_errors(json.load(open(path))):
        print(f"{path}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
"#;
    let out = std::process::Command::new(venv("python"))
        .args(["-c", script])
        .arg(root.join("contrib/recover/schema").join(schema))
        .args(files)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The JSON Schemas of KEYS.md §2 against files the CLI really writes: local and passphrase
/// repositories, an escrow copy, a rotation, a re-wrap, a shredded key, an unencrypted
/// repository; and a schema that would let anything through is caught by a file it refuses.
#[test]
fn registration_and_keyring_match_their_schemas() {
    use crate::cli::support::{Env, er, key_file_arg};
    let env = Env::new();
    let escrow_key = env.path("escrow.key");
    let escrow = format!("vault:{}", key_file_arg(&escrow_key));
    let with_escrow = ["--escrow-setting", escrow.as_str()];
    env.init(&[
        "--escrow-provider",
        "local:vault",
        with_escrow[0],
        with_escrow[1],
    ]);
    // The registration records no key file: every writing command names the escrow key too.
    env.cmd(&["put"], &["a", "-"])
        .args(with_escrow)
        .stdin(b"one")
        .run()
        .ok();
    env.cmd(&["keys", "rotate"], &with_escrow).run().ok();
    env.cmd(&["put"], &["b", "-"])
        .args(with_escrow)
        .stdin(b"two")
        .run()
        .ok();
    let keys = env.cmd(&["keys", "status"], &["--json"]).run();
    keys.ok();
    let first = keys.json()["data_keys"][0]["id"]
        .as_str()
        .map(str::to_owned);
    let new_key = env.path("new.key");
    er(["keys", "rewrap", &env.repo(), "--to-provider", "local"])
        .args(["--key-setting", &env.key_arg(), "--to-setting"])
        .arg(key_file_arg(&new_key))
        .args(with_escrow)
        .run()
        .ok();
    if let Some(id) = first {
        er(["keys", "shred", &env.repo(), &id, "--yes"])
            .args(["--key-setting", &key_file_arg(&new_key)])
            .args(with_escrow)
            .run()
            .ok();
    }

    er([
        "init",
        &env.path("p").display().to_string(),
        "--key-provider",
        "passphrase",
    ])
    .args(["--key-setting", "passphrase_env=ER_SCHEMA_PASS"])
    .env("ER_SCHEMA_PASS", "correct horse battery staple")
    .run()
    .ok();
    er(["put", &env.path("p").display().to_string(), "x", "-"])
        .args(["--key-setting", "passphrase_env=ER_SCHEMA_PASS"])
        .env("ER_SCHEMA_PASS", "correct horse battery staple")
        .stdin(b"x")
        .run()
        .ok();
    er([
        "init",
        &env.path("plain").display().to_string(),
        "--no-encryption",
    ])
    .run()
    .ok();

    let mut registrations = Vec::new();
    let mut records = Vec::new();
    for repo in ["repo", "p", "plain"] {
        let meta = env.path(repo).join(".encrypt-repo");
        registrations.push(meta.join("registration.json"));
        if meta.join("keyring").exists() {
            json_files(&meta.join("keyring"), &mut records);
        }
    }
    assert!(records.len() >= 3, "{records:?}");
    let shredded = records
        .iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("shredded_unix")))
        .count();
    assert!(shredded >= 1, "no shredded record among {records:?}");
    assert_eq!(
        schema_failures("registration.schema.json", &registrations),
        ""
    );
    assert_eq!(schema_failures("keyring-record.schema.json", &records), "");

    // The schemas refuse what a reader must not take for a valid file.
    let bad = env.path("bad.json");
    std::fs::write(
        &bad,
        r#"{"data_key_id":"A0","created_unix":-1,"wrapped":[{"provider":"local","master_key":"x","ciphertext":"abc"}]}"#,
    )
    .expect("write");
    let failures = schema_failures("keyring-record.schema.json", std::slice::from_ref(&bad));
    for field in ["data_key_id", "created_unix", "wrapped/0/ciphertext"] {
        assert!(
            failures.contains(&format!(": {field}: ")),
            "{field}: {failures}"
        );
    }
    std::fs::write(
        &bad,
        r#"{"format":1,"repository_id":"00","type":"fs","settings":{},"encrypted":true,"chunk_size":1000,"path_binding":true}"#,
    )
    .expect("write");
    let failures = schema_failures("registration.schema.json", std::slice::from_ref(&bad));
    for field in ["repository_id", "chunk_size"] {
        assert!(
            failures.contains(&format!(": {field}: ")),
            "{field}: {failures}"
        );
    }
    assert!(failures.contains("crypto_settings"), "{failures}");
}

/// `er_recover.py ARGS…` (the independent Python reader); exit code, stdout, stderr.
pub(crate) fn er_recover(args: &[&str], env: &[(&str, &str)]) -> (i32, Vec<u8>, String) {
    let mut cmd = std::process::Command::new(venv("python"));
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/recover/er_recover.py"))
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run er_recover.py");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `er_recover.py --key-file KEY REPO restore DEST`, then each of `objects` must be in `dest`
/// with exactly its bytes.
fn restore_and_compare<N: AsRef<str>>(
    key: &str,
    repo: &str,
    dest: &Path,
    objects: &[(N, Vec<u8>)],
) {
    let dest_arg = dest.display().to_string();
    let (code, _, err) = er_recover(&["--key-file", key, repo, "restore", &dest_arg], &[]);
    assert_eq!(code, 0, "{err}");
    for (name, bytes) in objects {
        let name = name.as_ref();
        let got = std::fs::read(dest.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            got == *bytes,
            "{name}: {} bytes, want {}",
            got.len(),
            bytes.len()
        );
    }
}

/// What the CLI wrote, read back by the Python reader alone: every object of a local-key and a
/// passphrase repository (multi-chunk, nested names, empty), a range, and the refusals — a
/// tampered chunk, a moved (path-bound) object, a wrong key — with no plaintext on stdout.
#[test]
fn the_python_reader_recovers_what_the_cli_wrote() {
    use crate::cli::support::{Env, data, er, flip_byte};
    let env = Env::new();
    env.init(&["--chunk-size", "64KiB"]);
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("big.bin", data((3 << 20) + 17, 1)),
        ("dir/sub/notes.txt", b"hello from the CLI\n".to_vec()),
        ("empty", Vec::new()),
        ("exactly-one-chunk", data(64 << 10, 2)),
    ];
    for (name, bytes) in &objects {
        env.put(name, bytes);
    }
    let key = env.key().display().to_string();
    let repo = env.repo();

    let (code, out, err) = er_recover(&["--key-file", &key, &repo, "info"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        String::from_utf8_lossy(&out).contains("unwrapped"),
        "{out:?}"
    );
    restore_and_compare(&key, &repo, &env.path("recovered"), &objects);
    // A range across a chunk boundary.
    let (code, out, err) = er_recover(
        &[
            "--key-file",
            &key,
            &repo,
            "cat",
            "big.bin",
            "--range",
            "65530-65545",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, objects[0].1[65530..=65545]);

    // Refusals: nothing reaches stdout.
    let stored = Path::new(&repo).join("exactly-one-chunk");
    let moved = Path::new(&repo).join("moved");
    std::fs::copy(&stored, &moved).expect("copy");
    let (code, out, err) = er_recover(&["--key-file", &key, &repo, "cat", "moved"], &[]);
    assert_eq!((code, out.len()), (1, 0), "moved: {err}");
    assert!(err.contains("commitment mismatch"), "{err}");
    flip_byte(&stored, 200);
    let (code, out, err) = er_recover(
        &["--key-file", &key, &repo, "cat", "exactly-one-chunk"],
        &[],
    );
    assert_eq!((code, out.len()), (1, 0), "tampered: {err}");
    let other = env.path("other.key");
    er([
        "init",
        &env.path("o").display().to_string(),
        "--key-provider",
        "local",
    ])
    .args(["--key-setting", &format!("key_file={}", other.display())])
    .run()
    .ok();
    let (code, out, err) = er_recover(
        &[
            "--key-file",
            &other.display().to_string(),
            &repo,
            "cat",
            "dir/sub/notes.txt",
        ],
        &[],
    );
    assert_eq!((code, out.len()), (1, 0), "wrong key: {err}");
    assert!(err.contains("wrong master key"), "{err}");

    // Path binding off, every chunk edge of 64 KiB chunks: restored whole, and a moved object
    // still reads (that is what binding off means).
    let unbound = env.path("unbound");
    let u = unbound.display().to_string();
    er([
        "init",
        &u,
        "--key-provider",
        "local",
        "--chunk-size",
        "64KiB",
        "--no-path-binding",
    ])
    .args(["--key-setting", &format!("key_file={key}")])
    .run()
    .ok();
    let edges: Vec<(String, Vec<u8>)> = [1usize, 65_535, 65_536, 65_537, 131_072, 131_073]
        .iter()
        .map(|&n| (format!("edge/{n}"), data(n, n as u64)))
        .collect();
    for (name, bytes) in &edges {
        er(["put", &u, name, "-"])
            .args(["--key-setting", &format!("key_file={key}")])
            .stdin(bytes)
            .run()
            .ok();
    }
    restore_and_compare(&key, &u, &env.path("unbound-out"), &edges);
    std::fs::copy(unbound.join("edge/65537"), unbound.join("elsewhere")).expect("copy");
    let (code, out, err) = er_recover(&["--key-file", &key, &u, "cat", "elsewhere"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out == edges[3].1);

    // A passphrase repository.
    let p = env.path("p").display().to_string();
    let pass = [("ER_RECOVER_PASS", "correct horse battery staple")];
    er(["init", &p, "--key-provider", "passphrase"])
        .args(["--key-setting", "passphrase_env=ER_RECOVER_PASS"])
        .env(pass[0].0, pass[0].1)
        .run()
        .ok();
    let secret = data(200_000, 3);
    er(["put", &p, "s/secret", "-"])
        .args(["--key-setting", "passphrase_env=ER_RECOVER_PASS"])
        .env(pass[0].0, pass[0].1)
        .stdin(&secret)
        .run()
        .ok();
    let (code, out, err) = er_recover(
        &["--passphrase-env", "ER_RECOVER_PASS", &p, "cat", "s/secret"],
        &pass,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out == secret, "passphrase object differs");
    let (code, out, _) = er_recover(
        &["--passphrase-env", "ER_RECOVER_PASS", &p, "cat", "s/secret"],
        &[("ER_RECOVER_PASS", "wrong horse")],
    );
    assert_eq!((code, out.len()), (1, 0));
}

/// KEYS.md §8/§9 as a user with only the vendor's CLI would do it: the commands
/// `er_recover.py REPO kms-commands` prints (they must use `cli`), run by `sh` in `dir` with the
/// venv's CLIs on `PATH` and `env`; every command must print `DATA_KEY_ID=KEY`. Returns `object`
/// as the Python reader opens it with those keys.
fn cat_with_kms_commands(
    repo: &str,
    cli: &str,
    dir: &Path,
    env: &[(&str, String)],
    object: &str,
) -> Vec<u8> {
    let (code, commands, err) = er_recover(&[repo, "kms-commands"], &[]);
    assert_eq!(code, 0, "{err}");
    let commands = String::from_utf8(commands).expect("utf-8");
    let wanted = commands.lines().filter(|l| l.starts_with("echo ")).count();
    assert!(wanted > 0 && commands.contains(cli), "{commands}");
    let bin = venv(cli);
    let path = format!(
        "{}:{}",
        bin.parent().expect("venv bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = std::process::Command::new("sh");
    sh.args(["-euc", &commands])
        .current_dir(dir)
        .env("PATH", path);
    for (k, v) in env {
        sh.env(k, v);
    }
    let out = sh.output().expect("sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let keys: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(keys.len(), wanted, "{keys:?} {stderr}");
    for k in &keys {
        assert!(
            k.len() == 32 + 1 + 64 && k.as_bytes()[32] == b'=',
            "not DATA_KEY_ID=KEY: {k:?} ({stderr})"
        );
    }
    let mut args: Vec<&str> = Vec::new();
    for k in &keys {
        args.extend(["--data-key", k]);
    }
    args.extend([repo, "cat", object]);
    let (code, out, err) = er_recover(&args, &[]);
    assert_eq!(code, 0, "{err}");
    out
}

/// KEYS.md §9 with only the vendor's CLI: for a repository whose data keys are wrapped by
/// OpenBao transit, `er_recover.py kms-commands` prints the `bao write …/decrypt/…` command of
/// each data key; run with a token holding only the key's policy, `bao` (OpenBao's own CLI)
/// unwraps it, and the Python reader opens the objects with the keys it printed.
#[test]
fn openbao_wrapped_keys_are_recovered_with_the_bao_cli_alone() {
    use crate::cli::services;
    use crate::cli::support::{Env, data, er};
    let bao = services::bao();
    let env = Env::new();
    let (_, _, settings) = bao.key_with_token(env.tmp.path());
    let repo = env.repo();
    let mut init = er(["init", &repo, "--key-provider", "openbao"]);
    for s in &settings {
        init = init.args(["--key-setting", s]);
    }
    init.run().ok();
    let body = data(150_000, 9);
    let mut put = er(["put", &repo, "kms/object", "-"]).stdin(&body);
    for s in &settings {
        put = put.args(["--key-setting", s]);
    }
    put.run().ok();

    let token_file = settings
        .iter()
        .find_map(|s| s.strip_prefix("token_file="))
        .expect("token_file");
    let token = std::fs::read_to_string(token_file).expect("token");
    let out = cat_with_kms_commands(
        &repo,
        "bao",
        env.tmp.path(),
        &[
            ("BAO_ADDR", bao.addr.clone()),
            ("BAO_TOKEN", token.trim().to_owned()),
        ],
        "kms/object",
    );
    assert!(out == body, "the object recovered with bao's keys differs");
}

/// KEYS.md §8 with only the AWS CLI: for a repository whose data keys are wrapped by AWS KMS
/// (moto), the `aws kms decrypt` commands `er_recover.py kms-commands` prints give keys that open
/// the objects.
#[test]
fn aws_kms_wrapped_keys_are_recovered_with_the_aws_cli_alone() {
    use crate::cli::services;
    use crate::cli::support::{Env, data, er};
    let (settings, aws_env) = services::kms_key();
    let env = Env::new();
    let repo = env.repo();
    let with_kms = |mut cmd: crate::cli::support::Cmd| {
        for s in &settings {
            cmd = cmd.args(["--key-setting", s]);
        }
        for (k, v) in &aws_env {
            cmd = cmd.env(k, v);
        }
        cmd
    };
    with_kms(er(["init", &repo, "--key-provider", "aws-kms"]))
        .run()
        .ok();
    let body = data(100_000, 11);
    with_kms(er(["put", &repo, "kms/object", "-"]).stdin(&body))
        .run()
        .ok();

    let endpoint = settings
        .iter()
        .find_map(|s| s.strip_prefix("endpoint="))
        .expect("endpoint");
    let mut cli_env = vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        // AWS CLI v1 reads the region from AWS_DEFAULT_REGION (or --region), not AWS_REGION.
        ("AWS_DEFAULT_REGION", services::AWS_REGION.to_owned()),
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
    ];
    cli_env.extend(aws_env.iter().cloned());
    let out = cat_with_kms_commands(&repo, "aws", env.tmp.path(), &cli_env, "kms/object");
    assert!(
        out == body,
        "the object recovered with the AWS CLI's keys differs"
    );
}
