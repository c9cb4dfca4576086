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

    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash tests/services.sh start` (it installs the venv with `cryptography`)",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/recover/er_recover.py"))
        .args(["keys", "vector"])
        .args(
            all.iter()
                .map(|v| vectors_dir().join(&v.name))
                .collect::<Vec<_>>(),
        )
        .output()
        .expect("run er_recover.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python_outcomes: BTreeMap<String, (String, String)> = String::from_utf8(out.stdout)
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
