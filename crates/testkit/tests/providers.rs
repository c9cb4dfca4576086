//! The key-provider conformance suite over the built-in providers, plus their registry and
//! settings behaviour.

use std::sync::Arc;

use encrypt_repo_keys::local::LocalProvider;
use encrypt_repo_keys::passphrase::{ArgonCost, PassphraseProvider};
use encrypt_repo_keys::{Error, KeyProvider, ProviderRegistry, SecretSource, Settings};
use encrypt_repo_testkit::key_provider_conformance;
use zeroize::Zeroizing;

fn settings(pairs: &[(&str, &str)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn local_provider_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let a = LocalProvider::create(&dir.path().join("a.key")).unwrap();
    let b = LocalProvider::create(&dir.path().join("b.key")).unwrap();
    key_provider_conformance(Arc::new(a), Arc::new(b)).await;
}

// Small Argon2 costs keep the suite fast; the parameters are exercised, not the default cost.
const FAST: ArgonCost = ArgonCost {
    m_cost_kib: 64,
    t_cost: 1,
    p_cost: 1,
};

#[tokio::test]
async fn passphrase_provider_conforms() {
    let pw = |s: &str| Zeroizing::new(s.as_bytes().to_vec());
    let a = PassphraseProvider::derive(pw("correct horse"), vec![1; 16], FAST)
        .await
        .unwrap();
    let b = PassphraseProvider::derive(pw("battery staple"), vec![1; 16], FAST)
        .await
        .unwrap();
    let a_other_salt = PassphraseProvider::derive(pw("correct horse"), vec![2; 16], FAST)
        .await
        .unwrap();
    assert_ne!(
        a.fingerprint(),
        a_other_salt.fingerprint(),
        "salt must change the key"
    );
    key_provider_conformance(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test]
async fn local_key_file_is_created_0600_and_reloaded() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let registry = ProviderRegistry::with_builtin();
    let factory = registry.get("local").unwrap();
    let mut s = settings(&[("key_file", path.to_str().unwrap())]);
    assert!(
        factory.prepare(&mut s).await.unwrap(),
        "a new key file must be reported as created"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let fp = s.get("fingerprint").cloned().unwrap();
    assert!(
        !factory.prepare(&mut s.clone()).await.unwrap(),
        "an existing key file is reused"
    );
    let p = registry.open("local", &s).await.unwrap();
    assert!(p.master_key().starts_with(&fp));

    // Another key file at open time: a clear error, not unwrap failures later.
    let other = dir.path().join("other.key");
    LocalProvider::create(&other).unwrap();
    let mut wrong = s.clone();
    wrong.insert("key_file".into(), other.to_str().unwrap().into());
    let err = registry
        .open("local", &wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrong key file"), "{err}");

    // Too-open permissions are refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = registry.open("local", &s).await.unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
}

#[tokio::test]
async fn malformed_key_files_are_clear_errors() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("empty", ""),
        ("magic", "nope\n00\n"),
        ("hex", "encrypt-repo-local-key-v1\nzz\n"),
        ("short", "encrypt-repo-local-key-v1\n0011\n"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = LocalProvider::load(&p).unwrap_err();
        assert!(matches!(err, Error::Setting { .. }), "{name}: {err}");
    }
    let missing = LocalProvider::load(&dir.path().join("missing")).unwrap_err();
    assert!(missing.to_string().contains("missing"), "{missing}");
}

#[tokio::test]
async fn passphrase_registration_and_sources() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret passphrase\n").unwrap();
    let registry = ProviderRegistry::with_builtin();
    let factory = registry.get("passphrase").unwrap();
    let mut s = settings(&[
        ("passphrase_file", file.to_str().unwrap()),
        ("m_cost", "64"),
        ("t_cost", "1"),
        ("p_cost", "1"),
    ]);
    factory.prepare(&mut s).await.unwrap();
    for k in ["salt", "fingerprint", "m_cost", "t_cost", "p_cost"] {
        assert!(s.contains_key(k), "prepare must record {k}");
    }
    registry.open("passphrase", &s).await.unwrap();

    // The same passphrase from a command (trailing newline stripped) opens it too.
    let mut by_cmd = s.clone();
    by_cmd.remove("passphrase_file");
    by_cmd.insert(
        "passphrase_command".into(),
        "printf 's3cret passphrase\\n'".into(),
    );
    registry.open("passphrase", &by_cmd).await.unwrap();

    // A wrong passphrase is named as such.
    let mut wrong = by_cmd.clone();
    wrong.insert("passphrase_command".into(), "echo nope".into());
    let err = registry
        .open("passphrase", &wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(
        !err.contains("nope"),
        "the error must not echo the passphrase: {err}"
    );

    // No source, two sources, a failing command, an unset variable: clear errors.
    let mut none = s.clone();
    none.remove("passphrase_file");
    assert!(
        registry
            .open("passphrase", &none)
            .await
            .unwrap_err()
            .to_string()
            .contains("exactly one")
    );
    let mut two = s.clone();
    two.insert("passphrase_env".into(), "X".into());
    assert!(
        registry
            .open("passphrase", &two)
            .await
            .unwrap_err()
            .to_string()
            .contains("only once")
    );
    let failing = SecretSource::Command("exit 3".into())
        .read("passphrase")
        .await
        .unwrap_err()
        .to_string();
    assert!(failing.contains("exited"), "{failing}");
    let unset = SecretSource::Env("ENCRYPT_REPO_TEST_SURELY_UNSET".into())
        .read("passphrase")
        .await
        .unwrap_err()
        .to_string();
    assert!(unset.contains("not set"), "{unset}");
}

#[tokio::test]
async fn unknown_provider_lists_known_ones() {
    let err = ProviderRegistry::with_builtin()
        .open("hsm", &Settings::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown key provider type \"hsm\"; known types: exec, local, passphrase"
    );
    let _: &dyn KeyProvider; // the trait is object safe: used as Arc<dyn KeyProvider> above
}
