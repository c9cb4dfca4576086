//! The `exec` provider against `exec-provider/test-kms.py`, a Python test double of a KMS
//! program (standard library only): conformance, status mapping, registration, and one test per
//! way a program can misbehave — each must be a clear error naming the command and the
//! operation, within the timeout, without key material.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use encrypt_repo_format::{DataKey, DataKeyId, RepositoryId};
use encrypt_repo_keys::exec::{ExecConfig, ExecProvider};
use encrypt_repo_keys::{
    Error, KeyProvider, KeyStatus, ProviderRegistry, RotationInfo, Settings, WrapContext,
    WrappedKey,
};
use encrypt_repo_testkit::key_provider_conformance;

const KEY_ID: &str = "test-key-1";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exec-provider/test-kms.py")
}

/// The interpreter, run directly rather than through the script's `#!/usr/bin/env python3`:
/// version-manager shims on `PATH` (pyenv) cost ~150 ms per process, and the conformance suite
/// starts ~80 of them. One test runs the script through its shebang.
fn python() -> String {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("python3")
        .to_owned()
}

fn ctx(repo: u8, dek: u8) -> WrapContext {
    WrapContext {
        repository_id: RepositoryId([repo; 16]),
        data_key_id: DataKeyId([dek; 16]),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory with a fresh master-key file for the test program.
struct Kms {
    dir: tempfile::TempDir,
    key_file: PathBuf,
    key_hex: String,
}

fn kms() -> Kms {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.key");
    let key_hex = hex(DataKey::generate().unwrap().expose_secret());
    std::fs::write(&key_file, format!("{key_hex}\n")).unwrap();
    Kms {
        dir,
        key_file,
        key_hex,
    }
}

impl Kms {
    fn set_state(&self, state: &str) {
        std::fs::write(&self.key_file, format!("{}\n{state}\n", self.key_hex)).unwrap();
    }

    /// Settings running the test program with `extra` arguments.
    fn settings(&self, extra: &[&str]) -> Settings {
        let mut args = vec![
            script().to_str().unwrap().to_owned(),
            "--key-file".to_owned(),
            self.key_file.to_str().unwrap().to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Settings::from([
            ("command".to_owned(), python()),
            ("args".to_owned(), serde_json::to_string(&args).unwrap()),
            ("key_id".to_owned(), KEY_ID.to_owned()),
            ("timeout_ms".to_owned(), "10000".to_owned()),
        ])
    }

    async fn open(&self, extra: &[&str]) -> Arc<dyn KeyProvider> {
        ProviderRegistry::with_builtin()
            .open("exec", &self.settings(extra))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn exec_provider_conforms() {
    let (a, b) = (kms(), kms());
    let started = Instant::now();
    key_provider_conformance(a.open(&[]).await, b.open(&[]).await).await;
    eprintln!(
        "exec conformance suite: {:?} (one process per operation)",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_script_runs_through_its_shebang() {
    let k = kms();
    let mut s = k.settings(&[]);
    s.insert("command".into(), script().to_str().unwrap().into());
    s.insert(
        "args".into(),
        serde_json::to_string(&["--key-file", k.key_file.to_str().unwrap()]).unwrap(),
    );
    let p = ProviderRegistry::with_builtin()
        .open("exec", &s)
        .await
        .expect("the test program must be executable (git add --chmod=+x)");
    let g = p.generate_data_key(&ctx(1, 2)).await.unwrap();
    let back = p.unwrap(&g.wrapped, &ctx(1, 2)).await.unwrap();
    assert_eq!(back.expose_secret(), g.plaintext.expose_secret());
    assert!(g.wrapped.master_key.starts_with("test-kms:"));
    assert_eq!(p.master_key(), KEY_ID);
}

#[tokio::test]
async fn status_states_map_and_unusable_keys_lock() {
    let k = kms();
    let p = k.open(&[]).await;
    assert_eq!(
        p.status().await.unwrap(),
        KeyStatus::Usable {
            rotation: Some(RotationInfo {
                automatic: Some(false),
                current_version: Some(1),
                last_rotated: None,
            })
        }
    );
    let w = p
        .wrap(&DataKey::from_bytes([7; 32]), &ctx(1, 2))
        .await
        .unwrap();
    for (state, expected) in [
        ("disabled", KeyStatus::Disabled),
        ("revoked", KeyStatus::Revoked),
        ("access_denied", KeyStatus::AccessDenied),
        ("not_found", KeyStatus::NotFound),
    ] {
        k.set_state(state);
        assert_eq!(p.status().await.unwrap(), expected, "{state}");
        // Every operation on an unusable key is KeyUnavailable, naming the key: the repository
        // locks on it.
        match p.unwrap(&w, &ctx(1, 2)).await {
            Err(Error::KeyUnavailable {
                provider,
                key,
                reason,
            }) => {
                assert_eq!((provider.as_str(), key.as_str()), ("exec", KEY_ID));
                assert!(reason.contains(state), "{reason}");
            }
            other => panic!("{state}: unwrap gave {other:?}"),
        }
        assert!(matches!(
            p.generate_data_key(&ctx(1, 3)).await,
            Err(Error::KeyUnavailable { .. })
        ));
    }
    k.set_state("usable");
    assert!(p.status().await.unwrap().is_usable());
    assert_eq!(
        p.unwrap(&w, &ctx(1, 2)).await.unwrap().expose_secret(),
        &[7; 32],
        "access comes back when the key is usable again"
    );
    std::fs::remove_file(&k.key_file).unwrap();
    assert_eq!(p.status().await.unwrap(), KeyStatus::NotFound);

    let err = k.open(&["--misbehave", "bad-state"]).await.status().await;
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("unknown state \"sideways\""), "{msg}");
}

#[tokio::test]
async fn registration_checks_settings_and_status() {
    let registry = ProviderRegistry::with_builtin();
    let factory = registry.get("exec").unwrap();
    assert_eq!(factory.identity_settings(), ["key_id"]);
    let k = kms();
    let mut s = k.settings(&[]);
    assert!(
        !factory.prepare(&mut s).await.unwrap(),
        "no key material is created"
    );
    k.set_state("revoked");
    let err = factory.prepare(&mut s).await.unwrap_err();
    assert!(matches!(err, Error::KeyUnavailable { .. }), "{err}");

    for (setting, value, expect) in [
        ("command", None, "is required"),
        ("key_id", None, "is required"),
        ("key_id", Some(""), "is required"),
        ("args", Some("--key-file x"), "JSON array of strings"),
        ("args", Some("[1, 2]"), "JSON array of strings"),
        ("timeout_ms", Some("0"), "milliseconds"),
        ("timeout_ms", Some("soon"), "milliseconds"),
        (
            "command",
            Some("surely-no-such-kms-plugin"),
            "no executable of that name in PATH",
        ),
    ] {
        let mut bad = k.settings(&[]);
        match value {
            Some(v) => bad.insert(setting.into(), v.into()),
            None => bad.remove(setting),
        };
        let err = registry.open("exec", &bad).await.unwrap_err();
        assert!(
            matches!(&err, Error::Setting { setting: s, .. } if s == setting),
            "{setting}: {err}"
        );
        assert!(err.to_string().contains(expect), "{setting}: {err}");
    }
    let default = ExecConfig::from_settings(&Settings::from([
        ("command".to_owned(), "kms".to_owned()),
        ("key_id".to_owned(), "k".to_owned()),
    ]))
    .unwrap();
    assert_eq!(default.timeout, Duration::from_secs(30));
    assert!(default.args.is_empty());
}

/// Runs `f`, asserting that it fails within `limit`, and returns the error.
async fn fails_within<T: std::fmt::Debug>(
    limit: Duration,
    f: impl Future<Output = encrypt_repo_keys::Result<T>>,
) -> Error {
    let started = Instant::now();
    let err = tokio::time::timeout(limit * 2, f)
        .await
        .expect("the provider hung")
        .expect_err("must fail");
    let took = started.elapsed();
    assert!(took < limit, "took {took:?}: {err}");
    err
}

fn assert_names_command_and_op(err: &Error, op: &str) {
    let msg = err.to_string();
    assert!(msg.contains("exec") && msg.contains(&python()), "{msg}");
    assert!(msg.contains(&format!("({op})")), "{msg}");
}

#[tokio::test]
async fn a_program_that_never_exits_is_killed_at_the_timeout() {
    let k = kms();
    let pid_file = k.dir.path().join("pid");
    let mut s = k.settings(&[
        "--misbehave",
        "sleep",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    s.insert("timeout_ms".into(), "700".into());
    let p = ProviderRegistry::with_builtin()
        .open("exec", &s)
        .await
        .unwrap();
    let err = fails_within(Duration::from_secs(5), p.status()).await;
    assert!(matches!(err, Error::Provider { .. }), "{err}");
    assert!(err.to_string().contains("timed out after 700 ms"), "{err}");
    assert_names_command_and_op(&err, "status");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still exists after the timeout"
    );
}

#[tokio::test]
async fn a_failing_program_is_a_clear_error() {
    let k = kms();
    let limit = Duration::from_secs(5);

    let err = fails_within(limit, k.open(&["--misbehave", "exit"]).await.status()).await;
    let msg = err.to_string();
    assert!(msg.contains("exited with code 3"), "{msg}");
    assert!(msg.contains("stderr: test-kms: simulated crash"), "{msg}");
    assert!(
        !msg.contains("second line"),
        "only the first stderr line: {msg}"
    );
    assert_names_command_and_op(&err, "status");

    let p = k.open(&["--misbehave", "garbage"]).await;
    let err = fails_within(limit, p.generate_data_key(&ctx(1, 2))).await;
    assert!(err.to_string().contains("malformed JSON"), "{err}");
    assert!(
        !err.to_string().contains("this is not"),
        "stdout is never echoed: {err}"
    );
    assert_names_command_and_op(&err, "generate");

    let p = k.open(&["--misbehave", "huge"]).await;
    let err = fails_within(limit, p.status()).await;
    assert!(
        err.to_string().contains("more than 65536 bytes on stdout"),
        "{err}"
    );

    let p = k.open(&["--misbehave", "missing-fields"]).await;
    let err = fails_within(limit, p.wrap(&DataKey::from_bytes([1; 32]), &ctx(1, 2))).await;
    assert!(err.to_string().contains("lacks \"ciphertext\""), "{err}");
    assert_names_command_and_op(&err, "wrap");
    let err = fails_within(limit, p.status()).await;
    assert!(err.to_string().contains("lacks \"state\""), "{err}");

    let p = k.open(&["--misbehave", "error-other"]).await;
    let err = fails_within(limit, p.status()).await;
    assert!(matches!(err, Error::Provider { .. }), "{err}");
    assert!(err.to_string().contains("simulated throttling"), "{err}");
}

#[tokio::test]
async fn a_wrong_length_key_is_refused() {
    let k = kms();
    let limit = Duration::from_secs(5);
    let p = k.open(&["--misbehave", "short-key"]).await;
    let err = fails_within(limit, p.generate_data_key(&ctx(1, 2))).await;
    assert!(err.to_string().contains("31-byte plaintext"), "{err}");
    let good = k
        .open(&[])
        .await
        .wrap(&DataKey::from_bytes([3; 32]), &ctx(1, 2))
        .await
        .unwrap();
    let err = fails_within(limit, p.unwrap(&good, &ctx(1, 2))).await;
    assert!(err.to_string().contains("31-byte plaintext"), "{err}");
    assert_names_command_and_op(&err, "unwrap");
}

#[tokio::test]
async fn streams_are_handled_concurrently() {
    let k = kms();
    // A 512 KiB request (far beyond a pipe buffer) to a program that never reads stdin and
    // answers at once: neither side may wait on the other.
    let mut s = k.settings(&["--misbehave", "no-stdin"]);
    s.insert("key_id".into(), "k".repeat(512 * 1024));
    let p = ProviderRegistry::with_builtin()
        .open("exec", &s)
        .await
        .unwrap();
    assert!(p.status().await.unwrap().is_usable());
    // A program writing 1.5 MiB on stderr before reading its request works normally.
    let p = k.open(&["--misbehave", "chatty-stderr"]).await;
    let g = p.generate_data_key(&ctx(1, 2)).await.unwrap();
    assert_eq!(
        p.unwrap(&g.wrapped, &ctx(1, 2))
            .await
            .unwrap()
            .expose_secret(),
        g.plaintext.expose_secret()
    );
}

#[tokio::test]
async fn a_missing_or_non_executable_program_is_named() {
    let k = kms();
    let missing = k.dir.path().join("no-such-plugin");
    let not_exec = k.dir.path().join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\necho '{}'\n").unwrap();
    for (path, expect_open, expect_run) in [
        (&missing, "No such file", std::io::ErrorKind::NotFound),
        (
            &not_exec,
            "not executable",
            std::io::ErrorKind::PermissionDenied,
        ),
    ] {
        let mut s = k.settings(&[]);
        s.insert("command".into(), path.to_str().unwrap().into());
        let err = ProviderRegistry::with_builtin()
            .open("exec", &s)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Setting { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(path.to_str().unwrap()) && msg.contains(expect_open),
            "{msg}"
        );

        // Checked at open, but also a clear error if it disappears afterwards.
        let p = ExecProvider::new(ExecConfig::from_settings(&s).unwrap());
        let err = fails_within(Duration::from_secs(5), p.status()).await;
        match &err {
            Error::Io { what, source } => {
                assert_eq!(source.kind(), expect_run, "{err}");
                assert!(
                    what.contains(path.to_str().unwrap()) && what.contains("(status)"),
                    "{what}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn key_material_never_appears_in_debug_display_or_errors() {
    let k = kms();
    let p = k.open(&[]).await;
    let g = p.generate_data_key(&ctx(1, 2)).await.unwrap();
    let dek_hex = hex(g.plaintext.expose_secret());
    let mut texts = vec![format!("{p:?}"), format!("{g:?}")];
    let direct = ExecProvider::new(ExecConfig::from_settings(&k.settings(&[])).unwrap());
    texts.push(format!("{direct} {direct:?}"));

    // A program that prints its master key on stderr: the line is withheld.
    let leaky = k.open(&["--misbehave", "leak-stderr"]).await;
    let err = leaky.unwrap(&g.wrapped, &ctx(1, 2)).await.unwrap_err();
    assert!(err.to_string().contains("withheld"), "{err}");
    texts.push(format!("{err} {err:?}"));

    // Wrong context, tampering, foreign provider: errors without key bytes.
    texts.push(format!(
        "{:?}",
        p.unwrap(&g.wrapped, &ctx(9, 2)).await.unwrap_err()
    ));
    let mut t = g.wrapped.clone();
    t.ciphertext[0] ^= 1;
    let err = p.unwrap(&t, &ctx(1, 2)).await.unwrap_err();
    assert!(matches!(err, Error::UnwrapFailed { .. }), "{err}");
    texts.push(format!("{err} {err:?}"));
    let foreign = WrappedKey {
        provider: "local".into(),
        ..g.wrapped.clone()
    };
    let err = p.unwrap(&foreign, &ctx(1, 2)).await.unwrap_err();
    assert!(matches!(err, Error::ForeignWrappedKey { .. }), "{err}");

    for text in &texts {
        for secret in [&k.key_hex, &dek_hex] {
            assert!(!text.contains(secret.as_str()), "key bytes in: {text}");
        }
    }
}

#[tokio::test]
async fn requests_are_exactly_as_specified() {
    let k = kms();
    let record = k.dir.path().join("request.json");
    let p = k.open(&["--record", record.to_str().unwrap()]).await;
    let c = WrapContext {
        repository_id: RepositoryId(
            *b"\x0f\x1e\x2d\x3c\x4b\x5a\x69\x78\x87\x96\xa5\xb4\xc3\xd2\xe1\xf0",
        ),
        data_key_id: DataKeyId(
            *b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff",
        ),
    };
    let context = r#""context":{"repository_id":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","data_key_id":"00112233445566778899aabbccddeeff"}"#;
    let read = || std::fs::read_to_string(&record).unwrap();

    p.status().await.unwrap();
    assert_eq!(
        read(),
        format!(r#"{{"protocol":1,"op":"status","key_id":"{KEY_ID}"}}"#)
    );
    let g = p.generate_data_key(&c).await.unwrap();
    assert_eq!(
        read(),
        format!(r#"{{"protocol":1,"op":"generate","key_id":"{KEY_ID}",{context}}}"#)
    );
    // The example key of EXEC-PROTOCOL.md §7.
    let key: [u8; 32] = *b"\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89";
    p.wrap(&DataKey::from_bytes(key), &c).await.unwrap();
    assert_eq!(
        read(),
        format!(
            r#"{{"protocol":1,"op":"wrap","key_id":"{KEY_ID}",{context},"plaintext":"q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k="}}"#
        )
    );
    p.unwrap(&g.wrapped, &c).await.unwrap();
    let unwrap: serde_json::Value = serde_json::from_str(&read()).unwrap();
    assert_eq!(unwrap["op"], "unwrap");
    assert_eq!(unwrap["master_key"], g.wrapped.master_key.as_str());
    assert!(unwrap.get("plaintext").is_none());
    assert_eq!(
        unwrap["ciphertext"].as_str().unwrap().len(),
        88,
        "64 bytes in padded base64"
    );
}
